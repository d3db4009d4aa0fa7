/*
 * nsq.h - the public API of libnsq: read, write, validate and decode .nsq files.
 *
 * The format is specified in spec/nsq-format.md. This header is the only public
 * one; every symbol is prefixed nsq_ / NSQ_.
 *
 * Conventions
 *  - Every call that can fail returns an nsq_status (NSQ_OK == 0).
 *  - Calls that parse file data take an optional nsq_diag* which, on failure,
 *    receives the rule that failed, the field and the file offset.
 *  - No global state. A nsq_file is immutable after nsq_open() returns, so any
 *    number of threads may read from it at once; nsq_loaded buffers belong to the
 *    caller.
 *  - Nothing in this library asserts or aborts on file data.
 */
#ifndef NSQ_H
#define NSQ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define NSQ_API __attribute__((visibility("default")))
#else
#define NSQ_API
#endif

#define NSQ_VERSION_MAJOR 1
#define NSQ_VERSION_MINOR 0
#define NSQ_VERSION_PATCH 0
#define NSQ_VERSION_STRING "1.0.0"

/* The format version this library reads and writes. */
#define NSQ_FORMAT_MAJOR 1
#define NSQ_FORMAT_MINOR 4

/*-************************************
 *  Status codes
 **************************************/
/* Values are pinned: never renumbered, never reused. */
#define NSQ_STATUS_MAP(XX)                                                      \
    XX(OK, 0, "success")                                                        \
    XX(E_IO, 1, "I/O error")                                                    \
    XX(E_NOMEM, 2, "out of memory")                                             \
    XX(E_ARG, 3, "invalid argument")                                            \
    XX(E_MAGIC, 4, "not an nsq file (bad magic)")                               \
    XX(E_VERSION, 5, "unsupported format major version")                        \
    XX(E_UNSUPPORTED, 6, "file requires an unsupported feature")                \
    XX(E_TRUNCATED, 7, "file is truncated or its size field disagrees")         \
    XX(E_CHECKSUM, 8, "checksum mismatch")                                      \
    XX(E_LIMIT, 9, "a count or size exceeds the format's limits")               \
    XX(E_RANGE, 10, "a byte range is out of bounds, misaligned or overlaps")    \
    XX(E_LAYOUT, 11, "ranges do not cover the file exactly")                    \
    XX(E_FORMAT, 12, "malformed structure")                                     \
    XX(E_METADATA, 13, "malformed or missing metadata")                         \
    XX(E_TOKENIZER, 14, "malformed tokenizer section")                          \
    XX(E_DIRECTORY, 15, "malformed tensor directory")                           \
    XX(E_BLOCK, 16, "malformed block")                                          \
    XX(E_TENSOR, 17, "malformed tensor data")                                   \
    XX(E_COMPRESSION, 18, "compressed data is corrupt")                         \
    XX(E_IMPORTANCE, 19, "malformed importance section")                        \
    XX(E_ROUTER, 20, "malformed router section")                                \
    XX(E_FEATURE, 21, "feature flags disagree with the file's content")         \
    XX(E_NOT_FOUND, 22, "no such key, tensor or block")                         \
    XX(E_TYPE, 23, "value has a different type")                                \
    XX(E_STATE, 24, "call made in the wrong state")                             \
    XX(E_RESERVED, 25, "a reserved field is not zero")

typedef enum {
#define NSQ__ENUM(name, val, msg) NSQ_##name = val,
    NSQ_STATUS_MAP(NSQ__ENUM)
#undef NSQ__ENUM
} nsq_status;

/*! nsq_strerror() : a short message for a status; never NULL. */
NSQ_API const char *nsq_strerror(nsq_status s);
/*! nsq_status_name() : the symbolic name, e.g. "NSQ_E_CHECKSUM"; never NULL. */
NSQ_API const char *nsq_status_name(nsq_status s);

/* Where and why parsing failed. Owned by the caller; may be NULL everywhere. */
typedef struct {
    nsq_status status;
    uint64_t offset;   /* absolute file offset of the offending field, or UINT64_MAX */
    char rule[16];     /* spec rule id, e.g. "R-HDR-1" */
    char message[256]; /* names the field and the value found */
} nsq_diag;

/*! nsq_version_string() : the library version, e.g. "0.1.0". */
NSQ_API const char *nsq_version_string(void);

/*-************************************
 *  Constants of the format
 **************************************/
enum { NSQ_REQ_ZSTD = 1u << 0, NSQ_REQ_LATTICE = 1u << 1, NSQ_REQ_LATTICE_LEVELS = 1u << 2, NSQ_REQ_LATTICE_E8S = 1u << 3 };
enum { NSQ_OPT_REFINEMENTS = 1u << 0, NSQ_OPT_IMPORTANCE = 1u << 1, NSQ_OPT_ROUTER = 1u << 2 };

typedef enum { NSQ_META_U64 = 1, NSQ_META_I64 = 2, NSQ_META_F64 = 3, NSQ_META_BOOL = 4,
               NSQ_META_STRING = 5, NSQ_META_ARRAY = 0x80 } nsq_meta_type;

typedef enum { NSQ_TOK_HF_JSON = 1, NSQ_TOK_GPT2_BPE = 2, NSQ_TOK_SENTENCEPIECE = 3 } nsq_tokenizer_kind;

typedef enum { NSQ_BLOCK_EMBEDDINGS = 1, NSQ_BLOCK_LAYERS = 2, NSQ_BLOCK_OUTPUT = 3 } nsq_block_kind;

typedef enum { NSQ_COMP_NONE = 0, NSQ_COMP_ZSTD = 1 } nsq_compression;

typedef enum { NSQ_SCHEME_F32 = 1, NSQ_SCHEME_F16 = 2, NSQ_SCHEME_BF16 = 3,
               NSQ_SCHEME_TIERED = 16, NSQ_SCHEME_LATTICE = 17 } nsq_scheme;

/* Stage kinds of the LATTICE scheme. */
typedef enum { NSQ_LAT_E8 = 1, NSQ_LAT_SIGN = 2, NSQ_LAT_INT8 = 3, NSQ_LAT_E8S = 4 } nsq_lattice_kind;
#define NSQ_LATTICE_MAX_STAGES 4

/* Tier codes of the TIERED scheme's tier map. */
typedef enum { NSQ_TIER_F16 = 0, NSQ_TIER_Q8 = 1, NSQ_TIER_Q4 = 2, NSQ_TIER_Q2 = 3 } nsq_tier;

typedef enum { NSQ_IMP_MAGNITUDE = 1, NSQ_IMP_CALIBRATED = 2 } nsq_importance_method;

typedef enum { NSQ_ROUTE_SKIP = 1, NSQ_ROUTE_BASE = 2, NSQ_ROUTE_FULL = 4 } nsq_route_choice;
typedef enum { NSQ_ACT_IDENTITY = 0, NSQ_ACT_RELU = 1, NSQ_ACT_TANH = 2 } nsq_router_act;

#define NSQ_MAX_DIMS 4
#define NSQ_MAX_REFINEMENTS 16

/*-************************************
 *  Reading
 **************************************/
typedef struct nsq_file nsq_file;

enum {
    NSQ_OPEN_PREAD = 1u << 0,        /* no mmap: positioned reads, block by block */
    NSQ_OPEN_NO_CHECKSUMS = 1u << 1, /* skip header/section checksums (salvage, fuzzing) */
};

/*! nsq_open() : opens and fully validates the header, section table, metadata,
 *  tokenizer, directory, importance and router sections. Block contents are
 *  checked when loaded (nsq_block_load) or by nsq_verify().
 *  @return NSQ_OK and *out, or an error with *out == NULL. */
NSQ_API nsq_status nsq_open(const char *path, unsigned flags, nsq_file **out, nsq_diag *diag);

/*! nsq_open_memory() : as nsq_open() over a caller-owned buffer that must
 *  outlive the handle. NSQ_OPEN_PREAD is ignored. */
NSQ_API nsq_status nsq_open_memory(const void *buf, size_t len, unsigned flags, nsq_file **out,
                                   nsq_diag *diag);

NSQ_API void nsq_close(nsq_file *f);

typedef struct {
    uint16_t version_major, version_minor;
    uint64_t required_features, optional_features;
    uint64_t file_size;
    uint32_t section_count;
    uint32_t meta_count, block_count, refinement_count, tensor_count;
    int has_importance, has_router;
} nsq_info;

NSQ_API void nsq_get_info(const nsq_file *f, nsq_info *out);

/* A section as listed in the section table (unknown kinds included). */
typedef struct {
    uint32_t kind;
    uint64_t offset, size, checksum;
} nsq_section;
NSQ_API nsq_status nsq_section_at(const nsq_file *f, uint32_t i, nsq_section *out);

/* ---- Metadata ---- */
typedef struct {
    const char *key; /* NUL-terminated copy */
    uint32_t type;   /* nsq_meta_type, possibly | NSQ_META_ARRAY */
    uint32_t count;  /* 1 for scalars, the element count for arrays */
} nsq_meta;

NSQ_API nsq_status nsq_meta_at(const nsq_file *f, uint32_t i, nsq_meta *out);
/*! nsq_meta_find() : index of key, or NSQ_E_NOT_FOUND. */
NSQ_API nsq_status nsq_meta_find(const nsq_file *f, const char *key, uint32_t *index);
/* Typed getters: NSQ_E_NOT_FOUND if absent, NSQ_E_TYPE if stored with another type.
 * For arrays, elem selects the element (NSQ_E_ARG when out of range); scalars use 0. */
NSQ_API nsq_status nsq_meta_u64(const nsq_file *f, const char *key, uint32_t elem, uint64_t *v);
NSQ_API nsq_status nsq_meta_i64(const nsq_file *f, const char *key, uint32_t elem, int64_t *v);
NSQ_API nsq_status nsq_meta_f64(const nsq_file *f, const char *key, uint32_t elem, double *v);
NSQ_API nsq_status nsq_meta_bool(const nsq_file *f, const char *key, uint32_t elem, int *v);
/* Strings are not NUL-terminated in the file: use len. */
NSQ_API nsq_status nsq_meta_str(const nsq_file *f, const char *key, uint32_t elem, const char **s,
                                size_t *len);
/* The same, by entry index (for listing every entry). */
NSQ_API nsq_status nsq_meta_value_u64(const nsq_file *f, uint32_t i, uint32_t elem, uint64_t *v);
NSQ_API nsq_status nsq_meta_value_i64(const nsq_file *f, uint32_t i, uint32_t elem, int64_t *v);
NSQ_API nsq_status nsq_meta_value_f64(const nsq_file *f, uint32_t i, uint32_t elem, double *v);
NSQ_API nsq_status nsq_meta_value_bool(const nsq_file *f, uint32_t i, uint32_t elem, int *v);
NSQ_API nsq_status nsq_meta_value_str(const nsq_file *f, uint32_t i, uint32_t elem, const char **s,
                                      size_t *len);

/* ---- Tokenizer ---- */
typedef struct {
    const char *name;      /* NUL-terminated copy */
    const uint8_t *data;   /* points into the mapping or an owned copy */
    uint64_t size;
} nsq_tokenizer_file;

NSQ_API uint32_t nsq_tokenizer_get_kind(const nsq_file *f);
NSQ_API uint32_t nsq_tokenizer_file_count(const nsq_file *f);
NSQ_API nsq_status nsq_tokenizer_file_at(const nsq_file *f, uint32_t i, nsq_tokenizer_file *out);
NSQ_API nsq_status nsq_tokenizer_file_find(const nsq_file *f, const char *name,
                                           nsq_tokenizer_file *out);

/* ---- Tokenizer: encoding and decoding text ----
 * Built from the embedded tokenizer section (or from files, for tools that
 * read a tokenizer without a model). Immutable once built: any number of
 * threads may encode and decode with one nsq_tokenizer.
 *
 * Ids match Hugging Face `tokenizers` for BPE models: tokenizer.json (byte-level
 * and SentencePiece-style BPE with byte fallback; normalizers, pre-tokenizers,
 * added tokens, decoders and post-processors as the file describes them) and
 * vocab.json + merges.txt (byte-level BPE with its usual regex). Other model
 * types (WordPiece, Unigram, WordLevel), SentencePiece's tokenizer.model alone,
 * and unknown pipeline components are NSQ_E_UNSUPPORTED, naming what is
 * missing; malformed files are NSQ_E_TOKENIZER.
 *
 * Limits (spec/nsq-format.md section 6.1; real tokenizers stay far below):
 * loading refuses with NSQ_E_LIMIT a tokenizer file (tokenizer.json,
 * vocab.json, merges.txt, tokenizer_config.json) over 64 MiB, a token id of
 * 2^22 or more, more than 2^22 vocabulary entries or merges, more than 2^20
 * added tokens or 16 MiB of added-token contents, a post-processor that adds
 * more than 256 ids before or after a text, and a regex pattern over 16 KiB.
 * Encoding and decoding do work and take memory bounded by the text's
 * length: normalizers and decoders may make at most 16 x their input + 1 KiB,
 * and a regex may backtrack at most 100000 steps from one start position
 * (PCRE2 match and depth limits, heap limit 32 MiB); beyond, NSQ_E_LIMIT.
 * Out of memory is NSQ_E_NOMEM. */
typedef struct nsq_tokenizer nsq_tokenizer;

/*! nsq_tokenizer_load() : from f's tokenizer section (NSQ_E_NOT_FOUND when it
 *  has none). The tokenizer copies what it needs: f may be closed after.
 *  Fails (diag saying why) as nsq_tokenizer_from_files() does. */
NSQ_API nsq_status nsq_tokenizer_load(const nsq_file *f, nsq_tokenizer **out, nsq_diag *diag);
/*! nsq_tokenizer_from_files() : kind and named files as the tokenizer section
 *  would hold them (e.g. "tokenizer.json"; "vocab.json" + "merges.txt"; with
 *  "tokenizer_config.json" optionally). tokenizer.json, when given, describes
 *  the whole pipeline whatever the kind. tokenizer_config.json adds BOS/EOS
 *  (add_bos_token, add_eos_token) when tokenizer.json has no post-processor,
 *  and, with vocab.json + merges.txt, its added_tokens_decoder entries.
 *  Every regex is compiled here: an empty or non-JSON file, an invalid regex
 *  and a post-processor id that is no token are NSQ_E_TOKENIZER; a file
 *  beyond the limits above is NSQ_E_LIMIT. */
NSQ_API nsq_status nsq_tokenizer_from_files(nsq_tokenizer_kind kind, uint32_t n_files, const char *const *names,
                                            const uint8_t *const *data, const uint64_t *sizes, nsq_tokenizer **out,
                                            nsq_diag *diag);
NSQ_API void nsq_tokenizer_free(nsq_tokenizer *t);
/*! nsq_tokenizer_vocab_size() : 1 + the largest id of the tokenizer's
 *  tokens (model vocabulary and added tokens), at most 2^22; 0 for NULL.
 *  Every id nsq_tokenize() can return is below it, add_special's included:
 *  post-processor ids and tokenizer_config.json's BOS/EOS must be tokens, or
 *  loading fails. So a model whose embedding has at least this many rows can
 *  look up any id it is given. Ids below it may still name no token (gaps in
 *  the vocabulary); nsq_token_bytes() refuses those. */
NSQ_API uint32_t nsq_tokenizer_vocab_size(const nsq_tokenizer *t);
/*! nsq_token_is_special() : 1 if id is a special added token (BOS, EOS, ...;
 *  for vocab.json + merges.txt also "<|endoftext|>"), else 0. */
NSQ_API int nsq_token_is_special(const nsq_tokenizer *t, int32_t id);

/*! nsq_tokenize() : encodes len bytes of UTF-8 text (invalid sequences are
 *  read as U+FFFD). Added tokens, special ones included, are recognized in
 *  the text. With add_special, adds what the tokenizer's post-processor adds
 *  (e.g. BOS). *ids is malloc'ed, also when empty (free it with free());
 *  *n_ids its length. Every id is below nsq_tokenizer_vocab_size().
 *  NSQ_E_NOMEM when out of memory; NSQ_E_LIMIT when a normalizer would grow
 *  the text, or a regex backtrack, beyond the limits above. */
NSQ_API nsq_status nsq_tokenize(const nsq_tokenizer *t, const char *text, size_t len, int add_special, int32_t **ids,
                                size_t *n_ids);
/*! nsq_tokenize_diag() : nsq_tokenize() with diag (may be NULL) saying why it
 *  failed, e.g. "out of memory tokenizing 12 bytes of text" or "the
 *  pre-tokenizer regex exceeded its match limit on this text (...)". */
NSQ_API nsq_status nsq_tokenize_diag(const nsq_tokenizer *t, const char *text, size_t len, int add_special,
                                     int32_t **ids, size_t *n_ids, nsq_diag *diag);
/*! nsq_detokenize() : decodes ids to UTF-8 text as the reference decoder
 *  does (byte-level and byte-fallback bytes reassembled, invalid UTF-8 shown
 *  as U+FFFD). Ids outside the vocabulary are skipped, as are special tokens
 *  with skip_special. *text is malloc'ed and NUL-terminated; *len excludes
 *  the NUL. NSQ_E_NOMEM when out of memory; NSQ_E_LIMIT when a decoder would
 *  make more than 16 x (the tokens' bytes + their count) + 1 KiB. */
NSQ_API nsq_status nsq_detokenize(const nsq_tokenizer *t, const int32_t *ids, size_t n_ids, int skip_special, char **text,
                                  size_t *len);
/*! nsq_token_bytes() : the raw bytes token id stands for when generated after
 *  prev_id (-1 at the start), for streaming output: byte-level and byte
 *  fallback tokens give their bytes, which may be an incomplete UTF-8 sequence
 *  that later tokens complete. For SentencePiece-style tokenizers U+2581 is
 *  a space, and the leading space of the token that starts the text (prev_id
 *  < 0, or prev_id is the BOS that add_special puts first) is dropped as the
 *  Strip decoder does. Special tokens give their text (a stream printer skips
 *  them with nsq_token_is_special). Concatenated, the bytes of a sequence
 *  equal nsq_detokenize's text when that is valid UTF-8 (with skip_special,
 *  when the printer skips special tokens).
 *  Writes at most cap bytes to buf and the full length to *len; NSQ_E_ARG for
 *  an id that is no token; NSQ_E_NOMEM and NSQ_E_LIMIT as nsq_detokenize(). */
NSQ_API nsq_status nsq_token_bytes(const nsq_tokenizer *t, int32_t prev_id, int32_t id, char *buf, size_t cap, size_t *len);

/* ---- Blocks and refinements ---- */
typedef struct {
    uint32_t kind, first_layer, n_layers, compression;
    uint64_t offset, stored_size, raw_size, checksum;
    uint32_t refinement_count; /* levels 1..refinement_count */
    uint32_t first_tensor, tensor_count; /* tensors of this block in directory order */
} nsq_block;

typedef struct {
    uint32_t block, level, compression;
    uint64_t offset, stored_size, raw_size, checksum;
} nsq_refinement;

NSQ_API nsq_status nsq_block_at(const nsq_file *f, uint32_t i, nsq_block *out);
NSQ_API nsq_status nsq_refinement_at(const nsq_file *f, uint32_t block, uint32_t level,
                                     nsq_refinement *out);

/* ---- Tensors ---- */
/* One refinement level of a tensor. TIERED: bits of each code. LATTICE:
 * bits is the number of stages the level adds (0..3) and kind[] their
 * kinds (nsq_lattice_kind, 0 past them). */
typedef struct {
    uint8_t bits, kind[3];
    uint64_t offset, size; /* within the refinement's raw bytes */
} nsq_tensor_refinement;

typedef struct {
    const char *name; /* NUL-terminated copy */
    uint32_t scheme, n_dims, block, group_size, n_refine;
    uint64_t dims[NSQ_MAX_DIMS];
    uint64_t n_elements;
    uint64_t offset, size; /* within the block's raw bytes */
    nsq_tensor_refinement refine[NSQ_MAX_REFINEMENTS];
} nsq_tensor;

NSQ_API nsq_status nsq_tensor_at(const nsq_file *f, uint32_t i, nsq_tensor *out);
NSQ_API nsq_status nsq_tensor_find(const nsq_file *f, const char *name, uint32_t *index);

/* ---- Loading block data ----
 * A loaded byte range: the raw (decompressed) bytes of a block or refinement,
 * checksum verified. With mmap and no compression it is a zero-copy view. */
typedef struct {
    const uint8_t *data;
    uint64_t size;
    void *owned_; /* private: heap buffer to free, or NULL */
} nsq_loaded;

NSQ_API nsq_status nsq_block_load(const nsq_file *f, uint32_t block, nsq_loaded *out, nsq_diag *diag);
NSQ_API nsq_status nsq_refinement_load(const nsq_file *f, uint32_t block, uint32_t level,
                                       nsq_loaded *out, nsq_diag *diag);
NSQ_API void nsq_loaded_free(nsq_loaded *l);

/* A validated view of one tensor's bytes inside a loaded block: what every
 * scheme has. What a scheme finds in the payload (TIERED: its tier counts and
 * streams) is kept in state_, private to the library, which a scheme's own
 * accessor reads (nsq_tiered_view). A copy of a view is a view. */
typedef struct {
    uint32_t scheme, group_size; /* group_size: 0 unless the scheme is grouped */
    uint64_t rows, cols;         /* cols = innermost dim; rows = product of the others */
    const uint8_t *data;         /* the tensor's bytes */
    uint64_t size;
    uint64_t state_[16]; /* private */
} nsq_view;

/* What the library knows of a storage scheme (nsq_scheme_get). */
typedef struct {
    const char *name;   /* "f32", "f16", "bf16", "tiered", "lattice" */
    uint32_t elem_bits; /* bits of every element of a dense scheme (32, 16); 0 for a grouped one */
    int grouped;        /* 1 when group_size, importance entries and refinement levels
                         * apply (TIERED, LATTICE) */
} nsq_scheme_info;

/*! nsq_scheme_get() : the scheme's description; NSQ_E_NOT_FOUND for a value
 *  the format does not define. */
NSQ_API nsq_status nsq_scheme_get(uint32_t scheme, nsq_scheme_info *out);

/* The TIERED layout of a view: its groups, their tiers and the streams. */
typedef struct {
    uint64_t n_groups, n_tier[4]; /* groups in all, and of each nsq_tier */
    const uint8_t *tier_map;      /* 2 bits a group; NULL, as the streams, when n_groups is 0 */
    const uint8_t *codes[4];      /* [NSQ_TIER_F16] is the f16 stream */
    const uint8_t *params[4];     /* (d, m) f16 pairs; [NSQ_TIER_F16] is NULL */
} nsq_tiered;

/*! nsq_tiered_view() : the layout of a TIERED view; NSQ_E_ARG for another scheme. */
NSQ_API nsq_status nsq_tiered_view(const nsq_view *v, nsq_tiered *out);
/*! nsq_tier_bits() : bits a weight of the tier (an nsq_tier, 0..3) takes: 16,
 *  8, 4, 2; a quantized group adds its f16 (d, m). Inline, so that kernels
 *  looping over the tiers fold it to constants. */
static inline uint32_t nsq_tier_bits(uint32_t tier) { return tier == NSQ_TIER_F16 ? 16 : 16u >> tier; }
/*! nsq_tier_name() : "f16", "q8", "q4", "q2"; NULL when tier is no tier. */
NSQ_API const char *nsq_tier_name(uint32_t tier);

/* One refinement level of a tensor. TIERED: its codes of `bits` bits.
 * LATTICE: bits stages (0..3) of kinds kind[], each its scales then its
 * codes, padded as in the payload, from codes on. */
typedef struct {
    uint32_t bits, kind[3];
    const uint8_t *codes;
    uint64_t size;
} nsq_refine_view;

/* The LATTICE layout of a view (spec: LATTICE payload). The matrix is
 * stored in a rotated basis, W' = W R^T, R = blockdiag(c H_B D) over the
 * n_blocks column blocks of B = block columns; each weight of W' is the sum
 * over the stages of scale * code value. */
typedef struct {
    uint32_t n_stages, block, n_blocks;             /* block = B, n_blocks = cols / B */
    uint32_t kind[NSQ_LATTICE_MAX_STAGES];          /* nsq_lattice_kind; 0 past n_stages */
    const uint8_t *signs;                           /* cols/8 bytes: bit j%8 of byte j/8 negates column j */
    const uint8_t *scales[NSQ_LATTICE_MAX_STAGES];  /* f16 LE [rows][n_blocks] */
    const uint8_t *codes[NSQ_LATTICE_MAX_STAGES];   /* row r at r * row_bytes[s] */
    uint64_t row_bytes[NSQ_LATTICE_MAX_STAGES];     /* cols * nsq_lattice_kind_bits(kind[s]) / 8 */
} nsq_lattice;

/*! nsq_lattice_view() : the layout of a LATTICE view; NSQ_E_ARG for another scheme. */
NSQ_API nsq_status nsq_lattice_view(const nsq_view *v, nsq_lattice *out);
/*! nsq_lattice_view_refined() : the layout of a LATTICE view with its
 *  refinement levels 1..n_ref: their stages follow the base's, in level
 *  order. NSQ_E_TENSOR (R-LAT-6) when that makes more than 4 stages,
 *  NSQ_E_ARG for another scheme. */
NSQ_API nsq_status nsq_lattice_view_refined(const nsq_view *v, const nsq_refine_view *refs, uint32_t n_ref,
                                            nsq_lattice *out);
/*! nsq_lattice_kind_bits() : bits a weight of a stage of this kind takes: 2
 *  (E8), 1 (SIGN, E8S), 8 (INT8); 0 for no kind. Each stage adds an f16
 *  scale per row and block. */
static inline uint32_t nsq_lattice_kind_bits(uint32_t kind)
{
    return kind == NSQ_LAT_E8 ? 2 : kind == NSQ_LAT_SIGN || kind == NSQ_LAT_E8S ? 1 : kind == NSQ_LAT_INT8 ? 8 : 0;
}
/*! nsq_lattice_e8_table() : the E8 codebook's 256 magnitude vectors u (odd
 *  values 1..7, twice the coordinates' magnitudes), in code order. */
NSQ_API const uint8_t (*nsq_lattice_e8_table(void))[8];
/*! nsq_lattice_e8_value() : 4 times the 8 values of an E8 code: odd integers
 *  in [-15, 15]. */
NSQ_API void nsq_lattice_e8_value(uint16_t code, int8_t v4[8]);
/*! nsq_lattice_e8s_value() : 4 times the 8 values of an E8S code: integers
 *  in {-8, -4, -2, 0, 2, 4, 8}. */
NSQ_API void nsq_lattice_e8s_value(uint8_t code, int8_t v4[8]);
/*! nsq_lattice_payload_size() : exact byte size of a LATTICE payload with
 *  these stage kinds (n_stages of them); 0 if the arguments are no valid
 *  shape (block a power of two in 8..16384 dividing cols, rows and cols not
 *  0, 1..4 stages of kinds 1..4) or the size overflows. */
NSQ_API uint64_t nsq_lattice_payload_size(uint64_t rows, uint64_t cols, uint32_t block, uint32_t n_stages,
                                          const uint32_t *kinds);
/*! nsq_lattice_hadamard() : u <- H_n u in place (Sylvester order,
 *  unnormalized), by the spec's butterfly, so bit-exact everywhere; n a
 *  power of two (1 is the identity). */
NSQ_API void nsq_lattice_hadamard(float *u, uint32_t n);
/*! nsq_lattice_rows_rotated() : decodes rows [row0, row0+nrows) of W' (the
 *  rotated basis), nrows*cols floats; nsq_dequantize_rows gives W itself.
 *  NSQ_E_ARG for another scheme or rows outside the matrix. */
NSQ_API nsq_status nsq_lattice_rows_rotated(const nsq_view *v, uint64_t row0, uint64_t nrows, float *out);
/*! nsq_lattice_rows_rotated_refined() : the same with refinement levels
 *  1..n_ref applied (nsq_lattice_view_refined's errors too). */
NSQ_API nsq_status nsq_lattice_rows_rotated_refined(const nsq_view *v, const nsq_refine_view *refs, uint32_t n_ref,
                                                    uint64_t row0, uint64_t nrows, float *out);


/*! nsq_view_init() : validates an encoded payload of `scheme` holding a
 *  rows x cols matrix (group_size 0 unless TIERED or LATTICE) and fills *out. This is what
 *  nsq_tensor_view() runs on a tensor inside a loaded block. */
NSQ_API nsq_status nsq_view_init(uint32_t scheme, uint64_t rows, uint64_t cols, uint32_t group_size,
                                 const uint8_t *data, uint64_t size, nsq_view *out, nsq_diag *diag);
/*! nsq_refine_view_init() : validates one refinement level's codes for a
 *  TIERED base. */
NSQ_API nsq_status nsq_refine_view_init(const nsq_view *base, uint32_t bits, const uint8_t *codes,
                                        uint64_t size, nsq_refine_view *out, nsq_diag *diag);
/*! nsq_lattice_refine_view_init() : validates one refinement level of a
 *  LATTICE base: n_stages (0..3) stages of these kinds in data[0..size). */
NSQ_API nsq_status nsq_lattice_refine_view_init(const nsq_view *base, uint32_t n_stages, const uint32_t *kinds,
                                                const uint8_t *data, uint64_t size, nsq_refine_view *out,
                                                nsq_diag *diag);

/*! nsq_tensor_view() : locates tensor i in its loaded block and validates its
 *  layout (tier map, exact size, finite scales, zero padding). */
NSQ_API nsq_status nsq_tensor_view(const nsq_file *f, uint32_t i, const nsq_loaded *block,
                                   nsq_view *out, nsq_diag *diag);
/*! nsq_refine_view() : the codes of tensor i at refinement level (1-based). */
NSQ_API nsq_status nsq_tensor_refine_view(const nsq_file *f, uint32_t i, uint32_t level,
                                          const nsq_view *base, const nsq_loaded *refinement,
                                          nsq_refine_view *out, nsq_diag *diag);

/*! nsq_dequantize_rows() : decodes rows [row0, row0+nrows) to f32, applying
 *  refinement levels 1..n_ref in order (refs may be NULL when n_ref == 0).
 *  out holds nrows*cols floats. A LATTICE view decodes to the original basis
 *  (W, not W'). */
NSQ_API nsq_status nsq_dequantize_rows(const nsq_view *v, const nsq_refine_view *refs,
                                       uint32_t n_ref, uint64_t row0, uint64_t nrows, float *out);

/*! nsq_dequantize_group() : decodes TIERED group g alone (group_size floats),
 *  for runtimes that keep the payload packed. rank[t] is the number of tier-t
 *  groups before g, which a runtime counts once from the tier map (e.g. per
 *  row); NSQ_E_ARG if the ranks cannot be those of g. */
NSQ_API nsq_status nsq_dequantize_group(const nsq_view *v, const nsq_refine_view *refs, uint32_t n_ref,
                                        uint64_t g, const uint64_t rank[4], float *out);

/*! nsq_verify() : every block and refinement checksum, decompression and tensor
 *  layout. Stops at the first problem. */
NSQ_API nsq_status nsq_verify(const nsq_file *f, nsq_diag *diag);

/* ---- Importance ---- */
typedef struct {
    uint32_t method, entry_count;
    double target_bpw;
    const char *provenance; /* NUL-terminated copy */
} nsq_importance_info;

typedef struct {
    uint32_t tensor;
    uint64_t n_group_stats, n_col_stats;
    const uint8_t *group_stats; /* f32 LE, possibly unaligned: use nsq_f32_at */
    const uint8_t *col_stats;
} nsq_importance_entry;

NSQ_API nsq_status nsq_importance_get(const nsq_file *f, nsq_importance_info *out);
NSQ_API nsq_status nsq_importance_entry_at(const nsq_file *f, uint32_t i, nsq_importance_entry *out);

/* ---- Router ---- */
typedef struct {
    uint32_t feature, input_dim, hidden_dim, activation, block_count;
    float temperature;
    const uint8_t *choice_mask;              /* [block_count] */
    const uint8_t *in_mean, *in_scale;       /* f32 LE arrays [input_dim] */
    const uint8_t *w1, *b1, *w2, *b2;        /* f32 LE; w1/b1 NULL when hidden_dim == 0 */
} nsq_router;

NSQ_API nsq_status nsq_router_get(const nsq_file *f, nsq_router *out);
/*! nsq_router_eval() : predicted damage y[3*block_count] for feature vector x. */
NSQ_API nsq_status nsq_router_eval(const nsq_router *r, const float *x, float *y);

/*-************************************
 *  Numbers
 **************************************/
NSQ_API float nsq_f16_to_f32(uint16_t h);
NSQ_API uint16_t nsq_f32_to_f16(float f); /* round to nearest even */
NSQ_API float nsq_bf16_to_f32(uint16_t h);
NSQ_API float nsq_f32_at(const uint8_t *p, uint64_t i); /* i-th LE f32 at p */
NSQ_API uint64_t nsq_xxh3(const void *data, size_t len);

/*-************************************
 *  Reference quantization (scalar)
 **************************************/
/*! nsq_tiered_size() : exact byte size of a TIERED tensor payload with the given
 *  per-tier group counts (n_tier[0..3]). */
NSQ_API uint64_t nsq_tiered_size(uint64_t n_groups, uint32_t group_size, const uint64_t n_tier[4]);
NSQ_API uint64_t nsq_refine_size(uint64_t n_quant_groups, uint32_t group_size, uint32_t bits);

/*! nsq_quantize_tiered() : quantizes w[rows][cols] with groups of group_size and the
 *  given per-group tiers (n_groups = rows*cols/group_size codes, values 0..3).
 *  Each quantized group's (d, m) is min/max when col_weight is NULL; with
 *  per-column weights >= 0, the best by weighted squared error of min/max and
 *  weighted least-squares refits over a sweep of ranges (never worse than
 *  min/max). out must hold nsq_tiered_size() bytes. */
NSQ_API nsq_status nsq_quantize_tiered(const float *w, uint64_t rows, uint64_t cols,
                                       uint32_t group_size, const uint8_t *tiers,
                                       const float *col_weight, uint8_t *out, uint64_t out_size);

/*! nsq_quantize_refinement() : codes for one refinement level of `bits` that best
 *  approximate w given the current decode (view + lower levels). out must hold
 *  nsq_refine_size() bytes. */
NSQ_API nsq_status nsq_quantize_refinement(const float *w, const nsq_view *base,
                                           const nsq_refine_view *lower, uint32_t n_lower,
                                           uint32_t bits, uint8_t *out, uint64_t out_size);

/*-************************************
 *  Writing
 **************************************/
typedef struct nsq_writer nsq_writer;

/*! nsq_writer_open() : starts a file at path. Output goes to a temporary file in
 *  the same directory (unnamed where the file system allows, so nothing is
 *  left behind if the process dies); nsq_writer_finish() fsyncs and renames it
 *  into place. An existing file at path is untouched until then. */
NSQ_API nsq_status nsq_writer_open(const char *path, nsq_writer **out, nsq_diag *diag);
/*! nsq_writer_open_fd() : as nsq_writer_open(), but writes into fd: an empty
 *  file open for reading and writing, readable as /proc/self/fd/FD, that stays
 *  the caller's. nsq_writer_finish() validates and fsyncs it, and neither
 *  finish nor abort closes, names or removes it. */
NSQ_API nsq_status nsq_writer_open_fd(int fd, nsq_writer **out, nsq_diag *diag);
/*! nsq_writer_abort() : removes the temporary file and frees the writer. */
NSQ_API void nsq_writer_abort(nsq_writer *w);
/*! nsq_writer_finish() : writes sections, validates the whole file by reopening
 *  it, renames into place and frees the writer (also on failure). */
NSQ_API nsq_status nsq_writer_finish(nsq_writer *w, nsq_diag *diag);

/*! nsq_writer_zstd_level() : compression level for blocks begun with
 *  NSQ_COMP_ZSTD (default 9). */
NSQ_API nsq_status nsq_writer_zstd_level(nsq_writer *w, int level);

NSQ_API nsq_status nsq_writer_meta_u64(nsq_writer *w, const char *key, uint64_t v);
NSQ_API nsq_status nsq_writer_meta_i64(nsq_writer *w, const char *key, int64_t v);
NSQ_API nsq_status nsq_writer_meta_f64(nsq_writer *w, const char *key, double v);
NSQ_API nsq_status nsq_writer_meta_bool(nsq_writer *w, const char *key, int v);
NSQ_API nsq_status nsq_writer_meta_str(nsq_writer *w, const char *key, const char *s, size_t len);
/* Arrays: type is the element type; values are count elements of that C type
 * (uint64_t, int64_t, double, uint8_t for bool) or, for strings, count const char*
 * NUL-terminated strings. */
NSQ_API nsq_status nsq_writer_meta_array(nsq_writer *w, const char *key, nsq_meta_type type,
                                         const void *values, uint32_t count);

NSQ_API nsq_status nsq_writer_tokenizer(nsq_writer *w, nsq_tokenizer_kind kind);
NSQ_API nsq_status nsq_writer_tokenizer_file(nsq_writer *w, const char *name, const void *data,
                                             uint64_t size);

/* Blocks are written in order; each holds its tensors in memory until ended. */
NSQ_API nsq_status nsq_writer_begin_block(nsq_writer *w, nsq_block_kind kind, uint32_t first_layer,
                                          uint32_t n_layers, nsq_compression comp);
/*! nsq_writer_add_tensor() : adds a tensor to the open block. data is the
 *  encoded payload (for F32/F16/BF16, the LE element bytes), checked as a
 *  reader checks it. group_size is 0 unless scheme is TIERED or LATTICE
 *  (its rotation block B). */
NSQ_API nsq_status nsq_writer_add_tensor(nsq_writer *w, const char *name, nsq_scheme scheme,
                                         uint32_t n_dims, const uint64_t *dims, uint32_t group_size,
                                         const void *data, uint64_t size);
/*! nsq_writer_add_refinement() : the level-th (1-based) refinement codes of the
 *  TIERED tensor added last. Levels must be added in order. */
NSQ_API nsq_status nsq_writer_add_refinement(nsq_writer *w, uint32_t level, uint32_t bits,
                                             const void *codes, uint64_t size);
/*! nsq_writer_add_lattice_refinement() : the level-th (1-based) refinement
 *  of the LATTICE tensor added last: n_stages (0..3) more stages of these
 *  kinds, laid out as in the payload (nsq_lattice_refine_view_init). */
NSQ_API nsq_status nsq_writer_add_lattice_refinement(nsq_writer *w, uint32_t level, uint32_t n_stages,
                                                     const uint32_t *kinds, const void *data, uint64_t size);
NSQ_API nsq_status nsq_writer_end_block(nsq_writer *w, nsq_diag *diag);

NSQ_API nsq_status nsq_writer_importance(nsq_writer *w, nsq_importance_method method,
                                         double target_bpw, const char *provenance);
/* Stats for tensor `name` (already added, TIERED or LATTICE: one group stat
 * per group_size weights of a row). Either array may be NULL/0. */
NSQ_API nsq_status nsq_writer_importance_entry(nsq_writer *w, const char *name,
                                               const float *group_stats, uint64_t n_group_stats,
                                               const float *col_stats, uint64_t n_col_stats);
/* Router parameters; the arrays are copied. w1/b1 are ignored when hidden_dim == 0. */
typedef struct {
    uint32_t feature, input_dim, hidden_dim, activation, block_count;
    float temperature;
    const uint8_t *choice_mask;
    const float *in_mean, *in_scale, *w1, *b1, *w2, *b2;
} nsq_router_params;
NSQ_API nsq_status nsq_writer_router(nsq_writer *w, const nsq_router_params *p);

#ifdef __cplusplus
}
#endif
#endif /* NSQ_H */
