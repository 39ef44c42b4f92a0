/*
 * ssh: a pool of hosts reached over SSH (libssh). Each lease is one SSH
 * session to a host with a free slot, with its own work folder there;
 * processes are exec channels of that session. Host keys are checked against
 * known_hosts; a host that cannot be reached, or loses its connection, is
 * quarantined for a while that doubles with each trouble.
 */
#define _GNU_SOURCE 1
#include "internal.h"

#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_MAX (300 * ATX_NSEC_PER_SEC)
#define COMMAND_TIMEOUT (30 * ATX_NSEC_PER_SEC)
/* How long a reserve waits for a busy host before handing back (the
 * orchestrator asks again when a system is released or the queue changes). */
#define BUSY_WAIT (30 * ATX_NSEC_PER_SEC)
/* How often a waiting reserve asks again whether a host is still wanted. */
#define WANT_TICK (200 * ATX_NSEC_PER_MSEC)

/* ---- configuration ---- */

static char *home_path(const char *rest)
{
    const char *home = getenv("HOME");
    char *p = NULL;
    if (asprintf(&p, "%s/%s", home && *home ? home : "/", rest) < 0)
        return NULL;
    return p;
}

/* An absolute path for @p path: "~/" is the home folder, other relative
 * paths are relative to @p base (NULL: the current directory). */
static char *resolve(const char *path, const char *base)
{
    char cwd[PATH_MAX], *p = NULL;

    if (path[0] == '/')
        return strdup(path);
    if (path[0] == '~' && path[1] == '/')
        return home_path(path + 2);
    if (!base) {
        if (!getcwd(cwd, sizeof(cwd)))
            return NULL;
        base = cwd;
    }
    if (asprintf(&p, "%s/%s", base, path) < 0)
        return NULL;
    return p;
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof(((host *)0)->name) || s[0] == '.' || s[0] == '-')
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return false;
    return true;
}

static int bad(const char *file, size_t i, const char *fmt, ...) ATX_PRINTF(3, 4);
static int bad(const char *file, size_t i, const char *fmt, ...)
{
    char what[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (i == (size_t)-1)
        return atx_error_set(ATX_EINVAL, "ssh: pool file %s: %s", file, what);
    return atx_error_set(ATX_EINVAL, "ssh: pool file %s: hosts[%zu]: %s", file, i, what);
}

static int get_string(json_object *o, const char *key, const char *file, size_t i,
                      const char **out)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v))
        return 0;
    if (!json_object_is_type(v, json_type_string) || !*json_object_get_string(v))
        return bad(file, i, "'%s' must be a non-empty string", key);
    *out = json_object_get_string(v);
    return 0;
}

static int get_int(json_object *o, const char *key, const char *file, size_t i, int64_t lo,
                   int64_t hi, int64_t *out)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v))
        return 0;
    if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < lo ||
        json_object_get_int64(v) > hi) {
        return bad(file, i, "'%s' must be a whole number from %lld to %lld", key,
                   (long long)lo, (long long)hi);
    }
    *out = json_object_get_int64(v);
    return 0;
}

static int parse_host(ssh_prov *p, json_object *o, size_t i, const char *dir, host *h)
{
    static const char *const keys[] = { "name", "address", "port", "user", "identity",
                                        "labels", "slots", "reboot_command", NULL };
    const char *name = NULL, *address = NULL, *user = NULL, *identity = NULL, *reboot = NULL;
    int64_t port = 22, slots = 1;
    json_object *labels;
    int r;

    if (!json_object_is_type(o, json_type_object))
        return bad(p->pool, i, "%s", "must be an object");
    json_object_object_foreach(o, key, val) {
        bool known = false;
        (void)val;
        for (size_t k = 0; keys[k] && !known; k++)
            known = strcmp(keys[k], key) == 0;
        if (!known)
            return bad(p->pool, i, "unknown key '%s'", key);
    }
    if ((r = get_string(o, "name", p->pool, i, &name)) < 0 ||
        (r = get_string(o, "address", p->pool, i, &address)) < 0 ||
        (r = get_string(o, "user", p->pool, i, &user)) < 0 ||
        (r = get_string(o, "identity", p->pool, i, &identity)) < 0 ||
        (r = get_string(o, "reboot_command", p->pool, i, &reboot)) < 0 ||
        (r = get_int(o, "port", p->pool, i, 1, 65535, &port)) < 0 ||
        (r = get_int(o, "slots", p->pool, i, 1, 1024, &slots)) < 0)
        return r;
    if (!name || !address)
        return bad(p->pool, i, "%s", "needs \"name\" and \"address\"");
    if (!valid_name(name))
        return bad(p->pool, i, "the name '%s' may hold only letters, digits, '.', '_' and "
                   "'-' (at most 63)", name);
    for (size_t k = 0; k < i; k++)
        if (strcmp(p->hosts[k].name, name) == 0)
            return bad(p->pool, i, "the name '%s' is used twice", name);
    snprintf(h->name, sizeof(h->name), "%s", name);
    h->port = (unsigned)port;
    h->slots = (int)slots;
    if (reboot && !*reboot)
        return bad(p->pool, i, "%s", "'reboot_command' must not be empty");
    if (!(h->address = strdup(address)) || (user && !(h->user = strdup(user))) ||
        (reboot && !(h->reboot_command = strdup(reboot))) ||
        (identity && !(h->identity = resolve(identity, dir))) ||
        (r = atx_labels_new(&h->conf)) < 0)
        return atx_error_set(ATX_ENOMEM, "out of memory");
    if (h->identity && access(h->identity, R_OK) < 0)
        return atx_error_set(ATX_EINVAL, "ssh: pool file %s: host %s: cannot read the "
                             "identity file %s: %s", p->pool, name, h->identity,
                             strerror(errno));
    if (json_object_object_get_ex(o, "labels", &labels)) {
        if (!json_object_is_type(labels, json_type_object))
            return bad(p->pool, i, "%s", "'labels' must be an object of strings");
        json_object_object_foreach(labels, k, v) {
            if (!json_object_is_type(v, json_type_string))
                return bad(p->pool, i, "label '%s' must be a string", k);
            if ((r = atx_labels_set(h->conf, k, json_object_get_string(v))) < 0)
                return r;
        }
    }
    return 0;
}

static int load_pool(ssh_prov *p, const char *known_hosts_cfg)
{
    static const char *const keys[] = { "known_hosts", "hosts", NULL };
    json_object *root = NULL, *hosts;
    const char *kh = NULL;
    char *text = NULL, dir[PATH_MAX];
    size_t len = 0;
    int r = 0;

    FILE *f = fopen(p->pool, "re");
    if (!f)
        return atx_error_set(ATX_EINVAL, "ssh: cannot read the pool file %s: %s", p->pool,
                             strerror(errno));
    FILE *m = open_memstream(&text, &len);
    char buf[8192];
    size_t n;
    while (m && (n = fread(buf, 1, sizeof(buf), f)) > 0)
        fwrite(buf, 1, n, m);
    fclose(f);
    if (!m || fclose(m) != 0) {
        free(text);
        return atx_error_set(ATX_ENOMEM, "out of memory");
    }
    enum json_tokener_error jerr = json_tokener_success;
    root = json_tokener_parse_verbose(text, &jerr);
    free(text);
    if (!root) {
        return atx_error_set(ATX_EINVAL, "ssh: pool file %s is not valid JSON: %s", p->pool,
                             json_tokener_error_desc(jerr));
    }
    snprintf(dir, sizeof(dir), "%s", p->pool);
    *strrchr(dir, '/') = '\0';
    if (!*dir)
        snprintf(dir, sizeof(dir), "/");
    if (!json_object_is_type(root, json_type_object)) {
        r = bad(p->pool, (size_t)-1, "%s", "must hold a JSON object");
        goto out;
    }
    json_object_object_foreach(root, key, val) {
        bool known = false;
        (void)val;
        for (size_t k = 0; keys[k] && !known; k++)
            known = strcmp(keys[k], key) == 0;
        if (!known) {
            r = bad(p->pool, (size_t)-1, "unknown key '%s'", key);
            goto out;
        }
    }
    if ((r = get_string(root, "known_hosts", p->pool, (size_t)-1, &kh)) < 0)
        goto out;
    if (!json_object_object_get_ex(root, "hosts", &hosts) ||
        !json_object_is_type(hosts, json_type_array) || json_object_array_length(hosts) == 0) {
        r = bad(p->pool, (size_t)-1, "%s", "needs \"hosts\": a non-empty list");
        goto out;
    }
    p->nhosts = json_object_array_length(hosts);
    if (!(p->hosts = calloc(p->nhosts, sizeof(*p->hosts)))) {
        r = atx_error_set(ATX_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < p->nhosts && r == 0; i++) {
        r = parse_host(p, json_object_array_get_idx(hosts, i), i, dir, &p->hosts[i]);
        p->capacity += p->hosts[i].slots;
    }
    if (r < 0)
        goto out;
    if (known_hosts_cfg)
        p->known_hosts = resolve(known_hosts_cfg, NULL);
    else if (kh)
        p->known_hosts = resolve(kh, dir);
    else
        p->known_hosts = home_path(".ssh/known_hosts");
    if (!p->known_hosts)
        r = atx_error_set(ATX_ENOMEM, "out of memory");
out:
    json_object_put(root);
    return r;
}

static void ssh_destroy(void *state);

static int ssh_create(atx_plugin_ctx *ctx, void **out)
{
    static const char *const keys[] = { "pool", "known_hosts", "insecure_skip_host_key_check",
                                        "connect_timeout", "backoff", "keepalive", NULL };
    const char *pool = NULL, *kh = NULL;
    int insecure = 0, r;
    int64_t timeout = 10 * ATX_NSEC_PER_SEC, backoff = 5 * ATX_NSEC_PER_SEC;
    int64_t keepalive = 15 * ATX_NSEC_PER_SEC;
    ssh_prov *p;

    if ((r = atx_plugin_config_check_keys(ctx, keys)) < 0 ||
        (r = atx_plugin_config_string(ctx, "pool", &pool)) < 0 ||
        (r = atx_plugin_config_string(ctx, "known_hosts", &kh)) < 0 ||
        (r = atx_plugin_config_bool(ctx, "insecure_skip_host_key_check", &insecure)) < 0 ||
        (r = atx_plugin_config_duration(ctx, "connect_timeout", &timeout)) < 0 ||
        (r = atx_plugin_config_duration(ctx, "backoff", &backoff)) < 0 ||
        (r = atx_plugin_config_duration(ctx, "keepalive", &keepalive)) < 0)
        return r;
    if (keepalive && keepalive < ATX_NSEC_PER_SEC)
        return atx_error_set(ATX_EINVAL, "ssh: 'keepalive' must be at least 1s (0: none)");
    if (!pool || !*pool)
        return atx_error_set(ATX_EINVAL, "ssh: needs \"pool\": the path of a pool file");
    if (timeout < ATX_NSEC_PER_SEC)
        return atx_error_set(ATX_EINVAL, "ssh: 'connect_timeout' must be at least 1s");
    if (backoff < 100 * ATX_NSEC_PER_MSEC || backoff > BACKOFF_MAX)
        return atx_error_set(ATX_EINVAL, "ssh: 'backoff' must be from 100ms to 5m");
    if (!(p = calloc(1, sizeof(*p))))
        return atx_error_set(ATX_ENOMEM, "out of memory");
    p->ctx = ctx;
    p->insecure = insecure;
    p->connect_timeout_ns = timeout;
    p->backoff_ns = backoff;
    p->keepalive_ns = keepalive;
    p->released_fd = -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->doctor_cv, &ca);
    pthread_condattr_destroy(&ca);
    ssh_init();
    if (!(p->pool = resolve(pool, NULL))) {
        ssh_destroy(p);
        return atx_error_set(ATX_ENOMEM, "out of memory");
    }
    if ((r = load_pool(p, kh)) < 0) {
        ssh_destroy(p);
        return r;
    }
    if ((p->released_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        r = atx_error_set(-errno, "eventfd: %s", strerror(errno));
        ssh_destroy(p);
        return r;
    }
    *out = p;
    return 0;
}

static void ssh_destroy(void *state)
{
    ssh_prov *p = state;

    if (!p)
        return;
    for (size_t i = 0; i < p->nhosts; i++) {
        host *h = &p->hosts[i];
        free(h->address);
        free(h->user);
        free(h->identity);
        free(h->reboot_command);
        atx_labels_free(h->conf);
        atx_labels_free(h->labels);
        atx_labels_free(h->facts);
        free(h->stale);
    }
    free(p->hosts);
    free(p->pool);
    free(p->known_hosts);
    if (p->released_fd >= 0)
        close(p->released_fd);
    pthread_cond_destroy(&p->doctor_cv);
    pthread_mutex_destroy(&p->mu);
    ssh_finalize();
    free(p);
}

/* ---- hosts: labels, probe, quarantine ---- */

/* facts, then provider and host, then the pool's labels (which win). */
static int make_labels(const host *h, const atx_labels *facts, atx_labels **out)
{
    atx_labels *l;
    int r;

    if ((r = atx_labels_new(&l)) < 0)
        return r;
    if ((facts && (r = atx_labels_merge(l, facts)) < 0) ||
        (r = atx_labels_set(l, "provider", "ssh")) < 0 ||
        (r = atx_labels_set(l, "host", h->name)) < 0 || (r = atx_labels_merge(l, h->conf)) < 0) {
        atx_labels_free(l);
        return r;
    }
    *out = l;
    return 0;
}

/* Log lines carry the plugin's name already; error details start with it. */
static const char *bare(const char *msg)
{
    return strncmp(msg, "ssh: ", 5) == 0 ? msg + 5 : msg;
}

/* Under p->mu. The doctor looks at the host again when the backoff ends. */
static void quarantine(ssh_prov *p, host *h, const char *why)
{
    int64_t backoff = p->backoff_ns;
    for (int i = 0; i < h->failures && backoff < BACKOFF_MAX; i++)
        backoff *= 2;
    if (backoff > BACKOFF_MAX)
        backoff = BACKOFF_MAX;
    h->failures++;
    h->quarantined = true;
    h->until = atx_now_ns() + backoff;
    pthread_cond_signal(&p->doctor_cv);
    if (why != h->why)
        snprintf(h->why, sizeof(h->why), "%s", why);
    atx_plugin_log(p->ctx, ATX_LOG_WARNING, "host %s quarantined for %.3gs: %s", h->name,
                   (double)backoff / ATX_NSEC_PER_SEC, bare(why));
}

/* Under p->mu: a host whose key was refused is never used again. */
static void refuse(ssh_prov *p, host *h, const char *why)
{
    if (h->refused)
        return;
    h->refused = true;
    snprintf(h->why, sizeof(h->why), "%s", why);
    atx_plugin_log(p->ctx, ATX_LOG_ERROR, "%s", bare(why));
}

/* Connect and run the probe: 0 with *facts, or the trouble in @p why. */
static int probe_host(ssh_prov *p, host *h, atx_labels **facts, bool *refused, char *why,
                      size_t whylen)
{
    ssh_session s = NULL;
    char out[8192];
    int code = -1;

    int r = sshp_connect(p, h, p->connect_timeout_ns, &s, refused);
    if (r == 0) {
        r = sshp_run(s, h->name, prov_probe_cmd, COMMAND_TIMEOUT, out, sizeof(out), &code);
        if (r == 0 && code != 0)
            r = atx_error_set(ATX_EINFRA, "the probe command exited %d", code);
        if (r == 0)
            r = prov_parse_facts(out, facts);
        if (r < 0) {
            char msg[500];
            snprintf(msg, sizeof(msg), "%s", atx_error_last()->message);
            atx_error_set(r, "ssh: probing host %s failed: %s", h->name, msg);
        }
        sshp_disconnect(s);
    }
    if (r < 0)
        snprintf(why, whylen, "%s", atx_error_last()->message);
    return r;
}

typedef struct probe {
    ssh_prov *p;
    host *h;
    pthread_t thread;
    bool started, refused;
    int rc;
    atx_labels *facts;
    char why[600];
} probe;

static void *probe_main(void *arg)
{
    probe *pr = arg;
    pr->rc = probe_host(pr->p, pr->h, &pr->facts, &pr->refused, pr->why, sizeof(pr->why));
    return NULL;
}

static bool doctor_stopping(void *ud)
{
    ssh_prov *p = ud;
    pthread_mutex_lock(&p->mu);
    bool stop = p->stopping;
    pthread_mutex_unlock(&p->mu);
    return stop;
}

static void *doctor_main(void *arg)
{
    ssh_prov *p = arg;

    pthread_mutex_lock(&p->mu);
    while (!p->stopping) {
        int64_t now = atx_now_ns(), next = 0;
        host *h = NULL;
        for (size_t i = 0; i < p->nhosts && !h; i++) {
            host *c = &p->hosts[i];
            if (!c->quarantined || c->refused || c->checking)
                continue;
            if (c->until <= now)
                h = c;
            else if (!next || c->until < next)
                next = c->until;
        }
        if (!h) {
            if (!next) {
                pthread_cond_wait(&p->doctor_cv, &p->mu);
            } else {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                int64_t at = (int64_t)ts.tv_sec * ATX_NSEC_PER_SEC + ts.tv_nsec + (next - now);
                ts.tv_sec = at / ATX_NSEC_PER_SEC;
                ts.tv_nsec = at % ATX_NSEC_PER_SEC;
                pthread_cond_timedwait(&p->doctor_cv, &p->mu, &ts);
            }
            continue;
        }
        h->checking = true;
        pthread_mutex_unlock(&p->mu);
        atx_labels *facts = NULL;
        bool refused = false;
        char why[600];
        /* A host that hangs is found out here, where the run's end need not
         * wait for a connect timeout. */
        int r = sshp_reachable(h, p->connect_timeout_ns, doctor_stopping, p);
        if (r == 0)
            r = probe_host(p, h, &facts, &refused, why, sizeof(why));
        else
            snprintf(why, sizeof(why), "%s", atx_error_last()->message);
        pthread_mutex_lock(&p->mu);
        h->checking = false;
        if (r == ATX_ECANCELLED)
            break;
        if (r == 0) {
            h->quarantined = false;
            if (!h->facts) {
                h->facts = facts;
                facts = NULL;
            }
            atx_plugin_log(p->ctx, ATX_LOG_INFO, "host %s answers again", h->name);
        } else if (refused) {
            refuse(p, h, why);
        } else {
            quarantine(p, h, why);
        }
        atx_labels_free(facts);
        p->verdicts++;
        eventfd_write(p->released_fd, 1);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Probe every host at once: facts for the labels, and early word of the
 * hosts that cannot be used. */
static int ssh_start(void *state)
{
    ssh_prov *p = state;
    probe *pr = calloc(p->nhosts, sizeof(*pr));
    size_t usable = 0;
    int r = 0;

    if (!pr)
        return atx_error_set(ATX_ENOMEM, "out of memory");
    for (size_t i = 0; i < p->nhosts; i++) {
        pr[i].p = p;
        pr[i].h = &p->hosts[i];
        pr[i].started = pthread_create(&pr[i].thread, NULL, probe_main, &pr[i]) == 0;
        if (!pr[i].started)
            probe_main(&pr[i]);
    }
    for (size_t i = 0; i < p->nhosts; i++)
        if (pr[i].started)
            pthread_join(pr[i].thread, NULL);
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->nhosts && r == 0; i++) {
        host *h = &p->hosts[i];
        h->facts = pr[i].facts;
        pr[i].facts = NULL;
        r = make_labels(h, h->facts, &h->labels);
        if (pr[i].refused)
            refuse(p, h, pr[i].why);
        else if (pr[i].rc < 0)
            quarantine(p, h, pr[i].why);
        else
            usable++;
    }
    pthread_mutex_unlock(&p->mu);
    if (r == 0 && usable == 0)
        r = atx_error_set(ATX_EINFRA, "ssh: no host of %s can be used: %s", p->pool,
                          pr[0].why);
    if (r == 0) {
        int e = pthread_create(&p->doctor, NULL, doctor_main, p);
        if (e != 0)
            r = atx_error_set(-e, "cannot start a thread: %s", strerror(e));
        p->doctor_running = e == 0;
    }
    if (r == 0 && p->insecure) {
        char names[1024];
        size_t n = 0;
        names[0] = '\0';
        for (size_t i = 0; i < p->nhosts && n < sizeof(names); i++)
            n += (size_t)snprintf(names + n, sizeof(names) - n, "%s%s", i ? ", " : "",
                                  p->hosts[i].name);
        atx_plugin_log(p->ctx, ATX_LOG_WARNING, "the host keys of %s are not verified "
                       "(insecure_skip_host_key_check)", names);
    }
    for (size_t i = 0; i < p->nhosts; i++)
        atx_labels_free(pr[i].facts);
    free(pr);
    return r;
}

static int ssh_stop(void *state)
{
    ssh_prov *p = state;

    if (p->doctor_running) {
        pthread_mutex_lock(&p->mu);
        p->stopping = true;
        pthread_cond_signal(&p->doctor_cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->doctor, NULL);
        p->doctor_running = false;
    }
    return 0;
}

static int ssh_capacity(void *state)
{
    return ((ssh_prov *)state)->capacity;
}

static size_t ssh_offer_count(void *state)
{
    return ((ssh_prov *)state)->nhosts;
}

static const atx_labels *ssh_offer(void *state, size_t i)
{
    ssh_prov *p = state;
    return i < p->nhosts ? p->hosts[i].labels : NULL;
}

/* ---- leases ---- */

/* The bootstrap: libatx puts the agent there and starts it on one channel;
 * everything else goes through the agent. */
static const atx_system_ops ssh_system_ops = {
    .version = ATX_SYSTEM_OPS_VERSION,
    .spawn = sshp_spawn,
    .copy_in = sshp_copy_in,
    .copy_out = NULL,
    .alive = NULL,
    .flags = 0,
};

static void lease_free(lease *l)
{
    if (!l)
        return;
    sshp_pump_stop(l);
    sshp_sftp_close(l);
    sshp_disconnect(l->s);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

/* Connect, make the work folder (and learn the facts the start could not). */
static int open_lease(ssh_prov *p, host *h, unsigned n, int64_t deadline, lease **out,
                      atx_labels **labels, bool *refused)
{
    char cmd[1024], text[8192];
    size_t pos;
    int code = -1, r;
    lease *l = calloc(1, sizeof(*l));

    if (!l)
        return atx_error_set(ATX_ENOMEM, "out of memory");
    l->prov = p;
    l->h = h;
    l->wake_fd = -1;
    pthread_mutex_init(&l->mu, NULL);
    snprintf(l->id, sizeof(l->id), "%s-%u", h->name, n);
    int64_t timeout = p->connect_timeout_ns, left = deadline - atx_now_ns();
    if (deadline && left < timeout)
        timeout = left > ATX_NSEC_PER_SEC ? left : ATX_NSEC_PER_SEC;
    if ((r = sshp_connect(p, h, timeout, &l->s, refused)) < 0) {
        lease_free(l);
        return r;
    }
    /* The work folders of leases whose connection broke go now. */
    pthread_mutex_lock(&p->mu);
    bool need_facts = !h->facts;
    char *stale = h->stale;
    h->stale = NULL;
    pthread_mutex_unlock(&p->mu);
    char tmpl[200];
    snprintf(tmpl, sizeof(tmpl), "atx-%s.XXXXXX", l->id);
    pos = 0;
    if (stale && strlen(stale) + 16 < sizeof(cmd) / 2)
        pos = (size_t)snprintf(cmd, sizeof(cmd), "rm -rf -- %s; ", stale);
    pos += (size_t)snprintf(cmd + pos, sizeof(cmd) - pos, "d=$(mktemp -d \"${TMPDIR:-/var/tmp}\"/");
    sshp_quote(cmd, sizeof(cmd), &pos, tmpl);
    pos += (size_t)snprintf(cmd + pos, sizeof(cmd) - pos, ") && printf '%%s\\n' \"$d\"%s%s",
                            need_facts ? " && " : "", need_facts ? prov_probe_cmd : "");
    if ((r = sshp_run(l->s, l->id, cmd, COMMAND_TIMEOUT, text, sizeof(text), &code)) == 0 &&
        code != 0)
        r = atx_error_set(ATX_EINFRA, "ssh: cannot make a work folder on %s (exit %d)", l->id,
                          code);
    if (r < 0) {
        pthread_mutex_lock(&p->mu);
        if (!h->stale) {
            h->stale = stale;
            stale = NULL;
        }
        pthread_mutex_unlock(&p->mu);
        free(stale);
        lease_free(l);
        return r;
    }
    free(stale);
    char *nl = strchr(text, '\n');
    if (!nl || nl == text || text[0] != '/') {
        lease_free(l);
        return atx_error_set(ATX_EINFRA, "ssh: cannot make a work folder on %s", l->id);
    }
    *nl = '\0';
    snprintf(l->workdir, sizeof(l->workdir), "%s", text);
    atx_labels *facts = NULL;
    if (need_facts && prov_parse_facts(nl + 1, &facts) == 0) {
        pthread_mutex_lock(&p->mu);
        if (!h->facts) {
            h->facts = facts;
            facts = NULL;
        }
        pthread_mutex_unlock(&p->mu);
        atx_labels_free(facts);
    }
    pthread_mutex_lock(&p->mu);
    r = make_labels(h, h->facts, labels);
    pthread_mutex_unlock(&p->mu);
    if (r < 0 || (r = sshp_pump_start(l)) < 0) {
        lease_free(l);
        return r;
    }
    *out = l;
    return 0;
}

/* Wait until @p until (or a tick) for a host to change: a release, a
 * verdict of the doctor, the run stopping. */
static void wait_change(ssh_prov *p, const atx_reserve_req *req, int64_t until)
{
    struct pollfd pfd[2] = { { .fd = p->released_fd, .events = POLLIN },
                             { .fd = req->cancel_fd, .events = POLLIN } };
    int64_t left = until - atx_now_ns();
    if (left > WANT_TICK)
        left = WANT_TICK;
    if (left > 0 &&
        poll(pfd, req->cancel_fd >= 0 ? 2 : 1, (int)(left / ATX_NSEC_PER_MSEC + 1)) > 0 &&
        (pfd[0].revents & POLLIN)) {
        eventfd_t v;
        eventfd_read(p->released_fd, &v);
    }
}

static bool cancelled(const atx_reserve_req *req)
{
    struct pollfd pfd = { .fd = req->cancel_fd, .events = POLLIN };
    return req->cancel_fd >= 0 && poll(&pfd, 1, 0) > 0;
}

/*
 * Lease the least loaded wanted host that is neither refused nor
 * quarantined. When none is free: with a wanted host busy, wait a while for
 * a release and then hand back (ATX_ENOTFOUND: the orchestrator asks again
 * when something changes); with every wanted host quarantined, wait for the
 * doctor's next look at them and report the trouble if they are still down.
 */
static int ssh_reserve(void *state, const atx_reserve_req *req, atx_system **out)
{
    ssh_prov *p = state;
    bool *wanted = calloc(p->nhosts, sizeof(*wanted));
    char last[600] = "";
    bool tried = false, have_verdicts = false;
    unsigned verdicts = 0;
    int64_t busy_since = 0;
    int r;

    if (!wanted)
        return atx_error_set(ATX_ENOMEM, "out of memory");
    for (;;) {
        int64_t now = atx_now_ns();
        if (cancelled(req)) {
            r = atx_error_set(ATX_ECANCELLED, "ssh: the run stopped");
            break;
        }
        if (req->deadline_ns && now >= req->deadline_ns) {
            r = atx_error_set(ATX_ETIMEDOUT, "ssh: no host came free in time%s%s",
                              *last ? ": " : "", last);
            break;
        }
        /* want() takes the orchestrator's lock: never call it under ours. */
        for (size_t i = 0; i < p->nhosts; i++)
            wanted[i] = !req->want || req->want(req->userdata, p->hosts[i].labels);

        pthread_mutex_lock(&p->mu);
        host *pick = NULL, *refused_one = NULL, *down = NULL;
        bool any = false, busy = false;
        for (size_t i = 0; i < p->nhosts; i++) {
            host *h = &p->hosts[i];
            if (!wanted[i])
                continue;
            if (h->refused) {
                refused_one = h;
                continue;
            }
            any = true;
            if (h->quarantined) {
                down = h;
                continue;
            }
            if (h->busy >= h->slots) {
                busy = true;
                continue;
            }
            if (!pick || (int64_t)h->busy * pick->slots < (int64_t)pick->busy * h->slots)
                pick = h;
        }
        if (pick) {
            pick->busy++;
            unsigned n = ++pick->leases;
            pthread_mutex_unlock(&p->mu);
            lease *l = NULL;
            atx_labels *labels = NULL;
            bool refused = false;
            r = open_lease(p, pick, n, req->deadline_ns, &l, &labels, &refused);
            if (r == 0 && (r = atx_system_new(&ssh_system_ops, l, l->id, labels, l->workdir,
                                              out)) < 0)
                lease_free(l);
            atx_labels_free(labels);
            if (r == 0)
                break;
            snprintf(last, sizeof(last), "%s", atx_error_last()->message);
            pthread_mutex_lock(&p->mu);
            pick->busy--;
            if (refused)
                refuse(p, pick, last);
            else
                quarantine(p, pick, last);
            pthread_mutex_unlock(&p->mu);
            tried = true;
            continue;
        }
        if (!any) {
            if (refused_one)
                r = atx_error_set(ATX_EINFRA, "%s", refused_one->why);
            else
                r = atx_error_set(ATX_ENOTFOUND, "ssh: no host of %s is wanted now", p->pool);
            pthread_mutex_unlock(&p->mu);
            break;
        }
        if (!busy) {
            /* Every wanted host is down: report it once the doctor has
             * looked again (or at once if this reserve just failed). */
            if (!have_verdicts) {
                verdicts = p->verdicts;
                have_verdicts = true;
            }
            if (tried || p->verdicts != verdicts) {
                r = atx_error_set(ATX_EINFRA, "%s", *last ? last : down->why);
                pthread_mutex_unlock(&p->mu);
                break;
            }
            pthread_mutex_unlock(&p->mu);
            wait_change(p, req, INT64_MAX);
            continue;
        }
        pthread_mutex_unlock(&p->mu);
        /* A wanted host is busy: wait a while for a release, then hand back. */
        if (!busy_since)
            busy_since = now;
        if (now - busy_since >= BUSY_WAIT) {
            r = atx_error_set(ATX_ENOTFOUND, "ssh: every wanted host of %s is busy", p->pool);
            break;
        }
        wait_change(p, req, busy_since + BUSY_WAIT);
    }
    free(wanted);
    return r;
}

/* A work folder to remove at the host's next lease. Under p->mu. */
static void remember_stale(host *h, const char *workdir)
{
    char q[600];
    size_t pos = 0;
    if (sshp_quote(q, sizeof(q), &pos, workdir) < 0)
        return;
    size_t had = h->stale ? strlen(h->stale) : 0;
    if (had + pos + 2 > 400)
        return; /* enough: the rest stays for the host's owner */
    char *n = realloc(h->stale, had + pos + 2);
    if (!n)
        return;
    if (had)
        n[had++] = ' ';
    memcpy(n + had, q, pos + 1);
    h->stale = n;
}

static void ssh_release(void *state, atx_system *sys, unsigned flags)
{
    ssh_prov *p = state;
    lease *l = atx_system_impl(sys);
    host *h = l->h;
    char why[600] = "";
    int code;

    sshp_pump_stop(l);
    /* A system that stopped answering is not waited on: its work folder
     * goes at the host's next lease. */
    bool gone = l->lost || (flags & ATX_RELEASE_LOST);
    if (!gone) {
        /* Best effort: the work folder goes. */
        char cmd[700];
        size_t pos = (size_t)snprintf(cmd, sizeof(cmd), "rm -rf -- ");
        if (sshp_quote(cmd, sizeof(cmd), &pos, l->workdir) == 0 &&
            sshp_run(l->s, l->id, cmd, COMMAND_TIMEOUT, NULL, 0, &code) == ATX_ELOST)
            sshp_lose(l, ssh_get_error(l->s));
    }
    if (l->lost)
        snprintf(why, sizeof(why), "the connection of %s broke: %s", l->id, l->lost_why);
    else if (flags & ATX_RELEASE_BROKEN)
        snprintf(why, sizeof(why), "%s had infrastructure trouble", l->id);
    pthread_mutex_lock(&p->mu);
    h->busy--;
    if (gone)
        remember_stale(h, l->workdir);
    if (*why)
        quarantine(p, h, why);
    else if (!h->quarantined)
        h->failures = 0;
    pthread_mutex_unlock(&p->mu);
    eventfd_write(p->released_fd, 1);
    lease_free(l);
    atx_system_free(sys);
}

/* ---- reboots ---- */

static bool reboot_cancelled(void *ud)
{
    struct pollfd c = { .fd = *(const int *)ud, .events = POLLIN };
    return c.fd >= 0 && poll(&c, 1, 0) > 0;
}

/* Until @p until: the host answers, logs us in, and its work folder is
 * there again (made anew if the reboot took it: /tmp on tmpfs). */
static int come_back(ssh_prov *p, lease *l, const atx_reboot_req *req)
{
    host *h = l->h;
    int cancel = req->cancel_fd;
    char why[600] = "it did not answer";

    for (;;) {
        int64_t left = req->deadline_ns - atx_now_ns();
        if (left <= 0)
            return atx_error_set(ATX_ETIMEDOUT, "ssh: %s did not come back in time (%s)", l->id,
                                 why);
        int64_t try_for = left < p->connect_timeout_ns ? left : p->connect_timeout_ns;
        int r = sshp_reachable(h, try_for, reboot_cancelled, &cancel);
        if (r == ATX_ECANCELLED)
            return atx_error_set(r, "the run was stopped while %s rebooted", l->id);
        bool refused = false;
        ssh_session s = NULL;
        if (r == 0 && (r = sshp_connect(p, h, try_for, &s, &refused)) == 0) {
            char cmd[700];
            size_t pos = (size_t)snprintf(cmd, sizeof(cmd), "mkdir -p -- ");
            int code = -1;
            if (sshp_quote(cmd, sizeof(cmd), &pos, l->workdir) == 0 &&
                (r = sshp_run(s, l->id, cmd, COMMAND_TIMEOUT, NULL, 0, &code)) == 0 &&
                code == 0) {
                l->s = s;
                return 0;
            }
            snprintf(why, sizeof(why), "cannot make its work folder %s again", l->workdir);
            sshp_disconnect(s);
        } else if (r < 0) {
            snprintf(why, sizeof(why), "%s", bare(atx_error_last()->message));
            if (refused) {
                pthread_mutex_lock(&p->mu);
                refuse(p, h, atx_error_last()->message);
                pthread_mutex_unlock(&p->mu);
                return atx_error_set(ATX_EINFRA, "%s", why);
            }
        }
        /* Once a second at most: a refused connection fails at once. */
        struct pollfd c = { .fd = cancel, .events = POLLIN };
        left = req->deadline_ns - atx_now_ns();
        if (left > 0 && poll(&c, cancel >= 0 ? 1 : 0, left < ATX_NSEC_PER_SEC
                                                           ? (int)(left / ATX_NSEC_PER_MSEC + 1)
                                                           : 1000) > 0)
            return atx_error_set(ATX_ECANCELLED, "the run was stopped while %s rebooted", l->id);
    }
}

/*
 * The host's reboot command (unless the test started the reboot itself),
 * then the connection must close and the host answer again. libatx has
 * said goodbye to the agent; the lease's own session is all that is left.
 */
static int ssh_reboot(void *state, atx_system *sys, const atx_reboot_req *req)
{
    ssh_prov *p = state;
    lease *l = atx_system_impl(sys);
    const char *cmd = req->command ? req->command
                                   : l->h->reboot_command ? l->h->reboot_command : "reboot";
    int r = 0, code = -1;
    char out[512];

    sshp_pump_stop(l);
    pthread_mutex_lock(&l->mu);
    sshp_sftp_close(l);
    pthread_mutex_unlock(&l->mu);
    if (!req->started && l->lost) {
        /* The connection broke before the command could go: connect again
         * (the host is up, or coming back by itself) and reboot it then. */
        sshp_disconnect(l->s);
        l->s = NULL;
        if ((r = come_back(p, l, req)) < 0)
            return r;
        l->lost = false;
    }
    if (!req->started) {
        /* It may end, or the connection may drop under it: both are fine. */
        int64_t left = req->deadline_ns - atx_now_ns();
        r = sshp_run(l->s, l->id, cmd, left < COMMAND_TIMEOUT ? (left > 0 ? left : 1)
                                                              : COMMAND_TIMEOUT,
                     out, sizeof(out), &code);
        if (r == 0 && code != 0) {
            char *nl = strchr(out, '\n');
            if (nl)
                *nl = '\0';
            return atx_error_set(ATX_EINFRA, "ssh: the reboot command '%s' on %s failed (exit %d)%s%s",
                                 cmd, l->id, code, *out ? ": " : "", out);
        }
    }
    if (!l->lost && (r = sshp_wait_closed(l->s, req->deadline_ns, req->cancel_fd)) < 0)
        return r == ATX_ETIMEDOUT ? atx_error_set(r, "ssh: %s did not go down in time", l->id) : r;
    sshp_disconnect(l->s);
    l->s = NULL;
    if ((r = come_back(p, l, req)) < 0)
        return r;
    l->lost = false;
    l->lost_why[0] = '\0';
    l->stopping = false;
    return sshp_pump_start(l);
}

static const atx_provisioner_vtable ssh_vtable = {
    .version = ATX_PROVISIONER_VTABLE_VERSION,
    .create = ssh_create,
    .destroy = ssh_destroy,
    .start = ssh_start,
    .stop = ssh_stop,
    .capacity = ssh_capacity,
    .offer_count = ssh_offer_count,
    .offer = ssh_offer,
    .reserve = ssh_reserve,
    .release = ssh_release,
    .reserve_parallel = NULL,
    .reboot = ssh_reboot,
};

ATX_PLUGIN_DEFINE(ATX_PLUGIN_PROVISIONER, "ssh", ATX_VERSION_STRING,
                  "Hosts of a pool file over SSH, with host keys checked", &ssh_vtable)
