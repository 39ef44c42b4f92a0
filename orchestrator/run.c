/*
 * Runs: building one, executing it, and the aggregator thread.
 *
 * The main thread of atx_run_execute() only waits: on the cancel pipe (which a
 * signal handler may write) and on a wake pipe that workers write when the
 * last test is done or the last worker has gone.
 */
#include "orch.h"

#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stddef.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_NS (300 * ATX_NSEC_PER_SEC)
#define DEFAULT_RESERVE_TIMEOUT_NS (600 * ATX_NSEC_PER_SEC)
#define DEFAULT_PREPARE_TIMEOUT_NS (1800 * ATX_NSEC_PER_SEC)
#define DEFAULT_RELEASE_TIMEOUT_NS (600 * ATX_NSEC_PER_SEC)
#define DEFAULT_LIVENESS_TIMEOUT_NS (30 * ATX_NSEC_PER_SEC)
#define DEFAULT_LIVENESS_INTERVAL_NS (5 * ATX_NSEC_PER_SEC)
/* How often a test runs again elsewhere after its system failed under it. */
#define INFRA_REQUEUES 2

/* ---- a set of test names (open addressing) for duplicate checks ---- */

/* Insert; returns 1 if added, 0 if the name is taken, negative on OOM. */
int atx_names_add(name_set *set, test_state *ts)
{
    if (set->len * 2 >= set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 64;
        test_state **slots = calloc(cap, sizeof(*slots));
        if (!slots)
            return atx_error_oom();
        for (size_t i = 0; i < set->cap; i++) {
            if (!set->slots[i])
                continue;
            size_t j = atx_hash_str(atx_test_name(set->slots[i]->t)) & (cap - 1);
            while (slots[j])
                j = (j + 1) & (cap - 1);
            slots[j] = set->slots[i];
        }
        free(set->slots);
        set->slots = slots;
        set->cap = cap;
    }
    const char *name = atx_test_name(ts->t);
    size_t j = atx_hash_str(name) & (set->cap - 1);
    while (set->slots[j]) {
        if (strcmp(atx_test_name(set->slots[j]->t), name) == 0)
            return 0;
        j = (j + 1) & (set->cap - 1);
    }
    set->slots[j] = ts;
    set->len++;
    return 1;
}

test_state *atx_names_find(const name_set *set, const char *name)
{
    if (!set->cap)
        return NULL;
    for (size_t j = atx_hash_str(name) & (set->cap - 1); set->slots[j]; j = (j + 1) & (set->cap - 1))
        if (strcmp(atx_test_name(set->slots[j]->t), name) == 0)
            return set->slots[j];
    return NULL;
}

/* ---- logging and wake-ups ---- */

void atx_run_logf(atx_run *run, atx_log_level level, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;

    if (!run->log || level > run->log_level)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    run->log(run->log_ud, level, "orchestrator", msg);
}

void atx_run_wake(atx_run *run)
{
    char c = 1;
    /* Non-blocking: a full pipe already means "wake up". */
    ssize_t n = write(run->wake_pipe[1], &c, 1);
    (void)n;
}

void atx_run_prov_signal(atx_run *run)
{
    run->prov_gen++;
    pthread_cond_broadcast(&run->prov_cv);
}

void atx_run_cancel(atx_run *run, int hurry)
{
    int level;

    if (!run)
        return;
    /* Only async-signal-safe calls here. */
    level = atomic_load(&run->cancel_level);
    int want = (hurry || level >= 1) ? 2 : 1;
    if (want > level)
        atomic_store(&run->cancel_level, want);
    char c = 1;
    ssize_t n = write(run->cancel_pipe[1], &c, 1);
    if (want == 2)
        n = write(run->hurry_pipe[1], &c, 1);
    (void)n;
}

/* ---- secrets ---- */

/* Variables whose values are always secrets: Bud's credentials. */
static const char *const secret_env[] = { "BUD_TOKEN", "BUD_PASSWORD", "BUD_RUNNER_TOKEN",
                                          "RUNNER_API_KEY" };

/* What the caller sees of a log line: its secrets masked. */
static void masked_log(void *ud, atx_log_level level, const char *origin, const char *message)
{
    atx_run *run = ud;
    char *m = NULL;
    if (atx_secrets_mask(&run->secrets, message, strlen(message), &m, NULL) > 0)
        message = m;
    run->user_log(run->user_log_ud, level, origin, message);
    free(m);
}

int atx_run_mask_env(atx_run *run, const char *name)
{
    int r;
    if (!run)
        return atx_error_set(ATX_EINVAL, "no run");
    if ((r = atx_env_hide(name)) < 0)
        return r;
    return atx_secrets_add(&run->secrets, getenv(name));
}

int atx_run_add_secret(atx_run *run, const char *value)
{
    if (!run)
        return atx_error_set(ATX_EINVAL, "no run");
    return atx_secrets_add(&run->secrets, value);
}

/* ---- building ---- */

int atx_run_new(const atx_run_opts *opts, atx_run **out)
{
    atx_run *run;
    char buf[PATH_MAX];
    int r;

    if (!opts || !out || !opts->results_dir || !*opts->results_dir)
        return atx_error_set(ATX_EINVAL, "a run needs a results directory");
    run = calloc(1, sizeof(*run));
    if (!run)
        return atx_error_oom();
    run->cancel_pipe[0] = run->cancel_pipe[1] = -1;
    run->hurry_pipe[0] = run->hurry_pipe[1] = -1;
    run->wake_pipe[0] = run->wake_pipe[1] = -1;
    pthread_mutex_init(&run->mu, NULL);
    pthread_cond_init(&run->work_cv, NULL);
    pthread_cond_init(&run->prov_cv, NULL);
    pthread_mutex_init(&run->agg_mu, NULL);
    pthread_cond_init(&run->agg_cv, NULL);
    atomic_init(&run->cancel_level, 0);
    run->user_log = opts->log;
    run->user_log_ud = opts->log_userdata;
    if (opts->log) {
        run->log = masked_log;
        run->log_ud = run;
    }
    run->log_level = opts->log_level;
    run->policy = (atx_policy)ATX_POLICY_INIT;
    run->policy.timeout_ns = DEFAULT_TIMEOUT_NS;
    run->policy.kill_grace_ns = ATX_NSEC_PER_SEC;
    run->policy.reserve_timeout_ns = DEFAULT_RESERVE_TIMEOUT_NS;
    run->policy.prepare_timeout_ns = DEFAULT_PREPARE_TIMEOUT_NS;
    run->policy.release_timeout_ns = DEFAULT_RELEASE_TIMEOUT_NS;
    run->policy.liveness_timeout_ns = DEFAULT_LIVENESS_TIMEOUT_NS;
    run->policy.liveness_interval_ns = DEFAULT_LIVENESS_INTERVAL_NS;
    run->jr_mode = ATX_JOURNAL_NEW;
    atx_secrets_init(&run->secrets);
    for (size_t i = 0; i < ATX_ARRAY_SIZE(secret_env); i++)
        if ((r = atx_run_mask_env(run, secret_env[i])) < 0)
            goto fail;

    if (opts->results_dir[0] == '/') {
        r = atx_strdup_into(&run->results_dir, opts->results_dir);
    } else if (!getcwd(buf, sizeof(buf))) {
        r = atx_error_set(-errno, "cannot read the current directory: %s", strerror(errno));
    } else {
        r = asprintf(&run->results_dir, "%s/%s", buf, opts->results_dir) < 0 ? atx_error_oom() : 0;
    }
    if (r < 0)
        goto fail;
    if (pipe2(run->cancel_pipe, O_CLOEXEC | O_NONBLOCK) < 0 ||
        pipe2(run->hurry_pipe, O_CLOEXEC | O_NONBLOCK) < 0 ||
        pipe2(run->wake_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        r = atx_error_set(-errno, "cannot make pipes: %s", strerror(errno));
        goto fail;
    }
    if (opts->plugins) {
        run->plugins = opts->plugins;
    } else {
        atx_plugins_opts po = ATX_PLUGINS_OPTS_INIT;
        po.log = opts->log;
        po.log_userdata = opts->log_userdata;
        if ((r = atx_plugins_new(&po, &run->plugins)) < 0)
            goto fail;
        run->own_plugins = true;
    }
    {
        /* A run id unique enough to tell runs apart in reports. */
        int64_t now = atx_wallclock_ns();
        char ts[32];
        atx_text_utc(now, 0, ts);
        if (asprintf(&run->run_id, "%s-%d-%03d", ts, (int)getpid(),
                     (int)((now / 1000000) % 1000)) < 0) {
            r = atx_error_oom();
            goto fail;
        }
    }
    *out = run;
    return 0;
fail:
    atx_run_free(run);
    return r;
}

static void destroy_plugins(atx_run *run)
{
    for (size_t i = 0; i < run->execs.len; i++) {
        exec_inst *x = run->execs.items[i];
        x->vt->destroy(x->state);
        atx_plugin_ctx_free(x->ctx);
        free(x->kind);
        free(x);
    }
    for (size_t i = 0; i < run->provs.len; i++) {
        prov_inst *p = run->provs.items[i];
        p->vt->destroy(p->state);
        atx_plugin_ctx_free(p->ctx);
        free(p->last_error);
        atx_strv_free(p->setup);
        atx_strv_free(p->cleanup);
        free(p->ready);
        free(p);
    }
    for (size_t i = 0; i < run->aggs.len; i++) {
        agg_inst *g = run->aggs.items[i];
        g->vt->destroy(g->state);
        atx_plugin_ctx_free(g->ctx);
        free(g->plugin);
        free(g->config);
        free(g);
    }
    atx_vec_release(&run->execs);
    atx_vec_release(&run->provs);
    atx_vec_release(&run->aggs);
}

void atx_run_free(atx_run *run)
{
    if (!run)
        return;
    destroy_plugins(run);
    for (size_t i = 0; i < run->tests.len; i++) {
        test_state *ts = run->tests.items[i];
        atx_test_free(ts->t);
        free(ts->last_system);
        free(ts);
    }
    atx_vec_release(&run->tests);
    for (size_t i = 0; i < run->classes.len; i++) {
        klass *k = run->classes.items[i];
        atx_labels_free(k->requires);
        free(k->heap);
        free(k);
    }
    atx_vec_release(&run->classes);
    atx_vec_release(&run->workers);
    free(run->names.slots);
    if (run->own_plugins)
        atx_plugins_free(run->plugins);
    for (int i = 0; i < 2; i++) {
        if (run->cancel_pipe[i] >= 0)
            close(run->cancel_pipe[i]);
        if (run->hurry_pipe[i] >= 0)
            close(run->hurry_pipe[i]);
        if (run->wake_pipe[i] >= 0)
            close(run->wake_pipe[i]);
    }
    pthread_mutex_destroy(&run->mu);
    pthread_cond_destroy(&run->work_cv);
    pthread_cond_destroy(&run->prov_cv);
    pthread_mutex_destroy(&run->agg_mu);
    pthread_cond_destroy(&run->agg_cv);
    jr_close(run->jr);
    hist_close(run->hist);
    for (size_t i = 0; i < run->meta.len; i++)
        free(run->meta.items[i]);
    atx_vec_release(&run->meta);
    for (size_t i = 0; i < run->sys_classes.len; i++)
        free(run->sys_classes.items[i]);
    atx_vec_release(&run->sys_classes);
    free(run->history_path);
    atx_run_changes_free(run);
    free(run->hostname);
    free(run->results_dir);
    free(run->run_id);
    atx_secrets_free(&run->secrets);
    free(run);
}

int atx_run_set_policy(atx_run *run, const atx_policy *policy)
{
    if (!run || !policy || policy->version < 1)
        return atx_error_set(ATX_EINVAL, "a policy needs a version");
    /* An older caller's structure ends before the later fields. */
    atx_policy p = ATX_POLICY_INIT;
    memcpy(&p, policy, policy->version >= 3   ? sizeof(p)
                       : policy->version == 2 ? offsetof(atx_policy, liveness_timeout_ns)
                                              : offsetof(atx_policy, max_running));
    p.version = ATX_POLICY_VERSION;
    if (p.reruns < 0 || p.timeout_ns < 0 || p.deadline_ns < 0 || p.kill_grace_ns < 0 ||
        p.max_running < 0 || p.reserve_timeout_ns < 0 || p.prepare_timeout_ns < 0 ||
        p.release_timeout_ns < 0 || p.liveness_timeout_ns < 0 || p.liveness_interval_ns < 0)
        return atx_error_set(ATX_EINVAL, "policy values must not be negative");
    int64_t *spans[] = { &p.timeout_ns, &p.deadline_ns, &p.kill_grace_ns, &p.reserve_timeout_ns,
                         &p.prepare_timeout_ns, &p.release_timeout_ns, &p.liveness_timeout_ns,
                         &p.liveness_interval_ns };
    for (size_t i = 0; i < ATX_ARRAY_SIZE(spans); i++)
        if (*spans[i] > ATX_DURATION_MAX)
            *spans[i] = ATX_DURATION_MAX;
    if (!p.timeout_ns)
        p.timeout_ns = DEFAULT_TIMEOUT_NS;
    if (!p.kill_grace_ns)
        p.kill_grace_ns = ATX_NSEC_PER_SEC;
    if (!p.reserve_timeout_ns)
        p.reserve_timeout_ns = DEFAULT_RESERVE_TIMEOUT_NS;
    if (!p.prepare_timeout_ns)
        p.prepare_timeout_ns = DEFAULT_PREPARE_TIMEOUT_NS;
    if (!p.release_timeout_ns)
        p.release_timeout_ns = DEFAULT_RELEASE_TIMEOUT_NS;
    if (!p.liveness_timeout_ns)
        p.liveness_timeout_ns = DEFAULT_LIVENESS_TIMEOUT_NS;
    if (!p.liveness_interval_ns)
        p.liveness_interval_ns = DEFAULT_LIVENESS_INTERVAL_NS;
    /* A ping must be sent within the time it is allowed. */
    if (p.liveness_interval_ns > p.liveness_timeout_ns)
        p.liveness_interval_ns = p.liveness_timeout_ns;
    run->policy = p;
    return 0;
}

const atx_policy *atx_run_policy(const atx_run *run) { return run ? &run->policy : NULL; }
size_t atx_run_test_count(const atx_run *run) { return run ? run->tests.len : 0; }
size_t atx_run_provisioner_count(const atx_run *run) { return run ? run->provs.len : 0; }
size_t atx_run_aggregator_count(const atx_run *run) { return run ? run->aggs.len : 0; }
const char *atx_run_results_dir(const atx_run *run) { return run ? run->results_dir : NULL; }

const atx_test *atx_run_test(const atx_run *run, size_t i)
{
    if (!run || i >= run->tests.len)
        return NULL;
    return ((test_state *)run->tests.items[i])->t;
}

/* Create a plugin instance; *state and *ctx are set on success. */
static int instantiate(atx_run *run, const atx_plugin_descriptor *d, const char *config,
                       void *userdata, atx_plugin_ctx **ctx, void **state)
{
    int r = atx_plugin_ctx_new(d->name, config, run->results_dir, userdata, run->log,
                               run->log_ud, run->log_level, ctx);
    if (r < 0)
        return r;
    /* create is the first member of every vtable kind. */
    int (*create)(atx_plugin_ctx *, void **) =
        d->kind == ATX_PLUGIN_PROVISIONER ? ((const atx_provisioner_vtable *)d->vtable)->create
        : d->kind == ATX_PLUGIN_EXECUTOR  ? ((const atx_executor_vtable *)d->vtable)->create
                                          : ((const atx_aggregator_vtable *)d->vtable)->create;
    atx_error_clear();
    atx_plugin_ctx_set_secrets(*ctx, &run->secrets);
    atx_plugin_ctx_set_changes(*ctx, &run->changes_ref);
    r = create(*ctx, state);
    if (r < 0) {
        const char *why = atx_error_last()->message;
        r = atx_error_set(r, "%s", *why ? why : atx_strerror(r));
        atx_plugin_ctx_free(*ctx);
        *ctx = NULL;
    }
    return r;
}

/* A provisioner's lifecycle keys (setup, ready, ready_timeout, cleanup),
 * taken out of its configuration: every provisioner has them. */
typedef struct lifecycle {
    char **setup, **cleanup, *ready;
    int64_t ready_timeout_ns;
    char *rest;             /* the configuration without them */
} lifecycle;

static void lifecycle_release(lifecycle *lc)
{
    atx_strv_free(lc->setup);
    atx_strv_free(lc->cleanup);
    free(lc->ready);
    free(lc->rest);
}

static int commands(json_object *v, const char *plugin, const char *key, char ***out)
{
    if (json_object_is_type(v, json_type_string)) {
        char **list = calloc(2, sizeof(char *));
        if (!list || !(list[0] = strdup(json_object_get_string(v)))) {
            free(list);
            return atx_error_oom();
        }
        *out = list;
        return 0;
    }
    if (atx_json_strv(v, out) < 0)
        return atx_error_set(ATX_EINVAL, "%s: '%s' must be a command or a list of commands",
                             plugin, key);
    return 0;
}

static int split_lifecycle(const char *plugin, const char *config, lifecycle *lc)
{
    json_object *o = config && *config ? json_tokener_parse(config) : json_object_new_object();
    json_object *v;
    int r = 0;

    memset(lc, 0, sizeof(*lc));
    lc->ready_timeout_ns = 120 * ATX_NSEC_PER_SEC;
    if (!o || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return atx_error_set(ATX_EPARSE, "%s: configuration must be a JSON object", plugin);
    }
    if (json_object_object_get_ex(o, "setup", &v))
        r = commands(v, plugin, "setup", &lc->setup);
    if (r == 0 && json_object_object_get_ex(o, "cleanup", &v))
        r = commands(v, plugin, "cleanup", &lc->cleanup);
    if (r == 0 && json_object_object_get_ex(o, "ready", &v)) {
        if (!json_object_is_type(v, json_type_string))
            r = atx_error_set(ATX_EINVAL, "%s: 'ready' must be a command", plugin);
        else if (!(lc->ready = strdup(json_object_get_string(v))))
            r = atx_error_oom();
    }
    if (r == 0 && json_object_object_get_ex(o, "ready_timeout", &v)) {
        const char *t = json_object_get_string(v);
        if (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)) {
            if ((lc->ready_timeout_ns = atx_seconds_ns(json_object_get_double(v))) < 0)
                r = atx_error_set(ATX_EINVAL, "%s: 'ready_timeout' must not be negative", plugin);
        } else if (!json_object_is_type(v, json_type_string) ||
                 atx_duration_parse(t, &lc->ready_timeout_ns) < 0)
            r = atx_error_set(ATX_EINVAL, "%s: 'ready_timeout' must be a duration", plugin);
    }
    static const char *const keys[] = { "setup", "cleanup", "ready", "ready_timeout" };
    for (size_t i = 0; i < ATX_ARRAY_SIZE(keys); i++)
        json_object_object_del(o, keys[i]);
    if (r == 0 && !(lc->rest = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN))))
        r = atx_error_oom();
    json_object_put(o);
    if (r < 0)
        lifecycle_release(lc);
    return r;
}

static int add_instance(atx_run *run, const atx_plugin_descriptor *d, const char *config,
                        void *userdata, bool builtin)
{
    atx_plugin_ctx *ctx;
    void *state;
    lifecycle lc = { 0 };
    int r;

    if (run->executed)
        return atx_error_set(ATX_ESTATE, "the run has already been executed");
    if (d->kind == ATX_PLUGIN_PROVISIONER) {
        if ((r = split_lifecycle(d->name, config, &lc)) < 0)
            return r;
        config = lc.rest;
    }
    if ((r = instantiate(run, d, config, userdata, &ctx, &state)) < 0) {
        lifecycle_release(&lc);
        return r;
    }
    switch (d->kind) {
    case ATX_PLUGIN_PROVISIONER: {
        prov_inst *p = calloc(1, sizeof(*p));
        if (!p || atx_vec_push(&run->provs, p) < 0)
            goto oom_free;
        p->vt = d->vtable;
        p->state = state;
        p->ctx = ctx;
        p->run = run;
        p->index = run->provs.len - 1;
        int same = 1;
        for (size_t i = 0; i + 1 < run->provs.len; i++)
            same += strcmp(atx_plugin_ctx_name(((prov_inst *)run->provs.items[i])->ctx),
                           d->name) == 0;
        if (same > 1)
            snprintf(p->id_suffix, sizeof(p->id_suffix), ".%d", same);
        p->setup = lc.setup;
        p->cleanup = lc.cleanup;
        p->ready = lc.ready;
        p->ready_timeout_ns = lc.ready_timeout_ns;
        free(lc.rest);
        return 0;
    oom_free:
        free(p);
        lifecycle_release(&lc);
        break;
    }
    case ATX_PLUGIN_EXECUTOR: {
        exec_inst *x = calloc(1, sizeof(*x));
        if (!x || !(x->kind = strdup(d->name)) || atx_vec_push(&run->execs, x) < 0) {
            if (x)
                free(x->kind);
            free(x);
            break;
        }
        x->vt = d->vtable;
        x->state = state;
        x->ctx = ctx;
        return 0;
    }
    case ATX_PLUGIN_AGGREGATOR: {
        agg_inst *g = calloc(1, sizeof(*g));
        if (!g || atx_vec_push(&run->aggs, g) < 0) {
            free(g);
            break;
        }
        g->vt = d->vtable;
        g->state = state;
        g->ctx = ctx;
        if (!builtin && (atx_strdup_into(&g->plugin, d->name) < 0 ||
                         atx_strdup_into(&g->config, config ? config : "{}") < 0))
            return ATX_ENOMEM;
        return 0;
    }
    }
    /* Out of memory after create: undo it. */
    if (d->kind == ATX_PLUGIN_PROVISIONER)
        ((const atx_provisioner_vtable *)d->vtable)->destroy(state);
    else if (d->kind == ATX_PLUGIN_EXECUTOR)
        ((const atx_executor_vtable *)d->vtable)->destroy(state);
    else
        ((const atx_aggregator_vtable *)d->vtable)->destroy(state);
    atx_plugin_ctx_free(ctx);
    return atx_error_oom();
}

static int add_by_name(atx_run *run, atx_plugin_kind kind, const char *plugin, const char *config)
{
    const atx_plugin_descriptor *d;
    int r;

    if (!run || !plugin)
        return atx_error_set(ATX_EINVAL, "no run or plugin name");
    if ((r = atx_plugins_find(run->plugins, kind, plugin, &d)) < 0)
        return r;
    return add_instance(run, d, config, NULL, false);
}

int atx_run_add_provisioner(atx_run *run, const char *plugin, const char *config_json)
{
    return add_by_name(run, ATX_PLUGIN_PROVISIONER, plugin, config_json);
}

int atx_run_add_aggregator(atx_run *run, const char *plugin, const char *config_json)
{
    return add_by_name(run, ATX_PLUGIN_AGGREGATOR, plugin, config_json);
}

int atx_run_add_executor(atx_run *run, const char *plugin, const char *config_json)
{
    if (!run || !plugin)
        return atx_error_set(ATX_EINVAL, "no run or plugin");
    for (size_t i = 0; i < run->execs.len; i++)
        if (strcmp(((exec_inst *)run->execs.items[i])->kind, plugin) == 0)
            return atx_error_set(ATX_EEXIST, "executor %s is configured already (once, before "
                                 "the tests that use it)", plugin);
    return add_by_name(run, ATX_PLUGIN_EXECUTOR, plugin, config_json);
}

int atx_run_add_builtin(atx_run *run, const atx_plugin_descriptor *d, const char *config_json,
                        void *userdata)
{
    int r;

    if (!run || !d)
        return atx_error_set(ATX_EINVAL, "no run or descriptor");
    if ((r = atx_plugin_descriptor_check(d)) < 0)
        return atx_error_set(ATX_EPLUGIN, "built-in plugin %s refused: %s",
                             d->name ? d->name : "(unnamed)", atx_error_last()->message);
    if (d->kind == ATX_PLUGIN_EXECUTOR) {
        for (size_t i = 0; i < run->execs.len; i++)
            if (strcmp(((exec_inst *)run->execs.items[i])->kind, d->name) == 0)
                return atx_error_set(ATX_EEXIST, "an executor '%s' is already in the run",
                                     d->name);
    }
    return add_instance(run, d, config_json, userdata, true);
}

static int executor_for(atx_run *run, const char *kind, exec_inst **out)
{
    const atx_plugin_descriptor *d;
    int r;

    for (size_t i = 0; i < run->execs.len; i++) {
        exec_inst *x = run->execs.items[i];
        if (strcmp(x->kind, kind) == 0) {
            *out = x;
            return 0;
        }
    }
    if ((r = atx_plugins_find(run->plugins, ATX_PLUGIN_EXECUTOR, kind, &d)) < 0)
        return r;
    if ((r = add_instance(run, d, NULL, NULL, false)) < 0)
        return r;
    *out = run->execs.items[run->execs.len - 1];
    return 0;
}

int atx_run_add_test(atx_run *run, atx_test *t)
{
    test_state *ts = NULL;
    exec_inst *x;
    int r;

    if (!run || !t) {
        atx_test_free(t);
        return atx_error_set(ATX_EINVAL, "no run or test");
    }
    if (run->executed || run->shard_count) {
        r = atx_error_set(ATX_ESTATE, run->executed ? "the run has already been executed"
                                                    : "tests are added before the run is "
                                                      "split into shards");
        goto fail;
    }
    if ((r = executor_for(run, atx_test_executor(t), &x)) < 0) {
        r = atx_error_set(r, "test %s: %s", atx_test_name(t), atx_error_last()->message);
        goto fail;
    }
    if (x->vt->check && (r = x->vt->check(x->state, t)) < 0)
        goto fail;
    ts = calloc(1, sizeof(*ts));
    if (!ts) {
        r = atx_error_oom();
        goto fail;
    }
    ts->t = t;
    ts->exec = x;
    if ((r = atx_vec_push(&run->tests, ts)) < 0)
        goto fail;
    r = atx_names_add(&run->names, ts);
    if (r <= 0) {
        run->tests.len--;
        if (r == 0)
            r = atx_error_set(ATX_EEXIST, "two tests are named %s", atx_test_name(t));
        goto fail;
    }
    ts->seq = run->seq++;
    ts->jid = (int64_t)run->tests.len;
    return 0;
fail:
    free(ts);
    atx_test_free(t);
    return r;
}

static int discover_add(void *ud, atx_test *t)
{
    return atx_run_add_test(ud, t);
}

int atx_run_discover(atx_run *run, const char *executor, const char *source_json,
                     const char *basedir)
{
    exec_inst *x;
    json_object *src;
    char cwd[PATH_MAX];
    int r;

    if (!run || !executor || !source_json)
        return atx_error_set(ATX_EINVAL, "discover needs a run, an executor and a source");
    if ((r = executor_for(run, executor, &x)) < 0)
        return r;
    if (!x->vt->discover)
        return atx_error_set(ATX_EUNSUPPORTED, "executor %s cannot discover tests", executor);
    src = json_tokener_parse(source_json);
    if (!src || !json_object_is_type(src, json_type_object)) {
        json_object_put(src);
        return atx_error_set(ATX_EPARSE, "a discover source must be a JSON object");
    }
    if (!basedir)
        basedir = getcwd(cwd, sizeof(cwd)) ? cwd : ".";
    atx_error_clear();
    r = x->vt->discover(x->state, src, basedir, discover_add, run);
    json_object_put(src);
    return r;
}

/* ---- the aggregator thread ---- */

void atx_run_agg_push_chain(atx_run *run, agg_item *head, agg_item *tail)
{
    pthread_mutex_lock(&run->agg_mu);
    tail->next = NULL;
    /* The aggregator thread sleeps only on an empty queue: wake it then. */
    bool was_empty = !run->agg_head;
    if (run->agg_tail)
        run->agg_tail->next = head;
    else
        run->agg_head = head;
    run->agg_tail = tail;
    if (was_empty)
        pthread_cond_signal(&run->agg_cv);
    pthread_mutex_unlock(&run->agg_mu);
}

void atx_run_agg_push(atx_run *run, agg_item *it)
{
    atx_run_agg_push_chain(run, it, it);
}

static void agg_failed(atx_run *run, agg_inst *g, const char *what, int r)
{
    const char *why = atx_error_last()->message;
    atx_run_logf(run, ATX_LOG_ERROR, "aggregator %s: %s failed: %s", atx_plugin_ctx_name(g->ctx),
                 what, *why ? why : atx_strerror(r));
    g->failed = true;
}

static void journal_failed(atx_run *run)
{
    run->jr_failed = true;
    atx_run_logf(run, ATX_LOG_ERROR, "%s; the run goes on, but can no longer be resumed",
                 atx_error_last()->message);
}

/* Attempts that end in this batch: their start needs no row of its own, as
 * their own result carries the start and the system (open addressing on
 * test id and attempt number). */
typedef struct ended_set {
    uint64_t *keys;         /* (jid << 16 | attempt) + 1; 0 is empty */
    size_t mask;
} ended_set;

static uint64_t ended_key(const agg_item *it, int attempt)
{
    return (((uint64_t)it->jid << 16) | (uint64_t)(attempt & 0xffff)) + 1;
}

static size_t ended_slot(const ended_set *e, uint64_t key)
{
    /* Multiplicative hashing: the product's high bits mix all of the key. */
    size_t i = (size_t)((key * 0x9e3779b97f4a7c15ULL) >> 32) & e->mask;
    while (e->keys[i] && e->keys[i] != key)
        i = (i + 1) & e->mask;
    return i;
}

static void ended_collect(ended_set *e, agg_item *list)
{
    size_t n = 0, cap = 16;
    for (agg_item *it = list; it; it = it->next)
        n += it->outcome != NULL;
    while (cap < 2 * n)
        cap *= 2;
    e->keys = n ? calloc(cap, sizeof(*e->keys)) : NULL;
    e->mask = cap - 1;
    for (agg_item *it = list; e->keys && it; it = it->next) {
        if (!it->outcome)
            continue;
        uint64_t k = ended_key(it, atx_result_attempt(it->result));
        e->keys[ended_slot(e, k)] = k;
    }
}

static bool ended_has(const ended_set *e, const agg_item *it)
{
    if (!e->keys)
        return false;
    uint64_t k = ended_key(it, it->attempt);
    return e->keys[ended_slot(e, k)] == k;
}

/* Commit a batch of events to the journal, before anyone sees them. */
static void journal_batch(atx_run *run, agg_item *list)
{
    journal *j = run->jr;
    ended_set ended;
    int r = jr_begin(j);

    ended_collect(&ended, list);
    for (agg_item *it = list; it && r == 0; it = it->next) {
        switch (it->kind) {
        case AGG_STARTED:
            if (!ended_has(&ended, it))
                r = jr_started(j, it->jid, it->attempt, it->system_id, it->when);
            break;
        case AGG_RESULT:
            r = jr_result(j, it->jid, it->result, it->outcome);
            break;
        }
    }
    free(ended.keys);
    if (r == 0)
        r = jr_commit(j);
    else
        jr_rollback(j);
    if (r < 0)
        journal_failed(run);
}

static void deliver(atx_run *run, const agg_item *it)
{
    for (size_t i = 0; i < run->aggs.len; i++) {
        agg_inst *g = run->aggs.items[i];
        int r;
        if (g->failed)
            continue;
        atx_error_clear();
        if (it->kind == AGG_RESULT) {
            if ((r = g->vt->result(g->state, it->result)) < 0)
                agg_failed(run, g, "result", r);
        } else if (it->kind == AGG_STARTED && g->vt->started) {
            g->vt->started(g->state, it->test, it->system_id, it->attempt);
        }
    }
}

static int replay_one(void *ud, atx_result *r)
{
    atx_run *run = ud;
    agg_item it = { .kind = AGG_RESULT, .result = r };
    /* What the journal kept of the history stands unless this run has a
     * history to say it again (a resumed run). */
    atx_run_annotate(run, r);
    deliver(run, &it);
    atx_result_unref(r);
    pthread_mutex_lock(&run->mu);
    run->summary.results++;
    pthread_mutex_unlock(&run->mu);
    return 0;
}

static void *agg_main(void *arg)
{
    atx_run *run = arg;
    atx_run_info info = {
        .run_id = run->run_id,
        .results_dir = run->results_dir,
        .hostname = run->hostname,
        .started_ns = run->summary.started_ns,
        .tests = run->tests.len ? run->tests.len : run->summary.tests,
        .replayed = run->replay_count,
    };
    int r;

    for (size_t i = 0; i < run->aggs.len; i++) {
        agg_inst *g = run->aggs.items[i];
        atx_error_clear();
        if (g->vt->begin && (r = g->vt->begin(g->state, &info)) < 0)
            agg_failed(run, g, "begin", r);
    }
    /* A resumed run's reports start with what the journal holds; merged
     * reports are the journals of the runs merged, one after the other. */
    if (run->replay_seq > 0 && jr_each_result(run->jr, run->replay_seq, NULL, replay_one, run) < 0)
        atx_run_logf(run, ATX_LOG_ERROR, "%s", atx_error_last()->message);
    for (size_t i = 0; i < run->sources.len; i++) {
        merge_src *m = run->sources.items[i];
        if (jr_each_result(m->jr, m->last_seq, &m->rb, replay_one, run) < 0)
            atx_run_logf(run, ATX_LOG_ERROR, "%s", atx_error_last()->message);
    }
    for (;;) {
        pthread_mutex_lock(&run->agg_mu);
        while (!run->agg_head && !run->agg_closing)
            pthread_cond_wait(&run->agg_cv, &run->agg_mu);
        /* Take everything queued: one transaction for the lot. */
        agg_item *list = run->agg_head;
        run->agg_head = run->agg_tail = NULL;
        pthread_mutex_unlock(&run->agg_mu);
        if (!list)
            break;
        /* Quarantine, flake rate, recent outcomes: what the history says,
         * journaled with the result so `atx report` shows them too. */
        for (agg_item *it = list; it; it = it->next)
            if (it->kind == AGG_RESULT)
                atx_run_annotate(run, it->result);
        if (run->jr && !run->jr_failed && !run->reporting)
            journal_batch(run, list);
        size_t batch = 0;
        for (agg_item *it = list; it; it = it->next)
            batch++;
        while (list) {
            agg_item *it = list;
            list = it->next;
            deliver(run, it);
            atx_result_unref(it->result);
            free(it->system_id);
            free(it);
        }
        /* Events come faster than one by one: let them gather for a
         * millisecond, so the next batch is one transaction and one wake-up
         * for many of them instead of a context switch for each (at 100,000
         * tests on 100 systems this halves the CPU spent, see bench/scale).
         * Results reach aggregators a millisecond later; nothing waits on
         * them. */
        if (batch >= 2)
            usleep(2000);
    }
    if (run->jr && !run->jr_failed && !run->reporting) {
        char v[32];
        snprintf(v, sizeof(v), "%lld", (long long)run->summary.duration_ns);
        bool complete = run->summary.tests == run->done && !run->summary.cancelled;
        if (jr_begin(run->jr) < 0 || jr_meta_set(run->jr, "duration_ns", v) < 0 ||
            jr_meta_set(run->jr, "finished", complete ? "1" : "0") < 0 || jr_commit(run->jr) < 0)
            journal_failed(run);
    }
    /* What changed since the run before: for the reports' end. */
    atx_run_compare(run);
    for (size_t i = 0; i < run->aggs.len; i++) {
        agg_inst *g = run->aggs.items[i];
        atx_error_clear();
        if (!g->failed && g->vt->end && (r = g->vt->end(g->state, &run->summary)) < 0)
            agg_failed(run, g, "end", r);
    }
    return NULL;
}

size_t atx_run_failed_aggregators(const atx_run *run)
{
    size_t n = 0;
    for (size_t i = 0; run && i < run->aggs.len; i++)
        n += ((agg_inst *)run->aggs.items[i])->failed;
    return n;
}

/* ---- executing ---- */

/* A result the orchestrator itself gives a test (never ran, cannot run). */
static void emit_direct(atx_run *run, test_state *ts, atx_status status, const char *type,
                        const char *note)
{
    atx_result *r = atx_run_own_result(ts, status, type, note);

    if (!r)
        return;
    atx_result_set_times(r, atx_wallclock_ns(), 0);
    atx_result_set_attempt(r, ts->attempts > 0 ? ts->attempts : 1);
    atx_run_record_final(run, ts, status, type);
    run->summary.results++;
    agg_item *it = calloc(1, sizeof(*it));
    if (!it) {
        atx_result_unref(r);
        return;
    }
    it->kind = AGG_RESULT;
    it->jid = ts->jid;
    it->result = r;
    atx_run_agg_push(run, it);
}

/* ---- the journal: starting, resuming ---- */

typedef struct resume_ctx {
    atx_run *run;
    test_state **by_id;     /* journal id -> test */
    size_t nids;
    size_t matched;
    atx_vec lost;           /* jr_lost* */
    int64_t attempts;
} resume_ctx;

typedef struct jr_lost {
    test_state *ts;
    int number;
    char *system;
    int64_t started_ns;
} jr_lost;

static int resume_test(void *ud, int64_t id, const char *name)
{
    resume_ctx *c = ud;
    test_state *ts = atx_names_find(&c->run->names, name);

    if (!ts)
        return atx_error_set(ATX_EINVAL, "cannot resume the run in %s: its test %s is not in "
                             "this run (resume with the run's own tests)",
                             c->run->results_dir, name);
    if (id < 1 || (size_t)id > c->nids)
        return atx_error_set(ATX_EPARSE, "cannot resume the run in %s: the journal is damaged "
                             "(test id %lld)", c->run->results_dir, (long long)id);
    ts->jid = id;
    c->by_id[id - 1] = ts;
    c->matched++;
    return 0;
}

static test_state *by_id(resume_ctx *c, int64_t id)
{
    return id >= 1 && (size_t)id <= c->nids ? c->by_id[id - 1] : NULL;
}

static int resume_attempt(void *ud, const jr_attempt *a)
{
    resume_ctx *c = ud;
    test_state *ts = by_id(c, a->test);

    if (!ts)
        return 0;
    c->attempts++;
    if (a->number >= ts->attempts) {
        ts->attempts = a->number;
        free(ts->last_system);
        ts->last_system = a->system ? strdup(a->system) : NULL;
    }
    if (!a->outcome) {
        /* Started, never finished: atx died under it. */
        jr_lost *l = calloc(1, sizeof(*l));
        if (!l || atx_vec_push(&c->lost, l) < 0) {
            free(l);
            return atx_error_oom();
        }
        l->ts = ts;
        l->number = a->number;
        l->system = a->system ? strdup(a->system) : NULL;
        l->started_ns = a->started_ns;
    } else if (strcmp(a->outcome, "rerun") == 0) {
        ts->reruns_left--;
        ts->had_failure = true;
    } else if (strcmp(a->outcome, "requeue") == 0) {
        ts->infra_left--;
    }
    return 0;
}

/* Final results the orchestrator gave for want of running the test: a resume
 * runs those tests. */
static bool absent_result(const char *type)
{
    return type && (strcmp(type, "not-run") == 0 || strcmp(type, "interrupted") == 0 ||
                    strcmp(type, "provisioning") == 0);
}

static int resume_final(void *ud, const jr_final *f)
{
    resume_ctx *c = ud;
    test_state *ts = by_id(c, f->test);
    int r;

    if (!ts || ts->phase == TS_DONE)
        return 0;
    if (absent_result(f->error_type)) {
        bool attempted = strcmp(f->error_type, "interrupted") == 0;
        if ((r = jr_supersede(c->run->jr, f->test, f->attempt, !attempted)) < 0)
            return r;
        if (attempted && (r = jr_set_outcome(c->run->jr, f->test, f->attempt, "interrupted")) < 0)
            return r;
        return 0;
    }
    atx_run_record_final(c->run, ts, atx_status_from_word(f->status), f->error_type);
    return 0;
}

/* An attempt atx died under gets a superseded infra result of its own. */
static int resume_lost(atx_run *run, jr_lost *l)
{
    atx_result *r = atx_run_own_result(l->ts, ATX_STATUS_INFRA, "lost",
                                       "atx stopped during this attempt (killed, or its host went "
                                       "down); the test ran again when the run was resumed");
    int e;

    if (!r)
        return ATX_ENOMEM;
    atx_result_set_attempt(r, l->number);
    atx_result_set_final(r, 0);
    atx_result_set_times(r, l->started_ns, 0);
    atx_result_set_system(r, l->system, NULL);
    e = jr_result(run->jr, l->ts->jid, r, "lost");
    atx_result_unref(r);
    return e;
}

static int resume_load(atx_run *run)
{
    resume_ctx c = { .run = run, .nids = run->tests.len };
    char *v;
    int r = 0;

    if (!(v = jr_meta_get(run->jr, "run_id")))
        return atx_error_set(ATX_EPARSE, "cannot resume: %s holds no run", jr_path(run->jr));
    free(run->run_id);
    run->run_id = v;
    if ((v = jr_meta_get(run->jr, "hostname"))) {
        free(run->hostname);
        run->hostname = v;
    }
    jr_meta_int(run->jr, "started_ns", &run->summary.started_ns);
    jr_meta_int(run->jr, "duration_ns", &run->prev_duration_ns);
    c.by_id = calloc(c.nids + 1, sizeof(*c.by_id));
    if (!c.by_id)
        return atx_error_oom();
    for (size_t i = 0; i < run->tests.len; i++)
        ((test_state *)run->tests.items[i])->jid = 0;
    r = jr_each_test(run->jr, resume_test, &c);
    if (r == 0 && c.matched != run->tests.len) {
        for (size_t i = 0; i < run->tests.len; i++) {
            test_state *ts = run->tests.items[i];
            if (!ts->jid) {
                r = atx_error_set(ATX_EINVAL, "cannot resume the run in %s: test %s was not "
                                  "in it (resume with the run's own tests)",
                                  run->results_dir, atx_test_name(ts->t));
                break;
            }
        }
    }
    if (r == 0)
        r = jr_each_attempt(run->jr, resume_attempt, &c);
    if (r == 0)
        r = jr_each_final(run->jr, resume_final, &c);
    for (size_t i = 0; i < c.lost.len; i++) {
        jr_lost *l = c.lost.items[i];
        if (r == 0)
            r = resume_lost(run, l);
        free(l->system);
        free(l);
    }
    atx_vec_release(&c.lost);
    free(c.by_id);
    if (r < 0)
        return r;
    for (size_t i = 0; i < run->tests.len; i++) {
        test_state *ts = run->tests.items[i];
        if (ts->reruns_left < 0)
            ts->reruns_left = 0;
        if (ts->infra_left < 0)
            ts->infra_left = 0;
    }
    run->summary.attempts = (size_t)c.attempts;
    run->replay_seq = jr_last_seq(run->jr);
    run->replay_count = jr_count_results(run->jr);
    atx_run_logf(run, ATX_LOG_INFO, "resuming %s: %zu of %zu tests are done", run->run_id,
                 run->done, run->tests.len);
    return 0;
}

static char *aggregators_json(atx_run *run)
{
    json_object *arr = json_object_new_array();
    for (size_t i = 0; i < run->aggs.len; i++) {
        agg_inst *g = run->aggs.items[i];
        if (!g->plugin)
            continue;
        json_object *o = json_object_new_object();
        json_object_object_add(o, "plugin", json_object_new_string(g->plugin));
        json_object_object_add(o, "config", json_tokener_parse(g->config));
        json_object_array_add(arr, o);
    }
    char *s = strdup(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN));
    json_object_put(arr);
    return s;
}

static int journal_start(atx_run *run)
{
    int r;

    if (run->jr_mode == ATX_JOURNAL_OFF)
        return 0;
    if ((r = jr_open(run->results_dir, run->jr_mode == ATX_JOURNAL_RESUME ? JR_RESUME : JR_NEW,
                     &run->jr)) < 0)
        return r;
    if ((r = jr_begin(run->jr)) < 0)
        return r;
    if (run->jr_mode == ATX_JOURNAL_RESUME) {
        r = resume_load(run);
    } else {
        char v[32], *aggs = aggregators_json(run);
        snprintf(v, sizeof(v), "%lld", (long long)run->summary.started_ns);
        r = !aggs ? atx_error_oom() : 0;
        if (r == 0)
            r = jr_meta_set(run->jr, "run_id", run->run_id);
        if (r == 0)
            r = jr_meta_set(run->jr, "hostname", run->hostname);
        if (r == 0)
            r = jr_meta_set(run->jr, "started_ns", v);
        if (r == 0)
            r = jr_meta_set(run->jr, "aggregators", aggs);
        free(aggs);
        for (size_t i = 0; i < run->tests.len && r == 0; i++) {
            test_state *ts = run->tests.items[i];
            r = jr_add_test(run->jr, ts->jid, atx_test_name(ts->t));
        }
    }
    for (size_t i = 0; i + 1 < run->meta.len && r == 0; i += 2)
        r = jr_meta_set(run->jr, run->meta.items[i], run->meta.items[i + 1]);
    if (r == 0)
        r = jr_commit(run->jr);
    else
        jr_rollback(run->jr);
    return r;
}

int atx_run_set_journal(atx_run *run, atx_journal_mode mode)
{
    if (!run || mode < ATX_JOURNAL_OFF || mode > ATX_JOURNAL_RESUME)
        return atx_error_set(ATX_EINVAL, "no run, or an unknown journal mode");
    if (run->executed)
        return atx_error_set(ATX_ESTATE, "the run has already been executed");
    run->jr_mode = mode;
    return 0;
}

int atx_run_set_meta(atx_run *run, const char *key, const char *value)
{
    char *k, *v;

    if (!run || !key || !value)
        return atx_error_set(ATX_EINVAL, "meta needs a run, a key and a value");
    if (run->executed)
        return atx_error_set(ATX_ESTATE, "the run has already been executed");
    if (!(k = strdup(key)) || !(v = strdup(value))) {
        free(k);
        return atx_error_oom();
    }
    if (atx_vec_push(&run->meta, k) < 0 || atx_vec_push(&run->meta, v) < 0) {
        free(v);
        return ATX_ENOMEM; /* k is in the vector */
    }
    return 0;
}

int atx_journal_meta(const char *results_dir, const char *key, char **value)
{
    journal *j;
    int r;

    if (!results_dir || !key || !value)
        return atx_error_set(ATX_EINVAL, "journal meta needs a folder and a key");
    *value = NULL;
    if ((r = jr_open(results_dir, JR_RESUME, &j)) < 0)
        return r;
    *value = jr_meta_get(j, key);
    jr_close(j);
    return 0;
}

int atx_run_set_history(atx_run *run, const char *path)
{
    if (!run)
        return atx_error_set(ATX_EINVAL, "no run");
    if (run->executed)
        return atx_error_set(ATX_ESTATE, "the run has already been executed");
    free(run->history_path);
    run->history_path = NULL;
    return atx_strdup_into(&run->history_path, path);
}

/* ---- duration history ---- */

const char *atx_run_sys_class(atx_run *run, const atx_labels *labels)
{
    char buf[256];
    atx_labels_class(labels, buf, sizeof(buf));
    for (size_t i = 0; i < run->sys_classes.len; i++)
        if (strcmp(run->sys_classes.items[i], buf) == 0)
            return run->sys_classes.items[i];
    char *c = strdup(buf);
    if (!c || atx_vec_push(&run->sys_classes, c) < 0) {
        free(c);
        return NULL;
    }
    return c;
}

static int hist_row(void *ud, const char *name, const char *cls, int64_t ns)
{
    atx_run *run = ud;
    test_state *ts = atx_names_find(&run->names, name);
    bool match = false;

    if (!ts || ns <= 0)
        return 0;
    for (size_t i = 0; i < run->sys_classes.len && !match; i++)
        match = strcmp(run->sys_classes.items[i], cls) == 0;
    /* A class of this run's systems wins over others; among equals, the
     * longest (a slot must not be promised too early). */
    if ((match && !ts->hist_match) || (match == ts->hist_match && ns > ts->hist_ns)) {
        ts->hist_ns = ns;
        ts->hist_match = match;
    }
    return 0;
}

/* Expected durations: history, else what the test declares. */
static void estimate(atx_run *run)
{
    if (run->history_path) {
        int64_t t0 = atx_now_ns();
        int r = hist_open(run->history_path, &run->hist);
        for (size_t i = 0; r == 0 && i < run->provs.len; i++) {
            prov_inst *p = run->provs.items[i];
            for (size_t o = 0; !p->failed && o < p->vt->offer_count(p->state); o++)
                atx_run_sys_class(run, p->vt->offer(p->state, o));
        }
        if (r == 0)
            r = hist_each(run->hist, hist_row, run);
        if (r == 0)
            r = atx_run_load_outcomes(run);
        if (r == 0)
            atx_run_logf(run, ATX_LOG_DEBUG, "history %s read in %.1f ms (%zu outcomes of the "
                         "plan's previous run)", run->history_path,
                         (double)(atx_now_ns() - t0) / ATX_NSEC_PER_MSEC, run->nprev);
        if (r < 0) {
            atx_run_logf(run, ATX_LOG_WARNING, "%s; running without it",
                         atx_error_last()->message);
            hist_close(run->hist);
            run->hist = NULL;
        }
    }
    for (size_t i = 0; i < run->tests.len; i++) {
        test_state *ts = run->tests.items[i];
        ts->expected_ns = ts->hist_ns ? ts->hist_ns : atx_test_duration(ts->t);
        ts->priority = atx_test_priority(ts->t);
    }
}

static void history_write(atx_run *run)
{
    int r;

    if (!run->hist)
        return;
    bool begun = (r = hist_begin(run->hist)) == 0;
    for (size_t i = 0; i < run->tests.len && r == 0; i++) {
        test_state *ts = run->tests.items[i];
        if (ts->took_class)
            r = hist_record(run->hist, atx_test_name(ts->t), ts->took_class, ts->took_ns);
    }
    if (r == 0)
        r = atx_run_write_outcomes(run);
    if (r == 0)
        r = hist_commit(run->hist);
    else if (begun)
        hist_rollback(run->hist); /* the file's lock goes now, not at the run's free */
    if (r < 0)
        atx_run_logf(run, ATX_LOG_WARNING, "%s; durations and outcomes of this run are not kept",
                     atx_error_last()->message);
}

int atx_run_progress(atx_run *run, atx_progress *p)
{
    if (!run || !p)
        return atx_error_set(ATX_EINVAL, "no run or progress");
    pthread_mutex_lock(&run->mu);
    p->tests = run->tests.len;
    p->done = run->done;
    p->running = run->running;
    p->queued = run->queued;
    p->eta_ns = -1;
    size_t known = run->queued - run->queued_unknown;
    int64_t work = run->queued_known_ns;
    if (known > 0 && run->queued_unknown > 0)
        work += (int64_t)((double)run->queued_known_ns / (double)known *
                          (double)run->queued_unknown);
    int64_t remaining, longest;
    atx_run_running_left(run, &remaining, &longest);
    size_t slots = run->leased ? run->leased : 1;
    if (run->queued == 0 || known > 0) {
        /* The queue spread over the systems, or the longest running test. */
        int64_t spread = (work + remaining) / (int64_t)slots;
        p->eta_ns = spread > longest ? spread : longest;
    }
    pthread_mutex_unlock(&run->mu);
    return 0;
}

static int prepare_classes(atx_run *run)
{
    size_t *counts;
    int r;

    for (size_t i = 0; i < run->tests.len; i++)
        if ((r = atx_sched_classify(run, run->tests.items[i])) < 0)
            return r;
    counts = calloc(run->classes.len + 1, sizeof(*counts));
    if (!counts)
        return atx_error_oom();
    for (size_t i = 0; i < run->tests.len; i++)
        counts[((test_state *)run->tests.items[i])->cls->index]++;
    for (size_t i = 0; i < run->classes.len; i++) {
        klass *k = run->classes.items[i];
        k->heap = malloc((counts[i] + 1) * sizeof(*k->heap));
        if (!k->heap) {
            free(counts);
            return atx_error_oom();
        }
        k->cap = counts[i] + 1;
    }
    free(counts);
    return 0;
}

static void start_provisioners(atx_run *run)
{
    for (size_t i = 0; i < run->provs.len; i++) {
        prov_inst *p = run->provs.items[i];
        int r = 0;
        atx_error_clear();
        if (p->vt->start && (r = p->vt->start(p->state)) < 0) {
            p->failed = true;
            p->last_error = strdup(*atx_error_last()->message ? atx_error_last()->message
                                                               : atx_strerror(r));
            atx_run_logf(run, ATX_LOG_ERROR, "provisioner %s failed to start: %s",
                         atx_plugin_ctx_name(p->ctx), p->last_error ? p->last_error : "");
            continue;
        }
        p->started = true;
        p->capacity = p->vt->capacity(p->state);
        if (p->capacity < 1) {
            p->failed = true;
            p->last_error = strdup("it offers no capacity");
        }
    }
}

static void stop_provisioners(atx_run *run)
{
    for (size_t i = 0; i < run->provs.len; i++) {
        prov_inst *p = run->provs.items[i];
        if (p->started && p->vt->stop)
            p->vt->stop(p->state);
    }
}

/* Mark classes no started provisioner can ever serve; give their tests an
 * error result naming the missing label. */
static void reject_impossible(atx_run *run)
{
    for (size_t i = 0; i < run->classes.len; i++) {
        klass *k = run->classes.items[i];
        const char *missing = NULL;
        for (size_t j = 0; j < run->provs.len && !k->possible; j++) {
            prov_inst *p = run->provs.items[j];
            if (p->failed)
                continue;
            for (size_t o = 0; o < p->vt->offer_count(p->state) && !k->possible; o++)
                k->possible = atx_sched_applicable(run, k, p->vt->offer(p->state, o), &missing);
        }
        k->possible = k->possible || atx_labels_count(k->requires) == 0;
    }
    for (size_t i = 0; i < run->tests.len; i++) {
        test_state *ts = run->tests.items[i];
        if (ts->phase == TS_DONE)
            continue; /* a resumed run's finished test */
        if (ts->cls->possible) {
            atx_sched_push(run, ts);
            continue;
        }
        /* Name the first required label no offer has. */
        const char *missing = NULL, *key, *val;
        char note[1024];
        for (size_t j = 0; j < run->provs.len && !missing; j++) {
            prov_inst *p = run->provs.items[j];
            for (size_t o = 0; !p->failed && o < p->vt->offer_count(p->state) && !missing; o++)
                atx_sched_applicable(run, ts->cls, p->vt->offer(p->state, o), &missing);
        }
        if (!missing && atx_labels_at(ts->cls->requires, 0, &key, &val) == 0)
            missing = key;
        val = missing ? atx_labels_get(ts->cls->requires, missing) : NULL;
        snprintf(note, sizeof(note), "no system can run this test: it requires %s=%s, "
                 "which no provisioner offers", missing ? missing : "?", val ? val : "?");
        emit_direct(run, ts, ATX_STATUS_ERROR, "unsatisfiable", note);
    }
}

static bool all_provisioners_failed(atx_run *run)
{
    for (size_t i = 0; i < run->provs.len; i++)
        if (!((prov_inst *)run->provs.items[i])->failed)
            return false;
    return true;
}

static void drain_pipe(int fd)
{
    char buf[64];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
}

int atx_run_execute(atx_run *run, atx_summary *summary)
{
    int r;
    int64_t deadline = 0;
    bool exhausted = false;

    if (!run)
        return atx_error_set(ATX_EINVAL, "no run");
    if (run->executed)
        return atx_error_set(ATX_ESTATE, "a run executes once");
    if (run->provs.len == 0)
        return atx_error_set(ATX_EINVAL, "the run has no provisioner");
    run->executed = true;
    if ((r = atx_mkdir_p(run->results_dir)) < 0)
        return r;
    if ((r = prepare_classes(run)) < 0)
        return r;
    for (size_t i = 0; i < run->tests.len; i++) {
        test_state *ts = run->tests.items[i];
        int64_t to = atx_test_timeout(ts->t);
        int rr = atx_test_reruns(ts->t);
        ts->timeout_ns = to > 0 ? to : run->policy.timeout_ns;
        ts->reruns_left = rr >= 0 ? rr : run->policy.reruns;
        ts->infra_left = INFRA_REQUEUES;
    }
    run->summary.tests = run->tests.len;
    run->summary.started_ns = atx_wallclock_ns();
    int64_t t0 = atx_now_ns();
    if (run->policy.deadline_ns > 0)
        deadline = t0 + run->policy.deadline_ns;
    if (!run->hostname) {
        char host[256] = "localhost";
        gethostname(host, sizeof(host) - 1);
        if ((r = atx_strdup_into(&run->hostname, host)) < 0)
            return r;
    }
    if ((r = journal_start(run)) < 0)
        return r;

    /* The history before the aggregator thread: a resumed run's results
     * are replayed as soon as it starts, and annotated from the history. */
    start_provisioners(run);
    estimate(run);
    if ((r = pthread_create(&run->agg_thread, NULL, agg_main, run)) != 0) {
        stop_provisioners(run);
        return atx_error_set(-r, "cannot start the aggregator thread: %s", strerror(r));
    }
    pthread_mutex_lock(&run->mu);
    reject_impossible(run);
    for (size_t i = 0; i < run->provs.len; i++) {
        prov_inst *p = run->provs.items[i];
        if (p->failed)
            continue;
        int want = 1;
        if (p->vt->version >= 2 && p->vt->reserve_parallel)
            want = p->vt->reserve_parallel(p->state);
        want = want < 1 ? 1 : want > PROV_THREADS_MAX ? PROV_THREADS_MAX : want;
        while (p->nthreads < want) {
            if ((r = pthread_create(&p->threads[p->nthreads], NULL, atx_provisioner_main, p)) !=
                0) {
                atx_run_logf(run, ATX_LOG_ERROR, "cannot start a provisioner thread: %s",
                             strerror(r));
                break;
            }
            p->nthreads++;
        }
        if (p->nthreads == 0)
            p->failed = true;
    }
    pthread_mutex_unlock(&run->mu);

    bool cancel_seen = false;
    for (;;) {
        pthread_mutex_lock(&run->mu);
        bool finished = run->done == run->tests.len;
        bool stopped = run->stopping && run->active_workers == 0;
        if (!finished && !run->stopping && run->active_workers == 0 && run->queued > 0 &&
            all_provisioners_failed(run)) {
            exhausted = true;
            run->stopping = true;
            stopped = true;
        }
        pthread_mutex_unlock(&run->mu);
        if (finished || stopped)
            break;

        struct pollfd pfd[2] = {
            { .fd = run->wake_pipe[0], .events = POLLIN },
            { .fd = run->cancel_pipe[0], .events = POLLIN },
        };
        int timeout = -1;
        if (deadline && !cancel_seen) {
            int64_t left = deadline - atx_now_ns();
            timeout = left <= 0 ? 0 : (int)(left / ATX_NSEC_PER_MSEC + 1);
        }
        int n = poll(pfd, cancel_seen ? 1 : 2, timeout);
        if (n < 0 && errno != EINTR)
            break;
        if (pfd[0].revents & POLLIN)
            drain_pipe(run->wake_pipe[0]);
        bool by_deadline = deadline && !cancel_seen && atx_now_ns() >= deadline;
        if (!cancel_seen && ((pfd[1].revents & POLLIN) || by_deadline)) {
            /* The cancel pipe stays readable: executors poll it too. */
            cancel_seen = true;
            if (by_deadline && atomic_load(&run->cancel_level) == 0)
                atx_run_cancel(run, 0);
            pthread_mutex_lock(&run->mu);
            run->stopping = true;
            run->stop_reason = by_deadline ? "not run: the run deadline passed"
                                           : "not run: the run was cancelled";
            run->summary.cancelled = !by_deadline;
            pthread_cond_broadcast(&run->work_cv);
            atx_run_prov_signal(run);
            pthread_mutex_unlock(&run->mu);
            atx_run_logf(run, ATX_LOG_WARNING, "%s: stopping",
                         by_deadline ? "run deadline passed" : "cancelled");
        }
    }

    pthread_mutex_lock(&run->mu);
    run->stopping = true;
    pthread_cond_broadcast(&run->work_cv);
    atx_run_prov_signal(run);
    pthread_mutex_unlock(&run->mu);
    for (size_t i = 0; i < run->provs.len; i++) {
        prov_inst *p = run->provs.items[i];
        for (int t = 0; t < p->nthreads; t++)
            pthread_join(p->threads[t], NULL);
    }
    atx_worker_join_all(run);

    pthread_mutex_lock(&run->mu);
    test_state *ts;
    char note[1200];
    if (exhausted) {
        run->summary.infra_exhausted = 1;
        const char *why = NULL;
        for (size_t i = 0; i < run->provs.len && !why; i++)
            why = ((prov_inst *)run->provs.items[i])->last_error;
        snprintf(note, sizeof(note), "no system could be provisioned: %s",
                 why ? why : "every provisioner failed");
    }
    while ((ts = atx_sched_pop_any(run)))
        emit_direct(run, ts, exhausted ? ATX_STATUS_INFRA : ATX_STATUS_SKIP,
                    exhausted ? "provisioning" : "not-run",
                    exhausted ? note : run->stop_reason ? run->stop_reason : "not run");
    pthread_mutex_unlock(&run->mu);

    stop_provisioners(run);
    /* A resumed run's duration counts its earlier segments too. */
    run->summary.duration_ns = run->prev_duration_ns + (atx_now_ns() - t0);

    pthread_mutex_lock(&run->agg_mu);
    run->agg_closing = true;
    pthread_cond_signal(&run->agg_cv);
    pthread_mutex_unlock(&run->agg_mu);
    pthread_join(run->agg_thread, NULL);
    history_write(run);
    jr_close(run->jr);
    run->jr = NULL;

    if (summary)
        *summary = run->summary;
    return 0;
}

/* ---- rebuilding reports from a journal ---- */

typedef struct report_ctx {
    atx_run *run;
    bool *failed_once;      /* by journal test id */
    size_t n;
} report_ctx;

static int report_attempt(void *ud, const jr_attempt *a)
{
    report_ctx *c = ud;
    c->run->summary.attempts++;
    if (a->outcome && strcmp(a->outcome, "rerun") == 0 && a->test >= 1 && (size_t)a->test <= c->n)
        c->failed_once[a->test - 1] = true;
    return 0;
}

static int report_final(void *ud, const jr_final *f)
{
    report_ctx *c = ud;
    test_state ts = { .had_failure = f->test >= 1 && (size_t)f->test <= c->n &&
                                     c->failed_once[f->test - 1] };
    atx_run_record_final(c->run, &ts, atx_status_from_word(f->status), f->error_type);
    return 0;
}

int atx_run_tally(atx_run *run, journal *j)
{
    report_ctx c = { .run = run };
    size_t done = run->done;
    int r;

    if ((r = jr_count_tests(j, &c.n)) < 0)
        return r;
    run->summary.tests += c.n;
    if (!(c.failed_once = calloc(c.n + 1, sizeof(bool))))
        return atx_error_oom();
    r = jr_each_attempt(j, report_attempt, &c);
    if (r == 0)
        r = jr_each_final(j, report_final, &c);
    free(c.failed_once);
    /* Tests the journal has no final result for: the run is unfinished. */
    if (r == 0)
        run->summary.not_run += c.n - (run->done - done);
    return r;
}

int atx_run_report(atx_run *run, atx_summary *summary)
{
    char *v;
    int r;

    if (!run)
        return atx_error_set(ATX_EINVAL, "no run");
    if (run->executed)
        return atx_error_set(ATX_ESTATE, "a run executes once");
    run->executed = true;
    run->reporting = true;
    if ((r = jr_open(run->results_dir, JR_RESUME, &run->jr)) < 0)
        return r;
    if (!(v = jr_meta_get(run->jr, "run_id")))
        return atx_error_set(ATX_EPARSE, "%s holds no run", jr_path(run->jr));
    free(run->run_id);
    run->run_id = v;
    run->hostname = jr_meta_get(run->jr, "hostname");
    jr_meta_int(run->jr, "started_ns", &run->summary.started_ns);
    jr_meta_int(run->jr, "duration_ns", &run->summary.duration_ns);
    if ((r = atx_run_tally(run, run->jr)) < 0)
        return r;
    run->replay_seq = jr_last_seq(run->jr);
    run->replay_count = jr_count_results(run->jr);
    r = atx_run_replay(run, summary);
    jr_close(run->jr);
    run->jr = NULL;
    return r;
}

int atx_run_replay(atx_run *run, atx_summary *summary)
{
    int r;

    run->agg_closing = true;
    if ((r = pthread_create(&run->agg_thread, NULL, agg_main, run)) != 0)
        return atx_error_set(-r, "cannot start the aggregator thread: %s", strerror(r));
    pthread_join(run->agg_thread, NULL);
    if (summary)
        *summary = run->summary;
    return 0;
}

int atx_summary_exit_code(const atx_summary *s)
{
    if (!s)
        return 2;
    if (s->infra_exhausted)
        return 3;
    if (s->failed || s->errors || s->infra || s->not_run || s->cancelled)
        return 1;
    return 0;
}
