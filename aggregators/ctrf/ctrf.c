/*
 * ctrf: a CTRF report (Common Test Report Format, ctrf.io), one JSON file.
 *
 * One entry per test (its final own result) and one per subtest of the
 * final attempt. atx's own status word goes to rawStatus, so warn, info,
 * error, infra and custom words survive the mapping to CTRF's five
 * statuses. Earlier attempts become the entry's retryAttempts.
 *
 * Memory stays bounded: no result is kept past its call, only small JSON
 * objects with capped traces for tests waiting for a rerun. A test's
 * entries go to a spool file as soon as its final own result is in (it
 * ends its attempt's batch of results); at the end the report is written
 * to a temporary file (header with the counts, the spooled entries) and
 * renamed into place.
 */
#define _GNU_SOURCE 1
#include <atx/plugin/aggregator.h>
#include <atx/plugin/report.h>
#include <atx/plugin/text.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define CTRF_SPEC_VERSION "0.0.0"
#define DEFAULT_MAX_TRACE (16 * 1024)
#define REPORT_TRACE_BUDGET (32 * 1024 * 1024)
#define MIN_TRACE 2048
#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

enum { C_PASSED, C_FAILED, C_SKIPPED, C_PENDING, C_OTHER, C_N };
static const char *const ctrf_words[C_N] = { "passed", "failed", "skipped", "pending",
                                             "other" };

/* A test whose final own result has not arrived yet: its earlier attempts
 * (retryAttempts items) and the final attempt's subtest entries. */
typedef struct record {
    struct record *next;
    char *test;
    json_object *attempts;   /* array */
    json_object *subs;       /* array of entries */
    bool failed_before;      /* an earlier attempt failed (not infra) */
} record;

typedef struct ctrf_state {
    atx_plugin_ctx *ctx;
    char path[PATH_MAX];
    FILE *spool;
    size_t max_trace;        /* bytes of output tail per entry */
    size_t entries;
    size_t count[C_N];
    size_t flaky;
    record *open;
    char hostname[256];
    char run_id[128];
    int64_t started_ns;
} ctrf_state;

static void record_free(record *rec)
{
    if (!rec)
        return;
    json_object_put(rec->attempts);
    json_object_put(rec->subs);
    free(rec->test);
    free(rec);
}

static int ctrf_create(atx_plugin_ctx *ctx, void **out)
{
    static const char *const keys[] = { "path", "max_trace", NULL };
    const char *path = "ctrf.json";
    int64_t max_trace = DEFAULT_MAX_TRACE;
    ctrf_state *s;
    int r;

    if ((r = atx_plugin_config_check_keys(ctx, keys)) < 0 ||
        (r = atx_plugin_config_string(ctx, "path", &path)) < 0 ||
        (r = atx_plugin_config_int(ctx, "max_trace", &max_trace)) < 0)
        return r;
    if (max_trace < 0)
        return atx_error_set(ATX_EINVAL, "ctrf: 'max_trace' must not be negative");
    if (!*path)
        return atx_error_set(ATX_EINVAL, "ctrf: 'path' must not be empty");
    s = calloc(1, sizeof(*s));
    if (!s)
        return atx_error_set(ATX_ENOMEM, "out of memory");
    s->ctx = ctx;
    s->max_trace = (size_t)max_trace;
    if ((r = atx_report_path(ctx, path, s->path, sizeof(s->path))) < 0) {
        free(s);
        return r;
    }
    *out = s;
    return 0;
}

static void ctrf_destroy(void *state)
{
    ctrf_state *s = state;

    if (s->spool)
        fclose(s->spool);
    while (s->open) {
        record *next = s->open->next;
        record_free(s->open);
        s->open = next;
    }
    free(s);
}

static int ctrf_begin(void *state, const atx_run_info *info)
{
    ctrf_state *s = state;

    snprintf(s->hostname, sizeof(s->hostname), "%s", info->hostname ? info->hostname : "");
    snprintf(s->run_id, sizeof(s->run_id), "%s", info->run_id ? info->run_id : "");
    s->started_ns = info->started_ns;
    /* The report's share of trace per entry: ~32 MB in all. */
    size_t per = REPORT_TRACE_BUDGET / (info->tests ? info->tests : 1);
    if (per < MIN_TRACE)
        per = MIN_TRACE;
    if (per < s->max_trace)
        s->max_trace = per;
    if (!(s->spool = atx_report_spool(s->path)))
        return atx_error_last()->code;
    return 0;
}

/* ---- one result as JSON ---- */

static json_object *text(const char *data, size_t len)
{
    char *clean;
    size_t n;

    if (!data || atx_text_clean(data, len, ATX_TEXT_STRIP_ANSI, &clean, &n) < 0)
        return NULL;
    json_object *o = json_object_new_string_len(clean, (int)n);
    free(clean);
    return o;
}

static json_object *str(const char *s)
{
    return s ? text(s, strlen(s)) : NULL;
}

static int ctrf_class(const atx_result *r)
{
    const char *type = atx_result_error_type(r);

    switch (atx_result_status(r)) {
    case ATX_STATUS_PASS:
    case ATX_STATUS_WARN:
    case ATX_STATUS_INFO:
        return C_PASSED;
    case ATX_STATUS_FAIL:
    case ATX_STATUS_ERROR:
        return C_FAILED;
    case ATX_STATUS_SKIP:
        /* Never started (the run was cancelled or hit its deadline). */
        return type && strcmp(type, "not-run") == 0 ? C_PENDING : C_SKIPPED;
    default:
        return C_OTHER;   /* infra, custom words */
    }
}

/* The tail of the captured output, stdout then stderr, max bytes in all. */
static json_object *trace_of(const atx_result *r, size_t max)
{
    static const char *const names[] = { "stdout", "stderr" };
    const char *data[2];
    size_t len[2], streams = 0;
    uint64_t total[2];
    char *buf = NULL;
    size_t blen = 0;

    if (max == 0)
        return NULL;
    for (int i = 0; i < 2; i++) {
        data[i] = atx_result_output(r, (atx_stream)i, &len[i], &total[i]);
        if (data[i] && len[i])
            streams++;
        else
            len[i] = 0;
    }
    if (!streams)
        return NULL;
    FILE *m = open_memstream(&buf, &blen);
    if (!m)
        return NULL;
    for (int i = 0; i < 2; i++) {
        if (!len[i])
            continue;
        size_t keep = len[i] < max / streams ? len[i] : max / streams;
        size_t from = len[i] - keep;
        /* Start on a character, not inside one. */
        while (from < len[i] && ((unsigned char)data[i][from] & 0xC0) == 0x80)
            from++;
        if (streams > 1)
            fprintf(m, "[%s]\n", names[i]);
        uint64_t all = total[i] > len[i] ? total[i] : len[i];
        if (all > len[i] - from)
            fprintf(m, "[... %" PRIu64 " bytes omitted ...]\n", all - (len[i] - from));
        fwrite(data[i] + from, 1, len[i] - from, m);
        if (streams > 1 && i == 0 && data[i][len[i] - 1] != '\n')
            fputc('\n', m);
    }
    if (fclose(m) != 0) {
        free(buf);
        return NULL;
    }
    json_object *o = text(buf, blen);
    free(buf);
    return o;
}

static const char *content_type(const char *path)
{
    static const char *const map[][2] = {
        { ".txt", "text/plain" }, { ".log", "text/plain" }, { ".json", "application/json" },
        { ".xml", "application/xml" }, { ".html", "text/html" }, { ".png", "image/png" },
        { ".jpg", "image/jpeg" }, { ".svg", "image/svg+xml" }, { ".gz", "application/gzip" },
    };
    const char *dot = strrchr(path, '.');

    if (dot && !strchr(dot, '/'))
        for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
            if (strcasecmp(dot, map[i][0]) == 0)
                return map[i][1];
    return "application/octet-stream";
}

static int64_t ms(int64_t ns)
{
    return ns / ATX_NSEC_PER_MSEC;
}

/*
 * One attempt of a test or subtest, in the shape of a CTRF retryAttempts
 * item (attempt, status, duration, start, stop, message, trace, attachments,
 * extra); an entry is made from it by adding the test's own keys.
 */
static json_object *attempt_json(const atx_result *r, size_t max_trace)
{
    json_object *a = json_object_new_object(), *extra = json_object_new_object();
    int cls = ctrf_class(r);
    int64_t started = atx_result_started(r), took = atx_result_duration(r);
    const char *note = atx_result_note(r);

    json_object_object_add(a, "attempt", json_object_new_int(atx_result_attempt(r)));
    json_object_object_add(a, "status", json_object_new_string(ctrf_words[cls]));
    json_object_object_add(a, "duration", json_object_new_int64(ms(took)));
    if (started > 0) {
        json_object_object_add(a, "start", json_object_new_int64(ms(started)));
        json_object_object_add(a, "stop", json_object_new_int64(ms(started) + ms(took)));
    }
    if (note && *note)
        json_object_object_add(a, "message", str(note));
    if (cls != C_PASSED) {
        json_object *t = trace_of(r, max_trace);
        if (t)
            json_object_object_add(a, "trace", t);
    }
    size_t nfiles = atx_result_file_count(r);
    if (nfiles) {
        json_object *files = json_object_new_array();
        for (size_t i = 0; i < nfiles; i++) {
            const char *f = atx_result_file(r, i), *base = strrchr(f, '/');
            json_object *o = json_object_new_object();
            json_object_object_add(o, "name", str(base ? base + 1 : f));
            json_object_object_add(o, "contentType", json_object_new_string(content_type(f)));
            json_object_object_add(o, "path", str(f));
            json_object_array_add(files, o);
        }
        json_object_object_add(a, "attachments", files);
    }
    /* rawStatus is not a key of a retry attempt: extra carries it there. */
    json_object_object_add(extra, "rawStatus", str(atx_result_status_word(r)));
    if (atx_result_error_type(r))
        json_object_object_add(extra, "errorType", str(atx_result_error_type(r)));
    int code = atx_result_exit_code(r);
    if (code != ATX_NO_EXIT_CODE)
        json_object_object_add(extra, "exitCode", json_object_new_int(code));
    if (atx_result_system_id(r))
        json_object_object_add(extra, "system", str(atx_result_system_id(r)));
    json_object_object_add(a, "extra", extra);
    return a;
}

/* The test's folders, top first: "/a/b/c" -> ["a", "b"] (with itself: + "c"). */
static json_object *suite_of(const char *test, bool with_self)
{
    json_object *arr = json_object_new_array();
    const char *p = test;

    while (*p) {
        while (*p == '/')
            p++;
        const char *end = strchr(p, '/');
        if (!*p || (!end && !with_self))
            break;
        size_t n = end ? (size_t)(end - p) : strlen(p);
        json_object_array_add(arr, text(p, n));
        p += n;
    }
    if (json_object_array_length(arr) == 0) {
        json_object_put(arr);
        return NULL;
    }
    return arr;
}

/* An entry of the report from an attempt object (taken). */
static json_object *entry_json(const atx_result *r, json_object *attempt, record *rec)
{
    json_object *e = json_object_new_object(), *extra = NULL, *v;
    const char *test = atx_result_test(r), *sub = atx_result_subtest(r);
    char *name = NULL;

    if (sub) {
        while (*sub == '/')
            sub++;
        if (asprintf(&name, "%s/%s", test, sub) < 0)
            name = NULL;
    }
    json_object_object_add(e, "name", str(name ? name : test));
    free(name);
    json_object_object_foreach(attempt, k, val) {
        if (strcmp(k, "attempt") == 0)
            continue;
        if (strcmp(k, "extra") == 0) {
            extra = json_object_get(val);
            continue;
        }
        json_object_object_add(e, k, json_object_get(val));
    }
    json_object_object_add(e, "rawStatus", str(atx_result_status_word(r)));
    json_object_object_del(extra, "rawStatus");
    v = suite_of(test, atx_result_subtest(r) != NULL);
    if (v)
        json_object_object_add(e, "suite", v);
    json_object_object_add(e, "retries", json_object_new_int(atx_result_attempt(r) - 1));
    if (!atx_result_subtest(r)) {
        /* Flaky: passed after a failed attempt now, or flaked before (the
         * history's flake rate over its recent runs). */
        double rate = atx_result_flake_rate(r);
        bool flaky = (rec && rec->failed_before && ctrf_class(r) == C_PASSED) || rate > 0;
        json_object_object_add(e, "flaky", json_object_new_boolean(flaky));
        if (rate >= 0) {
            char num[8];
            atx_text_rate(rate, num);
            json_object_object_add(extra, "flake_rate", json_object_new_double_s(rate, num));
        }
        if (rec && json_object_array_length(rec->attempts))
            json_object_object_add(e, "retryAttempts", json_object_get(rec->attempts));
    } else {
        json_object_object_add(extra, "test", str(test));
        json_object_object_add(extra, "subtest", str(atx_result_subtest(r)));
    }
    json_object_object_add(extra, "attempt", json_object_new_int(atx_result_attempt(r)));
    json_object_object_add(extra, "quarantined",
                           json_object_new_boolean(atx_result_quarantined(r)));
    json_object_object_add(e, "extra", extra);
    json_object_put(attempt);
    return e;
}

/* ---- spooling entries ---- */

static int spool_entry(ctrf_state *s, json_object *e)
{
    json_object *st = NULL, *fl = NULL;
    const char *line = json_object_to_json_string_ext(e, JSON_FLAGS);

    if (!line)
        return atx_error_set(ATX_ENOMEM, "out of memory");
    if (fprintf(s->spool, "%s%s", s->entries ? ",\n" : "", line) < 0)
        return atx_error_set(-errno, "ctrf: cannot write the spool: %s", strerror(errno));
    s->entries++;
    json_object_object_get_ex(e, "status", &st);
    for (int i = 0; i < C_N; i++)
        if (strcmp(json_object_get_string(st), ctrf_words[i]) == 0)
            s->count[i]++;
    if (json_object_object_get_ex(e, "flaky", &fl) && json_object_get_boolean(fl))
        s->flaky++;
    return 0;
}

static void unlink_record(ctrf_state *s, record *rec)
{
    for (record **pp = &s->open; *pp; pp = &(*pp)->next) {
        if (*pp == rec) {
            *pp = rec->next;
            break;
        }
    }
    record_free(rec);
}

static int ctrf_result(void *state, const atx_result *res)
{
    ctrf_state *s = state;
    const char *test = atx_result_test(res);
    record *rec;
    int r = 0;

    for (rec = s->open; rec && strcmp(rec->test, test) != 0; rec = rec->next)
        ;
    if (!rec) {
        rec = calloc(1, sizeof(*rec));
        if (!rec || !(rec->test = strdup(test)) ||
            !(rec->attempts = json_object_new_array()) || !(rec->subs = json_object_new_array())) {
            record_free(rec);
            return atx_error_set(ATX_ENOMEM, "out of memory");
        }
        rec->next = s->open;
        s->open = rec;
    }
    bool own = atx_result_subtest(res) == NULL, final = atx_result_final(res);
    if (own && !final) {
        /* A superseded attempt: kept small, its trace a quarter of the budget. */
        json_object_array_add(rec->attempts, attempt_json(res, s->max_trace / 4));
        if (atx_status_is_failure(atx_result_status(res)) &&
            atx_result_status(res) != ATX_STATUS_INFRA)
            rec->failed_before = true;
        return 0;
    }
    if (!own) {
        /* Subtests of superseded attempts are left out: the test's retry
         * attempts tell how those went. */
        if (final)
            json_object_array_add(rec->subs, entry_json(res, attempt_json(res, s->max_trace),
                                                        NULL));
        return 0;
    }
    /* The final own result ends the test: write its entries now. */
    json_object *e = entry_json(res, attempt_json(res, s->max_trace), rec);
    r = spool_entry(s, e);
    json_object_put(e);
    for (size_t i = 0; r == 0 && i < json_object_array_length(rec->subs); i++)
        r = spool_entry(s, json_object_array_get_idx(rec->subs, i));
    unlink_record(s, rec);
    return r;
}

/* ---- the report ---- */

static void new_uuid(char out[37])
{
    unsigned char b[16];
    ssize_t n = getrandom(b, sizeof(b), 0);

    if (n != (ssize_t)sizeof(b)) {
        /* No entropy source: unique enough for a report id. */
        uint64_t t = (uint64_t)atx_wallclock_ns() ^ ((uint64_t)getpid() << 32);
        for (size_t i = 0; i < sizeof(b); i++)
            b[i] = (unsigned char)(t >> ((i % 8) * 8)) ^ (unsigned char)(i * 37);
    }
    b[6] = (unsigned char)((b[6] & 0x0F) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3F) | 0x80);
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
}

/* A record never closed by a final own result (the run stopped between
 * attempts): its last attempt stands for the test. */
static int flush_unfinished(ctrf_state *s, record *rec)
{
    size_t n = json_object_array_length(rec->attempts);
    json_object *e, *last, *extra, *raw;

    if (n == 0)
        return 0;
    last = json_object_get(json_object_array_get_idx(rec->attempts, n - 1));
    json_object_array_del_idx(rec->attempts, n - 1, 1);
    e = json_object_new_object();
    json_object_object_add(e, "name", str(rec->test));
    json_object_object_foreach(last, k, v) {
        if (strcmp(k, "attempt") != 0)
            json_object_object_add(e, k, json_object_get(v));
    }
    if (json_object_object_get_ex(e, "extra", &extra) &&
        json_object_object_get_ex(extra, "rawStatus", &raw))
        json_object_object_add(e, "rawStatus", json_object_get(raw));
    json_object *suite = suite_of(rec->test, false);
    if (suite)
        json_object_object_add(e, "suite", suite);
    json_object_object_add(e, "retries", json_object_new_int((int)n - 1));
    json_object_object_add(e, "flaky", json_object_new_boolean(false));
    if (n > 1)
        json_object_object_add(e, "retryAttempts", json_object_get(rec->attempts));
    json_object_put(last);
    int r = spool_entry(s, e);
    json_object_put(e);
    return r;
}

static json_object *count(size_t n)
{
    return json_object_new_int64((int64_t)n);
}

static int write_report(ctrf_state *s, const atx_summary *sum, FILE *f)
{
    char uuid[37], when[32];
    int64_t start = sum && sum->started_ns ? sum->started_ns : s->started_ns;
    int64_t took = sum ? sum->duration_ns : atx_wallclock_ns() - start;
    json_object *tool = json_object_new_object(), *summary = json_object_new_object();
    json_object *env = json_object_new_object(), *extra = json_object_new_object();
    json_object *sx = json_object_new_object(), *ex = json_object_new_object();

    new_uuid(uuid);
    atx_text_utc(atx_wallclock_ns(), 1, when);
    json_object_object_add(tool, "name", json_object_new_string("atx"));
    json_object_object_add(tool, "version", json_object_new_string(ATX_VERSION_STRING));
    json_object_object_add(summary, "tests", count(s->entries));
    for (int i = 0; i < C_N; i++)
        json_object_object_add(summary, ctrf_words[i], count(s->count[i]));
    json_object_object_add(summary, "flaky", count(s->flaky));
    json_object_object_add(summary, "start", json_object_new_int64(ms(start)));
    json_object_object_add(summary, "stop", json_object_new_int64(ms(start + took)));
    json_object_object_add(summary, "duration", json_object_new_int64(ms(took)));
    if (sum) {
        /* atx's own counts, per test (subtests not counted). */
        json_object_object_add(sx, "tests", count(sum->tests));
        json_object_object_add(sx, "passed", count(sum->passed));
        json_object_object_add(sx, "failed", count(sum->failed));
        json_object_object_add(sx, "errors", count(sum->errors));
        json_object_object_add(sx, "infra", count(sum->infra));
        json_object_object_add(sx, "skipped", count(sum->skipped));
        json_object_object_add(sx, "notRun", count(sum->not_run));
        json_object_object_add(sx, "flaky", count(sum->flaky));
        json_object_object_add(sx, "attempts", count(sum->attempts));
        json_object_object_add(sx, "cancelled", json_object_new_boolean(sum->cancelled));
    }
    json_object_object_add(summary, "extra", sx);
    json_object_object_add(env, "reportName", str(s->run_id));
    json_object_object_add(env, "osPlatform", json_object_new_string("linux"));
    json_object_object_add(ex, "hostname", str(s->hostname));
    json_object_object_add(env, "extra", ex);
    json_object_object_add(extra, "runId", str(s->run_id));

    fprintf(f, "{\"reportFormat\":\"CTRF\",\"specVersion\":\"%s\",\"reportId\":\"%s\","
               "\"timestamp\":\"%s\",\"generatedBy\":\"atx %s\",\n\"results\":{\"tool\":%s,\n",
            CTRF_SPEC_VERSION, uuid, when, ATX_VERSION_STRING,
            json_object_to_json_string_ext(tool, JSON_FLAGS));
    fprintf(f, "\"summary\":%s,\n\"tests\":[\n",
            json_object_to_json_string_ext(summary, JSON_FLAGS));
    rewind(s->spool);
    char block[65536];
    size_t n;
    int r = 0;
    while ((n = fread(block, 1, sizeof(block), s->spool)) > 0)
        if (fwrite(block, 1, n, f) != n)
            break;
    if (ferror(s->spool))
        r = atx_error_set(ATX_EIO, "ctrf: cannot read the spool");
    fprintf(f, "%s],\n\"environment\":%s,\n\"extra\":%s}}\n", s->entries ? "\n" : "",
            json_object_to_json_string_ext(env, JSON_FLAGS),
            json_object_to_json_string_ext(extra, JSON_FLAGS));
    json_object_put(tool);
    json_object_put(summary);
    json_object_put(env);
    json_object_put(extra);
    return r;
}

static int ctrf_end(void *state, const atx_summary *sum)
{
    ctrf_state *s = state;
    char tmp[PATH_MAX + 16];
    int r = 0;

    if (!s->spool)
        return atx_error_set(ATX_ESTATE, "ctrf: end without begin");
    while (s->open) {
        if ((r = flush_unfinished(s, s->open)) < 0)
            return r;
        unlink_record(s, s->open);
    }
    if (fflush(s->spool) != 0)
        return atx_error_set(-errno, "ctrf: cannot write the spool: %s", strerror(errno));
    FILE *f = atx_report_begin(s->path, tmp, sizeof(tmp));
    if (!f)
        return atx_error_last()->code;
    r = write_report(s, sum, f);
    int fr = atx_report_finish(f, tmp, s->path, r < 0);
    return r < 0 ? r : fr;
}

static const atx_aggregator_vtable ctrf_vtable = {
    .version = ATX_AGGREGATOR_VTABLE_VERSION,
    .create = ctrf_create,
    .destroy = ctrf_destroy,
    .begin = ctrf_begin,
    .result = ctrf_result,
    .end = ctrf_end,
    .started = NULL,
};

ATX_PLUGIN_DEFINE(ATX_PLUGIN_AGGREGATOR, "ctrf", ATX_VERSION_STRING,
                  "CTRF JSON report (ctrf.io), written atomically", &ctrf_vtable)
