/*
 * html: one self-contained HTML report (totals, filters, a timeline of every
 * attempt per system, and a row per test with its attempts, subtests, notes,
 * files and output), readable offline: CSS and JavaScript are inline
 * (page.html, embedded at build time) and the data is one JSON element.
 *
 * Memory stays flat on long runs: each result is turned into its JSON text
 * (output cleaned and capped) and appended to a spool file at once; memory
 * keeps only test names, tags and where each result sits in the spool. At
 * the end the page is assembled in a temporary file next to the target, with
 * the results grouped by test, synced and renamed into place.
 *
 * No "<" reaches the JSON element raw (it is written as \u003c), so no test
 * output can end the element early ("</script>") or open a comment in it.
 *
 * What changed since the run before (atx_plugin_ctx_changes()) is written as
 * HTML at the top of the page, readable without JavaScript; each test it
 * names links to its row (#test=NAME) when the page has one.
 */
#define _GNU_SOURCE 1
#include <atx/plugin/aggregator.h>
#include <atx/plugin/report.h>
#include <atx/plugin/text.h>
#include <atx/changes.h>
#include <atx/test.h>

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The page template, generated from page.html by embed.cmake. */
extern const char atx_html_page[];
extern const size_t atx_html_page_size;

#define DEFAULT_MAX_OUTPUT (16 * 1024)
/* All output kept in one report; passing results may use half of it, so the
 * output of failures late in a long run still has room. */
#define REPORT_OUTPUT_BUDGET (20 * 1024 * 1024)
#define MIN_OUTPUT 2048
#define MAX_NOTE 16384
/* Tests named per kind of change; past it, how many more. */
#define CHANGES_SHOWN 200

/* Strings interned to dense indices: an open-addressing hash of indices. */
typedef struct strset {
    char **items;
    size_t n, cap;
    uint32_t *slots;   /* index + 1; 0 empty */
    size_t nslots;     /* a power of two, or 0 */
} strset;

/* Where one result's JSON text sits in the spool; next: the same test's
 * next result (index + 1, 0 for none). */
typedef struct entry {
    uint64_t off;
    uint32_t len;
    uint32_t next;
} entry;

typedef struct test_info {
    uint32_t first, last;  /* entry index + 1 */
    uint32_t *tags;        /* indices into the tag set */
    uint32_t ntags;
    bool tagged;           /* tags read from the test's spec */
} test_info;

typedef struct html_state {
    atx_plugin_ctx *ctx;
    char path[PATH_MAX];
    char files_base[PATH_MAX];  /* from the report to the results folder */
    const char *title;          /* configured, or NULL */
    char run_id[128];
    char hostname[256];
    int64_t started_ns;
    size_t max_output;          /* per stream per result */
    uint64_t spent;             /* output bytes kept so far */
    bool omitted;               /* the budget cut some output */
    FILE *spool;
    uint64_t spool_size;
    strset tests;
    test_info *info;            /* parallel to tests.items */
    size_t info_cap;
    strset tags;
    entry *entries;
    size_t nentries, entries_cap;
} html_state;

/* ---- the string set ---- */

static uint64_t hash_str(const char *k)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *k; k++)
        h = (h ^ (unsigned char)*k) * 1099511628211ULL;
    return h;
}

static void strset_release(strset *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->items[i]);
    free(s->items);
    free(s->slots);
    memset(s, 0, sizeof(*s));
}

/* The index of key, added if new. @return 0 or ATX_ENOMEM. */
static int strset_intern(strset *s, const char *key, size_t *index)
{
    if (2 * (s->n + 1) > s->nslots) {
        size_t nslots = s->nslots ? s->nslots * 2 : 256;
        uint32_t *slots = calloc(nslots, sizeof(*slots));
        if (!slots)
            return atx_error_set(ATX_ENOMEM, "out of memory");
        for (size_t i = 0; i < s->n; i++) {
            size_t j = hash_str(s->items[i]) & (nslots - 1);
            while (slots[j])
                j = (j + 1) & (nslots - 1);
            slots[j] = (uint32_t)(i + 1);
        }
        free(s->slots);
        s->slots = slots;
        s->nslots = nslots;
    }
    size_t j = hash_str(key) & (s->nslots - 1);
    for (; s->slots[j]; j = (j + 1) & (s->nslots - 1)) {
        if (strcmp(s->items[s->slots[j] - 1], key) == 0) {
            *index = s->slots[j] - 1;
            return 0;
        }
    }
    if (s->n >= UINT32_MAX - 1)
        return atx_error_set(ATX_ENOMEM, "html: too many names");
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        char **items = realloc(s->items, cap * sizeof(*items));
        if (!items)
            return atx_error_set(ATX_ENOMEM, "out of memory");
        s->items = items;
        s->cap = cap;
    }
    if (!(s->items[s->n] = strdup(key)))
        return atx_error_set(ATX_ENOMEM, "out of memory");
    s->slots[j] = (uint32_t)(s->n + 1);
    *index = s->n++;
    return 0;
}

/* The index of key + 1, or 0 when it is not in the set. */
static size_t strset_find(const strset *s, const char *key)
{
    if (!s->nslots)
        return 0;
    for (size_t j = hash_str(key) & (s->nslots - 1); s->slots[j]; j = (j + 1) & (s->nslots - 1))
        if (strcmp(s->items[s->slots[j] - 1], key) == 0)
            return s->slots[j];
    return 0;
}

/* The test's index, its info grown to match. */
static int test_index(html_state *s, const char *name, size_t *index)
{
    int r = strset_intern(&s->tests, name, index);
    if (r < 0)
        return r;
    if (*index >= s->info_cap) {
        size_t cap = s->info_cap ? s->info_cap * 2 : 64;
        test_info *info = realloc(s->info, cap * sizeof(*info));
        if (!info)
            return atx_error_set(ATX_ENOMEM, "out of memory");
        memset(info + s->info_cap, 0, (cap - s->info_cap) * sizeof(*info));
        s->info = info;
        s->info_cap = cap;
    }
    return 0;
}

/* ---- create, begin, destroy ---- */

/* How the report's links reach the results folder: "" or "../.." for a
 * report inside it, the folder's absolute path otherwise. */
static void set_files_base(html_state *s, const char *path, const char *dir)
{
    size_t depth = 0;
    bool inside = path[0] != '/';

    for (const char *p = path; inside && *p;) {
        size_t n = strcspn(p, "/");
        const char *next = p + n + (p[n] == '/');
        if (n == 2 && p[0] == '.' && p[1] == '.')
            inside = false;
        else if (p[n] == '/' && n > 0 && !(n == 1 && p[0] == '.'))
            depth++;
        p = next;
    }
    s->files_base[0] = '\0';
    if (inside) {
        for (size_t i = 0; i < depth; i++)
            strncat(s->files_base, "../", sizeof(s->files_base) - strlen(s->files_base) - 1);
    } else if (dir) {
        snprintf(s->files_base, sizeof(s->files_base), "%s/", dir);
    }
}

static int html_create(atx_plugin_ctx *ctx, void **out)
{
    static const char *const keys[] = { "path", "max_output", "title", NULL };
    const char *path = "report.html", *title = NULL;
    const char *dir = atx_plugin_ctx_results_dir(ctx);
    int64_t max_output = DEFAULT_MAX_OUTPUT;
    html_state *s;
    int r;

    if ((r = atx_plugin_config_check_keys(ctx, keys)) < 0 ||
        (r = atx_plugin_config_string(ctx, "path", &path)) < 0 ||
        (r = atx_plugin_config_string(ctx, "title", &title)) < 0 ||
        (r = atx_plugin_config_int(ctx, "max_output", &max_output)) < 0)
        return r;
    if (max_output < 0)
        return atx_error_set(ATX_EINVAL, "html: 'max_output' must not be negative");
    if (!*path)
        return atx_error_set(ATX_EINVAL, "html: 'path' must not be empty");
    s = calloc(1, sizeof(*s));
    if (!s)
        return atx_error_set(ATX_ENOMEM, "out of memory");
    s->ctx = ctx;
    s->title = title && *title ? title : NULL;
    s->max_output = (size_t)max_output;
    if ((r = atx_report_path(ctx, path, s->path, sizeof(s->path))) < 0) {
        free(s);
        return r;
    }
    set_files_base(s, path, dir);
    *out = s;
    return 0;
}

static void html_destroy(void *state)
{
    html_state *s = state;

    if (s->spool)
        fclose(s->spool);
    for (size_t i = 0; i < s->tests.n; i++)
        free(s->info[i].tags);
    free(s->info);
    strset_release(&s->tests);
    strset_release(&s->tags);
    free(s->entries);
    free(s);
}

static int html_begin(void *state, const atx_run_info *info)
{
    html_state *s = state;

    snprintf(s->hostname, sizeof(s->hostname), "%s", info->hostname ? info->hostname : "");
    snprintf(s->run_id, sizeof(s->run_id), "%s", info->run_id ? info->run_id : "");
    s->started_ns = info->started_ns;
    /* Each test's share of the budget, split between its two streams. */
    size_t per = REPORT_OUTPUT_BUDGET / 2 / (info->tests ? info->tests : 1);
    if (per < MIN_OUTPUT)
        per = MIN_OUTPUT;
    if (per < s->max_output)
        s->max_output = per;
    /* Next to the report, so a full disk shows up now rather than at the end. */
    if (!(s->spool = atx_report_spool(s->path)))
        return atx_error_last()->code;
    return 0;
}

/* ---- tags, from the test's spec (fmf metadata "tag", or a "tag" key) ---- */

static int add_tag(html_state *s, test_info *ti, const char *tag)
{
    size_t k;
    char *clean;
    int r;

    if (!*tag)
        return 0;
    if (atx_text_clean(tag, strlen(tag), ATX_TEXT_STRIP_ANSI, &clean, NULL) < 0)
        return atx_error_set(ATX_ENOMEM, "out of memory");
    r = strset_intern(&s->tags, clean, &k);
    free(clean);
    if (r < 0)
        return r;
    for (uint32_t i = 0; i < ti->ntags; i++)
        if (ti->tags[i] == k)
            return 0;
    uint32_t *tags = realloc(ti->tags, (ti->ntags + 1) * sizeof(*tags));
    if (!tags)
        return atx_error_set(ATX_ENOMEM, "out of memory");
    tags[ti->ntags++] = (uint32_t)k;
    ti->tags = tags;
    return 0;
}

static int add_tags(html_state *s, test_info *ti, json_object *v)
{
    int r = 0;

    if (json_object_is_type(v, json_type_string))
        return add_tag(s, ti, json_object_get_string(v));
    if (!json_object_is_type(v, json_type_array))
        return 0;
    for (size_t i = 0; i < json_object_array_length(v) && r == 0; i++) {
        json_object *e = json_object_array_get_idx(v, i);
        if (json_object_is_type(e, json_type_string))
            r = add_tag(s, ti, json_object_get_string(e));
    }
    return r;
}

static void html_started(void *state, const atx_test *t, const char *system_id, int attempt)
{
    html_state *s = state;
    json_object *spec, *meta, *v;
    size_t i;

    (void)system_id;
    (void)attempt;
    if (test_index(s, atx_test_name(t), &i) < 0 || s->info[i].tagged)
        return;
    s->info[i].tagged = true;
    spec = json_tokener_parse(atx_test_spec_json(t));
    if (!spec)
        return;
    if (json_object_object_get_ex(spec, "tag", &v))
        add_tags(s, &s->info[i], v);
    if (json_object_object_get_ex(spec, "metadata", &meta) &&
        json_object_object_get_ex(meta, "tag", &v))
        add_tags(s, &s->info[i], v);
    json_object_put(spec);
}

/* ---- one result to JSON ---- */

/* Clean bytes into a JSON string; past max bytes (0: no cap) keep a head
 * and a tail and say how much was left out. */
static json_object *text(const char *data, size_t len, size_t max)
{
    char *head = NULL, *tail = NULL, *joined = NULL;
    json_object *o = NULL;
    size_t hn, tn;

    if (!data)
        return NULL;
    if (max == 0 || len <= max) {
        if (atx_text_clean(data, len, ATX_TEXT_STRIP_ANSI, &head, &hn) == 0)
            o = json_object_new_string_len(head, (int)hn);
        free(head);
        return o;
    }
    size_t h = atx_text_utf8_floor(data, len, max / 2);
    size_t t = len - (max - max / 2);
    while (t < len && ((unsigned char)data[t] & 0xC0) == 0x80)
        t++;
    if (atx_text_clean(data, h, ATX_TEXT_STRIP_ANSI, &head, &hn) == 0 &&
        atx_text_clean(data + t, len - t, ATX_TEXT_STRIP_ANSI, &tail, &tn) == 0) {
        int n = asprintf(&joined, "%s\n[... %zu bytes omitted in this report ...]\n%s", head,
                         t - h, tail);
        if (n >= 0)
            o = json_object_new_string_len(joined, n);
    }
    free(head);
    free(tail);
    free(joined);
    return o;
}

static json_object *str(const char *s)
{
    return s ? text(s, strlen(s), 0) : NULL;
}

/* A stream's output within its share of the report's budget. */
static void add_output(html_state *s, json_object *o, const atx_result *r, atx_stream stream,
                       const char *key, bool failure)
{
    uint64_t limit = failure ? REPORT_OUTPUT_BUDGET : REPORT_OUTPUT_BUDGET / 2;
    uint64_t room = s->spent < limit ? limit - s->spent : 0;
    size_t len, max = s->max_output;
    uint64_t total;
    const char *data = atx_result_output(r, stream, &len, &total);
    char totkey[32];
    json_object *v;

    if (!data || max == 0)
        return;
    if (max > room) {
        max = (size_t)room;
        s->omitted = true;
    }
    if (len > 0 && max < 64) {
        char msg[160];
        snprintf(msg, sizeof(msg), "[%zu bytes of output not kept: the report's output "
                 "budget is spent]", len);
        v = json_object_new_string(msg);
    } else {
        v = text(data, len, max);
    }
    if (!v)
        return;
    s->spent += (uint64_t)json_object_get_string_len(v);
    json_object_object_add(o, key, v);
    snprintf(totkey, sizeof(totkey), "%s_total", key);
    json_object_object_add(o, totkey, json_object_new_int64((int64_t)(total > len ? total : len)));
}

static json_object *result_json(html_state *s, const atx_result *r)
{
    json_object *o = json_object_new_object(), *files;
    int64_t started = atx_result_started(r);
    int code = atx_result_exit_code(r);
    const char *note = atx_result_note(r);
    char secs[32];

    if (!o)
        return NULL;
    json_object_object_add(o, "subtest", str(atx_result_subtest(r)));
    json_object_object_add(o, "status", str(atx_result_status_word(r)));
    json_object_object_add(o, "attempt", json_object_new_int(atx_result_attempt(r)));
    json_object_object_add(o, "final", json_object_new_boolean(atx_result_final(r)));
    json_object_object_add(o, "system", str(atx_result_system_id(r)));
    json_object_object_add(o, "started",
                           started > 0 ? json_object_new_int64(started / 1000000) : NULL);
    /* Milliseconds, printed exactly. */
    snprintf(secs, sizeof(secs), "%.3f", (double)atx_result_duration(r) / 1e9);
    json_object_object_add(o, "duration", json_object_new_double_s(atof(secs), secs));
    json_object_object_add(o, "exit_code",
                           code == ATX_NO_EXIT_CODE ? NULL : json_object_new_int(code));
    if (note && *note)
        json_object_object_add(o, "note", text(note, strlen(note), MAX_NOTE));
    if (atx_result_error_type(r))
        json_object_object_add(o, "error_type", str(atx_result_error_type(r)));
    if (atx_result_file_count(r)) {
        files = json_object_new_array();
        for (size_t i = 0; i < atx_result_file_count(r); i++)
            json_object_array_add(files, str(atx_result_file(r, i)));
        json_object_object_add(o, "files", files);
    }
    /* From the outcome history: only what is known, to keep the data small. */
    if (atx_result_flake_rate(r) >= 0) {
        char num[8];
        atx_text_rate(atx_result_flake_rate(r), num);
        json_object_object_add(o, "flake_rate",
                               json_object_new_double_s(atx_result_flake_rate(r), num));
    }
    if (atx_result_recent(r))
        json_object_object_add(o, "recent", str(atx_result_recent(r)));
    if (atx_result_quarantined(r))
        json_object_object_add(o, "quarantined", json_object_new_boolean(1));
    bool failure = atx_status_is_failure(atx_result_status(r));
    add_output(s, o, r, ATX_STREAM_STDOUT, "stdout", failure);
    add_output(s, o, r, ATX_STREAM_STDERR, "stderr", failure);
    return o;
}

/* Write JSON text with every "<" as \u003c. @return bytes written, or -1. */
static int64_t write_json(FILE *f, const char *p, size_t len)
{
    int64_t n = 0;

    while (len > 0) {
        const char *lt = memchr(p, '<', len);
        size_t run = lt ? (size_t)(lt - p) : len;
        if (fwrite(p, 1, run, f) != run)
            return -1;
        n += (int64_t)run;
        p += run;
        len -= run;
        if (lt) {
            if (fwrite("\\u003c", 1, 6, f) != 6)
                return -1;
            n += 6;
            p++;
            len--;
        }
    }
    return n;
}

static int html_result(void *state, const atx_result *res)
{
    html_state *s = state;
    size_t ti, len;
    int r;

    if ((r = test_index(s, atx_result_test(res), &ti)) < 0)
        return r;
    if (s->nentries >= UINT32_MAX - 1)
        return atx_error_set(ATX_ENOMEM, "html: too many results");
    if (s->nentries == s->entries_cap) {
        size_t cap = s->entries_cap ? s->entries_cap * 2 : 1024;
        entry *e = realloc(s->entries, cap * sizeof(*e));
        if (!e)
            return atx_error_set(ATX_ENOMEM, "out of memory");
        s->entries = e;
        s->entries_cap = cap;
    }
    json_object *o = result_json(s, res);
    if (!o)
        return atx_error_set(ATX_ENOMEM, "out of memory");
    const char *js = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN |
                                                          JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    int64_t n = js ? write_json(s->spool, js, len) : -1;
    json_object_put(o);
    if (n < 0 || n > UINT32_MAX)
        return atx_error_set(n < 0 ? -errno : ATX_EIO, "html: cannot write the spool: %s",
                             n < 0 ? strerror(errno) : "result too large");
    entry *e = &s->entries[s->nentries];
    e->off = s->spool_size;
    e->len = (uint32_t)n;
    e->next = 0;
    s->spool_size += (uint64_t)n;
    s->nentries++;
    test_info *info = &s->info[ti];
    if (info->last)
        s->entries[info->last - 1].next = (uint32_t)s->nentries;
    else
        info->first = (uint32_t)s->nentries;
    info->last = (uint32_t)s->nentries;
    return 0;
}

/* ---- the page ---- */

/* Text for HTML (title and heading): cleaned, one line, & < > " ' escaped. */
static void write_html_text(FILE *f, const char *t)
{
    char *clean;

    if (atx_text_clean(t, strlen(t), ATX_TEXT_STRIP_ANSI, &clean, NULL) < 0)
        return;
    for (const char *p = clean; *p; p++) {
        switch (*p) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        case '\n': case '\r': case '\t': fputc(' ', f); break;
        default: fputc(*p, f);
        }
    }
    free(clean);
}

/* ---- what changed since the run before ---- */

static const char *const change_words[ATX_CHANGE_KINDS] = {
    [ATX_CHANGE_NEW_FAILURE] = "new failures", [ATX_CHANGE_FIXED] = "fixed",
    [ATX_CHANGE_STILL_FAILING] = "still failing", [ATX_CHANGE_NEW_TEST] = "new tests",
    [ATX_CHANGE_REMOVED] = "removed", [ATX_CHANGE_NEWLY_FLAKY] = "newly flaky",
    [ATX_CHANGE_SLOWER] = "slower",
};

/* A test named by the comparison: a link to its row (#test=NAME, the name
 * percent-encoded as encodeURIComponent does) when the page has one. */
static void write_change_test(html_state *s, FILE *f, atx_change kind, size_t i)
{
    const char *test = atx_changes_test(atx_plugin_ctx_changes(s->ctx), kind, i);
    size_t k = strset_find(&s->tests, test);
    char *clean = NULL;

    if (k && s->info[k - 1].first &&
        atx_text_clean(test, strlen(test), ATX_TEXT_STRIP_ANSI, &clean, NULL) == 0) {
        fputs("<a class=\"chg-test\" href=\"#test=", f);
        for (const unsigned char *p = (const unsigned char *)clean; *p; p++) {
            if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                (*p >= '0' && *p <= '9') || strchr("-_.!~*'()", *p))
                fputc(*p, f);
            else
                fprintf(f, "%%%02X", *p);
        }
        fputs("\">", f);
        write_html_text(f, test);
        fputs("</a>", f);
    } else {
        fputs("<span class=\"chg-test\">", f);
        write_html_text(f, test);
        fputs("</span>", f);
    }
    free(clean);
    int64_t now, usual;
    if (kind == ATX_CHANGE_SLOWER &&
        atx_changes_slower(atx_plugin_ctx_changes(s->ctx), i, &now, &usual) == 0) {
        char a[32], b[32];
        atx_text_seconds(now, a);
        atx_text_seconds(usual, b);
        fprintf(f, " <span class=\"kv\">%s s, usually %s s</span>", a, b);
    }
}

/* The changes section: what the run was compared with, a count per kind,
 * then the tests of each kind that has any. Nothing when there was nothing
 * to compare. */
static void write_changes(html_state *s, FILE *f)
{
    const atx_changes *c = atx_plugin_ctx_changes(s->ctx);

    if (!c)
        return;
    const char *base = atx_changes_baseline(c);
    fputs("<section class=\"changes\" id=\"changes\">\n<h2>Changes since ", f);
    write_html_text(f, base ? base : "the run before");
    fputs("</h2>\n<div class=\"chg-counts\">", f);
    for (int k = 0; k < ATX_CHANGE_KINDS; k++) {
        size_t n = atx_changes_count(c, (atx_change)k);
        bool bad = n && (k == ATX_CHANGE_NEW_FAILURE || k == ATX_CHANGE_NEWLY_FLAKY);
        fprintf(f, "<span class=\"chg-count%s\" data-kind=\"%s\"><b>%zu</b> %s</span>",
                bad ? " bad" : "", atx_change_name((atx_change)k), n, change_words[k]);
    }
    fputs("</div>\n", f);
    for (int k = 0; k < ATX_CHANGE_KINDS; k++) {
        size_t n = atx_changes_count(c, (atx_change)k);
        if (!n)
            continue;
        fprintf(f, "<div class=\"chg-kind\" data-kind=\"%s\"><span class=\"chg-label\">%s"
                   "</span> ", atx_change_name((atx_change)k), change_words[k]);
        for (size_t i = 0; i < n && i < CHANGES_SHOWN; i++) {
            if (i)
                fputs(", ", f);
            write_change_test(s, f, (atx_change)k, i);
        }
        if (n > CHANGES_SHOWN)
            fprintf(f, " <span class=\"kv\">and %zu more</span>", n - CHANGES_SHOWN);
        fputs("</div>\n", f);
    }
    fputs("</section>\n", f);
}

static int write_obj(FILE *f, json_object *o, bool drop_last)
{
    size_t len;
    const char *js = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN |
                                                          JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    if (!js || len == 0)
        return -1;
    return write_json(f, js, len - (drop_last ? 1 : 0)) < 0 ? -1 : 0;
}

static int cmp_tests(const void *a, const void *b, void *names)
{
    char *const *items = names;
    return strcmp(items[*(const uint32_t *)a], items[*(const uint32_t *)b]);
}

/* The data element's content: run facts, totals, tags, then the tests
 * (by name) with their results from the spool. */
static int write_data(html_state *s, FILE *f, const atx_summary *sum)
{
    json_object *head = json_object_new_object(), *tot = json_object_new_object();
    json_object *tags = json_object_new_array();
    uint32_t *order = calloc(s->tests.n + 1, sizeof(*order));
    char *buf = NULL;
    size_t bufcap = 0, n = 0;
    char secs[32];
    int r = 0;

    if (!head || !tot || !tags || !order) {
        r = atx_error_set(ATX_ENOMEM, "out of memory");
        goto out;
    }
    json_object_object_add(head, "run_id", json_object_new_string(s->run_id));
    json_object_object_add(head, "host", str(s->hostname));
    json_object_object_add(head, "started", json_object_new_int64(s->started_ns / 1000000));
    json_object_object_add(head, "files_base", str(s->files_base));
    json_object_object_add(head, "output_omitted", json_object_new_boolean(s->omitted));
#define TOTAL(k_, v_) json_object_object_add(tot, k_, json_object_new_int64((int64_t)(v_)))
    TOTAL("tests", sum->tests);
    TOTAL("passed", sum->passed);
    TOTAL("failed", sum->failed);
    TOTAL("errors", sum->errors);
    TOTAL("infra", sum->infra);
    TOTAL("skipped", sum->skipped);
    TOTAL("not_run", sum->not_run);
    TOTAL("flaky", sum->flaky);
    TOTAL("attempts", sum->attempts);
    TOTAL("results", sum->results);
#undef TOTAL
    snprintf(secs, sizeof(secs), "%.3f", (double)sum->duration_ns / 1e9);
    json_object_object_add(tot, "duration", json_object_new_double_s(atof(secs), secs));
    json_object_object_add(head, "totals", tot);
    tot = NULL;
    for (size_t i = 0; i < s->tags.n; i++)
        json_object_array_add(tags, str(s->tags.items[i]));
    json_object_object_add(head, "tags", tags);
    tags = NULL;
    if (write_obj(f, head, true) < 0 || fputs(",\"tests\":[", f) == EOF)
        goto io;

    for (size_t i = 0; i < s->tests.n; i++)
        if (s->info[i].first)
            order[n++] = (uint32_t)i;
    if (n > 1)
        qsort_r(order, n, sizeof(*order), cmp_tests, s->tests.items);
    for (size_t k = 0; k < n; k++) {
        const test_info *ti = &s->info[order[k]];
        json_object *name = str(s->tests.items[order[k]]);
        if (!name) {
            r = atx_error_set(ATX_ENOMEM, "out of memory");
            goto out;
        }
        int bad = (k && fputc(',', f) == EOF) || fputs("{\"name\":", f) == EOF ||
                  write_obj(f, name, false) < 0 || fputs(",\"tags\":[", f) == EOF;
        json_object_put(name);
        for (uint32_t j = 0; !bad && j < ti->ntags; j++)
            bad = fprintf(f, "%s%u", j ? "," : "", ti->tags[j]) < 0;
        if (bad || fputs("],\"results\":[", f) == EOF)
            goto io;
        for (uint32_t e = ti->first; e; e = s->entries[e - 1].next) {
            const entry *en = &s->entries[e - 1];
            if (en->len > bufcap) {
                char *p = realloc(buf, en->len);
                if (!p) {
                    r = atx_error_set(ATX_ENOMEM, "out of memory");
                    goto out;
                }
                buf = p;
                bufcap = en->len;
            }
            ssize_t got = pread(fileno(s->spool), buf, en->len, (off_t)en->off);
            if (got != (ssize_t)en->len) {
                r = atx_error_set(ATX_EIO, "html: cannot read the spool: %s",
                                  got < 0 ? strerror(errno) : "short read");
                goto out;
            }
            if ((e != ti->first && fputc(',', f) == EOF) || fwrite(buf, 1, en->len, f) != en->len)
                goto io;
        }
        if (fputs("]}", f) == EOF)
            goto io;
    }
    if (fputs("]}", f) == EOF)
        goto io;
    goto out;
io:
    r = atx_error_set(ATX_EIO, "html: cannot write %s: %s", s->path, strerror(errno));
out:
    json_object_put(head);
    json_object_put(tot);
    json_object_put(tags);
    free(order);
    free(buf);
    return r;
}

/* The template with @TITLE@, @CHANGES@ and @DATA@ filled in. */
static int write_page(html_state *s, FILE *f, const atx_summary *sum)
{
    const char *p = atx_html_page, *end = atx_html_page + atx_html_page_size;
    char deftitle[192];
    const char *title = s->title;
    int r;

    if (!title) {
        snprintf(deftitle, sizeof(deftitle), "atx run %s", s->run_id);
        title = s->run_id[0] ? deftitle : "atx run";
    }
    while (p < end) {
        const char *at = memchr(p, '@', (size_t)(end - p));
        size_t run = at ? (size_t)(at - p) : (size_t)(end - p);
        fwrite(p, 1, run, f);
        p += run;
        if (!at)
            break;
        if ((size_t)(end - p) >= 7 && memcmp(p, "@TITLE@", 7) == 0) {
            write_html_text(f, title);
            p += 7;
        } else if ((size_t)(end - p) >= 9 && memcmp(p, "@CHANGES@", 9) == 0) {
            write_changes(s, f);
            p += 9;
        } else if ((size_t)(end - p) >= 6 && memcmp(p, "@DATA@", 6) == 0) {
            if ((r = write_data(s, f, sum)) < 0)
                return r;
            p += 6;
        } else {
            fputc('@', f);
            p++;
        }
    }
    return ferror(f) ? atx_error_set(ATX_EIO, "html: cannot write %s: %s", s->path,
                                     strerror(errno)) : 0;
}

static int html_end(void *state, const atx_summary *sum)
{
    html_state *s = state;
    char tmp[PATH_MAX + 16];
    int r = 0;

    if (!s->spool)
        return atx_error_set(ATX_ESTATE, "html: the report was never begun");
    if (fflush(s->spool) != 0)
        return atx_error_set(-errno, "html: cannot write the spool: %s", strerror(errno));
    FILE *f = atx_report_begin(s->path, tmp, sizeof(tmp));
    if (!f)
        return atx_error_last()->code;
    r = write_page(s, f, sum);
    int fr = atx_report_finish(f, tmp, s->path, r < 0);
    if (r == 0)
        r = fr;
    if (r == 0)
        atx_plugin_log(s->ctx, ATX_LOG_DEBUG, "wrote %s (%zu tests, %zu results)", s->path,
                       s->tests.n, s->nentries);
    return r;
}

static const atx_aggregator_vtable html_vtable = {
    .version = ATX_AGGREGATOR_VTABLE_VERSION,
    .create = html_create,
    .destroy = html_destroy,
    .begin = html_begin,
    .result = html_result,
    .end = html_end,
    .started = html_started,
};

ATX_PLUGIN_DEFINE(ATX_PLUGIN_AGGREGATOR, "html", ATX_VERSION_STRING,
                  "One self-contained HTML page: totals, filters, a timeline, every attempt",
                  &html_vtable)
