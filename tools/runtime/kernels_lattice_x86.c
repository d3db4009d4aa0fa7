/* kernels_lattice_x86.c - LATTICE products on x86 (kernels.h gives the sum
 * they reproduce bit for bit).
 *
 * AVX2 (and AVX-512 without VBMI or GFNI): rows decoded to bytes by tables,
 * then per 512-column chunk the 16 segments' dots in lane order and the
 * float steps in two halves of 8 lanes. AVX-512 (with VBMI and GFNI): whole rows in 512-column
 * chunks of 64 codes, coordinate-major: vector k holds coordinate k of the
 * chunk's 64 codes, code c in byte act8_pos(c) (the order in which a byte
 * pack leaves 16-bit codes), and act8's qc holds the activations in the same
 * order, so each dword lane of a product sums one 32-column segment. The
 * weights are the unsigned operand of VNNI, biased by 16 (128 for INT8), and
 * act8's cbias takes the bias times the activations off. An E8 code decodes
 * in bytes with no gather: its low byte looks up (two-register byte permutes)
 * the magnitude indices m = (u-1)/2 of four coordinates per table; a GF(2)
 * affine map of its high byte puts each coordinate's sign (the eighth from
 * the parity, with P(i) from the magnitudes) and the shift next to them; a
 * 64-entry byte permute turns the 4 bits into 4v + 16. An E8S code looks
 * up each coordinate's 4v + 16 in a 256-byte table. */
#include "kernels_impl.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include "kernels_x86.h"

#define LAT512_T __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,gfni,avx2,fma,f16c,bmi2")))

/* ---------------- AVX2: rows decoded to bytes ---------------- */

/* Segment (columns 32i..32i+31 of a chunk) of each lane: act8_pos(4i) / 4 inverted. */
static const uint8_t lane_segment[16] = {0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15};

/* |w| (unsigned) times x with w's signs, pairs summed: no saturation, |w| <= 128 and |x| <= 127. */
AVX2_T static inline __m256i seg_256(const int8_t *v, const int8_t *xq)
{
    __m256i w = _mm256_loadu_si256((const __m256i *)v), x = _mm256_loadu_si256((const __m256i *)xq);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w)), _mm256_set1_epi16(1));
}

/* The integer dots of the chunk's segments in lanes h*8..h*8+7 (0 for
 * segments past ns, the chunk's last). */
AVX2_T static inline __m256i lane_dots(const int8_t *v, const int8_t *xq, uint32_t h, uint32_t ns)
{
    __m256i d[8];
    for (uint32_t g = 0; g < 8; g++) {
        uint32_t sg = lane_segment[8 * h + g];
        d[g] = sg < ns ? seg_256(v + 32 * sg, xq + 32 * sg) : _mm256_setzero_si256();
    }
    return sum8x8(d);
}

/* One stage of one row for tokens t < n (values v), into acc[t][2] (P:
 * room for as many partial sums): the float steps of kernels.h in two halves
 * of 8 lanes, chunk by chunk. */
AVX2_T static void stage_256(const nsq_lattice *L, uint32_t st, uint64_t row, const int8_t *v, const act8 *a, uint32_t n,
                             __m256 (*acc)[2], __m256 (*P)[2])
{
    uint32_t in = a->in, B = L->block, nch = act8_chunks(in);
    const uint8_t *sc = L->scales[st] + 2 * row * L->n_blocks;
    float f = kern_lat_mul(L->kind[st]);
    for (uint32_t t = 0; t < n; t++) P[t][0] = P[t][1] = _mm256_setzero_ps();
    for (uint32_t c0 = 0; c0 < in; c0 += 512) {
        uint32_t ns = (in - c0 < 512 ? in - c0 : 512) / 32;
        for (uint32_t t = 0; t < n; t++) {
            const int8_t *xq = a->q + (size_t)t * in + c0;
            const float *cs = a->cs + (size_t)t * nch * 16 + c0 / 32;
            for (uint32_t h = 0; h < 2; h++)
                P[t][h] = _mm256_fmadd_ps(_mm256_loadu_ps(cs + 8 * h), _mm256_cvtepi32_ps(lane_dots(v + c0, xq, h, ns)), P[t][h]);
        }
        if (B >= 512 && (c0 + 512) & (B - 1)) continue; /* B: a power of two */
        float fd[16];
        int32_t live[16];
        for (uint32_t l = 0; l < 16; l++) {
            uint32_t sg = lane_segment[l];
            live[l] = sg < ns ? -1 : 0;
            fd[l] = sg < ns ? f * _cvtsh_ss(rd16(sc + 2 * ((c0 + 32 * sg) >> __builtin_ctz(B)))) : 0;
        }
        for (uint32_t h = 0; h < 2; h++) {
            __m256 m = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(live + 8 * h))), d = _mm256_loadu_ps(fd + 8 * h);
            for (uint32_t t = 0; t < n; t++) {
                acc[t][h] = _mm256_blendv_ps(acc[t][h], _mm256_fmadd_ps(d, P[t][h], acc[t][h]), m);
                P[t][h] = _mm256_setzero_ps();
            }
        }
    }
}

AVX2_T static void rows_256(const wmat *w, uint32_t off, const act8 *a, uint32_t n, uint32_t r0, uint32_t r1, float *y,
                            uint32_t ys)
{
    const nsq_lattice *L = &w->lv;
    int8_t *v = malloc(a->in);
    __m256(*acc)[2] = aligned_alloc(32, (size_t)n * sizeof *acc), (*P)[2] = aligned_alloc(32, (size_t)n * sizeof *P);
    if (!v || !acc || !P) abort();
    for (uint32_t r = r0; r < r1; r++) {
        uint64_t row = (uint64_t)off + r;
        for (uint32_t t = 0; t < n; t++) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
        for (uint32_t st = 0; st < L->n_stages; st++) {
            kern_lat_values(L, st, row, a->in, v);
            stage_256(L, st, row, v, a, n, acc, P);
        }
        for (uint32_t t = 0; t < n; t++) y[(size_t)t * ys + r - r0] = hsum256(_mm256_add_ps(acc[t][0], acc[t][1])); /* kern_tree16 */
    }
    free(v), free(acc), free(P);
}

/* ---------------- AVX-512: whole rows ---------------- */

int kern_x86_lattice_512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("gfni");
}

/* Output bit i of a byte is the parity of (input & byte 7-i of the matrix).
 * From the high byte, for coordinates 2j and 2j+1: j < 3, bit 2 <- sign 2j,
 * bit 6 <- sign 2j+1; j = 3, bit 2 <- sign 6, bit 6 <- the parity of signs
 * 0..6; always bits 3 and 7 <- the shift. */
#define AFF(b2, b6) ((uint64_t)(b2) << 40 | 0x80ull << 32 | (uint64_t)(b6) << 8 | 0x80ull)
static const uint64_t affine[4] = {AFF(0x01, 0x02), AFF(0x04, 0x08), AFF(0x10, 0x20), AFF(0x40, 0x7F)};
/* Bit 6 <- the parity of bits 0, 2, 4, 6 (the magnitude indices' low bits). */
static const uint64_t parity_low = 0x55ull << 8;

/* T[i] for each byte i of idx (top: the bytes with bit 7 set): bytes under
 * 128 from the table's first half, the others from its second, each half
 * two registers of a byte permute. */
LAT512_T static inline __m512i table256(const uint8_t *T, __m512i idx, __mmask64 top)
{
    __m512i a = _mm512_permutex2var_epi8(_mm512_loadu_si512(T), idx, _mm512_loadu_si512(T + 64));
    __m512i b = _mm512_permutex2var_epi8(_mm512_loadu_si512(T + 128), idx, _mm512_loadu_si512(T + 192));
    return _mm512_mask_blend_epi8(top, a, b);
}

/* Coordinate k of the chunk's nc codes (nc <= 64) into W[k]; codes past nc
 * decode to values the zero activations there cancel. */
LAT512_T static inline void e8_chunk(const uint8_t *p, uint32_t nc, __m512i W[8])
{
    const __m512i V = _mm512_loadu_si512(kern_e8_val), low = _mm512_set1_epi16(0xFF);
    __m512i c0 = _mm512_maskz_loadu_epi8(_cvtu64_mask64(_bzhi_u64(~0ull, 2 * nc)), p);
    __m512i c1 = _mm512_maskz_loadu_epi8(_cvtu64_mask64(nc > 32 ? _bzhi_u64(~0ull, 2 * nc - 64) : 0), p + 64);
    /* code c to byte act8_pos(c) */
    __m512i lo = _mm512_packus_epi16(_mm512_and_si512(c0, low), _mm512_and_si512(c1, low));
    __m512i hi = _mm512_packus_epi16(_mm512_srli_epi16(c0, 8), _mm512_srli_epi16(c1, 8)), q[2];
    __mmask64 top = _mm512_movepi8_mask(lo);
    for (int h = 0; h < 2; h++) q[h] = table256(kern_e8_quad[h], lo, top);
    /* P(i) is the parity of all eight low bits */
    __m512i par = _mm512_gf2p8affine_epi64_epi8(_mm512_xor_si512(q[0], q[1]), _mm512_set1_epi64((long long)parity_low), 0);
    for (int j = 0; j < 4; j++) {
        __m512i m = j % 2 ? _mm512_srli_epi16(q[j / 2], 2) : q[j / 2];
        __m512i s = _mm512_gf2p8affine_epi64_epi8(hi, _mm512_set1_epi64((long long)affine[j]), 0);
        if (j == 3) s = _mm512_xor_si512(s, par);
        __m512i pb = _mm512_ternarylogic_epi64(m, s, _mm512_set1_epi8(0x33), 0xE4); /* bits 0-1, 4-5 from m */
        W[2 * j] = _mm512_permutexvar_epi8(pb, V);
        W[2 * j + 1] = _mm512_permutexvar_epi8(_mm512_srli_epi16(pb, 4), V);
    }
}

/* The chunk's nc one-byte codes, code c in byte act8_pos(c); 0 past nc. */
LAT512_T static inline __m512i byte_codes(const uint8_t *p, uint32_t nc)
{
    const __m512i code_at = _mm512_set_epi64(0x3F3E3D3C3B3A3938, 0x1F1E1D1C1B1A1918, 0x3736353433323130,
                                             0x1716151413121110, 0x2F2E2D2C2B2A2928, 0x0F0E0D0C0B0A0908,
                                             0x2726252423222120, 0x0706050403020100); /* byte p <- code c, act8_pos(c) = p */
    return _mm512_permutexvar_epi8(code_at, _mm512_maskz_loadu_epi8(_cvtu64_mask64(_bzhi_u64(~0ull, nc)), p));
}

LAT512_T static inline void sign_chunk(const uint8_t *p, uint32_t nc, __m512i W[8])
{
    __m512i b = byte_codes(p, nc);
    /* 16 + 1 - 2 * (bit k): the affine map puts bit k in bit 1 */
    for (int k = 0; k < 8; k++)
        W[k] = _mm512_sub_epi8(_mm512_set1_epi8(17), _mm512_gf2p8affine_epi64_epi8(b, _mm512_set1_epi64(1ll << (48 + k)), 0));
}

/* Coordinate k from its 256-byte table. */
LAT512_T static inline void e8s_chunk(const uint8_t *p, uint32_t nc, __m512i W[8])
{
    __m512i b = byte_codes(p, nc);
    __mmask64 top = _mm512_movepi8_mask(b);
    for (int k = 0; k < 8; k++) W[k] = table256(kern_e8s_col[k], b, top);
}

LAT512_T static inline void int8_chunk(const uint8_t *p, uint32_t nc, __m512i W[8])
{
    uint8_t buf[512] = {0};
    for (uint32_t c = 0; c < nc; c++)
        for (int k = 0; k < 8; k++) buf[64 * k + act8_pos(c)] = p[8 * c + k] ^ 0x80;
    for (int k = 0; k < 8; k++) W[k] = _mm512_loadu_si512(buf + 64 * k);
}

#define LANE_SEGMENTS _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)lane_segment))

/* f * d of each lane's block for a chunk at column c0 (blocks under 512 columns). */
LAT512_T static inline __m512 lane_scales(const uint8_t *sc, uint32_t B, uint32_t nb, uint32_t c0, float f)
{
    uint32_t b0 = c0 >> __builtin_ctz(B), cnt = nb - b0 < 16 ? nb - b0 : 16;
    __m256i d = _mm256_maskz_loadu_epi16((__mmask16)_bzhi_u32(0xFFFF, cnt), sc + 2 * b0);
    __m256i idx = _mm512_cvtepi32_epi16(_mm512_srli_epi32(LANE_SEGMENTS, __builtin_ctz(B) - 5));
    return _mm512_mul_ps(_mm512_set1_ps(f), _mm512_cvtph_ps(_mm256_permutexvar_epi16(idx, d)));
}

/* kern_tree16: lanes l and l + 8, then kern_tree8's order. */
LAT512_T static inline float tree16_512(__m512 v)
{
    return hsum256(_mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
}

/* Lane l: segment l's integer dot for each of R rows, from the biased
 * weights W[r] and minus the bias times the activation sums; the rows share
 * each activation load. */
LAT512_T static inline __attribute__((always_inline)) void chunk_dots(uint32_t R, __m512i W[][8], __m512i bias,
                                                                       const int8_t *xq, __m512i *I)
{
    __m512i e[2], o[2];
    for (uint32_t r = 0; r < R; r++) e[r] = bias, o[r] = _mm512_setzero_si512();
    for (int k = 0; k < 8; k += 2) {
        __m512i x0 = _mm512_loadu_si512(xq + 64 * k), x1 = _mm512_loadu_si512(xq + 64 * (k + 1));
        if (R > 1) __asm__("" : "+v"(x0), "+v"(x1)); /* one load for both rows, not a memory operand each */
        for (uint32_t r = 0; r < R; r++) {
            e[r] = _mm512_dpbusd_epi32(e[r], W[r][k], x0);
            o[r] = _mm512_dpbusd_epi32(o[r], W[r][k + 1], x1);
        }
    }
    for (uint32_t r = 0; r < R; r++) I[r] = _mm512_add_epi32(e[r], o[r]);
}

LAT512_T static inline __attribute__((always_inline)) void decode_chunk(uint32_t kind, const uint8_t *codes, uint32_t c0,
                                                                         uint32_t nc, __m512i W[8])
{
    if (kind == NSQ_LAT_E8) e8_chunk(codes + c0 / 4, nc, W);
    else if (kind == NSQ_LAT_SIGN) sign_chunk(codes + c0 / 8, nc, W);
    else if (kind == NSQ_LAT_E8S) e8s_chunk(codes + c0 / 8, nc, W);
    else int8_chunk(codes + c0, nc, W);
}

/* One stage of R rows from row on (R = 1 or 2) for tokens t < n, into acc[r][t]. */
LAT512_T static inline __attribute__((always_inline)) void stage_512(const nsq_lattice *L, uint32_t st, uint64_t row,
                                                                      uint32_t R, const act8 *a, uint32_t n,
                                                                      __m512 (*acc)[TOKENS_MAX])
{
    uint32_t in = a->in, B = L->block, kind = L->kind[st], shift = kind == NSQ_LAT_INT8 ? 3 : 0;
    uint64_t rb = L->row_bytes[st];
    const uint8_t *codes = L->codes[st] + row * rb, *sc = L->scales[st] + 2 * row * L->n_blocks;
    size_t stride = act8_chunks(in) * 16;
    float f = kern_lat_mul(kind);
    __m512 P[2][TOKENS_MAX];
    for (uint32_t r = 0; r < R; r++)
        for (uint32_t t = 0; t < n; t++) P[r][t] = _mm512_setzero_ps();
    for (uint32_t c0 = 0; c0 < in; c0 += 512) {
        uint32_t nc = (in - c0) / 8 < 64 ? (in - c0) / 8 : 64;
        __m512i W[2][8], I[2];
        for (uint32_t r = 0; r < R; r++) {
            /* the same chunk two rows on: the hardware prefetcher alone leaves the loads waiting on memory */
            const char *ahead = (const char *)codes + (r + 2) * rb + c0 * nsq_lattice_kind_bits(kind) / 8;
            _mm_prefetch(ahead, _MM_HINT_T0), _mm_prefetch(ahead + 64, _MM_HINT_T0);
            decode_chunk(kind, codes + r * rb, c0, nc, W[r]);
        }
        for (uint32_t t = 0; t < n; t++) {
            size_t lane0 = t * stride + c0 / 32;
            __m512 cs = _mm512_loadu_ps(a->cs + lane0);
            chunk_dots(R, W, _mm512_slli_epi32(_mm512_loadu_si512(a->cbias + lane0), (int)shift), a->qc + lane0 * 32, I);
            for (uint32_t r = 0; r < R; r++) P[r][t] = _mm512_fmadd_ps(cs, _mm512_cvtepi32_ps(I[r]), P[r][t]);
        }
        if (B >= 512 && (c0 + 512) & (B - 1)) continue; /* B: a power of two */
        __mmask16 lanes = _mm512_cmplt_epu32_mask(LANE_SEGMENTS, _mm512_set1_epi32((int)(nc / 4)));
        for (uint32_t r = 0; r < R; r++) {
            const uint8_t *scr = sc + 2 * r * L->n_blocks;
            __m512 fd = B >= 512 ? _mm512_set1_ps(f * _cvtsh_ss(rd16(scr + 2 * (c0 >> __builtin_ctz(B))))) : lane_scales(scr, B, L->n_blocks, c0, f);
            for (uint32_t t = 0; t < n; t++) {
                acc[r][t] = _mm512_mask3_fmadd_ps(fd, P[r][t], acc[r][t], lanes);
                P[r][t] = _mm512_setzero_ps();
            }
        }
    }
}

/* R rows from r (R = 1 or 2): every stage, then the lane sums. */
LAT512_T static inline __attribute__((always_inline)) void rows_r(const wmat *w, uint64_t row, uint32_t R, const act8 *a,
                                                                   uint32_t n, float *y, uint32_t ys)
{
    const nsq_lattice *L = &w->lv;
    __m512 acc[2][TOKENS_MAX];
    for (uint32_t r = 0; r < R; r++)
        for (uint32_t t = 0; t < n; t++) acc[r][t] = _mm512_setzero_ps();
    for (uint32_t st = 0; st < L->n_stages; st++) stage_512(L, st, row, R, a, n, acc);
    for (uint32_t r = 0; r < R; r++)
        for (uint32_t t = 0; t < n; t++) y[(size_t)t * ys + r] = tree16_512(acc[r][t]);
}

/* Several tokens: rows in pairs that share the activation loads. */
LAT512_T static inline __attribute__((always_inline)) void rows_512(const wmat *w, uint32_t off, const act8 *a, uint32_t n,
                                                                     uint32_t r0, uint32_t r1, float *y, uint32_t ys)
{
    uint32_t r = r0;
    for (; n > 1 && r + 2 <= r1; r += 2) rows_r(w, (uint64_t)off + r, 2, a, n, y + r - r0, ys);
    for (; r < r1; r++) rows_r(w, (uint64_t)off + r, 1, a, n, y + r - r0, ys);
}

LAT512_T static void rows_lattice_512(const wmat *w, uint32_t off, const act8 *a, uint32_t n, uint32_t r0, uint32_t r1,
                                      float *y, uint32_t ys)
{
    if (n == 1) rows_512(w, off, a, 1, r0, r1, y, ys);
    else rows_512(w, off, a, n, r0, r1, y, ys);
}

int kern_x86_rows_lattice(kern_level k, const wmat *w, uint32_t off, const act8 *a, uint32_t n, uint32_t r0, uint32_t r1,
                          float *y, uint32_t ys)
{
    if (k == KERN_SCALAR || w->lv.block < 32 || !a->chunks) return 0;
    if (k == KERN_AVX2 || !kern_x86_lattice_512()) {
        rows_256(w, off, a, n, r0, r1, y, ys);
        return 1;
    }
    for (uint32_t t0 = 0; t0 < n; t0 += TOKENS_MAX) {
        act8 v = act8_rows(a, t0);
        rows_lattice_512(w, off, &v, n - t0 < TOKENS_MAX ? n - t0 : TOKENS_MAX, r0, r1, y + (size_t)t0 * ys, ys);
    }
    return 1;
}

#else
int kern_x86_lattice_512(void) { return 0; }
int kern_x86_rows_lattice(kern_level k, const wmat *w, uint32_t off, const act8 *a, uint32_t n, uint32_t r0, uint32_t r1,
                          float *y, uint32_t ys)
{
    (void)k, (void)w, (void)off, (void)a, (void)n, (void)r0, (void)r1, (void)y, (void)ys;
    return 0;
}
#endif
