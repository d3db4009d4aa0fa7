/* tokenizer.c - the embedded tokenizer section: kind tag and named files. */
#include "internal.h"

#include <stdlib.h>

static const char *required_file(uint32_t kind, int which)
{
    static const char *names[][2] = {
        {"tokenizer.json", NULL}, {"merges.txt", "vocab.json"}, {"tokenizer.model", NULL}};
    return names[kind - 1][which];
}

nsq_status nsq__parse_tokenizer(nsq_file *f, const nsq__section *s, nsq_diag *d)
{
    nsq__cur c = {s->data, s->data + s->size, s->offset, s->data};
    const uint8_t *p = nsq__take(&c, 8);
    if (!p) return nsq__fail(d, NSQ_E_TOKENIZER, s->offset, "R-TOK-1", "section shorter than 8 bytes");
    f->tok_kind = nsq__rd32(p);
    uint32_t n = nsq__rd32(p + 4);
    if (f->tok_kind < NSQ_TOK_HF_JSON || f->tok_kind > NSQ_TOK_SENTENCEPIECE)
        return nsq__fail(d, NSQ_E_TOKENIZER, s->offset, "R-TOK-1", "unknown tokenizer kind %u", f->tok_kind);
    if (n == 0 || n > NSQ__MAX_TOK_FILES)
        return nsq__fail(d, NSQ_E_LIMIT, s->offset + 4, "R-TOK-2", "file count %u is outside 1..16", n);
    f->tok = calloc(n, sizeof *f->tok);
    if (!f->tok) return nsq__fail(d, NSQ_E_NOMEM, s->offset, "", "tokenizer");
    f->tok_count = n;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t off = nsq__cur_off(&c);
        if (!(p = nsq__take(&c, 2))) return nsq__fail(d, NSQ_E_TOKENIZER, off, "R-TOK-3", "file %u truncated", i);
        uint16_t len = nsq__rd16(p);
        const uint8_t *name = nsq__take(&c, len);
        if (!name || !nsq__valid_tok_name(name, len))
            return nsq__fail(d, NSQ_E_TOKENIZER, off, "R-TOK-4", "file %u has an invalid name", i);
        if (!(f->tok[i].name = nsq__strndup(name, len))) return nsq__fail(d, NSQ_E_NOMEM, off, "", "name");
        if (i && strcmp(f->tok[i - 1].name, f->tok[i].name) >= 0)
            return nsq__fail(d, NSQ_E_TOKENIZER, off, "R-TOK-5", "file names not strictly increasing at %s", f->tok[i].name);
        if (!(p = nsq__take(&c, 8))) return nsq__fail(d, NSQ_E_TOKENIZER, off, "R-TOK-3", "file %u truncated", i);
        f->tok[i].size = nsq__rd64(p);
        if (!(f->tok[i].data = nsq__take(&c, f->tok[i].size)))
            return nsq__fail(d, NSQ_E_TOKENIZER, off, "R-TOK-3", "file %s: size %llu exceeds the section", f->tok[i].name,
                             (unsigned long long)f->tok[i].size);
    }
    if (nsq__cur_left(&c))
        return nsq__fail(d, NSQ_E_TOKENIZER, nsq__cur_off(&c), "R-TOK-6", "bytes after the last file");
    for (int w = 0; w < 2; w++) {
        const char *need = required_file(f->tok_kind, w);
        nsq_tokenizer_file tf;
        if (need && nsq_tokenizer_file_find(f, need, &tf))
            return nsq__fail(d, NSQ_E_TOKENIZER, s->offset, "R-TOK-7", "tokenizer kind %u requires file %s", f->tok_kind,
                             need);
    }
    return NSQ_OK;
}

void nsq__free_tokenizer(nsq_file *f)
{
    for (uint32_t i = 0; i < f->tok_count && f->tok; i++) free(f->tok[i].name);
    free(f->tok);
    f->tok = NULL;
}

uint32_t nsq_tokenizer_get_kind(const nsq_file *f) { return f->tok_kind; }
uint32_t nsq_tokenizer_file_count(const nsq_file *f) { return f->tok_count; }

nsq_status nsq_tokenizer_file_at(const nsq_file *f, uint32_t i, nsq_tokenizer_file *out)
{
    if (i >= f->tok_count) return NSQ_E_NOT_FOUND;
    out->name = f->tok[i].name;
    out->data = f->tok[i].data;
    out->size = f->tok[i].size;
    return NSQ_OK;
}

nsq_status nsq_tokenizer_file_find(const nsq_file *f, const char *name, nsq_tokenizer_file *out)
{
    for (uint32_t i = 0; i < f->tok_count; i++)
        if (f->tok[i].name && strcmp(f->tok[i].name, name) == 0) return nsq_tokenizer_file_at(f, i, out);
    return NSQ_E_NOT_FOUND;
}
