/*
 * The system-side agent and libatx's connection to it, over a pipe on this
 * host (a system that shares this host's files but does not contain its
 * processes, so its lease runs an agent): streams, stdin, the control
 * channel, exit codes, spawn failures, deadlines the agent enforces itself,
 * cancels and hurries, pseudo-terminals, copies of files and trees (skipping
 * what is there), pings, containment with and without cgroups (processes
 * that leave their session or double-fork are gone when the test ends),
 * the end of the connection, and liveness: a frozen agent is declared lost
 * and reaped.
 */
#define _GNU_SOURCE 1
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <atx.h>
#include <atx/plugin/process.h>
#include <atx/plugin/provisioner.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "marker.h"

static char scratch[128];

static int host_spawn(void *impl, const atx_spawn_opts *o, atx_proc **out)
{
    (void)impl;
    return atx_spawn_local(o, out);
}
static const atx_system_ops host_ops = { ATX_SYSTEM_OPS_VERSION, host_spawn, NULL, NULL, NULL,
                                         ATX_SYSTEM_HOST_FS, NULL };

/* The agent this process started (its child named atx-agent). */
static pid_t agent_pid(void)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    pid_t found = 0;
    while (d && (de = readdir(d))) {
        char path[64], buf[512];
        snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (fgets(buf, sizeof(buf), f)) {
            int ppid = 0;
            char *rp = strrchr(buf, ')');
            if (strstr(buf, "(atx-agent)") && rp && sscanf(rp + 2, "%*c %d", &ppid) == 1 &&
                ppid == getpid())
                found = (pid_t)atoi(de->d_name);
        }
        fclose(f);
    }
    if (d)
        closedir(d);
    return found;
}

static atx_system *start(int64_t interval_ms, int64_t timeout_ms)
{
    atx_system *sys;
    atx_agent_opts ao = ATX_AGENT_OPTS_INIT;
    assert_int_equal(atx_system_new(&host_ops, NULL, "pipe-host", NULL, scratch, &sys), 0);
    ao.liveness_interval_ns = interval_ms * ATX_NSEC_PER_MSEC;
    ao.liveness_timeout_ns = timeout_ms * ATX_NSEC_PER_MSEC;
    int r = atx_system_start_agent(sys, &ao);
    if (r != 0)
        fail_msg("start: %s", atx_error_last()->message);
    return sys;
}

static int setup(void **state)
{
    marker_make("agent-test");
    snprintf(scratch, sizeof(scratch), "/tmp/%s.d", marker);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf %s && mkdir -p %s", scratch, scratch);
    assert_int_equal(system(cmd), 0);
    *state = start(5000, 30000);
    return 0;
}

static int teardown(void **state)
{
    atx_system_free(*state);
    int left = marker_alive();
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf %s %s", sleeper, scratch);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(left, 0);
    return 0;
}

typedef struct ran {
    atx_capture cap[2];
    atx_proc_outcome res;
    int rc;
    int64_t ms;
} ran;

static void ran_release(ran *r)
{
    atx_capture_release(&r->cap[0]);
    atx_capture_release(&r->cap[1]);
}

static void sh(atx_system *sys, ran *r, const char *script, unsigned flags,
               atx_proc_run_opts *o, int64_t spawn_deadline)
{
    const char *argv[] = { "sh", "-c", script, NULL };
    char env0[200];
    snprintf(env0, sizeof(env0), "SLEEPER=%s", sleeper);
    const char *env[] = { env0, NULL };
    atx_spawn_opts so = ATX_SPAWN_OPTS_INIT;
    atx_proc_run_opts def = ATX_PROC_RUN_OPTS_INIT;
    memset(r, 0, sizeof(*r));
    atx_capture_init(&r->cap[0], 1 << 22, 0);
    atx_capture_init(&r->cap[1], 1 << 20, 0);
    if (!o)
        o = &def;
    o->capture[0] = &r->cap[0];
    o->capture[1] = &r->cap[1];
    so.argv = argv;
    so.env = env;
    so.flags = ATX_SPAWN_STDOUT_PIPE | ATX_SPAWN_STDERR_PIPE | flags;
    so.deadline_ns = spawn_deadline;
    so.kill_grace_ns = 300 * ATX_NSEC_PER_MSEC;
    int64_t t0 = atx_now_ns();
    r->rc = atx_proc_run_spawn(sys, &so, o, &r->res);
    r->ms = (atx_now_ns() - t0) / ATX_NSEC_PER_MSEC;
}

static void streams_stdin_exit(void **state)
{
    atx_proc_run_opts o = ATX_PROC_RUN_OPTS_INIT;
    size_t n = 3 * 1000 * 1000;
    char *in = malloc(n);
    ran r;
    memset(in, 'x', n);
    o.input = in;
    o.input_len = n;
    sh(*state, &r, "wc -c; head -c 5000000 /dev/zero; echo to-err >&2; exit 7",
       ATX_SPAWN_STDIN_PIPE, &o, 0);
    assert_int_equal(r.rc, 0);
    assert_true(r.res.exit.exited);
    assert_int_equal(r.res.exit.code, 7);
    assert_int_equal(r.cap[0].total, 8 + 5000000);
    assert_memory_equal(r.cap[0].head, "3000000\n", 8);
    char *err = capture_text(&r.cap[1]);
    assert_string_equal(err, "to-err\n");
    free(err);
    free(in);
    ran_release(&r);
    /* Merged, and on a pseudo-terminal. */
    sh(*state, &r, "echo one; echo two >&2", ATX_SPAWN_STDERR_TO_STDOUT, NULL, 0);
    char *out = capture_text(&r.cap[0]);
    assert_string_equal(out, "one\ntwo\n");
    free(out);
    ran_release(&r);
    sh(*state, &r, "[ -t 0 ] && [ -t 1 ] && echo tty", ATX_SPAWN_PTY, NULL, 0);
    out = capture_text(&r.cap[0]);
    assert_non_null(strstr(out, "tty"));
    free(out);
    ran_release(&r);
}

typedef struct sunk {
    char ctl[256];
    size_t n;
    bool stop;
} sunk;

static int on_control(void *ud, const char *d, size_t n)
{
    sunk *s = ud;
    if (s->n + n < sizeof(s->ctl)) {
        memcpy(s->ctl + s->n, d, n);
        s->n += n;
    }
    return s->stop ? -1 : 0;
}

static void control_channel(void **state)
{
    sunk s = { 0 };
    atx_proc_sink sink = { &s, NULL, on_control, NULL };
    atx_proc_run_opts o = ATX_PROC_RUN_OPTS_INIT;
    ran r;
    o.sink = &sink;
    sh(*state, &r, "echo out; printf 'noop\\n' >&3", ATX_SPAWN_CONTROL, &o, 0);
    assert_int_equal(r.rc, 0);
    assert_int_equal(s.n, 5);
    assert_memory_equal(s.ctl, "noop\n", 5);
    ran_release(&r);
    /* A sink that refuses stops the test at once. */
    memset(&s, 0, sizeof(s));
    s.stop = true;
    sh(*state, &r, "echo bad >&3; exec \"$SLEEPER\" 30", ATX_SPAWN_CONTROL, &o, 0);
    assert_true(r.res.aborted);
    assert_int_equal(r.res.exit.signal, SIGKILL);
    assert_true(r.ms < 5000);
    ran_release(&r);
}

static void spawn_failure(void **state)
{
    const char *argv[] = { "/nonexistent/atx-program", NULL };
    atx_spawn_opts so = ATX_SPAWN_OPTS_INIT;
    atx_proc *p;
    so.argv = argv;
    assert_int_equal(atx_system_spawn(*state, &so, &p), ATX_ESPAWN);
    assert_non_null(strstr(atx_error_last()->message, "/nonexistent/atx-program"));
}

/* The agent kills at the deadline by itself: the host only waits. */
static void agent_enforces_deadline(void **state)
{
    const char *argv[] = { "sh", "-c", "trap '' TERM; \"$SLEEPER\" 30 & \"$SLEEPER\" 31", NULL };
    char env0[200];
    snprintf(env0, sizeof(env0), "SLEEPER=%s", sleeper);
    const char *env[] = { env0, NULL };
    atx_spawn_opts so = ATX_SPAWN_OPTS_INIT;
    atx_proc *p;
    atx_exit ex;
    so.argv = argv;
    so.env = env;
    so.deadline_ns = atx_now_ns() + 300 * ATX_NSEC_PER_MSEC;
    so.kill_grace_ns = 300 * ATX_NSEC_PER_MSEC;
    int64_t t0 = atx_now_ns();
    assert_int_equal(atx_system_spawn(*state, &so, &p), 0);
    assert_int_equal(atx_proc_wait(p, 10 * ATX_NSEC_PER_SEC, &ex), 0);
    int64_t ms = (atx_now_ns() - t0) / ATX_NSEC_PER_MSEC;
    assert_true(ex.timed_out);
    assert_false(ex.exited);
    assert_true(ms >= 550 && ms < 5000);
    atx_proc_free(p);
    assert_int_equal(marker_alive(), 0);
}

static void exit_beats_deadline(void **state)
{
    const char *argv[] = { "sh", "-c", "exit 4", NULL };
    atx_spawn_opts so = ATX_SPAWN_OPTS_INIT;
    atx_proc_run_opts o = ATX_PROC_RUN_OPTS_INIT;
    atx_proc_outcome res;
    atx_proc *p;
    so.argv = argv;
    assert_int_equal(atx_system_spawn(*state, &so, &p), 0);
    struct pollfd pfd = { .fd = atx_proc_wait_fd(p), .events = POLLIN };
    assert_int_equal(poll(&pfd, 1, 10000), 1);
    int64_t deadline = atx_now_ns() - ATX_NSEC_PER_SEC;
    o.deadline_ns = &deadline;
    assert_int_equal(atx_proc_run(p, &o, &res), 0);
    assert_false(res.exit.timed_out);
    assert_int_equal(res.exit.code, 4);
    atx_proc_free(p);
}

static int level;
static int get_level(void *ud)
{
    (void)ud;
    return level;
}

static void cancel_and_hurry(void **state)
{
    int cancel = eventfd(0, EFD_CLOEXEC);
    atx_proc_run_opts o = ATX_PROC_RUN_OPTS_INIT;
    ran r;
    o.cancel_fd = cancel;
    o.cancel_level = get_level;
    o.grace_ns = 10 * ATX_NSEC_PER_SEC;
    eventfd_write(cancel, 1);
    level = 1;
    sh(*state, &r, "exec \"$SLEEPER\" 30", 0, &o, 0);
    assert_true(r.res.interrupted);
    assert_int_equal(r.res.exit.signal, SIGTERM);
    ran_release(&r);
    level = 2;
    sh(*state, &r, "trap '' TERM; \"$SLEEPER\" 30", 0, &o, 0);
    assert_true(r.res.interrupted);
    assert_int_equal(r.res.exit.signal, SIGKILL);
    assert_true(r.ms < 3000);
    ran_release(&r);
    close(cancel);
}

/* setsid, double forks and nohup in tests that pass, fail and time out. */
static void contains(atx_system *sys)
{
    static const char *const ends[] = { "exit 0", "exit 1", "exec \"$SLEEPER\" 30" };
    for (int i = 0; i < 3; i++) {
        char script[512];
        ran r;
        atx_proc_run_opts o = ATX_PROC_RUN_OPTS_INIT;
        int64_t deadline = atx_now_ns() + 2 * ATX_NSEC_PER_SEC;
        o.deadline_ns = &deadline;
        snprintf(script, sizeof(script),
                 "setsid \"$SLEEPER\" 600 & "
                 "sh -c 'setsid \"$SLEEPER\" 601 </dev/null >/dev/null 2>&1 & exit 0'; "
                 "nohup \"$SLEEPER\" 602 >/dev/null 2>&1 & %s", ends[i]);
        sh(sys, &r, script, 0, &o, deadline);
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.res.exit.timed_out, i == 2);
        assert_int_equal(marker_alive(), 0);
        ran_release(&r);
    }
}

static void containment_with_cgroups(void **state)
{
    contains(*state);
}

static void containment_without_cgroups(void **state)
{
    setenv("ATX_AGENT_NO_CGROUP", "1", 1);
    atx_system *sys = start(5000, 30000);
    unsetenv("ATX_AGENT_NO_CGROUP");
    contains(sys);
    atx_system_free(sys);
}

static void put_text(const char *path, const char *t, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(t, f);
    fclose(f);
    chmod(path, mode);
}

static void copies(void **state)
{
    atx_system *sys = *state;
    char src[256], cmd[2048], path[512];
    ran r;
    snprintf(src, sizeof(src), "%s/src", scratch);
    snprintf(cmd, sizeof(cmd), "mkdir -p %s/sub/deeper %s/empty", src, src);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof(path), "%s/run.sh", src);
    put_text(path, "#!/bin/sh\necho ran\n", 0750);
    snprintf(path, sizeof(path), "%s/sub/secret", src);
    put_text(path, "s3cret\n", 0600);
    snprintf(path, sizeof(path), "%s/sub/deeper/same", src);
    put_text(path, "same size\n", 0644);
    snprintf(path, sizeof(path), "%s/sub/link", src);
    assert_int_equal(symlink("secret", path), 0);

    assert_int_equal(atx_system_copy_in(sys, src, "tree"), 0);
    sh(sys, &r, "cd tree && ./run.sh && stat -c '%n %a' run.sh sub/secret sub/deeper "
                "sub/deeper/same empty && readlink sub/link", 0, NULL, 0);
    char *out = capture_text(&r.cap[0]);
    assert_string_equal(out, "ran\nrun.sh 750\nsub/secret 600\nsub/deeper 755\n"
                             "sub/deeper/same 644\nempty 755\nsecret\n");
    free(out);
    ran_release(&r);
    /* What is there as it is here is not sent again. */
    sh(sys, &r, "cd tree/sub/deeper && printf 'SAME SIZE\\n' > x && touch -r same x && "
                "mv x same", 0, NULL, 0);
    ran_release(&r);
    snprintf(path, sizeof(path), "%s/sub/secret", src);
    put_text(path, "changed secret\n", 0600);
    assert_int_equal(atx_system_copy_in(sys, src, "tree"), 0);
    sh(sys, &r, "cat tree/sub/deeper/same tree/sub/secret", 0, NULL, 0);
    out = capture_text(&r.cap[0]);
    assert_string_equal(out, "SAME SIZE\nchanged secret\n");
    free(out);
    ran_release(&r);
    /* One file, and back out (a file and a tree). */
    snprintf(path, sizeof(path), "%s/run.sh", src);
    assert_int_equal(atx_system_copy_in(sys, path, "bin/one/tool"), 0);
    snprintf(path, sizeof(path), "%s/back/tool", scratch);
    assert_int_equal(atx_system_copy_out(sys, "bin/one/tool", path), 0);
    snprintf(path, sizeof(path), "%s/back/tree", scratch);
    assert_int_equal(atx_system_copy_out(sys, "tree", path), 0);
    snprintf(cmd, sizeof(cmd),
             "cd %s/back && [ \"$(./tool)\" = ran ] && [ \"$(cat tree/sub/secret)\" = 'changed secret' ] "
             "&& [ \"$(stat -c %%a tree/run.sh tree/sub/secret tree/sub)\" = \"$(printf '755\\n644\\n755')\" ] "
             "&& ! [ -e tree/sub/link ] && ! [ -L tree/sub/link ] && [ -d tree/empty ]",
             scratch);
    assert_int_equal(system(cmd), 0);
    /* Hostile modes and links: no setuid here, a link is not followed. */
    sh(sys, &r, "cd tree && chmod 6755 run.sh && chmod 0777 sub && ln -s /etc/hostname sub/host", 0,
       NULL, 0);
    ran_release(&r);
    snprintf(path, sizeof(path), "%s/back/tree2", scratch);
    assert_int_equal(atx_system_copy_out(sys, "tree", path), 0);
    snprintf(cmd, sizeof(cmd),
             "cd %s/back && [ \"$(stat -c %%a tree2/run.sh tree2/sub)\" = \"$(printf '755\\n755')\" ] "
             "&& ! [ -e tree2/sub/host ] && ! [ -L tree2/sub/host ]", scratch);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof(path), "%s/back/host", scratch);
    assert_true(atx_system_copy_out(sys, "tree/sub/host", path) < 0);
    assert_non_null(strstr(atx_error_last()->message, "symbolic link"));
    assert_int_equal(access(path, F_OK), -1);
    assert_true(atx_system_copy_out(sys, "no/such/file", path) < 0);
    assert_true(atx_system_copy_in(sys, "/no/such/file", "x") < 0);
    /* Bounded: past a bound the rest is left out, what fits is kept. The
     * tree: run.sh (19 bytes), sub, sub/secret (15), sub/deeper,
     * sub/deeper/same (10), empty; its link is never taken. */
    atx_copy_bounds b = ATX_COPY_BOUNDS_INIT;
    b.max_entries = 3;
    snprintf(path, sizeof(path), "%s/back/few", scratch);
    assert_int_equal(atx_system_copy_out_bounded(sys, "tree", path, &b), -EFBIG);
    assert_non_null(strstr(atx_error_last()->message, "more than 3 files and folders: left out"));
    snprintf(cmd, sizeof(cmd), "[ \"$(find %s -mindepth 1 | wc -l)\" = 3 ]", path);
    assert_int_equal(system(cmd), 0);
    b.max_entries = 0;
    b.max_total_bytes = 30;
    snprintf(path, sizeof(path), "%s/back/small", scratch);
    assert_int_equal(atx_system_copy_out_bounded(sys, "tree", path, &b), -EFBIG);
    assert_non_null(strstr(atx_error_last()->message, "more than 30 bytes in all: left out"));
    snprintf(cmd, sizeof(cmd), "[ \"$(find %s -type f -printf '%%s\\n' | awk '{ n += $1 } END { print n + 0 }')\" -le 30 ] "
             "&& [ -d %s/sub/deeper ] && [ -d %s/empty ]", path, path, path);
    assert_int_equal(system(cmd), 0);
    b.max_total_bytes = 44;
    snprintf(path, sizeof(path), "%s/back/all", scratch);
    assert_int_equal(atx_system_copy_out_bounded(sys, "tree", path, &b), 0);
}

typedef struct copier {
    atx_system *sys;
    char local[256], remote[64];
    int rc;
} copier;

static void *copy_main(void *arg)
{
    copier *c = arg;
    c->rc = atx_system_copy_in(c->sys, c->local, c->remote);
    return NULL;
}

/* Copies from several threads at once on one system: each file whole. */
static void concurrent_copies(void **state)
{
    copier c[3];
    pthread_t t[3];
    char cmd[1024];
    for (int i = 0; i < 3; i++) {
        c[i] = (copier){ .sys = *state };
        snprintf(c[i].local, sizeof(c[i].local), "%s/big%d", scratch, i);
        snprintf(c[i].remote, sizeof(c[i].remote), "copied/big%d", i);
        snprintf(cmd, sizeof(cmd), "head -c %d /dev/urandom > %s", (3 + i) << 20, c[i].local);
        assert_int_equal(system(cmd), 0);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&t[i], NULL, copy_main, &c[i]), 0);
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(c[i].rc, 0);
        snprintf(cmd, sizeof(cmd), "cmp %s %s/%s", c[i].local, scratch, c[i].remote);
        assert_int_equal(system(cmd), 0);
    }
}

static void ping(void **state)
{
    int64_t t0 = atx_now_ns();
    assert_int_equal(atx_system_alive(*state, 5 * ATX_NSEC_PER_SEC), 0);
    assert_true(atx_now_ns() - t0 < ATX_NSEC_PER_SEC);
    assert_int_equal(atx_system_lost(*state), 0);
}

/* A caller that does not read a process's output: past what is held for it
 * the stream's bytes are dropped, and the connection goes on (another
 * process runs, pings are answered, nothing is lost). */
static void unread_output_stalls_nothing(void **state)
{
    atx_system *sys = *state;
    char done[256], script[512];
    snprintf(done, sizeof(done), "%s/written", scratch);
    snprintf(script, sizeof(script), "head -c 64000000 /dev/zero; touch %s", done);
    const char *argv[] = { "sh", "-c", script, NULL };
    atx_spawn_opts so = ATX_SPAWN_OPTS_INIT;
    atx_proc *p;
    atx_exit ex;
    ran r;
    so.argv = argv;
    so.flags = ATX_SPAWN_STDOUT_PIPE;
    assert_int_equal(atx_system_spawn(sys, &so, &p), 0);
    /* While it writes and nobody reads: others run, pings are answered. */
    int64_t until = atx_now_ns() + 20 * ATX_NSEC_PER_SEC;
    int rounds = 0;
    do {
        sh(sys, &r, "echo beside", 0, NULL, 0);
        assert_int_equal(r.rc, 0);
        char *out = capture_text(&r.cap[0]);
        assert_string_equal(out, "beside\n");
        free(out);
        ran_release(&r);
        assert_int_equal(atx_system_alive(sys, 5 * ATX_NSEC_PER_SEC), 0);
        rounds++;
    } while (access(done, F_OK) < 0 && atx_now_ns() < until);
    assert_int_equal(access(done, F_OK), 0);
    /* All 64 MB left it; what reaches the reader is what was held for it
     * (and what was on the way), the rest dropped. */
    size_t got = 0;
    char buf[65536];
    ssize_t n;
    while ((n = read(atx_proc_stdout_fd(p), buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
        got += n > 0 ? (size_t)n : 0;
    struct pollfd pfd = { .fd = atx_proc_wait_fd(p), .events = POLLIN };
    assert_int_equal(poll(&pfd, 1, 10000), 1);
    assert_int_equal(atx_proc_wait(p, 0, &ex), 0);
    assert_true(ex.exited);
    assert_int_equal(ex.code, 0);
    print_message("%d runs beside it; %zu bytes read of 64000000\n", rounds, got);
    assert_true(got >= 16u << 20 && got < 32u << 20);
    atx_proc_free(p);
    assert_int_equal(atx_system_lost(sys), 0);
}

/* A frozen agent: declared lost within the liveness timeout, the running
 * process ends with ATX_ELOST, and the agent and its test are reaped. */
static void frozen_agent_is_lost(void **state)
{
    (void)state;
    atx_system *sys = start(200, 1000);
    const char *argv[] = { sleeper, "30", NULL };
    atx_spawn_opts so = ATX_SPAWN_OPTS_INIT;
    atx_proc *p;
    atx_exit ex;
    so.argv = argv;
    assert_int_equal(atx_system_spawn(sys, &so, &p), 0);
    pid_t agent = agent_pid();
    assert_true(agent > 0);
    int64_t t0 = atx_now_ns();
    kill(agent, SIGSTOP);
    struct pollfd pfd = { .fd = atx_proc_wait_fd(p), .events = POLLIN };
    assert_int_equal(poll(&pfd, 1, 5000), 1);
    int64_t ms = (atx_now_ns() - t0) / ATX_NSEC_PER_MSEC;
    assert_int_equal(atx_proc_wait(p, 0, &ex), ATX_ELOST);
    assert_non_null(strstr(atx_error_last()->message, "stopped answering"));
    assert_true(ms < 2500);
    assert_int_equal(atx_system_lost(sys), 1);
    atx_proc_free(p);
    assert_int_equal(atx_system_spawn(sys, &so, &p), ATX_ELOST);
    atx_system_free(sys); /* reaps the frozen agent and its test */
    assert_int_equal(marker_alive(), 0);
    assert_true(kill(agent, 0) < 0);
}

/* A system that starts something other than the agent, which passes nothing
 * on (a step whose output is held back, say): not started once the
 * liveness timeout has passed, whatever the deadline; nothing left. */
static int mute_spawn(void *impl, const atx_spawn_opts *o, atx_proc **out)
{
    const char *argv[] = { sleeper, "30", NULL };
    atx_spawn_opts so = *o;
    (void)impl;
    so.argv = argv;
    return atx_spawn_local(&so, out);
}

static void mute_agent_is_not_started(void **state)
{
    static const atx_system_ops mute_ops = { ATX_SYSTEM_OPS_VERSION, mute_spawn, NULL, NULL,
                                             NULL, ATX_SYSTEM_HOST_FS, NULL };
    atx_system *sys;
    atx_agent_opts ao = ATX_AGENT_OPTS_INIT;
    (void)state;
    assert_int_equal(atx_system_new(&mute_ops, NULL, "mute", NULL, scratch, &sys), 0);
    ao.deadline_ns = atx_now_ns() + 60 * ATX_NSEC_PER_SEC;
    ao.liveness_timeout_ns = 500 * ATX_NSEC_PER_MSEC;
    int64_t t0 = atx_now_ns();
    assert_int_equal(atx_system_start_agent(sys, &ao), ATX_EINFRA);
    int64_t ms = (atx_now_ns() - t0) / ATX_NSEC_PER_MSEC;
    assert_non_null(strstr(atx_error_last()->message, "no word from it"));
    assert_true(ms >= 450 && ms < 5000);
    atx_system_free(sys);
    assert_int_equal(marker_alive(), 0);
}

/* The connection ends under a running test: the agent kills everything. */
static void connection_end_kills_everything(void **state)
{
    (void)state;
    atx_system *sys = start(5000, 30000);
    const char *argv[] = { "sh", "-c", "setsid \"$SLEEPER\" 600 & \"$SLEEPER\" 601", NULL };
    char env0[200];
    snprintf(env0, sizeof(env0), "SLEEPER=%s", sleeper);
    const char *env[] = { env0, NULL };
    atx_spawn_opts so = ATX_SPAWN_OPTS_INIT;
    atx_proc *p;
    so.argv = argv;
    so.env = env;
    assert_int_equal(atx_system_spawn(sys, &so, &p), 0);
    atx_system_free(sys);
    atx_proc_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(streams_stdin_exit, setup, teardown),
        cmocka_unit_test_setup_teardown(control_channel, setup, teardown),
        cmocka_unit_test_setup_teardown(spawn_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(agent_enforces_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(exit_beats_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_and_hurry, setup, teardown),
        cmocka_unit_test_setup_teardown(containment_with_cgroups, setup, teardown),
        cmocka_unit_test_setup_teardown(containment_without_cgroups, setup, teardown),
        cmocka_unit_test_setup_teardown(copies, setup, teardown),
        cmocka_unit_test_setup_teardown(concurrent_copies, setup, teardown),
        cmocka_unit_test_setup_teardown(ping, setup, teardown),
        cmocka_unit_test_setup_teardown(unread_output_stalls_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(frozen_agent_is_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(connection_end_kills_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(mute_agent_is_not_started, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
