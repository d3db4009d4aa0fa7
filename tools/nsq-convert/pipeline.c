/* pipeline.c - the conversion (pipeline.h): reads config.json and the
 * safetensors shards (memory-mapped), checks every tensor against the
 * architecture, optionally calibrates, allocates the bit budget and fits the
 * router, then writes block by block: the embeddings, K transformer layers
 * per block, and the output block. Layer matrices are quantized into
 * importance tiers unless lossless. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "pipeline.h"

const char *convert_policy_name(dense_policy p)
{
    static const char *n[] = {"source", "f16", "q8", "q4", "q2"};
    return n[p];
}

void convert_describe(convert_job *o)
{
    if (o->q.lossless) {
        snprintf(o->recipe, sizeof o->recipe, "lossless layers_per_block=%u zstd=%d", o->layers_per_block,
                 o->zstd ? o->zstd_level : 0);
        return;
    }
    char mode[96];
    if (o->q.lattice) {
        int k = snprintf(mode, sizeof mode, "scheme=lattice bpw=%g", o->q.bpw);
        for (uint32_t l = 0; l < o->q.n_levels; l++) k += snprintf(mode + k, sizeof mode - (size_t)k, ",%g", o->q.level_bpw[l]);
    }
    else if (o->q.bpw > 0) snprintf(mode, sizeof mode, "bpw=%g", o->q.bpw);
    else snprintf(mode, sizeof mode, "tiers=%g:%g:%g", 100 * o->q.split[0], 100 * o->q.split[1], 100 * o->q.split[2]);
    char imp[64] = "importance=magnitude";
    if (o->calib_path)
        snprintf(imp, sizeof imp, "importance=calibrated calib_tokens=%llu calib_probe=%llu", (unsigned long long)o->calib_tokens,
                 (unsigned long long)(o->q.bpw > 0 ? o->calib_probe : 0));
    snprintf(o->recipe, sizeof o->recipe, "%s group_size=%u refine=%u embed=%s head=%s layers_per_block=%u zstd=%d %s",
             mode, o->q.group_size, o->q.refine_bits, convert_policy_name(o->q.embed), convert_policy_name(o->q.head), o->layers_per_block,
             o->zstd ? o->zstd_level : 0, imp);
}

/* ---- metadata and tokenizer ---- */
static nsq_status write_metadata(nsq_writer *w, const hf_config *c, const st_model *m, const convert_job *o)
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
    S("general.architecture", c->arch->name);
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
    if (c->arch->flags & NSQRT_ARCH_CONV1D) B("model.conv1d_transposed", !o->q.lossless);
    if (c->window_pattern) U("model.sliding_window_pattern", c->window_pattern);
    if (c->arch->flags & NSQRT_ARCH_EMBED_SQRT_H) F("model.embedding_scale", sqrt((double)c->hidden));
    if (c->arch->flags & NSQRT_ARCH_NORM_PLUS_ONE) F("model.norm.weight_offset", 1.0);
    for (unsigned i = 0; c->arch->keys && c->arch->keys[i].hf_key; i++)
        if (c->key_set & (1u << i)) F(c->arch->keys[i].meta_key, c->key_value[i]);
    if (strcmp(c->rope_type, "longrope") == 0) {
        uint32_t half = (uint32_t)(c->head_dim / 2);
        st = st ? st : nsq_writer_meta_array(w, "model.rope.scaling.short_factor", NSQ_META_F64, c->rope_short, half);
        st = st ? st : nsq_writer_meta_array(w, "model.rope.scaling.long_factor", NSQ_META_F64, c->rope_long, half);
    }
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

static int read_side_files(const convert_job *o, uint64_t vocab, side_files *f, char *err, size_t n)
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

/* The LATTICE refinement levels of e, numbered as the block's: the levels
 * in used (a bit per level) that some tensor of the block adds stages to,
 * up to the last one e adds to. */
static nsq_status add_levels(nsq_writer *w, const encoded *e, uint32_t used, convert_summary *s)
{
    uint32_t last = 0, level = 0;
    nsq_status st = NSQ_OK;
    for (uint32_t l = 0; l < e->n_levels; l++)
        if (e->level_stages[l]) last = l + 1;
    for (uint32_t l = 0; l < last && !st; l++) {
        if (!(used >> l & 1)) continue;
        st = nsq_writer_add_lattice_refinement(w, ++level, e->level_stages[l], e->level_kind[l], e->data + e->level_off[l],
                                               e->level_size[l]);
        s->refine_bytes += e->level_size[l];
    }
    return st;
}

static nsq_status add_encoded(nsq_writer *w, const plan_tensor *t, const encoded *e, const quant_opts *q, uint32_t used,
                              convert_summary *s)
{
    nsq_scheme_info si;
    int grouped = !nsq_scheme_get(e->scheme, &si) && si.grouped; /* quantized, with importance */
    nsq_status st = nsq_writer_add_tensor(w, t->src->name, (nsq_scheme)e->scheme, e->n_dims, e->dims, e->group_size,
                                          e->data, e->size);
    if (!st && e->refine) st = nsq_writer_add_refinement(w, 1, q->refine_bits, e->refine, e->refine_size);
    if (!st && e->n_levels) st = add_levels(w, e, used, s);
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

/* The block's predicted damage at each of its depths 0..L (L: the levels in
 * used): at depth d its tensors take the levels up to the d-th used one. */
static int depth_damage(const quant_opts *q, const size_t *idx, size_t n, uint32_t used, convert_summary *s)
{
    uint32_t L = (uint32_t)__builtin_popcount(used), k = 0;
    double *v = realloc(s->depth_damage, (s->n_depth_damage + L + 1) * sizeof *v);
    if (!v) return -1;
    s->depth_damage = v, v += s->n_depth_damage;
    s->n_depth_damage += L + 1;
    for (uint32_t d = 0; d <= L; d++) {
        while (d && !(used >> k++ & 1)) {} /* k: global depth of the d-th used level */
        v[d] = 0;
        for (size_t i = 0; i < n; i++) v[d] += q->lat->type[idx[i]] >= 0 ? lat_depth_damage(q->lat, idx[i], k) : 0;
    }
    return 0;
}

/* Encodes the tensors idx[0..n) in parallel and adds them in order as one block. */
static int write_block(nsq_writer *w, const convert_job *o, const tensor_plan *p, const bpw_plan *bp, nsq_block_kind kind,
                       uint32_t first, uint32_t layers, const size_t *idx, size_t n, progress *pg, convert_summary *s, char *err,
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
    uint32_t used = 0; /* levels that some tensor of the block adds stages to */
    for (size_t k = 0; k < n && !rc; k++)
        for (uint32_t l = 0; l < enc[k].n_levels; l++) used |= (uint32_t)(enc[k].level_stages[l] > 0) << l;
    if (!rc && o->q.lat && o->q.lat->n_levels && depth_damage(&o->q, idx, n, used, s))
        rc = (snprintf(err, errlen, "out of memory"), -1);
    for (size_t k = 0; k < n && !rc && !st; k++) {
        if (failed[k]) {
            snprintf(err, errlen, "%s", errs[k]);
            rc = -1;
            break;
        }
        st = add_encoded(w, &p->t[idx[k]], &enc[k], &o->q, used, s);
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
static int write_blocks(nsq_writer *w, const convert_job *o, const hf_config *c, const tensor_plan *p, const bpw_plan *bp,
                        convert_summary *s, char *err, size_t n)
{
    size_t *idx = malloc((p->n ? p->n : 1) * sizeof *idx), k = 0;
    progress pg = {0, p->n, 0, 0, cli_now(), !o->quiet && isatty(2)};
    if (!idx) return snprintf(err, n, "out of memory"), -1;
    for (size_t i = 0; i < p->n; i++) pg.bytes_total += p->t[i].src->size;
    for (size_t i = 0; i < p->n; i++)
        if (p->t[i].kind == NSQRT_KIND_EMBED || p->t[i].kind == NSQRT_KIND_POS) idx[k++] = i;
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
        if (p->t[i].layer < 0 && (p->t[i].kind == NSQRT_KIND_NORM || p->t[i].kind == NSQRT_KIND_HEAD)) idx[k++] = i;
    if (!rc) rc = write_block(w, o, p, bp, NSQ_BLOCK_OUTPUT, 0, 0, idx, k, &pg, s, err, n);
    free(idx);
    return rc;
}

static const char *importance_provenance(const convert_job *o, char *buf, size_t n)
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

/* convert_write() for each of the files a conversion writes. */
static int write_file(const convert_job *o, int fd, const hf_config *c, const st_model *m, const tensor_plan *p,
                      const bpw_plan *bp, convert_summary *s, char *err, size_t errlen, nsq_status *st, nsq_diag *d)
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
    if (!rc && !*st && s->n_depth_damage)
        *st = nsq_writer_meta_array(w, NSQRT_DEPTH_DAMAGE_KEY, NSQ_META_F64, s->depth_damage, s->n_depth_damage);
    free(s->depth_damage);
    s->depth_damage = NULL, s->n_depth_damage = 0;
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
static int write_scratch(const convert_job *o, const hf_config *c, const st_model *m, const tensor_plan *p,
                         const bpw_plan *bp, char path[32], char *err, size_t errlen)
{
    convert_summary s = {0};
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

/* Calibration: an unquantized copy of the model in an unnamed file next to
 * the output (path names it), run over the text by the runtime, for the
 * column moments (TIERED) and the probes' reference. Returns the copy's
 * descriptor, or -1. */
static int calibrate(convert_job *o, const hf_config *c, const st_model *m, const tensor_plan *p, int moments, calib_stats *cs,
                     char path[32], char *err, size_t errlen)
{
    convert_job lo = *o;
    snprintf(o->calib_hash, sizeof o->calib_hash, "%016llx", (unsigned long long)nsq_xxh3(o->calib_text, o->calib_len));
    lo.q.lossless = 1;
    lo.q.calib = NULL;
    lo.zstd = 0;
    lo.quiet = 1;
    lo.recipe_path = NULL;
    int fd = write_scratch(&lo, c, m, p, NULL, path, err, errlen);
    uint64_t probe = o->q.bpw > 0 ? o->calib_probe : 0;
    int rc = fd < 0 ? -1 : calib_collect(path, o->calib_text, o->calib_len, o->calib_path, o->calib_tokens, probe, moments,
                                                o->q.threads, cs, err, errlen);
    if (rc && fd >= 0) close(fd);
    if (!rc && !o->quiet && (moments || probe))
        fprintf(stderr, TOOL ": calibrated on %llu tokens of %s in %.1f s\n", (unsigned long long)cs->tokens, o->calib_path,
                cs->seconds);
    if (!rc) o->q.calib = cs;
    return rc ? -1 : fd;
}

/* --calib-probe: each budgeted matrix is quantized alone to 4 bits and the
 * KL divergence this causes on the probe tokens is measured; its errors are
 * rescaled so that its 4-bit error equals that divergence. The budget then
 * trades predicted divergence against bits across all matrices. */
static int weigh_tensors(const convert_job *o, const hf_config *c, const st_model *m, const tensor_plan *p, bpw_plan *bp,
                         char *err, size_t errlen)
{
    char path[32];
    double t0 = cli_now();
    int rc = 0;
    for (size_t i = 0; i < p->n && !rc; i++) {
        if (!policy_budgeted(p, i, &o->q)) continue;
        convert_job po = *o;
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
static int fit_router(convert_job *o, const hf_config *c, const st_model *m, const tensor_plan *p, const bpw_plan *bp,
                      router_fit *rf, char *err, size_t errlen)
{
    char path[32];
    convert_job lo = *o;
    lo.zstd = 0, lo.quiet = 1, lo.json = 0;
    int fd = write_scratch(&lo, c, m, p, bp, path, err, errlen);
    int rc = fd < 0 ? -1 : router_fit_run(path, o->calib_text, o->calib_len, o->calib_path, o->router_windows, o->q.threads, rf,
                                                 err, errlen);
    if (fd >= 0) close(fd);
    if (!rc && !o->quiet)
        fprintf(stderr,
                TOOL ": router fitted on %u windows of %u tokens in %.1f s; held out (%u windows): rank correlation of "
                     "predicted and measured damage %.3f (static policy %.3f; across prompts, per block and choice %.3f)\n",
                rf->windows, rf->window, rf->seconds, rf->heldout, rf->rho_router, rf->rho_static, rf->rho_within);
    return rc ? -1 : 0;
}

/* OUT must be new, or a regular file that is none of the files read. */
int convert_open(convert_job *o, convert_state *s, char *err, size_t errlen)
{
    char why[256];
    o->files = &s->files;
    int rc = hf_load_config(o->in, &s->c, err, errlen);
    if (!rc) rc = st_open_dir(o->in, &s->m, err, errlen);
    if (!rc) rc = read_side_files(o, s->c.vocab, &s->files, err, errlen);
    if (!rc && o->calib_path && !o->calib_builtin) {
        if (!(s->calib_file = cli_read_file(o->calib_path, &o->calib_len, why, sizeof why)))
            return snprintf(err, errlen, "--calib %s: cannot read: %s", o->calib_path, why), -1;
        o->calib_text = s->calib_file;
    }
    return rc;
}

const bpw_plan *convert_budget(const convert_job *o, const convert_state *s)
{
    return o->q.bpw > 0 && !o->q.lossless && !o->q.lattice ? &s->bp : NULL;
}

/* --calib-probe for LATTICE: each matrix coded alone at LAT_PROBE_TYPE; its
 * predicted damages are rescaled so that this type's equals the divergence. */
static int weigh_lattice(const convert_job *o, const convert_state *s, lat_book *b, char *err, size_t errlen)
{
    char path[32];
    double t0 = cli_now();
    int rc = 0;
    for (size_t i = 0; i < s->p.n && !rc; i++) {
        if (!lat_budgeted(&s->p.t[i], &o->q)) continue;
        convert_job po = *o;
        double kld = 0, e = lat_error(b, i, LAT_PROBE_TYPE);
        po.q.probe = (long)i, po.q.bpw = 0, po.zstd = 0, po.quiet = 1, po.recipe_path = NULL, po.q.lat = b;
        int fd = write_scratch(&po, &s->c, &s->m, &s->p, NULL, path, err, errlen);
        rc = fd < 0 ? -1 : calib_kld(path, o->q.calib, o->q.threads, &kld, err, errlen);
        if (fd >= 0) close(fd);
        if (!rc && e > 0) lat_scale(b, i, (kld > 1e-12 ? kld : 1e-12) / e);
    }
    if (!rc && !o->quiet)
        fprintf(stderr, TOOL ": probed the sensitivity of each layer matrix in %.1f s\n", cli_now() - t0);
    return rc ? -1 : 0;
}

/* The second moments' pass costs tokens x weights, the probes matrices x
 * probe tokens x weights (with a copy of the model each). */
#define LATTICE_TOKENS 262144 /* all of the built-in text: more tokens, better second moments */
#define CALIB_WORK 4e12   /* tokens x layer weights */
#define PROBE_WORK 1e12   /* matrices x probe tokens x layer weights */
void convert_size_defaults(convert_job *o, const tensor_plan *p)
{
    double weights = 0, matrices = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (p->t[i].layer >= 0) weights += (double)p->t[i].src->n_elements;
        matrices += lat_budgeted(&p->t[i], &o->q);
    }
    if (!o->calib_tokens_set)
        for (o->calib_tokens = LATTICE_TOKENS; o->calib_tokens > 2048 && (double)o->calib_tokens * weights > CALIB_WORK;)
            o->calib_tokens /= 2;
    if (!o->calib_probe_set && matrices * (double)o->calib_probe * weights > PROBE_WORK) {
        o->calib_probe = 0;
        if (!o->quiet)
            fprintf(stderr, TOOL ": no sensitivity probes for a model of this size (--calib-probe N makes them)\n");
    }
    convert_describe(o);
}

/* LATTICE layer matrices: measure, weigh, budget, then code them all. The
 * unquantized copy serves the probes and the second moments; the columns'
 * mean x^2 come from the latter. */
static int plan_lattice(convert_job *o, convert_state *s, char *err, size_t errlen)
{
    char path[32] = "";
    if (o->calib_path) convert_size_defaults(o, &s->p);
    int fd = o->calib_path ? calibrate(o, &s->c, &s->m, &s->p, 0, &s->cs, path, err, errlen) : -2;
    if (fd == -1) return -1;
    uint32_t dim[CALIB_N_INPUTS] = {(uint32_t)s->c.hidden, (uint32_t)(s->c.n_heads * s->c.head_dim), (uint32_t)s->c.hidden,
                                    (uint32_t)s->c.inter};
    int rc = o->q.calib && o->q.calib->probe_tokens ? lat_keep_moments(path, &o->q, s->c.n_layers, dim, &s->lb, err, errlen) : 0;
    if (!rc) rc = lat_measure(&s->p, &o->q, &s->lb, err, errlen);
    if (!rc && o->q.calib && o->q.calib->probe_tokens) rc = weigh_lattice(o, s, &s->lb, err, errlen);
    s->lb.layers_per_block = o->layers_per_block;
    if (!rc) rc = lat_budget(&s->p, &o->q, &s->lb, err, errlen);
    if (!rc)
        rc = lat_encode_all(path, o->out, &s->p, &o->q, o->q.calib ? &s->cs : NULL, s->c.n_layers, !o->quiet && isatty(2), &s->lb,
                            err, errlen);
    if (fd >= 0) close(fd);
    if (!rc) o->q.lat = &s->lb;
    return rc;
}

int convert_plan(convert_job *o, convert_state *s, char *err, size_t errlen)
{
    char path[32];
    int rc = arch_plan(&s->c, &s->m, &s->p, err, errlen);
    if (!rc && o->q.lattice) {
        rc = plan_lattice(o, s, err, errlen);
    } else if (!rc && o->calib_path) {
        int fd = calibrate(o, &s->c, &s->m, &s->p, 1, &s->cs, path, err, errlen);
        if (fd < 0) rc = -1;
        else close(fd);
    }
    if (!rc && !o->q.lattice && o->q.bpw > 0 && !o->q.lossless) {
        rc = policy_measure(&s->p, &o->q, &s->bp, err, errlen);
        if (!rc && o->q.calib && o->q.calib->probe_tokens) rc = weigh_tensors(o, &s->c, &s->m, &s->p, &s->bp, err, errlen);
        if (!rc) rc = policy_budget(&s->p, &o->q, &s->bp, err, errlen);
    }
    if (!rc && o->router &&
        !(rc = fit_router(o, &s->c, &s->m, &s->p, o->q.bpw > 0 ? &s->bp : NULL, &s->rf, err, errlen)))
        o->fit = &s->rf;
    return rc;
}

int convert_write(const convert_job *o, convert_state *s, int fd, convert_summary *sum, char *err, size_t errlen,
                  nsq_status *st, nsq_diag *d)
{
    return write_file(o, fd, &s->c, &s->m, &s->p, convert_budget(o, s), sum, err, errlen, st, d);
}

void convert_close(convert_state *s)
{
    lat_book_free(&s->lb);
    bpw_plan_free(&s->bp);
    router_fit_free(&s->rf);
    calib_free(&s->cs);
    arch_plan_free(&s->p);
    side_files_free(&s->files);
    free(s->calib_file);
    st_close(&s->m);
}
