/* test_logprob.c - the runtime's log-probabilities and KL divergences
 * (logprob.c): known values, no overflow from large logits, a shift of every
 * logit changing nothing, and the mean over positions. */
#include "testutil.h"

#include "nsqrt.h"

static void test_row(void **state)
{
    (void)state;
    const float x[3] = {0, 1, 2}, big[3] = {1e4f, 1e4f + 1, 1e4f + 2};
    double lp[3], lb[3], z = exp(0.0) + exp(1.0) + exp(2.0);
    nsqrt_logprob_row(x, 3, lp);
    for (int i = 0; i < 3; i++) assert_true(fabs(lp[i] - (i - log(z))) < 1e-12);
    nsqrt_logprob_row(big, 3, lb);
    for (int i = 0; i < 3; i++) assert_true(fabs(lb[i] - lp[i]) < 1e-12);
}

static void test_kl(void **state)
{
    (void)state;
    /* p = (1/4, 3/4), q = (1/2, 1/2) */
    const float p[2] = {0, (float)log(3.0)}, q[2] = {5, 5};
    double lp[2], lq[2], want = 0.25 * log(0.5) + 0.75 * log(1.5);
    nsqrt_logprob_row(p, 2, lp);
    nsqrt_logprob_row(q, 2, lq);
    assert_true(fabs(nsqrt_logprob_kl(lp, lq, 2) - want) < 1e-7);
    assert_true(fabs(nsqrt_logprob_kl(lp, lp, 2)) < 1e-15);
    /* two positions: the pair above, then q against itself */
    const float pp[4] = {0, (float)log(3.0), 5, 5}, qq[4] = {5, 5, 5, 5};
    double scratch[4];
    assert_true(fabs(nsqrt_logprob_mean_kl(pp, qq, 2, 2, scratch) - want / 2) < 1e-7);
    assert_true(nsqrt_logprob_mean_kl(pp, qq, 0, 2, scratch) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_row),
        cmocka_unit_test(test_kl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
