/* nsq_edit - rewrites a valid .nsq file with edits, through libnsq's writer,
 * so that the result is valid as a container (checksums and layout) and only
 * the model-level meaning is wrong. For hostile-input tests.
 *
 *   nsq_edit IN OUT EDIT...
 *     meta:KEY=TYPE:VALUE   set (or add) a scalar key; TYPE u64, i64, f64, bool, str
 *     dup:NAME=NEW@BLOCK    add a copy of tensor NAME named NEW at the end of BLOCK
 *     rename:NAME=NEW       rename a tensor
 *     len:NAME=N            replace a vector by its first N values (F32; repeats when longer)
 *     set:NAME=I:VALUE      replace a vector by F32 values with element I set (nan, inf allowed)
 *     tok:FILE=PATH         replace the tokenizer file FILE with PATH's bytes
 *
 * Refinements, importance and the router are not copied. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nsq.h"

#define DIE(...) (fprintf(stderr, "nsq_edit: " __VA_ARGS__), fputc('\n', stderr), exit(1))

static int n_edits;
static char **edits;

/* The value of edit "kind:KEY=VALUE" for this key, or NULL. */
static const char *edit_for(const char *kind, const char *key)
{
    size_t k = strlen(kind), n = strlen(key);
    for (int i = 0; i < n_edits; i++)
        if (!strncmp(edits[i], kind, k) && edits[i][k] == ':' && !strncmp(edits[i] + k + 1, key, n) &&
            edits[i][k + 1 + n] == '=')
            return edits[i] + k + 2 + n;
    return NULL;
}

static void put_meta(nsq_writer *w, const char *key, const char *tv)
{
    const char *v = strchr(tv, ':');
    if (!v) DIE("meta value needs TYPE:VALUE");
    v++;
    nsq_status st = !strncmp(tv, "u64", 3)    ? nsq_writer_meta_u64(w, key, strtoull(v, NULL, 0))
                    : !strncmp(tv, "i64", 3)  ? nsq_writer_meta_i64(w, key, strtoll(v, NULL, 0))
                    : !strncmp(tv, "f64", 3)  ? nsq_writer_meta_f64(w, key, strtod(v, NULL))
                    : !strncmp(tv, "bool", 4) ? nsq_writer_meta_bool(w, key, atoi(v))
                                              : nsq_writer_meta_str(w, key, v, strlen(v));
    if (st) DIE("meta %s: %s", key, nsq_status_name(st));
}

static void copy_meta(const nsq_file *f, nsq_writer *w)
{
    nsq_info info;
    nsq_get_info(f, &info);
    for (uint32_t i = 0; i < info.meta_count; i++) {
        nsq_meta m;
        nsq_meta_at(f, i, &m);
        const char *e = edit_for("meta", m.key);
        if (e) {
            put_meta(w, m.key, e);
            continue;
        }
        uint32_t type = m.type & ~(uint32_t)NSQ_META_ARRAY, n = m.count;
        void *vals = calloc(n ? n : 1, 8);
        for (uint32_t k = 0; k < n; k++) {
            const char *s;
            size_t len;
            switch (type) {
            case NSQ_META_U64: nsq_meta_value_u64(f, i, k, (uint64_t *)vals + k); break;
            case NSQ_META_I64: nsq_meta_value_i64(f, i, k, (int64_t *)vals + k); break;
            case NSQ_META_F64: nsq_meta_value_f64(f, i, k, (double *)vals + k); break;
            case NSQ_META_BOOL: { int b; nsq_meta_value_bool(f, i, k, &b); ((uint8_t *)vals)[k] = (uint8_t)b; break; }
            default: nsq_meta_value_str(f, i, k, &s, &len); ((char **)vals)[k] = strndup(s, len);
            }
        }
        nsq_status st;
        if (m.type & NSQ_META_ARRAY) st = nsq_writer_meta_array(w, m.key, type, vals, n);
        else if (type == NSQ_META_U64) st = nsq_writer_meta_u64(w, m.key, *(uint64_t *)vals);
        else if (type == NSQ_META_I64) st = nsq_writer_meta_i64(w, m.key, *(int64_t *)vals);
        else if (type == NSQ_META_F64) st = nsq_writer_meta_f64(w, m.key, *(double *)vals);
        else if (type == NSQ_META_BOOL) st = nsq_writer_meta_bool(w, m.key, *(uint8_t *)vals);
        else st = nsq_writer_meta_str(w, m.key, *(char **)vals, strlen(*(char **)vals));
        if (st) DIE("meta %s: %s", m.key, nsq_status_name(st));
        if (type == NSQ_META_STRING)
            for (uint32_t k = 0; k < n; k++) free(((char **)vals)[k]);
        free(vals);
    }
    for (int i = 0; i < n_edits; i++) { /* keys the file lacks */
        char key[256];
        const char *eq = strchr(edits[i], '=');
        if (strncmp(edits[i], "meta:", 5) || !eq || (size_t)(eq - edits[i] - 5) >= sizeof key) continue;
        snprintf(key, sizeof key, "%.*s", (int)(eq - edits[i] - 5), edits[i] + 5);
        uint32_t idx;
        if (nsq_meta_find(f, key, &idx)) put_meta(w, key, eq + 1);
    }
}

/* PATH's bytes, malloc'ed. */
static char *slurp(const char *path, uint64_t *size)
{
    FILE *in = fopen(path, "rb");
    if (!in) DIE("cannot read %s", path);
    fseek(in, 0, SEEK_END);
    long n = ftell(in);
    rewind(in);
    char *data = malloc((size_t)n + 1);
    if (n < 0 || fread(data, 1, (size_t)n, in) != (size_t)n) DIE("cannot read %s", path);
    fclose(in);
    *size = (uint64_t)n;
    return data;
}

static void copy_tokenizer(const nsq_file *f, nsq_writer *w)
{
    uint32_t kind = nsq_tokenizer_get_kind(f), n = nsq_tokenizer_file_count(f);
    if (!kind) return;
    nsq_writer_tokenizer(w, kind);
    for (uint32_t i = 0; i < n; i++) {
        nsq_tokenizer_file t;
        nsq_tokenizer_file_at(f, i, &t);
        const char *path = edit_for("tok", t.name);
        uint64_t size = t.size;
        char *data = path ? slurp(path, &size) : NULL;
        nsq_status st = nsq_writer_tokenizer_file(w, t.name, data ? data : (const char *)t.data, size);
        if (st) DIE("tokenizer file %s: %s", t.name, nsq_status_name(st));
        free(data);
    }
}

/* A vector rewritten as F32: its first n values (cycled), element i set. */
static void add_f32_vector(nsq_writer *w, const char *name, const nsq_view *v, uint64_t n, long set_i, float set_v)
{
    uint64_t have = v->rows * v->cols;
    float *x = malloc(have * sizeof *x), *y = malloc((n ? n : 1) * sizeof *y);
    nsq_dequantize_rows(v, NULL, 0, 0, v->rows, x);
    for (uint64_t k = 0; k < n; k++) y[k] = x[k % have];
    if (set_i >= 0 && (uint64_t)set_i < n) y[set_i] = set_v;
    if (nsq_writer_add_tensor(w, name, NSQ_SCHEME_F32, 1, &n, 0, y, n * sizeof *y)) DIE("add %s", name);
    free(x), free(y);
}

static void add_tensor(const nsq_file *f, nsq_writer *w, uint32_t i, const nsq_loaded *ld, const char *name)
{
    nsq_tensor t;
    nsq_view v;
    nsq_diag d;
    nsq_tensor_at(f, i, &t);
    if (nsq_tensor_view(f, i, ld, &v, &d)) DIE("%s: %s", t.name, d.message);
    const char *len = edit_for("len", t.name), *set = edit_for("set", t.name);
    if (len) return add_f32_vector(w, name, &v, strtoull(len, NULL, 0), -1, 0);
    if (set) return add_f32_vector(w, name, &v, t.n_elements, atol(set), strtof(strchr(set, ':') + 1, NULL));
    if (nsq_writer_add_tensor(w, name, t.scheme, t.n_dims, t.dims, t.group_size, v.data, v.size)) DIE("add %s", name);
}

int main(int argc, char **argv)
{
    if (argc < 3) DIE("usage: nsq_edit IN OUT EDIT...");
    n_edits = argc - 3, edits = argv + 3;
    nsq_file *f;
    nsq_writer *w;
    nsq_diag d;
    nsq_info info;
    if (nsq_open(argv[1], 0, &f, &d)) DIE("%s: %s", argv[1], d.message);
    if (nsq_writer_open(argv[2], &w, &d)) DIE("%s: %s", argv[2], d.message);
    nsq_get_info(f, &info);
    copy_meta(f, w);
    copy_tokenizer(f, w);
    for (uint32_t b = 0; b < info.block_count; b++) {
        nsq_block blk;
        nsq_loaded ld;
        nsq_block_at(f, b, &blk);
        if (nsq_block_load(f, b, &ld, &d)) DIE("block %u: %s", b, d.message);
        nsq_writer_begin_block(w, blk.kind, blk.first_layer, blk.n_layers, NSQ_COMP_NONE);
        for (uint32_t i = blk.first_tensor; i < blk.first_tensor + blk.tensor_count; i++) {
            nsq_tensor t;
            nsq_tensor_at(f, i, &t);
            const char *rn = edit_for("rename", t.name);
            add_tensor(f, w, i, &ld, rn ? rn : t.name);
        }
        for (int e = 0; e < n_edits; e++) { /* dup:NAME=NEW@BLOCK */
            char src[256], dst[256];
            unsigned at;
            if (sscanf(edits[e], "dup:%255[^=]=%255[^@]@%u", src, dst, &at) != 3 || at != b) continue;
            uint32_t i;
            nsq_tensor t;
            nsq_loaded sl;
            if (nsq_tensor_find(f, src, &i)) DIE("no tensor %s", src);
            nsq_tensor_at(f, i, &t);
            if (nsq_block_load(f, t.block, &sl, &d)) DIE("%s", d.message);
            add_tensor(f, w, i, &sl, dst);
            nsq_loaded_free(&sl);
        }
        nsq_loaded_free(&ld);
        if (nsq_writer_end_block(w, &d)) DIE("block %u: %s", b, d.message);
    }
    nsq_status st = nsq_writer_finish(w, &d);
    if (st) DIE("%s: %s", argv[2], d.message);
    nsq_close(f);
    return 0;
}
