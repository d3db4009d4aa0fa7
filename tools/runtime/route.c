/* route.c - per-block choices under a memory budget.
 *
 * The selection is a multiple-choice knapsack: every block takes exactly one
 * of its allowed choices, resident bytes must fit the budget, and the sum of
 * predicted damages is minimised. Damages are summed as if blocks acted
 * independently; they are measured one block at a time. Bytes are counted in
 * units of budget/ROUTE_UNITS rounded up, so a selection that fits in units
 * fits in bytes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "residency.h"

#define FAIL(...) (snprintf(err, errlen, __VA_ARGS__), -1)
#define ROUTE_UNITS 4096u
#define ROUTE_TABLE (16u << 20) /* bytes of the choice table: fewer units for very many blocks */
#define TIE 1e-12 /* per step of precision given up, so equal damages keep the more precise choice */

static void load_static(const nsqrt_model *m, nsqrt_route_table *t)
{
    uint32_t i;
    nsq_meta md;
    if (nsq_meta_find(m->f, NSQRT_ROUTE_STATIC_KEY, &i) || nsq_meta_at(m->f, i, &md) ||
        md.type != (NSQ_META_F64 | NSQ_META_ARRAY) || md.count != 3 * t->n_blocks)
        return; /* absent or not for this file: ignored (spec section 5.3) */
    if (!(t->fixed = calloc(t->n_blocks, sizeof *t->fixed))) return;
    for (uint32_t k = 0; k < md.count; k++) {
        double v = 0;
        nsq_meta_value_f64(m->f, i, k, &v);
        t->fixed[k / 3][k % 3] = isfinite(v) && v > 0 ? v : 0;
    }
}

int nsqrt_route_init(const nsqrt_model *m, nsqrt_route_table *t, char *err, size_t errlen)
{
    nsq_info info;
    memset(t, 0, sizeof *t);
    nsq_get_info(m->f, &info);
    t->n_blocks = info.block_count;
    t->mask = calloc(t->n_blocks, 1);
    t->cost = calloc(t->n_blocks, sizeof *t->cost);
    if (!t->mask || !t->cost) return nsqrt_route_free(t), FAIL("out of memory");
    t->has_router = nsq_router_get(m->f, &t->router) == NSQ_OK;
    for (uint32_t b = 0; b < t->n_blocks; b++) {
        nsq_block blk;
        nsq_block_at(m->f, b, &blk);
        uint32_t full = nsqrt_block_full(m, b);
        t->cost[b][NSQRT_ROUTE_SKIP] = 0;
        t->cost[b][NSQRT_ROUTE_BASE] = block_cost(m->f, b, 0);
        t->cost[b][NSQRT_ROUTE_FULL] = block_cost(m->f, b, full);
        t->mask[b] = t->has_router ? t->router.choice_mask[b]
                                   : (uint8_t)(1u << NSQRT_ROUTE_BASE | (blk.kind == NSQ_BLOCK_LAYERS) << NSQRT_ROUTE_SKIP |
                                               (blk.refinement_count > 0) << NSQRT_ROUTE_FULL);
        if (!full) t->mask[b] &= (uint8_t) ~(1u << NSQRT_ROUTE_FULL); /* --max-refine 0: FULL is the base */
        if (!t->mask[b]) t->mask[b] = 1u << NSQRT_ROUTE_BASE;
    }
    load_static(m, t);
    uint64_t pt = 0;
    t->prompt_tokens = !nsq_meta_u64(m->f, "provenance.router.prompt_tokens", 0, &pt) && pt > 0 && pt < (1u << 20)
                           ? (uint32_t)pt
                           : NSQRT_ROUTE_PROMPT_TOKENS;
    return 0;
}

void nsqrt_route_all_full(const nsqrt_route_table *t, uint8_t *choice)
{
    for (uint32_t b = 0; b < t->n_blocks; b++) choice[b] = t->mask[b] >> NSQRT_ROUTE_FULL & 1 ? NSQRT_ROUTE_FULL : NSQRT_ROUTE_BASE;
}

void nsqrt_route_free(nsqrt_route_table *t)
{
    free(t->mask), free(t->cost), free(t->fixed);
    memset(t, 0, sizeof *t);
}

void nsqrt_route_features(const nsqrt_model *m, const int32_t *ids, uint32_t n, float *x)
{
    uint32_t H = m->c.hidden;
    wmat base = *m->embed;
    base.n_ref = 0;
    float *row = malloc(H * sizeof *row);
    memset(x, 0, H * sizeof *x);
    for (uint32_t p = 0; row && p < n; p++) {
        wmat_row(&base, (uint32_t)ids[p], row);
        for (uint32_t i = 0; i < H; i++) x[i] += row[i];
    }
    for (uint32_t i = 0; i < H && n; i++) x[i] /= (float)n;
    free(row);
}

int nsqrt_route_predict(const nsqrt_route_table *t, const nsqrt_model *m, const int32_t *ids, uint32_t n, double (*dmg)[3])
{
    if (!t->has_router) return -1;
    float *x = malloc(m->c.hidden * sizeof *x), *y = malloc(3 * (size_t)t->n_blocks * sizeof *y);
    int rc = x && y ? 0 : -1;
    if (!rc) {
        nsqrt_route_features(m, ids, n < t->prompt_tokens ? n : t->prompt_tokens, x);
        rc = nsq_router_eval(&t->router, x, y) ? -1 : 0;
    }
    for (uint32_t b = 0; !rc && b < t->n_blocks; b++) {
        double full = fmax(0, y[3 * b + NSQRT_ROUTE_FULL]), base = fmax(full, y[3 * b + NSQRT_ROUTE_BASE]);
        dmg[b][NSQRT_ROUTE_FULL] = full, dmg[b][NSQRT_ROUTE_BASE] = base, dmg[b][NSQRT_ROUTE_SKIP] = fmax(base, y[3 * b + NSQRT_ROUTE_SKIP]);
    }
    free(x), free(y);
    return rc;
}

uint64_t nsqrt_route_minimum(const nsqrt_route_table *t, const uint8_t *mask)
{
    uint64_t sum = 0;
    for (uint32_t b = 0; b < t->n_blocks; b++) {
        uint64_t best = UINT64_MAX;
        for (int c = 0; c < 3; c++)
            if (mask[b] >> c & 1 && t->cost[b][c] < best) best = t->cost[b][c];
        sum += best;
    }
    return sum;
}

static uint32_t units(uint64_t bytes, uint64_t budget, uint32_t U)
{
    if (!budget) return 0;
    if (bytes > budget) return UINT32_MAX;
    return (uint32_t)(((unsigned __int128)bytes * U + budget - 1) / budget);
}

/* Each item's least damage, when together they fit: the table's rounding
 * of bytes up to units could miss that. */
static int least_fits(uint32_t n, const uint32_t *first, const uint64_t *cost, const double *dmg, uint64_t budget,
                      uint8_t *choice)
{
    uint64_t sum = 0;
    for (uint32_t b = 0; b < n; b++) {
        uint32_t best = 0;
        for (uint32_t c = 1; c < first[b + 1] - first[b]; c++)
            if (dmg[first[b] + c] <= dmg[first[b] + best]) best = c;
        if (!isfinite(dmg[first[b] + best])) return -1;
        choice[b] = (uint8_t)best;
        sum += cost[first[b] + best];
    }
    return !budget || sum <= budget ? 0 : -1;
}

int nsqrt_knapsack(uint32_t n, const uint32_t *first, const uint64_t *cost, const double *dmg, uint64_t budget,
                   uint8_t *choice)
{
    if (!least_fits(n, first, cost, dmg, budget, choice)) return 0;
    uint32_t U = !budget ? 0 : n * (ROUTE_UNITS + 1) <= ROUTE_TABLE ? ROUTE_UNITS : ROUTE_TABLE / n;
    double *dp = malloc((U + 1) * sizeof *dp), *nx = malloc((U + 1) * sizeof *nx);
    uint8_t *ch = malloc((size_t)n * (U + 1));
    int rc = dp && nx && ch ? 0 : -1;
    for (uint32_t u = 0; !rc && u <= U; u++) dp[u] = 0; /* dp[u]: least damage of the items so far within u units */
    for (uint32_t b = 0; !rc && b < n; b++) {
        uint32_t nc = first[b + 1] - first[b];
        for (uint32_t u = 0; u <= U; u++) {
            nx[u] = INFINITY;
            for (uint32_t c = nc; c-- > 0;) {
                uint32_t k = units(cost[first[b] + c], budget, U);
                if (k > u || !isfinite(dp[u - k]) || !isfinite(dmg[first[b] + c])) continue;
                double v = dp[u - k] + dmg[first[b] + c] + TIE * (nc - 1 - c);
                if (v < nx[u]) nx[u] = v, ch[(size_t)b * (U + 1) + u] = (uint8_t)c;
            }
        }
        double *tmp = dp;
        dp = nx, nx = tmp;
    }
    if (!rc && !isfinite(dp[U])) rc = -1;
    for (uint32_t b = n, u = U; !rc && b-- > 0;) {
        choice[b] = ch[(size_t)b * (U + 1) + u];
        u -= units(cost[first[b] + choice[b]], budget, U);
    }
    free(dp), free(nx), free(ch);
    return rc;
}

int nsqrt_route_select(const nsqrt_route_table *t, const uint8_t *mask, const double (*dmg)[3], uint64_t budget, uint8_t *choice)
{
    uint32_t B = t->n_blocks, *first = malloc((B + 1) * sizeof *first);
    double *d = malloc(3 * (size_t)B * sizeof *d);
    int rc = first && d ? 0 : -1;
    for (uint32_t b = 0; !rc && b <= B; b++) first[b] = 3 * b;
    for (uint32_t b = 0; !rc && b < B; b++)
        for (int c = 0; c < 3; c++) d[3 * b + (uint32_t)c] = mask[b] >> c & 1 ? dmg[b][c] : INFINITY;
    if (!rc) rc = nsqrt_knapsack(B, first, &t->cost[0][0], d, budget, choice);
    free(first), free(d);
    return rc;
}

int nsqrt_depth_damage(const nsq_file *f, double **dmg, uint32_t **first)
{
    nsq_info info;
    nsq_meta md;
    uint32_t i, n = 0;
    *dmg = NULL, *first = NULL;
    nsq_get_info(f, &info);
    if (nsq_meta_find(f, NSQRT_DEPTH_DAMAGE_KEY, &i) || nsq_meta_at(f, i, &md) || md.type != (NSQ_META_F64 | NSQ_META_ARRAY))
        return -1;
    uint32_t *fi = malloc((info.block_count + 1) * sizeof *fi);
    for (uint32_t b = 0; fi && b < info.block_count; b++) {
        nsq_block blk;
        nsq_block_at(f, b, &blk);
        fi[b] = n, n += blk.refinement_count + 1;
    }
    double *d = fi && md.count == n ? malloc((n ? n : 1) * sizeof *d) : NULL;
    for (uint32_t k = 0; d && k < n; k++) {
        nsq_meta_value_f64(f, i, k, &d[k]);
        if (!isfinite(d[k]) || d[k] < 0) d[k] = 0;
    }
    if (!d) return free(fi), -1; /* absent, or not for this file: ignored (spec section 5.3) */
    fi[info.block_count] = n;
    *dmg = d, *first = fi;
    return 0;
}

/* The rest of a pass after block b changed: from the residual stream that
 * entered its first layer in the all-FULL run (snap), or from the
 * embedding when b holds it. */
static int rerun_from(nsqrt_model *m, nsqrt_state *s, uint32_t b, const int32_t *ids, uint32_t n, const float *snap,
                      float *logits)
{
    nsq_block blk;
    uint32_t nL = m->c.n_layers, L0 = 0;
    size_t rows = (size_t)n * m->c.hidden;
    nsq_block_at(m->f, b, &blk);
    if (blk.kind == NSQ_BLOCK_EMBEDDINGS) forward_embed(m, s, ids, n, 0);
    else L0 = blk.kind == NSQ_BLOCK_LAYERS ? blk.first_layer : nL;
    if (blk.kind != NSQ_BLOCK_EMBEDDINGS) memcpy(s->x, snap + L0 * rows, rows * sizeof *s->x);
    if (forward_layers(m, s, L0, nL, n, 0)) return -1;
    forward_logits(m, s, n, logits, 1);
    return 0;
}

int nsqrt_route_measure(nsqrt_model *m, nsqrt_state *s, const nsqrt_route_table *t, const int32_t *ids, uint32_t n, uint32_t n_prompt,
                        double (*dmg)[3])
{
    uint32_t V = m->c.vocab, nL = m->c.n_layers, scored = n - n_prompt, first = n_prompt - 1;
    size_t rows = (size_t)n * m->c.hidden;
    float *all = malloc((size_t)n * V * sizeof *all), *ref = malloc((size_t)scored * V * sizeof *ref);
    float *snap = malloc((nL + 1) * rows * sizeof *snap); /* the stream entering each layer, and leaving the last */
    double *scratch = malloc(2 * (size_t)V * sizeof *scratch);
    int rc = all && ref && snap && scratch && n > n_prompt && n_prompt > 0 ? 0 : -1;
    if (!rc) forward_embed(m, s, ids, n, 0);
    for (uint32_t L = 0; !rc && L <= nL; L++) {
        memcpy(snap + L * rows, s->x, rows * sizeof *s->x);
        if (L < nL) rc = forward_layers(m, s, L, L + 1, n, 0);
    }
    if (!rc) {
        forward_logits(m, s, n, all, 1);
        memcpy(ref, all + (size_t)first * V, (size_t)scored * V * sizeof *ref);
    }
    for (uint32_t b = 0; !rc && b < t->n_blocks; b++) {
        dmg[b][0] = dmg[b][1] = dmg[b][2] = 0;
        for (int c = NSQRT_ROUTE_SKIP; c < NSQRT_ROUTE_FULL && !rc; c++) {
            if (!nsqrt_route_measured(t->mask[b], c)) continue;
            model_try_choice(m, b, c);
            rc = rerun_from(m, s, b, ids, n, snap, all);
            model_try_choice(m, b, NSQRT_ROUTE_FULL);
            if (rc) break;
            dmg[b][c] = nsqrt_logprob_mean_kl(ref, all + (size_t)first * V, scored, V, scratch);
        }
    }
    free(all), free(ref), free(snap), free(scratch);
    return rc;
}

static uint64_t rng_next(uint64_t *x) /* splitmix64 */
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* NSQRT_ROUTE_TOP: the k blocks that skipping would damage most run, the rest are
 * skipped; blocks that cannot be skipped count among the k. */
static int keep_top(const nsqrt_route_table *t, uint32_t k, const double (*dmg)[3], uint8_t *mask, char *err, size_t errlen)
{
    uint32_t fixed = 0;
    for (uint32_t b = 0; b < t->n_blocks; b++) fixed += !(mask[b] & 1u << NSQRT_ROUTE_SKIP);
    if (k < fixed) return FAIL("--route %u: this file has %u blocks that always run", k, fixed);
    for (uint32_t left = k - fixed; left > 0; left--) {
        int32_t best = -1;
        for (uint32_t b = 0; b < t->n_blocks; b++)
            if (mask[b] & 1u << NSQRT_ROUTE_SKIP && mask[b] != 1u << NSQRT_ROUTE_SKIP &&
                (best < 0 || dmg[b][NSQRT_ROUTE_SKIP] > dmg[best][NSQRT_ROUTE_SKIP]))
                best = (int32_t)b;
        if (best < 0) break;
        mask[best] &= (uint8_t) ~(1u << NSQRT_ROUTE_SKIP);
    }
    for (uint32_t b = 0; b < t->n_blocks; b++)
        if (mask[b] & 1u << NSQRT_ROUTE_SKIP) mask[b] = 1u << NSQRT_ROUTE_SKIP;
    return 0;
}

static int damages(nsqrt_model *m, nsqrt_state *s, const nsqrt_route_table *t, const nsqrt_route_opts *o, const int32_t *ids, uint32_t n,
                   uint32_t n_prompt, double (*dmg)[3], char *err, size_t errlen)
{
    uint64_t x = o->seed;
    uint8_t *full = NULL;
    switch (o->mode) {
    case NSQRT_ROUTE_ROUTER:
    case NSQRT_ROUTE_TOP:
        if (t->has_router) return nsqrt_route_predict(t, m, ids, n_prompt, dmg) ? FAIL("the router could not be evaluated") : 0;
        if (o->mode == NSQRT_ROUTE_ROUTER) return FAIL("this file has no router (nsq-convert --router)");
        /* --route K without a router ranks blocks by the static policy */
        /* fall through */
    case NSQRT_ROUTE_STATIC:
    case NSQRT_ROUTE_SKIP_ONLY:
        if (!t->fixed) return FAIL("this file has no static routing policy (nsq-convert --router)");
        memcpy(dmg, t->fixed, t->n_blocks * sizeof *dmg);
        return 0;
    case NSQRT_ROUTE_RANDOM:
        for (uint32_t b = 0; b < t->n_blocks; b++) {
            double u = (double)(rng_next(&x) >> 11) * 0x1p-53, v = (double)(rng_next(&x) >> 11) * 0x1p-53;
            dmg[b][NSQRT_ROUTE_SKIP] = fmax(u, v), dmg[b][NSQRT_ROUTE_BASE] = fmin(u, v), dmg[b][NSQRT_ROUTE_FULL] = 0;
        }
        return 0;
    case NSQRT_ROUTE_ORACLE:
        if (!(full = malloc(t->n_blocks))) return FAIL("out of memory");
        nsqrt_route_all_full(t, full);
        int rc = nsqrt_route_apply(m, full, err, errlen);
        free(full);
        if (!rc && nsqrt_route_measure(m, s, t, ids, n, n_prompt, dmg)) rc = FAIL("%s", nsqrt_error(m));
        return rc;
    default:
        memset(dmg, 0, t->n_blocks * sizeof *dmg);
        return 0;
    }
}

int nsqrt_route_choose(nsqrt_model *m, nsqrt_state *s, const nsqrt_route_table *t, const nsqrt_route_opts *o, uint64_t budget,
                       const int32_t *ids, uint32_t n, uint32_t n_prompt, uint8_t *choice, double (*dmg)[3],
                       double *predicted, char *err, size_t errlen)
{
    uint8_t *mask = malloc(t->n_blocks);
    if (!mask) return FAIL("out of memory");
    memcpy(mask, t->mask, t->n_blocks);
    int rc = damages(m, s, t, o, ids, n, n_prompt, dmg, err, errlen);
    for (uint32_t b = 0; !rc && b < t->n_blocks; b++) {
        if (o->mode == NSQRT_ROUTE_SKIP_ONLY && mask[b] >> NSQRT_ROUTE_FULL & 1) mask[b] &= (uint8_t) ~(1u << NSQRT_ROUTE_BASE);
        if (o->forced && o->forced[b] && !(mask[b] & 1u << NSQRT_ROUTE_SKIP)) rc = FAIL("block %u cannot be skipped", b);
        else if (o->forced && o->forced[b]) mask[b] = 1u << NSQRT_ROUTE_SKIP;
    }
    if (!rc && o->mode == NSQRT_ROUTE_TOP) rc = keep_top(t, o->k, dmg, mask, err, errlen);
    if (!rc)
        rc = budget_check(budget, nsqrt_route_minimum(t, mask),
                          "the embedding and output blocks and the cheapest allowed choice of every other block", err, errlen);
    if (!rc && nsqrt_route_select(t, mask, dmg, budget, choice))
        rc = FAIL("--max-memory %.1f MiB: no choice of blocks fits it once their sizes are rounded up to whole units "
                  "of it", budget / 1048576.0);
    *predicted = 0;
    for (uint32_t b = 0; !rc && b < t->n_blocks; b++) *predicted += dmg[b][choice[b]];
    free(mask);
    return rc;
}

void nsqrt_route_print(FILE *f, const nsqrt_route_table *t, const uint8_t *choice, const double (*dmg)[3])
{
    static const char *const names[] = {"skip", "base", "full"};
    uint64_t bytes = 0;
    double sum = 0;
    for (uint32_t b = 0; b < t->n_blocks; b++) {
        fprintf(f, "route: block %u %s, %.2f MiB, predicted damage %.6f\n", b, names[choice[b]],
                t->cost[b][choice[b]] / 1048576.0, dmg[b][choice[b]]);
        bytes += t->cost[b][choice[b]], sum += dmg[b][choice[b]];
    }
    fprintf(f, "route: %.2f MiB of weights, predicted damage %.6f\n", bytes / 1048576.0, sum);
}
