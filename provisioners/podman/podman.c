/*
 * podman: a fresh container per lease, made from one image and removed on
 * release, so destructive tests and reruns always start clean. Everything
 * goes through the podman command (no API socket): `podman run -d` to lease,
 * `podman cp` to put the agent in and one `podman exec -i` to start it (every
 * process and copy of the lease then goes through the agent), `podman rm -f`
 * to release (a paused or frozen container too).
 *
 * Every container is labelled with its owner process (pid and start time),
 * so the next start removes what a crashed run left behind without touching
 * the containers of runs still going.
 */
#define _GNU_SOURCE 1
#include <atx/plugin/process.h>
#include <atx/plugin/provisioner.h>

#include "command.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define CMD_TIMEOUT_NS (120 * ATX_NSEC_PER_SEC)
#define COPY_TIMEOUT_NS (600 * ATX_NSEC_PER_SEC)

typedef struct podman_state podman_state;

/* One leased container (a system's impl). */
typedef struct container {
    podman_state *owner;
    char name[128];
} container;

struct podman_state {
    atx_plugin_ctx *ctx;
    const char *podman;        /* borrowed from the configuration */
    const char *image;
    const char *workdir;
    const char **run_options;  /* NULL-terminated; strings borrowed */
    bool own_network;          /* run_options choose no network: we pass --network=none */
    bool init;                 /* the image's own command runs as PID 1 (an init) */
    int slots;
    atx_labels *conf_labels;   /* configured */
    atx_labels *labels;        /* what start read from the image, plus the configured */
    char run_id[64];           /* <pid>-<random>: names and labels this instance's containers */
    char pid[24], pidstart[32];
    pthread_mutex_t mu;
    int leased;
    unsigned leases;           /* ids: podman-1, podman-2, ... across the run */
};

/* Begin a podman command line. */
static void av_podman(argv_buf *a, const podman_state *s, const char *verb)
{
    av_add(a, s->podman);
    av_add(a, verb);
}

/* ---- configuration ---- */

static int read_run_options(podman_state *s)
{
    int r = prov_config_strings(s->ctx, "podman", "run_options", &s->run_options);

    s->own_network = true;
    for (size_t i = 0; r == 0 && s->run_options[i]; i++)
        /* podman refuses two network modes: theirs wins. */
        if (strncmp(s->run_options[i], "--network", 9) == 0 ||
            strncmp(s->run_options[i], "--net=", 6) == 0 || strcmp(s->run_options[i], "--net") == 0)
            s->own_network = false;
    return r;
}

static void podman_destroy(void *state);

static int podman_create(atx_plugin_ctx *ctx, void **out)
{
    static const char *const keys[] = { "image", "slots", "labels", "run_options",
                                        "podman", "workdir", "init", NULL };
    podman_state *s;
    int64_t slots = 1;
    int init = 0;
    const char *image = NULL, *podman = "podman", *workdir = "/var/tmp/atx";
    uint32_t rnd = 0;
    int r;

    if ((r = atx_plugin_config_check_keys(ctx, keys)) < 0 ||
        (r = atx_plugin_config_string(ctx, "image", &image)) < 0 ||
        (r = atx_plugin_config_int(ctx, "slots", &slots)) < 0 ||
        (r = atx_plugin_config_string(ctx, "podman", &podman)) < 0 ||
        (r = atx_plugin_config_string(ctx, "workdir", &workdir)) < 0 ||
        (r = atx_plugin_config_bool(ctx, "init", &init)) < 0)
        return r;
    if (!image || !*image)
        return atx_error_set(ATX_EINVAL, "podman: 'image' is required (an image name)");
    if (slots < 1 || slots > 1024)
        return atx_error_set(ATX_EINVAL, "podman: 'slots' must be 1 to 1024, not %lld",
                             (long long)slots);
    if (!*podman)
        return atx_error_set(ATX_EINVAL, "podman: 'podman' must name the podman program");
    if (workdir[0] != '/')
        return atx_error_set(ATX_EINVAL,
                             "podman: 'workdir' must be an absolute path in the container, not '%s'",
                             workdir);
    s = calloc(1, sizeof(*s));
    if (!s)
        return atx_error_set(-ENOMEM, "out of memory");
    s->ctx = ctx;
    s->image = image;
    s->podman = podman;
    s->workdir = workdir;
    s->slots = (int)slots;
    s->init = init;
    pthread_mutex_init(&s->mu, NULL);
    if ((r = prov_config_labels(ctx, "podman", &s->conf_labels)) < 0 ||
        (r = read_run_options(s)) < 0) {
        podman_destroy(s);
        return r;
    }
    /* Names and labels of our containers: unique among the runs on this host. */
    if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        rnd = (uint32_t)atx_now_ns() ^ (uint32_t)(uintptr_t)s;
    snprintf(s->pid, sizeof(s->pid), "%ld", (long)getpid());
    snprintf(s->run_id, sizeof(s->run_id), "%s-%08x", s->pid, rnd);
    proc_start_time("self", s->pidstart, sizeof(s->pidstart));
    *out = s;
    return 0;
}

static void podman_destroy(void *state)
{
    podman_state *s = state;

    if (!s)
        return;
    atx_labels_free(s->conf_labels);
    atx_labels_free(s->labels);
    free(s->run_options);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ---- start: podman works, leftovers go, labels from the image ---- */

/* Remove containers by id or name; quietly, except for a log line. */
static void remove_containers(podman_state *s, const char *const *names, size_t n)
{
    argv_buf a = { 0 };
    cmd_result res;
    char why[512];
    int r;

    if (n == 0)
        return;
    av_podman(&a, s, "rm");
    av_add(&a, "-f");
    av_add(&a, "-t");
    av_add(&a, "0");
    for (size_t i = 0; i < n; i++)
        av_add(&a, names[i]);
    r = run_cmd(&a, atx_now_ns() + CMD_TIMEOUT_NS, -1, &res);
    if (r < 0)
        atx_plugin_log(s->ctx, ATX_LOG_WARNING, "cannot remove container %s%s: %s", names[0],
                       n > 1 ? " and others" : "", atx_error_last()->message);
    else if (!cmd_ok(&res))
        atx_plugin_log(s->ctx, ATX_LOG_WARNING, "cannot remove container %s%s: %s", names[0],
                       n > 1 ? " and others" : "", cmd_why(&res, why, sizeof(why)));
    cmd_result_release(&res);
    av_free(&a);
}

/*
 * Containers of atx whose owner is gone: the process named by atx.pid no
 * longer exists, or is another process (its start time differs from
 * atx.pidstart).
 */
static int remove_leftovers(podman_state *s)
{
    argv_buf a = { 0 };
    cmd_result res;
    const char **dead = NULL;
    size_t ndead = 0;
    char why[512];
    int r;

    av_podman(&a, s, "ps");
    av_add(&a, "-a");
    av_add(&a, "--filter");
    av_add(&a, "label=atx.owner=atx");
    av_add(&a, "--format");
    av_add(&a, "{{.ID}} {{index .Labels \"atx.pid\"}} {{index .Labels \"atx.pidstart\"}}");
    r = run_cmd(&a, atx_now_ns() + CMD_TIMEOUT_NS, -1, &res);
    av_free(&a);
    if (r < 0)
        return atx_error_set(ATX_EINFRA, "podman: cannot list leftover containers: %s",
                             atx_error_last()->message);
    if (!cmd_ok(&res)) {
        r = atx_error_set(ATX_EINFRA, "podman: cannot list leftover containers: %s",
                          cmd_why(&res, why, sizeof(why)));
        cmd_result_release(&res);
        return r;
    }
    dead = calloc(res.out_len / 2 + 1, sizeof(*dead));
    if (!dead) {
        cmd_result_release(&res);
        return atx_error_set(-ENOMEM, "out of memory");
    }
    for (char *save = NULL, *line = strtok_r(res.out, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char *f = NULL, *id = strtok_r(line, " ", &f), *pid = strtok_r(NULL, " ", &f),
             *start = strtok_r(NULL, " ", &f);
        char now[32] = "";
        if (!id)
            continue;
        if (pid && strspn(pid, "0123456789") == strlen(pid))
            proc_start_time(pid, now, sizeof(now));
        if (!*now || !start || strcmp(now, start) != 0)
            dead[ndead++] = id;
    }
    if (ndead) {
        atx_plugin_log(s->ctx, ATX_LOG_INFO,
                       "removing %zu container%s left by atx runs that ended (%s%s)", ndead,
                       ndead == 1 ? "" : "s", dead[0], ndead > 1 ? ", ..." : "");
        remove_containers(s, dead, ndead);
    }
    free(dead);
    cmd_result_release(&res);
    return 0;
}

/* Strip quotes from an os-release value (in place). */
static char *unquote(char *v)
{
    size_t n = strlen(v);

    if (n >= 2 && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0]) {
        v[n - 1] = '\0';
        v++;
        /* Shell escapes inside double quotes. */
        char *w = v;
        for (char *r = v; *r; r++) {
            if (*r == '\\' && r[1])
                r++;
            *w++ = *r;
        }
        *w = '\0';
    }
    return v;
}

/* Labels from `uname -m` (first line) and os-release (the rest). */
static int parse_image_facts(podman_state *s, char *text)
{
    char id[128] = "", ver[128] = "";
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    int r;

    if (!line || !*line)
        return atx_error_set(ATX_EINFRA, "podman: image %s did not say its architecture",
                             s->image);
    if ((r = atx_labels_set(s->labels, "arch", line)) < 0)
        return r;
    while ((line = strtok_r(NULL, "\n", &save))) {
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = '\0';
        char *v = unquote(eq + 1);
        if (strcmp(line, "ID") == 0)
            snprintf(id, sizeof(id), "%s", v);
        else if (strcmp(line, "VERSION_ID") == 0)
            snprintf(ver, sizeof(ver), "%s", v);
    }
    if (*id && (r = atx_labels_set(s->labels, "os_id", id)) < 0)
        return r;
    if (*ver && (r = atx_labels_set(s->labels, "os_version_id", ver)) < 0)
        return r;
    if (*id && *ver) {
        char distro[300];
        snprintf(distro, sizeof(distro), "%s-%s", id, ver);
        if ((r = atx_labels_set(s->labels, "distro", distro)) < 0)
            return r;
    }
    return 0;
}

static int read_image_labels(podman_state *s)
{
    argv_buf a = { 0 };
    cmd_result res;
    char why[512];
    int r;

    atx_labels_free(s->labels);
    s->labels = NULL;
    if ((r = atx_labels_new(&s->labels)) < 0)
        return r;
    av_podman(&a, s, "run");
    av_add(&a, "--rm");
    av_add(&a, "--network=none");
    av_add(&a, "--entrypoint=");
    av_add(&a, s->image);
    av_add(&a, "sh");
    av_add(&a, "-c");
    av_add(&a, "uname -m && { cat /etc/os-release || cat /usr/lib/os-release; } 2>/dev/null;"
               " exit 0");
    r = run_cmd(&a, atx_now_ns() + CMD_TIMEOUT_NS, -1, &res);
    av_free(&a);
    if (r < 0)
        return atx_error_set(ATX_EINFRA, "podman: cannot run image %s: %s", s->image,
                             atx_error_last()->message);
    if (!cmd_ok(&res))
        r = atx_error_set(ATX_EINFRA, "podman: cannot run image %s: %s", s->image,
                          cmd_why(&res, why, sizeof(why)));
    else if ((r = parse_image_facts(s, res.out)) == 0 &&
             ((r = atx_labels_set(s->labels, "os", "linux")) < 0 ||
              (r = atx_labels_set(s->labels, "provider", "podman")) < 0 ||
              (r = atx_labels_set(s->labels, "image", s->image)) < 0 ||
              (r = atx_labels_merge(s->labels, s->conf_labels)) < 0))
        r = atx_error_set(r, "podman: out of memory");
    cmd_result_release(&res);
    return r;
}

static int podman_start(void *state)
{
    podman_state *s = state;
    argv_buf a = { 0 };
    cmd_result res;
    char why[512];
    int r;

    av_podman(&a, s, "version");
    av_add(&a, "--format");
    av_add(&a, "{{.Client.Version}}");
    r = run_cmd(&a, atx_now_ns() + CMD_TIMEOUT_NS, -1, &res);
    av_free(&a);
    if (r < 0)
        return atx_error_set(ATX_EINFRA, "podman: %s", atx_error_last()->message);
    if (!cmd_ok(&res)) {
        r = atx_error_set(ATX_EINFRA, "podman: '%s version' failed: %s", s->podman,
                          cmd_why(&res, why, sizeof(why)));
        cmd_result_release(&res);
        return r;
    }
    res.out[strcspn(res.out, "\n")] = '\0';
    atx_plugin_log(s->ctx, ATX_LOG_DEBUG, "podman %s; containers named atx-%s-N", res.out,
                   s->run_id);
    cmd_result_release(&res);
    if ((r = remove_leftovers(s)) < 0)
        return r;
    return read_image_labels(s);
}

static int podman_stop(void *state)
{
    podman_state *s = state;
    argv_buf a = { 0 };
    cmd_result res;
    const char **ids = NULL;
    size_t n = 0;
    int r;

    /* Whatever is still ours: leases not released, a reserve cut short. */
    av_podman(&a, s, "ps");
    av_add(&a, "-a");
    av_add(&a, "-q");
    av_add(&a, "--filter");
    av_addf(&a, "label=atx.run=%s", s->run_id);
    r = run_cmd(&a, atx_now_ns() + CMD_TIMEOUT_NS, -1, &res);
    av_free(&a);
    if (r < 0 || !cmd_ok(&res)) {
        char why[512];
        atx_plugin_log(s->ctx, ATX_LOG_WARNING, "cannot list the run's containers: %s",
                       r < 0 ? atx_error_last()->message : cmd_why(&res, why, sizeof(why)));
        cmd_result_release(&res);
        return 0;
    }
    ids = calloc(res.out_len / 2 + 1, sizeof(*ids));
    if (ids) {
        for (char *save = NULL, *line = strtok_r(res.out, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save))
            ids[n++] = line;
        remove_containers(s, ids, n);
    }
    free(ids);
    cmd_result_release(&res);
    return 0;
}

static int podman_capacity(void *state)
{
    return ((podman_state *)state)->slots;
}

static size_t podman_offer_count(void *state)
{
    return ((podman_state *)state)->labels ? 1 : 0;
}

static const atx_labels *podman_offer(void *state, size_t i)
{
    return i == 0 ? ((podman_state *)state)->labels : NULL;
}

/* ---- the system operations ---- */

static int podman_spawn(void *impl, const atx_spawn_opts *opts, atx_proc **out)
{
    container *c = impl;
    podman_state *s = c->owner;
    argv_buf a = { 0 };

    av_podman(&a, s, "exec");
    if (opts->flags & ATX_SPAWN_STDIN_PIPE)
        av_add(&a, "-i");
    if (!(opts->flags & ATX_SPAWN_CLEAR_ENV))
        for (size_t i = 0; opts->env && opts->env[i]; i++) {
            av_add(&a, "--env");
            av_add(&a, opts->env[i]);
        }
    av_add(&a, "--workdir");
    av_add(&a, opts->cwd ? opts->cwd : s->workdir);
    av_add(&a, c->name);
    if (opts->flags & ATX_SPAWN_CLEAR_ENV) {
        /* The container's own environment is dropped inside it. */
        av_add(&a, "env");
        av_add(&a, "-i");
        for (size_t i = 0; opts->env && opts->env[i]; i++)
            av_add(&a, opts->env[i]);
    }
    /* The podman client runs here with this host's environment (so
     * CONTAINERS_CONF reaches it); what the process gets is in --env. */
    return spawn_through(&a, opts, out);
}

/* podman cp reads "NAME:path" as a container path: keep local paths local. */
static void av_local_path(argv_buf *a, const char *path)
{
    if (path[0] == '/' || (path[0] == '.' && path[1] == '/'))
        av_add(a, path);
    else
        av_addf(a, "./%s", path);
}

static void av_container_path(argv_buf *a, const container *c, const char *path)
{
    if (path[0] == '/')
        av_addf(a, "%s:%s", c->name, path);
    else
        av_addf(a, "%s:%s/%s", c->name, c->owner->workdir, path);
}

static int copy_in(container *c, const char *from, const char *to)
{
    podman_state *s = c->owner;
    argv_buf a = { 0 };
    cmd_result res;
    char why[512];
    int r;

    av_podman(&a, s, "cp");
    av_local_path(&a, from);
    av_container_path(&a, c, to);
    r = run_cmd(&a, atx_now_ns() + COPY_TIMEOUT_NS, -1, &res);
    av_free(&a);
    if (r < 0)
        r = atx_error_set(ATX_EIO, "podman: cannot copy %s into container %s: %s", from,
                          c->name, atx_error_last()->message);
    else if (!cmd_ok(&res))
        r = atx_error_set(ATX_EIO, "podman: cannot copy %s into container %s: %s", from,
                          c->name, cmd_why(&res, why, sizeof(why)));
    cmd_result_release(&res);
    return r;
}

static int podman_copy_in(void *impl, const char *local, const char *remote)
{
    return copy_in(impl, local, remote);
}

/* The bootstrap: libatx copies the agent in and starts it with one
 * `podman exec -i`; everything else goes through the agent. */
static const atx_system_ops podman_system_ops = {
    .version = ATX_SYSTEM_OPS_VERSION,
    .spawn = podman_spawn,
    .copy_in = podman_copy_in,
    .copy_out = NULL,
    .alive = NULL,
    .flags = 0, /* a container does not see this host's files */
};

/* ---- leases ---- */

/* `podman run -d`: a container that idles until we remove it (`sleep`, or
 * the image's init). */
static int run_container(podman_state *s, container *c, const atx_reserve_req *req)
{
    argv_buf a = { 0 };
    cmd_result res;
    char why[512];
    int r;

    av_podman(&a, s, "run");
    av_add(&a, "-d");
    av_add(&a, "--name");
    av_add(&a, c->name);
    if (s->own_network)
        av_add(&a, "--network=none");
    if (!s->init)
        av_add(&a, "--entrypoint=");
    av_add(&a, "--label");
    av_add(&a, "atx.owner=atx");
    av_addf(&a, "--label=atx.run=%s", s->run_id);
    av_addf(&a, "--label=atx.pid=%s", s->pid);
    av_addf(&a, "--label=atx.pidstart=%s", s->pidstart);
    for (size_t i = 0; s->run_options[i]; i++)
        av_add(&a, s->run_options[i]);
    av_add(&a, s->image);
    if (!s->init) {
        av_add(&a, "sleep");
        av_add(&a, "infinity");
    }
    r = run_cmd(&a, req->deadline_ns, req->cancel_fd, &res);
    av_free(&a);
    if (r < 0)
        r = atx_error_set(r == ATX_ECANCELLED ? r : ATX_EINFRA,
                          "podman: cannot start container %s of %s: %s", c->name, s->image,
                          atx_error_last()->message);
    else if (!cmd_ok(&res))
        r = atx_error_set(ATX_EINFRA, "podman: cannot start container %s of %s: %s", c->name,
                          s->image, cmd_why(&res, why, sizeof(why)));
    cmd_result_release(&res);
    return r;
}

/* Make the work directory; learn the hostname. */
static int setup_container(podman_state *s, container *c, int64_t deadline_ns, int cancel_fd,
                           char *hostname, size_t len)
{
    argv_buf a = { 0 };
    cmd_result res;
    char why[512];
    int r;

    av_podman(&a, s, "exec");
    av_add(&a, c->name);
    av_add(&a, "sh");
    av_add(&a, "-c");
    av_add(&a, "mkdir -p \"$1\" && cat /proc/sys/kernel/hostname");
    av_add(&a, "sh");
    av_add(&a, s->workdir);
    r = run_cmd(&a, deadline_ns, cancel_fd, &res);
    av_free(&a);
    if (r < 0)
        r = atx_error_set(r == ATX_ECANCELLED ? r : ATX_EINFRA,
                          "podman: cannot prepare container %s of %s: %s", c->name, s->image,
                          atx_error_last()->message);
    else if (!cmd_ok(&res))
        r = atx_error_set(ATX_EINFRA, "podman: cannot make %s in container %s of %s: %s",
                          s->workdir, c->name, s->image, cmd_why(&res, why, sizeof(why)));
    else
        snprintf(hostname, len, "%.*s", (int)strcspn(res.out, "\n"), res.out);
    cmd_result_release(&res);
    return r;
}

static int podman_reserve(void *state, const atx_reserve_req *req, atx_system **out)
{
    podman_state *s = state;
    container *c;
    atx_labels *labels = NULL;
    char id[64], hostname[256] = "";
    unsigned n;
    int r;

    if (!s->labels)
        return atx_error_set(ATX_ESTATE, "podman: reserve before start");
    if (req->want && !req->want(req->userdata, s->labels))
        return ATX_ENOTFOUND;
    pthread_mutex_lock(&s->mu);
    if (s->leased >= s->slots) {
        pthread_mutex_unlock(&s->mu);
        return atx_error_set(ATX_EINFRA, "podman: all %d slots are leased", s->slots);
    }
    s->leased++;
    n = ++s->leases;
    pthread_mutex_unlock(&s->mu);

    c = calloc(1, sizeof(*c));
    if (!c) {
        r = atx_error_set(-ENOMEM, "out of memory");
        goto fail;
    }
    c->owner = s;
    snprintf(c->name, sizeof(c->name), "atx-%s-%u", s->run_id, n);
    snprintf(id, sizeof(id), "podman-%u", n);
    if ((r = run_container(s, c, req)) < 0 ||
        (r = setup_container(s, c, req->deadline_ns, req->cancel_fd, hostname,
                                 sizeof(hostname))) < 0)
        goto fail;
    if ((r = atx_labels_dup(s->labels, &labels)) < 0 ||
        (*hostname && (r = atx_labels_set(labels, "hostname", hostname)) < 0) ||
        (r = atx_system_new(&podman_system_ops, c, id, labels, s->workdir, out)) < 0)
        goto fail;
    atx_labels_free(labels);
    atx_plugin_log(s->ctx, ATX_LOG_DEBUG, "%s is container %s", id, c->name);
    return 0;
fail:
    if (c) {
        /* Keep the detail: the removal may overwrite it. */
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s", atx_error_last()->message);
        const char *name = c->name;
        remove_containers(s, &name, 1);
        atx_error_set(r, "%s", msg);
    }
    atx_labels_free(labels);
    free(c);
    pthread_mutex_lock(&s->mu);
    s->leased--;
    pthread_mutex_unlock(&s->mu);
    return r;
}

static void podman_release(void *state, atx_system *sys, unsigned flags)
{
    podman_state *s = state;
    container *c = atx_system_impl(sys);
    const char *name = c->name;

    /* Every lease gets a fresh container, whatever the flags say. */
    (void)flags;
    remove_containers(s, &name, 1);
    atx_system_free(sys);
    free(c);
    pthread_mutex_lock(&s->mu);
    s->leased--;
    pthread_mutex_unlock(&s->mu);
}

/* ---- reboots ---- */

/* One podman command on the container, bounded by the reboot's deadline. */
static int container_cmd(podman_state *s, container *c, const char *verb, const char *const *args,
                         const atx_reboot_req *req, const char *what)
{
    argv_buf a = { 0 };
    cmd_result res;
    char why[512];
    int r;

    av_podman(&a, s, verb);
    for (size_t i = 0; args && args[i]; i++)
        av_add(&a, args[i]);
    av_add(&a, c->name);
    r = run_cmd(&a, req->deadline_ns, req->cancel_fd, &res);
    av_free(&a);
    if (r == ATX_ETIMEDOUT)
        r = atx_error_set(r, "podman: container %s: %s: not in time", c->name, what);
    else if (r < 0)
        r = atx_error_set(r == ATX_ECANCELLED ? r : ATX_EINFRA, "podman: container %s: %s: %s",
                          c->name, what, atx_error_last()->message);
    else if (!cmd_ok(&res))
        r = atx_error_set(ATX_EINFRA, "podman: container %s: %s: %s", c->name, what,
                          cmd_why(&res, why, sizeof(why)));
    cmd_result_release(&res);
    return r;
}

/*
 * A restart of the container: its processes end, PID 1 (sleep, or the
 * image's init, which gets a moment to shut down) starts again, the files
 * stay. A reboot the test started, or a command of its own, must end PID 1:
 * the container is started again once it has stopped.
 */
static int podman_reboot(void *state, atx_system *sys, const atx_reboot_req *req)
{
    podman_state *s = state;
    container *c = atx_system_impl(sys);
    char hostname[256];
    int r;

    if (!req->started && !req->command) {
        const char *args[] = { "--time", s->init ? "30" : "0", NULL };
        r = container_cmd(s, c, "restart", args, req, "restart");
    } else {
        if (!req->started) {
            const char *args[] = { c->name, "sh", "-c", req->command, NULL };
            argv_buf a = { 0 };
            cmd_result res;
            av_podman(&a, s, "exec");
            for (size_t i = 0; args[i]; i++)
                av_add(&a, args[i]);
            /* It may end the container under itself: its status says nothing. */
            r = run_cmd(&a, req->deadline_ns, req->cancel_fd, &res);
            av_free(&a);
            cmd_result_release(&res);
            if (r == ATX_ECANCELLED)
                return atx_error_set(r, "the run was stopped while %s rebooted", c->name);
        }
        r = container_cmd(s, c, "wait", (const char *[]){ "--condition=stopped", NULL }, req,
                          "waiting for it to stop");
        if (r == 0)
            r = container_cmd(s, c, "start", NULL, req, "start");
    }
    if (r == 0)
        r = setup_container(s, c, req->deadline_ns, req->cancel_fd, hostname, sizeof(hostname));
    return r;
}

static const atx_provisioner_vtable podman_vtable = {
    .version = ATX_PROVISIONER_VTABLE_VERSION,
    .create = podman_create,
    .destroy = podman_destroy,
    .start = podman_start,
    .stop = podman_stop,
    .capacity = podman_capacity,
    .offer_count = podman_offer_count,
    .offer = podman_offer,
    .reserve = podman_reserve,
    .release = podman_release,
    .reserve_parallel = NULL,
    .reboot = podman_reboot,
};

ATX_PLUGIN_DEFINE(ATX_PLUGIN_PROVISIONER, "podman", ATX_VERSION_STRING,
                  "A fresh podman container per lease, removed on release", &podman_vtable)
