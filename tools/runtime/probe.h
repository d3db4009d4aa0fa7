/* probe.h - quick measurements of this machine for nsq-run --plan and bench/. */
#ifndef NSQ_PROBE_H
#define NSQ_PROBE_H

#include <stdint.h>

/* Memory read bandwidth in GB/s: `threads` threads summing a buffer of
 * `bytes` (best of `reps`), or a negative value when out of memory. */
double probe_mem_read(uint32_t threads, uint64_t bytes, int reps);
/* Read bandwidth of path's bytes [off, off+len) in GB/s; with cold, the
 * file's pages are dropped from the page cache first. Negative on error. */
double probe_file_read(const char *path, uint64_t off, uint64_t len, int cold);

#endif
