/* Orchestrator internals. Private to libatx. */
#ifndef ATX_ORCH_H
#define ATX_ORCH_H

#include "../framework/src/internal.h"
#include "history.h"
#include "journal.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct klass klass;
typedef struct run_worker run_worker;

typedef struct exec_inst {
    char *kind;
    const atx_executor_vtable *vt;
    void *state;
    atx_plugin_ctx *ctx;
} exec_inst;

#define PROV_THREADS_MAX 64

typedef struct prov_inst {
    const atx_provisioner_vtable *vt;
    void *state;
    atx_plugin_ctx *ctx;
    struct atx_run *run;
    pthread_t threads[PROV_THREADS_MAX]; /* its reserves, each from one */
    int nthreads;
    bool started;
    bool failed;            /* gave up: reserve keeps failing */
    int capacity;
    int leased;
    int idle;               /* leased systems not running a test */
    int failures;           /* consecutive reserve failures */
    int reserving;          /* reserves under way */
    unsigned fail_epoch;    /* counted failures: one per reserves that overlap */
    char *last_error;
    size_t index;
    /* The second and later provisioners of one plugin append ".N" to their
     * systems' ids, so ids stay unique in the run (reruns, reports). */
    char id_suffix[16];
    /* System lifecycle from the provisioner's configuration (run.c strips
     * these keys before the plugin sees it). */
    char **setup;           /* commands run on each new system */
    char *ready;            /* a probe retried until it succeeds */
    int64_t ready_timeout_ns;
    char **cleanup;         /* commands run before each release, always */
    int not_ready;          /* systems that failed setup/ready in a row */
    int64_t retry_at;       /* after trouble, no new lease before this (monotonic) */
} prov_inst;

typedef struct agg_inst {
    const atx_aggregator_vtable *vt;
    void *state;
    atx_plugin_ctx *ctx;
    char *plugin;           /* a loaded plugin's name and configuration, */
    char *config;           /* kept in the journal for `atx report` */
    bool failed;
} agg_inst;

typedef enum test_phase { TS_QUEUED, TS_RUNNING, TS_DONE } test_phase;

/* changes.c: a set of test names. */
typedef struct chg_names chg_names;
ATX_INTERNAL void chg_names_free(chg_names *set);
/* changes.c: a test's final outcome in a run. */
typedef struct chg_outcome {
    char *test;
    atx_status status;
    bool flaky;             /* passed after a failed attempt */
    bool quarantined;
    int64_t duration_ns;
    int64_t usual_ns;       /* its usual duration (history), 0: the other run's */
    uint32_t spec;          /* the hash of its spec (0: unknown), for the history */
} chg_outcome;
/* Compare; sorts both lists. */
ATX_INTERNAL int atx_changes_make(const char *baseline, chg_outcome *before, size_t nb,
                                  chg_outcome *after, size_t na, atx_changes **out);
ATX_INTERNAL void chg_outcomes_free(chg_outcome *v, size_t n);
/* The run's side (under no lock: the main thread before the run, the
 * aggregator thread during it, the main thread after): load the plan's
 * outcomes with the history, annotate each result delivered (quarantine,
 * flake rate, this run's outcomes), compare before the aggregators end,
 * write the outcomes with the durations, free. */
ATX_INTERNAL int atx_run_load_outcomes(atx_run *run);
ATX_INTERNAL void atx_run_annotate(atx_run *run, atx_result *r);
ATX_INTERNAL void atx_run_compare(atx_run *run);
ATX_INTERNAL int atx_run_write_outcomes(atx_run *run);
ATX_INTERNAL void atx_run_changes_free(atx_run *run);
ATX_INTERNAL void atx_run_quarantine_free(atx_run *run);
/* A run's letter in a test's recent outcomes (atx_result_recent()). */
ATX_INTERNAL char chg_letter(atx_status status, bool flaky);
/* The flake rate of n runs' letters and spec hashes (oldest first), or -1. */
ATX_INTERNAL double chg_flake_rate(const char *letters, const uint32_t *specs, size_t n);

typedef struct test_state {
    atx_test *t;
    exec_inst *exec;
    klass *cls;
    size_t heap_pos;
    uint64_t seq;
    int attempts;
    int reruns_left;
    int infra_left;         /* re-queues after infrastructure trouble */
    int64_t timeout_ns;
    char *last_system;
    test_phase phase;
    bool had_failure;
    bool deferred;          /* left once for a fresh system to take */
    bool hist_match;        /* hist_ns is for a system class of this run */
    int64_t jid;            /* the test's id in the journal */
    int priority;           /* the test's, kept here for the heap */
    int64_t expected_ns;    /* history, else declared duration; 0 unknown */
    int64_t hist_ns;        /* from the history, 0 none */
    int64_t split_ns;       /* what the shard split expects (shard.c), 0 unknown */
    int64_t took_ns;        /* final attempt's duration, for the history */
    const char *took_class; /* ... and its system class (interned), or NULL */
    /* outcome history (changes.c): its recent runs of the plan, oldest first */
    char recent[ATX_HISTORY_RUNS + 1];   /* letters (chg_letter()), NUL-ended */
    uint32_t recent_spec[ATX_HISTORY_RUNS];
} test_state;

/* A heap entry: the test's order keys, copied, and the test. */
typedef struct heap_ent {
    int priority;
    int64_t expected_ns;
    uint64_t seq;
    test_state *ts;
} heap_ent;

struct klass {
    atx_labels *requires;
    heap_ent *heap;
    size_t destructive;     /* queued destructive tests */
    size_t reruns;          /* queued tests with an attempt behind them */
    size_t len, cap;
    size_t running;         /* tests of the class being attempted now */
    size_t index;
    bool possible;          /* some provisioner offer satisfies it */
};

/* An item for the aggregator thread: journaled, then handed on. */
enum { AGG_STARTED, AGG_RESULT };
typedef struct agg_item {
    struct agg_item *next;
    int kind;
    atx_result *result;     /* AGG_RESULT */
    const atx_test *test;   /* AGG_STARTED */
    char *system_id;        /* AGG_STARTED */
    int attempt;            /* AGG_STARTED */
    int64_t jid;
    int64_t when;           /* AGG_STARTED: wall clock */
    const char *outcome;    /* an attempt's own result: what became of it */
} agg_item;

/* The run's tests by name (open addressing; entries borrowed). */
typedef struct name_set {
    test_state **slots;
    size_t cap, len;
} name_set;

struct atx_run {
    /* configuration */
    char *results_dir;
    char *run_id;
    atx_plugins *plugins;
    bool own_plugins;
    atx_log_fn log;         /* masked_log when the caller gave one */
    void *log_ud;
    atx_log_fn user_log;    /* the caller's */
    void *user_log_ud;
    atx_log_level log_level;
    atx_policy policy;
    atx_secrets secrets;    /* set before the run starts, read-only after */

    atx_vec tests;          /* test_state* in insertion order */
    atx_vec classes;        /* klass* */
    atx_vec execs;          /* exec_inst* */
    atx_vec provs;          /* prov_inst* */
    atx_vec aggs;           /* agg_inst* */
    atx_vec workers;        /* run_worker* */
    name_set names;

    /* scheduler state, under mu */
    pthread_mutex_t mu;
    pthread_cond_t work_cv;
    pthread_cond_t prov_cv;
    uint64_t prov_gen;         /* bumped with every prov_cv broadcast */
    size_t queued;
    size_t running;
    size_t done;
    size_t active_workers;
    size_t waiting_workers;    /* blocked on work_cv */
    size_t leased;             /* systems leased from all provisioners */
    int64_t queued_known_ns;   /* expected durations of queued tests */
    size_t queued_unknown;     /* queued tests without an estimate */
    bool stopping;
    bool executed;
    uint64_t seq;
    atx_summary summary;
    const char *stop_reason;   /* static text: why queued tests did not run */

    /* cancellation: readable once cancelled; never drained */
    int cancel_pipe[2];
    /* readable once hurried (the second cancel); never drained */
    int hurry_pipe[2];
    atomic_int cancel_level;   /* 0, 1 graceful, 2 hurry */
    /* wakes the main thread: done, all workers gone */
    int wake_pipe[2];

    /* aggregator queue */
    pthread_mutex_t agg_mu;
    pthread_cond_t agg_cv;
    agg_item *agg_head, *agg_tail;
    bool agg_closing;
    pthread_t agg_thread;

    /* journal (used by the main thread, then only the aggregator thread) */
    atx_journal_mode jr_mode;
    journal *jr;
    bool jr_failed;
    bool reporting;            /* atx_run_report(): replay only */
    int64_t replay_seq;        /* results up to here are replayed first */
    size_t replay_count;       /* ... this many */
    int64_t prev_duration_ns;  /* of the run's earlier segments */
    char *hostname;
    atx_vec meta;              /* key, value, key, value ... (owned) */

    /* duration history */
    char *history_path;
    history *hist;
    atx_vec sys_classes;       /* char*: interned system class names */

    /* outcome history and changes (changes.c) */
    char *plan_key;            /* NULL: "" */
    char *compare_dir;         /* compare with this results folder, or NULL */
    chg_outcome *prev;         /* the previous run of the plan, or NULL */
    size_t nprev;
    char *prev_label;          /* what prev is, for people */
    chg_outcome *cur;          /* final outcomes delivered (aggregator thread) */
    size_t ncur, cur_cap;
    chg_names *failed_before;  /* tests with a failed attempt delivered, or NULL */
    bool cur_incomplete;       /* an outcome could not be kept (out of memory) */
    const atx_changes *changes_ref; /* what plugin contexts read (changes) */
    atx_changes *changes;
    void *quarantine;          /* quarantine.c's patterns, or NULL */

    /* atx_run_report_merge() (merge.c): merge_src*, the runs merged */
    atx_vec sources;

    /* sharding (shard.c) */
    unsigned shard_index, shard_count; /* 0/0: the whole plan */
    bool split_estimated;      /* split_ns of every test is set */
};

/* A run whose journal atx_run_report_merge() reads. */
typedef struct merge_src {
    const char *dir;        /* as the caller named it (borrowed) */
    journal *jr;
    int64_t last_seq;
    char *label;            /* "shard 2/4", or the folder's name */
    char *prefix;           /* from the merged reports' folder to the run's */
    jr_rebase rb;
    char *shard;            /* its journal's "shard" meta, or NULL */
} merge_src;

/* run.c */
/* Replay what the run's journals hold (atx_run_report, a merge): the
 * aggregator thread to its end, then the summary. */
ATX_INTERNAL int atx_run_replay(atx_run *run, atx_summary *summary);
/* Add a journal's tests, attempts and final results to the run's summary,
 * as atx_run_report() reports them. */
ATX_INTERNAL int atx_run_tally(atx_run *run, journal *j);
ATX_INTERNAL void atx_run_logf(atx_run *run, atx_log_level level, const char *fmt, ...)
    ATX_PRINTF(3, 4);
ATX_INTERNAL void atx_run_wake(atx_run *run);
/* Something provisioners wait for changed (the queue, a release). Under mu. */
ATX_INTERNAL void atx_run_prov_signal(atx_run *run);
ATX_INTERNAL void atx_run_agg_push(atx_run *run, agg_item *item);
/* A chain of items (linked by next, ending at tail) at once: one batch. */
ATX_INTERNAL void atx_run_agg_push_chain(atx_run *run, agg_item *head, agg_item *tail);
/* The run's tests by name: add (1 added, 0 taken, negative on OOM), find. */
ATX_INTERNAL int atx_names_add(name_set *set, test_state *ts);
ATX_INTERNAL test_state *atx_names_find(const name_set *set, const char *name);
/* The interned system class of a label set. Under mu. */
ATX_INTERNAL const char *atx_run_sys_class(atx_run *run, const atx_labels *labels);

/* sched.c: all under run->mu */
ATX_INTERNAL int atx_sched_classify(atx_run *run, test_state *ts);
ATX_INTERNAL void atx_sched_push(atx_run *run, test_state *ts);
/* The best queued test for sys; with avoid_own_reruns, reruns whose last
 * attempt ran on sys are passed over and *avoided is set to the first. */
ATX_INTERNAL test_state *atx_sched_pick(atx_run *run, atx_system *sys, const bool *applicable,
                                        bool avoid_own_reruns, test_state **avoided);
ATX_INTERNAL test_state *atx_sched_pop_any(atx_run *run);
ATX_INTERNAL int atx_sched_applicable(atx_run *run, const klass *k, const atx_labels *labels,
                                      const char **missing);

/* worker.c */
ATX_INTERNAL int atx_worker_start(atx_run *run, prov_inst *p, atx_system *sys);
ATX_INTERNAL void atx_worker_join_all(atx_run *run);
/* Expected time left of the running tests: summed, and the longest. Under mu. */
ATX_INTERNAL void atx_run_running_left(atx_run *run, int64_t *sum, int64_t *longest);
ATX_INTERNAL void *atx_provisioner_main(void *arg);
ATX_INTERNAL void atx_run_record_final(atx_run *run, test_state *ts, atx_status status,
                                       const char *type);
/* A test's own result made by the orchestrator (infra, not run, ...). */
ATX_INTERNAL atx_result *atx_run_own_result(const test_state *ts, atx_status status,
                                            const char *type, const char *note);

/* attempt.c */
struct atx_attempt {
    atx_run *run;
    test_state *ts;
    atx_system *sys;
    int number;
    atx_vec results;        /* atx_result* emitted */
    char *dir, *rel;
    int64_t started_wall;
    bool own_emitted;
    void *sys_state;        /* the executor's state for the system (v2) */
};
ATX_INTERNAL int atx_attempt_make_dir(atx_attempt *a);

#endif
