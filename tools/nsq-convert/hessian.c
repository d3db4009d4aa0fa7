/* hessian.c - per-layer second moments of the layer matrices' inputs, from
 * the runtime's forward pass.
 *
 * Every window is embedded once and its hidden rows kept; then the model runs
 * one layer at a time over all windows, so that only that layer's block and
 * sums are in memory. An observer adds each window's X^T X (X: a matrix's
 * input rows) into the layer's sums with OpenBLAS. The upper triangle is cut
 * into fixed column slices that the thread pool shares out, each computed by
 * single-threaded BLAS calls of the same shape whatever the thread count, so
 * the result does not depend on it. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "hessian.h"
#include "nsqrt.h"

#define FAIL(...) (snprintf(err, errlen, __VA_ARGS__), -1)
#define SLICE 256 /* columns of H per task */
#define TILE 64   /* of the transpose that fills the lower triangle */

typedef struct {
    const float *x; /* [n][dim] */
    float *h;       /* [dim][dim] */
    uint32_t n, dim, slices;
} syrk_job;

/* Columns [c0, c0+w) of the upper triangle: the diagonal block, then rows
 * [0, c0) above it. The widest slices go first, so threads finish together. */
static void syrk_task(void *ctx, uint32_t task)
{
    const syrk_job *j = ctx;
    uint32_t c0 = (j->slices - 1 - task) * SLICE, w = j->dim - c0 < SLICE ? j->dim - c0 : SLICE, d = j->dim;
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)w, (int)j->n, 1.0f, j->x + c0, (int)d, 1.0f,
                j->h + (size_t)c0 * d + c0, (int)d);
    if (c0)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)c0, (int)w, (int)j->n, 1.0f, j->x, (int)d,
                    j->x + c0, (int)d, 1.0f, j->h + c0, (int)d);
}

typedef struct {
    nsqrt_pool *pool;
    uint32_t layer, dim[CALIB_N_INPUTS];
    float *buf[CALIB_N_INPUTS]; /* [dim][dim]: one layer's sums, the same memory for every layer */
    hessian_site site[CALIB_N_INPUTS];
    int bad; /* an input of another width than the config's */
} layer_sums;

static void observe(void *ctx, uint32_t L, int which, const float *x, uint32_t n_tok, uint32_t in)
{
    layer_sums *ls = ctx;
    int k = calib_observed(which);
    if (k < 0 || L != ls->layer) return;
    hessian_site *s = &ls->site[k];
    if (in != s->dim) {
        ls->bad = 1;
        return;
    }
    syrk_job j = {x, s->h, n_tok, in, (in + SLICE - 1) / SLICE};
    nsqrt_pool_run(ls->pool, syrk_task, &j, j.slices);
    s->tokens += n_tok;
}

/* The lower triangle from the upper, then the mean; a site never seen has dim 0. */
static void finish_site(hessian_site *s)
{
    size_t d = s->dim;
    if (!s->tokens) {
        *s = (hessian_site){0, 0, NULL};
        return;
    }
    for (size_t i0 = 0; i0 < d; i0 += TILE)
        for (size_t j0 = i0; j0 < d; j0 += TILE)
            for (size_t i = i0; i < i0 + TILE && i < d; i++)
                for (size_t j = j0 > i ? j0 : i + 1; j < j0 + TILE && j < d; j++) s->h[j * d + i] = s->h[i * d + j];
    for (size_t i = 0; i < d * d; i++) s->h[i] /= (float)s->tokens;
}

static int alloc_sums(layer_sums *ls, const nsqrt_config *c)
{
    ls->dim[CALIB_ATTN_IN] = ls->dim[CALIB_MLP_IN] = c->hidden;
    ls->dim[CALIB_O_IN] = c->n_heads * c->head_dim;
    ls->dim[CALIB_DOWN_IN] = c->inter;
    for (int k = 0; k < CALIB_N_INPUTS; k++)
        if (!(ls->buf[k] = malloc((size_t)ls->dim[k] * ls->dim[k] * sizeof(float)))) return -1;
    return 0;
}

static void start_layer(layer_sums *ls, uint32_t L)
{
    ls->layer = L;
    for (int k = 0; k < CALIB_N_INPUTS; k++) {
        memset(ls->buf[k], 0, (size_t)ls->dim[k] * ls->dim[k] * sizeof(float));
        ls->site[k] = (hessian_site){ls->dim[k], 0, ls->buf[k]};
    }
}

/* Everything one run holds: the model, a state of one window, and every
 * window's hidden rows, back to back in token order. */
typedef struct {
    nsqrt_model *m;
    nsqrt_state *s;
    const int32_t *ids;
    uint64_t n_ids;
    uint32_t window, windows, n_blocks;
    float *rows;     /* [n_ids][hidden] */
    uint8_t *choice; /* [n_blocks], for nsqrt_route_apply */
} hessian_job;

static uint32_t window_len(const hessian_job *j, uint32_t k)
{
    uint64_t first = (uint64_t)k * j->window;
    return (uint32_t)(j->n_ids - first < j->window ? j->n_ids - first : j->window);
}

/* Makes layer L's block the only resident layer block: the model is opened
 * for routing, which reads a layer block only when it is chosen. */
static int load_layer(hessian_job *j, uint32_t L, char *err, size_t errlen)
{
    const nsq_file *f = nsqrt_model_file(j->m);
    nsq_block k;
    for (uint32_t b = 0; b < j->n_blocks; b++) {
        nsq_block_at(f, b, &k);
        int here = k.kind != NSQ_BLOCK_LAYERS || (L >= k.first_layer && L - k.first_layer < k.n_layers);
        j->choice[b] = here ? NSQRT_ROUTE_BASE : NSQRT_ROUTE_SKIP;
    }
    return nsqrt_route_apply(j->m, j->choice, err, errlen);
}

/* Layer L over every window, its inputs summed into ls; the rows move on to
 * the layer's output. */
static int run_layer(hessian_job *j, uint32_t L, layer_sums *ls, char *err, size_t errlen)
{
    uint32_t H = nsqrt_model_config(j->m)->hidden;
    for (uint32_t k = 0; k < j->windows; k++) {
        float *x = j->rows + (size_t)k * j->window * H;
        uint32_t n = window_len(j, k);
        nsqrt_state_set_hidden(j->m, j->s, n, x);
        if (nsqrt_forward_layers(j->m, j->s, L, L + 1, n, 0)) return FAIL("%s", nsqrt_error(j->m));
        nsqrt_state_get_hidden(j->m, j->s, n, x);
    }
    if (ls->bad) return FAIL("layer %u: a matrix input's width differs from the config's", L);
    return 0;
}

static int run_layers(hessian_job *j, int threads, hessian_layer_fn fn, void *ctx, char *err, size_t errlen)
{
    const nsqrt_config *c = nsqrt_model_config(j->m);
    layer_sums ls = {0};
    ls.pool = nsqrt_pool_create((uint32_t)threads);
    int rc = ls.pool && !alloc_sums(&ls, c) ? 0 : FAIL("out of memory for a layer's sums");
    if (!rc) nsqrt_state_set_observer(j->s, observe, &ls);
    for (uint32_t L = 0; L < c->n_layers && !rc; L++) {
        start_layer(&ls, L);
        if (!(rc = load_layer(j, L, err, errlen)) && !(rc = run_layer(j, L, &ls, err, errlen))) {
            for (int k = 0; k < CALIB_N_INPUTS; k++) finish_site(&ls.site[k]);
            rc = fn(ctx, L, ls.site, err, errlen) ? -1 : 0;
        }
    }
    nsqrt_state_set_observer(j->s, NULL, NULL);
    for (int k = 0; k < CALIB_N_INPUTS; k++) free(ls.buf[k]);
    nsqrt_pool_free(ls.pool);
    return rc;
}

static int check_ids(const int32_t *ids, uint64_t n, uint32_t vocab, char *err, size_t errlen)
{
    for (uint64_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= vocab)
            return FAIL("token %llu: id %d is outside the vocabulary (%u)", (unsigned long long)i, ids[i], vocab);
    return 0;
}

/* The job's state and buffers, and every window's embedding. */
static int prepare(hessian_job *j, int threads, char *err, size_t errlen)
{
    const nsqrt_config *c = nsqrt_model_config(j->m);
    nsq_info info;
    nsq_get_info(nsqrt_model_file(j->m), &info);
    j->n_blocks = info.block_count;
    j->window = j->window < c->ctx ? j->window : c->ctx;
    j->windows = (uint32_t)((j->n_ids + j->window - 1) / j->window);
    if (check_ids(j->ids, j->n_ids, c->vocab, err, errlen)) return -1;
    j->rows = malloc(j->n_ids * c->hidden * sizeof *j->rows);
    j->choice = malloc(j->n_blocks);
    j->s = j->rows && j->choice ? nsqrt_state_new(j->m, j->window, (uint32_t)threads) : NULL;
    if (!j->s) return FAIL("out of memory for %llu tokens' hidden rows", (unsigned long long)j->n_ids);
    nsqrt_state_set_exact(j->s, 1); /* f32 activations: the statistics of the model itself */
    for (uint32_t k = 0; k < j->windows; k++) {
        uint64_t first = (uint64_t)k * j->window;
        nsqrt_forward_embed(j->m, j->s, j->ids + first, window_len(j, k), 0);
        nsqrt_state_get_hidden(j->m, j->s, window_len(j, k), j->rows + first * c->hidden);
    }
    return 0;
}

int hessian_run(const char *model_path, const int32_t *ids, uint64_t n_ids, uint32_t window, int threads,
                hessian_layer_fn fn, void *ctx, char *err, size_t errlen)
{
    /* embedding and output blocks only until a layer is chosen; read, not mapped,
     * so that a layer block's memory goes when it is unloaded */
    static const nsqrt_opts routed = {NSQ_OPEN_PREAD, 0, 0, 0, NSQRT_ROUTED};
    if (!n_ids || !window || threads < 1) return FAIL("hessians need tokens, a window and a thread");
    openblas_set_num_threads(1); /* the pool runs the slices in parallel */
    hessian_job j = {NULL, NULL, ids, n_ids, window, 0, 0, NULL, NULL};
    int rc = nsqrt_open(model_path, &routed, &j.m, err, errlen);
    if (!rc) rc = prepare(&j, threads, err, errlen);
    if (!rc) rc = run_layers(&j, threads, fn, ctx, err, errlen);
    nsqrt_state_free(j.s);
    free(j.rows);
    free(j.choice);
    nsqrt_close(j.m);
    return rc;
}
