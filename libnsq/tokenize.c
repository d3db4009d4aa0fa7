/* tokenize.c - the tokenizer API: building one from the tokenizer section or
 * from files, and encoding text (added tokens, normalizers, pre-tokenizers,
 * BPE, post-processor). Decoding is in tok_decode.c. */
#include "tok_internal.h"

/*-************************************
 *  Building and freeing
 **************************************/
void nsq_tokenizer_free(nsq_tokenizer *t)
{
    if (!t) return;
    nsq__smap_free(&t->vocab);
    nsq__pmap_free(&t->merges);
    free(t->prefix);
    free(t->suffix);
    free(t->cp_tok);
    for (uint32_t i = 0; i < t->n_added; i++) {
        free(t->added[i].s);
        free(t->added[i].ns);
    }
    free(t->added);
    nsq__pmap_free(&t->added_ids);
    nsq__tmatch_free(&t->match_raw);
    nsq__tmatch_free(&t->match_norm);
    pcre2_match_context_free(t->mc);
    for (uint32_t i = 0; i < t->n_norm; i++) {
        free(t->norm[i].a);
        free(t->norm[i].b);
        pcre2_code_free(t->norm[i].re);
    }
    for (uint32_t i = 0; i < t->n_pre; i++) {
        pcre2_code_free(t->pre[i].re);
        free(t->pre[i].lit);
    }
    for (uint32_t i = 0; i < t->n_dec; i++) {
        free(t->dec[i].a);
        free(t->dec[i].b);
        pcre2_code_free(t->dec[i].re);
    }
    free(t->pp_before.p);
    free(t->pp_after.p);
    free(t->str_off);
    free(t->str_len);
    free(t->flags);
    nsq__tbuf_free(&t->strs);
    free(t);
}

nsq_status nsq_tokenizer_from_files(nsq_tokenizer_kind kind, uint32_t n_files, const char *const *names,
                                    const uint8_t *const *data, const uint64_t *sizes, nsq_tokenizer **out,
                                    nsq_diag *diag)
{
    nsq_diag *d = diag;
    if (!out) return nsq__fail(d, NSQ_E_ARG, UINT64_MAX, "", "no output pointer");
    *out = NULL;
    if (n_files && (!names || !data || !sizes)) return nsq__fail(d, NSQ_E_ARG, UINT64_MAX, "", "no file list");
    nsq__tokfiles f;
    memset(&f, 0, sizeof f);
    int has_model = 0;
    for (uint32_t i = 0; i < n_files; i++) {
        if (!names[i] || (!data[i] && sizes[i]) || sizes[i] > SIZE_MAX / 2)
            return nsq__fail(d, NSQ_E_ARG, UINT64_MAX, "", "tokenizer file %u has no name or data", i);
        const uint8_t *p = data[i] ? data[i] : (const uint8_t *)"";
        size_t n = (size_t)sizes[i];
        const uint8_t **slot = NULL;
        size_t *len = NULL;
        if (!strcmp(names[i], "tokenizer.json")) slot = &f.json, len = &f.json_len;
        else if (!strcmp(names[i], "vocab.json")) slot = &f.vocab, len = &f.vocab_len;
        else if (!strcmp(names[i], "merges.txt")) slot = &f.merges, len = &f.merges_len;
        else if (!strcmp(names[i], "tokenizer_config.json")) slot = &f.config, len = &f.config_len;
        else if (!strcmp(names[i], "tokenizer.model")) has_model = 1;
        if (slot && n > NSQ__TOK_MAX_FILE) /* parsing needs several times its size in memory */
            return nsq__fail(d, NSQ_E_LIMIT, UINT64_MAX, "", "%s is %llu bytes; nsq reads tokenizer files up to %u MiB",
                             names[i], (unsigned long long)n, NSQ__TOK_MAX_FILE >> 20);
        if (slot) *slot = p, *len = n;
    }
    /* tokenizer.json, when there, describes the whole pipeline whatever the kind */
    switch (kind) {
    case NSQ_TOK_HF_JSON:
        if (!f.json) return nsq__fail(d, NSQ_E_TOKENIZER, UINT64_MAX, "", "tokenizer kind HF_JSON without tokenizer.json");
        break;
    case NSQ_TOK_GPT2_BPE:
        if (!f.json && (!f.vocab || !f.merges))
            return nsq__fail(d, NSQ_E_TOKENIZER, UINT64_MAX, "", "tokenizer kind 2 (byte-level BPE files) needs vocab.json and merges.txt");
        break;
    case NSQ_TOK_SENTENCEPIECE:
        if (!f.json)
            return nsq__fail(d, NSQ_E_UNSUPPORTED, UINT64_MAX, "",
                             "SentencePiece tokenizer.model is not supported%s: convert the model with a tokenizer.json",
                             has_model ? "" : " (and the section has no tokenizer.model)");
        break;
    default:
        return nsq__fail(d, NSQ_E_ARG, UINT64_MAX, "", "unknown tokenizer kind %d", (int)kind);
    }
    nsq_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return nsq__fail(d, NSQ_E_NOMEM, UINT64_MAX, "", "out of memory building the tokenizer");
    nsq_status st = nsq__tok_build(t, &f, d);
    if (st) {
        nsq_tokenizer_free(t);
        return st;
    }
    *out = t;
    return NSQ_OK;
}

nsq_status nsq_tokenizer_load(const nsq_file *f, nsq_tokenizer **out, nsq_diag *diag)
{
    if (!out) return nsq__fail(diag, NSQ_E_ARG, UINT64_MAX, "", "no output pointer");
    *out = NULL;
    if (!f) return nsq__fail(diag, NSQ_E_ARG, UINT64_MAX, "", "no file");
    uint32_t n = nsq_tokenizer_file_count(f);
    if (!n) return nsq__fail(diag, NSQ_E_NOT_FOUND, UINT64_MAX, "", "the file has no tokenizer section");
    const char *names[NSQ__MAX_TOK_FILES];
    const uint8_t *data[NSQ__MAX_TOK_FILES];
    uint64_t sizes[NSQ__MAX_TOK_FILES];
    if (n > NSQ__MAX_TOK_FILES) n = NSQ__MAX_TOK_FILES;
    for (uint32_t i = 0; i < n; i++) {
        nsq_tokenizer_file tf;
        nsq_status st = nsq_tokenizer_file_at(f, i, &tf);
        if (st) return nsq__fail(diag, st, UINT64_MAX, "", "tokenizer file %u", i);
        names[i] = tf.name;
        data[i] = tf.data;
        sizes[i] = tf.size;
    }
    return nsq_tokenizer_from_files((nsq_tokenizer_kind)nsq_tokenizer_get_kind(f), n, names, data, sizes, out, diag);
}

uint32_t nsq_tokenizer_vocab_size(const nsq_tokenizer *t) { return t ? t->n_ids : 0; }

int nsq_token_is_special(const nsq_tokenizer *t, int32_t id)
{
    return t && id >= 0 && (uint32_t)id < t->n_ids && (t->flags[id] & NSQ__F_SPECIAL);
}

/*-************************************
 *  Added tokens
 **************************************/
/* Start of the code point that ends at s[0..end). */
static size_t cp_before(const char *s, size_t end)
{
    size_t k = end - 1;
    while (k > 0 && ((uint8_t)s[k] & 0xC0) == 0x80) k--;
    return k;
}

/* Splits s[0..n) at the added tokens of set m as `tokenizers`'
 * AddedVocabulary::find_matches does (leftmost-longest, then single_word,
 * lstrip and rstrip): (start, end, id + 1) triples, id + 1 == 0 for text. */
static nsq_status find_added(nsq__tenc *c, const nsq__tmatch *m, int norm, const char *s, size_t n, nsq__zbuf *out)
{
    const nsq_tokenizer *t = c->t;
    out->n = 0;
    size_t done = 0, pos = 0, l;
    if (m->n && n > c->longest_cap) {
        uint32_t *p = n <= SIZE_MAX / sizeof *p ? realloc(c->longest, n * sizeof *p) : NULL;
        if (!p) return NSQ_E_NOMEM;
        c->longest = p;
        c->longest_cap = n;
    }
    if (m->n) nsq__tmatch_scan(m, s, n, c->longest);
    while (m->n && pos < n) {
        if (!c->longest[pos]) {
            pos++;
            continue;
        }
        const nsq__tadded *hit = &t->added[c->longest[pos] - 1];
        size_t start = pos, stop = pos + (norm ? hit->nlen : hit->len);
        if (hit->single_word) {
            int before = start > 0 && nsq__uni_word(nsq__utf8_at(s + cp_before(s, start), &l));
            int after = stop < n && nsq__uni_word(nsq__utf8_at(s + stop, &l));
            if (before || after) {
                pos = stop;
                continue;
            }
        }
        if (hit->lstrip) /* spaces before it, back to the previous match at most */
            while (start > done) {
                size_t k = cp_before(s, start);
                if (!nsq__uni_space(nsq__utf8_at(s + k, &l))) break;
                start = k;
            }
        if (hit->rstrip)
            while (stop < n && nsq__uni_space(nsq__utf8_at(s + stop, &l))) stop += l;
        if ((done < start && nsq__zbuf_push(out, done, start, 0)) || nsq__zbuf_push(out, start, stop, (size_t)hit->id + 1))
            return NSQ_E_NOMEM;
        done = pos = stop;
    }
    if (done < n && nsq__zbuf_push(out, done, n, 0)) return NSQ_E_NOMEM;
    return NSQ_OK;
}

/*-************************************
 *  Encoding
 **************************************/
static nsq_status push_all(nsq__ibuf *out, const nsq__ibuf *ids)
{
    for (size_t i = 0; i < ids->n; i++)
        if (nsq__ibuf_push(out, ids->p[i])) return NSQ_E_NOMEM;
    return NSQ_OK;
}

static nsq_status encode(nsq__tenc *c, const char *s, size_t n)
{
    const nsq_tokenizer *t = c->t;
    nsq__zbuf raw = {0}, nrm = {0};
    nsq__tbuf norm = {0};
    nsq_status st = find_added(c, &t->match_raw, 0, s, n, &raw);
    for (size_t i = 0; !st && i < raw.n; i += 3) {
        size_t a = raw.p[i], b = raw.p[i + 1], id = raw.p[i + 2];
        if (id) {
            st = nsq__ibuf_push(c->out, (int32_t)(id - 1)) ? NSQ_E_NOMEM : NSQ_OK;
            continue;
        }
        const char *p = s + a;
        size_t pn = b - a;
        if (t->n_norm) {
            if ((st = nsq__tok_normalize(t, p, pn, &norm, c->md, c->d))) break;
            p = norm.p;
            pn = norm.n;
        }
        if ((st = find_added(c, &t->match_norm, 1, p, pn, &nrm))) break;
        for (size_t k = 0; !st && k < nrm.n; k += 3) {
            size_t a2 = nrm.p[k], b2 = nrm.p[k + 1], id2 = nrm.p[k + 2];
            if (id2) st = nsq__ibuf_push(c->out, (int32_t)(id2 - 1)) ? NSQ_E_NOMEM : NSQ_OK;
            else st = nsq__tok_pretokenize(c, 0, p + a2, b2 - a2, a == 0 && a2 == 0);
        }
    }
    free(raw.p);
    free(nrm.p);
    nsq__tbuf_free(&norm);
    return st;
}

/* The message of a failure that left none. */
static nsq_status tokenize_fail(nsq_status st, size_t len, nsq_diag *d)
{
    if (d && d->status == st) return st;
    if (st == NSQ_E_NOMEM) return nsq__fail(d, st, UINT64_MAX, "", "out of memory tokenizing %zu bytes of text", len);
    return nsq__fail(d, st, UINT64_MAX, "", "tokenizing %zu bytes of text failed: %s", len, nsq_strerror(st));
}

nsq_status nsq_tokenize_diag(const nsq_tokenizer *t, const char *text, size_t len, int add_special, int32_t **ids,
                             size_t *n_ids, nsq_diag *d)
{
    if (d) d->status = NSQ_OK, d->message[0] = 0;
    if (!ids || !n_ids) return nsq__fail(d, NSQ_E_ARG, UINT64_MAX, "", "no output pointer");
    *ids = NULL;
    *n_ids = 0;
    if (!t || (!text && len)) return nsq__fail(d, NSQ_E_ARG, UINT64_MAX, "", "no tokenizer or no text");
    nsq__tbuf clean = {0};
    const char *s = text ? text : "";
    if (!nsq__utf8_ok((const uint8_t *)s, len)) { /* invalid UTF-8 is read as U+FFFD */
        if (nsq__utf8_lossy(&clean, (const uint8_t *)s, len)) return tokenize_fail(NSQ_E_NOMEM, len, d);
        s = clean.p;
        len = clean.n;
    }
    nsq__ibuf out = {0};
    nsq__tenc c;
    memset(&c, 0, sizeof c);
    c.t = t;
    c.out = &out;
    c.d = d;
    c.md = pcre2_match_data_create(1, NULL);
    nsq_status st = c.md ? NSQ_OK : NSQ_E_NOMEM;
    if (!st && add_special) st = push_all(&out, &t->pp_before);
    if (!st) st = encode(&c, s, len);
    if (!st && add_special) st = push_all(&out, &t->pp_after);
    if (!st && !out.p && !(out.p = malloc(sizeof *out.p))) st = NSQ_E_NOMEM;
    for (uint32_t i = 0; i < NSQ__TOK_MAX_STAGES; i++) {
        nsq__tbuf_free(&c.text[i]);
        nsq__tbuf_free(&c.map[i]);
        free(c.parts[i].p);
    }
    free(c.seg.p);
    free(c.longest);
    nsq__smap_free(&c.cache);
    free(c.cache_ids.p);
    nsq__bpe_scratch_free(&c.bpe);
    pcre2_match_data_free(c.md);
    nsq__tbuf_free(&clean);
    if (st) {
        free(out.p);
        return tokenize_fail(st, len, d);
    }
    *ids = out.p;
    *n_ids = out.n;
    return NSQ_OK;
}

nsq_status nsq_tokenize(const nsq_tokenizer *t, const char *text, size_t len, int add_special, int32_t **ids,
                        size_t *n_ids)
{
    return nsq_tokenize_diag(t, text, len, add_special, ids, n_ids, NULL);
}
