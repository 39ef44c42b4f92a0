/*
 * atx-agent: the system-side agent. One runs per leased system, started once
 * per lease over one byte stream (its stdin/stdout: a pipe on this host, an
 * SSH channel, a `podman exec -i`), and everything atx does on the system
 * goes through it: tests and lifecycle commands, copies, pings.
 *
 * Each process runs in its own session and process group, with its stdout
 * and stderr (merged or not, or on a pseudo-terminal), stdin and the
 * test-control channel on fd 3 carried in frames. Nothing it starts outlives
 * it: where the system allows, it runs in a cgroup of its own, emptied by
 * cgroup.kill when it ends; it is a child subreaper, so what its tree
 * orphans stays below it while it lives and comes back to the agent when it
 * ends; and then every such process is killed before its EXIT is sent. The
 * agent enforces each process's deadline itself (START carries it), so a
 * test cannot outlive its timeout even when the link to atx is gone. When
 * the connection ends, everything the agent started is killed.
 *
 * Static, libc only, single-threaded: one poll loop. See protocol.h.
 *
 *   atx-agent              serve the protocol on stdin/stdout
 *   atx-agent --version    print the version and protocol number
 *   atx-agent --reap PID   kill the agent PID (frozen, say) and everything
 *                          it started; used by atx for a system that stopped
 *                          answering
 */
#define _GNU_SOURCE 1
#include "protocol.h"
#include "contain.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#ifndef ATX_AGENT_VERSION
#define ATX_AGENT_VERSION "0"
#endif

#define MAX_PROCS 64
#define DRAIN_MS 500        /* after a test's tree is gone, what still holds its pipes */
#define SETTLE_MS 2000      /* how long killed processes may take to go */
#define STDIN_MAX (8u << 20) /* stdin bytes buffered for a slow reader */
#define CG_PREFIX "atx-agent-"

extern char **environ;

typedef struct cg_slot {
    struct cg_slot *next;
    cg_group g;
} cg_slot;

typedef struct proc {
    bool used;
    uint32_t id;
    pid_t pid;
    int fd[3];          /* out, err, ctl (-1 when closed) */
    int in_fd;          /* its stdin (-1: none, or closed) */
    unsigned char *in_buf;
    size_t in_len, in_cap;
    bool in_eof;        /* CLOSE came: close stdin once the buffer is out */
    bool exited;
    bool timed_out;
    int status;
    int64_t deadline_at; /* ms: TERM then (0: none) */
    int64_t grace_ms;
    int64_t kill_at;    /* ms: SIGKILL the tree then (0: none) */
    int64_t drain_until;
    cg_slot *cg;
} proc;

static proc procs[MAX_PROCS];
static int sigfd = -1;
static bool use_cgroup;
static cg_root cgroot;
static cg_slot *cg_free;
static unsigned cg_made;

/* One file transfer at a time (PUT). */
static struct {
    int fd;
    uint32_t id;
    uint32_t mode;
    uint64_t mtime;
    bool failed;
} put = { .fd = -1 };

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- output to the host ---- */

static void shutdown_all(int code);

static void write_all(const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = write(1, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            shutdown_all(0); /* the host is gone */
        p += n;
        len -= (size_t)n;
    }
}

static void send_frame(uint8_t type, uint32_t id, const void *payload, size_t len)
{
    unsigned char h[AGENT_HEADER_SIZE];
    agent_put_u32(h, (uint32_t)len);
    h[4] = type;
    agent_put_u32(h + 5, id);
    write_all(h, sizeof(h));
    if (len)
        write_all(payload, len);
}

static void send_fail(uint32_t id, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void send_fail(uint32_t id, int err, const char *fmt, ...)
{
    unsigned char buf[4 + 1024];
    va_list ap;

    agent_put_u32(buf, (uint32_t)err);
    va_start(ap, fmt);
    int n = vsnprintf((char *)buf + 4, sizeof(buf) - 4, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(buf) - 4)
        n = (int)sizeof(buf) - 5;
    send_frame(AGENT_FAIL, id, buf, 4 + (size_t)n + 1);
}

/* ---- containment ---- */

static cg_slot *cg_take(void)
{
    cg_slot *s;
    char leaf[32];

    if (!use_cgroup)
        return NULL;
    if ((s = cg_free)) {
        cg_free = s->next;
        return s;
    }
    if (!(s = calloc(1, sizeof(*s))))
        return NULL;
    snprintf(leaf, sizeof(leaf), "t%u", ++cg_made);
    if (cg_group_open(&cgroot, leaf, &s->g) < 0) {
        free(s);
        return NULL;
    }
    return s;
}

static void cg_give(cg_slot *s)
{
    if (cg_group_empty(&s->g, SETTLE_MS) < 0) {
        cg_group_close(&s->g, false); /* not reused; the root's removal tries again */
        free(s);
        return;
    }
    s->next = cg_free;
    cg_free = s;
}

static proc *find(uint32_t id)
{
    for (int i = 0; i < MAX_PROCS; i++)
        if (procs[i].used && procs[i].id == id)
            return &procs[i];
    return NULL;
}

/* Leaders of other processes are not ours to kill. */
static bool live_leader(pid_t pid, void *ud)
{
    for (int i = 0; i < MAX_PROCS; i++)
        if (procs[i].used && !procs[i].exited && procs[i].pid == pid && &procs[i] != ud)
            return true;
    return false;
}

/* A signal to a process's whole tree: its group, its cgroup, and every
 * descendant of its leader (ones that left the session included). */
static void signal_tree(proc *p, int sig)
{
    if (p->exited)
        return;
    kill(-p->pid, sig);
    if (p->cg)
        cg_group_signal(&p->cg->g, sig);
    tree_signal(p->pid, sig, live_leader, p);
    kill(p->pid, sig);
}

/* What came back to the agent when leaders ended: orphans of trees that are
 * over. Kills them and their trees; returns how many there were. */
static int kill_orphans(void)
{
    pid_t kids[1024];
    int n = proc_children(getpid(), kids, (int)(sizeof(kids) / sizeof(kids[0]))), k = 0;

    for (int i = 0; i < n; i++) {
        if (live_leader(kids[i], NULL))
            continue;
        tree_signal(kids[i], SIGKILL, live_leader, NULL);
        kill(kids[i], SIGKILL);
        k++;
    }
    return k;
}

/* ---- processes ---- */

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* The environment: ours, with the request's entries over it. */
static char **merge_env(char **add, uint32_t nadd, bool clear)
{
    size_t nbase = 0, n = 0;
    while (!clear && environ[nbase])
        nbase++;
    char **env = calloc(nbase + nadd + 1, sizeof(char *));
    if (!env)
        return NULL;
    for (size_t i = 0; i < nbase; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t k = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        bool over = false;
        for (uint32_t j = 0; j < nadd && !over; j++)
            over = strncmp(add[j], environ[i], k) == 0 && add[j][k] == '=';
        if (!over)
            env[n++] = environ[i];
    }
    for (uint32_t j = 0; j < nadd; j++)
        env[n++] = add[j];
    return env;
}

/* Close every fd from `from` up, except `keep`: close_range where the
 * kernel has it (5.9), else one by one up to the fd limit. */
static void close_from(int from, int keep)
{
#ifdef SYS_close_range
    bool ok;
    if (keep < from) {
        ok = syscall(SYS_close_range, from, ~0u, 0) == 0;
    } else {
        ok = keep == from || syscall(SYS_close_range, from, keep - 1, 0) == 0;
        ok = ok && syscall(SYS_close_range, keep + 1, ~0u, 0) == 0;
    }
    if (ok)
        return;
#endif
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = from; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
        if (fd != keep)
            close((int)fd);
}

/* The program's path, searched in the request's PATH once and remembered:
 * a test costs one execve, not one per PATH entry before the right one. */
static const char *resolve(const char *prog, char *const *env)
{
    static struct { char key[512]; char path[4096]; } cache[32];
    static unsigned next;
    const char *path_env = "/usr/local/bin:/usr/bin:/bin";

    if (strchr(prog, '/'))
        return prog;
    for (char *const *e = env; e && *e; e++)
        if (strncmp(*e, "PATH=", 5) == 0)
            path_env = *e + 5;
    char key[512];
    snprintf(key, sizeof(key), "%s\n%s", prog, path_env);
    for (unsigned i = 0; i < sizeof(cache) / sizeof(cache[0]); i++)
        if (strcmp(cache[i].key, key) == 0 && access(cache[i].path, X_OK) == 0)
            return cache[i].path;
    for (const char *p = path_env; *p;) {
        const char *colon = strchr(p, ':');
        size_t n = colon ? (size_t)(colon - p) : strlen(p);
        char cand[4096];
        snprintf(cand, sizeof(cand), "%.*s%s%s", (int)n, p, n ? "/" : "", prog);
        struct stat st;
        if (access(cand, X_OK) == 0 && stat(cand, &st) == 0 && S_ISREG(st.st_mode)) {
            unsigned slot = next++ % (sizeof(cache) / sizeof(cache[0]));
            snprintf(cache[slot].key, sizeof(cache[slot].key), "%s", key);
            snprintf(cache[slot].path, sizeof(cache[slot].path), "%s", cand);
            return cache[slot].path;
        }
        if (!colon)
            break;
        p = colon + 1;
    }
    return prog; /* execve fails with ENOENT: reported as such */
}

static void start(uint32_t id, agent_reader *r)
{
    uint32_t flags = agent_read_u32(r);
    uint32_t deadline_ms = agent_read_u32(r);
    uint32_t grace_ms = agent_read_u32(r);
    uint32_t argc = agent_read_u32(r);
    char **argv = NULL, **add = NULL, **env = NULL;
    int pin[2] = { -1, -1 }, pout[2] = { -1, -1 }, perr[2] = { -1, -1 };
    int pctl[2] = { -1, -1 }, pexec[2] = { -1, -1 };
    int master = -1;
    char slave[128] = "";
    proc *p = NULL;
    cg_slot *cg = NULL;

    if (r->bad || argc == 0 || argc > 65536 || find(id)) {
        send_fail(id, EINVAL, "bad start request");
        return;
    }
    argv = calloc(argc + 1, sizeof(char *));
    for (uint32_t i = 0; argv && i < argc; i++)
        argv[i] = (char *)agent_read_str(r);
    uint32_t envc = agent_read_u32(r);
    if (envc > 65536)
        r->bad = 1;
    add = r->bad ? NULL : calloc(envc + 1, sizeof(char *));
    for (uint32_t i = 0; add && i < envc; i++)
        add[i] = (char *)agent_read_str(r);
    const char *cwd = agent_read_str(r);
    if (!argv || !add || r->bad) {
        send_fail(id, EINVAL, "bad start request");
        goto out;
    }
    env = merge_env(add, envc, flags & AGENT_CLEAR_ENV);
    for (int i = 0; i < MAX_PROCS && !p; i++)
        if (!procs[i].used)
            p = &procs[i];
    if (!env || !p) {
        send_fail(id, ENOMEM, "too many processes or out of memory");
        goto out;
    }
    if (flags & AGENT_PTY) {
        master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 ||
            ptsname_r(master, slave, sizeof(slave)) != 0) {
            send_fail(id, errno, "cannot make a pseudo-terminal: %s", strerror(errno));
            goto out;
        }
    } else if (((flags & AGENT_STDIN) && pipe2(pin, O_CLOEXEC) < 0) ||
               ((flags & AGENT_STDOUT) && pipe2(pout, O_CLOEXEC) < 0) ||
               ((flags & AGENT_STDERR) && !(flags & AGENT_MERGE_OUTPUT) &&
                pipe2(perr, O_CLOEXEC) < 0)) {
        send_fail(id, errno, "cannot make pipes: %s", strerror(errno));
        goto out;
    }
    if (((flags & AGENT_CONTROL) && pipe2(pctl, O_CLOEXEC) < 0) || pipe2(pexec, O_CLOEXEC) < 0) {
        send_fail(id, errno, "cannot make pipes: %s", strerror(errno));
        goto out;
    }
    cg = cg_take();

    const char *path = resolve(argv[0], env);
    pid_t pid = fork();
    if (pid < 0) {
        send_fail(id, errno, "fork: %s", strerror(errno));
        goto out;
    }
    if (pid == 0) {
        /* The child: only async-signal-safe calls from here to exec. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        if (cg && cg_join(cg->g.procs_fd) < 0)
            goto child_fail;
        /* What its tree orphans stays below it (and comes back to us). */
        prctl(PR_SET_CHILD_SUBREAPER, 1);
        setsid();
        if (master >= 0) {
            int fd = open(slave, O_RDWR);
            if (fd < 0)
                goto child_fail;
            ioctl(fd, TIOCSCTTY, 0);
            dup2(fd, 0);
            dup2(fd, 1);
            dup2(fd, 2);
        } else {
            int devnull = open("/dev/null", O_RDWR);
            dup2(pin[0] >= 0 ? pin[0] : devnull, 0);
            dup2(pout[1] >= 0 ? pout[1] : devnull, 1);
            dup2(perr[1] >= 0 ? perr[1] : (flags & AGENT_MERGE_OUTPUT) && pout[1] >= 0 ? pout[1]
                                                                                    : devnull,
                 2);
        }
        if (pctl[1] >= 0)
            dup2(pctl[1], 3);
        /* fds above 3 are CLOEXEC (ours) or inherited from whoever started
         * the agent: close them all but the exec-error pipe (CLOEXEC). */
        close_from(pctl[1] >= 0 ? 4 : 3, pexec[1]);
        if (*cwd && chdir(cwd) < 0)
            goto child_fail;
        execve(path, argv, env);
    child_fail:;
        int e = errno;
        ssize_t w = write(pexec[1], &e, sizeof(e));
        (void)w;
        _exit(127);
    }
    close_fd(&pexec[1]);
    int e = 0;
    ssize_t n;
    do
        n = read(pexec[0], &e, sizeof(e));
    while (n < 0 && errno == EINTR);
    if (n == sizeof(e)) {
        waitpid(pid, NULL, 0);
        send_fail(id, e, "cannot run %s: %s%s%s%s", argv[0], strerror(e), *cwd ? " (in " : "",
                  cwd, *cwd ? ")" : "");
        goto out;
    }
    memset(p, 0, sizeof(*p));
    p->used = true;
    p->id = id;
    p->pid = pid;
    p->fd[0] = master >= 0 ? master : pout[0];
    p->fd[1] = perr[0];
    p->fd[2] = pctl[0];
    p->in_fd = -1;
    if (master >= 0 && (flags & AGENT_STDIN))
        p->in_fd = fcntl(master, F_DUPFD_CLOEXEC, 3);
    else if (pin[1] >= 0)
        p->in_fd = pin[1];
    pin[1] = -1;
    master = pout[0] = perr[0] = pctl[0] = -1;
    p->cg = cg;
    cg = NULL;
    p->grace_ms = grace_ms ? grace_ms : 1000;
    if (deadline_ms)
        p->deadline_at = now_ms() + deadline_ms;
    for (int i = 0; i < 3; i++)
        if (p->fd[i] >= 0)
            fcntl(p->fd[i], F_SETFL, O_NONBLOCK);
    if (p->in_fd >= 0)
        fcntl(p->in_fd, F_SETFL, O_NONBLOCK);
    unsigned char pidbuf[4];
    agent_put_u32(pidbuf, (uint32_t)pid);
    send_frame(AGENT_STARTED, id, pidbuf, 4);
out:
    if (cg)
        cg_give(cg);
    close_fd(&master);
    for (int i = 0; i < 2; i++) {
        close_fd(&pin[i]);
        close_fd(&pout[i]);
        close_fd(&perr[i]);
        close_fd(&pctl[i]);
        close_fd(&pexec[i]);
    }
    free(argv);
    free(add);
    free(env);
}

/* Forward what a process's fd has; close it at end of file. */
static void pump(proc *p, int i)
{
    static const uint8_t types[3] = { AGENT_OUT, AGENT_ERR, AGENT_CTL };
    char buf[AGENT_CHUNK];
    ssize_t n;

    do
        n = read(p->fd[i], buf, sizeof(buf));
    while (n < 0 && errno == EINTR);
    if (n > 0)
        send_frame(types[i], p->id, buf, (size_t)n);
    else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
        close_fd(&p->fd[i]); /* EIO on a pty whose last holder is gone */
}

/* Write what stdin has buffered; close it when CLOSE came and all is out. */
static void feed(proc *p)
{
    while (p->in_len && p->in_fd >= 0) {
        ssize_t n = write(p->in_fd, p->in_buf, p->in_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            p->in_len = 0; /* it closed its stdin: the rest is not wanted */
            close_fd(&p->in_fd);
            break;
        }
        memmove(p->in_buf, p->in_buf + n, p->in_len - (size_t)n);
        p->in_len -= (size_t)n;
    }
    if (!p->in_len && p->in_eof)
        close_fd(&p->in_fd);
}

static void stdin_data(proc *p, const unsigned char *data, size_t len)
{
    if (p->in_fd < 0 || p->in_eof)
        return;
    if (p->in_len + len > STDIN_MAX)
        len = STDIN_MAX - p->in_len; /* a runaway host: the rest is dropped */
    if (p->in_len + len > p->in_cap) {
        size_t cap = p->in_cap ? p->in_cap : 65536;
        while (cap < p->in_len + len)
            cap *= 2;
        unsigned char *b = realloc(p->in_buf, cap);
        if (!b)
            return;
        p->in_buf = b;
        p->in_cap = cap;
    }
    memcpy(p->in_buf + p->in_len, data, len);
    p->in_len += len;
    feed(p);
}

/* Reap orphans that have died, without blocking. A leader is never reaped
 * here: leader_ended does that, once the rest of its tree is gone. */
static void collect(void)
{
    pid_t kids[1024];
    int n = proc_children(getpid(), kids, (int)(sizeof(kids) / sizeof(kids[0])));

    for (int i = 0; i < n; i++) {
        bool leader = false;
        for (int k = 0; k < MAX_PROCS && !leader; k++)
            leader = procs[k].used && procs[k].pid == kids[i];
        if (!leader)
            waitpid(kids[i], NULL, WNOHANG);
    }
}

/* A leader ended (its zombie still holds the group id): the rest of its
 * tree goes, then the leader is reaped, then we wait (bounded) for the
 * killed to be gone. */
static void leader_ended(proc *p)
{
    int status = 0;

    kill(-p->pid, SIGKILL);
    if (p->cg)
        cg_group_signal(&p->cg->g, SIGKILL);
    while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
        ;
    p->exited = true;
    p->status = status;
    p->kill_at = 0;
    /* Its orphans came to us when it ended. */
    int64_t until = now_ms() + SETTLE_MS;
    while (kill_orphans() > 0 && now_ms() < until) {
        struct pollfd pfd = { .fd = sigfd, .events = POLLIN };
        poll(&pfd, 1, 10);
        struct signalfd_siginfo si;
        while (read(sigfd, &si, sizeof(si)) > 0)
            ;
        collect();
    }
    if (p->cg) {
        cg_give(p->cg);
        p->cg = NULL;
    }
    close_fd(&p->in_fd);
    p->drain_until = now_ms() + DRAIN_MS;
}

static void finish_if_done(proc *p)
{
    if (!p->exited || p->fd[0] >= 0 || p->fd[1] >= 0 || p->fd[2] >= 0)
        return;
    unsigned char buf[12];
    if (WIFEXITED(p->status)) {
        agent_put_u32(buf, 0);
        agent_put_u32(buf + 4, (uint32_t)WEXITSTATUS(p->status));
    } else {
        agent_put_u32(buf, 1);
        agent_put_u32(buf + 4, (uint32_t)(WIFSIGNALED(p->status) ? WTERMSIG(p->status) : 0));
    }
    agent_put_u32(buf + 8, p->timed_out ? AGENT_EXIT_TIMED_OUT : 0);
    send_frame(AGENT_EXIT, p->id, buf, sizeof(buf));
    free(p->in_buf);
    memset(p, 0, sizeof(*p));
}

/* Whether a leader has ended (not reaped: its zombie holds the group id). */
static bool leader_gone(const proc *p)
{
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    return waitid(P_PID, (id_t)p->pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
           info.si_pid == p->pid;
}

static void reap(void)
{
    struct signalfd_siginfo si;
    while (read(sigfd, &si, sizeof(si)) > 0)
        ;
    for (int i = 0; i < MAX_PROCS; i++) {
        proc *p = &procs[i];
        if (p->used && !p->exited && leader_gone(p))
            leader_ended(p);
    }
    /* Orphans that died of themselves. */
    collect();
}

static void signal_proc(uint32_t id, agent_reader *r)
{
    int sig = (int)agent_read_u32(r);
    uint32_t grace = agent_read_u32(r);
    proc *p = find(id);

    if (r->bad || !p || sig <= 0 || sig >= NSIG)
        return; /* already gone, or nonsense: nothing to do */
    if (!p->exited) {
        signal_tree(p, sig);
        if (sig == SIGKILL)
            p->kill_at = 0;
        else if (grace)
            p->kill_at = now_ms() + grace;
    }
}

static void move_deadline(uint32_t id, agent_reader *r)
{
    uint32_t ms = agent_read_u32(r);
    proc *p = find(id);
    if (!r->bad && p && !p->exited && !p->timed_out)
        p->deadline_at = ms ? now_ms() + ms : 0;
}

/* Everything we started, and everything that came to us, gets SIGKILL. */
static void kill_everything(void)
{
    for (int i = 0; i < MAX_PROCS; i++)
        if (procs[i].used && !procs[i].exited)
            kill(-procs[i].pid, SIGKILL);
    tree_signal(getpid(), SIGKILL, NULL, NULL);
    if (use_cgroup)
        cg_root_remove(&cgroot);
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

static void shutdown_all(int code)
{
    kill_everything();
    _exit(code);
}

/* ---- files ---- */

/* mkdir -p of the folders above @p path. */
static int make_parents(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", path);
    char *slash = strrchr(buf, '/');
    if (!slash || slash == buf)
        return 0;
    *slash = '\0';
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static void check_file(uint32_t id, agent_reader *r)
{
    uint32_t mode = agent_read_u32(r);
    uint64_t size = agent_read_u64(r), mtime = agent_read_u64(r);
    const char *path = agent_read_str(r);
    struct stat st;

    if (!r->bad && lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
        (uint64_t)st.st_size == size &&
        (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec == mtime) {
        if ((st.st_mode & 07777) != (mode & 07777))
            chmod(path, mode & 07777);
        send_frame(AGENT_OK, id, NULL, 0);
    } else {
        send_fail(id, ENOENT, "not there");
    }
}

static void put_open(uint32_t id, agent_reader *r)
{
    uint32_t mode = agent_read_u32(r);
    uint64_t mtime = agent_read_u64(r);
    const char *path = agent_read_str(r);

    if (put.fd >= 0)
        close(put.fd);
    put.fd = -1;
    put.id = id;
    put.mode = mode & 07777;
    put.mtime = mtime;
    put.failed = false;
    if (r->bad) {
        send_fail(id, EINVAL, "bad put request");
        put.failed = true;
        return;
    }
    make_parents(path);
    /* A link there is replaced, never written through. */
    put.fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (put.fd < 0 && errno == ELOOP && unlink(path) == 0)
        put.fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (put.fd < 0) {
        send_fail(id, errno, "cannot write %s: %s", path, strerror(errno));
        put.failed = true;
    }
}

static void put_data(uint32_t id, const unsigned char *data, size_t len)
{
    if (put.fd < 0 || id != put.id)
        return;
    while (len) {
        ssize_t n = write(put.fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            send_fail(id, e, "write: %s", strerror(e));
            close_fd(&put.fd);
            put.failed = true;
            return;
        }
        data += n;
        len -= (size_t)n;
    }
}

static void put_close(uint32_t id)
{
    if (id != put.id || put.failed) {
        put.failed = false;
        return; /* not ours, or failed and said so */
    }
    int e = 0;
    if (fchmod(put.fd, put.mode) < 0)
        e = errno;
    if (put.mtime) {
        struct timespec ts[2] = { { 0, UTIME_OMIT },
                                  { (time_t)(put.mtime / 1000000000u),
                                    (long)(put.mtime % 1000000000u) } };
        futimens(put.fd, ts);
    }
    if (close(put.fd) < 0 && !e)
        e = errno;
    put.fd = -1;
    if (e)
        send_fail(id, e, "close: %s", strerror(e));
    else
        send_frame(AGENT_OK, id, NULL, 0);
}

static void make_dir(uint32_t id, agent_reader *r)
{
    uint32_t mode = agent_read_u32(r);
    const char *path = agent_read_str(r);
    struct stat st;

    if (r->bad) {
        send_fail(id, EINVAL, "bad mkdir request");
        return;
    }
    make_parents(path);
    if (mkdir(path, 0700) < 0 && errno != EEXIST) {
        send_fail(id, errno, "cannot make %s: %s", path, strerror(errno));
        return;
    }
    if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
        send_fail(id, ENOTDIR, "%s is there and not a folder", path);
        return;
    }
    chmod(path, mode & 07777);
    send_frame(AGENT_OK, id, NULL, 0);
}

static void make_link(uint32_t id, agent_reader *r)
{
    const char *target = agent_read_str(r), *path = agent_read_str(r);
    struct stat st;

    if (r->bad) {
        send_fail(id, EINVAL, "bad symlink request");
        return;
    }
    make_parents(path);
    if (lstat(path, &st) == 0 && !S_ISDIR(st.st_mode))
        unlink(path);
    if (symlink(target, path) < 0)
        send_fail(id, errno, "cannot link %s: %s", path, strerror(errno));
    else
        send_frame(AGENT_OK, id, NULL, 0);
}

static void send_info(uint32_t id, char type, const struct stat *st, const char *rel,
                      const char *target)
{
    size_t rl = strlen(rel) + 1, tl = target ? strlen(target) + 1 : 0;
    unsigned char buf[1 + 4 + 8 + 8 + 2 * 4096];
    if (rl > 4096 || tl > 4096)
        return; /* a path too long to carry: left out */
    buf[0] = (unsigned char)type;
    agent_put_u32(buf + 1, (uint32_t)(st->st_mode & 07777));
    agent_put_u64(buf + 5, type == 'f' ? (uint64_t)st->st_size : 0);
    agent_put_u64(buf + 13, (uint64_t)st->st_mtim.tv_sec * 1000000000u +
                                (uint64_t)st->st_mtim.tv_nsec);
    memcpy(buf + 21, rel, rl);
    if (tl)
        memcpy(buf + 21 + rl, target, tl);
    send_frame(AGENT_INFO, id, buf, 21 + rl + tl);
}

/* A file's content in DATA frames: exactly the size INFO said (a file
 * that grows is cut, one that shrinks is padded with zeros). */
static int send_content(uint32_t id, int fd, uint64_t size)
{
    char buf[AGENT_CHUNK];
    while (size) {
        size_t want = size < sizeof(buf) ? (size_t)size : sizeof(buf);
        ssize_t n = read(fd, buf, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0) {
            memset(buf, 0, want);
            n = (ssize_t)want;
        }
        send_frame(AGENT_DATA, id, buf, (size_t)n);
        size -= (uint64_t)n;
    }
    return 0;
}

/* The entries below folder fd, as INFO frames (with DATA for files). */
static int send_tree(uint32_t id, int dfd, const char *rel, int depth, uint64_t max)
{
    DIR *d = fdopendir(dfd);
    struct dirent *de;
    int r = 0;

    if (!d) {
        close(dfd);
        return -errno;
    }
    while (r == 0 && (de = readdir(d))) {
        char sub[4096];
        struct stat st;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        snprintf(sub, sizeof(sub), "%s%s%s", rel, *rel ? "/" : "", de->d_name);
        if (S_ISREG(st.st_mode) && max && (uint64_t)st.st_size > max) {
            continue; /* larger than wanted: left out */
        } else if (S_ISREG(st.st_mode)) {
            int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
            if (fd < 0)
                continue;
            send_info(id, 'f', &st, sub, NULL);
            r = send_content(id, fd, (uint64_t)st.st_size);
            close(fd);
        } else if (S_ISDIR(st.st_mode) && depth < 64) {
            int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
            if (fd < 0)
                continue;
            send_info(id, 'd', &st, sub, NULL);
            r = send_tree(id, fd, sub, depth + 1, max);
        } else if (S_ISLNK(st.st_mode)) {
            char target[4096];
            ssize_t n = readlinkat(dirfd(d), de->d_name, target, sizeof(target) - 1);
            if (n < 0)
                continue;
            target[n] = '\0';
            send_info(id, 'l', &st, sub, target);
        }
    }
    closedir(d);
    return r;
}

static void get_path(uint32_t id, agent_reader *r)
{
    const char *path = agent_read_str(r);
    /* The largest file wanted (0: any); older hosts send none. */
    uint64_t max = r->left >= 8 ? agent_read_u64(r) : 0;
    struct stat st;
    int fd, e = 0;

    if (r->bad) {
        send_fail(id, EINVAL, "bad get request");
        return;
    }
    /* Non-blocking: a FIFO there must not stop the agent. A link is not
     * followed: what it names is not what was written. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
    if (fd >= 0)
        fcntl(fd, F_SETFL, 0);
    if (fd < 0 && errno == ELOOP) {
        send_fail(id, ELOOP, "%s is a symbolic link: not followed", path);
        return;
    }
    if (fd < 0 || fstat(fd, &st) < 0) {
        send_fail(id, errno, "cannot read %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return;
    }
    if (S_ISREG(st.st_mode) && max && (uint64_t)st.st_size > max) {
        close(fd);
        send_fail(id, EFBIG, "%s is %llu bytes: more than the %llu taken", path,
                  (unsigned long long)st.st_size, (unsigned long long)max);
        return;
    }
    if (S_ISREG(st.st_mode)) {
        send_info(id, 'f', &st, "", NULL);
        e = send_content(id, fd, (uint64_t)st.st_size);
        close(fd);
    } else if (S_ISDIR(st.st_mode)) {
        send_info(id, 'd', &st, "", NULL);
        e = send_tree(id, fd, "", 0, max);
    } else {
        close(fd);
        send_fail(id, EINVAL, "%s is neither a file nor a folder", path);
        return;
    }
    if (e)
        send_fail(id, -e, "reading %s: %s", path, strerror(-e));
    else
        send_frame(AGENT_OK, id, NULL, 0);
}

/* ---- the loop ---- */

static void handle(uint8_t type, uint32_t id, const unsigned char *payload, size_t len)
{
    agent_reader r = { payload, len, 0 };
    proc *p;

    switch (type) {
    case AGENT_START: start(id, &r); break;
    case AGENT_SIGNAL: signal_proc(id, &r); break;
    case AGENT_DEADLINE: move_deadline(id, &r); break;
    case AGENT_PING: send_frame(AGENT_PONG, id, NULL, 0); break;
    case AGENT_CHECK: check_file(id, &r); break;
    case AGENT_PUT: put_open(id, &r); break;
    case AGENT_MKDIR: make_dir(id, &r); break;
    case AGENT_SYMLINK: make_link(id, &r); break;
    case AGENT_DATA:
        if ((p = find(id)))
            stdin_data(p, payload, len);
        else
            put_data(id, payload, len);
        break;
    case AGENT_CLOSE:
        if ((p = find(id))) {
            p->in_eof = true;
            feed(p);
        } else {
            put_close(id);
        }
        break;
    case AGENT_CLOSE_CONTROL:
        if ((p = find(id)))
            close_fd(&p->fd[2]);
        break;
    case AGENT_GET: get_path(id, &r); break;
    case AGENT_QUIT: shutdown_all(0); break;
    default: send_fail(id, EPROTO, "unknown request type %u", type); break;
    }
}

/* Timers: deadlines, KILLs after a grace, the end of a drain. */
static void timers(int64_t now)
{
    for (int i = 0; i < MAX_PROCS; i++) {
        proc *p = &procs[i];
        if (!p->used)
            continue;
        if (!p->exited && p->deadline_at && !p->timed_out && now >= p->deadline_at) {
            if (leader_gone(p)) {
                leader_ended(p); /* it ended first: its status decides */
            } else {
                p->timed_out = true;
                signal_tree(p, SIGTERM);
                p->kill_at = now + p->grace_ms;
            }
        }
        if (!p->exited && p->kill_at && now >= p->kill_at) {
            signal_tree(p, SIGKILL);
            p->kill_at = 0;
        }
        if (p->exited && now >= p->drain_until)
            for (int f = 0; f < 3; f++)
                close_fd(&p->fd[f]);
        finish_if_done(p);
    }
}

static int64_t next_timer(void)
{
    int64_t wake = -1;
    for (int i = 0; i < MAX_PROCS; i++) {
        const proc *p = &procs[i];
        int64_t t[3] = { p->exited ? p->drain_until : 0, p->exited ? 0 : p->kill_at,
                         p->exited || p->timed_out ? 0 : p->deadline_at };
        if (!p->used)
            continue;
        for (int k = 0; k < 3; k++)
            if (t[k] && (wake < 0 || t[k] < wake))
                wake = t[k];
    }
    return wake;
}

/* --reap PID: the agent PID (frozen, say) and everything it started. */
static int reap_agent(pid_t pid)
{
    unsigned long long start = proc_start_time(pid);
    char name[96];
    cg_root root;

    if (!start)
        return 0; /* gone already */
    /* A pid can be taken again: only an agent is ours to reap (the same
     * program as this one). */
    char exe[64], a[PATH_MAX], b[PATH_MAX];
    snprintf(exe, sizeof(exe), "/proc/%d/exe", (int)pid);
    ssize_t la = readlink(exe, a, sizeof(a) - 1), lb = readlink("/proc/self/exe", b, sizeof(b) - 1);
    if (la <= 0 || lb <= 0 || la != lb || memcmp(a, b, (size_t)la) != 0)
        return 0;
    kill(pid, SIGSTOP);
    /* Its tests' cgroups: atx-agent-<pid>-<start> next to its own group. */
    snprintf(name, sizeof(name), CG_PREFIX "%d-%llu", (int)pid, start);
    if (cg_root_at(&root, pid, name, false) == 0)
        cg_root_remove(&root);
    return tree_kill_wait(pid, SETTLE_MS) == 0 ? 0 : 1;
}

static void serve(void)
{
    static unsigned char in[AGENT_HEADER_SIZE + AGENT_MAX_PAYLOAD];
    size_t have = 0;

    for (;;) {
        struct pollfd pfd[2 + 4 * MAX_PROCS];
        proc *who[2 + 4 * MAX_PROCS];
        int which[2 + 4 * MAX_PROCS];
        nfds_t n = 0;
        int64_t now = now_ms(), wake = next_timer();

        pfd[n++] = (struct pollfd){ .fd = 0, .events = POLLIN };
        pfd[n++] = (struct pollfd){ .fd = sigfd, .events = POLLIN };
        for (int i = 0; i < MAX_PROCS; i++) {
            proc *p = &procs[i];
            if (!p->used)
                continue;
            for (int k = 0; k < 3; k++) {
                if (p->fd[k] < 0)
                    continue;
                who[n] = p;
                which[n] = k;
                pfd[n++] = (struct pollfd){ .fd = p->fd[k], .events = POLLIN };
            }
            if (p->in_fd >= 0 && p->in_len) {
                who[n] = p;
                which[n] = 3;
                pfd[n++] = (struct pollfd){ .fd = p->in_fd, .events = POLLOUT };
            }
        }
        int timeout = wake < 0 ? -1 : wake <= now ? 0 : (int)(wake - now);
        int k = poll(pfd, n, timeout);
        if (k < 0 && errno != EINTR)
            shutdown_all(1);
        for (nfds_t i = 2; k > 0 && i < n; i++) {
            if (!pfd[i].revents)
                continue;
            if (which[i] == 3)
                feed(who[i]);
            else if (who[i]->fd[which[i]] >= 0)
                pump(who[i], which[i]);
        }
        if (k > 0 && pfd[1].revents)
            reap();
        timers(now_ms());
        if (k > 0 && pfd[0].revents) {
            ssize_t got = read(0, in + have, sizeof(in) - have);
            if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN))
                shutdown_all(0); /* the connection is gone: so is everything */
            if (got > 0)
                have += (size_t)got;
            size_t off = 0;
            agent_frame f;
            int whole;
            while ((whole = agent_frame_next(in + off, have - off, &f)) > 0) {
                handle(f.type, f.id, f.payload, f.len);
                off += AGENT_HEADER_SIZE + (size_t)f.len;
            }
            if (whole < 0)
                shutdown_all(2); /* not our protocol */
            memmove(in, in + off, have - off);
            have -= off;
        }
    }
}

int main(int argc, char **argv)
{
    sigset_t chld;

    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("atx-agent %s (protocol %d)\n", ATX_AGENT_VERSION, AGENT_PROTOCOL_VERSION);
        return 0;
    }
    if (argc > 2 && strcmp(argv[1], "--reap") == 0)
        return reap_agent((pid_t)atoi(argv[2]));
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    sigfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
    fcntl(0, F_SETFD, FD_CLOEXEC);
    fcntl(1, F_SETFD, FD_CLOEXEC);

    /* Tests in cgroups of their own where the system lets us make them
     * (ATX_AGENT_NO_CGROUP=1 turns it off: the subreaper alone then). */
    const char *no = getenv("ATX_AGENT_NO_CGROUP");
    if (!no || strcmp(no, "1") != 0) {
        char name[96], tag[64];
        cg_owner_tag(tag, sizeof(tag));
        snprintf(name, sizeof(name), CG_PREFIX "%s", tag);
        use_cgroup = cg_root_open(&cgroot, name) == 0;
        if (use_cgroup)
            cg_root_reap_stale(&cgroot, CG_PREFIX);
    }

    unsigned char hello[12 + sizeof(ATX_AGENT_VERSION)];
    agent_put_u32(hello, AGENT_PROTOCOL_VERSION);
    agent_put_u32(hello + 4, (uint32_t)getpid());
    agent_put_u32(hello + 8, use_cgroup ? AGENT_FEATURE_CGROUP : 0);
    memcpy(hello + 12, ATX_AGENT_VERSION, sizeof(ATX_AGENT_VERSION));
    send_frame(AGENT_HELLO, 0, hello, sizeof(hello));
    serve();
    return 0;
}
