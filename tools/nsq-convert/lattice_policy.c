/* lattice_policy.c - LATTICE for the layer matrices (convert.h): each
 * matrix's type under the --bpw budget, chosen by predicted damage, and the
 * encoding, layer by layer with the calibration's second moments. Payloads
 * wait in an unnamed spill file next to the output until their block is
 * written, so memory holds one layer's work at a time. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "convert.h"
#include "hessian.h"
#include "pipeline.h"
#include "lattice.h"

#define SAMPLE_ROWS 64 /* rows coded to measure a matrix's error at each type */

int lat_budgeted(const plan_tensor *t, const quant_opts *o)
{
    const tensor_rule *r = recipe_match(o, t->src->name);
    return o->lattice && !o->lossless && t->kind == NSQRT_KIND_MATRIX && !(r && (r->has_policy || r->has_split)) &&
           lat_block(t->cols);
}

typedef struct {
    const tensor_plan *p;
    const quant_opts *o;
    lat_book *b;
    atomic_int failed;
    atomic_long bad; /* a matrix with a weight LATTICE cannot hold, or -1 */
} measure_job;

/* Seeds the signs of one layer's input: matrices reading it share them. */
static uint64_t site_seed(int layer, int input) { return 0x6e73716c61747469ull ^ ((uint64_t)layer << 8 | (uint64_t)input); }

/* The second moment of matrix t's input that b keeps, or NULL. */
static const float *kept_moment(const lat_book *b, const plan_tensor *t)
{
    int k = calib_input(t->role);
    if (!b || !b->moments || k < 0 || t->layer < 0 || (uint64_t)t->layer >= b->n_layers || b->moment_dim[k] != t->cols) return NULL;
    return b->moments[(size_t)t->layer * CALIB_N_INPUTS + (size_t)k];
}

/* sum over rows s_r h s_r^T, or sum s^2 without h. */
static double weighted_norm(const float *s, uint64_t nr, uint64_t n, const float *h)
{
    double norm = 0;
    for (uint64_t r = 0; r < nr; r++)
        for (uint64_t a = 0; a < n; a++) {
            double hs = 0;
            if (!h) hs = s[r * n + a];
            for (uint64_t c = 0; h && c < n; c++) hs += (double)h[a * n + c] * s[r * n + c];
            norm += s[r * n + a] * hs;
        }
    return norm;
}

/* Relative squared error of each type on an even sample of the rows: coded
 * as the final encoding codes them, with feedback and weighed by the inputs'
 * second moment where b keeps it, else plainly: how the types compare on
 * this matrix. */
static void measure_one(size_t i, void *arg)
{
    measure_job *j = arg;
    const plan_tensor *t = &j->p->t[i];
    if (!lat_budgeted(t, j->o)) return;
    uint64_t step = t->rows > SAMPLE_ROWS ? t->rows / SAMPLE_ROWS : 1, nr = t->rows / step;
    float *w = policy_load_matrix(t), *s = malloc(nr * t->cols * sizeof *s);
    const float *h = kept_moment(j->b, t);
    lat_site site;
    char err[128];
    st_release(t->src);
    if (!w || !s || lat_site_init(&site, t->cols, site_seed(t->layer, calib_input(t->role)), h, err, sizeof err)) {
        j->failed = 1;
        free(w), free(s);
        return;
    }
    for (uint64_t r = 0; r < nr; r++) memcpy(s + r * t->cols, w + r * step * t->cols, t->cols * sizeof *s);
    double norm = weighted_norm(s, nr, t->cols, h);
    for (uint64_t k = 0; k < t->rows * t->cols; k++)
        if (!isfinite(w[k])) j->bad = (long)i;
    for (uint32_t ty = 0; ty < lat_n_types && j->bad != (long)i; ty++) {
        uint8_t *out = malloc(lat_size(&lat_types[ty], nr, t->cols));
        double e = 0;
        int rc = out ? lat_encode(&site, s, nr, &lat_types[ty], 1, out, &e) : -1;
        if (rc == -2) j->bad = (long)i;
        else if (rc) j->failed = 1;
        j->b->err[i * lat_n_types + ty] = norm > 0 ? e / norm : 0;
        free(out);
    }
    lat_site_free(&site);
    free(w), free(s);
}

int lat_measure(const tensor_plan *p, const quant_opts *o, lat_book *b, char *err, size_t n)
{
    b->fd = -1;
    b->n = p->n;
    b->type = malloc((p->n ? p->n : 1) * sizeof *b->type);
    b->err = calloc((p->n ? p->n : 1) * lat_n_types, sizeof *b->err);
    b->off = calloc(p->n ? p->n : 1, sizeof *b->off);
    b->size = calloc(p->n ? p->n : 1, sizeof *b->size);
    if (!b->type || !b->err || !b->off || !b->size) goto nomem;
    for (size_t i = 0; i < p->n; i++) {
        b->type[i] = -1;
        if (p->t[i].layer >= 0) b->elements += p->t[i].src->n_elements;
    }
    measure_job j = {p, o, b, 0, -1};
    parallel_for(p->n, o->threads, measure_one, &j);
    if (j.bad >= 0 && !j.failed) {
        snprintf(err, n, "tensor %s: a weight is not finite or too large for LATTICE's f16 scales", p->t[j.bad].src->name);
        lat_book_free(b);
        return -1;
    }
    if (!j.failed) return 0;
nomem:
    lat_book_free(b);
    return snprintf(err, n, "out of memory measuring quantization errors"), -1;
}

void lat_scale(lat_book *b, size_t i, double factor)
{
    for (uint32_t t = 0; t < lat_n_types; t++) b->err[i * lat_n_types + t] *= factor;
}

double lat_error(const lat_book *b, size_t i, uint32_t type) { return b->err[i * lat_n_types + type]; }

/* Bits of the layer blocks when each budgeted matrix takes type[i]. */
static double body_bits(const tensor_plan *p, const quant_opts *o, const int *type)
{
    double bits = 0;
    for (size_t i = 0; i < p->n; i++) {
        const plan_tensor *t = &p->t[i];
        if (t->layer < 0) continue;
        bits += 8.0 * (double)(lat_budgeted(t, o) ? lat_size(&lat_types[type[i]], t->rows, t->cols) : policy_fixed_bytes(t, o));
    }
    return bits;
}

/* Each matrix's type minimising damage + lambda * bits. */
static void choose(const tensor_plan *p, const quant_opts *o, const lat_book *b, double lambda, int *type)
{
    for (size_t i = 0; i < p->n; i++) {
        if (!lat_budgeted(&p->t[i], o)) continue;
        double best = INFINITY;
        type[i] = 0;
        for (uint32_t t = 0; t < lat_n_types; t++) {
            double c = lat_error(b, i, t) + lambda * 8.0 * (double)lat_size(&lat_types[t], p->t[i].rows, p->t[i].cols);
            if (c < best) best = c, type[i] = (int)t;
        }
    }
}

/* After the Lagrangian choice, the bits left go to the upgrades that save
 * the most damage per bit, while they fit. */
static void fill(const tensor_plan *p, const quant_opts *o, const lat_book *b, double budget, int *type)
{
    for (;;) {
        double have = body_bits(p, o, type), best = 0;
        size_t bi = 0;
        int bt = -1;
        for (size_t i = 0; i < p->n; i++) {
            if (!lat_budgeted(&p->t[i], o)) continue;
            double s0 = 8.0 * (double)lat_size(&lat_types[type[i]], p->t[i].rows, p->t[i].cols);
            for (uint32_t t = 0; t < lat_n_types; t++) {
                double ds = 8.0 * (double)lat_size(&lat_types[t], p->t[i].rows, p->t[i].cols) - s0;
                double gain = lat_error(b, i, (uint32_t)type[i]) - lat_error(b, i, t);
                if (ds > 0 && gain > 0 && have + ds <= budget && gain / ds > best) best = gain / ds, bi = i, bt = (int)t;
            }
        }
        if (bt < 0) return;
        type[bi] = bt;
    }
}

int lat_budget(const tensor_plan *p, const quant_opts *o, lat_book *b, char *err, size_t n)
{
    double budget = o->bpw * (double)b->elements, lo = -60, hi = 40; /* log10 lambda */
    choose(p, o, b, pow(10, hi), b->type);
    if (body_bits(p, o, b->type) > budget) {
        snprintf(err, n, "--bpw %.3f is below what this model can reach (%.3f with every matrix at its fewest bits)", o->bpw,
                 body_bits(p, o, b->type) / (double)b->elements);
        return -1;
    }
    for (int it = 0; it < 100; it++) {
        double mid = (lo + hi) / 2;
        choose(p, o, b, pow(10, mid), b->type);
        if (body_bits(p, o, b->type) > budget) lo = mid;
        else hi = mid;
    }
    choose(p, o, b, pow(10, hi), b->type);
    fill(p, o, b, budget, b->type);
    b->predicted_bpw = body_bits(p, o, b->type) / (double)b->elements;
    return 0;
}

/* ---- encoding ---- */

typedef struct {
    const tensor_plan *p;
    const quant_opts *o;
    lat_book *b;
    calib_stats *cs; /* the columns' mean x^2 are set from the second moments */
    double t0;
    int show;
} encode_job;

static int spill(lat_book *b, size_t i, const uint8_t *data, uint64_t size, char *err, size_t n)
{
    for (uint64_t done = 0; done < size;) {
        ssize_t k = pwrite(b->fd, data + done, size - done, (off_t)(b->spill_end + done));
        if (k <= 0) return snprintf(err, n, "spill file: write failed"), -1;
        done += (uint64_t)k;
    }
    b->off[i] = b->spill_end, b->size[i] = size;
    b->spill_end += size;
    return 0;
}

/* Codes layer L's budgeted matrices; sites[k].h the second moment of input
 * k, or all NULL without calibration. */
static int encode_layer(void *ctx, uint32_t L, const hessian_site *sites, char *err, size_t n)
{
    encode_job *j = ctx;
    lat_site site[CALIB_N_INPUTS];
    int ready[CALIB_N_INPUTS] = {0}, rc = 0;
    for (size_t i = 0; i < j->p->n && !rc; i++) {
        const plan_tensor *t = &j->p->t[i];
        int k = calib_input(t->role);
        if (t->layer != (int)L || !lat_budgeted(t, j->o) || k < 0) continue;
        const float *h = sites && sites[k].dim == t->cols ? sites[k].h : NULL;
        if (!ready[k] && lat_site_init(&site[k], t->cols, site_seed(t->layer, k), h, err, n)) return -1;
        ready[k] = 1;
        const lat_type *ty = &lat_types[j->b->type[i]];
        uint64_t size = lat_size(ty, t->rows, t->cols);
        float *w = policy_load_matrix(t);
        uint8_t *out = malloc(size);
        st_release(t->src);
        int erc = !w || !out ? -1 : lat_encode(&site[k], w, t->rows, ty, j->o->threads, out, NULL);
        if (erc == -2) rc = (snprintf(err, n, "tensor %s: a weight is too large for LATTICE's f16 scales", t->src->name), -1);
        else if (erc) rc = (snprintf(err, n, "out of memory"), -1);
        if (!rc) rc = spill(j->b, i, out, size, err, n);
        free(w), free(out);
    }
    for (int k = 0; k < CALIB_N_INPUTS; k++) {
        if (ready[k]) lat_site_free(&site[k]);
        if (j->cs && sites) calib_set_columns(j->cs, k, L, sites[k].h, sites[k].dim);
    }
    if (j->show)
        fprintf(stderr, "\r" TOOL ": coded layer %u of %llu  %.0fs   ", L + 1, (unsigned long long)j->b->n_layers,
                cli_now() - j->t0);
    return rc;
}

/* Every layer with the second moments b keeps (none without calibration),
 * rather than running the model again for them. */
static int encode_kept(encode_job *j, char *err, size_t n)
{
    const lat_book *b = j->b;
    int rc = 0;
    for (uint64_t L = 0; L < b->n_layers && !rc; L++) {
        hessian_site sites[CALIB_N_INPUTS];
        for (int k = 0; b->moments && k < CALIB_N_INPUTS; k++) {
            float *h = b->moments[L * CALIB_N_INPUTS + (uint64_t)k];
            sites[k] = (hessian_site){h ? b->moment_dim[k] : 0, j->o->calib->tokens, h};
        }
        rc = encode_layer(j, (uint32_t)L, b->moments ? sites : NULL, err, n);
    }
    return rc;
}

int lat_encode_all(const char *model_path, const char *out_path, const tensor_plan *p, const quant_opts *o, calib_stats *cs,
                   uint64_t n_layers, int show, lat_book *b, char *err, size_t n)
{
    char why[512];
    encode_job j = {p, o, b, cs, cli_now(), show};
    b->n_layers = n_layers;
    if ((b->fd = cli_tmpfile(out_path, why, sizeof why)) < 0) return snprintf(err, n, "%s: %s", out_path, why), -1;
    int rc = o->calib && !b->moments ? hessian_run(model_path, o->calib->probe_ids, o->calib->tokens, o->calib->window,
                                                   o->threads, encode_layer, &j, err, n)
                                       : encode_kept(&j, err, n);
    if (show) fputc('\n', stderr);
    return rc;
}

int lat_payload(const lat_book *b, size_t i, const plan_tensor *t, encoded *e)
{
    e->scheme = NSQ_SCHEME_LATTICE;
    e->n_dims = 2;
    e->dims[0] = t->rows, e->dims[1] = t->cols;
    e->group_size = lat_block(t->cols);
    e->size = b->size[i];
    if (!(e->data = malloc(e->size))) return -1;
    for (uint64_t done = 0; done < e->size;) {
        ssize_t k = pread(b->fd, e->data + done, e->size - done, (off_t)(b->off[i] + done));
        if (k <= 0) return -1;
        done += (uint64_t)k;
    }
    return 0;
}

/* A probe: matrix t alone at 4 bits (e8+e8), small enough a change that the
 * divergences of several add up; with feedback where b keeps the moments. */
int lat_probe_encode(const plan_tensor *t, const lat_book *b, encoded *e)
{
    lat_site site;
    char err[128];
    float *w = policy_load_matrix(t);
    e->scheme = NSQ_SCHEME_LATTICE;
    e->n_dims = 2;
    e->dims[0] = t->rows, e->dims[1] = t->cols;
    e->group_size = lat_block(t->cols);
    e->size = lat_size(&lat_types[LAT_PROBE_TYPE], t->rows, t->cols);
    int rc = !w || !(e->data = malloc(e->size)) ||
             lat_site_init(&site, t->cols, site_seed(t->layer, calib_input(t->role)), kept_moment(b, t), err, sizeof err);
    if (!rc) {
        rc = lat_encode(&site, w, t->rows, &lat_types[LAT_PROBE_TYPE], 1, e->data, NULL);
        lat_site_free(&site);
    } else {
        rc = -1;
    }
    free(w);
    return rc;
}

static int keep_layer(void *ctx, uint32_t L, const hessian_site *sites, char *err, size_t n)
{
    lat_book *b = ctx;
    for (int k = 0; k < CALIB_N_INPUTS; k++) {
        size_t d = sites[k].dim;
        if (!d || d != b->moment_dim[k]) continue;
        float *h = malloc(d * d * sizeof *h);
        if (!h) return snprintf(err, n, "out of memory keeping the second moments"), -1;
        b->moments[(size_t)L * CALIB_N_INPUTS + (size_t)k] = memcpy(h, sites[k].h, d * d * sizeof *h);
    }
    return 0;
}

int lat_keep_moments(const char *model_path, const quant_opts *o, uint64_t n_layers, const uint32_t dim[CALIB_N_INPUTS],
                     lat_book *b, char *err, size_t n)
{
    double bytes = 0;
    for (int k = 0; k < CALIB_N_INPUTS; k++) bytes += (double)n_layers * dim[k] * dim[k] * sizeof(float);
    if (!o->calib || bytes > LAT_MOMENTS_MAX) return 0;
    if (!(b->moments = calloc(n_layers * CALIB_N_INPUTS, sizeof *b->moments))) return snprintf(err, n, "out of memory"), -1;
    memcpy(b->moment_dim, dim, sizeof b->moment_dim);
    b->n_layers = n_layers;
    return hessian_run(model_path, o->calib->probe_ids, o->calib->tokens, o->calib->window, o->threads, keep_layer, b, err, n);
}

void lat_book_free(lat_book *b)
{
    if (b->type && b->fd >= 0) close(b->fd);
    for (uint64_t k = 0; b->moments && k < b->n_layers * CALIB_N_INPUTS; k++) free(b->moments[k]);
    free(b->moments);
    free(b->type), free(b->err), free(b->off), free(b->size);
    memset(b, 0, sizeof *b);
    b->fd = -1;
}
