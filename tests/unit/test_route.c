/* test_route.c - the routing choice (route.c): on random instances the
 * knapsack's choice fits the budget, respects every mask, and is at least as
 * good as the best choice found by trying every combination under the budget
 * less the rounding slack of its byte units; without a budget every block
 * gets its least damaging choice. */
#include "testutil.h"

#include "nsqrt.h"

static uint32_t rng = 777;
static uint32_t next(void)
{
    rng = rng * 1664525u + 1013904223u;
    return rng >> 8;
}

/* A table of n blocks: edges (first and last) BASE or FULL, layers any. */
static void make_table(nsqrt_route_table *t, uint32_t n, double (*dmg)[3])
{
    memset(t, 0, sizeof *t);
    t->n_blocks = n;
    t->mask = calloc(n, 1);
    t->cost = calloc(n, sizeof *t->cost);
    for (uint32_t b = 0; b < n; b++) {
        int edge = b == 0 || b == n - 1, refined = next() % 4 != 0;
        t->mask[b] = (uint8_t)(1u << NSQRT_ROUTE_BASE | (!edge) << NSQRT_ROUTE_SKIP | refined << NSQRT_ROUTE_FULL);
        t->cost[b][NSQRT_ROUTE_SKIP] = 0;
        t->cost[b][NSQRT_ROUTE_BASE] = 1000 + next() % 100000;
        t->cost[b][NSQRT_ROUTE_FULL] = t->cost[b][NSQRT_ROUTE_BASE] + next() % 100000;
        dmg[b][NSQRT_ROUTE_FULL] = 0;
        dmg[b][NSQRT_ROUTE_BASE] = (next() % 1000) / 1000.0;
        dmg[b][NSQRT_ROUTE_SKIP] = dmg[b][NSQRT_ROUTE_BASE] + (next() % 1000) / 100.0;
    }
}

/* Least total damage over every combination within budget (exhaustive). */
static double brute(const nsqrt_route_table *t, const double (*dmg)[3], uint64_t budget)
{
    uint32_t n = t->n_blocks, combos = 1;
    double best = INFINITY;
    for (uint32_t b = 0; b < n; b++) combos *= 3;
    for (uint32_t k = 0; k < combos; k++) {
        uint64_t bytes = 0;
        double d = 0;
        int ok = 1;
        for (uint32_t b = 0, r = k; b < n && ok; b++, r /= 3) {
            ok = t->mask[b] >> (r % 3) & 1;
            bytes += t->cost[b][r % 3], d += dmg[b][r % 3];
        }
        if (ok && bytes <= budget && d < best) best = d;
    }
    return best;
}

static void test_knapsack_random(void **state)
{
    (void)state;
    for (int trial = 0; trial < 300; trial++) {
        nsqrt_route_table t;
        double dmg[7][3];
        uint8_t choice[7];
        uint32_t n = 3 + next() % 5;
        make_table(&t, n, dmg);
        uint64_t all = 0, min = nsqrt_route_minimum(&t, t.mask);
        for (uint32_t b = 0; b < n; b++) all += t.cost[b][NSQRT_ROUTE_FULL];
        uint64_t budget = min + next() % (all - min + 1);
        assert_int_equal(nsqrt_route_select(&t, t.mask, (const double(*)[3])dmg, budget, choice), 0);
        uint64_t bytes = 0;
        double d = 0;
        for (uint32_t b = 0; b < n; b++) {
            assert_true(t.mask[b] >> choice[b] & 1);
            bytes += t.cost[b][choice[b]], d += dmg[b][choice[b]];
        }
        assert_true(bytes <= budget);
        uint64_t slack = n * (budget / 4096 + 1); /* each block's bytes round up to a unit */
        double floor = brute(&t, (const double(*)[3])dmg, budget > slack ? budget - slack : 0);
        assert_true(d <= floor + 1e-9);
        nsqrt_route_free(&t);
    }
}

static void test_knapsack_infeasible_and_unlimited(void **state)
{
    (void)state;
    nsqrt_route_table t;
    double dmg[5][3];
    uint8_t choice[5];
    make_table(&t, 5, dmg);
    uint64_t min = nsqrt_route_minimum(&t, t.mask);
    assert_int_equal(nsqrt_route_select(&t, t.mask, (const double(*)[3])dmg, min - 1, choice), -1);
    assert_int_equal(nsqrt_route_select(&t, t.mask, (const double(*)[3])dmg, 0, choice), 0);
    for (uint32_t b = 0; b < 5; b++) /* no limit: the most precise choice allowed */
        assert_int_equal(choice[b], t.mask[b] >> NSQRT_ROUTE_FULL & 1 ? NSQRT_ROUTE_FULL : NSQRT_ROUTE_BASE);
    /* a budget that holds everything gives the same, even with zero damages everywhere */
    memset(dmg, 0, sizeof dmg);
    uint64_t all = 0;
    for (uint32_t b = 0; b < 5; b++) all += t.cost[b][NSQRT_ROUTE_FULL];
    assert_int_equal(nsqrt_route_select(&t, t.mask, (const double(*)[3])dmg, all, choice), 0);
    for (uint32_t b = 0; b < 5; b++) assert_int_equal(choice[b], t.mask[b] >> NSQRT_ROUTE_FULL & 1 ? NSQRT_ROUTE_FULL : NSQRT_ROUTE_BASE);
    nsqrt_route_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_knapsack_random),
        cmocka_unit_test(test_knapsack_infeasible_and_unlimited),
        
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
