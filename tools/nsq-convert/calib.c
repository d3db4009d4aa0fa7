/* calib.c - calibration statistics from the runtime's forward pass.
 *
 * The text is tokenized once without special tokens and cut into windows of
 * up to 512 tokens, each run alone from position 0 (as nsq-perplexity does).
 * An observer on the forward pass adds up x^2 per input column of every layer
 * matrix; each window's sums are kept apart and folded into the total in
 * window order, so the result does not depend on the thread count. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "cli.h"
#include "nsqrt.h"

/* Every block resident, from its base: calibration and its probes measure the base weights. */
static const nsqrt_opts whole = {0, 0, 0, 0, NSQRT_UNROUTED};
/* No layer block read: for the tokenizer and the config alone. */
static const nsqrt_opts header = {NSQ_OPEN_PREAD, 0, 0, 0, NSQRT_ROUTED};

#define WINDOW 512

typedef struct {
    const struct calib_job *j;
    double *acc;
} observer_ctx;

/* One thread's forward pass state, made when it takes its first window. */
typedef struct {
    nsqrt_state *s;
    float *logits;
    observer_ctx o;
    int ready;
} calib_slot;

typedef struct calib_job {
    const nsqrt_model *m;
    const nsqrt_config *c;
    const int32_t *ids;
    uint64_t n_ids;
    uint32_t window, windows;
    size_t per_layer, off[CALIB_N_INPUTS]; /* layout of one window's sums */
    double *total, **part;                 /* part[k]: window k's sums until folded */
    uint32_t folded;
    atomic_int failed;
    calib_slot *slot; /* [thread] */
    pthread_mutex_t mu;
} calib_job;

static void observe(void *ctx, uint32_t L, int which, const float *x, uint32_t n_tok, uint32_t in)
{
    observer_ctx *o = ctx;
    int k = calib_observed(which);
    if (k < 0) return;
    double *acc = o->acc + L * o->j->per_layer + o->j->off[k];
    for (uint32_t t = 0; t < n_tok; t++)
        for (uint32_t i = 0; i < in; i++) acc[i] += (double)x[(size_t)t * in + i] * x[(size_t)t * in + i];
}

/* Adds every finished window that is next in order to the total. */
static void fold_ready(calib_job *j)
{
    size_t n = j->per_layer * j->c->n_layers;
    while (j->folded < j->windows && j->part[j->folded]) {
        for (size_t i = 0; i < n; i++) j->total[i] += j->part[j->folded][i];
        free(j->part[j->folded]);
        j->part[j->folded++] = NULL;
    }
}

static int slot_init(const calib_job *j, calib_slot *sl)
{
    if (!(sl->logits = malloc(j->c->vocab * sizeof *sl->logits)) || !(sl->s = nsqrt_state_new(j->m, j->window, 1)))
        return -1;
    sl->ready = 1;
    nsqrt_state_set_exact(sl->s, 1); /* f32 activations: statistics of the model itself */
    sl->o.j = j;
    nsqrt_state_set_observer(sl->s, observe, &sl->o);
    return 0;
}

/* Window k, on a thread of its own state; its sums wait in part[k] until
 * every window before it is folded in. */
static void calib_window(void *ctx, uint32_t k, uint32_t thread)
{
    calib_job *j = ctx;
    calib_slot *sl = &j->slot[thread];
    if (j->failed || (!sl->ready && slot_init(j, sl))) {
        j->failed = 1;
        return;
    }
    uint64_t first = (uint64_t)k * j->window, n = j->n_ids - first < j->window ? j->n_ids - first : j->window;
    if (!(sl->o.acc = calloc(j->per_layer * j->c->n_layers, sizeof *sl->o.acc))) {
        j->failed = 1;
        return;
    }
    nsqrt_forward(j->m, sl->s, j->ids + first, (uint32_t)n, 0, sl->logits, 0);
    pthread_mutex_lock(&j->mu);
    j->part[k] = sl->o.acc;
    fold_ready(j);
    pthread_mutex_unlock(&j->mu);
}

static int zero_columns(calib_stats *s)
{
    size_t per_layer = 0;
    for (int k = 0; k < CALIB_N_INPUTS; k++) per_layer += s->dim[k];
    return (s->mean_x2 = calloc(per_layer * s->n_layers, sizeof *s->mean_x2)) ? 0 : -1;
}

static int run_windows(const nsqrt_model *m, const int32_t *ids, uint64_t n_ids, int threads, calib_stats *s)
{
    const nsqrt_config *c = nsqrt_model_config(m);
    calib_job j = {m, c, ids, n_ids, s->window, s->windows, 0, {0}, NULL, NULL, 0, 0, NULL, PTHREAD_MUTEX_INITIALIZER};
    uint32_t n_threads = (uint32_t)threads < j.windows ? (uint32_t)threads : j.windows;
    for (int k = 0; k < CALIB_N_INPUTS; k++) j.off[k] = j.per_layer, j.per_layer += s->dim[k];
    j.total = calloc(j.per_layer * c->n_layers, sizeof *j.total);
    j.part = calloc(j.windows, sizeof *j.part);
    j.slot = calloc(n_threads ? n_threads : 1, sizeof *j.slot);
    s->mean_x2 = malloc(j.per_layer * c->n_layers * sizeof *s->mean_x2);
    nsqrt_pool *p = j.total && j.part && j.slot && s->mean_x2 ? nsqrt_pool_create(n_threads) : NULL;
    if (p) nsqrt_pool_run_at(p, calib_window, &j, j.windows);
    else j.failed = 1;
    nsqrt_pool_free(p);
    for (size_t i = 0; !j.failed && i < j.per_layer * c->n_layers; i++) s->mean_x2[i] = (float)(j.total[i] / (double)n_ids);
    for (uint32_t t = 0; j.slot && t < n_threads; t++) {
        nsqrt_state_free(j.slot[t].s);
        free(j.slot[t].logits);
    }
    for (uint32_t w = 0; j.part && w < j.windows; w++) free(j.part[w]);
    free(j.slot);
    free(j.part);
    free(j.total);
    return j.failed ? -1 : 0;
}

/* Logits at every position of ids[0..n), in windows of w tokens. */
static int run_logits(const nsqrt_model *m, const int32_t *ids, uint64_t n, uint32_t w, int threads, float *logits)
{
    nsqrt_state *st = nsqrt_state_new(m, w, (uint32_t)threads);
    if (!st) return -1;
    nsqrt_state_set_exact(st, 1);
    uint32_t V = nsqrt_model_config(m)->vocab;
    for (uint64_t first = 0; first < n; first += w)
        nsqrt_forward(m, st, ids + first, (uint32_t)(n - first < w ? n - first : w), 0, logits + first * V, 1);
    nsqrt_state_free(st);
    return 0;
}

int calib_kld(const char *model_path, const calib_stats *s, int threads, double *kld, char *err, size_t errlen)
{
    nsqrt_model *m;
    if (nsqrt_open(model_path, &whole, &m, err, errlen)) return -1;
    uint32_t V = s->vocab;
    float *q = malloc(s->probe_tokens * V * sizeof *q);
    double *scratch = malloc(2 * (size_t)V * sizeof *scratch);
    int rc = q && scratch && nsqrt_model_config(m)->vocab == V && !run_logits(m, s->probe_ids, s->probe_tokens, s->window, threads, q) ? 0 : -1;
    if (!rc) *kld = nsqrt_logprob_mean_kl(s->probe_logits, q, s->probe_tokens, V, scratch);
    if (rc) snprintf(err, errlen, "calibration: out of memory");
    free(q);
    free(scratch);
    nsqrt_close(m);
    return rc;
}

int calib_collect(const char *model_path, const char *text, size_t len, const char *name, uint64_t max_tokens,
                  uint64_t probe_tokens, int moments, int threads, calib_stats *s, char *err, size_t errlen)
{
    double t0 = cli_now();
    nsqrt_model *m = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    memset(s, 0, sizeof *s);
    int rc = nsqrt_open(model_path, moments || probe_tokens ? &whole : &header, &m, err, errlen) ? -1 : 0;
    const nsq_tokenizer *tok = rc ? NULL : nsqrt_model_tokenizer(m);
    if (!rc && !tok) rc = (snprintf(err, errlen, "calibration: the model has no tokenizer"), -1);
    nsq_diag d;
    if (!rc && nsq_tokenize_diag(tok, text, len, 0, &ids, &n_ids, &d))
        rc = (snprintf(err, errlen, "calibration text %s: cannot tokenize: %s", name, d.message), -1);
    if (!rc && n_ids < CALIB_MIN_TOKENS)
        rc = (snprintf(err, errlen, "calibration text %s: %zu tokens, calibration needs at least %d", name, n_ids, CALIB_MIN_TOKENS), -1);
    if (!rc) {
        const nsqrt_config *c = nsqrt_model_config(m);
        s->n_layers = c->n_layers;
        s->dim[CALIB_ATTN_IN] = s->dim[CALIB_MLP_IN] = c->hidden;
        s->dim[CALIB_O_IN] = c->n_heads * c->head_dim;
        s->dim[CALIB_DOWN_IN] = c->inter;
        s->tokens = n_ids < max_tokens ? n_ids : max_tokens;
        s->window = c->ctx < WINDOW ? c->ctx : WINDOW;
        s->windows = (uint32_t)((s->tokens + s->window - 1) / s->window);
        s->vocab = c->vocab;
        s->probe_tokens = s->tokens < probe_tokens ? s->tokens : probe_tokens;
        s->probe_ids = ids;
        ids = NULL;
        if ((moments ? run_windows(m, s->probe_ids, s->tokens, threads, s) : zero_columns(s)) ||
            (s->probe_tokens && (!(s->probe_logits = malloc(s->probe_tokens * s->vocab * sizeof *s->probe_logits)) ||
                                 run_logits(m, s->probe_ids, s->probe_tokens, s->window, threads, s->probe_logits))))
            rc = (snprintf(err, errlen, "calibration: out of memory"), -1);
    }
    nsqrt_close(m);
    free(ids);
    if (rc) calib_free(s);
    s->seconds = cli_now() - t0;
    return rc;
}

void calib_free(calib_stats *s)
{
    free(s->mean_x2);
    free(s->probe_ids);
    free(s->probe_logits);
    memset(s, 0, sizeof *s);
}

/* Where layer L's mean x^2 of input k begin in s->mean_x2. */
static size_t columns_at(const calib_stats *s, int k, uint32_t L)
{
    size_t per_layer = 0, off = 0;
    for (int i = 0; i < CALIB_N_INPUTS; i++) {
        if (i == k) off = per_layer;
        per_layer += s->dim[i];
    }
    return (size_t)L * per_layer + off;
}

const float *calib_columns(const calib_stats *s, int role, int L, uint64_t cols)
{
    int k = calib_input(role);
    if (!s || !s->mean_x2 || k < 0 || L < 0 || (uint32_t)L >= s->n_layers || s->dim[k] != cols) return NULL;
    return s->mean_x2 + columns_at(s, k, (uint32_t)L);
}

void calib_set_columns(calib_stats *s, int k, uint32_t L, const float *h, uint32_t dim)
{
    if (!s->mean_x2 || k < 0 || k >= CALIB_N_INPUTS || L >= s->n_layers || s->dim[k] != dim) return;
    float *c = s->mean_x2 + columns_at(s, k, L);
    for (uint32_t i = 0; i < dim; i++) c[i] = h[(size_t)i * dim + i];
}
