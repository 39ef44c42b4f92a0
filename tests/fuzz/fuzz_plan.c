/*
 * libFuzzer target for the plan reader (orchestrator/plan.c) through the
 * public API: each input is a plan's text, loaded into a fresh run
 * (atx_plan_load_string) whose plugins are stand-ins registered under the
 * names plans use: executors "exec" (which discovers a test per string of a
 * source's "tests" list) and "tap", a provisioner "local", aggregators
 * "jsonl" and "junit". Nothing runs.
 *
 * A load must succeed or fail with a code and a sentence; every test it
 * made must have a name and a spec that is a JSON object naming the plan's
 * folder (basedir); a failed load leaves the run freeable.
 */
#define _GNU_SOURCE 1
#include <atx.h>
#include <atx/plugin/aggregator.h>
#include <atx/plugin/executor.h>
#include <atx/plugin/provisioner.h>
#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atx_plugins *plugins;
static char results[256];
static int state_token;

static int any_create(atx_plugin_ctx *ctx, void **state)
{
    (void)ctx;
    *state = &state_token;
    return 0;
}

static void any_destroy(void *state)
{
    if (state != &state_token)
        abort();
}

static int ex_check(void *state, const atx_test *t)
{
    json_object *spec = json_tokener_parse(atx_test_spec_json(t));
    json_object *v;

    (void)state;
    if (!*atx_test_name(t) || !spec || !json_object_is_type(spec, json_type_object) ||
        !json_object_object_get_ex(spec, "basedir", &v) || !json_object_is_type(v, json_type_string))
        abort();
    json_object_put(spec);
    return 0;
}

static int ex_run(void *state, atx_attempt *a)
{
    (void)state;
    (void)a;
    abort(); /* nothing runs */
}

static int ex_discover(void *state, const struct json_object *source, const char *basedir,
                       int (*add)(void *ud, atx_test *t), void *ud)
{
    json_object *list;
    int r;

    (void)state;
    if (!basedir || basedir[0] != '/')
        abort();
    if (!json_object_object_get_ex(source, "tests", &list) ||
        !json_object_is_type(list, json_type_array))
        return 0;
    for (size_t i = 0; i < json_object_array_length(list) && i < 64; i++) {
        json_object *v = json_object_array_get_idx(list, i);
        atx_test *t;
        if (!json_object_is_type(v, json_type_string))
            continue;
        if ((r = atx_test_new(json_object_get_string(v), "exec", &t)) < 0)
            return r;
        if ((r = atx_test_set_spec_json(t, "{\"basedir\": \"/\"}")) < 0) {
            atx_test_free(t);
            return r;
        }
        if ((r = add(ud, t)) < 0)
            return r;
    }
    return 0;
}

static const atx_executor_vtable ex_vt = {
    .version = 1,
    .create = any_create,
    .destroy = any_destroy,
    .check = ex_check,
    .run = ex_run,
    .discover = ex_discover,
};

static int prov_capacity(void *state)
{
    (void)state;
    return 1;
}

static size_t prov_offer_count(void *state)
{
    (void)state;
    return 0;
}

static const atx_labels *prov_offer(void *state, size_t i)
{
    (void)state;
    (void)i;
    return NULL;
}

static int prov_reserve(void *state, const struct atx_reserve_req *req, atx_system **out)
{
    (void)state;
    (void)req;
    (void)out;
    abort(); /* nothing runs */
}

static void prov_release(void *state, atx_system *sys, unsigned flags)
{
    (void)state;
    (void)sys;
    (void)flags;
}

static const atx_provisioner_vtable prov_vt = {
    .version = 1,
    .create = any_create,
    .destroy = any_destroy,
    .capacity = prov_capacity,
    .offer_count = prov_offer_count,
    .offer = prov_offer,
    .reserve = prov_reserve,
    .release = prov_release,
};

static int agg_result(void *state, const atx_result *r)
{
    (void)state;
    (void)r;
    abort(); /* nothing runs */
}

static const atx_aggregator_vtable agg_vt = {
    .version = 1,
    .create = any_create,
    .destroy = any_destroy,
    .result = agg_result,
};

#define DESCRIPTOR(kind, name, vt)                                                        \
    { ATX_ABI_MAJOR, ATX_ABI_MINOR, (uint32_t)sizeof(atx_plugin_descriptor), (kind), (name), \
      "1", "a stand-in", (vt) }

static const atx_plugin_descriptor stand_ins[] = {
    DESCRIPTOR(ATX_PLUGIN_EXECUTOR, "exec", &ex_vt),
    DESCRIPTOR(ATX_PLUGIN_EXECUTOR, "tap", &ex_vt),
    DESCRIPTOR(ATX_PLUGIN_PROVISIONER, "local", &prov_vt),
    DESCRIPTOR(ATX_PLUGIN_AGGREGATOR, "jsonl", &agg_vt),
    DESCRIPTOR(ATX_PLUGIN_AGGREGATOR, "junit", &agg_vt),
};

static void cleanup(void)
{
    rmdir(results);
    atx_plugins_free(plugins);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    atx_plugins_opts po = ATX_PLUGINS_OPTS_INIT;
    const char *t = getenv("TMPDIR");

    (void)argc;
    (void)argv;
    if (atx_init() < 0)
        abort();
    /* Only the stand-ins: no plugin file is ever loaded. */
    po.no_environment = 1;
    po.no_default_dir = 1;
    if (atx_plugins_new(&po, &plugins) < 0)
        abort();
    for (size_t i = 0; i < sizeof(stand_ins) / sizeof(stand_ins[0]); i++)
        if (atx_plugins_add_builtin(plugins, &stand_ins[i]) < 0)
            abort();
    snprintf(results, sizeof(results), "%s/atx-fuzz-plan-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(results))
        abort();
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len);
int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    atx_run_opts ro = ATX_RUN_OPTS_INIT;
    atx_run *run;
    char *text;
    int r;

    /* The plan reader takes a NUL-terminated text: a NUL ends it early. */
    if (!(text = strndup((const char *)buf, len)))
        return 0;
    ro.results_dir = results;
    ro.plugins = plugins;
    if (atx_run_new(&ro, &run) < 0)
        abort();
    r = atx_plan_load_string(run, text, "plan.json", "/tmp");
    if (r < 0) {
        const atx_error *e = atx_error_last();
        if (e->code != r || !e->message || !*e->message ||
            strncmp(e->message, "plan.json", 9) != 0)
            abort();
    } else {
        if (r != 0)
            abort();
        for (size_t i = 0; i < atx_run_test_count(run); i++) {
            const atx_test *t = atx_run_test(run, i);
            if (!t || !*atx_test_name(t))
                abort();
        }
    }
    atx_run_free(run);
    free(text);
    return 0;
}
