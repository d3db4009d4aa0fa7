/* test_numbers.c - half-precision conversions, LE float access, XXH3 and
 * status names, checked against references computed in this file. */
#include "testutil.h"

#include <float.h>

/* Every f16 bit pattern decodes to the exact value (spec 1.8); NaNs keep sign
 * and mantissa. */
static void test_f16_to_f32_exhaustive(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        uint32_t got = tu_f32_bits(nsq_f16_to_f32((uint16_t)h));
        uint32_t want;
        if (tu_f16_is_nan((uint16_t)h)) {
            want = (h & 0x8000u) << 16 | 0x7F800000u | (h & 0x3FFu) << 13;
        } else {
            double v = tu_f16_value((uint16_t)h);
            float fv = (float)v;
            assert_true((double)fv == v || isinf(v)); /* representable: the reference is exact */
            want = tu_f32_bits(fv);
        }
        if (got != want) fail_msg("f16 0x%04x -> f32 0x%08x, expected 0x%08x", h, got, want);
    }
    /* a few spelled out (spec 9.2 example) */
    assert_true(nsq_f16_to_f32(0x3C00) == 1.0f);
    assert_true(nsq_f16_to_f32(0xC100) == -2.5f);
    assert_true(nsq_f16_to_f32(0x2E66) == 0.0999755859375f);
    assert_true(nsq_f16_to_f32(0x4248) == 3.140625f);
    assert_int_equal(tu_f32_bits(nsq_f16_to_f32(0x8000)), 0x80000000u);
    assert_true(nsq_f16_to_f32(0x7BFF) == 65504.0f);
    assert_true(nsq_f16_to_f32(0x0001) == 0x1p-24f);
    assert_true(nsq_f16_to_f32(0x03FF) == 1023 * 0x1p-24f);
    assert_true(nsq_f16_to_f32(0x0400) == 0x1p-14f);
    assert_true(isinf(nsq_f16_to_f32(0x7C00)) && nsq_f16_to_f32(0x7C00) > 0);
    assert_true(isinf(nsq_f16_to_f32(0xFC00)) && nsq_f16_to_f32(0xFC00) < 0);
}

/* f16 -> f32 -> f16 is the identity for every non-NaN pattern; NaN stays NaN. */
static void test_f16_round_trip(void **state)
{
    (void)state;
    unsigned nans = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        uint16_t back = nsq_f32_to_f16(nsq_f16_to_f32((uint16_t)h));
        if (tu_f16_is_nan((uint16_t)h)) {
            if (!tu_f16_is_nan(back) || (back & 0x8000) != (h & 0x8000))
                fail_msg("NaN 0x%04x came back as 0x%04x", h, back);
            nans++;
        } else if (back != h) {
            fail_msg("f16 0x%04x round-trips to 0x%04x", h, back);
        }
    }
    assert_int_equal(nans, 2 * 1023);
}

static void check_to_f16(float f, uint16_t want)
{
    uint16_t got = nsq_f32_to_f16(f);
    if (got != want) fail_msg("f32 %a (0x%08x) -> f16 0x%04x, expected 0x%04x", (double)f, tu_f32_bits(f), got, want);
}

/* Exact ties between every pair of adjacent f16 values (normal and subnormal,
 * both signs) round to the even one; one f32 ulp either side decides. */
static void test_f32_to_f16_ties(void **state)
{
    (void)state;
    unsigned n = 0;
    for (uint32_t h = 0; h <= 0x7BFF; h++) {
        double lo = tu_f16_value((uint16_t)h), hi = tu_f16_value((uint16_t)(h + 1));
        if (h == 0x7BFF) hi = 65536.0; /* the grid point past the largest finite f16 */
        double mid = (lo + hi) / 2;
        float fm = (float)mid;
        assert_true((double)fm == mid); /* 12 significant bits: exact in f32 */
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        for (int s = 0; s < 2; s++) {
            uint16_t sg = s ? 0x8000 : 0;
            float m = s ? -fm : fm;
            check_to_f16(m, (uint16_t)(sg | even));
            check_to_f16(nextafterf(m, 0.0f), (uint16_t)(sg | h));
            check_to_f16(nextafterf(m, s ? -INFINITY : INFINITY), (uint16_t)(sg | (h + 1)));
            n += 3;
        }
    }
    assert_int_equal(n, 6u * 0x7C00);
}

/* Subnormal results, underflow to zero, and overflow to infinity. */
static void test_f32_to_f16_edges(void **state)
{
    (void)state;
    check_to_f16(0.0f, 0x0000);
    check_to_f16(-0.0f, 0x8000);
    check_to_f16(0x1p-24f, 0x0001);
    check_to_f16(0x1p-25f, 0x0000);                       /* tie between 0 and 2^-24: even is 0 */
    check_to_f16(nextafterf(0x1p-25f, 1.0f), 0x0001);     /* just above the tie */
    check_to_f16(-nextafterf(0x1p-25f, 1.0f), 0x8001);
    check_to_f16(0x1.8p-24f, 0x0002);                     /* 1.5 * 2^-24: tie, 1 is odd -> 2 */
    check_to_f16(0x1.4p-24f, 0x0001);
    check_to_f16(0x1p-26f, 0x0000);
    check_to_f16(FLT_TRUE_MIN, 0x0000);
    check_to_f16(-FLT_TRUE_MIN, 0x8000);
    check_to_f16(1023 * 0x1p-24f, 0x03FF);                /* largest subnormal */
    check_to_f16(1023.5f * 0x1p-24f, 0x0400);             /* tie rounds up to the smallest normal */
    check_to_f16(0x1p-14f, 0x0400);
    check_to_f16(65504.0f, 0x7BFF);
    check_to_f16(65519.0f, 0x7BFF);
    check_to_f16(nextafterf(65520.0f, 0.0f), 0x7BFF);
    check_to_f16(65520.0f, 0x7C00); /* the tie with 2^16 rounds to even: infinity */
    check_to_f16(65536.0f, 0x7C00);
    check_to_f16(1e6f, 0x7C00);
    check_to_f16(FLT_MAX, 0x7C00);
    check_to_f16(-FLT_MAX, 0xFC00);
    check_to_f16(INFINITY, 0x7C00);
    check_to_f16(-INFINITY, 0xFC00);
    check_to_f16(-65520.0f, 0xFC00);
    check_to_f16(1.0f, 0x3C00);
    check_to_f16(-2.5f, 0xC100);
    check_to_f16(0.1f, 0x2E66);       /* spec 9.2 example */
    check_to_f16(3.1415927f, 0x4248);
    check_to_f16(1.0f + 0x1p-11f, 0x3C00); /* tie: 0x3C00 is even */
    check_to_f16(1.0f + 0x3p-11f, 0x3C02); /* tie: 0x3C01 is odd */
    uint16_t n1 = nsq_f32_to_f16(NAN), n2 = nsq_f32_to_f16(-NAN);
    assert_true(tu_f16_is_nan(n1) && tu_f16_is_nan(n2));
    assert_int_equal(n1 & 0x8000, 0);
    assert_int_equal(n2 & 0x8000, 0x8000);
    /* a NaN with payload bits only below the f16 mantissa must not become infinity */
    assert_true(tu_f16_is_nan(nsq_f32_to_f16(tu_bits_f32(0x7F800001u))));
    assert_true(tu_f16_is_nan(nsq_f32_to_f16(tu_bits_f32(0xFF800FFFu))));
}

/* Against the double-arithmetic reference: a dense sweep of the f32 patterns
 * around the f16 range, and random patterns over all of f32. */
static void test_f32_to_f16_reference(void **state)
{
    (void)state;
    unsigned n = 0;
    /* from 2^-26 to past 2^17, every 61st pattern (hits all low-bit residues) */
    for (uint32_t u = 0x32800000u; u < 0x48000000u; u += 61, n++) {
        float f = tu_bits_f32(u);
        uint16_t want = tu_f32_to_f16_ref(f);
        check_to_f16(f, want);
        check_to_f16(-f, (uint16_t)(want | 0x8000));
    }
    tu_rng r = {12345};
    for (int i = 0; i < 500000; i++, n++) {
        float f = tu_bits_f32((uint32_t)tu_next(&r));
        uint16_t got = nsq_f32_to_f16(f), want = tu_f32_to_f16_ref(f);
        if (isnan(f)) {
            if (!tu_f16_is_nan(got)) fail_msg("NaN 0x%08x -> 0x%04x", tu_f32_bits(f), got);
        } else if (got != want) {
            fail_msg("f32 0x%08x -> 0x%04x, expected 0x%04x", tu_f32_bits(f), got, want);
        }
    }
    /* the reference itself agrees with "nearest f16" found by search on a sample */
    double *grid = malloc(0x7C00 * sizeof *grid);
    assert_non_null(grid);
    for (uint32_t h = 0; h < 0x7C00; h++) grid[h] = tu_f16_value((uint16_t)h);
    for (int i = 0; i < 1000; i++) {
        float f = tu_unif(&r, -65000.0f, 65000.0f) * (i % 2 ? 1.0f : 0x1p-16f);
        uint16_t want = tu_f32_to_f16_ref(f);
        double best = INFINITY, a = fabs((double)f);
        for (uint32_t h = 0; h < 0x7C00; h++) best = fmin(best, fabs(grid[h] - a));
        assert_true(fabs(tu_f16_value(want) - f) == best);
        assert_int_equal(want & 0x8000, f < 0 ? 0x8000 : 0);
    }
    free(grid);
    print_message("# f32->f16: %u patterns checked against the reference\n", n);
}

/* bf16 is the top half of an f32: exhaustively h << 16. */
static void test_bf16(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        uint32_t got = tu_f32_bits(nsq_bf16_to_f32((uint16_t)h));
        if (got != h << 16) fail_msg("bf16 0x%04x -> 0x%08x", h, got);
    }
    assert_true(nsq_bf16_to_f32(0x3F80) == 1.0f);
    assert_true(nsq_bf16_to_f32(0xC020) == -2.5f);
    assert_true(nsq_bf16_to_f32(0x3DCD) == 0.10009765625f);
    assert_true(nsq_bf16_to_f32(0x4780) == 65536.0f);
}

static void test_f32_at(void **state)
{
    (void)state;
    uint8_t buf[1 + 4 * 4] = {0xAA, 0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x20, 0xc0,
                              0xcd, 0xcc, 0xcc, 0x3d, 0x00, 0x00, 0x00, 0x80};
    const uint8_t *p = buf + 1; /* deliberately unaligned */
    assert_true(nsq_f32_at(p, 0) == 1.0f);
    assert_true(nsq_f32_at(p, 1) == -2.5f);
    assert_int_equal(tu_f32_bits(nsq_f32_at(p, 2)), 0x3DCCCCCDu);
    assert_int_equal(tu_f32_bits(nsq_f32_at(p, 3)), 0x80000000u);
}

/* XXH3_64bits (seed 0) known answers: the empty string, and xxHash's own
 * sanity-check vectors over its generated buffer (cli/xsum_sanity_check.c). */
static void test_xxh3_known_answers(void **state)
{
    (void)state;
    assert_int_equal(nsq_xxh3("", 0), 0x2D06800538D394C2ull);
    static const struct {
        size_t len;
        uint64_t h;
    } kat[] = {
        {0, 0x2D06800538D394C2ull},    {1, 0xC44BDFF4074EECDBull},    {6, 0x27B56A84CD2D7325ull},
        {12, 0xA713DAF0DFBB77E7ull},   {24, 0xA3FE70BF9D3510EBull},   {48, 0x397DA259ECBA1F11ull},
        {80, 0xBCDEFBBB2C47C90Aull},   {195, 0xCD94217EE362EC3Aull},  {403, 0xCDEB804D65C6DEA4ull},
        {512, 0x617E49599013CB6Bull},  {2048, 0xDD59E2C3A5F038E0ull}, {2240, 0x6E73A90539CF2948ull},
        {2367, 0xCB37AEB9E5D361EDull},
    };
    enum { N = 4096 + 64 + 1 };
    uint8_t *buf = malloc(N);
    assert_non_null(buf);
    uint64_t gen = 2654435761u; /* PRIME32 */
    for (size_t i = 0; i < N; i++) {
        buf[i] = (uint8_t)(gen >> 56);
        gen *= 11400714785074694797ull; /* PRIME64 */
    }
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        uint64_t got = nsq_xxh3(buf, kat[i].len);
        if (got != kat[i].h)
            fail_msg("XXH3 of %zu bytes = %016llx, expected %016llx", kat[i].len, (unsigned long long)got,
                     (unsigned long long)kat[i].h);
    }
    free(buf);
}

/* Status values are pinned; names and messages exist for all of them. */
static void test_status_names(void **state)
{
    (void)state;
    assert_int_equal(NSQ_OK, 0);
    assert_int_equal(NSQ_E_CHECKSUM, 8);
    assert_int_equal(NSQ_E_TENSOR, 17);
    assert_int_equal(NSQ_E_RESERVED, 25);
    assert_string_equal(nsq_status_name(NSQ_OK), "NSQ_OK");
    assert_string_equal(nsq_status_name(NSQ_E_CHECKSUM), "NSQ_E_CHECKSUM");
    assert_string_equal(nsq_status_name(NSQ_E_NOT_FOUND), "NSQ_E_NOT_FOUND");
    assert_string_equal(nsq_status_name(NSQ_E_RESERVED), "NSQ_E_RESERVED");
    assert_string_equal(nsq_strerror(NSQ_E_CHECKSUM), "checksum mismatch");
    for (int s = 0; s <= 30; s++) {
        assert_non_null(nsq_status_name((nsq_status)s));
        assert_non_null(nsq_strerror((nsq_status)s));
        assert_true(strlen(nsq_strerror((nsq_status)s)) > 0);
    }
    assert_non_null(nsq_status_name((nsq_status)-1));
    assert_string_equal(nsq_version_string(), NSQ_VERSION_STRING);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_to_f32_exhaustive), cmocka_unit_test(test_f16_round_trip),
        cmocka_unit_test(test_f32_to_f16_ties),       cmocka_unit_test(test_f32_to_f16_edges),
        cmocka_unit_test(test_f32_to_f16_reference),  cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_f32_at),                cmocka_unit_test(test_xxh3_known_answers),
        cmocka_unit_test(test_status_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
