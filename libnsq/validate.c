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

/* Strict UTF-8: no overlongs, no surrogates, nothing above U+10FFFF, no NUL. */
int nsq__valid_utf8(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c == 0) return 0;
        if (c < 0x80) { i++; continue; }
        size_t n;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) { n = 2; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { n = 3; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { n = 4; cp = c & 0x07; min = 0x10000; }
        else return 0;
        if (len - i < n) return 0;
        for (size_t j = 1; j < n; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += n;
    }
    return 1;
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
