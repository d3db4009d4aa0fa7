/* kernels_dense.c - the F32, F16 and BF16 schemes' kernels: f32 products
 * with the elements as stored, out-major (rows) or in-major (columns); the
 * x86 SIMD products are in kernels_x86.c. */
#include "kernels_impl.h"

float kern_plain_at(const wmat *w, uint64_t k)
{
    const uint8_t *p = w->v.data;
    switch (w->v.scheme) {
    case NSQ_SCHEME_F32: return nsq_f32_at(p, k);
    case NSQ_SCHEME_F16: return nsq_f16_to_f32(rd16(p + 2 * k));
    default: return nsq_bf16_to_f32(rd16(p + 2 * k));
    }
}

static void rows_plain_scalar(const wmat *w, uint32_t off, const float *x, uint32_t n, uint32_t r0, uint32_t r1,
                              float *y, uint32_t ys)
{
    uint64_t in = w->v.cols;
    for (uint32_t r = r0; r < r1; r++)
        for (uint32_t t = 0; t < n; t++) {
            float acc = 0;
            for (uint64_t i = 0; i < in; i++) acc += kern_plain_at(w, ((uint64_t)off + r) * in + i) * x[t * in + i];
            y[(size_t)t * ys + r - r0] = acc;
        }
}

static void dense_rows(kern_level k, const wmat *w, uint32_t off, const float *x, const act8 *a, uint32_t n,
                       uint32_t r0, uint32_t r1, float *y, uint32_t ys)
{
    (void)a;
    if (k == KERN_SCALAR || !kern_x86_rows_dense(k, w, off, x, n, r0, r1, y, ys)) rows_plain_scalar(w, off, x, n, r0, r1, y, ys);
}

static void dense_cols(kern_level k, const wmat *w, uint32_t off, const float *x, uint32_t n, uint32_t c0, uint32_t c1,
                       float *y, uint32_t ys)
{
    if (k != KERN_SCALAR && kern_x86_cols_dense(k, w, off, x, n, c0, c1, y, ys)) return;
    uint64_t ld = w->v.cols, in = w->v.rows;
    for (uint32_t t = 0; t < n; t++) {
        float *yt = y + (size_t)t * ys;
        for (uint32_t c = c0; c < c1; c++) yt[c - c0] = 0;
        for (uint64_t i = 0; i < in; i++) {
            float xi = x[t * in + i];
            for (uint32_t c = c0; c < c1; c++) yt[c - c0] += xi * kern_plain_at(w, i * ld + off + c);
        }
    }
}

static void dense_row(const wmat *w, uint32_t r, float *out)
{
    const nsq_view *v = &w->v;
    for (uint64_t i = 0; i < v->cols; i++) out[i] = kern_plain_at(w, (uint64_t)r * v->cols + i);
}

const kern_scheme kern_scheme_f32 = {NSQ_SCHEME_F32, NULL, 0, 0, NULL, NULL, dense_rows, NULL, dense_cols, dense_row};
const kern_scheme kern_scheme_f16 = {NSQ_SCHEME_F16, NULL, 0, 0, NULL, NULL, dense_rows, NULL, dense_cols, dense_row};
const kern_scheme kern_scheme_bf16 = {NSQ_SCHEME_BF16, NULL, 0, 0, NULL, NULL, dense_rows, NULL, dense_cols, dense_row};
