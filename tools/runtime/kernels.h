/* kernels.h - matrix products read straight from the packed storage schemes.
 *
 * TIERED matrices multiply activations rounded to int8 in blocks of 64 (one
 * f32 scale s_b a block), so each quantized group is integer dot products:
 *   sum_j (d*q_j + m) * x_j  ~  d * sum_b s_b * I_b  +  m * sum_b s_b * sum(xq_b)
 * with I_b = (q . xq) over block b. Rounding x to int8 makes the output of
 * a layer a discontinuous function of its input, so any difference between
 * two paths can grow through the layers: every path therefore computes one
 * canonical sum, bit for bit. For one row and token:
 *   - groups are taken tier by tier (Q8, Q4, Q2), each tier in row order;
 *   - group value v = (d * q) + (m * msum), every operation rounded to f32:
 *     a group of 64 has q = s_b*I_b and msum = ms_b = s_b * sum(xq_b) of its
 *     block; larger groups sum their blocks' terms in order; a group of 32,
 *     half a block, has q = s_b*I and msum = s_b * sum(xq) over its half;
 *   - the k-th group of a tier goes to accumulator k % 8 (acc += v), and a
 *     tier whose count is not a multiple of 8 adds +0 to the remaining ones;
 *   - an F16-tier group adds (f32) the kern_tree8 sum of 8 lanes, lane l
 *     accumulating fmaf(h_j, x_j, .) over j = l, l+8, ... in order;
 *   - the result is kern_tree8(acc) + (the F16 groups' sum).
 * Refined matrices decode each group (libnsq) and sum f32 products in row
 * order, the same code at every level. The F32/F16/BF16 schemes use the f32
 * activations and may differ between levels by f32 reassociation.
 *
 * LATTICE matrices hold W' = W R^T: they multiply x' = R x (kern_rotate,
 * the same code at every level), rounded to int8 as above. A stage's code
 * values times 4 (E8), or as they are (SIGN, INT8), are integers w_j. A row
 * is cut in segments of G = min(B, 32) columns, each inside one activation
 * block a, with I = (w . xq) over the segment; segment columns [c, c+G) go to
 * lane act8_pos(4i) / 4, i = (c / 32) % 16. For one row and token,
 * canonically (every operation rounded to f32, fma rounded once):
 *   - stage by stage, each stage's blocks in row order; block b of stage s
 *     sums in each lane l it reaches P_l = fma(s_a, I, P_l) over its segments
 *     of lane l in column order, from P_l = +0; then acc_l = fma(f * d, P_l,
 *     acc_l) for those lanes, with d its scale and f = 1/4 for E8, 1 otherwise;
 *   - the result is kern_tree8 of (acc_l + acc_l+8), l < 8.
 * The 16 lanes and 32-column segments are those of one AVX-512 register
 * over a 512-column chunk (kernels_lattice_x86.c).
 * Exact mode (kern_rows_f32) multiplies the f32 x' by the rotated-basis
 * weights decoded as libnsq decodes them, summed as refined TIERED rows. */
#ifndef NSQ_KERNELS_H
#define NSQ_KERNELS_H

#include <stdint.h>

#include "nsq.h"

#define QBLOCK 64 /* activation values per int8 scale */

/* Blocks of a row of in activations (the last may be shorter). */
static inline uint32_t act8_blocks(uint32_t in) { return (in + QBLOCK - 1) / QBLOCK; }
/* 512-column chunks of a row (LATTICE), and the byte of a chunk's vectors
 * that holds its code c (columns 8c..8c+7): the order in which AVX-512
 * packs 16-bit codes to bytes, 8 codes at a time from either half. */
static inline uint32_t act8_chunks(uint32_t in) { return (in + 511) / 512; }
static inline uint32_t act8_pos(uint32_t c) { return 16 * (c % 32 / 8) + 8 * (c / 32) + c % 8; }

/* A weight matrix as the file stores it, kept packed. */
typedef struct {
    nsq_view v;
    nsq_refine_view ref[NSQ_MAX_REFINEMENTS];
    uint32_t n_ref;    /* refinement levels applied */
    uint32_t n_loaded; /* refinement levels loaded: n_ref may hide some (routing's BASE) */
    nsq_tiered tv;     /* TIERED: the streams */
    nsq_lattice lv;    /* LATTICE: the stages */
    uint32_t (*rank)[4]; /* TIERED: per row, the tier-stream ranks of its first group */
} wmat;

/* n rows of activations rounded to int8: q[n][in], and per block of 64 the
 * scale s and s * sum(q) ([n][act8_blocks(in)]). With chunks set (before
 * act8_reserve), for the SIMD LATTICE kernels also, per 512-column chunk of a
 * row (act8_chunks(in), the last maybe short), qc: q again, byte 64k +
 * act8_pos(c) holding column 8c + k (0 past the row's end), at t * 512 *
 * chunks for row t; and per chunk 16 lanes, lane act8_pos(4i) / 4 for columns
 * 32i..32i+31: cbias, -16 times the sum of q, and cs, the scale s (0 past
 * the end); without, LATTICE products take the scalar kernel. Owned by the
 * caller; zero-initialise it. */
typedef struct {
    int8_t *q, *qc;
    float *s, *ms, *cs;
    int32_t *cbias;
    uint32_t in, cap_n, cap_in;
    int chunks;
} act8;

typedef enum { KERN_SCALAR, KERN_AVX2, KERN_AVX512 } kern_level;

/* The best level this CPU runs, lowered by NSQ_KERNELS=scalar|avx2. */
kern_level kern_detect(void);
const char *kern_name(kern_level k);

/* Prepares w, its view set, for its scheme's kernels (TIERED: locates the
 * streams and counts each row's tier-stream ranks); 0 or -1 when out of memory. */
int wmat_index(wmat *w);
uint64_t wmat_index_bytes(const wmat *w);
/* What wmat_index keeps for a matrix of the scheme with rows rows. */
uint64_t kern_index_bytes(uint32_t scheme, uint64_t rows);
/* 1 when the scheme has in-major products (kern_cols). */
int kern_has_cols(uint32_t scheme);
/* 1 when kern_rows multiplies w by activations rounded to int8 (act8), so
 * that kern_rows_f32 is the exact product. */
int wmat_int8(const wmat *w);
/* 1 when w's refinement levels applied make its products take f32
 * activations (TIERED; LATTICE's levels are more stages of its kernel). */
int wmat_refined_f32(const wmat *w);
/* Applies the first n of w's loaded refinement levels (at most n_loaded). */
void wmat_set_refine(wmat *w, uint32_t n);

int act8_reserve(act8 *a, uint32_t n, uint32_t in);
void act8_free(act8 *a);
void act8_quantize(act8 *a, const float *x, uint32_t n, uint32_t in);
/* A view of a's rows from t0 on. */
act8 act8_rows(const act8 *a, uint32_t t0);

/* 1 when the scheme's products take their input rotated (LATTICE): x' =
 * kern_rotate(x), for kern_rows, kern_rows_f32 and act8_quantize alike. */
int kern_rotates(uint32_t scheme);
/* xr[t] = R x[t] for t < n, R the rotation of w's input (the block
 * Hadamard transform of its signs and block size). */
void kern_rotate(const wmat *w, const float *x, uint32_t n, float *xr);

/* y[t*ys + r - r0] = row (off + r) of w . x[t] for rows [r0, r1) of an
 * out-major matrix and t < n. a holds x rounded by act8_quantize (TIERED,
 * LATTICE; for LATTICE x and a are the rotated input). */
void kern_rows(kern_level k, const wmat *w, uint32_t off, const float *x, const act8 *a, uint32_t n, uint32_t r0,
               uint32_t r1, float *y, uint32_t ys);

/* The same for a TIERED or LATTICE matrix, each row decoded to f32 (with
 * its refinements; LATTICE: in the rotated basis, x rotated) and multiplied
 * by the f32 activations: exact up to f32 summation, slower. Refined
 * matrices always take this path. */
void kern_rows_f32(kern_level k, const wmat *w, uint32_t off, const float *x, uint32_t n, uint32_t r0, uint32_t r1,
                   float *y, uint32_t ys);

/* The same for an in-major (F32/F16/BF16) matrix stored [in][ld]: outputs
 * are columns off + [c0, c1). */
void kern_cols(kern_level k, const wmat *w, uint32_t off, const float *x, uint32_t n, uint32_t c0, uint32_t c1,
               float *y, uint32_t ys);

/* Row r of w decoded to f32 (embedding lookup; LATTICE: the original basis). */
void wmat_row(const wmat *w, uint32_t r, float *out);

#endif
