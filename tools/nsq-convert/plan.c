/* plan.c - the tensors a checkpoint of this config must have, from the
 * architecture registry (nsqrt.h), with their shapes, matched against the
 * checkpoint. Names stay the Hugging Face names, verbatim. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"

typedef struct {
    char name[160];
    uint64_t dims[2];
    uint32_t n_dims;
    int role, layer;
} expect;

typedef struct {
    expect *e;
    size_t n, cap;
} expect_list;

/* The role of layer L (-1: a global), with its shape as the checkpoint
 * stores it: Conv1D matrices [in][out]. */
static int push(expect_list *l, const nsqrt_config *m, int L, int role, int with_opt)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        expect *e = realloc(l->e, cap * sizeof *e);
        if (!e) return -1;
        l->e = e;
        l->cap = cap;
    }
    expect *x = &l->e[l->n++];
    uint64_t out, in;
    nsqrt_arch_tensor_name(m, L < 0 ? UINT32_MAX : (uint32_t)L, role, with_opt, x->name, sizeof x->name);
    x->n_dims = (uint32_t)nsqrt_arch_role_shape(m, role, &out, &in);
    int swap = nsqrt_arch_role_in_major(m, role);
    x->dims[0] = swap ? in : out;
    x->dims[1] = swap ? out : in;
    x->role = role;
    x->layer = L;
    return 0;
}

static int build_expectations(const hf_config *c, const st_model *st, expect_list *l)
{
    nsqrt_config m;
    hf_model_config(c, &m);
    char probe[160];
    /* GPT-2: the original hub checkpoints have no "transformer." prefix */
    nsqrt_arch_tensor_name(&m, UINT32_MAX, NSQRT_ROLE_EMBED, 0, probe, sizeof probe);
    int with_opt = m.arch->opt_prefix && !st_find(st, probe);
    int rc = 0;
    /* in file order: the embeddings, the layers, then the output's tensors */
    for (int last = 0; last < 2; last++) {
        for (size_t i = 0; i < m.arch->n_globals && !rc; i++) {
            int role = m.arch->globals[i].role, kind = nsqrt_arch_role_kind(role);
            if ((kind != NSQRT_KIND_EMBED && kind != NSQRT_KIND_POS) == last && nsqrt_arch_has_role(&m, role))
                rc = push(l, &m, -1, role, with_opt);
        }
        for (int L = 0; (uint64_t)L < c->n_layers && !rc && !last; L++)
            for (size_t i = 0; i < m.arch->n_layer && !rc; i++)
                if (nsqrt_arch_has_role(&m, m.arch->layer[i].role)) rc = push(l, &m, L, m.arch->layer[i].role, with_opt);
    }
    return rc;
}

/* Checkpoint entries that are buffers, not weights. */
static int ignorable(const hf_config *c, const char *name)
{
    size_t n = strlen(name);
    if (n > 23 && strcmp(name + n - 23, "rotary_emb.inv_freq") == 0) return 1;
    if (c->tied_head && strcmp(name, "lm_head.weight") == 0) return 1; /* a tied copy */
    if ((c->arch->flags & NSQRT_ARCH_CONV1D) && ((n >= 9 && strcmp(name + n - 9, "attn.bias") == 0) ||
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
            pt->kind = nsqrt_arch_role_kind(pt->role);
            pt->layer = l.e[i].layer;
            pt->conv1d = (c->arch->flags & NSQRT_ARCH_CONV1D) && pt->kind == NSQRT_KIND_MATRIX;
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
