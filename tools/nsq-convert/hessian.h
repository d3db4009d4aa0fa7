/* hessian.h - the second moments of the inputs of every layer matrix, for
 * encoders that feed each column's rounding error forward (GPTQ/LDLQ): per
 * layer and per distinct input (calib.h's CALIB_*), H = mean over the
 * calibration tokens of x x^T. All layers' H at once would not fit in memory
 * on a real model, so they are computed and handed over one layer at a time. */
#ifndef NSQ_HESSIAN_H
#define NSQ_HESSIAN_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t dim;    /* 0 when the layer has no such input */
    uint64_t tokens; /* tokens averaged over */
    float *h;        /* [dim][dim], both triangles: the mean of x x^T */
} hessian_site;

/* Called once per layer, in order, with CALIB_N_INPUTS sites, whose memory is
 * reused once it returns. Nonzero stops the run: hessian_run then returns -1
 * with the message fn left in err. */
typedef int (*hessian_layer_fn)(void *ctx, uint32_t layer, const hessian_site *sites, char *err, size_t errlen);

/* Runs the model in model_path (an unquantized .nsq) over ids[0..n_ids), cut
 * into windows of `window` tokens (at most the model's context) each run from
 * position 0, and calls fn with each layer's sites. Only one layer block of
 * the model is resident at a time. The result does not depend on threads.
 * -1 with a message in err. */
int hessian_run(const char *model_path, const int32_t *ids, uint64_t n_ids, uint32_t window, int threads,
                hessian_layer_fn fn, void *ctx, char *err, size_t errlen);

#endif
