/*
 * fuzz_tokenize_text.c - libFuzzer target for encoding and decoding text with
 * real tokenizers, read once at start:
 *   0  fixtures/models/tiny-gpt2/tokenizer.json   byte-level BPE (4096 ids)
 *   1  fixtures/tokenizers/gpt2/ vocab.json + merges.txt   the real GPT-2 (50257 ids)
 *   2  fixtures/models/tiny-llama/tokenizer.json  SentencePiece-style, byte fallback
 * Paths are relative to the repository root, or to $NSQ_FUZZ_ROOT.
 *
 * The first input byte picks the tokenizer (byte % 3); the rest, up to
 * MAX_TEXT bytes, is the text. Invariants (abort() when broken):
 *   - encoding succeeds, with and without add_special, and add_special only
 *     adds the ids an empty text gets; every id is below the vocabulary size;
 *   - the bytes of nsq_token_bytes, concatenated, are nsq_detokenize's text
 *     (special tokens skipped in both) when they are valid UTF-8 and no
 *     special token but the first is in the sequence;
 *   - for valid UTF-8 text, decoding gives it back: always for the byte-level
 *     tokenizers; for tiny-llama when the text does not start with a space
 *     (its Strip decoder drops one) and has no U+2581 (decoded as a space);
 *   - invalid UTF-8 is read as U+FFFD: the text and its lossy form encode alike.
 *
 *   make build-fuzz/fuzz_tokenize_text && build-fuzz/fuzz_tokenize_text CORPUS_DIR fuzz/corpus/fuzz_tokenize_text
 */
#include "nsq.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_TEXT 4096u
#define MAX_STREAM 128u /* ids streamed (a prefix of the sequence is a sequence too) */

enum { TINY_GPT2, REAL_GPT2, TINY_LLAMA, N_TOK };
static nsq_tokenizer *tok[N_TOK];
static int32_t *empty_ids[N_TOK]; /* what add_special puts around a text */
static size_t n_empty[N_TOK];

static uint8_t *read_file(const char *root, const char *path, uint64_t *size)
{
    char full[4096];
    snprintf(full, sizeof full, "%s%s%s", root, *root ? "/" : "", path);
    FILE *f = fopen(full, "rb");
    if (!f) {
        fprintf(stderr, "fuzz_tokenize_text: cannot open %s (run from the repository root or set NSQ_FUZZ_ROOT)\n", full);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(n > 0 ? (size_t)n : 1);
    if (!p || fread(p, 1, (size_t)n, f) != (size_t)n) exit(1);
    fclose(f);
    *size = (uint64_t)n;
    return p;
}

static nsq_tokenizer *load(const char *root, nsq_tokenizer_kind kind, uint32_t n, const char *const *names,
                           const char *const *paths)
{
    uint8_t *data[2];
    uint64_t sizes[2];
    for (uint32_t i = 0; i < n; i++) data[i] = read_file(root, paths[i], &sizes[i]);
    nsq_tokenizer *t;
    nsq_diag d;
    if (nsq_tokenizer_from_files(kind, n, names, (const uint8_t *const *)data, sizes, &t, &d)) {
        fprintf(stderr, "fuzz_tokenize_text: %s: %s\n", paths[0], d.message);
        exit(1);
    }
    for (uint32_t i = 0; i < n; i++) free(data[i]);
    return t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *root = getenv("NSQ_FUZZ_ROOT") ? getenv("NSQ_FUZZ_ROOT") : "";
    const char *json[] = {"tokenizer.json"}, *gpt2[] = {"vocab.json", "merges.txt"};
    const char *p0[] = {"fixtures/models/tiny-gpt2/tokenizer.json"};
    const char *p1[] = {"fixtures/tokenizers/gpt2/vocab.json", "fixtures/tokenizers/gpt2/merges.txt"};
    const char *p2[] = {"fixtures/models/tiny-llama/tokenizer.json"};
    tok[TINY_GPT2] = load(root, NSQ_TOK_HF_JSON, 1, json, p0);
    tok[REAL_GPT2] = load(root, NSQ_TOK_GPT2_BPE, 2, gpt2, p1);
    tok[TINY_LLAMA] = load(root, NSQ_TOK_HF_JSON, 1, json, p2);
    for (int k = 0; k < N_TOK; k++) CHECK(nsq_tokenize(tok[k], "", 0, 1, &empty_ids[k], &n_empty[k]) == NSQ_OK);
    return 0;
}

/* s with each maximal invalid subpart replaced by U+FFFD (the WHATWG/Unicode
 * practice that nsq_tokenize follows), into out (4 * n bytes). */
static size_t lossy(const uint8_t *s, size_t n, uint8_t *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t k = 1;
        while (k <= 4 && i + k <= n && !utf8_valid(s + i, k)) k++;
        if (k <= 4 && i + k <= n) { /* a valid character of k bytes */
            memcpy(out + o, s + i, k);
            o += k, i += k;
            continue;
        }
        /* invalid: the longest prefix that could still begin a character */
        uint8_t b = s[i];
        size_t len = b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xF0 && b <= 0xF4 ? 4 : 1, j = 1;
        uint8_t lo = b == 0xE0 ? 0xA0 : b == 0xF0 ? 0x90 : 0x80, hi = b == 0xED ? 0x9F : b == 0xF4 ? 0x8F : 0xBF;
        for (; j < len && i + j < n && s[i + j] >= lo && s[i + j] <= hi; j++) lo = 0x80, hi = 0xBF;
        memcpy(out + o, "\xEF\xBF\xBD", 3);
        o += 3, i += j;
    }
    return o;
}

static int32_t *encode(int k, const char *s, size_t n, int add_special, size_t *n_ids)
{
    int32_t *ids;
    nsq_diag d;
    nsq_status st = nsq_tokenize_diag(tok[k], s, n, add_special, &ids, n_ids, &d);
    if (st) fprintf(stderr, "fuzz_tokenize_text: %s\n", d.message);
    CHECK(st == NSQ_OK);
    for (size_t i = 0; i < *n_ids; i++) CHECK(ids[i] >= 0 && (uint32_t)ids[i] < nsq_tokenizer_vocab_size(tok[k]));
    return ids;
}

/* Streamed bytes against nsq_detokenize, special tokens skipped in both. */
static void check_stream(int k, const int32_t *ids, size_t n)
{
    if (n > MAX_STREAM) n = MAX_STREAM;
    for (size_t i = 1; i < n; i++)
        if (nsq_token_is_special(tok[k], ids[i])) return; /* a new text starts there: its first space goes */
    size_t cap = 4096, total = 0, len, m;
    char *cat = malloc(cap), *text;
    for (size_t i = 0; i < n; i++) {
        int32_t prev = i ? ids[i - 1] : -1;
        CHECK(nsq_token_bytes(tok[k], prev, ids[i], cat + total, cap - total, &m) == NSQ_OK);
        if (m > cap - total) { /* did not fit: again, with room */
            while (cap - total < m) CHECK((cat = realloc(cat, cap *= 2)) != NULL);
            CHECK(nsq_token_bytes(tok[k], prev, ids[i], cat + total, cap - total, &m) == NSQ_OK);
        }
        if (!nsq_token_is_special(tok[k], ids[i])) total += m;
    }
    CHECK(nsq_detokenize(tok[k], ids, n, 1, &text, &len) == NSQ_OK);
    if (utf8_valid((const uint8_t *)cat, total)) CHECK(total == len && memcmp(cat, text, len) == 0);
    free(text);
    free(cat);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size) return 0;
    int k = data[0] % N_TOK;
    const char *s = (const char *)data + 1;
    size_t n = size - 1 < MAX_TEXT ? size - 1 : MAX_TEXT, nw, np, len;
    int32_t *plain = encode(k, s, n, 0, &np), *with = encode(k, s, n, 1, &nw);
    /* add_special puts the same ids around every text */
    const int32_t *e = empty_ids[k];
    size_t ne = n_empty[k], at = 0;
    CHECK(nw == np + ne);
    while (memcmp(with + at, plain, np * sizeof *plain) || memcmp(with + at + np, e + at, (ne - at) * sizeof *e)) {
        CHECK(at < ne && with[at] == e[at]);
        at++;
    }
    check_stream(k, with, nw);
    char *text;
    CHECK(nsq_detokenize(tok[k], plain, np, 0, &text, &len) == NSQ_OK);
    CHECK(text[len] == 0 && utf8_valid((const uint8_t *)text, len));
    if (utf8_valid((const uint8_t *)s, n)) {
        int llama_ok = n == 0 || (s[0] != ' ' && !memmem(s, n, "\xE2\x96\x81", 3));
        if (k != TINY_LLAMA || llama_ok) CHECK(len == n && memcmp(text, s, n) == 0);
    } else { /* invalid UTF-8 is read as U+FFFD */
        uint8_t *fixed = malloc(4 * n);
        size_t nf = lossy((const uint8_t *)s, n, fixed), n2;
        int32_t *ids2 = encode(k, (const char *)fixed, nf, 0, &n2);
        CHECK(n2 == np && memcmp(ids2, plain, np * sizeof *plain) == 0);
        free(ids2);
        free(fixed);
    }
    free(text);
    free(plain);
    free(with);
    return 0;
}
