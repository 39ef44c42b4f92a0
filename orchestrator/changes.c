/*
 * What changed between two runs (atx/changes.h): the comparison itself, its
 * JSON and text, two results folders compared, and flake rates from a
 * test's recent outcomes.
 */
#include "orch.h"

#include <errno.h>
#include <json-c/json.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A test that took this much more than twice its usual time is slower; less
 * is noise (a 2 ms test that took 5 ms). */
#define SLOWER_MIN_EXTRA_NS (500 * ATX_NSEC_PER_MSEC)

static const char *const kind_names[ATX_CHANGE_KINDS] = {
    "new_failures", "fixed", "still_failing", "new_tests", "removed", "newly_flaky", "slower",
};

struct atx_changes {
    char *baseline;
    atx_vec names[ATX_CHANGE_KINDS];  /* char *, sorted */
    int64_t *slow_now, *slow_usual;   /* by the order of names[ATX_CHANGE_SLOWER] */
};

const char *atx_change_name(atx_change kind)
{
    return kind >= 0 && kind < ATX_CHANGE_KINDS ? kind_names[kind] : NULL;
}

const char *atx_changes_baseline(const atx_changes *c) { return c ? c->baseline : NULL; }

size_t atx_changes_count(const atx_changes *c, atx_change kind)
{
    return c && kind >= 0 && kind < ATX_CHANGE_KINDS ? c->names[kind].len : 0;
}

const char *atx_changes_test(const atx_changes *c, atx_change kind, size_t i)
{
    return i < atx_changes_count(c, kind) ? c->names[kind].items[i] : NULL;
}

int atx_changes_slower(const atx_changes *c, size_t i, int64_t *now_ns, int64_t *usual_ns)
{
    if (i >= atx_changes_count(c, ATX_CHANGE_SLOWER))
        return atx_error_set(ATX_EINVAL, "no slower test %zu", i);
    if (now_ns)
        *now_ns = c->slow_now[i];
    if (usual_ns)
        *usual_ns = c->slow_usual[i];
    return 0;
}

void atx_changes_free(atx_changes *c)
{
    if (!c)
        return;
    for (int k = 0; k < ATX_CHANGE_KINDS; k++) {
        for (size_t i = 0; i < c->names[k].len; i++)
            free(c->names[k].items[i]);
        atx_vec_release(&c->names[k]);
    }
    free(c->slow_now);
    free(c->slow_usual);
    free(c->baseline);
    free(c);
}

/* ---- making one ---- */

static int by_test(const void *a, const void *b)
{
    return strcmp(((const chg_outcome *)a)->test, ((const chg_outcome *)b)->test);
}

static const chg_outcome *find(const chg_outcome *v, size_t n, const char *test)
{
    chg_outcome key = { .test = (char *)test };
    return n ? bsearch(&key, v, n, sizeof(*v), by_test) : NULL;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int add(atx_changes *c, atx_change kind, const char *test)
{
    char *s = strdup(test);
    if (!s || atx_vec_push(&c->names[kind], s) < 0) {
        free(s);
        return atx_error_oom();
    }
    return 0;
}

int atx_changes_make(const char *baseline, chg_outcome *before, size_t nb, chg_outcome *after,
                     size_t na, atx_changes **out)
{
    atx_changes *c = calloc(1, sizeof(*c));
    int r = 0;

    if (!c || (baseline && !(c->baseline = strdup(baseline)))) {
        free(c);
        return atx_error_oom();
    }
    qsort(before, nb, sizeof(*before), by_test);
    qsort(after, na, sizeof(*after), by_test);
    size_t slow_cap = 0;
    for (size_t i = 0; i < na && r == 0; i++) {
        const chg_outcome *now = &after[i], *was = find(before, nb, now->test);
        bool fails = atx_status_is_failure(now->status);
        if (!was)
            r = add(c, ATX_CHANGE_NEW_TEST, now->test);
        if (r == 0 && fails)
            r = add(c, was && atx_status_is_failure(was->status) ? ATX_CHANGE_STILL_FAILING
                                                                 : ATX_CHANGE_NEW_FAILURE,
                    now->test);
        else if (r == 0 && was && atx_status_is_failure(was->status) &&
                 now->status != ATX_STATUS_SKIP)
            r = add(c, ATX_CHANGE_FIXED, now->test);
        if (r == 0 && now->flaky && !(was && was->flaky))
            r = add(c, ATX_CHANGE_NEWLY_FLAKY, now->test);
        int64_t usual = now->usual_ns ? now->usual_ns : was ? was->duration_ns : 0;
        if (r == 0 && usual > 0 && !fails && now->duration_ns >= 2 * usual &&
            now->duration_ns - usual >= SLOWER_MIN_EXTRA_NS) {
            size_t k = c->names[ATX_CHANGE_SLOWER].len;
            if (k == slow_cap) {
                slow_cap = slow_cap ? slow_cap * 2 : 8;
                int64_t *a = realloc(c->slow_now, slow_cap * sizeof(int64_t));
                int64_t *b = a ? realloc(c->slow_usual, slow_cap * sizeof(int64_t)) : NULL;
                if (a)
                    c->slow_now = a;
                if (b)
                    c->slow_usual = b;
                if (!a || !b)
                    r = atx_error_oom();
            }
            if (r == 0 && (r = add(c, ATX_CHANGE_SLOWER, now->test)) == 0) {
                c->slow_now[k] = now->duration_ns;
                c->slow_usual[k] = usual;
            }
        }
    }
    for (size_t i = 0; i < nb && r == 0; i++)
        if (!find(after, na, before[i].test))
            r = add(c, ATX_CHANGE_REMOVED, before[i].test);
    if (r < 0) {
        atx_changes_free(c);
        return r;
    }
    *out = c;
    return 0;
}

void chg_outcomes_free(chg_outcome *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i].test);
    free(v);
}

/* ---- JSON and text ---- */

static double secs(int64_t ns) { return (double)ns / ATX_NSEC_PER_SEC; }

int atx_changes_json(const atx_changes *c, char **out)
{
    json_object *o = json_object_new_object();
    int r = 0;

    if (!c || !out) {
        json_object_put(o);
        return atx_error_set(ATX_EINVAL, "no changes");
    }
    json_object_object_add(o, "baseline",
                           c->baseline ? json_object_new_string(c->baseline) : NULL);
    for (int k = 0; k < ATX_CHANGE_KINDS; k++) {
        json_object *a = json_object_new_array();
        for (size_t i = 0; a && i < c->names[k].len; i++) {
            const char *name = c->names[k].items[i];
            if (k != ATX_CHANGE_SLOWER) {
                json_object_array_add(a, json_object_new_string(name));
                continue;
            }
            json_object *e = json_object_new_object();
            json_object_object_add(e, "test", json_object_new_string(name));
            json_object_object_add(e, "duration", json_object_new_double(secs(c->slow_now[i])));
            json_object_object_add(e, "usual", json_object_new_double(secs(c->slow_usual[i])));
            json_object_array_add(a, e);
        }
        json_object_object_add(o, kind_names[k], a);
    }
    const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    if (!s || !(*out = strdup(s)))
        r = atx_error_oom();
    json_object_put(o);
    return r;
}

static const char *const kind_words[ATX_CHANGE_KINDS] = {
    "new failures", "fixed", "still failing", "new tests", "removed", "newly flaky", "slower",
};

int atx_changes_text(const atx_changes *c, char **out)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f;

    if (!c || !out)
        return atx_error_set(ATX_EINVAL, "no changes");
    if (!(f = open_memstream(&text, &len)))
        return atx_error_oom();
    fprintf(f, "changes since %s:", c->baseline ? c->baseline : "nothing");
    for (int k = 0; k < ATX_CHANGE_KINDS; k++)
        fprintf(f, "%s %s %zu", k ? "," : "", kind_words[k], c->names[k].len);
    fputc('\n', f);
    for (int k = 0; k < ATX_CHANGE_KINDS; k++) {
        if (!c->names[k].len)
            continue;
        fprintf(f, "%s:", kind_words[k]);
        for (size_t i = 0; i < c->names[k].len; i++) {
            if (k == ATX_CHANGE_SLOWER)
                fprintf(f, " %s (%.3fs, usually %.3fs)", (const char *)c->names[k].items[i],
                        secs(c->slow_now[i]), secs(c->slow_usual[i]));
            else
                fprintf(f, " %s", (const char *)c->names[k].items[i]);
        }
        fputc('\n', f);
    }
    int bad = ferror(f);
    if (fclose(f) != 0 || bad || !text) {
        free(text);
        return atx_error_oom();
    }
    *out = text;
    return 0;
}

/* ---- a set of test names ---- */

struct chg_names {
    char **slots;   /* open addressing; NULL: free */
    size_t cap, len;
};

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static bool names_has(const chg_names *set, const char *name)
{
    if (!set || !set->cap)
        return false;
    for (size_t i = name_hash(name) & (set->cap - 1);; i = (i + 1) & (set->cap - 1)) {
        if (!set->slots[i])
            return false;
        if (strcmp(set->slots[i], name) == 0)
            return true;
    }
}

/* Add @name (once). 0, or -ENOMEM. */
static int names_add(chg_names *set, const char *name)
{
    if (names_has(set, name))
        return 0;
    if ((set->len + 1) * 2 > set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 64;
        char **slots = calloc(cap, sizeof(char *));
        if (!slots)
            return atx_error_oom();
        for (size_t i = 0; i < set->cap; i++) {
            if (!set->slots[i])
                continue;
            size_t k = name_hash(set->slots[i]) & (cap - 1);
            while (slots[k])
                k = (k + 1) & (cap - 1);
            slots[k] = set->slots[i];
        }
        free(set->slots);
        set->slots = slots;
        set->cap = cap;
    }
    char *s = strdup(name);
    if (!s)
        return atx_error_oom();
    size_t k = name_hash(name) & (set->cap - 1);
    while (set->slots[k])
        k = (k + 1) & (set->cap - 1);
    set->slots[k] = s;
    set->len++;
    return 0;
}

void chg_names_free(chg_names *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->cap; i++)
        free(set->slots[i]);
    free(set->slots);
    free(set);
}

/* ---- two results folders ---- */

/* Bounds on a results.jsonl read for a comparison: it may be anybody's. */
#define COMPARE_LINE_MAX (1024 * 1024)
#define COMPARE_ROWS_MAX 2000000

/* A duration from a report (seconds): finite, not negative, not absurd. */
static int64_t duration_ns_of(double s)
{
    if (!(s >= 0) || s > 1e9) /* NaN too */
        return 0;
    return (int64_t)(s * ATX_NSEC_PER_SEC);
}

/* Whether a final status after a failed attempt makes the test flaky. */
static bool flaky_pass(atx_status status)
{
    return !atx_status_is_failure(status) && status != ATX_STATUS_SKIP;
}

/* An attempt that failed the test: an infrastructure one (a lost system)
 * or one a cancelled run interrupted does not make a later pass flaky. */
static bool failed_attempt(atx_status status, const char *type)
{
    return atx_status_is_failure(status) && status != ATX_STATUS_INFRA &&
           !(type && strcmp(type, "interrupted") == 0);
}

/* The final results of each test in DIR/results.jsonl (one line each, the
 * test's own; a pass after a failed attempt is flaky). */
static int read_outcomes(const char *dir, chg_outcome **out, size_t *n)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/results.jsonl", dir);
    FILE *f = fopen(path, "re");
    if (!f)
        return atx_error_set(ATX_ENOTFOUND, "cannot read %s: %s", path, strerror(errno));
    chg_outcome *v = NULL;
    size_t len = 0, cap = 0, lineno = 0;
    chg_names failed_before = { 0 };
    char *line = malloc(COMPARE_LINE_MAX + 1);
    int r = line ? 0 : atx_error_oom();
    while (r == 0 && fgets(line, COMPARE_LINE_MAX + 1, f)) {
        lineno++;
        size_t ll = strlen(line);
        if (ll == COMPARE_LINE_MAX && line[ll - 1] != '\n') {
            r = atx_error_set(ATX_EPARSE, "%s:%zu: a line of more than %d bytes", path, lineno,
                              COMPARE_LINE_MAX);
            break;
        }
        if (lineno > COMPARE_ROWS_MAX) {
            r = atx_error_set(ATX_EPARSE, "%s: more than %d lines", path, COMPARE_ROWS_MAX);
            break;
        }
        json_object *o = json_tokener_parse(line), *t, *st, *sub, *fin, *du;
        if (!o || !json_object_is_type(o, json_type_object) ||
            !json_object_object_get_ex(o, "test", &t) || !json_object_is_type(t, json_type_string) ||
            !json_object_object_get_ex(o, "status", &st)) {
            json_object_put(o);
            r = atx_error_set(ATX_EPARSE, "%s:%zu: not a result", path, lineno);
            break;
        }
        bool own = !json_object_object_get_ex(o, "subtest", &sub) || !sub;
        bool final = !json_object_object_get_ex(o, "final", &fin) || json_object_get_boolean(fin);
        atx_status status = atx_status_from_word(json_object_get_string(st));
        const char *name = json_object_get_string(t);
        json_object *et = NULL;
        json_object_object_get_ex(o, "error_type", &et);
        if (own && !final &&
            failed_attempt(status, json_object_is_type(et, json_type_string)
                                       ? json_object_get_string(et) : NULL)) {
            r = names_add(&failed_before, name);
        } else if (own && final) {
            if (len == cap) {
                cap = cap ? cap * 2 : 64;
                chg_outcome *nv = realloc(v, cap * sizeof(*v));
                if (!nv) {
                    json_object_put(o);
                    r = atx_error_oom();
                    break;
                }
                v = nv;
            }
            chg_outcome *e = &v[len];
            *e = (chg_outcome){ .status = status };
            if (!(e->test = strdup(name))) {
                json_object_put(o);
                r = atx_error_oom();
                break;
            }
            len++;
            if (json_object_object_get_ex(o, "duration", &du))
                e->duration_ns = duration_ns_of(json_object_get_double(du));
            e->flaky = flaky_pass(status) && names_has(&failed_before, name);
        }
        json_object_put(o);
    }
    free(line);
    fclose(f);
    for (size_t k = 0; k < failed_before.cap; k++)
        free(failed_before.slots[k]);
    free(failed_before.slots);
    if (r < 0) {
        chg_outcomes_free(v, len);
        return r;
    }
    *out = v;
    *n = len;
    return 0;
}

int atx_changes_compare_dirs(const char *before, const char *after, atx_changes **out)
{
    chg_outcome *b = NULL, *a = NULL;
    size_t nb = 0, na = 0;
    int r;

    if (!before || !after || !out)
        return atx_error_set(ATX_EINVAL, "a comparison needs two results folders");
    if ((r = read_outcomes(before, &b, &nb)) == 0 && (r = read_outcomes(after, &a, &na)) == 0)
        r = atx_changes_make(before, b, nb, a, na, out);
    chg_outcomes_free(b, nb);
    chg_outcomes_free(a, na);
    return r;
}

/* ---- flake rates ---- */

char chg_letter(atx_status status, bool flaky)
{
    if (status == ATX_STATUS_SKIP)
        return 'S';
    if (status == ATX_STATUS_INFRA)
        return 'X';
    if (atx_status_is_failure(status))
        return 'F';
    return flaky ? '+' : 'P';
}

double chg_flake_rate(const char *letters, const uint32_t *specs, size_t n)
{
    size_t flaky = 0, counted = 0;
    int last = -1; /* the last run that passed or failed */
    for (size_t i = 0; i < n; i++) {
        char l = letters[i];
        if (l != 'P' && l != '+' && l != 'F')
            continue;
        counted++;
        bool flipped = last >= 0 && specs[last] == specs[i] &&
                       (letters[last] == 'F') != (l == 'F');
        if (l == '+' || flipped)
            flaky++;
        last = (int)i;
    }
    return counted ? (double)flaky / (double)counted : -1;
}

/* ---- quarantine ---- */

#define QUARANTINE_FILE_MAX (1024 * 1024)
#define QUARANTINE_PATTERNS_MAX 10000 /* each result is matched against all */
#define QUARANTINE_PATTERN_MAX 1000

typedef struct quarantine {
    regex_t *res;
    size_t n;
} quarantine;

void atx_run_quarantine_free(atx_run *run)
{
    quarantine *q = run->quarantine;
    if (!q)
        return;
    for (size_t i = 0; i < q->n; i++)
        regfree(&q->res[i]);
    free(q->res);
    free(q);
    run->quarantine = NULL;
}

int atx_run_set_quarantine(atx_run *run, const char *path)
{
    if (!run || !path)
        return atx_error_set(ATX_EINVAL, "a quarantine needs a run and a file");
    if (run->executed)
        return atx_error_set(ATX_ESTATE, "the quarantine is set before the run");
    FILE *f = fopen(path, "re");
    if (!f)
        return atx_error_set(ATX_ENOTFOUND, "quarantine file %s: %s", path, strerror(errno));
    quarantine *q = calloc(1, sizeof(*q));
    char *line = NULL;
    size_t cap = 0, lineno = 0, total = 0, qcap = 0;
    ssize_t len;
    int r = q ? 0 : atx_error_oom();
    while (r == 0 && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if ((total += (size_t)len) > QUARANTINE_FILE_MAX) {
            r = atx_error_set(ATX_EPARSE, "quarantine file %s: more than %d bytes", path,
                              QUARANTINE_FILE_MAX);
            break;
        }
        char *s = line, *e = line + len;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
            e--;
        *e = '\0';
        if (!*s || *s == '#')
            continue;
        if (q->n == QUARANTINE_PATTERNS_MAX || e - s > QUARANTINE_PATTERN_MAX) {
            r = atx_error_set(ATX_EPARSE, "quarantine file %s:%zu: %s", path, lineno,
                              q->n == QUARANTINE_PATTERNS_MAX
                                  ? "more than 10000 patterns"
                                  : "a pattern of more than 1000 bytes");
            break;
        }
        if (q->n == qcap) {
            qcap = qcap ? qcap * 2 : 16;
            regex_t *nr = realloc(q->res, qcap * sizeof(*nr));
            if (!nr) {
                r = atx_error_oom();
                break;
            }
            q->res = nr;
        }
        if (regcomp(&q->res[q->n], s, REG_EXTENDED | REG_NOSUB) != 0) {
            r = atx_error_set(ATX_EPARSE, "quarantine file %s:%zu: '%.200s' is not a regular "
                              "expression", path, lineno, s);
            break;
        }
        q->n++;
    }
    free(line);
    fclose(f);
    if (r < 0) {
        if (q) {
            for (size_t i = 0; i < q->n; i++)
                regfree(&q->res[i]);
            free(q->res);
            free(q);
        }
        return r;
    }
    atx_run_quarantine_free(run);
    run->quarantine = q;
    return 0;
}

int atx_run_test_quarantined(const atx_run *run, const char *test)
{
    const quarantine *q = run ? run->quarantine : NULL;
    for (size_t i = 0; q && test && i < q->n; i++)
        if (regexec(&q->res[i], test, 0, NULL, 0) == 0)
            return 1;
    return 0;
}

/* ---- on a run ---- */

int atx_run_set_plan_key(atx_run *run, const char *key)
{
    if (!run)
        return atx_error_set(ATX_EINVAL, "no run");
    if (run->executed)
        return atx_error_set(ATX_ESTATE, "the plan key is set before the run");
    return atx_strdup_into(&run->plan_key, key);
}

int atx_run_set_compare_dir(atx_run *run, const char *dir)
{
    if (!run)
        return atx_error_set(ATX_EINVAL, "no run");
    if (run->executed)
        return atx_error_set(ATX_ESTATE, "the folder to compare with is set before the run");
    return atx_strdup_into(&run->compare_dir, dir);
}

const atx_changes *atx_run_changes(const atx_run *run) { return run ? run->changes : NULL; }

static uint32_t spec_hash(const atx_test *t)
{
    const char *s = t ? atx_test_spec_json(t) : NULL;
    uint32_t h = 2166136261u;
    for (; s && *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

typedef struct loading {
    atx_run *run;
    int64_t prev;
    size_t cap;
} loading;

static int on_prev_run(void *ud, int64_t id, const char *run_id, int64_t started)
{
    loading *l = ud;
    char when[32] = "";
    time_t t = (time_t)started;
    struct tm tm;
    if (gmtime_r(&t, &tm))
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M UTC", &tm);
    l->prev = id;
    free(l->run->prev_label);
    if (asprintf(&l->run->prev_label, "the previous run of this plan (%s, %s)", run_id, when) < 0)
        l->run->prev_label = NULL;
    return 0;
}

static int on_outcome(void *ud, int64_t id, const char *test, const char *status, int flaky,
                      int64_t duration_ns, uint32_t spec)
{
    loading *l = ud;
    atx_run *run = l->run;
    atx_status st = atx_status_from_word(status);
    test_state *ts = atx_names_find(&run->names, test);
    if (ts) {
        size_t n = strlen(ts->recent);
        if (n == ATX_HISTORY_RUNS) { /* the newest count: drop the oldest */
            memmove(ts->recent, ts->recent + 1, n - 1);
            memmove(ts->recent_spec, ts->recent_spec + 1, (n - 1) * sizeof(uint32_t));
            n--;
        }
        ts->recent[n] = chg_letter(st, flaky);
        ts->recent[n + 1] = '\0';
        ts->recent_spec[n] = spec;
    }
    if (id != l->prev)
        return 0;
    if (run->nprev == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        chg_outcome *v = realloc(run->prev, l->cap * sizeof(*v));
        if (!v)
            return atx_error_oom();
        run->prev = v;
    }
    chg_outcome *o = &run->prev[run->nprev];
    *o = (chg_outcome){ .status = st, .flaky = flaky, .duration_ns = duration_ns };
    if (!(o->test = strdup(test)))
        return atx_error_oom();
    run->nprev++;
    return 0;
}

int atx_run_load_outcomes(atx_run *run)
{
    loading l = { .run = run, .prev = -1 };
    if (!run->hist)
        return 0;
    int r = hist_plan_read(run->hist, run->plan_key ? run->plan_key : "", run->run_id,
                           on_prev_run, on_outcome, &l);
    if (r < 0) {
        /* Half a run is no run to compare with. */
        chg_outcomes_free(run->prev, run->nprev);
        run->prev = NULL;
        run->nprev = 0;
        free(run->prev_label);
        run->prev_label = NULL;
    }
    return r;
}

void atx_run_annotate(atx_run *run, atx_result *r)
{
    const char *test = atx_result_test(r);
    bool quarantined = atx_run_test_quarantined(run, test);
    atx_status st = atx_result_status(r);

    if (quarantined)
        atx_result_set_quarantined(r, 1);
    if (atx_result_subtest(r))
        return;
    if (!atx_result_final(r)) {
        if (failed_attempt(st, atx_result_error_type(r)) &&
            ((!run->failed_before && !(run->failed_before = calloc(1, sizeof(chg_names)))) ||
             names_add(run->failed_before, test) < 0))
            run->cur_incomplete = true;
        return;
    }
    bool flaky = flaky_pass(st) && names_has(run->failed_before, test);
    test_state *ts = run->tests.len ? atx_names_find(&run->names, test) : NULL;
    uint32_t spec = ts ? spec_hash(ts->t) : 0;
    if (ts && run->hist) {
        char letters[ATX_HISTORY_RUNS + 2];
        uint32_t specs[ATX_HISTORY_RUNS + 1];
        size_t n = strlen(ts->recent);
        memcpy(letters, ts->recent, n);
        memcpy(specs, ts->recent_spec, n * sizeof(uint32_t));
        letters[n] = chg_letter(st, flaky);
        specs[n] = spec;
        letters[n + 1] = '\0';
        /* The last ATX_HISTORY_RUNS, this one included. */
        size_t from = n + 1 > ATX_HISTORY_RUNS ? n + 1 - ATX_HISTORY_RUNS : 0;
        atx_result_set_recent(r, letters + from);
        atx_result_set_flake_rate(r, chg_flake_rate(letters + from, specs + from, n + 1 - from));
    }
    if (run->ncur == run->cur_cap) {
        size_t cap = run->cur_cap ? run->cur_cap * 2 : 64;
        chg_outcome *v = realloc(run->cur, cap * sizeof(*v));
        if (!v) {
            run->cur_incomplete = true;
            return;
        }
        run->cur = v;
        run->cur_cap = cap;
    }
    chg_outcome *o = &run->cur[run->ncur];
    *o = (chg_outcome){ .status = st, .flaky = flaky, .quarantined = quarantined,
                        .duration_ns = atx_result_duration(r), .usual_ns = ts ? ts->hist_ns : 0,
                        .spec = spec };
    if ((o->test = strdup(test)))
        run->ncur++;
    else
        run->cur_incomplete = true;
}

void atx_run_compare(atx_run *run)
{
    chg_outcome *before = run->prev;
    size_t nb = run->nprev;
    const char *label = run->prev_label;

    if (run->compare_dir) {
        if (read_outcomes(run->compare_dir, &before, &nb) < 0) {
            atx_run_logf(run, ATX_LOG_WARNING, "%s: nothing to compare with",
                         atx_error_last()->message);
            return;
        }
        label = run->compare_dir;
        /* Its durations are what this run's are compared with. */
        for (size_t i = 0; i < run->ncur; i++)
            run->cur[i].usual_ns = 0;
    } else if (!label) {
        return;
    }
    /* Sorted in place: nothing after this cares for the order. */
    if (atx_changes_make(label, before, nb, run->cur, run->ncur, &run->changes) < 0)
        atx_run_logf(run, ATX_LOG_WARNING, "cannot compare: %s", atx_error_last()->message);
    run->changes_ref = run->changes;
    if (before != run->prev)
        chg_outcomes_free(before, nb);
}

int atx_run_write_outcomes(atx_run *run)
{
    int64_t id;
    int r = hist_plan_add_run(run->hist, run->plan_key ? run->plan_key : "", run->run_id,
                              run->summary.started_ns / ATX_NSEC_PER_SEC, run->results_dir, &id);
    for (size_t i = 0; i < run->ncur && r == 0; i++) {
        const chg_outcome *o = &run->cur[i];
        test_state *ts = atx_names_find(&run->names, o->test);
        r = hist_plan_outcome(run->hist, id, o->test, ts ? ts->took_class : NULL,
                              atx_status_name(o->status), ts ? ts->attempts : 1, o->flaky,
                              o->duration_ns, o->spec);
    }
    if (r == 0)
        r = hist_plan_prune(run->hist, run->plan_key ? run->plan_key : "");
    return r;
}

int atx_run_exit_code(const atx_run *run, atx_fail_on fail_on)
{
    if (!run)
        return 2;
    const atx_summary *s = &run->summary;
    if (s->infra_exhausted)
        return 3;
    if (s->cancelled || s->not_run)
        return 1;
    /* Outcomes that could not be kept: the summary decides, quarantine or not. */
    if (run->cur_incomplete)
        return atx_summary_exit_code(s);
    const atx_changes *c = run->changes;
    for (size_t i = 0; i < run->ncur; i++) {
        const chg_outcome *o = &run->cur[i];
        if (!atx_status_is_failure(o->status) || o->quarantined)
            continue;
        if (fail_on == ATX_FAIL_ON_ANY || !c)
            return 1;
        const char *key = o->test;
        if (c->names[ATX_CHANGE_NEW_FAILURE].len &&
            bsearch(&key, c->names[ATX_CHANGE_NEW_FAILURE].items,
                    c->names[ATX_CHANGE_NEW_FAILURE].len, sizeof(char *), by_name))
            return 1;
    }
    return 0;
}

void atx_run_changes_free(atx_run *run)
{
    atx_changes_free(run->changes);
    run->changes = NULL;
    run->changes_ref = NULL;
    chg_outcomes_free(run->prev, run->nprev);
    chg_outcomes_free(run->cur, run->ncur);
    chg_names_free(run->failed_before);
    run->failed_before = NULL;
    free(run->prev_label);
    free(run->plan_key);
    free(run->compare_dir);
    atx_run_quarantine_free(run);
}
