/*
 * local: N slots on this host. Each lease is a system with its own, fresh
 * work directory. Where this host allows cgroups (containment "cgroup", and
 * "auto" when it can), processes run directly here, each in a cgroup of its
 * own that is emptied when it ends; otherwise ("agent") each lease runs
 * atx-agent like any other system, and its subreaper contains them.
 */
#define _GNU_SOURCE 1
#include <atx/plugin/provisioner.h>

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <json-c/json.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

typedef struct local_state local_state;

typedef struct slot {
    local_state *owner;
    bool busy;
    char workdir[PATH_MAX];
} slot;

struct local_state {
    atx_plugin_ctx *ctx;
    pthread_mutex_t mu;
    int nslots;
    slot *slots;
    atx_labels *labels;
    char base[PATH_MAX];
    unsigned leases;        /* ids: local-1, local-2, ... across the run */
    bool keep_workdirs;
    bool host_fs;           /* false: act as a remote system (uploads) */
    bool contained;         /* cgroups: no agent */
};

/* Read ID and VERSION_ID from os-release. */
static void os_release(atx_labels *l)
{
    FILE *f = fopen("/etc/os-release", "re");
    char line[512], id[128] = "", ver[128] = "";

    if (!f)
        f = fopen("/usr/lib/os-release", "re");
    if (!f)
        return;
    while (fgets(line, sizeof(line), f)) {
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = '\0';
        char *v = eq + 1;
        v[strcspn(v, "\n")] = '\0';
        if (*v == '"' || *v == '\'') {
            v++;
            v[strcspn(v, "\"'")] = '\0';
        }
        if (strcmp(line, "ID") == 0)
            snprintf(id, sizeof(id), "%s", v);
        else if (strcmp(line, "VERSION_ID") == 0)
            snprintf(ver, sizeof(ver), "%s", v);
    }
    fclose(f);
    if (*id) {
        atx_labels_set(l, "os_id", id);
        if (*ver) {
            char distro[300];
            atx_labels_set(l, "os_version_id", ver);
            snprintf(distro, sizeof(distro), "%s-%s", id, ver);
            atx_labels_set(l, "distro", distro);
        }
    }
}

static int make_labels(local_state *s)
{
    struct utsname u;
    const json_object *cfg = atx_plugin_ctx_config(s->ctx);
    json_object *conf;
    int r;

    if ((r = atx_labels_new(&s->labels)) < 0)
        return r;
    if (uname(&u) == 0) {
        char os[sizeof(u.sysname)];
        for (size_t i = 0; i < sizeof(os); i++)
            os[i] = (char)tolower((unsigned char)u.sysname[i]);
        atx_labels_set(s->labels, "arch", u.machine);
        atx_labels_set(s->labels, "os", os);
        atx_labels_set(s->labels, "kernel", u.release);
        atx_labels_set(s->labels, "hostname", u.nodename);
    }
    os_release(s->labels);
    atx_labels_set(s->labels, "provider", "local");
    if (json_object_object_get_ex((json_object *)cfg, "labels", &conf)) {
        if (!json_object_is_type(conf, json_type_object))
            return atx_error_set(ATX_EINVAL, "local: 'labels' must be an object of strings");
        json_object_object_foreach(conf, k, v) {
            if (!json_object_is_type(v, json_type_string))
                return atx_error_set(ATX_EINVAL, "local: label '%s' must be a string", k);
            if ((r = atx_labels_set(s->labels, k, json_object_get_string(v))) < 0)
                return r;
        }
    }
    return 0;
}

static void local_destroy(void *state);

static int local_create(atx_plugin_ctx *ctx, void **out)
{
    static const char *const keys[] = { "slots", "labels", "workdir", "keep_workdirs",
                                        "share_host_files", "containment", NULL };
    local_state *s;
    int64_t slots = 1;
    const char *workdir = NULL, *containment = "auto";
    int keep = 0, share = 1, r;
    bool contained;

    if ((r = atx_plugin_config_check_keys(ctx, keys)) < 0 ||
        (r = atx_plugin_config_int(ctx, "slots", &slots)) < 0 ||
        (r = atx_plugin_config_string(ctx, "workdir", &workdir)) < 0 ||
        (r = atx_plugin_config_bool(ctx, "keep_workdirs", &keep)) < 0 ||
        (r = atx_plugin_config_bool(ctx, "share_host_files", &share)) < 0 ||
        (r = atx_plugin_config_string(ctx, "containment", &containment)) < 0)
        return r;
    if (slots < 1 || slots > 4096)
        return atx_error_set(ATX_EINVAL, "local: 'slots' must be 1 to 4096, not %lld",
                             (long long)slots);
    if (strcmp(containment, "cgroup") == 0) {
        if (!atx_spawn_can_contain())
            return atx_error_set(ATX_EINVAL, "local: containment 'cgroup' is not possible here: %s",
                                 atx_error_last()->message);
        contained = true;
    } else if (strcmp(containment, "agent") == 0) {
        contained = false;
    } else if (strcmp(containment, "auto") == 0) {
        contained = atx_spawn_can_contain();
    } else {
        return atx_error_set(ATX_EINVAL, "local: 'containment' must be auto, cgroup or agent, "
                             "not '%s'", containment);
    }
    s = calloc(1, sizeof(*s));
    if (!s)
        return atx_error_set(ATX_ENOMEM, "out of memory");
    s->ctx = ctx;
    s->nslots = (int)slots;
    s->keep_workdirs = keep;
    s->host_fs = share;
    s->contained = contained;
    atx_plugin_log(ctx, ATX_LOG_DEBUG, "tests are contained by %s",
                   contained ? "cgroups" : "an agent per slot");
    pthread_mutex_init(&s->mu, NULL);
    s->slots = calloc((size_t)s->nslots, sizeof(*s->slots));
    if (!s->slots) {
        local_destroy(s);
        return atx_error_set(ATX_ENOMEM, "out of memory");
    }
    if ((r = make_labels(s)) < 0) {
        local_destroy(s);
        return r;
    }
    const char *results = atx_plugin_ctx_results_dir(ctx);
    if (workdir)
        snprintf(s->base, sizeof(s->base), "%s", workdir);
    else
        snprintf(s->base, sizeof(s->base), "%s/systems", results ? results : "/tmp");
    *out = s;
    return 0;
}

static void local_destroy(void *state)
{
    local_state *s = state;

    if (!s)
        return;
    atx_labels_free(s->labels);
    free(s->slots);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static int local_capacity(void *state)
{
    return ((local_state *)state)->nslots;
}

static size_t local_offer_count(void *state)
{
    (void)state;
    return 1;
}

static const atx_labels *local_offer(void *state, size_t i)
{
    return i == 0 ? ((local_state *)state)->labels : NULL;
}

/* ---- the system operations ---- */

static int local_spawn(void *impl, const atx_spawn_opts *opts, atx_proc **out)
{
    slot *sl = impl;
    atx_spawn_opts o = *opts;

    if (!o.cwd)
        o.cwd = sl->workdir;
    if (sl->owner->contained)
        o.flags |= ATX_SPAWN_CONTAIN;
    return atx_spawn_local(&o, out);
}

/* Copy with cp(1): it handles trees, links and permissions. */
static int copy(const char *from, const char *to)
{
    const char *argv[] = { "cp", "-a", "--", from, to, NULL };
    atx_spawn_opts o = ATX_SPAWN_OPTS_INIT;
    atx_proc *p;
    atx_exit ex;
    int r;

    o.argv = argv;
    o.flags = ATX_SPAWN_STDERR_PIPE;
    if ((r = atx_spawn_local(&o, &p)) < 0)
        return r;
    r = atx_proc_wait(p, -1, &ex);
    atx_proc_free(p);
    if (r < 0)
        return r;
    if (!ex.exited || ex.code != 0)
        return atx_error_set(ATX_EIO, "cannot copy %s to %s (cp exit %d)", from, to, ex.code);
    return 0;
}

/* Remote paths on a local system are relative to its work directory. */
static void system_path(const slot *sl, const char *path, char *buf, size_t len)
{
    if (path[0] == '/')
        snprintf(buf, len, "%s", path);
    else
        snprintf(buf, len, "%s/%s", sl->workdir, path);
}

static int local_copy_in(void *impl, const char *local, const char *remote)
{
    char path[PATH_MAX * 2];
    system_path(impl, remote, path, sizeof(path));
    return copy(local, path);
}

static int local_copy_out(void *impl, const char *remote, const char *local)
{
    char path[PATH_MAX * 2];
    system_path(impl, remote, path, sizeof(path));
    return atx_copy_taken(path, local);
}

static int local_copy_out_bounded(void *impl, const char *remote, const char *local,
                                  const atx_copy_bounds *bounds)
{
    char path[PATH_MAX * 2];
    system_path(impl, remote, path, sizeof(path));
    return atx_copy_taken_bounded(path, local, bounds);
}

/* Four kinds of slot: sharing this host's files or acting as a remote
 * system (share_host_files: false; tests the upload paths), each contained
 * by cgroups or by an agent. */
#define LOCAL_OPS(flags) \
    { ATX_SYSTEM_OPS_VERSION, local_spawn, local_copy_in, local_copy_out, NULL, (flags), \
      local_copy_out_bounded }
static const atx_system_ops local_ops[2][2] = {
    { LOCAL_OPS(0), LOCAL_OPS(ATX_SYSTEM_CONTAINED) },
    { LOCAL_OPS(ATX_SYSTEM_HOST_FS), LOCAL_OPS(ATX_SYSTEM_HOST_FS | ATX_SYSTEM_CONTAINED) },
};

static int remove_tree(const char *path)
{
    const char *argv[] = { "rm", "-rf", "--", path, NULL };
    atx_spawn_opts o = ATX_SPAWN_OPTS_INIT;
    atx_proc *p;
    atx_exit ex;
    int r;

    o.argv = argv;
    if ((r = atx_spawn_local(&o, &p)) < 0)
        return r;
    r = atx_proc_wait(p, -1, &ex);
    atx_proc_free(p);
    return r;
}

static int mkdirs(const char *path)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    }
    if (mkdir(buf, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int local_reserve(void *state, const atx_reserve_req *req, atx_system **out)
{
    local_state *s = state;
    slot *sl = NULL;
    char id[64];
    int r;

    if (req->want && !req->want(req->userdata, s->labels))
        return ATX_ENOTFOUND;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->nslots && !sl; i++)
        if (!s->slots[i].busy)
            sl = &s->slots[i];
    if (sl) {
        sl->busy = true;
        sl->owner = s;
        snprintf(id, sizeof(id), "local-%u", ++s->leases);
    }
    pthread_mutex_unlock(&s->mu);
    if (!sl)
        return atx_error_set(ATX_EINFRA, "local: all %d slots are leased", s->nslots);
    snprintf(sl->workdir, sizeof(sl->workdir), "%s/%s", s->base, id);
    if ((r = mkdirs(sl->workdir)) < 0) {
        r = atx_error_set(ATX_EINFRA, "local: cannot create %s: %s", sl->workdir, strerror(-r));
        goto fail;
    }
    if ((r = atx_system_new(&local_ops[s->host_fs][s->contained], sl, id, s->labels,
                            sl->workdir, out)) < 0)
        goto fail;
    return 0;
fail:
    pthread_mutex_lock(&s->mu);
    sl->busy = false;
    pthread_mutex_unlock(&s->mu);
    return r;
}

static void local_release(void *state, atx_system *sys, unsigned flags)
{
    local_state *s = state;
    slot *sl = atx_system_impl(sys);

    (void)flags;
    if (!s->keep_workdirs)
        remove_tree(sl->workdir);
    atx_system_free(sys);
    pthread_mutex_lock(&s->mu);
    sl->busy = false;
    pthread_mutex_unlock(&s->mu);
}

static int local_stop(void *state)
{
    local_state *s = state;
    /* The base folder is ours when nobody named one; drop it if empty. */
    if (!s->keep_workdirs)
        rmdir(s->base);
    return 0;
}

static const atx_provisioner_vtable local_vtable = {
    .version = ATX_PROVISIONER_VTABLE_VERSION,
    .create = local_create,
    .destroy = local_destroy,
    .start = NULL,
    .stop = local_stop,
    .capacity = local_capacity,
    .offer_count = local_offer_count,
    .offer = local_offer,
    .reserve = local_reserve,
    .release = local_release,
};

ATX_PLUGIN_DEFINE(ATX_PLUGIN_PROVISIONER, "local", ATX_VERSION_STRING,
                  "N slots on this host, each with its own work directory", &local_vtable)
