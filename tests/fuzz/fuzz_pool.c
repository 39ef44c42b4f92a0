/*
 * libFuzzer target for the ssh provisioner's pool file (provisioners/ssh/
 * ssh.c, load_pool): its sources are built into this program, registered as
 * a built-in plugin, and each input is written as the pool file of a fresh
 * run's "ssh" provisioner. Creating it reads the pool and connects to
 * nothing.
 *
 * The create must succeed or fail with a sentence naming the pool file; a
 * pool that loads has a capacity from 1 to 1024 per host; the run frees it.
 */
#define _GNU_SOURCE 1
#include <atx.h>
#include <atx/plugin/abi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const atx_plugin_descriptor *atx_plugin_entry(void);

static atx_plugins *plugins;
static char dir[256], pool[300], config[400], identity[300];

static void cleanup(void)
{
    unlink(pool);
    unlink(identity);
    rmdir(dir);
    atx_plugins_free(plugins);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    atx_plugins_opts po = ATX_PLUGINS_OPTS_INIT;
    const char *t = getenv("TMPDIR");
    FILE *f;

    (void)argc;
    (void)argv;
    if (atx_init() < 0)
        abort();
    po.no_environment = 1;
    po.no_default_dir = 1;
    if (atx_plugins_new(&po, &plugins) < 0 || atx_plugins_add_builtin(plugins, atx_plugin_entry()) < 0)
        abort();
    snprintf(dir, sizeof(dir), "%s/atx-fuzz-pool-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(dir))
        abort();
    atexit(cleanup);
    snprintf(pool, sizeof(pool), "%s/pool.json", dir);
    /* An identity file the pool may name ("id", relative to the pool). */
    snprintf(identity, sizeof(identity), "%s/id", dir);
    if (!(f = fopen(identity, "w")))
        abort();
    fclose(f);
    snprintf(config, sizeof(config), "{\"pool\": \"%s\"}", pool);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len);
int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    atx_run_opts ro = ATX_RUN_OPTS_INIT;
    atx_run *run;
    FILE *f;
    int r;

    if (!(f = fopen(pool, "w")))
        abort();
    if (len && fwrite(buf, 1, len, f) != len)
        abort();
    if (fclose(f) != 0)
        abort();
    ro.results_dir = dir;
    ro.plugins = plugins;
    if (atx_run_new(&ro, &run) < 0)
        abort();
    r = atx_run_add_provisioner(run, "ssh", config);
    if (r < 0) {
        const atx_error *e = atx_error_last();
        if (e->code != r || !e->message || !strstr(e->message, "pool"))
            abort();
    } else if (r != 0 || atx_run_provisioner_count(run) != 1) {
        abort();
    }
    atx_run_free(run);
    return 0;
}
