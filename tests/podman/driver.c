/*
 * A driver for tests/podman.sh: runs a few tests on podman systems through
 * an executor compiled in here ("probe"), which drives the leased system
 * directly: spawn with pipes, env and cwd, copies in and out with modes, all
 * through the lease's agent (one `podman exec -i`), deadlines, liveness.
 * Each result is printed as one line:
 *   result TEST STATUS SYSTEM NOTE
 *
 * usage: podman_driver RESULTS_DIR IMAGE MODE
 *   direct  the checks above on two slots, plus label requirements
 *   lost    a test whose container is removed by the caller meanwhile
 *           (it writes RESULTS_DIR/ready holding the container's hostname)
 *   hang    a test that waits forever (for kill -9; writes RESULTS_DIR/ready)
 */
#define _GNU_SOURCE 1
#include <atx.h>
#include <atx/plugin/aggregator.h>
#include <atx/plugin/executor.h>
#include <atx/plugin/provisioner.h>

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

static const char *results_dir;

/* ---- helpers ---- */

typedef struct check {
    char note[2048];
    int failed;
} check;

static void failf(check *c, const char *fmt, ...) ATX_PRINTF(2, 3);
static void failf(check *c, const char *fmt, ...)
{
    va_list ap;
    if (c->failed)
        return;
    c->failed = 1;
    va_start(ap, fmt);
    vsnprintf(c->note, sizeof(c->note), fmt, ap);
    va_end(ap);
}

/* Run argv on the system, feeding @p input, collecting stdout (and stderr
 * merged); returns the exit code, or -1000 - errno-ish on trouble. */
static int run_on(atx_system *sys, const char *const *argv, const char *const *env,
                  const char *cwd, unsigned flags, const char *input, char *out, size_t len)
{
    atx_spawn_opts o = ATX_SPAWN_OPTS_INIT;
    atx_proc *p;
    atx_exit ex;
    size_t have = 0;

    o.argv = argv;
    o.env = env;
    o.cwd = cwd;
    o.flags = flags | ATX_SPAWN_STDOUT_PIPE | ATX_SPAWN_STDERR_TO_STDOUT |
              (input ? ATX_SPAWN_STDIN_PIPE : 0);
    o.deadline_ns = atx_now_ns() + 60 * ATX_NSEC_PER_SEC;
    out[0] = '\0';
    if (atx_system_spawn(sys, &o, &p) < 0)
        return -1000;
    if (input) {
        int fd = atx_proc_stdin_fd(p);
        if (write(fd, input, strlen(input)) < 0)
            return -1001;
        atx_proc_close_stdin(p);
    }
    int fd = atx_proc_stdout_fd(p);
    for (;;) {
        struct pollfd pfd = { fd, POLLIN, 0 };
        poll(&pfd, 1, 60000);
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            break;
        if (have + (size_t)n < len) {
            memcpy(out + have, buf, (size_t)n);
            have += (size_t)n;
            out[have] = '\0';
        }
    }
    int r = atx_proc_wait(p, -1, &ex);
    atx_proc_free(p);
    if (r < 0)
        return -1002;
    return ex.exited ? ex.code : -ex.signal;
}

static void chomp(char *s)
{
    s[strcspn(s, "\n")] = '\0';
}

/* ---- the checks ---- */

static void check_spawn(atx_system *sys, check *c)
{
    char out[8192], host[256] = "";
    const char *osr[] = { "cat", "/etc/os-release", NULL };
    const char *sh[] = { "sh", "-c", "echo \"$A|$B\"; pwd; cat /proc/sys/kernel/hostname", NULL };
    const char *env[] = { "A=one two", "B=$HOME", NULL };
    const char *cat[] = { "cat", NULL };
    const char *ex7[] = { "sh", "-c", "echo oops >&2; exit 7", NULL };
    const char *clr[] = { "sh", "-c", "echo \"${HOME-unset}|$C\"", NULL };
    const char *cenv[] = { "C=only", NULL };
    int code;

    gethostname(host, sizeof(host));
    if ((code = run_on(sys, osr, NULL, NULL, 0, NULL, out, sizeof(out))) != 0 ||
        !strstr(out, "ID=busybox"))
        failf(c, "cat /etc/os-release: exit %d, output '%s'", code, out);
    if ((code = run_on(sys, sh, env, NULL, 0, NULL, out, sizeof(out))) != 0)
        failf(c, "sh: exit %d: %s", code, out);
    char *l1 = out, *l2 = strchr(l1, '\n'), *l3 = l2 ? strchr(l2 + 1, '\n') : NULL;
    if (!l2 || !l3) {
        failf(c, "sh: output '%s'", out);
        return;
    }
    *l2++ = '\0';
    *l3++ = '\0';
    chomp(l3);
    if (strcmp(l1, "one two|$HOME") != 0)
        failf(c, "environment: got '%s'", l1);
    if (strcmp(l2, atx_system_workdir(sys)) != 0)
        failf(c, "default cwd: got '%s', want '%s'", l2, atx_system_workdir(sys));
    if (!*l3 || strcmp(l3, host) == 0)
        failf(c, "hostname in the container '%s' is the host's '%s'", l3, host);
    const char *label = atx_labels_get(atx_system_labels(sys), "hostname");
    if (!label || strcmp(label, l3) != 0)
        failf(c, "hostname label '%s', container says '%s'", label ? label : "(none)", l3);
    if ((code = run_on(sys, cat, NULL, "/", 0, "through stdin\n", out, sizeof(out))) != 0 ||
        strcmp(out, "through stdin\n") != 0)
        failf(c, "cat with stdin: exit %d, '%s'", code, out);
    if ((code = run_on(sys, ex7, NULL, NULL, 0, NULL, out, sizeof(out))) != 7 ||
        strcmp(out, "oops\n") != 0)
        failf(c, "exit 7: got %d, '%s'", code, out);
    if ((code = run_on(sys, clr, cenv, NULL, ATX_SPAWN_CLEAR_ENV, NULL, out, sizeof(out))) != 0 ||
        strcmp(out, "unset|only\n") != 0)
        failf(c, "cleared environment: exit %d, '%s'", code, out);
}

static void check_copy(atx_system *sys, check *c)
{
    char dir[4096], path[4200], back[4200], out[8192];
    const char *st[] = { "stat", "-c", "%a %s %n", "tool", "tree/sub/leaf", NULL };
    FILE *f;
    int code;

    snprintf(dir, sizeof(dir), "%s/copy", results_dir);
    mkdir(dir, 0755);
    snprintf(path, sizeof(path), "%s/tool", dir);
    if (!(f = fopen(path, "w"))) {
        failf(c, "cannot write %s", path);
        return;
    }
    fputs("#!/bin/sh\necho tool ran\n", f);
    fclose(f);
    chmod(path, 0750);
    snprintf(path, sizeof(path), "%s/tree", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/tree/sub", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/tree/sub/leaf", dir);
    if ((f = fopen(path, "w"))) {
        fputs("leaf\n", f);
        fclose(f);
    }
    snprintf(path, sizeof(path), "%s/tool", dir);
    if (atx_system_copy_in(sys, path, "tool") < 0)
        failf(c, "copy_in tool: %s", atx_error_last()->message);
    snprintf(path, sizeof(path), "%s/tree", dir);
    if (atx_system_copy_in(sys, path, "tree") < 0)
        failf(c, "copy_in tree: %s", atx_error_last()->message);
    if ((code = run_on(sys, st, NULL, NULL, 0, NULL, out, sizeof(out))) != 0 ||
        strcmp(out, "750 24 tool\n644 5 tree/sub/leaf\n") != 0)
        failf(c, "after copy_in: exit %d, '%s'", code, out);
    const char *tool[] = { "./tool", NULL };
    if ((code = run_on(sys, tool, NULL, NULL, 0, NULL, out, sizeof(out))) != 0 ||
        strcmp(out, "tool ran\n") != 0)
        failf(c, "./tool: exit %d, '%s'", code, out);
    snprintf(back, sizeof(back), "%s/back", dir);
    char remote[4200];
    snprintf(remote, sizeof(remote), "%s/tree", atx_system_workdir(sys));
    if (atx_system_copy_out(sys, remote, back) < 0)
        failf(c, "copy_out: %s", atx_error_last()->message);
    snprintf(path, sizeof(path), "%s/sub/leaf", back);
    if (!(f = fopen(path, "r")) || !fgets(out, sizeof(out), f) || strcmp(out, "leaf\n") != 0)
        failf(c, "copied out %s: missing or wrong", path);
    if (f)
        fclose(f);
    if (atx_system_copy_in(sys, "/no/such/file", "x") == 0)
        failf(c, "copy_in of a missing file succeeded");
    else if (!strstr(atx_error_last()->message, "/no/such/file"))
        failf(c, "copy_in error does not name the file: %s", atx_error_last()->message);
}

/* The lease's agent: a few processes, then one past its deadline whose whole
 * tree dies inside the container (the agent enforces it). */
static void check_agent(atx_system *sys, check *c)
{
    char out[4096] = "";
    const char *argv[] = { "sh", "-c", "echo agent $PPID in $(pwd); uname -m", NULL };
    struct utsname u;
    int code;

    uname(&u);
    for (int i = 0; i < 3; i++) {
        if ((code = run_on(sys, argv, NULL, NULL, 0, NULL, out, sizeof(out))) != 0)
            failf(c, "agent run %d: exit %d: %s", i, code, out);
        else if (!strstr(out, u.machine) || !strstr(out, atx_system_workdir(sys)))
            failf(c, "agent run %d: output '%s'", i, out);
    }
    const char *hang[] = { "sh", "-c", "sleep 300 & setsid sleep 301 & sleep 302; wait", NULL };
    atx_spawn_opts o = ATX_SPAWN_OPTS_INIT;
    atx_proc *p;
    atx_exit ex;
    o.argv = hang;
    o.deadline_ns = atx_now_ns() + ATX_NSEC_PER_SEC;
    if (atx_system_spawn(sys, &o, &p) < 0) {
        failf(c, "spawn: %s", atx_error_last()->message);
        return;
    }
    if (atx_proc_wait(p, 30 * ATX_NSEC_PER_SEC, &ex) != 0 || !ex.timed_out)
        failf(c, "agent deadline: not timed out (%s)", atx_error_last()->message);
    atx_proc_free(p);
    const char *ps[] = { "ps", NULL };
    char pso[8192];
    run_on(sys, ps, NULL, NULL, 0, NULL, pso, sizeof(pso));
    if (strstr(pso, "sleep 30"))
        failf(c, "the timed-out tree is still there: %s", pso);
    if (atx_system_alive(sys, 10 * ATX_NSEC_PER_SEC) != 0)
        failf(c, "alive: %s", atx_error_last()->message);
}

/* Write RESULTS/ready with the container's hostname, atomically. */
static void ready(atx_system *sys)
{
    char tmp[4200], path[4200];
    snprintf(tmp, sizeof(tmp), "%s/ready.tmp", results_dir);
    snprintf(path, sizeof(path), "%s/ready", results_dir);
    FILE *f = fopen(tmp, "w");
    if (f) {
        fprintf(f, "%s\n", atx_labels_get(atx_system_labels(sys), "hostname"));
        fclose(f);
        rename(tmp, path);
    }
}

static void check_lost(atx_system *sys, check *c, int hang)
{
    const char *argv[] = { "sleep", hang ? "600" : "60", NULL };
    atx_spawn_opts o = ATX_SPAWN_OPTS_INIT;
    atx_proc *p;
    atx_exit ex;

    o.argv = argv;
    if (atx_system_spawn(sys, &o, &p) < 0) {
        failf(c, "spawn: %s", atx_error_last()->message);
        return;
    }
    ready(sys);
    int64_t t0 = atx_now_ns();
    int r = atx_proc_wait(p, -1, &ex);
    if (r != ATX_ELOST)
        failf(c, "a process on a removed container: got %d (%s), want ATX_ELOST", r,
              atx_error_last()->message);
    else if (atx_now_ns() - t0 > 30 * ATX_NSEC_PER_SEC)
        failf(c, "the loss took %lld s to notice", (long long)((atx_now_ns() - t0) / ATX_NSEC_PER_SEC));
    atx_proc_free(p);
    if ((r = atx_system_alive(sys, 10 * ATX_NSEC_PER_SEC)) != ATX_ELOST)
        failf(c, "alive on a removed container: got %d, want ATX_ELOST", r);
    else
        printf("alive: %s\n", atx_error_last()->message);
}

/* ---- the executor ---- */

static int probe_create(atx_plugin_ctx *ctx, void **state)
{
    *state = ctx;
    return 0;
}

static void probe_destroy(void *state)
{
    (void)state;
}

static int probe_run(void *state, atx_attempt *a)
{
    const atx_test *t = atx_attempt_test(a);
    atx_system *sys = atx_attempt_system(a);
    json_object *spec = json_tokener_parse(atx_test_spec_json(t)), *what;
    const char *kind = "";
    check c = { "", 0 };
    atx_result *r;

    (void)state;
    if (spec && json_object_object_get_ex(spec, "check", &what))
        kind = json_object_get_string(what);
    if (atx_system_shares_host(sys))
        failf(&c, "a podman system claims to share the host's files");
    if (strcmp(kind, "spawn") == 0)
        check_spawn(sys, &c);
    else if (strcmp(kind, "copy") == 0)
        check_copy(sys, &c);
    else if (strcmp(kind, "agent") == 0)
        check_agent(sys, &c);
    else if (strcmp(kind, "lost") == 0 || strcmp(kind, "hang") == 0)
        check_lost(sys, &c, strcmp(kind, "hang") == 0);
    json_object_put(spec);
    if (atx_result_new(atx_test_name(t), NULL, &r) < 0)
        return ATX_ENOMEM;
    atx_result_set_status(r, c.failed ? ATX_STATUS_FAIL : ATX_STATUS_PASS);
    atx_result_set_note(r, c.failed ? c.note : "ok");
    return atx_attempt_emit(a, r);
}

static const atx_executor_vtable probe_vt = {
    .version = ATX_EXECUTOR_VTABLE_VERSION,
    .create = probe_create,
    .destroy = probe_destroy,
    .run = probe_run,
};
static const atx_plugin_descriptor probe_plugin = {
    ATX_ABI_MAJOR, ATX_ABI_MINOR, sizeof(atx_plugin_descriptor), ATX_PLUGIN_EXECUTOR,
    "probe", "1", "drives podman systems for tests/podman.sh", &probe_vt
};

/* ---- results as lines ---- */

static int print_result(void *state, const atx_result *r)
{
    const atx_labels *l = atx_result_system_labels(r);
    const char *host = l ? atx_labels_get(l, "hostname") : NULL;
    (void)state;
    printf("result %s %s %s host=%s %s\n", atx_result_test(r), atx_result_status_word(r),
           atx_result_system_id(r) ? atx_result_system_id(r) : "-", host ? host : "-",
           atx_result_note(r) ? atx_result_note(r) : "");
    fflush(stdout);
    return 0;
}

static int print_create(atx_plugin_ctx *ctx, void **state)
{
    *state = ctx;
    return 0;
}

static const atx_aggregator_vtable print_vt = {
    .version = ATX_AGGREGATOR_VTABLE_VERSION,
    .create = print_create,
    .destroy = probe_destroy,
    .result = print_result,
};
static const atx_plugin_descriptor print_plugin = {
    ATX_ABI_MAJOR, ATX_ABI_MINOR, sizeof(atx_plugin_descriptor), ATX_PLUGIN_AGGREGATOR,
    "print", "1", "prints results as lines", &print_vt
};

static void log_line(void *ud, atx_log_level level, const char *origin, const char *msg)
{
    (void)ud;
    (void)level;
    fprintf(stderr, "log %s: %s\n", origin ? origin : "atx", msg);
}

static int add(atx_run *run, const char *name, const char *check_kind, const char *req_key,
               const char *req_value)
{
    atx_test *t;
    char spec[128];
    int r;

    snprintf(spec, sizeof(spec), "{\"check\": \"%s\"}", check_kind);
    if ((r = atx_test_new(name, "probe", &t)) < 0 || (r = atx_test_set_spec_json(t, spec)) < 0 ||
        (req_key && (r = atx_test_require(t, req_key, req_value)) < 0) ||
        (r = atx_test_set_timeout(t, 120 * ATX_NSEC_PER_SEC)) < 0)
        return r;
    return atx_run_add_test(run, t);
}

int main(int argc, char **argv)
{
    atx_run_opts ro = ATX_RUN_OPTS_INIT;
    atx_run *run;
    atx_summary sum;
    struct utsname u;
    char config[1024];
    int r;

    if (argc != 4) {
        fprintf(stderr, "usage: podman_driver RESULTS_DIR IMAGE direct|lost|hang\n");
        return 2;
    }
    results_dir = argv[1];
    /* The agent's connection is a pipe to podman exec, which dies with a
     * removed container: a write to it must fail, not kill us (as in atx). */
    signal(SIGPIPE, SIG_IGN);
    atx_init();
    uname(&u);
    ro.results_dir = results_dir;
    ro.log = log_line;
    ro.log_level = ATX_LOG_DEBUG;
    if ((r = atx_run_new(&ro, &run)) < 0)
        goto fail;
    snprintf(config, sizeof(config), "{\"image\": \"%s\", \"slots\": %d, \"labels\": {\"lab\": \"ci\"}}",
             argv[2], strcmp(argv[3], "direct") == 0 ? 2 : 1);
    if ((r = atx_run_add_builtin(run, &probe_plugin, NULL, NULL)) < 0 ||
        (r = atx_run_add_builtin(run, &print_plugin, NULL, NULL)) < 0 ||
        (r = atx_run_add_provisioner(run, "podman", config)) < 0)
        goto fail;
    if (strcmp(argv[3], "direct") == 0) {
        if ((r = add(run, "/spawn", "spawn", "lab", "ci")) < 0 ||
            (r = add(run, "/copy", "copy", "distro", "busybox-1")) < 0 ||
            (r = add(run, "/agent", "agent", "arch", u.machine)) < 0 ||
            (r = add(run, "/provider", "none", "provider", "podman")) < 0 ||
            (r = add(run, "/nolabel", "none", "os_id", "no-such-os")) < 0)
            goto fail;
    } else if ((r = add(run, strcmp(argv[3], "lost") == 0 ? "/lost" : "/hang", argv[3], NULL,
                        NULL)) < 0) {
        goto fail;
    }
    if ((r = atx_run_execute(run, &sum)) < 0)
        goto fail;
    printf("summary tests=%zu passed=%zu failed=%zu errors=%zu infra=%zu\n", sum.tests,
           sum.passed, sum.failed, sum.errors, sum.infra);
    atx_run_free(run);
    return atx_summary_exit_code(&sum);
fail:
    fprintf(stderr, "podman_driver: %s\n", atx_error_last()->message);
    return 2;
}
