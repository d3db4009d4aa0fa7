/* kernels.c - the activation rounding every kernel shares, the f32 products
 * of decoded rows, and the dispatch: by scheme to the table of its kernels
 * (kernels_dense.c, kernels_tiered.c, kernels_lattice.c),
 * whose scalar kernels every faster path is tested against, and by CPU
 * features. The x86 SIMD paths are in kernels_x86.c; another architecture
 * adds its own file and a kern_level. */
#include "kernels_impl.h"
#include "nsqrt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

kern_level kern_detect(void)
{
    const char *env = getenv("NSQ_KERNELS");
    kern_level best = kern_x86_best();
    if (env && strcmp(env, "scalar") == 0) return KERN_SCALAR;
    if (env && strcmp(env, "avx2") == 0 && best >= KERN_AVX2) return KERN_AVX2;
    return best;
}

const char *kern_name(kern_level k)
{
    return k == KERN_AVX512 ? "avx512" : k == KERN_AVX2 ? "avx2" : "scalar";
}

const char *nsqrt_probe_kernels(void)
{
    kern_level k = kern_detect();
    if (k == KERN_AVX512 && !kern_x86_lattice_512())
        return "avx512 (LATTICE codes decoded by table lookups: the CPU lacks AVX-512 VBMI or GFNI)";
    if (k == KERN_AVX2) return "avx2 (LATTICE codes decoded by table lookups)";
    return kern_name(k);
}

static const kern_scheme *scheme_of(uint32_t scheme)
{
    static const kern_scheme *const all[] = {&kern_scheme_f32, &kern_scheme_f16, &kern_scheme_bf16, &kern_scheme_tiered,
                                             &kern_scheme_lattice};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (all[i]->scheme == scheme) return all[i];
    return NULL;
}

int wmat_index(wmat *w)
{
    const kern_scheme *s = scheme_of(w->v.scheme);
    return s->index ? s->index(w) : 0;
}

uint64_t wmat_index_bytes(const wmat *w) { return w->rank ? w->v.rows * sizeof *w->rank : 0; }

uint64_t kern_index_bytes(uint32_t scheme, uint64_t rows)
{
    const kern_scheme *s = scheme_of(scheme);
    return s ? rows * s->index_row_bytes : 0;
}

int kern_has_cols(uint32_t scheme)
{
    const kern_scheme *s = scheme_of(scheme);
    return s && s->cols;
}

int wmat_int8(const wmat *w) { return scheme_of(w->v.scheme)->int8 != 0; }

int wmat_refined_f32(const wmat *w) { return w->n_ref && scheme_of(w->v.scheme)->int8 == 1; }

void wmat_set_refine(wmat *w, uint32_t n)
{
    const kern_scheme *s = scheme_of(w->v.scheme);
    w->n_ref = n < w->n_loaded ? n : w->n_loaded;
    if (s->depth) s->depth(w);
}

int kern_rotates(uint32_t scheme)
{
    const kern_scheme *s = scheme_of(scheme);
    return s && s->rotate;
}

void kern_rotate(const wmat *w, const float *x, uint32_t n, float *xr) { scheme_of(w->v.scheme)->rotate(w, x, n, xr); }

int act8_reserve(act8 *a, uint32_t n, uint32_t in)
{
    if (n <= a->cap_n && in <= a->cap_in) return 0;
    int chunks = a->chunks;
    n = n > a->cap_n ? n : a->cap_n;
    in = in > a->cap_in ? in : a->cap_in;
    act8_free(a);
    a->chunks = chunks;
    size_t nb = (size_t)n * act8_blocks(in), nl = chunks ? (size_t)n * act8_chunks(in) * 16 : 0;
    a->q = aligned_alloc(64, ((size_t)n * in + 63) / 64 * 64); /* sizes: multiples of the alignment */
    a->s = malloc(nb * sizeof *a->s);
    a->ms = malloc(nb * sizeof *a->ms);
    if (chunks) {
        a->qc = aligned_alloc(64, nl * 32);
        a->cs = malloc(nl * sizeof *a->cs);
        a->cbias = malloc(nl * sizeof *a->cbias);
    }
    if (!a->q || !a->s || !a->ms || (chunks && (!a->qc || !a->cs || !a->cbias))) {
        act8_free(a);
        return -1;
    }
    a->cap_n = n, a->cap_in = in;
    return 0;
}

void act8_free(act8 *a)
{
    free(a->q), free(a->qc), free(a->s), free(a->ms), free(a->cs), free(a->cbias);
    memset(a, 0, sizeof *a);
}

act8 act8_rows(const act8 *a, uint32_t t0)
{
    act8 v = *a;
    v.q += (size_t)t0 * a->in, v.s += (size_t)t0 * act8_blocks(a->in), v.ms += (size_t)t0 * act8_blocks(a->in);
    if (a->chunks) {
        size_t lanes = (size_t)t0 * act8_chunks(a->in) * 16;
        v.qc += lanes * 32, v.cs += lanes, v.cbias += lanes;
    }
    return v;
}

/* Row t's chunks for the LATTICE kernels (kernels.h). */
static void act8_chunk(act8 *a, uint32_t t)
{
    act8 v = act8_rows(a, t);
    uint32_t in = a->in, lanes = act8_chunks(in) * 16;
    memset(v.qc, 0, (size_t)lanes * 32);
    memset(v.cbias, 0, lanes * sizeof *v.cbias);
    memset(v.cs, 0, lanes * sizeof *v.cs);
    for (uint32_t j = 0; j < in; j++) {
        uint32_t base = j / 512 * 512, pos = act8_pos(j % 512 / 8);
        v.qc[base + j % 8 * 64 + pos] = v.q[j];
        v.cbias[base / 32 + pos / 4] -= 16 * v.q[j];
        v.cs[base / 32 + pos / 4] = v.s[j / QBLOCK];
    }
}

/* Blocks round to nearest with their largest magnitude at 127. */
void act8_quantize(act8 *a, const float *x, uint32_t n, uint32_t in)
{
    uint32_t nb = act8_blocks(in);
    a->in = in;
    for (uint32_t t = 0; t < n; t++) {
        for (uint32_t b = 0; b < nb; b++) {
            uint32_t len = in - b * QBLOCK < QBLOCK ? in - b * QBLOCK : QBLOCK;
            const float *xb = x + (size_t)t * in + (size_t)b * QBLOCK;
            int8_t *q = a->q + (size_t)t * in + (size_t)b * QBLOCK;
            float amax = 0;
            for (uint32_t j = 0; j < len; j++) amax = fabsf(xb[j]) > amax ? fabsf(xb[j]) : amax; /* NaN skipped */
            float s = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0;
            int32_t sum = 0;
            /* Clamped so that a NaN or infinity from a broken weight converts
             * to a defined code (NaN goes to -127) instead of undefined behaviour. */
            for (uint32_t j = 0; j < len; j++) {
                float v = xb[j] * inv;
                v = v > -127.0f ? v : -127.0f;
                sum += q[j] = (int8_t)nearbyintf(v < 127.0f ? v : 127.0f);
            }
            a->s[(size_t)t * nb + b] = s;
            a->ms[(size_t)t * nb + b] = s * (float)sum;
        }
        if (a->chunks) act8_chunk(a, t);
    }
}

void kern_rows(kern_level k, const wmat *w, uint32_t off, const float *x, const act8 *a, uint32_t n, uint32_t r0,
               uint32_t r1, float *y, uint32_t ys)
{
    scheme_of(w->v.scheme)->rows(k, w, off, x, a, n, r0, r1, y, ys);
}

void kern_fma_lanes_scalar(const float *wv, const float *x, size_t xs, uint32_t nt, uint32_t n, float (*acc)[8])
{
    for (uint32_t u = 0; u < nt; u++)
        for (uint32_t i = 0; i < n; i++) acc[u][i % 8] = fmaf(wv[i], x[(size_t)u * xs + i], acc[u][i % 8]);
}

/* Each row decoded once, then for every token 8 lanes that run along the
 * whole row (lane = column % 8), summed by kern_tree8. */
void kern_rows_f32(kern_level k, const wmat *w, uint32_t off, const float *x, uint32_t n, uint32_t r0, uint32_t r1,
                   float *y, uint32_t ys)
{
    uint32_t in = (uint32_t)w->v.cols;
    float *buf = malloc((size_t)in * sizeof *buf), acc[TOKENS_MAX][8];
    if (!buf) abort();
    for (uint32_t r = r0; r < r1; r++) {
        scheme_of(w->v.scheme)->row_f32(w, off + r, buf);
        for (uint32_t t0 = 0; t0 < n; t0 += TOKENS_MAX) {
            uint32_t nt = n - t0 < TOKENS_MAX ? n - t0 : TOKENS_MAX;
            const float *xt = x + (size_t)t0 * in;
            memset(acc, 0, sizeof acc);
            if (k == KERN_SCALAR || !kern_x86_fma_lanes(k, buf, xt, in, nt, in, acc)) kern_fma_lanes_scalar(buf, xt, in, nt, in, acc);
            for (uint32_t u = 0; u < nt; u++) y[(size_t)(t0 + u) * ys + r - r0] = kern_tree8(acc[u]);
        }
    }
    free(buf);
}

void kern_cols(kern_level k, const wmat *w, uint32_t off, const float *x, uint32_t n, uint32_t c0, uint32_t c1,
               float *y, uint32_t ys)
{
    scheme_of(w->v.scheme)->cols(k, w, off, x, n, c0, c1, y, ys);
}

void wmat_row(const wmat *w, uint32_t r, float *out) { scheme_of(w->v.scheme)->row(w, r, out); }
