/* System and process handles: dispatch to the provisioner's implementation. */
#include "internal.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct atx_system {
    const atx_system_ops *ops;
    void *impl;
    char *id;
    atx_labels *labels;
    char *workdir;
    int fresh;
    int64_t phase_deadline_ns;  /* bounds every spawn while set (0: none) */
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

int atx_system_spawn(atx_system *s, const atx_spawn_opts *opts, atx_proc **out)
{
    if (!s || !opts || !out || !opts->argv || !opts->argv[0])
        return atx_error_set(ATX_EINVAL, "spawn needs a system, options and argv");
    if (opts->version < 1)
        return atx_error_set(ATX_EINVAL, "spawn options have no version");
    if (s->phase_deadline_ns &&
        (!opts->deadline_ns || opts->deadline_ns > s->phase_deadline_ns)) {
        /* The orchestrator bounds this phase (prepare, release). */
        atx_spawn_opts o = *opts;
        if (atx_now_ns() >= s->phase_deadline_ns)
            return atx_error_set(ATX_ETIMEDOUT, "system %s: the phase's time is up", s->id);
        o.deadline_ns = s->phase_deadline_ns;
        return s->ops->spawn(s->impl, &o, out);
    }
    return s->ops->spawn(s->impl, opts, out);
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
    if (!s || !local || !remote)
        return atx_error_set(ATX_EINVAL, "copy needs a system and two paths");
    if (!s->ops->copy_in)
        return atx_error_set(ATX_EUNSUPPORTED, "system %s cannot copy files in", s->id);
    return s->ops->copy_in(s->impl, local, remote);
}

int atx_system_copy_out(atx_system *s, const char *remote, const char *local)
{
    if (!s || !local || !remote)
        return atx_error_set(ATX_EINVAL, "copy needs a system and two paths");
    if (!s->ops->copy_out)
        return atx_error_set(ATX_EUNSUPPORTED, "system %s cannot copy files out", s->id);
    return s->ops->copy_out(s->impl, remote, local);
}

int atx_system_alive(atx_system *s, int64_t timeout_ns)
{
    if (!s)
        return ATX_EINVAL;
    return s->ops->alive ? s->ops->alive(s->impl, timeout_ns) : 0;
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
