/* kernels.c - times the runtime's matrix-vector kernels on matrices of a
 * TinyLlama-1.1B shape, at each kernel level this CPU runs: one TIERED
 * matrix, then LATTICE ones of types E8, E8+E8, E8+SIGN and E8+E8S:
 *   bench/kernels [ROWS COLS [TIERS [BLOCK [TOKENS]]]]   (TIERS like 10:20:70,
 *   the Q8:Q4:Q2 split; BLOCK the LATTICE rotation block, 256 by default;
 *   TOKENS the inputs multiplied at once, 1 by default, as a prompt does)
 * Prints ns per weight and input (and per 64-weight group) and the weight
 * bytes read per second; LATTICE times leave out the input rotation (timed
 * apart), done once per input for every matrix that shares it. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void timed(const char *what, const wmat *m, const float *x, const act8 *a, uint32_t nt, float *y, uint64_t size)
{
    uint32_t rows = (uint32_t)m->v.rows;
    double weights = (double)rows * (double)m->v.cols * nt;
    printf("%s, %.1f MB\n", what, size / 1e6);
    for (kern_level k = KERN_SCALAR; k <= kern_detect(); k++) {
        int reps = k == KERN_SCALAR ? 3 : 50;
        double best = 1e9;
        for (int r = 0; r < reps; r++) {
            double t0 = now();
            kern_rows(k, m, 0, x, a, nt, 0, rows, y, rows);
            double dt = now() - t0;
            best = dt < best ? dt : best;
        }
        printf("  %-7s %7.3f ns/weight %7.2f ns/group %7.2f GB/s\n", kern_name(k), best * 1e9 / weights,
               best * 64e9 / weights, size * nt / best / 1e9);
    }
}

/* A LATTICE payload of random codes and scales (layout: spec, LATTICE). */
static uint8_t *lattice_payload(uint32_t rows, uint32_t cols, uint32_t B, uint32_t S, const uint32_t *kinds, uint64_t *size)
{
    uint64_t nb = cols / B, off = 64 + (cols / 8 + 63) / 64 * 64;
    *size = nsq_lattice_payload_size(rows, cols, B, S, kinds);
    uint8_t *p = *size ? calloc(*size, 1) : NULL;
    if (!p) return NULL;
    p[0] = (uint8_t)S;
    for (uint32_t s = 0; s < S; s++) p[1 + s] = (uint8_t)kinds[s];
    for (uint32_t i = 0; i < cols / 8; i++) p[64 + i] = (uint8_t)rand();
    for (uint32_t s = 0; s < S; s++) {
        for (uint64_t i = 0; i < rows * nb; i++) {
            uint16_t h = nsq_f32_to_f16((float)((double)rand() / RAND_MAX) * 0.01f + 0.001f);
            p[off + 2 * i] = (uint8_t)h, p[off + 2 * i + 1] = (uint8_t)(h >> 8);
        }
        off += (2 * rows * nb + 63) / 64 * 64;
        uint64_t n = (uint64_t)rows * cols * nsq_lattice_kind_bits(kinds[s]) / 8;
        for (uint64_t i = 0; i < n; i++) p[off + i] = (uint8_t)rand();
        off += (n + 63) / 64 * 64;
    }
    return p;
}

int main(int argc, char **argv)
{
    uint32_t rows = argc > 2 ? (uint32_t)atoi(argv[1]) : 5632, cols = argc > 2 ? (uint32_t)atoi(argv[2]) : 2048;
    uint32_t B = argc > 4 ? (uint32_t)atoi(argv[4]) : 256, nt = argc > 5 ? (uint32_t)atoi(argv[5]) : 1;
    unsigned p8 = 10, p4 = 20, p2 = 70;
    if (argc > 3 && sscanf(argv[3], "%u:%u:%u", &p8, &p4, &p2) != 3) return fprintf(stderr, "bad TIERS\n"), 2;
    uint64_t ng = (uint64_t)rows * cols / 64, n[4] = {0, 0, 0, 0};
    if (nt < 1) return fprintf(stderr, "bad TOKENS\n"), 2;
    float *w = malloc((size_t)rows * cols * sizeof *w), *x = malloc((size_t)nt * cols * sizeof *x);
    float *y = malloc((size_t)nt * rows * sizeof *y), *xr = malloc((size_t)nt * cols * sizeof *xr);
    uint8_t *tiers = malloc(ng);
    srand(1);
    for (size_t i = 0; i < (size_t)rows * cols; i++) w[i] = (float)((double)rand() / RAND_MAX) - 0.5f;
    for (size_t i = 0; i < (size_t)nt * cols; i++) x[i] = (float)((double)rand() / RAND_MAX) - 0.5f;
    for (uint64_t g = 0; g < ng; g++) {
        unsigned r = (unsigned)rand() % (p8 + p4 + p2);
        n[tiers[g] = r < p8 ? 1 : r < p8 + p4 ? 2 : 3]++;
    }
    uint64_t size = nsq_tiered_size(ng, 64, n);
    uint8_t *pay = malloc(size);
    wmat m = {0};
    act8 a = {.chunks = 1};
    if (nsq_quantize_tiered(w, rows, cols, 64, tiers, NULL, pay, size) ||
        nsq_view_init(NSQ_SCHEME_TIERED, rows, cols, 64, pay, size, &m.v, NULL) || wmat_index(&m) ||
        act8_reserve(&a, nt, cols))
        return fprintf(stderr, "setup failed\n"), 1;
    act8_quantize(&a, x, nt, cols);
    char what[128];
    snprintf(what, sizeof what, "TIERED %u x %u, tiers %u:%u:%u", rows, cols, p8, p4, p2);
    timed(what, &m, x, &a, nt, y, size);
    static const struct { uint32_t S, kinds[2]; const char *name; } types[] = {
        {1, {NSQ_LAT_E8}, "E8"}, {2, {NSQ_LAT_E8, NSQ_LAT_E8}, "E8+E8"},
        {2, {NSQ_LAT_E8, NSQ_LAT_SIGN}, "E8+SIGN"}, {2, {NSQ_LAT_E8, NSQ_LAT_E8S}, "E8+E8S"}};
    for (uint32_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        wmat l = {0};
        uint64_t lsize;
        uint8_t *lp = lattice_payload(rows, cols, B, types[t].S, types[t].kinds, &lsize);
        if (!lp || nsq_view_init(NSQ_SCHEME_LATTICE, rows, cols, B, lp, lsize, &l.v, NULL) || wmat_index(&l))
            return fprintf(stderr, "LATTICE setup failed (BLOCK must be a power of two in 8..16384 dividing COLS)\n"), 1;
        double best = 1e9;
        for (int r = 0; r < 50; r++) {
            double t0 = now();
            kern_rotate(&l, x, nt, xr);
            best = now() - t0 < best ? now() - t0 : best;
        }
        printf("LATTICE input rotation, blocks of %u: %.2f us\n", B, best * 1e6);
        act8_quantize(&a, xr, nt, cols);
        snprintf(what, sizeof what, "LATTICE %u x %u, %s, blocks of %u", rows, cols, types[t].name, B);
        timed(what, &l, xr, &a, nt, y, lsize);
        free(lp);
    }
    return 0;
}
