/*
 * bench/scale: the orchestrator's own cost at fleet scale. N trivial tests
 * (a no-op executor compiled in) on S systems (a provisioner compiled in
 * whose systems do nothing), JUnit on. Prints wall time, the process's CPU
 * time (all of it is scheduling, result handling and the report: the tests
 * themselves cost nothing) and peak RSS.
 *
 * MODE says what the run keeps besides the JUnit report: "none", "journal"
 * (the SQLite journal `atx run` always writes) or "all" (the journal and the
 * duration history, as `atx run` does by default).
 *
 *   atx-bench-scale [N] [S] [MODE]        (defaults: 100000, 100, journal)
 */
#define _GNU_SOURCE 1
#include <atx.h>
#include <atx/plugin/aggregator.h>
#include <atx/plugin/executor.h>
#include <atx/plugin/provisioner.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* ---- a provisioner of systems that cannot run anything (never asked to) ---- */

typedef struct nullprov {
    int slots, leased, next;
    atx_labels *labels;
} nullprov;

static int null_spawn(void *impl, const atx_spawn_opts *o, atx_proc **out)
{
    (void)impl, (void)o, (void)out;
    return atx_error_set(ATX_EUNSUPPORTED, "bench systems run nothing");
}
/* Contained: there is nothing to contain, so no agent is started on them. */
static const atx_system_ops null_ops = { ATX_SYSTEM_OPS_VERSION, null_spawn, NULL, NULL, NULL,
                                         ATX_SYSTEM_CONTAINED, NULL };

static int np_create(atx_plugin_ctx *ctx, void **state)
{
    nullprov *p = calloc(1, sizeof(*p));
    p->slots = *(int *)atx_plugin_ctx_userdata(ctx);
    atx_labels_new(&p->labels);
    atx_labels_set(p->labels, "provider", "bench");
    *state = p;
    return 0;
}
static void np_destroy(void *s)
{
    nullprov *p = s;
    atx_labels_free(p->labels);
    free(p);
}
static int np_capacity(void *s) { return ((nullprov *)s)->slots; }
static size_t np_offer_count(void *s) { (void)s; return 1; }
static const atx_labels *np_offer(void *s, size_t i) { (void)i; return ((nullprov *)s)->labels; }
static int np_reserve(void *s, const atx_reserve_req *req, atx_system **out)
{
    nullprov *p = s;
    char id[32];
    (void)req;
    if (p->leased >= p->slots)
        return atx_error_set(ATX_EINFRA, "all slots leased");
    p->leased++;
    snprintf(id, sizeof(id), "bench-%d", ++p->next);
    return atx_system_new(&null_ops, NULL, id, p->labels, NULL, out);
}
static void np_release(void *s, atx_system *sys, unsigned flags)
{
    (void)flags;
    ((nullprov *)s)->leased--;
    atx_system_free(sys);
}
static const atx_provisioner_vtable np_vt = {
    .version = ATX_PROVISIONER_VTABLE_VERSION, .create = np_create, .destroy = np_destroy,
    .capacity = np_capacity, .offer_count = np_offer_count, .offer = np_offer,
    .reserve = np_reserve, .release = np_release,
};
static const atx_plugin_descriptor np_plugin = {
    ATX_ABI_MAJOR, ATX_ABI_MINOR, sizeof(atx_plugin_descriptor), ATX_PLUGIN_PROVISIONER,
    "bench-systems", "1", "systems that run nothing", &np_vt,
};

/* ---- an executor whose tests pass at once ---- */

static int nx_create(atx_plugin_ctx *c, void **s) { (void)c; *s = NULL; return 0; }
static void nx_destroy(void *s) { (void)s; }
static int nx_run(void *s, atx_attempt *a)
{
    atx_result *r;
    (void)s;
    int e = atx_result_new(atx_test_name(atx_attempt_test(a)), NULL, &r);
    return e < 0 ? e : atx_attempt_emit(a, r);
}
static const atx_executor_vtable nx_vt = {
    .version = ATX_EXECUTOR_VTABLE_VERSION, .create = nx_create, .destroy = nx_destroy,
    .run = nx_run,
};
static const atx_plugin_descriptor nx_plugin = {
    ATX_ABI_MAJOR, ATX_ABI_MINOR, sizeof(atx_plugin_descriptor), ATX_PLUGIN_EXECUTOR,
    "noop", "1", "passes at once", &nx_vt,
};

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 100000, slots = argc > 2 ? atoi(argv[2]) : 100;
    const char *mode = argc > 3 ? argv[3] : "journal";
    char hist[64];
    atx_run_opts o = ATX_RUN_OPTS_INIT;
    char dir[] = "/tmp/atx-bench-scale-XXXXXX", name[32];
    atx_summary s;
    atx_run *run;

    atx_init();
    if (!mkdtemp(dir))
        return 2;
    o.results_dir = dir;
    if (atx_run_new(&o, &run) < 0 || atx_run_add_builtin(run, &nx_plugin, NULL, NULL) < 0 ||
        atx_run_add_builtin(run, &np_plugin, NULL, &slots) < 0 ||
        atx_run_add_aggregator(run, "junit", NULL) < 0 ||
        atx_run_set_journal(run, strcmp(mode, "none") == 0 ? ATX_JOURNAL_OFF
                                                           : ATX_JOURNAL_NEW) < 0 ||
        (strcmp(mode, "all") == 0 &&
         (snprintf(hist, sizeof(hist), "%s/history.db", dir),
          atx_run_set_history(run, hist) < 0))) {
        fprintf(stderr, "bench: %s\n", atx_error_last()->message);
        return 2;
    }
    double c0 = cpu_seconds();
    for (int i = 0; i < n; i++) {
        atx_test *t;
        snprintf(name, sizeof(name), "/scale/t%06d", i);
        atx_test_new(name, "noop", &t);
        atx_test_set_duration(t, (int64_t)(i % 97 + 1) * ATX_NSEC_PER_SEC);
        atx_run_add_test(run, t);
    }
    double c1 = cpu_seconds();
    int64_t t1 = atx_now_ns();
    if (atx_run_execute(run, &s) < 0) {
        fprintf(stderr, "bench: %s\n", atx_error_last()->message);
        return 2;
    }
    double c2 = cpu_seconds();
    int64_t t2 = atx_now_ns();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("| %d tests, %d systems | %s | %.3f | %.3f | %.3f | %ld |\n", n, slots,
           strcmp(mode, "none") == 0 ? "JUnit" : strcmp(mode, "all") == 0
                                                  ? "JUnit, journal, history" : "JUnit, journal",
           c1 - c0, c2 - c1, (double)(t2 - t1) / 1e9, ru.ru_maxrss / 1024);
    atx_run_free(run);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 && s.passed == (size_t)n ? 0 : 1;
}
