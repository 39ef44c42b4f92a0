/*
 * libFuzzer target for the fmf metadata reader (executors/fmf/fmf.c).
 *
 * The first byte chooses what the rest is:
 *   0  one file's YAML (fmf_parse_buffer); what parses is also merged into a
 *      fixed parent (fmf_merge) and adjusted for a fixed context (fmf_adjust)
 *   1  a context condition (fmf_condition_ex, both case modes)
 *   2  a filter expression against fixed node data (fmf_filter), and the
 *      same text as a test's duration (fmf_duration)
 *   3  "expression NUL yaml": the YAML becomes the data of a filter and the
 *      context of a condition
 *   4  a main.fmf in a scratch tree with a child folder, loaded whole
 *      (fmf_tree_load: /child keys, inheritance, adjust, node errors, where
 *      keys were set, durations)
 * Every error message must be one NUL-terminated line within its buffer;
 * results must stay in their documented ranges.
 */
#define _GNU_SOURCE 1
#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../executors/fmf/fmf.h"

static char tree[256];
static json_object *parent, *ctx, *data;

static void check_err(const char *err, size_t errlen)
{
    size_t n = strnlen(err, errlen);
    if (n >= errlen || memchr(err, '\n', n))
        abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[300];
    FILE *f;

    (void)argc;
    (void)argv;
    snprintf(tree, sizeof(tree), "/tmp/fuzz-fmf-XXXXXX");
    if (!mkdtemp(tree))
        abort();
    snprintf(path, sizeof(path), "%s/.fmf", tree);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/.fmf/version", tree);
    if (!(f = fopen(path, "w")))
        abort();
    fputs("1\n", f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/sub", tree);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/sub/main.fmf", tree);
    if (!(f = fopen(path, "w")))
        abort();
    fputs("tag+: [sub]\nenvironment+: {SUB: 1}\ntier-: 1\nsummary~: /a/b/\n"
          "adjust+:\n  - when: distro < fedora-40\n    tag+: [old]\n", f);
    fclose(f);

    parent = json_tokener_parse(
        "{\"tag\": [\"a\", \"b\"], \"tier\": 1, \"summary\": \"abc\", \"real\": 1.5,"
        " \"environment\": {\"A\": \"1\"}, \"discover\": [{\"how\": \"fmf\"}],"
        " \"enabled\": true, \"none\": null}");
    ctx = json_tokener_parse(
        "{\"distro\": \"fedora-39\", \"arch\": [\"x86_64\", \"aarch64\"], \"initiator\": \"ci\"}");
    data = json_tokener_parse(
        "{\"tag\": [\"smoke\", \"fast\", 3, null], \"tier\": \"1\", \"enabled\": true,"
        " \"ratio\": 0.25, \"deep\": {\"a\": [1, {\"b\": \"c\"}]}}");
    if (!parent || !ctx || !data)
        abort();
    return 0;
}

static void fuzz_yaml(const char *text, size_t len)
{
    char err[256];
    json_object *o = NULL, *p = NULL, *copy = NULL;

    if (fmf_parse_buffer(text, len, "fuzz.fmf", &o, err, sizeof(err)) < 0) {
        check_err(err, sizeof(err));
        return;
    }
    if (!o)
        return;
    if (json_object_get_type(o) != json_type_object)
        abort();
    json_object_deep_copy(parent, &p, NULL);
    if (fmf_merge(p, o, err, sizeof(err)) < 0)
        check_err(err, sizeof(err));
    json_object_deep_copy(o, &copy, NULL);
    if (fmf_adjust(copy, ctx, 0, err, sizeof(err)) < 0)
        check_err(err, sizeof(err));
    else if (json_object_object_get_ex(copy, "adjust", NULL))
        abort();
    json_object_put(copy);
    json_object_put(p);
    json_object_put(o);
}

static void fuzz_condition(const char *expr, const json_object *context)
{
    char err[256];

    for (unsigned flags = 0; flags <= FMF_CASE_INSENSITIVE; flags++) {
        int r = fmf_condition_ex(expr, context, flags, err, sizeof(err));
        if (r < -2 || r > 1)
            abort();
        if (r == -2)
            check_err(err, sizeof(err));
    }
}

static void fuzz_filter(const char *expr, const json_object *d)
{
    char err[256];
    int r = fmf_filter(expr, d, err, sizeof(err));

    if (r > 1)
        abort();
    if (r < 0)
        check_err(err, sizeof(err));
}

/* A duration (NULL: none) must come to 1..FMF_MAX_DURATION seconds or be
 * refused with one line. */
static void fuzz_duration(const json_object *v)
{
    char err[256];
    int64_t secs = -1;

    if (fmf_duration(v, &secs, err, sizeof(err)) < 0) {
        check_err(err, sizeof(err));
        if (secs != -1)
            abort();
    } else if (secs < 1 || secs > FMF_MAX_DURATION) {
        abort();
    }
}

static void fuzz_tree(const char *text, size_t len)
{
    char path[300], err[512];
    fmf_tree *t = NULL;
    FILE *f;

    snprintf(path, sizeof(path), "%s/main.fmf", tree);
    if (!(f = fopen(path, "w")))
        abort();
    fwrite(text, 1, len, f);
    fclose(f);
    if (fmf_tree_load(tree, ctx, &t, err, sizeof(err)) < 0) {
        check_err(err, sizeof(err));
        return;
    }
    for (size_t i = 0; i < fmf_tree_count(t); i++) {
        const fmf_node *n = fmf_tree_node(t, i);
        if (!n || !n->name || n->name[0] != '/' || !n->dir ||
            json_object_get_type(n->data) != json_type_object ||
            fmf_tree_find(t, n->name) != n)
            abort();
        (void)fmf_node_is_test(n);
        fuzz_filter("tag: sub | tier: 1", n->data);
        if (n->error && (strchr(n->error, '\n') || !*n->error))
            abort();
        const char *file;
        int line;
        fmf_node_where(t, n, "test", &file, &line);
        if (line < 0 || (line > 0 && !file))
            abort();
        json_object *dur = NULL;
        json_object_object_get_ex(n->data, "duration", &dur);
        fuzz_duration(dur);
    }
    fmf_tree_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    char *text;
    size_t n;

    if (len < 1 || len > 1 << 20)
        return 0;
    n = len - 1;
    /* A NUL-terminated copy, so the string functions get no overread. */
    if (!(text = malloc(n + 1)))
        return 0;
    memcpy(text, buf + 1, n);
    text[n] = '\0';
    switch (buf[0] % 5) {
    case 0:
        fuzz_yaml(text, n);
        break;
    case 1:
        fuzz_condition(text, ctx);
        break;
    case 2: {
        json_object *s = json_object_new_string_len(text, (int)n);
        fuzz_filter(text, data);
        fuzz_duration(s);
        json_object_put(s);
        break;
    }
    case 3: {
        size_t el = strlen(text);
        json_object *o = NULL;
        char err[256];
        if (el < n && fmf_parse_buffer(text + el + 1, n - el - 1, "fuzz.fmf", &o, err,
                                       sizeof(err)) == 0 && o) {
            fuzz_filter(text, o);
            fuzz_condition(text, o);
        }
        json_object_put(o);
        break;
    }
    default:
        fuzz_tree(text, n);
        break;
    }
    free(text);
    return 0;
}
