/* roundtrip - checks an .nsq file against the Hugging Face checkpoint it was
 * converted from: every source tensor is present with the same shape, and
 * with --exact its bytes are identical (what --lossless promises); otherwise
 * each tensor decodes to within --tol of the source (max |error| relative to
 * the tensor's max |value|), accounting for transposed Conv1D weights.
 *
 *   roundtrip HF_DIR FILE.nsq (--exact | --tol X) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nsq.h"
#include "safetensors.h"

static int fail(const char *name, const char *why)
{
    fprintf(stderr, "roundtrip: %s: %s\n", name, why);
    return 1;
}

/* GPT-2 Conv1D weights, which model.conv1d_transposed says are stored [out][in]. */
static int conv1d(const nsq_file *f, const char *name)
{
    int flag = 0;
    size_t n = strlen(name);
    return !nsq_meta_bool(f, "model.conv1d_transposed", 0, &flag) && flag && n > 7 &&
           strcmp(name + n - 7, ".weight") == 0 && (strstr(name, ".attn.c_") || strstr(name, ".mlp.c_"));
}

static int same_dims(const nsq_file *f, const st_tensor *s, const nsq_tensor *t, int *transposed)
{
    *transposed = 0;
    if (s->n_dims != t->n_dims) return 0;
    if (conv1d(f, s->name)) {
        *transposed = 1;
        return s->dims[0] == t->dims[1] && s->dims[1] == t->dims[0];
    }
    int same = 1;
    for (uint32_t k = 0; k < s->n_dims; k++) same &= s->dims[k] == t->dims[k];
    if (same) return 1;
    *transposed = s->n_dims == 2 && s->dims[0] == t->dims[1] && s->dims[1] == t->dims[0];
    return *transposed;
}

/* Max |decoded - source| / max |source| over the tensor. */
static double rel_error(const st_tensor *s, const nsq_view *v, int transposed)
{
    uint64_t n = s->n_elements, rows = v->rows, cols = v->cols;
    float *src = malloc(n * sizeof *src), *dec = malloc(n * sizeof *dec);
    double err = INFINITY, peak = 0, worst = 0;
    if (src && dec && !nsq_dequantize_rows(v, NULL, 0, 0, rows, dec)) {
        st_to_f32(s, 0, n, src);
        for (uint64_t r = 0; r < rows; r++)
            for (uint64_t c = 0; c < cols; c++) {
                double a = transposed ? src[c * rows + r] : src[r * cols + c], b = dec[r * cols + c];
                peak = fmax(peak, fabs(a));
                worst = fmax(worst, fabs(a - b));
            }
        err = peak > 0 ? worst / peak : worst;
    }
    free(src);
    free(dec);
    return err;
}

static int check_tensor(const nsq_file *f, const st_tensor *s, int exact, double tol)
{
    uint32_t i;
    nsq_tensor t;
    nsq_loaded blk;
    nsq_view v;
    int transposed, bad = 0;
    if (nsq_tensor_find(f, s->name, &i) || nsq_tensor_at(f, i, &t)) return fail(s->name, "missing from the .nsq file");
    if (!same_dims(f, s, &t, &transposed)) return fail(s->name, "shape differs");
    if (nsq_block_load(f, t.block, &blk, NULL)) return fail(s->name, "block does not load");
    if (nsq_tensor_view(f, i, &blk, &v, NULL)) bad = fail(s->name, "invalid payload");
    else if (exact && (transposed || t.size != s->size || memcmp(v.data, s->data, s->size) != 0))
        bad = fail(s->name, "bytes differ from the source");
    else if (!exact) {
        double e = rel_error(s, &v, transposed);
        if (!(e <= tol)) {
            fprintf(stderr, "roundtrip: %s: relative error %.4g > %.4g\n", s->name, e, tol);
            bad = 1;
        }
    }
    nsq_loaded_free(&blk);
    return bad;
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: roundtrip HF_DIR FILE.nsq (--exact | --tol X)\n");
        return 2;
    }
    int exact = strcmp(argv[3], "--exact") == 0;
    double tol = argc == 5 ? atof(argv[4]) : 0;
    char err[1024];
    st_model m;
    nsq_file *f;
    nsq_diag d;
    if (st_open_dir(argv[1], &m, err, sizeof err)) return fail(argv[1], err);
    if (nsq_open(argv[2], 0, &f, &d)) {
        st_close(&m);
        return fail(argv[2], d.message);
    }
    int bad = 0, checked = 0;
    for (size_t k = 0; k < m.n_tensors; k++) {
        const char *n = m.tensors[k].name;
        size_t len = strlen(n);
        if (len > 19 && strcmp(n + len - 19, "rotary_emb.inv_freq") == 0) continue;
        int tied_copy = strcmp(n, "lm_head.weight") == 0 && nsq_tensor_find(f, n, &(uint32_t){0});
        if (tied_copy) continue; /* a tied head is not stored twice */
        bad |= check_tensor(f, &m.tensors[k], exact, tol);
        checked++;
    }
    nsq_close(f);
    st_close(&m);
    if (!bad) printf("roundtrip: %d tensors %s\n", checked, exact ? "bit-exact" : "within tolerance");
    return bad;
}
