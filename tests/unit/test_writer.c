/* test_writer.c - the writer: a model with every scheme, compression,
 * refinements, metadata type, tokenizer files, importance and router is
 * written, then read back through mmap, pread and memory and every value is
 * compared with what was written. Also: atomic replacement of the target and
 * misuse of the writer API. */
#include "testutil.h"

#include <xxhash.h>
#include <zstd.h>

enum { HID = 64, NL = 2, NBLK = 4, NT = 9, RH = 8 };

/* ---- the model ---- */
typedef struct {
    const char *name;
    uint32_t scheme, block, n_dims;
    uint64_t dims[4];
    uint32_t group_size, n_refine, bits[3];
} tspec;

static const tspec specs[NT] = {
    {"tok_embeddings.weight", NSQ_SCHEME_F16, 0, 2, {32, 64}, 0, 0, {0}},
    {"layers.0.attention_norm.weight", NSQ_SCHEME_F32, 1, 1, {64}, 0, 0, {0}},
    {"layers.0.attention.wq.weight", NSQ_SCHEME_TIERED, 1, 2, {16, 128}, 32, 2, {2, 1}},
    {"layers.0.bias3d", NSQ_SCHEME_BF16, 1, 3, {2, 3, 5}, 0, 0, {0}},
    {"layers.0.feed_forward.w1.weight", NSQ_SCHEME_TIERED, 1, 2, {8, 128}, 64, 1, {4}},
    {"layers.1.attention.wq.weight", NSQ_SCHEME_TIERED, 2, 2, {4, 256}, 128, 3, {8, 2, 1}},
    {"layers.1.rope.freqs", NSQ_SCHEME_F32, 2, 4, {2, 2, 2, 4}, 0, 0, {0}},
    {"norm.weight", NSQ_SCHEME_F32, 3, 1, {64}, 0, 0, {0}},
    {"output.weight", NSQ_SCHEME_TIERED, 3, 2, {8, 256}, 256, 0, {0}},
};
static const uint32_t blk_kind[NBLK] = {NSQ_BLOCK_EMBEDDINGS, NSQ_BLOCK_LAYERS, NSQ_BLOCK_LAYERS, NSQ_BLOCK_OUTPUT};
static const uint32_t blk_first[NBLK] = {0, 0, 1, 0}, blk_nl[NBLK] = {0, 1, 1, 0};
static const uint32_t blk_comp[NBLK] = {NSQ_COMP_NONE, NSQ_COMP_ZSTD, NSQ_COMP_NONE, NSQ_COMP_ZSTD};
static const uint32_t blk_levels[NBLK] = {0, 2, 3, 0};

typedef struct {
    uint64_t n, rows, cols;
    float *w;
    uint8_t *payload;
    uint64_t size, offset; /* offset: expected, within the block's raw bytes */
    uint8_t *ref[3];
    uint64_t ref_size[3], ref_offset[3];
} tdata;

/* importance */
static const uint32_t imp_tensor[3] = {2, 4, 5};
static const char imp_provenance[] = "calibrated on 128 samples \xe2\x9c\x93";
/* router */
static const uint8_t router_masks[NBLK] = {NSQ_ROUTE_BASE, NSQ_ROUTE_SKIP | NSQ_ROUTE_BASE | NSQ_ROUTE_FULL,
                                           NSQ_ROUTE_SKIP | NSQ_ROUTE_BASE | NSQ_ROUTE_FULL, NSQ_ROUTE_BASE};

/* tokenizer files, in name order */
static uint8_t tok_bin[256];
static const struct {
    const char *name;
    const void *data;
    uint64_t size;
} tok_files[3] = {{"added_tokens.bin", tok_bin, 256}, {"empty.txt", "", 0}, {"tokenizer.json", "{\"model\":{}}", 12}};

static char *misuse_dir; /* for the misuse tests: must stay empty */

static struct {
    char *dir, *path;
    tdata t[NT];
    float *imp_groups[3], *imp_cols[3];
    uint64_t n_imp_groups[3], n_imp_cols[3];
    float mean[HID], scale[HID], w1[RH * HID], b1[RH], w2[3 * NBLK * RH], b2[3 * NBLK];
    uint64_t raw_size[NBLK], ref_raw[NBLK][3];
} M;

/* extra metadata: every type, scalars and arrays */
static const uint64_t arr_u64[3] = {0, 1, UINT64_MAX};
static const int64_t arr_i64[4] = {-1, 0, INT64_MAX, INT64_MIN};
static const double arr_f64[4] = {0.5, -0.0, 1e308, 4.9406564584124654e-324};
static const uint8_t arr_bool[3] = {1, 0, 1};
static const char *const arr_str[4] = {"a", "", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "e\xcc\x81"};
static const char str_val[] = "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9d\x84\x9e";

static nsq_status write_extra_meta(nsq_writer *w)
{
    nsq_status st;
    /* deliberately not in key order: the writer sorts */
    if ((st = nsq_writer_meta_u64(w, "test.u64", UINT64_MAX)) || (st = nsq_writer_meta_i64(w, "test.i64", INT64_MIN)) ||
        (st = nsq_writer_meta_f64(w, "test.f64", -1.5e-300)) || (st = nsq_writer_meta_bool(w, "test.bool", 42)) ||
        (st = nsq_writer_meta_bool(w, "test.bool_false", 0)) ||
        (st = nsq_writer_meta_str(w, "test.str", str_val, strlen(str_val))) ||
        (st = nsq_writer_meta_str(w, "test.prefix", "abcdef", 3)) || (st = nsq_writer_meta_str(w, "test.empty", "", 0)) ||
        (st = nsq_writer_meta_array(w, "test.arr.u64", NSQ_META_U64, arr_u64, 3)) ||
        (st = nsq_writer_meta_array(w, "test.arr.i64", NSQ_META_I64, arr_i64, 4)) ||
        (st = nsq_writer_meta_array(w, "test.arr.f64", NSQ_META_F64, arr_f64, 4)) ||
        (st = nsq_writer_meta_array(w, "test.arr.bool", NSQ_META_BOOL, arr_bool, 3)) ||
        (st = nsq_writer_meta_array(w, "test.arr.str", NSQ_META_STRING, arr_str, 4)) ||
        (st = nsq_writer_meta_array(w, "test.arr.empty", NSQ_META_U64, NULL, 0)) ||
        (st = nsq_writer_meta_array(w, "test.arr.empty_str", NSQ_META_STRING, NULL, 0)))
        return st;
    return NSQ_OK;
}
#define N_EXTRA_META 15u

/* Builds every payload: F16 and BF16 encoded here, TIERED by the library's
 * reference quantizer (the decoding of which test_quant checks). */
static void build_data(void)
{
    tu_rng r = {31337};
    for (int i = 0; i < 256; i++) tok_bin[i] = (uint8_t)i;
    uint64_t pos[NBLK] = {0}, rpos[NBLK][3] = {{0}};
    for (int i = 0; i < NT; i++) {
        const tspec *s = &specs[i];
        tdata *t = &M.t[i];
        t->n = 1;
        for (uint32_t k = 0; k < s->n_dims; k++) t->n *= s->dims[k];
        t->cols = s->dims[s->n_dims - 1];
        t->rows = t->n / t->cols;
        t->w = malloc(t->n * sizeof *t->w);
        for (uint64_t j = 0; j < t->n; j++) /* vectors are nearly constant: the zstd blocks compress */
            t->w[j] = s->n_dims == 1 ? 1.0f + 0.25f * (float)(j % 2) : tu_unif(&r, -1.0f, 1.0f) * (1.0f + (float)(j % 7));
        if (s->scheme == NSQ_SCHEME_F32) {
            t->size = 4 * t->n;
            t->payload = malloc(t->size);
            for (uint64_t j = 0; j < t->n; j++) tu_wr32(t->payload + 4 * j, tu_f32_bits(t->w[j]));
        } else if (s->scheme == NSQ_SCHEME_F16 || s->scheme == NSQ_SCHEME_BF16) {
            t->size = 2 * t->n;
            t->payload = malloc(t->size);
            for (uint64_t j = 0; j < t->n; j++)
                tu_wr16(t->payload + 2 * j, s->scheme == NSQ_SCHEME_F16 ? tu_f32_to_f16_ref(t->w[j])
                                                                         : (uint16_t)(tu_f32_bits(t->w[j]) >> 16));
        } else {
            uint32_t G = s->group_size;
            uint64_t ng = t->n / G, cnt[4] = {0, 0, 0, 0};
            uint8_t *tiers = malloc(ng);
            for (uint64_t g = 0; g < ng; g++) tiers[g] = (uint8_t)tu_below(&r, 4);
            for (uint8_t k = 0; k < 4; k++) tiers[(k * 3) % ng] = k;
            for (uint64_t g = 0; g < ng; g++) cnt[tiers[g]]++;
            t->size = nsq_tiered_size(ng, G, cnt);
            t->payload = malloc(t->size);
            assert_ok(nsq_quantize_tiered(t->w, t->rows, t->cols, G, tiers, NULL, t->payload, t->size));
            nsq_view v;
            nsq_refine_view rv[3];
            assert_ok(nsq_view_init(NSQ_SCHEME_TIERED, t->rows, t->cols, G, t->payload, t->size, &v, NULL));
            for (uint32_t l = 0; l < s->n_refine; l++) {
                t->ref_size[l] = tu_pad64((ng - cnt[0]) * G * s->bits[l] / 8);
                t->ref[l] = malloc(t->ref_size[l]);
                assert_ok(nsq_quantize_refinement(t->w, &v, rv, l, s->bits[l], t->ref[l], t->ref_size[l]));
                assert_ok(nsq_refine_view_init(&v, s->bits[l], t->ref[l], t->ref_size[l], &rv[l], NULL));
                t->ref_offset[l] = tu_pad64(rpos[s->block][l]);
                rpos[s->block][l] = t->ref_offset[l] + t->ref_size[l];
            }
            free(tiers);
        }
        t->offset = tu_pad64(pos[s->block]);
        pos[s->block] = t->offset + t->size;
    }
    for (int b = 0; b < NBLK; b++) {
        M.raw_size[b] = pos[b];
        for (int l = 0; l < 3; l++) M.ref_raw[b][l] = rpos[b][l];
    }
    for (int e = 0; e < 3; e++) {
        const tdata *t = &M.t[imp_tensor[e]];
        uint64_t ng = t->n / specs[imp_tensor[e]].group_size;
        M.n_imp_groups[e] = e == 1 ? 0 : ng;
        M.n_imp_cols[e] = e == 2 ? 0 : t->cols;
        M.imp_groups[e] = malloc((ng + 1) * sizeof(float));
        M.imp_cols[e] = malloc((t->cols + 1) * sizeof(float));
        for (uint64_t g = 0; g < ng; g++) M.imp_groups[e][g] = tu_unif(&r, 0.0f, 10.0f);
        for (uint64_t c = 0; c < t->cols; c++) M.imp_cols[e][c] = c % 9 ? tu_unif(&r, 0.0f, 2.0f) : 0.0f;
    }
    for (int i = 0; i < HID; i++) {
        M.mean[i] = tu_unif(&r, -0.1f, 0.1f);
        M.scale[i] = tu_unif(&r, 0.5f, 1.5f);
    }
    for (int i = 0; i < RH * HID; i++) M.w1[i] = tu_unif(&r, -0.3f, 0.3f);
    for (int i = 0; i < RH; i++) M.b1[i] = tu_unif(&r, -0.1f, 0.1f);
    for (int i = 0; i < 3 * NBLK * RH; i++) M.w2[i] = tu_unif(&r, -1.0f, 1.0f);
    for (int i = 0; i < 3 * NBLK; i++) M.b2[i] = tu_unif(&r, -0.1f, 0.1f);
}

static nsq_status write_model(const char *path, nsq_diag *d)
{
    nsq_writer *w;
    nsq_status st = nsq_writer_open(path, &w, d);
    if (st) return st;
    if ((st = tu_write_required_meta(w, NL, HID, NULL)) || (st = write_extra_meta(w))) goto done;
    if ((st = nsq_writer_tokenizer(w, NSQ_TOK_HF_JSON))) goto done;
    for (int i = 0; i < 3; i++)
        if ((st = nsq_writer_tokenizer_file(w, tok_files[i].name, tok_files[i].data, tok_files[i].size))) goto done;
    int i = 0;
    for (uint32_t b = 0; b < NBLK; b++) {
        if ((st = nsq_writer_begin_block(w, blk_kind[b], blk_first[b], blk_nl[b], blk_comp[b]))) goto done;
        for (; i < NT && specs[i].block == b; i++) {
            const tspec *s = &specs[i];
            const tdata *t = &M.t[i];
            if ((st = nsq_writer_add_tensor(w, s->name, s->scheme, s->n_dims, s->dims, s->group_size, t->payload, t->size)))
                goto done;
            for (uint32_t l = 0; l < s->n_refine; l++)
                if ((st = nsq_writer_add_refinement(w, l + 1, s->bits[l], t->ref[l], t->ref_size[l]))) goto done;
        }
        if ((st = nsq_writer_end_block(w, d))) goto done;
    }
    if ((st = nsq_writer_importance(w, NSQ_IMP_CALIBRATED, 4.25, imp_provenance))) goto done;
    for (int e = 0; e < 3; e++)
        if ((st = nsq_writer_importance_entry(w, specs[imp_tensor[e]].name, M.imp_groups[e], M.n_imp_groups[e],
                                              M.imp_cols[e], M.n_imp_cols[e])))
            goto done;
    nsq_router_params p = {1, HID, RH, NSQ_ACT_TANH, NBLK, 0.5f, router_masks, M.mean, M.scale, M.w1, M.b1, M.w2, M.b2};
    if ((st = nsq_writer_router(w, &p))) goto done;
done:
    if (st) {
        nsq_writer_finish(w, d);
        return st;
    }
    return nsq_writer_finish(w, d);
}

static int setup_model(void **state)
{
    (void)state;
    build_data();
    M.dir = tu_mkdtemp();
    M.path = tu_join(M.dir, "model.nsq");
    misuse_dir = tu_mkdtemp();
    nsq_diag d;
    memset(&d, 0, sizeof d);
    nsq_status st = write_model(M.path, &d);
    if (st) {
        fprintf(stderr, "writing the model failed: %s %s %s\n", nsq_status_name(st), d.rule, d.message);
        tu_rmtree(M.dir);
        tu_rmtree(misuse_dir); /* the group teardown does not run after a failed setup */
        return -1;
    }
    return 0;
}

static int teardown_model(void **state)
{
    (void)state;
    tu_rmtree(M.dir);
    free(M.dir);
    tu_rmtree(misuse_dir);
    free(misuse_dir);
    free(M.path);
    for (int i = 0; i < NT; i++) {
        free(M.t[i].w);
        free(M.t[i].payload);
        for (int l = 0; l < 3; l++) free(M.t[i].ref[l]);
    }
    for (int e = 0; e < 3; e++) {
        free(M.imp_groups[e]);
        free(M.imp_cols[e]);
    }
    return 0;
}

/* ---- checks on an opened file ---- */
static void check_header_bytes(void)
{
    size_t len;
    uint8_t *b = tu_must_read(M.path, &len);
    assert_memory_equal(b, "\x89NSQ\r\n\x1a\n", 8);
    assert_int_equal(tu_rd16(b + 8), 1);
    assert_int_equal(tu_rd16(b + 10), NSQ_FORMAT_MINOR);
    assert_int_equal(tu_rd32(b + 12), 128);
    assert_int_equal(tu_rd64(b + 16), NSQ_REQ_ZSTD);
    assert_int_equal(tu_rd64(b + 24), NSQ_OPT_REFINEMENTS | NSQ_OPT_IMPORTANCE | NSQ_OPT_ROUTER);
    assert_int_equal(tu_rd64(b + 32), len);
    assert_int_equal(tu_rd32(b + 48), 5);
    assert_int_equal(tu_rd32(b + 52), 32);
    for (int i = 64; i < 128; i++) assert_int_equal(b[i], 0);
    free(b);
}

static const struct {
    const char *key;
    uint32_t type;
} required[TU_N_REQUIRED_KEYS] = {
    {"general.architecture", NSQ_META_STRING}, {"model.activation", NSQ_META_STRING},
    {"model.attention_bias", NSQ_META_BOOL},   {"model.context_length", NSQ_META_U64},
    {"model.head_dim", NSQ_META_U64},          {"model.hidden_size", NSQ_META_U64},
    {"model.intermediate_size", NSQ_META_U64}, {"model.mlp_bias", NSQ_META_BOOL},
    {"model.n_heads", NSQ_META_U64},           {"model.n_kv_heads", NSQ_META_U64},
    {"model.n_layers", NSQ_META_U64},          {"model.norm.epsilon", NSQ_META_F64},
    {"model.norm.type", NSQ_META_STRING},      {"model.position", NSQ_META_STRING},
    {"model.rope.scaling.factor", NSQ_META_F64}, {"model.rope.scaling.type", NSQ_META_STRING},
    {"model.rope.theta", NSQ_META_F64},        {"model.sliding_window", NSQ_META_U64},
    {"model.tied_head", NSQ_META_BOOL},        {"model.vocab_size", NSQ_META_U64},
    {"provenance.converter", NSQ_META_STRING}, {"provenance.recipe", NSQ_META_STRING},
    {"provenance.source", NSQ_META_STRING},    {"tokenizer.add_bos", NSQ_META_BOOL},
    {"tokenizer.bos_id", NSQ_META_I64},        {"tokenizer.eos_id", NSQ_META_I64},
};

static void expect_str(const nsq_file *f, const char *key, uint32_t elem, const char *want, size_t want_len)
{
    const char *s = NULL;
    size_t len = 99;
    assert_ok(nsq_meta_str(f, key, elem, &s, &len));
    assert_int_equal(len, want_len);
    assert_memory_equal(s, want, want_len);
    uint32_t idx;
    assert_ok(nsq_meta_find(f, key, &idx));
    const char *s2;
    size_t len2;
    assert_ok(nsq_meta_value_str(f, idx, elem, &s2, &len2));
    assert_ptr_equal(s2, s);
    assert_int_equal(len2, len);
}

static void expect_entry(const nsq_file *f, const char *key, uint32_t type, uint32_t count)
{
    uint32_t idx = UINT32_MAX;
    assert_ok(nsq_meta_find(f, key, &idx));
    nsq_meta m;
    assert_ok(nsq_meta_at(f, idx, &m));
    assert_string_equal(m.key, key);
    assert_int_equal(m.type, type);
    assert_int_equal(m.count, count);
}

static void check_metadata(const nsq_file *f)
{
    nsq_info info;
    nsq_get_info(f, &info);
    assert_int_equal(info.meta_count, TU_N_REQUIRED_KEYS + N_EXTRA_META);
    /* listing: sorted bytewise, strictly increasing; find agrees with the index */
    for (uint32_t i = 0; i < info.meta_count; i++) {
        nsq_meta m, prev;
        assert_ok(nsq_meta_at(f, i, &m));
        if (i) {
            assert_ok(nsq_meta_at(f, i - 1, &prev));
            assert_true(strcmp(prev.key, m.key) < 0);
        }
        uint32_t idx;
        assert_ok(nsq_meta_find(f, m.key, &idx));
        assert_int_equal(idx, i);
    }
    nsq_meta m;
    assert_status(nsq_meta_at(f, info.meta_count, &m), NSQ_E_NOT_FOUND);
    for (uint32_t k = 0; k < TU_N_REQUIRED_KEYS; k++) expect_entry(f, required[k].key, required[k].type, 1);

    uint64_t u;
    int64_t i64;
    double d;
    int b;
    /* required values as written by tu_write_required_meta */
    expect_str(f, "general.architecture", 0, "llama", 5);
    expect_str(f, "model.rope.scaling.type", 0, "none", 4);
    assert_ok(nsq_meta_u64(f, "model.hidden_size", 0, &u));
    assert_int_equal(u, HID);
    assert_ok(nsq_meta_u64(f, "model.n_layers", 0, &u));
    assert_int_equal(u, NL);
    assert_ok(nsq_meta_u64(f, "model.head_dim", 0, &u));
    assert_int_equal(u, HID / TU_N_HEADS);
    assert_ok(nsq_meta_f64(f, "model.norm.epsilon", 0, &d));
    assert_true(d == 1e-5);
    assert_ok(nsq_meta_i64(f, "tokenizer.eos_id", 0, &i64));
    assert_int_equal(i64, 2);
    assert_ok(nsq_meta_bool(f, "tokenizer.add_bos", 0, &b));
    assert_int_equal(b, 1);

    /* extra scalars */
    expect_entry(f, "test.u64", NSQ_META_U64, 1);
    assert_ok(nsq_meta_u64(f, "test.u64", 0, &u));
    assert_true(u == UINT64_MAX);
    expect_entry(f, "test.i64", NSQ_META_I64, 1);
    assert_ok(nsq_meta_i64(f, "test.i64", 0, &i64));
    assert_true(i64 == INT64_MIN);
    expect_entry(f, "test.f64", NSQ_META_F64, 1);
    assert_ok(nsq_meta_f64(f, "test.f64", 0, &d));
    assert_int_equal(tu_f64_bits(d), tu_f64_bits(-1.5e-300));
    expect_entry(f, "test.bool", NSQ_META_BOOL, 1);
    assert_ok(nsq_meta_bool(f, "test.bool", 0, &b));
    assert_int_equal(b, 1); /* 42 is stored as true */
    assert_ok(nsq_meta_bool(f, "test.bool_false", 0, &b));
    assert_int_equal(b, 0);
    expect_entry(f, "test.str", NSQ_META_STRING, 1);
    expect_str(f, "test.str", 0, str_val, strlen(str_val));
    expect_str(f, "test.prefix", 0, "abc", 3);
    expect_str(f, "test.empty", 0, "", 0);

    /* arrays */
    expect_entry(f, "test.arr.u64", NSQ_META_U64 | NSQ_META_ARRAY, 3);
    expect_entry(f, "test.arr.i64", NSQ_META_I64 | NSQ_META_ARRAY, 4);
    expect_entry(f, "test.arr.f64", NSQ_META_F64 | NSQ_META_ARRAY, 4);
    expect_entry(f, "test.arr.bool", NSQ_META_BOOL | NSQ_META_ARRAY, 3);
    expect_entry(f, "test.arr.str", NSQ_META_STRING | NSQ_META_ARRAY, 4);
    expect_entry(f, "test.arr.empty", NSQ_META_U64 | NSQ_META_ARRAY, 0);
    expect_entry(f, "test.arr.empty_str", NSQ_META_STRING | NSQ_META_ARRAY, 0);
    uint32_t idx;
    for (uint32_t e = 0; e < 3; e++) {
        assert_ok(nsq_meta_u64(f, "test.arr.u64", e, &u));
        assert_true(u == arr_u64[e]);
        assert_ok(nsq_meta_find(f, "test.arr.u64", &idx));
        assert_ok(nsq_meta_value_u64(f, idx, e, &u));
        assert_true(u == arr_u64[e]);
        assert_ok(nsq_meta_bool(f, "test.arr.bool", e, &b));
        assert_int_equal(b, arr_bool[e]);
        assert_ok(nsq_meta_find(f, "test.arr.bool", &idx));
        assert_ok(nsq_meta_value_bool(f, idx, e, &b));
        assert_int_equal(b, arr_bool[e]);
    }
    for (uint32_t e = 0; e < 4; e++) {
        assert_ok(nsq_meta_i64(f, "test.arr.i64", e, &i64));
        assert_true(i64 == arr_i64[e]);
        assert_ok(nsq_meta_find(f, "test.arr.i64", &idx));
        assert_ok(nsq_meta_value_i64(f, idx, e, &i64));
        assert_true(i64 == arr_i64[e]);
        assert_ok(nsq_meta_f64(f, "test.arr.f64", e, &d));
        assert_int_equal(tu_f64_bits(d), tu_f64_bits(arr_f64[e]));
        assert_ok(nsq_meta_find(f, "test.arr.f64", &idx));
        assert_ok(nsq_meta_value_f64(f, idx, e, &d));
        assert_int_equal(tu_f64_bits(d), tu_f64_bits(arr_f64[e]));
        expect_str(f, "test.arr.str", e, arr_str[e], strlen(arr_str[e]));
    }

    /* out of range elements, wrong types, missing keys */
    const char *s;
    size_t len;
    assert_status(nsq_meta_u64(f, "test.arr.u64", 3, &u), NSQ_E_ARG);
    assert_status(nsq_meta_str(f, "test.arr.str", 4, &s, &len), NSQ_E_ARG);
    assert_status(nsq_meta_u64(f, "test.arr.empty", 0, &u), NSQ_E_ARG);
    assert_status(nsq_meta_str(f, "test.arr.empty_str", 0, &s, &len), NSQ_E_ARG);
    assert_status(nsq_meta_u64(f, "test.u64", 1, &u), NSQ_E_ARG);
    assert_status(nsq_meta_u64(f, "test.i64", 0, &u), NSQ_E_TYPE);
    assert_status(nsq_meta_i64(f, "test.u64", 0, &i64), NSQ_E_TYPE);
    assert_status(nsq_meta_f64(f, "test.u64", 0, &d), NSQ_E_TYPE);
    assert_status(nsq_meta_bool(f, "test.str", 0, &b), NSQ_E_TYPE);
    assert_status(nsq_meta_str(f, "test.bool", 0, &s, &len), NSQ_E_TYPE);
    assert_status(nsq_meta_u64(f, "test.arr.i64", 0, &u), NSQ_E_TYPE);
    assert_status(nsq_meta_str(f, "test.arr.u64", 0, &s, &len), NSQ_E_TYPE);
    assert_status(nsq_meta_u64(f, "test.nope", 0, &u), NSQ_E_NOT_FOUND);
    assert_status(nsq_meta_i64(f, "test", 0, &i64), NSQ_E_NOT_FOUND);
    assert_status(nsq_meta_f64(f, "test.u6", 0, &d), NSQ_E_NOT_FOUND);
    assert_status(nsq_meta_bool(f, "zzz", 0, &b), NSQ_E_NOT_FOUND);
    assert_status(nsq_meta_str(f, "", 0, &s, &len), NSQ_E_NOT_FOUND);
    assert_status(nsq_meta_find(f, "test.u64x", &idx), NSQ_E_NOT_FOUND);
    assert_status(nsq_meta_value_u64(f, info.meta_count, 0, &u), NSQ_E_NOT_FOUND);
    assert_status(nsq_meta_value_str(f, info.meta_count, 0, &s, &len), NSQ_E_NOT_FOUND);
}

static void check_tokenizer(const nsq_file *f)
{
    assert_int_equal(nsq_tokenizer_get_kind(f), NSQ_TOK_HF_JSON);
    assert_int_equal(nsq_tokenizer_file_count(f), 3);
    nsq_tokenizer_file tf;
    for (uint32_t i = 0; i < 3; i++) {
        assert_ok(nsq_tokenizer_file_at(f, i, &tf));
        assert_string_equal(tf.name, tok_files[i].name);
        assert_int_equal(tf.size, tok_files[i].size);
        if (tf.size) assert_memory_equal(tf.data, tok_files[i].data, tf.size);
        nsq_tokenizer_file tf2;
        assert_ok(nsq_tokenizer_file_find(f, tok_files[i].name, &tf2));
        assert_string_equal(tf2.name, tok_files[i].name);
        assert_int_equal(tf2.size, tok_files[i].size);
    }
    assert_status(nsq_tokenizer_file_at(f, 3, &tf), NSQ_E_NOT_FOUND);
    assert_status(nsq_tokenizer_file_find(f, "vocab.json", &tf), NSQ_E_NOT_FOUND);
    assert_status(nsq_tokenizer_file_find(f, "tokenizer", &tf), NSQ_E_NOT_FOUND);
}

/* The expected raw bytes of block b (level 0) or of its refinement level. */
static uint8_t *expected_raw(uint32_t b, uint32_t level, uint64_t *size)
{
    *size = level ? M.ref_raw[b][level - 1] : M.raw_size[b];
    uint8_t *raw = calloc(1, *size + 1);
    for (int i = 0; i < NT; i++) {
        if (specs[i].block != b) continue;
        if (!level) memcpy(raw + M.t[i].offset, M.t[i].payload, M.t[i].size);
        else if (specs[i].n_refine >= level)
            memcpy(raw + M.t[i].ref_offset[level - 1], M.t[i].ref[level - 1], M.t[i].ref_size[level - 1]);
    }
    return raw;
}

static void check_directory(const nsq_file *f, const uint8_t *file, size_t file_len)
{
    nsq_info info;
    nsq_get_info(f, &info);
    assert_int_equal(info.version_major, 1);
    assert_int_equal(info.version_minor, NSQ_FORMAT_MINOR);
    assert_int_equal(info.required_features, NSQ_REQ_ZSTD);
    assert_int_equal(info.optional_features, NSQ_OPT_REFINEMENTS | NSQ_OPT_IMPORTANCE | NSQ_OPT_ROUTER);
    assert_int_equal(info.file_size, file_len);
    assert_int_equal(info.section_count, 5);
    assert_int_equal(info.block_count, NBLK);
    assert_int_equal(info.refinement_count, 2 + 3);
    assert_int_equal(info.tensor_count, NT);
    assert_true(info.has_importance);
    assert_true(info.has_router);

    /* sections: kinds 1..5 in order, 8-aligned, checksums over their bytes */
    uint64_t prev_end = 128;
    for (uint32_t i = 0; i < 5; i++) {
        nsq_section s;
        assert_ok(nsq_section_at(f, i, &s));
        assert_int_equal(s.kind, i + 1);
        assert_int_equal(s.offset % 8, 0);
        assert_true(s.offset >= prev_end && s.size > 0 && s.offset + s.size <= file_len);
        assert_int_equal(s.checksum, XXH3_64bits(file + s.offset, s.size));
        prev_end = s.offset + s.size;
    }
    nsq_section s;
    assert_status(nsq_section_at(f, 5, &s), NSQ_E_NOT_FOUND);

    /* blocks */
    uint32_t first = 0;
    for (uint32_t b = 0; b < NBLK; b++) {
        nsq_block blk;
        assert_ok(nsq_block_at(f, b, &blk));
        assert_int_equal(blk.kind, blk_kind[b]);
        assert_int_equal(blk.first_layer, blk_first[b]);
        assert_int_equal(blk.n_layers, blk_nl[b]);
        assert_int_equal(blk.compression, blk_comp[b]);
        assert_int_equal(blk.offset % 4096, 0);
        assert_int_equal(blk.raw_size, M.raw_size[b]);
        assert_int_equal(blk.refinement_count, blk_levels[b]);
        assert_int_equal(blk.first_tensor, first);
        uint32_t cnt = 0;
        for (int i = 0; i < NT; i++) cnt += specs[i].block == b;
        assert_int_equal(blk.tensor_count, cnt);
        first += cnt;
        assert_true(blk.offset + blk.stored_size <= file_len);
        assert_int_equal(blk.checksum, XXH3_64bits(file + blk.offset, blk.stored_size));
        uint64_t rs;
        uint8_t *want = expected_raw(b, 0, &rs);
        if (blk.compression == NSQ_COMP_NONE) {
            assert_int_equal(blk.stored_size, blk.raw_size);
            assert_memory_equal(file + blk.offset, want, rs);
        } else { /* one zstd frame that decodes, by zstd itself, to the raw bytes */
            uint8_t *dec = malloc(rs + 1);
            size_t got = ZSTD_decompress(dec, rs + 1, file + blk.offset, blk.stored_size);
            assert_false(ZSTD_isError(got));
            assert_int_equal(got, rs);
            assert_memory_equal(dec, want, rs);
            free(dec);
        }
        free(want);
        for (uint32_t l = 1; l <= 3; l++) {
            nsq_refinement r;
            if (l > blk_levels[b]) {
                assert_status(nsq_refinement_at(f, b, l, &r), NSQ_E_NOT_FOUND);
                continue;
            }
            assert_ok(nsq_refinement_at(f, b, l, &r));
            assert_int_equal(r.block, b);
            assert_int_equal(r.level, l);
            assert_int_equal(r.compression, blk_comp[b]);
            assert_int_equal(r.offset % 4096, 0);
            assert_int_equal(r.raw_size, M.ref_raw[b][l - 1]);
            assert_int_equal(r.checksum, XXH3_64bits(file + r.offset, r.stored_size));
            if (r.compression == NSQ_COMP_NONE) {
                uint8_t *rw = expected_raw(b, l, &rs);
                assert_int_equal(r.stored_size, rs);
                assert_memory_equal(file + r.offset, rw, rs);
                free(rw);
            }
        }
        nsq_refinement r;
        assert_status(nsq_refinement_at(f, b, 0, &r), NSQ_E_NOT_FOUND);
    }
    nsq_block blk;
    assert_status(nsq_block_at(f, NBLK, &blk), NSQ_E_NOT_FOUND);
    nsq_refinement r;
    assert_status(nsq_refinement_at(f, NBLK, 1, &r), NSQ_E_NOT_FOUND);

    /* tensors: directory order is write order; find by name */
    for (uint32_t i = 0; i < NT; i++) {
        const tspec *sp = &specs[i];
        nsq_tensor t;
        assert_ok(nsq_tensor_at(f, i, &t));
        assert_string_equal(t.name, sp->name);
        assert_int_equal(t.scheme, sp->scheme);
        assert_int_equal(t.n_dims, sp->n_dims);
        for (uint32_t k = 0; k < sp->n_dims; k++) assert_int_equal(t.dims[k], sp->dims[k]);
        assert_int_equal(t.n_elements, M.t[i].n);
        assert_int_equal(t.block, sp->block);
        assert_int_equal(t.group_size, sp->group_size);
        assert_int_equal(t.n_refine, sp->n_refine);
        assert_int_equal(t.offset, M.t[i].offset);
        assert_int_equal(t.size, M.t[i].size);
        for (uint32_t l = 0; l < sp->n_refine; l++) {
            assert_int_equal(t.refine[l].bits, sp->bits[l]);
            assert_int_equal(t.refine[l].offset, M.t[i].ref_offset[l]);
            assert_int_equal(t.refine[l].size, M.t[i].ref_size[l]);
        }
        uint32_t idx = UINT32_MAX;
        assert_ok(nsq_tensor_find(f, sp->name, &idx));
        assert_int_equal(idx, i);
    }
    nsq_tensor t;
    uint32_t idx;
    assert_status(nsq_tensor_at(f, NT, &t), NSQ_E_NOT_FOUND);
    assert_status(nsq_tensor_find(f, "output", &idx), NSQ_E_NOT_FOUND);
    assert_status(nsq_tensor_find(f, "output.weight.x", &idx), NSQ_E_NOT_FOUND);
    assert_status(nsq_tensor_find(f, "", &idx), NSQ_E_NOT_FOUND);
}

/* Loads every block and refinement, views every tensor, and decodes it. */
static void check_tensor_data(const nsq_file *f)
{
    nsq_diag d;
    for (uint32_t b = 0; b < NBLK; b++) {
        nsq_loaded blk, ref[3];
        assert_ok(nsq_block_load(f, b, &blk, &d));
        uint64_t rs;
        uint8_t *want = expected_raw(b, 0, &rs);
        assert_int_equal(blk.size, rs);
        assert_memory_equal(blk.data, want, rs);
        free(want);
        for (uint32_t l = 1; l <= blk_levels[b]; l++) {
            assert_ok(nsq_refinement_load(f, b, l, &ref[l - 1], &d));
            want = expected_raw(b, l, &rs);
            assert_int_equal(ref[l - 1].size, rs);
            assert_memory_equal(ref[l - 1].data, want, rs);
            free(want);
        }
        nsq_loaded none;
        assert_status(nsq_refinement_load(f, b, blk_levels[b] + 1, &none, &d), NSQ_E_ARG);
        for (uint32_t i = 0; i < NT; i++) {
            if (specs[i].block != b) continue;
            const tdata *t = &M.t[i];
            nsq_view v;
            assert_ok(nsq_tensor_view(f, i, &blk, &v, &d));
            assert_int_equal(v.scheme, specs[i].scheme);
            assert_int_equal(v.rows, t->rows);
            assert_int_equal(v.cols, t->cols);
            assert_int_equal(v.size, t->size);
            assert_memory_equal(v.data, t->payload, t->size);
            float *out = malloc(t->n * sizeof *out), *exp = malloc(t->n * sizeof *exp);
            assert_ok(nsq_dequantize_rows(&v, NULL, 0, 0, t->rows, out));
            if (specs[i].scheme == NSQ_SCHEME_F32) {
                for (uint64_t j = 0; j < t->n; j++) exp[j] = t->w[j];
            } else if (specs[i].scheme == NSQ_SCHEME_F16) {
                for (uint64_t j = 0; j < t->n; j++) exp[j] = tu_f16_to_f32_ref(tu_rd16(t->payload + 2 * j));
            } else if (specs[i].scheme == NSQ_SCHEME_BF16) {
                for (uint64_t j = 0; j < t->n; j++) exp[j] = tu_bits_f32((uint32_t)tu_rd16(t->payload + 2 * j) << 16);
            } else { /* the same decode as the written payload and codes, at every depth */
                nsq_view ov;
                nsq_refine_view orv[3], frv[3];
                assert_ok(nsq_view_init(NSQ_SCHEME_TIERED, t->rows, t->cols, specs[i].group_size, t->payload, t->size,
                                        &ov, NULL));
                for (uint32_t l = 0; l <= specs[i].n_refine; l++) {
                    if (l) {
                        assert_ok(nsq_refine_view_init(&ov, specs[i].bits[l - 1], t->ref[l - 1], t->ref_size[l - 1],
                                                       &orv[l - 1], NULL));
                        assert_ok(nsq_tensor_refine_view(f, i, l, &v, &ref[l - 1], &frv[l - 1], &d));
                        assert_int_equal(frv[l - 1].bits, specs[i].bits[l - 1]);
                        assert_int_equal(frv[l - 1].size, t->ref_size[l - 1]);
                        assert_memory_equal(frv[l - 1].codes, t->ref[l - 1], t->ref_size[l - 1]);
                        assert_ok(nsq_dequantize_rows(&v, frv, l, 0, t->rows, out));
                    }
                    assert_ok(nsq_dequantize_rows(&ov, orv, l, 0, t->rows, exp));
                    assert_memory_equal(out, exp, t->n * sizeof *out);
                }
                nsq_refine_view x;
                if (specs[i].n_refine < blk_levels[b])
                    assert_status(nsq_tensor_refine_view(f, i, specs[i].n_refine + 1, &v, &ref[specs[i].n_refine], &x, &d),
                                  NSQ_E_ARG);
                /* and close to the source weights */
                for (uint64_t j = 0; j < t->n; j++) assert_true(fabsf(exp[j] - t->w[j]) < 4.0f);
                free(out);
                free(exp);
                continue;
            }
            for (uint64_t j = 0; j < t->n; j++)
                if (tu_f32_bits(out[j]) != tu_f32_bits(exp[j]))
                    fail_msg("%s[%llu] = %a, expected %a", specs[i].name, (unsigned long long)j, (double)out[j],
                             (double)exp[j]);
            free(out);
            free(exp);
        }
        /* a view needs the tensor's own block */
        nsq_view v;
        uint32_t other = b == 0 ? 8 : 0;
        assert_status(nsq_tensor_view(f, other, &blk, &v, &d), NSQ_E_ARG);
        assert_status(nsq_tensor_view(f, NT, &blk, &v, &d), NSQ_E_ARG);
        for (uint32_t l = 1; l <= blk_levels[b]; l++) nsq_loaded_free(&ref[l - 1]);
        nsq_loaded_free(&blk);
    }
    nsq_loaded x;
    assert_status(nsq_block_load(f, NBLK, &x, &d), NSQ_E_ARG);
}

static void check_importance(const nsq_file *f)
{
    nsq_importance_info ii;
    assert_ok(nsq_importance_get(f, &ii));
    assert_int_equal(ii.method, NSQ_IMP_CALIBRATED);
    assert_int_equal(ii.entry_count, 3);
    assert_true(ii.target_bpw == 4.25);
    assert_string_equal(ii.provenance, imp_provenance);
    for (uint32_t e = 0; e < 3; e++) {
        nsq_importance_entry ie;
        assert_ok(nsq_importance_entry_at(f, e, &ie));
        assert_int_equal(ie.tensor, imp_tensor[e]);
        assert_int_equal(ie.n_group_stats, M.n_imp_groups[e]);
        assert_int_equal(ie.n_col_stats, M.n_imp_cols[e]);
        for (uint64_t g = 0; g < ie.n_group_stats; g++)
            assert_int_equal(tu_f32_bits(nsq_f32_at(ie.group_stats, g)), tu_f32_bits(M.imp_groups[e][g]));
        for (uint64_t c = 0; c < ie.n_col_stats; c++)
            assert_int_equal(tu_f32_bits(nsq_f32_at(ie.col_stats, c)), tu_f32_bits(M.imp_cols[e][c]));
    }
    nsq_importance_entry ie;
    assert_status(nsq_importance_entry_at(f, 3, &ie), NSQ_E_NOT_FOUND);
}

/* y = W2 act(W1 ((x - mean) * scale) + b1) + b2 in double, y[3*b + choice]. */
static void router_reference(uint32_t in, uint32_t h, uint32_t act, uint32_t out_n, const float *mean, const float *scale,
                             const float *w1, const float *b1, const float *w2, const float *b2, const float *x,
                             double *y, double *mag)
{
    double z[HID], hid[RH];
    for (uint32_t i = 0; i < in; i++) z[i] = ((double)x[i] - mean[i]) * scale[i];
    for (uint32_t j = 0; j < h; j++) {
        double a = b1[j];
        for (uint32_t i = 0; i < in; i++) a += (double)w1[j * in + i] * z[i];
        hid[j] = act == NSQ_ACT_RELU ? (a > 0 ? a : 0) : act == NSQ_ACT_TANH ? tanh(a) : a;
    }
    const double *v = h ? hid : z;
    uint32_t vn = h ? h : in;
    for (uint32_t o = 0; o < out_n; o++) {
        double a = b2[o], m = fabs(b2[o]);
        for (uint32_t i = 0; i < vn; i++) {
            a += (double)w2[o * vn + i] * v[i];
            m += fabs((double)w2[o * vn + i] * v[i]);
        }
        y[o] = a;
        mag[o] = m;
    }
}

static void check_router_eval(const nsq_router *r, const float *mean, const float *scale, const float *w1,
                              const float *b1, const float *w2, const float *b2, tu_rng *rng)
{
    uint32_t out_n = 3 * r->block_count;
    for (int trial = 0; trial < 8; trial++) {
        float x[HID], y[3 * NBLK + 4];
        double yr[3 * NBLK], mag[3 * NBLK];
        for (uint32_t i = 0; i < r->input_dim; i++) x[i] = tu_unif(rng, -2.0f, 2.0f);
        for (uint32_t o = 0; o < out_n + 4; o++) y[o] = 12345.0f;
        assert_ok(nsq_router_eval(r, x, y));
        router_reference(r->input_dim, r->hidden_dim, r->activation, out_n, mean, scale, w1, b1, w2, b2, x, yr, mag);
        for (uint32_t o = 0; o < out_n; o++)
            if (fabs(y[o] - yr[o]) > 1e-5 * (1 + mag[o]))
                fail_msg("router act %u H %u: y[%u] = %.9g, reference %.9g", r->activation, r->hidden_dim, o,
                         (double)y[o], yr[o]);
        for (uint32_t o = out_n; o < out_n + 4; o++) assert_true(y[o] == 12345.0f); /* writes 3*B values, no more */
    }
}

static void check_router(const nsq_file *f)
{
    nsq_router r;
    assert_ok(nsq_router_get(f, &r));
    assert_int_equal(r.feature, 1);
    assert_int_equal(r.input_dim, HID);
    assert_int_equal(r.hidden_dim, RH);
    assert_int_equal(r.activation, NSQ_ACT_TANH);
    assert_int_equal(r.block_count, NBLK);
    assert_true(r.temperature == 0.5f);
    assert_memory_equal(r.choice_mask, router_masks, NBLK);
    for (int i = 0; i < HID; i++) {
        assert_true(nsq_f32_at(r.in_mean, (uint64_t)i) == M.mean[i]);
        assert_true(nsq_f32_at(r.in_scale, (uint64_t)i) == M.scale[i]);
    }
    for (int i = 0; i < RH * HID; i++) assert_true(nsq_f32_at(r.w1, (uint64_t)i) == M.w1[i]);
    for (int i = 0; i < RH; i++) assert_true(nsq_f32_at(r.b1, (uint64_t)i) == M.b1[i]);
    for (int i = 0; i < 3 * NBLK * RH; i++) assert_true(nsq_f32_at(r.w2, (uint64_t)i) == M.w2[i]);
    for (int i = 0; i < 3 * NBLK; i++) assert_true(nsq_f32_at(r.b2, (uint64_t)i) == M.b2[i]);
    tu_rng rng = {77};
    check_router_eval(&r, M.mean, M.scale, M.w1, M.b1, M.w2, M.b2, &rng);
    float x[HID] = {0}, y[3 * NBLK];
    assert_status(nsq_router_eval(NULL, x, y), NSQ_E_ARG);
    assert_status(nsq_router_eval(&r, NULL, y), NSQ_E_ARG);
    assert_status(nsq_router_eval(&r, x, NULL), NSQ_E_ARG);
}

static void check_file(const nsq_file *f)
{
    size_t len;
    uint8_t *file = tu_must_read(M.path, &len);
    check_directory(f, file, len);
    check_metadata(f);
    check_tokenizer(f);
    check_tensor_data(f);
    check_importance(f);
    check_router(f);
    nsq_diag d;
    memset(&d, 0, sizeof d);
    assert_ok(nsq_verify(f, &d));
    free(file);
}

static void test_roundtrip_mmap(void **state)
{
    (void)state;
    check_header_bytes();
    nsq_file *f = NULL;
    nsq_diag d;
    assert_ok(nsq_open(M.path, 0, &f, &d));
    check_file(f);
    nsq_close(f);
}

static void test_roundtrip_pread(void **state)
{
    (void)state;
    nsq_file *f = NULL;
    nsq_diag d;
    assert_ok(nsq_open(M.path, NSQ_OPEN_PREAD, &f, &d));
    check_file(f);
    nsq_close(f);
}

static void test_roundtrip_memory(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = tu_must_read(M.path, &len);
    nsq_file *f = NULL;
    nsq_diag d;
    assert_ok(nsq_open_memory(buf, len, 0, &f, &d));
    check_file(f);
    nsq_close(f);
    /* NO_CHECKSUMS changes nothing for a valid file */
    assert_ok(nsq_open_memory(buf, len, NSQ_OPEN_NO_CHECKSUMS | NSQ_OPEN_PREAD, &f, &d));
    check_directory(f, buf, len);
    assert_ok(nsq_verify(f, &d));
    nsq_close(f);
    free(buf);
}

/* The same input writes the same bytes. */
static void test_deterministic(void **state)
{
    (void)state;
    char *p2 = tu_join(M.dir, "again.nsq");
    nsq_diag d;
    assert_ok(write_model(p2, &d));
    size_t l1, l2;
    uint8_t *a = tu_must_read(M.path, &l1), *b = tu_must_read(p2, &l2);
    assert_int_equal(l1, l2);
    assert_memory_equal(a, b, l1);
    free(a);
    free(b);
    unlink(p2);
    free(p2);
}

/* Router evaluation for every activation and without a hidden layer, on
 * parameters laid out here (not read from a file). */
static void test_router_eval_variants(void **state)
{
    (void)state;
    enum { D = 5, H = 3, B = 2 };
    tu_rng rng = {4242};
    float mean[D], scale[D], w1[H * D], b1[H], w2[3 * B * D], b2[3 * B];
    uint8_t bm[4 * D], bs[4 * D], bw1[4 * H * D], bb1[4 * H], bw2[4 * 3 * B * D], bb2[4 * 3 * B];
#define FILL(arr, bytes, n, lo, hi)                                   \
    for (int i = 0; i < (n); i++) {                                   \
        arr[i] = tu_unif(&rng, lo, hi);                               \
        tu_wr32(bytes + 4 * i, tu_f32_bits(arr[i]));                  \
    }
    FILL(mean, bm, D, -0.5f, 0.5f)
    FILL(scale, bs, D, 0.5f, 2.0f)
    FILL(w1, bw1, H * D, -1.0f, 1.0f)
    FILL(b1, bb1, H, -0.5f, 0.5f)
    FILL(w2, bw2, 3 * B * D, -1.0f, 1.0f)
    FILL(b2, bb2, 3 * B, -0.5f, 0.5f)
#undef FILL
    uint8_t masks[B] = {NSQ_ROUTE_BASE, NSQ_ROUTE_BASE};
    for (uint32_t act = 0; act <= 2; act++)
        for (uint32_t h = 0; h <= H; h += H) {
            nsq_router r = {1, D, h, act, B, 1.0f, masks, bm, bs, h ? bw1 : NULL, h ? bb1 : NULL, bw2, bb2};
            check_router_eval(&r, mean, scale, w1, b1, w2, b2, &rng);
        }
    /* one output by hand: H = 0, identity, x = mean + 1/scale gives z = 1 */
    nsq_router r = {1, D, 0, NSQ_ACT_IDENTITY, B, 1.0f, masks, bm, bs, NULL, NULL, bw2, bb2};
    float x[D], y[3 * B];
    for (int i = 0; i < D; i++) x[i] = mean[i];
    assert_ok(nsq_router_eval(&r, x, y));
    for (int o = 0; o < 3 * B; o++) assert_true(y[o] == b2[o]); /* z = 0 exactly */
}

/* ---- atomic replacement ---- */
static const char old_content[] = "previous contents of the target, not an nsq file";

static void assert_target(const char *path, const char *want, size_t want_len)
{
    size_t len;
    uint8_t *b = tu_must_read(path, &len);
    assert_int_equal(len, want_len);
    assert_memory_equal(b, want, len);
    free(b);
}

static void assert_listing(const char *dir, const char *want)
{
    char *l = tu_list_dir(dir);
    if (strcmp(l, want) != 0) fail_msg("directory holds \"%s\", expected \"%s\"", l, want);
    free(l);
}

static void test_atomic_abort(void **state)
{
    const char *dir = *state;
    char *path = tu_join(dir, "model.nsq");
    assert_int_equal(tu_write_file(path, old_content, sizeof old_content), 0);
    nsq_writer *w;
    nsq_diag d;
    /* abort right away */
    assert_ok(nsq_writer_open(path, &w, &d));
    nsq_writer_abort(w);
    assert_target(path, old_content, sizeof old_content);
    assert_listing(dir, "model.nsq");
    /* abort after blocks were written to the temporary file */
    assert_ok(nsq_writer_open(path, &w, &d));
    assert_ok(tu_write_minimal_body(w, 2, NULL));
    nsq_writer_abort(w);
    assert_target(path, old_content, sizeof old_content);
    assert_listing(dir, "model.nsq");
    nsq_writer_abort(NULL); /* harmless */
    free(path);
}

static void test_atomic_failed_finish(void **state)
{
    const char *dir = *state;
    char *path = tu_join(dir, "model.nsq");
    assert_int_equal(tu_write_file(path, old_content, sizeof old_content), 0);
    nsq_writer *w;
    nsq_diag d;

    /* a required key is missing: the written file fails validation at finish */
    assert_ok(nsq_writer_open(path, &w, &d));
    assert_ok(tu_write_minimal_body(w, 2, "model.vocab_size"));
    memset(&d, 0, sizeof d);
    assert_status(nsq_writer_finish(w, &d), NSQ_E_METADATA);
    assert_diag(&d, NSQ_E_METADATA, "R-META-11");
    assert_non_null(strstr(d.message, "model.vocab_size"));
    assert_target(path, old_content, sizeof old_content);
    assert_listing(dir, "model.nsq");

    /* layers not tiled: n_layers says 3, the blocks hold 2 */
    assert_ok(nsq_writer_open(path, &w, &d));
    assert_ok(tu_write_required_meta(w, 3, 8, NULL));
    assert_ok(tu_write_tokenizer(w));
    uint64_t dims[2] = {4, 8};
    for (uint32_t b = 0; b < 4; b++) {
        char name[32];
        snprintf(name, sizeof name, "t%u", b);
        uint32_t kind = b == 0 ? NSQ_BLOCK_EMBEDDINGS : b == 3 ? NSQ_BLOCK_OUTPUT : NSQ_BLOCK_LAYERS;
        assert_ok(nsq_writer_begin_block(w, kind, kind == NSQ_BLOCK_LAYERS ? b - 1 : 0, kind == NSQ_BLOCK_LAYERS, 0));
        assert_ok(tu_add_f32(w, name, 2, dims, 0.5f));
        assert_ok(nsq_writer_end_block(w, &d));
    }
    memset(&d, 0, sizeof d);
    assert_status(nsq_writer_finish(w, &d), NSQ_E_DIRECTORY);
    assert_diag(&d, NSQ_E_DIRECTORY, "R-DIR-9");
    assert_target(path, old_content, sizeof old_content);
    assert_listing(dir, "model.nsq");

    /* no tokenizer */
    assert_ok(nsq_writer_open(path, &w, &d));
    assert_ok(tu_write_required_meta(w, 1, 8, NULL));
    memset(&d, 0, sizeof d);
    assert_status(nsq_writer_finish(w, &d), NSQ_E_STATE);
    assert_diag(&d, NSQ_E_STATE, "R-SEC-6");
    assert_target(path, old_content, sizeof old_content);
    assert_listing(dir, "model.nsq");

    /* the target directory does not exist */
    char *nowhere = tu_join(dir, "missing/model.nsq");
    memset(&d, 0, sizeof d);
    w = (nsq_writer *)&d; /* must be reset to NULL */
    assert_status(nsq_writer_open(nowhere, &w, &d), NSQ_E_IO);
    assert_null(w);
    assert_diag(&d, NSQ_E_IO, NULL);
    assert_status(nsq_writer_open(NULL, &w, &d), NSQ_E_ARG);
    free(nowhere);

    free(path);
}

static void test_atomic_replace(void **state)
{
    const char *dir = *state;
    char *path = tu_join(dir, "model.nsq");
    assert_int_equal(tu_write_file(path, old_content, sizeof old_content), 0);
    nsq_diag d;
    /* while a writer is open the old file is still there, untouched */
    nsq_writer *w;
    assert_ok(nsq_writer_open(path, &w, &d));
    assert_ok(tu_write_minimal_body(w, 3, NULL));
    assert_target(path, old_content, sizeof old_content);
    assert_ok(nsq_writer_finish(w, &d));
    assert_listing(dir, "model.nsq");
    nsq_file *f;
    assert_ok(nsq_open(path, 0, &f, &d));
    nsq_info info;
    nsq_get_info(f, &info);
    assert_int_equal(info.block_count, 5);
    uint64_t u;
    assert_ok(nsq_meta_u64(f, "model.n_layers", 0, &u));
    assert_int_equal(u, 3);
    assert_ok(nsq_verify(f, &d));
    nsq_close(f);
    /* replace a valid file by another */
    assert_ok(tu_write_minimal_model(path, 1, &d));
    assert_listing(dir, "model.nsq");
    assert_ok(nsq_open(path, NSQ_OPEN_PREAD, &f, &d));
    assert_ok(nsq_meta_u64(f, "model.n_layers", 0, &u));
    assert_int_equal(u, 1);
    nsq_close(f);
    /* a new file where there was none */
    char *p2 = tu_join(dir, "new.nsq");
    assert_ok(tu_write_minimal_model(p2, 1, &d));
    assert_listing(dir, "model.nsq|new.nsq");
    free(p2);
    free(path);
}

/* ---- misuse ---- */

static nsq_writer *fresh(void)
{
    char *p = tu_join(misuse_dir, "m.nsq");
    nsq_writer *w = NULL;
    assert_ok(nsq_writer_open(p, &w, NULL));
    free(p);
    return w;
}

/* finish must report the first error (status and rule) and leave nothing behind */
static void expect_finish(nsq_writer *w, nsq_status st, const char *rule)
{
    nsq_diag d;
    memset(&d, 0, sizeof d);
    assert_status(nsq_writer_finish(w, &d), st);
    assert_diag(&d, st, rule);
    assert_listing(misuse_dir, "");
}

static const float some[64] = {0.5f, 1.0f, -1.0f};

static void test_misuse_state(void **state)
{
    (void)state;
    uint64_t dims[2] = {2, 8};
    nsq_writer *w;

    /* add_tensor outside a block; the error is sticky */
    w = fresh();
    assert_status(nsq_writer_add_tensor(w, "x", NSQ_SCHEME_F32, 2, dims, 0, some, 64), NSQ_E_STATE);
    assert_status(nsq_writer_meta_u64(w, "a.b", 1), NSQ_E_STATE);
    assert_status(nsq_writer_begin_block(w, NSQ_BLOCK_EMBEDDINGS, 0, 0, 0), NSQ_E_STATE);
    assert_status(nsq_writer_tokenizer(w, NSQ_TOK_HF_JSON), NSQ_E_STATE);
    assert_status(nsq_writer_meta_str(w, "Bad Key", "x", 1), NSQ_E_STATE); /* a second error does not replace the first */
    expect_finish(w, NSQ_E_STATE, "");

    /* finish with a block open */
    w = fresh();
    assert_ok(tu_write_required_meta(w, 1, 8, NULL));
    assert_ok(tu_write_tokenizer(w));
    assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_EMBEDDINGS, 0, 0, 0));
    assert_ok(tu_add_f32(w, "x", 2, dims, 0));
    expect_finish(w, NSQ_E_STATE, "");

    /* begin twice, end without begin, an empty block */
    w = fresh();
    assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_EMBEDDINGS, 0, 0, 0));
    assert_status(nsq_writer_begin_block(w, NSQ_BLOCK_LAYERS, 0, 1, 0), NSQ_E_STATE);
    expect_finish(w, NSQ_E_STATE, "");
    w = fresh();
    nsq_diag d;
    memset(&d, 0, sizeof d);
    assert_status(nsq_writer_end_block(w, &d), NSQ_E_STATE);
    assert_diag(&d, NSQ_E_STATE, "");
    assert_status(nsq_writer_end_block(w, &d), NSQ_E_STATE);
    expect_finish(w, NSQ_E_STATE, "");
    w = fresh();
    assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_EMBEDDINGS, 0, 0, 0));
    memset(&d, 0, sizeof d);
    assert_status(nsq_writer_end_block(w, &d), NSQ_E_ARG);
    assert_diag(&d, NSQ_E_ARG, "R-TEN-11");
    expect_finish(w, NSQ_E_ARG, "R-TEN-11");
    w = fresh();
    assert_status(nsq_writer_begin_block(w, 4, 0, 0, 0), NSQ_E_ARG);
    expect_finish(w, NSQ_E_ARG, "R-DIR-4");
    w = fresh();
    assert_status(nsq_writer_begin_block(w, NSQ_BLOCK_LAYERS, 0, 1, 2), NSQ_E_ARG);
    expect_finish(w, NSQ_E_ARG, "R-DIR-4");

    /* NULL writer */
    memset(&d, 0, sizeof d);
    assert_status(nsq_writer_end_block(NULL, &d), NSQ_E_ARG);
    assert_status(nsq_writer_finish(NULL, &d), NSQ_E_ARG);
}

static void expect_bad_key(const char *key)
{
    nsq_writer *w = fresh();
    nsq_status st = nsq_writer_meta_u64(w, key, 1);
    if (st != NSQ_E_ARG) fail_msg("key \"%s\": %s", key, nsq_status_name(st));
    expect_finish(w, NSQ_E_ARG, "R-META-3");
}

static void test_misuse_metadata(void **state)
{
    (void)state;
    static const char *const bad[] = {"", "Upper.case", "a..b", ".a", "a.", "a b", "a-b", "a/b", ".", "caf\xc3\xa9"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) expect_bad_key(bad[i]);
    char longkey[200];
    memset(longkey, 'k', sizeof longkey);
    longkey[129] = 0;
    expect_bad_key(longkey);
    nsq_writer *w = fresh();
    assert_status(nsq_writer_meta_u64(w, NULL, 1), NSQ_E_ARG);
    expect_finish(w, NSQ_E_ARG, "R-META-3");
    /* 128 characters, digits and underscores are fine */
    w = fresh();
    longkey[128] = 0;
    assert_ok(nsq_writer_meta_u64(w, longkey, 1));
    assert_ok(nsq_writer_meta_u64(w, "a_1.b2.0", 1));
    nsq_writer_abort(w);
    assert_listing(misuse_dir, "");

    /* a key set twice, whatever the type */
    w = fresh();
    assert_ok(nsq_writer_meta_u64(w, "a.b", 1));
    assert_status(nsq_writer_meta_str(w, "a.b", "x", 1), NSQ_E_ARG);
    expect_finish(w, NSQ_E_ARG, "R-META-4");

    /* values */
    w = fresh();
    assert_status(nsq_writer_meta_f64(w, "a.f", NAN), NSQ_E_ARG);
    expect_finish(w, NSQ_E_ARG, "R-META-8");
    w = fresh();
    assert_status(nsq_writer_meta_f64(w, "a.f", -INFINITY), NSQ_E_ARG);
    expect_finish(w, NSQ_E_ARG, "R-META-8");
    w = fresh();
    double fa[2] = {1.0, NAN};
    assert_status(nsq_writer_meta_array(w, "a.f", NSQ_META_F64, fa, 2), NSQ_E_ARG);
    expect_finish(w, NSQ_E_ARG, "R-META-8");
    w = fresh();
    uint8_t ba[2] = {1, 2};
    assert_status(nsq_writer_meta_array(w, "a.b", NSQ_META_BOOL, ba, 2), NSQ_E_ARG);
    expect_finish(w, NSQ_E_ARG, "R-META-8");
    w = fresh();
    assert_status(nsq_writer_meta_str(w, "a.s", "\xff\xfe", 2), NSQ_E_ARG);
    expect_finish(w, NSQ_E_ARG, "R-META-7");
    w = fresh();
    assert_status(nsq_writer_meta_str(w, "a.s", "a\0b", 3), NSQ_E_ARG);
    expect_finish(w, NSQ_E_ARG, "R-META-7");
    w = fresh();
    assert_status(nsq_writer_meta_str(w, "a.s", "\xed\xa0\x80", 3), NSQ_E_ARG); /* a surrogate */
    expect_finish(w, NSQ_E_ARG, "R-META-7");
    w = fresh();
    assert_status(nsq_writer_meta_str(w, "a.s", "\xc0\xaf", 2), NSQ_E_ARG); /* overlong */
    expect_finish(w, NSQ_E_ARG, "R-META-7");
    w = fresh();
    const char *sa[2] = {"ok", "\x80"};
    assert_status(nsq_writer_meta_array(w, "a.s", NSQ_META_STRING, sa, 2), NSQ_E_ARG);
    expect_finish(w, NSQ_E_ARG, "R-META-7");
    w = fresh();
    assert_status(nsq_writer_meta_array(w, "a.x", (nsq_meta_type)7, arr_u64, 1), NSQ_E_ARG);
    expect_finish(w, NSQ_E_ARG, "R-META-9");
}

static void test_misuse_tensors(void **state)
{
    (void)state;
    uint64_t dims[2] = {2, 8}, big[2] = {2, 0};
    nsq_writer *w;
    static const char *const bad_names[] = {"has space", "", "tab\there", "del\x7f", "\xc3\xa9"};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        w = fresh();
        assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_EMBEDDINGS, 0, 0, 0));
        assert_status(nsq_writer_add_tensor(w, bad_names[i], NSQ_SCHEME_F32, 2, dims, 0, some, 64), NSQ_E_ARG);
        expect_finish(w, NSQ_E_ARG, "R-TEN-1");
    }
    char longname[300];
    memset(longname, 'n', sizeof longname);
    longname[257] = 0;
    w = fresh();
    assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_EMBEDDINGS, 0, 0, 0));
    assert_status(nsq_writer_add_tensor(w, longname, NSQ_SCHEME_F32, 2, dims, 0, some, 64), NSQ_E_ARG);
    expect_finish(w, NSQ_E_ARG, "R-TEN-1");

    struct {
        uint32_t scheme, n_dims, G;
        const uint64_t *dims;
        uint64_t size;
        nsq_status st;
        const char *rule;
    } bad[] = {
        {NSQ_SCHEME_F32, 2, 0, dims, 60, NSQ_E_ARG, "R-TEN-6"},       /* size */
        {NSQ_SCHEME_F16, 2, 0, dims, 64, NSQ_E_ARG, "R-TEN-6"},
        {NSQ_SCHEME_F32, 2, 32, dims, 64, NSQ_E_ARG, "R-TEN-6"},      /* group size on a plain scheme */
        {NSQ_SCHEME_F32, 0, 0, dims, 64, NSQ_E_ARG, "R-TEN-4"},       /* no dims */
        {NSQ_SCHEME_F32, 5, 0, dims, 64, NSQ_E_ARG, "R-TEN-4"},
        {NSQ_SCHEME_F32, 2, 0, big, 0, NSQ_E_LIMIT, "R-TEN-4"},       /* a zero dimension */
        {NSQ_SCHEME_TIERED, 1, 32, dims + 1, 64, NSQ_E_ARG, "R-TEN-7"}, /* TIERED is 2-D */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        w = fresh();
        assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_EMBEDDINGS, 0, 0, 0));
        nsq_status st = nsq_writer_add_tensor(w, "t", (nsq_scheme)bad[i].scheme, bad[i].n_dims, bad[i].dims, bad[i].G,
                                              some, bad[i].size);
        if (st != bad[i].st) fail_msg("case %zu: %s, expected %s", i, nsq_status_name(st), nsq_status_name(bad[i].st));
        expect_finish(w, bad[i].st, bad[i].rule);
    }

    /* TIERED payloads are validated as a reader would */
    float x[2 * 64];
    for (int i = 0; i < 128; i++) x[i] = (float)i / 100.0f;
    uint8_t tiers[4] = {1, 2, 3, 3}, pay[1024];
    uint64_t cnt[4] = {0, 1, 1, 2}, size = nsq_tiered_size(4, 32, cnt), td[2] = {2, 64};
    assert_ok(nsq_quantize_tiered(x, 2, 64, 32, tiers, NULL, pay, size));
    w = fresh();
    assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_EMBEDDINGS, 0, 0, 0));
    pay[10] = 1; /* tier map padding */
    assert_status(nsq_writer_add_tensor(w, "t", NSQ_SCHEME_TIERED, 2, td, 32, pay, size), NSQ_E_TENSOR);
    pay[10] = 0;
    expect_finish(w, NSQ_E_TENSOR, "R-TIER-2");
    w = fresh();
    assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_EMBEDDINGS, 0, 0, 0));
    assert_status(nsq_writer_add_tensor(w, "t", NSQ_SCHEME_TIERED, 2, td, 32, pay, size + 64), NSQ_E_TENSOR);
    expect_finish(w, NSQ_E_TENSOR, "R-TIER-3");
    w = fresh(); /* an empty TIERED payload as the block's first tensor */
    assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_EMBEDDINGS, 0, 0, 0));
    assert_status(nsq_writer_add_tensor(w, "t", NSQ_SCHEME_TIERED, 2, td, 32, NULL, 0), NSQ_E_TENSOR);
    expect_finish(w, NSQ_E_TENSOR, "R-TIER-1");
    /* an invalid group size or scheme is an argument error, never success */
    static const uint32_t bad_g[3] = {48, 0, 512};
    for (int i = 0; i < 3; i++) {
        w = fresh();
        assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_EMBEDDINGS, 0, 0, 0));
        assert_status(nsq_writer_add_tensor(w, "t", NSQ_SCHEME_TIERED, 2, td, bad_g[i], pay, size), NSQ_E_ARG);
        expect_finish(w, NSQ_E_ARG, NULL);
    }
    w = fresh();
    assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_EMBEDDINGS, 0, 0, 0));
    assert_status(nsq_writer_add_tensor(w, "t", (nsq_scheme)5, 2, dims, 0, some, 32), NSQ_E_ARG);
    expect_finish(w, NSQ_E_ARG, NULL);

    /* refinements */
    nsq_view v;
    assert_ok(nsq_view_init(NSQ_SCHEME_TIERED, 2, 64, 32, pay, size, &v, NULL));
    uint8_t codes[64];
    assert_ok(nsq_quantize_refinement(x, &v, NULL, 0, 2, codes, 64));
    w = fresh();
    assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_EMBEDDINGS, 0, 0, 0));
    assert_status(nsq_writer_add_refinement(w, 1, 2, codes, 64), NSQ_E_STATE); /* no tensor yet */
    expect_finish(w, NSQ_E_STATE, "");
    w = fresh();
    assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_EMBEDDINGS, 0, 0, 0));
    assert_ok(nsq_writer_add_tensor(w, "f", NSQ_SCHEME_F32, 2, dims, 0, some, 64));
    assert_status(nsq_writer_add_refinement(w, 1, 2, codes, 64), NSQ_E_STATE); /* not TIERED */
    expect_finish(w, NSQ_E_STATE, "");
    w = fresh();
    assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_EMBEDDINGS, 0, 0, 0));
    assert_ok(nsq_writer_add_tensor(w, "t", NSQ_SCHEME_TIERED, 2, td, 32, pay, size));
    assert_status(nsq_writer_add_refinement(w, 2, 2, codes, 64), NSQ_E_ARG); /* levels in order */
    expect_finish(w, NSQ_E_ARG, "R-DIR-10");
    w = fresh();
    assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_EMBEDDINGS, 0, 0, 0));
    assert_ok(nsq_writer_add_tensor(w, "t", NSQ_SCHEME_TIERED, 2, td, 32, pay, size));
    assert_status(nsq_writer_add_refinement(w, 1, 2, codes, 128), NSQ_E_TENSOR);
    expect_finish(w, NSQ_E_TENSOR, "R-TIER-5");
    w = fresh();
    assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_EMBEDDINGS, 0, 0, 0));
    assert_ok(nsq_writer_add_tensor(w, "t", NSQ_SCHEME_TIERED, 2, td, 32, pay, size));
    assert_status(nsq_writer_add_refinement(w, 1, 3, codes, 64), NSQ_E_ARG); /* bits must be 1, 2, 4 or 8 */
    expect_finish(w, NSQ_E_ARG, NULL);
    w = fresh();
    assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_EMBEDDINGS, 0, 0, 0));
    assert_ok(nsq_writer_add_tensor(w, "t", NSQ_SCHEME_TIERED, 2, td, 32, pay, size));
    assert_ok(nsq_writer_add_refinement(w, 1, 2, codes, 64));
    assert_ok(nsq_writer_add_tensor(w, "u", NSQ_SCHEME_F32, 2, dims, 0, some, 64));
    assert_status(nsq_writer_add_refinement(w, 2, 2, codes, 64), NSQ_E_STATE); /* the last tensor is not TIERED */
    expect_finish(w, NSQ_E_STATE, "");
}

static void test_misuse_tokenizer_importance_router(void **state)
{
    (void)state;
    nsq_writer *w;
    w = fresh();
    assert_status(nsq_writer_tokenizer(w, (nsq_tokenizer_kind)9), NSQ_E_ARG);
    expect_finish(w, NSQ_E_ARG, "R-TOK-1");
    w = fresh();
    assert_ok(nsq_writer_tokenizer_file(w, "b.json", "{}", 2));
    assert_status(nsq_writer_tokenizer_file(w, "a.json", "{}", 2), NSQ_E_ARG);
    expect_finish(w, NSQ_E_ARG, "R-TOK-5");
    w = fresh();
    assert_ok(nsq_writer_tokenizer_file(w, "a.json", "{}", 2));
    assert_status(nsq_writer_tokenizer_file(w, "a.json", "{}", 2), NSQ_E_ARG);
    expect_finish(w, NSQ_E_ARG, "R-TOK-5");
    static const char *const bad_names[] = {"a/b", "", "sp ace", "..\xc3\xa9"};
    for (size_t i = 0; i < 4; i++) {
        w = fresh();
        assert_status(nsq_writer_tokenizer_file(w, bad_names[i], "{}", 2), NSQ_E_ARG);
        expect_finish(w, NSQ_E_ARG, "R-TOK-4");
    }
    w = fresh();
    assert_status(nsq_writer_tokenizer_file(w, NULL, "{}", 2), NSQ_E_ARG);
    expect_finish(w, NSQ_E_ARG, "R-TOK-4");

    /* importance */
    float x[2 * 64], stats[64];
    for (int i = 0; i < 128; i++) x[i] = (float)i / 100.0f;
    for (int i = 0; i < 64; i++) stats[i] = 1.0f;
    uint8_t tiers[4] = {1, 2, 3, 3}, pay[1024];
    uint64_t cnt[4] = {0, 1, 1, 2}, size = nsq_tiered_size(4, 32, cnt), td[2] = {2, 64}, fd[1] = {16};
    assert_ok(nsq_quantize_tiered(x, 2, 64, 32, tiers, NULL, pay, size));
    w = fresh();
    assert_status(nsq_writer_importance_entry(w, "t", stats, 4, NULL, 0), NSQ_E_STATE);
    expect_finish(w, NSQ_E_STATE, "");
#define WITH_TENSORS(w)                                                                                 \
    do {                                                                                                \
        w = fresh();                                                                                    \
        assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_EMBEDDINGS, 0, 0, 0));                            \
        assert_ok(nsq_writer_add_tensor(w, "t", NSQ_SCHEME_TIERED, 2, td, 32, pay, size));              \
        assert_ok(nsq_writer_add_tensor(w, "f", NSQ_SCHEME_F32, 1, fd, 0, some, 64));                   \
        assert_ok(nsq_writer_end_block(w, NULL));                                                       \
        assert_ok(nsq_writer_importance(w, NSQ_IMP_MAGNITUDE, 3.0, "p"));                               \
    } while (0)
    WITH_TENSORS(w);
    assert_status(nsq_writer_importance_entry(w, "nope", stats, 4, NULL, 0), NSQ_E_NOT_FOUND);
    expect_finish(w, NSQ_E_NOT_FOUND, "R-IMP-4");
    WITH_TENSORS(w);
    assert_status(nsq_writer_importance_entry(w, NULL, stats, 4, NULL, 0), NSQ_E_NOT_FOUND);
    expect_finish(w, NSQ_E_NOT_FOUND, "R-IMP-4");
    WITH_TENSORS(w);
    assert_status(nsq_writer_importance_entry(w, "f", stats, 1, NULL, 0), NSQ_E_ARG); /* not TIERED */
    expect_finish(w, NSQ_E_ARG, "R-IMP-4");
    WITH_TENSORS(w);
    assert_ok(nsq_writer_importance_entry(w, "t", stats, 4, NULL, 0));
    assert_status(nsq_writer_importance_entry(w, "t", stats, 4, NULL, 0), NSQ_E_ARG); /* tensor order */
    expect_finish(w, NSQ_E_ARG, "R-IMP-4");
    WITH_TENSORS(w);
    assert_status(nsq_writer_importance_entry(w, "t", stats, 3, NULL, 0), NSQ_E_ARG);
    expect_finish(w, NSQ_E_ARG, "R-IMP-5");
    WITH_TENSORS(w);
    assert_status(nsq_writer_importance_entry(w, "t", NULL, 0, stats, 63), NSQ_E_ARG);
    expect_finish(w, NSQ_E_ARG, "R-IMP-5");
    WITH_TENSORS(w);
    stats[2] = -1.0f;
    assert_status(nsq_writer_importance_entry(w, "t", stats, 4, NULL, 0), NSQ_E_ARG);
    stats[2] = 1.0f;
    expect_finish(w, NSQ_E_ARG, "R-IMP-6");
    WITH_TENSORS(w);
    assert_status(nsq_writer_importance(w, NSQ_IMP_MAGNITUDE, 3.0, "again"), NSQ_E_STATE);
    expect_finish(w, NSQ_E_STATE, "");
#undef WITH_TENSORS
    w = fresh();
    assert_status(nsq_writer_importance(w, (nsq_importance_method)3, 3.0, ""), NSQ_E_ARG);
    expect_finish(w, NSQ_E_ARG, "R-IMP-1");
    w = fresh();
    assert_status(nsq_writer_importance(w, NSQ_IMP_MAGNITUDE, 33.0, ""), NSQ_E_ARG);
    expect_finish(w, NSQ_E_ARG, "R-IMP-1");
    w = fresh();
    assert_status(nsq_writer_importance(w, NSQ_IMP_MAGNITUDE, 3.0, "\xff"), NSQ_E_ARG);
    expect_finish(w, NSQ_E_ARG, "R-IMP-2");

    /* router */
    float v[64] = {0};
    uint8_t masks[4] = {2, 2, 2, 2};
    nsq_router_params p = {1, 4, 0, NSQ_ACT_IDENTITY, 4, 1.0f, masks, v, v, NULL, NULL, v, v};
    w = fresh();
    assert_ok(nsq_writer_router(w, &p));
    assert_status(nsq_writer_router(w, &p), NSQ_E_STATE);
    expect_finish(w, NSQ_E_STATE, "");
    nsq_router_params q = p;
    q.block_count = 0;
    w = fresh();
    assert_status(nsq_writer_router(w, &q), NSQ_E_ARG);
    expect_finish(w, NSQ_E_ARG, "R-RTR-2");
    q = p;
    q.hidden_dim = 2; /* w1/b1 missing */
    w = fresh();
    assert_status(nsq_writer_router(w, &q), NSQ_E_ARG);
    expect_finish(w, NSQ_E_ARG, "R-RTR-2");
    w = fresh();
    assert_status(nsq_writer_router(w, NULL), NSQ_E_ARG);
    expect_finish(w, NSQ_E_ARG, "R-RTR-2");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_mmap),
        cmocka_unit_test(test_roundtrip_pread),
        cmocka_unit_test(test_roundtrip_memory),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_router_eval_variants),
        cmocka_unit_test_setup_teardown(test_atomic_abort, tu_setup_tmpdir, tu_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_atomic_failed_finish, tu_setup_tmpdir, tu_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_atomic_replace, tu_setup_tmpdir, tu_teardown_tmpdir),
        cmocka_unit_test(test_misuse_state),
        cmocka_unit_test(test_misuse_metadata),
        cmocka_unit_test(test_misuse_tensors),
        cmocka_unit_test(test_misuse_tokenizer_importance_router),
    };
    return cmocka_run_group_tests(tests, setup_model, teardown_model);
}
