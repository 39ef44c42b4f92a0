/*
 * A driver that adds its own aggregator, compiled into the program.
 *
 * The aggregator counts results by status word and prints a table at the
 * end. It is an ordinary aggregator vtable registered with
 * atx_run_add_builtin(); the run calls it on its aggregator thread, so it
 * needs no locking.
 *
 *   atx-example-aggregator TEST_DIR [RESULTS_DIR]
 */
#define _GNU_SOURCE 1
#include <atx.h>
#include <atx/plugin/aggregator.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct counts {
    char word[16][32];
    size_t n[16];
    size_t kinds;
    size_t superseded;
} counts;

static int count_create(atx_plugin_ctx *ctx, void **state)
{
    *state = atx_plugin_ctx_userdata(ctx); /* the driver owns the counts */
    return 0;
}

static void count_destroy(void *state)
{
    (void)state;
}

static int count_result(void *state, const atx_result *r)
{
    counts *c = state;
    const char *w = atx_result_status_word(r);
    size_t i;

    if (!atx_result_final(r)) {
        c->superseded++;
        return 0;
    }
    for (i = 0; i < c->kinds && strcmp(c->word[i], w) != 0; i++)
        ;
    if (i == c->kinds) {
        if (c->kinds == 16)
            return 0;
        snprintf(c->word[c->kinds++], sizeof(c->word[0]), "%s", w);
    }
    c->n[i]++;
    return 0;
}

static int count_end(void *state, const atx_summary *s)
{
    counts *c = state;
    printf("%-10s %s\n", "status", "results");
    for (size_t i = 0; i < c->kinds; i++)
        printf("%-10s %zu\n", c->word[i], c->n[i]);
    printf("%-10s %zu\n", "(reruns)", c->superseded);
    printf("in %.3f s\n", (double)s->duration_ns / 1e9);
    return 0;
}

static const atx_aggregator_vtable count_vtable = {
    .version = ATX_AGGREGATOR_VTABLE_VERSION,
    .create = count_create,
    .destroy = count_destroy,
    .result = count_result,
    .end = count_end,
};

static const atx_plugin_descriptor count_plugin = {
    ATX_ABI_MAJOR, ATX_ABI_MINOR, sizeof(atx_plugin_descriptor), ATX_PLUGIN_AGGREGATOR,
    "counter", "1.0", "Counts results by status", &count_vtable,
};

int main(int argc, char **argv)
{
    atx_run_opts opts = ATX_RUN_OPTS_INIT;
    atx_policy policy = ATX_POLICY_INIT;
    counts c = { 0 };
    atx_summary sum;
    atx_run *run;
    DIR *d;
    struct dirent *de;
    int r;

    if (argc < 2) {
        fprintf(stderr, "usage: %s TEST_DIR [RESULTS_DIR]\n", argv[0]);
        return 2;
    }
    atx_init();
    opts.results_dir = argc > 2 ? argv[2] : "atx-results/example-aggregator";
    if ((r = atx_run_new(&opts, &run)) < 0)
        goto fail;
    policy.reruns = 1;
    if ((r = atx_run_set_policy(run, &policy)) < 0 ||
        (r = atx_run_add_provisioner(run, "local", "{\"slots\": 2}")) < 0 ||
        (r = atx_run_add_builtin(run, &count_plugin, NULL, &c)) < 0)
        goto fail;
    /* Every executable file in TEST_DIR is a test. */
    if (!(d = opendir(argv[1]))) {
        perror(argv[1]);
        return 2;
    }
    while ((de = readdir(d))) {
        char path[4096], full[4096], name[512];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", argv[1], de->d_name);
        if (de->d_name[0] == '.' || stat(path, &st) < 0 || !S_ISREG(st.st_mode) ||
            !(st.st_mode & 0111))
            continue;
        /* Tests run in their system's work folder: give the full path. */
        if (!realpath(path, full))
            continue;
        const char *cmd[] = { full, NULL };
        atx_test *t;
        snprintf(name, sizeof(name), "/%s", de->d_name);
        if ((r = atx_test_new(name, "exec", &t)) < 0 || (r = atx_test_set_command(t, cmd)) < 0 ||
            (r = atx_run_add_test(run, t)) < 0) {
            closedir(d);
            goto fail;
        }
    }
    closedir(d);
    if ((r = atx_run_execute(run, &sum)) < 0)
        goto fail;
    r = atx_summary_exit_code(&sum);
    atx_run_free(run);
    return r;
fail:
    fprintf(stderr, "example: %s\n", atx_error_last()->message);
    return 2;
}
