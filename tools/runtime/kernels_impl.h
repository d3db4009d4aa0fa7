/* kernels_impl.h - what kernels.c, the schemes' kernel files and the SIMD
 * kernel files share: the table of each scheme's kernels, reading the packed
 * TIERED layout (spec: Storage schemes) and each other's entry points. */
#ifndef NSQ_KERNELS_IMPL_H
#define NSQ_KERNELS_IMPL_H

#include "kernels.h"

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t tier_at(const uint8_t *map, uint64_t g) { return (map[g / 4] >> (2 * (g % 4))) & 3u; }

/* Code j of a group record of G codes at b bits: byte j % (G*b/8), plane j / (G*b/8). */
static inline uint32_t code_at(const uint8_t *rec, uint32_t G, uint32_t b, uint32_t j)
{
    uint32_t stride = G * b / 8;
    return (rec[j % stride] >> (b * (j / stride))) & ((1u << b) - 1);
}

/* What the runtime does with one storage scheme: kernels_dense.c (F32, F16,
 * BF16), kernels_tiered.c (TIERED) and kernels_lattice.c (LATTICE) each
 * define their entries. */
typedef struct {
    uint32_t scheme;
    /* Prepares w at load (wmat_index), or NULL; index_row_bytes: what it keeps per row. */
    int (*index)(wmat *w);
    uint64_t index_row_bytes;
    int int8;   /* rows takes activations rounded to int8 (wmat_int8); 2: with refinement levels too */
    /* Sets up what depends on w->n_ref after it changed (wmat_set_refine), or NULL. */
    void (*depth)(wmat *w);
    /* The input as the products take it (kern_rotate); NULL: x as it is. */
    void (*rotate)(const wmat *w, const float *x, uint32_t n, float *xr);
    void (*rows)(kern_level k, const wmat *w, uint32_t off, const float *x, const act8 *a, uint32_t n, uint32_t r0,
                 uint32_t r1, float *y, uint32_t ys);
    /* Row r decoded to f32 as kern_rows_f32 multiplies it; NULL without int8 products. */
    void (*row_f32)(const wmat *w, uint32_t r, float *out);
    /* In-major products (kern_cols); NULL when the scheme is stored out-major only. */
    void (*cols)(kern_level k, const wmat *w, uint32_t off, const float *x, uint32_t n, uint32_t c0, uint32_t c1,
                 float *y, uint32_t ys);
    void (*row)(const wmat *w, uint32_t r, float *out);
} kern_scheme;

extern const kern_scheme kern_scheme_f32, kern_scheme_f16, kern_scheme_bf16, kern_scheme_tiered, kern_scheme_lattice;

float kern_plain_at(const wmat *w, uint64_t k);
#define TOKENS_MAX 16 /* tokens a kernel call takes at most (forward.c passes 16) */

/* acc[i % 8] = fmaf(w[i], x[i], acc[i % 8]) for i < n in order (n % 8 == 0). */
/* For tokens u < nt (rows of x at stride xs): acc[u][i % 8] += w[i] * x[u][i]
 * over i < n in increasing order, one rounding per step (fmaf). */
void kern_fma_lanes_scalar(const float *w, const float *x, size_t xs, uint32_t nt, uint32_t n, float (*acc)[8]);
int kern_x86_fma_lanes(kern_level k, const float *w, const float *x, size_t xs, uint32_t nt, uint32_t n, float (*acc)[8]);

/* A row's group indices, tier by tier: idx[t][0..cnt[t]), buf holding 4 * gpr. */
typedef struct {
    uint32_t *idx[4], cnt[4];
} tier_lists;
void kern_list_tiers(const wmat *w, uint64_t row, uint32_t gpr, uint32_t *buf, tier_lists *l);
/* 2 * n bits of the tier map from group g on (n <= 32). */
uint64_t kern_map_bits(const nsq_tiered *tv, uint64_t g, uint32_t n);
/* ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)): the lane sum every level uses. */
float kern_tree8(const float a[8]);
/* The canonical TIERED product; SIMD levels reproduce it bit for bit. */
void kern_rows_tiered_scalar(const wmat *w, uint32_t off, const float *x, const act8 *a, uint32_t n, uint32_t r0,
                             uint32_t r1, float *y, uint32_t ys);

/* LATTICE: 8 code values of a stage as 8 signed bytes (byte k: column 8g+k),
 * the E8 and E8S values times 4, from these tables (kernels_lattice.c). */
extern uint64_t kern_e8_mag[256], kern_e8_neg[256], kern_e8_add[256], kern_sign8[256], kern_e8s8[256];
static inline uint64_t kern_e8_word(uint32_t code)
{
    return (kern_e8_mag[code & 0xFF] ^ kern_e8_neg[code >> 8]) + kern_e8_add[code >> 8];
}
/* What a stage's bytes are multiplied by: E8 and E8S bytes hold 4 times the values. */
static inline float kern_lat_mul(uint32_t kind) { return kind == NSQ_LAT_E8 || kind == NSQ_LAT_E8S ? 0.25f : 1.0f; }
/* LATTICE's canonical sum (kernels.h): segments of kern_lat_seg(B) columns;
 * kern_lat_stage adds one stage of one row for one token into the 16 lanes
 * acc, from I[i], the integer dot of segment i, and s, the token's
 * activation scales; kern_tree16 sums the lanes. */
uint32_t kern_lat_seg(uint32_t B);
/* The code values of stage st of a row (in columns) as signed bytes. */
void kern_lat_values(const nsq_lattice *L, uint32_t st, uint64_t row, uint32_t in, int8_t *v);
void kern_lat_stage(const nsq_lattice *L, uint32_t st, uint64_t row, const int32_t *I, const float *s, float acc[16]);
float kern_tree16(const float a[16]);
/* E8 codes byte-wise: kern_e8_quad[h][i] holds for low byte i the magnitude
 * indices m_k = (u_k - 1) / 2 of coordinates k = 4h..4h+3, two bits each,
 * in bits 0-1, 4-5, 2-3, 6-7 (pairs of coordinates a mask apart);
 * kern_e8_val[e] = 4v + 16 of m = e & 3, negated if e & 4, shift -1/4 if
 * e & 8 (bits 4, 5 ignored). */
extern uint8_t kern_e8_quad[2][256];
extern uint8_t kern_e8_val[64];
/* E8S codes byte-wise: kern_e8s_col[k][c] = 4v + 16 of coordinate k of code c. */
extern uint8_t kern_e8s_col[8][256];

kern_level kern_x86_best(void);
/* 0 when the level has no kernel for this matrix (the caller runs the scalar one). */
int kern_x86_rows_tiered(kern_level k, const wmat *w, uint32_t off, const float *x, const act8 *a, uint32_t n,
                         uint32_t r0, uint32_t r1, float *y, uint32_t ys);
/* 1 when the CPU runs the AVX-512 LATTICE products (VBMI and GFNI). */
int kern_x86_lattice_512(void);
int kern_x86_rows_lattice(kern_level k, const wmat *w, uint32_t off, const act8 *a, uint32_t n, uint32_t r0, uint32_t r1,
                          float *y, uint32_t ys);
int kern_x86_rows_dense(kern_level k, const wmat *w, uint32_t off, const float *x, uint32_t n, uint32_t r0,
                        uint32_t r1, float *y, uint32_t ys);
int kern_x86_cols_dense(kern_level k, const wmat *w, uint32_t off, const float *x, uint32_t n, uint32_t c0,
                        uint32_t c1, float *y, uint32_t ys);

#endif
