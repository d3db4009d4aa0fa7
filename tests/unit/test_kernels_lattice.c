/* test_kernels_lattice.c - the runtime's LATTICE kernels on payloads built
 * here per the format (random codes and scales): the E8 decode tables give
 * libnsq's code values; the int8 product is a float64 product of libnsq's
 * rotated-basis rows with the same int8-rounded rotated activations, up to
 * f32 rounding; the exact product is libnsq's original-basis rows times x;
 * every SIMD level, every split of the rows and the thread pool give the
 * scalar output bit for bit. Then the forward pass of a small model of such
 * matrices against the f32 model of their decoded weights. */
#include "testutil.h"

#include "kernels_impl.h"
#include "nsqrt.h"

static tu_rng rng = {0x1A77u};

typedef struct {
    uint8_t *payload;
    wmat w;
} lmat;

/* A finite f16 scale of either sign: over a wide range (subnormals
 * included), or for a model, giving weights of about 1/sqrt(cols) (each
 * stage a third of the one before). */
static uint16_t rand_scale(int for_model, uint32_t kind, uint32_t stage, uint32_t cols)
{
    float v = ldexpf(tu_unif(&rng, 1.0f, 2.0f), (int)tu_below(&rng, 26) - 22);
    if (for_model)
        v = tu_unif(&rng, 0.5f, 1.5f) * powf(0.3f, (float)stage) / sqrtf((float)cols) *
            (kind == NSQ_LAT_E8 ? 0.8f : kind == NSQ_LAT_SIGN ? 1.0f : kind == NSQ_LAT_E8S ? 2.0f : 1 / 74.0f);
    return tu_f32_to_f16_ref(tu_below(&rng, 4) ? v : -v);
}

/* A rows x cols LATTICE payload with blocks of B and the stages' kinds, laid
 * out per the format: random codes and scales, and signs (random when NULL). */
static uint8_t *lattice_payload(uint32_t rows, uint32_t cols, uint32_t B, uint32_t S, const uint32_t *kinds,
                                const uint8_t *signs, int for_model, uint64_t *size)
{
    uint64_t nb = cols / B, off;
    *size = tu_pad64(64) + tu_pad64(cols / 8);
    for (uint32_t s = 0; s < S; s++) *size += tu_pad64(2 * (uint64_t)rows * nb) + tu_pad64((uint64_t)rows * cols * nsq_lattice_kind_bits(kinds[s]) / 8);
    assert_int_equal(nsq_lattice_payload_size(rows, cols, B, S, kinds), *size);
    uint8_t *p = calloc(*size, 1);
    p[0] = (uint8_t)S;
    for (uint32_t s = 0; s < S; s++) p[1 + s] = (uint8_t)kinds[s];
    for (uint32_t i = 0; i < cols / 8; i++) p[64 + i] = signs ? signs[i] : (uint8_t)tu_next(&rng);
    off = 64 + tu_pad64(cols / 8);
    for (uint32_t s = 0; s < S; s++) {
        for (uint64_t i = 0; i < rows * nb; i++) tu_wr16(p + off + 2 * i, rand_scale(for_model, kinds[s], s, cols));
        off += tu_pad64(2 * (uint64_t)rows * nb);
        uint64_t n = (uint64_t)rows * cols * nsq_lattice_kind_bits(kinds[s]) / 8;
        for (uint64_t i = 0; i < n; i++) p[off + i] = (uint8_t)tu_next(&rng);
        off += tu_pad64(n);
    }
    return p;
}

static void make_lattice(lmat *m, uint32_t rows, uint32_t cols, uint32_t B, uint32_t S, const uint32_t *kinds)
{
    uint64_t size;
    m->payload = lattice_payload(rows, cols, B, S, kinds, NULL, 0, &size);
    memset(&m->w, 0, sizeof m->w);
    assert_ok(nsq_view_init(NSQ_SCHEME_LATTICE, rows, cols, B, m->payload, size, &m->w.v, NULL));
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
    act8 a = {.chunks = 1};
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
    act8 plain = {0}; /* no chunk layout: every level takes the scalar kernel */
    float *yp = calloc((size_t)n * R, sizeof *yp);
    assert_int_equal(act8_reserve(&plain, n, in), 0);
    act8_quantize(&plain, xr, n, in);
    kern_rows(kern_detect(), &m->w, 0, NULL, &plain, n, 0, R, yp, R);
    assert_same(yp, ys, (size_t)n * R, "without chunks");
    act8_free(&a), act8_free(&plain);
    free(x), free(xr), free(rot), free(ys), free(yp);
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

/* Every code: the tables give libnsq's 4v (E8S's also biased, coordinate
 * by coordinate), and SIGN bytes their +-1. */
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
    for (uint32_t b = 0; b < 256; b++) {
        int8_t want[8];
        nsq_lattice_e8s_value((uint8_t)b, want);
        for (int k = 0; k < 8; k++) {
            assert_int_equal((int8_t)(uint8_t)(kern_sign8[b] >> 8 * k), b >> k & 1 ? -1 : 1);
            assert_int_equal((int8_t)(uint8_t)(kern_e8s8[b] >> 8 * k), want[k]);
            assert_int_equal(kern_e8s_col[k][b], want[k] + 16);
        }
    }
    free(m.payload);
}

typedef struct {
    uint32_t rows, cols, B, S, kinds[4];
} shape;

static const shape shapes[] = {
    {13, 40, 8, 1, {NSQ_LAT_E8}},                   /* 5 blocks: a short group, a short activation block */
    {37, 200, 8, 2, {NSQ_LAT_E8, NSQ_LAT_SIGN}},    /* 25 blocks: 3 groups and a tail */
    {19, 120, 8, 2, {NSQ_LAT_E8S, NSQ_LAT_E8}},     /* 15 blocks: a tail */
    {11, 272, 16, 2, {NSQ_LAT_SIGN, NSQ_LAT_INT8}}, /* 17 blocks */
    {10, 336, 16, 2, {NSQ_LAT_E8S, NSQ_LAT_SIGN}},  /* 21 blocks */
    {9, 608, 32, 4, {NSQ_LAT_E8, NSQ_LAT_E8, NSQ_LAT_E8, NSQ_LAT_E8}},
    {8, 800, 32, 4, {NSQ_LAT_E8S, NSQ_LAT_E8, NSQ_LAT_E8S, NSQ_LAT_INT8}}, /* a short last chunk */
    {21, 256, 32, 1, {NSQ_LAT_INT8}},
    {7, 704, 64, 2, {NSQ_LAT_E8, NSQ_LAT_INT8}},    /* 11 blocks of one activation block each */
    {15, 640, 128, 1, {NSQ_LAT_E8}},                /* 5 blocks: masked lanes */
    {12, 640, 128, 1, {NSQ_LAT_E8S}},
    {6, 2304, 256, 2, {NSQ_LAT_E8, NSQ_LAT_E8}},    /* 9 blocks */
    {5, 256, 256, 3, {NSQ_LAT_INT8, NSQ_LAT_SIGN, NSQ_LAT_E8}},
    {3, 2048, 1024, 1, {NSQ_LAT_E8}},
    {4, 4096, 2048, 3, {NSQ_LAT_E8, NSQ_LAT_SIGN, NSQ_LAT_E8S}}, /* blocks of four 512-column chunks */
    {6, 1536, 512, 2, {NSQ_LAT_E8, NSQ_LAT_E8}},
    {5, 1536, 512, 2, {NSQ_LAT_E8S, NSQ_LAT_E8S}},
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

/* ---- a model: the forward pass over LATTICE matrices ---- */
enum { HID = 64, LAYERS = 2, TOKENS = 8 };

typedef struct {
    const char *name;
    uint32_t rows, cols, B, S, kinds[4];
    int shared; /* takes the layer's shared signs (q, k, v: one rotation of their input) */
} mspec;

static const mspec layer_mats[] = {
    {"self_attn.q_proj.weight", HID, HID, 64, 2, {NSQ_LAT_E8, NSQ_LAT_E8}, 1},
    {"self_attn.k_proj.weight", HID / 2, HID, 64, 1, {NSQ_LAT_E8}, 1},
    {"self_attn.v_proj.weight", HID / 2, HID, 64, 2, {NSQ_LAT_SIGN, NSQ_LAT_INT8}, 1},
    {"self_attn.o_proj.weight", HID, HID, 16, 2, {NSQ_LAT_E8S, NSQ_LAT_E8}, 0},
    {"mlp.gate_proj.weight", 2 * HID, HID, 8, 1, {NSQ_LAT_E8}, 0},
    {"mlp.up_proj.weight", 2 * HID, HID, 32, 1, {NSQ_LAT_INT8}, 0},
    {"mlp.down_proj.weight", HID, 2 * HID, 128, 2, {NSQ_LAT_E8, NSQ_LAT_E8S}, 0},
};

/* The matrix as LATTICE, or (f32) as the F32 tensor of its decoded weights. */
static void add_matrix(nsq_writer *w, const char *name, const mspec *m, const uint8_t *signs, int f32)
{
    uint64_t size, dims[2] = {m->rows, m->cols};
    uint8_t *p = lattice_payload(m->rows, m->cols, m->B, m->S, m->kinds, m->shared ? signs : NULL, 1, &size);
    if (!f32) {
        assert_ok(nsq_writer_add_tensor(w, name, NSQ_SCHEME_LATTICE, 2, dims, m->B, p, size));
    } else {
        nsq_view v;
        float *x = malloc((size_t)m->rows * m->cols * sizeof *x);
        assert_ok(nsq_view_init(NSQ_SCHEME_LATTICE, m->rows, m->cols, m->B, p, size, &v, NULL));
        assert_ok(nsq_dequantize_rows(&v, NULL, 0, 0, m->rows, x));
        assert_ok(nsq_writer_add_tensor(w, name, NSQ_SCHEME_F32, 2, dims, 0, (const uint8_t *)x, 4 * (uint64_t)m->rows * m->cols));
        free(x);
    }
    free(p);
}

static void add_ones(nsq_writer *w, const char *name)
{
    uint8_t p[4 * HID];
    uint64_t dims[1] = {HID};
    for (int i = 0; i < HID; i++) tu_wr32(p + 4 * i, tu_f32_bits(1.0f));
    assert_ok(nsq_writer_add_tensor(w, name, NSQ_SCHEME_F32, 1, dims, 0, p, sizeof p));
}

/* A llama model of random LATTICE matrices, or (f32) its decoded twin: the
 * same random draws either way. */
static void write_model(const char *path, int f32)
{
    nsq_writer *w;
    char name[96];
    const mspec embed = {0, TU_VOCAB, HID, 32, 1, {NSQ_LAT_E8}, 0}, head = {0, TU_VOCAB, HID, 64, 2, {NSQ_LAT_E8, NSQ_LAT_INT8}, 0};
    rng.s = 77;
    assert_ok(nsq_writer_open(path, &w, NULL));
    assert_ok(tu_write_required_meta(w, LAYERS, HID, NULL));
    assert_ok(tu_write_tokenizer(w));
    assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_EMBEDDINGS, 0, 0, NSQ_COMP_NONE));
    add_matrix(w, "model.embed_tokens.weight", &embed, NULL, f32);
    assert_ok(nsq_writer_end_block(w, NULL));
    for (uint32_t L = 0; L < LAYERS; L++) {
        uint8_t signs[HID / 8];
        for (int i = 0; i < HID / 8; i++) signs[i] = (uint8_t)tu_next(&rng);
        assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_LAYERS, L, 1, NSQ_COMP_NONE));
        snprintf(name, sizeof name, "model.layers.%u.input_layernorm.weight", L);
        add_ones(w, name);
        snprintf(name, sizeof name, "model.layers.%u.post_attention_layernorm.weight", L);
        add_ones(w, name);
        for (size_t i = 0; i < sizeof layer_mats / sizeof *layer_mats; i++) {
            snprintf(name, sizeof name, "model.layers.%u.%s", L, layer_mats[i].name);
            add_matrix(w, name, &layer_mats[i], signs, f32);
        }
        assert_ok(nsq_writer_end_block(w, NULL));
    }
    assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_OUTPUT, 0, 0, NSQ_COMP_NONE));
    add_ones(w, "model.norm.weight");
    add_matrix(w, "lm_head.weight", &head, NULL, f32);
    assert_ok(nsq_writer_end_block(w, NULL));
    assert_ok(nsq_writer_finish(w, NULL));
}

/* Logits of every position of a fixed prompt, at a kernel level (NULL: the best). */
static float *run_model(const char *path, int exact, uint32_t threads, const char *level)
{
    static const int32_t tokens[TOKENS] = {1, 5, 9, 30, 2, 17, 17, 4};
    nsqrt_opts o = {0};
    nsqrt_model *m;
    char err[512];
    if (level) setenv("NSQ_KERNELS", level, 1);
    else unsetenv("NSQ_KERNELS");
    if (nsqrt_open(path, &o, &m, err, sizeof err)) fail_msg("%s", err);
    nsqrt_state *s = nsqrt_state_new(m, TOKENS, threads);
    float *logits = malloc(TOKENS * TU_VOCAB * sizeof *logits);
    assert_non_null(s);
    nsqrt_state_set_exact(s, exact);
    assert_int_equal(nsqrt_forward(m, s, tokens, TOKENS, 0, logits, 1), 0);
    nsqrt_state_free(s);
    nsqrt_close(m);
    unsetenv("NSQ_KERNELS");
    return logits;
}

static float max_diff(const float *a, const float *b, float *peak)
{
    float d = 0;
    *peak = 0;
    for (int i = 0; i < TOKENS * (int)TU_VOCAB; i++) d = fmaxf(d, fabsf(a[i] - b[i])), *peak = fmaxf(*peak, fabsf(b[i]));
    return d;
}

/* Exact mode is the decoded model's f32 forward pass; the int8 path is
 * close to it, and the same at every level and thread count. */
static void test_forward(void **state)
{
    char *lat = tu_join(*state, "lattice.nsq"), *dec = tu_join(*state, "decoded.nsq");
    float peak;
    write_model(lat, 0);
    write_model(dec, 1);
    float *ref = run_model(dec, 0, 1, NULL), *ex = run_model(lat, 1, 1, NULL), *q = run_model(lat, 0, 1, NULL);
    float dex = max_diff(ex, ref, &peak), dq = max_diff(q, ref, &peak);
    print_message("logits up to %.3g: exact mode within %.3g of f32, int8 within %.3g\n", peak, dex, dq);
    assert_true(peak > 0.1f && dex <= 1e-4f * peak && dq <= 0.05f * peak);
    const char *levels[] = {"scalar", "avx2", NULL};
    for (int i = 0; i < 3; i++)
        for (uint32_t threads = 1; threads <= 2; threads++) {
            float *k = run_model(lat, 0, threads, levels[i]), *kx = run_model(lat, 1, threads, levels[i]);
            assert_memory_equal(k, q, TOKENS * TU_VOCAB * sizeof *q);
            assert_memory_equal(kx, ex, TOKENS * TU_VOCAB * sizeof *ex);
            free(k), free(kx);
        }
    free(ref), free(ex), free(q), free(lat), free(dec);
}

/* A one-layer GPT-2 whose Conv1D weights are stored as the source has them,
 * [in][out], c_attn's as LATTICE: the model check names it. */
static void test_conv1d_refused(void **state)
{
    static const char *const keys[][2] = {
        {"general.architecture", "gpt2"}, {"model.activation", "gelu_tanh"}, {"model.norm.type", "layernorm"},
        {"model.position", "learned"},    {"provenance.converter", "unit-tests"}, {"provenance.recipe", "minimal"},
        {"provenance.source", "synthetic"}, {"model.rope.scaling.type", "none"}};
    static const char *const u64s[] = {"model.context_length", "model.head_dim", "model.hidden_size",
                                       "model.intermediate_size", "model.n_heads", "model.n_kv_heads",
                                       "model.n_layers", "model.sliding_window", "model.vocab_size"};
    const uint64_t u64v[] = {16, 16, HID, 2 * HID, 4, 4, 1, 0, TU_VOCAB};
    const char *bools[] = {"model.attention_bias", "model.mlp_bias", "model.tied_head", "tokenizer.add_bos"};
    char *path = tu_join(*state, "gpt2.nsq"), err[512];
    nsq_writer *w;
    assert_ok(nsq_writer_open(path, &w, NULL));
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) assert_ok(nsq_writer_meta_str(w, keys[i][0], keys[i][1], strlen(keys[i][1])));
    for (size_t i = 0; i < sizeof u64s / sizeof *u64s; i++) assert_ok(nsq_writer_meta_u64(w, u64s[i], u64v[i]));
    for (size_t i = 0; i < 4; i++) assert_ok(nsq_writer_meta_bool(w, bools[i], i == 2));
    assert_ok(nsq_writer_meta_f64(w, "model.norm.epsilon", 1e-5));
    assert_ok(nsq_writer_meta_f64(w, "model.rope.scaling.factor", 1));
    assert_ok(nsq_writer_meta_f64(w, "model.rope.theta", 10000));
    assert_ok(nsq_writer_meta_i64(w, "tokenizer.bos_id", 1));
    assert_ok(nsq_writer_meta_i64(w, "tokenizer.eos_id", 2));
    assert_ok(tu_write_tokenizer(w));
    const mspec emb = {0, TU_VOCAB, HID, 64, 1, {NSQ_LAT_E8}, 0}, pos = {0, 16, HID, 64, 1, {NSQ_LAT_E8}, 0},
                attn = {0, HID, 3 * HID, 64, 1, {NSQ_LAT_E8}, 0}, proj = {0, HID, HID, 64, 1, {NSQ_LAT_E8}, 0},
                fc = {0, HID, 2 * HID, 64, 1, {NSQ_LAT_E8}, 0}, down = {0, 2 * HID, HID, 64, 1, {NSQ_LAT_E8}, 0};
    assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_EMBEDDINGS, 0, 0, NSQ_COMP_NONE));
    add_matrix(w, "wte.weight", &emb, NULL, 0);
    add_matrix(w, "wpe.weight", &pos, NULL, 0);
    assert_ok(nsq_writer_end_block(w, NULL));
    assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_LAYERS, 0, 1, NSQ_COMP_NONE));
    const char *norms[] = {"h.0.ln_1.weight", "h.0.ln_1.bias", "h.0.ln_2.weight", "h.0.ln_2.bias", "ln_f.weight", "ln_f.bias"};
    for (int i = 0; i < 4; i++) add_ones(w, norms[i]);
    add_matrix(w, "h.0.attn.c_attn.weight", &attn, NULL, 0);
    add_matrix(w, "h.0.attn.c_proj.weight", &proj, NULL, 1);
    add_matrix(w, "h.0.mlp.c_fc.weight", &fc, NULL, 1);
    add_matrix(w, "h.0.mlp.c_proj.weight", &down, NULL, 1);
    assert_ok(nsq_writer_end_block(w, NULL));
    assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_OUTPUT, 0, 0, NSQ_COMP_NONE));
    for (int i = 4; i < 6; i++) add_ones(w, norms[i]);
    assert_ok(nsq_writer_end_block(w, NULL));
    assert_ok(nsq_writer_finish(w, NULL));
    nsqrt_opts o = {0};
    nsqrt_model *m;
    assert_int_equal(nsqrt_open(path, &o, &m, err, sizeof err), -1);
    assert_non_null(strstr(err, "h.0.attn.c_attn.weight: quantized Conv1D weights must be stored transposed"));
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e8_tables),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_int8_products),
        cmocka_unit_test(test_exact_products),
        cmocka_unit_test_setup_teardown(test_forward, tu_setup_tmpdir, tu_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_conv1d_refused, tu_setup_tmpdir, tu_teardown_tmpdir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
