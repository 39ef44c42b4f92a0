/* Plan files: JSON into a run. Errors name the file and the key. */
#include "orch.h"

#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct plan_ctx {
    atx_run *run;
    const char *origin;
    char basedir[PATH_MAX];
} plan_ctx;

static int fail(const plan_ctx *pc, int code, const char *where, const char *fmt, ...)
    ATX_PRINTF(4, 5);
static int fail(const plan_ctx *pc, int code, const char *where, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return atx_error_set(code, "%s: %s%s%s", pc->origin, where ? where : "", where ? ": " : "",
                         msg);
}

static bool one_of(const char *key, const char *const *keys)
{
    for (size_t i = 0; keys[i]; i++)
        if (strcmp(key, keys[i]) == 0)
            return true;
    return false;
}

/* A duration value: a number of seconds or a duration string. */
static int get_duration(const plan_ctx *pc, const char *where, const char *key,
                        json_object *v, int64_t *out)
{
    if (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)) {
        int64_t ns = atx_seconds_ns(json_object_get_double(v));
        if (ns < 0)
            return fail(pc, ATX_EINVAL, where, "'%s' must not be negative", key);
        *out = ns;
        return 0;
    }
    if (json_object_is_type(v, json_type_string)) {
        if (atx_duration_parse(json_object_get_string(v), out) < 0)
            return fail(pc, ATX_EINVAL, where, "'%s': %s", key, atx_error_last()->message);
        return 0;
    }
    return fail(pc, ATX_EINVAL, where, "'%s' must be a duration like \"90s\" or \"5m\"", key);
}

static int get_int(const plan_ctx *pc, const char *where, const char *key, json_object *v,
                   int min, int *out)
{
    if (!json_object_is_type(v, json_type_int))
        return fail(pc, ATX_EINVAL, where, "'%s' must be an integer", key);
    int64_t n = json_object_get_int64(v);
    if (n < min || n > INT_MAX)
        return fail(pc, ATX_EINVAL, where, "'%s' is out of range", key);
    *out = (int)n;
    return 0;
}

/* {"plugin": NAME, ...config}: the config is the object without "plugin". */
static int add_plugin(const plan_ctx *pc, json_object *entry, const char *section, size_t i,
                      int (*add)(atx_run *, const char *, const char *))
{
    char where[64];
    json_object *name, *config;
    int r;

    snprintf(where, sizeof(where), "%s[%zu]", section, i);
    if (!json_object_is_type(entry, json_type_object))
        return fail(pc, ATX_EINVAL, where, "must be an object");
    if (!json_object_object_get_ex(entry, "plugin", &name) ||
        !json_object_is_type(name, json_type_string))
        return fail(pc, ATX_EINVAL, where, "needs \"plugin\": a plugin name");
    config = json_object_new_object();
    if (!config)
        return atx_error_oom();
    json_object_object_foreach(entry, k, v) {
        if (strcmp(k, "plugin") != 0)
            json_object_object_add(config, k, json_object_get(v));
    }
    r = add(pc->run, json_object_get_string(name),
            json_object_to_json_string_ext(config, JSON_C_TO_STRING_PLAIN));
    json_object_put(config);
    if (r < 0)
        return fail(pc, r, where, "%s", atx_error_last()->message);
    return 0;
}

static const char *const test_keys[] = {
    "name", "executor", "timeout", "duration", "requires", "priority", "reruns",
    "destructive", "environment", NULL,
};

static int add_test(const plan_ctx *pc, json_object *e, size_t i)
{
    char where[64];
    json_object *v, *spec = NULL;
    const char *name, *executor = "exec";
    atx_test *t = NULL;
    int r = 0;

    snprintf(where, sizeof(where), "tests[%zu]", i);
    if (!json_object_is_type(e, json_type_object))
        return fail(pc, ATX_EINVAL, where, "must be an object");
    if (!json_object_object_get_ex(e, "name", &v) && json_object_object_get_ex(e, "executor", &v)) {
        /* No name: a source of tests for its executor (an fmf tree, ...). */
        json_object *src = json_object_new_object();
        json_object_object_foreach(e, key, val) {
            if (strcmp(key, "executor") != 0)
                json_object_object_add(src, key, json_object_get(val));
        }
        r = atx_run_discover(pc->run, json_object_get_string(v),
                             json_object_to_json_string_ext(src, JSON_C_TO_STRING_PLAIN),
                             pc->basedir);
        json_object_put(src);
        return r < 0 ? fail(pc, r, where, "%s", atx_error_last()->message) : 0;
    }
    if (!json_object_object_get_ex(e, "name", &v) || !json_object_is_type(v, json_type_string) ||
        !*json_object_get_string(v))
        return fail(pc, ATX_EINVAL, where, "needs \"name\": a non-empty string");
    name = json_object_get_string(v);
    if (json_object_object_get_ex(e, "executor", &v)) {
        if (!json_object_is_type(v, json_type_string))
            return fail(pc, ATX_EINVAL, where, "'executor' must be a plugin name");
        executor = json_object_get_string(v);
    }
    snprintf(where, sizeof(where), "test %s", name);
    if ((r = atx_test_new(name, executor, &t)) < 0)
        return fail(pc, r, where, "%s", atx_error_last()->message);
    spec = json_object_new_object();
    if (!spec) {
        r = atx_error_oom();
        goto out;
    }
    json_object_object_foreach(e, key, val) {
        int64_t ns;
        int n = 0;
        if (!one_of(key, test_keys)) {
            /* Executor-specific: the executor checks these. */
            json_object_object_add(spec, key, json_object_get(val));
        } else if (strcmp(key, "timeout") == 0) {
            if ((r = get_duration(pc, where, key, val, &ns)) < 0 ||
                (r = atx_test_set_timeout(t, ns > 0 ? ns : 1)) < 0)
                goto out;
        } else if (strcmp(key, "duration") == 0) {
            if ((r = get_duration(pc, where, key, val, &ns)) < 0 ||
                (r = atx_test_set_duration(t, ns)) < 0)
                goto out;
        } else if (strcmp(key, "priority") == 0) {
            if ((r = get_int(pc, where, key, val, INT_MIN, &n)) < 0)
                goto out;
            atx_test_set_priority(t, n);
        } else if (strcmp(key, "reruns") == 0) {
            if ((r = get_int(pc, where, key, val, 0, &n)) < 0)
                goto out;
            atx_test_set_reruns(t, n);
        } else if (strcmp(key, "destructive") == 0) {
            if (!json_object_is_type(val, json_type_boolean)) {
                r = fail(pc, ATX_EINVAL, where, "'destructive' must be true or false");
                goto out;
            }
            atx_test_set_destructive(t, json_object_get_boolean(val));
        } else if (strcmp(key, "requires") == 0 || strcmp(key, "environment") == 0) {
            bool req = key[0] == 'r';
            if (!json_object_is_type(val, json_type_object)) {
                r = fail(pc, ATX_EINVAL, where, "'%s' must be an object of strings", key);
                goto out;
            }
            json_object_object_foreach(val, k2, v2) {
                if (!json_object_is_type(v2, json_type_string)) {
                    r = fail(pc, ATX_EINVAL, where, "'%s.%s' must be a string", key, k2);
                    goto out;
                }
                r = req ? atx_test_require(t, k2, json_object_get_string(v2))
                        : atx_test_setenv(t, k2, json_object_get_string(v2));
                if (r < 0) {
                    r = fail(pc, r, where, "'%s.%s': %s", key, k2, atx_error_last()->message);
                    goto out;
                }
            }
        }
    }
    /* Where the plan is: executors resolve the test's relative paths against
     * it on systems that share this host's files. */
    json_object_object_add(spec, "basedir", json_object_new_string(pc->basedir));
    if ((r = atx_test_set_spec_json(t, json_object_to_json_string_ext(spec, JSON_C_TO_STRING_PLAIN))) < 0)
        goto out;
    r = atx_run_add_test(pc->run, t);
    t = NULL;
    if (r < 0)
        r = fail(pc, r, NULL, "%s", atx_error_last()->message);
out:
    json_object_put(spec);
    atx_test_free(t);
    return r;
}

static int load_policy(const plan_ctx *pc, json_object *o)
{
    atx_policy p = *atx_run_policy(pc->run);
    int64_t ns;
    int r;

    if (!json_object_is_type(o, json_type_object))
        return fail(pc, ATX_EINVAL, "policy", "must be an object");
    json_object_object_foreach(o, key, val) {
        const struct {
            const char *key;
            int64_t *ns;
        } durations[] = {
            { "timeout", &p.timeout_ns },
            { "deadline", &p.deadline_ns },
            { "kill_grace", &p.kill_grace_ns },
            { "reserve_timeout", &p.reserve_timeout_ns },
            { "prepare_timeout", &p.prepare_timeout_ns },
            { "release_timeout", &p.release_timeout_ns },
            { "liveness_timeout", &p.liveness_timeout_ns },
            { "liveness_interval", &p.liveness_interval_ns },
        };
        size_t d = 0;
        while (d < ATX_ARRAY_SIZE(durations) && strcmp(key, durations[d].key) != 0)
            d++;
        if (strcmp(key, "mask_env") == 0) {
            if (!json_object_is_type(val, json_type_array))
                return fail(pc, ATX_EINVAL, "policy", "mask_env must be a list of variable names");
            for (size_t i = 0; i < json_object_array_length(val); i++) {
                json_object *n = json_object_array_get_idx(val, i);
                if (!json_object_is_type(n, json_type_string) ||
                    atx_run_mask_env(pc->run, json_object_get_string(n)) < 0)
                    return fail(pc, ATX_EINVAL, "policy",
                                "mask_env must be a list of variable names");
            }
        } else if (strcmp(key, "reruns") == 0) {
            if ((r = get_int(pc, "policy", key, val, 0, &p.reruns)) < 0)
                return r;
        } else if (strcmp(key, "max_running") == 0) {
            if ((r = get_int(pc, "policy", key, val, 0, &p.max_running)) < 0)
                return r;
        } else if (d < ATX_ARRAY_SIZE(durations)) {
            if ((r = get_duration(pc, "policy", key, val, &ns)) < 0)
                return r;
            *durations[d].ns = ns;
        } else {
            return fail(pc, ATX_EINVAL, "policy", "unknown key '%s'", key);
        }
    }
    return atx_run_set_policy(pc->run, &p);
}

/* "quarantine": FILE, relative to the plan's folder. */
static int load_quarantine(const plan_ctx *pc, json_object *v)
{
    char path[PATH_MAX * 2];
    const char *file = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";

    if (!*file)
        return fail(pc, ATX_EINVAL, NULL, "'quarantine' must be a file name");
    snprintf(path, sizeof(path), "%s%s%s", file[0] == '/' ? "" : pc->basedir,
             file[0] == '/' ? "" : "/", file);
    int r = atx_run_set_quarantine(pc->run, path);
    return r < 0 ? fail(pc, r, NULL, "%s", atx_error_last()->message) : 0;
}

static int load(plan_ctx *pc, json_object *root)
{
    static const char *const top_keys[] = { "provisioners", "executors", "tests", "aggregators",
                                            "policy", "quarantine", NULL };
    json_object *v;
    int r;

    if (!json_object_is_type(root, json_type_object))
        return fail(pc, ATX_EPARSE, NULL, "a plan is a JSON object");
    json_object_object_foreach(root, key, val) {
        (void)val;
        if (!one_of(key, top_keys))
            return fail(pc, ATX_EINVAL, NULL, "unknown key '%s'", key);
    }
    if (!json_object_object_get_ex(root, "tests", &v) || !json_object_is_type(v, json_type_array))
        return fail(pc, ATX_EINVAL, NULL, "needs \"tests\": a list");
    if (json_object_object_get_ex(root, "policy", &v) && (r = load_policy(pc, v)) < 0)
        return r;
    if (json_object_object_get_ex(root, "quarantine", &v) && (r = load_quarantine(pc, v)) < 0)
        return r;
    static const char *const sections[] = { "provisioners", "aggregators", "executors" };
    int (*const add[])(atx_run *, const char *, const char *) = {
        atx_run_add_provisioner, atx_run_add_aggregator, atx_run_add_executor
    };
    for (int s = 0; s < 3; s++) {
        if (!json_object_object_get_ex(root, sections[s], &v))
            continue;
        if (!json_object_is_type(v, json_type_array))
            return fail(pc, ATX_EINVAL, sections[s], "must be a list");
        for (size_t i = 0; i < json_object_array_length(v); i++)
            if ((r = add_plugin(pc, json_object_array_get_idx(v, i), sections[s], i, add[s])) < 0)
                return r;
    }
    json_object_object_get_ex(root, "tests", &v);
    for (size_t i = 0; i < json_object_array_length(v); i++) {
        if ((r = add_test(pc, json_object_array_get_idx(v, i), i)) < 0)
            return r;
        /* The test has its own copy now: free its JSON as we go, so a big
         * plan's tree and its tests are not both held whole. */
        json_object_array_put_idx(v, i, NULL);
    }
    return 0;
}

int atx_plan_load_string(atx_run *run, const char *json, const char *origin, const char *basedir)
{
    plan_ctx pc = { .run = run, .origin = origin ? origin : "plan" };
    json_tokener *tok;
    json_object *root;
    int r;

    if (!run || !json)
        return atx_error_set(ATX_EINVAL, "no run or plan text");
    if (basedir && basedir[0] == '/') {
        snprintf(pc.basedir, sizeof(pc.basedir), "%s", basedir);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof(cwd)))
            return atx_error_set(-errno, "cannot read the current directory");
        if (basedir && *basedir && strcmp(basedir, ".") != 0)
            snprintf(pc.basedir, sizeof(pc.basedir), "%s/%s", cwd, basedir);
        else
            snprintf(pc.basedir, sizeof(pc.basedir), "%s", cwd);
    }
    tok = json_tokener_new();
    if (!tok)
        return atx_error_oom();
    root = json_tokener_parse_ex(tok, json, (int)strlen(json));
    enum json_tokener_error je = json_tokener_get_error(tok);
    if (!root || je != json_tokener_success) {
        /* Say where: count lines up to the parser's offset. */
        size_t off = json_tokener_get_parse_end(tok), line = 1;
        for (size_t i = 0; i < off && json[i]; i++)
            line += json[i] == '\n';
        r = fail(&pc, ATX_EPARSE, NULL, "line %zu: not valid JSON (%s)", line,
                 root ? "trailing data" : json_tokener_error_desc(je));
        json_object_put(root);
        json_tokener_free(tok);
        return r;
    }
    json_tokener_free(tok);
    r = load(&pc, root);
    json_object_put(root);
    return r;
}

int atx_plan_load_file(atx_run *run, const char *path)
{
    FILE *f;
    char *text = NULL, *dir, *slash;
    size_t len = 0;
    int r;

    if (!run || !path)
        return atx_error_set(ATX_EINVAL, "no run or plan path");
    f = fopen(path, "re");
    if (!f)
        return atx_error_set(-errno, "%s: cannot open the plan: %s", path, strerror(errno));
    /* Read it whole: plans are small, even with 100,000 tests (tens of MB). */
    size_t cap = 0;
    for (;;) {
        if (len + 65536 + 1 > cap) {
            cap = cap ? cap * 2 : 131072;
            char *t = realloc(text, cap);
            if (!t) {
                free(text);
                fclose(f);
                return atx_error_oom();
            }
            text = t;
        }
        size_t n = fread(text + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
    }
    bool err = ferror(f);
    fclose(f);
    if (err) {
        free(text);
        return atx_error_set(ATX_EIO, "%s: cannot read the plan", path);
    }
    text[len] = '\0';
    if (strlen(text) != len) {
        free(text);
        return atx_error_set(ATX_EPARSE, "%s: the plan holds a NUL byte", path);
    }
    dir = strdup(path);
    if (!dir) {
        free(text);
        return atx_error_oom();
    }
    slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    r = atx_plan_load_string(run, text, path, slash ? dir : ".");
    free(dir);
    free(text);
    return r;
}
