/*
 * ssh provisioner: processes on a leased system: the agent, on one exec
 * channel for the whole lease, and `atx-agent --reap` for one that stopped
 * answering (everything else goes through the agent).
 *
 * Each process is an exec channel of the lease's session. Callers get plain
 * socket fds for stdin, stdout and stderr and an eventfd that fires at the
 * end; one pump thread per lease moves the bytes between those fds and the
 * channels. The pump takes the lease's lock only while it talks to libssh
 * and sleeps in poll() without it, so a worker thread can use the session
 * (open a channel, copy files) in between.
 *
 * Signals: sshd refuses SSH "signal" requests for root logins (they need
 * privilege separation), so the command line first prints its pid (sshd
 * made it a session and group leader) and a kill is `kill -s SIG -- -PID`
 * run over a second channel: the whole process group, as on this host.
 */
#define _GNU_SOURCE 1
#include "internal.h"

#include <libssh/callbacks.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define COMMAND_TIMEOUT_NS (10 * ATX_NSEC_PER_SEC)
/* How long after its exit status a process's output may still come. */
#define STRAGGLER_NS (1 * ATX_NSEC_PER_SEC)

typedef struct pending {
    char *buf;
    size_t off, len, cap;
} pending;

struct rproc {
    rproc *next;
    lease *l;                /* NULL once the lease was released under it */
    ssh_channel ch;
    struct ssh_channel_callbacks_struct cb;
    int in_fd;               /* ours: what the caller writes to stdin; -1 */
    int out_fd[2];           /* ours: stdout, stderr (the same fd when merged); -1 */
    int tgt[2];              /* which pending buffer each stream uses */
    int wait_fd;             /* eventfd, readable once done */
    pending pend[2];
    char in_buf[16384];
    size_t in_off, in_len;
    bool in_done;            /* EOF sent, or stdin abandoned */
    bool eof[2];             /* stdout, stderr drained to the remote EOF */
    bool have_status;
    int64_t status_at;       /* when the status came */
    int64_t data_at;         /* when output last came */
    int status, exit_sig;
    int sent_sig;            /* the last signal sent */
    bool closed;             /* we closed the channel */
    bool straggled;          /* ended with its output still held open */
    bool arrived;            /* libssh took in something for it since the
                                last service (in whichever thread) */
    long pid;                /* on the system; 0 until its line came */
    bool pid_done;           /* the pid line is behind us (or never comes) */
    char pid_buf[24];
    size_t pid_len;
    bool done, lost;
    /* the owning thread's (wait and kill_tree) */
    int64_t deadline, grace, kill_at;
    bool timed_out;
};

static const struct { const char *name; int sig; } signals[] = {
    { "ABRT", SIGABRT }, { "ALRM", SIGALRM }, { "FPE", SIGFPE }, { "HUP", SIGHUP },
    { "ILL", SIGILL }, { "INT", SIGINT }, { "KILL", SIGKILL }, { "PIPE", SIGPIPE },
    { "QUIT", SIGQUIT }, { "SEGV", SIGSEGV }, { "TERM", SIGTERM }, { "USR1", SIGUSR1 },
    { "USR2", SIGUSR2 }, { "BUS", SIGBUS }, { "TRAP", SIGTRAP }, { "XCPU", SIGXCPU },
    { "XFSZ", SIGXFSZ }, { "SYS", SIGSYS },
};

static int signal_number(const char *name)
{
    for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
        if (strcmp(signals[i].name, name) == 0)
            return signals[i].sig;
    return SIGKILL;
}

static const char *signal_name(int sig)
{
    for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
        if (signals[i].sig == sig)
            return signals[i].name;
    return "KILL";
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

void sshp_wake(lease *l)
{
    if (l->wake_fd >= 0)
        eventfd_write(l->wake_fd, 1);
}

static void unlock_and_wake(lease *l)
{
    pthread_mutex_unlock(&l->mu);
    sshp_wake(l);
}

/* Stop writing a stream (its reader went away, or the end). */
static void drop_output(rproc *p, int i)
{
    int fd = p->out_fd[i];
    if (fd < 0)
        return;
    if (p->out_fd[0] == fd)
        p->out_fd[0] = -1;
    if (p->out_fd[1] == fd)
        p->out_fd[1] = -1;
    close(fd);
    p->pend[p->tgt[i]].len = 0;
}

/* The process ended (or its connection): the caller sees EOF and wait fires. */
static void finish(rproc *p)
{
    if (p->done)
        return;
    p->done = true;
    drop_output(p, 0);
    drop_output(p, 1);
    close_fd(&p->in_fd);
    for (int t = 0; t < 2; t++) {
        free(p->pend[t].buf);
        p->pend[t] = (pending){ 0 };
    }
    eventfd_write(p->wait_fd, 1);
}

void sshp_lose(lease *l, const char *why)
{
    if (!l->lost) {
        l->lost = true;
        snprintf(l->lost_why, sizeof(l->lost_why), "%s", why && *why ? why : "connection lost");
    }
    for (rproc *p = l->procs; p; p = p->next) {
        if (!p->done) {
            p->lost = true;
            finish(p);
        }
    }
}

static bool broken(ssh_session s)
{
    return !ssh_is_connected(s) || (ssh_get_status(s) & (SSH_CLOSED | SSH_CLOSED_ERROR)) ||
           ssh_get_fd(s) < 0;
}

/* Send what is pending for target t. True if something moved. */
static bool flush(rproc *p, int t)
{
    pending *q = &p->pend[t];
    int fd = p->out_fd[t];

    if (!q->len)
        return false;
    if (fd < 0) {
        q->len = 0;
        return true;
    }
    ssize_t w = send(fd, q->buf + q->off, q->len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return false;
        drop_output(p, t);
        return true;
    }
    q->off += (size_t)w;
    q->len -= (size_t)w;
    if (!q->len)
        q->off = 0;
    return w > 0;
}

static void deliver(rproc *p, int i, const char *data, size_t n);

/* The first line of stdout is the command's pid (see command_line). */
static void take_pid(rproc *p, const char *data, size_t n)
{
    size_t k = 0;
    while (k < n && data[k] != '\n' && p->pid_len < sizeof(p->pid_buf) - 1)
        p->pid_buf[p->pid_len++] = data[k++];
    p->pid_buf[p->pid_len] = '\0';
    bool digits = p->pid_len > 0 && strspn(p->pid_buf, "0123456789") == p->pid_len;
    if (k < n && data[k] == '\n' && digits) {
        p->pid = strtol(p->pid_buf, NULL, 10);
        p->pid_done = true;
        if (k + 1 < n)
            deliver(p, 0, data + k + 1, n - k - 1);
        return;
    }
    if (k == n && digits && p->pid_len < sizeof(p->pid_buf) - 1)
        return; /* more of the line to come */
    /* Not a pid line: it was output. */
    p->pid_done = true;
    deliver(p, 0, p->pid_buf, p->pid_len);
    if (k < n)
        deliver(p, 0, data + k, n - k);
}

static void deliver(rproc *p, int i, const char *data, size_t n)
{
    int fd = p->out_fd[i];
    pending *q = &p->pend[p->tgt[i]];

    if (i == 0 && !p->pid_done) {
        take_pid(p, data, n);
        return;
    }
    if (fd < 0)
        return;
    if (!q->len) {
        ssize_t w = send(fd, data, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            drop_output(p, i);
            return;
        }
        if (w > 0) {
            data += w;
            n -= (size_t)w;
        }
        if (!n)
            return;
    }
    if (q->off + q->len + n > q->cap) {
        if (q->len)
            memmove(q->buf, q->buf + q->off, q->len);
        q->off = 0;
        if (q->len + n > q->cap) {
            size_t cap = q->len + n;
            char *b = realloc(q->buf, cap);
            if (!b) {
                drop_output(p, i);
                return;
            }
            q->buf = b;
            q->cap = cap;
        }
    }
    memcpy(q->buf + q->off + q->len, data, n);
    q->len += n;
}

/* Move what can move for one process. Under l->mu. True on progress. */
static bool service(rproc *p)
{
    bool progress = false;
    char buf[32768];

    if (p->done)
        return false;
    p->arrived = false;
    for (int t = 0; t < 2; t++)
        progress |= flush(p, t);
    for (int i = 0; i < 2; i++) {
        /* A full reader holds its stream back (the SSH window stops the far side). */
        while (!p->eof[i] && !p->pend[p->tgt[i]].len) {
            int n = ssh_channel_read_nonblocking(p->ch, buf, sizeof(buf), i);
            if (n > 0) {
                deliver(p, i, buf, (size_t)n);
                p->data_at = atx_now_ns();
            } else if (n == 0) {
                break;
            } else if (broken(p->l->s)) {
                return progress; /* the pump ends everything */
            } else {
                /* SSH_EOF, or a channel we closed: nothing more comes. */
                p->eof[i] = true;
            }
            progress = true;
        }
    }
    if (p->in_fd >= 0 && !p->in_done) {
        if (!p->in_len) {
            ssize_t n = recv(p->in_fd, p->in_buf, sizeof(p->in_buf), MSG_DONTWAIT);
            if (n > 0) {
                p->in_off = 0;
                p->in_len = (size_t)n;
                progress = true;
            } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                if (!p->closed && !ssh_channel_is_closed(p->ch))
                    ssh_channel_send_eof(p->ch);
                p->in_done = true;
                close_fd(&p->in_fd);
                progress = true;
            }
        }
        if (p->in_len && (p->closed || ssh_channel_is_closed(p->ch))) {
            p->in_len = 0;
            p->in_done = true;
            close_fd(&p->in_fd);
        } else if (p->in_len) {
            uint32_t w = ssh_channel_window_size(p->ch);
            if (w > 0) {
                uint32_t k = p->in_len < w ? (uint32_t)p->in_len : w;
                int n = ssh_channel_write(p->ch, p->in_buf + p->in_off, k);
                if (n > 0) {
                    p->in_off += (size_t)n;
                    p->in_len -= (size_t)n;
                    progress = true;
                } else if (n < 0) {
                    p->in_len = 0;
                    p->in_done = true;
                    close_fd(&p->in_fd);
                }
            }
        }
    }
    if (broken(p->l->s))
        return progress;
    bool drained = !p->pend[0].len && !p->pend[1].len;
    int64_t quiet_since = p->status_at > p->data_at ? p->status_at : p->data_at;
    if ((drained && p->eof[0] && p->eof[1] &&
         (p->have_status || p->closed || ssh_channel_is_closed(p->ch))) ||
        (drained && p->have_status && atx_now_ns() - quiet_since > STRAGGLER_NS)) {
        /* The second rule: the command ended and its output went quiet, but
         * something it left behind holds the output open; like on this
         * host, that does not keep the process from having ended (and the
         * rest of its group is killed when it is waited for). */
        p->straggled = !(p->eof[0] && p->eof[1]);
        finish(p);
        progress = true;
    }
    return progress;
}

static void *pump_main(void *arg)
{
    lease *l = arg;
    size_t cap = 16;
    struct pollfd *pfd = malloc(cap * sizeof(*pfd));

    if (!pfd)
        return NULL;

    pthread_mutex_lock(&l->mu);
    while (!l->stopping) {
        if (!l->lost) {
            ssh_event_dopoll(l->ev, 0); /* take in what has arrived */
            if (broken(l->s))
                sshp_lose(l, ssh_get_error(l->s));
        }
        bool progress;
        do {
            progress = false;
            for (rproc *p = l->procs; p; p = p->next)
                progress |= service(p);
            for (rproc *p = l->procs; p && !progress; p = p->next)
                progress = p->arrived && !p->done;
        } while (progress);
        if (!l->lost && broken(l->s))
            sshp_lose(l, ssh_get_error(l->s));
        /* Keepalives: a quiet session still sends a packet now and then, so
         * a dead connection fails a write (and NATs keep it open). */
        int64_t now = atx_now_ns();
        if (!l->lost && l->prov->keepalive_ns && now >= l->keepalive_at) {
            if (ssh_send_ignore(l->s, "") != SSH_OK && broken(l->s))
                sshp_lose(l, ssh_get_error(l->s));
            l->keepalive_at = now + l->prov->keepalive_ns;
        }

        size_t need = 2;
        for (rproc *p = l->procs; p; p = p->next)
            need += 3;
        if (need > cap) {
            struct pollfd *np = realloc(pfd, need * sizeof(*pfd));
            if (np) {
                pfd = np;
                cap = need;
            }
        }
        size_t n = 0;
        pfd[n++] = (struct pollfd){ .fd = l->wake_fd, .events = POLLIN };
        if (!l->lost)
            pfd[n++] = (struct pollfd){ .fd = ssh_get_fd(l->s), .events = POLLIN };
        for (rproc *p = l->procs; p && n + 3 <= cap; p = p->next) {
            if (p->done)
                continue;
            if (p->in_fd >= 0 && !p->in_done && !p->in_len)
                pfd[n++] = (struct pollfd){ .fd = p->in_fd, .events = POLLIN };
            for (int t = 0; t < 2; t++)
                if (p->pend[t].len && p->out_fd[t] >= 0)
                    pfd[n++] = (struct pollfd){ .fd = p->out_fd[t], .events = POLLOUT };
        }
        int ms = 1000; /* besides keepalives, it only guards against a missed wake-up */
        if (l->prov->keepalive_ns && l->keepalive_at - now < ms * ATX_NSEC_PER_MSEC)
            ms = l->keepalive_at <= now ? 0 : (int)((l->keepalive_at - now) / ATX_NSEC_PER_MSEC + 1);
        pthread_mutex_unlock(&l->mu);
        poll(pfd, n, ms);
        eventfd_t v;
        eventfd_read(l->wake_fd, &v);
        pthread_mutex_lock(&l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    free(pfd);
    return NULL;
}

int sshp_pump_start(lease *l)
{
    int r;

    l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (l->wake_fd < 0)
        return atx_error_set(-errno, "eventfd: %s", strerror(errno));
    if (!(l->ev = ssh_event_new()) || ssh_event_add_session(l->ev, l->s) != SSH_OK) {
        if (l->ev)
            ssh_event_free(l->ev);
        l->ev = NULL;
        return atx_error_set(ATX_EINFRA, "ssh: cannot watch the session of %s", l->id);
    }
    if ((r = pthread_create(&l->pump, NULL, pump_main, l)) != 0) {
        ssh_event_remove_session(l->ev, l->s);
        ssh_event_free(l->ev);
        l->ev = NULL;
        return atx_error_set(-r, "cannot start a thread: %s", strerror(r));
    }
    l->pump_running = true;
    return 0;
}

static void drop_channel(rproc *p)
{
    if (!p->ch)
        return;
    ssh_remove_channel_callbacks(p->ch, &p->cb);
    ssh_channel_free(p->ch);
    p->ch = NULL;
}

void sshp_pump_stop(lease *l)
{
    if (l->pump_running) {
        pthread_mutex_lock(&l->mu);
        l->stopping = true;
        unlock_and_wake(l);
        pthread_join(l->pump, NULL);
        l->pump_running = false;
    }
    pthread_mutex_lock(&l->mu);
    /* Processes still there outlive their system: end them here. */
    for (rproc *p = l->procs, *next; p; p = next) {
        next = p->next;
        if (!p->done) {
            p->lost = true;
            finish(p);
        }
        drop_channel(p);
        p->l = NULL;
        p->next = NULL;
    }
    l->procs = NULL;
    if (l->ev) {
        ssh_event_remove_session(l->ev, l->s);
        ssh_event_free(l->ev);
        l->ev = NULL;
    }
    pthread_mutex_unlock(&l->mu);
    close_fd(&l->wake_fd);
}

/* ---- the atx_proc operations ---- */

static void fill_exit(const rproc *p, atx_exit *ex)
{
    *ex = (atx_exit){ 0 };
    ex->timed_out = p->timed_out;
    if (p->have_status && !p->exit_sig) {
        ex->exited = 1;
        ex->code = p->status;
    } else if (p->exit_sig) {
        ex->signal = p->exit_sig;
    } else if (p->lost) {
        ex->signal = SIGHUP; /* the connection hung up */
    } else {
        ex->signal = p->sent_sig ? p->sent_sig : SIGKILL;
    }
}

/* kill(1) the process group @p pid on the system. Under l->mu. */
static void kill_group(lease *l, long pid, int sig)
{
    const char *name = signal_name(sig);
    char cmd[200];
    int code;

    snprintf(cmd, sizeof(cmd), "kill -s %s -- -%ld 2>/dev/null || kill -s %s %ld 2>/dev/null; true",
             name, pid, name, pid);
    if (sshp_run(l->s, l->id, cmd, COMMAND_TIMEOUT_NS, NULL, 0, &code) == ATX_ELOST)
        sshp_lose(l, ssh_get_error(l->s));
}

/* Signal the process group on the system. Under l->mu. */
static void signal_remote(rproc *p, int sig)
{
    lease *l = p->l;

    if (p->done || !p->ch || l->lost)
        return;
    p->sent_sig = sig;
    if (p->pid > 0) {
        kill_group(l, p->pid, sig);
        return;
    }
    /* No pid (the command did not start): what SSH offers. */
    if (!p->closed) {
        ssh_channel_request_send_signal(p->ch, signal_name(sig));
        if (sig == SIGKILL) {
            ssh_channel_close(p->ch);
            p->closed = true;
        }
    }
}

/* Whether the pid line came (or never will), waiting up to 2 s for it. */
static void await_pid(rproc *p)
{
    lease *l = p->l;
    struct pollfd pfd = { .fd = p->wait_fd, .events = POLLIN };

    for (int i = 0; i < 100; i++) {
        pthread_mutex_lock(&l->mu);
        bool known = p->pid_done || p->done || l->lost;
        pthread_mutex_unlock(&l->mu);
        if (known || poll(&pfd, 1, 20) > 0)
            return;
    }
}

static int proc_kill_tree(void *impl, int sig, int64_t grace_ns)
{
    rproc *p = impl;
    lease *l = p->l;

    if (!l)
        return 0;
    await_pid(p);
    pthread_mutex_lock(&l->mu);
    signal_remote(p, sig);
    unlock_and_wake(l);
    if (grace_ns <= 0 || sig == SIGKILL)
        return 0;
    struct pollfd pfd = { .fd = p->wait_fd, .events = POLLIN };
    int64_t until = atx_now_ns() + grace_ns;
    for (;;) {
        int64_t left = until - atx_now_ns();
        if (left <= 0 || poll(&pfd, 1, (int)(left / ATX_NSEC_PER_MSEC + 1)) > 0)
            break;
    }
    pthread_mutex_lock(&l->mu);
    signal_remote(p, SIGKILL);
    unlock_and_wake(l);
    return 0;
}

static int proc_wait(void *impl, int64_t timeout_ns, atx_exit *ex)
{
    rproc *p = impl;
    int64_t until = timeout_ns < 0 ? INT64_MAX : atx_now_ns() + timeout_ns;

    for (;;) {
        lease *l = p->l;
        bool done = true, lost = true;
        char why[300] = "the system was released";
        if (l) {
            pthread_mutex_lock(&l->mu);
            done = p->done;
            lost = p->lost;
            snprintf(why, sizeof(why), "%s", l->lost_why);
            pthread_mutex_unlock(&l->mu);
        }
        if (done && p->straggled && l) {
            /* What it left behind goes, as on this host. */
            pthread_mutex_lock(&l->mu);
            if (!l->lost && p->pid > 0)
                kill_group(l, p->pid, SIGKILL);
            p->straggled = false;
            unlock_and_wake(l);
        }
        if (done) {
            fill_exit(p, ex);
            if (lost)
                return atx_error_set(ATX_ELOST, "ssh: the connection to %s broke: %s",
                                     l ? l->id : "the system", why);
            return 0;
        }
        int64_t now = atx_now_ns();
        if (p->deadline && !p->timed_out && now >= p->deadline) {
            p->timed_out = true;
            proc_kill_tree(p, SIGTERM, 0);
            p->kill_at = now + (p->grace > 0 ? p->grace : ATX_NSEC_PER_SEC);
            continue;
        }
        if (p->kill_at && now >= p->kill_at) {
            p->kill_at = 0;
            proc_kill_tree(p, SIGKILL, 0);
            continue;
        }
        if (now >= until)
            return ATX_ETIMEDOUT;
        int64_t next = until;
        if (p->deadline && !p->timed_out && p->deadline < next)
            next = p->deadline;
        if (p->kill_at && p->kill_at < next)
            next = p->kill_at;
        int64_t left = next - now;
        int ms = left > 3600 * ATX_NSEC_PER_SEC ? 3600 * 1000 : (int)(left / ATX_NSEC_PER_MSEC + 1);
        struct pollfd pfd = { .fd = p->wait_fd, .events = POLLIN };
        poll(&pfd, 1, ms);
    }
}

static void proc_free(void *impl)
{
    rproc *p = impl;
    lease *l = p->l;

    if (l) {
        pthread_mutex_lock(&l->mu);
        rproc **pp = &l->procs;
        while (*pp && *pp != p)
            pp = &(*pp)->next;
        if (*pp)
            *pp = p->next;
        if (!p->done && !l->lost)
            signal_remote(p, SIGKILL);
        finish(p);
        drop_channel(p);
        unlock_and_wake(l);
    } else {
        finish(p);
    }
    close_fd(&p->wait_fd);
    free(p);
}

static const atx_proc_ops proc_ops = {
    .version = ATX_PROC_OPS_VERSION,
    .wait = proc_wait,
    .kill_tree = proc_kill_tree,
    .free = proc_free,
};

/* ---- spawn ---- */

/* Any libssh call of any thread may take in packets for any channel; these
 * mark what came, so that the pump serves it even with the socket quiet. */
static int on_data(ssh_session s, ssh_channel ch, void *data, uint32_t len, int is_stderr,
                   void *ud)
{
    rproc *p = ud;
    (void)s;
    (void)ch;
    (void)data;
    (void)len;
    (void)is_stderr;
    p->arrived = true;
    return 0; /* it stays buffered for ssh_channel_read_nonblocking */
}

static void on_eof(ssh_session s, ssh_channel ch, void *ud)
{
    (void)s;
    (void)ch;
    ((rproc *)ud)->arrived = true;
}

static void on_exit_status(ssh_session s, ssh_channel ch, int status, void *ud)
{
    rproc *p = ud;
    (void)s;
    (void)ch;
    p->arrived = true;
    p->have_status = true;
    p->status_at = atx_now_ns();
    p->status = status;
}

static void on_exit_signal(ssh_session s, ssh_channel ch, const char *sig, int core,
                           const char *errmsg, const char *lang, void *ud)
{
    rproc *p = ud;
    (void)s;
    (void)ch;
    (void)core;
    (void)errmsg;
    (void)lang;
    p->arrived = true;
    p->have_status = true;
    p->status_at = atx_now_ns();
    p->exit_sig = signal_number(sig ? sig : "");
}

/*
 * The command line for the remote shell: every argument single-quoted, so
 * nothing of a test's name or arguments is interpreted by it.
 *   printf '%d\n' "$$"; unset SSH_CLIENT SSH2_CLIENT;
 *   cd 'DIR' && exec env [-i] 'K=V' ... 'argv0' 'argv1' ...
 */
static char *command_line(const lease *l, const atx_spawn_opts *o)
{
    size_t len = 64 + 4 * strlen(l->workdir);
    for (size_t i = 0; o->argv[i]; i++)
        len += 4 * strlen(o->argv[i]) + 3;
    for (size_t i = 0; o->env && o->env[i]; i++)
        len += 4 * strlen(o->env[i]) + 3;
    if (o->cwd)
        len += 4 * strlen(o->cwd) + 3;
    char *buf = malloc(len), *dir = NULL;
    size_t pos = 0;
    if (!buf)
        return NULL;
    buf[0] = '\0';
    if (o->cwd && o->cwd[0] != '/') {
        if (asprintf(&dir, "%s/%s", l->workdir, o->cwd) < 0) {
            free(buf);
            return NULL;
        }
    }
    const char *cwd = dir ? dir : o->cwd ? o->cwd : l->workdir;
    int bad = 0;
    /* bash sources ~/.bashrc when SSH_CLIENT is set and it is a top-level
     * shell, which every `bash -c` the command starts is, after `exec`
     * lowered SHLVL: tests would pay for (and see) an interactive set-up
     * they do not get on this host. SSH_CONNECTION stays. */
    pos = (size_t)snprintf(buf, len, "printf '%%d\\n' \"$$\"; unset SSH_CLIENT SSH2_CLIENT; ");
    if (*cwd) {
        pos += (size_t)snprintf(buf + pos, len - pos, "cd ");
        bad |= sshp_quote(buf, len, &pos, cwd);
        pos += (size_t)snprintf(buf + pos, len - pos, " && ");
    }
    pos += (size_t)snprintf(buf + pos, len - pos, "exec ");
    bool env = (o->env && o->env[0]) || (o->flags & ATX_SPAWN_CLEAR_ENV);
    if (env)
        pos += (size_t)snprintf(buf + pos, len - pos, "env %s",
                                (o->flags & ATX_SPAWN_CLEAR_ENV) ? "-i " : "");
    for (size_t i = 0; o->env && o->env[i]; i++) {
        if (!strchr(o->env[i], '='))
            continue;
        bad |= sshp_quote(buf, len, &pos, o->env[i]);
        pos += (size_t)snprintf(buf + pos, len - pos, " ");
    }
    for (size_t i = 0; o->argv[i]; i++) {
        if (i)
            pos += (size_t)snprintf(buf + pos, len - pos, " ");
        bad |= sshp_quote(buf, len, &pos, o->argv[i]);
    }
    free(dir);
    if (bad) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* Socket pairs: [0] is the caller's, [1] ours. */
static int pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return atx_error_set(-errno, "socketpair: %s", strerror(errno));
    return 0;
}

int sshp_spawn(void *impl, const atx_spawn_opts *o, atx_proc **out)
{
    lease *l = impl;
    int in[2] = { -1, -1 }, so[2] = { -1, -1 }, se[2] = { -1, -1 };
    char *cmd = command_line(l, o);
    rproc *p = calloc(1, sizeof(*p));
    int r = 0;

    if (!cmd || !p) {
        r = atx_error_set(ATX_ENOMEM, "out of memory");
        goto fail;
    }
    p->l = l;
    p->in_fd = p->out_fd[0] = p->out_fd[1] = -1;
    p->wait_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->wait_fd < 0) {
        r = atx_error_set(-errno, "eventfd: %s", strerror(errno));
        goto fail;
    }
    if (((o->flags & ATX_SPAWN_STDIN_PIPE) && (r = pair(in)) < 0) ||
        ((o->flags & ATX_SPAWN_STDOUT_PIPE) && (r = pair(so)) < 0) ||
        ((o->flags & ATX_SPAWN_STDERR_PIPE) && !(o->flags & ATX_SPAWN_STDERR_TO_STDOUT) &&
         (r = pair(se)) < 0))
        goto fail;
    p->in_fd = in[1];
    p->out_fd[0] = so[1];
    p->out_fd[1] = (o->flags & ATX_SPAWN_STDERR_TO_STDOUT) ? so[1] : se[1];
    p->tgt[0] = 0;
    p->tgt[1] = (o->flags & ATX_SPAWN_STDERR_TO_STDOUT) ? 0 : 1;
    in[1] = so[1] = se[1] = -1;
    p->deadline = o->deadline_ns;
    p->grace = o->kill_grace_ns;
    ssh_callbacks_init(&p->cb);
    p->cb.userdata = p;
    p->cb.channel_data_function = on_data;
    p->cb.channel_eof_function = on_eof;
    p->cb.channel_close_function = on_eof;
    p->cb.channel_exit_status_function = on_exit_status;
    p->cb.channel_exit_signal_function = on_exit_signal;

    pthread_mutex_lock(&l->mu);
    if (l->lost) {
        r = atx_error_set(ATX_ELOST, "ssh: the connection to %s broke: %s", l->id, l->lost_why);
        pthread_mutex_unlock(&l->mu);
        goto fail;
    }
    const char *what = "open a channel";
    if (!(p->ch = ssh_channel_new(l->s)) || ssh_channel_open_session(p->ch) != SSH_OK ||
        ssh_set_channel_callbacks(p->ch, &p->cb) != SSH_OK ||
        (what = "start a command", ssh_channel_request_exec(p->ch, cmd) != SSH_OK)) {
        if (broken(l->s))
            sshp_lose(l, ssh_get_error(l->s));
        if (l->lost)
            r = atx_error_set(ATX_ELOST, "ssh: the connection to %s broke: %s", l->id,
                              l->lost_why);
        else
            r = atx_error_set(ATX_EINFRA, "ssh: cannot %s on %s: %s", what, l->id,
                              ssh_get_error(l->s));
        drop_channel(p);
        unlock_and_wake(l);
        goto fail;
    }
    if (!(o->flags & ATX_SPAWN_STDIN_PIPE)) {
        ssh_channel_send_eof(p->ch);
        p->in_done = true;
    }
    p->next = l->procs;
    l->procs = p;
    unlock_and_wake(l);
    free(cmd);
    if ((r = atx_proc_new(&proc_ops, p, in[0], so[0],
                          (o->flags & ATX_SPAWN_STDERR_TO_STDOUT) ? -1 : se[0], p->wait_fd,
                          out)) < 0) {
        proc_free(p);
        close_fd(&in[0]);
        close_fd(&so[0]);
        close_fd(&se[0]);
    }
    return r;

fail:
    free(cmd);
    if (p) {
        close_fd(&p->in_fd);
        close_fd(&p->out_fd[0]);
        close_fd(&p->out_fd[1]);
        close_fd(&p->wait_fd);
        free(p);
    }
    for (int i = 0; i < 2; i++) {
        close_fd(&in[i]);
        close_fd(&so[i]);
        close_fd(&se[i]);
    }
    return r;
}
