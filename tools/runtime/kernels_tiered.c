/* kernels_tiered.c - the TIERED scheme's kernels: the canonical product of
 * kernels.h and row decoding (embedding lookups, and the f32 products of
 * refined matrices and exact mode); the x86 SIMD products are in kernels_x86.c. */
#include "kernels_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int tiered_index(wmat *w)
{
    const nsq_view *v = &w->v;
    nsq_tiered_view(v, &w->tv);
    uint64_t gpr = v->cols / v->group_size, r[4] = {0, 0, 0, 0};
    if (!(w->rank = malloc(v->rows * sizeof *w->rank))) return -1;
    for (uint64_t row = 0; row < v->rows; row++) {
        for (int t = 0; t < 4; t++) w->rank[row][t] = (uint32_t)r[t];
        for (uint64_t g = row * gpr; g < (row + 1) * gpr; g++) r[tier_at(w->tv.tier_map, g)]++;
    }
    return 0;
}

float kern_tree8(const float a[8])
{
    float t0 = a[0] + a[4], t1 = a[1] + a[5], t2 = a[2] + a[6], t3 = a[3] + a[7];
    return (t0 + t2) + (t1 + t3);
}

/* 2 * n bits of the tier map from group g on (n <= 32), without reading past
 * the map's padded end. */
uint64_t kern_map_bits(const nsq_tiered *tv, uint64_t g, uint32_t n)
{
    uint64_t byte = g / 4, end = ((tv->n_groups + 3) / 4 + 63) / 64 * 64, w = 0;
    uint8_t b[9] = {0};
    memcpy(b, tv->tier_map + byte, end - byte < 9 ? end - byte : 9);
    for (int i = 7; i >= 0; i--) w = w << 8 | b[i];
    uint32_t sh = 2 * (uint32_t)(g % 4);
    w = sh ? w >> sh | (uint64_t)b[8] << (64 - sh) : w;
    return n == 32 ? w : w & ((1ull << (2 * n)) - 1);
}

/* Masks with bit 2j set where group j has tier t, then their set bits in order. */
void kern_list_tiers(const wmat *w, uint64_t row, uint32_t gpr, uint32_t *buf, tier_lists *l)
{
    const uint64_t ev = 0x5555555555555555ull;
    for (int t = 0; t < 4; t++) l->idx[t] = buf + (size_t)t * gpr, l->cnt[t] = 0;
    for (uint32_t j0 = 0; j0 < gpr; j0 += 32) {
        uint32_t n = gpr - j0 < 32 ? gpr - j0 : 32;
        uint64_t bits = kern_map_bits(&w->tv, row * gpr + j0, n), lo = bits & ev, hi = bits >> 1 & ev;
        uint64_t valid = n == 32 ? ev : ev & ((1ull << (2 * n)) - 1);
        uint64_t m[4] = {~lo & ~hi & valid, lo & ~hi, ~lo & hi, lo & hi};
        for (int t = 0; t < 4; t++)
            for (; m[t]; m[t] &= m[t] - 1) l->idx[t][l->cnt[t]++] = j0 + (uint32_t)__builtin_ctzll(m[t]) / 2;
    }
}

/* One token's product with an unrefined tiered row, in the order of kernels.h. */
static float row_canonical(const wmat *w, uint64_t row, const tier_lists *l, const float *x, const int8_t *xq,
                           const float *s, const float *ms)
{
    uint32_t G = w->v.group_size;
    float acc[8] = {0}, facc = 0;
    for (uint32_t t = 1; t < 4; t++) {
        uint32_t b = nsq_tier_bits(t), cnt = l->cnt[t];
        for (uint32_t i = 0; i < (cnt + 7) / 8 * 8; i++) {
            if (i >= cnt) {
                acc[i % 8] += 0.0f;
                continue;
            }
            uint64_t rank = w->rank[row][t] + i;
            const uint8_t *rec = w->tv.codes[t] + rank * G * b / 8, *pm = w->tv.params[t] + rank * 4;
            uint32_t j = l->idx[t][i];
            float q = 0, msum = 0;
            if (G < QBLOCK) { /* half a block */
                int32_t dot = 0, sx = 0;
                for (uint32_t c = 0; c < G; c++) dot += (int32_t)code_at(rec, G, b, c) * xq[j * G + c], sx += xq[j * G + c];
                float sb = s[j * G / QBLOCK];
                q = sb * (float)dot;
                msum = sb * (float)sx;
            }
            for (uint32_t k = 0; k < G / QBLOCK; k++) {
                int32_t dot = 0;
                for (uint32_t c = k * QBLOCK; c < (k + 1) * QBLOCK; c++) dot += (int32_t)code_at(rec, G, b, c) * xq[j * G + c];
                uint32_t blk = j * (G / QBLOCK) + k;
                float p = s[blk] * (float)dot;
                q = k ? q + p : p;
                msum = k ? msum + ms[blk] : ms[blk];
            }
            float v = nsq_f16_to_f32(rd16(pm)) * q + nsq_f16_to_f32(rd16(pm + 2)) * msum;
            acc[i % 8] = acc[i % 8] + v;
        }
    }
    for (uint32_t i = 0; i < l->cnt[0]; i++) {
        const uint8_t *h = w->tv.codes[0] + ((uint64_t)w->rank[row][0] + i) * 2 * G;
        const float *xg = x + (size_t)l->idx[0][i] * G;
        float p[8] = {0};
        for (uint32_t k = 0; k < G; k++) p[k % 8] = fmaf(nsq_f16_to_f32(rd16(h + 2 * k)), xg[k], p[k % 8]);
        facc = facc + kern_tree8(p);
    }
    return kern_tree8(acc) + facc;
}

void kern_rows_tiered_scalar(const wmat *w, uint32_t off, const float *x, const act8 *a, uint32_t n, uint32_t r0,
                             uint32_t r1, float *y, uint32_t ys)
{
    uint32_t in = (uint32_t)w->v.cols, gpr = in / w->v.group_size, nb = act8_blocks(in);
    uint32_t *buf = malloc((size_t)4 * gpr * sizeof *buf);
    if (!buf) abort();
    for (uint32_t r = r0; r < r1; r++) {
        uint64_t row = (uint64_t)off + r;
        tier_lists l;
        kern_list_tiers(w, row, gpr, buf, &l);
        for (uint32_t t = 0; t < n; t++)
            y[(size_t)t * ys + r - r0] = row_canonical(w, row, &l, x + (size_t)t * in, a->q + (size_t)t * in,
                                                       a->s + (size_t)t * nb, a->ms + (size_t)t * nb);
    }
    free(buf);
}

static void tiered_rows(kern_level k, const wmat *w, uint32_t off, const float *x, const act8 *a, uint32_t n,
                        uint32_t r0, uint32_t r1, float *y, uint32_t ys)
{
    if (w->n_ref) kern_rows_f32(k, w, off, x, n, r0, r1, y, ys);
    else if (k == KERN_SCALAR || !kern_x86_rows_tiered(k, w, off, x, a, n, r0, r1, y, ys))
        kern_rows_tiered_scalar(w, off, x, a, n, r0, r1, y, ys);
}

static void tiered_row(const wmat *w, uint32_t r, float *out)
{
    const nsq_view *v = &w->v;
    uint32_t G = v->group_size, gpr = (uint32_t)(v->cols / G);
    uint64_t rank[4] = {w->rank[r][0], w->rank[r][1], w->rank[r][2], w->rank[r][3]};
    for (uint32_t j = 0; j < gpr; j++) {
        uint64_t g = (uint64_t)r * gpr + j;
        nsq_dequantize_group(v, w->ref, w->n_ref, g, rank, out + (size_t)j * G);
        rank[tier_at(w->tv.tier_map, g)]++;
    }
}

/* no in-major products: quantized in-major weights are refused at load */
const kern_scheme kern_scheme_tiered = {NSQ_SCHEME_TIERED, tiered_index, 4 * sizeof(uint32_t), 1, NULL, NULL, tiered_rows,
                                        tiered_row, NULL, tiered_row};
