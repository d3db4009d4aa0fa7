/* ggml_prompt.c - prompt-processing cost of a TinyLlama-1.1B-shaped model with ggml's CPU
 * kernels (the ones llama.cpp runs), as a peer figure: every weight matrix of one forward
 * over a batch of TOKENS prompt tokens (matrix-matrix products, f32 activations [in, TOKENS]),
 * in the ggml types that llama.cpp's MIX assigns to each tensor. Attention, norms and RoPE are
 * left out, so TOKENS / time is an upper bound on llama.cpp's prompt tokens/s.
 *   ggml_prompt MIX THREADS [TOKENS [no-repack|amx]]   MIX: q8_0 q4_K_M q3_K_M q2_K
 * TOKENS is 128 by default. Each weight goes where llama.cpp puts it: into the first of the CPU
 * backend's extra buffer types (repacked layouts) that takes its product, else a plain buffer;
 * no-repack keeps every weight plain, as llama.cpp's --no-repack does. The AMX buffer type is
 * left out unless asked for (amx): ggml's AMX kernels (2026-08 snapshot) die on an illegal
 * instruction for batches above one when GCC drops the tile configuration's stores (seen with
 * GCC 12; llama.cpp PR 26954), as would a llama.cpp built the same way. On a CPU with AMX and a
 * ggml whose AMX kernels work, the amx figure is the bound to quote. Prints the best of 5 timed
 * runs after a warm-up.
 *
 * Built against a ggml built outside the project (ggml-org/ggml, in a folder BUILD):
 *   cmake -S ggml -B $BUILD -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
 *         -DGGML_BUILD_TESTS=OFF -DGGML_BUILD_EXAMPLES=OFF
 *   cmake --build $BUILD -j2 --target ggml ggml-base ggml-cpu
 *   gcc -O2 -o ggml_prompt bench/ggml_prompt.c -I$GGML/include \
 *       -L$BUILD/src -lggml-base -lggml-cpu -lggml -Wl,-rpath,$BUILD/src
 * (GGML: the ggml source folder.) */
#define _POSIX_C_SOURCE 200809L
#include <ggml.h>
#include <ggml-alloc.h>
#include <ggml-backend.h>
#include <ggml-cpu.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* TinyLlama-1.1B: hidden, layers, heads, kv heads, feed-forward, vocabulary. */
enum { HID = 2048, LAYERS = 22, HEADS = 32, KV_HEADS = 4, FF = 5632, VOCAB = 32000 };
enum { KVD = HID / HEADS * KV_HEADS, GQA = HEADS / KV_HEADS };
enum { MATS = 7 * LAYERS + 1, MAX_BUFTS = 8, REPS = 5 };

/* One product: a weight of `type` [in, out] times the input `x` (0: hidden, 1: feed-forward;
 * +2: the same for the last token only), its weight placed in buffer type `buft`. */
typedef struct {
    enum ggml_type type;
    int in, out, x, buft;
} mat;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* llama.cpp's use_more_bits: the first and last eighth of the layers, and every third between. */
static int more_bits(int l, int n)
{
    return l < n / 8 || l >= 7 * n / 8 || (l - n / 8) % 3 == 2;
}

/* The mix's per-tensor types (llama.cpp's rules for these shapes), in the order q k v o gate
 * up down per layer, then the output head. The last layer's feed-forward and the head see only
 * the last token: llama.cpp drops the other rows there when only the last logits are wanted
 * (the prompt-processing case), and leaving that work in would no longer bound its speed. */
static int plan(const char *mix, mat *m)
{
    enum ggml_type q8 = GGML_TYPE_Q8_0, q6 = GGML_TYPE_Q6_K, q5 = GGML_TYPE_Q5_K;
    enum ggml_type q4 = GGML_TYPE_Q4_K, q3 = GGML_TYPE_Q3_K, q2 = GGML_TYPE_Q2_K, base;
    if (!strcmp(mix, "q8_0")) base = q8;
    else if (!strcmp(mix, "q4_K_M")) base = q4;
    else if (!strcmp(mix, "q3_K_M")) base = q3;
    else if (!strcmp(mix, "q2_K")) base = q2;
    else return -1;
    int n = 0;
    for (int l = 0; l < LAYERS; l++) {
        enum ggml_type v, o, down;
        if (base == q8) v = o = down = q8;
        else if (base == q2) v = GQA >= 4 ? q4 : q3, o = down = q3;
        else if (base == q3) v = l < 2 ? q5 : q4, o = q4, down = l < LAYERS / 16 ? q5 : q4;
        else v = down = more_bits(l, LAYERS) ? q6 : base, o = base;
        int f = l == LAYERS - 1 ? 2 : 0;
        m[n++] = (mat){base, HID, HID, 0, 0};
        m[n++] = (mat){base, HID, KVD, 0, 0};
        m[n++] = (mat){v, HID, KVD, 0, 0};
        m[n++] = (mat){o, HID, HID, 0, 0};
        m[n++] = (mat){base, HID, FF, f, 0};
        m[n++] = (mat){base, HID, FF, f, 0};
        m[n++] = (mat){down, FF, HID, f + 1, 0};
    }
    m[n++] = (mat){base == q8 ? q8 : q6, HID, VOCAB, 2, 0};
    return n;
}

/* Whether the CPU backend runs this product with its weight in `buft`: llama.cpp's test, a
 * product with a 512-token input whose weight sits in an empty buffer of that type. */
static int takes(ggml_backend_dev_t dev, ggml_backend_buffer_type_t buft, const mat *m)
{
    struct ggml_context *c = ggml_init((struct ggml_init_params){3 * ggml_tensor_overhead(), NULL, true});
    ggml_backend_buffer_t b = ggml_backend_buft_alloc_buffer(buft, 0);
    struct ggml_tensor *w = ggml_new_tensor_2d(c, m->type, m->in, m->out);
    struct ggml_tensor *op = ggml_mul_mat(c, w, ggml_new_tensor_2d(c, GGML_TYPE_F32, m->in, 512));
    w->buffer = b;
    int ok = ggml_backend_dev_supports_op(dev, op);
    ggml_backend_buffer_free(b);
    ggml_free(c);
    return ok;
}

/* ggml's debug lines (one per converted weight) would swamp the one line this prints. */
static void quiet(enum ggml_log_level level, const char *text, void *user)
{
    (void)user;
    if (level == GGML_LOG_LEVEL_WARN || level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

/* Context bytes for one f32 tensor: object header plus aligned data. */
static size_t f32_bytes(int in, int cols)
{
    size_t data = (size_t)in * (size_t)cols * sizeof(float);
    return ggml_tensor_overhead() + (data + GGML_MEM_ALIGN - 1) / GGML_MEM_ALIGN * GGML_MEM_ALIGN;
}

/* Deterministic bytes, each below 0x40: every fp16 scale of a block stays finite and small, so
 * random bytes make valid (if meaningless) K-quant and Q8_0 blocks. */
static void fill(uint8_t *p, size_t n, uint64_t *s)
{
    for (size_t i = 0; i < n; i += 8) {
        *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
        uint64_t r = *s;
        for (size_t j = i; j < n && j < i + 8; j++, r >>= 8) p[j] = (uint8_t)(r & 0x3f);
    }
}

int main(int argc, char **argv)
{
    mat m[MATS];
    int n = argc > 2 ? plan(argv[1], m) : -1;
    int threads = argc > 2 ? atoi(argv[2]) : 0, T = argc > 3 ? atoi(argv[3]) : 128;
    const char *how = argc > 4 ? argv[4] : "";
    int plain = !strcmp(how, "no-repack"), amx = !strcmp(how, "amx");
    if (n < 0 || threads < 1 || T < 1 || (*how && !plain && !amx) || argc > 5) {
        fprintf(stderr, "usage: %s q8_0|q4_K_M|q3_K_M|q2_K THREADS [TOKENS [no-repack|amx]]\n", argv[0]);
        return 2;
    }
    ggml_log_set(quiet, NULL);
    ggml_cpu_init();

    /* Candidate buffer types in llama.cpp's order: the extra ones (AMX only if asked for), then
     * plain CPU memory. */
    ggml_backend_reg_t reg = ggml_backend_cpu_reg();
    ggml_backend_dev_t dev = ggml_backend_reg_dev_get(reg, 0);
    ggml_backend_buffer_type_t bufts[MAX_BUFTS];
    int nb = 0;
    ggml_backend_dev_get_extra_bufts_t extra;
    void *proc = ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts");
    memcpy(&extra, &proc, sizeof extra); /* a function pointer in a void *, as dlsym gives */
    for (ggml_backend_buffer_type_t *e = extra && !plain ? extra(dev) : NULL; e && *e && nb < MAX_BUFTS - 1; e++)
        if (amx || strcmp(ggml_backend_buft_name(*e), "AMX")) bufts[nb++] = *e;
    bufts[nb++] = ggml_backend_cpu_buffer_type();

    /* Weights: one unallocated context per buffer type, then one buffer each. */
    struct ggml_context *wctx[MAX_BUFTS];
    ggml_backend_buffer_t wbuf[MAX_BUFTS] = {NULL};
    struct ggml_tensor *w[MATS];
    for (int b = 0; b < nb; b++)
        wctx[b] = ggml_init((struct ggml_init_params){(size_t)n * ggml_tensor_overhead(), NULL, true});
    size_t weights = 0, largest = 0;
    for (int i = 0; i < n; i++) {
        while (m[i].buft < nb - 1 && !takes(dev, bufts[m[i].buft], &m[i])) m[i].buft++;
        w[i] = ggml_new_tensor_2d(wctx[m[i].buft], m[i].type, m[i].in, m[i].out);
        weights += ggml_nbytes(w[i]);
        largest = ggml_nbytes(w[i]) > largest ? ggml_nbytes(w[i]) : largest;
    }
    for (int b = 0; b < nb; b++) {
        if (!ggml_get_first_tensor(wctx[b])) continue;
        wbuf[b] = ggml_backend_alloc_ctx_tensors_from_buft(wctx[b], bufts[b]);
        if (!wbuf[b]) return fprintf(stderr, "ggml_prompt: cannot allocate the weights\n"), 1;
        ggml_backend_buffer_set_usage(wbuf[b], GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    }
    /* Set through the backend, so that extra buffer types convert to their layouts. */
    uint8_t *bytes = malloc(largest);
    if (!bytes) return fprintf(stderr, "ggml_prompt: out of memory\n"), 1;
    uint64_t seed = 0x9e3779b97f4a7c15u;
    for (int i = 0; i < n; i++) {
        fill(bytes, ggml_nbytes(w[i]), &seed);
        ggml_backend_tensor_set(w[i], bytes, 0, ggml_nbytes(w[i]));
    }
    free(bytes);

    /* Inputs, products and graph in one context sized to exactly what goes in it. */
    static const int x_in[4] = {HID, FF, HID, FF};
    int x_cols[4] = {T, T, 1, 1};
    size_t size = ggml_graph_overhead();
    for (int k = 0; k < 4; k++) size += f32_bytes(x_in[k], x_cols[k]);
    for (int i = 0; i < n; i++) size += f32_bytes(m[i].out, x_cols[m[i].x]);
    struct ggml_context *ctx = ggml_init((struct ggml_init_params){size, NULL, false});
    if (!ctx) return fprintf(stderr, "ggml_prompt: cannot allocate %.1f MB\n", size / 1e6), 1;
    struct ggml_tensor *x[4];
    for (int k = 0; k < 4; k++) {
        x[k] = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, x_in[k], x_cols[k]);
        float *v = x[k]->data;
        for (size_t i = 0; i < (size_t)x_in[k] * x_cols[k]; i++) v[i] = 0.01f * (float)(i % 7) - 0.03f;
    }
    struct ggml_cgraph *g = ggml_new_graph(ctx);
    for (int i = 0; i < n; i++) ggml_build_forward_expand(g, ggml_mul_mat(ctx, w[i], x[m[i].x]));

    /* The work buffer (inputs requantized to each kernel's input type) is sized by ggml. */
    struct ggml_cplan cp = ggml_graph_plan(g, threads, NULL);
    uint8_t *work = cp.work_size ? malloc(cp.work_size) : NULL;
    if (cp.work_size && !work) return fprintf(stderr, "ggml_prompt: out of memory\n"), 1;
    cp.work_data = work;

    ggml_graph_compute(g, &cp); /* warm-up: page in the weights, start the caches */
    double best = 1e9;
    for (int r = 0; r < REPS; r++) {
        double t0 = now();
        ggml_graph_compute(g, &cp);
        double dt = now() - t0;
        best = dt < best ? dt : best;
    }
    printf("mix %s threads %d tokens %d weights %.1f MB matmul %.2f ms -> %.2f tok/s (upper bound%s%s)\n", argv[1],
           threads, T, weights / 1e6, best * 1e3, T / best, *how ? ", " : "", how);
    free(work);
    ggml_free(ctx);
    for (int b = 0; b < nb; b++) {
        ggml_backend_buffer_free(wbuf[b]);
        ggml_free(wctx[b]);
    }
    return 0;
}
