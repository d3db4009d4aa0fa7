/* test_kernels_lattice.c - the runtime's LATTICE kernels on payloads built
 * here per the format (random codes and scales): the E8 decode tables give
 * libnsq's code values; the int8 product is a float64 product of libnsq's
 * rotated-basis rows with the same int8-rounded rotated activations, up to
 * f32 rounding; the exact product is libnsq's original-basis rows times x;
 * every SIMD level, every split of the rows and the thread pool give the
 * scalar output bit for bit. */
#include "testutil.h"

#include "kernels_impl.h"
#include "nsqrt.h"

static tu_rng rng = {0x1A77u};

typedef struct {
    uint8_t *payload;
    wmat w;
} lmat;

/* A finite f16 scale of either sign over a wide range (subnormals included). */
static uint16_t rand_scale(void)
{
    float v = ldexpf(tu_unif(&rng, 1.0f, 2.0f), (int)tu_below(&rng, 26) - 22);
    return tu_f32_to_f16_ref(tu_below(&rng, 4) ? v : -v);
}

/* A rows x cols LATTICE matrix with blocks of B and the stages' kinds, all
 * random, laid out per the format. */
static void make_lattice(lmat *m, uint32_t rows, uint32_t cols, uint32_t B, uint32_t S, const uint32_t *kinds)
{
    uint64_t nb = cols / B, size = tu_pad64(64) + tu_pad64(cols / 8), off;
    for (uint32_t s = 0; s < S; s++) size += tu_pad64(2 * (uint64_t)rows * nb) + tu_pad64((uint64_t)rows * cols * nsq_lattice_kind_bits(kinds[s]) / 8);
    assert_int_equal(nsq_lattice_payload_size(rows, cols, B, S, kinds), size);
    uint8_t *p = m->payload = calloc(size, 1);
    p[0] = (uint8_t)S;
    for (uint32_t s = 0; s < S; s++) p[1 + s] = (uint8_t)kinds[s];
    for (uint32_t i = 0; i < cols / 8; i++) p[64 + i] = (uint8_t)tu_next(&rng);
    off = 64 + tu_pad64(cols / 8);
    for (uint32_t s = 0; s < S; s++) {
        for (uint64_t i = 0; i < rows * nb; i++) tu_wr16(p + off + 2 * i, rand_scale());
        off += tu_pad64(2 * (uint64_t)rows * nb);
        uint64_t n = (uint64_t)rows * cols * nsq_lattice_kind_bits(kinds[s]) / 8;
        for (uint64_t i = 0; i < n; i++) p[off + i] = (uint8_t)tu_next(&rng);
        off += tu_pad64(n);
    }
    memset(&m->w, 0, sizeof m->w);
    assert_ok(nsq_view_init(NSQ_SCHEME_LATTICE, rows, cols, B, p, size, &m->w.v, NULL));
    assert_int_equal(wmat_index(&m->w), 0);
}

/* n tokens of activations with outliers. */
static float *rand_x(uint32_t n, uint32_t in)
{
    float *x = malloc((size_t)n * in * sizeof *x);
    for (size_t i = 0; i < (size_t)n * in; i++) x[i] = tu_unif(&rng, -3, 3) * (tu_below(&rng, 97) ? 1.0f : 1000.0f);
    return x;
}

static void assert_same(const float *got, const float *want, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (tu_f32_bits(got[i]) != tu_f32_bits(want[i])) fail_msg("%s: output %zu is %.9g, want %.9g", what, i, got[i], want[i]);
}

typedef struct {
    const wmat *w;
    const act8 *a;
    uint32_t n, rows, slice;
    float *y;
} pool_job;

static void pool_task(void *ctx, uint32_t task)
{
    const pool_job *j = ctx;
    uint32_t r0 = task * j->slice, r1 = r0 + j->slice < j->rows ? r0 + j->slice : j->rows;
    kern_rows(kern_detect(), j->w, 0, NULL, j->a, j->n, r0, r1, j->y + r0, j->rows);
}

/* The same output at every level and any split of the rows: slices, an
 * offset into the matrix, and the pool at 1 and 2 threads. */
static void check_levels_and_splits(const lmat *m, const act8 *a, uint32_t n, const float *ys)
{
    uint32_t R = (uint32_t)m->w.v.rows;
    float *yk = calloc((size_t)n * R, sizeof *yk);
    for (kern_level k = KERN_AVX2; k <= kern_detect(); k++) {
        kern_rows(k, &m->w, 0, NULL, a, n, 0, R, yk, R);
        assert_same(yk, ys, (size_t)n * R, kern_name(k));
        for (uint32_t r0 = 0; r0 < R; r0 += 5) /* slices of 5 rows, each through the offset */
            kern_rows(k, &m->w, r0, NULL, a, n, 0, r0 + 5 < R ? 5 : R - r0, yk + r0, R);
        assert_same(yk, ys, (size_t)n * R, "slices");
    }
    for (uint32_t threads = 1; threads <= 2; threads++) {
        nsqrt_pool *p = nsqrt_pool_create(threads);
        pool_job j = {&m->w, a, n, R, 3, yk};
        memset(yk, 0, (size_t)n * R * sizeof *yk);
        nsqrt_pool_run(p, pool_task, &j, (R + 2) / 3);
        nsqrt_pool_free(p);
        assert_same(yk, ys, (size_t)n * R, threads == 1 ? "1 thread" : "2 threads");
    }
    free(yk);
}

/* kern_rows against sum_j W'[r][j] * (q_j * s_b) in float64, over x' = R x
 * rounded to int8; W' from libnsq's rotated-basis decode, whose stage sums
 * are the only f32 roundings the kernel does not share. */
static void check_int8(const lmat *m, uint32_t n)
{
    uint32_t R = (uint32_t)m->w.v.rows, in = (uint32_t)m->w.v.cols, nba = act8_blocks(in);
    float *x = rand_x(n, in), *xr = malloc((size_t)n * in * sizeof *xr), *rot = malloc((size_t)R * in * sizeof *rot);
    float *ys = calloc((size_t)n * R, sizeof *ys);
    act8 a = {0};
    assert_true(kern_rotates(NSQ_SCHEME_LATTICE) && wmat_int8(&m->w));
    kern_rotate(&m->w, x, n, xr);
    assert_int_equal(act8_reserve(&a, n, in), 0);
    act8_quantize(&a, xr, n, in);
    assert_ok(nsq_lattice_rows_rotated(&m->w.v, 0, R, rot));
    kern_rows(KERN_SCALAR, &m->w, 0, NULL, &a, n, 0, R, ys, R);
    for (uint32_t r = 0; r < R; r++)
        for (uint32_t t = 0; t < n; t++) {
            double ref = 0, mag = 0;
            for (uint32_t j = 0; j < in; j++) {
                double term = (double)rot[(size_t)r * in + j] * a.q[(size_t)t * in + j] * a.s[(size_t)t * nba + j / QBLOCK];
                ref += term, mag += fabs(term);
            }
            double got = ys[(size_t)t * R + r];
            if (!(fabs(got - ref) <= 4e-6 * mag + 1e-30))
                fail_msg("row %u token %u: %.9g, float64 %.9g (magnitude %.3g)", r, t, got, ref, mag);
        }
    check_levels_and_splits(m, &a, n, ys);
    act8_free(&a);
    free(x), free(xr), free(rot), free(ys);
}

/* kern_rows_f32 over x' against libnsq's original-basis rows times x, and
 * every level against scalar; wmat_row is libnsq's original-basis row. */
static void check_exact(const lmat *m, uint32_t n)
{
    uint32_t R = (uint32_t)m->w.v.rows, in = (uint32_t)m->w.v.cols;
    float *x = rand_x(n, in), *xr = malloc((size_t)n * in * sizeof *xr), *orig = malloc((size_t)R * in * sizeof *orig);
    float *rot = malloc((size_t)R * in * sizeof *rot), *ys = malloc((size_t)n * R * sizeof *ys), *row = malloc(in * sizeof *row);
    float *yk = malloc((size_t)n * R * sizeof *yk);
    kern_rotate(&m->w, x, n, xr);
    assert_ok(nsq_dequantize_rows(&m->w.v, NULL, 0, 0, R, orig));
    assert_ok(nsq_lattice_rows_rotated(&m->w.v, 0, R, rot));
    kern_rows_f32(KERN_SCALAR, &m->w, 0, xr, n, 0, R, ys, R);
    for (uint32_t r = 0; r < R; r++) {
        wmat_row(&m->w, r, row);
        assert_memory_equal(row, orig + (size_t)r * in, in * sizeof *row);
        for (uint32_t t = 0; t < n; t++) {
            double ref = 0, mag = 0;
            for (uint32_t j = 0; j < in; j++) {
                ref += (double)orig[(size_t)r * in + j] * x[(size_t)t * in + j];
                mag += fabs((double)orig[(size_t)r * in + j] * x[(size_t)t * in + j]) +
                       fabs((double)rot[(size_t)r * in + j] * xr[(size_t)t * in + j]);
            }
            double got = ys[(size_t)t * R + r];
            if (!(fabs(got - ref) <= 1e-5 * mag + 1e-30))
                fail_msg("exact row %u token %u: %.9g, float64 %.9g (magnitude %.3g)", r, t, got, ref, mag);
        }
    }
    for (kern_level k = KERN_AVX2; k <= kern_detect(); k++) {
        kern_rows_f32(k, &m->w, 0, xr, n, 0, R, yk, R);
        assert_same(yk, ys, (size_t)n * R, kern_name(k));
    }
    free(x), free(xr), free(orig), free(rot), free(ys), free(row), free(yk);
}

/* Every code: the tables give libnsq's 4v, and SIGN bytes their +-1. */
static void test_e8_tables(void **state)
{
    (void)state;
    lmat m;
    uint32_t kinds[1] = {NSQ_LAT_E8};
    make_lattice(&m, 1, 8, 8, 1, kinds); /* wmat_index builds the tables */
    for (uint32_t c = 0; c < 65536; c++) {
        int8_t want[8];
        uint64_t got = kern_e8_word(c);
        nsq_lattice_e8_value((uint16_t)c, want);
        for (int k = 0; k < 8; k++)
            if ((int8_t)(uint8_t)(got >> 8 * k) != want[k])
                fail_msg("code 0x%04x coordinate %d: %d, want %d", c, k, (int8_t)(uint8_t)(got >> 8 * k), want[k]);
    }
    for (uint32_t b = 0; b < 256; b++)
        for (int k = 0; k < 8; k++) assert_int_equal((int8_t)(uint8_t)(kern_sign8[b] >> 8 * k), b >> k & 1 ? -1 : 1);
    free(m.payload);
}

typedef struct {
    uint32_t rows, cols, B, S, kinds[4];
} shape;

static const shape shapes[] = {
    {13, 40, 8, 1, {NSQ_LAT_E8}},                   /* 5 blocks: a short group, a short activation block */
    {37, 200, 8, 2, {NSQ_LAT_E8, NSQ_LAT_SIGN}},    /* 25 blocks: 3 groups and a tail */
    {11, 272, 16, 2, {NSQ_LAT_SIGN, NSQ_LAT_INT8}}, /* 17 blocks */
    {9, 608, 32, 4, {NSQ_LAT_E8, NSQ_LAT_E8, NSQ_LAT_E8, NSQ_LAT_E8}},
    {21, 256, 32, 1, {NSQ_LAT_INT8}},
    {7, 704, 64, 2, {NSQ_LAT_E8, NSQ_LAT_INT8}},    /* 11 blocks of one activation block each */
    {15, 640, 128, 1, {NSQ_LAT_E8}},                /* 5 blocks: masked lanes */
    {6, 2304, 256, 2, {NSQ_LAT_E8, NSQ_LAT_E8}},    /* 9 blocks */
    {5, 256, 256, 3, {NSQ_LAT_INT8, NSQ_LAT_SIGN, NSQ_LAT_E8}},
    {3, 2048, 1024, 1, {NSQ_LAT_E8}},
};

static void test_int8_products(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const shape *s = &shapes[i];
        lmat m;
        make_lattice(&m, s->rows, s->cols, s->B, s->S, s->kinds);
        uint32_t ns[] = {1, 4, 5, 9};
        for (size_t k = 0; k < 4; k++) check_int8(&m, ns[k]);
        free(m.payload);
    }
}

static void test_exact_products(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const shape *s = &shapes[i];
        lmat m;
        make_lattice(&m, s->rows, s->cols, s->B, s->S, s->kinds);
        check_exact(&m, 1);
        check_exact(&m, 3);
        free(m.payload);
    }
}

/* R x against R as a matrix, c * H_B * D per block, in float64. */
static void test_rotation(void **state)
{
    (void)state;
    uint32_t Bs[] = {8, 32, 128, 512}, in = 1024, kinds[1] = {NSQ_LAT_SIGN};
    for (size_t i = 0; i < 4; i++) {
        uint32_t B = Bs[i];
        lmat m;
        make_lattice(&m, 1, in, B, 1, kinds);
        float *x = rand_x(1, in), *xr = malloc(in * sizeof *xr);
        kern_rotate(&m.w, x, 1, xr);
        for (uint32_t r = 0; r < in; r++) {
            double ref = 0, mag = 0;
            for (uint32_t j = r / B * B; j < (r / B + 1) * B; j++) {
                int h = __builtin_popcount((r % B) & (j % B)) & 1, neg = m.w.lv.signs[j / 8] >> (j % 8) & 1;
                ref += (h ^ neg ? -1.0 : 1.0) * x[j] / sqrt((double)B);
                mag += fabs(x[j]) / sqrt((double)B);
            }
            assert_true(fabs(xr[r] - ref) <= 1e-6 * mag);
        }
        free(x), free(xr), free(m.payload);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e8_tables),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_int8_products),
        cmocka_unit_test(test_exact_products),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
