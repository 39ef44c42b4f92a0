/*
 * A tiny consumer of an installed atx, built by tests/install.sh twice: with
 * `pkg-config --cflags --libs atx` and with find_package(atx). It uses only
 * the public API: a run with the local provisioner, one exec test `true` and
 * the jsonl aggregator, executed; it prints where each plugin it used came
 * from and the summary, and exits with the CLI's exit code for it.
 *
 *   driver RESULTS_DIR     (plugins from ATX_PLUGIN_PATH, then the installed dir)
 */
#include <atx.h>

#include <stdio.h>
#include <string.h>

static int fail(const char *what)
{
    fprintf(stderr, "driver: %s: %s\n", what, atx_error_last()->message);
    return 2;
}

int main(int argc, char **argv)
{
    static const char *const used[] = { "local", "exec", "jsonl" };
    static const char *const command[] = { "true", NULL };
    atx_run_opts opts = ATX_RUN_OPTS_INIT;
    atx_plugins *plugins;
    atx_summary sum;
    atx_test *t;
    atx_run *run;

    if (argc != 2) {
        fprintf(stderr, "usage: driver RESULTS_DIR\n");
        return 2;
    }
    if (atx_init() < 0 || atx_plugins_new(NULL, &plugins) < 0)
        return fail("init");
    if (atx_plugins_scan(plugins) < 0)
        return fail("scan");
    for (size_t i = 0; i < atx_plugins_count(plugins); i++) {
        const atx_plugin_info *p = atx_plugins_at(plugins, i);
        for (size_t k = 0; k < sizeof(used) / sizeof(used[0]); k++)
            if (strcmp(p->name, used[k]) == 0)
                printf("plugin %s %s %s\n", p->name, p->refused ? "refused" : p->version, p->path);
    }

    opts.results_dir = argv[1];
    opts.plugins = plugins;
    if (atx_run_new(&opts, &run) < 0)
        return fail("run");
    if (atx_run_add_provisioner(run, "local", "{\"slots\": 1}") < 0)
        return fail("local provisioner");
    if (atx_run_add_aggregator(run, "jsonl", NULL) < 0)
        return fail("jsonl aggregator");
    if (atx_test_new("/install/true", "exec", &t) < 0 || atx_test_set_command(t, command) < 0)
        return fail("test");
    if (atx_run_add_test(run, t) < 0)
        return fail("add test");
    if (atx_run_execute(run, &sum) < 0)
        return fail("execute");
    printf("atx %s: tests=%zu passed=%zu failed=%zu errors=%zu infra=%zu not_run=%zu\n",
           atx_version(), sum.tests, sum.passed, sum.failed, sum.errors, sum.infra, sum.not_run);
    atx_run_free(run);
    atx_plugins_free(plugins);
    return atx_summary_exit_code(&sum);
}
