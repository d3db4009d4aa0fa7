/* membw.c - this machine's memory read bandwidth, as nsq-run --plan measures it:
 *   bench/membw [THREADS [MiB]]   prints GB/s, best of 5 passes over a 1 GiB buffer */
#include <stdio.h>
#include <stdlib.h>

#include "nsqrt.h"

int main(int argc, char **argv)
{
    uint32_t threads = argc > 1 ? (uint32_t)atoi(argv[1]) : 1;
    uint64_t mib = argc > 2 ? (uint64_t)atoll(argv[2]) : 1024;
    double gbs = nsqrt_probe_mem_read(threads, mib << 20, 5);
    if (gbs < 0) return fprintf(stderr, "membw: out of memory\n"), 1;
    printf("%.2f GB/s (%u threads)\n", gbs, threads);
    return 0;
}
