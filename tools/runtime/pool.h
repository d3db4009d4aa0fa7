/* pool.h - a fixed set of worker threads that run the tasks of one job at a
 * time; the calling thread works too. Which thread runs a task never changes
 * its result: tasks write disjoint outputs. */
#ifndef NSQ_POOL_H
#define NSQ_POOL_H

#include <stdint.h>

typedef struct pool pool;
typedef void (*pool_fn)(void *ctx, uint32_t task);

/* n_threads in all, the caller included; NULL when out of resources. */
pool *pool_create(uint32_t n_threads);
/* Runs fn(ctx, 0..n_tasks-1) and returns when every task has finished. */
void pool_run(pool *p, pool_fn fn, void *ctx, uint32_t n_tasks);
uint32_t pool_threads(const pool *p);
void pool_free(pool *p);

#endif
