/* policy.c - how each tensor is stored: verbatim, uniformly quantized, or
 * tiered by importance (a fixed split per tensor, or a bit budget shared by
 * all layer matrices), plus optional refinement codes. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "nsqrt.h"

double tier_group_bits(uint32_t tier, uint32_t group_size)
{
    return (double)group_size * nsq_tier_bits(tier) + (tier ? 32 : 0); /* f16 scale and minimum */
}

uint32_t policy_group_size(uint32_t wanted, uint64_t cols)
{
    for (uint32_t g = wanted; g >= 32; g /= 2)
        if (cols % g == 0) return g;
    return 0;
}

/* ---- threads ---- */
typedef struct {
    void (*fn)(size_t, void *);
    void *ctx;
} for_job;

static void for_task(void *ctx, uint32_t i)
{
    const for_job *j = ctx;
    j->fn(i, j->ctx);
}

void parallel_for(size_t n, int threads, void (*fn)(size_t i, void *ctx), void *ctx)
{
    for_job j = {fn, ctx};
    nsqrt_pool *p = n > 1 && threads > 1 ? nsqrt_pool_create((uint32_t)(n < (size_t)threads ? n : (size_t)threads)) : NULL;
    if (!p) {
        for (size_t i = 0; i < n; i++) fn(i, ctx);
        return;
    }
    nsqrt_pool_run(p, for_task, &j, (uint32_t)n); /* n counts tensors: far below 2^32 */
    nsqrt_pool_free(p);
}

/* ---- source data ---- */
static uint32_t elem_bytes(st_dtype d) { return d == ST_F32 ? 4 : 2; }
static uint32_t scheme_of(st_dtype d) { return d == ST_F32 ? NSQ_SCHEME_F32 : d == ST_F16 ? NSQ_SCHEME_F16 : NSQ_SCHEME_BF16; }

float *policy_load_matrix(const plan_tensor *t)
{
    uint64_t n = t->rows * t->cols;
    float *w = malloc(n * sizeof *w), *tmp = t->conv1d ? malloc(n * sizeof *tmp) : NULL;
    if (!w || (t->conv1d && !tmp)) {
        free(w);
        free(tmp);
        return NULL;
    }
    if (!t->conv1d) {
        st_to_f32(t->src, 0, n, w);
        return w;
    }
    st_to_f32(t->src, 0, n, tmp); /* [in][out] */
    for (uint64_t r = 0; r < t->rows; r++)
        for (uint64_t c = 0; c < t->cols; c++) w[r * t->cols + c] = tmp[c * t->rows + r];
    free(tmp);
    return w;
}

static int copy_source(const plan_tensor *t, int transpose, encoded *e)
{
    const st_tensor *s = t->src;
    uint32_t es = elem_bytes(s->dtype);
    e->scheme = scheme_of(s->dtype);
    e->size = s->size;
    if (!(e->data = malloc(e->size ? e->size : 1))) return -1;
    if (!transpose) {
        e->n_dims = s->n_dims;
        memcpy(e->dims, s->dims, s->n_dims * sizeof *e->dims);
        memcpy(e->data, s->data, e->size);
        return 0;
    }
    e->n_dims = 2;
    e->dims[0] = t->rows;
    e->dims[1] = t->cols;
    for (uint64_t r = 0; r < t->rows; r++)
        for (uint64_t c = 0; c < t->cols; c++) memcpy(e->data + (r * t->cols + c) * es, s->data + (c * t->rows + r) * es, es);
    return 0;
}

/* ---- per-group statistics ---- */
/* Mean x^2 per input column from calibration, for the layer matrices it covers. */
static const float *col_weights(const plan_tensor *t, const quant_opts *o)
{
    return o->calib && t->kind == NSQRT_KIND_MATRIX ? calib_columns(o->calib, t->role, t->layer, t->cols) : NULL;
}

/* A group's importance: its share of the output energy, sum_j E[x_j^2] w_j^2
 * with calibration, sum_j w_j^2 without. */
static void group_importance(const float *w, uint64_t ng, uint64_t cols, uint32_t G, const float *cw, float *out)
{
    for (uint64_t g = 0; g < ng; g++) {
        const float *h = cw ? cw + (g % (cols / G)) * G : NULL;
        double s = 0;
        for (uint32_t j = 0; j < G; j++) s += (h ? (double)h[j] : 1.0) * w[g * G + j] * w[g * G + j];
        out[g] = (float)s;
    }
}

/* Tier counts of the seed split for ng groups. */
static void split_counts(const double split[3], uint64_t ng, uint64_t n[4])
{
    uint64_t n8 = (uint64_t)llround(split[0] * (double)ng), n84 = (uint64_t)llround((split[0] + split[1]) * (double)ng);
    n[0] = 0, n[1] = n8, n[2] = n84 - n8, n[3] = ng - n84;
}

typedef struct {
    float *score;
    uint64_t g;
} ranked;

static int cmp_ranked(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    float sx = x->score[x->g], sy = y->score[y->g];
    if (sx != sy) return sx > sy ? -1 : 1;
    return x->g < y->g ? -1 : x->g > y->g;
}

/* The seed split: the most important groups at Q8, the next at Q4, the rest at Q2. */
static int split_tiers(const float *score, uint64_t ng, const double split[3], uint8_t *tiers)
{
    ranked *r = malloc(ng * sizeof *r);
    if (!r) return -1;
    for (uint64_t g = 0; g < ng; g++) r[g] = (ranked){(float *)score, g};
    qsort(r, ng, sizeof *r, cmp_ranked);
    uint64_t n[4];
    split_counts(split, ng, n);
    for (uint64_t k = 0; k < ng; k++) tiers[r[k].g] = k < n[1] ? NSQ_TIER_Q8 : k < n[1] + n[2] ? NSQ_TIER_Q4 : NSQ_TIER_Q2;
    free(r);
    return 0;
}

static uint8_t best_tier(const float *err3, uint32_t G, double lambda)
{
    uint8_t best = NSQ_TIER_F16;
    double cost = lambda * tier_group_bits(NSQ_TIER_F16, G); /* f16 error taken as 0 */
    for (uint8_t t = 1; t < 4; t++) {
        double c = err3[t - 1] + lambda * tier_group_bits(t, G);
        if (c < cost) {
            cost = c;
            best = t;
        }
    }
    return best;
}

/* ---- --bpw: one budget for all layer matrices ---- */
static uint32_t group_size_for(const plan_tensor *t, const quant_opts *o)
{
    const tensor_rule *r = recipe_match(o, t->src->name);
    return policy_group_size(r && r->group_size ? r->group_size : o->group_size, t->cols);
}

/* Layer matrices whose tiers the budget chooses (a recipe rule fixes the others). */
static int quantized_matrix(const plan_tensor *t, const quant_opts *o)
{
    const tensor_rule *r = recipe_match(o, t->src->name);
    return !o->lossless && t->kind == NSQRT_KIND_MATRIX && !(r && (r->has_policy || r->has_split)) && group_size_for(t, o);
}

uint64_t policy_fixed_bytes(const plan_tensor *t, const quant_opts *o)
{
    const tensor_rule *r = recipe_match(o, t->src->name);
    uint32_t G = group_size_for(t, o);
    uint64_t ng = G ? t->rows * t->cols / G : 0, n[4] = {0, 0, 0, 0};
    if (o->lossless || !G || (r && r->has_policy && r->policy == KEEP_SOURCE) || (t->kind != NSQRT_KIND_MATRIX && !(r && r->has_policy)))
        return t->src->size;
    if (r && r->has_policy && r->policy == KEEP_F16) return 2 * t->src->n_elements;
    if (r && r->has_policy) n[r->policy == UNIFORM_Q8 ? 1 : r->policy == UNIFORM_Q4 ? 2 : 3] = ng;
    else split_counts(r && r->has_split ? r->split : o->split, ng, n);
    return nsq_tiered_size(ng, G, n);
}

typedef struct {
    const tensor_plan *p;
    const quant_opts *o;
    bpw_plan *bp;
    atomic_int failed;
} alloc_ctx;

static void measure_tensor(size_t i, void *arg)
{
    alloc_ctx *a = arg;
    const plan_tensor *t = &a->p->t[i];
    if (!quantized_matrix(t, a->o)) return;
    uint32_t G = group_size_for(t, a->o);
    float *w = policy_load_matrix(t);
    st_release(t->src); /* read again when encoded; meanwhile the pages need not stay resident */
    if (!w) {
        a->failed = 1;
        return;
    }
    float *err = a->bp->err + 3 * a->bp->first_group[i];
    const float *cw = col_weights(t, a->o);
    for (uint64_t g = 0; g < t->rows * t->cols / G; g++)
        for (uint8_t k = 1; k < 4; k++)
            err[3 * g + k - 1] = (float)tiered_group_error(w + g * G, cw ? cw + (g % (t->cols / G)) * G : NULL, G, k);
    free(w);
}

/* Exact bytes of the layer blocks' tensors if every group takes its best tier at lambda. */
static double body_bits(const tensor_plan *p, const quant_opts *o, const bpw_plan *bp, double lambda)
{
    double bits = 0;
    for (size_t i = 0; i < p->n; i++) {
        const plan_tensor *t = &p->t[i];
        if (t->layer < 0) continue;
        if (!quantized_matrix(t, o)) {
            bits += 8.0 * (double)policy_fixed_bytes(t, o);
            continue;
        }
        uint32_t G = group_size_for(t, o);
        uint64_t ng = t->rows * t->cols / G, n[4] = {0, 0, 0, 0};
        const float *err = bp->err + 3 * bp->first_group[i];
        for (uint64_t g = 0; g < ng; g++) n[best_tier(err + 3 * g, G, lambda)]++;
        bits += 8.0 * (double)nsq_tiered_size(ng, G, n);
    }
    return bits;
}

int policy_measure(const tensor_plan *p, const quant_opts *o, bpw_plan *bp, char *err, size_t n)
{
    memset(bp, 0, sizeof *bp);
    uint64_t groups = 0;
    if (!(bp->first_group = calloc(p->n ? p->n : 1, sizeof *bp->first_group))) goto nomem;
    for (size_t i = 0; i < p->n; i++) {
        const plan_tensor *t = &p->t[i];
        if (t->layer >= 0) bp->elements += t->src->n_elements;
        bp->first_group[i] = groups;
        if (quantized_matrix(t, o)) groups += t->rows * t->cols / group_size_for(t, o);
    }
    if (!(bp->err = malloc(3 * (groups ? groups : 1) * sizeof *bp->err))) goto nomem;
    alloc_ctx a = {p, o, bp, 0};
    parallel_for(p->n, o->threads, measure_tensor, &a);
    if (a.failed) goto nomem;
    return 0;
nomem:
    snprintf(err, n, "out of memory measuring quantization errors");
    bpw_plan_free(bp);
    return -1;
}

int policy_budgeted(const tensor_plan *p, size_t i, const quant_opts *o) { return quantized_matrix(&p->t[i], o); }

double policy_tensor_error(const tensor_plan *p, size_t i, const quant_opts *o, const bpw_plan *bp, uint32_t tier)
{
    const plan_tensor *t = &p->t[i];
    uint64_t ng = t->rows * t->cols / group_size_for(t, o);
    double e = 0;
    for (uint64_t g = 0; g < ng; g++) e += bp->err[3 * (bp->first_group[i] + g) + tier - 1];
    return e;
}

void policy_scale_errors(const tensor_plan *p, size_t i, const quant_opts *o, bpw_plan *bp, double factor)
{
    const plan_tensor *t = &p->t[i];
    uint64_t ng = t->rows * t->cols / group_size_for(t, o);
    float *e = bp->err + 3 * bp->first_group[i];
    for (uint64_t k = 0; k < 3 * ng; k++) e[k] = (float)(e[k] * factor);
}

int policy_budget(const tensor_plan *p, const quant_opts *o, bpw_plan *bp, char *err, size_t n)
{
    double budget = o->bpw * (double)bp->elements, lo = -60, hi = 40; /* log10 lambda */
    if (body_bits(p, o, bp, pow(10, hi)) > budget) {
        snprintf(err, n, "--bpw %.3f is below what this model can reach (%.3f with every group at 2 bits)", o->bpw,
                 body_bits(p, o, bp, pow(10, hi)) / (double)bp->elements);
        return -1;
    }
    for (int it = 0; it < 100; it++) { /* the smallest lambda (most bits) within budget */
        double mid = (lo + hi) / 2;
        if (body_bits(p, o, bp, pow(10, mid)) > budget) lo = mid;
        else hi = mid;
    }
    bp->lambda = pow(10, hi);
    bp->predicted_bpw = body_bits(p, o, bp, bp->lambda) / (double)bp->elements;
    return 0;
}

int policy_allocate(const tensor_plan *p, const quant_opts *o, bpw_plan *bp, char *err, size_t n)
{
    if (policy_measure(p, o, bp, err, n)) return -1;
    if (!policy_budget(p, o, bp, err, n)) return 0;
    bpw_plan_free(bp);
    return -1;
}

void bpw_plan_free(bpw_plan *bp)
{
    free(bp->err);
    free(bp->first_group);
    memset(bp, 0, sizeof *bp);
}

/* ---- encoding ---- */
static int encode_matrix(const tensor_plan *p, size_t i, const quant_opts *o, const bpw_plan *bp, uint8_t uniform,
                         encoded *e)
{
    const plan_tensor *t = &p->t[i];
    const tensor_rule *rule = recipe_match(o, t->src->name);
    uint32_t G = group_size_for(t, o);
    uint64_t ng = t->rows * t->cols / G;
    float *w = policy_load_matrix(t);
    uint8_t *tiers = malloc(ng ? ng : 1);
    e->group_stats = malloc((ng ? ng : 1) * sizeof *e->group_stats);
    int rc = !w || !tiers || !e->group_stats ? -1 : 0;
    if (!rc) {
        group_importance(w, ng, t->cols, G, col_weights(t, o), e->group_stats);
        if (uniform) memset(tiers, uniform, ng);
        else if (bp && quantized_matrix(t, o))
            for (uint64_t g = 0; g < ng; g++) tiers[g] = best_tier(bp->err + 3 * (bp->first_group[i] + g), G, bp->lambda);
        else rc = split_tiers(e->group_stats, ng, rule && rule->has_split ? rule->split : o->split, tiers);
    }
    if ((e->col_stats = col_weights(t, o))) e->n_col_stats = t->cols;
    if (!rc) rc = encode_tiered(w, t->rows, t->cols, G, tiers, e->col_stats, uniform ? 0 : o->refine_bits, e);
    free(w);
    free(tiers);
    return rc;
}

static uint8_t uniform_tier(dense_policy d)
{
    return d == UNIFORM_Q8 ? NSQ_TIER_Q8 : d == UNIFORM_Q4 ? NSQ_TIER_Q4 : d == UNIFORM_Q2 ? NSQ_TIER_Q2 : 0;
}

static int encode_f16(const plan_tensor *t, encoded *e)
{
    uint64_t n = t->src->n_elements;
    float *w = t->conv1d ? policy_load_matrix(t) : malloc(n * sizeof *w);
    e->scheme = NSQ_SCHEME_F16;
    e->n_dims = t->src->n_dims;
    memcpy(e->dims, t->src->dims, e->n_dims * sizeof *e->dims);
    if (t->conv1d) e->dims[0] = t->rows, e->dims[1] = t->cols;
    e->size = 2 * n;
    if (!w || !(e->data = malloc(e->size))) {
        free(w);
        return -1;
    }
    if (!t->conv1d) st_to_f32(t->src, 0, n, w);
    for (uint64_t k = 0; k < n; k++) {
        uint16_t h = nsq_f32_to_f16(w[k]);
        e->data[2 * k] = (uint8_t)h;
        e->data[2 * k + 1] = (uint8_t)(h >> 8);
    }
    free(w);
    return 0;
}

int policy_encode(const tensor_plan *p, size_t i, const quant_opts *o, const bpw_plan *bp, encoded *e, char *err, size_t n)
{
    const plan_tensor *t = &p->t[i];
    const tensor_rule *rule = recipe_match(o, t->src->name);
    memset(e, 0, sizeof *e);
    int dense = t->kind == NSQRT_KIND_EMBED || t->kind == NSQRT_KIND_POS || t->kind == NSQRT_KIND_HEAD;
    dense_policy d = rule && rule->has_policy ? rule->policy : t->kind == NSQRT_KIND_HEAD ? o->head : o->embed;
    dense |= rule && rule->has_policy;
    int vector = t->src->n_dims != 2, rc;
    if (dense && vector && d != KEEP_SOURCE && d != KEEP_F16) {
        snprintf(err, n, "tensor %s: a recipe can quantize only 2-D tensors", t->src->name);
        return -1;
    }
    if (o->probe >= 0 && o->lattice)
        rc = (size_t)o->probe == i ? lat_probe_encode(t, o->lat, e) : copy_source(t, t->conv1d, e);
    else if (o->probe >= 0)
        rc = (size_t)o->probe == i ? encode_matrix(p, i, o, NULL, NSQ_TIER_Q4, e) : copy_source(t, t->conv1d, e);
    else if (o->lat && o->lat->type[i] >= 0) {
        if (!(rc = lat_payload(o->lat, i, t, e)) && (e->col_stats = col_weights(t, o))) e->n_col_stats = t->cols;
    }
    else if (o->lossless || (!dense && (t->kind == NSQRT_KIND_NORM || t->kind == NSQRT_KIND_BIAS)) || (dense && d == KEEP_SOURCE))
        rc = copy_source(t, !o->lossless && t->conv1d, e);
    else if (dense && d == KEEP_F16)
        rc = encode_f16(t, e);
    else if (!group_size_for(t, o))
        rc = copy_source(t, t->conv1d, e); /* no group size divides the rows */
    else
        rc = encode_matrix(p, i, o, bp, dense ? uniform_tier(d) : 0, e);
    if (rc == -1) snprintf(err, n, "tensor %s: out of memory", t->src->name);
    else if (rc) snprintf(err, n, "tensor %s: a value is outside the f16 range of the scales", t->src->name);
    if (rc) encoded_free(e);
    return rc ? -1 : 0;
}

void encoded_free(encoded *e)
{
    free(e->data);
    free(e->refine);
    free(e->group_stats);
    memset(e, 0, sizeof *e);
}
