/*
 * generate.c - a small program that runs a model through the installed
 * runtime library, libnsqrt, and its one header, nsqrt.h: it opens an .nsq
 * file (the model check included), runs a prompt of token ids, and prints
 * the ids greedy decoding continues it with.
 *
 *   generate FILE.nsq IDS N          IDS: comma-separated prompt ids
 *
 * Build it against the installed libraries (`make install PREFIX=...`): the
 * runtime is static only, and needs libnsq and the threads library:
 *
 *   cc generate.c $(pkg-config --cflags nsq) -o generate \
 *      -LPREFIX/lib -l:libnsqrt.a $(pkg-config --static --libs nsq) -lpthread -lm
 */
#include <nsqrt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* "1,2,3" into ids[], at most max of them: their count, or 0 if malformed. */
static uint32_t parse_ids(const char *s, int32_t *ids, uint32_t max)
{
    uint32_t n = 0;
    for (char *end; *s && n < max; s = *end ? end + 1 : end) {
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > INT32_MAX || (*end && *end != ',')) return 0;
        ids[n++] = (int32_t)v;
    }
    return *s ? 0 : n;
}

int main(int argc, char **argv)
{
    int32_t ids[256];
    uint32_t n = argc == 4 ? parse_ids(argv[2], ids, 256) : 0;
    long steps = argc == 4 ? strtol(argv[3], NULL, 10) : 0;
    if (!n || steps < 1 || steps > 1024) {
        fprintf(stderr, "usage: generate FILE.nsq IDS N   (IDS: up to 256 comma-separated ids; N: 1..1024)\n");
        return 2;
    }
    char err[1024];
    nsqrt_opts o = {0, -1, 0, 0, NSQRT_UNROUTED};
    nsqrt_model *m;
    if (nsqrt_open(argv[1], &o, &m, err, sizeof err)) {
        fprintf(stderr, "generate: %s\n", err);
        return 1;
    }
    const nsqrt_config *c = nsqrt_model_config(m);
    nsqrt_state *s = nsqrt_state_new(m, n, 1);
    float *logits = malloc(c->vocab * sizeof *logits);
    int rc = !s || !logits || n + (uint32_t)steps > c->ctx;
    for (uint32_t i = 0; !rc && i < n; i++) rc = ids[i] >= (int32_t)c->vocab;
    if (rc) fprintf(stderr, "generate: out of memory, an id past the vocabulary, or past the context\n");
    if (!rc) rc = nsqrt_forward(m, s, ids, n, 0, logits, 0);
    for (long k = 0; !rc && k < steps; k++) {
        int32_t next = nsqrt_argmax(logits, c->vocab);
        printf("%s%d", k ? " " : "", next);
        if (k + 1 < steps) rc = nsqrt_forward(m, s, &next, 1, n + (uint32_t)k, logits, 0);
    }
    printf("\n");
    free(logits);
    nsqrt_state_free(s);
    nsqrt_close(m);
    return rc ? 1 : 0;
}
