/* nsq-perplexity - perplexity of a model on a text, and with --kld its
 * divergence from a base model.
 *
 *   nsq-perplexity MODEL.nsq TEXT_FILE [--ctx 256] [--json] [--kld BASE.nsq] [--threads N]
 *
 * Definition (the reference's): the whole text tokenized once without special
 * tokens, cut into consecutive non-overlapping windows of --ctx tokens (the
 * short tail dropped), each window run alone from position 0, every token of
 * a window but its first scored; PPL = exp(mean NLL). With --kld the base runs
 * the same window first and its log-probabilities are compared position by
 * position in memory: mean KL(base || model), top-1 agreement, and PPL change. */
#include <getopt.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cli_route.h"
#include "nsqrt.h"

#define TOOL "nsq-perplexity"

typedef struct {
    const char *model, *text, *base;
    uint32_t ctx, threads, max_windows;
    int json, quiet, max_refine, exact, routed;
    uint64_t max_memory;
    const char *skip_blocks;
    nsqrt_route_opts route;
} options;

typedef struct {
    double nll, base_nll, kld;
    uint64_t scored, agree;
    uint32_t windows;
    double seconds;
    double route_bytes, route_pred; /* sums over windows */
    uint64_t choices[3];
    uint64_t weights_peak, weights_pinned; /* pinned: the embedding and output blocks */
    double predicted; /* the depth plan's predicted damage, -1 without one */
} result;

static void usage(FILE *out)
{
    fprintf(out, "usage: " TOOL " MODEL.nsq TEXT_FILE [options]\n"
                 "Perplexity of MODEL on TEXT_FILE (windows of --ctx tokens, each from position 0).\n\n"
                 "options:\n"
                 "  --ctx N             window length in tokens (default 256)\n"
                 "  --kld BASE.nsq      also KL(base || model), top-1 agreement and PPL change vs BASE\n"
                 "  --max-windows N     evaluate only the first N windows\n"
                 "  --refine-levels N   use at most N refinement levels of each block (default: all)\n"
                 "  --max-memory SIZE   keep MODEL's resident weights within SIZE (e.g. 300M): layer\n"
                 "                      blocks stream from the file, windows run one at a time\n"
                 "  --route [MODE]      per window, choose from its first 32 tokens for each block:\n"
                 "                      skip, base, or base and refinements, within --max-memory;\n"
                 "                      the first 32 tokens are then not scored. MODE: router\n"
                 "                      (default), static, skip-only, random[:SEED], K (run K\n"
                 "                      blocks), oracle (damages measured on the window itself: a\n"
                 "                      ceiling, not a runtime), none\n"
                 "  --route-print       print each window's choices on stderr (s/b/f per block)\n"
                 "  --skip-blocks 2,3   skip these blocks (an experiment; implies routing)\n"
                 "  --exact             multiply quantized weights by f32 activations (slower), not\n"
                 "                      activations rounded to int8: measures the weights alone\n"
                 "  --threads N         threads (default: all cores)\n"
                 "  --json              print a JSON summary on stdout\n"
                 "  --quiet             no progress on stderr\n"
                 "  --help, --version\n\n"
                 "exit status: 0 success, 1 error, 2 usage error\n");
}

static int parse_args(int argc, char **argv, options *o)
{
    static const struct option longs[] = {
        {"ctx", required_argument, 0, 'c'}, {"kld", required_argument, 0, 'k'}, {"threads", required_argument, 0, 'j'},
        {"max-windows", required_argument, 0, 'w'}, {"refine-levels", required_argument, 0, 'R'},
        {"json", no_argument, 0, 'J'}, {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'},
        {"max-memory", required_argument, 0, 'X'}, {"exact", no_argument, 0, 'Z'},
        {"route", optional_argument, 0, 'r'}, {"route-print", no_argument, 0, 'Q'}, {"skip-blocks", required_argument, 0, 'K'},
        {"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};
    int c, bad = 0;
    uint64_t v = 0;
    opterr = 0;
    /* each value is checked whole and in range before it is converted */
    while (!bad && (c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case 'c': if (!(bad = cli_opt_uint(TOOL, "--ctx", optarg, 2, 1000000, &v))) o->ctx = (uint32_t)v; break;
        case 'j': if (!(bad = cli_opt_uint(TOOL, "--threads", optarg, 1, 64, &v))) o->threads = (uint32_t)v; break;
        case 'w': if (!(bad = cli_opt_uint(TOOL, "--max-windows", optarg, 1, 1000000, &v))) o->max_windows = (uint32_t)v; break;
        case 'R': if (!(bad = cli_opt_uint(TOOL, "--refine-levels", optarg, 0, 16, &v))) o->max_refine = (int)v; break;
        case 'k': o->base = optarg; break;
        case 'X':
            if ((bad = cli_parse_size(optarg, &o->max_memory)))
                fprintf(stderr, TOOL ": --max-memory wants a size such as 512M or 2G, not '%s'\n", optarg);
            break;
        case 'Z': o->exact = 1; break;
        case 'r':
            o->routed = 1;
            if ((bad = cli_route_option(optarg, argc, argv, &optind, &o->route)))
                fprintf(stderr, TOOL ": --route wants router, static, skip-only, random[:SEED], oracle, none or a "
                                     "block count in 1..65536, not '%s'\n", optarg);
            break;
        case 'Q': o->route.print = 1; break;
        case 'K': o->skip_blocks = optarg, o->routed = 1; break;
        case 'J': o->json = 1; break;
        case 'q': o->quiet = 1; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf(TOOL " %s (format %d.%d)\n", nsq_version_string(), NSQ_FORMAT_MAJOR, NSQ_FORMAT_MINOR); return 0;
        default: bad = 1; fprintf(stderr, TOOL ": unknown option or missing value: %s\n", argv[optind - 1]);
        }
    }
    if (o->routed && o->route.mode == NSQRT_ROUTE_OFF && !o->skip_blocks) o->routed = 0;
    if (!bad && o->routed && o->ctx <= NSQRT_ROUTE_PROMPT_TOKENS + 1) {
        fprintf(stderr, TOOL ": --route needs --ctx above %d (the first %d tokens are the prompt)\n", NSQRT_ROUTE_PROMPT_TOKENS + 1,
                NSQRT_ROUTE_PROMPT_TOKENS);
        bad = 1;
    }
    if (!bad && argc - optind != 2) {
        fprintf(stderr, TOOL ": expected MODEL.nsq and TEXT_FILE\n");
        bad = 1;
    }
    if (bad) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    o->model = argv[optind];
    o->text = argv[optind + 1];
    return -1;
}

typedef struct {
    nsqrt_model *m;
} runner;

static int runner_open(runner *r, const char *path, const options *o, uint64_t max_memory, char *err, size_t n)
{
    /* the oracle measures with every block resident: its budget binds the choice only */
    nsqrt_opts mo = {0, o->max_refine, o->routed && o->route.mode == NSQRT_ROUTE_ORACLE ? 0 : max_memory, 0, o->routed && path == o->model};
    memset(r, 0, sizeof *r);
    if (nsqrt_open(path, &mo, &r->m, err, n)) return -1;
    uint32_t ctx = nsqrt_model_config(r->m)->ctx;
    if (o->ctx > ctx) return snprintf(err, n, "%s: --ctx %u exceeds the model's context of %u", path, o->ctx, ctx), -1;
    return 0;
}

static void runner_close(runner *r)
{
    nsqrt_close(r->m);
}

/* Scores one window: token t+1 predicted from the logits at t. */
static void score_window(const float *logits, const float *base_logits, uint32_t V, const int32_t *w, uint32_t ctx,
                         uint32_t from, double *lp, double *lq, result *res)
{
    for (uint32_t t = from; t + 1 < ctx; t++) {
        const float *row = logits + (size_t)t * V;
        nsqrt_logprob_row(row, V, lq);
        res->nll -= lq[w[t + 1]];
        res->scored++;
        if (!base_logits) continue;
        const float *brow = base_logits + (size_t)t * V;
        nsqrt_logprob_row(brow, V, lp);
        res->base_nll -= lp[w[t + 1]];
        res->kld += nsqrt_logprob_kl(lp, lq, V);
        res->agree += nsqrt_argmax(row, V) == nsqrt_argmax(brow, V);
    }
}

/* One thread's states and buffers, made when it takes its first window. */
typedef struct {
    nsqrt_state *sm, *sb;
    int ready;
    float *lm, *lb;
    double *lp, *lq;
} eval_slot;

/* Windows are independent: each thread runs whole windows with its own state,
 * and the per-window sums are added in window order, so the result does not
 * depend on the thread count. */
typedef struct {
    const options *o;
    const runner *mod, *base;
    const int32_t *ids;
    uint32_t windows;
    atomic_uint done;
    atomic_int failed;
    result *part;
    eval_slot *slot; /* [thread] */
    double t0;
    int show;
    uint32_t state_threads; /* threads inside each forward pass */
    const nsqrt_route_table *rt;  /* routing: windows run one at a time */
    char err[512];
} eval_job;

/* Chooses window w's blocks from its first NSQRT_ROUTE_PROMPT_TOKENS tokens and loads them. */
static int route_window(eval_job *j, nsqrt_state *s, const int32_t *w, uint32_t k)
{
    const nsqrt_route_table *t = j->rt;
    nsqrt_model *m = j->mod->m; /* routing loads and unloads the model's blocks */
    uint8_t *choice = malloc(t->n_blocks);
    double(*dmg)[3] = calloc(t->n_blocks, sizeof *dmg), pred = 0;
    nsqrt_route_opts ro = j->o->route;
    ro.seed = j->o->route.seed * 1000003u + k; /* random: another draw each window */
    int rc = choice && dmg ? 0 : (snprintf(j->err, sizeof j->err, "out of memory"), -1);
    if (!rc)
        rc = nsqrt_route_choose(m, s, t, &ro, j->o->max_memory, w, j->o->ctx, NSQRT_ROUTE_PROMPT_TOKENS, choice, dmg, &pred, j->err,
                                sizeof j->err);
    if (!rc) rc = nsqrt_route_apply(m, choice, j->err, sizeof j->err);
    result *r = &j->part[k];
    for (uint32_t b = 0; !rc && b < t->n_blocks; b++) {
        r->route_bytes += (double)t->cost[b][choice[b]];
        r->choices[choice[b]]++;
    }
    r->route_pred = pred;
    if (!rc && ro.print) {
        fprintf(stderr, "route: window %u ", k);
        for (uint32_t b = 0; b < t->n_blocks; b++) fputc("sbf"[choice[b]], stderr);
        fprintf(stderr, " predicted damage %.6f\n", pred);
    }
    free(choice), free(dmg);
    return rc;
}

static int slot_init(const eval_job *j, eval_slot *s)
{
    uint32_t ctx = j->o->ctx, V = nsqrt_model_config(j->mod->m)->vocab;
    int have_b = j->base != NULL;
    if ((s->sm = nsqrt_state_new(j->mod->m, ctx, j->state_threads))) nsqrt_state_set_exact(s->sm, j->o->exact);
    if (have_b && (s->sb = nsqrt_state_new(j->base->m, ctx, j->state_threads))) nsqrt_state_set_exact(s->sb, j->o->exact);
    s->lm = malloc((size_t)ctx * V * sizeof *s->lm), s->lb = have_b ? malloc((size_t)ctx * V * sizeof *s->lb) : NULL;
    s->lp = malloc(V * sizeof *s->lp), s->lq = malloc(V * sizeof *s->lq);
    s->ready = s->sm && (s->sb != NULL) == have_b && s->lm && (!have_b || s->lb) && s->lp && s->lq;
    return s->ready ? 0 : -1;
}

static void slot_free(eval_slot *s)
{
    nsqrt_state_free(s->sm);
    nsqrt_state_free(s->sb);
    free(s->lm), free(s->lb), free(s->lp), free(s->lq);
}

static void eval_window(void *ctx, uint32_t k, uint32_t thread)
{
    eval_job *j = ctx;
    eval_slot *s = &j->slot[thread];
    uint32_t n = j->o->ctx;
    const int32_t *w = j->ids + (size_t)k * n;
    if (j->failed || (!s->ready && slot_init(j, s)) || (j->rt && route_window(j, s->sm, w, k)) ||
        (j->base && nsqrt_forward(j->base->m, s->sb, w, n, 0, s->lb, 1)) || nsqrt_forward(j->mod->m, s->sm, w, n, 0, s->lm, 1)) {
        j->failed = 1;
        return;
    }
    score_window(s->lm, s->lb, nsqrt_model_config(j->mod->m)->vocab, w, n, j->rt ? NSQRT_ROUTE_PROMPT_TOKENS - 1 : 0, s->lp, s->lq, &j->part[k]);
    uint32_t d = atomic_fetch_add(&j->done, 1) + 1;
    if (j->show) {
        double dt = cli_now() - j->t0;
        fprintf(stderr, "\r" TOOL ": window %u/%u  ETA %.0fs   ", d, j->windows, dt / d * (j->windows - d));
    }
}

static int evaluate(const options *o, const runner *mod, const runner *base, const nsqrt_route_table *rt, const int32_t *ids,
                    size_t n_ids, result *res, char *err, size_t errlen)
{
    uint32_t windows = (uint32_t)(n_ids / o->ctx);
    if (o->max_windows && o->max_windows < windows) windows = o->max_windows;
    /* Streaming shares one block cache, so windows then run one at a time with
     * the threads inside the forward pass; else each thread runs windows. */
    int streaming = o->max_memory != 0 || rt;
    uint32_t n_threads = streaming ? 1 : o->threads < windows ? o->threads : windows ? windows : 1;
    eval_job j = {o, mod, base, ids, windows, 0, 0, calloc(windows ? windows : 1, sizeof(result)),
                  calloc(n_threads, sizeof(eval_slot)), cli_now(), !o->quiet && isatty(2), streaming ? o->threads : 1, rt, ""};
    nsqrt_pool *p = j.part && j.slot ? nsqrt_pool_create(n_threads) : NULL;
    if (p) nsqrt_pool_run_at(p, eval_window, &j, windows);
    else j.failed = 1;
    nsqrt_pool_free(p);
    for (uint32_t t = 0; j.slot && t < n_threads; t++) slot_free(&j.slot[t]);
    free(j.slot);
    if (!j.part) return -1;
    if (j.show) fputc('\n', stderr);
    for (uint32_t w = 0; w < windows; w++) {
        res->nll += j.part[w].nll;
        res->base_nll += j.part[w].base_nll;
        res->kld += j.part[w].kld;
        res->scored += j.part[w].scored;
        res->agree += j.part[w].agree;
        res->route_bytes += j.part[w].route_bytes;
        res->route_pred += j.part[w].route_pred;
        for (int c = 0; c < 3; c++) res->choices[c] += j.part[w].choices[c];
    }
    nsqrt_usage u;
    nsqrt_get_usage(mod->m, &u);
    res->weights_peak = u.resident_peak;
    res->weights_pinned = u.pinned;
    res->predicted = u.predicted_damage;
    snprintf(err, errlen, "%s", j.err[0] ? j.err : *nsqrt_error(mod->m) ? nsqrt_error(mod->m) : "out of memory");
    res->windows = windows;
    res->seconds = cli_now() - j.t0;
    free(j.part);
    return j.failed ? -1 : 0;
}

static void report(const options *o, const result *r, size_t n_ids)
{
    double ppl = exp(r->nll / (double)r->scored), bppl = exp(r->base_nll / (double)r->scored);
    if (!o->json) {
        printf("perplexity %.4f over %llu scored tokens (%u windows of %u; %zu tokens in the text)\n", ppl,
               (unsigned long long)r->scored, r->windows, o->ctx, n_ids);
        if (o->base)
            printf("base perplexity %.4f, delta %+.3f%%, mean KLD %.6f, top-1 agreement %.3f%%\n", bppl,
                   100 * (ppl / bppl - 1), r->kld / (double)r->scored, 100.0 * (double)r->agree / (double)r->scored);
        if (o->routed)
            printf("route %s: mean %.2f MiB of weights per window, choices skip %llu, base %llu, full %llu; "
                   "mean predicted damage %.6f\n",
                   cli_route_mode_name(o->route.mode), r->route_bytes / r->windows / 1048576.0,
                   (unsigned long long)r->choices[0], (unsigned long long)r->choices[1], (unsigned long long)r->choices[2],
                   r->route_pred / r->windows);
        printf("peak resident weights %.2f MiB, peak RSS %.1f MiB\n", r->weights_peak / 1048576.0, cli_peak_rss_mib());
        return;
    }
    cli_json j;
    cli_json_init(&j, stdout);
    cli_json_object(&j);
    cli_json_kv_cstr(&j, "model", o->model);
    cli_json_kv_cstr(&j, "text", o->text);
    cli_json_kv_u64(&j, "ctx", o->ctx);
    cli_json_kv_u64(&j, "windows", r->windows);
    cli_json_kv_u64(&j, "scored_tokens", r->scored);
    cli_json_key(&j, "ppl");
    cli_json_f64(&j, ppl);
    cli_json_key(&j, "base");
    if (o->base) {
        cli_json_object(&j);
        cli_json_kv_cstr(&j, "model", o->base);
        cli_json_key(&j, "ppl");
        cli_json_f64(&j, bppl);
        cli_json_key(&j, "delta_ppl_percent");
        cli_json_f64(&j, 100 * (ppl / bppl - 1));
        cli_json_key(&j, "mean_kld");
        cli_json_f64(&j, r->kld / (double)r->scored);
        cli_json_key(&j, "top1_agreement_percent");
        cli_json_f64(&j, 100.0 * (double)r->agree / (double)r->scored);
        cli_json_end_object(&j);
    } else {
        cli_json_null(&j);
    }
    cli_json_key(&j, "route");
    if (o->routed) {
        cli_json_object(&j);
        cli_json_kv_cstr(&j, "mode", cli_route_mode_name(o->route.mode));
        cli_json_kv_u64(&j, "budget_bytes", o->max_memory);
        cli_json_key(&j, "mean_weight_bytes");
        cli_json_f64(&j, r->route_bytes / r->windows);
        cli_json_kv_u64(&j, "skip", r->choices[0]);
        cli_json_kv_u64(&j, "base", r->choices[1]);
        cli_json_kv_u64(&j, "full", r->choices[2]);
        cli_json_key(&j, "mean_predicted_damage");
        cli_json_f64(&j, r->route_pred / r->windows);
        cli_json_end_object(&j);
    } else {
        cli_json_null(&j);
    }
    cli_json_kv_u64(&j, "weights_peak_bytes", r->weights_peak);
    cli_json_kv_u64(&j, "weights_pinned_bytes", r->weights_pinned);
    cli_json_key(&j, "predicted_kld");
    if (r->predicted >= 0) cli_json_f64(&j, r->predicted);
    else cli_json_null(&j);
    cli_json_key(&j, "peak_rss_mib");
    cli_json_f64(&j, cli_peak_rss_mib());
    cli_json_key(&j, "seconds");
    cli_json_f64(&j, r->seconds);
    cli_json_end_object(&j);
    cli_json_done(&j);
}

static int run(options *o)
{
    char err[1024] = "";
    runner mod, base;
    nsq_diag d;
    int32_t *ids = NULL;
    size_t n_ids = 0, len = 0;
    result res;
    memset(&res, 0, sizeof res);
    memset(&mod, 0, sizeof mod);
    memset(&base, 0, sizeof base);
    char why[256];
    char *text = cli_read_file(o->text, &len, why, sizeof why);
    int rc = text ? 0 : (snprintf(err, sizeof err, "%s: cannot read: %s", o->text, why), -1);
    if (!rc) rc = runner_open(&mod, o->model, o, o->max_memory, err, sizeof err);
    if (!rc && o->base) rc = runner_open(&base, o->base, o, 0, err, sizeof err);
    if (!rc && o->base && nsqrt_model_config(base.m)->vocab != nsqrt_model_config(mod.m)->vocab) rc = (snprintf(err, sizeof err, "the base model has another vocabulary"), -1);
    cli_diag_init(&d);
    const nsq_tokenizer *tok = rc ? NULL : nsqrt_model_tokenizer(mod.m); /* checked against the embedding at open */
    if (!rc && !tok) rc = (snprintf(err, sizeof err, "%s: the file has no tokenizer", o->model), -1);
    if (!rc && nsq_tokenize_diag(tok, text, len, 0, &ids, &n_ids, &d))
        rc = (snprintf(err, sizeof err, "%s: cannot tokenize: %s", o->text, cli_message("", d.status, &d)), -1);
    if (!rc && n_ids < o->ctx) rc = (snprintf(err, sizeof err, "%s: fewer than --ctx %u tokens", o->text, o->ctx), -1);
    nsqrt_route_table rt = {0};
    if (!rc && o->routed) rc = nsqrt_route_init(mod.m, &rt, err, sizeof err);
    if (!rc && o->skip_blocks) rc = cli_route_parse_skip(o->skip_blocks, rt.n_blocks, &o->route, err, sizeof err);
    if (!rc && evaluate(o, &mod, o->base ? &base : NULL, o->routed ? &rt : NULL, ids, n_ids, &res, err, sizeof err)) rc = -1;
    if (!rc) report(o, &res, n_ids);
    if (rc) fprintf(stderr, TOOL ": %s\n", err);
    free(ids);
    free(text);
    free(o->route.forced);
    nsqrt_route_free(&rt);
    runner_close(&mod);
    if (o->base) runner_close(&base);
    return rc ? CLI_EXIT_INVALID : cli_finish_stdout(TOOL);
}

int main(int argc, char **argv)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    options o = {0};
    o.ctx = 256;
    o.max_refine = -1;
    o.threads = cores > 0 ? (uint32_t)(cores > 64 ? 64 : cores) : 1;
    int r = parse_args(argc, argv, &o);
    return r >= 0 ? r : run(&o);
}
