/*
 * The host side of the agent protocol: a connection per leased system, with
 * a pump thread that moves frames between the agent's stream and plain fds
 * per process, pings the agent, and declares the system lost when it stops
 * answering. See agent.h; the protocol is executors/agent/protocol.h.
 */
#include "agent.h"
#include "protocol.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define OUT_MAX (1u << 20)          /* queued for the agent before senders wait */
/* Held for a reader that is behind, per stream; past it the stream's bytes
 * are dropped: the connection (other processes, copies, pings) never waits
 * on one reader. */
#define PENDING_MAX (16u << 20)
#define START_WAIT_NS (60 * ATX_NSEC_PER_SEC)
#define DEFAULT_INTERVAL_NS (5 * ATX_NSEC_PER_SEC)
#define DEFAULT_TIMEOUT_NS (30 * ATX_NSEC_PER_SEC)
#define QUIT_WAIT_NS (5 * ATX_NSEC_PER_SEC)
#define QUICK_QUIT_WAIT_NS (200 * ATX_NSEC_PER_MSEC)
/* In a hurry, how long a system may take to answer what it owes. */
#define HURRY_WAIT_NS (500 * ATX_NSEC_PER_MSEC)

typedef struct pending {
    char *buf;
    size_t off, len, cap;
} pending;

typedef struct aproc aproc;
typedef struct request request;

struct aproc {
    aproc *next;
    agent_conn *c;
    uint32_t id;
    int w[3];               /* the pump's ends: stdout, stderr, control (-1) */
    int r_in;               /* the pump's end of stdin (-1) */
    int wait_fd;            /* eventfd: fires once done */
    pending pend[3];
    int start_state;        /* 0 waiting, 1 started, -1 refused */
    int start_errno;
    char start_msg[512];
    bool exited;            /* EXIT came */
    bool done;              /* output delivered, wait fd fired */
    bool lost;
    bool timed_out;
    int kind, code;
};

struct request {
    request *next;
    uint32_t id;
    int state;              /* 0 waiting, 1 OK or PONG, -1 FAIL */
    int err;
    char msg[512];
    /* GET: INFO and DATA frames, in the pump thread, under the lock */
    void (*on_frame)(request *q, uint8_t type, const unsigned char *p, size_t n);
    void *ud;
};

struct agent_conn {
    pthread_mutex_t mu;
    pthread_mutex_t copy_mu; /* one copy in at a time: the agent writes one file at a time */
    pthread_cond_t cv;      /* answers, room to send, the loss */
    atx_proc *boot;
    int to_fd, from_fd, wake_fd;
    pthread_t pump;
    bool pump_started, stopping;
    unsigned char *out;     /* frames for the agent */
    size_t out_off, out_len, out_cap;
    unsigned char *in;      /* bytes from the agent, not yet whole frames */
    size_t in_len, in_cap;
    aproc *procs;
    request *reqs;
    uint32_t next_id;
    agent_liveness lv;
    int64_t last_ping_at, ping_sent_at, last_rx_at;
    uint32_t ping_id;
    bool lost, notify_lost;
    bool closing;           /* QUIT sent: its end is not a loss */
    char why[512];
    int64_t hurry_at;       /* when the hurry gives up on owed answers (0: none) */
    bool hello;
    uint32_t version, features;
    long pid;
    char system_id[128];
};

/* ---- sending (under mu) ---- */

static void flush_out(agent_conn *c)
{
    while (c->out_len && !c->lost) {
        ssize_t n = atx_write_nosig(c->to_fd, c->out + c->out_off, c->out_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            c->out_len = 0; /* the read side will see the end and say why */
            break;
        }
        c->out_off += (size_t)n;
        c->out_len -= (size_t)n;
    }
    if (!c->out_len)
        c->out_off = 0;
    pthread_cond_broadcast(&c->cv);
}

static void wake(agent_conn *c)
{
    eventfd_write(c->wake_fd, 1);
}

/* Queue a frame; the first part of what is queued goes at once. */
static int queue(agent_conn *c, uint8_t type, uint32_t id, const void *a, size_t alen,
                 const void *b, size_t blen)
{
    size_t len = alen + blen, need = AGENT_HEADER_SIZE + len;
    if (c->out_off && c->out_off + c->out_len + need > c->out_cap) {
        memmove(c->out, c->out + c->out_off, c->out_len);
        c->out_off = 0;
    }
    if (c->out_off + c->out_len + need > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 65536;
        while (cap < c->out_len + need)
            cap *= 2;
        unsigned char *o = realloc(c->out, cap);
        if (!o)
            return atx_error_oom();
        c->out = o;
        c->out_cap = cap;
    }
    unsigned char *h = c->out + c->out_off + c->out_len;
    agent_put_u32(h, (uint32_t)len);
    h[4] = type;
    agent_put_u32(h + 5, id);
    if (alen)
        memcpy(h + AGENT_HEADER_SIZE, a, alen);
    if (blen)
        memcpy(h + AGENT_HEADER_SIZE + alen, b, blen);
    bool was_empty = c->out_len == 0;
    c->out_len += need;
    if (was_empty)
        flush_out(c);
    if (c->out_len)
        wake(c);
    return 0;
}

static int lost_error(agent_conn *c)
{
    return atx_error_set(ATX_ELOST, "system %s %s", c->system_id, c->why);
}

/* Wait on cv until until_ns (0: no limit). false on timeout. Under mu. */
static bool cv_wait(agent_conn *c, int64_t until_ns)
{
    if (!until_ns) {
        pthread_cond_wait(&c->cv, &c->mu);
        return true;
    }
    int64_t left = until_ns - atx_now_ns();
    if (left <= 0)
        return false;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t at = (int64_t)ts.tv_sec * ATX_NSEC_PER_SEC + ts.tv_nsec + left;
    ts.tv_sec = (time_t)(at / ATX_NSEC_PER_SEC);
    ts.tv_nsec = (long)(at % ATX_NSEC_PER_SEC);
    pthread_cond_timedwait(&c->cv, &c->mu, &ts);
    return true;
}

/* Wait for room in the outgoing queue (a big copy must not hold it all). */
static int wait_room(agent_conn *c)
{
    while (c->out_len > OUT_MAX && !c->lost)
        cv_wait(c, 0);
    return c->lost ? lost_error(c) : 0;
}

/* ---- the loss ---- */

static void finish(aproc *p)
{
    if (p->done)
        return;
    p->done = true;
    for (int i = 0; i < 3; i++) {
        if (p->w[i] >= 0)
            close(p->w[i]);
        p->w[i] = -1;
        free(p->pend[i].buf);
        p->pend[i] = (pending){ 0 };
    }
    if (p->r_in >= 0)
        close(p->r_in);
    p->r_in = -1;
    eventfd_write(p->wait_fd, 1);
}

/* Under mu. Everything waiting on the system ends now. */
static void lose(agent_conn *c, const char *why)
{
    if (c->lost)
        return;
    c->lost = true;
    c->notify_lost = true;
    snprintf(c->why, sizeof(c->why), "%s", why);
    for (aproc *p = c->procs; p; p = p->next) {
        if (!p->done) {
            p->lost = true;
            finish(p);
        }
        if (p->start_state == 0) {
            p->start_state = -1;
            p->start_errno = 0;
        }
    }
    for (request *q = c->reqs; q; q = q->next)
        if (q->state == 0) {
            q->state = -1;
            q->err = 0;
            snprintf(q->msg, sizeof(q->msg), "the system %s", why);
        }
    c->out_len = 0;
    pthread_cond_broadcast(&c->cv);
}

/* ---- receiving (pump thread, under mu) ---- */

static aproc *proc_of(agent_conn *c, uint32_t id)
{
    for (aproc *p = c->procs; p; p = p->next)
        if (p->id == id)
            return p;
    return NULL;
}

static request *req_of(agent_conn *c, uint32_t id)
{
    for (request *q = c->reqs; q; q = q->next)
        if (q->id == id)
            return q;
    return NULL;
}

static void deliver(aproc *p, int i, const unsigned char *data, size_t n)
{
    pending *q = &p->pend[i];

    if (p->done || p->w[i] < 0)
        return;
    if (!q->len) {
        ssize_t w = write(p->w[i], data, n);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            close(p->w[i]); /* its reader went away */
            p->w[i] = -1;
            return;
        }
        if (w > 0) {
            data += w;
            n -= (size_t)w;
        }
        if (!n)
            return;
    }
    if (q->len + n > PENDING_MAX)
        n = PENDING_MAX - q->len; /* a reader this far behind loses the rest */
    if (!n)
        return;
    if (q->off + q->len + n > q->cap) {
        if (q->off) {
            memmove(q->buf, q->buf + q->off, q->len);
            q->off = 0;
        }
        if (q->len + n > q->cap) {
            size_t cap = q->cap ? q->cap : 65536;
            while (cap < q->len + n)
                cap *= 2;
            char *b = realloc(q->buf, cap);
            if (!b)
                return; /* out of memory: these bytes are lost */
            q->buf = b;
            q->cap = cap;
        }
    }
    memcpy(q->buf + q->off + q->len, data, n);
    q->len += n;
}

static void flush_proc(aproc *p)
{
    for (int i = 0; i < 3; i++) {
        pending *q = &p->pend[i];
        while (q->len && p->w[i] >= 0) {
            ssize_t w = write(p->w[i], q->buf + q->off, q->len);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            if (w <= 0) {
                close(p->w[i]);
                p->w[i] = -1;
                q->len = 0;
                break;
            }
            q->off += (size_t)w;
            q->len -= (size_t)w;
        }
        if (!q->len)
            q->off = 0;
    }
    if (p->exited && !p->pend[0].len && !p->pend[1].len && !p->pend[2].len)
        finish(p);
}

static void dispatch(agent_conn *c, uint8_t type, uint32_t id, const unsigned char *pl,
                     uint32_t len)
{
    agent_reader rd = { pl, len, 0 };
    aproc *p;
    request *q;

    switch (type) {
    case AGENT_HELLO:
        c->version = agent_read_u32(&rd);
        c->pid = (long)agent_read_u32(&rd);
        c->features = agent_read_u32(&rd);
        c->hello = true;
        pthread_cond_broadcast(&c->cv);
        break;
    case AGENT_STARTED:
        if ((p = proc_of(c, id)) && p->start_state == 0) {
            p->start_state = 1;
            pthread_cond_broadcast(&c->cv);
        }
        break;
    case AGENT_FAIL: {
        int e = (int)agent_read_u32(&rd);
        const char *msg = agent_read_str(&rd);
        if ((p = proc_of(c, id)) && p->start_state == 0) {
            p->start_state = -1;
            p->start_errno = e;
            snprintf(p->start_msg, sizeof(p->start_msg), "%s", msg ? msg : "the agent refused");
            pthread_cond_broadcast(&c->cv);
        } else if ((q = req_of(c, id)) && q->state == 0) {
            q->state = -1;
            q->err = e;
            snprintf(q->msg, sizeof(q->msg), "%s", msg ? msg : "failed");
            pthread_cond_broadcast(&c->cv);
        }
        break;
    }
    case AGENT_OUT:
    case AGENT_ERR:
    case AGENT_CTL:
        if ((p = proc_of(c, id)))
            deliver(p, type - AGENT_OUT, pl, len);
        break;
    case AGENT_EXIT:
        if ((p = proc_of(c, id)) && !p->exited) {
            p->kind = (int)agent_read_u32(&rd);
            p->code = (int)agent_read_u32(&rd);
            p->timed_out = (agent_read_u32(&rd) & AGENT_EXIT_TIMED_OUT) != 0;
            p->exited = true;
            flush_proc(p);
        }
        break;
    case AGENT_PONG:
        if (id == c->ping_id) {
            c->ping_sent_at = 0;
        } else if ((q = req_of(c, id)) && q->state == 0) {
            q->state = 1;
            pthread_cond_broadcast(&c->cv);
        }
        break;
    case AGENT_OK:
        if ((q = req_of(c, id)) && q->state == 0) {
            q->state = 1;
            pthread_cond_broadcast(&c->cv);
        }
        break;
    case AGENT_INFO:
    case AGENT_DATA:
        if ((q = req_of(c, id)) && q->state == 0 && q->on_frame)
            q->on_frame(q, type, pl, len);
        break;
    default:
        break;
    }
}

/* Read what the agent sent and hand on each whole frame. */
static void take_in(agent_conn *c)
{
    if (c->in_cap - c->in_len < 65536) {
        size_t cap = c->in_cap ? c->in_cap * 2 : 262144;
        unsigned char *b = realloc(c->in, cap);
        if (!b) {
            lose(c, "could not be read: out of memory");
            return;
        }
        c->in = b;
        c->in_cap = cap;
    }
    ssize_t n = read(c->from_fd, c->in + c->in_len, c->in_cap - c->in_len);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        char why[300];
        snprintf(why, sizeof(why), "lost its agent: the connection ended (%s)",
                 n == 0 ? "end of stream" : strerror(errno));
        lose(c, why);
        if (c->closing)
            c->notify_lost = false; /* we said goodbye: it went */
        return;
    }
    c->in_len += (size_t)n;
    c->last_rx_at = atx_now_ns();
    size_t off = 0;
    agent_frame f;
    int got;
    while ((got = agent_frame_next(c->in + off, c->in_len - off, &f)) > 0) {
        dispatch(c, f.type, f.id, f.payload, f.len);
        off += AGENT_HEADER_SIZE + (size_t)f.len;
        if (c->lost)
            return;
    }
    if (got < 0) {
        lose(c, "lost its agent: a frame too large (not the atx agent protocol)");
        return;
    }
    if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
}

/* A process's stdin from its caller: DATA frames, CLOSE at the end. */
static void take_stdin(agent_conn *c, aproc *p)
{
    unsigned char buf[AGENT_CHUNK];
    ssize_t n = read(p->r_in, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n > 0) {
        queue(c, AGENT_DATA, p->id, buf, (size_t)n, NULL, 0);
        return;
    }
    queue(c, AGENT_CLOSE, p->id, NULL, 0, NULL, 0);
    close(p->r_in);
    p->r_in = -1;
}

/* Whether the system owes an answer: a start, a request, a process's end. */
static bool owes(const agent_conn *c)
{
    for (const aproc *p = c->procs; p; p = p->next)
        if (!p->done)
            return true;
    for (const request *q = c->reqs; q; q = q->next)
        if (q->state == 0)
            return true;
    return false;
}

static void *pump_main(void *arg)
{
    agent_conn *c = arg;
    size_t cap = 16;
    struct pollfd *pfd = malloc(cap * sizeof(*pfd));
    aproc **who = malloc(cap * sizeof(*who));
    int *what = malloc(cap * sizeof(*what));
    sigset_t pipe;
    char lost_why[sizeof(c->why)];

    /* A reader that went away is EPIPE here, never a signal. */
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, NULL);
    pthread_mutex_lock(&c->mu);
    while (!c->stopping) {
        size_t need = 3;
        for (aproc *p = c->procs; p; p = p->next)
            need += 4;
        if (need > cap) {
            struct pollfd *np = realloc(pfd, need * sizeof(*pfd));
            aproc **nw = realloc(who, need * sizeof(*who));
            int *nt = realloc(what, need * sizeof(*what));
            if (np)
                pfd = np;
            if (nw)
                who = nw;
            if (nt)
                what = nt;
            if (np && nw && nt)
                cap = need;
        }
        if (!pfd || !who || !what) {
            lose(c, "could not be watched: out of memory");
            break;
        }
        size_t n = 0;
        int in_at = -1, out_at = -1, hurry_at = -1;
        pfd[n++] = (struct pollfd){ .fd = c->wake_fd, .events = POLLIN };
        if (c->lv.hurry_fd >= 0 && !c->hurry_at && !c->lost) {
            hurry_at = (int)n;
            pfd[n++] = (struct pollfd){ .fd = c->lv.hurry_fd, .events = POLLIN };
        }
        if (!c->lost) {
            in_at = (int)n;
            pfd[n++] = (struct pollfd){ .fd = c->from_fd, .events = POLLIN };
        }
        if (!c->lost && c->out_len) {
            out_at = (int)n;
            pfd[n++] = (struct pollfd){ .fd = c->to_fd, .events = POLLOUT };
        }
        for (aproc *p = c->procs; p && n + 4 <= cap; p = p->next) {
            if (p->done)
                continue;
            if (p->r_in >= 0 && p->start_state == 1 && c->out_len < OUT_MAX) {
                who[n] = p;
                what[n] = 3;
                pfd[n++] = (struct pollfd){ .fd = p->r_in, .events = POLLIN };
            }
            for (int i = 0; i < 3; i++)
                if (p->pend[i].len && p->w[i] >= 0) {
                    who[n] = p;
                    what[n] = i;
                    pfd[n++] = (struct pollfd){ .fd = p->w[i], .events = POLLOUT };
                }
        }
        /* Liveness: the next ping, or the answer's deadline. */
        int64_t now = atx_now_ns(), at = 0;
        if (!c->lost && c->hello && !c->closing)
            at = c->ping_sent_at ? c->last_rx_at + c->lv.timeout_ns
                                 : c->last_ping_at + c->lv.interval_ns;
        if (!c->lost && c->hurry_at > 0 && (!at || c->hurry_at < at))
            at = c->hurry_at;
        int ms = at ? atx_poll_ms(at <= now ? 0 : at - now) : -1;
        bool notify = c->notify_lost;
        c->notify_lost = false;
        if (notify)
            snprintf(lost_why, sizeof(lost_why), "%s", c->why);
        pthread_mutex_unlock(&c->mu);
        if (notify && c->lv.on_lost)
            c->lv.on_lost(c->lv.ud, lost_why);
        int k = poll(pfd, n, ms);
        pthread_mutex_lock(&c->mu);
        if (k < 0 && errno != EINTR) {
            lose(c, "could not be watched (poll failed)");
            continue;
        }
        if (k > 0 && pfd[0].revents) {
            eventfd_t v;
            eventfd_read(c->wake_fd, &v);
        }
        if (k > 0 && in_at >= 0 && pfd[in_at].revents && !c->lost)
            take_in(c);
        if (k > 0 && out_at >= 0 && pfd[out_at].revents && !c->lost) {
            if (pfd[out_at].revents & (POLLERR | POLLHUP))
                lose(c, "lost its agent: the connection ended");
            else
                flush_out(c);
        }
        int first_proc = out_at >= 0 ? out_at : in_at >= 0 ? in_at : hurry_at >= 0 ? hurry_at : 0;
        if (k > 0 && hurry_at >= 0 && pfd[hurry_at].revents) {
            if (!c->hello)
                lose(c, "was given up: the run stops before its agent started");
            else
                c->hurry_at = atx_now_ns() + HURRY_WAIT_NS;
        }
        for (size_t i = (size_t)first_proc + 1; k > 0 && i < n; i++) {
            if (!pfd[i].revents)
                continue;
            /* The process may have been freed meanwhile. */
            aproc *p = c->procs;
            while (p && p != who[i])
                p = p->next;
            if (!p || p->done)
                continue;
            if (what[i] == 3 && p->r_in >= 0)
                take_stdin(c, p);
            else if (what[i] < 3)
                flush_proc(p);
        }
        now = atx_now_ns();
        if (!c->lost && c->hurry_at > 0 && now >= c->hurry_at) {
            c->hurry_at = -1; /* looked at once */
            if (owes(c))
                lose(c, "was given up on: the run was cancelled a second time and it did not "
                        "answer in time");
        }
        if (!c->lost && c->hello && !c->closing) {
            /* Lost: a ping waits for its answer, and nothing at all came
             * from the agent for the liveness timeout (it answers a ping
             * every interval while it is there). */
            if (c->ping_sent_at && now - c->last_rx_at >= c->lv.timeout_ns) {
                char why[200];
                char secs[32];
                atx_text_seconds(c->lv.timeout_ns, secs);
                snprintf(why, sizeof(why), "stopped answering: no answer to a ping within %ss",
                         secs);
                lose(c, why);
            } else if (!c->ping_sent_at && now - c->last_ping_at >= c->lv.interval_ns) {
                c->ping_id = c->next_id++;
                c->ping_sent_at = now;
                c->last_ping_at = now;
                queue(c, AGENT_PING, c->ping_id, NULL, 0, NULL, 0);
            }
        }
    }
    bool notify = c->notify_lost;
    c->notify_lost = false;
    if (notify)
        snprintf(lost_why, sizeof(lost_why), "%s", c->why);
    pthread_mutex_unlock(&c->mu);
    if (notify && c->lv.on_lost)
        c->lv.on_lost(c->lv.ud, lost_why);
    free(pfd);
    free(who);
    free(what);
    return NULL;
}

/* ---- starting, stopping ---- */

int agent_conn_start(atx_proc *boot, const char *system_id, const agent_liveness *lv,
                     int64_t deadline_ns, agent_conn **out)
{
    agent_conn *c = calloc(1, sizeof(*c));
    int r;

    if (!c) {
        atx_proc_free(boot);
        return atx_error_oom();
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->copy_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    c->boot = boot;
    c->to_fd = atx_proc_stdin_fd(boot);
    c->from_fd = atx_proc_stdout_fd(boot);
    c->next_id = 1;
    snprintf(c->system_id, sizeof(c->system_id), "%s", system_id);
    c->lv.hurry_fd = -1;
    if (lv)
        c->lv = *lv;
    if (c->lv.interval_ns <= 0)
        c->lv.interval_ns = DEFAULT_INTERVAL_NS;
    if (c->lv.timeout_ns <= 0)
        c->lv.timeout_ns = DEFAULT_TIMEOUT_NS;
    c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->to_fd < 0 || c->from_fd < 0 || c->wake_fd < 0) {
        r = atx_error_set(ATX_EINFRA, "cannot talk to the agent on %s", system_id);
        goto fail;
    }
    fcntl(c->to_fd, F_SETFL, fcntl(c->to_fd, F_GETFL) | O_NONBLOCK);
    fcntl(c->from_fd, F_SETFL, fcntl(c->from_fd, F_GETFL) | O_NONBLOCK);
    if ((r = pthread_create(&c->pump, NULL, pump_main, c)) != 0) {
        r = atx_error_set(-r, "cannot start a thread: %s", strerror(r));
        goto fail;
    }
    c->pump_started = true;
    /* A started agent says hello at once: a system that passes nothing on
     * within the liveness timeout is as good as frozen. */
    int64_t started = atx_now_ns(), hello_by = atx_add_sat(started, c->lv.timeout_ns);
    if (!deadline_ns || hello_by < deadline_ns)
        deadline_ns = hello_by;
    pthread_mutex_lock(&c->mu);
    while (!c->hello && !c->lost && cv_wait(c, deadline_ns))
        ;
    if (c->hello && c->version != AGENT_PROTOCOL_VERSION)
        r = atx_error_set(ATX_EINFRA, "the agent on %s speaks protocol %u, atx speaks %d",
                          system_id, c->version, AGENT_PROTOCOL_VERSION);
    else if (!c->hello && c->lost)
        r = atx_error_set(ATX_EINFRA, "the agent on %s did not start: %s", system_id, c->why);
    else if (!c->hello)
        r = atx_error_set(ATX_EINFRA, "the agent on %s did not start: no word from it in %.3gs",
                          system_id, (double)(atx_now_ns() - started) / ATX_NSEC_PER_SEC);
    else
        r = 0;
    c->last_ping_at = c->last_rx_at = atx_now_ns();
    pthread_mutex_unlock(&c->mu);
    if (r < 0)
        goto fail;
    *out = c;
    return 0;
fail:;
    char why[1024];
    snprintf(why, sizeof(why), "%s", atx_error_last()->message);
    agent_conn_free(c, true);
    return atx_error_set(r, "%s", why);
}

void agent_conn_free(agent_conn *c, bool quick)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    bool lost = c->lost;
    c->closing = true;
    if (!lost)
        queue(c, AGENT_QUIT, 0, NULL, 0, NULL, 0);
    pthread_mutex_unlock(&c->mu);
    quick = quick || lost;
    /* The QUIT goes out, then the end of its stream: the agent kills what
     * it started and exits. */
    if (!lost && !quick) {
        int64_t until = atx_now_ns() + ATX_NSEC_PER_SEC;
        pthread_mutex_lock(&c->mu);
        while (c->out_len && !c->lost && cv_wait(c, until))
            ;
        pthread_mutex_unlock(&c->mu);
    }
    if (c->pump_started) {
        pthread_mutex_lock(&c->mu);
        c->stopping = true;
        pthread_mutex_unlock(&c->mu);
        wake(c);
        pthread_join(c->pump, NULL);
    }
    if (c->boot) {
        /* The end of its stream: an agent that still runs kills what it
         * started and exits; one that does not is killed. */
        atx_proc_close_stdin(c->boot);
        atx_exit ex;
        if (atx_proc_wait(c->boot, quick ? QUICK_QUIT_WAIT_NS : QUIT_WAIT_NS, &ex) != 0)
            atx_proc_kill_tree(c->boot, SIGKILL, 0);
        atx_proc_free(c->boot);
    }
    /* Processes still there outlive their system: end them here. */
    for (aproc *p = c->procs, *next; p; p = next) {
        next = p->next;
        if (!p->done) {
            p->lost = true;
            finish(p);
        }
        p->c = NULL;
        p->next = NULL;
    }
    for (request *q = c->reqs; q; q = q->next)
        if (q->state == 0)
            q->state = -1;
    if (c->wake_fd >= 0)
        close(c->wake_fd);
    free(c->out);
    free(c->in);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->copy_mu);
    free(c);
}

long agent_conn_pid(const agent_conn *c) { return c->pid; }

bool agent_conn_lost(agent_conn *c, char *why, size_t len)
{
    pthread_mutex_lock(&c->mu);
    bool lost = c->lost;
    if (lost && why)
        snprintf(why, len, "%s", c->why);
    pthread_mutex_unlock(&c->mu);
    return lost;
}

void agent_conn_abandon(agent_conn *c, const char *why)
{
    pthread_mutex_lock(&c->mu);
    lose(c, why);
    pthread_mutex_unlock(&c->mu);
    wake(c);
}

/* ---- processes ---- */

static int ap_wait(void *impl, int64_t timeout_ns, atx_exit *ex)
{
    aproc *p = impl;
    int64_t until = timeout_ns < 0 ? 0 : atx_now_ns() + timeout_ns;

    for (;;) {
        agent_conn *c = p->c;
        bool done;
        if (c) {
            pthread_mutex_lock(&c->mu);
            done = p->done;
            pthread_mutex_unlock(&c->mu);
        } else {
            done = true; /* its connection is gone */
        }
        if (done) {
            *ex = (atx_exit){ 0 };
            if (p->lost || !p->exited) {
                ex->signal = SIGKILL;
                if (c) {
                    pthread_mutex_lock(&c->mu);
                    int r = lost_error(c);
                    pthread_mutex_unlock(&c->mu);
                    return r;
                }
                return atx_error_set(ATX_ELOST, "the system was released");
            }
            ex->exited = p->kind == 0;
            ex->code = p->kind == 0 ? p->code : 0;
            ex->signal = p->kind == 0 ? 0 : p->code;
            ex->timed_out = p->timed_out;
            return 0;
        }
        int ms = -1;
        if (until) {
            int64_t left = until - atx_now_ns();
            if (left <= 0)
                return ATX_ETIMEDOUT;
            ms = atx_poll_ms(left);
        }
        struct pollfd pfd = { .fd = p->wait_fd, .events = POLLIN };
        poll(&pfd, 1, ms);
    }
}

/* Milliseconds on the wire: 0 means none, so a span rounds up to 1 and a
 * very long one stops short of the 32 bits. */
static uint32_t wire_ms(int64_t ns)
{
    if (ns <= 0)
        return 1;
    int64_t ms = ns / ATX_NSEC_PER_MSEC + 1;
    return ms >= (int64_t)UINT32_MAX ? UINT32_MAX - 1 : (uint32_t)ms;
}

static uint32_t ms_until(int64_t deadline_ns)
{
    return deadline_ns ? wire_ms(atx_add_sat(deadline_ns, -atx_now_ns())) : 0;
}

static void send_signal(aproc *p, int sig, int64_t grace_ns)
{
    agent_conn *c = p->c;
    unsigned char b[8];

    if (!c)
        return;
    agent_put_u32(b, (uint32_t)sig);
    agent_put_u32(b + 4, grace_ns > 0 ? wire_ms(grace_ns) : 0);
    pthread_mutex_lock(&c->mu);
    if (!p->done && !c->lost)
        queue(c, AGENT_SIGNAL, p->id, b, 8, NULL, 0);
    pthread_mutex_unlock(&c->mu);
}

static int ap_kill_tree(void *impl, int sig, int64_t grace_ns)
{
    aproc *p = impl;

    send_signal(p, sig, sig == SIGKILL ? 0 : grace_ns);
    if (grace_ns > 0 && sig != SIGKILL) {
        /* The agent sends the KILL after the grace itself. */
        struct pollfd pfd = { .fd = p->wait_fd, .events = POLLIN };
        poll(&pfd, 1, atx_poll_ms(grace_ns));
    }
    return 0;
}

static int ap_set_deadline(void *impl, int64_t deadline_ns)
{
    aproc *p = impl;
    agent_conn *c = p->c;
    unsigned char b[4];

    if (!c)
        return 0;
    agent_put_u32(b, ms_until(deadline_ns));
    pthread_mutex_lock(&c->mu);
    if (!p->done && !c->lost)
        queue(c, AGENT_DEADLINE, p->id, b, 4, NULL, 0);
    pthread_mutex_unlock(&c->mu);
    return 1; /* the agent's clock decides */
}

static void ap_close_control(void *impl)
{
    aproc *p = impl;
    agent_conn *c = p->c;

    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    if (p->w[2] >= 0) {
        close(p->w[2]);
        p->w[2] = -1;
    }
    p->pend[2].len = 0;
    if (!p->done && !c->lost)
        queue(c, AGENT_CLOSE_CONTROL, p->id, NULL, 0, NULL, 0);
    pthread_mutex_unlock(&c->mu);
}

static void ap_free(void *impl)
{
    aproc *p = impl;
    agent_conn *c = p->c;

    if (c) {
        pthread_mutex_lock(&c->mu);
        if (!p->done && !c->lost) {
            unsigned char b[8];
            agent_put_u32(b, SIGKILL);
            agent_put_u32(b + 4, 0);
            queue(c, AGENT_SIGNAL, p->id, b, 8, NULL, 0);
        }
        for (aproc **pp = &c->procs; *pp; pp = &(*pp)->next)
            if (*pp == p) {
                *pp = p->next;
                break;
            }
        p->lost = p->lost || !p->exited;
        finish(p);
        pthread_mutex_unlock(&c->mu);
    } else {
        finish(p);
    }
    close(p->wait_fd);
    free(p);
}

static const atx_proc_ops agent_proc_ops = {
    .version = ATX_PROC_OPS_VERSION,
    .wait = ap_wait,
    .kill_tree = ap_kill_tree,
    .free = ap_free,
    .set_deadline = ap_set_deadline,
    .close_control = ap_close_control,
};

/* A growing payload. */
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

static void put_u64(buf *b, uint64_t v)
{
    unsigned char x[8];
    agent_put_u64(x, v);
    put(b, x, 8);
}

static void put_str(buf *b, const char *s)
{
    put(b, s ? s : "", strlen(s ? s : "") + 1);
}


int agent_conn_spawn(agent_conn *c, const atx_spawn_opts *o, atx_proc **out)
{
    unsigned fl = o->flags, af = 0;
    int in[2] = { -1, -1 }, so[2] = { -1, -1 }, se[2] = { -1, -1 }, ctl[2] = { -1, -1 };
    aproc *p = NULL;
    buf b = { 0 };
    uint32_t argc = 0, envc = 0;
    int r = 0;

    if (fl & ATX_SPAWN_PTY)
        fl |= ATX_SPAWN_STDOUT_PIPE | ATX_SPAWN_STDERR_TO_STDOUT;
    af |= (fl & ATX_SPAWN_STDIN_PIPE) ? AGENT_STDIN : 0;
    af |= (fl & ATX_SPAWN_STDOUT_PIPE) ? AGENT_STDOUT : 0;
    af |= (fl & ATX_SPAWN_STDERR_PIPE) ? AGENT_STDERR : 0;
    af |= (fl & ATX_SPAWN_STDERR_TO_STDOUT) ? AGENT_MERGE_OUTPUT | AGENT_STDERR : 0;
    af |= (fl & ATX_SPAWN_CONTROL) ? AGENT_CONTROL : 0;
    af |= (fl & ATX_SPAWN_PTY) ? AGENT_PTY : 0;
    af |= (fl & ATX_SPAWN_CLEAR_ENV) ? AGENT_CLEAR_ENV : 0;
    while (o->argv[argc])
        argc++;
    while (o->env && o->env[envc])
        envc++;
    put_u32(&b, af);
    put_u32(&b, ms_until(o->deadline_ns));
    put_u32(&b, o->kill_grace_ns > 0 ? wire_ms(o->kill_grace_ns) : 1000);
    put_u32(&b, argc);
    for (uint32_t i = 0; i < argc; i++)
        put_str(&b, o->argv[i]);
    put_u32(&b, envc);
    for (uint32_t i = 0; i < envc; i++)
        put_str(&b, o->env[i]);
    put_str(&b, o->cwd);
    if (b.oom || b.len > AGENT_MAX_PAYLOAD) {
        free(b.p);
        return atx_error_set(b.oom ? ATX_ENOMEM : ATX_EINVAL,
                             "the command and environment are too large");
    }
    if (!(p = calloc(1, sizeof(*p)))) {
        free(b.p);
        return atx_error_oom();
    }
    p->w[0] = p->w[1] = p->w[2] = p->r_in = -1;
    p->wait_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->wait_fd < 0 || ((fl & ATX_SPAWN_STDIN_PIPE) && pipe2(in, O_CLOEXEC) < 0) ||
        ((fl & ATX_SPAWN_STDOUT_PIPE) && pipe2(so, O_CLOEXEC) < 0) ||
        ((fl & ATX_SPAWN_STDERR_PIPE) && !(fl & ATX_SPAWN_STDERR_TO_STDOUT) &&
         pipe2(se, O_CLOEXEC) < 0) ||
        ((fl & ATX_SPAWN_CONTROL) && pipe2(ctl, O_CLOEXEC) < 0)) {
        r = atx_error_set(-errno, "cannot make pipes: %s", strerror(errno));
        goto fail;
    }
    p->r_in = in[0];
    p->w[0] = so[1];
    p->w[1] = se[1];
    p->w[2] = ctl[1];
    in[0] = so[1] = se[1] = ctl[1] = -1;
    for (int i = 0; i < 3; i++)
        if (p->w[i] >= 0)
            fcntl(p->w[i], F_SETFL, O_NONBLOCK);
    if (p->r_in >= 0)
        fcntl(p->r_in, F_SETFL, O_NONBLOCK);

    pthread_mutex_lock(&c->mu);
    if (c->lost) {
        r = lost_error(c);
        pthread_mutex_unlock(&c->mu);
        goto fail;
    }
    p->c = c;
    p->id = c->next_id++;
    p->next = c->procs;
    c->procs = p;
    r = queue(c, AGENT_START, p->id, b.p, b.len, NULL, 0);
    int64_t until = atx_now_ns() + START_WAIT_NS;
    while (r == 0 && p->start_state == 0 && !c->lost && cv_wait(c, until))
        ;
    if (r == 0 && p->start_state != 1) {
        if (c->lost)
            r = lost_error(c);
        else if (p->start_state == 0)
            r = atx_error_set(ATX_ELOST, "system %s: the agent did not start a process in time",
                              c->system_id);
        else
            r = atx_error_set(ATX_ESPAWN, "%s", p->start_msg);
    }
    if (r < 0) {
        for (aproc **pp = &c->procs; *pp; pp = &(*pp)->next)
            if (*pp == p) {
                *pp = p->next;
                break;
            }
        finish(p);
        p->c = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    if (r < 0)
        goto fail;
    free(b.p);
    wake(c); /* it may read stdin now */
    atx_proc *ap;
    r = atx_proc_new(&agent_proc_ops, p, in[1], so[0],
                     (fl & ATX_SPAWN_STDERR_TO_STDOUT) ? -1 : se[0], p->wait_fd, &ap);
    if (r < 0) {
        ap_free(p);
        p = NULL;
        goto fail_fds;
    }
    if (ctl[0] >= 0)
        atx_proc_attach_control(ap, ctl[0]);
    *out = ap;
    return 0;

fail:
    if (p) {
        char why[1024];
        snprintf(why, sizeof(why), "%s", atx_error_last()->message);
        finish(p);
        if (p->wait_fd >= 0)
            close(p->wait_fd);
        free(p);
        atx_error_set(r, "%s", why);
    }
fail_fds:
    free(b.p);
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (so[i] >= 0)
            close(so[i]);
        if (se[i] >= 0)
            close(se[i]);
        if (ctl[i] >= 0)
            close(ctl[i]);
    }
    return r;
}

/* ---- requests ---- */

static request *req_new(agent_conn *c)
{
    request *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->id = c->next_id++;
    q->next = c->reqs;
    c->reqs = q;
    if (c->lost) {
        q->state = -1;
        snprintf(q->msg, sizeof(q->msg), "the system %s", c->why);
    }
    return q;
}

static void req_free(agent_conn *c, request *q)
{
    for (request **pp = &c->reqs; *pp; pp = &(*pp)->next)
        if (*pp == q) {
            *pp = q->next;
            break;
        }
    free(q);
}

/* Wait for a request's answer (under mu). 0 on OK, else the error set. */
static int req_wait(agent_conn *c, request *q, int64_t until, const char *what)
{
    while (q->state == 0 && !c->lost && cv_wait(c, until))
        ;
    if (q->state == 1)
        return 0;
    if (c->lost)
        return lost_error(c);
    if (q->state == 0)
        return atx_error_set(ATX_ELOST, "system %s: no answer to %s in time", c->system_id, what);
    /* What the file's nature says reaches the caller as its errno: missing,
     * a link not followed, larger than taken; other trouble is I/O. */
    bool kept = q->err == ENOENT || q->err == ELOOP || q->err == EFBIG;
    return atx_error_set(kept ? -q->err : ATX_EIO, "%s on %s failed: %s", what, c->system_id,
                         q->msg);
}

int agent_conn_ping(agent_conn *c, int64_t timeout_ns)
{
    int r;
    pthread_mutex_lock(&c->mu);
    request *q = req_new(c);
    if (!q) {
        pthread_mutex_unlock(&c->mu);
        return atx_error_oom();
    }
    if (q->state == 0)
        queue(c, AGENT_PING, q->id, NULL, 0, NULL, 0);
    r = req_wait(c, q, atx_now_ns() + (timeout_ns > 0 ? timeout_ns : 1), "a ping");
    req_free(c, q);
    pthread_mutex_unlock(&c->mu);
    return r < 0 ? atx_error_set(ATX_ELOST, "%s", atx_error_last()->message) : 0;
}

/* ---- copies in ---- */

typedef struct entry {
    char type;              /* 'f', 'd', 'l' */
    char *rel;
    uint32_t mode;
    uint64_t size, mtime;
    char *target;
    request *q;
} entry;

typedef struct entries {
    entry *v;
    size_t n, cap;
} entries;

static void entries_free(entries *es)
{
    for (size_t i = 0; i < es->n; i++) {
        free(es->v[i].rel);
        free(es->v[i].target);
    }
    free(es->v);
}

static int add_entry(entries *es, char type, const char *rel, const struct stat *st,
                     const char *target)
{
    if (es->n == es->cap) {
        size_t cap = es->cap ? es->cap * 2 : 64;
        entry *v = realloc(es->v, cap * sizeof(*v));
        if (!v)
            return atx_error_oom();
        es->v = v;
        es->cap = cap;
    }
    entry *e = &es->v[es->n];
    memset(e, 0, sizeof(*e));
    e->type = type;
    e->mode = (uint32_t)(st->st_mode & 07777);
    e->size = (uint64_t)st->st_size;
    e->mtime = (uint64_t)st->st_mtim.tv_sec * 1000000000u + (uint64_t)st->st_mtim.tv_nsec;
    if (!(e->rel = strdup(rel)) || (target && !(e->target = strdup(target)))) {
        free(e->rel);
        return atx_error_oom();
    }
    es->n++;
    return 0;
}

/* The tree below a local folder, parents before children. */
static int walk(const char *base, const char *rel, entries *es, int depth)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof(path), "%s%s%s", base, *rel ? "/" : "", rel);
    DIR *d = opendir(path);
    struct dirent *de;
    int r = 0;

    if (!d)
        return atx_error_set(-errno, "cannot read %s: %s", path, strerror(errno));
    while (r == 0 && (de = readdir(d))) {
        char sub[PATH_MAX], full[PATH_MAX * 2];
        struct stat st;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(sub, sizeof(sub), "%s%s%s", rel, *rel ? "/" : "", de->d_name);
        snprintf(full, sizeof(full), "%s/%s", base, sub);
        if (lstat(full, &st) < 0)
            continue;
        if (S_ISREG(st.st_mode)) {
            r = add_entry(es, 'f', sub, &st, NULL);
        } else if (S_ISDIR(st.st_mode) && depth < 64) {
            if ((r = add_entry(es, 'd', sub, &st, NULL)) == 0)
                r = walk(base, sub, es, depth + 1);
        } else if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX];
            ssize_t n = readlink(full, target, sizeof(target) - 1);
            if (n < 0)
                continue;
            target[n] = '\0';
            r = add_entry(es, 'l', sub, &st, target);
        }
    }
    closedir(d);
    return r;
}

/* PUT one local file (header, DATA chunks, CLOSE); its answer comes later. */
static int send_file(agent_conn *c, request *q, const char *local, const char *remote,
                     uint32_t mode, uint64_t mtime)
{
    buf b = { 0 };
    unsigned char data[AGENT_CHUNK];
    int fd = open(local, O_RDONLY | O_CLOEXEC), r;
    ssize_t n;

    if (fd < 0)
        return atx_error_set(-errno, "cannot read %s: %s", local, strerror(errno));
    put_u32(&b, mode);
    put_u64(&b, mtime);
    put_str(&b, remote);
    r = b.oom ? atx_error_oom() : queue(c, AGENT_PUT, q->id, b.p, b.len, NULL, 0);
    free(b.p);
    while (r == 0) {
        pthread_mutex_unlock(&c->mu);
        n = read(fd, data, sizeof(data));
        pthread_mutex_lock(&c->mu);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = atx_error_set(-errno, "cannot read %s: %s", local, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        if ((r = wait_room(c)) == 0)
            r = queue(c, AGENT_DATA, q->id, data, (size_t)n, NULL, 0);
    }
    close(fd);
    /* CLOSE even after a failure: the agent answers, and the id is done. */
    if (!c->lost)
        queue(c, AGENT_CLOSE, q->id, NULL, 0, NULL, 0);
    return r;
}

static char *join(const char *a, const char *b)
{
    char *s;
    if (!*b)
        return strdup(a);
    return asprintf(&s, "%s/%s", a, b) < 0 ? NULL : s;
}

static int copy_in(agent_conn *c, const char *local, const char *remote)
{
    struct stat st;
    entries es = { 0 };
    int r = 0;

    if (stat(local, &st) < 0)
        return atx_error_set(-errno, "cannot copy %s: %s", local, strerror(errno));
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
        return atx_error_set(ATX_EINVAL, "cannot copy %s: not a file or a folder", local);
    if (S_ISDIR(st.st_mode)) {
        if ((r = add_entry(&es, 'd', "", &st, NULL)) < 0 || (r = walk(local, "", &es, 0)) < 0) {
            entries_free(&es);
            return r;
        }
    } else if ((r = add_entry(&es, 'f', "", &st, NULL)) < 0) {
        return r;
    }
    int64_t until = 0; /* the loss of the system bounds it */
    pthread_mutex_lock(&c->mu);
    /* Folders (writable while filled), links, and what files are there
     * already: all asked at once, then the answers. */
    for (size_t i = 0; i < es.n && r == 0; i++) {
        entry *e = &es.v[i];
        char *path = join(remote, e->rel);
        buf b = { 0 };
        if (!path || !(e->q = req_new(c))) {
            free(path);
            r = atx_error_oom();
            break;
        }
        if (e->type == 'd') {
            put_u32(&b, e->mode | 0700);
            put_str(&b, path);
        } else if (e->type == 'l') {
            put_str(&b, e->target);
            put_str(&b, path);
        } else {
            put_u32(&b, e->mode);
            put_u64(&b, e->size);
            put_u64(&b, e->mtime);
            put_str(&b, path);
        }
        free(path);
        if (b.oom)
            r = atx_error_oom();
        else if ((r = wait_room(c)) == 0 && e->q->state == 0)
            r = queue(c, e->type == 'd' ? AGENT_MKDIR : e->type == 'l' ? AGENT_SYMLINK : AGENT_CHECK,
                      e->q->id, b.p, b.len, NULL, 0);
        free(b.p);
    }
    for (size_t i = 0; i < es.n && r == 0; i++) {
        entry *e = &es.v[i];
        int k = req_wait(c, e->q, until, "a copy");
        if (e->type == 'f') {
            /* Not there (or different): sent below. */
            e->q->state = k == 0 ? 1 : 0;
            if (k < 0 && c->lost)
                r = k;
            continue;
        }
        if (k < 0)
            r = k;
    }
    /* The files that are not there as they are here. */
    for (size_t i = 0; i < es.n && r == 0; i++) {
        entry *e = &es.v[i];
        if (e->type != 'f' || e->q->state == 1)
            continue;
        char *from = join(local, e->rel), *to = join(remote, e->rel);
        if (!from || !to)
            r = atx_error_oom();
        else
            r = send_file(c, e->q, from, to, e->mode, e->mtime);
        free(from);
        free(to);
    }
    for (size_t i = 0; i < es.n && r == 0; i++) {
        entry *e = &es.v[i];
        if (e->type == 'f' && e->q->state == 0)
            r = req_wait(c, e->q, until, "a copy");
    }
    /* Folders get their own modes last (a read-only one was filled first). */
    for (size_t i = 0; i < es.n && r == 0; i++) {
        entry *e = &es.v[i];
        if (e->type != 'd' || (e->mode & 0700) == 0700)
            continue;
        char *path = join(remote, e->rel);
        buf b = { 0 };
        e->q->state = 0;
        put_u32(&b, e->mode);
        put_str(&b, path);
        r = b.oom || !path ? atx_error_oom() : queue(c, AGENT_MKDIR, e->q->id, b.p, b.len, NULL, 0);
        if (r == 0)
            r = req_wait(c, e->q, until, "a copy");
        free(b.p);
        free(path);
    }
    for (size_t i = 0; i < es.n; i++)
        if (es.v[i].q)
            req_free(c, es.v[i].q);
    pthread_mutex_unlock(&c->mu);
    entries_free(&es);
    if (r < 0 && r != ATX_ELOST) {
        char why[1024];
        snprintf(why, sizeof(why), "%s", atx_error_last()->message);
        return atx_error_set(r, "copying %s to %s:%s failed: %s", local, c->system_id, remote,
                             why);
    }
    return r;
}

/* ---- copies out ---- */

typedef struct getter {
    agent_conn *c;
    const char *local;
    int root_fd;            /* the destination folder, or -1 */
    bool rooted;            /* what was asked for was described (once) */
    int fd;                 /* the file being written, or -1 */
    uint64_t left;          /* its bytes still to come */
    uint32_t mode;
    uint64_t mtime;
    int err;                /* the first trouble (-errno) */
    char errmsg[512];
    uint64_t max;           /* the largest file taken (0: any) */
    atx_copy_budget budget; /* the bytes and entries in all */
} getter;

static void get_fail(getter *g, int e, const char *what, const char *path)
{
    if (!g->err) {
        g->err = e;
        snprintf(g->errmsg, sizeof(g->errmsg), "%s %s: %s", what, path, strerror(-e));
    }
}

/* A relative path the agent named: no "..", nothing absolute, no empty part. */
static bool safe_rel(const char *rel)
{
    if (!*rel || rel[0] == '/')
        return false;
    for (const char *p = rel; *p;) {
        size_t n = strcspn(p, "/");
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        p += n;
        if (*p)
            p++;
    }
    return true;
}

/* The folder holding @p rel below the root, opened component by component
 * without following links; *leaf gets the last component. */
static int parent_of(getter *g, const char *rel, char *leaf, size_t len)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s", rel);
    char *slash = strrchr(path, '/');
    int fd = fcntl(g->root_fd, F_DUPFD_CLOEXEC, 3);
    snprintf(leaf, len, "%s", slash ? slash + 1 : path);
    if (!slash)
        return fd;
    *slash = '\0';
    for (char *part = path, *next; fd >= 0 && part; part = next) {
        next = strchr(part, '/');
        if (next)
            *next++ = '\0';
        int sub = openat(fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        close(fd);
        fd = sub;
    }
    return fd;
}

static void file_done(getter *g)
{
    if (g->fd < 0)
        return;
    fchmod(g->fd, atx_taken_mode(g->mode));
    struct timespec ts[2] = { { 0, UTIME_OMIT },
                              { (time_t)(g->mtime / 1000000000u), (long)(g->mtime % 1000000000u) } };
    futimens(g->fd, ts);
    if (close(g->fd) < 0)
        get_fail(g, -errno, "cannot write", g->local);
    g->fd = -1;
}

static int open_file(int dfd, const char *name)
{
    int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno == ELOOP && unlinkat(dfd, name, 0) == 0)
        fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    return fd;
}

static void on_get_frame(request *q, uint8_t type, const unsigned char *pl, size_t n)
{
    getter *g = q->ud;

    if (type == AGENT_DATA) {
        if (n > g->left)
            n = (size_t)g->left;
        g->left -= n;
        while (n && g->fd >= 0) {
            ssize_t w = write(g->fd, pl, n);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                get_fail(g, -errno, "cannot write", g->local);
                close(g->fd);
                g->fd = -1;
                break;
            }
            pl += w;
            n -= (size_t)w;
        }
        if (!g->left)
            file_done(g);
        return;
    }
    agent_reader rd = { pl, n, 0 };
    char type_c = (char)agent_read_u8(&rd);
    uint32_t mode = agent_read_u32(&rd);
    uint64_t size = agent_read_u64(&rd), mtime = agent_read_u64(&rd);
    const char *rel = agent_read_str(&rd);
    if (type_c == 'l')
        agent_read_str(&rd); /* the target: not used */
    if (rd.bad)
        return;
    file_done(g);
    if (*rel && (type_c == 'f' || type_c == 'd') &&
        !atx_copy_budget_take(&g->budget, type_c == 'f', size)) {
        type_c = 0; /* past a bound: left out, its data dropped */
    } else if (type_c == 'f' && g->max && size > g->max) {
        /* The agent leaves such files out: one that does not is not heard. */
        get_fail(g, -EFBIG, "more than the bytes taken:", *rel ? rel : g->local);
        type_c = 0;
    } else if (!*rel && g->rooted) {
        type_c = 0; /* described twice: an agent confused, or hostile */
    } else if (!*rel) {
        /* What was asked for: a file, or the folder to fill. */
        g->rooted = true;
        if (type_c == 'f') {
            char parent[PATH_MAX];
            snprintf(parent, sizeof(parent), "%s", g->local);
            char *slash = strrchr(parent, '/');
            if (slash && slash != parent) {
                *slash = '\0';
                atx_mkdir_p(parent);
            }
            g->fd = open(g->local, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
            if (g->fd < 0)
                get_fail(g, -errno, "cannot write", g->local);
        } else if (type_c == 'd') {
            if (atx_mkdir_p(g->local) < 0 ||
                (g->root_fd = open(g->local, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
                get_fail(g, -errno, "cannot make", g->local);
            else
                fchmod(g->root_fd, 0755);
        }
    } else if (g->root_fd >= 0 && safe_rel(rel) && (type_c == 'd' || type_c == 'f')) {
        /* Links are not made here: their targets are the system's word. */
        char leaf[NAME_MAX + 1];
        int dfd = parent_of(g, rel, leaf, sizeof(leaf));
        if (dfd < 0)
            get_fail(g, -errno, "cannot write below", g->local);
        else if (type_c == 'd' && mkdirat(dfd, leaf, 0755) < 0 && errno != EEXIST)
            get_fail(g, -errno, "cannot make a folder in", g->local);
        else if (type_c == 'f' && (g->fd = open_file(dfd, leaf)) < 0)
            get_fail(g, -errno, "cannot write in", g->local);
        if (dfd >= 0)
            close(dfd);
    }
    g->mode = mode;
    g->mtime = mtime;
    g->left = type_c == 'f' ? size : 0;
    if (type_c == 'f' && !g->left)
        file_done(g);
}

int agent_conn_copy_in(agent_conn *c, const char *local, const char *remote)
{
    pthread_mutex_lock(&c->copy_mu);
    int r = copy_in(c, local, remote);
    pthread_mutex_unlock(&c->copy_mu);
    return r;
}

int agent_conn_copy_out(agent_conn *c, const char *remote, const char *local,
                        const atx_copy_bounds *bounds)
{
    uint64_t max_file_bytes = bounds ? bounds->max_file_bytes : 0;
    getter g = { .c = c, .local = local, .root_fd = -1, .fd = -1, .max = max_file_bytes };
    buf b = { 0 };
    int r;

    atx_copy_budget_init(&g.budget, bounds);
    g.budget.b.max_file_bytes = 0; /* g.max says it, and the agent knows it */
    put_str(&b, remote);
    put_u64(&b, max_file_bytes); /* the agent sends no file larger */
    if (b.oom)
        return atx_error_oom();
    pthread_mutex_lock(&c->mu);
    request *q = req_new(c);
    if (!q) {
        pthread_mutex_unlock(&c->mu);
        free(b.p);
        return atx_error_oom();
    }
    q->on_frame = on_get_frame;
    q->ud = &g;
    if (q->state == 0)
        queue(c, AGENT_GET, q->id, b.p, b.len, NULL, 0);
    r = req_wait(c, q, 0, "a copy");
    req_free(c, q);
    pthread_mutex_unlock(&c->mu);
    free(b.p);
    file_done(&g);
    if (g.root_fd >= 0)
        close(g.root_fd);
    if (r == 0 && g.err)
        r = atx_error_set(g.err, "copying %s:%s to %s failed: %s", c->system_id, remote, local,
                          g.errmsg);
    else if (r == 0 && g.budget.over[0])
        r = atx_error_set(-EFBIG, "%s:%s: %s: left out (what fits is kept)", c->system_id,
                          remote, g.budget.over);
    else if (r < 0 && r != ATX_ELOST) {
        char why[1024];
        snprintf(why, sizeof(why), "%s", atx_error_last()->message);
        r = atx_error_set(r, "copying %s:%s to %s failed: %s", c->system_id, remote, local, why);
    }
    return r;
}
