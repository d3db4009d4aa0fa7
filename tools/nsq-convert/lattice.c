/* lattice.c - the converter's LATTICE encoder; see lattice.h. */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "lattice.h"

/* LAPACK (from OpenBLAS): Cholesky factor and the inverse from it. */
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);
void dtrtri_(const char *uplo, const char *diag, const int *n, double *a, const int *lda, int *info);
void openblas_set_num_threads(int n);

const lat_type lat_types[] = {
    {1, {NSQ_LAT_E8}, 0, "e8", 0},
    {2, {NSQ_LAT_E8, NSQ_LAT_E8S}, 0, "e8+e8s", 0},
    {2, {NSQ_LAT_E8, NSQ_LAT_E8}, 0, "e8+e8", 0},
    {3, {NSQ_LAT_E8, NSQ_LAT_E8, NSQ_LAT_E8S}, 0, "e8+e8+e8s", 0},
    {3, {NSQ_LAT_E8, NSQ_LAT_E8, NSQ_LAT_E8}, 0, "e8+e8+e8", 0},
    {1, {NSQ_LAT_INT8}, 0, "int8", 0},
};
const uint32_t lat_n_types = sizeof lat_types / sizeof lat_types[0];

#define E8 NSQ_LAT_E8
#define ES NSQ_LAT_E8S
const lat_type lat_nested[] = {
    {1, {E8}, 0, "e8", 0},
    {2, {E8, ES}, 0, "e8+e8s", 0},
    {2, {E8, E8}, 0, "e8+e8", 0},
    {3, {E8, ES, ES}, 0, "e8+e8s+e8s", 0},
    {3, {E8, ES, E8}, 0, "e8+e8s+e8", 0},
    {3, {E8, E8, ES}, 0, "e8+e8+e8s", 0},
    {3, {E8, E8, E8}, 0, "e8+e8+e8", 0},
    {4, {E8, ES, ES, ES}, 0, "e8+e8s+e8s+e8s", 0},
    {4, {E8, ES, ES, E8}, 0, "e8+e8s+e8s+e8", 0},
    {4, {E8, ES, E8, ES}, 0, "e8+e8s+e8+e8s", 0},
    {4, {E8, E8, ES, ES}, 0, "e8+e8+e8s+e8s", 0},
    {4, {E8, E8, ES, E8}, 0, "e8+e8+e8s+e8", 0},
    {4, {E8, E8, E8, ES}, 0, "e8+e8+e8+e8s", 0},
};
const uint32_t lat_n_nested = sizeof lat_nested / sizeof lat_nested[0];
#undef E8
#undef ES

int lat_prefix(const lat_type *a, const lat_type *b)
{
    if (a->n_stages > b->n_stages) return 0;
    for (uint32_t s = 0; s < a->n_stages; s++)
        if (a->kind[s] != b->kind[s]) return 0;
    return 1;
}

#define CHUNK_ROWS 64 /* rows coded together: fixed, so the result does not depend on threads */
#define PANEL 128     /* columns between two deferred updates of the columns after them */
/* With error feedback the values coded are the weights plus the errors fed
 * forward, wider than the weights the scales are fitted to: scales 6 % above
 * the fit measured best on tiny-llama (KLD -7 % at 4 bpw, -8 % at 3). */
#define FEEDBACK_SCALE 1.06f
/* Successive refinement (a type in several passes, section: refinement
 * levels) keeps one target per depth, the weights plus that depth's own
 * error fed forward, so each depth's error is shaped for it. Coding each
 * depth for its own target alone leaves residuals, wider than a direct
 * code's, that the next stages refine 1.5 x worse than a direct code of
 * those bits (tiny-llama's matrices, e8+e8); coding a blend of the deeper
 * targets (the type's blend, weights blend^k) and scales refitted to what
 * was coded, 1.1 x their fit, brings that to about 1.2 x (blend 0.5) for a
 * base about 10 % worse. E8S stages take their fit as it is (tiny-llama,
 * 2.5,3.5,4.5: depth 1 -1 % against 1.1 x, 0.9 x no better). */
#define REFIT_SCALE 1.1f
#define REFIT_SCALE_E8S 1.0f

/* ---- the E8 codebook ----
 * The magnitude table is closed under permutations of the coordinates, so
 * it is a handful of sorted patterns: the nearest vector with a given
 * pattern pairs its largest magnitudes with z's largest, takes z's signs,
 * and when their count has the wrong parity flips the smallest coordinate. */

#define E8_MAX_PATTERNS 16
static float e8_pat[E8_MAX_PATTERNS][8]; /* sorted patterns a = u / 2, largest first */
static uint8_t e8_pat_par[E8_MAX_PATTERNS];
static int e8_n_pat;
static int16_t e8_index[65536]; /* a's digits (u-1)/2, 2 bits each, coordinate 0 lowest -> index */
static pthread_once_t e8_once = PTHREAD_ONCE_INIT;

static void e8_init(void)
{
    const uint8_t (*A)[8] = nsq_lattice_e8_table();
    memset(e8_index, 0xff, sizeof e8_index);
    for (int i = 0; i < 256; i++) {
        uint32_t key = 0, sum = 0;
        float a[8];
        for (int k = 0; k < 8; k++) {
            key |= (uint32_t)(A[i][k] - 1) / 2 << (2 * k);
            sum += A[i][k];
            a[k] = A[i][k] * 0.5f;
        }
        e8_index[key] = (int16_t)i;
        for (int k = 1; k < 8; k++) /* insertion sort, descending */
            for (int m = k; m > 0 && a[m] > a[m - 1]; m--) {
                float t = a[m];
                a[m] = a[m - 1], a[m - 1] = t;
            }
        int seen = 0;
        for (int p = 0; p < e8_n_pat && !seen; p++) seen = !memcmp(e8_pat[p], a, sizeof a);
        if (!seen && e8_n_pat < E8_MAX_PATTERNS) {
            memcpy(e8_pat[e8_n_pat], a, sizeof a);
            e8_pat_par[e8_n_pat++] = (uint8_t)(sum / 2 % 2);
        }
    }
    openblas_set_num_threads(1); /* parallel over fixed row chunks instead */
}

/* Sorts 8 keys descending: a branchless network of 19 exchanges. */
static void sort8_desc(uint64_t *k)
{
    static const uint8_t net[19][2] = {{0, 2}, {1, 3}, {4, 6}, {5, 7}, {0, 4}, {1, 5}, {2, 6}, {3, 7}, {0, 1}, {2, 3},
                                       {4, 5}, {6, 7}, {2, 4}, {3, 5}, {1, 4}, {3, 6}, {1, 2}, {3, 4}, {5, 6}};
    for (int i = 0; i < 19; i++) {
        uint64_t a = k[net[i][0]], b = k[net[i][1]];
        k[net[i][0]] = a > b ? a : b, k[net[i][1]] = a > b ? b : a;
    }
}

/* The codebook vector (shift removed) nearest to z: its index, r and *dist. */
static int e8_search(const float *z, float *r, float *dist)
{
    float az[8];
    int ord[8], neg = 0;
    uint64_t key8[8];
    for (int k = 0; k < 8; k++) { /* |z| descending, ties in coordinate order: the bits of a float >= 0 sort as it does */
        uint32_t bits;
        az[k] = fabsf(z[k]);
        memcpy(&bits, &az[k], sizeof bits);
        key8[k] = (uint64_t)bits << 3 | (uint64_t)(7 - k);
        neg += z[k] < 0;
    }
    sort8_desc(key8);
    for (int k = 0; k < 8; k++) ord[k] = 7 - (int)(key8[k] & 7);
    float best = INFINITY;
    int bp = 0, flip = 0;
    for (int p = 0; p < e8_n_pat; p++) {
        float cost = 0;
        for (int k = 0; k < 8; k++) cost += (e8_pat[p][k] - az[ord[k]]) * (e8_pat[p][k] - az[ord[k]]);
        int f = (neg & 1) != e8_pat_par[p];
        if (f) cost += 4 * e8_pat[p][7] * az[ord[7]];
        if (cost < best) best = cost, bp = p, flip = f;
    }
    uint32_t key = 0;
    for (int k = 0; k < 8; k++) {
        int c = ord[k];
        float a = e8_pat[bp][k];
        r[c] = (z[c] < 0) != (flip && k == 7) ? -a : a;
        key |= (uint32_t)(a - 0.5f) << (2 * c);
    }
    *dist = best;
    return e8_index[key];
}

/* The code nearest to y (codebook units); v receives its value. */
static uint16_t e8_nearest(const float *y, float *v)
{
    float best = INFINITY;
    uint16_t code = 0;
    for (int sh = 0; sh < 2; sh++) {
        float t = sh ? -0.25f : 0.25f, z[8], r[8], dist;
        for (int k = 0; k < 8; k++) z[k] = y[k] - t;
        int i = e8_search(z, r, &dist);
        if (dist < best) {
            best = dist;
            code = (uint16_t)(i | (sh << 15));
            for (int k = 0; k < 7; k++) code |= (uint16_t)((r[k] < 0) << (8 + k));
            for (int k = 0; k < 8; k++) v[k] = r[k] + t;
        }
    }
    return code;
}

/* ---- the E8S codebook ----
 * Every code of a class has the same norm, so the nearest in each class is
 * the one most aligned with z: the two largest magnitudes (pairs), all
 * signs with one flip of the smallest when their parity is odd (halves),
 * the largest magnitude (2e_k); the nearest of the three wins. */
static uint8_t e8s_nearest(const float *z)
{
    float a[8], sum = 0, mn = INFINITY;
    int i = 0, j = 1, lo = 0, neg = 0;
    for (int k = 0; k < 8; k++) {
        a[k] = fabsf(z[k]), sum += a[k];
        if (a[k] < mn) mn = a[k], lo = k;
        neg |= (z[k] < 0) << k;
    }
    if (a[j] > a[i]) i = 1, j = 0;
    for (int k = 2; k < 8; k++) /* i: largest, j: second */
        if (a[k] > a[i]) j = i, i = k;
        else if (a[k] > a[j]) j = k;
    if (__builtin_popcount((unsigned)neg) & 1) neg ^= 1 << lo, sum -= 2 * mn;
    float pair = 2 * (a[i] + a[j]) - 2, half = sum - 2, axis = 4 * a[i] - 4; /* 2 z.c - |c|^2 */
    if (axis > pair && axis > half) return (uint8_t)(240 + 2 * i + (z[i] < 0));
    if (half > pair) return (uint8_t)(112 + (neg & 0x7F));
    int p = i < j ? i : j, q = i < j ? j : i, idx = 0;
    for (int k = 0; k < p; k++) idx += 7 - k;
    idx += q - p - 1;
    return (uint8_t)(4 * idx + (z[p] < 0) + 2 * (z[q] < 0));
}

/* ---- one stage of 8 weights ---- */

/* Codes y (8 weights) at scale d with kind, subtracts what is coded from y
 * and stores the code at p. */
static void stage_code(uint32_t kind, float d, float *y, uint8_t *p)
{
    float v[8];
    if (kind == NSQ_LAT_E8) {
        float z[8];
        for (int k = 0; k < 8; k++) z[k] = d != 0 ? y[k] / d : 0;
        uint16_t c = e8_nearest(z, v);
        p[0] = (uint8_t)c, p[1] = (uint8_t)(c >> 8);
    } else if (kind == NSQ_LAT_E8S) {
        float z[8];
        int8_t v4[8];
        for (int k = 0; k < 8; k++) z[k] = d != 0 ? y[k] / d : 0;
        p[0] = e8s_nearest(z);
        nsq_lattice_e8s_value(p[0], v4);
        for (int k = 0; k < 8; k++) v[k] = (float)v4[k] * 0.25f;
    } else {
        for (int k = 0; k < 8; k++) {
            float q = d != 0 ? rintf(y[k] / d) : 0;
            q = q < -128 ? -128 : q > 127 ? 127 : q;
            p[k] = (uint8_t)(int8_t)q;
            v[k] = q;
        }
    }
    for (int k = 0; k < 8; k++) y[k] -= d * v[k];
}

/* ---- rotation ---- */

uint32_t lat_block(uint64_t cols)
{
    if (cols == 0 || cols % 8) return 0;
    uint32_t b = 8;
    while (b < 16384 && cols % (2 * b) == 0) b *= 2;
    return b;
}

/* x (cols values) <- R x: signs, then each block's Hadamard transform over sqrt(B). */
static void rotate(const lat_site *s, float *x)
{
    float c = (float)(1.0 / sqrt((double)s->block));
    for (uint64_t j = 0; j < s->cols; j++)
        if (s->signs[j / 8] >> (j % 8) & 1) x[j] = -x[j];
    for (uint64_t b = 0; b < s->cols; b += s->block) {
        nsq_lattice_hadamard(x + b, s->block);
        for (uint32_t i = 0; i < s->block; i++) x[b + i] *= c;
    }
}

/* ---- sites ---- */

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* H' = R H R^T, damped, in double; NULL when out of memory. */
static double *rotated_h(const lat_site *s, const float *h)
{
    uint64_t n = s->cols;
    float *t = malloc(n * n * sizeof *t), *row = malloc(n * sizeof *row);
    double *hd = malloc(n * n * sizeof *hd);
    if (!t || !row || !hd) return free(t), free(row), free(hd), NULL;
    for (uint64_t i = 0; i < n; i++) { /* t = (H R^T)^T = R H */
        memcpy(row, h + i * n, n * sizeof *row);
        rotate(s, row);
        for (uint64_t j = 0; j < n; j++) t[j * n + i] = row[j];
    }
    double mean = 0;
    for (uint64_t i = 0; i < n; i++) { /* rows of R (R H)^T = R H R^T */
        rotate(s, t + i * n);
        for (uint64_t j = 0; j < n; j++) hd[i * n + j] = t[i * n + j];
        mean += hd[i * n + i];
    }
    mean /= (double)n;
    for (uint64_t i = 0; i < n; i++) hd[i * n + i] += s->damp * mean + 1e-30;
    free(t), free(row);
    return hd;
}

static void reverse(double *a, size_t n)
{
    for (size_t i = 0; i < n / 2; i++) {
        double t = a[i];
        a[i] = a[n - 1 - i], a[n - 1 - i] = t;
    }
}

/* s->v, s->uinv from H' (n x n, overwritten): U is the upper Cholesky factor
 * of H'^-1. With J the order reversed and J H' J = L L^T, U = J L^-1 J: one
 * factorization and one triangular inverse. Returns LAPACK's info (0: done). */
static int ldlq_factors(lat_site *s, double *a)
{
    int n = (int)s->cols, info = 0;
    size_t nn = (size_t)n * n;
    reverse(a, nn); /* J H' J: both indices reversed */
    dpotrf_("L", &n, a, &n, &info);
    if (!info) dtrtri_("L", "N", &n, a, &n, &info); /* column-major: L^-1 (i, j) at a[j n + i] */
    if (info) return info;
    reverse(a, nn); /* now U[j][i] = L^-1(n-1-j, n-1-i), i >= j, is at a[i n + j]: transpose it into place */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++) a[(size_t)j * n + i] = a[(size_t)i * n + j], a[(size_t)i * n + j] = 0;
    for (int g = 0; g < n; g += 8) { /* V rows g..g+7 = U_gg^-1 U[g..g+7][:] */
        double inv[8][8] = {{0}};
        for (int c = 7; c >= 0; c--) { /* back substitution, column by column of the identity */
            inv[c][c] = 1 / a[(size_t)(g + c) * n + g + c];
            for (int r = c - 1; r >= 0; r--) {
                double sum = 0;
                for (int k = r + 1; k <= c; k++) sum += a[(size_t)(g + r) * n + g + k] * inv[k][c];
                inv[r][c] = -sum / a[(size_t)(g + r) * n + g + r];
            }
        }
        for (int r = 0; r < 8; r++) {
            for (int c = 0; c < 8; c++) s->uinv[(size_t)g * 8 + r * 8 + c] = (float)inv[r][c];
            for (int j = g; j < n; j++) {
                double sum = 0;
                for (int k = r; k < 8; k++) sum += inv[r][k] * a[(size_t)(g + k) * n + j];
                s->v[(size_t)(g + r) * n + j] = (float)sum;
            }
        }
    }
    return 0;
}

int lat_site_init(lat_site *s, uint64_t cols, uint64_t seed, const float *h, char *err, size_t errlen)
{
    pthread_once(&e8_once, e8_init);
    memset(s, 0, sizeof *s);
    s->cols = cols;
    s->block = lat_block(cols);
    s->damp = 0.01;
    if (!s->block) return snprintf(err, errlen, "LATTICE needs a multiple of 8 columns, not %llu", (unsigned long long)cols), -1;
    if (!(s->signs = malloc(cols / 8))) goto oom;
    for (uint64_t i = 0; i < cols / 8; i++) s->signs[i] = (uint8_t)splitmix(&seed);
    if (!h) return 0;
    s->hdiag = malloc(cols * sizeof *s->hdiag);
    s->v = calloc(cols * cols, sizeof *s->v);
    s->uinv = malloc(cols * 8 * sizeof *s->uinv);
    if (!s->hdiag || !s->v || !s->uinv) goto oom;
    for (int tries = 0;; tries++) {
        double *a = rotated_h(s, h);
        if (!a) goto oom;
        for (uint64_t i = 0; i < cols; i++) s->hdiag[i] = (float)a[i * cols + i];
        int info = ldlq_factors(s, a);
        free(a);
        if (!info) return 0;
        if (tries == 6) {
            lat_site_free(s);
            return snprintf(err, errlen, "second moment of %llu columns not positive definite", (unsigned long long)cols), -1;
        }
        s->damp *= 10; /* not positive definite in f64: damp more */
    }
oom:
    lat_site_free(s);
    return snprintf(err, errlen, "out of memory"), -1;
}

void lat_site_free(lat_site *s)
{
    free(s->signs), free(s->hdiag), free(s->v), free(s->uinv);
    memset(s, 0, sizeof *s);
}

uint64_t lat_size(const lat_type *t, uint64_t rows, uint64_t cols)
{
    return nsq_lattice_payload_size(rows, cols, lat_block(cols), t->n_stages, t->kind);
}

/* ---- scales ---- */

/* Codes y (n values, a multiple of 8) at scale d: the weighted squared
 * error, and the sums that give the best scale for these codes. */
static double try_scale(uint32_t kind, float d, const float *y, const float *wt, uint32_t n, double *yv, double *vv)
{
    double e = 0;
    uint8_t code[8];
    *yv = *vv = 0;
    for (uint32_t g = 0; g < n; g += 8) {
        float r[8];
        memcpy(r, y + g, sizeof r);
        stage_code(kind, d, r, code);
        for (int k = 0; k < 8; k++) {
            double w = wt ? wt[g + k] : 1.0, v = d != 0 ? (y[g + k] - r[k]) / d : 0;
            e += w * r[k] * r[k], *yv += w * y[g + k] * v, *vv += w * v * v;
        }
    }
    return e;
}

/* The f16 scale for coding y (one row's block) with kind: from the RMS (or
 * the largest magnitude for INT8; E8S from near its best for Gaussian
 * values, 1.63 x the RMS: the refit keeps to the optimum nearest its start,
 * and from 1.2 x a nested base was 3 % worse), then refitted to the codes
 * it gives, by weighted least squares, while that lowers the error weighted
 * by the inputs' second moments. */
static float choose_scale(uint32_t kind, const float *y, const float *wt, uint32_t n)
{
    double ss = 0, mx = 0, yv, vv;
    for (uint32_t k = 0; k < n; k++) {
        ss += (double)y[k] * y[k];
        if (fabs(y[k]) > mx) mx = fabs(y[k]);
    }
    float rms = (float)sqrt(ss / n);
    float d = nsq_f16_to_f32(nsq_f32_to_f16(kind == NSQ_LAT_E8 ? 0.97f * rms
                                            : kind == NSQ_LAT_E8S ? 1.6f * rms : (float)(mx / 127)));
    double e = try_scale(kind, d, y, wt, n, &yv, &vv);
    for (int it = 0; it < 2 && vv > 0; it++) {
        float d2 = nsq_f16_to_f32(nsq_f32_to_f16((float)(yv / vv)));
        double yv2, vv2, e2 = try_scale(kind, d2, y, wt, n, &yv2, &vv2);
        if (!(e2 < e)) break;
        d = d2, e = e2, yv = yv2, vv = vv2;
    }
    return d;
}

/* ---- encoding ---- */

typedef struct {
    const lat_site *s;
    const lat_type *t;
    uint32_t n_pass, pass_end[NSQ_LATTICE_MAX_STAGES]; /* pass p codes stages pass_end[p-1] .. pass_end[p]-1 */
    const float *wr;                                    /* the rotated rows */
    uint64_t rows;
    uint8_t *scales[NSQ_LATTICE_MAX_STAGES], *codes[NSQ_LATTICE_MAX_STAGES]; /* in the payload, as libnsq lays it out */
    uint64_t row_bytes[NSQ_LATTICE_MAX_STAGES];
    double *proxy; /* per chunk */
    int failed;
} enc_job;

static void put_scale(const enc_job *j, uint64_t r, uint64_t b, uint32_t st, float dd)
{
    uint64_t k = r * (j->s->cols / j->s->block) + b;
    uint16_t h = nsq_f32_to_f16(dd);
    j->scales[st][2 * k] = (uint8_t)h, j->scales[st][2 * k + 1] = (uint8_t)(h >> 8);
}

/* Chooses the scales of row r of the chunk from x (its values as they will
 * be coded: each stage on what the ones before leave, coded without
 * feedback) and writes them. */
static void row_scales(const enc_job *j, uint64_t r, const float *x, float (*d)[NSQ_LATTICE_MAX_STAGES], float *y)
{
    const lat_site *s = j->s;
    uint64_t nb = s->cols / s->block;
    memcpy(y, x, s->cols * sizeof *y);
    for (uint64_t b = 0; b < nb; b++)
        for (uint32_t st = 0; st < j->t->n_stages; st++) {
            float *yb = y + b * s->block;
            const float *wt = s->hdiag ? s->hdiag + b * s->block : NULL;
            float dd = choose_scale(j->t->kind[st], yb, wt, s->block);
            if (s->v) dd = nsq_f16_to_f32(nsq_f32_to_f16(dd * FEEDBACK_SCALE));
            uint8_t code[8];
            d[b][st] = dd;
            for (uint32_t g = 0; g < s->block; g += 8) stage_code(j->t->kind[st], dd, yb + g, code);
            put_scale(j, r, b, st, dd);
        }
}

/* The scales of the chunk's nr rows from r0 refitted to the values each
 * stage coded (in: [stage][row][cols]), feedback and blend included. */
static void refit_scales(const enc_job *j, uint64_t r0, uint64_t nr, const float *in, float (*d)[NSQ_LATTICE_MAX_STAGES])
{
    const lat_site *s = j->s;
    uint64_t n = s->cols, nb = n / s->block;
    for (uint64_t r = 0; r < nr; r++)
        for (uint64_t b = 0; b < nb; b++)
            for (uint32_t st = 0; st < j->t->n_stages; st++) {
                const float *wt = s->hdiag ? s->hdiag + b * s->block : NULL;
                float dd = choose_scale(j->t->kind[st], in + (st * nr + r) * n + b * s->block, wt, s->block);
                dd = nsq_f16_to_f32(nsq_f32_to_f16(dd * (j->t->kind[st] == NSQ_LAT_E8S ? REFIT_SCALE_E8S : REFIT_SCALE)));
                d[r * nb + b][st] = dd;
                put_scale(j, r0 + r, b, st, dd);
            }
}

/* Codes the 8 columns from g of row r at every depth (t[p]: depth p's
 * targets there), leaving depth p's error in e[p]. The stages of depth p
 * code its target blended with the deeper ones' (weights blend^k); the last
 * depth codes its own, so with one pass this is plain LDLQ. When in is not
 * NULL, in[st * stride] receives what stage st coded. */
static void code_group(const enc_job *j, uint64_t r, uint64_t g, float (*d)[NSQ_LATTICE_MAX_STAGES], float *const *t,
                       float (*e)[8], float *in, uint64_t stride)
{
    uint32_t b = (uint32_t)(g / j->s->block), st = 0;
    float pre[8] = {0}; /* what the depths before coded */
    for (uint32_t p = 0; p < j->n_pass; p++) {
        float y[8], x[8], wk = 1, wsum = 1;
        for (int k = 0; k < 8; k++) y[k] = t[p][k] - pre[k];
        for (uint32_t q = p + 1; q < j->n_pass; q++) {
            wk *= j->t->blend, wsum += wk;
            for (int k = 0; k < 8; k++) y[k] += wk * (t[q][k] - pre[k]);
        }
        if (wsum != 1)
            for (int k = 0; k < 8; k++) y[k] /= wsum;
        memcpy(x, y, sizeof x);
        for (; st < j->pass_end[p]; st++) {
            uint64_t rb = j->row_bytes[st];
            if (in) memcpy(in + st * stride + g, x, sizeof x);
            stage_code(j->t->kind[st], d[b][st], x, j->codes[st] + r * rb + g * rb / j->s->cols);
        }
        for (int k = 0; k < 8; k++) { /* exactly x at the last depth */
            e[p][k] = x[k] + ((t[p][k] - pre[k]) - y[k]);
            pre[k] += y[k] - x[k];
        }
    }
}

/* One pass over the chunk's nr rows from r0 (w[p]: depth p's targets, at
 * first the rotated rows), coding each group of 8 columns and feeding each
 * depth's error into that depth's columns after it. Adds each depth's proxy
 * loss to proxy[p]. */
static void ldlq_pass(const enc_job *j, uint64_t r0, uint64_t nr, float (*d)[NSQ_LATTICE_MAX_STAGES], float *const *w,
                      float *const *dl, float *in, double *proxy)
{
    const lat_site *s = j->s;
    uint64_t n = s->cols, nb = n / s->block;
    for (uint64_t p0 = 0; p0 < n; p0 += PANEL) {
        uint64_t pn = n - p0 < PANEL ? n - p0 : PANEL;
        for (uint64_t g = p0; g < p0 + pn; g += 8)
            for (uint64_t r = 0; r < nr; r++) {
                float *t[NSQ_LATTICE_MAX_STAGES], e[NSQ_LATTICE_MAX_STAGES][8];
                for (uint32_t p = 0; p < j->n_pass; p++) t[p] = w[p] + r * n + g;
                code_group(j, r0 + r, g, d + r * nb, t, e, in ? in + r * n : NULL, nr * n);
                for (uint32_t p = 0; p < j->n_pass; p++) {
                    memcpy(dl[p] + r * PANEL + (g - p0), e[p], sizeof e[p]);
                    if (!s->v) {
                        for (int k = 0; k < 8; k++) proxy[p] += (double)e[p][k] * e[p][k];
                        continue;
                    }
                    for (int c = 0; c < 8; c++) { /* ||e U_gg^-1||^2 */
                        double z = 0;
                        for (int k = 0; k <= c; k++) z += (double)e[p][k] * s->uinv[g * 8 + k * 8 + c];
                        proxy[p] += z * z;
                    }
                    for (int k = 0; k < 8; k++) /* the rest of the panel, at once */
                        for (uint64_t c = g + 8; c < p0 + pn; c++) t[p][c - g] -= e[p][k] * s->v[(g + k) * n + c];
                }
            }
        if (s->v && p0 + pn < n)
            for (uint32_t p = 0; p < j->n_pass; p++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)(n - p0 - pn), (int)pn, -1.0f, dl[p],
                            PANEL, s->v + p0 * n + p0 + pn, (int)n, 1.0f, w[p] + p0 + pn, (int)n);
    }
}

/* Scales from the weights, then, with several depths, a second pass with the
 * scales refitted to what the first one coded: the blend and the feedback
 * make those values wider than the weights' residuals. */
static void enc_chunk(size_t ci, void *ctx)
{
    enc_job *j = ctx;
    const lat_site *s = j->s;
    uint32_t np = j->n_pass, S = j->t->n_stages;
    uint64_t n = s->cols, nb = n / s->block, r0 = ci * CHUNK_ROWS;
    uint64_t nr = j->rows - r0 < CHUNK_ROWS ? j->rows - r0 : CHUNK_ROWS;
    float *w[NSQ_LATTICE_MAX_STAGES] = {0}, *dl[NSQ_LATTICE_MAX_STAGES] = {0}, *y = malloc(n * sizeof *y);
    float *in = np > 1 ? malloc(S * nr * n * sizeof *in) : NULL;
    float(*d)[NSQ_LATTICE_MAX_STAGES] = malloc(nr * nb * sizeof *d);
    int ok = y && d && (np == 1 || in);
    for (uint32_t p = 0; p < np; p++) {
        w[p] = malloc(nr * n * sizeof *w[p]), dl[p] = malloc(nr * PANEL * sizeof *dl[p]);
        ok = ok && w[p] && dl[p];
    }
    const float *x = j->wr + r0 * n;
    for (uint64_t r = 0; ok && r < nr; r++) row_scales(j, r0 + r, x + r * n, d + r * nb, y);
    for (int run = 0; ok && run < (np > 1 ? 2 : 1); run++) {
        double proxy[NSQ_LATTICE_MAX_STAGES] = {0};
        if (run) refit_scales(j, r0, nr, in, d);
        for (uint32_t p = 0; p < np; p++) memcpy(w[p], x, nr * n * sizeof *w[p]);
        ldlq_pass(j, r0, nr, d, w, dl, run ? NULL : in, proxy);
        for (uint32_t p = 0; p < np; p++) j->proxy[ci * NSQ_LATTICE_MAX_STAGES + p] = proxy[p];
    }
    if (!ok) j->failed = 1;
    for (uint32_t p = 0; p < np; p++) free(w[p]), free(dl[p]);
    free(y), free(in), free(d);
}

uint32_t lat_pass_end(const lat_type *t, uint32_t s0)
{
    uint32_t s1 = s0 + 1;
    while (s1 < t->n_stages && !(t->split >> s1 & 1)) s1++;
    return s1;
}

uint32_t lat_passes(const lat_type *t)
{
    uint32_t n = 0;
    for (uint32_t s0 = 0; s0 < t->n_stages; s0 = lat_pass_end(t, s0)) n++;
    return n;
}

int lat_encode(const lat_site *s, const float *w, uint64_t rows, const lat_type *t, int threads, uint8_t *out,
               double *proxy)
{
    uint64_t n = s->cols, size = lat_size(t, rows, n), chunks = (rows + CHUNK_ROWS - 1) / CHUNK_ROWS;
    for (uint64_t k = 0; k < rows * n; k++)
        if (!isfinite(w[k])) return -2;
    memset(out, 0, size);
    out[0] = (uint8_t)t->n_stages;
    for (uint32_t st = 0; st < t->n_stages; st++) out[1 + st] = (uint8_t)t->kind[st];
    memcpy(out + 64, s->signs, n / 8);
    nsq_view v; /* header and signs written, the rest zero: a valid payload, whose layout libnsq gives */
    nsq_lattice L;
    if (nsq_view_init(NSQ_SCHEME_LATTICE, rows, n, s->block, out, size, &v, NULL) || nsq_lattice_view(&v, &L)) return -1;
    float *wr = malloc(rows * n * sizeof *wr);
    enc_job j = {s, t, 0, {0}, wr, rows, {0}, {0}, {0}, calloc((chunks ? chunks : 1) * NSQ_LATTICE_MAX_STAGES, sizeof(double)), 0};
    if (!wr || !j.proxy) return free(wr), free(j.proxy), -1;
    for (uint32_t s0 = 0; s0 < t->n_stages; s0 = j.pass_end[j.n_pass++]) j.pass_end[j.n_pass] = lat_pass_end(t, s0);
    for (uint32_t st = 0; st < t->n_stages; st++) {
        j.scales[st] = out + (L.scales[st] - out);
        j.codes[st] = out + (L.codes[st] - out);
        j.row_bytes[st] = L.row_bytes[st];
    }
    for (uint64_t r = 0; r < rows; r++) {
        memcpy(wr + r * n, w + r * n, n * sizeof(float));
        rotate(s, wr + r * n);
    }
    parallel_for(chunks, threads, enc_chunk, &j);
    for (uint32_t ps = 0; proxy && ps < j.n_pass; ps++) {
        proxy[ps] = 0;
        for (uint64_t c = 0; c < chunks; c++) proxy[ps] += j.proxy[c * NSQ_LATTICE_MAX_STAGES + ps];
    }
    free(wr), free(j.proxy);
    if (j.failed) return -1;
    for (uint32_t st = 0; st < t->n_stages; st++) /* an f16 scale that overflowed */
        for (uint64_t k = 0; k < rows * (n / s->block); k++)
            if ((j.scales[st][2 * k + 1] & 0x7c) == 0x7c) return -2;
    return 0;
}
