/* test_tok_hostile.c - the tokenizer against hostile files and texts: ids
 * that no embedding row backs, huge counts, growth and regex bombs, invalid
 * files, and running out of memory at each allocation. Each case is one the
 * tokenizer once got wrong (an id past nsq_tokenizer_vocab_size(), a hang, an
 * unbounded allocation or an unclear error). */
#include "testutil.h"

#include <dlfcn.h>

/*-************************************
 *  Helpers
 **************************************/
/* JSON written with ' for " (none of the tokens here needs an apostrophe). */
static char *q(const char *s)
{
    char *p = strdup(s);
    for (char *c = p; *c; c++)
        if (*c == '\'') *c = '"';
    return p;
}

/* A tokenizer from tokenizer.json (and tokenizer_config.json when config is
 * not NULL), both raw JSON of n / cn bytes; the status must be want. */
static nsq_tokenizer *load_raw(const char *json, size_t n, const char *config, size_t cn, nsq_status want, nsq_diag *d)
{
    const char *names[] = {"tokenizer.json", "tokenizer_config.json"};
    const uint8_t *data[] = {(const uint8_t *)json, (const uint8_t *)config};
    uint64_t sizes[] = {n, cn};
    nsq_tokenizer *t = (nsq_tokenizer *)1;
    memset(d, 0, sizeof *d);
    nsq_status st = nsq_tokenizer_from_files(NSQ_TOK_HF_JSON, config ? 2 : 1, names, data, sizes, &t, d);
    if (st != want)
        fail_msg("%.300s\n-> %s (%s), expected %s", json, nsq_status_name(st), d->message, nsq_status_name(want));
    if (st) {
        assert_null(t);
        assert_diag(d, st, NULL);
    }
    return t;
}

/* The same from q() form. */
static nsq_tokenizer *load(const char *json_q, const char *config_q, nsq_status want, nsq_diag *d)
{
    char *j = q(json_q), *c = config_q ? q(config_q) : NULL;
    nsq_tokenizer *t = load_raw(j, strlen(j), c, c ? strlen(c) : 0, want, d);
    free(j);
    free(c);
    return t;
}

static void expect_msg(const nsq_diag *d, const char *part)
{
    if (!strstr(d->message, part)) fail_msg("message \"%s\" does not say \"%s\"", d->message, part);
}

/* Encodes s; on success every id is below the vocabulary size and has bytes. */
static nsq_status encode(const nsq_tokenizer *t, const char *s, size_t len, int add_special, int32_t **ids, size_t *n,
                         nsq_diag *d)
{
    nsq_status st = nsq_tokenize_diag(t, s, len, add_special, ids, n, d);
    if (st) {
        assert_null(*ids);
        assert_diag(d, st, NULL);
        return st;
    }
    for (size_t i = 0; i < *n; i++) {
        size_t bl;
        if ((uint32_t)(*ids)[i] >= nsq_tokenizer_vocab_size(t))
            fail_msg("id %d is not below the vocabulary size %u", (*ids)[i], nsq_tokenizer_vocab_size(t));
        assert_ok(nsq_token_bytes(t, -1, (*ids)[i], NULL, 0, &bl));
    }
    return st;
}

/* Encodes s, which must give want[0..n). */
static void expect_ids(const nsq_tokenizer *t, const char *s, int add_special, const int32_t *want, size_t n)
{
    int32_t *ids;
    size_t k;
    nsq_diag d;
    assert_ok(encode(t, s, strlen(s), add_special, &ids, &k, &d));
    int same = k == n;
    for (size_t i = 0; same && i < n; i++) same = ids[i] == want[i];
    if (!same) fail_msg("\"%.60s\": %zu ids (first %d), expected %zu (first %d)", s, k, k ? ids[0] : -1, n, want[0]);
    free(ids);
}
#define EXPECT(t, s, special, ...)                                                                            \
    do {                                                                                                      \
        const int32_t w_[] = {__VA_ARGS__};                                                                   \
        expect_ids((t), (s), (special), w_, sizeof w_ / sizeof w_[0]);                                        \
    } while (0)

/* A growing text buffer (open_memstream). */
typedef struct {
    char *p;
    size_t n;
    FILE *f;
} sbuf;

static void sb_open(sbuf *b)
{
    b->p = NULL;
    b->n = 0;
    assert_non_null(b->f = open_memstream(&b->p, &b->n));
}

static void sb_close(sbuf *b) { assert_int_equal(fclose(b->f), 0); }

/* A few seconds at most in the plain build; a hang (the bugs these catch
 * were quadratic) ends the test run instead of stalling it. */
static void deadline(unsigned seconds) { alarm(seconds); }

#define V_AB "'model':{'type':'BPE','vocab':{'a':0,'b':1},'merges':[]}"
#define TEMPLATE(ids)                                                                                         \
    "{" V_AB ",'post_processor':{'type':'TemplateProcessing','single':[{'SpecialToken':{'id':'<x>','type_id':0}}," \
    "{'Sequence':{'id':'A','type_id':0}}],'special_tokens':{'<x>':{'id':'<x>','ids':[" ids "],'tokens':['<x>']}}}"

/*-************************************
 *  Ids outside the vocabulary
 **************************************/
/* A post-processor id must be a token: past the vocabulary, it used to reach
 * the runtime's embedding lookup. */
static void test_post_processor_ids(void **state)
{
    (void)state;
    nsq_diag d;
    load(TEMPLATE("16000000") "}", NULL, NSQ_E_LIMIT, &d);
    expect_msg(&d, "16000000");
    load(TEMPLATE("5") "}", NULL, NSQ_E_TOKENIZER, &d);
    expect_msg(&d, "post-processor id 5 is not a token of the vocabulary");
    load(TEMPLATE("1,2") "}", NULL, NSQ_E_TOKENIZER, &d);
    load("{" V_AB ",'post_processor':{'type':'RobertaProcessing','cls':['<s>',16000000],'sep':['</s>',1]}}", NULL,
         NSQ_E_LIMIT, &d);
    load("{" V_AB ",'post_processor':{'type':'RobertaProcessing','cls':['<s>',0],'sep':['</s>',2]}}", NULL,
         NSQ_E_TOKENIZER, &d);
    expect_msg(&d, "post-processor id 2");
    load("{" V_AB ",'post_processor':{'type':'BertProcessing','cls':['<s>',0],'sep':['</s>',3]}}", NULL,
         NSQ_E_TOKENIZER, &d);
    load("{" V_AB ",'post_processor':{'type':'Sequence','processors':[{'type':'ByteLevel'},"
         "{'type':'BertProcessing','cls':['<s>',1],'sep':['</s>',4000000]}]}}", NULL, NSQ_E_TOKENIZER, &d);
    load("{" V_AB ",'post_processor':{'type':'BertProcessing','cls':['<s>'],'sep':['</s>',0]}}", NULL,
         NSQ_E_TOKENIZER, &d);
    /* real tokens: vocabulary entries and added tokens */
    nsq_tokenizer *t = load("{" V_AB ",'post_processor':{'type':'BertProcessing','cls':['a',1],'sep':['b',0]}}", NULL,
                            NSQ_OK, &d);
    EXPECT(t, "ab", 1, 1, 0, 1, 0);
    nsq_tokenizer_free(t);
    t = load(TEMPLATE("7") ",'added_tokens':[{'id':7,'content':'<x>','special':true}]}", NULL, NSQ_OK, &d);
    assert_int_equal(nsq_tokenizer_vocab_size(t), 8);
    EXPECT(t, "ab", 1, 7, 0, 1);
    nsq_tokenizer_free(t);
    /* more than 256 ids on one side */
    sbuf b;
    sb_open(&b);
    fputs("{'model':{'type':'BPE','vocab':{'a':0},'merges':[]},'post_processor':{'type':'TemplateProcessing','single':"
          "[{'SpecialToken':{'id':'<x>'}}],'special_tokens':{'<x>':{'id':'<x>','ids':[0", b.f);
    for (int i = 0; i < 256; i++) fputs(",0", b.f);
    fputs("]}}}}", b.f);
    sb_close(&b);
    load(b.p, NULL, NSQ_E_LIMIT, &d);
    expect_msg(&d, "256");
    free(b.p);
}

/* Added token ids may extend the vocabulary, up to 2^22 - 1. */
static void test_added_token_ids(void **state)
{
    (void)state;
    nsq_diag d;
    load("{" V_AB ",'added_tokens':[{'id':16000000,'content':'<x>','special':true}]}", NULL, NSQ_E_LIMIT, &d);
    expect_msg(&d, "16000000");
    load("{" V_AB ",'added_tokens':[{'id':4194304,'content':'<x>'}]}", NULL, NSQ_E_LIMIT, &d);
    load("{" V_AB ",'added_tokens':[{'id':-1,'content':'<x>'}]}", NULL, NSQ_E_TOKENIZER, &d);
    nsq_tokenizer *t = load("{" V_AB ",'added_tokens':[{'id':4194303,'content':'<x>','special':true}]}", NULL, NSQ_OK, &d);
    assert_int_equal(nsq_tokenizer_vocab_size(t), 1u << 22);
    EXPECT(t, "a<x>b", 0, 0, 4194303, 1);
    size_t len;
    assert_status(nsq_token_bytes(t, -1, 4194302, NULL, 0, &len), NSQ_E_ARG); /* a gap: no token */
    nsq_tokenizer_free(t);
    load("{'model':{'type':'BPE','vocab':{'a':99999999999},'merges':[]}}", NULL, NSQ_E_LIMIT, &d);

    /* tokenizer_config.json's added_tokens_decoder, with GPT-2's files */
    static const struct {
        const char *key;
        nsq_status want;
    } keys[] = {{"16000000", NSQ_E_LIMIT}, {"99999999999999999999999", NSQ_E_LIMIT}, {"+5", NSQ_E_TOKENIZER},
                {" 5", NSQ_E_TOKENIZER},  {"5x", NSQ_E_TOKENIZER},              {"", NSQ_E_TOKENIZER},
                {"3", NSQ_OK}};
    const char *names[] = {"vocab.json", "merges.txt", "tokenizer_config.json"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char cfg[256];
        snprintf(cfg, sizeof cfg, "{\"added_tokens_decoder\":{\"%s\":{\"content\":\"<x>\",\"special\":true}}}",
                 keys[i].key);
        const uint8_t *data[] = {(const uint8_t *)"{\"a\":0,\"b\":1,\"ab\":2}", (const uint8_t *)"a b\n",
                                 (const uint8_t *)cfg};
        uint64_t sizes[] = {strlen((const char *)data[0]), 4, strlen(cfg)};
        nsq_tokenizer *g = NULL;
        memset(&d, 0, sizeof d);
        nsq_status st = nsq_tokenizer_from_files(NSQ_TOK_GPT2_BPE, 3, names, data, sizes, &g, &d);
        if (st != keys[i].want)
            fail_msg("key \"%s\": %s (%s), expected %s", keys[i].key, nsq_status_name(st), d.message,
                     nsq_status_name(keys[i].want));
        if (!st) {
            assert_int_equal(nsq_tokenizer_vocab_size(g), 4);
            EXPECT(g, "ab<x>", 1, 2, 3);
        }
        nsq_tokenizer_free(g);
    }
}

/* Whatever the tokenizer adds or finds, every id is below the vocabulary size. */
static void test_ids_below_vocab_size(void **state)
{
    (void)state;
    nsq_diag d;
    const char *cfg = "{'add_bos_token':true,'add_eos_token':true,'bos_token':'<s>','eos_token':{'content':'</s>'}}";
    nsq_tokenizer *t = load("{'model':{'type':'BPE','vocab':{'a':0,'b':1,'ab':2,'<unk>':9,'<0x41>':12},"
                            "'merges':['a b'],'unk_token':'<unk>','byte_fallback':true},"
                            "'added_tokens':[{'id':20,'content':'<s>','special':true},{'id':30,'content':'</s>'},"
                            "{'id':1,'content':'bb','lstrip':true,'rstrip':true}]}",
                            cfg, NSQ_OK, &d);
    assert_int_equal(nsq_tokenizer_vocab_size(t), 31);
    EXPECT(t, "ab <s>A x bb </s>", 1, 20, 2, 9, 20, 12, 9, 9, 1, 30, 30);
    int32_t *ids;
    size_t n;
    const char *odd = "\xff\xfe</s><s>\xe2\x96\x81zzz";
    assert_ok(encode(t, odd, strlen(odd), 1, &ids, &n, &d)); /* checks every id */
    free(ids);
    nsq_tokenizer_free(t);
    /* a BOS that names no token is refused at load */
    load("{'model':{'type':'BPE','vocab':{'a':0},'merges':[]}}", "{'add_bos_token':true,'bos_token':'<zz>'}",
         NSQ_E_TOKENIZER, &d);
}

/*-************************************
 *  Counts: linear, and capped
 **************************************/
/* 10^6 added tokens took hours (a linear search per token, an insertion sort
 * per first byte, and every candidate tried at each byte of the text). */
static void test_many_added_tokens(void **state)
{
    (void)state;
    enum { N = 1000000 };
    sbuf b;
    sb_open(&b);
    fputs("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"added_tokens\":[", b.f);
    for (int i = 0; i < N; i++) fprintf(b.f, "%s{\"id\":%d,\"content\":\"<t%d>\",\"special\":true}", i ? "," : "", i + 1, i);
    fputs("]}", b.f);
    sb_close(&b);
    deadline(TU_ASAN ? 300 : 60);
    nsq_diag d;
    nsq_tokenizer *t = load_raw(b.p, b.n, NULL, 0, NSQ_OK, &d);
    free(b.p);
    assert_int_equal(nsq_tokenizer_vocab_size(t), N + 1);
    EXPECT(t, "<t999999>a<t5><t12<t0>", 0, N, 0, 6, 1);
    size_t len = 1 << 20; /* a text of the byte every token starts with */
    char *s = malloc(len);
    memset(s, '<', len);
    int32_t *ids;
    size_t n;
    assert_ok(encode(t, s, len, 0, &ids, &n, &d));
    assert_int_equal(n, 0);
    free(ids);
    free(s);
    nsq_tokenizer_free(t);
    deadline(0);
}

/* Duplicates: a later entry for an id replaces the earlier one; of two ids
 * with the same content, the first is found. Leftmost, then longest. */
static void test_added_token_order(void **state)
{
    (void)state;
    nsq_diag d;
    nsq_tokenizer *t = load("{'model':{'type':'BPE','vocab':{'a':0,'b':1,'c':2,'d':3},'merges':[]},'added_tokens':["
                            "{'id':10,'content':'x'},{'id':11,'content':'y'},{'id':10,'content':'z'},"
                            "{'id':12,'content':'w'},{'id':13,'content':'w'},"
                            "{'id':20,'content':'ab'},{'id':21,'content':'abc'},{'id':22,'content':'bcd'}]}",
                            NULL, NSQ_OK, &d);
    EXPECT(t, "xzyw", 0, 10, 11, 12);
    EXPECT(t, "abcd", 0, 21, 3);
    EXPECT(t, "dbcd", 0, 3, 22);
    EXPECT(t, "aab", 0, 0, 20);
    nsq_tokenizer_free(t);
}

/* An lstrip token that is a space scanned back over the whole run of spaces
 * before each match: quadratic in the run. */
static void test_lstrip_run(void **state)
{
    (void)state;
    nsq_diag d;
    nsq_tokenizer *t = load("{'model':{'type':'BPE','vocab':{'a':0},'merges':[]},'added_tokens':["
                            "{'id':1,'content':' ','lstrip':true},{'id':2,'content':'a','lstrip':true}]}",
                            NULL, NSQ_OK, &d);
    EXPECT(t, "   a", 0, 1, 1, 1, 2);
    size_t len = 400000;
    char *s = malloc(len);
    memset(s, ' ', len);
    int32_t *ids;
    size_t n;
    deadline(TU_ASAN ? 120 : 20);
    assert_ok(encode(t, s, len, 0, &ids, &n, &d));
    deadline(0);
    assert_int_equal(n, len);
    free(ids);
    free(s);
    nsq_tokenizer_free(t);
}

/* More added-token content than 16 MiB, or an over-long regex. */
static void test_size_caps(void **state)
{
    (void)state;
    nsq_diag d;
    size_t big = 9u << 20;
    sbuf b;
    sb_open(&b);
    fputs("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"added_tokens\":[", b.f);
    for (int k = 0; k < 2; k++) {
        fprintf(b.f, "%s{\"id\":%d,\"content\":\"", k ? "," : "", k + 1);
        for (size_t i = 0; i < big; i++) fputc('x', b.f);
        fputs("\"}", b.f);
    }
    fputs("]}", b.f);
    sb_close(&b);
    load_raw(b.p, b.n, NULL, 0, NSQ_E_LIMIT, &d);
    expect_msg(&d, "16 MiB");
    free(b.p);

    sb_open(&b);
    fputs("{'model':{'type':'BPE','vocab':{'a':0},'merges':[]},'pre_tokenizer':{'type':'Split','pattern':{'Regex':'", b.f);
    for (int i = 0; i < 16385; i++) fputc('a', b.f);
    fputs("'},'behavior':'Isolated'}}", b.f);
    sb_close(&b);
    load(b.p, NULL, NSQ_E_LIMIT, &d);
    expect_msg(&d, "16385 bytes");
    free(b.p);
}

/*-************************************
 *  Growth and regex work
 **************************************/
#define A10 "aaaaaaaaaa"
#define BOMB(kind, list, item) "'" kind "':{'type':'Sequence','" list "':[" item "," item "," item "," item "]}"
#define REP100 "{'type':'Replace','pattern':{'String':'a'},'content':'" A10 A10 A10 A10 A10 A10 A10 A10 A10 A10 "'}"

/* Replace normalizers and decoders chained could grow a text 100^4 times:
 * out of memory instead of an error. */
static void test_growth(void **state)
{
    (void)state;
    nsq_diag d;
    deadline(TU_ASAN ? 120 : 30);
    nsq_tokenizer *t = load("{'model':{'type':'BPE','vocab':{'a':0},'merges':[]}," BOMB("normalizer", "normalizers", REP100)
                            "," BOMB("decoder", "decoders", REP100) "}", NULL, NSQ_OK, &d);
    int32_t *ids;
    size_t n;
    assert_status(encode(t, "aaaa", 4, 0, &ids, &n, &d), NSQ_E_LIMIT);
    expect_msg(&d, "normalizer Replace would make the text longer than 16 x its length + 1024 bytes");
    assert_ok(encode(t, "bbbb", 4, 0, &ids, &n, &d)); /* nothing to replace */
    free(ids);
    const int32_t zeros[] = {0, 0, 0};
    char *text, buf[8];
    size_t len;
    assert_status(nsq_detokenize(t, zeros, 3, 0, &text, &len), NSQ_E_LIMIT);
    assert_null(text);
    assert_status(nsq_token_bytes(t, -1, 0, buf, sizeof buf, &len), NSQ_E_LIMIT);
    nsq_tokenizer_free(t);
    /* normalized added tokens go through the normalizers at load */
    load("{'model':{'type':'BPE','vocab':{'a':0},'merges':[]}," BOMB("normalizer", "normalizers", REP100)
         ",'added_tokens':[{'id':1,'content':'aa','normalized':true}]}", NULL, NSQ_E_LIMIT, &d);
    expect_msg(&d, "added token 1 cannot be normalized");
    /* real growth passes: NFKD makes 11 x of U+FDFA, the Replace 3 x of each space */
    t = load("{'model':{'type':'BPE','vocab':{'a':0},'merges':[]},'normalizer':{'type':'Sequence','normalizers':["
             "{'type':'NFKD'},{'type':'Replace','pattern':{'String':' '},'content':'\xe2\x96\x81'}]}}", NULL, NSQ_OK, &d);
    char s[3 * 1000];
    for (int i = 0; i < 1000; i++) memcpy(s + 3 * i, "\xef\xb7\xba", 3);
    assert_ok(encode(t, s, sizeof s, 0, &ids, &n, &d));
    free(ids);
    nsq_tokenizer_free(t);
    deadline(0);
}

/* Streaming decoders hand raw bytes (here half of a UTF-8 sequence) to a
 * regex decoder: PCRE2 must not read them as UTF-8 it was promised
 * (a SEGV with \b, an error with .), they just never match. */
static void test_regex_on_raw_bytes(void **state)
{
    (void)state;
    static const char *const pats[] = {"\\\\b", ".", "\\\\X", "[^a]"};
    for (size_t k = 0; k < sizeof pats / sizeof *pats; k++) {
        char json[512];
        snprintf(json, sizeof json,
                 "{'model':{'type':'BPE','vocab':{'\\u00c3':0,'a':1},'merges':[]},'decoder':{'type':'Sequence',"
                 "'decoders':[{'type':'ByteLevel'},{'type':'Replace','pattern':{'Regex':'%s'},'content':'-'}]}}",
                 pats[k]);
        nsq_diag d;
        nsq_tokenizer *t = load(json, NULL, NSQ_OK, &d);
        char buf[8];
        size_t len;
        assert_ok(nsq_token_bytes(t, -1, 0, buf, sizeof buf, &len));
        assert_int_equal(len, 1);
        assert_int_equal((uint8_t)buf[0], 0xC3);
        nsq_tokenizer_free(t);
    }
}

#define SLOW_RE "(\\\\w+\\\\s?)*$"

/* A regex that backtracks exponentially stops at PCRE2's match limit, and the
 * message says so (it said "the format's limits"). */
static void test_regex_limit(void **state)
{
    (void)state;
    nsq_diag d;
    char text[64];
    memset(text, 'a', 40);
    text[40] = '!';
    int32_t *ids;
    size_t n;
    nsq_tokenizer *t = load("{'model':{'type':'BPE','vocab':{'a':0},'merges':[]},'pre_tokenizer':{'type':'Split',"
                            "'pattern':{'Regex':'" SLOW_RE "'},'behavior':'Isolated'}}", NULL, NSQ_OK, &d);
    assert_status(encode(t, text, 41, 0, &ids, &n, &d), NSQ_E_LIMIT);
    expect_msg(&d, "the pre-tokenizer regex exceeded its match limit on this text");
    assert_ok(encode(t, "a a", 3, 0, &ids, &n, &d));
    free(ids);
    nsq_tokenizer_free(t);
    t = load("{'model':{'type':'BPE','vocab':{'a':0},'merges':[]},'normalizer':{'type':'Replace',"
             "'pattern':{'Regex':'" SLOW_RE "'},'content':''},'decoder':{'type':'Replace',"
             "'pattern':{'Regex':'" SLOW_RE "'},'content':''}}", NULL, NSQ_OK, &d);
    assert_status(encode(t, text, 41, 0, &ids, &n, &d), NSQ_E_LIMIT);
    expect_msg(&d, "the normalizer Replace regex exceeded its match limit");
    nsq_tokenizer_free(t);
    /* the decoder's regex sees the token strings: a vocabulary of long ones */
    sbuf b;
    sb_open(&b);
    fputs("{'model':{'type':'BPE','vocab':{'", b.f);
    fwrite(text, 1, 41, b.f);
    fputs("':0},'merges':[]},'decoder':{'type':'Replace','pattern':{'Regex':'" SLOW_RE "'},'content':''}}", b.f);
    sb_close(&b);
    t = load(b.p, NULL, NSQ_OK, &d);
    free(b.p);
    const int32_t zero = 0;
    char *s;
    size_t len;
    assert_status(nsq_detokenize(t, &zero, 1, 0, &s, &len), NSQ_E_LIMIT);
    nsq_tokenizer_free(t);
}

/*-************************************
 *  Invalid files
 **************************************/
/* The converter checks a tokenizer with nsq_tokenizer_from_files before it
 * embeds it: each of these must fail, saying why. */
static void test_invalid_files(void **state)
{
    (void)state;
    static const struct {
        const char *json, *says;
    } cases[] = {
        {"", "tokenizer.json is empty"},
        {" \n", "invalid JSON"},
        {"null", "invalid JSON"},
        {"hello", "invalid JSON"},
        {"{'model':", "invalid JSON"},
        {"[1,2]", "not a JSON object"},
        {"{'model':{'type':'BPE','vocab':{'a':0},'merges':[]},'pre_tokenizer':{'type':'Split',"
         "'pattern':{'Regex':'(a'},'behavior':'Isolated'}}", "pre-tokenizer Split regex: missing closing parenthesis"},
        {"{'model':{'type':'BPE','vocab':{'a':0},'merges':[]},'normalizer':{'type':'Replace',"
         "'pattern':{'Regex':'[z-a]'},'content':''}}", "normalizer Replace regex"},
        {"{'model':{'type':'BPE','vocab':{'a':0},'merges':[]},'decoder':{'type':'Replace',"
         "'pattern':{'Regex':'\\\\'},'content':''}}", "decoder Replace regex"},
        {"{'model':{'type':'BPE','vocab':{'a':0},'merges':[]},'pre_tokenizer':{'type':'Split',"
         "'pattern':{'Regex':'\\\\p{Nonsense}'},'behavior':'Isolated'}}", "regex"},
    };
    nsq_diag d;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        load(cases[i].json, NULL, NSQ_E_TOKENIZER, &d);
        expect_msg(&d, cases[i].says);
    }
    load("{'model':{'type':'BPE','vocab':{'a':0},'merges':[]}}", "", NSQ_E_TOKENIZER, &d);
    expect_msg(&d, "tokenizer_config.json is empty");
    load_raw("{\"a\xff\":0}", 8, NULL, 0, NSQ_E_TOKENIZER, &d); /* not UTF-8 */
    /* a file nsq will not parse: its size is checked before anything is read */
    size_t big = (64u << 20) + 1;
    char *p = malloc(big);
    memset(p, ' ', big);
    load_raw(p, big, NULL, 0, NSQ_E_LIMIT, &d);
    expect_msg(&d, "64 MiB");
    free(p);
}

/*-************************************
 *  Out of memory
 **************************************/
#if !TU_ASAN
/* The whole process's allocator, replaced (glibc supports it) so that one
 * chosen allocation fails and live blocks are counted: exported, for the
 * shared libraries (PCRE2, utf8proc) too. Not jansson's allocations: jansson
 * 2.14 aborts (an assert in lex_scan_string) when one fails while it reads a
 * string. The sanitizer build has its own allocator: there the sweep is
 * skipped. */
#define EXPORT __attribute__((visibility("default")))
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
static volatile long fail_at = -1; /* allocations to go before the failing one; -1: never */
static volatile long live;          /* volatile: the compiler knows malloc, not that it counts */

static int fail_now(const void *caller)
{
    Dl_info in;
    if (fail_at < 0 || (dladdr(caller, &in) && in.dli_fname && strstr(in.dli_fname, "libjansson"))) return 0;
    return fail_at-- == 0;
}

EXPORT void *malloc(size_t n)
{
    void *p = fail_now(__builtin_return_address(0)) ? NULL : __libc_malloc(n);
    live += p != NULL;
    return p;
}

EXPORT void *calloc(size_t n, size_t m)
{
    void *p = fail_now(__builtin_return_address(0)) ? NULL : __libc_calloc(n, m);
    live += p != NULL;
    return p;
}

EXPORT void *realloc(void *old, size_t n)
{
    const void *caller = __builtin_return_address(0);
    if (!n && old) {
        free(old);
        return NULL;
    }
    void *p = fail_now(caller) ? NULL : __libc_realloc(old, n);
    live += !old && p;
    return p;
}

EXPORT void free(void *p)
{
    live -= p != NULL;
    __libc_free(p);
}

/* One pass: load, encode, decode, stream. Returns the first status that is not
 * NSQ_OK (which must then be NSQ_E_NOMEM, saying so). */
static nsq_status oom_pass(const char *const *names, const uint8_t *const *data, const uint64_t *sizes, uint32_t n,
                           nsq_tokenizer_kind kind, const char *text, nsq_diag *d)
{
    nsq_tokenizer *t = NULL;
    memset(d, 0, sizeof *d);
    nsq_status st = nsq_tokenizer_from_files(kind, n, names, data, sizes, &t, d);
    int32_t *ids = NULL;
    size_t k = 0, len;
    char *s = NULL, buf[64];
    if (!st) st = nsq_tokenize_diag(t, text, strlen(text), 1, &ids, &k, d);
    if (st == NSQ_E_NOMEM && (d->status != st || !strstr(d->message, "out of memory")))
        st = NSQ_E_ARG; /* the message must say it */
    if (!st) st = nsq_detokenize(t, ids, k, 0, &s, &len);
    for (size_t i = 0; !st && i < k; i++) st = nsq_token_bytes(t, i ? ids[i - 1] : -1, ids[i], buf, sizeof buf, &len);
    free(s);
    free(ids);
    nsq_tokenizer_free(t);
    return st;
}

static void oom_sweep(const char *const *names, const uint8_t *const *data, const uint64_t *sizes, uint32_t n,
                      nsq_tokenizer_kind kind, const char *text)
{
    nsq_diag d;
    assert_ok(oom_pass(names, data, sizes, n, kind, text, &d)); /* libraries set up what they keep */
    long base = live, k;
    assert_ok(oom_pass(names, data, sizes, n, kind, text, &d));
    assert_int_equal(live, base);
    for (k = 0;; k++) {
        fail_at = k;
        nsq_status st = oom_pass(names, data, sizes, n, kind, text, &d);
        int hit = fail_at < 0;
        fail_at = -1;
        if (!hit) {
            assert_ok(st);
            break;
        }
        if (st != NSQ_E_NOMEM && st != NSQ_OK) /* OK: recovered (PCRE2 runs a regex without JIT) */
            fail_msg("allocation %ld failed: %s (%s), expected NSQ_E_NOMEM", k, nsq_status_name(st), d.message);
        if (live != base) fail_msg("allocation %ld failed: %ld blocks leaked", k, live - base);
    }
    assert_true(k > 50); /* the sweep reached past loading */
}

/* Every allocation of loading, encoding and decoding, made to fail in turn:
 * always NSQ_E_NOMEM (it was a crash, a leak or another status). */
static void test_out_of_memory(void **state)
{
    (void)state;
    char *j = q("{'added_tokens':[{'id':0,'content':'<s>','special':true,'lstrip':true},"
                "{'id':9,'content':'ab','normalized':true,'single_word':true}],"
                "'normalizer':{'type':'Sequence','normalizers':[{'type':'NFKC'},{'type':'Lowercase'},"
                "{'type':'Prepend','prepend':'_'},{'type':'Replace','pattern':{'Regex':'\\\\s'},'content':'_'}]},"
                "'pre_tokenizer':{'type':'Sequence','pretokenizers':[{'type':'Split','pattern':{'Regex':'\\\\d'},"
                "'behavior':'MergedWithNext'},{'type':'Metaspace','replacement':'_','prepend_scheme':'first'},"
                "{'type':'ByteLevel','add_prefix_space':false}]},"
                "'post_processor':{'type':'TemplateProcessing','single':[{'SpecialToken':{'id':'<s>'}},"
                "{'Sequence':{'id':'A'}}],'special_tokens':{'<s>':{'id':'<s>','ids':[0]}}},"
                "'decoder':{'type':'Sequence','decoders':[{'type':'Replace','pattern':{'Regex':'_+'},'content':' '},"
                "{'type':'ByteFallback'},{'type':'Fuse'},{'type':'Strip','content':' ','start':1,'stop':1},"
                "{'type':'ByteLevel'}]},"
                "'model':{'type':'BPE','vocab':{'<s>':0,'_':1,'a':2,'b':3,'_a':4,'ab':5,'<0x31>':6,'1':7,'<0xC3>':8},"
                "'merges':[['_','a'],'a b'],'byte_fallback':true,'unk_token':'a','fuse_unk':true}}");
    const char *names[] = {"tokenizer.json"};
    const uint8_t *data[] = {(const uint8_t *)j};
    uint64_t sizes[] = {strlen(j)};
    oom_sweep(names, data, sizes, 1, NSQ_TOK_HF_JSON, "<s> ab1 A\xC3\xA9 b  ab");
    free(j);
    const char *gnames[] = {"vocab.json", "merges.txt", "tokenizer_config.json"};
    const char *cfg = "{\"add_bos_token\":true,\"bos_token\":\"<|endoftext|>\",\"added_tokens_decoder\":"
                      "{\"9\":{\"content\":\"<x>\",\"special\":true}}}";
    const uint8_t *gdata[] = {(const uint8_t *)"{\"a\":0,\"b\":1,\"ab\":2,\"<|endoftext|>\":3,\"\xc4\xa0\":4}",
                              (const uint8_t *)"#version: 0.2\na b\n", (const uint8_t *)cfg};
    uint64_t gsizes[] = {strlen((const char *)gdata[0]), strlen((const char *)gdata[1]), strlen(cfg)};
    oom_sweep(gnames, gdata, gsizes, 3, NSQ_TOK_GPT2_BPE, "ab <x>ab b");
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_post_processor_ids),
        cmocka_unit_test(test_added_token_ids),
        cmocka_unit_test(test_ids_below_vocab_size),
        cmocka_unit_test(test_many_added_tokens),
        cmocka_unit_test(test_added_token_order),
        cmocka_unit_test(test_lstrip_run),
        cmocka_unit_test(test_size_caps),
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_regex_limit),
        cmocka_unit_test(test_regex_on_raw_bytes),
        cmocka_unit_test(test_invalid_files),
#if !TU_ASAN /* the sanitizer's allocator cannot be replaced */
        cmocka_unit_test(test_out_of_memory),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
