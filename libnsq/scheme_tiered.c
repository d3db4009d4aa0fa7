/* scheme_tiered.c - the TIERED scheme: its record and payload rules, the
 * reference (scalar) decoding with refinements, and quantization. Runtimes
 * add SIMD kernels on top; this file is the definition they are tested
 * against. */
#include "scheme.h"

#include <math.h>
#include <stdlib.h>

static const char *const tier_names[4] = {"f16", "q8", "q4", "q2"};

const char *nsq_tier_name(uint32_t tier) { return tier < 4 ? tier_names[tier] : NULL; }

static uint64_t pad64(uint64_t v) { return nsq__pad64(v); }

/* A view's private state (nsq_view.state_): groups per tier, each stream's
 * offset in the payload, and the group count. */
enum { ST_TIER = 0, ST_CODES = 4, ST_PARAMS = 8, ST_GROUPS = 12 };
static inline uint64_t n_groups(const nsq_view *v) { return v->state_[ST_GROUPS]; }
static inline uint64_t n_tier(const nsq_view *v, uint32_t t) { return v->state_[ST_TIER + t]; }
static inline const uint8_t *codes_of(const nsq_view *v, uint32_t t) { return v->data + v->state_[ST_CODES + t]; }
static inline const uint8_t *params_of(const nsq_view *v, uint32_t t) { return v->data + v->state_[ST_PARAMS + t]; }

uint64_t nsq_tiered_size(uint64_t n_groups, uint32_t g, const uint64_t n[4])
{
    uint64_t s = pad64((n_groups + 3) / 4) + pad64(n[0] * 2 * g);
    for (int t = 1; t < 4; t++) s += pad64(n[t] * g * nsq_tier_bits(t) / 8) + pad64(n[t] * 4);
    return s;
}

uint64_t nsq_refine_size(uint64_t n_quant_groups, uint32_t g, uint32_t bits)
{
    return pad64(n_quant_groups * g * bits / 8);
}

static int valid_group_size(uint32_t g) { return g == 32 || g == 64 || g == 128 || g == 256; }
static int valid_refine_bits(uint32_t k) { return k == 1 || k == 2 || k == 4 || k == 8; }

/* ---- the tensor record ---- */

/* Q2 is the smallest tier; padding only adds */
static uint64_t min_size(uint64_t n_groups, uint32_t g) { return pad64((n_groups + 3) / 4) + n_groups * (g / 4 + 4); }

/* F16 is the largest tier; seven streams may each carry < 64 bytes of padding */
static uint64_t max_size(uint64_t n_groups, uint32_t g)
{
    return pad64((n_groups + 3) / 4) + n_groups * 2 * g + 7 * (NSQ__TENSOR_ALIGN - 1);
}

static nsq_status check_record(const nsq__tensor *t, uint32_t refinements, nsq_diag *d)
{
    uint64_t off = t->record_off;
    uint32_t g = t->group_size;
    if (t->n_dims != 2 || !valid_group_size(g) || t->cols % g)
        return nsq__fail(d, NSQ_E_DIRECTORY, off, "R-TEN-7", "tensor %s: TIERED needs 2 dims and group_size 32..256 dividing %llu",
                         t->name, (unsigned long long)t->cols);
    uint64_t ng = t->n_elements / g;
    if (t->size < min_size(ng, g) || t->size > max_size(ng, g))
        return nsq__fail(d, NSQ_E_DIRECTORY, off, "R-TEN-6", "tensor %s: size %llu impossible for %llu groups", t->name,
                         (unsigned long long)t->size, (unsigned long long)ng);
    if (t->n_refine > refinements)
        return nsq__fail(d, NSQ_E_DIRECTORY, off, "R-TEN-8", "tensor %s: %u refinement levels, its block has %u", t->name,
                         t->n_refine, refinements);
    for (uint32_t l = 0; l < t->n_refine; l++) {
        uint32_t k = t->refine[l].bits;
        if (!valid_refine_bits(k))
            return nsq__fail(d, NSQ_E_DIRECTORY, off, "R-TEN-9", "tensor %s: refinement bits %u not 1, 2, 4 or 8", t->name, k);
        if (t->refine[l].size > pad64(ng * g * k / 8))
            return nsq__fail(d, NSQ_E_DIRECTORY, off, "R-TEN-9", "tensor %s: refinement %u size too large", t->name, l + 1);
    }
    return NSQ_OK;
}

/* The group size and payload are checked by the view that follows. */
static nsq_status check_add(uint32_t scheme, const char *name, uint32_t n_dims, uint64_t n, uint32_t group_size,
                            uint64_t size, nsq_diag *d)
{
    (void)scheme, (void)n, (void)group_size, (void)size;
    if (n_dims != 2) return nsq__fail(d, NSQ_E_ARG, UINT64_MAX, "R-TEN-7", "%s: TIERED tensors have 2 dims", name);
    return NSQ_OK;
}

/* ---- the payload ---- */

static inline uint32_t tier_of(const uint8_t *map, uint64_t g) { return (map[g / 4] >> (2 * (g % 4))) & 3u; }

/* Code j of a group record of G codes at b bits goes to byte j % (G*b/8),
 * plane j / (G*b/8) (spec: Code packing). */
static inline void code_put(uint8_t *rec, uint32_t G, uint32_t b, uint32_t j, uint32_t q)
{
    uint32_t stride = G * b / 8;
    rec[j % stride] |= (uint8_t)(q << (b * (j / stride)));
}

static nsq_status bad(nsq_diag *d, const uint8_t *base, const uint8_t *at, const char *rule, const char *what)
{
    return nsq__fail(d, NSQ_E_TENSOR, (uint64_t)(at - base), rule, "%s (at payload byte %llu)", what,
                     (unsigned long long)(at - base));
}

/* Fills the state of a view of ng groups (nsq_view_init set its fields). */
static nsq_status view_tiered(nsq_view *v, uint64_t ng, nsq_diag *d)
{
    const uint8_t *p = v->data;
    uint32_t G = v->group_size;
    uint64_t mapb = (ng + 3) / 4, *n = v->state_ + ST_TIER;
    v->state_[ST_GROUPS] = ng;
    if (!ng) /* empty matrix: data may be NULL, so do no pointer arithmetic on it */
        return v->size ? nsq__fail(d, NSQ_E_TENSOR, 0, "R-TIER-3", "payload is %llu bytes, its tier map implies 0",
                                   (unsigned long long)v->size)
                       : NSQ_OK;
    if (v->size < pad64(mapb)) return bad(d, v->data, p, "R-TIER-1", "payload shorter than its tier map");
    for (uint64_t g = 0; g < ng; g++) n[tier_of(p, g)]++;
    if (ng % 4 && (p[mapb - 1] >> (2 * (ng % 4))))
        return bad(d, v->data, p + mapb - 1, "R-TIER-2", "unused tier map bits are not zero");
    if (!nsq__all_zero(p + mapb, pad64(mapb) - mapb)) return bad(d, v->data, p + mapb, "R-TIER-2", "map padding not zero");
    if (nsq_tiered_size(ng, G, n) != v->size)
        return nsq__fail(d, NSQ_E_TENSOR, 0, "R-TIER-3", "payload is %llu bytes, its tier map implies %llu",
                         (unsigned long long)v->size, (unsigned long long)nsq_tiered_size(ng, G, n));
    p += pad64(mapb);
    for (int t = 0; t < 4; t++) {
        uint64_t cb = n[t] * G * nsq_tier_bits(t) / 8, pb = t ? n[t] * 4 : 0;
        v->state_[ST_CODES + t] = (uint64_t)(p - v->data);
        if (!nsq__all_zero(p + cb, pad64(cb) - cb)) return bad(d, v->data, p + cb, "R-TIER-2", "stream padding not zero");
        p += pad64(cb);
        if (!t) continue;
        v->state_[ST_PARAMS + t] = (uint64_t)(p - v->data);
        for (uint64_t i = 0; i < 2 * n[t]; i++)
            if (!isfinite(nsq_f16_to_f32(nsq__rd16(p + 2 * i))))
                return bad(d, v->data, p + 2 * i, "R-TIER-4", "a scale or minimum is not finite");
        if (!nsq__all_zero(p + pb, pad64(pb) - pb)) return bad(d, v->data, p + pb, "R-TIER-2", "stream padding not zero");
        p += pad64(pb);
    }
    return NSQ_OK;
}

static nsq_status view(nsq_view *v, nsq_diag *d)
{
    if (!valid_group_size(v->group_size) || v->cols % v->group_size) return NSQ_E_ARG;
    return view_tiered(v, v->rows * v->cols / v->group_size, d); /* nsq_view_init checked the product */
}

nsq_status nsq_tiered_view(const nsq_view *v, nsq_tiered *out)
{
    if (!v || !out || v->scheme != NSQ_SCHEME_TIERED) return NSQ_E_ARG;
    memset(out, 0, sizeof *out);
    out->n_groups = n_groups(v);
    if (!out->n_groups) return NSQ_OK; /* no streams: data may be NULL */
    out->tier_map = v->data;
    for (uint32_t t = 0; t < 4; t++) {
        out->n_tier[t] = n_tier(v, t);
        out->codes[t] = codes_of(v, t);
        out->params[t] = t ? params_of(v, t) : NULL;
    }
    return NSQ_OK;
}

static nsq_status refine_view(const nsq_view *base, const nsq_tensor_refinement *part, const uint8_t *codes,
                              nsq_refine_view *out, nsq_diag *d)
{
    uint32_t bits = part->bits;
    uint64_t size = part->size;
    if (!valid_refine_bits(bits)) return NSQ_E_ARG;
    uint64_t nq = n_groups(base) - n_tier(base, NSQ_TIER_F16);
    uint64_t cb = nq * base->group_size * bits / 8;
    if (size != pad64(cb))
        return nsq__fail(d, NSQ_E_TENSOR, 0, "R-TIER-5", "refinement is %llu bytes, %llu quantized groups need %llu",
                         (unsigned long long)size, (unsigned long long)nq, (unsigned long long)pad64(cb));
    if (size > cb && !nsq__all_zero(codes + cb, size - cb)) /* codes may be NULL when size is 0 */
        return nsq__fail(d, NSQ_E_TENSOR, cb, "R-TIER-2", "refinement padding not zero");
    memset(out, 0, sizeof *out);
    out->bits = bits;
    out->codes = codes;
    out->size = size;
    return NSQ_OK;
}

/* Decodes one group (global index g, rank idx[t] within its tier stream and
 * rank qidx among quantized groups) into out[G]. Codes are unpacked plane by
 * plane (code j: byte j % stride, plane j / stride), loops that vectorize. */
static void dequant_group(const nsq_view *v, const nsq_refine_view *refs, uint32_t n_ref, uint32_t t, uint64_t rank,
                          uint64_t qrank, float *out)
{
    uint32_t G = v->group_size, b = nsq_tier_bits(t);
    if (t == NSQ_TIER_F16) {
        const uint8_t *h = codes_of(v, 0) + rank * 2 * G;
        for (uint32_t j = 0; j < G; j++) out[j] = nsq_f16_to_f32(nsq__rd16(h + 2 * j));
        return;
    }
    uint32_t stride = G * b / 8;
    const uint8_t *rec = codes_of(v, t) + rank * stride, *pm = params_of(v, t) + rank * 4;
    float dd = nsq_f16_to_f32(nsq__rd16(pm)), m = nsq_f16_to_f32(nsq__rd16(pm + 2)), step = dd;
    for (uint32_t p = 0; p < 8 / b; p++)
        for (uint32_t i = 0; i < stride; i++) {
            float prod = dd * (float)((rec[i] >> (b * p)) & ((1u << b) - 1)); /* rounded separately: no FMA */
            out[p * stride + i] = prod + m;
        }
    for (uint32_t l = 0; l < n_ref; l++) {
        uint32_t k = refs[l].bits, rs = G * k / 8;
        const uint8_t *rr = refs[l].codes + qrank * rs;
        float denom = (float)(1u << (k + 1));
        for (uint32_t p = 0; p < 8 / k; p++)
            for (uint32_t i = 0; i < rs; i++) {
                float c = (float)(2 * ((rr[i] >> (k * p)) & ((1u << k) - 1)) + 1) / denom - 0.5f;
                float prod = step * c;
                out[p * rs + i] = out[p * rs + i] + prod;
            }
        step = step / (float)(1u << k);
    }
}

static nsq_status dequantize(const nsq_view *v, const nsq_refine_view *refs, uint32_t n_ref, uint64_t row0,
                             uint64_t nrows, float *out)
{
    uint32_t G = v->group_size;
    uint64_t gpr = v->cols / G, g0 = row0 * gpr, g1 = (row0 + nrows) * gpr, rank[4] = {0, 0, 0, 0};
    for (uint64_t g = 0; g < g0; g++) rank[tier_of(v->data, g)]++;
    for (uint64_t g = g0; g < g1; g++) {
        uint32_t t = tier_of(v->data, g);
        dequant_group(v, refs, n_ref, t, rank[t], g - rank[0], out + (g - g0) * G);
        rank[t]++;
    }
    return NSQ_OK;
}

nsq_status nsq_dequantize_group(const nsq_view *v, const nsq_refine_view *refs, uint32_t n_ref, uint64_t g,
                                const uint64_t rank[4], float *out)
{
    if (!v || !rank || !out || (n_ref && !refs) || v->scheme != NSQ_SCHEME_TIERED || g >= n_groups(v)) return NSQ_E_ARG;
    uint32_t t = tier_of(v->data, g);
    /* ranks past a stream's end or a quantized rank past the refinement codes would read out of bounds */
    if (rank[t] >= n_tier(v, t) || rank[0] > g || (t && g - rank[0] >= n_groups(v) - n_tier(v, 0))) return NSQ_E_ARG;
    dequant_group(v, refs, n_ref, t, rank[t], g - rank[0], out);
    return NSQ_OK;
}

/* ---- quantization ---- */

/* Weighted squared error of quantizing x[G] with (d, m) at b bits; writes codes to q if non-NULL. */
static double group_error(const float *x, const float *wt, uint32_t G, uint32_t b, float d, float m, uint8_t *q)
{
    uint32_t qmax = (1u << b) - 1;
    double err = 0;
    for (uint32_t j = 0; j < G; j++) {
        float r = d > 0 ? nearbyintf((x[j] - m) / d) : 0;
        uint32_t c = r < 0 ? 0 : r > (float)qmax ? qmax : (uint32_t)r;
        float prod = d * (float)c;
        double e = (double)(prod + m) - x[j];
        err += (wt ? wt[j] : 1.0) * e * e;
        if (q) q[j] = (uint8_t)c;
    }
    return err;
}

static int f16_ok(float v) { return isfinite(nsq_f16_to_f32(nsq_f32_to_f16(v))); }

/* Codes of x[G] for an affine map of [lo, lo + qmax / iscale] onto 0..qmax. */
static void codes_for(const float *x, uint32_t G, float qmax, float lo, float iscale, uint8_t *q)
{
    for (uint32_t j = 0; j < G; j++) {
        float r = nearbyintf(iscale * (x[j] - lo));
        q[j] = (uint8_t)(r < 0 ? 0 : r > qmax ? qmax : r);
    }
}

/* The (d, m) minimising sum wt (d q + m - x)^2 for fixed codes q; -1 when
 * the codes do not determine both (fewer than two distinct weighted codes). */
static int lsq_fit(const float *x, const float *wt, const uint8_t *q, uint32_t G, float *d, float *m)
{
    double sw = 0, sq = 0, sqq = 0, sx = 0, sqx = 0;
    for (uint32_t j = 0; j < G; j++) {
        double w = wt[j], c = q[j];
        sw += w, sq += w * c, sqq += w * c * c, sx += w * x[j], sqx += w * c * x[j];
    }
    double det = sw * sqq - sq * sq;
    if (!(det > 1e-9 * sw * sqq)) return -1;
    *d = (float)((sw * sqx - sq * sx) / det);
    *m = (float)((sqq * sx - sq * sqx) / det);
    return *d > 0 && f16_ok(*d) && f16_ok(*m) ? 0 : -1;
}

typedef struct {
    double err;
    uint16_t d, m;
} fit;

/* Rounds (d, m) to f16 and keeps them in *best if their weighted error is lower. */
static void try_fit(const float *x, const float *wt, uint32_t G, uint32_t b, float d, float m, fit *best)
{
    uint16_t d16 = nsq_f32_to_f16(d), m16 = nsq_f32_to_f16(m);
    double e = group_error(x, wt, G, b, nsq_f16_to_f32(d16), nsq_f16_to_f32(m16), NULL);
    if (e < best->err) *best = (fit){e, d16, m16};
}

/* Chooses f16 (d, m) for one group: min/max; with weights, also the weighted
 * least-squares fit to the codes of a range of scales around min/max's, then
 * a few rounds of re-coding and re-fitting the best. min/max is a candidate,
 * so the weighted error is never worse than its. */
static nsq_status fit_group(const float *x, const float *wt, uint32_t G, uint32_t b, uint16_t *dh, uint16_t *mh)
{
    float lo = x[0], hi = x[0];
    for (uint32_t j = 1; j < G; j++) {
        if (isnan(x[j])) return NSQ_E_ARG; /* a NaN slips past the min/max comparisons */
        lo = x[j] < lo ? x[j] : lo;
        hi = x[j] > hi ? x[j] : hi;
    }
    if (!f16_ok(lo) || !f16_ok(hi) || !f16_ok(hi - lo)) return NSQ_E_ARG;
    float qmax = (float)((1u << b) - 1), d, m;
    fit best = {INFINITY, 0, 0};
    try_fit(x, wt, G, b, (hi - lo) / qmax, lo, &best);
    if (!wt || hi == lo) {
        *dh = best.d, *mh = best.m;
        return NSQ_OK;
    }
    uint8_t q[256];
    int steps = b == 8 ? 4 : 20;
    for (int k = 0; k <= steps; k++) { /* the K-quant style range sweep: qmax - 0.5 .. qmax + 1.5 steps */
        codes_for(x, G, qmax, lo, (qmax - 0.5f + 2.0f * (float)k / (float)steps) / (hi - lo), q);
        if (!lsq_fit(x, wt, q, G, &d, &m)) try_fit(x, wt, G, b, d, m, &best);
    }
    for (int it = 0; it < 2; it++) {
        float bd = nsq_f16_to_f32(best.d), bm = nsq_f16_to_f32(best.m);
        if (!(bd > 0)) break;
        codes_for(x, G, qmax, bm, 1.0f / bd, q);
        if (lsq_fit(x, wt, q, G, &d, &m)) break;
        try_fit(x, wt, G, b, d, m, &best);
    }
    *dh = best.d, *mh = best.m;
    return NSQ_OK;
}

nsq_status nsq_quantize_tiered(const float *w, uint64_t rows, uint64_t cols, uint32_t G, const uint8_t *tiers,
                               const float *col_weight, uint8_t *out, uint64_t out_size)
{
    if (!w || !tiers || !out || !valid_group_size(G) || cols % G) return NSQ_E_ARG;
    uint64_t ng = rows * cols / G, n[4] = {0, 0, 0, 0};
    for (uint64_t g = 0; g < ng; g++) {
        if (tiers[g] > 3) return NSQ_E_ARG;
        n[tiers[g]]++;
    }
    if (out_size != nsq_tiered_size(ng, G, n)) return NSQ_E_ARG;
    memset(out, 0, out_size);
    uint8_t *codes[4], *params[4] = {NULL, NULL, NULL, NULL}, *p = out + pad64((ng + 3) / 4);
    for (int t = 0; t < 4; t++) {
        codes[t] = p;
        p += pad64(n[t] * G * nsq_tier_bits(t) / 8);
        if (t) {
            params[t] = p;
            p += pad64(n[t] * 4);
        }
    }
    uint64_t rank[4] = {0, 0, 0, 0};
    uint8_t q[256];
    for (uint64_t g = 0; g < ng; g++) {
        uint32_t t = tiers[g];
        const float *x = w + g * G, *wt = col_weight ? col_weight + (g % (cols / G)) * G : NULL;
        out[g / 4] |= (uint8_t)(t << (2 * (g % 4)));
        if (t == NSQ_TIER_F16) {
            for (uint32_t j = 0; j < G; j++) {
                if (!f16_ok(x[j])) return NSQ_E_ARG;
                nsq__wr16(codes[0] + (rank[0] * G + j) * 2, nsq_f32_to_f16(x[j]));
            }
        } else {
            uint16_t dh = 0, mh = 0;
            uint32_t b = nsq_tier_bits(t);
            if (fit_group(x, wt, G, b, &dh, &mh)) return NSQ_E_ARG;
            nsq__wr16(params[t] + rank[t] * 4, dh);
            nsq__wr16(params[t] + rank[t] * 4 + 2, mh);
            group_error(x, NULL, G, b, nsq_f16_to_f32(dh), nsq_f16_to_f32(mh), q);
            uint8_t *rec = codes[t] + rank[t] * G * b / 8;
            for (uint32_t j = 0; j < G; j++) code_put(rec, G, b, j, q[j]);
        }
        rank[t]++;
    }
    return NSQ_OK;
}

nsq_status nsq_quantize_refinement(const float *w, const nsq_view *v, const nsq_refine_view *lower, uint32_t n_lower,
                                   uint32_t bits, uint8_t *out, uint64_t out_size)
{
    if (!w || !v || !out || v->scheme != NSQ_SCHEME_TIERED || (n_lower && !lower) || !valid_refine_bits(bits))
        return NSQ_E_ARG;
    uint32_t G = v->group_size;
    uint64_t ng = n_groups(v), nq = ng - n_tier(v, 0), rank[4] = {0, 0, 0, 0};
    if (out_size != nsq_refine_size(nq, G, bits)) return NSQ_E_ARG;
    memset(out, 0, out_size);
    float cur[256];
    uint32_t rmax = (1u << bits) - 1;
    for (uint64_t g = 0; g < ng; g++) {
        uint32_t t = tier_of(v->data, g);
        uint64_t qr = g - rank[0];
        dequant_group(v, lower, n_lower, t, rank[t], qr, cur);
        if (t != NSQ_TIER_F16) {
            const uint8_t *pm = params_of(v, t) + rank[t] * 4;
            float step = nsq_f16_to_f32(nsq__rd16(pm));
            for (uint32_t l = 0; l < n_lower; l++) step = step / (float)(1u << lower[l].bits);
            uint8_t *rec = out + qr * G * bits / 8;
            for (uint32_t j = 0; j < G; j++) {
                float r = step > 0 ? nearbyintf((w[g * G + j] - cur[j]) / step * (float)(1u << bits) +
                                                ((float)(1u << bits) - 1) / 2)
                                   : 0;
                code_put(rec, G, bits, j, r < 0 ? 0 : r > (float)rmax ? rmax : (uint32_t)r);
            }
        }
        rank[t]++;
    }
    return NSQ_OK;
}

const nsq__scheme nsq__scheme_tiered = {NSQ_SCHEME_TIERED, "tiered", 0, 1, check_record, check_add, view, refine_view,
                                        dequantize};
