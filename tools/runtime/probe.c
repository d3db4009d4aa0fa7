/* probe.c - a STREAM-like read probe (each thread sums its slice of a
 * buffer larger than the caches) and a timed positioned read of a file. */
#include "nsqrt.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    const uint64_t *buf;
    uint64_t words, slices;
    uint64_t sums[64];
} sum_job;

static void sum_slice(void *ctx, uint32_t k)
{
    sum_job *j = ctx;
    uint64_t lo = j->words * k / j->slices, hi = j->words * (k + 1) / j->slices, a = 0, b = 0, c = 0, d = 0;
    for (uint64_t i = lo; i + 4 <= hi; i += 4) a += j->buf[i], b += j->buf[i + 1], c += j->buf[i + 2], d += j->buf[i + 3];
    j->sums[k] = a + b + c + d; /* kept, so the reads are not optimised away */
}

double nsqrt_probe_mem_read(uint32_t threads, uint64_t bytes, int reps)
{
    threads = threads < 1 ? 1 : threads > 64 ? 64 : threads;
    uint64_t *buf = malloc(bytes);
    nsqrt_pool *p = nsqrt_pool_create(threads);
    if (!buf || !p) {
        free(buf);
        nsqrt_pool_free(p);
        return -1;
    }
    memset(buf, 1, bytes);
    sum_job j = {buf, bytes / 8, threads, {0}};
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        nsqrt_pool_run(p, sum_slice, &j, threads);
        double gbs = (double)bytes / (now() - t0) / 1e9;
        best = gbs > best ? gbs : best;
    }
    nsqrt_pool_free(p);
    free(buf);
    return best;
}

double nsqrt_probe_file_read(const char *path, uint64_t off, uint64_t len, int cold)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char *buf = malloc(1 << 20);
    double gbs = -1;
    if (fd >= 0 && buf) {
        if (cold) posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        uint64_t done = 0;
        double t0 = now();
        while (done < len) {
            ssize_t r = pread(fd, buf, len - done < (1 << 20) ? len - done : (1 << 20), (off_t)(off + done));
            if (r <= 0) break;
            done += (uint64_t)r;
        }
        double dt = now() - t0;
        if (done == len && dt > 0) gbs = (double)len / dt / 1e9;
    }
    if (fd >= 0) close(fd);
    free(buf);
    return gbs;
}
