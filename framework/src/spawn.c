/*
 * Spawning on this host. posix_spawn (clone with CLONE_VFORK in glibc) builds
 * nothing in the child: argv and the environment are made before, the child
 * only applies the file actions and attributes, and an exec failure comes back
 * as the call's error. The child gets its own session (so its own process
 * group), default signal dispositions, an empty signal mask and no fds but
 * 0-2. A pidfd tells when it ends, so a worker can poll it with its pipes.
 */
#include "internal.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

typedef struct local_proc {
    pid_t pid;
    int pidfd;
    bool reaped;
    bool timed_out;
    atx_exit exit;
    int64_t deadline_ns;
    int64_t grace_ns;
} local_proc;

static int pidfd_open_(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static bool poll_exit(local_proc *lp, int64_t timeout_ns)
{
    struct pollfd pfd = { .fd = lp->pidfd, .events = POLLIN };
    int ms = timeout_ns < 0 ? -1 : (int)((timeout_ns + ATX_NSEC_PER_MSEC - 1) / ATX_NSEC_PER_MSEC);
    int r;

    do
        r = poll(&pfd, 1, ms);
    while (r < 0 && errno == EINTR);
    return r > 0;
}

/* The leader has ended: kill what is left of its group while the leader's
 * zombie still holds the group id, then reap it. */
static void reap(local_proc *lp)
{
    int status = 0;

    if (lp->reaped)
        return;
    kill(-lp->pid, SIGKILL);
    while (waitpid(lp->pid, &status, 0) < 0 && errno == EINTR)
        ;
    lp->reaped = true;
    lp->exit.timed_out = lp->timed_out;
    if (WIFEXITED(status)) {
        lp->exit.exited = 1;
        lp->exit.code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        lp->exit.signal = WTERMSIG(status);
    }
}

static int local_kill_tree(void *impl, int sig, int64_t grace_ns)
{
    local_proc *lp = impl;

    if (lp->reaped)
        return 0;
    kill(-lp->pid, sig);
    if (grace_ns > 0 && sig != SIGKILL && !poll_exit(lp, grace_ns))
        kill(-lp->pid, SIGKILL);
    return 0;
}

static int local_wait(void *impl, int64_t timeout_ns, atx_exit *ex)
{
    local_proc *lp = impl;
    int64_t now = atx_now_ns();
    int64_t until = timeout_ns < 0 ? INT64_MAX : now + timeout_ns;

    while (!lp->reaped) {
        int64_t stop = until;
        bool at_deadline = false;
        if (lp->deadline_ns && !lp->timed_out && lp->deadline_ns <= stop) {
            stop = lp->deadline_ns;
            at_deadline = true;
        }
        int64_t wait = stop == INT64_MAX ? -1 : stop - now;
        if (wait < 0 && stop != INT64_MAX)
            wait = 0;
        if (poll_exit(lp, wait)) {
            reap(lp);
            break;
        }
        now = atx_now_ns();
        if (at_deadline && now >= lp->deadline_ns) {
            lp->timed_out = true;
            local_kill_tree(lp, SIGTERM, lp->grace_ns);
            continue;
        }
        if (now >= until)
            return ATX_ETIMEDOUT;
    }
    *ex = lp->exit;
    return 0;
}

static void local_free(void *impl)
{
    local_proc *lp = impl;

    if (!lp->reaped) {
        kill(-lp->pid, SIGKILL);
        reap(lp);
    }
    if (lp->pidfd >= 0)
        close(lp->pidfd);
    free(lp);
}

static const atx_proc_ops local_proc_ops = {
    .version = ATX_PROC_OPS_VERSION,
    .wait = local_wait,
    .kill_tree = local_kill_tree,
    .free = local_free,
};

/* The child's environment: the inherited (or empty) one with opts->env over it. */
static const char **build_env(const atx_spawn_opts *opts)
{
    size_t nbase = 0, nadd = 0, n = 0;
    const char *const *base = (opts->flags & ATX_SPAWN_CLEAR_ENV) ? NULL
                                                                   : (const char *const *)environ;
    const char **envp;

    while (base && base[nbase])
        nbase++;
    while (opts->env && opts->env[nadd])
        nadd++;
    envp = malloc((nbase + nadd + 1) * sizeof(*envp));
    if (!envp)
        return NULL;
    for (size_t i = 0; i < nbase; i++) {
        const char *eq = strchr(base[i], '=');
        size_t klen = eq ? (size_t)(eq - base[i]) : strlen(base[i]);
        bool overridden = false;
        for (size_t j = 0; j < nadd && !overridden; j++)
            overridden = strncmp(opts->env[j], base[i], klen) == 0 && opts->env[j][klen] == '=';
        if (!overridden)
            envp[n++] = base[i];
    }
    for (size_t j = 0; j < nadd; j++)
        envp[n++] = opts->env[j];
    envp[n] = NULL;
    return envp;
}

int atx_spawn_local(const atx_spawn_opts *opts, atx_proc **out)
{
    int in[2] = { -1, -1 }, outp[2] = { -1, -1 }, errp[2] = { -1, -1 };
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;
    const char **envp = NULL;
    local_proc *lp = NULL;
    pid_t pid;
    int r, e = 0;

    if (!opts || !opts->argv || !opts->argv[0] || !out)
        return atx_error_set(ATX_EINVAL, "spawn needs argv");
    envp = build_env(opts);
    lp = calloc(1, sizeof(*lp));
    if (!envp || !lp) {
        free(envp);
        free(lp);
        return atx_error_oom();
    }
    if (((opts->flags & ATX_SPAWN_STDIN_PIPE) && pipe2(in, O_CLOEXEC) < 0) ||
        ((opts->flags & ATX_SPAWN_STDOUT_PIPE) && pipe2(outp, O_CLOEXEC) < 0) ||
        ((opts->flags & ATX_SPAWN_STDERR_PIPE) && !(opts->flags & ATX_SPAWN_STDERR_TO_STDOUT) &&
         pipe2(errp, O_CLOEXEC) < 0)) {
        e = errno;
        r = atx_error_set(-e, "cannot make pipes: %s", strerror(e));
        goto fail;
    }

    posix_spawn_file_actions_init(&fa);
    if (in[0] >= 0)
        posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    else
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (outp[1] >= 0)
        posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
    else
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (opts->flags & ATX_SPAWN_STDERR_TO_STDOUT)
        posix_spawn_file_actions_adddup2(&fa, 1, 2);
    else if (errp[1] >= 0)
        posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
    else
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    if (opts->cwd)
        posix_spawn_file_actions_addchdir_np(&fa, opts->cwd);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);

    posix_spawnattr_init(&attr);
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETSIGDEF);

    e = posix_spawnp(&pid, opts->argv[0], &fa, &attr, (char *const *)opts->argv,
                     (char *const *)envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (e != 0) {
        if (e == ENOENT && opts->cwd && access(opts->cwd, X_OK) < 0)
            r = atx_error_set(ATX_ESPAWN, "cannot run %s: working directory %s: %s",
                              opts->argv[0], opts->cwd, strerror(errno));
        else
            r = atx_error_set(ATX_ESPAWN, "cannot run %s: %s", opts->argv[0], strerror(e));
        goto fail;
    }
    free(envp);
    envp = NULL;

    lp->pid = pid;
    lp->deadline_ns = opts->deadline_ns;
    lp->grace_ns = opts->kill_grace_ns > 0 ? opts->kill_grace_ns : ATX_NSEC_PER_SEC;
    lp->pidfd = pidfd_open_(pid);
    if (lp->pidfd < 0) {
        e = errno;
        kill(-pid, SIGKILL);
        waitpid(pid, NULL, 0);
        r = atx_error_set(-e, "pidfd_open: %s (Linux 5.3 or newer is needed)", strerror(e));
        goto fail;
    }
    fcntl(lp->pidfd, F_SETFD, FD_CLOEXEC);
    if (in[0] >= 0)
        close(in[0]);
    if (outp[1] >= 0)
        close(outp[1]);
    if (errp[1] >= 0)
        close(errp[1]);
    if (outp[0] >= 0)
        fcntl(outp[0], F_SETFL, O_NONBLOCK);
    if (errp[0] >= 0)
        fcntl(errp[0], F_SETFL, O_NONBLOCK);
    r = atx_proc_new(&local_proc_ops, lp, in[1], outp[0],
                     (opts->flags & ATX_SPAWN_STDERR_TO_STDOUT) ? outp[0] : errp[0], lp->pidfd,
                     out);
    if (r < 0) {
        local_free(lp);
        lp = NULL;
        in[0] = outp[1] = errp[1] = -1;
        goto fail;
    }
    return 0;

fail:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (outp[i] >= 0)
            close(outp[i]);
        if (errp[i] >= 0)
            close(errp[i]);
    }
    free(envp);
    free(lp);
    return r;
}
