/* validate.c - the format's rules for names, strings and padding. */
#include "internal.h"

#include <stdlib.h>

int nsq__valid_key(const char *k, size_t len)
{
    if (len == 0 || len > NSQ__MAX_KEY_LEN) return 0;
    int seg = 0; /* length of the current segment */
    for (size_t i = 0; i < len; i++) {
        char c = k[i];
        if (c == '.') {
            if (seg == 0) return 0;
            seg = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') {
            seg++;
        } else {
            return 0;
        }
    }
    return seg > 0;
}

size_t nsq__utf8_next(const uint8_t *s, size_t n, uint32_t *cp)
{
    if (!n) return 0;
    uint8_t b = s[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    size_t len;
    uint8_t lo = 0x80, hi = 0xBF;
    uint32_t c;
    if (b >= 0xC2 && b <= 0xDF) {
        len = 2;
        c = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
        len = 3;
        c = b & 0x0F;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        len = 4;
        c = b & 0x07;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        uint8_t x = s[i];
        if (x < lo || x > hi) return 0;
        lo = 0x80, hi = 0xBF;
        c = c << 6 | (x & 0x3F);
    }
    *cp = c;
    return len;
}

size_t nsq__utf8_valid_prefix(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t l = nsq__utf8_next(s + i, n - i, &cp);
        if (!l) break;
        i += l;
    }
    return i;
}

int nsq__utf8_ok(const uint8_t *s, size_t n) { return nsq__utf8_valid_prefix(s, n) == n; }

int nsq__valid_utf8(const uint8_t *s, size_t len)
{
    return len == 0 || (memchr(s, 0, len) == NULL && nsq__utf8_ok(s, len));
}

int nsq__valid_tok_name(const uint8_t *s, size_t len)
{
    if (len == 0 || len > NSQ__MAX_TOK_NAME) return 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        if (!ok) return 0;
    }
    return 1;
}

int nsq__valid_tensor_name(const uint8_t *s, size_t len)
{
    if (len == 0 || len > NSQ__MAX_NAME_LEN) return 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x21 || s[i] > 0x7E) return 0;
    return 1;
}

int nsq__all_zero(const uint8_t *p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

char *nsq__strndup(const uint8_t *s, size_t n)
{
    char *r = malloc(n + 1);
    if (!r) return NULL;
    memcpy(r, s, n);
    r[n] = 0;
    return r;
}
