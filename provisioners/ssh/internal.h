/*
 * ssh provisioner: what its files share. Private to provisioners/ssh.
 *
 * Locks: ssh_prov.mu guards the host table's mutable fields (slots in use,
 * quarantine, refusal). lease.mu guards everything libssh of that lease's
 * session: libssh is safe only when one thread at a time uses a session, and
 * a lease's session is used by the worker thread that holds the system (spawn,
 * copies, alive, process waits) and by the lease's pump thread.
 */
#ifndef ATX_SSH_INTERNAL_H
#define ATX_SSH_INTERNAL_H

#include <atx/plugin/provisioner.h>

#include "command.h" /* the probe command and the labels it yields */

#include <libssh/libssh.h>
#include <libssh/sftp.h>
#include <pthread.h>
#include <stdbool.h>

typedef struct ssh_prov ssh_prov;
typedef struct rproc rproc;

typedef struct host {
    char name[64];
    char *address;
    char *user;              /* NULL: the local user name */
    char *identity;          /* NULL: ssh-agent and the default keys */
    char *reboot_command;    /* NULL: `reboot` */
    unsigned port;
    int slots;
    atx_labels *conf;        /* the pool file's labels */
    atx_labels *labels;      /* the offer: facts, provider, host, conf */
    atx_labels *facts;       /* from the probe; NULL until one succeeded */
    /* under ssh_prov.mu */
    int busy;                /* slots leased */
    unsigned leases;         /* ids: NAME-1, NAME-2, ... */
    int failures;            /* consecutive troubles: the backoff grows */
    bool quarantined;        /* not leased until the doctor sees it answer */
    int64_t until;           /* the doctor's next look (monotonic ns) */
    bool checking;           /* the doctor is looking now */
    bool refused;            /* its host key was refused: never used again */
    char *stale;             /* work folders of lost leases, quoted for sh */
    char why[600];           /* the last trouble, or the refusal */
} host;

struct ssh_prov {
    atx_plugin_ctx *ctx;
    pthread_mutex_t mu;
    host *hosts;
    size_t nhosts;
    int capacity;
    char *pool;              /* the pool file, absolute */
    char *known_hosts;       /* absolute */
    bool insecure;           /* insecure_skip_host_key_check */
    int64_t connect_timeout_ns;
    int64_t backoff_ns;      /* the first quarantine; it doubles, up to 5 min */
    int64_t keepalive_ns;    /* an SSH packet this often on quiet sessions (0: none) */
    int released_fd;         /* eventfd: a slot came free or a host changed */
    /* the doctor: a thread that looks at quarantined hosts when their
     * backoff ends, so that a dead host costs its connect timeout there and
     * never in a reserve */
    pthread_t doctor;
    pthread_cond_t doctor_cv;  /* with mu */
    bool doctor_running, stopping;
    unsigned verdicts;         /* looks the doctor finished */
};

/* A leased system: one SSH session. */
typedef struct lease {
    ssh_prov *prov;
    host *h;
    char id[96];
    char workdir[512];
    pthread_mutex_t mu;      /* the session and all below */
    ssh_session s;
    ssh_event ev;            /* the pump's way to take in packets */
    sftp_session sftp;       /* made on the first copy */
    rproc *procs;
    int wake_fd;             /* eventfd: the pump looks again */
    pthread_t pump;
    bool pump_running, stopping;
    int64_t keepalive_at;    /* the next keepalive packet (monotonic ns) */
    bool lost;               /* the connection broke */
    char lost_why[300];
} lease;

/* ---- session.c ---- */

/**
 * Connect to @p h within @p timeout_ns, verify its host key and log in.
 * @return 0 with *out set; ATX_EINFRA with the detail set. *refused is set
 *         when the host key was unknown or changed (the detail is the
 *         one-sentence refusal naming the host and the key's fingerprint).
 */
int sshp_connect(ssh_prov *p, host *h, int64_t timeout_ns, ssh_session *out, bool *refused);
/**
 * Whether @p h takes a TCP connection and greets with an SSH banner within
 * @p timeout_ns; @p stop (may be NULL) is asked every 100 ms whether to give
 * up. Unlike sshp_connect(), it can be abandoned at once.
 * @return 0; ATX_EINFRA with the detail; ATX_ECANCELLED when stopped.
 */
int sshp_reachable(const host *h, int64_t timeout_ns, bool (*stop)(void *), void *ud);
/** Disconnect and free; NULL accepted. */
void sshp_disconnect(ssh_session s);
/**
 * Run a shell command line on @p s and wait for it (the caller holds the
 * session's lock, if it has one). Collects at most @p outlen - 1 bytes of
 * stdout into @p out (NUL-terminated), may be NULL.
 * @return 0 with *code set (-1 if it ended without a status), ATX_ELOST or
 *         ATX_ETIMEDOUT with detail.
 */
int sshp_run(ssh_session s, const char *host_name, const char *cmd, int64_t timeout_ns,
             char *out, size_t outlen, int *code);
/**
 * Wait until the connection of @p s closes (the host went down), taking in
 * what it sends meanwhile and sending an SSH_MSG_IGNORE every second, so a
 * host that vanished without a word fails a write.
 * @return 0 once closed; ATX_ETIMEDOUT at @p until; ATX_ECANCELLED when
 *         @p cancel_fd (may be -1) polls readable.
 */
int sshp_wait_closed(ssh_session s, int64_t until, int cancel_fd);
/** Quote @p s for a POSIX shell ('...'), appending to @p buf. -1 if it does not fit. */
int sshp_quote(char *buf, size_t len, size_t *pos, const char *s);

/* ---- proc.c ---- */

/** Start the lease's pump thread (after connect). */
int sshp_pump_start(lease *l);
/** Stop the pump and close what processes remain. */
void sshp_pump_stop(lease *l);
/** atx_system_ops.spawn */
int sshp_spawn(void *impl, const atx_spawn_opts *opts, atx_proc **out);
/** Mark the lease lost (under l->mu): every process ends, wait fds fire. */
void sshp_lose(lease *l, const char *why);
/** Wake the pump (any thread). */
void sshp_wake(lease *l);

/* ---- copy.c ---- */

/** atx_system_ops.copy_in: one file (the agent). */
int sshp_copy_in(void *impl, const char *local, const char *remote);
/** Free the SFTP session (under l->mu). */
void sshp_sftp_close(lease *l);

#endif
