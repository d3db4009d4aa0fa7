/* numbers.c - half-precision conversions, LE float access and the XXH3 hash. */
#include "internal.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

float nsq_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu, u;
    if (exp == 0x1F) {
        u = sign | 0x7F800000u | (man << 13);
    } else if (exp != 0) {
        u = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {
        u = sign;
    } else { /* subnormal: value = man * 2^-24, exact in f32 */
        float f = (float)man * 0x1p-24f;
        memcpy(&u, &f, 4);
        u |= sign;
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t nsq_f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t abs = u & 0x7FFFFFFFu;
    if (abs > 0x7F800000u) return (uint16_t)(sign | 0x7E00u); /* NaN */
    if (abs >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u); /* rounds to inf */
    if (abs < 0x38800000u) { /* result subnormal or zero: round man*2^-24 */
        float a;
        memcpy(&a, &abs, 4);
        /* adding 0.5 (2^-1) forces rounding at 2^-24 granularity, ties to even */
        float r = a + 0.5f;
        uint32_t ru;
        memcpy(&ru, &r, 4);
        return (uint16_t)(sign | (uint16_t)(ru - 0x3F000000u));
    }
    uint32_t mant_odd = (abs >> 13) & 1u;
    abs += 0xC8000FFFu + mant_odd; /* rebias exponent (-112<<23) and round to nearest even */
    return (uint16_t)(sign | (uint16_t)(abs >> 13));
}

float nsq_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float nsq_f32_at(const uint8_t *p, uint64_t i) { return nsq__rdf32(p + 4 * i); }

uint64_t nsq_xxh3(const void *data, size_t len) { return XXH3_64bits(data, len); }
