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

/* HF's inv_freq, with the llama3 and linear rescaling applied once here. */
static double inv_freq(const nsqrt_config *c, uint32_t i)
{
    double f = 1.0 / pow(c->rope_theta, (double)(2 * i) / c->head_dim);
    if (c->rope == NSQRT_ROPE_LINEAR) f /= c->rope_factor;
    if (c->rope == NSQRT_ROPE_LLAMA3) {
        double wavelen = 2 * M_PI / f, lo = c->rope_orig_ctx / c->rope_low, hi = c->rope_orig_ctx / c->rope_high;
        if (wavelen > lo) f /= c->rope_factor;
        else if (wavelen >= hi) {
            double smooth = (c->rope_orig_ctx / wavelen - c->rope_low) / (c->rope_high - c->rope_low);
            f = (1 - smooth) * f / c->rope_factor + smooth * f;
        }
    }
    return f;
}

/* The inverse frequencies; longrope divides each by its own factor, from
 * factor_key (check.c has checked there are head_dim / 2 of them). */
static float *freq_table(const nsqrt_model *m, const char *factor_key)
{
    uint32_t half = m->c.head_dim / 2;
    float *t = malloc(half * sizeof *t);
    for (uint32_t i = 0; t && i < half; i++) {
        double factor = 1;
        if (factor_key) nsq_meta_f64(m->f, factor_key, i, &factor);
        t[i] = (float)(inv_freq(&m->c, i) / factor);
    }
    return t;
}

static int rope_table(nsqrt_model *m)
{
    int longrope = m->c.rope == NSQRT_ROPE_LONGROPE;
    if (!(m->rope_inv_freq = freq_table(m, longrope ? "model.rope.scaling.short_factor" : NULL))) return -1;
    return longrope && !(m->rope_inv_long = freq_table(m, "model.rope.scaling.long_factor")) ? -1 : 0;
}

/* ---- placing tensors ---- */
/* Where a matrix role goes in layer y. */
static linear *layer_linear(layer *y, int role)
{
    switch (role) {
    case NSQRT_ROLE_Q: case NSQRT_ROLE_Q_B: return &y->q;
    case NSQRT_ROLE_K: case NSQRT_ROLE_K_B: return &y->k;
    case NSQRT_ROLE_V: case NSQRT_ROLE_V_B: return &y->v;
    case NSQRT_ROLE_O: case NSQRT_ROLE_O_B: return &y->o;
    case NSQRT_ROLE_GATE: case NSQRT_ROLE_GATE_B: return &y->gate;
    case NSQRT_ROLE_UP: case NSQRT_ROLE_UP_B: return &y->up;
    default: return &y->down;
    }
}

/* Rows [off, off+out) of w's output dimension as a linear. */
static void set_linear(linear *l, const wmat *w, int in_major, uint64_t off, uint64_t out)
{
    l->w = w;
    l->off = (uint32_t)off;
    l->in = (uint32_t)(in_major ? w->v.rows : w->v.cols);
    l->out = (uint32_t)out;
    l->in_major = in_major;
}

static norm *layer_norm(layer *y, int role)
{
    switch (role) {
    case NSQRT_ROLE_ATTN_NORM: return &y->attn_norm;
    case NSQRT_ROLE_MLP_NORM: return &y->mlp_norm;
    case NSQRT_ROLE_POST_ATTN_NORM: return &y->post_attn_norm;
    case NSQRT_ROLE_POST_MLP_NORM: return &y->post_mlp_norm;
    case NSQRT_ROLE_Q_NORM: return &y->q_norm;
    default: return &y->k_norm;
    }
}

/* Puts a tensor whose (layer, role) and shape check.c has validated in its
 * slot: w for matrices, vec for vectors. Stacked matrices (q/k/v, gate/up)
 * become one linear per part, over rows of the same matrix. */
static void place(nsqrt_model *m, uint32_t L, int role, const wmat *w, const float *vec)
{
    const nsqrt_config *c = &m->c;
    uint32_t qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim, I = c->inter;
    int in_major = nsqrt_arch_role_in_major(c, role);
    layer *y = L == UINT32_MAX ? NULL : &m->layers[L];
    switch (role) {
    case NSQRT_ROLE_EMBED: m->embed = w; return;
    case NSQRT_ROLE_POS: m->pos_embed = w; return;
    case NSQRT_ROLE_FINAL_NORM: m->final_norm.w = vec; return;
    case NSQRT_ROLE_FINAL_NORM_B: m->final_norm.b = vec; return;
    case NSQRT_ROLE_HEAD: set_linear(&m->head, w, 0, 0, c->vocab); return;
    case NSQRT_ROLE_ATTN_NORM_B: y->attn_norm.b = vec; return;
    case NSQRT_ROLE_MLP_NORM_B: y->mlp_norm.b = vec; return;
    case NSQRT_ROLE_ATTN_NORM: case NSQRT_ROLE_MLP_NORM: case NSQRT_ROLE_POST_ATTN_NORM: case NSQRT_ROLE_POST_MLP_NORM: case NSQRT_ROLE_Q_NORM:
    case NSQRT_ROLE_K_NORM: layer_norm(y, role)->w = vec; return;
    case NSQRT_ROLE_QKV:
        set_linear(&y->q, w, in_major, 0, qd), set_linear(&y->k, w, in_major, qd, kvd);
        set_linear(&y->v, w, in_major, qd + kvd, kvd);
        return;
    case NSQRT_ROLE_QKV_B: y->q.b = vec, y->k.b = vec + qd, y->v.b = vec + qd + kvd; return;
    case NSQRT_ROLE_GATE_UP: set_linear(&y->gate, w, in_major, 0, I), set_linear(&y->up, w, in_major, I, I); return;
    case NSQRT_ROLE_Q_B: case NSQRT_ROLE_K_B: case NSQRT_ROLE_V_B: case NSQRT_ROLE_O_B: case NSQRT_ROLE_GATE_B: case NSQRT_ROLE_UP_B: case NSQRT_ROLE_DOWN_B:
        layer_linear(y, role)->b = vec;
        return;
    default: set_linear(layer_linear(y, role), w, in_major, 0, in_major ? w->v.cols : w->v.rows);
    }
}

/* Tensor i of a loaded block, with its loaded refinement levels, as a packed
 * matrix (2-D) or a decoded vector (1-D), placed in m. */
static int load_tensor(const nsqrt_model *m, uint32_t i, resident *r, uint32_t levels, char *err, size_t errlen)
{
    nsq_tensor t;
    nsq_diag d;
    uint32_t L;
    int role;
    wmat *w = &r->mats[r->n_mats];
    nsq_tensor_at(m->f, i, &t);
    if (nsqrt_arch_tensor_role(&m->c, t.name, &L, &role)) return FAIL("tensor %s is not part of this architecture", t.name);
    if (nsq_tensor_view(m->f, i, &r->base, &w->v, &d)) return FAIL("%s", d.message);
    w->n_ref = w->n_loaded = t.n_refine < levels ? t.n_refine : levels;
    for (uint32_t l = 0; l < w->n_ref; l++)
        if (nsq_tensor_refine_view(m->f, i, l + 1, &w->v, &r->ref[l], &w->ref[l], &d)) return FAIL("%s", d.message);
    nsqrt_model *mm = (nsqrt_model *)m; /* placing writes the layer slots this block owns */
    if (t.n_dims >= 2) {
        if (wmat_index(w)) return FAIL("out of memory indexing %s", t.name);
        r->n_mats++;
        place(mm, L, role, w, NULL);
        return 0;
    }
    float *v = malloc(w->v.rows * w->v.cols * sizeof *v);
    if (!v) return FAIL("out of memory decoding %s", t.name);
    r->vecs[r->n_vecs++] = v;
    nsq_dequantize_rows(&w->v, w->ref, w->n_ref, 0, w->v.rows, v);
    if (model_check_vector(t.name, v, w->v.rows * w->v.cols, err, errlen)) return -1;
    if (nsqrt_arch_role_kind(role) == NSQRT_KIND_NORM && !m->c.layernorm && m->c.norm_offset != 0)
        for (uint64_t k = 0; k < w->v.rows * w->v.cols; k++) v[k] += (float)m->c.norm_offset;
    place(mm, L, role, NULL, v);
    return 0;
}

int block_load(const nsqrt_model *m, uint32_t b, uint32_t levels, resident *r, char *err, size_t errlen)
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
    if (rc) block_unload(m, b, r);
    return rc;
}

void block_unload(const nsqrt_model *m, uint32_t b, resident *r)
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
        else bytes += kern_index_bytes(t.scheme, rows);
    }
    return bytes;
}

/* Whether some tensor's products take their input rotated. */
static int any_rotated(const nsq_file *f)
{
    nsq_info info;
    nsq_tensor t;
    nsq_get_info(f, &info);
    for (uint32_t i = 0; i < info.tensor_count; i++)
        if (!nsq_tensor_at(f, i, &t) && kern_rotates(t.scheme)) return 1;
    return 0;
}

/* "PATH: message", so that every error names the file. */
static void prefix_path(const char *path, char *err, size_t errlen)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s", err);
    snprintf(err, errlen, "%s: %s", path, msg);
}

/* The file predicts each block's damage at each depth and the budget holds
 * every block's base: then depths, not skipping, are what a budget changes. */
static int depths_fit(const nsq_file *f, uint64_t budget)
{
    double *dmg;
    uint32_t *first;
    nsq_info info;
    uint64_t bases = 0;
    if (nsqrt_depth_damage(f, &dmg, &first)) return 0;
    free(dmg), free(first);
    nsq_get_info(f, &info);
    for (uint32_t b = 0; b < info.block_count; b++) bases += block_cost(f, b, 0);
    return bases <= budget;
}

int nsqrt_open(const char *path, const nsqrt_opts *o, nsqrt_model **out, char *err, size_t errlen)
{
    nsq_diag d;
    nsqrt_model *m = *out = calloc(1, sizeof *m);
    if (!m) return FAIL("%s: out of memory", path);
    unsigned flags = o->open_flags | (o->max_memory ? NSQ_OPEN_PREAD : 0);
    int rc = nsq_open(path, flags, &m->f, &d) ? FAIL("%s: %s", path, d.message) : 0;
    nsqrt_opts ro = *o;
    if (!rc && ro.routed == NSQRT_ROUTED_IF_ROUTER) {
        nsq_info info;
        nsq_get_info(m->f, &info);
        ro.routed = info.has_router && ro.max_memory && !depths_fit(m->f, ro.max_memory) ? NSQRT_ROUTED : NSQRT_UNROUTED;
    }
    if (!rc && nsqrt_check_file(m->f, &m->c, &m->tok, err, errlen)) rc = (prefix_path(path, err, errlen), -1);
    if (!rc && !(m->layers = calloc(m->c.n_layers, sizeof *m->layers))) rc = FAIL("out of memory");
    if (!rc) m->rotated = any_rotated(m->f);
    if (!rc) rc = residency_init(m, path, &ro, err, errlen);
    /* check.c has made sure every placed weight is there with its shape */
    if (!rc && m->c.tied_head) m->head = (linear){m->embed, 0, m->c.hidden, m->c.vocab, 0, NULL};
    if (!rc && !m->c.learned_pos && rope_table(m)) rc = FAIL("out of memory");
    if (rc) nsqrt_close(m), *out = NULL;
    return rc;
}

void nsqrt_close(nsqrt_model *m)
{
    if (!m) return;
    if (m->rs) residency_free(m);
    free(m->layers);
    free(m->rope_inv_freq);
    free(m->rope_inv_long);
    nsq_tokenizer_free(m->tok);
    nsq_close(m->f);
    free(m);
}

const nsqrt_config *nsqrt_model_config(const nsqrt_model *m) { return &m->c; }
const nsq_file *nsqrt_model_file(const nsqrt_model *m) { return m->f; }
const nsq_tokenizer *nsqrt_model_tokenizer(const nsqrt_model *m) { return m->tok; }
