/* What a plugin instance receives from its host: configuration and logging. */
#include "../framework/src/internal.h"

#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct atx_plugin_ctx {
    char *name;
    json_object *config;
    char *results_dir;
    void *userdata;
    atx_log_fn log;
    void *log_ud;
    atx_log_level level;
    atx_secrets *secrets;   /* the run's, or NULL */
    const atx_changes **changes; /* where the run keeps its comparison, or NULL */
};

int atx_plugin_ctx_new(const char *name, const char *config_json, const char *results_dir,
                       void *userdata, atx_log_fn log, void *log_ud, atx_log_level level,
                       atx_plugin_ctx **out)
{
    atx_plugin_ctx *c = calloc(1, sizeof(*c));
    int r;

    if (!c)
        return atx_error_oom();
    c->userdata = userdata;
    c->log = log;
    c->log_ud = log_ud;
    c->level = level;
    if ((r = atx_strdup_into(&c->name, name)) < 0 ||
        (r = atx_strdup_into(&c->results_dir, results_dir)) < 0)
        goto fail;
    if (config_json && *config_json) {
        json_tokener *tok = json_tokener_new();
        if (!tok) {
            r = atx_error_oom();
            goto fail;
        }
        c->config = json_tokener_parse_ex(tok, config_json, (int)strlen(config_json));
        enum json_tokener_error je = json_tokener_get_error(tok);
        json_tokener_free(tok);
        if (!c->config || je != json_tokener_success) {
            r = atx_error_set(ATX_EPARSE, "%s: configuration is not JSON: %s", name,
                              json_tokener_error_desc(je));
            goto fail;
        }
        if (!json_object_is_type(c->config, json_type_object)) {
            r = atx_error_set(ATX_EPARSE, "%s: configuration must be a JSON object", name);
            goto fail;
        }
    } else {
        c->config = json_object_new_object();
        if (!c->config) {
            r = atx_error_oom();
            goto fail;
        }
    }
    *out = c;
    return 0;
fail:
    atx_plugin_ctx_free(c);
    return r;
}

void atx_plugin_ctx_free(atx_plugin_ctx *c)
{
    if (!c)
        return;
    json_object_put(c->config);
    free(c->name);
    free(c->results_dir);
    free(c);
}

const struct json_object *atx_plugin_ctx_config(const atx_plugin_ctx *c) { return c ? c->config : NULL; }
const char *atx_plugin_ctx_name(const atx_plugin_ctx *c) { return c ? c->name : NULL; }
const char *atx_plugin_ctx_results_dir(const atx_plugin_ctx *c) { return c ? c->results_dir : NULL; }
void *atx_plugin_ctx_userdata(const atx_plugin_ctx *c) { return c ? c->userdata : NULL; }

void atx_plugin_log(const atx_plugin_ctx *c, atx_log_level level, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;

    if (!c || !c->log || level > c->level)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    c->log(c->log_ud, level, c->name, msg);
}

static json_object *get(const atx_plugin_ctx *c, const char *key)
{
    json_object *v = NULL;

    if (c && c->config && json_object_object_get_ex(c->config, key, &v) &&
        !json_object_is_type(v, json_type_null))
        return v;
    return NULL;
}

int atx_plugin_config_string(const atx_plugin_ctx *c, const char *key, const char **out)
{
    json_object *v = get(c, key);

    if (!v)
        return 0;
    if (!json_object_is_type(v, json_type_string))
        return atx_error_set(ATX_EINVAL, "%s: '%s' must be a string", c->name, key);
    *out = json_object_get_string(v);
    return 0;
}

int atx_plugin_config_int(const atx_plugin_ctx *c, const char *key, int64_t *out)
{
    json_object *v = get(c, key);

    if (!v)
        return 0;
    if (!json_object_is_type(v, json_type_int))
        return atx_error_set(ATX_EINVAL, "%s: '%s' must be an integer", c->name, key);
    *out = json_object_get_int64(v);
    return 0;
}

int atx_plugin_config_bool(const atx_plugin_ctx *c, const char *key, int *out)
{
    json_object *v = get(c, key);

    if (!v)
        return 0;
    if (!json_object_is_type(v, json_type_boolean))
        return atx_error_set(ATX_EINVAL, "%s: '%s' must be true or false", c->name, key);
    *out = json_object_get_boolean(v) ? 1 : 0;
    return 0;
}

int atx_plugin_config_duration(const atx_plugin_ctx *c, const char *key, int64_t *out)
{
    json_object *v = get(c, key);

    if (!v)
        return 0;
    if (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)) {
        int64_t ns = atx_seconds_ns(json_object_get_double(v));
        if (ns < 0)
            return atx_error_set(ATX_EINVAL, "%s: '%s' must not be negative", c->name, key);
        *out = ns;
        return 0;
    }
    if (json_object_is_type(v, json_type_string)) {
        int64_t ns;
        if (atx_duration_parse(json_object_get_string(v), &ns) < 0)
            return atx_error_set(ATX_EINVAL, "%s: '%s': %s", c->name, key,
                                 atx_error_last()->message);
        *out = ns;
        return 0;
    }
    return atx_error_set(ATX_EINVAL, "%s: '%s' must be a duration", c->name, key);
}

int atx_plugin_config_check_keys(const atx_plugin_ctx *c, const char *const *known)
{
    if (!c || !c->config)
        return 0;
    json_object_object_foreach(c->config, key, val) {
        bool ok = false;
        (void)val;
        for (size_t i = 0; known && known[i] && !ok; i++)
            ok = strcmp(known[i], key) == 0;
        if (!ok)
            return atx_error_set(ATX_EINVAL, "%s: unknown configuration key '%s'", c->name, key);
    }
    return 0;
}

void atx_plugin_ctx_set_secrets(atx_plugin_ctx *ctx, atx_secrets *secrets)
{
    if (ctx)
        ctx->secrets = secrets;
}

int atx_plugin_ctx_add_secret(atx_plugin_ctx *ctx, const char *value)
{
    if (!ctx || !ctx->secrets)
        return 0;
    return atx_secrets_add(ctx->secrets, value);
}

void atx_plugin_ctx_set_changes(atx_plugin_ctx *ctx, const atx_changes **changes)
{
    if (ctx)
        ctx->changes = changes;
}

const atx_changes *atx_plugin_ctx_changes(const atx_plugin_ctx *ctx)
{
    return ctx && ctx->changes ? *ctx->changes : NULL;
}
