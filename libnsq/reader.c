/* reader.c - opening a file: header, section table, checksums and the
 * rule that byte ranges cover the file exactly. */
#include "internal.h"
#include "scheme.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

nsq_status nsq__read_at(const nsq_file *f, uint64_t off, uint64_t len, uint8_t *dst)
{
    uint64_t end;
    if (nsq__add(off, len, &end) || end > f->file_size) return NSQ_E_TRUNCATED;
    if (f->map) {
        memcpy(dst, f->map + off, len);
        return NSQ_OK;
    }
    while (len > 0) {
        size_t chunk = len > (1u << 30) ? (1u << 30) : (size_t)len;
        ssize_t n = pread(f->fd, dst, chunk, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return n == 0 ? NSQ_E_TRUNCATED : NSQ_E_IO;
        dst += n;
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
    return NSQ_OK;
}

static nsq_status parse_header(nsq_file *f, uint64_t actual_size, nsq_diag *d)
{
    const uint8_t *h = f->header;
    if (memcmp(h, NSQ__MAGIC, 8) != 0)
        return nsq__fail(d, NSQ_E_MAGIC, 0, "R-HDR-1", "magic bytes are not 89 4E 53 51 0D 0A 1A 0A");
    f->version_major = nsq__rd16(h + 8);
    f->version_minor = nsq__rd16(h + 10);
    if (f->version_major != NSQ_FORMAT_MAJOR)
        return nsq__fail(d, NSQ_E_VERSION, 8, "R-HDR-2", "version_major is %u, this reader implements %u",
                         f->version_major, NSQ_FORMAT_MAJOR);
    if (nsq__rd32(h + 12) != NSQ__HEADER_SIZE)
        return nsq__fail(d, NSQ_E_FORMAT, 12, "R-HDR-3", "header_size is %u, must be 128", nsq__rd32(h + 12));
    f->required = nsq__rd64(h + 16);
    f->optional = nsq__rd64(h + 24);
    if (f->required & ~NSQ__KNOWN_REQUIRED)
        return nsq__fail(d, NSQ_E_UNSUPPORTED, 16, "R-HDR-4",
                         "required_features has unknown bits 0x%llx",
                         (unsigned long long)(f->required & ~NSQ__KNOWN_REQUIRED));
    f->file_size = nsq__rd64(h + 32);
    if (f->file_size != actual_size)
        return nsq__fail(d, NSQ_E_TRUNCATED, 32, "R-HDR-5", "file_size field is %llu, file is %llu bytes",
                         (unsigned long long)f->file_size, (unsigned long long)actual_size);
    if (f->file_size > NSQ__MAX_FILE_SIZE)
        return nsq__fail(d, NSQ_E_LIMIT, 32, "R-HDR-5", "file_size exceeds 2^48");
    uint64_t toff = nsq__rd64(h + 40);
    f->section_count = nsq__rd32(h + 48);
    if (f->section_count < NSQ__MIN_SECTIONS || f->section_count > NSQ__MAX_SECTIONS)
        return nsq__fail(d, NSQ_E_LIMIT, 48, "R-HDR-6", "section_count %u is outside 3..64", f->section_count);
    if (nsq__rd32(h + 52) != NSQ__SECTION_ENTRY_SIZE)
        return nsq__fail(d, NSQ_E_FORMAT, 52, "R-HDR-7", "section_entry_size is %u, must be 32",
                         nsq__rd32(h + 52));
    uint64_t tend;
    if (toff % NSQ__SECTION_ALIGN || toff < NSQ__HEADER_SIZE ||
        nsq__add(toff, (uint64_t)f->section_count * NSQ__SECTION_ENTRY_SIZE, &tend) || tend > f->file_size)
        return nsq__fail(d, NSQ_E_RANGE, 40, "R-HDR-8",
                         "section table at %llu (+%u entries) is misaligned or outside the file",
                         (unsigned long long)toff, f->section_count);
    if (f->version_minor <= NSQ_FORMAT_MINOR && !nsq__all_zero(h + 64, 64))
        return nsq__fail(d, NSQ_E_RESERVED, 64, "R-HDR-9", "reserved header bytes 64..127 are not zero");
    return NSQ_OK;
}

static uint64_t section_cap(uint32_t kind)
{
    switch (kind) {
    case NSQ__SEC_METADATA: return NSQ__MAX_META_SECTION;
    case NSQ__SEC_TOKENIZER: return NSQ__MAX_TOKENIZER_SECTION;
    case NSQ__SEC_DIRECTORY: return NSQ__MAX_DIRECTORY_SECTION;
    case NSQ__SEC_ROUTER: return NSQ__MAX_ROUTER_SECTION;
    default: return NSQ__MAX_OTHER_SECTION;
    }
}

static nsq_status parse_section_table(nsq_file *f, const uint8_t *tab, uint64_t toff, nsq_diag *d)
{
    f->sections = calloc(f->section_count, sizeof *f->sections);
    if (!f->sections) return nsq__fail(d, NSQ_E_NOMEM, UINT64_MAX, "", "section table");
    uint32_t seen = 0; /* kinds 1..5 already present */
    for (uint32_t i = 0; i < f->section_count; i++) {
        const uint8_t *e = tab + (uint64_t)i * NSQ__SECTION_ENTRY_SIZE;
        uint64_t eoff = toff + (uint64_t)i * NSQ__SECTION_ENTRY_SIZE;
        nsq__section *s = &f->sections[i];
        s->kind = nsq__rd32(e);
        s->offset = nsq__rd64(e + 8);
        s->size = nsq__rd64(e + 16);
        s->checksum = nsq__rd64(e + 24);
        if (nsq__rd32(e + 4) != 0)
            return nsq__fail(d, NSQ_E_RESERVED, eoff + 4, "R-SEC-1", "section %u flags are not zero", i);
        if (s->kind == 0)
            return nsq__fail(d, NSQ_E_FORMAT, eoff, "R-SEC-2", "section %u has kind 0", i);
        for (uint32_t j = 0; j < i; j++)
            if (f->sections[j].kind == s->kind)
                return nsq__fail(d, NSQ_E_FORMAT, eoff, "R-SEC-2", "section kind %u appears twice", s->kind);
        if (s->kind <= NSQ__SEC_ROUTER) seen |= 1u << s->kind;
        uint64_t end;
        if (s->size == 0 || s->size > section_cap(s->kind))
            return nsq__fail(d, NSQ_E_LIMIT, eoff + 16, "R-SEC-3", "section %u (kind %u) size %llu is 0 or over its cap",
                             i, s->kind, (unsigned long long)s->size);
        if (s->offset % NSQ__SECTION_ALIGN || nsq__add(s->offset, s->size, &end) || end > f->file_size)
            return nsq__fail(d, NSQ_E_RANGE, eoff + 8, "R-SEC-4",
                             "section %u range [%llu, +%llu) is misaligned or outside the file", i,
                             (unsigned long long)s->offset, (unsigned long long)s->size);
        /* non-overlapping too, so the sections together never exceed the file */
        if (i > 0 && s->offset < f->sections[i - 1].offset + f->sections[i - 1].size)
            return nsq__fail(d, NSQ_E_RANGE, eoff + 8, "R-SEC-5",
                             "section %u starts before section %u ends (sections are in increasing, non-overlapping order)",
                             i, i - 1);
    }
    const uint32_t need = (1u << NSQ__SEC_METADATA) | (1u << NSQ__SEC_TOKENIZER) | (1u << NSQ__SEC_DIRECTORY);
    if ((seen & need) != need)
        return nsq__fail(d, NSQ_E_FORMAT, toff, "R-SEC-6", "metadata, tokenizer or directory section missing");
    return NSQ_OK;
}

static nsq_status load_sections(nsq_file *f, nsq_diag *d)
{
    if (f->map) {
        for (uint32_t i = 0; i < f->section_count; i++) f->sections[i].data = f->map + f->sections[i].offset;
        return NSQ_OK;
    }
    uint64_t total = 0;
    for (uint32_t i = 0; i < f->section_count; i++) total += f->sections[i].size; /* each <= file_size */
    uint8_t *buf = malloc(total ? total : 1);
    if (!buf) return nsq__fail(d, NSQ_E_NOMEM, UINT64_MAX, "", "sections need %llu bytes", (unsigned long long)total);
    f->owned_sections = buf;
    for (uint32_t i = 0; i < f->section_count; i++) {
        nsq__section *s = &f->sections[i];
        nsq_status st = nsq__read_at(f, s->offset, s->size, buf);
        if (st) return nsq__fail(d, st, s->offset, "", "reading section %u", i);
        s->data = buf;
        buf += s->size;
    }
    return NSQ_OK;
}

static const nsq__section *find_section(const nsq_file *f, uint32_t kind)
{
    for (uint32_t i = 0; i < f->section_count; i++)
        if (f->sections[i].kind == kind) return &f->sections[i];
    return NULL;
}

static nsq_status check_checksums(nsq_file *f, const uint8_t *tab, nsq_diag *d)
{
    for (uint32_t i = 0; i < f->section_count; i++) {
        const nsq__section *s = &f->sections[i];
        if (XXH3_64bits(s->data, s->size) != s->checksum)
            return nsq__fail(d, NSQ_E_CHECKSUM, s->offset, "R-SEC-7", "section %u (kind %u) checksum mismatch", i,
                             s->kind);
    }
    uint8_t h[NSQ__HEADER_SIZE];
    memcpy(h, f->header, sizeof h);
    memset(h + 56, 0, 8);
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, h, sizeof h);
    XXH3_64bits_update(&st, tab, (size_t)f->section_count * NSQ__SECTION_ENTRY_SIZE);
    const nsq__section *dir = find_section(f, NSQ__SEC_DIRECTORY);
    XXH3_64bits_update(&st, dir->data, dir->size);
    if (XXH3_64bits_digest(&st) != nsq__rd64(f->header + 56))
        return nsq__fail(d, NSQ_E_CHECKSUM, 56, "R-HDR-10", "header checksum mismatch");
    return NSQ_OK;
}

typedef struct {
    uint64_t off, size, align;
} range;

static int cmp_range(const void *a, const void *b)
{
    const range *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

static nsq_status check_padding(const nsq_file *f, uint64_t off, uint64_t len, nsq_diag *d)
{
    uint8_t buf[NSQ__BLOCK_ALIGN];
    nsq_status st = nsq__read_at(f, off, len, buf); /* len < 4096 by construction */
    if (st) return nsq__fail(d, st, off, "", "reading padding");
    if (!nsq__all_zero(buf, len)) return nsq__fail(d, NSQ_E_LAYOUT, off, "R-LAY-2", "padding bytes are not zero");
    return NSQ_OK;
}

/* Every byte belongs to exactly one range or to the zero padding before one. */
static nsq_status check_layout(nsq_file *f, uint64_t toff, nsq_diag *d)
{
    size_t n = 2 + f->section_count + f->block_count + f->refine_count;
    range *r = malloc(n * sizeof *r);
    if (!r) return nsq__fail(d, NSQ_E_NOMEM, UINT64_MAX, "", "layout check");
    size_t k = 0;
    r[k++] = (range){0, NSQ__HEADER_SIZE, 1};
    r[k++] = (range){toff, (uint64_t)f->section_count * NSQ__SECTION_ENTRY_SIZE, NSQ__SECTION_ALIGN};
    for (uint32_t i = 0; i < f->section_count; i++)
        r[k++] = (range){f->sections[i].offset, f->sections[i].size, NSQ__SECTION_ALIGN};
    for (uint32_t i = 0; i < f->block_count; i++)
        r[k++] = (range){f->blocks[i].b.offset, f->blocks[i].b.stored_size, NSQ__BLOCK_ALIGN};
    for (uint32_t i = 0; i < f->refine_count; i++)
        r[k++] = (range){f->refines[i].r.offset, f->refines[i].r.stored_size, NSQ__BLOCK_ALIGN};
    qsort(r, n, sizeof *r, cmp_range);
    nsq_status st = NSQ_OK;
    uint64_t pos = 0;
    for (size_t i = 0; i < n && !st; i++) {
        uint64_t want = nsq__align_up(pos, r[i].align);
        if (r[i].off != want)
            st = nsq__fail(d, NSQ_E_LAYOUT, r[i].off, "R-LAY-1",
                           "a range starts at %llu; after the previous range ends at %llu it must start at %llu",
                           (unsigned long long)r[i].off, (unsigned long long)pos, (unsigned long long)want);
        else if (want > pos)
            st = check_padding(f, pos, want - pos, d);
        pos = r[i].off + r[i].size; /* each range was checked to lie inside the file */
    }
    if (!st && pos != f->file_size)
        st = nsq__fail(d, NSQ_E_LAYOUT, pos, "R-LAY-3", "%llu bytes after the last range",
                       (unsigned long long)(f->file_size - pos));
    free(r);
    return st;
}

static nsq_status check_features(nsq_file *f, nsq_diag *d)
{
    int zstd = 0, lattice = 0, levels = 0, e8s = 0;
    for (uint32_t i = 0; i < f->block_count; i++) zstd |= f->blocks[i].b.compression == NSQ_COMP_ZSTD;
    for (uint32_t i = 0; i < f->refine_count; i++) zstd |= f->refines[i].r.compression == NSQ_COMP_ZSTD;
    for (uint32_t i = 0; i < f->tensor_count; i++) {
        lattice |= f->tensors[i].scheme == NSQ_SCHEME_LATTICE;
        levels |= f->tensors[i].scheme == NSQ_SCHEME_LATTICE && f->tensors[i].n_refine > 0;
        if (f->tensors[i].scheme == NSQ_SCHEME_LATTICE)
            e8s |= nsq__lattice_e8s(NULL, f->tensors[i].refine, f->tensors[i].n_refine);
    }
    /* payloads' stages are seen when read (nsq_tensor_view, nsq_verify) */
    if (e8s && !(f->required & NSQ_REQ_LATTICE_E8S))
        return nsq__fail(d, NSQ_E_FEATURE, 16, "R-HDR-11", "required LATTICE_E8S flag is clear but a refinement has an E8S stage");
    struct { int flag_set, present; const char *what; uint64_t off; } c[] = {
        {!!(f->required & NSQ_REQ_ZSTD), zstd, "required ZSTD", 16},
        {!!(f->required & NSQ_REQ_LATTICE), lattice, "required LATTICE", 16},
        {!!(f->required & NSQ_REQ_LATTICE_LEVELS), levels, "required LATTICE_LEVELS", 16},
        {!!(f->optional & NSQ_OPT_REFINEMENTS), f->refine_count > 0, "optional REFINEMENTS", 24},
        {!!(f->optional & NSQ_OPT_IMPORTANCE), f->has_importance, "optional IMPORTANCE", 24},
        {!!(f->optional & NSQ_OPT_ROUTER), f->has_router, "optional ROUTER", 24},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        if (c[i].flag_set != c[i].present)
            return nsq__fail(d, NSQ_E_FEATURE, c[i].off, "R-HDR-11", "%s flag is %s but the feature is %s",
                             c[i].what, c[i].flag_set ? "set" : "clear", c[i].present ? "present" : "absent");
    return NSQ_OK;
}

static nsq_status open_common(nsq_file *f, uint64_t actual, nsq_diag *d)
{
    f->file_size = actual; /* provisional, for nsq__read_at */
    if (actual < NSQ__HEADER_SIZE) {
        uint8_t m[8];
        if (actual >= 8 && !nsq__read_at(f, 0, 8, m) && memcmp(m, NSQ__MAGIC, 8) != 0)
            return nsq__fail(d, NSQ_E_MAGIC, 0, "R-HDR-1", "magic bytes are not 89 4E 53 51 0D 0A 1A 0A");
        return nsq__fail(d, NSQ_E_TRUNCATED, actual, "R-HDR-5", "file is %llu bytes, shorter than the 128-byte header",
                         (unsigned long long)actual);
    }
    nsq_status st = nsq__read_at(f, 0, NSQ__HEADER_SIZE, f->header);
    if (st) return nsq__fail(d, st, 0, "", "reading header");
    if ((st = parse_header(f, actual, d))) return st;
    uint64_t toff = nsq__rd64(f->header + 40), tsize = (uint64_t)f->section_count * NSQ__SECTION_ENTRY_SIZE;
    uint8_t tab[NSQ__MAX_SECTIONS * NSQ__SECTION_ENTRY_SIZE];
    if ((st = nsq__read_at(f, toff, tsize, tab))) return nsq__fail(d, st, toff, "", "reading section table");
    if ((st = parse_section_table(f, tab, toff, d))) return st;
    if ((st = load_sections(f, d))) return st;
    if (!(f->flags & NSQ_OPEN_NO_CHECKSUMS) && (st = check_checksums(f, tab, d))) return st;
    if ((st = nsq__parse_metadata(f, find_section(f, NSQ__SEC_METADATA), d))) return st;
    if ((st = nsq__check_required_meta(f, d))) return st;
    if ((st = nsq__parse_tokenizer(f, find_section(f, NSQ__SEC_TOKENIZER), d))) return st;
    if ((st = nsq__parse_directory(f, find_section(f, NSQ__SEC_DIRECTORY), d))) return st;
    const nsq__section *s;
    if ((s = find_section(f, NSQ__SEC_IMPORTANCE)) && (st = nsq__parse_importance(f, s, d))) return st;
    if ((s = find_section(f, NSQ__SEC_ROUTER)) && (st = nsq__parse_router(f, s, d))) return st;
    if ((st = check_layout(f, toff, d))) return st;
    return check_features(f, d);
}

static nsq_file *new_file(unsigned flags)
{
    nsq_file *f = calloc(1, sizeof *f);
    if (f) {
        f->fd = -1;
        f->flags = flags;
    }
    return f;
}

nsq_status nsq_open_memory(const void *buf, size_t len, unsigned flags, nsq_file **out, nsq_diag *d)
{
    if (!out || (!buf && len)) return nsq__fail(d, NSQ_E_ARG, UINT64_MAX, "", "NULL argument");
    *out = NULL;
    nsq_file *f = new_file(flags & ~(unsigned)NSQ_OPEN_PREAD);
    if (!f) return nsq__fail(d, NSQ_E_NOMEM, UINT64_MAX, "", "file handle");
    f->map = buf ? buf : (const uint8_t *)"";
    f->map_len = len;
    nsq_status st = open_common(f, len, d);
    if (st) {
        nsq_close(f);
        return st;
    }
    *out = f;
    return NSQ_OK;
}

nsq_status nsq_open(const char *path, unsigned flags, nsq_file **out, nsq_diag *d)
{
    if (!path || !out) return nsq__fail(d, NSQ_E_ARG, UINT64_MAX, "", "NULL argument");
    *out = NULL;
    nsq_file *f = new_file(flags);
    if (!f) return nsq__fail(d, NSQ_E_NOMEM, UINT64_MAX, "", "file handle");
    nsq_status st = NSQ_OK;
    struct stat sb;
    f->fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC); /* a FIFO must not block before fstat refuses it */
    if (f->fd < 0 || fstat(f->fd, &sb) != 0) {
        st = nsq__fail(d, NSQ_E_IO, UINT64_MAX, "", "%s: %s", path, strerror(errno));
    } else if (!S_ISREG(sb.st_mode)) {
        st = nsq__fail(d, NSQ_E_IO, UINT64_MAX, "", "%s: %s", path,
                       S_ISDIR(sb.st_mode) ? "is a directory" : "not a regular file");
    } else if (fcntl(f->fd, F_SETFL, fcntl(f->fd, F_GETFL) & ~O_NONBLOCK) != 0) {
        st = nsq__fail(d, NSQ_E_IO, UINT64_MAX, "", "%s: %s", path, strerror(errno));
    } else if (!(flags & NSQ_OPEN_PREAD) && sb.st_size > 0) {
        void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, f->fd, 0);
        if (m == MAP_FAILED) {
            st = nsq__fail(d, NSQ_E_IO, UINT64_MAX, "", "%s: mmap: %s", path, strerror(errno));
        } else {
            f->map = m;
            f->map_len = (uint64_t)sb.st_size;
            f->mapped = 1;
        }
    }
    if (!st) st = open_common(f, (uint64_t)(f->fd >= 0 ? sb.st_size : 0), d);
    if (st) {
        nsq_close(f);
        return st;
    }
    *out = f;
    return NSQ_OK;
}

void nsq_close(nsq_file *f)
{
    if (!f) return;
    nsq__free_metadata(f);
    nsq__free_tokenizer(f);
    nsq__free_directory(f);
    free(f->sections);
    free(f->owned_sections);
    if (f->mapped) munmap((void *)f->map, (size_t)f->map_len);
    if (f->fd >= 0) close(f->fd);
    free(f);
}

void nsq_get_info(const nsq_file *f, nsq_info *o)
{
    memset(o, 0, sizeof *o);
    o->version_major = f->version_major;
    o->version_minor = f->version_minor;
    o->required_features = f->required;
    o->optional_features = f->optional;
    o->file_size = f->file_size;
    o->section_count = f->section_count;
    o->meta_count = f->meta_count;
    o->block_count = f->block_count;
    o->refinement_count = f->refine_count;
    o->tensor_count = f->tensor_count;
    o->has_importance = f->has_importance;
    o->has_router = f->has_router;
}

nsq_status nsq_section_at(const nsq_file *f, uint32_t i, nsq_section *out)
{
    if (i >= f->section_count) return NSQ_E_NOT_FOUND;
    out->kind = f->sections[i].kind;
    out->offset = f->sections[i].offset;
    out->size = f->sections[i].size;
    out->checksum = f->sections[i].checksum;
    return NSQ_OK;
}
