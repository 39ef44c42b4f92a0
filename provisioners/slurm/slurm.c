/*
 * slurm: each lease is a Slurm allocation of one task on one node, made and
 * driven with Slurm's own commands, so a lab's cluster lends its machines to
 * a run the way it lends them to anyone else: `salloc --no-shell` allocates,
 * `srun --jobid --overlap` runs steps in the allocation (the facts probe,
 * the agent program's upload, then the agent itself, whose standard streams
 * are the lease's byte stream as with `podman exec -i`), `scancel` gives it
 * back. `sinfo` tells the nodes: their CPUs make the capacity, and each kind
 * of node (partition, features, GRES) is an offer. A test's requirements
 * choose the kind, which becomes --partition and --constraint.
 *
 * A job cancelled by someone else, a node set down or a time limit reached
 * ends the agent's step: the lease is lost, the attempt `infra`, and the test
 * goes to another allocation.
 *
 * Every job is named atx-<host>-<machine>.<pid ns>-<pid>-<pid start>-<random>-<n>,
 * so the next start on this host cancels what a crashed run left allocated
 * without touching the jobs of runs still going.
 */
#define _GNU_SOURCE 1
#include <atx/plugin/process.h>
#include <atx/plugin/provisioner.h>

#include "command.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define CMD_TIMEOUT_NS (60 * ATX_NSEC_PER_SEC)
#define COPY_TIMEOUT_NS (600 * ATX_NSEC_PER_SEC)
#define COPY_MAX (64u << 20) /* the agent program is about 1 MiB */
#define REFRESH_NS (2 * ATX_NSEC_PER_SEC) /* how often sinfo is read again */
#define LOST_RM_NS (3 * ATX_NSEC_PER_SEC)  /* a lost lease's folder: one short try */

extern char **environ;

typedef struct slurm_state slurm_state;

/* Nodes alike for a test: one partition, features and GRES. An offer. */
typedef struct node_kind {
    char *partition;
    char *features;   /* "a,b", or "" */
    char *gres;       /* "gpu:2", or "" (what sinfo says, without sockets) */
    char *constraint; /* --constraint: its features, a&b ("" none) */
    char *gres_names; /* --gres with one of each: gpu,gpu:tesla ("" none) */
    atx_labels *labels;
    atx_labels *plain; /* the labels without the GRES ones */
    int cpus;         /* of its usable nodes, at the last look */
    int leased;       /* our allocations on it */
} node_kind;

/* What the provisioner offers: each kind without its GRES (an allocation
 * that does not hold them), and a kind with GRES also with them (one of
 * each held: `--gres`). */
typedef struct offer {
    size_t kind;
    bool gres;
} offer;

/* A lost lease's folder, removed by the next lease on its node. */
typedef struct stale_dir {
    struct stale_dir *next;
    char *node, *path;
} stale_dir;

typedef struct node {
    char *name;
    size_t kind;      /* the first kind it is of */
} node;

/* One allocation (a system's impl). */
typedef struct allocation {
    slurm_state *owner;
    char name[256];      /* the job's name */
    char jobid[32];
    bool gres;           /* it holds its kind's GRES */
    char node[128];
    char workdir[PATH_MAX];
    size_t kind;
} allocation;

struct slurm_state {
    atx_plugin_ctx *ctx;
    const char *partition;      /* borrowed from the configuration; NULL: any */
    const char *account;
    const char *workdir;        /* on the nodes: where each lease's folder is made */
    int64_t time_limit_min;     /* 0: the partition's */
    const char **salloc_options, **srun_options; /* NULL-terminated, borrowed */
    const char **unset_env;     /* SLURM_* names of this process (not SLURM_CONF) */
    int64_t slots;              /* configured; 0: the CPUs sinfo counts */
    int parallel;               /* allocations asked for at once */
    atx_labels *conf_labels;
    node_kind *kinds;
    size_t nkinds;
    offer *offers;
    size_t noffers;
    node *nodes;
    size_t nnodes;
    int capacity;
    /* Job names: atx-<host>-<machine id>.<pid ns>-<pid>-<pid start>-<random>-<n>;
     * the first here_len characters are this host's and pid namespace's. */
    char job_prefix[224];       /* up to <random>- */
    size_t here_len;
    int64_t looked_at;          /* when sinfo was last read; under mu after start */
    stale_dir *stale;           /* under mu */
    pthread_mutex_t mu;
    int leased;
    unsigned leases;            /* ids: slurm-1, slurm-2, ... across the run */
};

/* ---- commands ---- */

/* Begin a Slurm command line: without this process's own SLURM_* settings
 * (a run inside a job, an array shard say, must not pass its job's
 * geometry to the allocations it makes). */
static void av_slurm(argv_buf *a, const slurm_state *s, const char *cmd)
{
    if (s->unset_env[0]) {
        av_add(a, "env");
        for (size_t i = 0; s->unset_env[i]; i++) {
            av_add(a, "-u");
            av_add(a, s->unset_env[i]);
        }
    }
    av_add(a, cmd);
}

/* `srun` for a step in the allocation, up to the program. */
static void av_step(argv_buf *a, const allocation *al)
{
    const slurm_state *s = al->owner;

    av_slurm(a, s, "srun");
    av_addf(a, "--jobid=%s", al->jobid);
    av_add(a, "--overlap");
    av_add(a, "--nodes=1");
    av_add(a, "--ntasks=1");
    av_add(a, "--quiet");
    /* Slurm passes a step's output on by whole lines unless told not to: the
     * agent's stream is binary and its messages end anywhere. */
    av_add(a, "--unbuffered");
    for (size_t i = 0; s->srun_options[i]; i++)
        av_add(a, s->srun_options[i]);
}

/* Run a command to its end; 0 when it exited 0, else ATX_EINFRA (or the
 * run's cancel) with "slurm: WHAT: why" as the detail. */
static int run_ok(argv_buf *a, const char *input, size_t input_len, int64_t deadline_ns,
                  int cancel_fd, cmd_result *res, const char *what)
{
    char why[512];
    int r = run_cmd_input(a, input, input_len, deadline_ns, cancel_fd, res);

    if (r < 0)
        return atx_error_set(r == ATX_ECANCELLED ? r : ATX_EINFRA, "slurm: %s: %s", what,
                             atx_error_last()->message);
    if (!cmd_ok(res))
        return atx_error_set(ATX_EINFRA, "slurm: %s: %s", what, cmd_why(res, why, sizeof(why)));
    return 0;
}

/* scancel the jobs @p ids, or (n 0) our job named @p name. */
static void cancel_jobs(slurm_state *s, const char *const *ids, size_t n, const char *name)
{
    argv_buf a = { 0 };
    cmd_result res;
    char why[512];
    int r;

    if (n == 0 && !name)
        return;
    av_slurm(&a, s, "scancel");
    for (size_t i = 0; i < n; i++)
        av_add(&a, ids[i]);
    if (name) {
        av_addf(&a, "--name=%s", name);
        av_addf(&a, "--user=%ld", (long)getuid());
    }
    r = run_cmd(&a, atx_now_ns() + CMD_TIMEOUT_NS, -1, &res);
    if (r < 0 || !cmd_ok(&res))
        atx_plugin_log(s->ctx, ATX_LOG_WARNING, "cannot cancel job %s%s: %s", n ? ids[0] : name,
                       n > 1 ? " and others" : "",
                       r < 0 ? atx_error_last()->message : cmd_why(&res, why, sizeof(why)));
    cmd_result_release(&res);
    av_free(&a);
}

/* ---- configuration ---- */

/* The SLURM_* names in this process's environment, but SLURM_CONF. */
static int read_unset_env(slurm_state *s)
{
    size_t n = 0, k = 0;

    for (char **e = environ; e && *e; e++)
        n++;
    if (!(s->unset_env = calloc(n + 1, sizeof(*s->unset_env))))
        return atx_error_set(-ENOMEM, "out of memory");
    for (char **e = environ; e && *e; e++) {
        size_t len = strcspn(*e, "=");
        if (strncmp(*e, "SLURM_", 6) != 0 || (len == 10 && strncmp(*e, "SLURM_CONF", 10) == 0))
            continue;
        char *name = strndup(*e, len);
        if (!name)
            return atx_error_set(-ENOMEM, "out of memory");
        s->unset_env[k++] = name;
    }
    return 0;
}

/* What makes a pid ours, besides the host name (hosts of the same short
 * name, containers on one host): 8 digits of the machine id and the pid
 * namespace's number. */
static void where_we_are(char *buf, size_t len)
{
    char id[9] = "0", ns[64] = "", *digits;
    ssize_t n;
    int fd = open("/etc/machine-id", O_RDONLY | O_CLOEXEC);

    if (fd >= 0) {
        if ((n = read(fd, id, 8)) > 0)
            id[n] = '\0';
        close(fd);
        id[strspn(id, "0123456789abcdef")] = '\0';
    }
    if ((n = readlink("/proc/self/ns/pid", ns, sizeof(ns) - 1)) > 0)
        ns[n] = '\0';
    digits = ns + strcspn(ns, "0123456789");
    digits[strspn(digits, "0123456789")] = '\0';
    snprintf(buf, len, "%s.%s", *id ? id : "0", *digits ? digits : "0");
}

static void slurm_destroy(void *state);

static int slurm_create(atx_plugin_ctx *ctx, void **out)
{
    static const char *const keys[] = { "partition", "account",  "time_limit",
                                        "salloc_options", "srun_options", "slots",
                                        "labels", "workdir", "parallel_reserves", NULL };
    slurm_state *s;
    const char *partition = NULL, *account = NULL, *workdir = "/tmp";
    int64_t slots = 0, limit_ns = -1, parallel = 4;
    char host[64], origin[64], pid[24], pidstart[32];
    uint32_t rnd = 0;
    int r;

    if ((r = atx_plugin_config_check_keys(ctx, keys)) < 0 ||
        (r = atx_plugin_config_string(ctx, "partition", &partition)) < 0 ||
        (r = atx_plugin_config_string(ctx, "account", &account)) < 0 ||
        (r = atx_plugin_config_duration(ctx, "time_limit", &limit_ns)) < 0 ||
        (r = atx_plugin_config_string(ctx, "workdir", &workdir)) < 0 ||
        (r = atx_plugin_config_int(ctx, "slots", &slots)) < 0 ||
        (r = atx_plugin_config_int(ctx, "parallel_reserves", &parallel)) < 0)
        return r;
    if (parallel < 1 || parallel > 64)
        return atx_error_set(ATX_EINVAL, "slurm: 'parallel_reserves' must be 1 to 64, not %lld",
                             (long long)parallel);
    if (slots < 0 || slots > 4096)
        return atx_error_set(ATX_EINVAL, "slurm: 'slots' must be 1 to 4096, not %lld",
                             (long long)slots);
    if (limit_ns == 0)
        return atx_error_set(ATX_EINVAL, "slurm: 'time_limit' must be a duration such as 90m "
                                         "or 2h, not 0");
    if (workdir[0] != '/')
        return atx_error_set(ATX_EINVAL,
                             "slurm: 'workdir' must be an absolute path on the nodes, not '%s'",
                             workdir);
    if (partition && (!*partition || strpbrk(partition, " \t\n")))
        return atx_error_set(ATX_EINVAL, "slurm: 'partition' must name one or more partitions "
                                         "(a,b), not '%s'", partition);
    s = calloc(1, sizeof(*s));
    if (!s)
        return atx_error_set(-ENOMEM, "out of memory");
    s->ctx = ctx;
    s->partition = partition;
    s->account = account && *account ? account : NULL;
    s->workdir = workdir;
    s->slots = slots;
    s->parallel = (int)parallel;
    /* Slurm counts whole minutes: round up. */
    s->time_limit_min =
        limit_ns > 0 ? (limit_ns + 60 * ATX_NSEC_PER_SEC - 1) / (60 * ATX_NSEC_PER_SEC) : 0;
    pthread_mutex_init(&s->mu, NULL);
    if ((r = prov_config_labels(ctx, "slurm", &s->conf_labels)) < 0 ||
        (r = prov_config_strings(ctx, "slurm", "salloc_options", &s->salloc_options)) < 0 ||
        (r = prov_config_strings(ctx, "slurm", "srun_options", &s->srun_options)) < 0 ||
        (r = read_unset_env(s)) < 0) {
        slurm_destroy(s);
        return r;
    }
    if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        rnd = (uint32_t)atx_now_ns() ^ (uint32_t)(uintptr_t)s;
    if (gethostname(host, sizeof(host)) < 0 || !*host)
        snprintf(host, sizeof(host), "host");
    host[sizeof(host) - 1] = '\0';
    host[strcspn(host, ".")] = '\0';
    for (char *c = host; *c; c++)
        if (*c == '-')
            *c = '_'; /* '-' separates the name's parts */
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    proc_start_time("self", pidstart, sizeof(pidstart));
    where_we_are(origin, sizeof(origin));
    int here = snprintf(s->job_prefix, sizeof(s->job_prefix), "atx-%s-%s-", host, origin);
    s->here_len = (size_t)here;
    snprintf(s->job_prefix + here, sizeof(s->job_prefix) - (size_t)here, "%s-%s-%08x-", pid,
             pidstart, rnd);
    *out = s;
    return 0;
}

static void stale_free(stale_dir *d)
{
    while (d) {
        stale_dir *next = d->next;
        free(d->node);
        free(d->path);
        free(d);
        d = next;
    }
}

static void slurm_destroy(void *state)
{
    slurm_state *s = state;

    if (!s)
        return;
    for (size_t i = 0; i < s->nkinds; i++) {
        free(s->kinds[i].partition);
        free(s->kinds[i].features);
        free(s->kinds[i].gres);
        free(s->kinds[i].constraint);
        free(s->kinds[i].gres_names);
        atx_labels_free(s->kinds[i].labels);
        atx_labels_free(s->kinds[i].plain);
    }
    free(s->kinds);
    free(s->offers);
    for (size_t i = 0; i < s->nnodes; i++)
        free(s->nodes[i].name);
    free(s->nodes);
    stale_free(s->stale);
    atx_labels_free(s->conf_labels);
    free(s->salloc_options);
    free(s->srun_options);
    for (size_t i = 0; s->unset_env && s->unset_env[i]; i++)
        free((char *)s->unset_env[i]);
    free(s->unset_env);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ---- nodes ---- */

/* Whether sinfo's state word (%T) names a node that takes jobs now. */
static bool usable_state(const char *st)
{
    static const char *const ok[] = { "idle", "mixed", "allocated", "completing", NULL };

    if (strchr(st, '*') || strchr(st, '~') || strchr(st, '#') || strchr(st, '!') ||
        strchr(st, '%') || strchr(st, '$') || strchr(st, '@'))
        return false; /* not responding, powered down, powering up/down, maintenance */
    for (size_t i = 0; ok[i]; i++)
        if (strcmp(st, ok[i]) == 0)
            return true;
    return false;
}

/* The labels of a kind of node: provider, partition, its features (each a
 * label feature.NAME=yes, all in features=a,b) and GRES (gres=gpu:2, each
 * gres.NAME=COUNT), then the configured labels. */
static int kind_labels(const slurm_state *s, const char *partition, const char *features,
                       const char *gres, atx_labels **out)
{
    atx_labels *l;
    char key[256], *copy = NULL, *save = NULL;
    int r;

    if ((r = atx_labels_new(&l)) < 0)
        return r;
    if ((r = atx_labels_set(l, "provider", "slurm")) < 0 ||
        (r = atx_labels_set(l, "partition", partition)) < 0 ||
        (*features && (r = atx_labels_set(l, "features", features)) < 0) ||
        (*gres && (r = atx_labels_set(l, "gres", gres)) < 0))
        goto out;
    if (!(copy = strdup(features))) {
        r = atx_error_set(-ENOMEM, "out of memory");
        goto out;
    }
    for (char *f = strtok_r(copy, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
        snprintf(key, sizeof(key), "feature.%s", f);
        if ((r = atx_labels_set(l, key, "yes")) < 0)
            goto out;
    }
    free(copy);
    /* gpu:2,gpu:tesla:1(S:0) -> gres.gpu=2, gres.gpu:tesla=1 */
    if (!(copy = strdup(gres))) {
        r = atx_error_set(-ENOMEM, "out of memory");
        goto out;
    }
    for (char *g = strtok_r(copy, ",", &save); g; g = strtok_r(NULL, ",", &save)) {
        char *count = strrchr(g, ':');
        if (!count || count == g)
            continue;
        *count++ = '\0';
        snprintf(key, sizeof(key), "gres.%s", g);
        if ((r = atx_labels_set(l, key, count)) < 0)
            goto out;
    }
    r = atx_labels_merge(l, s->conf_labels);
out:
    free(copy);
    if (r < 0)
        atx_labels_free(l);
    else
        *out = l;
    return r;
}

/* "gpu:2(S:0,1),mps:100" -> "gpu:2,mps:100": which sockets is not a label. */
static void strip_sockets(char *gres)
{
    char *w = gres;
    int depth = 0;

    for (char *p = gres; *p; p++) {
        if (*p == '(')
            depth++;
        else if (*p == ')' && depth)
            depth--;
        else if (!depth)
            *w++ = *p;
    }
    *w = '\0';
}

static int kind_of(const slurm_state *s, const char *partition, const char *features,
                   const char *gres, size_t *out)
{
    for (size_t k = 0; k < s->nkinds; k++)
        if (strcmp(s->kinds[k].partition, partition) == 0 &&
            strcmp(s->kinds[k].features, features) == 0 && strcmp(s->kinds[k].gres, gres) == 0) {
            *out = k;
            return 0;
        }
    return ATX_ENOTFOUND;
}

static int new_kind(slurm_state *s, const char *partition, const char *features,
                    const char *gres, size_t *out)
{
    node_kind *kinds = realloc(s->kinds, (s->nkinds + 1) * sizeof(*kinds));
    atx_labels *plain;
    int r;

    if (!kinds)
        return atx_error_set(-ENOMEM, "out of memory");
    s->kinds = kinds;
    node_kind *nk = &kinds[s->nkinds];
    memset(nk, 0, sizeof(*nk));
    *out = s->nkinds++;
    nk->partition = strdup(partition);
    nk->features = strdup(features);
    nk->gres = strdup(gres);
    nk->constraint = strdup(features);
    nk->gres_names = calloc(1, strlen(gres) + 1);
    if (!nk->partition || !nk->features || !nk->gres || !nk->constraint || !nk->gres_names)
        return atx_error_set(-ENOMEM, "out of memory");
    /* a,b -> a&b: a node with every feature of the kind */
    for (char *p = nk->constraint; *p; p++)
        if (*p == ',')
            *p = '&';
    /* gpu:2,gpu:tesla:1 -> gpu,gpu:tesla: one of each */
    char *copy = strdup(gres), *save = NULL;
    size_t pos = 0;
    if (!copy)
        return atx_error_set(-ENOMEM, "out of memory");
    for (char *g = strtok_r(copy, ",", &save); g; g = strtok_r(NULL, ",", &save)) {
        char *count = strrchr(g, ':');
        if (count && count != g && strspn(count + 1, "0123456789") == strlen(count + 1))
            *count = '\0';
        pos += (size_t)sprintf(nk->gres_names + pos, "%s%s", pos ? "," : "", g);
    }
    free(copy);
    if ((r = kind_labels(s, partition, features, gres, &nk->labels)) < 0 ||
        (r = atx_labels_new(&nk->plain)) < 0)
        return r;
    plain = nk->plain;
    for (size_t i = 0; i < atx_labels_count(nk->labels); i++) {
        const char *k, *v;
        if (atx_labels_at(nk->labels, i, &k, &v) == 0 && strcmp(k, "gres") != 0 &&
            strncmp(k, "gres.", 5) != 0 && (r = atx_labels_set(plain, k, v)) < 0)
            return r;
    }
    return 0;
}

/*
 * Take one line of `sinfo -N` (node|cpus|features|partition|gres|state).
 * At start (@p cpus NULL) it makes the kinds and the nodes; later it adds
 * the CPUs of a usable node to cpus[its kind] (kinds seen only later are
 * not used: the offers were read once).
 */
static int add_node_line(slurm_state *s, char *line, int *cpus_of)
{
    char *f[6];
    size_t n = 0, k = 0;
    int r;

    for (char *p = line; n < 6; n++) {
        f[n] = p;
        char *bar = strchr(p, '|');
        if (!bar) {
            n++;
            break;
        }
        *bar = '\0';
        p = bar + 1;
    }
    if (n != 6 || !*f[0])
        return 0; /* not a line of ours */
    char *name = f[0], *partition = f[3], *state = f[5], *features = f[2], *gres = f[4];
    if (strcmp(features, "(null)") == 0)
        *features = '\0';
    if (strcmp(gres, "(null)") == 0)
        *gres = '\0';
    char *end;
    long cpus = strtol(f[1], &end, 10);
    partition[strcspn(partition, "*")] = '\0'; /* the default partition's mark */
    strip_sockets(gres);
    if (*end || cpus < 1 || cpus > 1000000 || !usable_state(state))
        return 0;

    bool known = kind_of(s, partition, features, gres, &k) == 0;
    if (cpus_of) {
        if (known)
            cpus_of[k] += (int)cpus;
        return 0;
    }
    if (!known && (r = new_kind(s, partition, features, gres, &k)) < 0)
        return r;
    s->kinds[k].cpus += (int)cpus;

    for (size_t i = 0; i < s->nnodes; i++)
        if (strcmp(s->nodes[i].name, name) == 0)
            return 0; /* in a second partition: its CPUs count once */
    node *nodes = realloc(s->nodes, (s->nnodes + 1) * sizeof(*nodes));
    if (!nodes)
        return atx_error_set(-ENOMEM, "out of memory");
    s->nodes = nodes;
    if (!(nodes[s->nnodes].name = strdup(name)))
        return atx_error_set(-ENOMEM, "out of memory");
    nodes[s->nnodes++].kind = k;
    s->capacity += (int)cpus;
    return 0;
}

/* Run sinfo; each line to add_node_line(). */
static int read_nodes(slurm_state *s, int *cpus_of)
{
    argv_buf a = { 0 };
    cmd_result res;
    int r;

    av_slurm(&a, s, "sinfo");
    av_add(&a, "--noheader");
    av_add(&a, "--Node");
    av_add(&a, "--format=%N|%c|%f|%P|%G|%T");
    if (s->partition)
        av_addf(&a, "--partition=%s", s->partition);
    r = run_ok(&a, NULL, 0, atx_now_ns() + CMD_TIMEOUT_NS, -1, &res, "sinfo failed");
    av_free(&a);
    if (r == 0) {
        for (char *save = NULL, *line = strtok_r(res.out, "\n", &save); line && r == 0;
             line = strtok_r(NULL, "\n", &save))
            r = add_node_line(s, line, cpus_of);
    }
    cmd_result_release(&res);
    if (r == 0 && !cpus_of && s->nnodes == 0)
        r = atx_error_set(ATX_EINFRA, "slurm: no node%s%s takes jobs now (sinfo lists none "
                                      "idle, mixed or allocated)",
                          s->partition ? " of partition " : "", s->partition ? s->partition : "");
    return r;
}

/* Before a lease, at most every few seconds: which kinds have nodes that
 * take jobs now (a node set down, drained or back). From the provisioner's
 * thread; the counts change under mu. */
static void refresh_nodes(slurm_state *s)
{
    int *cpus_of;

    /* One reserve looks for all those under way. */
    pthread_mutex_lock(&s->mu);
    int64_t now = atx_now_ns();
    bool look = now - s->looked_at >= REFRESH_NS;
    if (look)
        s->looked_at = now;
    pthread_mutex_unlock(&s->mu);
    if (!look || !(cpus_of = calloc(s->nkinds, sizeof(int))))
        return;
    if (read_nodes(s, cpus_of) == 0) {
        pthread_mutex_lock(&s->mu);
        for (size_t k = 0; k < s->nkinds; k++)
            s->kinds[k].cpus = cpus_of[k];
        pthread_mutex_unlock(&s->mu);
    } else {
        atx_plugin_log(s->ctx, ATX_LOG_WARNING, "cannot read the nodes' states: %s",
                       atx_error_last()->message);
    }
    free(cpus_of);
}

/*
 * Cancel our jobs (squeue, "id|name" a line) whose names start with the
 * first @p len characters of job_prefix: with @p only_dead, those of runs
 * that are gone (their pid is gone or names another process now).
 */
static void cancel_ours(slurm_state *s, size_t len, bool only_dead, const char *what)
{
    argv_buf a = { 0 };
    cmd_result res;
    const char **ids;
    size_t n = 0;
    char why[512];
    int r;

    av_slurm(&a, s, "squeue");
    av_add(&a, "--noheader");
    av_addf(&a, "--user=%ld", (long)getuid());
    av_add(&a, "--format=%i|%j");
    r = run_cmd(&a, atx_now_ns() + CMD_TIMEOUT_NS, -1, &res);
    av_free(&a);
    if (r < 0 || !cmd_ok(&res)) {
        atx_plugin_log(s->ctx, ATX_LOG_WARNING, "cannot list %s: %s", what,
                       r < 0 ? atx_error_last()->message : cmd_why(&res, why, sizeof(why)));
        cmd_result_release(&res);
        return;
    }
    ids = calloc(res.out_len / 2 + 1, sizeof(*ids));
    for (char *save = NULL, *line = strtok_r(res.out, "\n", &save); ids && line;
         line = strtok_r(NULL, "\n", &save)) {
        char *bar = strchr(line, '|'), pid[24], start[32], now[32];
        if (!bar || strncmp(bar + 1, s->job_prefix, len) != 0)
            continue;
        *bar = '\0';
        if (only_dead) {
            if (sscanf(bar + 1 + len, "%23[0-9]-%31[0-9]-", pid, start) != 2)
                continue;
            proc_start_time(pid, now, sizeof(now));
            if (strcmp(now, start) == 0)
                continue; /* its run goes on */
        }
        ids[n++] = line;
    }
    if (n && only_dead)
        atx_plugin_log(s->ctx, ATX_LOG_INFO, "cancelling %zu job%s earlier runs left behind", n,
                       n > 1 ? "s" : "");
    cancel_jobs(s, ids, n, NULL);
    free(ids);
    cmd_result_release(&res);
}

static int slurm_start(void *state)
{
    slurm_state *s = state;
    argv_buf a = { 0 };
    cmd_result res;
    int r;

    av_slurm(&a, s, "sinfo");
    av_add(&a, "--version");
    r = run_ok(&a, NULL, 0, atx_now_ns() + CMD_TIMEOUT_NS, -1, &res,
               "cannot run sinfo (are Slurm's commands installed?)");
    av_free(&a);
    if (r == 0)
        atx_plugin_log(s->ctx, ATX_LOG_DEBUG, "%.*s; jobs named %sN",
                       (int)strcspn(res.out, "\n"), res.out, s->job_prefix);
    cmd_result_release(&res);
    if (r < 0 || (r = read_nodes(s, NULL)) < 0)
        return r;
    s->looked_at = atx_now_ns();
    if (!(s->offers = calloc(2 * s->nkinds, sizeof(*s->offers))))
        return atx_error_set(-ENOMEM, "out of memory");
    for (size_t k = 0; k < s->nkinds; k++) {
        s->offers[s->noffers++] = (offer){ k, false };
        if (*s->kinds[k].gres)
            s->offers[s->noffers++] = (offer){ k, true };
    }
    if (s->slots)
        s->capacity = (int)s->slots;
    /* The jobs of earlier runs here that are gone. */
    cancel_ours(s, s->here_len, true, "the jobs of earlier runs");
    return 0;
}

static int slurm_stop(void *state)
{
    slurm_state *s = state;

    pthread_mutex_lock(&s->mu);
    for (stale_dir *d = s->stale; d; d = d->next)
        atx_plugin_log(s->ctx, ATX_LOG_INFO, "left %s on node %s (its job ended first)", d->path,
                       d->node);
    pthread_mutex_unlock(&s->mu);
    /* Whatever is still ours: leases not released, a reserve cut short. */
    cancel_ours(s, strlen(s->job_prefix), false, "the run's jobs");
    return 0;
}

static int slurm_capacity(void *state)
{
    return ((slurm_state *)state)->capacity;
}

static size_t slurm_offer_count(void *state)
{
    return ((slurm_state *)state)->noffers;
}

static const atx_labels *slurm_offer(void *state, size_t i)
{
    slurm_state *s = state;
    if (i >= s->noffers)
        return NULL;
    const node_kind *nk = &s->kinds[s->offers[i].kind];
    return s->offers[i].gres ? nk->labels : nk->plain;
}

/* ---- the system operations ---- */

static int slurm_spawn(void *impl, const atx_spawn_opts *opts, atx_proc **out)
{
    allocation *al = impl;
    argv_buf a = { 0 };

    av_step(&a, al);
    av_addf(&a, "--chdir=%s", opts->cwd ? opts->cwd : al->workdir);
    /* The step inherits srun's environment: the process gets its own. */
    if ((opts->flags & ATX_SPAWN_CLEAR_ENV) || (opts->env && opts->env[0])) {
        av_add(&a, "env");
        if (opts->flags & ATX_SPAWN_CLEAR_ENV)
            av_add(&a, "-i");
        for (size_t i = 0; opts->env && opts->env[i]; i++)
            av_add(&a, opts->env[i]);
    }
    return spawn_through(&a, opts, out);
}

/* Read a regular file here, at most COPY_MAX bytes, not following a link. */
static int read_file(const char *path, char **out, size_t *len)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    char *buf;

    if (fd < 0)
        return atx_error_set(ATX_EIO, "slurm: cannot open %s: %s", path, strerror(errno));
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)COPY_MAX) {
        close(fd);
        return atx_error_set(ATX_EIO, "slurm: %s is not a regular file of at most 64 MiB", path);
    }
    if (!(buf = malloc((size_t)st.st_size + 1))) {
        close(fd);
        return atx_error_set(-ENOMEM, "out of memory");
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            free(buf);
            close(fd);
            return atx_error_set(ATX_EIO, "slurm: cannot read %s: %s", path, strerror(e));
        }
        got += (size_t)n;
    }
    close(fd);
    *out = buf;
    *len = got;
    return 0;
}

/* The agent program into the allocation's folder: one step that writes its
 * stdin to a file beside the target and renames it into place. */
static int slurm_copy_in(void *impl, const char *local, const char *remote)
{
    allocation *al = impl;
    argv_buf a = { 0 };
    cmd_result res;
    char *data = NULL, what[PATH_MAX + 200];
    size_t len = 0;
    int r;

    if ((r = read_file(local, &data, &len)) < 0)
        return r;
    av_step(&a, al);
    av_addf(&a, "--chdir=%s", al->workdir);
    av_add(&a, "sh");
    av_add(&a, "-c");
    av_add(&a, "cat > \"$1.part\" && chmod 0755 \"$1.part\" && mv -f \"$1.part\" \"$1\"");
    av_add(&a, "sh");
    av_add(&a, remote);
    snprintf(what, sizeof(what), "cannot copy %s to %s in job %s", local, remote, al->jobid);
    r = run_ok(&a, data, len, atx_now_ns() + COPY_TIMEOUT_NS, -1, &res, what);
    if (r < 0)
        r = atx_error_set(ATX_EIO, "%s", atx_error_last()->message);
    cmd_result_release(&res);
    av_free(&a);
    free(data);
    return r;
}

static const atx_system_ops slurm_system_ops = {
    .version = ATX_SYSTEM_OPS_VERSION,
    .spawn = slurm_spawn,
    .copy_in = slurm_copy_in,
    .copy_out = NULL,
    .alive = NULL,
    .flags = 0, /* a node need not see this host's files */
};

/* ---- leases ---- */

/* The offer to ask for: of the least loaded kind with nodes taking jobs
 * that a waiting test wants; with its GRES only when no waiting test could
 * do without them (want() says whether any test is served, and a kind with
 * its GRES serves every test the kind without them does: GRES are taken
 * only for the tests that need them, once the others are placed). Under mu. */
static int pick_offer(slurm_state *s, const bool *wanted, offer *out)
{
    bool found = false, any = false;
    double best = 0;
    size_t kind = 0;

    for (size_t i = 0; i < s->noffers; i++) {
        const node_kind *nk = &s->kinds[s->offers[i].kind];
        any |= wanted[i];
        if (!wanted[i] || nk->cpus <= 0)
            continue;
        double load = (double)nk->leased / nk->cpus;
        if (!found || load < best) {
            found = true;
            best = load;
            kind = s->offers[i].kind;
        }
    }
    if (!found)
        return any ? atx_error_set(ATX_EINFRA, "slurm: no node of the kinds the waiting tests "
                                               "need takes jobs now (down, drained or not "
                                               "responding)")
                   : ATX_ENOTFOUND;
    bool plain = false, gres = false;
    for (size_t i = 0; i < s->noffers; i++)
        if (wanted[i] && s->offers[i].kind == kind)
            *(s->offers[i].gres ? &gres : &plain) = true;
    out->kind = kind;
    out->gres = gres && !plain;
    return 0;
}

/* The job id of our job named al->name. */
static int job_by_name(slurm_state *s, allocation *al, const atx_reserve_req *req)
{
    argv_buf a = { 0 };
    cmd_result res;
    unsigned long long id;
    int r;

    av_slurm(&a, s, "squeue");
    av_add(&a, "--noheader");
    av_addf(&a, "--name=%s", al->name);
    av_addf(&a, "--user=%ld", (long)getuid());
    av_add(&a, "--format=%i");
    r = run_ok(&a, NULL, 0, req->deadline_ns, req->cancel_fd, &res,
               "cannot find the job salloc made");
    av_free(&a);
    if (r == 0 && sscanf(res.out, "%llu", &id) == 1)
        snprintf(al->jobid, sizeof(al->jobid), "%llu", id);
    else if (r == 0)
        r = atx_error_set(ATX_EINFRA, "slurm: salloc made no job named %s", al->name);
    cmd_result_release(&res);
    return r;
}

/* `salloc --no-shell`: an allocation that lasts until we cancel it. */
static int allocate(slurm_state *s, allocation *al, const node_kind *nk,
                    const atx_reserve_req *req)
{
    argv_buf a = { 0 };
    cmd_result res;
    char what[300];
    int r;

    av_slurm(&a, s, "salloc");
    av_add(&a, "--no-shell");
    av_addf(&a, "--job-name=%s", al->name);
    av_add(&a, "--nodes=1");
    av_add(&a, "--ntasks=1");
    av_addf(&a, "--partition=%s", nk->partition);
    if (*nk->constraint)
        av_addf(&a, "--constraint=%s", nk->constraint);
    if (al->gres && *nk->gres_names)
        av_addf(&a, "--gres=%s", nk->gres_names);
    if (s->account)
        av_addf(&a, "--account=%s", s->account);
    if (s->time_limit_min)
        av_addf(&a, "--time=%lld", (long long)s->time_limit_min);
    for (size_t i = 0; s->salloc_options[i]; i++)
        av_add(&a, s->salloc_options[i]);
    snprintf(what, sizeof(what), "cannot allocate a node of partition %s%s%s", nk->partition,
             *nk->features ? " with features " : "", nk->features);
    r = run_ok(&a, NULL, 0, req->deadline_ns, req->cancel_fd, &res, what);
    av_free(&a);
    if (r == 0) {
        /* "salloc: Granted job allocation 42" on stderr */
        const char *g = strstr(res.err, "Granted job allocation ");
        unsigned long long id;
        if (g && sscanf(g + 23, "%llu", &id) == 1)
            snprintf(al->jobid, sizeof(al->jobid), "%llu", id);
        else
            r = job_by_name(s, al, req); /* salloc told to be quiet, say */
    }
    cmd_result_release(&res);
    return r;
}

/* The allocation's node, and a folder of its own there with the facts. */
static int setup_allocation(slurm_state *s, allocation *al, const atx_reserve_req *req,
                            atx_labels **facts)
{
    argv_buf a = { 0 };
    cmd_result res;
    char what[200], script[1024];
    int r;

    av_slurm(&a, s, "squeue");
    av_add(&a, "--noheader");
    av_addf(&a, "--jobs=%s", al->jobid);
    av_add(&a, "--format=%N");
    snprintf(what, sizeof(what), "cannot read the node of job %s", al->jobid);
    r = run_ok(&a, NULL, 0, req->deadline_ns, req->cancel_fd, &res, what);
    av_free(&a);
    if (r == 0) {
        size_t n = strcspn(res.out, "\n");
        if (n == 0 || n >= sizeof(al->node))
            r = atx_error_set(ATX_EINFRA, "slurm: job %s has no node", al->jobid);
        else
            snprintf(al->node, sizeof(al->node), "%.*s", (int)n, res.out);
    }
    cmd_result_release(&res);
    if (r < 0)
        return r;

    /* The folders of lost leases on this node go first. */
    stale_dir *gone = NULL, **pp;
    pthread_mutex_lock(&s->mu);
    for (pp = &s->stale; *pp;) {
        stale_dir *d = *pp;
        if (strcmp(d->node, al->node) == 0) {
            *pp = d->next;
            d->next = gone;
            gone = d;
        } else {
            pp = &d->next;
        }
    }
    pthread_mutex_unlock(&s->mu);

    memset(&a, 0, sizeof(a));
    snprintf(script, sizeof(script),
             "w=$1 n=$2; shift 2; rm -rf -- \"$@\"; mkdir -p \"$w\" &&"
             " d=$(mktemp -d \"$w/$n.XXXXXX\") && printf '%%s\\n' \"$d\" ||"
             " exit 1; { %s; } 2>/dev/null; exit 0",
             prov_probe_cmd);
    av_step(&a, al);
    av_add(&a, "sh");
    av_add(&a, "-c");
    av_add(&a, script);
    av_add(&a, "sh");
    av_add(&a, s->workdir);
    av_add(&a, al->name);
    for (stale_dir *d = gone; d; d = d->next)
        av_add(&a, d->path);
    snprintf(what, sizeof(what), "cannot prepare job %s on %s", al->jobid, al->node);
    r = run_ok(&a, NULL, 0, req->deadline_ns, req->cancel_fd, &res, what);
    av_free(&a);
    if (r < 0 && gone) {
        /* Not removed: the next lease there tries again. */
        stale_dir *last = gone;
        while (last->next)
            last = last->next;
        pthread_mutex_lock(&s->mu);
        last->next = s->stale;
        s->stale = gone;
        pthread_mutex_unlock(&s->mu);
        gone = NULL;
    }
    stale_free(gone);
    if (r == 0) {
        char *nl = strchr(res.out, '\n');
        if (res.out[0] != '/' || !nl || (size_t)(nl - res.out) >= sizeof(al->workdir))
            r = atx_error_set(ATX_EINFRA, "slurm: job %s on %s made no work folder", al->jobid,
                              al->node);
        else {
            snprintf(al->workdir, sizeof(al->workdir), "%.*s", (int)(nl - res.out), res.out);
            if (prov_parse_facts(nl + 1, facts) < 0)
                *facts = NULL; /* the node's Slurm labels are enough to go on */
        }
    }
    cmd_result_release(&res);
    return r;
}

/* facts, then the granted node's labels (its GRES only when the allocation
 * holds them), node and job, then the configured labels. */
static int lease_labels(const slurm_state *s, const allocation *al, const atx_labels *facts,
                        atx_labels **out)
{
    atx_labels *l;
    int r;

    if ((r = atx_labels_new(&l)) < 0)
        return r;
    /* The node Slurm granted (it may have more than was asked for). */
    size_t kind = al->kind;
    for (size_t i = 0; i < s->nnodes; i++)
        if (strcmp(s->nodes[i].name, al->node) == 0)
            kind = s->nodes[i].kind;
    if ((facts && (r = atx_labels_merge(l, facts)) < 0) ||
        (r = atx_labels_merge(l, s->kinds[kind].plain)) < 0)
        goto fail;
    /* GRES only when it holds them: one of each (--gres=NAME). */
    for (size_t i = 0; al->gres && i < atx_labels_count(s->kinds[al->kind].labels); i++) {
        const char *k, *v;
        if (atx_labels_at(s->kinds[al->kind].labels, i, &k, &v) == 0 &&
            strncmp(k, "gres.", 5) == 0 && (r = atx_labels_set(l, k, "1")) < 0)
            goto fail;
    }
    if (al->gres && (r = atx_labels_set(l, "gres", s->kinds[al->kind].gres)) < 0)
        goto fail;
    if ((r = atx_labels_set(l, "node", al->node)) < 0 ||
        (r = atx_labels_set(l, "slurm_job", al->jobid)) < 0 ||
        (r = atx_labels_merge(l, s->conf_labels)) < 0)
        goto fail;
    *out = l;
    return 0;
fail:
    atx_labels_free(l);
    return r;
}

/* The lease's folder on the node, with a step of its own while the job
 * lives. */
static bool remove_workdir(allocation *al, int64_t timeout_ns)
{
    argv_buf a = { 0 };
    cmd_result res;
    char why[512];
    bool ok;
    int r;

    if (!al->workdir[0])
        return true;
    av_step(&a, al);
    av_add(&a, "rm");
    av_add(&a, "-rf");
    av_add(&a, "--");
    av_add(&a, al->workdir);
    ok = (r = run_cmd(&a, atx_now_ns() + timeout_ns, -1, &res)) == 0 && cmd_ok(&res);
    if (!ok)
        atx_plugin_log(al->owner->ctx, ATX_LOG_DEBUG, "cannot remove %s on %s: %s",
                       al->workdir, al->node,
                       r < 0 ? atx_error_last()->message : cmd_why(&res, why, sizeof(why)));
    cmd_result_release(&res);
    av_free(&a);
    return ok;
}

static int slurm_reserve(void *state, const atx_reserve_req *req, atx_system **out)
{
    slurm_state *s = state;
    allocation *al = NULL;
    atx_labels *facts = NULL, *labels = NULL;
    size_t kind = 0;
    char id[64];
    unsigned n;
    int r;

    if (!s->nkinds)
        return atx_error_set(ATX_ESTATE, "slurm: reserve before start");
    refresh_nodes(s);
    /* Asked outside our lock: want() takes the run's. */
    bool *wanted = calloc(s->noffers, sizeof(*wanted));
    offer pick = { 0, false };
    if (!wanted)
        return atx_error_set(-ENOMEM, "out of memory");
    for (size_t i = 0; i < s->noffers; i++)
        wanted[i] = !req->want || req->want(req->userdata, slurm_offer(s, i));
    pthread_mutex_lock(&s->mu);
    if (s->leased >= s->capacity) {
        pthread_mutex_unlock(&s->mu);
        free(wanted);
        return atx_error_set(ATX_EINFRA, "slurm: all %d slots are leased", s->capacity);
    }
    r = pick_offer(s, wanted, &pick);
    free(wanted);
    if (r < 0) {
        pthread_mutex_unlock(&s->mu);
        return r;
    }
    kind = pick.kind;
    s->leased++;
    s->kinds[kind].leased++;
    n = ++s->leases;
    pthread_mutex_unlock(&s->mu);

    if (!(al = calloc(1, sizeof(*al)))) {
        r = atx_error_set(-ENOMEM, "out of memory");
        goto fail;
    }
    al->owner = s;
    al->kind = kind;
    al->gres = pick.gres;
    snprintf(al->name, sizeof(al->name), "%s%u", s->job_prefix, n);
    snprintf(id, sizeof(id), "slurm-%u", n);
    if ((r = allocate(s, al, &s->kinds[kind], req)) < 0 ||
        (r = setup_allocation(s, al, req, &facts)) < 0 ||
        (r = lease_labels(s, al, facts, &labels)) < 0 ||
        (r = atx_system_new(&slurm_system_ops, al, id, labels, al->workdir, out)) < 0)
        goto fail;
    atx_labels_free(facts);
    atx_labels_free(labels);
    atx_plugin_log(s->ctx, ATX_LOG_DEBUG, "%s is job %s on node %s", id, al->jobid, al->node);
    return 0;
fail:
    atx_labels_free(facts);
    atx_labels_free(labels);
    if (al) {
        /* Keep the detail: the cancel may overwrite it. A salloc cut short
         * may have been granted all the same: cancel by name. */
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s", atx_error_last()->message);
        const char *jid = al->jobid;
        if (*jid)
            remove_workdir(al, CMD_TIMEOUT_NS);
        cancel_jobs(s, &jid, *jid ? 1 : 0, *jid ? NULL : al->name);
        atx_error_set(r, "%s", msg);
    }
    free(al);
    pthread_mutex_lock(&s->mu);
    s->leased--;
    s->kinds[kind].leased--;
    pthread_mutex_unlock(&s->mu);
    return r;
}

static void slurm_release(void *state, atx_system *sys, unsigned flags)
{
    slurm_state *s = state;
    allocation *al = atx_system_impl(sys);
    const char *jid = al->jobid;

    /* A lost lease's folder gets one short try: its job may be gone (the
     * step then fails at once) or its node frozen. */
    if (!remove_workdir(al, flags & ATX_RELEASE_LOST ? LOST_RM_NS : CMD_TIMEOUT_NS)) {
        /* Its job is gone (cancelled, the node down): the next lease there
         * removes it. */
        stale_dir *d = calloc(1, sizeof(*d));
        if (d && (d->node = strdup(al->node)) && (d->path = strdup(al->workdir))) {
            pthread_mutex_lock(&s->mu);
            d->next = s->stale;
            s->stale = d;
            pthread_mutex_unlock(&s->mu);
        } else {
            stale_free(d);
        }
    }
    cancel_jobs(s, &jid, 1, NULL);
    atx_system_free(sys);
    pthread_mutex_lock(&s->mu);
    s->leased--;
    s->kinds[al->kind].leased--;
    pthread_mutex_unlock(&s->mu);
    free(al);
}

/* Each allocation waits on the scheduler: several asked for at once. */
static int slurm_reserve_parallel(void *state)
{
    return ((slurm_state *)state)->parallel;
}

static const atx_provisioner_vtable slurm_vtable = {
    .version = ATX_PROVISIONER_VTABLE_VERSION,
    .create = slurm_create,
    .destroy = slurm_destroy,
    .start = slurm_start,
    .stop = slurm_stop,
    .capacity = slurm_capacity,
    .offer_count = slurm_offer_count,
    .offer = slurm_offer,
    .reserve = slurm_reserve,
    .release = slurm_release,
    .reserve_parallel = slurm_reserve_parallel,
};

ATX_PLUGIN_DEFINE(ATX_PLUGIN_PROVISIONER, "slurm", ATX_VERSION_STRING,
                  "A Slurm allocation of one task per lease (salloc, srun, scancel)",
                  &slurm_vtable)
