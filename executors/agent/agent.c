/*
 * atx-agent: the system-side agent. One runs per leased system, started once
 * per lease over one byte stream (its stdin/stdout: a pipe on this host, an
 * SSH channel, a `podman exec -i`), and runs the tests atx sends it.
 *
 * Each test runs in its own session and process group, with its stdout and
 * stderr (merged or not, or on a pseudo-terminal) and optionally the
 * test-control channel on fd 3 streamed back in frames. When a test's main
 * process ends, the rest of its group is killed; when the connection ends,
 * everything the agent started is killed, including what escaped into other
 * sessions (the agent is a child subreaper, so orphans come back to it).
 *
 * Static, libc only, single-threaded: one poll loop. See protocol.h.
 */
#define _GNU_SOURCE 1
#include "protocol.h"

#include <dirent.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
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
#define DRAIN_MS 500    /* after a test ends, what still holds its pipes */

extern char **environ;

typedef struct proc {
    bool used;
    uint32_t id;
    pid_t pid;
    int fd[3];          /* out, err, ctl (-1 when closed) */
    bool exited;
    int status;
    int64_t kill_at;    /* ms: SIGKILL the group then (0: none) */
    int64_t drain_until;
} proc;

static proc procs[MAX_PROCS];
static int sigfd = -1;
static int put_fd = -1;
static uint32_t put_id;

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
    unsigned char buf[4 + 512];
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

/* ---- processes ---- */

static proc *find(uint32_t id)
{
    for (int i = 0; i < MAX_PROCS; i++)
        if (procs[i].used && procs[i].id == id)
            return &procs[i];
    return NULL;
}

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
    uint32_t argc = agent_read_u32(r);
    char **argv = NULL, **add = NULL, **env = NULL;
    int pout[2] = { -1, -1 }, perr[2] = { -1, -1 }, pctl[2] = { -1, -1 }, pexec[2] = { -1, -1 };
    int master = -1;
    char slave[128] = "";
    proc *p = NULL;

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
    add = r->bad ? NULL : calloc(envc + 2, sizeof(char *));
    for (uint32_t i = 0; add && i < envc; i++)
        add[i] = (char *)agent_read_str(r);
    const char *cwd = agent_read_str(r);
    if (!argv || !add || r->bad) {
        send_fail(id, EINVAL, "bad start request");
        goto out;
    }
    if (flags & AGENT_CONTROL)
        add[envc++] = "ATEX_TEST_CONTROL=3";
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
    } else if (pipe2(pout, O_CLOEXEC) < 0 ||
               (!(flags & AGENT_MERGE_OUTPUT) && pipe2(perr, O_CLOEXEC) < 0)) {
        send_fail(id, errno, "cannot make pipes: %s", strerror(errno));
        goto out;
    }
    if (((flags & AGENT_CONTROL) && pipe2(pctl, O_CLOEXEC) < 0) || pipe2(pexec, O_CLOEXEC) < 0) {
        send_fail(id, errno, "cannot make pipes: %s", strerror(errno));
        goto out;
    }

    const char *path = resolve(argv[0], env);
    pid_t pid = fork();
    if (pid < 0) {
        send_fail(id, errno, "fork: %s", strerror(errno));
        goto out;
    }
    if (pid == 0) {
        /* The child: only async-signal-safe calls from here to exec. */
        /* exec resets caught signals; only what we ignore or block stays. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
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
            int devnull = open("/dev/null", O_RDONLY);
            dup2(devnull, 0);
            dup2(pout[1], 1);
            dup2(perr[1] >= 0 ? perr[1] : pout[1], 2);
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
    master = pout[0] = perr[0] = pctl[0] = -1;
    for (int i = 0; i < 3; i++)
        if (p->fd[i] >= 0)
            fcntl(p->fd[i], F_SETFL, O_NONBLOCK);
    unsigned char pidbuf[4];
    agent_put_u32(pidbuf, (uint32_t)pid);
    send_frame(AGENT_STARTED, id, pidbuf, 4);
out:
    close_fd(&master);
    for (int i = 0; i < 2; i++) {
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
    char buf[65536];
    ssize_t n;

    do
        n = read(p->fd[i], buf, sizeof(buf));
    while (n < 0 && errno == EINTR);
    if (n > 0)
        send_frame(types[i], p->id, buf, (size_t)n);
    else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
        close_fd(&p->fd[i]); /* EIO on a pty whose last holder is gone */
}

/* A leader ended: kill what is left of its group, then reap it. */
static void leader_ended(proc *p, int status_hint, bool reaped)
{
    int status = status_hint;

    kill(-p->pid, SIGKILL);
    if (!reaped)
        while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
            ;
    p->exited = true;
    p->status = status;
    p->drain_until = now_ms() + DRAIN_MS;
}

static void finish_if_done(proc *p)
{
    if (!p->exited || p->fd[0] >= 0 || p->fd[1] >= 0 || p->fd[2] >= 0)
        return;
    unsigned char buf[8];
    if (WIFEXITED(p->status)) {
        agent_put_u32(buf, 0);
        agent_put_u32(buf + 4, (uint32_t)WEXITSTATUS(p->status));
    } else {
        agent_put_u32(buf, 1);
        agent_put_u32(buf + 4, (uint32_t)(WIFSIGNALED(p->status) ? WTERMSIG(p->status) : 0));
    }
    send_frame(AGENT_EXIT, p->id, buf, 8);
    p->used = false;
}

static void reap(void)
{
    struct signalfd_siginfo si;
    while (read(sigfd, &si, sizeof(si)) > 0)
        ;
    for (int i = 0; i < MAX_PROCS; i++) {
        proc *p = &procs[i];
        siginfo_t info;
        if (!p->used || p->exited)
            continue;
        memset(&info, 0, sizeof(info));
        if (waitid(P_PID, (id_t)p->pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
            info.si_pid == p->pid)
            leader_ended(p, 0, false);
    }
    /* Orphans that came to us as the subreaper. */
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < MAX_PROCS; i++)
            if (procs[i].used && !procs[i].exited && procs[i].pid == pid)
                leader_ended(&procs[i], status, true);
    }
}

static void signal_proc(uint32_t id, agent_reader *r)
{
    int sig = (int)agent_read_u32(r);
    uint32_t grace = agent_read_u32(r);
    proc *p = find(id);

    if (r->bad || !p || sig <= 0 || sig >= NSIG)
        return; /* already gone, or nonsense: nothing to do */
    if (!p->exited) {
        kill(-p->pid, sig);
        if (grace && sig != SIGKILL)
            p->kill_at = now_ms() + grace;
    }
}

/* Everything we started, and everything that came to us, gets SIGKILL. */
static void kill_everything(void)
{
    for (int i = 0; i < MAX_PROCS; i++)
        if (procs[i].used && !procs[i].exited)
            kill(-procs[i].pid, SIGKILL);
    DIR *d = opendir("/proc");
    struct dirent *de;
    pid_t self = getpid();
    while (d && (de = readdir(d))) {
        char path[64], buf[512];
        pid_t pid = (pid_t)atoi(de->d_name);
        if (pid <= 0)
            continue;
        snprintf(path, sizeof(path), "/proc/%d/stat", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        char *rp = strrchr(buf, ')');
        int ppid = 0;
        if (rp && sscanf(rp + 2, "%*c %d", &ppid) == 1 && ppid == self) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
        }
    }
    if (d)
        closedir(d);
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

static void shutdown_all(int code)
{
    kill_everything();
    _exit(code);
}

/* ---- files ---- */

static void put_open(uint32_t id, agent_reader *r)
{
    uint32_t mode = agent_read_u32(r);
    const char *path = agent_read_str(r);
    if (put_fd >= 0)
        close(put_fd);
    put_fd = r->bad ? -1 : open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode & 07777);
    put_id = id;
    if (put_fd < 0)
        send_fail(id, errno, "cannot write %s: %s", r->bad ? "?" : path, strerror(errno));
}

static void put_data(uint32_t id, const unsigned char *data, size_t len)
{
    if (put_fd < 0 || id != put_id)
        return;
    while (len) {
        ssize_t n = write(put_fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            send_fail(id, errno, "write: %s", strerror(errno));
            close_fd(&put_fd);
            return;
        }
        data += n;
        len -= (size_t)n;
    }
}

static void put_close(uint32_t id)
{
    if (id != put_id)
        return;
    if (put_fd < 0)
        return; /* already failed and said so */
    if (close(put_fd) < 0)
        send_fail(id, errno, "close: %s", strerror(errno));
    else
        send_frame(AGENT_OK, id, NULL, 0);
    put_fd = -1;
}

static void get_file(uint32_t id, agent_reader *r)
{
    const char *path = agent_read_str(r);
    char buf[65536];
    int fd = r->bad ? -1 : open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0) {
        send_fail(id, errno, "cannot read %s: %s", r->bad ? "?" : path, strerror(errno));
        return;
    }
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        send_frame(AGENT_DATA, id, buf, (size_t)n);
    if (n < 0)
        send_fail(id, errno, "read %s: %s", path, strerror(errno));
    else
        send_frame(AGENT_OK, id, NULL, 0);
    close(fd);
}

/* ---- the loop ---- */

static void handle(uint8_t type, uint32_t id, const unsigned char *payload, size_t len)
{
    agent_reader r = { payload, len, 0 };

    switch (type) {
    case AGENT_START: start(id, &r); break;
    case AGENT_SIGNAL: signal_proc(id, &r); break;
    case AGENT_PING: send_frame(AGENT_PONG, id, NULL, 0); break;
    case AGENT_PUT: put_open(id, &r); break;
    case AGENT_DATA: put_data(id, payload, len); break;
    case AGENT_CLOSE: put_close(id); break;
    case AGENT_GET: get_file(id, &r); break;
    case AGENT_QUIT: shutdown_all(0); break;
    default: send_fail(id, EPROTO, "unknown request type %u", type); break;
    }
}

int main(int argc, char **argv)
{
    static unsigned char in[AGENT_HEADER_SIZE + AGENT_MAX_PAYLOAD];
    size_t have = 0;
    sigset_t chld;

    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("atx-agent %s (protocol %d)\n", ATX_AGENT_VERSION, AGENT_PROTOCOL_VERSION);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    sigfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
    fcntl(0, F_SETFD, FD_CLOEXEC);
    fcntl(1, F_SETFD, FD_CLOEXEC);

    unsigned char hello[4 + sizeof(ATX_AGENT_VERSION)];
    agent_put_u32(hello, AGENT_PROTOCOL_VERSION);
    memcpy(hello + 4, ATX_AGENT_VERSION, sizeof(ATX_AGENT_VERSION));
    send_frame(AGENT_HELLO, 0, hello, sizeof(hello));

    for (;;) {
        struct pollfd pfd[2 + 3 * MAX_PROCS];
        proc *who[2 + 3 * MAX_PROCS];
        int which[2 + 3 * MAX_PROCS];
        nfds_t n = 0;
        int64_t now = now_ms(), wake = -1;

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
            int64_t t = p->exited ? p->drain_until : p->kill_at;
            if (t && (wake < 0 || t < wake))
                wake = t;
        }
        int timeout = wake < 0 ? -1 : wake <= now ? 0 : (int)(wake - now);
        int k = poll(pfd, n, timeout);
        if (k < 0 && errno != EINTR)
            shutdown_all(1);
        for (nfds_t i = 2; k > 0 && i < n; i++)
            if (pfd[i].revents)
                pump(who[i], which[i]);
        if (k > 0 && pfd[1].revents)
            reap();
        now = now_ms();
        for (int i = 0; i < MAX_PROCS; i++) {
            proc *p = &procs[i];
            if (!p->used)
                continue;
            if (!p->exited && p->kill_at && now >= p->kill_at) {
                kill(-p->pid, SIGKILL);
                p->kill_at = 0;
            }
            if (p->exited && now >= p->drain_until)
                for (int f = 0; f < 3; f++)
                    close_fd(&p->fd[f]);
            finish_if_done(p);
        }
        if (k > 0 && pfd[0].revents) {
            ssize_t got = read(0, in + have, sizeof(in) - have);
            if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN))
                shutdown_all(0); /* the connection is gone: so is everything */
            if (got > 0)
                have += (size_t)got;
            size_t off = 0;
            while (have - off >= AGENT_HEADER_SIZE) {
                uint32_t len = agent_get_u32(in + off);
                if (len > AGENT_MAX_PAYLOAD)
                    shutdown_all(2); /* not our protocol */
                if (have - off < AGENT_HEADER_SIZE + len)
                    break;
                handle(in[off + 4], agent_get_u32(in + off + 5), in + off + AGENT_HEADER_SIZE,
                       len);
                off += AGENT_HEADER_SIZE + len;
            }
            memmove(in, in + off, have - off);
            have -= off;
        }
    }
}
