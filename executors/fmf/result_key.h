/*
 * tmt's `result` test key for the fmf executor (private to executors/fmf):
 * how the test's own result is settled from what the test did, as tmt does
 * it (https://tmt.readthedocs.io/en/stable/spec/tests.html#result).
 *
 *   respect    the test's result as it is; results reported with
 *              tmt-report-result (bin/) decide it instead of the exit code:
 *              the worst of them (skip < info < pass < warn < fail < error)
 *   xfail      pass and fail swap; the note says so
 *   pass, info, warn, error, fail
 *              that, whatever the test did; the note says what it was
 *   custom     the results the test wrote in $TMT_TEST_DATA/results.yaml
 *              (or results.json), tmt's results format
 *   restraint  each tmt-report-result call is a result of its own; the
 *              test's is the worst of them
 *
 * atx's own outcomes (infra: a timeout, a lost system, a protocol error, a
 * cancelled run) are not the test's result and are never reinterpreted.
 *
 * Threads: no shared state; the functions work on what they are given.
 */
#ifndef ATX_FMF_RESULT_KEY_H
#define ATX_FMF_RESULT_KEY_H

#include "control.h"

#include <stdbool.h>
#include <stddef.h>

struct json_object;

typedef enum {
    FMF_RESULT_RESPECT = 0,
    FMF_RESULT_XFAIL = 1,
    FMF_RESULT_PASS = 2,
    FMF_RESULT_INFO = 3,
    FMF_RESULT_WARN = 4,
    FMF_RESULT_ERROR = 5,
    FMF_RESULT_FAIL = 6,
    FMF_RESULT_CUSTOM = 7,
    FMF_RESULT_RESTRAINT = 8
} fmf_result_mode;

/* The words of the `result` key, for messages. */
#define FMF_RESULT_WORDS "respect, xfail, pass, info, warn, error, fail, custom, restraint"

/* Limits of a custom results file, against hostile input. */
#define FMF_CUSTOM_FILE_MAX (8u * 1024 * 1024) /* bytes of results.yaml or .json */
#define FMF_CUSTOM_VALUES_MAX 200000           /* values in it */
#define FMF_CUSTOM_DEPTH_MAX 32                /* nested lists and mappings */

/**
 * @p s (valid UTF-8) for a one-line message, into @p buf: at most @p max
 * bytes, cut where a character ends, control characters as '?'.
 */
void fmf_result_shown(char *buf, size_t len, const char *s, size_t max);

/** The mode a `result` word names. @return 0, or -1 if it names none. */
int fmf_result_mode_parse(const char *word, fmf_result_mode *out);

/**
 * Settle the test's own result @p own (a results object: "status", "note")
 * by @p mode, as fmf_control's settle hook: with @p status_from_exit, the
 * results reported by the helper programs (lines of @p c with "via" ending
 * in "-report-result") decide its status first; then xfail or an overriding
 * word applies, adding tmt's notes ("test failed as expected", "original
 * test result: fail", ...). An `infra` status is left alone; the caller
 * leaves attempts that did not end by themselves alone.
 * @return 0 or -ENOMEM.
 */
int fmf_result_settle(struct json_object *own, fmf_result_mode mode, const fmf_control *c,
                      bool status_from_exit);

/**
 * Feed tmt's custom results into @p c, as results of the test (its own is
 * partial: the fallback adds the output). @p file is a local copy of the
 * test's results.yaml or results.json (regular, no links), @p data_dir the
 * local copy of its TMT_TEST_DATA (where `log` paths point). With @p file
 * NULL, or a file that is not tmt's results format (too big, not YAML/JSON,
 * not a list of mappings with a name and a known result, ...), the test's
 * own result is `error` with one line naming the problem (@p why when
 * @p file is NULL). The stream of @p c must be at a line boundary.
 * @return 0, or what fmf_control_feed() returns.
 */
int fmf_result_custom(fmf_control *c, const char *file, const char *data_dir, const char *why);

/**
 * Feed the test's own result into @p c: @p status, with @p note; partial
 * (the fallback adds the output and keeps the status) or final.
 * @return 0, -ENOMEM or what fmf_control_feed() returns.
 */
int fmf_result_feed_own(fmf_control *c, const char *status, const char *note, bool partial);

#endif
