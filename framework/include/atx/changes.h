/*
 * atx — what changed since the last run: outcome history, flaky tests,
 * comparisons of two runs and quarantine.
 *
 * The history database that keeps durations (atx_run_set_history()) keeps
 * each test's recent outcomes too: per plan and test, the last
 * ATX_HISTORY_RUNS runs of the plan (status, attempts, duration, the system
 * class it ran on, run id, time; at most 2,000 runs of all plans in one
 * file). From it a run knows
 *   - each test's flake rate: over its recent runs, the share that passed
 *     only after a failed attempt, or whose outcome changed from the run
 *     before while the test itself (its spec) did not;
 *   - the previous run of the same plan (atx_run_set_plan_key()), which the
 *     run is compared with when it ends (or with another results folder,
 *     atx_run_set_compare_dir()).
 *
 * A comparison sorts the tests of two runs into the kinds below. A test is
 * failing when its final status is a failure (atx_status_is_failure()).
 *
 * Threads: an atx_changes is immutable once made and may be read anywhere.
 * The setters on a run (plan key, folder, quarantine) are called before
 * atx_run_execute() (ATX_ESTATE after).
 */
#ifndef ATX_CHANGES_H
#define ATX_CHANGES_H

#include "atx/common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct atx_run;

/** Runs of a plan the history keeps, per test (older ones are dropped). */
#define ATX_HISTORY_RUNS 50

/** What happened to a test between two runs. */
typedef enum atx_change {
    ATX_CHANGE_NEW_FAILURE = 0,  /**< failing now; passed before, or was not there */
    ATX_CHANGE_FIXED,            /**< passing now; failing before */
    ATX_CHANGE_STILL_FAILING,    /**< failing in both */
    ATX_CHANGE_NEW_TEST,         /**< not in the run before */
    ATX_CHANGE_REMOVED,          /**< in the run before, not in this one */
    ATX_CHANGE_NEWLY_FLAKY,      /**< passed after a failed attempt now, not before */
    ATX_CHANGE_SLOWER,           /**< took at least twice its usual time (and 0.5 s more) */
    ATX_CHANGE_KINDS
} atx_change;

/** "new_failures", "fixed", "still_failing", "new_tests", "removed",
 *  "newly_flaky", "slower"; NULL for another value. */
ATX_API const char *atx_change_name(atx_change kind);

typedef struct atx_changes atx_changes;

/** What the run was compared with: "the previous run of the plan (RUN ID,
 *  TIME)", a results folder, or NULL when there was nothing to compare. */
ATX_API const char *atx_changes_baseline(const atx_changes *c);
/** How many tests are of @p kind. */
ATX_API size_t atx_changes_count(const atx_changes *c, atx_change kind);
/** The i-th test of @p kind, by name. */
ATX_API const char *atx_changes_test(const atx_changes *c, atx_change kind, size_t i);
/** For ATX_CHANGE_SLOWER: its duration now and its usual one (ns). */
ATX_API int atx_changes_slower(const atx_changes *c, size_t i, int64_t *now_ns,
                               int64_t *usual_ns);
/**
 * The comparison as JSON: {"baseline": ..., "new_failures": [names], ...,
 * "slower": [{"test": name, "duration": s, "usual": s}]}; malloc'ed.
 */
ATX_API int atx_changes_json(const atx_changes *c, char **out);
/**
 * The comparison as text, for people: one line of counts ("changes since
 * BASELINE: new failures 1, fixed 0, ..."), then a line per kind that has
 * tests, naming them; malloc'ed.
 */
ATX_API int atx_changes_text(const atx_changes *c, char **out);
ATX_API void atx_changes_free(atx_changes *c);

/**
 * Compare two results folders (their results.jsonl: final results of each
 * test; a folder's shards merged by `atx report --merge` count as one).
 * @return 0 with *out set, or ATX_ENOTFOUND / ATX_EPARSE naming the file.
 */
ATX_API int atx_changes_compare_dirs(const char *before, const char *after, atx_changes **out);

/* ---- on a run (atx/run.h) ---- */

/**
 * What identifies the run's plan in the history (say, the plan file or the
 * tree): the run is compared with the previous run of the same key. Runs
 * without one share the key "".
 */
ATX_API int atx_run_set_plan_key(struct atx_run *run, const char *key);
/** Compare with the run in this results folder instead of the history's. */
ATX_API int atx_run_set_compare_dir(struct atx_run *run, const char *dir);
/**
 * After atx_run_execute() (and to aggregators during their end): the run
 * compared with the previous run of its plan or the folder given; NULL when
 * there was no history and no folder. Owned by the run.
 */
ATX_API const atx_changes *atx_run_changes(const struct atx_run *run);

/**
 * Quarantine: tests known to fail or flake, by name or fmf-style pattern (a
 * regular expression searched in the name, as tmt's `test` filter), one a
 * line, `#` comments. Their results are marked quarantined
 * (atx_result_quarantined()) and their failures do not fail the run.
 * @return 0, or ATX_EPARSE naming the file, line and pattern.
 */
ATX_API int atx_run_set_quarantine(struct atx_run *run, const char *path);
/** Whether @p test is quarantined in this run. */
ATX_API int atx_run_test_quarantined(const struct atx_run *run, const char *test);

/** What fails a run (atx_run_exit_code()). */
typedef enum atx_fail_on {
    ATX_FAIL_ON_ANY = 0,  /**< any failure not quarantined */
    ATX_FAIL_ON_NEW = 1   /**< only a new failure not quarantined */
} atx_fail_on;

/**
 * The exit code of an executed run: as atx_summary_exit_code(), except that
 * quarantined failures do not count, and with ATX_FAIL_ON_NEW neither do
 * failures the compared run had (still failing).
 */
ATX_API int atx_run_exit_code(const struct atx_run *run, atx_fail_on fail_on);

#ifdef __cplusplus
}
#endif
#endif
