/* nsq-convert - a Hugging Face checkpoint directory to .nsq.
 *
 *   nsq-convert HF_DIR OUT.nsq [options]     (see usage() or --help)
 *
 * Reads config.json and the safetensors shards (memory-mapped), checks every
 * tensor against the architecture, then writes block by block: the embeddings,
 * K transformer layers per block, and the output block. Layer matrices are
 * quantized into importance tiers unless --lossless. The writer validates the
 * finished file before it replaces OUT.nsq. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
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
    const char *in, *out, *recipe_path, *calib_path;
    uint64_t calib_tokens, calib_probe;
    quant_opts q;
    uint32_t layers_per_block;
    int zstd, zstd_level, quiet, json, router;
    uint32_t router_windows;
    const router_fit *fit; /* set once the router is fitted: written with the file */
    const side_files *files; /* set by convert() */
    char recipe[512], calib_hash[24];
} options;

typedef struct {
    uint64_t file_size, elements, body_elements, body_bytes, refine_bytes, n_tier[4];
    double sq_error, sq_error_refined, quant_elements, seconds;
} summary;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: " TOOL " HF_DIR OUT.nsq [options]\n"
            "Converts a Hugging Face checkpoint directory (config.json, model.safetensors or\n"
            "shards with model.safetensors.index.json, tokenizer files) into an .nsq file.\n"
            "Supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, GPT2LMHeadModel.\n\n"
            "options:\n"
            "  --lossless              store every tensor bit-exactly in its source dtype\n"
            "  --tiers Q8:Q4:Q2        percent of each layer matrix's groups per tier, by\n"
            "                          importance (default 10:20:70)\n"
            "  --bpw X                 instead, choose tiers for all layer matrices together so\n"
            "                          the layer blocks take at most X bits per weight\n"
            "  --calib FILE            run the unquantized model over the UTF-8 text FILE and\n"
            "                          weigh every error by the activations it meets there\n"
            "  --calib-tokens N        calibrate on at most the first N tokens (default 65536)\n"
            "  --calib-probe N         with --bpw, weigh each layer matrix by the KL divergence\n"
            "                          that quantizing it alone causes on the first N of those\n"
            "                          tokens (default 1024; 0: do not probe)\n"
            "  --router                with --calib: measure what skipping each block, or running it\n"
            "                          without refinements, does on the text; store a router that\n"
            "                          predicts it from a prompt, and the mean as a static policy\n"
            "  --router-windows N      windows of 128 tokens to measure on (default 256)\n"
            "  --group-size G          weights per group: 32, 64, 128 or 256 (default 64)\n"
            "  --refine BITS           add one refinement layer of 1, 2, 4 or 8 bits per weight\n"
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
            "exit status: 0 success, 1 conversion failed (no output file is left), 2 usage error\n");
}

static int parse_policy(const char *s, dense_policy *p)
{
    static const struct { const char *name; dense_policy p; } t[] = {
        {"source", KEEP_SOURCE}, {"f16", KEEP_F16}, {"q8", UNIFORM_Q8}, {"q4", UNIFORM_Q4}, {"q2", UNIFORM_Q2}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(s, t[i].name) == 0) return *p = t[i].p, 0;
    return -1;
}

static const char *policy_name(dense_policy p)
{
    static const char *n[] = {"source", "f16", "q8", "q4", "q2"};
    return n[p];
}

static int parse_args(int argc, char **argv, options *o)
{
    static const struct option longs[] = {
        {"lossless", no_argument, 0, 'L'}, {"tiers", required_argument, 0, 't'}, {"bpw", required_argument, 0, 'b'},
        {"group-size", required_argument, 0, 'g'}, {"refine", required_argument, 0, 'r'},
        {"embed", required_argument, 0, 'e'}, {"head", required_argument, 0, 'H'},
        {"layers-per-block", required_argument, 0, 'k'}, {"zstd", optional_argument, 0, 'z'},
        {"threads", required_argument, 0, 'j'}, {"quiet", no_argument, 0, 'q'}, {"json", no_argument, 0, 'J'},
        {"recipe", required_argument, 0, 'R'}, {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'},
        {"calib", required_argument, 0, 'C'}, {"calib-tokens", required_argument, 0, 'T'},
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
        case 't':
            if ((bad = option_tiers(optarg, o->q.split)))
                fprintf(stderr, TOOL ": --tiers wants Q8:Q4:Q2 percentages in 0..100 summing to 100, not '%s'\n", optarg);
            break;
        case 'b': bad = cli_opt_real(TOOL, "--bpw", optarg, 0, 32, 1, &o->q.bpw); break;
        case 'g':
            if ((bad = cli_opt_uint(TOOL, "--group-size", optarg, 32, 256, &u) || option_group_size(u)))
                fprintf(stderr, TOOL ": --group-size is 32, 64, 128 or 256\n");
            else o->q.group_size = (uint32_t)u;
            break;
        case 'r':
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
        case 'T': bad = cli_opt_uint(TOOL, "--calib-tokens", optarg, CALIB_MIN_TOKENS, 1ull << 40, &o->calib_tokens); break;
        case 'P': bad = cli_opt_uint(TOOL, "--calib-probe", optarg, 0, 1u << 24, &o->calib_probe); break;
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
    if (!bad && o->calib_path && o->q.lossless) {
        fprintf(stderr, TOOL ": --calib does nothing with --lossless\n");
        bad = 1;
    }
    if (!bad && o->router && (!o->calib_path || o->q.lossless)) {
        fprintf(stderr, TOOL ": --router needs --calib FILE and a quantized file (not --lossless)\n");
        bad = 1;
    }
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
static int load_recipe_arg(int argc, char **argv, options *o)
{
    for (int i = 1; i < argc; i++) {
        const char *v = strncmp(argv[i], "--recipe=", 9) == 0 ? argv[i] + 9 : strcmp(argv[i], "--recipe") == 0 ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--") == 0) break;
        if (!v) continue;
        recipe_opts ro = {o->layers_per_block, o->zstd, o->zstd_level};
        char err[1024];
        if (recipe_load(v, &ro, &o->q, err, sizeof err)) {
            fprintf(stderr, TOOL ": %s\n", err);
            return CLI_EXIT_USAGE;
        }
        o->layers_per_block = ro.layers_per_block;
        o->zstd = ro.zstd;
        o->zstd_level = ro.zstd_level;
        o->recipe_path = v;
    }
    return -1;
}

static void describe_recipe(options *o)
{
    if (o->q.lossless) {
        snprintf(o->recipe, sizeof o->recipe, "lossless layers_per_block=%u zstd=%d", o->layers_per_block,
                 o->zstd ? o->zstd_level : 0);
        return;
    }
    char mode[64];
    if (o->q.bpw > 0) snprintf(mode, sizeof mode, "bpw=%g", o->q.bpw);
    else snprintf(mode, sizeof mode, "tiers=%g:%g:%g", 100 * o->q.split[0], 100 * o->q.split[1], 100 * o->q.split[2]);
    char imp[64] = "importance=magnitude";
    if (o->calib_path)
        snprintf(imp, sizeof imp, "importance=calibrated calib_tokens=%llu calib_probe=%llu", (unsigned long long)o->calib_tokens,
                 (unsigned long long)(o->q.bpw > 0 ? o->calib_probe : 0));
    snprintf(o->recipe, sizeof o->recipe, "%s group_size=%u refine=%u embed=%s head=%s layers_per_block=%u zstd=%d %s",
             mode, o->q.group_size, o->q.refine_bits, policy_name(o->q.embed), policy_name(o->q.head), o->layers_per_block,
             o->zstd ? o->zstd_level : 0, imp);
}

/* ---- metadata and tokenizer ---- */
static nsq_status write_metadata(nsq_writer *w, const hf_config *c, const st_model *m, const options *o)
{
    nsq_status st = 0;
    char hash[24], source[4096];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)c->config_hash);
    const char *base = strrchr(o->in, '/') && strrchr(o->in, '/')[1] ? strrchr(o->in, '/') + 1 : o->in;
    snprintf(source, sizeof source, "%s (%s)", base, c->hf_arch);
#define S(k, v) st = st ? st : nsq_writer_meta_str(w, k, v, strlen(v))
#define U(k, v) st = st ? st : nsq_writer_meta_u64(w, k, v)
#define B(k, v) st = st ? st : nsq_writer_meta_bool(w, k, v)
#define F(k, v) st = st ? st : nsq_writer_meta_f64(w, k, v)
#define I(k, v) st = st ? st : nsq_writer_meta_i64(w, k, v)
    S("general.architecture", c->arch_name);
    S("model.activation", c->activation);
    B("model.attention_bias", c->attention_bias);
    U("model.context_length", c->ctx);
    U("model.head_dim", c->head_dim);
    U("model.hidden_size", c->hidden);
    U("model.intermediate_size", c->inter);
    B("model.mlp_bias", c->mlp_bias);
    U("model.n_heads", c->n_heads);
    U("model.n_kv_heads", c->n_kv_heads);
    U("model.n_layers", c->n_layers);
    F("model.norm.epsilon", c->norm_eps);
    S("model.norm.type", c->norm_type);
    S("model.position", c->position);
    F("model.rope.scaling.factor", c->rope_factor);
    S("model.rope.scaling.type", c->rope_type);
    F("model.rope.theta", c->rope_theta);
    U("model.sliding_window", c->sliding_window);
    B("model.tied_head", c->tied_head);
    U("model.vocab_size", c->vocab);
    if (c->arch == ARCH_GPT2) B("model.conv1d_transposed", !o->q.lossless);
    for (int i = 0; i < ROPE_N_EXTRA; i++) {
        char key[96];
        snprintf(key, sizeof key, "model.rope.scaling.%s", rope_extra_keys[i]);
        if (c->rope_extra_set & (1u << i)) F(key, c->rope_extra[i]);
    }
    S("provenance.converter", TOOL " " NSQ_VERSION_STRING);
    S("provenance.recipe", o->recipe);
    if (o->recipe_path)
        st = st ? st : nsq_writer_meta_str(w, "provenance.recipe.yaml", o->files->recipe, o->files->recipe_len);
    if (o->q.calib) {
        const char *cb = strrchr(o->calib_path, '/') && strrchr(o->calib_path, '/')[1] ? strrchr(o->calib_path, '/') + 1 : o->calib_path;
        S("provenance.calibration.text", cb);
        S("provenance.calibration.text_xxh3", o->calib_hash);
        U("provenance.calibration.tokens", o->q.calib->tokens);
        U("provenance.calibration.window", o->q.calib->window);
    }
    if (o->fit) {
        st = st ? st : nsq_writer_meta_array(w, "router.static_damage", NSQ_META_F64, o->fit->fixed, 3 * o->fit->block_count);
        U("provenance.router.windows", o->fit->windows);
        U("provenance.router.window", o->fit->window);
        U("provenance.router.prompt_tokens", o->fit->prompt_tokens);
        F("provenance.router.lambda", o->fit->lambda);
        U("provenance.router.heldout_windows", o->fit->heldout);
        F("provenance.router.heldout_spearman", o->fit->rho_router);
        F("provenance.router.heldout_spearman_static", o->fit->rho_static);
        F("provenance.router.heldout_spearman_within", o->fit->rho_within);
    }
    S("provenance.source", source);
    S("provenance.source.config_xxh3", hash);
    if (c->dtype[0]) S("provenance.source.dtype", c->dtype);
    const char **names = malloc((m->n_tensors ? m->n_tensors : 1) * sizeof *names);
    if (!names) return NSQ_E_NOMEM;
    for (size_t i = 0; i < m->n_tensors; i++) names[i] = m->tensors[i].name;
    st = st ? st : nsq_writer_meta_array(w, "provenance.source.tensors", NSQ_META_STRING, names, (uint32_t)m->n_tensors);
    free(names);
    B("tokenizer.add_bos", c->add_bos);
    I("tokenizer.bos_id", c->bos_id);
    I("tokenizer.eos_id", c->eos_id);
    if (c->n_eos > 1) st = st ? st : nsq_writer_meta_array(w, "tokenizer.eos_ids", NSQ_META_I64, c->eos_ids, c->n_eos);
#undef S
#undef U
#undef B
#undef F
#undef I
    return st;
}

static int exists(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, R_OK) == 0;
}

static void side_files_free(side_files *f)
{
    for (uint32_t i = 0; i < f->n; i++) free(f->data[i]);
    free(f->recipe);
}

/* tokenizer.json if present, else GPT-2 vocab.json + merges.txt, else
 * SentencePiece tokenizer.model; tokenizer_config.json goes along. Names are
 * listed in the byte order the format requires. A tokenizer that libnsq
 * cannot build from them, or that produces ids past the embedding's `vocab`
 * rows, is not embedded. */
static int read_tokenizer(const char *dir, uint64_t vocab, side_files *f, char *err, size_t n)
{
    static const char *sets[3][4] = {{"tokenizer.json", "tokenizer_config.json", NULL},
                                     {"merges.txt", "tokenizer_config.json", "vocab.json", NULL},
                                     {"tokenizer.model", "tokenizer_config.json", NULL}};
    static const nsq_tokenizer_kind kinds[3] = {NSQ_TOK_HF_JSON, NSQ_TOK_GPT2_BPE, NSQ_TOK_SENTENCEPIECE};
    int k = exists(dir, "tokenizer.json") ? 0 : exists(dir, "vocab.json") && exists(dir, "merges.txt") ? 1
            : exists(dir, "tokenizer.model") ? 2 : -1;
    if (k < 0) {
        snprintf(err, n, "%s: no tokenizer (tokenizer.json, vocab.json + merges.txt, or tokenizer.model)", dir);
        return -1;
    }
    f->kind = kinds[k];
    for (int i = 0; sets[k][i]; i++) {
        char path[4096], why[256];
        size_t size = 0;
        snprintf(path, sizeof path, "%s/%s", dir, sets[k][i]);
        if (!exists(dir, sets[k][i]) && strcmp(sets[k][i], "tokenizer_config.json") == 0) continue;
        if (!(f->data[f->n] = cli_read_file(path, &size, why, sizeof why)))
            return snprintf(err, n, "%.700s: cannot read: %s", path, why), -1;
        f->names[f->n] = sets[k][i];
        f->sizes[f->n++] = size;
    }
    nsq_tokenizer *t = NULL;
    nsq_diag d;
    cli_diag_init(&d);
    nsq_status st = nsq_tokenizer_from_files(f->kind, f->n, f->names, (const uint8_t *const *)f->data, f->sizes, &t, &d);
    uint32_t ids = nsq_tokenizer_vocab_size(t);
    nsq_tokenizer_free(t);
    if (!st && ids > vocab) {
        snprintf(err, n, "%s: the tokenizer has ids up to %u, but the model's vocab_size is %llu", dir, ids - 1,
                 (unsigned long long)vocab);
        return -1;
    }
    /* libnsq reads no tokenizer.model: such a file is stored as the format allows, unchecked */
    if (st && !(st == NSQ_E_UNSUPPORTED && f->kind == NSQ_TOK_SENTENCEPIECE)) {
        snprintf(err, n, "%s: the tokenizer does not load: %s", dir, cli_message(dir, st, &d));
        return -1;
    }
    return 0;
}

static int read_side_files(const options *o, uint64_t vocab, side_files *f, char *err, size_t n)
{
    char why[256];
    if (read_tokenizer(o->in, vocab, f, err, n)) return -1;
    if (o->recipe_path && !(f->recipe = cli_read_file(o->recipe_path, &f->recipe_len, why, sizeof why)))
        return snprintf(err, n, "--recipe %s: cannot read: %s", o->recipe_path, why), -1;
    return 0;
}

static nsq_status write_tokenizer(nsq_writer *w, const side_files *f)
{
    nsq_status st = nsq_writer_tokenizer(w, f->kind);
    for (uint32_t i = 0; i < f->n && !st; i++) st = nsq_writer_tokenizer_file(w, f->names[i], f->data[i], f->sizes[i]);
    return st;
}

/* ---- blocks ---- */
typedef struct {
    const tensor_plan *p;
    const quant_opts *q;
    const bpw_plan *bp;
    const size_t *idx; /* plan indices of this block's tensors */
    encoded *enc;
    int *failed;
    char (*errs)[256];
} block_job;

static void encode_one(size_t k, void *arg)
{
    block_job *j = arg;
    j->failed[k] = policy_encode(j->p, j->idx[k], j->q, j->bp, &j->enc[k], j->errs[k], sizeof j->errs[k]);
}

typedef struct {
    size_t done, total;
    uint64_t bytes_done, bytes_total;
    double t0;
    int show;
} progress;

static void progress_show(progress *pg)
{
    if (!pg->show) return;
    double dt = cli_now() - pg->t0, rate = dt > 0 ? (double)pg->bytes_done / dt : 0;
    double eta = rate > 0 ? (double)(pg->bytes_total - pg->bytes_done) / rate : 0;
    fprintf(stderr, "\r" TOOL ": %zu/%zu tensors  %.1f MB/s  ETA %.0fs   ", pg->done, pg->total, rate / 1e6, eta);
    if (pg->done == pg->total) fputc('\n', stderr);
}

static nsq_status add_encoded(nsq_writer *w, const plan_tensor *t, const encoded *e, const quant_opts *q, summary *s)
{
    nsq_scheme_info si;
    int grouped = !nsq_scheme_get(e->scheme, &si) && si.grouped; /* quantized, with importance */
    nsq_status st = nsq_writer_add_tensor(w, t->src->name, (nsq_scheme)e->scheme, e->n_dims, e->dims, e->group_size,
                                          e->data, e->size);
    if (!st && e->refine) st = nsq_writer_add_refinement(w, 1, q->refine_bits, e->refine, e->refine_size);
    if (!st && grouped && !q->lossless)
        st = nsq_writer_importance_entry(w, t->src->name, e->group_stats, e->n_groups, e->col_stats, e->n_col_stats);
    s->elements += t->src->n_elements;
    if (t->layer >= 0) {
        s->body_elements += t->src->n_elements;
        s->body_bytes += e->size;
        s->refine_bytes += e->refine_size;
    }
    for (int k = 0; k < 4; k++) s->n_tier[k] += e->n_tier[k];
    if (grouped) {
        s->sq_error += e->sq_error;
        s->sq_error_refined += e->refine ? e->sq_error_refined : e->sq_error;
        s->quant_elements += (double)t->src->n_elements;
    }
    return st;
}

/* Encodes the tensors idx[0..n) in parallel and adds them in order as one block. */
static int write_block(nsq_writer *w, const options *o, const tensor_plan *p, const bpw_plan *bp, nsq_block_kind kind,
                       uint32_t first, uint32_t layers, const size_t *idx, size_t n, progress *pg, summary *s, char *err,
                       size_t errlen)
{
    encoded *enc = calloc(n ? n : 1, sizeof *enc);
    int *failed = calloc(n ? n : 1, sizeof *failed);
    char(*errs)[256] = calloc(n ? n : 1, sizeof *errs);
    int rc = !enc || !failed || !errs ? (snprintf(err, errlen, "out of memory"), -1) : 0;
    if (!rc) {
        block_job j = {p, &o->q, bp, idx, enc, failed, errs};
        parallel_for(n, o->q.threads, encode_one, &j);
    }
    nsq_status st = rc ? 0 : nsq_writer_begin_block(w, kind, first, layers, o->zstd ? NSQ_COMP_ZSTD : NSQ_COMP_NONE);
    for (size_t k = 0; k < n && !rc && !st; k++) {
        if (failed[k]) {
            snprintf(err, errlen, "%s", errs[k]);
            rc = -1;
            break;
        }
        st = add_encoded(w, &p->t[idx[k]], &enc[k], &o->q, s);
        st_release(p->t[idx[k]].src);
        pg->done++;
        pg->bytes_done += p->t[idx[k]].src->size;
        progress_show(pg);
    }
    if (!rc && !st) st = nsq_writer_end_block(w, NULL);
    for (size_t k = 0; k < n && enc; k++) encoded_free(&enc[k]);
    free(enc);
    free(failed);
    free(errs);
    return rc ? rc : st ? -2 : 0;
}

/* Embeddings, then K layers per block, then the final norm and head. */
static int write_blocks(nsq_writer *w, const options *o, const hf_config *c, const tensor_plan *p, const bpw_plan *bp,
                        summary *s, char *err, size_t n)
{
    size_t *idx = malloc((p->n ? p->n : 1) * sizeof *idx), k = 0;
    progress pg = {0, p->n, 0, 0, cli_now(), !o->quiet && isatty(2)};
    if (!idx) return snprintf(err, n, "out of memory"), -1;
    for (size_t i = 0; i < p->n; i++) pg.bytes_total += p->t[i].src->size;
    for (size_t i = 0; i < p->n; i++)
        if (p->t[i].role == ROLE_EMBED || p->t[i].role == ROLE_POS_EMBED) idx[k++] = i;
    int rc = write_block(w, o, p, bp, NSQ_BLOCK_EMBEDDINGS, 0, 0, idx, k, &pg, s, err, n);
    for (uint64_t L = 0; L < c->n_layers && !rc; L += o->layers_per_block) {
        uint64_t end = L + o->layers_per_block < c->n_layers ? L + o->layers_per_block : c->n_layers;
        k = 0;
        for (size_t i = 0; i < p->n; i++)
            if (p->t[i].layer >= (int)L && p->t[i].layer < (int)end) idx[k++] = i;
        rc = write_block(w, o, p, bp, NSQ_BLOCK_LAYERS, (uint32_t)L, (uint32_t)(end - L), idx, k, &pg, s, err, n);
    }
    k = 0;
    for (size_t i = 0; i < p->n; i++)
        if (p->t[i].layer < 0 && (p->t[i].role == ROLE_NORM || p->t[i].role == ROLE_HEAD)) idx[k++] = i;
    if (!rc) rc = write_block(w, o, p, bp, NSQ_BLOCK_OUTPUT, 0, 0, idx, k, &pg, s, err, n);
    free(idx);
    return rc;
}

/* ---- summary ---- */
static void print_summary(const options *o, const summary *s, const bpw_plan *bp)
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

static const char *importance_provenance(const options *o, char *buf, size_t n)
{
    if (!o->q.calib) return "magnitude: per-group sum of squared weights; no calibration data";
    snprintf(buf, n,
             "calibrated: mean x^2 of each input column over %llu tokens of %s (xxh3 %s), windows of %u tokens from "
             "position 0, unquantized weights; group importance sum_j E[x_j^2] w_j^2",
             (unsigned long long)o->q.calib->tokens, o->calib_path, o->calib_hash, o->q.calib->window);
    return buf;
}

/* The writer names the file /proc/self/fd/N in its messages; the caller names it better. */
static void unname(nsq_diag *d, int fd)
{
    char pre[40];
    size_t k = (size_t)snprintf(pre, sizeof pre, "/proc/self/fd/%d: ", fd);
    if (strncmp(d->message, pre, k) == 0) memmove(d->message, d->message + k, strlen(d->message + k) + 1);
}

/* Writes the whole file into fd (empty): 0, -1 with a message in err, or -2
 * with the writer's status in *st and its diagnostic in d. */
static int write_file(const options *o, int fd, const hf_config *c, const st_model *m, const tensor_plan *p,
                      const bpw_plan *bp, summary *s, char *err, size_t errlen, nsq_status *st, nsq_diag *d)
{
    nsq_writer *w = NULL;
    char prov[1024];
    int rc = 0;
    cli_diag_init(d);
    *st = nsq_writer_open_fd(fd, &w, d);
    if (!*st && o->zstd) *st = nsq_writer_zstd_level(w, o->zstd_level);
    if (!*st) *st = write_metadata(w, c, m, o);
    if (!*st) *st = write_tokenizer(w, o->files);
    if (!rc && !*st && !o->q.lossless)
        *st = nsq_writer_importance(w, o->q.calib ? NSQ_IMP_CALIBRATED : NSQ_IMP_MAGNITUDE, o->q.bpw > 0 ? o->q.bpw : 0,
                                    importance_provenance(o, prov, sizeof prov));
    if (!rc && !*st && o->fit) {
        const router_fit *f = o->fit;
        nsq_router_params rp = {1, f->input_dim, 0, NSQ_ACT_IDENTITY, f->block_count, 1.0f, f->mask,
                                f->in_mean, f->in_scale, NULL, NULL, f->w2, f->b2};
        *st = nsq_writer_router(w, &rp);
    }
    if (!rc && !*st && (rc = write_blocks(w, o, c, p, bp, s, err, errlen)) == -2) rc = 0, *st = NSQ_E_ARG;
    if (w && (rc || *st)) {
        if (*st) *st = nsq_writer_end_block(w, d); /* the writer's sticky error, with its message */
        nsq_writer_abort(w);
    } else if (w) {
        *st = nsq_writer_finish(w, d);
    }
    if (*st) unname(d, fd);
    return rc ? -1 : *st ? -2 : 0;
}

/* A scratch file next to OUT holding the file o describes, unnamed and
 * readable at path (/proc/self/fd/N) until closed: its fd, or -1 with a
 * message in err. */
static int write_scratch(const options *o, const hf_config *c, const st_model *m, const tensor_plan *p,
                         const bpw_plan *bp, char path[32], char *err, size_t errlen)
{
    summary s = {0};
    nsq_status st;
    nsq_diag d;
    char why[512];
    int fd = cli_tmpfile(o->out, why, sizeof why);
    if (fd < 0) return snprintf(err, errlen, "%s: %s", o->out, why), -1;
    int rc = write_file(o, fd, c, m, p, bp, &s, err, errlen, &st, &d);
    if (rc == -2) snprintf(err, errlen, "%s: scratch copy of the model: %s", o->out, cli_message(o->out, st, &d));
    if (rc) return close(fd), -1;
    snprintf(path, 32, "/proc/self/fd/%d", fd);
    return fd;
}

/* --calib: an unquantized copy of the model in an unnamed file next to the
 * output, run over the text by the runtime. */
static int calibrate(options *o, const hf_config *c, const st_model *m, const tensor_plan *p, calib_stats *cs, char *err,
                     size_t errlen)
{
    char path[32], why[256];
    options lo = *o;
    size_t len = 0;
    char *text = cli_read_file(o->calib_path, &len, why, sizeof why);
    if (!text) return snprintf(err, errlen, "--calib %s: cannot read: %s", o->calib_path, why), -1;
    snprintf(o->calib_hash, sizeof o->calib_hash, "%016llx", (unsigned long long)nsq_xxh3(text, len));
    free(text);
    lo.q.lossless = 1;
    lo.q.calib = NULL;
    lo.zstd = 0;
    lo.quiet = 1;
    lo.recipe_path = NULL;
    int fd = write_scratch(&lo, c, m, p, NULL, path, err, errlen);
    uint64_t probe = o->q.bpw > 0 ? o->calib_probe : 0;
    int rc = fd < 0 ? -1 : calib_collect(path, o->calib_path, o->calib_tokens, probe, o->q.threads, cs, err, errlen);
    if (fd >= 0) close(fd);
    if (!rc && !o->quiet)
        fprintf(stderr, TOOL ": calibrated on %llu tokens of %s in %.1f s\n", (unsigned long long)cs->tokens, o->calib_path,
                cs->seconds);
    return rc ? -1 : 0;
}

/* --calib-probe: each budgeted matrix is quantized alone to 4 bits and the
 * KL divergence this causes on the probe tokens is measured; its errors are
 * rescaled so that its 4-bit error equals that divergence. The budget then
 * trades predicted divergence against bits across all matrices. */
static int weigh_tensors(const options *o, const hf_config *c, const st_model *m, const tensor_plan *p, bpw_plan *bp,
                         char *err, size_t errlen)
{
    char path[32];
    double t0 = cli_now();
    int rc = 0;
    for (size_t i = 0; i < p->n && !rc; i++) {
        if (!policy_budgeted(p, i, &o->q)) continue;
        options po = *o;
        double kld = 0, e4 = policy_tensor_error(p, i, &o->q, bp, NSQ_TIER_Q4);
        po.q.probe = (long)i, po.q.bpw = 0, po.zstd = 0, po.quiet = 1, po.recipe_path = NULL;
        int fd = write_scratch(&po, c, m, p, NULL, path, err, errlen);
        rc = fd < 0 ? -1 : calib_kld(path, o->q.calib, o->q.threads, &kld, err, errlen);
        if (fd >= 0) close(fd);
        if (!rc && e4 > 0) policy_scale_errors(p, i, &o->q, bp, (kld > 1e-12 ? kld : 1e-12) / e4);
    }
    if (!rc && !o->quiet)
        fprintf(stderr, TOOL ": probed the sensitivity of each layer matrix in %.1f s\n", cli_now() - t0);
    return rc ? -1 : 0;
}

/* --router: the file as it will be, unnamed next to the output, run over the
 * calibration text to measure each block choice's damage; then the fit. */
static int fit_router(options *o, const hf_config *c, const st_model *m, const tensor_plan *p, const bpw_plan *bp,
                      router_fit *rf, char *err, size_t errlen)
{
    char path[32];
    options lo = *o;
    lo.zstd = 0, lo.quiet = 1, lo.json = 0;
    int fd = write_scratch(&lo, c, m, p, bp, path, err, errlen);
    int rc = fd < 0 ? -1 : router_fit_run(path, o->calib_path, o->router_windows, o->q.threads, rf, err, errlen);
    if (fd >= 0) close(fd);
    if (!rc && !o->quiet)
        fprintf(stderr,
                TOOL ": router fitted on %u windows of %u tokens in %.1f s; held out (%u windows): rank correlation of "
                     "predicted and measured damage %.3f (static policy %.3f; across prompts, per block and choice %.3f)\n",
                rf->windows, rf->window, rf->seconds, rf->heldout, rf->rho_router, rf->rho_static, rf->rho_within);
    return rc ? -1 : 0;
}

/* OUT must be new, or a regular file that is none of the files read. */
static int check_output(const options *o, const st_model *m, char *err, size_t n)
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
    in[k++] = o->calib_path;
    in[k++] = o->recipe_path;
    int rc = cli_output_check(o->out, in, k, why, sizeof why);
    if (rc) snprintf(err, n, "%s: %.700s", o->out, why);
    free(in);
    return rc;
}

/* Checked, and its file created, before any work. */
static int open_output(const options *o, const st_model *m, cli_output *out, char *err, size_t n)
{
    char why[512];
    if (check_output(o, m, err, n)) return -1;
    if (cli_output_open(out, o->out, why, sizeof why)) return snprintf(err, n, "%s: %s", o->out, why), -1;
    return 0;
}

/* Names the finished file OUT, checked again: it may have changed meanwhile. */
static int publish(const options *o, const st_model *m, cli_output *out, uint64_t *size, char *err, size_t n)
{
    char why[512];
    struct stat sb;
    if (check_output(o, m, err, n)) return -1;
    if (cli_output_commit(out, why, sizeof why)) return snprintf(err, n, "%s: %s", o->out, why), -1;
    *size = fstat(out->fd, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    return 0;
}

static int convert(options *o)
{
    char err[1024] = "";
    hf_config c;
    st_model m = {0};
    tensor_plan p = {0};
    bpw_plan bp = {0};
    calib_stats cs = {0};
    router_fit rf = {0};
    summary s = {0};
    side_files files = {0};
    cli_output out = {NULL, -1, NULL};
    nsq_diag d;
    nsq_status st = 0;
    double t0 = cli_now();
    o->files = &files;
    int rc = hf_load_config(o->in, &c, err, sizeof err);
    if (!rc) rc = st_open_dir(o->in, &m, err, sizeof err);
    if (!rc) rc = read_side_files(o, c.vocab, &files, err, sizeof err);
    if (!rc) rc = open_output(o, &m, &out, err, sizeof err);
    if (!rc) rc = arch_plan(&c, &m, &p, err, sizeof err);
    if (!rc && o->calib_path && !(rc = calibrate(o, &c, &m, &p, &cs, err, sizeof err))) o->q.calib = &cs;
    if (!rc && o->q.bpw > 0 && !o->q.lossless) {
        rc = policy_measure(&p, &o->q, &bp, err, sizeof err);
        if (!rc && o->q.calib && o->q.calib->probe_tokens) rc = weigh_tensors(o, &c, &m, &p, &bp, err, sizeof err);
        if (!rc) rc = policy_budget(&p, &o->q, &bp, err, sizeof err);
    }
    if (!rc && o->router && !(rc = fit_router(o, &c, &m, &p, o->q.bpw > 0 ? &bp : NULL, &rf, err, sizeof err))) o->fit = &rf;
    if (!rc && (rc = write_file(o, out.fd, &c, &m, &p, o->q.bpw > 0 && !o->q.lossless ? &bp : NULL, &s, err, sizeof err, &st,
                                &d)) == -2)
        rc = 0;
    if (!rc && !st) rc = publish(o, &m, &out, &s.file_size, err, sizeof err);
    if (!rc && !st) {
        s.seconds = cli_now() - t0;
        print_summary(o, &s, o->q.bpw > 0 && !o->q.lossless ? &bp : NULL);
    }
    bpw_plan_free(&bp);
    router_fit_free(&rf);
    calib_free(&cs);
    arch_plan_free(&p);
    cli_output_close(&out);
    side_files_free(&files);
    st_close(&m);
    if (rc) fprintf(stderr, TOOL ": %s\n", err);
    else if (st) cli_report(TOOL, o->out, st, &d);
    return rc || st ? CLI_EXIT_INVALID : (o->json ? cli_finish_stdout(TOOL) : CLI_EXIT_OK);
}

int main(int argc, char **argv)
{
    options o = {0};
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
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    o.q.threads = cores > 0 ? (int)(cores > 64 ? 64 : cores) : 1;
    int r = load_recipe_arg(argc, argv, &o);
    if (r < 0) r = parse_args(argc, argv, &o);
    if (r < 0) {
        describe_recipe(&o);
        r = convert(&o);
    }
    recipe_free(&o.q);
    return r;
}
