/* model.c - reading a model for the runtime: the config from metadata, then
 * every block through libnsq's block interface (checksum verified on load),
 * each tensor decoded to f32 and placed by its Hugging Face name. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define FAIL(...) (snprintf(err, errlen, __VA_ARGS__), -1)

static int get_u32(const nsq_file *f, const char *key, uint32_t *v)
{
    uint64_t u;
    if (nsq_meta_u64(f, key, 0, &u) || u > UINT32_MAX) return -1;
    *v = (uint32_t)u;
    return 0;
}

static int str_is(const nsq_file *f, const char *key, const char *want)
{
    const char *s;
    size_t n;
    return !nsq_meta_str(f, key, 0, &s, &n) && n == strlen(want) && memcmp(s, want, n) == 0;
}

static int read_rope(const nsq_file *f, model_config *c, char *err, size_t errlen)
{
    static const char *kinds[] = {"none", "linear", "dynamic", "llama3"};
    c->rope = ROPE_NONE;
    int known = 0;
    for (int i = 0; i < 4; i++)
        if (str_is(f, "model.rope.scaling.type", kinds[i])) c->rope = (rope_kind)i, known = 1;
    if (!known) return FAIL("RoPE scaling type of this model is not supported (none, linear, dynamic, llama3)");
    nsq_meta_f64(f, "model.rope.theta", 0, &c->rope_theta);
    nsq_meta_f64(f, "model.rope.scaling.factor", 0, &c->rope_factor);
    c->rope_low = 1, c->rope_high = 4, c->rope_orig_ctx = 8192;
    nsq_meta_f64(f, "model.rope.scaling.low_freq_factor", 0, &c->rope_low);
    nsq_meta_f64(f, "model.rope.scaling.high_freq_factor", 0, &c->rope_high);
    nsq_meta_f64(f, "model.rope.scaling.original_max_position_embeddings", 0, &c->rope_orig_ctx);
    return 0;
}

static int read_config(const nsq_file *f, model_config *c, char *err, size_t errlen)
{
    static const char *archs[] = {"llama", "mistral", "qwen2", "gpt2"};
    static const char *acts[] = {"silu", "gelu_tanh", "gelu", "relu"};
    memset(c, 0, sizeof *c);
    for (int i = 0; i < 4; i++) {
        if (str_is(f, "general.architecture", archs[i])) c->arch = (model_arch)i;
        if (str_is(f, "model.activation", acts[i])) c->act = (model_act)i;
    }
    double eps;
    int tied = 0, add_bos = 0;
    if (get_u32(f, "model.hidden_size", &c->hidden) || get_u32(f, "model.n_layers", &c->n_layers) ||
        get_u32(f, "model.n_heads", &c->n_heads) || get_u32(f, "model.n_kv_heads", &c->n_kv_heads) ||
        get_u32(f, "model.head_dim", &c->head_dim) || get_u32(f, "model.intermediate_size", &c->inter) ||
        get_u32(f, "model.vocab_size", &c->vocab) || get_u32(f, "model.context_length", &c->ctx) ||
        get_u32(f, "model.sliding_window", &c->sliding_window) || nsq_meta_f64(f, "model.norm.epsilon", 0, &eps) ||
        nsq_meta_bool(f, "model.tied_head", 0, &tied) || nsq_meta_bool(f, "tokenizer.add_bos", 0, &add_bos) ||
        nsq_meta_i64(f, "tokenizer.bos_id", 0, &c->bos_id) || nsq_meta_i64(f, "tokenizer.eos_id", 0, &c->eos_id))
        return FAIL("the file's model metadata is incomplete");
    if (c->head_dim % 2 || c->n_heads % c->n_kv_heads) return FAIL("head_dim must be even and heads a multiple of KV heads");
    c->norm_eps = (float)eps;
    c->tied_head = tied;
    c->add_bos = add_bos;
    c->layernorm = str_is(f, "model.norm.type", "layernorm");
    c->learned_pos = str_is(f, "model.position", "learned");
    c->gated_mlp = c->arch != ARCH_GPT2;
    nsq_meta_bool(f, "model.conv1d_transposed", 0, &c->conv1d_transposed); /* absent: stored as the source */
    return c->learned_pos ? 0 : read_rope(f, c, err, errlen);
}

/* HF's inv_freq, with the llama3 and linear rescaling applied once here. */
static int rope_table(model *m)
{
    const model_config *c = &m->c;
    uint32_t half = c->head_dim / 2;
    if (!(m->rope_inv_freq = malloc(half * sizeof *m->rope_inv_freq))) return -1;
    for (uint32_t i = 0; i < half; i++) {
        double f = 1.0 / pow(c->rope_theta, (double)(2 * i) / c->head_dim);
        if (c->rope == ROPE_LINEAR) f /= c->rope_factor;
        if (c->rope == ROPE_LLAMA3) {
            double wavelen = 2 * M_PI / f, lo = c->rope_orig_ctx / c->rope_low, hi = c->rope_orig_ctx / c->rope_high;
            if (wavelen > lo) f /= c->rope_factor;
            else if (wavelen >= hi) {
                double smooth = (c->rope_orig_ctx / wavelen - c->rope_low) / (c->rope_high - c->rope_low);
                f = (1 - smooth) * f / c->rope_factor + smooth * f;
            }
        }
        m->rope_inv_freq[i] = (float)f;
    }
    return 0;
}

/* ---- placing tensors ---- */
typedef struct {
    const float *w; /* decoded [rows][cols] */
    uint64_t rows, cols;
    int stored_in_out; /* GPT-2 Conv1D as Hugging Face stores it: [in][out] */
} source;

static float *dup_floats(const float *p, uint64_t n)
{
    float *q = malloc(n * sizeof *q);
    if (q) memcpy(q, p, n * sizeof *q);
    return q;
}

/* Columns [c0, c0+n) of the output dimension of src into a linear. */
static int set_linear(linear *l, const source *s, uint64_t c0, uint64_t n)
{
    uint64_t in = s->stored_in_out ? s->rows : s->cols;
    if (!(l->wt = malloc(in * n * sizeof *l->wt))) return -1;
    l->in = (uint32_t)in;
    l->out = (uint32_t)n;
    for (uint64_t i = 0; i < in; i++)
        for (uint64_t o = 0; o < n; o++)
            l->wt[i * n + o] = s->stored_in_out ? s->w[i * s->cols + c0 + o] : s->w[(c0 + o) * s->cols + i];
    return 0;
}

static int set_vec(float **dst, const source *s, uint64_t off, uint64_t n)
{
    return (*dst = dup_floats(s->w + off, n)) ? 0 : -1;
}

static int place_llama(model *m, const char *name, const source *s)
{
    int L, k = 0;
    char rest[128];
    if (strcmp(name, "model.embed_tokens.weight") == 0) return set_vec(&m->embed, s, 0, s->rows * s->cols);
    if (strcmp(name, "model.norm.weight") == 0) return set_vec(&m->final_norm.w, s, 0, s->cols);
    if (strcmp(name, "lm_head.weight") == 0) return set_linear(&m->head, s, 0, s->rows);
    if (sscanf(name, "model.layers.%d.%127s%n", &L, rest, &k) != 2 || L < 0 || (uint32_t)L >= m->c.n_layers) return 1;
    layer *y = &m->layers[L];
    struct { const char *n; linear *l; } lin[] = {{"self_attn.q_proj", &y->q}, {"self_attn.k_proj", &y->k},
                                                  {"self_attn.v_proj", &y->v}, {"self_attn.o_proj", &y->o},
                                                  {"mlp.gate_proj", &y->gate}, {"mlp.up_proj", &y->up},
                                                  {"mlp.down_proj", &y->down}};
    if (strcmp(rest, "input_layernorm.weight") == 0) return set_vec(&y->attn_norm.w, s, 0, s->cols);
    if (strcmp(rest, "post_attention_layernorm.weight") == 0) return set_vec(&y->mlp_norm.w, s, 0, s->cols);
    for (size_t i = 0; i < sizeof lin / sizeof lin[0]; i++) {
        size_t n = strlen(lin[i].n);
        if (strncmp(rest, lin[i].n, n) != 0) continue;
        if (strcmp(rest + n, ".weight") == 0) return set_linear(lin[i].l, s, 0, s->rows);
        if (strcmp(rest + n, ".bias") == 0) return set_vec(&lin[i].l->b, s, 0, s->cols);
    }
    return 1;
}

/* GPT-2: c_attn holds q, k and v side by side along its output dimension. */
static int place_gpt2(model *m, const char *name, const source *s)
{
    const char *n = strncmp(name, "transformer.", 12) == 0 ? name + 12 : name;
    int L;
    char rest[128];
    uint64_t H = m->c.hidden, len = s->rows * s->cols;
    if (strcmp(n, "wte.weight") == 0) return set_vec(&m->embed, s, 0, len);
    if (strcmp(n, "wpe.weight") == 0) return set_vec(&m->pos_embed, s, 0, len);
    if (strcmp(n, "ln_f.weight") == 0) return set_vec(&m->final_norm.w, s, 0, len);
    if (strcmp(n, "ln_f.bias") == 0) return set_vec(&m->final_norm.b, s, 0, len);
    if (strcmp(n, "lm_head.weight") == 0) return set_linear(&m->head, s, 0, s->rows);
    if (sscanf(n, "h.%d.%127s", &L, rest) != 2 || L < 0 || (uint32_t)L >= m->c.n_layers) return 1;
    layer *y = &m->layers[L];
    uint64_t outs = s->stored_in_out ? s->cols : s->rows;
    if (strcmp(rest, "ln_1.weight") == 0) return set_vec(&y->attn_norm.w, s, 0, len);
    if (strcmp(rest, "ln_1.bias") == 0) return set_vec(&y->attn_norm.b, s, 0, len);
    if (strcmp(rest, "ln_2.weight") == 0) return set_vec(&y->mlp_norm.w, s, 0, len);
    if (strcmp(rest, "ln_2.bias") == 0) return set_vec(&y->mlp_norm.b, s, 0, len);
    if (strcmp(rest, "attn.c_attn.weight") == 0)
        return set_linear(&y->q, s, 0, H) || set_linear(&y->k, s, H, H) || set_linear(&y->v, s, 2 * H, H) ? -1 : 0;
    if (strcmp(rest, "attn.c_attn.bias") == 0)
        return set_vec(&y->q.b, s, 0, H) || set_vec(&y->k.b, s, H, H) || set_vec(&y->v.b, s, 2 * H, H) ? -1 : 0;
    struct { const char *n; linear *l; } lin[] = {{"attn.c_proj", &y->o}, {"mlp.c_fc", &y->up}, {"mlp.c_proj", &y->down}};
    for (size_t i = 0; i < 3; i++) {
        size_t k = strlen(lin[i].n);
        if (strncmp(rest, lin[i].n, k) != 0) continue;
        if (strcmp(rest + k, ".weight") == 0) return set_linear(lin[i].l, s, 0, outs);
        if (strcmp(rest + k, ".bias") == 0) return set_vec(&lin[i].l->b, s, 0, len);
    }
    return 1;
}

static int is_conv1d(const char *name)
{
    size_t n = strlen(name);
    return n > 7 && strcmp(name + n - 7, ".weight") == 0 && (strstr(name, ".attn.c_") || strstr(name, ".mlp.c_"));
}

/* Decodes tensor i of a loaded block (with its loaded refinement levels) and places it. */
static int load_tensor(model *m, const nsq_file *f, uint32_t i, const nsq_loaded *blk, const nsq_loaded *refs,
                       uint32_t n_refs, char *err, size_t errlen)
{
    nsq_tensor t;
    nsq_view v;
    nsq_refine_view rv[NSQ_MAX_REFINEMENTS];
    nsq_diag d;
    nsq_tensor_at(f, i, &t);
    if (nsq_tensor_view(f, i, blk, &v, &d)) return FAIL("%s", d.message);
    uint32_t levels = t.n_refine < n_refs ? t.n_refine : n_refs;
    for (uint32_t l = 0; l < levels; l++)
        if (nsq_tensor_refine_view(f, i, l + 1, &v, &refs[l], &rv[l], &d)) return FAIL("%s", d.message);
    float *w = malloc(v.rows * v.cols * sizeof *w);
    if (!w) return FAIL("out of memory decoding %s", t.name);
    nsq_dequantize_rows(&v, rv, levels, 0, v.rows, w);
    source s = {w, v.rows, v.cols, m->c.arch == ARCH_GPT2 && is_conv1d(t.name) && !m->c.conv1d_transposed};
    int rc = m->c.arch == ARCH_GPT2 ? place_gpt2(m, t.name, &s) : place_llama(m, t.name, &s);
    free(w);
    if (rc > 0) return FAIL("tensor %s is not part of this architecture", t.name);
    return rc ? FAIL("out of memory placing %s", t.name) : 0;
}

static int load_block(model *m, const nsq_file *f, uint32_t b, int max_refine, char *err, size_t errlen)
{
    nsq_block blk;
    nsq_loaded base, refs[NSQ_MAX_REFINEMENTS];
    nsq_diag d;
    nsq_block_at(f, b, &blk);
    uint32_t n_refs = max_refine < 0 || (uint32_t)max_refine > blk.refinement_count ? blk.refinement_count : (uint32_t)max_refine;
    if (nsq_block_load(f, b, &base, &d)) return FAIL("block %u: %s", b, d.message);
    uint32_t loaded = 0;
    int rc = 0;
    for (; loaded < n_refs && !rc; loaded++)
        if (nsq_refinement_load(f, b, loaded + 1, &refs[loaded], &d)) rc = FAIL("block %u refinement: %s", b, d.message);
    if (rc) loaded--;
    for (uint32_t i = blk.first_tensor; i < blk.first_tensor + blk.tensor_count && !rc; i++)
        rc = load_tensor(m, f, i, &base, refs, n_refs, err, errlen);
    for (uint32_t l = 0; l < loaded; l++) nsq_loaded_free(&refs[l]);
    nsq_loaded_free(&base);
    return rc;
}

/* Every weight the forward pass reads is present, with the right shape. */
static int check_complete(model *m, char *err, size_t errlen)
{
    const model_config *c = &m->c;
    uint32_t H = c->hidden, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    if (!m->embed || !m->final_norm.w || (c->learned_pos && !m->pos_embed) || (c->layernorm && !m->final_norm.b))
        return FAIL("embeddings, positions or final norm missing");
    if (!c->tied_head && !(m->head.wt && m->head.in == H && m->head.out == c->vocab)) return FAIL("output head missing");
    for (uint32_t L = 0; L < c->n_layers; L++) {
        const layer *y = &m->layers[L];
        struct { const linear *l; uint32_t in, out; } want[] = {{&y->q, H, qd}, {&y->k, H, kvd}, {&y->v, H, kvd},
                                                                {&y->o, qd, H}, {&y->up, H, c->inter},
                                                                {&y->down, c->inter, H}, {&y->gate, H, c->inter}};
        for (size_t i = 0; i < 6 + (size_t)c->gated_mlp; i++)
            if (!want[i].l->wt || want[i].l->in != want[i].in || want[i].l->out != want[i].out)
                return FAIL("layer %u: a weight is missing or has the wrong shape", L);
        if (!y->attn_norm.w || !y->mlp_norm.w || (c->layernorm && (!y->attn_norm.b || !y->mlp_norm.b)))
            return FAIL("layer %u: a norm is missing", L);
    }
    return 0;
}

int model_load(const char *path, unsigned open_flags, int max_refine, model *m, nsq_file **file, char *err, size_t errlen)
{
    nsq_diag d;
    nsq_file *f;
    memset(m, 0, sizeof *m);
    *file = NULL;
    if (nsq_open(path, open_flags, &f, &d)) return FAIL("%s: %s", path, d.message);
    int rc = read_config(f, &m->c, err, errlen);
    if (!rc && !(m->layers = calloc(m->c.n_layers, sizeof *m->layers))) rc = FAIL("out of memory");
    nsq_info info;
    nsq_get_info(f, &info);
    for (uint32_t b = 0; b < info.block_count && !rc; b++) rc = load_block(m, f, b, max_refine, err, errlen);
    if (!rc) rc = check_complete(m, err, errlen);
    if (!rc && m->c.tied_head) { /* the head is the embedding matrix, read along the other axis */
        source s = {m->embed, m->c.vocab, m->c.hidden, 0};
        if (set_linear(&m->head, &s, 0, m->c.vocab)) rc = FAIL("out of memory");
    }
    if (!rc && !m->c.learned_pos && rope_table(m)) rc = FAIL("out of memory");
    if (rc) {
        model_free(m);
        nsq_close(f);
        return -1;
    }
    *file = f;
    return 0;
}

static void free_linear(linear *l)
{
    free(l->wt);
    free(l->b);
}

void model_free(model *m)
{
    for (uint32_t L = 0; m->layers && L < m->c.n_layers; L++) {
        layer *y = &m->layers[L];
        linear *ls[] = {&y->q, &y->k, &y->v, &y->o, &y->gate, &y->up, &y->down};
        for (size_t i = 0; i < 7; i++) free_linear(ls[i]);
        free(y->attn_norm.w), free(y->attn_norm.b), free(y->mlp_norm.w), free(y->mlp_norm.b);
    }
    free(m->layers);
    free(m->embed);
    free(m->pos_embed);
    free(m->final_norm.w);
    free(m->final_norm.b);
    free_linear(&m->head);
    free(m->rope_inv_freq);
    memset(m, 0, sizeof *m);
}
