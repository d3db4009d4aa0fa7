/* scheme.c - the storage-scheme table, and the public calls that check or
 * decode a payload by asking its scheme's entry. */
#include "scheme.h"

static const nsq__scheme *const schemes[] = {&nsq__scheme_f32, &nsq__scheme_f16, &nsq__scheme_bf16,
                                             &nsq__scheme_tiered, &nsq__scheme_lattice};

const nsq__scheme *nsq__scheme_of(uint32_t id)
{
    for (size_t i = 0; i < sizeof schemes / sizeof *schemes; i++)
        if (schemes[i]->id == id) return schemes[i];
    return NULL;
}

nsq_status nsq_scheme_get(uint32_t scheme, nsq_scheme_info *out)
{
    const nsq__scheme *s = nsq__scheme_of(scheme);
    if (!out) return NSQ_E_ARG;
    if (!s) return NSQ_E_NOT_FOUND;
    *out = (nsq_scheme_info){s->name, s->elem_bits, s->grouped};
    return NSQ_OK;
}

nsq_status nsq_view_init(uint32_t scheme, uint64_t rows, uint64_t cols, uint32_t group_size, const uint8_t *data,
                         uint64_t size, nsq_view *v, nsq_diag *d)
{
    if (!v || (!data && size)) return NSQ_E_ARG;
    memset(v, 0, sizeof *v);
    v->scheme = scheme;
    v->group_size = group_size;
    v->rows = rows;
    v->cols = cols;
    v->data = data;
    v->size = size;
    uint64_t n;
    const nsq__scheme *s = nsq__scheme_of(scheme);
    if (nsq__mul(rows, cols, &n) || !s) return NSQ_E_ARG;
    return s->view(v, d);
}

nsq_status nsq__refine_view(const nsq_view *base, const nsq_tensor_refinement *part, const uint8_t *codes,
                            nsq_refine_view *out, nsq_diag *d)
{
    const nsq__scheme *s = base ? nsq__scheme_of(base->scheme) : NULL;
    if (!s || !s->refine_view || !out || (!codes && part->size)) return NSQ_E_ARG;
    return s->refine_view(base, part, codes, out, d);
}

nsq_status nsq_refine_view_init(const nsq_view *base, uint32_t bits, const uint8_t *codes, uint64_t size,
                                nsq_refine_view *out, nsq_diag *d)
{
    nsq_tensor_refinement part = {(uint8_t)bits, {0, 0, 0}, 0, size};
    if (!base || base->scheme != NSQ_SCHEME_TIERED || bits > 255) return NSQ_E_ARG;
    return nsq__refine_view(base, &part, codes, out, d);
}

nsq_status nsq_lattice_refine_view_init(const nsq_view *base, uint32_t n_stages, const uint32_t *kinds,
                                        const uint8_t *data, uint64_t size, nsq_refine_view *out, nsq_diag *d)
{
    nsq_tensor_refinement part = {(uint8_t)n_stages, {0, 0, 0}, 0, size};
    if (!base || base->scheme != NSQ_SCHEME_LATTICE || n_stages > 3 || (n_stages && !kinds)) return NSQ_E_ARG;
    for (uint32_t s = 0; s < n_stages; s++) {
        if (!nsq_lattice_kind_bits(kinds[s])) return NSQ_E_ARG;
        part.kind[s] = (uint8_t)kinds[s];
    }
    return nsq__refine_view(base, &part, data, out, d);
}

nsq_status nsq_dequantize_rows(const nsq_view *v, const nsq_refine_view *refs, uint32_t n_ref, uint64_t row0,
                               uint64_t nrows, float *out)
{
    uint64_t end;
    const nsq__scheme *s = v ? nsq__scheme_of(v->scheme) : NULL;
    if (!s || !out || (n_ref && !refs) || nsq__add(row0, nrows, &end) || end > v->rows) return NSQ_E_ARG;
    return s->dequantize(v, refs, n_ref, row0, nrows, out);
}
