/*
 * The reports and the outcome history through the public API, with the real
 * local provisioner, exec executor and report plugins: a quarantined test is
 * marked in every report (JSON lines, JUnit in both profiles, CTRF, HTML)
 * and does not fail the run; a run compared with a results folder names the
 * folder and the tests that changed in the HTML page's changes section.
 */
#define _GNU_SOURCE 1
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <atx.h>

#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct fx {
    char dir[64];
    atx_plugins *reg;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    const char *paths[] = { ATX_TEST_PLUGIN_DIR, NULL };
    atx_plugins_opts po = ATX_PLUGINS_OPTS_INIT;

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/atx-reports-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    po.paths = paths;
    po.no_environment = 1;
    po.no_default_dir = 1;
    assert_int_equal(atx_plugins_new(&po, &f->reg), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    char cmd[128];

    atx_plugins_free(f->reg);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* A run with its results in DIR/SUB and the history in DIR/hist.db. */
static atx_run *new_run(const fx *f, const char *sub)
{
    atx_run_opts ro = ATX_RUN_OPTS_INIT;
    char dir[128], hist[128];
    atx_run *run;

    snprintf(dir, sizeof(dir), "%s/%s", f->dir, sub);
    snprintf(hist, sizeof(hist), "%s/hist.db", f->dir);
    ro.results_dir = dir;
    ro.plugins = f->reg;
    assert_int_equal(atx_run_new(&ro, &run), 0);
    assert_int_equal(atx_run_set_history(run, hist), 0);
    assert_int_equal(atx_run_add_provisioner(run, "local", "{\"slots\": 2}"), 0);
    return run;
}

static void add_sh_test(atx_run *run, const char *name, const char *script)
{
    const char *argv[] = { "sh", "-c", script, NULL };
    atx_test *t;

    assert_int_equal(atx_test_new(name, "exec", &t), 0);
    assert_int_equal(atx_test_set_command(t, argv), 0);
    assert_int_equal(atx_run_add_test(run, t), 0);
}

/* DIR/SUB/NAME, whole; malloc'ed. */
static char *slurp(const fx *f, const char *sub, const char *name)
{
    char path[256];
    FILE *in;
    char *buf = NULL;
    size_t len = 0;

    snprintf(path, sizeof(path), "%s/%s/%s", f->dir, sub, name);
    in = fopen(path, "re");
    assert_non_null(in);
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    for (int c; (c = getc(in)) != EOF;)
        putc(c, out);
    fclose(in);
    fclose(out);
    return buf;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* A quarantined failure: marked in every report, and the run passes. */
static void quarantine_marked_in_reports(void **state)
{
    fx *f = *state;
    char qpath[128];
    atx_run *run = new_run(f, "q");

    snprintf(qpath, sizeof(qpath), "%s/quarantine", f->dir);
    FILE *q = fopen(qpath, "we");
    assert_non_null(q);
    fputs("# known to fail, issue 1234\n^/net/\n", q);
    fclose(q);
    assert_int_equal(atx_run_set_quarantine(run, qpath), 0);
    add_sh_test(run, "/net/dns", "echo no route; exit 1");
    add_sh_test(run, "/ok", "true");
    assert_int_equal(atx_run_add_aggregator(run, "jsonl", "{\"path\": \"results.jsonl\"}"), 0);
    assert_int_equal(atx_run_add_aggregator(run, "junit", "{\"path\": \"junit.xml\"}"), 0);
    assert_int_equal(atx_run_add_aggregator(run, "junit", "{\"path\": \"junit-ext.xml\", "
                                                          "\"profile\": \"extended\"}"),
                     0);
    assert_int_equal(atx_run_add_aggregator(run, "ctrf", "{\"path\": \"ctrf.json\"}"), 0);
    assert_int_equal(atx_run_add_aggregator(run, "html", "{\"path\": \"report.html\"}"), 0);
    assert_int_equal(atx_run_execute(run, NULL), 0);
    assert_int_equal(atx_run_exit_code(run, ATX_FAIL_ON_ANY), 0);
    atx_run_free(run);

    /* JSON lines: quarantined on the test's line, not on the other's. */
    char *jl = slurp(f, "q", "results.jsonl");
    size_t lines = 0;
    for (char *line = strtok(jl, "\n"); line; line = strtok(NULL, "\n"), lines++) {
        json_object *o = json_tokener_parse(line), *t, *qv, *rate;
        assert_non_null(o);
        assert_true(json_object_object_get_ex(o, "test", &t));
        assert_true(json_object_object_get_ex(o, "quarantined", &qv));
        assert_true(json_object_object_get_ex(o, "flake_rate", &rate));
        bool dns = strcmp(json_object_get_string(t), "/net/dns") == 0;
        assert_int_equal(json_object_get_boolean(qv), dns);
        assert_true(json_object_is_type(rate, json_type_double) ||
                    json_object_is_type(rate, json_type_int));
        json_object_put(o);
    }
    assert_int_equal(lines, 2);
    free(jl);

    /* JUnit: a suite property in the strict profile, a testcase one in the
     * extended. */
    char *ju = slurp(f, "q", "junit.xml");
    assert_int_equal(count(ju, "<property name=\"atx.quarantined:/net/dns\" value=\"true\"/>"), 1);
    assert_int_equal(count(ju, "atx.quarantined:"), 1);
    assert_int_equal(count(ju, "<properties>"), 1); /* the suite's only */
    free(ju);
    char *je = slurp(f, "q", "junit-ext.xml");
    assert_int_equal(count(je, "<properties><property name=\"flake_rate\" value=\"0\"/>"
                               "<property name=\"quarantined\" value=\"true\"/></properties>"
                               "<failure "),
                     1);
    assert_int_equal(count(je, "name=\"quarantined\""), 1);
    free(je);

    /* CTRF: extra.quarantined on each entry. */
    char *cj = slurp(f, "q", "ctrf.json");
    json_object *root = json_tokener_parse(cj), *results, *tests;
    assert_non_null(root);
    assert_true(json_object_object_get_ex(root, "results", &results));
    assert_true(json_object_object_get_ex(results, "tests", &tests));
    assert_int_equal(json_object_array_length(tests), 2);
    for (size_t i = 0; i < 2; i++) {
        json_object *e = json_object_array_get_idx(tests, i), *name, *extra, *qv;
        assert_true(json_object_object_get_ex(e, "name", &name));
        assert_true(json_object_object_get_ex(e, "extra", &extra));
        assert_true(json_object_object_get_ex(extra, "quarantined", &qv));
        assert_int_equal(json_object_get_boolean(qv),
                         strcmp(json_object_get_string(name), "/net/dns") == 0);
    }
    json_object_put(root);
    free(cj);

    /* HTML: the result says so in the data (the page marks its row). */
    char *page = slurp(f, "q", "report.html");
    assert_int_equal(count(page, "\"quarantined\":true"), 1);
    free(page);
}

/* Compared with a results folder: the page names the folder and the tests
 * of each kind, linked to their rows when the page has them. */
static void changes_from_a_folder(void **state)
{
    fx *f = *state;
    char before[128];
    atx_run *run = new_run(f, "before");

    add_sh_test(run, "/a", "true");
    add_sh_test(run, "/b", "exit 1");
    add_sh_test(run, "/old", "true");
    assert_int_equal(atx_run_add_aggregator(run, "jsonl", "{\"path\": \"results.jsonl\"}"), 0);
    assert_int_equal(atx_run_execute(run, NULL), 0);
    atx_run_free(run);

    snprintf(before, sizeof(before), "%s/before", f->dir);
    run = new_run(f, "after");
    assert_int_equal(atx_run_set_compare_dir(run, before), 0);
    add_sh_test(run, "/a", "exit 1");
    add_sh_test(run, "/b", "true");
    add_sh_test(run, "/new", "true");
    assert_int_equal(atx_run_add_aggregator(run, "html", "{\"path\": \"report.html\"}"), 0);
    assert_int_equal(atx_run_execute(run, NULL), 0);
    atx_run_free(run);

    char *page = slurp(f, "after", "report.html");
    char *sec = strstr(page, "<section class=\"changes\" id=\"changes\">");
    assert_non_null(sec);
    char *end = strstr(sec, "</section>");
    assert_non_null(end);
    *end = '\0';
    char want[256];
    snprintf(want, sizeof(want), "<h2>Changes since %s</h2>", before);
    assert_non_null(strstr(sec, want));
    assert_non_null(strstr(sec, "<div class=\"chg-kind\" data-kind=\"new_failures\"><span "
                                "class=\"chg-label\">new failures</span> <a class=\"chg-test\" "
                                "href=\"#test=%2Fa\">/a</a></div>"));
    assert_non_null(strstr(sec, "data-kind=\"fixed\"><span class=\"chg-label\">fixed</span> "
                                "<a class=\"chg-test\" href=\"#test=%2Fb\">/b</a></div>"));
    assert_non_null(strstr(sec, "data-kind=\"new_tests\"><span class=\"chg-label\">new tests"
                                "</span> <a class=\"chg-test\" href=\"#test=%2Fnew\">/new</a>"));
    /* Removed: no row to link to. */
    assert_non_null(strstr(sec, "data-kind=\"removed\"><span class=\"chg-label\">removed"
                                "</span> <span class=\"chg-test\">/old</span></div>"));
    assert_null(strstr(sec, "data-kind=\"still_failing\"><span"));
    free(page);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(quarantine_marked_in_reports, setup, teardown),
        cmocka_unit_test_setup_teardown(changes_from_a_folder, setup, teardown),
    };
    atx_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
