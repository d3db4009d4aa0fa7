/* calib.c - calibration statistics from the runtime's forward pass.
 *
 * The text is tokenized once without special tokens and cut into windows of
 * up to 512 tokens, each run alone from position 0 (as nsq-perplexity does).
 * An observer on the forward pass adds up x^2 per input column of every layer
 * matrix; each window's sums are kept apart and folded into the total in
 * window order, so the result does not depend on the thread count. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "cli.h"
#include "model.h"

#define WINDOW 512

typedef struct {
    const model *m;
    const int32_t *ids;
    uint64_t n_ids;
    uint32_t window, windows;
    size_t per_layer, off[CALIB_N_INPUTS]; /* layout of one window's sums */
    double *total, **part;                 /* part[k]: window k's sums until folded */
    uint32_t next, folded;
    int failed;
    pthread_mutex_t mu;
} calib_job;

typedef struct {
    const calib_job *j;
    double *acc;
} observer_ctx;

static int input_of(int which)
{
    switch (which) {
    case LIN_Q: return CALIB_ATTN_IN;
    case LIN_O: return CALIB_O_IN;
    case LIN_UP: return CALIB_MLP_IN;
    case LIN_DOWN: return CALIB_DOWN_IN;
    default: return -1; /* k, v and gate see the same input as q or up */
    }
}

static void observe(void *ctx, uint32_t L, int which, const float *x, uint32_t n_tok, uint32_t in)
{
    observer_ctx *o = ctx;
    int k = input_of(which);
    if (k < 0) return;
    double *acc = o->acc + L * o->j->per_layer + o->j->off[k];
    for (uint32_t t = 0; t < n_tok; t++)
        for (uint32_t i = 0; i < in; i++) acc[i] += (double)x[(size_t)t * in + i] * x[(size_t)t * in + i];
}

/* Adds every finished window that is next in order to the total. */
static void fold_ready(calib_job *j)
{
    size_t n = j->per_layer * j->m->c.n_layers;
    while (j->folded < j->windows && j->part[j->folded]) {
        for (size_t i = 0; i < n; i++) j->total[i] += j->part[j->folded][i];
        free(j->part[j->folded]);
        j->part[j->folded++] = NULL;
    }
}

static void *calib_worker(void *arg)
{
    calib_job *j = arg;
    model_state s;
    float *logits = malloc(j->m->c.vocab * sizeof *logits);
    int ok = logits && !state_init(&s, j->m, j->window, 1);
    s.exact = 1; /* f32 activations: statistics of the model itself */
    observer_ctx o = {j, NULL};
    if (ok) s.observe = observe, s.observe_ctx = &o;
    for (;;) {
        pthread_mutex_lock(&j->mu);
        uint32_t k = j->next++;
        if (!ok) j->failed = 1;
        pthread_mutex_unlock(&j->mu);
        if (!ok || k >= j->windows) break;
        uint64_t first = (uint64_t)k * j->window, n = j->n_ids - first < j->window ? j->n_ids - first : j->window;
        if (!(o.acc = calloc(j->per_layer * j->m->c.n_layers, sizeof *o.acc))) {
            ok = 0;
            continue;
        }
        forward(j->m, &s, j->ids + first, (uint32_t)n, 0, logits, 0);
        pthread_mutex_lock(&j->mu);
        j->part[k] = o.acc;
        fold_ready(j);
        pthread_mutex_unlock(&j->mu);
    }
    if (logits && ok) state_free(&s);
    free(logits);
    return NULL;
}

static int run_windows(const model *m, const int32_t *ids, uint64_t n_ids, int threads, calib_stats *s)
{
    calib_job j = {m, ids, n_ids, s->window, s->windows, 0, {0}, NULL, NULL, 0, 0, 0, PTHREAD_MUTEX_INITIALIZER};
    for (int k = 0; k < CALIB_N_INPUTS; k++) j.off[k] = j.per_layer, j.per_layer += s->dim[k];
    j.total = calloc(j.per_layer * m->c.n_layers, sizeof *j.total);
    j.part = calloc(j.windows, sizeof *j.part);
    s->mean_x2 = malloc(j.per_layer * m->c.n_layers * sizeof *s->mean_x2);
    if (!j.total || !j.part || !s->mean_x2) j.failed = 1;
    pthread_t tid[64];
    int k = 0;
    for (; !j.failed && k < threads - 1 && k < 64 && (uint32_t)k + 1 < j.windows; k++)
        if (pthread_create(&tid[k], NULL, calib_worker, &j)) break;
    if (!j.failed) calib_worker(&j);
    while (k > 0) pthread_join(tid[--k], NULL);
    for (size_t i = 0; !j.failed && i < j.per_layer * m->c.n_layers; i++) s->mean_x2[i] = (float)(j.total[i] / (double)n_ids);
    for (uint32_t w = 0; j.part && w < j.windows; w++) free(j.part[w]);
    free(j.part);
    free(j.total);
    return j.failed ? -1 : 0;
}

/* Log-probabilities at every position of ids[0..n), in windows of w tokens. */
static int run_logp(const model *m, const int32_t *ids, uint64_t n, uint32_t w, int threads, float *logp)
{
    model_state st;
    uint32_t V = m->c.vocab;
    if (state_init(&st, m, w, (uint32_t)threads)) return -1;
    st.exact = 1;
    for (uint64_t first = 0; first < n; first += w) {
        uint32_t k = (uint32_t)(n - first < w ? n - first : w);
        float *l = logp + first * V;
        forward(m, &st, ids + first, k, 0, l, 1);
        for (uint32_t t = 0; t < k; t++, l += V) {
            double mx = l[0], z = 0;
            for (uint32_t v = 1; v < V; v++) mx = l[v] > mx ? l[v] : mx;
            for (uint32_t v = 0; v < V; v++) z += exp(l[v] - mx);
            for (uint32_t v = 0; v < V; v++) l[v] = (float)(l[v] - mx - log(z));
        }
    }
    state_free(&st);
    return 0;
}

int calib_kld(const char *model_path, const calib_stats *s, int threads, double *kld, char *err, size_t errlen)
{
    model m;
    nsq_file *f;
    if (model_load(model_path, 0, 0, &m, &f, err, errlen)) return -1;
    uint32_t V = s->vocab;
    float *q = malloc(s->probe_tokens * V * sizeof *q);
    int rc = q && m.c.vocab == V && !run_logp(&m, s->probe_ids, s->probe_tokens, s->window, threads, q) ? 0 : -1;
    double sum = 0;
    for (uint64_t i = 0; !rc && i < s->probe_tokens * V; i++) sum += exp((double)s->probe_logp[i]) * (s->probe_logp[i] - q[i]);
    *kld = sum / (double)s->probe_tokens;
    if (rc) snprintf(err, errlen, "calibration: out of memory");
    free(q);
    model_free(&m); /* closes f */
    return rc;
}

int calib_collect(const char *model_path, const char *text_path, uint64_t max_tokens, uint64_t probe_tokens, int threads,
                  calib_stats *s, char *err, size_t errlen)
{
    double t0 = cli_now();
    model m;
    nsq_file *f = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0, len = 0;
    memset(s, 0, sizeof *s);
    char why[256];
    char *text = cli_read_file(text_path, &len, why, sizeof why);
    int rc = text ? 0 : (snprintf(err, errlen, "--calib %s: cannot read: %s", text_path, why), -1);
    if (!rc && model_load(model_path, 0, 0, &m, &f, err, errlen)) rc = -1;
    if (!rc && !m.tok) rc = (snprintf(err, errlen, "calibration: the model has no tokenizer"), -1);
    nsq_diag d;
    if (!rc && nsq_tokenize_diag(m.tok, text, len, 0, &ids, &n_ids, &d))
        rc = (snprintf(err, errlen, "--calib %s: cannot tokenize: %s", text_path, d.message), -1);
    if (!rc && n_ids < CALIB_MIN_TOKENS)
        rc = (snprintf(err, errlen, "--calib %s: %zu tokens, calibration needs at least %d", text_path, n_ids, CALIB_MIN_TOKENS), -1);
    if (!rc) {
        const model_config *c = &m.c;
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
        if (run_windows(&m, s->probe_ids, s->tokens, threads, s) ||
            (s->probe_tokens && (!(s->probe_logp = malloc(s->probe_tokens * s->vocab * sizeof *s->probe_logp)) ||
                                 run_logp(&m, s->probe_ids, s->probe_tokens, s->window, threads, s->probe_logp))))
            rc = (snprintf(err, errlen, "calibration: out of memory"), -1);
    }
    if (f) model_free(&m); /* closes f */
    free(ids);
    free(text);
    if (rc) calib_free(s);
    s->seconds = cli_now() - t0;
    return rc;
}

void calib_free(calib_stats *s)
{
    free(s->mean_x2);
    free(s->probe_ids);
    free(s->probe_logp);
    memset(s, 0, sizeof *s);
}

/* Which input a layer matrix reads, from its role. */
static int input_of_role(int role)
{
    switch (role) {
    case ROLE_Q: case ROLE_K: case ROLE_V: case ROLE_QKV: return CALIB_ATTN_IN;
    case ROLE_O: return CALIB_O_IN;
    case ROLE_GATE: case ROLE_UP: case ROLE_GATE_UP: return CALIB_MLP_IN;
    case ROLE_DOWN: return CALIB_DOWN_IN;
    default: return -1;
    }
}

const float *calib_columns(const calib_stats *s, int role, int L, uint64_t cols)
{
    int k = input_of_role(role);
    if (!s || !s->mean_x2 || k < 0 || L < 0 || (uint32_t)L >= s->n_layers || s->dim[k] != cols) return NULL;
    size_t per_layer = 0, off = 0;
    for (int i = 0; i < CALIB_N_INPUTS; i++) {
        if (i == k) off = per_layer;
        per_layer += s->dim[i];
    }
    return s->mean_x2 + (size_t)L * per_layer + off;
}
