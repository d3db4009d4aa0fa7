/* test_safetensors.c - the safetensors reader of nsq-convert: valid single
 * files and sharded directories, every validation rule, and the real test
 * checkpoints under fixtures/models. */
#include "safetensors.h"

#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- scratch directory and file writers ---------------------------------- */

typedef struct {
    char dir[64];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/test_st.XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    DIR *d = opendir(f->dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", f->dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static const char *in_dir(const fixture *f, const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", f->dir, name);
    return buf[k];
}

static void put_file(const fixture *f, const char *name, const void *data, size_t len)
{
    FILE *fp = fopen(in_dir(f, name), "wb");
    assert_non_null(fp);
    if (len)
        assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

/* A safetensors file whose header length field says claim. */
static void put_st_claim(const fixture *f, const char *name, uint64_t claim, const char *hdr,
                         const void *data, size_t dlen)
{
    size_t hl = strlen(hdr);
    uint8_t *b = malloc(8 + hl + dlen);
    assert_non_null(b);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(claim >> (8 * i));
    memcpy(b + 8, hdr, hl);
    if (dlen)
        memcpy(b + 8 + hl, data, dlen);
    put_file(f, name, b, 8 + hl + dlen);
    free(b);
}

static const uint8_t ZEROS[256];

/* A safetensors file with dlen zero bytes of data. */
static void put_st(const fixture *f, const char *name, const char *hdr, size_t dlen)
{
    assert_true(dlen <= sizeof ZEROS);
    put_st_claim(f, name, strlen(hdr), hdr, ZEROS, dlen);
}

static int is_zero_model(const st_model *m)
{
    static const st_model z;
    return memcmp(m, &z, sizeof z) == 0;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (needle && !strstr(hay, needle))
        fail_msg("message \"%s\" lacks \"%s\"", hay, needle);
}

/* Writes hdr + dlen zero bytes as NAME and expects st_open_file to reject it
 * with a message naming the file and containing needle (e.g. the tensor). */
static void expect_bad(const fixture *f, const char *hdr, size_t dlen, const char *needle,
                       const char *needle2)
{
    put_st(f, "bad.safetensors", hdr, dlen);
    st_model m;
    char err[512] = "";
    memset(&m, 0xa5, sizeof m);
    assert_int_equal(st_open_file(in_dir(f, "bad.safetensors"), &m, err, sizeof err), -1);
    assert_true(is_zero_model(&m));
    assert_contains(err, in_dir(f, "bad.safetensors"));
    assert_contains(err, needle);
    assert_contains(err, needle2);
    if (getenv("ST_VERBOSE"))
        print_message("# %s\n", err);
}

static void expect_bad_dir(const fixture *f, const char *needle, const char *needle2,
                           const char *needle3)
{
    st_model m;
    char err[512] = "";
    memset(&m, 0xa5, sizeof m);
    assert_int_equal(st_open_dir(f->dir, &m, err, sizeof err), -1);
    assert_true(is_zero_model(&m));
    assert_contains(err, needle);
    assert_contains(err, needle2);
    assert_contains(err, needle3);
    if (getenv("ST_VERBOSE"))
        print_message("# %s\n", err);
}

/* ---- byte building -------------------------------------------------------- */

typedef struct {
    uint8_t b[256];
    size_t n;
} bytes;

static void le(bytes *b, uint64_t v, int nbytes)
{
    for (int i = 0; i < nbytes; i++)
        b->b[b->n++] = (uint8_t)(v >> (8 * i));
}

static void lef32(bytes *b, float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    le(b, u, 4);
}

static uint32_t f32_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static void assert_f32_bits(float got, uint32_t want)
{
    if (f32_bits(got) != want)
        fail_msg("got %a (0x%08x), want 0x%08x", (double)got, (unsigned)f32_bits(got),
                 (unsigned)want);
}

/* ---- valid files ---------------------------------------------------------- */

/* Offsets deliberately leave the f32 data unaligned, and tensors are listed
 * out of offset and name order. */
static void write_valid(const fixture *f, const char *name)
{
    bytes d = {.n = 0};
    le(&d, 0x0123456789abcdefull, 8); /* d.i64  [0, 8)   */
    le(&d, 0xbf80, 2);                /* c.bf16 [8, 14)  */
    le(&d, 0x4049, 2);
    le(&d, 0x8000, 2);
    lef32(&d, 1.5f); /* b.f32 [14, 22) */
    lef32(&d, -2.0f);
    static const uint16_t h[8] = {0x3c00, 0x0001, 0xc000, 0x7c00, 0xfc00, 0x03ff, 0x7e00, 0x8000};
    for (int i = 0; i < 8; i++) /* a.f16 [22, 38) */
        le(&d, h[i], 2);
    lef32(&d, 0.25f); /* e.scalar [38, 42) */
    assert_int_equal(d.n, 42);
    const char *hdr =
        "{\"b.f32\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[14,22]},"
        "\"__metadata__\":{\"format\":\"pt\",\"note\":\"x\"},"
        "\"a.f16\":{\"dtype\":\"F16\",\"shape\":[2,4],\"data_offsets\":[22,38]},"
        "\"f.empty\":{\"dtype\":\"F16\",\"shape\":[0,5],\"data_offsets\":[42,42]},"
        "\"c.bf16\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[8,14]},"
        "\"e.scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[38,42]},"
        "\"d.i64\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}   ";
    put_st_claim(f, name, strlen(hdr), hdr, d.b, d.n);
}

static void check_valid(const st_model *m, const char *path)
{
    assert_int_equal(m->n_shards, 1);
    assert_string_equal(m->shard_paths[0], path);
    assert_int_equal(m->n_tensors, 6);
    static const char *const names[] = {"a.f16", "b.f32", "c.bf16", "d.i64", "e.scalar",
                                        "f.empty"};
    for (int i = 0; i < 6; i++) {
        assert_string_equal(m->tensors[i].name, names[i]);
        assert_ptr_equal(st_find(m, names[i]), &m->tensors[i]);
        assert_int_equal(m->tensors[i].shard, 0);
    }
    assert_null(st_find(m, "__metadata__"));
    assert_null(st_find(m, "zzz"));
    assert_null(st_find(m, ""));

    const uint8_t *buf = (const uint8_t *)m->maps[0] + m->map_lens[0] - 42;
    float out[8];

    const st_tensor *t = st_find(m, "b.f32");
    assert_int_equal(t->dtype, ST_F32);
    assert_string_equal(t->dtype_name, "F32");
    assert_int_equal(t->n_dims, 1);
    assert_int_equal(t->dims[0], 2);
    assert_int_equal(t->n_elements, 2);
    assert_int_equal(t->size, 8);
    assert_ptr_equal(t->data, buf + 14);
    st_to_f32(t, 0, 2, out);
    assert_f32_bits(out[0], f32_bits(1.5f));
    assert_f32_bits(out[1], f32_bits(-2.0f));
    st_to_f32(t, 1, 1, out);
    assert_f32_bits(out[0], f32_bits(-2.0f));

    t = st_find(m, "a.f16");
    assert_int_equal(t->dtype, ST_F16);
    assert_string_equal(t->dtype_name, "F16");
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->dims[0], 2);
    assert_int_equal(t->dims[1], 4);
    assert_int_equal(t->n_elements, 8);
    assert_int_equal(t->size, 16);
    assert_ptr_equal(t->data, buf + 22);
    st_to_f32(t, 0, 8, out);
    assert_f32_bits(out[0], 0x3f800000); /* 1 */
    assert_f32_bits(out[1], 0x33800000); /* 2^-24, smallest subnormal */
    assert_true(out[1] == 0x1p-24f);
    assert_f32_bits(out[2], 0xc0000000); /* -2 */
    assert_f32_bits(out[3], 0x7f800000); /* inf */
    assert_f32_bits(out[4], 0xff800000); /* -inf */
    assert_true(out[5] == 1023 * 0x1p-24f); /* largest subnormal */
    assert_true(isnan(out[6]));
    assert_f32_bits(out[6], 0x7fc00000);
    assert_f32_bits(out[7], 0x80000000); /* -0 */
    st_to_f32(t, 5, 1, out);
    assert_true(out[0] == 1023 * 0x1p-24f);

    t = st_find(m, "c.bf16");
    assert_int_equal(t->dtype, ST_BF16);
    assert_string_equal(t->dtype_name, "BF16");
    assert_int_equal(t->n_elements, 3);
    assert_int_equal(t->size, 6);
    st_to_f32(t, 0, 3, out);
    assert_f32_bits(out[0], 0xbf800000); /* -1 */
    assert_true(out[1] == 3.140625f);
    assert_f32_bits(out[2], 0x80000000); /* -0 */

    t = st_find(m, "d.i64");
    assert_int_equal(t->dtype, ST_OTHER);
    assert_string_equal(t->dtype_name, "I64");
    assert_int_equal(t->size, 8);
    assert_int_equal(t->data[0], 0xef);
    assert_int_equal(t->data[7], 0x01);

    t = st_find(m, "e.scalar");
    assert_int_equal(t->n_dims, 0);
    assert_int_equal(t->n_elements, 1);
    st_to_f32(t, 0, 1, out);
    assert_true(out[0] == 0.25f);

    t = st_find(m, "f.empty");
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->dims[0], 0);
    assert_int_equal(t->dims[1], 5);
    assert_int_equal(t->n_elements, 0);
    assert_int_equal(t->size, 0);
}

static void test_valid_file(void **state)
{
    const fixture *f = *state;
    write_valid(f, "one.safetensors");
    st_model m;
    char err[256] = "";
    assert_int_equal(st_open_file(in_dir(f, "one.safetensors"), &m, err, sizeof err), 0);
    check_valid(&m, in_dir(f, "one.safetensors"));
    st_close(&m);
    assert_true(is_zero_model(&m));
    st_close(&m); /* twice is harmless */
}

static void test_valid_dir_single(void **state)
{
    const fixture *f = *state;
    write_valid(f, "model.safetensors");
    st_model m;
    char err[256] = "";
    assert_int_equal(st_open_dir(f->dir, &m, err, sizeof err), 0);
    check_valid(&m, in_dir(f, "model.safetensors"));
    st_close(&m);
}

static void test_no_tensors(void **state)
{
    const fixture *f = *state;
    st_model m;
    char err[256] = "";
    put_st(f, "e1.safetensors", "{}", 0);
    assert_int_equal(st_open_file(in_dir(f, "e1.safetensors"), &m, err, sizeof err), 0);
    assert_int_equal(m.n_tensors, 0);
    assert_null(st_find(&m, "x"));
    st_close(&m);
    put_st(f, "e2.safetensors", "{\"__metadata__\":{\"a\":\"b\"}}", 0);
    assert_int_equal(st_open_file(in_dir(f, "e2.safetensors"), &m, err, sizeof err), 0);
    assert_int_equal(m.n_tensors, 0);
    st_close(&m);
    /* ...but then the data buffer must be empty. */
    expect_bad(f, "{}", 4, "no tensors", NULL);
}

static void write_shards(const fixture *f)
{
    bytes d1 = {.n = 0};
    lef32(&d1, 7.0f); /* x */
    lef32(&d1, -0.5f);
    le(&d1, 0xc2f7, 2); /* y = bf16 -123.5 */
    const char *h1 = "{\"__metadata__\":{\"format\":\"pt\"},"
                     "\"y\":{\"dtype\":\"BF16\",\"shape\":[1,1],\"data_offsets\":[8,10]},"
                     "\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    put_st_claim(f, "model-00001-of-00002.safetensors", strlen(h1), h1, d1.b, d1.n);
    bytes d2 = {.n = 0};
    le(&d2, 0x3555, 2); /* z = f16 0.333251953125 */
    const char *h2 = "{\"z\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,2]}}";
    put_st_claim(f, "model-00002-of-00002.safetensors", strlen(h2), h2, d2.b, d2.n);
}

static void put_index(const fixture *f, const char *weight_map)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "{\"metadata\":{\"total_size\":12},\"weight_map\":%s}\n",
             weight_map);
    put_file(f, "model.safetensors.index.json", buf, strlen(buf));
}

#define WM_OK                                                                                    \
    "{\"z\":\"model-00002-of-00002.safetensors\",\"x\":\"model-00001-of-00002.safetensors\","    \
    "\"y\":\"model-00001-of-00002.safetensors\"}"

static void test_sharded(void **state)
{
    const fixture *f = *state;
    write_shards(f);
    put_index(f, WM_OK);
    /* A stray model.safetensors beside the index is ignored. */
    put_file(f, "model.safetensors", "junk", 4);
    st_model m;
    char err[256] = "";
    assert_int_equal(st_open_dir(f->dir, &m, err, sizeof err), 0);
    assert_int_equal(m.n_shards, 2);
    assert_string_equal(m.shard_paths[0], in_dir(f, "model-00001-of-00002.safetensors"));
    assert_string_equal(m.shard_paths[1], in_dir(f, "model-00002-of-00002.safetensors"));
    assert_non_null(m.maps[0]);
    assert_non_null(m.maps[1]);
    assert_int_equal(m.n_tensors, 3);
    assert_string_equal(m.tensors[0].name, "x");
    assert_string_equal(m.tensors[1].name, "y");
    assert_string_equal(m.tensors[2].name, "z");
    assert_int_equal(m.tensors[0].shard, 0);
    assert_int_equal(m.tensors[1].shard, 0);
    assert_int_equal(m.tensors[2].shard, 1);
    float out[2];
    st_to_f32(st_find(&m, "x"), 0, 2, out);
    assert_true(out[0] == 7.0f && out[1] == -0.5f);
    const st_tensor *y = st_find(&m, "y");
    assert_int_equal(y->n_dims, 2);
    st_to_f32(y, 0, 1, out);
    assert_true(out[0] == -123.5f);
    st_to_f32(st_find(&m, "z"), 0, 1, out);
    assert_true(out[0] == 0.333251953125f);
    assert_ptr_equal(st_find(&m, "z")->data, (const uint8_t *)m.maps[1] + m.map_lens[1] - 2);
    st_close(&m);
}

/* ---- single-file errors --------------------------------------------------- */

static void test_err_too_short(void **state)
{
    const fixture *f = *state;
    put_file(f, "bad.safetensors", "\x02\0\0\0", 4);
    st_model m;
    char err[256] = "";
    assert_int_equal(st_open_file(in_dir(f, "bad.safetensors"), &m, err, sizeof err), -1);
    assert_true(is_zero_model(&m));
    assert_contains(err, in_dir(f, "bad.safetensors"));
    assert_contains(err, "too short");
    put_file(f, "empty.safetensors", "", 0);
    assert_int_equal(st_open_file(in_dir(f, "empty.safetensors"), &m, err, sizeof err), -1);
    assert_contains(err, "empty.safetensors");
}

static void test_err_missing_file(void **state)
{
    const fixture *f = *state;
    st_model m;
    char err[256] = "";
    assert_int_equal(st_open_file(in_dir(f, "nope.safetensors"), &m, err, sizeof err), -1);
    assert_true(is_zero_model(&m));
    assert_contains(err, "nope.safetensors");
    /* A directory is not a safetensors file. */
    assert_int_equal(st_open_file(f->dir, &m, err, sizeof err), -1);
    assert_contains(err, "not a regular file");
    /* err may be NULL. */
    assert_int_equal(st_open_file(in_dir(f, "nope.safetensors"), &m, NULL, 0), -1);
}

static void test_err_header_past_file(void **state)
{
    const fixture *f = *state;
    put_st_claim(f, "bad.safetensors", 1000, "{}", NULL, 0);
    st_model m;
    char err[256] = "";
    assert_int_equal(st_open_file(in_dir(f, "bad.safetensors"), &m, err, sizeof err), -1);
    assert_true(is_zero_model(&m));
    assert_contains(err, in_dir(f, "bad.safetensors"));
    assert_contains(err, "runs past the end");
}

static void test_err_header_too_large(void **state)
{
    const fixture *f = *state;
    st_model m;
    char err[256] = "";
    put_st_claim(f, "bad.safetensors", 100000001, "{}", NULL, 0);
    assert_int_equal(st_open_file(in_dir(f, "bad.safetensors"), &m, err, sizeof err), -1);
    assert_true(is_zero_model(&m));
    assert_contains(err, in_dir(f, "bad.safetensors"));
    assert_contains(err, "exceeds the limit");
    put_st_claim(f, "bad.safetensors", UINT64_MAX, "{}", NULL, 0);
    assert_int_equal(st_open_file(in_dir(f, "bad.safetensors"), &m, err, sizeof err), -1);
    assert_contains(err, "exceeds the limit");
}

static void test_err_not_json(void **state)
{
    const fixture *f = *state;
    expect_bad(f, "{not json}", 0, "not valid JSON", NULL);
    expect_bad(f, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4,
               "not valid JSON", NULL);
    expect_bad(f, "{} trailing", 0, "not valid JSON", NULL);
    expect_bad(f, "{\"a\xff\":1}", 0, "not valid JSON", NULL); /* not UTF-8 */
    expect_bad(f, "{\"a\\u0000b\":1}", 0, "not valid JSON", NULL); /* NUL in a name */
}

static void test_err_not_object(void **state)
{
    const fixture *f = *state;
    expect_bad(f, "[1, 2]", 0, "start with '{'", NULL);
    expect_bad(f, "\"str\"", 0, "start with '{'", NULL);
    expect_bad(f, " {}", 0, "start with '{'", NULL); /* as the reference */
    expect_bad(f, "", 0, "start with '{'", NULL);
    expect_bad(f, "{\"t\":[1,2]}", 0, "tensor t", "not a JSON object");
    expect_bad(f, "{\"__metadata__\":[]}", 0, "__metadata__", NULL);
    expect_bad(f, "{\"__metadata__\":{\"k\":1}}", 0, "__metadata__", "\"k\"");
}

static void test_err_unknown_dtype(void **state)
{
    const fixture *f = *state;
    expect_bad(f, "{\"w.q\":{\"dtype\":\"Q4_K\",\"shape\":[2],\"data_offsets\":[0,1]}}", 1,
               "tensor w.q", "unknown dtype \"Q4_K\"");
    expect_bad(f, "{\"w.q\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
               "tensor w.q", "\"f32\"");
    expect_bad(f, "{\"w.q\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
               "tensor w.q", "dtype");
    expect_bad(f, "{\"w.q\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor w.q",
               "dtype");
}

static void test_err_bad_shape(void **state)
{
    const fixture *f = *state;
    expect_bad(f, "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0,
               "tensor w", "shape entry 0");
    expect_bad(f, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,2.0],\"data_offsets\":[0,8]}}", 8,
               "tensor w", "shape entry 1");
    expect_bad(f, "{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8,
               "tensor w", "shape entry 0");
    expect_bad(f, "{\"w\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8,
               "tensor w", "shape");
    expect_bad(f, "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "tensor w",
               "shape");
}

static void test_err_shape_overflow(void **state)
{
    const fixture *f = *state;
    /* 2^32 * 2^32 elements */
    expect_bad(f,
               "{\"big\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],"
               "\"data_offsets\":[0,0]}}",
               0, "tensor big", "2^64");
    /* 2^62 elements fit, 2^62 * 4 bytes do not */
    expect_bad(f,
               "{\"big\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],"
               "\"data_offsets\":[0,0]}}",
               0, "tensor big", "2^64");
    /* a zero dim after the overflow does not rescue it (checked fold) */
    expect_bad(f,
               "{\"big\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,0],"
               "\"data_offsets\":[0,0]}}",
               0, "tensor big", "2^64");
    /* too big for a JSON integer at all */
    expect_bad(f,
               "{\"big\":{\"dtype\":\"U8\",\"shape\":[99999999999999999999],"
               "\"data_offsets\":[0,0]}}",
               0, NULL, NULL);
}

static void test_err_size_mismatch(void **state)
{
    const fixture *f = *state;
    expect_bad(f,
               "{\"model.layers.3.mlp.up_proj.weight\":{\"dtype\":\"F16\",\"shape\":[4,4],"
               "\"data_offsets\":[0,10]}}",
               10, "tensor model.layers.3.mlp.up_proj.weight",
               "data_offsets [0, 10] give 10 bytes, shape [4, 4] of F16 needs 32");
    expect_bad(f, "{\"s\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2,
               "tensor s", "whole number of bytes");
    expect_bad(f, "{\"s\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
               "tensor s", "data_offsets");
    expect_bad(f, "{\"s\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8,
               "tensor s", "data_offsets");
    expect_bad(f, "{\"s\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 0,
               "tensor s", "data_offsets");
}

static void test_err_gap(void **state)
{
    const fixture *f = *state;
    expect_bad(f,
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
               12, "tensor b", "gap after tensor a");
    expect_bad(f, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
               "tensor a", "gap");
}

static void test_err_overlap(void **state)
{
    const fixture *f = *state;
    expect_bad(f,
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, "tensor b", "overlap tensor a");
    expect_bad(f,
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
               4, "tensor", "overlap");
}

static void test_err_end_mismatch(void **state)
{
    const fixture *f = *state;
    expect_bad(f, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 6,
               "tensor a", "data buffer is 6 bytes (trailing");
    expect_bad(f, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
               "tensor a", "data buffer of 4 bytes");
}

static void test_err_begin_after_end(void **state)
{
    const fixture *f = *state;
    expect_bad(f, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
               "tensor a", "begin after end");
}

static void test_err_duplicate_key(void **state)
{
    const fixture *f = *state;
    expect_bad(f,
               "{\"dup.w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"dup.w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, "duplicate", "dup.w");
}

static void test_err_too_many_dims(void **state)
{
    const fixture *f = *state;
    expect_bad(f,
               "{\"deep\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
               "\"data_offsets\":[0,4]}}",
               4, "tensor deep", "9 dims");
    /* ST_MAX_DIMS itself is fine */
    put_st(f, "ok.safetensors",
           "{\"deep\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8);
    st_model m;
    char err[256] = "";
    assert_int_equal(st_open_file(in_dir(f, "ok.safetensors"), &m, err, sizeof err), 0);
    assert_int_equal(m.tensors[0].n_dims, 8);
    assert_int_equal(m.tensors[0].dims[7], 2);
    st_close(&m);
}

static void test_err_truncated(void **state)
{
    const fixture *f = *state;
    write_valid(f, "full.safetensors");
    FILE *fp = fopen(in_dir(f, "full.safetensors"), "rb");
    assert_non_null(fp);
    uint8_t buf[1024];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    assert_true(n > 42 && n < sizeof buf);
    put_file(f, "bad.safetensors", buf, n - 3);
    st_model m;
    char err[256] = "";
    assert_int_equal(st_open_file(in_dir(f, "bad.safetensors"), &m, err, sizeof err), -1);
    assert_true(is_zero_model(&m));
    assert_contains(err, in_dir(f, "bad.safetensors"));
    assert_contains(err, "tensor e.scalar"); /* the last one in the buffer */
    /* cut into the header */
    put_file(f, "bad2.safetensors", buf, 40);
    assert_int_equal(st_open_file(in_dir(f, "bad2.safetensors"), &m, err, sizeof err), -1);
    assert_contains(err, "bad2.safetensors");
}

/* ---- directory errors ----------------------------------------------------- */

static void test_err_dir_empty(void **state)
{
    const fixture *f = *state;
    expect_bad_dir(f, f->dir, "no model.safetensors or model.safetensors.index.json", NULL);
}

static void test_err_index_missing_shard(void **state)
{
    const fixture *f = *state;
    write_shards(f);
    put_index(f, "{\"x\":\"model-00001-of-00002.safetensors\","
                 "\"y\":\"model-00001-of-00002.safetensors\","
                 "\"z\":\"model-00003-of-00002.safetensors\"}");
    expect_bad_dir(f, in_dir(f, "model-00003-of-00002.safetensors"), NULL, NULL);
}

static void test_err_index_bad_name(void **state)
{
    const fixture *f = *state;
    write_shards(f);
    put_index(f, "{\"x\":\"model-00001-of-00002.safetensors\","
                 "\"y\":\"../x\",\"z\":\"model-00002-of-00002.safetensors\"}");
    expect_bad_dir(f, "model.safetensors.index.json", "tensor y", "\"../x\"");
    put_index(f, "{\"x\":\"/etc/passwd\"}");
    expect_bad_dir(f, "model.safetensors.index.json", "tensor x", "/etc/passwd");
    put_index(f, "{\"x\":\"..\"}");
    expect_bad_dir(f, "model.safetensors.index.json", "tensor x", "\"..\"");
    put_index(f, "{\"x\":\"\"}");
    expect_bad_dir(f, "model.safetensors.index.json", "tensor x", NULL);
    put_index(f, "{\"x\":7}");
    expect_bad_dir(f, "model.safetensors.index.json", "tensor x", "not a string");
}

static void test_err_index_malformed(void **state)
{
    const fixture *f = *state;
    write_shards(f);
    put_file(f, "model.safetensors.index.json", "{\"weight_map\":", 14);
    expect_bad_dir(f, "model.safetensors.index.json", "not valid JSON", NULL);
    put_file(f, "model.safetensors.index.json", "{\"metadata\":{}}", 15);
    expect_bad_dir(f, "model.safetensors.index.json", "weight_map", NULL);
    put_index(f, "{}");
    expect_bad_dir(f, "model.safetensors.index.json", "empty", NULL);
    put_index(f, "{\"x\":\"model-00001-of-00002.safetensors\","
                 "\"x\":\"model-00001-of-00002.safetensors\"}");
    expect_bad_dir(f, "model.safetensors.index.json", "duplicate", NULL);
}

static void test_err_tensor_missing_from_shard(void **state)
{
    const fixture *f = *state;
    write_shards(f);
    put_index(f, "{\"z\":\"model-00002-of-00002.safetensors\","
                 "\"x\":\"model-00001-of-00002.safetensors\","
                 "\"y\":\"model-00001-of-00002.safetensors\","
                 "\"lost.w\":\"model-00002-of-00002.safetensors\"}");
    expect_bad_dir(f, in_dir(f, "model-00002-of-00002.safetensors"), "tensor lost.w",
                   "missing");
}

static void test_err_tensor_not_in_index(void **state)
{
    const fixture *f = *state;
    write_shards(f);
    put_index(f, "{\"z\":\"model-00002-of-00002.safetensors\","
                 "\"x\":\"model-00001-of-00002.safetensors\"}");
    expect_bad_dir(f, in_dir(f, "model-00001-of-00002.safetensors"), "tensor y",
                   "not listed");
}

static void test_err_tensor_wrong_shard(void **state)
{
    const fixture *f = *state;
    write_shards(f);
    put_index(f, "{\"z\":\"model-00001-of-00002.safetensors\","
                 "\"x\":\"model-00001-of-00002.safetensors\","
                 "\"y\":\"model-00002-of-00002.safetensors\"}");
    expect_bad_dir(f, "model-0000", "tensor y", NULL);
}

static void test_err_tensor_in_two_shards(void **state)
{
    const fixture *f = *state;
    write_shards(f);
    /* shard 2 also holds an x */
    bytes d = {.n = 0};
    le(&d, 0x3555, 2);
    lef32(&d, 1.0f);
    const char *h = "{\"z\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,2]},"
                    "\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}";
    put_st_claim(f, "model-00002-of-00002.safetensors", strlen(h), h, d.b, d.n);
    put_index(f, WM_OK);
    expect_bad_dir(f, "model-00002-of-00002.safetensors", "tensor x",
                   "also in " /* shard 1 */);
    /* a bad shard header is reported as such */
    put_st(f, "model-00002-of-00002.safetensors",
           "{\"z\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2);
    expect_bad_dir(f, in_dir(f, "model-00002-of-00002.safetensors"), "tensor z", "needs 4");
}

/* ---- the real test checkpoints -------------------------------------------- */

static void test_real_tiny_llama(void **state)
{
    (void)state;
    const char *dir = "fixtures/models/tiny-llama";
    struct stat sb;
    if (stat(dir, &sb) != 0)
        skip();
    st_model m;
    char err[512] = "";
    if (st_open_dir(dir, &m, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(m.n_shards, 3);
    assert_int_equal(m.n_tensors, 57);
    for (size_t i = 0; i < m.n_tensors; i++) {
        assert_int_equal(m.tensors[i].dtype, ST_BF16);
        if (i)
            assert_true(strcmp(m.tensors[i - 1].name, m.tensors[i].name) < 0);
    }
    const st_tensor *t = st_find(&m, "model.embed_tokens.weight");
    assert_non_null(t);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->dims[0], 4096);
    assert_int_equal(t->dims[1], 256);
    assert_int_equal(t->shard, 0);
    assert_string_equal(m.shard_paths[0], "fixtures/models/tiny-llama/model-00001-of-00003.safetensors");
    float out[4];
    st_to_f32(t, 0, 4, out);
    assert_true(out[0] == -0.00213623046875f);
    assert_true(out[1] == 0.0191650390625f);
    assert_true(out[2] == -0.028564453125f);
    assert_true(out[3] == -0.03515625f);
    t = st_find(&m, "lm_head.weight");
    assert_non_null(t);
    assert_int_equal(t->shard, 2);
    st_close(&m);
}

static void test_real_tiny_gpt2(void **state)
{
    (void)state;
    const char *path = "fixtures/models/tiny-gpt2/model.safetensors";
    struct stat sb;
    if (stat(path, &sb) != 0)
        skip();
    st_model m;
    char err[512] = "";
    if (st_open_file(path, &m, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(m.n_shards, 1);
    assert_int_equal(m.n_tensors, 52);
    for (size_t i = 0; i < m.n_tensors; i++)
        assert_int_equal(m.tensors[i].dtype, ST_F16);
    /* GPT-2 names its embedding transformer.wte.weight */
    const st_tensor *t = st_find(&m, "transformer.wte.weight");
    assert_non_null(t);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->dims[0], 4096);
    assert_int_equal(t->dims[1], 256);
    float out[4];
    st_to_f32(t, 0, 4, out);
    assert_true(out[0] == -0.0325927734375f);
    assert_true(out[1] == 0.2164306640625f);
    assert_true(out[2] == 0.06646728515625f);
    assert_true(out[3] == 0.1510009765625f);
    st_close(&m);
    /* and through st_open_dir */
    assert_int_equal(st_open_dir("fixtures/models/tiny-gpt2", &m, err, sizeof err), 0);
    assert_int_equal(m.n_tensors, 52);
    st_close(&m);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_valid_file),
        T(test_valid_dir_single),
        T(test_no_tensors),
        T(test_sharded),
        T(test_err_too_short),
        T(test_err_missing_file),
        T(test_err_header_past_file),
        T(test_err_header_too_large),
        T(test_err_not_json),
        T(test_err_not_object),
        T(test_err_unknown_dtype),
        T(test_err_bad_shape),
        T(test_err_shape_overflow),
        T(test_err_size_mismatch),
        T(test_err_gap),
        T(test_err_overlap),
        T(test_err_end_mismatch),
        T(test_err_begin_after_end),
        T(test_err_duplicate_key),
        T(test_err_too_many_dims),
        T(test_err_truncated),
        T(test_err_dir_empty),
        T(test_err_index_missing_shard),
        T(test_err_index_bad_name),
        T(test_err_index_malformed),
        T(test_err_tensor_missing_from_shard),
        T(test_err_tensor_not_in_index),
        T(test_err_tensor_wrong_shard),
        T(test_err_tensor_in_two_shards),
        T(test_real_tiny_llama),
        T(test_real_tiny_gpt2),
    };
    return cmocka_run_group_tests_name("safetensors", tests, NULL, NULL);
}
