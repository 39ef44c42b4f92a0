/* The host side of the agent protocol. */
#define _GNU_SOURCE 1
#include "client.h"

#include <atx/error.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct agent_client {
    atx_proc *proc;
    int in, out;              /* to the agent, from the agent */
    unsigned char *buf;       /* received, not yet handled */
    size_t have, cap;
    uint32_t next_id;
    char system_id[128];
};

/* A received frame, pointing into the client's buffer. */
typedef struct frame {
    uint8_t type;
    uint32_t id;
    const unsigned char *payload;
    uint32_t len;
} frame;

static int lost(agent_client *c, const char *what)
{
    return atx_error_set(ATX_ELOST, "the agent on %s is gone (%s)", c->system_id, what);
}

/* write() that turns a broken pipe into EPIPE without SIGPIPE, whatever
 * the program does with the signal: block it in this thread for the call
 * and take a pending one back. */
static ssize_t write_nosig(int fd, const void *buf, size_t len)
{
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    ssize_t n = write(fd, buf, len);
    int e = errno;
    if (n < 0 && e == EPIPE) {
        struct timespec zero = { 0, 0 };
        sigset_t pending;
        sigpending(&pending);
        if (sigismember(&pending, SIGPIPE))
            sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
    return n;
}

static int send_frame(agent_client *c, uint8_t type, uint32_t id, const void *payload, size_t len)
{
    unsigned char h[AGENT_HEADER_SIZE];
    agent_put_u32(h, (uint32_t)len);
    h[4] = type;
    agent_put_u32(h + 5, id);
    const unsigned char *parts[2] = { h, payload };
    size_t lens[2] = { sizeof(h), len };
    for (int i = 0; i < 2; i++) {
        const unsigned char *p = parts[i];
        size_t n = lens[i];
        while (n) {
            ssize_t w = write_nosig(c->in, p, n);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0 && errno == EAGAIN) {
                struct pollfd pfd = { .fd = c->in, .events = POLLOUT };
                if (poll(&pfd, 1, 10000) <= 0)
                    return lost(c, "it stopped reading");
                continue;
            }
            if (w <= 0)
                return lost(c, strerror(errno));
            p += w;
            n -= (size_t)w;
        }
    }
    return 0;
}

/* Read what is there (waiting up to timeout_ms, -1 forever); 0 or ATX_ELOST. */
static int fill(agent_client *c, int timeout_ms)
{
    struct pollfd pfd = { .fd = c->out, .events = POLLIN };
    int k;

    do
        k = poll(&pfd, 1, timeout_ms);
    while (k < 0 && errno == EINTR);
    if (k <= 0)
        return k == 0 ? 0 : lost(c, strerror(errno));
    if (c->cap - c->have < 65536) {
        size_t cap = c->cap ? c->cap * 2 : 131072;
        unsigned char *b = realloc(c->buf, cap);
        if (!b)
            return atx_error_set(ATX_ENOMEM, "out of memory");
        c->buf = b;
        c->cap = cap;
    }
    ssize_t n = read(c->out, c->buf + c->have, c->cap - c->have);
    if (n == 0)
        return lost(c, "end of stream");
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : lost(c, strerror(errno));
    c->have += (size_t)n;
    return 0;
}

/* The next complete frame, or 0 when none is buffered; < 0 on garbage. */
static int next_frame(agent_client *c, size_t *off, frame *f)
{
    if (c->have - *off < AGENT_HEADER_SIZE)
        return 0;
    const unsigned char *h = c->buf + *off;
    uint32_t len = agent_get_u32(h);
    if (len > AGENT_MAX_PAYLOAD)
        return lost(c, "a frame too large: not the atx agent protocol");
    if (c->have - *off < AGENT_HEADER_SIZE + (size_t)len)
        return 0;
    f->type = h[4];
    f->id = agent_get_u32(h + 5);
    f->payload = h + AGENT_HEADER_SIZE;
    f->len = len;
    *off += AGENT_HEADER_SIZE + len;
    return 1;
}

static void consume(agent_client *c, size_t off)
{
    if (off == 0)
        return;
    memmove(c->buf, c->buf + off, c->have - off);
    c->have -= off;
}

/* Wait for a frame of one of the types for id (others are dropped). */
static int wait_for(agent_client *c, uint32_t id, uint8_t t1, uint8_t t2, int64_t timeout_ns,
                    frame *f, unsigned char **copy)
{
    int64_t until = timeout_ns < 0 ? -1 : atx_now_ns() + timeout_ns;
    for (;;) {
        size_t off = 0;
        int r;
        while ((r = next_frame(c, &off, f)) > 0) {
            if (f->id == id && (f->type == t1 || f->type == t2)) {
                *copy = malloc(f->len + 1);
                if (!*copy)
                    return atx_error_set(ATX_ENOMEM, "out of memory");
                memcpy(*copy, f->payload, f->len);
                (*copy)[f->len] = 0;
                f->payload = *copy;
                consume(c, off);
                return 0;
            }
        }
        if (r < 0)
            return r;
        consume(c, off);
        int ms = -1;
        if (until >= 0) {
            int64_t left = until - atx_now_ns();
            if (left <= 0)
                return atx_error_set(ATX_ETIMEDOUT, "the agent on %s did not answer",
                                     c->system_id);
            ms = (int)(left / 1000000 + 1);
        }
        if ((r = fill(c, ms)) < 0)
            return r;
    }
}

int agent_client_start(atx_system *sys, const char *agent_path, agent_client **out)
{
    const char *argv[] = { agent_path, NULL };
    atx_spawn_opts o = ATX_SPAWN_OPTS_INIT;
    agent_client *c = calloc(1, sizeof(*c));
    frame f;
    unsigned char *hello = NULL;
    int r;

    if (!c)
        return atx_error_set(ATX_ENOMEM, "out of memory");
    snprintf(c->system_id, sizeof(c->system_id), "%s", atx_system_id(sys));
    o.argv = argv;
    o.flags = ATX_SPAWN_STDIN_PIPE | ATX_SPAWN_STDOUT_PIPE;
    if ((r = atx_system_spawn(sys, &o, &c->proc)) < 0) {
        free(c);
        return atx_error_set(ATX_EINFRA, "cannot start the agent on %s: %s",
                             atx_system_id(sys), atx_error_last()->message);
    }
    c->in = atx_proc_stdin_fd(c->proc);
    c->out = atx_proc_stdout_fd(c->proc);
    fcntl(c->in, F_SETFL, O_NONBLOCK);
    fcntl(c->out, F_SETFL, O_NONBLOCK);
    c->next_id = 1;
    r = wait_for(c, 0, AGENT_HELLO, AGENT_HELLO, 30 * ATX_NSEC_PER_SEC, &f, &hello);
    if (r == 0 && (f.len < 4 || agent_get_u32(f.payload) != AGENT_PROTOCOL_VERSION))
        r = atx_error_set(ATX_EINFRA, "the agent on %s speaks protocol %u, atx speaks %d",
                          c->system_id, f.len >= 4 ? agent_get_u32(f.payload) : 0,
                          AGENT_PROTOCOL_VERSION);
    free(hello);
    if (r < 0) {
        r = atx_error_set(ATX_EINFRA, "cannot start the agent on %s: %s", c->system_id,
                          atx_error_last()->message);
        agent_client_free(c);
        return r;
    }
    *out = c;
    return 0;
}

int agent_default_path(char *buf, size_t len)
{
    Dl_info info;
    struct stat st;

    buf[0] = '\0';
    if (dladdr((void *)agent_default_path, &info) && info.dli_fname) {
        const char *slash = strrchr(info.dli_fname, '/');
        int n = slash ? (int)(slash - info.dli_fname) : 0;
        snprintf(buf, len, "%.*s/../atx-agent", n, info.dli_fname);
        char *real = realpath(buf, NULL);
        if (real) {
            snprintf(buf, len, "%s", real);
            free(real);
        }
    }
    if (!*buf || stat(buf, &st) < 0 || !S_ISREG(st.st_mode) || !(st.st_mode & 0111))
        return atx_error_set(ATX_ENOTFOUND, "the agent program %s is missing or not executable",
                             *buf ? buf : "atx-agent");
    return 0;
}

int agent_client_start_on(atx_system *sys, const char *local_agent, const char *tag,
                          agent_client **out)
{
    char remote[PATH_MAX];
    const char *work = atx_system_workdir(sys);
    int r;

    if (atx_system_shares_host(sys))
        return agent_client_start(sys, local_agent, out);
    if (!work)
        return atx_error_set(ATX_EINFRA, "system %s has no work directory for the agent",
                             atx_system_id(sys));
    snprintf(remote, sizeof(remote), "%s/atx-agent-%s", work, tag);
    if ((r = atx_system_copy_in(sys, local_agent, remote)) < 0)
        return atx_error_set(ATX_EINFRA, "cannot upload the agent to %s: %s", atx_system_id(sys),
                             atx_error_last()->message);
    return agent_client_start(sys, remote, out);
}

void agent_client_free(agent_client *c)
{
    if (!c)
        return;
    if (c->proc) {
        send_frame(c, AGENT_QUIT, 0, NULL, 0);
        atx_proc_close_stdin(c->proc); /* end of stream: the agent quits */
        atx_exit ex;
        if (atx_proc_wait(c->proc, 5 * ATX_NSEC_PER_SEC, &ex) < 0)
            atx_proc_kill_tree(c->proc, SIGKILL, 0);
        atx_proc_free(c->proc);
    }
    free(c->buf);
    free(c);
}

/* Append a string (with its NUL) or a u32 to a growing payload. */
typedef struct buf {
    unsigned char *p;
    size_t len, cap;
    bool oom;
} buf;

static void put(buf *b, const void *data, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        while (cap < b->len + n)
            cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void put_u32(buf *b, uint32_t v)
{
    unsigned char x[4];
    agent_put_u32(x, v);
    put(b, x, 4);
}

static void put_str(buf *b, const char *s)
{
    put(b, s ? s : "", strlen(s ? s : "") + 1);
}

int agent_client_run(agent_client *c, const agent_run_opts *o, const agent_sink *sink,
                     agent_result *res)
{
    uint32_t id = c->next_id++;
    buf b = { 0 };
    uint32_t argc = 0, envc = 0;
    int r;
    bool started = false, signalled = false;
    int64_t kill_at = 0;

    memset(res, 0, sizeof(*res));
    while (o->argv[argc])
        argc++;
    while (o->env && o->env[envc])
        envc++;
    put_u32(&b, o->flags);
    put_u32(&b, argc);
    for (uint32_t i = 0; i < argc; i++)
        put_str(&b, o->argv[i]);
    put_u32(&b, envc);
    for (uint32_t i = 0; i < envc; i++)
        put_str(&b, o->env[i]);
    put_str(&b, o->cwd);
    if (b.oom || b.len > AGENT_MAX_PAYLOAD) {
        free(b.p);
        return atx_error_set(ATX_EINVAL, "the command and environment are too large");
    }
    r = send_frame(c, AGENT_START, id, b.p, b.len);
    free(b.p);
    if (r < 0)
        return r;

    for (;;) {
        size_t off = 0;
        frame f;
        while ((r = next_frame(c, &off, &f)) > 0) {
            if (f.id != id)
                continue;
            int keep = 0;
            switch (f.type) {
            case AGENT_STARTED:
                started = true;
                break;
            case AGENT_FAIL: {
                agent_reader rd = { f.payload, f.len, 0 };
                agent_read_u32(&rd);
                const char *msg = agent_read_str(&rd);
                if (!started) {
                    r = atx_error_set(ATX_ESPAWN, "%s", msg ? msg : "the agent refused");
                    consume(c, off);
                    return r;
                }
                break;
            }
            case AGENT_OUT:
            case AGENT_ERR:
                if (sink && sink->output)
                    keep = sink->output(sink->ud, f.type == AGENT_ERR, (const char *)f.payload,
                                        f.len);
                break;
            case AGENT_CTL:
                if (sink && sink->control)
                    keep = sink->control(sink->ud, (const char *)f.payload, f.len);
                break;
            case AGENT_EXIT: {
                agent_reader rd = { f.payload, f.len, 0 };
                uint32_t kind = agent_read_u32(&rd), v = agent_read_u32(&rd);
                res->exited = kind == 0;
                res->code = kind == 0 ? (int)v : 0;
                res->signal = kind == 0 ? 0 : (int)v;
                consume(c, off);
                return 0;
            }
            default:
                break;
            }
            if (keep < 0 && !res->aborted) {
                unsigned char sig[8];
                agent_put_u32(sig, SIGKILL);
                agent_put_u32(sig + 4, 0);
                res->aborted = 1;
                if ((r = send_frame(c, AGENT_SIGNAL, id, sig, 8)) < 0)
                    return r;
            }
        }
        consume(c, off);
        if (r < 0)
            return r;

        /* Deadline, cancel, and the KILL after a grace. */
        int64_t now = atx_now_ns();
        int64_t deadline = o->deadline_ns ? *o->deadline_ns : 0;
        unsigned char sig[8];
        int send_sig = 0;
        uint32_t grace_ms = (uint32_t)(o->grace_ns / 1000000);
        if (!signalled && deadline && now >= deadline) {
            res->timed_out = 1;
            signalled = true;
            send_sig = SIGTERM;
        }
        if (!signalled && o->cancel_fd >= 0) {
            struct pollfd cp = { .fd = o->cancel_fd, .events = POLLIN };
            if (poll(&cp, 1, 0) > 0) {
                res->interrupted = 1;
                signalled = true;
                send_sig = o->hurry && o->hurry(o->hurry_ud) ? SIGKILL : SIGTERM;
            }
        }
        if (signalled && !kill_at && o->hurry && o->hurry(o->hurry_ud)) {
            send_sig = SIGKILL;
            kill_at = 1;
        }
        if (send_sig) {
            agent_put_u32(sig, (uint32_t)send_sig);
            agent_put_u32(sig + 4, send_sig == SIGKILL ? 0 : grace_ms ? grace_ms : 1000);
            if ((r = send_frame(c, AGENT_SIGNAL, id, sig, 8)) < 0)
                return r;
            if (send_sig == SIGKILL)
                kill_at = 1;
        }
        /* Sleep until data, the deadline, or a cancel (50 ms steps during a
         * graceful stop, to notice a hurry). */
        struct pollfd pfd[2] = { { .fd = c->out, .events = POLLIN },
                                 { .fd = o->cancel_fd, .events = POLLIN } };
        nfds_t n = (!signalled && o->cancel_fd >= 0) ? 2 : 1;
        int ms = -1;
        if (!signalled && deadline) {
            int64_t left = deadline - atx_now_ns();
            ms = left <= 0 ? 0 : (int)(left / 1000000 + 1);
        }
        if (signalled && !kill_at)
            ms = 50;
        int k = poll(pfd, n, ms);
        if (k < 0 && errno != EINTR)
            return lost(c, strerror(errno));
        if (k > 0 && pfd[0].revents && (r = fill(c, 0)) < 0)
            return r;
    }
}

int agent_client_ping(agent_client *c, int64_t timeout_ns)
{
    uint32_t id = c->next_id++;
    unsigned char *copy = NULL;
    frame f;
    int r = send_frame(c, AGENT_PING, id, NULL, 0);

    if (r == 0)
        r = wait_for(c, id, AGENT_PONG, AGENT_PONG, timeout_ns, &f, &copy);
    free(copy);
    return r < 0 ? lost(c, "no answer to a ping") : 0;
}

int agent_client_put(agent_client *c, const char *local, const char *remote, unsigned mode)
{
    uint32_t id = c->next_id++;
    unsigned char data[65536], *copy = NULL;
    buf b = { 0 };
    frame f;
    int fd = open(local, O_RDONLY | O_CLOEXEC), r;
    ssize_t n;

    if (fd < 0)
        return atx_error_set(-errno, "cannot read %s: %s", local, strerror(errno));
    put_u32(&b, mode);
    put_str(&b, remote);
    r = b.oom ? atx_error_set(ATX_ENOMEM, "out of memory") : send_frame(c, AGENT_PUT, id, b.p, b.len);
    free(b.p);
    while (r == 0 && (n = read(fd, data, sizeof(data))) > 0)
        r = send_frame(c, AGENT_DATA, id, data, (size_t)n);
    close(fd);
    if (r == 0)
        r = send_frame(c, AGENT_CLOSE, id, NULL, 0);
    if (r == 0)
        r = wait_for(c, id, AGENT_OK, AGENT_FAIL, 60 * ATX_NSEC_PER_SEC, &f, &copy);
    if (r == 0 && f.type == AGENT_FAIL) {
        agent_reader rd = { f.payload, f.len, 0 };
        agent_read_u32(&rd);
        const char *msg = agent_read_str(&rd);
        r = atx_error_set(ATX_EIO, "copying %s to %s:%s failed: %s", local, c->system_id, remote,
                          msg ? msg : "?");
    }
    free(copy);
    return r;
}
