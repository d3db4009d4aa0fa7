/* mkfixtures - writes the conformance set: small valid .nsq files covering
 * every storage scheme and optional section, and invalid files derived from
 * them, one per rule of spec/nsq-format.md (section "Invalid files").
 *
 *   mkfixtures OUTDIR
 *
 * Output is deterministic: the same library version writes the same bytes. */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

/* A 4-layer Llama-shaped model small enough to keep ~60 files in the repo. */
enum { HIDDEN = 32, HEADS = 2, KV_HEADS = 1, HEAD_DIM = 16, FFN = 64, VOCAB = 64, LAYERS = 4 };

static uint64_t rng_state;
static float rnd(void) /* uniform in [-1, 1), xorshift64* */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (float)((rng_state * 0x2545F4914F6CDD1Dull) >> 40) / (float)(1 << 23) - 1.0f;
}

typedef struct {
    const char *name;
    uint32_t scheme;     /* of 2-D layer matrices; embeddings/head use f16 unless F32/BF16 */
    uint32_t comp;
    uint32_t group_size; /* TIERED; for LATTICE the rotation block of the matrices with importance stats */
    uint32_t refine;     /* refinement levels on layer matrices */
    int importance, router, all_q4;
    uint32_t tok_kind;
    const char *arch;
    int e8s; /* LATTICE: the stage lists with E8S stages */
} variant;

#define UNKNOWN_ARCH "x-test-arch"

static const variant variants[] = {
    {"f32", NSQ_SCHEME_F32, NSQ_COMP_NONE, 0, 0, 0, 0, 0, NSQ_TOK_HF_JSON, "llama", 0},
    {"f16", NSQ_SCHEME_F16, NSQ_COMP_NONE, 0, 0, 0, 0, 0, NSQ_TOK_HF_JSON, "llama", 0},
    {"bf16-zstd", NSQ_SCHEME_BF16, NSQ_COMP_ZSTD, 0, 0, 0, 0, 0, NSQ_TOK_HF_JSON, "mistral", 0},
    {"tiered", NSQ_SCHEME_TIERED, NSQ_COMP_NONE, 32, 0, 0, 0, 0, NSQ_TOK_HF_JSON, "llama", 0},
    {"tiered-zstd", NSQ_SCHEME_TIERED, NSQ_COMP_ZSTD, 32, 0, 0, 0, 0, NSQ_TOK_HF_JSON, "qwen2", 0},
    {"tiered-q4-g64", NSQ_SCHEME_TIERED, NSQ_COMP_NONE, 64, 0, 0, 0, 1, NSQ_TOK_SENTENCEPIECE, "llama", 0},
    {"refined", NSQ_SCHEME_TIERED, NSQ_COMP_NONE, 32, 2, 1, 0, 0, NSQ_TOK_HF_JSON, "llama", 0},
    {"router", NSQ_SCHEME_TIERED, NSQ_COMP_NONE, 32, 2, 1, 1, 0, NSQ_TOK_HF_JSON, "llama", 0},
    {"router-zstd", NSQ_SCHEME_TIERED, NSQ_COMP_ZSTD, 32, 1, 1, 1, 0, NSQ_TOK_HF_JSON, "llama", 0},
    {"lattice", NSQ_SCHEME_LATTICE, NSQ_COMP_NONE, 32, 0, 1, 0, 0, NSQ_TOK_HF_JSON, "llama", 0},
    /* LATTICE refinement levels: each matrix's first stage in its base, the next in level 1, the rest in level 2 */
    {"lattice-levels", NSQ_SCHEME_LATTICE, NSQ_COMP_NONE, 32, 2, 1, 0, 0, NSQ_TOK_HF_JSON, "llama", 0},
    /* E8S stages (required bit 3): in payloads only, and in payloads and refinement parts */
    {"lattice-e8s", NSQ_SCHEME_LATTICE, NSQ_COMP_NONE, 32, 0, 1, 0, 0, NSQ_TOK_HF_JSON, "llama", 1},
    {"lattice-e8s-levels", NSQ_SCHEME_LATTICE, NSQ_COMP_ZSTD, 32, 2, 1, 0, 0, NSQ_TOK_HF_JSON, "llama", 1},
    {"gpt2-tok", NSQ_SCHEME_F16, NSQ_COMP_NONE, 0, 0, 0, 0, 0, NSQ_TOK_GPT2_BPE, "gpt2", 0},
    /* values no runtime knows: a valid container all the same (R-META-12) */
    {"valid-unknown-architecture", NSQ_SCHEME_F16, NSQ_COMP_NONE, 0, 0, 0, 0, 0, NSQ_TOK_HF_JSON, UNKNOWN_ARCH, 0},
};

#define CHECK(x)                                                                                                      \
    do {                                                                                                              \
        nsq_status st_ = (x);                                                                                         \
        if (st_) {                                                                                                    \
            fprintf(stderr, "mkfixtures: %s:%d: %s\n", __FILE__, __LINE__, nsq_status_name(st_));                    \
            exit(1);                                                                                                  \
        }                                                                                                             \
    } while (0)

static void meta_str(nsq_writer *w, const char *key, const char *value)
{
    CHECK(nsq_writer_meta_str(w, key, value, strlen(value)));
}

static void write_metadata(nsq_writer *w, const variant *v)
{
    int gpt2 = strcmp(v->arch, "gpt2") == 0, unknown = strcmp(v->arch, UNKNOWN_ARCH) == 0;
    meta_str(w, "general.architecture", v->arch);
    meta_str(w, "general.name", "nsq conformance model");
    meta_str(w, "model.activation", unknown ? "x-test-activation" : gpt2 ? "gelu_tanh" : "silu");
    CHECK(nsq_writer_meta_bool(w, "model.attention_bias", strcmp(v->arch, "qwen2") == 0 || gpt2));
    CHECK(nsq_writer_meta_u64(w, "model.context_length", 128));
    CHECK(nsq_writer_meta_u64(w, "model.head_dim", HEAD_DIM));
    CHECK(nsq_writer_meta_u64(w, "model.hidden_size", HIDDEN));
    CHECK(nsq_writer_meta_u64(w, "model.intermediate_size", FFN));
    CHECK(nsq_writer_meta_bool(w, "model.mlp_bias", gpt2));
    CHECK(nsq_writer_meta_u64(w, "model.n_heads", HEADS));
    CHECK(nsq_writer_meta_u64(w, "model.n_kv_heads", KV_HEADS));
    CHECK(nsq_writer_meta_u64(w, "model.n_layers", LAYERS));
    CHECK(nsq_writer_meta_f64(w, "model.norm.epsilon", 1e-5));
    meta_str(w, "model.norm.type", unknown ? "x-test-norm" : gpt2 ? "layernorm" : "rmsnorm");
    meta_str(w, "model.position", unknown ? "x-test-position" : gpt2 ? "learned" : "rope");
    CHECK(nsq_writer_meta_f64(w, "model.rope.scaling.factor", 1.0));
    meta_str(w, "model.rope.scaling.type", unknown ? "x-test-scaling" : "none");
    CHECK(nsq_writer_meta_f64(w, "model.rope.theta", 10000.0));
    CHECK(nsq_writer_meta_u64(w, "model.sliding_window", strcmp(v->arch, "mistral") == 0 ? 64 : 0));
    CHECK(nsq_writer_meta_bool(w, "model.tied_head", 0));
    CHECK(nsq_writer_meta_u64(w, "model.vocab_size", VOCAB));
    meta_str(w, "provenance.converter", "mkfixtures");
    meta_str(w, "provenance.recipe", v->name);
    meta_str(w, "provenance.source", "synthetic/conformance");
    CHECK(nsq_writer_meta_bool(w, "tokenizer.add_bos", !gpt2));
    CHECK(nsq_writer_meta_i64(w, "tokenizer.bos_id", gpt2 ? -1 : 1));
    CHECK(nsq_writer_meta_i64(w, "tokenizer.eos_id", 2));
    if (gpt2) { /* one array of every element type */
        uint64_t u[3] = {1, 2, UINT64_MAX};
        int64_t i[2] = {-5, INT64_MAX};
        double f[2] = {0.5, -1e300};
        uint8_t b[4] = {1, 0, 0, 1};
        const char *s[3] = {"a", "", "\xc3\xa9t\xc3\xa9"};
        CHECK(nsq_writer_meta_array(w, "test.array.bool", NSQ_META_BOOL, b, 4));
        CHECK(nsq_writer_meta_array(w, "test.array.f64", NSQ_META_F64, f, 2));
        CHECK(nsq_writer_meta_array(w, "test.array.i64", NSQ_META_I64, i, 2));
        CHECK(nsq_writer_meta_array(w, "test.array.string", NSQ_META_STRING, s, 3));
        CHECK(nsq_writer_meta_array(w, "test.array.u64", NSQ_META_U64, u, 3));
        CHECK(nsq_writer_meta_array(w, "test.array.empty", NSQ_META_U64, NULL, 0));
    }
}

static void write_tokenizer(nsq_writer *w, const variant *v)
{
    static const char json[] = "{\"version\":\"1.0\",\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}\n";
    static const char vocab[] = "{\"a\":0,\"b\":1}\n", merges[] = "#version: 0.2\na b\n";
    static const uint8_t sp[] = {0x0a, 0x07, 0x0a, 0x03, 0x3c, 0x73, 0x3e, 0x15, 0x00};
    CHECK(nsq_writer_tokenizer(w, (nsq_tokenizer_kind)v->tok_kind));
    if (v->tok_kind == NSQ_TOK_HF_JSON) {
        CHECK(nsq_writer_tokenizer_file(w, "tokenizer.json", json, sizeof json - 1));
    } else if (v->tok_kind == NSQ_TOK_GPT2_BPE) {
        CHECK(nsq_writer_tokenizer_file(w, "merges.txt", merges, sizeof merges - 1));
        CHECK(nsq_writer_tokenizer_file(w, "vocab.json", vocab, sizeof vocab - 1));
    } else {
        CHECK(nsq_writer_tokenizer_file(w, "tokenizer.model", sp, sizeof sp));
    }
}

/* Tiers by group magnitude: the largest 10% at Q8, the next 20% at Q4, the
 * rest at Q2, with group 0 kept at F16 so every tier occurs. */
static void choose_tiers(const float *x, uint64_t ng, uint32_t G, int all_q4, uint8_t *tiers, float *score)
{
    for (uint64_t g = 0; g < ng; g++) {
        double s = 0;
        for (uint32_t j = 0; j < G; j++) s += fabsf(x[g * G + j]);
        score[g] = (float)(s / G);
    }
    for (uint64_t g = 0; g < ng; g++) {
        uint64_t above = 0;
        for (uint64_t k = 0; k < ng; k++) above += score[k] > score[g] || (score[k] == score[g] && k < g);
        tiers[g] = all_q4 ? NSQ_TIER_Q4 : above < ng / 10 ? NSQ_TIER_Q8 : above < 3 * ng / 10 ? NSQ_TIER_Q4 : NSQ_TIER_Q2;
    }
    if (!all_q4) tiers[0] = NSQ_TIER_F16;
}

static void add_tiered(nsq_writer *w, const variant *v, const char *name, const float *x, uint64_t rows, uint64_t cols)
{
    uint32_t G = cols % v->group_size ? 32 : v->group_size;
    uint64_t ng = rows * cols / G, n[4] = {0, 0, 0, 0}, dims[2] = {rows, cols};
    uint8_t *tiers = malloc(ng);
    float *score = malloc(ng * sizeof *score);
    choose_tiers(x, ng, G, v->all_q4, tiers, score);
    for (uint64_t g = 0; g < ng; g++) n[tiers[g]]++;
    uint64_t size = nsq_tiered_size(ng, G, n);
    uint8_t *payload = malloc(size);
    CHECK(nsq_quantize_tiered(x, rows, cols, G, tiers, NULL, payload, size));
    CHECK(nsq_writer_add_tensor(w, name, NSQ_SCHEME_TIERED, 2, dims, G, payload, size));
    nsq_view view;
    nsq_refine_view refs[2];
    CHECK(nsq_view_init(NSQ_SCHEME_TIERED, rows, cols, G, payload, size, &view, NULL));
    uint8_t *codes[2] = {NULL, NULL};
    for (uint32_t l = 0; l < v->refine; l++) {
        uint64_t rs = nsq_refine_size(ng - n[0], G, 2);
        codes[l] = malloc(rs);
        CHECK(nsq_quantize_refinement(x, &view, refs, l, 2, codes[l], rs));
        CHECK(nsq_refine_view_init(&view, 2, codes[l], rs, &refs[l], NULL));
        CHECK(nsq_writer_add_refinement(w, l + 1, 2, codes[l], rs));
    }
    free(codes[0]);
    free(codes[1]);
    free(payload);
    free(tiers);
    free(score);
}

/* ---- LATTICE: a plain stage-by-stage encoder (spec 9.12, informative) ---- */

static uint64_t pad64(uint64_t v) { return nsq__align_up(v, 64); }

/* The E8 code whose values are nearest to y: for each shift and magnitude
 * vector, the signs of y, with the cheapest coordinate flipped when their
 * count has the wrong parity. */
static uint16_t e8_nearest(const double *y)
{
    const uint8_t (*A)[8] = nsq_lattice_e8_table();
    double best = INFINITY;
    uint16_t code = 0;
    for (uint32_t shift = 0; shift < 2; shift++)
        for (uint32_t i = 0; i < 256; i++) {
            double cost = 0, flip_cost = INFINITY;
            uint32_t neg = 0, sum = 0, flip = 0;
            for (uint32_t k = 0; k < 8; k++) {
                double a = y[k] - (shift ? -0.25 : 0.25), m = fabs(a), h = A[i][k] / 2.0;
                sum += A[i][k];
                neg |= (uint32_t)(a < 0) << k;
                cost += (m - h) * (m - h);
                if (4 * m * h < flip_cost) flip_cost = 4 * m * h, flip = k;
            }
            if ((uint32_t)__builtin_popcount(neg) % 2 != sum / 2 % 2) neg ^= 1u << flip, cost += flip_cost;
            if (cost < best) best = cost, code = (uint16_t)(i | (neg & 0x7Fu) << 8 | shift << 15);
        }
    return code;
}

/* The E8S code nearest to res at scale d, by trying all 256. */
static uint8_t e8s_nearest(const double *res, float d)
{
    double best = INFINITY;
    uint8_t code = 0;
    for (uint32_t c = 0; c < 256; c++) {
        int8_t v4[8];
        double dist = 0;
        nsq_lattice_e8s_value((uint8_t)c, v4);
        for (int k = 0; k < 8; k++) dist += (res[k] - d * v4[k] / 4.0) * (res[k] - d * v4[k] / 4.0);
        if (dist < best) best = dist, code = (uint8_t)c;
    }
    return code;
}

/* Row r of W' = W R^T in double: signs, Hadamard transform, 1/sqrt(B). */
static void rotate_row(const float *x, const uint8_t *signs, uint64_t cols, uint32_t B, double *out)
{
    for (uint64_t j = 0; j < cols; j++) out[j] = (signs[j / 8] >> (j % 8) & 1 ? -1.0 : 1.0) * x[j];
    for (uint64_t b0 = 0; b0 < cols; b0 += B)
        for (uint32_t h = 1; h < B; h *= 2)
            for (uint32_t i = 0; i < B; i++)
                if (!(i & h)) {
                    double a = out[b0 + i], c = out[b0 + i + h];
                    out[b0 + i] = a + c, out[b0 + i + h] = a - c;
                }
    for (uint64_t j = 0; j < cols; j++) out[j] /= sqrt((double)B);
}

/* Codes one stage of row r, block b: scale and codes of the residual
 * target - acc, and acc advanced as a decoder computes it. */
static void code_stage(uint32_t kind, int first, const double *target, float *acc, uint32_t B, uint8_t *scale,
                       uint8_t *codes, uint64_t j0)
{
    double mx = 0, mean = 0, res[16384];
    for (uint32_t i = 0; i < B; i++) {
        res[i] = target[i] - (first ? 0 : acc[i]);
        mx = fmax(mx, fabs(res[i]));
        mean += fabs(res[i]) / B;
    }
    uint16_t h = nsq_f32_to_f16((float)(kind == NSQ_LAT_E8 ? mx / 3.75 : kind == NSQ_LAT_SIGN ? mean
                                        : kind == NSQ_LAT_E8S ? 1.5 * mean : mx / 127));
    float d = nsq_f16_to_f32(h), v[8];
    nsq__wr16(scale, h);
    for (uint32_t g = 0; g < B / 8; g++) {
        uint64_t j = j0 + 8 * g;
        if (kind == NSQ_LAT_E8) {
            double y[8];
            int8_t v4[8];
            for (int k = 0; k < 8; k++) y[k] = d > 0 ? res[8 * g + k] / d : 0;
            uint16_t c = e8_nearest(y);
            nsq__wr16(codes + 2 * (j / 8), c);
            nsq_lattice_e8_value(c, v4);
            for (int k = 0; k < 8; k++) v[k] = (float)v4[k] * 0.25f;
        }
        if (kind == NSQ_LAT_E8S) {
            codes[j / 8] = e8s_nearest(res + 8 * g, d);
            int8_t v4[8];
            nsq_lattice_e8s_value(codes[j / 8], v4);
            for (int k = 0; k < 8; k++) v[k] = (float)v4[k] * 0.25f;
        }
        for (int k = 0; k < 8 && kind == NSQ_LAT_SIGN; k++) {
            codes[j / 8] |= (uint8_t)((res[8 * g + k] < 0) << k);
            v[k] = res[8 * g + k] < 0 ? -1.0f : 1.0f;
        }
        for (int k = 0; k < 8 && kind == NSQ_LAT_INT8; k++) {
            double q = d > 0 ? nearbyint(res[8 * g + k] / d) : 0;
            codes[j + k] = (uint8_t)(int8_t)(q < -128 ? -128 : q > 127 ? 127 : q);
            v[k] = (float)(int8_t)codes[j + k];
        }
        for (int k = 0; k < 8; k++) acc[8 * g + k] = first ? d * v[k] : acc[8 * g + k] + d * v[k];
    }
}

/* Stage lists and rotation blocks the LATTICE fixture cycles through, so that
 * it holds every kind, 1 to 4 stages, and blocks that are and are not powers
 * of 4. */
static const uint32_t lattice_stages[][5] = {{1, NSQ_LAT_E8},
                                             {2, NSQ_LAT_E8, NSQ_LAT_SIGN},
                                             {3, NSQ_LAT_E8, NSQ_LAT_E8, NSQ_LAT_INT8},
                                             {1, NSQ_LAT_INT8},
                                             {4, NSQ_LAT_SIGN, NSQ_LAT_E8, NSQ_LAT_E8, NSQ_LAT_SIGN},
                                             {2, NSQ_LAT_E8, NSQ_LAT_E8}};
static const uint32_t lattice_e8s_stages[][5] = {{1, NSQ_LAT_E8S},
                                                 {2, NSQ_LAT_E8, NSQ_LAT_E8S},
                                                 {3, NSQ_LAT_E8, NSQ_LAT_E8S, NSQ_LAT_E8S},
                                                 {4, NSQ_LAT_E8S, NSQ_LAT_E8, NSQ_LAT_INT8, NSQ_LAT_E8S},
                                                 {2, NSQ_LAT_E8S, NSQ_LAT_SIGN},
                                                 {3, NSQ_LAT_E8, NSQ_LAT_E8, NSQ_LAT_E8S}};
static const uint32_t lattice_blocks[5] = {8, 32, 16, 64, 128};
static uint32_t lattice_count;

static void add_lattice(nsq_writer *w, const variant *v, const char *name, const float *x, uint64_t rows, uint64_t cols)
{
    const uint32_t(*list)[5] = v->e8s ? lattice_e8s_stages : lattice_stages;
    uint32_t k = lattice_count++, S = list[k % 6][0];
    const uint32_t *kinds = list[k % 6] + 1;
    uint32_t B = strstr(name, "down_proj") ? v->group_size : lattice_blocks[k % 5];
    if (B > cols) B = (uint32_t)cols;
    uint64_t size = nsq_lattice_payload_size(rows, cols, B, S, kinds), nb = cols / B, dims[2] = {rows, cols};
    uint8_t *p = calloc(1, size);
    double *target = malloc(cols * sizeof *target);
    float *acc = malloc(cols * sizeof *acc);
    p[0] = (uint8_t)S;
    for (uint32_t s = 0; s < S; s++) p[1 + s] = (uint8_t)kinds[s];
    for (uint64_t i = 0; i < cols / 8; i++) p[64 + i] = (uint8_t)((rnd() + 1.0f) * 127.5f);
    for (uint64_t r = 0; r < rows; r++) {
        rotate_row(x + r * cols, p + 64, cols, B, target);
        uint64_t at = 64 + pad64(cols / 8);
        for (uint32_t s = 0; s < S; s++) {
            uint64_t codes = at + pad64(2 * rows * nb), row_bytes = cols * nsq_lattice_kind_bits(kinds[s]) / 8;
            for (uint64_t b = 0; b < nb; b++)
                code_stage(kinds[s], s == 0, target + b * B, acc + b * B, B, p + at + 2 * (r * nb + b),
                           p + codes + r * row_bytes, b * B);
            at = codes + pad64(rows * row_bytes);
        }
    }
    if (!v->refine || S == 1) {
        CHECK(nsq_writer_add_tensor(w, name, NSQ_SCHEME_LATTICE, 2, dims, B, p, size));
    } else { /* the stages lie one after the other: the base is a prefix, each level a slice */
        uint64_t base = nsq_lattice_payload_size(rows, cols, B, 1, kinds), two = nsq_lattice_payload_size(rows, cols, B, 2, kinds);
        p[0] = 1;
        memset(p + 2, 0, 3);
        CHECK(nsq_writer_add_tensor(w, name, NSQ_SCHEME_LATTICE, 2, dims, B, p, base));
        CHECK(nsq_writer_add_lattice_refinement(w, 1, 1, kinds + 1, p + base, two - base));
        if (S > 2) CHECK(nsq_writer_add_lattice_refinement(w, 2, S - 2, kinds + 2, p + two, size - two));
    }
    free(p);
    free(target);
    free(acc);
}

static void add_dense(nsq_writer *w, uint32_t scheme, const char *name, const float *x, uint32_t n_dims,
                      const uint64_t *dims)
{
    uint64_t n = 1;
    for (uint32_t k = 0; k < n_dims; k++) n *= dims[k];
    uint64_t es = scheme == NSQ_SCHEME_F32 ? 4 : 2;
    uint8_t *p = malloc(n * es);
    for (uint64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        if (scheme == NSQ_SCHEME_F32) nsq__wr32(p + 4 * i, u);
        else if (scheme == NSQ_SCHEME_F16) nsq__wr16(p + 2 * i, nsq_f32_to_f16(x[i]));
        else nsq__wr16(p + 2 * i, (uint16_t)((u + 0x7FFF + ((u >> 16) & 1)) >> 16));
    }
    CHECK(nsq_writer_add_tensor(w, name, (nsq_scheme)scheme, n_dims, dims, 0, p, n * es));
    free(p);
}

/* A weight matrix (or vector when rows == 0) of random values around `centre`. */
static void add_weight(nsq_writer *w, const variant *v, const char *name, uint64_t rows, uint64_t cols, float centre,
                       float spread)
{
    uint64_t n = (rows ? rows : 1) * cols;
    float *x = malloc(n * sizeof *x);
    for (uint64_t i = 0; i < n; i++) x[i] = centre + spread * rnd();
    uint64_t dims[2] = {rows, cols};
    if (!rows) add_dense(w, NSQ_SCHEME_F32, name, x, 1, dims + 1);
    else if (v->scheme == NSQ_SCHEME_TIERED) add_tiered(w, v, name, x, rows, cols);
    else if (v->scheme == NSQ_SCHEME_LATTICE) add_lattice(w, v, name, x, rows, cols);
    else add_dense(w, v->scheme, name, x, 2, dims);
    free(x);
}

static void write_layer(nsq_writer *w, const variant *v, int L)
{
    static const struct { const char *name; uint64_t rows, cols; } mats[] = {
        {"self_attn.q_proj.weight", HEADS * HEAD_DIM, HIDDEN}, {"self_attn.k_proj.weight", KV_HEADS * HEAD_DIM, HIDDEN},
        {"self_attn.v_proj.weight", KV_HEADS * HEAD_DIM, HIDDEN}, {"self_attn.o_proj.weight", HIDDEN, HEADS * HEAD_DIM},
        {"mlp.gate_proj.weight", FFN, HIDDEN}, {"mlp.up_proj.weight", FFN, HIDDEN}, {"mlp.down_proj.weight", HIDDEN, FFN}};
    char name[128];
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", L);
    add_weight(w, v, name, 0, HIDDEN, 1.0f, 0.1f);
    if (L == 0) { /* 32 bytes: leaves padding before the next tensor */
        snprintf(name, sizeof name, "model.layers.%d.self_attn.rotary_emb.inv_freq", L);
        add_weight(w, v, name, 0, HEAD_DIM / 2, 0.5f, 0.5f);
    }
    for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) {
        snprintf(name, sizeof name, "model.layers.%d.%s", L, mats[i].name);
        add_weight(w, v, name, mats[i].rows, mats[i].cols, 0.0f, 0.2f);
    }
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", L);
    add_weight(w, v, name, 0, HIDDEN, 1.0f, 0.1f);
}

static void write_router(nsq_writer *w, const variant *v)
{
    enum { H = 8, B = 5 };
    static float mean[HIDDEN], scale[HIDDEN], w1[H * HIDDEN], b1[H], w2[3 * B * H], b2[3 * B];
    for (int i = 0; i < HIDDEN; i++) {
        mean[i] = 0.01f * rnd();
        scale[i] = 1.0f + 0.5f * rnd();
    }
    for (int i = 0; i < H * HIDDEN; i++) w1[i] = rnd();
    for (int i = 0; i < H; i++) b1[i] = 0.1f * rnd();
    for (int i = 0; i < 3 * B * H; i++) w2[i] = rnd();
    for (int i = 0; i < 3 * B; i++) b2[i] = 0.1f * rnd();
    uint8_t full = v->refine ? NSQ_ROUTE_FULL : 0;
    uint8_t masks[B] = {NSQ_ROUTE_BASE, NSQ_ROUTE_BASE | full, NSQ_ROUTE_SKIP | NSQ_ROUTE_BASE | full,
                        NSQ_ROUTE_SKIP | NSQ_ROUTE_BASE, NSQ_ROUTE_BASE};
    nsq_router_params p = {1, HIDDEN, H, NSQ_ACT_RELU, B, 0.7f, masks, mean, scale, w1, b1, w2, b2};
    CHECK(nsq_writer_router(w, &p));
}

static void write_importance(nsq_writer *w, const variant *v)
{
    CHECK(nsq_writer_importance(w, NSQ_IMP_MAGNITUDE, 3.0, "group mean |w|; no calibration data"));
    for (int L = 0; L < LAYERS; L++) {
        char name[128];
        snprintf(name, sizeof name, "model.layers.%d.mlp.down_proj.weight", L);
        uint64_t ng = HIDDEN * FFN / v->group_size;
        float gs[HIDDEN * FFN / 32], cs[FFN];
        for (uint64_t g = 0; g < ng; g++) gs[g] = 0.1f + 0.05f * rnd();
        for (int c = 0; c < FFN; c++) cs[c] = 1.0f + rnd();
        CHECK(nsq_writer_importance_entry(w, name, gs, ng, L == 1 ? NULL : cs, L == 1 ? 0 : FFN));
    }
}

static void write_variant(const char *dir, const variant *v)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.nsq", dir, v->name);
    rng_state = 0x9E3779B97F4A7C15ull;
    lattice_count = 0;
    nsq_writer *w;
    CHECK(nsq_writer_open(path, &w, NULL));
    write_metadata(w, v);
    write_tokenizer(w, v);
    variant head = *v; /* embeddings and head are never refined */
    head.refine = 0;
    head.scheme = v->scheme == NSQ_SCHEME_TIERED || v->scheme == NSQ_SCHEME_LATTICE ? NSQ_SCHEME_F16 : v->scheme;
    CHECK(nsq_writer_begin_block(w, NSQ_BLOCK_EMBEDDINGS, 0, 0, (nsq_compression)v->comp));
    add_weight(w, &head, "model.embed_tokens.weight", VOCAB, HIDDEN, 0.0f, 0.5f);
    CHECK(nsq_writer_end_block(w, NULL));
    CHECK(nsq_writer_begin_block(w, NSQ_BLOCK_LAYERS, 0, 1, (nsq_compression)v->comp));
    write_layer(w, v, 0);
    CHECK(nsq_writer_end_block(w, NULL));
    CHECK(nsq_writer_begin_block(w, NSQ_BLOCK_LAYERS, 1, 2, (nsq_compression)v->comp));
    write_layer(w, v, 1);
    write_layer(w, v, 2);
    CHECK(nsq_writer_end_block(w, NULL));
    CHECK(nsq_writer_begin_block(w, NSQ_BLOCK_LAYERS, 3, 1, (nsq_compression)v->comp));
    write_layer(w, v, 3);
    CHECK(nsq_writer_end_block(w, NULL));
    CHECK(nsq_writer_begin_block(w, NSQ_BLOCK_OUTPUT, 0, 0, (nsq_compression)v->comp));
    add_weight(w, &head, "model.norm.weight", 0, HIDDEN, 1.0f, 0.1f);
    head.scheme = v->scheme;
    head.all_q4 = 1;
    add_weight(w, &head, "lm_head.weight", VOCAB, HIDDEN, 0.0f, 0.5f);
    CHECK(nsq_writer_end_block(w, NULL));
    if (v->importance) write_importance(w, v);
    if (v->router) write_router(w, v);
    nsq_diag d;
    if (nsq_writer_finish(w, &d)) {
        fprintf(stderr, "mkfixtures: %s: %s %s\n", path, d.rule, d.message);
        exit(1);
    }
}

/* ---- invalid and derived files: patches applied to a valid file ---- */
typedef enum { A_ABS, A_TABLE, A_SECTION, A_META_KEY, A_META_TYPE, A_BLOCKREC, A_REFREC, A_TREC, A_TFIELD, A_BDATA,
               A_TDATA, A_TPARAM, A_IMPENTRY0, A_END } anchor;
typedef enum { OP_NONE, OP_SET, OP_ADD, OP_XOR, OP_APPEND, OP_TRUNC, OP_DUPREC, OP_INSERT } patch_op;
enum { F_SECT = 1, F_HDR = 2, F_SIZE = 4, F_BLK = 8 }; /* reseal steps; F_BLK takes the block in .blk */

typedef struct {
    anchor at;
    int arg;           /* index or kind, by anchor */
    const char *key;   /* metadata key or tensor name */
    int64_t delta;
    patch_op op;
    int width;
    uint64_t value;
} patch;

typedef struct {
    const char *name;   /* output file stem */
    const char *base;   /* variant it is derived from */
    const char *status; /* expected status name; "NSQ_OK" for a valid file */
    const char *rule;
    unsigned fix;
    int blk;
    patch p[3];
} mutation;

#define P(...) {__VA_ARGS__}
#define ROUTER "router"
#define LAT "lattice"
#define LAT_T "model.layers.0.self_attn.k_proj.weight" /* 16 x 32, B = 32, stages E8, SIGN (lattice-levels: SIGN in level 1) */
#define LATL "lattice-levels"
#define LATE "lattice-e8s"            /* LAT_T: E8, E8S */
#define LATEL "lattice-e8s-levels"    /* LAT_T: E8, E8S in level 1 */
static const mutation mutations[] = {
    /* valid: what readers must accept */
    {"valid-future-minor", ROUTER, "NSQ_OK", "", F_HDR, 0,
     {P(A_ABS, 0, 0, 10, OP_SET, 2, NSQ_FORMAT_MINOR + 1), P(A_ABS, 0, 0, 100, OP_SET, 1, 0x5A)}},
    {"valid-unknown-optional-flag", ROUTER, "NSQ_OK", "", F_HDR, 0, {P(A_ABS, 0, 0, 24, OP_XOR, 8, 1ull << 40)}},
    {"valid-unknown-section", ROUTER, "NSQ_OK", "", F_HDR, 0,
     {P(A_TABLE, 3, 0, 0, OP_SET, 4, 99), P(A_ABS, 0, 0, 24, OP_XOR, 8, NSQ_OPT_IMPORTANCE)}},
    /* header */
    {"R-HDR-1", ROUTER, "NSQ_E_MAGIC", "R-HDR-1", 0, 0, {P(A_ABS, 0, 0, 1, OP_SET, 1, 'X')}},
    {"R-HDR-2", ROUTER, "NSQ_E_VERSION", "R-HDR-2", 0, 0, {P(A_ABS, 0, 0, 8, OP_SET, 2, 2)}},
    {"R-HDR-3", ROUTER, "NSQ_E_FORMAT", "R-HDR-3", 0, 0, {P(A_ABS, 0, 0, 12, OP_SET, 4, 256)}},
    {"R-HDR-4", ROUTER, "NSQ_E_UNSUPPORTED", "R-HDR-4", 0, 0, {P(A_ABS, 0, 0, 16, OP_XOR, 8, 1u << 5)}},
    {"R-HDR-5", ROUTER, "NSQ_E_TRUNCATED", "R-HDR-5", 0, 0, {P(A_ABS, 0, 0, 32, OP_ADD, 8, 1)}},
    {"R-HDR-5-truncated", ROUTER, "NSQ_E_TRUNCATED", "R-HDR-5", 0, 0, {P(A_END, 0, 0, 0, OP_TRUNC, 0, 100)}},
    {"R-HDR-6", ROUTER, "NSQ_E_LIMIT", "R-HDR-6", 0, 0, {P(A_ABS, 0, 0, 48, OP_SET, 4, 2)}},
    {"R-HDR-7", ROUTER, "NSQ_E_FORMAT", "R-HDR-7", 0, 0, {P(A_ABS, 0, 0, 52, OP_SET, 4, 40)}},
    {"R-HDR-8", ROUTER, "NSQ_E_RANGE", "R-HDR-8", 0, 0, {P(A_ABS, 0, 0, 40, OP_ADD, 8, 4)}},
    {"R-HDR-9", ROUTER, "NSQ_E_RESERVED", "R-HDR-9", F_HDR, 0, {P(A_ABS, 0, 0, 100, OP_SET, 1, 1)}},
    {"R-HDR-10", ROUTER, "NSQ_E_CHECKSUM", "R-HDR-10", 0, 0, {P(A_ABS, 0, 0, 56, OP_XOR, 1, 1)}},
    {"R-HDR-11", ROUTER, "NSQ_E_FEATURE", "R-HDR-11", F_HDR, 0, {P(A_ABS, 0, 0, 24, OP_XOR, 8, NSQ_OPT_ROUTER)}},
    {"R-HDR-11-lattice", LAT, "NSQ_E_FEATURE", "R-HDR-11", F_HDR, 0, {P(A_ABS, 0, 0, 16, OP_XOR, 8, NSQ_REQ_LATTICE)}},
    {"R-HDR-11-lattice-absent", ROUTER, "NSQ_E_FEATURE", "R-HDR-11", F_HDR, 0,
     {P(A_ABS, 0, 0, 16, OP_XOR, 8, NSQ_REQ_LATTICE)}},
    {"R-HDR-11-lattice-levels", LATL, "NSQ_E_FEATURE", "R-HDR-11", F_HDR, 0,
     {P(A_ABS, 0, 0, 16, OP_XOR, 8, NSQ_REQ_LATTICE_LEVELS)}},
    {"R-HDR-11-lattice-levels-absent", LAT, "NSQ_E_FEATURE", "R-HDR-11", F_HDR, 0,
     {P(A_ABS, 0, 0, 16, OP_XOR, 8, NSQ_REQ_LATTICE_LEVELS)}},
    /* bit 3: seen at open in refinement parts, in payloads when they are read, absent by reading every block */
    {"R-HDR-11-lattice-e8s", LATEL, "NSQ_E_FEATURE", "R-HDR-11", F_HDR, 0, {P(A_ABS, 0, 0, 16, OP_XOR, 8, NSQ_REQ_LATTICE_E8S)}},
    {"R-HDR-11-lattice-e8s-part", LATL, "NSQ_E_FEATURE", "R-HDR-11", F_SECT | F_HDR, 0,
     {P(A_TFIELD, 0, LAT_T, 49, OP_SET, 1, NSQ_LAT_E8S)}},
    {"R-HDR-11-lattice-e8s-payload", LATE, "NSQ_E_FEATURE", "R-HDR-11", F_HDR, 0,
     {P(A_ABS, 0, 0, 16, OP_XOR, 8, NSQ_REQ_LATTICE_E8S)}},
    {"R-HDR-11-lattice-e8s-absent", LAT, "NSQ_E_FEATURE", "R-HDR-11", F_HDR, 0,
     {P(A_ABS, 0, 0, 16, OP_XOR, 8, NSQ_REQ_LATTICE_E8S)}},
    /* section table */
    {"R-SEC-1", ROUTER, "NSQ_E_RESERVED", "R-SEC-1", F_HDR, 0, {P(A_TABLE, 0, 0, 4, OP_SET, 4, 1)}},
    {"R-SEC-2", ROUTER, "NSQ_E_FORMAT", "R-SEC-2", F_HDR, 0, {P(A_TABLE, 1, 0, 0, OP_SET, 4, 1)}},
    {"R-SEC-3", ROUTER, "NSQ_E_LIMIT", "R-SEC-3", F_HDR, 0, {P(A_TABLE, 0, 0, 16, OP_SET, 8, 0)}},
    {"R-SEC-4", ROUTER, "NSQ_E_RANGE", "R-SEC-4", F_HDR, 0, {P(A_TABLE, 0, 0, 8, OP_ADD, 8, 1)}},
    {"R-SEC-5", ROUTER, "NSQ_E_RANGE", "R-SEC-5", F_HDR, 0, {P(A_TABLE, 1, 0, 8, OP_SET, 8, 4096)}},
    {"R-SEC-6", ROUTER, "NSQ_E_FORMAT", "R-SEC-6", F_HDR, 0, {P(A_TABLE, 1, 0, 0, OP_SET, 4, 99)}},
    {"R-SEC-7", ROUTER, "NSQ_E_CHECKSUM", "R-SEC-7", 0, 0, {P(A_SECTION, 1, 0, 10, OP_XOR, 1, 1)}},
    /* layout */
    {"R-LAY-1", ROUTER, "NSQ_E_LAYOUT", "R-LAY-1", F_SECT | F_HDR, 0,
     {P(A_TABLE, 3, 0, 0, OP_SET, 4, 99), P(A_ABS, 0, 0, 24, OP_XOR, 8, NSQ_OPT_IMPORTANCE),
      P(A_TABLE, 3, 0, 16, OP_ADD, 8, (uint64_t)-8)}},
    {"R-LAY-2", ROUTER, "NSQ_E_LAYOUT", "R-LAY-2", 0, 0, {P(A_ABS, 0, 0, 200, OP_SET, 1, 1)}},
    {"R-LAY-3", ROUTER, "NSQ_E_LAYOUT", "R-LAY-3", F_SIZE | F_HDR, 0, {P(A_END, 0, 0, 0, OP_APPEND, 0, 8)}},
    /* metadata */
    {"R-META-1", ROUTER, "NSQ_E_LIMIT", "R-META-1", F_SECT | F_HDR, 0, {P(A_SECTION, 1, 0, 0, OP_SET, 4, 0)}},
    {"R-META-1-huge-count", ROUTER, "NSQ_E_LIMIT", "R-META-1", F_SECT | F_HDR, 0, {P(A_SECTION, 1, 0, 0, OP_SET, 4, 60000)}},
    {"R-META-2", ROUTER, "NSQ_E_METADATA", "R-META-2", F_SECT | F_HDR, 0, {P(A_SECTION, 1, 0, 0, OP_ADD, 4, 1)}},
    {"R-META-3", ROUTER, "NSQ_E_METADATA", "R-META-3", F_SECT | F_HDR, 0,
     {P(A_META_KEY, 0, "general.architecture", 0, OP_SET, 1, 'G')}},
    {"R-META-4", ROUTER, "NSQ_E_METADATA", "R-META-4", F_SECT | F_HDR, 0,
     {P(A_META_KEY, 0, "general.architecture", 0, OP_SET, 1, 'z')}},
    {"R-META-5", ROUTER, "NSQ_E_METADATA", "R-META-5", F_SECT | F_HDR, 0,
     {P(A_META_TYPE, 0, "provenance.source", 1, OP_ADD, 4, 1000)}},
    {"R-META-6", ROUTER, "NSQ_E_LIMIT", "R-META-6", F_SECT | F_HDR, 0,
     {P(A_META_TYPE, 0, "provenance.source", 1, OP_SET, 4, 0x7FFFFFFF)}},
    {"R-META-7", ROUTER, "NSQ_E_METADATA", "R-META-7", F_SECT | F_HDR, 0,
     {P(A_META_TYPE, 0, "provenance.source", 5, OP_SET, 1, 0xFF)}},
    {"R-META-8", ROUTER, "NSQ_E_METADATA", "R-META-8", F_SECT | F_HDR, 0,
     {P(A_META_TYPE, 0, "model.tied_head", 1, OP_SET, 1, 2)}},
    {"R-META-9", ROUTER, "NSQ_E_METADATA", "R-META-9", F_SECT | F_HDR, 0,
     {P(A_META_TYPE, 0, "general.architecture", 0, OP_SET, 1, 7)}},
    {"R-META-10", ROUTER, "NSQ_E_METADATA", "R-META-10", F_SECT | F_HDR, 0, {P(A_SECTION, 1, 0, 0, OP_ADD, 4, (uint64_t)-1)}},
    {"R-META-11", ROUTER, "NSQ_E_METADATA", "R-META-11", F_SECT | F_HDR, 0,
     {P(A_META_KEY, 0, "model.vocab_size", 15, OP_SET, 1, 'f')}},
    {"R-META-12", ROUTER, "NSQ_E_METADATA", "R-META-12", F_SECT | F_HDR, 0,
     {P(A_META_TYPE, 0, "model.vocab_size", 1, OP_SET, 8, 0)}},
    /* tokenizer */
    {"R-TOK-1", ROUTER, "NSQ_E_TOKENIZER", "R-TOK-1", F_SECT | F_HDR, 0, {P(A_SECTION, 2, 0, 0, OP_SET, 4, 7)}},
    {"R-TOK-2", ROUTER, "NSQ_E_LIMIT", "R-TOK-2", F_SECT | F_HDR, 0, {P(A_SECTION, 2, 0, 4, OP_SET, 4, 0)}},
    {"R-TOK-3", ROUTER, "NSQ_E_TOKENIZER", "R-TOK-3", F_SECT | F_HDR, 0, {P(A_SECTION, 2, 0, 24, OP_ADD, 8, 1u << 20)}},
    {"R-TOK-4", ROUTER, "NSQ_E_TOKENIZER", "R-TOK-4", F_SECT | F_HDR, 0, {P(A_SECTION, 2, 0, 10, OP_SET, 1, '/')}},
    {"R-TOK-5", "gpt2-tok", "NSQ_E_TOKENIZER", "R-TOK-5", F_SECT | F_HDR, 0, {P(A_SECTION, 2, 0, 10, OP_SET, 1, 'z')}},
    {"R-TOK-6", "gpt2-tok", "NSQ_E_TOKENIZER", "R-TOK-6", F_SECT | F_HDR, 0, {P(A_SECTION, 2, 0, 4, OP_SET, 4, 1)}},
    {"R-TOK-7", ROUTER, "NSQ_E_TOKENIZER", "R-TOK-7", F_SECT | F_HDR, 0, {P(A_SECTION, 2, 0, 23, OP_SET, 1, 'm')}},
    /* directory */
    {"R-DIR-1", ROUTER, "NSQ_E_DIRECTORY", "R-DIR-1", F_SECT | F_HDR, 0, {P(A_TABLE, 2, 0, 16, OP_SET, 8, 8)}},
    {"R-DIR-2", ROUTER, "NSQ_E_LIMIT", "R-DIR-2", F_SECT | F_HDR, 0, {P(A_SECTION, 3, 0, 0, OP_SET, 4, 1)}},
    {"R-DIR-2-huge-count", ROUTER, "NSQ_E_LIMIT", "R-DIR-2", F_SECT | F_HDR, 0, {P(A_SECTION, 3, 0, 8, OP_SET, 4, 1000000)}},
    {"R-DIR-3", ROUTER, "NSQ_E_RESERVED", "R-DIR-3", F_SECT | F_HDR, 0, {P(A_SECTION, 3, 0, 12, OP_SET, 4, 1)}},
    {"R-DIR-4", ROUTER, "NSQ_E_DIRECTORY", "R-DIR-4", F_SECT | F_HDR, 0, {P(A_BLOCKREC, 0, 0, 0, OP_SET, 4, 2)}},
    {"R-DIR-5", ROUTER, "NSQ_E_DIRECTORY", "R-DIR-5", F_SECT | F_HDR, 0, {P(A_BLOCKREC, 1, 0, 12, OP_SET, 4, 5)}},
    {"R-DIR-6", ROUTER, "NSQ_E_RANGE", "R-DIR-6", F_SECT | F_HDR, 0, {P(A_BLOCKREC, 1, 0, 16, OP_ADD, 8, 1)}},
    {"R-DIR-7", ROUTER, "NSQ_E_LIMIT", "R-DIR-7", F_SECT | F_HDR, 0, {P(A_BLOCKREC, 1, 0, 32, OP_SET, 8, 0)}},
    {"R-DIR-8", ROUTER, "NSQ_E_DIRECTORY", "R-DIR-8", F_SECT | F_HDR, 0, {P(A_BLOCKREC, 1, 0, 32, OP_ADD, 8, 64)}},
    {"R-DIR-9", ROUTER, "NSQ_E_DIRECTORY", "R-DIR-9", F_SECT | F_HDR, 0, {P(A_BLOCKREC, 2, 0, 4, OP_SET, 4, 2)}},
    {"R-DIR-10", ROUTER, "NSQ_E_DIRECTORY", "R-DIR-10", F_SECT | F_HDR, 0, {P(A_REFREC, 1, 0, 4, OP_SET, 4, 3)}},
    {"R-DIR-11", ROUTER, "NSQ_E_DIRECTORY", "R-DIR-11", F_SECT | F_HDR, 0, {P(A_SECTION, 3, 0, 8, OP_ADD, 4, 1)}},
    {"R-DIR-12", ROUTER, "NSQ_E_DIRECTORY", "R-DIR-12", F_SECT | F_HDR, 0, {P(A_SECTION, 3, 0, 8, OP_ADD, 4, (uint64_t)-1)}},
    /* tensor records */
    {"R-TEN-1", ROUTER, "NSQ_E_DIRECTORY", "R-TEN-1", F_SECT | F_HDR, 0, {P(A_TREC, 0, "lm_head.weight", 2, OP_SET, 1, ' ')}},
    {"R-TEN-2", ROUTER, "NSQ_E_DIRECTORY", "R-TEN-2", F_SECT | F_HDR, 0, {P(A_TFIELD, 0, "lm_head.weight", 0, OP_SET, 1, 5)}},
    {"R-TEN-3", ROUTER, "NSQ_E_DIRECTORY", "R-TEN-3", F_SECT | F_HDR, 0,
     {P(A_TFIELD, 0, "model.norm.weight", 2, OP_SET, 4, 99)}},
    {"R-TEN-4", ROUTER, "NSQ_E_LIMIT", "R-TEN-4", F_SECT | F_HDR, 0, {P(A_TFIELD, 0, "model.norm.weight", 16, OP_SET, 8, 0)}},
    {"R-TEN-5", ROUTER, "NSQ_E_DIRECTORY", "R-TEN-5", F_SECT | F_HDR, 0,
     {P(A_TFIELD, 0, "model.norm.weight", 6, OP_SET, 4, 32)}},
    {"R-TEN-6", ROUTER, "NSQ_E_DIRECTORY", "R-TEN-6", F_SECT | F_HDR, 0,
     {P(A_TFIELD, 0, "model.norm.weight", 32, OP_ADD, 8, 4)}},
    {"R-TEN-7", ROUTER, "NSQ_E_DIRECTORY", "R-TEN-7", F_SECT | F_HDR, 0, {P(A_TFIELD, 0, "lm_head.weight", 6, OP_SET, 4, 48)}},
    /* LATTICE records: a refinement part of no stages inserted where the block has no levels, a size no stage
     * list has, B not a power of two; with levels, a part one byte too long and one of an unknown kind */
    {"R-TEN-8-lattice", LAT, "NSQ_E_DIRECTORY", "R-TEN-8", F_SECT | F_HDR, 0,
     {P(A_TFIELD, 0, LAT_T, 10, OP_SET, 1, 1), P(A_TFIELD, 0, LAT_T, 48, OP_INSERT, 0, 24)}},
    {"R-TEN-9-lattice-size", LATL, "NSQ_E_DIRECTORY", "R-TEN-9", F_SECT | F_HDR, 0, {P(A_TFIELD, 0, LAT_T, 64, OP_ADD, 8, 1)}},
    {"R-TEN-9-lattice-kind", LATL, "NSQ_E_DIRECTORY", "R-TEN-9", F_SECT | F_HDR, 0, {P(A_TFIELD, 0, LAT_T, 49, OP_SET, 1, 5)}},
    {"R-TEN-6-lattice", LAT, "NSQ_E_DIRECTORY", "R-TEN-6", F_SECT | F_HDR, 0, {P(A_TFIELD, 0, LAT_T, 40, OP_ADD, 8, 8)}},
    {"R-TEN-7-lattice", LAT, "NSQ_E_DIRECTORY", "R-TEN-7", F_SECT | F_HDR, 0, {P(A_TFIELD, 0, LAT_T, 6, OP_SET, 4, 12)}},
    {"R-TEN-8", ROUTER, "NSQ_E_DIRECTORY", "R-TEN-8", F_SECT | F_HDR, 0,
     {P(A_REFREC, 5, 0, 0, OP_SET, 4, 4), P(A_REFREC, 5, 0, 4, OP_SET, 4, 1)}},
    {"R-TEN-9", ROUTER, "NSQ_E_DIRECTORY", "R-TEN-9", F_SECT | F_HDR, 0,
     {P(A_TFIELD, 0, "model.layers.0.mlp.down_proj.weight", 48, OP_SET, 1, 3)}},
    {"R-TEN-10", ROUTER, "NSQ_E_DIRECTORY", "R-TEN-10", F_SECT | F_HDR, 0,
     {P(A_TFIELD, 0, "model.norm.weight", 24, OP_ADD, 8, 64)}},
    {"R-TEN-11", "tiered-zstd", "NSQ_E_DIRECTORY", "R-TEN-11", F_SECT | F_HDR, 0, {P(A_BLOCKREC, 1, 0, 32, OP_ADD, 8, 64)}},
    {"R-TEN-12", ROUTER, "NSQ_E_DIRECTORY", "R-TEN-12", F_SECT | F_HDR, 0,
     {P(A_TREC, 0, "model.embed_tokens.weight", 0, OP_DUPREC, 0, 0), P(A_SECTION, 3, 0, 8, OP_ADD, 4, 1)}},
    {"R-TEN-13", ROUTER, "NSQ_E_DIRECTORY", "R-TEN-13", F_SECT | F_HDR, 0,
     {P(A_TREC, 0, "model.layers.0.self_attn.k_proj.weight", 27, OP_SET, 1, 'q')}},
    /* block contents */
    {"R-TIER-2", ROUTER, "NSQ_E_TENSOR", "R-TIER-2", F_BLK, 1,
     {P(A_TDATA, 0, "model.layers.0.self_attn.q_proj.weight", 8, OP_SET, 1, 1)}},
    {"R-TIER-3", ROUTER, "NSQ_E_TENSOR", "R-TIER-3", F_BLK, 1,
     {P(A_TDATA, 0, "model.layers.0.self_attn.q_proj.weight", 0, OP_XOR, 1, 1)}},
    {"R-TIER-4", ROUTER, "NSQ_E_TENSOR", "R-TIER-4", F_BLK, 1,
     {P(A_TPARAM, NSQ_TIER_Q8, "model.layers.0.self_attn.q_proj.weight", 0, OP_SET, 2, 0x7E00)}},
    {"R-LAT-1", LAT, "NSQ_E_TENSOR", "R-LAT-1", F_BLK, 1, {P(A_TDATA, 0, LAT_T, 0, OP_SET, 1, 0)}},
    {"R-LAT-1-kind", LAT, "NSQ_E_TENSOR", "R-LAT-1", F_BLK, 1, {P(A_TDATA, 0, LAT_T, 2, OP_SET, 1, 5)}},
    {"R-LAT-2", LAT, "NSQ_E_TENSOR", "R-LAT-2", F_BLK, 1, {P(A_TDATA, 0, LAT_T, 5, OP_SET, 1, 1)}},
    {"R-LAT-2-kind", LAT, "NSQ_E_TENSOR", "R-LAT-2", F_BLK, 1, {P(A_TDATA, 0, LAT_T, 3, OP_SET, 1, NSQ_LAT_E8)}},
    {"R-LAT-3", LAT, "NSQ_E_TENSOR", "R-LAT-3", F_BLK, 1, {P(A_TDATA, 0, LAT_T, 2, OP_SET, 1, NSQ_LAT_INT8)}},
    {"R-LAT-4", LAT, "NSQ_E_TENSOR", "R-LAT-4", F_BLK, 1, {P(A_TDATA, 0, LAT_T, 64 + 4, OP_SET, 1, 1)}},
    {"R-LAT-5", LAT, "NSQ_E_TENSOR", "R-LAT-5", F_BLK, 1, {P(A_TDATA, 0, LAT_T, 128, OP_SET, 2, 0x7C00)}},
    {"R-BLK-1", ROUTER, "NSQ_E_CHECKSUM", "R-BLK-1", 0, 0, {P(A_BDATA, 2, 0, 100, OP_XOR, 1, 1)}},
    {"R-BLK-2", "tiered-zstd", "NSQ_E_COMPRESSION", "R-BLK-2", F_BLK, 1, {P(A_BDATA, 1, 0, 0, OP_XOR, 1, 1)}},
    {"R-BLK-3", ROUTER, "NSQ_E_BLOCK", "R-BLK-3", F_BLK, 1,
     {P(A_TDATA, 0, "model.layers.0.self_attn.rotary_emb.inv_freq", 32, OP_SET, 1, 1)}},
    /* importance */
    {"R-IMP-1", ROUTER, "NSQ_E_IMPORTANCE", "R-IMP-1", F_SECT | F_HDR, 0, {P(A_SECTION, 4, 0, 0, OP_SET, 4, 9)}},
    {"R-IMP-2", ROUTER, "NSQ_E_LIMIT", "R-IMP-2", F_SECT | F_HDR, 0, {P(A_SECTION, 4, 0, 16, OP_SET, 4, (1u << 20) + 1)}},
    {"R-IMP-3", ROUTER, "NSQ_E_IMPORTANCE", "R-IMP-3", F_SECT | F_HDR, 0, {P(A_SECTION, 4, 0, 4, OP_ADD, 4, 1)}},
    {"R-IMP-4", ROUTER, "NSQ_E_IMPORTANCE", "R-IMP-4", F_SECT | F_HDR, 0, {P(A_IMPENTRY0, 0, 0, 0, OP_SET, 4, 0)}},
    {"R-IMP-5", ROUTER, "NSQ_E_IMPORTANCE", "R-IMP-5", F_SECT | F_HDR, 0, {P(A_IMPENTRY0, 0, 0, 8, OP_ADD, 8, 1)}},
    {"R-IMP-5-lattice", LAT, "NSQ_E_IMPORTANCE", "R-IMP-5", F_SECT | F_HDR, 0, {P(A_IMPENTRY0, 0, 0, 8, OP_ADD, 8, 1)}},
    {"R-IMP-6", ROUTER, "NSQ_E_IMPORTANCE", "R-IMP-6", F_SECT | F_HDR, 0,
     {P(A_IMPENTRY0, 0, 0, 24, OP_SET, 4, 0xBF800000u)}},
    {"R-IMP-7", ROUTER, "NSQ_E_IMPORTANCE", "R-IMP-7", F_SECT | F_HDR, 0, {P(A_SECTION, 4, 0, 4, OP_ADD, 4, (uint64_t)-1)}},
    /* router */
    {"R-RTR-1", ROUTER, "NSQ_E_RESERVED", "R-RTR-1", F_SECT | F_HDR, 0, {P(A_SECTION, 5, 0, 24, OP_SET, 1, 1)}},
    {"R-RTR-2", ROUTER, "NSQ_E_ROUTER", "R-RTR-2", F_SECT | F_HDR, 0, {P(A_SECTION, 5, 0, 20, OP_SET, 4, 0)}},
    {"R-RTR-3", ROUTER, "NSQ_E_ROUTER", "R-RTR-3", F_SECT | F_HDR, 0, {P(A_SECTION, 5, 0, 32, OP_SET, 1, 0)}},
    {"R-RTR-3-edge-skip", ROUTER, "NSQ_E_ROUTER", "R-RTR-3", F_SECT | F_HDR, 0, {P(A_SECTION, 5, 0, 32, OP_SET, 1, 3)}},
    {"R-RTR-4", ROUTER, "NSQ_E_ROUTER", "R-RTR-4", F_SECT | F_HDR, 0, {P(A_SECTION, 5, 0, 8, OP_SET, 4, 7)}},
    {"R-RTR-5", ROUTER, "NSQ_E_ROUTER", "R-RTR-5", F_SECT | F_HDR, 0, {P(A_SECTION, 5, 0, 37, OP_SET, 1, 1)}},
    {"R-RTR-6", ROUTER, "NSQ_E_ROUTER", "R-RTR-6", F_SECT | F_HDR, 0, {P(A_SECTION, 5, 0, 40, OP_SET, 4, 0x7FC00000u)}},
};

typedef struct {
    uint8_t *p;
    size_t len;
} file_buf;

static void die(const char *what)
{
    fprintf(stderr, "mkfixtures: %s\n", what);
    exit(1);
}

static file_buf slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) die(path);
    fseek(fp, 0, SEEK_END);
    file_buf b = {NULL, (size_t)ftell(fp)};
    rewind(fp);
    b.p = malloc(b.len + 8192); /* room for appended bytes */
    if (fread(b.p, 1, b.len, fp) != b.len) die(path);
    fclose(fp);
    return b;
}

static uint64_t section_off(const nsq_file *f, uint32_t kind)
{
    nsq_section s;
    for (uint32_t i = 0; !nsq_section_at(f, i, &s); i++)
        if (s.kind == kind) return s.offset;
    die("section missing in base file");
    return 0;
}

/* Offset of the metadata entry for key: its key bytes, or its type byte. */
static uint64_t meta_at(const file_buf *b, const nsq_file *f, const char *key, int type_byte)
{
    uint64_t p = section_off(f, 1), n = nsq__rd32(b->p + p);
    p += 4;
    for (uint64_t i = 0; i < n; i++) {
        uint16_t kl = nsq__rd16(b->p + p);
        int hit = kl == strlen(key) && memcmp(b->p + p + 2, key, kl) == 0;
        if (hit) return type_byte ? p + 2 + kl : p + 2;
        uint32_t t = b->p[p + 2 + kl];
        p += 3 + kl;
        uint32_t count = 1;
        if (t & NSQ_META_ARRAY) {
            count = nsq__rd32(b->p + p);
            p += 4;
        }
        for (uint32_t e = 0; e < count; e++)
            p += (t & 0x7F) == NSQ_META_STRING ? 4 + nsq__rd32(b->p + p) : (t & 0x7F) == NSQ_META_BOOL ? 1 : 8;
    }
    die(key);
    return 0;
}

/* Offset of tensor name's directory record (its name_len field). */
static uint64_t tensor_rec(const file_buf *b, const nsq_file *f, const char *name)
{
    nsq_info in;
    nsq_get_info(f, &in);
    uint64_t p = section_off(f, 3) + 16 + 64ull * in.block_count + 48ull * in.refinement_count;
    for (uint32_t i = 0; i < in.tensor_count; i++) {
        uint16_t len = nsq__rd16(b->p + p);
        if (len == strlen(name) && memcmp(b->p + p + 2, name, len) == 0) return p;
        const uint8_t *r = b->p + p + 2 + len;
        p += 2 + len + 16 + 8ull * r[1] + 16 + 24ull * r[10];
    }
    die(name);
    return 0;
}

static uint64_t tensor_data(const nsq_file *f, const char *name, int tier, uint64_t *param)
{
    uint32_t i;
    nsq_tensor t;
    nsq_block blk;
    if (nsq_tensor_find(f, name, &i) || nsq_tensor_at(f, i, &t) || nsq_block_at(f, t.block, &blk)) die(name);
    if (param) {
        nsq_loaded l;
        nsq_view v;
        nsq_tiered tv;
        CHECK(nsq_block_load(f, t.block, &l, NULL));
        CHECK(nsq_tensor_view(f, i, &l, &v, NULL));
        CHECK(nsq_tiered_view(&v, &tv));
        *param = (uint64_t)(tv.params[tier] - v.data);
        nsq_loaded_free(&l);
    }
    return blk.offset + t.offset;
}

static uint64_t resolve(const file_buf *b, const nsq_file *f, const patch *p)
{
    nsq_info in;
    nsq_get_info(f, &in);
    uint64_t dir = section_off(f, 3), extra = 0;
    nsq_block blk;
    switch (p->at) {
    case A_ABS: return 0;
    case A_TABLE: return nsq__rd64(b->p + 40) + 32ull * (uint64_t)p->arg;
    case A_SECTION: return section_off(f, (uint32_t)p->arg);
    case A_META_KEY: return meta_at(b, f, p->key, 0);
    case A_META_TYPE: return meta_at(b, f, p->key, 1);
    case A_BLOCKREC: return dir + 16 + 64ull * (uint64_t)p->arg;
    case A_REFREC: return dir + 16 + 64ull * in.block_count + 48ull * (uint64_t)p->arg;
    case A_TREC: return tensor_rec(b, f, p->key);
    case A_TFIELD: return tensor_rec(b, f, p->key) + 2 + strlen(p->key);
    case A_BDATA: return nsq_block_at(f, (uint32_t)p->arg, &blk) ? 0 : blk.offset;
    case A_TDATA: return tensor_data(f, p->key, 0, NULL);
    case A_TPARAM: return tensor_data(f, p->key, p->arg, &extra) + extra;
    case A_IMPENTRY0: {
        uint64_t s = section_off(f, 4);
        return s + 20 + nsq__rd32(b->p + s + 16);
    }
    case A_END: return b->len;
    }
    return 0;
}

/* Inserts a copy of the record at rec (len bytes) at the end of the directory,
 * shifting the later sections and the table, keeping 8-byte alignment. */
static void dup_record(file_buf *b, const nsq_file *f, uint64_t rec)
{
    uint16_t nl = nsq__rd16(b->p + rec);
    const uint8_t *r = b->p + rec + 2 + nl;
    uint64_t rl = 2 + nl + 16 + 8ull * r[1] + 16 + 24ull * r[10];
    nsq_section s;
    uint32_t di = 0;
    while (!nsq_section_at(f, di, &s) && s.kind != 3) di++;
    uint64_t end = s.offset + s.size, next = nsq__align_up(end, 8), nend = end + rl, nnext = nsq__align_up(nend, 8);
    uint64_t shift = nnext - next;
    uint8_t *copy = malloc(rl);
    memcpy(copy, b->p + rec, rl);
    memmove(b->p + nnext, b->p + next, b->len - next);
    memcpy(b->p + end, copy, rl);
    memset(b->p + nend, 0, nnext - nend);
    free(copy);
    b->len += shift;
    uint64_t toff = nsq__rd64(b->p + 40) + shift;
    nsq__wr64(b->p + 40, toff);
    nsq__wr64(b->p + 32, b->len);
    for (uint32_t i = 0; i < nsq__rd32(b->p + 48); i++) {
        uint8_t *e = b->p + toff + 32ull * i;
        if (nsq__rd64(e + 8) > s.offset) nsq__wr64(e + 8, nsq__rd64(e + 8) + shift);
    }
    nsq__wr64(b->p + toff + 32ull * di + 16, s.size + rl);
}

/* Inserts n zero bytes (a multiple of 8) at at, inside the directory,
 * shifting the later sections and the table. */
static void insert_zeros(file_buf *b, const nsq_file *f, uint64_t at, uint64_t n)
{
    nsq_section s;
    uint32_t di = 0;
    while (!nsq_section_at(f, di, &s) && s.kind != 3) di++;
    memmove(b->p + at + n, b->p + at, b->len - at);
    memset(b->p + at, 0, n);
    b->len += n;
    uint64_t toff = nsq__rd64(b->p + 40) + n;
    nsq__wr64(b->p + 40, toff);
    nsq__wr64(b->p + 32, b->len);
    for (uint32_t i = 0; i < nsq__rd32(b->p + 48); i++) {
        uint8_t *e = b->p + toff + 32ull * i;
        if (nsq__rd64(e + 8) > s.offset) nsq__wr64(e + 8, nsq__rd64(e + 8) + n);
    }
    nsq__wr64(b->p + toff + 32ull * di + 16, s.size + n);
}

static void apply(file_buf *b, const nsq_file *f, const patch *p)
{
    uint64_t at = resolve(b, f, p) + (uint64_t)p->delta, v = 0;
    if (p->op == OP_TRUNC) {
        b->len -= p->value;
        return;
    }
    if (p->op == OP_APPEND) {
        memset(b->p + b->len, 0, p->value);
        b->len += p->value;
        return;
    }
    if (p->op == OP_DUPREC) {
        dup_record(b, f, at);
        return;
    }
    if (p->op == OP_INSERT) {
        insert_zeros(b, f, at, p->value);
        return;
    }
    if (at + (uint64_t)p->width > b->len) die("patch outside the file");
    for (int i = 0; i < p->width; i++) v |= (uint64_t)b->p[at + i] << (8 * i);
    v = p->op == OP_SET ? p->value : p->op == OP_ADD ? v + p->value : v ^ p->value;
    for (int i = 0; i < p->width; i++) b->p[at + i] = (uint8_t)(v >> (8 * i));
}

/* Recomputes the checksums a mutation should not trip, so the intended rule fires. */
static void reseal(file_buf *b, const nsq_file *f, unsigned fix, int blk)
{
    if (fix & F_SIZE) nsq__wr64(b->p + 32, b->len);
    uint64_t toff = nsq__rd64(b->p + 40), n = nsq__rd32(b->p + 48), dir = 0, dsize = 0;
    if (fix & F_BLK) {
        nsq_info in;
        nsq_get_info(f, &in);
        uint8_t *rec = b->p + section_off(f, 3) + 16 + 64ull * (uint64_t)blk;
        nsq__wr64(rec + 40, XXH3_64bits(b->p + nsq__rd64(rec + 16), nsq__rd64(rec + 24)));
        fix |= F_SECT | F_HDR;
    }
    for (uint64_t i = 0; i < n && toff + 32 * (i + 1) <= b->len; i++) {
        uint8_t *e = b->p + toff + 32 * i;
        uint64_t off = nsq__rd64(e + 8), size = nsq__rd64(e + 16);
        if (off > b->len || size > b->len - off) continue;
        if (fix & F_SECT) nsq__wr64(e + 24, XXH3_64bits(b->p + off, size));
        if (nsq__rd32(e) == 3) {
            dir = off;
            dsize = size;
        }
    }
    if (!(fix & F_HDR)) return;
    uint8_t h[NSQ__HEADER_SIZE];
    memcpy(h, b->p, sizeof h);
    memset(h + 56, 0, 8);
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, h, sizeof h);
    XXH3_64bits_update(&st, b->p + toff, 32 * n);
    XXH3_64bits_update(&st, b->p + dir, dsize);
    nsq__wr64(b->p + 56, XXH3_64bits_digest(&st));
}

static void write_mutation(const char *dir, const mutation *m, FILE *manifest)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.nsq", dir, m->base);
    file_buf b = slurp(path);
    nsq_file *f;
    CHECK(nsq_open_memory(b.p, b.len, 0, &f, NULL));
    file_buf out = {malloc(b.len + 8192), b.len};
    memcpy(out.p, b.p, b.len);
    for (int i = 0; i < 3 && m->p[i].op != OP_NONE; i++) apply(&out, f, &m->p[i]);
    reseal(&out, f, m->fix, m->blk);
    nsq_close(f);
    int valid = strcmp(m->status, "NSQ_OK") == 0;
    snprintf(path, sizeof path, "%s/%s%s.nsq", dir, valid ? "" : "invalid/", m->name);
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(out.p, 1, out.len, fp) != out.len || fclose(fp)) die(path);
    fprintf(manifest, "%s%s.nsq %s %s\n", valid ? "" : "invalid/", m->name, m->status, valid ? "-" : m->rule);
    free(out.p);
    free(b.p);
}

int main(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: mkfixtures OUTDIR\nWrites the nsq conformance files into OUTDIR.\n");
        return 2;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/invalid", argv[1]);
    mkdir(argv[1], 0755);
    mkdir(path, 0755);
    /* The format version the set tests; the suite checks it against the spec. */
    snprintf(path, sizeof path, "%s/VERSION", argv[1]);
    FILE *version = fopen(path, "w");
    if (!version || fprintf(version, "%d.%d\n", NSQ_FORMAT_MAJOR, NSQ_FORMAT_MINOR) < 0 || fclose(version)) die(path);
    snprintf(path, sizeof path, "%s/MANIFEST", argv[1]);
    FILE *manifest = fopen(path, "w");
    if (!manifest) die(path);
    fprintf(manifest, "# file expected-status expected-rule (format %d.%d)\n", NSQ_FORMAT_MAJOR, NSQ_FORMAT_MINOR);
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        write_variant(argv[1], &variants[i]);
        fprintf(manifest, "%s.nsq NSQ_OK -\n", variants[i].name);
    }
    for (size_t i = 0; i < sizeof mutations / sizeof mutations[0]; i++) write_mutation(argv[1], &mutations[i], manifest);
    return fclose(manifest) ? 1 : 0;
}
