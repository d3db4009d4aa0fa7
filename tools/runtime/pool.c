/* pool.c - workers spin briefly on a job counter before they sleep: a token's
 * forward pass posts a job per matrix, hundreds a second, and waking a sleeping
 * thread costs more than most of them. The caller waiting for the last tasks
 * of a job spins as briefly: a converter's or a tool's tasks take seconds. */
#include "nsqrt.h"

#include <immintrin.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define SPINS 20000 /* ~100 us of pause instructions before sleeping */

struct nsqrt_pool {
    uint32_t n;
    pthread_t *tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* job number << 32 | next task to claim: one word, so a late worker can
     * never claim a task of a job other than the one it saw */
    _Atomic uint64_t next;
    atomic_uint done; /* tasks finished in the current job */
    atomic_int stop;
    atomic_int waiting;  /* the caller sleeps on idle until done reaches n_tasks */
    atomic_uint started; /* workers that have taken their thread number */
    atomic_uint n_tasks; /* read by late workers while the next job is set up */
    nsqrt_pool_fn fn;           /* fn, fn_at and ctx are read only by a worker holding a task */
    nsqrt_pool_fn_at fn_at;
    void *ctx;
    pthread_cond_t idle;
};

static void cpu_relax(void)
{
#if defined(__x86_64__)
    _mm_pause();
#endif
}

static uint32_t job_of(uint64_t v) { return (uint32_t)(v >> 32); }

static void work(nsqrt_pool *p, uint32_t job, uint32_t self)
{
    for (;;) {
        uint64_t v = atomic_load(&p->next);
        uint32_t n = atomic_load(&p->n_tasks);
        if (job_of(v) != job || (uint32_t)v >= n) return;
        if (atomic_compare_exchange_weak(&p->next, &v, v + 1)) { /* the job cannot end before done counts this */
            if (p->fn_at) p->fn_at(p->ctx, (uint32_t)v, self);
            else p->fn(p->ctx, (uint32_t)v);
            if (atomic_fetch_add(&p->done, 1) + 1 == n && atomic_load(&p->waiting)) {
                pthread_mutex_lock(&p->mu);
                pthread_cond_signal(&p->idle);
                pthread_mutex_unlock(&p->mu);
            }
        }
    }
}

static void *worker(void *arg)
{
    nsqrt_pool *p = arg;
    uint32_t seen = 0, g, self = atomic_fetch_add(&p->started, 1) + 1;
    for (;;) {
        for (int i = 0; (g = job_of(atomic_load(&p->next))) == seen && i < SPINS; i++) cpu_relax();
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = job_of(atomic_load(&p->next))) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = g;
        work(p, g, self);
    }
}

nsqrt_pool *nsqrt_pool_create(uint32_t n_threads)
{
    nsqrt_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads ? n_threads : 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_cond_init(&p->idle, NULL);
    if (!(p->tid = calloc(p->n, sizeof *p->tid))) {
        free(p);
        return NULL;
    }
    for (uint32_t i = 1; i < p->n; i++)
        if (pthread_create(&p->tid[i], NULL, worker, p)) {
            p->n = i; /* run with the threads that started */
            break;
        }
    return p;
}

static void run(nsqrt_pool *p, nsqrt_pool_fn fn, nsqrt_pool_fn_at fn_at, void *ctx, uint32_t n_tasks)
{
    if (p->n == 1 || n_tasks == 1) {
        for (uint32_t t = 0; t < n_tasks; t++) fn_at ? fn_at(ctx, t, 0) : fn(ctx, t);
        return;
    }
    /* close the previous job first, so no late claim can meet the new n_tasks */
    uint32_t job = job_of(atomic_load(&p->next)) + 2;
    atomic_store(&p->next, (uint64_t)(job - 1) << 32 | UINT32_MAX);
    p->fn = fn, p->fn_at = fn_at, p->ctx = ctx;
    atomic_store(&p->n_tasks, n_tasks);
    atomic_store(&p->done, 0);
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->next, (uint64_t)job << 32);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    work(p, job, 0);
    for (int i = 0; atomic_load(&p->done) < n_tasks && i < SPINS; i++) cpu_relax();
    if (atomic_load(&p->done) < n_tasks) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->waiting, 1); /* the last task's worker sees it, or this sees its count */
        while (atomic_load(&p->done) < n_tasks) pthread_cond_wait(&p->idle, &p->mu);
        atomic_store(&p->waiting, 0);
        pthread_mutex_unlock(&p->mu);
    }
}

void nsqrt_pool_run(nsqrt_pool *p, nsqrt_pool_fn fn, void *ctx, uint32_t n_tasks) { run(p, fn, NULL, ctx, n_tasks); }
void nsqrt_pool_run_at(nsqrt_pool *p, nsqrt_pool_fn_at fn, void *ctx, uint32_t n_tasks) { run(p, NULL, fn, ctx, n_tasks); }

void nsqrt_pool_free(nsqrt_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (uint32_t i = 1; i < p->n; i++) pthread_join(p->tid[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->idle);
    free(p->tid);
    free(p);
}
