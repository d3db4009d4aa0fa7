/*
 * dequant_dump - writes the dequantized f32 values of the named tensors (all
 * tensors, in directory order, when none is named), raw, little-endian and
 * back to back, to stdout, with up to LEVELS refinement levels applied (as
 * many as a tensor has when LEVELS exceeds them). LEVELS "rotated" writes
 * LATTICE tensors in their rotated basis W' (others as with 0). Public API
 * only: the reference output that other readers of the format are compared
 * with.
 *   dequant_dump FILE LEVELS|rotated [TENSOR...]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nsq.h"

static int fail(const char *what, nsq_status s, const nsq_diag *d) {
    fprintf(stderr, "dequant_dump: %s: %s %s%s%s\n", what, nsq_status_name(s), d ? d->rule : "",
            d ? ": " : "", d ? d->message : "");
    return 1;
}

/* Writes floats as little-endian bytes whatever the host order. */
static int write_le(const float *v, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        unsigned char b[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16),
                              (unsigned char)(u >> 24)};
        if (fwrite(b, 1, 4, stdout) != 4)
            return 1;
    }
    return fflush(stdout) != 0;
}

static int dump(nsq_file *f, uint32_t ti, uint32_t levels, int rotated) {
    nsq_diag d = {0};
    nsq_tensor t;
    nsq_loaded base = {0}, refl[NSQ_MAX_REFINEMENTS] = {{0}};
    nsq_refine_view refs[NSQ_MAX_REFINEMENTS];
    nsq_view v;
    nsq_status s = nsq_tensor_at(f, ti, &t);
    if (s != NSQ_OK)
        return fail("tensor", s, NULL);
    if (levels > t.n_refine)
        levels = t.n_refine;
    int rc = 1;
    float *out = NULL;
    if ((s = nsq_block_load(f, t.block, &base, &d)) != NSQ_OK || (s = nsq_tensor_view(f, ti, &base, &v, &d)) != NSQ_OK) {
        fail("block", s, &d);
        goto done;
    }
    for (uint32_t l = 0; l < levels; l++) {
        if ((s = nsq_refinement_load(f, t.block, l + 1, &refl[l], &d)) != NSQ_OK ||
            (s = nsq_tensor_refine_view(f, ti, l + 1, &v, &refl[l], &refs[l], &d)) != NSQ_OK) {
            fail("refinement", s, &d);
            goto done;
        }
    }
    out = malloc(t.n_elements ? t.n_elements * sizeof(float) : 1);
    if (!out) {
        fail("malloc", NSQ_E_NOMEM, NULL);
        goto done;
    }
    if (rotated && v.scheme == NSQ_SCHEME_LATTICE)
        s = nsq_lattice_rows_rotated(&v, 0, v.rows, out);
    else
        s = nsq_dequantize_rows(&v, levels ? refs : NULL, levels, 0, v.rows, out);
    if (s != NSQ_OK) {
        fail("dequantize", s, NULL);
        goto done;
    }
    rc = write_le(out, t.n_elements);
done:
    free(out);
    for (uint32_t l = 0; l < levels; l++)
        nsq_loaded_free(&refl[l]);
    nsq_loaded_free(&base);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: dequant_dump FILE LEVELS|rotated [TENSOR...]\n");
        return 2;
    }
    int rotated = strcmp(argv[2], "rotated") == 0;
    uint32_t levels = rotated ? 0 : (uint32_t)strtoul(argv[2], NULL, 10);
    nsq_diag d = {0};
    nsq_file *f;
    nsq_info info;
    nsq_status s = nsq_open(argv[1], 0, &f, &d);
    if (s != NSQ_OK)
        return fail(argv[1], s, &d);
    nsq_get_info(f, &info);
    int rc = 0;
    uint32_t n = argc > 3 ? (uint32_t)(argc - 3) : info.tensor_count;
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        uint32_t ti = i;
        if (argc > 3 && (s = nsq_tensor_find(f, argv[3 + i], &ti)) != NSQ_OK)
            rc = fail(argv[3 + i], s, NULL);
        else
            rc = dump(f, ti, levels, rotated);
    }
    nsq_close(f);
    return rc;
}
