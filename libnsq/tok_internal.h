/* tok_internal.h - private to the tokenizer (tokenize.c and tok_*.c): the
 * built tokenizer, its configuration and the containers it is made of.
 *
 * The pipeline follows Hugging Face `tokenizers`: added tokens are cut out of
 * the text first, the rest is normalized, pre-tokenized (each pre-tokenizer
 * splits every piece of the one before it) and each piece is encoded by the
 * BPE model. Decoding maps ids to token strings and runs the decoder chain. */
#ifndef NSQ_TOK_INTERNAL_H
#define NSQ_TOK_INTERNAL_H

#include "internal.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>

/* What a tokenizer may hold and how much work one call may do: every limit
 * nsq enforces is here (spec/nsq-format.md section 6.1 and nsq.h list them).
 * Real tokenizers stay far below: < 300k ids, a few hundred added tokens,
 * regexes of a few hundred bytes that backtrack little. */
#define NSQ__TOK_MAX_FILE (64u << 20)   /* bytes of each file parsed (tokenizer.json, vocab.json, ...) */
#define NSQ__TOK_MAX_ID (1u << 22)      /* every id is below; vocabulary entries and merges as many at most */
#define NSQ__TOK_MAX_ADDED (1u << 20)   /* added tokens */
#define NSQ__TOK_MAX_ADDED_BYTES (16u << 20) /* their contents together (and again once normalized) */
#define NSQ__TOK_MAX_PP 256u            /* ids a post-processor adds before a text, and after it */
#define NSQ__TOK_MAX_STAGES 16u         /* normalizers, pre-tokenizers, decoders each (after flattening) */
#define NSQ__TOK_MAX_REGEX 16384u       /* bytes of a regex pattern */
#define NSQ__TOK_REGEX_STEPS 100000u    /* PCRE2 match and depth limits: backtracking from one start position */
#define NSQ__TOK_REGEX_HEAP 32768u      /* PCRE2 heap limit of one match, KiB */
#define NSQ__TOK_GROWTH 16u             /* normalizers and decoders make at most GROWTH x their input */
#define NSQ__TOK_SLACK 1024u            /* + SLACK bytes */
#define NSQ__TOK_CP_TABLE 0x10000u /* one-character tokens below this code point are in a table */
#define NSQ__TOK_CACHE_LEN 64u     /* pieces up to this many bytes are cached per nsq_tokenize call */
#define NSQ__TOK_CACHE_N 65536u    /* and up to this many of them */

/*-************************************
 *  Containers
 **************************************/
typedef struct {
    char *p;
    size_t n, cap;
} nsq__tbuf;

int nsq__tbuf_grow(nsq__tbuf *b, size_t extra); /* 0, or -1 when out of memory */
void nsq__tbuf_free(nsq__tbuf *b);
static inline int nsq__tbuf_put(nsq__tbuf *b, const void *s, size_t n)
{
    if ((b->cap - b->n < n || !b->p) && nsq__tbuf_grow(b, n)) return -1; /* p is never NULL after */
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}
static inline int nsq__tbuf_putc(nsq__tbuf *b, char c) { return nsq__tbuf_put(b, &c, 1); }
int nsq__tbuf_put_cp(nsq__tbuf *b, uint32_t cp); /* UTF-8 encoded */

typedef struct {
    int32_t *p;
    size_t n, cap;
} nsq__ibuf;

int nsq__ibuf_push(nsq__ibuf *b, int32_t v);

/* Triples of sizes: ranges of text and what they are. */
typedef struct {
    size_t *p;
    size_t n, cap;
} nsq__zbuf;

int nsq__zbuf_push(nsq__zbuf *z, size_t a, size_t b, size_t c);

/* A random seed for the hash maps, so that no file or text can be made to
 * collide in them (their contents, not their results, depend on it). */
uint64_t nsq__tok_seed(void);

/* string -> u32; keys are copied. */
typedef struct {
    uint32_t off, len, val, hash;
} nsq__sment;
typedef struct {
    uint32_t *slot; /* entry index + 1; 0 is empty */
    uint32_t mask;
    nsq__sment *ent;
    uint32_t n, cap;
    nsq__tbuf keys;
    uint64_t seed;
} nsq__smap;

int nsq__smap_put(nsq__smap *m, const char *k, size_t n, uint32_t val); /* replaces; -1 out of memory */
int nsq__smap_get(const nsq__smap *m, const char *k, size_t n, uint32_t *val); /* 1 if found */
void nsq__smap_free(nsq__smap *m);

/* (id, id) -> (rank, id): the BPE merges. */
typedef struct {
    uint64_t key; /* a << 32 | b; UINT64_MAX is empty */
    uint32_t rank, id;
} nsq__pment;
typedef struct {
    nsq__pment *e;
    size_t mask, n;
    uint64_t seed;
} nsq__pmap;

int nsq__pmap_put(nsq__pmap *m, uint32_t a, uint32_t b, uint32_t rank, uint32_t id); /* replaces; -1 out of memory */
void nsq__pmap_free(nsq__pmap *m);
static inline size_t nsq__pmap_slot(uint64_t k, uint64_t seed, size_t mask)
{
    uint64_t h = (k ^ seed) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93ull;
    return (size_t)(h ^ h >> 32) & mask;
}
static inline const nsq__pment *nsq__pmap_get(const nsq__pmap *m, uint32_t a, uint32_t b)
{
    if (!m->e) return NULL;
    uint64_t k = (uint64_t)a << 32 | b;
    size_t i = nsq__pmap_slot(k, m->seed, m->mask);
    for (;; i = (i + 1) & m->mask) {
        if (m->e[i].key == k) return &m->e[i];
        if (m->e[i].key == UINT64_MAX) return NULL;
    }
}

/*-************************************
 *  UTF-8 and Unicode
 **************************************/
/* Appends s, each maximal invalid subpart replaced by U+FFFD (as Rust's
 * String::from_utf8_lossy and Python's errors="replace"). */
int nsq__utf8_lossy(nsq__tbuf *out, const uint8_t *s, size_t n);
/* Decodes the code point at s (valid UTF-8 assumed); *len its byte length. */
uint32_t nsq__utf8_at(const char *s, size_t *len);
int nsq__uni_space(uint32_t cp); /* Rust char::is_whitespace */
int nsq__uni_word(uint32_t cp);  /* \w of Rust's regex (single_word added tokens) */

/* The byte <-> character map of byte-level BPE. */
uint32_t nsq__byte_char(uint8_t b);
int nsq__char_byte(uint32_t cp); /* -1 when cp is not one of the 256 */

/*-************************************
 *  Configuration
 **************************************/
enum { NSQ__N_NFC, NSQ__N_NFD, NSQ__N_NFKC, NSQ__N_NFKD, NSQ__N_LOWER, NSQ__N_PREPEND, NSQ__N_REPLACE, NSQ__N_STRIP };
typedef struct {
    int kind;
    char *a;           /* PREPEND: the text; REPLACE: the literal pattern (re == NULL) */
    size_t alen;
    char *b;           /* REPLACE: the content */
    size_t blen;
    pcre2_code *re;    /* REPLACE with a Regex pattern */
    int left, right;   /* STRIP */
} nsq__tnorm;

enum { NSQ__P_SPLIT, NSQ__P_BYTELEVEL, NSQ__P_METASPACE };
enum { NSQ__B_REMOVED, NSQ__B_ISOLATED, NSQ__B_MERGED_PREV, NSQ__B_MERGED_NEXT, NSQ__B_CONTIGUOUS };
enum { NSQ__PREPEND_NEVER, NSQ__PREPEND_FIRST, NSQ__PREPEND_ALWAYS };
typedef struct {
    int kind;
    pcre2_code *re;    /* SPLIT (Regex) and BYTELEVEL with use_regex */
    char *lit;         /* SPLIT with a String pattern */
    size_t litlen;
    int behavior, invert;
    int add_prefix_space; /* BYTELEVEL */
    char rep[4];          /* METASPACE: the replacement character, UTF-8 */
    size_t replen;
    int prepend, split;   /* METASPACE */
} nsq__tpre;

enum { NSQ__D_BYTELEVEL, NSQ__D_REPLACE, NSQ__D_BYTEFALLBACK, NSQ__D_FUSE, NSQ__D_STRIP, NSQ__D_METASPACE,
       NSQ__D_BPE };
typedef struct {
    int kind;
    char *a;          /* REPLACE: the literal pattern; BPE: the suffix */
    size_t alen;
    char *b;          /* REPLACE: the content */
    size_t blen;
    pcre2_code *re;   /* REPLACE with a Regex pattern */
    uint32_t ch;      /* STRIP: the character; METASPACE: the replacement */
    size_t start, stop;
    int prepend;      /* METASPACE */
} nsq__tdec;

typedef struct {
    uint32_t id;
    char *s;          /* content */
    size_t len;
    char *ns;         /* content after the normalizers (normalized tokens) */
    size_t nlen;
    uint8_t special, lstrip, rstrip, single_word, normalized;
} nsq__tadded;

/* Added tokens of one kind (normalized or not): an Aho-Corasick automaton of
 * their contents reversed. Run backwards over a text, it gives for every
 * position the longest token that starts there, in one pass. */
typedef struct {
    nsq__pmap go;   /* (node, byte) -> child node (in rank); node 0 is the root */
    uint32_t *fail; /* per node: the longest proper suffix that is a node */
    uint32_t *best; /* per node: 1 + index in added of the longest token among its suffixes; 0: none */
    uint32_t n;     /* nodes; 0 when there is no token */
} nsq__tmatch;

/* Builds m from the added tokens a[0..n) of one kind: those with normalized
 * == norm, by their normalized or raw content. -1 when out of memory. */
int nsq__tmatch_build(nsq__tmatch *m, const nsq__tadded *a, uint32_t n, int norm);
void nsq__tmatch_free(nsq__tmatch *m);
/* longest[i]: m's best for the tokens starting at s + i (0: none), i < n. */
void nsq__tmatch_scan(const nsq__tmatch *m, const char *s, size_t n, uint32_t *longest);

enum { NSQ__F_VALID = 1, NSQ__F_ADDED = 2, NSQ__F_SPECIAL = 4 };

struct nsq_tokenizer {
    uint32_t n_ids;       /* 1 + the largest id */
    uint32_t *str_off, *str_len;
    nsq__tbuf strs;       /* id -> token string (what decoders see) */
    uint8_t *flags;       /* NSQ__F_* per id */

    /* BPE model */
    nsq__smap vocab;
    nsq__pmap merges;
    int32_t unk_id;       /* -1: none */
    int byte_fallback, fuse_unk, ignore_merges;
    char *prefix, *suffix; /* continuing_subword_prefix, end_of_word_suffix; NULL if none */
    size_t prefix_len, suffix_len;
    int32_t byte_tok[256]; /* "<0xXX>", -1 when absent */
    int32_t *cp_tok;       /* one-character tokens by code point (NULL with a prefix or suffix) */
    uint32_t cp_tok_n;     /* code points below it are in cp_tok */
    /* When no merge joins a symbol ending in another character with one that
     * starts with chunk_rep (SentencePiece's U+2581), a piece can be cut before
     * each chunk_rep that follows another character and encoded part by part
     * with the same result: long unsplit pieces (Metaspace with split=false)
     * then cost O(n) instead of one O(n log n) merge over the whole text. */
    char chunk_rep[4];
    size_t chunk_rep_len;

    /* pipeline */
    nsq__tadded *added;
    uint32_t n_added;
    nsq__pmap added_ids;  /* id -> index in added (in rank), while building */
    size_t added_bytes;   /* their contents together */
    nsq__tmatch match_raw, match_norm;
    nsq__tnorm norm[NSQ__TOK_MAX_STAGES];
    uint32_t n_norm;
    nsq__tpre pre[NSQ__TOK_MAX_STAGES];
    uint32_t n_pre;
    nsq__tdec dec[NSQ__TOK_MAX_STAGES];
    uint32_t n_dec;
    int has_decoder;
    nsq__ibuf pp_before, pp_after; /* what add_special adds around the ids */
    pcre2_match_context *mc;       /* the regex limits; read-only, shared by all calls */
};

/*-************************************
 *  Between the modules
 **************************************/
/* The tokenizer's files as the section holds them; NULL when absent. */
typedef struct {
    const uint8_t *json, *vocab, *merges, *config;
    size_t json_len, vocab_len, merges_len, config_len;
} nsq__tokfiles;

/* tok_json.c: fills a zeroed tokenizer from its files. */
nsq_status nsq__tok_build(nsq_tokenizer *t, const nsq__tokfiles *f, nsq_diag *d);
/* Compiles a regex as the pre-tokenizers use it (UTF, UCP, JIT when
 * available) into *re: NSQ_OK, or NSQ_E_LIMIT, NSQ_E_NOMEM or NSQ_E_TOKENIZER
 * with err saying why. */
nsq_status nsq__tok_regex(const char *pat, size_t len, pcre2_code **re, char *err, size_t errlen);
/* The match context with the regex limits (NULL when out of memory). */
pcre2_match_context *nsq__tok_match_context(void);
/* The most a normalizer or decoder may make of n bytes. */
static inline size_t nsq__tok_growth_max(size_t n)
{
    return n > (SIZE_MAX - NSQ__TOK_SLACK) / NSQ__TOK_GROWTH ? SIZE_MAX : NSQ__TOK_GROWTH * n + NSQ__TOK_SLACK;
}
/* Runs the normalizers over s[0..n) into out (cleared first). NSQ_E_LIMIT
 * when a regex or the text's growth exceeds its limit; d says which. */
nsq_status nsq__tok_normalize(const nsq_tokenizer *t, const char *s, size_t n, nsq__tbuf *out,
                              pcre2_match_data *md, nsq_diag *d);
/* Literal or regex replacement of every match in s[0..n), appended to out,
 * which may not grow past max bytes (NSQ_E_LIMIT). what names the stage. */
nsq_status nsq__tok_replace(const char *s, size_t n, const char *pat, size_t plen, const pcre2_code *re,
                            const char *rep, size_t rlen, size_t max, nsq__tbuf *out, pcre2_match_data *md,
                            pcre2_match_context *mc, nsq_diag *d, const char *what);

/* tok_bpe.c: the BPE model on one piece. */
typedef struct {
    int32_t id, prev, next;
} nsq__bsym;
typedef struct {
    uint32_t rank, pos, id;
} nsq__bmerge;
typedef struct {
    nsq__bsym *sym;
    size_t nsym, capsym;
    nsq__bmerge *heap;
    size_t nheap, capheap;
    char tmp[64];
} nsq__bpe_scratch;

/* The state of one nsq_tokenize call. */
typedef struct {
    const nsq_tokenizer *t;
    nsq__ibuf *out;
    nsq__bpe_scratch bpe;
    nsq__tbuf text[NSQ__TOK_MAX_STAGES], map[NSQ__TOK_MAX_STAGES];
    nsq__zbuf parts[NSQ__TOK_MAX_STAGES], seg;
    pcre2_match_data *md;
    nsq__smap cache;      /* piece -> offset in cache_ids of [count, ids...] */
    nsq__ibuf cache_ids;
    uint32_t *longest;    /* find_added's scratch: the added token at each position */
    size_t longest_cap;
    nsq_diag *d;          /* what went wrong, for the caller; may be NULL */
} nsq__tenc;

/* tok_text.c: pre-tokenizer stage lv (and the ones after it, then the model)
 * on the piece s[0..n); at_start: the piece begins the input text. */
nsq_status nsq__tok_pretokenize(nsq__tenc *c, uint32_t lv, const char *s, size_t n, int at_start);

nsq_status nsq__bpe_encode(const nsq_tokenizer *t, const char *w, size_t n, nsq__bpe_scratch *sc, nsq__ibuf *out);
void nsq__bpe_scratch_free(nsq__bpe_scratch *sc);

#endif
