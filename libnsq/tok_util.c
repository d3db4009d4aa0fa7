/* tok_util.c - the tokenizer's containers (buffers, hash maps) and UTF-8,
 * Unicode and byte-level helpers. */
#include "tok_internal.h"

#define XXH_INLINE_ALL
#include <sys/random.h>
#include <time.h>
#include <utf8proc.h>
#include <xxhash.h>

uint64_t nsq__tok_seed(void)
{
    uint64_t s;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) == (ssize_t)sizeof s) return s;
    struct timespec ts; /* no entropy yet (early boot): the clock and where the stack is */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return XXH3_64bits_withSeed(&ts, sizeof ts, (uint64_t)(uintptr_t)&s);
}

/*-************************************
 *  Buffers
 **************************************/
int nsq__tbuf_grow(nsq__tbuf *b, size_t extra)
{
    size_t need;
    if (__builtin_add_overflow(b->n, extra, &need)) return -1;
    if (need <= b->cap && b->p) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) return -1;
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

void nsq__tbuf_free(nsq__tbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

int nsq__tbuf_put_cp(nsq__tbuf *b, uint32_t cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | cp >> 12);
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | cp >> 18);
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return nsq__tbuf_put(b, u, n);
}

int nsq__ibuf_push(nsq__ibuf *b, int32_t v)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 256;
        if (cap > SIZE_MAX / sizeof *b->p) return -1;
        int32_t *p = realloc(b->p, cap * sizeof *p);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    b->p[b->n++] = v;
    return 0;
}

int nsq__zbuf_push(nsq__zbuf *z, size_t a, size_t b, size_t c)
{
    if (z->cap - z->n < 3) {
        size_t cap = z->cap ? 2 * z->cap : 96;
        size_t *p = realloc(z->p, cap * sizeof *p);
        if (!p) return -1;
        z->p = p;
        z->cap = cap;
    }
    z->p[z->n++] = a;
    z->p[z->n++] = b;
    z->p[z->n++] = c;
    return 0;
}

/*-************************************
 *  String map (open addressing, linear probing)
 **************************************/
static uint32_t smap_hash(const nsq__smap *m, const char *k, size_t n)
{
    return (uint32_t)XXH3_64bits_withSeed(k, n, m->seed);
}

static int smap_rehash(nsq__smap *m, uint32_t slots)
{
    uint32_t *s = calloc(slots, sizeof *s);
    if (!s) return -1;
    free(m->slot);
    m->slot = s;
    m->mask = slots - 1;
    for (uint32_t e = 0; e < m->n; e++) {
        uint32_t i = m->ent[e].hash & m->mask;
        while (s[i]) i = (i + 1) & m->mask;
        s[i] = e + 1;
    }
    return 0;
}

int nsq__smap_put(nsq__smap *m, const char *k, size_t n, uint32_t val)
{
    if (n > UINT32_MAX || m->keys.n + n > UINT32_MAX || m->n >= (1u << 30)) return -1;
    if (!m->slot) m->seed = nsq__tok_seed();
    uint32_t h = smap_hash(m, k, n);
    if (m->slot) {
        for (uint32_t i = h & m->mask; m->slot[i]; i = (i + 1) & m->mask) {
            nsq__sment *e = &m->ent[m->slot[i] - 1];
            if (e->hash == h && e->len == n && memcmp(m->keys.p + e->off, k, n) == 0) {
                e->val = val;
                return 0;
            }
        }
    }
    if (m->n == m->cap) {
        uint32_t cap = m->cap ? 2 * m->cap : 64;
        nsq__sment *e = realloc(m->ent, (size_t)cap * sizeof *e);
        if (!e) return -1;
        m->ent = e;
        m->cap = cap;
    }
    if (!m->slot || (uint64_t)(m->n + 1) * 2 > (uint64_t)m->mask + 1) { /* load factor <= 1/2 */
        uint32_t slots = m->slot ? 2 * (m->mask + 1) : 128;
        if (smap_rehash(m, slots)) return -1;
    }
    uint32_t off = (uint32_t)m->keys.n;
    if (nsq__tbuf_put(&m->keys, k, n)) return -1;
    m->ent[m->n] = (nsq__sment){off, (uint32_t)n, val, h};
    uint32_t i = h & m->mask;
    while (m->slot[i]) i = (i + 1) & m->mask;
    m->slot[i] = ++m->n;
    return 0;
}

int nsq__smap_get(const nsq__smap *m, const char *k, size_t n, uint32_t *val)
{
    if (!m->slot) return 0;
    uint32_t h = smap_hash(m, k, n);
    for (uint32_t i = h & m->mask; m->slot[i]; i = (i + 1) & m->mask) {
        const nsq__sment *e = &m->ent[m->slot[i] - 1];
        if (e->hash == h && e->len == n && memcmp(m->keys.p + e->off, k, n) == 0) {
            *val = e->val;
            return 1;
        }
    }
    return 0;
}

void nsq__smap_free(nsq__smap *m)
{
    free(m->slot);
    free(m->ent);
    nsq__tbuf_free(&m->keys);
    memset(m, 0, sizeof *m);
}

/*-************************************
 *  Pair map
 **************************************/
static int pmap_insert(nsq__pment *e, size_t mask, uint64_t seed, nsq__pment v)
{
    size_t i = nsq__pmap_slot(v.key, seed, mask);
    for (;; i = (i + 1) & mask) {
        if (e[i].key == v.key) {
            e[i] = v;
            return 0; /* replaced */
        }
        if (e[i].key == UINT64_MAX) {
            e[i] = v;
            return 1;
        }
    }
}

int nsq__pmap_put(nsq__pmap *m, uint32_t a, uint32_t b, uint32_t rank, uint32_t id)
{
    if (!m->e || (m->n + 1) * 2 > m->mask + 1) {
        size_t slots = m->e ? 2 * (m->mask + 1) : 256;
        if (slots > SIZE_MAX / sizeof(nsq__pment)) return -1;
        nsq__pment *e = malloc(slots * sizeof *e);
        if (!e) return -1;
        for (size_t i = 0; i < slots; i++) e[i].key = UINT64_MAX;
        if (!m->e) m->seed = nsq__tok_seed();
        for (size_t i = 0; m->e && i <= m->mask; i++)
            if (m->e[i].key != UINT64_MAX) pmap_insert(e, slots - 1, m->seed, m->e[i]);
        free(m->e);
        m->e = e;
        m->mask = slots - 1;
    }
    m->n += (size_t)pmap_insert(m->e, m->mask, m->seed, (nsq__pment){(uint64_t)a << 32 | b, rank, id});
    return 0;
}

void nsq__pmap_free(nsq__pmap *m)
{
    free(m->e);
    memset(m, 0, sizeof *m);
}

/*-************************************
 *  Added-token automaton
 **************************************/
/* The child of node v by byte c, or 0 (the root is nobody's child). */
static uint32_t tm_child(const nsq__tmatch *m, uint32_t v, uint8_t c)
{
    const nsq__pment *e = nsq__pmap_get(&m->go, v, c);
    return e ? e->rank : 0;
}

/* The failure links and best tokens, breadth first (fc/sib: each node's
 * first child and next sibling, byte: the byte that leads to it). */
static void tm_links(nsq__tmatch *m, const uint32_t *fc, const uint32_t *sib, const uint8_t *byte, uint32_t *queue)
{
    size_t head = 0, tail = 1;
    queue[0] = 0;
    while (head < tail) {
        uint32_t v = queue[head++];
        for (uint32_t w = fc[v]; w; w = sib[w]) {
            uint32_t f = 0;
            queue[tail++] = w;
            if (v) {
                for (f = m->fail[v]; f && !tm_child(m, f, byte[w]); f = m->fail[f]) {}
                f = tm_child(m, f, byte[w]);
            }
            m->fail[w] = f;
            if (!m->best[w]) m->best[w] = m->best[f];
        }
    }
}

int nsq__tmatch_build(nsq__tmatch *m, const nsq__tadded *a, uint32_t n, int norm)
{
    memset(m, 0, sizeof *m);
    size_t total = 1;
    for (uint32_t i = 0; i < n; i++)
        if (a[i].normalized == norm) total += norm ? a[i].nlen : a[i].len;
    if (total == 1) return 0;
    if (total > UINT32_MAX) return -1;
    uint32_t *fc = calloc(total, sizeof *fc), *sib = calloc(total, sizeof *sib), *queue = malloc(total * sizeof *queue);
    uint8_t *byte = malloc(total);
    m->fail = calloc(total, sizeof *m->fail);
    m->best = calloc(total, sizeof *m->best);
    int rc = fc && sib && queue && byte && m->fail && m->best ? 0 : -1;
    uint32_t nodes = 1;
    for (uint32_t i = 0; i < n && !rc; i++) {
        if (a[i].normalized != norm) continue;
        const char *s = norm ? a[i].ns : a[i].s;
        uint32_t v = 0;
        for (size_t k = norm ? a[i].nlen : a[i].len; k-- > 0 && !rc;) {
            uint8_t c = (uint8_t)s[k];
            uint32_t w = tm_child(m, v, c);
            if (!w) {
                w = nodes++;
                byte[w] = c;
                sib[w] = fc[v];
                fc[v] = w;
                rc = nsq__pmap_put(&m->go, v, c, w, 0);
            }
            v = w;
        }
        if (v && !m->best[v]) m->best[v] = i + 1; /* of equal contents, the first */
    }
    m->n = nodes;
    if (!rc) tm_links(m, fc, sib, byte, queue);
    free(fc);
    free(sib);
    free(queue);
    free(byte);
    if (rc) nsq__tmatch_free(m);
    return rc;
}

void nsq__tmatch_free(nsq__tmatch *m)
{
    nsq__pmap_free(&m->go);
    free(m->fail);
    free(m->best);
    memset(m, 0, sizeof *m);
}

void nsq__tmatch_scan(const nsq__tmatch *m, const char *s, size_t n, uint32_t *longest)
{
    uint32_t v = 0;
    for (size_t i = n; i-- > 0;) {
        uint8_t c = (uint8_t)s[i];
        uint32_t w;
        while (!(w = m->n ? tm_child(m, v, c) : 0) && v) v = m->fail[v];
        v = w;
        longest[i] = m->n ? m->best[v] : 0;
    }
}

/*-************************************
 *  UTF-8
 **************************************/
/* Length of the longest prefix of s that could begin a valid sequence (>= 1). */
static size_t utf8_bad_len(const uint8_t *s, size_t n)
{
    uint8_t b = s[0];
    size_t len;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) len = 2;
    else if (b >= 0xE0 && b <= 0xEF) {
        len = 3;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        len = 4;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
    } else {
        return 1;
    }
    size_t i = 1;
    for (; i < len && i < n; i++) {
        if (s[i] < lo || s[i] > hi) break;
        lo = 0x80, hi = 0xBF;
    }
    return i;
}

int nsq__utf8_lossy(nsq__tbuf *out, const uint8_t *s, size_t n)
{
    if (!n) return nsq__tbuf_put(out, "", 0);
    for (size_t i = 0; i < n;) {
        size_t v = nsq__utf8_valid_prefix(s + i, n - i);
        if (nsq__tbuf_put(out, s + i, v)) return -1;
        if ((i += v) == n) break;
        if (nsq__tbuf_put(out, "\xEF\xBF\xBD", 3)) return -1;
        i += utf8_bad_len(s + i, n - i);
    }
    return 0;
}

uint32_t nsq__utf8_at(const char *s, size_t *len)
{
    const uint8_t *u = (const uint8_t *)s;
    if (u[0] < 0x80) {
        *len = 1;
        return u[0];
    }
    if (u[0] < 0xE0) {
        *len = 2;
        return (uint32_t)(u[0] & 0x1F) << 6 | (u[1] & 0x3F);
    }
    if (u[0] < 0xF0) {
        *len = 3;
        return (uint32_t)(u[0] & 0x0F) << 12 | (uint32_t)(u[1] & 0x3F) << 6 | (u[2] & 0x3F);
    }
    *len = 4;
    return (uint32_t)(u[0] & 0x07) << 18 | (uint32_t)(u[1] & 0x3F) << 12 | (uint32_t)(u[2] & 0x3F) << 6 |
           (u[3] & 0x3F);
}

/*-************************************
 *  Unicode classes
 **************************************/
int nsq__uni_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Rust regex's \w: Alphabetic, marks, decimal digits, connector punctuation, joiners. */
int nsq__uni_word(uint32_t c)
{
    if (c < 0x80) return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || c == '_';
    if (c == 0x200C || c == 0x200D) return 1;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
        return 1;
    default:
        return 0;
    }
}

/*-************************************
 *  Byte-level map (byte-level BPE's bytes_to_unicode)
 **************************************/
static int byte_printable(unsigned b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; }

/* The 68 other bytes, in order (0..32, 127..160, 173), become U+0100..U+0143. */
uint32_t nsq__byte_char(uint8_t b)
{
    if (b <= 32) return 256u + b;
    if (b >= 127 && b <= 160) return b + 162u;
    if (b == 173) return 323;
    return b;
}

int nsq__char_byte(uint32_t cp)
{
    if (cp < 256) return byte_printable(cp) ? (int)cp : -1;
    if (cp <= 288) return (int)(cp - 256);
    if (cp <= 322) return (int)(cp - 162);
    return cp == 323 ? 173 : -1;
}
