/*
 * Workers and provisioner threads. Each leased system gets a worker thread
 * that pulls tests for it until nothing it can serve remains; each
 * provisioner gets a thread that leases systems while tests wait for them,
 * so a slow reserve never stalls the scheduler.
 */
#include "orch.h"
#include "../framework/src/agent.h"
#include "atx/plugin/process.h"

#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct run_worker {
    atx_run *run;
    prov_inst *prov;
    atx_system *sys;
    pthread_t thread;
    bool *applicable;      /* per class */
    bool waiting;          /* blocked for work (under run->mu) */
    bool deferring;        /* waiting for a new system to take our rerun */
    atx_vec prepared;      /* exec_inst*, then its state for the system, ... */
    bool lost;             /* the system stopped answering (under run->mu) */
    const char *cls;       /* the system's class (interned), for the history */
    test_state *cur;       /* the test running now (under run->mu) */
    int64_t cur_t0;
};

/* Whether a worker could still get a test: a class it serves has queued or
 * running tests (a running one may fail and come back for a rerun). */
static bool could_get_work(atx_run *run, const run_worker *w)
{
    for (size_t i = 0; i < run->classes.len; i++) {
        klass *k = run->classes.items[i];
        if (w->applicable[i] && (k->len || k->running))
            return true;
    }
    return false;
}

/* Count a test's final own result in the summary. Under run->mu. */
void atx_run_record_final(atx_run *run, test_state *ts, atx_status status, const char *type)
{
    atx_summary *s = &run->summary;

    ts->phase = TS_DONE;
    run->done++;
    switch (status) {
    case ATX_STATUS_PASS:
    case ATX_STATUS_WARN:
    case ATX_STATUS_INFO:
        s->passed++;
        if (ts->had_failure)
            s->flaky++;
        break;
    case ATX_STATUS_FAIL:
        s->failed++;
        break;
    case ATX_STATUS_SKIP:
        if (type && strcmp(type, "not-run") == 0)
            s->not_run++;
        else
            s->skipped++;
        break;
    case ATX_STATUS_INFRA:
        s->infra++;
        break;
    case ATX_STATUS_ERROR:
    case ATX_STATUS_CUSTOM:
        s->errors++;
        break;
    }
}

static atx_result *own_result(atx_attempt *a)
{
    atx_result *own = NULL;
    for (size_t i = 0; i < a->results.len; i++)
        if (!atx_result_subtest(a->results.items[i]))
            own = a->results.items[i];
    return own;
}

/* An attempt's own result made by the orchestrator (infra trouble, no result). */
atx_result *atx_run_own_result(const test_state *ts, atx_status status, const char *type,
                               const char *note)
{
    atx_result *r;

    if (atx_result_new(atx_test_name(ts->t), NULL, &r) < 0)
        return NULL;
    atx_result_set_status(r, status);
    atx_result_set_error_type(r, type);
    atx_result_set_note(r, note);
    return r;
}

/* An executor's own result of an attempt the system was lost under goes:
 * the orchestrator's infra result says what happened. Subresults stay. */
static void drop_own(atx_attempt *a)
{
    size_t k = 0;
    for (size_t i = 0; i < a->results.len; i++) {
        atx_result *r = a->results.items[i];
        if (atx_result_subtest(r))
            a->results.items[k++] = r;
        else
            atx_result_unref(r);
    }
    a->results.len = k;
    a->own_emitted = false;
}

static void emit_own(atx_attempt *a, atx_status status, const char *type, const char *note)
{
    atx_result *r = atx_run_own_result(a->ts, status, type, note);
    if (r)
        atx_attempt_emit(a, r);
}

/* After an attempt: final or rerun; hand results to the aggregators.
 * An attempt that ended in infrastructure trouble (the system was lost or
 * could not be prepared) runs again elsewhere without using the test's
 * rerun budget; its results are kept, marked superseded. */
static void finish_attempt(atx_run *run, run_worker *w, atx_attempt *a, bool infra)
{
    test_state *ts = a->ts;
    atx_result *own = own_result(a);
    atx_status st = atx_result_status(own);
    bool failed = atx_status_is_failure(atx_result_status(own));
    bool going = !run->stopping && atomic_load(&run->cancel_level) == 0;
    bool requeue = infra && ts->infra_left > 0 && going;
    bool rerun = requeue || (failed && ts->reruns_left > 0 && going);

    if (failed && !requeue)
        ts->had_failure = true;
    ts->cls->running--;
    run->running--;
    if (rerun) {
        if (requeue)
            ts->infra_left--;
        else
            ts->reruns_left--;
        free(ts->last_system);
        ts->last_system = strdup(atx_system_id(a->sys));
        atx_sched_push(run, ts);
    } else {
        const char *type = atx_result_error_type(own);
        atx_run_record_final(run, ts, st, type);
        /* How long the test takes, for the history: not when it never
         * really ran (infrastructure, skipped, interrupted). */
        if (st == ATX_STATUS_PASS || st == ATX_STATUS_FAIL || st == ATX_STATUS_WARN ||
            st == ATX_STATUS_INFO || (type && strcmp(type, "timeout") == 0)) {
            ts->took_ns = atx_result_duration(own);
            ts->took_class = w->cls;
        }
    }
    /* The queue takes the attempt's references: results are not touched
     * here after this. The attempt's results go as one batch, so the
     * journal never holds half an attempt; its own result ends it. */
    run->summary.results += a->results.len;
    agg_item *head = NULL, *tail = NULL;
    for (size_t i = 0; i < a->results.len; i++) {
        atx_result *r = a->results.items[i];
        agg_item *it = calloc(1, sizeof(*it));
        atx_result_set_final(r, !rerun);
        if (!it) {
            atx_result_unref(r);
            continue;
        }
        it->kind = AGG_RESULT;
        it->jid = ts->jid;
        it->result = r;
        if (r == own)
            it->outcome = !rerun ? "final" : requeue ? "requeue" : "rerun";
        if (tail)
            tail->next = it;
        else
            head = it;
        tail = it;
    }
    if (head)
        atx_run_agg_push_chain(run, head, tail);
    if (!rerun && run->done == run->tests.len)
        atx_run_wake(run);
    /* Waiting workers re-check: a rerun is queued or a class may be empty.
     * Provisioners care only about new demand: a rerun (a test taken or
     * finished leaves demand against idle systems as it was). At fleet
     * scale this saves a wake-up per test. */
    if (run->waiting_workers)
        pthread_cond_broadcast(&run->work_cv);
    if (rerun)
        atx_run_prov_signal(run);
}

/* Whether x prepared the system; *sys_state gets its state for it. */
static bool prepared(run_worker *w, exec_inst *x, void **sys_state)
{
    for (size_t i = 0; i + 1 < w->prepared.len; i += 2)
        if (w->prepared.items[i] == x) {
            *sys_state = w->prepared.items[i + 1];
            return true;
        }
    return false;
}

static bool has_v2(const exec_inst *x)
{
    return x->vt->version >= 2 && x->vt->prepare_system;
}

/* Run one attempt without the lock. Returns release flags for the system. */
static unsigned run_attempt(run_worker *w, test_state *ts, atx_attempt *a)
{
    atx_run *run = w->run;
    exec_inst *x = ts->exec;
    unsigned flags = 0;
    int rc = 0;

    a->started_wall = atx_wallclock_ns();
    agg_item *it = calloc(1, sizeof(*it));
    if (it) {
        it->kind = AGG_STARTED;
        it->jid = ts->jid;
        it->when = a->started_wall;
        it->test = ts->t;
        it->system_id = strdup(atx_system_id(w->sys));
        it->attempt = a->number;
        atx_run_agg_push(run, it);
    }
    int64_t t0 = atx_now_ns();

    if (!prepared(w, x, &a->sys_state)) {
        int64_t until = atx_now_ns() + run->policy.prepare_timeout_ns;
        void *sys_state = NULL;
        atx_system_set_phase_deadline(w->sys, until);
        if (has_v2(x))
            rc = x->vt->prepare_system(x->state, w->sys, &sys_state);
        else if (x->vt->prepare)
            rc = x->vt->prepare(x->state, w->sys);
        atx_system_set_phase_deadline(w->sys, 0);
        if (rc == 0 && atx_now_ns() > until)
            rc = atx_error_set(ATX_ETIMEDOUT, "it took longer than the prepare timeout");
        if (rc == 0 && (atx_vec_push(&w->prepared, x) < 0 ||
                        atx_vec_push(&w->prepared, sys_state) < 0))
            rc = ATX_ENOMEM;
        if (rc < 0) {
            char note[1200];
            snprintf(note, sizeof(note), "preparing system %s for %s failed: %s",
                     atx_system_id(w->sys), x->kind, atx_error_last()->message);
            emit_own(a, ATX_STATUS_INFRA, "prepare", note);
            flags |= ATX_RELEASE_BROKEN;
        }
        a->sys_state = sys_state;
    }
    if (rc == 0) {
        atx_error_clear();
        rc = x->vt->run(x->state, a);
        /* A failing run is infrastructure trouble: the system is retired
         * even when the executor reported the test's result itself. */
        if (rc < 0)
            flags |= ATX_RELEASE_BROKEN;
        char why[600];
        bool lost = atx_system_lost_why(w->sys, why, sizeof(why));
        if (lost)
            flags |= ATX_RELEASE_BROKEN | ATX_RELEASE_LOST;
        if (lost && rc < 0) {
            /* The system stopped answering under the test: whatever the
             * executor made of it, the attempt is infrastructure's. */
            char note[1200];
            snprintf(note, sizeof(note), "system %s %s", atx_system_id(w->sys), why);
            drop_own(a);
            emit_own(a, ATX_STATUS_INFRA, "lost", note);
        } else if (rc < 0 && !a->own_emitted) {
            char note[1200];
            snprintf(note, sizeof(note), "executor %s failed on %s: %s", x->kind,
                     atx_system_id(w->sys),
                     *atx_error_last()->message ? atx_error_last()->message : atx_strerror(rc));
            emit_own(a, ATX_STATUS_INFRA, "executor", note);
        }
    }
    if (!a->own_emitted)
        emit_own(a, ATX_STATUS_ERROR, "no-result", "the executor reported no result for the test");
    int64_t dur = atx_now_ns() - t0;
    for (size_t i = 0; i < a->results.len; i++) {
        atx_result *r = a->results.items[i];
        if (atx_result_started(r) == 0)
            atx_result_set_times(r, a->started_wall, dur);
    }
    /* What the test left in its folder and its results: the secrets it saw,
     * masked (what cannot be masked is removed, and the result says so). */
    bool secrets = atx_secrets_count(&run->secrets) > 0;
    if (secrets && a->dir && atx_secrets_mask_tree(&run->secrets, a->dir) < 0) {
        atx_result *own = own_result(a);
        const char *had = atx_result_note(own);
        char note[1600];
        snprintf(note, sizeof(note), "%s%s%s", had && *had ? had : "", had && *had ? "; " : "",
                 atx_error_last()->message);
        atx_result_set_note(own, note);
    }
    for (size_t i = 0; secrets && i < a->results.len; i++)
        if (atx_result_mask(a->results.items[i], &run->secrets) < 0)
            atx_run_logf(run, ATX_LOG_ERROR, "test %s: a result could not be masked: %s",
                         atx_test_name(ts->t), atx_error_last()->message);
    atx_system_set_fresh(w->sys, 0);
    if (atx_test_destructive(ts->t))
        flags |= ATX_RELEASE_DIRTY;
    return flags;
}

/* Whether another worker is idle, waiting for work that can serve class k
 * (if given) on a system other than the one named avoid (if given). Under
 * run->mu. */
static bool other_waiting(atx_run *run, const run_worker *self, const klass *k,
                          const char *avoid)
{
    for (size_t i = 0; i < run->workers.len; i++) {
        const run_worker *w = run->workers.items[i];
        if (w != self && w->waiting && (!k || w->applicable[k->index]) &&
            !(avoid && w->sys && strcmp(atx_system_id(w->sys), avoid) == 0))
            return true;
    }
    return false;
}

/* ---- the system lifecycle: setup, ready, cleanup ---- */

static int cancel_level(void *ud)
{
    return atomic_load(&((atx_run *)ud)->cancel_level);
}

/* Run `sh -c cmd` on the system within timeout_ns; 0 when it exits 0, else
 * a negative code with the last line of its output in why. */
static int system_command(atx_run *run, atx_system *sys, const char *cmd, int64_t timeout_ns,
                          bool cleanup, char *why, size_t whylen)
{
    const char *argv[] = { "sh", "-c", cmd, NULL };
    const char *env[] = { "ATX_TEST_SYSTEM=1", NULL };
    atx_spawn_opts so = ATX_SPAWN_OPTS_INIT;
    atx_proc_run_opts o = ATX_PROC_RUN_OPTS_INIT;
    atx_proc_outcome res;
    atx_capture cap;
    int64_t deadline = atx_now_ns() + timeout_ns;
    int r;

    so.argv = argv;
    so.env = env;
    so.flags = ATX_SPAWN_STDOUT_PIPE | ATX_SPAWN_STDERR_TO_STDOUT;
    so.deadline_ns = deadline;
    so.kill_grace_ns = run->policy.kill_grace_ns;
    atx_capture_init(&cap, 0, 2048);
    o.capture[0] = &cap;
    o.deadline_ns = &deadline;
    o.grace_ns = run->policy.kill_grace_ns;
    /* A cancel stops setup and ready probes; cleanup runs, but a hurry
     * stops it too. */
    o.cancel_fd = cleanup ? run->hurry_pipe[0] : run->cancel_pipe[0];
    o.cancel_level = cancel_level;
    o.cancel_ud = run;
    r = atx_proc_run_spawn(sys, &so, &o, &res);
    if (r < 0) {
        snprintf(why, whylen, r == ATX_ELOST ? "'%s': the system was lost (%s)" : "'%s': %s", cmd,
                 atx_error_last()->message);
        atx_capture_release(&cap);
        return r;
    }
    const atx_exit *ex = &res.exit;
    if (ex->exited && ex->code == 0 && !res.interrupted) {
        atx_capture_release(&cap);
        return 0;
    }
    char *text = NULL;
    size_t len = 0;
    atx_capture_collect(&cap, &text, &len);
    atx_capture_release(&cap);
    /* The last line of what it said. */
    while (len && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        text[--len] = '\0';
    const char *line = text ? strrchr(text, '\n') : NULL;
    line = line ? line + 1 : text ? text : "";
    if (res.abandoned)
        snprintf(why, whylen, "'%s' did not end after SIGKILL", cmd);
    else if (res.interrupted)
        snprintf(why, whylen, "'%s' was interrupted: the run was cancelled", cmd);
    else if (ex->timed_out)
        snprintf(why, whylen, "'%s' timed out", cmd);
    else if (ex->exited)
        snprintf(why, whylen, "'%s' exited %d: %s", cmd, ex->code, line);
    else
        snprintf(why, whylen, "'%s' was killed by signal %d", cmd, ex->signal);
    free(text);
    return ATX_EINFRA;
}

/* The pump thread of a system's agent: it stopped answering. The worker
 * stops taking tests for it (an idle one is woken) and says so when it lets
 * it go: a test that rebooted it may still bring it back. */
static void system_lost(void *ud, const char *why)
{
    run_worker *w = ud;
    atx_run *run = w->run;

    (void)why;
    pthread_mutex_lock(&run->mu);
    w->lost = true;
    pthread_cond_broadcast(&run->work_cv);
    pthread_mutex_unlock(&run->mu);
}

/* The lease's agent (unless the system contains its processes itself),
 * setup commands, then the ready probe retried until it passes or its
 * timeout: false means the system is not usable. */
static bool bring_up(atx_run *run, run_worker *w)
{
    prov_inst *p = w->prov;
    atx_system *sys = w->sys;
    char why[1200] = "";
    bool ok = true;

    int64_t until = atx_now_ns() + run->policy.prepare_timeout_ns;
    if (!atx_system_contained(sys)) {
        agent_liveness lv = { run->policy.liveness_interval_ns, run->policy.liveness_timeout_ns,
                              system_lost, w, run->hurry_pipe[0] };
        if (atx_system_attach_agent(sys, &lv, until) < 0) {
            snprintf(why, sizeof(why), "%s", atx_error_last()->message);
            ok = false;
        }
    }
    for (size_t i = 0; p->setup && p->setup[i] && ok; i++)
        ok = system_command(run, sys, p->setup[i], until - atx_now_ns(), false, why,
                            sizeof(why)) == 0;
    if (ok && p->ready) {
        until = atx_now_ns() + p->ready_timeout_ns;
        for (;;) {
            ok = system_command(run, sys, p->ready, 30 * ATX_NSEC_PER_SEC, false, why,
                                sizeof(why)) == 0;
            if (ok || atx_now_ns() >= until || atomic_load(&run->cancel_level))
                break;
            /* Try again in a second, or at once when the run is cancelled. */
            struct pollfd c = { .fd = run->cancel_pipe[0], .events = POLLIN };
            poll(&c, 1, 1000);
        }
    }
    pthread_mutex_lock(&run->mu);
    if (ok) {
        p->not_ready = 0;
    } else {
        /* Replaced within a budget, waiting longer each time (1 s, 2 s):
         * then the provisioner has failed. */
        int wait_s = 1 << p->not_ready;
        p->retry_at = atx_now_ns() + wait_s * ATX_NSEC_PER_SEC;
        if (p->not_ready + 1 < 3)
            atx_run_logf(run, ATX_LOG_WARNING, "system %s is not usable, releasing it "
                         "(the next one in %d s): %s", atx_system_id(sys), wait_s, why);
        else
            atx_run_logf(run, ATX_LOG_ERROR, "system %s is not usable, releasing it; the "
                         "provisioner gives up after 3: %s", atx_system_id(sys), why);
        if (++p->not_ready >= 3) {
            p->failed = true;
            free(p->last_error);
            p->last_error = strdup(why);
            atx_run_wake(run);
        }
    }
    pthread_mutex_unlock(&run->mu);
    return ok;
}

/* Cleanup commands and the release, within the release timeout. */
static void clean_up(atx_run *run, prov_inst *p, atx_system *sys)
{
    char why[1200];
    int64_t until = atx_now_ns() + run->policy.release_timeout_ns;
    for (size_t i = 0; p->cleanup && p->cleanup[i]; i++)
        if (system_command(run, sys, p->cleanup[i], until - atx_now_ns(), true, why,
                           sizeof(why)) < 0)
            atx_run_logf(run, ATX_LOG_WARNING, "cleanup on %s: %s", atx_system_id(sys), why);
    atx_system_set_phase_deadline(sys, until);
}

/* Whether a provisioner that can serve class k may lease one more system. */
static bool spare_capacity(atx_run *run, const klass *k)
{
    for (size_t i = 0; i < run->provs.len; i++) {
        prov_inst *p = run->provs.items[i];
        if (p->failed || !p->started || p->leased + p->reserving >= p->capacity)
            continue;
        for (size_t o = 0; o < p->vt->offer_count(p->state); o++)
            if (atx_sched_applicable(run, k, p->vt->offer(p->state, o), NULL))
                return true;
    }
    return false;
}

static void *worker_main(void *arg)
{
    run_worker *w = arg;
    atx_run *run = w->run;
    unsigned flags = 0;

    if (!bring_up(run, w))
        flags = ATX_RELEASE_BROKEN;
    pthread_mutex_lock(&run->mu);
    w->cls = atx_run_sys_class(run, atx_system_labels(w->sys));
    for (size_t i = 0; i < run->classes.len && !flags; i++)
        w->applicable[i] = atx_sched_applicable(run, run->classes.items[i],
                                                atx_system_labels(w->sys), NULL);
    /* The cancel level is set at once, even from a signal handler; the main
     * thread sets stopping a moment later: nothing new starts after either. */
    while (!run->stopping && !atomic_load(&run->cancel_level) && !flags && !w->lost) {
        test_state *avoided;
        test_state *ts = atx_sched_pick(run, w->sys, w->applicable, true, &avoided);
        if (!ts && avoided) {
            /* Only our own reruns are left for us. An idle worker that can
             * serve them takes them; else, once, a provisioner with room
             * leases a fresh system for them; else we take them. */
            if (other_waiting(run, w, avoided->cls, avoided->last_system)) {
                pthread_cond_broadcast(&run->work_cv);
            } else if (!avoided->deferred && spare_capacity(run, avoided->cls)) {
                avoided->deferred = true;
                w->deferring = true;
                w->prov->idle--; /* so the provisioner sees the demand */
                atx_run_prov_signal(run);
            } else {
                ts = atx_sched_pick(run, w->sys, w->applicable, false, &avoided);
            }
        }
        if (!ts) {
            if (!avoided && !could_get_work(run, w))
                break;
            w->waiting = true;
            run->waiting_workers++;
            pthread_cond_wait(&run->work_cv, &run->mu);
            run->waiting_workers--;
            w->waiting = false;
            if (w->deferring) {
                w->deferring = false;
                w->prov->idle++;
            }
            continue;
        }
        ts->phase = TS_RUNNING;
        w->cur = ts;
        w->cur_t0 = atx_now_ns();
        ts->attempts++;
        ts->cls->running++;
        run->running++;
        run->summary.attempts++;
        w->prov->idle--;
        pthread_mutex_unlock(&run->mu);

        atx_attempt a = { .run = run, .ts = ts, .sys = w->sys, .number = ts->attempts };
        flags = run_attempt(w, ts, &a);

        pthread_mutex_lock(&run->mu);
        w->cur = NULL;
        /* A connection that dropped under a test that rebooted the system
         * is its old one: what counts is whether it answers now. */
        if (w->lost && !atx_system_lost_why(w->sys, NULL, 0))
            w->lost = false;
        if (w->lost)
            flags |= ATX_RELEASE_BROKEN | ATX_RELEASE_LOST;
        finish_attempt(run, w, &a, flags & ATX_RELEASE_BROKEN);
        w->prov->idle++;
        atx_vec_release(&a.results);
        free(a.dir);
        free(a.rel);
    }
    if (w->lost)
        flags |= ATX_RELEASE_BROKEN | ATX_RELEASE_LOST;
    pthread_mutex_unlock(&run->mu);
    char why[600];
    if ((flags & ATX_RELEASE_LOST) && atx_system_lost_why(w->sys, why, sizeof(why)))
        atx_run_logf(run, ATX_LOG_WARNING, "system %s %s: it is released and not used again",
                     atx_system_id(w->sys), why);

    /* Executors undo their preparation (finish steps), cleanup commands
     * run, the agent goes (what it started with it), then the system goes
     * back before the provisioner may lease its slot again. A system that
     * stopped answering is not waited on: its calls fail at once, and in a
     * hurry nothing more is asked of any system. */
    bool hurry = atomic_load(&run->cancel_level) >= 2;
    if (atx_system_lost_why(w->sys, NULL, 0))
        flags |= ATX_RELEASE_BROKEN | ATX_RELEASE_LOST;
    if (hurry)
        atx_system_abandon(w->sys, "was not waited on: the run was cancelled a second time");
    for (size_t i = 0; i + 1 < w->prepared.len; i += 2) {
        exec_inst *x = w->prepared.items[i];
        if (has_v2(x)) {
            if (x->vt->release_system)
                x->vt->release_system(x->state, w->sys, w->prepared.items[i + 1]);
        } else if (x->vt->finish) {
            x->vt->finish(x->state, w->sys);
        }
    }
    if (!(flags & ATX_RELEASE_LOST) && !hurry)
        clean_up(run, w->prov, w->sys);
    atx_system_stop_agent(w->sys, hurry);
    if (hurry)
        flags |= ATX_RELEASE_LOST;
    w->prov->vt->release(w->prov->state, w->sys, flags);
    w->sys = NULL;

    pthread_mutex_lock(&run->mu);
    w->prov->leased--;
    w->prov->idle--;
    run->leased--;
    run->active_workers--;
    atx_run_prov_signal(run);
    pthread_mutex_unlock(&run->mu);
    atx_run_wake(run);
    return NULL;
}

int atx_worker_start(atx_run *run, prov_inst *p, atx_system *sys)
{
    run_worker *w = calloc(1, sizeof(*w));
    int e;

    if (!w)
        return atx_error_oom();
    w->run = run;
    w->prov = p;
    w->sys = sys;
    w->applicable = calloc(run->classes.len + 1, sizeof(bool));
    if (!w->applicable || atx_vec_push(&run->workers, w) < 0) {
        free(w->applicable);
        free(w);
        return atx_error_oom();
    }
    p->leased++;
    p->idle++;
    run->active_workers++;
    if ((e = pthread_create(&w->thread, NULL, worker_main, w)) != 0) {
        run->workers.len--;
        p->leased--;
        p->idle--;
        run->active_workers--;
        free(w->applicable);
        free(w);
        return atx_error_set(-e, "cannot start a worker thread: %s", strerror(e));
    }
    return 0;
}

void atx_worker_join_all(atx_run *run)
{
    /* Provisioner threads are gone: nothing adds workers any more. */
    for (size_t i = 0; i < run->workers.len; i++)
        pthread_join(((run_worker *)run->workers.items[i])->thread, NULL);
    pthread_mutex_lock(&run->mu);
    for (size_t i = 0; i < run->workers.len; i++) {
        run_worker *w = run->workers.items[i];
        atx_vec_release(&w->prepared);
        free(w->applicable);
        free(w);
    }
    run->workers.len = 0;
    pthread_mutex_unlock(&run->mu);
}

/* Expected time left of the tests running now: in all, and the longest.
 * Under run->mu. */
void atx_run_running_left(atx_run *run, int64_t *sum, int64_t *longest)
{
    int64_t now = atx_now_ns();
    *sum = *longest = 0;
    for (size_t i = 0; i < run->workers.len; i++) {
        const run_worker *w = run->workers.items[i];
        int64_t left = w->cur ? w->cur->expected_ns - (now - w->cur_t0) : 0;
        if (left > 0) {
            *sum += left;
            if (left > *longest)
                *longest = left;
        }
    }
}

/* Whether any queued test could run on a system with these labels. */
static int want_labels(void *ud, const atx_labels *labels)
{
    prov_inst *p = ud;
    atx_run *run = p->run;
    int yes = 0;

    pthread_mutex_lock(&run->mu);
    for (size_t i = 0; i < run->classes.len && !yes; i++) {
        klass *k = run->classes.items[i];
        yes = k->len && atx_sched_applicable(run, k, labels, NULL);
    }
    pthread_mutex_unlock(&run->mu);
    return yes;
}

/* Queued tests this provisioner could serve. Under run->mu. */
static size_t demand(atx_run *run, prov_inst *p)
{
    size_t n = 0;

    for (size_t i = 0; i < run->classes.len; i++) {
        klass *k = run->classes.items[i];
        if (!k->len)
            continue;
        for (size_t o = 0; o < p->vt->offer_count(p->state); o++) {
            if (atx_sched_applicable(run, k, p->vt->offer(p->state, o), NULL)) {
                n += k->len;
                break;
            }
        }
    }
    return n;
}

#define RESERVE_FAILURES_MAX 3

/* Wait on prov_cv until a monotonic instant (or a wake-up). Under run->mu. */
static void wait_until(atx_run *run, int64_t until_ns)
{
    struct timespec ts;
    int64_t left = until_ns - atx_now_ns();
    if (left <= 0)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(left / ATX_NSEC_PER_SEC);
    ts.tv_nsec += (long)(left % ATX_NSEC_PER_SEC);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&run->prov_cv, &run->mu, &ts);
}

void *atx_provisioner_main(void *arg)
{
    prov_inst *p = arg;
    atx_run *run = p->run;

    pthread_mutex_lock(&run->mu);
    while (!run->stopping && !atomic_load(&run->cancel_level) && !p->failed) {
        /* Reserves under way count as leased and idle already; after a
         * failure, one at a time until one succeeds. */
        if (p->leased + p->reserving >= p->capacity ||
            demand(run, p) <= (size_t)(p->idle + p->reserving) ||
            (run->policy.max_running && run->leased >= (size_t)run->policy.max_running) ||
            (p->failures > 0 && p->reserving > 0)) {
            pthread_cond_wait(&run->prov_cv, &run->mu);
            continue;
        }
        if (atx_now_ns() < p->retry_at) {
            /* Its last reserve failed, or its last system never became
             * usable: back off first. */
            wait_until(run, p->retry_at);
            continue;
        }
        p->reserving++;
        run->leased++; /* held for this reservation: the cap counts it */
        uint64_t gen = run->prov_gen;
        unsigned epoch = p->fail_epoch;
        pthread_mutex_unlock(&run->mu);

        atx_reserve_req req = {
            .version = ATX_RESERVE_REQ_VERSION,
            .deadline_ns = atx_now_ns() + run->policy.reserve_timeout_ns,
            .want = want_labels,
            .userdata = p,
            .cancel_fd = run->cancel_pipe[0],
        };
        atx_system *sys = NULL;
        atx_error_clear();
        int r = p->vt->reserve(p->state, &req, &sys);
        if (r == 0 && sys && p->id_suffix[0] && atx_system_add_id_suffix(sys, p->id_suffix) < 0) {
            p->vt->release(p->state, sys, 0);
            sys = NULL;
            r = ATX_ENOMEM;
        }
        if (r == 0 && sys && p->vt->version >= 3 && p->vt->reboot)
            atx_system_set_reboot(sys, p->vt->reboot, p->state);

        pthread_mutex_lock(&run->mu);
        p->reserving--;
        if (p->nthreads > 1) /* siblings waiting on this reserve look again */
            pthread_cond_broadcast(&run->prov_cv);
        if (r == 0 && sys) {
            p->failures = 0;
            p->retry_at = 0;
            if (run->stopping || atx_worker_start(run, p, sys) < 0) {
                run->leased--;
                pthread_mutex_unlock(&run->mu);
                p->vt->release(p->state, sys, 0);
                pthread_mutex_lock(&run->mu);
                atx_run_prov_signal(run);
            }
            continue;
        }
        run->leased--;
        /* Workers waiting for a fresh system take their reruns themselves. */
        pthread_cond_broadcast(&run->work_cv);
        if (r == ATX_ENOTFOUND) {
            /* Nothing of ours is wanted now; wait for the queue to change,
             * unless it changed while we were asking. */
            if (gen == run->prov_gen)
                pthread_cond_wait(&run->prov_cv, &run->mu);
            continue;
        }
        /* Reserves that ran together and failed are one trouble: only the
         * first failure since this one started counts. */
        if (epoch == p->fail_epoch && p->failures < RESERVE_FAILURES_MAX) {
            p->failures++;
            p->fail_epoch++;
        }
        free(p->last_error);
        p->last_error = strdup(*atx_error_last()->message ? atx_error_last()->message
                                                           : atx_strerror(r));
        atx_run_logf(run, ATX_LOG_WARNING, "provisioner %s: reserve failed (%d of %d): %s",
                     atx_plugin_ctx_name(p->ctx), p->failures, RESERVE_FAILURES_MAX,
                     p->last_error ? p->last_error : "");
        /* With reserves still under way, the last one decides: it may yet
         * bring a system. */
        if (p->failures >= RESERVE_FAILURES_MAX && p->reserving == 0) {
            p->failed = true;
            atx_run_wake(run);
            atx_run_prov_signal(run);
            break;
        }
        /* Back off before trying again: 1 s, 2 s, ... (checked at the top of
         * the loop, so a wake-up meanwhile does not cut it short). */
        p->retry_at = atx_now_ns() + p->failures * ATX_NSEC_PER_SEC;
    }
    pthread_mutex_unlock(&run->mu);
    return NULL;
}
