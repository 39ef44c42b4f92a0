/*
 * The system-side agent and its host client, over a pipe on this host: output
 * streams, the control channel, exit codes, spawn failures, deadlines and
 * cancels that kill the whole tree, aborts, pseudo-terminals, file copies,
 * and a connection that ends while a test runs.
 */
#define _GNU_SOURCE 1
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "client.h"

#include <atx.h>
#include <atx/plugin/provisioner.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int host_spawn(void *impl, const atx_spawn_opts *o, atx_proc **out)
{
    (void)impl;
    return atx_spawn_local(o, out);
}
static const atx_system_ops host_ops = { ATX_SYSTEM_OPS_VERSION, host_spawn, NULL, NULL, NULL,
                                         ATX_SYSTEM_HOST_FS };

typedef struct got {
    char out[8192], err[8192], ctl[8192];
    size_t nout, nerr, nctl;
    int abort_on_ctl;
} got;

static int on_output(void *ud, int stream, const char *d, size_t n)
{
    got *g = ud;
    char *buf = stream ? g->err : g->out;
    size_t *len = stream ? &g->nerr : &g->nout;
    if (*len + n < sizeof(g->out)) {
        memcpy(buf + *len, d, n);
        *len += n;
        buf[*len] = 0;
    }
    return 0;
}

static int on_control(void *ud, const char *d, size_t n)
{
    got *g = ud;
    if (g->nctl + n < sizeof(g->ctl)) {
        memcpy(g->ctl + g->nctl, d, n);
        g->nctl += n;
        g->ctl[g->nctl] = 0;
    }
    return g->abort_on_ctl ? -1 : 0;
}

typedef struct fx {
    atx_system *sys;
    agent_client *c;
    got g;
    agent_sink sink;
    char marker[64];
    char sleeper[128];
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    assert_int_equal(atx_system_new(&host_ops, NULL, "host", NULL, NULL, &f->sys), 0);
    assert_int_equal(agent_client_start(f->sys, ATX_TEST_AGENT, &f->c), 0);
    f->sink = (agent_sink){ &f->g, on_output, on_control };
    /* A copy of sleep with a unique name, to find leftovers by. */
    snprintf(f->marker, sizeof(f->marker), "atx-agent-test-%d", getpid());
    snprintf(f->sleeper, sizeof(f->sleeper), "/tmp/%s", f->marker);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "cp \"$(command -v sleep)\" %s", f->sleeper);
    assert_int_equal(system(cmd), 0);
    *state = f;
    return 0;
}

static int leftovers(const fx *f)
{
    char cmd[256];
    /* "[a]tx..." does not match the shell that runs pgrep. */
    snprintf(cmd, sizeof(cmd), "pgrep -f '[%c]%s' >/dev/null", f->marker[0], f->marker + 1);
    return system(cmd) == 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    agent_client_free(f->c);
    atx_system_free(f->sys);
    assert_false(leftovers(f));
    unlink(f->sleeper);
    free(f);
    return 0;
}

static int run_sh(fx *f, const char *script, unsigned flags, const int64_t *deadline, int cancel_fd,
                  agent_result *res)
{
    const char *argv[] = { "sh", "-c", script, NULL };
    const char *env[] = { "ATX_SLEEPER=", NULL };
    char sl[200];
    snprintf(sl, sizeof(sl), "SLEEPER=%s", f->sleeper);
    env[0] = sl;
    agent_run_opts o = { argv, env, NULL, flags, deadline, 200 * ATX_NSEC_PER_MSEC, cancel_fd,
                         NULL, NULL };
    return agent_client_run(f->c, &o, &f->sink, res);
}

static void streams_and_exit_code(void **state)
{
    fx *f = *state;
    agent_result res;
    assert_int_equal(run_sh(f, "echo out; echo err >&2; printf 'a\\0b'; exit 3", 0, NULL, -1, &res), 0);
    assert_true(res.exited);
    assert_int_equal(res.code, 3);
    assert_int_equal(f->g.nout, 7);
    assert_memory_equal(f->g.out, "out\na\0b", 7);
    assert_string_equal(f->g.err, "err\n");
    /* Merged: one stream in order. */
    memset(&f->g, 0, sizeof(f->g));
    assert_int_equal(run_sh(f, "echo 1; echo 2 >&2; echo 3", AGENT_MERGE_OUTPUT, NULL, -1, &res), 0);
    assert_string_equal(f->g.out, "1\n2\n3\n");
    assert_int_equal(f->g.nerr, 0);
}

static void control_channel(void **state)
{
    fx *f = *state;
    agent_result res;
    assert_int_equal(run_sh(f, "echo noop >&$ATEX_TEST_CONTROL; echo stdout; "
                               "test \"$ATEX_TEST_CONTROL\" = 3",
                            AGENT_CONTROL, NULL, -1, &res), 0);
    assert_int_equal(res.code, 0);
    assert_string_equal(f->g.ctl, "noop\n");
    assert_string_equal(f->g.out, "stdout\n");
}

static void spawn_failure(void **state)
{
    fx *f = *state;
    const char *argv[] = { "/no/such/program", NULL };
    agent_run_opts o = { argv, NULL, NULL, 0, NULL, 0, -1, NULL, NULL };
    agent_result res;
    assert_int_equal(agent_client_run(f->c, &o, &f->sink, &res), ATX_ESPAWN);
    assert_non_null(strstr(atx_error_last()->message, "/no/such/program"));
    /* The agent is still fine. */
    assert_int_equal(agent_client_ping(f->c, ATX_NSEC_PER_SEC), 0);
}

static void deadline_kills_the_tree(void **state)
{
    fx *f = *state;
    agent_result res;
    int64_t deadline = atx_now_ns() + 300 * ATX_NSEC_PER_MSEC;
    int64_t t0 = atx_now_ns();
    assert_int_equal(run_sh(f, "trap '' TERM; $SLEEPER 100 & $SLEEPER 100", 0, &deadline, -1, &res), 0);
    assert_true(res.timed_out);
    assert_false(res.exited);
    assert_true(atx_now_ns() - t0 < 2 * ATX_NSEC_PER_SEC);
    assert_false(leftovers(f));
}

static void cancel_interrupts(void **state)
{
    fx *f = *state;
    agent_result res;
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], "x", 1), 1);
    assert_int_equal(run_sh(f, "$SLEEPER 100 & $SLEEPER 100", 0, NULL, p[0], &res), 0);
    assert_true(res.interrupted);
    close(p[0]);
    close(p[1]);
    assert_false(leftovers(f));
}

static void sink_abort_kills(void **state)
{
    fx *f = *state;
    agent_result res;
    f->g.abort_on_ctl = 1;
    assert_int_equal(run_sh(f, "echo bogus >&3; $SLEEPER 100", AGENT_CONTROL, NULL, -1, &res), 0);
    assert_true(res.aborted);
    assert_int_equal(res.signal, SIGKILL);
}

static void leader_exit_kills_group(void **state)
{
    fx *f = *state;
    agent_result res;
    int64_t t0 = atx_now_ns();
    assert_int_equal(run_sh(f, "$SLEEPER 100 & echo started", 0, NULL, -1, &res), 0);
    assert_int_equal(res.code, 0);
    assert_true(atx_now_ns() - t0 < 2 * ATX_NSEC_PER_SEC);
    assert_false(leftovers(f));
}

static void pseudo_terminal(void **state)
{
    fx *f = *state;
    agent_result res;
    assert_int_equal(run_sh(f, "test -t 0 && test -t 1 && echo tty", AGENT_PTY, NULL, -1, &res), 0);
    assert_int_equal(res.code, 0);
    assert_non_null(strstr(f->g.out, "tty"));
}

static void put_file(void **state)
{
    fx *f = *state;
    char src[] = "/tmp/atx-agent-src-XXXXXX", dst[64];
    int fd = mkstemp(src);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "payload\n", 8), 8);
    close(fd);
    snprintf(dst, sizeof(dst), "%s.copy", src);
    assert_int_equal(agent_client_put(f->c, src, dst, 0640), 0);
    struct stat st;
    assert_int_equal(stat(dst, &st), 0);
    assert_int_equal(st.st_size, 8);
    assert_int_equal(st.st_mode & 0777, 0640);
    assert_int_not_equal(agent_client_put(f->c, src, "/no/such/dir/file", 0644), 0);
    unlink(src);
    unlink(dst);
}

/* The connection ends while a test runs: the agent kills it, and what the
 * test put in another session too. */
static void connection_end_kills_everything(void **state)
{
    fx *f = *state;
    agent_result res;
    int64_t deadline = atx_now_ns() + 200 * ATX_NSEC_PER_MSEC;
    /* setsid'd child escapes the group but not the subreaper agent. */
    assert_int_equal(run_sh(f, "setsid $SLEEPER 100 & echo ok", 0, &deadline, -1, &res), 0);
    agent_client_free(f->c);
    f->c = NULL;
    /* agent_client_free waited for the agent, which killed everything. */
    assert_false(leftovers(f));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(streams_and_exit_code, setup, teardown),
        cmocka_unit_test_setup_teardown(control_channel, setup, teardown),
        cmocka_unit_test_setup_teardown(spawn_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(deadline_kills_the_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_interrupts, setup, teardown),
        cmocka_unit_test_setup_teardown(sink_abort_kills, setup, teardown),
        cmocka_unit_test_setup_teardown(leader_exit_kills_group, setup, teardown),
        cmocka_unit_test_setup_teardown(pseudo_terminal, setup, teardown),
        cmocka_unit_test_setup_teardown(put_file, setup, teardown),
        cmocka_unit_test_setup_teardown(connection_end_kills_everything, setup, teardown),
    };
    atx_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
