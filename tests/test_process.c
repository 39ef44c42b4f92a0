/*
 * The one process primitive (atx_proc_run) and spawning on this host:
 * captures and sinks, stdin, the control channel, a pseudo-terminal, ticks,
 * deadlines (moved while running, never beating an exit), cancels and
 * hurries, sinks that stop a process, the drain after an exit, giving up on
 * a process that will not die, and containment: processes that leave their
 * session or double-fork are gone when the test ends.
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

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "marker.h"

static int setup_all(void **state)
{
    (void)state;
    marker_make("process-test");
    return 0;
}

static int teardown_all(void **state)
{
    (void)state;
    unlink(sleeper);
    return 0;
}

typedef struct run {
    atx_capture cap[2];
    atx_proc_outcome res;
    int rc;
    int64_t took_ms;
} run;

static void run_release(run *r)
{
    atx_capture_release(&r->cap[0]);
    atx_capture_release(&r->cap[1]);
}

/* sh -c SCRIPT with SLEEPER set, through atx_proc_run_spawn. */
static void sh(run *r, const char *script, unsigned flags, atx_proc_run_opts *o)
{
    const char *argv[] = { "sh", "-c", script, NULL };
    char env0[200];
    snprintf(env0, sizeof(env0), "SLEEPER=%s", sleeper);
    const char *env[] = { env0, NULL };
    atx_spawn_opts so = ATX_SPAWN_OPTS_INIT;
    atx_proc_run_opts def = ATX_PROC_RUN_OPTS_INIT;

    memset(r, 0, sizeof(*r));
    atx_capture_init(&r->cap[0], 1 << 20, 0);
    atx_capture_init(&r->cap[1], 1 << 20, 0);
    if (!o)
        o = &def;
    if (!o->capture[0])
        o->capture[0] = &r->cap[0];
    if (!o->capture[1])
        o->capture[1] = &r->cap[1];
    so.argv = argv;
    so.env = env;
    so.flags = ATX_SPAWN_STDOUT_PIPE | ATX_SPAWN_STDERR_PIPE | flags;
    int64_t t0 = atx_now_ns();
    r->rc = atx_proc_run_spawn(NULL, &so, o, &r->res);
    r->took_ms = (atx_now_ns() - t0) / ATX_NSEC_PER_MSEC;
}

static void streams_and_input(void **state)
{
    (void)state;
    atx_proc_run_opts o = ATX_PROC_RUN_OPTS_INIT;
    run r;
    /* More than a pipe holds, both ways. */
    size_t n = 1 << 20;
    char *in = malloc(n);
    memset(in, 'x', n);
    o.input = in;
    o.input_len = n;
    sh(&r, "wc -c; echo to-err >&2; exit 3", ATX_SPAWN_STDIN_PIPE, &o);
    assert_int_equal(r.rc, 0);
    assert_true(r.res.exit.exited);
    assert_int_equal(r.res.exit.code, 3);
    char *out = capture_text(&r.cap[0]), *err = capture_text(&r.cap[1]);
    assert_string_equal(out, "1048576\n");
    assert_string_equal(err, "to-err\n");
    free(out);
    free(err);
    free(in);
    run_release(&r);
}

/* A process that ends without reading its input: the rest is dropped, and
 * the caller (which did not ignore SIGPIPE) lives on. */
static void input_not_read(void **state)
{
    (void)state;
    atx_proc_run_opts o = ATX_PROC_RUN_OPTS_INIT;
    run r;
    size_t n = 4 << 20;
    char *in = malloc(n);
    memset(in, 'x', n);
    o.input = in;
    o.input_len = n;
    assert_true(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
    sh(&r, "exec 0<&-; exit 4", ATX_SPAWN_STDIN_PIPE, &o);
    assert_int_equal(r.rc, 0);
    assert_true(r.res.exit.exited);
    assert_int_equal(r.res.exit.code, 4);
    sigset_t pending;
    sigpending(&pending);
    assert_false(sigismember(&pending, SIGPIPE));
    free(in);
    run_release(&r);
}

typedef struct sunk {
    char ctl[256];
    size_t nctl;
    int ticks;
    bool stop_on_ctl;
    int64_t *deadline;
} sunk;

static int on_control(void *ud, const char *d, size_t n)
{
    sunk *s = ud;
    if (s->nctl + n < sizeof(s->ctl)) {
        memcpy(s->ctl + s->nctl, d, n);
        s->nctl += n;
    }
    /* Each "later" moves the deadline a second on (several may come in one read). */
    for (const char *p = d; s->deadline && (p = memmem(p, n - (size_t)(p - d), "later", 5)); p += 5)
        *s->deadline += ATX_NSEC_PER_SEC;
    return s->stop_on_ctl ? -1 : 0;
}

static int on_tick(void *ud)
{
    ((sunk *)ud)->ticks++;
    return 0;
}

static void control_channel_and_ticks(void **state)
{
    (void)state;
    sunk s = { 0 };
    atx_proc_sink sink = { &s, NULL, on_control, on_tick };
    atx_proc_run_opts o = ATX_PROC_RUN_OPTS_INIT;
    run r;
    o.sink = &sink;
    o.tick_ns = 50 * ATX_NSEC_PER_MSEC;
    sh(&r, "echo out; printf 'result 2\\n{}' >&3; \"$SLEEPER\" 0.3", ATX_SPAWN_CONTROL, &o);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.res.exit.code, 0);
    assert_int_equal(s.nctl, 11);
    assert_memory_equal(s.ctl, "result 2\n{}", 11);
    assert_true(s.ticks >= 3);
    char *out = capture_text(&r.cap[0]);
    assert_string_equal(out, "out\n");
    free(out);
    run_release(&r);

    /* A sink that refuses stops the process at once. */
    memset(&s, 0, sizeof(s));
    s.stop_on_ctl = true;
    sh(&r, "echo bad >&3; exec \"$SLEEPER\" 30", ATX_SPAWN_CONTROL, &o);
    assert_int_equal(r.rc, 0);
    assert_true(r.res.aborted);
    assert_int_equal(r.res.exit.signal, SIGKILL);
    assert_true(r.took_ms < 5000);
    run_release(&r);
}

static void pseudo_terminal(void **state)
{
    (void)state;
    run r;
    sh(&r, "[ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo tty; echo err >&2", ATX_SPAWN_PTY, NULL);
    assert_int_equal(r.rc, 0);
    char *out = capture_text(&r.cap[0]);
    assert_non_null(strstr(out, "tty"));
    assert_non_null(strstr(out, "err"));
    free(out);
    run_release(&r);
}

static void deadline_term_then_kill(void **state)
{
    (void)state;
    atx_proc_run_opts o = ATX_PROC_RUN_OPTS_INIT;
    int64_t deadline = atx_now_ns() + 300 * ATX_NSEC_PER_MSEC;
    run r;
    o.deadline_ns = &deadline;
    o.grace_ns = 300 * ATX_NSEC_PER_MSEC;
    sh(&r, "trap '' TERM; echo started; \"$SLEEPER\" 30", ATX_SPAWN_CONTAIN, &o);
    assert_int_equal(r.rc, 0);
    assert_true(r.res.exit.timed_out);
    assert_false(r.res.exit.exited);
    assert_int_equal(r.res.exit.signal, SIGKILL);
    assert_true(r.took_ms >= 550 && r.took_ms < 3000);
    assert_int_equal(marker_alive(), 0);
    run_release(&r);
}

/* The control channel moves the deadline: "later" twice, a second each. */
static void deadline_moves(void **state)
{
    (void)state;
    sunk s = { 0 };
    atx_proc_sink sink = { &s, NULL, on_control, NULL };
    atx_proc_run_opts o = ATX_PROC_RUN_OPTS_INIT;
    int64_t deadline = atx_now_ns() + 500 * ATX_NSEC_PER_MSEC;
    run r;
    s.deadline = &deadline;
    o.sink = &sink;
    o.deadline_ns = &deadline;
    sh(&r, "echo later >&3; echo later >&3; \"$SLEEPER\" 1.5; echo done", ATX_SPAWN_CONTROL, &o);
    assert_int_equal(r.rc, 0);
    assert_false(r.res.exit.timed_out);
    assert_int_equal(r.res.exit.code, 0);
    char *out = capture_text(&r.cap[0]);
    assert_string_equal(out, "done\n");
    free(out);
    run_release(&r);
}

/* A process that ended before its deadline was looked at is not timed out:
 * its exit status decides. */
static void exit_beats_deadline(void **state)
{
    (void)state;
    const char *argv[] = { "sh", "-c", "exit 4", NULL };
    atx_spawn_opts so = ATX_SPAWN_OPTS_INIT;
    atx_proc_run_opts o = ATX_PROC_RUN_OPTS_INIT;
    atx_proc_outcome res;
    atx_proc *p;
    so.argv = argv;
    assert_int_equal(atx_spawn_local(&so, &p), 0);
    struct pollfd pfd = { .fd = atx_proc_wait_fd(p), .events = POLLIN };
    assert_int_equal(poll(&pfd, 1, 10000), 1);
    int64_t deadline = atx_now_ns() - ATX_NSEC_PER_SEC; /* long past */
    o.deadline_ns = &deadline;
    assert_int_equal(atx_proc_run(p, &o, &res), 0);
    assert_false(res.exit.timed_out);
    assert_true(res.exit.exited);
    assert_int_equal(res.exit.code, 4);
    atx_proc_free(p);
}

/* A process on a system that keeps the deadline itself (as an agent does):
 * its end is known here only when the timer fires, as an EXIT frame comes
 * after the wire's delay. */
typedef struct far_proc {
    int timer;          /* readable: the end has arrived */
    atx_exit ex;
    int kills;
} far_proc;

static void far_arrive(far_proc *f, int64_t in_ns)
{
    struct itimerspec its = { .it_value = { (time_t)(in_ns / ATX_NSEC_PER_SEC),
                                            (long)(in_ns % ATX_NSEC_PER_SEC) } };
    assert_int_equal(timerfd_settime(f->timer, 0, &its, NULL), 0);
}

static int far_wait(void *impl, int64_t timeout_ns, atx_exit *ex)
{
    far_proc *f = impl;
    struct pollfd pfd = { .fd = f->timer, .events = POLLIN };
    (void)timeout_ns;
    if (poll(&pfd, 1, 0) != 1)
        return ATX_ETIMEDOUT;
    *ex = f->ex;
    return 0;
}

static int far_kill(void *impl, int sig, int64_t grace_ns)
{
    far_proc *f = impl;
    (void)grace_ns;
    f->kills++;
    f->ex = (atx_exit){ .signal = sig };
    far_arrive(f, 1);
    return 0;
}

static void far_free(void *impl) { (void)impl; }

static int far_set_deadline(void *impl, int64_t deadline_ns)
{
    (void)impl;
    (void)deadline_ns;
    return 1; /* its clock decides, and its exit says */
}

static const atx_proc_ops far_ops = { ATX_PROC_OPS_VERSION, far_wait, far_kill, far_free,
                                      far_set_deadline, NULL };

static void system_clock_deadline(void **state)
{
    (void)state;
    far_proc f = { .timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC) };
    atx_proc_run_opts o = ATX_PROC_RUN_OPTS_INIT;
    atx_proc_outcome res;
    atx_proc *p;
    assert_true(f.timer >= 0);
    o.grace_ns = 100 * ATX_NSEC_PER_MSEC;

    /* It ended there before the deadline; the word of it comes 300 ms after
     * the deadline here: an exit, not a timeout, and nothing killed. */
    int64_t deadline = atx_now_ns() + 200 * ATX_NSEC_PER_MSEC;
    o.deadline_ns = &deadline;
    f.ex = (atx_exit){ .exited = 1, .code = 0 };
    far_arrive(&f, 500 * ATX_NSEC_PER_MSEC);
    assert_int_equal(atx_proc_new(&far_ops, &f, -1, -1, -1, f.timer, &p), 0);
    assert_int_equal(atx_proc_run(p, &o, &res), 0);
    assert_true(res.exit.exited);
    assert_false(res.exit.timed_out);
    assert_int_equal(f.kills, 0);
    atx_proc_free(p);

    /* It never says: this side stops it once the system's deadline, grace
     * and a few seconds' slack are past, and calls it a timeout. */
    f.ex = (atx_exit){ 0 };
    far_arrive(&f, 0); /* disarmed, and what it counted is cleared */
    deadline = atx_now_ns() + 100 * ATX_NSEC_PER_MSEC;
    int64_t t0 = atx_now_ns();
    assert_int_equal(atx_proc_new(&far_ops, &f, -1, -1, -1, f.timer, &p), 0);
    assert_int_equal(atx_proc_run(p, &o, &res), 0);
    int64_t took = (atx_now_ns() - t0) / ATX_NSEC_PER_MSEC;
    assert_true(res.exit.timed_out);
    assert_int_equal(res.exit.signal, SIGKILL);
    assert_int_equal(f.kills, 1);
    assert_in_range(took, 3100, 3100 + 2000);
    atx_proc_free(p);
    close(f.timer);
}

static int level;
static int get_level(void *ud)
{
    (void)ud;
    return level;
}

static void cancel_and_hurry(void **state)
{
    (void)state;
    int cancel = eventfd(0, EFD_CLOEXEC);
    atx_proc_run_opts o = ATX_PROC_RUN_OPTS_INIT;
    run r;
    o.cancel_fd = cancel;
    o.cancel_level = get_level;
    o.grace_ns = 5 * ATX_NSEC_PER_SEC;
    /* Cancelled before it starts: TERM, which it honours. */
    level = 1;
    eventfd_write(cancel, 1);
    sh(&r, "exec \"$SLEEPER\" 30", ATX_SPAWN_CONTAIN, &o);
    assert_int_equal(r.rc, 0);
    assert_true(r.res.interrupted);
    assert_int_equal(r.res.exit.signal, SIGTERM);
    assert_true(r.took_ms < 2000);
    run_release(&r);
    /* In a hurry: a TERM-proof test is killed at once, not after the grace. */
    level = 2;
    sh(&r, "trap '' TERM; \"$SLEEPER\" 30", ATX_SPAWN_CONTAIN, &o);
    assert_true(r.res.interrupted);
    assert_int_equal(r.res.exit.signal, SIGKILL);
    assert_true(r.took_ms < 2000);
    assert_int_equal(marker_alive(), 0);
    run_release(&r);
    close(cancel);
}

/* What escapes its session or double-forks is gone when the test ends:
 * passing, failing and timed out. */
static void containment(void **state)
{
    (void)state;
    static const char *const ends[] = { "exit 0", "exit 1", "exec \"$SLEEPER\" 30" };
    assert_true(atx_spawn_can_contain());
    for (int i = 0; i < 3; i++) {
        atx_proc_run_opts o = ATX_PROC_RUN_OPTS_INIT;
        int64_t deadline = atx_now_ns() + 2 * ATX_NSEC_PER_SEC;
        char script[512];
        run r;
        o.deadline_ns = &deadline;
        snprintf(script, sizeof(script),
                 "setsid \"$SLEEPER\" 600 & "
                 "sh -c 'setsid \"$SLEEPER\" 601 </dev/null >/dev/null 2>&1 & exit 0'; "
                 "nohup \"$SLEEPER\" 602 >/dev/null 2>&1 & %s", ends[i]);
        sh(&r, script, ATX_SPAWN_CONTAIN, &o);
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.res.exit.timed_out, i == 2);
        assert_int_equal(marker_alive(), 0);
        run_release(&r);
    }
}

/* A process that left something holding its output ends all the same: the
 * drain is bounded, and with containment the holder is killed. */
static void bounded_drain(void **state)
{
    (void)state;
    run r;
    sh(&r, "\"$SLEEPER\" 30 & echo done", ATX_SPAWN_CONTAIN, NULL);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.res.exit.code, 0);
    assert_true(r.took_ms < 3000);
    assert_int_equal(marker_alive(), 0);
    run_release(&r);
}

/* A process that never ends whatever is sent to it is given up on. */
static int stuck_wait(void *impl, int64_t t, atx_exit *ex)
{
    (void)impl, (void)t, (void)ex;
    return ATX_ETIMEDOUT;
}
static int stuck_kill(void *impl, int sig, int64_t g)
{
    (void)impl, (void)sig, (void)g;
    return 0;
}
static void stuck_free(void *impl)
{
    close((int)(intptr_t)impl);
}
static const atx_proc_ops stuck_ops = { ATX_PROC_OPS_VERSION, stuck_wait, stuck_kill, stuck_free,
                                        NULL, NULL };

static void gives_up_on_a_stuck_process(void **state)
{
    (void)state;
    int never = eventfd(0, EFD_CLOEXEC), cancel = eventfd(0, EFD_CLOEXEC);
    atx_proc_run_opts o = ATX_PROC_RUN_OPTS_INIT;
    atx_proc_outcome res;
    atx_proc *p;
    assert_int_equal(atx_proc_new(&stuck_ops, (void *)(intptr_t)never, -1, -1, -1, never, &p), 0);
    o.cancel_fd = cancel;
    o.cancel_level = get_level;
    level = 2;
    eventfd_write(cancel, 1);
    int64_t t0 = atx_now_ns();
    assert_int_equal(atx_proc_run(p, &o, &res), 0);
    int64_t ms = (atx_now_ns() - t0) / ATX_NSEC_PER_MSEC;
    assert_true(res.abandoned);
    assert_true(res.interrupted);
    assert_true(ms >= 450 && ms < 3000);
    atx_proc_free(p);
    close(cancel);
}

static void spawn_failures(void **state)
{
    (void)state;
    const char *argv[] = { "atx-no-such-program", NULL };
    atx_spawn_opts so = ATX_SPAWN_OPTS_INIT;
    atx_proc *p;
    so.argv = argv;
    assert_int_equal(atx_spawn_local(&so, &p), ATX_ESPAWN);
    assert_non_null(strstr(atx_error_last()->message, "atx-no-such-program"));
    const char *argv2[] = { "true", NULL };
    so.argv = argv2;
    so.cwd = "/no/such/folder";
    assert_int_equal(atx_spawn_local(&so, &p), ATX_ESPAWN);
    assert_non_null(strstr(atx_error_last()->message, "/no/such/folder"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(streams_and_input),
        cmocka_unit_test(input_not_read),
        cmocka_unit_test(control_channel_and_ticks),
        cmocka_unit_test(pseudo_terminal),
        cmocka_unit_test(deadline_term_then_kill),
        cmocka_unit_test(deadline_moves),
        cmocka_unit_test(exit_beats_deadline),
        cmocka_unit_test(system_clock_deadline),
        cmocka_unit_test(cancel_and_hurry),
        cmocka_unit_test(containment),
        cmocka_unit_test(bounded_drain),
        cmocka_unit_test(gives_up_on_a_stuck_process),
        cmocka_unit_test(spawn_failures),
    };
    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
