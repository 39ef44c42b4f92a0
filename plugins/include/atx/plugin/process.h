/*
 * atx — running a process to its end (plugin tier).
 *
 * One loop for every "start it, feed it, read it, bound it, stop it" in atx,
 * in the spirit of git's pipe_command(): stdin is fed from a buffer; stdout,
 * stderr and the test-control channel are kept in captures (head and tail
 * past their caps) or streamed to a sink; a deadline, a cancel fd and a
 * sink's verdict stop the whole process tree (TERM, then KILL after a
 * grace); what the pipes still hold after the exit is drained for a bounded
 * time. Every wait in it has a deadline, including the one for a process
 * that will not die.
 *
 * It works on any atx_proc: one on this host (atx_spawn_local()) or one on a
 * leased system (atx_system_spawn()). Threads: one call per process at a
 * time, on the thread that owns it.
 */
#ifndef ATX_PLUGIN_PROCESS_H
#define ATX_PLUGIN_PROCESS_H

#include "atx/plugin/capture.h"
#include "atx/system.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Where a process's bytes go when they are not captured. */
typedef struct atx_proc_sink {
    void *ud;
    /** stdout (stream 0) or stderr (1). < 0: stop the process at once. */
    int (*output)(void *ud, int stream, const char *data, size_t len);
    /** The control channel (ATX_SPAWN_CONTROL). < 0: stop the process at
     *  once; > 0: close the channel (atx_proc_close_control()), the rest of
     *  these bytes and any later ones are not wanted. */
    int (*control)(void *ud, const char *data, size_t len);
    /** Called every tick_ns while the process runs. < 0: stop it at once. */
    int (*tick)(void *ud);
} atx_proc_sink;

#define ATX_PROC_RUN_OPTS_VERSION 1
/** How to run a process to its end. Initialise with ATX_PROC_RUN_OPTS_INIT. */
typedef struct atx_proc_run_opts {
    unsigned version;             /**< ATX_PROC_RUN_OPTS_VERSION */
    const char *input;            /**< written to stdin, which is then closed
                                       (the process needs ATX_SPAWN_STDIN_PIPE);
                                       NULL: stdin is closed at once */
    size_t input_len;
    atx_capture *capture[2];      /**< stdout, stderr kept here when the sink
                                       has no output callback; NULL: dropped */
    const atx_proc_sink *sink;    /**< may be NULL */
    int64_t tick_ns;              /**< sink->tick's period (0: none) */
    const int64_t *deadline_ns;   /**< monotonic, read at every turn (a sink
                                       may move it); NULL or 0: none. A
                                       system that keeps deadlines itself (an
                                       agent) decides the timeout; this side
                                       acts only when its word is 3 s past
                                       deadline and grace */
    int64_t grace_ns;             /**< TERM to KILL (as the spawn's
                                       kill_grace_ns); 0: one second */
    int cancel_fd;                /**< readable: stop (TERM, grace, KILL); -1: none */
    /** When set and > 1 (asked whenever the cancel fd is readable): stop at
     *  once with KILL, and give up on a process that does not end within a
     *  second (a frozen system). */
    int (*cancel_level)(void *ud);
    void *cancel_ud;
    int64_t drain_ns;             /**< reading after the exit; 0: 500 ms */
} atx_proc_run_opts;
#define ATX_PROC_RUN_OPTS_INIT \
    { ATX_PROC_RUN_OPTS_VERSION, NULL, 0, { NULL, NULL }, NULL, 0, NULL, 0, -1, NULL, NULL, 0 }

/** How a run ended. */
typedef struct atx_proc_outcome {
    atx_exit exit;      /**< its end; exit.timed_out: the deadline stopped it */
    int interrupted;    /**< the cancel fd stopped it */
    int aborted;        /**< a sink callback stopped it */
    int abandoned;      /**< it did not end after KILL: given up on */
} atx_proc_outcome;

/**
 * Run @p p to its end as @p o says.
 * @return 0 when it ended (whatever it did: see @p res); ATX_ELOST when its
 *         system stopped answering or its connection broke (res filled as far
 *         as known); another negative code for trouble of atx's own.
 */
ATX_API int atx_proc_run(atx_proc *p, const atx_proc_run_opts *o, atx_proc_outcome *res);

/**
 * Spawn on @p sys (NULL: on this host, atx_spawn_local()), run to the end
 * with atx_proc_run(), free.
 * @return as atx_proc_run(); ATX_ESPAWN when it could not start (detail says
 *         why), and the spawn's other errors.
 */
ATX_API int atx_proc_run_spawn(atx_system *sys, const atx_spawn_opts *so,
                               const atx_proc_run_opts *o, atx_proc_outcome *res);

#ifdef __cplusplus
}
#endif
#endif
