/*
 * Picking the next test. Tests with equal requirements form a class; each
 * class keeps its queued tests in a binary heap ordered by priority, then
 * expected duration (from the history, else declared; unknown first, then
 * longest), then arrival. A worker
 * looks only at the leading entries of the classes its system can serve, and
 * the fitness callback decides between those candidates, so a pick costs
 * O(classes) whatever the queue's length. Everything here runs under run->mu.
 */
#include "orch.h"

#include <string.h>

/* Whether a should run before b by the class order. The keys live in the
 * heap's entries, so sifting reads one array and chases no pointers. */
static bool before(const heap_ent *a, const heap_ent *b)
{
    if (a->priority != b->priority)
        return a->priority > b->priority;
    if (a->expected_ns != b->expected_ns) {
        if (a->expected_ns == 0 || b->expected_ns == 0)
            return a->expected_ns == 0; /* no estimate: go early */
        return a->expected_ns > b->expected_ns;
    }
    return a->seq < b->seq;
}

static bool ts_before(const test_state *a, const test_state *b)
{
    heap_ent x = { a->priority, a->expected_ns, a->seq, NULL };
    heap_ent y = { b->priority, b->expected_ns, b->seq, NULL };
    return before(&x, &y);
}

static void heap_set(klass *k, size_t i, heap_ent e)
{
    k->heap[i] = e;
    e.ts->heap_pos = i;
}

static void sift_up(klass *k, size_t i)
{
    heap_ent e = k->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(&e, &k->heap[parent]))
            break;
        heap_set(k, i, k->heap[parent]);
        i = parent;
    }
    heap_set(k, i, e);
}

static void sift_down(klass *k, size_t i)
{
    heap_ent e = k->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, best = i;
        const heap_ent *b = &e;
        if (l < k->len && before(&k->heap[l], b)) {
            best = l;
            b = &k->heap[l];
        }
        if (l + 1 < k->len && before(&k->heap[l + 1], b)) {
            best = l + 1;
            b = &k->heap[l + 1];
        }
        if (best == i)
            break;
        heap_set(k, i, *b);
        i = best;
    }
    heap_set(k, i, e);
}

static void heap_remove(klass *k, size_t i)
{
    test_state *ts = k->heap[i].ts;
    if (atx_test_destructive(ts->t))
        k->destructive--;
    if (ts->attempts > 0)
        k->reruns--;
    k->len--;
    if (i == k->len)
        return;
    heap_ent moved = k->heap[k->len];
    heap_set(k, i, moved);
    sift_down(k, i);
    sift_up(k, moved.ts->heap_pos);
}

/* Keep the queue's expected work for the ETA. */
static void queued_account(atx_run *run, const test_state *ts, int sign)
{
    if (ts->expected_ns > 0)
        run->queued_known_ns += sign * ts->expected_ns;
    else if (sign > 0)
        run->queued_unknown++;
    else
        run->queued_unknown--;
}

int atx_sched_classify(atx_run *run, test_state *ts)
{
    const atx_labels *req = atx_test_requires(ts->t);
    klass *k;

    for (size_t i = 0; i < run->classes.len; i++) {
        k = run->classes.items[i];
        if (atx_labels_equal(k->requires, req)) {
            ts->cls = k;
            return 0;
        }
    }
    k = calloc(1, sizeof(*k));
    if (!k)
        return atx_error_oom();
    if (atx_labels_dup(req, &k->requires) < 0 || atx_vec_push(&run->classes, k) < 0) {
        atx_labels_free(k->requires);
        free(k);
        return ATX_ENOMEM;
    }
    k->index = run->classes.len - 1;
    ts->cls = k;
    return 0;
}

void atx_sched_push(atx_run *run, test_state *ts)
{
    klass *k = ts->cls;

    /* The heap holds each test of the class at most once and was sized for
     * all of them before the run started (run.c), so it never grows here. */
    assert(k->len < k->cap);
    ts->phase = TS_QUEUED;
    k->heap[k->len] = (heap_ent){ ts->priority, ts->expected_ns, ts->seq, ts };
    ts->heap_pos = k->len++;
    sift_up(k, ts->heap_pos);
    if (atx_test_destructive(ts->t))
        k->destructive++;
    if (ts->attempts > 0)
        k->reruns++;
    run->queued++;
    queued_account(run, ts, 1);
}

int atx_sched_applicable(atx_run *run, const klass *k, const atx_labels *labels,
                         const char **missing)
{
    atx_applicable_fn fn = run->policy.applicable ? run->policy.applicable
                                                  : atx_policy_default_applicable;
    return fn(run->policy.userdata, k->requires, labels, missing);
}

/* How many leading entries of each class the fitness callback sees. */
#define PICK_CANDIDATES 8

typedef struct cand {
    test_state *ts;
    int fitness;
} cand;

/* Whether candidate a beats b: fitness, then the class order. */
static bool better(const cand *a, const cand *b)
{
    if (a->fitness != b->fitness)
        return a->fitness > b->fitness;
    return ts_before(a->ts, b->ts);
}

test_state *atx_sched_pick(atx_run *run, atx_system *sys, const bool *applicable,
                           bool avoid_own_reruns, test_state **avoided)
{
    const char *sid = atx_system_id(sys);
    atx_fitness_fn fit = run->policy.fitness ? run->policy.fitness : atx_policy_default_fitness;
    cand best = { NULL, 0 };

    *avoided = NULL;
    if (run->queued == 0)
        return NULL;
    for (size_t i = 0; i < run->classes.len; i++) {
        klass *k = run->classes.items[i];
        if (!applicable[i] || k->len == 0)
            continue;
        /* The leading entries of the heap (its top three levels and one
         * more): fitness may prefer one of them to the head. The default
         * fitness is 0 for all of a class without reruns or destructive
         * tests queued: then the head is the class's best. */
        size_t n = k->len < PICK_CANDIDATES ? k->len : PICK_CANDIDATES;
        if (!run->policy.fitness && !k->destructive && !k->reruns)
            n = 1;
        for (size_t j = 0; j < n; j++) {
            test_state *ts = k->heap[j].ts;
            if (avoid_own_reruns && ts->last_system && strcmp(ts->last_system, sid) == 0) {
                /* Another system is free to take this rerun. */
                if (!*avoided)
                    *avoided = ts;
                continue;
            }
            cand c = { ts, fit(run->policy.userdata, ts->t, sys, ts->attempts + 1,
                               ts->last_system) };
            if (!best.ts || better(&c, &best))
                best = c;
        }
    }
    if (best.ts) {
        best.ts->deferred = false;
        heap_remove(best.ts->cls, best.ts->heap_pos);
        run->queued--;
        queued_account(run, best.ts, -1);
    }
    return best.ts;
}

test_state *atx_sched_pop_any(atx_run *run)
{
    for (size_t i = 0; i < run->classes.len; i++) {
        klass *k = run->classes.items[i];
        if (k->len) {
            test_state *ts = k->heap[0].ts;
            heap_remove(k, 0);
            run->queued--;
            queued_account(run, ts, -1);
            return ts;
        }
    }
    return NULL;
}

int atx_policy_default_applicable(void *ud, const atx_labels *requires, const atx_labels *labels,
                                  const char **missing)
{
    (void)ud;
    return atx_labels_satisfy(labels, requires, missing);
}

int atx_policy_default_fitness(void *ud, const atx_test *t, const atx_system *sys, int attempt,
                               const char *last_system)
{
    (void)ud;
    if (attempt > 1 && last_system && strcmp(last_system, atx_system_id(sys)) == 0)
        return -1;
    if (atx_test_destructive(t) && atx_system_fresh(sys))
        return 1;
    return 0;
}
