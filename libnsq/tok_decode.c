/* tok_decode.c - ids to text: token strings through the decoder chain, as
 * `tokenizers`' decode_chain runs it on a list of strings, and the streaming
 * form for one token at a time (nsq_token_bytes). */
#include "tok_internal.h"

/* A list of strings: string i is b.p[i ? end[i-1] : 0 .. end[i]). */
typedef struct {
    nsq__tbuf b;
    size_t *end;
    size_t n, cap;
} tlist;

static int tl_close(tlist *l) /* ends the string being appended to b */
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        size_t *e = realloc(l->end, cap * sizeof *e);
        if (!e) return -1;
        l->end = e;
        l->cap = cap;
    }
    l->end[l->n++] = l->b.n;
    return 0;
}

static int tl_push(tlist *l, const char *s, size_t n) { return nsq__tbuf_put(&l->b, s, n) || tl_close(l); }

static const char *tl_at(const tlist *l, size_t i, size_t *n)
{
    size_t a = i ? l->end[i - 1] : 0;
    *n = l->end[i] - a;
    return l->b.p ? l->b.p + a : "";
}

static void tl_free(tlist *l)
{
    nsq__tbuf_free(&l->b);
    free(l->end);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* "<0xXX>" (as u8::from_str_radix reads XX, a leading + included): the byte, or -1. */
static int byte_token(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int hi = s[3] == '+' ? 0 : hexval(s[3]), lo = hexval(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* One decoder over in, into out (at most max bytes: NSQ_E_LIMIT). stream:
 * one token of a stream (bytes kept raw, nothing known about the end);
 * first: it starts the text. */
static nsq_status dec_step(const nsq_tokenizer *t, const nsq__tdec *z, const tlist *in, tlist *out, int stream,
                           int first, pcre2_match_data *md, size_t max)
{
    out->b.n = 0;
    out->n = 0;
    size_t n = 0, l;
    const char *s = NULL;
    switch (z->kind) {
    case NSQ__D_BYTELEVEL: {
        nsq__tbuf raw = {0};
        int e = 0;
        for (size_t i = 0; i < in->n && !e; i++) {
            s = tl_at(in, i, &n);
            size_t k = 0;
            while (k < n && nsq__char_byte(nsq__utf8_at(s + k, &l)) >= 0) k += l;
            if (k < n) { /* a character outside the map: the token as it is */
                e = nsq__tbuf_put(&raw, s, n);
                continue;
            }
            for (k = 0; k < n && !e; k += l) e = nsq__tbuf_putc(&raw, (char)nsq__char_byte(nsq__utf8_at(s + k, &l)));
        }
        if (!e) e = stream ? nsq__tbuf_put(&out->b, raw.p, raw.n) : nsq__utf8_lossy(&out->b, (const uint8_t *)raw.p, raw.n);
        nsq__tbuf_free(&raw);
        return e || tl_close(out) ? NSQ_E_NOMEM : NSQ_OK;
    }
    case NSQ__D_BYTEFALLBACK: {
        size_t pend = 0; /* byte tokens collected at the end of out->b, not yet closed */
        for (size_t i = 0; i <= in->n; i++) {
            int b = -1;
            if (i < in->n) {
                s = tl_at(in, i, &n);
                b = byte_token(s, n);
            }
            if (b >= 0) {
                if (nsq__tbuf_putc(&out->b, (char)b)) return NSQ_E_NOMEM;
                pend++;
                continue;
            }
            if (pend) {
                const uint8_t *p = (const uint8_t *)out->b.p + out->b.n - pend;
                if (stream || nsq__utf8_ok(p, pend)) {
                    if (tl_close(out)) return NSQ_E_NOMEM;
                } else { /* invalid: one U+FFFD per byte */
                    out->b.n -= pend;
                    for (size_t k = 0; k < pend; k++)
                        if (tl_push(out, "\xEF\xBF\xBD", 3)) return NSQ_E_NOMEM;
                }
                pend = 0;
            }
            if (i < in->n && tl_push(out, s, n)) return NSQ_E_NOMEM;
        }
        return NSQ_OK;
    }
    case NSQ__D_FUSE:
        return nsq__tbuf_put(&out->b, in->b.p, in->b.n) || tl_close(out) ? NSQ_E_NOMEM : NSQ_OK;
    default:
        break;
    }
    for (size_t i = 0; i < in->n; i++) { /* the token-by-token decoders */
        s = tl_at(in, i, &n);
        nsq_status st = NSQ_OK;
        switch (z->kind) {
        case NSQ__D_REPLACE:
            st = nsq__tok_replace(s, n, z->a, z->alen, z->re, z->b, z->blen, max, &out->b, md, t->mc, NULL,
                                  "decoder Replace");
            break;
        case NSQ__D_STRIP: {
            size_t a = 0, b = n;
            for (size_t k = 0; k < z->start && a < n && (!stream || first); k++) {
                if (nsq__utf8_at(s + a, &l) != z->ch) break;
                a += l;
            }
            for (size_t k = 0; k < z->stop && b > a && !stream; k++) {
                size_t c = b - 1;
                while (c > a && ((uint8_t)s[c] & 0xC0) == 0x80) c--;
                if (nsq__utf8_at(s + c, &l) != z->ch) break;
                b = c;
            }
            if (nsq__tbuf_put(&out->b, s + a, b - a)) st = NSQ_E_NOMEM;
            break;
        }
        case NSQ__D_METASPACE: {
            int drop = (stream ? first : i == 0) && z->prepend != NSQ__PREPEND_NEVER;
            for (size_t k = 0; k < n && !st; k += l) {
                uint32_t cp = nsq__utf8_at(s + k, &l);
                if (cp != z->ch) st = nsq__tbuf_put(&out->b, s + k, l) ? NSQ_E_NOMEM : NSQ_OK;
                else if (!drop) st = nsq__tbuf_putc(&out->b, ' ') ? NSQ_E_NOMEM : NSQ_OK;
            }
            break;
        }
        case NSQ__D_BPE: {
            const char *sp = !stream && i + 1 == in->n ? "" : " ";
            st = nsq__tok_replace(s, n, z->a, z->alen, NULL, sp, strlen(sp), max, &out->b, md, NULL, NULL,
                                  "decoder BPEDecoder");
            break;
        }
        default:
            return NSQ_E_ARG;
        }
        if (st) return st;
        if (tl_close(out)) return NSQ_E_NOMEM;
    }
    return NSQ_OK;
}

/* Runs the decoders over l; the result is the concatenation of *res's strings. */
static nsq_status run_chain(const nsq_tokenizer *t, tlist *l, tlist *tmp, int stream, int first, tlist **res)
{
    *res = l;
    if (!t->has_decoder) { /* tokens joined with spaces */
        tmp->b.n = 0;
        tmp->n = 0;
        for (size_t i = 0; i < l->n; i++) {
            size_t n;
            const char *s = tl_at(l, i, &n);
            if ((i && nsq__tbuf_putc(&tmp->b, ' ')) || nsq__tbuf_put(&tmp->b, s, n)) return NSQ_E_NOMEM;
        }
        *res = tmp;
        return tl_close(tmp) ? NSQ_E_NOMEM : NSQ_OK;
    }
    pcre2_match_data *md = NULL;
    for (uint32_t k = 0; k < t->n_dec; k++)
        if (t->dec[k].re && !md && !(md = pcre2_match_data_create(1, NULL))) return NSQ_E_NOMEM;
    tlist *a = l, *b = tmp;
    nsq_status st = NSQ_OK;
    size_t max = nsq__tok_growth_max(l->b.n + l->n); /* every step's output, as normalizers */
    for (uint32_t k = 0; k < t->n_dec && !st; k++) {
        st = dec_step(t, &t->dec[k], a, b, stream, first, md, max);
        if (!st && b->b.n > max) st = NSQ_E_LIMIT;
        tlist *x = a;
        a = b;
        b = x;
    }
    pcre2_match_data_free(md);
    *res = a;
    return st;
}

static int valid_id(const nsq_tokenizer *t, int32_t id)
{
    return id >= 0 && (uint32_t)id < t->n_ids && (t->flags[id] & NSQ__F_VALID);
}

nsq_status nsq_detokenize(const nsq_tokenizer *t, const int32_t *ids, size_t n_ids, int skip_special, char **text,
                          size_t *len)
{
    if (!text || !len) return NSQ_E_ARG;
    *text = NULL;
    *len = 0;
    if (!t || (!ids && n_ids)) return NSQ_E_ARG;
    tlist l = {0}, tmp = {0}, *res;
    nsq_status st = NSQ_OK;
    for (size_t i = 0; i < n_ids && !st; i++) {
        int32_t id = ids[i];
        if (!valid_id(t, id) || (skip_special && (t->flags[id] & NSQ__F_SPECIAL))) continue; /* as tokenizers does */
        if (tl_push(&l, t->strs.p + t->str_off[id], t->str_len[id])) st = NSQ_E_NOMEM;
    }
    if (!st) st = run_chain(t, &l, &tmp, 0, 1, &res);
    if (!st) {
        char *p = malloc(res->b.n + 1);
        if (!p) {
            st = NSQ_E_NOMEM;
        } else {
            if (res->b.n) memcpy(p, res->b.p, res->b.n);
            p[res->b.n] = 0;
            *text = p;
            *len = res->b.n;
        }
    }
    tl_free(&l);
    tl_free(&tmp);
    return st;
}

nsq_status nsq_token_bytes(const nsq_tokenizer *t, int32_t prev_id, int32_t id, char *buf, size_t cap, size_t *len)
{
    if (!len) return NSQ_E_ARG;
    *len = 0;
    if (!t || (!buf && cap) || !valid_id(t, id)) return NSQ_E_ARG;
    int first = prev_id < 0; /* the text starts: at the start, or after what add_special puts first (BOS) */
    for (size_t i = 0; i < t->pp_before.n && !first; i++) first = prev_id == t->pp_before.p[i];
    tlist l = {0}, tmp = {0}, *res;
    nsq_status st = tl_push(&l, t->strs.p + t->str_off[id], t->str_len[id]) ? NSQ_E_NOMEM : NSQ_OK;
    if (!st) st = run_chain(t, &l, &tmp, 1, first, &res);
    if (!st) {
        *len = res->b.n;
        if (res->b.n && cap) memcpy(buf, res->b.p, res->b.n < cap ? res->b.n : cap);
    }
    tl_free(&l);
    tl_free(&tmp);
    return st;
}
