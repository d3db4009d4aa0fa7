/* tok_json.c - builds a tokenizer from Hugging Face tokenizer.json, or from
 * a byte-level BPE's vocab.json + merges.txt, plus tokenizer_config.json when present.
 *
 * Supported: model BPE (vocab, merges as "a b" strings or [a, b] pairs,
 * unk_token, fuse_unk, byte_fallback, ignore_merges, continuing_subword_prefix,
 * end_of_word_suffix); normalizers NFC, NFD, NFKC, NFKD, Lowercase, Prepend,
 * Replace, Strip, Sequence (and Precompiled with an empty charsmap);
 * pre-tokenizers ByteLevel, Metaspace, Split, Whitespace, WhitespaceSplit,
 * Digits, Punctuation, CharDelimiterSplit, BertPreTokenizer, Sequence;
 * decoders ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip,
 * BPEDecoder, Sequence; post-processors TemplateProcessing, RobertaProcessing,
 * BertProcessing, ByteLevel, Sequence. Anything else is NSQ_E_UNSUPPORTED with
 * its name; malformed files are NSQ_E_TOKENIZER. */
#include "tok_internal.h"

#include <jansson.h>
#include <stdio.h>

#define FAIL(...) nsq__fail(d, NSQ_E_TOKENIZER, UINT64_MAX, "", __VA_ARGS__)
#define LIMIT(...) nsq__fail(d, NSQ_E_LIMIT, UINT64_MAX, "", __VA_ARGS__)
#define UNSUP(...) nsq__fail(d, NSQ_E_UNSUPPORTED, UINT64_MAX, "", __VA_ARGS__)
#define NOMEM() nsq__fail(d, NSQ_E_NOMEM, UINT64_MAX, "", "out of memory building the tokenizer")

/* The byte-level BPE pre-tokenizer's pattern: ByteLevel's default split
 * (use_regex) and the split of the vocab.json + merges.txt kind. */
static const char bytelevel_regex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* Copies a string (NUL-terminated, with its length). */
static char *dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

static int get_bool(const json_t *o, const char *key, int dflt)
{
    const json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static const char *get_str(const json_t *o, const char *key, size_t *len)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_string(v)) return NULL;
    if (len) *len = json_string_length(v);
    return json_string_value(v);
}

/* A token id value (what: "FILE: the thing that has it"), below NSQ__TOK_MAX_ID. */
static nsq_status get_id(const json_t *v, uint32_t *id, const char *what, nsq_diag *d)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0) return FAIL("%s has no valid id (an integer >= 0)", what);
    if (json_integer_value(v) >= (json_int_t)NSQ__TOK_MAX_ID)
        return LIMIT("%s has id %lld; nsq allows ids up to %u", what, (long long)json_integer_value(v),
                     NSQ__TOK_MAX_ID - 1);
    *id = (uint32_t)json_integer_value(v);
    return NSQ_OK;
}

/*-************************************
 *  Vocabulary and merges
 **************************************/
static nsq_status load_vocab(nsq_tokenizer *t, const json_t *v, const char *what, nsq_diag *d)
{
    if (!json_is_object(v)) return FAIL("%s: the vocabulary is not an object", what);
    if (json_object_size(v) > NSQ__TOK_MAX_ID)
        return LIMIT("%s: the vocabulary has %zu entries; nsq allows %u", what, json_object_size(v), NSQ__TOK_MAX_ID);
    const char *k;
    size_t kl;
    json_t *val;
    json_object_keylen_foreach((json_t *)v, k, kl, val)
    {
        uint32_t id;
        char name[80];
        snprintf(name, sizeof name, "%s: vocabulary entry \"%.40s\"", what, k);
        nsq_status st = get_id(val, &id, name, d);
        if (st) return st;
        if (nsq__smap_put(&t->vocab, k, kl, id)) return NOMEM();
    }
    return NSQ_OK;
}

static nsq_status add_merge(nsq_tokenizer *t, const char *a, size_t al, const char *b, size_t bl, uint32_t rank,
                            nsq__tbuf *tmp, const char *what, nsq_diag *d)
{
    uint32_t ia, ib, id;
    if (!nsq__smap_get(&t->vocab, a, al, &ia))
        return FAIL("%s: merge %u refers to \"%.*s\", which is not in the vocabulary", what, rank + 1,
                    (int)(al > 40 ? 40 : al), a);
    if (!nsq__smap_get(&t->vocab, b, bl, &ib))
        return FAIL("%s: merge %u refers to \"%.*s\", which is not in the vocabulary", what, rank + 1,
                    (int)(bl > 40 ? 40 : bl), b);
    if (t->prefix && bl >= t->prefix_len && memcmp(b, t->prefix, t->prefix_len) == 0) {
        b += t->prefix_len;
        bl -= t->prefix_len;
    }
    tmp->n = 0;
    if (nsq__tbuf_put(tmp, a, al) || nsq__tbuf_put(tmp, b, bl)) return NOMEM();
    if (!nsq__smap_get(&t->vocab, tmp->p, tmp->n, &id))
        return FAIL("%s: merge %u makes \"%.*s\", which is not in the vocabulary", what, rank + 1,
                    (int)(tmp->n > 40 ? 40 : tmp->n), tmp->p);
    if (nsq__pmap_put(&t->merges, ia, ib, rank, id)) return NOMEM();
    return NSQ_OK;
}

static nsq_status load_merges_json(nsq_tokenizer *t, const json_t *m, nsq_diag *d)
{
    if (!m) return NSQ_OK;
    if (!json_is_array(m)) return FAIL("tokenizer.json: model.merges is not an array");
    if (json_array_size(m) > NSQ__TOK_MAX_ID)
        return LIMIT("tokenizer.json: %zu merges; nsq allows %u", json_array_size(m), NSQ__TOK_MAX_ID);
    nsq__tbuf tmp = {0};
    nsq_status st = NSQ_OK;
    for (size_t i = 0; i < json_array_size(m) && !st; i++) {
        const json_t *e = json_array_get(m, i);
        const char *a, *b;
        size_t al, bl;
        if (json_is_string(e)) { /* "a b" */
            a = json_string_value(e);
            const char *sp = memchr(a, ' ', json_string_length(e));
            if (!sp) {
                st = FAIL("tokenizer.json: merge %zu \"%.40s\" is not of the form \"a b\"", i + 1, a);
                break;
            }
            al = (size_t)(sp - a);
            b = sp + 1;
            bl = json_string_length(e) - al - 1;
        } else if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
                   json_is_string(json_array_get(e, 1))) {
            a = json_string_value(json_array_get(e, 0));
            al = json_string_length(json_array_get(e, 0));
            b = json_string_value(json_array_get(e, 1));
            bl = json_string_length(json_array_get(e, 1));
        } else {
            st = FAIL("tokenizer.json: merge %zu is neither \"a b\" nor [\"a\", \"b\"]", i + 1);
            break;
        }
        st = add_merge(t, a, al, b, bl, (uint32_t)i, &tmp, "tokenizer.json", d);
    }
    nsq__tbuf_free(&tmp);
    return st;
}

/* merges.txt: "#version" lines skipped, then one "a b" pair a line. */
static nsq_status load_merges_txt(nsq_tokenizer *t, const char *s, size_t n, nsq_diag *d)
{
    nsq__tbuf tmp = {0};
    nsq_status st = NSQ_OK;
    uint32_t rank = 0, line = 0;
    for (size_t i = 0; i < n && !st;) {
        const char *e = memchr(s + i, '\n', n - i);
        size_t len = e ? (size_t)(e - (s + i)) : n - i;
        const char *l = s + i;
        i += len + 1;
        line++;
        if (len && l[len - 1] == '\r') len--;
        if (!len || (len >= 8 && memcmp(l, "#version", 8) == 0)) continue;
        const char *sp = memchr(l, ' ', len);
        if (!sp || memchr(sp + 1, ' ', len - (size_t)(sp - l) - 1)) {
            st = FAIL("merges.txt: line %u is not of the form \"a b\"", line);
            break;
        }
        if (rank == NSQ__TOK_MAX_ID) {
            st = LIMIT("merges.txt: more than %u merges, the most nsq allows", NSQ__TOK_MAX_ID);
            break;
        }
        st = add_merge(t, l, (size_t)(sp - l), sp + 1, len - (size_t)(sp - l) - 1, rank++, &tmp, "merges.txt", d);
    }
    nsq__tbuf_free(&tmp);
    return st;
}

/*-************************************
 *  Added tokens
 **************************************/
/* A later entry for the same id replaces the earlier one, in its place. */
static nsq_status add_token(nsq_tokenizer *t, uint32_t id, const char *s, size_t n, int special, int lstrip,
                            int rstrip, int single_word, int normalized, nsq_diag *d)
{
    const nsq__pment *e = nsq__pmap_get(&t->added_ids, id, 0);
    uint32_t i = e ? e->rank : t->n_added;
    size_t old = e ? t->added[i].len : 0;
    if (!e && t->n_added == NSQ__TOK_MAX_ADDED)
        return LIMIT("more than %u added tokens, the most nsq allows", NSQ__TOK_MAX_ADDED);
    if (t->added_bytes - old + n > NSQ__TOK_MAX_ADDED_BYTES)
        return LIMIT("the added tokens' contents exceed %u MiB, the most nsq allows", NSQ__TOK_MAX_ADDED_BYTES >> 20);
    char *copy = dupn(s, n);
    if (!copy) return NOMEM();
    if (e) {
        free(t->added[i].s);
    } else {
        if ((i & (i - 1)) == 0) { /* grow at powers of two */
            nsq__tadded *p = realloc(t->added, (i ? 2 * (size_t)i : 4) * sizeof *p);
            if (p) t->added = p;
            if (!p || nsq__pmap_put(&t->added_ids, id, 0, i, 0)) return free(copy), NOMEM();
        } else if (nsq__pmap_put(&t->added_ids, id, 0, i, 0)) {
            return free(copy), NOMEM();
        }
        t->n_added++;
    }
    nsq__tadded *a = &t->added[i];
    memset(a, 0, sizeof *a);
    a->s = copy;
    a->id = id;
    a->len = n;
    a->special = (uint8_t)special, a->lstrip = (uint8_t)lstrip, a->rstrip = (uint8_t)rstrip;
    a->single_word = (uint8_t)single_word, a->normalized = (uint8_t)normalized;
    t->added_bytes = t->added_bytes - old + n;
    return NSQ_OK;
}

static nsq_status added_entry(nsq_tokenizer *t, const json_t *e, uint32_t id, const char *what, nsq_diag *d)
{
    size_t n;
    const char *s = get_str(e, "content", &n);
    if (!json_is_object(e) || !s) return FAIL("%s: added token %u has no content", what, id);
    int special = get_bool(e, "special", 0);
    return add_token(t, id, s, n, special, get_bool(e, "lstrip", 0), get_bool(e, "rstrip", 0),
                     get_bool(e, "single_word", 0), get_bool(e, "normalized", !special), d);
}

static nsq_status load_added(nsq_tokenizer *t, const json_t *arr, nsq_diag *d)
{
    if (!arr || json_is_null(arr)) return NSQ_OK;
    if (!json_is_array(arr)) return FAIL("tokenizer.json: added_tokens is not an array");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *e = json_array_get(arr, i);
        uint32_t id;
        char what[64];
        snprintf(what, sizeof what, "tokenizer.json: added token %zu", i + 1);
        nsq_status st = get_id(json_object_get(e, "id"), &id, what, d);
        if (!st) st = added_entry(t, e, id, "tokenizer.json", d);
        if (st) return st;
    }
    return NSQ_OK;
}

/* tokenizer_config.json's added_tokens_decoder: {"50256": {"content": ...}}. */
static nsq_status load_added_config(nsq_tokenizer *t, const json_t *cfg, nsq_diag *d)
{
    const json_t *m = json_object_get(cfg, "added_tokens_decoder");
    if (!json_is_object(m)) return NSQ_OK;
    const char *k;
    json_t *e;
    json_object_foreach((json_t *)m, k, e)
    {
        size_t n = strspn(k, "0123456789");
        if (!n || k[n])
            return FAIL("tokenizer_config.json: added_tokens_decoder key \"%.40s\" is not an id", k);
        unsigned long long id = n > 12 ? ~0ull : strtoull(k, NULL, 10);
        if (id >= NSQ__TOK_MAX_ID)
            return LIMIT("tokenizer_config.json: added_tokens_decoder has id %.40s; nsq allows ids up to %u", k,
                         NSQ__TOK_MAX_ID - 1);
        nsq_status st = added_entry(t, e, (uint32_t)id, "tokenizer_config.json", d);
        if (st) return st;
    }
    return NSQ_OK;
}

/*-************************************
 *  Normalizers, pre-tokenizers, decoders
 **************************************/
/* A {"String": s} or {"Regex": r} pattern: the literal, or the compiled regex. */
static nsq_status get_pattern(const json_t *o, const char *what, char **lit, size_t *litlen, pcre2_code **re,
                              nsq_diag *d)
{
    const json_t *p = json_object_get(o, "pattern");
    const json_t *s = json_object_get(p, "String"), *r = json_object_get(p, "Regex");
    if (json_is_string(s)) {
        if (!(*lit = dupn(json_string_value(s), json_string_length(s)))) return NOMEM();
        *litlen = json_string_length(s);
        return NSQ_OK;
    }
    if (!json_is_string(r)) return FAIL("tokenizer.json: %s has no String or Regex pattern", what);
    char err[160];
    nsq_status st = nsq__tok_regex(json_string_value(r), json_string_length(r), re, err, sizeof err);
    return st ? nsq__fail(d, st, UINT64_MAX, "", "tokenizer.json: %s regex: %s", what, err) : NSQ_OK;
}

/* Metaspace's replacement character and prepend scheme (old files: add_prefix_space). */
static nsq_status get_metaspace(const json_t *o, uint32_t *cp, char *utf8, size_t *len, int *prepend, nsq_diag *d)
{
    size_t n;
    const char *r = get_str(o, "replacement", &n);
    if (!r) r = "\xE2\x96\x81", n = 3;
    uint32_t c;
    if (n == 0 || n > 4 || nsq__utf8_next((const uint8_t *)r, n, &c) != n)
        return FAIL("tokenizer.json: Metaspace replacement is not one character");
    *cp = c;
    memcpy(utf8, r, n);
    *len = n;
    const char *ps = get_str(o, "prepend_scheme", NULL);
    if (ps) {
        if (!strcmp(ps, "first")) *prepend = NSQ__PREPEND_FIRST;
        else if (!strcmp(ps, "always")) *prepend = NSQ__PREPEND_ALWAYS;
        else if (!strcmp(ps, "never")) *prepend = NSQ__PREPEND_NEVER;
        else return FAIL("tokenizer.json: Metaspace prepend_scheme \"%.20s\" is unknown", ps);
    } else {
        *prepend = get_bool(o, "add_prefix_space", 1) ? NSQ__PREPEND_ALWAYS : NSQ__PREPEND_NEVER;
    }
    return NSQ_OK;
}

static nsq_status parse_norm(nsq_tokenizer *t, const json_t *o, int depth, nsq_diag *d)
{
    if (!o || json_is_null(o)) return NSQ_OK;
    const char *type = json_string_value(json_object_get(o, "type"));
    if (!json_is_object(o) || !type) return FAIL("tokenizer.json: a normalizer has no type");
    if (!strcmp(type, "Sequence")) {
        const json_t *a = json_object_get(o, "normalizers");
        if (!json_is_array(a) || depth > 8) return FAIL("tokenizer.json: normalizer Sequence has no normalizers");
        for (size_t i = 0; i < json_array_size(a); i++) {
            nsq_status st = parse_norm(t, json_array_get(a, i), depth + 1, d);
            if (st) return st;
        }
        return NSQ_OK;
    }
    if (!strcmp(type, "Precompiled")) { /* SentencePiece's charsmap: fine when empty */
        const json_t *m = json_object_get(o, "precompiled_charsmap");
        if (!m || json_is_null(m) || (json_is_string(m) && !json_string_length(m))) return NSQ_OK;
        return UNSUP("tokenizer.json: normalizer Precompiled (a SentencePiece charsmap) is not supported");
    }
    if (t->n_norm == NSQ__TOK_MAX_STAGES) return FAIL("tokenizer.json: more than %u normalizers", NSQ__TOK_MAX_STAGES);
    nsq__tnorm *z = &t->norm[t->n_norm];
    memset(z, 0, sizeof *z);
    if (!strcmp(type, "NFC")) z->kind = NSQ__N_NFC;
    else if (!strcmp(type, "NFD")) z->kind = NSQ__N_NFD;
    else if (!strcmp(type, "NFKC")) z->kind = NSQ__N_NFKC;
    else if (!strcmp(type, "NFKD")) z->kind = NSQ__N_NFKD;
    else if (!strcmp(type, "Lowercase")) z->kind = NSQ__N_LOWER;
    else if (!strcmp(type, "Strip")) {
        z->kind = NSQ__N_STRIP;
        z->left = get_bool(o, "strip_left", 1);
        z->right = get_bool(o, "strip_right", 1);
    } else if (!strcmp(type, "Prepend")) {
        size_t n;
        const char *s = get_str(o, "prepend", &n);
        if (!s) return FAIL("tokenizer.json: normalizer Prepend has no prepend string");
        z->kind = NSQ__N_PREPEND;
        if (!(z->a = dupn(s, n))) return NOMEM();
        z->alen = n;
    } else if (!strcmp(type, "Replace")) {
        size_t n;
        const char *s = get_str(o, "content", &n);
        if (!s) return FAIL("tokenizer.json: normalizer Replace has no content");
        z->kind = NSQ__N_REPLACE;
        t->n_norm++; /* owned from here on, freed with the tokenizer */
        if (!(z->b = dupn(s, n))) return NOMEM();
        z->blen = n;
        return get_pattern(o, "normalizer Replace", &z->a, &z->alen, &z->re, d);
    } else {
        return UNSUP("tokenizer.json: normalizer %.40s is not supported", type);
    }
    t->n_norm++;
    return NSQ_OK;
}

static nsq__tpre *new_pre(nsq_tokenizer *t, int kind)
{
    if (t->n_pre == NSQ__TOK_MAX_STAGES) return NULL;
    nsq__tpre *p = &t->pre[t->n_pre++];
    memset(p, 0, sizeof *p);
    p->kind = kind;
    p->behavior = NSQ__B_ISOLATED;
    return p;
}

/* A SPLIT stage with a built-in regex. */
static nsq_status pre_regex(nsq_tokenizer *t, const char *re, int behavior, int invert, nsq_diag *d)
{
    nsq__tpre *p = new_pre(t, NSQ__P_SPLIT);
    char err[160];
    if (!p) return FAIL("tokenizer.json: more than %u pre-tokenizers", NSQ__TOK_MAX_STAGES);
    nsq_status st = nsq__tok_regex(re, strlen(re), &p->re, err, sizeof err);
    if (st) return nsq__fail(d, st, UINT64_MAX, "", "built-in regex: %s", err);
    p->behavior = behavior;
    p->invert = invert;
    return NSQ_OK;
}

static int get_behavior(const json_t *o, int *b)
{
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    const char *s = json_string_value(json_object_get(o, "behavior"));
    if (!s) return 1; /* keeps the default */
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, names[i])) {
            *b = i;
            return 1;
        }
    return 0;
}

#define PUNCT_RE "[\\p{P}!-/:-@\\[-`{-~]"

static nsq_status parse_pre(nsq_tokenizer *t, const json_t *o, int depth, nsq_diag *d)
{
    if (!o || json_is_null(o)) return NSQ_OK;
    const char *type = json_string_value(json_object_get(o, "type"));
    if (!json_is_object(o) || !type) return FAIL("tokenizer.json: a pre-tokenizer has no type");
    if (!strcmp(type, "Sequence")) {
        const json_t *a = json_object_get(o, "pretokenizers");
        if (!json_is_array(a) || depth > 8) return FAIL("tokenizer.json: pre-tokenizer Sequence has no pretokenizers");
        for (size_t i = 0; i < json_array_size(a); i++) {
            nsq_status st = parse_pre(t, json_array_get(a, i), depth + 1, d);
            if (st) return st;
        }
        return NSQ_OK;
    }
    if (!strcmp(type, "Whitespace")) return pre_regex(t, "\\w+|[^\\w\\s]+", NSQ__B_REMOVED, 1, d);
    if (!strcmp(type, "WhitespaceSplit")) return pre_regex(t, "\\s", NSQ__B_REMOVED, 0, d);
    if (!strcmp(type, "Digits"))
        return pre_regex(t, "\\p{N}", get_bool(o, "individual_digits", 0) ? NSQ__B_ISOLATED : NSQ__B_CONTIGUOUS, 0, d);
    if (!strcmp(type, "BertPreTokenizer")) {
        nsq_status st = pre_regex(t, "\\s", NSQ__B_REMOVED, 0, d);
        return st ? st : pre_regex(t, PUNCT_RE, NSQ__B_ISOLATED, 0, d);
    }
    if (!strcmp(type, "Punctuation")) {
        int b = NSQ__B_ISOLATED;
        if (!get_behavior(o, &b)) return FAIL("tokenizer.json: Punctuation has an unknown behavior");
        return pre_regex(t, PUNCT_RE, b, 0, d);
    }
    if (!strcmp(type, "ByteLevel")) {
        nsq__tpre *p = new_pre(t, NSQ__P_BYTELEVEL);
        char err[160];
        if (!p) return FAIL("tokenizer.json: more than %u pre-tokenizers", NSQ__TOK_MAX_STAGES);
        p->add_prefix_space = get_bool(o, "add_prefix_space", 1);
        nsq_status st = NSQ_OK;
        if (get_bool(o, "use_regex", 1)) st = nsq__tok_regex(bytelevel_regex, sizeof bytelevel_regex - 1, &p->re, err, sizeof err);
        return st ? nsq__fail(d, st, UINT64_MAX, "", "built-in regex: %s", err) : NSQ_OK;
    }
    if (!strcmp(type, "Metaspace")) {
        nsq__tpre *p = new_pre(t, NSQ__P_METASPACE);
        uint32_t cp;
        if (!p) return FAIL("tokenizer.json: more than %u pre-tokenizers", NSQ__TOK_MAX_STAGES);
        p->split = get_bool(o, "split", 1);
        return get_metaspace(o, &cp, p->rep, &p->replen, &p->prepend, d);
    }
    if (!strcmp(type, "Split") || !strcmp(type, "CharDelimiterSplit")) {
        nsq__tpre *p = new_pre(t, NSQ__P_SPLIT);
        if (!p) return FAIL("tokenizer.json: more than %u pre-tokenizers", NSQ__TOK_MAX_STAGES);
        if (type[0] == 'C') {
            size_t n;
            const char *s = get_str(o, "delimiter", &n);
            if (!s || !n) return FAIL("tokenizer.json: CharDelimiterSplit has no delimiter");
            if (!(p->lit = dupn(s, n))) return NOMEM();
            p->litlen = n;
            p->behavior = NSQ__B_REMOVED;
            return NSQ_OK;
        }
        if (!get_behavior(o, &p->behavior)) return FAIL("tokenizer.json: Split has an unknown behavior");
        p->invert = get_bool(o, "invert", 0);
        return get_pattern(o, "pre-tokenizer Split", &p->lit, &p->litlen, &p->re, d);
    }
    return UNSUP("tokenizer.json: pre-tokenizer %.40s is not supported", type);
}

static nsq_status parse_dec(nsq_tokenizer *t, const json_t *o, int depth, nsq_diag *d)
{
    if (!o || json_is_null(o)) return NSQ_OK;
    const char *type = json_string_value(json_object_get(o, "type"));
    if (!json_is_object(o) || !type) return FAIL("tokenizer.json: a decoder has no type");
    t->has_decoder = 1;
    if (!strcmp(type, "Sequence")) {
        const json_t *a = json_object_get(o, "decoders");
        if (!json_is_array(a) || depth > 8) return FAIL("tokenizer.json: decoder Sequence has no decoders");
        for (size_t i = 0; i < json_array_size(a); i++) {
            nsq_status st = parse_dec(t, json_array_get(a, i), depth + 1, d);
            if (st) return st;
        }
        return NSQ_OK;
    }
    if (t->n_dec == NSQ__TOK_MAX_STAGES) return FAIL("tokenizer.json: more than %u decoders", NSQ__TOK_MAX_STAGES);
    nsq__tdec *z = &t->dec[t->n_dec];
    memset(z, 0, sizeof *z);
    if (!strcmp(type, "ByteLevel")) z->kind = NSQ__D_BYTELEVEL;
    else if (!strcmp(type, "ByteFallback")) z->kind = NSQ__D_BYTEFALLBACK;
    else if (!strcmp(type, "Fuse")) z->kind = NSQ__D_FUSE;
    else if (!strcmp(type, "Strip")) {
        size_t n;
        const char *s = get_str(o, "content", &n);
        const json_t *a = json_object_get(o, "start"), *b = json_object_get(o, "stop");
        if (!s || !n || nsq__utf8_next((const uint8_t *)s, n, &z->ch) != n || !json_is_integer(a) || !json_is_integer(b) ||
            json_integer_value(a) < 0 || json_integer_value(b) < 0)
            return FAIL("tokenizer.json: decoder Strip needs one content character, start and stop");
        z->kind = NSQ__D_STRIP;
        z->start = (size_t)json_integer_value(a);
        z->stop = (size_t)json_integer_value(b);
    } else if (!strcmp(type, "Metaspace")) {
        char u[4];
        size_t n;
        z->kind = NSQ__D_METASPACE;
        nsq_status st = get_metaspace(o, &z->ch, u, &n, &z->prepend, d);
        if (st) return st;
    } else if (!strcmp(type, "BPEDecoder")) {
        size_t n;
        const char *s = get_str(o, "suffix", &n);
        if (!s) s = "</w>", n = 4;
        z->kind = NSQ__D_BPE;
        t->n_dec++;
        if (!(z->a = dupn(s, n))) return NOMEM();
        z->alen = n;
        return NSQ_OK;
    } else if (!strcmp(type, "Replace")) {
        size_t n;
        const char *s = get_str(o, "content", &n);
        if (!s) return FAIL("tokenizer.json: decoder Replace has no content");
        z->kind = NSQ__D_REPLACE;
        t->n_dec++;
        if (!(z->b = dupn(s, n))) return NOMEM();
        z->blen = n;
        return get_pattern(o, "decoder Replace", &z->a, &z->alen, &z->re, d);
    } else {
        return UNSUP("tokenizer.json: decoder %.40s is not supported", type);
    }
    t->n_dec++;
    return NSQ_OK;
}

/*-************************************
 *  Post-processors
 **************************************/
static nsq_status push_id(nsq__ibuf *b, uint32_t id, nsq_diag *d)
{
    if (b->n == NSQ__TOK_MAX_PP)
        return LIMIT("tokenizer.json: the post-processor adds more than %u ids on one side, the most nsq allows",
                     NSQ__TOK_MAX_PP);
    return nsq__ibuf_push(b, (int32_t)id) ? NOMEM() : NSQ_OK;
}

/* Wraps pp_before/pp_after with one more processor's before and after ids. */
static nsq_status wrap(nsq_tokenizer *t, nsq__ibuf *before, nsq__ibuf *after, nsq_diag *d)
{
    if (before->n + t->pp_before.n > NSQ__TOK_MAX_PP || after->n + t->pp_after.n > NSQ__TOK_MAX_PP)
        return LIMIT("tokenizer.json: the post-processors add more than %u ids on one side, the most nsq allows",
                     NSQ__TOK_MAX_PP);
    for (size_t i = 0; i < t->pp_before.n; i++)
        if (nsq__ibuf_push(before, t->pp_before.p[i])) return NOMEM();
    for (size_t i = 0; i < after->n; i++)
        if (nsq__ibuf_push(&t->pp_after, after->p[i])) return NOMEM();
    free(t->pp_before.p);
    t->pp_before = *before;
    *before = (nsq__ibuf){0};
    return NSQ_OK;
}

static nsq_status template_ids(const json_t *o, nsq__ibuf *before, nsq__ibuf *after, nsq_diag *d)
{
    const json_t *single = json_object_get(o, "single"), *sp = json_object_get(o, "special_tokens");
    if (!json_is_array(single)) return FAIL("tokenizer.json: TemplateProcessing has no single template");
    nsq__ibuf *cur = before;
    for (size_t i = 0; i < json_array_size(single); i++) {
        const json_t *it = json_array_get(single, i), *s;
        if (json_object_get(it, "Sequence")) {
            cur = after;
        } else if ((s = json_object_get(it, "SpecialToken")) != NULL) {
            const char *name = get_str(s, "id", NULL);
            const json_t *ids = json_object_get(json_object_get(sp, name ? name : ""), "ids");
            if (!name || !json_is_array(ids))
                return FAIL("tokenizer.json: TemplateProcessing names special token \"%.40s\" without ids",
                            name ? name : "");
            char what[96];
            snprintf(what, sizeof what, "tokenizer.json: post-processor special token \"%.40s\"", name);
            for (size_t k = 0; k < json_array_size(ids); k++) {
                uint32_t id;
                nsq_status st = get_id(json_array_get(ids, k), &id, what, d);
                if (st || (st = push_id(cur, id, d))) return st;
            }
        } else {
            return FAIL("tokenizer.json: TemplateProcessing item %zu is neither Sequence nor SpecialToken", i);
        }
    }
    return NSQ_OK;
}

static nsq_status parse_post(nsq_tokenizer *t, const json_t *o, int depth, nsq_diag *d)
{
    if (!o || json_is_null(o)) return NSQ_OK;
    const char *type = json_string_value(json_object_get(o, "type"));
    if (!json_is_object(o) || !type) return FAIL("tokenizer.json: the post-processor has no type");
    if (!strcmp(type, "ByteLevel")) return NSQ_OK; /* offsets only */
    if (!strcmp(type, "Sequence")) {
        const json_t *a = json_object_get(o, "processors");
        if (!json_is_array(a) || depth > 8) return FAIL("tokenizer.json: post-processor Sequence has no processors");
        for (size_t i = 0; i < json_array_size(a); i++) {
            nsq_status st = parse_post(t, json_array_get(a, i), depth + 1, d);
            if (st) return st;
        }
        return NSQ_OK;
    }
    nsq__ibuf before = {0}, after = {0};
    nsq_status st;
    if (!strcmp(type, "TemplateProcessing")) {
        st = template_ids(o, &before, &after, d);
    } else if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        uint32_t cls, sep;
        const json_t *c = json_object_get(o, "cls"), *s = json_object_get(o, "sep");
        char what[64];
        snprintf(what, sizeof what, "tokenizer.json: %s cls or sep", type);
        if (!json_is_array(c) || !json_is_array(s) || json_array_size(c) != 2 || json_array_size(s) != 2)
            st = FAIL("tokenizer.json: %s needs cls and sep as [token, id]", type);
        else if (!(st = get_id(json_array_get(c, 1), &cls, what, d)) && !(st = get_id(json_array_get(s, 1), &sep, what, d)) &&
                 !(st = push_id(&before, cls, d)))
            st = push_id(&after, sep, d);
    } else {
        st = UNSUP("tokenizer.json: post-processor %.40s is not supported", type);
    }
    if (!st) st = wrap(t, &before, &after, d);
    free(before.p);
    free(after.p);
    return st;
}

/* tokenizer_config.json's add_bos_token / add_eos_token, used when no
 * post-processor says what to add. */
static nsq_status config_bos_eos(nsq_tokenizer *t, const json_t *cfg, nsq_diag *d)
{
    static const char *keys[2][2] = {{"add_bos_token", "bos_token"}, {"add_eos_token", "eos_token"}};
    for (int w = 0; w < 2; w++) {
        if (!get_bool(cfg, keys[w][0], 0)) continue;
        const json_t *v = json_object_get(cfg, keys[w][1]);
        if (json_is_object(v)) v = json_object_get(v, "content");
        if (!v || json_is_null(v)) continue; /* nothing to add */
        uint32_t id;
        int found = 0;
        if (json_is_string(v)) {
            for (uint32_t i = 0; i < t->n_added && !found; i++)
                if (t->added[i].len == json_string_length(v) && !memcmp(t->added[i].s, json_string_value(v), t->added[i].len))
                    id = t->added[i].id, found = 1;
            if (!found) found = nsq__smap_get(&t->vocab, json_string_value(v), json_string_length(v), &id);
        }
        if (!found) return FAIL("tokenizer_config.json: %s is set but %s is not a known token", keys[w][0], keys[w][1]);
        if (nsq__ibuf_push(w ? &t->pp_after : &t->pp_before, (int32_t)id)) return NOMEM();
    }
    return NSQ_OK;
}

/*-************************************
 *  The model and the whole file
 **************************************/
static nsq_status parse_model(nsq_tokenizer *t, const json_t *m, nsq_diag *d)
{
    if (!json_is_object(m)) return FAIL("tokenizer.json has no model");
    const char *type = json_string_value(json_object_get(m, "type"));
    if (!type) {
        if (!json_object_get(m, "merges") || !json_object_get(m, "vocab"))
            return FAIL("tokenizer.json: the model has no type");
        type = "BPE"; /* untagged, as tokenizers reads it */
    }
    if (strcmp(type, "BPE"))
        return UNSUP("tokenizer.json: model type %.40s is not supported (only BPE)", type);
    size_t n;
    const char *s;
    if ((s = get_str(m, "continuing_subword_prefix", &n)) != NULL && n) {
        if (!(t->prefix = dupn(s, n))) return NOMEM();
        t->prefix_len = n;
    }
    if ((s = get_str(m, "end_of_word_suffix", &n)) != NULL && n) {
        if (!(t->suffix = dupn(s, n))) return NOMEM();
        t->suffix_len = n;
    }
    t->byte_fallback = get_bool(m, "byte_fallback", 0);
    t->fuse_unk = get_bool(m, "fuse_unk", 0);
    t->ignore_merges = get_bool(m, "ignore_merges", 0);
    nsq_status st = load_vocab(t, json_object_get(m, "vocab"), "tokenizer.json", d);
    if (!st) st = load_merges_json(t, json_object_get(m, "merges"), d);
    if (st) return st;
    if ((s = get_str(m, "unk_token", &n)) != NULL) {
        uint32_t id;
        if (nsq__smap_get(&t->vocab, s, n, &id)) t->unk_id = (int32_t)id;
    }
    return NSQ_OK;
}

static json_t *parse_json(const uint8_t *p, size_t n, const char *what, nsq_status *st, nsq_diag *d)
{
    json_error_t e;
    json_t *j = n ? json_loadb((const char *)p, n, JSON_ALLOW_NUL, &e) : NULL;
    if (!n) *st = FAIL("%s is empty", what);
    else if (!j && (json_error_code(&e) == json_error_out_of_memory || !e.text[0]))
        *st = NOMEM(); /* jansson says nothing when its first allocation fails */
    else if (!j) *st = FAIL("%s: invalid JSON at line %d column %d: %.120s", what, e.line, e.column, e.text);
    else if (!json_is_object(j)) *st = FAIL("%s is not a JSON object", what);
    else return j;
    json_decref(j);
    return NULL;
}

/* Whether long pieces may be cut before U+2581 (or Metaspace's replacement):
 * only when no merge joins a left symbol that ends in another character with
 * a right one that starts with it (see chunk_rep). Runs before added tokens
 * take over their ids' strings, so strs holds the vocabulary's. */
static void set_chunking(nsq_tokenizer *t)
{
    const char *r = "\xE2\x96\x81";
    size_t rl = 3;
    uint32_t id;
    for (uint32_t i = 0; i < t->n_pre; i++)
        if (t->pre[i].kind == NSQ__P_METASPACE) r = t->pre[i].rep, rl = t->pre[i].replen;
    if (t->ignore_merges || t->prefix || t->suffix || !nsq__smap_get(&t->vocab, r, rl, &id)) return;
    for (size_t i = 0; t->merges.e && i <= t->merges.mask; i++) {
        uint64_t k = t->merges.e[i].key;
        if (k == UINT64_MAX) continue;
        uint32_t a = (uint32_t)(k >> 32), b = (uint32_t)k;
        const char *sa = t->strs.p + t->str_off[a], *sb = t->strs.p + t->str_off[b];
        size_t la = t->str_len[a], lb = t->str_len[b];
        if (lb >= rl && memcmp(sb, r, rl) == 0 && !(la >= rl && memcmp(sa + la - rl, r, rl) == 0)) return;
    }
    memcpy(t->chunk_rep, r, rl);
    t->chunk_rep_len = rl;
}

/* Normalized tokens are matched in normalized text, as their normalized content. */
static nsq_status normalize_added(nsq_tokenizer *t, nsq_diag *d)
{
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md) return NOMEM();
    nsq_status st = NSQ_OK;
    size_t total = 0;
    for (uint32_t i = 0; i < t->n_added && !st; i++) {
        nsq__tadded *a = &t->added[i];
        if (!a->normalized) continue;
        nsq__tbuf b = {0};
        st = nsq__tok_normalize(t, a->s, a->len, &b, md, d);
        if (st && st != NSQ_E_NOMEM) {
            char why[sizeof d->message];
            snprintf(why, sizeof why, "%s", d && d->status == st ? d->message : nsq_strerror(st));
            st = nsq__fail(d, st == NSQ_E_LIMIT ? st : NSQ_E_TOKENIZER, UINT64_MAX, "",
                           "added token %u cannot be normalized: %s", a->id, why);
        } else if (!st && (total += b.n) > NSQ__TOK_MAX_ADDED_BYTES) {
            st = LIMIT("the normalized added tokens' contents exceed %u MiB, the most nsq allows",
                       NSQ__TOK_MAX_ADDED_BYTES >> 20);
        }
        if (!st && !(a->ns = dupn(b.p ? b.p : "", b.n))) st = NSQ_E_NOMEM;
        a->nlen = b.n;
        nsq__tbuf_free(&b);
    }
    pcre2_match_data_free(md);
    return st == NSQ_E_NOMEM ? NOMEM() : st ? st : NSQ_OK;
}

/* Every id a post-processor adds must be a token (HF expects it to be one;
 * anything else would index past the model's embeddings). */
static nsq_status check_pp(const nsq_tokenizer *t, nsq_diag *d)
{
    for (int w = 0; w < 2; w++) {
        const nsq__ibuf *b = w ? &t->pp_after : &t->pp_before;
        for (size_t i = 0; i < b->n; i++) {
            uint32_t id = (uint32_t)b->p[i];
            if (id >= t->n_ids || !(t->flags[id] & NSQ__F_VALID))
                return FAIL("tokenizer.json: post-processor id %u is not a token of the vocabulary", id);
        }
    }
    return NSQ_OK;
}

/* id -> string and flags, normalized added tokens, match sets, tables. */
static nsq_status finish(nsq_tokenizer *t, nsq_diag *d)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < t->vocab.n; i++)
        if (t->vocab.ent[i].val >= n) n = t->vocab.ent[i].val + 1;
    for (uint32_t i = 0; i < t->n_added; i++)
        if (t->added[i].id >= n) n = t->added[i].id + 1;
    t->n_ids = n;
    t->str_off = calloc(n ? n : 1, sizeof *t->str_off);
    t->str_len = calloc(n ? n : 1, sizeof *t->str_len);
    t->flags = calloc(n ? n : 1, 1);
    if (!t->str_off || !t->str_len || !t->flags) return NOMEM();
    for (uint32_t i = 0; i < t->vocab.n; i++) {
        const nsq__sment *e = &t->vocab.ent[i];
        t->str_off[e->val] = e->off;
        t->str_len[e->val] = e->len;
        t->flags[e->val] = NSQ__F_VALID;
    }
    if (nsq__tbuf_put(&t->strs, t->vocab.keys.p, t->vocab.keys.n)) return NOMEM();
    set_chunking(t);
    for (uint32_t i = 0; i < t->n_added; i++) {
        nsq__tadded *a = &t->added[i];
        if (t->strs.n + a->len > UINT32_MAX) return FAIL("added tokens too long");
        t->str_off[a->id] = (uint32_t)t->strs.n;
        t->str_len[a->id] = (uint32_t)a->len;
        t->flags[a->id] = (uint8_t)(NSQ__F_VALID | NSQ__F_ADDED | (a->special ? NSQ__F_SPECIAL : 0));
        if (nsq__tbuf_put(&t->strs, a->s, a->len)) return NOMEM();
    }
    nsq_status st = normalize_added(t, d);
    if (st) return st;
    if (nsq__tmatch_build(&t->match_raw, t->added, t->n_added, 0) ||
        nsq__tmatch_build(&t->match_norm, t->added, t->n_added, 1))
        return NOMEM();
    char name[8];
    for (int b = 0; b < 256; b++) {
        uint32_t id;
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_tok[b] = nsq__smap_get(&t->vocab, name, 6, &id) ? (int32_t)id : -1;
    }
    if (!t->prefix && !t->suffix) { /* one-character tokens: a table up to the largest code point */
        uint32_t top = 0, cp;
        for (int pass = 0; pass < 2; pass++) {
            for (uint32_t i = 0; i < t->vocab.n; i++) {
                const nsq__sment *e = &t->vocab.ent[i];
                if (!e->len || nsq__utf8_next((const uint8_t *)t->vocab.keys.p + e->off, e->len, &cp) != e->len ||
                    cp >= NSQ__TOK_CP_TABLE)
                    continue;
                if (pass) t->cp_tok[cp] = (int32_t)e->val;
                else if (cp >= top) top = cp + 1;
            }
            if (pass || !top) break;
            if (!(t->cp_tok = malloc(top * sizeof *t->cp_tok))) return NOMEM();
            memset(t->cp_tok, 0xFF, top * sizeof *t->cp_tok);
            t->cp_tok_n = top;
        }
    }
    nsq__pmap_free(&t->added_ids);
    return check_pp(t, d);
}

nsq_status nsq__tok_build(nsq_tokenizer *t, const nsq__tokfiles *f, nsq_diag *d)
{
    nsq_status st = NSQ_OK;
    json_t *root = NULL, *cfg = NULL, *vocab = NULL;
    t->unk_id = -1;
    if (!(t->mc = nsq__tok_match_context())) return NOMEM();
    if (f->config && !(cfg = parse_json(f->config, f->config_len, "tokenizer_config.json", &st, d))) return st;
    if (f->json) {
        if (!(root = parse_json(f->json, f->json_len, "tokenizer.json", &st, d))) goto done;
        if ((st = parse_model(t, json_object_get(root, "model"), d)) ||
            (st = load_added(t, json_object_get(root, "added_tokens"), d)) ||
            (st = parse_norm(t, json_object_get(root, "normalizer"), 0, d)) ||
            (st = parse_pre(t, json_object_get(root, "pre_tokenizer"), 0, d)) ||
            (st = parse_dec(t, json_object_get(root, "decoder"), 0, d)))
            goto done;
        const json_t *pp = json_object_get(root, "post_processor");
        if (pp && !json_is_null(pp)) st = parse_post(t, pp, 0, d);
        else if (cfg) st = config_bos_eos(t, cfg, d);
    } else {
        /* vocab.json + merges.txt: byte-level BPE, its pre-tokenizer regex, ByteLevel decoding */
        if (!(vocab = parse_json(f->vocab, f->vocab_len, "vocab.json", &st, d))) goto done;
        if ((st = load_vocab(t, vocab, "vocab.json", d)) ||
            (st = load_merges_txt(t, (const char *)f->merges, f->merges_len, d)))
            goto done;
        nsq__tpre *p = new_pre(t, NSQ__P_BYTELEVEL);
        char err[160];
        if ((st = nsq__tok_regex(bytelevel_regex, sizeof bytelevel_regex - 1, &p->re, err, sizeof err))) {
            nsq__fail(d, st, UINT64_MAX, "", "built-in regex: %s", err);
            goto done;
        }
        t->dec[t->n_dec++].kind = NSQ__D_BYTELEVEL;
        t->has_decoder = 1;
        if (cfg && ((st = load_added_config(t, cfg, d)) || (st = config_bos_eos(t, cfg, d)))) goto done;
    }
    if (!st) st = finish(t, d);
    if (!st && !f->json) { /* skip_special drops the end-of-text token even when text never matches it */
        uint32_t id;
        if (nsq__smap_get(&t->vocab, "<|endoftext|>", 13, &id)) t->flags[id] |= NSQ__F_SPECIAL;
    }
done:
    json_decref(root);
    json_decref(vocab);
    json_decref(cfg);
    return st;
}
