/*
 * The plugin registry: search order, and the loader's refusals, each made by
 * one fake plugin from tests/fake_plugins (built into ATX_TEST_FAKE_DIR/<case>).
 * Every registry here searches only the directories the test names.
 */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "atx.h"
#include "atx/plugin/abi.h"

#define FAKE ATX_TEST_FAKE_DIR

/* A descriptor pointer that no loader returns: out-params must stay as set. */
static const atx_plugin_descriptor sentinel_desc;
#define SENTINEL (&sentinel_desc)

/* One refusal case: the file FAKE/<dir>/<name>.so, asked for as @kind, must be
 * refused with a reason containing @word. */
typedef struct refusal {
    const char *dir;
    const char *name;
    atx_plugin_kind kind;
    const char *word;
} refusal;

static const refusal refusals[] = {
    { "abi-major", "abimajor", ATX_PLUGIN_AGGREGATOR, "ABI" },
    { "abi-minor", "abiminor", ATX_PLUGIN_AGGREGATOR, "newer" },
    { "name", "misnamed", ATX_PLUGIN_AGGREGATOR, "othername" },
    { "name-newline", "newlinename", ATX_PLUGIN_AGGREGATOR, "but its file is named" },
    { "no-entry", "noentry", ATX_PLUGIN_AGGREGATOR, "atx_plugin_entry" },
    { "not-so", "notso", ATX_PLUGIN_AGGREGATOR, "shared object" },
    { "not-regular", "notregular", ATX_PLUGIN_AGGREGATOR, "regular file" },
    { "null-descriptor", "nulldesc", ATX_PLUGIN_AGGREGATOR, "no descriptor" },
    { "struct-size", "smallstruct", ATX_PLUGIN_AGGREGATOR, "bytes" },
    { "no-version", "noversion", ATX_PLUGIN_AGGREGATOR, "name, version or vtable" },
    { "unknown-kind", "unknownkind", ATX_PLUGIN_AGGREGATOR, "unknown plugin kind" },
    { "vtable-version", "vtable0", ATX_PLUGIN_AGGREGATOR, "no version" },
    { "no-method", "nomethod", ATX_PLUGIN_AGGREGATOR, "required method" },
    { "no-method-executor", "norun", ATX_PLUGIN_EXECUTOR, "required method" },
    { "no-method-provisioner", "norelease", ATX_PLUGIN_PROVISIONER, "required method" },
};

/* Log callback: counts warnings and keeps the last message. */
typedef struct log_seen {
    int warnings;
    int others;
    char last[1024];
} log_seen;

static void on_log(void *userdata, atx_log_level level, const char *origin, const char *message)
{
    log_seen *seen = userdata;
    (void)origin;
    if (level == ATX_LOG_WARNING)
        seen->warnings++;
    else
        seen->others++;
    snprintf(seen->last, sizeof(seen->last), "%s", message);
}

/* A registry over exactly @dirs (NULL-terminated): no ATX_PLUGIN_PATH, no
 * installed directory. */
static atx_plugins *registry(const char *const *dirs, log_seen *seen)
{
    atx_plugins_opts opts = ATX_PLUGINS_OPTS_INIT;
    atx_plugins *reg = NULL;

    opts.paths = dirs;
    opts.no_environment = 1;
    opts.no_default_dir = 1;
    if (seen) {
        opts.log = on_log;
        opts.log_userdata = seen;
    }
    assert_int_equal(atx_plugins_new(&opts, &reg), 0);
    assert_non_null(reg);
    return reg;
}

/* @text is one line naming @path and saying @word. */
static void check_reason(const refusal *c, const char *what, const char *text, const char *path)
{
    if (!text)
        fail_msg("%s/%s: %s: no reason", c->dir, c->name, what);
    if (!strstr(text, path))
        fail_msg("%s/%s: %s '%s' does not name the file %s", c->dir, c->name, what, text, path);
    if (!strstr(text, c->word))
        fail_msg("%s/%s: %s '%s' does not say '%s'", c->dir, c->name, what, text, c->word);
    if (strchr(text, '\n') || strchr(text, '\r'))
        fail_msg("%s/%s: %s is not one line: '%s'", c->dir, c->name, what, text);
}

static void test_find_refuses_each_bad_plugin(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
        const refusal *c = &refusals[i];
        char dir[PATH_MAX], path[PATH_MAX];
        const char *dirs[] = { dir, NULL };
        const atx_plugin_descriptor *d = SENTINEL;
        log_seen seen = { 0 };

        snprintf(dir, sizeof(dir), "%s/%s", FAKE, c->dir);
        snprintf(path, sizeof(path), "%s/%s.so", dir, c->name);
        atx_plugins *reg = registry(dirs, &seen);
        int r = atx_plugins_find(reg, c->kind, c->name, &d);
        if (r != ATX_EPLUGIN)
            fail_msg("%s/%s: find returned %d (%s), want ATX_EPLUGIN", c->dir, c->name, r,
                     atx_strerror(r));
        assert_ptr_equal(d, SENTINEL);
        assert_int_equal(atx_error_last()->code, ATX_EPLUGIN);
        check_reason(c, "find's error", atx_error_last()->message, path);
        /* The refusal went to the log callback once, as a warning. */
        assert_int_equal(seen.warnings, 1);
        assert_int_equal(seen.others, 0);
        check_reason(c, "the logged warning", seen.last, path);
        /* Asking again answers the same without loading again. */
        assert_int_equal(atx_plugins_find(reg, c->kind, c->name, &d), ATX_EPLUGIN);
        check_reason(c, "find's error the second time", atx_error_last()->message, path);
        assert_int_equal(seen.warnings, 1);
        assert_ptr_equal(d, SENTINEL);
        atx_plugins_free(reg);
    }
}

static void test_scan_records_each_bad_plugin(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
        const refusal *c = &refusals[i];
        char dir[PATH_MAX], path[PATH_MAX];
        const char *dirs[] = { dir, NULL };
        const atx_plugin_descriptor *d = SENTINEL;
        log_seen seen = { 0 };

        snprintf(dir, sizeof(dir), "%s/%s", FAKE, c->dir);
        snprintf(path, sizeof(path), "%s/%s.so", dir, c->name);
        atx_plugins *reg = registry(dirs, &seen);
        assert_int_equal(atx_plugins_scan(reg), 0);
        if (atx_plugins_count(reg) != 1)
            fail_msg("%s: scan found %zu files, want 1", c->dir, atx_plugins_count(reg));
        const atx_plugin_info *p = atx_plugins_at(reg, 0);
        assert_non_null(p);
        assert_string_equal(p->name, c->name);
        assert_string_equal(p->path, path);
        if (!p->refused)
            fail_msg("%s/%s: scan did not refuse it", c->dir, c->name);
        check_reason(c, "the scan's reason", p->reason, path);
        assert_int_equal(seen.warnings, 1);
        /* find after scan gives the recorded refusal. */
        assert_int_equal(atx_plugins_find(reg, c->kind, c->name, &d), ATX_EPLUGIN);
        assert_ptr_equal(d, SENTINEL);
        assert_string_equal(atx_error_last()->message, p->reason);
        assert_null(atx_plugins_at(reg, 1));
        atx_plugins_free(reg);
    }
}

/* Every refusal at once in one scan: one entry each, none lost to another. */
static void test_scan_all_bad_directories(void **state)
{
    enum { N = sizeof(refusals) / sizeof(refusals[0]) };
    char dirs[N][PATH_MAX];
    const char *paths[N + 1];
    log_seen seen = { 0 };

    (void)state;
    for (size_t i = 0; i < N; i++) {
        snprintf(dirs[i], sizeof(dirs[i]), "%s/%s", FAKE, refusals[i].dir);
        paths[i] = dirs[i];
    }
    paths[N] = NULL;
    atx_plugins *reg = registry(paths, &seen);
    assert_int_equal(atx_plugins_scan(reg), 0);
    assert_int_equal(atx_plugins_count(reg), N);
    assert_int_equal(seen.warnings, N);
    for (size_t i = 0; i < N; i++) {
        const atx_plugin_info *p = atx_plugins_at(reg, i);
        assert_string_equal(p->name, refusals[i].name);
        assert_true(p->refused);
    }
    atx_plugins_free(reg);
}

static void check_loads(const char *dir, const char *name, atx_plugin_kind kind,
                        const char *version)
{
    char d[PATH_MAX], path[PATH_MAX];
    const char *dirs[] = { d, NULL };
    const atx_plugin_descriptor *desc = SENTINEL;
    log_seen seen = { 0 };

    snprintf(d, sizeof(d), "%s/%s", FAKE, dir);
    snprintf(path, sizeof(path), "%s/%s.so", d, name);
    atx_plugins *reg = registry(dirs, &seen);
    int r = atx_plugins_find(reg, kind, name, &desc);
    if (r != 0)
        fail_msg("%s/%s: find returned %d: %s", dir, name, r, atx_error_last()->message);
    assert_ptr_not_equal(desc, SENTINEL);
    assert_non_null(desc);
    assert_string_equal(desc->name, name);
    assert_string_equal(desc->version, version);
    assert_int_equal(desc->kind, kind);
    assert_int_equal(desc->abi_major, ATX_ABI_MAJOR);
    assert_int_equal(desc->abi_minor, ATX_ABI_MINOR);
    assert_non_null(desc->vtable);
    atx_plugins_free(reg);

    reg = registry(dirs, &seen);
    assert_int_equal(atx_plugins_scan(reg), 0);
    assert_int_equal(atx_plugins_count(reg), 1);
    const atx_plugin_info *p = atx_plugins_at(reg, 0);
    assert_false(p->refused);
    assert_null(p->reason);
    assert_string_equal(p->path, path);
    assert_string_equal(p->name, name);
    assert_string_equal(p->version, version);
    assert_int_equal(p->kind, kind);
    assert_int_equal(p->abi_major, ATX_ABI_MAJOR);
    assert_int_equal(p->abi_minor, ATX_ABI_MINOR);
    assert_non_null(p->description);
    assert_true(strlen(p->description) > 0);
    atx_plugins_free(reg);
    assert_int_equal(seen.warnings + seen.others, 0);
}

static void test_good_plugins_load(void **state)
{
    (void)state;
    check_loads("good", "fakeagg", ATX_PLUGIN_AGGREGATOR, "1.0");
    /* The hand-written descriptor without a fault loads for every kind, so the
     * refusals above come from their one fault each. */
    check_loads("hand-aggregator", "handagg", ATX_PLUGIN_AGGREGATOR, "1.0");
    check_loads("hand-executor", "handexec", ATX_PLUGIN_EXECUTOR, "1.0");
    check_loads("hand-provisioner", "handprov", ATX_PLUGIN_PROVISIONER, "1.0");
}

static void test_real_plugins_load(void **state)
{
    const char *dirs[] = { ATX_TEST_PLUGIN_DIR, NULL };
    const atx_plugin_descriptor *d = NULL;
    static const struct {
        const char *name;
        atx_plugin_kind kind;
    } real[] = {
        { "local", ATX_PLUGIN_PROVISIONER },
        { "exec", ATX_PLUGIN_EXECUTOR },
        { "junit", ATX_PLUGIN_AGGREGATOR },
        { "jsonl", ATX_PLUGIN_AGGREGATOR },
    };

    (void)state;
    atx_plugins *reg = registry(dirs, NULL);
    for (size_t i = 0; i < sizeof(real) / sizeof(real[0]); i++) {
        int r = atx_plugins_find(reg, real[i].kind, real[i].name, &d);
        if (r != 0)
            fail_msg("%s: %s", real[i].name, atx_error_last()->message);
        assert_string_equal(d->name, real[i].name);
    }
    atx_plugins_free(reg);
}

static void test_missing_plugin_not_found(void **state)
{
    const char *dirs[] = { FAKE "/good", FAKE "/does-not-exist", NULL };
    const atx_plugin_descriptor *d = SENTINEL;

    (void)state;
    atx_plugins *reg = registry(dirs, NULL);
    assert_int_equal(atx_plugins_find(reg, ATX_PLUGIN_AGGREGATOR, "nosuchplugin", &d),
                     ATX_ENOTFOUND);
    assert_ptr_equal(d, SENTINEL);
    assert_non_null(strstr(atx_error_last()->message, "nosuchplugin"));
    /* A directory of the path that does not exist is no error. */
    assert_int_equal(atx_plugins_find(reg, ATX_PLUGIN_AGGREGATOR, "fakeagg", &d), 0);
    assert_int_equal(atx_plugins_scan(reg), 0);
    assert_int_equal(atx_plugins_count(reg), 1);
    atx_plugins_free(reg);

    /* An empty path finds nothing. */
    const char *none[] = { NULL };
    reg = registry(none, NULL);
    d = SENTINEL;
    assert_int_equal(atx_plugins_find(reg, ATX_PLUGIN_AGGREGATOR, "fakeagg", &d),
                     ATX_ENOTFOUND);
    assert_ptr_equal(d, SENTINEL);
    assert_int_equal(atx_plugins_scan(reg), 0);
    assert_int_equal(atx_plugins_count(reg), 0);
    atx_plugins_free(reg);
}

static void test_kind_mismatch_refused(void **state)
{
    const char *dirs[] = { FAKE "/good", NULL };
    const atx_plugin_descriptor *d = SENTINEL;

    (void)state;
    atx_plugins *reg = registry(dirs, NULL);
    assert_int_equal(atx_plugins_find(reg, ATX_PLUGIN_EXECUTOR, "fakeagg", &d), ATX_EPLUGIN);
    assert_ptr_equal(d, SENTINEL);
    const char *msg = atx_error_last()->message;
    assert_non_null(strstr(msg, FAKE "/good/fakeagg.so"));
    assert_non_null(strstr(msg, "aggregator"));
    assert_non_null(strstr(msg, "executor"));
    assert_null(strchr(msg, '\n'));
    assert_int_equal(atx_plugins_find(reg, ATX_PLUGIN_PROVISIONER, "fakeagg", &d), ATX_EPLUGIN);
    assert_ptr_equal(d, SENTINEL);
    /* The mismatch does not spoil the plugin for its own kind. */
    assert_int_equal(atx_plugins_find(reg, ATX_PLUGIN_AGGREGATOR, "fakeagg", &d), 0);
    assert_string_equal(d->name, "fakeagg");
    atx_plugins_free(reg);
}

/* Names are file stems, never paths: with FAKE in the path, "good/fakeagg"
 * would name a real plugin file if the loader accepted it. */
static void test_path_like_names_refused(void **state)
{
    const char *dirs[] = { FAKE, FAKE "/order-a", NULL };
    static const char *const bad[] = {
        "good/fakeagg", "../good/fakeagg", "./fakeagg", "/etc/passwd", "..", ".", "",
        ".hidden", "fake agg", "dup/", "dup\n",
    };

    (void)state;
    atx_plugins *reg = registry(dirs, NULL);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const atx_plugin_descriptor *d = SENTINEL;
        int r = atx_plugins_find(reg, ATX_PLUGIN_AGGREGATOR, bad[i], &d);
        if (r != ATX_EINVAL)
            fail_msg("name '%s': find returned %d (%s), want ATX_EINVAL", bad[i], r,
                     atx_strerror(r));
        assert_ptr_equal(d, SENTINEL);
    }
    const atx_plugin_descriptor *d = SENTINEL;
    assert_int_equal(atx_plugins_find(reg, ATX_PLUGIN_AGGREGATOR, NULL, &d), ATX_EINVAL);
    assert_ptr_equal(d, SENTINEL);
    /* Nothing was loaded by any of them; a plain name still works. */
    assert_int_equal(atx_plugins_count(reg), 0);
    assert_int_equal(atx_plugins_find(reg, ATX_PLUGIN_AGGREGATOR, "dup", &d), 0);
    atx_plugins_free(reg);
}

static const char *found_version(const char *const *dirs, int use_env)
{
    atx_plugins_opts opts = ATX_PLUGINS_OPTS_INIT;
    atx_plugins *reg = NULL;
    const atx_plugin_descriptor *d = NULL;
    const char *version;

    opts.paths = dirs;
    opts.no_environment = !use_env;
    opts.no_default_dir = 1;
    assert_int_equal(atx_plugins_new(&opts, &reg), 0);
    int r = atx_plugins_find(reg, ATX_PLUGIN_AGGREGATOR, "dup", &d);
    if (r != 0) {
        atx_plugins_free(reg);
        return r == ATX_ENOTFOUND ? "not found" : "refused";
    }
    /* Versions are static strings of the plugin: copy out before unloading. */
    version = strcmp(d->version, "a") == 0 ? "a" : strcmp(d->version, "b") == 0 ? "b" : "?";
    atx_plugins_free(reg);
    return version;
}

static void test_search_order(void **state)
{
    const char *ab[] = { FAKE "/order-a", FAKE "/order-b", NULL };
    const char *ba[] = { FAKE "/order-b", FAKE "/order-a", NULL };
    const char *missing_a[] = { FAKE "/good", FAKE "/order-a", NULL };
    const char *bad_a[] = { FAKE "/order-bad", FAKE "/order-a", NULL };
    const char *a[] = { FAKE "/order-a", NULL };

    (void)state;
    /* The first directory holding the name wins. */
    assert_string_equal(found_version(ab, 0), "a");
    assert_string_equal(found_version(ba, 0), "b");
    assert_string_equal(found_version(missing_a, 0), "a");
    /* A refused file is not skipped in favour of a later one. */
    assert_string_equal(found_version(bad_a, 0), "refused");
    assert_non_null(strstr(atx_error_last()->message, FAKE "/order-bad/dup.so"));

    /* Scan lists a name once: the first file wins there too. */
    atx_plugins *reg = registry(ba, NULL);
    assert_int_equal(atx_plugins_scan(reg), 0);
    assert_int_equal(atx_plugins_count(reg), 1);
    assert_string_equal(atx_plugins_at(reg, 0)->path, FAKE "/order-b/dup.so");
    assert_string_equal(atx_plugins_at(reg, 0)->version, "b");
    atx_plugins_free(reg);

    /* Option paths come before ATX_PLUGIN_PATH, which is used only when asked. */
    assert_int_equal(setenv("ATX_PLUGIN_PATH", FAKE "/good:" FAKE "/order-b", 1), 0);
    assert_string_equal(found_version(a, 1), "a");
    assert_string_equal(found_version(NULL, 1), "b");
    assert_string_equal(found_version(NULL, 0), "not found");
    assert_int_equal(setenv("ATX_PLUGIN_PATH", "", 1), 0);
}

/* Never the current directory implicitly, not even through empty elements of
 * ATX_PLUGIN_PATH. */
static void test_not_from_current_directory(void **state)
{
    char cwd[PATH_MAX];
    atx_plugins_opts opts = ATX_PLUGINS_OPTS_INIT;
    atx_plugins *reg = NULL;
    const atx_plugin_descriptor *d = SENTINEL;

    (void)state;
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(FAKE "/good"), 0);
    assert_int_equal(setenv("ATX_PLUGIN_PATH", "::", 1), 0);
    opts.no_default_dir = 1;
    assert_int_equal(atx_plugins_new(&opts, &reg), 0);
    int r = atx_plugins_find(reg, ATX_PLUGIN_AGGREGATOR, "fakeagg", &d);
    int scanned = atx_plugins_scan(reg);
    size_t count = atx_plugins_count(reg);
    atx_plugins_free(reg);
    assert_int_equal(setenv("ATX_PLUGIN_PATH", "", 1), 0);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(r, ATX_ENOTFOUND);
    assert_ptr_equal(d, SENTINEL);
    assert_int_equal(scanned, 0);
    assert_int_equal(count, 0);
}

static void test_bad_arguments(void **state)
{
    const char *dirs[] = { FAKE "/good", NULL };
    const atx_plugin_descriptor *d = SENTINEL;

    (void)state;
    assert_int_equal(atx_plugins_new(NULL, NULL), ATX_EINVAL);
    atx_plugins *reg = registry(dirs, NULL);
    assert_int_equal(atx_plugins_find(reg, ATX_PLUGIN_AGGREGATOR, "fakeagg", NULL), ATX_EINVAL);
    assert_int_equal(atx_plugins_find(NULL, ATX_PLUGIN_AGGREGATOR, "fakeagg", &d), ATX_EINVAL);
    assert_ptr_equal(d, SENTINEL);
    assert_int_equal(atx_plugins_scan(NULL), ATX_EINVAL);
    assert_int_equal(atx_plugins_count(NULL), 0);
    assert_null(atx_plugins_at(NULL, 0));
    assert_null(atx_plugins_at(reg, 0));
    atx_plugins_free(reg);
    atx_plugins_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_refuses_each_bad_plugin),
        cmocka_unit_test(test_scan_records_each_bad_plugin),
        cmocka_unit_test(test_scan_all_bad_directories),
        cmocka_unit_test(test_good_plugins_load),
        cmocka_unit_test(test_real_plugins_load),
        cmocka_unit_test(test_missing_plugin_not_found),
        cmocka_unit_test(test_kind_mismatch_refused),
        cmocka_unit_test(test_path_like_names_refused),
        cmocka_unit_test(test_search_order),
        cmocka_unit_test(test_not_from_current_directory),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
