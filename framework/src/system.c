/*
 * System and process handles. A system's processes, copies and pings go
 * through the agent its lease started (agent.c), or to the provisioner's
 * implementation on a system that contains its processes itself.
 */
#include "internal.h"
#include "agent.h"

#include <dlfcn.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct atx_system {
    const atx_system_ops *ops;
    void *impl;
    char *id;
    atx_labels *labels;
    char *workdir;
    int fresh;
    int64_t phase_deadline_ns;  /* bounds every spawn while set (0: none) */
    agent_conn *agent;          /* the lease's agent, or NULL */
    char agent_path[PATH_MAX];  /* where it runs from on the system */
    agent_liveness lv;          /* how the agent is watched (again after a reboot) */
    atx_reboot_fn reboot;       /* its provisioner's, or NULL */
    void *reboot_state;
    char *gone;                 /* why it is lost for good (no agent to ask) */
};

struct atx_proc {
    const atx_proc_ops *ops;
    void *impl;
    int in_fd, out_fd, err_fd, ctl_fd, wait_fd;
};

int atx_system_new(const atx_system_ops *ops, void *impl, const char *id,
                   const atx_labels *labels, const char *workdir, atx_system **out)
{
    atx_system *s;

    if (!ops || !ops->spawn || !id || !*id || !out)
        return atx_error_set(ATX_EINVAL, "a system needs operations with spawn and an id");
    s = calloc(1, sizeof(*s));
    if (!s)
        return atx_error_oom();
    s->ops = ops;
    s->impl = impl;
    s->fresh = 1;
    if (atx_strdup_into(&s->id, id) < 0 || atx_strdup_into(&s->workdir, workdir) < 0 ||
        atx_labels_dup(labels, &s->labels) < 0) {
        atx_system_free(s);
        return ATX_ENOMEM;
    }
    *out = s;
    return 0;
}

void atx_system_free(atx_system *s)
{
    if (!s)
        return;
    atx_system_stop_agent(s, false);
    free(s->gone);
    free(s->id);
    free(s->workdir);
    atx_labels_free(s->labels);
    free(s);
}

void *atx_system_impl(const atx_system *s) { return s ? s->impl : NULL; }
const char *atx_system_id(const atx_system *s) { return s ? s->id : NULL; }
const atx_labels *atx_system_labels(const atx_system *s) { return s ? s->labels : NULL; }
const char *atx_system_workdir(const atx_system *s) { return s ? s->workdir : NULL; }
int atx_system_fresh(const atx_system *s) { return s ? s->fresh : 0; }

int atx_system_shares_host(const atx_system *s)
{
    return s && s->ops->version >= 2 && (s->ops->flags & ATX_SYSTEM_HOST_FS);
}

void atx_system_set_fresh(atx_system *s, int fresh)
{
    if (s)
        s->fresh = fresh ? 1 : 0;
}

/* A path on the system: relative ones are relative to its work directory. */
static const char *on_system(const atx_system *s, const char *path, char *buf, size_t len)
{
    if (!path)
        return s->workdir;
    if (path[0] == '/' || !s->workdir)
        return path;
    snprintf(buf, len, "%s/%s", s->workdir, path);
    return buf;
}

int atx_system_spawn(atx_system *s, const atx_spawn_opts *opts, atx_proc **out)
{
    char cwd[PATH_MAX * 2];

    if (!s || !opts || !out || !opts->argv || !opts->argv[0])
        return atx_error_set(ATX_EINVAL, "spawn needs a system, options and argv");
    if (opts->version < 1)
        return atx_error_set(ATX_EINVAL, "spawn options have no version");
    atx_spawn_opts o = *opts;
    if (s->phase_deadline_ns && (!o.deadline_ns || o.deadline_ns > s->phase_deadline_ns)) {
        /* The orchestrator bounds this phase (prepare, release). */
        if (atx_now_ns() >= s->phase_deadline_ns)
            return atx_error_set(ATX_ETIMEDOUT, "system %s: the phase's time is up", s->id);
        o.deadline_ns = s->phase_deadline_ns;
    }
    if (s->gone)
        return atx_error_set(ATX_ELOST, "system %s %s", s->id, s->gone);
    if (s->agent) {
        o.cwd = on_system(s, o.cwd, cwd, sizeof(cwd));
        return agent_conn_spawn(s->agent, &o, out);
    }
    return s->ops->spawn(s->impl, &o, out);
}

int atx_system_add_id_suffix(atx_system *s, const char *suffix)
{
    char *id;
    if (asprintf(&id, "%s%s", s->id, suffix) < 0)
        return atx_error_oom();
    free(s->id);
    s->id = id;
    return 0;
}

void atx_system_set_phase_deadline(atx_system *s, int64_t deadline_ns)
{
    s->phase_deadline_ns = deadline_ns;
}

int atx_system_copy_in(atx_system *s, const char *local, const char *remote)
{
    char path[PATH_MAX * 2];

    if (!s || !local || !remote)
        return atx_error_set(ATX_EINVAL, "copy needs a system and two paths");
    if (s->gone)
        return atx_error_set(ATX_ELOST, "system %s %s", s->id, s->gone);
    if (s->agent)
        return agent_conn_copy_in(s->agent, local, on_system(s, remote, path, sizeof(path)));
    if (!s->ops->copy_in)
        return atx_error_set(ATX_EUNSUPPORTED, "system %s cannot copy files in", s->id);
    return s->ops->copy_in(s->impl, local, remote);
}

int atx_system_copy_out(atx_system *s, const char *remote, const char *local)
{
    return atx_system_copy_out_max(s, remote, local, 0);
}

int atx_system_copy_out_max(atx_system *s, const char *remote, const char *local,
                            uint64_t max_file_bytes)
{
    atx_copy_bounds b = ATX_COPY_BOUNDS_INIT;
    b.max_file_bytes = max_file_bytes;
    return atx_system_copy_out_bounded(s, remote, local, &b);
}

int atx_system_copy_out_bounded(atx_system *s, const char *remote, const char *local,
                                const atx_copy_bounds *bounds)
{
    char path[PATH_MAX * 2];
    atx_copy_bounds b = ATX_COPY_BOUNDS_INIT;
    uint64_t max_file_bytes;

    if (!s || !local || !remote)
        return atx_error_set(ATX_EINVAL, "copy needs a system and two paths");
    if (bounds && bounds->version >= 1)
        b = *bounds;
    max_file_bytes = b.max_file_bytes;
    if (s->gone)
        return atx_error_set(ATX_ELOST, "system %s %s", s->id, s->gone);
    if (s->agent)
        return agent_conn_copy_out(s->agent, on_system(s, remote, path, sizeof(path)), local, &b);
    if (s->ops->version >= 3 && s->ops->copy_out_bounded)
        return s->ops->copy_out_bounded(s->impl, remote, local, &b);
    if (!s->ops->copy_out)
        return atx_error_set(ATX_EUNSUPPORTED, "system %s cannot copy files out", s->id);
    int r = s->ops->copy_out(s->impl, remote, local);
    struct stat st;
    /* A provisioner's own copy knows no bound: a file past it goes again
     * (copies on this host keep holes, so it cost no disk meanwhile). */
    if (r == 0 && max_file_bytes && lstat(local, &st) == 0 && S_ISREG(st.st_mode) &&
        (uint64_t)st.st_size > max_file_bytes) {
        unlink(local);
        return atx_error_set(-EFBIG, "%s:%s is %llu bytes: more than the %llu taken", s->id,
                             remote, (unsigned long long)st.st_size,
                             (unsigned long long)max_file_bytes);
    }
    return r;
}

int atx_system_alive(atx_system *s, int64_t timeout_ns)
{
    if (!s)
        return ATX_EINVAL;
    if (s->gone)
        return atx_error_set(ATX_ELOST, "system %s %s", s->id, s->gone);
    if (s->agent)
        return agent_conn_ping(s->agent, timeout_ns);
    return s->ops->alive ? s->ops->alive(s->impl, timeout_ns) : 0;
}

/* ---- the lease's agent ---- */

bool atx_system_contained(const atx_system *s)
{
    return s->ops->version >= 2 && (s->ops->flags & ATX_SYSTEM_CONTAINED);
}

/* The agent program next to libatx: <libdir>/atx/atx-agent. */
static int agent_program(char *buf, size_t len)
{
    Dl_info info;
    struct stat st;
    const char *env = getenv("ATX_AGENT_PATH");

    buf[0] = '\0';
    if (env && *env) {
        snprintf(buf, len, "%s", env);
    } else if (dladdr((void *)agent_program, &info) && info.dli_fname) {
        const char *slash = strrchr(info.dli_fname, '/');
        int n = slash ? (int)(slash - info.dli_fname) : 0;
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%.*s%satx/atx-agent", n, info.dli_fname, n ? "/" : "");
        char *real = realpath(path, NULL);
        snprintf(buf, len, "%s", real ? real : path);
        free(real);
    }
    if (!*buf || stat(buf, &st) < 0 || !S_ISREG(st.st_mode) || !(st.st_mode & 0111))
        return atx_error_set(ATX_ENOTFOUND, "the agent program %s is missing or not executable",
                             *buf ? buf : "atx-agent");
    return 0;
}

int atx_system_attach_agent(atx_system *s, const agent_liveness *lv, int64_t deadline_ns)
{
    char local[PATH_MAX];
    atx_spawn_opts o = ATX_SPAWN_OPTS_INIT;
    atx_proc *boot;
    int r;

    if (s->agent)
        return 0;
    s->lv = *lv;
    if ((r = agent_program(local, sizeof(local))) < 0)
        return r;
    if (atx_system_shares_host(s)) {
        snprintf(s->agent_path, sizeof(s->agent_path), "%s", local);
    } else {
        if (!s->workdir)
            return atx_error_set(ATX_EINFRA, "system %s has no work directory for the agent",
                                 s->id);
        if (!s->ops->copy_in)
            return atx_error_set(ATX_EINFRA, "system %s cannot take files: no agent there",
                                 s->id);
        snprintf(s->agent_path, sizeof(s->agent_path), "%s/atx-agent", s->workdir);
        if ((r = s->ops->copy_in(s->impl, local, s->agent_path)) < 0)
            return atx_error_set(ATX_EINFRA, "cannot copy the agent to %s: %s", s->id,
                                 atx_error_last()->message);
    }
    const char *argv[] = { s->agent_path, NULL };
    o.argv = argv;
    o.cwd = s->workdir;
    o.flags = ATX_SPAWN_STDIN_PIPE | ATX_SPAWN_STDOUT_PIPE;
    if ((r = s->ops->spawn(s->impl, &o, &boot)) < 0)
        return atx_error_set(ATX_EINFRA, "cannot start the agent on %s: %s", s->id,
                             atx_error_last()->message);
    return agent_conn_start(boot, s->id, lv, deadline_ns, &s->agent);
}

bool atx_system_lost_why(atx_system *s, char *why, size_t len)
{
    if (s && s->gone) {
        if (why)
            snprintf(why, len, "%s", s->gone);
        return true;
    }
    return s && s->agent && agent_conn_lost(s->agent, why, len);
}

void atx_system_set_reboot(atx_system *s, atx_reboot_fn fn, void *state)
{
    s->reboot = fn;
    s->reboot_state = state;
}

int atx_system_reboot(atx_system *s, const atx_reboot_req *req)
{
    if (!s || !req || req->version < 1)
        return atx_error_set(ATX_EINVAL, "a reboot needs a system and a request");
    if (s->gone)
        return atx_error_set(ATX_ELOST, "system %s %s", s->id, s->gone);
    if (!s->reboot) {
        const char *by = atx_labels_get(s->labels, "provider");
        return atx_error_set(ATX_EUNSUPPORTED, "system %s cannot be rebooted: %s%s%s does not "
                             "reboot its systems", s->id, by ? "provisioner '" : "its provisioner",
                             by ? by : "", by ? "'" : "");
    }
    /* Its agent goes with the reboot: said goodbye to now, not waited for.
     * A drop from here on is the reboot's, not a loss. */
    bool had_agent = s->agent != NULL;
    if (s->agent) {
        agent_conn_free(s->agent, true);
        s->agent = NULL;
    }
    int r = s->reboot(s->reboot_state, s, req);
    if (r == 0 && had_agent) {
        /* Its hello gets the usual time even when the reboot took nearly all. */
        int64_t until = atx_now_ns() + (s->lv.timeout_ns > 0 ? s->lv.timeout_ns
                                                              : 30 * ATX_NSEC_PER_SEC);
        r = atx_system_attach_agent(s, &s->lv, until > req->deadline_ns ? until : req->deadline_ns);
    }
    if (r < 0) {
        char *why;
        if (asprintf(&why, "did not come back from its reboot: %s", atx_error_last()->message) < 0)
            why = NULL;
        free(s->gone);
        s->gone = why ? why : strdup("did not come back from its reboot");
        return atx_error_set(ATX_ELOST, "system %s %s", s->id, s->gone ? s->gone : "is lost");
    }
    return 0;
}

int atx_system_start_agent(atx_system *s, const atx_agent_opts *opts)
{
    agent_liveness lv = { .hurry_fd = -1 };
    int64_t deadline = 0;

    if (!s)
        return atx_error_set(ATX_EINVAL, "no system");
    if (opts && opts->version >= 1) {
        lv.interval_ns = opts->liveness_interval_ns;
        lv.timeout_ns = opts->liveness_timeout_ns;
        deadline = opts->deadline_ns;
    }
    return atx_system_attach_agent(s, &lv, deadline ? deadline
                                                    : atx_now_ns() + 60 * ATX_NSEC_PER_SEC);
}

int atx_system_lost(atx_system *s)
{
    char why[512];
    if (!atx_system_lost_why(s, why, sizeof(why)))
        return 0;
    atx_error_set(ATX_ELOST, "system %s %s", s->id, why);
    return 1;
}

void atx_system_abandon(atx_system *s, const char *why)
{
    if (s && s->agent)
        agent_conn_abandon(s->agent, why);
}

void atx_system_stop_agent(atx_system *s, bool quick)
{
    if (!s || !s->agent)
        return;
    bool lost = agent_conn_lost(s->agent, NULL, 0);
    long pid = agent_conn_pid(s->agent);
    int64_t bound = (quick ? 1 : 3) * ATX_NSEC_PER_SEC;
    if (lost && pid > 0) {
        /* An agent that stopped answering is still there, with what it
         * started: a fresh process on the system kills them all (and waits
         * for them to go), if the system lets one start in time. */
        char pidbuf[32];
        snprintf(pidbuf, sizeof(pidbuf), "%ld", pid);
        const char *argv[] = { s->agent_path, "--reap", pidbuf, NULL };
        atx_spawn_opts o = ATX_SPAWN_OPTS_INIT;
        atx_proc *p;
        atx_exit ex;
        o.argv = argv;
        o.cwd = s->workdir;
        o.deadline_ns = atx_now_ns() + bound;
        if (s->ops->spawn(s->impl, &o, &p) == 0) {
            if (atx_proc_wait(p, bound, &ex) != 0)
                atx_proc_kill_tree(p, SIGKILL, 0);
            atx_proc_free(p);
        }
    }
    agent_conn_free(s->agent, quick);
    s->agent = NULL;
}

int atx_proc_new(const atx_proc_ops *ops, void *impl, int in_fd, int out_fd, int err_fd,
                 int wait_fd, atx_proc **out)
{
    atx_proc *p;

    if (!ops || !ops->wait || !ops->kill_tree || !ops->free || !out)
        return atx_error_set(ATX_EINVAL, "a process needs wait, kill_tree and free");
    p = malloc(sizeof(*p));
    if (!p)
        return atx_error_oom();
    *p = (atx_proc){ ops, impl, in_fd, out_fd, err_fd, -1, wait_fd };
    *out = p;
    return 0;
}

int atx_proc_stdin_fd(atx_proc *p) { return p ? p->in_fd : -1; }
int atx_proc_stdout_fd(atx_proc *p) { return p ? p->out_fd : -1; }
int atx_proc_stderr_fd(atx_proc *p) { return p ? p->err_fd : -1; }
int atx_proc_wait_fd(atx_proc *p) { return p ? p->wait_fd : -1; }
int atx_proc_control_fd(atx_proc *p) { return p ? p->ctl_fd : -1; }

void atx_proc_attach_control(atx_proc *p, int fd)
{
    p->ctl_fd = fd;
}

void atx_proc_close_control(atx_proc *p)
{
    if (!p)
        return;
    if (p->ops->version >= 3 && p->ops->close_control)
        p->ops->close_control(p->impl);
    if (p->ctl_fd >= 0) {
        close(p->ctl_fd);
        p->ctl_fd = -1;
    }
}

int atx_proc_set_deadline(atx_proc *p, int64_t deadline_ns)
{
    if (!p)
        return ATX_EINVAL;
    if (p->ops->version < 2 || !p->ops->set_deadline)
        return atx_error_set(ATX_EUNSUPPORTED, "this process's deadline cannot be moved");
    return p->ops->set_deadline(p->impl, deadline_ns);
}

void atx_proc_close_stdin(atx_proc *p)
{
    if (p && p->in_fd >= 0) {
        close(p->in_fd);
        p->in_fd = -1;
    }
}

int atx_proc_wait(atx_proc *p, int64_t timeout_ns, atx_exit *ex)
{
    if (!p || !ex)
        return ATX_EINVAL;
    return p->ops->wait(p->impl, timeout_ns, ex);
}

int atx_proc_kill_tree(atx_proc *p, int sig, int64_t grace_ns)
{
    if (!p)
        return ATX_EINVAL;
    return p->ops->kill_tree(p->impl, sig, grace_ns);
}

void atx_proc_free(atx_proc *p)
{
    if (!p)
        return;
    p->ops->free(p->impl);
    if (p->in_fd >= 0)
        close(p->in_fd);
    if (p->out_fd >= 0)
        close(p->out_fd);
    if (p->err_fd >= 0 && p->err_fd != p->out_fd)
        close(p->err_fd);
    if (p->ctl_fd >= 0)
        close(p->ctl_fd);
    free(p);
}
