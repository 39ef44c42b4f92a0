/*
 * The text helpers reports are built on (atx/plugin/text.h), duration
 * parsing (atx/common.h) and output capture (atx/plugin/capture.h).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "atx.h"
#include "atx/plugin/capture.h"
#include "atx/plugin/text.h"

#define FFFD "\xEF\xBF\xBD"
#define SEC ATX_NSEC_PER_SEC

/* An independent strict UTF-8 check (no overlongs, surrogates or > U+10FFFF). */
static bool valid_utf8(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;

    for (size_t i = 0; i < len;) {
        unsigned c = p[i];
        size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (n == 0 || i + n > len)
            return false;
        uint32_t cp = n == 1 ? c : c & (0x7F >> n);
        for (size_t k = 1; k < n; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n;
    }
    return true;
}

/* atx_text_clean of @len bytes must give exactly @want (NUL-terminated). */
static void expect_clean(const char *in, size_t len, unsigned flags, const char *want)
{
    char *out = NULL;
    size_t out_len = 12345;

    assert_int_equal(atx_text_clean(in, len, flags, &out, &out_len), 0);
    assert_non_null(out);
    assert_string_equal(out, want);
    assert_int_equal(out_len, strlen(want));
    free(out);
}

#define CLEAN(lit, flags, want) expect_clean(lit, sizeof(lit) - 1, flags, want)
#define XML (ATX_TEXT_XML)
#define XML_NL (ATX_TEXT_XML | ATX_TEXT_KEEP_NEWLINES)
#define ALL (ATX_TEXT_STRIP_ANSI | ATX_TEXT_XML | ATX_TEXT_KEEP_NEWLINES)

/* ---- atx_text_clean ---- */

static void test_clean_plain(void **state)
{
    (void)state;
    CLEAN("", 0, "");
    CLEAN("hello, world", 0, "hello, world");
    CLEAN("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", ALL, "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");

    /* The length may be asked for or not. */
    char *out = NULL;
    assert_int_equal(atx_text_clean("abc", 3, 0, &out, NULL), 0);
    assert_string_equal(out, "abc");
    free(out);
}

static void test_clean_invalid_utf8(void **state)
{
    (void)state;
    CLEAN("a\xFF" "b", 0, "a" FFFD "b");
    CLEAN("\xFE\xFF", 0, FFFD FFFD);
    CLEAN("\x80" "x", 0, FFFD "x");             /* a lone continuation byte */
    CLEAN("\xF5\x80\x80\x80", 0, FFFD FFFD FFFD FFFD);

    /* Overlongs, surrogates, past U+10FFFF and cut sequences: no raw byte of
     * them survives and the result is valid UTF-8 made of U+FFFD. */
    static const char *const bad[] = {
        "\xC0\xAF", "\xC1\xBF", "\xE0\x80\xAF", "\xF0\x80\x80\xAF", "\xED\xA0\x80",
        "\xED\xBF\xBF", "\xF4\x90\x80\x80", "\xE2\x82", "\xF0\x9F\x98", "\xC3",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *out = NULL;
        size_t n = 0;
        assert_int_equal(atx_text_clean(bad[i], strlen(bad[i]), 0, &out, &n), 0);
        assert_true(n > 0 && n % 3 == 0);
        for (size_t k = 0; k < n; k += 3)
            assert_memory_equal(out + k, FFFD, 3);
        assert_true(valid_utf8(out, n));
        free(out);
    }
    /* Text around a cut sequence is kept. */
    char *out = NULL;
    size_t n = 0;
    assert_int_equal(atx_text_clean("ok\xE2\x82" "end", 7, 0, &out, &n), 0);
    assert_true(valid_utf8(out, n));
    assert_memory_equal(out, "ok", 2);
    assert_string_equal(out + n - 3, "end");
    free(out);
}

static void test_clean_nul(void **state)
{
    (void)state;
    /* With or without XML: never a NUL inside the result. */
    CLEAN("a\0b", 0, "a" FFFD "b");
    CLEAN("a\0b", ALL, "a" FFFD "b");
    CLEAN("\0\0", 0, FFFD FFFD);
}

static void test_clean_ansi(void **state)
{
    (void)state;
    CLEAN("\x1b[1;31mred\x1b[0m plain", ATX_TEXT_STRIP_ANSI, "red plain");
    CLEAN("\x1b[38;5;196mx\x1b[K\x1b[2J", ATX_TEXT_STRIP_ANSI, "x");
    CLEAN("\x1b]0;window title\x07text", ATX_TEXT_STRIP_ANSI, "text");
    CLEAN("\x1b]8;;http://example.com\x1b\\link\x1b]8;;\x1b\\", ATX_TEXT_STRIP_ANSI, "link");
    CLEAN("a\x1b" "Mb", ATX_TEXT_STRIP_ANSI, "ab");     /* a two-byte escape */
    CLEAN("\x1b[1;31mred\x1b[0m", ALL, "red");
    CLEAN("end\x1b", ALL, "end");                     /* a cut escape */
    /* Not asked to strip: without XML the escape stays; with XML the ESC
     * byte is replaced and the rest is text. */
    CLEAN("\x1b[0m", 0, "\x1b[0m");
    CLEAN("\x1b[0m", XML_NL, FFFD "[0m");
}

static void test_clean_xml_forbidden(void **state)
{
    (void)state;
    CLEAN("\x01\x08\x0b\x0c\x1f", XML_NL, FFFD FFFD FFFD FFFD FFFD);
    CLEAN("del\x7f", XML_NL, "del" FFFD);
    CLEAN("c1\xC2\x80\xC2\x9B\xC2\x9F", XML_NL, "c1" FFFD FFFD FFFD);
    CLEAN("\xEF\xBF\xBE\xEF\xBF\xBF", XML_NL, FFFD FFFD);   /* U+FFFE, U+FFFF */
    /* Allowed at the edges of XML's ranges. */
    CLEAN(" ~\xED\x9F\xBF\xEE\x80\x80" FFFD "\xF4\x8F\xBF\xBF", XML_NL,
          " ~\xED\x9F\xBF\xEE\x80\x80" FFFD "\xF4\x8F\xBF\xBF");
    /* Without XML, control characters other than NUL stay. */
    CLEAN("\x01\x7f", 0, "\x01\x7f");
    /* No escaping here: that is the XML writer's job. */
    CLEAN("]]> & < > \"", ALL, "]]> & < > \"");
}

static void test_clean_newlines(void **state)
{
    (void)state;
    CLEAN("a\tb\nc\rd", XML_NL, "a\tb\nc\rd");
    CLEAN("a\tb\nc\rd", ALL, "a\tb\nc\rd");
    CLEAN("a\tb\nc\rd", XML, "a" FFFD "b" FFFD "c" FFFD "d");
    CLEAN("a\tb\nc\rd", 0, "a\tb\nc\rd");
}

/* Every byte value, in every flag combination: valid UTF-8, no NUL, and with
 * XML no character XML 1.0 forbids. */
static void test_clean_all_bytes(void **state)
{
    char in[512];

    (void)state;
    for (int i = 0; i < 256; i++) {
        in[2 * i] = (char)i;
        in[2 * i + 1] = (char)(255 - i);
    }
    for (unsigned flags = 0; flags < 8; flags++) {
        char *out = NULL;
        size_t n = 0;
        assert_int_equal(atx_text_clean(in, sizeof(in), flags, &out, &n), 0);
        assert_true(valid_utf8(out, n));
        assert_int_equal(strlen(out), n);
        for (size_t k = 0; k < n && (flags & ATX_TEXT_XML); k++) {
            unsigned char c = (unsigned char)out[k];
            if (c < 0x20)
                assert_true((flags & ATX_TEXT_KEEP_NEWLINES) &&
                            (c == '\t' || c == '\n' || c == '\r'));
            assert_true(c != 0x7f);
        }
        if (flags & ATX_TEXT_STRIP_ANSI)
            assert_null(memchr(out, 0x1b, n));
        free(out);
    }
}

/* ---- atx_text_utf8_floor ---- */

static void test_utf8_floor(void **state)
{
    static const char euro[] = "a\xE2\x82\xAC";        /* a + 3-byte sequence */
    static const char smile[] = "\xF0\x9F\x98\x80";    /* one 4-byte sequence */

    (void)state;
    assert_int_equal(atx_text_utf8_floor("abc", 3, 2), 2);
    assert_int_equal(atx_text_utf8_floor("abc", 3, 3), 3);
    assert_int_equal(atx_text_utf8_floor("abc", 3, 100), 3);
    assert_int_equal(atx_text_utf8_floor("abc", 3, 0), 0);
    assert_int_equal(atx_text_utf8_floor("", 0, 5), 0);
    assert_int_equal(atx_text_utf8_floor(euro, 4, 1), 1);
    assert_int_equal(atx_text_utf8_floor(euro, 4, 2), 1);
    assert_int_equal(atx_text_utf8_floor(euro, 4, 3), 1);
    assert_int_equal(atx_text_utf8_floor(euro, 4, 4), 4);
    assert_int_equal(atx_text_utf8_floor(smile, 4, 1), 0);
    assert_int_equal(atx_text_utf8_floor(smile, 4, 3), 0);
    assert_int_equal(atx_text_utf8_floor(smile, 4, 4), 4);
    assert_int_equal(atx_text_utf8_floor("\xC3\xA9", 2, 1), 0);
}

/* For every cut of a mixed string: the prefix is valid UTF-8 and at most
 * three bytes shorter than asked. */
static void test_utf8_floor_every_cut(void **state)
{
    static const char s[] = "a\xC3\xA9" "b\xE2\x82\xAC\xF0\x9F\x98\x80" "c\xF0\x9F\x98\x80\xC3\xA9";
    size_t len = sizeof(s) - 1;

    (void)state;
    for (size_t max = 0; max <= len + 2; max++) {
        size_t n = atx_text_utf8_floor(s, len, max);
        size_t cap = max < len ? max : len;
        assert_true(n <= cap);
        assert_true(n + 3 >= cap);
        assert_true(valid_utf8(s, n));
    }
}

/* ---- atx_text_safe_relpath ---- */

static void expect_relpath(const char *in, const char *want)
{
    char *out = NULL;

    assert_int_equal(atx_text_safe_relpath(in, &out), 0);
    assert_non_null(out);
    assert_string_equal(out, want);
    free(out);
}

static void test_safe_relpath(void **state)
{
    (void)state;
    expect_relpath("a/b/c", "a/b/c");
    expect_relpath("/abs/x", "abs/x");
    expect_relpath("//abs//x//", "abs/x");
    expect_relpath("../../etc/passwd", "etc/passwd");
    expect_relpath("a/../../b", "a/b");
    expect_relpath("./a/./b/.", "a/b");
    expect_relpath("...", "...");           /* not a parent reference */
    expect_relpath("..a/b..", "..a/b..");
    expect_relpath("a\x01" "b/c\x7f/\x1b[0m", "a_b/c_/_[0m");
    expect_relpath("a\\..\\b", "a_.._b");
    expect_relpath("tab\there\nnl", "tab_here_nl");
    expect_relpath("", "_");
    expect_relpath("/", "_");
    expect_relpath("..", "_");
    expect_relpath("../..//./", "_");
}

/* Whatever goes in, the result stays below the directory. */
static void test_safe_relpath_stays_below(void **state)
{
    static const char *const in[] = {
        "/..", "../", "a/..", "/../../../root", "x/./../../y", "\\..\\..", "....//..//",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        char *out = NULL;
        assert_int_equal(atx_text_safe_relpath(in[i], &out), 0);
        assert_true(out[0] != '/' && out[0] != '\0');
        char *copy = strdup(out), *save = NULL;
        for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
            assert_string_not_equal(c, "..");
            assert_string_not_equal(c, ".");
        }
        assert_null(strstr(out, "//"));
        free(copy);
        free(out);
    }
}

/* ---- atx_text_name_path ---- */

static void expect_name_path(const char *in, const char *want)
{
    char *out = NULL;
    assert_int_equal(atx_text_name_path(in, &out), 0);
    assert_string_equal(out, want);
    free(out);
}

static void test_name_path(void **state)
{
    (void)state;
    expect_name_path("/demo/pass", "demo/pass");
    expect_name_path("/a_b", "a_b");
    expect_name_path("/a\\b", "a%5Cb");
    expect_name_path("/c/./d", "c/%2E/d");
    expect_name_path("/c/d", "c/d");
    expect_name_path("/../x", "%2E%2E/x");
    expect_name_path("/a//b/", "a/%E/b/%E");
    expect_name_path("a", "%N/a");
    expect_name_path("/%N/a", "%25N/a");
    expect_name_path("/t\x1b[0m\x01", "t%1B[0m%01");
    expect_name_path("", "%N/%E");
    expect_name_path("/", "%E");
    expect_name_path("/a/attempt-1/x", "a/%61ttempt-1/x");
    expect_name_path("/attempt-", "attempt-");
}

/* Different names, different folders; every part a file name below. */
static void test_name_path_injective(void **state)
{
    static const char *const in[] = {
        "/a_b", "/a\\b", "/a%5Cb", "/a\x01", "/a\x02", "/a_", "/c/./d", "/c/d", "/c//d",
        "c/d", "/c/d/", "/c/%2E/d", "/..", "/%2E%2E", "/.", "/", "", "%N/x", "/%N/x",
        "/%E", "//", "/x\x7f", "/x%7F", "/a/attempt-1", "/a/%61ttempt-1",
    };
    size_t n = sizeof(in) / sizeof(in[0]);
    char *out[sizeof(in) / sizeof(in[0])];
    (void)state;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(atx_text_name_path(in[i], &out[i]), 0);
        assert_true(out[i][0] != '/' && out[i][0] != '\0');
        char *copy = strdup(out[i]), *save = NULL;
        for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
            assert_string_not_equal(c, "..");
            assert_string_not_equal(c, ".");
            assert_true(strlen(c) < 255);
            /* never an attempt's folder */
            assert_false(strncmp(c, "attempt-", 8) == 0 && c[8]);
        }
        assert_null(strstr(out[i], "//"));
        free(copy);
        for (size_t k = 0; k < i; k++)
            if (strcmp(out[i], out[k]) == 0)
                fail_msg("'%s' and '%s' both map to %s", in[i], in[k], out[i]);
    }
    /* Long parts: kept below NAME_MAX, and still apart. */
    char a[2000], b[2000];
    memset(a, 'x', sizeof(a));
    a[0] = '/';
    a[sizeof(a) - 1] = '\0';
    memcpy(b, a, sizeof(b));
    b[1500] = 'y';
    char *pa, *pb;
    assert_int_equal(atx_text_name_path(a, &pa), 0);
    assert_int_equal(atx_text_name_path(b, &pb), 0);
    assert_true(strlen(pa) < 255);
    assert_string_not_equal(pa, pb);
    free(pa);
    free(pb);
    for (size_t i = 0; i < n; i++)
        free(out[i]);
}

/* ---- atx_text_seconds ---- */

static void expect_seconds(int64_t ns, const char *want)
{
    char buf[32];

    memset(buf, 'z', sizeof(buf));
    atx_text_seconds(ns, buf);
    assert_string_equal(buf, want);
}

static void test_seconds(void **state)
{
    (void)state;
    expect_seconds(0, "0.000");
    expect_seconds(1, "0.000");
    expect_seconds(499999, "0.000");
    expect_seconds(500000, "0.001");
    expect_seconds(1000000, "0.001");
    expect_seconds(12 * ATX_NSEC_PER_MSEC, "0.012");
    expect_seconds(1234567890, "1.235");
    expect_seconds(999999999, "1.000");
    expect_seconds(59 * SEC + 999 * ATX_NSEC_PER_MSEC, "59.999");
    expect_seconds(3600 * SEC, "3600.000");
    expect_seconds(1000000 * SEC, "1000000.000");
    /* Never negative. */
    expect_seconds(-1, "0.000");
    expect_seconds(-5 * SEC, "0.000");
    expect_seconds(INT64_MIN, "0.000");
}

/* ---- atx_text_rate ---- */

static void expect_rate(double rate, const char *want)
{
    char buf[8];

    memset(buf, 'z', sizeof(buf));
    atx_text_rate(rate, buf);
    assert_string_equal(buf, want);
}

static void test_rate(void **state)
{
    (void)state;
    expect_rate(0, "0");
    expect_rate(1, "1");
    expect_rate(0.5, "0.5");
    expect_rate(2.0 / 3, "0.667");
    expect_rate(1.0 / 3, "0.333");
    expect_rate(0.02, "0.02");
    expect_rate(0.125, "0.125");
    expect_rate(0.0004, "0");
    expect_rate(0.9996, "1");
    expect_rate(0.999, "0.999");
    /* Clamped: never negative, never past 1, NaN is 0. */
    expect_rate(-1, "0");
    expect_rate(7, "1");
    expect_rate(0.0 / 0.0, "0");
}

/* ---- atx_duration_parse ---- */

static void expect_duration(const char *text, int64_t want)
{
    int64_t ns = -1;

    assert_int_equal(atx_duration_parse(text, &ns), 0);
    assert_true(ns == want);
}

static void test_duration_parse(void **state)
{
    (void)state;
    expect_duration("90", 90 * SEC);
    expect_duration("90s", 90 * SEC);
    expect_duration("5m", 300 * SEC);
    expect_duration("1h 30m", 5400 * SEC);
    expect_duration("1h30m", 5400 * SEC);
    expect_duration("2d", 2 * 86400 * SEC);
    expect_duration("250ms", 250 * ATX_NSEC_PER_MSEC);
    expect_duration("1m 250ms", 60 * SEC + 250 * ATX_NSEC_PER_MSEC);
    expect_duration("1.5h", 5400 * SEC);
    expect_duration("0.25s", 250 * ATX_NSEC_PER_MSEC);
    expect_duration("  10s  ", 10 * SEC);
    expect_duration("0", 0);
    /* Cut to 100 years: an instant plus any of them does not overflow. */
    expect_duration("106751d", ATX_DURATION_MAX);
    expect_duration("36500d 36500d", ATX_DURATION_MAX);
    assert_int_equal(atx_seconds_ns(strtod("1e400", NULL)), ATX_DURATION_MAX);
    assert_int_equal(atx_seconds_ns(-1), -1);
    assert_int_equal(atx_seconds_ns(strtod("nan", NULL)), -1);
    assert_int_equal(atx_seconds_ns(1.5), 1500 * ATX_NSEC_PER_MSEC);
    assert_int_equal(atx_add_sat(INT64_MAX - 1, ATX_DURATION_MAX), INT64_MAX);
    assert_int_equal(atx_add_sat(INT64_MIN + 1, -ATX_DURATION_MAX), INT64_MIN);
}

static void test_duration_parse_bad(void **state)
{
    static const char *const bad[] = {
        "", "   ", "abc", "5x", "-5", "s", "ms", "5mm", "5 minutes", "1h 30q", ".5s",
        "5s!", "99999999999999999999", "9223372037s", "106752d",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t ns = 4242;
        atx_error_clear();
        assert_int_equal(atx_duration_parse(bad[i], &ns), ATX_EINVAL);
        assert_true(ns == 4242);                     /* untouched on failure */
        assert_int_equal(atx_error_last()->code, ATX_EINVAL);
        assert_non_null(strstr(atx_error_last()->message, "duration"));
    }
    int64_t ns = 4242;
    assert_int_equal(atx_duration_parse(NULL, &ns), ATX_EINVAL);
    assert_true(ns == 4242);
    assert_int_equal(atx_duration_parse("5s", NULL), ATX_EINVAL);
}

/* ---- atx_capture ---- */

static char *collect(const atx_capture *c, size_t *len)
{
    char *out = NULL;

    assert_int_equal(atx_capture_collect(c, &out, len), 0);
    assert_non_null(out);
    assert_int_equal(strlen(out), *len);
    return out;
}

static void test_capture_under_cap(void **state)
{
    atx_capture c;
    size_t len;

    (void)state;
    assert_int_equal(atx_capture_init(&c, 16, 16), 0);
    char *out = collect(&c, &len);
    assert_string_equal(out, "");
    free(out);
    assert_int_equal(atx_capture_append(&c, "hello ", 6), 0);
    assert_int_equal(atx_capture_append(&c, "world", 5), 0);
    out = collect(&c, &len);
    assert_string_equal(out, "hello world");
    assert_true(c.total == 11);
    free(out);
    atx_capture_release(&c);

    /* Head and tail exactly full: nothing dropped, no marker. */
    assert_int_equal(atx_capture_init(&c, 4, 4), 0);
    assert_int_equal(atx_capture_append(&c, "abcdefgh", 8), 0);
    out = collect(&c, &len);
    assert_string_equal(out, "abcdefgh");
    free(out);
    atx_capture_release(&c);
}

/* Past the cap: head, a marker with the count, tail; in one append or many. */
static void test_capture_past_cap(void **state)
{
    static const size_t chunks[] = { 1, 3, 7, 64, 100000 };
    char *data = malloc(100008);

    (void)state;
    memcpy(data, "HEAD", 4);
    for (size_t i = 4; i < 100004; i++)
        data[i] = (char)('a' + i % 26);
    memcpy(data + 100004, "TAIL", 4);
    for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
        atx_capture c;
        size_t len;
        assert_int_equal(atx_capture_init(&c, 64, 32), 0);
        for (size_t o = 0; o < 100008; o += chunks[k]) {
            size_t n = 100008 - o < chunks[k] ? 100008 - o : chunks[k];
            assert_int_equal(atx_capture_append(&c, data + o, n), 0);
        }
        assert_true(c.total == 100008);
        char *out = collect(&c, &len);
        assert_memory_equal(out, data, 64);
        assert_memory_equal(out + len - 32, data + 100008 - 32, 32);
        assert_non_null(strstr(out, "[... 99912 bytes omitted ...]"));
        assert_true(len < 64 + 32 + 64);
        free(out);
        atx_capture_release(&c);
    }
    free(data);
}

/* The tail ring keeps the last bytes in order, however the writes wrap. */
static void test_capture_ring(void **state)
{
    atx_capture c;
    char want[7];
    size_t len;

    (void)state;
    assert_int_equal(atx_capture_init(&c, 0, 7), 0);
    for (int i = 0; i < 1000; i++) {
        char ch = (char)('0' + i % 10);
        assert_int_equal(atx_capture_append(&c, &ch, 1), 0);
        if (i % 3 == 0)
            assert_int_equal(atx_capture_append(&c, "", 0), 0);
    }
    for (int i = 0; i < 7; i++)
        want[i] = (char)('0' + (993 + i) % 10);
    char *out = collect(&c, &len);
    assert_true(c.total == 1000);
    assert_non_null(strstr(out, "[... 993 bytes omitted ...]"));
    assert_memory_equal(out + len - 7, want, 7);
    free(out);
    atx_capture_release(&c);
}

/* A head cut inside a UTF-8 sequence is cut back to a boundary, and the
 * bytes taken off are counted in the marker. */
static void test_capture_utf8_cut(void **state)
{
    atx_capture c;
    size_t len;

    (void)state;
    assert_int_equal(atx_capture_init(&c, 5, 4), 0);
    /* head: "abc" + 2 of the 3 euro bytes; 6 x dropped; tail "wxyz" */
    assert_int_equal(atx_capture_append(&c, "abc\xE2\x82\xAC" "xxxxxxwxyz", 16), 0);
    char *out = collect(&c, &len);
    assert_true(valid_utf8(out, len));
    assert_memory_equal(out, "abc\n", 4);
    assert_non_null(strstr(out, "[... 9 bytes omitted ...]"));
    assert_string_equal(out + len - 4, "wxyz");
    free(out);
    atx_capture_release(&c);

    /* A tail that starts inside a sequence drops its continuation bytes:
     * of the emoji's F0 9F 98 80 the tail holds 9F 98 80. */
    assert_int_equal(atx_capture_init(&c, 2, 4), 0);
    assert_int_equal(atx_capture_append(&c, "ab0123456789\xF0\x9F\x98\x80" "z", 17), 0);
    out = collect(&c, &len);
    assert_true(valid_utf8(out, len));
    assert_memory_equal(out, "ab\n", 3);
    assert_true(len > 3);
    assert_string_equal(out + len - 3, "]\nz");
    free(out);
    atx_capture_release(&c);
}

/* Nothing kept at all: the total still counts and the marker says so. */
static void test_capture_zero_caps(void **state)
{
    atx_capture c;
    size_t len;

    (void)state;
    assert_int_equal(atx_capture_init(&c, 0, 0), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(atx_capture_append(&c, "0123456789", 10), 0);
    assert_true(c.total == 100);
    char *out = collect(&c, &len);
    assert_non_null(strstr(out, "[... 100 bytes omitted ...]"));
    free(out);
    atx_capture_release(&c);
}

/* read_fd: data, then -EAGAIN while the writer is open, then end of file. */
static void test_capture_read_fd(void **state)
{
    atx_capture c;
    int fds[2];
    size_t len;

    (void)state;
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(atx_capture_init(&c, 3, 3), 0);
    assert_int_equal(write(fds[1], "0123456789", 10), 10);
    assert_true(atx_capture_read_fd(&c, fds[0]) == 10);
    assert_true(atx_capture_read_fd(&c, fds[0]) == -EAGAIN);
    close(fds[1]);
    assert_true(atx_capture_read_fd(&c, fds[0]) == 0);
    close(fds[0]);
    assert_true(c.total == 10);
    char *out = collect(&c, &len);
    assert_memory_equal(out, "012", 3);
    assert_non_null(strstr(out, "[... 4 bytes omitted ...]"));
    assert_string_equal(out + len - 3, "789");
    free(out);
    atx_capture_release(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_plain),
        cmocka_unit_test(test_clean_invalid_utf8),
        cmocka_unit_test(test_clean_nul),
        cmocka_unit_test(test_clean_ansi),
        cmocka_unit_test(test_clean_xml_forbidden),
        cmocka_unit_test(test_clean_newlines),
        cmocka_unit_test(test_clean_all_bytes),
        cmocka_unit_test(test_utf8_floor),
        cmocka_unit_test(test_utf8_floor_every_cut),
        cmocka_unit_test(test_safe_relpath),
        cmocka_unit_test(test_safe_relpath_stays_below),
        cmocka_unit_test(test_name_path),
        cmocka_unit_test(test_name_path_injective),
        cmocka_unit_test(test_seconds),
        cmocka_unit_test(test_rate),
        cmocka_unit_test(test_duration_parse),
        cmocka_unit_test(test_duration_parse_bad),
        cmocka_unit_test(test_capture_under_cap),
        cmocka_unit_test(test_capture_past_cap),
        cmocka_unit_test(test_capture_ring),
        cmocka_unit_test(test_capture_utf8_cut),
        cmocka_unit_test(test_capture_zero_caps),
        cmocka_unit_test(test_capture_read_fd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
