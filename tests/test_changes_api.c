/*
 * What changed between two runs (atx/changes.h): two results folders
 * compared kind by kind, the text and JSON of a comparison, and quarantine
 * files. The history side (a run against its plan's previous run, flake
 * rates) is tested end to end by tests/changes.sh and tests/flaky.sh.
 */
#define _GNU_SOURCE 1
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atx.h"

static char tmp[256];

static int setup(void **state)
{
    (void)state;
    const char *t = getenv("TMPDIR");
    snprintf(tmp, sizeof(tmp), "%s/atx-changes-XXXXXX", t && *t ? t : "/tmp");
    return mkdtemp(tmp) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
    return system(cmd) == 0 ? 0 : -1;
}

/* DIR/results.jsonl from lines of "test status attempt final duration". */
static void results(const char *dir, const char *const *rows)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", tmp, dir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/%s/results.jsonl", tmp, dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (size_t i = 0; rows[i]; i++) {
        char test[64], status[16], type[32] = "";
        int attempt, final;
        double duration;
        assert_true(sscanf(rows[i], "%63s %15s %d %d %lf %31s", test, status, &attempt, &final,
                           &duration, type) >= 5);
        fprintf(f, "{\"test\": \"%s\", \"subtest\": null, \"status\": \"%s\", \"attempt\": %d, "
                   "\"final\": %s, \"duration\": %g, \"error_type\": %s%s%s}\n",
                test, status, attempt, final ? "true" : "false", duration, *type ? "\"" : "",
                *type ? type : "null", *type ? "\"" : "");
        /* A subtest's line is not the test's outcome. */
        fprintf(f, "{\"test\": \"%s\", \"subtest\": \"sub\", \"status\": \"fail\", "
                   "\"attempt\": %d, \"final\": true, \"duration\": 1}\n",
                test, attempt);
    }
    fclose(f);
}

static void expect_kind(const atx_changes *c, atx_change kind, const char *want)
{
    char got[512] = "";
    for (size_t i = 0; i < atx_changes_count(c, kind); i++) {
        strcat(got, i ? " " : "");
        strcat(got, atx_changes_test(c, kind, i));
    }
    if (strcmp(got, want) != 0)
        fail_msg("%s: got '%s', want '%s'", atx_change_name(kind), got, want);
}

static void compare_dirs(void **state)
{
    (void)state;
    static const char *const before[] = {
        "/stable pass 1 1 0.1",   "/breaks pass 1 1 0.1",   "/fixed fail 1 1 0.1",
        "/broken error 1 1 0.1",  "/gone pass 1 1 0.1",     "/slow pass 1 1 1.0",
        "/quick pass 1 1 0.001",  "/flaky fail 1 0 0.1",    "/flaky pass 2 1 0.1",
        "/flakes pass 1 1 0.1",   "/skipped fail 1 1 0.1",  "/lost pass 1 1 0.1",
        "/cut pass 1 1 0.1",
        NULL,
    };
    static const char *const after[] = {
        "/stable pass 1 1 0.1",   "/breaks fail 1 1 0.1",   "/fixed pass 1 1 0.1",
        "/broken error 1 1 0.1",  "/new fail 1 1 0.1",      "/slow pass 1 1 3.0",
        "/quick pass 1 1 0.004",  "/flaky fail 1 0 0.1",    "/flaky pass 2 1 0.1",
        "/flakes error 1 0 0.1",  "/flakes pass 2 1 0.1",   "/skipped skip 1 1 0",
        "/lost infra 1 0 0.1",    "/lost pass 2 1 0.1",
        "/cut error 1 0 0.1 interrupted", "/cut pass 2 1 0.1",
        NULL,
    };
    char a[512], b[512];
    atx_changes *c = NULL;
    results("a", before);
    results("b", after);
    snprintf(a, sizeof(a), "%s/a", tmp);
    snprintf(b, sizeof(b), "%s/b", tmp);
    assert_int_equal(atx_changes_compare_dirs(a, b, &c), 0);
    assert_string_equal(atx_changes_baseline(c), a);
    expect_kind(c, ATX_CHANGE_NEW_FAILURE, "/breaks /new");
    expect_kind(c, ATX_CHANGE_FIXED, "/fixed");
    expect_kind(c, ATX_CHANGE_STILL_FAILING, "/broken");
    expect_kind(c, ATX_CHANGE_NEW_TEST, "/new");
    expect_kind(c, ATX_CHANGE_REMOVED, "/gone");
    /* Flaky before already; a pass after a lost system's attempt, or after
     * one a cancelled run interrupted, is not flaky. */
    expect_kind(c, ATX_CHANGE_NEWLY_FLAKY, "/flakes");
    /* 4x slower but 3 ms: noise. */
    expect_kind(c, ATX_CHANGE_SLOWER, "/slow");
    int64_t now, usual;
    assert_int_equal(atx_changes_slower(c, 0, &now, &usual), 0);
    assert_int_equal(now, 3 * ATX_NSEC_PER_SEC);
    assert_int_equal(usual, ATX_NSEC_PER_SEC);

    char *text = NULL, *json = NULL;
    assert_int_equal(atx_changes_text(c, &text), 0);
    assert_non_null(strstr(text, "new failures 2, fixed 1, still failing 1, new tests 1, "
                                 "removed 1, newly flaky 1, slower 1\n"));
    assert_non_null(strstr(text, "\nnew failures: /breaks /new\n"));
    assert_non_null(strstr(text, "\nslower: /slow (3.000s, usually 1.000s)\n"));
    assert_int_equal(atx_changes_json(c, &json), 0);
    json_object *o = json_tokener_parse(json), *v;
    assert_non_null(o);
    assert_true(json_object_object_get_ex(o, "new_failures", &v));
    assert_int_equal(json_object_array_length(v), 2);
    assert_string_equal(json_object_get_string(json_object_array_get_idx(v, 1)), "/new");
    assert_true(json_object_object_get_ex(o, "slower", &v));
    json_object *s = json_object_array_get_idx(v, 0), *d;
    assert_true(json_object_object_get_ex(s, "duration", &d));
    assert_true(json_object_get_double(d) > 2.99 && json_object_get_double(d) < 3.01);
    json_object_put(o);
    free(text);
    free(json);
    atx_changes_free(c);

    /* The same run twice: nothing changed. */
    assert_int_equal(atx_changes_compare_dirs(b, b, &c), 0);
    for (int k = 0; k < ATX_CHANGE_KINDS; k++)
        if (k != ATX_CHANGE_STILL_FAILING && k != ATX_CHANGE_NEWLY_FLAKY)
            assert_int_equal(atx_changes_count(c, (atx_change)k), 0);
    atx_changes_free(c);
}

static void compare_errors(void **state)
{
    (void)state;
    char a[512], bad[512];
    atx_changes *c = NULL;
    snprintf(a, sizeof(a), "%s/none", tmp);
    assert_int_equal(atx_changes_compare_dirs(a, a, &c), ATX_ENOTFOUND);
    assert_non_null(strstr(atx_error_last()->message, "/none/results.jsonl"));
    snprintf(bad, sizeof(bad), "%s/bad", tmp);
    assert_int_equal(mkdir(bad, 0755), 0);
    snprintf(a, sizeof(a), "%s/bad/results.jsonl", tmp);
    FILE *f = fopen(a, "w");
    fputs("{\"test\": \"/a\", \"status\": \"pass\"}\nnot json\n", f);
    fclose(f);
    assert_int_equal(atx_changes_compare_dirs(bad, bad, &c), ATX_EPARSE);
    assert_non_null(strstr(atx_error_last()->message, "results.jsonl:2: not a result"));
    /* A line past 1 MiB is refused, not read whole. */
    f = fopen(a, "w");
    fputs("{\"test\": \"/a\", \"status\": \"pass\", \"note\": \"", f);
    for (int i = 0; i < 1100 * 1000; i++)
        fputc('x', f);
    fputs("\"}\n", f);
    fclose(f);
    assert_int_equal(atx_changes_compare_dirs(bad, bad, &c), ATX_EPARSE);
    assert_non_null(strstr(atx_error_last()->message, "results.jsonl:1: a line of more than"));
    /* Hostile durations are no durations: nothing is slower, nothing overflows. */
    f = fopen(a, "w");
    fputs("{\"test\": \"/a\", \"status\": \"pass\", \"duration\": -5}\n"
          "{\"test\": \"/b\", \"status\": \"pass\", \"duration\": 1e300}\n", f);
    fclose(f);
    assert_int_equal(atx_changes_compare_dirs(bad, bad, &c), 0);
    assert_int_equal(atx_changes_count(c, ATX_CHANGE_SLOWER), 0);
    atx_changes_free(c);
    assert_null(atx_change_name(ATX_CHANGE_KINDS));
    assert_string_equal(atx_change_name(ATX_CHANGE_NEWLY_FLAKY), "newly_flaky");
}

static void quarantine(void **state)
{
    (void)state;
    char path[512], results_dir[512];
    atx_run_opts o = ATX_RUN_OPTS_INIT;
    atx_run *run = NULL;
    snprintf(results_dir, sizeof(results_dir), "%s/run", tmp);
    o.results_dir = results_dir;
    assert_int_equal(atx_run_new(&o, &run), 0);
    snprintf(path, sizeof(path), "%s/quarantine", tmp);
    FILE *f = fopen(path, "w");
    fputs("# known to flake\n/net/\n\n  ^/exact/one$  \n", f);
    fclose(f);
    assert_int_equal(atx_run_set_quarantine(run, path), 0);
    assert_true(atx_run_test_quarantined(run, "/suite/net/dns"));
    assert_true(atx_run_test_quarantined(run, "/exact/one"));
    assert_false(atx_run_test_quarantined(run, "/exact/one/more"));
    assert_false(atx_run_test_quarantined(run, "/other"));
    f = fopen(path, "w");
    fputs("/fine\n/bad(\n", f);
    fclose(f);
    assert_int_equal(atx_run_set_quarantine(run, path), ATX_EPARSE);
    assert_non_null(strstr(atx_error_last()->message, "quarantine:2: '/bad(' is not a regular "
                                                      "expression"));
    /* The one set before stays. */
    assert_true(atx_run_test_quarantined(run, "/suite/net/dns"));
    assert_int_equal(atx_run_set_quarantine(run, "/no/such/file"), ATX_ENOTFOUND);
    atx_run_free(run);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(compare_dirs, setup, teardown),
        cmocka_unit_test_setup_teardown(compare_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(quarantine, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
