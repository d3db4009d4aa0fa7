/* pool.h - a fixed set of worker threads that run the tasks of one job at a
 * time; the calling thread works too. Which thread runs a task never changes
 * its result: tasks write disjoint outputs. The runtime's forward pass, the
 * converter and the tools all run their threads through it. */
#ifndef NSQ_POOL_H
#define NSQ_POOL_H

#include <stdint.h>

typedef struct pool pool;
typedef void (*pool_fn)(void *ctx, uint32_t task);
/* thread: which of the pool's threads runs the task, 0 (the caller) to
 * pool_threads - 1; one thread runs one task at a time, so it can index
 * per-thread scratch. */
typedef void (*pool_fn_at)(void *ctx, uint32_t task, uint32_t thread);

/* n_threads in all, the caller included; NULL when out of resources. */
pool *pool_create(uint32_t n_threads);
/* Runs fn(ctx, 0..n_tasks-1) and returns when every task has finished. */
void pool_run(pool *p, pool_fn fn, void *ctx, uint32_t n_tasks);
void pool_run_at(pool *p, pool_fn_at fn, void *ctx, uint32_t n_tasks);
uint32_t pool_threads(const pool *p);
void pool_free(pool *p);

#endif
