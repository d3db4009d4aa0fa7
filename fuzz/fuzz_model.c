/*
 * fuzz_model.c - libFuzzer target for the runtime's load path: the input is
 * an .nsq file, opened as a model (nsqrt_open: the model check, every block
 * loaded and placed) and then run for a few tokens, once with every block
 * resident and once streaming under a memory budget. Checksums are off so
 * that mutations reach the model layer instead of stopping at R-SEC-7.
 *
 * Invariants: a file that nsqrt_open accepts passes the model check and runs
 * without a sanitizer report; tokenizer ids are below the vocabulary; it also
 * opens streaming at the minimum budget it reports, with identical logits
 * when it has no refinements.
 *
 *   make build-fuzz/fuzz_model && build-fuzz/fuzz_model -max_len=65536 CORPUS fuzz/corpus/fuzz_model
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "nsqrt.h"
#include "nsq.h"

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Runs are kept cheap: no KV cache over this many floats. */
#define MAX_KV_FLOATS (1u << 22)

/* Runs a few tokens (the tokenizer's, or ids at both ends of the vocabulary)
 * and returns their logits (malloc'ed), or NULL when not run. */
static float *run_tokens(const nsqrt_model *m, size_t *n_logits)
{
    const nsqrt_config *c = nsqrt_model_config(m);
    const nsq_tokenizer *tok = nsqrt_model_tokenizer(m);
    if ((uint64_t)c->n_layers * c->ctx * c->n_kv_heads * c->head_dim > MAX_KV_FLOATS || c->ctx < 3) return NULL;
    int32_t fixed[3] = {0, (int32_t)(c->vocab - 1), (int32_t)(c->vocab / 2)}, *ids = fixed;
    size_t n = 3;
    if (tok && nsq_tokenize(tok, "Hi, w\xc3\xb6rld!", 11, 1, &ids, &n) == NSQ_OK) {
        for (size_t i = 0; i < n; i++) CHECK(ids[i] >= 0 && (uint32_t)ids[i] < c->vocab);
        n = n > 3 ? 3 : n;
    }
    float *logits = n ? malloc(n * (size_t)c->vocab * sizeof *logits) : NULL;
    nsqrt_state *s = logits ? nsqrt_state_new(m, 3, 1) : NULL;
    int ok = s && !nsqrt_forward(m, s, ids, (uint32_t)n, 0, logits, 1);
    nsqrt_state_free(s);
    if (ids != fixed) free(ids);
    if (!ok) free(logits);
    *n_logits = n * c->vocab;
    return ok ? logits : NULL;
}

static int open_model(const char *path, uint64_t budget, nsqrt_model **m, char *err, size_t errlen)
{
    nsqrt_opts o = {NSQ_OPEN_NO_CHECKSUMS, -1, budget, 0, NSQRT_UNROUTED};
    err[0] = 0;
    int rc = nsqrt_open(path, &o, m, err, errlen);
    CHECK(!rc || err[0]);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz_model", 0);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size) abort();
    char path[64], err[512];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    nsqrt_model *m;
    if (open_model(path, 0, &m, err, sizeof err)) {
        close(fd);
        return 0;
    }
    nsq_file *f;
    nsq_diag d;
    nsqrt_config c;
    CHECK(nsq_open(path, NSQ_OPEN_NO_CHECKSUMS, &f, &d) == NSQ_OK);
    CHECK(nsqrt_check_file(f, &c, NULL, err, sizeof err) == 0);
    nsq_info info;
    nsq_get_info(f, &info);
    nsq_close(f);
    size_t n_all = 0, n_streamed = 0;
    float *all = run_tokens(m, &n_all);
    nsqrt_usage u;
    nsqrt_get_usage(m, &u);
    nsqrt_close(m);
    /* Streaming at the smallest budget the file allows gives the same logits
     * (it runs blocks from their base: so only for files without refinements). */
    CHECK(open_model(path, u.minimum, &m, err, sizeof err) == 0);
    float *streamed = run_tokens(m, &n_streamed);
    CHECK(!all == !streamed && n_all == n_streamed);
    CHECK(!all || info.refinement_count || memcmp(all, streamed, n_all * sizeof *all) == 0);
    nsqrt_close(m);
    free(all), free(streamed);
    close(fd);
    return 0;
}
