/* test_lattice.c - the LATTICE storage scheme: the E8 codebook against its
 * rule, code values, decoding of hand-built payloads in both bases, every
 * payload and record rule, payload sizes, and files written and read back.
 *
 * Expected values are computed here from the spec's definitions (the table
 * rebuilt by sorting, codes decoded bit by bit, the butterfly written out,
 * W' R in double precision), never by calling the code under test. */
#include "testutil.h"

#include <xxhash.h>

/* ---- the rule's codebook and code values ---- */
static uint8_t ref_table[256][8];

static int cmp_u(const void *a, const void *b)
{
    const uint8_t *x = a, *y = b;
    int sx = 0, sy = 0;
    for (int k = 0; k < 8; k++) sx += x[k] * x[k], sy += y[k] * y[k];
    return sx != sy ? sx - sy : memcmp(x, y, 8);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int ref_setup(void **state)
{
    (void)state;
    static uint8_t all[65536][8];
    uint32_t n = 0;
    for (uint32_t i = 0; i < 65536; i++) { /* u in {1,3,5,7}^8 in the set the spec names */
        int sq = 0, fives = 0, ones = 0, threes = 0;
        for (int k = 0; k < 8; k++) {
            uint8_t u = (uint8_t)(2 * (i >> (2 * (7 - k)) & 3) + 1);
            all[n][k] = u;
            sq += u * u, fives += u == 5, ones += u == 1, threes += u == 3;
        }
        n += sq <= 40 || (fives == 2 && ones == 6) || threes == 8;
    }
    assert_int_equal(n, 256);
    qsort(all, n, 8, cmp_u);
    memcpy(ref_table, all, sizeof ref_table);
    return 0;
}

/* 4 * the values of an E8 code, from the spec's words. */
static void ref_e8(uint16_t c, int v4[8])
{
    const uint8_t *u = ref_table[c & 0xFF];
    int sum = 0, neg = 0;
    for (int k = 0; k < 8; k++) sum += u[k];
    for (int k = 0; k < 7; k++) neg += c >> (8 + k) & 1;
    int neg7 = (neg % 2) != ((sum / 2) % 2);
    for (int k = 0; k < 8; k++) {
        int negative = k < 7 ? c >> (8 + k) & 1 : neg7;
        v4[k] = (negative ? -2 : 2) * u[k] + (c & 0x8000 ? -1 : 1);
    }
}

static void test_e8_table(void **state)
{
    (void)state;
    const uint8_t (*t)[8] = nsq_lattice_e8_table();
    assert_memory_equal(t, ref_table, sizeof ref_table);
    int below40 = 0;
    for (int i = 0; i < 256; i++) {
        int s = 0;
        for (int k = 0; k < 8; k++) s += t[i][k] * t[i][k];
        below40 += s <= 40;
        assert_true(s <= 40 || (i >= 227 && s == 56) || (i == 255 && s == 72));
    }
    assert_int_equal(below40, 227);
}

/* Every code: odd values in [-15, 15] as the rule says, their half-integer
 * parts in D8 + 1/2 with even sum, and no two codes alike. */
static void test_e8_values(void **state)
{
    (void)state;
    static uint64_t seen[65536];
    for (uint32_t c = 0; c < 65536; c++) {
        int8_t v4[8];
        int want[8], sum = 0;
        nsq_lattice_e8_value((uint16_t)c, v4);
        ref_e8((uint16_t)c, want);
        uint64_t key = 0;
        for (int k = 0; k < 8; k++) {
            if (v4[k] != want[k]) fail_msg("code 0x%04x coordinate %d: %d, expected %d", c, k, v4[k], want[k]);
            assert_true(v4[k] & 1);
            assert_true(v4[k] >= -15 && v4[k] <= 15);
            sum += v4[k] - (c & 0x8000 ? -1 : 1); /* 4 * sigma_k * a_k */
            key = key << 5 | (uint64_t)(v4[k] + 16);
        }
        assert_int_equal((sum % 8 + 8) % 8, 0); /* the sum of sigma_k * a_k is even */
        seen[c] = key;
    }
    qsort(seen, 65536, 8, cmp_u64);
    for (uint32_t c = 1; c < 65536; c++) assert_true(seen[c] != seen[c - 1]);
    int8_t v4[8];
    nsq_lattice_e8_value(0x0000, v4); /* u = all ones, no signs: P = 0, coordinate 7 positive, +1/4 */
    for (int k = 0; k < 8; k++) assert_int_equal(v4[k], 3);
    nsq_lattice_e8_value(0x8100, v4); /* coordinate 0 negative, so 7 too; -1/4 */
    assert_int_equal(v4[0], -3);
    assert_int_equal(v4[1], 1);
    assert_int_equal(v4[7], -3);
    nsq_lattice_e8_value(0x0001, v4); /* u = 1,1,1,1,1,1,1,3: P = 1, so coordinate 7 negative */
    assert_int_equal(v4[6], 3);
    assert_int_equal(v4[7], -5);
}

/* E8S codes in the spec's order, enumerated here: the 28 pairs, each with
 * its 4 signs; the 128 half vectors with an even count of minus signs by
 * their first 7 signs; the 16 +-2e_k. */
static void ref_e8s_table(int t[256][8])
{
    int c = 0;
    memset(t, 0, 256 * sizeof *t);
    for (int i = 0; i < 8; i++)
        for (int j = i + 1; j < 8; j++)
            for (int sg = 0; sg < 4; sg++, c++) t[c][i] = sg & 1 ? -4 : 4, t[c][j] = sg & 2 ? -4 : 4;
    for (int m = 0; m < 128; m++, c++) {
        int neg = 0;
        for (int k = 0; k < 7; k++) t[c][k] = m >> k & 1 ? -2 : 2, neg += m >> k & 1;
        t[c][7] = neg % 2 ? -2 : 2;
    }
    for (int k = 0; k < 8; k++, c += 2) t[c][k] = 8, t[c + 1][k] = -8;
    assert_int_equal(c, 256);
}

/* Every code as enumerated; E8's 240 shortest vectors (norm 2, in D8 or
 * D8 + 1/2 with an even coordinate sum) and +-2e_k, no two alike. */
static void test_e8s_values(void **state)
{
    (void)state;
    int t[256][8];
    uint64_t seen[256];
    ref_e8s_table(t);
    for (uint32_t c = 0; c < 256; c++) {
        int8_t v4[8];
        int norm = 0, sum = 0;
        nsq_lattice_e8s_value((uint8_t)c, v4);
        seen[c] = 0;
        for (int k = 0; k < 8; k++) {
            if (v4[k] != t[c][k]) fail_msg("E8S code %u coordinate %d: %d, expected %d", c, k, v4[k], t[c][k]);
            norm += v4[k] * v4[k], sum += v4[k];
            seen[c] = seen[c] << 5 | (uint64_t)(v4[k] + 16);
        }
        assert_int_equal(norm, c < 240 ? 32 : 64); /* 16 |v|^2 */
        assert_int_equal((sum % 8 + 8) % 8, 0);    /* 4 * an even sum */
    }
    qsort(seen, 256, 8, cmp_u64);
    for (uint32_t c = 1; c < 256; c++) assert_true(seen[c] != seen[c - 1]);
    int8_t v4[8];
    nsq_lattice_e8s_value(7, v4); /* pair (0, 2), both negated */
    assert_int_equal(v4[0], -4);
    assert_int_equal(v4[1], 0);
    assert_int_equal(v4[2], -4);
    nsq_lattice_e8s_value(113, v4); /* coordinate 0 negated, so 7 too */
    assert_int_equal(v4[0], -2);
    assert_int_equal(v4[6], 2);
    assert_int_equal(v4[7], -2);
    nsq_lattice_e8s_value(255, v4);
    assert_int_equal(v4[7], -8);
}

/* ---- hand-built payloads ---- */
static const uint32_t kind_bits[5] = {0, 2, 1, 8, 1};

typedef struct {
    uint64_t rows, cols;
    uint32_t B, S, kind[4];
    uint8_t *p;
    uint64_t size, scales[4], codes[4];
} lat;

/* The layout of spec section 9.x, computed here; the payload zeroed but for
 * its header. */
static void lat_init(lat *L, uint64_t rows, uint64_t cols, uint32_t B, uint32_t S, const uint32_t *kinds)
{
    memset(L, 0, sizeof *L);
    L->rows = rows, L->cols = cols, L->B = B, L->S = S;
    uint64_t at = 64 + tu_pad64(cols / 8);
    for (uint32_t s = 0; s < S; s++) {
        L->kind[s] = kinds[s];
        L->scales[s] = at;
        at += tu_pad64(2 * rows * (cols / B));
        L->codes[s] = at;
        at += tu_pad64(rows * cols * kind_bits[kinds[s]] / 8);
    }
    L->size = at;
    L->p = calloc(1, at);
    assert_non_null(L->p);
    L->p[0] = (uint8_t)S;
    for (uint32_t s = 0; s < S; s++) L->p[1 + s] = (uint8_t)kinds[s];
}

static void set_scale(lat *L, uint32_t s, uint64_t r, uint64_t b, uint16_t h)
{
    tu_wr16(L->p + L->scales[s] + 2 * (r * (L->cols / L->B) + b), h);
}
static uint8_t *code_row(const lat *L, uint32_t s, uint64_t r)
{
    return L->p + L->codes[s] + r * (L->cols * kind_bits[L->kind[s]] / 8);
}

/* Random signs, codes and finite scales in [-2, 2]. */
static void lat_random(lat *L, tu_rng *g)
{
    for (uint64_t i = 0; i < L->cols / 8; i++) L->p[64 + i] = (uint8_t)tu_next(g);
    for (uint32_t s = 0; s < L->S; s++) {
        for (uint64_t r = 0; r < L->rows; r++) {
            for (uint64_t b = 0; b < L->cols / L->B; b++) set_scale(L, s, r, b, tu_f32_to_f16_ref(tu_unif(g, -2, 2)));
            uint8_t *row = code_row(L, s, r);
            for (uint64_t i = 0; i < L->cols * kind_bits[L->kind[s]] / 8; i++) row[i] = (uint8_t)tu_next(g);
        }
    }
}

static void lat_view(const lat *L, nsq_view *v)
{
    nsq_diag d = {0};
    nsq_status st = nsq_view_init(NSQ_SCHEME_LATTICE, L->rows, L->cols, L->B, L->p, L->size, v, &d);
    if (st) fail_msg("view: %s %s %s", nsq_status_name(st), d.rule, d.message);
}

/* The code value of stage s at (r, j), exact. */
static float ref_value(const lat *L, uint32_t s, uint64_t r, uint64_t j)
{
    const uint8_t *row = code_row(L, s, r);
    if (L->kind[s] == NSQ_LAT_E8) {
        int v4[8];
        ref_e8(tu_rd16(row + 2 * (j / 8)), v4);
        return (float)v4[j % 8] / 4.0f;
    }
    if (L->kind[s] == NSQ_LAT_SIGN) return row[j / 8] >> (j % 8) & 1 ? -1.0f : 1.0f;
    if (L->kind[s] == NSQ_LAT_E8S) {
        static int t[256][8], built;
        if (!built) ref_e8s_table(t), built = 1;
        return (float)t[row[j / 8]][j % 8] / 4.0f;
    }
    return (float)(int8_t)row[j];
}

/* Element (r, j) of W': acc = d_0 v_0, then acc = acc + d_s v_s. */
static float ref_rotated(const lat *L, uint64_t r, uint64_t j)
{
    float acc = 0;
    for (uint32_t s = 0; s < L->S; s++) {
        float d = tu_f16_to_f32_ref(tu_rd16(L->p + L->scales[s] + 2 * (r * (L->cols / L->B) + j / L->B)));
        float prod = d * ref_value(L, s, r, j);
        acc = s ? acc + prod : prod;
    }
    return acc;
}

static float ref_c(uint32_t B) { return (float)(1.0 / sqrt((double)B)); }
static int sign_neg(const lat *L, uint64_t j) { return L->p[64 + j / 8] >> (j % 8) & 1; }

/* Row r of W = W' R: the butterfly with h = 1, 2, 4, ..., then c and sigma. */
static void ref_original(const lat *L, uint64_t r, float *w)
{
    for (uint64_t j = 0; j < L->cols; j++) w[j] = ref_rotated(L, r, j);
    for (uint64_t b0 = 0; b0 < L->cols; b0 += L->B) {
        float *u = w + b0;
        for (uint32_t h = 1; h < L->B; h *= 2)
            for (uint32_t i = 0; i < L->B; i++)
                if (!(i & h)) {
                    float x = u[i], y = u[i + h];
                    u[i] = x + y, u[i + h] = x - y;
                }
    }
    float c = ref_c(L->B);
    for (uint64_t j = 0; j < L->cols; j++) w[j] = sign_neg(L, j) ? -(w[j] * c) : w[j] * c;
}

static void assert_bits(const float *got, const float *want, uint64_t n, const char *what)
{
    for (uint64_t i = 0; i < n; i++)
        if (tu_f32_bits(got[i]) != tu_f32_bits(want[i]))
            fail_msg("%s: element %llu is %.9g, expected %.9g", what, (unsigned long long)i, got[i], want[i]);
}

/* Both bases of a random payload, bit for bit, whole and by row ranges. */
static void check_decode(const lat *L, const char *what)
{
    nsq_view v;
    lat_view(L, &v);
    uint64_t n = L->rows * L->cols;
    float *got = malloc(n * sizeof *got), *want = malloc(n * sizeof *want);
    assert_non_null(got);
    assert_non_null(want);
    for (uint64_t r = 0; r < L->rows; r++)
        for (uint64_t j = 0; j < L->cols; j++) want[r * L->cols + j] = ref_rotated(L, r, j);
    assert_ok(nsq_lattice_rows_rotated(&v, 0, L->rows, got));
    assert_bits(got, want, n, what);
    assert_ok(nsq_lattice_rows_rotated(&v, L->rows - 1, 1, got));
    assert_bits(got, want + (L->rows - 1) * L->cols, L->cols, what);
    for (uint64_t r = 0; r < L->rows; r++) ref_original(L, r, want + r * L->cols);
    assert_ok(nsq_dequantize_rows(&v, NULL, 0, 0, L->rows, got));
    assert_bits(got, want, n, what);
    assert_ok(nsq_dequantize_rows(&v, NULL, 0, L->rows / 2, 1, got));
    assert_bits(got, want + L->rows / 2 * L->cols, L->cols, what);
    free(got);
    free(want);
}

static void test_decode_random(void **state)
{
    (void)state;
    static const struct { uint64_t rows, cols; uint32_t B, S, kinds[4]; } cases[] = {
        {3, 64, 8, 3, {NSQ_LAT_E8, NSQ_LAT_SIGN, NSQ_LAT_INT8}},
        {2, 96, 32, 4, {NSQ_LAT_E8, NSQ_LAT_E8, NSQ_LAT_INT8, NSQ_LAT_SIGN}},
        {5, 16, 16, 1, {NSQ_LAT_SIGN}},
        {4, 128, 64, 2, {NSQ_LAT_INT8, NSQ_LAT_E8}},
        {1, 2048, 2048, 2, {NSQ_LAT_E8, NSQ_LAT_E8}},
        {2, 16384, 16384, 1, {NSQ_LAT_E8}},
        {7, 24, 8, 2, {NSQ_LAT_SIGN, NSQ_LAT_SIGN}},
        {3, 64, 8, 4, {NSQ_LAT_E8, NSQ_LAT_E8S, NSQ_LAT_E8S, NSQ_LAT_INT8}},
        {9, 32, 32, 1, {NSQ_LAT_E8S}},
        {2, 4096, 1024, 3, {NSQ_LAT_E8, NSQ_LAT_E8, NSQ_LAT_E8S}},
    };
    tu_rng g = {17};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lat L;
        lat_init(&L, cases[i].rows, cases[i].cols, cases[i].B, cases[i].S, cases[i].kinds);
        lat_random(&L, &g);
        char what[64];
        snprintf(what, sizeof what, "case %zu (B = %u)", i, cases[i].B);
        check_decode(&L, what);
        free(L.p);
    }
}

/* Stages add in order, each sum rounded to nearest even. The ulp of 256 is
 * 2^-15: 256 + 2^-16 is a tie that rounds back to 256, twice, where adding
 * the two 2^-16 first would give 256 + 2^-15. Below 256 the ulp is 2^-16,
 * so 256 - 2^-16 - 3 * 2^-16 is exact. Products are exact, subnormal scales
 * included. */
static void test_decode_stage_sums(void **state)
{
    (void)state;
    uint32_t kinds[3] = {NSQ_LAT_E8, NSQ_LAT_SIGN, NSQ_LAT_INT8};
    lat L;
    lat_init(&L, 1, 8, 8, 3, kinds);
    set_scale(&L, 0, 0, 0, 0x6400);      /* 1024 */
    set_scale(&L, 1, 0, 0, 0x0100);      /* 2^-16, subnormal in f16 */
    set_scale(&L, 2, 0, 0, 0x0100);
    tu_wr16(code_row(&L, 0, 0), 0x8000); /* u all 1, no signs, shift -1/4: every value 1/4 */
    code_row(&L, 1, 0)[0] = 0x02;        /* column 1 negative */
    static const int8_t q[8] = {1, -3, 127, -128, 4, 0, 2, -1};
    memcpy(code_row(&L, 2, 0), q, 8);
    nsq_view v;
    lat_view(&L, &v);
    float got[8], want[8];
    assert_ok(nsq_lattice_rows_rotated(&v, 0, 1, got));
    assert_true(got[0] == 256.0f);
    assert_true(got[1] == 256.0f - 0x1p-14f);
    for (int j = 0; j < 8; j++) want[j] = ref_rotated(&L, 0, j);
    assert_bits(got, want, 8, "stage sums");
    free(L.p);
}

/* W = W' R exactly where the butterfly's sums are exact (small integers):
 * w_j = sigma_j fl(c sum_i W'_i H[i][j]), against explicit H and double
 * arithmetic. For B = 4^k, c = 2^-k and this is W' R itself. */
static void test_original_basis(void **state)
{
    (void)state;
    tu_rng g = {5};
    uint32_t kinds[1] = {NSQ_LAT_INT8};
    for (uint32_t B = 8; B <= 128; B *= 2) {
        lat L;
        lat_init(&L, 2, 2 * B, B, 1, kinds);
        lat_random(&L, &g);
        for (uint64_t r = 0; r < 2; r++)
            for (uint64_t b = 0; b < 2; b++) set_scale(&L, 0, r, b, 0x3C00); /* 1 */
        nsq_view v;
        lat_view(&L, &v);
        float *got = malloc(4 * B * sizeof *got);
        assert_ok(nsq_dequantize_rows(&v, NULL, 0, 0, 2, got));
        for (uint64_t r = 0; r < 2; r++)
            for (uint64_t j = 0; j < 2 * B; j++) {
                double sum = 0, exact_c = 1.0 / sqrt((double)B);
                uint64_t b0 = j / B * B;
                for (uint32_t i = 0; i < B; i++)
                    sum += (__builtin_popcount(i & (uint32_t)(j - b0)) & 1 ? -1.0 : 1.0) * (double)ref_value(&L, 0, r, b0 + i);
                double want = (sign_neg(&L, j) ? -1 : 1) * (double)(float)(sum * (double)ref_c(B));
                assert_true((double)got[r * 2 * B + j] == want);
                if (__builtin_ctz(B) % 2 == 0) /* c exact: W' R with no rounding at all */
                    assert_true((double)got[r * 2 * B + j] == (sign_neg(&L, j) ? -1 : 1) * sum * exact_c);
            }
        free(got);
        free(L.p);
    }
}

/* c = fl32(1/sqrt(B)) for every B: a single 1 at column 0 of W' decodes to
 * sigma_j c across its block. */
static void test_rotation_scale(void **state)
{
    (void)state;
    uint32_t kinds[1] = {NSQ_LAT_INT8};
    for (uint32_t B = 8; B <= 16384; B *= 2) {
        lat L;
        lat_init(&L, 1, B, B, 1, kinds);
        set_scale(&L, 0, 0, 0, 0x3C00);
        code_row(&L, 0, 0)[0] = 1;
        L.p[64] = 0x05; /* columns 0 and 2 negative */
        nsq_view v;
        lat_view(&L, &v);
        float *w = malloc(B * sizeof *w);
        assert_ok(nsq_dequantize_rows(&v, NULL, 0, 0, 1, w));
        float c = ref_c(B);
        assert_true(w[0] == -c && w[1] == c && w[2] == -c && w[B - 1] == c);
        if (B == 8) assert_int_equal(tu_f32_bits(c * 2.0f), 0x3F3504F3u); /* fl32(1/sqrt 2) */
        free(w);
        free(L.p);
    }
}

/* The public butterfly is H_n u for integer u (exact), n = 1..256. */
static void test_hadamard(void **state)
{
    (void)state;
    tu_rng g = {3};
    for (uint32_t n = 1; n <= 256; n *= 2) {
        float u[256];
        double want[256];
        for (uint32_t i = 0; i < n; i++) u[i] = (float)((int)tu_below(&g, 201) - 100);
        for (uint32_t i = 0; i < n; i++) {
            want[i] = 0;
            for (uint32_t j = 0; j < n; j++) want[i] += (__builtin_popcount(i & j) & 1 ? -1.0 : 1.0) * u[j];
        }
        nsq_lattice_hadamard(u, n);
        for (uint32_t i = 0; i < n; i++) assert_true((double)u[i] == want[i]);
    }
}

/* ---- the layout accessor and argument errors ---- */
static void test_view_fields(void **state)
{
    (void)state;
    uint32_t kinds[3] = {NSQ_LAT_INT8, NSQ_LAT_E8, NSQ_LAT_SIGN};
    lat L;
    lat_init(&L, 3, 48, 16, 3, kinds);
    nsq_view v;
    nsq_lattice lv;
    lat_view(&L, &v);
    assert_ok(nsq_lattice_view(&v, &lv));
    assert_int_equal(lv.n_stages, 3);
    assert_int_equal(lv.block, 16);
    assert_int_equal(lv.n_blocks, 3);
    assert_ptr_equal(lv.signs, L.p + 64);
    for (uint32_t s = 0; s < 4; s++) {
        assert_int_equal(lv.kind[s], s < 3 ? kinds[s] : 0);
        assert_ptr_equal(lv.scales[s], s < 3 ? L.p + L.scales[s] : NULL);
        assert_ptr_equal(lv.codes[s], s < 3 ? L.p + L.codes[s] : NULL);
        assert_int_equal(lv.row_bytes[s], s < 3 ? 48 * kind_bits[kinds[s]] / 8 : 0);
    }
    assert_int_equal(nsq_lattice_kind_bits(NSQ_LAT_E8), 2);
    assert_int_equal(nsq_lattice_kind_bits(NSQ_LAT_SIGN), 1);
    assert_int_equal(nsq_lattice_kind_bits(NSQ_LAT_INT8), 8);
    assert_int_equal(nsq_lattice_kind_bits(NSQ_LAT_E8S), 1);
    assert_int_equal(nsq_lattice_kind_bits(0), 0);
    assert_int_equal(nsq_lattice_kind_bits(5), 0);

    float out[3 * 48];
    nsq_refine_view rv = {.bits = 2, .codes = L.p, .size = 64}; /* stages of no kind */
    assert_status(nsq_lattice_rows_rotated(&v, 2, 2, out), NSQ_E_ARG);
    assert_status(nsq_lattice_rows_rotated(&v, UINT64_MAX, 2, out), NSQ_E_ARG);
    assert_status(nsq_lattice_rows_rotated(&v, 0, 1, NULL), NSQ_E_ARG);
    assert_status(nsq_lattice_rows_rotated(NULL, 0, 1, out), NSQ_E_ARG);
    assert_status(nsq_dequantize_rows(&v, &rv, 1, 0, 1, out), NSQ_E_TENSOR);
    assert_status(nsq_refine_view_init(&v, 2, L.p, 64, &rv, NULL), NSQ_E_ARG); /* TIERED's */
    assert_status(nsq_lattice_view(NULL, &lv), NSQ_E_ARG);
    assert_status(nsq_lattice_view(&v, NULL), NSQ_E_ARG);
    uint8_t f16[8] = {0};
    nsq_view dense;
    assert_ok(nsq_view_init(NSQ_SCHEME_F16, 2, 2, 0, f16, 8, &dense, NULL));
    assert_status(nsq_lattice_view(&dense, &lv), NSQ_E_ARG);
    assert_status(nsq_lattice_rows_rotated(&dense, 0, 1, out), NSQ_E_ARG);
    nsq_tiered tv;
    assert_status(nsq_tiered_view(&v, &tv), NSQ_E_ARG);

    nsq_scheme_info info;
    assert_ok(nsq_scheme_get(NSQ_SCHEME_LATTICE, &info));
    assert_string_equal(info.name, "lattice");
    assert_int_equal(info.elem_bits, 0);
    assert_int_equal(info.grouped, 1);
    free(L.p);
}

/* ---- payload rules ---- */
static void expect_bad(const lat *L, uint64_t size, const char *rule, const char *what)
{
    nsq_view v;
    nsq_diag d = {0};
    nsq_status st = nsq_view_init(NSQ_SCHEME_LATTICE, L->rows, L->cols, L->B, L->p, size, &v, &d);
    if (st != NSQ_E_TENSOR) fail_msg("%s: %s, expected NSQ_E_TENSOR", what, nsq_status_name(st));
    assert_diag(&d, NSQ_E_TENSOR, rule);
}

/* Sets byte at to value, expects the rule, restores the byte. */
static void poke(lat *L, uint64_t at, uint8_t value, const char *rule, const char *what)
{
    uint8_t old = L->p[at];
    L->p[at] = value;
    expect_bad(L, L->size, rule, what);
    L->p[at] = old;
}

static void test_invalid_payloads(void **state)
{
    (void)state;
    uint32_t kinds[2] = {NSQ_LAT_E8, NSQ_LAT_INT8};
    lat L;
    tu_rng g = {9};
    lat_init(&L, 3, 16, 8, 2, kinds); /* every stream shorter than 64 bytes: all padded */
    lat_random(&L, &g);
    nsq_view v;
    lat_view(&L, &v);
    expect_bad(&L, 63, "R-LAT-1", "short header");
    expect_bad(&L, 0, "R-LAT-1", "empty");
    poke(&L, 0, 0, "R-LAT-1", "no stages");
    poke(&L, 0, 5, "R-LAT-1", "five stages");
    poke(&L, 1, 0, "R-LAT-1", "kind 0 in use");
    poke(&L, 2, 5, "R-LAT-1", "kind 5");
    poke(&L, 3, NSQ_LAT_E8, "R-LAT-2", "kind of an unused stage");
    poke(&L, 4, 1, "R-LAT-2", "kind of the last unused stage");
    poke(&L, 5, 1, "R-LAT-2", "reserved byte 5");
    poke(&L, 63, 0x80, "R-LAT-2", "reserved byte 63");
    expect_bad(&L, L.size + 64, "R-LAT-3", "64 bytes more");
    expect_bad(&L, L.size - 64, "R-LAT-3", "64 bytes less");
    L.p[0] = 1, L.p[2] = 0; /* one stage fewer: a valid header, the wrong size */
    expect_bad(&L, L.size, "R-LAT-3", "one stage fewer");
    L.p[0] = 2, L.p[2] = NSQ_LAT_INT8;
    poke(&L, 2, NSQ_LAT_E8, "R-LAT-4", "another kind of the same padded size: codes past 12 bytes are padding");
    poke(&L, 64 + 2, 1, "R-LAT-4", "sign padding");
    poke(&L, 127, 1, "R-LAT-4", "last sign padding byte");
    poke(&L, L.scales[0] + 12, 1, "R-LAT-4", "stage 0 scale padding");
    poke(&L, L.codes[0] + 12, 1, "R-LAT-4", "stage 0 code padding");
    poke(&L, L.scales[1] + 63, 1, "R-LAT-4", "stage 1 scale padding");
    poke(&L, L.size - 1, 1, "R-LAT-4", "stage 1 code padding");
    set_scale(&L, 0, 0, 0, 0x7C00);
    expect_bad(&L, L.size, "R-LAT-5", "infinite scale");
    set_scale(&L, 0, 0, 0, 0x3C00);
    set_scale(&L, 1, 2, 1, 0xFE00);
    expect_bad(&L, L.size, "R-LAT-5", "NaN scale");
    set_scale(&L, 1, 2, 1, 0x8001); /* negative subnormal: finite */
    lat_view(&L, &v);
    /* R-LAT-1 before R-LAT-2 before R-LAT-3 before the streams */
    L.p[0] = 9, L.p[5] = 1;
    expect_bad(&L, L.size + 64, "R-LAT-1", "header first");
    L.p[0] = 2;
    expect_bad(&L, L.size + 64, "R-LAT-2", "reserved before size");
    L.p[5] = 0;
    set_scale(&L, 0, 0, 0, 0x7C00);
    L.p[64 + 2] = 1;
    expect_bad(&L, L.size + 64, "R-LAT-3", "size before streams");
    expect_bad(&L, L.size, "R-LAT-4", "sign padding before scales");
    free(L.p);

    /* shapes the scheme cannot have are argument errors */
    uint8_t pay[1024] = {1, 1};
    static const struct { uint64_t rows, cols; uint32_t B; } shapes[] = {
        {1, 16, 4}, {1, 24, 12}, {1, 32768, 32768}, {1, 16, 32}, {1, 24, 16}, {0, 16, 8}, {1, 0, 8}, {1, 16, 0}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        assert_status(nsq_view_init(NSQ_SCHEME_LATTICE, shapes[i].rows, shapes[i].cols, shapes[i].B, pay, sizeof pay, &v,
                                    NULL),
                      NSQ_E_ARG);
}

/* Any code is valid, and so is any finite scale. */
static void test_any_code(void **state)
{
    (void)state;
    uint32_t kinds[4] = {NSQ_LAT_E8, NSQ_LAT_SIGN, NSQ_LAT_INT8, NSQ_LAT_E8S};
    lat L;
    lat_init(&L, 2, 64, 32, 4, kinds);
    for (uint32_t s = 0; s < 4; s++) {
        memset(code_row(&L, s, 0), 0xFF, 2 * 64 * kind_bits[kinds[s]] / 8);
        for (uint64_t i = 0; i < 4; i++) set_scale(&L, s, i / 2, i % 2, (uint16_t[]){0x7BFF, 0xFBFF, 0x0000, 0x8000}[i]);
    }
    memset(L.p + 64, 0xFF, 8);
    check_decode(&L, "extreme codes and scales");
    free(L.p);
}

/* ---- sizes ---- */
static void test_payload_size(void **state)
{
    (void)state;
    static const uint32_t all[4] = {NSQ_LAT_E8, NSQ_LAT_SIGN, NSQ_LAT_INT8, NSQ_LAT_E8};
    static const uint32_t lists[2][4] = {{NSQ_LAT_E8, NSQ_LAT_SIGN, NSQ_LAT_INT8, NSQ_LAT_E8},
                                         {NSQ_LAT_INT8, NSQ_LAT_E8S, NSQ_LAT_SIGN, NSQ_LAT_E8S}};
    static const uint64_t shapes[][3] = {{1, 8, 8}, {3, 16, 8}, {5, 96, 32}, {64, 4096, 128}, {7, 16384, 16384}, {1000, 1024, 1024}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (uint32_t S = 1; S <= 4; S++)
            for (int l = 0; l < 2; l++) {
                uint64_t rows = shapes[i][0], cols = shapes[i][1], B = shapes[i][2], want = 64 + tu_pad64(cols / 8);
                for (uint32_t s = 0; s < S; s++)
                    want += tu_pad64(2 * rows * (cols / B)) + tu_pad64(rows * cols * kind_bits[lists[l][s]] / 8);
                assert_int_equal(nsq_lattice_payload_size(rows, cols, (uint32_t)B, S, lists[l]), want);
            }
    uint32_t rev[2] = {NSQ_LAT_INT8, NSQ_LAT_E8}, fwd[2] = {NSQ_LAT_E8, NSQ_LAT_INT8}, bad[2] = {NSQ_LAT_E8, 0};
    assert_int_equal(nsq_lattice_payload_size(3, 64, 16, 2, rev), nsq_lattice_payload_size(3, 64, 16, 2, fwd));
    assert_int_equal(nsq_lattice_payload_size(3, 64, 16, 2, fwd), 64 + 64 + 2 * 64 + 64 + 192);
    assert_int_equal(nsq_lattice_payload_size(3, 64, 16, 2, bad), 0);
    assert_int_equal(nsq_lattice_payload_size(3, 64, 16, 0, fwd), 0);
    assert_int_equal(nsq_lattice_payload_size(3, 64, 16, 5, all), 0);
    assert_int_equal(nsq_lattice_payload_size(3, 64, 16, 1, NULL), 0);
    assert_int_equal(nsq_lattice_payload_size(3, 64, 4, 1, fwd), 0);
    assert_int_equal(nsq_lattice_payload_size(3, 64, 24, 1, fwd), 0);
    assert_int_equal(nsq_lattice_payload_size(3, 64, 128, 1, fwd), 0);
    assert_int_equal(nsq_lattice_payload_size(3, 32768, 32768, 1, fwd), 0);
    assert_int_equal(nsq_lattice_payload_size(0, 64, 16, 1, fwd), 0);
    assert_int_equal(nsq_lattice_payload_size(3, 0, 16, 1, fwd), 0);
    /* 2^33 x 2^30 = 2^63 elements: one INT8 stage fits in 64 bits, two do not */
    uint32_t i8[2] = {NSQ_LAT_INT8, NSQ_LAT_INT8};
    assert_int_equal(nsq_lattice_payload_size(1ull << 33, 1ull << 30, 16384, 1, i8),
                     64 + (1ull << 27) + (1ull << 50) + (1ull << 63));
    assert_int_equal(nsq_lattice_payload_size(1ull << 33, 1ull << 30, 16384, 2, i8), 0);
    assert_int_equal(nsq_lattice_payload_size(1ull << 40, 1ull << 30, 16384, 1, i8), 0);
}

/* ---- files ---- */
enum { NMAT = 2 };
static const struct { const char *name; uint64_t rows, cols; uint32_t B, S, kinds[4]; } mats[NMAT] = {
    {"layers.0.attention.wq.weight", 8, 96, 32, 3, {NSQ_LAT_E8, NSQ_LAT_SIGN, NSQ_LAT_INT8}},
    {"layers.0.feed_forward.w2.weight", 5, 64, 8, 1, {NSQ_LAT_E8}},
};

static void make_mats(lat *L)
{
    tu_rng g = {23};
    for (int i = 0; i < NMAT; i++) {
        lat_init(&L[i], mats[i].rows, mats[i].cols, mats[i].B, mats[i].S, mats[i].kinds);
        lat_random(&L[i], &g);
    }
}

/* A one-layer model whose layer block (zstd) holds the LATTICE matrices,
 * with importance stats for the first; with_lattice 0: F32 matrices instead. */
static nsq_status write_body(nsq_writer *w, const lat *L, int with_lattice)
{
    uint64_t emb[2] = {TU_VOCAB, 8}, vec[1] = {8};
    nsq_status st;
    if ((st = tu_write_required_meta(w, 1, 8, NULL)) || (st = tu_write_tokenizer(w)) ||
        (st = nsq_writer_begin_block(w, NSQ_BLOCK_EMBEDDINGS, 0, 0, NSQ_COMP_NONE)) ||
        (st = tu_add_f32(w, "tok_embeddings.weight", 2, emb, 0.0f)) || (st = nsq_writer_end_block(w, NULL)) ||
        (st = nsq_writer_begin_block(w, NSQ_BLOCK_LAYERS, 0, 1, NSQ_COMP_ZSTD)) ||
        (st = tu_add_f32(w, "layers.0.norm.weight", 1, vec, 1.0f)))
        return st;
    for (int i = 0; i < NMAT && !st; i++) {
        uint64_t dims[2] = {L[i].rows, L[i].cols};
        st = with_lattice ? nsq_writer_add_tensor(w, mats[i].name, NSQ_SCHEME_LATTICE, 2, dims, L[i].B, L[i].p, L[i].size)
                          : tu_add_f32(w, mats[i].name, 2, dims, 0.5f);
    }
    if (st || (st = nsq_writer_end_block(w, NULL)) ||
        (st = nsq_writer_begin_block(w, NSQ_BLOCK_OUTPUT, 0, 0, NSQ_COMP_NONE)) ||
        (st = tu_add_f32(w, "output.weight", 2, emb, 1.0f)) || (st = nsq_writer_end_block(w, NULL)) || !with_lattice)
        return st;
    float gs[8 * 96 / 32], cs[96];
    for (int i = 0; i < 24; i++) gs[i] = 0.5f * (float)i;
    for (int i = 0; i < 96; i++) cs[i] = 1.0f;
    if ((st = nsq_writer_importance(w, NSQ_IMP_CALIBRATED, 3.0, "lattice test"))) return st;
    return nsq_writer_importance_entry(w, mats[0].name, gs, 24, cs, 96);
}

static nsq_status write_model(const char *path, const lat *L, int with_lattice)
{
    nsq_writer *w;
    nsq_status st = nsq_writer_open(path, &w, NULL);
    if (st) return st;
    st = write_body(w, L, with_lattice);
    nsq_status fin = nsq_writer_finish(w, NULL); /* reports a sticky error, and cleans up */
    return st ? st : fin;
}

static void test_file_round_trip(void **state)
{
    char *path = tu_join(*state, "lattice.nsq");
    lat L[NMAT];
    make_mats(L);
    assert_ok(write_model(path, L, 1));
    nsq_file *f;
    nsq_diag d = {0};
    assert_ok(nsq_open(path, 0, &f, &d));
    nsq_info info;
    nsq_get_info(f, &info);
    assert_int_equal(info.version_minor, NSQ_FORMAT_MINOR);
    assert_int_equal(info.required_features, NSQ_REQ_ZSTD | NSQ_REQ_LATTICE);
    assert_ok(nsq_verify(f, &d));
    nsq_loaded blk;
    assert_ok(nsq_block_load(f, 1, &blk, &d));
    for (int i = 0; i < NMAT; i++) {
        uint32_t idx;
        nsq_tensor t;
        nsq_view v, mine;
        assert_ok(nsq_tensor_find(f, mats[i].name, &idx));
        assert_ok(nsq_tensor_at(f, idx, &t));
        assert_int_equal(t.scheme, NSQ_SCHEME_LATTICE);
        assert_int_equal(t.group_size, mats[i].B);
        assert_int_equal(t.size, L[i].size);
        assert_int_equal(t.n_refine, 0);
        assert_ok(nsq_tensor_view(f, idx, &blk, &v, &d));
        assert_memory_equal(v.data, L[i].p, L[i].size);
        lat_view(&L[i], &mine);
        uint64_t n = L[i].rows * L[i].cols;
        float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
        assert_ok(nsq_dequantize_rows(&v, NULL, 0, 0, L[i].rows, a));
        assert_ok(nsq_dequantize_rows(&mine, NULL, 0, 0, L[i].rows, b));
        assert_bits(a, b, n, mats[i].name);
        free(a);
        free(b);
    }
    nsq_importance_entry e;
    assert_ok(nsq_importance_entry_at(f, 0, &e));
    assert_int_equal(e.n_group_stats, 24);
    assert_int_equal(e.n_col_stats, 96);
    nsq_loaded_free(&blk);
    nsq_close(f);

    /* no LATTICE tensor: the bit is clear, the version the same */
    assert_ok(write_model(path, L, 0));
    assert_ok(nsq_open(path, 0, &f, &d));
    nsq_get_info(f, &info);
    assert_int_equal(info.version_minor, NSQ_FORMAT_MINOR);
    assert_int_equal(info.required_features, NSQ_REQ_ZSTD);
    nsq_close(f);
    free(path);
    for (int i = 0; i < NMAT; i++) free(L[i].p);
}

/* ---- the writer refuses what a reader would ---- */
static nsq_writer *open_block(const char *dir)
{
    char *p = tu_join(dir, "bad.nsq");
    nsq_writer *w;
    assert_ok(nsq_writer_open(p, &w, NULL));
    assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_LAYERS, 0, 1, NSQ_COMP_NONE));
    free(p);
    return w;
}

static void finish_fails(nsq_writer *w, nsq_status st, const char *rule)
{
    nsq_diag d = {0};
    assert_status(nsq_writer_finish(w, &d), st);
    assert_diag(&d, st, rule);
}

static void test_writer_refuses(void **state)
{
    lat L[NMAT];
    make_mats(L);
    uint64_t dims[3] = {L[0].rows, L[0].cols, 1}, flat = L[0].rows * L[0].cols;
    nsq_writer *w = open_block(*state);
    L[0].p[5] = 1;
    assert_status(nsq_writer_add_tensor(w, "t", NSQ_SCHEME_LATTICE, 2, dims, 32, L[0].p, L[0].size), NSQ_E_TENSOR);
    finish_fails(w, NSQ_E_TENSOR, "R-LAT-2");
    L[0].p[5] = 0;
    w = open_block(*state);
    assert_status(nsq_writer_add_tensor(w, "t", NSQ_SCHEME_LATTICE, 2, dims, 32, L[0].p, L[0].size - 64), NSQ_E_TENSOR);
    finish_fails(w, NSQ_E_TENSOR, "R-LAT-3");
    w = open_block(*state);
    assert_status(nsq_writer_add_tensor(w, "t", NSQ_SCHEME_LATTICE, 2, dims, 48, L[0].p, L[0].size), NSQ_E_ARG);
    finish_fails(w, NSQ_E_ARG, NULL);
    w = open_block(*state);
    assert_status(nsq_writer_add_tensor(w, "t", NSQ_SCHEME_LATTICE, 1, &flat, 32, L[0].p, L[0].size), NSQ_E_ARG);
    finish_fails(w, NSQ_E_ARG, "R-TEN-7");
    w = open_block(*state);
    assert_status(nsq_writer_add_tensor(w, "t", NSQ_SCHEME_LATTICE, 3, dims, 32, L[0].p, L[0].size), NSQ_E_ARG);
    finish_fails(w, NSQ_E_ARG, "R-TEN-7");
    w = open_block(*state); /* no refinement levels for LATTICE */
    assert_ok(nsq_writer_add_tensor(w, "t", NSQ_SCHEME_LATTICE, 2, dims, 32, L[0].p, L[0].size));
    uint8_t codes[64] = {0};
    assert_status(nsq_writer_add_refinement(w, 1, 2, codes, 64), NSQ_E_STATE);
    finish_fails(w, NSQ_E_STATE, "");
    w = open_block(*state); /* importance: one group stat per row and block */
    assert_ok(nsq_writer_add_tensor(w, "t", NSQ_SCHEME_LATTICE, 2, dims, 32, L[0].p, L[0].size));
    assert_ok(nsq_writer_end_block(w, NULL));
    assert_ok(nsq_writer_importance(w, NSQ_IMP_MAGNITUDE, 2.0, ""));
    float gs[25] = {0};
    assert_status(nsq_writer_importance_entry(w, "t", gs, 25, NULL, 0), NSQ_E_ARG);
    finish_fails(w, NSQ_E_ARG, "R-IMP-5");
    for (int i = 0; i < NMAT; i++) free(L[i].p);
}

/* ---- record rules and the feature bit, on patched files ---- */
typedef struct {
    uint8_t *p;
    size_t len;
    uint64_t dir_entry, dir_off, rec; /* the directory's table entry and offset; the record of mats[0] */
} image;

static void load_image(const char *path, image *m)
{
    m->p = tu_must_read(path, &m->len);
    m->p = realloc(m->p, m->len + 64);
    uint64_t toff = tu_rd64(m->p + 40);
    for (uint32_t i = 0; i < tu_rd32(m->p + 48); i++)
        if (tu_rd32(m->p + toff + 32 * i) == 3) m->dir_entry = toff + 32 * i;
    m->dir_off = tu_rd64(m->p + m->dir_entry + 8);
    const uint8_t *dir = m->p + m->dir_off;
    uint64_t at = 16 + 64ull * tu_rd32(dir) + 48ull * tu_rd32(dir + 4);
    for (uint32_t i = 0; i < tu_rd32(dir + 8); i++) {
        uint16_t nl = tu_rd16(dir + at);
        if (nl == strlen(mats[0].name) && !memcmp(dir + at + 2, mats[0].name, nl)) m->rec = m->dir_off + at;
        at += 2 + nl + 16 + 8ull * dir[at + 3 + nl] + 16 + 24ull * dir[at + 12 + nl];
    }
    assert_true(m->rec != 0);
}

/* Section and header checksums after an edit. */
static void reseal(image *m)
{
    uint64_t toff = tu_rd64(m->p + 40), n = tu_rd32(m->p + 48);
    for (uint64_t i = 0; i < n; i++) {
        uint8_t *e = m->p + toff + 32 * i;
        tu_wr64(e + 24, XXH3_64bits(m->p + tu_rd64(e + 8), tu_rd64(e + 16)));
    }
    uint8_t h[128];
    memcpy(h, m->p, 128);
    memset(h + 56, 0, 8);
    XXH3_state_t *st = XXH3_createState();
    XXH3_64bits_reset(st);
    XXH3_64bits_update(st, h, 128);
    XXH3_64bits_update(st, m->p + toff, 32 * n);
    XXH3_64bits_update(st, m->p + m->dir_off, tu_rd64(m->p + m->dir_entry + 16));
    tu_wr64(m->p + 56, XXH3_64bits_digest(st));
    XXH3_freeState(st);
}

/* Inserts n (a multiple of 8) zero bytes at off inside the directory,
 * moving what follows: later sections, the table, the file's end. */
static void insert_zeros(image *m, uint64_t off, uint64_t n)
{
    memmove(m->p + off + n, m->p + off, m->len - off);
    memset(m->p + off, 0, n);
    m->len += n;
    uint64_t toff = tu_rd64(m->p + 40) + n;
    tu_wr64(m->p + 40, toff);
    tu_wr64(m->p + 32, m->len);
    m->dir_entry += n;
    for (uint32_t i = 0; i < tu_rd32(m->p + 48); i++) {
        uint8_t *e = m->p + toff + 32 * i;
        if (tu_rd64(e + 8) > m->dir_off) tu_wr64(e + 8, tu_rd64(e + 8) + n);
    }
    tu_wr64(m->p + m->dir_entry + 16, tu_rd64(m->p + m->dir_entry + 16) + n);
}

static void expect_open(image *m, nsq_status st, const char *rule)
{
    reseal(m);
    nsq_file *f = NULL;
    nsq_diag d = {0};
    assert_status(nsq_open_memory(m->p, m->len, 0, &f, &d), st);
    if (st) assert_diag(&d, st, rule);
    nsq_close(f);
}

static void test_records(void **state)
{
    char *path = tu_join(*state, "lattice.nsq"), *plain = tu_join(*state, "plain.nsq");
    lat L[NMAT];
    make_mats(L);
    assert_ok(write_model(path, L, 1));
    assert_ok(write_model(plain, L, 0));
    image m;
    uint64_t fields = strlen(mats[0].name) + 2; /* scheme 0, n_dims 1, group_size 6, n_refine 10, dims 16, size 40 */
    static const struct { uint64_t at, width, value; int add; } edits[] = {
        {6, 4, 12, 0},     /* group_size: B not a power of two */
        {6, 4, 4, 0},      /* below 8 */
        {6, 4, 32768, 0},  /* above 16384 */
        {6, 4, 64, 0},     /* does not divide 96 */
        {40, 8, 8, 1},     /* size: every LATTICE size is a multiple of 64 */
        {40, 8, 1, 1},
        {40, 8, 0, 0},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        load_image(path, &m);
        uint8_t *at = m.p + m.rec + fields + edits[i].at;
        uint64_t v = edits[i].value + (edits[i].add ? tu_rd64(at) : 0);
        for (uint64_t k = 0; k < edits[i].width; k++) at[k] = (uint8_t)(v >> (8 * k));
        expect_open(&m, NSQ_E_DIRECTORY, edits[i].at == 6 ? "R-TEN-7" : "R-TEN-6");
        free(m.p);
    }
    load_image(path, &m); /* a refinement part of no stages, in a block without levels */
    m.p[m.rec + fields + 10] = 1;
    insert_zeros(&m, m.rec + fields + 48, 24);
    expect_open(&m, NSQ_E_DIRECTORY, "R-TEN-8");
    free(m.p);

    load_image(path, &m); /* LATTICE bit clear with a LATTICE tensor */
    m.p[16] &= (uint8_t)~NSQ_REQ_LATTICE;
    expect_open(&m, NSQ_E_FEATURE, "R-HDR-11");
    free(m.p);
    load_image(plain, &m); /* set without one */
    m.p[16] |= NSQ_REQ_LATTICE;
    expect_open(&m, NSQ_E_FEATURE, "R-HDR-11");
    m.p[16] |= 1u << 4; /* an unknown required bit */
    expect_open(&m, NSQ_E_UNSUPPORTED, "R-HDR-4");
    free(m.p);

    load_image(path, &m); /* importance: the group count of a LATTICE tensor is rows * cols / B */
    uint64_t imp = 0, toff = tu_rd64(m.p + 40);
    for (uint32_t i = 0; i < tu_rd32(m.p + 48); i++)
        if (tu_rd32(m.p + toff + 32 * i) == 4) imp = tu_rd64(m.p + toff + 32 * i + 8);
    uint8_t *entry = m.p + imp + 20 + tu_rd32(m.p + imp + 16);
    assert_int_equal(tu_rd64(entry + 8), 24);
    tu_wr64(entry + 8, 12);
    expect_open(&m, NSQ_E_IMPORTANCE, "R-IMP-5");
    free(m.p);
    free(path);
    free(plain);
    for (int i = 0; i < NMAT; i++) free(L[i].p);
}

/* ---- refinement levels ---- */

/* The payload of L's first k stages: its bytes are a prefix of L's. */
static void lat_prefix(const lat *L, uint32_t k, lat *out)
{
    lat_init(out, L->rows, L->cols, L->B, k, L->kind);
    memcpy(out->p + 64, L->p + 64, out->size - 64);
}

/* Level l of tensor i adds stages [cut[i][l-1], cut[i][l]) of L[i]. */
static nsq_status write_levels(const char *path, const lat *L, const uint32_t cut[2][3], int n)
{
    nsq_writer *w;
    uint64_t emb[2] = {TU_VOCAB, 8}, vec[1] = {8};
    nsq_status st = nsq_writer_open(path, &w, NULL);
    if (st) return st;
    if ((st = tu_write_required_meta(w, 1, 8, NULL)) || (st = tu_write_tokenizer(w)) ||
        (st = nsq_writer_begin_block(w, NSQ_BLOCK_EMBEDDINGS, 0, 0, NSQ_COMP_NONE)) ||
        (st = tu_add_f32(w, "tok_embeddings.weight", 2, emb, 0.0f)) || (st = nsq_writer_end_block(w, NULL)) ||
        (st = nsq_writer_begin_block(w, NSQ_BLOCK_LAYERS, 0, 1, NSQ_COMP_NONE)) ||
        (st = tu_add_f32(w, "layers.0.norm.weight", 1, vec, 1.0f)))
        return nsq_writer_abort(w), st;
    for (int i = 0; i < n && !st; i++) {
        lat base;
        uint64_t dims[2] = {L[i].rows, L[i].cols};
        lat_prefix(&L[i], cut[i][0], &base);
        st = nsq_writer_add_tensor(w, mats[i].name, NSQ_SCHEME_LATTICE, 2, dims, L[i].B, base.p, base.size);
        for (uint32_t l = 1; l < 3 && !st && cut[i][l]; l++) {
            uint64_t from = l == 1 ? base.size : L[i].scales[cut[i][l - 1]];
            uint64_t to = cut[i][l] < L[i].S ? L[i].scales[cut[i][l]] : L[i].size;
            st = nsq_writer_add_lattice_refinement(w, l, cut[i][l] - cut[i][l - 1], L[i].kind + cut[i][l - 1],
                                                   L[i].p + from, to - from);
        }
        free(base.p);
    }
    if (st || (st = nsq_writer_end_block(w, NULL)) || (st = nsq_writer_begin_block(w, NSQ_BLOCK_OUTPUT, 0, 0, NSQ_COMP_NONE)) ||
        (st = tu_add_f32(w, "output.weight", 2, emb, 1.0f)) || (st = nsq_writer_end_block(w, NULL)))
        return nsq_writer_abort(w), st;
    return nsq_writer_finish(w, NULL);
}

/* A LATTICE tensor at depth d decodes, in both bases and bit for bit, as
 * the payload of its base's and its first d levels' stages. */
static void test_levels(void **state)
{
    static const uint32_t kinds[2][4] = {{NSQ_LAT_E8, NSQ_LAT_SIGN, NSQ_LAT_E8, NSQ_LAT_INT8}, {NSQ_LAT_E8, NSQ_LAT_E8}};
    static const uint32_t cut[2][3] = {{1, 2, 4}, {1, 1, 2}}; /* the second adds no stage at level 1 */
    char *path = tu_join(*state, "levels.nsq");
    lat L[NMAT];
    tu_rng g = {5};
    for (int i = 0; i < NMAT; i++) {
        lat_init(&L[i], mats[i].rows, mats[i].cols, mats[i].B, i ? 2 : 4, kinds[i]);
        lat_random(&L[i], &g);
    }
    assert_ok(write_levels(path, L, cut, NMAT));
    nsq_file *f;
    nsq_diag d = {0};
    nsq_info info;
    assert_ok(nsq_open(path, 0, &f, &d));
    nsq_get_info(f, &info);
    assert_int_equal(info.required_features, NSQ_REQ_LATTICE | NSQ_REQ_LATTICE_LEVELS);
    assert_ok(nsq_verify(f, &d));
    nsq_loaded blk, ref[2];
    assert_ok(nsq_block_load(f, 1, &blk, &d));
    for (uint32_t l = 0; l < 2; l++) assert_ok(nsq_refinement_load(f, 1, l + 1, &ref[l], &d));
    for (int i = 0; i < NMAT; i++) {
        uint32_t idx;
        nsq_tensor t;
        nsq_view v;
        nsq_refine_view rv[2];
        assert_ok(nsq_tensor_find(f, mats[i].name, &idx));
        assert_ok(nsq_tensor_at(f, idx, &t));
        assert_int_equal(t.n_refine, 2);
        assert_ok(nsq_tensor_view(f, idx, &blk, &v, &d));
        for (uint32_t l = 0; l < 2; l++) {
            assert_int_equal(t.refine[l].bits, cut[i][l + 1] - cut[i][l]);
            assert_ok(nsq_tensor_refine_view(f, idx, l + 1, &v, &ref[l], &rv[l], &d));
        }
        uint64_t n = L[i].rows * L[i].cols;
        float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
        for (uint32_t depth = 0; depth <= 2; depth++) {
            lat want;
            nsq_view wv;
            nsq_lattice lv;
            lat_prefix(&L[i], cut[i][depth], &want);
            lat_view(&want, &wv);
            assert_ok(nsq_lattice_view_refined(&v, rv, depth, &lv));
            assert_int_equal(lv.n_stages, cut[i][depth]);
            assert_ok(nsq_dequantize_rows(&v, rv, depth, 0, L[i].rows, a));
            assert_ok(nsq_dequantize_rows(&wv, NULL, 0, 0, L[i].rows, b));
            assert_bits(a, b, n, "original basis at a depth");
            assert_ok(nsq_lattice_rows_rotated_refined(&v, rv, depth, 0, L[i].rows, a));
            assert_ok(nsq_lattice_rows_rotated(&wv, 0, L[i].rows, b));
            assert_bits(a, b, n, "rotated basis at a depth");
            free(want.p);
        }
        free(a), free(b);
    }
    for (uint32_t l = 0; l < 2; l++) nsq_loaded_free(&ref[l]);
    nsq_loaded_free(&blk);
    nsq_close(f);

    nsq_writer *w;
    lat base;
    uint64_t dims[2] = {L[0].rows, L[0].cols};
    lat_prefix(&L[0], 3, &base); /* 3 base stages and a level of 2: R-LAT-6 */
    assert_ok(nsq_writer_open(path, &w, NULL));
    assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_LAYERS, 0, 1, NSQ_COMP_NONE));
    assert_ok(nsq_writer_add_tensor(w, mats[0].name, NSQ_SCHEME_LATTICE, 2, dims, L[0].B, base.p, base.size));
    assert_status(nsq_writer_add_lattice_refinement(w, 1, 2, L[0].kind + 1, L[0].p + L[0].scales[1],
                                                    L[0].scales[3] - L[0].scales[1]),
                  NSQ_E_ARG);
    nsq_writer_abort(w);
    assert_ok(nsq_writer_open(path, &w, NULL)); /* a level one byte short: R-TEN-9's exact size */
    assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_LAYERS, 0, 1, NSQ_COMP_NONE));
    assert_ok(nsq_writer_add_tensor(w, mats[0].name, NSQ_SCHEME_LATTICE, 2, dims, L[0].B, base.p, base.size));
    assert_status(nsq_writer_add_lattice_refinement(w, 1, 1, L[0].kind + 3, L[0].p + L[0].scales[3],
                                                    L[0].size - L[0].scales[3] - 1),
                  NSQ_E_ARG);
    nsq_writer_abort(w);
    free(base.p);
    for (int i = 0; i < NMAT; i++) free(L[i].p);
    free(path);
}

/* Writes a two-tensor levels file (kinds and cut of write_levels) and loads its image. */
static void levels_image(const char *path, const uint32_t kinds[2][4], const uint32_t cut[2][3], image *m)
{
    lat L[NMAT];
    tu_rng g = {31};
    for (int i = 0; i < NMAT; i++) {
        lat_init(&L[i], mats[i].rows, mats[i].cols, mats[i].B, cut[i][2], kinds[i]);
        lat_random(&L[i], &g);
    }
    assert_ok(write_levels(path, L, cut, NMAT));
    for (int i = 0; i < NMAT; i++) free(L[i].p);
    load_image(path, m);
}

/* Opens the image (resealed), views mats[0] in block 1, and verifies. */
static void expect_e8s(image *m, nsq_status open, nsq_status view, nsq_status verify)
{
    nsq_file *f = NULL;
    nsq_diag d = {0};
    reseal(m);
    assert_status(nsq_open_memory(m->p, m->len, 0, &f, &d), open);
    if (open) {
        assert_diag(&d, open, "R-HDR-11");
        return;
    }
    nsq_loaded blk;
    nsq_view v;
    uint32_t idx;
    assert_ok(nsq_block_load(f, 1, &blk, &d));
    assert_ok(nsq_tensor_find(f, mats[0].name, &idx));
    assert_status(nsq_tensor_view(f, idx, &blk, &v, &d), view);
    if (view) assert_diag(&d, view, "R-HDR-11");
    assert_status(nsq_verify(f, &d), verify);
    if (verify) assert_diag(&d, verify, "R-HDR-11");
    nsq_loaded_free(&blk);
    nsq_close(f);
}

/* Required bit 3 is set exactly when a stage is E8S: checked at open for
 * refinement parts, when a payload is viewed, and by nsq_verify for the
 * bit set with no such stage. */
static void test_e8s_feature(void **state)
{
    static const uint32_t cut[2][3] = {{1, 2, 3}, {1, 1, 2}}; /* no level empty (R-TEN-11) */
    static const uint32_t in_part[2][4] = {{NSQ_LAT_E8, NSQ_LAT_E8S, NSQ_LAT_E8}, {NSQ_LAT_E8, NSQ_LAT_E8}};
    static const uint32_t in_base[2][4] = {{NSQ_LAT_E8S, NSQ_LAT_E8, NSQ_LAT_E8}, {NSQ_LAT_E8, NSQ_LAT_E8}};
    static const uint32_t none[2][4] = {{NSQ_LAT_E8, NSQ_LAT_SIGN, NSQ_LAT_E8}, {NSQ_LAT_E8, NSQ_LAT_E8}};
    char *path = tu_join(*state, "e8s.nsq");
    image m;
    levels_image(path, in_part, cut, &m);
    assert_int_equal(tu_rd64(m.p + 16), NSQ_REQ_LATTICE | NSQ_REQ_LATTICE_LEVELS | NSQ_REQ_LATTICE_E8S);
    expect_e8s(&m, NSQ_OK, NSQ_OK, NSQ_OK);
    m.p[16] &= (uint8_t)~NSQ_REQ_LATTICE_E8S;
    expect_e8s(&m, NSQ_E_FEATURE, NSQ_OK, NSQ_OK);
    free(m.p);
    levels_image(path, in_base, cut, &m);
    assert_int_equal(tu_rd64(m.p + 16), NSQ_REQ_LATTICE | NSQ_REQ_LATTICE_LEVELS | NSQ_REQ_LATTICE_E8S);
    m.p[16] &= (uint8_t)~NSQ_REQ_LATTICE_E8S;
    expect_e8s(&m, NSQ_OK, NSQ_E_FEATURE, NSQ_E_FEATURE);
    free(m.p);
    levels_image(path, none, cut, &m);
    assert_int_equal(tu_rd64(m.p + 16), NSQ_REQ_LATTICE | NSQ_REQ_LATTICE_LEVELS);
    m.p[16] |= NSQ_REQ_LATTICE_E8S;
    expect_e8s(&m, NSQ_OK, NSQ_OK, NSQ_E_FEATURE);
    free(m.p);
    free(path);
}

/* ---- spec 9.15, the worked example ---- */
static const struct {
    uint16_t off;
    uint8_t b[16];
} spec_rows[] = {
    {0x000, {0x03, 0x01, 0x02, 0x03}},
    {0x040, {0x5a, 0xc3}},
    {0x080, {0xb4, 0x33, 0xf5, 0x31, 0x2c, 0x33, 0xb3, 0x33}},
    {0x0c0, {0xb1, 0x5d, 0xfd, 0x54, 0xeb, 0xcb, 0xee, 0x62}},
    {0x100, {0xce, 0x2d, 0x12, 0x30, 0xd7, 0x2f, 0x86, 0x31}},
    {0x140, {0xa9, 0x74, 0x9d, 0x52}},
    {0x180, {0xd6, 0x14, 0xbc, 0x18, 0x8d, 0x12, 0x11, 0x18}},
    {0x1c0, {0x27, 0x7f, 0xb8, 0xb3, 0x0d, 0x32, 0xd9, 0x12, 0x19, 0xd7, 0x12, 0x0f, 0x34, 0x0e, 0x81, 0xd4}},
    {0x1d0, {0xa4, 0x85, 0x75, 0x81, 0x3b, 0x79, 0xf7, 0x20, 0x7f, 0x09, 0xd7, 0xd2, 0x3e, 0xdb, 0xa1, 0xe5}},
};
static const float spec_rotated[32] = {
    -0.1048336f, 0.90262794f, -0.2952118f, -0.24178886f, 0.045866013f, 0.14887619f, -0.015527725f, 0.11109543f,
    0.6969223f, 0.17203522f, -0.5044403f, 0.30149078f, -0.053527832f, 0.044784546f, -0.4673233f, -0.021057129f,
    -0.36415672f, -0.14395094f, 0.027092457f, -0.84038687f, -0.019287586f, 0.7235284f, -0.052790165f, -0.040878296f,
    0.6052227f, -0.21488762f, 0.7528515f, 0.26172256f, 0.13094711f, 0.038991928f, -0.902586f, 0.058847427f
};
static const float spec_original[32] = {
    0.19484454f, 0.45626694f, 0.5069848f, 0.32895514f, 0.01043556f, -0.29389167f, -0.43685782f, -0.34565204f,
    -0.05970961f, 0.29190165f, 0.5485537f, 0.59353554f, 0.41122916f, 0.09317353f, -0.20939903f, -0.34749502f,
    -0.25131625f, 0.03799083f, 0.39000332f, 0.64296836f, 0.6830561f, 0.49568233f, 0.17420371f, -0.12614113f,
    -0.25848627f, -0.1561861f, 0.13768734f, 0.48874158f, 0.73493445f, 0.771f, 0.57909095f, 0.25611663f
};

static void test_spec_worked_example(void **state)
{
    (void)state;
    uint8_t pay[512] = {0};
    for (size_t i = 0; i < sizeof spec_rows / sizeof spec_rows[0]; i++) memcpy(pay + spec_rows[i].off, spec_rows[i].b, 16);
    nsq_view v;
    nsq_diag d;
    nsq_lattice lv;
    assert_ok(nsq_view_init(NSQ_SCHEME_LATTICE, 2, 16, 8, pay, 512, &v, &d));
    assert_ok(nsq_lattice_view(&v, &lv));
    assert_int_equal(lv.n_stages, 3);
    assert_ptr_equal(lv.codes[2], pay + 0x1c0);
    float out[32];
    assert_ok(nsq_lattice_rows_rotated(&v, 0, 2, out));
    assert_bits(out, spec_rotated, 32, "spec 9.15 rotated");
    assert_ok(nsq_dequantize_rows(&v, NULL, 0, 0, 2, out));
    assert_bits(out, spec_original, 32, "spec 9.15 original");
    /* the by-hand element (0, 1) and the E8 example of 9.11 */
    int8_t v4[8];
    nsq_lattice_e8_value(0x5DB1, v4);
    static const int8_t want[8] = {-1, 11, -5, -1, -1, 3, -1, 3};
    assert_memory_equal(v4, want, 8);
    assert_true(out[1] == (float)0.45626693964004517);
    assert_ok(nsq_lattice_rows_rotated(&v, 0, 1, out));
    assert_true(out[1] == (float)0.9026279449462891);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e8_table),
        cmocka_unit_test(test_e8_values),
        cmocka_unit_test(test_e8s_values),
        cmocka_unit_test(test_decode_random),
        cmocka_unit_test(test_decode_stage_sums),
        cmocka_unit_test(test_original_basis),
        cmocka_unit_test(test_rotation_scale),
        cmocka_unit_test(test_hadamard),
        cmocka_unit_test(test_view_fields),
        cmocka_unit_test(test_invalid_payloads),
        cmocka_unit_test(test_any_code),
        cmocka_unit_test(test_payload_size),
        cmocka_unit_test(test_spec_worked_example),
        cmocka_unit_test_setup_teardown(test_file_round_trip, tu_setup_tmpdir, tu_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_writer_refuses, tu_setup_tmpdir, tu_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_records, tu_setup_tmpdir, tu_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_levels, tu_setup_tmpdir, tu_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_e8s_feature, tu_setup_tmpdir, tu_teardown_tmpdir),
    };
    return cmocka_run_group_tests(tests, ref_setup, NULL);
}
