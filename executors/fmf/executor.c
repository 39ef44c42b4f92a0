/*
 * fmf: runs fmf/tmt test trees unchanged. Tests are discovered from a tree
 * (all of it, or through a tmt plan's discover sections), run by bash with
 * `set -eo pipefail` in the folder of their fmf node, on the system's
 * processes (the lease's agent, or a slot here that contains what it runs)
 * with the ATEX-compatible test-control channel, and report per-attempt
 * results in `tests/<name>/attempt-<n>/` (TEST_CONTROL.md). Plans' prepare
 * steps run once per system before its first test, finish steps before it is
 * released.
 */
#define _GNU_SOURCE 1
#include "bin.h"
#include "control.h"
#include "fmf.h"
#include "result_key.h"

#include <atx/plugin/capture.h>
#include <atx/plugin/executor.h>
#include <atx/plugin/process.h>
#include <atx/plugin/text.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <json-c/json.h>
#include <limits.h>
#include <pthread.h>
#include <regex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_REBOOTS 16
#define REBOOT_TIMEOUT (10 * 60 * ATX_NSEC_PER_SEC) /* tmt-reboot without -t, as tmt */
#define OUTPUT_CAP (64 * 1024)       /* of the output, in memory for the result */
#define OUTPUT_KEEP (8 * 1024 * 1024) /* of the output, on disk: head and tail each */
#define DATA_FILE_MAX (256ull * 1024 * 1024) /* a file of TMT_TEST_DATA taken from the system */

/* A tree, or a tmt plan in one, that tests were discovered from. */
typedef struct plan_info {
    char *tree;              /* absolute */
    char *name;              /* the plan's node name, or NULL */
    json_object *environment;/* the plan's environment, or NULL */
    json_object *prepare;    /* array of steps */
    json_object *finish;     /* array of steps */
} plan_info;

/* What the executor keeps per leased system (its state for the system). */
typedef struct sysdata {
    atx_system *sys;
    char pm[16];             /* "apt", "dnf", "yum", "" unknown, "-" none */
    json_object *packages;   /* name -> true (installed) or an error message */
    char **envfiles;         /* per plan: TMT_PLAN_ENVIRONMENT_FILE, on the system */
    char **trees;            /* per plan: where its tree is on the system (NULL:
                                the system shares this host's files) */
    char *metadata;          /* where TMT_TEST_METADATA is, on the system (in its work
                                folder: rewritten in place for each test) */
    char *meta_local;        /* on a remote system: the file here it is copied from */
    char *output;            /* here: a test's whole output, rewritten in place for
                                each test (its files are copies) */
    char *bin;               /* on the system: the helper programs (bin.h), put
                                first on each test's PATH */
    char *data;              /* on the system: TMT_TEST_DATA, emptied for each test
                                and copied back after it */
} sysdata;

typedef struct fmf_exec {
    atx_plugin_ctx *ctx;
    int64_t grace_ns;
    int64_t reboot_timeout;  /* tmt-reboot without -t */
    uint64_t keep_head, keep_tail; /* output_head, output_tail */
    plan_info **plans;       /* written during discovery only */
    size_t nplans;
    pthread_mutex_t bin_mu;  /* guards bin */
    char *bin;               /* here: the helper programs, written at the first
                                prepare of the run (bin_here()) */
} fmf_exec;

/* ---- small helpers ---- */

static const char *jstr(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

/* A string or a list of strings as a NULL-terminated array of borrowed strings. */
static int strlist(json_object *v, const char ***out, size_t *n, const char *what, char *err,
                   size_t errlen)
{
    *out = NULL;
    *n = 0;
    if (!v || json_object_is_type(v, json_type_null))
        return 0;
    if (json_object_is_type(v, json_type_string)) {
        *out = calloc(2, sizeof(char *));
        if (!*out)
            return ATX_ENOMEM;
        (*out)[0] = json_object_get_string(v);
        *n = 1;
        return 0;
    }
    if (!json_object_is_type(v, json_type_array)) {
        snprintf(err, errlen, "'%s' must be a string or a list of strings", what);
        return ATX_EINVAL;
    }
    size_t len = json_object_array_length(v);
    *out = calloc(len + 1, sizeof(char *));
    if (!*out)
        return ATX_ENOMEM;
    for (size_t i = 0; i < len; i++) {
        json_object *s = json_object_array_get_idx(v, i);
        if (!json_object_is_type(s, json_type_string)) {
            free(*out);
            *out = NULL;
            snprintf(err, errlen, "'%s' must be a string or a list of strings", what);
            return ATX_EINVAL;
        }
        (*out)[i] = json_object_get_string(s);
    }
    *n = len;
    return 0;
}

/* A value as environment text (fmf environment values may be numbers). */
static const char *scalar_text(json_object *v)
{
    if (json_object_is_type(v, json_type_string))
        return json_object_get_string(v);
    if (json_object_is_type(v, json_type_null))
        return "";
    return json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
}

/* Steps: one object or a list of objects. Always returns a new array. */
static json_object *steps(json_object *v)
{
    json_object *a = json_object_new_array();
    if (!v || !a)
        return a;
    if (json_object_is_type(v, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(v); i++)
            json_object_array_add(a, json_object_get(json_object_array_get_idx(v, i)));
    } else {
        json_object_array_add(a, json_object_get(v));
    }
    return a;
}

/* ---- the plugin ---- */

static void fmf_destroy(void *state);

static int fmf_create(atx_plugin_ctx *ctx, void **out)
{
    static const char *const keys[] = { "kill_grace", "output_head", "output_tail",
                                        "reboot_timeout", NULL };
    int64_t head = OUTPUT_KEEP, tail = OUTPUT_KEEP;
    fmf_exec *x;
    int r;

    if ((r = atx_plugin_config_check_keys(ctx, keys)) < 0)
        return r;
    x = calloc(1, sizeof(*x));
    if (!x)
        return atx_error_set(ATX_ENOMEM, "out of memory");
    x->ctx = ctx;
    pthread_mutex_init(&x->bin_mu, NULL);
    x->reboot_timeout = REBOOT_TIMEOUT;
    if ((r = atx_plugin_config_duration(ctx, "kill_grace", &x->grace_ns)) < 0 ||
        (r = atx_plugin_config_duration(ctx, "reboot_timeout", &x->reboot_timeout)) < 0 ||
        (r = atx_plugin_config_int(ctx, "output_head", &head)) < 0 ||
        (r = atx_plugin_config_int(ctx, "output_tail", &tail)) < 0) {
        fmf_destroy(x);
        return r;
    }
    if (head < 0 || tail < 0) {
        fmf_destroy(x);
        return atx_error_set(ATX_EINVAL, "fmf: output_head and output_tail must not be negative");
    }
    if (x->reboot_timeout <= 0) {
        fmf_destroy(x);
        return atx_error_set(ATX_EINVAL, "fmf: reboot_timeout must be more than 0");
    }
    x->keep_head = (uint64_t)head;
    x->keep_tail = (uint64_t)tail;
    *out = x;
    return 0;
}

static void plan_free(plan_info *p)
{
    if (!p)
        return;
    free(p->tree);
    free(p->name);
    json_object_put(p->environment);
    json_object_put(p->prepare);
    json_object_put(p->finish);
    free(p);
}

static void fmf_destroy(void *state)
{
    fmf_exec *x = state;
    for (size_t i = 0; i < x->nplans; i++)
        plan_free(x->plans[i]);
    free(x->plans);
    if (x->bin)
        fmf_bin_remove(x->bin);
    free(x->bin);
    pthread_mutex_destroy(&x->bin_mu);
    free(x);
}

/* ---- discovery ---- */

typedef struct discovery {
    fmf_exec *x;
    int (*add)(void *ud, atx_test *t);
    void *ud;
    size_t plan;             /* index in x->plans */
    const char *source;      /* for messages: the tree */
    const fmf_tree *tree;
    json_object *warned;     /* the node problems warned of, by address */
} discovery;

static int priority_of(json_object *v, int *out)
{
    if (!v)
        return 0;
    if (json_object_is_type(v, json_type_int)) {
        *out = json_object_get_int(v);
        return 0;
    }
    const char *s = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
    static const struct { const char *w; int p; } words[] = {
        { "low", -1 }, { "medium", 0 }, { "normal", 0 }, { "high", 1 }, { "critical", 2 },
    };
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        if (strcmp(s, words[i].w) == 0) {
            *out = words[i].p;
            return 0;
        }
    }
    return ATX_EINVAL;
}

/* A problem of node n's key, as one line "<file>:<line>: <node>: <what>"
 * in why, the line where the key was set. Returns 1. */
static int node_problem(const discovery *d, const fmf_node *n, const char *key, char *why,
                        size_t len, const char *fmt, ...) ATX_PRINTF(6, 7);

static int node_problem(const discovery *d, const fmf_node *n, const char *key, char *why,
                        size_t len, const char *fmt, ...)
{
    const char *file;
    int line, k;
    va_list ap;

    fmf_node_where(d->tree, n, key, &file, &line);
    k = line > 0 ? snprintf(why, len, "%s:%d: %s: ", file, line, n->name)
                 : snprintf(why, len, "%s: %s: ", file ? file : d->source, n->name);
    if (k >= 0 && (size_t)k < len) {
        va_start(ap, fmt);
        vsnprintf(why + k, len - (size_t)k, fmt, ap);
        va_end(ap);
    }
    return 1;
}

/* The spec of node n's test: where it is, its metadata, and what is wrong
 * with it (NULL: nothing). */
static int set_spec(atx_test *t, const discovery *d, const fmf_node *n, const char *error)
{
    json_object *spec = json_object_new_object();
    int r;

    json_object_object_add(spec, "node", json_object_new_string(n->name));
    json_object_object_add(spec, "dir", json_object_new_string(n->dir));
    json_object_object_add(spec, "plan", json_object_new_int((int)d->plan));
    json_object_object_add(spec, "metadata", json_object_get(n->data));
    if (error)
        json_object_object_add(spec, "error", json_object_new_string(error));
    r = atx_test_set_spec_json(t, json_object_to_json_string_ext(spec, JSON_C_TO_STRING_PLAIN));
    json_object_put(spec);
    return r;
}

/* A node that cannot run becomes a test all the same: its one result is an
 * error naming the problem (fmf_run), and it is not rerun (its metadata
 * would fail the same way). The problem is warned of once per bad node: a
 * node's error that nodes below it share counts once. */
static int add_broken(discovery *d, const fmf_node *n, const char *name, const char *why)
{
    char key[32];
    atx_test *t;
    int r;

    snprintf(key, sizeof(key), "%p", n->error ? (const void *)n->error : (const void *)n);
    if (!json_object_object_get_ex(d->warned, key, NULL)) {
        json_object_object_add(d->warned, key, NULL);
        atx_plugin_log(d->x->ctx, ATX_LOG_WARNING, "%s", why);
    }
    if ((r = atx_test_new(name, "fmf", &t)) < 0)
        return r;
    atx_test_set_reruns(t, 0);
    if ((r = set_spec(t, d, n, why)) < 0) {
        atx_test_free(t);
        return r;
    }
    return d->add(d->ud, t);
}

/* An exit code or count in metadata: an integer, or its digits as text. */
static bool int_of(json_object *v, long lo, long hi, int *out)
{
    long n;
    if (json_object_is_type(v, json_type_int)) {
        n = (long)json_object_get_int64(v);
    } else if (json_object_is_type(v, json_type_string)) {
        const char *s = json_object_get_string(v);
        char *end;
        errno = 0;
        n = strtol(s, &end, 10);
        if (!*s || *end || errno)
            return false;
    } else {
        return false;
    }
    if (n < lo || n > hi)
        return false;
    *out = (int)n;
    return true;
}

#define RESTART_CODES_MAX 256
#define RESTART_MAX_COUNT 10 /* tmt's upper limit of restart-max-count */

/* tmt's restart keys: restart-on-exit-code (a code or a list), 
 * restart-max-count (1 to 10, default 1), restart-with-reboot.
 * @return 0, or -1 with @p err saying what is wrong, *key which key. */
static int restart_keys(json_object *meta, int *codes, size_t *ncodes, int *max, bool *reboot,
                        const char **key, char *err, size_t errlen)
{
    json_object *v;
    *ncodes = 0;
    *max = 1;
    *reboot = false;
    if (json_object_object_get_ex(meta, "restart-on-exit-code", &v) && v) {
        bool list = json_object_is_type(v, json_type_array);
        size_t n = list ? json_object_array_length(v) : 1;
        for (size_t i = 0; i < n; i++) {
            json_object *e = list ? json_object_array_get_idx(v, i) : v;
            if (*ncodes >= RESTART_CODES_MAX || !int_of(e, 0, 255, &codes[*ncodes])) {
                *key = "restart-on-exit-code";
                snprintf(err, errlen, "'restart-on-exit-code' must be an exit code (0 to 255) "
                         "or a list of at most %d", RESTART_CODES_MAX);
                return -1;
            }
            (*ncodes)++;
        }
    }
    if (json_object_object_get_ex(meta, "restart-max-count", &v) && v &&
        !int_of(v, 1, RESTART_MAX_COUNT, max)) {
        *key = "restart-max-count";
        snprintf(err, errlen, "'restart-max-count' must be 1 to %d", RESTART_MAX_COUNT);
        return -1;
    }
    if (json_object_object_get_ex(meta, "restart-with-reboot", &v) && v) {
        if (!json_object_is_type(v, json_type_boolean)) {
            *key = "restart-with-reboot";
            snprintf(err, errlen, "'restart-with-reboot' must be true or false");
            return -1;
        }
        *reboot = json_object_get_boolean(v);
    }
    return 0;
}

/* Whether node n's metadata can make a test: 0 with its duration (seconds)
 * and priority, or 1 with the problem in why. */
static int check_node(const discovery *d, const fmf_node *n, int64_t *secs, int *prio,
                      char *why, size_t len)
{
    json_object *data = n->data, *v = NULL;
    char what[512];

    if (n->error) {
        snprintf(why, len, "%s", n->error);
        return 1;
    }
    if (!jstr(data, "test"))
        return node_problem(d, n, "test", why, len, "'test' must be a string");
    json_object_object_get_ex(data, "duration", &v);
    if (fmf_duration(v, secs, what, sizeof(what)) < 0)
        return node_problem(d, n, "duration", why, len, "%s", what);
    if (json_object_object_get_ex(data, "priority", &v) && priority_of(v, prio) < 0)
        return node_problem(d, n, "priority", why, len,
                            "'priority' must be a number or low/medium/high");
    if (json_object_object_get_ex(data, "environment", &v) &&
        !json_object_is_type(v, json_type_object))
        return node_problem(d, n, "environment", why, len, "'environment' must be a mapping");
    int codes[RESTART_CODES_MAX], max;
    size_t ncodes;
    bool reboot;
    const char *key = NULL;
    if (restart_keys(data, codes, &ncodes, &max, &reboot, &key, what, sizeof(what)) < 0)
        return node_problem(d, n, key, why, len, "%s", what);
    fmf_result_mode mode;
    if (json_object_object_get_ex(data, "result", &v) &&
        (!json_object_is_type(v, json_type_string) ||
         fmf_result_mode_parse(json_object_get_string(v), &mode) < 0)) {
        /* tmt refuses such a test: it does not run. */
        fmf_result_shown(what, sizeof(what), scalar_text(v), 100);
        return node_problem(d, n, "result", why, len, "'result: %s' is not one of %s", what,
                            FMF_RESULT_WORDS);
    }
    return 0;
}

/* One fmf test node into an atx test named `name`. */
static int add_node(discovery *d, const fmf_node *n, const char *name)
{
    json_object *data = n->data, *v;
    plan_info *plan = d->x->plans[d->plan];
    atx_test *t;
    int64_t secs = 0;
    int prio = 0, r;
    char why[2048];

    if (check_node(d, n, &secs, &prio, why, sizeof(why)))
        return add_broken(d, n, name, why);
    if ((r = atx_test_new(name, "fmf", &t)) < 0)
        return r;
    atx_test_set_timeout(t, secs * ATX_NSEC_PER_SEC);
    atx_test_set_duration(t, secs * ATX_NSEC_PER_SEC);
    atx_test_set_priority(t, prio);
    const char **tags;
    size_t ntags;
    char err[256];
    if (json_object_object_get_ex(data, "tag", &v) &&
        strlist(v, &tags, &ntags, "tag", err, sizeof(err)) == 0) {
        for (size_t i = 0; i < ntags; i++)
            if (strcmp(tags[i], "destructive") == 0)
                atx_test_set_destructive(t, 1);
        free(tags);
    }
    /* Environment: the test's, then the plan's over it (tmt's precedence). */
    json_object *envs[2] = { NULL, plan->environment };
    json_object_object_get_ex(data, "environment", &envs[0]);
    for (int k = 0; k < 2; k++) {
        if (!envs[k] || !json_object_is_type(envs[k], json_type_object))
            continue;
        json_object_object_foreach(envs[k], key, val) {
            if ((r = atx_test_setenv(t, key, scalar_text(val))) == 0)
                continue;
            atx_test_free(t);
            if (r != ATX_EINVAL)
                return r;
            if (k == 1)
                return atx_error_set(ATX_EINVAL, "%s: plan %s: bad environment variable '%s'",
                                     d->source, plan->name, key);
            node_problem(d, n, "environment", why, sizeof(why),
                         "bad environment variable '%s'", key);
            return add_broken(d, n, name, why);
        }
    }
    if ((r = set_spec(t, d, n, NULL)) < 0) {
        atx_test_free(t);
        return r;
    }
    return d->add(d->ud, t);
}

/* Whether name matches any of the regular expressions (tmt's `test`/`exclude`). */
static int matches_any(const char *const *res, size_t n, const char *name, char *err,
                       size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        regex_t re;
        int rc = regcomp(&re, res[i], REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            snprintf(err, errlen, "'%s' is not a regular expression", res[i]);
            return -1;
        }
        rc = regexec(&re, name, 0, NULL, 0);
        regfree(&re);
        if (rc == 0)
            return 1;
    }
    return 0;
}

/* Tests of the tree selected by test names/patterns, filters and excludes. */
static int select_tests(discovery *d, const fmf_tree *t, json_object *sel, const char *prefix,
                        const char *where)
{
    const char **names = NULL, **filters = NULL, **excludes = NULL;
    size_t nnames = 0, nfilters = 0, nexcludes = 0;
    char err[512] = "";
    int r = 0;
    json_object *v = NULL;

    if ((json_object_object_get_ex(sel, "test", &v) &&
         (r = strlist(v, &names, &nnames, "test", err, sizeof(err))) < 0) ||
        (json_object_object_get_ex(sel, "filter", &v) &&
         (r = strlist(v, &filters, &nfilters, "filter", err, sizeof(err))) < 0) ||
        (json_object_object_get_ex(sel, "exclude", &v) &&
         (r = strlist(v, &excludes, &nexcludes, "exclude", err, sizeof(err))) < 0))
        goto out;
    for (size_t i = 0; i < fmf_tree_count(t); i++) {
        const fmf_node *n = fmf_tree_node(t, i);
        if (!fmf_node_is_test(n))
            continue;
        if (nnames) {
            int m = matches_any(names, nnames, n->name, err, sizeof(err));
            if (m < 0) {
                r = ATX_EINVAL;
                goto out;
            }
            if (!m)
                continue;
        }
        if (nexcludes) {
            int m = matches_any(excludes, nexcludes, n->name, err, sizeof(err));
            if (m < 0) {
                r = ATX_EINVAL;
                goto out;
            }
            if (m)
                continue;
        }
        bool keep = true;
        for (size_t k = 0; k < nfilters && keep; k++) {
            int m = fmf_filter(filters[k], n->data, err, sizeof(err));
            if (m < 0) {
                r = ATX_EINVAL;
                goto out;
            }
            keep = m == 1;
        }
        if (!keep)
            continue;
        char name[PATH_MAX];
        snprintf(name, sizeof(name), "%s%s", prefix, n->name);
        if ((r = add_node(d, n, name)) < 0)
            goto out;
    }
out:
    free(names);
    free(filters);
    free(excludes);
    if (r < 0 && *err)
        return atx_error_set(r, "%s: %s: %s", d->source, where, err);
    return r;
}

static int check_step_keys(json_object *step, const char *const *known, const char *plan,
                           const char *what, const char *tree)
{
    json_object_object_foreach(step, key, val) {
        (void)val;
        bool ok = false;
        for (size_t i = 0; known[i] && !ok; i++)
            ok = strcmp(key, known[i]) == 0;
        if (!ok)
            return atx_error_set(ATX_EUNSUPPORTED, "%s: plan %s: %s: key '%s' is not supported",
                                 tree, plan, what, key);
    }
    return 0;
}

/* Check prepare/finish steps: how install (package) or shell (script). */
static int check_steps(json_object *arr, bool install_ok, const char *plan, const char *what,
                       const char *tree)
{
    static const char *const install_keys[] = { "how", "name", "summary", "order", "package",
                                                "missing", NULL };
    static const char *const shell_keys[] = { "how", "name", "summary", "order", "script",
                                              NULL };
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        json_object *s = json_object_array_get_idx(arr, i);
        const char *how = json_object_is_type(s, json_type_object) ? jstr(s, "how") : NULL;
        int r;
        if (!how)
            return atx_error_set(ATX_EINVAL, "%s: plan %s: each %s step needs 'how'", tree,
                                 plan, what);
        if (strcmp(how, "shell") == 0)
            r = check_step_keys(s, shell_keys, plan, what, tree);
        else if (strcmp(how, "install") == 0 && install_ok)
            r = check_step_keys(s, install_keys, plan, what, tree);
        else
            return atx_error_set(ATX_EUNSUPPORTED, "%s: plan %s: %s 'how: %s' is not supported"
                                 " (use %s)", tree, plan, what, how,
                                 install_ok ? "install or shell" : "shell");
        if (r < 0)
            return r;
    }
    return 0;
}

static int add_plan(fmf_exec *x, plan_info *p)
{
    plan_info **plans = realloc(x->plans, (x->nplans + 1) * sizeof(*plans));
    if (!plans)
        return atx_error_set(ATX_ENOMEM, "out of memory");
    x->plans = plans;
    x->plans[x->nplans++] = p;
    return 0;
}

static int discover_plan(discovery *d, const fmf_tree *t, const char *plan_name)
{
    const fmf_node *pn = fmf_tree_find(t, plan_name);
    plan_info *p = d->x->plans[d->plan];
    json_object *disc, *v;
    int r;

    if (!pn)
        return atx_error_set(ATX_ENOTFOUND, "%s: no plan named %s in the tree", d->source,
                             plan_name);
    if (!json_object_object_get_ex(pn->data, "discover", &disc))
        return atx_error_set(ATX_EINVAL, "%s: %s is not a plan (it has no 'discover')",
                             pn->file, plan_name);
    if (json_object_object_get_ex(pn->data, "environment", &v)) {
        if (!json_object_is_type(v, json_type_object))
            return atx_error_set(ATX_EINVAL, "%s: plan %s: 'environment' must be a mapping",
                                 pn->file, plan_name);
        p->environment = json_object_get(v);
    }
    json_object *prep = NULL, *fin = NULL;
    json_object_object_get_ex(pn->data, "prepare", &prep);
    json_object_object_get_ex(pn->data, "finish", &fin);
    json_object_put(p->prepare);
    json_object_put(p->finish);
    p->prepare = steps(prep);
    p->finish = steps(fin);
    if ((r = check_steps(p->prepare, true, plan_name, "prepare", pn->file)) < 0 ||
        (r = check_steps(p->finish, false, plan_name, "finish", pn->file)) < 0)
        return r;

    json_object *sections = steps(disc);
    size_t n = json_object_array_length(sections);
    static const char *const keys[] = { "how", "name", "summary", "order", "test", "filter",
                                        "exclude", NULL };
    for (size_t i = 0; i < n && r == 0; i++) {
        json_object *s = json_object_array_get_idx(sections, i);
        char where[PATH_MAX + 64], prefix[256] = "";
        const char *how = json_object_is_type(s, json_type_object) ? jstr(s, "how") : NULL;
        if (!how || strcmp(how, "fmf") != 0) {
            r = atx_error_set(ATX_EUNSUPPORTED, "%s: plan %s: discover 'how: %s' is not "
                              "supported (use fmf)", pn->file, plan_name, how ? how : "?");
            break;
        }
        if ((r = check_step_keys(s, keys, plan_name, "discover", pn->file)) < 0)
            break;
        const char *sname = jstr(s, "name");
        if (n > 1) {
            /* Several sections: tests are named /<section>/<test>. */
            if (!sname || !*sname || strchr(sname, '/')) {
                r = atx_error_set(ATX_EINVAL, "%s: plan %s: with several discover sections "
                                  "each needs a 'name' without '/'", pn->file, plan_name);
                break;
            }
            snprintf(prefix, sizeof(prefix), "/%s", sname);
        }
        snprintf(where, sizeof(where), "plan %s, discover %s", plan_name,
                 sname ? sname : "section");
        r = select_tests(d, t, s, prefix, where);
    }
    json_object_put(sections);
    return r;
}

static int fmf_discover(void *state, const struct json_object *source_c, const char *basedir,
                        int (*add)(void *ud, atx_test *t), void *ud)
{
    static const char *const keys[] = { "tree", "plan", "filter", "test", "exclude", "context",
                                        NULL };
    fmf_exec *x = state;
    json_object *source = (json_object *)source_c, *ctx = NULL;
    const char *tree_arg = jstr(source, "tree"), *plan_name = jstr(source, "plan");
    char path[PATH_MAX], err[1024] = "";
    fmf_tree *t = NULL;
    plan_info *p;
    int r;

    json_object_object_foreach(source, key, val) {
        (void)val;
        bool ok = false;
        for (size_t i = 0; keys[i] && !ok; i++)
            ok = strcmp(keys[i], key) == 0;
        if (!ok)
            return atx_error_set(ATX_EINVAL, "fmf: unknown key '%s' (known: tree, plan, filter,"
                                 " test, exclude, context)", key);
    }
    if (!tree_arg)
        return atx_error_set(ATX_EINVAL, "fmf: needs \"tree\": the path of an fmf tree");
    if (json_object_object_get_ex(source, "context", &ctx) &&
        !json_object_is_type(ctx, json_type_object))
        return atx_error_set(ATX_EINVAL, "fmf: 'context' must be an object of strings");
    if (tree_arg[0] == '/')
        snprintf(path, sizeof(path), "%s", tree_arg);
    else
        snprintf(path, sizeof(path), "%s/%s", basedir, tree_arg);
    char *real = realpath(path, NULL);
    if (!real)
        return atx_error_set(-errno, "%s: %s", tree_arg, strerror(errno));
    /* Case-insensitive context comparisons, as tmt adjusts. */
    if (fmf_tree_load_ex(real, ctx, FMF_CASE_INSENSITIVE, &t, err, sizeof(err)) < 0) {
        free(real);
        return atx_error_set(ATX_EPARSE, "%s", err);
    }
    p = calloc(1, sizeof(*p));
    if (!p || (r = add_plan(x, p)) < 0) {
        free(p);
        free(real);
        fmf_tree_free(t);
        return atx_error_set(ATX_ENOMEM, "out of memory");
    }
    p->tree = real;
    p->name = plan_name ? strdup(plan_name) : NULL;
    p->prepare = json_object_new_array();
    p->finish = json_object_new_array();
    discovery d = { x, add, ud, x->nplans - 1, real, t, json_object_new_object() };
    if (!d.warned)
        r = atx_error_set(ATX_ENOMEM, "out of memory");
    else if (plan_name)
        r = discover_plan(&d, t, plan_name);
    else
        r = select_tests(&d, t, source, "", "selection");
    json_object_put(d.warned);
    fmf_tree_free(t);
    return r;
}

static int fmf_check(void *state, const atx_test *t)
{
    fmf_exec *x = state;
    json_object *spec = json_tokener_parse(atx_test_spec_json(t)), *v;
    int r = 0;

    if (!spec || !jstr(spec, "dir") || !json_object_object_get_ex(spec, "metadata", &v) ||
        !json_object_object_get_ex(spec, "plan", &v) ||
        json_object_get_int(v) < 0 || (size_t)json_object_get_int(v) >= x->nplans)
        r = atx_error_set(ATX_EINVAL, "test %s: fmf tests come from a tree (atx run TREE, or a "
                          "plan entry {\"executor\": \"fmf\", \"tree\": ...})", atx_test_name(t));
    json_object_put(spec);
    return r;
}

/* ---- commands on a system ---- */

/* Run a bash script on the system; *code gets its exit code (-1 if killed),
 * *text (if not NULL) the tail of its output. */
static int run_script(sysdata *sd, const char *script, const char *const *env, const char *cwd,
                      int64_t timeout_ns, int *code, char **text)
{
    const char *argv[] = { "bash", "-c", script, NULL };
    int64_t deadline = atx_now_ns() + timeout_ns;
    atx_spawn_opts so = ATX_SPAWN_OPTS_INIT;
    atx_proc_run_opts o = ATX_PROC_RUN_OPTS_INIT;
    atx_proc_outcome res;
    atx_capture cap;
    int r;

    so.argv = argv;
    so.env = env;
    so.cwd = cwd;
    so.flags = ATX_SPAWN_STDOUT_PIPE | ATX_SPAWN_STDERR_TO_STDOUT;
    so.deadline_ns = deadline;
    atx_capture_init(&cap, 0, 16 * 1024);
    o.capture[0] = &cap;
    o.deadline_ns = &deadline;
    r = atx_proc_run_spawn(sd->sys, &so, &o, &res);
    if (r == 0) {
        *code = res.exit.exited ? res.exit.code : -1;
        if (text) {
            size_t len;
            if (atx_capture_collect(&cap, text, &len) < 0)
                *text = NULL;
        }
    }
    atx_capture_release(&cap);
    return r;
}

/* The last non-empty line of a command's output, for a one-line note. */
static void last_line(const char *text, char *buf, size_t len)
{
    const char *end = text + strlen(text);
    while (end > text && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
        end--;
    const char *start = end;
    while (start > text && start[-1] != '\n')
        start--;
    snprintf(buf, len, "%.*s", (int)(end - start), start);
}

static const char *detect_pm(sysdata *sd)
{
    if (!*sd->pm) {
        char *out = NULL;
        int code = -1;
        snprintf(sd->pm, sizeof(sd->pm), "-");
        if (run_script(sd, "command -v apt-get || command -v dnf || command -v yum", NULL, NULL,
                       30 * ATX_NSEC_PER_SEC, &code, &out) == 0 && code == 0 && out) {
            const char *names[] = { "apt-get", "dnf", "yum" }, *pms[] = { "apt", "dnf", "yum" };
            for (int i = 0; i < 3; i++)
                if (strstr(out, names[i])) {
                    snprintf(sd->pm, sizeof(sd->pm), "%s", pms[i]);
                    break;
                }
        }
        free(out);
    }
    return sd->pm;
}

/* Shell-quote a package name into buf (package names are plain words, but
 * they come from metadata: never trust them unquoted). */
static void quote(char *buf, size_t len, const char *s)
{
    size_t o = 0;
    if (o < len - 1)
        buf[o++] = '\'';
    for (; *s && o + 5 < len; s++) {
        if (*s == '\'') {
            memcpy(buf + o, "'\\''", 4);
            o += 4;
        } else {
            buf[o++] = *s;
        }
    }
    if (o < len - 1)
        buf[o++] = '\'';
    buf[o] = '\0';
}

/*
 * Make sure packages are installed: what is there is skipped, what atx
 * installed or failed to install on this system is remembered, so a second
 * test with the same require does not try again. Required packages that
 * cannot be installed make the test infra (note: the package manager's
 * message); recommended ones are tried one by one and may fail.
 */
static int install(sysdata *sd, const char *const *pkgs, size_t n, bool required, char *note,
                   size_t notelen)
{
    char script[8192], q[512];
    const char *pm;
    int code;
    char *out = NULL;

    for (size_t i = 0; i < n; i++) {
        json_object *known;
        if (json_object_object_get_ex(sd->packages, pkgs[i], &known)) {
            if (required && json_object_is_type(known, json_type_string)) {
                snprintf(note, notelen, "%s (remembered from an earlier attempt on this system)",
                         json_object_get_string(known));
                return ATX_EINFRA;
            }
            continue;
        }
        pm = detect_pm(sd);
        if (strcmp(pm, "-") == 0) {
            snprintf(note, notelen, "cannot install %s: no apt-get, dnf or yum on %s", pkgs[i],
                     atx_system_id(sd->sys));
            if (required)
                return ATX_EINFRA;
            continue;
        }
        quote(q, sizeof(q), pkgs[i]);
        bool apt = strcmp(pm, "apt") == 0;
        snprintf(script, sizeof(script),
                 apt ? "dpkg-query -W -f='${Status}' %s 2>/dev/null | grep -q 'ok installed'"
                     : "rpm -q --whatprovides %s >/dev/null 2>&1",
                 q);
        if (run_script(sd, script, NULL, NULL, 60 * ATX_NSEC_PER_SEC, &code, NULL) < 0)
            return ATX_EINFRA;
        if (code == 0) {
            json_object_object_add(sd->packages, pkgs[i], json_object_new_boolean(1));
            continue;
        }
        if (apt)
            snprintf(script, sizeof(script),
                     "DEBIAN_FRONTEND=noninteractive apt-get install -y -q %s 2>&1", q);
        else
            snprintf(script, sizeof(script), "%s install -y %s 2>&1", pm, q);
        free(out);
        out = NULL;
        if (run_script(sd, script, NULL, NULL, 30 * 60 * ATX_NSEC_PER_SEC, &code, &out) < 0) {
            free(out);
            return ATX_EINFRA;
        }
        if (code == 0) {
            json_object_object_add(sd->packages, pkgs[i], json_object_new_boolean(1));
            continue;
        }
        char line[400];
        last_line(out ? out : "", line, sizeof(line));
        snprintf(note, notelen, "installing %s failed: %s", pkgs[i], line);
        json_object_object_add(sd->packages, pkgs[i], json_object_new_string(note));
        if (required) {
            free(out);
            return ATX_EINFRA;
        }
    }
    free(out);
    return 0;
}

/* Write @p text and a newline over a file's content, from the start, and
 * cut it there: its blocks are reused (no truncation to nothing first). */
static int rewrite_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    size_t len = strlen(text);
    int r = 0;

    if (fd < 0)
        return -errno;
    struct iovec iov[2] = { { (void *)text, len }, { "\n", 1 } };
    ssize_t n = pwritev(fd, iov, 2, 0);
    if (n != (ssize_t)len + 1 || ftruncate(fd, (off_t)len + 1) < 0)
        r = n < 0 ? -errno : -EIO;
    if (close(fd) < 0 && !r)
        r = -errno;
    return r;
}

/* ---- per-system data ---- */

static void sysdata_free(fmf_exec *x, sysdata *sd)
{
    if (!sd)
        return;
    json_object_put(sd->packages);
    for (size_t i = 0; sd->envfiles && i < x->nplans; i++) {
        if (sd->envfiles[i] && !sd->trees)
            unlink(sd->envfiles[i]);
        free(sd->envfiles[i]);
        if (sd->trees)
            free(sd->trees[i]);
    }
    free(sd->envfiles);
    free(sd->trees);
    free(sd->metadata);
    if (sd->meta_local)
        unlink(sd->meta_local);
    free(sd->meta_local);
    if (sd->output)
        unlink(sd->output);
    free(sd->output);
    free(sd->bin);
    free(sd->data);
    free(sd);
}

/* Bash run before every test and step: the KEY=VALUE lines that earlier
 * tests and steps appended to the plan's environment file become exported
 * variables (a value may hold spaces), whatever system the file is on; a
 * test's PATH starts with the helper programs (bin.h). */
static const char env_prelude[] =
    "if [ -n \"${TMT_PLAN_ENVIRONMENT_FILE:-}\" ] && [ -r \"$TMT_PLAN_ENVIRONMENT_FILE\" ]; "
    "then while IFS= read -r __atx_line || [ -n \"$__atx_line\" ]; do "
    "case $__atx_line in [A-Za-z_]*=*) export \"$__atx_line\";; esac; "
    "done < \"$TMT_PLAN_ENVIRONMENT_FILE\"; unset __atx_line; fi\n"
    "if [ -n \"${ATX_FMF_BIN:-}\" ]; then export PATH=\"$ATX_FMF_BIN:$PATH\"; fi\n"
    "set -eo pipefail\n";

/* Where plan pi's tree is on the system. */
static const char *tree_on(const sysdata *sd, const fmf_exec *x, size_t pi)
{
    return sd->trees ? sd->trees[pi] : x->plans[pi]->tree;
}

static void strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* The environment of a plan's steps: the plan's, its env file, its tree. */
static char **plan_env(const plan_info *p, const char *envfile, const char *tree)
{
    size_t n = 0, cap = 4;
    char **env = calloc(cap + 1, sizeof(char *));
    if (!env)
        return NULL;
    if (p->environment) {
        json_object_object_foreach(p->environment, key, val) {
            char *kv;
            if (n == cap) {
                char **e = realloc(env, (cap * 2 + 1) * sizeof(char *));
                if (!e)
                    break;
                env = e;
                cap *= 2;
            }
            if (asprintf(&kv, "%s=%s", key, scalar_text(val)) >= 0)
                env[n++] = kv;
        }
    }
    char **e = realloc(env, (n + 3) * sizeof(char *));
    if (!e)
        return env;
    env = e;
    if (envfile && asprintf(&env[n], "TMT_PLAN_ENVIRONMENT_FILE=%s", envfile) >= 0)
        n++;
    if (asprintf(&env[n], "TMT_TREE=%s", tree) >= 0)
        n++;
    env[n] = NULL;
    return env;
}

static int run_steps(fmf_exec *x, sysdata *sd, size_t pi, json_object *arr, bool stop_on_error,
                     const char *what)
{
    plan_info *p = x->plans[pi];
    int first_error = 0;

    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        json_object *s = json_object_array_get_idx(arr, i);
        const char *how = jstr(s, "how");
        char note[1024] = "";
        int r = 0;
        if (strcmp(how, "install") == 0) {
            const char **pkgs;
            size_t n;
            json_object *v = NULL;
            char err[256];
            json_object_object_get_ex(s, "package", &v);
            if (strlist(v, &pkgs, &n, "package", err, sizeof(err)) == 0) {
                r = install(sd, pkgs, n, true, note, sizeof(note));
                free(pkgs);
            }
        } else {
            const char **scripts;
            size_t n;
            json_object *v = NULL;
            char err[256];
            json_object_object_get_ex(s, "script", &v);
            if (strlist(v, &scripts, &n, "script", err, sizeof(err)) < 0)
                continue;
            char **env = plan_env(p, sd->envfiles[pi], tree_on(sd, x, pi));
            for (size_t k = 0; k < n && r == 0; k++) {
                char *script, *out = NULL;
                int code = -1;
                if (asprintf(&script, "%s%s", env_prelude, scripts[k]) < 0)
                    break;
                r = run_script(sd, script, (const char *const *)env, tree_on(sd, x, pi),
                               60 * 60 * ATX_NSEC_PER_SEC, &code, &out);
                if (r == 0 && code != 0) {
                    char line[400];
                    last_line(out ? out : "", line, sizeof(line));
                    snprintf(note, sizeof(note), "%s script of plan %s failed (exit %d): %s",
                             what, p->name ? p->name : "(tree)", code, line);
                    r = ATX_EINFRA;
                }
                free(script);
                free(out);
            }
            strv_free(env);
            free(scripts);
        }
        if (r < 0) {
            if (!*note)
                snprintf(note, sizeof(note), "%s step of plan %s failed: %s", what,
                         p->name ? p->name : "(tree)", atx_error_last()->message);
            atx_plugin_log(x->ctx, ATX_LOG_WARNING, "%s: %s", atx_system_id(sd->sys), note);
            if (!first_error)
                first_error = atx_error_set(ATX_EINFRA, "%s", note);
            if (stop_on_error)
                return first_error;
        }
    }
    return first_error;
}

/* The helper programs here: written at the first prepare of the run, for
 * all its systems. @return their folder, or NULL (err says why). */
static const char *bin_here(fmf_exec *x, char *err, size_t errlen)
{
    pthread_mutex_lock(&x->bin_mu);
    if (!x->bin) {
        const char *results = atx_plugin_ctx_results_dir(x->ctx);
        char *dir = NULL;
        /* A folder named with ':' cannot go into PATH: then one in /tmp. */
        if (results && !strchr(results, ':')) {
            if (asprintf(&dir, "%s/.atx-fmf-bin", results) < 0)
                dir = NULL;
        } else {
            char tmpl[] = "/tmp/atx-fmf-bin.XXXXXX";
            dir = mkdtemp(tmpl) ? strdup(tmpl) : NULL;
        }
        if (!dir)
            snprintf(err, errlen, "cannot make a folder for the helper programs: %s",
                     strerror(errno));
        else if (fmf_bin_write(dir, err, errlen) < 0)
            free(dir);
        else
            x->bin = dir;
    }
    const char *bin = x->bin;
    pthread_mutex_unlock(&x->bin_mu);
    return bin;
}

/*
 * Plan @i's tree onto a system that does not share this host's files, and
 * its environment file there: emptied at the lease's start, kept (made if
 * it is gone) when put back after a reboot. @return the copy's result;
 * @p env_rc (may be NULL) gets the environment file's.
 */
static int put_plan(fmf_exec *x, sysdata *sd, size_t i, bool keep_env, int *env_rc)
{
    int code = -1, r = atx_system_copy_in(sd->sys, x->plans[i]->tree, sd->trees[i]);
    char script[PATH_MAX + 64], q[PATH_MAX + 8];

    if (r < 0)
        return r;
    quote(q, sizeof(q), sd->envfiles[i]);
    if (keep_env)
        snprintf(script, sizeof(script), "[ -e %s ] || : > %s", q, q);
    else
        snprintf(script, sizeof(script), ": > %s", q);
    int e = run_script(sd, script, NULL, NULL, 60 * ATX_NSEC_PER_SEC, &code, NULL);
    if (env_rc)
        *env_rc = e;
    return 0;
}

static int fmf_prepare(void *state, atx_system *sys, void **sys_state)
{
    fmf_exec *x = state;
    sysdata *sd = calloc(1, sizeof(*sd));
    const char *work = atx_system_workdir(sys);
    int r;

    if (!sd || !(sd->packages = json_object_new_object()) ||
        !(sd->envfiles = calloc(x->nplans + 1, sizeof(char *)))) {
        if (sd)
            json_object_put(sd->packages);
        free(sd);
        return atx_error_set(ATX_ENOMEM, "out of memory");
    }
    sd->sys = sys;
    bool remote = !atx_system_shares_host(sys);
    const char *results = atx_plugin_ctx_results_dir(x->ctx);
    if (asprintf(&sd->metadata, "%s/atx-test-metadata.yaml", work ? work : "/tmp") < 0 ||
        asprintf(&sd->data, "%s/atx-test-data", work ? work : "/tmp") < 0 ||
        asprintf(&sd->output, "%s/.atx-%s.output", results ? results : "/tmp",
                 atx_system_id(sys)) < 0 ||
        (remote && (!(sd->trees = calloc(x->nplans + 1, sizeof(char *))) ||
                    asprintf(&sd->meta_local, "%s/.atx-%s-metadata.yaml", results ? results : "/tmp",
                             atx_system_id(sys)) < 0))) {
        sysdata_free(x, sd);
        return atx_error_set(ATX_ENOMEM, "out of memory");
    }
    /* The helper programs: this host's folder, or a copy on the system. */
    char err[600];
    const char *bin = bin_here(x, err, sizeof(err));
    if (!bin) {
        sysdata_free(x, sd);
        return atx_error_set(ATX_EINFRA, "fmf: %s", err);
    }
    if (remote ? asprintf(&sd->bin, "%s/atx-bin", work ? work : "/tmp") < 0
               : !(sd->bin = strdup(bin))) {
        sd->bin = NULL;
        sysdata_free(x, sd);
        return atx_error_set(ATX_ENOMEM, "out of memory");
    }
    if (remote && (r = atx_system_copy_in(sys, bin, sd->bin)) < 0) {
        snprintf(err, sizeof(err), "cannot upload the helper programs to %s: %s",
                 atx_system_id(sys), atx_error_last()->message);
        sysdata_free(x, sd);
        return atx_error_set(ATX_EINFRA, "fmf: %s", err);
    }
    for (size_t i = 0; i < x->nplans; i++) {
        if (asprintf(&sd->envfiles[i], "%s/tmt-plan-environment-%zu", work ? work : "/tmp",
                     i) < 0 ||
            (remote && asprintf(&sd->trees[i], "%s/tree-%zu", work ? work : "/tmp", i) < 0)) {
            sysdata_free(x, sd);
            return atx_error_set(ATX_ENOMEM, "out of memory");
        }
        if (remote) {
            /* The tree goes onto the system once per lease. */
            if ((r = put_plan(x, sd, i, false, NULL)) < 0) {
                char msg[1200];
                snprintf(msg, sizeof(msg), "cannot upload %s to %s: %s", x->plans[i]->tree,
                         atx_system_id(sys), atx_error_last()->message);
                sysdata_free(x, sd);
                return atx_error_set(ATX_EINFRA, "%s", msg);
            }
        } else {
            int fd = open(sd->envfiles[i], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (fd >= 0)
                close(fd);
        }
    }
    for (size_t i = 0; i < x->nplans; i++) {
        if ((r = run_steps(x, sd, i, x->plans[i]->prepare, true, "prepare")) < 0) {
            /* Finish steps still run: they undo what prepare began. */
            for (size_t k = 0; k < x->nplans; k++)
                run_steps(x, sd, k, x->plans[k]->finish, false, "finish");
            char msg[1200];
            snprintf(msg, sizeof(msg), "%s", atx_error_last()->message);
            sysdata_free(x, sd);
            return atx_error_set(ATX_EINFRA, "%s", msg);
        }
    }
    *sys_state = sd;
    return 0;
}

static void fmf_finish(void *state, atx_system *sys, void *sys_state)
{
    fmf_exec *x = state;
    sysdata *sd = sys_state;

    (void)sys;
    if (!sd)
        return;
    for (size_t i = 0; i < x->nplans; i++)
        run_steps(x, sd, i, x->plans[i]->finish, false, "finish");
    sysdata_free(x, sd);
}

/* After a reboot: what the lease put on the system is there again (a reboot
 * may have emptied /tmp). A copy skips the files still there. */
static int restage(fmf_exec *x, sysdata *sd)
{
    int r = 0;

    for (size_t i = 0; sd->trees && i < x->nplans && r == 0; i++) {
        int env = 0;
        if ((r = put_plan(x, sd, i, true, &env)) == 0)
            r = env;
    }
    if (r == 0 && sd->meta_local)
        r = atx_system_copy_in(sd->sys, sd->meta_local, sd->metadata);
    if (r == 0 && sd->trees && sd->bin && x->bin)
        r = atx_system_copy_in(sd->sys, x->bin, sd->bin);
    return r;
}

/* ---- one attempt ---- */

typedef struct attempt_io {
    fmf_control *control;
    int out_fd;              /* the merged output: head, then the tail as a ring */
    uint64_t head, tail;     /* bytes kept of each end */
    uint64_t total;          /* bytes the test wrote */
    uint64_t written;        /* the file's length */
    atx_capture cap;         /* head and tail for the result */
    int64_t deadline;
    int64_t saved_at;        /* duration save/restore */
    int save_depth;
    int exitcode;            /* from `exitcode`, -1 if none */
    bool disconnect;         /* `disconnect`: the test reboots the system itself */
    bool reboot;             /* tmt-reboot: atx reboots it */
    bool control_closed;     /* after `disconnect` the channel is closed */
    int64_t reboot_timeout;  /* tmt-reboot -t (0: the default) */
    char reboot_command[FMF_CONTROL_LINE_MAX]; /* tmt-reboot -c ("": the system's own) */
    bool protocol_error;
    bool reboot_failed;      /* ...and note says why: the own result is infra */
    const char *note;
    fmf_result_mode mode;    /* the test's `result` key */
    fmf_end_kind end;        /* how the attempt ended, for settle_own() */
} attempt_io;

/*
 * Byte s of the output is kept at offset s while s < head, then at
 * head + (s - head) % tail: an output that fits is the file as it is (no
 * cost beyond a comparison), a longer one rings in the tail's place and is
 * put in order once, at the end (keep_output_end()).
 */
static int on_output(void *ud, int stream, const char *data, size_t len)
{
    attempt_io *io = ud;
    (void)stream;
    atx_capture_append(&io->cap, data, len);
    while (len) {
        uint64_t s = io->total, off, room;
        if (s < io->head) {
            off = s;
            room = io->head - s;
        } else if (io->tail == 0) {
            break;
        } else {
            if (len > io->tail) {
                /* Written over within this call anyway. */
                io->total += len - io->tail;
                data += len - io->tail;
                len = (size_t)io->tail;
                continue;
            }
            uint64_t at = (s - io->head) % io->tail;
            off = io->head + at;
            room = io->tail - at;
        }
        size_t n = room < len ? (size_t)room : len;
        ssize_t w = pwrite(io->out_fd, data, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* a full disk loses output, not the result */
        data += w;
        len -= (size_t)w;
        io->total += (uint64_t)w;
        if (off + (uint64_t)w > io->written)
            io->written = off + (uint64_t)w;
    }
    io->total += len;
    return 0;
}

static int pread_all(int fd, char *buf, size_t n, uint64_t off)
{
    while (n) {
        ssize_t r = pread(fd, buf, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? -errno : -EIO;
        buf += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static int pwrite_all(int fd, const char *buf, size_t n, uint64_t off)
{
    while (n) {
        ssize_t w = pwrite(fd, buf, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        buf += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* Move @len bytes of @fd from @src to @dst (the ranges may overlap), a
 * chunk at a time: the tail may be as long as configured. */
static int file_move(int fd, uint64_t dst, uint64_t src, uint64_t len)
{
    size_t cap = len < (1u << 20) ? (size_t)len : (1u << 20);
    char *buf = cap ? malloc(cap) : NULL;
    int r = 0;

    if (cap && !buf)
        return -ENOMEM;
    for (uint64_t done = 0; r == 0 && done < len;) {
        size_t n = len - done < cap ? (size_t)(len - done) : cap;
        /* Forward when moving down, backward when moving up: nothing is
         * read after it was written over. */
        uint64_t at = dst <= src ? done : len - done - n;
        if ((r = pread_all(fd, buf, n, src + at)) == 0)
            r = pwrite_all(fd, buf, n, dst + at);
        done += n;
    }
    free(buf);
    return r;
}

/*
 * An output longer than head + tail: the file becomes head, a marker line
 * saying how many bytes were left out, and the tail in order (cut on UTF-8
 * boundaries as atx_capture_collect() cuts, so the kept text decodes).
 * @return 0 or -errno (the file is then as the ring left it).
 */
static int keep_output_end(attempt_io *io)
{
    if (io->out_fd < 0 || io->total <= io->head + io->tail)
        return 0;
    char edge[4], marker[96];
    size_t k = io->head < sizeof(edge) ? (size_t)io->head : sizeof(edge), skip = 0;
    uint64_t at = io->tail ? (io->total - io->head) % io->tail : 0;
    int r = pread_all(io->out_fd, edge, k, io->head - k);
    if (r < 0)
        return r;
    uint64_t head = io->head - k + atx_text_utf8_floor(edge, k, k);
    /* The ring's newer part [0, at) goes after its end: then the tail is
     * in order at head + at. */
    if (io->tail && ((r = file_move(io->out_fd, io->head + io->tail, io->head, at)) < 0 ||
                     (r = pread_all(io->out_fd, edge, io->tail < 3 ? (size_t)io->tail : 3,
                                    io->head + at)) < 0))
        return r;
    while (skip < 3 && skip < io->tail && ((unsigned char)edge[skip] & 0xC0) == 0x80)
        skip++;
    int mlen = snprintf(marker, sizeof(marker), "\n[... %llu bytes omitted ...]\n",
                        (unsigned long long)(io->total - head - io->tail + skip));
    if ((r = file_move(io->out_fd, head + (uint64_t)mlen, io->head + at + skip, io->tail - skip)) < 0 ||
        (r = pwrite_all(io->out_fd, marker, (size_t)mlen, head)) < 0)
        return r;
    io->written = head + (uint64_t)mlen + io->tail - skip;
    return 0;
}

static int on_control(void *ud, const char *data, size_t len)
{
    attempt_io *io = ud;
    if (fmf_control_feed(io->control, data, len) < 0) {
        io->protocol_error = true;
        return -1; /* no further bytes are trusted: stop the test */
    }
    if (io->reboot)
        return -1; /* tmt-reboot: the test stops here, the system reboots */
    if (io->disconnect && !io->control_closed) {
        /* ATEX: the channel closes, so the test's next write fails and it
         * knows it may reboot now. */
        io->control_closed = true;
        return 1;
    }
    return 0;
}

static void on_exitcode(void *ud, int code)
{
    ((attempt_io *)ud)->exitcode = code;
}

static void on_duration(void *ud, const char *spec)
{
    attempt_io *io = ud;
    int64_t now = atx_now_ns(), ns = 0;
    fmf_duration_op op;

    if (fmf_duration_spec_parse(spec, &op, &ns) < 0)
        return; /* the parser validated it already */
    switch (op) {
    /* Saturating: "+106751d" twice must not wrap the deadline around. */
    case FMF_DURATION_SET: io->deadline = atx_add_sat(now, ns); break;
    case FMF_DURATION_ADD: io->deadline = atx_add_sat(io->deadline, ns); break;
    case FMF_DURATION_SUB: io->deadline = atx_add_sat(io->deadline, -ns); break;
    case FMF_DURATION_SAVE:
        if (io->save_depth++ == 0)
            io->saved_at = now;
        break;
    case FMF_DURATION_RESTORE:
        /* Only the outermost pair counts: time in between is not charged. */
        if (io->save_depth > 0 && --io->save_depth == 0)
            io->deadline = atx_add_sat(io->deadline, now - io->saved_at);
        break;
    }
}

static void on_disconnect(void *ud)
{
    ((attempt_io *)ud)->disconnect = true;
}

static void on_reboot(void *ud, int64_t timeout_ns, const char *command)
{
    attempt_io *io = ud;
    io->reboot = true;
    io->reboot_timeout = timeout_ns;
    snprintf(io->reboot_command, sizeof(io->reboot_command), "%s", command);
}

/* The test's own result by its `result` key; what atx ended is left alone. */
static int settle_own(void *ud, const fmf_control *c, json_object *own, int status_from_exit)
{
    attempt_io *io = ud;
    if (io->reboot_failed) {
        /* A reboot that did not happen ends the attempt, whatever the test
         * said of itself before it. */
        json_object *st = json_object_new_string("infra");
        if (!st || json_object_object_add(own, "status", st) < 0) {
            json_object_put(st);
            return -ENOMEM;
        }
        json_object *nt = json_object_new_string(io->note);
        if (!nt || json_object_object_add(own, "note", nt) < 0) {
            json_object_put(nt);
            return -ENOMEM;
        }
        return 0;
    }
    if (io->end != FMF_END_EXITED || fmf_control_error(c))
        return 0;
    return fmf_result_settle(own, io->mode, c, status_from_exit);
}

/* The test's `result` key; a value tmt does not know is named in @p why. */
static fmf_result_mode result_mode(json_object *meta)
{
    json_object *v;
    fmf_result_mode mode = FMF_RESULT_RESPECT;
    /* check_node() made a test with any other value a malformed node. */
    if (json_object_object_get_ex(meta, "result", &v) && json_object_is_type(v, json_type_string))
        fmf_result_mode_parse(json_object_get_string(v), &mode);
    return mode;
}

/* The test's environment: its own (and the plan's), then tmt's and atx's.
 * The plan file's lines are exported by the script itself, which puts the
 * helper programs on its PATH too (env_prelude). */
static char **test_env(const atx_test *t, const char *tree, const char *envfile,
                       const sysdata *sd, int attempt, int reboots, int restarts)
{
    const char *const *base = atx_test_environ(t);
    size_t nb = 0, n = 0;
    char **env;

    while (base && base[nb])
        nb++;
    env = calloc(nb + 15, sizeof(char *));
    if (!env)
        return NULL;
    for (size_t i = 0; i < nb; i++)
        env[n++] = strdup(base[i]);
    if (asprintf(&env[n++], "TMT_TREE=%s", tree) < 0 ||
        asprintf(&env[n++], "TMT_TEST_NAME=%s", atx_test_name(t)) < 0 ||
        asprintf(&env[n++], "TMT_TEST_DATA=%s", sd->data) < 0 ||
        asprintf(&env[n++], "TMT_TEST_METADATA=%s", sd->metadata) < 0 ||
        asprintf(&env[n++], "TMT_PLAN_ENVIRONMENT_FILE=%s", envfile ? envfile : "/dev/null") < 0 ||
        asprintf(&env[n++], "TMT_REBOOT_COUNT=%d", reboots) < 0 ||
        asprintf(&env[n++], "REBOOTCOUNT=%d", reboots) < 0 ||
        asprintf(&env[n++], "RSTRNT_REBOOTCOUNT=%d", reboots) < 0 ||
        asprintf(&env[n++], "TMT_TEST_RESTART_COUNT=%d", restarts) < 0 ||
        asprintf(&env[n++], "ATX_TEST_NAME=%s", atx_test_name(t)) < 0 ||
        asprintf(&env[n++], "ATX_TEST_ATTEMPT=%d", attempt) < 0 ||
        asprintf(&env[n++], "ATX_TEST_SYSTEM=1") < 0 ||
        asprintf(&env[n++], "ATX_FMF_BIN=%s", sd->bin) < 0 ||
        asprintf(&env[n++], "ATEX_TEST_CONTROL=3") < 0)
        env[n - 1] = NULL;
    return env;
}

/* Bash that empties the test's data folder on its first run (a reboot or a
 * restart keeps it), named by its path: not by a variable the test sets. */
static void data_prelude(const sysdata *sd, char *buf, size_t len)
{
    char q[PATH_MAX + 8];
    quote(q, sizeof(q), sd->data);
    snprintf(buf, len, "if [ \"${TMT_TEST_RESTART_COUNT:-0}\" = 0 ]; then rm -rf -- %s; fi; "
             "mkdir -p -- %s\n", q, q);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* rm -rf here (links are removed, not followed). */
static void remove_tree(const char *path)
{
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * The test's TMT_TEST_DATA, copied from the system to <dir>/.tmt-data by
 * the rules for what comes from systems (regular files and folders only,
 * no file over DATA_FILE_MAX, at most the control channel's files and bytes
 * in all: what is past them is left out).
 * @return 0, or what the copy returned (-ELOOP: it is a link; -ENOENT).
 */
static int take_data(fmf_exec *x, atx_system *sys, const sysdata *sd, const char *dir,
                     char *staged, size_t len)
{
    atx_copy_bounds b = ATX_COPY_BOUNDS_INIT;
    b.max_file_bytes = DATA_FILE_MAX;
    b.max_total_bytes = FMF_CONTROL_FILES_BYTES_MAX;
    b.max_entries = FMF_CONTROL_FILES_MAX;
    snprintf(staged, len, "%s/.tmt-data", dir);
    remove_tree(staged);
    int r = atx_system_copy_out_bounded(sys, sd->data, staged, &b);
    if (r == -EFBIG) {
        /* Past a bound: what fit is kept, the rest is said to be left out. */
        atx_plugin_log(x->ctx, ATX_LOG_WARNING, "%s: TMT_TEST_DATA: %s", atx_system_id(sys),
                       atx_error_last()->message);
        return 0;
    }
    if (r < 0) {
        if (r != -ENOENT)
            atx_plugin_log(x->ctx, ATX_LOG_WARNING, "%s: TMT_TEST_DATA not taken: %s",
                           atx_system_id(sys), atx_error_last()->message);
        remove_tree(staged);
    }
    return r;
}

/* The data taken (if any) as the attempt's files/data (data-2, ... if a
 * result has that name). */
static void keep_data(fmf_exec *x, const char *staged, const char *dir)
{
    char to[PATH_MAX + 32];
    if (rmdir(staged) == 0)
        return; /* nothing in it */
    for (int i = 1; i < 100; i++) {
        snprintf(to, sizeof(to), i == 1 ? "%s/files/data" : "%s/files/data-%d", dir, i);
        if (rename(staged, to) == 0)
            return;
        if (errno != EEXIST && errno != ENOTEMPTY && errno != ENOTDIR && errno != EISDIR)
            break;
    }
    atx_plugin_log(x->ctx, ATX_LOG_WARNING, "cannot keep %s as files/data: %s", staged,
                   strerror(errno));
    remove_tree(staged);
}

/*
 * The custom results file the test wrote (results.yaml, else results.json)
 * in our copy of its data, into @p path; or NULL with @p why. One that is
 * not in the copy is asked for alone, to say why: a link, too big.
 */
static const char *custom_file(atx_system *sys, const sysdata *sd, int taken, const char *staged,
                               char *path, size_t len, char *why, size_t wlen)
{
    static const char *const names[] = { "results.yaml", "results.json" };
    struct stat st;

    if (taken < 0) {
        snprintf(why, wlen, "TMT_TEST_DATA %s",
                 taken == -ELOOP    ? "is a symbolic link: not followed"
                 : taken == -ENOENT ? "is not there"
                                    : "could not be taken from the system");
        return NULL;
    }
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, len, "%s/%s", staged, names[i]);
        if (lstat(path, &st) == 0)
            return path;
    }
    for (size_t i = 0; i < 2; i++) {
        char one[PATH_MAX + 32];
        snprintf(one, sizeof(one), "%s/%s", sd->data, names[i]);
        snprintf(path, len, "%s/%s", staged, names[i]);
        int r = atx_system_copy_out_max(sys, one, path, FMF_CUSTOM_FILE_MAX);
        if (r == 0)
            return path;
        if (r == -ELOOP) {
            snprintf(why, wlen, "%s in TMT_TEST_DATA is a symbolic link: not followed", names[i]);
            return NULL;
        }
        if (r == -EFBIG) {
            snprintf(why, wlen, "%s in TMT_TEST_DATA is more than the %u MiB read", names[i],
                     FMF_CUSTOM_FILE_MAX >> 20);
            return NULL;
        }
        if (r != -ENOENT) {
            snprintf(why, wlen, "%s in TMT_TEST_DATA cannot be read: %s", names[i],
                     atx_error_last()->message);
            return NULL;
        }
    }
    snprintf(why, wlen, "no results.yaml or results.json in TMT_TEST_DATA");
    return NULL;
}

/* An atx result from a `results` line. */
static int emit_line(atx_attempt *a, const char *rel, fmf_control *c, size_t i, bool own_extra,
                     const attempt_io *io, int64_t started, int64_t duration, int exit_code,
                     const char *error_type)
{
    const json_object *line = fmf_control_result(c, i);
    const char *name = jstr((json_object *)line, "name");
    const char *status = jstr((json_object *)line, "status");
    const char *note = jstr((json_object *)line, "note");
    const char *const *paths = fmf_control_result_paths(c, i);
    atx_result *r;
    int e;

    if ((e = atx_result_new(atx_test_name(atx_attempt_test(a)), name, &r)) < 0)
        return e;
    atx_result_set_status_word(r, status && *status ? status : "pass");
    if (note)
        atx_result_set_note(r, note);
    for (size_t k = 0; paths && paths[k]; k++) {
        char *p;
        if (asprintf(&p, "%s/%s", rel, paths[k]) >= 0) {
            atx_result_add_file(r, p);
            free(p);
        }
    }
    atx_result_set_times(r, started, duration);
    if (own_extra) {
        if (exit_code >= 0)
            atx_result_set_exit_code(r, exit_code);
        if (error_type)
            atx_result_set_error_type(r, error_type);
        char *data;
        size_t len;
        if (io->cap.total && atx_capture_collect(&io->cap, &data, &len) == 0) {
            atx_result_set_output(r, ATX_STREAM_STDOUT, data, len, io->cap.total);
            free(data);
        }
    }
    return atx_attempt_emit(a, r);
}

/* The one result of a test whose node cannot run (add_broken). */
static int emit_broken(atx_attempt *a, const char *why)
{
    const char *dir = atx_attempt_dir(a, NULL);
    fmf_control *c = NULL;
    atx_result *r;
    int e;

    /* Its attempt folder as every attempt's: the result in `results`, `files/`. */
    if (!dir || (e = fmf_control_new(dir, NULL, &c)) < 0 ||
        (e = fmf_result_feed_own(c, "error", why, false)) < 0) {
        fmf_control_free(c);
        return atx_error_set(ATX_EINFRA, "fmf: cannot write the attempt's results: %s",
                             atx_error_last()->message);
    }
    fmf_control_free(c);
    if ((e = atx_result_new(atx_test_name(atx_attempt_test(a)), NULL, &r)) < 0)
        return e;
    atx_result_set_status(r, ATX_STATUS_ERROR);
    atx_result_set_error_type(r, "metadata");
    atx_result_set_note(r, why);
    atx_result_set_times(r, atx_wallclock_ns(), 0);
    return atx_attempt_emit(a, r);
}

static int fmf_run(void *state, atx_attempt *a)
{
    fmf_exec *x = state;
    const atx_test *t = atx_attempt_test(a);
    atx_system *sys = atx_attempt_system(a);
    sysdata *sd = atx_attempt_system_state(a);
    json_object *spec = json_tokener_parse(atx_test_spec_json(t)), *meta = NULL, *v;
    const char *rel, *dir = atx_attempt_dir(a, &rel);
    char note[1400] = "", why[400] = "";
    attempt_io io = { .out_fd = -1, .exitcode = -1 };
    fmf_end_kind end = FMF_END_EXITED;
    const char *error_type = NULL;
    int r = 0, exit_code = -1;
    bool ran = false;
    char **env = NULL;
    int64_t started = atx_wallclock_ns(), t0 = atx_now_ns();

    if (spec && jstr(spec, "error")) {
        r = emit_broken(a, jstr(spec, "error"));
        json_object_put(spec);
        return r;
    }
    if (!spec || !dir || !sd) {
        json_object_put(spec);
        return atx_error_set(ATX_EINFRA, "fmf: %s", !sd ? "the system was not prepared"
                                                        : atx_error_last()->message);
    }
    size_t pi = (size_t)json_object_get_int(json_object_object_get_ex(spec, "plan", &v) ? v : NULL);
    plan_info *plan = x->plans[pi];
    json_object_object_get_ex(spec, "metadata", &meta);
    io.head = x->keep_head;
    io.tail = x->keep_tail;
    atx_capture_init(&io.cap, io.head < OUTPUT_CAP ? (size_t)io.head : OUTPUT_CAP,
                     io.tail < OUTPUT_CAP ? (size_t)io.tail : OUTPUT_CAP);

    /* tmt's `result` key settles the test's own result when the attempt ends. */
    io.mode = result_mode(meta);
    fmf_control_hooks hooks = { .ud = &io, .exitcode = on_exitcode, .duration = on_duration,
                                .disconnect = on_disconnect, .reboot = on_reboot,
                                .settle = settle_own,
                                .hold_own = 1 };
    if ((r = fmf_control_new(dir, &hooks, &io.control)) < 0)
        goto out;
    /* The same file for every test on the system: a test's output costs
     * no new file (on a file system without a journal, making and removing
     * one per test is what costs most), only the copies its results keep. */
    /* Written over from the start and cut to its length at the end: the
     * file's blocks are reused rather than freed and taken again. */
    io.out_fd = open(sd->output, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    /* JSON is YAML: the resolved metadata for TMT_TEST_METADATA. */
    const char *meta_path = sd->meta_local ? sd->meta_local : sd->metadata;
    if (io.out_fd < 0 ||
        rewrite_file(meta_path, json_object_to_json_string_ext(meta, JSON_C_TO_STRING_PRETTY)) < 0) {
        r = atx_error_set(ATX_EINFRA, "fmf: cannot write in %s: %s", dir, strerror(errno));
        goto out;
    }
    /* Requirements first: a package that cannot be installed is infra. */
    static const char *const kinds[2] = { "require", "recommend" };
    for (int k = 0; k < 2 && r == 0; k++) {
        const char **pkgs;
        size_t n;
        char err[256];
        if (!json_object_object_get_ex(meta, kinds[k], &v))
            continue;
        if (strlist(v, &pkgs, &n, kinds[k], err, sizeof(err)) < 0) {
            snprintf(note, sizeof(note), "%s", err);
            r = ATX_EINFRA;
            break;
        }
        /* Only package names: tmt's library/file requirements are not packages. */
        const char **names = calloc(n + 1, sizeof(char *));
        size_t nn = 0;
        for (size_t i = 0; names && i < n; i++)
            if (!strchr(pkgs[i], '/') && !strchr(pkgs[i], '('))
                names[nn++] = pkgs[i];
        if (names && install(sd, names, nn, k == 0, note, sizeof(note)) < 0)
            r = ATX_EINFRA;
        free(names);
        free(pkgs);
    }
    if (r < 0) {
        end = FMF_END_LOST;
        error_type = "require";
        r = 0;
        goto finish;
    }

    const char *script_src = jstr(meta, "test");
    char *script, data_sh[PATH_MAX * 2 + 128];
    data_prelude(sd, data_sh, sizeof(data_sh));
    if (asprintf(&script, "%s%s%s", env_prelude, data_sh, script_src ? script_src : "false") < 0) {
        r = atx_error_set(ATX_ENOMEM, "out of memory");
        goto out;
    }
    bool tty = json_object_object_get_ex(meta, "tty", &v) && json_object_get_boolean(v);
    /* The node's folder, where the tree is on the system. */
    char cwd[PATH_MAX * 2];
    const char *dir_host = jstr(spec, "dir");
    size_t tlen = strlen(plan->tree);
    if (sd->trees && strncmp(dir_host, plan->tree, tlen) == 0)
        snprintf(cwd, sizeof(cwd), "%s%s", sd->trees[pi], dir_host + tlen);
    else
        snprintf(cwd, sizeof(cwd), "%s", dir_host);
    if (sd->meta_local && atx_system_copy_in(sys, sd->meta_local, sd->metadata) < 0) {
        free(script);
        r = atx_system_lost(sys) ? ATX_ELOST : ATX_EINFRA;
        snprintf(note, sizeof(note), "cannot put the test's metadata on %s: %s",
                 atx_system_id(sys), atx_error_last()->message);
        end = FMF_END_LOST;
        error_type = "lost";
        goto finish;
    }
    int restart_codes[RESTART_CODES_MAX], restart_max;
    size_t nrestart_codes;
    bool restart_reboot;
    char err[200];
    const char *bad_key;
    /* check_node() made a test with bad ones a malformed node. */
    restart_keys(meta, restart_codes, &nrestart_codes, &restart_max, &restart_reboot, &bad_key,
                 err, sizeof(err));
    io.deadline = atx_add_sat(t0, atx_attempt_timeout(a));
    int64_t grace = x->grace_ns > 0 ? x->grace_ns : atx_attempt_kill_grace(a);
    atx_proc_sink sink = { &io, on_output, on_control, NULL };
    atx_proc_outcome res = { 0 };
    bool reboot_failed = false;
    for (int reboots = 0, restarts = 0, by_code = 0;;) {
        const char *argv[] = { "bash", "-c", script, NULL };
        atx_spawn_opts so = ATX_SPAWN_OPTS_INIT;
        atx_proc_run_opts o = ATX_PROC_RUN_OPTS_INIT;
        env = test_env(t, tree_on(sd, x, pi), sd->envfiles[pi],
                       sd, atx_attempt_number(a), reboots, restarts);
        so.argv = argv;
        so.env = (const char *const *)env;
        so.cwd = cwd;
        so.flags = ATX_SPAWN_STDOUT_PIPE | ATX_SPAWN_STDERR_TO_STDOUT | ATX_SPAWN_CONTROL |
                   (tty ? ATX_SPAWN_PTY : 0u);
        so.deadline_ns = io.deadline;
        so.kill_grace_ns = grace;
        o.sink = &sink;
        o.deadline_ns = &io.deadline;
        o.grace_ns = grace;
        o.cancel_fd = atx_attempt_cancel_fd(a);
        o.cancel_level = atx_attempt_cancel_level;
        o.cancel_ud = a;
        io.disconnect = io.reboot = io.control_closed = false;
        io.exitcode = -1;
        memset(&res, 0, sizeof(res));
        r = atx_proc_run_spawn(sys, &so, &o, &res);
        strv_free(env);
        env = NULL;
        if (io.protocol_error || res.exit.timed_out || res.interrupted || res.abandoned)
            break;
        /* A reboot: tmt-reboot (the test was stopped for it), or ATEX's
         * `disconnect` (the test reboots the system itself: the connection
         * may drop under it, its exit status does not count). Else tmt's
         * restart-on-exit-code: a system lost under the test counts as exit
         * code 255, as ssh says it to tmt (a test that panics the kernel). */
        bool asked = io.reboot || io.disconnect, restart = false;
        if (!asked && (r == 0 || r == ATX_ELOST) && by_code < restart_max) {
            int code = r == ATX_ELOST ? 255
                       : io.exitcode >= 0 ? io.exitcode
                       : res.exit.exited ? res.exit.code : -1;
            for (size_t k = 0; k < nrestart_codes && !restart; k++)
                restart = restart_codes[k] == code;
        }
        if ((!asked && !restart) || (res.aborted && !io.reboot) ||
            (r < 0 && !(r == ATX_ELOST && (asked || restart))))
            break;
        /* This run's control stream ended: one cut inside a line or a
         * payload is a protocol error, not the start of the next run's. */
        if (fmf_control_stream_end(io.control) < 0) {
            io.protocol_error = true;
            r = 0;
            break;
        }
        if (asked && reboots >= MAX_REBOOTS) {
            snprintf(note, sizeof(note), "the test asked for more than %d reboots", MAX_REBOOTS);
            reboot_failed = true;
            r = 0;
            break;
        }
        /* tmt-reboot, disconnect, restart-with-reboot: a reboot. A restart
         * of a system that went away (a panic): wait for it to be back. */
        if (asked || restart_reboot || r == ATX_ELOST) {
            atx_reboot_req rq = ATX_REBOOT_REQ_INIT;
            int64_t before = atx_now_ns();
            rq.started = io.disconnect || r == ATX_ELOST;
            rq.command = io.reboot && *io.reboot_command ? io.reboot_command : NULL;
            /* ATEX waits for the system while the test's time lasts; tmt
             * gives a reboot its own time, which the test is not charged. */
            rq.deadline_ns = io.disconnect ? io.deadline
                                           : atx_add_sat(before, io.reboot && io.reboot_timeout
                                                                     ? io.reboot_timeout
                                                                     : x->reboot_timeout);
            rq.cancel_fd = atx_attempt_cancel_fd(a);
            if ((r = atx_system_reboot(sys, &rq)) == ATX_EUNSUPPORTED) {
                snprintf(note, sizeof(note), "%s: %s",
                         asked             ? "the test asked for a reboot"
                         : restart_reboot ? "restart-with-reboot after its exit code"
                                           : "the system went away under the test (a restart "
                                             "on exit code 255 waits for it)",
                         atx_error_last()->message);
                reboot_failed = true;
                r = 0;
                break;
            }
            if (r < 0) {
                /* Not back: the system is lost, the orchestrator replaces
                 * it and says why. */
                snprintf(note, sizeof(note), "%s", atx_error_last()->message);
                reboot_failed = true;
                break;
            }
            if (!io.disconnect)
                io.deadline = atx_add_sat(io.deadline, atx_now_ns() - before);
            if ((r = restage(x, sd)) < 0) {
                snprintf(note, sizeof(note), "cannot put the test's files on %s again after "
                         "its reboot: %s", atx_system_id(sys), atx_error_last()->message);
                reboot_failed = true;
                break;
            }
            if (asked || restart_reboot)
                reboots++;
        }
        if (restart)
            by_code++;
        restarts++;
    }
    free(script);
    ran = true;
    if (reboot_failed) {
        io.reboot_failed = true;
        io.note = note;
        end = FMF_END_LOST;
        error_type = r == 0 ? "reboot" : "lost";
        if (r < 0)
            atx_error_set(r, "%s", note);
    } else if (r == ATX_ESPAWN) {
        snprintf(note, sizeof(note), "cannot start the test: %s", atx_error_last()->message);
        end = FMF_END_LOST;
        error_type = "spawn";
        r = 0;
    } else if (r < 0 || res.abandoned) {
        snprintf(note, sizeof(note), "lost the system %s during the test: %s", atx_system_id(sys),
                 res.abandoned ? "its processes did not end after SIGKILL"
                               : atx_error_last()->message);
        end = FMF_END_LOST;
        error_type = "lost";
        if (r == 0)
            r = atx_error_set(ATX_EINFRA, "%s", note);
    } else if (res.exit.timed_out) {
        char secs[32];
        int64_t limit = atx_add_sat(io.deadline, -t0);
        atx_text_seconds(limit < 0 ? 0 : limit, secs);
        snprintf(note, sizeof(note), "timed out after %ss; the process tree was killed", secs);
        end = FMF_END_TIMEOUT;
        error_type = "timeout";
    } else if (res.interrupted) {
        snprintf(note, sizeof(note), "interrupted: the run was cancelled and the test killed");
        end = FMF_END_INTERRUPTED;
        error_type = "interrupted";
    } else if (io.protocol_error) {
        error_type = "protocol";
    }
    exit_code = res.exit.exited ? res.exit.code : -1;
    if (io.exitcode >= 0 && !res.exit.timed_out && !res.interrupted)
        exit_code = io.exitcode;

finish:;
    int r2;
    /* The output file holds this test's output (its head and tail) and no more. */
    if ((r2 = keep_output_end(&io)) < 0)
        atx_plugin_log(x->ctx, ATX_LOG_WARNING, "cannot put the tail of %s in order: %s", sd->output,
                       strerror(-r2));
    if (io.out_fd >= 0 && ftruncate(io.out_fd, (off_t)io.written) < 0)
        atx_plugin_log(x->ctx, ATX_LOG_WARNING, "cannot cut %s: %s", sd->output, strerror(errno));
    /* TMT_TEST_DATA, from a system still there; then custom results from it. */
    char staged[PATH_MAX];
    int taken = ran && (end == FMF_END_EXITED || end == FMF_END_TIMEOUT)
                    ? take_data(x, sys, sd, dir, staged, sizeof(staged))
                    : -ENOENT;
    io.end = end;
    if (io.mode == FMF_RESULT_CUSTOM && ran && end == FMF_END_EXITED &&
        fmf_control_stream_end(io.control) == 0 && !fmf_control_error(io.control)) {
        char path[PATH_MAX + 32];
        const char *file =
            custom_file(sys, sd, taken, staged, path, sizeof(path), why, sizeof(why));
        if (fmf_result_custom(io.control, file, staged, why) == -ENOMEM && r == 0)
            r = atx_error_set(ATX_ENOMEM, "out of memory");
    }
    int fr = fmf_control_finish(io.control, exit_code, end, *note ? note : NULL, sd->output);
    int64_t duration = atx_now_ns() - t0;
    if (fr < 0 && r == 0)
        r = fr;
    /* Results as the `results` file has them; the test's own gets the exit
     * code, the output and what ended it. */
    size_t n = fmf_control_result_count(io.control);
    bool own_seen = false;
    for (size_t i = 0; i < n; i++) {
        bool own = !jstr((json_object *)fmf_control_result(io.control, i), "name");
        int e = emit_line(a, rel, io.control, i, own && !own_seen, &io, started, duration,
                          exit_code, own ? error_type : NULL);
        own_seen = own_seen || own;
        if (e < 0 && r == 0)
            r = e;
    }
    if (taken == 0)
        keep_data(x, staged, dir);
out:
    if (io.out_fd >= 0)
        close(io.out_fd);
    fmf_control_free(io.control);
    atx_capture_release(&io.cap);
    strv_free(env);
    json_object_put(spec);
    return r;
}

static const atx_executor_vtable fmf_vtable = {
    .version = ATX_EXECUTOR_VTABLE_VERSION,
    .create = fmf_create,
    .destroy = fmf_destroy,
    .check = fmf_check,
    .prepare = NULL,
    .run = fmf_run,
    .discover = fmf_discover,
    .finish = NULL,
    .prepare_system = fmf_prepare,
    .release_system = fmf_finish,
};

ATX_PLUGIN_DEFINE(ATX_PLUGIN_EXECUTOR, "fmf", ATX_VERSION_STRING,
                  "Runs fmf/tmt test trees with ATEX-compatible test control", &fmf_vtable)
