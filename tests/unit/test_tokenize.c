/* test_tokenize.c - the tokenizer API against Hugging Face `tokenizers`.
 *
 * fixtures/tokenizers/vectors.json holds 328 strings and, for three
 * tokenizers, the ids `tokenizers` gives them (add_special_tokens=False):
 * tiny-llama (SentencePiece-style BPE with byte fallback), tiny-gpt2 (byte-level
 * BPE from tokenizer.json) and gpt2-real (the real GPT-2 vocab.json +
 * merges.txt). Every string must match exactly, decode back (tiny-llama's
 * decoder drops one leading space) and stream back through nsq_token_bytes.
 * Small hand-written tokenizer.json files check the pipeline's parts whose
 * behaviour the tiny models do not reach, and malformed ones a clean error. */
#include "testutil.h"

#include <jansson.h>
#include <pthread.h>

#define VECTORS "fixtures/tokenizers/vectors.json"
#define LLAMA_DIR "fixtures/models/tiny-llama"
#define GPT2_DIR "fixtures/models/tiny-gpt2"
#define REAL_DIR "fixtures/tokenizers/gpt2"

enum { T_LLAMA, T_TINY_GPT2, T_REAL_GPT2, N_TOK };
static const char *tok_names[N_TOK] = {"tiny-llama", "tiny-gpt2", "gpt2-real"};

typedef struct {
    json_t *vectors;
    nsq_tokenizer *tok[N_TOK];
} fixture;

/*-************************************
 *  Helpers
 **************************************/
/* A tokenizer from files read from dir (names as the section holds them). */
static nsq_tokenizer *load_dir(nsq_tokenizer_kind kind, const char *dir, const char *const *names, uint32_t n)
{
    uint8_t *data[4];
    uint64_t sizes[4];
    for (uint32_t i = 0; i < n; i++) {
        char *p = tu_join(dir, names[i]);
        size_t len;
        data[i] = tu_must_read(p, &len);
        sizes[i] = len;
        free(p);
    }
    nsq_tokenizer *t = NULL;
    nsq_diag d;
    memset(&d, 0, sizeof d);
    nsq_status st = nsq_tokenizer_from_files(kind, n, names, (const uint8_t *const *)data, sizes, &t, &d);
    if (st) fail_msg("%s: %s: %s", dir, nsq_status_name(st), d.message);
    for (uint32_t i = 0; i < n; i++) free(data[i]);
    return t;
}

/* JSON written with ' for " (none of the tests' tokens needs an apostrophe). */
static char *q(const char *s)
{
    char *p = strdup(s);
    for (char *c = p; *c; c++)
        if (*c == '\'') *c = '"';
    return p;
}

/* A tokenizer from one tokenizer.json text (in q() form); want: the status. */
static nsq_tokenizer *from_json_st(const char *json_q, nsq_status want, nsq_diag *d)
{
    char *j = q(json_q);
    const char *name = "tokenizer.json";
    const uint8_t *data = (const uint8_t *)j;
    uint64_t size = strlen(j);
    nsq_tokenizer *t = (nsq_tokenizer *)1;
    memset(d, 0, sizeof *d);
    nsq_status st = nsq_tokenizer_from_files(NSQ_TOK_HF_JSON, 1, &name, &data, &size, &t, d);
    if (st != want)
        fail_msg("%s\n-> %s (%s), expected %s", j, nsq_status_name(st), d->message, nsq_status_name(want));
    if (st) {
        assert_null(t);
        assert_int_equal(d->status, st);
        assert_true(strlen(d->message) > 0);
    }
    free(j);
    return t;
}

static nsq_tokenizer *from_json(const char *json_q)
{
    nsq_diag d;
    return from_json_st(json_q, NSQ_OK, &d);
}

/* Encodes s and compares with want[0..n). */
static void expect_ids(const nsq_tokenizer *t, const char *s, size_t len, int add_special, const int32_t *want, size_t n)
{
    int32_t *ids;
    size_t k;
    assert_ok(nsq_tokenize(t, s, len, add_special, &ids, &k));
    assert_non_null(ids);
    int same = k == n;
    for (size_t i = 0; same && i < n; i++) same = ids[i] == want[i];
    if (!same) {
        char got[512] = "", exp[512] = "";
        for (size_t i = 0; i < k && strlen(got) < 480; i++) snprintf(got + strlen(got), 32, " %d", ids[i]);
        for (size_t i = 0; i < n && strlen(exp) < 480; i++) snprintf(exp + strlen(exp), 32, " %d", want[i]);
        fail_msg("\"%s\": got [%s ], expected [%s ]", s, got, exp);
    }
    free(ids);
}
#define EXPECT(t, s, ...)                                                                                       \
    do {                                                                                                      \
        const int32_t w_[] = {__VA_ARGS__};                                                                   \
        expect_ids((t), (s), strlen(s), 0, w_, sizeof w_ / sizeof w_[0]);                                     \
    } while (0)

static void expect_text(const nsq_tokenizer *t, const int32_t *ids, size_t n, int skip, const char *want)
{
    char *s;
    size_t len;
    assert_ok(nsq_detokenize(t, ids, n, skip, &s, &len));
    assert_int_equal(len, strlen(s));
    assert_string_equal(s, want);
    free(s);
}

/* Vector i of tokenizer k: the ids (a JSON array). */
static const json_t *vec_ids(const fixture *fx, int k, size_t i)
{
    return json_array_get(json_object_get(json_object_get(fx->vectors, "tokenizers"), tok_names[k]), i);
}

static const json_t *vec_strings(const fixture *fx) { return json_object_get(fx->vectors, "strings"); }

static int32_t *ids_of(const json_t *a, size_t *n)
{
    *n = json_array_size(a);
    int32_t *ids = malloc((*n ? *n : 1) * sizeof *ids);
    for (size_t i = 0; i < *n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(a, i));
    return ids;
}

/*-************************************
 *  Fixture
 **************************************/
static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    json_error_t e;
    fx->vectors = json_load_file(VECTORS, JSON_ALLOW_NUL, &e);
    if (!fx->vectors) {
        fprintf(stderr, "%s: %s\n", VECTORS, e.text);
        return -1;
    }
    static const char *hf[] = {"tokenizer.json", "tokenizer_config.json"}, *gpt2[] = {"vocab.json", "merges.txt"};
    fx->tok[T_LLAMA] = load_dir(NSQ_TOK_HF_JSON, LLAMA_DIR, hf, 2);
    fx->tok[T_TINY_GPT2] = load_dir(NSQ_TOK_HF_JSON, GPT2_DIR, hf, 2);
    fx->tok[T_REAL_GPT2] = load_dir(NSQ_TOK_GPT2_BPE, REAL_DIR, gpt2, 2);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    for (int k = 0; k < N_TOK; k++) nsq_tokenizer_free(fx->tok[k]);
    json_decref(fx->vectors);
    free(fx);
    return 0;
}

/*-************************************
 *  The reference vectors
 **************************************/
static void check_vectors(void **state, int k)
{
    fixture *fx = *state;
    const json_t *strings = vec_strings(fx);
    size_t n = json_array_size(strings), bad = 0;
    assert_int_equal(n, 328);
    for (size_t i = 0; i < n; i++) {
        const json_t *s = json_array_get(strings, i);
        size_t nw, k_got;
        int32_t *want = ids_of(vec_ids(fx, k, i), &nw), *got;
        assert_ok(nsq_tokenize(fx->tok[k], json_string_value(s), json_string_length(s), 0, &got, &k_got));
        int same = k_got == nw;
        for (size_t j = 0; same && j < nw; j++) same = got[j] == want[j];
        if (!same && bad++ < 5)
            fprintf(stderr, "%s: string %zu \"%.60s\": %zu ids, expected %zu\n", tok_names[k], i, json_string_value(s),
                    k_got, nw);
        free(got);
        free(want);
    }
    if (bad) fail_msg("%s: %zu of %zu strings differ", tok_names[k], bad, n);
}

static void test_vectors_tiny_llama(void **state) { check_vectors(state, T_LLAMA); }
static void test_vectors_tiny_gpt2(void **state) { check_vectors(state, T_TINY_GPT2); }
static void test_vectors_gpt2_real(void **state) { check_vectors(state, T_REAL_GPT2); }

/* decode(ids) gives the string back; tiny-llama's Strip decoder drops one
 * leading space (HF does the same), byte fallback keeps everything else. */
static void test_round_trip(void **state)
{
    fixture *fx = *state;
    const json_t *strings = vec_strings(fx);
    for (int k = 0; k < N_TOK; k++) {
        for (size_t i = 0; i < json_array_size(strings); i++) {
            const char *s = json_string_value(json_array_get(strings, i));
            size_t n, len;
            int32_t *ids = ids_of(vec_ids(fx, k, i), &n);
            char *text;
            assert_ok(nsq_detokenize(fx->tok[k], ids, n, 0, &text, &len));
            const char *want = k == T_LLAMA && s[0] == ' ' ? s + 1 : s;
            if (len != strlen(want) || memcmp(text, want, len) != 0)
                fail_msg("%s: string %zu \"%.60s\" decodes to \"%.60s\"", tok_names[k], i, s, text);
            free(text);
            free(ids);
        }
    }
}

/* ids[0..n) streamed through nsq_token_bytes (special tokens left out when
 * skip, as a printer would), against nsq_detokenize with the same skip. */
static void check_stream(const nsq_tokenizer *t, const int32_t *ids, size_t n, int skip, const char *what)
{
    size_t len, total = 0, cap = 8 * n + 64;
    char *text, *cat = malloc(cap);
    assert_ok(nsq_detokenize(t, ids, n, skip, &text, &len));
    for (size_t j = 0; j < n; j++) {
        size_t m;
        if (skip && nsq_token_is_special(t, ids[j])) continue;
        assert_ok(nsq_token_bytes(t, j ? ids[j - 1] : -1, ids[j], cat + total, cap - total, &m));
        total += m;
    }
    if (total != len || memcmp(cat, text, len) != 0)
        fail_msg("%s streams to \"%.*s\", decodes to \"%s\"", what, (int)total, cat, text);
    free(text);
    free(cat);
}

/* nsq_token_bytes over a sequence concatenates to nsq_detokenize's text. */
static void test_streaming(void **state)
{
    fixture *fx = *state;
    const json_t *strings = vec_strings(fx);
    for (int k = 0; k < N_TOK; k++) {
        for (size_t i = 0; i < json_array_size(strings); i++) {
            size_t n;
            int32_t *ids = ids_of(vec_ids(fx, k, i), &n);
            char what[64];
            snprintf(what, sizeof what, "%s: string %zu", tok_names[k], i);
            int special = 0;
            for (size_t j = 0; j < n; j++) special |= nsq_token_is_special(fx->tok[k], ids[j]);
            check_stream(fx->tok[k], ids, n, 1, what);
            if (!special) check_stream(fx->tok[k], ids, n, 0, what);
            free(ids);
        }
    }
    /* after BOS the text starts: its first space goes, as decode(skip_special) drops it */
    const int32_t gen[] = {1, 465, 486, 4004, 1807, 2, 1, 1807};
    check_stream(fx->tok[T_LLAMA], gen, 5, 1, "BOS Hello world");
    check_stream(fx->tok[T_LLAMA], gen + 6, 2, 1, "BOS world");
}

/*-************************************
 *  Special tokens
 **************************************/
static void test_add_special(void **state)
{
    fixture *fx = *state;
    const int32_t llama[] = {1, 465, 486, 4004, 1807}, gpt2[] = {40, 486, 79, 1817}, real[] = {15496, 995};
    expect_ids(fx->tok[T_LLAMA], "Hello world", 11, 1, llama, 5); /* BOS */
    expect_ids(fx->tok[T_LLAMA], "Hello world", 11, 0, llama + 1, 4);
    expect_ids(fx->tok[T_TINY_GPT2], "Hello world", 11, 1, gpt2, 4); /* GPT-2 adds nothing */
    expect_ids(fx->tok[T_REAL_GPT2], "Hello world", 11, 1, real, 2);
    const int32_t bos[] = {1};
    expect_ids(fx->tok[T_LLAMA], "", 0, 1, bos, 1);
    expect_ids(fx->tok[T_LLAMA], NULL, 0, 0, NULL, 0);
    assert_int_equal(nsq_tokenizer_vocab_size(fx->tok[T_LLAMA]), 4096);
    assert_int_equal(nsq_tokenizer_vocab_size(fx->tok[T_TINY_GPT2]), 4096);
    assert_int_equal(nsq_tokenizer_vocab_size(fx->tok[T_REAL_GPT2]), 50257);
}

static void test_special_in_text(void **state)
{
    fixture *fx = *state;
    EXPECT(fx->tok[T_LLAMA], "<s>", 1);
    EXPECT(fx->tok[T_LLAMA], "</s>", 2);
    /* "Hello" after <s> does not start the text: no U+2581 is prepended */
    EXPECT(fx->tok[T_LLAMA], "<s>Hello</s>", 1, 4060, 486, 4004, 2);
    EXPECT(fx->tok[T_LLAMA], "<s> </s>", 1, 4000, 2);
    EXPECT(fx->tok[T_TINY_GPT2], "<|endoftext|>", 0);
    EXPECT(fx->tok[T_TINY_GPT2], "a<|endoftext|>b", 65, 0, 66);
    /* vocab.json + merges.txt alone declare no added tokens: as tokenizers does */
    EXPECT(fx->tok[T_REAL_GPT2], "<|endoftext|>", 27, 91, 437, 1659, 5239, 91, 29);
    assert_true(nsq_token_is_special(fx->tok[T_LLAMA], 1));
    assert_true(nsq_token_is_special(fx->tok[T_LLAMA], 2));
    assert_false(nsq_token_is_special(fx->tok[T_LLAMA], 465));
    assert_false(nsq_token_is_special(fx->tok[T_LLAMA], -1));
    assert_false(nsq_token_is_special(fx->tok[T_LLAMA], 4096));
    assert_true(nsq_token_is_special(fx->tok[T_TINY_GPT2], 0));
    assert_true(nsq_token_is_special(fx->tok[T_REAL_GPT2], 50256));
}

static void test_decode_skip_special(void **state)
{
    fixture *fx = *state;
    const int32_t llama[] = {1, 465, 486, 4004, 1807, 2};
    expect_text(fx->tok[T_LLAMA], llama, 6, 0, "<s> Hello world</s>");
    expect_text(fx->tok[T_LLAMA], llama, 6, 1, "Hello world");
    const int32_t gpt2[] = {40, 73, 0};
    expect_text(fx->tok[T_TINY_GPT2], gpt2, 3, 0, "Hi<|endoftext|>");
    expect_text(fx->tok[T_TINY_GPT2], gpt2, 3, 1, "Hi");
    const int32_t real[] = {15496, 50256};
    expect_text(fx->tok[T_REAL_GPT2], real, 2, 0, "Hello<|endoftext|>");
    expect_text(fx->tok[T_REAL_GPT2], real, 2, 1, "Hello");
    /* ids outside the vocabulary are skipped, as tokenizers does */
    const int32_t odd[] = {-5, 15496, 50257, 1 << 30};
    expect_text(fx->tok[T_REAL_GPT2], odd, 4, 0, "Hello");
    expect_text(fx->tok[T_REAL_GPT2], NULL, 0, 0, "");
    /* invalid UTF-8 from byte tokens shows as U+FFFD */
    const int32_t half[] = {207}; /* <0xCC> */
    expect_text(fx->tok[T_LLAMA], half, 1, 0, "\xEF\xBF\xBD");
    const int32_t half_gpt2[] = {163}; /* the first byte of a CJK character */
    expect_text(fx->tok[T_TINY_GPT2], half_gpt2, 1, 0, "\xEF\xBF\xBD");
}

static void test_token_bytes(void **state)
{
    fixture *fx = *state;
    const nsq_tokenizer *t = fx->tok[T_LLAMA];
    char buf[16];
    size_t len;
    assert_ok(nsq_token_bytes(t, -1, 327, buf, sizeof buf, &len)); /* "\u2581e" first: the space goes */
    assert_int_equal(len, 1);
    assert_memory_equal(buf, "e", 1);
    assert_ok(nsq_token_bytes(t, 1, 327, buf, sizeof buf, &len)); /* after BOS too */
    assert_int_equal(len, 1);
    assert_ok(nsq_token_bytes(t, 327, 327, buf, sizeof buf, &len));
    assert_int_equal(len, 2);
    assert_memory_equal(buf, " e", 2);
    assert_ok(nsq_token_bytes(t, 327, 207, buf, sizeof buf, &len)); /* a byte alone: half of U+0301 */
    assert_int_equal(len, 1);
    assert_int_equal((uint8_t)buf[0], 0xCC);
    assert_ok(nsq_token_bytes(t, 327, 1807, buf, 3, &len)); /* " world", cut at cap */
    assert_int_equal(len, 6);
    assert_memory_equal(buf, " wo", 3);
    assert_ok(nsq_token_bytes(t, 327, 1807, NULL, 0, &len)); /* size only */
    assert_int_equal(len, 6);
    assert_status(nsq_token_bytes(t, -1, 4096, buf, sizeof buf, &len), NSQ_E_ARG);
    assert_status(nsq_token_bytes(t, -1, -1, buf, sizeof buf, &len), NSQ_E_ARG);
    assert_status(nsq_token_bytes(t, -1, 5, NULL, 4, &len), NSQ_E_ARG);
    assert_ok(nsq_token_bytes(fx->tok[T_REAL_GPT2], -1, 18435, buf, sizeof buf, &len)); /* " Hello": kept */
    assert_int_equal(len, 6);
    assert_memory_equal(buf, " Hello", 6);
    assert_ok(nsq_token_bytes(fx->tok[T_REAL_GPT2], -1, 50256, buf, sizeof buf, &len));
    assert_int_equal(len, 13);
}

static void test_bad_arguments(void **state)
{
    fixture *fx = *state;
    int32_t *ids;
    size_t n;
    char *s;
    assert_status(nsq_tokenize(NULL, "a", 1, 0, &ids, &n), NSQ_E_ARG);
    assert_status(nsq_tokenize(fx->tok[0], NULL, 1, 0, &ids, &n), NSQ_E_ARG);
    assert_status(nsq_tokenize(fx->tok[0], "a", 1, 0, NULL, &n), NSQ_E_ARG);
    assert_status(nsq_detokenize(NULL, NULL, 0, 0, &s, &n), NSQ_E_ARG);
    assert_status(nsq_detokenize(fx->tok[0], NULL, 3, 0, &s, &n), NSQ_E_ARG);
    assert_int_equal(nsq_tokenizer_vocab_size(NULL), 0);
    nsq_tokenizer_free(NULL);
    /* invalid UTF-8 is read as U+FFFD */
    int32_t *a, *b;
    size_t na, nb;
    assert_ok(nsq_tokenize(fx->tok[T_REAL_GPT2], "x\xff\xc3y", 4, 0, &a, &na));
    assert_ok(nsq_tokenize(fx->tok[T_REAL_GPT2], "x\xEF\xBF\xBD\xEF\xBF\xBDy", 8, 0, &b, &nb));
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof *a);
    free(a);
    free(b);
}

/* The same GPT-2 tokenizer from vocab.json + merges.txt and from
 * tokenizer.json encodes alike (but for its added token). */
static void test_gpt2_files_match_json(void **state)
{
    fixture *fx = *state;
    static const char *gpt2[] = {"vocab.json", "merges.txt"};
    nsq_tokenizer *t = load_dir(NSQ_TOK_GPT2_BPE, GPT2_DIR, gpt2, 2);
    const json_t *strings = vec_strings(fx);
    for (size_t i = 0; i < json_array_size(strings); i++) {
        const json_t *s = json_array_get(strings, i);
        if (strstr(json_string_value(s), "<|endoftext|>")) continue;
        size_t n;
        int32_t *want = ids_of(vec_ids(fx, T_TINY_GPT2, i), &n);
        expect_ids(t, json_string_value(s), json_string_length(s), 0, want, n);
        free(want);
    }
    nsq_tokenizer_free(t);
}

/*-************************************
 *  Pipeline parts, on small tokenizer.json files
 **************************************/
/* Vocabulary of the split tests: with ignore_merges a piece found in the
 * vocabulary is one token, so the ids show where the pieces are. */
#define SPLIT_VOCAB "'vocab':{'a':0,'b':1,'c':2,'-':3,'a-':4,'b-':5,'-b':6,'-c':7,'--':8}"

static nsq_tokenizer *split_tok(const char *behavior, int invert)
{
    char j[512];
    snprintf(j, sizeof j,
             "{'model':{'type':'BPE'," SPLIT_VOCAB ",'merges':[],'ignore_merges':true},"
             "'pre_tokenizer':{'type':'Split','pattern':{'String':'-'},'behavior':'%s','invert':%s}}",
             behavior, invert ? "true" : "false");
    return from_json(j);
}

static void test_split_behaviors(void **state)
{
    (void)state;
    nsq_tokenizer *t;
    EXPECT((t = split_tok("Removed", 0)), "a-b--c", 0, 1, 2);
    nsq_tokenizer_free(t);
    EXPECT((t = split_tok("Isolated", 0)), "a-b--c", 0, 3, 1, 3, 3, 2);
    nsq_tokenizer_free(t);
    EXPECT((t = split_tok("MergedWithPrevious", 0)), "a-b--c", 4, 5, 3, 2);
    nsq_tokenizer_free(t);
    EXPECT((t = split_tok("MergedWithNext", 0)), "a-b--c", 0, 6, 3, 7);
    nsq_tokenizer_free(t);
    EXPECT((t = split_tok("Contiguous", 0)), "a-b--c", 0, 3, 1, 8, 2);
    nsq_tokenizer_free(t);
    EXPECT((t = split_tok("Removed", 1)), "a-b--c", 3, 3, 3);
    nsq_tokenizer_free(t);
    /* a regex pattern, and a Sequence of pre-tokenizers */
    t = from_json("{'model':{'type':'BPE'," SPLIT_VOCAB ",'merges':[],'ignore_merges':true},"
                  "'pre_tokenizer':{'type':'Sequence','pretokenizers':["
                  "{'type':'Split','pattern':{'Regex':'-+'},'behavior':'Isolated','invert':false},"
                  "{'type':'Split','pattern':{'String':'c'},'behavior':'Removed','invert':false}]}}");
    EXPECT(t, "a-b--c", 0, 3, 1, 8);
    nsq_tokenizer_free(t);
}

static void test_merges_and_model_options(void **state)
{
    (void)state;
    static const char vocab[] = "'vocab':{'<unk>':0,'a':1,'b':2,'c':3,'ab':4,'abc':5,'bc':6}";
    char j[512];
    /* "a b" strings and ["a","b"] pairs; lowest rank first */
    const char *forms[] = {"['a b','ab c']", "[['a','b'],['ab','c']]"};
    for (int f = 0; f < 2; f++) {
        snprintf(j, sizeof j, "{'model':{'type':'BPE',%s,'merges':%s}}", vocab, forms[f]);
        nsq_tokenizer *t = from_json(j);
        EXPECT(t, "abc", 5);
        EXPECT(t, "abcab", 5, 4); /* no pre-tokenizer: one piece */
        EXPECT(t, "cba", 3, 2, 1);
        EXPECT(t, "axa", 1, 1); /* unknown without unk_token: dropped */
        nsq_tokenizer_free(t);
    }
    snprintf(j, sizeof j, "{'model':{'type':'BPE',%s,'merges':['b c','a b']}}", vocab);
    nsq_tokenizer *t = from_json(j);
    EXPECT(t, "abc", 1, 6); /* "b c" ranks first */
    nsq_tokenizer_free(t);
    /* ignore_merges: a piece in the vocabulary is taken whole */
    snprintf(j, sizeof j, "{'model':{'type':'BPE',%s,'merges':['a b'],'ignore_merges':%%s}}", vocab);
    char k[512];
    snprintf(k, sizeof k, j, "true");
    EXPECT((t = from_json(k)), "abc", 5);
    nsq_tokenizer_free(t);
    snprintf(k, sizeof k, j, "false");
    EXPECT((t = from_json(k)), "abc", 4, 3);
    nsq_tokenizer_free(t);
    /* unk_token, fused or not */
    snprintf(j, sizeof j, "{'model':{'type':'BPE',%s,'merges':[],'unk_token':'<unk>','fuse_unk':true}}", vocab);
    EXPECT((t = from_json(j)), "axya", 1, 0, 1);
    nsq_tokenizer_free(t);
    snprintf(j, sizeof j, "{'model':{'type':'BPE',%s,'merges':[],'unk_token':'<unk>','fuse_unk':false}}", vocab);
    EXPECT((t = from_json(j)), "axya", 1, 0, 0, 1);
    nsq_tokenizer_free(t);
    /* byte fallback: characters outside the vocabulary as <0xXX> tokens */
    t = from_json("{'model':{'type':'BPE','vocab':{'a':0,'<0xC3>':1,'<0xA9>':2,'<0x78>':3},'merges':[],"
                  "'byte_fallback':true},'decoder':{'type':'Sequence','decoders':[{'type':'ByteFallback'},{'type':'Fuse'}]}}");
    EXPECT(t, "a\xC3\xA9x", 0, 1, 2, 3);
    const int32_t ids[] = {0, 1, 2, 3};
    expect_text(t, ids, 4, 0, "a\xC3\xA9x");
    expect_text(t, ids, 2, 0, "a\xEF\xBF\xBD"); /* an incomplete sequence: U+FFFD per byte */
    nsq_tokenizer_free(t);
    /* continuing_subword_prefix and end_of_word_suffix */
    t = from_json("{'model':{'type':'BPE','vocab':{'a':0,'##b':1,'##c</w>':2,'a##b':3,'ab':4,'ab##c</w>':5,'abc</w>':6},"
                  "'merges':['a ##b','ab ##c</w>'],'continuing_subword_prefix':'##','end_of_word_suffix':'</w>'}}");
    EXPECT(t, "abc", 6);
    EXPECT(t, "ab", 0); /* the last "b" is "##b</w>", not in the vocabulary: dropped */
    nsq_tokenizer_free(t);
}

static void test_normalizers(void **state)
{
    (void)state;
    /* The legacy Llama form: Prepend + Replace, no pre-tokenizer; text after
     * an added token is prepended again (as tokenizers does). */
    nsq_tokenizer *t = from_json(
        "{'model':{'type':'BPE','vocab':{'<s>':0,'\\u2581hi\\u2581there':1,'\\u2581':2,'h':3,'i':4},'merges':[],"
        "'ignore_merges':true},"
        "'added_tokens':[{'id':0,'content':'<s>','special':true,'normalized':false}],"
        "'normalizer':{'type':'Sequence','normalizers':[{'type':'Prepend','prepend':'\\u2581'},"
        "{'type':'Replace','pattern':{'String':' '},'content':'\\u2581'}]},"
        "'decoder':{'type':'Sequence','decoders':[{'type':'Replace','pattern':{'String':'\\u2581'},'content':' '},"
        "{'type':'ByteFallback'},{'type':'Fuse'},{'type':'Strip','content':' ','start':1,'stop':0}]},"
        "'post_processor':{'type':'TemplateProcessing','single':[{'SpecialToken':{'id':'<s>','type_id':0}},"
        "{'Sequence':{'id':'A','type_id':0}}],'special_tokens':{'<s>':{'id':'<s>','ids':[0],'tokens':['<s>']}}}}");
    EXPECT(t, "hi there", 1);
    EXPECT(t, "<s>hi", 0, 2, 3, 4);
    const int32_t one[] = {0, 1};
    expect_ids(t, "hi there", 8, 1, one, 2);
    expect_text(t, one, 2, 1, "hi there");
    nsq_tokenizer_free(t);
    /* NFC; Lowercase; Strip */
    t = from_json("{'model':{'type':'BPE','vocab':{'\\u00e9':0,'e':1,'\\u0301':2,'x':3},'merges':[]},"
                  "'normalizer':{'type':'Sequence','normalizers':[{'type':'Strip','strip_left':true,'strip_right':true},"
                  "{'type':'NFC'},{'type':'Lowercase'}]}}");
    EXPECT(t, "  e\xCC\x81X\t", 0, 3);
    nsq_tokenizer_free(t);
    t = from_json("{'model':{'type':'BPE','vocab':{'\\u00e9':0,'e':1,'\\u0301':2},'merges':[]},'normalizer':{'type':'NFD'}}");
    EXPECT(t, "\xC3\xA9", 1, 2);
    nsq_tokenizer_free(t);
    /* Replace with a regex */
    t = from_json("{'model':{'type':'BPE','vocab':{'a':0,'_':1},'merges':[]},"
                  "'normalizer':{'type':'Replace','pattern':{'Regex':'\\\\s+'},'content':'_'}}");
    EXPECT(t, "a \t\na", 0, 1, 0);
    nsq_tokenizer_free(t);
}

static void test_metaspace(void **state)
{
    (void)state;
    static const char vocab[] = "'vocab':{'\\u2581hello':0,'\\u2581world':1,'hello':2,'\\u2581':3,'\\u2581hello\\u2581world':4}";
    char j[512];
    nsq_tokenizer *t;
    const char *pre[] = {"always", "first", "never"};
    const int32_t want[3][2] = {{0, 1}, {0, 1}, {2, 1}};
    for (int p = 0; p < 3; p++) {
        snprintf(j, sizeof j,
                 "{'model':{'type':'BPE',%s,'merges':[],'ignore_merges':true},'pre_tokenizer':{'type':'Metaspace',"
                 "'replacement':'\\u2581','prepend_scheme':'%s','split':true},"
                 "'decoder':{'type':'Metaspace','replacement':'\\u2581','prepend_scheme':'%s','split':true}}",
                 vocab, pre[p], pre[p]);
        t = from_json(j);
        expect_ids(t, "hello world", 11, 0, want[p], 2);
        expect_text(t, want[p], 2, 0, "hello world");
        nsq_tokenizer_free(t);
    }
    snprintf(j, sizeof j,
             "{'model':{'type':'BPE',%s,'merges':[],'ignore_merges':true},'pre_tokenizer':{'type':'Metaspace',"
             "'replacement':'\\u2581','prepend_scheme':'first','split':false}}", vocab);
    EXPECT((t = from_json(j)), "hello world", 4); /* split=false: one piece */
    nsq_tokenizer_free(t);
    /* the old form: add_prefix_space */
    snprintf(j, sizeof j,
             "{'model':{'type':'BPE',%s,'merges':[],'ignore_merges':true},'pre_tokenizer':{'type':'Metaspace',"
             "'replacement':'\\u2581','add_prefix_space':true}}", vocab);
    EXPECT((t = from_json(j)), "hello world", 0, 1);
    nsq_tokenizer_free(t);
}

static void test_added_token_options(void **state)
{
    (void)state;
    static const char model[] = "'model':{'type':'BPE','vocab':{'a':0,'b':1,'c':2,' ':3},'merges':[]}";
    char j[768];
    nsq_tokenizer *t;
    snprintf(j, sizeof j, "{%s,'added_tokens':[{'id':10,'content':'<m>','lstrip':true,'rstrip':true,"
                          "'single_word':false,'normalized':false,'special':true}]}", model);
    EXPECT((t = from_json(j)), "a <m> b", 0, 10, 1);
    assert_int_equal(nsq_tokenizer_vocab_size(t), 11);
    nsq_tokenizer_free(t);
    snprintf(j, sizeof j, "{%s,'added_tokens':[{'id':10,'content':'<m>','lstrip':false,'rstrip':false,"
                          "'single_word':false,'normalized':false,'special':true}]}", model);
    EXPECT((t = from_json(j)), "a <m> b", 0, 3, 10, 3, 1);
    nsq_tokenizer_free(t);
    /* single_word: only where no letter or digit touches it */
    snprintf(j, sizeof j, "{%s,'added_tokens':[{'id':10,'content':'ab','lstrip':false,'rstrip':false,"
                          "'single_word':true,'normalized':false,'special':false}]}", model);
    EXPECT((t = from_json(j)), "ab cab ab", 10, 3, 2, 0, 1, 3, 10);
    nsq_tokenizer_free(t);
    /* leftmost, then longest */
    snprintf(j, sizeof j, "{%s,'added_tokens':[{'id':10,'content':'ab','special':false},"
                          "{'id':11,'content':'abc','special':false},{'id':12,'content':'bc','special':false}]}", model);
    EXPECT((t = from_json(j)), "abcbc", 11, 12);
    nsq_tokenizer_free(t);
    /* a normalized added token is matched in normalized text */
    snprintf(j, sizeof j, "{%s,'added_tokens':[{'id':10,'content':'AB','normalized':true,'special':false}],"
                          "'normalizer':{'type':'Lowercase'}}", model);
    EXPECT((t = from_json(j)), "cAbC", 2, 10, 2);
    nsq_tokenizer_free(t);
}

static void test_byte_level_options(void **state)
{
    (void)state;
    /* add_prefix_space, the ByteLevel decoder, Digits, a Roberta post-processor */
    nsq_tokenizer *t = from_json(
        "{'model':{'type':'BPE','vocab':{'\\u0120':0,'a':1,'\\u0120a':2,'1':3,'2':4,'<s>':5,'</s>':6},"
        "'merges':['\\u0120 a']},"
        "'pre_tokenizer':{'type':'Sequence','pretokenizers':[{'type':'Digits','individual_digits':true},"
        "{'type':'ByteLevel','add_prefix_space':true,'use_regex':true}]},"
        "'post_processor':{'type':'RobertaProcessing','sep':['</s>',6],'cls':['<s>',5]},"
        "'decoder':{'type':'ByteLevel'}}");
    EXPECT(t, "a", 2);
    EXPECT(t, "12", 0, 3, 0, 4); /* each digit its own piece, each with a space before it */
    const int32_t want[] = {5, 2, 2, 6};
    expect_ids(t, "a a", 3, 1, want, 4);
    expect_text(t, want, 4, 0, "<s> a a</s>");
    expect_text(t, want, 4, 1, "<s> a a</s>"); /* not declared as added special tokens: kept */
    nsq_tokenizer_free(t);
    /* BPEDecoder; no decoder at all joins with spaces */
    t = from_json("{'model':{'type':'BPE','vocab':{'hel':0,'lo</w>':1,'world</w>':2},'merges':[]},"
                  "'decoder':{'type':'BPEDecoder','suffix':'</w>'}}");
    const int32_t w[] = {0, 1, 2};
    expect_text(t, w, 3, 0, "hello world");
    nsq_tokenizer_free(t);
    t = from_json("{'model':{'type':'BPE','vocab':{'hel':0,'lo':1},'merges':[]}}");
    expect_text(t, w, 2, 0, "hel lo");
    nsq_tokenizer_free(t);
}

/* tokenizer_config.json adds BOS/EOS when there is no post-processor; with
 * GPT-2 files it also brings added tokens. */
static void test_tokenizer_config(void **state)
{
    (void)state;
    char *j = q("{'model':{'type':'BPE','vocab':{'<s>':0,'</s>':1,'a':2},'merges':[]},"
                "'added_tokens':[{'id':0,'content':'<s>','special':true},{'id':1,'content':'</s>','special':true}]}");
    char *c = q("{'add_bos_token':true,'add_eos_token':true,'bos_token':{'content':'<s>'},'eos_token':'</s>'}");
    const char *names[] = {"tokenizer.json", "tokenizer_config.json"};
    const uint8_t *data[] = {(const uint8_t *)j, (const uint8_t *)c};
    uint64_t sizes[] = {strlen(j), strlen(c)};
    nsq_tokenizer *t;
    assert_ok(nsq_tokenizer_from_files(NSQ_TOK_HF_JSON, 2, names, data, sizes, &t, NULL));
    const int32_t want[] = {0, 2, 1};
    expect_ids(t, "a", 1, 1, want, 3);
    nsq_tokenizer_free(t);
    free(j);
    free(c);
    j = q("{'a':0,'b':1,'ab':2,'<|endoftext|>':3}");
    c = q("{'added_tokens_decoder':{'3':{'content':'<|endoftext|>','special':true,'lstrip':false,'rstrip':false,"
          "'normalized':false,'single_word':false}}}");
    const char *gnames[] = {"vocab.json", "merges.txt", "tokenizer_config.json"};
    const uint8_t *gdata[] = {(const uint8_t *)j, (const uint8_t *)"#version: 0.2\r\na b\r\n", (const uint8_t *)c};
    uint64_t gsizes[] = {strlen(j), 20, strlen(c)};
    assert_ok(nsq_tokenizer_from_files(NSQ_TOK_GPT2_BPE, 3, gnames, gdata, gsizes, &t, NULL));
    EXPECT(t, "ab<|endoftext|>", 2, 3);
    nsq_tokenizer_free(t);
    free(j);
    free(c);
}

/*-************************************
 *  Malformed input
 **************************************/
static void test_malformed_json(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        nsq_status want;
    } cases[] = {
        {"", NSQ_E_TOKENIZER},
        {"{", NSQ_E_TOKENIZER},
        {"[]", NSQ_E_TOKENIZER},
        {"{}", NSQ_E_TOKENIZER},
        {"{'model':5}", NSQ_E_TOKENIZER},
        {"{'model':{}}", NSQ_E_TOKENIZER},
        {"{'model':{'type':'WordPiece','vocab':{}}}", NSQ_E_UNSUPPORTED},
        {"{'model':{'type':'Unigram','vocab':[]}}", NSQ_E_UNSUPPORTED},
        {"{'model':{'type':7}}", NSQ_E_TOKENIZER},
        {"{'model':{'type':'BPE','vocab':[],'merges':[]}}", NSQ_E_TOKENIZER},
        {"{'model':{'type':'BPE','vocab':{'a':-1},'merges':[]}}", NSQ_E_TOKENIZER},
        {"{'model':{'type':'BPE','vocab':{'a':'0'},'merges':[]}}", NSQ_E_TOKENIZER},
        {"{'model':{'type':'BPE','vocab':{'a':1.5},'merges':[]}}", NSQ_E_TOKENIZER},
        {"{'model':{'type':'BPE','vocab':{'a':99999999999},'merges':[]}}", NSQ_E_LIMIT},
        {"{'model':{'type':'BPE','vocab':{'a':0,'b':1,'ab':2},'merges':['a c']}}", NSQ_E_TOKENIZER},
        {"{'model':{'type':'BPE','vocab':{'a':0,'b':1,'ab':2},'merges':[['c','b']]}}", NSQ_E_TOKENIZER},
        {"{'model':{'type':'BPE','vocab':{'a':0,'b':1},'merges':['a b']}}", NSQ_E_TOKENIZER},
        {"{'model':{'type':'BPE','vocab':{'a':0,'b':1,'ab':2},'merges':['ab']}}", NSQ_E_TOKENIZER},
        {"{'model':{'type':'BPE','vocab':{'a':0,'b':1,'ab':2},'merges':[['a']]}}", NSQ_E_TOKENIZER},
        {"{'model':{'type':'BPE','vocab':{'a':0,'b':1,'ab':2},'merges':[5]}}", NSQ_E_TOKENIZER},
        {"{'model':{'type':'BPE','vocab':{'a':0,'b':1,'ab':2},'merges':'a b'}}", NSQ_E_TOKENIZER},
        {"{'model':{'type':'BPE','vocab':{},'merges':[]},'added_tokens':[{'content':'x'}]}", NSQ_E_TOKENIZER},
        {"{'model':{'type':'BPE','vocab':{},'merges':[]},'added_tokens':[{'id':0}]}", NSQ_E_TOKENIZER},
        {"{'model':{'type':'BPE','vocab':{},'merges':[]},'added_tokens':5}", NSQ_E_TOKENIZER},
        {"{'model':{'type':'BPE','vocab':{},'merges':[]},'pre_tokenizer':{'type':'Split','pattern':{'Regex':'('},"
         "'behavior':'Isolated'}}", NSQ_E_TOKENIZER},
        {"{'model':{'type':'BPE','vocab':{},'merges':[]},'pre_tokenizer':{'type':'Split','pattern':{'String':'-'},"
         "'behavior':'Sideways'}}", NSQ_E_TOKENIZER},
        {"{'model':{'type':'BPE','vocab':{},'merges':[]},'pre_tokenizer':{'type':'Split','behavior':'Isolated'}}",
         NSQ_E_TOKENIZER},
        {"{'model':{'type':'BPE','vocab':{},'merges':[]},'pre_tokenizer':{'type':'UnicodeScripts'}}", NSQ_E_UNSUPPORTED},
        {"{'model':{'type':'BPE','vocab':{},'merges':[]},'pre_tokenizer':{'type':'Metaspace','replacement':'ab'}}",
         NSQ_E_TOKENIZER},
        {"{'model':{'type':'BPE','vocab':{},'merges':[]},'pre_tokenizer':{'type':'Metaspace','prepend_scheme':'x'}}",
         NSQ_E_TOKENIZER},
        {"{'model':{'type':'BPE','vocab':{},'merges':[]},'pre_tokenizer':[]}", NSQ_E_TOKENIZER},
        {"{'model':{'type':'BPE','vocab':{},'merges':[]},'normalizer':{'type':'BertNormalizer'}}", NSQ_E_UNSUPPORTED},
        {"{'model':{'type':'BPE','vocab':{},'merges':[]},'normalizer':{'type':'Precompiled','precompiled_charsmap':'AAA'}}",
         NSQ_E_UNSUPPORTED},
        {"{'model':{'type':'BPE','vocab':{},'merges':[]},'normalizer':{'type':'Replace','content':'x'}}", NSQ_E_TOKENIZER},
        {"{'model':{'type':'BPE','vocab':{},'merges':[]},'decoder':{'type':'WordPiece'}}", NSQ_E_UNSUPPORTED},
        {"{'model':{'type':'BPE','vocab':{},'merges':[]},'decoder':{'type':'Strip','content':'','start':1,'stop':0}}",
         NSQ_E_TOKENIZER},
        {"{'model':{'type':'BPE','vocab':{},'merges':[]},'post_processor':{'type':'TemplateProcessing',"
         "'single':[{'SpecialToken':{'id':'<x>','type_id':0}}],'special_tokens':{}}}", NSQ_E_TOKENIZER},
        {"{'model':{'type':'BPE','vocab':{},'merges':[]},'post_processor':{'type':'BertProcessing','cls':['x']}}",
         NSQ_E_TOKENIZER},
        {"{'model':{'type':'BPE','vocab':{},'merges':[]},'post_processor':{'type':'Chat'}}", NSQ_E_UNSUPPORTED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nsq_diag d;
        nsq_tokenizer *t = from_json_st(cases[i].json, cases[i].want, &d);
        nsq_tokenizer_free(t);
    }
    /* nesting and stage limits */
    char big[4096] = "{'model':{'type':'BPE','vocab':{},'merges':[]},'normalizer':";
    for (int i = 0; i < 12; i++) strcat(big, "{'type':'Sequence','normalizers':[");
    strcat(big, "{'type':'NFC'}");
    for (int i = 0; i < 12; i++) strcat(big, "]}");
    strcat(big, "}");
    nsq_diag d;
    from_json_st(big, NSQ_E_TOKENIZER, &d);
    strcpy(big, "{'model':{'type':'BPE','vocab':{},'merges':[]},'decoder':{'type':'Sequence','decoders':[");
    for (int i = 0; i < 17; i++) strcat(big, i ? ",{'type':'Fuse'}" : "{'type':'Fuse'}");
    strcat(big, "]}}");
    from_json_st(big, NSQ_E_TOKENIZER, &d);
}

static nsq_status gpt2_files(const char *vocab, const char *merges, nsq_diag *d)
{
    const char *names[] = {"vocab.json", "merges.txt"};
    const uint8_t *data[] = {(const uint8_t *)vocab, (const uint8_t *)merges};
    uint64_t sizes[] = {strlen(vocab), strlen(merges)};
    nsq_tokenizer *t;
    memset(d, 0, sizeof *d);
    nsq_status st = nsq_tokenizer_from_files(NSQ_TOK_GPT2_BPE, 2, names, data, sizes, &t, d);
    if (!st) nsq_tokenizer_free(t);
    return st;
}

static void test_malformed_files(void **state)
{
    (void)state;
    nsq_diag d;
    assert_ok(gpt2_files("{\"a\":0,\"b\":1,\"ab\":2}", "#version: 0.2\na b\n", &d));
    assert_status(gpt2_files("{\"a\":0,\"b\":1,\"ab\":2", "a b\n", &d), NSQ_E_TOKENIZER);
    assert_diag(&d, NSQ_E_TOKENIZER, NULL);
    assert_status(gpt2_files("[1]", "a b\n", &d), NSQ_E_TOKENIZER);
    assert_status(gpt2_files("{\"a\":0,\"b\":1,\"ab\":2}", "a b c\n", &d), NSQ_E_TOKENIZER);
    assert_status(gpt2_files("{\"a\":0,\"b\":1,\"ab\":2}", "ab\n", &d), NSQ_E_TOKENIZER);
    assert_status(gpt2_files("{\"a\":0,\"b\":1,\"ab\":2}", "a x\n", &d), NSQ_E_TOKENIZER);
    assert_non_null(strstr(d.message, "not in the vocabulary"));
    assert_status(gpt2_files("{\"a\":0,\"b\":1}", "a b\n", &d), NSQ_E_TOKENIZER);
    /* what the kinds need */
    const char *names[] = {"tokenizer.model"};
    const uint8_t *data[] = {(const uint8_t *)"\x0a\x03<s>"};
    uint64_t sizes[] = {5};
    nsq_tokenizer *t = (nsq_tokenizer *)1;
    memset(&d, 0, sizeof d);
    assert_status(nsq_tokenizer_from_files(NSQ_TOK_SENTENCEPIECE, 1, names, data, sizes, &t, &d), NSQ_E_UNSUPPORTED);
    assert_null(t);
    assert_non_null(strstr(d.message, "SentencePiece"));
    assert_status(nsq_tokenizer_from_files(NSQ_TOK_HF_JSON, 1, names, data, sizes, &t, &d), NSQ_E_TOKENIZER);
    assert_status(nsq_tokenizer_from_files(NSQ_TOK_GPT2_BPE, 1, names, data, sizes, &t, &d), NSQ_E_TOKENIZER);
    assert_status(nsq_tokenizer_from_files((nsq_tokenizer_kind)9, 1, names, data, sizes, &t, &d), NSQ_E_ARG);
    assert_status(nsq_tokenizer_from_files(NSQ_TOK_HF_JSON, 1, names, data, sizes, NULL, &d), NSQ_E_ARG);
    assert_status(nsq_tokenizer_from_files(NSQ_TOK_HF_JSON, 1, NULL, data, sizes, &t, &d), NSQ_E_ARG);
    assert_status(nsq_tokenizer_from_files(NSQ_TOK_HF_JSON, 0, NULL, NULL, NULL, &t, NULL), NSQ_E_TOKENIZER);
}

/* Truncated and corrupted copies of a small tokenizer.json: an error or a
 * working tokenizer, never a crash. */
static void test_mutated_json(void **state)
{
    (void)state;
    char *base = q("{'version':'1.0','added_tokens':[{'id':0,'content':'<s>','special':true,'lstrip':true}],"
                   "'normalizer':{'type':'Sequence','normalizers':[{'type':'NFC'},{'type':'Prepend','prepend':'_'}]},"
                   "'pre_tokenizer':{'type':'Sequence','pretokenizers':[{'type':'Split','pattern':{'Regex':'\\\\d'},"
                   "'behavior':'MergedWithNext'},{'type':'Metaspace','replacement':'_','prepend_scheme':'first',"
                   "'split':true}]},'post_processor':{'type':'TemplateProcessing','single':[{'SpecialToken':{'id':'<s>'}},"
                   "{'Sequence':{'id':'A'}}],'special_tokens':{'<s>':{'id':'<s>','ids':[0]}}},"
                   "'decoder':{'type':'Sequence','decoders':[{'type':'Replace','pattern':{'String':'_'},'content':' '},"
                   "{'type':'ByteFallback'},{'type':'Fuse'},{'type':'Strip','content':' ','start':1,'stop':1}]},"
                   "'model':{'type':'BPE','vocab':{'<s>':0,'_':1,'a':2,'b':3,'_a':4,'ab':5,'<0x31>':6,'1':7},"
                   "'merges':[['_','a'],'a b'],'byte_fallback':true,'unk_token':'a','fuse_unk':true}}");
    size_t n = strlen(base);
    tu_rng rng = {42};
    char *buf = malloc(n + 1);
    int ok = 0;
    for (int round = 0; round < 3000; round++) {
        size_t len = n;
        memcpy(buf, base, n);
        if (round < (int)n) {
            len = (size_t)round; /* every truncation */
        } else {
            for (int k = 0; k < 3; k++) {
                static const char alphabet[] = "{}[],:'\"0123456789-_ab\\tnulrue";
                buf[tu_below(&rng, (uint32_t)n)] = alphabet[tu_below(&rng, sizeof alphabet - 1)];
            }
        }
        const char *name = "tokenizer.json";
        const uint8_t *data = (const uint8_t *)buf;
        uint64_t size = len;
        nsq_tokenizer *t = NULL;
        nsq_diag d;
        nsq_status st = nsq_tokenizer_from_files(NSQ_TOK_HF_JSON, 1, &name, &data, &size, &t, &d);
        if (st) {
            assert_null(t);
            continue;
        }
        ok++;
        int32_t *ids;
        size_t k;
        char *text;
        size_t tl;
        assert_ok(nsq_tokenize(t, "<s> ab1 a\xC3\xA9 b", 13, 1, &ids, &k));
        assert_ok(nsq_detokenize(t, ids, k, 0, &text, &tl));
        for (size_t i = 0; i < k; i++) {
            char tb[64];
            size_t m;
            assert_ok(nsq_token_bytes(t, i ? ids[i - 1] : -1, ids[i], tb, sizeof tb, &m));
        }
        free(ids);
        free(text);
        nsq_tokenizer_free(t);
    }
    assert_true(ok > 10); /* the unchanged copy and many mutants work */
    free(buf);
    free(base);
}

/*-************************************
 *  The models' PyTorch references
 **************************************/
/* fixtures/models/NAME-ref/refs.json: the prompts' ids (with BOS where HF adds
 * it), the greedy continuations' text, and the first 64 ids of the eval text;
 * the eval text's token count gives the reference perplexity's window count. */
static void check_refs(const nsq_tokenizer *t, const char *name, size_t windows)
{
    char path[128];
    snprintf(path, sizeof path, "fixtures/models/%s-ref/refs.json", name);
    json_error_t e;
    json_t *refs = json_load_file(path, 0, &e);
    if (!refs) fail_msg("%s: %s", path, e.text);
    const json_t *prompts = json_object_get(refs, "prompts");
    assert_true(json_array_size(prompts) > 0);
    for (size_t i = 0; i < json_array_size(prompts); i++) {
        const json_t *p = json_array_get(prompts, i);
        const char *prompt = json_string_value(json_object_get(p, "prompt"));
        size_t n;
        int32_t *want = ids_of(json_object_get(p, "ids"), &n);
        expect_ids(t, prompt, strlen(prompt), 1, want, n);
        free(want);
        int32_t *gen = ids_of(json_object_get(p, "greedy_ids"), &n);
        expect_text(t, gen, n, 0, json_string_value(json_object_get(p, "greedy_text")));
        free(gen);
    }
    size_t len, n, k;
    uint8_t *text = tu_must_read("fixtures/corpus/eval-dev.txt", &len);
    int32_t *ids, *first = ids_of(json_object_get(json_object_get(refs, "long"), "ids"), &k);
    assert_ok(nsq_tokenize(t, (const char *)text, len, 0, &ids, &n));
    assert_true(n >= k);
    assert_memory_equal(ids, first, k * sizeof *ids);
    assert_int_equal(n / 256, windows);
    free(ids);
    free(first);
    free(text);
    json_decref(refs);
}

static void test_model_references(void **state)
{
    fixture *fx = *state;
    check_refs(fx->tok[T_LLAMA], "tiny-llama", 363120 / 255);
    check_refs(fx->tok[T_TINY_GPT2], "tiny-gpt2", 357000 / 255);
}

/* One tokenizer, several threads at once: the same ids as alone. */
typedef struct {
    const fixture *fx;
    int k, bad;
} thread_job;

static void *encode_all(void *arg)
{
    thread_job *j = arg;
    const json_t *strings = vec_strings(j->fx);
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < json_array_size(strings); i++) {
            const json_t *s = json_array_get(strings, i);
            size_t n, k;
            int32_t *want = ids_of(vec_ids(j->fx, j->k, i), &n), *got;
            if (nsq_tokenize(j->fx->tok[j->k], json_string_value(s), json_string_length(s), 0, &got, &k) ||
                k != n || memcmp(got, want, n * sizeof *got) != 0)
                j->bad++;
            else
                free(got);
            free(want);
        }
    return NULL;
}

static void test_threads(void **state)
{
    fixture *fx = *state;
    pthread_t th[6];
    thread_job jobs[6];
    for (int i = 0; i < 6; i++) {
        jobs[i] = (thread_job){fx, i % N_TOK, 0};
        assert_int_equal(pthread_create(&th[i], NULL, encode_all, &jobs[i]), 0);
    }
    for (int i = 0; i < 6; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(jobs[i].bad, 0);
    }
}

/*-************************************
 *  From an .nsq file
 **************************************/
/* A minimal valid model whose tokenizer section holds the given files. */
static void write_model(const char *path, nsq_tokenizer_kind kind, uint32_t n, const char *const *names,
                        const uint8_t *const *data, const size_t *sizes)
{
    enum { HID = 8 };
    nsq_writer *w;
    nsq_diag d;
    assert_ok(nsq_writer_open(path, &w, &d));
    assert_ok(tu_write_required_meta(w, 1, HID, NULL));
    assert_ok(nsq_writer_tokenizer(w, kind));
    for (uint32_t i = 0; i < n; i++) assert_ok(nsq_writer_tokenizer_file(w, names[i], data[i], sizes[i]));
    uint64_t emb[2] = {TU_VOCAB, HID}, vec[1] = {HID};
    assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_EMBEDDINGS, 0, 0, NSQ_COMP_NONE));
    assert_ok(tu_add_f32(w, "tok_embeddings.weight", 2, emb, 0.0f));
    assert_ok(nsq_writer_end_block(w, NULL));
    assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_LAYERS, 0, 1, NSQ_COMP_NONE));
    assert_ok(tu_add_f32(w, "layers.0.norm.weight", 1, vec, 0.0f));
    assert_ok(nsq_writer_end_block(w, NULL));
    assert_ok(nsq_writer_begin_block(w, NSQ_BLOCK_OUTPUT, 0, 0, NSQ_COMP_NONE));
    assert_ok(tu_add_f32(w, "output.weight", 2, emb, 1.0f));
    assert_ok(nsq_writer_end_block(w, NULL));
    assert_ok(nsq_writer_finish(w, &d));
}

static void test_load_from_nsq(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp(), *path = tu_join(dir, "m.nsq");
    size_t jl, cl;
    uint8_t *json = tu_must_read(LLAMA_DIR "/tokenizer.json", &jl), *cfg = tu_must_read(LLAMA_DIR "/tokenizer_config.json", &cl);
    const char *names[] = {"tokenizer.json", "tokenizer_config.json"};
    const uint8_t *data[] = {json, cfg};
    size_t sizes[] = {jl, cl};
    nsq_file *f;
    nsq_tokenizer *t;
    nsq_diag d;
    for (int pread = 0; pread < 2; pread++) {
        write_model(path, NSQ_TOK_HF_JSON, 2, names, data, sizes);
        assert_ok(nsq_open(path, pread ? NSQ_OPEN_PREAD : 0, &f, &d));
        assert_ok(nsq_tokenizer_load(f, &t, &d));
        nsq_close(f); /* the tokenizer keeps what it needs */
        const int32_t want[] = {1, 465, 486, 4004, 1807};
        expect_ids(t, "Hello world", 11, 1, want, 5);
        nsq_tokenizer_free(t);
    }
    /* SentencePiece with tokenizer.json beside tokenizer.model: tokenizer.json is used */
    size_t ml;
    uint8_t *model = tu_must_read(LLAMA_DIR "/tokenizer.model", &ml);
    const char *sp_names[] = {"tokenizer.json", "tokenizer.model"};
    const uint8_t *sp_data[] = {json, model};
    size_t sp_sizes[] = {jl, ml};
    write_model(path, NSQ_TOK_SENTENCEPIECE, 2, sp_names, sp_data, sp_sizes);
    assert_ok(nsq_open(path, 0, &f, &d));
    assert_ok(nsq_tokenizer_load(f, &t, &d));
    EXPECT(t, "Hello world", 465, 486, 4004, 1807);
    nsq_tokenizer_free(t);
    nsq_close(f);
    /* tokenizer.model alone: not supported, said so */
    write_model(path, NSQ_TOK_SENTENCEPIECE, 1, sp_names + 1, sp_data + 1, sp_sizes + 1);
    assert_ok(nsq_open(path, 0, &f, &d));
    memset(&d, 0, sizeof d);
    assert_status(nsq_tokenizer_load(f, &t, &d), NSQ_E_UNSUPPORTED);
    assert_diag(&d, NSQ_E_UNSUPPORTED, NULL);
    nsq_close(f);
    /* GPT-2 files */
    size_t vl, gl;
    uint8_t *vocab = tu_must_read(GPT2_DIR "/vocab.json", &vl), *merges = tu_must_read(GPT2_DIR "/merges.txt", &gl);
    const char *g_names[] = {"merges.txt", "vocab.json"};
    const uint8_t *g_data[] = {merges, vocab};
    size_t g_sizes[] = {gl, vl};
    write_model(path, NSQ_TOK_GPT2_BPE, 2, g_names, g_data, g_sizes);
    assert_ok(nsq_open(path, 0, &f, &d));
    assert_ok(nsq_tokenizer_load(f, &t, &d));
    EXPECT(t, "Hello world", 40, 486, 79, 1817);
    nsq_tokenizer_free(t);
    nsq_close(f);
    /* the test models' empty BPE: loads, and drops every character */
    assert_ok(tu_write_minimal_model(path, 1, &d));
    assert_ok(nsq_open(path, 0, &f, &d));
    assert_ok(nsq_tokenizer_load(f, &t, &d));
    assert_int_equal(nsq_tokenizer_vocab_size(t), 0);
    expect_ids(t, "abc", 3, 1, NULL, 0);
    nsq_tokenizer_free(t);
    nsq_close(f);
    /* the conformance file's GPT-2 tokenizer merges "a b" into a token it lacks */
    assert_ok(nsq_open("fixtures/conformance/gpt2-tok.nsq", 0, &f, &d));
    memset(&d, 0, sizeof d);
    assert_status(nsq_tokenizer_load(f, &t, &d), NSQ_E_TOKENIZER);
    assert_null(t);
    assert_non_null(strstr(d.message, "merges.txt"));
    nsq_close(f);
    assert_status(nsq_tokenizer_load(NULL, &t, &d), NSQ_E_ARG);
    free(json), free(cfg), free(model), free(vocab), free(merges);
    free(path);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_tiny_llama),
        cmocka_unit_test(test_vectors_tiny_gpt2),
        cmocka_unit_test(test_vectors_gpt2_real),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_streaming),
        cmocka_unit_test(test_add_special),
        cmocka_unit_test(test_special_in_text),
        cmocka_unit_test(test_decode_skip_special),
        cmocka_unit_test(test_token_bytes),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_gpt2_files_match_json),
        cmocka_unit_test(test_split_behaviors),
        cmocka_unit_test(test_merges_and_model_options),
        cmocka_unit_test(test_normalizers),
        cmocka_unit_test(test_metaspace),
        cmocka_unit_test(test_added_token_options),
        cmocka_unit_test(test_byte_level_options),
        cmocka_unit_test(test_tokenizer_config),
        cmocka_unit_test(test_malformed_json),
        cmocka_unit_test(test_malformed_files),
        cmocka_unit_test(test_mutated_json),
        cmocka_unit_test(test_model_references),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_load_from_nsq),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
