/* internal.h - private to libnsq: byte readers, checked arithmetic, the file handle. */
#ifndef NSQ_INTERNAL_H
#define NSQ_INTERNAL_H

#include "nsq.h"

#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#define NSQ__MAGIC "\x89NSQ\r\n\x1a\n"
#define NSQ__HEADER_SIZE 128u
#define NSQ__SECTION_ENTRY_SIZE 32u
#define NSQ__BLOCK_RECORD_SIZE 64u
#define NSQ__REFINE_RECORD_SIZE 48u
#define NSQ__BLOCK_ALIGN 4096u
#define NSQ__SECTION_ALIGN 8u
#define NSQ__TENSOR_ALIGN 64u

/* Limits (spec: Limits). */
#define NSQ__MAX_FILE_SIZE (1ull << 48)
#define NSQ__MIN_SECTIONS 3u
#define NSQ__MAX_SECTIONS 64u
#define NSQ__MAX_META_SECTION (64ull << 20)
#define NSQ__MAX_TOKENIZER_SECTION (256ull << 20)
#define NSQ__MAX_DIRECTORY_SECTION (256ull << 20)
#define NSQ__MAX_ROUTER_SECTION (256ull << 20)
#define NSQ__MAX_OTHER_SECTION (4ull << 30)
#define NSQ__MAX_META_COUNT 65536u
#define NSQ__MAX_KEY_LEN 128u
#define NSQ__MAX_STRING_LEN (16u << 20)
#define NSQ__MAX_ARRAY_LEN (16u << 20)
#define NSQ__MAX_TOK_FILES 16u
#define NSQ__MAX_TOK_NAME 255u
#define NSQ__MAX_BLOCKS 65536u
#define NSQ__MAX_TENSORS 1048576u
#define NSQ__MAX_NAME_LEN 256u
#define NSQ__MAX_DIM 0xFFFFFFFFull
#define NSQ__MAX_ELEMENTS (1ull << 40)
#define NSQ__MAX_RAW_SIZE (1ull << 36)
#define NSQ__MAX_ZSTD_RATIO 1024u
#define NSQ__MAX_PROVENANCE (1u << 20)
#define NSQ__MAX_ROUTER_HIDDEN 4096u
#define NSQ__MAX_MODEL_DIM (1ull << 31)
#define NSQ__MAX_LAYERS 65536u

enum { NSQ__SEC_METADATA = 1, NSQ__SEC_TOKENIZER = 2, NSQ__SEC_DIRECTORY = 3,
       NSQ__SEC_IMPORTANCE = 4, NSQ__SEC_ROUTER = 5 };

#define NSQ__KNOWN_REQUIRED ((uint64_t)(NSQ_REQ_ZSTD | NSQ_REQ_LATTICE | NSQ_REQ_LATTICE_LEVELS | NSQ_REQ_LATTICE_E8S))
#define NSQ__KNOWN_OPTIONAL ((uint64_t)(NSQ_OPT_REFINEMENTS | NSQ_OPT_IMPORTANCE | NSQ_OPT_ROUTER))

/* ---- little-endian loads/stores: never cast file bytes to structs ---- */
static inline uint16_t nsq__rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t nsq__rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t nsq__rd64(const uint8_t *p)
{
    return (uint64_t)nsq__rd32(p) | ((uint64_t)nsq__rd32(p + 4) << 32);
}
static inline void nsq__wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void nsq__wr32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void nsq__wr64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline float nsq__rdf32(const uint8_t *p)
{
    uint32_t u = nsq__rd32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline double nsq__rdf64(const uint8_t *p)
{
    uint64_t u = nsq__rd64(p);
    double d;
    memcpy(&d, &u, 8);
    return d;
}

/* ---- checked arithmetic: 1 on overflow ---- */
static inline int nsq__add(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_add_overflow(a, b, r); }
static inline int nsq__mul(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_mul_overflow(a, b, r); }
/* a must be a power of two; saturates to UINT64_MAX on overflow */
static inline uint64_t nsq__align_up(uint64_t v, uint64_t a)
{
    uint64_t r;
    if (nsq__add(v, a - 1, &r)) return UINT64_MAX;
    return r & ~(a - 1);
}

/* ---- bounds-checked cursor over a section ---- */
typedef struct {
    const uint8_t *p, *end;
    uint64_t base; /* file offset of the section start, for diagnostics */
    const uint8_t *start;
} nsq__cur;

static inline uint64_t nsq__cur_off(const nsq__cur *c) { return c->base + (uint64_t)(c->p - c->start); }
static inline uint64_t nsq__cur_left(const nsq__cur *c) { return (uint64_t)(c->end - c->p); }
/* Returns a pointer to n bytes and advances, or NULL if fewer remain. */
static inline const uint8_t *nsq__take(nsq__cur *c, uint64_t n)
{
    if (n > nsq__cur_left(c)) return NULL;
    const uint8_t *q = c->p;
    c->p += n;
    return q;
}

/* ---- diagnostics ---- */
nsq_status nsq__fail(nsq_diag *d, nsq_status s, uint64_t offset, const char *rule, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

/* ---- parsed file ---- */
typedef struct {
    uint32_t kind;
    uint64_t offset, size, checksum;
    const uint8_t *data; /* in the mapping or owned */
} nsq__section;

typedef struct {
    char *key;
    uint32_t type, count;
    const uint8_t *value; /* first byte of the value encoding */
    uint64_t value_off;   /* file offset, for diagnostics */
} nsq__meta;

typedef struct {
    char *name;
    const uint8_t *data;
    uint64_t size;
} nsq__tokfile;

typedef struct {
    char *name;
    uint32_t scheme, n_dims, block, group_size, n_refine;
    uint64_t dims[NSQ_MAX_DIMS];
    uint64_t n_elements, rows, cols;
    uint64_t offset, size;
    nsq_tensor_refinement refine[NSQ_MAX_REFINEMENTS];
    uint64_t record_off;
} nsq__tensor;

typedef struct {
    nsq_block b;
    uint32_t first_refine; /* index into the refinement array */
    uint64_t record_off;
} nsq__block;

typedef struct {
    nsq_refinement r;
    uint64_t record_off;
} nsq__refine;

typedef struct {
    uint32_t tensor;
    uint64_t n_group_stats, n_col_stats;
    const uint8_t *group_stats, *col_stats;
} nsq__impentry;

struct nsq_file {
    const uint8_t *map; /* whole file when mapped or in memory; NULL with PREAD */
    uint64_t map_len;
    int fd;             /* -1 when not owned */
    int mapped;         /* map came from mmap() */
    unsigned flags;
    uint8_t header[NSQ__HEADER_SIZE];
    uint16_t version_major, version_minor;
    uint64_t required, optional, file_size;
    uint32_t section_count;
    nsq__section *sections;
    void *owned_sections; /* PREAD: one heap buffer per section, freed at close */
    uint32_t meta_count;
    nsq__meta *meta;
    uint32_t tok_kind, tok_count;
    nsq__tokfile *tok;
    uint32_t block_count, refine_count, tensor_count;
    nsq__block *blocks;
    nsq__refine *refines;
    nsq__tensor *tensors;
    uint32_t *by_name; /* tensor indices sorted by name */
    int has_importance;
    uint32_t imp_method, imp_count;
    double imp_bpw;
    char *imp_provenance;
    nsq__impentry *imp;
    int has_router;
    nsq_router router;
};

/* Reading byte ranges of the file (mapping or pread). */
nsq_status nsq__read_at(const nsq_file *f, uint64_t off, uint64_t len, uint8_t *dst);

/* Section parsers, called by nsq_open in this order. */
nsq_status nsq__parse_metadata(nsq_file *f, const nsq__section *s, nsq_diag *d);
nsq_status nsq__check_required_meta(nsq_file *f, nsq_diag *d);
nsq_status nsq__parse_tokenizer(nsq_file *f, const nsq__section *s, nsq_diag *d);
nsq_status nsq__parse_directory(nsq_file *f, const nsq__section *s, nsq_diag *d);
nsq_status nsq__parse_importance(nsq_file *f, const nsq__section *s, nsq_diag *d);
nsq_status nsq__parse_router(nsq_file *f, const nsq__section *s, nsq_diag *d);
void nsq__free_metadata(nsq_file *f);
void nsq__free_directory(nsq_file *f);
void nsq__free_tokenizer(nsq_file *f);

/* Validation helpers shared by reader and writer. */
int nsq__valid_key(const char *k, size_t len);
/* Length of the valid UTF-8 sequence at s[0..n) (strict: no overlongs,
 * surrogates or code points above U+10FFFF) and its code point; 0 if none. */
size_t nsq__utf8_next(const uint8_t *s, size_t n, uint32_t *cp);
/* 1 if s[0..n) is valid UTF-8 (NUL allowed). */
/* Length of the longest valid UTF-8 prefix of s[0..n). */
size_t nsq__utf8_valid_prefix(const uint8_t *s, size_t n);
int nsq__utf8_ok(const uint8_t *s, size_t n);
/* 1 if s[0..len) is valid UTF-8 without NUL: the format's rule for strings. */
int nsq__valid_utf8(const uint8_t *s, size_t len);
int nsq__valid_tok_name(const uint8_t *s, size_t len);
int nsq__valid_tensor_name(const uint8_t *s, size_t len);
int nsq__all_zero(const uint8_t *p, uint64_t n);

static inline int nsq__is_pow2(uint64_t v) { return v && !(v & (v - 1)); }

char *nsq__strndup(const uint8_t *s, size_t n);

#endif
