/*
 * Running a process to its end: the one wait loop (atx/plugin/process.h).
 *
 * Each turn polls stdin (while input is left), the output fds, the wait fd
 * and the cancel fd, sleeping at most until the next instant something is
 * due: the deadline, the KILL after a grace, giving up on a process that
 * does not die, the end of the drain, a tick.
 */
#include "internal.h"
#include "atx/plugin/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_DRAIN_NS (500 * ATX_NSEC_PER_MSEC)
/* After SIGKILL, how long a process may take to be gone before it is given
 * up on: long enough for a loaded system, short of a frozen one. */
#define KILL_WAIT_NS (30 * ATX_NSEC_PER_SEC)
#define HURRY_WAIT_NS (500 * ATX_NSEC_PER_MSEC)
/* While a graceful stop runs, look this often whether it became a hurry. */
#define HURRY_POLL_NS (50 * ATX_NSEC_PER_MSEC)
/* A system that keeps the deadline itself (an agent) reports the timeout in
 * the exit; its word is awaited this long past deadline and grace before
 * this side stops the process on its own clock. */
#define SYSTEM_CLOCK_SLACK_NS (3 * ATX_NSEC_PER_SEC)

enum { F_IN, F_OUT, F_ERR, F_CTL, F_WAIT, F_CANCEL, F_N };

typedef struct runner {
    atx_proc *p;
    const atx_proc_run_opts *o;
    atx_proc_outcome *res;
    int fd[F_N];
    size_t in_off;
    bool exited, timed_out, killed;
    bool system_clock; /* the system enforces the deadline and says so */
    int64_t kill_at, give_up_at, drain_until, next_tick, deadline;
} runner;

static void min_at(int64_t *at, int64_t t)
{
    if (t > 0 && (*at == 0 || t < *at))
        *at = t;
}

static int64_t grace(const runner *r)
{
    return r->o->grace_ns > 0 ? r->o->grace_ns : ATX_NSEC_PER_SEC;
}

static void kill_now(runner *r, int64_t now, bool hurry)
{
    atx_proc_kill_tree(r->p, SIGKILL, 0);
    r->killed = true;
    r->kill_at = 0;
    r->give_up_at = now + (hurry ? HURRY_WAIT_NS : KILL_WAIT_NS);
}

static void term_now(runner *r, int64_t now)
{
    atx_proc_kill_tree(r->p, SIGTERM, 0);
    r->kill_at = now + grace(r);
}

/* When this side acts on the deadline: at it, or for a system that keeps it
 * itself only once that system's TERM, grace and word are overdue (its exit
 * may be on the way, and a process that ended before the deadline there did
 * not time out). */
static int64_t deadline_due(const runner *r)
{
    if (!r->deadline)
        return 0;
    return r->system_clock
               ? atx_add_sat(r->deadline, atx_add_sat(grace(r), SYSTEM_CLOCK_SLACK_NS))
               : r->deadline;
}

static bool hurried(const runner *r)
{
    return r->o->cancel_level && r->o->cancel_level(r->o->cancel_ud) > 1;
}

/* Hand what an fd had to the sink or the capture; false to stop the process. */
static bool deliver(runner *r, int which, const char *data, size_t len)
{
    const atx_proc_sink *s = r->o->sink;
    int k = 0;

    if (which == F_CTL) {
        k = s && s->control ? s->control(s->ud, data, len) : 0;
        if (k > 0) {
            atx_proc_close_control(r->p);
            r->fd[F_CTL] = -1;
        }
    } else if (s && s->output)
        k = s->output(s->ud, which == F_ERR, data, len);
    else if (r->o->capture[which == F_ERR])
        atx_capture_append(r->o->capture[which == F_ERR], data, len); /* OOM: kept short */
    return k >= 0;
}

/* Read what an fd has now. */
static void pump_out(runner *r, int which, int64_t now)
{
    char buf[65536];
    ssize_t n;

    do
        n = read(r->fd[which], buf, sizeof(buf));
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        if (r->res->aborted)
            return; /* the sink wanted no more */
        if (!deliver(r, which, buf, (size_t)n) && !r->killed && !r->exited) {
            r->res->aborted = 1;
            kill_now(r, now, false);
        }
        return;
    }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
        r->fd[which] = -1; /* its end (EIO: a terminal whose last holder went); the proc closes it */
}

static void feed(runner *r)
{
    const atx_proc_run_opts *o = r->o;
    while (r->in_off < o->input_len) {
        ssize_t n = atx_write_nosig(r->fd[F_IN], o->input + r->in_off, o->input_len - r->in_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0)
            break; /* it closed its stdin: the rest is not wanted */
        r->in_off += (size_t)n;
    }
    atx_proc_close_stdin(r->p);
    r->fd[F_IN] = -1;
}

/* Whether it has ended (reaped now if so); an ended system counts. */
static bool check_end(runner *r, atx_exit *ex, int64_t now, int64_t drain, int *rc)
{
    int w = atx_proc_wait(r->p, 0, ex);
    if (w != 0 && w != ATX_ELOST)
        return false;
    r->exited = true;
    r->drain_until = now + drain;
    if (w == ATX_ELOST)
        *rc = w;
    return true;
}

static bool outputs_open(const runner *r)
{
    return r->fd[F_OUT] >= 0 || r->fd[F_ERR] >= 0 || r->fd[F_CTL] >= 0;
}

int atx_proc_run(atx_proc *p, const atx_proc_run_opts *o, atx_proc_outcome *res)
{
    runner r = { .p = p, .o = o, .res = res };
    atx_exit ex = { 0 };
    int rc = 0;

    if (!p || !o || !res || o->version < 1)
        return atx_error_set(ATX_EINVAL, "running a process needs a process, options and an outcome");
    memset(res, 0, sizeof(*res));
    r.fd[F_IN] = atx_proc_stdin_fd(p);
    r.fd[F_OUT] = atx_proc_stdout_fd(p);
    r.fd[F_ERR] = atx_proc_stderr_fd(p);
    if (r.fd[F_ERR] == r.fd[F_OUT])
        r.fd[F_ERR] = -1;
    r.fd[F_CTL] = atx_proc_control_fd(p);
    r.fd[F_WAIT] = atx_proc_wait_fd(p);
    r.fd[F_CANCEL] = o->cancel_fd;
    /* Pipes and terminals: O_NONBLOCK is the only status flag they carry. */
    for (int i = F_OUT; i <= F_CTL; i++)
        if (r.fd[i] >= 0)
            fcntl(r.fd[i], F_SETFL, O_NONBLOCK);
    if (r.fd[F_IN] >= 0) {
        if (o->input && o->input_len) {
            fcntl(r.fd[F_IN], F_SETFL, O_NONBLOCK);
        } else {
            atx_proc_close_stdin(p);
            r.fd[F_IN] = -1;
        }
    }
    int64_t now = atx_now_ns();
    int64_t drain = o->drain_ns > 0 ? o->drain_ns : DEFAULT_DRAIN_NS;
    if (o->tick_ns > 0 && o->sink && o->sink->tick)
        r.next_tick = now + o->tick_ns;
    r.deadline = o->deadline_ns ? *o->deadline_ns : 0;
    if (r.deadline)
        r.system_clock = atx_proc_set_deadline(p, r.deadline) > 0;

    for (;;) {
        struct pollfd pfd[F_N];
        int slot[F_N], n = 0;
        for (int i = 0; i < F_N; i++) {
            slot[i] = -1;
            if (r.fd[i] < 0 || (i == F_WAIT && r.exited) ||
                (i == F_CANCEL && (res->interrupted || r.exited)))
                continue;
            slot[i] = n;
            pfd[n++] = (struct pollfd){ .fd = r.fd[i], .events = i == F_IN ? POLLOUT : POLLIN };
        }
        /* The next instant something is due. */
        int64_t at = 0;
        if (!r.exited) {
            if (!r.timed_out && !res->interrupted && r.deadline)
                min_at(&at, deadline_due(&r));
            min_at(&at, r.kill_at);
            min_at(&at, r.give_up_at);
            if (res->interrupted && !r.killed && o->cancel_level)
                min_at(&at, now + HURRY_POLL_NS);
        } else {
            min_at(&at, r.drain_until);
        }
        min_at(&at, r.next_tick);
        int ms = -1;
        if (at) {
            int64_t left = atx_add_sat(at, -atx_now_ns());
            ms = atx_poll_ms(left < 0 ? 0 : left);
        }
        if (n == 0 && ms < 0)
            break; /* nothing left to wait for */
        int k = poll(pfd, (nfds_t)n, ms);
        if (k < 0 && errno != EINTR) {
            rc = atx_error_set(-errno, "poll: %s", strerror(errno));
            atx_proc_kill_tree(p, SIGKILL, 0);
            break;
        }
        now = atx_now_ns();
        if (k > 0) {
            if (slot[F_IN] >= 0 && pfd[slot[F_IN]].revents)
                feed(&r);
            for (int i = F_OUT; i <= F_CTL; i++)
                if (slot[i] >= 0 && pfd[slot[i]].revents)
                    pump_out(&r, i, now);
            if (slot[F_CANCEL] >= 0 && (pfd[slot[F_CANCEL]].revents & POLLIN)) {
                res->interrupted = 1;
                if (hurried(&r))
                    kill_now(&r, now, true);
                else if (!r.killed)
                    term_now(&r, now);
            }
            if (slot[F_WAIT] >= 0 && pfd[slot[F_WAIT]].revents)
                check_end(&r, &ex, now, drain, &rc);
        }
        if (!r.exited) {
            if (res->interrupted && !r.killed && hurried(&r))
                kill_now(&r, now, true);
            int64_t dl = o->deadline_ns ? *o->deadline_ns : 0;
            if (dl != r.deadline) {
                r.deadline = dl;
                if (!r.timed_out && dl)
                    r.system_clock = atx_proc_set_deadline(p, dl) > 0;
                else if (!r.timed_out)
                    atx_proc_set_deadline(p, dl);
            }
            if (r.deadline && !r.timed_out && !res->interrupted && now >= deadline_due(&r)) {
                /* Ended just now? Then its exit status decides, not the clock. */
                if (!check_end(&r, &ex, now, drain, &rc) && !r.killed) {
                    r.timed_out = true;
                    if (r.system_clock)
                        kill_now(&r, now, false); /* its TERM and grace were spent there */
                    else
                        term_now(&r, now);
                }
            }
        }
        if (!r.exited && r.kill_at && now >= r.kill_at)
            kill_now(&r, now, hurried(&r));
        if (!r.exited && r.give_up_at && now >= r.give_up_at) {
            res->abandoned = 1;
            break;
        }
        if (r.next_tick && now >= r.next_tick) {
            if (o->sink->tick(o->sink->ud) < 0 && !r.exited && !r.killed) {
                res->aborted = 1;
                kill_now(&r, now, false);
            }
            r.next_tick += o->tick_ns;
            if (r.next_tick <= now)
                r.next_tick = now + o->tick_ns;
        }
        if (r.exited && (!outputs_open(&r) || now >= r.drain_until || rc == ATX_ELOST))
            break;
    }
    res->exit = ex;
    res->exit.timed_out = ex.timed_out || r.timed_out;
    if (rc == ATX_ELOST && !*atx_error_last()->message)
        atx_error_set(rc, "the system was lost");
    return rc;
}

int atx_proc_run_spawn(atx_system *sys, const atx_spawn_opts *so, const atx_proc_run_opts *o,
                       atx_proc_outcome *res)
{
    atx_proc *p;
    int r = sys ? atx_system_spawn(sys, so, &p) : atx_spawn_local(so, &p);

    if (r < 0)
        return r;
    r = atx_proc_run(p, o, res);
    if (r == ATX_ELOST) {
        /* Keep the detail: freeing may overwrite it. */
        char why[1024];
        snprintf(why, sizeof(why), "%s", atx_error_last()->message);
        atx_proc_free(p);
        return atx_error_set(r, "%s", why);
    }
    atx_proc_free(p);
    return r;
}
