/*
 * fuzz_open.c - libFuzzer target for the reader: nsq_open_memory() on arbitrary
 * bytes, then, when the file opens, a walk over everything the public API can
 * reach (info, sections, metadata with every typed getter, tokenizer files,
 * block and refinement records, tensors, importance, router, block loading,
 * tensor views, dequantization, LATTICE layouts and rotated rows) and
 * nsq_verify().
 *
 * Checksums are off for the main open so that mutated inputs get past
 * R-SEC-7/R-HDR-10 and reach the parsers. The input is also opened with
 * checksums on (flags 0) and through the pread path (a memfd), and the
 * results are cross-checked: a violated invariant abort()s so that libFuzzer
 * reports it like a crash.
 *
 *   make fuzz && build-fuzz/fuzz_open -max_len=131072 CORPUS_DIR fuzz/corpus/fuzz_open
 */
#include "nsq.h"

#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                          \
    do {                                                                                  \
        if (!(c)) {                                                                       \
            fprintf(stderr, "fuzz_open: invariant failed: %s (%s:%d)\n", #c, __FILE__, \
                    __LINE__);                                                            \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

/* Caps that keep one execution cheap; the walk is still complete below them. */
#define MAX_DEQUANT_FLOATS (1u << 16) /* per tensor and direction */
#define MAX_ROUTER_INPUT (1u << 16)

/* Folding bytes into a volatile sink makes ASan check every byte we were handed. */
static volatile uint64_t sink;
static void touch(const void *p, uint64_t n)
{
    const uint8_t *b = p;
    uint64_t h = 0;
    for (uint64_t i = 0; i < n; i++) h = h * 31 + b[i];
    sink += h;
}

static void diag_reset(nsq_diag *d)
{
    memset(d, 0, sizeof *d);
    d->status = NSQ_OK;
}

/* A call that failed through the diagnostics path must say so consistently. */
static void check_diag(nsq_status st, const nsq_diag *d)
{
    if (st == NSQ_OK) return;
    CHECK(d->status == st);
    CHECK(memchr(d->rule, 0, sizeof d->rule) != NULL);
    CHECK(memchr(d->message, 0, sizeof d->message) != NULL);
    CHECK(nsq_strerror(st) != NULL && nsq_status_name(st) != NULL);
}

static void walk_metadata(const nsq_file *f, const nsq_info *info)
{
    nsq_meta m;
    CHECK(nsq_meta_at(f, info->meta_count, &m) == NSQ_E_NOT_FOUND);
    for (uint32_t i = 0; i < info->meta_count; i++) {
        CHECK(nsq_meta_at(f, i, &m) == NSQ_OK);
        CHECK(m.key != NULL);
        uint32_t idx = UINT32_MAX;
        CHECK(nsq_meta_find(f, m.key, &idx) == NSQ_OK && idx == i);
        uint32_t et = m.type & ~(uint32_t)NSQ_META_ARRAY;
        CHECK(et >= NSQ_META_U64 && et <= NSQ_META_STRING);
        CHECK((m.type & NSQ_META_ARRAY) || m.count == 1);
        /* every element through every getter, by index and by key; one past the end */
        for (uint32_t e = 0; e <= m.count; e++) {
            nsq_status want_ok = e < m.count ? NSQ_OK : NSQ_E_ARG;
            uint64_t u = 0, u2 = 0;
            int64_t s = 0, s2 = 0;
            double x = 0, x2 = 0;
            int b = 0, b2 = 0;
            const char *str = NULL, *str2 = NULL;
            size_t len = 0, len2 = 0;
            nsq_status su = nsq_meta_value_u64(f, i, e, &u), su2 = nsq_meta_u64(f, m.key, e, &u2);
            nsq_status si = nsq_meta_value_i64(f, i, e, &s), si2 = nsq_meta_i64(f, m.key, e, &s2);
            nsq_status sf = nsq_meta_value_f64(f, i, e, &x), sf2 = nsq_meta_f64(f, m.key, e, &x2);
            nsq_status sb = nsq_meta_value_bool(f, i, e, &b), sb2 = nsq_meta_bool(f, m.key, e, &b2);
            nsq_status ss = nsq_meta_value_str(f, i, e, &str, &len), ss2 = nsq_meta_str(f, m.key, e, &str2, &len2);
            CHECK(su == su2 && si == si2 && sf == sf2 && sb == sb2 && ss == ss2);
            CHECK(su == (et == NSQ_META_U64 ? want_ok : NSQ_E_TYPE));
            CHECK(si == (et == NSQ_META_I64 ? want_ok : NSQ_E_TYPE));
            CHECK(sf == (et == NSQ_META_F64 ? want_ok : NSQ_E_TYPE));
            CHECK(sb == (et == NSQ_META_BOOL ? want_ok : NSQ_E_TYPE));
            CHECK(ss == (et == NSQ_META_STRING ? want_ok : NSQ_E_TYPE));
            if (su == NSQ_OK) CHECK(u == u2);
            if (si == NSQ_OK) CHECK(s == s2);
            if (sf == NSQ_OK) CHECK(isfinite(x) && memcmp(&x, &x2, sizeof x) == 0);
            if (sb == NSQ_OK) CHECK((b == 0 || b == 1) && b == b2);
            if (ss == NSQ_OK) {
                CHECK(str == str2 && len == len2 && len <= (16u << 20));
                CHECK(len == 0 || memchr(str, 0, len) == NULL);
                touch(str, len);
            }
            if (e == m.count) break;
            if (e >= 64 && e + 1 < m.count) e = m.count - 2; /* long arrays: the ends suffice */
        }
    }
    uint64_t u;
    CHECK(nsq_meta_u64(f, "no.such.key", 0, &u) == NSQ_E_NOT_FOUND);
    CHECK(nsq_meta_u64(f, "", 0, &u) == NSQ_E_NOT_FOUND);
}

static void walk_tokenizer(const nsq_file *f)
{
    uint32_t kind = nsq_tokenizer_get_kind(f), n = nsq_tokenizer_file_count(f);
    CHECK(kind >= NSQ_TOK_HF_JSON && kind <= NSQ_TOK_SENTENCEPIECE);
    CHECK(n >= 1 && n <= 16);
    nsq_tokenizer_file tf, tf2;
    CHECK(nsq_tokenizer_file_at(f, n, &tf) == NSQ_E_NOT_FOUND);
    for (uint32_t i = 0; i < n; i++) {
        CHECK(nsq_tokenizer_file_at(f, i, &tf) == NSQ_OK);
        CHECK(tf.name && tf.name[0]);
        CHECK(nsq_tokenizer_file_find(f, tf.name, &tf2) == NSQ_OK);
        CHECK(tf2.data == tf.data && tf2.size == tf.size && strcmp(tf2.name, tf.name) == 0);
        touch(tf.name, strlen(tf.name));
        touch(tf.data, tf.size);
    }
    CHECK(nsq_tokenizer_file_find(f, "no/such/file", &tf) == NSQ_E_NOT_FOUND);
}

/* Blocks, refinements and tensors as records (no data). */
static void walk_directory(const nsq_file *f, const nsq_info *info)
{
    nsq_block b;
    nsq_refinement r;
    nsq_tensor t;
    uint64_t refs = 0;
    uint32_t next_tensor = 0;
    CHECK(info->block_count >= 2 && info->tensor_count >= 1);
    CHECK(nsq_block_at(f, info->block_count, &b) == NSQ_E_NOT_FOUND);
    CHECK(nsq_tensor_at(f, info->tensor_count, &t) == NSQ_E_NOT_FOUND);
    for (uint32_t i = 0; i < info->block_count; i++) {
        CHECK(nsq_block_at(f, i, &b) == NSQ_OK);
        CHECK(b.compression == NSQ_COMP_NONE || b.compression == NSQ_COMP_ZSTD);
        CHECK(b.raw_size > 0 && b.stored_size > 0 && b.offset % 4096 == 0);
        CHECK(b.offset + b.stored_size <= info->file_size);
        CHECK(b.refinement_count <= NSQ_MAX_REFINEMENTS);
        CHECK(b.first_tensor == next_tensor && b.tensor_count >= 1);
        next_tensor = b.first_tensor + b.tensor_count;
        refs += b.refinement_count;
        CHECK(nsq_refinement_at(f, i, 0, &r) == NSQ_E_NOT_FOUND);
        CHECK(nsq_refinement_at(f, i, b.refinement_count + 1, &r) == NSQ_E_NOT_FOUND);
        for (uint32_t l = 1; l <= b.refinement_count; l++) {
            CHECK(nsq_refinement_at(f, i, l, &r) == NSQ_OK);
            CHECK(r.block == i && r.level == l);
            CHECK(r.offset + r.stored_size <= info->file_size);
        }
    }
    CHECK(next_tensor == info->tensor_count);
    CHECK(refs == info->refinement_count);
    for (uint32_t i = 0; i < info->tensor_count; i++) {
        CHECK(nsq_tensor_at(f, i, &t) == NSQ_OK);
        CHECK(t.name && t.name[0]);
        uint32_t idx = UINT32_MAX;
        CHECK(nsq_tensor_find(f, t.name, &idx) == NSQ_OK && idx == i);
        CHECK(t.block < info->block_count);
        CHECK(nsq_block_at(f, t.block, &b) == NSQ_OK);
        CHECK(i >= b.first_tensor && i < b.first_tensor + b.tensor_count);
        CHECK(t.n_dims >= 1 && t.n_dims <= NSQ_MAX_DIMS && t.n_refine <= b.refinement_count);
        uint64_t n = 1;
        for (uint32_t k = 0; k < t.n_dims; k++) n *= t.dims[k];
        CHECK(n == t.n_elements);
        CHECK(t.offset + t.size <= b.raw_size);
    }
    uint32_t idx;
    CHECK(nsq_tensor_find(f, "", &idx) == NSQ_E_NOT_FOUND);
}

static void walk_importance(const nsq_file *f, const nsq_info *info)
{
    nsq_importance_info ii;
    nsq_importance_entry e;
    nsq_status st = nsq_importance_get(f, &ii);
    CHECK(info->has_importance ? st == NSQ_OK : st == NSQ_E_NOT_FOUND);
    if (st) {
        CHECK(nsq_importance_entry_at(f, 0, &e) == NSQ_E_NOT_FOUND);
        return;
    }
    CHECK(ii.method == NSQ_IMP_MAGNITUDE || ii.method == NSQ_IMP_CALIBRATED);
    CHECK(isfinite(ii.target_bpw) && ii.provenance != NULL);
    touch(ii.provenance, strlen(ii.provenance));
    CHECK(nsq_importance_entry_at(f, ii.entry_count, &e) == NSQ_E_NOT_FOUND);
    for (uint32_t i = 0; i < ii.entry_count; i++) {
        CHECK(nsq_importance_entry_at(f, i, &e) == NSQ_OK);
        CHECK(e.tensor < info->tensor_count);
        nsq_tensor t;
        CHECK(nsq_tensor_at(f, e.tensor, &t) == NSQ_OK);
        CHECK(t.scheme == NSQ_SCHEME_TIERED || t.scheme == NSQ_SCHEME_LATTICE); /* LATTICE since 1.2 */
        CHECK(e.n_group_stats == 0 || e.n_group_stats == t.n_elements / t.group_size);
        CHECK(e.n_col_stats == 0 || e.n_col_stats == t.dims[t.n_dims - 1]);
        for (uint64_t k = 0; k < e.n_group_stats; k++) {
            float v = nsq_f32_at(e.group_stats, k);
            CHECK(isfinite(v) && v >= 0);
        }
        for (uint64_t k = 0; k < e.n_col_stats; k++) {
            float v = nsq_f32_at(e.col_stats, k);
            CHECK(isfinite(v) && v >= 0);
        }
    }
}

static void walk_router(const nsq_file *f, const nsq_info *info)
{
    nsq_router r;
    nsq_status st = nsq_router_get(f, &r);
    CHECK(info->has_router ? st == NSQ_OK : st == NSQ_E_NOT_FOUND);
    if (st) return;
    CHECK(r.block_count == info->block_count);
    touch(r.choice_mask, r.block_count);
    if (r.input_dim > MAX_ROUTER_INPUT) return;
    float *x = calloc(r.input_dim ? r.input_dim : 1, sizeof *x);
    float *y = malloc(3 * (size_t)r.block_count * sizeof *y);
    CHECK(x && y);
    CHECK(nsq_router_eval(&r, x, y) == NSQ_OK);
    for (uint64_t i = 0; i < 3ull * r.block_count; i++) sink += (uint64_t)isnan(y[i]);
    free(x);
    free(y);
}

/* A LATTICE view's layout lies inside its payload, and its rotated rows decode
 * the same one at a time as together. */
static void check_lattice(const nsq_view *v)
{
    nsq_lattice lv;
    CHECK(nsq_lattice_view(v, &lv) == NSQ_OK);
    CHECK(lv.n_stages >= 1 && lv.n_stages <= NSQ_LATTICE_MAX_STAGES);
    CHECK(lv.block == v->group_size && (uint64_t)lv.n_blocks * lv.block == v->cols);
    CHECK(nsq_lattice_payload_size(v->rows, v->cols, lv.block, lv.n_stages, lv.kind) == v->size);
    const uint8_t *end = v->data + v->size;
    CHECK(lv.signs + v->cols / 8 <= end);
    for (uint32_t s = 0; s < lv.n_stages; s++) {
        CHECK(lv.row_bytes[s] == v->cols / 8 * nsq_lattice_kind_bits(lv.kind[s]));
        CHECK(lv.scales[s] + 2 * v->rows * lv.n_blocks <= end && lv.codes[s] + v->rows * lv.row_bytes[s] <= end);
    }
    if (v->cols > MAX_DEQUANT_FLOATS) return;
    uint64_t nrows = MAX_DEQUANT_FLOATS / v->cols < v->rows ? MAX_DEQUANT_FLOATS / v->cols : v->rows;
    float *out = malloc(nrows * v->cols * sizeof *out), *one = malloc(v->cols * sizeof *one);
    CHECK(out && one);
    CHECK(nsq_lattice_rows_rotated(v, v->rows - nrows, nrows, out) == NSQ_OK);
    CHECK(nsq_lattice_rows_rotated(v, v->rows - 1, 1, one) == NSQ_OK);
    CHECK(memcmp(one, out + (nrows - 1) * v->cols, v->cols * sizeof *one) == 0);
    CHECK(nsq_lattice_rows_rotated(v, v->rows, 1, one) == NSQ_E_ARG);
    free(out);
    free(one);
}

/* Dequantizes the first and the last rows of a view (bounded) with n_ref levels,
 * checking that a one-row call agrees with the larger call. */
static void decode_some(const nsq_view *v, const nsq_refine_view *refs, uint32_t n_ref)
{
    if (v->rows == 0 || v->cols == 0 || v->cols > MAX_DEQUANT_FLOATS) return;
    uint64_t nrows = MAX_DEQUANT_FLOATS / v->cols;
    if (nrows > v->rows) nrows = v->rows;
    float *out = malloc(nrows * v->cols * sizeof *out), *one = malloc(v->cols * sizeof *one);
    CHECK(out && one);
    uint64_t starts[2] = {0, v->rows - nrows};
    for (int k = 0; k < 2; k++) {
        CHECK(nsq_dequantize_rows(v, refs, n_ref, starts[k], nrows, out) == NSQ_OK);
        uint64_t last = starts[k] + nrows - 1;
        CHECK(nsq_dequantize_rows(v, refs, n_ref, last, 1, one) == NSQ_OK);
        CHECK(memcmp(one, out + (nrows - 1) * v->cols, v->cols * sizeof *one) == 0);
        if (nrows == v->rows) break;
    }
    CHECK(nsq_dequantize_rows(v, refs, n_ref, v->rows, 1, one) == NSQ_E_ARG);
    CHECK(nsq_dequantize_rows(v, refs, n_ref, UINT64_MAX, 2, one) == NSQ_E_ARG);
    free(out);
    free(one);
}

/* Loads every block (checksums off when the handle was opened so), views every
 * tensor and refinement and decodes them. Returns the number of failures. */
static unsigned walk_blocks(const nsq_file *f, const nsq_info *info)
{
    unsigned failures = 0;
    for (uint32_t bi = 0; bi < info->block_count; bi++) {
        nsq_block b;
        CHECK(nsq_block_at(f, bi, &b) == NSQ_OK);
        nsq_diag d;
        diag_reset(&d);
        nsq_loaded base;
        nsq_status st = nsq_block_load(f, bi, &base, &d);
        check_diag(st, &d);
        if (st) {
            CHECK(base.data == NULL && base.owned_ == NULL);
            failures++;
            continue;
        }
        CHECK(base.size == b.raw_size);
        nsq_view *views = calloc(b.tensor_count, sizeof *views);
        int *ok = calloc(b.tensor_count, sizeof *ok);
        nsq_refine_view *rv = calloc((size_t)b.tensor_count * NSQ_MAX_REFINEMENTS, sizeof *rv);
        nsq_loaded *refl = calloc(NSQ_MAX_REFINEMENTS + 1, sizeof *refl);
        CHECK(views && ok && rv && refl);
        for (uint32_t k = 0; k < b.tensor_count; k++) {
            uint32_t ti = b.first_tensor + k;
            diag_reset(&d);
            st = nsq_tensor_view(f, ti, &base, &views[k], &d);
            check_diag(st, &d);
            if (st) {
                failures++;
                continue;
            }
            ok[k] = 1;
            nsq_tensor t;
            CHECK(nsq_tensor_at(f, ti, &t) == NSQ_OK);
            CHECK(views[k].scheme == t.scheme && views[k].rows * views[k].cols == t.n_elements);
            CHECK(views[k].size == t.size);
            decode_some(&views[k], NULL, 0);
            if (t.scheme == NSQ_SCHEME_LATTICE) check_lattice(&views[k]);
        }
        /* a view must refuse a range that is not its block */
        if (b.tensor_count) {
            nsq_loaded fake = {base.data, base.size + 1, NULL};
            nsq_view tmp;
            CHECK(nsq_tensor_view(f, b.first_tensor, &fake, &tmp, NULL) == NSQ_E_ARG);
        }
        uint32_t loaded_levels = 0;
        for (uint32_t l = 1; l <= b.refinement_count; l++) {
            diag_reset(&d);
            st = nsq_refinement_load(f, bi, l, &refl[l], &d);
            check_diag(st, &d);
            if (st) {
                failures++;
                break;
            }
            nsq_refinement r;
            CHECK(nsq_refinement_at(f, bi, l, &r) == NSQ_OK && refl[l].size == r.raw_size);
            loaded_levels = l;
            for (uint32_t k = 0; k < b.tensor_count; k++) {
                uint32_t ti = b.first_tensor + k;
                nsq_tensor t;
                CHECK(nsq_tensor_at(f, ti, &t) == NSQ_OK);
                if (!ok[k] || t.n_refine < l) continue;
                diag_reset(&d);
                st = nsq_tensor_refine_view(f, ti, l, &views[k], &refl[l], &rv[k * NSQ_MAX_REFINEMENTS + l - 1], &d);
                check_diag(st, &d);
                if (st) {
                    failures++;
                    ok[k] = 0;
                    continue;
                }
                decode_some(&views[k], &rv[k * NSQ_MAX_REFINEMENTS], l);
            }
        }
        /* level 0 and a level past the tensor's are refused */
        for (uint32_t k = 0; k < b.tensor_count && loaded_levels; k++) {
            nsq_refine_view tmp;
            nsq_tensor t;
            CHECK(nsq_tensor_at(f, b.first_tensor + k, &t) == NSQ_OK);
            CHECK(nsq_tensor_refine_view(f, b.first_tensor + k, 0, &views[k], &refl[1], &tmp, NULL) == NSQ_E_ARG);
            CHECK(nsq_tensor_refine_view(f, b.first_tensor + k, t.n_refine + 1, &views[k], &refl[1], &tmp, NULL) ==
                  NSQ_E_ARG);
        }
        for (uint32_t l = 1; l <= loaded_levels; l++) nsq_loaded_free(&refl[l]);
        nsq_loaded_free(&base);
        CHECK(base.data == NULL && base.size == 0);
        free(views);
        free(ok);
        free(rv);
        free(refl);
    }
    nsq_loaded l;
    CHECK(nsq_block_load(f, info->block_count, &l, NULL) == NSQ_E_ARG);
    CHECK(nsq_refinement_load(f, 0, 0, &l, NULL) == NSQ_E_ARG);
    return failures;
}

/* The whole walk over an open handle; returns the number of block-level failures. */
static unsigned walk(const nsq_file *f)
{
    nsq_info info;
    nsq_get_info(f, &info);
    CHECK(info.version_major == NSQ_FORMAT_MAJOR);
    CHECK(info.section_count >= 3 && info.section_count <= 64);
    nsq_section s, prev = {0, 0, 0, 0};
    CHECK(nsq_section_at(f, info.section_count, &s) == NSQ_E_NOT_FOUND);
    for (uint32_t i = 0; i < info.section_count; i++) {
        CHECK(nsq_section_at(f, i, &s) == NSQ_OK);
        CHECK(s.kind != 0 && s.size > 0 && s.offset + s.size <= info.file_size);
        CHECK(i == 0 || s.offset > prev.offset);
        prev = s;
    }
    walk_metadata(f, &info);
    walk_tokenizer(f);
    walk_directory(f, &info);
    walk_importance(f, &info);
    walk_router(f, &info);
    return walk_blocks(f, &info);
}

/* The same bytes through nsq_open()'s pread path, via a memfd. */
static int memfd = -2;
static nsq_status open_pread(const uint8_t *data, size_t size, unsigned flags, nsq_file **out)
{
    if (memfd == -2) memfd = memfd_create("fuzz_open", MFD_CLOEXEC);
    if (memfd < 0) return (nsq_status)-1;
    if (ftruncate(memfd, 0) != 0) return (nsq_status)-1;
    size_t done = 0;
    while (done < size) {
        ssize_t n = pwrite(memfd, data + done, size - done, (off_t)done);
        if (n <= 0) return (nsq_status)-1;
        done += (size_t)n;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
    return nsq_open(path, flags | NSQ_OPEN_PREAD, out, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nsq_diag d;
    nsq_file *f = (nsq_file *)&d; /* any non-NULL value: must be reset to NULL on failure */
    diag_reset(&d);
    nsq_status st = nsq_open_memory(data, size, NSQ_OPEN_NO_CHECKSUMS, &f, &d);
    check_diag(st, &d);
    CHECK(st ? f == NULL : f != NULL);

    unsigned walk_failures = 0;
    if (st == NSQ_OK) {
        walk_failures = walk(f);
        diag_reset(&d);
        nsq_status vs = nsq_verify(f, &d);
        check_diag(vs, &d);
        /* verify is the walk plus checksums and gap checks: it cannot pass where the walk failed */
        if (vs == NSQ_OK) CHECK(walk_failures == 0);
    }

    /* with checksums: never more permissive than without */
    nsq_file *g = NULL;
    diag_reset(&d);
    nsq_status st2 = nsq_open_memory(data, size, 0, &g, &d);
    check_diag(st2, &d);
    CHECK(st2 ? g == NULL : g != NULL);
    if (st2 == NSQ_OK) {
        CHECK(st == NSQ_OK);
        nsq_info a, b;
        nsq_get_info(f, &a);
        nsq_get_info(g, &b);
        CHECK(memcmp(&a, &b, sizeof a) == 0);
        nsq_close(g);
    }

    /* the pread path must agree with the in-memory one, block by block */
    nsq_file *p = NULL;
    nsq_status st3 = open_pread(data, size, NSQ_OPEN_NO_CHECKSUMS, &p);
    if ((int)st3 != -1) {
        CHECK(st3 == st);
        if (st3 == NSQ_OK) {
            CHECK(walk(p) == walk_failures);
            nsq_info info;
            nsq_get_info(f, &info);
            for (uint32_t i = 0; i < info.block_count; i++) {
                nsq_loaded la, lb;
                nsq_status sa = nsq_block_load(f, i, &la, NULL), sb = nsq_block_load(p, i, &lb, NULL);
                CHECK(sa == sb);
                if (sa) continue;
                CHECK(la.size == lb.size && memcmp(la.data, lb.data, la.size) == 0);
                nsq_loaded_free(&la);
                nsq_loaded_free(&lb);
            }
            nsq_close(p);
        }
    }

    nsq_close(f);
    return 0;
}
