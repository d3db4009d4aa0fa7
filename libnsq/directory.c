/* directory.c - the tensor directory: block, refinement and tensor records,
 * and the rules that tie them together. */
#include "scheme.h"

#include <stdlib.h>

#define DIR_HEADER 16u

static nsq_status parse_block(nsq_file *f, const uint8_t *p, uint64_t off, uint32_t i, nsq_diag *d)
{
    nsq_block *b = &f->blocks[i].b;
    f->blocks[i].record_off = off;
    b->kind = nsq__rd32(p);
    b->first_layer = nsq__rd32(p + 4);
    b->n_layers = nsq__rd32(p + 8);
    b->compression = nsq__rd32(p + 12);
    b->offset = nsq__rd64(p + 16);
    b->stored_size = nsq__rd64(p + 24);
    b->raw_size = nsq__rd64(p + 32);
    b->checksum = nsq__rd64(p + 40);
    if (!nsq__all_zero(p + 48, 16))
        return nsq__fail(d, NSQ_E_RESERVED, off + 48, "R-DIR-3", "block %u reserved bytes are not zero", i);
    uint32_t want = i == 0 ? NSQ_BLOCK_EMBEDDINGS : i + 1 == f->block_count ? NSQ_BLOCK_OUTPUT : NSQ_BLOCK_LAYERS;
    if (b->kind != want)
        return nsq__fail(d, NSQ_E_DIRECTORY, off, "R-DIR-4", "block %u has kind %u, expected %u", i, b->kind, want);
    if (b->compression > NSQ_COMP_ZSTD)
        return nsq__fail(d, NSQ_E_DIRECTORY, off + 12, "R-DIR-5", "block %u compression %u unknown", i, b->compression);
    uint64_t end;
    if (b->offset % NSQ__BLOCK_ALIGN || b->stored_size == 0 || nsq__add(b->offset, b->stored_size, &end) ||
        end > f->file_size)
        return nsq__fail(d, NSQ_E_RANGE, off + 16, "R-DIR-6", "block %u range [%llu, +%llu) is misaligned or outside the file",
                         i, (unsigned long long)b->offset, (unsigned long long)b->stored_size);
    if (b->raw_size == 0 || b->raw_size > NSQ__MAX_RAW_SIZE)
        return nsq__fail(d, NSQ_E_LIMIT, off + 32, "R-DIR-7", "block %u raw_size %llu is 0 or over 2^36", i,
                         (unsigned long long)b->raw_size);
    if (b->compression == NSQ_COMP_NONE ? b->stored_size != b->raw_size
                                        : b->raw_size / NSQ__MAX_ZSTD_RATIO > b->stored_size)
        return nsq__fail(d, NSQ_E_DIRECTORY, off + 24, "R-DIR-8",
                         "block %u stored_size %llu and raw_size %llu disagree with its compression", i,
                         (unsigned long long)b->stored_size, (unsigned long long)b->raw_size);
    return NSQ_OK;
}

/* LAYERS blocks tile [0, n_layers) in order; EMBEDDINGS/OUTPUT carry no layers. */
static nsq_status check_layers(nsq_file *f, nsq_diag *d)
{
    uint64_t n_layers, next = 0;
    nsq_meta_u64(f, "model.n_layers", 0, &n_layers);
    for (uint32_t i = 0; i < f->block_count; i++) {
        const nsq_block *b = &f->blocks[i].b;
        uint64_t off = f->blocks[i].record_off + 4;
        if (b->kind != NSQ_BLOCK_LAYERS) {
            if (b->first_layer || b->n_layers)
                return nsq__fail(d, NSQ_E_DIRECTORY, off, "R-DIR-9", "block %u is not a layer block but has layers", i);
            continue;
        }
        if (b->first_layer != next || b->n_layers == 0)
            return nsq__fail(d, NSQ_E_DIRECTORY, off, "R-DIR-9", "block %u holds layers %u+%u, expected to start at %llu",
                             i, b->first_layer, b->n_layers, (unsigned long long)next);
        next += b->n_layers;
    }
    if (next != n_layers)
        return nsq__fail(d, NSQ_E_DIRECTORY, UINT64_MAX, "R-DIR-9", "blocks hold %llu layers, model.n_layers is %llu",
                         (unsigned long long)next, (unsigned long long)n_layers);
    return NSQ_OK;
}

static nsq_status parse_refinement(nsq_file *f, const uint8_t *p, uint64_t off, uint32_t i, nsq_diag *d)
{
    nsq_refinement *r = &f->refines[i].r;
    f->refines[i].record_off = off;
    r->block = nsq__rd32(p);
    r->level = nsq__rd32(p + 4);
    r->compression = nsq__rd32(p + 8);
    r->offset = nsq__rd64(p + 16);
    r->stored_size = nsq__rd64(p + 24);
    r->raw_size = nsq__rd64(p + 32);
    r->checksum = nsq__rd64(p + 40);
    if (nsq__rd32(p + 12))
        return nsq__fail(d, NSQ_E_RESERVED, off + 12, "R-DIR-3", "refinement %u reserved field is not zero", i);
    const nsq_refinement *prev = i ? &f->refines[i - 1].r : NULL;
    uint32_t want_level = prev && prev->block == r->block ? prev->level + 1 : 1;
    if (r->block >= f->block_count || (prev && r->block < prev->block) || r->level != want_level ||
        r->level > NSQ_MAX_REFINEMENTS)
        return nsq__fail(d, NSQ_E_DIRECTORY, off, "R-DIR-10",
                         "refinement %u (block %u level %u) is out of order; levels run 1..16 per block", i, r->block,
                         r->level);
    if (r->compression > NSQ_COMP_ZSTD)
        return nsq__fail(d, NSQ_E_DIRECTORY, off + 8, "R-DIR-5", "refinement %u compression %u unknown", i, r->compression);
    uint64_t end;
    if (r->offset % NSQ__BLOCK_ALIGN || r->stored_size == 0 || nsq__add(r->offset, r->stored_size, &end) ||
        end > f->file_size)
        return nsq__fail(d, NSQ_E_RANGE, off + 16, "R-DIR-6", "refinement %u range is misaligned or outside the file", i);
    if (r->raw_size == 0 || r->raw_size > NSQ__MAX_RAW_SIZE)
        return nsq__fail(d, NSQ_E_LIMIT, off + 32, "R-DIR-7", "refinement %u raw_size is 0 or over 2^36", i);
    if (r->compression == NSQ_COMP_NONE ? r->stored_size != r->raw_size
                                        : r->raw_size / NSQ__MAX_ZSTD_RATIO > r->stored_size)
        return nsq__fail(d, NSQ_E_DIRECTORY, off + 24, "R-DIR-8", "refinement %u sizes disagree with its compression", i);
    nsq__block *b = &f->blocks[r->block];
    if (r->level == 1) b->first_refine = i;
    b->b.refinement_count = r->level;
    return NSQ_OK;
}

/* Record fields, shape and size rules of one tensor (spec: Tensor record). */
static nsq_status check_tensor(nsq_file *f, nsq__tensor *t, nsq_diag *d)
{
    uint64_t off = t->record_off;
    const nsq__scheme *s = nsq__scheme_of(t->scheme);
    if (!s) return nsq__fail(d, NSQ_E_DIRECTORY, off, "R-TEN-2", "tensor %s: unknown scheme %u", t->name, t->scheme);
    if (t->block >= f->block_count)
        return nsq__fail(d, NSQ_E_DIRECTORY, off, "R-TEN-3", "tensor %s: block %u does not exist", t->name, t->block);
    t->n_elements = 1;
    for (uint32_t k = 0; k < t->n_dims; k++)
        if (t->dims[k] == 0 || t->dims[k] > NSQ__MAX_DIM || nsq__mul(t->n_elements, t->dims[k], &t->n_elements) ||
            t->n_elements > NSQ__MAX_ELEMENTS)
            return nsq__fail(d, NSQ_E_LIMIT, off, "R-TEN-4", "tensor %s: dimension %u is 0, over 2^32-1, or too many elements",
                             t->name, k);
    t->cols = t->dims[t->n_dims - 1];
    t->rows = t->n_elements / t->cols;
    return s->check_record(t, f->blocks[t->block].b.refinement_count, d);
}

static nsq_status parse_tensor(nsq_file *f, nsq__cur *c, uint32_t i, nsq_diag *d)
{
    nsq__tensor *t = &f->tensors[i];
    t->record_off = nsq__cur_off(c);
    const uint8_t *p = nsq__take(c, 2);
    if (!p) return nsq__fail(d, NSQ_E_DIRECTORY, t->record_off, "R-DIR-11", "tensor %u record truncated", i);
    uint16_t len = nsq__rd16(p);
    const uint8_t *name = nsq__take(c, len);
    if (!name || !nsq__valid_tensor_name(name, len))
        return nsq__fail(d, NSQ_E_DIRECTORY, t->record_off, "R-TEN-1", "tensor %u has an invalid name", i);
    if (!(t->name = nsq__strndup(name, len))) return nsq__fail(d, NSQ_E_NOMEM, t->record_off, "", "name");
    if (!(p = nsq__take(c, 16))) return nsq__fail(d, NSQ_E_DIRECTORY, t->record_off, "R-DIR-11", "tensor %s truncated", t->name);
    t->scheme = p[0];
    t->n_dims = p[1];
    t->block = nsq__rd32(p + 2);
    t->group_size = nsq__rd32(p + 6);
    t->n_refine = p[10];
    if (!nsq__all_zero(p + 11, 5))
        return nsq__fail(d, NSQ_E_RESERVED, t->record_off, "R-DIR-3", "tensor %s reserved bytes are not zero", t->name);
    if (t->n_dims < 1 || t->n_dims > NSQ_MAX_DIMS || t->n_refine > NSQ_MAX_REFINEMENTS)
        return nsq__fail(d, NSQ_E_DIRECTORY, t->record_off, "R-TEN-4", "tensor %s: n_dims %u or n_refine %u out of range",
                         t->name, t->n_dims, t->n_refine);
    if (!(p = nsq__take(c, 8ull * t->n_dims + 16 + 24ull * t->n_refine)))
        return nsq__fail(d, NSQ_E_DIRECTORY, t->record_off, "R-DIR-11", "tensor %s truncated", t->name);
    for (uint32_t k = 0; k < t->n_dims; k++, p += 8) t->dims[k] = nsq__rd64(p);
    t->offset = nsq__rd64(p);
    t->size = nsq__rd64(p + 8);
    p += 16;
    for (uint32_t l = 0; l < t->n_refine; l++, p += 24) {
        t->refine[l].bits = p[0];
        uint32_t kinds = t->scheme == NSQ_SCHEME_LATTICE ? 3 : 0; /* LATTICE's stage kinds; reserved otherwise */
        memcpy(t->refine[l].kind, p + 1, 3);
        if (!nsq__all_zero(p + 1 + kinds, 7 - kinds))
            return nsq__fail(d, NSQ_E_RESERVED, t->record_off, "R-DIR-3", "tensor %s refinement reserved bytes", t->name);
        t->refine[l].offset = nsq__rd64(p + 8);
        t->refine[l].size = nsq__rd64(p + 16);
    }
    return check_tensor(f, t, d);
}

/* Tensors of a block, and each refinement's parts, are packed from 0 with
 * 64-byte alignment and end exactly at the range's raw_size. */
static nsq_status check_packing(nsq_file *f, nsq_diag *d)
{
    uint32_t i = 0;
    for (uint32_t b = 0; b < f->block_count; b++) {
        nsq__block *blk = &f->blocks[b];
        blk->b.first_tensor = i;
        uint64_t pos = 0;
        for (; i < f->tensor_count && f->tensors[i].block == b; i++) {
            nsq__tensor *t = &f->tensors[i];
            if (t->offset != nsq__align_up(pos, NSQ__TENSOR_ALIGN))
                return nsq__fail(d, NSQ_E_DIRECTORY, t->record_off, "R-TEN-10",
                                 "tensor %s at %llu, expected %llu in block %u", t->name, (unsigned long long)t->offset,
                                 (unsigned long long)nsq__align_up(pos, NSQ__TENSOR_ALIGN), b);
            pos = t->offset + t->size; /* both < 2^37: no overflow */
        }
        blk->b.tensor_count = i - blk->b.first_tensor;
        if (blk->b.tensor_count == 0 || pos != blk->b.raw_size)
            return nsq__fail(d, NSQ_E_DIRECTORY, blk->record_off, "R-TEN-11",
                             "block %u: %u tensors end at %llu, raw_size is %llu", b, blk->b.tensor_count,
                             (unsigned long long)pos, (unsigned long long)blk->b.raw_size);
        for (uint32_t l = 1; l <= blk->b.refinement_count; l++) {
            const nsq_refinement *r = &f->refines[blk->first_refine + l - 1].r;
            uint64_t rpos = 0;
            uint32_t parts = 0;
            for (uint32_t k = blk->b.first_tensor; k < i; k++) {
                nsq__tensor *t = &f->tensors[k];
                if (t->n_refine < l) continue;
                const nsq_tensor_refinement *tr = &t->refine[l - 1];
                if (tr->offset != nsq__align_up(rpos, NSQ__TENSOR_ALIGN))
                    return nsq__fail(d, NSQ_E_DIRECTORY, t->record_off, "R-TEN-10",
                                     "tensor %s refinement %u at %llu is not packed", t->name, l,
                                     (unsigned long long)tr->offset);
                rpos = tr->offset + tr->size;
                parts++;
            }
            if (parts == 0 || rpos != r->raw_size)
                return nsq__fail(d, NSQ_E_DIRECTORY, f->refines[blk->first_refine + l - 1].record_off, "R-TEN-11",
                                 "block %u refinement %u: %u parts end at %llu, raw_size is %llu", b, l, parts,
                                 (unsigned long long)rpos, (unsigned long long)r->raw_size);
        }
    }
    if (i != f->tensor_count)
        return nsq__fail(d, NSQ_E_DIRECTORY, f->tensors[i].record_off, "R-TEN-12",
                         "tensor %s is not in (block, offset) order", f->tensors[i].name);
    return NSQ_OK;
}

static int cmp_name_idx(const void *a, const void *b, void *ctx)
{
    const nsq_file *f = ctx;
    return strcmp(f->tensors[*(const uint32_t *)a].name, f->tensors[*(const uint32_t *)b].name);
}

static nsq_status index_names(nsq_file *f, nsq_diag *d)
{
    f->by_name = malloc((size_t)f->tensor_count * sizeof *f->by_name);
    if (!f->by_name) return nsq__fail(d, NSQ_E_NOMEM, UINT64_MAX, "", "name index");
    for (uint32_t i = 0; i < f->tensor_count; i++) f->by_name[i] = i;
    qsort_r(f->by_name, f->tensor_count, sizeof *f->by_name, cmp_name_idx, f);
    for (uint32_t i = 1; i < f->tensor_count; i++) {
        const nsq__tensor *t = &f->tensors[f->by_name[i]];
        if (strcmp(f->tensors[f->by_name[i - 1]].name, t->name) == 0)
            return nsq__fail(d, NSQ_E_DIRECTORY, t->record_off, "R-TEN-13", "tensor name %s appears twice", t->name);
    }
    return NSQ_OK;
}

nsq_status nsq__parse_directory(nsq_file *f, const nsq__section *s, nsq_diag *d)
{
    nsq__cur c = {s->data, s->data + s->size, s->offset, s->data};
    const uint8_t *p = nsq__take(&c, DIR_HEADER);
    if (!p) return nsq__fail(d, NSQ_E_DIRECTORY, s->offset, "R-DIR-1", "section shorter than 16 bytes");
    uint32_t nb = nsq__rd32(p), nr = nsq__rd32(p + 4), nt = nsq__rd32(p + 8);
    if (nsq__rd32(p + 12)) return nsq__fail(d, NSQ_E_RESERVED, s->offset + 12, "R-DIR-3", "reserved field is not zero");
    /* bound every allocation by what the section can actually hold */
    uint64_t left = s->size - DIR_HEADER;
    if (nb < 2 || nb > NSQ__MAX_BLOCKS || (uint64_t)nb * NSQ__BLOCK_RECORD_SIZE > left ||
        nr > (uint64_t)nb * NSQ_MAX_REFINEMENTS ||
        (uint64_t)nb * NSQ__BLOCK_RECORD_SIZE + (uint64_t)nr * NSQ__REFINE_RECORD_SIZE > left || nt == 0 ||
        nt > NSQ__MAX_TENSORS || nt > left / 35)
        return nsq__fail(d, NSQ_E_LIMIT, s->offset, "R-DIR-2", "counts (%u blocks, %u refinements, %u tensors) out of range",
                         nb, nr, nt);
    f->blocks = calloc(nb, sizeof *f->blocks);
    f->refines = calloc(nr ? nr : 1, sizeof *f->refines);
    f->tensors = calloc(nt, sizeof *f->tensors);
    if (!f->blocks || !f->refines || !f->tensors) return nsq__fail(d, NSQ_E_NOMEM, s->offset, "", "directory");
    f->block_count = nb;
    f->refine_count = nr;
    f->tensor_count = nt;
    nsq_status st;
    for (uint32_t i = 0; i < nb; i++) {
        uint64_t off = nsq__cur_off(&c);
        if ((st = parse_block(f, nsq__take(&c, NSQ__BLOCK_RECORD_SIZE), off, i, d))) return st;
    }
    if ((st = check_layers(f, d))) return st;
    for (uint32_t i = 0; i < nr; i++) {
        uint64_t off = nsq__cur_off(&c);
        if ((st = parse_refinement(f, nsq__take(&c, NSQ__REFINE_RECORD_SIZE), off, i, d))) return st;
    }
    for (uint32_t i = 0; i < nt; i++)
        if ((st = parse_tensor(f, &c, i, d))) return st;
    if (nsq__cur_left(&c))
        return nsq__fail(d, NSQ_E_DIRECTORY, nsq__cur_off(&c), "R-DIR-12", "bytes after the last tensor record");
    if ((st = check_packing(f, d))) return st;
    return index_names(f, d);
}

void nsq__free_directory(nsq_file *f)
{
    for (uint32_t i = 0; i < f->tensor_count && f->tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    free(f->blocks);
    free(f->refines);
    free(f->by_name);
    free(f->imp);
    free(f->imp_provenance);
    f->tensors = NULL;
}

nsq_status nsq_block_at(const nsq_file *f, uint32_t i, nsq_block *out)
{
    if (i >= f->block_count) return NSQ_E_NOT_FOUND;
    *out = f->blocks[i].b;
    return NSQ_OK;
}

nsq_status nsq_refinement_at(const nsq_file *f, uint32_t block, uint32_t level, nsq_refinement *out)
{
    if (block >= f->block_count || level == 0 || level > f->blocks[block].b.refinement_count) return NSQ_E_NOT_FOUND;
    *out = f->refines[f->blocks[block].first_refine + level - 1].r;
    return NSQ_OK;
}

nsq_status nsq_tensor_at(const nsq_file *f, uint32_t i, nsq_tensor *out)
{
    if (i >= f->tensor_count) return NSQ_E_NOT_FOUND;
    const nsq__tensor *t = &f->tensors[i];
    memset(out, 0, sizeof *out);
    out->name = t->name;
    out->scheme = t->scheme;
    out->n_dims = t->n_dims;
    out->block = t->block;
    out->group_size = t->group_size;
    out->n_refine = t->n_refine;
    memcpy(out->dims, t->dims, sizeof out->dims);
    out->n_elements = t->n_elements;
    out->offset = t->offset;
    out->size = t->size;
    memcpy(out->refine, t->refine, sizeof out->refine);
    return NSQ_OK;
}

nsq_status nsq_tensor_find(const nsq_file *f, const char *name, uint32_t *index)
{
    uint32_t lo = 0, hi = f->tensor_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->tensors[f->by_name[mid]].name, name);
        if (c == 0) {
            *index = f->by_name[mid];
            return NSQ_OK;
        }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NSQ_E_NOT_FOUND;
}
