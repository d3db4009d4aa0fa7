/* forward.c - the transformer forward pass for every supported architecture,
 * as plain loops: Llama, Mistral (sliding-window attention) and Qwen2 (q/k/v
 * biases) share one path; GPT-2 differs only in LayerNorm, learned positions
 * and an ungated GELU MLP, which the config flags select. All arithmetic f32. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

int state_init(model_state *s, const model *m, uint32_t max_batch, uint32_t n_threads)
{
    const model_config *c = &m->c;
    size_t kvd = (size_t)c->n_kv_heads * c->head_dim, qd = (size_t)c->n_heads * c->head_dim, B = max_batch;
    size_t wide = qd > c->hidden ? qd : c->hidden;
    memset(s, 0, sizeof *s);
    s->max_batch = max_batch;
    s->n_threads = n_threads ? n_threads : 1;
    s->k_cache = calloc((size_t)c->n_layers * c->ctx * kvd, sizeof *s->k_cache);
    s->v_cache = calloc((size_t)c->n_layers * c->ctx * kvd, sizeof *s->v_cache);
    s->x = malloc(B * c->hidden * sizeof *s->x);
    s->h = malloc(B * wide * sizeof *s->h);
    s->q = malloc(B * qd * sizeof *s->q);
    s->k = malloc(B * kvd * sizeof *s->k);
    s->v = malloc(B * kvd * sizeof *s->v);
    s->att = malloc(B * qd * sizeof *s->att);
    s->o = malloc(B * c->hidden * sizeof *s->o);
    s->f1 = malloc(B * c->inter * sizeof *s->f1);
    s->f2 = malloc(B * c->inter * sizeof *s->f2);
    s->scores = malloc((size_t)c->ctx * sizeof *s->scores);
    if (!s->k_cache || !s->v_cache || !s->x || !s->h || !s->q || !s->k || !s->v || !s->att || !s->o || !s->f1 || !s->f2 ||
        !s->scores) {
        state_free(s);
        return -1;
    }
    return 0;
}

void state_free(model_state *s)
{
    float *p[] = {s->k_cache, s->v_cache, s->x, s->h, s->q, s->k, s->v, s->att, s->o, s->f1, s->f2, s->scores};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) free(p[i]);
    memset(s, 0, sizeof *s);
}

/* ---- matrix products ---- */
#define CHUNK 64 /* outputs per task: a [in][64] slice of wt stays in cache across tokens */

typedef struct {
    const linear *l;
    const float *x;
    float *y;
    uint32_t n, chunks, next;
    pthread_mutex_t mu;
} matmul_job;

/* y[t][o0..o0+64) = b + sum_i x[t][i] * wt[i][o], in order of i for every o.
 * Four tokens share each load of a weight row; AVX2 and the baseline build
 * give identical results (separate multiply and add, same order). */
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx2", "default")))
#endif
static void matmul_chunk(const matmul_job *j, uint32_t chunk)
{
    const linear *l = j->l;
    uint32_t o0 = chunk * CHUNK, w = l->out - o0 < CHUNK ? l->out - o0 : CHUNK;
    for (uint32_t t = 0; t < j->n; t += 4) {
        uint32_t nt = j->n - t < 4 ? j->n - t : 4;
        float acc[4][CHUNK];
        const float *x[4];
        for (uint32_t u = 0; u < 4; u++) {
            x[u] = j->x + (size_t)(t + (u < nt ? u : 0)) * l->in;
            for (uint32_t o = 0; o < CHUNK; o++) acc[u][o] = l->b && o < w ? l->b[o0 + o] : 0.0f;
        }
        for (uint32_t i = 0; i < l->in; i++) {
            const float *wr = l->wt + (size_t)i * l->out + o0;
            const float x0 = x[0][i], x1 = x[1][i], x2 = x[2][i], x3 = x[3][i];
            if (w == CHUNK) {
                for (uint32_t o = 0; o < CHUNK; o++) {
                    acc[0][o] += x0 * wr[o];
                    acc[1][o] += x1 * wr[o];
                    acc[2][o] += x2 * wr[o];
                    acc[3][o] += x3 * wr[o];
                }
            } else {
                for (uint32_t o = 0; o < w; o++) {
                    acc[0][o] += x0 * wr[o];
                    acc[1][o] += x1 * wr[o];
                    acc[2][o] += x2 * wr[o];
                    acc[3][o] += x3 * wr[o];
                }
            }
        }
        for (uint32_t u = 0; u < nt; u++) memcpy(j->y + (size_t)(t + u) * l->out + o0, acc[u], w * sizeof *acc[u]);
    }
}

static void *matmul_worker(void *arg)
{
    matmul_job *j = arg;
    for (;;) {
        pthread_mutex_lock(&j->mu);
        uint32_t c = j->next++;
        pthread_mutex_unlock(&j->mu);
        if (c >= j->chunks) return NULL;
        matmul_chunk(j, c);
    }
}

/* Results do not depend on the thread count: each output sums in one order. */
static void matmul(const linear *l, const float *x, uint32_t n, float *y, uint32_t threads)
{
    matmul_job j = {l, x, y, n, (l->out + CHUNK - 1) / CHUNK, 0, PTHREAD_MUTEX_INITIALIZER};
    pthread_t tid[63];
    uint32_t k = 0;
    for (; k + 1 < threads && k < 63 && k + 1 < j.chunks; k++)
        if (pthread_create(&tid[k], NULL, matmul_worker, &j)) break;
    matmul_worker(&j);
    while (k > 0) pthread_join(tid[--k], NULL);
}

/* A layer's matrix product, shown to the observer first. */
static void layer_matmul(const model_state *s, uint32_t L, int which, const linear *l, const float *x, uint32_t n, float *y)
{
    if (s->observe) s->observe(s->observe_ctx, L, which, x, n, l->in);
    matmul(l, x, n, y, s->n_threads);
}

/* ---- elementwise pieces ---- */
static void rmsnorm(float *out, const float *x, const norm *w, uint32_t n, float eps)
{
    float ss = 0;
    for (uint32_t i = 0; i < n; i++) ss += x[i] * x[i];
    float r = 1.0f / sqrtf(ss / (float)n + eps);
    for (uint32_t i = 0; i < n; i++) out[i] = w->w[i] * (x[i] * r);
}

static void layernorm(float *out, const float *x, const norm *w, uint32_t n, float eps)
{
    float mean = 0, var = 0;
    for (uint32_t i = 0; i < n; i++) mean += x[i];
    mean /= (float)n;
    for (uint32_t i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    float r = 1.0f / sqrtf(var / (float)n + eps);
    for (uint32_t i = 0; i < n; i++) out[i] = (x[i] - mean) * r * w->w[i] + w->b[i];
}

static void apply_norm(const model *m, float *out, const float *x, const norm *w, uint32_t n_tok)
{
    uint32_t H = m->c.hidden;
    for (uint32_t t = 0; t < n_tok; t++)
        (m->c.layernorm ? layernorm : rmsnorm)(out + (size_t)t * H, x + (size_t)t * H, w, H, m->c.norm_eps);
}

static float activate(model_act a, float x)
{
    switch (a) {
    case ACT_SILU: return x / (1.0f + expf(-x));
    case ACT_GELU_TANH: return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
    case ACT_RELU: return x > 0 ? x : 0;
    }
    return x;
}

/* Rotates pairs (i, i + d/2) of each head, as Hugging Face's rotate_half does. */
static void rope(const model *m, float *v, uint32_t n_heads, uint32_t pos)
{
    uint32_t d = m->c.head_dim, half = d / 2;
    for (uint32_t i = 0; i < half; i++) {
        float angle = (float)pos * m->rope_inv_freq[i], c = cosf(angle), s = sinf(angle);
        for (uint32_t h = 0; h < n_heads; h++) {
            float *p = v + (size_t)h * d, a = p[i], b = p[i + half];
            p[i] = a * c - b * s;
            p[i + half] = b * c + a * s;
        }
    }
}

/* Causal attention of the positions pos0..pos0+n-1, whose keys and values are
 * already in the cache; with a sliding window W a position sees the last W. */
static void attention(const model *m, model_state *s, uint32_t L, uint32_t n, uint32_t pos0)
{
    const model_config *c = &m->c;
    uint32_t d = c->head_dim, kvd = c->n_kv_heads * d, group = c->n_heads / c->n_kv_heads;
    const float *kc = s->k_cache + (size_t)L * c->ctx * kvd, *vc = s->v_cache + (size_t)L * c->ctx * kvd;
    float scale = 1.0f / sqrtf((float)d);
    for (uint32_t t = 0; t < n; t++) {
        uint32_t p = pos0 + t, lo = c->sliding_window && p + 1 > c->sliding_window ? p + 1 - c->sliding_window : 0;
        for (uint32_t h = 0; h < c->n_heads; h++) {
            const float *q = s->q + ((size_t)t * c->n_heads + h) * d;
            size_t kv_off = (size_t)(h / group) * d;
            float mx = -INFINITY, sum = 0, *out = s->att + ((size_t)t * c->n_heads + h) * d;
            for (uint32_t j = lo; j <= p; j++) {
                const float *k = kc + (size_t)j * kvd + kv_off;
                float dot = 0;
                for (uint32_t i = 0; i < d; i++) dot += q[i] * k[i];
                s->scores[j] = dot * scale;
                mx = s->scores[j] > mx ? s->scores[j] : mx;
            }
            for (uint32_t j = lo; j <= p; j++) sum += (s->scores[j] = expf(s->scores[j] - mx));
            memset(out, 0, d * sizeof *out);
            for (uint32_t j = lo; j <= p; j++) {
                const float *v = vc + (size_t)j * kvd + kv_off, w = s->scores[j] / sum;
                for (uint32_t i = 0; i < d; i++) out[i] += w * v[i];
            }
        }
    }
}

static void attention_block(const model *m, model_state *s, uint32_t L, uint32_t n, uint32_t pos0)
{
    const model_config *c = &m->c;
    const layer *y = &m->layers[L];
    uint32_t H = c->hidden, kvd = c->n_kv_heads * c->head_dim;
    apply_norm(m, s->h, s->x, &y->attn_norm, n);
    layer_matmul(s, L, LIN_Q, &y->q, s->h, n, s->q);
    layer_matmul(s, L, LIN_K, &y->k, s->h, n, s->k);
    layer_matmul(s, L, LIN_V, &y->v, s->h, n, s->v);
    for (uint32_t t = 0; t < n; t++) {
        if (!c->learned_pos) {
            rope(m, s->q + (size_t)t * c->n_heads * c->head_dim, c->n_heads, pos0 + t);
            rope(m, s->k + (size_t)t * kvd, c->n_kv_heads, pos0 + t);
        }
        size_t at = ((size_t)L * c->ctx + pos0 + t) * kvd;
        memcpy(s->k_cache + at, s->k + (size_t)t * kvd, kvd * sizeof *s->k);
        memcpy(s->v_cache + at, s->v + (size_t)t * kvd, kvd * sizeof *s->v);
    }
    attention(m, s, L, n, pos0);
    layer_matmul(s, L, LIN_O, &y->o, s->att, n, s->o);
    for (size_t i = 0; i < (size_t)n * H; i++) s->x[i] += s->o[i];
}

/* down(act(gate(h)) * up(h)), or down(act(up(h))) without a gate (GPT-2). */
static void mlp_block(const model *m, model_state *s, uint32_t L, uint32_t n)
{
    const model_config *c = &m->c;
    const layer *y = &m->layers[L];
    size_t len = (size_t)n * c->inter;
    apply_norm(m, s->h, s->x, &y->mlp_norm, n);
    layer_matmul(s, L, LIN_UP, &y->up, s->h, n, s->f1);
    if (c->gated_mlp) {
        layer_matmul(s, L, LIN_GATE, &y->gate, s->h, n, s->f2);
        for (size_t i = 0; i < len; i++) s->f1[i] *= activate(c->act, s->f2[i]);
    } else {
        for (size_t i = 0; i < len; i++) s->f1[i] = activate(c->act, s->f1[i]);
    }
    layer_matmul(s, L, LIN_DOWN, &y->down, s->f1, n, s->o);
    for (size_t i = 0; i < (size_t)n * c->hidden; i++) s->x[i] += s->o[i];
}

void forward(const model *m, model_state *s, const int32_t *tokens, uint32_t n, uint32_t pos0, float *logits, int all_logits)
{
    const model_config *c = &m->c;
    uint32_t H = c->hidden;
    for (uint32_t t = 0; t < n; t++) {
        float *x = s->x + (size_t)t * H;
        memcpy(x, m->embed + (size_t)tokens[t] * H, H * sizeof *x);
        if (c->learned_pos)
            for (uint32_t i = 0; i < H; i++) x[i] += m->pos_embed[(size_t)(pos0 + t) * H + i];
    }
    for (uint32_t L = 0; L < c->n_layers; L++) {
        attention_block(m, s, L, n, pos0);
        mlp_block(m, s, L, n);
    }
    uint32_t first = all_logits ? 0 : n - 1, rows = n - first;
    apply_norm(m, s->h, s->x + (size_t)first * H, &m->final_norm, rows);
    matmul(&m->head, s->h, rows, logits, s->n_threads);
}
