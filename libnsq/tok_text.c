/* tok_text.c - regexes, normalizers and pre-tokenizers of the tokenizer.
 *
 * Pre-tokenizers run depth first: stage k splits (and may rewrite) one piece
 * and hands each part to stage k+1; past the last stage the BPE model
 * encodes it. Splits follow `tokenizers`' NormalizedString::split: the
 * pattern's matches and the text between them, combined by the behavior
 * (Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous), empty
 * parts dropped. */
#include "tok_internal.h"

#include <stdio.h>
#include <utf8proc.h>

nsq_status nsq__tok_regex(const char *pat, size_t len, pcre2_code **re, char *err, size_t errlen)
{
    int code;
    PCRE2_SIZE off;
    if (len > NSQ__TOK_MAX_REGEX) {
        snprintf(err, errlen, "the pattern is %zu bytes, more than the %u nsq allows", len, NSQ__TOK_MAX_REGEX);
        return NSQ_E_LIMIT;
    }
    /* MATCH_INVALID_UTF: streaming decoders run regexes over raw bytes, which
     * may be an incomplete UTF-8 sequence; invalid bytes then never match
     * (without it PCRE2 reads past them: undefined behaviour). */
    if (!(*re = pcre2_compile((PCRE2_SPTR)pat, len, PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &code, &off, NULL))) {
        if (code == PCRE2_ERROR_HEAP_FAILED) {
            snprintf(err, errlen, "out of memory compiling it");
            return NSQ_E_NOMEM;
        }
        PCRE2_UCHAR msg[128];
        if (pcre2_get_error_message(code, msg, sizeof msg) < 0) msg[0] = 0;
        snprintf(err, errlen, "%s at offset %zu", (const char *)msg, (size_t)off);
        return NSQ_E_TOKENIZER;
    }
    pcre2_jit_compile(*re, PCRE2_JIT_COMPLETE); /* the interpreter runs it when JIT is unavailable */
    return NSQ_OK;
}

pcre2_match_context *nsq__tok_match_context(void)
{
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    if (!mc) return NULL;
    pcre2_set_match_limit(mc, NSQ__TOK_REGEX_STEPS);
    pcre2_set_depth_limit(mc, NSQ__TOK_REGEX_STEPS);
    pcre2_set_heap_limit(mc, NSQ__TOK_REGEX_HEAP);
    return mc;
}

/* A failed pcre2_match (rc < 0) as a status, d saying what ran out. */
static nsq_status re_fail(int rc, const char *what, nsq_diag *d)
{
    if (rc == PCRE2_ERROR_NOMEMORY)
        return nsq__fail(d, NSQ_E_NOMEM, UINT64_MAX, "", "out of memory matching the %s regex", what);
    if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT ||
        rc == PCRE2_ERROR_JIT_STACKLIMIT)
        return nsq__fail(d, NSQ_E_LIMIT, UINT64_MAX, "",
                         "the %s regex exceeded its match limit on this text (%u backtracking steps from one "
                         "position, %u KiB)", what, NSQ__TOK_REGEX_STEPS, NSQ__TOK_REGEX_HEAP);
    return nsq__fail(d, NSQ_E_TOKENIZER, UINT64_MAX, "", "the %s regex failed on this text (PCRE2 error %d)", what, rc);
}

static nsq_status grew(size_t max, nsq_diag *d, const char *what)
{
    return nsq__fail(d, NSQ_E_LIMIT, UINT64_MAX, "",
                     "the %s would make the text longer than %u x its length + %u bytes (here %zu bytes)", what,
                     NSQ__TOK_GROWTH, NSQ__TOK_SLACK, max);
}

/* The next non-empty match at or after from: 1 and [*ms, *me), 0 when none,
 * or a negative PCRE2 error. */
static int re_next(const pcre2_code *re, const char *s, size_t n, size_t from, pcre2_match_data *md,
                   pcre2_match_context *mc, size_t *ms, size_t *me)
{
    while (from <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, md, mc);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* JIT code runs on 32 KiB of machine stack: the interpreter has more */
            rc = pcre2_match(re, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, mc);
        if (rc == PCRE2_ERROR_NOMATCH) return 0;
        if (rc < 0) return rc;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[1] > ov[0] && ov[0] >= from) {
            *ms = ov[0];
            *me = ov[1];
            return 1;
        }
        if (ov[0] >= n) return 0; /* an empty match at the end */
        size_t l;
        nsq__utf8_at(s + ov[0], &l);
        from = ov[0] + l; /* step over an empty match, as find_iter does */
    }
    return 0;
}

static const char *find_lit(const char *s, size_t n, const char *p, size_t pl)
{
    return pl ? memmem(s, n, p, pl) : NULL;
}

/* One match of a literal or regex pattern: 1, 0 (none) or a PCRE2 error < 0. */
static int pat_next(const pcre2_code *re, const char *lit, size_t litlen, const char *s, size_t n, size_t from,
                    pcre2_match_data *md, pcre2_match_context *mc, size_t *ms, size_t *me)
{
    if (re) return re_next(re, s, n, from, md, mc, ms, me);
    const char *q = find_lit(s + from, n - from, lit, litlen);
    if (!q) return 0;
    *ms = (size_t)(q - s);
    *me = *ms + litlen;
    return 1;
}

nsq_status nsq__tok_replace(const char *s, size_t n, const char *pat, size_t plen, const pcre2_code *re,
                            const char *rep, size_t rlen, size_t max, nsq__tbuf *out, pcre2_match_data *md,
                            pcre2_match_context *mc, nsq_diag *d, const char *what)
{
    size_t pos = 0, ms, me;
    int rc;
    while (pos < n && (rc = pat_next(re, pat, plen, s, n, pos, md, mc, &ms, &me)) != 0) {
        if (rc < 0) return re_fail(rc, what, d);
        if (out->n > max || max - out->n < ms - pos || max - out->n - (ms - pos) < rlen) return grew(max, d, what);
        if (nsq__tbuf_put(out, s + pos, ms - pos) || nsq__tbuf_put(out, rep, rlen)) return NSQ_E_NOMEM;
        pos = me;
    }
    if (out->n > max || max - out->n < n - pos) return grew(max, d, what);
    return nsq__tbuf_put(out, s + pos, n - pos) ? NSQ_E_NOMEM : NSQ_OK;
}

/*-************************************
 *  Normalizers
 **************************************/
static nsq_status norm_one(const nsq__tnorm *z, const char *s, size_t n, nsq__tbuf *out, pcre2_match_data *md,
                           pcre2_match_context *mc, size_t max, nsq_diag *d)
{
    out->n = 0;
    switch (z->kind) {
    case NSQ__N_NFC: case NSQ__N_NFD: case NSQ__N_NFKC: case NSQ__N_NFKD: {
        if (!n) return NSQ_OK;
        int opt = UTF8PROC_STABLE;
        opt |= z->kind == NSQ__N_NFC || z->kind == NSQ__N_NFKC ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE;
        if (z->kind == NSQ__N_NFKC || z->kind == NSQ__N_NFKD) opt |= UTF8PROC_COMPAT;
        utf8proc_uint8_t *r = NULL;
        utf8proc_ssize_t len = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &r, (utf8proc_option_t)opt);
        if (len < 0) return len == UTF8PROC_ERROR_NOMEM ? NSQ_E_NOMEM : NSQ_E_ARG;
        int e = nsq__tbuf_put(out, r, (size_t)len);
        free(r);
        return e ? NSQ_E_NOMEM : NSQ_OK;
    }
    case NSQ__N_LOWER:
        for (size_t i = 0, l; i < n; i += l) {
            uint32_t cp = nsq__utf8_at(s + i, &l);
            if (nsq__tbuf_put_cp(out, (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp))) return NSQ_E_NOMEM;
        }
        return NSQ_OK;
    case NSQ__N_PREPEND:
        if (n && nsq__tbuf_put(out, z->a, z->alen)) return NSQ_E_NOMEM;
        return nsq__tbuf_put(out, s, n) ? NSQ_E_NOMEM : NSQ_OK;
    case NSQ__N_REPLACE:
        return nsq__tok_replace(s, n, z->a, z->alen, z->re, z->b, z->blen, max, out, md, mc, d, "normalizer Replace");
    case NSQ__N_STRIP: {
        size_t a = 0, b = n, l;
        while (z->left && a < b && nsq__uni_space(nsq__utf8_at(s + a, &l))) a += l;
        while (z->right && b > a) {
            size_t k = b - 1;
            while (k > a && ((uint8_t)s[k] & 0xC0) == 0x80) k--;
            if (!nsq__uni_space(nsq__utf8_at(s + k, &l))) break;
            b = k;
        }
        return nsq__tbuf_put(out, s + a, b - a) ? NSQ_E_NOMEM : NSQ_OK;
    }
    }
    return NSQ_E_ARG;
}

nsq_status nsq__tok_normalize(const nsq_tokenizer *t, const char *s, size_t n, nsq__tbuf *out,
                              pcre2_match_data *md, nsq_diag *d)
{
    static const char *names[] = {"normalizer NFC", "normalizer NFD", "normalizer NFKC", "normalizer NFKD",
                                  "normalizer Lowercase", "normalizer Prepend", "normalizer Replace", "normalizer Strip"};
    nsq__tbuf tmp[2] = {{0}, {0}};
    nsq_status st = NSQ_OK;
    size_t max = nsq__tok_growth_max(n); /* the whole chain's output, and each step's */
    for (uint32_t k = 0; k < t->n_norm && !st; k++) {
        nsq__tbuf *dst = &tmp[k & 1];
        st = norm_one(&t->norm[k], s, n, dst, md, t->mc, max, d);
        if (!st && dst->n > max) st = grew(max, d, names[t->norm[k].kind]);
        s = dst->p;
        n = dst->n;
    }
    out->n = 0;
    if (!st && nsq__tbuf_put(out, s, n)) st = NSQ_E_NOMEM;
    nsq__tbuf_free(&tmp[0]);
    nsq__tbuf_free(&tmp[1]);
    return st;
}

/*-************************************
 *  Pre-tokenizers
 **************************************/
/* The parts of s[0..n) for a SPLIT stage (or ByteLevel's regex, Isolated) into
 * out as (start, end, 0) triples. */
static nsq_status split_parts(nsq__tenc *c, const pcre2_code *re, const char *lit, size_t litlen, int behavior,
                              int invert, const char *s, size_t n, nsq__zbuf *out)
{
    nsq__zbuf *seg = &c->seg;
    seg->n = 0;
    out->n = 0;
    size_t prev = 0, ms, me;
    int rc;
    while (prev < n && (rc = pat_next(re, lit, litlen, s, n, prev, c->md, c->t->mc, &ms, &me)) != 0) {
        if (rc < 0) return re_fail(rc, "pre-tokenizer", c->d);
        if ((ms > prev && nsq__zbuf_push(seg, prev, ms, (size_t)invert)) || nsq__zbuf_push(seg, ms, me, (size_t)!invert))
            return NSQ_E_NOMEM;
        prev = me;
    }
    if (prev < n && nsq__zbuf_push(seg, prev, n, (size_t)invert)) return NSQ_E_NOMEM;
    size_t *g = seg->p, ng = seg->n / 3;
    int prev_match = 0;
    if (behavior == NSQ__B_MERGED_NEXT) {
        for (size_t i = ng; i-- > 0;) { /* built backwards, reversed below */
            size_t a = g[3 * i], b = g[3 * i + 1];
            int m = (int)g[3 * i + 2];
            if (m && !prev_match && out->n) out->p[out->n - 3] = a;
            else if (nsq__zbuf_push(out, a, b, 0)) return NSQ_E_NOMEM;
            prev_match = m;
        }
        for (size_t i = 0, j = out->n / 3; i < j / 2; i++) {
            size_t *x = out->p + 3 * i, *y = out->p + 3 * (j - 1 - i), ta = x[0], tb = x[1];
            x[0] = y[0], x[1] = y[1], y[0] = ta, y[1] = tb;
        }
        return NSQ_OK;
    }
    for (size_t i = 0; i < ng; i++) {
        size_t a = g[3 * i], b = g[3 * i + 1];
        int m = (int)g[3 * i + 2], join = 0;
        switch (behavior) {
        case NSQ__B_REMOVED:
            if (m) continue;
            break;
        case NSQ__B_CONTIGUOUS:
            join = m == prev_match && out->n;
            break;
        case NSQ__B_MERGED_PREV:
            join = m && !prev_match && out->n;
            break;
        default:
            break;
        }
        prev_match = m;
        if (join) out->p[out->n - 2] = b;
        else if (nsq__zbuf_push(out, a, b, 0)) return NSQ_E_NOMEM;
    }
    return NSQ_OK;
}

/* The model on one piece, through the call's cache of pieces already seen. */
static nsq_status model_piece(nsq__tenc *c, const char *s, size_t n)
{
    nsq__ibuf *out = c->out, *ci = &c->cache_ids;
    uint32_t v;
    int cacheable = n <= NSQ__TOK_CACHE_LEN;
    if (cacheable && nsq__smap_get(&c->cache, s, n, &v)) {
        for (int32_t k = 0; k < ci->p[v]; k++)
            if (nsq__ibuf_push(out, ci->p[v + 1 + (uint32_t)k])) return NSQ_E_NOMEM;
        return NSQ_OK;
    }
    size_t before = out->n;
    nsq_status st = nsq__bpe_encode(c->t, s, n, &c->bpe, out);
    if (st || !cacheable || c->cache.n >= NSQ__TOK_CACHE_N || ci->n > (1u << 30)) return st;
    v = (uint32_t)ci->n;
    if (nsq__ibuf_push(ci, (int32_t)(out->n - before))) return NSQ_E_NOMEM;
    for (size_t k = before; k < out->n; k++)
        if (nsq__ibuf_push(ci, out->p[k])) return NSQ_E_NOMEM;
    return nsq__smap_put(&c->cache, s, n, v) ? NSQ_E_NOMEM : NSQ_OK;
}

/* The model on a piece that the pre-tokenizers left whole: cut where no merge
 * can join (see chunk_rep), each part through the cache. */
static nsq_status model(nsq__tenc *c, const char *s, size_t n)
{
    const nsq_tokenizer *t = c->t;
    size_t rl = t->chunk_rep_len;
    if (!rl) return model_piece(c, s, n);
    size_t a = 0;
    const char *q = s;
    while ((q = find_lit(q + 1, n - (size_t)(q + 1 - s), t->chunk_rep, rl)) != NULL) {
        size_t i = (size_t)(q - s);
        if (i - a >= rl && memcmp(s + i - rl, t->chunk_rep, rl) == 0) continue; /* in a run of them */
        nsq_status st = model_piece(c, s + a, i - a);
        if (st) return st;
        a = i;
    }
    return model_piece(c, s + a, n - a);
}

/* Hands s[a..b), a part made by stage lv, to the next stage (through the byte map after ByteLevel). */
static nsq_status child(nsq__tenc *c, uint32_t lv, const char *s, size_t a, size_t b, int at_start)
{
    const char *q = s + a;
    size_t m = b - a;
    if (c->t->pre[lv].kind == NSQ__P_BYTELEVEL) {
        nsq__tbuf *map = &c->map[lv];
        map->n = 0;
        for (size_t k = 0; k < m; k++)
            if (nsq__tbuf_put_cp(map, nsq__byte_char((uint8_t)q[k]))) return NSQ_E_NOMEM;
        q = map->p;
        m = map->n;
    }
    return nsq__tok_pretokenize(c, lv + 1, q, m, at_start && a == 0);
}

/* Isolated and Removed splits, streamed: each part goes on as it is found. */
static nsq_status split_stream(nsq__tenc *c, uint32_t lv, const pcre2_code *re, const char *lit, size_t litlen,
                               int behavior, int invert, const char *s, size_t n, int at_start)
{
    size_t prev = 0, ms, me;
    int keep_match = behavior != NSQ__B_REMOVED || invert, keep_text = behavior != NSQ__B_REMOVED || !invert;
    while (prev < n) {
        int rc = pat_next(re, lit, litlen, s, n, prev, c->md, c->t->mc, &ms, &me);
        if (rc < 0) return re_fail(rc, "pre-tokenizer", c->d);
        if (!rc) ms = me = n;
        nsq_status st = NSQ_OK;
        if (ms > prev && keep_text) st = child(c, lv, s, prev, ms, at_start);
        if (!st && me > ms && keep_match) st = child(c, lv, s, ms, me, at_start);
        if (st) return st;
        prev = me;
    }
    return NSQ_OK;
}

nsq_status nsq__tok_pretokenize(nsq__tenc *c, uint32_t lv, const char *s, size_t n, int at_start)
{
    const nsq_tokenizer *t = c->t;
    if (!n) return NSQ_OK;
    if (lv == t->n_pre) return model(c, s, n);
    const nsq__tpre *p = &t->pre[lv];
    nsq__tbuf *text = &c->text[lv];
    nsq__zbuf *parts = &c->parts[lv];
    nsq_status st = NSQ_OK;
    text->n = 0;
    parts->n = 0;
    switch (p->kind) {
    case NSQ__P_SPLIT:
        if (p->behavior == NSQ__B_ISOLATED || p->behavior == NSQ__B_REMOVED)
            return split_stream(c, lv, p->re, p->lit, p->litlen, p->behavior, p->invert, s, n, at_start);
        st = split_parts(c, p->re, p->lit, p->litlen, p->behavior, p->invert, s, n, parts);
        break;
    case NSQ__P_METASPACE: {
        int pre = p->prepend == NSQ__PREPEND_ALWAYS || (p->prepend == NSQ__PREPEND_FIRST && at_start);
        if (pre && (s[0] == ' ' || (n >= p->replen && memcmp(s, p->rep, p->replen) == 0))) pre = 0;
        if (pre && nsq__tbuf_put(text, p->rep, p->replen)) return NSQ_E_NOMEM;
        for (size_t i = 0, j; i < n; i = j) {
            const char *sp = memchr(s + i, ' ', n - i);
            j = sp ? (size_t)(sp - s) : n;
            if (nsq__tbuf_put(text, s + i, j - i)) return NSQ_E_NOMEM;
            if (j < n && nsq__tbuf_put(text, p->rep, p->replen)) return NSQ_E_NOMEM;
            if (j < n) j++;
        }
        s = text->p;
        n = text->n;
        if (!p->split) return nsq__tok_pretokenize(c, lv + 1, s, n, at_start);
        size_t a = 0; /* a part starts at each replacement character */
        for (const char *q = s + 1; (q = find_lit(q, n - (size_t)(q - s), p->rep, p->replen)) != NULL; q += p->replen) {
            if ((size_t)(q - s) > a && (st = nsq__tok_pretokenize(c, lv + 1, s + a, (size_t)(q - s) - a, at_start && a == 0)))
                return st;
            a = (size_t)(q - s);
        }
        return nsq__tok_pretokenize(c, lv + 1, s + a, n - a, at_start && a == 0);
    }
    case NSQ__P_BYTELEVEL:
        if (p->add_prefix_space && s[0] != ' ') {
            if (nsq__tbuf_put(text, " ", 1) || nsq__tbuf_put(text, s, n)) return NSQ_E_NOMEM;
            s = text->p;
            n = text->n;
        }
        if (p->re) return split_stream(c, lv, p->re, NULL, 0, NSQ__B_ISOLATED, 0, s, n, at_start);
        return child(c, lv, s, 0, n, at_start);
    }
    for (size_t i = 0; !st && i < parts->n; i += 3) st = child(c, lv, s, parts->p[i], parts->p[i + 1], at_start);
    return st;
}
