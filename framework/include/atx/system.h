/*
 * atx — systems and processes on them.
 *
 * A system is a leased machine, container or host slot. Provisioners create
 * systems (see atx/plugin/provisioner.h); executors and drivers use them
 * through these calls, which dispatch to the provisioner's implementation.
 *
 * Threads: a system is used by one worker thread at a time (the one that
 * holds its lease); its id and labels are immutable and may be read anywhere.
 * A process handle belongs to the thread that spawned it.
 */
#ifndef ATX_SYSTEM_H
#define ATX_SYSTEM_H

#include "atx/common.h"
#include "atx/labels.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct atx_system atx_system;
typedef struct atx_proc atx_proc;

/** Flags for atx_spawn_opts.flags. */
enum atx_spawn_flags {
    ATX_SPAWN_STDIN_PIPE = 1u << 0,  /**< a pipe to write stdin (default /dev/null) */
    ATX_SPAWN_STDOUT_PIPE = 1u << 1, /**< capture stdout (default /dev/null) */
    ATX_SPAWN_STDERR_PIPE = 1u << 2, /**< capture stderr (default /dev/null) */
    ATX_SPAWN_STDERR_TO_STDOUT = 1u << 3, /**< stderr joins stdout's pipe */
    ATX_SPAWN_CLEAR_ENV = 1u << 4,   /**< start from an empty environment */
    /** A pipe on the child's fd 3, read with atx_proc_control_fd(): the
     *  test-control channel (the executor names it in the environment). */
    ATX_SPAWN_CONTROL = 1u << 5,
    /** stdin, stdout and stderr are one pseudo-terminal, read through the
     *  stdout fd (implies ATX_SPAWN_STDERR_TO_STDOUT). */
    ATX_SPAWN_PTY = 1u << 6,
    /** Contain the process tree: every process it starts, also ones that
     *  leave its session or double-fork, is killed when it ends
     *  (atx_spawn_local: a cgroup v2 group; see atx_spawn_can_contain()). */
    ATX_SPAWN_CONTAIN = 1u << 7
};

#define ATX_SPAWN_OPTS_VERSION 1
/** How to start a process. Initialise with ATX_SPAWN_OPTS_INIT. */
typedef struct atx_spawn_opts {
    unsigned version;            /**< ATX_SPAWN_OPTS_VERSION */
    const char *const *argv;     /**< NULL-terminated; argv[0] searched in PATH */
    const char *const *env;      /**< "K=V" entries added over the inherited
                                      environment (or over nothing with
                                      ATX_SPAWN_CLEAR_ENV); may be NULL */
    const char *cwd;             /**< working directory, or NULL */
    unsigned flags;              /**< enum atx_spawn_flags */
    int64_t deadline_ns;         /**< monotonic instant after which the whole
                                      process tree is killed; 0 = none */
    int64_t kill_grace_ns;       /**< TERM-to-KILL grace at the deadline;
                                      0 = one second */
} atx_spawn_opts;
#define ATX_SPAWN_OPTS_INIT { ATX_SPAWN_OPTS_VERSION, NULL, NULL, NULL, 0, 0, 0 }

/** How a process ended. */
typedef struct atx_exit {
    int exited;    /**< 1 if it exited by itself: see code */
    int code;      /**< exit code when exited */
    int signal;    /**< the terminating signal when not exited */
    int timed_out; /**< 1 if the deadline killed it: never set for a process
                        that had ended by itself when the deadline came */
} atx_exit;

/** The system's id (unique within a run, e.g. "local-1"). */
ATX_API const char *atx_system_id(const atx_system *sys);
/** Facts and configured labels (arch, os, distro, hostname, provider, ...). */
ATX_API const atx_labels *atx_system_labels(const atx_system *sys);
/** A directory on the system where tests may write, or NULL. */
ATX_API const char *atx_system_workdir(const atx_system *sys);
/**
 * Whether the system sees this host's files at the same paths (a slot on
 * this host). Otherwise executors upload what tests need (atx_system_copy_in).
 */
ATX_API int atx_system_shares_host(const atx_system *sys);
/** Whether the system has run nothing yet in this lease. */
ATX_API int atx_system_fresh(const atx_system *sys);

/**
 * Start a process on the system, in its own session and process group.
 * @return 0 with *out set, ATX_ESPAWN when the program cannot be executed
 *         (detail names the program and errno), or another negative code.
 */
ATX_API int atx_system_spawn(atx_system *sys, const atx_spawn_opts *opts, atx_proc **out);
/**
 * Copy a local file or tree onto the system (modes kept). Relative remote
 * paths are relative to the system's work directory.
 */
ATX_API int atx_system_copy_in(atx_system *sys, const char *local, const char *remote);
/**
 * Copy a file or tree from the system to a local path. What comes from a
 * system is hostile: only regular files and folders are made (links are
 * neither followed nor recreated; @p remote itself being a link is
 * -ELOOP), files get mode 0644 or 0755 and folders 0755, and nothing is
 * written through a link already at @p local.
 */
ATX_API int atx_system_copy_out(atx_system *sys, const char *remote, const char *local);
/**
 * atx_system_copy_out() with a bound: a file of more than @p max_file_bytes
 * (0: no bound) is refused (@p remote itself: -EFBIG) or left out (in a
 * folder) before any of it is sent. Files copied on this host keep their holes.
 */
ATX_API int atx_system_copy_out_max(atx_system *sys, const char *remote, const char *local,
                                    uint64_t max_file_bytes);
#define ATX_COPY_BOUNDS_VERSION 1
/** How much a copy from a system may take (0: no bound). */
typedef struct atx_copy_bounds {
    unsigned version;          /**< ATX_COPY_BOUNDS_VERSION */
    uint64_t max_file_bytes;   /**< a larger file is left out */
    uint64_t max_total_bytes;  /**< files past this many bytes in all are left out */
    uint64_t max_entries;      /**< files and folders past this many are left out */
} atx_copy_bounds;
#define ATX_COPY_BOUNDS_INIT { ATX_COPY_BOUNDS_VERSION, 0, 0, 0 }

/**
 * atx_system_copy_out() within @p bounds: what is past one of them is left
 * out (nothing of it is written here), what fits is kept, and the call
 * returns -EFBIG naming the bound.
 */
ATX_API int atx_system_copy_out_bounded(atx_system *sys, const char *remote, const char *local,
                                        const atx_copy_bounds *bounds);
/**
 * atx_system_copy_out() for a provisioner whose system's files are on this
 * host: copy @p from (a file or a folder) to @p to by the same rules.
 */
ATX_API int atx_copy_taken(const char *from, const char *to);
/** atx_copy_taken() within @p bounds (may be NULL), as atx_system_copy_out_bounded(). */
ATX_API int atx_copy_taken_bounded(const char *from, const char *to,
                                   const atx_copy_bounds *bounds);
/**
 * Liveness probe.
 * @return 0 if the system answers within @p timeout_ns, ATX_ELOST otherwise.
 */
ATX_API int atx_system_alive(atx_system *sys, int64_t timeout_ns);

/**
 * Whether the system stopped answering (its agent missed a ping by the
 * liveness timeout, or its connection ended).
 * @return 1 with the reason in atx_error_last(), or 0.
 */
ATX_API int atx_system_lost(atx_system *sys);

#define ATX_REBOOT_REQ_VERSION 1
/** A reboot of a leased system (atx_system_reboot()). Initialise with
 *  ATX_REBOOT_REQ_INIT. */
typedef struct atx_reboot_req {
    unsigned version;     /**< ATX_REBOOT_REQ_VERSION */
    /** A shell command line that reboots it (tmt-reboot -c), or NULL for
     *  the system's own way (its provisioner's configured command). */
    const char *command;
    /** 1: it is going down by itself (a test rebooted it): nothing is run,
     *  the reboot is waited for. */
    int started;
    int64_t deadline_ns;  /**< monotonic: back by then, or it is lost */
    int cancel_fd;        /**< polls readable when the run stops: give up (-1: none) */
} atx_reboot_req;
#define ATX_REBOOT_REQ_INIT { ATX_REBOOT_REQ_VERSION, NULL, 0, 0, -1 }

/**
 * Reboot the system and wait until it is back: its connection drops, it
 * answers again, its agent is started again (uploaded again if the reboot
 * took its folder). Processes on it end first; files copied there may be gone.
 * @return 0 when it is back; ATX_EUNSUPPORTED when its provisioner cannot
 *         reboot it (a slot on this host), the system is then as it was;
 *         ATX_ELOST when it did not come back (by the deadline, or the run
 *         stopped): from then on it is lost (atx_system_lost()) with the
 *         reason. The detail says why.
 */
ATX_API int atx_system_reboot(atx_system *sys, const atx_reboot_req *req);

/** A pollable fd for the process's stdin pipe, or -1. Owned by the process. */
ATX_API int atx_proc_stdin_fd(atx_proc *p);
/** Pollable read fd for stdout (and stderr when merged), or -1. */
ATX_API int atx_proc_stdout_fd(atx_proc *p);
/** Pollable read fd for stderr, or -1 (also when merged into stdout). */
ATX_API int atx_proc_stderr_fd(atx_proc *p);
/** Close the stdin pipe (end of input). */
ATX_API void atx_proc_close_stdin(atx_proc *p);
/** Pollable read fd for the test-control channel (ATX_SPAWN_CONTROL), or -1. */
ATX_API int atx_proc_control_fd(atx_proc *p);
/**
 * Stop reading the process's test-control channel (ATX_SPAWN_CONTROL): it
 * is closed at both ends, so the process's further writes there fail with
 * EPIPE (SIGPIPE to a writer that does not ignore it), and
 * atx_proc_control_fd() is -1 from now on.
 */
ATX_API void atx_proc_close_control(atx_proc *p);
/** An fd that polls readable once the process has ended, or -1. */
ATX_API int atx_proc_wait_fd(atx_proc *p);
/**
 * Move the process's deadline (monotonic; 0: none), as a test's own
 * `duration` control may. The system enforces the new one.
 * @return 1 when the system keeps the deadline on its own clock and reports
 *         a timeout in the exit (atx_exit.timed_out; a process on an agent),
 *         0 when whoever waits enforces it, ATX_EUNSUPPORTED for a process
 *         whose system cannot move it.
 */
ATX_API int atx_proc_set_deadline(atx_proc *p, int64_t deadline_ns);
/**
 * Wait for the process to end, up to @p timeout_ns (0 = just check,
 * negative = no limit besides the spawn deadline). When the leader ends, the
 * rest of its process group is killed before the leader is reaped, and with
 * ATX_SPAWN_CONTAIN (or on a system whose agent contains its tests) every
 * other process it started.
 * @return 0 with *ex filled, ATX_ETIMEDOUT if still running after the wait,
 *         ATX_ELOST (with *ex filled as far as known) when the system
 *         stopped answering or its connection broke.
 */
ATX_API int atx_proc_wait(atx_proc *p, int64_t timeout_ns, atx_exit *ex);
/**
 * Kill the whole process tree: @p sig to the group, and when @p grace_ns > 0
 * and it is still there after that long, SIGKILL. Returns at once when
 * @p grace_ns is 0.
 */
ATX_API int atx_proc_kill_tree(atx_proc *p, int sig, int64_t grace_ns);
/** Kill what remains (SIGKILL to the tree), reap, free. Never waits long
 *  on the system. NULL accepted. */
ATX_API void atx_proc_free(atx_proc *p);

#ifdef __cplusplus
}
#endif
#endif
