/* Text cleaning for reports: UTF-8 repair, ANSI stripping, XML-safe chars. */
#include "internal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* Length of the valid UTF-8 sequence at p (1-4), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *p, size_t avail, uint32_t *cp)
{
    unsigned c = p[0];
    size_t n;
    uint32_t v;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        v = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        v = c & 0x07;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (p[i] & 0x3F);
    }
    if ((n == 3 && v < 0x800) || (n == 4 && (v < 0x10000 || v > 0x10FFFF)) ||
        (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return n;
}

static bool xml_allowed(uint32_t cp, bool keep_newlines)
{
    if (cp == 0x9 || cp == 0xA || cp == 0xD)
        return keep_newlines;
    if (cp < 0x20)
        return false;
    if (cp >= 0x7F && cp <= 0x9F)
        return cp == 0x85; /* C1 controls are discouraged; NEL is common */
    if (cp == 0xFFFE || cp == 0xFFFF)
        return false;
    return true;
}

/* Length of an ANSI escape sequence starting at p[0] == ESC, 0 if none. */
static size_t ansi_len(const unsigned char *p, size_t avail)
{
    size_t i;

    if (avail < 2)
        return 1;
    if (p[1] == '[') { /* CSI: parameters, intermediates, final byte 0x40-0x7E */
        for (i = 2; i < avail; i++)
            if (p[i] >= 0x40 && p[i] <= 0x7E)
                return i + 1;
        return avail;
    }
    if (p[1] == ']') { /* OSC: until BEL or ESC \ */
        for (i = 2; i < avail; i++) {
            if (p[i] == 0x07)
                return i + 1;
            if (p[i] == 0x1B && i + 1 < avail && p[i + 1] == '\\')
                return i + 2;
        }
        return avail;
    }
    if (p[1] >= 0x40 && p[1] <= 0x5F)
        return 2;
    if (p[1] >= 0x20 && p[1] <= 0x2F) /* nF: intermediates then a final byte */
        return avail >= 3 ? 3 : avail;
    return 1;
}

int atx_text_clean(const char *data, size_t len, unsigned flags, char **out, size_t *out_len)
{
    const unsigned char *p = (const unsigned char *)data;
    bool xml = flags & ATX_TEXT_XML;
    bool keep_nl = !xml || (flags & ATX_TEXT_KEEP_NEWLINES);
    /* Worst case: every byte becomes U+FFFD (3 bytes). */
    char *buf = malloc(len * 3 + 1);
    size_t o = 0;

    if (!buf)
        return atx_error_oom();
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        if (p[i] == 0x1B && (flags & ATX_TEXT_STRIP_ANSI)) {
            i += ansi_len(p + i, len - i);
            continue;
        }
        size_t n = utf8_seq(p + i, len - i, &cp);
        if (n == 0 || cp == 0 || (xml && !xml_allowed(cp, keep_nl))) {
            memcpy(buf + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += n ? n : 1;
            continue;
        }
        memcpy(buf + o, p + i, n);
        o += n;
        i += n;
    }
    buf[o] = '\0';
    *out = buf;
    if (out_len)
        *out_len = o;
    return 0;
}

size_t atx_text_utf8_floor(const char *data, size_t len, size_t max)
{
    const unsigned char *p = (const unsigned char *)data;
    size_t n = max < len ? max : len;

    /* Find the last lead byte among the final three and see whether its
     * sequence fits before n. */
    for (size_t back = 1; back <= 4 && back <= n; back++) {
        unsigned c = p[n - back];
        if ((c & 0xC0) == 0x80)
            continue;
        size_t need = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back ? n - back : n;
    }
    return n;
}

void atx_text_seconds(int64_t ns, char buf[32])
{
    if (ns < 0)
        ns = 0;
    int64_t ms = ns / 1000000 + (ns % 1000000 >= 500000);
    snprintf(buf, 32, "%lld.%03lld", (long long)(ms / 1000), (long long)(ms % 1000));
}

void atx_text_rate(double rate, char buf[8])
{
    /* Thousandths from an integer: no locale, no binary-float noise. */
    int k = !(rate > 0) ? 0 : rate >= 1 ? 1000 : (int)(rate * 1000 + 0.5);
    if (k % 1000 == 0) {
        snprintf(buf, 8, "%d", k / 1000);
        return;
    }
    int frac = k % 1000, digits = 3;
    for (; frac % 10 == 0; frac /= 10)
        digits--;
    snprintf(buf, 8, "0.%0*d", digits, frac);
}

void atx_text_utc(int64_t wall_ns, int zulu, char buf[32])
{
    time_t t = (time_t)(wall_ns / ATX_NSEC_PER_SEC);
    struct tm tm;

    gmtime_r(&t, &tm);
    /* Years past 9999 do not occur; the cast bounds what the compiler sees. */
    snprintf(buf, 32, "%04u-%02u-%02uT%02u:%02u:%02u%s", (unsigned)(tm.tm_year + 1900) % 10000u,
             (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u,
             (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u, zulu ? "Z" : "");
}

int atx_text_safe_relpath(const char *path, char **out)
{
    size_t len = path ? strlen(path) : 0;
    char *buf = malloc(len + 2);
    size_t o = 0;

    if (!buf)
        return atx_error_oom();
    for (size_t i = 0; i < len;) {
        while (i < len && path[i] == '/')
            i++;
        size_t start = i;
        while (i < len && path[i] != '/')
            i++;
        size_t n = i - start;
        if (n == 0 || (n == 1 && path[start] == '.') ||
            (n == 2 && path[start] == '.' && path[start + 1] == '.'))
            continue;
        if (o)
            buf[o++] = '/';
        for (size_t k = start; k < i; k++) {
            unsigned char c = (unsigned char)path[k];
            buf[o++] = (c < 0x20 || c == 0x7F || c == '\\') ? '_' : (char)c;
        }
    }
    if (o == 0)
        buf[o++] = '_';
    buf[o] = '\0';
    *out = buf;
    return 0;
}

/* One part of a name into out (room for 3 bytes per input byte + 20). */
static size_t name_part(const char *p, size_t n, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    if (n == 0) {
        memcpy(out, "%E", 2);
        return 2;
    }
    if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) {
        for (size_t i = 0; i < n; i++, o += 3)
            memcpy(out + o, "%2E", 3);
        return o;
    }
    /* A part spelled like an attempt's folder would put one test's folder
     * inside another's attempt: its first letter is escaped. */
    bool attempt = n > 8 && strncmp(p, "attempt-", 8) == 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (i == 0 && attempt) {
            memcpy(out, "%61", 3);
            o = 3;
            continue;
        }
        if (o > 200) {
            /* Too long for a file name: the head, and a hash of it all. */
            o += (size_t)sprintf(out + o, "%%H%016llx", (unsigned long long)atx_hash_mem(p, n));
            return o;
        }
        if (c < 0x20 || c == 0x7F || c == '\\' || c == '%') {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        } else {
            out[o++] = (char)c;
        }
    }
    return o;
}

int atx_text_name_path(const char *name, char **out)
{
    size_t len = name ? strlen(name) : 0;
    const char *p = name ? name : "";
    /* Per byte at most 3, per part 20 more and a '/'; "%N/" once. */
    char *buf = malloc(len * 24 + 32);
    size_t o = 0;

    if (!buf)
        return atx_error_oom();
    if (*p == '/') {
        p++;
        len--;
    } else {
        memcpy(buf, "%N/", 3);
        o = 3;
    }
    for (;;) {
        size_t n = strcspn(p, "/");
        o += name_part(p, n, buf + o);
        if (!p[n])
            break;
        buf[o++] = '/';
        p += n + 1;
    }
    buf[o] = '\0';
    *out = buf;
    return 0;
}
