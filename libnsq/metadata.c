/* metadata.c - the typed key/value section: parsing, required keys, getters. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>

static int scalar_size(uint32_t t)
{
    switch (t) {
    case NSQ_META_U64: case NSQ_META_I64: case NSQ_META_F64: return 8;
    case NSQ_META_BOOL: return 1;
    default: return 0; /* strings are variable; anything else is invalid */
    }
}

/* Validates one element of type t at the cursor and advances past it. */
static nsq_status take_elem(nsq__cur *c, uint32_t t, const char *key, nsq_diag *d)
{
    uint64_t off = nsq__cur_off(c);
    if (t == NSQ_META_STRING) {
        const uint8_t *p = nsq__take(c, 4);
        if (!p) return nsq__fail(d, NSQ_E_METADATA, off, "R-META-5", "%s: value truncated", key);
        uint32_t len = nsq__rd32(p);
        if (len > NSQ__MAX_STRING_LEN) return nsq__fail(d, NSQ_E_LIMIT, off, "R-META-6", "%s: string of %u bytes", key, len);
        const uint8_t *s = nsq__take(c, len);
        if (!s) return nsq__fail(d, NSQ_E_METADATA, off, "R-META-5", "%s: string truncated", key);
        if (!nsq__valid_utf8(s, len))
            return nsq__fail(d, NSQ_E_METADATA, off + 4, "R-META-7", "%s: string is not valid UTF-8 without NUL", key);
        return NSQ_OK;
    }
    const uint8_t *p = nsq__take(c, (uint64_t)scalar_size(t));
    if (!p) return nsq__fail(d, NSQ_E_METADATA, off, "R-META-5", "%s: value truncated", key);
    if (t == NSQ_META_BOOL && *p > 1)
        return nsq__fail(d, NSQ_E_METADATA, off, "R-META-8", "%s: bool value %u is not 0 or 1", key, *p);
    if (t == NSQ_META_F64 && !isfinite(nsq__rdf64(p)))
        return nsq__fail(d, NSQ_E_METADATA, off, "R-META-8", "%s: f64 value is not finite", key);
    return NSQ_OK;
}

static nsq_status parse_entry(nsq__cur *c, nsq__meta *m, const nsq__meta *prev, nsq_diag *d)
{
    uint64_t off = nsq__cur_off(c);
    const uint8_t *p = nsq__take(c, 2);
    if (!p) return nsq__fail(d, NSQ_E_METADATA, off, "R-META-2", "entry truncated");
    uint16_t klen = nsq__rd16(p);
    const uint8_t *k = nsq__take(c, klen);
    if (!k) return nsq__fail(d, NSQ_E_METADATA, off, "R-META-2", "key truncated");
    if (!nsq__valid_key((const char *)k, klen))
        return nsq__fail(d, NSQ_E_METADATA, off + 2, "R-META-3", "invalid key (length %u or characters)", klen);
    if (!(m->key = nsq__strndup(k, klen))) return nsq__fail(d, NSQ_E_NOMEM, off, "", "key");
    if (prev) {
        size_t pl = strlen(prev->key);
        int cmp = memcmp(prev->key, m->key, pl < klen ? pl : klen);
        if (cmp > 0 || (cmp == 0 && pl >= klen))
            return nsq__fail(d, NSQ_E_METADATA, off + 2, "R-META-4", "key %s is not after %s (keys sorted, unique)",
                             m->key, prev->key);
    }
    if (!(p = nsq__take(c, 1))) return nsq__fail(d, NSQ_E_METADATA, off, "R-META-5", "%s: type truncated", m->key);
    uint32_t t = *p, et = t & ~(uint32_t)NSQ_META_ARRAY;
    if (et < NSQ_META_U64 || et > NSQ_META_STRING)
        return nsq__fail(d, NSQ_E_METADATA, nsq__cur_off(c) - 1, "R-META-9", "%s: unknown type 0x%02x", m->key, t);
    m->type = t;
    m->count = 1;
    if (t & NSQ_META_ARRAY) {
        uint64_t coff = nsq__cur_off(c);
        if (!(p = nsq__take(c, 4))) return nsq__fail(d, NSQ_E_METADATA, coff, "R-META-5", "%s: count truncated", m->key);
        m->count = nsq__rd32(p);
        if (m->count > NSQ__MAX_ARRAY_LEN)
            return nsq__fail(d, NSQ_E_LIMIT, coff, "R-META-6", "%s: array of %u elements", m->key, m->count);
    }
    m->value = c->p;
    m->value_off = nsq__cur_off(c);
    for (uint32_t i = 0; i < m->count; i++) {
        nsq_status st = take_elem(c, et, m->key, d);
        if (st) return st;
    }
    return NSQ_OK;
}

nsq_status nsq__parse_metadata(nsq_file *f, const nsq__section *s, nsq_diag *d)
{
    nsq__cur c = {s->data, s->data + s->size, s->offset, s->data};
    const uint8_t *p = nsq__take(&c, 4);
    if (!p) return nsq__fail(d, NSQ_E_METADATA, s->offset, "R-META-1", "section shorter than its count");
    uint32_t n = nsq__rd32(p);
    /* an entry is at least 2+1+1+1 bytes: bound the allocation by the section */
    if (n == 0 || n > NSQ__MAX_META_COUNT || n > s->size / 5)
        return nsq__fail(d, NSQ_E_LIMIT, s->offset, "R-META-1", "entry count %u is 0, over 65536 or larger than the section", n);
    f->meta = calloc(n, sizeof *f->meta);
    if (!f->meta) return nsq__fail(d, NSQ_E_NOMEM, s->offset, "", "metadata");
    f->meta_count = n;
    for (uint32_t i = 0; i < n; i++) {
        nsq_status st = parse_entry(&c, &f->meta[i], i ? &f->meta[i - 1] : NULL, d);
        if (st) return st;
    }
    if (nsq__cur_left(&c))
        return nsq__fail(d, NSQ_E_METADATA, nsq__cur_off(&c), "R-META-10", "%llu bytes after the last entry",
                         (unsigned long long)nsq__cur_left(&c));
    return NSQ_OK;
}

void nsq__free_metadata(nsq_file *f)
{
    for (uint32_t i = 0; i < f->meta_count && f->meta; i++) free(f->meta[i].key);
    free(f->meta);
    f->meta = NULL;
}

nsq_status nsq_meta_find(const nsq_file *f, const char *key, uint32_t *index)
{
    uint32_t lo = 0, hi = f->meta_count; /* keys are sorted bytewise */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->meta[mid].key, key);
        if (c == 0) {
            *index = mid;
            return NSQ_OK;
        }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NSQ_E_NOT_FOUND;
}

nsq_status nsq_meta_at(const nsq_file *f, uint32_t i, nsq_meta *out)
{
    if (i >= f->meta_count) return NSQ_E_NOT_FOUND;
    out->key = f->meta[i].key;
    out->type = f->meta[i].type;
    out->count = f->meta[i].count;
    return NSQ_OK;
}

/* Locates element elem of entry i, requiring element type t. */
static nsq_status elem_ptr(const nsq_file *f, uint32_t i, uint32_t elem, uint32_t t, const uint8_t **out)
{
    if (i >= f->meta_count) return NSQ_E_NOT_FOUND;
    const nsq__meta *m = &f->meta[i];
    if ((m->type & ~(uint32_t)NSQ_META_ARRAY) != t) return NSQ_E_TYPE;
    if (elem >= m->count) return NSQ_E_ARG;
    const uint8_t *p = m->value;
    if (t == NSQ_META_STRING) {
        for (uint32_t k = 0; k < elem; k++) p += 4 + (uint64_t)nsq__rd32(p); /* validated at open */
    } else {
        p += (uint64_t)elem * (uint64_t)scalar_size(t);
    }
    *out = p;
    return NSQ_OK;
}

nsq_status nsq_meta_value_u64(const nsq_file *f, uint32_t i, uint32_t elem, uint64_t *v)
{
    const uint8_t *p;
    nsq_status st = elem_ptr(f, i, elem, NSQ_META_U64, &p);
    if (!st) *v = nsq__rd64(p);
    return st;
}

nsq_status nsq_meta_value_i64(const nsq_file *f, uint32_t i, uint32_t elem, int64_t *v)
{
    const uint8_t *p;
    nsq_status st = elem_ptr(f, i, elem, NSQ_META_I64, &p);
    if (!st) *v = (int64_t)nsq__rd64(p);
    return st;
}

nsq_status nsq_meta_value_f64(const nsq_file *f, uint32_t i, uint32_t elem, double *v)
{
    const uint8_t *p;
    nsq_status st = elem_ptr(f, i, elem, NSQ_META_F64, &p);
    if (!st) *v = nsq__rdf64(p);
    return st;
}

nsq_status nsq_meta_value_bool(const nsq_file *f, uint32_t i, uint32_t elem, int *v)
{
    const uint8_t *p;
    nsq_status st = elem_ptr(f, i, elem, NSQ_META_BOOL, &p);
    if (!st) *v = *p;
    return st;
}

nsq_status nsq_meta_value_str(const nsq_file *f, uint32_t i, uint32_t elem, const char **s, size_t *len)
{
    const uint8_t *p;
    nsq_status st = elem_ptr(f, i, elem, NSQ_META_STRING, &p);
    if (!st) {
        *len = nsq__rd32(p);
        *s = (const char *)p + 4;
    }
    return st;
}

#define NSQ__BY_KEY(fn, T)                                                          \
    nsq_status nsq_meta_##fn(const nsq_file *f, const char *key, uint32_t elem, T v) \
    {                                                                               \
        uint32_t i;                                                                 \
        nsq_status st = nsq_meta_find(f, key, &i);                                  \
        return st ? st : nsq_meta_value_##fn(f, i, elem, v);                        \
    }
NSQ__BY_KEY(u64, uint64_t *)
NSQ__BY_KEY(i64, int64_t *)
NSQ__BY_KEY(f64, double *)
NSQ__BY_KEY(bool, int *)
#undef NSQ__BY_KEY

nsq_status nsq_meta_str(const nsq_file *f, const char *key, uint32_t elem, const char **s, size_t *len)
{
    uint32_t i;
    nsq_status st = nsq_meta_find(f, key, &i);
    return st ? st : nsq_meta_value_str(f, i, elem, s, len);
}

/* ---- required keys (spec: Required metadata keys) ---- */
/* The STRING values (architecture, activation, ...) are data to the container:
 * any UTF-8 is valid, and a runtime judges whether it can run them. */
static const struct {
    const char *key;
    uint32_t type;
} required_keys[] = {
    {"general.architecture", NSQ_META_STRING},
    {"model.activation", NSQ_META_STRING},
    {"model.attention_bias", NSQ_META_BOOL},
    {"model.context_length", NSQ_META_U64},
    {"model.head_dim", NSQ_META_U64},
    {"model.hidden_size", NSQ_META_U64},
    {"model.intermediate_size", NSQ_META_U64},
    {"model.mlp_bias", NSQ_META_BOOL},
    {"model.n_heads", NSQ_META_U64},
    {"model.n_kv_heads", NSQ_META_U64},
    {"model.n_layers", NSQ_META_U64},
    {"model.norm.epsilon", NSQ_META_F64},
    {"model.norm.type", NSQ_META_STRING},
    {"model.position", NSQ_META_STRING},
    {"model.rope.scaling.factor", NSQ_META_F64},
    {"model.rope.scaling.type", NSQ_META_STRING},
    {"model.rope.theta", NSQ_META_F64},
    {"model.sliding_window", NSQ_META_U64},
    {"model.tied_head", NSQ_META_BOOL},
    {"model.vocab_size", NSQ_META_U64},
    {"provenance.converter", NSQ_META_STRING},
    {"provenance.recipe", NSQ_META_STRING},
    {"provenance.source", NSQ_META_STRING},
    {"tokenizer.add_bos", NSQ_META_BOOL},
    {"tokenizer.bos_id", NSQ_META_I64},
    {"tokenizer.eos_id", NSQ_META_I64},
};

nsq_status nsq__check_required_meta(nsq_file *f, nsq_diag *d)
{
    for (size_t k = 0; k < sizeof required_keys / sizeof required_keys[0]; k++) {
        uint32_t i;
        const char *key = required_keys[k].key;
        if (nsq_meta_find(f, key, &i))
            return nsq__fail(d, NSQ_E_METADATA, UINT64_MAX, "R-META-11", "required key %s is missing", key);
        const nsq__meta *m = &f->meta[i];
        if (m->type != required_keys[k].type)
            return nsq__fail(d, NSQ_E_METADATA, m->value_off, "R-META-11", "%s has type 0x%02x, expected 0x%02x", key,
                             m->type, required_keys[k].type);
        uint64_t u;
        if (m->type == NSQ_META_U64 && !nsq_meta_value_u64(f, i, 0, &u) && strcmp(key, "model.sliding_window") != 0 &&
            (u == 0 || u > NSQ__MAX_MODEL_DIM))
            return nsq__fail(d, NSQ_E_METADATA, m->value_off, "R-META-12", "%s = %llu, must be 1..2^31", key,
                             (unsigned long long)u);
    }
    uint64_t heads, kv, layers;
    nsq_meta_u64(f, "model.n_heads", 0, &heads);
    nsq_meta_u64(f, "model.n_kv_heads", 0, &kv);
    nsq_meta_u64(f, "model.n_layers", 0, &layers);
    if (heads % kv)
        return nsq__fail(d, NSQ_E_METADATA, UINT64_MAX, "R-META-12", "n_heads %llu is not a multiple of n_kv_heads %llu",
                         (unsigned long long)heads, (unsigned long long)kv);
    if (layers > NSQ__MAX_LAYERS)
        return nsq__fail(d, NSQ_E_LIMIT, UINT64_MAX, "R-META-12", "n_layers %llu exceeds 65536", (unsigned long long)layers);
    return NSQ_OK;
}
