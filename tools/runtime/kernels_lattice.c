/* kernels_lattice.c - the LATTICE scheme's kernels: the input rotation, the
 * canonical product of kernels.h, and row decoding (rotated basis for exact
 * products, original basis for embedding lookups); the x86 SIMD products are
 * in kernels_lattice_x86.c. */
#include "kernels_impl.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define ONES 0x0101010101010101ull

uint64_t kern_e8_mag[256], kern_e8_neg[256], kern_e8_add[256], kern_sign8[256], kern_e8s8[256];
uint8_t kern_e8_quad[2][256];
uint8_t kern_e8_val[64];
_Alignas(64) uint8_t kern_e8s_col[8][256];

/* The tables of the byte-wise decoding and of E8S (kernels_impl.h). */
static void byte_tables_init(const uint8_t (*A)[8])
{
    for (uint32_t i = 0; i < 256; i++)
        for (int k = 0; k < 8; k++) kern_e8_quad[k / 4][i] |= (uint8_t)((A[i][k] - 1) / 2 << (4 * (k % 2) + 2 * (k % 4 / 2)));
    for (int e = 0; e < 64; e++) {
        int m = e & 3, neg = e >> 2 & 1, shift = e >> 3 & 1;
        kern_e8_val[e] = (uint8_t)(16 + (neg ? -1 : 1) * 2 * (2 * m + 1) + (shift ? -1 : 1));
    }
    for (uint32_t c = 0; c < 256; c++) {
        int8_t v4[8];
        nsq_lattice_e8s_value((uint8_t)c, v4);
        for (int k = 0; k < 8; k++) {
            kern_e8s8[c] |= (uint64_t)(uint8_t)v4[k] << 8 * k;
            kern_e8s_col[k][c] = (uint8_t)(v4[k] + 16);
        }
    }
}

/* An E8 code (spec: Code values) in two lookups. The low byte i gives the
 * magnitudes 2u, with coordinate 7 already negated when P(i) is odd; the high
 * byte alone then gives the coordinates to negate (its 7 sign bits and their
 * parity) and the shift: 4v = +-2u +-1. Every byte stays nonzero within
 * [-15, 15] through the steps (negate: x ^ 0xFF + 1, shift: +-1), so whole
 * words add with no carry between bytes and the steps fold into one add. */
static void tables_init(void)
{
    const uint8_t(*A)[8] = nsq_lattice_e8_table();
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t sum = 0, s7 = i & 0x7F, mask = s7 | (uint32_t)(__builtin_popcount(s7) & 1) << 7;
        uint64_t mag = 0, neg = 0, sign = 0;
        for (int k = 0; k < 8; k++) sum += A[i][k];
        for (int k = 0; k < 8; k++) {
            int v = 2 * A[i][k] * (k == 7 && (sum / 2) % 2 ? -1 : 1);
            mag |= (uint64_t)(uint8_t)v << 8 * k;
            neg |= (uint64_t)(mask >> k & 1 ? 0xFF : 0) << 8 * k;
            sign |= (uint64_t)(i >> k & 1 ? 0xFF : 0x01) << 8 * k;
        }
        kern_e8_mag[i] = mag, kern_e8_neg[i] = neg, kern_sign8[i] = sign;
        kern_e8_add[i] = (neg & ONES) + (i & 0x80 ? 0 - ONES : ONES);
    }
    byte_tables_init(A);
}

/* The stages of the base and of the refinement levels applied. */
static int lattice_index(wmat *w)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, tables_init);
    return nsq_lattice_view_refined(&w->v, w->ref, w->n_ref, &w->lv) ? -1 : 0;
}

static void lattice_depth(wmat *w) { lattice_index(w); }

/* Sign, butterfly, then c = fl32(1/sqrt(B)), block by block. */
static void lattice_rotate(const wmat *w, const float *x, uint32_t n, float *xr)
{
    const nsq_lattice *L = &w->lv;
    uint32_t B = L->block, in = (uint32_t)w->v.cols;
    float c = (float)(1.0 / sqrt((double)B));
    for (uint32_t t = 0; t < n; t++) {
        const float *xt = x + (size_t)t * in;
        float *o = xr + (size_t)t * in;
        for (uint32_t j = 0; j < in; j++) o[j] = L->signs[j / 8] >> (j % 8) & 1 ? -xt[j] : xt[j];
        for (uint32_t j = 0; j < in; j += B) nsq_lattice_hadamard(o + j, B);
        for (uint32_t j = 0; j < in; j++) o[j] *= c;
    }
}

void kern_lat_values(const nsq_lattice *L, uint32_t st, uint64_t row, uint32_t in, int8_t *v)
{
    uint32_t kind = L->kind[st];
    const uint8_t *codes = L->codes[st] + row * L->row_bytes[st];
    if (kind == NSQ_LAT_INT8) {
        memcpy(v, codes, in);
        return;
    }
    const uint64_t *byte = kind == NSQ_LAT_E8S ? kern_e8s8 : kern_sign8; /* one byte per 8 columns */
    for (uint32_t g = 0; g < in / 8; g++) {
        uint64_t w = kind == NSQ_LAT_E8 ? kern_e8_word(rd16(codes + 2 * g)) : byte[codes[g]];
        for (int k = 0; k < 8; k++) v[8 * g + k] = (int8_t)(uint8_t)(w >> 8 * k);
    }
}

uint32_t kern_lat_seg(uint32_t B) { return B < 32 ? B : 32; }

float kern_tree16(const float a[16])
{
    float s[8];
    for (int l = 0; l < 8; l++) s[l] = a[l] + a[l + 8];
    return kern_tree8(s);
}

void kern_lat_stage(const nsq_lattice *L, uint32_t st, uint64_t row, const int32_t *I, const float *s, float acc[16])
{
    uint32_t B = L->block, G = kern_lat_seg(B);
    const uint8_t *sc = L->scales[st] + 2 * row * L->n_blocks;
    float f = kern_lat_mul(L->kind[st]);
    for (uint32_t b = 0; b < L->n_blocks; b++) {
        float P[16] = {0};
        uint32_t touched = 0;
        for (uint64_t c = (uint64_t)b * B; c < (uint64_t)(b + 1) * B; c += G) {
            uint32_t l = act8_pos(4 * (c / 32 % 16)) / 4;
            P[l] = fmaf(s[c / QBLOCK], (float)I[c / G], P[l]);
            touched |= 1u << l;
        }
        float fd = f * nsq_f16_to_f32(rd16(sc + 2 * b));
        for (uint32_t l = 0; l < 16; l++)
            if (touched >> l & 1) acc[l] = fmaf(fd, P[l], acc[l]);
    }
}

/* Per row: each stage decoded once to signed bytes, then for each token the
 * segments' integer dots and the float steps. */
static void rows_scalar(const wmat *w, uint32_t off, const act8 *a, uint32_t n, uint32_t r0, uint32_t r1, float *y,
                        uint32_t ys)
{
    const nsq_lattice *L = &w->lv;
    uint32_t in = (uint32_t)w->v.cols, G = kern_lat_seg(L->block), nba = act8_blocks(in);
    int8_t *v = malloc(in);
    int32_t *I = malloc(in / G * sizeof *I);
    float (*acc)[16] = malloc((size_t)n * sizeof *acc);
    if (!v || !I || !acc) abort();
    for (uint32_t r = r0; r < r1; r++) {
        uint64_t row = (uint64_t)off + r;
        memset(acc, 0, (size_t)n * sizeof *acc);
        for (uint32_t st = 0; st < L->n_stages; st++) {
            kern_lat_values(L, st, row, in, v);
            for (uint32_t t = 0; t < n; t++) {
                const int8_t *xq = a->q + (size_t)t * in;
                for (uint32_t i = 0; i < in / G; i++) {
                    int32_t dot = 0;
                    for (uint32_t j = i * G; j < (i + 1) * G; j++) dot += v[j] * xq[j];
                    I[i] = dot;
                }
                kern_lat_stage(L, st, row, I, a->s + (size_t)t * nba, acc[t]);
            }
        }
        for (uint32_t t = 0; t < n; t++) y[(size_t)t * ys + r - r0] = kern_tree16(acc[t]);
    }
    free(v), free(I), free(acc);
}

static void lattice_rows(kern_level k, const wmat *w, uint32_t off, const float *x, const act8 *a, uint32_t n,
                         uint32_t r0, uint32_t r1, float *y, uint32_t ys)
{
    (void)x;
    if (k == KERN_SCALAR || !kern_x86_rows_lattice(k, w, off, a, n, r0, r1, y, ys)) rows_scalar(w, off, a, n, r0, r1, y, ys);
}

static void lattice_row_rotated(const wmat *w, uint32_t r, float *out)
{
    nsq_lattice_rows_rotated_refined(&w->v, w->ref, w->n_ref, r, 1, out);
}

static void lattice_row(const wmat *w, uint32_t r, float *out) { nsq_dequantize_rows(&w->v, w->ref, w->n_ref, r, 1, out); }

/* no in-major products: quantized in-major weights are refused at load */
const kern_scheme kern_scheme_lattice = {NSQ_SCHEME_LATTICE, lattice_index, 0, 2, lattice_depth, lattice_rotate, lattice_rows,
                                         lattice_row_rotated, NULL, lattice_row};
