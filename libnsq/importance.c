/* importance.c - the importance section: per-tensor statistics behind the tiers. */
#include "scheme.h"

#include <math.h>
#include <stdlib.h>

/* f32 array of n values at p: all finite and >= 0 */
static int valid_stats(const uint8_t *p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        float v = nsq__rdf32(p + 4 * i);
        if (!isfinite(v) || v < 0) return 0;
    }
    return 1;
}

static nsq_status parse_entry(nsq_file *f, nsq__cur *c, uint32_t i, nsq_diag *d)
{
    nsq__impentry *e = &f->imp[i];
    uint64_t off = nsq__cur_off(c);
    const uint8_t *p = nsq__take(c, 24);
    if (!p) return nsq__fail(d, NSQ_E_IMPORTANCE, off, "R-IMP-3", "entry %u truncated", i);
    e->tensor = nsq__rd32(p);
    e->n_group_stats = nsq__rd64(p + 8);
    e->n_col_stats = nsq__rd64(p + 16);
    if (nsq__rd32(p + 4)) return nsq__fail(d, NSQ_E_RESERVED, off + 4, "R-IMP-3", "entry %u reserved field", i);
    if (e->tensor >= f->tensor_count || !nsq__scheme_of(f->tensors[e->tensor].scheme)->grouped ||
        (i && e->tensor <= f->imp[i - 1].tensor))
        return nsq__fail(d, NSQ_E_IMPORTANCE, off, "R-IMP-4",
                         "entry %u names tensor %u: not a TIERED or LATTICE tensor, or not in increasing order", i, e->tensor);
    const nsq__tensor *t = &f->tensors[e->tensor];
    uint64_t ng = t->n_elements / t->group_size;
    if ((e->n_group_stats && e->n_group_stats != ng) || (e->n_col_stats && e->n_col_stats != t->cols))
        return nsq__fail(d, NSQ_E_IMPORTANCE, off + 8, "R-IMP-5",
                         "entry for %s: %llu group / %llu column stats, expected 0 or %llu / %llu", t->name,
                         (unsigned long long)e->n_group_stats, (unsigned long long)e->n_col_stats,
                         (unsigned long long)ng, (unsigned long long)t->cols);
    uint64_t doff = nsq__cur_off(c);
    if (!(e->group_stats = nsq__take(c, 4 * e->n_group_stats)) || !(e->col_stats = nsq__take(c, 4 * e->n_col_stats)))
        return nsq__fail(d, NSQ_E_IMPORTANCE, doff, "R-IMP-3", "entry for %s truncated", t->name);
    if (!valid_stats(e->group_stats, e->n_group_stats) || !valid_stats(e->col_stats, e->n_col_stats))
        return nsq__fail(d, NSQ_E_IMPORTANCE, doff, "R-IMP-6", "entry for %s has a negative or non-finite value", t->name);
    return NSQ_OK;
}

nsq_status nsq__parse_importance(nsq_file *f, const nsq__section *s, nsq_diag *d)
{
    nsq__cur c = {s->data, s->data + s->size, s->offset, s->data};
    const uint8_t *p = nsq__take(&c, 20);
    if (!p) return nsq__fail(d, NSQ_E_IMPORTANCE, s->offset, "R-IMP-1", "section shorter than 20 bytes");
    f->imp_method = nsq__rd32(p);
    uint32_t n = nsq__rd32(p + 4);
    f->imp_bpw = nsq__rdf64(p + 8);
    uint32_t plen = nsq__rd32(p + 16);
    if (f->imp_method != NSQ_IMP_MAGNITUDE && f->imp_method != NSQ_IMP_CALIBRATED)
        return nsq__fail(d, NSQ_E_IMPORTANCE, s->offset, "R-IMP-1", "unknown method %u", f->imp_method);
    if (!isfinite(f->imp_bpw) || f->imp_bpw < 0 || f->imp_bpw > 32)
        return nsq__fail(d, NSQ_E_IMPORTANCE, s->offset + 8, "R-IMP-1", "target_bpw is not in 0..32");
    if (n > f->tensor_count || plen > NSQ__MAX_PROVENANCE)
        return nsq__fail(d, NSQ_E_LIMIT, s->offset + 4, "R-IMP-2", "entry count %u or provenance length %u too large", n, plen);
    const uint8_t *prov = nsq__take(&c, plen);
    if (!prov || !nsq__valid_utf8(prov, plen))
        return nsq__fail(d, NSQ_E_IMPORTANCE, s->offset + 20, "R-IMP-2", "provenance truncated or not UTF-8");
    f->imp_provenance = nsq__strndup(prov, plen);
    f->imp = calloc(n ? n : 1, sizeof *f->imp);
    if (!f->imp || !f->imp_provenance) return nsq__fail(d, NSQ_E_NOMEM, s->offset, "", "importance");
    f->imp_count = n;
    for (uint32_t i = 0; i < n; i++) {
        nsq_status st = parse_entry(f, &c, i, d);
        if (st) return st;
    }
    if (nsq__cur_left(&c))
        return nsq__fail(d, NSQ_E_IMPORTANCE, nsq__cur_off(&c), "R-IMP-7", "bytes after the last entry");
    f->has_importance = 1;
    return NSQ_OK;
}

nsq_status nsq_importance_get(const nsq_file *f, nsq_importance_info *out)
{
    if (!f->has_importance) return NSQ_E_NOT_FOUND;
    out->method = f->imp_method;
    out->entry_count = f->imp_count;
    out->target_bpw = f->imp_bpw;
    out->provenance = f->imp_provenance;
    return NSQ_OK;
}

nsq_status nsq_importance_entry_at(const nsq_file *f, uint32_t i, nsq_importance_entry *out)
{
    if (!f->has_importance || i >= f->imp_count) return NSQ_E_NOT_FOUND;
    const nsq__impentry *e = &f->imp[i];
    out->tensor = e->tensor;
    out->n_group_stats = e->n_group_stats;
    out->n_col_stats = e->n_col_stats;
    out->group_stats = e->group_stats;
    out->col_stats = e->col_stats;
    return NSQ_OK;
}
