/* writer.c - the streaming writer: blocks go to a temporary file as they are
 * ended; metadata, tokenizer, directory and optional sections are written at
 * finish, then the file is validated, fsynced and renamed into place. */
#include "scheme.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define ZSTD_LEVEL 9

typedef struct {
    uint8_t *p;
    size_t len, cap;
} buf;

static int buf_reserve(buf *b, size_t extra)
{
    if (extra <= b->cap - b->len) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2) return -1;
        cap *= 2;
    }
    uint8_t *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int buf_put(buf *b, const void *src, size_t n)
{
    if (buf_reserve(b, n)) return -1;
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
    return 0;
}

static int buf_zeros(buf *b, size_t n)
{
    if (buf_reserve(b, n)) return -1;
    if (n) memset(b->p + b->len, 0, n);
    b->len += n;
    return 0;
}

static int buf_u8(buf *b, uint8_t v) { return buf_put(b, &v, 1); }
static int buf_u16(buf *b, uint16_t v)
{
    uint8_t t[2];
    nsq__wr16(t, v);
    return buf_put(b, t, 2);
}
static int buf_u32(buf *b, uint32_t v)
{
    uint8_t t[4];
    nsq__wr32(t, v);
    return buf_put(b, t, 4);
}
static int buf_u64(buf *b, uint64_t v)
{
    uint8_t t[8];
    nsq__wr64(t, v);
    return buf_put(b, t, 8);
}
static int buf_align(buf *b, size_t a) { return buf_zeros(b, (size_t)nsq__align_up(b->len, a) - b->len); }

typedef struct {
    char *key;
    buf enc; /* type byte onwards */
} wmeta;

typedef struct {
    char *name;
    uint32_t scheme, n_dims, group_size, n_refine, block;
    uint64_t dims[NSQ_MAX_DIMS];
    uint64_t offset, size, n_groups, cols;
    nsq_tensor_refinement refine[NSQ_MAX_REFINEMENTS];
} wtensor;

struct nsq_writer {
    char *path, *tmp; /* tmp: the temporary file's name, or /proc/self/fd/N when it has none */
    int fd, anonymous, zstd_level;
    int borrowed; /* fd is the caller's: never closed, named or removed here */
    uint64_t pos; /* bytes written so far */
    nsq_status err; /* sticky: once set, only abort/finish are meaningful */
    nsq_diag diag;
    wmeta *meta;
    uint32_t meta_count;
    uint32_t tok_kind;
    buf tok_files; /* encoded file entries, in the order added */
    char **tok_names;
    uint32_t tok_count;
    buf blocks, refines; /* encoded directory records */
    uint32_t block_count, refine_count;
    wtensor *tensors;
    uint32_t tensor_count, tensor_cap;
    int in_block, any_zstd, any_lattice, any_lattice_levels, any_e8s;
    uint32_t kind, first_layer, n_layers, comp, block_first_tensor;
    buf raw, level[NSQ_MAX_REFINEMENTS];
    nsq_view last_view; /* of the tensor added last, for its refinements */
    int has_importance;
    buf importance;
    uint32_t imp_count, imp_last;
    buf router;
    int has_router;
};

static nsq_status werr(nsq_writer *w, nsq_status s, const char *rule, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static nsq_status werr(nsq_writer *w, nsq_status s, const char *rule, const char *fmt, ...)
{
    if (w->err) return w->err;
    w->err = s;
    w->diag.status = s;
    w->diag.offset = UINT64_MAX;
    snprintf(w->diag.rule, sizeof w->diag.rule, "%s", rule);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->diag.message, sizeof w->diag.message, fmt, ap);
    va_end(ap);
    return s;
}

static nsq_status nomem(nsq_writer *w) { return werr(w, NSQ_E_NOMEM, "", "out of memory"); }

static nsq_status write_all(nsq_writer *w, const void *p, uint64_t n)
{
    const uint8_t *q = p;
    while (n > 0) {
        ssize_t k = write(w->fd, q, n > (1u << 30) ? (1u << 30) : (size_t)n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return werr(w, NSQ_E_IO, "", "%s: write: %s", w->tmp, strerror(errno));
        q += k;
        n -= (uint64_t)k;
        w->pos += (uint64_t)k;
    }
    return NSQ_OK;
}

static nsq_status pad_to(nsq_writer *w, uint64_t align)
{
    static const uint8_t zeros[NSQ__BLOCK_ALIGN];
    return write_all(w, zeros, nsq__align_up(w->pos, align) - w->pos);
}

/* Writes the header placeholder (rewritten at finish); frees w on failure. */
static nsq_status writer_begin(nsq_writer *w, nsq_writer **out, nsq_diag *d)
{
    uint8_t header[NSQ__HEADER_SIZE] = {0};
    w->zstd_level = ZSTD_LEVEL;
    if (write_all(w, header, sizeof header)) {
        nsq_status st = nsq__fail(d, w->err, UINT64_MAX, "", "%s", w->diag.message);
        nsq_writer_abort(w);
        return st;
    }
    *out = w;
    return NSQ_OK;
}

nsq_status nsq_writer_open(const char *path, nsq_writer **out, nsq_diag *d)
{
    if (!path || !out) return nsq__fail(d, NSQ_E_ARG, UINT64_MAX, "", "NULL argument");
    *out = NULL;
    nsq_writer *w = calloc(1, sizeof *w);
    size_t n = strlen(path);
    if (!w || !(w->path = strdup(path)) || !(w->tmp = malloc(n + 16))) {
        if (w) free(w->path);
        free(w);
        return nsq__fail(d, NSQ_E_NOMEM, UINT64_MAX, "", "writer");
    }
    /* an unnamed file vanishes by itself if the process dies before finish */
    char *dir = strdup(path);
    w->fd = dir ? open(dirname(dir), O_TMPFILE | O_RDWR | O_CLOEXEC, 0644) : -1;
    free(dir);
    w->anonymous = w->fd >= 0;
    if (w->anonymous) {
        snprintf(w->tmp, n + 16, "/proc/self/fd/%d", w->fd);
    } else {
        snprintf(w->tmp, n + 16, "%s.tmp-XXXXXX", path);
        w->fd = mkstemp(w->tmp);
    }
    if (w->fd < 0) {
        nsq_status st = nsq__fail(d, NSQ_E_IO, UINT64_MAX, "", "%s: cannot create a temporary file: %s", path,
                                  strerror(errno));
        free(w->tmp);
        free(w->path);
        free(w);
        return st;
    }
    fchmod(w->fd, 0644);
    return writer_begin(w, out, d);
}

nsq_status nsq_writer_open_fd(int fd, nsq_writer **out, nsq_diag *d)
{
    if (fd < 0 || !out) return nsq__fail(d, NSQ_E_ARG, UINT64_MAX, "", "no file descriptor or output pointer");
    *out = NULL;
    char name[32];
    snprintf(name, sizeof name, "/proc/self/fd/%d", fd);
    nsq_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(name)) || !(w->tmp = strdup(name))) {
        if (w) free(w->path);
        free(w);
        return nsq__fail(d, NSQ_E_NOMEM, UINT64_MAX, "", "writer");
    }
    w->fd = fd;
    w->anonymous = w->borrowed = 1;
    return writer_begin(w, out, d);
}

static void free_writer(nsq_writer *w)
{
    for (uint32_t i = 0; i < w->meta_count; i++) {
        free(w->meta[i].key);
        free(w->meta[i].enc.p);
    }
    free(w->meta);
    for (uint32_t i = 0; i < w->tok_count; i++) free(w->tok_names[i]);
    free(w->tok_names);
    free(w->tok_files.p);
    free(w->blocks.p);
    free(w->refines.p);
    for (uint32_t i = 0; i < w->tensor_count; i++) free(w->tensors[i].name);
    free(w->tensors);
    free(w->raw.p);
    for (int l = 0; l < NSQ_MAX_REFINEMENTS; l++) free(w->level[l].p);
    free(w->importance.p);
    free(w->router.p);
    free(w->tmp);
    free(w->path);
    free(w);
}

void nsq_writer_abort(nsq_writer *w)
{
    if (!w) return;
    if (w->fd >= 0 && !w->borrowed) close(w->fd);
    if (!w->anonymous) unlink(w->tmp);
    free_writer(w);
}

/* ---- metadata ---- */
static nsq_status meta_begin(nsq_writer *w, const char *key, uint8_t type, buf **enc)
{
    if (w->err) return w->err;
    if (!key || !nsq__valid_key(key, strlen(key)))
        return werr(w, NSQ_E_ARG, "R-META-3", "invalid metadata key \"%.64s\"", key ? key : "(null)");
    for (uint32_t i = 0; i < w->meta_count; i++)
        if (strcmp(w->meta[i].key, key) == 0) return werr(w, NSQ_E_ARG, "R-META-4", "metadata key %s set twice", key);
    if (w->meta_count == NSQ__MAX_META_COUNT) return werr(w, NSQ_E_LIMIT, "R-META-1", "more than 65536 metadata keys");
    wmeta *m = realloc(w->meta, (w->meta_count + 1) * sizeof *m);
    if (!m) return nomem(w);
    w->meta = m;
    m = &w->meta[w->meta_count];
    memset(m, 0, sizeof *m);
    if (!(m->key = strdup(key)) || buf_u8(&m->enc, type)) {
        free(m->key);
        return nomem(w);
    }
    w->meta_count++;
    *enc = &m->enc;
    return NSQ_OK;
}

static nsq_status put_string(nsq_writer *w, buf *b, const char *s, size_t len)
{
    if (len > NSQ__MAX_STRING_LEN) return werr(w, NSQ_E_LIMIT, "R-META-6", "string of %zu bytes", len);
    if (!nsq__valid_utf8((const uint8_t *)s, len)) return werr(w, NSQ_E_ARG, "R-META-7", "string is not UTF-8 without NUL");
    if (buf_u32(b, (uint32_t)len) || buf_put(b, s, len)) return nomem(w);
    return NSQ_OK;
}

static nsq_status put_scalar(nsq_writer *w, buf *b, uint32_t type, const void *v)
{
    uint64_t u;
    double f;
    switch (type) {
    case NSQ_META_U64: case NSQ_META_I64: memcpy(&u, v, 8); break;
    case NSQ_META_F64:
        memcpy(&f, v, 8);
        if (!isfinite(f)) return werr(w, NSQ_E_ARG, "R-META-8", "f64 metadata value is not finite");
        memcpy(&u, &f, 8);
        break;
    case NSQ_META_BOOL:
        if (*(const uint8_t *)v > 1) return werr(w, NSQ_E_ARG, "R-META-8", "bool value is not 0 or 1");
        return buf_u8(b, *(const uint8_t *)v) ? nomem(w) : NSQ_OK;
    default: return werr(w, NSQ_E_ARG, "R-META-9", "unknown metadata type %u", type);
    }
    return buf_u64(b, u) ? nomem(w) : NSQ_OK;
}

static nsq_status meta_scalar(nsq_writer *w, const char *key, uint32_t type, const void *v)
{
    buf *b;
    nsq_status st = meta_begin(w, key, (uint8_t)type, &b);
    return st ? st : put_scalar(w, b, type, v);
}

nsq_status nsq_writer_meta_u64(nsq_writer *w, const char *key, uint64_t v) { return meta_scalar(w, key, NSQ_META_U64, &v); }
nsq_status nsq_writer_meta_i64(nsq_writer *w, const char *key, int64_t v) { return meta_scalar(w, key, NSQ_META_I64, &v); }
nsq_status nsq_writer_meta_f64(nsq_writer *w, const char *key, double v) { return meta_scalar(w, key, NSQ_META_F64, &v); }
nsq_status nsq_writer_meta_bool(nsq_writer *w, const char *key, int v)
{
    uint8_t b = (uint8_t)(v != 0);
    return meta_scalar(w, key, NSQ_META_BOOL, &b);
}

nsq_status nsq_writer_meta_str(nsq_writer *w, const char *key, const char *s, size_t len)
{
    buf *b;
    nsq_status st = meta_begin(w, key, NSQ_META_STRING, &b);
    return st ? st : put_string(w, b, s, len);
}

nsq_status nsq_writer_meta_array(nsq_writer *w, const char *key, nsq_meta_type type, const void *values, uint32_t count)
{
    if (count > NSQ__MAX_ARRAY_LEN) return werr(w, NSQ_E_LIMIT, "R-META-6", "%s: array of %u elements", key, count);
    if (count && !values) return werr(w, NSQ_E_ARG, "", "%s: NULL values", key);
    buf *b;
    nsq_status st = meta_begin(w, key, (uint8_t)(type | NSQ_META_ARRAY), &b);
    if (st) return st;
    if (buf_u32(b, count)) return nomem(w);
    for (uint32_t i = 0; i < count && !st; i++) {
        if (type == NSQ_META_STRING) {
            const char *s = ((const char *const *)values)[i];
            st = put_string(w, b, s, strlen(s));
        } else {
            size_t sz = type == NSQ_META_BOOL ? 1 : 8;
            st = put_scalar(w, b, type, (const uint8_t *)values + i * sz);
        }
    }
    return st;
}

/* ---- tokenizer ---- */
nsq_status nsq_writer_tokenizer(nsq_writer *w, nsq_tokenizer_kind kind)
{
    if (w->err) return w->err;
    if (kind < NSQ_TOK_HF_JSON || kind > NSQ_TOK_SENTENCEPIECE)
        return werr(w, NSQ_E_ARG, "R-TOK-1", "unknown tokenizer kind %u", kind);
    w->tok_kind = kind;
    return NSQ_OK;
}

nsq_status nsq_writer_tokenizer_file(nsq_writer *w, const char *name, const void *data, uint64_t size)
{
    if (w->err) return w->err;
    size_t len = name ? strlen(name) : 0;
    if (!nsq__valid_tok_name((const uint8_t *)name, len))
        return werr(w, NSQ_E_ARG, "R-TOK-4", "invalid tokenizer file name \"%.64s\"", name ? name : "(null)");
    if (w->tok_count == NSQ__MAX_TOK_FILES) return werr(w, NSQ_E_LIMIT, "R-TOK-2", "more than 16 tokenizer files");
    if (w->tok_count && strcmp(w->tok_names[w->tok_count - 1], name) >= 0)
        return werr(w, NSQ_E_ARG, "R-TOK-5", "tokenizer files must be added in increasing name order (%s)", name);
    if (size > NSQ__MAX_TOKENIZER_SECTION) return werr(w, NSQ_E_LIMIT, "R-SEC-3", "tokenizer file %s too large", name);
    char **names = realloc(w->tok_names, (w->tok_count + 1) * sizeof *names);
    if (!names) return nomem(w);
    w->tok_names = names;
    if (!(names[w->tok_count] = strdup(name))) return nomem(w);
    w->tok_count++;
    if (buf_u16(&w->tok_files, (uint16_t)len) || buf_put(&w->tok_files, name, len) || buf_u64(&w->tok_files, size) ||
        buf_put(&w->tok_files, data, (size_t)size))
        return nomem(w);
    return NSQ_OK;
}

/* ---- blocks ---- */
nsq_status nsq_writer_begin_block(nsq_writer *w, nsq_block_kind kind, uint32_t first_layer, uint32_t n_layers,
                                  nsq_compression comp)
{
    if (w->err) return w->err;
    if (w->in_block) return werr(w, NSQ_E_STATE, "", "begin_block while block %u is open", w->block_count);
    if (kind < NSQ_BLOCK_EMBEDDINGS || kind > NSQ_BLOCK_OUTPUT || comp > NSQ_COMP_ZSTD)
        return werr(w, NSQ_E_ARG, "R-DIR-4", "block kind %u or compression %u unknown", kind, comp);
    if (w->block_count == NSQ__MAX_BLOCKS) return werr(w, NSQ_E_LIMIT, "R-DIR-2", "more than 65536 blocks");
    w->in_block = 1;
    w->kind = kind;
    w->first_layer = first_layer;
    w->n_layers = n_layers;
    w->comp = comp;
    w->block_first_tensor = w->tensor_count;
    w->raw.len = 0;
    for (int l = 0; l < NSQ_MAX_REFINEMENTS; l++) w->level[l].len = 0;
    return NSQ_OK;
}

/* Checks the payload exactly as a reader will (spec: Storage schemes). */
static nsq_status check_payload(nsq_writer *w, wtensor *t, const uint8_t *data, nsq_view *v)
{
    uint64_t n = 1;
    for (uint32_t k = 0; k < t->n_dims; k++)
        if (t->dims[k] == 0 || t->dims[k] > NSQ__MAX_DIM || nsq__mul(n, t->dims[k], &n) || n > NSQ__MAX_ELEMENTS)
            return werr(w, NSQ_E_LIMIT, "R-TEN-4", "%s: dimension %u is 0 or too large", t->name, k);
    t->cols = t->dims[t->n_dims - 1];
    t->n_groups = t->group_size ? n / t->group_size : 0;
    const nsq__scheme *s = nsq__scheme_of(t->scheme);
    nsq_diag d = {0};
    nsq_status st = s ? s->check_add(t->scheme, t->name, t->n_dims, n, t->group_size, t->size, &d) : NSQ_OK;
    if (st) return werr(w, st, d.rule, "%s", d.message);
    st = nsq_view_init(t->scheme, n / t->cols, t->cols, t->group_size, data, t->size, v, &d);
    if (st) return werr(w, st, d.rule, "%s: %s", t->name, d.message[0] ? d.message : "invalid payload or group size");
    return NSQ_OK;
}

nsq_status nsq_writer_add_tensor(nsq_writer *w, const char *name, nsq_scheme scheme, uint32_t n_dims,
                                 const uint64_t *dims, uint32_t group_size, const void *data, uint64_t size)
{
    if (w->err) return w->err;
    if (!w->in_block) return werr(w, NSQ_E_STATE, "", "add_tensor outside a block");
    size_t len = name ? strlen(name) : 0;
    if (!nsq__valid_tensor_name((const uint8_t *)name, len))
        return werr(w, NSQ_E_ARG, "R-TEN-1", "invalid tensor name \"%.64s\"", name ? name : "(null)");
    if (n_dims < 1 || n_dims > NSQ_MAX_DIMS || !dims || (size && !data))
        return werr(w, NSQ_E_ARG, "R-TEN-4", "%s: %u dims", name, n_dims);
    if (w->tensor_count == NSQ__MAX_TENSORS) return werr(w, NSQ_E_LIMIT, "R-DIR-2", "more than 2^20 tensors");
    if (w->tensor_count == w->tensor_cap) {
        uint32_t cap = w->tensor_cap ? 2 * w->tensor_cap : 64;
        wtensor *t = realloc(w->tensors, cap * sizeof *t);
        if (!t) return nomem(w);
        w->tensors = t;
        w->tensor_cap = cap;
    }
    wtensor *t = &w->tensors[w->tensor_count];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) return nomem(w);
    w->tensor_count++;
    t->scheme = scheme;
    t->n_dims = n_dims;
    t->group_size = group_size;
    t->block = w->block_count;
    memcpy(t->dims, dims, n_dims * sizeof *dims);
    t->size = size;
    if (buf_align(&w->raw, NSQ__TENSOR_ALIGN)) return nomem(w);
    t->offset = w->raw.len;
    if (w->raw.len + size > NSQ__MAX_RAW_SIZE) return werr(w, NSQ_E_LIMIT, "R-DIR-7", "block larger than 2^36 bytes");
    if (buf_put(&w->raw, data, (size_t)size)) return nomem(w);
    /* the view of the copy stays valid for refinements until the next tensor;
     * raw.p is still NULL when only empty payloads were added (no NULL + 0) */
    nsq_status st = check_payload(w, t, w->raw.p ? w->raw.p + t->offset : NULL, &w->last_view);
    w->any_lattice |= !st && scheme == NSQ_SCHEME_LATTICE;
    w->any_e8s |= !st && scheme == NSQ_SCHEME_LATTICE && nsq__lattice_e8s(&w->last_view, NULL, 0);
    return st;
}

/* Level `level` of the tensor added last, in the form part gives. */
static nsq_status add_refinement(nsq_writer *w, uint32_t scheme, uint32_t level, nsq_tensor_refinement part,
                                 const void *data)
{
    if (w->err) return w->err;
    wtensor *t = w->tensor_count > w->block_first_tensor ? &w->tensors[w->tensor_count - 1] : NULL;
    if (!w->in_block || !t || t->scheme != scheme)
        return werr(w, NSQ_E_STATE, "", "a refinement needs a %s tensor just added to the open block",
                    scheme == NSQ_SCHEME_TIERED ? "TIERED" : "LATTICE");
    if (level != t->n_refine + 1 || level > NSQ_MAX_REFINEMENTS)
        return werr(w, NSQ_E_ARG, "R-DIR-10", "%s: refinement level %u, expected %u", t->name, level, t->n_refine + 1);
    nsq_refine_view rv;
    nsq_diag d = {0};
    nsq_status st = nsq__refine_view(&w->last_view, &part, data, &rv, &d);
    if (st) return werr(w, st, d.rule, "%s: refinement %u: %s", t->name, level, d.message[0] ? d.message : "invalid form");
    if (scheme == NSQ_SCHEME_LATTICE &&
        nsq__lattice_stages(&w->last_view, t->refine, level - 1) + part.bits > NSQ_LATTICE_MAX_STAGES)
        return werr(w, NSQ_E_ARG, "R-LAT-6", "%s: more than %d LATTICE stages with refinement %u", t->name,
                    NSQ_LATTICE_MAX_STAGES, level);
    if (scheme == NSQ_SCHEME_TIERED && part.size == 0)
        return werr(w, NSQ_E_ARG, "R-TEN-11", "%s: no quantized groups to refine", t->name);
    buf *b = &w->level[level - 1];
    if (buf_align(b, NSQ__TENSOR_ALIGN)) return nomem(w);
    part.offset = b->len;
    t->refine[level - 1] = part;
    if (buf_put(b, data, (size_t)part.size)) return nomem(w);
    t->n_refine = level;
    w->any_lattice_levels |= scheme == NSQ_SCHEME_LATTICE;
    w->any_e8s |= scheme == NSQ_SCHEME_LATTICE && nsq__lattice_e8s(NULL, &part, 1);
    return NSQ_OK;
}

nsq_status nsq_writer_add_refinement(nsq_writer *w, uint32_t level, uint32_t bits, const void *codes, uint64_t size)
{
    if (bits > 255) return werr(w, NSQ_E_ARG, "R-TEN-9", "refinement bits %u", bits);
    return add_refinement(w, NSQ_SCHEME_TIERED, level, (nsq_tensor_refinement){(uint8_t)bits, {0, 0, 0}, 0, size}, codes);
}

nsq_status nsq_writer_add_lattice_refinement(nsq_writer *w, uint32_t level, uint32_t n_stages, const uint32_t *kinds,
                                             const void *data, uint64_t size)
{
    nsq_tensor_refinement part = {(uint8_t)n_stages, {0, 0, 0}, 0, size};
    if (n_stages > 3 || (n_stages && !kinds)) return werr(w, NSQ_E_ARG, "R-TEN-9", "%u stages in a refinement", n_stages);
    for (uint32_t s = 0; s < n_stages; s++) part.kind[s] = (uint8_t)(kinds[s] < 256 ? kinds[s] : 0);
    return add_refinement(w, NSQ_SCHEME_LATTICE, level, part, data);
}

/* Writes one 4096-aligned range, zstd-compressed when asked and when the
 * result stays within the format's ratio cap; fills stored size and checksum. */
static nsq_status write_range(nsq_writer *w, const buf *raw, uint32_t *comp, uint64_t *offset, uint64_t *stored,
                              uint64_t *checksum)
{
    nsq_status st = pad_to(w, NSQ__BLOCK_ALIGN);
    if (st) return st;
    *offset = w->pos;
    const void *out = raw->p;
    size_t n = raw->len;
    void *z = NULL;
    if (*comp == NSQ_COMP_ZSTD) {
        size_t cap = ZSTD_compressBound(raw->len);
        if (!(z = malloc(cap))) return nomem(w);
        size_t k = ZSTD_compress(z, cap, raw->p, raw->len, w->zstd_level);
        if (ZSTD_isError(k)) {
            free(z);
            return werr(w, NSQ_E_COMPRESSION, "", "zstd: %s", ZSTD_getErrorName(k));
        }
        if (k >= raw->len || raw->len / NSQ__MAX_ZSTD_RATIO > k) {
            /* no gain, or too compressible for a reader's bomb check */
            *comp = NSQ_COMP_NONE;
        } else {
            out = z;
            n = k;
            w->any_zstd = 1;
        }
    }
    *stored = n;
    *checksum = XXH3_64bits(out, n);
    st = write_all(w, out, n);
    free(z);
    return st;
}

static nsq_status end_refinements(nsq_writer *w, uint32_t levels)
{
    for (uint32_t l = 1; l <= levels; l++) {
        uint32_t comp = w->comp;
        uint64_t off, stored, sum, raw = w->level[l - 1].len;
        nsq_status st = write_range(w, &w->level[l - 1], &comp, &off, &stored, &sum);
        if (st) return st;
        buf *r = &w->refines;
        if (buf_u32(r, w->block_count) || buf_u32(r, l) || buf_u32(r, comp) || buf_u32(r, 0) || buf_u64(r, off) ||
            buf_u64(r, stored) || buf_u64(r, raw) || buf_u64(r, sum))
            return nomem(w);
        w->refine_count++;
    }
    return NSQ_OK;
}

nsq_status nsq_writer_end_block(nsq_writer *w, nsq_diag *d)
{
    if (!w) return nsq__fail(d, NSQ_E_ARG, UINT64_MAX, "", "NULL writer");
    if (!w->err && !w->in_block) werr(w, NSQ_E_STATE, "", "end_block without begin_block");
    if (!w->err && w->tensor_count == w->block_first_tensor)
        werr(w, NSQ_E_ARG, "R-TEN-11", "block %u has no tensors", w->block_count);
    if (w->err) goto fail;
    uint32_t levels = 0;
    for (uint32_t i = w->block_first_tensor; i < w->tensor_count; i++)
        if (w->tensors[i].n_refine > levels) levels = w->tensors[i].n_refine;
    uint32_t comp = w->comp;
    uint64_t off, stored, sum;
    if (write_range(w, &w->raw, &comp, &off, &stored, &sum) || end_refinements(w, levels)) goto fail;
    buf *b = &w->blocks;
    if (buf_u32(b, w->kind) || buf_u32(b, w->first_layer) || buf_u32(b, w->n_layers) || buf_u32(b, comp) ||
        buf_u64(b, off) || buf_u64(b, stored) || buf_u64(b, w->raw.len) || buf_u64(b, sum) || buf_zeros(b, 16)) {
        nomem(w);
        goto fail;
    }
    w->block_count++;
    w->in_block = 0;
    return NSQ_OK;
fail:
    if (d) *d = w->diag;
    return w->err;
}

/* ---- importance and router ---- */
nsq_status nsq_writer_importance(nsq_writer *w, nsq_importance_method method, double target_bpw, const char *provenance)
{
    if (w->err) return w->err;
    size_t len = provenance ? strlen(provenance) : 0;
    if (w->has_importance) return werr(w, NSQ_E_STATE, "", "importance section started twice");
    if ((method != NSQ_IMP_MAGNITUDE && method != NSQ_IMP_CALIBRATED) || !isfinite(target_bpw) || target_bpw < 0 ||
        target_bpw > 32)
        return werr(w, NSQ_E_ARG, "R-IMP-1", "importance method %u or target_bpw out of range", method);
    if (len > NSQ__MAX_PROVENANCE || !nsq__valid_utf8((const uint8_t *)provenance, len))
        return werr(w, NSQ_E_ARG, "R-IMP-2", "provenance too long or not UTF-8");
    buf *b = &w->importance;
    uint64_t bits;
    memcpy(&bits, &target_bpw, 8);
    /* the entry count at offset 4 is patched at finish */
    if (buf_u32(b, method) || buf_u32(b, 0) || buf_u64(b, bits) || buf_u32(b, (uint32_t)len) ||
        buf_put(b, provenance, len))
        return nomem(w);
    w->has_importance = 1;
    return NSQ_OK;
}

static nsq_status put_stats(nsq_writer *w, buf *b, const float *v, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        if (!isfinite(v[i]) || v[i] < 0) return werr(w, NSQ_E_ARG, "R-IMP-6", "importance value %llu is %g", (unsigned long long)i, v[i]);
        uint32_t u;
        memcpy(&u, &v[i], 4);
        if (buf_u32(b, u)) return nomem(w);
    }
    return NSQ_OK;
}

nsq_status nsq_writer_importance_entry(nsq_writer *w, const char *name, const float *group_stats, uint64_t n_group_stats,
                                       const float *col_stats, uint64_t n_col_stats)
{
    if (w->err) return w->err;
    if (!w->has_importance) return werr(w, NSQ_E_STATE, "", "importance entry before nsq_writer_importance");
    uint32_t i = name ? w->tensor_count : 0; /* a NULL name matches no tensor */
    while (i > 0 && strcmp(w->tensors[i - 1].name, name) != 0) i--;
    if (i == 0) return werr(w, NSQ_E_NOT_FOUND, "R-IMP-4", "importance for unknown tensor %.64s", name ? name : "(null)");
    const wtensor *t = &w->tensors[--i];
    if (!nsq__scheme_of(t->scheme)->grouped || (w->imp_count && i <= w->imp_last))
        return werr(w, NSQ_E_ARG, "R-IMP-4", "importance for %s: not TIERED or LATTICE, or not in tensor order", name);
    if ((n_group_stats && n_group_stats != t->n_groups) || (n_col_stats && n_col_stats != t->cols) ||
        (n_group_stats && !group_stats) || (n_col_stats && !col_stats))
        return werr(w, NSQ_E_ARG, "R-IMP-5", "importance for %s: %llu group / %llu column stats", name,
                    (unsigned long long)n_group_stats, (unsigned long long)n_col_stats);
    buf *b = &w->importance;
    if (buf_u32(b, i) || buf_u32(b, 0) || buf_u64(b, n_group_stats) || buf_u64(b, n_col_stats)) return nomem(w);
    nsq_status st = put_stats(w, b, group_stats, n_group_stats);
    if (!st) st = put_stats(w, b, col_stats, n_col_stats);
    w->imp_count++;
    w->imp_last = i;
    return st;
}

static int put_f32s(buf *b, const float *v, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        if (buf_u32(b, u)) return -1;
    }
    return 0;
}

nsq_status nsq_writer_router(nsq_writer *w, const nsq_router_params *p)
{
    if (w->err) return w->err;
    if (!p || !p->choice_mask || !p->in_mean || !p->in_scale || !p->w2 || !p->b2 ||
        (p->hidden_dim && (!p->w1 || !p->b1)) || p->hidden_dim > NSQ__MAX_ROUTER_HIDDEN || p->block_count == 0 ||
        p->block_count > NSQ__MAX_BLOCKS || p->input_dim == 0)
        return werr(w, NSQ_E_ARG, "R-RTR-2", "router parameters missing or out of range");
    if (w->has_router) return werr(w, NSQ_E_STATE, "", "router set twice");
    uint64_t in = p->input_dim, h = p->hidden_dim, out = 3ull * p->block_count;
    uint32_t t;
    memcpy(&t, &p->temperature, 4);
    buf *b = &w->router;
    if (buf_u32(b, p->feature) || buf_u32(b, p->input_dim) || buf_u32(b, p->hidden_dim) || buf_u32(b, p->activation) ||
        buf_u32(b, p->block_count) || buf_u32(b, t) || buf_u64(b, 0) || buf_put(b, p->choice_mask, p->block_count) ||
        buf_align(b, 4) || put_f32s(b, p->in_mean, in) || put_f32s(b, p->in_scale, in) ||
        (h && (put_f32s(b, p->w1, h * in) || put_f32s(b, p->b1, h))) || put_f32s(b, p->w2, out * (h ? h : in)) ||
        put_f32s(b, p->b2, out))
        return nomem(w);
    w->has_router = 1;
    return NSQ_OK;
}

/* ---- finish ---- */
static int cmp_meta(const void *a, const void *b)
{
    return strcmp(((const wmeta *)a)->key, ((const wmeta *)b)->key);
}

static int encode_metadata(nsq_writer *w, buf *b)
{
    qsort(w->meta, w->meta_count, sizeof *w->meta, cmp_meta);
    if (buf_u32(b, w->meta_count)) return -1;
    for (uint32_t i = 0; i < w->meta_count; i++) {
        size_t n = strlen(w->meta[i].key);
        if (buf_u16(b, (uint16_t)n) || buf_put(b, w->meta[i].key, n) || buf_put(b, w->meta[i].enc.p, w->meta[i].enc.len))
            return -1;
    }
    return 0;
}

static int encode_tensor(buf *b, const wtensor *t)
{
    size_t n = strlen(t->name);
    if (buf_u16(b, (uint16_t)n) || buf_put(b, t->name, n) || buf_u8(b, (uint8_t)t->scheme) ||
        buf_u8(b, (uint8_t)t->n_dims) || buf_u32(b, t->block) || buf_u32(b, t->group_size) ||
        buf_u8(b, (uint8_t)t->n_refine) || buf_zeros(b, 5))
        return -1;
    for (uint32_t k = 0; k < t->n_dims; k++)
        if (buf_u64(b, t->dims[k])) return -1;
    if (buf_u64(b, t->offset) || buf_u64(b, t->size)) return -1;
    for (uint32_t l = 0; l < t->n_refine; l++)
        if (buf_u8(b, t->refine[l].bits) || buf_put(b, t->refine[l].kind, 3) || buf_zeros(b, 4) ||
            buf_u64(b, t->refine[l].offset) ||
            buf_u64(b, t->refine[l].size))
            return -1;
    return 0;
}

static int encode_directory(nsq_writer *w, buf *b)
{
    if (buf_u32(b, w->block_count) || buf_u32(b, w->refine_count) || buf_u32(b, w->tensor_count) || buf_u32(b, 0) ||
        buf_put(b, w->blocks.p, w->blocks.len) || buf_put(b, w->refines.p, w->refines.len))
        return -1;
    for (uint32_t i = 0; i < w->tensor_count; i++)
        if (encode_tensor(b, &w->tensors[i])) return -1;
    return 0;
}

static int encode_tokenizer(nsq_writer *w, buf *b)
{
    return buf_u32(b, w->tok_kind) || buf_u32(b, w->tok_count) || buf_put(b, w->tok_files.p, w->tok_files.len);
}

typedef struct {
    uint32_t kind;
    buf data;
    uint64_t offset;
} wsection;

static nsq_status write_sections(nsq_writer *w, wsection *s, uint32_t n, buf *table)
{
    for (uint32_t i = 0; i < n; i++) {
        nsq_status st = pad_to(w, NSQ__SECTION_ALIGN);
        if (st) return st;
        s[i].offset = w->pos;
        if ((st = write_all(w, s[i].data.p, s[i].data.len))) return st;
        if (buf_u32(table, s[i].kind) || buf_u32(table, 0) || buf_u64(table, s[i].offset) ||
            buf_u64(table, s[i].data.len) || buf_u64(table, XXH3_64bits(s[i].data.p, s[i].data.len)))
            return nomem(w);
    }
    nsq_status st = pad_to(w, NSQ__SECTION_ALIGN);
    return st ? st : write_all(w, table->p, table->len);
}

static void fill_header(nsq_writer *w, uint8_t *h, uint64_t table_off, uint32_t n, const buf *table, const buf *dir)
{
    memset(h, 0, NSQ__HEADER_SIZE);
    memcpy(h, NSQ__MAGIC, 8);
    nsq__wr16(h + 8, NSQ_FORMAT_MAJOR);
    nsq__wr16(h + 10, NSQ_FORMAT_MINOR);
    nsq__wr32(h + 12, NSQ__HEADER_SIZE);
    nsq__wr64(h + 16, (w->any_zstd ? NSQ_REQ_ZSTD : 0) | (w->any_lattice ? NSQ_REQ_LATTICE : 0) |
                          (w->any_lattice_levels ? NSQ_REQ_LATTICE_LEVELS : 0) | (w->any_e8s ? NSQ_REQ_LATTICE_E8S : 0));
    nsq__wr64(h + 24, (w->refine_count ? NSQ_OPT_REFINEMENTS : 0) | (w->has_importance ? NSQ_OPT_IMPORTANCE : 0) |
                          (w->has_router ? NSQ_OPT_ROUTER : 0));
    nsq__wr64(h + 32, w->pos);
    nsq__wr64(h + 40, table_off);
    nsq__wr32(h + 48, n);
    nsq__wr32(h + 52, NSQ__SECTION_ENTRY_SIZE);
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, h, NSQ__HEADER_SIZE);
    XXH3_64bits_update(&st, table->p, table->len);
    XXH3_64bits_update(&st, dir->p, dir->len);
    nsq__wr64(h + 56, XXH3_64bits_digest(&st));
}

static nsq_status write_tail(nsq_writer *w)
{
    wsection s[5] = {{NSQ__SEC_METADATA, {0}, 0}, {NSQ__SEC_TOKENIZER, {0}, 0}, {NSQ__SEC_DIRECTORY, {0}, 0},
                     {NSQ__SEC_IMPORTANCE, w->importance, 0}, {NSQ__SEC_ROUTER, w->router, 0}};
    uint32_t n = 3 + (uint32_t)w->has_importance + (uint32_t)w->has_router;
    if (!w->has_importance) s[3] = s[4];
    if (w->has_importance) nsq__wr32(w->importance.p + 4, w->imp_count);
    buf table = {0};
    nsq_status st = NSQ_OK;
    if (encode_metadata(w, &s[0].data) || encode_tokenizer(w, &s[1].data) || encode_directory(w, &s[2].data))
        st = nomem(w);
    if (!st) st = write_sections(w, s, n, &table);
    if (!st) {
        uint8_t h[NSQ__HEADER_SIZE];
        fill_header(w, h, w->pos - table.len, n, &table, &s[2].data);
        if (pwrite(w->fd, h, sizeof h, 0) != (ssize_t)sizeof h) st = werr(w, NSQ_E_IO, "", "%s: %s", w->tmp, strerror(errno));
    }
    for (int i = 0; i < 3; i++) free(s[i].data.p);
    free(table.p);
    return st;
}

/* The finished file must open and verify like any other before it replaces path. */
static nsq_status validate_tmp(nsq_writer *w)
{
    nsq_file *f;
    nsq_diag d;
    nsq_status st = nsq_open(w->tmp, NSQ_OPEN_PREAD, &f, &d); /* one block in memory at a time */
    if (!st) {
        st = nsq_verify(f, &d);
        nsq_close(f);
    }
    if (st) return werr(w, st, d.rule, "written file is invalid: %s", d.message);
    return NSQ_OK;
}

static void sync_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy) return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

/* Gives the finished file the name path, replacing any file there. */
static nsq_status publish(nsq_writer *w)
{
    if (w->anonymous) { /* link the unnamed file under a fresh name first: rename is what replaces atomically */
        size_t n = strlen(w->path) + 48;
        char *name = malloc(n);
        if (!name) return nomem(w);
        int rc = -1;
        for (unsigned k = 0; k < 100 && rc != 0; k++) {
            snprintf(name, n, "%s.tmp-%ld-%u", w->path, (long)getpid(), k);
            rc = linkat(AT_FDCWD, w->tmp, AT_FDCWD, name, AT_SYMLINK_FOLLOW);
            if (rc != 0 && errno != EEXIST) break;
        }
        if (rc != 0) {
            free(name);
            return werr(w, NSQ_E_IO, "", "%s: cannot link the finished file: %s", w->path, strerror(errno));
        }
        free(w->tmp);
        w->tmp = name;
        w->anonymous = 0;
    }
    if (rename(w->tmp, w->path) != 0) return werr(w, NSQ_E_IO, "", "rename %s -> %s: %s", w->tmp, w->path, strerror(errno));
    return NSQ_OK;
}

nsq_status nsq_writer_finish(nsq_writer *w, nsq_diag *d)
{
    if (!w) return nsq__fail(d, NSQ_E_ARG, UINT64_MAX, "", "NULL writer");
    if (!w->err && w->in_block) werr(w, NSQ_E_STATE, "", "finish with block %u still open", w->block_count);
    if (!w->err && !w->tok_kind) werr(w, NSQ_E_STATE, "R-SEC-6", "no tokenizer was added");
    if (!w->err && !write_tail(w) && fsync(w->fd) != 0) werr(w, NSQ_E_IO, "", "%s: fsync: %s", w->path, strerror(errno));
    if (!w->err) validate_tmp(w);
    if (!w->err && w->borrowed) { /* the caller names the file, if at all */
        free_writer(w);
        return NSQ_OK;
    }
    if (!w->err) publish(w);
    if (!w->err) {
        int rc = close(w->fd);
        w->fd = -1;
        if (rc != 0) werr(w, NSQ_E_IO, "", "%s: close: %s", w->path, strerror(errno));
    }
    nsq_status st = w->err;
    if (st) {
        if (d) *d = w->diag;
        nsq_writer_abort(w);
        return st;
    }
    sync_dir(w->path);
    free_writer(w);
    return NSQ_OK;
}

nsq_status nsq_writer_zstd_level(nsq_writer *w, int level)
{
    if (w->err) return w->err;
    if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel())
        return werr(w, NSQ_E_ARG, "", "zstd level %d outside %d..%d", level, ZSTD_minCLevel(), ZSTD_maxCLevel());
    w->zstd_level = level;
    return NSQ_OK;
}
