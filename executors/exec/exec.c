/*
 * exec: a test is a command (argv) with environment, working directory and
 * timeout. The exit code decides pass or fail; stdout and stderr are
 * captured, keeping head and tail past a cap. At the timeout, and when the
 * run is cancelled, the whole process tree is killed (TERM, grace, KILL).
 *
 * The same code is built three times (EXEC_FLAVOUR): exec; tap, whose
 * command's stdout is a TAP stream whose test points become subresults;
 * and junitxml, whose command writes a JUnit XML file ("report") whose
 * testcases become subresults. Running the command is the same for all.
 */
#define _GNU_SOURCE 1
#include <atx/plugin/capture.h>
#include <atx/plugin/executor.h>
#include <atx/plugin/process.h>
#include <atx/plugin/text.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <json-c/json.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLAVOUR_EXEC 0
#define FLAVOUR_TAP 1
#define FLAVOUR_JUNIT 2
#ifndef EXEC_FLAVOUR
#define EXEC_FLAVOUR FLAVOUR_EXEC
#endif
#if EXEC_FLAVOUR == FLAVOUR_TAP
#include "tap.h"
#define EXEC_NAME "tap"
#elif EXEC_FLAVOUR == FLAVOUR_JUNIT
#include "junit_import.h"
#define EXEC_NAME "junitxml"
#else
#define EXEC_NAME "exec"
#endif

#define DEFAULT_CAP (64 * 1024)
/* Subresults kept per attempt; more are counted in the test's own result. */
#define SUBS_MAX 100000

/* A TAP stream is read whole after the command ends: keep this much. */
#define TAP_MAX (16 * 1024 * 1024)

typedef struct exec_state {
    atx_plugin_ctx *ctx;
    int64_t grace_ns;        /* 0: the run's policy */
    size_t head_cap, tail_cap;
} exec_state;

/* A parsed spec. */
typedef struct spec {
    json_object *root;
    const char **argv;
    const char *cwd;         /* as given (relative or absolute), or NULL */
    const char *basedir;     /* the plan's folder, or NULL */
    char *host_cwd;          /* on a system sharing this host: cwd resolved */
    int skip_code;           /* -1: none */
    const char *report;      /* junitxml: the file the command writes */
} spec;

static const char *const spec_keys[] = { "command", "cwd", "skip_exit_code", "basedir",
#if EXEC_FLAVOUR == FLAVOUR_JUNIT
                                         "report",
#endif
                                         NULL };

static void spec_release(spec *sp)
{
    free(sp->host_cwd);
    free(sp->argv);
    json_object_put(sp->root);
}

static int spec_parse(const atx_test *t, spec *sp)
{
    json_object *cmd, *v;
    size_t n;

    memset(sp, 0, sizeof(*sp));
    sp->skip_code = -1;
    sp->root = json_tokener_parse(atx_test_spec_json(t));
    if (!sp->root)
        return atx_error_set(ATX_EINVAL, "test %s: the spec is not JSON", atx_test_name(t));
    json_object_object_foreach(sp->root, key, val) {
        bool known = false;
        (void)val;
        for (size_t i = 0; spec_keys[i] && !known; i++)
            known = strcmp(spec_keys[i], key) == 0;
        if (!known)
            return atx_error_set(ATX_EINVAL, "test %s: unknown key '%s' for the "
                                 EXEC_NAME " executor", atx_test_name(t), key);
    }
    if (!json_object_object_get_ex(sp->root, "command", &cmd) ||
        !json_object_is_type(cmd, json_type_array) || (n = json_object_array_length(cmd)) == 0)
        return atx_error_set(ATX_EINVAL,
                             "test %s: needs \"command\": a non-empty list of strings "
                             "(for a shell line use [\"sh\", \"-c\", \"...\"])",
                             atx_test_name(t));
    sp->argv = calloc(n + 1, sizeof(*sp->argv));
    if (!sp->argv)
        return atx_error_set(ATX_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        v = json_object_array_get_idx(cmd, i);
        if (!json_object_is_type(v, json_type_string))
            return atx_error_set(ATX_EINVAL, "test %s: command item %zu is not a string",
                                 atx_test_name(t), i);
        sp->argv[i] = json_object_get_string(v);
    }
    if (json_object_object_get_ex(sp->root, "cwd", &v)) {
        if (!json_object_is_type(v, json_type_string))
            return atx_error_set(ATX_EINVAL, "test %s: 'cwd' must be a string", atx_test_name(t));
        sp->cwd = json_object_get_string(v);
    }
    if (json_object_object_get_ex(sp->root, "basedir", &v) &&
        json_object_is_type(v, json_type_string))
        sp->basedir = json_object_get_string(v);
    /* Here: relative to the plan's folder, which is also the default. */
    if (sp->cwd && sp->cwd[0] == '/')
        sp->host_cwd = strdup(sp->cwd);
    else if (sp->basedir && asprintf(&sp->host_cwd, "%s%s%s", sp->basedir, sp->cwd ? "/" : "",
                                     sp->cwd ? sp->cwd : "") < 0)
        sp->host_cwd = NULL;
    if (json_object_object_get_ex(sp->root, "skip_exit_code", &v)) {
        if (!json_object_is_type(v, json_type_int) || json_object_get_int(v) < 0 ||
            json_object_get_int(v) > 255)
            return atx_error_set(ATX_EINVAL, "test %s: 'skip_exit_code' must be 0-255",
                                 atx_test_name(t));
        sp->skip_code = json_object_get_int(v);
    }
#if EXEC_FLAVOUR == FLAVOUR_JUNIT
    if (!json_object_object_get_ex(sp->root, "report", &v) ||
        !json_object_is_type(v, json_type_string) || !*json_object_get_string(v))
        return atx_error_set(ATX_EINVAL, "test %s: needs \"report\": the JUnit XML file the "
                             "command writes (relative: to its working folder)",
                             atx_test_name(t));
    sp->report = json_object_get_string(v);
#endif
    return 0;
}

static int exec_create(atx_plugin_ctx *ctx, void **out)
{
    static const char *const keys[] = { "kill_grace", "output_head", "output_tail", NULL };
    int64_t head = EXEC_FLAVOUR == FLAVOUR_TAP ? TAP_MAX : DEFAULT_CAP, tail = DEFAULT_CAP;
    exec_state *s;
    int r;

    s = calloc(1, sizeof(*s));
    if (!s)
        return atx_error_set(ATX_ENOMEM, "out of memory");
    if ((r = atx_plugin_config_check_keys(ctx, keys)) < 0 ||
        (r = atx_plugin_config_duration(ctx, "kill_grace", &s->grace_ns)) < 0 ||
        (r = atx_plugin_config_int(ctx, "output_head", &head)) < 0 ||
        (r = atx_plugin_config_int(ctx, "output_tail", &tail)) < 0) {
        free(s);
        return r;
    }
    if (head < 0 || tail < 0) {
        free(s);
        return atx_error_set(ATX_EINVAL, EXEC_NAME ": output caps must not be negative");
    }
    s->ctx = ctx;
    s->head_cap = (size_t)head;
    s->tail_cap = (size_t)tail;
    *out = s;
    return 0;
}

static void exec_destroy(void *state)
{
    free(state);
}

static int exec_check(void *state, const atx_test *t)
{
    spec sp;
    int r;

    (void)state;
    r = spec_parse(t, &sp);
    spec_release(&sp);
    return r;
}

/* The environment the test sees on top of the system's: its own, plus who it is. */
static int build_env(atx_attempt *a, char ***out)
{
    const char *const *tenv = atx_test_environ(atx_attempt_test(a));
    size_t n = 0;
    char **env;

    while (tenv && tenv[n])
        n++;
    env = calloc(n + 4, sizeof(*env));
    if (!env)
        return atx_error_set(ATX_ENOMEM, "out of memory");
    if (asprintf(&env[0], "ATX_TEST_NAME=%s", atx_test_name(atx_attempt_test(a))) < 0 ||
        asprintf(&env[1], "ATX_TEST_ATTEMPT=%d", atx_attempt_number(a)) < 0) {
        free(env[0]);
        free(env);
        return atx_error_set(ATX_ENOMEM, "out of memory");
    }
    env[2] = "ATX_TEST_SYSTEM=1";
    for (size_t i = 0; i < n; i++)
        env[3 + i] = (char *)tenv[i];
    *out = env;
    return 0;
}

static void set_capture(atx_result *r, atx_stream stream, const atx_capture *c)
{
    char *data;
    size_t len;

    if (c->total == 0)
        return;
    if (atx_capture_collect(c, &data, &len) == 0) {
        atx_result_set_output(r, stream, data, len, c->total);
        free(data);
    }
}

/* The test's own result from how its process ended. */
static void set_outcome(atx_result *res, bool timed_out, bool interrupted, int64_t timeout,
                        bool exited, int code, int sig, int skip_code)
{
    char note[256];

    if (timed_out) {
        char secs[32];
        atx_text_seconds(timeout, secs);
        snprintf(note, sizeof(note), "timed out after %ss; the process tree was killed", secs);
        atx_result_set_status(res, ATX_STATUS_ERROR);
        atx_result_set_error_type(res, "timeout");
        atx_result_set_note(res, note);
    } else if (interrupted) {
        atx_result_set_status(res, ATX_STATUS_ERROR);
        atx_result_set_error_type(res, "interrupted");
        atx_result_set_note(res, "interrupted: the run was cancelled and the test was killed");
    } else if (exited && code == 0) {
        atx_result_set_status(res, ATX_STATUS_PASS);
    } else if (exited && code == skip_code) {
        atx_result_set_status(res, ATX_STATUS_SKIP);
        snprintf(note, sizeof(note), "skipped (exit code %d)", code);
        atx_result_set_note(res, note);
    } else if (exited) {
        atx_result_set_status(res, ATX_STATUS_FAIL);
        atx_result_set_error_type(res, "exit-code");
        snprintf(note, sizeof(note), "exit code %d", code);
        atx_result_set_note(res, note);
    } else {
        atx_result_set_status(res, ATX_STATUS_FAIL);
        atx_result_set_error_type(res, "signal");
        snprintf(note, sizeof(note), "killed by signal %d (%s)", sig, strsignal(sig));
        atx_result_set_note(res, note);
    }
    if (exited)
        atx_result_set_exit_code(res, code);
}

/* ---- subresults: the TAP stream or the JUnit report ---- */

#if EXEC_FLAVOUR == FLAVOUR_EXEC
static int interpret(exec_state *s, atx_attempt *a, const spec *sp, atx_result *res,
                     const atx_capture *cap, int64_t started, int64_t deadline)
{
    (void)s, (void)a, (void)sp, (void)res, (void)cap, (void)started, (void)deadline;
    return 0;
}
#else

/* Whether the own result is one interpreting the output must not change:
 * the test never ran to an end. */
static bool cut_short(const atx_result *res)
{
    const char *t = atx_result_error_type(res);
    return t && (strcmp(t, "timeout") == 0 || strcmp(t, "interrupted") == 0 ||
                 strcmp(t, "spawn") == 0);
}

/* A name given to a subresult, in a set of them (open addressing). As the
 * stem of others ("name (k)"), next is the k to try first, so that n
 * repeats of one name cost O(n) together, not O(n^2). */
typedef struct name_slot {
    char *name;             /* NULL: free */
    uint64_t hash;
    unsigned long next;
} name_slot;

typedef struct subs {
    atx_attempt *a;
    int64_t started;
    int64_t deadline;       /* monotonic; reading stops there */
    bool late;              /* it did */
    size_t n, failed, errors, skipped;
    size_t dropped;         /* past SUBS_MAX: counted, not kept */
    char first_bad[256];
    name_slot *names;       /* subtest names used, to keep them unique */
    size_t nnames, cap;
    uint64_t seed;          /* per attempt: a test cannot aim at one slot */
    int err;
} subs;

static uint64_t name_hash(const subs *sb, const char *s)
{
    uint64_t h = 0xcbf29ce484222325u ^ sb->seed;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3u;
    /* FNV-1a's low bits, which pick the slot, mixed with the high ones. */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdu;
    h ^= h >> 33;
    return h;
}

/* The slot holding @p name, or the free one where it would go. */
static name_slot *name_find(const subs *sb, const char *name, uint64_t hash)
{
    size_t mask = sb->cap - 1;
    for (size_t j = (size_t)hash & mask;; j = (j + 1) & mask) {
        name_slot *e = &sb->names[j];
        if (!e->name || (e->hash == hash && strcmp(e->name, name) == 0))
            return e;
    }
}

/* Room for one more name: the table stays at most half full. */
static int name_room(subs *sb)
{
    if (sb->cap && (sb->nnames + 1) * 2 <= sb->cap)
        return 0;
    size_t cap = sb->cap ? sb->cap * 2 : 64;
    name_slot *old = sb->names, *nn = calloc(cap, sizeof(*nn));
    if (!nn)
        return ATX_ENOMEM;
    size_t oldcap = sb->cap;
    sb->names = nn;
    sb->cap = cap;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].name)
            *name_find(sb, old[i].name, old[i].hash) = old[i];
    free(old);
    return 0;
}

/* A unique subtest name: "name", else "name (2)", "name (3)", ... Owned by
 * the set; NULL when out of memory. */
static const char *unique_name(subs *sb, const char *want)
{
    uint64_t h = name_hash(sb, want);
    char *name = NULL;

    if (name_room(sb) < 0)
        return NULL;
    name_slot *stem = name_find(sb, want, h);
    if (!stem->name) {
        if (!(name = strdup(want)))
            return NULL;
    } else {
        /* Each name tried and found taken is one "want (k)" of the set:
         * over all calls, no more tries than names. */
        for (;;) {
            unsigned long k = stem->next ? stem->next : 2;
            if (asprintf(&name, "%s (%lu)", want, k) < 0)
                return NULL;
            stem->next = k + 1;
            h = name_hash(sb, name);
            if (!name_find(sb, name, h)->name)
                break;
            free(name);
        }
    }
    name_slot *e = name_find(sb, name, h);
    *e = (name_slot){ .name = name, .hash = h };
    sb->nnames++;
    return name;
}

static void subs_release(subs *sb)
{
    for (size_t i = 0; i < sb->cap; i++)
        free(sb->names[i].name);
    free(sb->names);
}

/* Whether reading the output has reached the test's deadline (it stops). */
static bool subs_late(subs *sb)
{
    if (!sb->late && sb->deadline > 0 && atx_now_ns() >= sb->deadline)
        sb->late = true;
    return sb->late;
}

static void sub_emit(subs *sb, const char *want, atx_status st, const char *type,
                     const char *note, double seconds, const char *out, const char *err)
{
    const char *test = atx_test_name(atx_attempt_test(sb->a));
    atx_result *r;

    if (sb->n >= SUBS_MAX) {
        /* Each kept subresult costs memory in every report: a stream of
         * millions is counted, not kept. */
        sb->n++;
        sb->dropped++;
        if (st == ATX_STATUS_FAIL || st == ATX_STATUS_ERROR) {
            *(st == ATX_STATUS_FAIL ? &sb->failed : &sb->errors) += 1;
            if (!sb->first_bad[0])
                snprintf(sb->first_bad, sizeof(sb->first_bad), "%s", want ? want : "");
        } else if (st == ATX_STATUS_SKIP) {
            sb->skipped++;
        }
        return;
    }
    const char *name = unique_name(sb, want && *want ? want : "(unnamed)");
    if (!name || atx_result_new(test, name, &r) < 0) {
        sb->err = ATX_ENOMEM;
        return;
    }
    atx_result_set_status(r, st);
    atx_result_set_error_type(r, type);
    atx_result_set_note(r, note);
    /* A report's time may be NaN, negative or past any clock. */
    int64_t ns = atx_seconds_ns(seconds);
    atx_result_set_times(r, sb->started, ns < 0 ? 0 : ns);
    if (out)
        atx_result_set_output(r, ATX_STREAM_STDOUT, out, strlen(out), strlen(out));
    if (err)
        atx_result_set_output(r, ATX_STREAM_STDERR, err, strlen(err), strlen(err));
    sb->n++;
    if (st == ATX_STATUS_FAIL || st == ATX_STATUS_ERROR) {
        if (st == ATX_STATUS_FAIL)
            sb->failed++;
        else
            sb->errors++;
        if (!sb->first_bad[0])
            snprintf(sb->first_bad, sizeof(sb->first_bad), "%s", name);
    } else if (st == ATX_STATUS_SKIP) {
        sb->skipped++;
    }
    if (atx_attempt_emit(sb->a, r) < 0)
        sb->err = ATX_ENOMEM;
}

/* The own result from its subresults: the worst of them wins over a pass;
 * an exit code's failure stays. */
static void sum_up(atx_result *res, const subs *sb, const char *what)
{
    char note[512];
    if (sb->dropped && !sb->failed && !sb->errors) {
        const char *had = atx_result_note(res);
        snprintf(note, sizeof(note), "%s%s%zu %s past the first %d counted, not kept",
                 had && *had ? had : "", had && *had ? "; " : "", sb->dropped, what, SUBS_MAX);
        atx_result_set_note(res, note);
    }
    if (!sb->failed && !sb->errors) {
        if (sb->n && sb->skipped == sb->n && atx_result_status(res) == ATX_STATUS_PASS) {
            atx_result_set_status(res, ATX_STATUS_SKIP);
            snprintf(note, sizeof(note), "all %zu %s skipped", sb->n, what);
            atx_result_set_note(res, note);
        }
        return;
    }
    char past[64] = "";
    if (sb->dropped)
        snprintf(past, sizeof(past), " (past the first %d counted, not kept)", SUBS_MAX);
    snprintf(note, sizeof(note), "%zu of %zu %s failed%s: first %s%s", sb->failed + sb->errors,
             sb->n, what, sb->errors ? ", with errors" : "", sb->first_bad, past);
    atx_result_set_status(res, sb->errors && !sb->failed ? ATX_STATUS_ERROR : ATX_STATUS_FAIL);
    atx_result_set_error_type(res, "subtests");
    atx_result_set_note(res, note);
}

#if EXEC_FLAVOUR == FLAVOUR_TAP
static int tap_point_cb(void *ud, const tap_point *p)
{
    subs *sb = ud;
    char want[512], note[600];
    atx_status st = ATX_STATUS_PASS;
    const char *type = NULL, *n = NULL;

    if (*p->description)
        snprintf(want, sizeof(want), "%s", p->description);
    else
        snprintf(want, sizeof(want), "test %ld", p->number);
    switch (p->kind) {
    case TAP_OK: break;
    case TAP_NOT_OK:
        st = ATX_STATUS_FAIL;
        type = "not-ok";
        snprintf(note, sizeof(note), "not ok %ld", p->number);
        n = note;
        break;
    case TAP_SKIP:
        st = ATX_STATUS_SKIP;
        snprintf(note, sizeof(note), "SKIP%s%s", p->directive && *p->directive ? ": " : "",
                 p->directive ? p->directive : "");
        n = note;
        break;
    case TAP_TODO_FAILED:
        st = ATX_STATUS_INFO;
        snprintf(note, sizeof(note), "TODO%s%s (failed, as expected)",
                 p->directive && *p->directive ? ": " : "", p->directive ? p->directive : "");
        n = note;
        break;
    case TAP_TODO_PASSED:
        st = ATX_STATUS_WARN;
        snprintf(note, sizeof(note), "TODO%s%s (passed unexpectedly)",
                 p->directive && *p->directive ? ": " : "", p->directive ? p->directive : "");
        n = note;
        break;
    }
    sub_emit(sb, want, st, type, n, 0, p->diagnostics, NULL);
    return sb->err < 0 || subs_late(sb);
}
#endif

#if EXEC_FLAVOUR == FLAVOUR_JUNIT
static int junit_case_cb(void *ud, const junit_case *c)
{
    subs *sb = ud;
    char want[1024];
    static const atx_status st[] = { [JU_PASS] = ATX_STATUS_PASS, [JU_FAIL] = ATX_STATUS_FAIL,
                                     [JU_ERROR] = ATX_STATUS_ERROR, [JU_SKIP] = ATX_STATUS_SKIP };
    static const char *const types[] = { [JU_PASS] = NULL, [JU_FAIL] = "failure",
                                         [JU_ERROR] = "error", [JU_SKIP] = NULL };
    char *err = NULL;

    if (*c->classname)
        snprintf(want, sizeof(want), "%s.%s", c->classname, c->name);
    else
        snprintf(want, sizeof(want), "%s", c->name);
    if (c->details || c->system_err)
        if (asprintf(&err, "%s%s%s", c->details ? c->details : "",
                     c->details && c->system_err ? "\n" : "",
                     c->system_err ? c->system_err : "") < 0)
            err = NULL;
    sub_emit(sb, want, st[c->outcome], c->type ? c->type : types[c->outcome], c->message,
             c->seconds, c->system_out, err);
    free(err);
    return sb->err < 0 || subs_late(sb);
}
#endif

#if EXEC_FLAVOUR == FLAVOUR_TAP
/* The own result from the test points and the stream's plan. */
static void tap_sum_up(atx_result *res, const subs *sb, const tap_summary *sum)
{
    char note[700];

    sum_up(res, sb, "test points");
    if (sum->bailed) {
        atx_result_set_status(res, ATX_STATUS_ERROR);
        atx_result_set_error_type(res, "bail-out");
        snprintf(note, sizeof(note), "Bail out!%s%s", *sum->bail_reason ? " " : "",
                 sum->bail_reason);
        atx_result_set_note(res, note);
    } else if (sum->skip_all && sb->n == 0 && atx_result_status(res) == ATX_STATUS_PASS) {
        atx_result_set_status(res, ATX_STATUS_SKIP);
        atx_result_set_note(res, "the TAP plan skips every test (1..0 # SKIP)");
    } else if (sum->problem[0] && !sum->skip_all) {
        atx_result_set_status(res, ATX_STATUS_ERROR);
        atx_result_set_error_type(res, "tap-plan");
        atx_result_set_note(res, sum->problem);
    }
}
#endif

/* Reading the output counts against the test's timeout: past it, the test
 * is one that timed out, with the subresults read by then. */
static void set_late(atx_result *res, atx_attempt *a, const subs *sb, const char *what,
                     const char *items)
{
    char note[300], secs[32];

    atx_text_seconds(atx_attempt_timeout(a), secs);
    snprintf(note, sizeof(note), "timed out after %ss while its %s was read (%zu %s read)",
             secs, what, sb->n, items);
    atx_result_set_status(res, ATX_STATUS_ERROR);
    atx_result_set_error_type(res, "timeout");
    atx_result_set_note(res, note);
}

static int interpret(exec_state *s, atx_attempt *a, const spec *sp, atx_result *res,
                     const atx_capture *cap, int64_t started, int64_t deadline)
{
    subs sb = { .a = a, .started = started, .deadline = deadline,
                .seed = (uint64_t)atx_now_ns() ^ (uint64_t)(uintptr_t)&sb };
#if EXEC_FLAVOUR == FLAVOUR_TAP
    char *data = NULL;
    size_t len = 0;
    tap_summary sum;
    char note[700];

    if (cut_short(res))
        return 0;
    if (cap[0].total > s->head_cap + s->tail_cap) {
        atx_result_set_status(res, ATX_STATUS_ERROR);
        atx_result_set_error_type(res, "tap");
        snprintf(note, sizeof(note), "the TAP stream is longer than %zu bytes: not read",
                 s->head_cap + s->tail_cap);
        atx_result_set_note(res, note);
        return 0;
    }
    if (cap[0].total && atx_capture_collect(&cap[0], &data, &len) < 0)
        return ATX_ENOMEM;
    tap_parse(data ? data : "", len, tap_point_cb, &sb, &sum);
    free(data);
    if (sb.late)
        set_late(res, a, &sb, "TAP stream", "test points");
    else
        tap_sum_up(res, &sb, &sum);
#elif EXEC_FLAVOUR == FLAVOUR_JUNIT
    char why[1200], local[PATH_MAX + 64], note[1300];
    const char *rel = NULL;
    const char *dir = atx_attempt_dir(a, &rel);
    atx_system *sys = atx_attempt_system(a);

    if (cut_short(res))
        return 0;
    if (!dir)
        return atx_error_last()->code;
    /* The report, kept with the attempt's files. */
    snprintf(local, sizeof(local), "%s/junit-report.xml", dir);
    /* Relative to the command's folder (which is relative to the work
     * folder on systems elsewhere: the system resolves that). */
    char src[PATH_MAX * 2];
    const char *base = atx_system_shares_host(sys) && sp->host_cwd ? sp->host_cwd : sp->cwd;
    if (sp->report[0] == '/' || !base)
        snprintf(src, sizeof(src), "%s", sp->report);
    else
        snprintf(src, sizeof(src), "%s/%s", base, sp->report);
    /* No more than the import reads (a sparse terabyte is not sent). */
    int cr = atx_system_copy_out_max(sys, src, local, JUNIT_REPORT_MAX);
    size_t cases = 0;
    if (cr == -ELOOP) {
        snprintf(why, sizeof(why), "the JUnit report %s is a symbolic link: not followed",
                 sp->report);
    } else if (cr == -EFBIG) {
        snprintf(why, sizeof(why), "the JUnit report %s is longer than %u MiB: not read",
                 sp->report, (unsigned)(JUNIT_REPORT_MAX >> 20));
    } else if (cr < 0) {
        snprintf(why, sizeof(why), "the JUnit report %s was not written", sp->report);
    } else {
        char fname[PATH_MAX + 64];
        snprintf(fname, sizeof(fname), "%s/junit-report.xml", rel);
        atx_result_add_file(res, fname);
    }
    int ir = cr < 0 ? -1 : junit_import_file(local, junit_case_cb, &sb, &cases, why, sizeof(why));
    if (sb.late) {
        set_late(res, a, &sb, "JUnit report", "testcases");
    } else if (ir < 0) {
        /* Name the file as the test wrote it, not our copy. */
        char *at = strstr(why, local);
        if (at)
            snprintf(note, sizeof(note), "%.*s%s%s", (int)(at - why), why, sp->report,
                     at + strlen(local));
        else
            snprintf(note, sizeof(note), "%s", why);
        atx_result_set_status(res, ATX_STATUS_ERROR);
        atx_result_set_error_type(res, "junit-report");
        atx_result_set_note(res, note);
    } else {
        sum_up(res, &sb, "testcases");
    }
#endif
    subs_release(&sb);
    return sb.err;
}
#endif

static int exec_run(void *state, atx_attempt *a)
{
    exec_state *s = state;
    const atx_test *t = atx_attempt_test(a);
    int64_t grace = s->grace_ns > 0 ? s->grace_ns : atx_attempt_kill_grace(a);
    int64_t timeout = atx_attempt_timeout(a);
    atx_spawn_opts o = ATX_SPAWN_OPTS_INIT;
    atx_capture cap[2];
    atx_system *sys = atx_attempt_system(a);
    atx_result *res = NULL;
    char **env = NULL;
    spec sp;
    int r;

    atx_capture_init(&cap[0], s->head_cap, s->tail_cap);
    atx_capture_init(&cap[1], s->head_cap, s->tail_cap);
    if ((r = spec_parse(t, &sp)) < 0 || (r = build_env(a, &env)) < 0 ||
        (r = atx_result_new(atx_test_name(t), NULL, &res)) < 0)
        goto out;

    int64_t started_wall = atx_wallclock_ns();
    int64_t start = atx_now_ns();
    int64_t deadline = start + timeout;
    atx_proc_run_opts ro = ATX_PROC_RUN_OPTS_INIT;
    atx_proc_outcome pr;
    o.argv = sp.argv;
    o.env = (const char *const *)env;
    /* Here a relative folder is the plan's; elsewhere the work folder's. */
    o.cwd = atx_system_shares_host(sys) && sp.host_cwd ? sp.host_cwd : sp.cwd;
    o.flags = ATX_SPAWN_STDOUT_PIPE | ATX_SPAWN_STDERR_PIPE;
    o.deadline_ns = deadline;
    o.kill_grace_ns = grace;
    ro.capture[0] = &cap[0];
    ro.capture[1] = &cap[1];
    ro.deadline_ns = &deadline;
    ro.grace_ns = grace;
    ro.cancel_fd = atx_attempt_cancel_fd(a);
    ro.cancel_level = atx_attempt_cancel_level;
    ro.cancel_ud = a;
    r = atx_proc_run_spawn(sys, &o, &ro, &pr);
    if (r == ATX_ESPAWN) {
        /* The test's own fault (a missing program), not the system's. */
        atx_result_set_status(res, ATX_STATUS_ERROR);
        atx_result_set_error_type(res, "spawn");
        atx_result_set_note(res, atx_error_last()->message);
        atx_result_set_times(res, started_wall, atx_now_ns() - start);
        r = atx_attempt_emit(a, res);
        res = NULL;
        goto out;
    }
    if (r < 0)
        goto out;
    if (pr.abandoned) {
        r = atx_error_set(ATX_EINFRA, "the test's processes did not end after SIGKILL on %s",
                          atx_system_id(sys));
        goto out;
    }
    int64_t duration = atx_now_ns() - start;
    atx_exit ex = pr.exit;
    bool timed_out = ex.timed_out, interrupted = pr.interrupted && !timed_out;

    set_outcome(res, timed_out, interrupted, timeout, ex.exited, ex.code, ex.signal, sp.skip_code);
    atx_result_set_times(res, started_wall, duration);
    set_capture(res, ATX_STREAM_STDOUT, &cap[0]);
    set_capture(res, ATX_STREAM_STDERR, &cap[1]);
    if ((r = interpret(s, a, &sp, res, cap, started_wall, deadline)) < 0)
        goto out;
    r = atx_attempt_emit(a, res);
    res = NULL;
out:
    atx_result_unref(res);
    atx_capture_release(&cap[0]);
    atx_capture_release(&cap[1]);
    if (env) {
        free(env[0]);
        free(env[1]);
        free(env);
    }
    spec_release(&sp);
    return r;
}

static const atx_executor_vtable exec_vtable = {
    .version = ATX_EXECUTOR_VTABLE_VERSION,
    .create = exec_create,
    .destroy = exec_destroy,
    .check = exec_check,
    .prepare = NULL,
    .run = exec_run,
    .discover = NULL,
    .finish = NULL,
};

#if EXEC_FLAVOUR == FLAVOUR_TAP
ATX_PLUGIN_DEFINE(ATX_PLUGIN_EXECUTOR, "tap", ATX_VERSION_STRING,
                  "Runs a command whose TAP output's test points become subresults",
                  &exec_vtable)
#elif EXEC_FLAVOUR == FLAVOUR_JUNIT
ATX_PLUGIN_DEFINE(ATX_PLUGIN_EXECUTOR, "junitxml", ATX_VERSION_STRING,
                  "Runs a command that writes JUnit XML; its testcases become subresults",
                  &exec_vtable)
#else
ATX_PLUGIN_DEFINE(ATX_PLUGIN_EXECUTOR, "exec", ATX_VERSION_STRING,
                  "Runs a command; its exit code decides pass or fail", &exec_vtable)
#endif
