/* One attempt of one test on one system, as an executor sees it. */
#include "orch.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

const atx_test *atx_attempt_test(const atx_attempt *a) { return a ? a->ts->t : NULL; }
atx_system *atx_attempt_system(const atx_attempt *a) { return a ? a->sys : NULL; }
int atx_attempt_number(const atx_attempt *a) { return a ? a->number : 0; }
int64_t atx_attempt_timeout(const atx_attempt *a) { return a ? a->ts->timeout_ns : 0; }

int64_t atx_attempt_kill_grace(const atx_attempt *a)
{
    if (!a)
        return 0;
    return a->run->policy.kill_grace_ns > 0 ? a->run->policy.kill_grace_ns : ATX_NSEC_PER_SEC;
}

int atx_attempt_cancel_fd(const atx_attempt *a)
{
    return a ? a->run->cancel_pipe[0] : -1;
}

int atx_attempt_cancelled(const atx_attempt *a)
{
    return a ? atomic_load(&a->run->cancel_level) : 0;
}

int atx_attempt_cancel_level(void *attempt)
{
    return atx_attempt_cancelled(attempt);
}

void *atx_attempt_system_state(const atx_attempt *a)
{
    return a ? a->sys_state : NULL;
}

int atx_attempt_make_dir(atx_attempt *a)
{
    char *safe = NULL;
    int r;

    if (a->dir)
        return 0;
    if ((r = atx_text_name_path(atx_test_name(a->ts->t), &safe)) < 0)
        return r;
    if (asprintf(&a->rel, "tests/%s/attempt-%d", safe, a->number) < 0 ||
        asprintf(&a->dir, "%s/%s", a->run->results_dir, a->rel) < 0) {
        free(safe);
        return atx_error_oom();
    }
    free(safe);
    if (mkdir(a->dir, 0755) == 0)
        return 0;
    if (errno != EEXIST)
        return atx_mkdir_p(a->dir);
    /* Left by an earlier run into this folder (or an attempt atx died
     * under): stale, and its files must not count as this attempt's. */
    return atx_empty_dir(a->dir);
}

const char *atx_attempt_dir(atx_attempt *a, const char **rel)
{
    if (!a) {
        atx_error_set(ATX_EINVAL, "no attempt");
        return NULL;
    }
    if (atx_attempt_make_dir(a) < 0)
        return NULL;
    if (rel)
        *rel = a->rel;
    return a->dir;
}

int atx_attempt_emit(atx_attempt *a, atx_result *r)
{
    int e;

    if (!a || !r) {
        atx_result_unref(r);
        return atx_error_set(ATX_EINVAL, "emit needs an attempt and a result");
    }
    if (strcmp(atx_result_test(r), atx_test_name(a->ts->t)) != 0) {
        e = atx_error_set(ATX_EINVAL, "a result of test %s was emitted in an attempt of %s",
                          atx_result_test(r), atx_test_name(a->ts->t));
        atx_result_unref(r);
        return e;
    }
    if ((e = atx_result_set_attempt(r, a->number)) < 0 ||
        (e = atx_result_set_system(r, atx_system_id(a->sys), atx_system_labels(a->sys))) < 0 ||
        (e = atx_vec_push(&a->results, r)) < 0) {
        atx_result_unref(r);
        return e;
    }
    if (!atx_result_subtest(r))
        a->own_emitted = true;
    return 0;
}
