/*
 * The host side of the agent protocol: start atx-agent on a system once per
 * lease, then run processes through it at the cost of a round trip. Used by
 * executors (fmf, and exec on systems other than this host). One client per
 * leased system, used by the worker thread that holds the lease.
 */
#ifndef ATX_AGENT_CLIENT_H
#define ATX_AGENT_CLIENT_H

#include "protocol.h"

#include <atx/system.h>

typedef struct agent_client agent_client;

/** Start the agent (@p agent_path as seen on the system) and wait for its hello. */
int agent_client_start(atx_system *sys, const char *agent_path, agent_client **out);

/**
 * Start the agent on any system: on one that shares this host's files, the
 * local program @p local_agent itself; elsewhere it is uploaded first into
 * the system's work directory as atx-agent-<tag> (one per user of it).
 */
int agent_client_start_on(atx_system *sys, const char *local_agent, const char *tag,
                          agent_client **out);

/**
 * The agent program installed next to the plugin that links this code:
 * <libdir>/atx/plugins/NAME.so -> <libdir>/atx/atx-agent.
 * @return 0, or ATX_ENOTFOUND (detail names the path tried).
 */
int agent_default_path(char *buf, size_t len);
/** Tell the agent to quit (it kills what it started), reap it, free. NULL accepted. */
void agent_client_free(agent_client *c);

/** Where a running process's bytes go. A callback returning < 0 stops the
 *  process at once (SIGKILL to its group): a protocol violation, say. */
typedef struct agent_sink {
    void *ud;
    int (*output)(void *ud, int stream, const char *data, size_t len); /* 0 out, 1 err */
    int (*control)(void *ud, const char *data, size_t len);
} agent_sink;

typedef struct agent_run_opts {
    const char *const *argv;
    const char *const *env;      /* "K=V" over the agent's environment; may be NULL */
    const char *cwd;             /* NULL: the agent's */
    unsigned flags;              /* enum agent_start_flags */
    const int64_t *deadline_ns;  /* monotonic, read on every turn (the sink may move it); NULL or 0: none */
    int64_t grace_ns;            /* TERM to KILL at the deadline or on cancel */
    int cancel_fd;               /* readable: stop the process (-1: none) */
    int (*hurry)(void *ud);      /* 1: a cancel skips the grace */
    void *hurry_ud;
} agent_run_opts;

typedef struct agent_result {
    int exited, code, signal;    /* how it ended */
    int timed_out;               /* the deadline killed it */
    int interrupted;             /* the cancel fd killed it */
    int aborted;                 /* a sink callback stopped it */
} agent_result;

/**
 * Run one process to its end, streaming its bytes to @p sink.
 * @return 0 with @p res filled; ATX_ESPAWN when it could not start (detail
 *         says why); ATX_ELOST when the agent's connection broke.
 */
int agent_client_run(agent_client *c, const agent_run_opts *o, const agent_sink *sink,
                     agent_result *res);

/** Round trip: 0, or ATX_ELOST after @p timeout_ns. */
int agent_client_ping(agent_client *c, int64_t timeout_ns);

/** Copy a local file to @p remote on the system with @p mode. */
int agent_client_put(agent_client *c, const char *local, const char *remote, unsigned mode);

#endif
