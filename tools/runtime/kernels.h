/* kernels.h - matrix products read straight from the packed storage schemes.
 *
 * TIERED matrices multiply activations rounded to int8 in blocks of 32 (one
 * f32 scale a block), so each quantized group is an integer dot product:
 *   sum_j (d*q_j + m) * x_j  ~  d * sum_b s_b * (q . xq)_b  +  m * sum_b s_b * sum(xq_b)
 * F16-tier groups and the F32/F16/BF16 schemes use the f32 activations.
 * Every path (scalar, AVX2, AVX-512) computes the same integer sums; only the
 * order of the f32 additions differs. */
#ifndef NSQ_KERNELS_H
#define NSQ_KERNELS_H

#include <stdint.h>

#include "nsq.h"

#define QBLOCK 32 /* activation values per int8 scale */

/* A weight matrix as the file stores it, kept packed. */
typedef struct {
    nsq_view v;
    nsq_refine_view ref[NSQ_MAX_REFINEMENTS];
    uint32_t n_ref;
    uint32_t (*rank)[4]; /* TIERED: per row, the tier-stream ranks of its first group */
} wmat;

/* n rows of activations rounded to int8: q[n][in], and per block of 32 the
 * scale s and s * sum(q). Owned by the caller; zero-initialise it. */
typedef struct {
    int8_t *q;
    float *s, *ms;
    float *sv; /* s repeated 8 times a block, for vector lanes */
    uint32_t in, cap_n, cap_in;
} act8;

typedef enum { KERN_SCALAR, KERN_AVX2, KERN_AVX512 } kern_level;

/* The best level this CPU runs, lowered by NSQ_KERNELS=scalar|avx2. */
kern_level kern_detect(void);
const char *kern_name(kern_level k);

/* Counts each row's tier-stream ranks (w->rank); 0 or -1 when out of memory. */
int wmat_index(wmat *w);
uint64_t wmat_index_bytes(const wmat *w);

int act8_reserve(act8 *a, uint32_t n, uint32_t in);
void act8_free(act8 *a);
void act8_quantize(act8 *a, const float *x, uint32_t n, uint32_t in);

/* y[t*ys + r - r0] = row (off + r) of w . x[t] for rows [r0, r1) of an
 * out-major matrix and t < n. a holds x rounded by act8_quantize (TIERED). */
void kern_rows(kern_level k, const wmat *w, uint32_t off, const float *x, const act8 *a, uint32_t n, uint32_t r0,
               uint32_t r1, float *y, uint32_t ys);

/* The same for an in-major (F32/F16/BF16) matrix stored [in][ld]: outputs
 * are columns off + [c0, c1). */
void kern_cols(kern_level k, const wmat *w, uint32_t off, const float *x, uint32_t n, uint32_t c0, uint32_t c1,
               float *y, uint32_t ys);

/* Row r of w decoded to f32 (embedding lookup). */
void wmat_row(const wmat *w, uint32_t r, float *out);

#endif
