/* lattice.h - the converter's LATTICE encoder (spec: LATTICE payload).
 *
 * A matrix is stored in a rotated basis, W' = W R^T, where R applies random
 * signs and a Hadamard transform to each block of input columns: the rotated
 * rows look Gaussian, which the E8 codebook fits. Each 8 weights of a row are
 * coded in residual stages; with calibration, the error of each group of 8
 * columns is fed back into the columns not yet coded (LDLQ), weighted by the
 * inputs' second moment H, so that the layer's output error, not the
 * weights', is what the codes minimise. */
#ifndef NSQ_LATTICE_H
#define NSQ_LATTICE_H

#include <stddef.h>
#include <stdint.h>

#include "nsq.h"

/* A LATTICE type: its stages' kinds (nsq_lattice_kind), base first, in
 * passes: bit s of split set starts a new pass at stage s. The end of each
 * pass is a depth, a code on its own (what refinement levels need): each
 * depth has its own target, the weights plus its own error fed forward, and
 * a pass's stages code that target blended with the deeper ones'. The
 * stages of one pass are coded together, and are the better code of the
 * whole when nothing stops before its end. */
typedef struct lat_type {
    uint32_t n_stages, kind[NSQ_LATTICE_MAX_STAGES];
    uint32_t split;
    const char *name;
    float blend; /* the weight of the next depth's target in a pass's blend, of the one after its square, ... */
} lat_type;

/* The types a matrix may take, fewest bits first. */
extern const lat_type lat_types[];
extern const uint32_t lat_n_types;
/* The types of files with refinement levels, a matrix's type at each depth
 * a prefix of its type at the next; their passes (split) are set from the
 * depths that matrix stops at. Index LAT_PROBE_TYPE is e8+e8, as in
 * lat_types. */
extern const lat_type lat_nested[];
extern const uint32_t lat_n_nested;
/* 1 when a's stages are the first stages of b. */
int lat_prefix(const lat_type *a, const lat_type *b);

/* What the matrices reading one input (q/k/v, gate/up, o, down) share: the
 * rotation and, with calibration, the rotated second moment's factors. */
typedef struct {
    uint64_t cols;
    uint32_t block;  /* B: the largest power of two in 8..16384 dividing cols */
    uint8_t *signs;  /* cols/8 bytes, as the payload stores them */
    float *hdiag;    /* [cols] diagonal of the rotated, damped H; NULL without H */
    float *v;        /* [cols][cols] U_jj^-1 U per group of 8 rows (U: upper Cholesky of H'^-1); NULL without H */
    float *uinv;     /* [cols/8][8][8] U_jj^-1, for the proxy loss */
    double damp;     /* damping added to H', as a fraction of its mean diagonal */
} lat_site;

/* Rotation block for cols columns; 0 when LATTICE cannot store them (cols % 8). */
uint32_t lat_block(uint64_t cols);

/* Sets up a site of cols columns with signs drawn from seed, and, when h
 * (cols x cols, the mean of x x^T) is given, its rotated factors. -1 with a
 * message when out of memory or when H cannot be factored. */
int lat_site_init(lat_site *s, uint64_t cols, uint64_t seed, const float *h, char *err, size_t errlen);
void lat_site_free(lat_site *s);

/* Payload bytes of a rows x cols matrix of type t. */
uint64_t lat_size(const lat_type *t, uint64_t rows, uint64_t cols);

/* The stage after the pass of t that starts at stage s0. */
uint32_t lat_pass_end(const lat_type *t, uint32_t s0);
/* The number of passes of t: 1 + the bits of split below n_stages. */
uint32_t lat_passes(const lat_type *t);

/* Encodes w (rows x cols, row-major, original basis) as a LATTICE payload of
 * type t into out (lat_size bytes). proxy (if not NULL) receives, for each
 * pass, the output-error proxy when the stages up to that pass's end are
 * kept: sum over rows of d H' d^T for the coding error d in the rotated basis
 * (with H' damped), or sum of d^2 without H. Deterministic for any threads.
 * -1 when out of memory, -2 when a weight is not finite or too large for the
 * f16 scales. */
int lat_encode(const lat_site *s, const float *w, uint64_t rows, const lat_type *t, int threads, uint8_t *out,
               double *proxy);

#endif
