/* nsq-convert - a Hugging Face checkpoint directory to .nsq.
 *
 *   nsq-convert HF_DIR OUT.nsq [options]     (see usage() or --help)
 *
 * The command line of the conversion (pipeline.c): options and recipes, the
 * output file (checked before any work, named only once the writer has
 * validated the finished file), and the summary. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "pipeline.h"

/* calib_text.S */
extern const char nsqconv_calib_text[], nsqconv_calib_text_end[];

static void usage(FILE *out)
{
    char list[256];
    fprintf(out,
            "usage: " TOOL " HF_DIR OUT.nsq [options]\n"
            "Converts a Hugging Face checkpoint directory (config.json, model.safetensors or\n"
            "shards with model.safetensors.index.json, tokenizer files) into an .nsq file.\n"
            "Supported: %s.\n\n"
            "options:\n"
            "  --lossless              store every tensor bit-exactly in its source dtype\n"
            "  --scheme S              layer matrices as lattice (rotated E8 codes, the default)\n"
            "                          or tiered (the default when --tiers, --group-size or\n"
            "                          --refine is given: options of tiered only)\n"
            "  --bpw X[,Y,...]         the layer blocks take at most X bits per weight (lattice:\n"
            "                          default 4; tiered: tiers chosen for all matrices together);\n"
            "                          lattice: Y,... add refinement levels, loaded to depth 1,\n"
            "                          2, 3 the blocks take Y,... bits per weight (e.g. 2.5,3.5,4.5)\n"
            "  --tiers Q8:Q4:Q2        tiered: percent of each layer matrix's groups per tier, by\n"
            "                          importance (default 10:20:70)\n"
            "  --calib FILE            run the unquantized model over the UTF-8 text FILE and\n"
            "                          weigh every error by the activations it meets there;\n"
            "                          lattice calibrates on a built-in text unless given one\n"
            "  --no-calib              lattice: do not calibrate (faster, worse)\n"
            "  --calib-tokens N        calibrate on at most the first N tokens (default: lattice\n"
            "                          262144, fewer for large models (see README); tiered 65536)\n"
            "  --calib-probe N         with --bpw, weigh each layer matrix by the KL divergence\n"
            "                          that quantizing it alone causes on the first N of those\n"
            "                          tokens (default 1024, 0 for large models; 0: do not probe)\n"
            "  --router                when calibrating: measure what skipping each block, or\n"
            "                          running it without refinements, does on the text; store a\n"
            "                          router that predicts it, and the mean as a static policy\n"
            "  --router-windows N      windows of 128 tokens to measure on (default 256)\n"
            "  --group-size G          tiered: weights per group, 32, 64, 128 or 256 (default 64)\n"
            "  --refine BITS           tiered: add one refinement layer of 1, 2, 4 or 8 bits\n"
            "  --embed POLICY          embeddings: source, f16, q8, q4, q2 (default q8)\n"
            "  --head POLICY           output head, same choices (default q8)\n"
            "  --layers-per-block K    transformer layers per block (default 1)\n"
            "  --zstd[=LEVEL]          zstd-compress blocks (default level 9)\n"
            "  --threads N             quantization threads (default: all cores)\n"
            "  --recipe FILE.yaml      options and per-tensor overrides (see README); flags given\n"
            "                          on the command line take precedence\n"
            "  --quiet                 no progress on stderr\n"
            "  --json                  print a JSON summary on stdout\n"
            "  --help, --version\n\n"
            "config.json values must lie in these ranges (spec section 5.4): layers 1..4096, hidden\n"
            "size 1..65536, heads 1..4096, KV heads dividing them, head_dim even in 2..1024,\n"
            "intermediate size 1..2^20, vocabulary and context 1..2^24, norm epsilon in [0, 1],\n"
            "rope_theta in [1, 1e12], RoPE scaling parameters in [1e-6, 1e6], token ids -1 or\n"
            "below the vocabulary. A recipe is at most 1 MiB with at most 4096 tensors entries.\n\n"
            "OUT.nsq is written under no name, validated, then renamed into place (a symbolic\n"
            "link there is replaced, not followed). It must be new or a regular file, or link to\n"
            "one, and none of the inputs: a directory, FIFO, device, socket or dangling link is\n"
            "refused before any work. A failed or interrupted conversion leaves OUT.nsq as it\n"
            "was and no other file.\n\n"
            "exit status: 0 success, 1 conversion failed (no output file is left), 2 usage error\n",
            nsqrt_arch_list(1, list, sizeof list));
}

static int parse_policy(const char *s, dense_policy *p)
{
    static const struct { const char *name; dense_policy p; } t[] = {
        {"source", KEEP_SOURCE}, {"f16", KEEP_F16}, {"q8", UNIFORM_Q8}, {"q4", UNIFORM_Q4}, {"q2", UNIFORM_Q2}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(s, t[i].name) == 0) return *p = t[i].p, 0;
    return -1;
}

/* LATTICE unless asked for TIERED or given one of its options; LATTICE
 * calibrates on the built-in text unless given another or --no-calib. */
static int resolve_scheme(convert_job *o)
{
    const char *why = NULL;
    if (o->calib_path && o->no_calib) why = "--calib and --no-calib contradict each other";
    else if ((o->calib_path || o->no_calib) && o->q.lossless) why = "--calib and --no-calib do nothing with --lossless";
    else if (o->scheme == 1 && o->tiered_opts) why = "--tiers, --group-size and --refine are TIERED options, not --scheme lattice's";
    else if (o->q.n_levels && (o->scheme == 0 || o->tiered_opts || o->q.lossless))
        why = "--bpw with refinement levels (X,Y,...) is for lattice (tiered: --refine)";
    else if (o->no_calib && !(o->scheme == 1 || (o->scheme < 0 && !o->tiered_opts)))
        why = "--no-calib is for lattice: tiered calibrates only when given --calib";
    if (why) return fprintf(stderr, TOOL ": %s\n", why), 1;
    o->q.lattice = !o->q.lossless && (o->scheme == 1 || (o->scheme < 0 && !o->tiered_opts));
    if (o->q.lattice && o->q.bpw <= 0) o->q.bpw = 4.0;
    if (o->q.lattice && !o->calib_path && !o->no_calib) {
        o->calib_path = "built-in calib-default.txt";
        o->calib_builtin = 1;
        o->calib_text = nsqconv_calib_text;
        o->calib_len = (size_t)(nsqconv_calib_text_end - nsqconv_calib_text);
    }
    if (o->router && !o->calib_path)
        return fprintf(stderr, TOOL ": --router needs calibration and a quantized file (not --lossless or --no-calib)\n"), 1;
    return 0;
}

/* --bpw X, or X,Y,... : the base and each refinement level's depth, rising. */
static int parse_bpw(const char *arg, quant_opts *q)
{
    char buf[256], *save = NULL;
    snprintf(buf, sizeof buf, "%s", arg);
    q->n_levels = 0;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        double v;
        if (cli_opt_real(TOOL, "--bpw", tok, 0, 32, 1, &v)) return 1;
        if (tok != buf && q->n_levels == LAT_MAX_LEVELS)
            return fprintf(stderr, TOOL ": --bpw %s: at most %d refinement levels\n", arg, LAT_MAX_LEVELS), 1;
        double prev = q->n_levels ? q->level_bpw[q->n_levels - 1] : q->bpw;
        if (tok != buf && v <= prev) return fprintf(stderr, TOOL ": --bpw %s: each depth must take more bits\n", arg), 1;
        if (tok == buf) q->bpw = v;
        else q->level_bpw[q->n_levels++] = v;
    }
    return 0;
}

static int parse_args(int argc, char **argv, convert_job *o)
{
    static const struct option longs[] = {
        {"lossless", no_argument, 0, 'L'}, {"scheme", required_argument, 0, 'S'}, {"tiers", required_argument, 0, 't'}, {"bpw", required_argument, 0, 'b'},
        {"group-size", required_argument, 0, 'g'}, {"refine", required_argument, 0, 'r'},
        {"embed", required_argument, 0, 'e'}, {"head", required_argument, 0, 'H'},
        {"layers-per-block", required_argument, 0, 'k'}, {"zstd", optional_argument, 0, 'z'},
        {"threads", required_argument, 0, 'j'}, {"quiet", no_argument, 0, 'q'}, {"json", no_argument, 0, 'J'},
        {"recipe", required_argument, 0, 'R'}, {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'},
        {"calib", required_argument, 0, 'C'}, {"calib-tokens", required_argument, 0, 'T'}, {"no-calib", no_argument, 0, 'N'},
        {"calib-probe", required_argument, 0, 'P'}, {"router", no_argument, 0, 'O'},
        {"router-windows", required_argument, 0, 'W'},
        {0, 0, 0, 0}};
    uint64_t u = 0;
    int64_t i = 0;
    int c, bad = 0;
    opterr = 0;
    /* each value is checked whole and in range before it is converted (the
     * recipe shares the checks of --tiers, --group-size and --refine) */
    while (!bad && (c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case 'L': o->q.lossless = 1; break;
        case 'S':
            if ((bad = strcmp(optarg, "lattice") && strcmp(optarg, "tiered")))
                fprintf(stderr, TOOL ": --scheme is lattice or tiered, not '%s'\n", optarg);
            o->scheme = !strcmp(optarg, "lattice");
            break;
        case 't':
            o->tiered_opts = 1;
            if ((bad = option_tiers(optarg, o->q.split)))
                fprintf(stderr, TOOL ": --tiers wants Q8:Q4:Q2 percentages in 0..100 summing to 100, not '%s'\n", optarg);
            break;
        case 'b': bad = parse_bpw(optarg, &o->q); break;
        case 'g':
            o->tiered_opts = 1;
            if ((bad = cli_opt_uint(TOOL, "--group-size", optarg, 32, 256, &u) || option_group_size(u)))
                fprintf(stderr, TOOL ": --group-size is 32, 64, 128 or 256\n");
            else o->q.group_size = (uint32_t)u;
            break;
        case 'r':
            o->tiered_opts = 1;
            if ((bad = cli_opt_uint(TOOL, "--refine", optarg, 1, 8, &u) || option_refine(u)))
                fprintf(stderr, TOOL ": --refine is 1, 2, 4 or 8\n");
            else o->q.refine_bits = (uint32_t)u;
            break;
        case 'e': bad = parse_policy(optarg, &o->q.embed) ? fprintf(stderr, TOOL ": unknown --embed %s\n", optarg) : 0; break;
        case 'H': bad = parse_policy(optarg, &o->q.head) ? fprintf(stderr, TOOL ": unknown --head %s\n", optarg) : 0; break;
        case 'k':
            if (!(bad = cli_opt_uint(TOOL, "--layers-per-block", optarg, 1, 65536, &u))) o->layers_per_block = (uint32_t)u;
            break;
        case 'z':
            o->zstd = 1;
            if (optarg && !(bad = cli_opt_int(TOOL, "--zstd", optarg, -7, 22, &i))) o->zstd_level = (int)i;
            break;
        case 'j': if (!(bad = cli_opt_uint(TOOL, "--threads", optarg, 1, 64, &u))) o->q.threads = (int)u; break;
        case 'C': o->calib_path = optarg; break;
        case 'N': o->no_calib = 1; break;
        case 'T':
            o->calib_tokens_set = 1;
            bad = cli_opt_uint(TOOL, "--calib-tokens", optarg, CALIB_MIN_TOKENS, 1ull << 40, &o->calib_tokens);
            break;
        case 'P':
            o->calib_probe_set = 1;
            bad = cli_opt_uint(TOOL, "--calib-probe", optarg, 0, 1u << 24, &o->calib_probe);
            break;
        case 'O': o->router = 1; break;
        case 'W': if (!(bad = cli_opt_uint(TOOL, "--router-windows", optarg, 8, 1 << 20, &u))) o->router_windows = (uint32_t)u; break;
        case 'q': o->quiet = 1; break;
        case 'R': break; /* loaded before the other flags */
        case 'J': o->json = 1; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf(TOOL " %s (format %d.%d)\n", nsq_version_string(), NSQ_FORMAT_MAJOR, NSQ_FORMAT_MINOR); return 0;
        default: fprintf(stderr, TOOL ": unknown option %s\n", argv[optind - 1]); bad = 1;
        }
    }
    if (!bad) bad = resolve_scheme(o);
    if (!bad && argc - optind != 2) {
        fprintf(stderr, TOOL ": expected HF_DIR and OUT.nsq\n");
        bad = 1;
    }
    if (bad) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    o->in = argv[optind];
    o->out = argv[optind + 1];
    return -1;
}

/* A recipe sets defaults; the other flags, parsed after it, override them. */
static int load_recipe_arg(int argc, char **argv, convert_job *o)
{
    for (int i = 1; i < argc; i++) {
        const char *v = strncmp(argv[i], "--recipe=", 9) == 0 ? argv[i] + 9 : strcmp(argv[i], "--recipe") == 0 ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--") == 0) break;
        if (!v) continue;
        recipe_opts ro = {o->layers_per_block, o->zstd, o->zstd_level, o->scheme, 0};
        char err[1024];
        if (recipe_load(v, &ro, &o->q, err, sizeof err)) {
            fprintf(stderr, TOOL ": %s\n", err);
            return CLI_EXIT_USAGE;
        }
        o->layers_per_block = ro.layers_per_block;
        o->zstd = ro.zstd;
        o->zstd_level = ro.zstd_level;
        o->scheme = ro.scheme;
        o->tiered_opts |= ro.tiered;
        o->recipe_path = v;
    }
    return -1;
}

/* ---- summary ---- */
static void print_summary(const convert_job *o, const convert_summary *s, const bpw_plan *bp)
{
    double body = s->body_elements ? 8.0 * (double)s->body_bytes / (double)s->body_elements : 0;
    double body_ref = s->body_elements ? 8.0 * (double)(s->body_bytes + s->refine_bytes) / (double)s->body_elements : 0;
    double file = s->elements ? 8.0 * (double)s->file_size / (double)s->elements : 0;
    double rmse = s->quant_elements > 0 ? sqrt(s->sq_error / s->quant_elements) : 0;
    if (!o->quiet)
        fprintf(stderr, TOOL ": wrote %s: %llu bytes, %.4f bpw body%s, %.4f bpw whole file, %.1f s\n", o->out,
                (unsigned long long)s->file_size, body, o->q.refine_bits ? " (base)" : "", file, s->seconds);
    if (!o->json) return;
    cli_json j;
    cli_json_init(&j, stdout);
    cli_json_object(&j);
    cli_json_kv_cstr(&j, "file", o->out);
    cli_json_kv_cstr(&j, "recipe", o->recipe);
    cli_json_kv_u64(&j, "file_size", s->file_size);
    cli_json_kv_u64(&j, "n_elements", s->elements);
    cli_json_kv_u64(&j, "body_elements", s->body_elements);
    cli_json_kv_u64(&j, "body_bytes", s->body_bytes);
    cli_json_kv_u64(&j, "refinement_bytes", s->refine_bytes);
    cli_json_key(&j, "bpw_body");
    cli_json_fixed6(&j, body);
    cli_json_key(&j, "bpw_body_with_refinements");
    cli_json_fixed6(&j, body_ref);
    cli_json_key(&j, "bpw_file");
    cli_json_fixed6(&j, file);
    cli_json_key(&j, "bpw_target");
    if (o->q.bpw > 0) cli_json_fixed6(&j, o->q.bpw);
    else cli_json_null(&j);
    cli_json_key(&j, "lambda");
    if (bp) cli_json_f64(&j, bp->lambda);
    else cli_json_null(&j);
    cli_json_key(&j, "tiers");
    cli_json_object(&j);
    for (uint32_t k = 0; k < 4; k++) cli_json_kv_u64(&j, nsq_tier_name(k), s->n_tier[k]);
    cli_json_end_object(&j);
    cli_json_key(&j, "rmse_quantized");
    cli_json_f64(&j, rmse);
    cli_json_key(&j, "rmse_refined");
    cli_json_f64(&j, s->quant_elements > 0 ? sqrt(s->sq_error_refined / s->quant_elements) : 0);
    cli_json_key(&j, "calibration_tokens");
    if (o->q.calib) cli_json_u64(&j, o->q.calib->tokens);
    else cli_json_null(&j);
    cli_json_key(&j, "calibration_seconds");
    if (o->q.calib) cli_json_fixed6(&j, o->q.calib->seconds);
    else cli_json_null(&j);
    cli_json_key(&j, "seconds");
    cli_json_fixed6(&j, s->seconds);
    cli_json_end_object(&j);
    cli_json_done(&j);
}

static int check_output(const convert_job *o, const st_model *m, char *err, size_t n)
{
    static const char *names[] = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                  "vocab.json", "merges.txt", "tokenizer.model", "model.safetensors",
                                  "model.safetensors.index.json"};
    enum { N_NAMES = sizeof names / sizeof names[0] };
    char paths[N_NAMES][4096], why[1024];
    const char **in = malloc((N_NAMES + 2 + m->n_shards) * sizeof *in);
    if (!in) return snprintf(err, n, "out of memory"), -1;
    size_t k = 0;
    for (size_t i = 0; i < N_NAMES; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/%s", o->in, names[i]);
        in[k++] = paths[i];
    }
    for (uint32_t i = 0; i < m->n_shards; i++) in[k++] = m->shard_paths[i];
    in[k++] = o->calib_builtin ? NULL : o->calib_path;
    in[k++] = o->recipe_path;
    int rc = cli_output_check(o->out, in, k, why, sizeof why);
    if (rc) snprintf(err, n, "%s: %.700s", o->out, why);
    free(in);
    return rc;
}

/* Checked, and its file created, before any work. */
static int open_output(const convert_job *o, const st_model *m, cli_output *out, char *err, size_t n)
{
    char why[512];
    if (check_output(o, m, err, n)) return -1;
    if (cli_output_open(out, o->out, why, sizeof why)) return snprintf(err, n, "%s: %s", o->out, why), -1;
    return 0;
}

/* Names the finished file OUT, checked again: it may have changed meanwhile. */
static int publish(const convert_job *o, const st_model *m, cli_output *out, uint64_t *size, char *err, size_t n)
{
    char why[512];
    struct stat sb;
    if (check_output(o, m, err, n)) return -1;
    if (cli_output_commit(out, why, sizeof why)) return snprintf(err, n, "%s: %s", o->out, why), -1;
    *size = fstat(out->fd, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    return 0;
}

static int convert(convert_job *o)
{
    char err[1024] = "";
    convert_state cs = {0};
    convert_summary s = {0};
    cli_output out = {NULL, -1, NULL};
    nsq_diag d;
    nsq_status st = 0;
    double t0 = cli_now();
    int rc = convert_open(o, &cs, err, sizeof err);
    if (!rc) rc = open_output(o, &cs.m, &out, err, sizeof err);
    if (!rc) rc = convert_plan(o, &cs, err, sizeof err);
    if (!rc && (rc = convert_write(o, &cs, out.fd, &s, err, sizeof err, &st, &d)) == -2) rc = 0;
    if (!rc && !st) rc = publish(o, &cs.m, &out, &s.file_size, err, sizeof err);
    if (!rc && !st) {
        s.seconds = cli_now() - t0;
        print_summary(o, &s, convert_budget(o, &cs));
    }
    convert_close(&cs);
    cli_output_close(&out);
    if (rc) fprintf(stderr, TOOL ": %s\n", err);
    else if (st) cli_report(TOOL, o->out, st, &d);
    return rc || st ? CLI_EXIT_INVALID : (o->json ? cli_finish_stdout(TOOL) : CLI_EXIT_OK);
}

int main(int argc, char **argv)
{
    convert_job o = {0};
    o.q.group_size = 64;
    o.q.split[0] = 0.10;
    o.q.split[1] = 0.20;
    o.q.split[2] = 0.70;
    o.q.embed = o.q.head = UNIFORM_Q8;
    o.layers_per_block = 1;
    o.zstd_level = 9;
    o.calib_tokens = 65536;
    o.calib_probe = 1024;
    o.router_windows = 256;
    o.q.probe = -1;
    o.scheme = -1;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    o.q.threads = cores > 0 ? (int)(cores > 64 ? 64 : cores) : 1;
    int r = load_recipe_arg(argc, argv, &o);
    if (r < 0) r = parse_args(argc, argv, &o);
    if (r < 0) {
        convert_describe(&o);
        r = convert(&o);
    }
    recipe_free(&o.q);
    return r;
}
