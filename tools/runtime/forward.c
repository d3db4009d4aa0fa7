/* forward.c - the transformer forward pass for every architecture of the
 * registry (arch.c), as plain loops. One path: what a family does
 * differently is data (the config) or a tensor it has (q/k norms, norms after
 * each sublayer, stacked q/k/v), never a branch on its name. All arithmetic f32. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "residency.h"

/* Bytes of each buffer of a state: the KV cache, then the scratch rows (with
 * rotated inputs, their copy and its int8 rounding, and the signs they were
 * rotated by); an int8 rounding (act8) takes a byte a column and 8 bytes a
 * 64-column block, the rotated one also 640 bytes a 512-column chunk. */
static void state_sizes(const nsqrt_model *m, uint64_t B, uint64_t *kv, uint64_t *scratch)
{
    const nsqrt_config *c = &m->c;
    uint64_t kvd = (uint64_t)c->n_kv_heads * c->head_dim, qd = (uint64_t)c->n_heads * c->head_dim;
    uint64_t wide = qd > c->hidden ? qd : c->hidden, widest = wide > c->inter ? wide : c->inter;
    uint64_t rounded = B * (widest + 8 * act8_blocks((uint32_t)widest)), chunks = B * 640 * act8_chunks((uint32_t)widest);
    *kv = 2 * (uint64_t)c->n_layers * c->ctx * kvd * sizeof(float);
    *scratch = (B * (2 * c->hidden + wide + 2 * qd + 2 * kvd + 2 * (uint64_t)c->inter) + (uint64_t)c->n_heads * c->ctx) *
                   sizeof(float) +
               rounded;
    if (m->rotated) *scratch += B * widest * sizeof(float) + rounded + chunks + widest / 8;
}

void nsqrt_state_bytes(const nsqrt_model *m, uint32_t max_batch, uint64_t *kv, uint64_t *scratch)
{
    state_sizes(m, max_batch, kv, scratch);
}

nsqrt_state *nsqrt_state_new(const nsqrt_model *m, uint32_t max_batch, uint32_t n_threads)
{
    const nsqrt_config *c = &m->c;
    size_t kvd = (size_t)c->n_kv_heads * c->head_dim, qd = (size_t)c->n_heads * c->head_dim, B = max_batch;
    size_t wide = qd > c->hidden ? qd : c->hidden;
    nsqrt_state *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->max_batch = max_batch;
    s->n_threads = n_threads ? n_threads : 1;
    s->kern = kern_detect();
    s->pool = nsqrt_pool_create(s->n_threads);
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
    s->scores = malloc((size_t)c->n_heads * c->ctx * sizeof *s->scores);
    size_t widest = wide > c->inter ? wide : c->inter;
    s->ar.chunks = 1; /* rotated inputs are LATTICE's */
    int rot_fail = m->rotated && (!(s->xr = malloc(B * widest * sizeof *s->xr)) || !(s->rot_signs = malloc(widest / 8 + 1)) ||
                                  act8_reserve(&s->ar, max_batch, (uint32_t)widest));
    if (!s->pool || !s->k_cache || !s->v_cache || !s->x || !s->h || !s->q || !s->k || !s->v || !s->att || !s->o ||
        !s->f1 || !s->f2 || !s->scores || act8_reserve(&s->a, max_batch, (uint32_t)widest) || rot_fail) {
        nsqrt_state_free(s);
        return NULL;
    }
    return s;
}

void nsqrt_state_free(nsqrt_state *s)
{
    if (!s) return;
    float *p[] = {s->k_cache, s->v_cache, s->x, s->h, s->q, s->k, s->v, s->att, s->o, s->f1, s->f2, s->scores, s->xr};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) free(p[i]);
    free(s->rot_signs);
    act8_free(&s->a);
    act8_free(&s->ar);
    nsqrt_pool_free(s->pool);
    free(s);
}

void nsqrt_state_set_exact(nsqrt_state *s, int exact) { s->exact = exact; }

void nsqrt_state_set_observer(nsqrt_state *s, nsqrt_observer fn, void *ctx)
{
    s->observe = fn;
    s->observe_ctx = ctx;
}

/* ---- matrix products ----
 * Tasks are slices of 64 outputs; each output is computed whole by one
 * thread in a fixed order, so results do not depend on the thread count. */
#define SLICE 64
#define TOKENS 16 /* positions per pass over a slice: their int8 rows stay in cache */

typedef struct {
    const linear *l;
    const float *x;
    const act8 *a;
    float *y;
    uint32_t n;
    kern_level kern;
    int f32; /* kern_rows_f32 */
} matmul_job;

static void matmul_task(void *ctx, uint32_t task)
{
    const matmul_job *j = ctx;
    const linear *l = j->l;
    uint32_t o0 = task * SLICE, o1 = o0 + SLICE < l->out ? o0 + SLICE : l->out;
    if (j->f32) {
        /* f32 products decode each row once for all positions */
        kern_rows_f32(j->kern, l->w, l->off, j->x, j->n, o0, o1, j->y + o0, l->out);
        for (uint32_t t = 0; l->b && t < j->n; t++)
            for (uint32_t o = o0; o < o1; o++) j->y[(size_t)t * l->out + o] += l->b[o];
        return;
    }
    for (uint32_t t0 = 0; t0 < j->n; t0 += TOKENS) {
        uint32_t nt = j->n - t0 < TOKENS ? j->n - t0 : TOKENS;
        const float *x = j->x + (size_t)t0 * l->in;
        float *y = j->y + (size_t)t0 * l->out + o0;
        act8 a = j->a->q ? act8_rows(j->a, t0) : *j->a;
        if (l->in_major) kern_cols(j->kern, l->w, l->off, x, nt, o0, o1, y, l->out);
        else kern_rows(j->kern, l->w, l->off, x, &a, nt, o0, o1, y, l->out);
        for (uint32_t t = 0; l->b && t < nt; t++)
            for (uint32_t o = o0; o < o1; o++) y[(size_t)t * l->out + o - o0] += l->b[o];
    }
}

/* The next products take a new input: what they need of it (kernels.h: x
 * rounded to int8, or rotated and rounded) is computed once, when first needed. */
static void new_input(nsqrt_state *s) { s->input_gen++; }

/* What a product needs of its input, per position: rotated for w (LATTICE)
 * into xr, rounded to int8 into a. Positions are independent tasks. */
typedef struct {
    const wmat *w;
    const float *x;
    float *xr;
    act8 *a;
    uint32_t in;
} input_job;

static void input_task(void *ctx, uint32_t t)
{
    const input_job *j = ctx;
    const float *x = j->x + (size_t)t * j->in;
    if (j->xr) {
        kern_rotate(j->w, x, 1, j->xr + (size_t)t * j->in);
        x = j->xr + (size_t)t * j->in;
    }
    if (j->a) {
        act8 v = act8_rows(j->a, t);
        act8_quantize(&v, x, 1, j->in);
    }
}

static void prepare_input(nsqrt_state *s, input_job *j, uint32_t n)
{
    if (j->a) j->a->in = j->in; /* act8_rows's offsets */
    if (n == 1) input_task(j, 0);
    else if (j->xr || j->a) nsqrt_pool_run(s->pool, input_task, j, n);
}

/* y[n][out] = x[n][in] W^T + b; x is the input new_input announced last. The
 * rotated input is kept while the input and w's signs and block size are
 * those it was rotated with (stacked or same-signed matrices). */
static void matmul(nsqrt_state *s, const linear *l, const float *x, uint32_t n, float *y)
{
    int f32 = !l->in_major && wmat_int8(l->w) && (s->exact || wmat_refined_f32(l->w));
    int int8 = !l->in_major && wmat_int8(l->w) && !f32;
    act8 *a = &s->a;
    uint64_t *gen = &s->a_gen;
    input_job in = {l->w, x, NULL, NULL, l->in};
    if (kern_rotates(l->w->v.scheme)) {
        const nsq_lattice *L = &l->w->lv;
        if (s->rot_gen != s->input_gen || s->rot_block != L->block || memcmp(s->rot_signs, L->signs, l->in / 8)) {
            in.xr = s->xr;
            memcpy(s->rot_signs, L->signs, l->in / 8);
            s->rot_gen = s->input_gen, s->rot_block = L->block, s->ar_gen = 0;
        } else {
            in.x = s->xr;
        }
        x = s->xr, a = &s->ar, gen = &s->ar_gen;
    }
    if (int8 && *gen != s->input_gen) in.a = a, *gen = s->input_gen;
    prepare_input(s, &in, n);
    matmul_job j = {l, x, a, y, n, s->kern, f32};
    nsqrt_pool_run(s->pool, matmul_task, &j, (l->out + SLICE - 1) / SLICE);
}

static void observe(nsqrt_state *s, uint32_t L, int which, const float *x, uint32_t n, uint32_t in)
{
    if (s->observe) s->observe(s->observe_ctx, L, which, x, n, in);
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

static void apply_norm(const nsqrt_model *m, float *out, const float *x, const norm *w, uint32_t n_tok)
{
    uint32_t H = m->c.hidden;
    for (uint32_t t = 0; t < n_tok; t++)
        (m->c.layernorm ? layernorm : rmsnorm)(out + (size_t)t * H, x + (size_t)t * H, w, H, m->c.norm_eps);
}

/* RMSNorm of each head's slice of v (Qwen3's q and k norms). */
static void head_norm(const nsqrt_model *m, float *v, const norm *w, uint32_t n_heads)
{
    for (uint32_t h = 0; h < n_heads; h++) {
        float *p = v + (size_t)h * m->c.head_dim;
        rmsnorm(p, p, w, m->c.head_dim, m->c.norm_eps);
    }
}

static float softcap(float x, float cap) { return cap * tanhf(x / cap); }

static float activate(nsqrt_act a, float x)
{
    switch (a) {
    case NSQRT_ACT_SILU: return x / (1.0f + expf(-x));
    case NSQRT_ACT_GELU_TANH: return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case NSQRT_ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
    case NSQRT_ACT_RELU: return x > 0 ? x : 0;
    }
    return x;
}

/* Rotates pairs (i, i + d/2) of each head, as Hugging Face's rotate_half
 * does. longrope switches to its long factors from the original context on,
 * per position, and scales cos and sin by its attention factor. */
static void rope(const nsqrt_model *m, float *v, uint32_t n_heads, uint32_t pos)
{
    uint32_t d = m->c.head_dim, half = d / 2;
    const float *inv = m->rope_inv_long && pos >= m->c.rope_orig_ctx ? m->rope_inv_long : m->rope_inv_freq;
    float mscale = (float)m->c.rope_attn_factor;
    for (uint32_t i = 0; i < half; i++) {
        float angle = (float)pos * inv[i], c = cosf(angle) * mscale, s = sinf(angle) * mscale;
        for (uint32_t h = 0; h < n_heads; h++) {
            float *p = v + (size_t)h * d, a = p[i], b = p[i + half];
            p[i] = a * c - b * s;
            p[i + half] = b * c + a * s;
        }
    }
}

/* Causal attention of the positions pos0..pos0+n-1, whose keys and values are
 * already in the cache; in a layer with a sliding window W a position sees
 * the last W. One task a head, with scores of its own. */
typedef struct {
    const nsqrt_model *m;
    nsqrt_state *s;
    uint32_t L, n, pos0;
} attn_job;

static void attention_head(void *ctx, uint32_t h)
{
    const attn_job *j = ctx;
    const nsqrt_config *c = &j->m->c;
    nsqrt_state *s = j->s;
    uint32_t d = c->head_dim, kvd = c->n_kv_heads * d, group = c->n_heads / c->n_kv_heads;
    uint32_t W = nsqrt_arch_layer_windowed(c, j->L) ? c->sliding_window : 0;
    const float *kc = s->k_cache + (size_t)j->L * c->ctx * kvd, *vc = s->v_cache + (size_t)j->L * c->ctx * kvd;
    float scale = (float)c->attn_scale, cap = (float)c->attn_softcap, *scores = s->scores + (size_t)h * c->ctx;
    size_t kv_off = (size_t)(h / group) * d;
    for (uint32_t t = 0; t < j->n; t++) {
        uint32_t p = j->pos0 + t, lo = W && p + 1 > W ? p + 1 - W : 0;
        const float *q = s->q + ((size_t)t * c->n_heads + h) * d;
        float mx = -INFINITY, sum = 0, *out = s->att + ((size_t)t * c->n_heads + h) * d;
        for (uint32_t i = lo; i <= p; i++) {
            const float *k = kc + (size_t)i * kvd + kv_off;
            float dot = 0;
            for (uint32_t e = 0; e < d; e++) dot += q[e] * k[e];
            scores[i] = cap > 0 ? softcap(dot * scale, cap) : dot * scale;
            mx = scores[i] > mx ? scores[i] : mx;
        }
        for (uint32_t i = lo; i <= p; i++) sum += (scores[i] = expf(scores[i] - mx));
        memset(out, 0, d * sizeof *out);
        for (uint32_t i = lo; i <= p; i++) {
            const float *v = vc + (size_t)i * kvd + kv_off, w = scores[i] / sum;
            for (uint32_t e = 0; e < d; e++) out[e] += w * v[e];
        }
    }
}

static void attention(const nsqrt_model *m, nsqrt_state *s, uint32_t L, uint32_t n, uint32_t pos0)
{
    attn_job j = {m, s, L, n, pos0};
    nsqrt_pool_run(s->pool, attention_head, &j, m->c.n_heads);
}

static void attention_block(const nsqrt_model *m, nsqrt_state *s, uint32_t L, uint32_t n, uint32_t pos0)
{
    const nsqrt_config *c = &m->c;
    const layer *y = &m->layers[L];
    uint32_t H = c->hidden, kvd = c->n_kv_heads * c->head_dim;
    apply_norm(m, s->h, s->x, &y->attn_norm, n);
    observe(s, L, NSQRT_LIN_Q, s->h, n, H);
    observe(s, L, NSQRT_LIN_K, s->h, n, H);
    observe(s, L, NSQRT_LIN_V, s->h, n, H);
    new_input(s);
    matmul(s, &y->q, s->h, n, s->q);
    matmul(s, &y->k, s->h, n, s->k);
    matmul(s, &y->v, s->h, n, s->v);
    for (uint32_t t = 0; t < n; t++) {
        if (y->q_norm.w) head_norm(m, s->q + (size_t)t * c->n_heads * c->head_dim, &y->q_norm, c->n_heads);
        if (y->k_norm.w) head_norm(m, s->k + (size_t)t * kvd, &y->k_norm, c->n_kv_heads);
        if (!c->learned_pos) {
            rope(m, s->q + (size_t)t * c->n_heads * c->head_dim, c->n_heads, pos0 + t);
            rope(m, s->k + (size_t)t * kvd, c->n_kv_heads, pos0 + t);
        }
        size_t at = ((size_t)L * c->ctx + pos0 + t) * kvd;
        memcpy(s->k_cache + at, s->k + (size_t)t * kvd, kvd * sizeof *s->k);
        memcpy(s->v_cache + at, s->v + (size_t)t * kvd, kvd * sizeof *s->v);
    }
    attention(m, s, L, n, pos0);
    uint32_t qd = c->n_heads * c->head_dim;
    observe(s, L, NSQRT_LIN_O, s->att, n, qd);
    new_input(s);
    matmul(s, &y->o, s->att, n, s->o);
    if (y->post_attn_norm.w) apply_norm(m, s->o, s->o, &y->post_attn_norm, n);
    for (size_t i = 0; i < (size_t)n * H; i++) s->x[i] += s->o[i];
}

/* down(act(gate(h)) * up(h)), or down(act(up(h))) without a gate (GPT-2). */
static void mlp_block(const nsqrt_model *m, nsqrt_state *s, uint32_t L, uint32_t n)
{
    const nsqrt_config *c = &m->c;
    const layer *y = &m->layers[L];
    size_t len = (size_t)n * c->inter;
    int gated = y->gate.w != NULL;
    apply_norm(m, s->h, s->x, &y->mlp_norm, n);
    observe(s, L, NSQRT_LIN_UP, s->h, n, c->hidden);
    if (gated) observe(s, L, NSQRT_LIN_GATE, s->h, n, c->hidden);
    new_input(s);
    matmul(s, &y->up, s->h, n, s->f1);
    if (gated) {
        matmul(s, &y->gate, s->h, n, s->f2);
        for (size_t i = 0; i < len; i++) s->f1[i] *= activate(c->act, s->f2[i]);
    } else {
        for (size_t i = 0; i < len; i++) s->f1[i] = activate(c->act, s->f1[i]);
    }
    observe(s, L, NSQRT_LIN_DOWN, s->f1, n, c->inter);
    new_input(s);
    matmul(s, &y->down, s->f1, n, s->o);
    if (y->post_mlp_norm.w) apply_norm(m, s->o, s->o, &y->post_mlp_norm, n);
    for (size_t i = 0; i < (size_t)n * c->hidden; i++) s->x[i] += s->o[i];
}

void forward_embed(const nsqrt_model *m, nsqrt_state *s, const int32_t *tokens, uint32_t n, uint32_t pos0)
{
    const nsqrt_config *c = &m->c;
    uint32_t H = c->hidden;
    for (uint32_t t = 0; t < n; t++) {
        float *x = s->x + (size_t)t * H;
        wmat_row(m->embed, (uint32_t)tokens[t], x);
        if (c->embed_scale != 1)
            for (uint32_t i = 0; i < H; i++) x[i] *= (float)c->embed_scale;
        if (c->learned_pos) {
            wmat_row(m->pos_embed, pos0 + t, s->h);
            for (uint32_t i = 0; i < H; i++) x[i] += s->h[i];
        }
    }
}

int forward_layers(const nsqrt_model *m, nsqrt_state *s, uint32_t L0, uint32_t L1, uint32_t n, uint32_t pos0)
{
    for (uint32_t L = L0; L < L1; L++) {
        if (model_layer_skipped(m, L)) continue;
        if (model_need_layer(m, L)) return -1;
        attention_block(m, s, L, n, pos0);
        mlp_block(m, s, L, n);
    }
    return 0;
}

void forward_logits(const nsqrt_model *m, nsqrt_state *s, uint32_t n, float *logits, int all_logits)
{
    uint32_t H = m->c.hidden, first = all_logits ? 0 : n - 1, rows = n - first;
    apply_norm(m, s->h, s->x + (size_t)first * H, &m->final_norm, rows);
    new_input(s);
    matmul(s, &m->head, s->h, rows, logits);
    if (m->c.logit_softcap > 0)
        for (size_t i = 0; i < (size_t)rows * m->c.vocab; i++) logits[i] = softcap(logits[i], (float)m->c.logit_softcap);
}

int nsqrt_forward(const nsqrt_model *m, nsqrt_state *s, const int32_t *tokens, uint32_t n, uint32_t pos0, float *logits,
                  int all_logits)
{
    forward_embed(m, s, tokens, n, pos0);
    if (forward_layers(m, s, 0, m->c.n_layers, n, pos0)) return -1;
    forward_logits(m, s, n, logits, all_logits);
    return 0;
}

void nsqrt_forward_embed(const nsqrt_model *m, nsqrt_state *s, const int32_t *tokens, uint32_t n, uint32_t pos0)
{
    forward_embed(m, s, tokens, n, pos0);
}

int nsqrt_forward_layers(const nsqrt_model *m, nsqrt_state *s, uint32_t L0, uint32_t L1, uint32_t n, uint32_t pos0)
{
    return forward_layers(m, s, L0, L1, n, pos0);
}

void nsqrt_state_get_hidden(const nsqrt_model *m, const nsqrt_state *s, uint32_t n, float *x)
{
    memcpy(x, s->x, (size_t)n * m->c.hidden * sizeof *x);
}

void nsqrt_state_set_hidden(const nsqrt_model *m, nsqrt_state *s, uint32_t n, const float *x)
{
    memcpy(s->x, x, (size_t)n * m->c.hidden * sizeof *x);
}
