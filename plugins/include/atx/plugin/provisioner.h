/*
 * atx provisioner plugins (plugin tier).
 *
 * A provisioner hands out systems. The orchestrator calls create, start,
 * then reserve from a thread of the provisioner's own (so a slow reserve
 * never stalls the scheduler), release for each system it is done with, and
 * stop and destroy at the end. capacity and the offers (label sets it can
 * provide) are read after start, to report at once a test that no system can
 * ever satisfy.
 *
 * A provisioner makes its systems with atx_system_new(), giving the system
 * operations below; processes on them are atx_proc handles made with
 * atx_proc_new() (or atx_spawn_local() on this host).
 *
 * A provisioner only bootstraps its systems: libatx copies atx-agent into
 * the system's work directory with copy_in (unless the system shares this
 * host's files), starts it once per lease with spawn (stdin and stdout
 * pipes: its byte stream), and from then on every process, copy and
 * liveness ping on the system goes through that agent, for every executor
 * and for the lifecycle commands. A system whose own spawn already contains
 * every process a test starts (ATX_SYSTEM_CONTAINED: the local provisioner's
 * slots, with cgroups) is used directly instead.
 */
#ifndef ATX_PLUGIN_PROVISIONER_H
#define ATX_PLUGIN_PROVISIONER_H

#include "atx/labels.h"
#include "atx/plugin/abi.h"
#include "atx/system.h"

#ifdef __cplusplus
extern "C" {
#endif

/** atx_provisioner_vtable.release flags. */
enum atx_release_flags {
    ATX_RELEASE_DIRTY = 1u << 0,  /**< destructive test ran: do not reuse */
    ATX_RELEASE_BROKEN = 1u << 1, /**< infrastructure trouble: quarantine */
    /** It stopped answering (or the run gave up on it in a hurry): free
     *  what is here without waiting on the system (no commands run on it). */
    ATX_RELEASE_LOST = 1u << 2
};

#define ATX_RESERVE_REQ_VERSION 1
/** What the orchestrator asks of a reserve. */
typedef struct atx_reserve_req {
    unsigned version;      /**< ATX_RESERVE_REQ_VERSION */
    int64_t deadline_ns;   /**< monotonic; give up after it */
    /**
     * Whether a system with @p labels would serve a waiting test. A
     * provisioner with several kinds of systems leases one that is wanted.
     */
    int (*want)(void *userdata, const atx_labels *labels);
    void *userdata;
    int cancel_fd;         /**< polls readable when the run stops: give up */
} atx_reserve_req;

#define ATX_PROVISIONER_VTABLE_VERSION 3
typedef struct atx_provisioner_vtable {
    unsigned version;  /**< ATX_PROVISIONER_VTABLE_VERSION when built */
    /** Required. Validate the configuration and make an instance. */
    int (*create)(atx_plugin_ctx *ctx, void **state);
    /** Required. Free the instance (after stop). */
    void (*destroy)(void *state);
    /** Optional. Prepare to hand out systems. */
    int (*start)(void *state);
    /** Optional. Give back everything; always called after a start. */
    int (*stop)(void *state);
    /** Required. How many systems may be leased at once (>= 1). */
    int (*capacity)(void *state);
    /** Required. How many label sets the provisioner can offer. */
    size_t (*offer_count)(void *state);
    /** Required. The i-th label set it can offer (borrowed). */
    const atx_labels *(*offer)(void *state, size_t i);
    /**
     * Required. Lease one system that @p req wants, waiting at most until
     * req->deadline_ns. Called from the provisioner's own thread.
     * @return 0 with *out set; ATX_ETIMEDOUT; ATX_ENOTFOUND when none of its
     *         systems is wanted; ATX_EINFRA (detail says why).
     */
    int (*reserve)(void *state, const struct atx_reserve_req *req, atx_system **out);
    /**
     * Required. Take a system back and free its handle
     * (atx_system_free()); @p flags: enum atx_release_flags. Called from the
     * worker thread that held it.
     */
    void (*release)(void *state, atx_system *sys, unsigned flags);
    /**
     * Version 2, optional: how many reserves may run at once, each from a
     * thread of its own (1 to 64; read once, after start). Without it, or
     * with a version 1 plugin, one at a time. A provisioner whose lease is
     * a slow request to a service (a cluster's scheduler) says more than
     * one, and its reserve must then be safe to call concurrently.
     */
    int (*reserve_parallel)(void *state);
    /**
     * Version 3, optional: reboot a leased system (see atx_reboot_req) and
     * wait until it is back as leased: it answers, its work directory is
     * there (made again if the reboot took it). libatx has stopped the
     * system's agent before and starts it again after. Called from the
     * worker thread that holds the system. Without it (or with an older
     * plugin) a reboot is refused and the test's attempt ends `infra`.
     * @return 0 when back; ATX_ETIMEDOUT when not back by the deadline;
     *         ATX_ECANCELLED; ATX_EINFRA (the detail says why).
     */
    int (*reboot)(void *state, atx_system *sys, const atx_reboot_req *req);
} atx_provisioner_vtable;

/* ---- systems ---- */

/** atx_system_ops.flags (version 2). */
enum atx_system_flags {
    /** The system sees this host's files at the same paths (the local
     *  provisioner): nothing needs uploading, host paths work there. */
    ATX_SYSTEM_HOST_FS = 1u << 0,
    /** Its spawn contains what a test starts (ATX_SPAWN_CONTAIN semantics,
     *  deadlines enforced, kills reach every descendant): libatx uses the
     *  operations directly and starts no agent on it. */
    ATX_SYSTEM_CONTAINED = 1u << 1
};

#define ATX_SYSTEM_OPS_VERSION 3
/** What a provisioner implements for each of its systems. */
typedef struct atx_system_ops {
    unsigned version;  /**< ATX_SYSTEM_OPS_VERSION */
    /** Required. Start a process (see atx_system_spawn()): the agent, with
     *  stdin and stdout pipes, and `atx-agent --reap PID` for an agent that
     *  stopped answering. */
    int (*spawn)(void *impl, const atx_spawn_opts *opts, atx_proc **out);
    /** Copy a file here to the system (the agent program). Required unless
     *  the system shares this host's files. */
    int (*copy_in)(void *impl, const char *local, const char *remote);
    /** Optional; used only on ATX_SYSTEM_CONTAINED systems (else the agent copies). */
    int (*copy_out)(void *impl, const char *remote, const char *local);
    /** Optional; used only on ATX_SYSTEM_CONTAINED systems (else the agent answers pings). */
    int (*alive)(void *impl, int64_t timeout_ns);
    /** Version 2: enum atx_system_flags. */
    unsigned flags;
    /** Version 3, optional: copy_out within bounds (see
     *  atx_system_copy_out_bounded(); atx_copy_taken_bounded() for files on
     *  this host). Without it a folder copied by copy_out is not bounded. */
    int (*copy_out_bounded)(void *impl, const char *remote, const char *local,
                            const atx_copy_bounds *bounds);
} atx_system_ops;

/**
 * Make a system handle. @p ops and @p impl are borrowed and must outlive the
 * handle; @p id, @p labels and @p workdir are copied.
 */
ATX_API int atx_system_new(const atx_system_ops *ops, void *impl, const char *id,
                           const atx_labels *labels, const char *workdir,
                           atx_system **out);
/** Free a system handle (not its impl); NULL accepted. */
ATX_API void atx_system_free(atx_system *sys);
/** The impl given to atx_system_new(). */
ATX_API void *atx_system_impl(const atx_system *sys);
/** Mark whether the system has run anything (the orchestrator does this). */
ATX_API void atx_system_set_fresh(atx_system *sys, int fresh);

#define ATX_AGENT_OPTS_VERSION 1
/** How atx_system_start_agent() starts and watches a system's agent. */
typedef struct atx_agent_opts {
    unsigned version;              /**< ATX_AGENT_OPTS_VERSION */
    int64_t deadline_ns;           /**< monotonic: give up then; 0: in 60 s */
    int64_t liveness_interval_ns;  /**< a ping this often; 0: 5 s */
    int64_t liveness_timeout_ns;   /**< lost when an answer is this late; 0: 30 s */
} atx_agent_opts;
#define ATX_AGENT_OPTS_INIT { ATX_AGENT_OPTS_VERSION, 0, 0, 0 }

/**
 * Start the system's agent (copied into its work directory first unless it
 * shares this host's files): from now on every process, copy and ping on it
 * goes through the agent, which contains what tests start and enforces their
 * deadlines. The orchestrator does this for every lease of a system that is
 * not ATX_SYSTEM_CONTAINED; a driver that reserves systems itself may.
 * @return 0, or ATX_EINFRA / ATX_ENOTFOUND with the detail.
 */
ATX_API int atx_system_start_agent(atx_system *sys, const atx_agent_opts *opts);

/* ---- processes ---- */

#define ATX_PROC_OPS_VERSION 3
typedef struct atx_proc_ops {
    unsigned version;  /**< ATX_PROC_OPS_VERSION */
    int (*wait)(void *impl, int64_t timeout_ns, atx_exit *ex);
    int (*kill_tree)(void *impl, int sig, int64_t grace_ns);
    /** Kill what remains, reap, free impl. */
    void (*free)(void *impl);
    /** Version 2, optional: see atx_proc_set_deadline(). */
    int (*set_deadline)(void *impl, int64_t deadline_ns);
    /** Version 3, optional: see atx_proc_close_control(). Without it the
     *  handle's end of the channel is closed, which is enough for a pipe to
     *  a process on this host. */
    void (*close_control)(void *impl);
} atx_proc_ops;

/**
 * Make a process handle over an implementation. The fds (or -1) are owned
 * by the handle and closed by atx_proc_free(); @p wait_fd is owned by impl.
 */
ATX_API int atx_proc_new(const atx_proc_ops *ops, void *impl, int stdin_fd,
                         int stdout_fd, int stderr_fd, int wait_fd, atx_proc **out);

/**
 * Start a process on this host: argv, the environment and the program's
 * candidate paths are built before the child is created, the child gets its
 * own session and process group, every other fd is closed in it, and a failed
 * exec is reported as ATX_ESPAWN with the program and errno in the detail.
 * With ATX_SPAWN_CONTAIN the child joins a cgroup of its own before exec;
 * ATX_EUNSUPPORTED if this host does not allow it. Safe to call from any
 * thread.
 */
ATX_API int atx_spawn_local(const atx_spawn_opts *opts, atx_proc **out);
/**
 * Whether ATX_SPAWN_CONTAIN works on this host (cgroup v2 mounted and its
 * group of this process writable, cgroup.kill there: Linux 5.14).
 * @return 1, or 0 with the reason in atx_error_last().
 */
ATX_API int atx_spawn_can_contain(void);

#ifdef __cplusplus
}
#endif
#endif
