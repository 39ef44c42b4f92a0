/*
 * Test control of the fmf executor (executors/fmf/control.c): streams built
 * here are fed to the parser, and the attempt's `results` (compared line by
 * line as JSON objects) and `files/` are checked against TEST_CONTROL.md.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "atx/error.h"
#include "../executors/fmf/control.h"

/* ---- fixture: a temporary attempt directory ---- */

static char tmp_root[256];
static char attempt[300];
static char output_file[300];
static const char output_text[] = "first line\nsecond \0line\n";
#define OUTPUT_LEN (sizeof(output_text) - 1)

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int setup(void **state)
{
    const char *t = getenv("TMPDIR");
    snprintf(tmp_root, sizeof(tmp_root), "%s/atx-control-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmp_root))
        return -1;
    snprintf(attempt, sizeof(attempt), "%s/tests/t/attempt-1", tmp_root);
    snprintf(output_file, sizeof(output_file), "%s/output", tmp_root);
    FILE *f = fopen(output_file, "wb");
    if (!f)
        return -1;
    fwrite(output_text, 1, OUTPUT_LEN, f);
    fclose(f);
    *state = NULL;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rm_rf(tmp_root);
    return 0;
}

/* ---- building streams ---- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static void sb_add(sbuf *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

/* `result <len>\n<json>` followed by @payload_len bytes of file data. */
static void sb_result(sbuf *b, const char *json, const void *payload, size_t payload_len)
{
    char line[64];
    snprintf(line, sizeof(line), "result %zu\n", strlen(json));
    sb_str(b, line);
    sb_str(b, json);
    sb_add(b, payload, payload_len);
}

static void sb_free(sbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* ---- hooks ---- */

static char hook_log[1024];

static void log_add(const char *fmt, ...)
{
    size_t n = strlen(hook_log);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(hook_log + n, sizeof(hook_log) - n, fmt, ap);
    va_end(ap);
}

static void on_exitcode(void *ud, int code)
{
    assert_ptr_equal(ud, hook_log);
    log_add("exitcode %d;", code);
}

static void on_duration(void *ud, const char *spec)
{
    assert_ptr_equal(ud, hook_log);
    log_add("duration %s;", spec);
}

static void on_disconnect(void *ud)
{
    assert_ptr_equal(ud, hook_log);
    log_add("disconnect;");
}

static void on_reboot(void *ud, int64_t timeout_ns, const char *command)
{
    assert_ptr_equal(ud, hook_log);
    log_add("reboot %lld [%s];", (long long)(timeout_ns / ATX_NSEC_PER_SEC), command);
}

static const fmf_control_hooks hooks = {
    .ud = hook_log, .exitcode = on_exitcode, .duration = on_duration, .disconnect = on_disconnect,
    .reboot = on_reboot
};

/* ---- running ---- */

static fmf_control *start(void)
{
    fmf_control *c = NULL;
    hook_log[0] = '\0';
    assert_int_equal(fmf_control_new(attempt, &hooks, &c), 0);
    assert_non_null(c);
    return c;
}

/* Feed @b in chunks of @chunk bytes (0: all at once); return the first error. */
static int feed_chunks(fmf_control *c, const sbuf *b, size_t chunk)
{
    int first = 0;
    size_t step = chunk ? chunk : (b->len ? b->len : 1);

    for (size_t off = 0; off < b->len; off += step) {
        size_t n = b->len - off < step ? b->len - off : step;
        int r = fmf_control_feed(c, b->p + off, n);
        if (r < 0) {
            assert_int_equal(first, 0); /* negative once only */
            first = r;
        }
    }
    return first;
}

/* Feed the whole stream, then finish as an exit with @exit_code. */
static fmf_control *run(const sbuf *b, int exit_code)
{
    fmf_control *c = start();
    feed_chunks(c, b, 0);
    assert_int_equal(fmf_control_finish(c, exit_code, FMF_END_EXITED, NULL, output_file), 0);
    return c;
}

/* ---- checking ---- */

static char *read_file(const char *rel, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", attempt, rel);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    sbuf b = { 0 };
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        sb_add(&b, buf, n);
    fclose(f);
    if (!b.p)
        sb_add(&b, "", 0);
    *len = b.len;
    return b.p;
}

static void expect_file(const char *rel, const void *want, size_t want_len)
{
    size_t len = 0;
    char *got = read_file(rel, &len);
    if (!got)
        fail_msg("%s/%s is missing", attempt, rel);
    if (len != want_len || memcmp(got, want, len) != 0)
        fail_msg("%s: %zu bytes, want %zu", rel, len, want_len);
    free(got);
}

static void expect_no_file(const char *rel)
{
    char path[1024];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", attempt, rel);
    if (lstat(path, &st) == 0)
        fail_msg("%s should not exist", rel);
}

/* files/<rel> is the test output (a copy of it: the output's file is
 * rewritten for the next test). */
static void expect_output_link(const char *rel)
{
    char path[1024];
    struct stat a, b;
    snprintf(path, sizeof(path), "%s/%s", attempt, rel);
    assert_int_equal(stat(path, &a), 0);
    assert_int_equal(stat(output_file, &b), 0);
    assert_false(a.st_ino == b.st_ino && a.st_dev == b.st_dev);
    expect_file(rel, output_text, OUTPUT_LEN);
}

static int count_entries;
static int count_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)path;
    (void)st;
    (void)flag;
    if (ftw->level > 0)
        count_entries++;
    return 0;
}

static int files_count(void)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/files", attempt);
    count_entries = 0;
    assert_int_equal(nftw(path, count_entry, 16, FTW_PHYS), 0);
    return count_entries;
}

/*
 * `results` holds exactly the JSON objects @want (NULL-terminated), one per
 * line, each ending with a newline; the parser's own view agrees.
 */
static void expect_results_v(fmf_control *c, const char *const *want)
{
    size_t len = 0, n = 0;
    char *text = read_file("results", &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    char *p = text;
    for (; want[n]; n++) {
        char *nl = strchr(p, '\n');
        if (!nl)
            fail_msg("results: line %zu missing, want %s", n + 1, want[n]);
        *nl = '\0';
        json_object *got = json_tokener_parse(p), *exp = json_tokener_parse(want[n]);
        assert_non_null(exp);
        if (!got || !json_object_equal(got, exp))
            fail_msg("results line %zu: got %s, want %s", n + 1, p, want[n]);
        assert_true(json_object_is_type(got, json_type_object));
        if (c) {
            assert_string_equal(fmf_control_result_line(c, n), p);
            assert_true(json_object_equal((json_object *)fmf_control_result(c, n), exp));
        }
        json_object_put(got);
        json_object_put(exp);
        p = nl + 1;
    }
    if (*p)
        fail_msg("results: unexpected extra line %s", p);
    if (c) {
        assert_int_equal(fmf_control_result_count(c), n);
        assert_null(fmf_control_result_line(c, n));
        assert_null(fmf_control_result(c, n));
        assert_null(fmf_control_result_paths(c, n));
    }
    free(text);
}

#define expect_results(c, ...) expect_results_v((c), (const char *const[]){ __VA_ARGS__, NULL })
#define expect_no_results(c) expect_results_v((c), (const char *const[]){ NULL })

/* The paths of result @i are exactly @want (NULL-terminated). */
static void expect_paths_v(fmf_control *c, size_t i, const char *const *want)
{
    const char *const *got = fmf_control_result_paths(c, i);
    size_t k = 0;
    assert_non_null(got);
    for (; want[k]; k++) {
        if (!got[k])
            fail_msg("result %zu: path %zu missing, want %s", i, k, want[k]);
        assert_string_equal(got[k], want[k]);
    }
    if (got[k])
        fail_msg("result %zu: extra path %s", i, got[k]);
}

#define expect_paths(c, i, ...) expect_paths_v((c), (i), (const char *const[]){ __VA_ARGS__, NULL })
#define expect_no_paths(c, i) expect_paths_v((c), (i), (const char *const[]){ NULL })

static void expect_error(fmf_control *c, const char *part)
{
    const char *e = fmf_control_error(c);
    if (!e)
        fail_msg("no protocol error, want one with '%s'", part);
    if (!strstr(e, part))
        fail_msg("error '%s' does not contain '%s'", e, part);
}

/* ---- basic results ---- */

static void test_noresult_pass(void **state)
{
    (void)state;
    sbuf b = { 0 };
    fmf_control *c = run(&b, 0);
    expect_results(c, "{\"status\": \"pass\", \"files\": [\"output.txt\"]}");
    expect_paths(c, 0, "files/output.txt");
    expect_output_link("files/output.txt");
    assert_null(fmf_control_error(c));
    assert_int_equal(files_count(), 1);
    fmf_control_free(c);
}

static void test_noresult_fail(void **state)
{
    (void)state;
    sbuf b = { 0 };
    sb_str(&b, "noop\n");
    fmf_control *c = run(&b, 3);
    expect_results(c, "{\"status\": \"fail\", \"files\": [\"output.txt\"]}");
    expect_output_link("files/output.txt");
    fmf_control_free(c);
    rm_rf(attempt);

    /* No exit code at all counts as a failure too. */
    c = run(&b, -1);
    expect_results(c, "{\"status\": \"fail\", \"files\": [\"output.txt\"]}");
    fmf_control_free(c);
    sb_free(&b);
}

static void test_trivial(void **state)
{
    (void)state;
    sbuf b = { 0 };
    sb_result(&b, "{\"status\": \"pass\"}", NULL, 0);
    fmf_control *c = run(&b, 1); /* the reported result wins over the exit code */
    expect_results(c, "{\"status\": \"pass\"}");
    expect_no_paths(c, 0);
    assert_int_equal(files_count(), 0);
    fmf_control_free(c);
    sb_free(&b);
}

static void test_multiline_and_repeated(void **state)
{
    (void)state;
    sbuf b = { 0 };
    sb_result(&b, "{\n  \"status\": \"pass\"\n}\n", NULL, 0);
    sb_result(&b, "{\"status\": \"fail\"}", NULL, 0);
    fmf_control *c = run(&b, 0);
    expect_results(c, "{\"status\": \"pass\"}", "{\"status\": \"fail\"}");
    fmf_control_free(c);
    sb_free(&b);
}

static void test_empty_and_custom(void **state)
{
    (void)state;
    sbuf b = { 0 };
    sb_result(&b, "{}", NULL, 0);
    sb_result(&b, "{\"attr1\": \"value1\", \"name\": \"x\"}", NULL, 0);
    sb_result(&b, "{\"status\": \"whatever\", \"name\": \"y\", \"custom_number\": 123, \"f\": 1.50,"
                  " \"custom_list\": [1, 2, 3], \"o\": {\"k\": \"v\"}, \"n\": null, \"b\": false,"
                  " \"u\": \"\\u00e9\\u0000/\"}", NULL, 0);
    fmf_control *c = run(&b, 0);
    expect_results(c, "{}", "{\"attr1\": \"value1\", \"name\": \"x\"}",
                   "{\"status\": \"whatever\", \"name\": \"y\", \"custom_number\": 123, \"f\": 1.50,"
                   " \"custom_list\": [1, 2, 3], \"o\": {\"k\": \"v\"}, \"n\": null, \"b\": false,"
                   " \"u\": \"\\u00e9\\u0000/\"}");
    /* Nothing is added: no "name": null, no files key. */
    assert_string_equal(fmf_control_result_line(c, 0), "{}");
    fmf_control_free(c);
    sb_free(&b);
}

static void test_subtests(void **state)
{
    (void)state;
    sbuf b = { 0 };
    sb_result(&b, "{\"status\": \"fail\", \"name\": \"sub/res/ult\"}", NULL, 0);
    sb_result(&b, "{\"name\": \"subtest\"}", NULL, 0);
    fmf_control *c = run(&b, 0);
    /* No result of its own: the fallback comes last. */
    expect_results(c, "{\"status\": \"fail\", \"name\": \"sub/res/ult\"}", "{\"name\": \"subtest\"}",
                   "{\"status\": \"pass\", \"files\": [\"output.txt\"]}");
    expect_paths(c, 2, "files/output.txt");
    fmf_control_free(c);
    sb_free(&b);
}

/* ---- files ---- */

static void test_files(void **state)
{
    (void)state;
    sbuf b = { 0 };
    static const char bin[] = "\x00\x10\x20\x30\x40";
    sb_result(&b, "{\"status\": \"pass\", \"files\": [{\"name\": \"some_file\", \"length\": 5}]}", bin, 5);
    sb_result(&b, "{\"name\": \"sub/res/ult\", \"files\": [{\"name\": \"some/file\", \"length\": 5}]}",
              bin, 5);
    /* Sorted, de-duplicated, appended; a zero-length file exists. */
    sb_result(&b, "{\"name\": \"s\", \"files\": [{\"name\": \"file_C\", \"length\": 2},"
                  " {\"name\": \"file_A\", \"length\": 2}, {\"name\": \"empty\", \"length\": 0},"
                  " {\"name\": \"file_C\", \"length\": 3}, {\"name\": \"./file_A\", \"length\": 1}]}",
              "\x00\x10\x20\x30\x40\x50\x60\x70", 8);
    sb_result(&b, "{\"name\": \"e\", \"files\": []}", NULL, 0);
    fmf_control *c = run(&b, 0);
    expect_results(c, "{\"status\": \"pass\", \"files\": [\"some_file\"]}",
                   "{\"name\": \"sub/res/ult\", \"files\": [\"some/file\"]}",
                   "{\"name\": \"s\", \"files\": [\"empty\", \"file_A\", \"file_C\"]}",
                   "{\"name\": \"e\", \"files\": []}");
    expect_paths(c, 0, "files/some_file");
    expect_paths(c, 1, "files/sub/res/ult/some/file");
    expect_paths(c, 2, "files/s/empty", "files/s/file_A", "files/s/file_C");
    expect_no_paths(c, 3);
    expect_file("files/some_file", bin, 5);
    expect_file("files/sub/res/ult/some/file", bin, 5);
    expect_file("files/s/file_C", "\x00\x10\x40\x50\x60", 5);
    expect_file("files/s/file_A", "\x20\x30\x70", 3);
    expect_file("files/s/empty", "", 0);
    expect_no_file("files/output.txt");
    fmf_control_free(c);
    sb_free(&b);
}

static void test_files_across_results(void **state)
{
    (void)state;
    sbuf b = { 0 };
    /* A repeated name in a later result of the same name appends too. */
    sb_result(&b, "{\"status\": \"fail\", \"files\": [{\"name\": \"log\", \"length\": 2}]}", "ab", 2);
    sb_result(&b, "{\"status\": \"pass\", \"files\": [{\"name\": \"log\", \"length\": 3}]}", "cde", 3);
    fmf_control *c = run(&b, 0);
    expect_results(c, "{\"status\": \"fail\", \"files\": [\"log\"]}",
                   "{\"status\": \"pass\", \"files\": [\"log\"]}");
    expect_file("files/log", "abcde", 5);
    fmf_control_free(c);
    sb_free(&b);
}

static void test_path_normalisation(void **state)
{
    (void)state;
    sbuf b = { 0 };
    sb_result(&b, "{\"name\": \"/../sub//./x/..\", \"files\": [{\"name\": \"/abs/../a/./b\", \"length\": 1},"
                  " {\"name\": \"c\\u0001d\\n\\u0085e\\u007f\", \"length\": 1},"
                  " {\"name\": \"..\\\\x\", \"length\": 1}]}", "123", 3);
    sb_result(&b, "{\"name\": \"a\\u0000b\", \"partial\": \"\", \"files\": [{\"name\": \"f\", \"length\": 1}]}", "5", 1);
    /* A subtest name with nothing left uses the test's own folder. */
    sb_result(&b, "{\"name\": \"/./..\", \"files\": [{\"name\": \"top\", \"length\": 1}]}", "4", 1);
    sb_result(&b, "{}", NULL, 0);
    fmf_control *c = run(&b, 0);
    /* ("partial": "" is false, as in Python) */
    expect_results(c, "{\"name\": \"/../sub//./x/..\", \"files\": [\"..\\\\x\", \"abs/a/b\", \"c_d__e_\"]}",
                   "{\"name\": \"a\\u0000b\", \"files\": [\"f\"]}",
                   "{\"name\": \"/./..\", \"files\": [\"top\"]}", "{}");
    /* ".." is dropped, not resolved: "abs/../a" is "abs/a". */
    expect_paths(c, 0, "files/sub/x/..\\x", "files/sub/x/abs/a/b", "files/sub/x/c_d__e_");
    expect_paths(c, 1, "files/a_b/f");
    expect_paths(c, 2, "files/top");
    expect_file("files/sub/x/abs/a/b", "1", 1);
    expect_file("files/sub/x/c_d__e_", "2", 1);
    expect_file("files/sub/x/..\\x", "3", 1);
    expect_file("files/top", "4", 1);
    fmf_control_free(c);
    sb_free(&b);
}

static void test_big_file(void **state)
{
    (void)state;
    size_t n = 8u << 20;
    char *data = malloc(n);
    assert_non_null(data);
    for (size_t i = 0; i < n; i++)
        data[i] = (char)(i * 7 + (i >> 13));
    sbuf b = { 0 };
    char json[128];
    snprintf(json, sizeof(json), "{\"files\": [{\"name\": \"big.bin\", \"length\": %zu}]}", n);
    sb_result(&b, json, data, n);
    sb_result(&b, "{\"status\": \"pass\"}", NULL, 0);
    fmf_control *c = start();
    assert_int_equal(feed_chunks(c, &b, 65536 + 3), 0);
    assert_int_equal(fmf_control_finish(c, 0, FMF_END_EXITED, NULL, output_file), 0);
    expect_results(c, "{\"files\": [\"big.bin\"]}", "{\"status\": \"pass\"}");
    expect_file("files/big.bin", data, n);
    fmf_control_free(c);
    sb_free(&b);
    free(data);
}

/* ---- partial results ---- */

static void test_partial_basic(void **state)
{
    (void)state;
    sbuf b = { 0 };
    sb_result(&b, "{\"status\": \"fail\", \"partial\": true}", NULL, 0);
    sb_result(&b, "{\"status\": \"pass\"}", NULL, 0);
    fmf_control *c = run(&b, 1);
    expect_results(c, "{\"status\": \"pass\"}");
    assert_int_equal(files_count(), 0);
    fmf_control_free(c);
    sb_free(&b);

    sb_result(&b, "{\"status\": \"fail\", \"partial\": true}", NULL, 0);
    sb_result(&b, "{\"status\": \"pass\", \"partial\": false}", NULL, 0);
    c = run(&b, 1);
    expect_results(c, "{\"status\": \"pass\"}");
    fmf_control_free(c);
    sb_free(&b);
}

static void test_partial_merging(void **state)
{
    (void)state;
    sbuf b = { 0 };
    sb_result(&b, "{\"status\": \"fail\", \"partial\": true, \"attr1\": \"value1\", \"gone\": 1,"
                  " \"custom_string\": \"first\", \"custom_number\": 123, \"custom_list\": [1, 2, 3],"
                  " \"obj\": {\"first key\": \"first value\", \"deep\": {\"a\": [1], \"x\": 1}},"
                  " \"retyped\": [1], \"flag\": true, \"kept\": null}", NULL, 0);
    sb_result(&b, "{\"status\": \"error\", \"partial\": 1, \"attr2\": \"value2\", \"gone\": null,"
                  " \"never\": null, \"custom_list\": [4], \"retyped\": {\"now\": \"object\"}}", NULL, 0);
    sb_result(&b, "{\"status\": \"pass\", \"custom_string\": \"second\", \"custom_number\": 456,"
                  " \"custom_list\": [5, 6], \"obj\": {\"second key\": \"second value\","
                  " \"deep\": {\"a\": [2], \"x\": null, \"y\": 2}}, \"flag\": false}", NULL, 0);
    fmf_control *c = run(&b, 0);
    expect_results(c, "{\"status\": \"pass\", \"attr1\": \"value1\", \"custom_string\": \"second\","
                      " \"custom_number\": 456, \"custom_list\": [1, 2, 3, 4, 5, 6],"
                      " \"obj\": {\"first key\": \"first value\", \"deep\": {\"a\": [1, 2], \"y\": 2},"
                      " \"second key\": \"second value\"}, \"retyped\": {\"now\": \"object\"},"
                      " \"flag\": false, \"kept\": null, \"attr2\": \"value2\"}");
    fmf_control_free(c);
    sb_free(&b);
}

static void test_partial_subtests_order(void **state)
{
    (void)state;
    sbuf b = { 0 };
    sb_result(&b, "{\"status\": \"fail\", \"name\": \"sub1\", \"partial\": true}", NULL, 0);
    sb_result(&b, "{\"status\": \"error\", \"name\": \"sub2\", \"partial\": true}", NULL, 0);
    sb_result(&b, "{\"status\": \"info\", \"name\": \"sub3\", \"partial\": true}", NULL, 0);
    sb_result(&b, "{\"status\": \"pass\", \"name\": \"sub1\"}", NULL, 0);
    sb_result(&b, "{\"note\": \"later\", \"name\": \"sub3\", \"partial\": true}", NULL, 0);
    sb_result(&b, "{\"status\": \"warn\", \"name\": \"sub1\", \"partial\": true}", NULL, 0);
    sb_result(&b, "{\"status\": \"pass\"}", NULL, 0);
    fmf_control *c = run(&b, 0);
    /* Pending ones at the end, in the order they first appeared. */
    expect_results(c, "{\"status\": \"pass\", \"name\": \"sub1\"}", "{\"status\": \"pass\"}",
                   "{\"status\": \"error\", \"name\": \"sub2\"}",
                   "{\"status\": \"info\", \"name\": \"sub3\", \"note\": \"later\"}",
                   "{\"status\": \"warn\", \"name\": \"sub1\"}");
    fmf_control_free(c);
    sb_free(&b);
}

static void test_partial_files(void **state)
{
    (void)state;
    sbuf b = { 0 };
    sb_result(&b, "{\"status\": \"fail\", \"partial\": true, \"files\": [{\"name\": \"second\", \"length\": 2},"
                  " {\"name\": \"one\", \"length\": 1}]}", "\x00\x10" "a", 3);
    sb_result(&b, "{\"partial\": true, \"files\": [{\"name\": \"first\", \"length\": 1}]}", "b", 1);
    sb_result(&b, "{\"status\": \"pass\", \"files\": [{\"name\": \"one\", \"length\": 3}]}", "\x20\x30\x40", 3);
    fmf_control *c = run(&b, 0);
    expect_results(c, "{\"status\": \"pass\", \"files\": [\"first\", \"one\", \"second\"]}");
    expect_paths(c, 0, "files/first", "files/one", "files/second");
    expect_file("files/one", "a\x20\x30\x40", 4);
    expect_file("files/second", "\x00\x10", 2);
    expect_file("files/first", "b", 1);
    fmf_control_free(c);
    sb_free(&b);
}

/* ---- testout ---- */

static void test_testout(void **state)
{
    (void)state;
    sbuf b = { 0 };
    sb_result(&b, "{\"status\": \"pass\", \"testout\": \"here.txt\","
                  " \"files\": [{\"name\": \"b\", \"length\": 1}, {\"name\": \"a\", \"length\": 1}]}", "BA", 2);
    fmf_control *c = run(&b, 0);
    /* The output comes first, then the sorted rest; no output.txt. */
    expect_results(c, "{\"status\": \"pass\", \"files\": [\"here.txt\", \"a\", \"b\"]}");
    expect_paths(c, 0, "files/here.txt", "files/a", "files/b");
    expect_output_link("files/here.txt");
    expect_no_file("files/output.txt");
    fmf_control_free(c);
    sb_free(&b);
}

static void test_testout_partial_and_multiple(void **state)
{
    (void)state;
    sbuf b = { 0 };
    sb_result(&b, "{\"status\": \"fail\", \"testout\": \"here.txt\", \"partial\": true}", NULL, 0);
    sb_result(&b, "{\"status\": \"pass\", \"testout\": \"there.txt\"}", NULL, 0);
    sb_result(&b, "{\"status\": \"info\", \"testout\": \"again.txt\"}", NULL, 0);
    fmf_control *c = run(&b, 0);
    expect_results(c, "{\"status\": \"pass\", \"files\": [\"there.txt\"]}",
                   "{\"status\": \"info\", \"files\": [\"again.txt\"]}");
    expect_output_link("files/there.txt");
    expect_output_link("files/again.txt");
    /* Two copies, each a file of one name (an upload refuses second names). */
    char p1[1024], p2[1024];
    struct stat s1, s2;
    snprintf(p1, sizeof(p1), "%s/files/there.txt", attempt);
    snprintf(p2, sizeof(p2), "%s/files/again.txt", attempt);
    assert_int_equal(stat(p1, &s1), 0);
    assert_int_equal(stat(p2, &s2), 0);
    assert_true(s1.st_ino != s2.st_ino);
    assert_int_equal(s1.st_nlink, 1);
    assert_int_equal(s2.st_nlink, 1);
    expect_no_file("files/here.txt");
    expect_no_file("files/output.txt");
    fmf_control_free(c);
    sb_free(&b);
}

static void test_testout_subtest(void **state)
{
    (void)state;
    sbuf b = { 0 };
    sb_result(&b, "{\"status\": \"fail\", \"name\": \"subtest\", \"testout\": \"out.txt\"}", NULL, 0);
    fmf_control *c = run(&b, 0);
    /* Listed by its own name (ATEX lists "subtest/out.txt", which resolves wrongly). */
    expect_results(c, "{\"status\": \"fail\", \"name\": \"subtest\", \"files\": [\"out.txt\"]}",
                   "{\"status\": \"pass\", \"files\": [\"output.txt\"]}");
    expect_paths(c, 0, "files/subtest/out.txt");
    expect_output_link("files/subtest/out.txt");
    expect_output_link("files/output.txt");
    fmf_control_free(c);
    sb_free(&b);
}

static void test_testout_without_output(void **state)
{
    (void)state;
    fmf_control *c = start();
    assert_int_equal(fmf_control_finish(c, 0, FMF_END_EXITED, NULL, NULL), 0);
    expect_results(c, "{\"status\": \"pass\", \"files\": [\"output.txt\"]}");
    expect_file("files/output.txt", "", 0);
    fmf_control_free(c);
}

/* Where a hard link cannot be made (another file system), the output is copied. */
static void test_testout_copied(void **state)
{
    (void)state;
    char other[256];
    struct stat a, b;
    snprintf(other, sizeof(other), "/dev/shm/atx-control-out-%ld", (long)getpid());
    FILE *f = fopen(other, "wb");
    if (!f || stat(other, &a) < 0 || stat(tmp_root, &b) < 0 || a.st_dev == b.st_dev) {
        if (f)
            fclose(f);
        unlink(other);
        skip();
    }
    fwrite("copied\0", 1, 7, f);
    fclose(f);
    fmf_control *c = start();
    assert_int_equal(fmf_control_finish(c, 0, FMF_END_EXITED, NULL, other), 0);
    expect_results(c, "{\"status\": \"pass\", \"files\": [\"output.txt\"]}");
    expect_file("files/output.txt", "copied\0", 7);
    unlink(other);
    fmf_control_free(c);
}

static void test_testout_errors(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        size_t payload;
        const char *error;
    } cases[] = {
        { "{\"status\": \"pass\", \"testout\": \"\"}", 0, "\"testout\" must be a non-empty string" },
        { "{\"status\": \"pass\", \"testout\": null}", 0, "\"testout\" must be a non-empty string" },
        { "{\"status\": \"pass\", \"testout\": 5}", 0, "\"testout\" must be a non-empty string" },
        { "{\"status\": \"pass\", \"testout\": \"/./\"}", 0, "testout '/./' names no file" },
        { "{\"testout\": \"log\", \"files\": [{\"name\": \"log\", \"length\": 1}]}", 1,
          "testout 'log': files/log already exists" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sbuf b = { 0 };
        sb_result(&b, cases[i].json, "xxxxxxxx", cases[i].payload);
        fmf_control *c = start();
        assert_int_equal(feed_chunks(c, &b, 0), ATX_EPARSE);
        expect_error(c, cases[i].error);
        assert_int_equal(fmf_control_finish(c, 0, FMF_END_EXITED, NULL, output_file), 0);
        /* The broken result is not written; the fallback says why. */
        json_object *got = (json_object *)fmf_control_result(c, 0);
        assert_int_equal(fmf_control_result_count(c), 1);
        json_object *v;
        assert_true(json_object_object_get_ex(got, "status", &v));
        assert_string_equal(json_object_get_string(v), "infra");
        assert_true(json_object_object_get_ex(got, "note", &v));
        assert_non_null(strstr(json_object_get_string(v), cases[i].error));
        fmf_control_free(c);
        sb_free(&b);
        rm_rf(attempt);
    }

    /* An upload into a path where the output is linked is refused. */
    sbuf b = { 0 };
    sb_result(&b, "{\"name\": \"s\", \"testout\": \"log\"}", NULL, 0);
    sb_result(&b, "{\"name\": \"s\", \"files\": [{\"name\": \"log\", \"length\": 1}]}", "x", 1);
    fmf_control *c = start();
    assert_int_equal(feed_chunks(c, &b, 0), ATX_EPARSE);
    expect_error(c, "files/s/log is where the test output is linked");
    assert_int_equal(fmf_control_finish(c, 0, FMF_END_EXITED, NULL, output_file), 0);
    expect_output_link("files/s/log");
    fmf_control_free(c);
    sb_free(&b);
}

/* ---- the fallback result ---- */

static void test_fallback_end_kinds(void **state)
{
    (void)state;
    static const struct {
        fmf_end_kind end;
        const char *note_in, *note_out;
    } cases[] = {
        { FMF_END_TIMEOUT, "test duration timeout reached (5m)", "test duration timeout reached (5m)" },
        { FMF_END_TIMEOUT, NULL, "the test timed out" },
        { FMF_END_LOST, "ssh connection lost", "ssh connection lost" },
        { FMF_END_LOST, "", "the system was lost" },
        { FMF_END_INTERRUPTED, NULL, "the run was interrupted" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fmf_control *c = start();
        assert_int_equal(fmf_control_feed(c, "noop\n", 5), 0);
        assert_int_equal(fmf_control_finish(c, 0, cases[i].end, cases[i].note_in, output_file), 0);
        char want[256];
        snprintf(want, sizeof(want), "{\"status\": \"infra\", \"note\": \"%s\", \"files\": [\"output.txt\"]}",
                 cases[i].note_out);
        expect_results(c, want);
        expect_output_link("files/output.txt");
        fmf_control_free(c);
        rm_rf(attempt);
    }
}

static void test_fallback_protocol_error(void **state)
{
    (void)state;
    fmf_control *c = start();
    assert_int_equal(fmf_control_feed(c, "noop\nbogus 1\nnoop\n", 18), ATX_EPARSE);
    assert_int_equal(fmf_control_feed(c, "result 2\n{}", 11), 0); /* ignored */
    assert_int_equal(fmf_control_finish(c, 0, FMF_END_TIMEOUT, "timed out", output_file), 0);
    expect_results(c, "{\"status\": \"infra\", \"note\": \"test control: unknown control word 'bogus';"
                      " timed out\", \"files\": [\"output.txt\"]}");
    fmf_control_free(c);
}

static void test_fallback_not_after_own_result(void **state)
{
    (void)state;
    sbuf b = { 0 };
    sb_result(&b, "{\"status\": \"pass\"}", NULL, 0);
    sb_str(&b, "junk\n");
    fmf_control *c = start();
    assert_int_equal(feed_chunks(c, &b, 0), ATX_EPARSE);
    assert_int_equal(fmf_control_finish(c, -1, FMF_END_TIMEOUT, "timeout", output_file), 0);
    expect_results(c, "{\"status\": \"pass\"}");
    expect_error(c, "unknown control word 'junk'");
    assert_int_equal(files_count(), 0);
    fmf_control_free(c);
    sb_free(&b);
}

static void test_fallback_merges_partial(void **state)
{
    (void)state;
    sbuf b = { 0 };
    /* The partial's status is kept; the output is added; its place is kept. */
    sb_result(&b, "{\"status\": \"warn\", \"partial\": true, \"note\": \"n\"}", NULL, 0);
    sb_result(&b, "{\"status\": \"error\", \"name\": \"sub\", \"partial\": true}", NULL, 0);
    fmf_control *c = run(&b, 1);
    expect_results(c, "{\"status\": \"warn\", \"note\": \"n\", \"files\": [\"output.txt\"]}",
                   "{\"status\": \"error\", \"name\": \"sub\"}");
    expect_output_link("files/output.txt");
    fmf_control_free(c);
    rm_rf(attempt);

    /* A partial without a status: from the exit code. */
    sb_free(&b);
    sb_result(&b, "{\"partial\": true, \"files\": [{\"name\": \"log\", \"length\": 1}]}", "L", 1);
    c = run(&b, 2);
    expect_results(c, "{\"files\": [\"output.txt\", \"log\"], \"status\": \"fail\"}");
    fmf_control_free(c);
    rm_rf(attempt);

    /* Infra overrides the partial's status and note. */
    c = start();
    assert_int_equal(feed_chunks(c, &b, 0), 0);
    assert_int_equal(fmf_control_finish(c, 0, FMF_END_LOST, "gone", output_file), 0);
    expect_results(c, "{\"files\": [\"output.txt\", \"log\"], \"status\": \"infra\", \"note\": \"gone\"}");
    fmf_control_free(c);
    rm_rf(attempt);
    sb_free(&b);

    /* A partial with its own testout keeps it and gets no output.txt. */
    sb_result(&b, "{\"status\": \"fail\", \"partial\": true, \"testout\": \"mine.log\"}", NULL, 0);
    c = run(&b, 0);
    expect_results(c, "{\"status\": \"fail\", \"files\": [\"mine.log\"]}");
    expect_output_link("files/mine.log");
    expect_no_file("files/output.txt");
    fmf_control_free(c);
    rm_rf(attempt);
    sb_free(&b);

    /* A partial that lists output.txt itself: that file, no link. */
    sb_result(&b, "{\"partial\": true, \"files\": [{\"name\": \"./output.txt\", \"length\": 3}]}", "own", 3);
    c = run(&b, 0);
    expect_results(c, "{\"files\": [\"output.txt\"], \"status\": \"pass\"}");
    expect_file("files/output.txt", "own", 3);
    fmf_control_free(c);
    sb_free(&b);
}

/* settle: notes which own results it saw and marks them; a held own is written last. */
static int on_settle(void *ud, const fmf_control *c, json_object *own, int from_exit)
{
    assert_ptr_equal(ud, hook_log);
    json_object *s = NULL;
    json_object_object_get_ex(own, "status", &s);
    log_add("settle %s %d %zu;", s ? json_object_get_string(s) : "-", from_exit,
            fmf_control_result_count(c));
    json_object_object_add(own, "note", json_object_new_string("settled"));
    return 0;
}

static fmf_control *start_settled(int hold)
{
    fmf_control_hooks h = hooks;
    fmf_control *c = NULL;
    h.settle = on_settle;
    h.hold_own = hold;
    hook_log[0] = '\0';
    assert_int_equal(fmf_control_new(attempt, &h, &c), 0);
    return c;
}

static void test_settle_and_hold_own(void **state)
{
    (void)state;
    sbuf b = { 0 };
    /* Not held: the own result is written when it comes, never settled. */
    sb_result(&b, "{\"status\": \"fail\"}", NULL, 0);
    sb_result(&b, "{\"name\": \"a\", \"status\": \"pass\"}", NULL, 0);
    fmf_control *c = start_settled(0);
    assert_int_equal(feed_chunks(c, &b, 0), 0);
    assert_int_equal(fmf_control_finish(c, 0, FMF_END_EXITED, NULL, output_file), 0);
    expect_results(c, "{\"status\": \"fail\"}", "{\"name\": \"a\", \"status\": \"pass\"}");
    assert_string_equal(hook_log, "");
    fmf_control_free(c);
    rm_rf(attempt);

    /* Held: written last, settled; an earlier one is written as a later one comes. */
    sb_result(&b, "{\"status\": \"warn\", \"testout\": \"out.log\"}", NULL, 0);
    c = start_settled(1);
    assert_int_equal(feed_chunks(c, &b, 0), 0);
    assert_int_equal(fmf_control_finish(c, 1, FMF_END_EXITED, NULL, output_file), 0);
    expect_results(c, "{\"name\": \"a\", \"status\": \"pass\"}", "{\"status\": \"fail\"}",
                   "{\"status\": \"warn\", \"files\": [\"out.log\"], \"note\": \"settled\"}");
    assert_string_equal(hook_log, "settle warn 0 2;");
    expect_output_link("files/out.log");
    fmf_control_free(c);
    rm_rf(attempt);
    sb_free(&b);

    /* The fallback: settled, from the exit code unless a partial gave the status. */
    sb_result(&b, "{\"name\": \"a\", \"status\": \"pass\"}", NULL, 0);
    c = start_settled(1);
    assert_int_equal(feed_chunks(c, &b, 0), 0);
    assert_int_equal(fmf_control_finish(c, 1, FMF_END_EXITED, NULL, output_file), 0);
    expect_results(c, "{\"name\": \"a\", \"status\": \"pass\"}",
                   "{\"status\": \"fail\", \"files\": [\"output.txt\"], \"note\": \"settled\"}");
    assert_string_equal(hook_log, "settle fail 1 1;");
    fmf_control_free(c);
    rm_rf(attempt);
    sb_free(&b);
    sb_result(&b, "{\"status\": \"info\", \"partial\": true}", NULL, 0);
    c = start_settled(0);
    assert_int_equal(feed_chunks(c, &b, 0), 0);
    assert_int_equal(fmf_control_finish(c, 1, FMF_END_EXITED, NULL, output_file), 0);
    expect_results(c, "{\"status\": \"info\", \"files\": [\"output.txt\"], \"note\": \"settled\"}");
    assert_string_equal(hook_log, "settle info 0 0;");
    fmf_control_free(c);
    sb_free(&b);
}

static void test_fallback_output_taken(void **state)
{
    (void)state;
    sbuf b = { 0 };
    /* A subtest whose folder is the test's own took output.txt. */
    sb_result(&b, "{\"name\": \".\", \"files\": [{\"name\": \"output.txt\", \"length\": 1}]}", "x", 1);
    fmf_control *c = run(&b, 0);
    expect_results(c, "{\"name\": \".\", \"files\": [\"output.txt\"]}",
                   "{\"status\": \"pass\", \"files\": [\"output-2.txt\"]}");
    expect_file("files/output.txt", "x", 1);
    expect_output_link("files/output-2.txt");
    fmf_control_free(c);
    sb_free(&b);
    rm_rf(attempt);

    /* Data of a broken upload is left on disk; the output still gets linked. */
    sb_result(&b, "{\"files\": [{\"name\": \"output.txt\", \"length\": 10}]}", "abc", 3);
    c = start();
    assert_int_equal(feed_chunks(c, &b, 0), 0);
    assert_int_equal(fmf_control_finish(c, 0, FMF_END_EXITED, NULL, output_file), 0);
    expect_error(c, "result: file files/output.txt: expected 10 bytes, stream ended after 3");
    json_object *r = (json_object *)fmf_control_result(c, 0), *v;
    assert_int_equal(fmf_control_result_count(c), 1);
    assert_true(json_object_object_get_ex(r, "files", &v));
    assert_string_equal(json_object_get_string(json_object_array_get_idx(v, 0)), "output-2.txt");
    expect_output_link("files/output-2.txt");
    fmf_control_free(c);
    sb_free(&b);
}

/* ---- control words and hooks ---- */

static void test_control_words(void **state)
{
    (void)state;
    sbuf b = { 0 };
    sb_str(&b, "noop\nnoop extra words\nexitcode 3\nexitcode -1\nexitcode +0\nduration 5m\n"
               "duration 90\nduration +1m\nduration -30s\nduration 2d\nduration 1h\nduration save\n"
               "duration restore\ndisconnect\ndisconnect now\nreboot -\nreboot 60 \n"
               "reboot 5 systemctl kexec --force\n");
    fmf_control *c = start();
    assert_int_equal(feed_chunks(c, &b, 1), 0);
    assert_string_equal(hook_log, "exitcode 3;exitcode -1;exitcode 0;duration 5m;duration 90;"
                                  "duration +1m;duration -30s;duration 2d;duration 1h;duration save;"
                                  "duration restore;disconnect;disconnect;reboot 0 [];reboot 60 [];"
                                  "reboot 5 [systemctl kexec --force];");
    assert_null(fmf_control_error(c));
    fmf_control_free(c);

    /* Hooks may be missing. */
    c = NULL;
    assert_int_equal(fmf_control_new(attempt, NULL, &c), 0);
    assert_int_equal(feed_chunks(c, &b, 0), 0);
    fmf_control_free(c);
    sb_free(&b);
}

/* tmt-reboot's word: a bad timeout is a protocol error like any bad line. */
static void test_reboot_word_errors(void **state)
{
    (void)state;
    static const struct {
        const char *line, *error;
    } cases[] = {
        { "reboot\n", "reboot: '' is not TIMEOUT COMMAND" },
        { "reboot  reboot\n", "reboot: ' reboot' is not TIMEOUT COMMAND" },
        { "reboot 1m reboot\n", "reboot: the timeout '1m' is not a number of seconds" },
        { "reboot 0\n", "reboot: the timeout '0' is not a number of seconds" },
        { "reboot 86401\n", "reboot: the timeout '86401' is not a number of seconds" },
        { "reboot 99999999999999999999\n", "the timeout '99999999999999999999' is not a number" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fmf_control *c = start();
        assert_int_equal(fmf_control_feed(c, cases[i].line, strlen(cases[i].line)), ATX_EPARSE);
        expect_error(c, cases[i].error);
        assert_string_equal(hook_log, "");
        fmf_control_free(c);
    }
}

static void test_line_limits(void **state)
{
    (void)state;
    sbuf b = { 0 };
    char line[FMF_CONTROL_LINE_MAX + 2];

    /* 4095 bytes and the newline: the longest line. */
    memset(line, ' ', sizeof(line));
    memcpy(line, "noop", 4);
    line[FMF_CONTROL_LINE_MAX - 1] = '\n';
    sb_add(&b, line, FMF_CONTROL_LINE_MAX);
    fmf_control *c = start();
    assert_int_equal(feed_chunks(c, &b, 1000), 0);
    assert_null(fmf_control_error(c));
    fmf_control_free(c);
    sb_free(&b);

    /* One more byte is too long, found before the newline arrives. */
    line[FMF_CONTROL_LINE_MAX - 1] = ' ';
    sb_add(&b, line, FMF_CONTROL_LINE_MAX);
    c = start();
    assert_int_equal(feed_chunks(c, &b, 1), ATX_EPARSE);
    expect_error(c, "control line longer than 4095 bytes ('noop ");
    fmf_control_free(c);
    sb_free(&b);
}

static void test_protocol_errors(void **state)
{
    (void)state;
    /* With @json set, the stream is `result <its length>\n` + json + stream. */
    static const struct {
        const char *json, *stream;
        size_t len;
        const char *error;
    } cases[] = {
#define S(s) s, sizeof(s) - 1
#define J(j, s) j, s, sizeof(s) - 1
        { NULL, S("noop\nfoo\n"), "unknown control word 'foo'" },
        { NULL, S("Noop\n"), "unknown control word 'Noop'" },
        { NULL, S("noop\r\n"), "unknown control word 'noop\\x0d'" },
        { NULL, S("\n"), "empty control line" },
        { NULL, S("noop\n\n"), "empty control line" },
        { NULL, S(" noop\n"), "unknown control word ''" },
        { NULL, S("noop \xc3\xa9\n"), "non-ASCII byte 0xc3 in a control line, after 'noop '" },
        { NULL, S("\x80"), "non-ASCII byte 0x80 in a control line, after ''" },
        { NULL, S("result\n"), "result: '' is not a length in bytes" },
        { NULL, S("result x\n"), "result: 'x' is not a length in bytes" },
        { NULL, S("result -1\n"), "result: '-1' is not a length in bytes" },
        { NULL, S("result 1 \n"), "result: '1 ' is not a length in bytes" },
        { NULL, S("result 99999999999999999999999\n"), "is not a length in bytes" },
        { NULL, S("result 16777217\n"), "result: 16777217 bytes of JSON is over the limit of 16777216" },
        { NULL, S("result 0\n"), "result: bad JSON (it ends early, after 0 bytes)" },
        { J("{\"key_without_value\": ", ""), "result: bad JSON (it ends early, after 22 bytes)" },
        { J("{\"a\":}", ""), "result: bad JSON (unexpected character at byte 5)" },
        { J("{} x", ""), "result: bad JSON (data after the object at byte 3)" },
        { NULL, S("result 3\n{}\0"), "result: bad JSON (data after the object at byte 2)" },
        { J("{\"a\":1,}", ""), "result: bad JSON" },
        { J("{\"a\":\"\xff\"}", ""), "result: bad JSON (invalid utf-8 string" },
        { J("[1]", ""), "result: the JSON is array, not an object" },
        { J("\"a\"", ""), "result: the JSON is string, not an object" },
        { J("{\"name\": 5}", ""), "result: \"name\" must be a string" },
        { J("{\"name\": null}", ""), "result: \"name\" must be a string" },
        { J("{\"files\": 5}", ""), "result: \"files\" must be a list of {\"name\", \"length\"}" },
        { J("{\"files\": null}", ""), "\"files\" must be a list" },
        { J("{\"files\": [\"a\"]}", ""), "result: files[0] needs \"name\": a non-empty string" },
        { J("{\"files\": [{\"length\": 1}]}", ""), "files[0] needs \"name\"" },
        { J("{\"files\": [{\"name\": 1, \"length\": 1}]}", ""), "files[0] needs \"name\"" },
        { J("{\"files\": [{\"name\": \"\", \"length\": 1}]}", ""), "files[0] needs \"name\"" },
        { J("{\"files\": [{\"name\": \"a\"}]}", ""), "files[0] needs \"length\": an integer >= 0" },
        { J("{\"files\": [{\"name\": \"a\", \"length\": -1}]}", ""), "files[0] needs \"length\"" },
        { J("{\"files\": [{\"name\": \"a\", \"length\": 1.0}]}", ""), "files[0] needs \"length\"" },
        { J("{\"files\": [{\"name\": \"a\", \"length\": \"1\"}]}", ""), "files[0] needs \"length\"" },
        { J("{\"files\": [{\"name\": \"a\", \"length\": 0}, {\"name\": \"..\", \"length\": 0}]}", ""),
          "result: files[1]: name '..' names no file" },
        { J("{\"files\": [{\"name\": \"a\", \"length\": 0}, {\"name\": \"a/b\", \"length\": 0}]}", ""),
          "result: cannot write files/a/b: Not a directory" },
        { NULL, S("exitcode\n"), "exitcode: '' is not an integer exit code" },
        { NULL, S("exitcode x\n"), "exitcode: 'x' is not an integer exit code" },
        { NULL, S("exitcode 2147483648\n"), "exitcode: '2147483648' is not an integer exit code" },
        { NULL, S("exitcode 1.5\n"), "is not an integer exit code" },
        { NULL, S("duration\n"), "duration: '' is not" },
        { NULL, S("duration 5x\n"), "duration: '5x' is not" },
        { NULL, S("duration 5 m\n"), "duration: '5 m' is not" },
        { NULL, S("duration +\n"), "duration: '+' is not" },
        { NULL, S("duration ++5\n"), "duration: '++5' is not" },
        { NULL, S("duration 1.5h\n"), "duration: '1.5h' is not" },
        { NULL, S("duration 5ms\n"), "duration: '5ms' is not" },
        { NULL, S("duration Save\n"), "duration: 'Save' is not" },
        { NULL, S("duration 99999999999999999d\n"), "is not" },
        { NULL, S("result 30\n{\"a\": 1}"), "result: expected 30 bytes of JSON, stream ended after 8" },
        { J("{\"files\": [{\"name\": \"a\", \"length\": 5}]}", "ab"),
          "result: file files/a: expected 5 bytes, stream ended after 2" },
        { NULL, S("noop\nresu"), "stream ended inside a control line ('resu')" },
#undef J
#undef S
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sbuf b = { 0 };
        if (cases[i].json)
            sb_result(&b, cases[i].json, NULL, 0);
        sb_add(&b, cases[i].stream, cases[i].len);
        for (size_t chunk = 0; chunk < 2; chunk++) {
            fmf_control *c = start();
            int r = feed_chunks(c, &b, chunk);
            assert_int_equal(fmf_control_finish(c, 0, FMF_END_EXITED, NULL, output_file), 0);
            const char *e = fmf_control_error(c);
            if (!e || !strstr(e, cases[i].error))
                fail_msg("case %zu (%s): error '%s', want '%s'", i, b.p, e ? e : "(none)", cases[i].error);
            /* Errors found only at the end of the stream are not returned by feed(). */
            if (strstr(e, "stream ended"))
                assert_int_equal(r, 0);
            else
                assert_int_equal(r, ATX_EPARSE);
            /* The fallback says what went wrong. */
            assert_int_equal(fmf_control_result_count(c), 1);
            json_object *got = (json_object *)fmf_control_result(c, 0), *v;
            assert_true(json_object_object_get_ex(got, "status", &v));
            assert_string_equal(json_object_get_string(v), "infra");
            assert_true(json_object_object_get_ex(got, "note", &v));
            assert_true(strncmp(json_object_get_string(v), "test control: ", 14) == 0);
            assert_string_equal(json_object_get_string(v) + 14, e);
            fmf_control_free(c);
            rm_rf(attempt);
        }
        sb_free(&b);
    }
}

static void test_error_stops_everything(void **state)
{
    (void)state;
    sbuf b = { 0 };
    sb_str(&b, "exitcode 1\nwhat\nexitcode 2\n");
    sb_result(&b, "{\"status\": \"pass\"}", NULL, 0);
    fmf_control *c = start();
    assert_int_equal(feed_chunks(c, &b, 0), ATX_EPARSE);
    assert_int_equal(fmf_control_feed(c, "exitcode 3\n", 11), 0);
    assert_string_equal(hook_log, "exitcode 1;");
    assert_int_equal(fmf_control_stream_end(c), 0);
    assert_int_equal(fmf_control_finish(c, 0, FMF_END_EXITED, NULL, output_file), 0);
    expect_results(c, "{\"status\": \"infra\", \"note\": \"test control: unknown control word 'what'\","
                      " \"files\": [\"output.txt\"]}");
    assert_int_equal(fmf_control_finish(c, 0, FMF_END_EXITED, NULL, output_file), ATX_ESTATE);
    assert_int_equal(fmf_control_feed(c, "noop\n", 5), ATX_ESTATE);
    fmf_control_free(c);
    sb_free(&b);
}

static void test_reconnect(void **state)
{
    (void)state;
    fmf_control *c = start();
    sbuf b = { 0 };
    sb_result(&b, "{\"status\": \"info\", \"name\": \"before\"}", NULL, 0);
    sb_str(&b, "disconnect\nnoop\n");
    assert_int_equal(feed_chunks(c, &b, 3), 0);
    assert_int_equal(fmf_control_stream_end(c), 0);
    sb_free(&b);
    sb_result(&b, "{\"status\": \"pass\"}", NULL, 0);
    assert_int_equal(feed_chunks(c, &b, 0), 0);
    assert_int_equal(fmf_control_finish(c, 0, FMF_END_EXITED, NULL, output_file), 0);
    expect_results(c, "{\"status\": \"info\", \"name\": \"before\"}", "{\"status\": \"pass\"}");
    assert_string_equal(hook_log, "disconnect;");
    fmf_control_free(c);
    sb_free(&b);

    /* A stream that drops inside a line is an error. */
    c = start();
    assert_int_equal(fmf_control_feed(c, "noo", 3), 0);
    assert_int_equal(fmf_control_stream_end(c), ATX_EPARSE);
    expect_error(c, "stream ended inside a control line ('noo')");
    fmf_control_free(c);
}

/* ---- caps ---- */

static void test_caps(void **state)
{
    (void)state;
    sbuf b = { 0 };
    char json[128];

    /* Too many pending partial results. */
    for (int i = 0; i <= FMF_CONTROL_PENDING_MAX; i++) {
        snprintf(json, sizeof(json), "{\"name\": \"s%d\", \"partial\": true}", i);
        sb_result(&b, json, NULL, 0);
    }
    fmf_control *c = start();
    assert_int_equal(feed_chunks(c, &b, 0), ATX_EPARSE);
    expect_error(c, "result: more than 10000 partial results pending");
    assert_int_equal(fmf_control_finish(c, 0, FMF_END_EXITED, NULL, output_file), 0);
    assert_int_equal(fmf_control_result_count(c), FMF_CONTROL_PENDING_MAX + 1);
    fmf_control_free(c);
    sb_free(&b);
    rm_rf(attempt);

    /* Too much JSON kept in partial results of one name. */
    size_t big = 15u << 20;
    char *s = malloc(big + 64);
    assert_non_null(s);
    int n = snprintf(s, 64, "{\"partial\": true, \"log\": [\"");
    memset(s + n, 'x', big);
    strcpy(s + n + big, "\"]}");
    sb_result(&b, s, NULL, 0);
    free(s);
    c = start();
    for (int i = 0; i < 4; i++)
        assert_int_equal(feed_chunks(c, &b, 1u << 20), 0);
    assert_int_equal(feed_chunks(c, &b, 1u << 20), ATX_EPARSE);
    expect_error(c, "more than the 3 MiB left of the 64 MiB the attempt's results may hold");
    assert_int_equal(fmf_control_finish(c, 0, FMF_END_EXITED, NULL, output_file), 0);
    assert_int_equal(fmf_control_result_count(c), 1);
    fmf_control_free(c);
    sb_free(&b);
}

/* A JSON text of @n copies of @elem in a list, as a partial result. */
static char *many(const char *elem, size_t n)
{
    size_t el = strlen(elem), o = 0;
    char *s = malloc(64 + n * (el + 1));
    assert_non_null(s);
    o += (size_t)sprintf(s, "{\"partial\": true, \"x\": [");
    for (size_t i = 0; i < n; i++) {
        memcpy(s + o, elem, el);
        o += el;
        s[o++] = ',';
    }
    strcpy(s + o - (n ? 1 : 0), "]}");
    return s;
}

/* Memory is counted as parsed, not as text: small objects cost ~250x. */
static void test_caps_parsed_memory(void **state)
{
    (void)state;
    sbuf b = { 0 };
    sb_result(&b, "{\"name\": \"kept\", \"status\": \"pass\"}", NULL, 0);
    char *s = many("{}", 60000); /* 180 kB of text, ~48 MiB parsed */
    sb_result(&b, s, NULL, 0);
    sb_result(&b, s, NULL, 0);
    free(s);
    fmf_control *c = start();
    assert_int_equal(feed_chunks(c, &b, 65536), ATX_EPARSE);
    expect_error(c, "180025 bytes of JSON would take about 47 MiB parsed, more than the 17 MiB left");
    assert_int_equal(fmf_control_finish(c, 1, FMF_END_EXITED, NULL, output_file), 0);
    /* What was recorded stays: the subtest, the first partial, the fallback's note. */
    assert_int_equal(fmf_control_result_count(c), 2);
    assert_string_equal(fmf_control_result_line(c, 0), "{\"name\":\"kept\",\"status\":\"pass\"}");
    json_object *own = (json_object *)fmf_control_result(c, 1), *v;
    assert_true(json_object_object_get_ex(own, "x", &v));
    assert_int_equal(json_object_array_length(v), 60000);
    assert_true(json_object_object_get_ex(own, "status", &v));
    assert_string_equal(json_object_get_string(v), "infra");
    fmf_control_free(c);
    sb_free(&b);
    rm_rf(attempt);

    /* Numbers and strings are counted too; text alone would pass. */
    s = many("1", 1000000);
    sb_result(&b, s, NULL, 0);
    free(s);
    c = start();
    assert_int_equal(feed_chunks(c, &b, 0), ATX_EPARSE);
    expect_error(c, "2000025 bytes of JSON would take about 109 MiB parsed");
    fmf_control_free(c);
    sb_free(&b);
}

static void test_caps_depth(void **state)
{
    (void)state;
    sbuf b = { 0 };
    char json[512];
    size_t o = (size_t)sprintf(json, "{\"deep\": ");
    for (int i = 1; i < FMF_CONTROL_DEPTH_MAX; i++)
        json[o++] = '[';
    for (int i = 1; i < FMF_CONTROL_DEPTH_MAX; i++)
        json[o++] = ']';
    strcpy(json + o, ", \"status\": \"fail\"}");
    sb_result(&b, json, NULL, 0);
    fmf_control *c = run(&b, 0);
    assert_null(fmf_control_error(c));
    assert_int_equal(fmf_control_result_count(c), 1);
    /* Parsed again for the executor, at the same depth. */
    json_object *r = (json_object *)fmf_control_result(c, 0), *v;
    assert_non_null(r);
    assert_true(json_object_object_get_ex(r, "status", &v));
    assert_string_equal(json_object_get_string(v), "fail");
    fmf_control_free(c);
    sb_free(&b);
    rm_rf(attempt);

    o = (size_t)sprintf(json, "{\"deep\": ");
    for (int i = 0; i < 200; i++)
        json[o++] = '[';
    json[o] = '\0';
    sb_result(&b, json, NULL, 0);
    c = start();
    assert_int_equal(feed_chunks(c, &b, 0), ATX_EPARSE);
    expect_error(c, "result: bad JSON (nested deeper than 64 at byte 72)");
    fmf_control_free(c);
    sb_free(&b);
}

/* File entries are checked against the budgets before any file is made. */
static void test_caps_files(void **state)
{
    (void)state;
    sbuf b = { 0 };
    sb_result(&b, "{\"name\": \"first\", \"files\": [{\"name\": \"log\", \"length\": 3}]}", "abc", 3);
    sb_result(&b, "{\"files\": [{\"name\": \"a\", \"length\": 1},"
                  " {\"name\": \"huge\", \"length\": 9223372036854775807}]}", NULL, 0);
    fmf_control *c = start();
    assert_int_equal(feed_chunks(c, &b, 0), ATX_EPARSE);
    expect_error(c, "result: files[1] (files/huge) declares 9223372036854775807 bytes; the "
                    "attempt's files may take 1073741820 more (of 1073741824)");
    assert_int_equal(fmf_control_finish(c, 0, FMF_END_EXITED, NULL, output_file), 0);
    expect_file("files/first/log", "abc", 3);
    expect_no_file("files/a");
    expect_no_file("files/huge");
    fmf_control_free(c);
    sb_free(&b);
    rm_rf(attempt);

    /* Each fits, together they do not. */
    sb_result(&b, "{\"files\": [{\"name\": \"a\", \"length\": 600000000},"
                  " {\"name\": \"b\", \"length\": 600000000}]}", NULL, 0);
    c = start();
    assert_int_equal(feed_chunks(c, &b, 0), ATX_EPARSE);
    expect_error(c, "result: files[1] (files/b) declares 600000000 bytes");
    expect_no_file("files/a");
    fmf_control_free(c);
    sb_free(&b);
    rm_rf(attempt);

    /* Too many files and folders: counted with the folders they need. */
    sbuf j = { 0 };
    sb_str(&j, "{\"files\": [");
    for (int i = 0; i <= FMF_CONTROL_FILES_MAX / 2; i++) {
        char e[64];
        snprintf(e, sizeof(e), "%s{\"name\": \"d%d/f\", \"length\": 0}", i ? ", " : "", i);
        sb_str(&j, e);
    }
    sb_str(&j, "]}");
    sb_result(&b, j.p, NULL, 0);
    c = start();
    assert_int_equal(feed_chunks(c, &b, 0), ATX_EPARSE);
    expect_error(c, "result: files[5000] (files/d5000/f): more than 10000 files and folders below files/");
    expect_no_file("files/d0");
    fmf_control_free(c);
    sb_free(&b);
    sb_free(&j);
    rm_rf(attempt);

    /* A name too long for the file system, next to a fine one. */
    char json[1400];
    memset(json, 0, sizeof(json));
    int n = snprintf(json, sizeof(json), "{\"files\": [{\"name\": \"ok\", \"length\": 0}, {\"name\": \"");
    memset(json + n, 'x', 300);
    strcpy(json + n + 300, "\", \"length\": 0}]}");
    sb_result(&b, json, NULL, 0);
    c = start();
    assert_int_equal(feed_chunks(c, &b, 0), ATX_EPARSE);
    expect_error(c, "is too long or too deep a path");
    expect_no_file("files/ok");
    fmf_control_free(c);
    sb_free(&b);

    /* A testout 80,000 folders deep: refused at once, before any part of it
     * is looked up (that was quadratic: seconds, then hours). */
    size_t deep = 80000;
    char *big = malloc(deep * 2 + 64), *o = big;
    o += sprintf(o, "{\"testout\": \"");
    for (size_t i = 0; i < deep; i++)
        o += sprintf(o, "a/");
    sprintf(o, "x\"}");
    sb_result(&b, big, NULL, 0);
    free(big);
    c = start();
    int64_t t0 = atx_now_ns();
    assert_int_equal(feed_chunks(c, &b, 0), ATX_EPARSE);
    assert_true(atx_now_ns() - t0 < ATX_NSEC_PER_SEC);
    expect_error(c, "testout");
    expect_no_file("files/a");
    fmf_control_free(c);
    sb_free(&b);
}

/* ---- splits ---- */

static char **snap_items;
static size_t snap_n;

static int snap_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    sbuf item = { 0 };
    sb_str(&item, path + strlen(attempt));
    if (flag == FTW_F) {
        size_t len = 0;
        char *data = read_file(path + strlen(attempt) + 1, &len);
        assert_non_null(data);
        sb_str(&item, " = ");
        for (size_t i = 0; i < len; i++) {
            char hex[3];
            snprintf(hex, sizeof(hex), "%02x", (unsigned char)data[i]);
            sb_str(&item, hex);
        }
        free(data);
    } else {
        sb_str(&item, "/");
    }
    snap_items = realloc(snap_items, (snap_n + 1) * sizeof(*snap_items));
    assert_non_null(snap_items);
    snap_items[snap_n++] = item.p;
    return 0;
}

static int cmp_items(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The attempt directory and the parser's view as one comparable text. */
static char *snapshot(fmf_control *c, size_t *len)
{
    sbuf out = { 0 };

    snap_items = NULL;
    snap_n = 0;
    assert_int_equal(nftw(attempt, snap_entry, 16, FTW_PHYS), 0);
    qsort(snap_items, snap_n, sizeof(*snap_items), cmp_items);
    for (size_t i = 0; i < snap_n; i++) {
        sb_str(&out, snap_items[i]);
        sb_str(&out, "\n");
        free(snap_items[i]);
    }
    free(snap_items);
    sb_str(&out, "error: ");
    sb_str(&out, fmf_control_error(c) ? fmf_control_error(c) : "-");
    sb_str(&out, "\nhooks: ");
    sb_str(&out, hook_log);
    for (size_t i = 0; i < fmf_control_result_count(c); i++) {
        sb_str(&out, "\nresult: ");
        sb_str(&out, fmf_control_result_line(c, i));
        for (const char *const *p = fmf_control_result_paths(c, i); *p; p++) {
            sb_str(&out, " path:");
            sb_str(&out, *p);
        }
    }
    *len = out.len;
    return out.p;
}

/* Split @b at every position (and byte by byte): all give the same outcome. */
static void check_splits(const sbuf *b, fmf_end_kind end)
{
    size_t ref_len, got_len;
    fmf_control *c = start();
    feed_chunks(c, b, 0);
    assert_int_equal(fmf_control_finish(c, 7, end, "x", output_file), 0);
    char *ref = snapshot(c, &ref_len);
    fmf_control_free(c);
    rm_rf(attempt);

    for (size_t k = 0; k <= b->len + 1; k++) {
        c = start();
        if (k == b->len + 1) {
            feed_chunks(c, b, 1);
        } else {
            fmf_control_feed(c, b->p, k);
            fmf_control_feed(c, b->p + k, b->len - k);
        }
        assert_int_equal(fmf_control_finish(c, 7, end, "x", output_file), 0);
        char *got = snapshot(c, &got_len);
        if (got_len != ref_len || memcmp(got, ref, ref_len) != 0)
            fail_msg("split at %zu differs:\n%s\n---- want:\n%s", k, got, ref);
        free(got);
        fmf_control_free(c);
        rm_rf(attempt);
    }
    free(ref);
}

static void test_splits(void **state)
{
    (void)state;
    sbuf b = { 0 };
    sb_str(&b, "noop\nexitcode 0\nduration +5m\n");
    sb_result(&b, "{\"status\": \"fail\", \"partial\": true, \"testout\": \"t.log\","
                  " \"files\": [{\"name\": \"a\", \"length\": 3}, {\"name\": \"z\", \"length\": 0}]}",
              "\x00\n\x00", 3);
    sb_result(&b, "{\"name\": \"s/1\", \"files\": [{\"name\": \"../b\", \"length\": 4}]}", "re\nsu", 4);
    sb_result(&b, "{\"name\": \"s/1\", \"l\": [1], \"partial\": true}", NULL, 0);
    sb_result(&b, "{\"name\": \"s/1\", \"l\": [2], \"partial\": true}", NULL, 0);
    sb_str(&b, "disconnect\n");
    check_splits(&b, FMF_END_EXITED);

    /* Ending in the middle of a file, and with an error. */
    sb_result(&b, "{\"files\": [{\"name\": \"cut\", \"length\": 9}]}", "1234", 4);
    check_splits(&b, FMF_END_LOST);
    sb_free(&b);

    sb_result(&b, "{\"status\": \"pass\", \"files\": [{\"name\": \"x\", \"length\": 2}]}", "\0\0", 2);
    sb_str(&b, "noop\nresult 3\n[1]noop\n");
    check_splits(&b, FMF_END_EXITED);
    sb_free(&b);
}

/* ---- duration arguments ---- */

static void test_duration_spec(void **state)
{
    (void)state;
    static const struct {
        const char *spec;
        fmf_duration_op op;
        int64_t ns;
    } ok[] = {
        { "5m", FMF_DURATION_SET, 300 * INT64_C(1000000000) },
        { "90", FMF_DURATION_SET, 90 * INT64_C(1000000000) },
        { "0", FMF_DURATION_SET, 0 },
        { "+1m", FMF_DURATION_ADD, 60 * INT64_C(1000000000) },
        { "-30s", FMF_DURATION_SUB, 30 * INT64_C(1000000000) },
        { "2h", FMF_DURATION_SET, 7200 * INT64_C(1000000000) },
        { "+3d", FMF_DURATION_ADD, 259200 * INT64_C(1000000000) },
        { "save", FMF_DURATION_SAVE, 0 },
        { "restore", FMF_DURATION_RESTORE, 0 },
        { "9223372036", FMF_DURATION_SET, 9223372036 * INT64_C(1000000000) },
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        fmf_duration_op op = (fmf_duration_op)99;
        int64_t ns = -1;
        assert_int_equal(fmf_duration_spec_parse(ok[i].spec, &op, &ns), 0);
        assert_int_equal(op, ok[i].op);
        assert_true(ns == ok[i].ns);
    }
    static const char *const bad[] = { "", "+", "-", "m", "5mm", "5 m", " 5m", "5m ", "+-5", "1.5h",
                                       "5ms", "5w", "SAVE", "save ", "9223372037", "106751992d",
                                       "99999999999999999999" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fmf_duration_op op = FMF_DURATION_SAVE;
        int64_t ns = 42;
        if (fmf_duration_spec_parse(bad[i], &op, &ns) != ATX_EINVAL)
            fail_msg("'%s' accepted", bad[i]);
        assert_int_equal(op, FMF_DURATION_SAVE);
        assert_true(ns == 42);
    }
}

static void test_new_errors(void **state)
{
    (void)state;
    fmf_control *c = (fmf_control *)&c;
    assert_int_equal(fmf_control_new(NULL, NULL, &c), ATX_EINVAL);
    assert_int_equal(fmf_control_new("", NULL, &c), ATX_EINVAL);
    assert_ptr_equal(c, (fmf_control *)&c);
    char path[400];
    snprintf(path, sizeof(path), "%s/output/attempt", tmp_root); /* below a regular file */
    assert_true(fmf_control_new(path, NULL, &c) < 0);
    assert_ptr_equal(c, (fmf_control *)&c);
    fmf_control_free(NULL);
    assert_int_equal(fmf_control_feed(NULL, "", 0), ATX_EINVAL);
    assert_null(fmf_control_error(NULL));
    assert_int_equal(fmf_control_result_count(NULL), 0);

    /* An existing attempt directory: results truncated, files kept. */
    c = start();
    assert_int_equal(fmf_control_finish(c, 0, FMF_END_EXITED, NULL, output_file), 0);
    fmf_control_free(c);
    c = start();
    expect_no_results(c);
    fmf_control_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_noresult_pass, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reboot_word_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_noresult_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trivial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multiline_and_repeated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_and_custom, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subtests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_files_across_results, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_normalisation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_basic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_merging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_subtests_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_testout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_testout_partial_and_multiple, setup, teardown),
        cmocka_unit_test_setup_teardown(test_testout_subtest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_testout_without_output, setup, teardown),
        cmocka_unit_test_setup_teardown(test_testout_copied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_testout_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fallback_end_kinds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fallback_protocol_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fallback_not_after_own_result, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fallback_merges_partial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fallback_output_taken, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settle_and_hold_own, setup, teardown),
        cmocka_unit_test_setup_teardown(test_control_words, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_protocol_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_stops_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_caps_parsed_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_caps_depth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_caps_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_splits, setup, teardown),
        cmocka_unit_test(test_duration_spec),
        cmocka_unit_test_setup_teardown(test_new_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
