/*
 * atx — runs: the orchestrator's public face.
 *
 * A run owns its tests, provisioners, executors and aggregators. Executing it
 * starts the provisioners, leases each free system to a worker thread that
 * pulls the best next test for that system (applicability, then fitness,
 * priority and longest expected duration), reruns failures within their
 * budget preferring another system, and hands every result to the aggregators
 * on one aggregator thread, in emission order.
 *
 * Threads: build and execute a run from one thread. atx_run_cancel() may be
 * called from any thread and from a signal handler. Policy callbacks are
 * called from worker threads, one at a time (under the scheduler's lock): they
 * must be quick and must not call back into the run.
 */
#ifndef ATX_RUN_H
#define ATX_RUN_H

#include "atx/common.h"
#include "atx/labels.h"
#include "atx/log.h"
#include "atx/plugin.h"
#include "atx/system.h"
#include "atx/test.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct atx_run atx_run;

/**
 * Applicability: may a test with requirements @p requires run on a system
 * with @p labels? The orchestrator asks once per requirement class and label
 * set (tests with equal requirements form a class) and checks every test
 * against the provisioners' offers before the run starts, so a test no
 * system can ever satisfy fails at once.
 * @param missing  when the answer is no, may be set to the first unmet key
 *                 (borrowed from @p requires).
 * @return 1 yes, 0 no.
 */
typedef int (*atx_applicable_fn)(void *userdata, const atx_labels *requires,
                                 const atx_labels *labels, const char **missing);

/**
 * Fitness of a test for a system; higher is better. Decides first, before
 * priority and expected duration. It is asked for the leading candidates (up
 * to eight) of each applicable requirement class, so picking stays cheap on
 * long queues.
 */
typedef int (*atx_fitness_fn)(void *userdata, const atx_test *t, const atx_system *sys,
                              int attempt, const char *last_system);

/** The default applicability: atx_labels_satisfy(). */
ATX_API int atx_policy_default_applicable(void *userdata, const atx_labels *requires,
                                          const atx_labels *labels, const char **missing);
/**
 * The default fitness: -1 for a rerun on the system where the last attempt
 * ran, +1 for a destructive test on a fresh system, 0 otherwise.
 */
ATX_API int atx_policy_default_fitness(void *userdata, const atx_test *t,
                                       const atx_system *sys, int attempt,
                                       const char *last_system);

#define ATX_POLICY_VERSION 3
typedef struct atx_policy {
    unsigned version;             /**< ATX_POLICY_VERSION */
    atx_applicable_fn applicable; /**< NULL: the default */
    atx_fitness_fn fitness;       /**< NULL: the default */
    void *userdata;               /**< passed to both */
    int reruns;                   /**< reruns for tests that inherit (default 0) */
    int64_t timeout_ns;           /**< timeout for tests that inherit (default 5 min) */
    int64_t deadline_ns;          /**< run deadline from start; 0 = none */
    int64_t kill_grace_ns;        /**< TERM-to-KILL grace (default 1 s) */
    /* version 2 */
    int max_running;              /**< systems leased (so tests running) at once,
                                       over all provisioners; 0 = no cap */
    int64_t reserve_timeout_ns;   /**< leasing one system (default 10 min) */
    int64_t prepare_timeout_ns;   /**< setup, ready and an executor's preparation
                                       of a system (default 30 min) */
    int64_t release_timeout_ns;   /**< cleanup and release of a system (default 10 min) */
    /* version 3 */
    int64_t liveness_timeout_ns;  /**< a leased system that leaves a ping unanswered
                                       this long is lost: its running test is
                                       infra and runs elsewhere (default 30 s) */
    int64_t liveness_interval_ns; /**< how often leased systems are pinged (default 5 s) */
} atx_policy;
#define ATX_POLICY_INIT { ATX_POLICY_VERSION, NULL, NULL, NULL, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }

#define ATX_RUN_OPTS_VERSION 1
typedef struct atx_run_opts {
    unsigned version;          /**< ATX_RUN_OPTS_VERSION */
    const char *results_dir;   /**< created if missing; required */
    atx_plugins *plugins;      /**< borrowed registry (must outlive the run);
                                    NULL: a default one owned by the run */
    atx_log_fn log;            /**< NULL: messages are dropped */
    void *log_userdata;
    atx_log_level log_level;   /**< the most verbose level passed on */
} atx_run_opts;
#define ATX_RUN_OPTS_INIT { ATX_RUN_OPTS_VERSION, NULL, NULL, NULL, NULL, ATX_LOG_INFO }

/** What a run produced: counts of tests by their final own result. */
typedef struct atx_summary {
    size_t tests;        /**< tests in the run */
    size_t passed;       /**< pass, warn, info */
    size_t failed;       /**< fail */
    size_t errors;       /**< error and custom words */
    size_t infra;        /**< infra */
    size_t skipped;      /**< skip (not counting not_run) */
    size_t not_run;      /**< never started: cancelled or past the deadline */
    size_t flaky;        /**< passed after a failed attempt */
    size_t attempts;     /**< attempts started */
    size_t results;      /**< results emitted, subtests and superseded attempts included */
    int cancelled;       /**< 1 after atx_run_cancel() */
    int infra_exhausted; /**< 1 if provisioning failed for good */
    int64_t started_ns;  /**< wall clock */
    int64_t duration_ns;
} atx_summary;

/**
 * The CLI's exit code for a summary: 0 all passed, 1 a test failed or
 * errored (or the run was cancelled), 3 infrastructure trouble.
 */
ATX_API int atx_summary_exit_code(const atx_summary *s);

/** A new, empty run. @return 0, ATX_EINVAL (no results_dir) or -ENOMEM. */
ATX_API int atx_run_new(const atx_run_opts *opts, atx_run **out);
/** Free a run that is not executing; NULL is accepted. */
ATX_API void atx_run_free(atx_run *run);

/** Replace the policy (copied). */
ATX_API int atx_run_set_policy(atx_run *run, const atx_policy *policy);

/**
 * Treat the environment variable @p name as a secret: it is removed from the
 * environment of every process atx spawns on this host (from now on, for the
 * whole program), and its value is masked as "[MASKED]" wherever test data
 * is written: results, reports, the journal, log lines, the files of attempt
 * folders. BUD_TOKEN, BUD_PASSWORD, BUD_RUNNER_TOKEN and RUNNER_API_KEY
 * always are. Call before atx_run_execute().
 */
ATX_API int atx_run_mask_env(atx_run *run, const char *name);
/** A secret value the caller holds (a password, a token): masked the same
 *  way. Values shorter than 4 bytes are not masked. */
ATX_API int atx_run_add_secret(atx_run *run, const char *value);
ATX_API const atx_policy *atx_run_policy(const atx_run *run);

/**
 * Add a test; the run takes it, also on failure. Its executor is loaded and
 * checks the spec now, so a bad spec is reported here.
 * @return 0; ATX_EEXIST for a duplicate name (detail names it); ATX_EPLUGIN
 *         or ATX_EINVAL from the executor.
 */
ATX_API int atx_run_add_test(atx_run *run, atx_test *t);
/**
 * Let executor @p executor make tests from @p source_json (for the fmf
 * executor: {"tree": PATH, "plan": NAME, "filter": EXPR, "context": {...}}),
 * relative paths resolved against @p basedir (NULL: the current folder).
 * The tests are added as by atx_run_add_test().
 * @return 0, or ATX_EUNSUPPORTED when the executor cannot discover, or its
 *         error (one sentence naming the file and place).
 */
ATX_API int atx_run_discover(atx_run *run, const char *executor, const char *source_json,
                             const char *basedir);
ATX_API size_t atx_run_test_count(const atx_run *run);
ATX_API const atx_test *atx_run_test(const atx_run *run, size_t i);

/**
 * Add a provisioner or aggregator plugin by name with its configuration
 * (JSON object text, NULL for "{}"). The plugin is loaded and created now.
 */
ATX_API int atx_run_add_provisioner(atx_run *run, const char *plugin, const char *config_json);
ATX_API int atx_run_add_aggregator(atx_run *run, const char *plugin, const char *config_json);
/**
 * Configure an executor (tests otherwise get each executor with its
 * defaults): once per executor, before the tests that use it are added.
 */
ATX_API int atx_run_add_executor(atx_run *run, const char *plugin, const char *config_json);
/** How many provisioners and aggregators (built-in ones included) were added. */
ATX_API size_t atx_run_provisioner_count(const atx_run *run);
ATX_API size_t atx_run_aggregator_count(const atx_run *run);
/** The results directory (absolute). */
ATX_API const char *atx_run_results_dir(const atx_run *run);

/**
 * Add a plugin compiled into the program: any kind, created with
 * @p config_json; @p userdata is handed to it through
 * atx_plugin_ctx_userdata(). An executor added this way serves the tests whose
 * executor kind is its name.
 */
ATX_API int atx_run_add_builtin(atx_run *run, const struct atx_plugin_descriptor *desc,
                                const char *config_json, void *userdata);

/**
 * The journal: a SQLite database, DIR/journal.db, where every test queued,
 * attempt started, result and attempt finished is committed before any
 * aggregator sees it.
 */
typedef enum atx_journal_mode {
    ATX_JOURNAL_OFF = 0,    /**< no journal */
    ATX_JOURNAL_NEW = 1,    /**< the default: a new journal, replacing an older one */
    ATX_JOURNAL_RESUME = 2  /**< continue the run journaled in the results directory:
                                 tests with a final result are not run again (their
                                 results are handed to the aggregators first, so the
                                 reports are whole); the rest run. The run's tests
                                 must be the journal's. */
} atx_journal_mode;

/** Choose the journal mode before executing. */
ATX_API int atx_run_set_journal(atx_run *run, atx_journal_mode mode);
/**
 * Keep @p key = @p value in the journal (a program's own facts, such as how
 * it was invoked); read back with atx_journal_meta().
 */
ATX_API int atx_run_set_meta(atx_run *run, const char *key, const char *value);
/**
 * Read a value from the journal in @p results_dir. Keys the run keeps itself:
 * run_id, hostname, started_ns, duration_ns, finished ("1" once a run
 * completed), aggregators (a JSON array of {"plugin", "config"}).
 * @param value  set to a malloc'd string, or NULL when the key is absent.
 * @return 0; ATX_ENOTFOUND (no journal there); ATX_ESTATE (a run holds it).
 */
ATX_API int atx_journal_meta(const char *results_dir, const char *key, char **value);
/**
 * Rebuild reports: hand every result in the journal of the run's results
 * directory, in their first order, to the run's aggregators, with the run's
 * recorded start, host and duration. Runs nothing; needs no provisioner.
 */
ATX_API int atx_run_report(atx_run *run, atx_summary *summary);

/**
 * Merged reports: hand the results in the journals of the runs in
 * @p dirs (@p n folders, each one atx_run_execute() wrote, such as the
 * shards of one plan), run after run, to the run's aggregators, as
 * atx_run_report() does for one. The run's results directory is where the
 * merged reports go (made if missing); files of results are given relative
 * to it. A system's id gets its run's label: "local-1 (shard 2/4)" for a
 * shard, "local-1 (DIR's name)" otherwise. The summary adds up the runs;
 * it starts with the first run's start and ends with the last one's end.
 * Nothing is written when the merge is refused.
 * @return 0; ATX_ENOTFOUND (a folder without a journal), ATX_EPARSE (a
 *         journal without a run), ATX_EEXIST (a test in two runs; the detail
 *         names it and both folders), ATX_ESTATE (already executed).
 */
ATX_API int atx_run_report_merge(atx_run *run, const char *const *dirs, size_t n,
                                 atx_summary *summary);
/**
 * Duration history: a SQLite file (created if missing) that durations of
 * finished tests go to, per test name and system class (provider/arch/distro
 * labels), and that orders the next run's tests longest expected first.
 * NULL (the default): none.
 */
ATX_API int atx_run_set_history(atx_run *run, const char *path);

/**
 * Keep only shard @p index (1-based) of @p count of the run's tests, so that
 * @p count runs of the same tests together run each exactly once. Tests are
 * split by expected duration (atx_run_test_expected()): longest first, each
 * to the shard with the least expected work so far (ties: the lowest shard;
 * equal durations by name); tests without an estimate are dealt round robin
 * by name, the lightest shards first. The split depends on the tests' names
 * and estimates only: every shard computes the same one when all see the
 * same tests and the same history. A resumed run (ATX_JOURNAL_RESUME) keeps
 * the tests its journal holds. The journal keeps "shard" = "K/N".
 * Call after every test is added and after atx_run_set_history() and
 * atx_run_set_journal(), before executing; tests cannot be added after.
 * @return 0; ATX_EINVAL (not 1 <= index <= count, or a resumed run that was
 *         another shard); ATX_ESTATE (executed, or already a shard).
 */
ATX_API int atx_run_set_shard(atx_run *run, unsigned index, unsigned count);
/**
 * The expected duration of test @p i as shards are split by it: the longest
 * the history (atx_run_set_history()) knows for its name over all system
 * classes, else the declared duration; 0 when unknown (or @p i is out of
 * range). Reads the history the first time; not while executing.
 */
ATX_API int64_t atx_run_test_expected(atx_run *run, size_t i);

/**
 * How many aggregators failed (an error was logged for each): a report is
 * missing or incomplete, or results could not be delivered. The atx command
 * exits 3 then.
 */
ATX_API size_t atx_run_failed_aggregators(const atx_run *run);

/** Where a run stands; see atx_run_progress(). */
typedef struct atx_progress {
    size_t tests, done, running, queued;
    int64_t eta_ns; /**< expected time to finish, from durations known; -1 unknown */
} atx_progress;
/** A snapshot of an executing run; callable from any thread but a signal handler. */
ATX_API int atx_run_progress(atx_run *run, atx_progress *p);

/**
 * Execute: blocks until every test has a final result, the run is
 * cancelled, or provisioning fails for good. May be called once.
 * @param summary  filled (may be NULL).
 * @return 0 when the run completed (whatever the tests did), or a negative
 *         code when it could not run (detail says why).
 */
ATX_API int atx_run_execute(atx_run *run, atx_summary *summary);

/**
 * Cancel. First call: nothing new starts, running tests are killed and
 * recorded as interrupted, systems are released, reports written. With
 * @p hurry (or a second call): kill without grace. Async-signal-safe.
 */
ATX_API void atx_run_cancel(atx_run *run, int hurry);

#ifdef __cplusplus
}
#endif
#endif
