/* sampler.c - greedy and temperature / top-k / top-p sampling. */
#include <math.h>
#include <stdlib.h>

#include "nsqrt.h"

int nsqrt_sampler_init(nsqrt_sampler *s, uint32_t vocab, float temperature, uint32_t top_k, float top_p, uint64_t seed)
{
    s->temperature = temperature;
    s->top_k = top_k;
    s->top_p = top_p;
    s->rng = seed ? seed : 0x9E3779B97F4A7C15ull;
    s->vocab = vocab;
    s->order = malloc(vocab * sizeof *s->order);
    s->probs = malloc(vocab * sizeof *s->probs);
    return s->order && s->probs ? 0 : -1;
}

void nsqrt_sampler_free(nsqrt_sampler *s)
{
    free(s->order);
    free(s->probs);
}

int32_t nsqrt_argmax(const float *v, uint32_t n)
{
    uint32_t best = 0; /* the first of equal maxima, as torch.argmax */
    for (uint32_t i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return (int32_t)best;
}

static float uniform01(uint64_t *state) /* xorshift64* */
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (float)((*state * 0x2545F4914F6CDD1Dull) >> 40) / (float)(1u << 24);
}

static int by_prob(const void *a, const void *b, void *probs)
{
    const float *p = probs;
    float x = p[*(const uint32_t *)a], y = p[*(const uint32_t *)b];
    if (x != y) return x > y ? -1 : 1;
    return *(const uint32_t *)a < *(const uint32_t *)b ? -1 : 1;
}

int32_t nsqrt_sampler_next(nsqrt_sampler *s, const float *logits)
{
    if (s->temperature <= 0) return nsqrt_argmax(logits, s->vocab);
    float mx = logits[nsqrt_argmax(logits, s->vocab)], sum = 0;
    for (uint32_t i = 0; i < s->vocab; i++) sum += (s->probs[i] = expf((logits[i] - mx) / s->temperature));
    uint32_t n = s->vocab;
    for (uint32_t i = 0; i < n; i++) {
        s->probs[i] /= sum;
        s->order[i] = i;
    }
    if (s->top_k || s->top_p < 1) {
        qsort_r(s->order, n, sizeof *s->order, by_prob, s->probs); /* no shared state: samplers run in parallel */
        if (s->top_k && s->top_k < n) n = s->top_k;
        float cum = 0;
        for (uint32_t i = 0; i < n; i++)
            if ((cum += s->probs[s->order[i]]) >= s->top_p) {
                n = i + 1;
                break;
            }
    }
    float total = 0;
    for (uint32_t i = 0; i < n; i++) total += s->probs[s->order[i]];
    float r = uniform01(&s->rng) * total, acc = 0;
    for (uint32_t i = 0; i < n; i++)
        if ((acc += s->probs[s->order[i]]) > r) return (int32_t)s->order[i];
    return (int32_t)s->order[n - 1];
}
