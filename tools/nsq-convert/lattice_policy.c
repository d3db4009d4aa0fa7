/* lattice_policy.c - LATTICE for the layer matrices (convert.h): each
 * matrix's type under the --bpw budget, chosen by predicted damage, and the
 * encoding, layer by layer with the calibration's second moments. Payloads
 * wait in an unnamed spill file next to the output until their block is
 * written, so memory holds one layer's work at a time. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "convert.h"
#include "hessian.h"
#include "pipeline.h"
#include "lattice.h"

#define SAMPLE_ROWS 64 /* rows coded to measure a matrix's error at each type */

int lat_budgeted(const plan_tensor *t, const quant_opts *o)
{
    const tensor_rule *r = recipe_match(o, t->src->name);
    return o->lattice && !o->lossless && t->kind == NSQRT_KIND_MATRIX && !(r && (r->has_policy || r->has_split)) &&
           lat_block(t->cols);
}

typedef struct {
    const tensor_plan *p;
    const quant_opts *o;
    lat_book *b;
    atomic_int failed;
    atomic_long bad; /* a matrix with a weight LATTICE cannot hold, or -1 */
} measure_job;

/* Seeds the signs of one layer's input: matrices reading it share them. */
static uint64_t site_seed(int layer, int input) { return 0x6e73716c61747469ull ^ ((uint64_t)layer << 8 | (uint64_t)input); }

/* The second moment of matrix t's input that b keeps, or NULL. */
static const float *kept_moment(const lat_book *b, const plan_tensor *t)
{
    int k = calib_input(t->role);
    if (!b || !b->moments || k < 0 || t->layer < 0 || (uint64_t)t->layer >= b->n_layers || b->moment_dim[k] != t->cols) return NULL;
    return b->moments[(size_t)t->layer * CALIB_N_INPUTS + (size_t)k];
}

/* sum over rows s_r h s_r^T, or sum s^2 without h. */
static double weighted_norm(const float *s, uint64_t nr, uint64_t n, const float *h)
{
    double norm = 0;
    for (uint64_t r = 0; r < nr; r++)
        for (uint64_t a = 0; a < n; a++) {
            double hs = 0;
            if (!h) hs = s[r * n + a];
            for (uint64_t c = 0; h && c < n; c++) hs += (double)h[a * n + c] * s[r * n + c];
            norm += s[r * n + a] * hs;
        }
    return norm;
}

/* Each sequence of types is a chain with each of these blends: how much a
 * depth's coding leans to the deeper depths' targets trades its error for
 * theirs, and matrices differ in which of their depths matter more. */
static const float blends[] = {0.35f, 0.7f, 1.4f};

/* The blends of each sequence: one, unused, without levels. */
static uint32_t n_blends(const lat_book *b) { return b->n_levels ? (uint32_t)(sizeof blends / sizeof blends[0]) : 1; }

/* Chain c's type at each depth. */
static const int *chain_seq(const lat_book *b, uint32_t c) { return b->chains + (size_t)(c / n_blends(b)) * (b->n_levels + 1); }

/* The type that codes chain c: its deepest, in a pass for each depth that
 * adds stages, so that stages no depth stops between are coded together. */
static lat_type chain_type(const lat_book *b, uint32_t c)
{
    const int *ch = chain_seq(b, c);
    lat_type t = b->types[ch[b->n_levels]];
    t.split = 0;
    for (uint32_t k = 0; k < b->n_levels; k++)
        if (b->types[ch[k]].n_stages < t.n_stages) t.split |= 1u << b->types[ch[k]].n_stages;
    t.blend = t.split ? blends[c % n_blends(b)] : 0; /* one pass: nothing to blend */
    return t;
}

static double *chain_err(const lat_book *b, size_t i, uint32_t c)
{
    return b->cerr + ((size_t)i * b->n_chains + c) * (b->n_levels + 1);
}

/* Relative squared error of each chain at each depth on an even sample of
 * the rows: coded as the final encoding codes them, with feedback and
 * weighed by the inputs' second moment where b keeps it, else plainly: how
 * the chains compare on this matrix. Chains of one type and pass structure
 * share a coding; a type alone is the chain of that type at every depth. */
static int measure_chains(const lat_site *site, const float *s, uint64_t nr, uint64_t cols, double norm, lat_book *b,
                          size_t i)
{
    uint32_t K = b->n_levels, n_seen = 0;
    struct {
        int deepest;
        uint32_t split;
        float blend;
        double e[NSQ_LATTICE_MAX_STAGES];
    } *seen = malloc(b->n_chains * sizeof *seen);
    int rc = seen ? 0 : -1;
    for (uint32_t c = 0; c < b->n_chains && !rc; c++) {
        const int *ch = chain_seq(b, c);
        lat_type tt = chain_type(b, c);
        uint32_t v = 0;
        while (v < n_seen && (seen[v].deepest != ch[K] || seen[v].split != tt.split || seen[v].blend != tt.blend)) v++;
        if (v == n_seen) {
            uint8_t *out = malloc(lat_size(&tt, nr, cols));
            seen[v].deepest = ch[K], seen[v].split = tt.split, seen[v].blend = tt.blend;
            rc = out ? lat_encode(site, s, nr, &tt, 1, out, seen[v].e) : -1;
            free(out);
            n_seen++;
        }
        double *e = chain_err(b, i, c);
        int alone = 1;
        for (uint32_t k = 0; k <= K && !rc; k++) { /* depth k ends pass: the splits in 1 .. its stages - 1 */
            uint32_t ns = b->types[ch[k]].n_stages, pass = (uint32_t)__builtin_popcount(tt.split & ((1u << ns) - 2));
            e[k] = norm > 0 ? seen[v].e[pass] / norm : 0;
            alone &= ch[k] == ch[K];
        }
        if (alone && !rc) b->err[i * b->n_types + (size_t)ch[K]] = e[K];
    }
    free(seen);
    return rc;
}

/* With levels each matrix is coded 100 to 180 ways (its chains with one to
 * three levels, each blend): matrices wider than 1024 columns, whose rows
 * cost cols^2 each, sample fewer rows, at least 16 (tens of thousands of
 * weights; the chains are compared on the same rows). */
static uint64_t sample_rows(const lat_book *b, uint64_t cols)
{
    if (!b->n_levels || cols <= 1024) return SAMPLE_ROWS;
    double r = SAMPLE_ROWS * (1024.0 / (double)cols) * (1024.0 / (double)cols);
    return r > 16 ? (uint64_t)r : 16;
}

static void measure_one(size_t i, void *arg)
{
    measure_job *j = arg;
    const plan_tensor *t = &j->p->t[i];
    if (!lat_budgeted(t, j->o)) return;
    uint64_t want = sample_rows(j->b, t->cols), step = t->rows > want ? t->rows / want : 1, nr = t->rows / step;
    float *w = policy_load_matrix(t), *s = malloc(nr * t->cols * sizeof *s);
    const float *h = kept_moment(j->b, t);
    lat_site site;
    char err[128];
    st_release(t->src);
    if (!w || !s || lat_site_init(&site, t->cols, site_seed(t->layer, calib_input(t->role)), h, err, sizeof err)) {
        j->failed = 1;
        free(w), free(s);
        return;
    }
    for (uint64_t r = 0; r < nr; r++) memcpy(s + r * t->cols, w + r * step * t->cols, t->cols * sizeof *s);
    for (uint64_t k = 0; k < t->rows * t->cols; k++)
        if (!isfinite(w[k])) j->bad = (long)i;
    if (j->bad != (long)i) {
        int rc = measure_chains(&site, s, nr, t->cols, weighted_norm(s, nr, t->cols, h), j->b, i);
        if (rc == -2) j->bad = (long)i;
        else if (rc) j->failed = 1;
    }
    lat_site_free(&site);
    free(w), free(s);
}

/* Every chain of the types of K + 1 depths, each a prefix of the next, into
 * out (when not NULL); their count. */
static uint32_t all_chains(const lat_book *b, int *out)
{
    uint32_t n = 0, K = b->n_levels;
    int cur[LAT_MAX_LEVELS + 1], depth = 0;
    cur[0] = -1;
    while (depth >= 0) { /* depth-first over the prefix tree */
        if (++cur[depth] >= (int)b->n_types) {
            depth--;
            continue;
        }
        if (depth && !lat_prefix(&b->types[cur[depth - 1]], &b->types[cur[depth]])) continue;
        if ((uint32_t)depth == K) {
            if (out) memcpy(out + (size_t)n * (K + 1), cur, (K + 1) * sizeof *cur);
            n++;
            continue;
        }
        cur[depth + 1] = -1;
        depth++;
    }
    return n;
}

int lat_measure(const tensor_plan *p, const quant_opts *o, lat_book *b, char *err, size_t n)
{
    b->fd = -1;
    b->n = p->n;
    b->n_levels = o->n_levels;
    b->types = o->n_levels ? lat_nested : lat_types;
    b->n_types = o->n_levels ? lat_n_nested : lat_n_types;
    b->type = malloc((p->n ? p->n : 1) * sizeof *b->type);
    b->chain = calloc((p->n ? p->n : 1) * (o->n_levels + 1), sizeof *b->chain);
    b->pick = calloc(p->n ? p->n : 1, sizeof *b->pick);
    b->n_chains = all_chains(b, NULL) * n_blends(b);
    b->chains = malloc(b->n_chains / n_blends(b) * (o->n_levels + 1) * sizeof *b->chains);
    b->err = calloc((p->n ? p->n : 1) * b->n_types, sizeof *b->err);
    b->cerr = calloc((p->n ? p->n : 1) * b->n_chains * (o->n_levels + 1), sizeof *b->cerr);
    b->bits = calloc((p->n ? p->n : 1) * b->n_types, sizeof *b->bits);
    b->off = calloc(p->n ? p->n : 1, sizeof *b->off);
    b->size = calloc(p->n ? p->n : 1, sizeof *b->size);
    if (!b->type || !b->chain || !b->pick || !b->chains || !b->err || !b->cerr || !b->bits || !b->off || !b->size) goto nomem;
    all_chains(b, b->chains);
    for (size_t i = 0; i < p->n; i++)
        for (uint32_t t = 0; t < b->n_types && lat_budgeted(&p->t[i], o); t++)
            b->bits[i * b->n_types + t] = 8.0 * (double)lat_size(&b->types[t], p->t[i].rows, p->t[i].cols);
    for (size_t i = 0; i < p->n; i++) {
        b->type[i] = -1;
        if (p->t[i].layer >= 0) b->elements += p->t[i].src->n_elements;
    }
    measure_job j = {p, o, b, 0, -1};
    parallel_for(p->n, o->threads, measure_one, &j);
    if (j.bad >= 0 && !j.failed) {
        snprintf(err, n, "tensor %s: a weight is not finite or too large for LATTICE's f16 scales", p->t[j.bad].src->name);
        lat_book_free(b);
        return -1;
    }
    if (!j.failed) return 0;
nomem:
    lat_book_free(b);
    return snprintf(err, n, "out of memory measuring quantization errors"), -1;
}

void lat_scale(lat_book *b, size_t i, double factor)
{
    for (uint32_t t = 0; t < b->n_types; t++) b->err[i * b->n_types + t] *= factor;
    for (uint32_t k = 0; k < b->n_chains * (b->n_levels + 1); k++) chain_err(b, i, 0)[k] *= factor;
}

double lat_error(const lat_book *b, size_t i, uint32_t type) { return b->err[i * b->n_types + type]; }

double lat_depth_damage(const lat_book *b, size_t i, uint32_t k)
{
    const double *e = chain_err(b, i, (uint32_t)b->pick[i]);
    return b->type[i] < 0 ? 0 : fmax(0, e[k] - e[b->n_levels]);
}

/* Bits of matrix i at type ty. */
static double type_bits(const lat_book *b, size_t i, int ty)
{
    return b->bits[i * b->n_types + (size_t)ty];
}

/* Bits of the layer blocks when each budgeted matrix takes type[i] (at stride apart). */
static double body_bits(const tensor_plan *p, const quant_opts *o, const lat_book *b, const int *type, size_t stride)
{
    double bits = 0;
    for (size_t i = 0; i < p->n; i++) {
        const plan_tensor *t = &p->t[i];
        if (t->layer < 0) continue;
        bits += lat_budgeted(t, o) ? type_bits(b, i, type[i * stride]) : 8.0 * (double)policy_fixed_bytes(t, o);
    }
    return bits;
}

/* Each matrix's type minimising damage + lambda * bits. */
static void choose(const tensor_plan *p, const quant_opts *o, const lat_book *b, double lambda, int *type)
{
    for (size_t i = 0; i < p->n; i++) {
        if (!lat_budgeted(&p->t[i], o)) continue;
        double best = INFINITY;
        type[i] = 0;
        for (uint32_t t = 0; t < b->n_types; t++) {
            double c = lat_error(b, i, t) + lambda * type_bits(b, i, (int)t);
            if (c < best) best = c, type[i] = (int)t;
        }
    }
}

/* After the Lagrangian choice, the bits left go to the upgrades that save
 * the most damage per bit, while they fit. */
static void fill(const tensor_plan *p, const quant_opts *o, const lat_book *b, double budget, int *type)
{
    for (;;) {
        double have = body_bits(p, o, b, type, 1), best = 0;
        size_t bi = 0;
        int bt = -1;
        for (size_t i = 0; i < p->n; i++) {
            if (!lat_budgeted(&p->t[i], o)) continue;
            double s0 = type_bits(b, i, type[i]);
            for (uint32_t t = 0; t < b->n_types; t++) {
                double ds = type_bits(b, i, (int)t) - s0;
                double gain = lat_error(b, i, (uint32_t)type[i]) - lat_error(b, i, t);
                if (ds > 0 && gain > 0 && have + ds <= budget && gain / ds > best) best = gain / ds, bi = i, bt = (int)t;
            }
        }
        if (bt < 0) return;
        type[bi] = bt;
    }
}

/* Each matrix's type for one budget: the least lambda that fits (log10
 * lambda bisected in -60..40), then the bits left by fill. */
static void fit_types(const tensor_plan *p, const quant_opts *o, const lat_book *b, double budget, int *type)
{
    double lo = -60, hi = 40;
    for (int it = 0; it < 100; it++) {
        double mid = (lo + hi) / 2;
        choose(p, o, b, pow(10, mid), type);
        if (body_bits(p, o, b, type, 1) > budget) lo = mid;
        else hi = mid;
    }
    choose(p, o, b, pow(10, hi), type);
    fill(p, o, b, budget, type);
}

/* ---- refinement levels ----
 * Each matrix takes a chain of types, one per depth, each a prefix of the
 * next; the chains minimise the sum over depths of weight_k * damage +
 * lambda_k * bits, with each lambda_k set so that depth k fits its budget.
 * A chain's damages are measured coded as that chain: where a depth adds no
 * stages, the stages around it are coded together. */

static void set_pick(lat_book *b, size_t i, uint32_t c)
{
    b->pick[i] = (int)c;
    memcpy(b->chain + i * (b->n_levels + 1), chain_seq(b, c), (b->n_levels + 1) * sizeof *b->chain);
}

static double chain_bits(const lat_book *b, size_t i, uint32_t c, uint32_t k)
{
    return type_bits(b, i, chain_seq(b, c)[k]);
}

/* Weighed damage of matrix i as chain c less as chain c0. */
static double chain_loss(const lat_book *b, size_t i, uint32_t c, uint32_t c0, const double *weight)
{
    double d = 0;
    for (uint32_t k = 0; k <= b->n_levels; k++) d += weight[k] * (chain_err(b, i, c)[k] - chain_err(b, i, c0)[k]);
    return d;
}

static int block_of(const lat_book *b, const plan_tensor *t)
{
    return t->layer / (int)(b->layers_per_block ? b->layers_per_block : 1);
}

/* The levels (bit l - 1 for level l) at which a matrix of types seq adds stages. */
static uint32_t grows(const lat_book *b, const int *seq)
{
    uint32_t m = 0;
    for (uint32_t k = 1; k <= b->n_levels; k++) m |= (uint32_t)(b->types[seq[k]].n_stages > b->types[seq[k - 1]].n_stages) << (k - 1);
    return m;
}

/* Whether matrix i as chain c leaves its block's levels without a gap. A
 * block stores only the levels some matrix of it adds stages to, numbered
 * from 1 (section 7.7): with a gap, the block's level l would hold a deeper
 * depth's stages, and a reader that loads l levels would take more than
 * depth l's budget. */
static int gapless(const tensor_plan *p, const quant_opts *o, const lat_book *b, size_t i, uint32_t c)
{
    uint32_t used = grows(b, chain_seq(b, c));
    for (size_t j = 0; j < p->n; j++)
        if (j != i && lat_budgeted(&p->t[j], o) && block_of(b, &p->t[j]) == block_of(b, &p->t[i]))
            used |= grows(b, b->chain + j * (b->n_levels + 1));
    return (used & (used + 1)) == 0;
}

static double chain_cost(const lat_book *b, size_t i, uint32_t c, const double *weight, const double *lambda)
{
    double cost = 0;
    for (uint32_t k = 0; k <= b->n_levels; k++) cost += weight[k] * chain_err(b, i, c)[k] + lambda[k] * chain_bits(b, i, c, k);
    return cost;
}

/* Each matrix's chain of least cost; then, in a block with a gap between
 * its levels, the change of one of its matrices that closes it for the
 * least added cost, until none has. */
static void choose_chains(const tensor_plan *p, const quant_opts *o, lat_book *b, const double *weight, const double *lambda)
{
    for (size_t i = 0; i < p->n; i++) {
        if (!lat_budgeted(&p->t[i], o)) continue;
        double best = INFINITY;
        uint32_t bi = 0;
        for (uint32_t c = 0; c < b->n_chains; c++) {
            double cost = chain_cost(b, i, c, weight, lambda);
            if (cost < best) best = cost, bi = c;
        }
        set_pick(b, i, bi);
    }
    for (size_t i = 0; i < p->n; i++) {
        if (!lat_budgeted(&p->t[i], o) || gapless(p, o, b, i, (uint32_t)b->pick[i])) continue;
        double best = INFINITY;
        size_t bj = i;
        uint32_t bc = (uint32_t)b->pick[i];
        for (size_t j = 0; j < p->n; j++) {
            if (!lat_budgeted(&p->t[j], o) || block_of(b, &p->t[j]) != block_of(b, &p->t[i])) continue;
            double now = chain_cost(b, j, (uint32_t)b->pick[j], weight, lambda);
            for (uint32_t c = 0; c < b->n_chains; c++) {
                double d = chain_cost(b, j, c, weight, lambda) - now;
                if (d < best && gapless(p, o, b, j, c)) best = d, bj = j, bc = c;
            }
        }
        set_pick(b, bj, bc);
    }
}

/* The change of one matrix's chain that, at depth k, saves (shrink) or
 * spends the most weighed damage per bit: shrinking, one with fewer bits at
 * k and no more elsewhere; filling, one with more bits at k that fit in
 * room and the same elsewhere. 0 when there is none. */
static int best_move(const tensor_plan *p, const quant_opts *o, lat_book *b, const double *weight, uint32_t k, int shrink,
                     double room, size_t *bi, uint32_t *bc)
{
    double best = shrink ? INFINITY : 0;
    int found = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (!lat_budgeted(&p->t[i], o)) continue;
        uint32_t c0 = (uint32_t)b->pick[i];
        for (uint32_t c = 0; c < b->n_chains; c++) {
            double ds = chain_bits(b, i, c, k) - chain_bits(b, i, c0, k);
            int ok = shrink ? ds < 0 : ds > 0 && ds <= room;
            for (uint32_t q = 0; q <= b->n_levels && ok; q++) {
                double dq = chain_bits(b, i, c, q) - chain_bits(b, i, c0, q);
                ok = q == k || (shrink ? dq <= 0 : dq == 0);
            }
            if (!ok) continue;
            double r = chain_loss(b, i, c, c0, weight) / fabs(ds);
            if ((shrink ? r < best : -r > best) && gapless(p, o, b, i, c)) best = shrink ? r : -r, *bi = i, *bc = c, found = 1;
        }
    }
    return found;
}

/* Where the lambdas cycle with a depth over its budget: the cheapest
 * downgrades, from depth 0 up, until each fits. Fewer bits never unfit a
 * depth done. */
static int shrink_nested(const tensor_plan *p, const quant_opts *o, lat_book *b, const double *weight, const double *budget)
{
    for (uint32_t k = 0; k <= b->n_levels; k++)
        while (body_bits(p, o, b, b->chain + k, b->n_levels + 1) > budget[k]) {
            size_t i;
            uint32_t c;
            if (!best_move(p, o, b, weight, k, 1, 0, &i, &c)) return -1;
            set_pick(b, i, c);
        }
    return 0;
}

/* The bits each depth has left, deepest first, to the upgrades that save
 * the most weighed damage per bit, while they fit. */
static void fill_nested(const tensor_plan *p, const quant_opts *o, lat_book *b, const double *weight, const double *budget)
{
    for (uint32_t k = b->n_levels + 1; k-- > 0;)
        for (;;) {
            size_t i;
            uint32_t c;
            double room = budget[k] - body_bits(p, o, b, b->chain + k, b->n_levels + 1);
            if (!best_move(p, o, b, weight, k, 0, room, &i, &c)) break;
            set_pick(b, i, c);
        }
}

/* The least damage of types chosen for one depth's budget alone, unnested. */
static double best_damage(const tensor_plan *p, const quant_opts *o, const lat_book *b, double budget, int *type)
{
    double damage = 0;
    fit_types(p, o, b, budget, type);
    for (size_t i = 0; i < p->n; i++)
        if (lat_budgeted(&p->t[i], o)) damage += lat_error(b, i, (uint32_t)type[i]);
    return damage;
}

/* Chains whose depth k weighs weight[k], each lambda_k by bisection, the
 * others held, for a few rounds: the depths may still not all fit. */
static void lagrange_chains(const tensor_plan *p, const quant_opts *o, lat_book *b, const double *weight, const double *budget)
{
    uint32_t K = b->n_levels;
    double lambda[LAT_MAX_LEVELS + 1];
    for (uint32_t k = 0; k <= K; k++) lambda[k] = pow(10, 40);
    for (int round = 0, fits = 0; round < 20 && !fits; round++) {
        for (uint32_t k = 0; k <= K; k++) {
            double lo = -60, hi = 40;
            for (int it = 0; it < 60; it++) {
                lambda[k] = pow(10, (lo + hi) / 2);
                choose_chains(p, o, b, weight, lambda);
                if (body_bits(p, o, b, b->chain + k, K + 1) > budget[k]) lo = (lo + hi) / 2;
                else hi = (lo + hi) / 2;
            }
            lambda[k] = pow(10, hi);
        }
        choose_chains(p, o, b, weight, lambda);
        fits = 1;
        for (uint32_t k = 0; k <= K; k++) fits &= body_bits(p, o, b, b->chain + k, K + 1) <= budget[k];
    }
}

/* Each depth's damage is weighed against the least its budget allows, so
 * that every depth comes as near it as nesting lets: plain sums let the
 * base's damage, several times the deepest's, decide the chains (tiny-llama,
 * 2.5,3.5,4.5: the deepest 1.49 x a direct file, 1.18 x when weighed). The
 * deepest depth, whose stages come after the most nesting, weighs
 * DEEPEST_WEIGHT times that (tiny-llama: KLD 1.10, 1.11, 1.19 x direct files
 * at depths 0, 1, 2 become 1.11, 1.14, 1.14 x; 1.2 and 1.3 x: 1.10, 1.14,
 * 1.16 x). */
#define DEEPEST_WEIGHT 1.6
static int budget_nested(const tensor_plan *p, const quant_opts *o, lat_book *b, char *err, size_t n)
{
    uint32_t K = b->n_levels;
    double budget[LAT_MAX_LEVELS + 1], weight[LAT_MAX_LEVELS + 1];
    int *type = malloc((p->n ? p->n : 1) * sizeof *type);
    if (!type) return snprintf(err, n, "out of memory"), -1;
    for (uint32_t k = 0; k <= K; k++) {
        budget[k] = (k ? o->level_bpw[k - 1] : o->bpw) * (double)b->elements;
        double least = best_damage(p, o, b, budget[k], type);
        weight[k] = (least > 0 ? 1 / least : 1) * (k && k == K ? DEEPEST_WEIGHT : 1);
    }
    free(type);
    lagrange_chains(p, o, b, weight, budget);
    if (shrink_nested(p, o, b, weight, budget)) return snprintf(err, n, "--bpw: no nested choice of types fits every depth's budget"), -1;
    fill_nested(p, o, b, weight, budget);
    for (size_t i = 0; i < p->n; i++)
        if (lat_budgeted(&p->t[i], o)) b->type[i] = b->chain[i * (K + 1) + K];
    return 0;
}

int lat_budget(const tensor_plan *p, const quant_opts *o, lat_book *b, char *err, size_t n)
{
    double budget = o->bpw * (double)b->elements;
    choose(p, o, b, pow(10, 40), b->type);
    if (body_bits(p, o, b, b->type, 1) > budget) {
        snprintf(err, n, "--bpw %.3f is below what this model can reach (%.3f with every matrix at its fewest bits)", o->bpw,
                 body_bits(p, o, b, b->type, 1) / (double)b->elements);
        return -1;
    }
    if (o->n_levels) return budget_nested(p, o, b, err, n);
    fit_types(p, o, b, budget, b->type);
    return 0;
}

/* ---- encoding ---- */

typedef struct {
    const tensor_plan *p;
    const quant_opts *o;
    lat_book *b;
    calib_stats *cs; /* the columns' mean x^2 are set from the second moments */
    double t0;
    int show;
} encode_job;

static int spill(lat_book *b, size_t i, const uint8_t *data, uint64_t size, char *err, size_t n)
{
    for (uint64_t done = 0; done < size;) {
        ssize_t k = pwrite(b->fd, data + done, size - done, (off_t)(b->spill_end + done));
        if (k <= 0) return snprintf(err, n, "spill file: write failed"), -1;
        done += (uint64_t)k;
    }
    b->off[i] = b->spill_end, b->size[i] = size;
    b->spill_end += size;
    return 0;
}

/* Codes layer L's budgeted matrices; sites[k].h the second moment of input
 * k, or all NULL without calibration. */
static int encode_layer(void *ctx, uint32_t L, const hessian_site *sites, char *err, size_t n)
{
    encode_job *j = ctx;
    lat_site site[CALIB_N_INPUTS];
    int ready[CALIB_N_INPUTS] = {0}, rc = 0;
    for (size_t i = 0; i < j->p->n && !rc; i++) {
        const plan_tensor *t = &j->p->t[i];
        int k = calib_input(t->role);
        if (t->layer != (int)L || !lat_budgeted(t, j->o) || k < 0) continue;
        const float *h = sites && sites[k].dim == t->cols ? sites[k].h : NULL;
        if (!ready[k] && lat_site_init(&site[k], t->cols, site_seed(t->layer, k), h, err, n)) return -1;
        ready[k] = 1;
        lat_type ty = j->b->n_levels ? chain_type(j->b, (uint32_t)j->b->pick[i]) : j->b->types[j->b->type[i]];
        uint64_t size = lat_size(&ty, t->rows, t->cols);
        float *w = policy_load_matrix(t);
        uint8_t *out = malloc(size);
        st_release(t->src);
        int erc = !w || !out ? -1 : lat_encode(&site[k], w, t->rows, &ty, j->o->threads, out, NULL);
        if (erc == -2) rc = (snprintf(err, n, "tensor %s: a weight is too large for LATTICE's f16 scales", t->src->name), -1);
        else if (erc) rc = (snprintf(err, n, "out of memory"), -1);
        if (!rc) rc = spill(j->b, i, out, size, err, n);
        free(w), free(out);
    }
    for (int k = 0; k < CALIB_N_INPUTS; k++) {
        if (ready[k]) lat_site_free(&site[k]);
        if (j->cs && sites) calib_set_columns(j->cs, k, L, sites[k].h, sites[k].dim);
    }
    if (j->show)
        fprintf(stderr, "\r" TOOL ": coded layer %u of %llu  %.0fs   ", L + 1, (unsigned long long)j->b->n_layers,
                cli_now() - j->t0);
    return rc;
}

/* Every layer with the second moments b keeps (none without calibration),
 * rather than running the model again for them. */
static int encode_kept(encode_job *j, char *err, size_t n)
{
    const lat_book *b = j->b;
    int rc = 0;
    for (uint64_t L = 0; L < b->n_layers && !rc; L++) {
        hessian_site sites[CALIB_N_INPUTS];
        for (int k = 0; b->moments && k < CALIB_N_INPUTS; k++) {
            float *h = b->moments[L * CALIB_N_INPUTS + (uint64_t)k];
            sites[k] = (hessian_site){h ? b->moment_dim[k] : 0, j->o->calib->tokens, h};
        }
        rc = encode_layer(j, (uint32_t)L, b->moments ? sites : NULL, err, n);
    }
    return rc;
}

int lat_encode_all(const char *model_path, const char *out_path, const tensor_plan *p, const quant_opts *o, calib_stats *cs,
                   uint64_t n_layers, int show, lat_book *b, char *err, size_t n)
{
    char why[512];
    encode_job j = {p, o, b, cs, cli_now(), show};
    b->n_layers = n_layers;
    if ((b->fd = cli_tmpfile(out_path, why, sizeof why)) < 0) return snprintf(err, n, "%s: %s", out_path, why), -1;
    int rc = o->calib && !b->moments ? hessian_run(model_path, o->calib->probe_ids, o->calib->tokens, o->calib->window,
                                                   o->threads, encode_layer, &j, err, n)
                                       : encode_kept(&j, err, n);
    if (show) fputc('\n', stderr);
    return rc;
}

/* With refinement levels: the payload of the base's stages, and where
 * each level's stages are. The payload lays the stages out one after the
 * other, so the bytes of stages s0..s1-1 start at the size of a payload of
 * s0 stages. */
static void split_levels(const lat_book *b, size_t i, const plan_tensor *t, encoded *e)
{
    const int *c = b->chain + i * (b->n_levels + 1);
    const lat_type *base = &b->types[c[0]];
    e->size = lat_size(base, t->rows, t->cols);
    e->data[0] = (uint8_t)base->n_stages;
    for (uint32_t s = base->n_stages; s < NSQ_LATTICE_MAX_STAGES; s++) e->data[1 + s] = 0;
    e->n_levels = b->n_levels;
    for (uint32_t l = 1; l <= b->n_levels; l++) {
        const lat_type *lo = &b->types[c[l - 1]], *hi = &b->types[c[l]];
        e->level_stages[l - 1] = hi->n_stages - lo->n_stages;
        for (uint32_t s = lo->n_stages; s < hi->n_stages; s++) e->level_kind[l - 1][s - lo->n_stages] = hi->kind[s];
        e->level_off[l - 1] = lat_size(lo, t->rows, t->cols);
        e->level_size[l - 1] = lat_size(hi, t->rows, t->cols) - e->level_off[l - 1];
    }
}

int lat_payload(const lat_book *b, size_t i, const plan_tensor *t, encoded *e)
{
    e->scheme = NSQ_SCHEME_LATTICE;
    e->n_dims = 2;
    e->dims[0] = t->rows, e->dims[1] = t->cols;
    e->group_size = lat_block(t->cols);
    e->size = b->size[i];
    if (!(e->data = malloc(e->size))) return -1;
    for (uint64_t done = 0; done < e->size;) {
        ssize_t k = pread(b->fd, e->data + done, e->size - done, (off_t)(b->off[i] + done));
        if (k <= 0) return -1;
        done += (uint64_t)k;
    }
    if (b->n_levels) split_levels(b, i, t, e);
    return 0;
}

/* A probe: matrix t alone at 4 bits (e8+e8), small enough a change that the
 * divergences of several add up; with feedback where b keeps the moments. */
int lat_probe_encode(const plan_tensor *t, const lat_book *b, encoded *e)
{
    lat_site site;
    char err[128];
    float *w = policy_load_matrix(t);
    e->scheme = NSQ_SCHEME_LATTICE;
    e->n_dims = 2;
    e->dims[0] = t->rows, e->dims[1] = t->cols;
    e->group_size = lat_block(t->cols);
    e->size = lat_size(&b->types[LAT_PROBE_TYPE], t->rows, t->cols);
    int rc = !w || !(e->data = malloc(e->size)) ||
             lat_site_init(&site, t->cols, site_seed(t->layer, calib_input(t->role)), kept_moment(b, t), err, sizeof err);
    if (!rc) {
        rc = lat_encode(&site, w, t->rows, &b->types[LAT_PROBE_TYPE], 1, e->data, NULL);
        lat_site_free(&site);
    } else {
        rc = -1;
    }
    free(w);
    return rc;
}

static int keep_layer(void *ctx, uint32_t L, const hessian_site *sites, char *err, size_t n)
{
    lat_book *b = ctx;
    for (int k = 0; k < CALIB_N_INPUTS; k++) {
        size_t d = sites[k].dim;
        if (!d || d != b->moment_dim[k]) continue;
        float *h = malloc(d * d * sizeof *h);
        if (!h) return snprintf(err, n, "out of memory keeping the second moments"), -1;
        b->moments[(size_t)L * CALIB_N_INPUTS + (size_t)k] = memcpy(h, sites[k].h, d * d * sizeof *h);
    }
    return 0;
}

int lat_keep_moments(const char *model_path, const quant_opts *o, uint64_t n_layers, const uint32_t dim[CALIB_N_INPUTS],
                     lat_book *b, char *err, size_t n)
{
    double bytes = 0;
    for (int k = 0; k < CALIB_N_INPUTS; k++) bytes += (double)n_layers * dim[k] * dim[k] * sizeof(float);
    if (!o->calib || bytes > LAT_MOMENTS_MAX) return 0;
    if (!(b->moments = calloc(n_layers * CALIB_N_INPUTS, sizeof *b->moments))) return snprintf(err, n, "out of memory"), -1;
    memcpy(b->moment_dim, dim, sizeof b->moment_dim);
    b->n_layers = n_layers;
    return hessian_run(model_path, o->calib->probe_ids, o->calib->tokens, o->calib->window, o->threads, keep_layer, b, err, n);
}

void lat_book_free(lat_book *b)
{
    if (b->type && b->fd >= 0) close(b->fd);
    for (uint64_t k = 0; b->moments && k < b->n_layers * CALIB_N_INPUTS; k++) free(b->moments[k]);
    free(b->moments);
    free(b->type), free(b->chain), free(b->pick), free(b->chains), free(b->err), free(b->cerr), free(b->bits), free(b->off), free(b->size);
    memset(b, 0, sizeof *b);
    b->fd = -1;
}
