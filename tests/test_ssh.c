/*
 * The ssh provisioner's systems, used directly: processes with separate
 * streams, stdin, exit codes and signals, quoting of arguments and
 * environment, working folders, deadlines, large output and input, copies of
 * files and trees in and out (modes, links, skipping what is there), the
 * liveness probe, and a connection that breaks under running processes.
 *
 * It leases systems through a run (the plugin is loaded from the registry
 * like any other) with an executor compiled in here that runs each case on
 * the system it is given. tests/ssh.sh starts the sshd peers and runs this
 * with ATX_SSH_POOL naming their pool file.
 */
#define _GNU_SOURCE 1
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <atx.h>
#include <atx/plugin/executor.h>
#include <atx/plugin/provisioner.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

static const char *pool;
static char scratch[4096];

/* ---- running a process on a system to its end ---- */

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static void buf_add(buf *b, const char *d, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
    b->p[b->len] = '\0';
}

typedef struct ran {
    buf out, err;
    atx_exit ex;
    int wait_rc;
} ran;

static void ran_free(ran *r)
{
    free(r->out.p);
    free(r->err.p);
}

/* Spawn, feed @p in, read both streams to their end, wait. */
static int run_on(atx_system *sys, const atx_spawn_opts *o, const char *in, size_t inlen,
                  ran *res)
{
    atx_proc *p;
    int r;

    memset(res, 0, sizeof(*res));
    buf_add(&res->out, "", 0);
    buf_add(&res->err, "", 0);
    if ((r = atx_system_spawn(sys, o, &p)) < 0)
        return r;
    int fds[3] = { atx_proc_stdin_fd(p), atx_proc_stdout_fd(p), atx_proc_stderr_fd(p) };
    size_t off = 0;
    if (fds[0] >= 0) {
        fcntl(fds[0], F_SETFL, O_NONBLOCK);
        if (!in) {
            atx_proc_close_stdin(p);
            fds[0] = -1;
        }
    }
    while (fds[0] >= 0 || fds[1] >= 0 || fds[2] >= 0) {
        struct pollfd pfd[3];
        for (int i = 0; i < 3; i++)
            pfd[i] = (struct pollfd){ .fd = fds[i], .events = i ? POLLIN : POLLOUT };
        if (poll(pfd, 3, 60000) <= 0)
            break;
        if (fds[0] >= 0 && pfd[0].revents) {
            ssize_t w = write(fds[0], in + off, inlen - off);
            if (w > 0)
                off += (size_t)w;
            if (w < 0 && errno != EAGAIN)
                off = inlen;
            if (off == inlen) {
                atx_proc_close_stdin(p);
                fds[0] = -1;
            }
        }
        for (int i = 1; i < 3; i++) {
            if (fds[i] < 0 || !pfd[i].revents)
                continue;
            char b[65536];
            ssize_t n = read(fds[i], b, sizeof(b));
            if (n > 0)
                buf_add(i == 1 ? &res->out : &res->err, b, (size_t)n);
            else if (n == 0 || errno != EAGAIN)
                fds[i] = -1;
        }
    }
    res->wait_rc = atx_proc_wait(p, 30 * ATX_NSEC_PER_SEC, &res->ex);
    atx_proc_free(p);
    return 0;
}

static int sh_on(atx_system *sys, const char *script, ran *res)
{
    const char *argv[] = { "sh", "-c", script, NULL };
    atx_spawn_opts o = ATX_SPAWN_OPTS_INIT;
    o.argv = argv;
    o.flags = ATX_SPAWN_STDOUT_PIPE | ATX_SPAWN_STDERR_PIPE;
    return run_on(sys, &o, NULL, 0, res);
}

/* ---- the cases: each returns NULL or what went wrong ---- */

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            snprintf(why, sizeof(why), __VA_ARGS__);                          \
            goto out;                                                         \
        }                                                                     \
    } while (0)

static char why[4096];

static const char *case_streams(atx_system *sys)
{
    const char *argv[] = { "sh", "-c", "cat; echo to-err >&2; exit 7", NULL };
    atx_spawn_opts o = ATX_SPAWN_OPTS_INIT;
    ran r;
    o.argv = argv;
    o.flags = ATX_SPAWN_STDIN_PIPE | ATX_SPAWN_STDOUT_PIPE | ATX_SPAWN_STDERR_PIPE;
    int rc = run_on(sys, &o, "hello\n", 6, &r);
    why[0] = 0;
    CHECK(rc == 0, "spawn: %s", atx_error_last()->message);
    CHECK(r.wait_rc == 0 && r.ex.exited && r.ex.code == 7, "exit: rc %d exited %d code %d",
          r.wait_rc, r.ex.exited, r.ex.code);
    CHECK(strcmp(r.out.p, "hello\n") == 0, "stdout '%s'", r.out.p);
    CHECK(strcmp(r.err.p, "to-err\n") == 0, "stderr '%s'", r.err.p);
out:
    ran_free(&r);
    return *why ? why : NULL;
}

static const char *case_merged(atx_system *sys)
{
    const char *argv[] = { "sh", "-c", "echo one; echo two >&2", NULL };
    atx_spawn_opts o = ATX_SPAWN_OPTS_INIT;
    ran r;
    o.argv = argv;
    o.flags = ATX_SPAWN_STDOUT_PIPE | ATX_SPAWN_STDERR_TO_STDOUT;
    int rc = run_on(sys, &o, NULL, 0, &r);
    why[0] = 0;
    CHECK(rc == 0, "spawn: %s", atx_error_last()->message);
    CHECK(strstr(r.out.p, "one\n") && strstr(r.out.p, "two\n"), "stdout '%s'", r.out.p);
    CHECK(r.ex.exited && r.ex.code == 0, "exit code %d", r.ex.code);
out:
    ran_free(&r);
    return *why ? why : NULL;
}

/* Nothing of the arguments, environment or folder reaches a shell. */
static const char *case_quoting(atx_system *sys)
{
    const char *argv[] = { "printf", "[%s]\\n", "it's", "$HOME", "`id`", "a b", "*",
                           "x;y", "'\"", "\nnl", "", NULL };
    const char *env[] = { "ATX_Q=$(id) 'q' \"d\"", NULL };
    const char *argv2[] = { "sh", "-c", "printf '%s|%s' \"$ATX_Q\" \"$(pwd)\"", NULL };
    atx_spawn_opts o = ATX_SPAWN_OPTS_INIT;
    ran r = { 0 }, r2 = { 0 }, r3 = { 0 };
    why[0] = 0;
    o.argv = argv;
    o.flags = ATX_SPAWN_STDOUT_PIPE;
    CHECK(run_on(sys, &o, NULL, 0, &r) == 0, "spawn: %s", atx_error_last()->message);
    CHECK(strcmp(r.out.p, "[it's]\n[$HOME]\n[`id`]\n[a b]\n[*]\n[x;y]\n['\"]\n[\nnl]\n[]\n") == 0,
          "printf said '%s'", r.out.p);
    /* A folder with a quote in its name, made and used. */
    CHECK(sh_on(sys, "mkdir -p \"it's here\"", &r3) == 0 && r3.ex.code == 0, "mkdir: %s",
          r3.err.p);
    o.argv = argv2;
    o.env = env;
    o.cwd = "it's here";
    CHECK(run_on(sys, &o, NULL, 0, &r2) == 0, "spawn: %s", atx_error_last()->message);
    char want[8192];
    snprintf(want, sizeof(want), "$(id) 'q' \"d\"|%s/it's here", atx_system_workdir(sys));
    CHECK(strcmp(r2.out.p, want) == 0, "got '%s', want '%s'", r2.out.p, want);
out:
    ran_free(&r);
    ran_free(&r2);
    ran_free(&r3);
    return *why ? why : NULL;
}

static const char *case_environment(atx_system *sys)
{
    const char *argv[] = { "sh", "-c", "echo \"${ATX_A-unset}:${HOME-nohome}\"", NULL };
    const char *env[] = { "ATX_A=1", NULL };
    atx_spawn_opts o = ATX_SPAWN_OPTS_INIT;
    ran r = { 0 }, r2 = { 0 };
    why[0] = 0;
    o.argv = argv;
    o.env = env;
    o.cwd = "/";
    o.flags = ATX_SPAWN_STDOUT_PIPE;
    CHECK(run_on(sys, &o, NULL, 0, &r) == 0, "spawn: %s", atx_error_last()->message);
    CHECK(strncmp(r.out.p, "1:/", 3) == 0, "with the environment: '%s'", r.out.p);
    o.flags |= ATX_SPAWN_CLEAR_ENV;
    CHECK(run_on(sys, &o, NULL, 0, &r2) == 0, "spawn: %s", atx_error_last()->message);
    CHECK(strcmp(r2.out.p, "1:nohome\n") == 0, "with a clear environment: '%s'", r2.out.p);
out:
    ran_free(&r);
    ran_free(&r2);
    return *why ? why : NULL;
}

static const char *case_missing_program(atx_system *sys)
{
    const char *argv[] = { "/nonexistent/atx-program", NULL };
    atx_spawn_opts o = ATX_SPAWN_OPTS_INIT;
    ran r = { 0 };
    why[0] = 0;
    o.argv = argv;
    o.flags = ATX_SPAWN_STDERR_PIPE;
    /* As on this host: the spawn says so, naming the program. */
    CHECK(run_on(sys, &o, NULL, 0, &r) == ATX_ESPAWN, "spawn of a missing program worked");
    CHECK(strstr(atx_error_last()->message, "/nonexistent/atx-program"), "the detail '%s'",
          atx_error_last()->message);
out:
    ran_free(&r);
    return *why ? why : NULL;
}

/* A command that leaves a process holding its output ends all the same,
 * and what it left is killed when it is waited for (as on this host). */
static const char *case_background(atx_system *sys)
{
    ran r = { 0 }, r2 = { 0 };
    char script[256];
    why[0] = 0;
    int64_t t0 = atx_now_ns();
    CHECK(sh_on(sys, "sleep 60 & echo $!; echo done", &r) == 0, "spawn: %s",
          atx_error_last()->message);
    CHECK(r.wait_rc == 0 && r.ex.exited && r.ex.code == 0, "exit: rc %d exited %d code %d",
          r.wait_rc, r.ex.exited, r.ex.code);
    CHECK(atx_now_ns() - t0 < 10 * ATX_NSEC_PER_SEC, "took %lld ms",
          (long long)((atx_now_ns() - t0) / ATX_NSEC_PER_MSEC));
    long pid = strtol(r.out.p, NULL, 10);
    CHECK(pid > 0 && strstr(r.out.p, "\ndone\n"), "stdout '%s'", r.out.p);
    /* Gone, or a zombie its new parent has not reaped yet. */
    snprintf(script, sizeof(script),
             "case \"$(ps -o stat= -p %ld)\" in ''|Z*) echo gone;; *) echo alive;; esac", pid);
    CHECK(sh_on(sys, script, &r2) == 0 && strcmp(r2.out.p, "gone\n") == 0,
          "the background process: '%s'", r2.out.p);
out:
    ran_free(&r);
    ran_free(&r2);
    return *why ? why : NULL;
}

static const char *case_signal(atx_system *sys)
{
    const char *argv[] = { "sleep", "60", NULL };
    atx_spawn_opts o = ATX_SPAWN_OPTS_INIT;
    atx_proc *p = NULL;
    atx_exit ex;
    why[0] = 0;
    o.argv = argv;
    CHECK(atx_system_spawn(sys, &o, &p) == 0, "spawn: %s", atx_error_last()->message);
    CHECK(atx_proc_wait(p, 0, &ex) == ATX_ETIMEDOUT, "sleep ended at once");
    int64_t t0 = atx_now_ns();
    CHECK(atx_proc_kill_tree(p, SIGTERM, 5 * ATX_NSEC_PER_SEC) == 0, "kill_tree failed");
    CHECK(atx_proc_wait(p, 10 * ATX_NSEC_PER_SEC, &ex) == 0, "not ended after TERM");
    CHECK(!ex.exited && ex.signal == SIGTERM, "exited %d code %d signal %d", ex.exited, ex.code,
          ex.signal);
    CHECK(atx_now_ns() - t0 < 4 * ATX_NSEC_PER_SEC, "TERM took the whole grace");
out:
    atx_proc_free(p);
    return *why ? why : NULL;
}

static const char *case_deadline(atx_system *sys)
{
    const char *argv[] = { "sh", "-c", "trap '' TERM; echo started; sleep 60", NULL };
    atx_spawn_opts o = ATX_SPAWN_OPTS_INIT;
    atx_proc *p = NULL;
    atx_exit ex;
    why[0] = 0;
    o.argv = argv;
    o.flags = ATX_SPAWN_STDOUT_PIPE;
    o.deadline_ns = atx_now_ns() + 500 * ATX_NSEC_PER_MSEC;
    o.kill_grace_ns = 300 * ATX_NSEC_PER_MSEC;
    int64_t t0 = atx_now_ns();
    CHECK(atx_system_spawn(sys, &o, &p) == 0, "spawn: %s", atx_error_last()->message);
    CHECK(atx_proc_wait(p, -1, &ex) == 0, "wait failed: %s", atx_error_last()->message);
    CHECK(ex.timed_out && !ex.exited, "timed_out %d exited %d", ex.timed_out, ex.exited);
    CHECK(atx_now_ns() - t0 < 5 * ATX_NSEC_PER_SEC, "the deadline kill took too long");
out:
    atx_proc_free(p);
    return *why ? why : NULL;
}

/* Megabytes both ways, with the reader slower than the writer. */
static const char *case_volume(atx_system *sys)
{
    const char *argv[] = { "sh", "-c", "wc -c; head -c 6000000 /dev/zero", NULL };
    atx_spawn_opts o = ATX_SPAWN_OPTS_INIT;
    size_t n = 3 * 1000 * 1000;
    char *in = malloc(n);
    ran r = { 0 };
    why[0] = 0;
    memset(in, 'x', n);
    o.argv = argv;
    o.flags = ATX_SPAWN_STDIN_PIPE | ATX_SPAWN_STDOUT_PIPE;
    CHECK(run_on(sys, &o, in, n, &r) == 0, "spawn: %s", atx_error_last()->message);
    CHECK(strncmp(r.out.p, "3000000\n", 8) == 0, "wc said '%.20s'", r.out.p);
    CHECK(r.out.len == 8 + 6000000, "got %zu bytes", r.out.len);
    CHECK(r.ex.exited && r.ex.code == 0, "exit code %d", r.ex.code);
out:
    free(in);
    ran_free(&r);
    return *why ? why : NULL;
}

/* Several processes on one session at once. */
static const char *case_parallel(atx_system *sys)
{
    atx_proc *p[6] = { 0 };
    why[0] = 0;
    for (int i = 0; i < 6; i++) {
        char script[64];
        snprintf(script, sizeof(script), "read x; echo $x-%d", i);
        const char *argv[] = { "sh", "-c", script, NULL };
        atx_spawn_opts o = ATX_SPAWN_OPTS_INIT;
        o.argv = argv;
        o.flags = ATX_SPAWN_STDIN_PIPE | ATX_SPAWN_STDOUT_PIPE;
        CHECK(atx_system_spawn(sys, &o, &p[i]) == 0, "spawn %d: %s", i,
              atx_error_last()->message);
    }
    for (int i = 5; i >= 0; i--) {
        char line[64], got[64] = "";
        snprintf(line, sizeof(line), "in%d\n", i);
        CHECK(write(atx_proc_stdin_fd(p[i]), line, strlen(line)) == (ssize_t)strlen(line),
              "write");
        size_t n = 0;
        ssize_t k;
        while ((k = read(atx_proc_stdout_fd(p[i]), got + n, sizeof(got) - 1 - n)) > 0)
            n += (size_t)k;
        got[n] = '\0';
        snprintf(line, sizeof(line), "in%d-%d\n", i, i);
        CHECK(strcmp(got, line) == 0, "process %d said '%s'", i, got);
        atx_exit ex;
        CHECK(atx_proc_wait(p[i], 10 * ATX_NSEC_PER_SEC, &ex) == 0 && ex.code == 0,
              "process %d did not end well", i);
    }
out:
    for (int i = 0; i < 6; i++)
        atx_proc_free(p[i]);
    return *why ? why : NULL;
}

static void put(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

static const char *case_copies(atx_system *sys)
{
    char src[4096 + 64], back[4096 + 64], cmd[16384], file[4096 + 64];
    ran r = { 0 }, r2 = { 0 }, r3 = { 0 }, r4 = { 0 };
    why[0] = 0;
    snprintf(src, sizeof(src), "%s/tree", scratch);
    snprintf(back, sizeof(back), "%s/back", scratch);
    snprintf(cmd, sizeof(cmd), "rm -rf %s %s && mkdir -p %s/sub/deeper %s/empty", src, back, src,
             src);
    CHECK(system(cmd) == 0, "cannot make the tree");
    snprintf(file, sizeof(file), "%s/run.sh", src);
    put(file, "#!/bin/sh\necho ran\n", 0750);
    snprintf(file, sizeof(file), "%s/sub/secret", src);
    put(file, "s3cret\n", 0600);
    snprintf(file, sizeof(file), "%s/sub/deeper/same", src);
    put(file, "same size\n", 0644);
    snprintf(file, sizeof(file), "%s/sub/link", src);
    CHECK(symlink("secret", file) == 0, "symlink");
    snprintf(file, sizeof(file), "%s/big", src);
    {
        FILE *f = fopen(file, "w");
        for (int i = 0; i < 200000; i++)
            fprintf(f, "line %d\n", i);
        fclose(f);
    }

    CHECK(atx_system_copy_in(sys, src, "tree") == 0, "copy_in: %s", atx_error_last()->message);
    CHECK(sh_on(sys, "cd tree && ./run.sh && stat -c '%n %a' run.sh sub/secret sub/deeper "
                     "sub/deeper/same empty && readlink sub/link && md5sum big", &r) == 0,
          "spawn: %s", atx_error_last()->message);
    snprintf(cmd, sizeof(cmd), "cd %s && md5sum big", src);
    FILE *f = popen(cmd, "r");
    char md5[200] = "";
    CHECK(f && fgets(md5, sizeof(md5), f), "md5sum here");
    pclose(f);
    char want[1024];
    snprintf(want, sizeof(want), "ran\nrun.sh 750\nsub/secret 600\nsub/deeper 755\n"
             "sub/deeper/same 644\nempty 755\nsecret\n%s", md5);
    CHECK(r.ex.code == 0 && strcmp(r.out.p, want) == 0, "on the system: '%s' (stderr '%s')",
          r.out.p, r.err.p);

    /* Unchanged files are not sent again: a remote edit that keeps size
     * and time survives a second copy, a local change does not. */
    CHECK(sh_on(sys, "cd tree/sub/deeper && printf 'SAME SIZE\\n' > x && touch -r same x && "
                     "mv x same && echo 'new' > ../../extra", &r2) == 0 && r2.ex.code == 0,
          "editing on the system: %s", r2.err.p);
    snprintf(file, sizeof(file), "%s/sub/secret", src);
    put(file, "changed secret\n", 0600);
    CHECK(atx_system_copy_in(sys, src, "tree") == 0, "copy_in again: %s",
          atx_error_last()->message);
    CHECK(sh_on(sys, "cat tree/sub/deeper/same tree/sub/secret tree/extra", &r3) == 0 &&
              strcmp(r3.out.p, "SAME SIZE\nchanged secret\nnew\n") == 0,
          "after the second copy: '%s'", r3.out.p);

    /* One file to a new folder, keeping it executable. */
    snprintf(file, sizeof(file), "%s/run.sh", src);
    CHECK(atx_system_copy_in(sys, file, "bin/one/tool") == 0, "copy_in of a file: %s",
          atx_error_last()->message);
    CHECK(sh_on(sys, "bin/one/tool", &r4) == 0 && strcmp(r4.out.p, "ran\n") == 0,
          "the copied tool: '%s' '%s'", r4.out.p, r4.err.p);

    /* And back out: files and folders only (no link), modes 0644/0755. */
    CHECK(atx_system_copy_out(sys, "tree", back) == 0, "copy_out: %s",
          atx_error_last()->message);
    snprintf(cmd, sizeof(cmd),
             "cd %s && [ \"$(cat sub/deeper/same)\" = 'SAME SIZE' ] && rm sub/deeper/same extra && "
             "cd %s && rm sub/deeper/same && diff -r -x link %s %s && "
             "[ \"$(stat -c %%a %s/run.sh %s/sub/secret %s/sub)\" = \"$(printf '755\\n644\\n755')\" ] && "
             "! [ -L %s/sub/link ]",
             back, src, src, back, back, back, back, back);
    CHECK(system(cmd) == 0, "the copy out differs: %s", cmd);
    char missing[8192];
    snprintf(missing, sizeof(missing), "%s/nothing", scratch);
    CHECK(atx_system_copy_out(sys, "no/such/file", missing) < 0, "copy_out of nothing worked");
    CHECK(atx_system_copy_in(sys, missing, "x") < 0, "copy_in of nothing worked");
out:
    ran_free(&r);
    ran_free(&r2);
    ran_free(&r3);
    ran_free(&r4);
    return *why ? why : NULL;
}

static const char *case_alive(atx_system *sys)
{
    why[0] = 0;
    int64_t t0 = atx_now_ns();
    CHECK(atx_system_alive(sys, 5 * ATX_NSEC_PER_SEC) == 0, "alive: %s",
          atx_error_last()->message);
    CHECK(atx_now_ns() - t0 < ATX_NSEC_PER_SEC, "alive took %lld ms",
          (long long)((atx_now_ns() - t0) / ATX_NSEC_PER_MSEC));
out:
    return *why ? why : NULL;
}

/* The session's sshd process dies under two running processes. */
static const char *case_connection_lost(atx_system *sys)
{
    const char *sleeper[] = { "sleep", "60", NULL };
    /* The login shell execs the agent, so the agent's parent is the sshd
     * process that holds this connection. The killer waits for its stdin to
     * close: its start is known by then. */
    const char *killer[] = { "sh", "-c", "cat >/dev/null; kill -9 $(ps -o ppid= -p $PPID)", NULL };
    atx_spawn_opts o = ATX_SPAWN_OPTS_INIT;
    atx_proc *p = NULL, *k = NULL, *q = NULL;
    atx_exit ex;
    why[0] = 0;
    o.argv = sleeper;
    o.flags = ATX_SPAWN_STDOUT_PIPE;
    CHECK(atx_system_spawn(sys, &o, &p) == 0, "spawn: %s", atx_error_last()->message);
    o.argv = killer;
    o.flags = ATX_SPAWN_STDIN_PIPE;
    CHECK(atx_system_spawn(sys, &o, &k) == 0, "spawn: %s", atx_error_last()->message);
    atx_proc_close_stdin(k);
    struct pollfd pfd = { .fd = atx_proc_wait_fd(p), .events = POLLIN };
    CHECK(poll(&pfd, 1, 10000) == 1, "the wait fd did not fire");
    char b[16];
    CHECK(read(atx_proc_stdout_fd(p), b, sizeof(b)) == 0, "stdout not at its end");
    CHECK(atx_proc_wait(p, 0, &ex) == ATX_ELOST, "wait did not say lost");
    CHECK(strstr(atx_error_last()->message, atx_system_id(sys)), "the detail '%s'",
          atx_error_last()->message);
    CHECK(atx_system_alive(sys, ATX_NSEC_PER_SEC) == ATX_ELOST, "alive after the loss");
    o.argv = sleeper;
    CHECK(atx_system_spawn(sys, &o, &q) == ATX_ELOST, "spawn after the loss");
out:
    atx_proc_free(p);
    atx_proc_free(k);
    atx_proc_free(q);
    return *why ? why : NULL;
}

static const struct {
    const char *name;
    const char *(*fn)(atx_system *sys);
} cases[] = {
    { "streams", case_streams }, { "merged", case_merged }, { "quoting", case_quoting },
    { "environment", case_environment }, { "missing-program", case_missing_program },
    { "background", case_background }, { "signal", case_signal }, { "deadline", case_deadline }, { "volume", case_volume },
    { "parallel", case_parallel }, { "copies", case_copies }, { "alive", case_alive },
    { "connection-lost", case_connection_lost },
};

/* ---- an executor that runs a case on the system it gets ---- */

typedef struct outcome {
    char system[128];
    char labels[1024];
    char note[4096];
    bool ran, ok;
} outcome;

static int x_create(atx_plugin_ctx *ctx, void **state)
{
    *state = atx_plugin_ctx_userdata(ctx);
    return 0;
}

static void x_destroy(void *state)
{
    (void)state;
}

static int x_run(void *state, atx_attempt *a)
{
    outcome *oc = state;
    const char *name = atx_test_name(atx_attempt_test(a)) + 1;
    atx_system *sys = atx_attempt_system(a);
    const char *msg = "no such case";
    atx_result *res;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (strcmp(cases[i].name, name) == 0)
            msg = cases[i].fn(sys);
    oc->ran = true;
    oc->ok = !msg;
    snprintf(oc->note, sizeof(oc->note), "%s", msg ? msg : "");
    snprintf(oc->system, sizeof(oc->system), "%s", atx_system_id(sys));
    const atx_labels *l = atx_system_labels(sys);
    size_t n = 0;
    const char *k, *v;
    for (size_t i = 0; atx_labels_at(l, i, &k, &v) == 0 && n < sizeof(oc->labels); i++)
        n += (size_t)snprintf(oc->labels + n, sizeof(oc->labels) - n, "%s=%s ", k, v);
    if (atx_result_new(atx_test_name(atx_attempt_test(a)), NULL, &res) < 0)
        return ATX_ENOMEM;
    atx_result_set_status(res, msg ? ATX_STATUS_FAIL : ATX_STATUS_PASS);
    if (msg)
        atx_result_set_note(res, msg);
    return atx_attempt_emit(a, res);
}

static const atx_executor_vtable x_vtable = {
    .version = ATX_EXECUTOR_VTABLE_VERSION,
    .create = x_create,
    .destroy = x_destroy,
    .run = x_run,
};

static const atx_plugin_descriptor x_plugin = {
    ATX_ABI_MAJOR, ATX_ABI_MINOR, sizeof(atx_plugin_descriptor), ATX_PLUGIN_EXECUTOR,
    "sshcase", "1.0", "Runs one ssh provisioner case", &x_vtable,
};

static void on_log(void *ud, atx_log_level level, const char *origin, const char *message)
{
    (void)ud;
    if (level <= ATX_LOG_WARNING)
        fprintf(stderr, "[%s] %s: %s\n", atx_log_level_name(level), origin, message);
}

static void run_case(const char *name)
{
    atx_run_opts opts = ATX_RUN_OPTS_INIT;
    char dir[4096 + 64], tname[128], config[4096 + 64];
    outcome oc = { 0 };
    atx_summary sum;
    atx_run *run;
    atx_test *t;

    snprintf(dir, sizeof(dir), "%s/run-%s", scratch, name);
    snprintf(tname, sizeof(tname), "/%s", name);
    snprintf(config, sizeof(config), "{\"pool\": \"%s\"}", pool);
    opts.results_dir = dir;
    opts.log = on_log;
    assert_int_equal(atx_run_new(&opts, &run), 0);
    if (atx_run_add_provisioner(run, "ssh", config) < 0)
        fail_msg("ssh provisioner: %s", atx_error_last()->message);
    assert_int_equal(atx_run_add_builtin(run, &x_plugin, NULL, &oc), 0);
    assert_int_equal(atx_test_new(tname, "sshcase", &t), 0);
    assert_int_equal(atx_test_set_timeout(t, 120 * ATX_NSEC_PER_SEC), 0);
    assert_int_equal(atx_run_add_test(run, t), 0);
    assert_int_equal(atx_run_execute(run, &sum), 0);
    atx_run_free(run);
    if (!oc.ran)
        fail_msg("case %s did not run (%zu infra)", name, sum.infra);
    if (!oc.ok)
        fail_msg("case %s on %s: %s", name, oc.system, oc.note);
    /* Every system says where it is. */
    assert_non_null(strstr(oc.labels, "provider=ssh "));
    assert_non_null(strstr(oc.labels, "arch="));
    assert_non_null(strstr(oc.labels, "host="));
}

#define CASE(n, s)                                                            \
    static void test_##n(void **state)                                        \
    {                                                                         \
        (void)state;                                                          \
        run_case(s);                                                          \
    }
CASE(streams, "streams")
CASE(merged, "merged")
CASE(quoting, "quoting")
CASE(environment, "environment")
CASE(missing_program, "missing-program")
CASE(background, "background")
CASE(signal, "signal")
CASE(deadline, "deadline")
CASE(volume, "volume")
CASE(parallel, "parallel")
CASE(copies, "copies")
CASE(alive, "alive")
CASE(connection_lost, "connection-lost")

int main(void)
{
    pool = getenv("ATX_SSH_POOL");
    const char *tmp = getenv("ATX_SSH_SCRATCH");
    if (!pool || !tmp) {
        fprintf(stderr, "test_ssh: run through tests/ssh.sh (ATX_SSH_POOL, ATX_SSH_SCRATCH)\n");
        return 1;
    }
    snprintf(scratch, sizeof(scratch), "%s", tmp);
    atx_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_streams),          cmocka_unit_test(test_merged),
        cmocka_unit_test(test_quoting),          cmocka_unit_test(test_environment),
        cmocka_unit_test(test_missing_program),  cmocka_unit_test(test_background),
        cmocka_unit_test(test_signal),
        cmocka_unit_test(test_deadline),         cmocka_unit_test(test_volume),
        cmocka_unit_test(test_parallel),         cmocka_unit_test(test_copies),
        cmocka_unit_test(test_alive),            cmocka_unit_test(test_connection_lost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
