/* test_malformed.c - the reader against damaged files: every truncation,
 * every flipped byte of the header, section table and sections (with and
 * without checksums), a sample of flipped block bytes, counts and sizes that
 * lie, and the conformance set's expected status and rule for every file.
 *
 * Runs from the repository root. Under AddressSanitizer the truncated
 * buffers are poisoned past their length, so any read beyond it is caught. */
#include "testutil.h"

#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>

#if TU_ASAN
#include <sanitizer/asan_interface.h>
#define LIMIT_TO(buf, len, cap) ASAN_POISON_MEMORY_REGION((buf) + (len), (cap) - (len))
#define UNLIMIT(buf, cap) ASAN_UNPOISON_MEMORY_REGION((buf), (cap))
#else
#define LIMIT_TO(buf, len, cap) ((void)0)
#define UNLIMIT(buf, cap) ((void)0)
#endif

#define FIXDIR "fixtures/conformance"

/* ---- the layout of a valid file, read here independently ---- */
typedef struct {
    uint8_t *buf;
    size_t len;
    uint64_t toff;
    uint32_t nsec;
    uint32_t kind[16];
    uint64_t off[16], size[16];
    uint32_t nranges; /* blocks and refinements */
    uint64_t roff[64], rsize[64];
} layout;

static int find_section(const layout *L, uint32_t kind)
{
    for (uint32_t i = 0; i < L->nsec; i++)
        if (L->kind[i] == kind) return (int)i;
    fail_msg("no section of kind %u", kind);
    return -1;
}

static void load_layout(const char *name, layout *L)
{
    char path[256];
    snprintf(path, sizeof path, FIXDIR "/%s", name);
    memset(L, 0, sizeof *L);
    L->buf = tu_must_read(path, &L->len);
    assert_true(L->len >= 128);
    L->toff = tu_rd64(L->buf + 40);
    L->nsec = tu_rd32(L->buf + 48);
    assert_true(L->nsec >= 3 && L->nsec <= 16 && L->toff + 32ull * L->nsec == L->len);
    for (uint32_t i = 0; i < L->nsec; i++) {
        const uint8_t *e = L->buf + L->toff + 32 * i;
        L->kind[i] = tu_rd32(e);
        L->off[i] = tu_rd64(e + 8);
        L->size[i] = tu_rd64(e + 16);
    }
    const uint8_t *dir = L->buf + L->off[find_section(L, 3)];
    uint32_t nb = tu_rd32(dir), nr = tu_rd32(dir + 4);
    assert_true(nb + nr <= 64);
    for (uint32_t i = 0; i < nb; i++) {
        L->roff[L->nranges] = tu_rd64(dir + 16 + 64 * i + 16);
        L->rsize[L->nranges++] = tu_rd64(dir + 16 + 64 * i + 24);
    }
    for (uint32_t i = 0; i < nr; i++) {
        L->roff[L->nranges] = tu_rd64(dir + 16 + 64 * nb + 48 * i + 16);
        L->rsize[L->nranges++] = tu_rd64(dir + 16 + 64 * nb + 48 * i + 24);
    }
}

enum { R_HEADER, R_TABLE, R_SECTION, R_BLOCK, R_PADDING };
static int region_of(const layout *L, uint64_t o)
{
    if (o < 128) return R_HEADER;
    if (o >= L->toff) return R_TABLE;
    for (uint32_t i = 0; i < L->nsec; i++)
        if (o >= L->off[i] && o < L->off[i] + L->size[i]) return R_SECTION;
    for (uint32_t i = 0; i < L->nranges; i++)
        if (o >= L->roff[i] && o < L->roff[i] + L->rsize[i]) return R_BLOCK;
    return R_PADDING;
}

/* ---- walking everything a file offers; must never crash ---- */
static unsigned long n_decoded;

static void exercise(const nsq_file *f)
{
    nsq_info info;
    nsq_get_info(f, &info);
    nsq_diag d;
    for (uint32_t b = 0; b < info.block_count; b++) {
        nsq_block blk;
        nsq_loaded base, ref[NSQ_MAX_REFINEMENTS];
        if (nsq_block_at(f, b, &blk) || nsq_block_load(f, b, &base, &d)) continue;
        uint32_t nref = 0;
        while (nref < blk.refinement_count && !nsq_refinement_load(f, b, nref + 1, &ref[nref], &d)) nref++;
        for (uint32_t i = blk.first_tensor; i < blk.first_tensor + blk.tensor_count; i++) {
            nsq_tensor t;
            nsq_view v;
            assert_ok(nsq_tensor_at(f, i, &t));
            if (nsq_tensor_view(f, i, &base, &v, &d)) continue;
            nsq_refine_view rv[NSQ_MAX_REFINEMENTS];
            uint32_t nrv = 0;
            while (nrv < t.n_refine && nrv < nref && !nsq_tensor_refine_view(f, i, nrv + 1, &v, &ref[nrv], &rv[nrv], &d))
                nrv++;
            /* every row of small tensors; the first, a middle and the last row of others */
            float *row = malloc((v.cols ? v.cols : 1) * sizeof *row);
            assert_non_null(row);
            uint64_t step = v.rows * v.cols <= 1024 || v.rows < 3 ? 1 : (v.rows - 1) / 2;
            for (uint64_t r = 0; r < v.rows; r += step) {
                assert_ok(nsq_dequantize_rows(&v, rv, nrv, r, 1, row));
                n_decoded += v.cols;
            }
            free(row);
        }
        for (uint32_t l = 0; l < nref; l++) nsq_loaded_free(&ref[l]);
        nsq_loaded_free(&base);
    }
    nsq_router r;
    if (!nsq_router_get(f, &r)) {
        float *x = calloc(r.input_dim + 1, sizeof *x), *y = calloc(3ull * r.block_count + 1, sizeof *y);
        assert_ok(nsq_router_eval(&r, x, y));
        free(x);
        free(y);
    }
    nsq_importance_info ii;
    if (!nsq_importance_get(f, &ii))
        for (uint32_t e = 0; e < ii.entry_count; e++) {
            nsq_importance_entry ie;
            assert_ok(nsq_importance_entry_at(f, e, &ie));
            volatile float sink = 0;
            for (uint64_t g = 0; g < ie.n_group_stats; g++) sink += nsq_f32_at(ie.group_stats, g);
            for (uint64_t c = 0; c < ie.n_col_stats; c++) sink += nsq_f32_at(ie.col_stats, c);
            (void)sink;
        }
    for (uint32_t i = 0; i < info.meta_count; i++) {
        nsq_meta m;
        assert_ok(nsq_meta_at(f, i, &m));
        assert_non_null(m.key);
        const char *s;
        size_t len;
        for (uint32_t e = 0; e < m.count; e++)
            if ((m.type & 0x7F) == NSQ_META_STRING) {
                assert_ok(nsq_meta_value_str(f, i, e, &s, &len));
                volatile char c = len ? s[len - 1] : 0;
                (void)c;
            }
    }
    for (uint32_t i = 0; i < nsq_tokenizer_file_count(f); i++) {
        nsq_tokenizer_file tf;
        assert_ok(nsq_tokenizer_file_at(f, i, &tf));
        volatile uint8_t c = tf.size ? tf.data[tf.size - 1] : 0;
        (void)c;
    }
}

/* An open that fails must say so coherently: NULL handle, the same status in
 * the diag, a message. */
static nsq_status try_open(const uint8_t *buf, size_t len, unsigned flags, nsq_file **f, nsq_diag *d)
{
    memset(d, 0, sizeof *d);
    *f = (nsq_file *)d; /* must be overwritten */
    nsq_status st = nsq_open_memory(buf, len, flags, f, d);
    if (st) {
        assert_null(*f);
        if (d->status != st) fail_msg("returned %s, diag says %s", nsq_status_name(st), nsq_status_name(d->status));
        if (!d->message[0]) fail_msg("%s without a message", nsq_status_name(st));
    } else {
        assert_non_null(*f);
    }
    return st;
}

/* ---- (a) truncation at every length ---- */
static void truncate_all(const char *name)
{
    layout L;
    load_layout(name, &L);
    unsigned cases = 0;
    for (size_t n = 0; n < L.len; n++) {
        nsq_file *f;
        nsq_diag d;
        LIMIT_TO(L.buf, n, L.len);
        nsq_status st = try_open(L.buf, n, 0, &f, &d);
        UNLIMIT(L.buf, L.len);
        /* the magic is intact, so every length reports the size mismatch (spec 14.3) */
        if (st != NSQ_E_TRUNCATED || strcmp(d.rule, "R-HDR-5") != 0)
            fail_msg("%s truncated to %zu: %s %s, expected NSQ_E_TRUNCATED R-HDR-5", name, n, nsq_status_name(st), d.rule);
        cases++;
        if (n >= 128) { /* the same, with file_size made to agree and no checksums: must still fail */
            uint8_t keep[8];
            memcpy(keep, L.buf + 32, 8);
            tu_wr64(L.buf + 32, n);
            LIMIT_TO(L.buf, n, L.len);
            st = try_open(L.buf, n, NSQ_OPEN_NO_CHECKSUMS, &f, &d);
            UNLIMIT(L.buf, L.len);
            memcpy(L.buf + 32, keep, 8);
            if (st == NSQ_OK) {
                nsq_close(f);
                fail_msg("%s truncated to %zu with file_size patched opened", name, n);
            }
            cases++;
        }
    }
    print_message("# %s: %u truncated opens, all failed cleanly\n", name, cases);
    free(L.buf);
}

static void test_truncate_router(void **state)
{
    (void)state;
    truncate_all("router.nsq");
}
static void test_truncate_tiered_zstd(void **state)
{
    (void)state;
    truncate_all("tiered-zstd.nsq");
}

/* ---- (b), (c) flipped bytes ---- */
static void flip_all(const char *name, unsigned block_stride)
{
    layout L;
    load_layout(name, &L);
    unsigned n_meta = 0, n_meta_nock_ok = 0, n_block = 0, n_pad = 0, verify_ok = 0;
    n_decoded = 0;
    for (size_t o = 0; o < L.len; o++) {
        int reg = region_of(&L, o);
        int first_or_last = 0;
        for (uint32_t i = 0; i < L.nranges; i++)
            first_or_last |= o == L.roff[i] || o + 1 == L.roff[i] + L.rsize[i];
        if ((reg == R_BLOCK || reg == R_PADDING) && o % block_stride && !first_or_last) continue;
        L.buf[o] ^= 0xFF;
        nsq_file *f;
        nsq_diag d;
        nsq_status st = try_open(L.buf, L.len, 0, &f, &d);
        if (reg == R_HEADER || reg == R_TABLE || reg == R_SECTION) {
            /* (b) the header checksum covers header, table and directory; each
             * section has its own: every flip is caught at open */
            if (st == NSQ_OK) {
                nsq_close(f);
                fail_msg("%s: byte %zu flipped, open succeeded", name, o);
            }
            /* (c) without checksums: fail cleanly, or succeed and survive use */
            st = try_open(L.buf, L.len, NSQ_OPEN_NO_CHECKSUMS, &f, &d);
            if (st == NSQ_OK) {
                n_meta_nock_ok++;
                nsq_diag vd;
                memset(&vd, 0, sizeof vd);
                nsq_status vs = nsq_verify(f, &vd);
                if (vs) assert_true(vd.message[0] != 0);
                verify_ok += vs == NSQ_OK;
                exercise(f);
                nsq_close(f);
            }
            n_meta++;
        } else if (reg == R_BLOCK) {
            /* block bytes are checked when loaded: open succeeds, verify fails */
            if (st) fail_msg("%s: block byte %zu flipped, open failed: %s %s", name, o, d.rule, d.message);
            memset(&d, 0, sizeof d);
            assert_status(nsq_verify(f, &d), NSQ_E_CHECKSUM);
            assert_diag(&d, NSQ_E_CHECKSUM, "R-BLK-1");
            nsq_close(f);
            assert_ok(try_open(L.buf, L.len, NSQ_OPEN_NO_CHECKSUMS, &f, &d));
            assert_status(nsq_verify(f, &d), NSQ_E_CHECKSUM); /* verify always checks */
            exercise(f); /* decoding damaged payloads: any status, no crash */
            nsq_close(f);
            n_block++;
        } else {
            /* zero padding between ranges */
            if (st != NSQ_E_LAYOUT || strcmp(d.rule, "R-LAY-2") != 0)
                fail_msg("%s: padding byte %zu flipped: %s %s", name, o, nsq_status_name(st), d.rule);
            st = try_open(L.buf, L.len, NSQ_OPEN_NO_CHECKSUMS, &f, &d);
            assert_status(st, NSQ_E_LAYOUT);
            n_pad++;
        }
        L.buf[o] ^= 0xFF;
    }
    print_message("# %s: %u header/table/section flips (%u opened without checksums, %u of those verified), "
                  "%u block flips, %u padding flips; %lu values decoded\n",
                  name, n_meta, n_meta_nock_ok, verify_ok, n_block, n_pad, n_decoded);
    /* the unflipped file is fine */
    nsq_file *f;
    nsq_diag d;
    assert_ok(try_open(L.buf, L.len, 0, &f, &d));
    assert_ok(nsq_verify(f, &d));
    nsq_close(f);
    free(L.buf);
}

static void test_flip_router(void **state)
{
    (void)state;
    flip_all("router.nsq", TU_ASAN ? 97 : 29);
}
static void test_flip_tiered_zstd(void **state)
{
    (void)state;
    flip_all("tiered-zstd.nsq", TU_ASAN ? 61 : 19);
}

/* ---- (d) counts and sizes that lie ---- */
typedef struct {
    const char *what;
    const char *file;
    int section; /* kind, or 0 for an absolute offset, -1 for the section table */
    uint64_t at;  /* offset within it (table: entry*32 + field) */
    int width;
    uint64_t value;
    int add; /* add value instead of setting it */
    nsq_status st;
    const char *rule;
} lie;

/* Directory offsets in router.nsq: 5 blocks, 6 refinements, then tensors. */
#define DIR_BLK(b, f) (16 + 64 * (b) + (f))
#define DIR_REF(r, f) (16 + 64 * 5 + 48 * (r) + (f))
#define DIR_T0 (16 + 64 * 5 + 48 * 6)                /* first tensor record */
#define T0_FIXED (DIR_T0 + 2 + 25)                    /* "model.embed_tokens.weight" */
static const lie lies[] = {
    {"section_count huge", "router.nsq", 0, 48, 4, 0xFFFFFFFFu, 0, NSQ_E_LIMIT, "R-HDR-6"},
    {"section_count 65", "router.nsq", 0, 48, 4, 65, 0, NSQ_E_LIMIT, "R-HDR-6"},
    {"file_size huge", "router.nsq", 0, 32, 8, 1ull << 62, 0, NSQ_E_TRUNCATED, "R-HDR-5"},
    {"table offset wraps", "router.nsq", 0, 40, 8, UINT64_MAX - 7, 0, NSQ_E_RANGE, "R-HDR-8"},
    {"metadata size huge", "router.nsq", -1, 0 * 32 + 16, 8, UINT64_MAX, 0, NSQ_E_LIMIT, "R-SEC-3"},
    {"metadata size at cap, past the end", "router.nsq", -1, 0 * 32 + 16, 8, 64ull << 20, 0, NSQ_E_RANGE, "R-SEC-4"},
    {"directory size huge", "router.nsq", -1, 2 * 32 + 16, 8, 1ull << 40, 0, NSQ_E_LIMIT, "R-SEC-3"},
    {"importance size past the end", "router.nsq", -1, 3 * 32 + 16, 8, 1ull << 30, 0, NSQ_E_RANGE, "R-SEC-4"},
    {"tokenizer offset wraps", "router.nsq", -1, 1 * 32 + 8, 8, UINT64_MAX - 7, 0, NSQ_E_RANGE, "R-SEC-4"},
    {"metadata overlaps tokenizer", "router.nsq", -1, 0 * 32 + 16, 8, 8, 1, NSQ_E_RANGE, "R-SEC-5"},
    {"metadata count huge", "router.nsq", 1, 0, 4, 0xFFFFFFFFu, 0, NSQ_E_LIMIT, "R-META-1"},
    {"metadata count 65537", "router.nsq", 1, 0, 4, 65537, 0, NSQ_E_LIMIT, "R-META-1"},
    {"metadata count 65536 > size/5", "router.nsq", 1, 0, 4, 65536, 0, NSQ_E_LIMIT, "R-META-1"},
    {"metadata count + 1", "router.nsq", 1, 0, 4, 1, 1, NSQ_E_METADATA, "R-META-2"},
    {"key length huge", "router.nsq", 1, 4, 2, 0xFFFF, 0, NSQ_E_METADATA, "R-META-2"},
    {"string length huge", "router.nsq", 1, 4 + 2 + 20 + 1, 4, 0xFFFFFFFFu, 0, NSQ_E_LIMIT, "R-META-6"},
    {"string length 2^24", "router.nsq", 1, 4 + 2 + 20 + 1, 4, 1u << 24, 0, NSQ_E_METADATA, "R-META-5"},
    {"tokenizer count huge", "router.nsq", 2, 4, 4, 0xFFFFFFFFu, 0, NSQ_E_LIMIT, "R-TOK-2"},
    {"tokenizer file size huge", "router.nsq", 2, 8 + 2 + 14, 8, UINT64_MAX, 0, NSQ_E_TOKENIZER, "R-TOK-3"},
    {"tokenizer name length huge", "router.nsq", 2, 8, 2, 0xFFFF, 0, NSQ_E_TOKENIZER, "R-TOK-4"},
    {"block count huge", "router.nsq", 3, 0, 4, 0xFFFFFFFFu, 0, NSQ_E_LIMIT, "R-DIR-2"},
    {"block count 65536", "router.nsq", 3, 0, 4, 65536, 0, NSQ_E_LIMIT, "R-DIR-2"},
    {"refinement count huge", "router.nsq", 3, 4, 4, 0xFFFFFFFFu, 0, NSQ_E_LIMIT, "R-DIR-2"},
    {"tensor count huge", "router.nsq", 3, 8, 4, 0xFFFFFFFFu, 0, NSQ_E_LIMIT, "R-DIR-2"},
    {"tensor count 2^20", "router.nsq", 3, 8, 4, 1u << 20, 0, NSQ_E_LIMIT, "R-DIR-2"},
    {"tensor count + 1", "router.nsq", 3, 8, 4, 1, 1, NSQ_E_DIRECTORY, "R-DIR-11"},
    {"block stored_size wraps", "router.nsq", 3, DIR_BLK(0, 24), 8, UINT64_MAX, 0, NSQ_E_RANGE, "R-DIR-6"},
    {"block raw_size 2^40", "router.nsq", 3, DIR_BLK(1, 32), 8, 1ull << 40, 0, NSQ_E_LIMIT, "R-DIR-7"},
    {"block offset huge", "router.nsq", 3, DIR_BLK(2, 16), 8, 1ull << 44, 0, NSQ_E_RANGE, "R-DIR-6"},
    {"refinement raw_size 2^40", "router.nsq", 3, DIR_REF(0, 32), 8, 1ull << 40, 0, NSQ_E_LIMIT, "R-DIR-7"},
    {"refinement stored_size huge", "router.nsq", 3, DIR_REF(3, 24), 8, 1ull << 50, 0, NSQ_E_RANGE, "R-DIR-6"},
    {"tensor name length huge", "router.nsq", 3, DIR_T0, 2, 0xFFFF, 0, NSQ_E_DIRECTORY, "R-TEN-1"},
    {"tensor n_dims 255", "router.nsq", 3, T0_FIXED + 1, 1, 255, 0, NSQ_E_DIRECTORY, "R-TEN-4"},
    {"tensor n_refine 255", "router.nsq", 3, T0_FIXED + 10, 1, 255, 0, NSQ_E_DIRECTORY, "R-TEN-4"},
    {"tensor dim 2^32", "router.nsq", 3, T0_FIXED + 16, 8, 1ull << 32, 0, NSQ_E_LIMIT, "R-TEN-4"},
    {"tensor dim 2^32-1", "router.nsq", 3, T0_FIXED + 16, 8, 0xFFFFFFFFu, 0, NSQ_E_DIRECTORY, "R-TEN-6"},
    {"tensor size huge", "router.nsq", 3, T0_FIXED + 16 + 16 + 8, 8, UINT64_MAX, 0, NSQ_E_DIRECTORY, "R-TEN-6"},
    {"tensor offset huge", "router.nsq", 3, T0_FIXED + 16 + 16, 8, 1ull << 40, 0, NSQ_E_DIRECTORY, "R-TEN-10"},
    {"importance count huge", "router.nsq", 4, 4, 4, 0xFFFFFFFFu, 0, NSQ_E_LIMIT, "R-IMP-2"},
    {"provenance length huge", "router.nsq", 4, 16, 4, 0xFFFFFFFFu, 0, NSQ_E_LIMIT, "R-IMP-2"},
    {"provenance length 2^20", "router.nsq", 4, 16, 4, 1u << 20, 0, NSQ_E_IMPORTANCE, "R-IMP-2"},
    {"router hidden_dim huge", "router.nsq", 5, 8, 4, 0xFFFFFFFFu, 0, NSQ_E_ROUTER, "R-RTR-2"},
    {"router input_dim huge", "router.nsq", 5, 4, 4, 0xFFFFFFFFu, 0, NSQ_E_ROUTER, "R-RTR-2"},
    {"router block_count huge", "router.nsq", 5, 16, 4, 0xFFFFFFFFu, 0, NSQ_E_ROUTER, "R-RTR-2"},
    {"router hidden_dim 4096", "router.nsq", 5, 8, 4, 4096, 0, NSQ_E_ROUTER, "R-RTR-4"},
    {"array count huge", "gpt2-tok.nsq", 1, 0, 4, 0xFFFFFFFFu, 0, NSQ_E_LIMIT, "R-META-6"},
    {"array count 2^24", "gpt2-tok.nsq", 1, 0, 4, 1u << 24, 0, NSQ_E_METADATA, "R-META-5"},
};
#define N_LIES (sizeof lies / sizeof lies[0])

/* gpt2-tok.nsq: the offset of the element count of its array "test.array.u64"
 * (u64 elements: any bytes are valid values, so only the length can fail). */
static uint64_t u64_array_count(const uint8_t *meta)
{
    uint32_t n = tu_rd32(meta);
    const uint8_t *p = meta + 4;
    for (uint32_t i = 0; i < n; i++) {
        uint16_t kl = tu_rd16(p);
        uint8_t t = p[2 + kl];
        if (kl == 14 && !memcmp(p + 2, "test.array.u64", 14)) return (uint64_t)(p + 2 + kl + 1 - meta);
        p += 2 + kl + 1;
        uint32_t count = 1;
        if (t & 0x80) {
            count = tu_rd32(p);
            p += 4;
        }
        for (uint32_t e = 0; e < count; e++) switch (t & 0x7F) {
            case NSQ_META_STRING: p += 4 + tu_rd32(p); break;
            case NSQ_META_BOOL: p += 1; break;
            default: p += 8;
            }
    }
    fail_msg("no test.array.u64 in the metadata");
    return 0;
}

/* Applies lie k to a copy of its file; returns the copy. */
static uint8_t *apply_lie(size_t k, size_t *len)
{
    const lie *c = &lies[k];
    layout L;
    load_layout(c->file, &L);
    uint64_t pos;
    if (c->section == 0) pos = c->at;
    else if (c->section < 0) pos = L.toff + c->at;
    else pos = L.off[find_section(&L, (uint32_t)c->section)] + c->at;
    if (!strcmp(c->file, "gpt2-tok.nsq")) pos += u64_array_count(L.buf + L.off[find_section(&L, 1)]);
    uint64_t v = c->value;
    if (c->add) v += c->width == 8 ? tu_rd64(L.buf + pos) : c->width == 4 ? tu_rd32(L.buf + pos) : tu_rd16(L.buf + pos);
    for (int i = 0; i < c->width; i++) L.buf[pos + i] = (uint8_t)(v >> (8 * i));
    *len = L.len;
    return L.buf;
}

typedef struct {
    int32_t st[N_LIES][2]; /* memory, pread */
    char rule[N_LIES][2][16];
} lie_results;

static void run_lies(lie_results *res, const char *dir)
{
    for (size_t k = 0; k < N_LIES; k++) {
        size_t len;
        uint8_t *buf = apply_lie(k, &len);
        nsq_file *f;
        nsq_diag d;
        memset(&d, 0, sizeof d);
        nsq_status st = nsq_open_memory(buf, len, NSQ_OPEN_NO_CHECKSUMS, &f, &d);
        if (!st) nsq_close(f);
        res->st[k][0] = st;
        memcpy(res->rule[k][0], d.rule, 16);
        char *p = tu_join(dir, "lie.nsq");
        if (tu_write_file(p, buf, len)) abort();
        memset(&d, 0, sizeof d);
        st = nsq_open(p, NSQ_OPEN_NO_CHECKSUMS | NSQ_OPEN_PREAD, &f, &d);
        if (!st) nsq_close(f);
        res->st[k][1] = st;
        memcpy(res->rule[k][1], d.rule, 16);
        unlink(p);
        free(p);
        free(buf);
    }
}

static uint64_t vm_size_kb(void)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    uint64_t kb = 0;
    while (fp && fgets(line, sizeof line, fp))
        if (!strncmp(line, "VmSize:", 7)) kb = strtoull(line + 7, NULL, 10);
    if (fp) fclose(fp);
    return kb;
}

static void test_lying_counts(void **state)
{
    const char *dir = *state;
    lie_results *res = mmap(NULL, sizeof *res, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(res != MAP_FAILED);
    int limited = 0;
    if (!TU_ASAN) {
        /* In a child whose address space may grow by only 64 MiB: a reader
         * that allocated by a lying count would fail with NSQ_E_NOMEM (or die)
         * instead of reporting the rule. */
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            struct rlimit rl;
            rl.rlim_cur = rl.rlim_max = (vm_size_kb() << 10) + (64u << 20);
            if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(3);
            run_lies(res, dir);
            _exit(0);
        }
        int ws;
        assert_int_equal(waitpid(pid, &ws, 0), pid);
        if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) fail_msg("the address-space-limited child died (status 0x%x)", ws);
        limited = 1;
    } else {
        run_lies(res, dir);
    }
    for (size_t k = 0; k < N_LIES; k++)
        for (int m = 0; m < 2; m++)
            if (res->st[k][m] != (int32_t)lies[k].st || strcmp(res->rule[k][m], lies[k].rule) != 0)
                fail_msg("%s (%s, %s): got %s %s, expected %s %s", lies[k].what, lies[k].file, m ? "pread" : "memory",
                         nsq_status_name((nsq_status)res->st[k][m]), res->rule[k][m], nsq_status_name(lies[k].st),
                         lies[k].rule);
    print_message("# %zu lying counts and sizes x 2 open modes: clean errors%s\n", N_LIES,
                  limited ? " (address space limited to +64 MiB)" : "");
    munmap(res, sizeof *res);
}

/* ---- (e) the conformance set ---- */
static void test_conformance_manifest(void **state)
{
    (void)state;
    FILE *fp = fopen(FIXDIR "/MANIFEST", "r");
    if (!fp) fail_msg("cannot open " FIXDIR "/MANIFEST (tests run from the repository root)");
    char line[512];
    unsigned files = 0, valid = 0;
    while (fgets(line, sizeof line, fp)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        char name[256], want_st[64], want_rule[32];
        if (sscanf(line, "%255s %63s %31s", name, want_st, want_rule) != 3) fail_msg("bad MANIFEST line: %s", line);
        char path[512];
        snprintf(path, sizeof path, FIXDIR "/%s", name);
        size_t len;
        uint8_t *buf = tu_must_read(path, &len);
        for (int mode = 0; mode < 3; mode++) {
            nsq_file *f = NULL;
            nsq_diag d;
            memset(&d, 0, sizeof d);
            nsq_status st = mode == 0   ? nsq_open(path, 0, &f, &d)
                            : mode == 1 ? nsq_open(path, NSQ_OPEN_PREAD, &f, &d)
                                        : nsq_open_memory(buf, len, 0, &f, &d);
            if (!st) {
                st = nsq_verify(f, &d);
                if (!st) exercise(f);
                nsq_close(f);
            }
            const char *got_rule = st ? d.rule : "-";
            if (strcmp(nsq_status_name(st), want_st) != 0 || strcmp(got_rule, want_rule) != 0)
                fail_msg("%s (%s): got %s %s (%s), expected %s %s", name, mode == 0 ? "mmap" : mode == 1 ? "pread" : "memory",
                         nsq_status_name(st), got_rule, d.message, want_st, want_rule);
            if (st) assert_diag(&d, st, want_rule);
        }
        valid += strcmp(want_st, "NSQ_OK") == 0;
        files++;
        free(buf);
    }
    fclose(fp);
    print_message("# conformance: %u files (%u valid) x 3 open modes as listed in MANIFEST\n", files, valid);
    assert_true(files >= 90 && valid >= 10);
}

/* Odd arguments to the openers. */
static void test_open_arguments(void **state)
{
    const char *dir = *state;
    nsq_file *f = (nsq_file *)&f;
    nsq_diag d;
    memset(&d, 0, sizeof d);
    assert_status(nsq_open_memory(NULL, 0, 0, &f, &d), NSQ_E_TRUNCATED);
    assert_null(f);
    assert_status(nsq_open_memory(NULL, 10, 0, &f, &d), NSQ_E_ARG);
    assert_status(nsq_open_memory("x", 1, 0, NULL, &d), NSQ_E_ARG);
    assert_status(nsq_open(NULL, 0, &f, &d), NSQ_E_ARG);
    assert_status(nsq_open(FIXDIR "/does-not-exist.nsq", 0, &f, &d), NSQ_E_IO);
    assert_null(f);
    assert_status(nsq_open(FIXDIR, 0, &f, &d), NSQ_E_IO); /* a directory */
    assert_status(nsq_open(FIXDIR "/MANIFEST", 0, &f, &d), NSQ_E_MAGIC);
    assert_diag(&d, NSQ_E_MAGIC, "R-HDR-1");
    /* no diag at all is fine */
    assert_status(nsq_open(FIXDIR "/invalid/R-SEC-7.nsq", 0, &f, NULL), NSQ_E_CHECKSUM);
    assert_status(nsq_verify(NULL, &d), NSQ_E_ARG);
    /* an empty file */
    char *p = tu_join(dir, "empty.nsq");
    assert_int_equal(tu_write_file(p, "", 0), 0);
    memset(&d, 0, sizeof d);
    assert_status(nsq_open(p, 0, &f, &d), NSQ_E_TRUNCATED);
    assert_diag(&d, NSQ_E_TRUNCATED, "R-HDR-5");
    assert_status(nsq_open(p, NSQ_OPEN_PREAD, &f, &d), NSQ_E_TRUNCATED);
    /* 8 bytes that are not the magic */
    assert_int_equal(tu_write_file(p, "GGUF\0\0\0\0", 8), 0);
    assert_status(nsq_open(p, 0, &f, &d), NSQ_E_MAGIC);
    assert_diag(&d, NSQ_E_MAGIC, "R-HDR-1");
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_arguments, tu_setup_tmpdir, tu_teardown_tmpdir),
        cmocka_unit_test(test_conformance_manifest),
        cmocka_unit_test(test_truncate_router),
        cmocka_unit_test(test_truncate_tiered_zstd),
        cmocka_unit_test(test_flip_router),
        cmocka_unit_test(test_flip_tiered_zstd),
        cmocka_unit_test_setup_teardown(test_lying_counts, tu_setup_tmpdir, tu_teardown_tmpdir),
    };
    const char *only = getenv("NSQ_TEST_FILTER"); /* e.g. NSQ_TEST_FILTER='test_flip*' */
    if (only) cmocka_set_test_filter(only);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
