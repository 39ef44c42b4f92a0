/* The test model. */
#include "internal.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

struct atx_test {
    char *name;
    char *executor;
    char *spec;            /* compact JSON object text */
    int64_t duration_ns;
    int64_t timeout_ns;
    atx_labels *requires;
    int priority;
    int reruns;
    int destructive;
    char **env;            /* NULL-terminated "K=V" */
    size_t nenv;
};

int atx_test_new(const char *name, const char *executor, atx_test **out)
{
    atx_test *t;

    if (!name || !*name)
        return atx_error_set(ATX_EINVAL, "a test needs a name");
    if (!executor || !*executor)
        return atx_error_set(ATX_EINVAL, "test %s needs an executor", name);
    if (!out)
        return atx_error_set(ATX_EINVAL, "no output pointer");
    t = calloc(1, sizeof(*t));
    if (!t)
        return atx_error_oom();
    t->timeout_ns = ATX_TEST_INHERIT;
    t->reruns = ATX_TEST_INHERIT;
    t->env = calloc(1, sizeof(*t->env));
    if (!t->env || atx_strdup_into(&t->name, name) < 0 ||
        atx_strdup_into(&t->executor, executor) < 0 || atx_strdup_into(&t->spec, "{}") < 0 ||
        atx_labels_new(&t->requires) < 0) {
        atx_test_free(t);
        return atx_error_oom();
    }
    *out = t;
    return 0;
}

void atx_test_free(atx_test *t)
{
    if (!t)
        return;
    free(t->name);
    free(t->executor);
    free(t->spec);
    atx_labels_free(t->requires);
    atx_strv_free(t->env);
    free(t);
}

int atx_test_set_spec_json(atx_test *t, const char *json)
{
    json_tokener *tok;
    json_object *o;
    int r = 0;

    if (!t || !json)
        return atx_error_set(ATX_EINVAL, "no spec given");
    tok = json_tokener_new();
    if (!tok)
        return atx_error_oom();
    o = json_tokener_parse_ex(tok, json, (int)strlen(json));
    if (!o || json_tokener_get_error(tok) != json_tokener_success) {
        r = atx_error_set(ATX_EPARSE, "test %s: spec is not JSON: %s", t->name,
                          json_tokener_error_desc(json_tokener_get_error(tok)));
    } else if (!json_object_is_type(o, json_type_object)) {
        r = atx_error_set(ATX_EPARSE, "test %s: spec must be a JSON object", t->name);
    } else {
        r = atx_strdup_into(&t->spec, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    }
    json_object_put(o);
    json_tokener_free(tok);
    return r;
}

int atx_test_set_command(atx_test *t, const char *const *argv)
{
    json_object *spec, *cmd;
    int r;

    if (!t || !argv || !argv[0])
        return atx_error_set(ATX_EINVAL, "a command needs at least a program");
    spec = json_object_new_object();
    cmd = json_object_new_array();
    if (!spec || !cmd) {
        json_object_put(spec);
        json_object_put(cmd);
        return atx_error_oom();
    }
    for (size_t i = 0; argv[i]; i++)
        json_object_array_add(cmd, json_object_new_string(argv[i]));
    json_object_object_add(spec, "command", cmd);
    r = atx_strdup_into(&t->spec, json_object_to_json_string_ext(spec, JSON_C_TO_STRING_PLAIN));
    json_object_put(spec);
    return r;
}

int atx_test_set_duration(atx_test *t, int64_t ns)
{
    if (!t || ns < 0)
        return atx_error_set(ATX_EINVAL, "a duration is not negative");
    t->duration_ns = ns > ATX_DURATION_MAX ? ATX_DURATION_MAX : ns;
    return 0;
}

int atx_test_set_timeout(atx_test *t, int64_t ns)
{
    if (!t || (ns <= 0 && ns != ATX_TEST_INHERIT))
        return atx_error_set(ATX_EINVAL, "a timeout is positive");
    t->timeout_ns = ns > ATX_DURATION_MAX ? ATX_DURATION_MAX : ns;
    return 0;
}

int atx_test_require(atx_test *t, const char *key, const char *value)
{
    return t ? atx_labels_set(t->requires, key, value) : ATX_EINVAL;
}

int atx_test_set_priority(atx_test *t, int priority)
{
    if (!t)
        return ATX_EINVAL;
    t->priority = priority;
    return 0;
}

int atx_test_set_reruns(atx_test *t, int reruns)
{
    if (!t || (reruns < 0 && reruns != ATX_TEST_INHERIT))
        return atx_error_set(ATX_EINVAL, "reruns are not negative");
    t->reruns = reruns;
    return 0;
}

int atx_test_set_destructive(atx_test *t, int destructive)
{
    if (!t)
        return ATX_EINVAL;
    t->destructive = destructive ? 1 : 0;
    return 0;
}

int atx_test_setenv(atx_test *t, const char *key, const char *value)
{
    size_t klen;
    char *kv;

    if (!t || !key || !*key || strchr(key, '=') || !value)
        return atx_error_set(ATX_EINVAL, "bad environment variable name '%s'", key ? key : "");
    klen = strlen(key);
    if (asprintf(&kv, "%s=%s", key, value) < 0)
        return atx_error_oom();
    for (size_t i = 0; i < t->nenv; i++) {
        if (strncmp(t->env[i], key, klen) == 0 && t->env[i][klen] == '=') {
            free(t->env[i]);
            t->env[i] = kv;
            return 0;
        }
    }
    char **env = realloc(t->env, (t->nenv + 2) * sizeof(*env));
    if (!env) {
        free(kv);
        return atx_error_oom();
    }
    env[t->nenv++] = kv;
    env[t->nenv] = NULL;
    t->env = env;
    return 0;
}

const char *atx_test_name(const atx_test *t) { return t ? t->name : NULL; }
const char *atx_test_executor(const atx_test *t) { return t ? t->executor : NULL; }
const char *atx_test_spec_json(const atx_test *t) { return t ? t->spec : NULL; }
int64_t atx_test_duration(const atx_test *t) { return t ? t->duration_ns : 0; }
int64_t atx_test_timeout(const atx_test *t) { return t ? t->timeout_ns : ATX_TEST_INHERIT; }
const atx_labels *atx_test_requires(const atx_test *t) { return t ? t->requires : NULL; }
int atx_test_priority(const atx_test *t) { return t ? t->priority : 0; }
int atx_test_reruns(const atx_test *t) { return t ? t->reruns : ATX_TEST_INHERIT; }
int atx_test_destructive(const atx_test *t) { return t ? t->destructive : 0; }
const char *const *atx_test_environ(const atx_test *t)
{
    return t ? (const char *const *)t->env : NULL;
}
