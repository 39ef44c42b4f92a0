/* Duration history (history.c). Private to libatx. */
#ifndef ATX_HISTORY_H
#define ATX_HISTORY_H

#include "../framework/src/internal.h"

typedef struct history history;

/* Open (creating it and its folder) the history database at path. */
ATX_INTERNAL int hist_open(const char *path, history **out);
ATX_INTERNAL void hist_close(history *h);

/* Every estimate: test name, system class, expected duration. */
ATX_INTERNAL int hist_each(history *h, int (*fn)(void *, const char *, const char *, int64_t),
                           void *ud);

/* Record durations, between hist_begin() and hist_commit(). */
ATX_INTERNAL int hist_begin(history *h);
ATX_INTERNAL int hist_record(history *h, const char *test, const char *cls, int64_t ns);
ATX_INTERNAL int hist_commit(history *h);
ATX_INTERNAL void hist_rollback(history *h);

/* Outcomes of a plan's runs (by its key). hist_plan_read() calls on_run for
 * the plan's latest run (nothing when it has none), then on_outcome for each
 * outcome of its last ATX_HISTORY_RUNS runs, oldest run first; the run of id
 * @p self (a resumed run's earlier part, cancelled) is not among them. */
typedef int (*hist_run_fn)(void *ud, int64_t run, const char *run_id, int64_t started);
typedef int (*hist_outcome_fn)(void *ud, int64_t run, const char *test, const char *status,
                               int flaky, int64_t duration_ns, uint32_t spec);
ATX_INTERNAL int hist_plan_read(history *h, const char *plan, const char *self,
                                hist_run_fn on_run, hist_outcome_fn on_outcome, void *ud);
/* Between hist_begin() and hist_commit(): a run (replacing what an earlier
 * part of it wrote), its outcomes, and dropping what is past the bounds. */
ATX_INTERNAL int hist_plan_add_run(history *h, const char *plan, const char *run_id,
                                   int64_t started, const char *dir, int64_t *run);
ATX_INTERNAL int hist_plan_outcome(history *h, int64_t run, const char *test, const char *cls,
                                   const char *status, int attempts, int flaky,
                                   int64_t duration_ns, uint32_t spec);
ATX_INTERNAL int hist_plan_prune(history *h, const char *plan);

#endif
