/*
 * atx — the result model.
 *
 * A result says how one test (subtest == NULL) or one of its subtests ended
 * in one attempt on one system: a status (one of the built-in words or a
 * custom word), a one-line note, an error type ("timeout", "interrupted",
 * "exit-code", ...), files (paths relative to the run's results directory),
 * timings, the system's identity, the exit code and the captured output.
 *
 * Ownership: results are reference counted. atx_result_new() hands one
 * reference to the caller. Once a result is emitted to the orchestrator it is
 * immutable; aggregators receive borrowed pointers and may keep a result past
 * the call with atx_result_ref(). ref/unref are thread-safe; setters are not
 * and must not be used after emission.
 */
#ifndef ATX_RESULT_H
#define ATX_RESULT_H

#include "atx/common.h"
#include "atx/labels.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum atx_status {
    ATX_STATUS_PASS = 0,
    ATX_STATUS_FAIL = 1,
    ATX_STATUS_ERROR = 2,
    ATX_STATUS_SKIP = 3,
    ATX_STATUS_WARN = 4,
    ATX_STATUS_INFO = 5,
    ATX_STATUS_INFRA = 6,
    ATX_STATUS_CUSTOM = 7   /**< any other word; see atx_result_status_word() */
} atx_status;

/** Output streams kept in a result. */
typedef enum atx_stream {
    ATX_STREAM_STDOUT = 0,
    ATX_STREAM_STDERR = 1
} atx_stream;

/** Sentinel for "no exit code" (the process did not exit by itself). */
#define ATX_NO_EXIT_CODE (-1000)

typedef struct atx_result atx_result;

/** The word for a built-in status ("pass", "fail", ...); "custom" for CUSTOM. */
ATX_API const char *atx_status_name(atx_status status);
/** The built-in status a word names, or ATX_STATUS_CUSTOM. */
ATX_API atx_status atx_status_from_word(const char *word);
/** Whether a status counts as a failure of the test (fail, error, infra, custom). */
ATX_API int atx_status_is_failure(atx_status status);

/**
 * A new result for @p test (required) and @p subtest (NULL for the test's
 * own result), status pass, attempt 1, final, no exit code.
 */
ATX_API int atx_result_new(const char *test, const char *subtest, atx_result **out);
/** A deep copy with its own reference count (for rewriting fields). */
ATX_API int atx_result_dup(const atx_result *src, atx_result **out);
ATX_API atx_result *atx_result_ref(atx_result *r);
/** Drop a reference; NULL is accepted. */
ATX_API void atx_result_unref(atx_result *r);

/* Setters: return 0, ATX_EINVAL or -ENOMEM; strings are copied. */
ATX_API int atx_result_set_status(atx_result *r, atx_status status);
/** Set the status by word; an unknown word becomes a custom status. */
ATX_API int atx_result_set_status_word(atx_result *r, const char *word);
ATX_API int atx_result_set_note(atx_result *r, const char *note);
ATX_API int atx_result_set_error_type(atx_result *r, const char *type);
ATX_API int atx_result_add_file(atx_result *r, const char *relpath);
ATX_API int atx_result_set_attempt(atx_result *r, int attempt);
ATX_API int atx_result_set_final(atx_result *r, int final);
/** @p started_ns: wall clock (atx_wallclock_ns()); @p duration_ns >= 0. */
ATX_API int atx_result_set_times(atx_result *r, int64_t started_ns, int64_t duration_ns);
ATX_API int atx_result_set_system(atx_result *r, const char *id, const atx_labels *labels);
ATX_API int atx_result_set_exit_code(atx_result *r, int code);
/**
 * Keep captured output. @p data need not be text or NUL-terminated.
 * @p total is how many bytes the stream produced in all (>= len when the
 * capture was capped).
 */
ATX_API int atx_result_set_output(atx_result *r, atx_stream stream,
                                  const char *data, size_t len, uint64_t total);

/* Getters borrow; strings live as long as the result. */
ATX_API const char *atx_result_test(const atx_result *r);
ATX_API const char *atx_result_subtest(const atx_result *r);
ATX_API atx_status atx_result_status(const atx_result *r);
/** The status word, built-in or custom. */
ATX_API const char *atx_result_status_word(const atx_result *r);
ATX_API const char *atx_result_note(const atx_result *r);
ATX_API const char *atx_result_error_type(const atx_result *r);
ATX_API size_t atx_result_file_count(const atx_result *r);
ATX_API const char *atx_result_file(const atx_result *r, size_t i);
ATX_API int atx_result_attempt(const atx_result *r);
ATX_API int atx_result_final(const atx_result *r);
ATX_API int64_t atx_result_started(const atx_result *r);
ATX_API int64_t atx_result_duration(const atx_result *r);
ATX_API const char *atx_result_system_id(const atx_result *r);
ATX_API const atx_labels *atx_result_system_labels(const atx_result *r);
ATX_API int atx_result_exit_code(const atx_result *r);
/** Captured bytes of a stream; @p total receives the uncapped size (may be NULL). */
ATX_API const char *atx_result_output(const atx_result *r, atx_stream stream,
                                      size_t *len, uint64_t *total);

/*
 * From the outcome history (atx/changes.h), on a test's final own result:
 * its flake rate over its recent runs, this one included (0 to 1; -1 when
 * the history does not know the test), its recent outcomes (oldest first,
 * this run last: one letter a run, 'P' passed, '+' passed after a failed
 * attempt, 'F' failed, 'S' skipped, 'X' infrastructure; NULL when unknown),
 * and whether the run quarantines it (its failure does not fail the run).
 */
ATX_API double atx_result_flake_rate(const atx_result *r);
ATX_API const char *atx_result_recent(const atx_result *r);
ATX_API int atx_result_quarantined(const atx_result *r);
ATX_API int atx_result_set_flake_rate(atx_result *r, double rate);
ATX_API int atx_result_set_recent(atx_result *r, const char *outcomes);
ATX_API int atx_result_set_quarantined(atx_result *r, int quarantined);

#ifdef __cplusplus
}
#endif
#endif
