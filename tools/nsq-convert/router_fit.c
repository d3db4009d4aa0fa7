/* router_fit.c - measuring what each block choice costs, and fitting the
 * router to it.
 *
 * The calibration text is tokenized without special tokens and cut into
 * windows of ROUTER_WINDOW tokens. In each window the first
 * NSQRT_ROUTE_PROMPT_TOKENS tokens are the prompt: the router's feature is their
 * mean embedding, and the damage of a choice is the mean KL divergence of the
 * next-token distributions after the prompt from the run with every block at
 * FULL (route_measure).
 *
 * The router is linear (hidden_dim 0): ridge regression on standardised
 * features, solved in its dual form since there are fewer windows than
 * features. Every fourth window is held out to report how well it ranks
 * damages; the penalty is chosen by 4-fold cross-validation on the others;
 * the stored router is then refitted on all windows. Its intercept is the
 * mean damage, which is also the static policy. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "nsqrt.h"
#include "router_fit.h"

#define FAIL(...) (snprintf(err, errlen, __VA_ARGS__), -1)

typedef struct {
    uint32_t n, D, O;
    float *x;      /* [n][D] features */
    double *y;     /* [n][O] measured damages */
    uint8_t *have; /* [O] measured outputs (allowed SKIP; BASE where FULL exists) */
} samples;

/* Solves (K + lambda I) A = Y in place (A overwrites Y), K n x n symmetric
 * positive semi-definite, by Cholesky. -1 if not positive definite. */
static int ridge_solve(double *K, uint32_t n, double lambda, double *Y, uint32_t O)
{
    for (uint32_t i = 0; i < n; i++) K[(size_t)i * n + i] += lambda;
    for (uint32_t j = 0; j < n; j++) {
        double d = K[(size_t)j * n + j];
        for (uint32_t k = 0; k < j; k++) d -= K[(size_t)j * n + k] * K[(size_t)j * n + k];
        if (!(d > 0)) return -1;
        d = sqrt(d);
        K[(size_t)j * n + j] = d;
        for (uint32_t i = j + 1; i < n; i++) {
            double v = K[(size_t)i * n + j];
            for (uint32_t k = 0; k < j; k++) v -= K[(size_t)i * n + k] * K[(size_t)j * n + k];
            K[(size_t)i * n + j] = v / d;
        }
    }
    for (uint32_t o = 0; o < O; o++) { /* L L^T a = y, column o of Y */
        for (uint32_t i = 0; i < n; i++) {
            double v = Y[(size_t)i * O + o];
            for (uint32_t k = 0; k < i; k++) v -= K[(size_t)i * n + k] * Y[(size_t)k * O + o];
            Y[(size_t)i * O + o] = v / K[(size_t)i * n + i];
        }
        for (uint32_t i = n; i-- > 0;) {
            double v = Y[(size_t)i * O + o];
            for (uint32_t k = i + 1; k < n; k++) v -= K[(size_t)k * n + i] * Y[(size_t)k * O + o];
            Y[(size_t)i * O + o] = v / K[(size_t)i * n + i];
        }
    }
    return 0;
}

/* A linear router fitted on the windows in idx: standardisation, weights
 * w[O][D] and intercept b[O] (the mean damage). */
typedef struct {
    double *mean, *scale, *w, *b;
} linear_fit;

static void fit_free(linear_fit *f) { free(f->mean), free(f->scale), free(f->w), free(f->b); }

static int fit(const samples *s, const uint32_t *idx, uint32_t n, double lambda, linear_fit *f)
{
    uint32_t D = s->D, O = s->O;
    f->mean = calloc(D, sizeof *f->mean), f->scale = calloc(D, sizeof *f->scale);
    f->w = calloc((size_t)O * D, sizeof *f->w), f->b = calloc(O, sizeof *f->b);
    double *Z = malloc((size_t)n * D * sizeof *Z), *K = malloc((size_t)n * n * sizeof *K), *Y = malloc((size_t)n * O * sizeof *Y);
    int rc = f->mean && f->scale && f->w && f->b && Z && K && Y && n > 0 ? 0 : -1;
    for (uint32_t i = 0; !rc && i < D; i++) {
        double m = 0, v = 0;
        for (uint32_t k = 0; k < n; k++) m += s->x[(size_t)idx[k] * D + i];
        m /= n;
        for (uint32_t k = 0; k < n; k++) v += (s->x[(size_t)idx[k] * D + i] - m) * (s->x[(size_t)idx[k] * D + i] - m);
        v = sqrt(v / n);
        f->mean[i] = m, f->scale[i] = v > 1e-12 ? 1 / v : 1;
        for (uint32_t k = 0; k < n; k++) Z[(size_t)k * D + i] = (s->x[(size_t)idx[k] * D + i] - m) * f->scale[i];
    }
    for (uint32_t o = 0; !rc && o < O; o++) {
        for (uint32_t k = 0; k < n; k++) f->b[o] += s->y[(size_t)idx[k] * O + o];
        f->b[o] /= n;
        for (uint32_t k = 0; k < n; k++) Y[(size_t)k * O + o] = s->y[(size_t)idx[k] * O + o] - f->b[o];
    }
    for (uint32_t a = 0; !rc && a < n; a++)
        for (uint32_t c = 0; c <= a; c++) {
            double v = 0;
            for (uint32_t i = 0; i < D; i++) v += Z[(size_t)a * D + i] * Z[(size_t)c * D + i];
            K[(size_t)a * n + c] = K[(size_t)c * n + a] = v;
        }
    if (!rc) rc = ridge_solve(K, n, lambda, Y, O);
    for (uint32_t k = 0; !rc && k < n; k++) /* w = Z^T A */
        for (uint32_t o = 0; o < O; o++) {
            double a = Y[(size_t)k * O + o];
            for (uint32_t i = 0; i < D; i++) f->w[(size_t)o * D + i] += a * Z[(size_t)k * D + i];
        }
    free(Z), free(K), free(Y);
    return rc;
}

static double predict(const linear_fit *f, const samples *s, uint32_t k, uint32_t o)
{
    double y = f->b[o];
    for (uint32_t i = 0; i < s->D; i++) y += f->w[(size_t)o * s->D + i] * (s->x[(size_t)k * s->D + i] - f->mean[i]) * f->scale[i];
    return y;
}

/* Mean squared error on windows idx of the measured outputs. */
static double mse(const linear_fit *f, const samples *s, const uint32_t *idx, uint32_t n, int intercept_only)
{
    double e = 0;
    uint64_t c = 0;
    for (uint32_t k = 0; k < n; k++)
        for (uint32_t o = 0; o < s->O; o++) {
            if (!s->have[o]) continue;
            double p = intercept_only ? f->b[o] : predict(f, s, idx[k], o), d = p - s->y[(size_t)idx[k] * s->O + o];
            e += d * d, c++;
        }
    return c ? e / c : 0;
}

static int cmp_rank(const void *a, const void *b)
{
    const double *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Spearman's rho of pairs (a[i], b[i]): Pearson's correlation of their ranks, ties averaged. */
static double spearman(const double *a, const double *b, uint32_t n)
{
    double *r[2] = {malloc(n * sizeof(double)), malloc(n * sizeof(double))}, *pair = malloc(2 * (size_t)n * sizeof *pair);
    double rho = 0;
    for (int v = 0; v < 2 && r[0] && r[1] && pair; v++) {
        for (uint32_t i = 0; i < n; i++) pair[2 * i] = (v ? b : a)[i], pair[2 * i + 1] = i;
        qsort(pair, n, 2 * sizeof *pair, cmp_rank);
        for (uint32_t i = 0, j; i < n; i = j) {
            for (j = i; j < n && pair[2 * j] == pair[2 * i]; j++) {}
            for (uint32_t k = i; k < j; k++) r[v][(uint32_t)pair[2 * k + 1]] = (i + j - 1) / 2.0;
        }
    }
    if (r[0] && r[1] && pair && n > 1) {
        double sa = 0, sb = 0, sab = 0, m = (n - 1) / 2.0;
        for (uint32_t i = 0; i < n; i++)
            sab += (r[0][i] - m) * (r[1][i] - m), sa += (r[0][i] - m) * (r[0][i] - m), sb += (r[1][i] - m) * (r[1][i] - m);
        rho = sa > 0 && sb > 0 ? sab / sqrt(sa * sb) : 0;
    }
    free(r[0]), free(r[1]), free(pair);
    return rho;
}

/* Held-out quality: pooled rank correlation (router and static), and the
 * per-output correlation across windows averaged over outputs. */
static void heldout_report(const linear_fit *f, const samples *s, const uint32_t *idx, uint32_t n, router_fit *r)
{
    uint32_t O = s->O, m = 0, outs = 0;
    double *p = calloc((size_t)n * O, sizeof *p), *q = calloc((size_t)n * O, sizeof *q), *y = calloc((size_t)n * O, sizeof *y);
    if (!p || !q || !y) {
        free(p), free(q), free(y);
        return;
    }
    for (uint32_t o = 0; o < O; o++) {
        if (!s->have[o]) continue;
        for (uint32_t k = 0; k < n; k++) p[m] = predict(f, s, idx[k], o), q[m] = f->b[o], y[m++] = s->y[(size_t)idx[k] * O + o];
        r->rho_within += spearman(p + m - n, y + m - n, n);
        outs++;
    }
    r->rho_router = spearman(p, y, m);
    r->rho_static = spearman(q, y, m);
    r->rho_within = outs ? r->rho_within / outs : 0;
    r->mse_router = mse(f, s, idx, n, 0);
    r->mse_static = mse(f, s, idx, n, 1);
    free(p), free(q), free(y);
}

/* The penalty of least 4-fold cross-validated error on the training windows. */
static double choose_lambda(const samples *s, const uint32_t *train, uint32_t n)
{
    static const double grid[] = {1e-2, 1e-1, 1, 10, 100, 1e3, 1e4};
    double best = 1e3 * s->D, best_e = INFINITY;
    uint32_t *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
    for (size_t g = 0; in && out && n >= 8 && g < sizeof grid / sizeof *grid; g++) {
        double e = 0, lambda = grid[g] * s->D;
        for (uint32_t fold = 0; fold < 4; fold++) {
            uint32_t ni = 0, no = 0;
            for (uint32_t k = 0; k < n; k++) {
                if (k % 4 == fold) out[no++] = train[k];
                else in[ni++] = train[k];
            }
            linear_fit f = {0};
            e += fit(s, in, ni, lambda, &f) ? INFINITY : mse(&f, s, out, no, 0);
            fit_free(&f);
        }
        if (e < best_e) best_e = e, best = lambda;
    }
    free(in), free(out);
    return best;
}

/* Runs every window: features and measured damages. */
static int measure(nsqrt_model *m, const nsqrt_route_table *t, const int32_t *ids, samples *s, int threads, char *err, size_t errlen)
{
    double(*dmg)[3] = calloc(t->n_blocks, sizeof *dmg);
    nsqrt_state *st = dmg ? nsqrt_state_new(m, ROUTER_WINDOW, (uint32_t)threads) : NULL;
    int rc = st ? 0 : FAIL("out of memory");
    double t0 = cli_now();
    for (uint32_t k = 0; !rc && k < s->n; k++) {
        const int32_t *w = ids + (size_t)k * ROUTER_WINDOW;
        nsqrt_route_features(m, w, NSQRT_ROUTE_PROMPT_TOKENS, s->x + (size_t)k * s->D);
        if (nsqrt_route_measure(m, st, t, w, ROUTER_WINDOW, NSQRT_ROUTE_PROMPT_TOKENS, dmg)) rc = FAIL("router: %s", nsqrt_error(m));
        for (uint32_t b = 0; !rc && b < t->n_blocks; b++)
            for (int c = 0; c < 3; c++) s->y[(size_t)k * s->O + 3 * b + c] = dmg[b][c];
        if (isatty(2)) fprintf(stderr, "\rnsq-convert: router: window %u/%u, %.0f s", k + 1, s->n, cli_now() - t0);
    }
    if (isatty(2)) fputc('\n', stderr);
    nsqrt_state_free(st);
    free(dmg);
    return rc;
}

static int tokens(const nsqrt_model *m, const char *text, size_t len, const char *name, int32_t **ids, size_t *n, char *err,
                  size_t errlen)
{
    const nsq_tokenizer *tok = nsqrt_model_tokenizer(m);
    if (!tok) return FAIL("router: the model has no tokenizer");
    nsq_diag d;
    if (nsq_tokenize_diag(tok, text, len, 0, ids, n, &d)) return FAIL("calibration text %s: cannot tokenize: %s", name, d.message);
    return 0;
}

static int store(const samples *s, const nsqrt_route_table *t, const linear_fit *f, router_fit *r)
{
    uint32_t D = s->D, O = s->O;
    r->mask = malloc(t->n_blocks);
    r->in_mean = malloc(D * sizeof *r->in_mean), r->in_scale = malloc(D * sizeof *r->in_scale);
    r->w2 = malloc((size_t)O * D * sizeof *r->w2), r->b2 = malloc(O * sizeof *r->b2), r->fixed = malloc(O * sizeof *r->fixed);
    if (!r->mask || !r->in_mean || !r->in_scale || !r->w2 || !r->b2 || !r->fixed) return -1;
    memcpy(r->mask, t->mask, t->n_blocks);
    for (uint32_t i = 0; i < D; i++) r->in_mean[i] = (float)f->mean[i], r->in_scale[i] = (float)f->scale[i];
    for (size_t i = 0; i < (size_t)O * D; i++) r->w2[i] = (float)f->w[i];
    for (uint32_t o = 0; o < O; o++) r->b2[o] = (float)f->b[o], r->fixed[o] = f->b[o];
    return 0;
}

int router_fit_run(const char *model_path, const char *text, size_t len, const char *name, uint32_t windows, int threads,
                   router_fit *r, char *err, size_t errlen)
{
    double t0 = cli_now();
    nsqrt_model *m;
    nsqrt_route_table t = {0};
    samples s = {0};
    int32_t *ids = NULL;
    size_t n_ids = 0;
    memset(r, 0, sizeof *r);
    nsqrt_opts mo = {0, -1, 0, 0, 1};
    if (nsqrt_open(model_path, &mo, &m, err, errlen)) return -1;
    const nsqrt_config *c = nsqrt_model_config(m);
    int rc = nsqrt_route_init(m, &t, err, errlen);
    uint8_t *full = rc ? NULL : malloc(t.n_blocks);
    if (!rc && !full) rc = FAIL("out of memory");
    if (!rc) nsqrt_route_all_full(&t, full);
    if (!rc) rc = nsqrt_route_apply(m, full, err, errlen);
    if (!rc && c->ctx < ROUTER_WINDOW) rc = FAIL("router: the model's context is below %d tokens", ROUTER_WINDOW);
    if (!rc) rc = tokens(m, text, len, name, &ids, &n_ids, err, errlen);
    s.n = (uint32_t)(n_ids / ROUTER_WINDOW < windows ? n_ids / ROUTER_WINDOW : windows);
    if (!rc && s.n < 8) rc = FAIL("calibration text %s: %zu tokens, the router needs 8 windows of %d", name, n_ids, ROUTER_WINDOW);
    s.D = c->hidden, s.O = 3 * t.n_blocks;
    s.x = rc ? NULL : malloc((size_t)s.n * s.D * sizeof *s.x);
    s.y = rc ? NULL : calloc((size_t)s.n * s.O, sizeof *s.y);
    s.have = rc ? NULL : calloc(s.O, 1);
    if (!rc && (!s.x || !s.y || !s.have)) rc = FAIL("out of memory");
    for (uint32_t o = 0; !rc && o < s.O; o++) s.have[o] = (uint8_t)nsqrt_route_measured(t.mask[o / 3], (int)(o % 3));
    if (!rc) rc = measure(m, &t, ids, &s, threads, err, errlen);
    uint32_t *train = rc ? NULL : malloc(s.n * sizeof *train), *held = rc ? NULL : malloc(s.n * sizeof *held), *all = rc ? NULL : malloc(s.n * sizeof *all);
    uint32_t nt = 0, nh = 0;
    if (!rc && (!train || !held || !all)) rc = FAIL("out of memory");
    for (uint32_t k = 0; !rc && k < s.n; k++) {
        all[k] = k;
        if (k % 4 == 3) held[nh++] = k;
        else train[nt++] = k;
    }
    linear_fit f = {0}, g = {0};
    if (!rc) {
        r->lambda = choose_lambda(&s, train, nt);
        rc = fit(&s, train, nt, r->lambda, &f) || fit(&s, all, s.n, r->lambda, &g) ? FAIL("router: the fit failed") : 0;
    }
    if (!rc) heldout_report(&f, &s, held, nh, r);
    if (!rc && store(&s, &t, &g, r)) rc = FAIL("out of memory");
    r->windows = s.n, r->heldout = nh, r->window = ROUTER_WINDOW, r->prompt_tokens = NSQRT_ROUTE_PROMPT_TOKENS;
    r->input_dim = s.D, r->block_count = t.n_blocks;
    r->seconds = cli_now() - t0;
    fit_free(&f), fit_free(&g);
    free(train), free(held), free(all), free(full), free(ids), free(s.x), free(s.y), free(s.have);
    nsqrt_route_free(&t);
    nsqrt_close(m);
    if (rc) router_fit_free(r);
    return rc;
}

void router_fit_free(router_fit *r)
{
    free(r->mask), free(r->in_mean), free(r->in_scale), free(r->w2), free(r->b2), free(r->fixed);
    memset(r, 0, sizeof *r);
}
