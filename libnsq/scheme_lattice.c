/* scheme_lattice.c - the LATTICE scheme: its record and payload rules and the
 * reference (scalar) decoding in both bases. Runtimes decode the rotated
 * basis in their kernels and rotate activations instead; this file is the
 * definition both are tested against. */
#include "scheme.h"

#include <math.h>

#define HEADER 64u
#define MIN_BLOCK 8u
#define MAX_BLOCK 16384u
#define N_KINDS (NSQ_LAT_E8S + 1)

static uint64_t pad64(uint64_t v) { return nsq__pad64(v); }

/* A view's private state (nsq_view.state_): stage count and kinds, and each
 * stage's scale and code stream offsets in the payload. */
enum { ST_STAGES = 0, ST_KIND = 1, ST_SCALES = 5, ST_CODES = 9 };
static inline uint32_t n_stages(const nsq_view *v) { return (uint32_t)v->state_[ST_STAGES]; }
static inline uint32_t kind_of(const nsq_view *v, uint32_t s) { return (uint32_t)v->state_[ST_KIND + s]; }
static inline const uint8_t *scales_of(const nsq_view *v, uint32_t s) { return v->data + v->state_[ST_SCALES + s]; }
static inline const uint8_t *codes_of(const nsq_view *v, uint32_t s) { return v->data + v->state_[ST_CODES + s]; }

static int valid_block(uint64_t b) { return b >= MIN_BLOCK && b <= MAX_BLOCK && nsq__is_pow2(b); }
static int valid_shape(uint64_t rows, uint64_t cols, uint64_t b) { return rows && cols && valid_block(b) && cols % b == 0; }

/* Bytes of one stage's scales and codes, padded; UINT64_MAX on overflow.
 * rows * cols fits: callers checked it or it is a record's element count. */
static uint64_t stage_size(uint64_t rows, uint64_t cols, uint64_t b, uint32_t bits)
{
    uint64_t n = rows * cols, s;
    if (nsq__add(pad64(2 * (n / b)), pad64(n / 8 * bits), &s)) return UINT64_MAX;
    return s;
}

/* The payload size for count[k] stages of each kind k; 0 on overflow. */
static uint64_t size_for(uint64_t rows, uint64_t cols, uint64_t b, const uint32_t count[N_KINDS])
{
    uint64_t size = HEADER + pad64(cols / 8), part;
    for (uint32_t k = NSQ_LAT_E8; k < N_KINDS; k++)
        if (nsq__mul(count[k], stage_size(rows, cols, b, nsq_lattice_kind_bits(k)), &part) || nsq__add(size, part, &size))
            return 0;
    return size;
}

uint64_t nsq_lattice_payload_size(uint64_t rows, uint64_t cols, uint32_t block, uint32_t n_stages, const uint32_t *kinds)
{
    uint64_t n;
    uint32_t count[N_KINDS] = {0};
    if (!valid_shape(rows, cols, block) || nsq__mul(rows, cols, &n) || n_stages < 1 ||
        n_stages > NSQ_LATTICE_MAX_STAGES || !kinds)
        return 0;
    for (uint32_t s = 0; s < n_stages; s++) {
        if (!nsq_lattice_kind_bits(kinds[s])) return 0;
        count[kinds[s]]++;
    }
    return size_for(rows, cols, block, count);
}

/* ---- the tensor record ---- */

/* Whether size is the payload size of some list of 1..4 stages: only how
 * many stages of each size matter, not their order (E8S: SIGN's size). */
static int possible_size(const nsq__tensor *t)
{
    uint32_t c[N_KINDS] = {0};
    for (c[1] = 0; c[1] <= NSQ_LATTICE_MAX_STAGES; c[1]++)
        for (c[2] = 0; c[1] + c[2] <= NSQ_LATTICE_MAX_STAGES; c[2]++)
            for (c[3] = c[1] + c[2] ? 0 : 1; c[1] + c[2] + c[3] <= NSQ_LATTICE_MAX_STAGES; c[3]++)
                if (size_for(t->rows, t->cols, t->group_size, c) == t->size) return 1;
    return 0;
}

/* The exact size of a refinement part's stages; 0 when its form is invalid
 * (stage count over 3, a kind in use not 1..4 or one past them not 0). */
static uint64_t part_size(uint64_t rows, uint64_t cols, uint64_t b, const nsq_tensor_refinement *p)
{
    uint64_t size = 0;
    if (p->bits > 3) return 0;
    for (uint32_t s = 0; s < 3; s++) {
        uint32_t bits = nsq_lattice_kind_bits(p->kind[s]);
        if (s < p->bits ? !bits : p->kind[s] != 0) return 0;
        if (bits && nsq__add(size, stage_size(rows, cols, b, bits), &size)) return 0;
    }
    return size ? size : p->bits == 0 ? 0 : UINT64_MAX;
}

static nsq_status check_record(const nsq__tensor *t, uint32_t refinements, nsq_diag *d)
{
    uint64_t off = t->record_off;
    uint32_t stages = 0;
    if (t->n_dims != 2 || !valid_block(t->group_size) || t->cols % t->group_size)
        return nsq__fail(d, NSQ_E_DIRECTORY, off, "R-TEN-7",
                         "tensor %s: LATTICE needs 2 dims and group_size a power of two in 8..16384 dividing %llu",
                         t->name, (unsigned long long)t->cols);
    if (!possible_size(t))
        return nsq__fail(d, NSQ_E_DIRECTORY, off, "R-TEN-6", "tensor %s: size %llu is no LATTICE payload size of %llu x %llu",
                         t->name, (unsigned long long)t->size, (unsigned long long)t->rows, (unsigned long long)t->cols);
    if (t->n_refine > refinements)
        return nsq__fail(d, NSQ_E_DIRECTORY, off, "R-TEN-8", "tensor %s: %u refinement levels, its block has %u", t->name,
                         t->n_refine, refinements);
    for (uint32_t l = 0; l < t->n_refine; l++) {
        const nsq_tensor_refinement *p = &t->refine[l];
        uint64_t want = part_size(t->rows, t->cols, t->group_size, p);
        stages += p->bits;
        if ((!want && p->bits) || stages > NSQ_LATTICE_MAX_STAGES - 1)
            return nsq__fail(d, NSQ_E_DIRECTORY, off, "R-TEN-9",
                             "tensor %s: refinement %u: stage count or kinds invalid, or over %d stages in its parts", t->name,
                             l + 1, NSQ_LATTICE_MAX_STAGES - 1);
        if (p->size != want)
            return nsq__fail(d, NSQ_E_DIRECTORY, off, "R-TEN-9", "tensor %s: refinement %u is %llu bytes, its stages take %llu",
                             t->name, l + 1, (unsigned long long)p->size, (unsigned long long)want);
    }
    return NSQ_OK;
}

/* The block size and payload are checked by the view that follows. */
static nsq_status check_add(uint32_t scheme, const char *name, uint32_t n_dims, uint64_t n, uint32_t group_size,
                            uint64_t size, nsq_diag *d)
{
    (void)scheme, (void)n, (void)group_size, (void)size;
    if (n_dims != 2) return nsq__fail(d, NSQ_E_ARG, UINT64_MAX, "R-TEN-7", "%s: LATTICE tensors have 2 dims", name);
    return NSQ_OK;
}

/* ---- the payload ---- */

static nsq_status bad(nsq_diag *d, uint64_t at, const char *rule, const char *what)
{
    return nsq__fail(d, NSQ_E_TENSOR, at, rule, "%s (at payload byte %llu)", what, (unsigned long long)at);
}

/* Stage count and kinds (R-LAT-1), then the reserved bytes (R-LAT-2). */
static nsq_status check_header(nsq_view *v, uint32_t count[N_KINDS], nsq_diag *d)
{
    const uint8_t *p = v->data;
    if (v->size < HEADER) return bad(d, 0, "R-LAT-1", "payload shorter than its 64-byte header");
    uint32_t S = p[0];
    if (S < 1 || S > NSQ_LATTICE_MAX_STAGES) return bad(d, 0, "R-LAT-1", "n_stages is not 1..4");
    for (uint32_t s = 0; s < S; s++) {
        if (!nsq_lattice_kind_bits(p[1 + s])) return bad(d, 1 + s, "R-LAT-1", "a stage kind is not 1, 2, 3 or 4");
        v->state_[ST_KIND + s] = p[1 + s];
        count[p[1 + s]]++;
    }
    v->state_[ST_STAGES] = S;
    for (uint32_t i = 1 + S; i < HEADER; i++)
        if (p[i]) return bad(d, i, "R-LAT-2", "a reserved header byte is not zero");
    return NSQ_OK;
}

static nsq_status check_padding(const nsq_view *v, uint64_t at, uint64_t len, nsq_diag *d)
{
    for (uint64_t i = 0; i < pad64(len) - len; i++)
        if (v->data[at + len + i]) return bad(d, at + len + i, "R-LAT-4", "padding is not zero");
    return NSQ_OK;
}

/* One stage's streams at *at: scales (R-LAT-5, then padding), then codes. */
static nsq_status check_stage(nsq_view *v, uint32_t s, uint64_t *at, nsq_diag *d)
{
    uint64_t n = v->rows * v->cols, ns = n / v->group_size, nc = n / 8 * nsq_lattice_kind_bits(kind_of(v, s));
    v->state_[ST_SCALES + s] = *at;
    for (uint64_t i = 0; i < ns; i++)
        if (!isfinite(nsq_f16_to_f32(nsq__rd16(v->data + *at + 2 * i))))
            return bad(d, *at + 2 * i, "R-LAT-5", "a scale is not finite");
    nsq_status st = check_padding(v, *at, 2 * ns, d);
    if (st) return st;
    *at += pad64(2 * ns);
    v->state_[ST_CODES + s] = *at;
    if ((st = check_padding(v, *at, nc, d))) return st;
    *at += pad64(nc);
    return NSQ_OK;
}

static nsq_status view(nsq_view *v, nsq_diag *d)
{
    if (!valid_shape(v->rows, v->cols, v->group_size)) return NSQ_E_ARG;
    uint32_t count[N_KINDS] = {0};
    nsq_status st = check_header(v, count, d);
    if (st) return st;
    uint64_t want = size_for(v->rows, v->cols, v->group_size, count), at = HEADER;
    if (want != v->size)
        return nsq__fail(d, NSQ_E_TENSOR, 0, "R-LAT-3", "payload is %llu bytes, its header implies %llu",
                         (unsigned long long)v->size, (unsigned long long)want);
    if ((st = check_padding(v, at, v->cols / 8, d))) return st;
    at += pad64(v->cols / 8);
    for (uint32_t s = 0; s < n_stages(v) && !st; s++) st = check_stage(v, s, &at, d);
    return st;
}

/* A refinement level: its stages' streams, as check_stage checks a payload's. */
static nsq_status refine_view(const nsq_view *base, const nsq_tensor_refinement *part, const uint8_t *data,
                              nsq_refine_view *out, nsq_diag *d)
{
    uint64_t want = part_size(base->rows, base->cols, base->group_size, part), at = 0;
    if ((!want && part->bits) || want != part->size) return NSQ_E_ARG;
    nsq_view v = *base; /* the part's stages, checked as stages 0.. of a view over its bytes */
    v.data = data, v.size = part->size;
    nsq_status st = NSQ_OK;
    for (uint32_t s = 0; s < part->bits && !st; s++) {
        v.state_[ST_KIND + s] = part->kind[s];
        st = check_stage(&v, s, &at, d);
    }
    if (st) return st;
    memset(out, 0, sizeof *out);
    out->bits = part->bits;
    for (uint32_t s = 0; s < part->bits; s++) out->kind[s] = part->kind[s];
    out->codes = data;
    out->size = part->size;
    return NSQ_OK;
}

uint32_t nsq__lattice_stages(const nsq_view *base, const nsq_tensor_refinement *parts, uint32_t n)
{
    uint32_t stages = n_stages(base);
    for (uint32_t l = 0; l < n; l++) stages += parts[l].bits;
    return stages;
}

int nsq__lattice_e8s(const nsq_view *base, const nsq_tensor_refinement *parts, uint32_t n)
{
    int any = 0;
    for (uint32_t s = 0; base && s < n_stages(base); s++) any |= kind_of(base, s) == NSQ_LAT_E8S;
    for (uint32_t l = 0; l < n; l++)
        for (uint32_t s = 0; s < parts[l].bits && s < 3; s++) any |= parts[l].kind[s] == NSQ_LAT_E8S;
    return any;
}

nsq_status nsq_lattice_view(const nsq_view *v, nsq_lattice *out) { return nsq_lattice_view_refined(v, NULL, 0, out); }

nsq_status nsq_lattice_view_refined(const nsq_view *v, const nsq_refine_view *refs, uint32_t n_ref, nsq_lattice *out)
{
    if (!v || !out || v->scheme != NSQ_SCHEME_LATTICE || (n_ref && !refs)) return NSQ_E_ARG;
    memset(out, 0, sizeof *out);
    out->n_stages = n_stages(v);
    out->block = v->group_size;
    out->n_blocks = (uint32_t)(v->cols / v->group_size);
    out->signs = v->data + HEADER;
    for (uint32_t s = 0; s < out->n_stages; s++) {
        out->kind[s] = kind_of(v, s);
        out->scales[s] = scales_of(v, s);
        out->codes[s] = codes_of(v, s);
        out->row_bytes[s] = v->cols / 8 * nsq_lattice_kind_bits(out->kind[s]);
    }
    for (uint32_t l = 0; l < n_ref; l++) {
        const uint8_t *at = refs[l].codes;
        for (uint32_t k = 0; k < refs[l].bits; k++) {
            uint32_t s = out->n_stages++, kind = refs[l].kind[k], bits = nsq_lattice_kind_bits(kind);
            if (s >= NSQ_LATTICE_MAX_STAGES || !bits) return NSQ_E_TENSOR;
            out->kind[s] = kind;
            out->scales[s] = at;
            out->codes[s] = at + pad64(2 * v->rows * out->n_blocks);
            out->row_bytes[s] = v->cols / 8 * bits;
            at += stage_size(v->rows, v->cols, v->group_size, bits);
        }
    }
    return NSQ_OK;
}

/* ---- decoding ---- */

/* The spec's butterfly; the pairs of one stage are disjoint, so visiting
 * them in runs of h keeps the result and lets the inner loop vectorize. */
void nsq_lattice_hadamard(float *u, uint32_t n)
{
    for (uint32_t h = 1; h < n; h *= 2)
        for (uint32_t i = 0; i < n; i += 2 * h)
            for (uint32_t j = i; j < i + h; j++) {
                float a = u[j], b = u[j + h];
                u[j] = a + b, u[j + h] = a - b;
            }
}

/* The values of stage s for columns 8g..8g+7 of row r (exact in f32). */
static void stage_values(const nsq_lattice *L, uint32_t s, uint64_t r, uint64_t g, float x[8])
{
    uint32_t kind = L->kind[s];
    const uint8_t *row = L->codes[s] + r * L->row_bytes[s];
    if (kind == NSQ_LAT_E8) {
        int8_t v4[8];
        nsq_lattice_e8_value(nsq__rd16(row + 2 * g), v4);
        for (int k = 0; k < 8; k++) x[k] = (float)v4[k] * 0.25f;
    } else if (kind == NSQ_LAT_SIGN) {
        for (int k = 0; k < 8; k++) x[k] = row[g] >> k & 1 ? -1.0f : 1.0f;
    } else if (kind == NSQ_LAT_E8S) {
        int8_t v4[8];
        nsq_lattice_e8s_value(row[g], v4);
        for (int k = 0; k < 8; k++) x[k] = (float)v4[k] * 0.25f;
    } else {
        for (int k = 0; k < 8; k++) x[k] = (float)(int8_t)row[8 * g + k];
    }
}

/* Row r of W' (cols columns): the stages' products d * v summed in stage order. */
static void rotated_row(const nsq_lattice *L, uint64_t cols, uint64_t r, float *out)
{
    uint64_t nb = L->n_blocks;
    float x[8];
    for (uint32_t s = 0; s < L->n_stages; s++)
        for (uint64_t g = 0; g < cols / 8; g++) {
            float d = nsq_f16_to_f32(nsq__rd16(L->scales[s] + 2 * (r * nb + 8 * g / L->block)));
            stage_values(L, s, r, g, x);
            for (int k = 0; k < 8; k++) out[8 * g + k] = s ? out[8 * g + k] + d * x[k] : d * x[k];
        }
}

/* c = fl32(1/sqrt(B)): 2^-k for B = 4^k, 2^-k fl32(1/sqrt(2)) for B = 2 * 4^k. */
static float block_scale(uint32_t b)
{
    int z = __builtin_ctz(b);
    return ldexpf(z % 2 ? 0x1.6a09e6p-1f : 1.0f, -(z / 2));
}

nsq_status nsq_lattice_rows_rotated(const nsq_view *v, uint64_t row0, uint64_t nrows, float *out)
{
    return nsq_lattice_rows_rotated_refined(v, NULL, 0, row0, nrows, out);
}

nsq_status nsq_lattice_rows_rotated_refined(const nsq_view *v, const nsq_refine_view *refs, uint32_t n_ref, uint64_t row0,
                                            uint64_t nrows, float *out)
{
    uint64_t end;
    nsq_lattice L;
    if (!v || !out || v->scheme != NSQ_SCHEME_LATTICE || nsq__add(row0, nrows, &end) || end > v->rows) return NSQ_E_ARG;
    nsq_status st = nsq_lattice_view_refined(v, refs, n_ref, &L);
    if (st) return st;
    for (uint64_t r = 0; r < nrows; r++) rotated_row(&L, v->cols, row0 + r, out + r * v->cols);
    return NSQ_OK;
}

/* W = W' R: per block, the butterfly, the scale c, then the column signs. */
static nsq_status dequantize(const nsq_view *v, const nsq_refine_view *refs, uint32_t n_ref, uint64_t row0,
                             uint64_t nrows, float *out)
{
    nsq_lattice L;
    nsq_status st = nsq_lattice_view_refined(v, refs, n_ref, &L);
    if (st) return st;
    uint32_t B = v->group_size;
    float c = block_scale(B);
    const uint8_t *signs = v->data + HEADER;
    for (uint64_t r = 0; r < nrows; r++) {
        float *w = out + r * v->cols;
        rotated_row(&L, v->cols, row0 + r, w);
        for (uint64_t b = 0; b < v->cols; b += B) nsq_lattice_hadamard(w + b, B);
        for (uint64_t j = 0; j < v->cols; j++) {
            float x = w[j] * c;
            w[j] = signs[j / 8] >> (j % 8) & 1 ? -x : x;
        }
    }
    return NSQ_OK;
}

const nsq__scheme nsq__scheme_lattice = {NSQ_SCHEME_LATTICE, "lattice", 0, 1, check_record, check_add, view, refine_view,
                                         dequantize};
