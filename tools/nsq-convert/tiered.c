/* tiered.c - the converter's TIERED encoder: a matrix and its chosen tiers
 * to the payload, an optional refinement level and their squared errors, and
 * the error of one group at one tier that the tier choice weighs. */
#include <math.h>
#include <stdlib.h>

#include "convert.h"

/* Squared error of storing one group at tier t, weighted by wt[G] if not
 * NULL, measured by encoding it the way the tensor will be. */
double tiered_group_error(const float *x, const float *wt, uint32_t G, uint8_t tier)
{
    uint8_t buf[1024];
    float y[256];
    uint64_t n[4] = {0, 0, 0, 0};
    n[tier] = 1;
    uint64_t size = nsq_tiered_size(1, G, n);
    nsq_view v;
    if (nsq_quantize_tiered(x, 1, G, G, &tier, wt, buf, size) || nsq_view_init(NSQ_SCHEME_TIERED, 1, G, G, buf, size, &v, NULL) ||
        nsq_dequantize_rows(&v, NULL, 0, 0, 1, y))
        return INFINITY; /* out of f16 range: this tier cannot hold the group */
    double e = 0;
    for (uint32_t j = 0; j < G; j++) e += (wt ? (double)wt[j] : 1.0) * ((double)x[j] - y[j]) * ((double)x[j] - y[j]);
    return e;
}

int encode_tiered(const float *w, uint64_t rows, uint64_t cols, uint32_t G, const uint8_t *tiers, const float *cw,
                  uint32_t refine_bits, encoded *e)
{
    uint64_t ng = rows * cols / G;
    for (uint64_t g = 0; g < ng; g++) e->n_tier[tiers[g]]++;
    e->scheme = NSQ_SCHEME_TIERED;
    e->n_dims = 2;
    e->dims[0] = rows;
    e->dims[1] = cols;
    e->group_size = G;
    e->n_groups = ng;
    e->size = nsq_tiered_size(ng, G, e->n_tier);
    if (!(e->data = malloc(e->size))) return -1;
    if (nsq_quantize_tiered(w, rows, cols, G, tiers, cw, e->data, e->size)) return -2;
    nsq_view v;
    if (nsq_view_init(NSQ_SCHEME_TIERED, rows, cols, G, e->data, e->size, &v, NULL)) return -2;
    if (refine_bits && e->n_tier[NSQ_TIER_F16] < ng) {
        e->refine_size = nsq_refine_size(ng - e->n_tier[NSQ_TIER_F16], G, refine_bits);
        if (!(e->refine = malloc(e->refine_size))) return -1;
        if (nsq_quantize_refinement(w, &v, NULL, 0, refine_bits, e->refine, e->refine_size)) return -2;
    }
    nsq_refine_view rv;
    if (e->refine && nsq_refine_view_init(&v, refine_bits, e->refine, e->refine_size, &rv, NULL)) return -2;
    /* decode in chunks of about 1M weights: each call re-counts the tier map up to its first row */
    uint64_t chunk = cols >= (1u << 20) ? 1 : (1u << 20) / cols;
    float *y = malloc(chunk * cols * sizeof *y);
    if (!y) return -1;
    for (int refined = 0; refined <= (e->refine != NULL); refined++)
        for (uint64_t r = 0; r < rows; r += chunk) {
            uint64_t nr = rows - r < chunk ? rows - r : chunk;
            double sum = 0;
            nsq_dequantize_rows(&v, &rv, (uint32_t)refined, r, nr, y);
            for (uint64_t k = 0; k < nr * cols; k++) sum += ((double)w[r * cols + k] - y[k]) * ((double)w[r * cols + k] - y[k]);
            *(refined ? &e->sq_error_refined : &e->sq_error) += sum;
        }
    free(y);
    return 0;
}
