/*
 * fuzz_tokenizer.c - libFuzzer target for building a tokenizer from files:
 * nsq_tokenizer_from_files() on mutated tokenizer files and, when the
 * tokenizer loads, encoding and decoding a short text with it.
 *
 * The input is split at NUL bytes (JSON text has none):
 *   JSON                          tokenizer.json, a built-in text
 *   JSON \0 TEXT                  tokenizer.json and the text
 *   JSON \0 CONFIG \0 TEXT        with tokenizer_config.json
 *   VOCAB \0 MERGES \0 CONFIG \0 TEXT [\0 ...]   vocab.json + merges.txt (GPT2_BPE)
 * The text is cut to MAX_TEXT bytes. Broken invariants abort().
 *
 *   make build-fuzz/fuzz_tokenizer && build-fuzz/fuzz_tokenizer CORPUS_DIR fuzz/corpus/fuzz_tokenizer
 */
#include "nsq.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_TEXT 512u           /* bytes of text encoded */
#define MAX_EACH_ID 4096u       /* ids whose bytes are all fetched one by one */
#define MAX_ID (1u << 22)       /* nsq's limit on token ids */

static const char default_text[] = "Hello wörld <s> </s> <|endoftext|> 123  ab\n\t\xe2\x96\x81x \xff!";

/* The status a failed call reports must be the diag's, with a message. */
static void check_diag(nsq_status st, const nsq_diag *d)
{
    if (!st) return;
    CHECK(d->status == st);
    CHECK(memchr(d->message, 0, sizeof d->message) != NULL);
    CHECK(d->message[0] != 0);
}

/* Encodes text: what may go wrong is a limit (a regex's, or a normalizer's
 * growth); every id is a token, below the vocabulary size. */
static nsq_status encode(const nsq_tokenizer *t, const char *text, size_t len, int add_special, int32_t **ids,
                         size_t *n)
{
    nsq_diag d;
    memset(&d, 0, sizeof d);
    nsq_status st = nsq_tokenize_diag(t, text, len, add_special, ids, n, &d);
    check_diag(st, &d);
    CHECK(st == NSQ_OK || st == NSQ_E_LIMIT);
    if (st) {
        CHECK(*ids == NULL && *n == 0);
        return st;
    }
    CHECK(*ids != NULL);
    for (size_t i = 0; i < *n; i++) { /* below the vocabulary size, and a token */
        size_t bl;
        CHECK((*ids)[i] >= 0 && (uint32_t)(*ids)[i] < nsq_tokenizer_vocab_size(t));
        CHECK(nsq_token_bytes(t, -1, (*ids)[i], NULL, 0, &bl) != NSQ_E_ARG);
    }
    return st;
}

/* nsq_detokenize: NUL-terminated valid UTF-8, or a limit of the decoders. */
static void decode(const nsq_tokenizer *t, const int32_t *ids, size_t n, int skip)
{
    char *text = NULL;
    size_t len = 0;
    nsq_status st = nsq_detokenize(t, ids, n, skip, &text, &len);
    CHECK(st == NSQ_OK || st == NSQ_E_LIMIT);
    if (st) {
        CHECK(text == NULL);
        return;
    }
    CHECK(text != NULL && text[len] == 0);
    CHECK(utf8_valid((const uint8_t *)text, len));
    free(text);
}

/* nsq_token_bytes: NSQ_E_ARG exactly for ids that are no token, which decode
 * to nothing; for a token, the length does not depend on the buffer. */
static void token_bytes(const nsq_tokenizer *t, int32_t prev, int32_t id)
{
    char buf[64], *text;
    size_t len = 0, len2 = 0, tl;
    nsq_status st = nsq_token_bytes(t, prev, id, buf, sizeof buf, &len);
    CHECK(st == NSQ_OK || st == NSQ_E_LIMIT || st == NSQ_E_ARG);
    if (st == NSQ_E_ARG) {
        CHECK(len == 0);
        CHECK(nsq_detokenize(t, &id, 1, 0, &text, &tl) == NSQ_OK && tl == 0);
        free(text);
        return;
    }
    CHECK(id >= 0 && (uint32_t)id < nsq_tokenizer_vocab_size(t));
    if (st) return;
    CHECK(nsq_token_bytes(t, prev, id, NULL, 0, &len2) == NSQ_OK && len2 == len);
}

/* With add_special, the ids are the same ones around the text's ids: the ones
 * an empty text gets. */
static void check_special(const int32_t *plain, size_t n, const int32_t *with, size_t nw, const int32_t *around,
                          size_t na)
{
    CHECK(nw == n + na);
    for (size_t k = 0; k <= na; k++) {
        if (k && with[k - 1] != around[k - 1]) break;
        if (!memcmp(with + k, plain, n * sizeof *plain) && !memcmp(with + k + n, around + k, (na - k) * sizeof *around))
            return;
    }
    CHECK(!"the text's ids lie between the ones an empty text gets");
}

static void exercise(const nsq_tokenizer *t, const char *text, size_t len)
{
    uint32_t v = nsq_tokenizer_vocab_size(t);
    CHECK(v <= MAX_ID);
    int32_t *plain, *with, *around, *again;
    size_t n, nw, na, n2;
    CHECK(encode(t, "", 0, 0, &plain, &n) == NSQ_OK && n == 0);
    free(plain);
    if (encode(t, "", 0, 1, &around, &na)) return;
    if (encode(t, text, len, 0, &plain, &n)) {
        free(around);
        return;
    }
    CHECK(encode(t, text, len, 0, &again, &n2) == NSQ_OK); /* the same again */
    CHECK(n2 == n && memcmp(again, plain, n * sizeof *plain) == 0);
    free(again);
    CHECK(encode(t, text, len, 1, &with, &nw) == NSQ_OK);
    check_special(plain, n, with, nw, around, na);
    for (int skip = 0; skip < 2; skip++) decode(t, with, nw, skip);
    for (size_t i = 0; i < nw; i++) token_bytes(t, i ? with[i - 1] : -1, with[i]);
    /* every id of a small vocabulary, ids around it, and ids made of the text */
    for (uint32_t id = 0; id < v && id < MAX_EACH_ID; id++) token_bytes(t, -1, (int32_t)id);
    const int32_t odd[] = {-1, INT32_MIN, (int32_t)v, (int32_t)v + 1, INT32_MAX, (int32_t)v - 1};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) token_bytes(t, odd[(i + 1) % 6], odd[i]);
    decode(t, odd, 6, 0);
    int32_t mixed[64];
    size_t nm = 0;
    for (size_t i = 0; i + 1 < len && nm < 64; i += 2)
        mixed[nm++] = (int32_t)(((uint8_t)text[i] << 8 | (uint8_t)text[i + 1]) % (v + 2)) - 1;
    decode(t, mixed, nm, 0);
    decode(t, mixed, nm, 1);
    free(plain);
    free(with);
    free(around);
}

/* Splits data at NUL bytes: up to 5 parts. */
static size_t split(const uint8_t *data, size_t size, const uint8_t **p, size_t *n)
{
    size_t k = 0, start = 0;
    for (size_t i = 0; i <= size && k < 5; i++) {
        if (i < size && data[i]) continue;
        p[k] = data + start;
        n[k++] = i - start;
        start = i + 1;
    }
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p[5];
    size_t n[5];
    size_t k = split(data, size, p, n);
    const char *names[3];
    const uint8_t *files[3];
    uint64_t sizes[3];
    uint32_t nf;
    nsq_tokenizer_kind kind = NSQ_TOK_HF_JSON;
    const char *text = default_text;
    size_t len = sizeof default_text - 1;
    if (k >= 4) {
        kind = NSQ_TOK_GPT2_BPE;
        names[0] = "vocab.json", names[1] = "merges.txt", names[2] = "tokenizer_config.json";
        for (int i = 0; i < 3; i++) files[i] = p[i], sizes[i] = n[i];
        nf = 3;
        text = (const char *)p[3], len = n[3];
    } else {
        names[0] = "tokenizer.json", names[1] = "tokenizer_config.json";
        files[0] = p[0], sizes[0] = n[0];
        nf = k == 3 ? 2 : 1;
        if (k == 3) files[1] = p[1], sizes[1] = n[1];
        if (k >= 2) text = (const char *)p[k - 1], len = n[k - 1];
    }
    if (len > MAX_TEXT) len = MAX_TEXT;
    nsq_tokenizer *t = (nsq_tokenizer *)&t;
    nsq_diag d;
    memset(&d, 0, sizeof d);
    nsq_status st = nsq_tokenizer_from_files(kind, nf, names, files, sizes, &t, &d);
    check_diag(st, &d);
    if (st) {
        CHECK(t == NULL);
        CHECK(st == NSQ_E_TOKENIZER || st == NSQ_E_UNSUPPORTED || st == NSQ_E_LIMIT);
        return 0;
    }
    exercise(t, text, len);
    nsq_tokenizer_free(t);
    return 0;
}
