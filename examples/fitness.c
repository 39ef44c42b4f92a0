/*
 * A driver with its own fitness function.
 *
 * Two groups of local slots stand for two kinds of lab machines: "big" ones
 * and "small" ones. Tests tagged heavy (priority 1 here) should land on big
 * machines when one is free; light tests prefer small machines, keeping big
 * ones free for heavy work. The fitness callback says so; the orchestrator
 * asks it for the best candidate of each requirement class.
 *
 *   atx-example-fitness [RESULTS_DIR]
 */
#include <atx.h>

#include <stdio.h>
#include <string.h>

static int prefer_matching_size(void *userdata, const atx_test *t, const atx_system *sys,
                                int attempt, const char *last_system)
{
    const char *size = atx_labels_get(atx_system_labels(sys), "size");
    int heavy = atx_test_priority(t) > 0;
    int big = size && strcmp(size, "big") == 0;

    (void)userdata;
    /* Keep the default's dislike of rerunning where a test just failed. */
    if (attempt > 1 && last_system && strcmp(last_system, atx_system_id(sys)) == 0)
        return -10;
    return heavy == big ? 1 : 0;
}

static void print_log(void *ud, atx_log_level level, const char *origin, const char *msg)
{
    (void)ud;
    fprintf(stderr, "%s: %s: %s\n", origin, atx_log_level_name(level), msg);
}

static int add(atx_run *run, const char *name, int heavy)
{
    const char *argv[] = { "sh", "-c", "echo running on $ATX_TEST_NAME", NULL };
    atx_test *t;
    int r = atx_test_new(name, "exec", &t);

    if (r < 0)
        return r;
    atx_test_set_command(t, argv);
    atx_test_set_priority(t, heavy);
    return atx_run_add_test(run, t);
}

int main(int argc, char **argv)
{
    atx_run_opts opts = ATX_RUN_OPTS_INIT;
    atx_policy policy = ATX_POLICY_INIT;
    atx_summary sum;
    atx_run *run;
    char name[64];
    int r;

    atx_init();
    opts.results_dir = argc > 1 ? argv[1] : "atx-results/example-fitness";
    opts.log = print_log;
    opts.log_level = ATX_LOG_WARNING;
    if ((r = atx_run_new(&opts, &run)) < 0)
        goto fail;
    policy.fitness = prefer_matching_size;
    if ((r = atx_run_set_policy(run, &policy)) < 0 ||
        (r = atx_run_add_provisioner(run, "local", "{\"slots\": 1, \"labels\": {\"size\": \"big\"}}")) < 0 ||
        (r = atx_run_add_provisioner(run, "local", "{\"slots\": 2, \"labels\": {\"size\": \"small\"}}")) < 0 ||
        (r = atx_run_add_aggregator(run, "jsonl", NULL)) < 0)
        goto fail;
    for (int i = 0; i < 6; i++) {
        snprintf(name, sizeof(name), "/fitness/%s-%d", i % 2 ? "heavy" : "light", i);
        if ((r = add(run, name, i % 2)) < 0)
            goto fail;
    }
    if ((r = atx_run_execute(run, &sum)) < 0)
        goto fail;
    printf("%zu tests, %zu passed; see %s/results.jsonl for where each ran\n", sum.tests,
           sum.passed, atx_run_results_dir(run));
    r = atx_summary_exit_code(&sum);
    atx_run_free(run);
    return r;
fail:
    fprintf(stderr, "example: %s\n", atx_error_last()->message);
    return 2;
}
