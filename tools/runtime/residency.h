/* residency.h - residency.c (which blocks are resident, within the budget)
 * and what model.c, forward.c and route.c ask of it. */
#ifndef NSQ_RESIDENCY_H
#define NSQ_RESIDENCY_H

#include "model.h"

/* One block of the file while resident: its bytes, its matrices (packed) and
 * its vectors (decoded). */
typedef struct {
    nsq_loaded base, ref[NSQ_MAX_REFINEMENTS];
    uint32_t n_ref;
    wmat *mats;
    float **vecs;
    uint32_t n_mats, n_vecs;
} resident;

/* Loads block b with `levels` refinement levels and places its tensors in m. */
int block_load(const nsqrt_model *m, uint32_t b, uint32_t levels, resident *r, char *err, size_t errlen);
/* Takes block b's tensors out of m and frees them. */
void block_unload(const nsqrt_model *m, uint32_t b, resident *r);
/* Resident bytes of block b with `levels` refinement levels, from the directory. */
uint64_t block_cost(const nsq_file *f, uint32_t b, uint32_t levels);

/* The one check of --max-memory: 0 when need bytes of resident weights fit
 * budget (0: no limit), else -1 with a message naming what needs them. */
int budget_check(uint64_t budget, uint64_t need, const char *what, char *err, size_t errlen);

int residency_init(nsqrt_model *m, const char *path, const nsqrt_opts *o, char *err, size_t errlen);
void residency_free(nsqrt_model *m);

/* For the forward pass: makes layer L's block resident (and starts reading
 * the next one), -1 on a read error; whether routing skips L's block. */
int model_need_layer(const nsqrt_model *m, uint32_t L);
int model_layer_skipped(const nsqrt_model *m, uint32_t L);
/* For routing: evaluates a resident block as choice c (SKIP, BASE, or FULL =
 * as loaded) without reading anything, to measure what each choice costs. */
void model_try_choice(nsqrt_model *m, uint32_t b, int c);

#endif
