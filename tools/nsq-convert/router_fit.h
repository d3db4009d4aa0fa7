/* router_fit.h - fitting the router (spec section 11) at conversion time:
 * the damage of each block's SKIP and BASE measured on calibration prompts
 * with the runtime's forward pass, and a ridge regression from the prompt's
 * mean token embedding to those damages. Kept apart from convert.h: the
 * runtime's model.h has names of its own. */
#ifndef NSQ_ROUTER_FIT_H
#define NSQ_ROUTER_FIT_H

#include <stddef.h>
#include <stdint.h>

#define ROUTER_WINDOW 128 /* tokens per calibration prompt: 32 of prompt, the rest scored */

typedef struct {
    uint32_t windows, heldout, window, prompt_tokens, input_dim, block_count;
    double lambda;            /* ridge penalty chosen by cross-validation on the training windows */
    double rho_router;        /* held out: Spearman rank correlation of predicted and measured damage */
    double rho_static;        /* the same for the static policy (mean damage of the training windows) */
    double rho_within;        /* held out, per block and choice across prompts, averaged: what the features add */
    double mse_router, mse_static;
    double seconds;
    uint8_t *mask;            /* [block_count] */
    float *in_mean, *in_scale; /* [input_dim] */
    float *w2, *b2;           /* [3*block_count][input_dim], [3*block_count] */
    double *fixed;            /* [3*block_count]: the static policy, mean measured damage */
} router_fit;

/* Measures on up to `windows` windows of text (len bytes; name is for
 * messages) with the model in model_path (a quantized .nsq with refinements)
 * and fits. -1 with a message in err. */
int router_fit_run(const char *model_path, const char *text, size_t len, const char *name, uint32_t windows, int threads,
                   router_fit *r, char *err, size_t errlen);
void router_fit_free(router_fit *r);

#endif
