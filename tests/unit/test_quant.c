/* test_quant.c - the TIERED storage scheme: payload sizes and layout,
 * quantization error, refinements, and an independent decoder written from
 * the spec's layout description (spec 9.3-9.6) that must agree bit for bit
 * with nsq_dequantize_rows(). */
#include "testutil.h"

#include <float.h>

static const uint32_t tier_bits[4] = {16, 8, 4, 2};
static const uint32_t group_sizes[4] = {32, 64, 128, 256};

/* ---- the layout and an independent decoder, from the spec ---- */
typedef struct {
    uint64_t ng, n[4], size;
    uint64_t codes[4];  /* offset of each tier's code stream ([0]: the f16 stream) */
    uint64_t params[4]; /* offset of each quantized tier's (d, m) stream */
} layout;

static uint32_t ref_tier(const uint8_t *map, uint64_t g) { return (map[g / 4] >> (2 * (g % 4))) & 3u; }

/* Stream order: tier map, f16 values, then Q8, Q4, Q2 each as codes then
 * (d, m) pairs; every stream padded to 64 bytes. */
static void ref_layout(uint64_t ng, uint32_t G, const uint64_t n[4], layout *L)
{
    memset(L, 0, sizeof *L);
    L->ng = ng;
    memcpy(L->n, n, sizeof L->n);
    uint64_t off = tu_pad64((ng + 3) / 4);
    L->codes[0] = off;
    off += tu_pad64(n[0] * 2 * G);
    for (int t = 1; t < 4; t++) {
        L->codes[t] = off;
        off += tu_pad64(n[t] * G * tier_bits[t] / 8);
        L->params[t] = off;
        off += tu_pad64(n[t] * 4);
    }
    L->size = off;
}

/* code j of a record of G codes at b bits: byte j % stride, bit b * (j / stride) */
static uint32_t ref_code(const uint8_t *rec, uint32_t G, uint32_t b, uint32_t j)
{
    uint32_t stride = G * b / 8;
    return (rec[j % stride] >> (b * (j / stride))) & ((1u << b) - 1);
}

/* Decodes a whole TIERED payload with refinement levels 1..n_ref applied.
 * d_out (may be NULL) receives each group's d (0 for F16 groups). Every
 * binary32 operation is rounded on its own (volatile: no contraction). */
static void ref_decode(const uint8_t *p, uint64_t rows, uint64_t cols, uint32_t G, const uint8_t *const *rcodes,
                       const uint32_t *rbits, uint32_t n_ref, float *out, float *d_out)
{
    uint64_t ng = rows * cols / G, n[4] = {0, 0, 0, 0}, rank[4] = {0, 0, 0, 0}, qrank = 0;
    for (uint64_t g = 0; g < ng; g++) n[ref_tier(p, g)]++;
    layout L;
    ref_layout(ng, G, n, &L);
    for (uint64_t g = 0; g < ng; g++) {
        uint32_t t = ref_tier(p, g);
        float *o = out + g * G;
        if (t == 0) {
            const uint8_t *h = p + L.codes[0] + rank[0] * 2 * G;
            for (uint32_t j = 0; j < G; j++) o[j] = tu_f16_to_f32_ref(tu_rd16(h + 2 * j));
            if (d_out) d_out[g] = 0;
        } else {
            uint32_t b = tier_bits[t];
            const uint8_t *rec = p + L.codes[t] + rank[t] * G * b / 8, *pm = p + L.params[t] + rank[t] * 4;
            float d = tu_f16_to_f32_ref(tu_rd16(pm)), m = tu_f16_to_f32_ref(tu_rd16(pm + 2));
            if (d_out) d_out[g] = d;
            for (uint32_t j = 0; j < G; j++) {
                volatile float prod = d * (float)ref_code(rec, G, b, j);
                volatile float v = prod + m;
                float s = d;
                for (uint32_t l = 0; l < n_ref; l++) {
                    uint32_t k = rbits[l];
                    const uint8_t *rr = rcodes[l] + qrank * G * k / 8;
                    volatile float c1 = (float)(2 * ref_code(rr, G, k, j) + 1) / (float)(1u << (k + 1));
                    volatile float c = c1 - 0.5f;
                    volatile float pr = s * c;
                    v = v + pr;
                    s = s / (float)(1u << k);
                }
                o[j] = v;
            }
            qrank++;
        }
        rank[t]++;
    }
}

static void assert_same_bits(const float *a, const float *b, uint64_t n, const char *what)
{
    for (uint64_t i = 0; i < n; i++)
        if (tu_f32_bits(a[i]) != tu_f32_bits(b[i]))
            fail_msg("%s: element %llu is %a (0x%08x), expected %a (0x%08x)", what, (unsigned long long)i, (double)a[i],
                     tu_f32_bits(a[i]), (double)b[i], tu_f32_bits(b[i]));
}

/* ---- test data ---- */
enum { P_F16, P_Q8, P_Q4, P_Q2, P_CYCLE, P_RANDOM, N_PATTERNS };
static const char *const pattern_names[] = {"all F16", "all Q8", "all Q4", "all Q2", "cycle", "random"};

static void make_tiers(int pattern, uint64_t ng, tu_rng *r, uint8_t *tiers)
{
    for (uint64_t g = 0; g < ng; g++) {
        if (pattern <= P_Q2) tiers[g] = (uint8_t)pattern;
        else if (pattern == P_CYCLE) tiers[g] = (uint8_t)((g * 3 + 1) % 4);
        else tiers[g] = (uint8_t)tu_below(r, 4);
    }
    if (pattern == P_RANDOM) /* every tier occurs */
        for (uint8_t t = 0; t < 4; t++) tiers[(t * 5 + 2) % ng] = t;
}

/* Each group gets its own scale s in [0.5, 2] and centre in [-s/2, s/2]. */
static void make_weights(uint64_t n, uint32_t G, tu_rng *r, float *w)
{
    for (uint64_t g = 0; g < n / G; g++) {
        float s = tu_unif(r, 0.5f, 2.0f), c = tu_unif(r, -0.5f * s, 0.5f * s);
        for (uint32_t j = 0; j < G; j++) w[g * G + j] = c + s * tu_unif(r, -1.0f, 1.0f);
    }
}

/* max |x - y| / bound over a quantized group; fails if any exceeds the bound */
static void check_group_error(const float *x, const float *y, uint32_t G, float d, uint32_t qmax, float m, double factor,
                              const char *what, uint64_t g)
{
    for (uint32_t j = 0; j < G; j++) {
        double err = fabs((double)x[j] - (double)y[j]);
        double eps = 8 * FLT_EPSILON * (fabs((double)x[j]) + fabs((double)m) + qmax * fabs((double)d));
        double bound = fabs((double)d) / 2 * factor + eps;
        if (err > bound)
            fail_msg("%s: group %llu element %u: |%.9g - %.9g| = %.3g > %.3g (d = %.6g)", what, (unsigned long long)g,
                     j, (double)x[j], (double)y[j], err, bound, (double)d);
    }
}

static unsigned n_cases;

/* One matrix, one group size, one tier pattern: everything about it. */
static void run_case(uint32_t G, int pattern, tu_rng *r)
{
    const uint64_t rows = 7, cols = 3 * (uint64_t)G, n = rows * cols, ng = n / G; /* ng = 21: 4 does not divide it */
    char what[96];
    snprintf(what, sizeof what, "G=%u %s", G, pattern_names[pattern]);
    uint8_t tiers[21];
    make_tiers(pattern, ng, r, tiers);
    uint64_t cnt[4] = {0, 0, 0, 0};
    for (uint64_t g = 0; g < ng; g++) cnt[tiers[g]]++;
    layout L;
    ref_layout(ng, G, cnt, &L);
    assert_int_equal(nsq_tiered_size(ng, G, cnt), L.size);

    float *w = malloc(n * sizeof *w), *full = malloc(n * sizeof *full), *ref = malloc(n * sizeof *ref),
          *part = malloc(n * sizeof *part), *d = malloc(ng * sizeof *d);
    uint8_t *pay = malloc(L.size);
    assert_true(w && full && ref && part && d && pay);
    make_weights(n, G, r, w);
    assert_status(nsq_quantize_tiered(w, rows, cols, G, tiers, NULL, pay, L.size - 1), NSQ_E_ARG);
    assert_ok(nsq_quantize_tiered(w, rows, cols, G, tiers, NULL, pay, L.size));

    /* the tier map holds exactly the requested tiers, unused bits zero */
    for (uint64_t g = 0; g < ng; g++) assert_int_equal(ref_tier(pay, g), tiers[g]);
    assert_int_equal(pay[ng / 4] >> (2 * (ng % 4)), 0);

    nsq_view v;
    nsq_diag diag;
    nsq_tiered tv;
    assert_ok(nsq_view_init(NSQ_SCHEME_TIERED, rows, cols, G, pay, L.size, &v, &diag));
    assert_ok(nsq_tiered_view(&v, &tv));
    assert_int_equal(tv.n_groups, ng);
    assert_int_equal(v.rows, rows);
    assert_int_equal(v.cols, cols);
    assert_int_equal(v.group_size, G);
    for (int t = 0; t < 4; t++) {
        assert_int_equal(tv.n_tier[t], cnt[t]);
        assert_ptr_equal(tv.codes[t], pay + L.codes[t]);
        if (t) assert_ptr_equal(tv.params[t], pay + L.params[t]);
        else assert_null(tv.params[t]);
    }
    assert_ptr_equal(tv.tier_map, pay);

    /* the library's decode is the spec's, bit for bit */
    assert_ok(nsq_dequantize_rows(&v, NULL, 0, 0, rows, full));
    ref_decode(pay, rows, cols, G, NULL, NULL, 0, ref, d);
    assert_same_bits(full, ref, n, what);

    /* error: F16 groups are the f16 rounding of the input, quantized groups within d/2 */
    for (uint64_t g = 0; g < ng; g++) {
        if (tiers[g] == NSQ_TIER_F16) {
            for (uint32_t j = 0; j < G; j++)
                assert_int_equal(tu_f32_bits(full[g * G + j]),
                                 tu_f32_bits(tu_f16_to_f32_ref(tu_f32_to_f16_ref(w[g * G + j]))));
        } else {
            uint64_t rank = 0;
            for (uint64_t k = 0; k < g; k++) rank += tiers[k] == tiers[g];
            float m = tu_f16_to_f32_ref(tu_rd16(pay + L.params[tiers[g]] + rank * 4 + 2));
            assert_true(d[g] > 0);
            check_group_error(w + g * G, full + g * G, G, d[g], (1u << tier_bits[tiers[g]]) - 1, m, 1.0, what, g);
        }
    }

    /* any row range decodes to the same values as the whole */
    for (uint64_t r0 = 0; r0 < rows; r0++)
        for (uint64_t nr = 1; r0 + nr <= rows; nr++) {
            memset(part, 0xFF, nr * cols * sizeof *part);
            assert_ok(nsq_dequantize_rows(&v, NULL, 0, r0, nr, part));
            assert_memory_equal(part, full + r0 * cols, nr * cols * sizeof *part);
        }
    assert_ok(nsq_dequantize_rows(&v, NULL, 0, rows, 0, part));
    assert_status(nsq_dequantize_rows(&v, NULL, 0, rows - 1, 2, part), NSQ_E_ARG);
    assert_status(nsq_dequantize_rows(&v, NULL, 0, UINT64_MAX, 2, part), NSQ_E_ARG);

    /* refinements: 2-bit levels shrink the error 4x each; then mixed widths */
    uint64_t nq = ng - cnt[0];
    static const uint32_t chains[2][3] = {{2, 2, 0}, {1, 4, 8}};
    for (int c = 0; c < 2 && nq; c++) {
        uint8_t *codes[3] = {NULL, NULL, NULL};
        nsq_refine_view rv[3];
        uint32_t bits[3], used = 0;
        for (uint32_t l = 0; l < 3 && chains[c][l]; l++, used++) {
            uint32_t k = chains[c][l];
            bits[l] = k;
            uint64_t rs = tu_pad64(nq * G * k / 8);
            assert_int_equal(nsq_refine_size(nq, G, k), rs);
            codes[l] = malloc(rs + 64);
            assert_non_null(codes[l]);
            assert_status(nsq_quantize_refinement(w, &v, rv, l, k, codes[l], rs + 64), NSQ_E_ARG);
            assert_ok(nsq_quantize_refinement(w, &v, rv, l, k, codes[l], rs));
            assert_ok(nsq_refine_view_init(&v, k, codes[l], rs, &rv[l], &diag));
            assert_int_equal(rv[l].bits, k);
            assert_int_equal(rv[l].size, rs);

            uint32_t lv = l + 1, sum_bits = 0;
            for (uint32_t q = 0; q < lv; q++) sum_bits += bits[q];
            assert_ok(nsq_dequantize_rows(&v, rv, lv, 0, rows, full));
            ref_decode(pay, rows, cols, G, (const uint8_t *const *)codes, bits, lv, ref, NULL);
            char w2[160];
            snprintf(w2, sizeof w2, "%s, refinement chain %d level %u", what, c, lv);
            assert_same_bits(full, ref, n, w2);
            for (uint64_t g = 0; g < ng; g++) {
                if (tiers[g] == NSQ_TIER_F16) { /* unaffected */
                    for (uint32_t j = 0; j < G; j++)
                        assert_int_equal(tu_f32_bits(full[g * G + j]),
                                         tu_f32_bits(tu_f16_to_f32_ref(tu_f32_to_f16_ref(w[g * G + j]))));
                    continue;
                }
                check_group_error(w + g * G, full + g * G, G, d[g], 0, 0, 1.01 / (double)(1u << sum_bits), w2, g);
            }
            /* row ranges with refinements (quantized ranks carry across rows) */
            for (uint64_t r0 = 0; r0 < rows; r0 += 2) {
                uint64_t nr = rows - r0 < 3 ? rows - r0 : 3;
                assert_ok(nsq_dequantize_rows(&v, rv, lv, r0, nr, part));
                assert_memory_equal(part, full + r0 * cols, nr * cols * sizeof *part);
            }
        }
        for (uint32_t l = 0; l < used; l++) free(codes[l]);
    }
    if (!nq) { /* all F16: no quantized groups, refinement parts are empty */
        assert_int_equal(nsq_refine_size(0, G, 2), 0);
        nsq_refine_view rv;
        uint8_t dummy[1] = {0};
        assert_ok(nsq_refine_view_init(&v, 2, dummy, 0, &rv, &diag));
        assert_status(nsq_refine_view_init(&v, 2, dummy, 64, &rv, &diag), NSQ_E_TENSOR);
    }
    free(w);
    free(full);
    free(ref);
    free(part);
    free(d);
    free(pay);
    n_cases++;
}

static void test_tiered_round_trip(void **state)
{
    (void)state;
    tu_rng r = {2024};
    n_cases = 0;
    for (int gi = 0; gi < 4; gi++)
        for (int p = 0; p < N_PATTERNS; p++) run_case(group_sizes[gi], p, &r);
    print_message("# TIERED: %u group-size x tier-pattern cases\n", n_cases);
    assert_int_equal(n_cases, 4 * N_PATTERNS);
}

/* nsq_tiered_size against the stream table for a spread of counts. */
static void test_tiered_size(void **state)
{
    (void)state;
    tu_rng r = {7};
    for (int i = 0; i < 2000; i++) {
        uint32_t G = group_sizes[i % 4];
        uint64_t n[4], ng = 0;
        for (int t = 0; t < 4; t++) ng += n[t] = tu_below(&r, i % 3 ? 40 : 3);
        layout L;
        ref_layout(ng, G, n, &L);
        assert_int_equal(nsq_tiered_size(ng, G, n), L.size);
    }
    const uint64_t one_each[4] = {1, 1, 1, 1}, none[4] = {0, 0, 0, 0};
    assert_int_equal(nsq_tiered_size(4, 32, one_each), 512); /* spec 9.9 */
    assert_int_equal(nsq_tiered_size(0, 32, none), 0);
    assert_int_equal(nsq_refine_size(3, 32, 2), 64);
    assert_int_equal(nsq_refine_size(3, 32, 1), 64);
    assert_int_equal(nsq_refine_size(10, 256, 8), 2560);
}

/* With column weights the search can only lower the weighted error of the
 * plain min/max fit (which is one of its candidates). */
static void test_weighted_fit(void **state)
{
    (void)state;
    tu_rng r = {99};
    const uint64_t rows = 6, cols = 128;
    const uint32_t G = 32;
    const uint64_t n = rows * cols, ng = n / G;
    float w[768], cw[128], a[768], b[768];
    uint8_t tiers[24];
    make_weights(n, G, &r, w);
    for (uint64_t c = 0; c < cols; c++) cw[c] = c % 5 == 0 ? 0.0f : tu_unif(&r, 0.0f, 3.0f);
    for (uint64_t g = 0; g < ng; g++) tiers[g] = (uint8_t)(1 + g % 3);
    uint64_t cnt[4] = {0, 8, 8, 8};
    uint64_t size = nsq_tiered_size(ng, G, cnt);
    uint8_t *pa = malloc(size), *pb = malloc(size);
    assert_ok(nsq_quantize_tiered(w, rows, cols, G, tiers, NULL, pa, size));
    assert_ok(nsq_quantize_tiered(w, rows, cols, G, tiers, cw, pb, size));
    nsq_view v;
    assert_ok(nsq_view_init(NSQ_SCHEME_TIERED, rows, cols, G, pb, size, &v, NULL));
    float lib[768];
    assert_ok(nsq_dequantize_rows(&v, NULL, 0, 0, rows, lib));
    ref_decode(pa, rows, cols, G, NULL, NULL, 0, a, NULL);
    ref_decode(pb, rows, cols, G, NULL, NULL, 0, b, NULL);
    assert_same_bits(lib, b, n, "weighted fit");
    int better = 0;
    for (uint64_t g = 0; g < ng; g++) {
        double ea = 0, eb = 0;
        for (uint32_t j = 0; j < G; j++) {
            double wt = cw[(g % (cols / G)) * G + j];
            ea += wt * ((double)a[g * G + j] - w[g * G + j]) * ((double)a[g * G + j] - w[g * G + j]);
            eb += wt * ((double)b[g * G + j] - w[g * G + j]) * ((double)b[g * G + j] - w[g * G + j]);
        }
        if (eb > ea * (1 + 1e-6) + 1e-12) fail_msg("group %llu: weighted error %g > min/max fit's %g", (unsigned long long)g, eb, ea);
        better += eb < ea * (1 - 1e-6);
    }
    print_message("# weighted fit improved %d of %llu groups\n", better, (unsigned long long)ng);
    free(pa);
    free(pb);
}

/* Weighted squared error of group g of a decoded tensor against w. */
static double weighted_error(const float *w, const float *y, const float *cw, uint64_t cols, uint32_t G, uint64_t g)
{
    double e = 0;
    for (uint32_t j = 0; j < G; j++) {
        double d = (double)y[g * G + j] - w[g * G + j];
        e += cw[(g % (cols / G)) * G + j] * d * d;
    }
    return e;
}

/* The scale search on many random groups of every size and tier, of several
 * shapes (uniform, Gaussian-like with outliers, one-sided, nearly constant),
 * with column weights spread over 6 orders of magnitude and some zero: its
 * weighted error is never above the min/max fit's on the same group. */
static void test_weighted_fit_random(void **state)
{
    (void)state;
    tu_rng r = {2024};
    int better = 0, groups = 0;
    for (int round = 0; round < 40; round++) {
        uint32_t G = group_sizes[round % 4], cols = 2 * G, rows = 8, n = rows * cols, ng = n / G;
        float *w = malloc(n * sizeof *w), *cw = malloc(cols * sizeof *cw), *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
        uint8_t *tiers = malloc(ng);
        uint64_t cnt[4] = {0, 0, 0, 0};
        for (uint32_t c = 0; c < cols; c++) cw[c] = tu_below(&r, 8) == 0 ? 0.0f : powf(10.0f, tu_unif(&r, -3.0f, 3.0f));
        for (uint32_t g = 0; g < ng; g++) {
            int shape = (int)tu_below(&r, 4);
            float s = powf(10.0f, tu_unif(&r, -3.0f, 1.0f)), c0 = tu_unif(&r, -s, s);
            for (uint32_t j = 0; j < G; j++) {
                float u = tu_unif(&r, -1.0f, 1.0f), v = shape == 0 ? u : shape == 1 ? u * u * u * (tu_below(&r, 16) ? 1.0f : 8.0f)
                                                             : shape == 2 ? fabsf(u) : 1e-3f * u;
                w[g * G + j] = c0 + s * v;
            }
            tiers[g] = (uint8_t)(1 + tu_below(&r, 3));
            cnt[tiers[g]]++;
        }
        uint64_t size = nsq_tiered_size(ng, G, cnt);
        uint8_t *pa = malloc(size), *pb = malloc(size);
        assert_ok(nsq_quantize_tiered(w, rows, cols, G, tiers, NULL, pa, size));
        assert_ok(nsq_quantize_tiered(w, rows, cols, G, tiers, cw, pb, size));
        ref_decode(pa, rows, cols, G, NULL, NULL, 0, a, NULL);
        ref_decode(pb, rows, cols, G, NULL, NULL, 0, b, NULL);
        for (uint32_t g = 0; g < ng; g++, groups++) {
            double ea = weighted_error(w, a, cw, cols, G, g), eb = weighted_error(w, b, cw, cols, G, g);
            if (eb > ea)
                fail_msg("G=%u tier %u group %u: weighted error %.9g > min/max fit's %.9g", G, tiers[g], g, eb, ea);
            better += eb < ea * (1 - 1e-6);
        }
        free(w), free(cw), free(a), free(b), free(tiers), free(pa), free(pb);
    }
    print_message("# scale search improved %d of %d random groups\n", better, groups);
    assert_true(better > groups / 2);
}

/* Bad arguments to the quantizers and view constructors. */
static void test_quantize_errors(void **state)
{
    (void)state;
    float w[2 * 64];
    for (int i = 0; i < 128; i++) w[i] = (float)i / 64.0f - 1.0f;
    uint8_t tiers[4] = {0, 1, 2, 3}, out[2048];
    uint64_t cnt[4] = {1, 1, 1, 1}, size = nsq_tiered_size(4, 32, cnt);
    assert_ok(nsq_quantize_tiered(w, 2, 64, 32, tiers, NULL, out, size));
    assert_status(nsq_quantize_tiered(w, 2, 64, 48, tiers, NULL, out, size), NSQ_E_ARG);
    assert_status(nsq_quantize_tiered(w, 1, 128, 256, tiers, NULL, out, size), NSQ_E_ARG); /* 256 does not divide 128 */
    assert_status(nsq_quantize_tiered(w, 2, 64, 32, tiers, NULL, out, size + 64), NSQ_E_ARG);
    assert_status(nsq_quantize_tiered(NULL, 2, 64, 32, tiers, NULL, out, size), NSQ_E_ARG);
    uint8_t bad_tiers[4] = {0, 1, 2, 4};
    assert_status(nsq_quantize_tiered(w, 2, 64, 32, bad_tiers, NULL, out, size), NSQ_E_ARG);
    w[3] = NAN; /* in the F16 group */
    assert_status(nsq_quantize_tiered(w, 2, 64, 32, tiers, NULL, out, size), NSQ_E_ARG);
    w[3] = 1e6f; /* not representable as f16 */
    assert_status(nsq_quantize_tiered(w, 2, 64, 32, tiers, NULL, out, size), NSQ_E_ARG);
    w[3] = 0;
    w[40] = INFINITY; /* in the Q8 group */
    assert_status(nsq_quantize_tiered(w, 2, 64, 32, tiers, NULL, out, size), NSQ_E_ARG);
    w[40] = 0;
    assert_ok(nsq_quantize_tiered(w, 2, 64, 32, tiers, NULL, out, size));

    nsq_view v, pv;
    nsq_diag dg;
    assert_ok(nsq_view_init(NSQ_SCHEME_TIERED, 2, 64, 32, out, size, &v, &dg));
    uint8_t rc[64];
    assert_status(nsq_quantize_refinement(w, &v, NULL, 0, 3, rc, 64), NSQ_E_ARG);
    assert_status(nsq_quantize_refinement(w, &v, NULL, 0, 2, rc, 128), NSQ_E_ARG);
    assert_status(nsq_quantize_refinement(w, &v, NULL, 1, 2, rc, 64), NSQ_E_ARG); /* lower levels missing */
    assert_ok(nsq_quantize_refinement(w, &v, NULL, 0, 2, rc, 64));
    nsq_refine_view rv;
    assert_status(nsq_refine_view_init(&v, 3, rc, 64, &rv, &dg), NSQ_E_ARG);
    assert_status(nsq_refine_view_init(&v, 16, rc, 64, &rv, &dg), NSQ_E_ARG);

    /* plain schemes: exact sizes, no refinements */
    uint8_t plain[4 * 6];
    for (int i = 0; i < 6; i++) tu_wr32(plain + 4 * i, tu_f32_bits((float)i - 2.5f));
    assert_ok(nsq_view_init(NSQ_SCHEME_F32, 2, 3, 0, plain, 24, &pv, &dg));
    float o[6];
    assert_ok(nsq_dequantize_rows(&pv, NULL, 0, 0, 2, o));
    for (int i = 0; i < 6; i++) assert_true(o[i] == (float)i - 2.5f);
    assert_ok(nsq_dequantize_rows(&pv, NULL, 0, 1, 1, o));
    assert_true(o[0] == 0.5f && o[2] == 2.5f);
    assert_status(nsq_dequantize_rows(&pv, &rv, 1, 0, 1, o), NSQ_E_ARG);
    assert_status(nsq_quantize_refinement(w, &pv, NULL, 0, 2, rc, 64), NSQ_E_ARG);
    assert_status(nsq_refine_view_init(&pv, 2, rc, 64, &rv, &dg), NSQ_E_ARG);
    memset(&dg, 0, sizeof dg);
    assert_status(nsq_view_init(NSQ_SCHEME_F32, 2, 3, 0, plain, 20, &pv, &dg), NSQ_E_TENSOR);
    assert_diag(&dg, NSQ_E_TENSOR, "R-TEN-6");
    memset(&dg, 0, sizeof dg);
    assert_status(nsq_view_init(NSQ_SCHEME_F16, 2, 3, 0, plain, 24, &pv, &dg), NSQ_E_TENSOR);
    assert_diag(&dg, NSQ_E_TENSOR, "R-TEN-6");
    assert_ok(nsq_view_init(NSQ_SCHEME_BF16, 2, 3, 0, plain, 12, &pv, &dg));
    assert_ok(nsq_dequantize_rows(&pv, NULL, 0, 0, 2, o));
    for (int i = 0; i < 6; i++) assert_int_equal(tu_f32_bits(o[i]), (uint32_t)tu_rd16(plain + 2 * i) << 16);
    assert_ok(nsq_view_init(NSQ_SCHEME_F16, 2, 3, 0, plain, 12, &pv, &dg));
    assert_ok(nsq_dequantize_rows(&pv, NULL, 0, 0, 2, o));
    for (int i = 0; i < 6; i++) assert_int_equal(tu_f32_bits(o[i]), tu_f32_bits(tu_f16_to_f32_ref(tu_rd16(plain + 2 * i))));
    assert_status(nsq_view_init(7, 2, 3, 0, plain, 24, &pv, &dg), NSQ_E_ARG);
    assert_status(nsq_view_init(NSQ_SCHEME_TIERED, 2, 64, 48, out, size, &pv, &dg), NSQ_E_ARG);
    assert_status(nsq_view_init(NSQ_SCHEME_TIERED, 2, 64, 128, out, size, &pv, &dg), NSQ_E_ARG);
    assert_status(nsq_view_init(NSQ_SCHEME_TIERED, 2, 64, 32, NULL, size, &pv, &dg), NSQ_E_ARG);
}

/* ---- invalid payloads: every rule of spec 9.7 ---- */

/* G = 32, 5 x 96: 15 groups (the last map byte has two unused bit pairs),
 * tiers chosen so that every code and parameter stream has padding. */
static const uint8_t bad_tiers[15] = {3, 1, 2, 0, 3, 3, 2, 1, 3, 3, 3, 2, 0, 3, 1};

static void expect_view_fail(const uint8_t *pay, uint64_t size, const char *rule, const char *what)
{
    nsq_view v;
    nsq_diag d;
    memset(&d, 0, sizeof d);
    nsq_status st = nsq_view_init(NSQ_SCHEME_TIERED, 5, 96, 32, pay, size, &v, &d);
    if (st != NSQ_E_TENSOR || strcmp(d.rule, rule) != 0)
        fail_msg("%s: got %s %s (%s), expected NSQ_E_TENSOR %s", what, nsq_status_name(st), d.rule, d.message, rule);
    assert_diag(&d, NSQ_E_TENSOR, rule);
}

static void test_invalid_payloads(void **state)
{
    (void)state;
    tu_rng r = {5};
    float w[480];
    make_weights(480, 32, &r, w);
    uint64_t cnt[4] = {0, 0, 0, 0};
    for (int g = 0; g < 15; g++) cnt[bad_tiers[g]]++;
    layout L;
    ref_layout(15, 32, cnt, &L);
    assert_int_equal(L.size, 640);
    uint8_t *pay = calloc(1, L.size + 128);
    assert_ok(nsq_quantize_tiered(w, 5, 96, 32, bad_tiers, NULL, pay, L.size));
    nsq_view v;
    nsq_diag d;
    assert_ok(nsq_view_init(NSQ_SCHEME_TIERED, 5, 96, 32, pay, L.size, &v, &d));
    unsigned cases = 0;

    /* R-TIER-1: shorter than the padded tier map */
    expect_view_fail(pay, 0, "R-TIER-1", "size 0");
    expect_view_fail(pay, 10, "R-TIER-1", "size 10");
    expect_view_fail(pay, 63, "R-TIER-1", "size 63");
    cases += 3;

    /* R-TIER-3: size disagrees with the map */
    expect_view_fail(pay, L.size + 64, "R-TIER-3", "size + 64");
    expect_view_fail(pay, L.size - 64, "R-TIER-3", "size - 64");
    expect_view_fail(pay, L.size + 1, "R-TIER-3", "size + 1");
    expect_view_fail(pay, 64, "R-TIER-3", "size 64");
    uint8_t keep = pay[0];
    pay[0] = (uint8_t)(pay[0] & ~3u); /* group 0: Q2 -> F16 needs 64 more bytes */
    expect_view_fail(pay, L.size, "R-TIER-3", "retiered group");
    pay[0] = keep;
    cases += 5;

    /* R-TIER-2: unused map bits, then every padding byte of every stream */
    for (int bit = 6; bit < 8; bit++) {
        pay[3] ^= (uint8_t)(1u << bit);
        expect_view_fail(pay, L.size, "R-TIER-2", "unused tier map bit");
        pay[3] ^= (uint8_t)(1u << bit);
        cases++;
    }
    uint64_t pads[8][2] = {{4, 64}}; /* [start, end) of each padding run */
    int np = 1;
    pads[np][0] = L.codes[0] + cnt[0] * 64, pads[np][1] = L.codes[1], np++;
    for (int t = 1; t < 4; t++) {
        pads[np][0] = L.codes[t] + cnt[t] * 32 * tier_bits[t] / 8, pads[np][1] = L.params[t], np++;
        pads[np][0] = L.params[t] + cnt[t] * 4, pads[np][1] = t < 3 ? L.codes[t + 1] : L.size, np++;
    }
    unsigned pad_bytes = 0;
    for (int i = 0; i < np; i++)
        for (uint64_t o = pads[i][0]; o < pads[i][1]; o++) {
            assert_int_equal(pay[o], 0);
            pay[o] = 0x80;
            char what[64];
            snprintf(what, sizeof what, "padding byte %llu", (unsigned long long)o);
            expect_view_fail(pay, L.size, "R-TIER-2", what);
            pay[o] = 0;
            pad_bytes++;
        }
    /* 60 map + 0 f16 + (32+52) Q8 + (16+52) Q4 + (8+36) Q2 */
    assert_int_equal(pad_bytes, 60 + 32 + 52 + 16 + 52 + 8 + 36);
    cases += pad_bytes;

    /* R-TIER-4: every d and every m, non-finite in several ways */
    static const uint16_t nonfinite[4] = {0x7C00, 0xFC00, 0x7E00, 0x7C01};
    for (int t = 1; t < 4; t++)
        for (uint64_t i = 0; i < 2 * cnt[t]; i++) {
            uint8_t *p = pay + L.params[t] + 2 * i;
            uint16_t old = tu_rd16(p);
            for (int k = 0; k < 4; k++) {
                tu_wr16(p, nonfinite[k]);
                expect_view_fail(pay, L.size, "R-TIER-4", "non-finite d or m");
                cases++;
            }
            /* finite extremes are valid: largest, negative, subnormal, zero */
            static const uint16_t finite[4] = {0x7BFF, 0xBC00, 0x0001, 0x0000};
            for (int k = 0; k < 4; k++) {
                tu_wr16(p, finite[k]);
                assert_ok(nsq_view_init(NSQ_SCHEME_TIERED, 5, 96, 32, pay, L.size, &v, &d));
            }
            tu_wr16(p, old);
        }

    /* R-TIER-5 and refinement padding */
    assert_ok(nsq_view_init(NSQ_SCHEME_TIERED, 5, 96, 32, pay, L.size, &v, &d));
    uint64_t nq = 15 - cnt[0];
    for (uint32_t k = 1; k <= 8; k *= 2) {
        uint64_t rs = tu_pad64(nq * 32 * k / 8), used = nq * 32 * k / 8;
        uint8_t *codes = calloc(1, rs + 64);
        nsq_refine_view rv;
        assert_ok(nsq_refine_view_init(&v, k, codes, rs, &rv, &d));
        uint64_t wrong[3] = {rs + 64, rs - 64, used};
        for (int i = 0; i < 3; i++) {
            if (wrong[i] == rs) continue;
            memset(&d, 0, sizeof d);
            assert_status(nsq_refine_view_init(&v, k, codes, wrong[i], &rv, &d), NSQ_E_TENSOR);
            assert_diag(&d, NSQ_E_TENSOR, "R-TIER-5");
            cases++;
        }
        for (uint64_t o = used; o < rs; o++) {
            codes[o] = 1;
            memset(&d, 0, sizeof d);
            assert_status(nsq_refine_view_init(&v, k, codes, rs, &rv, &d), NSQ_E_TENSOR);
            assert_diag(&d, NSQ_E_TENSOR, "R-TIER-2");
            codes[o] = 0;
            cases++;
        }
        free(codes);
    }
    print_message("# invalid TIERED payloads: %u cases\n", cases);
    free(pay);
}

/* ---- spec 9.9, the worked example ---- */
static const struct {
    uint16_t off;
    uint8_t b[16];
} spec_rows[] = {
    {0x000, {0xe4}},
    {0x040, {0xaa, 0x31, 0xa2, 0x38, 0x77, 0x38, 0xa4, 0x30, 0x54, 0xb5, 0xf8, 0xb7, 0xb8, 0xb2, 0x3b, 0x35}},
    {0x050, {0xc9, 0x39, 0x8b, 0x39, 0x66, 0x34, 0x66, 0xb2, 0xb6, 0xb5, 0xf0, 0xab, 0x9e, 0x37, 0xee, 0x3a}},
    {0x060, {0x9e, 0x3a, 0x7b, 0x36, 0x4a, 0xac, 0xe9, 0xb2, 0x91, 0x2d, 0x02, 0x39, 0x09, 0x3c, 0xb2, 0x3b}},
    {0x070, {0x48, 0x38, 0x39, 0x2c, 0xbc, 0xac, 0x85, 0x33, 0x33, 0x3a, 0x9d, 0x3c, 0x62, 0x3c, 0x52, 0x39}},
    {0x080, {0x68, 0xa6, 0xa3, 0x63, 0x19, 0x00, 0x2c, 0x7f, 0xbd, 0xb8, 0x77, 0x2e, 0x16, 0x43, 0x96, 0xd3}},
    {0x090, {0xcd, 0x8b, 0x43, 0x2c, 0x5a, 0xae, 0xe9, 0xe2, 0xa0, 0x57, 0x42, 0x71, 0xc5, 0xff, 0xf6, 0xb4}},
    {0x0c0, {0xa1, 0x1e, 0xf8, 0xb7}},
    {0x100, {0xc6, 0x8a, 0x4a, 0x36, 0x51, 0xa0, 0xe3, 0xd7, 0x9b, 0x5b, 0x47, 0x73, 0xc1, 0xf4, 0xe9, 0xbc}},
    {0x140, {0x0b, 0x2f, 0xf8, 0xb7}},
    {0x180, {0xa9, 0x6a, 0x56, 0x55, 0x90, 0xe4, 0xf9, 0xb9}},
    {0x1c0, {0x67, 0x38, 0xf8, 0xb7}},
};
static const uint8_t spec_level1[24] = {0x03, 0xb7, 0x0e, 0x8b, 0x37, 0x8e, 0x9f, 0x03, 0xea, 0xa5, 0x58, 0x01,
                                        0x3f, 0xa6, 0xc4, 0x3f, 0x7a, 0x89, 0x5d, 0xc2, 0xef, 0xa6, 0x44, 0x8f};
static const uint8_t spec_level2[12] = {0xb2, 0x75, 0x8f, 0xca, 0x43, 0x78, 0xb0, 0x4e, 0x55, 0x15, 0xa5, 0x2b};

/* The base decode table of 9.9 (x, F16 row, then code and value of Q8, Q4, Q2). */
static const struct {
    float x, f16;
    int q8;
    float v8;
    int q4;
    float v4;
    int q2;
    float v2;
} spec_base[32] = {
    {0.177f, 0.17700195f, 104, 0.17520142f, 6, 0.16223145f, 1, 0.052246094f},
    {0.579f, 0.57910156f, 166, 0.576561f, 10, 0.602417f, 2, 0.60253906f},
    {0.558f, 0.55810547f, 163, 0.55714035f, 10, 0.602417f, 2, 0.60253906f},
    {0.145f, 0.14501953f, 99, 0.14283371f, 6, 0.16223145f, 1, 0.052246094f},
    {-0.333f, -0.3330078f, 25, -0.33620834f, 1, -0.3880005f, 0, -0.49804688f},
    {-0.498f, -0.49804688f, 0, -0.49804688f, 0, -0.49804688f, 0, -0.49804688f},
    {-0.21f, -0.20996094f, 44, -0.21321106f, 3, -0.16790771f, 1, 0.052246094f},
    {0.327f, 0.3269043f, 127, 0.32409286f, 7, 0.27227783f, 1, 0.052246094f},
    {0.723f, 0.72314453f, 189, 0.7254524f, 11, 0.7124634f, 2, 0.60253906f},
    {0.693f, 0.6928711f, 184, 0.6930847f, 11, 0.7124634f, 2, 0.60253906f},
    {0.275f, 0.27490234f, 119, 0.27230453f, 7, 0.27227783f, 1, 0.052246094f},
    {-0.2f, -0.19995117f, 46, -0.20026398f, 3, -0.16790771f, 1, 0.052246094f},
    {-0.357f, -0.3569336f, 22, -0.35562897f, 1, -0.3880005f, 0, -0.49804688f},
    {-0.062f, -0.06201172f, 67, -0.06431961f, 4, -0.057861328f, 1, 0.052246094f},
    {0.476f, 0.47607422f, 150, 0.4729843f, 9, 0.4923706f, 2, 0.60253906f},
    {0.866f, 0.86621094f, 211, 0.86787033f, 12, 0.82250977f, 2, 0.60253906f},
    {0.827f, 0.82714844f, 205, 0.8290291f, 12, 0.82250977f, 2, 0.60253906f},
    {0.405f, 0.4050293f, 139, 0.40177536f, 8, 0.38232422f, 2, 0.60253906f},
    {-0.067f, -0.0670166f, 67, -0.06431961f, 4, -0.057861328f, 1, 0.052246094f},
    {-0.216f, -0.21594238f, 44, -0.21321106f, 3, -0.16790771f, 1, 0.052246094f},
    {0.087f, 0.0869751f, 90, 0.08457184f, 5, 0.05218506f, 1, 0.052246094f},
    {0.626f, 0.62597656f, 174, 0.6283493f, 10, 0.602417f, 2, 0.60253906f},
    {1.009f, 1.0087891f, 233, 1.0102882f, 14, 1.0426025f, 3, 1.152832f},
    {0.962f, 0.96191406f, 226, 0.96497345f, 13, 0.93255615f, 3, 1.152832f},
    {0.535f, 0.53515625f, 160, 0.5377197f, 9, 0.4923706f, 2, 0.60253906f},
    {0.066f, 0.065979004f, 87, 0.065151215f, 5, 0.05218506f, 1, 0.052246094f},
    {-0.074f, -0.07397461f, 66, -0.07079315f, 4, -0.057861328f, 1, 0.052246094f},
    {0.235f, 0.23498535f, 113, 0.23346329f, 7, 0.27227783f, 1, 0.052246094f},
    {0.775f, 0.77490234f, 197, 0.77724075f, 12, 0.82250977f, 2, 0.60253906f},
    {1.153f, 1.1533203f, 255, 1.1527061f, 15, 1.1526489f, 3, 1.152832f},
    {1.096f, 1.0957031f, 246, 1.0944443f, 14, 1.0426025f, 3, 1.152832f},
    {0.665f, 0.66503906f, 180, 0.66719055f, 11, 0.7124634f, 2, 0.60253906f},
};
/* The refined decode table of 9.9: Q8, Q4, Q2 rows after level 1 and level 2. */
static const struct {
    float q8l1, q8l2, q4l1, q4l2, q2l1, q2l2;
} spec_refined[32] = {
    {0.177629f, 0.1772244f, 0.17598724f, 0.18286514f, 0.121032715f, 0.15542603f},
    {0.57898855f, 0.57939315f, 0.5886612f, 0.5817833f, 0.53375244f, 0.56814575f},
    {0.55794954f, 0.55835414f, 0.5611496f, 0.5542717f, 0.53375244f, 0.56814575f},
    {0.14526129f, 0.14485669f, 0.14847565f, 0.14159775f, 0.121032715f, 0.15542603f},
    {-0.33378077f, -0.33337617f, -0.3467331f, -0.3398552f, -0.291687f, -0.32608032f},
    {-0.49723768f, -0.49764228f, -0.48429108f, -0.49116898f, -0.42926025f, -0.46365356f},
    {-0.21078348f, -0.21037889f, -0.20917511f, -0.21605301f, -0.15411377f, -0.18850708f},
    {0.32652044f, 0.32692504f, 0.31354523f, 0.32042313f, 0.25860596f, 0.29299927f},
    {0.72302485f, 0.72262025f, 0.7262192f, 0.7193413f, 0.6713257f, 0.705719f},
    {0.6922755f, 0.6926801f, 0.6987076f, 0.6918297f, 0.6713257f, 0.705719f},
    {0.2747321f, 0.2751367f, 0.28603363f, 0.27915573f, 0.25860596f, 0.29299927f},
    {-0.19945478f, -0.19985938f, -0.20917511f, -0.20229721f, -0.15411377f, -0.18850708f},
    {-0.35643816f, -0.35684276f, -0.3467331f, -0.353611f, -0.291687f, -0.32608032f},
    {-0.061892033f, -0.06229663f, -0.07161713f, -0.06473923f, -0.016540527f, -0.050933838f},
    {0.4754119f, 0.4758165f, 0.4786148f, 0.4717369f, 0.53375244f, 0.49935913f},
    {0.86544275f, 0.86584735f, 0.86377716f, 0.87065506f, 0.8088989f, 0.84329224f},
    {0.8266015f, 0.8270061f, 0.83626556f, 0.82938766f, 0.8088989f, 0.84329224f},
    {0.40420294f, 0.40460753f, 0.39608002f, 0.40295792f, 0.3961792f, 0.4305725f},
    {-0.06674719f, -0.067151785f, -0.07161713f, -0.06473923f, -0.016540527f, -0.050933838f},
    {-0.21563864f, -0.21604323f, -0.20917511f, -0.21605301f, -0.15411377f, -0.18850708f},
    {0.08699942f, 0.08740401f, 0.09345245f, 0.086574554f, 0.121032715f, 0.086639404f},
    {0.6259217f, 0.6263263f, 0.6161728f, 0.6230507f, 0.6713257f, 0.6369324f},
    {1.009479f, 1.0090744f, 1.0013351f, 1.008213f, 0.94647217f, 0.9808655f},
    {0.9625459f, 0.9621413f, 0.97382355f, 0.96694565f, 0.94647217f, 0.9808655f},
    {0.53529215f, 0.53488755f, 0.533638f, 0.5405159f, 0.53375244f, 0.56814575f},
    {0.06596041f, 0.066365f, 0.06594086f, 0.072818756f, 0.121032715f, 0.086639404f},
    {-0.07322073f, -0.073625326f, -0.07161713f, -0.078495026f, -0.016540527f, -0.050933838f},
    {0.23427248f, 0.23467708f, 0.23101044f, 0.23788834f, 0.25860596f, 0.22421265f},
    {0.7748132f, 0.7752178f, 0.7812424f, 0.7743645f, 0.8088989f, 0.7745056f},
    {1.1535153f, 1.1531107f, 1.1664047f, 1.1595268f, 1.2216187f, 1.1872253f},
    {1.0952535f, 1.0956581f, 1.0838699f, 1.0907478f, 1.0840454f, 1.1184387f},
    {0.664763f, 0.66516757f, 0.671196f, 0.6643181f, 0.6713257f, 0.6369324f},
};

static void expect_f(float got, float want, const char *what, int j)
{
    if (tu_f32_bits(got) != tu_f32_bits(want))
        fail_msg("spec 9.9 %s j=%d: got %.9g, expected %.9g", what, j, (double)got, (double)want);
}

static void test_spec_worked_example(void **state)
{
    (void)state;
    uint8_t pay[512] = {0}, l1[64] = {0}, l2[64] = {0};
    for (size_t i = 0; i < sizeof spec_rows / sizeof spec_rows[0]; i++)
        memcpy(pay + spec_rows[i].off, spec_rows[i].b, 16);
    memcpy(l1, spec_level1, sizeof spec_level1);
    memcpy(l2, spec_level2, sizeof spec_level2);
    nsq_view v;
    nsq_diag d;
    nsq_tiered tv;
    assert_ok(nsq_view_init(NSQ_SCHEME_TIERED, 4, 32, 32, pay, 512, &v, &d));
    assert_ok(nsq_tiered_view(&v, &tv));
    for (int t = 0; t < 4; t++) assert_int_equal(tv.n_tier[t], 1);
    float out[128], ref[128];
    assert_ok(nsq_dequantize_rows(&v, NULL, 0, 0, 4, out));
    ref_decode(pay, 4, 32, 32, NULL, NULL, 0, ref, NULL);
    assert_same_bits(out, ref, 128, "spec 9.9 base");
    /* the hand-decoded elements */
    assert_true(out[0] == 0.177001953125f);
    assert_true(out[32 + 0] == 0.175201416015625f);
    assert_true(out[64 + 16] == 0.822509765625f);
    assert_true(out[96 + 8] == 0.6025390625f);
    for (int j = 0; j < 32; j++) {
        expect_f(out[j], spec_base[j].f16, "F16", j);
        expect_f(out[32 + j], spec_base[j].v8, "Q8", j);
        expect_f(out[64 + j], spec_base[j].v4, "Q4", j);
        expect_f(out[96 + j], spec_base[j].v2, "Q2", j);
        assert_int_equal(ref_code(pay + 0x80, 32, 8, (uint32_t)j), spec_base[j].q8);
        assert_int_equal(ref_code(pay + 0x100, 32, 4, (uint32_t)j), spec_base[j].q4);
        assert_int_equal(ref_code(pay + 0x180, 32, 2, (uint32_t)j), spec_base[j].q2);
        assert_int_equal(tu_f32_bits(out[j]), tu_f32_bits(tu_f16_to_f32_ref(tu_f32_to_f16_ref(spec_base[j].x))));
    }
    nsq_refine_view rv[2];
    assert_ok(nsq_refine_view_init(&v, 2, l1, 64, &rv[0], &d));
    assert_ok(nsq_refine_view_init(&v, 1, l2, 64, &rv[1], &d));
    const uint8_t *codes[2] = {l1, l2};
    const uint32_t bits[2] = {2, 1};
    for (uint32_t lv = 1; lv <= 2; lv++) {
        assert_ok(nsq_dequantize_rows(&v, rv, lv, 0, 4, out));
        ref_decode(pay, 4, 32, 32, codes, bits, lv, ref, NULL);
        assert_same_bits(out, ref, 128, "spec 9.9 refined");
        for (int j = 0; j < 32; j++) {
            expect_f(out[j], spec_base[j].f16, "F16 refined", j);
            expect_f(out[32 + j], lv == 1 ? spec_refined[j].q8l1 : spec_refined[j].q8l2, "Q8 refined", j);
            expect_f(out[64 + j], lv == 1 ? spec_refined[j].q4l1 : spec_refined[j].q4l2, "Q4 refined", j);
            expect_f(out[96 + j], lv == 1 ? spec_refined[j].q2l1 : spec_refined[j].q2l2, "Q2 refined", j);
        }
    }
    /* the by-hand refinement of Q4 j = 1 */
    assert_ok(nsq_dequantize_rows(&v, rv, 1, 2, 1, out));
    assert_true(out[1] == (float)0.5886611938476562);
    assert_ok(nsq_dequantize_rows(&v, rv, 2, 2, 1, out));
    assert_true(out[1] == (float)0.5817832946777344);
}

/* The scheme table as the public API shows it, and what a dense view refuses. */
static void test_scheme_table(void **state)
{
    (void)state;
    static const struct { uint32_t id; const char *name; uint32_t bits; int grouped; } want[] = {
        {NSQ_SCHEME_F32, "f32", 32, 0}, {NSQ_SCHEME_F16, "f16", 16, 0}, {NSQ_SCHEME_BF16, "bf16", 16, 0},
        {NSQ_SCHEME_TIERED, "tiered", 0, 1}, {NSQ_SCHEME_LATTICE, "lattice", 0, 1}};
    nsq_scheme_info info;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        assert_ok(nsq_scheme_get(want[i].id, &info));
        assert_string_equal(info.name, want[i].name);
        assert_int_equal(info.elem_bits, want[i].bits);
        assert_int_equal(info.grouped, want[i].grouped);
    }
    for (uint32_t id = 0; id < 256; id++)
        if (id != NSQ_SCHEME_F32 && id != NSQ_SCHEME_F16 && id != NSQ_SCHEME_BF16 && id != NSQ_SCHEME_TIERED &&
            id != NSQ_SCHEME_LATTICE)
            assert_status(nsq_scheme_get(id, &info), NSQ_E_NOT_FOUND);
    assert_status(nsq_scheme_get(NSQ_SCHEME_F32, NULL), NSQ_E_ARG);
    static const char *const names[4] = {"f16", "q8", "q4", "q2"};
    for (uint32_t t = 0; t < 4; t++) {
        assert_int_equal(nsq_tier_bits(t), t ? 16u >> t : 16u);
        assert_string_equal(nsq_tier_name(t), names[t]);
    }
    assert_null(nsq_tier_name(4));

    uint8_t pay[8] = {0};
    uint64_t n[4] = {1, 0, 0, 0};
    nsq_view v;
    nsq_tiered tv;
    nsq_refine_view rv;
    float out[4];
    assert_ok(nsq_view_init(NSQ_SCHEME_F16, 2, 2, 0, pay, 8, &v, NULL));
    assert_status(nsq_tiered_view(&v, &tv), NSQ_E_ARG);
    assert_status(nsq_refine_view_init(&v, 2, pay, 0, &rv, NULL), NSQ_E_ARG);
    assert_status(nsq_dequantize_rows(&v, &rv, 1, 0, 2, out), NSQ_E_ARG);
    assert_status(nsq_dequantize_group(&v, NULL, 0, 0, n, out), NSQ_E_ARG);
    assert_status(nsq_view_init(7, 2, 2, 0, pay, 8, &v, NULL), NSQ_E_ARG);
    assert_status(nsq_tiered_view(NULL, &tv), NSQ_E_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiered_size),       cmocka_unit_test(test_tiered_round_trip),
        cmocka_unit_test(test_weighted_fit),      cmocka_unit_test(test_weighted_fit_random),      cmocka_unit_test(test_quantize_errors),
        cmocka_unit_test(test_invalid_payloads),  cmocka_unit_test(test_spec_worked_example),
        cmocka_unit_test(test_scheme_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
