/*
 * The fmf metadata reader (executors/fmf/fmf.h): trees under
 * tests/data/fmf/<case>/, and fmf_condition / fmf_filter / fmf_merge /
 * fmf_adjust / fmf_parse_buffer on their own. Expected values follow fmf's
 * documentation (docs/features.rst, docs/context.rst) and its Python source.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <pthread.h>
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

#include "../executors/fmf/fmf.h"

#ifndef FMF_DATA
#error "FMF_DATA (the fixture folder) must be defined"
#endif

static char err[1024];

/* Loads fixture case with a context given as JSON text (or NULL). */
static fmf_tree *load(const char *name, const char *ctx_json, unsigned flags)
{
    char root[512];
    fmf_tree *t = NULL;
    json_object *ctx = ctx_json ? json_tokener_parse(ctx_json) : NULL;

    snprintf(root, sizeof(root), "%s/%s", FMF_DATA, name);
    if (ctx_json)
        assert_non_null(ctx);
    int rc = fmf_tree_load_ex(root, ctx, flags, &t, err, sizeof(err));
    if (rc != 0)
        fail_msg("loading %s: %d %s", name, rc, err);
    json_object_put(ctx);
    assert_non_null(t);
    return t;
}

/* Loading case must fail with err starting "<FMF_DATA>/<case>/<where>:" */
static void load_fails(const char *name, const char *where, const char *what)
{
    char root[512], prefix[600];
    fmf_tree *t = (fmf_tree *)0x1;

    snprintf(root, sizeof(root), "%s/%s", FMF_DATA, name);
    snprintf(prefix, sizeof(prefix), "%s/%s: ", root, where);
    assert_true(fmf_tree_load(root, NULL, &t, err, sizeof(err)) < 0);
    assert_ptr_equal(t, (fmf_tree *)0x1);      /* untouched */
    if (strncmp(err, prefix, strlen(prefix)) != 0)
        fail_msg("error '%s' does not start with '%s'", err, prefix);
    if (!strstr(err, what))
        fail_msg("error '%s' does not say '%s'", err, what);
    assert_null(strchr(err, '\n'));
}

/* The node's value of key must equal the JSON text want ("null" for null,
 * NULL for absent). */
static void expect_key(const fmf_node *n, const char *key, const char *want)
{
    json_object *v, *w;
    bool has = json_object_object_get_ex(n->data, key, &v);

    if (!want) {
        if (has)
            fail_msg("%s: %s should be absent, is %s", n->name, key,
                     json_object_to_json_string(v));
        return;
    }
    if (!has)
        fail_msg("%s: %s is missing (want %s)", n->name, key, want);
    w = json_tokener_parse(want);
    if (!w && strcmp(want, "null") != 0)
        fail_msg("bad expected JSON %s", want);
    if (!json_object_equal(v, w))
        fail_msg("%s: %s is %s, want %s", n->name, key,
                 json_object_to_json_string_ext(v, JSON_C_TO_STRING_NOSLASHESCAPE), want);
    json_object_put(w);
}

static const fmf_node *find(const fmf_tree *t, const char *name)
{
    const fmf_node *n = fmf_tree_find(t, name);
    if (!n)
        fail_msg("no node %s", name);
    return n;
}

static void expect_where(const fmf_node *n, const char *file, int line, const char *dir)
{
    char want[600];

    snprintf(want, sizeof(want), "%s/%s", FMF_DATA, file);
    assert_non_null(n->file);
    assert_string_equal(n->file, want);
    assert_int_equal(n->line, line);
    snprintf(want, sizeof(want), "%s/%s", FMF_DATA, dir);
    assert_string_equal(n->dir, want);
}

/* ---- trees ---- */

static void test_inherit(void **state)
{
    static const char *const names[] = {
        "/a/b/c", "/base/leaf", "/base/noinherit", "/base/scatter", "/base/selected",
        "/base/selected/child", "/inline/nested",
    };
    fmf_tree *t = load("inherit", NULL, 0);
    const fmf_node *n;
    char root[512];

    (void)state;
    snprintf(root, sizeof(root), "%s/inherit", FMF_DATA);
    assert_string_equal(fmf_tree_root(t), root);
    /* Selected nodes in fmf's order; hidden files and folders, a nested
     * tree, a folder without metadata and a select:false leaf are absent. */
    assert_int_equal(fmf_tree_count(t), sizeof(names) / sizeof(names[0]));
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        assert_string_equal(fmf_tree_node(t, i)->name, names[i]);
    assert_null(fmf_tree_node(t, 99));
    assert_null(fmf_tree_find(t, "/empty-dir"));
    assert_null(fmf_tree_find(t, "/nested-tree"));
    assert_null(fmf_tree_find(t, "/.hidden"));
    assert_null(fmf_tree_find(t, "/notes"));
    assert_non_null(fmf_tree_find(t, "/base/hidden-leaf"));    /* exists, not selected */

    /* The root and branches exist too. */
    n = find(t, "/");
    expect_where(n, "inherit/main.fmf", 1, "inherit");
    expect_key(n, "summary", "\"top\"");
    n = find(t, "/inline");
    expect_where(n, "inherit/main.fmf", 8, "inherit");
    expect_key(n, "test", "\"./inline.sh\"");

    /* /child keys, nested, and a /a/b/c shortcut. */
    n = find(t, "/inline/nested");
    expect_where(n, "inherit/main.fmf", 11, "inherit");
    expect_key(n, "summary", "\"inline child\"");
    expect_key(n, "tier", "2");
    expect_key(n, "tag", "[\"top\"]");
    n = find(t, "/a/b/c");
    expect_where(n, "inherit/main.fmf", 15, "inherit");
    expect_key(n, "test", "\"./abc.sh\"");
    expect_key(n, "tier", "1");

    /* Across folders: base/main.fmf adds to the root's tag and environment. */
    n = find(t, "/base/leaf");
    expect_where(n, "inherit/base/leaf.fmf", 1, "inherit/base");
    expect_key(n, "tag", "[\"top\", \"base\"]");
    expect_key(n, "environment", "{\"A\": \"1\", \"B\": \"2\"}");
    expect_key(n, "summary", "\"top\"");
    expect_key(n, "tag+", NULL);

    /* Scattered over base/scatter.fmf and base/scatter/main.fmf: the later wins. */
    n = find(t, "/base/scatter");
    expect_where(n, "inherit/base/scatter/main.fmf", 1, "inherit/base/scatter");
    expect_key(n, "summary", "\"from scatter/main.fmf\"");
    expect_key(n, "test", "\"./one.sh\"");

    /* inherit: false */
    n = find(t, "/base/noinherit");
    expect_key(n, "test", "\"./alone.sh\"");
    expect_key(n, "tag", NULL);
    expect_key(n, "summary", NULL);
    expect_key(n, "/", NULL);

    /* select: true keeps a branch; its child inherits from it. */
    n = find(t, "/base/selected");
    expect_key(n, "test", "\"./parent.sh\"");
    n = find(t, "/base/selected/child");
    expect_key(n, "test", "\"./child.sh\"");
    expect_key(n, "tag", "[\"top\", \"base\"]");
    expect_where(n, "inherit/base/selected/main.fmf", 4, "inherit/base/selected");
    fmf_tree_free(t);
}

static void test_merge(void **state)
{
    fmf_tree *t = load("merge", NULL, 0);
    const fmf_node *n;

    (void)state;
    n = find(t, "/plus");
    expect_key(n, "list", "[\"a\", \"b\", \"c\", \"d\"]");
    expect_key(n, "text", "\"hello world!\"");
    expect_key(n, "dict", "{\"x\": 1, \"y\": 20, \"z\": 3, \"w\": 4}");
    expect_key(n, "num", "15");
    expect_key(n, "real", "2.5");
    expect_key(n, "steps", "[\"zero\", \"one\", \"two\"]");
    expect_key(n, "list+", NULL);

    n = find(t, "/minus");
    expect_key(n, "list", "[\"a\", \"c\"]");
    expect_key(n, "text", "\"hello\"");
    expect_key(n, "dict", "{\"y\": 2, \"z\": 3}");
    expect_key(n, "num", "7");
    expect_key(n, "desc", "\"details\"");

    n = find(t, "/regex");
    expect_key(n, "require", "[\"python3-foo\", \"bar\"]");
    expect_key(n, "text", "\"world hello\"");
    expect_key(n, "list", "[\"c\"]");
    expect_key(n, "dict", "{\"z\": 3}");
    expect_key(n, "desc", "\"\"");

    /* A dict merged with a list of dicts, and a list of dicts with a dict. */
    n = find(t, "/dictlist");
    expect_key(n, "discover",
               "[{\"how\": \"fmf\", \"filter\": \"tier: 1\", \"name\": \"upstream\"},"
               " {\"how\": \"fmf\", \"filter\": \"tier: 1\", \"name\": \"downstream\"}]");
    expect_key(n, "plans",
               "[{\"how\": \"fmf\", \"url\": \"one\", \"filter\": \"tier: 2\"},"
               " {\"how\": \"fmf\", \"url\": \"two\", \"filter\": \"tier: 2\"}]");

    /* Operations on one key apply in the order written. */
    expect_key(find(t, "/order-remove-first"), "list", "[\"a\", \"c\", \"d\"]");
    expect_key(find(t, "/order-append-first"), "list", "[\"a\", \"d\"]");

    /* Suffixes inside a dict merged into nothing are resolved too. */
    expect_key(find(t, "/nested-plus"), "fresh", "{\"key\": [1], \"other\": 2}");
    expect_key(find(t, "/override"), "list", "[\"only\"]");

    /* -, -~ and ~ of a missing key do nothing; + of one sets it. */
    n = find(t, "/absent");
    expect_key(n, "missing", NULL);
    expect_key(n, "added", "[\"new\"]");

    /* The parent keeps its own values. */
    expect_key(find(t, "/"), "list", "[\"a\", \"b\", \"c\"]");
    fmf_tree_free(t);
}

/* The node's error must start "<FMF_DATA>/<where>: " and say what. */
static void expect_error(const fmf_node *n, const char *where, const char *what)
{
    char prefix[600];

    snprintf(prefix, sizeof(prefix), "%s/%s: ", FMF_DATA, where);
    if (!n->error)
        fail_msg("%s has no error (want %s%s)", n->name, prefix, what);
    if (strncmp(n->error, prefix, strlen(prefix)) != 0 || !strstr(n->error, what))
        fail_msg("%s: error '%s' is not '%s...%s'", n->name, n->error, prefix, what);
    assert_null(strchr(n->error, '\n'));
}

/* A key that does not merge is the node's error, not the tree's. */
static void test_merge_error(void **state)
{
    fmf_tree *t = load("merge-error", NULL, 0);
    const fmf_node *n = find(t, "/child");

    (void)state;
    expect_error(n, "merge-error/main.fmf:4",
                 "/child: cannot merge key 'tag+': cannot add a str to a list");
    expect_key(n, "tag", "[\"a\"]");
    assert_int_equal(fmf_node_is_test(n), 1);
    assert_null(find(t, "/")->error);
    fmf_tree_free(t);
}

/* Node errors: the keys after a bad one still merge; nodes below share the
 * error; the other nodes are whole; a bad adjust rule leaves the ones
 * before it applied. */
static void test_node_errors(void **state)
{
    fmf_tree *t = load("node-errors", "{\"arch\": \"x86_64\"}", 0);
    const fmf_node *n;

    (void)state;
    assert_int_equal(fmf_tree_count(t), 3);
    n = find(t, "/broken");
    expect_error(n, "node-errors/main.fmf:3", "/broken: cannot merge key 'tag+'");
    expect_key(n, "test", "\"./t.sh\"");
    n = find(t, "/broken/below");
    assert_ptr_equal(n->error, find(t, "/broken")->error);
    assert_int_equal(fmf_node_is_test(n), 1);
    n = find(t, "/fine");
    assert_null(n->error);
    expect_key(n, "tag", "[\"a\", \"b\"]");
    n = find(t, "/bad-rule");
    expect_error(n, "node-errors/main.fmf:12",
                 "/bad-rule: adjust rule 2: cannot parse expression 'distro is maybe defined'");
    expect_key(n, "tier", "1");
    expect_key(n, "adjust", NULL);
    assert_int_equal(fmf_node_is_test(n), 1);
    fmf_tree_free(t);
}

static void test_adjust(void **state)
{
    fmf_tree *t;
    const fmf_node *n;

    (void)state;
    t = load("adjust", "{\"distro\": \"debian-11\", \"arch\": \"x86_64\"}", 0);
    assert_int_equal(fmf_tree_count(t), 2);
    n = find(t, "/second");
    /* !=, <, "and", "is defined"/"or"; fedora and the unknown dimension not. */
    expect_key(n, "tag", "[\"base\", \"not-fedora\", \"old-debian\", \"debian-x86\", \"defined\"]");
    expect_key(n, "environment", "{\"ARCH\": \"x86\"}");
    expect_key(n, "enabled", "true");          /* ~< debian-12.2: cannot decide */
    expect_key(n, "adjust", NULL);
    assert_int_equal(fmf_node_is_test(n), 1);
    /* continue: false stops at the first rule that applies. */
    n = find(t, "/first");
    expect_key(n, "summary", "\"first rule\"");
    expect_key(n, "tag", "[\"base\"]");        /* its own adjust replaced the parent's */
    expect_key(n, "adjust", NULL);
    expect_key(find(t, "/"), "adjust", NULL);
    fmf_tree_free(t);

    t = load("adjust", "{\"distro\": \"fedora-39\", \"arch\": \"aarch64\", \"initiator\": \"ci\"}", 0);
    n = find(t, "/second");
    /* ==, comma alternatives; debian < rules cannot decide on fedora. */
    expect_key(n, "tag", "[\"base\", \"fedora\", \"exotic-arch\", \"defined\"]");
    expect_key(n, "environment", NULL);
    expect_key(find(t, "/first"), "summary", NULL);
    fmf_tree_free(t);

    /* Minor comparison within one major: applies, disables the test. */
    t = load("adjust", "{\"distro\": \"debian-12.1\"}", 0);
    n = find(t, "/second");
    expect_key(n, "enabled", "false");
    assert_int_equal(fmf_node_is_test(n), 0);
    fmf_tree_free(t);

    /* No context: only what needs no dimension. */
    t = load("adjust", NULL, 0);
    expect_key(find(t, "/second"), "tag", "[\"base\", \"defined\"]");
    fmf_tree_free(t);

    /* Case: fmf compares case-sensitively, tmt does not. */
    t = load("adjust", "{\"distro\": \"Fedora-39\"}", 0);
    expect_key(find(t, "/second"), "tag", "[\"base\", \"not-fedora\", \"defined\"]");
    fmf_tree_free(t);
    t = load("adjust", "{\"distro\": \"Fedora-39\"}", FMF_CASE_INSENSITIVE);
    expect_key(find(t, "/second"), "tag", "[\"base\", \"fedora\", \"defined\"]");
    fmf_tree_free(t);

    /* Several values for one dimension: any may match. */
    t = load("adjust", "{\"arch\": [\"x86_64\", \"ppc64le\"]}", 0);
    expect_key(find(t, "/second"), "tag", "[\"base\", \"exotic-arch\", \"defined\"]");
    fmf_tree_free(t);
}

static void test_adjust_error(void **state)
{
    fmf_tree *t = load("adjust-error", NULL, 0);
    const fmf_node *n = find(t, "/child");

    (void)state;
    expect_error(n, "adjust-error/main.fmf:4", "cannot parse expression 'distro is maybe defined'");
    expect_key(n, "adjust", NULL);
    expect_key(n, "enabled", NULL);
    fmf_tree_free(t);
}

static void test_detect(void **state)
{
    fmf_tree *t = load("detect", NULL, 0);

    (void)state;
    assert_int_equal(fmf_node_is_test(find(t, "/plain")), 1);
    assert_int_equal(fmf_node_is_test(find(t, "/disabled")), 0);
    assert_int_equal(fmf_node_is_test(find(t, "/manual")), 0);
    assert_int_equal(fmf_node_is_test(find(t, "/story")), 0);
    assert_int_equal(fmf_node_is_test(find(t, "/no-test")), 0);
    /* YAML 1.2 (fmf reads with ruamel.yaml): "no" is a string, not false. */
    expect_key(find(t, "/enabled-no"), "enabled", "\"no\"");
    assert_int_equal(fmf_node_is_test(find(t, "/enabled-no")), 1);
    assert_int_equal(fmf_node_is_test(NULL), 0);
    fmf_tree_free(t);
}

static void test_yaml_types(void **state)
{
    fmf_tree *t = load("types", NULL, 0);
    const fmf_node *n = find(t, "/");
    json_object *v;

    (void)state;
    expect_key(n, "quoted", "\"123\"");
    expect_key(n, "int", "123");
    expect_key(n, "neg", "-7");
    expect_key(n, "hex", "31");
    expect_key(n, "oct", "15");
    expect_key(n, "leading-zero", "17");
    expect_key(n, "float", "1.5");
    expect_key(n, "exp", "1000.0");
    assert_true(json_object_object_get_ex(n->data, "exp", &v));
    assert_int_equal(json_object_get_type(v), json_type_double);
    expect_key(n, "bool-true", "true");
    expect_key(n, "bool-True", "true");
    expect_key(n, "yes-is-string", "\"yes\"");
    expect_key(n, "null-value", "null");
    expect_key(n, "empty", "null");
    expect_key(n, "date", "\"2024-01-02\"");
    expect_key(n, "list", "[1, \"1\", \"one\", 2.0]");
    expect_key(n, "alias", "{\"a\": 1, \"b\": 2}");
    expect_key(n, "merged", "{\"a\": 1, \"b\": 3}");
    expect_key(n, "block", "\"line1\\nline2\\n\"");
    expect_key(n, "tagged", "\"42\"");
    /* "%YAML 1.1": yes/off are booleans, 017 is octal. */
    n = find(t, "/yaml11");
    expect_key(n, "yes-is-bool", "true");
    expect_key(n, "off-is-bool", "false");
    expect_key(n, "octal", "15");
    expect_key(n, "int", "123");        /* inherited */
    fmf_tree_free(t);
}

static void test_errors(void **state)
{
    (void)state;
    /* libyaml's 0-based mark printed 1-based, naming the file in a subfolder. */
    load_fails("bad-yaml", "sub/broken.fmf:3", "mapping values are not allowed");
    load_fails("bad-version", ".fmf/version:1", "invalid format version 'one'");
    load_fails("dup-key", "main.fmf:5", "duplicate key 'tier'");
    load_fails("deep", "main.fmf:2", "nested deeper than 64 levels");
    load_fails("non-mapping", "main.fmf:1", "the top level must be a mapping, not a list");
}

/* ---- trees made on the fly ---- */

static char tmproot[256];

static void put(const char *rel, const char *text)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", tmproot, rel);
    for (char *s = path + strlen(tmproot) + 1; (s = strchr(s, '/')) != NULL; s++) {
        *s = '\0';
        mkdir(path, 0755);
        *s = '/';
    }
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int tmp_setup(void **state)
{
    (void)state;
    snprintf(tmproot, sizeof(tmproot), "/tmp/atx-test-fmf-XXXXXX");
    assert_non_null(mkdtemp(tmproot));
    return 0;
}

static int tmp_teardown(void **state)
{
    char cmd[300];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmproot);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static void test_version_and_root(void **state)
{
    fmf_tree *t = NULL;
    char want[400], sub[300];

    (void)state;
    put("main.fmf", "test: ./t.sh\n");
    /* No .fmf/version: named with line 1. */
    assert_true(fmf_tree_load(tmproot, NULL, &t, err, sizeof(err)) < 0);
    snprintf(want, sizeof(want), "%s/.fmf/version:1: cannot read the format version:", tmproot);
    assert_memory_equal(err, want, strlen(want));
    assert_null(t);

    /* Python's int() takes surrounding white space. */
    put(".fmf/version", " 1 \n");
    assert_int_equal(fmf_tree_load(tmproot, NULL, &t, err, sizeof(err)), 0);
    assert_int_equal(fmf_tree_count(t), 1);
    assert_string_equal(fmf_tree_node(t, 0)->name, "/");       /* a lone root is a leaf */
    fmf_tree_free(t);
    t = NULL;

    put(".fmf/version", "1.0\n");
    assert_true(fmf_tree_load(tmproot, NULL, &t, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, ".fmf/version:1: invalid format version '1.0'"));
    put(".fmf/version", "1\n");

    /* A root that does not exist. */
    snprintf(sub, sizeof(sub), "%s/nope", tmproot);
    assert_true(fmf_tree_load(sub, NULL, &t, err, sizeof(err)) < 0);
    snprintf(want, sizeof(want), "%s: ", sub);
    assert_memory_equal(err, want, strlen(want));

    /* A tiny buffer still gets a terminated (truncated) message. */
    memset(err, 'x', sizeof(err));
    assert_true(fmf_tree_load(sub, NULL, &t, err, 8) < 0);
    assert_int_equal(strlen(err), 7);
    assert_true(fmf_tree_load(sub, NULL, &t, NULL, 0) < 0);
    assert_null(t);
}

static void test_symlinks_and_order(void **state)
{
    fmf_tree *t = NULL;
    char link[400], target[400];

    (void)state;
    put(".fmf/version", "1\n");
    put("main.fmf", "tag: [root]\n");
    put("a-b/main.fmf", "test: ./ab.sh\n");
    put("a/main.fmf", "test: ./a.sh\n/z: {}\n/b: {}\n");
    put("loop/main.fmf", "test: ./loop.sh\n");
    /* A link to its own folder: entered once, not forever. */
    snprintf(link, sizeof(link), "%s/loop/again", tmproot);
    snprintf(target, sizeof(target), "%s/loop", tmproot);
    assert_int_equal(symlink(target, link), 0);
    /* A link to the root: a folder holding .fmf, i.e. another tree. */
    snprintf(link, sizeof(link), "%s/loop/root", tmproot);
    assert_int_equal(symlink(tmproot, link), 0);
    /* A dangling link and a FIFO named like metadata are ignored. */
    snprintf(link, sizeof(link), "%s/dangling.fmf", tmproot);
    assert_int_equal(symlink("/nonexistent/x.fmf", link), 0);
    snprintf(link, sizeof(link), "%s/fifo.fmf", tmproot);
    assert_int_equal(mkfifo(link, 0644), 0);

    assert_int_equal(fmf_tree_load(tmproot, NULL, &t, err, sizeof(err)), 0);
    /* Depth first, siblings by name: /a's children before /a-b. */
    assert_string_equal(fmf_tree_node(t, 0)->name, "/a/b");
    assert_string_equal(fmf_tree_node(t, 1)->name, "/a/z");
    assert_string_equal(fmf_tree_node(t, 2)->name, "/a-b");
    assert_non_null(fmf_tree_find(t, "/loop/again"));
    assert_null(fmf_tree_find(t, "/loop/again/again"));
    assert_null(fmf_tree_find(t, "/loop/root"));
    assert_null(fmf_tree_find(t, "/fifo"));
    assert_null(fmf_tree_find(t, "/dangling"));
    fmf_tree_free(t);
}

static void test_tree_limits(void **state)
{
    fmf_tree *t = NULL;
    char *deep;
    size_t n = 0;

    (void)state;
    put(".fmf/version", "1\n");
    /* A chain of node names far deeper than any folder tree. */
    deep = malloc(4 * (FMF_MAX_NODE_DEPTH + 10) + 32);
    assert_non_null(deep);
    for (int i = 0; i < FMF_MAX_NODE_DEPTH + 10; i++)
        n += (size_t)sprintf(deep + n, "/n%d", i % 10);
    strcpy(deep + n, ": {test: x}\n");
    put("main.fmf", deep);
    free(deep);
    assert_true(fmf_tree_load(tmproot, NULL, &t, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "main.fmf:1: nodes nested deeper than"));

    put("main.fmf", "/: {inherit: maybe}\n");
    assert_true(fmf_tree_load(tmproot, NULL, &t, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "main.fmf:1: /: fmf directive 'inherit' must be true or false"));
    put("main.fmf", "/: {color: red}\n");
    assert_true(fmf_tree_load(tmproot, NULL, &t, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "unknown fmf directive 'color'"));
    put("main.fmf", "x: 1\n/child: [not, a, mapping]\n");
    assert_true(fmf_tree_load(tmproot, NULL, &t, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "main.fmf:2: /child: must be a mapping, not a list"));
    put("main.fmf", "adjust: 3\n");
    assert_int_equal(fmf_tree_load(tmproot, NULL, &t, err, sizeof(err)), 0);
    assert_non_null(fmf_tree_find(t, "/")->error);
    assert_non_null(strstr(fmf_tree_find(t, "/")->error, "main.fmf:1: /: invalid adjust rules"));
    fmf_tree_free(t);
    put("main.fmf", "\xef\xbb\xbf# BOM and a comment only\n");
    assert_int_equal(fmf_tree_load(tmproot, NULL, &t, err, sizeof(err)), 0);
    fmf_tree_free(t);
}

/* ---- conditions ---- */

typedef struct ccase {
    const char *ctx;
    const char *expr;
    int want;
} ccase;

static void test_conditions(void **state)
{
    static const ccase cases[] = {
        /* docs/context.rst, "Comparison" and "Equality vs Comparison" */
        { "git-2.3.4", "d < git-3", 1 },
        { "git-2", "d < git-3.2.1", 1 },
        { "git", "d < git-3.2.1", -1 },
        { "git-2.3.4", "d == git-2.3.4", 1 },
        { "git-2.3.4", "d == git-2.3", 1 },
        { "git-2.3.4", "d == git-2", 1 },
        { "git-2.3.4", "d == git", 1 },
        { "git-2.3.4", "d != git-1", 1 },
        { "git-2.3.4", "d != fmf", 1 },
        { "git-2.3.4", "d >= git-2", 1 },
        { "git-2.3.4", "d >= git-3", 0 },
        { "git-2.3.4", "d >= fmf-2", -1 },
        /* "Major Version" table for ~< */
        { "centos-7.8", "d ~< centos-7.9", 1 },
        { "centos-7.8", "d ~< centos-8.2", -1 },
        { "centos-7.8", "d ~< centos-8", 1 },
        { "centos-7.9", "d ~< centos-7.9", 0 },
        { "centos-7", "d ~< centos-7.9", -1 },
        { "centos-7", "d ~< centos-8", 1 },
        { "centos-8.1", "d ~< centos-8.2", 1 },
        { "centos-8.1", "d ~< centos-8", 0 },
        { "centos-8.2", "d ~< centos-8.2", 0 },
        { "centos-8", "d ~< centos-8.2", -1 },
        /* special cases listed in the docs */
        { "fedora", "d < fedora-33", -1 },
        { "fedora-33", "d == fedora", 1 },
        { "fedora", "d == fedora-33", 0 },
        { "fedora-33", "d < fedora-rawhide", 1 },
        { "centos-8.4.0", "d == centos", 1 },
        { "centos-8.4.0", "d < centos-9", 1 },
        { "centos-8.4.0", "d ~< centos-9", 1 },
        { "centos-8.4.0", "d ~< centos-9.2", -1 },
        { "centos-stream-9", "d == centos-stream-9", 1 },
        { "centos-stream-9", "d < centos-stream-10", 1 },
        { "rhel-9.2", "d >= rhel-9.1", 1 },
        { "rhel-9.2", "d <= rhel-9", 1 },
        { "debian-12", "d < debian-13", 1 },
        { "debian-12", "d > fedora-33", -1 },
        /* syntax: '=' is '==', commas are or, no spaces needed */
        { "fedora-33", "d = fedora-33", 1 },
        { "fedora-33", "d==fedora-33", 1 },
        { "fedora-33", "d == fedora-32, fedora-33", 1 },
        { "fedora-33", "d < fedora-30, rhel-8", 0 },
        { "fedora-33", "d ~= fedora-33", 1 },
        { "fedora-33", "d ~!= fedora-33", 0 },
        /* regular expressions: search, Python syntax */
        { "fedora-33", "d ~ ^fed", 1 },
        { "fedora-33", "d ~ ora-\\d+$", 1 },
        { "fedora-33", "d !~ ^rhel", 1 },
        { "fedora-33", "d ~ ^(?:fedora|rhel)-[3-9]{2}$", 1 },
        /* boolean logic with cannot-decide */
        { "fedora-33", "d == fedora and x is defined", 0 },
        { "fedora-33", "x == 1 or d == fedora", 1 },
        { "fedora-33", "x == 1 and d == rhel", 0 },
        { "fedora-33", "x == 1 and d == fedora", -1 },
        { "fedora-33", "x == 1 or d == rhel", -1 },
        { "fedora-33", "d == rhel or d == fedora and x == 1", -1 },
        { "fedora-33", "x is not defined", 1 },
        { "fedora-33", "d is defined", 1 },
        { "fedora-33", "true", 1 },
        { "fedora-33", "false or d == fedora", 1 },
        { "fedora-33", "false and x == 1", 0 },
        /* "or"/"and" only as words */
        { "android-13", "d == android", 1 },
        { "fedora-33", "d == fedora-33 or", -2 },
    };
    char ctx_text[128];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(ctx_text, sizeof(ctx_text), "{\"d\": \"%s\"}", cases[i].ctx);
        json_object *ctx = json_tokener_parse(ctx_text);
        int got = fmf_condition(cases[i].expr, ctx, err, sizeof(err));
        if (got != cases[i].want)
            fail_msg("d=%s: '%s' gave %d, want %d (%s)", cases[i].ctx, cases[i].expr, got,
                     cases[i].want, err);
        json_object_put(ctx);
    }
    /* Case-insensitive comparison only when asked. */
    json_object *ctx = json_tokener_parse("{\"distro\": \"CentOS-Stream-9\"}");
    assert_int_equal(fmf_condition("distro == centos-stream-9", ctx, err, sizeof(err)), 0);
    assert_int_equal(fmf_condition_ex("distro == centos-stream-9", ctx, FMF_CASE_INSENSITIVE,
                                      err, sizeof(err)), 1);
    assert_int_equal(fmf_condition_ex("distro < CENTOS-stream-10", ctx, FMF_CASE_INSENSITIVE,
                                      err, sizeof(err)), 1);
    /* A NULL context defines nothing. */
    assert_int_equal(fmf_condition("distro == fedora", NULL, err, sizeof(err)), -1);
    assert_int_equal(fmf_condition("distro is not defined", NULL, err, sizeof(err)), 1);
    json_object_put(ctx);
}

static void test_condition_errors(void **state)
{
    static const char *const bad[] = {
        "", "   ", "distro", "distro ==", "and distro == x", "distro == x and",
        " or distro == x", "distro is maybe", "distro ~ (", "distro ~ [", "== fedora",
        "distro ~ a(?=b)", "distro !~ \\", "distro ~ a\\q",
        /* glibc's regcomp would build these for minutes: refused */
        "distro ~ a+++", "distro ~ *a", "distro ~ ((a{100}){100}){100}",
    };
    json_object *ctx = json_tokener_parse("{\"distro\": \"fedora\"}");

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        int got = fmf_condition(bad[i], ctx, err, sizeof(err));
        if (got != -2)
            fail_msg("'%s' gave %d, want -2", bad[i], got);
        assert_true(err[0] != '\0');
    }
    assert_int_equal(fmf_condition(NULL, NULL, err, sizeof(err)), -2);
    /* As in fmf, a regular expression is only compiled when a value is
     * there to match: a missing dimension cannot decide first. */
    assert_int_equal(fmf_condition("other ~ (", ctx, err, sizeof(err)), -1);
    json_object_put(ctx);
}

/* ---- filters ---- */

static void test_filter(void **state)
{
    static const struct {
        const char *expr;
        int want;
    } cases[] = {
        { "tag: smoke", 1 },
        { "tag: slow", 0 },
        { "tag: -slow", 1 },
        { "tag: -smoke", 0 },
        { "tag: smoke & tier: 1", 1 },
        { "tag: smoke & tier: 2", 0 },
        { "tag: slow | tier: 1", 1 },
        { "tag: slow, fast", 1 },
        { "tag: slow, -fast", 0 },
        { "tag: smoke & tag: fast", 1 },
        { "tag: smoke & tag: slow", 0 },
        { "tag: sm.*", 1 },                 /* regular expressions... */
        { "tag: sm", 0 },                   /* ...matching the whole value */
        { "tag: \\w+ke", 1 },
        { "enabled: True", 1 },             /* values as Python's str() */
        { "priority: 3", 1 },
        { "ratio: 0.5", 1 },
        { "component: a", 1 },
        { "tag: smoke | missing: x", 0 },   /* a missing key fails the filter */
        { "missing: -x", 0 },
        { "  tier:1  ", 1 },
        { "", 1 },
    };
    json_object *data = json_tokener_parse(
        "{\"tag\": [\"smoke\", \"fast\"], \"tier\": \"1\", \"enabled\": true,"
        " \"priority\": 3, \"ratio\": 0.5, \"component\": [\"a\"]}");

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = fmf_filter(cases[i].expr, data, err, sizeof(err));
        if (got != cases[i].want)
            fail_msg("'%s' gave %d, want %d (%s)", cases[i].expr, got, cases[i].want, err);
    }
    assert_int_equal(fmf_filter(NULL, data, err, sizeof(err)), 1);
    assert_true(fmf_filter("tag smoke", data, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "invalid filter 'tag smoke'"));
    assert_true(fmf_filter("tag: (", data, err, sizeof(err)) < 0);
    assert_true(fmf_filter("tag: x", NULL, err, sizeof(err)) < 0);
    json_object_put(data);
}

/* Python regular expressions (fmf uses re) run on POSIX regcomp. */
static void test_regex_dialect(void **state)
{
    static const struct {
        const char *value, *pattern;
        int want;
    } cases[] = {
        { "fedora-33", "fedora-\\d+", 1 },
        { "fedora-33", "\\w+-\\d{2}", 1 },
        { "fedora-33", "\\w+-\\d{3}", 0 },
        { "fedora-33", "(?:fedora)-[3-9]{2}", 1 },  /* no "|": it splits clauses */
        { "fedora-33", "(?P<name>\\w+)-33", 1 },
        { "fedora-33", "fed.*?33", 1 },
        { "fedora-33", "[\\w-]+", 1 },
        { "a.b", "a\\.b", 1 },
        { "axb", "a\\.b", 0 },
        { "x{y}", "x{y}", 1 },
        { "tab\there", "tab\\there", 1 },
        { "a]b", "a[]]b", 1 },
        { "a-b", "a[\\-x]b", 1 },
        { "a^b", "a[\\^]b", 1 },
        { "a b", "a\\sb", 1 },
        { "ab", "a\\Sb", 0 },
        { "A1", "(?i)a\\d", 1 },
    };
    char expr[128];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_object *d = json_object_new_object();
        json_object_object_add(d, "k", json_object_new_string(cases[i].value));
        snprintf(expr, sizeof(expr), "k: %s", cases[i].pattern);
        int got = fmf_filter(expr, d, err, sizeof(err));
        if (got != cases[i].want)
            fail_msg("'%s' on '%s' gave %d, want %d (%s)", cases[i].pattern, cases[i].value, got,
                     cases[i].want, err);
        json_object_put(d);
    }
}

static void test_filter_tree(void **state)
{
    fmf_tree *t = load("inherit", NULL, 0);
    size_t hits = 0;

    (void)state;
    for (size_t i = 0; i < fmf_tree_count(t); i++) {
        int r = fmf_filter("tag: base & tier: 1", fmf_tree_node(t, i)->data, err, sizeof(err));
        assert_true(r >= 0);
        hits += (size_t)r;
    }
    /* leaf, scatter, selected, selected/child (noinherit has no tag) */
    assert_int_equal(hits, 4);
    fmf_tree_free(t);
}

/* ---- fmf_merge and fmf_adjust on their own ---- */

static int merge_text(const char *parent, const char *child, const char *want)
{
    json_object *p = json_tokener_parse(parent), *c = json_tokener_parse(child), *w;
    int rc;

    assert_non_null(p);
    assert_non_null(c);
    rc = fmf_merge(p, c, err, sizeof(err));
    if (rc == 0 && want) {
        w = json_tokener_parse(want);
        if (!json_object_equal(p, w))
            fail_msg("%s + %s = %s, want %s", parent, child, json_object_to_json_string(p), want);
        json_object_put(w);
    }
    json_object_put(p);
    json_object_put(c);
    return rc;
}

static void test_merge_api(void **state)
{
    (void)state;
    assert_int_equal(merge_text("{\"a\": \"x\"}", "{\"a+<\": \"pre-\"}", "{\"a\": \"pre-x\"}"), 0);
    assert_int_equal(merge_text("{\"n\": 1}", "{\"n+\": 0.5}", "{\"n\": 1.5}"), 0);
    assert_int_equal(merge_text("{\"n\": 1.5}", "{\"n-\": 1}", "{\"n\": 0.5}"), 0);
    assert_int_equal(merge_text("{\"d\": {\"a\": {\"b\": [1]}}}", "{\"d+\": {\"a+\": {\"b+\": [2]}}}",
                                "{\"d\": {\"a\": {\"b\": [1, 2]}}}"), 0);
    assert_int_equal(merge_text("{\"l\": [1, 2.0, \"1\", [3], true]}", "{\"l-\": [1.0, [3]]}",
                                "{\"l\": [2.0, \"1\"]}"), 0);
    assert_int_equal(merge_text("{\"l\": [1, 22, 3]}", "{\"l-~\": \"^2\"}", "{\"l\": [1, 3]}"), 0);
    assert_int_equal(merge_text("{\"s\": \"a.b.c\"}", "{\"s~\": [\"|\\\\.|-|\", \"#(.*)-c#<\\\\1>#\"]}",
                                "{\"s\": \"<a-b>\"}"), 0);
    assert_int_equal(merge_text("{\"s\": \"aaa\"}", "{\"s~\": \"/a*?/x/\"}", NULL), 0);
    assert_int_equal(merge_text("{\"s\": \"aaab\"}", "{\"s-\": \"a{2,}\"}", "{\"s\": \"b\"}"), 0);
    assert_int_equal(merge_text("{\"s\": \"aaab\"}", "{\"s~\": \"/^a{,2}/x/\"}",
                                "{\"s\": \"xab\"}"), 0);
    assert_int_equal(merge_text("{\"s\": \"a-b\"}", "{\"s~\": \";(?P<x>\\\\w)-(\\\\w);\\\\2\\\\g<x>;\"}",
                                "{\"s\": \"ba\"}"), 0);
    /* Errors: mismatched types, bad substitution, bad regex, items not dicts */
    assert_true(merge_text("{\"a\": [1]}", "{\"a+\": 2}", NULL) < 0);
    assert_non_null(strstr(err, "cannot merge key 'a+': cannot add a int to a list"));
    assert_true(merge_text("{\"a\": true}", "{\"a+\": 1}", NULL) < 0);
    assert_true(merge_text("{\"a\": null}", "{\"a+\": [1]}", NULL) < 0);
    assert_true(merge_text("{\"a\": 1}", "{\"a-\": \"x\"}", NULL) < 0);
    assert_true(merge_text("{\"a\": \"x\"}", "{\"a~\": \"/x/y\"}", NULL) < 0);
    assert_non_null(strstr(err, "is not <d>pattern<d>replacement<d>"));
    assert_true(merge_text("{\"a\": \"x\"}", "{\"a~\": \"/x/y/z/\"}", NULL) < 0);
    assert_true(merge_text("{\"a\": \"x\"}", "{\"a-\": \"(\"}", NULL) < 0);
    assert_non_null(strstr(err, "bad regular expression '('"));
    assert_true(merge_text("{\"a\": [1]}", "{\"a+\": {\"k\": 1}}", NULL) < 0);
    assert_true(merge_text("{\"a\": {\"k\": 1}}", "{\"a+\": [1]}", NULL) < 0);
    assert_true(merge_text("{\"a\": [1]}", "{\"a~\": \"/1/2/\"}", NULL) < 0);
    assert_true(fmf_merge(NULL, NULL, err, sizeof(err)) < 0);
}

static void test_adjust_api(void **state)
{
    json_object *ctx = json_tokener_parse("{\"arch\": \"s390x\"}");
    json_object *d;

    (void)state;
    /* A single rule as a dict; "when" missing means always; a bool "when". */
    d = json_tokener_parse("{\"a\": 1, \"adjust\": {\"a+\": 1}}");
    assert_int_equal(fmf_adjust(d, ctx, 0, err, sizeof(err)), 0);
    assert_int_equal(json_object_get_int(json_object_object_get(d, "a")), 2);
    assert_false(json_object_object_get_ex(d, "adjust", NULL));
    json_object_put(d);
    d = json_tokener_parse("{\"adjust\": [{\"when\": false, \"x\": 1}, {\"when\": true, \"y\": 1}]}");
    assert_int_equal(fmf_adjust(d, ctx, 0, err, sizeof(err)), 0);
    assert_false(json_object_object_get_ex(d, "x", NULL));
    assert_true(json_object_object_get_ex(d, "y", NULL));
    json_object_put(d);
    /* Rule keys when/because/continue are not data. */
    d = json_tokener_parse("{\"adjust\": {\"when\": \"arch == s390x\", \"because\": \"b\","
                           " \"continue\": true, \"z\": 1}}");
    assert_int_equal(fmf_adjust(d, ctx, 0, err, sizeof(err)), 0);
    assert_string_equal(json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN), "{\"z\":1}");
    json_object_put(d);
    /* Bad rules. */
    d = json_tokener_parse("{\"adjust\": [{\"continue\": \"no\"}]}");
    assert_true(fmf_adjust(d, ctx, 0, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "'continue' must be true or false"));
    json_object_put(d);
    d = json_tokener_parse("{\"adjust\": [{\"when\": 3}]}");
    assert_true(fmf_adjust(d, ctx, 0, err, sizeof(err)) < 0);
    json_object_put(d);
    d = json_tokener_parse("{\"adjust\": [\"x\"]}");
    assert_true(fmf_adjust(d, ctx, 0, err, sizeof(err)) < 0);
    json_object_put(d);
    json_object_put(ctx);
}

/* ---- durations ---- */

/* fmf_duration of a string (len bytes, so NULs may be in it): the seconds,
 * or -1 with err set. */
static int64_t duration_of(const char *text, size_t len)
{
    json_object *v = json_object_new_string_len(text, (int)len);
    int64_t secs = -1;

    assert_non_null(v);
    err[0] = '\0';
    if (fmf_duration(v, &secs, err, sizeof(err)) < 0) {
        assert_int_equal(secs, -1);          /* untouched */
        assert_true(err[0] != '\0');
        assert_null(strchr(err, '\n'));
        secs = -1;
    }
    json_object_put(v);
    return secs;
}

typedef struct dcase {
    const char *text;
    int64_t want;      /* -1: refused */
} dcase;

/* What tmt's duration_to_seconds (with tmt's default injected, as its
 * execute step calls it) gives for each. */
static void test_duration(void **state)
{
    static const dcase cases[] = {
        /* Amounts: plain seconds, units, sums, spaces as sleep takes them. */
        { "90", 90 }, { "90s", 90 }, { "5m", 300 }, { "1h", 3600 }, { "2d", 172800 },
        { "1h 30m", 5400 }, { "1h30m", 5400 }, { "5m 5m", 600 }, { "5m5m", 600 },
        { "1h 2 3m", 3600 + 2 + 180 }, { "1 m2   m", 180 }, { "5 m", 300 },
        { "5m ", 300 }, { "5m\n", 300 }, { "5m\t*2", 600 }, { "5m\xc2\xa0" "5m", 600 },
        /* Factors multiply the sum, last, rounded up. */
        { "1m*2.5", 150 }, { "5m*2", 600 }, { "5m *2", 600 }, { "*2 1m *3 4", 384 },
        { "*2 *3 1m4", 384 }, { "1s *3.3", 4 }, { "10s *0.3", 3 }, { "* 2", 600 },
        { "*1.5 1s", 2 }, { "2*3", 6 },
        /* A '+' before an amount, as sleep's arguments may have. */
        { "5m +5m", 600 }, { "+90", 90 }, { "1m +30s*2", 180 },
        /* Factors alone, or a sum of 0, multiply tmt's default (5m). */
        { "*2", 600 }, { "0", 300 }, { "0s *2", 600 },
        /* The longest that fits in nanoseconds. */
        { "9223372036", 9223372036 }, { "106751d", 9223286400 },
        /* Refused, as tmt refuses them. */
        { "5m -5m", -1 }, { "5m ++5m", -1 }, { "5m +", -1 }, { "5m+*2", -1 }, { "5x", -1 }, { "", -1 }, { " 5m", -1 }, { "\t5m", -1 },
        { "*10m", -1 }, { "**10", -1 }, { "10w", -1 }, { "1sm", -1 }, { "*10m 3", -1 },
        { "3 *10m", -1 }, { "1 1ss 5", -1 }, { "bad", -1 }, { "1.5m", -1 }, { "2*", -1 },
        { "*2.", -1 }, { "*.5", -1 }, { "5m,", -1 }, { "-5", -1 }, { "5 x", -1 },
        { "5m_", -1 }, { "5m\xc3\xa9", -1 },
        /* Refused by atx: nothing to wait (tmt would take it as no timeout),
         * too long for nanoseconds, digits other than ASCII. */
        { "*0", -1 }, { "0 *0", -1 }, { "9223372037", -1 }, { "106752d", -1 },
        { "99999999999999999999999", -1 }, { "\xd9\xa5m", -1 },
    };
    char big[512];
    json_object *v;
    int64_t secs;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t got = duration_of(cases[i].text, strlen(cases[i].text));
        if (got != cases[i].want)
            fail_msg("duration '%s': got %lld, want %lld (%s)", cases[i].text, (long long)got,
                     (long long)cases[i].want, err);
    }
    assert_int_equal(duration_of("5m\0", 3), -1);
    /* A factor far beyond a double's range. */
    big[0] = '*';
    memset(big + 1, '9', sizeof(big) - 2);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(duration_of(big, strlen(big)), -1);
    assert_non_null(strstr(err, "is longer than 9223372036 seconds"));
    assert_int_equal(duration_of("5x", 2), -1);
    assert_non_null(strstr(err, "invalid duration '5x'"));
    assert_int_equal(duration_of("*0", 2), -1);
    assert_non_null(strstr(err, "comes to 0 seconds"));
    /* No duration: the default; a number is its digits; other types not. */
    assert_int_equal(fmf_duration(NULL, &secs, err, sizeof(err)), 0);
    assert_int_equal(secs, FMF_DEFAULT_DURATION);
    v = json_object_new_int(90);
    assert_int_equal(fmf_duration(v, &secs, err, sizeof(err)), 0);
    assert_int_equal(secs, 90);
    json_object_put(v);
    v = json_object_new_int(-5);
    assert_true(fmf_duration(v, &secs, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "invalid duration '-5'"));
    json_object_put(v);
    v = json_object_new_double(2.5);
    assert_true(fmf_duration(v, &secs, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "a float, not a string"));
    json_object_put(v);
    v = json_object_new_array();
    assert_true(fmf_duration(v, &secs, err, sizeof(err)) < 0);
    json_object_put(v);
}

/* Durations in a tree: inherited, summed by `duration+`, multiplied by an
 * adjust rule's `duration+: "*2"` (the + appends the text); where each was
 * set. */
static void test_duration_tree(void **state)
{
    static const struct {
        const char *node, *text;
        int64_t plain, aarch64;
        int line, adj_line;
    } want[] = {
        { "/plain", NULL, 300, 600, 1, 2 },
        { "/product", "\"1m*2.5\"", 150, 300, 9, 2 },
        { "/sum", "\"5m5m\"", 600, 1200, 12, 2 },
        { "/bad", "\"5x\"", -1, -1, 15, 2 },
    };
    char file[600];
    fmf_tree *t;

    (void)state;
    snprintf(file, sizeof(file), "%s/duration/main.fmf", FMF_DATA);
    for (int arch = 0; arch < 2; arch++) {
        t = load("duration", arch ? "{\"arch\": \"aarch64\"}" : "{\"arch\": \"x86_64\"}", 0);
        for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
            const fmf_node *n = find(t, want[i].node);
            json_object *v = NULL;
            int64_t secs = -1, w = arch ? want[i].aarch64 : want[i].plain;
            const char *f;
            int line;

            assert_true(json_object_object_get_ex(n->data, "duration", &v));
            if (!arch && want[i].text)
                expect_key(n, "duration", want[i].text);
            if (fmf_duration(v, &secs, err, sizeof(err)) < 0)
                secs = -1;
            if (secs != w)
                fail_msg("%s (arch %d): %lld seconds, want %lld", n->name, arch,
                         (long long)secs, (long long)w);
            assert_null(n->error);
            fmf_node_where(t, n, "duration", &f, &line);
            assert_string_equal(f, file);
            assert_int_equal(line, arch ? want[i].adj_line : want[i].line);
        }
        fmf_tree_free(t);
    }
}

/* ---- fmf_parse_buffer: hostile YAML ---- */

static int parse(const char *text, json_object **out)
{
    *out = NULL;
    err[0] = '\0';
    return fmf_parse_buffer(text, strlen(text), "x.fmf", out, err, sizeof(err));
}

static void parse_fails(const char *text, const char *want)
{
    json_object *o = NULL;

    if (parse(text, &o) >= 0)
        fail_msg("'%s' parsed", text);
    assert_null(o);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("'%s': error '%s', want '%s...'", text, err, want);
}

static void test_parse_buffer(void **state)
{
    json_object *o;
    char *laughs, *p;

    (void)state;
    assert_int_equal(parse("", &o), 0);
    assert_null(o);
    assert_int_equal(parse("# only a comment\n", &o), 0);
    assert_null(o);
    assert_int_equal(parse("a: 1\n", &o), 0);
    assert_non_null(o);
    json_object_put(o);

    parse_fails("a: [1, 2\nb: 3\n", "x.fmf:");
    parse_fails("a: 1\n---\nb: 2\n", "x.fmf:2: expected a single document");
    parse_fails("just a scalar\n", "x.fmf:1: the top level must be a mapping, not a scalar");
    parse_fails("a: 1\nb: *nope\n", "x.fmf:2: unknown alias '*nope'");
    parse_fails("a: &x [1, *x]\n", "x.fmf:1: alias '*x' refers to a node that contains it");
    parse_fails("a: !custom 1\n", "x.fmf:1: unsupported tag '!custom'");
    parse_fails("a: !!int one\n", "x.fmf:1: 'one' is not an int");
    parse_fails("? [a, b]\n: 1\n", "x.fmf:1: a mapping key must be a scalar");
    parse_fails("~: 1\n", "x.fmf:1: a mapping key must not be null");
    parse_fails("a: 1\n\"a\": 2\n", "x.fmf:2: duplicate key 'a'");
    parse_fails("a: 1\nb: \xff\n", "x.fmf:2: invalid ");          /* not UTF-8 */
    parse_fails("\"a\\0b\": 1\n", "x.fmf:1: a mapping key must not hold a NUL");

    /* Billion laughs: every level ten aliases of the one before. */
    laughs = malloc(4096);
    assert_non_null(laughs);
    p = laughs + sprintf(laughs, "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for (int i = 1; i < 10; i++) {
        p += sprintf(p, "l%d: &l%d [", i, i);
        for (int k = 0; k < 10; k++)
            p += sprintf(p, "%s*l%d", k ? ", " : "", i - 1);
        p += sprintf(p, "]\n");
    }
    parse_fails(laughs, "x.fmf:");
    assert_non_null(strstr(err, "aliases expand to more than"));
    free(laughs);

    /* Deep nesting of both kinds refused, not overflowing the stack. */
    laughs = malloc(200000);
    assert_non_null(laughs);
    p = laughs + sprintf(laughs, "a: ");
    for (int i = 0; i < 50000; i++)
        *p++ = '[';
    *p = '\0';
    parse_fails(laughs, "x.fmf:1: nested deeper than 64 levels");
    p = laughs;
    for (int i = 0; i < 100; i++)
        p += sprintf(p, "%*sk:\n", i, "");
    parse_fails(laughs, "x.fmf:65: nested deeper than 64 levels");
    free(laughs);

    /* Too many values in one file. */
    laughs = malloc(2 * FMF_MAX_VALUES + 16);
    assert_non_null(laughs);
    p = laughs + sprintf(laughs, "a: [");
    for (int i = 0; i < FMF_MAX_VALUES; i++) {
        *p++ = '0';
        *p++ = ',';
    }
    strcpy(p, "]\n");
    parse_fails(laughs, "x.fmf:1: more than");
    free(laughs);
}

/* ---- threads: trees and conditions share no state ---- */

static void *load_many(void *arg)
{
    const char *ctx_text = arg;
    char e[256], root[512];

    snprintf(root, sizeof(root), "%s/adjust", FMF_DATA);
    for (int i = 0; i < 30; i++) {
        json_object *ctx = json_tokener_parse(ctx_text), *tag;
        fmf_tree *t = NULL;
        if (fmf_tree_load(root, ctx, &t, e, sizeof(e)) != 0)
            return (void *)1;
        tag = json_object_object_get(fmf_tree_find(t, "/second")->data, "tag");
        bool fedora = strstr(json_object_to_json_string(tag), "\"fedora\"") != NULL;
        fmf_tree_free(t);
        json_object_put(ctx);
        if (fedora != (strstr(ctx_text, "fedora") != NULL))
            return (void *)1;
    }
    return NULL;
}

static void test_threads(void **state)
{
    pthread_t a, b;
    void *ra, *rb;

    (void)state;
    assert_int_equal(pthread_create(&a, NULL, load_many, "{\"distro\": \"fedora-40\"}"), 0);
    assert_int_equal(pthread_create(&b, NULL, load_many, "{\"distro\": \"debian-12\"}"), 0);
    pthread_join(a, &ra);
    pthread_join(b, &rb);
    assert_null(ra);
    assert_null(rb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inherit),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_merge_error),
        cmocka_unit_test(test_node_errors),
        cmocka_unit_test(test_adjust),
        cmocka_unit_test(test_adjust_error),
        cmocka_unit_test(test_detect),
        cmocka_unit_test(test_yaml_types),
        cmocka_unit_test(test_errors),
        cmocka_unit_test_setup_teardown(test_version_and_root, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_symlinks_and_order, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_tree_limits, tmp_setup, tmp_teardown),
        cmocka_unit_test(test_conditions),
        cmocka_unit_test(test_condition_errors),
        cmocka_unit_test(test_filter),
        cmocka_unit_test(test_regex_dialect),
        cmocka_unit_test(test_filter_tree),
        cmocka_unit_test(test_merge_api),
        cmocka_unit_test(test_adjust_api),
        cmocka_unit_test(test_duration),
        cmocka_unit_test(test_duration_tree),
        cmocka_unit_test(test_parse_buffer),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
