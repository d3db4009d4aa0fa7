/* sampler.h - choosing the next token from logits: greedy, or temperature
 * with optional top-k and top-p, from a seeded generator (reproducible). */
#ifndef NSQ_SAMPLER_H
#define NSQ_SAMPLER_H

#include <stdint.h>

typedef struct {
    float temperature; /* 0: greedy */
    uint32_t top_k;    /* 0: off */
    float top_p;       /* 1: off */
    uint64_t rng;
    uint32_t vocab;
    uint32_t *order;   /* scratch: candidate ids */
    float *probs;      /* scratch */
} sampler;

int sampler_init(sampler *s, uint32_t vocab, float temperature, uint32_t top_k, float top_p, uint64_t seed);
void sampler_free(sampler *s);
int32_t sampler_next(sampler *s, const float *logits);
int32_t argmax(const float *v, uint32_t n);

#endif
