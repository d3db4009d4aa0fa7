/*
 * fuzz_block.c - libFuzzer target for the tensor payload decoder and the
 * reference quantizer: nsq_view_init, nsq_refine_view_init,
 * nsq_dequantize_rows, nsq_quantize_tiered and nsq_quantize_refinement.
 *
 * Input layout (bytes past the end of the input read as zero):
 *   h[0] bits 0-2  scheme: 0 F32, 1 F16, 2 BF16, 3..7 TIERED
 *        bit  3    raw mode: the rest of the input is the payload as-is
 *                  (otherwise a payload of the right shape is built from it)
 *        bit  4    pass a non-zero group_size for the plain schemes
 *        bit  5    quantize with per-column weights (the search path)
 *        bits 6-7  corruption of a built payload: 1 a padding/unused byte set,
 *                  2 one byte short, 3 one byte long
 *   h[1] bits 0-1  group size 32 << n;  bits 2-3  refinement levels 0..3
 *   h[2]           rows = (h[2] & 127) % 17 (0..16); bit 7: unbounded shape
 *                  (rows, cols as two u64 LE, then the payload as-is)
 *   h[3]           cols = G * (1 + h[3] % 4) for TIERED, h[3] % 65 otherwise
 *   h[4]           refinement bits, two bits per level: 1, 2, 4, 8
 *   h[5], h[6]     a row sub-range;  h[7] position of the corrupted byte
 *   then           tier map, code and (d, m) bytes, refinement codes, tiers
 *                  and weights for re-quantization, further sub-ranges.
 *
 * Invariants checked (abort() on violation, which libFuzzer reports):
 *  - a view that validates decodes every row; any sub-range decodes to the
 *    same bits as the whole; out-of-range rows are refused;
 *  - F32/F16/BF16 decoding is exact (bit round trip);
 *  - refinement levels move a value by less than d/2 * (1 + 2^-k1 + ...);
 *  - nsq_quantize_tiered() of the decoded values with the view's tier map
 *    succeeds when every value is within +-32000, its output validates with
 *    the same tier counts, and each re-decoded value is within the min/max
 *    error bound (0.5*d + the f16 rounding of d and m);
 *  - nsq_quantize_refinement() output validates and, where the value lies in
 *    its base cell, brings it within step/2^(k+1).
 */
#include "nsq.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                           \
    do {                                                                                   \
        if (!(c)) {                                                                        \
            fprintf(stderr, "fuzz_block: invariant failed: %s (%s:%d)\n", #c, __FILE__, \
                    __LINE__);                                                             \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

#define MAX_REF 3

typedef struct {
    const uint8_t *p;
    size_t n, i;
} src;

static uint8_t byte(src *s) { return s->i < s->n ? s->p[s->i++] : 0; }
static void bytes(src *s, uint8_t *dst, size_t n)
{
    for (size_t k = 0; k < n; k++) dst[k] = byte(s);
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static const uint32_t tier_bits[4] = {16, 8, 4, 2};
static uint64_t pad64(uint64_t v) { return (v + 63) & ~(uint64_t)63; }
static unsigned tier_of(const uint8_t *map, uint64_t g) { return (map[g / 4] >> (2 * (g % 4))) & 3u; }

/* A heap copy of exactly n bytes (ASan then catches any read past it); NULL for 0. */
static uint8_t *exact(const uint8_t *p, uint64_t n)
{
    if (!n) return NULL;
    uint8_t *q = malloc(n);
    CHECK(q);
    memcpy(q, p, n);
    return q;
}

/* Output buffers are never NULL (nsq_dequantize_rows refuses NULL). */
static float *floats(uint64_t n)
{
    float *f = malloc(n ? n * sizeof *f : 1);
    CHECK(f);
    return f;
}

/* Per-group tier and (d, m) of a TIERED view; d = m = 0 for an F16 group. */
typedef struct {
    unsigned tier;
    float d, m;
} gparam;

static gparam *group_params(const nsq_view *view)
{
    nsq_tiered tv, *v = &tv;
    CHECK(nsq_tiered_view(view, &tv) == NSQ_OK);
    gparam *gp = malloc((v->n_groups ? v->n_groups : 1) * sizeof *gp);
    CHECK(gp);
    uint64_t rank[4] = {0, 0, 0, 0};
    for (uint64_t g = 0; g < v->n_groups; g++) {
        unsigned t = tier_of(v->tier_map, g);
        gp[g].tier = t;
        gp[g].d = gp[g].m = 0;
        if (t != NSQ_TIER_F16) {
            gp[g].d = nsq_f16_to_f32(rd16(v->params[t] + rank[t] * 4));
            gp[g].m = nsq_f16_to_f32(rd16(v->params[t] + rank[t] * 4 + 2));
        }
        rank[t]++;
    }
    return gp;
}

/* Decodes all rows and checks sub-ranges and argument checks against that. */
static float *decode_all(const nsq_view *v, const nsq_refine_view *refs, uint32_t n_ref, src *in, uint8_t r0,
                         uint8_t r1)
{
    uint64_t rows = v->rows, cols = v->cols, n = rows * cols;
    float *all = floats(n);
    CHECK(nsq_dequantize_rows(v, refs, n_ref, 0, rows, all) == NSQ_OK);
    for (int k = 0; k < 3; k++) {
        uint64_t row0 = (k ? byte(in) : r0) % (rows + 1);
        uint64_t nr = (k ? byte(in) : r1) % (rows - row0 + 1);
        float *part = floats(nr * cols);
        CHECK(nsq_dequantize_rows(v, refs, n_ref, row0, nr, part) == NSQ_OK);
        CHECK(memcmp(part, all + row0 * cols, nr * cols * sizeof *part) == 0);
        free(part);
    }
    float one;
    CHECK(nsq_dequantize_rows(v, refs, n_ref, rows, 1, &one) == NSQ_E_ARG);
    CHECK(nsq_dequantize_rows(v, refs, n_ref, 1, UINT64_MAX, &one) == NSQ_E_ARG);
    CHECK(nsq_dequantize_rows(v, refs, n_ref, 0, 0, NULL) == NSQ_E_ARG);
    if (n_ref) CHECK(nsq_dequantize_rows(v, NULL, n_ref, 0, 0, &one) == NSQ_E_ARG);
    return all;
}

/* Builds a TIERED payload of the right shape for ng groups of G from the input. */
static uint8_t *build_tiered(src *in, uint64_t ng, uint32_t G, uint64_t *size_out, int *finite)
{
    uint64_t mapb = (ng + 3) / 4, n[4] = {0, 0, 0, 0};
    uint8_t *map = calloc(mapb ? mapb : 1, 1);
    CHECK(map);
    bytes(in, map, mapb);
    if (ng % 4) map[mapb - 1] &= (uint8_t)((1u << (2 * (ng % 4))) - 1);
    for (uint64_t g = 0; g < ng; g++) n[tier_of(map, g)]++;
    uint64_t size = nsq_tiered_size(ng, G, n);
    uint8_t *buf = calloc(size ? size : 1, 1);
    CHECK(buf);
    if (mapb) memcpy(buf, map, mapb);
    uint8_t *p = buf + pad64(mapb);
    for (int t = 0; t < 4; t++) {
        uint64_t cb = n[t] * G * tier_bits[t] / 8;
        bytes(in, p, cb);
        p += pad64(cb);
        if (!t) continue;
        /* (d, m) pairs: keep them finite unless the input's high bit asks otherwise */
        for (uint64_t k = 0; k < 2 * n[t]; k++) {
            uint8_t lo = byte(in), hi = byte(in);
            if ((hi & 0x7C) == 0x7C && !(lo & 1)) hi &= 0xBF; /* mostly finite */
            if ((hi & 0x7C) == 0x7C) *finite = 0;
            p[2 * k] = lo;
            p[2 * k + 1] = hi;
        }
        p += pad64(n[t] * 4);
    }
    CHECK((uint64_t)(p - buf) == size);
    free(map);
    *size_out = size;
    return buf;
}

/* Applies corruption kind c to buf[size] (may reallocate); returns the new size. */
static uint64_t corrupt(uint8_t **buf, uint64_t size, unsigned c, uint8_t pos, uint8_t val)
{
    if (c == 1 && size) {
        (*buf)[(size - 1 - pos % size)] |= val ? val : 0x80;
    } else if (c == 2 && size) {
        size--;
    } else if (c == 3) {
        uint8_t *b = realloc(*buf, size + 1);
        CHECK(b);
        b[size] = val;
        *buf = b;
        size++;
    }
    return size;
}

/* Re-quantizes w (rows x cols, finite) with the given tiers and checks the result. */
static void requantize(const float *w, uint64_t rows, uint64_t cols, uint32_t G, const uint8_t *tiers, int weighted,
                       src *in, uint32_t nref, const uint32_t *rbits)
{
    uint64_t n = rows * cols, ng = n / G, cnt[4] = {0, 0, 0, 0};
    int all_finite = 1, small = 1;
    for (uint64_t i = 0; i < n; i++) {
        all_finite &= isfinite(w[i]) != 0;
        small &= isfinite(w[i]) && fabsf(w[i]) <= 32000.0f;
    }
    for (uint64_t g = 0; g < ng; g++) cnt[tiers[g]]++;
    float *cw = NULL;
    if (weighted) {
        cw = floats(cols);
        for (uint64_t c = 0; c < cols; c++) cw[c] = (float)byte(in) / 16.0f;
    }
    uint64_t qsize = nsq_tiered_size(ng, G, cnt);
    uint8_t *q = malloc(qsize + 1);
    CHECK(q);
    CHECK(nsq_quantize_tiered(w, rows, cols, G, tiers, cw, q, qsize + 1) == NSQ_E_ARG);
    nsq_status st = nsq_quantize_tiered(w, rows, cols, G, tiers, cw, q, qsize);
    if (!all_finite) CHECK(st == NSQ_E_ARG);
    if (small) CHECK(st == NSQ_OK);
    if (st) {
        free(q);
        free(cw);
        return;
    }
    uint8_t *qe = exact(q, qsize);
    free(q);
    nsq_view v;
    nsq_tiered tv;
    CHECK(nsq_view_init(NSQ_SCHEME_TIERED, rows, cols, G, qe, qsize, &v, NULL) == NSQ_OK);
    CHECK(nsq_tiered_view(&v, &tv) == NSQ_OK);
    for (int t = 0; t < 4; t++) CHECK(tv.n_tier[t] == cnt[t]);
    for (uint64_t g = 0; g < ng; g++) CHECK(tier_of(tv.tier_map, g) == tiers[g]);
    float *dec = floats(n);
    CHECK(nsq_dequantize_rows(&v, NULL, 0, 0, rows, dec) == NSQ_OK);
    gparam *gp = group_params(&v);
    for (uint64_t g = 0; g < ng; g++) {
        const float *x = w + g * G, *y = dec + g * G;
        float d = gp[g].d, m = gp[g].m;
        unsigned t = gp[g].tier;
        if (t == NSQ_TIER_F16) {
            for (uint32_t j = 0; j < G; j++) {
                double err = fabs((double)y[j] - x[j]);
                CHECK(err <= fabs((double)x[j]) * 0x1p-11 + 0x1p-25);
            }
            continue;
        }
        float lo = x[0], hi = x[0];
        for (uint32_t j = 1; j < G; j++) {
            lo = x[j] < lo ? x[j] : lo;
            hi = x[j] > hi ? x[j] : hi;
        }
        double qmax = (double)((1u << tier_bits[t]) - 1), mag = fmax(fabs(lo), fabs(hi));
        float dtrue = (hi - lo) / (float)qmax;
        CHECK(d >= 0);
        /* a weighted fit may place the grid past [lo, hi] to lower the weighted error */
        if (weighted) continue;
        /* every decoded value lies in [lo, hi] up to the f16 rounding of d and m */
        double tol = (mag + (hi - lo)) * 0x1p-10 + qmax * 0x1p-24 + 8 * FLT_EPSILON * (mag + qmax * d);
        for (uint32_t j = 0; j < G; j++) CHECK(y[j] >= lo - tol && y[j] <= hi + tol);
        /* min/max fit: half a step plus the rounding of d (times qmax) and m */
        double bound = 0.5 * d + fabs((double)m - lo) + qmax * fabs((double)d - dtrue) +
                       8 * FLT_EPSILON * (mag + qmax * d) + 0x1p-40;
        for (uint32_t j = 0; j < G; j++) {
            double err = fabs((double)y[j] - x[j]);
            if (!(err <= bound)) {
                fprintf(stderr, "group %llu tier %u j %u: x %.9g y %.9g err %.9g bound %.9g d %.9g m %.9g lo %.9g hi %.9g\n",
                        (unsigned long long)g, t, j, x[j], y[j], err, bound, d, m, lo, hi);
                CHECK(err <= bound);
            }
        }
    }
    /* refinement levels fitted to w on top of the re-quantized base */
    uint64_t nq = ng - cnt[NSQ_TIER_F16];
    nsq_refine_view rv[MAX_REF];
    uint8_t *rc[MAX_REF] = {NULL, NULL, NULL};
    float *cur = dec;
    for (uint32_t l = 0; l < nref; l++) {
        uint64_t rs = nsq_refine_size(nq, G, rbits[l]);
        uint8_t *r = malloc(rs + 64);
        CHECK(r);
        CHECK(nsq_quantize_refinement(w, &v, rv, l, rbits[l], r, rs + 64) == NSQ_E_ARG);
        CHECK(nsq_quantize_refinement(w, &v, rv, l, rbits[l], r, rs) == NSQ_OK);
        rc[l] = exact(r, rs);
        free(r);
        CHECK(nsq_refine_view_init(&v, rbits[l], rc[l], rs, &rv[l], NULL) == NSQ_OK);
        float *next = floats(n);
        CHECK(nsq_dequantize_rows(&v, rv, l + 1, 0, rows, next) == NSQ_OK);
        for (uint64_t g = 0; g < ng; g++) {
            float d = gp[g].d;
            if (gp[g].tier == NSQ_TIER_F16) {
                CHECK(memcmp(next + g * G, cur + g * G, G * sizeof *next) == 0);
                continue;
            }
            double step = d;
            for (uint32_t k = 0; k < l; k++) step /= (double)(1u << rbits[k]);
            for (uint32_t j = 0; j < G; j++) {
                uint64_t i = g * G + j;
                double mag = fmax(fmax(fabs(w[i]), fabs(cur[i])), fabs(next[i]));
                double slack = 16 * FLT_EPSILON * mag + step * 1e-5 + 0x1p-40;
                if (fabs((double)w[i] - cur[i]) > step / 2) continue; /* outside its cell (clamped) */
                double err = fabs((double)next[i] - w[i]), bound = step / (double)(2u << rbits[l]) + slack;
                if (!(err <= bound)) {
                    fprintf(stderr, "level %u group %llu j %u: w %.9g cur %.9g next %.9g step %.9g err %.9g bound %.9g\n",
                            l + 1, (unsigned long long)g, j, w[i], cur[i], next[i], step, err, bound);
                    CHECK(err <= bound);
                }
            }
        }
        if (cur != dec) free(cur);
        cur = next;
    }
    if (cur != dec) free(cur);
    for (uint32_t l = 0; l < nref; l++) free(rc[l]);
    free(gp);
    free(dec);
    free(qe);
    free(cw);
}

/* Unbounded shapes (h[2] bit 7): nsq_view_init must not accept a payload whose
 * size only matches modulo 2^64; the first row of an accepted view decodes. */
static int huge_shape(uint32_t scheme, uint32_t G, src *in)
{
    uint64_t rows = 0, cols = 0;
    for (int k = 0; k < 8; k++) rows |= (uint64_t)byte(in) << (8 * k);
    for (int k = 0; k < 8; k++) cols |= (uint64_t)byte(in) << (8 * k);
    if (scheme == NSQ_SCHEME_TIERED) cols = G * (cols % ((1u << 24) + 1));
    uint64_t psize = in->n - in->i;
    uint8_t *payload = exact(in->p + in->i, psize);
    nsq_view v;
    nsq_status st = nsq_view_init(scheme, rows, cols, scheme == NSQ_SCHEME_TIERED ? G : 0, payload, psize, &v, NULL);
    if (st == NSQ_OK) {
        unsigned __int128 need = (unsigned __int128)rows * cols * (scheme == NSQ_SCHEME_F32 ? 4 : 2);
        if (scheme != NSQ_SCHEME_TIERED) CHECK(need == psize);
        else {
            nsq_tiered tv;
            CHECK(nsq_tiered_view(&v, &tv) == NSQ_OK);
            CHECK(nsq_tiered_size(tv.n_groups, G, tv.n_tier) == psize && tv.n_groups * G == rows * cols);
        }
        if (rows && cols && cols <= 4096) {
            float *out = floats(cols);
            CHECK(nsq_dequantize_rows(&v, NULL, 0, rows - 1, 1, out) == NSQ_OK);
            free(out);
        }
    }
    free(payload);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    src in = {data, size, 0};
    uint8_t h[8];
    bytes(&in, h, sizeof h);
    static const uint32_t schemes[8] = {NSQ_SCHEME_F32, NSQ_SCHEME_F16, NSQ_SCHEME_BF16, NSQ_SCHEME_TIERED,
                                        NSQ_SCHEME_TIERED, NSQ_SCHEME_TIERED, NSQ_SCHEME_TIERED, NSQ_SCHEME_TIERED};
    uint32_t scheme = schemes[h[0] & 7];
    int raw = (h[0] >> 3) & 1, plain_g = (h[0] >> 4) & 1, weighted = (h[0] >> 5) & 1;
    unsigned corruption = h[0] >> 6;
    uint32_t G = 32u << (h[1] & 3), nref = (h[1] >> 2) & 3;
    uint64_t rows = (h[2] & 0x7F) % 17;
    int tiered = scheme == NSQ_SCHEME_TIERED;
    uint64_t cols = tiered ? G * (1 + h[3] % 4) : h[3] % 65;
    if (h[2] & 0x80) return huge_shape(scheme, G, &in);
    uint32_t rbits[MAX_REF];
    for (uint32_t l = 0; l < MAX_REF; l++) rbits[l] = 1u << ((h[4] >> (2 * l)) & 3);
    uint64_t n = rows * cols, esize = scheme == NSQ_SCHEME_F32 ? 4 : 2;

    /* the payload */
    uint8_t *payload;
    uint64_t psize;
    int finite = 1; /* a built TIERED payload has only finite (d, m) */
    if (raw) {
        psize = size - in.i;
        payload = exact(data + in.i, psize);
        in.i = size;
    } else {
        if (tiered) {
            payload = build_tiered(&in, n / G, G, &psize, &finite);
        } else {
            psize = n * esize;
            payload = calloc(psize ? psize : 1, 1);
            CHECK(payload);
            bytes(&in, payload, psize);
        }
        psize = corrupt(&payload, psize, corruption, h[7], byte(&in));
        uint8_t *e = exact(payload, psize);
        free(payload);
        payload = e;
    }

    nsq_view v;
    nsq_diag d;
    memset(&d, 0, sizeof d);
    nsq_status st = nsq_view_init(scheme, rows, cols, tiered || plain_g ? G : 0, payload, psize, &v, &d);
    if (st != NSQ_OK && st != NSQ_E_ARG) CHECK(d.status == st);
    if (!raw && !corruption && (!tiered || finite)) CHECK(st == NSQ_OK);
    if (st != NSQ_OK) {
        free(payload);
        return 0;
    }
    CHECK(v.rows == rows && v.cols == cols && v.scheme == scheme && v.size == psize);

    float *base = decode_all(&v, NULL, 0, &in, h[5], h[6]);

    if (!tiered) {
        /* plain schemes decode exactly */
        for (uint64_t i = 0; i < n; i++) {
            uint32_t b = fbits(base[i]);
            if (scheme == NSQ_SCHEME_F32) {
                CHECK(b == rd32(payload + 4 * i));
            } else if (scheme == NSQ_SCHEME_BF16) {
                CHECK(b == (uint32_t)rd16(payload + 2 * i) << 16);
            } else {
                uint16_t hb = rd16(payload + 2 * i);
                if (!isnan(base[i])) CHECK(nsq_f32_to_f16(base[i]) == hb);
                else CHECK((hb & 0x7C00) == 0x7C00 && (hb & 0x3FF));
            }
        }
        nsq_refine_view dummy = {.bits = 1, .codes = NULL, .size = 0};
        CHECK(nsq_refine_view_init(&v, 1, NULL, 0, &dummy, NULL) == NSQ_E_ARG);
        CHECK(nsq_dequantize_rows(&v, &dummy, 1, 0, rows, base) == NSQ_E_ARG);
        /* quantize the decoded values with tiers from the input */
        if (n && cols % G == 0) {
            uint64_t ng = n / G;
            uint8_t *tiers = malloc(ng);
            CHECK(tiers);
            for (uint64_t g = 0; g < ng; g++) tiers[g] = byte(&in) & 3;
            requantize(base, rows, cols, G, tiers, weighted, &in, nref, rbits);
            free(tiers);
        }
        free(base);
        free(payload);
        return 0;
    }

    /* TIERED: the view's bookkeeping */
    nsq_tiered tv;
    CHECK(nsq_tiered_view(&v, &tv) == NSQ_OK);
    CHECK(tv.n_groups == n / G && tv.n_tier[0] + tv.n_tier[1] + tv.n_tier[2] + tv.n_tier[3] == tv.n_groups);
    CHECK(nsq_tiered_size(tv.n_groups, G, tv.n_tier) == psize);

    /* refinement levels from the input */
    uint64_t nq = tv.n_groups - tv.n_tier[NSQ_TIER_F16];
    nsq_refine_view rv[MAX_REF];
    uint8_t *rc[MAX_REF] = {NULL, NULL, NULL};
    uint32_t have = 0;
    for (uint32_t l = 0; l < nref; l++) {
        uint64_t rs = nsq_refine_size(nq, G, rbits[l]), cb = nq * G * rbits[l] / 8;
        uint8_t *r = calloc(rs ? rs : 1, 1);
        CHECK(r);
        bytes(&in, r, cb);
        uint8_t c = byte(&in);
        if ((c & 0xF0) == 0xF0) rs = corrupt(&r, rs, c & 3, byte(&in), byte(&in));
        rc[l] = exact(r, rs);
        free(r);
        memset(&d, 0, sizeof d);
        st = nsq_refine_view_init(&v, rbits[l], rc[l], rs, &rv[l], &d);
        if (st != NSQ_OK && st != NSQ_E_ARG) CHECK(d.status == st);
        if ((c & 0xF0) != 0xF0) CHECK(st == NSQ_OK);
        if (st) break;
        have = l + 1;
    }
    nsq_refine_view tmp;
    CHECK(nsq_refine_view_init(&v, 3, rc[0], 0, &tmp, NULL) == NSQ_E_ARG);

    float *refined = base;
    if (have) {
        refined = decode_all(&v, rv, have, &in, byte(&in), byte(&in));
        /* each level moves a value by less than half its step */
        gparam *gp = group_params(&v);
        for (uint64_t g = 0; g < tv.n_groups; g++) {
            unsigned t = gp[g].tier;
            double reach = 0, step = fabs(gp[g].d);
            for (uint32_t l = 0; l < have; l++) {
                reach += step / 2;
                step /= (double)(1u << rv[l].bits);
            }
            for (uint32_t j = 0; j < G; j++) {
                uint64_t i = g * G + j;
                if (t == NSQ_TIER_F16) {
                    CHECK(memcmp(&refined[i], &base[i], sizeof base[i]) == 0);
                    continue;
                }
                double mag = fmax(fabs(base[i]), fabs(refined[i]));
                CHECK(fabs((double)refined[i] - base[i]) <= reach + 4 * have * FLT_EPSILON * (mag + reach));
            }
        }
        free(gp);
    }

    /* round trip through the quantizer with the view's tier map */
    uint8_t *tiers = malloc(tv.n_groups ? tv.n_groups : 1);
    CHECK(tiers);
    for (uint64_t g = 0; g < tv.n_groups; g++) tiers[g] = (uint8_t)tier_of(tv.tier_map, g);
    if (n) requantize(refined, rows, cols, G, tiers, weighted, &in, nref, rbits);
    free(tiers);

    if (refined != base) free(refined);
    free(base);
    for (uint32_t l = 0; l < nref; l++) free(rc[l]);
    free(payload);
    return 0;
}
