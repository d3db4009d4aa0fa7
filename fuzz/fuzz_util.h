/* fuzz_util.h - what the fuzz targets share: CHECK, which abort()s on a
 * broken invariant so that libFuzzer reports it like a crash, and a strict
 * UTF-8 check written independently of the library's. */
#ifndef NSQ_FUZZ_UTIL_H
#define NSQ_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(c)                                                                              \
    do {                                                                                      \
        if (!(c)) {                                                                           \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #c);         \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

/* s[0..n) is well-formed UTF-8 (no overlongs, surrogates or values past U+10FFFF). */
static inline int utf8_valid(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t b = s[i];
        size_t len = b < 0x80 ? 1 : b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xF0 && b <= 0xF4 ? 4 : 0;
        if (!len || len > n - i) return 0;
        uint8_t lo = 0x80, hi = 0xBF;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
        for (size_t k = 1; k < len; k++, lo = 0x80, hi = 0xBF)
            if (s[i + k] < lo || s[i + k] > hi) return 0;
        i += len;
    }
    return 1;
}

#endif
