/*
 * Spawning on this host. Everything the child needs is made before it
 * exists: argv, the environment, the program's candidate paths, the pipes,
 * a pseudo-terminal, a cgroup to join. The child is made with vfork(): it
 * borrows the parent's memory until it execs, so it only makes system calls
 * (git's run-command and glibc's posix_spawn do the same), and an exec
 * failure comes back over a close-on-exec pipe. It gets its own session
 * (so its own process group), default signal dispositions, an empty signal
 * mask and no fds but 0-2 (3 with a control channel).
 *
 * Containment (ATX_SPAWN_CONTAIN): the child joins a cgroup of its own
 * before exec, so nothing it starts is ever outside it; when it ends, the
 * group is killed (cgroup.kill) and waited empty. Groups are kept in a pool
 * and reused: a test costs one write in the child and one read at its end.
 */
#include "internal.h"
#include "contain.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;


/* ---- the pool of cgroups ---- */

typedef struct cg_slot {
    struct cg_slot *next;
    cg_group g;
} cg_slot;

static struct {
    pthread_mutex_t mu;
    int state;          /* 0 not tried, 1 usable, < 0 -errno: not usable */
    char why[256];
    cg_root root;
    cg_slot *free;
    unsigned made;
} pool = { .mu = PTHREAD_MUTEX_INITIALIZER };

#define CG_PREFIX "atx-"
#define CG_EMPTY_MS 5000   /* how long a killed group may take to empty */

/* Under pool.mu. */
static int pool_open(void)
{
    char name[96], tag[64];

    if (pool.state)
        return pool.state;
    cg_owner_tag(tag, sizeof(tag));
    snprintf(name, sizeof(name), CG_PREFIX "%s", tag);
    int r = cg_root_open(&pool.root, name);
    if (r < 0) {
        snprintf(pool.why, sizeof(pool.why), "cgroup v2 cannot be used here: %s",
                 r == -ENOENT ? "it is not mounted" : strerror(-r));
        pool.state = r;
        return r;
    }
    /* Groups of runs that were killed: what they left goes now. */
    cg_root_reap_stale(&pool.root, CG_PREFIX);
    pool.state = 1;
    return 1;
}

__attribute__((destructor)) static void pool_close(void)
{
    pthread_mutex_lock(&pool.mu);
    for (cg_slot *s = pool.free, *next; s; s = next) {
        next = s->next;
        cg_group_close(&s->g, false);
        free(s);
    }
    pool.free = NULL;
    if (pool.state == 1)
        cg_root_remove(&pool.root);
    pool.state = 0;
    pthread_mutex_unlock(&pool.mu);
}

int atx_spawn_can_contain(void)
{
    pthread_mutex_lock(&pool.mu);
    int r = pool_open();
    if (r < 0)
        atx_error_set(ATX_EUNSUPPORTED, "%s", pool.why);
    pthread_mutex_unlock(&pool.mu);
    return r > 0;
}

static cg_slot *pool_take(void)
{
    cg_slot *s = NULL;
    int r;

    pthread_mutex_lock(&pool.mu);
    if ((r = pool_open()) < 0) {
        atx_error_set(ATX_EUNSUPPORTED, "cannot contain the process: %s", pool.why);
        pthread_mutex_unlock(&pool.mu);
        return NULL;
    }
    if ((s = pool.free)) {
        pool.free = s->next;
        pthread_mutex_unlock(&pool.mu);
        return s;
    }
    unsigned n = ++pool.made;
    pthread_mutex_unlock(&pool.mu);
    char leaf[32];
    snprintf(leaf, sizeof(leaf), "p%u", n);
    if (!(s = calloc(1, sizeof(*s)))) {
        atx_error_oom();
        return NULL;
    }
    if ((r = cg_group_open(&pool.root, leaf, &s->g)) < 0) {
        atx_error_set(ATX_EUNSUPPORTED, "cannot make cgroup %s: %s", s->g.path, strerror(-r));
        free(s);
        return NULL;
    }
    return s;
}

/* Kill what is left in the group; back to the pool once it is empty. */
static void pool_give(cg_slot *s)
{
    if (cg_group_empty(&s->g, CG_EMPTY_MS) < 0) {
        /* Something would not die (a process stuck in the kernel): the
         * group is not reused; the pool's removal tries again at exit. */
        cg_group_close(&s->g, false);
        free(s);
        return;
    }
    pthread_mutex_lock(&pool.mu);
    s->next = pool.free;
    pool.free = s;
    pthread_mutex_unlock(&pool.mu);
}

/* ---- processes ---- */

typedef struct local_proc {
    pid_t pid;
    int pidfd;
    bool reaped;
    bool timed_out;
    atx_exit exit;
    int64_t deadline_ns;
    int64_t grace_ns;
    int64_t kill_at;        /* after a TERM at the deadline: KILL then */
    cg_slot *cg;            /* its group (ATX_SPAWN_CONTAIN), or NULL */
} local_proc;

static bool poll_exit(local_proc *lp, int64_t timeout_ns)
{
    struct pollfd pfd = { .fd = lp->pidfd, .events = POLLIN };
    int ms = atx_poll_ms(timeout_ns);
    int r;

    do
        r = poll(&pfd, 1, ms);
    while (r < 0 && errno == EINTR);
    return r > 0;
}

/* Signal the whole tree: the group, the group's cgroup, and every
 * descendant still linked to the leader (ones that left its session). */
static void signal_tree(local_proc *lp, int sig)
{
    kill(-lp->pid, sig);
    if (lp->cg)
        cg_group_signal(&lp->cg->g, sig);
    else
        tree_signal(lp->pid, sig, NULL, NULL);
}

/* The leader has ended: kill what is left of its group while the leader's
 * zombie still holds the group id, then reap it, then empty its cgroup. */
static void reap(local_proc *lp)
{
    int status = 0;

    if (lp->reaped)
        return;
    kill(-lp->pid, SIGKILL);
    if (!lp->cg)
        tree_signal(lp->pid, SIGKILL, NULL, NULL);
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
    if (lp->cg) {
        pool_give(lp->cg);
        lp->cg = NULL;
    }
}

static int local_kill_tree(void *impl, int sig, int64_t grace_ns)
{
    local_proc *lp = impl;

    if (lp->reaped)
        return 0;
    signal_tree(lp, sig);
    if (grace_ns > 0 && sig != SIGKILL && !poll_exit(lp, grace_ns))
        signal_tree(lp, SIGKILL);
    return 0;
}

static int local_wait(void *impl, int64_t timeout_ns, atx_exit *ex)
{
    local_proc *lp = impl;
    int64_t now = atx_now_ns();
    int64_t until = timeout_ns < 0 ? INT64_MAX : now + timeout_ns;

    while (!lp->reaped) {
        int64_t stop = until;
        if (lp->deadline_ns && !lp->timed_out && lp->deadline_ns < stop)
            stop = lp->deadline_ns;
        if (lp->kill_at && lp->kill_at < stop)
            stop = lp->kill_at;
        int64_t wait = stop == INT64_MAX ? -1 : stop > now ? stop - now : 0;
        if (poll_exit(lp, wait)) {
            reap(lp);
            break;
        }
        now = atx_now_ns();
        if (lp->deadline_ns && !lp->timed_out && now >= lp->deadline_ns) {
            /* It had not ended (the pidfd said so just now): the deadline
             * kills it. */
            lp->timed_out = true;
            signal_tree(lp, SIGTERM);
            lp->kill_at = now + lp->grace_ns;
            continue;
        }
        if (lp->kill_at && now >= lp->kill_at) {
            signal_tree(lp, SIGKILL);
            lp->kill_at = 0;
            continue;
        }
        if (now >= until)
            return ATX_ETIMEDOUT;
    }
    *ex = lp->exit;
    return 0;
}

static int local_set_deadline(void *impl, int64_t deadline_ns)
{
    local_proc *lp = impl;
    if (!lp->timed_out)
        lp->deadline_ns = deadline_ns;
    return 0;
}

static void local_free(void *impl)
{
    local_proc *lp = impl;

    if (!lp->reaped) {
        signal_tree(lp, SIGKILL);
        /* A process stuck in the kernel is not waited for long. */
        if (poll_exit(lp, 5 * ATX_NSEC_PER_SEC))
            reap(lp);
        else if (lp->cg)
            cg_group_close(&lp->cg->g, false), free(lp->cg);
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
    .set_deadline = local_set_deadline,
};

/* ---- building what the child needs ---- */

/* The child's environment: the inherited (or empty) one with opts->env over
 * it, without the variables that hold atx's secrets. */
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
    atx_env_drop_hidden(envp);
    return envp;
}

/* The paths to try for the program, as execvp would: argv[0] itself when it
 * has a '/', else each entry of the child's PATH (or ours, or a default).
 * One allocation holding the vector and the strings. */
static char **candidates(const char *prog, const char *const *envp)
{
    const char *path = NULL;
    size_t n = 1, bytes = 0, plen = strlen(prog);

    if (strchr(prog, '/')) {
        char **v = malloc(2 * sizeof(char *) + plen + 1);
        if (!v)
            return NULL;
        v[0] = memcpy((char *)(v + 2), prog, plen + 1);
        v[1] = NULL;
        return v;
    }
    for (const char *const *e = envp; e && *e && !path; e++)
        if (strncmp(*e, "PATH=", 5) == 0)
            path = *e + 5;
    if (!path)
        path = "/usr/local/bin:/usr/bin:/bin";
    for (const char *p = path; *p; p++)
        n += *p == ':';
    bytes = strlen(path) + n * (plen + 2);
    char **v = malloc((n + 1) * sizeof(char *) + bytes + 1);
    if (!v)
        return NULL;
    char *w = (char *)(v + n + 1);
    size_t k = 0;
    for (const char *p = path;;) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        v[k++] = w;
        /* An empty entry is the current folder. */
        if (len) {
            memcpy(w, p, len);
            w += len;
            *w++ = '/';
        }
        memcpy(w, prog, plen + 1);
        w += plen + 1;
        if (!colon)
            break;
        p = colon + 1;
    }
    v[k] = NULL;
    return v;
}

/* Where programs were found: one execve for the next test, not one per PATH
 * entry before the right one. Keyed by the program and the PATH it was
 * searched in; an entry is used only while it is still executable. */
#define PATH_CACHE 16
static struct {
    pthread_mutex_t mu;
    struct {
        char *key;          /* "prog\nPATH" */
        char *path;
    } e[PATH_CACHE];
    unsigned next;
} found = { .mu = PTHREAD_MUTEX_INITIALIZER };

static char *path_key(const char *prog, const char *const *envp)
{
    const char *path = "";
    char *key;
    for (const char *const *e = envp; e && *e; e++)
        if (strncmp(*e, "PATH=", 5) == 0)
            path = *e + 5;
    return asprintf(&key, "%s\n%s", prog, path) < 0 ? NULL : key;
}

/* A remembered path for the program, as a one-entry candidate list. */
static char **remembered(const char *key)
{
    char **v = NULL;
    pthread_mutex_lock(&found.mu);
    for (unsigned i = 0; i < PATH_CACHE && !v; i++) {
        if (!found.e[i].key || strcmp(found.e[i].key, key) != 0)
            continue;
        size_t n = strlen(found.e[i].path);
        if ((v = malloc(2 * sizeof(char *) + n + 1))) {
            v[0] = memcpy((char *)(v + 2), found.e[i].path, n + 1);
            v[1] = NULL;
        }
    }
    pthread_mutex_unlock(&found.mu);
    if (v && access(v[0], X_OK) < 0) {
        free(v);
        v = NULL;
    }
    return v;
}

static void remember(char *key, const char *path)
{
    char *p = strdup(path);
    if (!p)
        return;
    pthread_mutex_lock(&found.mu);
    unsigned i = found.next++ % PATH_CACHE;
    free(found.e[i].key);
    free(found.e[i].path);
    found.e[i].key = key;
    found.e[i].path = p;
    pthread_mutex_unlock(&found.mu);
}

/* What the child does, in its own words: only system calls. */
typedef struct child_plan {
    char **paths;
    volatile int *which;    /* the candidate exec'd (vfork shares our memory) */
    char *const *argv;
    char *const *envp;
    const char *cwd;
    const char *pty;        /* the terminal's path, or NULL */
    int fd[4];              /* what goes to 0, 1, 2, 3 (-1: /dev/null; 3: none) */
    int cg_fd;              /* cgroup.procs to join, or -1 */
    volatile int *err;      /* errno of a failed exec: vfork lends the child our
                               memory until it execs (as glibc's posix_spawn) */
} child_plan;

/*
 * The child, in borrowed memory: raw system calls only (no libc function a
 * sanitizer wraps, no instrumentation), so the same path runs in every
 * build. Between vfork and exec it must not touch the parent's state.
 */
#define RAW __attribute__((noinline, no_sanitize("address", "thread", "undefined")))

RAW __attribute__((noreturn)) static void child_exec(const child_plan *c)
{
    /* A kernel sigaction of all zeros is SIG_DFL, no flags, no mask. */
    /* The kernel's sigaction and sigset (all zero: SIG_DFL, no flags, an
     * empty mask); the kernel's sigset is _NSIG bits, not glibc's 1024. */
    static const unsigned long dfl[8];
    static const unsigned long none[2];
    enum { KSIGSET = _NSIG / 8 };
    /* Signals stay blocked (the parent blocked them) until just before
     * exec, and the child leaves atx's session first: no handler runs in
     * borrowed memory, and exec resets handled signals. Ignored ones would
     * stay ignored in the test: those a test's tools rely on go back to
     * their defaults (one call each, not one per signal there is). */
    static const int reset[] = { SIGPIPE, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGALRM,
                                 SIGUSR1, SIGUSR2, SIGCHLD, SIGTSTP, SIGTTIN, SIGTTOU,
                                 SIGXFSZ, SIGXCPU };
    long e = 0;
    int fd[4];

    for (size_t i = 0; i < sizeof(reset) / sizeof(reset[0]); i++)
        syscall(SYS_rt_sigaction, reset[i], dfl, NULL, KSIGSET);
    if (c->cg_fd >= 0 && syscall(SYS_write, c->cg_fd, "0", 1) != 1)
        goto fail;
    if (syscall(SYS_setsid) < 0)
        goto fail;
    /* Move what will be 0-3 out of their way first. */
    for (int i = 0; i < 4; i++) {
        fd[i] = c->fd[i];
        if (fd[i] >= 0 && fd[i] <= 3 &&
            (fd[i] = (int)syscall(SYS_fcntl, fd[i], F_DUPFD_CLOEXEC, 4)) < 0)
            goto fail;
    }
    if (c->pty) {
        int t = (int)syscall(SYS_openat, AT_FDCWD, c->pty, O_RDWR);
        if (t < 0 || syscall(SYS_ioctl, t, TIOCSCTTY, 0) < 0 ||
            (t <= 3 && (t = (int)syscall(SYS_fcntl, t, F_DUPFD_CLOEXEC, 4)) < 0))
            goto fail;
        fd[0] = fd[1] = fd[2] = t;
    } else {
        int devnull = -1;
        for (int i = 0; i < 3; i++)
            if (fd[i] < 0) {
                if (devnull < 0 &&
                    ((devnull = (int)syscall(SYS_openat, AT_FDCWD, "/dev/null",
                                             O_RDWR | O_CLOEXEC)) < 0 ||
                     (devnull <= 3 &&
                      (devnull = (int)syscall(SYS_fcntl, devnull, F_DUPFD_CLOEXEC, 4)) < 0)))
                    goto fail;
                fd[i] = devnull;
            }
    }
    /* Every source is above 3 now: no target overwrites another's source. */
    for (int i = 0; i < 4; i++)
        if (fd[i] >= 0 && syscall(SYS_dup3, fd[i], i, 0) < 0)
            goto fail;
    /* Everything else goes: ours are close-on-exec, but a driver's may not be. */
    int first = c->fd[3] >= 0 ? 4 : 3;
    if (syscall(SYS_close_range, first, ~0u, 0) < 0)
        for (int f = first; f < 1024; f++)
            syscall(SYS_close, f);
    if (c->cwd && syscall(SYS_chdir, c->cwd) < 0)
        goto fail;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, none, NULL, KSIGSET);
    /* execvp's order: the first path that runs; EACCES wins over ENOENT. */
    e = ENOENT;
    for (char **p = c->paths; *p; p++) {
        *c->which = (int)(p - c->paths);
        syscall(SYS_execve, *p, c->argv, c->envp);
        if (errno == EACCES)
            e = EACCES;
        else if (errno != ENOENT && errno != ENOTDIR)
            e = errno;
        if (e != ENOENT && e != EACCES)
            break;
    }
    *c->err = (int)e;
    syscall(SYS_exit_group, 127);
    __builtin_unreachable();
fail:
    e = errno;
    *c->err = e ? (int)e : EINVAL;
    syscall(SYS_exit_group, 127);
    __builtin_unreachable();
}

/* glibc's vfork by its own name: sanitizers wrap `vfork` (ThreadSanitizer
 * turns it into a fork, which copies its whole shadow memory for every
 * test), but the child here never runs their code anyway. */
extern pid_t __vfork(void) __attribute__((returns_twice));

/* vfork in a frame of its own: the caller's variables are not the child's
 * to clobber (the child never returns here). */
RAW static pid_t start_child(const child_plan *plan)
{
    pid_t pid = __vfork();
    if (pid == 0)
        child_exec(plan);
    return pid;
}

static void close_pair(int p[2])
{
    for (int i = 0; i < 2; i++)
        if (p[i] >= 0) {
            close(p[i]);
            p[i] = -1;
        }
}

int atx_spawn_local(const atx_spawn_opts *opts, atx_proc **out)
{
    int in[2] = { -1, -1 }, outp[2] = { -1, -1 }, errp[2] = { -1, -1 };
    int ctl[2] = { -1, -1 }, master = -1;
    char pty[128];
    const char **envp = NULL;
    char **paths = NULL;
    local_proc *lp = NULL;
    cg_slot *cg = NULL;
    unsigned fl;
    pid_t pid;
    int r, e = 0;

    if (!opts || !opts->argv || !opts->argv[0] || !out)
        return atx_error_set(ATX_EINVAL, "spawn needs argv");
    fl = opts->flags;
    if (fl & ATX_SPAWN_PTY)
        fl |= ATX_SPAWN_STDOUT_PIPE | ATX_SPAWN_STDERR_TO_STDOUT;
    envp = build_env(opts);
    bool search = !strchr(opts->argv[0], '/');
    char *key = search && envp ? path_key(opts->argv[0], (const char *const *)envp) : NULL;
    if (key && !(paths = remembered(key)))
        paths = candidates(opts->argv[0], envp);
    else if (!search)
        paths = envp ? candidates(opts->argv[0], envp) : NULL;
    lp = calloc(1, sizeof(*lp));
    if (!envp || !paths || !lp) {
        r = atx_error_oom();
        goto fail;
    }
    if ((fl & ATX_SPAWN_CONTAIN) && !(cg = pool_take())) {
        r = atx_error_last()->code;
        goto fail;
    }
    if (fl & ATX_SPAWN_PTY) {
        master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 ||
            ptsname_r(master, pty, sizeof(pty)) != 0) {
            e = errno;
            r = atx_error_set(-e, "cannot make a pseudo-terminal: %s", strerror(e));
            goto fail;
        }
    } else if (((fl & ATX_SPAWN_STDIN_PIPE) && pipe2(in, O_CLOEXEC) < 0) ||
               ((fl & ATX_SPAWN_STDOUT_PIPE) && pipe2(outp, O_CLOEXEC) < 0) ||
               ((fl & ATX_SPAWN_STDERR_PIPE) && !(fl & ATX_SPAWN_STDERR_TO_STDOUT) &&
                pipe2(errp, O_CLOEXEC) < 0)) {
        e = errno;
        r = atx_error_set(-e, "cannot make pipes: %s", strerror(e));
        goto fail;
    }
    if ((fl & ATX_SPAWN_CONTROL) && pipe2(ctl, O_CLOEXEC) < 0) {
        e = errno;
        r = atx_error_set(-e, "cannot make pipes: %s", strerror(e));
        goto fail;
    }

    volatile int child_errno = 0, which = 0;
    child_plan plan = {
        .paths = paths,
        .which = &which,
        .argv = (char *const *)opts->argv,
        .envp = (char *const *)envp,
        .cwd = opts->cwd,
        .pty = master >= 0 ? pty : NULL,
        .fd = { in[0], outp[1],
                (fl & ATX_SPAWN_STDERR_TO_STDOUT) ? outp[1] : errp[1], ctl[1] },
        .cg_fd = cg ? cg->g.procs_fd : -1,
        .err = &child_errno,
    };
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid = start_child(&plan);
    e = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        r = atx_error_set(-e, "cannot start %s: %s", opts->argv[0], strerror(e));
        goto fail;
    }
    if (child_errno) {
        kill(-pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        e = child_errno;
        if (e == ENOENT && opts->cwd && access(opts->cwd, X_OK) < 0)
            r = atx_error_set(ATX_ESPAWN, "cannot run %s: working directory %s: %s",
                              opts->argv[0], opts->cwd, strerror(errno));
        else
            r = atx_error_set(ATX_ESPAWN, "cannot run %s: %s", opts->argv[0], strerror(e));
        goto fail;
    }
    /* A PATH entry that is relative was found from this child's cwd only. */
    if (key && paths[1] && paths[which][0] == '/') {
        remember(key, paths[which]);
        key = NULL;
    }
    lp->pid = pid;
    lp->cg = cg;
    cg = NULL;
    lp->deadline_ns = opts->deadline_ns;
    lp->grace_ns = opts->kill_grace_ns > 0 ? opts->kill_grace_ns : ATX_NSEC_PER_SEC;
    lp->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (lp->pidfd < 0) {
        e = errno;
        signal_tree(lp, SIGKILL);
        reap(lp);
        r = atx_error_set(-e, "pidfd_open: %s (Linux 5.3 or newer is needed)", strerror(e));
        goto fail;
    }
    fcntl(lp->pidfd, F_SETFD, FD_CLOEXEC);
    int stdout_fd = master >= 0 ? master : outp[0];
    atx_proc *p;
    int stdin_fd = in[1];
    if (master >= 0 && (fl & ATX_SPAWN_STDIN_PIPE))
        stdin_fd = fcntl(master, F_DUPFD_CLOEXEC, 3);
    r = atx_proc_new(&local_proc_ops, lp, stdin_fd, stdout_fd,
                     (fl & ATX_SPAWN_STDERR_TO_STDOUT) ? -1 : errp[0], lp->pidfd, &p);
    if (r < 0) {
        local_free(lp);
        lp = NULL;
        goto fail;
    }
    if (ctl[0] >= 0)
        atx_proc_attach_control(p, ctl[0]);
    if (in[0] >= 0)
        close(in[0]);
    if (outp[1] >= 0)
        close(outp[1]);
    if (errp[1] >= 0)
        close(errp[1]);
    if (ctl[1] >= 0)
        close(ctl[1]);
    free(envp);
    free(paths);
    free(key);
    *out = p;
    return 0;

fail:
    close_pair(in);
    close_pair(outp);
    close_pair(errp);
    close_pair(ctl);
    if (master >= 0)
        close(master);
    if (cg)
        pool_give(cg);
    free(envp);
    free(paths);
    free(key);
    free(lp);
    return r;
}
