/*
 * atx — the test model.
 *
 * A test has a unique name (`/path/like/fmf`), the kind of executor that runs
 * it ("exec", "fmf", ...) with an executor-specific spec (a JSON object), a
 * duration hint, a timeout, required labels, a priority, a rerun budget, a
 * destructive flag and environment variables.
 *
 * Ownership: atx_test_new() hands the test to the caller until it is given to
 * a run with atx_run_add_test(), which takes it. Getters borrow. A test is
 * read-only once added to a run and may then be read from any thread.
 */
#ifndef ATX_TEST_H
#define ATX_TEST_H

#include "atx/common.h"
#include "atx/labels.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct atx_test atx_test;

/** Sentinel: use the run's policy value. */
#define ATX_TEST_INHERIT (-1)

/**
 * A new test named @p name run by executor @p executor, with an empty spec
 * ("{}"), no requirements, priority 0, timeout and reruns inherited from the
 * run's policy.
 * @return 0, ATX_EINVAL (empty name or executor) or -ENOMEM.
 */
ATX_API int atx_test_new(const char *name, const char *executor, atx_test **out);
/** Free a test not given to a run; NULL is accepted. */
ATX_API void atx_test_free(atx_test *t);

/**
 * Set the executor spec from JSON text (an object).
 * @return 0, or ATX_EPARSE with the parser's sentence.
 */
ATX_API int atx_test_set_spec_json(atx_test *t, const char *json);
/**
 * Shorthand for the exec executor: spec {"command": argv}.
 * @param argv  NULL-terminated, at least one element.
 */
ATX_API int atx_test_set_command(atx_test *t, const char *const *argv);
ATX_API int atx_test_set_duration(atx_test *t, int64_t duration_ns);
/** @p timeout_ns > 0, or ATX_TEST_INHERIT. */
ATX_API int atx_test_set_timeout(atx_test *t, int64_t timeout_ns);
ATX_API int atx_test_require(atx_test *t, const char *key, const char *value);
ATX_API int atx_test_set_priority(atx_test *t, int priority);
/** @p reruns >= 0, or ATX_TEST_INHERIT. */
ATX_API int atx_test_set_reruns(atx_test *t, int reruns);
ATX_API int atx_test_set_destructive(atx_test *t, int destructive);
/** Add or replace an environment variable for the test. */
ATX_API int atx_test_setenv(atx_test *t, const char *key, const char *value);

ATX_API const char *atx_test_name(const atx_test *t);
ATX_API const char *atx_test_executor(const atx_test *t);
/** The spec as compact JSON text. */
ATX_API const char *atx_test_spec_json(const atx_test *t);
/** Declared duration in ns, or 0 when unknown. */
ATX_API int64_t atx_test_duration(const atx_test *t);
ATX_API int64_t atx_test_timeout(const atx_test *t);
ATX_API const atx_labels *atx_test_requires(const atx_test *t);
ATX_API int atx_test_priority(const atx_test *t);
ATX_API int atx_test_reruns(const atx_test *t);
ATX_API int atx_test_destructive(const atx_test *t);
/** Environment as a NULL-terminated "K=V" array, in insertion order. */
ATX_API const char *const *atx_test_environ(const atx_test *t);

#ifdef __cplusplus
}
#endif
#endif
