/*
 * exec: a test is a command (argv) with environment, working directory and
 * timeout. The exit code decides pass or fail; stdout and stderr are
 * captured, keeping head and tail past a cap. At the timeout, and when the
 * run is cancelled, the whole process tree is killed (TERM, grace, KILL).
 */
#define _GNU_SOURCE 1
#include "client.h"

#include <atx/plugin/capture.h>
#include <atx/plugin/executor.h>
#include <atx/plugin/text.h>

#include <errno.h>
#include <stdbool.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CAP (64 * 1024)

/* The agent on a leased system that does not share this host. */
typedef struct remote {
    struct remote *next;
    atx_system *sys;
    agent_client *agent;
} remote;

typedef struct exec_state {
    atx_plugin_ctx *ctx;
    int64_t grace_ns;        /* 0: the run's policy */
    size_t head_cap, tail_cap;
    pthread_mutex_t mu;      /* remotes */
    remote *remotes;
} exec_state;

/* A parsed spec. */
typedef struct spec {
    json_object *root;
    const char **argv;
    const char *cwd;         /* as given (relative or absolute), or NULL */
    const char *basedir;     /* the plan's folder, or NULL */
    char *host_cwd;          /* on a system sharing this host: cwd resolved */
    int skip_code;           /* -1: none */
} spec;

static const char *const spec_keys[] = { "command", "cwd", "skip_exit_code", "basedir", NULL };

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
            return atx_error_set(ATX_EINVAL, "test %s: unknown key '%s' for the exec executor",
                                 atx_test_name(t), key);
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
    return 0;
}

static int exec_create(atx_plugin_ctx *ctx, void **out)
{
    static const char *const keys[] = { "kill_grace", "output_head", "output_tail", NULL };
    int64_t head = DEFAULT_CAP, tail = DEFAULT_CAP;
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
        return atx_error_set(ATX_EINVAL, "exec: output caps must not be negative");
    }
    s->ctx = ctx;
    s->head_cap = (size_t)head;
    s->tail_cap = (size_t)tail;
    pthread_mutex_init(&s->mu, NULL);
    *out = s;
    return 0;
}

static void exec_destroy(void *state)
{
    exec_state *s = state;
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* On a system that does not share this host, tests run through the agent,
 * uploaded and started once per lease. */
static int exec_prepare(void *state, atx_system *sys)
{
    exec_state *s = state;
    char agent[PATH_MAX];
    remote *rm;
    int r;

    if (atx_system_shares_host(sys))
        return 0;
    if ((r = agent_default_path(agent, sizeof(agent))) < 0)
        return r;
    rm = calloc(1, sizeof(*rm));
    if (!rm)
        return atx_error_set(ATX_ENOMEM, "out of memory");
    if ((r = agent_client_start_on(sys, agent, "exec", &rm->agent)) < 0) {
        free(rm);
        return r;
    }
    rm->sys = sys;
    pthread_mutex_lock(&s->mu);
    rm->next = s->remotes;
    s->remotes = rm;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static remote *remote_of(exec_state *s, atx_system *sys, bool unlink_it)
{
    pthread_mutex_lock(&s->mu);
    remote **pp = &s->remotes;
    while (*pp && (*pp)->sys != sys)
        pp = &(*pp)->next;
    remote *rm = *pp;
    if (rm && unlink_it)
        *pp = rm->next;
    pthread_mutex_unlock(&s->mu);
    return rm;
}

static void exec_finish(void *state, atx_system *sys)
{
    remote *rm = remote_of(state, sys, true);
    if (rm) {
        agent_client_free(rm->agent);
        free(rm);
    }
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

static int capture_sink(void *ud, int stream, const char *data, size_t len)
{
    atx_capture *cap = ud;
    atx_capture_append(&cap[stream ? 1 : 0], data, len);
    return 0;
}

static int hurry(void *ud)
{
    return atx_attempt_cancelled(ud) >= 2;
}

/* A test on a system that does not share this host: through its agent. */
static int run_remote(exec_state *s, atx_attempt *a, remote *rm, const spec *sp,
                      char **env, atx_result *res, atx_capture cap[2])
{
    int64_t timeout = atx_attempt_timeout(a);
    int64_t started_wall = atx_wallclock_ns(), start = atx_now_ns();
    int64_t deadline = start + timeout;
    agent_run_opts o = { sp->argv, (const char *const *)env, sp->cwd, 0, &deadline,
                         s->grace_ns > 0 ? s->grace_ns : atx_attempt_kill_grace(a),
                         atx_attempt_cancel_fd(a), hurry, a };
    agent_sink sink = { cap, capture_sink, NULL };
    agent_result ar;
    int r = agent_client_run(rm->agent, &o, &sink, &ar);

    if (r == ATX_ESPAWN) {
        atx_result_set_status(res, ATX_STATUS_ERROR);
        atx_result_set_error_type(res, "spawn");
        atx_result_set_note(res, atx_error_last()->message);
    } else if (r < 0) {
        return r; /* the system is lost: infra, and the test runs elsewhere */
    } else {
        set_outcome(res, ar.timed_out, ar.interrupted, timeout, ar.exited, ar.code, ar.signal,
                    sp->skip_code);
    }
    atx_result_set_times(res, started_wall, atx_now_ns() - start);
    set_capture(res, ATX_STREAM_STDOUT, &cap[0]);
    set_capture(res, ATX_STREAM_STDERR, &cap[1]);
    return 0;
}

static int exec_run(void *state, atx_attempt *a)
{
    exec_state *s = state;
    const atx_test *t = atx_attempt_test(a);
    int64_t grace = s->grace_ns > 0 ? s->grace_ns : atx_attempt_kill_grace(a);
    int64_t timeout = atx_attempt_timeout(a);
    atx_spawn_opts o = ATX_SPAWN_OPTS_INIT;
    atx_capture cap[2];
    atx_result *res = NULL;
    atx_proc *p = NULL;
    char **env = NULL;
    spec sp;
    int r;

    atx_capture_init(&cap[0], s->head_cap, s->tail_cap);
    atx_capture_init(&cap[1], s->head_cap, s->tail_cap);
    if ((r = spec_parse(t, &sp)) < 0 || (r = build_env(a, &env)) < 0 ||
        (r = atx_result_new(atx_test_name(t), NULL, &res)) < 0)
        goto out;

    if (!atx_system_shares_host(atx_attempt_system(a))) {
        remote *rm = remote_of(s, atx_attempt_system(a), false);
        if (!rm) {
            r = atx_error_set(ATX_EINFRA, "exec: system %s was not prepared",
                              atx_system_id(atx_attempt_system(a)));
            goto out;
        }
        if ((r = run_remote(s, a, rm, &sp, env, res, cap)) == 0) {
            r = atx_attempt_emit(a, res);
            res = NULL;
        }
        goto out;
    }

    int64_t started_wall = atx_wallclock_ns();
    int64_t start = atx_now_ns();
    int64_t deadline = start + timeout;
    o.argv = sp.argv;
    o.env = (const char *const *)env;
    o.cwd = sp.host_cwd ? sp.host_cwd : sp.cwd;
    o.flags = ATX_SPAWN_STDOUT_PIPE | ATX_SPAWN_STDERR_PIPE;
    o.kill_grace_ns = grace;
    r = atx_system_spawn(atx_attempt_system(a), &o, &p);
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

    bool timed_out = false, interrupted = false, exited = false;
    int fds[2] = { atx_proc_stdout_fd(p), atx_proc_stderr_fd(p) };
    int64_t drain_until = 0;
    atx_exit ex = { 0 };

    while (fds[0] >= 0 || fds[1] >= 0 || !exited) {
        struct pollfd pfd[4];
        int idx[4], n = 0;
        for (int i = 0; i < 2; i++) {
            if (fds[i] >= 0) {
                pfd[n] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
                idx[n++] = i;
            }
        }
        int wait_at = -1, cancel_at = -1;
        if (!exited) {
            wait_at = n;
            pfd[n++] = (struct pollfd){ .fd = atx_proc_wait_fd(p), .events = POLLIN };
        }
        if (!interrupted && !timed_out) {
            cancel_at = n;
            pfd[n++] = (struct pollfd){ .fd = atx_attempt_cancel_fd(a), .events = POLLIN };
        }
        int64_t now = atx_now_ns();
        int64_t until = exited ? drain_until : deadline;
        int ms = until <= now ? 0 : (int)((until - now + 999999) / 1000000);
        /* During a graceful cancel, look every 50 ms for a hurry. */
        if (interrupted && !exited && ms > 50)
            ms = 50;
        int k = poll(pfd, (nfds_t)n, ms);
        if (k < 0 && errno != EINTR) {
            r = atx_error_set(-errno, "poll: %s", strerror(errno));
            break;
        }
        for (int j = 0; j < n && k > 0; j++) {
            if (!pfd[j].revents || j == wait_at || j == cancel_at)
                continue;
            int i = idx[j];
            int64_t got = atx_capture_read_fd(&cap[i], fds[i]);
            if (got == 0 || (got < 0 && got != -EAGAIN)) {
                fds[i] = -1; /* closed by atx_proc_free */
            }
        }
        if (cancel_at >= 0 && (pfd[cancel_at].revents & POLLIN)) {
            interrupted = true;
            atx_proc_kill_tree(p, atx_attempt_cancelled(a) >= 2 ? SIGKILL : SIGTERM, 0);
            /* After the grace, KILL: handled below as a second deadline. */
            deadline = atx_now_ns() + grace;
        }
        now = atx_now_ns();
        if (interrupted && !exited && atx_attempt_cancelled(a) >= 2 && deadline > now) {
            atx_proc_kill_tree(p, SIGKILL, 0);
            deadline = now;
        }
        if (!exited && wait_at >= 0 && (pfd[wait_at].revents & POLLIN)) {
            atx_proc_wait(p, 0, &ex); /* reaps and kills the rest of the group */
            exited = true;
            /* Whatever still holds the pipes was just killed: drain briefly. */
            drain_until = now + 500 * 1000000LL;
        } else if (!exited && !interrupted && !timed_out && now >= deadline) {
            timed_out = true;
            atx_proc_kill_tree(p, SIGTERM, 0);
            deadline = now + grace;
        } else if (!exited && (timed_out || interrupted) && now >= deadline) {
            atx_proc_kill_tree(p, SIGKILL, 0);
            deadline = now + 3600 * ATX_NSEC_PER_SEC;
        }
        if (exited && now >= drain_until)
            break;
    }
    int64_t duration = atx_now_ns() - start;
    if (r < 0)
        goto out;

    set_outcome(res, timed_out, interrupted, timeout, ex.exited, ex.code, ex.signal, sp.skip_code);
    atx_result_set_times(res, started_wall, duration);
    set_capture(res, ATX_STREAM_STDOUT, &cap[0]);
    set_capture(res, ATX_STREAM_STDERR, &cap[1]);
    r = atx_attempt_emit(a, res);
    res = NULL;
out:
    atx_proc_free(p);
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
    .prepare = exec_prepare,
    .run = exec_run,
    .discover = NULL,
    .finish = exec_finish,
};

ATX_PLUGIN_DEFINE(ATX_PLUGIN_EXECUTOR, "exec", ATX_VERSION_STRING,
                  "Runs a command; its exit code decides pass or fail", &exec_vtable)
