/*
 * consumer.c - a small program that uses an installed libnsq through its
 * public header only: it opens an .nsq file, prints a few metadata values,
 * decodes one tensor to f32 (with every refinement level the tensor has) and
 * prints its element count and a checksum of the values.
 *
 *   consumer FILE.nsq [TENSOR]        TENSOR defaults to the file's first tensor
 *
 * The checksum is the XXH3-64 (nsq_xxh3) of the decoded values as they lie in
 * memory: their little-endian f32 bytes on the usual hosts, so `xxhsum -H3`
 * over the same bytes prints the same number.
 *
 * Build it against the installed library (`make install PREFIX=...`), from
 * any directory:
 *
 *   export PKG_CONFIG_PATH=PREFIX/lib/pkgconfig   # when PREFIX is not searched
 *   cc consumer.c $(pkg-config --cflags nsq) -o consumer $(pkg-config --libs nsq)
 *   LD_LIBRARY_PATH=PREFIX/lib ./consumer model.nsq   # when PREFIX/lib is not searched
 *
 * or against the static library, naming the archive since libnsq.so lies
 * beside it (--static adds the libraries libnsq.a needs):
 *
 *   cc consumer.c $(pkg-config --cflags nsq) -o consumer \
 *      $(pkg-config --static --libs nsq | sed 's/-lnsq /-l:libnsq.a /')
 */
#include <nsq.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Reports a failed call; for file problems the diagnostic adds the spec's
 * rule id and the file offset. Returns the exit status. */
static int fail(const char *what, nsq_status s, const nsq_diag *d)
{
    fprintf(stderr, "consumer: %s: %s: %s", what, nsq_status_name(s), nsq_strerror(s));
    if (d && d->status == s && d->message[0]) fprintf(stderr, ": %s", d->message);
    if (d && d->status == s && d->rule[0]) fprintf(stderr, " (rule %s)", d->rule);
    fputc('\n', stderr);
    return 1;
}

/* Required metadata keys (spec section 5.2) are present in every valid file. */
static int describe(const nsq_file *f)
{
    nsq_info info;
    const char *arch;
    size_t len;
    uint64_t layers, hidden, vocab;
    nsq_status s;
    nsq_get_info(f, &info);
    if ((s = nsq_meta_str(f, "general.architecture", 0, &arch, &len)) ||
        (s = nsq_meta_u64(f, "model.n_layers", 0, &layers)) ||
        (s = nsq_meta_u64(f, "model.hidden_size", 0, &hidden)) ||
        (s = nsq_meta_u64(f, "model.vocab_size", 0, &vocab)))
        return fail("metadata", s, NULL);
    printf("format: %u.%u\n", info.version_major, info.version_minor);
    printf("architecture: %.*s\n", (int)len, arch); /* strings are not NUL-terminated */
    printf("layers: %llu\nhidden_size: %llu\nvocab_size: %llu\n", (unsigned long long)layers,
           (unsigned long long)hidden, (unsigned long long)vocab);
    printf("blocks: %u\ntensors: %u\n", info.block_count, info.tensor_count);
    return 0;
}

/* Loads tensor i's block and refinement ranges (checksums are verified on
 * load), validates its payload and decodes every row. */
static int decode(const nsq_file *f, uint32_t i)
{
    nsq_tensor t = {0};
    nsq_loaded block = {0}, ref[NSQ_MAX_REFINEMENTS] = {{0}};
    nsq_view view;
    nsq_refine_view rview[NSQ_MAX_REFINEMENTS];
    nsq_diag diag = {0};
    uint32_t n = 0;
    float *w = NULL;
    nsq_status s = nsq_tensor_at(f, i, &t);
    if (!s && t.n_elements > SIZE_MAX / sizeof *w) s = NSQ_E_NOMEM;
    if (!s) s = nsq_block_load(f, t.block, &block, &diag);
    if (!s) s = nsq_tensor_view(f, i, &block, &view, &diag);
    /* Levels apply in order 1..n_refine, each on top of the ones before. */
    for (; !s && n < t.n_refine; n++) {
        s = nsq_refinement_load(f, t.block, n + 1, &ref[n], &diag);
        if (!s) s = nsq_tensor_refine_view(f, i, n + 1, &view, &ref[n], &rview[n], &diag);
    }
    if (!s && !(w = malloc(t.n_elements * sizeof *w))) s = NSQ_E_NOMEM;
    if (!s) s = nsq_dequantize_rows(&view, rview, n, 0, view.rows, w);
    if (!s) {
        printf("tensor: %s\nshape:", t.name);
        for (uint32_t d = 0; d < t.n_dims; d++) printf(" %llu", (unsigned long long)t.dims[d]);
        printf("\nrefinement_levels: %u\nelements: %llu\n", n, (unsigned long long)t.n_elements);
        printf("xxh3_f32: %016llx\n", (unsigned long long)nsq_xxh3(w, t.n_elements * sizeof *w));
    }
    free(w);
    for (uint32_t l = 0; l < NSQ_MAX_REFINEMENTS; l++) nsq_loaded_free(&ref[l]);
    nsq_loaded_free(&block);
    return s ? fail(t.name ? t.name : "tensor", s, &diag) : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: consumer FILE.nsq [TENSOR]\n");
        return 2;
    }
    nsq_file *f;
    nsq_diag diag = {0};
    nsq_status s = nsq_open(argv[1], 0, &f, &diag);
    if (s) return fail(argv[1], s, &diag);
    uint32_t i = 0;
    int rc = describe(f);
    if (!rc && argc == 3 && (s = nsq_tensor_find(f, argv[2], &i))) rc = fail(argv[2], s, NULL);
    if (!rc) rc = decode(f, i);
    nsq_close(f);
    return rc;
}
