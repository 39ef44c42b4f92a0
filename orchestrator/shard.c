/*
 * Shards: one share of a run's tests, so that N jobs (CI jobs, a Slurm job
 * array) together run the plan once, each about as long as the others.
 *
 * Every shard computes the whole split and keeps its own part, so the split
 * must come out the same in each: it depends only on the tests' names and
 * expected durations, never on the order the plan lists them in nor on the
 * systems a shard runs on. The expected duration is the history's (the
 * longest over system classes, because shards may run on different kinds of
 * systems), else the declared one, else unknown.
 *
 * The cost model: tests with an estimate go longest first, each to the
 * shard with the least expected work so far (LPT: the largest shard is at
 * most 4/3 of the optimum, and close to the mean when tests are many and
 * short beside it); a min-heap of shards makes that O(M log N). Tests
 * without an estimate cannot be balanced by time, so they are dealt round
 * robin by name, the lightest shards first: their counts differ by one at
 * most.
 */
#include "history.h"
#include "journal.h"
#include "orch.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct shard_load {
    int64_t total;
    unsigned index; /* 0-based */
} shard_load;

static bool load_before(const shard_load *a, const shard_load *b)
{
    return a->total != b->total ? a->total < b->total : a->index < b->index;
}

static void load_sift_down(shard_load *h, size_t n, size_t i)
{
    shard_load e = h[i];
    for (;;) {
        size_t l = 2 * i + 1, best = i;
        const shard_load *b = &e;
        if (l < n && load_before(&h[l], b))
            b = &h[best = l];
        if (l + 1 < n && load_before(&h[l + 1], b))
            b = &h[best = l + 1];
        if (best == i)
            break;
        h[i] = *b;
        i = best;
    }
    h[i] = e;
}

/* Longest first; equals by name, so the plan's order never matters. */
static int cmp_expected(const void *a, const void *b)
{
    const test_state *x = *(test_state *const *)a, *y = *(test_state *const *)b;
    if (x->split_ns != y->split_ns)
        return x->split_ns > y->split_ns ? -1 : 1;
    return strcmp(atx_test_name(x->t), atx_test_name(y->t));
}

static int cmp_load(const void *a, const void *b)
{
    const shard_load *x = a, *y = b;
    return load_before(x, y) ? -1 : load_before(y, x) ? 1 : 0;
}

static int split_row(void *ud, const char *name, const char *cls, int64_t ns)
{
    test_state *ts = atx_names_find(&((atx_run *)ud)->names, name);
    (void)cls;
    if (ts && ns > ts->split_ns)
        ts->split_ns = ns;
    return 0;
}

/* split_ns of every test: history (a file that is not there is none, and
 * is not made by asking), else declared. */
static void split_estimate(atx_run *run)
{
    if (run->split_estimated)
        return;
    if (run->history_path && access(run->history_path, F_OK) == 0) {
        history *h;
        int r = hist_open(run->history_path, &h);
        if (r == 0) {
            r = hist_each(h, split_row, run);
            hist_close(h);
        }
        if (r < 0)
            atx_run_logf(run, ATX_LOG_WARNING, "%s; shards are split by declared durations",
                         atx_error_last()->message);
    }
    for (size_t i = 0; i < run->tests.len; i++) {
        test_state *ts = run->tests.items[i];
        if (ts->split_ns <= 0)
            ts->split_ns = atx_test_duration(ts->t);
    }
    run->split_estimated = true;
}

/* keep[i]: whether test i (jid i + 1, as added) falls into shard
 * run->shard_index. */
static int split(atx_run *run, bool *keep)
{
    size_t n = run->tests.len, nest = 0;
    unsigned count = run->shard_count, own = run->shard_index - 1;
    test_state **order = malloc((n + 1) * sizeof(*order));
    shard_load *heap = malloc(count * sizeof(*heap));
    if (!order || !heap) {
        free(order);
        free(heap);
        return atx_error_oom();
    }
    split_estimate(run);
    memcpy(order, run->tests.items, n * sizeof(*order));
    /* Longest first; the ones without an estimate last, by name. */
    qsort(order, n, sizeof(*order), cmp_expected);
    while (nest < n && order[nest]->split_ns > 0)
        nest++;
    for (unsigned s = 0; s < count; s++)
        heap[s] = (shard_load){ 0, s };
    for (size_t i = 0; i < nest; i++) {
        keep[order[i]->jid - 1] = heap[0].index == own;
        heap[0].total += order[i]->split_ns;
        load_sift_down(heap, count, 0);
    }
    /* Unknown ones: round robin from the lightest shard. */
    qsort(heap, count, sizeof(*heap), cmp_load);
    for (size_t i = nest; i < n; i++)
        keep[order[i]->jid - 1] = heap[(i - nest) % count].index == own;
    free(order);
    free(heap);
    return 0;
}

typedef struct journal_keep {
    atx_run *run;
    bool *keep;
} journal_keep;

static int keep_journaled(void *ud, int64_t id, const char *name)
{
    journal_keep *k = ud;
    test_state *ts = atx_names_find(&k->run->names, name);
    (void)id;
    if (ts)
        k->keep[ts->jid - 1] = true;
    return 0;
}

/* A resumed shard runs the tests it started with, whatever the history
 * learnt since (a cancelled run keeps its durations). */
static int split_resumed(atx_run *run, bool *keep, const char *label)
{
    journal *j;
    char *was;
    int r;

    if ((r = jr_open(run->results_dir, JR_RESUME, &j)) < 0)
        return r;
    was = jr_meta_get(j, "shard");
    if (!was || strcmp(was, label) != 0)
        r = atx_error_set(ATX_EINVAL, "cannot resume the run in %s as shard %s: it ran %s%s",
                          run->results_dir, label, was ? "shard " : "", was ? was : "unsharded");
    if (r == 0) {
        journal_keep k = { run, keep };
        r = jr_each_test(j, keep_journaled, &k);
    }
    free(was);
    jr_close(j);
    return r;
}

int atx_run_set_shard(atx_run *run, unsigned index, unsigned count)
{
    char label[32];
    bool *keep;
    size_t kept = 0;
    int r;

    if (!run)
        return atx_error_set(ATX_EINVAL, "no run");
    if (run->executed || run->shard_count)
        return atx_error_set(ATX_ESTATE, run->executed ? "the run has already been executed"
                                                       : "the run is already a shard");
    if (count < 1 || index < 1 || index > count)
        return atx_error_set(ATX_EINVAL, "shard %u/%u: K/N needs 1 <= K <= N", index, count);
    snprintf(label, sizeof(label), "%u/%u", index, count);
    if (!(keep = calloc(run->tests.len + 1, sizeof(*keep))))
        return atx_error_oom();
    run->shard_index = index;
    run->shard_count = count;
    r = run->jr_mode == ATX_JOURNAL_RESUME ? split_resumed(run, keep, label) : split(run, keep);
    if (r == 0)
        r = atx_run_set_meta(run, "shard", label);
    if (r < 0) {
        free(keep);
        run->shard_index = run->shard_count = 0;
        return r;
    }
    /* Drop the other shards' tests; the names index is rebuilt. */
    for (size_t i = 0; i < run->tests.len; i++) {
        test_state *ts = run->tests.items[i];
        if (keep[i]) {
            run->tests.items[kept++] = ts;
            ts->jid = (int64_t)kept;
        } else {
            atx_test_free(ts->t);
            free(ts);
        }
    }
    run->tests.len = kept;
    free(keep);
    free(run->names.slots);
    run->names = (name_set){ 0 };
    for (size_t i = 0; i < kept && r == 0; i++)
        if ((r = atx_names_add(&run->names, run->tests.items[i])) > 0)
            r = 0;
    return r;
}

int64_t atx_run_test_expected(atx_run *run, size_t i)
{
    if (!run || i >= run->tests.len)
        return 0;
    split_estimate(run);
    return ((test_state *)run->tests.items[i])->split_ns;
}
