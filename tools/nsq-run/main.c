/* nsq-run - generates a continuation of a prompt with a .nsq model on the CPU.
 *
 *   nsq-run MODEL.nsq "prompt" [options]   (see usage())
 *
 * Only the continuation goes to stdout, streamed as tokens are produced, with
 * UTF-8 sequences split across tokens held back until complete; diagnostics
 * and --stats go to stderr. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cli_route.h"
#include "nsqrt.h"

#define TOOL "nsq-run"

typedef struct {
    const char *model, *prompt, *prompt_ids, *dump_logits;
    uint32_t n, top_k, threads;
    float temp, top_p;
    uint64_t seed;
    int ignore_eos, stats, print_ids, no_mmap, max_refine, plan, cold, exact, route_set;
    uint64_t max_memory;
    const char *skip_blocks;
    nsqrt_route_opts route;
} options;

static void usage(FILE *out)
{
    fprintf(out, "usage: " TOOL " MODEL.nsq \"prompt\" [options]\n"
                 "       " TOOL " MODEL.nsq --plan [--max-memory SIZE] [--route [MODE] \"prompt\"]\n"
                 "Prints the prompt's continuation on stdout.\n\n"
                 "options:\n"
                 "  -n N                tokens to generate (default 64)\n"
                 "  --temp T            sampling temperature; 0 = greedy (default 0)\n"
                 "  --top-k K           sample among the K most likely tokens (default: all)\n"
                 "  --top-p P           sample among the most likely tokens of total mass P (default 1)\n"
                 "  --seed S            random seed for sampling (default 1)\n"
                 "  --threads N         threads (default: all cores)\n"
                 "  --prompt-ids 1,2,3  use these token ids as the prompt instead of text\n"
                 "  --dump-logits PATH  write the prompt positions' logits, f32 LE [n_positions][vocab]\n"
                 "  --stop-at-eos       stop at the end-of-sequence token (default)\n"
                 "  --ignore-eos        keep generating past it\n"
                 "  --print-ids         print generated token ids instead of text\n"
                 "  --refine-levels N   use at most N refinement levels of each block (default: all)\n"
                 "  --no-mmap           read blocks with positioned reads instead of mapping the file\n"
                 "  --max-memory SIZE   keep resident weights within SIZE (e.g. 512M, 2G): layer blocks\n"
                 "                      stream from the file; refinements only where they fit\n"
                 "                      (LATTICE levels: each block's depth by predicted damage).\n"
                 "                      The KV cache and scratch buffers are not part of SIZE.\n"
                 "  --cold              with --max-memory: drop each block's pages from the page\n"
                 "                      cache after reading it, so every read comes from the disk\n"
                 "  --exact             multiply quantized weights by f32 activations (slower)\n"
                 "                      instead of activations rounded to int8 in blocks of 64\n"
                 "  --route [MODE]      choose per block: skip, run from its base, or with its\n"
                 "                      refinements, within --max-memory, from the prompt. MODE:\n"
                 "                      router (default: the file's router), static (the file's\n"
                 "                      static policy: the default with --max-memory when the file\n"
                 "                      has a router), skip-only, random[:SEED], K (run K blocks,\n"
                 "                      skip the rest), none (stream every block, no routing)\n"
                 "  --route-print       print each block's choice and predicted damage on stderr\n"
                 "  --skip-blocks 2,3   skip these blocks (an experiment; implies routing)\n"
                 "  --plan              print what each part needs, disk reads per token and the\n"
                 "                      expected speed at --max-memory, then exit\n"
                 "  --stats             speed, peak RSS and weight residency, on stderr\n"
                 "  --help, --version\n\n"
                 "exit status: 0 success, 1 error, 2 usage error\n");
}

static int parse_args(int argc, char **argv, options *o)
{
    static const struct option longs[] = {
        {"temp", required_argument, 0, 't'}, {"top-k", required_argument, 0, 'k'}, {"top-p", required_argument, 0, 'p'},
        {"seed", required_argument, 0, 's'}, {"threads", required_argument, 0, 'j'},
        {"prompt-ids", required_argument, 0, 'I'}, {"dump-logits", required_argument, 0, 'D'},
        {"stop-at-eos", no_argument, 0, 'E'}, {"ignore-eos", no_argument, 0, 'G'}, {"print-ids", no_argument, 0, 'P'},
        {"refine-levels", required_argument, 0, 'R'}, {"no-mmap", no_argument, 0, 'M'}, {"stats", no_argument, 0, 'S'},
        {"max-memory", required_argument, 0, 'X'}, {"plan", no_argument, 0, 'L'}, {"cold", no_argument, 0, 'C'},
        {"exact", no_argument, 0, 'Z'}, {"route", optional_argument, 0, 'r'}, {"route-print", no_argument, 0, 'Q'},
        {"skip-blocks", required_argument, 0, 'K'},
        {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};
    double v = 0;
    uint64_t u = 0;
    int c, bad = 0;
    opterr = 0;
    /* each value is checked whole and in range before it is converted */
    while (!bad && (c = getopt_long(argc, argv, "n:", longs, NULL)) != -1) {
        switch (c) {
        case 'n': if (!(bad = cli_opt_uint(TOOL, "-n", optarg, 0, 1000000000, &u))) o->n = (uint32_t)u; break;
        case 't': if (!(bad = cli_opt_real(TOOL, "--temp", optarg, 0, 100, 0, &v))) o->temp = (float)v; break;
        case 'k': if (!(bad = cli_opt_uint(TOOL, "--top-k", optarg, 0, 1000000000, &u))) o->top_k = (uint32_t)u; break;
        case 'p': if (!(bad = cli_opt_real(TOOL, "--top-p", optarg, 0, 1, 1, &v))) o->top_p = (float)v; break;
        case 's': bad = cli_opt_uint(TOOL, "--seed", optarg, 0, UINT64_MAX, &o->seed); break;
        case 'j': if (!(bad = cli_opt_uint(TOOL, "--threads", optarg, 1, 64, &u))) o->threads = (uint32_t)u; break;
        case 'R': if (!(bad = cli_opt_uint(TOOL, "--refine-levels", optarg, 0, 16, &u))) o->max_refine = (int)u; break;
        case 'I': o->prompt_ids = optarg; break;
        case 'D': o->dump_logits = optarg; break;
        case 'E': o->ignore_eos = 0; break;
        case 'G': o->ignore_eos = 1; break;
        case 'P': o->print_ids = 1; break;
        case 'M': o->no_mmap = 1; break;
        case 'S': o->stats = 1; break;
        case 'X':
            if ((bad = cli_parse_size(optarg, &o->max_memory)))
                fprintf(stderr, TOOL ": --max-memory wants a size such as 512M or 2G, not '%s'\n", optarg);
            break;
        case 'L': o->plan = 1; break;
        case 'C': o->cold = 1; break;
        case 'Z': o->exact = 1; break;
        case 'r':
            o->route_set = 1;
            if ((bad = cli_route_option(optarg, argc, argv, &optind, &o->route)))
                fprintf(stderr, TOOL ": --route wants router, static, skip-only, random[:SEED], none or a "
                                     "block count in 1..65536, not '%s'\n", optarg);
            break;
        case 'Q': o->route.print = 1; break;
        case 'K': o->skip_blocks = optarg; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf(TOOL " %s (format %d.%d)\n", nsq_version_string(), NSQ_FORMAT_MAJOR, NSQ_FORMAT_MINOR); return 0;
        default: bad = 1; fprintf(stderr, TOOL ": unknown option or missing value: %s\n", argv[optind - 1]);
        }
    }
    if (!bad && o->route.mode == NSQRT_ROUTE_ORACLE) {
        fprintf(stderr, TOOL ": --route oracle measures damages on a text: see nsq-perplexity\n");
        bad = 1;
    }
    int want = o->prompt_ids ? 1 : 2;
    if (!bad && o->plan && argc - optind == 1) want = 1;
    if (!bad && argc - optind != want) {
        fprintf(stderr, TOOL ": expected MODEL.nsq and %s\n", o->prompt_ids ? "no prompt text" : "a prompt");
        bad = 1;
    }
    if (bad) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    o->model = argv[optind];
    o->prompt = want == 2 ? argv[optind + 1] : NULL;
    return -1;
}

/* --prompt-ids "1,2,3": decimal ids below vocab, comma-separated. */
static int parse_ids(const char *s, uint32_t vocab, int32_t **ids, size_t *n)
{
    size_t cap = 0;
    *n = 0;
    *ids = NULL;
    do {
        uint64_t v;
        size_t len = strcspn(s, ",");
        if (cli_parse_count(s, len, vocab - 1, &v) || (s[len] && !s[len + 1])) return -1;
        if (*n == cap) {
            int32_t *grown = realloc(*ids, (cap = cap ? 2 * cap : 16) * sizeof *grown);
            if (!grown) return -1;
            *ids = grown;
        }
        (*ids)[(*n)++] = (int32_t)v;
        s += len + (s[len] != 0);
    } while (*s);
    return 0;
}

/* ---- output ---- */
typedef struct {
    char buf[256];
    size_t len;
} utf8_out;

/* Length of the prefix of p[0..n) that does not end inside a UTF-8 sequence. */
static size_t complete_prefix(const char *p, size_t n)
{
    size_t i = n, back = 0;
    while (i > 0 && back < 4 && ((unsigned char)p[i - 1] & 0xC0) == 0x80) i--, back++;
    if (i == 0) return n;
    unsigned char lead = (unsigned char)p[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return need > back + 1 && need > 1 ? i - 1 : n;
}

static void emit(utf8_out *u, const char *bytes, size_t n, int flush)
{
    if (u->len + n > sizeof u->buf) { /* never more than one partial sequence is held */
        fwrite(u->buf, 1, u->len, stdout);
        u->len = 0;
    }
    if (n > sizeof u->buf) {
        fwrite(bytes, 1, n, stdout);
        n = 0;
    }
    memcpy(u->buf + u->len, bytes, n);
    u->len += n;
    size_t k = flush ? u->len : complete_prefix(u->buf, u->len);
    fwrite(u->buf, 1, k, stdout);
    memmove(u->buf, u->buf + k, u->len - k);
    u->len -= k;
    fflush(stdout);
}

static int dump_logits(const char *path, const float *logits, size_t n)
{
    FILE *fp = fopen(path, "wb");
    int ok = fp && fwrite(logits, sizeof *logits, n, fp) == n; /* the host is little-endian */
    if (fp && fclose(fp)) ok = 0;
    if (!ok) fprintf(stderr, TOOL ": %s: cannot write\n", path);
    return ok ? 0 : -1;
}

/* ---- generation ---- */
typedef struct {
    double prompt_s, gen_s;
    size_t prompt_n, gen_n;
    uint64_t kv, scratch;
} timing;

static int generate(const options *o, const nsqrt_model *m, const nsq_tokenizer *tok, const int32_t *prompt, size_t n_prompt,
                    timing *tm)
{
    nsqrt_sampler sm;
    const nsqrt_config *c = nsqrt_model_config(m);
    uint32_t V = c->vocab;
    if (n_prompt + o->n > c->ctx) {
        fprintf(stderr, TOOL ": prompt (%zu tokens) + -n %u exceeds the model's context of %u tokens\n", n_prompt, o->n,
                c->ctx);
        return -1;
    }
    float *logits = malloc((o->dump_logits ? n_prompt : 1) * (size_t)V * sizeof *logits);
    nsqrt_state *st = logits ? nsqrt_state_new(m, (uint32_t)n_prompt, o->threads) : NULL;
    if (!st || nsqrt_sampler_init(&sm, V, o->temp, o->top_k, o->top_p, o->seed)) {
        fprintf(stderr, TOOL ": out of memory\n");
        nsqrt_state_free(st);
        free(logits);
        return -1;
    }
    nsqrt_state_set_exact(st, o->exact);
    nsqrt_state_bytes(m, (uint32_t)n_prompt, &tm->kv, &tm->scratch);
    double t0 = cli_now();
    int rc = nsqrt_forward(m, st, prompt, (uint32_t)n_prompt, 0, logits, o->dump_logits != NULL);
    tm->prompt_s = cli_now() - t0;
    tm->prompt_n = n_prompt;
    if (!rc && o->dump_logits) rc = dump_logits(o->dump_logits, logits, n_prompt * V);
    const float *last = logits + (o->dump_logits ? (n_prompt - 1) * (size_t)V : 0);
    utf8_out out = {{0}, 0};
    int32_t prev = prompt[n_prompt - 1], next = 0;
    t0 = cli_now();
    for (uint32_t i = 0; i < o->n && !rc; i++) {
        next = nsqrt_sampler_next(&sm, last);
        if (next == c->eos_id && !o->ignore_eos) break;
        if (o->print_ids) {
            printf("%s%d", i ? " " : "", next);
            fflush(stdout);
        } else {
            char piece[256];
            size_t len;
            if (!nsq_token_bytes(tok, prev, next, piece, sizeof piece, &len)) emit(&out, piece, len < sizeof piece ? len : sizeof piece, 0);
        }
        prev = next;
        tm->gen_n++;
        if (i + 1 < o->n) {
            rc = nsqrt_forward(m, st, &next, 1, (uint32_t)(n_prompt + i), logits, 0);
            last = logits;
        }
    }
    tm->gen_s = cli_now() - t0;
    emit(&out, "", 0, 1);
    if (o->print_ids) printf("\n");
    if (rc) fprintf(stderr, TOOL ": %s\n", nsqrt_error(m));
    nsqrt_sampler_free(&sm);
    nsqrt_state_free(st);
    free(logits);
    return rc;
}

#define MIB(x) ((double)(x) / 1048576.0)

/* What the weights, the KV cache and the scratch buffers need, and what the
 * budget means for reads and speed, from measured bandwidths. */
static void print_plan(const options *o, const nsqrt_model *m)
{
    nsqrt_usage u;
    uint64_t kv, scratch1, scratchp;
    nsqrt_get_usage(m, &u);
    nsqrt_state_bytes(m, 1, &kv, &scratch1);
    nsqrt_state_bytes(m, 512, &kv, &scratchp);
    double mem = nsqrt_probe_mem_read(o->threads, 256u << 20, 3);
    nsq_block blk;
    uint64_t off = 0, len = 0;
    for (uint32_t b = 0; !nsq_block_at(nsqrt_model_file(m), b, &blk); b++)
        if (blk.stored_size > len) off = blk.offset, len = blk.stored_size;
    double disk = nsqrt_probe_file_read(o->model, off, len, 1);
    if (o->max_memory) printf("plan for %s, --max-memory %.1f MiB of resident weights\n", o->model, MIB(o->max_memory));
    else printf("plan for %s, no --max-memory: the whole file resident\n", o->model);
    printf("  embedding and output blocks          %10.1f MiB (always resident)\n", MIB(u.pinned));
    printf("  all blocks (base)                    %10.1f MiB, largest layer block %.1f MiB\n", MIB(u.all_blocks),
           MIB(u.largest_block));
    printf("  refinement levels                    %10.1f MiB, %llu of %llu levels fit\n", MIB(u.all_refinements),
           (unsigned long long)(u.streaming ? 0 : u.refine_levels_total ? u.refine_levels_loaded : 0),
           (unsigned long long)u.refine_levels_total);
    if (u.predicted_damage >= 0)
        printf("  predicted quality                    mean KL divergence %.5f from the file at full depth\n",
               u.predicted_damage);
    printf("  minimum budget                       %10.1f MiB\n", ceil(MIB(u.minimum) * 10) / 10);
    printf("  KV cache (%u positions)            %10.1f MiB (not in the budget)\n", nsqrt_model_config(m)->ctx, MIB(kv));
    printf("  scratch, 1 / 512 positions at a time %10.1f / %.1f MiB (not in the budget)\n", MIB(scratch1), MIB(scratchp));
    printf("  layer blocks                         %s\n", u.streaming ? (u.prefetch ? "streamed, next block read ahead"
                                                                                   : "streamed, no room to read ahead")
                                                                   : "all resident");
    printf("  weights read per token               %10.1f MiB from memory, %.1f MiB from the file\n",
           MIB(u.token_bytes), MIB(u.reads_per_token));
    printf("  measured: memory read %.1f GB/s (%u threads), file read %.2f GB/s (cold)\n", mem, o->threads, disk);
    printf("  kernels                              %s\n", nsqrt_probe_kernels());
    if (mem > 0 && disk > 0)
        printf("  expected generation, bandwidth bound %10.1f tokens/s\n",
               1.0 / ((double)u.token_bytes / (mem * 1e9) + (double)u.reads_per_token / (disk * 1e9)));
}

static void print_stats(const timing *t, const nsqrt_model *m)
{
    nsqrt_usage u;
    nsqrt_get_usage(m, &u);
    fprintf(stderr, TOOL ": prompt %zu tokens in %.3f s (%.1f tok/s); generated %zu tokens in %.3f s (%.1f tok/s); "
                    "peak RSS %.1f MiB\n",
            t->prompt_n, t->prompt_s, t->prompt_s > 0 ? (double)t->prompt_n / t->prompt_s : 0, t->gen_n, t->gen_s,
            t->gen_s > 0 ? (double)t->gen_n / t->gen_s : 0, cli_peak_rss_mib());
    fprintf(stderr, TOOL ": weights %s: peak %.1f MiB resident%s%.1f MiB; %llu block loads, %.1f MiB read in %.3f s\n",
            u.streaming ? "streamed" : "resident", MIB(u.resident_peak), u.budget ? " of a budget of " : ", file ",
            MIB(u.budget ? u.budget : u.all_blocks + u.all_refinements), (unsigned long long)u.loads, MIB(u.bytes_read),
            u.read_s);
    fprintf(stderr, TOOL ": KV cache %.1f MiB, scratch %.1f MiB (outside the budget)\n", MIB(t->kv), MIB(t->scratch));
    if (!u.refine_levels_total) return;
    fprintf(stderr, TOOL ": refinement levels loaded per block:");
    nsq_block blk;
    for (uint32_t b = 0; !nsq_block_at(nsqrt_model_file(m), b, &blk); b++)
        if (blk.refinement_count) fprintf(stderr, " %u:%u/%u", b, nsqrt_block_refine(m, b), blk.refinement_count);
    fputc('\n', stderr);
}

/* Routing is on when asked for, and by default under a budget when the file
 * has a router: its static policy then decides (see run()). */
static int routing(const options *o)
{
    if (o->route_set) return o->route.mode != NSQRT_ROUTE_OFF || o->skip_blocks ? NSQRT_ROUTED : NSQRT_UNROUTED;
    return o->skip_blocks ? NSQRT_ROUTED : NSQRT_ROUTED_IF_ROUTER;
}

/* Chooses every block's option from the prompt and loads what was chosen. */
static int route_model(options *o, nsqrt_model *m, const int32_t *ids, size_t n)
{
    char err[1024];
    nsqrt_route_table t;
    double pred = 0;
    if (nsqrt_route_init(m, &t, err, sizeof err)) return fprintf(stderr, TOOL ": %s\n", err), -1;
    uint8_t *choice = malloc(t.n_blocks);
    double(*dmg)[3] = calloc(t.n_blocks, sizeof *dmg);
    int rc = choice && dmg ? 0 : (snprintf(err, sizeof err, "out of memory"), -1);
    if (!rc && !n && (o->route.mode == NSQRT_ROUTE_ROUTER || o->route.mode == NSQRT_ROUTE_TOP))
        rc = (snprintf(err, sizeof err, "--route %s decides from a prompt: give one", cli_route_mode_name(o->route.mode)), -1);
    if (!rc && o->skip_blocks) rc = cli_route_parse_skip(o->skip_blocks, t.n_blocks, &o->route, err, sizeof err);
    if (!rc)
        rc = nsqrt_route_choose(m, NULL, &t, &o->route, o->max_memory, ids, (uint32_t)n, (uint32_t)n, choice, dmg, &pred, err,
                                sizeof err);
    if (!rc && (o->route.print || o->plan)) nsqrt_route_print(o->plan ? stdout : stderr, &t, choice, (const double(*)[3])dmg);
    if (!rc) rc = nsqrt_route_apply(m, choice, err, sizeof err);
    if (rc) fprintf(stderr, TOOL ": %s\n", err);
    free(choice), free(dmg), free(o->route.forced);
    o->route.forced = NULL;
    nsqrt_route_free(&t);
    return rc;
}

static int run(options *o)
{
    nsqrt_model *m;
    nsq_diag d;
    char err[1024];
    int32_t *ids = NULL;
    size_t n_ids = 0;
    timing tm = {0, 0, 0, 0, 0, 0};
    nsqrt_opts mo = {o->no_mmap ? NSQ_OPEN_PREAD : 0, o->max_refine, o->max_memory, o->cold, routing(o)};
    if (nsqrt_open(o->model, &mo, &m, err, sizeof err)) {
        fprintf(stderr, TOOL ": %s\n", err);
        return CLI_EXIT_INVALID;
    }
    int routed = nsqrt_route_active(m);
    uint32_t V = nsqrt_model_config(m)->vocab;
    if (routed && !o->route_set && !o->skip_blocks) o->route.mode = NSQRT_ROUTE_STATIC;
    int rc = 0;
    const nsq_tokenizer *tok = nsqrt_model_tokenizer(m); /* checked against the embedding at open */
    if (!tok && (o->prompt || (!o->print_ids && !o->plan)))
        fprintf(stderr, TOOL ": %s: the file has no tokenizer (use --prompt-ids and --print-ids)\n", o->model), rc = -1;
    cli_diag_init(&d);
    if (!rc && o->prompt_ids && parse_ids(o->prompt_ids, V, &ids, &n_ids))
        fprintf(stderr, TOOL ": --prompt-ids wants comma-separated ids below %u\n", V), rc = -1;
    if (!rc && o->prompt && nsq_tokenize_diag(tok, o->prompt, strlen(o->prompt), 1, &ids, &n_ids, &d))
        fprintf(stderr, TOOL ": the prompt could not be tokenized: %s\n", cli_message("", d.status, &d)), rc = -1;
    if (!rc && !o->plan && n_ids == 0) fprintf(stderr, TOOL ": the prompt is empty\n"), rc = -1;
    if (!rc && routed) rc = route_model(o, m, ids, n_ids);
    if (!rc && o->plan) print_plan(o, m);
    else if (!rc) rc = generate(o, m, tok, ids, n_ids, &tm);
    if (!rc && o->stats && !o->plan) print_stats(&tm, m);
    free(ids);
    nsqrt_close(m);
    return rc ? CLI_EXIT_INVALID : cli_finish_stdout(TOOL);
}

int main(int argc, char **argv)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    options o = {0};
    o.n = 64;
    o.top_p = 1.0f;
    o.seed = 1;
    o.max_refine = -1;
    o.threads = cores > 0 ? (uint32_t)(cores > 64 ? 64 : cores) : 1;
    int r = parse_args(argc, argv, &o);
    return r >= 0 ? r : run(&o);
}
