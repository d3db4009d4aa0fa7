/* safetensors.c - reading Hugging Face safetensors checkpoints (see
 * safetensors.h).
 *
 * Every header is checked the way the reference loader (the Rust crate
 * `safetensors`: SafeTensors::read_metadata and Metadata::validate) checks it,
 * before any tensor is handed out:
 *   - 8-byte little-endian header length N, N <= 100000000, 8 + N <= file size;
 *   - the header starts with '{' and is a JSON object (UTF-8, no duplicate
 *     keys); "__metadata__", if present, maps strings to strings;
 *   - every other key is a tensor {"dtype", "shape", "data_offsets"} with a
 *     known dtype, non-negative integer dims (at most ST_MAX_DIMS), an element
 *     count and byte size that fit in 64 bits, and end - begin equal to that
 *     byte size;
 *   - sorted by data_offsets the tensors tile the data buffer exactly: the
 *     first starts at 0, each starts where the previous ends, and the last
 *     ends at the end of the file.
 * Unknown keys inside a tensor entry are ignored, as the reference does. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER 100000000ull
#define ST_INDEX_NAME "model.safetensors.index.json"
#define ST_SINGLE_NAME "model.safetensors"

__attribute__((format(printf, 3, 4))) static void st_seterr(char *err, size_t errlen,
                                                             const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- dtypes -------------------------------------------------------------- */

typedef struct {
    const char *name;
    unsigned bits;
    st_dtype dtype;
} st_dtype_info;

/* The reference crate's Dtype enum (sub-byte float formats included). */
static const st_dtype_info ST_DTYPES[] = {
    {"BOOL", 8, ST_OTHER},    {"U8", 8, ST_OTHER},      {"I8", 8, ST_OTHER},
    {"F8_E4M3", 8, ST_OTHER}, {"F8_E5M2", 8, ST_OTHER}, {"F8_E8M0", 8, ST_OTHER},
    {"F4", 4, ST_OTHER},      {"F6_E2M3", 6, ST_OTHER}, {"F6_E3M2", 6, ST_OTHER},
    {"I16", 16, ST_OTHER},    {"U16", 16, ST_OTHER},    {"F16", 16, ST_F16},
    {"BF16", 16, ST_BF16},    {"I32", 32, ST_OTHER},    {"U32", 32, ST_OTHER},
    {"F32", 32, ST_F32},      {"I64", 64, ST_OTHER},    {"U64", 64, ST_OTHER},
    {"F64", 64, ST_OTHER},    {"C64", 64, ST_OTHER},
};

static const st_dtype_info *st_lookup_dtype(const char *s)
{
    for (size_t i = 0; i < sizeof ST_DTYPES / sizeof ST_DTYPES[0]; i++)
        if (strcmp(s, ST_DTYPES[i].name) == 0)
            return &ST_DTYPES[i];
    return NULL;
}

/* ---- helpers ------------------------------------------------------------- */

static void st_fmt_shape(char *buf, size_t len, const uint64_t *dims, size_t n)
{
    size_t off = 0;
    int w = snprintf(buf, len, "[");
    off = w > 0 ? (size_t)w : 0;
    for (size_t i = 0; i < n && off < len; i++) {
        w = snprintf(buf + off, len - off, "%s%" PRIu64, i ? ", " : "", dims[i]);
        if (w < 0)
            return;
        off += (size_t)w;
    }
    if (off < len)
        snprintf(buf + off, len - off, "]");
}

static char *st_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    size_t o = a;
    if (a == 0 || dir[a - 1] != '/')
        p[o++] = '/';
    memcpy(p + o, name, b + 1);
    return p;
}

/* Non-negative JSON integer. */
static int st_get_u64(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v))
        return -1;
    json_int_t x = json_integer_value(v);
    if (x < 0)
        return -1;
    *out = (uint64_t)x;
    return 0;
}

static void st_free_tensors(st_tensor *t, size_t n)
{
    if (!t)
        return;
    for (size_t i = 0; i < n; i++)
        free(t[i].name);
    free(t);
}

static int st_cmp_name(const void *a, const void *b)
{
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

/* ---- one file ------------------------------------------------------------ */

typedef struct {
    uint64_t begin, end;
    size_t idx;
} st_span;

static int st_cmp_span(const void *a, const void *b)
{
    const st_span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Parses one tensor entry into *t (name already set) and its offsets. */
static int st_parse_tensor(const char *path, const char *name, const json_t *v, st_tensor *t,
                           st_span *sp, char *err, size_t errlen)
{
    if (!json_is_object(v)) {
        st_seterr(err, errlen, "%s: tensor %s: entry is not a JSON object", path, name);
        return -1;
    }
    const json_t *jd = json_object_get(v, "dtype");
    const json_t *js = json_object_get(v, "shape");
    const json_t *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd)) {
        st_seterr(err, errlen, "%s: tensor %s: missing or non-string \"dtype\"", path, name);
        return -1;
    }
    const char *ds = json_string_value(jd);
    const st_dtype_info *di = st_lookup_dtype(ds);
    if (!di) {
        st_seterr(err, errlen, "%s: tensor %s: unknown dtype \"%.64s\"", path, name, ds);
        return -1;
    }
    t->dtype = di->dtype;
    snprintf(t->dtype_name, sizeof t->dtype_name, "%s", di->name);

    if (!json_is_array(js)) {
        st_seterr(err, errlen, "%s: tensor %s: missing or non-array \"shape\"", path, name);
        return -1;
    }
    size_t nd = json_array_size(js);
    if (nd > ST_MAX_DIMS) {
        st_seterr(err, errlen, "%s: tensor %s: shape has %zu dims, at most %d are supported",
                  path, name, nd, ST_MAX_DIMS);
        return -1;
    }
    t->n_dims = (uint32_t)nd;
    uint64_t numel = 1;
    int overflow = 0;
    for (size_t i = 0; i < nd; i++) {
        if (st_get_u64(json_array_get(js, i), &t->dims[i]) != 0) {
            st_seterr(err, errlen,
                      "%s: tensor %s: shape entry %zu is not a non-negative integer", path,
                      name, i);
            return -1;
        }
        /* Folded in order with a checked multiply, like the reference. */
        if (!overflow && __builtin_mul_overflow(numel, t->dims[i], &numel))
            overflow = 1;
    }
    char shape[ST_MAX_DIMS * 24 + 4];
    st_fmt_shape(shape, sizeof shape, t->dims, nd);
    if (overflow) {
        st_seterr(err, errlen, "%s: tensor %s: shape %s has more than 2^64-1 elements", path,
                  name, shape);
        return -1;
    }
    t->n_elements = numel;

    if (!json_is_array(jo) || json_array_size(jo) != 2 ||
        st_get_u64(json_array_get(jo, 0), &sp->begin) != 0 ||
        st_get_u64(json_array_get(jo, 1), &sp->end) != 0) {
        st_seterr(err, errlen,
                  "%s: tensor %s: \"data_offsets\" must be two non-negative integers", path,
                  name);
        return -1;
    }
    if (sp->begin > sp->end) {
        st_seterr(err, errlen,
                  "%s: tensor %s: data_offsets [%" PRIu64 ", %" PRIu64 "] begin after end",
                  path, name, sp->begin, sp->end);
        return -1;
    }
    uint64_t bits;
    if (__builtin_mul_overflow(numel, (uint64_t)di->bits, &bits)) {
        st_seterr(err, errlen, "%s: tensor %s: shape %s of %s has more than 2^64-1 bits",
                  path, name, shape, di->name);
        return -1;
    }
    if (bits % 8 != 0) {
        st_seterr(err, errlen,
                  "%s: tensor %s: shape %s of %s is not a whole number of bytes", path, name,
                  shape, di->name);
        return -1;
    }
    uint64_t need = bits / 8, have = sp->end - sp->begin;
    if (have != need) {
        st_seterr(err, errlen,
                  "%s: tensor %s: data_offsets [%" PRIu64 ", %" PRIu64 "] give %" PRIu64
                  " bytes, shape %s of %s needs %" PRIu64,
                  path, name, sp->begin, sp->end, have, shape, di->name, need);
        return -1;
    }
    t->size = need;
    return 0;
}

static int st_check_metadata(const char *path, const json_t *v, char *err, size_t errlen)
{
    if (json_is_null(v))
        return 0; /* the reference reads it as Option<HashMap<String,String>> */
    if (!json_is_object(v)) {
        st_seterr(err, errlen, "%s: \"__metadata__\" is not a JSON object", path);
        return -1;
    }
    const char *k;
    const json_t *x;
    json_object_foreach((json_t *)v, k, x)
    {
        if (!json_is_string(x)) {
            st_seterr(err, errlen, "%s: \"__metadata__\" value for key \"%s\" is not a string",
                      path, k);
            return -1;
        }
    }
    return 0;
}

/* Validates the header of a mapped file; on success returns its tensors (in
 * header order, data pointing into the map). */
static int st_parse(const char *path, uint32_t shard, const uint8_t *p, uint64_t size,
                    st_tensor **out, size_t *n_out, char *err, size_t errlen)
{
    uint64_t n = 0;
    for (int i = 0; i < 8; i++)
        n |= (uint64_t)p[i] << (8 * i);
    if (n > ST_MAX_HEADER) {
        st_seterr(err, errlen, "%s: header length %" PRIu64 " exceeds the limit of %llu bytes",
                  path, n, ST_MAX_HEADER);
        return -1;
    }
    if (n > size - 8) {
        st_seterr(err, errlen,
                  "%s: header length %" PRIu64 " runs past the end of the file (%" PRIu64
                  " bytes)",
                  path, n, size);
        return -1;
    }
    if (n == 0 || p[8] != '{') {
        st_seterr(err, errlen, "%s: header does not start with '{'", path);
        return -1;
    }
    json_error_t je;
    json_t *root = json_loadb((const char *)p + 8, (size_t)n, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        st_seterr(err, errlen, "%s: header is not valid JSON: %s (line %d, column %d)", path,
                  je.text, je.line, je.column);
        return -1;
    }
    if (!json_is_object(root)) {
        st_seterr(err, errlen, "%s: header is not a JSON object", path);
        json_decref(root);
        return -1;
    }

    const uint64_t buf_size = size - 8 - n;
    const uint8_t *buf = p + 8 + n;
    size_t cap = json_object_size(root);
    st_tensor *t = calloc(cap ? cap : 1, sizeof *t);
    st_span *sp = calloc(cap ? cap : 1, sizeof *sp);
    size_t nt = 0;
    if (!t || !sp) {
        st_seterr(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "__metadata__") == 0) {
            if (st_check_metadata(path, val, err, errlen) != 0)
                goto fail;
            continue;
        }
        st_tensor *ti = &t[nt];
        ti->name = strdup(key);
        if (!ti->name) {
            st_seterr(err, errlen, "%s: out of memory", path);
            goto fail;
        }
        nt++;
        ti->shard = shard;
        sp[nt - 1].idx = nt - 1;
        if (st_parse_tensor(path, key, val, ti, &sp[nt - 1], err, errlen) != 0)
            goto fail;
    }

    /* The tensors must tile the data buffer: sorted by offsets, each starts
     * where the previous one ends (the reference's InvalidOffset rule). */
    qsort(sp, nt, sizeof *sp, st_cmp_span);
    uint64_t pos = 0;
    for (size_t i = 0; i < nt; i++) {
        const st_tensor *ti = &t[sp[i].idx];
        if (sp[i].begin != pos) {
            if (i == 0)
                st_seterr(err, errlen,
                          "%s: tensor %s: data_offsets [%" PRIu64 ", %" PRIu64
                          "] leave a gap: the first tensor must start at 0",
                          path, ti->name, sp[i].begin, sp[i].end);
            else
                st_seterr(err, errlen,
                          "%s: tensor %s: data_offsets [%" PRIu64 ", %" PRIu64 "] %s tensor %s,"
                          " which ends at %" PRIu64,
                          path, ti->name, sp[i].begin, sp[i].end,
                          sp[i].begin > pos ? "leave a gap after" : "overlap",
                          t[sp[i - 1].idx].name, pos);
            goto fail;
        }
        pos = sp[i].end;
    }
    if (pos != buf_size) {
        if (pos > buf_size) { /* name the first tensor that runs off the end */
            size_t i = 0;
            while (sp[i].end <= buf_size)
                i++;
            st_seterr(err, errlen,
                      "%s: tensor %s: data_offsets [%" PRIu64 ", %" PRIu64
                      "] run past the data buffer of %" PRIu64 " bytes (file truncated?)",
                      path, t[sp[i].idx].name, sp[i].begin, sp[i].end, buf_size);
        } else if (nt)
            st_seterr(err, errlen,
                      "%s: tensor %s: the last tensor ends at byte %" PRIu64
                      " but the data buffer is %" PRIu64 " bytes (trailing bytes)",
                      path, t[sp[nt - 1].idx].name, pos, buf_size);
        else
            st_seterr(err, errlen,
                      "%s: no tensors but the data buffer is %" PRIu64 " bytes", path, buf_size);
        goto fail;
    }
    for (size_t i = 0; i < nt; i++)
        t[sp[i].idx].data = buf + sp[i].begin;

    free(sp);
    json_decref(root);
    *out = t;
    *n_out = nt;
    return 0;

fail:
    st_free_tensors(t, nt);
    free(sp);
    json_decref(root);
    return -1;
}

/* Opens a regular file for reading; -1 with a message for anything else. A
 * FIFO is refused without blocking: the open does not wait for a writer. */
static int st_open_regular(const char *path, struct stat *sb, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0 || fstat(fd, sb) != 0) {
        st_seterr(err, errlen, "%s: %s", path, strerror(errno));
    } else if (!S_ISREG(sb->st_mode)) {
        st_seterr(err, errlen, "%s: %s", path,
                  S_ISDIR(sb->st_mode) ? "is a directory, not a regular file" : "not a regular file");
    } else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) {
        st_seterr(err, errlen, "%s: %s", path, strerror(errno));
    } else {
        return fd;
    }
    if (fd >= 0)
        close(fd);
    return -1;
}

/* Parses the JSON file at path (at most ST_MAX_HEADER bytes); NULL with a
 * message. */
static json_t *st_load_json(const char *path, char *err, size_t errlen)
{
    struct stat sb;
    json_error_t je;
    int fd = st_open_regular(path, &sb, err, errlen);
    if (fd < 0)
        return NULL;
    size_t size = (size_t)sb.st_size, got = 0;
    char *text = (uint64_t)sb.st_size <= ST_MAX_HEADER ? malloc(size ? size : 1) : NULL;
    int e = 0;
    while (text && got < size) {
        ssize_t k = read(fd, text + got, size - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            e = k < 0 ? errno : 0;
            break;
        }
        got += (size_t)k;
    }
    close(fd);
    json_t *j = NULL;
    if ((uint64_t)sb.st_size > ST_MAX_HEADER)
        st_seterr(err, errlen, "%s: %" PRIu64 " bytes, more than %llu", path, (uint64_t)sb.st_size,
                  ST_MAX_HEADER);
    else if (!text)
        st_seterr(err, errlen, "%s: out of memory", path);
    else if (got < size)
        st_seterr(err, errlen, "%s: read: %s", path, e ? strerror(e) : "the file shrank");
    else if (!(j = json_loadb(text, size, JSON_REJECT_DUPLICATES, &je)))
        st_seterr(err, errlen, "%s: not valid JSON: %s (line %d, column %d)", path, je.text,
                  je.line, je.column);
    free(text);
    return j;
}

/* Opens, maps and validates one file. */
static int st_read_file(const char *path, uint32_t shard, void **map_out, uint64_t *len_out,
                        st_tensor **t_out, size_t *n_out, char *err, size_t errlen)
{
    struct stat sb;
    int fd = st_open_regular(path, &sb, err, errlen);
    if (fd < 0)
        return -1;
    uint64_t size = (uint64_t)sb.st_size;
    if (size < 8) {
        st_seterr(err, errlen,
                  "%s: file is %" PRIu64 " bytes, too short for the 8-byte header length", path,
                  size);
        close(fd);
        return -1;
    }
    if (size > (uint64_t)SIZE_MAX) {
        st_seterr(err, errlen, "%s: file too large to map", path);
        close(fd);
        return -1;
    }
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) {
        st_seterr(err, errlen, "%s: mmap: %s", path, strerror(e));
        return -1;
    }
    if (st_parse(path, shard, map, size, t_out, n_out, err, errlen) != 0) {
        munmap(map, (size_t)size);
        return -1;
    }
    *map_out = map;
    *len_out = size;
    return 0;
}

/* ---- public API ---------------------------------------------------------- */

void st_close(st_model *m)
{
    if (!m)
        return;
    for (uint32_t i = 0; i < m->n_shards; i++) {
        if (m->maps && m->maps[i])
            munmap(m->maps[i], (size_t)m->map_lens[i]);
        if (m->shard_paths)
            free(m->shard_paths[i]);
    }
    free(m->maps);
    free(m->map_lens);
    free(m->shard_paths);
    st_free_tensors(m->tensors, m->n_tensors);
    memset(m, 0, sizeof *m);
}

static int st_alloc_shards(st_model *m, uint32_t n)
{
    m->n_shards = n;
    m->shard_paths = calloc(n ? n : 1, sizeof *m->shard_paths);
    m->maps = calloc(n ? n : 1, sizeof *m->maps);
    m->map_lens = calloc(n ? n : 1, sizeof *m->map_lens);
    return m->shard_paths && m->maps && m->map_lens ? 0 : -1;
}

/* Sorts by name; a name twice (only possible across shards) is an error. */
static int st_sort_tensors(st_model *m, char *err, size_t errlen)
{
    if (m->n_tensors > 1)
        qsort(m->tensors, m->n_tensors, sizeof *m->tensors, st_cmp_name);
    for (size_t i = 1; i < m->n_tensors; i++) {
        const st_tensor *a = &m->tensors[i - 1], *b = &m->tensors[i];
        if (strcmp(a->name, b->name) == 0) {
            const char *pa = m->shard_paths[a->shard], *pb = m->shard_paths[b->shard];
            if (a->shard > b->shard) {
                const char *tmp = pa;
                pa = pb;
                pb = tmp;
            }
            st_seterr(err, errlen, "%s: tensor %s: also in %s", pb, a->name, pa);
            return -1;
        }
    }
    return 0;
}

int st_open_file(const char *path, st_model *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    if (st_alloc_shards(m, 1) != 0 || !(m->shard_paths[0] = strdup(path))) {
        st_seterr(err, errlen, "%s: out of memory", path);
        st_close(m);
        return -1;
    }
    if (st_read_file(path, 0, &m->maps[0], &m->map_lens[0], &m->tensors, &m->n_tensors, err,
                     errlen) != 0 ||
        st_sort_tensors(m, err, errlen) != 0) {
        st_close(m);
        return -1;
    }
    return 0;
}

static int st_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int st_plain_name(const char *s)
{
    return s[0] != '\0' && strchr(s, '/') == NULL && strcmp(s, ".") != 0 &&
           strcmp(s, "..") != 0 && strstr(s, "..") == NULL;
}

static int st_open_index(const char *dir, const char *ipath, st_model *m, char *err,
                         size_t errlen)
{
    const char **names = NULL;
    size_t n_names = 0;
    json_t *idx = st_load_json(ipath, err, errlen);
    if (!idx)
        return -1;
    json_t *wm = json_is_object(idx) ? json_object_get(idx, "weight_map") : NULL;
    if (!json_is_object(wm)) {
        st_seterr(err, errlen, "%s: no \"weight_map\" object", ipath);
        goto fail;
    }
    if (json_object_size(wm) == 0) {
        st_seterr(err, errlen, "%s: \"weight_map\" is empty", ipath);
        goto fail;
    }

    /* Distinct shard names, sorted. */
    names = calloc(json_object_size(wm), sizeof *names);
    if (!names) {
        st_seterr(err, errlen, "%s: out of memory", ipath);
        goto fail;
    }
    const char *key;
    json_t *val;
    json_object_foreach(wm, key, val)
    {
        if (!json_is_string(val)) {
            st_seterr(err, errlen, "%s: tensor %s: weight_map value is not a string", ipath,
                      key);
            goto fail;
        }
        const char *s = json_string_value(val);
        if (!st_plain_name(s)) {
            st_seterr(err, errlen,
                      "%s: tensor %s: shard \"%s\" is not a plain file name in %s", ipath,
                      key, s, dir);
            goto fail;
        }
        names[n_names++] = s;
    }
    qsort(names, n_names, sizeof *names, st_cmp_str);
    size_t nu = 0;
    for (size_t i = 0; i < n_names; i++)
        if (nu == 0 || strcmp(names[nu - 1], names[i]) != 0)
            names[nu++] = names[i];
    n_names = nu;
    if (n_names > UINT32_MAX) {
        st_seterr(err, errlen, "%s: too many shards", ipath);
        goto fail;
    }

    if (st_alloc_shards(m, (uint32_t)n_names) != 0) {
        st_seterr(err, errlen, "%s: out of memory", ipath);
        goto fail;
    }
    for (uint32_t s = 0; s < m->n_shards; s++) {
        m->shard_paths[s] = st_join(dir, names[s]);
        if (!m->shard_paths[s]) {
            st_seterr(err, errlen, "%s: out of memory", ipath);
            goto fail;
        }
        st_tensor *t = NULL;
        size_t nt = 0;
        if (st_read_file(m->shard_paths[s], s, &m->maps[s], &m->map_lens[s], &t, &nt, err,
                         errlen) != 0)
            goto fail;
        if (nt) {
            st_tensor *all = realloc(m->tensors, (m->n_tensors + nt) * sizeof *all);
            if (!all) {
                st_free_tensors(t, nt);
                st_seterr(err, errlen, "%s: out of memory", m->shard_paths[s]);
                goto fail;
            }
            memcpy(all + m->n_tensors, t, nt * sizeof *t);
            m->tensors = all;
            m->n_tensors += nt;
        }
        free(t);
    }
    if (st_sort_tensors(m, err, errlen) != 0)
        goto fail;

    /* Each tensor must be listed, under the shard it is in. */
    for (size_t i = 0; i < m->n_tensors; i++) {
        const st_tensor *t = &m->tensors[i];
        const json_t *v = json_object_get(wm, t->name);
        if (!v) {
            st_seterr(err, errlen, "%s: tensor %s: not listed in the weight_map of %s",
                      m->shard_paths[t->shard], t->name, ipath);
            goto fail;
        }
        if (strcmp(json_string_value(v), names[t->shard]) != 0) {
            st_seterr(err, errlen, "%s: tensor %s: %s lists it in %s", m->shard_paths[t->shard],
                      t->name, ipath, json_string_value(v));
            goto fail;
        }
    }
    /* Names are unique and all listed, so equal counts mean all are present. */
    if (m->n_tensors != json_object_size(wm)) {
        json_object_foreach(wm, key, val)
        {
            st_tensor probe;
            probe.name = (char *)key;
            if (!bsearch(&probe, m->tensors, m->n_tensors, sizeof *m->tensors, st_cmp_name)) {
                const char *s = json_string_value(val);
                for (uint32_t k = 0; k < m->n_shards; k++)
                    if (strcmp(names[k], s) == 0)
                        s = m->shard_paths[k];
                st_seterr(err, errlen, "%s: tensor %s: listed in %s but missing from the file",
                          s, key, ipath);
                goto fail;
            }
        }
    }
    free(names);
    json_decref(idx);
    return 0;

fail:
    free(names);
    json_decref(idx);
    st_close(m);
    return -1;
}

static int st_exists(const char *path)
{
    struct stat sb;
    /* Anything but "no such file" counts as present, so that opening it
     * reports the real problem (permissions, ...). */
    return stat(path, &sb) == 0 || errno != ENOENT;
}

int st_open_dir(const char *dir, st_model *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    char *ipath = st_join(dir, ST_INDEX_NAME);
    char *spath = st_join(dir, ST_SINGLE_NAME);
    int r = -1;
    if (!ipath || !spath)
        st_seterr(err, errlen, "%s: out of memory", dir);
    else if (st_exists(ipath))
        r = st_open_index(dir, ipath, m, err, errlen);
    else if (st_exists(spath))
        r = st_open_file(spath, m, err, errlen);
    else
        st_seterr(err, errlen, "%s: no " ST_SINGLE_NAME " or " ST_INDEX_NAME, dir);
    free(ipath);
    free(spath);
    return r;
}

const st_tensor *st_find(const st_model *m, const char *name)
{
    if (!m->n_tensors)
        return NULL;
    st_tensor probe;
    memset(&probe, 0, sizeof probe);
    probe.name = (char *)name;
    return bsearch(&probe, m->tensors, m->n_tensors, sizeof *m->tensors, st_cmp_name);
}

/* ---- conversion ---------------------------------------------------------- */

static float st_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static float st_f16_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (mant == 0) {
            u = sign;
        } else { /* subnormal: normalize */
            uint32_t e = 113; /* 127 - 15 + 1 */
            while (!(mant & 0x400u)) {
                mant <<= 1;
                e--;
            }
            u = sign | e << 23 | (mant & 0x3ffu) << 13;
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | mant << 13; /* inf, or nan keeping its payload */
    } else {
        u = sign | (exp + 112) << 23 | mant << 13;
    }
    return st_bits_f32(u);
}

void st_to_f32(const st_tensor *t, uint64_t i0, uint64_t n, float *out)
{
    uint64_t avail = i0 < t->n_elements ? t->n_elements - i0 : 0;
    uint64_t k = n < avail ? n : avail;
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case ST_F32:
        p += i0 * 4;
        for (uint64_t i = 0; i < k; i++, p += 4)
            out[i] = st_bits_f32((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                                 (uint32_t)p[3] << 24);
        break;
    case ST_F16:
        p += i0 * 2;
        for (uint64_t i = 0; i < k; i++, p += 2)
            out[i] = st_f16_f32((uint16_t)(p[0] | p[1] << 8));
        break;
    case ST_BF16:
        p += i0 * 2;
        for (uint64_t i = 0; i < k; i++, p += 2)
            out[i] = st_bits_f32(((uint32_t)p[0] | (uint32_t)p[1] << 8) << 16);
        break;
    default:
        k = 0; /* not convertible: callers check dtype first */
        break;
    }
    /* Out of range or unconvertible elements come out as NaN. */
    for (uint64_t i = k; i < n; i++)
        out[i] = NAN;
}

void st_release(const st_tensor *t)
{
    /* the pages are clean file pages: dropping them only costs a re-read */
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)t->data + page - 1) & ~(page - 1), hi = ((uintptr_t)t->data + t->size) & ~(page - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}
