/* residency.c - which blocks are in memory. Without a budget, all of them,
 * loaded once. With one (--max-memory), the embedding and output blocks stay
 * resident and layer blocks stream through the rest: read with positioned
 * reads, checksummed, used, evicted; a background thread reads the next block
 * while the current one computes.
 *
 * Eviction takes the block whose next use is farthest away. The forward pass
 * visits layer blocks in a fixed cycle, and for a cycle least-recently-used is
 * the worst choice there is: it always evicts the block needed next. The
 * farthest-next-use block is the one just behind the current one.
 *
 * Refinement levels are planned once: when the budget holds every base block
 * with room to spare, the spare goes to refinement levels of the blocks whose
 * stored importance is largest; a streaming budget runs every block from its
 * base. */
#include <fcntl.h>
#include <math.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "residency.h"

#define FAIL(...) (snprintf(err, errlen, __VA_ARGS__), -1)

enum { ABSENT, LOADING, RESIDENT };

struct residency {
    uint32_t n_blocks, n_cycle;
    nsq_block *blk;
    resident *res;
    uint8_t *state;
    uint32_t *levels;    /* planned refinement levels */
    uint32_t *full;      /* refinement levels of FULL: all there are, up to --max-refine */
    uint8_t *skip;       /* routed: the block's layers are not evaluated */
    uint64_t *cost;      /* resident bytes at those levels */
    uint32_t *cycle;     /* layer blocks in the order the forward pass uses them */
    uint32_t *pos;       /* block -> index in cycle */
    uint32_t *of_layer;  /* layer -> block */
    uint64_t budget, used, peak, pinned, largest, all_blocks, all_refinements, loads, bytes_read, token_bytes;
    uint32_t refine_loaded, refine_total;
    double read_s, predicted; /* predicted: the depth plan's damage, -1 without one */
    int streaming, prefetch, stop, failed, routed;
    int cold_fd; /* >= 0: drop the file pages of each block read */
    int32_t current, want;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char err[512];
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void drop_pages(const nsq_file *f, int fd, uint32_t b, uint32_t levels)
{
    nsq_block blk;
    nsq_refinement rf;
    nsq_block_at(f, b, &blk);
    posix_fadvise(fd, (off_t)blk.offset, (off_t)blk.stored_size, POSIX_FADV_DONTNEED);
    for (uint32_t l = 1; l <= levels; l++)
        if (!nsq_refinement_at(f, b, l, &rf)) posix_fadvise(fd, (off_t)rf.offset, (off_t)rf.stored_size, POSIX_FADV_DONTNEED);
}

int budget_check(uint64_t budget, uint64_t need, const char *what, char *err, size_t errlen)
{
    if (!budget || need <= budget) return 0;
    return FAIL("--max-memory %.1f MiB is below the minimum of %.1f MiB for %s", budget / 1048576.0,
                ceil((double)need / 104857.6) / 10, what);
}

/* Called with mu held; drops it while reading. */
static int load_locked(const nsqrt_model *m, residency *rs, uint32_t b)
{
    rs->state[b] = LOADING;
    rs->used += rs->cost[b]; /* reserved while reading, so no one else counts on it */
    rs->peak = rs->used > rs->peak ? rs->used : rs->peak;
    pthread_mutex_unlock(&rs->mu);
    char err[512];
    double t0 = now();
    int rc = block_load(m, b, rs->levels[b], &rs->res[b], err, sizeof err);
    double dt = now() - t0;
    if (rs->cold_fd >= 0) drop_pages(m->f, rs->cold_fd, b, rs->levels[b]);
    pthread_mutex_lock(&rs->mu);
    rs->read_s += dt;
    if (rc) {
        rs->state[b] = ABSENT;
        rs->used -= rs->cost[b];
        if (!rs->failed) snprintf(rs->err, sizeof rs->err, "%s", err);
        rs->failed = 1;
    } else {
        rs->state[b] = RESIDENT;
        rs->loads++;
        rs->bytes_read += rs->blk[b].stored_size;
        rs->refine_loaded += rs->res[b].n_ref;
    }
    pthread_cond_broadcast(&rs->cv);
    return rc;
}

/* Called with mu held. */
static void unload_locked(const nsqrt_model *m, residency *rs, uint32_t b)
{
    rs->refine_loaded -= rs->res[b].n_ref;
    block_unload(m, b, &rs->res[b]);
    rs->state[b] = ABSENT;
    rs->used -= rs->cost[b];
}

/* The eviction policy, for the loader and for the dry run of simulate_reads:
 * until `need` more bytes fit the budget, evicts the block of `state` whose
 * next use in the cycle is farthest from block cur's (-1: from the start),
 * never keep or cur. With m the blocks are unloaded (mu held); without it
 * only state and used change. */
static int evict_for(const nsqrt_model *m, residency *rs, uint8_t *state, uint64_t *used, uint64_t need, int32_t cur,
                     int32_t keep)
{
    uint32_t at = cur >= 0 ? rs->pos[cur] : 0;
    while (*used + need > rs->budget) {
        int32_t victim = -1;
        uint32_t far = 0;
        for (uint32_t i = 0; i < rs->n_cycle; i++) {
            uint32_t b = rs->cycle[i], dist = (i + rs->n_cycle - at) % rs->n_cycle;
            if (state[b] == RESIDENT && (int32_t)b != keep && (int32_t)b != cur && dist >= far) victim = (int32_t)b, far = dist;
        }
        if (victim < 0) return -1;
        if (m) unload_locked(m, rs, (uint32_t)victim);
        else state[victim] = ABSENT, *used -= rs->cost[victim];
    }
    return 0;
}

/* Makes room in the budget for block b. */
static int room_for(const nsqrt_model *m, residency *rs, uint32_t b)
{
    return evict_for(m, rs, rs->state, &rs->used, rs->cost[b], rs->current, (int32_t)b);
}

static void *prefetcher(void *arg)
{
    const nsqrt_model *m = arg;
    residency *rs = m->rs;
    pthread_mutex_lock(&rs->mu);
    while (!rs->stop) {
        if (rs->want < 0) {
            pthread_cond_wait(&rs->cv, &rs->mu);
            continue;
        }
        uint32_t b = (uint32_t)rs->want;
        rs->want = -1;
        if (rs->state[b] == ABSENT && !room_for(m, rs, b)) load_locked(m, rs, b);
    }
    pthread_mutex_unlock(&rs->mu);
    return NULL;
}

int model_layer_skipped(const nsqrt_model *m, uint32_t L) { return m->rs->skip[m->rs->of_layer[L]]; }
int nsqrt_route_active(const nsqrt_model *m) { return m->rs->routed; }

int model_need_layer(const nsqrt_model *m, uint32_t L)
{
    residency *rs = m->rs;
    if (!rs->streaming) return 0;
    uint32_t b = rs->of_layer[L];
    pthread_mutex_lock(&rs->mu);
    rs->current = (int32_t)b;
    while (rs->state[b] != RESIDENT && !rs->failed) {
        if (rs->state[b] == LOADING) pthread_cond_wait(&rs->cv, &rs->mu);
        else if (room_for(m, rs, b)) {
            /* the prefetcher holds the only other slot: wait for it */
            pthread_cond_wait(&rs->cv, &rs->mu);
        } else load_locked(m, rs, b);
    }
    if (rs->prefetch && !rs->failed) {
        uint32_t next = rs->cycle[(rs->pos[b] + 1) % rs->n_cycle];
        if (rs->state[next] == ABSENT) {
            rs->want = (int32_t)next;
            pthread_cond_broadcast(&rs->cv);
        }
    }
    int rc = rs->failed ? -1 : 0;
    pthread_mutex_unlock(&rs->mu);
    return rc;
}

const char *nsqrt_error(const nsqrt_model *m) { return m->rs ? m->rs->err : ""; }

/* File bytes read per token once the policy is in its steady state: a dry
 * run of three forward passes, the last one counted. */
static uint64_t simulate_reads(residency *rs)
{
    uint8_t *in = calloc(rs->n_blocks + 1, 1);
    uint64_t used = rs->pinned, reads = 0;
    if (!in || !rs->streaming) return free(in), 0;
    for (int pass = 0; pass < 3; pass++)
        for (uint32_t i = 0; i < rs->n_cycle; i++) {
            uint32_t b = rs->cycle[i], next = rs->cycle[(i + 1) % rs->n_cycle];
            if (in[b] != RESIDENT && !evict_for(NULL, rs, in, &used, rs->cost[b], (int32_t)b, (int32_t)b)) {
                in[b] = RESIDENT, used += rs->cost[b];
                reads += pass == 2 ? rs->blk[b].stored_size : 0;
            }
            if (rs->prefetch && in[next] != RESIDENT &&
                !evict_for(NULL, rs, in, &used, rs->cost[next], (int32_t)b, (int32_t)next)) {
                in[next] = RESIDENT, used += rs->cost[next];
                reads += pass == 2 ? rs->blk[next].stored_size : 0; /* one pass's worth of loads */
            }
        }
    free(in);
    return reads;
}

/* Sum of the stored importance of each block's tensors (0 without a section). */
static void block_importance(const nsq_file *f, const residency *rs, double *imp)
{
    nsq_importance_info info;
    nsq_importance_entry e;
    nsq_tensor t;
    if (nsq_importance_get(f, &info)) return;
    for (uint32_t i = 0; i < info.entry_count; i++) {
        if (nsq_importance_entry_at(f, i, &e) || nsq_tensor_at(f, e.tensor, &t) || t.block >= rs->n_blocks) continue;
        for (uint64_t g = 0; g < e.n_group_stats; g++) {
            float v = nsq_f32_at(e.group_stats, g);
            if (isfinite(v)) imp[t.block] += v;
        }
    }
}

/* Refinement levels within the spare budget: level 1 of every block by
 * decreasing importance, then level 2, and so on. */
static void plan_refinements(const nsqrt_model *m, residency *rs, uint32_t max_levels, uint64_t spare)
{
    double *imp = calloc(rs->n_blocks, sizeof *imp);
    uint32_t *order = malloc(rs->n_blocks * sizeof *order);
    if (!imp || !order) goto done;
    block_importance(m->f, rs, imp);
    for (uint32_t i = 0; i < rs->n_blocks; i++) order[i] = i;
    for (uint32_t i = 1; i < rs->n_blocks; i++) /* insertion sort: stable, few blocks */
        for (uint32_t j = i; j > 0 && imp[order[j]] > imp[order[j - 1]]; j--) {
            uint32_t tmp = order[j];
            order[j] = order[j - 1], order[j - 1] = tmp;
        }
    for (uint32_t l = 1; l <= max_levels; l++)
        for (uint32_t i = 0; i < rs->n_blocks; i++) {
            uint32_t b = order[i];
            if (rs->levels[b] != l - 1 || l > rs->blk[b].refinement_count) continue;
            uint64_t extra = block_cost(m->f, b, l) - rs->cost[b];
            if (extra > spare) continue;
            spare -= extra;
            rs->levels[b] = l;
            rs->cost[b] += extra;
        }
done:
    free(imp);
    free(order);
}

/* Depths within the budget by the file's predicted damages (router.depth_damage):
 * the multiple-choice knapsack over every block's depths. 0 when done. */
static int plan_depths(const nsqrt_model *m, residency *rs)
{
    double *dmg;
    uint32_t *first, *fc = malloc((rs->n_blocks + 1) * sizeof *fc);
    if (nsqrt_depth_damage(m->f, &dmg, &first) || !fc) return free(fc), -1;
    uint64_t *cost = malloc((first[rs->n_blocks] ? first[rs->n_blocks] : 1) * sizeof *cost);
    double *d = malloc((first[rs->n_blocks] ? first[rs->n_blocks] : 1) * sizeof *d);
    uint8_t *choice = malloc(rs->n_blocks + 1);
    int rc = cost && d && choice ? 0 : -1;
    for (uint32_t b = 0, k = 0; !rc && b < rs->n_blocks; b++) { /* depths up to max_levels only */
        fc[b] = k;
        for (uint32_t l = 0; l <= rs->full[b]; l++, k++) cost[k] = block_cost(m->f, b, l), d[k] = dmg[first[b] + l];
        fc[b + 1] = k;
    }
    if (!rc) rc = nsqrt_knapsack(rs->n_blocks, fc, cost, d, rs->budget, choice);
    rs->predicted = 0;
    for (uint32_t b = 0; !rc && b < rs->n_blocks; b++) {
        rs->levels[b] = choice[b], rs->cost[b] = cost[fc[b] + choice[b]];
        rs->predicted += d[fc[b] + choice[b]];
    }
    if (rc) rs->predicted = -1;
    free(dmg), free(first), free(fc), free(cost), free(d), free(choice);
    return rc;
}

static int alloc_tables(nsqrt_model *m, residency *rs, char *err, size_t errlen)
{
    nsq_info info;
    nsq_get_info(m->f, &info);
    uint32_t n = rs->n_blocks = info.block_count;
    rs->blk = calloc(n + 1, sizeof *rs->blk);
    rs->res = calloc(n + 1, sizeof *rs->res);
    rs->state = calloc(n + 1, 1);
    rs->levels = calloc(n + 1, sizeof *rs->levels);
    rs->full = calloc(n + 1, sizeof *rs->full);
    rs->skip = calloc(n + 1, 1);
    rs->cost = calloc(n + 1, sizeof *rs->cost);
    rs->cycle = calloc(n + 1, sizeof *rs->cycle);
    rs->pos = calloc(n + 1, sizeof *rs->pos);
    rs->of_layer = calloc(m->c.n_layers + 1, sizeof *rs->of_layer);
    if (!rs->blk || !rs->res || !rs->state || !rs->levels || !rs->full || !rs->skip || !rs->cost || !rs->cycle ||
        !rs->pos || !rs->of_layer)
        return FAIL("out of memory");
    for (uint32_t L = 0; L < m->c.n_layers; L++) rs->of_layer[L] = UINT32_MAX;
    for (uint32_t b = 0; b < n; b++) {
        nsq_block *k = &rs->blk[b];
        nsq_block_at(m->f, b, k);
        if (k->kind != NSQ_BLOCK_LAYERS) continue;
        rs->pos[b] = rs->n_cycle;
        rs->cycle[rs->n_cycle++] = b;
        for (uint32_t L = k->first_layer; L < k->first_layer + k->n_layers && L < m->c.n_layers; L++) rs->of_layer[L] = b;
    }
    for (uint32_t L = 0; L < m->c.n_layers; L++)
        if (rs->of_layer[L] == UINT32_MAX) return FAIL("layer %u is in no block of the file", L);
    return 0;
}

static void token_bytes(const nsqrt_model *m, residency *rs);

/* Costs, the minimum budget, the refinement plan and whether to stream. */
static int plan(nsqrt_model *m, residency *rs, const nsqrt_opts *o, char *err, size_t errlen)
{
    uint32_t max_levels = o->max_refine < 0 ? NSQ_MAX_REFINEMENTS : (uint32_t)o->max_refine;
    uint64_t bases = 0;
    for (uint32_t b = 0; b < rs->n_blocks; b++) {
        uint32_t all = rs->full[b] = rs->blk[b].refinement_count < max_levels ? rs->blk[b].refinement_count : max_levels;
        rs->cost[b] = block_cost(m->f, b, 0);
        rs->refine_total += all;
        rs->all_refinements += block_cost(m->f, b, all) - rs->cost[b];
        rs->all_blocks += rs->cost[b];
        if (rs->blk[b].kind != NSQ_BLOCK_LAYERS) rs->pinned += rs->cost[b];
        else rs->largest = rs->cost[b] > rs->largest ? rs->cost[b] : rs->largest;
        bases += rs->cost[b];
        if (!o->max_memory && !o->routed) rs->levels[b] = all, rs->cost[b] = block_cost(m->f, b, all);
        rs->skip[b] = o->routed && rs->blk[b].kind == NSQ_BLOCK_LAYERS;
    }
    rs->budget = o->max_memory;
    rs->predicted = -1;
    rs->routed = o->routed;
    if (rs->budget && !rs->routed) {
        char what[160];
        snprintf(what, sizeof what,
                 "this file: the embedding and output blocks (%.1f MiB) plus its largest layer block (%.1f MiB)",
                 rs->pinned / 1048576.0, rs->largest / 1048576.0);
        if (budget_check(rs->budget, rs->pinned + rs->largest, what, err, errlen)) return -1;
        if (bases > rs->budget) rs->streaming = 1;
        else if (plan_depths(m, rs)) plan_refinements(m, rs, max_levels, rs->budget - bases);
        rs->prefetch = rs->streaming && rs->budget >= rs->pinned + 2 * rs->largest && rs->n_cycle > 1;
    }
    token_bytes(m, rs);
    return 0;
}

/* A token reads every layer and output matrix once, and of the embedding one
 * row, unless it is also the output head. */
static void token_bytes(const nsqrt_model *m, residency *rs)
{
    nsq_refinement rf;
    for (uint32_t b = 0; b < rs->n_blocks; b++) {
        if (rs->blk[b].kind == NSQ_BLOCK_EMBEDDINGS && !m->c.tied_head) continue;
        rs->token_bytes += rs->blk[b].raw_size;
        for (uint32_t l = 1; l <= rs->levels[b]; l++)
            if (!nsq_refinement_at(m->f, b, l, &rf)) rs->token_bytes += rf.raw_size;
    }
}


int residency_init(nsqrt_model *m, const char *path, const nsqrt_opts *o, char *err, size_t errlen)
{
    residency *rs = m->rs = calloc(1, sizeof *rs);
    if (!rs) return FAIL("out of memory");
    rs->cold_fd = -1;
    pthread_mutex_init(&rs->mu, NULL);
    pthread_cond_init(&rs->cv, NULL);
    rs->current = rs->want = -1;
    if (alloc_tables(m, rs, err, errlen) || plan(m, rs, o, err, errlen)) return -1;
#if defined(__GLIBC__)
    /* one heap for every thread: a block freed by one thread is reused by the
     * next load in another, instead of each thread's arena keeping its own */
    if (rs->streaming) mallopt(M_ARENA_MAX, 1);
#endif
    if (o->drop_cache && rs->streaming && (rs->cold_fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return FAIL("%s: cannot open for --cold", path);
    pthread_mutex_lock(&rs->mu);
    for (uint32_t b = 0; b < rs->n_blocks && !rs->failed; b++)
        if (!rs->skip[b] && (!rs->streaming || rs->blk[b].kind != NSQ_BLOCK_LAYERS)) load_locked(m, rs, b);
    pthread_mutex_unlock(&rs->mu);
    if (rs->failed) return FAIL("%s", rs->err);
    if (rs->prefetch && pthread_create(&rs->thread, NULL, prefetcher, m)) rs->prefetch = 0;
    return 0;
}

void residency_free(nsqrt_model *m)
{
    residency *rs = m->rs;
    if (!rs) return;
    if (rs->prefetch) {
        pthread_mutex_lock(&rs->mu);
        rs->stop = 1;
        pthread_cond_broadcast(&rs->cv);
        pthread_mutex_unlock(&rs->mu);
        pthread_join(rs->thread, NULL);
    }
    for (uint32_t b = 0; rs->state && b < rs->n_blocks; b++)
        if (rs->state[b] == RESIDENT) block_unload(m, b, &rs->res[b]);
    free(rs->blk), free(rs->res), free(rs->state), free(rs->levels), free(rs->full), free(rs->skip), free(rs->cost);
    free(rs->cycle), free(rs->pos), free(rs->of_layer);
    if (rs->cold_fd >= 0) close(rs->cold_fd);
    pthread_mutex_destroy(&rs->mu);
    pthread_cond_destroy(&rs->cv);
    free(rs);
    m->rs = NULL;
}

void nsqrt_get_usage(const nsqrt_model *m, nsqrt_usage *u)
{
    residency *rs = m->rs;
    pthread_mutex_lock(&rs->mu);
    *u = (nsqrt_usage){rs->budget, rs->pinned, rs->largest, rs->all_blocks, rs->all_refinements,
                       rs->pinned + rs->largest, rs->peak, rs->loads, rs->bytes_read, rs->refine_loaded,
                       rs->refine_total, simulate_reads(rs), rs->token_bytes, rs->streaming, rs->prefetch,
                       rs->read_s, rs->predicted};
    pthread_mutex_unlock(&rs->mu);
}

uint32_t nsqrt_block_refine(const nsqrt_model *m, uint32_t b) { return b < m->rs->n_blocks ? m->rs->levels[b] : 0; }
uint32_t nsqrt_block_full(const nsqrt_model *m, uint32_t b) { return b < m->rs->n_blocks ? m->rs->full[b] : 0; }

/* Routing: blocks whose level changes or that are skipped now are unloaded
 * first, so resident bytes never exceed the larger of the old and new sets. */
int nsqrt_route_apply(nsqrt_model *m, const uint8_t *choice, char *err, size_t errlen)
{
    residency *rs = m->rs;
    uint64_t total = 0;
    if (!rs->routed) return FAIL("the model was not opened for routing");
    for (uint32_t b = 0; b < rs->n_blocks; b++) {
        if (choice[b] == NSQRT_ROUTE_SKIP && rs->blk[b].kind != NSQ_BLOCK_LAYERS) return FAIL("block %u cannot be skipped", b);
        uint32_t lv = choice[b] == NSQRT_ROUTE_FULL ? rs->full[b] : 0;
        total += choice[b] == NSQRT_ROUTE_SKIP ? 0 : block_cost(m->f, b, lv);
    }
    if (budget_check(rs->budget, total, "the routed blocks", err, errlen)) return -1;
    pthread_mutex_lock(&rs->mu);
    for (uint32_t b = 0; b < rs->n_blocks; b++) {
        uint32_t lv = choice[b] == NSQRT_ROUTE_FULL ? rs->full[b] : 0;
        if (rs->state[b] == RESIDENT && (choice[b] == NSQRT_ROUTE_SKIP || lv != rs->levels[b])) unload_locked(m, rs, b);
        rs->skip[b] = choice[b] == NSQRT_ROUTE_SKIP;
        rs->levels[b] = lv;
        rs->cost[b] = block_cost(m->f, b, lv);
    }
    for (uint32_t b = 0; b < rs->n_blocks && !rs->failed; b++)
        if (!rs->skip[b] && rs->state[b] == ABSENT) load_locked(m, rs, b);
    rs->token_bytes = 0;
    token_bytes(m, rs);
    int rc = rs->failed ? FAIL("%s", rs->err) : 0;
    pthread_mutex_unlock(&rs->mu);
    return rc;
}

/* Evaluates resident block b as choice c without reading anything: BASE
 * hides its refinement levels, SKIP passes its layers by. */
void model_try_choice(nsqrt_model *m, uint32_t b, int c)
{
    residency *rs = m->rs;
    resident *r = &rs->res[b];
    rs->skip[b] = c == NSQRT_ROUTE_SKIP && rs->blk[b].kind == NSQ_BLOCK_LAYERS;
    for (uint32_t i = 0; i < r->n_mats; i++) wmat_set_refine(&r->mats[i], c == NSQRT_ROUTE_FULL ? r->mats[i].n_loaded : 0);
}
