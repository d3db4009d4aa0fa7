/* kernels_x86.c - AVX2 and AVX-512 (VNNI) kernels, chosen at run time
 * (LATTICE's are in kernels_lattice_x86.c).
 *
 * TIERED rows with groups of 64 (other sizes and refined matrices take the
 * scalar code): a row's groups are listed tier by tier and taken 8 at a time,
 * so (d, m) of 8 groups convert in one go and their integer sums reduce
 * together; then the canonical arithmetic of kernels.h runs in 8 lanes. Up to
 * four tokens share every unpacked group. */
#include "kernels_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>

#include "kernels_x86.h"

#define TILE 4

kern_level kern_x86_best(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("bmi2"))
        return KERN_AVX512;
    unsigned a, b, c, d; /* F16C: CPUID leaf 1, ECX bit 29 (not every compiler's builtin names it) */
    int f16c = __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1);
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c) return KERN_AVX2;
    return KERN_SCALAR;
}

/* ---------------- AVX-512 ---------------- */

AVX512_T static inline float hsum512(__m512 v) { return _mm512_reduce_add_ps(v); }

/* The 64 codes of a group in order, one byte each. */
AVX512_T static inline __m512i codes_q8_512(const uint8_t *rec) { return _mm512_loadu_si512(rec); }
AVX512_T static inline __m512i codes_q4_512(const uint8_t *rec)
{
    __m256i b = _mm256_loadu_si256((const __m256i *)rec), m = _mm256_set1_epi8(0x0F);
    __m256i lo = _mm256_and_si256(b, m), hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), m);
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}
AVX512_T static inline __m512i codes_q2_512(const uint8_t *rec)
{
    /* four copies of the 16 bytes, 128-bit lane p shifted right by 2p: plane p */
    __m512i v = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)rec));
    v = _mm512_srlv_epi64(v, _mm512_set_epi64(6, 6, 4, 4, 2, 2, 0, 0));
    return _mm512_and_si512(v, _mm512_set1_epi8(3));
}

/* An F16-tier group of 64: 8 lanes, each summing every 8th product in order. */
AVX2_T static inline float f16_group_256(const uint8_t *h, const float *x)
{
    __m256 s = _mm256_setzero_ps();
    for (int q = 0; q < 8; q++)
        s = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + 16 * q))), _mm256_loadu_ps(x + 8 * q), s);
    return hsum256(s);
}

/* d[8] and m[8] of up to 8 consecutive groups from their (d, m) f16 pairs. */
AVX2_T static inline void params8_256(const uint8_t *pm, __m256i lanes, __m256 *d, __m256 *m)
{
    __m256i pr = _mm256_maskload_epi32((const int *)pm, lanes); /* never reads past the last group */
    __m256 a = _mm256_cvtph_ps(_mm256_castsi256_si128(pr)), b = _mm256_cvtph_ps(_mm256_extracti128_si256(pr, 1));
    *d = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
    *m = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
}

/* The group values of one chunk for one token: lane g gets d*(s*I) + m*ms
 * of group g (its activation block is g's index j), or +0 past the chunk. */
AVX2_T static inline __m256 chunk_value_256(__m256i I, __m256 d, __m256 m, __m256i j, __m256i lanes, const act8 *a,
                                            size_t tt)
{
    uint32_t nb = act8_blocks(a->in);
    __m256 s = _mm256_i32gather_ps(a->s + tt * nb, j, 4), ms = _mm256_i32gather_ps(a->ms + tt * nb, j, 4);
    __m256 v = _mm256_add_ps(_mm256_mul_ps(d, _mm256_mul_ps(s, _mm256_cvtepi32_ps(I))), _mm256_mul_ps(m, ms));
    return _mm256_and_ps(v, _mm256_castsi256_ps(lanes));
}

AVX2_T static inline __m256i lane_mask(uint32_t ng)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)ng), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Up to 8 groups of tier t (ng, a constant after inlining) for nt tokens. */
AVX512_T static inline __attribute__((always_inline)) void chunk_512(uint32_t t, const uint8_t *rec, const uint8_t *pm,
                                                                      const uint32_t *idx, uint32_t ng, const act8 *a,
                                                                      uint32_t t0, uint32_t nt, __m256 *acc)
{
    uint32_t bytes = 8 * nsq_tier_bits(t), in = a->in;
    __m512i c[8];
    for (uint32_t g = 0; g < 8; g++)
        c[g] = g >= ng ? _mm512_setzero_si512()
               : t == 1 ? codes_q8_512(rec + g * bytes)
               : t == 2 ? codes_q4_512(rec + g * bytes)
                        : codes_q2_512(rec + g * bytes);
    __m256i lanes = lane_mask(ng), j = _mm256_maskload_epi32((const int *)idx, lanes);
    __m256 d, m;
    params8_256(pm, lanes, &d, &m);
    for (uint32_t u = 0; u < nt; u++) {
        size_t tt = t0 + u;
        const int8_t *xq = a->q + tt * in;
        __m256i dots[8];
        for (uint32_t g = 0; g < 8; g++) {
            __m512i dot = g < ng ? _mm512_dpbusd_epi32(_mm512_setzero_si512(), c[g], _mm512_loadu_si512(xq + (size_t)idx[g] * 64))
                                 : _mm512_setzero_si512();
            dots[g] = _mm256_add_epi32(_mm512_castsi512_si256(dot), _mm512_extracti64x4_epi64(dot, 1));
        }
        acc[u] = _mm256_add_ps(acc[u], chunk_value_256(sum8x8(dots), d, m, j, lanes, a, tt));
    }
}

/* Columns [c, c1) of an in-major product past the last full vector, one
 * fmaf per input row, into y[c - c0]. */
static void cols_plain_tail(const wmat *w, uint32_t off, const float *x, uint64_t in, uint64_t ld, uint32_t c, uint32_t c0,
                            uint32_t c1, float *y)
{
    for (; c < c1; c++) {
        float acc = 0;
        for (uint64_t i = 0; i < in; i++) acc = fmaf(x[i], kern_plain_at(w, i * ld + off + c), acc);
        y[c - c0] = acc;
    }
}

/* 16 weights of a plain matrix from element k on, as f32. */
AVX512_T static inline __m512 plain16_512(uint32_t scheme, const uint8_t *p, uint64_t k)
{
    if (scheme == NSQ_SCHEME_F32) return _mm512_loadu_ps(p + 4 * k);
    __m256i h = _mm256_loadu_si256((const __m256i *)(p + 2 * k));
    if (scheme == NSQ_SCHEME_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Rows [r, r+R) of a row-major plain matrix times tokens [t, t+T), into y.
 * Each sum runs in the order of a single row and token (16 lanes, their sum,
 * then the tail), so the blocking changes no result; it loads each weight
 * once for T tokens and each input once for R rows. */
#define PLAIN_BLOCK(NAME, TARGET, VEC, LANES, ZERO, LOAD_W, FMA, LOADU, HSUM)                                        \
    TARGET static inline __attribute__((always_inline)) void NAME(const wmat *w, uint64_t base, const float *x,    \
                                                                  uint64_t in, uint32_t R, uint32_t T, float *y,  \
                                                                  size_t ys)                                       \
    {                                                                                                             \
        uint64_t body = in / LANES * LANES;                                                                      \
        VEC s[4][4];                                                                                              \
        for (uint32_t a = 0; a < R; a++)                                                                          \
            for (uint32_t b = 0; b < T; b++) s[a][b] = ZERO();                                                    \
        for (uint64_t i = 0; i < body; i += LANES) {                                                             \
            VEC wv[4], xv[4];                                                                                     \
            for (uint32_t a = 0; a < R; a++) wv[a] = LOAD_W(w->v.scheme, w->v.data, base + a * in + i);          \
            for (uint32_t b = 0; b < T; b++) xv[b] = LOADU(x + b * in + i);                                       \
            for (uint32_t a = 0; a < R; a++)                                                                      \
                for (uint32_t b = 0; b < T; b++) s[a][b] = FMA(wv[a], xv[b], s[a][b]);                           \
        }                                                                                                         \
        for (uint32_t a = 0; a < R; a++)                                                                          \
            for (uint32_t b = 0; b < T; b++) {                                                                    \
                float acc = HSUM(s[a][b]);                                                                        \
                for (uint64_t i = body; i < in; i++) acc += kern_plain_at(w, base + a * in + i) * x[b * in + i];  \
                y[b * ys + a] = acc;                                                                              \
            }                                                                                                     \
    }
PLAIN_BLOCK(plain_block_512, AVX512_T, __m512, 16, _mm512_setzero_ps, plain16_512, _mm512_fmadd_ps, _mm512_loadu_ps, hsum512)

/* Rows [r0, r1) for n tokens: blocks of 4 rows by T tokens, the rest one by one. */
#define PLAIN_ROWS(NAME, TARGET, BLOCK, T)                                                                          \
    TARGET static void NAME(const wmat *w, uint32_t off, const float *x, uint32_t n, uint32_t r0, uint32_t r1,    \
                            float *y, uint32_t ys)                                                                 \
    {                                                                                                             \
        uint64_t in = w->v.cols;                                                                                 \
        for (uint32_t r = r0; r < r1; r += 4) {                                                                   \
            uint64_t base = ((uint64_t)off + r) * in;                                                            \
            uint32_t t = 0;                                                                                       \
            if (r + 4 <= r1)                                                                                      \
                for (; t + T <= n; t += T) BLOCK(w, base, x + (size_t)t * in, in, 4, T, y + (size_t)t * ys + r - r0, ys); \
            for (uint32_t a = 0; a < 4 && r + a < r1; a++)                                                        \
                for (uint32_t u = t; u < n; u++)                                                                  \
                    BLOCK(w, base + a * in, x + (size_t)u * in, in, 1, 1, y + (size_t)u * ys + r + a - r0, ys);  \
        }                                                                                                         \
    }
PLAIN_ROWS(rows_plain_512, AVX512_T, plain_block_512, 4)

/* In-major: every output column sums over the input rows in order. Columns
 * past the last full 16 take the scalar tail, whatever the split. */
AVX512_T static void cols_plain_512(const wmat *w, uint32_t off, const float *x, uint32_t n, uint32_t c0, uint32_t c1,
                                    float *y, uint32_t ys)
{
    uint64_t ld = w->v.cols, in = w->v.rows;
    for (uint32_t t = 0; t < n; t++) {
        float *yt = y + (size_t)t * ys;
        uint32_t c = c0;
        for (; c + 16 <= c1; c += 16) {
            __m512 s = _mm512_setzero_ps();
            for (uint64_t i = 0; i < in; i++)
                s = _mm512_fmadd_ps(_mm512_set1_ps(x[t * in + i]), plain16_512(w->v.scheme, w->v.data, i * ld + off + c), s);
            _mm512_storeu_ps(yt + c - c0, s);
        }
        cols_plain_tail(w, off, x + t * in, in, ld, c, c0, c1, yt);
    }
}

/* ---------------- AVX2 ---------------- */


/* Codes (u8, at most 15) times int8 activations, summed in 8 lanes. */
AVX2_T static inline __m256i dot_small_256(__m256i c, __m256i xq)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(c, xq), _mm256_set1_epi16(1));
}

/* 8-bit codes split in nibbles so no pair sum saturates: 16 * (hi . x) + (lo . x). */
AVX2_T static inline __m256i dot_q8_256(__m256i c, __m256i xq)
{
    __m256i m = _mm256_set1_epi8(0x0F);
    __m256i hi = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(c, 4), m), xq);
    __m256i lo = _mm256_maddubs_epi16(_mm256_and_si256(c, m), xq);
    return _mm256_add_epi32(_mm256_madd_epi16(hi, _mm256_set1_epi16(16)), _mm256_madd_epi16(lo, _mm256_set1_epi16(1)));
}

/* Codes 32h..32h+31 of a 64-group of tier t. */
AVX2_T static inline __m256i codes_half_256(uint32_t t, const uint8_t *rec, int h)
{
    __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    if (t == 1) return _mm256_loadu_si256((const __m256i *)(rec + 32 * h));
    if (t == 2) {
        __m256i b = _mm256_loadu_si256((const __m256i *)rec);
        return _mm256_and_si256(h ? _mm256_srli_epi16(b, 4) : b, m4);
    }
    __m128i b = _mm_loadu_si128((const __m128i *)rec);
    __m256i v = _mm256_set_m128i(_mm_srli_epi16(b, 2 + 4 * h), _mm_srli_epi16(b, 4 * h));
    return _mm256_and_si256(v, m2);
}

AVX2_T static inline __attribute__((always_inline)) void chunk_256(uint32_t t, const uint8_t *rec, const uint8_t *pm,
                                                                    const uint32_t *idx, uint32_t ng, const act8 *a,
                                                                    uint32_t t0, uint32_t nt, __m256 *acc)
{
    uint32_t bytes = 8 * nsq_tier_bits(t), in = a->in;
    __m256i lanes = lane_mask(ng), j = _mm256_maskload_epi32((const int *)idx, lanes), c[8][2];
    __m256 d, m;
    params8_256(pm, lanes, &d, &m);
    for (uint32_t g = 0; g < ng; g++)
        c[g][0] = codes_half_256(t, rec + g * bytes, 0), c[g][1] = codes_half_256(t, rec + g * bytes, 1);
    for (uint32_t u = 0; u < nt; u++) {
        size_t tt = t0 + u;
        __m256i dots[8];
        for (uint32_t g = 0; g < 8; g++) {
            if (g >= ng) {
                dots[g] = _mm256_setzero_si256();
                continue;
            }
            const int8_t *xq = a->q + tt * in + (size_t)idx[g] * 64;
            __m256i x0 = _mm256_loadu_si256((const __m256i *)xq), x1 = _mm256_loadu_si256((const __m256i *)(xq + 32));
            dots[g] = t == 1 ? _mm256_add_epi32(dot_q8_256(c[g][0], x0), dot_q8_256(c[g][1], x1))
                             : _mm256_add_epi32(dot_small_256(c[g][0], x0), dot_small_256(c[g][1], x1));
        }
        acc[u] = _mm256_add_ps(acc[u], chunk_value_256(sum8x8(dots), d, m, j, lanes, a, tt));
    }
}

AVX2_T static inline __m256 plain8_256(uint32_t scheme, const uint8_t *p, uint64_t k)
{
    if (scheme == NSQ_SCHEME_F32) return _mm256_loadu_ps((const float *)(p + 4 * k));
    __m128i h = _mm_loadu_si128((const __m128i *)(p + 2 * k));
    if (scheme == NSQ_SCHEME_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

PLAIN_BLOCK(plain_block_256, AVX2_T, __m256, 8, _mm256_setzero_ps, plain8_256, _mm256_fmadd_ps, _mm256_loadu_ps, hsum256)

/* 4 rows by 2 tokens: 8 accumulators and 6 operands fit AVX2's 16 registers. */
PLAIN_ROWS(rows_plain_256, AVX2_T, plain_block_256, 2)

AVX2_T static void cols_plain_256(const wmat *w, uint32_t off, const float *x, uint32_t n, uint32_t c0, uint32_t c1,
                                  float *y, uint32_t ys)
{
    uint64_t ld = w->v.cols, in = w->v.rows;
    for (uint32_t t = 0; t < n; t++) {
        float *yt = y + (size_t)t * ys;
        uint32_t c = c0;
        for (; c + 8 <= c1; c += 8) {
            __m256 s = _mm256_setzero_ps();
            for (uint64_t i = 0; i < in; i++)
                s = _mm256_fmadd_ps(_mm256_set1_ps(x[t * in + i]), plain8_256(w->v.scheme, w->v.data, i * ld + off + c), s);
            _mm256_storeu_ps(yt + c - c0, s);
        }
        cols_plain_tail(w, off, x + t * in, in, ld, c, c0, c1, yt);
    }
}

/* The same lists as kern_list_tiers, 16 groups at a time: each tier's mask
 * (from the even and odd bits of the map) compresses a vector of indices.
 * Each list has 16 spare slots for the full-width stores. */
AVX512_T static void list_tiers_512(const wmat *w, uint64_t row, uint32_t gpr, uint32_t *buf, tier_lists *l)
{
    for (int t = 0; t < 4; t++) l->idx[t] = buf + (size_t)t * (gpr + 16), l->cnt[t] = 0;
    for (uint32_t j0 = 0; j0 < gpr; j0 += 16) {
        uint32_t n = gpr - j0 < 16 ? gpr - j0 : 16;
        uint32_t bits = (uint32_t)kern_map_bits(&w->tv, row * gpr + j0, n);
        uint32_t lo = _pext_u32(bits, 0x55555555u), hi = _pext_u32(bits, 0xAAAAAAAAu), valid = (1u << n) - 1;
        __mmask16 m[4] = {(__mmask16)(~lo & ~hi & valid), (__mmask16)(lo & ~hi), (__mmask16)(~lo & hi), (__mmask16)(lo & hi)};
        __m512i iota = _mm512_add_epi32(_mm512_set1_epi32((int)j0), _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
        for (int t = 0; t < 4; t++) {
            _mm512_storeu_si512(l->idx[t] + l->cnt[t], _mm512_maskz_compress_epi32(m[t], iota));
            l->cnt[t] += (uint32_t)__builtin_popcount(m[t]);
        }
    }
}

typedef void (*list_fn)(const wmat *w, uint64_t row, uint32_t gpr, uint32_t *buf, tier_lists *l);

/* Up to 8 groups of tier t for nt tokens, added to acc[nt] (chunk_512, chunk_256). */
typedef void (*chunk_fn)(uint32_t t, const uint8_t *rec, const uint8_t *pm, const uint32_t *idx, uint32_t ng,
                         const act8 *a, uint32_t t0, uint32_t nt, __m256 *acc);

/* One row for tokens t0..t0+nt: the tiers' groups 8 at a time, then the F16
 * groups; the chunk function is a constant once this is inlined. */
AVX2_T static inline __attribute__((always_inline)) void row64(chunk_fn chunk, const wmat *w, uint64_t row,
                                                                const tier_lists *l, const float *x, const act8 *a,
                                                                uint32_t t0, uint32_t nt, float *out)
{
    __m256 acc[TILE];
    float facc[TILE] = {0, 0, 0, 0};
    for (uint32_t u = 0; u < TILE; u++) acc[u] = _mm256_setzero_ps();
    const uint32_t *rk = w->rank[row];
    for (uint32_t t = 1; t < 4; t++) {
        uint32_t bytes = 8 * nsq_tier_bits(t), i = 0;
        const uint8_t *rec = w->tv.codes[t] + (size_t)rk[t] * bytes, *pm = w->tv.params[t] + (size_t)rk[t] * 4;
        for (; i + 8 <= l->cnt[t]; i += 8) chunk(t, rec + i * bytes, pm + 4 * i, l->idx[t] + i, 8, a, t0, nt, acc);
        if (i < l->cnt[t]) chunk(t, rec + i * bytes, pm + 4 * i, l->idx[t] + i, l->cnt[t] - i, a, t0, nt, acc);
    }
    const uint8_t *h = w->tv.codes[0] + (size_t)rk[0] * 128;
    for (uint32_t i = 0; i < l->cnt[0]; i++, h += 128)
        for (uint32_t u = 0; u < nt; u++) facc[u] += f16_group_256(h, x + (size_t)(t0 + u) * a->in + (size_t)l->idx[0][i] * 64);
    for (uint32_t u = 0; u < nt; u++) out[u] = hsum256(acc[u]) + facc[u];
}

/* Rows [r0, r1) for n tokens, four at a time (one and four as constants). */
AVX2_T static inline __attribute__((always_inline)) void rows64(chunk_fn chunk, list_fn list, const wmat *w, uint32_t off,
                                                                 const float *x, const act8 *a, uint32_t n, uint32_t r0,
                                                                 uint32_t r1, float *y, uint32_t ys)
{
    uint32_t gpr = (uint32_t)(w->v.cols / 64);
    uint32_t *buf = malloc((size_t)4 * (gpr + 16) * sizeof *buf);
    if (!buf) abort();
    for (uint32_t r = r0; r < r1; r++) {
        uint64_t row = (uint64_t)off + r;
        tier_lists l;
        list(w, row, gpr, buf, &l);
        for (uint32_t t0 = 0; t0 < n; t0 += TILE) {
            float out[TILE];
            uint32_t nt = n - t0 < TILE ? n - t0 : TILE;
            if (nt == TILE) row64(chunk, w, row, &l, x, a, t0, TILE, out);
            else if (nt == 1) row64(chunk, w, row, &l, x, a, t0, 1, out);
            else row64(chunk, w, row, &l, x, a, t0, nt, out);
            for (uint32_t u = 0; u < nt; u++) y[(size_t)(t0 + u) * ys + r - r0] = out[u];
        }
    }
    free(buf);
}

AVX512_T static void rows_tiered_512(const wmat *w, uint32_t off, const float *x, const act8 *a, uint32_t n,
                                     uint32_t r0, uint32_t r1, float *y, uint32_t ys)
{
    rows64(chunk_512, list_tiers_512, w, off, x, a, n, r0, r1, y, ys);
}

AVX2_T static void rows_tiered_256(const wmat *w, uint32_t off, const float *x, const act8 *a, uint32_t n,
                                   uint32_t r0, uint32_t r1, float *y, uint32_t ys)
{
    rows64(chunk_256, kern_list_tiers, w, off, x, a, n, r0, r1, y, ys);
}

/* ---------------- dispatch ---------------- */

/* Four tokens at a time: four independent chains hide the FMA latency. */
AVX2_T static void fma_lanes_256(const float *w, const float *x, size_t xs, uint32_t nt, uint32_t n, float (*acc)[8])
{
    uint32_t u = 0;
    for (; u + 4 <= nt; u += 4) {
        const float *x0 = x + u * xs, *x1 = x0 + xs, *x2 = x1 + xs, *x3 = x2 + xs;
        __m256 a0 = _mm256_loadu_ps(acc[u]), a1 = _mm256_loadu_ps(acc[u + 1]);
        __m256 a2 = _mm256_loadu_ps(acc[u + 2]), a3 = _mm256_loadu_ps(acc[u + 3]);
        for (uint32_t i = 0; i < n; i += 8) {
            __m256 wv = _mm256_loadu_ps(w + i);
            a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x0 + i), a0);
            a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x1 + i), a1);
            a2 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x2 + i), a2);
            a3 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x3 + i), a3);
        }
        _mm256_storeu_ps(acc[u], a0), _mm256_storeu_ps(acc[u + 1], a1);
        _mm256_storeu_ps(acc[u + 2], a2), _mm256_storeu_ps(acc[u + 3], a3);
    }
    for (; u < nt; u++) {
        __m256 a = _mm256_loadu_ps(acc[u]);
        for (uint32_t i = 0; i < n; i += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + u * xs + i), a);
        _mm256_storeu_ps(acc[u], a);
    }
}

int kern_x86_fma_lanes(kern_level k, const float *w, const float *x, size_t xs, uint32_t nt, uint32_t n, float (*acc)[8])
{
    (void)k;
    fma_lanes_256(w, x, xs, nt, n, acc);
    return 1;
}

int kern_x86_rows_tiered(kern_level k, const wmat *w, uint32_t off, const float *x, const act8 *a, uint32_t n,
                         uint32_t r0, uint32_t r1, float *y, uint32_t ys)
{
    if (w->v.group_size != 64) return 0;
    (k == KERN_AVX512 ? rows_tiered_512 : rows_tiered_256)(w, off, x, a, n, r0, r1, y, ys);
    return 1;
}

int kern_x86_rows_dense(kern_level k, const wmat *w, uint32_t off, const float *x, uint32_t n, uint32_t r0,
                        uint32_t r1, float *y, uint32_t ys)
{
    (k == KERN_AVX512 ? rows_plain_512 : rows_plain_256)(w, off, x, n, r0, r1, y, ys);
    return 1;
}

int kern_x86_cols_dense(kern_level k, const wmat *w, uint32_t off, const float *x, uint32_t n, uint32_t c0,
                        uint32_t c1, float *y, uint32_t ys)
{
    (k == KERN_AVX512 ? cols_plain_512 : cols_plain_256)(w, off, x, n, c0, c1, y, ys);
    return 1;
}

#else
kern_level kern_x86_best(void) { return KERN_SCALAR; }
int kern_x86_fma_lanes(kern_level k, const float *w, const float *x, size_t xs, uint32_t nt, uint32_t n, float (*acc)[8])
{
    (void)k, (void)w, (void)x, (void)xs, (void)nt, (void)n, (void)acc;
    return 0;
}
int kern_x86_rows_tiered(kern_level k, const wmat *w, uint32_t off, const float *x, const act8 *a, uint32_t n,
                         uint32_t r0, uint32_t r1, float *y, uint32_t ys)
{
    (void)k, (void)w, (void)off, (void)x, (void)a, (void)n, (void)r0, (void)r1, (void)y, (void)ys;
    return 0;
}
int kern_x86_rows_dense(kern_level k, const wmat *w, uint32_t off, const float *x, uint32_t n, uint32_t r0,
                        uint32_t r1, float *y, uint32_t ys)
{
    (void)k, (void)w, (void)off, (void)x, (void)n, (void)r0, (void)r1, (void)y, (void)ys;
    return 0;
}
int kern_x86_cols_dense(kern_level k, const wmat *w, uint32_t off, const float *x, uint32_t n, uint32_t c0,
                        uint32_t c1, float *y, uint32_t ys)
{
    (void)k, (void)w, (void)off, (void)x, (void)n, (void)c0, (void)c1, (void)y, (void)ys;
    return 0;
}
#endif
