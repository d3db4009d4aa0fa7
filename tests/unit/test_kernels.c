/* test_kernels.c - the runtime's matrix kernels: every SIMD level this CPU
 * runs reproduces the scalar kernels (bit for bit for TIERED), and the scalar
 * kernels agree with libnsq's reference dequantization followed by an f32
 * product, within the int8 rounding of the activations. */
#include "testutil.h"

#include "kernels.h"

typedef struct {
    uint8_t *payload, *ref;
    wmat w;
} tmat;

static uint32_t rng = 12345;
static float frand(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (float)(rng >> 8) / 16777216.0f - 0.5f;
}

/* A rows x cols TIERED matrix with random tiers (tier_mix: 0 all four, else that tier only). */
static void make_tiered(tmat *m, uint32_t rows, uint32_t cols, uint32_t G, int tier_mix, uint32_t ref_bits)
{
    uint64_t ng = (uint64_t)rows * cols / G, n[4] = {0, 0, 0, 0};
    float *w = malloc((size_t)rows * cols * sizeof *w);
    uint8_t *tiers = malloc(ng);
    for (size_t i = 0; i < (size_t)rows * cols; i++) w[i] = frand() * (1 + (i % 7 == 0) * 4);
    for (uint64_t g = 0; g < ng; g++) {
        frand();
        tiers[g] = (uint8_t)(tier_mix ? (uint32_t)tier_mix - 1 : (rng >> 13) % 4);
        n[tiers[g]]++;
    }
    uint64_t size = nsq_tiered_size(ng, G, n);
    m->payload = malloc(size);
    assert_ok(nsq_quantize_tiered(w, rows, cols, G, tiers, NULL, m->payload, size));
    memset(&m->w, 0, sizeof m->w);
    assert_ok(nsq_view_init(NSQ_SCHEME_TIERED, rows, cols, G, m->payload, size, &m->w.v, NULL));
    m->ref = NULL;
    if (ref_bits) {
        uint64_t rs = nsq_refine_size(ng - n[0], G, ref_bits);
        m->ref = malloc(rs ? rs : 1);
        assert_ok(nsq_quantize_refinement(w, &m->w.v, NULL, 0, ref_bits, m->ref, rs));
        assert_ok(nsq_refine_view_init(&m->w.v, ref_bits, m->ref, rs, &m->w.ref[0], NULL));
        m->w.n_ref = 1;
    }
    assert_int_equal(wmat_index(&m->w), 0);
    free(w), free(tiers);
}

static void make_plain(tmat *m, uint32_t scheme, uint32_t rows, uint32_t cols)
{
    uint32_t es = scheme == NSQ_SCHEME_F32 ? 4 : 2;
    m->payload = malloc((size_t)rows * cols * es);
    for (size_t i = 0; i < (size_t)rows * cols; i++) {
        float v = frand();
        uint32_t u;
        memcpy(&u, &v, 4);
        if (scheme == NSQ_SCHEME_F32) memcpy(m->payload + 4 * i, &v, 4);
        else {
            uint16_t h = scheme == NSQ_SCHEME_F16 ? nsq_f32_to_f16(v) : (uint16_t)(u >> 16);
            m->payload[2 * i] = (uint8_t)h, m->payload[2 * i + 1] = (uint8_t)(h >> 8);
        }
    }
    memset(&m->w, 0, sizeof m->w);
    m->ref = NULL;
    assert_ok(nsq_view_init(scheme, rows, cols, 0, m->payload, (uint64_t)rows * cols * es, &m->w.v, NULL));
}

static void free_mat(tmat *m)
{
    free(m->payload), free(m->ref), free(m->w.rank);
}

static float max_abs(const float *a, size_t n)
{
    float m = 0;
    for (size_t i = 0; i < n; i++) m = fmaxf(m, fabsf(a[i]));
    return m;
}

/* y = rows [r0, r1) of W times x for n tokens, at every level; all within 1e-5 of scalar. */
static void check_rows(const tmat *m, uint32_t n, uint32_t r0, uint32_t r1)
{
    uint32_t in = (uint32_t)m->w.v.cols, R = r1 - r0;
    float *x = malloc((size_t)n * in * sizeof *x), *ys = calloc((size_t)n * R, sizeof *ys),
          *yk = calloc((size_t)n * R, sizeof *yk), *row = malloc(in * sizeof *row);
    for (size_t i = 0; i < (size_t)n * in; i++) x[i] = frand() * (i % 97 == 5 ? 3000 : 3); /* with outliers */
    act8 a = {0};
    assert_int_equal(act8_reserve(&a, n, in), 0);
    act8_quantize(&a, x, n, in);
    kern_rows(KERN_SCALAR, &m->w, 0, x, &a, n, r0, r1, ys, R);
    /* scalar vs decode-then-multiply: only the int8 rounding of x differs */
    for (uint32_t r = r0; r < r1; r++) {
        wmat_row(&m->w, r, row);
        for (uint32_t t = 0; t < n; t++) {
            /* bound: each x moves by at most half its block's step */
            double ref = 0, bound = 1e-6, mag = 0;
            for (uint32_t i = 0; i < in; i++) {
                ref += (double)row[i] * x[t * in + i];
                mag += fabs((double)row[i] * x[t * in + i]);
                bound += fabs((double)row[i]) * 0.5 * a.s[t * act8_blocks(in) + i / QBLOCK];
            }
            assert_true(fabs(ys[t * R + r - r0] - ref) <= bound + 1e-5 * mag);
        }
    }
    for (kern_level k = KERN_AVX2; k <= kern_detect(); k++) {
        kern_rows(k, &m->w, 0, x, &a, n, r0, r1, yk, R);
        /* TIERED: bit for bit (the int8 rounding downstream amplifies any
         * difference); plain schemes: within f32 reassociation */
        float tol = m->w.v.scheme == NSQ_SCHEME_TIERED ? 0 : 1e-5f * max_abs(ys, (size_t)n * R);
        for (size_t i = 0; i < (size_t)n * R; i++)
            if (!(fabsf(yk[i] - ys[i]) <= tol))
                fail_msg("%s: output %zu is %.9g, scalar %.9g (n=%u)", kern_name(k), i, yk[i], ys[i], n);
    }
    act8_free(&a);
    free(x), free(ys), free(yk), free(row);
}

static void test_tiered_every_tier(void **state)
{
    (void)state;
    for (int mix = 0; mix <= 4; mix++) {
        tmat m;
        make_tiered(&m, 37, 256, 64, mix, 0);
        for (uint32_t n = 1; n <= 9; n++) check_rows(&m, n, 0, 37);
        check_rows(&m, 5, 3, 20);
        free_mat(&m);
    }
    tmat m; /* 37 groups a row: rows start mid-byte of the tier map, lists span words */
    make_tiered(&m, 6, 37 * 64, 64, 0, 0);
    check_rows(&m, 1, 0, 6);
    check_rows(&m, 5, 1, 6);
    free_mat(&m);
}

static void test_tiered_group_sizes_and_refinements(void **state)
{
    (void)state;
    uint32_t sizes[] = {32, 64, 128, 256};
    for (size_t i = 0; i < 4; i++)
        for (uint32_t rb = 0; rb <= 2; rb += 2) {
            tmat m;
            make_tiered(&m, 9, 512, sizes[i], 0, rb);
            /* rows decoded group by group give libnsq's row decode, bit for bit */
            float *ref = malloc(9 * 512 * sizeof *ref), row[512];
            assert_ok(nsq_dequantize_rows(&m.w.v, m.w.ref, m.w.n_ref, 0, 9, ref));
            for (uint32_t r = 0; r < 9; r++) {
                wmat_row(&m.w, r, row);
                assert_memory_equal(row, ref + r * 512, sizeof row);
            }
            free(ref);
            check_rows(&m, 1, 0, 9);
            check_rows(&m, 6, 2, 9);
            free_mat(&m);
        }
}

static void test_plain_rows_and_cols(void **state)
{
    (void)state;
    uint32_t schemes[] = {NSQ_SCHEME_F32, NSQ_SCHEME_F16, NSQ_SCHEME_BF16};
    for (size_t s = 0; s < 3; s++) {
        tmat m;
        make_plain(&m, schemes[s], 45, 70); /* odd sizes: vector bodies and tails */
        for (uint32_t n = 1; n <= 5; n += 4) check_rows(&m, n, 0, 45);
        /* in-major: the stored [45][70] matrix read as 70 outputs of 45 inputs */
        float x[2 * 45], ys[2 * 70], yk[2 * 70];
        for (int i = 0; i < 90; i++) x[i] = frand();
        kern_cols(KERN_SCALAR, &m.w, 0, x, 2, 0, 70, ys, 70);
        for (uint32_t o = 0; o < 70; o++) {
            double ref = 0;
            for (uint32_t i = 0; i < 45; i++) {
                float rowbuf[70];
                wmat_row(&m.w, i, rowbuf);
                ref += (double)rowbuf[o] * x[i];
            }
            assert_true(fabs(ys[o] - ref) <= 1e-4);
        }
        for (kern_level k = KERN_AVX2; k <= kern_detect(); k++) {
            kern_cols(k, &m.w, 0, x, 2, 0, 70, yk, 70);
            for (int i = 0; i < 140; i++) assert_true(fabsf(yk[i] - ys[i]) <= 1e-5f * max_abs(ys, 140));
        }
        free_mat(&m);
    }
}

/* Rounding to int8: every block's largest magnitude maps to +-127 and the
 * stored sums match the codes. */
static void test_act8(void **state)
{
    (void)state;
    float x[2 * 96]; /* two rows of 96: a full block and a half one each */
    for (int i = 0; i < 192; i++) x[i] = frand() * (float)(1 + i);
    x[5] = 0;
    act8 a = {0};
    assert_int_equal(act8_reserve(&a, 2, 96), 0);
    act8_quantize(&a, x, 2, 96);
    for (int b = 0; b < 4; b++) {
        int sum = 0, peak = 0, t = b / 2, len = b % 2 ? 32 : 64;
        for (int j = 0; j < len; j++) {
            int at = t * 96 + (b % 2) * 64 + j, q = a.q[at];
            sum += q;
            peak = abs(q) > peak ? abs(q) : peak;
            assert_true(fabsf(q * a.s[b] - x[at]) <= 0.5f * a.s[b] * 1.0001f);
        }
        assert_int_equal(peak, 127);
        assert_true(fabsf(a.ms[b] - a.s[b] * (float)sum) <= 1e-6f * fabsf(a.ms[b]) + 1e-30f);
    }
    act8_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiered_every_tier),
        cmocka_unit_test(test_tiered_group_sizes_and_refinements),
        cmocka_unit_test(test_plain_rows_and_cols),
        cmocka_unit_test(test_act8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
