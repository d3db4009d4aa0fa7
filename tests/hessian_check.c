/* hessian_check.c - checks hessian_run on a lossless .nsq against sums in
 * double of the inputs that an observer sees in the ordinary forward pass
 * (nsqrt_forward, every layer at once), and for bit-identical results with 1
 * and 2 threads; then its errors. Prints what fails, exits 1 if anything does.
 *   hessian_check MODEL.nsq TEXT N_TOKENS WINDOW */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "hessian.h"
#include "nsqrt.h"

#define TOL 1e-5 /* |H - ref| over sqrt(ref_ii ref_jj): f32 sums of a few hundred tokens */

static int failures;
#define CHECK(cond, ...) ((cond) ? 1 : (fprintf(stderr, "FAIL: " __VA_ARGS__), fputc('\n', stderr), failures++, 0))

typedef struct {
    uint32_t n_layers, dim[CALIB_N_INPUTS];
    uint64_t tokens;
    double *ref[CALIB_N_INPUTS]; /* [layer][dim][dim], upper triangle: sums over every token */
    float *first[CALIB_N_INPUTS]; /* [layer][dim][dim], the first hessian_run's result */
    uint32_t next_layer;
    int compare_first; /* a later run: bit-identical to the first */
    double worst;
} expect;

static void observe(void *ctx, uint32_t L, int which, const float *x, uint32_t n, uint32_t in)
{
    expect *e = ctx;
    int k = calib_observed(which);
    if (k < 0) return;
    double *r = e->ref[k] + (size_t)L * in * in;
    for (uint32_t t = 0; t < n; t++)
        for (uint32_t i = 0; i < in; i++)
            for (uint32_t j = i; j < in; j++) r[(size_t)i * in + j] += (double)x[(size_t)t * in + i] * x[(size_t)t * in + j];
}

/* The reference: windows of w tokens, each from position 0, as hessian_run cuts them. */
static int reference(const char *path, const int32_t *ids, uint64_t n, uint32_t w, expect *e)
{
    static const nsqrt_opts whole = {0, 0, 0, 0, NSQRT_UNROUTED};
    char err[512];
    nsqrt_model *m;
    if (nsqrt_open(path, &whole, &m, err, sizeof err)) return fprintf(stderr, "%s\n", err), -1;
    const nsqrt_config *c = nsqrt_model_config(m);
    e->n_layers = c->n_layers;
    e->dim[CALIB_ATTN_IN] = e->dim[CALIB_MLP_IN] = c->hidden;
    e->dim[CALIB_O_IN] = c->n_heads * c->head_dim;
    e->dim[CALIB_DOWN_IN] = c->inter;
    e->tokens = n;
    for (int k = 0; k < CALIB_N_INPUTS; k++) {
        size_t len = (size_t)c->n_layers * e->dim[k] * e->dim[k];
        e->ref[k] = calloc(len, sizeof *e->ref[k]);
        e->first[k] = calloc(len, sizeof *e->first[k]);
    }
    nsqrt_state *s = nsqrt_state_new(m, w, 2);
    float *logits = malloc(c->vocab * sizeof *logits);
    nsqrt_state_set_exact(s, 1);
    nsqrt_state_set_observer(s, observe, e);
    for (uint64_t first = 0; first < n; first += w)
        nsqrt_forward(m, s, ids + first, (uint32_t)(n - first < w ? n - first : w), 0, logits, 0);
    free(logits);
    nsqrt_state_free(s);
    nsqrt_close(m);
    return 0;
}

/* One site of one layer: shape, symmetry, diagonal, closeness to the reference. */
static void check_site(expect *e, uint32_t L, int k, const hessian_site *s)
{
    uint32_t d = e->dim[k];
    if (!CHECK(s->dim == d && s->tokens == e->tokens && s->h, "layer %u site %d: dim %u tokens %llu, want %u %llu", L, k,
               s->dim, (unsigned long long)s->tokens, d, (unsigned long long)e->tokens))
        return;
    const double *r = e->ref[k] + (size_t)L * d * d;
    double worst = 0;
    int asym = 0, neg = 0;
    for (uint32_t i = 0; i < d; i++) {
        neg += !(s->h[(size_t)i * d + i] >= 0);
        for (uint32_t j = 0; j < d; j++) {
            float h = s->h[(size_t)i * d + j];
            asym += h != s->h[(size_t)j * d + i];
            double want = r[i <= j ? (size_t)i * d + j : (size_t)j * d + i] / (double)e->tokens;
            double scale = sqrt(r[(size_t)i * d + i] * r[(size_t)j * d + j]) / (double)e->tokens;
            double dev = fabs(h - want) / (scale > 0 ? scale : 1);
            worst = dev > worst ? dev : worst;
        }
    }
    CHECK(!asym, "layer %u site %d: %d asymmetric entries", L, k, asym);
    CHECK(!neg, "layer %u site %d: %d negative diagonal entries", L, k, neg);
    CHECK(worst <= TOL, "layer %u site %d: relative deviation %.3g from the reference", L, k, worst);
    e->worst = worst > e->worst ? worst : e->worst;
    float *first = e->first[k] + (size_t)L * d * d;
    if (!e->compare_first) memcpy(first, s->h, (size_t)d * d * sizeof *first);
    else CHECK(!memcmp(first, s->h, (size_t)d * d * sizeof *first), "layer %u site %d differs between thread counts", L, k);
}

static int on_layer(void *ctx, uint32_t L, const hessian_site *sites, char *err, size_t errlen)
{
    expect *e = ctx;
    (void)err, (void)errlen;
    CHECK(L == e->next_layer, "layer %u came when %u was due", L, e->next_layer);
    e->next_layer = L + 1;
    for (int k = 0; k < CALIB_N_INPUTS; k++) check_site(e, L, k, &sites[k]);
    return 0;
}

static int stop_at_1(void *ctx, uint32_t L, const hessian_site *sites, char *err, size_t errlen)
{
    (void)sites;
    *(uint32_t *)ctx += 1;
    return L == 1 ? (snprintf(err, errlen, "stopped at layer %u", L), -1) : 0;
}

static void check_errors(const char *path, const int32_t *ids, uint32_t vocab)
{
    char err[512] = "";
    uint32_t calls = 0;
    int32_t bad[3] = {ids[0], (int32_t)vocab, ids[1]};
    CHECK(hessian_run(path, ids, 64, 32, 1, stop_at_1, &calls, err, sizeof err) == -1 && calls == 2 &&
              !strcmp(err, "stopped at layer 1"), "a callback's failure: calls %u, '%s'", calls, err);
    CHECK(hessian_run(path, bad, 3, 32, 1, stop_at_1, &calls, err, sizeof err) == -1 && strstr(err, "outside the vocabulary"),
          "an id outside the vocabulary: '%s'", err);
    CHECK(hessian_run("no-such.nsq", ids, 64, 32, 1, stop_at_1, &calls, err, sizeof err) == -1 && strstr(err, "no-such.nsq"),
          "a missing model: '%s'", err);
    CHECK(hessian_run(path, ids, 0, 32, 1, stop_at_1, &calls, err, sizeof err) == -1, "no tokens");
}

static int32_t *tokenize(const char *model, const char *text, uint64_t want, uint32_t *vocab)
{
    static const nsqrt_opts whole = {0, 0, 0, 0, NSQRT_UNROUTED};
    char err[512];
    nsqrt_model *m;
    int32_t *ids = NULL;
    size_t n = 0;
    FILE *f = fopen(text, "rb");
    char *buf = malloc(1 << 20);
    size_t len = f && buf ? fread(buf, 1, 1 << 20, f) : 0;
    nsq_diag d;
    if (f) fclose(f);
    if (nsqrt_open(model, &whole, &m, err, sizeof err)) return fprintf(stderr, "%s\n", err), free(buf), NULL;
    *vocab = nsqrt_model_config(m)->vocab;
    if (!nsqrt_model_tokenizer(m) || nsq_tokenize_diag(nsqrt_model_tokenizer(m), buf, len, 0, &ids, &n, &d) || n < want)
        fprintf(stderr, "%s: fewer than %llu tokens\n", text, (unsigned long long)want), free(ids), ids = NULL;
    nsqrt_close(m);
    free(buf);
    return ids;
}

int main(int argc, char **argv)
{
    if (argc != 5) return fprintf(stderr, "usage: hessian_check MODEL.nsq TEXT N_TOKENS WINDOW\n"), 2;
    uint64_t n = strtoull(argv[3], NULL, 10);
    uint32_t w = (uint32_t)strtoul(argv[4], NULL, 10), vocab = 0;
    expect e = {0};
    char err[512];
    int32_t *ids = tokenize(argv[1], argv[2], n, &vocab);
    if (!ids || reference(argv[1], ids, n, w, &e)) return 1;
    for (int threads = 1; threads <= 2; threads++) {
        e.next_layer = 0;
        e.compare_first = threads > 1;
        if (!CHECK(!hessian_run(argv[1], ids, n, w, threads, on_layer, &e, err, sizeof err), "threads %d: %s", threads, err))
            continue;
        CHECK(e.next_layer == e.n_layers, "threads %d: %u layers of %u", threads, e.next_layer, e.n_layers);
    }
    check_errors(argv[1], ids, vocab);
    printf("%u layers, %llu tokens: worst relative deviation %.3g\n", e.n_layers, (unsigned long long)n, e.worst);
    for (int k = 0; k < CALIB_N_INPUTS; k++) free(e.ref[k]), free(e.first[k]);
    free(ids);
    return failures ? 1 : 0;
}
