/* test_alloc.c - the converter's tier allocation: a --bpw budget is never
 * exceeded, and more important groups never get fewer bits than less
 * important ones, with and without calibration statistics. */
#include "testutil.h"

#include <sys/mman.h>

#include "convert.h"

/* These stand in for recipe.o and calib.o, which this test does not link.
 * No recipe rules here (recipe.c's own tests cover matching). */
const tensor_rule *recipe_match(const quant_opts *q, const char *name)
{
    (void)q, (void)name;
    return NULL;
}

/* Column weights the tests hand the policy in place of a calibration run. */
static const float *test_cols;
const float *calib_columns(const calib_stats *s, int role, int L, uint64_t cols)
{
    (void)s, (void)role, (void)L, (void)cols;
    return test_cols;
}
void calib_set_columns(calib_stats *s, int k, uint32_t L, const float *h, uint32_t dim)
{
    (void)s, (void)k, (void)L, (void)h, (void)dim;
}

enum { ROWS = 16, COLS = 256, N_MAT = 4 };

typedef struct {
    st_tensor src[N_MAT + 1];
    plan_tensor t[N_MAT + 1];
    tensor_plan p;
    float *data; /* shared mapping: st_release may drop its pages without losing them */
} fake_model;

/* N_MAT layer matrices of ROWS x COLS and one norm vector, all f32. In a
 * matrix every row is one pattern times a scale per group (spread over 3
 * orders of magnitude), so groups in the same columns differ only in scale. */
static void fake_init(fake_model *f, tu_rng *r)
{
    size_t bytes = (N_MAT * ROWS * COLS + COLS) * sizeof(float);
    f->data = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(f->data != MAP_FAILED);
    for (int i = 0; i <= N_MAT; i++) {
        st_tensor *s = &f->src[i];
        float *w = f->data + (size_t)i * ROWS * COLS;
        uint64_t n = i < N_MAT ? ROWS * COLS : COLS;
        float base[COLS], scale = 1;
        for (int c = 0; c < COLS; c++) base[c] = tu_unif(r, -1.0f, 1.0f);
        for (uint64_t k = 0; k < n; k++) {
            if (i < N_MAT && k % 64 == 0) scale = powf(10.0f, tu_unif(r, -1.5f, 1.5f));
            w[k] = scale * base[k % COLS];
        }
        memset(s, 0, sizeof *s);
        s->name = (char *)(i < N_MAT ? "model.layers.0.mlp.up_proj.weight" : "model.layers.0.input_layernorm.weight");
        s->dtype = ST_F32;
        s->n_dims = i < N_MAT ? 2 : 1;
        s->dims[0] = i < N_MAT ? ROWS : COLS;
        s->dims[1] = COLS;
        s->n_elements = n;
        s->data = (const uint8_t *)w;
        s->size = n * 4;
        f->t[i] = (plan_tensor){s, i < N_MAT ? NSQRT_ROLE_UP : NSQRT_ROLE_MLP_NORM, i < N_MAT ? NSQRT_KIND_MATRIX : NSQRT_KIND_NORM, 0, 0, i < N_MAT ? ROWS : 1, COLS};
    }
    f->p = (tensor_plan){f->t, N_MAT + 1};
}

static void fake_free(fake_model *f) { munmap(f->data, (N_MAT * ROWS * COLS + COLS) * sizeof(float)); }

static quant_opts opts(double bpw, const calib_stats *cs)
{
    quant_opts o;
    memset(&o, 0, sizeof o);
    o.group_size = 64;
    o.split[0] = 0.1, o.split[1] = 0.2, o.split[2] = 0.7;
    o.bpw = bpw;
    o.threads = 2;
    o.calib = cs;
    o.probe = -1;
    return o;
}

static uint32_t tier_of_group(const encoded *e, uint64_t g) { return (e->data[g / 4] >> (2 * (g % 4))) & 3u; }

/* Encodes every tensor of the plan and returns the body's bits per weight. */
static double encoded_bpw(const fake_model *f, const quant_opts *o, const bpw_plan *bp, encoded *enc)
{
    char err[256];
    uint64_t bytes = 0, elements = 0;
    for (size_t i = 0; i < f->p.n; i++) {
        assert_int_equal(policy_encode(&f->p, i, o, bp, &enc[i], err, sizeof err), 0);
        bytes += enc[i].size;
        elements += f->t[i].src->n_elements;
    }
    return 8.0 * (double)bytes / (double)elements;
}

/* Tier bits must not decrease with the group's importance (ties allowed).
 * same_cols: compare only groups over the same columns, scaled copies of
 * each other, whose errors at every tier grow with their importance. */
static void check_ordering(const encoded *e, const float *importance, int same_cols, const char *what)
{
    for (uint64_t a = 0; a < e->n_groups; a++)
        for (uint64_t b = 0; b < e->n_groups; b++)
            if ((!same_cols || a % (COLS / 64) == b % (COLS / 64)) && importance[a] > importance[b] * (same_cols ? 1.01f : 1.0f) &&
                nsq_tier_bits(tier_of_group(e, a)) < nsq_tier_bits(tier_of_group(e, b)))
                fail_msg("%s: group %llu (importance %g) has fewer bits than group %llu (importance %g)", what,
                         (unsigned long long)a, importance[a], (unsigned long long)b, importance[b]);
}

static void run_budgets(const calib_stats *cs, float *cols)
{
    tu_rng r = {7};
    fake_model f;
    fake_init(&f, &r);
    test_cols = cols;
    const double budgets[] = {3.1, 3.2, 3.35, 3.5, 3.75, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 10.0}; /* all at 2 bits: 3.08 */
    double last = 0;
    for (size_t k = 0; k < sizeof budgets / sizeof budgets[0]; k++) {
        quant_opts o = opts(budgets[k], cs);
        bpw_plan bp;
        char err[256];
        encoded enc[N_MAT + 1];
        assert_int_equal(policy_allocate(&f.p, &o, &bp, err, sizeof err), 0);
        double got = encoded_bpw(&f, &o, &bp, enc);
        if (got > budgets[k] + 1e-12) fail_msg("budget %.3f exceeded: %.6f bpw", budgets[k], got);
        if (fabs(got - bp.predicted_bpw) > 1e-9) fail_msg("predicted %.6f bpw, encoded %.6f", bp.predicted_bpw, got);
        if (got + 1e-12 < last) fail_msg("a larger budget %.3f gave fewer bits (%.6f < %.6f)", budgets[k], got, last);
        last = got;
        for (int i = 0; i < N_MAT; i++) check_ordering(&enc[i], enc[i].group_stats, 1, "--bpw");
        for (size_t i = 0; i <= N_MAT; i++) encoded_free(&enc[i]);
        bpw_plan_free(&bp);
    }
    quant_opts o = opts(1.0, cs);
    bpw_plan bp;
    char err[256];
    assert_int_equal(policy_allocate(&f.p, &o, &bp, err, sizeof err), -1);
    assert_non_null(strstr(err, "below what this model can reach"));
    fake_free(&f);
}

static void test_budget_magnitude(void **state)
{
    (void)state;
    run_budgets(NULL, NULL);
}

/* Columns that see large activations make their groups more important. */
static void test_budget_calibrated(void **state)
{
    (void)state;
    float cols[COLS];
    tu_rng r = {11};
    for (int c = 0; c < COLS; c++) cols[c] = c % 7 == 0 ? 0.0f : tu_unif(&r, 0.01f, 100.0f);
    calib_stats cs;
    memset(&cs, 0, sizeof cs);
    run_budgets(&cs, cols);
}

/* The seed split with calibration: the top 10% of groups by sum_j E[x_j^2] w_j^2
 * at 8 bits, the next 20% at 4, the rest at 2. */
static void test_split_calibrated(void **state)
{
    (void)state;
    tu_rng r = {5};
    fake_model f;
    fake_init(&f, &r);
    float cols[COLS];
    for (int c = 0; c < COLS; c++) cols[c] = c < 64 ? 100.0f : 0.01f;
    test_cols = cols;
    calib_stats cs;
    memset(&cs, 0, sizeof cs);
    quant_opts o = opts(0, &cs);
    encoded e;
    char err[256];
    assert_int_equal(policy_encode(&f.p, 0, &o, NULL, &e, err, sizeof err), 0);
    check_ordering(&e, e.group_stats, 0, "--tiers with --calib");
    uint64_t n8 = 0;
    for (uint64_t g = 0; g < e.n_groups; g++) {
        const float *w = f.data + g * 64;
        double want = 0;
        for (int j = 0; j < 64; j++) want += (double)cols[(g % 4) * 64 + j] * w[j] * w[j];
        assert_float_equal(e.group_stats[g], want, 1e-5 * want);
        n8 += tier_of_group(&e, g) == NSQ_TIER_Q8;
    }
    assert_int_equal(n8, 6); /* round(10% of 64) */
    assert_ptr_equal(e.col_stats, cols);
    encoded_free(&e);
    fake_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget_magnitude),
        cmocka_unit_test(test_budget_calibrated),
        cmocka_unit_test(test_split_calibrated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
