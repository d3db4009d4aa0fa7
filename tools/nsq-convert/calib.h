/* calib.h - calibration: the runtime's forward pass over a text, recording
 * the mean squared activation of every input column of every layer matrix. */
#ifndef NSQ_CALIB_H
#define NSQ_CALIB_H

#include <stddef.h>
#include <stdint.h>

#include "nsqrt.h"

/* The distinct inputs of a layer: q/k/v (and GPT-2's c_attn) share one,
 * gate and up share one. */
enum { CALIB_ATTN_IN, CALIB_O_IN, CALIB_MLP_IN, CALIB_DOWN_IN, CALIB_N_INPUTS };

#define CALIB_MIN_TOKENS 64

typedef struct {
    uint32_t n_layers, dim[CALIB_N_INPUTS];
    float *mean_x2;    /* [layer][input][dim[input]] */
    uint64_t tokens;   /* tokens run */
    uint32_t windows, window; /* windows of up to `window` tokens, each from position 0 */
    double seconds;
    /* The reference for calib_kld: the unquantized model's logits at every
     * position of the first probe_tokens tokens. */
    int32_t *probe_ids;
    uint64_t probe_tokens;
    uint32_t vocab;
    float *probe_logits; /* [probe_tokens][vocab] */
} calib_stats;

/* Runs the model in model_path (an unquantized .nsq) over the first
 * max_tokens tokens of text (len bytes; name is for messages), threads windows
 * at a time, for the mean x^2 of every input column when moments is set (else
 * they are zero, for calib_set_columns), and for the reference logits of the
 * first probe_tokens. The result does not depend on threads. -1 with a message
 * in err. */
int calib_collect(const char *model_path, const char *text, size_t len, const char *name, uint64_t max_tokens,
                  uint64_t probe_tokens, int moments, int threads, calib_stats *s, char *err, size_t errlen);
/* Mean KL divergence of the model in model_path from the reference over the
 * probe tokens (s->probe_tokens > 0). -1 with a message in err. */
int calib_kld(const char *model_path, const calib_stats *s, int threads, double *kld, char *err, size_t errlen);
void calib_free(calib_stats *s);

/* Mean x^2 per input column of layer L's matrix of this role (NSQRT_ROLE_*; cols
 * columns), or NULL when the statistics do not cover it. */
const float *calib_columns(const calib_stats *s, int role, int L, uint64_t cols);
/* Sets layer L's mean x^2 of input k (CALIB_*) from the diagonal of its
 * second moment h ([dim][dim]); nothing if dim is not the input's width. */
void calib_set_columns(calib_stats *s, int k, uint32_t L, const float *h, uint32_t dim);

/* Which input (CALIB_*) an observed product (NSQRT_LIN_*) reads, counted once:
 * -1 for k, v and gate, which see the same input as q or up. */
static inline int calib_observed(int which)
{
    switch (which) {
    case NSQRT_LIN_Q: return CALIB_ATTN_IN;
    case NSQRT_LIN_O: return CALIB_O_IN;
    case NSQRT_LIN_UP: return CALIB_MLP_IN;
    case NSQRT_LIN_DOWN: return CALIB_DOWN_IN;
    default: return -1;
    }
}

/* Which input (CALIB_*) a layer matrix of this role (NSQRT_ROLE_*) reads; -1 for none. */
static inline int calib_input(int role)
{
    switch (role) {
    case NSQRT_ROLE_Q: case NSQRT_ROLE_K: case NSQRT_ROLE_V: case NSQRT_ROLE_QKV: return CALIB_ATTN_IN;
    case NSQRT_ROLE_O: return CALIB_O_IN;
    case NSQRT_ROLE_GATE: case NSQRT_ROLE_UP: case NSQRT_ROLE_GATE_UP: return CALIB_MLP_IN;
    case NSQRT_ROLE_DOWN: return CALIB_DOWN_IN;
    default: return -1;
    }
}

#endif
