/*
 * junit: a JUnit XML report every CI reads (the strict profile of JUNIT.md,
 * or on request the extended one, with testcase properties).
 *
 * Memory stays bounded on long runs: a test's testcase elements are written
 * to a spool file as soon as its final attempt is complete; at the end the
 * report is assembled in a temporary file next to the target (header with
 * the counts, then the spooled testcases) and renamed into place.
 *
 * What the outcome history says of a test (flake rate, quarantine) goes in
 * properties. No schema a consumer checks allows properties in a testcase
 * (xUnit's, Surefire's, Ant's), so the strict profile puts them in the
 * suite's, one per test and fact, named after the test, and only for tests
 * that flaked or are quarantined, to keep the header small; the extended
 * profile puts them in each testcase, where GitLab and GitHub's actions
 * read them.
 */
#define _GNU_SOURCE 1
#include <atx/plugin/aggregator.h>
#include <atx/plugin/report.h>
#include <atx/plugin/text.h>

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <libxml/xmlwriter.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_MAX_OUTPUT (256 * 1024)
#define REPORT_OUTPUT_BUDGET (20 * 1024 * 1024)
#define MIN_OUTPUT (4 * 1024)

/* The results of one test not yet written: attempts' own results and the
 * final attempt's subtest results, in arrival order. */
typedef struct record {
    struct record *next;
    char *test;
    atx_result **results;
    size_t n, cap;
    bool final;
} record;

typedef struct junit_state {
    atx_plugin_ctx *ctx;
    char path[PATH_MAX];
    FILE *spool;
    const char *suite;
    char hostname[256];
    char run_id[128];
    int64_t started_ns;
    size_t max_output;       /* bytes per stream per testcase, all attempts */
    size_t tests, failures, errors, skipped;
    record *open;            /* tests not yet written, oldest first */
    record *last;            /* the record of the latest result */
    /* classname/name pairs written, to keep them unique: a hash set (open
     * addressing), so 100,000 testcases cost no more than 100 per test */
    char **pairs;
    size_t npairs, pairs_cap;   /* pairs_cap: a power of two, or 0 */
    bool extended;           /* properties in testcases */
    /* strict: the suite's per-test properties, name then value, in order */
    char **props;
    size_t nprops, props_cap;
} junit_state;

static void record_free(record *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        atx_result_unref(r->results[i]);
    free(r->results);
    free(r->test);
    free(r);
}

static int junit_create(atx_plugin_ctx *ctx, void **out)
{
    static const char *const keys[] = { "path", "suite", "max_output", "profile", NULL };
    const char *path = "junit.xml", *suite = "atx", *profile = "strict";
    int64_t max_output = DEFAULT_MAX_OUTPUT;
    junit_state *s;
    int r;

    if ((r = atx_plugin_config_check_keys(ctx, keys)) < 0 ||
        (r = atx_plugin_config_string(ctx, "path", &path)) < 0 ||
        (r = atx_plugin_config_string(ctx, "suite", &suite)) < 0 ||
        (r = atx_plugin_config_int(ctx, "max_output", &max_output)) < 0 ||
        (r = atx_plugin_config_string(ctx, "profile", &profile)) < 0)
        return r;
    if (strcmp(profile, "strict") != 0 && strcmp(profile, "extended") != 0)
        return atx_error_set(ATX_EINVAL, "junit: 'profile' is \"strict\" or \"extended\", "
                             "not \"%.100s\"", profile);
    if (max_output < 0)
        return atx_error_set(ATX_EINVAL, "junit: 'max_output' must not be negative");
    if (!*suite)
        return atx_error_set(ATX_EINVAL, "junit: 'suite' must not be empty");
    s = calloc(1, sizeof(*s));
    if (!s)
        return atx_error_set(ATX_ENOMEM, "out of memory");
    s->ctx = ctx;
    s->suite = suite;
    s->max_output = (size_t)max_output;
    s->extended = strcmp(profile, "extended") == 0;
    if ((r = atx_report_path(ctx, path, s->path, sizeof(s->path))) < 0) {
        free(s);
        return r;
    }
    *out = s;
    return 0;
}

static void junit_destroy(void *state)
{
    junit_state *s = state;

    if (s->spool)
        fclose(s->spool);
    while (s->open) {
        record *next = s->open->next;
        record_free(s->open);
        s->open = next;
    }
    for (size_t i = 0; i < s->pairs_cap; i++)
        free(s->pairs[i]);
    free(s->pairs);
    for (size_t i = 0; i < s->nprops; i++)
        free(s->props[i]);
    free(s->props);
    free(s);
}

static int junit_begin(void *state, const atx_run_info *info)
{
    junit_state *s = state;

    snprintf(s->hostname, sizeof(s->hostname), "%s", info->hostname ? info->hostname : "");
    snprintf(s->run_id, sizeof(s->run_id), "%s", info->run_id ? info->run_id : "");
    s->started_ns = info->started_ns;
    /* The report's share of output per testcase: ~20 MB in all, split
     * between stdout and stderr. */
    size_t per = REPORT_OUTPUT_BUDGET / 2 / (info->tests ? info->tests : 1);
    if (per < MIN_OUTPUT)
        per = MIN_OUTPUT;
    if (per < s->max_output)
        s->max_output = per;
    if (!(s->spool = atx_report_spool(s->path)))
        return atx_error_last()->code;
    return 0;
}

/* ---- writing one test ---- */

/* Clean text for XML; past max bytes (0: no cap) keep a head and a tail of
 * max bytes in all. */
static char *xml_text(const char *data, size_t len, unsigned flags, size_t max)
{
    char *clean, *out;
    size_t n;

    if (!data)
        return NULL;
    if (atx_text_clean(data, len, flags, &clean, &n) < 0)
        return NULL;
    if (max == 0 || n <= max)
        return clean;
    size_t head = atx_text_utf8_floor(clean, n, max / 2);
    size_t tail = n - (max - max / 2);
    while (tail < n && ((unsigned char)clean[tail] & 0xC0) == 0x80)
        tail++;
    if (asprintf(&out, "%.*s\n[... %zu bytes omitted in this report ...]\n%s", (int)head, clean,
                 tail - head, clean + tail) < 0)
        out = NULL;
    free(clean);
    return out;
}

/* A one-line attribute value. */
static char *attr_text(const char *s)
{
    char *t = xml_text(s ? s : "", s ? strlen(s) : 0, ATX_TEXT_STRIP_ANSI | ATX_TEXT_XML |
                                                       ATX_TEXT_KEEP_NEWLINES, 2048);
    for (char *p = t; p && *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = ' ';
    return t;
}

static void write_attr(xmlTextWriterPtr w, const char *name, const char *value)
{
    char *v = attr_text(value);
    xmlTextWriterWriteAttribute(w, BAD_CAST name, BAD_CAST(v ? v : ""));
    free(v);
}

static void write_text_element(xmlTextWriterPtr w, const char *name, const char *data,
                               size_t len, size_t max)
{
    char *t = xml_text(data, len, ATX_TEXT_STRIP_ANSI | ATX_TEXT_XML | ATX_TEXT_KEEP_NEWLINES,
                       max);
    xmlTextWriterStartElement(w, BAD_CAST name);
    if (t)
        xmlTextWriterWriteString(w, BAD_CAST t);
    xmlTextWriterEndElement(w);
    free(t);
}

typedef enum kind { K_PASS, K_FAILURE, K_ERROR, K_SKIPPED } kind;

static kind kind_of(const atx_result *r)
{
    switch (atx_result_status(r)) {
    case ATX_STATUS_PASS:
    case ATX_STATUS_INFO:
    case ATX_STATUS_WARN:
        return K_PASS;
    case ATX_STATUS_FAIL:
        return K_FAILURE;
    case ATX_STATUS_SKIP:
        return K_SKIPPED;
    default:
        return K_ERROR;
    }
}

static const char *type_of(const atx_result *r)
{
    const char *t = atx_result_error_type(r);
    return t && *t ? t : atx_result_status_word(r);
}

static const char *message_of(const atx_result *r)
{
    const char *n = atx_result_note(r);
    return n && *n ? n : atx_result_status_word(r);
}

/* The detail of a failed attempt: note, exit code, where it ran. */
static void write_detail(xmlTextWriterPtr w, const atx_result *r)
{
    char buf[2048];
    int code = atx_result_exit_code(r);
    char codebuf[32] = "none";

    if (code != ATX_NO_EXIT_CODE)
        snprintf(codebuf, sizeof(codebuf), "%d", code);
    snprintf(buf, sizeof(buf), "%s\nattempt %d on %s, exit code %s\n", message_of(r),
             atx_result_attempt(r), atx_result_system_id(r) ? atx_result_system_id(r) : "-",
             codebuf);
    char *t = xml_text(buf, strlen(buf), ATX_TEXT_STRIP_ANSI | ATX_TEXT_XML |
                                         ATX_TEXT_KEEP_NEWLINES, 0);
    if (t)
        xmlTextWriterWriteString(w, BAD_CAST t);
    free(t);
}

/* stdout (with attachment lines) and stderr, each capped to max bytes. */
static void write_outputs(xmlTextWriterPtr w, const atx_result *r, bool attachments,
                          size_t max)
{
    size_t len;
    const char *out = atx_result_output(r, ATX_STREAM_STDOUT, &len, NULL);
    size_t nfiles = attachments ? atx_result_file_count(r) : 0;

    if (out || nfiles) {
        /* Attachments: one [[ATTACHMENT|path]] line each, paths without [ ] |. */
        char *text = NULL;
        size_t tlen = 0;
        FILE *m = open_memstream(&text, &tlen);
        if (!m)
            return;
        if (out)
            fwrite(out, 1, len, m);
        if (out && len && out[len - 1] != '\n' && nfiles)
            fputc('\n', m);
        for (size_t i = 0; i < nfiles; i++) {
            const char *f = atx_result_file(r, i);
            if (strpbrk(f, "[]|"))
                continue;
            fprintf(m, "[[ATTACHMENT|%s]]\n", f);
        }
        fclose(m);
        write_text_element(w, "system-out", text, tlen, max);
        free(text);
    }
    const char *err = atx_result_output(r, ATX_STREAM_STDERR, &len, NULL);
    if (err)
        write_text_element(w, "system-err", err, len, max);
}

static void split_name(const char *test, const char *subtest, const char *suite, char **cls,
                       char **name)
{
    const char *slash = strrchr(test, '/');
    char *c;

    if (subtest) {
        /* A subtest: classname is the test's folder, name "<test base>/<sub>". */
        if (slash && slash != test)
            c = strndup(test, (size_t)(slash - test));
        else
            c = strdup(slash ? "/" : suite);
        if (asprintf(name, "%s/%s", slash ? slash + 1 : test, subtest) < 0)
            *name = NULL;
    } else if (slash && slash[1]) {
        c = slash == test ? strdup("/") : strndup(test, (size_t)(slash - test));
        *name = strdup(slash + 1);
    } else {
        c = strdup(suite);
        *name = strdup(test);
    }
    /* A '.' in a classname is a Java package separator to Jenkins. */
    for (char *p = c; p && *p; p++)
        if (*p == '.')
            *p = '_';
    *cls = c;
}

static uint64_t hash_str(const char *k)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *k; k++)
        h = (h ^ (unsigned char)*k) * 1099511628211ULL;
    return h;
}

/* Add key to the set (taking it) unless present: 1 added, 0 present, -1 OOM. */
static int pair_add(junit_state *s, char *key)
{
    if (2 * (s->npairs + 1) > s->pairs_cap) {
        size_t cap = s->pairs_cap ? s->pairs_cap * 2 : 256;
        char **slots = calloc(cap, sizeof(*slots));
        if (!slots)
            return -1;
        for (size_t i = 0; i < s->pairs_cap; i++) {
            if (!s->pairs[i])
                continue;
            size_t j = hash_str(s->pairs[i]) & (cap - 1);
            while (slots[j])
                j = (j + 1) & (cap - 1);
            slots[j] = s->pairs[i];
        }
        free(s->pairs);
        s->pairs = slots;
        s->pairs_cap = cap;
    }
    size_t j = hash_str(key) & (s->pairs_cap - 1);
    while (s->pairs[j]) {
        if (strcmp(s->pairs[j], key) == 0)
            return 0;
        j = (j + 1) & (s->pairs_cap - 1);
    }
    s->pairs[j] = key;
    s->npairs++;
    return 1;
}

/* Make the classname/name pair unique in the file. */
static void unique_pair(junit_state *s, char **name, const char *cls)
{
    for (int k = 1;; k++) {
        char *key;
        if (asprintf(&key, "%s\x1f%s", cls, *name) < 0)
            return;
        int added = pair_add(s, key);
        if (added != 0) {
            if (added < 0)
                free(key);
            return;
        }
        free(key);
        char *renamed;
        if (asprintf(&renamed, "%s (%d)", *name, k + 1) < 0)
            return;
        free(*name);
        *name = renamed;
    }
}

/* ---- what the outcome history says ---- */

/* A suite property for the strict profile (name and value taken). */
static int suite_prop(junit_state *s, char *name, char *value)
{
    if (name && value && s->nprops + 2 > s->props_cap) {
        size_t cap = s->props_cap ? s->props_cap * 2 : 16;
        char **p = realloc(s->props, cap * sizeof(*p));
        if (p) {
            s->props = p;
            s->props_cap = cap;
        }
    }
    if (!name || !value || s->nprops + 2 > s->props_cap) {
        free(name);
        free(value);
        return atx_error_set(ATX_ENOMEM, "out of memory");
    }
    s->props[s->nprops++] = name;
    s->props[s->nprops++] = value;
    return 0;
}

static void write_prop(xmlTextWriterPtr w, const char *name, const char *value)
{
    xmlTextWriterStartElement(w, BAD_CAST "property");
    write_attr(w, "name", name);
    write_attr(w, "value", value);
    xmlTextWriterEndElement(w);
}

/* The flake rate (on a test's final own result, when the history knows the
 * test) and the quarantine: the testcase's properties, first in it
 * (extended profile), else the suite's for a test that flaked or is
 * quarantined. */
static int history_props(junit_state *s, xmlTextWriterPtr w, const atx_result *r)
{
    double rate = atx_result_subtest(r) ? -1 : atx_result_flake_rate(r);
    bool quarantined = atx_result_quarantined(r);
    char num[8], *name;
    int e = 0;

    if (rate >= 0)
        atx_text_rate(rate, num);
    if (s->extended) {
        if (rate < 0 && !quarantined)
            return 0;
        xmlTextWriterStartElement(w, BAD_CAST "properties");
        if (rate >= 0)
            write_prop(w, "flake_rate", num);
        if (quarantined)
            write_prop(w, "quarantined", "true");
        xmlTextWriterEndElement(w);
        return 0;
    }
    /* One per test: its subtests' testcases share the test's. */
    if (atx_result_subtest(r))
        return 0;
    if (rate > 0)
        e = suite_prop(s, asprintf(&name, "atx.flake_rate:%s", atx_result_test(r)) < 0 ? NULL
                                                                                       : name,
                       strdup(num));
    if (e == 0 && quarantined)
        e = suite_prop(s, asprintf(&name, "atx.quarantined:%s", atx_result_test(r)) < 0 ? NULL
                                                                                         : name,
                       strdup("true"));
    return e;
}

/* Whether an earlier attempt becomes a flaky* or rerun* element: a failed
 * attempt of a test that did not end skipped. */
static bool attempt_shown(kind final, const atx_result *e)
{
    kind ek = kind_of(e);
    return final != K_SKIPPED && (ek == K_FAILURE || ek == K_ERROR);
}

/* One testcase: the final result r, and earlier attempts of the same test. */
static int write_testcase(junit_state *s, xmlTextWriterPtr w, const atx_result *r,
                           const atx_result *const *earlier, size_t nearlier)
{
    char *cls = NULL, *name = NULL;
    char secs[32];
    kind k = kind_of(r);
    size_t shown = 1, max = s->max_output;
    int rc;

    split_name(atx_result_test(r), atx_result_subtest(r), s->suite, &cls, &name);
    if (!cls || !name) {
        free(cls);
        free(name);
        return atx_error_set(ATX_ENOMEM, "out of memory");
    }
    unique_pair(s, &name, cls);
    atx_text_seconds(atx_result_duration(r), secs);
    xmlTextWriterStartElement(w, BAD_CAST "testcase");
    write_attr(w, "name", name);
    write_attr(w, "classname", cls);
    xmlTextWriterWriteAttribute(w, BAD_CAST "time", BAD_CAST secs);
    rc = history_props(s, w, r);
    s->tests++;
    if (k == K_FAILURE || k == K_ERROR) {
        xmlTextWriterStartElement(w, BAD_CAST(k == K_FAILURE ? "failure" : "error"));
        write_attr(w, "message", message_of(r));
        write_attr(w, "type", type_of(r));
        write_detail(w, r);
        xmlTextWriterEndElement(w);
        if (k == K_FAILURE)
            s->failures++;
        else
            s->errors++;
    } else if (k == K_SKIPPED) {
        xmlTextWriterStartElement(w, BAD_CAST "skipped");
        write_attr(w, "message", message_of(r));
        xmlTextWriterEndElement(w);
        s->skipped++;
    }
    /* The attempts whose output is written share the testcase's budget. */
    for (size_t i = 0; i < nearlier; i++)
        shown += attempt_shown(k, earlier[i]);
    if (max) {
        max /= shown;
        if (max == 0)
            max = 1;
    }
    /* Earlier failed attempts: flaky* when the test passed in the end,
     * rerun* when it failed every time. */
    for (size_t i = 0; i < nearlier; i++) {
        const atx_result *e = earlier[i];
        if (!attempt_shown(k, e))
            continue;
        kind ek = kind_of(e);
        const char *el = k == K_PASS ? (ek == K_FAILURE ? "flakyFailure" : "flakyError")
                                     : (ek == K_FAILURE ? "rerunFailure" : "rerunError");
        xmlTextWriterStartElement(w, BAD_CAST el);
        write_attr(w, "message", message_of(e));
        write_attr(w, "type", type_of(e));
        xmlTextWriterStartElement(w, BAD_CAST "stackTrace");
        write_detail(w, e);
        xmlTextWriterEndElement(w);
        write_outputs(w, e, false, max);
        xmlTextWriterEndElement(w);
    }
    write_outputs(w, r, true, max);
    xmlTextWriterEndElement(w);
    free(cls);
    free(name);
    return rc;
}

/* Write a finished test's testcases to the spool. */
static int flush_record(junit_state *s, record *rec)
{
    xmlBufferPtr buf = xmlBufferCreate();
    xmlTextWriterPtr w = buf ? xmlNewTextWriterMemory(buf, 0) : NULL;
    const atx_result **earlier = calloc(rec->n + 1, sizeof(*earlier));
    size_t nearlier = 0;
    int r = 0;

    if (!buf || !w || !earlier) {
        r = atx_error_set(ATX_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < rec->n; i++) {
        const atx_result *x = rec->results[i];
        if (!atx_result_subtest(x) && !atx_result_final(x))
            earlier[nearlier++] = x;
    }
    for (size_t i = 0; i < rec->n && r == 0; i++) {
        const atx_result *x = rec->results[i];
        if (!atx_result_final(x))
            continue;
        if (atx_result_subtest(x))
            r = write_testcase(s, w, x, NULL, 0);
        else
            r = write_testcase(s, w, x, earlier, nearlier);
    }
    xmlTextWriterFlush(w);
    if (fwrite(xmlBufferContent(buf), 1, (size_t)xmlBufferLength(buf), s->spool) !=
        (size_t)xmlBufferLength(buf))
        r = atx_error_set(-errno, "junit: cannot write the spool: %s", strerror(errno));
out:
    free(earlier);
    if (w)
        xmlFreeTextWriter(w);
    if (buf)
        xmlBufferFree(buf);
    return r;
}

static void unlink_record(junit_state *s, record *rec)
{
    for (record **pp = &s->open; *pp; pp = &(*pp)->next) {
        if (*pp == rec) {
            *pp = rec->next;
            break;
        }
    }
    if (s->last == rec)
        s->last = NULL;
    record_free(rec);
}

static int junit_result(void *state, const atx_result *res)
{
    junit_state *s = state;
    const char *test = atx_result_test(res);
    record *rec;
    int r = 0;

    /* The results of one attempt arrive together, so a test whose final own
     * result is in is complete once another test's result arrives. Tests
     * waiting for a rerun stay open (there are few: at most one per rerun
     * in flight). */
    if (s->last && s->last->final && strcmp(s->last->test, test) != 0) {
        r = flush_record(s, s->last);
        unlink_record(s, s->last);
    }
    for (rec = s->open; rec && strcmp(rec->test, test) != 0; rec = rec->next)
        ;
    if (!rec) {
        rec = calloc(1, sizeof(*rec));
        if (!rec || !(rec->test = strdup(test))) {
            free(rec);
            return atx_error_set(ATX_ENOMEM, "out of memory");
        }
        record **tail = &s->open;
        while (*tail)
            tail = &(*tail)->next;
        *tail = rec;
    }
    s->last = rec;
    if (rec->n == rec->cap) {
        size_t cap = rec->cap ? rec->cap * 2 : 4;
        atx_result **p = realloc(rec->results, cap * sizeof(*p));
        if (!p)
            return atx_error_set(ATX_ENOMEM, "out of memory");
        rec->results = p;
        rec->cap = cap;
    }
    rec->results[rec->n++] = atx_result_ref((atx_result *)res);
    if (!atx_result_subtest(res) && atx_result_final(res))
        rec->final = true;
    return r;
}

static int junit_end(void *state, const atx_summary *sum)
{
    junit_state *s = state;
    char tmp[PATH_MAX + 16], secs[32], when[32], num[32];
    xmlTextWriterPtr w;
    int r = 0;

    while (s->open) {
        if ((r = flush_record(s, s->open)) < 0)
            return r;
        unlink_record(s, s->open);
    }
    if (s->tests == 0) {
        /* Jenkins drops empty suites: say why there is nothing. */
        xmlBufferPtr buf = xmlBufferCreate();
        xmlTextWriterPtr mw = xmlNewTextWriterMemory(buf, 0);
        xmlTextWriterStartElement(mw, BAD_CAST "testcase");
        xmlTextWriterWriteAttribute(mw, BAD_CAST "name", BAD_CAST "(no tests)");
        write_attr(mw, "classname", s->suite);
        xmlTextWriterWriteAttribute(mw, BAD_CAST "time", BAD_CAST "0.000");
        xmlTextWriterStartElement(mw, BAD_CAST "skipped");
        xmlTextWriterWriteAttribute(mw, BAD_CAST "message", BAD_CAST "the run had no tests");
        xmlTextWriterEndElement(mw);
        xmlTextWriterEndElement(mw);
        xmlFreeTextWriter(mw);
        fwrite(xmlBufferContent(buf), 1, (size_t)xmlBufferLength(buf), s->spool);
        xmlBufferFree(buf);
        s->tests = s->skipped = 1;
    }
    if (fflush(s->spool) != 0)
        return atx_error_set(-errno, "junit: cannot write the spool: %s", strerror(errno));

    /* libxml2's writer writes the file by name: close ours first. */
    FILE *f = atx_report_begin(s->path, tmp, sizeof(tmp));
    if (!f)
        return atx_error_last()->code;
    fclose(f);
    w = xmlNewTextWriterFilename(tmp, 0);
    if (!w) {
        atx_report_finish(NULL, tmp, s->path, 1);
        return atx_error_set(ATX_EIO, "junit: cannot write %s", tmp);
    }
    atx_text_seconds(sum->duration_ns, secs);
    atx_text_utc(s->started_ns, 0, when);
    xmlTextWriterSetIndent(w, 0);
    xmlTextWriterStartDocument(w, "1.0", "UTF-8", NULL);
    xmlTextWriterStartElement(w, BAD_CAST "testsuites");
    write_attr(w, "name", s->suite);
#define NUM_ATTR(n_, v_)                                   \
    snprintf(num, sizeof(num), "%zu", (size_t)(v_));       \
    xmlTextWriterWriteAttribute(w, BAD_CAST(n_), BAD_CAST num)
    NUM_ATTR("tests", s->tests);
    NUM_ATTR("failures", s->failures);
    NUM_ATTR("errors", s->errors);
    xmlTextWriterWriteAttribute(w, BAD_CAST "time", BAD_CAST secs);
    xmlTextWriterWriteRaw(w, BAD_CAST "\n");
    xmlTextWriterStartElement(w, BAD_CAST "testsuite");
    write_attr(w, "name", s->suite);
    NUM_ATTR("tests", s->tests);
    NUM_ATTR("failures", s->failures);
    NUM_ATTR("errors", s->errors);
    NUM_ATTR("skipped", s->skipped);
#undef NUM_ATTR
    xmlTextWriterWriteAttribute(w, BAD_CAST "time", BAD_CAST secs);
    xmlTextWriterWriteAttribute(w, BAD_CAST "timestamp", BAD_CAST when);
    write_attr(w, "hostname", s->hostname);
    xmlTextWriterWriteAttribute(w, BAD_CAST "id", BAD_CAST "0");
    xmlTextWriterStartElement(w, BAD_CAST "properties");
    xmlTextWriterStartElement(w, BAD_CAST "property");
    xmlTextWriterWriteAttribute(w, BAD_CAST "name", BAD_CAST "atx.version");
    xmlTextWriterWriteAttribute(w, BAD_CAST "value", BAD_CAST ATX_VERSION_STRING);
    xmlTextWriterEndElement(w);
    xmlTextWriterStartElement(w, BAD_CAST "property");
    xmlTextWriterWriteAttribute(w, BAD_CAST "name", BAD_CAST "atx.run_id");
    write_attr(w, "value", s->run_id);
    xmlTextWriterEndElement(w);
    for (size_t i = 0; i + 1 < s->nprops; i += 2)
        write_prop(w, s->props[i], s->props[i + 1]);
    xmlTextWriterEndElement(w);
    xmlTextWriterWriteRaw(w, BAD_CAST "\n");

    rewind(s->spool);
    char block[65536];
    size_t n;
    while ((n = fread(block, 1, sizeof(block), s->spool)) > 0)
        xmlTextWriterWriteRawLen(w, BAD_CAST block, (int)n);
    if (ferror(s->spool))
        r = atx_error_set(ATX_EIO, "junit: cannot read the spool");
    xmlTextWriterEndElement(w);
    xmlTextWriterWriteRaw(w, BAD_CAST "\n");
    xmlTextWriterEndElement(w);
    xmlTextWriterWriteRaw(w, BAD_CAST "\n");
    if (xmlTextWriterEndDocument(w) < 0 && r == 0)
        r = atx_error_set(ATX_EIO, "junit: cannot write %s (disk full?)", tmp);
    xmlFreeTextWriter(w);
    int fr = atx_report_finish(NULL, tmp, s->path, r < 0);
    return r < 0 ? r : fr;
}

static const atx_aggregator_vtable junit_vtable = {
    .version = ATX_AGGREGATOR_VTABLE_VERSION,
    .create = junit_create,
    .destroy = junit_destroy,
    .begin = junit_begin,
    .result = junit_result,
    .end = junit_end,
    .started = NULL,
};

ATX_PLUGIN_DEFINE(ATX_PLUGIN_AGGREGATOR, "junit", ATX_VERSION_STRING,
                  "JUnit XML that every CI reads, written atomically", &junit_vtable)
