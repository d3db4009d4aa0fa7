/* logprob.c - log-probabilities and KL divergences (nsqrt.h). The maximum
 * is taken out before exp, so no logit overflows it. */
#include "nsqrt.h"

#include <math.h>

void nsqrt_logprob_row(const float *logits, uint32_t n, double *lp)
{
    float mx = logits[0];
    for (uint32_t i = 1; i < n; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (uint32_t i = 0; i < n; i++) sum += exp((double)logits[i] - mx);
    double lse = mx + log(sum);
    for (uint32_t i = 0; i < n; i++) lp[i] = (double)logits[i] - lse;
}

double nsqrt_logprob_kl(const double *lp, const double *lq, uint32_t n)
{
    double kl = 0;
    for (uint32_t i = 0; i < n; i++) kl += exp(lp[i]) * (lp[i] - lq[i]);
    return kl;
}

double nsqrt_logprob_mean_kl(const float *p, const float *q, uint64_t n, uint32_t V, double *scratch)
{
    double sum = 0;
    for (uint64_t t = 0; t < n; t++) {
        nsqrt_logprob_row(p + t * V, V, scratch);
        nsqrt_logprob_row(q + t * V, V, scratch + V);
        double kl = nsqrt_logprob_kl(scratch, scratch + V, V);
        sum += kl > 0 ? kl : 0;
    }
    return n ? sum / (double)n : 0;
}
