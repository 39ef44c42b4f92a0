/*
 * atx executor plugins (plugin tier).
 *
 * An executor runs one test on one leased system and emits its results. The
 * orchestrator calls check for every test of the executor's kind when it is
 * added (so bad specs fail early), prepare once per system before the first
 * test there, and run for every attempt, on the worker thread that holds the
 * system. run must return promptly once the attempt's cancel fd polls
 * readable, killing what it started.
 *
 * Processes, copies and pings on the system go through atx_system_*(): the
 * lease's agent carries them (one per system, shared by every executor), so
 * an executor keeps no connection of its own. Per-system state (version 2)
 * is made by prepare_system and handed back with every attempt
 * (atx_attempt_system_state()) and to release_system.
 */
#ifndef ATX_PLUGIN_EXECUTOR_H
#define ATX_PLUGIN_EXECUTOR_H

#include "atx/plugin/abi.h"
#include "atx/result.h"
#include "atx/system.h"
#include "atx/test.h"

#ifdef __cplusplus
extern "C" {
#endif

/** One attempt of one test on one system (borrowed for run's duration). */
typedef struct atx_attempt atx_attempt;

ATX_API const atx_test *atx_attempt_test(const atx_attempt *a);
ATX_API atx_system *atx_attempt_system(const atx_attempt *a);
/** 1 for the first attempt. */
ATX_API int atx_attempt_number(const atx_attempt *a);
/** The test's timeout with the policy applied (ns, > 0). */
ATX_API int64_t atx_attempt_timeout(const atx_attempt *a);
/** TERM-to-KILL grace from the policy (ns). */
ATX_API int64_t atx_attempt_kill_grace(const atx_attempt *a);
/**
 * An fd that polls readable once the attempt must stop (run cancelled or
 * past its deadline). Owned by the orchestrator.
 */
ATX_API int atx_attempt_cancel_fd(const atx_attempt *a);
/** 0 running; 1 cancelled; 2 cancelled in a hurry (skip the grace). */
ATX_API int atx_attempt_cancelled(const atx_attempt *a);
/** For atx_proc_run_opts.cancel_level: atx_attempt_cancelled() of @p attempt. */
ATX_API int atx_attempt_cancel_level(void *attempt);
/** What the executor's prepare_system made for this system (version 2), or NULL. */
ATX_API void *atx_attempt_system_state(const atx_attempt *a);
/**
 * The attempt's directory, `<results>/tests/<test name>/attempt-<n>`, created
 * on first call (sanitised: no `..`, no absolute parts, control characters
 * replaced). @p rel receives it relative to the results directory (may be NULL).
 * @return the absolute path, or NULL with detail in atx_error_last().
 */
ATX_API const char *atx_attempt_dir(atx_attempt *a, const char **rel);
/**
 * Emit a result of this attempt; the attempt takes the reference. The test
 * name, attempt number and system are stamped on it; its status must be set.
 */
ATX_API int atx_attempt_emit(atx_attempt *a, atx_result *r);

#define ATX_EXECUTOR_VTABLE_VERSION 2
typedef struct atx_executor_vtable {
    unsigned version;  /**< ATX_EXECUTOR_VTABLE_VERSION when built */
    /** Required. */
    int (*create)(atx_plugin_ctx *ctx, void **state);
    /** Required. */
    void (*destroy)(void *state);
    /** Optional. Validate a test's spec; ATX_EINVAL with detail if bad. */
    int (*check)(void *state, const atx_test *t);
    /** Optional. Prepare a system once per lease; failure retires it. */
    int (*prepare)(void *state, atx_system *sys);
    /**
     * Required. Run one attempt and emit at least the test's own result.
     * @return 0 when the attempt ran (whatever the test did); negative for
     *         infrastructure trouble (the orchestrator records infra).
     */
    int (*run)(void *state, atx_attempt *a);
    /**
     * Optional. Make tests from a source: a JSON object (a plan's test entry
     * without a "name", or what the CLI makes of a path), relative paths in
     * it relative to @p basedir. Calls @p add for each test (add takes it;
     * stop on its error).
     * @return 0, or a negative code with one sentence naming the file/key.
     */
    int (*discover)(void *state, const struct json_object *source, const char *basedir,
                    int (*add)(void *ud, atx_test *t), void *ud);
    /**
     * Optional. The system is about to be released: undo what prepare did
     * (run finish steps). Called once per prepared system, on the worker
     * thread, also after failures and on cancel.
     */
    void (*finish)(void *state, atx_system *sys);
    /* ---- version 2 ---- */
    /**
     * Optional; used instead of prepare when set. Prepare a system once per
     * lease and make the executor's state for it in *sys_state (may stay
     * NULL), handed back by atx_attempt_system_state() at every run there
     * and to release_system.
     */
    int (*prepare_system)(void *state, atx_system *sys, void **sys_state);
    /**
     * Optional; used instead of finish when set (with prepare_system): undo
     * the preparation and free @p sys_state. Called once per system that
     * prepare_system succeeded on, also after failures and on cancel. The
     * system may have stopped answering (its calls then fail at once).
     */
    void (*release_system)(void *state, atx_system *sys, void *sys_state);
} atx_executor_vtable;

#ifdef __cplusplus
}
#endif
#endif
