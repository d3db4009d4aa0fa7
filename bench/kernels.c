/* kernels.c - times the runtime's matrix-vector kernels on one TIERED matrix
 * of a TinyLlama-1.1B shape, at each kernel level this CPU runs:
 *   bench/kernels [ROWS COLS [TIERS]]   (TIERS like 10:20:70, the Q8:Q4:Q2 split)
 * Prints ns per 64-weight group and the weight bytes read per second. */
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

int main(int argc, char **argv)
{
    uint32_t rows = argc > 2 ? (uint32_t)atoi(argv[1]) : 5632, cols = argc > 2 ? (uint32_t)atoi(argv[2]) : 2048;
    unsigned p8 = 10, p4 = 20, p2 = 70;
    if (argc > 3 && sscanf(argv[3], "%u:%u:%u", &p8, &p4, &p2) != 3) return fprintf(stderr, "bad TIERS\n"), 2;
    uint64_t ng = (uint64_t)rows * cols / 64, n[4] = {0, 0, 0, 0};
    float *w = malloc((size_t)rows * cols * sizeof *w), *x = malloc(cols * sizeof *x), *y = malloc(rows * sizeof *y);
    uint8_t *tiers = malloc(ng);
    srand(1);
    for (size_t i = 0; i < (size_t)rows * cols; i++) w[i] = (float)((double)rand() / RAND_MAX) - 0.5f;
    for (uint32_t i = 0; i < cols; i++) x[i] = (float)((double)rand() / RAND_MAX) - 0.5f;
    for (uint64_t g = 0; g < ng; g++) {
        unsigned r = (unsigned)rand() % (p8 + p4 + p2);
        n[tiers[g] = r < p8 ? 1 : r < p8 + p4 ? 2 : 3]++;
    }
    uint64_t size = nsq_tiered_size(ng, 64, n);
    uint8_t *pay = malloc(size);
    wmat m = {0};
    act8 a = {0};
    if (nsq_quantize_tiered(w, rows, cols, 64, tiers, NULL, pay, size) ||
        nsq_view_init(NSQ_SCHEME_TIERED, rows, cols, 64, pay, size, &m.v, NULL) || wmat_index(&m) ||
        act8_reserve(&a, 1, cols))
        return fprintf(stderr, "setup failed\n"), 1;
    act8_quantize(&a, x, 1, cols);
    printf("%u x %u, tiers %u:%u:%u, %.1f MB\n", rows, cols, p8, p4, p2, size / 1e6);
    for (kern_level k = KERN_SCALAR; k <= kern_detect(); k++) {
        int reps = k == KERN_SCALAR ? 3 : 50;
        double best = 1e9;
        for (int r = 0; r < reps; r++) {
            double t0 = now();
            kern_rows(k, &m, 0, x, &a, 1, 0, rows, y, rows);
            double dt = now() - t0;
            best = dt < best ? dt : best;
        }
        printf("%-7s %7.2f ns/group %7.2f GB/s\n", kern_name(k), best * 1e9 / (double)ng, size / best / 1e9);
    }
    return 0;
}
