/* convert.h - the pieces of nsq-convert: the Hugging Face config, the tensor
 * plan of each architecture, and the quantization policy. */
#ifndef NSQ_CONVERT_H
#define NSQ_CONVERT_H

#include <stddef.h>
#include <stdint.h>

#include "nsqrt.h"
#include "calib.h"
#include "nsq.h"
#include "safetensors.h"

/* Extra RoPE scaling parameters, stored as model.rope.scaling.<name> when present. */
enum { ROPE_LOW_FREQ, ROPE_HIGH_FREQ, ROPE_ORIG_MAX_POS, ROPE_BETA_FAST, ROPE_BETA_SLOW, ROPE_ATTN_FACTOR,
       ROPE_N_EXTRA };
extern const char *const rope_extra_keys[ROPE_N_EXTRA];

/* The values config.json may give (spec section 5.4 lists them; the runtime's
 * own limits there are wider, so every converted file passes them). */
#define HF_MAX_CONFIG_BYTES (4u << 20) /* config.json, generation_config.json */
#define HF_MAX_LAYERS 4096
#define HF_MAX_HIDDEN 65536
#define HF_MAX_HEADS 4096
#define HF_MAX_HEAD_DIM 1024 /* and even */
#define HF_MAX_HEAD_DIM_HALF (HF_MAX_HEAD_DIM / 2)
#define HF_MAX_INTER (1u << 20)
#define HF_MAX_VOCAB (1u << 24)
#define HF_MAX_CTX (1u << 24) /* also sliding_window, original_max_position_embeddings */
#define HF_MAX_EPS 1.0
#define HF_MIN_THETA 1.0
#define HF_MAX_THETA 1e12
#define HF_MIN_ROPE_PARAM 1e-6 /* factor, low/high_freq_factor, beta_fast/slow, attention_factor */
#define HF_MAX_ROPE_PARAM 1e6

#define HF_MAX_KEYS 8 /* nsqrt_arch_key entries per family */

typedef struct {
    const nsqrt_arch *arch; /* general.architecture */
    char hf_arch[64];
    uint64_t hidden, n_layers, n_heads, n_kv_heads, head_dim, inter, vocab, ctx, sliding_window;
    uint64_t window_pattern; /* layer_types: windows on every layer but each pattern-th */
    double norm_eps, rope_theta, rope_factor;
    double rope_extra[ROPE_N_EXTRA];
    unsigned rope_extra_set; /* bit i: rope_extra[i] present */
    char rope_type[16];      /* none|linear|dynamic|llama3|yarn|longrope */
    double rope_short[HF_MAX_HEAD_DIM_HALF], rope_long[HF_MAX_HEAD_DIM_HALF]; /* longrope, head_dim / 2 each */
    double key_value[HF_MAX_KEYS]; /* the family's nsqrt_arch_key numbers, as stored */
    unsigned key_set;              /* bit i: key_value[i] stored */
    const char *norm_type, *activation, *position;
    int attention_bias, mlp_bias, tied_head;
    int64_t bos_id, eos_id;
    int64_t eos_ids[8];
    uint32_t n_eos;
    int add_bos;
    char dtype[16];    /* torch dtype named by the config, "" if absent */
    uint64_t config_hash; /* XXH3 of config.json */
} hf_config;

/* Reads DIR/config.json (+ generation_config.json, tokenizer_config.json,
 * tokenizer.json for BOS/EOS facts). -1 with a message naming the file. */
int hf_load_config(const char *dir, hf_config *c, char *err, size_t errlen);
/* config.json's text alone: -1 with a message naming the key and its range,
 * else c within the ranges above. */
int hf_parse_config(const char *text, size_t len, hf_config *c, char *err, size_t errlen);

/* The config as the runtime sees it, for the registry's shapes and names. */
void hf_model_config(const hf_config *c, nsqrt_config *m);

/* ---- tensor plan ---- */
typedef struct {
    const st_tensor *src;
    int role;       /* NSQRT_ROLE_* */
    nsqrt_role_kind kind; /* what the policy does with it */
    int layer;  /* -1 outside the layers */
    int conv1d; /* source stored [in][out] (GPT-2 Conv1D) */
    uint64_t rows, cols; /* the matrix as nsq stores it when quantized: [out][in] */
} plan_tensor;

typedef struct {
    plan_tensor *t;
    size_t n;
} tensor_plan;

/* Matches every checkpoint tensor to the architecture's expected list and
 * checks its shape against the config; -1 with a message naming the tensor. */
int arch_plan(const hf_config *c, const st_model *m, tensor_plan *p, char *err, size_t errlen);
void arch_plan_free(tensor_plan *p);

/* ---- quantization policy ---- */
typedef enum { KEEP_SOURCE, KEEP_F16, UNIFORM_Q8, UNIFORM_Q4, UNIFORM_Q2 } dense_policy;

/* A recipe's override for the tensors whose names match a pattern. */
typedef struct {
    char match[160];      /* fnmatch(3) pattern */
    int has_policy, has_split;
    dense_policy policy;  /* store the tensor this way */
    double split[3];      /* or tier it with this split */
    uint32_t group_size;  /* 0: the global one */
} tensor_rule;

#define LAT_MAX_LEVELS 3 /* a base of one stage and three more: LATTICE's four */
typedef struct {
    int lossless;
    uint32_t group_size;
    double split[3];     /* fractions of groups at Q8, Q4, Q2 (--tiers) */
    double bpw;          /* > 0: allocate tiers for this body bpw (--bpw) */
    uint32_t n_levels;   /* LATTICE refinement levels (--bpw X,Y,...): body bpw at depth l in level_bpw[l-1] */
    double level_bpw[LAT_MAX_LEVELS];
    uint32_t refine_bits;
    dense_policy embed, head;
    int threads;
    tensor_rule *rules; /* first match wins */
    size_t n_rules;
    const calib_stats *calib; /* --calib: activation statistics, else NULL */
    long probe;               /* >= 0: a sensitivity probe, only this plan tensor quantized (4 bits) */
    int lattice;              /* layer matrices in LATTICE (--scheme lattice), else TIERED */
    const struct lat_book *lat; /* LATTICE: the coded layer matrices */
} quant_opts;

/* Options a recipe may set besides quant_opts. */
typedef struct {
    uint32_t layers_per_block;
    int zstd, zstd_level;
    int scheme;  /* scheme: -1 not given, else 1 lattice, 0 tiered */
    int tiered;  /* tiers, group_size or refine given: options of TIERED only */
} recipe_opts;

#define RECIPE_MAX_BYTES (1u << 20)
#define RECIPE_MAX_RULES 4096

/* Reads a YAML recipe into o and q; -1 with "FILE:LINE: problem" in err, and
 * then q->rules freed. recipe_parse reads the text (name is for messages). */
int recipe_load(const char *path, recipe_opts *o, quant_opts *q, char *err, size_t errlen);
int recipe_parse(const char *name, const char *text, size_t len, recipe_opts *o, quant_opts *q, char *err,
                 size_t errlen);
const tensor_rule *recipe_match(const quant_opts *q, const char *name);
void recipe_free(quant_opts *q);

/* The values the command line and recipes both accept: 0 if valid. */
int option_tiers(const char *s, double split[3]); /* "Q8:Q4:Q2" percentages summing to 100 */
int option_group_size(uint64_t g);                /* 32, 64, 128, 256 */
int option_refine(uint64_t bits);                 /* 1, 2, 4, 8 */

/* An encoded tensor ready for nsq_writer_add_tensor. */
typedef struct {
    uint32_t scheme, n_dims, group_size;
    uint64_t dims[2];
    uint8_t *data;
    uint64_t size;
    uint8_t *refine;
    uint64_t refine_size;
    /* LATTICE refinement levels 1..n_levels: stages and kinds each adds, and
     * where its bytes are in data (after the base payload's size bytes). */
    uint32_t n_levels, level_stages[LAT_MAX_LEVELS], level_kind[LAT_MAX_LEVELS][3];
    uint64_t level_off[LAT_MAX_LEVELS], level_size[LAT_MAX_LEVELS];
    float *group_stats; /* importance per group (TIERED) */
    uint64_t n_groups;
    const float *col_stats; /* mean x^2 per input column (calibrated), not owned */
    uint64_t n_col_stats;
    uint64_t n_tier[4];
    double sq_error;    /* sum of squared quantization error */
    double sq_error_refined; /* the same with the refinement applied */
} encoded;

/* Under --bpw the tiers of all layer matrices are chosen together: each
 * group takes the tier minimising err + lambda * bits, with lambda set so the
 * body fits the budget. err holds, per group, the squared error at Q8, Q4, Q2. */
typedef struct {
    double lambda, predicted_bpw;
    uint64_t elements; /* weights of the layer blocks */
    float *err;
    uint64_t *first_group; /* per plan tensor: index of its first group in err */
} bpw_plan;

int policy_allocate(const tensor_plan *p, const quant_opts *o, bpw_plan *out, char *err, size_t errlen);
/* policy_allocate in two steps, so that the errors can be rescaled between:
 * measure every group's error at each tier, then choose lambda for the budget. */
int policy_measure(const tensor_plan *p, const quant_opts *o, bpw_plan *out, char *err, size_t errlen);
int policy_budget(const tensor_plan *p, const quant_opts *o, bpw_plan *bp, char *err, size_t errlen);
/* Whether the budget chooses plan tensor i's tiers; its summed error at a tier; its errors times factor. */
int policy_budgeted(const tensor_plan *p, size_t i, const quant_opts *o);
double policy_tensor_error(const tensor_plan *p, size_t i, const quant_opts *o, const bpw_plan *bp, uint32_t tier);
void policy_scale_errors(const tensor_plan *p, size_t i, const quant_opts *o, bpw_plan *bp, double factor);
void bpw_plan_free(bpw_plan *bp);
/* Encodes plan tensor i; bp is NULL unless --bpw. */
int policy_encode(const tensor_plan *p, size_t i, const quant_opts *o, const bpw_plan *bp, encoded *e, char *err,
                  size_t errlen);
void encoded_free(encoded *e);
/* Group size used for a matrix with cols columns: the requested one, or the
 * largest supported one dividing cols; 0 if none does. */
uint32_t policy_group_size(uint32_t wanted, uint64_t cols);

/* The matrix as nsq stores it, [rows][cols] = [out][in], in f32; NULL when out of memory. */
float *policy_load_matrix(const plan_tensor *t);
/* Bytes of a layer-block tensor the budget does not choose. */
uint64_t policy_fixed_bytes(const plan_tensor *t, const quant_opts *o);

/* ---- LATTICE layer matrices (lattice_policy.c) ----
 * Under --bpw each matrix takes the type (lat_types) minimising its
 * predicted damage: its measured relative error at that type times a
 * sensitivity (1, or from a probe: the divergence it causes alone at
 * LAT_PROBE_TYPE). Then each layer is coded with the calibration's second
 * moments of its inputs, and the payloads kept in a spill file. */
#define LAT_PROBE_TYPE 2 /* e8+e8 */
typedef struct lat_book {
    float **moments;   /* [n_layers * CALIB_N_INPUTS]: every layer's input second moments, or NULL */
    uint32_t moment_dim[CALIB_N_INPUTS]; /* their widths, by input */
    size_t n;          /* plan tensors */
    const struct lat_type *types; /* lat_types, or lat_nested with refinement levels */
    uint32_t n_types, n_levels;
    int *type;         /* [n]: index in types (with levels, the deepest), -1 for a matrix not in LATTICE */
    int *chain;        /* [n][n_levels + 1]: the type at each depth, those of chains[pick[i]] */
    int *pick;         /* [n]: index in chains */
    int *chains;       /* every nested sequence of types, one per depth: [sequences][n_levels + 1] */
    uint32_t n_chains; /* the sequences, each with every blend it may be coded with */
    double *err;       /* [n][n_types]: predicted damage, each type coded alone */
    double *cerr;      /* [n][n_chains][n_levels + 1]: predicted damage at each depth, coded as that chain */
    double *bits;      /* [n][n_types]: payload bits at each type, for the allocation's many lookups */
    uint64_t *off, *size; /* [n]: payload in the spill file */
    uint64_t elements, n_layers, spill_end;
    uint32_t layers_per_block; /* the file's: a block stores only the levels its matrices use */
    int fd; /* spill file, -1 */
} lat_book;

int lat_budgeted(const plan_tensor *t, const quant_opts *o);
/* Keeps every layer's input second moments in b (before lat_measure) when
 * they fit in LAT_MOMENTS_MAX bytes: then lat_measure and the probes code
 * with error feedback, as the final encoding does. 0 also when they do not
 * fit (nothing kept); -1 with a message in err. */
#define LAT_MOMENTS_MAX (512ull << 20)
int lat_keep_moments(const char *model_path, const quant_opts *o, uint64_t n_layers, const uint32_t dim[CALIB_N_INPUTS],
                     lat_book *b, char *err, size_t n);
/* Each budgeted matrix's damage at every type: its relative error, weighed by
 * its inputs' second moments and with feedback when b keeps them. */
int lat_measure(const tensor_plan *p, const quant_opts *o, lat_book *b, char *err, size_t n);
double lat_error(const lat_book *b, size_t i, uint32_t type);
/* Predicted damage of matrix i at depth k (0: base), less that at its deepest. */
double lat_depth_damage(const lat_book *b, size_t i, uint32_t k);
void lat_scale(lat_book *b, size_t i, double factor);
int lat_budget(const tensor_plan *p, const quant_opts *o, lat_book *b, char *err, size_t n);
/* Codes every budgeted matrix (with o->calib, with its inputs' second
 * moments: those b keeps, else from running the unquantized model at
 * model_path layer by layer; their diagonals become cs's column statistics);
 * the spill file is made next to out_path. */
int lat_encode_all(const char *model_path, const char *out_path, const tensor_plan *p, const quant_opts *o, calib_stats *cs,
                   uint64_t n_layers, int show, lat_book *b, char *err, size_t n);
int lat_payload(const lat_book *b, size_t i, const plan_tensor *t, encoded *e);
int lat_probe_encode(const plan_tensor *t, const lat_book *b, encoded *e);
void lat_book_free(lat_book *b);

/* Runs fn(i, ctx) for i in [0, n) on up to threads threads. */
void parallel_for(size_t n, int threads, void (*fn)(size_t i, void *ctx), void *ctx);

/* Bits a group of G weights costs at each tier, stream padding excluded. */
double tier_group_bits(uint32_t tier, uint32_t group_size);

/* tiered.c. Squared error of storing one group at tier t, weighted by wt[G]
 * if not NULL; INFINITY when the tier cannot hold it. */
double tiered_group_error(const float *x, const float *wt, uint32_t G, uint8_t tier);
/* Encodes w[rows][cols] with the given per-group tiers (and refine_bits of
 * refinement, if not 0) into e: 0, -1 out of memory, -2 out of range. */
int encode_tiered(const float *w, uint64_t rows, uint64_t cols, uint32_t G, const uint8_t *tiers, const float *cw,
                  uint32_t refine_bits, encoded *e);

#endif
