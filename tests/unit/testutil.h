/* testutil.h - helpers shared by the cmocka unit tests (tests/unit/test_*.c).
 *
 * Everything here is static and independent of the code under test where it
 * computes expected values: the half-precision reference conversions use only
 * double arithmetic, the little-endian helpers are spelled out, and the model
 * writer helper only drives the public writer API. */
#ifndef NSQ_TESTUTIL_H
#define NSQ_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nsq.h"

#define TU_UNUSED __attribute__((unused))

#if defined(__SANITIZE_ADDRESS__)
#define TU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TU_ASAN 1
#endif
#endif
#ifndef TU_ASAN
#define TU_ASAN 0
#endif

/* ---- assertions on statuses and diagnostics ---- */
#define assert_status(expr, want)                                                                             \
    do {                                                                                                      \
        nsq_status tu_got_ = (expr), tu_want_ = (want);                                                       \
        if (tu_got_ != tu_want_)                                                                              \
            fail_msg("%s:%d: %s = %s, expected %s", __FILE__, __LINE__, #expr, nsq_status_name(tu_got_),    \
                     nsq_status_name(tu_want_));                                                              \
    } while (0)

#define assert_ok(expr) assert_status((expr), NSQ_OK)

/* d->status and d->rule as given (rule NULL: not checked); message non-empty. */
#define assert_diag(d, want_status, want_rule)                                                                \
    do {                                                                                                      \
        const nsq_diag *tu_d_ = (d);                                                                          \
        const char *tu_r_ = (want_rule);                                                                      \
        if (tu_d_->status != (want_status))                                                                   \
            fail_msg("%s:%d: diag.status %s, expected %s (%s: %s)", __FILE__, __LINE__,                       \
                     nsq_status_name(tu_d_->status), nsq_status_name(want_status), tu_d_->rule,               \
                     tu_d_->message);                                                                         \
        if (tu_r_ && strcmp(tu_d_->rule, tu_r_) != 0)                                                         \
            fail_msg("%s:%d: diag.rule \"%s\", expected \"%s\" (%s)", __FILE__, __LINE__, tu_d_->rule, tu_r_, \
                     tu_d_->message);                                                                         \
        if (tu_d_->message[0] == 0) fail_msg("%s:%d: empty diag message", __FILE__, __LINE__);                \
    } while (0)

/* ---- little-endian access, written out independently of the library ---- */
static TU_UNUSED uint16_t tu_rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static TU_UNUSED uint32_t tu_rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static TU_UNUSED uint64_t tu_rd64(const uint8_t *p) { return tu_rd32(p) | (uint64_t)tu_rd32(p + 4) << 32; }
static TU_UNUSED void tu_wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static TU_UNUSED void tu_wr32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static TU_UNUSED void tu_wr64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static TU_UNUSED uint32_t tu_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static TU_UNUSED float tu_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static TU_UNUSED uint64_t tu_f64_bits(double f)
{
    uint64_t u;
    memcpy(&u, &f, 8);
    return u;
}
static TU_UNUSED uint64_t tu_pad64(uint64_t v) { return (v + 63) / 64 * 64; }

/* ---- half precision, computed with double arithmetic only ---- */

/* The exact value of a non-NaN f16 (infinities included). */
static TU_UNUSED double tu_f16_value(uint16_t h)
{
    int sign = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31) v = INFINITY;
    else if (e == 0) v = ldexp((double)m, -24);
    else v = ldexp((double)(1024 + m), e - 25);
    return sign ? -v : v;
}

/* f16 -> f32 per spec 1.8: exact for numbers; a NaN keeps sign and mantissa << 13. */
static TU_UNUSED float tu_f16_to_f32_ref(uint16_t h)
{
    if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF))
        return tu_bits_f32((uint32_t)(h & 0x8000) << 16 | 0x7F800000u | (uint32_t)(h & 0x3FF) << 13);
    return (float)tu_f16_value(h); /* exact: every f16 is an f32 */
}

/* f32 -> f16, round to nearest, ties to even, via exact double arithmetic. */
static TU_UNUSED uint16_t tu_f32_to_f16_ref(float f)
{
    uint16_t sign = (uint16_t)((tu_f32_bits(f) >> 16) & 0x8000);
    if (isnan(f)) return (uint16_t)(sign | 0x7E00);
    double a = fabs((double)f);
    /* 65504 is the largest f16 (odd mantissa); the next grid point would be
     * 2^16, so the midpoint 65520 and everything above rounds to infinity. */
    if (a >= 65520.0) return (uint16_t)(sign | 0x7C00);
    if (a < ldexp(1.0, -14)) { /* subnormal grid: multiples of 2^-24 */
        double r = nearbyint(ldexp(a, 24)); /* exact scaling; rint is RNE */
        return (uint16_t)(sign | (uint16_t)r); /* r == 1024 encodes 2^-14 */
    }
    int ex;
    frexp(a, &ex); /* a in [2^(ex-1), 2^ex) */
    int e = ex - 1;
    double r = nearbyint(ldexp(a, 10 - e)); /* in [1024, 2048] */
    return (uint16_t)(sign | (uint16_t)(((e + 15) << 10) + (int)r - 1024));
}

static TU_UNUSED int tu_f16_is_nan(uint16_t h) { return (h & 0x7C00) == 0x7C00 && (h & 0x3FF); }

/* ---- deterministic RNG: splitmix64 ---- */
typedef struct {
    uint64_t s;
} tu_rng;

static TU_UNUSED uint64_t tu_next(tu_rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static TU_UNUSED uint32_t tu_below(tu_rng *r, uint32_t n) { return (uint32_t)(tu_next(r) % n); }
/* uniform float in [lo, hi) */
static TU_UNUSED float tu_unif(tu_rng *r, float lo, float hi)
{
    double u = (double)(tu_next(r) >> 11) * 0x1p-53;
    return (float)(lo + (hi - lo) * u);
}

/* ---- files and directories ---- */
static TU_UNUSED uint8_t *tu_read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (cap - n < 65536) {
            cap = cap ? 2 * cap : 65536;
            uint8_t *p = realloc(buf, cap);
            if (!p) {
                free(buf);
                fclose(fp);
                return NULL;
            }
            buf = p;
        }
        size_t k = fread(buf + n, 1, cap - n, fp);
        n += k;
        if (k == 0) break;
    }
    int bad = ferror(fp);
    fclose(fp);
    if (bad) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* Reads a file that must exist; fails the test otherwise. */
static TU_UNUSED uint8_t *tu_must_read(const char *path, size_t *len)
{
    uint8_t *b = tu_read_file(path, len);
    if (!b) fail_msg("cannot read %s: %s", path, strerror(errno));
    return b;
}

static TU_UNUSED int tu_write_file(const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    size_t k = len ? fwrite(data, 1, len, fp) : 0;
    return (fclose(fp) != 0 || k != len) ? -1 : 0;
}

static TU_UNUSED char *tu_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* A fresh directory under $TMPDIR (or /tmp); free with tu_rmtree + free. */
static TU_UNUSED char *tu_mkdtemp(void)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    char *t = tu_join(base, "nsq-unit-XXXXXX");
    if (!mkdtemp(t)) fail_msg("mkdtemp in %s: %s", base, strerror(errno));
    return t;
}

/* Removes the plain files in dir, then dir itself (tests create no subdirectories). */
static TU_UNUSED void tu_rmtree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char *p = tu_join(dir, e->d_name);
            unlink(p);
            free(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* cmocka fixtures: a fresh temporary directory in *state, removed after the
 * test whether it passed or not. */
static TU_UNUSED int tu_setup_tmpdir(void **state)
{
    *state = tu_mkdtemp();
    return 0;
}
static TU_UNUSED int tu_teardown_tmpdir(void **state)
{
    if (*state) {
        tu_rmtree(*state);
        free(*state);
        *state = NULL;
    }
    return 0;
}

static TU_UNUSED int tu_cmp_str_(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Entries of dir (without . and ..), sorted and joined with '|', e.g. "a.nsq|b".
 * Returns a malloc'd string. */
static TU_UNUSED char *tu_list_dir(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    char *names[256];
    size_t n = 0, total = 1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        assert_true(n < 256);
        names[n] = strdup(e->d_name);
        total += strlen(e->d_name) + 1;
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof names[0], tu_cmp_str_);
    char *out = calloc(1, total);
    assert_non_null(out);
    for (size_t i = 0; i < n; i++) {
        if (i) strcat(out, "|");
        strcat(out, names[i]);
        free(names[i]);
    }
    return out;
}

/* ---- writing models ---- */

/* Values of the required metadata keys written by tu_write_required_meta()
 * (libnsq/metadata.c required_keys[]). */
#define TU_VOCAB 32u
#define TU_N_HEADS 4u
#define TU_N_KV_HEADS 2u

/* Writes every required key; skip (may be NULL) names one key to leave out. */
static TU_UNUSED nsq_status tu_write_required_meta(nsq_writer *w, uint64_t n_layers, uint64_t hidden, const char *skip)
{
#define TU_SKIP(k) (skip && strcmp(skip, (k)) == 0)
#define TU_STR(k, v) \
    if (!TU_SKIP(k) && (st = nsq_writer_meta_str(w, (k), (v), strlen(v)))) return st
#define TU_U64(k, v) \
    if (!TU_SKIP(k) && (st = nsq_writer_meta_u64(w, (k), (v)))) return st
#define TU_I64(k, v) \
    if (!TU_SKIP(k) && (st = nsq_writer_meta_i64(w, (k), (v)))) return st
#define TU_F64(k, v) \
    if (!TU_SKIP(k) && (st = nsq_writer_meta_f64(w, (k), (v)))) return st
#define TU_BOOL(k, v) \
    if (!TU_SKIP(k) && (st = nsq_writer_meta_bool(w, (k), (v)))) return st
    nsq_status st;
    TU_STR("general.architecture", "llama");
    TU_STR("model.activation", "silu");
    TU_BOOL("model.attention_bias", 0);
    TU_U64("model.context_length", 2048);
    TU_U64("model.head_dim", hidden / TU_N_HEADS);
    TU_U64("model.hidden_size", hidden);
    TU_U64("model.intermediate_size", 2 * hidden);
    TU_BOOL("model.mlp_bias", 0);
    TU_U64("model.n_heads", TU_N_HEADS);
    TU_U64("model.n_kv_heads", TU_N_KV_HEADS);
    TU_U64("model.n_layers", n_layers);
    TU_F64("model.norm.epsilon", 1e-5);
    TU_STR("model.norm.type", "rmsnorm");
    TU_STR("model.position", "rope");
    TU_F64("model.rope.scaling.factor", 1.0);
    TU_STR("model.rope.scaling.type", "none");
    TU_F64("model.rope.theta", 10000.0);
    TU_U64("model.sliding_window", 0);
    TU_BOOL("model.tied_head", 0);
    TU_U64("model.vocab_size", TU_VOCAB);
    TU_STR("provenance.converter", "unit-tests");
    TU_STR("provenance.recipe", "minimal");
    TU_STR("provenance.source", "synthetic");
    TU_BOOL("tokenizer.add_bos", 1);
    TU_I64("tokenizer.bos_id", 1);
    TU_I64("tokenizer.eos_id", 2);
    return NSQ_OK;
#undef TU_SKIP
#undef TU_STR
#undef TU_U64
#undef TU_I64
#undef TU_F64
#undef TU_BOOL
}
#define TU_N_REQUIRED_KEYS 26u

static TU_UNUSED const char tu_tokenizer_json[] = "{\"version\":\"1.0\",\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}";

/* Tokenizer kind 1 (HF JSON) with its required tokenizer.json. */
static TU_UNUSED nsq_status tu_write_tokenizer(nsq_writer *w)
{
    nsq_status st = nsq_writer_tokenizer(w, NSQ_TOK_HF_JSON);
    return st ? st : nsq_writer_tokenizer_file(w, "tokenizer.json", tu_tokenizer_json, sizeof tu_tokenizer_json - 1);
}

/* Adds an F32 tensor of the given shape holding seed + 0.25*i. */
static TU_UNUSED nsq_status tu_add_f32(nsq_writer *w, const char *name, uint32_t n_dims, const uint64_t *dims, float seed)
{
    uint64_t n = 1;
    for (uint32_t k = 0; k < n_dims; k++) n *= dims[k];
    uint8_t *p = malloc(4 * n);
    if (!p) return NSQ_E_NOMEM;
    for (uint64_t i = 0; i < n; i++) tu_wr32(p + 4 * i, tu_f32_bits(seed + 0.25f * (float)i));
    nsq_status st = nsq_writer_add_tensor(w, name, NSQ_SCHEME_F32, n_dims, dims, 0, p, 4 * n);
    free(p);
    return st;
}

/* The body of a minimal valid model, on an open writer: required metadata,
 * an HF tokenizer, an EMBEDDINGS block, one LAYERS block per layer and an
 * OUTPUT block, all F32. */
static TU_UNUSED nsq_status tu_write_minimal_body(nsq_writer *w, uint64_t n_layers, const char *skip_key)
{
    enum { HID = 8 };
    nsq_status st;
    if ((st = tu_write_required_meta(w, n_layers, HID, skip_key)) || (st = tu_write_tokenizer(w))) return st;
    uint64_t emb[2] = {TU_VOCAB, HID}, vec[1] = {HID};
    if ((st = nsq_writer_begin_block(w, NSQ_BLOCK_EMBEDDINGS, 0, 0, NSQ_COMP_NONE)) ||
        (st = tu_add_f32(w, "tok_embeddings.weight", 2, emb, 0.0f)) || (st = nsq_writer_end_block(w, NULL)))
        return st;
    for (uint64_t L = 0; L < n_layers; L++) {
        char name[64];
        snprintf(name, sizeof name, "layers.%llu.norm.weight", (unsigned long long)L);
        if ((st = nsq_writer_begin_block(w, NSQ_BLOCK_LAYERS, (uint32_t)L, 1, NSQ_COMP_NONE)) ||
            (st = tu_add_f32(w, name, 1, vec, (float)L)) || (st = nsq_writer_end_block(w, NULL)))
            return st;
    }
    if ((st = nsq_writer_begin_block(w, NSQ_BLOCK_OUTPUT, 0, 0, NSQ_COMP_NONE)) ||
        (st = tu_add_f32(w, "output.weight", 2, emb, 1.0f)) || (st = nsq_writer_end_block(w, NULL)))
        return st;
    return NSQ_OK;
}

/* Writes a complete minimal valid model to path. */
static TU_UNUSED nsq_status tu_write_minimal_model(const char *path, uint64_t n_layers, nsq_diag *diag)
{
    nsq_writer *w;
    nsq_status st = nsq_writer_open(path, &w, diag);
    if (st) return st;
    st = tu_write_minimal_body(w, n_layers, NULL);
    if (st) { /* the error is sticky: finish reports it and cleans up */
        nsq_writer_finish(w, diag);
        return st;
    }
    return nsq_writer_finish(w, diag);
}

#endif /* NSQ_TESTUTIL_H */
