/* tok_bpe.c - the BPE model on one pre-tokenized piece, as Hugging Face
 * `tokenizers` runs it (models/bpe: merge_word + Word::merge_all without
 * dropout): one symbol per character (with the continuing-subword prefix and
 * end-of-word suffix, byte fallback and unknown token), then the adjacent
 * pair of lowest merge rank is merged until none is left, leftmost first on
 * ties. A binary heap of candidate merges and a linked list of symbols make
 * this O(n log n) in the piece length. */
#include "tok_internal.h"

static int heap_less(const nsq__bmerge *a, const nsq__bmerge *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static int heap_push(nsq__bpe_scratch *sc, uint32_t rank, uint32_t pos, uint32_t id)
{
    if (sc->nheap == sc->capheap) {
        size_t cap = sc->capheap ? 2 * sc->capheap : 64;
        nsq__bmerge *h = realloc(sc->heap, cap * sizeof *h);
        if (!h) return -1;
        sc->heap = h;
        sc->capheap = cap;
    }
    nsq__bmerge *h = sc->heap, v = {rank, pos, id};
    size_t i = sc->nheap++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&v, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
    return 0;
}

static nsq__bmerge heap_pop(nsq__bpe_scratch *sc)
{
    nsq__bmerge *h = sc->heap, top = h[0], last = h[--sc->nheap];
    size_t i = 0, n = sc->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (n) h[i] = last;
    return top;
}

static int add_sym(nsq__bpe_scratch *sc, int32_t id)
{
    if (sc->nsym == sc->capsym) {
        size_t cap = sc->capsym ? 2 * sc->capsym : 64;
        if (cap > (size_t)INT32_MAX) return -1;
        nsq__bsym *s = realloc(sc->sym, cap * sizeof *s);
        if (!s) return -1;
        sc->sym = s;
        sc->capsym = cap;
    }
    int32_t i = (int32_t)sc->nsym++;
    sc->sym[i] = (nsq__bsym){id, i - 1, i + 1};
    return 0;
}

/* The id of one character of the piece (with prefix/suffix as they apply). */
static int char_id(const nsq_tokenizer *t, const char *c, size_t cl, int first, int last, nsq__bpe_scratch *sc,
                   const char **s, size_t *sl, uint32_t *id)
{
    *s = c;
    *sl = cl;
    if (!t->prefix && !t->suffix) {
        size_t l;
        uint32_t cp = nsq__utf8_at(c, &l);
        if (cp < t->cp_tok_n) {
            if (t->cp_tok[cp] < 0) return 0;
            *id = (uint32_t)t->cp_tok[cp];
            return 1;
        }
        return cp >= NSQ__TOK_CP_TABLE && nsq__smap_get(&t->vocab, c, cl, id);
    }
    size_t pl = first || !t->prefix ? 0 : t->prefix_len, xl = last && t->suffix ? t->suffix_len : 0;
    if (pl + cl + xl > sizeof sc->tmp) return 0; /* longer than any sane prefix/suffix: unknown */
    if (pl) memcpy(sc->tmp, t->prefix, pl);
    memcpy(sc->tmp + pl, c, cl);
    if (xl) memcpy(sc->tmp + pl + cl, t->suffix, xl);
    *s = sc->tmp;
    *sl = pl + cl + xl;
    return nsq__smap_get(&t->vocab, *s, *sl, id);
}

static int merge_all(const nsq_tokenizer *t, nsq__bpe_scratch *sc)
{
    nsq__bsym *s = sc->sym;
    size_t n = sc->nsym;
    sc->nheap = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        const nsq__pment *m = nsq__pmap_get(&t->merges, (uint32_t)s[i].id, (uint32_t)s[i + 1].id);
        if (m && heap_push(sc, m->rank, (uint32_t)i, m->id)) return -1;
    }
    while (sc->nheap) {
        nsq__bmerge top = heap_pop(sc);
        nsq__bsym *a = &s[top.pos];
        if (a->id < 0 || a->next < 0 || (size_t)a->next >= n) continue; /* removed, or the last symbol */
        int32_t nx = a->next;
        const nsq__pment *m = nsq__pmap_get(&t->merges, (uint32_t)a->id, (uint32_t)s[nx].id);
        if (!m || m->id != top.id) continue; /* an expired entry */
        a->id = (int32_t)top.id;
        a->next = s[nx].next;
        s[nx].id = -1;
        if ((size_t)a->next < n) s[a->next].prev = (int32_t)top.pos;
        if (a->prev >= 0) {
            m = nsq__pmap_get(&t->merges, (uint32_t)s[a->prev].id, (uint32_t)a->id);
            if (m && heap_push(sc, m->rank, (uint32_t)a->prev, m->id)) return -1;
        }
        if ((size_t)a->next < n) {
            m = nsq__pmap_get(&t->merges, (uint32_t)a->id, (uint32_t)s[a->next].id);
            if (m && heap_push(sc, m->rank, top.pos, m->id)) return -1;
        }
    }
    return 0;
}

nsq_status nsq__bpe_encode(const nsq_tokenizer *t, const char *w, size_t n, nsq__bpe_scratch *sc, nsq__ibuf *out)
{
    uint32_t id;
    if (!n) return NSQ_OK;
    if (t->ignore_merges && nsq__smap_get(&t->vocab, w, n, &id)) return nsq__ibuf_push(out, (int32_t)id) ? NSQ_E_NOMEM : NSQ_OK;
    sc->nsym = 0;
    int unk = 0; /* an unknown token is pending (fused over consecutive unknown characters) */
    for (size_t i = 0; i < n;) {
        size_t cl;
        nsq__utf8_at(w + i, &cl);
        if (cl > n - i) cl = n - i;
        const char *s;
        size_t sl;
        int first = i == 0, last = i + cl == n;
        if (char_id(t, w + i, cl, first, last, sc, &s, &sl, &id)) {
            if (unk && add_sym(sc, t->unk_id)) return NSQ_E_NOMEM;
            unk = 0;
            if (add_sym(sc, (int32_t)id)) return NSQ_E_NOMEM;
            i += cl;
            continue;
        }
        i += cl;
        if (t->byte_fallback) {
            size_t k = 0;
            while (k < sl && t->byte_tok[(uint8_t)s[k]] >= 0) k++;
            if (k == sl) {
                for (k = 0; k < sl; k++)
                    if (add_sym(sc, t->byte_tok[(uint8_t)s[k]])) return NSQ_E_NOMEM;
                continue;
            }
        }
        if (t->unk_id >= 0) {
            if (unk && !t->fuse_unk && add_sym(sc, t->unk_id)) return NSQ_E_NOMEM;
            unk = 1;
        }
    }
    if (unk && add_sym(sc, t->unk_id)) return NSQ_E_NOMEM;
    if (!sc->nsym) return NSQ_OK;
    sc->sym[sc->nsym - 1].next = -1;
    if (sc->nsym > 1 && merge_all(t, sc)) return NSQ_E_NOMEM;
    for (int32_t i = 0; i >= 0; i = sc->sym[i].next)
        if (nsq__ibuf_push(out, sc->sym[i].id)) return NSQ_E_NOMEM;
    return NSQ_OK;
}

void nsq__bpe_scratch_free(nsq__bpe_scratch *sc)
{
    free(sc->sym);
    free(sc->heap);
    memset(sc, 0, sizeof *sc);
}
