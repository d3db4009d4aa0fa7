/* scheme_dense.c - the F32, F16 and BF16 schemes: every element stored as
 * is, row-major, no header and no padding (spec: F32, F16, BF16). */
#include "scheme.h"

static uint64_t elem_bytes(uint32_t scheme) { return nsq__scheme_of(scheme)->elem_bits / 8; }

static nsq_status check_record(const nsq__tensor *t, uint32_t refinements, nsq_diag *d)
{
    (void)refinements;
    uint64_t off = t->record_off;
    if (t->group_size || t->n_refine)
        return nsq__fail(d, NSQ_E_DIRECTORY, off, "R-TEN-5", "tensor %s: group_size/n_refine must be 0 for this scheme",
                         t->name);
    if (t->size != t->n_elements * elem_bytes(t->scheme))
        return nsq__fail(d, NSQ_E_DIRECTORY, off, "R-TEN-6", "tensor %s: size %llu, expected %llu", t->name,
                         (unsigned long long)t->size, (unsigned long long)(t->n_elements * elem_bytes(t->scheme)));
    return NSQ_OK;
}

static nsq_status check_add(uint32_t scheme, const char *name, uint32_t n_dims, uint64_t n, uint32_t group_size,
                            uint64_t size, nsq_diag *d)
{
    (void)n_dims;
    if (group_size || size != n * elem_bytes(scheme))
        return nsq__fail(d, NSQ_E_ARG, UINT64_MAX, "R-TEN-6", "%s: %llu bytes for %llu elements", name,
                         (unsigned long long)size, (unsigned long long)n);
    return NSQ_OK;
}

/* size == es * n without computing es * n, which can wrap for a huge rows x cols */
static nsq_status view(nsq_view *v, nsq_diag *d)
{
    uint64_t es = elem_bytes(v->scheme), n = v->rows * v->cols; /* nsq_view_init checked the product */
    if (v->size % es == 0 && v->size / es == n) return NSQ_OK;
    return nsq__fail(d, NSQ_E_TENSOR, 0, "R-TEN-6", es == 4 ? "F32 size mismatch" : "16-bit size mismatch");
}

static nsq_status dequantize(const nsq_view *v, const nsq_refine_view *refs, uint32_t n_ref, uint64_t row0,
                             uint64_t nrows, float *out)
{
    (void)refs;
    if (n_ref) return NSQ_E_ARG;
    uint64_t n = nrows * v->cols, first = row0 * v->cols;
    const uint8_t *p = v->data;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t k = first + i;
        out[i] = v->scheme == NSQ_SCHEME_F32   ? nsq__rdf32(p + 4 * k)
                 : v->scheme == NSQ_SCHEME_F16 ? nsq_f16_to_f32(nsq__rd16(p + 2 * k))
                                               : nsq_bf16_to_f32(nsq__rd16(p + 2 * k));
    }
    return NSQ_OK;
}

const nsq__scheme nsq__scheme_f32 = {NSQ_SCHEME_F32, "f32", 32, 0, check_record, check_add, view, NULL, dequantize};
const nsq__scheme nsq__scheme_f16 = {NSQ_SCHEME_F16, "f16", 16, 0, check_record, check_add, view, NULL, dequantize};
const nsq__scheme nsq__scheme_bf16 = {NSQ_SCHEME_BF16, "bf16", 16, 0, check_record, check_add, view, NULL, dequantize};
