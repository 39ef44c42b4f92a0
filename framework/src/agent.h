/*
 * The host side of the agent protocol (executors/agent/protocol.h): one
 * connection per leased system, owned by its atx_system. Private to libatx.
 *
 * A pump thread per connection reads the agent's frames and hands each
 * process its bytes on plain fds (pipes for stdout, stderr, the control
 * channel and stdin, an eventfd that fires at the end), so a process on a
 * leased system is an atx_proc like one on this host. The pump also pings
 * the agent every liveness interval and declares the system lost when an
 * answer is later than the liveness timeout: every process of it ends with
 * ATX_ELOST at once, and the owner's callback is told.
 *
 * Threads: any thread may call these; the connection's lock is never held
 * across a wait on the system (waits are on condition variables and fds).
 */
#ifndef ATX_AGENT_CONN_H
#define ATX_AGENT_CONN_H

#include "internal.h"

typedef struct agent_conn agent_conn;

typedef struct agent_liveness {
    int64_t interval_ns;              /* a ping this often (0: 5 s) */
    int64_t timeout_ns;               /* lost when an answer is this late (0: 30 s) */
    /* From the pump thread, without locks held, with what happened (it may
     * come before agent_conn_start() returns). */
    void (*on_lost)(void *ud, const char *why);
    void *ud;
    /* Readable once the run is cancelled in a hurry (-1: none): a system
     * that still owes an answer a second later is given up on. */
    int hurry_fd;
} agent_liveness;

/**
 * Take over @p boot (the agent, started by a provisioner with stdin and
 * stdout pipes) and wait until @p deadline_ns for its hello.
 * @return 0, or ATX_EINFRA with the detail (@p boot is freed either way on
 *         failure).
 */
ATX_INTERNAL int agent_conn_start(atx_proc *boot, const char *system_id, const agent_liveness *lv,
                     int64_t deadline_ns, agent_conn **out);
/**
 * Say goodbye and free. @p quick: the agent is not waited for (lost, or a
 * hurried run); otherwise it gets a moment to kill what it started. Its
 * processes still there end as lost and are detached: they may be freed
 * later, but not while this runs in another thread.
 */
ATX_INTERNAL void agent_conn_free(agent_conn *c, bool quick);

/** The agent's pid on its system (from its hello). */
ATX_INTERNAL long agent_conn_pid(const agent_conn *c);
/** Whether the system was lost; @p why (may be NULL) gets the reason. */
ATX_INTERNAL bool agent_conn_lost(agent_conn *c, char *why, size_t len);
/** Declare the system lost now (a hurried run that gives up on it). */
ATX_INTERNAL void agent_conn_abandon(agent_conn *c, const char *why);

/** Start a process (opts->cwd absolute or NULL: the agent's). As atx_system_spawn(). */
ATX_INTERNAL int agent_conn_spawn(agent_conn *c, const atx_spawn_opts *opts, atx_proc **out);
/** Round trip: 0, or ATX_ELOST. */
ATX_INTERNAL int agent_conn_ping(agent_conn *c, int64_t timeout_ns);
/** Copy a local file or tree to @p remote (absolute). As atx_system_copy_in(). */
ATX_INTERNAL int agent_conn_copy_in(agent_conn *c, const char *local, const char *remote);
/** Copy @p remote (absolute) to a local path. As atx_system_copy_out(). */
ATX_INTERNAL int agent_conn_copy_out(agent_conn *c, const char *remote, const char *local,
                                     const atx_copy_bounds *bounds);

/* ---- a system's agent (system.c) ---- */

/** Whether a system contains its processes itself (no agent needed). */
ATX_INTERNAL bool atx_system_contained(const atx_system *s);
/** Copy (where needed) and start the lease's agent; every process, copy
 *  and ping of the system goes through it from now on. */
ATX_INTERNAL int atx_system_attach_agent(atx_system *s, const agent_liveness *lv,
                                         int64_t deadline_ns);
/** A provisioner's reboot operation (atx_provisioner_vtable.reboot). */
typedef int (*atx_reboot_fn)(void *state, atx_system *sys, const atx_reboot_req *req);
/** Give the system its provisioner's reboot (the orchestrator, at lease). */
ATX_INTERNAL void atx_system_set_reboot(atx_system *s, atx_reboot_fn fn, void *state);
/** Whether the system stopped answering; @p why gets the reason. */
ATX_INTERNAL bool atx_system_lost_why(atx_system *s, char *why, size_t len);
/** Give up on the system now (a hurried run). */
ATX_INTERNAL void atx_system_abandon(atx_system *s, const char *why);
/** Say goodbye to the agent before the system goes back. One that stopped
 *  answering is reaped by a fresh `atx-agent --reap` on the system, waited
 *  for at most 1 s when @p quick (a hurried run), else 3 s. */
ATX_INTERNAL void atx_system_stop_agent(atx_system *s, bool quick);

#endif
