/* nsq-inspect - prints what an .nsq file holds.
 *
 *   nsq-inspect FILE [--json] [--tensors] [--blocks] [--no-mmap]
 *
 * The file is opened with nsq_open (full validation of everything outside the
 * blocks). --tensors also reads every block that holds a tiered or lattice
 * tensor, to count a tiered tensor's groups per tier and to read a lattice
 * tensor's stage kinds. Nothing is printed on stdout unless all of that
 * succeeds; errors go to stderr as "nsq-inspect: FILE: NSQ_E_xxx: message
 * (rule R-..., offset N)". Exit status: 0 ok, 1 invalid or unreadable, 2 usage.
 *
 * JSON schema (--json; also in tools/nsq-inspect/JSON.md). One object on one
 * line; keys in this order; new keys are only ever appended to an object.
 *
 * {"format_version":"1.2","file_size":N,
 *  "required_features":["zstd","lattice","lattice_levels","lattice_e8s"],
 *  "optional_features":["refinements","importance","router"],
 *  "metadata":[{"key":"...","type":"u64|i64|f64|bool|string","array":false,"value":V}],
 *     arrays: "array":true, "value":[V,...] (every element)
 *  "tokenizer":{"kind":"hf_json|gpt2_bpe|sentencepiece","files":[{"name":"...","size":N}]},
 *  "block_count":N,"refinement_count":N,"tensor_count":N,"n_elements":N,
 *  "bpw":X,                                   file_size*8 / n_elements
 *  "importance":null|{"method":"magnitude|calibrated","target_bpw":X,"provenance":"...","entries":N},
 *  "router":null|{"feature":1,"input_dim":N,"hidden_dim":N,"activation":"identity|relu|tanh",
 *                 "temperature":X,"choices":["base","skip|base|full",...]},
 *  "blocks":[{"index":0,"kind":"embeddings|layers|output","first_layer":N,"n_layers":N,
 *             "compression":"none|zstd","offset":N,"stored_size":N,"raw_size":N,
 *             "checksum":"0123456789abcdef","tensor_count":N,"bpw":X,"bpw_full":X,
 *             "refinements":[{"level":1,"compression":"none|zstd","offset":N,
 *                             "stored_size":N,"raw_size":N,"checksum":"..."}]}],
 *     only with --blocks; bpw = 8*stored_size / elements of the block's tensors,
 *     bpw_full adds the stored_size of every refinement
 *  "tensors":[{"name":"...","shape":[N,...],"scheme":"f32|f16|bf16|tiered|lattice","block":N,
 *              "offset":N,"size":N,"bpw":X,
 *              "group_size":N,"tiers":{"f16":N,"q8":N,"q4":N,"q2":N},
 *              "refinements":[{"level":1,"bits":2,"size":N}]}]}
 *     only with --tensors; group_size, tiers and refinements only for tiered
 *     tensors; a lattice tensor has instead "group_size":N (its rotation
 *     block), "stages":["e8","sign","int8","e8s"] (its base's stage kinds, in order)
 *     and "refinements":[{"level":1,"stages":["e8"],"size":N}] (the stages
 *     each level adds);
 *     bpw = 8*size / elements
 *
 * Integers are exact; stored floats (f64 metadata, target_bpw, temperature) use
 * "%.17g"; computed bpw values use "%.6f"; checksums are 16 lowercase hex
 * digits; unnamed feature bits appear as "bitN".
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "nsq.h"

#define TOOL "nsq-inspect"
#define SHOW_ELEMS 8      /* array elements shown in human output */
#define SHOW_BYTES 80     /* string bytes shown in human output */

/* What --tensors reads from a tensor's payload. */
typedef struct {
    uint64_t tiers[4];                     /* TIERED: groups per tier */
    uint32_t kind[NSQ_LATTICE_MAX_STAGES]; /* LATTICE: stage kinds, 0 past the last */
} payload_info;

typedef struct {
    nsq_file *f;
    nsq_info info;
    uint64_t n_elements;   /* of all tensors */
    payload_info *payload; /* per tensor; only with --tensors */
    int json, blocks, tensors;
} model;

/*-************************************
 *  Names
 **************************************/
static const char *const req_names[] = {"zstd", "lattice", "lattice_levels", "lattice_e8s"};
static const char *const opt_names[] = {"refinements", "importance", "router"};
#define N_REQ (sizeof req_names / sizeof req_names[0])
#define N_OPT (sizeof opt_names / sizeof opt_names[0])

static const char *pick(const char *const *names, size_t n, uint32_t v)
{
    return v < n && names[v] ? names[v] : "unknown";
}

static const char *block_kind_name(uint32_t k)
{
    static const char *const n[] = {NULL, "embeddings", "layers", "output"};
    return pick(n, 4, k);
}

static const char *comp_name(uint32_t c)
{
    static const char *const n[] = {"none", "zstd"};
    return pick(n, 2, c);
}

static const char *scheme_name(uint32_t s)
{
    nsq_scheme_info info;
    return nsq_scheme_get(s, &info) ? "unknown" : info.name;
}

/* 1 for a scheme whose payload --tensors reads (TIERED, LATTICE). */
static int has_payload_info(uint32_t s) { return s == NSQ_SCHEME_TIERED || s == NSQ_SCHEME_LATTICE; }

static const char *stage_name(uint32_t k)
{
    static const char *const n[] = {NULL, "e8", "sign", "int8", "e8s"};
    return pick(n, 5, k);
}

static const char *tok_kind_name(uint32_t k)
{
    static const char *const n[] = {NULL, "hf_json", "gpt2_bpe", "sentencepiece"};
    return pick(n, 4, k);
}

static const char *method_name(uint32_t m)
{
    static const char *const n[] = {NULL, "magnitude", "calibrated"};
    return pick(n, 3, m);
}

static const char *act_name(uint32_t a)
{
    static const char *const n[] = {"identity", "relu", "tanh"};
    return pick(n, 3, a);
}

static const char *meta_type_name(uint32_t t)
{
    static const char *const n[] = {NULL, "u64", "i64", "f64", "bool", "string"};
    return pick(n, 6, t & ~(uint32_t)NSQ_META_ARRAY);
}

/* Feature bit b by name; bits this version has no name for as "bitN". */
static const char *feature_name(const char *const *names, size_t n, unsigned b, char buf[8])
{
    if (b < n) return names[b];
    snprintf(buf, 8, "bit%u", b);
    return buf;
}

/* "skip|base|full": the set bits of a router choice mask, low bit first. */
static void mask_name(uint8_t m, char *buf, size_t len)
{
    static const char *const n[3] = {"skip", "base", "full"};
    size_t pos = 0;
    buf[0] = '\0';
    for (unsigned b = 0; b < 8; b++) {
        if (!(m >> b & 1u)) continue;
        const char *sep = pos ? "|" : "";
        if (b < 3) pos += (size_t)snprintf(buf + pos, pos < len ? len - pos : 0, "%s%s", sep, n[b]);
        else pos += (size_t)snprintf(buf + pos, pos < len ? len - pos : 0, "%sbit%u", sep, b);
    }
}

/*-************************************
 *  Numbers
 **************************************/
/* The shortest %g text, of at least %g's default 6 digits so that 10000 is not
 * shown as 1e+04, that reads back as v (as a float when is_float). */
static void short_g(double v, int is_float, char *buf, size_t len)
{
    for (int p = 6; p <= 17; p++) {
        snprintf(buf, len, "%.*g", p, v);
        double back = strtod(buf, NULL);
        if (is_float ? (float)back == (float)v : back == v) return; /* exact equality is the point */
    }
}

static double bpw(uint64_t bytes, uint64_t elements)
{
    return elements ? (double)bytes * 8.0 / (double)elements : 0.0;
}

static uint64_t block_elements(const model *m, const nsq_block *b)
{
    uint64_t n = 0;
    nsq_tensor t;
    for (uint32_t i = b->first_tensor; i < b->first_tensor + b->tensor_count; i++)
        if (!nsq_tensor_at(m->f, i, &t)) n += t.n_elements;
    return n;
}

/* Stored bytes of the block and all its refinements. */
static uint64_t block_stored_full(const model *m, uint32_t index, const nsq_block *b)
{
    uint64_t n = b->stored_size;
    nsq_refinement r;
    for (uint32_t l = 1; l <= b->refinement_count; l++)
        if (!nsq_refinement_at(m->f, index, l, &r)) n += r.stored_size;
    return n;
}

/*-************************************
 *  Loading
 **************************************/
static nsq_status open_model(const char *path, unsigned flags, model *m, nsq_diag *d)
{
    nsq_status st = nsq_open(path, flags, &m->f, d);
    if (st) return st;
    nsq_get_info(m->f, &m->info);
    nsq_tensor t;
    for (uint32_t i = 0; i < m->info.tensor_count; i++)
        if (!nsq_tensor_at(m->f, i, &t)) m->n_elements += t.n_elements;
    return NSQ_OK;
}

static int block_has_payload_info(const model *m, const nsq_block *b)
{
    nsq_tensor t;
    for (uint32_t i = b->first_tensor; i < b->first_tensor + b->tensor_count; i++)
        if (!nsq_tensor_at(m->f, i, &t) && has_payload_info(t.scheme)) return 1;
    return 0;
}

/* The tier counts of a TIERED view or the stage kinds of a LATTICE one. */
static void read_payload_info(const nsq_view *v, payload_info *out)
{
    nsq_tiered tv;
    nsq_lattice lv;
    if (!nsq_tiered_view(v, &tv)) memcpy(out->tiers, tv.n_tier, sizeof tv.n_tier);
    if (!nsq_lattice_view(v, &lv)) memcpy(out->kind, lv.kind, sizeof lv.kind);
}

/* Loads block index once and reads its tiered and lattice tensors' payloads. */
static nsq_status read_block_payloads(model *m, uint32_t index, const nsq_block *b, nsq_diag *d)
{
    nsq_loaded l = {0}; /* freeing it is then safe whatever the load did */
    nsq_status st = nsq_block_load(m->f, index, &l, d);
    for (uint32_t i = b->first_tensor; !st && i < b->first_tensor + b->tensor_count; i++) {
        nsq_tensor t;
        nsq_view v;
        if (nsq_tensor_at(m->f, i, &t) || !has_payload_info(t.scheme)) continue;
        if (!(st = nsq_tensor_view(m->f, i, &l, &v, d))) read_payload_info(&v, &m->payload[i]);
    }
    nsq_loaded_free(&l);
    return st;
}

static nsq_status read_payloads(model *m, nsq_diag *d)
{
    m->payload = calloc(m->info.tensor_count, sizeof *m->payload);
    if (!m->payload) return NSQ_E_NOMEM;
    for (uint32_t i = 0; i < m->info.block_count; i++) {
        nsq_block b;
        if (nsq_block_at(m->f, i, &b) || !block_has_payload_info(m, &b)) continue;
        nsq_status st = read_block_payloads(m, i, &b, d);
        if (st) return st;
    }
    return NSQ_OK;
}

/*-************************************
 *  Human output
 **************************************/
/* A string, quoted and escaped, its first SHOW_BYTES bytes at most. */
static void human_string(const char *s, size_t len)
{
    size_t n = len;
    if (len > SHOW_BYTES) {
        n = SHOW_BYTES; /* back up to a character boundary: strings are UTF-8 */
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    }
    putchar('"');
    cli_escape(stdout, s, n);
    putchar('"');
    if (n < len) printf("... (%zu bytes)", len);
}

static void human_elem(const nsq_file *f, uint32_t i, uint32_t type, uint32_t e)
{
    uint64_t u;
    int64_t s;
    double x;
    int b;
    const char *str;
    size_t len;
    char buf[40];
    switch (type & ~(uint32_t)NSQ_META_ARRAY) {
    case NSQ_META_U64: if (!nsq_meta_value_u64(f, i, e, &u)) printf("%" PRIu64, u); return;
    case NSQ_META_I64: if (!nsq_meta_value_i64(f, i, e, &s)) printf("%" PRId64, s); return;
    case NSQ_META_F64:
        if (!nsq_meta_value_f64(f, i, e, &x)) {
            short_g(x, 0, buf, sizeof buf);
            fputs(buf, stdout);
        }
        return;
    case NSQ_META_BOOL: if (!nsq_meta_value_bool(f, i, e, &b)) fputs(b ? "true" : "false", stdout); return;
    case NSQ_META_STRING: if (!nsq_meta_value_str(f, i, e, &str, &len)) human_string(str, len); return;
    default: fputs("?", stdout);
    }
}

static void human_meta_value(const nsq_file *f, uint32_t i, const nsq_meta *mt)
{
    if (!(mt->type & NSQ_META_ARRAY)) {
        human_elem(f, i, mt->type, 0);
        return;
    }
    putchar('[');
    for (uint32_t e = 0; e < mt->count && e < SHOW_ELEMS; e++) {
        if (e) fputs(", ", stdout);
        human_elem(f, i, mt->type, e);
    }
    if (mt->count > SHOW_ELEMS) printf(", ... (%" PRIu32 " total)", mt->count);
    putchar(']');
}

static void human_metadata(const model *m)
{
    nsq_meta mt;
    int width = 0;
    for (uint32_t i = 0; !nsq_meta_at(m->f, i, &mt); i++)
        if ((int)strlen(mt.key) > width) width = (int)strlen(mt.key);
    printf("metadata: %" PRIu32 " keys\n", m->info.meta_count);
    for (uint32_t i = 0; !nsq_meta_at(m->f, i, &mt); i++) {
        char type[24];
        if (mt.type & NSQ_META_ARRAY) snprintf(type, sizeof type, "%s[%" PRIu32 "]", meta_type_name(mt.type), mt.count);
        else snprintf(type, sizeof type, "%s", meta_type_name(mt.type));
        printf("  %-*s  %-12s  ", width, mt.key, type);
        human_meta_value(m->f, i, &mt);
        putchar('\n');
    }
}

static void human_features(const char *label, uint64_t bits, const char *const *names, size_t n)
{
    int any = 0;
    printf("%s:", label);
    for (unsigned b = 0; b < 64; b++) {
        char buf[8];
        if (bits >> b & 1u) printf("%s %s", any++ ? "," : "", feature_name(names, n, b, buf));
    }
    puts(any ? "" : " none");
}

static void human_header(const char *path, const model *m)
{
    printf("file: %s\n", path);
    printf("format version: %u.%u\n", m->info.version_major, m->info.version_minor);
    printf("file size: %" PRIu64 " bytes\n", m->info.file_size);
    human_features("required features", m->info.required_features, req_names, N_REQ);
    human_features("optional features", m->info.optional_features, opt_names, N_OPT);
}

static void human_tokenizer(const model *m)
{
    uint32_t n = nsq_tokenizer_file_count(m->f);
    printf("tokenizer: %s, %" PRIu32 " file%s\n", tok_kind_name(nsq_tokenizer_get_kind(m->f)), n, n == 1 ? "" : "s");
    nsq_tokenizer_file tf;
    for (uint32_t i = 0; !nsq_tokenizer_file_at(m->f, i, &tf); i++)
        printf("  %-24s %12" PRIu64 " bytes\n", tf.name, tf.size);
}

static void human_summary(const model *m)
{
    printf("blocks: %" PRIu32 " (%" PRIu32 " refinements)\n", m->info.block_count, m->info.refinement_count);
    printf("tensors: %" PRIu32 " (%" PRIu64 " elements)\n", m->info.tensor_count, m->n_elements);
    printf("bits per weight: %.6f\n", bpw(m->info.file_size, m->n_elements));
}

static void human_importance(const model *m)
{
    nsq_importance_info imp;
    char buf[40];
    if (nsq_importance_get(m->f, &imp)) {
        puts("importance: none");
        return;
    }
    short_g(imp.target_bpw, 0, buf, sizeof buf);
    printf("importance: %s, target_bpw %s, entries %" PRIu32 ", provenance ", method_name(imp.method), buf,
           imp.entry_count);
    human_string(imp.provenance, strlen(imp.provenance));
    putchar('\n');
}

static void human_router(const model *m)
{
    nsq_router r;
    char buf[40];
    if (nsq_router_get(m->f, &r)) {
        puts("router: none");
        return;
    }
    short_g((double)r.temperature, 1, buf, sizeof buf);
    printf("router: input_dim %" PRIu32 ", hidden_dim %" PRIu32 ", activation %s, temperature %s\n", r.input_dim,
           r.hidden_dim, act_name(r.activation), buf);
    for (uint32_t b = 0; b < r.block_count; b++) {
        mask_name(r.choice_mask[b], buf, sizeof buf);
        printf("%s%" PRIu32 ":%s", b % 8 ? " " : b ? "\n  choices " : "  choices ", b, buf);
    }
    if (r.block_count) putchar('\n');
}

static void human_block_layers(const nsq_block *b)
{
    char buf[32];
    if (b->kind == NSQ_BLOCK_LAYERS)
        snprintf(buf, sizeof buf, "%" PRIu32 "..%" PRIu32, b->first_layer, b->first_layer + b->n_layers - 1);
    else snprintf(buf, sizeof buf, "-");
    printf("  layers %-11s", buf);
}

static void human_block(const model *m, uint32_t i, const nsq_block *b)
{
    uint64_t el = block_elements(m, b);
    printf("  %5" PRIu32 "  %-10s", i, block_kind_name(b->kind));
    human_block_layers(b);
    printf("  %-4s  stored %" PRIu64 "  raw %" PRIu64 "  tensors %" PRIu32, comp_name(b->compression), b->stored_size,
           b->raw_size, b->tensor_count);
    nsq_refinement r;
    for (uint32_t l = 1; l <= b->refinement_count; l++)
        if (!nsq_refinement_at(m->f, i, l, &r))
            printf("%s%" PRIu32 ":%" PRIu64, l == 1 ? "  refinements " : ",", l, r.stored_size);
    printf("  bpw %.6f", bpw(b->stored_size, el));
    if (b->refinement_count) printf(" (full %.6f)", bpw(block_stored_full(m, i, b), el));
    putchar('\n');
}

static void human_blocks(const model *m)
{
    nsq_block b;
    puts("blocks:");
    for (uint32_t i = 0; !nsq_block_at(m->f, i, &b); i++) human_block(m, i, &b);
}

static void human_shape(const nsq_tensor *t, char *buf, size_t len)
{
    size_t pos = (size_t)snprintf(buf, len, "[");
    for (uint32_t k = 0; k < t->n_dims; k++)
        pos += (size_t)snprintf(buf + pos, pos < len ? len - pos : 0, "%s%" PRIu64, k ? "," : "", t->dims[k]);
    snprintf(buf + pos, pos < len ? len - pos : 0, "]");
}

static void human_tiered(const model *m, uint32_t i, const nsq_tensor *t)
{
    printf("  group %" PRIu32 "  tiers", t->group_size);
    for (uint32_t k = 0; k < 4; k++) printf(" %s:%" PRIu64, nsq_tier_name(k), m->payload[i].tiers[k]);
    for (uint32_t l = 0; l < t->n_refine; l++)
        printf("%s%u-bit %" PRIu64, l ? ", " : "  refinements ", t->refine[l].bits, t->refine[l].size);
}

/* "rotation block 128  stages e8+e8+sign" */
static void human_lattice(const model *m, uint32_t i, const nsq_tensor *t)
{
    const uint32_t *kind = m->payload[i].kind;
    printf("  rotation block %" PRIu32 "  stages ", t->group_size);
    for (uint32_t s = 0; s < NSQ_LATTICE_MAX_STAGES && kind[s]; s++) printf("%s%s", s ? "+" : "", stage_name(kind[s]));
    for (uint32_t l = 0; l < t->n_refine; l++) {
        printf("%s", l ? ", " : "  refinements ");
        for (uint32_t s = 0; s < t->refine[l].bits; s++) printf("+%s", stage_name(t->refine[l].kind[s]));
        printf("%s %" PRIu64, t->refine[l].bits ? "" : "none", t->refine[l].size);
    }
}

static void human_tensors(const model *m)
{
    nsq_tensor t;
    int width = 0;
    for (uint32_t i = 0; !nsq_tensor_at(m->f, i, &t); i++)
        if ((int)strlen(t.name) > width) width = (int)strlen(t.name);
    if (width > 48) width = 48; /* a few very long names should not push every row out */
    puts("tensors:");
    for (uint32_t i = 0; !nsq_tensor_at(m->f, i, &t); i++) {
        char shape[4 * 24];
        human_shape(&t, shape, sizeof shape);
        printf("  %-*s  %-18s  %-7s  block %" PRIu32 "  size %" PRIu64 "  bpw %.6f", width, t.name, shape,
               scheme_name(t.scheme), t.block, t.size, bpw(t.size, t.n_elements));
        if (t.scheme == NSQ_SCHEME_TIERED) human_tiered(m, i, &t);
        if (t.scheme == NSQ_SCHEME_LATTICE) human_lattice(m, i, &t);
        putchar('\n');
    }
}

static void print_human(const char *path, const model *m)
{
    human_header(path, m);
    human_metadata(m);
    human_tokenizer(m);
    human_summary(m);
    human_importance(m);
    human_router(m);
    if (m->blocks) human_blocks(m);
    if (m->tensors) human_tensors(m);
}

/*-************************************
 *  JSON output
 **************************************/
static void json_checksum(cli_json *j, uint64_t c)
{
    char buf[17];
    snprintf(buf, sizeof buf, "%016" PRIx64, c);
    cli_json_kv_cstr(j, "checksum", buf);
}

static void json_features(cli_json *j, const char *key, uint64_t bits, const char *const *names, size_t n)
{
    cli_json_key(j, key);
    cli_json_array(j);
    for (unsigned b = 0; b < 64; b++) {
        char buf[8];
        if (bits >> b & 1u) cli_json_cstr(j, feature_name(names, n, b, buf));
    }
    cli_json_end_array(j);
}

static void json_elem(cli_json *j, const nsq_file *f, uint32_t i, uint32_t type, uint32_t e)
{
    uint64_t u;
    int64_t s;
    double x;
    int b;
    const char *str;
    size_t len;
    nsq_status st = NSQ_E_TYPE;
    switch (type & ~(uint32_t)NSQ_META_ARRAY) {
    case NSQ_META_U64: if (!(st = nsq_meta_value_u64(f, i, e, &u))) cli_json_u64(j, u); break;
    case NSQ_META_I64: if (!(st = nsq_meta_value_i64(f, i, e, &s))) cli_json_i64(j, s); break;
    case NSQ_META_F64: if (!(st = nsq_meta_value_f64(f, i, e, &x))) cli_json_f64(j, x); break;
    case NSQ_META_BOOL: if (!(st = nsq_meta_value_bool(f, i, e, &b))) cli_json_bool(j, b); break;
    case NSQ_META_STRING: if (!(st = nsq_meta_value_str(f, i, e, &str, &len))) cli_json_str(j, str, len); break;
    }
    if (st) cli_json_null(j); /* keeps the document well-formed; open validated every entry */
}

static void json_meta_entry(cli_json *j, const nsq_file *f, uint32_t i, const nsq_meta *mt)
{
    int array = (mt->type & NSQ_META_ARRAY) != 0;
    cli_json_object(j);
    cli_json_kv_cstr(j, "key", mt->key);
    cli_json_kv_cstr(j, "type", meta_type_name(mt->type));
    cli_json_kv_bool(j, "array", array);
    cli_json_key(j, "value");
    if (array) cli_json_array(j);
    for (uint32_t e = 0; e < (array ? mt->count : 1); e++) json_elem(j, f, i, mt->type, e);
    if (array) cli_json_end_array(j);
    cli_json_end_object(j);
}

static void json_metadata(cli_json *j, const model *m)
{
    nsq_meta mt;
    cli_json_key(j, "metadata");
    cli_json_array(j);
    for (uint32_t i = 0; !nsq_meta_at(m->f, i, &mt); i++) json_meta_entry(j, m->f, i, &mt);
    cli_json_end_array(j);
}

static void json_tokenizer(cli_json *j, const model *m)
{
    nsq_tokenizer_file tf;
    cli_json_key(j, "tokenizer");
    cli_json_object(j);
    cli_json_kv_cstr(j, "kind", tok_kind_name(nsq_tokenizer_get_kind(m->f)));
    cli_json_key(j, "files");
    cli_json_array(j);
    for (uint32_t i = 0; !nsq_tokenizer_file_at(m->f, i, &tf); i++) {
        cli_json_object(j);
        cli_json_kv_cstr(j, "name", tf.name);
        cli_json_kv_u64(j, "size", tf.size);
        cli_json_end_object(j);
    }
    cli_json_end_array(j);
    cli_json_end_object(j);
}

static void json_importance(cli_json *j, const model *m)
{
    nsq_importance_info imp;
    cli_json_key(j, "importance");
    if (nsq_importance_get(m->f, &imp)) {
        cli_json_null(j);
        return;
    }
    cli_json_object(j);
    cli_json_kv_cstr(j, "method", method_name(imp.method));
    cli_json_kv_f64(j, "target_bpw", imp.target_bpw);
    cli_json_kv_cstr(j, "provenance", imp.provenance);
    cli_json_kv_u64(j, "entries", imp.entry_count);
    cli_json_end_object(j);
}

static void json_router(cli_json *j, const model *m)
{
    nsq_router r;
    cli_json_key(j, "router");
    if (nsq_router_get(m->f, &r)) {
        cli_json_null(j);
        return;
    }
    cli_json_object(j);
    cli_json_kv_u64(j, "feature", r.feature);
    cli_json_kv_u64(j, "input_dim", r.input_dim);
    cli_json_kv_u64(j, "hidden_dim", r.hidden_dim);
    cli_json_kv_cstr(j, "activation", act_name(r.activation));
    cli_json_kv_f64(j, "temperature", (double)r.temperature); /* exact: every float is a double */
    cli_json_key(j, "choices");
    cli_json_array(j);
    for (uint32_t b = 0; b < r.block_count; b++) {
        char buf[40];
        mask_name(r.choice_mask[b], buf, sizeof buf);
        cli_json_cstr(j, buf);
    }
    cli_json_end_array(j);
    cli_json_end_object(j);
}

/* The fields a block and a refinement record share. */
static void json_range(cli_json *j, uint32_t comp, uint64_t offset, uint64_t stored, uint64_t raw, uint64_t checksum)
{
    cli_json_kv_cstr(j, "compression", comp_name(comp));
    cli_json_kv_u64(j, "offset", offset);
    cli_json_kv_u64(j, "stored_size", stored);
    cli_json_kv_u64(j, "raw_size", raw);
    json_checksum(j, checksum);
}

static void json_block_refinements(cli_json *j, const model *m, uint32_t i, const nsq_block *b)
{
    nsq_refinement r;
    cli_json_key(j, "refinements");
    cli_json_array(j);
    for (uint32_t l = 1; l <= b->refinement_count; l++) {
        if (nsq_refinement_at(m->f, i, l, &r)) continue;
        cli_json_object(j);
        cli_json_kv_u64(j, "level", r.level);
        json_range(j, r.compression, r.offset, r.stored_size, r.raw_size, r.checksum);
        cli_json_end_object(j);
    }
    cli_json_end_array(j);
}

static void json_block(cli_json *j, const model *m, uint32_t i, const nsq_block *b)
{
    uint64_t el = block_elements(m, b);
    cli_json_object(j);
    cli_json_kv_u64(j, "index", i);
    cli_json_kv_cstr(j, "kind", block_kind_name(b->kind));
    cli_json_kv_u64(j, "first_layer", b->first_layer);
    cli_json_kv_u64(j, "n_layers", b->n_layers);
    json_range(j, b->compression, b->offset, b->stored_size, b->raw_size, b->checksum);
    cli_json_kv_u64(j, "tensor_count", b->tensor_count);
    cli_json_kv_fixed6(j, "bpw", bpw(b->stored_size, el));
    cli_json_kv_fixed6(j, "bpw_full", bpw(block_stored_full(m, i, b), el));
    json_block_refinements(j, m, i, b);
    cli_json_end_object(j);
}

static void json_blocks(cli_json *j, const model *m)
{
    nsq_block b;
    cli_json_key(j, "blocks");
    cli_json_array(j);
    for (uint32_t i = 0; !nsq_block_at(m->f, i, &b); i++) json_block(j, m, i, &b);
    cli_json_end_array(j);
}

static void json_tiered(cli_json *j, const model *m, uint32_t i, const nsq_tensor *t)
{
    cli_json_kv_u64(j, "group_size", t->group_size);
    cli_json_key(j, "tiers");
    cli_json_object(j);
    for (uint32_t k = 0; k < 4; k++) cli_json_kv_u64(j, nsq_tier_name(k), m->payload[i].tiers[k]);
    cli_json_end_object(j);
    cli_json_key(j, "refinements");
    cli_json_array(j);
    for (uint32_t l = 0; l < t->n_refine; l++) {
        cli_json_object(j);
        cli_json_kv_u64(j, "level", l + 1);
        cli_json_kv_u64(j, "bits", t->refine[l].bits);
        cli_json_kv_u64(j, "size", t->refine[l].size);
        cli_json_end_object(j);
    }
    cli_json_end_array(j);
}

static void json_lattice(cli_json *j, const model *m, uint32_t i, const nsq_tensor *t)
{
    const uint32_t *kind = m->payload[i].kind;
    cli_json_kv_u64(j, "group_size", t->group_size);
    cli_json_key(j, "stages");
    cli_json_array(j);
    for (uint32_t s = 0; s < NSQ_LATTICE_MAX_STAGES && kind[s]; s++) cli_json_cstr(j, stage_name(kind[s]));
    cli_json_end_array(j);
    if (!t->n_refine) return;
    cli_json_key(j, "refinements");
    cli_json_array(j);
    for (uint32_t l = 0; l < t->n_refine; l++) {
        cli_json_object(j);
        cli_json_kv_u64(j, "level", l + 1);
        cli_json_key(j, "stages");
        cli_json_array(j);
        for (uint32_t s = 0; s < t->refine[l].bits; s++) cli_json_cstr(j, stage_name(t->refine[l].kind[s]));
        cli_json_end_array(j);
        cli_json_kv_u64(j, "size", t->refine[l].size);
        cli_json_end_object(j);
    }
    cli_json_end_array(j);
}

static void json_tensor(cli_json *j, const model *m, uint32_t i, const nsq_tensor *t)
{
    cli_json_object(j);
    cli_json_kv_cstr(j, "name", t->name);
    cli_json_key(j, "shape");
    cli_json_array(j);
    for (uint32_t k = 0; k < t->n_dims; k++) cli_json_u64(j, t->dims[k]);
    cli_json_end_array(j);
    cli_json_kv_cstr(j, "scheme", scheme_name(t->scheme));
    cli_json_kv_u64(j, "block", t->block);
    cli_json_kv_u64(j, "offset", t->offset);
    cli_json_kv_u64(j, "size", t->size);
    cli_json_kv_fixed6(j, "bpw", bpw(t->size, t->n_elements));
    if (t->scheme == NSQ_SCHEME_TIERED) json_tiered(j, m, i, t);
    if (t->scheme == NSQ_SCHEME_LATTICE) json_lattice(j, m, i, t);
    cli_json_end_object(j);
}

static void json_tensors(cli_json *j, const model *m)
{
    nsq_tensor t;
    cli_json_key(j, "tensors");
    cli_json_array(j);
    for (uint32_t i = 0; !nsq_tensor_at(m->f, i, &t); i++) json_tensor(j, m, i, &t);
    cli_json_end_array(j);
}

static void json_header(cli_json *j, const model *m)
{
    char ver[24];
    snprintf(ver, sizeof ver, "%u.%u", m->info.version_major, m->info.version_minor);
    cli_json_kv_cstr(j, "format_version", ver);
    cli_json_kv_u64(j, "file_size", m->info.file_size);
    json_features(j, "required_features", m->info.required_features, req_names, N_REQ);
    json_features(j, "optional_features", m->info.optional_features, opt_names, N_OPT);
}

static void json_summary(cli_json *j, const model *m)
{
    cli_json_kv_u64(j, "block_count", m->info.block_count);
    cli_json_kv_u64(j, "refinement_count", m->info.refinement_count);
    cli_json_kv_u64(j, "tensor_count", m->info.tensor_count);
    cli_json_kv_u64(j, "n_elements", m->n_elements);
    cli_json_kv_fixed6(j, "bpw", bpw(m->info.file_size, m->n_elements));
}

static void print_json(const model *m)
{
    cli_json j;
    cli_json_init(&j, stdout);
    cli_json_object(&j);
    json_header(&j, m);
    json_metadata(&j, m);
    json_tokenizer(&j, m);
    json_summary(&j, m);
    json_importance(&j, m);
    json_router(&j, m);
    if (m->blocks) json_blocks(&j, m);
    if (m->tensors) json_tensors(&j, m);
    cli_json_end_object(&j);
    cli_json_done(&j);
}

/*-************************************
 *  Main
 **************************************/
int main(int argc, char **argv)
{
    model m = {0};
    int no_mmap = 0;
    const cli_flag flags[] = {
        {"--json", "print one JSON object (schema: tools/nsq-inspect/JSON.md)", &m.json},
        {"--tensors", "list every tensor (reads blocks that hold tiered or lattice tensors)", &m.tensors},
        {"--blocks", "list every block and its refinements", &m.blocks},
        {"--no-mmap", "read with pread instead of mapping the file", &no_mmap},
    };
    const cli_tool tool = {TOOL, "Print the header, metadata, tokenizer, blocks and tensors of an .nsq file.", flags,
                           sizeof flags / sizeof flags[0]};
    const char *path;
    int rc = cli_parse(&tool, argc, argv, &path);
    if (rc >= 0) return rc;
    nsq_diag d;
    cli_diag_init(&d);
    nsq_status st = open_model(path, no_mmap ? NSQ_OPEN_PREAD : 0, &m, &d);
    if (!st && m.tensors) st = read_payloads(&m, &d);
    if (st) {
        cli_report(TOOL, path, st, &d);
        rc = CLI_EXIT_INVALID;
    } else {
        if (m.json) print_json(&m);
        else print_human(path, &m);
        rc = cli_finish_stdout(TOOL);
    }
    free(m.payload);
    nsq_close(m.f);
    return rc;
}
