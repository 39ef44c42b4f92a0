/*
 * The orchestrator through the public API, with the real local provisioner
 * and exec executor: requirement checks, reruns, ordering, destructive
 * tests, spawn failures and broken executors.
 */
#define _GNU_SOURCE 1
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <atx.h>
#include <atx/plugin/aggregator.h>
#include <atx/plugin/executor.h>
#include <atx/plugin/provisioner.h>

#include <pthread.h>
#include <time.h>

#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

/* ---- a collecting aggregator ---- */

typedef struct collected {
    atx_result *r[1024];
    size_t n;
    int began, ended;
    atx_summary summary;
} collected;

static int col_create(atx_plugin_ctx *ctx, void **state)
{
    *state = atx_plugin_ctx_userdata(ctx);
    return 0;
}
static void col_destroy(void *state) { (void)state; }
static int col_begin(void *state, const atx_run_info *info)
{
    (void)info;
    ((collected *)state)->began++;
    return 0;
}
static int col_result(void *state, const atx_result *r)
{
    collected *c = state;
    if (c->n < 1024)
        c->r[c->n++] = atx_result_ref((atx_result *)r);
    return 0;
}
static int col_end(void *state, const atx_summary *s)
{
    collected *c = state;
    c->ended++;
    c->summary = *s;
    return 0;
}
static const atx_aggregator_vtable col_vt = {
    .version = ATX_AGGREGATOR_VTABLE_VERSION, .create = col_create, .destroy = col_destroy,
    .begin = col_begin, .result = col_result, .end = col_end,
};
static const atx_plugin_descriptor col_plugin = {
    ATX_ABI_MAJOR, ATX_ABI_MINOR, sizeof(atx_plugin_descriptor), ATX_PLUGIN_AGGREGATOR,
    "collect", "1", "collects results", &col_vt,
};

static void collected_free(collected *c)
{
    for (size_t i = 0; i < c->n; i++)
        atx_result_unref(c->r[i]);
    free(c);
}

/* The final own result of a test, or NULL. */
static const atx_result *final_of(const collected *c, const char *test)
{
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(atx_result_test(c->r[i]), test) && !atx_result_subtest(c->r[i]) &&
            atx_result_final(c->r[i]))
            return c->r[i];
    return NULL;
}

/* ---- fixtures ---- */

typedef struct fx {
    char dir[64];
    atx_plugins *reg;
    atx_run *run;
    collected *col;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    const char *paths[] = { ATX_TEST_PLUGIN_DIR, NULL };
    atx_plugins_opts po = ATX_PLUGINS_OPTS_INIT;
    atx_run_opts ro = ATX_RUN_OPTS_INIT;

    snprintf(f->dir, sizeof(f->dir), "/tmp/atx-orch-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    po.paths = paths;
    po.no_environment = 1;
    po.no_default_dir = 1;
    assert_int_equal(atx_plugins_new(&po, &f->reg), 0);
    ro.results_dir = f->dir;
    ro.plugins = f->reg;
    assert_int_equal(atx_run_new(&ro, &f->run), 0);
    f->col = calloc(1, sizeof(*f->col));
    assert_int_equal(atx_run_add_builtin(f->run, &col_plugin, NULL, f->col), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    char cmd[128];
    atx_run_free(f->run);
    atx_plugins_free(f->reg);
    collected_free(f->col);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static atx_test *sh_test(const char *name, const char *script)
{
    const char *argv[] = { "sh", "-c", script, NULL };
    atx_test *t;
    assert_int_equal(atx_test_new(name, "exec", &t), 0);
    assert_int_equal(atx_test_set_command(t, argv), 0);
    return t;
}

/* ---- tests ---- */

/* A requirement no system offers fails at once, naming the label, and the
 * rest of the run goes on. */
static void unsatisfiable_fails_at_once(void **state)
{
    fx *f = *state;
    atx_summary s;
    atx_test *t = sh_test("/needs-sparc", "true");

    assert_int_equal(atx_test_require(t, "arch", "sparc64"), 0);
    assert_int_equal(atx_run_add_test(f->run, t), 0);
    assert_int_equal(atx_run_add_test(f->run, sh_test("/fine", "true")), 0);
    assert_int_equal(atx_run_add_provisioner(f->run, "local", "{\"slots\": 1}"), 0);
    int64_t t0 = atx_now_ns();
    assert_int_equal(atx_run_execute(f->run, &s), 0);
    assert_true(atx_now_ns() - t0 < 5 * ATX_NSEC_PER_SEC);
    const atx_result *r = final_of(f->col, "/needs-sparc");
    assert_non_null(r);
    assert_int_equal(atx_result_status(r), ATX_STATUS_ERROR);
    assert_non_null(strstr(atx_result_note(r), "arch=sparc64"));
    assert_string_equal(atx_result_error_type(r), "unsatisfiable");
    assert_int_equal(atx_result_status(final_of(f->col, "/fine")), ATX_STATUS_PASS);
    assert_int_equal(s.errors, 1);
    assert_int_equal(s.passed, 1);
    assert_int_equal(atx_summary_exit_code(&s), 1);
    assert_int_equal(f->col->began, 1);
    assert_int_equal(f->col->ended, 1);
}

/* A failed test is rerun within its budget on another free system; every
 * attempt is reported, only the last as final. */
static void rerun_prefers_another_system(void **state)
{
    fx *f = *state;
    atx_summary s;
    atx_test *t = sh_test("/flaky", "test \"$ATX_TEST_ATTEMPT\" -gt 1");

    assert_int_equal(atx_test_set_reruns(t, 2), 0);
    assert_int_equal(atx_run_add_test(f->run, t), 0);
    assert_int_equal(atx_run_add_provisioner(f->run, "local", "{\"slots\": 2}"), 0);
    assert_int_equal(atx_run_execute(f->run, &s), 0);
    assert_int_equal(f->col->n, 2);
    const atx_result *a1 = f->col->r[0], *a2 = f->col->r[1];
    assert_int_equal(atx_result_attempt(a1), 1);
    assert_false(atx_result_final(a1));
    assert_int_equal(atx_result_status(a1), ATX_STATUS_FAIL);
    assert_int_equal(atx_result_attempt(a2), 2);
    assert_true(atx_result_final(a2));
    assert_int_equal(atx_result_status(a2), ATX_STATUS_PASS);
    assert_string_not_equal(atx_result_system_id(a1), atx_result_system_id(a2));
    assert_int_equal(s.flaky, 1);
    assert_int_equal(s.passed, 1);
    assert_int_equal(atx_summary_exit_code(&s), 0);
}

/* With one system, a test that keeps failing uses its whole budget there. */
static void rerun_budget_is_kept(void **state)
{
    fx *f = *state;
    atx_summary s;
    atx_test *t = sh_test("/broken", "exit 4");

    assert_int_equal(atx_test_set_reruns(t, 2), 0);
    assert_int_equal(atx_run_add_test(f->run, t), 0);
    assert_int_equal(atx_run_add_provisioner(f->run, "local", "{\"slots\": 1}"), 0);
    assert_int_equal(atx_run_execute(f->run, &s), 0);
    assert_int_equal(f->col->n, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(atx_result_attempt(f->col->r[i]), (int)i + 1);
        assert_int_equal(atx_result_final(f->col->r[i]), i == 2);
        assert_int_equal(atx_result_exit_code(f->col->r[i]), 4);
    }
    assert_int_equal(s.failed, 1);
    assert_int_equal(s.attempts, 3);
}

/* One system runs tests by priority, then longest declared duration, with
 * unknown durations early, then in the order given. */
static void order_on_one_system(void **state)
{
    fx *f = *state;
    atx_summary s;
    struct { const char *name; int prio; int64_t dur; } spec[] = {
        { "/short", 0, 1 * ATX_NSEC_PER_SEC }, { "/long", 0, 9 * ATX_NSEC_PER_SEC },
        { "/unknown", 0, 0 }, { "/urgent", 5, 1 * ATX_NSEC_PER_SEC },
        { "/medium", 0, 5 * ATX_NSEC_PER_SEC },
    };
    const char *want[] = { "/urgent", "/unknown", "/long", "/medium", "/short" };

    for (size_t i = 0; i < 5; i++) {
        atx_test *t = sh_test(spec[i].name, "true");
        atx_test_set_priority(t, spec[i].prio);
        atx_test_set_duration(t, spec[i].dur);
        assert_int_equal(atx_run_add_test(f->run, t), 0);
    }
    assert_int_equal(atx_run_add_provisioner(f->run, "local", "{\"slots\": 1}"), 0);
    assert_int_equal(atx_run_execute(f->run, &s), 0);
    assert_int_equal(f->col->n, 5);
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(atx_result_test(f->col->r[i]), want[i]);
}

/* A destructive test retires its system: the next test gets a new one. */
static void destructive_retires_system(void **state)
{
    fx *f = *state;
    atx_summary s;
    atx_test *t = sh_test("/a-destroyer", "true");

    atx_test_set_destructive(t, 1);
    atx_test_set_priority(t, 1);
    assert_int_equal(atx_run_add_test(f->run, t), 0);
    assert_int_equal(atx_run_add_test(f->run, sh_test("/b-after", "true")), 0);
    assert_int_equal(atx_run_add_provisioner(f->run, "local", "{\"slots\": 1}"), 0);
    assert_int_equal(atx_run_execute(f->run, &s), 0);
    assert_int_equal(f->col->n, 2);
    assert_string_equal(atx_result_test(f->col->r[0]), "/a-destroyer");
    assert_string_not_equal(atx_result_system_id(f->col->r[0]),
                            atx_result_system_id(f->col->r[1]));
    assert_int_equal(s.passed, 2);
}

/* A program that cannot be started is the test's error, named. */
static void spawn_failure_is_an_error(void **state)
{
    fx *f = *state;
    atx_summary s;
    const char *argv[] = { "/nonexistent/program", NULL };
    atx_test *t;

    assert_int_equal(atx_test_new("/missing", "exec", &t), 0);
    assert_int_equal(atx_test_set_command(t, argv), 0);
    assert_int_equal(atx_run_add_test(f->run, t), 0);
    assert_int_equal(atx_run_add_provisioner(f->run, "local", NULL), 0);
    assert_int_equal(atx_run_execute(f->run, &s), 0);
    const atx_result *r = final_of(f->col, "/missing");
    assert_non_null(r);
    assert_int_equal(atx_result_status(r), ATX_STATUS_ERROR);
    assert_string_equal(atx_result_error_type(r), "spawn");
    assert_non_null(strstr(atx_result_note(r), "/nonexistent/program"));
}

/* An executor that fails without a result yields infra, not a hang. */
static int broken_create(atx_plugin_ctx *c, void **s) { (void)c; *s = NULL; return 0; }
static void broken_destroy(void *s) { (void)s; }
static int broken_run(void *s, atx_attempt *a)
{
    (void)s, (void)a;
    return atx_error_set(ATX_EIO, "the lab network is down");
}
static const atx_executor_vtable broken_vt = {
    .version = ATX_EXECUTOR_VTABLE_VERSION, .create = broken_create,
    .destroy = broken_destroy, .run = broken_run,
};
static const atx_plugin_descriptor broken_plugin = {
    ATX_ABI_MAJOR, ATX_ABI_MINOR, sizeof(atx_plugin_descriptor), ATX_PLUGIN_EXECUTOR,
    "broken", "1", "fails", &broken_vt,
};

static void executor_failure_is_infra(void **state)
{
    fx *f = *state;
    atx_summary s;
    atx_test *t;

    assert_int_equal(atx_run_add_builtin(f->run, &broken_plugin, NULL, NULL), 0);
    assert_int_equal(atx_test_new("/net", "broken", &t), 0);
    assert_int_equal(atx_run_add_test(f->run, t), 0);
    assert_int_equal(atx_run_add_provisioner(f->run, "local", NULL), 0);
    assert_int_equal(atx_run_execute(f->run, &s), 0);
    const atx_result *r = final_of(f->col, "/net");
    assert_non_null(r);
    assert_int_equal(atx_result_status(r), ATX_STATUS_INFRA);
    assert_non_null(strstr(atx_result_note(r), "the lab network is down"));
    assert_int_equal(s.infra, 1);
    /* Infrastructure trouble re-queues the test (twice) on fresh systems,
     * without its rerun budget. */
    assert_int_equal(s.attempts, 3);
    assert_int_equal(f->col->n, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(atx_result_attempt(f->col->r[i]), (int)i + 1);
        assert_int_equal(atx_result_final(f->col->r[i]), i == 2);
    }
    assert_string_not_equal(atx_result_system_id(f->col->r[0]),
                            atx_result_system_id(f->col->r[1]));
}

/* A system lost under a test: the test runs again elsewhere and passes;
 * the lost attempt is reported as infra, superseded. */
static int lossy_run(void *s, atx_attempt *a)
{
    (void)s;
    atx_result *r;
    if (atx_attempt_number(a) > 1) {
        atx_result_new(atx_test_name(atx_attempt_test(a)), NULL, &r);
        atx_result_set_status(r, ATX_STATUS_PASS);
        return atx_attempt_emit(a, r);
    }
    atx_result_new(atx_test_name(atx_attempt_test(a)), NULL, &r);
    atx_result_set_status(r, ATX_STATUS_INFRA);
    atx_result_set_note(r, "lost the system");
    atx_attempt_emit(a, r);
    return atx_error_set(ATX_ELOST, "connection reset");
}
static const atx_executor_vtable lossy_vt = {
    .version = ATX_EXECUTOR_VTABLE_VERSION, .create = broken_create,
    .destroy = broken_destroy, .run = lossy_run,
};
static const atx_plugin_descriptor lossy_plugin = {
    ATX_ABI_MAJOR, ATX_ABI_MINOR, sizeof(atx_plugin_descriptor), ATX_PLUGIN_EXECUTOR,
    "lossy", "1", "loses its first system", &lossy_vt,
};

static void lost_system_requeues(void **state)
{
    fx *f = *state;
    atx_summary s;
    atx_test *t;

    assert_int_equal(atx_run_add_builtin(f->run, &lossy_plugin, NULL, NULL), 0);
    assert_int_equal(atx_test_new("/t", "lossy", &t), 0);
    assert_int_equal(atx_test_set_reruns(t, 0), 0);
    assert_int_equal(atx_run_add_test(f->run, t), 0);
    assert_int_equal(atx_run_add_provisioner(f->run, "local", "{\"slots\": 2}"), 0);
    assert_int_equal(atx_run_execute(f->run, &s), 0);
    assert_int_equal(f->col->n, 2);
    assert_int_equal(atx_result_status(f->col->r[0]), ATX_STATUS_INFRA);
    assert_false(atx_result_final(f->col->r[0]));
    assert_int_equal(atx_result_status(f->col->r[1]), ATX_STATUS_PASS);
    assert_true(atx_result_final(f->col->r[1]));
    assert_string_not_equal(atx_result_system_id(f->col->r[0]),
                            atx_result_system_id(f->col->r[1]));
    assert_int_equal(s.passed, 1);
    assert_int_equal(s.flaky, 0);
    assert_int_equal(atx_summary_exit_code(&s), 0);
}

/* Bad input to the API is refused with a sentence. */
static void bad_input_refused(void **state)
{
    fx *f = *state;
    atx_test *t;

    assert_int_equal(atx_test_new("", "exec", &t), ATX_EINVAL);
    assert_int_equal(atx_run_add_test(f->run, sh_test("/dup", "true")), 0);
    assert_int_equal(atx_run_add_test(f->run, sh_test("/dup", "true")), ATX_EEXIST);
    assert_non_null(strstr(atx_error_last()->message, "/dup"));
    assert_int_equal(atx_test_new("/x", "no-such-executor", &t), 0);
    assert_int_equal(atx_run_add_test(f->run, t), ATX_ENOTFOUND);
    assert_non_null(strstr(atx_error_last()->message, "no-such-executor"));
    assert_int_equal(atx_test_new("/y", "exec", &t), 0);
    assert_int_equal(atx_test_set_spec_json(t, "{\"command\": \"true\"}"), 0);
    assert_int_equal(atx_run_add_test(f->run, t), ATX_EINVAL);
    assert_non_null(strstr(atx_error_last()->message, "command"));
    assert_int_equal(atx_run_add_provisioner(f->run, "local", "{\"slots\": 0}"), ATX_EINVAL);
    assert_int_equal(atx_run_add_provisioner(f->run, "local", "{\"bogus\": 1}"), ATX_EINVAL);
    assert_non_null(strstr(atx_error_last()->message, "bogus"));
}

/* Many tests on many systems with reruns: every test ends with exactly one
 * final result, every attempt is reported once, the counts add up. */
static void many_tests_one_final_each(void **state)
{
    fx *f = *state;
    enum { N = 300 };
    atx_summary s;
    char name[32];
    size_t finals[N] = { 0 }, attempts = 0;

    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "/t%03d", i);
        /* Every third test fails its first attempt. */
        atx_test *t = sh_test(name, i % 3 ? "true" : "test \"$ATX_TEST_ATTEMPT\" -gt 1");
        atx_test_set_reruns(t, 1);
        atx_test_set_priority(t, i % 5);
        assert_int_equal(atx_run_add_test(f->run, t), 0);
    }
    assert_int_equal(atx_run_add_provisioner(f->run, "local", "{\"slots\": 8}"), 0);
    assert_int_equal(atx_run_execute(f->run, &s), 0);
    for (size_t i = 0; i < f->col->n; i++) {
        int k = atoi(atx_result_test(f->col->r[i]) + 2);
        attempts++;
        if (atx_result_final(f->col->r[i]))
            finals[k]++;
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(finals[i], 1);
    assert_int_equal(attempts, N + N / 3);
    assert_int_equal(s.attempts, N + N / 3);
    assert_int_equal(s.results, N + N / 3);
    assert_int_equal(s.passed, N);
    assert_int_equal(s.flaky, N / 3);
}

/* A run with no provisioner is refused before anything starts. */
static void no_provisioner_refused(void **state)
{
    fx *f = *state;
    assert_int_equal(atx_run_add_test(f->run, sh_test("/t", "true")), 0);
    assert_int_equal(atx_run_execute(f->run, NULL), ATX_EINVAL);
}

/* The history orders the next run: tests that took longest go first, with
 * no declared durations. */
static void history_orders_next_run(void **state)
{
    fx *f = *state;
    const char *names[] = { "/a-quick", "/b-slow", "/c-medium" };
    const char *sleeps[] = { "sleep 0.02", "sleep 0.3", "sleep 0.15" };
    char hist[128];
    atx_summary s;

    snprintf(hist, sizeof(hist), "%s/state/history.db", f->dir);
    for (int round = 0; round < 2; round++) {
        atx_run *run = f->run;
        collected *col = f->col;
        if (round == 1) {
            atx_run_opts ro = ATX_RUN_OPTS_INIT;
            char dir[128];
            snprintf(dir, sizeof(dir), "%s/second", f->dir);
            ro.results_dir = dir;
            ro.plugins = f->reg;
            assert_int_equal(atx_run_new(&ro, &run), 0);
            col = calloc(1, sizeof(*col));
            assert_int_equal(atx_run_add_builtin(run, &col_plugin, NULL, col), 0);
        }
        for (size_t i = 0; i < 3; i++)
            assert_int_equal(atx_run_add_test(run, sh_test(names[i], sleeps[i])), 0);
        assert_int_equal(atx_run_set_history(run, hist), 0);
        assert_int_equal(atx_run_add_provisioner(run, "local", "{\"slots\": 1}"), 0);
        assert_int_equal(atx_run_execute(run, &s), 0);
        assert_int_equal(col->n, 3);
        /* First run: no estimates, so the order they were added; then the
         * longest first. */
        const char *want[2][3] = { { "/a-quick", "/b-slow", "/c-medium" },
                                   { "/b-slow", "/c-medium", "/a-quick" } };
        for (size_t i = 0; i < 3; i++)
            assert_string_equal(atx_result_test(col->r[i]), want[round][i]);
        if (round == 1) {
            atx_run_free(run);
            collected_free(col);
        }
    }
}

/* An executor that looks at the run's progress as each test starts. */
typedef struct peek {
    atx_run *run;
    atx_progress seen[8];
    atomic_int n;
    atomic_int now, most;
} peek;

static int peek_create(atx_plugin_ctx *c, void **s)
{
    *s = atx_plugin_ctx_userdata(c);
    return 0;
}
static int peek_run(void *s, atx_attempt *a)
{
    peek *p = s;
    atx_result *r;
    int i = atomic_fetch_add(&p->n, 1);
    if (i < 8)
        atx_run_progress(p->run, &p->seen[i]);
    int now = atomic_fetch_add(&p->now, 1) + 1;
    for (int m = atomic_load(&p->most); now > m && !atomic_compare_exchange_weak(&p->most, &m, now);)
        ;
    usleep(20000);
    atomic_fetch_sub(&p->now, 1);
    atx_result_new(atx_test_name(atx_attempt_test(a)), NULL, &r);
    return atx_attempt_emit(a, r);
}
static const atx_executor_vtable peek_vt = {
    .version = ATX_EXECUTOR_VTABLE_VERSION, .create = peek_create, .destroy = broken_destroy,
    .run = peek_run,
};
static const atx_plugin_descriptor peek_plugin = {
    ATX_ABI_MAJOR, ATX_ABI_MINOR, sizeof(atx_plugin_descriptor), ATX_PLUGIN_EXECUTOR,
    "peek", "1", "looks at the progress", &peek_vt,
};

/* The ETA: the expected work left spread over the leased systems. */
static void progress_has_eta(void **state)
{
    fx *f = *state;
    peek p = { .run = f->run };
    atx_summary s;

    assert_int_equal(atx_run_add_builtin(f->run, &peek_plugin, NULL, &p), 0);
    for (int i = 0; i < 4; i++) {
        char name[16];
        atx_test *t;
        snprintf(name, sizeof(name), "/t%d", i);
        assert_int_equal(atx_test_new(name, "peek", &t), 0);
        atx_test_set_duration(t, 10 * ATX_NSEC_PER_SEC);
        assert_int_equal(atx_run_add_test(f->run, t), 0);
    }
    assert_int_equal(atx_run_add_provisioner(f->run, "local", "{\"slots\": 1}"), 0);
    assert_int_equal(atx_run_execute(f->run, &s), 0);
    assert_int_equal(atomic_load(&p.n), 4);
    for (int i = 0; i < 4; i++) {
        /* (4 - i) tests of 10 s left, one of them just started, one system. */
        int64_t want = (4 - i) * 10 * ATX_NSEC_PER_SEC;
        assert_int_equal(p.seen[i].tests, 4);
        assert_int_equal(p.seen[i].done, (size_t)i);
        assert_int_equal(p.seen[i].running, 1);
        assert_true(p.seen[i].eta_ns <= want && p.seen[i].eta_ns > want - ATX_NSEC_PER_SEC);
    }
}

/* A cap on systems leased at once, whatever the provisioners offer. */
static void max_running_caps_systems(void **state)
{
    fx *f = *state;
    peek p = { .run = f->run };
    atx_policy pol = *atx_run_policy(f->run);
    atx_summary s;

    pol.max_running = 2;
    assert_int_equal(atx_run_set_policy(f->run, &pol), 0);
    assert_int_equal(atx_run_add_builtin(f->run, &peek_plugin, NULL, &p), 0);
    for (int i = 0; i < 12; i++) {
        char name[16];
        atx_test *t;
        snprintf(name, sizeof(name), "/t%d", i);
        assert_int_equal(atx_test_new(name, "peek", &t), 0);
        assert_int_equal(atx_run_add_test(f->run, t), 0);
    }
    assert_int_equal(atx_run_add_provisioner(f->run, "local", "{\"slots\": 4}"), 0);
    assert_int_equal(atx_run_add_provisioner(f->run, "local", "{\"slots\": 4}"), 0);
    assert_int_equal(atx_run_execute(f->run, &s), 0);
    assert_int_equal(s.passed, 12);
    assert_true(atomic_load(&p.most) >= 1 && atomic_load(&p.most) <= 2);
}

/* Per-system state: a version 2 executor's state for a system comes back
 * with every attempt there and at its release; a version 1 executor (its
 * vtable ends before prepare_system) keeps working with prepare/finish. */
static struct {
    int v1_prepared, v1_finished, v2_prepared, v2_released, v2_runs_with_state;
} calls;
static int pass_run(atx_attempt *a)
{
    atx_result *r;
    atx_result_new(atx_test_name(atx_attempt_test(a)), NULL, &r);
    atx_result_set_status(r, ATX_STATUS_PASS);
    return atx_attempt_emit(a, r);
}
static int v1_prepare(void *s, atx_system *sys) { (void)s, (void)sys; calls.v1_prepared++; return 0; }
static void v1_finish(void *s, atx_system *sys) { (void)s, (void)sys; calls.v1_finished++; }
static int v1_run(void *s, atx_attempt *a) { (void)s; return pass_run(a); }
/* Exactly a version 1 vtable: the members up to finish. */
static const struct {
    unsigned version;
    int (*create)(atx_plugin_ctx *, void **);
    void (*destroy)(void *);
    int (*check)(void *, const atx_test *);
    int (*prepare)(void *, atx_system *);
    int (*run)(void *, atx_attempt *);
    int (*discover)(void *, const struct json_object *, const char *,
                    int (*)(void *, atx_test *), void *);
    void (*finish)(void *, atx_system *);
} v1_vt = { 1, broken_create, broken_destroy, NULL, v1_prepare, v1_run, NULL, v1_finish };
static const atx_plugin_descriptor v1_plugin = {
    ATX_ABI_MAJOR, ATX_ABI_MINOR, sizeof(atx_plugin_descriptor), ATX_PLUGIN_EXECUTOR,
    "vone", "1", "a version 1 executor", &v1_vt,
};
static int v2_prepare(void *s, atx_system *sys, void **state)
{
    (void)s;
    calls.v2_prepared++;
    *state = strdup(atx_system_id(sys));
    return 0;
}
static void v2_release(void *s, atx_system *sys, void *state)
{
    (void)s;
    if (state && strcmp(state, atx_system_id(sys)) == 0)
        calls.v2_released++;
    free(state);
}
static int v2_run(void *s, atx_attempt *a)
{
    const char *st = atx_attempt_system_state(a);
    (void)s;
    if (st && strcmp(st, atx_system_id(atx_attempt_system(a))) == 0)
        calls.v2_runs_with_state++;
    return pass_run(a);
}
static const atx_executor_vtable v2_vt = {
    .version = ATX_EXECUTOR_VTABLE_VERSION, .create = broken_create, .destroy = broken_destroy,
    .run = v2_run, .prepare_system = v2_prepare, .release_system = v2_release,
};
static const atx_plugin_descriptor v2_plugin = {
    ATX_ABI_MAJOR, ATX_ABI_MINOR, sizeof(atx_plugin_descriptor), ATX_PLUGIN_EXECUTOR,
    "vtwo", "1", "a version 2 executor", &v2_vt,
};

/* A provisioner whose leases wait on a service (a cluster's scheduler): it
 * asks for three reserves at once, and each waits (5 s at most) until
 * three are under way. */
typedef struct par_prov {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int inflight, most;
    int fail_first;         /* reserves that fail (after the three meet) */
    unsigned n;
    atx_labels *labels;
    const char *workdir;
} par_prov;

static int par_create(atx_plugin_ctx *ctx, void **out)
{
    *out = atx_plugin_ctx_userdata(ctx);
    return 0;
}
static void par_destroy(void *s) { (void)s; }
static int par_capacity(void *s) { (void)s; return 3; }
static int par_parallel(void *s) { (void)s; return 3; }
static size_t par_offer_count(void *s) { (void)s; return 1; }
static const atx_labels *par_offer(void *s, size_t i)
{
    return i == 0 ? ((par_prov *)s)->labels : NULL;
}
static int par_spawn(void *impl, const atx_spawn_opts *o, atx_proc **out)
{
    (void)impl;
    return atx_spawn_local(o, out);
}
static const atx_system_ops par_ops = { ATX_SYSTEM_OPS_VERSION, par_spawn, NULL, NULL, NULL,
                                        ATX_SYSTEM_HOST_FS, NULL };
static int par_reserve(void *state, const atx_reserve_req *req, atx_system **out)
{
    par_prov *p = state;
    struct timespec until;
    char id[32];
    (void)req;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&p->mu);
    if (++p->inflight > p->most)
        p->most = p->inflight;
    pthread_cond_broadcast(&p->cv);
    while (p->most < 3 && pthread_cond_timedwait(&p->cv, &p->mu, &until) == 0)
        ;
    p->inflight--;
    if (p->fail_first > 0) {
        p->fail_first--;
        pthread_mutex_unlock(&p->mu);
        return atx_error_set(ATX_EINFRA, "par: the service said no");
    }
    snprintf(id, sizeof(id), "par-%u", ++p->n);
    pthread_mutex_unlock(&p->mu);
    return atx_system_new(&par_ops, NULL, id, p->labels, p->workdir, out);
}
static void par_release(void *state, atx_system *sys, unsigned flags)
{
    (void)state;
    (void)flags;
    atx_system_free(sys);
}
static const atx_provisioner_vtable par_vt = {
    .version = ATX_PROVISIONER_VTABLE_VERSION, .create = par_create, .destroy = par_destroy,
    .capacity = par_capacity, .offer_count = par_offer_count, .offer = par_offer,
    .reserve = par_reserve, .release = par_release, .reserve_parallel = par_parallel,
};
static const atx_plugin_descriptor par_plugin = {
    ATX_ABI_MAJOR, ATX_ABI_MINOR, sizeof(atx_plugin_descriptor), ATX_PLUGIN_PROVISIONER,
    "par", "1", "reserves at once", &par_vt,
};

static void parallel_reserves(void **state)
{
    fx *f = *state;
    par_prov p = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER,
                   .workdir = f->dir };
    atx_summary s;
    assert_int_equal(atx_labels_new(&p.labels), 0);
    assert_int_equal(atx_run_add_builtin(f->run, &par_plugin, NULL, &p), 0);
    for (int i = 0; i < 6; i++) {
        char name[32];
        snprintf(name, sizeof(name), "/p%d", i);
        assert_int_equal(atx_run_add_test(f->run, sh_test(name, "sleep 0.2")), 0);
    }
    int64_t t0 = atx_now_ns();
    assert_int_equal(atx_run_execute(f->run, &s), 0);
    assert_int_equal(s.passed, 6);
    assert_int_equal(p.most, 3);
    /* Not one after the other, each waiting out its 5 s. */
    assert_true(atx_now_ns() - t0 < 4 * ATX_NSEC_PER_SEC);
    atx_labels_free(p.labels);
}

/* Three reserves under way failing together are one trouble, not three in
 * a row: the provisioner tries again (one at a time) and the run passes. */
static void parallel_failures_count_once(void **state)
{
    fx *f = *state;
    par_prov p = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER,
                   .workdir = f->dir, .fail_first = 3 };
    atx_summary s;
    assert_int_equal(atx_labels_new(&p.labels), 0);
    assert_int_equal(atx_run_add_builtin(f->run, &par_plugin, NULL, &p), 0);
    for (int i = 0; i < 4; i++) {
        char name[32];
        snprintf(name, sizeof(name), "/f%d", i);
        assert_int_equal(atx_run_add_test(f->run, sh_test(name, "true")), 0);
    }
    assert_int_equal(atx_run_execute(f->run, &s), 0);
    assert_int_equal(s.passed, 4);
    assert_int_equal(s.infra, 0);
    assert_int_equal(p.most, 3);
    atx_labels_free(p.labels);
}

static void per_system_state(void **state)
{
    fx *f = *state;
    atx_summary s;
    memset(&calls, 0, sizeof(calls));
    assert_int_equal(atx_run_add_builtin(f->run, &v1_plugin, NULL, NULL), 0);
    assert_int_equal(atx_run_add_builtin(f->run, &v2_plugin, NULL, NULL), 0);
    for (int i = 0; i < 6; i++) {
        char name[32];
        atx_test *t;
        snprintf(name, sizeof(name), "/t%d", i);
        assert_int_equal(atx_test_new(name, i % 2 ? "vone" : "vtwo", &t), 0);
        assert_int_equal(atx_run_add_test(f->run, t), 0);
    }
    assert_int_equal(atx_run_add_provisioner(f->run, "local", "{\"slots\": 1}"), 0);
    assert_int_equal(atx_run_execute(f->run, &s), 0);
    assert_int_equal(s.passed, 6);
    assert_int_equal(calls.v1_prepared, 1);
    assert_int_equal(calls.v1_finished, 1);
    assert_int_equal(calls.v2_prepared, 1);
    assert_int_equal(calls.v2_released, 1);
    assert_int_equal(calls.v2_runs_with_state, 3);
}

/* A preparation that hangs is stopped at the prepare timeout: infra. */
static int hang_prepare(void *s, atx_system *sys)
{
    const char *argv[] = { "sleep", "30", NULL };
    atx_spawn_opts o = ATX_SPAWN_OPTS_INIT;
    atx_proc *p;
    atx_exit ex;
    int r;
    (void)s;
    o.argv = argv;
    if ((r = atx_system_spawn(sys, &o, &p)) < 0)
        return r;
    r = atx_proc_wait(p, -1, &ex);
    atx_proc_free(p);
    if (r == 0 && ex.timed_out)
        r = atx_error_set(ATX_ETIMEDOUT, "installing the tools timed out");
    return r;
}
static const atx_executor_vtable hang_vt = {
    .version = ATX_EXECUTOR_VTABLE_VERSION, .create = broken_create, .destroy = broken_destroy,
    .prepare = hang_prepare, .run = lossy_run,
};
static const atx_plugin_descriptor hang_plugin = {
    ATX_ABI_MAJOR, ATX_ABI_MINOR, sizeof(atx_plugin_descriptor), ATX_PLUGIN_EXECUTOR,
    "hang", "1", "hangs in prepare", &hang_vt,
};

static void prepare_timeout_is_infra(void **state)
{
    fx *f = *state;
    atx_policy pol = *atx_run_policy(f->run);
    atx_summary s;
    atx_test *t;

    pol.prepare_timeout_ns = 300 * ATX_NSEC_PER_MSEC;
    assert_int_equal(atx_run_set_policy(f->run, &pol), 0);
    assert_int_equal(atx_run_add_builtin(f->run, &hang_plugin, NULL, NULL), 0);
    assert_int_equal(atx_test_new("/t", "hang", &t), 0);
    assert_int_equal(atx_run_add_test(f->run, t), 0);
    assert_int_equal(atx_run_add_provisioner(f->run, "local", NULL), 0);
    int64_t t0 = atx_now_ns();
    assert_int_equal(atx_run_execute(f->run, &s), 0);
    /* Three attempts (two infra re-queues), each stopped after 0.3 s. */
    assert_true(atx_now_ns() - t0 < 5 * ATX_NSEC_PER_SEC);
    const atx_result *r = final_of(f->col, "/t");
    assert_non_null(r);
    assert_int_equal(atx_result_status(r), ATX_STATUS_INFRA);
    assert_string_equal(atx_result_error_type(r), "prepare");
    assert_non_null(strstr(atx_result_note(r), "timed out"));
}

/* Two provisioners of one plugin: their systems' ids stay unique (equal ids
 * once made two idle workers hand a rerun to each other for ever). */
static void same_plugin_twice_unique_ids(void **state)
{
    fx *f = *state;
    atx_summary s;
    atx_test *t = sh_test("/flaky", "[ \"$ATX_TEST_ATTEMPT\" -gt 1 ]");

    atx_test_set_reruns(t, 1);
    assert_int_equal(atx_run_add_test(f->run, t), 0);
    assert_int_equal(atx_run_add_test(f->run, sh_test("/other", "true")), 0);
    assert_int_equal(atx_run_add_provisioner(f->run, "local", "{\"slots\": 1}"), 0);
    assert_int_equal(atx_run_add_provisioner(f->run, "local", "{\"slots\": 1}"), 0);
    assert_int_equal(atx_run_execute(f->run, &s), 0);
    assert_int_equal(s.passed, 2);
    assert_int_equal(s.flaky, 1);
    const char *first = NULL, *second = NULL;
    for (size_t i = 0; i < f->col->n; i++) {
        const atx_result *r = f->col->r[i];
        if (strcmp(atx_result_test(r), "/flaky") == 0)
            *(atx_result_attempt(r) == 1 ? &first : &second) = atx_result_system_id(r);
        assert_true(strcmp(atx_result_system_id(r), "local-1") == 0 ||
                    strcmp(atx_result_system_id(r), "local-1.2") == 0);
    }
    assert_non_null(first);
    assert_non_null(second);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(unsatisfiable_fails_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(rerun_prefers_another_system, setup, teardown),
        cmocka_unit_test_setup_teardown(rerun_budget_is_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(order_on_one_system, setup, teardown),
        cmocka_unit_test_setup_teardown(destructive_retires_system, setup, teardown),
        cmocka_unit_test_setup_teardown(spawn_failure_is_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(executor_failure_is_infra, setup, teardown),
        cmocka_unit_test_setup_teardown(lost_system_requeues, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_input_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(no_provisioner_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(many_tests_one_final_each, setup, teardown),
        cmocka_unit_test_setup_teardown(history_orders_next_run, setup, teardown),
        cmocka_unit_test_setup_teardown(progress_has_eta, setup, teardown),
        cmocka_unit_test_setup_teardown(max_running_caps_systems, setup, teardown),
        cmocka_unit_test_setup_teardown(prepare_timeout_is_infra, setup, teardown),
        cmocka_unit_test_setup_teardown(per_system_state, setup, teardown),
        cmocka_unit_test_setup_teardown(parallel_reserves, setup, teardown),
        cmocka_unit_test_setup_teardown(parallel_failures_count_once, setup, teardown),
        cmocka_unit_test_setup_teardown(same_plugin_twice_unique_ids, setup, teardown),
    };
    atx_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
