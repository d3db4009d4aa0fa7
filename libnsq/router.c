/* router.c - the block router's parameters: parsing and evaluation. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>

#define ROUTER_HEADER 32u

static int all_finite(const uint8_t *p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (!isfinite(nsq__rdf32(p + 4 * i))) return 0;
    return 1;
}

static nsq_status check_masks(const nsq_file *f, const nsq_router *r, uint64_t off, nsq_diag *d)
{
    for (uint32_t b = 0; b < r->block_count; b++) {
        uint8_t m = r->choice_mask[b];
        const nsq_block *blk = &f->blocks[b].b;
        int edge = blk->kind != NSQ_BLOCK_LAYERS;
        if (m == 0 || (m & ~7u) || ((m & NSQ_ROUTE_FULL) && blk->refinement_count == 0) ||
            (edge && ((m & NSQ_ROUTE_SKIP) || !(m & NSQ_ROUTE_BASE))))
            return nsq__fail(d, NSQ_E_ROUTER, off + b, "R-RTR-3", "block %u choice mask 0x%02x is invalid", b, m);
    }
    return NSQ_OK;
}

nsq_status nsq__parse_router(nsq_file *f, const nsq__section *s, nsq_diag *d)
{
    nsq_router *r = &f->router;
    if (s->size < ROUTER_HEADER) return nsq__fail(d, NSQ_E_ROUTER, s->offset, "R-RTR-1", "section shorter than 32 bytes");
    const uint8_t *p = s->data;
    r->feature = nsq__rd32(p);
    r->input_dim = nsq__rd32(p + 4);
    r->hidden_dim = nsq__rd32(p + 8);
    r->activation = nsq__rd32(p + 12);
    r->block_count = nsq__rd32(p + 16);
    r->temperature = nsq__rdf32(p + 20);
    uint64_t hidden;
    nsq_meta_u64(f, "model.hidden_size", 0, &hidden);
    if (nsq__rd64(p + 24)) return nsq__fail(d, NSQ_E_RESERVED, s->offset + 24, "R-RTR-1", "reserved bytes are not zero");
    if (r->feature != 1 || r->input_dim != hidden || r->hidden_dim > NSQ__MAX_ROUTER_HIDDEN ||
        r->activation > NSQ_ACT_TANH || r->block_count != f->block_count || !isfinite(r->temperature) ||
        r->temperature <= 0)
        return nsq__fail(d, NSQ_E_ROUTER, s->offset, "R-RTR-2",
                         "feature %u, input_dim %u, hidden_dim %u, activation %u, block_count %u or temperature invalid",
                         r->feature, r->input_dim, r->hidden_dim, r->activation, r->block_count);
    uint64_t in = r->input_dim, h = r->hidden_dim, out = 3ull * r->block_count;
    uint64_t masks = nsq__align_up(r->block_count, 4);
    uint64_t floats = 2 * in + (h ? h * in + h + out * h + out : out * in + out); /* < 2^50: no overflow */
    if (s->size != ROUTER_HEADER + masks + 4 * floats)
        return nsq__fail(d, NSQ_E_ROUTER, s->offset, "R-RTR-4", "section is %llu bytes, the shape needs %llu",
                         (unsigned long long)s->size, (unsigned long long)(ROUTER_HEADER + masks + 4 * floats));
    r->choice_mask = p + ROUTER_HEADER;
    nsq_status st = check_masks(f, r, s->offset + ROUTER_HEADER, d);
    if (st) return st;
    if (!nsq__all_zero(p + ROUTER_HEADER + r->block_count, masks - r->block_count))
        return nsq__fail(d, NSQ_E_ROUTER, s->offset + ROUTER_HEADER + r->block_count, "R-RTR-5", "mask padding not zero");
    const uint8_t *q = p + ROUTER_HEADER + masks;
    if (!all_finite(q, floats))
        return nsq__fail(d, NSQ_E_ROUTER, s->offset + ROUTER_HEADER + masks, "R-RTR-6", "a parameter is not finite");
    r->in_mean = q;
    r->in_scale = q + 4 * in;
    q += 8 * in;
    if (h) {
        r->w1 = q;
        r->b1 = q + 4 * h * in;
        q += 4 * (h * in + h);
    }
    r->w2 = q;
    r->b2 = q + 4 * out * (h ? h : in);
    f->has_router = 1;
    return NSQ_OK;
}

nsq_status nsq_router_get(const nsq_file *f, nsq_router *out)
{
    if (!f->has_router) return NSQ_E_NOT_FOUND;
    *out = f->router;
    return NSQ_OK;
}

static float act(uint32_t a, float v)
{
    return a == NSQ_ACT_RELU ? (v > 0 ? v : 0) : a == NSQ_ACT_TANH ? tanhf(v) : v;
}

nsq_status nsq_router_eval(const nsq_router *r, const float *x, float *y)
{
    if (!r || !x || !y) return NSQ_E_ARG;
    uint64_t in = r->input_dim, h = r->hidden_dim, out = 3ull * r->block_count;
    float *z = malloc((in + h + 1) * sizeof *z), *hid = z + in;
    if (!z) return NSQ_E_NOMEM;
    for (uint64_t i = 0; i < in; i++) z[i] = (x[i] - nsq_f32_at(r->in_mean, i)) * nsq_f32_at(r->in_scale, i);
    for (uint64_t j = 0; j < h; j++) {
        float acc = nsq_f32_at(r->b1, j);
        for (uint64_t i = 0; i < in; i++) acc += nsq_f32_at(r->w1, j * in + i) * z[i];
        hid[j] = act(r->activation, acc);
    }
    const float *v = h ? hid : z;
    uint64_t vn = h ? h : in;
    for (uint64_t o = 0; o < out; o++) {
        float acc = nsq_f32_at(r->b2, o);
        for (uint64_t i = 0; i < vn; i++) acc += nsq_f32_at(r->w2, o * vn + i) * v[i];
        y[o] = acc;
    }
    free(z);
    return NSQ_OK;
}
