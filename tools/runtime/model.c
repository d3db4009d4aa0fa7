/* model.c - reading a model for the runtime: the config from metadata, and
 * loading one block through libnsq's block interface (checksum verified):
 * matrices stay packed, vectors (norms, biases) are decoded to f32, and each
 * is placed by its Hugging Face name. residency.c decides which blocks are
 * loaded when. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "residency.h"

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
    const wmat *w;    /* matrices */
    const float *vec; /* vectors, decoded */
    uint64_t rows, cols;
    int stored_in_out; /* GPT-2 Conv1D as Hugging Face stores it: [in][out] */
} source;

/* Rows [off, off+n) of the output dimension of src, as a linear. */
static int set_linear(linear *l, const source *s, uint64_t off, uint64_t n)
{
    if (!s->w) return -1;
    l->w = s->w;
    l->off = (uint32_t)off;
    l->in = (uint32_t)(s->stored_in_out ? s->rows : s->cols);
    l->out = (uint32_t)n;
    l->in_major = s->stored_in_out;
    return 0;
}

static int set_vec(const float **dst, const source *s, uint64_t off, uint64_t n)
{
    (void)n;
    if (!s->vec) return -1;
    *dst = s->vec + off;
    return 0;
}

static int set_mat(const wmat **dst, const source *s)
{
    *dst = s->w;
    return s->w ? 0 : -1;
}

static int place_llama(model *m, const char *name, const source *s)
{
    int L, k = 0;
    char rest[128];
    if (strcmp(name, "model.embed_tokens.weight") == 0) return set_mat(&m->embed, s);
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
    if (strcmp(n, "wte.weight") == 0) return set_mat(&m->embed, s);
    if (strcmp(n, "wpe.weight") == 0) return set_mat(&m->pos_embed, s);
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

/* Tensor i of a loaded block, with its loaded refinement levels, as a packed
 * matrix (2-D) or a decoded vector (1-D), placed in m. */
static int load_tensor(const model *m, uint32_t i, resident *r, uint32_t levels, char *err, size_t errlen)
{
    nsq_tensor t;
    nsq_diag d;
    wmat *w = &r->mats[r->n_mats];
    nsq_tensor_at(m->f, i, &t);
    if (nsq_tensor_view(m->f, i, &r->base, &w->v, &d)) return FAIL("%s", d.message);
    w->n_ref = w->n_loaded = t.n_refine < levels ? t.n_refine : levels;
    for (uint32_t l = 0; l < w->n_ref; l++)
        if (nsq_tensor_refine_view(m->f, i, l + 1, &w->v, &r->ref[l], &w->ref[l], &d)) return FAIL("%s", d.message);
    source s = {NULL, NULL, w->v.rows, w->v.cols, m->c.arch == ARCH_GPT2 && is_conv1d(t.name) && !m->c.conv1d_transposed};
    if (t.n_dims >= 2) {
        if (s.stored_in_out && w->v.scheme == NSQ_SCHEME_TIERED)
            return FAIL("%s: quantized GPT-2 weights must be stored transposed (model.conv1d_transposed)", t.name);
        if (wmat_index(w)) return FAIL("out of memory indexing %s", t.name);
        s.w = w;
        r->n_mats++;
    } else {
        float *v = malloc(w->v.rows * w->v.cols * sizeof *v);
        if (!v) return FAIL("out of memory decoding %s", t.name);
        nsq_dequantize_rows(&w->v, w->ref, w->n_ref, 0, w->v.rows, v);
        s.vec = r->vecs[r->n_vecs++] = v;
    }
    model *mm = (model *)m; /* placing writes the layer slots this block owns */
    int rc = m->c.arch == ARCH_GPT2 ? place_gpt2(mm, t.name, &s) : place_llama(mm, t.name, &s);
    if (rc > 0) return FAIL("tensor %s is not part of this architecture", t.name);
    return rc ? FAIL("tensor %s has the wrong rank for its role", t.name) : 0;
}

int block_load(const model *m, uint32_t b, uint32_t levels, resident *r, char *err, size_t errlen)
{
    nsq_block blk;
    nsq_diag d;
    memset(r, 0, sizeof *r);
    nsq_block_at(m->f, b, &blk);
    levels = levels < blk.refinement_count ? levels : blk.refinement_count;
    if (nsq_block_load(m->f, b, &r->base, &d)) return FAIL("block %u: %s", b, d.message);
    int rc = 0;
    for (; r->n_ref < levels && !rc; r->n_ref++)
        if (nsq_refinement_load(m->f, b, r->n_ref + 1, &r->ref[r->n_ref], &d))
            rc = FAIL("block %u refinement %u: %s", b, r->n_ref + 1, d.message);
    if (rc) r->n_ref--;
    if (!rc && (!(r->mats = calloc(blk.tensor_count + 1, sizeof *r->mats)) ||
                !(r->vecs = calloc(blk.tensor_count + 1, sizeof *r->vecs))))
        rc = FAIL("out of memory");
    for (uint32_t i = blk.first_tensor; i < blk.first_tensor + blk.tensor_count && !rc; i++)
        rc = load_tensor(m, i, r, r->n_ref, err, errlen);
    for (uint32_t L = blk.first_layer; !rc && blk.kind == NSQ_BLOCK_LAYERS && L < blk.first_layer + blk.n_layers; L++)
        rc = layer_complete(m, L, err, errlen);
    if (rc) block_unload(m, b, r);
    return rc;
}

void block_unload(const model *m, uint32_t b, resident *r)
{
    nsq_block blk;
    nsq_block_at(m->f, b, &blk);
    if (blk.kind == NSQ_BLOCK_LAYERS)
        for (uint32_t L = blk.first_layer; L < blk.first_layer + blk.n_layers && L < m->c.n_layers; L++)
            memset(&m->layers[L], 0, sizeof m->layers[L]);
    for (uint32_t i = 0; r->mats && i < r->n_mats; i++) free(r->mats[i].rank);
    for (uint32_t i = 0; r->vecs && i < r->n_vecs; i++) free(r->vecs[i]);
    free(r->mats), free(r->vecs);
    for (uint32_t l = 0; l < r->n_ref; l++) nsq_loaded_free(&r->ref[l]);
    nsq_loaded_free(&r->base);
    memset(r, 0, sizeof *r);
}

uint64_t block_cost(const nsq_file *f, uint32_t b, uint32_t levels)
{
    nsq_block blk;
    nsq_refinement rf;
    nsq_tensor t;
    nsq_block_at(f, b, &blk);
    uint64_t bytes = blk.raw_size;
    for (uint32_t l = 1; l <= levels && l <= blk.refinement_count; l++)
        if (!nsq_refinement_at(f, b, l, &rf)) bytes += rf.raw_size;
    for (uint32_t i = blk.first_tensor; i < blk.first_tensor + blk.tensor_count; i++) {
        nsq_tensor_at(f, i, &t);
        uint64_t rows = t.dims[0];
        for (uint32_t k = 1; k + 1 < t.n_dims; k++) rows *= t.dims[k];
        if (t.n_dims < 2) bytes += t.n_elements * sizeof(float);
        else if (t.scheme == NSQ_SCHEME_TIERED) bytes += rows * 4 * sizeof(uint32_t);
    }
    return bytes;
}

static int linear_ok(const linear *l, uint32_t in, uint32_t out)
{
    if (!l->w || l->in != in || l->out != out) return 0;
    uint64_t stored = l->in_major ? l->w->v.cols : l->w->v.rows;
    return (uint64_t)l->off + out <= stored;
}

int layer_complete(const model *m, uint32_t L, char *err, size_t errlen)
{
    const model_config *c = &m->c;
    uint32_t H = c->hidden, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    const layer *y = &m->layers[L];
    struct { const linear *l; uint32_t in, out; } want[] = {{&y->q, H, qd}, {&y->k, H, kvd}, {&y->v, H, kvd},
                                                            {&y->o, qd, H}, {&y->up, H, c->inter},
                                                            {&y->down, c->inter, H}, {&y->gate, H, c->inter}};
    for (size_t i = 0; i < 6 + (size_t)c->gated_mlp; i++)
        if (!linear_ok(want[i].l, want[i].in, want[i].out))
            return FAIL("layer %u: a weight is missing or has the wrong shape", L);
    if (!y->attn_norm.w || !y->mlp_norm.w || (c->layernorm && (!y->attn_norm.b || !y->mlp_norm.b)))
        return FAIL("layer %u: a norm is missing", L);
    return 0;
}

/* The embedding, output and final-norm weights, once their blocks are loaded. */
static int globals_complete(model *m, char *err, size_t errlen)
{
    const model_config *c = &m->c;
    if (!m->embed || m->embed->v.rows != c->vocab || m->embed->v.cols != c->hidden || !m->final_norm.w ||
        (c->learned_pos && !(m->pos_embed && m->pos_embed->v.rows >= c->ctx && m->pos_embed->v.cols == c->hidden)) ||
        (c->layernorm && !m->final_norm.b))
        return FAIL("embeddings, positions or final norm missing or of the wrong shape");
    if (c->tied_head) m->head = (linear){m->embed, 0, c->hidden, c->vocab, 0, NULL};
    if (!linear_ok(&m->head, c->hidden, c->vocab)) return FAIL("output head missing or of the wrong shape");
    return 0;
}

int model_open(const char *path, const model_opts *o, model *m, char *err, size_t errlen)
{
    nsq_diag d;
    memset(m, 0, sizeof *m);
    unsigned flags = o->open_flags | (o->max_memory ? NSQ_OPEN_PREAD : 0);
    if (nsq_open(path, flags, &m->f, &d)) return FAIL("%s: %s", path, d.message);
    model_opts ro = *o;
    if (ro.routed == MODEL_ROUTED_IF_ROUTER) {
        nsq_info info;
        nsq_get_info(m->f, &info);
        ro.routed = info.has_router && ro.max_memory ? MODEL_ROUTED : MODEL_UNROUTED;
    }
    int rc = read_config(m->f, &m->c, err, errlen);
    if (!rc && !(m->layers = calloc(m->c.n_layers, sizeof *m->layers))) rc = FAIL("out of memory");
    if (!rc) rc = residency_init(m, path, &ro, err, errlen);
    if (!rc) rc = globals_complete(m, err, errlen);
    if (!rc && !m->c.learned_pos && rope_table(m)) rc = FAIL("out of memory");
    if (rc) model_free(m);
    return rc;
}

int model_load(const char *path, unsigned open_flags, int max_refine, model *m, nsq_file **file, char *err,
               size_t errlen)
{
    model_opts o = {open_flags, max_refine, 0, 0, 0};
    int rc = model_open(path, &o, m, err, errlen);
    *file = rc ? NULL : m->f;
    return rc;
}

void model_free(model *m)
{
    if (m->rs) residency_free(m);
    free(m->layers);
    free(m->rope_inv_freq);
    nsq_close(m->f);
    memset(m, 0, sizeof *m);
}
