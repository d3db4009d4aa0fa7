/* kernels_x86.h - what the x86 kernel files (kernels_x86.c,
 * kernels_lattice_x86.c) share: the target attributes of each level and the
 * AVX2 reductions both use. Include only where __x86_64__ and __GNUC__. */
#ifndef NSQ_KERNELS_X86_H
#define NSQ_KERNELS_X86_H

#include <immintrin.h>

#define AVX2_T __attribute__((target("avx2,fma,f16c")))
#define AVX512_T __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c,bmi2")))

/* The canonical lane sum, kern_tree8. */
AVX2_T static inline float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

/* Lane g: the sum of the 8 lanes of v[g] (exact: integers). */
AVX2_T static inline __m256i sum8x8(const __m256i v[8])
{
    __m256i t0 = _mm256_hadd_epi32(v[0], v[1]), t1 = _mm256_hadd_epi32(v[2], v[3]);
    __m256i t2 = _mm256_hadd_epi32(v[4], v[5]), t3 = _mm256_hadd_epi32(v[6], v[7]);
    __m256i u0 = _mm256_hadd_epi32(t0, t1), u1 = _mm256_hadd_epi32(t2, t3);
    return _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20), _mm256_permute2x128_si256(u0, u1, 0x31));
}

#endif
