/* The run journal (journal.c). Private to libatx. */
#ifndef ATX_JOURNAL_H
#define ATX_JOURNAL_H

#include "../framework/src/internal.h"

typedef struct journal journal;

enum { JR_NEW, JR_RESUME };

/* Open DIR/journal.db: JR_NEW replaces any old one, JR_RESUME needs one. */
ATX_INTERNAL int jr_open(const char *dir, int mode, journal **out);
ATX_INTERNAL void jr_close(journal *j);
ATX_INTERNAL const char *jr_path(const journal *j);

ATX_INTERNAL int jr_begin(journal *j);
ATX_INTERNAL int jr_commit(journal *j);
ATX_INTERNAL void jr_rollback(journal *j);

ATX_INTERNAL int jr_meta_set(journal *j, const char *key, const char *value);
/* The value (malloc'd) or NULL. */
ATX_INTERNAL char *jr_meta_get(journal *j, const char *key);
/* A number kept in the meta into *out (left as it is when there is none). */
ATX_INTERNAL void jr_meta_int(journal *j, const char *key, int64_t *out);

/* Writing, inside jr_begin()/jr_commit(). */
ATX_INTERNAL int jr_add_test(journal *j, int64_t id, const char *name);
ATX_INTERNAL int jr_started(journal *j, int64_t test, int attempt, const char *system,
                            int64_t when);
/* A result; an attempt's own result ends it and carries its outcome:
 * "final", "rerun", "requeue", "lost" or "interrupted" (NULL otherwise). */
ATX_INTERNAL int jr_result(journal *j, int64_t test, const atx_result *r, const char *outcome);
/* Change a finished attempt's outcome. */
ATX_INTERNAL int jr_set_outcome(journal *j, int64_t test, int attempt, const char *outcome);
/* An attempt's final results become superseded ones, or with drop are
 * deleted (an orchestrator's "not run" that is no attempt at all). */
ATX_INTERNAL int jr_supersede(journal *j, int64_t test, int attempt, bool drop);

/* Reading. Strings are borrowed for the callback's duration. */
typedef struct jr_attempt {
    int64_t test;
    int number;
    const char *system;
    const char *outcome;   /* NULL: started, never finished */
    int64_t started_ns;
} jr_attempt;

typedef struct jr_final {
    int64_t test;
    int attempt;
    const char *status;
    const char *error_type;
    int64_t duration_ns;
} jr_final;

ATX_INTERNAL int jr_each_test(journal *j, int (*fn)(void *, int64_t, const char *), void *ud);
ATX_INTERNAL int jr_each_attempt(journal *j, int (*fn)(void *, const jr_attempt *), void *ud);
/* Tests' own final results, in order. */
ATX_INTERNAL int jr_each_final(journal *j, int (*fn)(void *, const jr_final *), void *ud);
/* How a merge shows another run's results: its files as seen from the
 * merged reports' folder (file_prefix + path), its systems told apart from
 * other runs' ("local-1 (shard 2/4)" with system_label "shard 2/4"). */
typedef struct jr_rebase {
    const char *file_prefix;
    const char *system_label;
} jr_rebase;

/* Every result up to max_seq, in order, rebuilt in full (and rebased, when
 * rb is not NULL); fn takes it. */
ATX_INTERNAL int jr_each_result(journal *j, int64_t max_seq, const jr_rebase *rb,
                                int (*fn)(void *, atx_result *), void *ud);
ATX_INTERNAL int64_t jr_last_seq(journal *j);
ATX_INTERNAL int jr_count_tests(journal *j, size_t *n);
ATX_INTERNAL size_t jr_count_results(journal *j);

#endif
