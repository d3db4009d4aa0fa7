/*
 * fuzz_safetensors.c - libFuzzer target for nsq-convert's safetensors reader
 * (tools/nsq-convert/safetensors.c), through the calls the converter makes.
 *
 * Input layouts:
 *   - anything not starting with "IDX\n": one .safetensors file, written to a
 *     memfd and opened with st_open_file("/proc/self/fd/N");
 *   - "IDX\n" INDEX_JSON ("\n--\n" SHARD)*: a checkpoint directory (up to 3
 *     shards, named s0.safetensors .. s2.safetensors, in a scratch directory)
 *     opened with st_open_dir, the way the converter opens sharded models.
 *
 * Invariants for every model that opens: tensors sorted by name, unique, and
 * found by st_find; each tensor's dims multiply (without wrapping) to its
 * n_elements, and n_elements times its dtype's bits is 8 times its byte size;
 * its bytes lie inside the data region of its shard's mapping (after the
 * header) and the tensors of a shard tile that region exactly; the mapping
 * holds the shard's bytes. Every element of every F32/F16/BF16 tensor is then
 * converted with st_to_f32 (F32 must round-trip bit for bit, BF16 too in its
 * upper half), and an element past the end comes out as NaN. A failed open
 * leaves the model zeroed with a NUL-terminated message.
 *
 *   make build-fuzz/fuzz_safetensors && build-fuzz/fuzz_safetensors -max_len=65536 CORPUS fuzz/corpus/fuzz_safetensors
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SHARDS 3

/* Bits per element of each dtype name the reference crate knows: written
 * here independently of the reader's table. */
static unsigned dtype_bits(const char *s)
{
    static const struct { const char *name; unsigned bits; } t[] = {
        {"BOOL", 8}, {"U8", 8}, {"I8", 8}, {"F8_E4M3", 8}, {"F8_E5M2", 8}, {"F8_E8M0", 8}, {"F4", 4},
        {"F6_E2M3", 6}, {"F6_E3M2", 6}, {"I16", 16}, {"U16", 16}, {"F16", 16}, {"BF16", 16}, {"I32", 32},
        {"U32", 32}, {"F32", 32}, {"I64", 64}, {"U64", 64}, {"F64", 64}, {"C64", 64}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(s, t[i].name) == 0) return t[i].bits;
    return 0;
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Every element through st_to_f32, in chunks; F32 and BF16 must keep their bits. */
static void read_tensor(const st_tensor *t)
{
    float buf[1024];
    uint64_t esize = t->dtype == ST_F32 ? 4 : 2;
    for (uint64_t i0 = 0; i0 < t->n_elements; i0 += 1024) {
        uint64_t n = t->n_elements - i0 < 1024 ? t->n_elements - i0 : 1024;
        st_to_f32(t, i0, n, buf);
        for (uint64_t k = 0; k < n; k++) {
            const uint8_t *p = t->data + (i0 + k) * esize;
            uint32_t bits;
            memcpy(&bits, &buf[k], 4);
            if (t->dtype == ST_F32) CHECK(bits == ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24));
            if (t->dtype == ST_BF16) CHECK(bits == ((uint32_t)p[0] << 16 | (uint32_t)p[1] << 24));
            if (t->dtype == ST_F16 && ((p[1] >> 2) & 0x1f) != 0x1f) CHECK(isfinite(buf[k]));
        }
    }
    st_to_f32(t, t->n_elements, 1, buf);
    CHECK(isnan(buf[0]));
}

static void check_tensor(const st_model *m, size_t i, const size_t *shard_len)
{
    const st_tensor *t = &m->tensors[i];
    CHECK(t->name && strcmp(t->name, "__metadata__") != 0);
    CHECK(i == 0 || strcmp(m->tensors[i - 1].name, t->name) < 0);
    CHECK(st_find(m, t->name) == t);
    CHECK(t->shard < m->n_shards && t->n_dims <= ST_MAX_DIMS);
    uint64_t numel = 1;
    for (uint32_t k = 0; k < t->n_dims; k++) CHECK(!__builtin_mul_overflow(numel, t->dims[k], &numel));
    CHECK(numel == t->n_elements);
    unsigned bits = dtype_bits(t->dtype_name);
    uint64_t total;
    CHECK(bits && !__builtin_mul_overflow(numel, (uint64_t)bits, &total) && total % 8 == 0 && total / 8 == t->size);
    CHECK((t->dtype == ST_F32) == (strcmp(t->dtype_name, "F32") == 0));
    CHECK((t->dtype == ST_F16) == (strcmp(t->dtype_name, "F16") == 0));
    CHECK((t->dtype == ST_BF16) == (strcmp(t->dtype_name, "BF16") == 0));
    CHECK(t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16 || t->dtype == ST_OTHER);
    /* the bytes lie in the data region: after the 8-byte length and the header */
    const uint8_t *map = m->maps[t->shard];
    uint64_t len = m->map_lens[t->shard];
    CHECK(map && len >= 8 && len == shard_len[t->shard]);
    uint64_t hdr = le64(map);
    CHECK(hdr <= len - 8);
    uint64_t off = (uint64_t)(t->data - map);
    CHECK(t->data >= map + 8 + hdr && off <= len && t->size <= len - off);
}

/* The tensors of each shard cover its data region exactly, without overlap. */
static int cmp_span(const void *a, const void *b)
{
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    if (x->shard != y->shard) return x->shard < y->shard ? -1 : 1;
    if (x->data != y->data) return x->data < y->data ? -1 : 1;
    return x->size < y->size ? -1 : x->size > y->size;
}

static void check_tiling(const st_model *m)
{
    const st_tensor **s = malloc((m->n_tensors ? m->n_tensors : 1) * sizeof *s);
    CHECK(s);
    for (size_t i = 0; i < m->n_tensors; i++) s[i] = &m->tensors[i];
    qsort(s, m->n_tensors, sizeof *s, cmp_span);
    size_t i = 0;
    for (uint32_t sh = 0; sh < m->n_shards; sh++) {
        const uint8_t *pos = (const uint8_t *)m->maps[sh] + 8 + le64(m->maps[sh]);
        for (; i < m->n_tensors && s[i]->shard == sh; i++) {
            CHECK(s[i]->data == pos);
            pos += s[i]->size;
        }
        CHECK(pos == (const uint8_t *)m->maps[sh] + m->map_lens[sh]);
    }
    free(s);
}

static void check_model(const st_model *m, const uint8_t *const *shard_bytes, const size_t *shard_len)
{
    for (uint32_t s = 0; s < m->n_shards; s++) CHECK(memcmp(m->maps[s], shard_bytes[s], shard_len[s]) == 0);
    for (size_t i = 0; i < m->n_tensors; i++) check_tensor(m, i, shard_len);
    check_tiling(m);
    for (size_t i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].dtype != ST_OTHER) read_tensor(&m->tensors[i]);
}

static void check_failed(const st_model *m, const char *err, size_t errlen)
{
    static const st_model zero;
    CHECK(memcmp(m, &zero, sizeof zero) == 0);
    CHECK(memchr(err, 0, errlen) != NULL && err[0] != 0);
}

static void one_file(const uint8_t *data, size_t size)
{
    static int fd = -1;
    if (fd < 0 && (fd = memfd_create("fuzz_safetensors", MFD_CLOEXEC)) < 0) abort();
    if (ftruncate(fd, 0) || pwrite(fd, data, size, 0) != (ssize_t)size) abort();
    char path[64], err[512];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    st_model m;
    if (st_open_file(path, &m, err, sizeof err)) {
        check_failed(&m, err, sizeof err);
        return;
    }
    CHECK(m.n_shards == 1);
    check_model(&m, &data, &size);
    st_close(&m);
}

/* The first occurrence of "\n--\n" in p[0..n), or NULL. */
static const uint8_t *separator(const uint8_t *p, size_t n) { return memmem(p, n, "\n--\n", 4); }

static void write_file(const char *dir, const char *name, const uint8_t *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(p, 1, n, fp) != n || fclose(fp)) abort();
}

static char dir[512]; /* the scratch checkpoint directory, removed at exit */
static const char *const files[] = {"model.safetensors.index.json", "s0.safetensors", "s1.safetensors", "s2.safetensors"};

static void remove_dir(void)
{
    char path[600];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

static void sharded(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/fuzz_safetensors.XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) abort();
        atexit(remove_dir);
    }
    const uint8_t *part[MAX_SHARDS + 1], *end = data + size;
    size_t len[MAX_SHARDS + 1], n = 0;
    for (const uint8_t *p = data; n <= MAX_SHARDS;) {
        const uint8_t *sep = separator(p, (size_t)(end - p));
        part[n] = p;
        len[n++] = (size_t)((sep ? sep : end) - p);
        if (!sep) break;
        p = sep + 4;
    }
    remove_dir(); /* then the files this input has, in a fresh directory */
    if (mkdir(dir, 0700)) abort();
    for (size_t i = 0; i < n; i++) write_file(dir, files[i], part[i], len[i]);
    st_model m;
    char err[512];
    if (st_open_dir(dir, &m, err, sizeof err)) {
        check_failed(&m, err, sizeof err);
        return;
    }
    /* shards are listed by name, so shard k is file s<i> for some i: find its bytes */
    const uint8_t *bytes[MAX_SHARDS];
    size_t blen[MAX_SHARDS];
    CHECK(m.n_shards <= MAX_SHARDS);
    for (uint32_t s = 0; s < m.n_shards; s++) {
        const char *base = strrchr(m.shard_paths[s], '/');
        unsigned k = base && base[1] == 's' ? (unsigned)(base[2] - '0') : MAX_SHARDS;
        CHECK(k < MAX_SHARDS && k + 1 < n && strcmp(base + 3, ".safetensors") == 0);
        bytes[s] = part[k + 1], blen[s] = len[k + 1];
    }
    check_model(&m, bytes, blen);
    st_close(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= 4 && memcmp(data, "IDX\n", 4) == 0) sharded(data + 4, size - 4);
    else one_file(data, size);
    return 0;
}
