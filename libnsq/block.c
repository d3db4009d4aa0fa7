/* block.c - loading blocks and refinements (checksum, decompression) and
 * locating tensors inside them; nsq_verify walks every one. */
#include "internal.h"
#include "scheme.h"

#include <stdlib.h>
#include <zstd.h>

#define XXH_INLINE_ALL
#include <stdio.h>
#include <xxhash.h>

typedef struct {
    uint64_t offset, stored, raw, checksum;
    uint32_t compression;
    const char *what;
    uint32_t index, level;
} range_desc;

static nsq_status load_range(const nsq_file *f, const range_desc *r, nsq_loaded *out, nsq_diag *d)
{
    memset(out, 0, sizeof *out);
    uint8_t *stored = NULL;
    const uint8_t *src;
    if (f->map) {
        src = f->map + r->offset;
    } else {
        if (!(stored = malloc(r->stored))) return nsq__fail(d, NSQ_E_NOMEM, r->offset, "", "%s %u", r->what, r->index);
        nsq_status st = nsq__read_at(f, r->offset, r->stored, stored);
        if (st) {
            free(stored);
            return nsq__fail(d, st, r->offset, "", "reading %s %u", r->what, r->index);
        }
        src = stored;
    }
    if (!(f->flags & NSQ_OPEN_NO_CHECKSUMS) && XXH3_64bits(src, r->stored) != r->checksum) {
        free(stored);
        return nsq__fail(d, NSQ_E_CHECKSUM, r->offset, "R-BLK-1", "%s %u (level %u) checksum mismatch", r->what, r->index,
                         r->level);
    }
    if (r->compression == NSQ_COMP_NONE) {
        out->data = src;
        out->size = r->stored;
        out->owned_ = stored;
        return NSQ_OK;
    }
    /* the frame must declare exactly raw bytes and span exactly the stored range */
    unsigned long long fcs = ZSTD_getFrameContentSize(src, r->stored);
    size_t csize = ZSTD_findFrameCompressedSize(src, r->stored);
    uint8_t *raw = NULL;
    nsq_status st = NSQ_OK;
    if (fcs != r->raw || ZSTD_isError(csize) || csize != r->stored)
        st = nsq__fail(d, NSQ_E_COMPRESSION, r->offset, "R-BLK-2",
                       "%s %u: zstd frame does not declare raw_size %llu or does not span the range", r->what, r->index,
                       (unsigned long long)r->raw);
    else if (!(raw = malloc(r->raw)))
        st = nsq__fail(d, NSQ_E_NOMEM, r->offset, "", "%s %u: %llu bytes", r->what, r->index, (unsigned long long)r->raw);
    else {
        size_t got = ZSTD_decompress(raw, r->raw, src, r->stored);
        if (ZSTD_isError(got) || got != r->raw)
            st = nsq__fail(d, NSQ_E_COMPRESSION, r->offset, "R-BLK-2", "%s %u: %s", r->what, r->index,
                           ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short output");
    }
    free(stored);
    if (st) {
        free(raw);
        return st;
    }
    out->data = raw;
    out->size = r->raw;
    out->owned_ = raw;
    return NSQ_OK;
}

nsq_status nsq_block_load(const nsq_file *f, uint32_t i, nsq_loaded *out, nsq_diag *d)
{
    if (!f || !out || i >= f->block_count) return nsq__fail(d, NSQ_E_ARG, UINT64_MAX, "", "no block %u", i);
    const nsq_block *b = &f->blocks[i].b;
    range_desc r = {b->offset, b->stored_size, b->raw_size, b->checksum, b->compression, "block", i, 0};
    return load_range(f, &r, out, d);
}

nsq_status nsq_refinement_load(const nsq_file *f, uint32_t block, uint32_t level, nsq_loaded *out, nsq_diag *d)
{
    nsq_refinement ri;
    if (!f || !out || nsq_refinement_at(f, block, level, &ri))
        return nsq__fail(d, NSQ_E_ARG, UINT64_MAX, "", "no refinement %u of block %u", level, block);
    range_desc r = {ri.offset, ri.stored_size, ri.raw_size, ri.checksum, ri.compression, "refinement of block", block,
                    level};
    return load_range(f, &r, out, d);
}

void nsq_loaded_free(nsq_loaded *l)
{
    if (!l) return;
    free(l->owned_);
    memset(l, 0, sizeof *l);
}

/* Adds the block's file offset context to a payload-relative diagnostic. */
static nsq_status in_tensor(nsq_status st, const nsq__tensor *t, nsq_diag *d)
{
    if (st && d) {
        char msg[sizeof d->message];
        memcpy(msg, d->message, sizeof msg);
        snprintf(d->message, sizeof d->message, "tensor %.64s: %.180s", t->name, msg);
        d->offset = UINT64_MAX; /* payload offsets are relative to the raw block */
    }
    return st;
}

nsq_status nsq_tensor_view(const nsq_file *f, uint32_t i, const nsq_loaded *blk, nsq_view *out, nsq_diag *d)
{
    if (!f || !blk || !out || i >= f->tensor_count) return nsq__fail(d, NSQ_E_ARG, UINT64_MAX, "", "no tensor %u", i);
    const nsq__tensor *t = &f->tensors[i];
    if (blk->size != f->blocks[t->block].b.raw_size)
        return nsq__fail(d, NSQ_E_ARG, UINT64_MAX, "", "tensor %s: the loaded range is not block %u", t->name, t->block);
    nsq_status st = nsq_view_init(t->scheme, t->rows, t->cols, t->group_size, blk->data + t->offset, t->size, out, d);
    if (!st && t->scheme == NSQ_SCHEME_LATTICE && nsq__lattice_stages(out, t->refine, t->n_refine) > NSQ_LATTICE_MAX_STAGES)
        st = nsq__fail(d, NSQ_E_TENSOR, 0, "R-LAT-6", "%u stages with its refinements: over %d",
                       nsq__lattice_stages(out, t->refine, t->n_refine), NSQ_LATTICE_MAX_STAGES);
    if (!st && t->scheme == NSQ_SCHEME_LATTICE && !(f->required & NSQ_REQ_LATTICE_E8S) && nsq__lattice_e8s(out, NULL, 0))
        st = nsq__fail(d, NSQ_E_FEATURE, 0, "R-HDR-11", "an E8S stage in a file whose required LATTICE_E8S flag is clear");
    return in_tensor(st, t, d);
}

nsq_status nsq_tensor_refine_view(const nsq_file *f, uint32_t i, uint32_t level, const nsq_view *base,
                                  const nsq_loaded *ref, nsq_refine_view *out, nsq_diag *d)
{
    if (!f || !base || !ref || !out || i >= f->tensor_count) return nsq__fail(d, NSQ_E_ARG, UINT64_MAX, "", "bad argument");
    const nsq__tensor *t = &f->tensors[i];
    nsq_refinement r;
    if (level == 0 || level > t->n_refine || nsq_refinement_at(f, t->block, level, &r) || ref->size != r.raw_size)
        return nsq__fail(d, NSQ_E_ARG, UINT64_MAX, "", "tensor %s has no refinement level %u in that range", t->name, level);
    const nsq_tensor_refinement *tr = &t->refine[level - 1];
    return in_tensor(nsq__refine_view(base, tr, ref->data + tr->offset, out, d), t, d);
}

/* Zero padding between the tensors of a loaded range (spec: Block contents). */
static nsq_status check_gaps(const nsq_file *f, const nsq_loaded *l, uint32_t b, uint32_t level, nsq_diag *d)
{
    const nsq_block *blk = &f->blocks[b].b;
    uint64_t pos = 0;
    for (uint32_t i = blk->first_tensor; i < blk->first_tensor + blk->tensor_count; i++) {
        const nsq__tensor *t = &f->tensors[i];
        if (level && t->n_refine < level) continue;
        uint64_t off = level ? t->refine[level - 1].offset : t->offset;
        if (!nsq__all_zero(l->data + pos, off - pos))
            return nsq__fail(d, NSQ_E_BLOCK, UINT64_MAX, "R-BLK-3", "block %u level %u: padding before %s is not zero", b,
                             level, t->name);
        pos = off + (level ? t->refine[level - 1].size : t->size);
    }
    return NSQ_OK;
}

/* *e8s |= whether the block has an E8S stage (R-HDR-11's bit 3). */
static nsq_status verify_block(const nsq_file *f, uint32_t b, int *e8s, nsq_diag *d)
{
    const nsq_block *blk = &f->blocks[b].b;
    nsq_loaded base, ref;
    nsq_status st = nsq_block_load(f, b, &base, d);
    if (st) return st;
    nsq_view *views = calloc(blk->tensor_count, sizeof *views);
    if (!views) st = nsq__fail(d, NSQ_E_NOMEM, UINT64_MAX, "", "views");
    if (!st) st = check_gaps(f, &base, b, 0, d);
    for (uint32_t k = 0; k < blk->tensor_count && !st; k++) {
        const nsq__tensor *t = &f->tensors[blk->first_tensor + k];
        st = nsq_tensor_view(f, blk->first_tensor + k, &base, &views[k], d);
        if (!st && t->scheme == NSQ_SCHEME_LATTICE) *e8s |= nsq__lattice_e8s(&views[k], t->refine, t->n_refine);
    }
    for (uint32_t l = 1; l <= blk->refinement_count && !st; l++) {
        if ((st = nsq_refinement_load(f, b, l, &ref, d))) break;
        st = check_gaps(f, &ref, b, l, d);
        for (uint32_t k = 0; k < blk->tensor_count && !st; k++) {
            nsq_refine_view rv;
            if (f->tensors[blk->first_tensor + k].n_refine >= l)
                st = nsq_tensor_refine_view(f, blk->first_tensor + k, l, &views[k], &ref, &rv, d);
        }
        nsq_loaded_free(&ref);
    }
    free(views);
    nsq_loaded_free(&base);
    return st;
}

nsq_status nsq_verify(const nsq_file *f, nsq_diag *d)
{
    if (!f) return nsq__fail(d, NSQ_E_ARG, UINT64_MAX, "", "NULL file");
    nsq_file tmp = *f; /* verify always checks checksums, even if opened without */
    tmp.flags &= ~(unsigned)NSQ_OPEN_NO_CHECKSUMS;
    int e8s = 0;
    for (uint32_t b = 0; b < f->block_count; b++) {
        nsq_status st = verify_block(&tmp, b, &e8s, d);
        if (st) return st;
    }
    if (!e8s && f->required & NSQ_REQ_LATTICE_E8S)
        return nsq__fail(d, NSQ_E_FEATURE, 16, "R-HDR-11", "required LATTICE_E8S flag is set but no stage is E8S");
    return NSQ_OK;
}
