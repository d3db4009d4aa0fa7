/*
 * fuzz_lattice.c - libFuzzer target for LATTICE payloads (spec 9.10-9.13):
 * nsq_view_init's validation, nsq_lattice_view, nsq_lattice_payload_size and
 * decoding in both bases (nsq_lattice_rows_rotated, nsq_dequantize_rows),
 * checked against a decoder written here from the spec alone.
 *
 * Input layout (bytes past the end of the input read as zero):
 *   h[0] bits 0-1  n_stages - 1 (1..4)
 *        bit  2    raw mode: the rest of the input is the payload as-is
 *                  (otherwise a payload of the right layout is built from it)
 *        bit  3    keep the non-finite scales the input spells (otherwise
 *                  they are made finite)
 *        bits 6-7  corruption of a built payload: 1 a padding or reserved
 *                  header byte set, 2 one byte short, 3 one byte long
 *   h[1]           stage kinds, two bits per stage: 0 E8, 1 SIGN, 2 INT8, 3 E8S
 *   h[2]           rows = (h[2] & 127) % 17 (0..16); bit 7: unbounded shape
 *                  (rows, cols as two u64 LE, B as a u32 LE, then the payload
 *                  as-is)
 *   h[3]           B = 8 << (h[3] & 15) % 12 (8..16384), cols = B * (1 + (h[3] >> 4) % 4),
 *                  at most 16384 (else cols = B), rows cut to 65536 elements
 *   h[4], h[5]     a row sub-range;  h[6], h[7] position and value of the
 *                  corrupted byte
 *   then           the signs, then per stage its f16 scales and its codes.
 *
 * Invariants checked (abort() on violation, which libFuzzer reports):
 *  - a built, uncorrupted payload with finite scales validates; one with a
 *    non-finite scale fails R-LAT-5, a set padding or reserved byte R-LAT-2
 *    or R-LAT-4, a size one byte off R-LAT-3, all with NSQ_E_TENSOR;
 *  - an accepted view's shape is valid, nsq_lattice_payload_size gives its
 *    size, and nsq_lattice_view's stages, pointers and row sizes are those of
 *    the spec's layout;
 *  - every row decodes in both bases to the bits of the reference decoder
 *    here; sub-ranges decode to the same bits as the whole; out-of-range rows
 *    are refused; nsq_lattice_hadamard is the spec's butterfly;
 *  - table A (nsq_lattice_e8_table) is the one its rule builds;
 *  - an accepted payload of 2 or more stages, split into a base of its first
 *    stage and a refinement level of the rest (spec 8.4), validates and
 *    decodes in both bases to the same bits as the payload; a level of the
 *    input's own bytes and stage kinds is accepted or refused cleanly, and
 *    decodes when accepted.
 */
#include "nsq.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                             \
    do {                                                                                     \
        if (!(c)) {                                                                          \
            fprintf(stderr, "fuzz_lattice: invariant failed: %s (%s:%d)\n", #c, __FILE__, \
                    __LINE__);                                                               \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

#define MAX_ELEMS 65536u /* rows * cols of a built payload */
#define MAX_COLS 16384u  /* decoded rows of an unbounded shape */

typedef struct {
    const uint8_t *p;
    size_t n, i;
} src;

static uint8_t byte(src *s) { return s->i < s->n ? s->p[s->i++] : 0; }
static void bytes(src *s, uint8_t *dst, uint64_t n)
{
    for (uint64_t k = 0; k < n; k++) dst[k] = byte(s);
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint64_t pad64(uint64_t v) { return (v + 63) & ~(uint64_t)63; }
static uint32_t kind_bits(uint32_t k) { return k == 1 ? 2 : k == 2 || k == 4 ? 1 : 8; }

/* A heap copy of exactly n bytes (ASan then catches any read past it); NULL for 0. */
static uint8_t *exact(const uint8_t *p, uint64_t n)
{
    if (!n) return NULL;
    uint8_t *q = malloc(n);
    CHECK(q);
    memcpy(q, p, n);
    return q;
}

static float *floats(uint64_t n)
{
    float *f = malloc(n ? n * sizeof *f : 1);
    CHECK(f);
    return f;
}

/* ---- the reference decoder, from the spec ---- */

/* Table A by its rule (9.11): sum u^2 <= 40, the permutations of
 * (5,5,1,1,1,1,1,1) and all threes, by sum of squares, then ascending. */
static uint8_t table_a[256][8];

static int cmp_u(const void *a, const void *b)
{
    const uint8_t *x = a, *y = b;
    int sx = 0, sy = 0;
    for (int k = 0; k < 8; k++) sx += x[k] * x[k], sy += y[k] * y[k];
    return sx != sy ? sx - sy : memcmp(x, y, 8);
}

static void build_table(void)
{
    static uint8_t all[65536][8];
    uint32_t n = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        int sq = 0, ones = 0, fives = 0, threes = 0;
        for (int k = 0; k < 8; k++) {
            uint8_t u = (uint8_t)(2 * (i >> (2 * k) & 3) + 1);
            all[n][k] = u;
            sq += u * u, ones += u == 1, threes += u == 3, fives += u == 5;
        }
        n += sq <= 40 || (fives == 2 && ones == 6) || threes == 8;
    }
    CHECK(n == 256);
    qsort(all, n, 8, cmp_u);
    memcpy(table_a, all, sizeof table_a);
    CHECK(memcmp(nsq_lattice_e8_table(), table_a, sizeof table_a) == 0);
}

/* The 8 values of E8 code c (9.11). */
static void e8_values(uint16_t c, float v[8])
{
    const uint8_t *u = table_a[c & 0xFF];
    uint32_t neg = c >> 8 & 0x7F, sum = 0;
    for (int k = 0; k < 8; k++) sum += u[k];
    if ((uint32_t)__builtin_popcount(neg) % 2 != sum / 2 % 2) neg |= 0x80;
    for (int k = 0; k < 8; k++) v[k] = (neg >> k & 1 ? -0.5f : 0.5f) * u[k] + (c & 0x8000 ? -0.25f : 0.25f);
}

/* The 8 values of E8S code c (9.11): a signed pair, a half vector with an
 * even count of minus signs, or +-2e_k. */
static void e8s_values(uint8_t c, float v[8])
{
    memset(v, 0, 8 * sizeof *v);
    if (c >= 240) {
        v[(c - 240) / 2] = c & 1 ? -2.0f : 2.0f;
    } else if (c >= 112) {
        uint32_t m = c - 112u, odd = (uint32_t)__builtin_popcount(m) & 1;
        for (int k = 0; k < 8; k++) v[k] = (k < 7 ? m >> k & 1 : odd) ? -0.5f : 0.5f;
    } else {
        uint32_t n = 0;
        for (int i = 0; i < 8; i++)
            for (int j = i + 1; j < 8; j++, n++)
                if (n == c / 4u) v[i] = c & 1 ? -1.0f : 1.0f, v[j] = c & 2 ? -1.0f : 1.0f;
    }
}

/* The layout of 9.10 for header kinds kind[0..S-1]: offsets of each stage's
 * scales and codes; returns the payload size. */
static uint64_t layout(uint64_t rows, uint64_t cols, uint64_t B, uint32_t S, const uint8_t *kind, uint64_t *scales,
                       uint64_t *codes)
{
    uint64_t at = 64 + pad64(cols / 8);
    for (uint32_t s = 0; s < S; s++) {
        scales[s] = at;
        at += pad64(2 * rows * (cols / B));
        codes[s] = at;
        at += pad64(rows * cols * kind_bits(kind[s]) / 8);
    }
    return at;
}

/* Row r of W' (9.12): the stages' products summed in stage order. */
static void ref_rotated_row(const uint8_t *p, uint64_t rows, uint64_t cols, uint64_t B, uint64_t r, float *out)
{
    uint64_t sc[4], co[4], nb = cols / B;
    uint32_t S = p[0];
    layout(rows, cols, B, S, p + 1, sc, co);
    for (uint32_t s = 0; s < S; s++) {
        uint32_t kind = p[1 + s];
        const uint8_t *row = p + co[s] + r * (cols * kind_bits(kind) / 8);
        for (uint64_t j = 0; j < cols; j += 8) {
            float v[8], d = nsq_f16_to_f32(rd16(p + sc[s] + 2 * (r * nb + j / B)));
            if (kind == 1) e8_values(rd16(row + j / 4), v);
            for (int k = 0; k < 8 && kind == 2; k++) v[k] = row[j / 8] >> k & 1 ? -1.0f : 1.0f;
            if (kind == 4) e8s_values(row[j / 8], v);
            for (int k = 0; k < 8 && kind == 3; k++) v[k] = (float)(int8_t)row[j + k];
            for (int k = 0; k < 8; k++) {
                float prod = d * v[k];
                out[j + k] = s ? out[j + k] + prod : prod;
            }
        }
    }
}

/* The butterfly of 9.12 over one block, passes in increasing h. */
static void ref_butterfly(float *u, uint64_t B)
{
    for (uint64_t h = 1; h < B; h *= 2)
        for (uint64_t i = 0; i < B; i++)
            if (!(i & h)) {
                float a = u[i], e = u[i + h];
                u[i] = a + e;
                u[i + h] = a - e;
            }
}

/* W = W' R (9.12) from a row whose blocks went through the butterfly: the
 * factor c, then the column signs. */
static void ref_finish_row(const uint8_t *p, uint64_t cols, uint64_t B, float *row)
{
    int z = __builtin_ctzll(B);
    float c = ldexpf(z % 2 ? 0x1.6a09e6p-1f : 1.0f, -(z / 2));
    for (uint64_t j = 0; j < cols; j++) {
        float x = row[j] * c;
        row[j] = p[64 + j / 8] >> (j % 8) & 1 ? -x : x;
    }
}

/* ---- the checks ---- */

/* nsq_lattice_view agrees with the header and the layout of 9.10. */
static void check_view_fields(const nsq_view *v)
{
    nsq_lattice lv;
    uint64_t sc[4], co[4];
    const uint8_t *p = v->data;
    CHECK(nsq_lattice_view(v, &lv) == NSQ_OK);
    CHECK(lv.n_stages == p[0] && lv.block == v->group_size && (uint64_t)lv.n_blocks * lv.block == v->cols);
    CHECK(lv.signs == p + 64);
    CHECK(layout(v->rows, v->cols, v->group_size, lv.n_stages, p + 1, sc, co) == v->size);
    CHECK(nsq_lattice_payload_size(v->rows, v->cols, lv.block, lv.n_stages, lv.kind) == v->size);
    for (uint32_t s = 0; s < NSQ_LATTICE_MAX_STAGES; s++) {
        if (s >= lv.n_stages) {
            CHECK(lv.kind[s] == 0 && p[1 + s] == 0);
            continue;
        }
        CHECK(lv.kind[s] == p[1 + s] && lv.row_bytes[s] == v->cols * kind_bits(lv.kind[s]) / 8);
        CHECK(lv.scales[s] == p + sc[s] && lv.codes[s] == p + co[s]);
    }
}

/* Decodes rows [row0, row0 + nr) both ways and compares with the reference. */
static void check_rows(const nsq_view *v, uint64_t row0, uint64_t nr)
{
    uint64_t cols = v->cols;
    uint64_t B = v->group_size;
    float *rot = floats(nr * cols), *orig = floats(nr * cols), *ref = floats(cols);
    CHECK(nsq_lattice_rows_rotated(v, row0, nr, rot) == NSQ_OK);
    CHECK(nsq_dequantize_rows(v, NULL, 0, row0, nr, orig) == NSQ_OK);
    for (uint64_t r = 0; r < nr; r++) {
        float *lib = rot + r * cols;
        ref_rotated_row(v->data, v->rows, cols, B, row0 + r, ref);
        CHECK(memcmp(ref, lib, cols * sizeof *ref) == 0);
        for (uint64_t b0 = 0; b0 < cols; b0 += B) {
            ref_butterfly(ref + b0, B);
            nsq_lattice_hadamard(lib + b0, (uint32_t)B);
        }
        CHECK(memcmp(ref, lib, cols * sizeof *ref) == 0);
        ref_finish_row(v->data, cols, B, ref);
        CHECK(memcmp(ref, orig + r * cols, cols * sizeof *ref) == 0);
        for (uint64_t j = 0; j < cols; j++) CHECK(isfinite(ref[j]));
    }
    free(rot);
    free(orig);
    free(ref);
}

/* All rows, sub-ranges from the input, and refused ranges. */
static void check_decode(const nsq_view *v, src *in, uint8_t r0, uint8_t r1)
{
    uint64_t rows = v->rows, cols = v->cols;
    float *all = floats(rows * cols), *rot = floats(rows * cols);
    CHECK(nsq_dequantize_rows(v, NULL, 0, 0, rows, all) == NSQ_OK);
    CHECK(nsq_lattice_rows_rotated(v, 0, rows, rot) == NSQ_OK);
    check_rows(v, 0, rows);
    for (int k = 0; k < 2; k++) {
        uint64_t row0 = (k ? byte(in) : r0) % (rows + 1), nr = (k ? byte(in) : r1) % (rows - row0 + 1);
        float *part = floats(nr * cols);
        CHECK(nsq_dequantize_rows(v, NULL, 0, row0, nr, part) == NSQ_OK);
        CHECK(memcmp(part, all + row0 * cols, nr * cols * sizeof *part) == 0);
        CHECK(nsq_lattice_rows_rotated(v, row0, nr, part) == NSQ_OK);
        CHECK(memcmp(part, rot + row0 * cols, nr * cols * sizeof *part) == 0);
        free(part);
    }
    float one;
    nsq_refine_view rv = {.bits = 1, .codes = NULL, .size = 0}; /* a stage of no kind */
    CHECK(nsq_dequantize_rows(v, NULL, 0, rows, 1, &one) == NSQ_E_ARG);
    CHECK(nsq_dequantize_rows(v, NULL, 0, 1, UINT64_MAX, &one) == NSQ_E_ARG);
    CHECK(nsq_dequantize_rows(v, &rv, 1, 0, 0, &one) == NSQ_E_TENSOR);
    CHECK(nsq_lattice_rows_rotated(v, rows, 1, &one) == NSQ_E_ARG);
    CHECK(nsq_lattice_rows_rotated(v, 1, UINT64_MAX, &one) == NSQ_E_ARG);
    CHECK(nsq_lattice_rows_rotated(v, 0, 0, NULL) == NSQ_E_ARG);
    CHECK(nsq_refine_view_init(v, 2, NULL, 0, &rv, NULL) == NSQ_E_ARG);
    free(all);
    free(rot);
}

/* An accepted view: its shape, layout and decoding. */
static void check_accepted(const nsq_view *v, src *in, uint8_t r0, uint8_t r1)
{
    uint64_t B = v->group_size;
    CHECK(v->scheme == NSQ_SCHEME_LATTICE && v->rows && v->cols);
    CHECK(B >= 8 && B <= 16384 && (B & (B - 1)) == 0 && v->cols % B == 0);
    check_view_fields(v);
    if (v->rows * v->cols <= MAX_ELEMS) check_decode(v, in, r0, r1);
    else if (v->cols <= MAX_COLS) check_rows(v, v->rows - 1, 1);
}

/* Unbounded shapes (h[2] bit 7): an accepted view has exactly its payload's size. */
/* The payload p (S >= 2 stages) as a base of its first stage and a level of
 * the others: both decode as p. Then a level of whatever the input holds. */
static void check_levels(const nsq_view *v, const uint8_t *p, src *in)
{
    uint32_t S = p[0], kinds[3] = {p[2], p[3], p[4]};
    uint64_t sc[4], co[4], base = layout(v->rows, v->cols, v->group_size, 1, p + 1, sc, co), n = v->rows * v->cols;
    uint8_t *b = exact(p, base), *part = exact(p + base, v->size - base);
    b[0] = 1, b[2] = b[3] = b[4] = 0;
    nsq_view bv;
    nsq_refine_view rv;
    CHECK(nsq_view_init(NSQ_SCHEME_LATTICE, v->rows, v->cols, v->group_size, b, base, &bv, NULL) == NSQ_OK);
    CHECK(nsq_lattice_refine_view_init(&bv, S - 1, kinds, part, v->size - base, &rv, NULL) == NSQ_OK);
    float *x = floats(n), *y = floats(n);
    CHECK(nsq_dequantize_rows(&bv, &rv, 1, 0, v->rows, x) == NSQ_OK && nsq_dequantize_rows(v, NULL, 0, 0, v->rows, y) == NSQ_OK);
    CHECK(memcmp(x, y, n * sizeof *x) == 0);
    CHECK(nsq_lattice_rows_rotated_refined(&bv, &rv, 1, 0, v->rows, x) == NSQ_OK);
    CHECK(nsq_lattice_rows_rotated(v, 0, v->rows, y) == NSQ_OK);
    CHECK(memcmp(x, y, n * sizeof *x) == 0);
    uint8_t h = byte(in); /* a level from the input: 0..3 stages of its kinds, its bytes */
    uint32_t k2[3] = {(h >> 2 & 3) % 3 + 1, (h >> 4 & 3) % 3 + 1, (h >> 6) % 3 + 1};
    uint8_t *q = exact(in->p + in->i, in->n - in->i);
    nsq_diag d;
    memset(&d, 0, sizeof d);
    nsq_status st = nsq_lattice_refine_view_init(&bv, h & 3, k2, q, in->n - in->i, &rv, &d);
    CHECK(st == NSQ_OK || st == NSQ_E_ARG || (st == NSQ_E_TENSOR && !strncmp(d.rule, "R-LAT-", 6)));
    if (st == NSQ_OK) CHECK(nsq_dequantize_rows(&bv, &rv, 1, 0, 1, x) == NSQ_OK); /* 1 + 3 stages at most */
    free(b), free(part), free(q), free(x), free(y);
}

static int huge_shape(src *in)
{
    uint64_t rows = 0, cols = 0;
    uint32_t B = 0;
    for (int k = 0; k < 8; k++) rows |= (uint64_t)byte(in) << (8 * k);
    for (int k = 0; k < 8; k++) cols |= (uint64_t)byte(in) << (8 * k);
    for (int k = 0; k < 4; k++) B |= (uint32_t)byte(in) << (8 * k);
    uint64_t psize = in->n - in->i;
    uint8_t *payload = exact(in->p + in->i, psize);
    nsq_view v;
    nsq_diag d;
    memset(&d, 0, sizeof d);
    nsq_status st = nsq_view_init(NSQ_SCHEME_LATTICE, rows, cols, B, payload, psize, &v, &d);
    CHECK(st == NSQ_OK || st == NSQ_E_ARG || (st == NSQ_E_TENSOR && d.status == st && !strncmp(d.rule, "R-LAT-", 6)));
    if (st == NSQ_OK) {
        unsigned __int128 n = (unsigned __int128)rows * cols;
        CHECK(n / 8 + 2 * (n / B) <= psize); /* even a SIGN stage's codes and scales fit */
        check_accepted(&v, in, 0, 0);
    }
    free(payload);
    return 0;
}

/* Builds a payload of the right layout from the input; *nonfinite tells
 * whether a scale is not finite. */
static uint8_t *build(src *in, uint64_t rows, uint64_t cols, uint64_t B, uint32_t S, const uint8_t *kind,
                      int keep_nonfinite, uint64_t *size_out, int *nonfinite)
{
    uint64_t sc[4], co[4], ns = rows * (cols / B);
    uint64_t size = layout(rows, cols, B, S, kind, sc, co);
    uint8_t *p = calloc(size, 1);
    CHECK(p);
    p[0] = (uint8_t)S;
    memcpy(p + 1, kind, S);
    bytes(in, p + 64, cols / 8);
    for (uint32_t s = 0; s < S; s++) {
        for (uint64_t i = 0; i < ns; i++) {
            uint8_t lo = byte(in), hi = byte(in);
            if ((hi & 0x7C) == 0x7C && !keep_nonfinite) hi &= 0xBF;
            *nonfinite |= (hi & 0x7C) == 0x7C;
            p[sc[s] + 2 * i] = lo;
            p[sc[s] + 2 * i + 1] = hi;
        }
        bytes(in, p + co[s], rows * cols * kind_bits(kind[s]) / 8);
    }
    *size_out = size;
    return p;
}

/* Sets the pos-th (mod their count) byte of the reserved header bytes and
 * the padding; returns the rule that must then fail. */
static const char *set_padding_byte(uint8_t *p, uint64_t rows, uint64_t cols, uint64_t B, uint32_t S, uint32_t pos,
                                    uint8_t val)
{
    uint64_t sc[4], co[4], start[2 + 2 * 4], len[2 + 2 * 4], n = 0, total = 0;
    layout(rows, cols, B, S, p + 1, sc, co);
    start[n] = 1 + S, len[n++] = 63 - S;
    start[n] = 64 + cols / 8, len[n++] = pad64(cols / 8) - cols / 8;
    for (uint32_t s = 0; s < S; s++) {
        uint64_t a = 2 * rows * (cols / B), c = rows * cols * kind_bits(p[1 + s]) / 8;
        start[n] = sc[s] + a, len[n++] = pad64(a) - a;
        start[n] = co[s] + c, len[n++] = pad64(c) - c;
    }
    for (uint64_t i = 0; i < n; i++) total += len[i];
    uint64_t k = pos % total, i = 0;
    while (k >= len[i]) k -= len[i++];
    p[start[i] + k] = val ? val : 0x80;
    return i == 0 ? "R-LAT-2" : "R-LAT-4";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) build_table(), ready = 1;
    src in = {data, size, 0};
    uint8_t h[8];
    bytes(&in, h, sizeof h);
    if (h[2] & 0x80) return huge_shape(&in);
    uint32_t S = 1 + (h[0] & 3), raw = h[0] >> 2 & 1, keep_nonfinite = h[0] >> 3 & 1, corruption = h[0] >> 6;
    uint8_t kind[4];
    for (uint32_t s = 0; s < 4; s++) kind[s] = (uint8_t)(s < S ? (h[1] >> (2 * s) & 3) + 1 : 0);
    uint64_t B = 8u << (h[3] & 15) % 12, cols = B * (1 + (h[3] >> 4) % 4), rows = (h[2] & 0x7F) % 17;
    if (cols > MAX_COLS) cols = B;
    if (rows * cols > MAX_ELEMS) rows = MAX_ELEMS / cols;

    uint8_t *payload;
    uint64_t psize;
    int nonfinite = 0;
    const char *want = NULL; /* the rule a corrupted payload must fail */
    if (raw || !rows) {
        psize = size - in.i;
        payload = exact(data + in.i, psize);
        in.i = size;
    } else {
        payload = build(&in, rows, cols, B, S, kind, keep_nonfinite, &psize, &nonfinite);
        if (corruption == 1) want = set_padding_byte(payload, rows, cols, B, S, h[6], h[7]);
        if (corruption >= 2) {
            psize += corruption == 3 ? 1 : -1;
            uint8_t *q = realloc(payload, psize);
            CHECK(q);
            payload = q;
            if (corruption == 3) payload[psize - 1] = h[7];
            want = "R-LAT-3";
        }
        uint8_t *e = exact(payload, psize);
        free(payload);
        payload = e;
    }

    nsq_view v;
    nsq_diag d;
    memset(&d, 0, sizeof d);
    nsq_status st = nsq_view_init(NSQ_SCHEME_LATTICE, rows, cols, (uint32_t)B, payload, psize, &v, &d);
    if (!rows) CHECK(st == NSQ_E_ARG);
    if (st != NSQ_OK && st != NSQ_E_ARG) CHECK(st == NSQ_E_TENSOR && d.status == st && !strncmp(d.rule, "R-LAT-", 6));
    if (want && !nonfinite) CHECK(st == NSQ_E_TENSOR && !strcmp(d.rule, want));
    if (nonfinite && !want) CHECK(st == NSQ_E_TENSOR && !strcmp(d.rule, "R-LAT-5"));
    if (!raw && rows && !want && !nonfinite) CHECK(st == NSQ_OK);
    if (st == NSQ_OK) {
        CHECK(v.rows == rows && v.cols == cols && v.size == psize && v.data == payload);
        check_accepted(&v, &in, h[4], h[5]);
        if (!raw && payload[0] >= 2) check_levels(&v, payload, &in);
        /* the stage kinds fix the size, not their order */
        uint32_t k[4] = {payload[1], payload[2], payload[3], payload[4]}, t = k[0];
        k[0] = k[payload[0] - 1], k[payload[0] - 1] = t;
        CHECK(nsq_lattice_payload_size(rows, cols, (uint32_t)B, payload[0], k) == psize);
        k[0] = 0;
        CHECK(nsq_lattice_payload_size(rows, cols, (uint32_t)B, payload[0], k) == 0);
        CHECK(nsq_lattice_payload_size(rows, cols, (uint32_t)B, 5, k) == 0);
    }
    free(payload);
    return 0;
}
