/*
 * jsonl: one JSON object per result, one line each, flushed as it arrives,
 * so a reader (or a crash) sees every result the moment it exists.
 */
#define _GNU_SOURCE 1
#include <atx/plugin/aggregator.h>
#include <atx/plugin/report.h>
#include <atx/plugin/text.h>

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct jsonl_state {
    atx_plugin_ctx *ctx;
    char path[PATH_MAX];
    FILE *f;
    int output;    /* include captured output */
} jsonl_state;

static int jsonl_create(atx_plugin_ctx *ctx, void **out)
{
    static const char *const keys[] = { "path", "output", NULL };
    const char *path = "results.jsonl";
    jsonl_state *s;
    int output = 0, r;

    if ((r = atx_plugin_config_check_keys(ctx, keys)) < 0 ||
        (r = atx_plugin_config_string(ctx, "path", &path)) < 0 ||
        (r = atx_plugin_config_bool(ctx, "output", &output)) < 0)
        return r;
    s = calloc(1, sizeof(*s));
    if (!s)
        return atx_error_set(ATX_ENOMEM, "out of memory");
    s->ctx = ctx;
    s->output = output;
    if ((r = atx_report_path(ctx, path, s->path, sizeof(s->path))) < 0) {
        free(s);
        return r;
    }
    *out = s;
    return 0;
}

static void jsonl_destroy(void *state)
{
    jsonl_state *s = state;
    if (s->f)
        fclose(s->f);
    free(s);
}

static int jsonl_begin(void *state, const atx_run_info *info)
{
    jsonl_state *s = state;

    (void)info;
    s->f = fopen(s->path, "we");
    if (!s->f)
        return atx_error_set(-errno, "jsonl: cannot write %s: %s", s->path, strerror(errno));
    return 0;
}

/* A JSON string from arbitrary bytes: valid UTF-8, ANSI escapes kept. */
static json_object *text(const char *data, size_t len)
{
    char *clean;
    size_t n;

    if (!data)
        return NULL;
    if (atx_text_clean(data, len, 0, &clean, &n) < 0)
        return NULL;
    json_object *o = json_object_new_string_len(clean, (int)n);
    free(clean);
    return o;
}

static json_object *str(const char *s)
{
    return s ? text(s, strlen(s)) : NULL;
}

static int jsonl_result(void *state, const atx_result *r)
{
    jsonl_state *s = state;
    json_object *o = json_object_new_object(), *sys, *labels, *files;
    char when[32];

    if (!o)
        return atx_error_set(ATX_ENOMEM, "out of memory");
    json_object_object_add(o, "test", str(atx_result_test(r)));
    json_object_object_add(o, "subtest", str(atx_result_subtest(r)));
    json_object_object_add(o, "status", str(atx_result_status_word(r)));
    json_object_object_add(o, "note", str(atx_result_note(r)));
    if (atx_result_error_type(r))
        json_object_object_add(o, "error_type", str(atx_result_error_type(r)));
    json_object_object_add(o, "attempt", json_object_new_int(atx_result_attempt(r)));
    json_object_object_add(o, "final", json_object_new_boolean(atx_result_final(r)));
    sys = json_object_new_object();
    labels = json_object_new_object();
    json_object_object_add(sys, "id", str(atx_result_system_id(r)));
    for (size_t i = 0; i < atx_labels_count(atx_result_system_labels(r)); i++) {
        const char *k, *v;
        atx_labels_at(atx_result_system_labels(r), i, &k, &v);
        json_object_object_add(labels, k, str(v));
    }
    json_object_object_add(sys, "labels", labels);
    json_object_object_add(o, "system", sys);
    atx_text_utc(atx_result_started(r), 1, when);
    json_object_object_add(o, "started", json_object_new_string(when));
    char secs[32];
    /* Microseconds, printed exactly: no binary-float noise in the file. */
    snprintf(secs, sizeof(secs), "%.6f", (double)atx_result_duration(r) / 1e9);
    json_object_object_add(o, "duration", json_object_new_double_s(atof(secs), secs));
    int code = atx_result_exit_code(r);
    json_object_object_add(o, "exit_code",
                           code == ATX_NO_EXIT_CODE ? NULL : json_object_new_int(code));
    files = json_object_new_array();
    for (size_t i = 0; i < atx_result_file_count(r); i++)
        json_object_array_add(files, str(atx_result_file(r, i)));
    json_object_object_add(o, "files", files);
    /* From the outcome history, on every line: known only on a test's final
     * own result (null elsewhere and for tests the history does not know). */
    double rate = atx_result_flake_rate(r);
    json_object *fr = NULL;
    if (rate >= 0) {
        char num[8];
        atx_text_rate(rate, num);
        fr = json_object_new_double_s(rate, num);
    }
    json_object_object_add(o, "flake_rate", fr);
    json_object_object_add(o, "recent", str(atx_result_recent(r)));
    json_object_object_add(o, "quarantined", json_object_new_boolean(atx_result_quarantined(r)));
    if (s->output) {
        static const char *const names[] = { "stdout", "stderr" };
        for (int i = 0; i < 2; i++) {
            size_t len;
            const char *d = atx_result_output(r, (atx_stream)i, &len, NULL);
            if (d)
                json_object_object_add(o, names[i], text(d, len));
        }
    }
    const char *line = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE);
    int ok = fputs(line, s->f) >= 0 && fputc('\n', s->f) != EOF && fflush(s->f) == 0;
    json_object_put(o);
    if (!ok)
        return atx_error_set(-errno, "jsonl: cannot write %s: %s", s->path, strerror(errno));
    return 0;
}

static int jsonl_end(void *state, const atx_summary *summary)
{
    jsonl_state *s = state;

    (void)summary;
    if (s->f && (fsync(fileno(s->f)) < 0 && errno != EINVAL)) {
        return atx_error_set(-errno, "jsonl: cannot sync %s: %s", s->path, strerror(errno));
    }
    if (s->f && fclose(s->f) != 0) {
        s->f = NULL;
        return atx_error_set(-errno, "jsonl: cannot close %s: %s", s->path, strerror(errno));
    }
    s->f = NULL;
    return 0;
}

static const atx_aggregator_vtable jsonl_vtable = {
    .version = ATX_AGGREGATOR_VTABLE_VERSION,
    .create = jsonl_create,
    .destroy = jsonl_destroy,
    .begin = jsonl_begin,
    .result = jsonl_result,
    .end = jsonl_end,
    .started = NULL,
};

ATX_PLUGIN_DEFINE(ATX_PLUGIN_AGGREGATOR, "jsonl", ATX_VERSION_STRING,
                  "One JSON line per result, flushed as it arrives", &jsonl_vtable)
