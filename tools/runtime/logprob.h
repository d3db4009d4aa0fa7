/* logprob.h - log-probabilities from logits, and the KL divergence between
 * two next-token distributions: nsq-perplexity, routing's measured damages
 * and the converter's calibration probe all compute them here, in double
 * (sums run over 100k+ positions). */
#ifndef NSQ_LOGPROB_H
#define NSQ_LOGPROB_H

#include <stdint.h>

/* The log-softmax of logits[0..n) into lp. */
void logprob_row(const float *logits, uint32_t n, double *lp);
/* KL(p || q) of two rows of n log-probabilities. */
double logprob_kl(const double *lp, const double *lq, uint32_t n);
/* The mean over n positions of KL(p || q), from rows of V logits each; a
 * position's divergence that rounding leaves below 0 counts as 0. scratch
 * holds 2 * V doubles. */
double logprob_mean_kl(const float *p, const float *q, uint64_t n, uint32_t V, double *scratch);

#endif
