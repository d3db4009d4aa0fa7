/* arch.c - the tensors each supported architecture must have, with their
 * shapes from the config, matched against the checkpoint. Names stay the
 * Hugging Face names, verbatim. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"

typedef struct {
    char name[160];
    uint64_t dims[2];
    uint32_t n_dims;
    tensor_role role;
    int layer, conv1d;
} expect;

typedef struct {
    expect *e;
    size_t n, cap;
} expect_list;

static int push(expect_list *l, const char *name, uint32_t n_dims, uint64_t d0, uint64_t d1, tensor_role role, int layer,
                int conv1d)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        expect *e = realloc(l->e, cap * sizeof *e);
        if (!e) return -1;
        l->e = e;
        l->cap = cap;
    }
    expect *x = &l->e[l->n++];
    snprintf(x->name, sizeof x->name, "%s", name);
    x->n_dims = n_dims;
    x->dims[0] = d0;
    x->dims[1] = d1;
    x->role = role;
    x->layer = layer;
    x->conv1d = conv1d;
    return 0;
}

#define VEC(name, n, role) push(l, name, 1, n, 0, role, L, 0)
#define MAT(name, r, c) push(l, name, 2, r, c, ROLE_MATRIX, L, 0)

static int llama_layer(const hf_config *c, expect_list *l, int L)
{
    char p[96], n[160];
    uint64_t H = c->hidden, q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim, I = c->inter;
    int qkv_bias = c->attention_bias, o_bias = c->attention_bias && c->arch == ARCH_LLAMA;
    snprintf(p, sizeof p, "model.layers.%d.", L);
    static const char *proj[] = {"q", "k", "v"};
    uint64_t out[] = {q, kv, kv};
    int rc = 0;
#define NM(suffix) (snprintf(n, sizeof n, "%s%s", p, suffix), n)
    rc |= VEC(NM("input_layernorm.weight"), H, ROLE_NORM);
    for (int i = 0; i < 3; i++) {
        char s[64];
        snprintf(s, sizeof s, "self_attn.%s_proj.weight", proj[i]);
        rc |= MAT(NM(s), out[i], H);
        snprintf(s, sizeof s, "self_attn.%s_proj.bias", proj[i]);
        if (qkv_bias) rc |= VEC(NM(s), out[i], ROLE_BIAS);
    }
    rc |= MAT(NM("self_attn.o_proj.weight"), H, q);
    if (o_bias) rc |= VEC(NM("self_attn.o_proj.bias"), H, ROLE_BIAS);
    rc |= VEC(NM("post_attention_layernorm.weight"), H, ROLE_NORM);
    rc |= MAT(NM("mlp.gate_proj.weight"), I, H);
    rc |= MAT(NM("mlp.up_proj.weight"), I, H);
    rc |= MAT(NM("mlp.down_proj.weight"), H, I);
    if (c->mlp_bias) {
        rc |= VEC(NM("mlp.gate_proj.bias"), I, ROLE_BIAS);
        rc |= VEC(NM("mlp.up_proj.bias"), I, ROLE_BIAS);
        rc |= VEC(NM("mlp.down_proj.bias"), H, ROLE_BIAS);
    }
    return rc;
}

/* GPT-2 Conv1D weights are stored [in][out]; dims here are as stored. */
static int gpt2_layer(const hf_config *c, expect_list *l, const char *pre, int L)
{
    char p[96], n[160];
    uint64_t H = c->hidden, I = c->inter;
    snprintf(p, sizeof p, "%sh.%d.", pre, L);
    static const struct { const char *name; int in_h; int out; } conv[] = {
        {"attn.c_attn", 1, 3}, {"attn.c_proj", 1, 1}, {"mlp.c_fc", 1, 0}, {"mlp.c_proj", 0, 1}};
    int rc = 0;
    rc |= VEC(NM("ln_1.weight"), H, ROLE_NORM);
    rc |= VEC(NM("ln_1.bias"), H, ROLE_NORM);
    for (int i = 0; i < 4; i++) {
        uint64_t in = conv[i].in_h ? H : I, outd = conv[i].out ? conv[i].out * H : I;
        char s[64];
        snprintf(s, sizeof s, "%s.weight", conv[i].name);
        rc |= push(l, NM(s), 2, in, outd, ROLE_MATRIX, L, 1);
        snprintf(s, sizeof s, "%s.bias", conv[i].name);
        rc |= VEC(NM(s), outd, ROLE_BIAS);
        if (i == 1) {
            rc |= VEC(NM("ln_2.weight"), H, ROLE_NORM);
            rc |= VEC(NM("ln_2.bias"), H, ROLE_NORM);
        }
    }
    return rc;
#undef NM
}

static int build_expectations(const hf_config *c, const st_model *m, expect_list *l)
{
    int rc = 0, L = -1;
    uint64_t H = c->hidden, V = c->vocab;
    if (c->arch == ARCH_GPT2) {
        /* the original hub checkpoints have no "transformer." prefix */
        const char *pre = st_find(m, "wte.weight") ? "" : "transformer.";
        char n[160];
        snprintf(n, sizeof n, "%swte.weight", pre);
        rc |= push(l, n, 2, V, H, ROLE_EMBED, -1, 0);
        snprintf(n, sizeof n, "%swpe.weight", pre);
        rc |= push(l, n, 2, c->ctx, H, ROLE_POS_EMBED, -1, 0);
        for (L = 0; (uint64_t)L < c->n_layers && !rc; L++) rc |= gpt2_layer(c, l, pre, L);
        L = -1;
        snprintf(n, sizeof n, "%sln_f.weight", pre);
        rc |= VEC(n, H, ROLE_NORM);
        snprintf(n, sizeof n, "%sln_f.bias", pre);
        rc |= VEC(n, H, ROLE_NORM);
    } else {
        rc |= push(l, "model.embed_tokens.weight", 2, V, H, ROLE_EMBED, -1, 0);
        for (L = 0; (uint64_t)L < c->n_layers && !rc; L++) rc |= llama_layer(c, l, L);
        L = -1;
        rc |= VEC("model.norm.weight", H, ROLE_NORM);
    }
    if (!c->tied_head) rc |= push(l, "lm_head.weight", 2, V, H, ROLE_HEAD, -1, 0);
    return rc;
}

/* Checkpoint entries that are buffers, not weights. */
static int ignorable(const hf_config *c, const char *name)
{
    size_t n = strlen(name);
    if (n > 23 && strcmp(name + n - 23, "rotary_emb.inv_freq") == 0) return 1;
    if (c->tied_head && strcmp(name, "lm_head.weight") == 0) return 1; /* a tied copy */
    if (c->arch == ARCH_GPT2 && ((n >= 9 && strcmp(name + n - 9, "attn.bias") == 0) ||
                                 (n >= 16 && strcmp(name + n - 16, "attn.masked_bias") == 0)))
        return 1;
    return 0;
}

static int check_one(const expect *x, const st_tensor *t, char *err, size_t n)
{
    int ok = t->n_dims == x->n_dims && t->dims[0] == x->dims[0] && (x->n_dims == 1 || t->dims[1] == x->dims[1]);
    if (!ok) {
        char got[96] = "", want[64];
        for (uint32_t k = 0; k < t->n_dims && k < 4; k++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%llu", k ? "," : "", (unsigned long long)t->dims[k]);
        if (x->n_dims == 1) snprintf(want, sizeof want, "%llu", (unsigned long long)x->dims[0]);
        else snprintf(want, sizeof want, "%llu,%llu", (unsigned long long)x->dims[0], (unsigned long long)x->dims[1]);
        snprintf(err, n, "tensor %s has shape [%s], the config implies [%s]", x->name, got, want);
        return -1;
    }
    if (t->dtype == ST_OTHER) {
        snprintf(err, n, "tensor %s has dtype %s; supported: F32, F16, BF16", x->name, t->dtype_name);
        return -1;
    }
    return 0;
}

/* n_layers is at most HF_MAX_LAYERS (hf_load_config), so the lists stay small;
 * a checkpoint tensor is matched by binary search, so any count of them is
 * checked in n log n. */
int arch_plan(const hf_config *c, const st_model *m, tensor_plan *p, char *err, size_t n)
{
    expect_list l = {0};
    uint8_t *used = calloc(m->n_tensors ? m->n_tensors : 1, 1);
    memset(p, 0, sizeof *p);
    if (!used || build_expectations(c, m, &l) || !(p->t = calloc(l.n ? l.n : 1, sizeof *p->t))) {
        free(l.e);
        free(used);
        snprintf(err, n, "out of memory");
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < l.n && !rc; i++) {
        const st_tensor *t = st_find(m, l.e[i].name);
        if (!t) {
            snprintf(err, n, "tensor %s is missing from the checkpoint", l.e[i].name);
            rc = -1;
        } else if (!(rc = check_one(&l.e[i], t, err, n))) {
            used[t - m->tensors] = 1;
            plan_tensor *pt = &p->t[p->n++];
            pt->src = t;
            pt->role = l.e[i].role;
            pt->layer = l.e[i].layer;
            pt->conv1d = l.e[i].conv1d;
            pt->rows = pt->conv1d ? t->dims[1] : t->dims[0];
            pt->cols = t->n_dims == 2 ? (pt->conv1d ? t->dims[0] : t->dims[1]) : t->dims[0];
            if (t->n_dims == 1) pt->rows = 1;
        }
    }
    for (size_t i = 0; i < m->n_tensors && !rc; i++) /* everything in the checkpoint is accounted for */
        if (!used[i] && !ignorable(c, m->tensors[i].name)) {
            snprintf(err, n, "tensor %s is not part of a %s model with this config", m->tensors[i].name, c->hf_arch);
            rc = -1;
        }
    free(l.e);
    free(used);
    if (rc) arch_plan_free(p);
    return rc;
}

void arch_plan_free(tensor_plan *p)
{
    free(p->t);
    memset(p, 0, sizeof *p);
}
