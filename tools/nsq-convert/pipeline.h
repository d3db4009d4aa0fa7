/* pipeline.h - the conversion as a library: a job (what to convert and how)
 * run in steps, each of which can fail with a message; nsq-convert's main.c
 * is only its command line (options, the output file, the summary). */
#ifndef NSQ_PIPELINE_H
#define NSQ_PIPELINE_H

#include "convert.h"
#include "router_fit.h"

#define TOOL "nsq-convert"

/* The files embedded besides the tensors, read once before any work. */
typedef struct {
    nsq_tokenizer_kind kind;
    uint32_t n;
    const char *names[3];
    char *data[3];
    uint64_t sizes[3];
    char *recipe; /* --recipe FILE's text */
    size_t recipe_len;
} side_files;

typedef struct {
    const char *in, *out, *recipe_path;
    const char *calib_path; /* calibrating: --calib FILE, or the built-in text's name; else NULL */
    int calib_builtin;      /* the text built into the converter (calib-default.txt) */
    const char *calib_text; /* its bytes, once convert_open() has read them */
    size_t calib_len;
    uint64_t calib_tokens, calib_probe;
    int calib_tokens_set, calib_probe_set; /* given, rather than chosen for the model's size */
    int scheme;      /* --scheme or the recipe's: -1 not given, else 1 lattice, 0 tiered */
    int tiered_opts; /* --tiers, --group-size or --refine given, or set by the recipe */
    int no_calib;    /* --no-calib */
    quant_opts q;
    uint32_t layers_per_block;
    int zstd, zstd_level, quiet, json, router;
    uint32_t router_windows;
    const router_fit *fit; /* set once the router is fitted: written with the file */
    const side_files *files; /* set by convert_open() */
    char recipe[512], calib_hash[24];
} convert_job;

typedef struct {
    uint64_t file_size, elements, body_elements, body_bytes, refine_bytes, n_tier[4];
    double sq_error, sq_error_refined, quant_elements, seconds;
    double *depth_damage; /* LATTICE refinement levels: each block's predicted damage at each depth */
    uint32_t n_depth_damage;
} convert_summary;


/* What a job has read and computed, step by step. */
typedef struct {
    hf_config c;
    st_model m;
    tensor_plan p;
    bpw_plan bp;
    lat_book lb;
    calib_stats cs;
    router_fit rf;
    side_files files;
    char *calib_file; /* --calib FILE's text */
} convert_state;

/* o->recipe: the provenance line describing o's settings. */
void convert_describe(convert_job *o);
/* LATTICE's calibration defaults for plan p's size, where not given: all of
 * the text (262144 tokens) halved down to 2048 until tokens x layer weights
 * is at most 4e12; no probes when matrices x probe tokens x layer weights
 * exceeds 1e12. Then convert_describe(o). */
void convert_size_defaults(convert_job *o, const tensor_plan *p);
/* Reads the config, maps the checkpoint and reads the tokenizer and recipe
 * files; -1 with a message in err. */
int convert_open(convert_job *o, convert_state *s, char *err, size_t errlen);
/* Matches the checkpoint to the architecture, then as o asks: calibrates,
 * measures and allocates the bit budget, fits the router. */
int convert_plan(convert_job *o, convert_state *s, char *err, size_t errlen);
/* Writes the whole file into fd (empty): 0, -1 with a message in err, or -2
 * with the writer's status in *st and its diagnostic in d. */
int convert_write(const convert_job *o, convert_state *s, int fd, convert_summary *sum, char *err, size_t errlen,
                  nsq_status *st, nsq_diag *d);
/* The bit budget's plan when o has one (--bpw), else NULL. */
const bpw_plan *convert_budget(const convert_job *o, const convert_state *s);
void convert_close(convert_state *s);
const char *convert_policy_name(dense_policy p);

#endif
