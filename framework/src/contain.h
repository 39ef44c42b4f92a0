/*
 * Containment of process trees on Linux, shared by libatx (tests on this
 * host) and atx-agent (tests on every other system). libc only, no atx
 * headers: the agent is a small static program.
 *
 * Two means, used together where both exist:
 *  - cgroup v2 groups: a test's processes are in a group of their own, which
 *    cgroup.kill empties whatever they did (setsid, double forks). A child
 *    joins its group between fork and exec (cg_join), so nothing it starts
 *    is ever outside it.
 *  - the process tree: every descendant of a process, found through
 *    /proc/PID/task/TID/children, signalled from the top down, so a child
 *    forked meanwhile is found on the next pass. A test's leader is made a
 *    child subreaper (prctl), so orphans of its tree stay under it while it
 *    lives, and come back to whoever started it when it ends.
 *
 * Functions return 0 or -errno. Not thread-safe per object; the pool that
 * libatx keeps of groups has its own lock.
 */
#ifndef ATX_CONTAIN_H
#define ATX_CONTAIN_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/** A folder of groups: <cgroup2 mount><own cgroup>/<name>. */
typedef struct cg_root {
    char path[PATH_MAX];
} cg_root;

/** One group, ready for processes to join. */
typedef struct cg_group {
    char path[PATH_MAX];
    int procs_fd;    /* cgroup.procs, open for writing: a child writes "0" to join */
    int events_fd;   /* cgroup.events: "populated 0|1" */
} cg_group;

/**
 * Make the folder @p name under this process's own cgroup v2 group.
 * @return 0, or -errno when cgroup v2 is not mounted or not writable here
 *         (then containment falls back to the process tree).
 */
int cg_root_open(cg_root *root, const char *name);
/**
 * The folder @p name under the cgroup v2 group of process @p pid; made when
 * @p create (then as cg_root_open()), else it must exist.
 */
int cg_root_at(cg_root *root, pid_t pid, const char *name, bool create);
/** Kill whatever is in the folder's groups and remove them all. */
void cg_root_remove(cg_root *root);
/**
 * Remove folders next to @p root named "<prefix><pid>-<start time>" whose
 * owner process is gone (a run that was killed), killing what is left in
 * them. The owner's start time tells a reused pid apart.
 */
void cg_root_reap_stale(const cg_root *root, const char *prefix);
/** "<pid>-<start time>" of this process, for names reap_stale understands. */
void cg_owner_tag(char *buf, size_t len);

/** Make (or reuse, if it exists and is empty) the group @p leaf in @p root. */
int cg_group_open(const cg_root *root, const char *leaf, cg_group *g);
/** Whether any process is in the group (1, 0, or -errno). */
int cg_group_populated(const cg_group *g);
/** Send @p sig to every process in the group (SIGKILL: cgroup.kill). */
int cg_group_signal(const cg_group *g, int sig);
/**
 * Wait up to @p timeout_ms until the group is empty.
 * @return 0 when empty, -ETIMEDOUT otherwise.
 */
int cg_group_wait_empty(const cg_group *g, int timeout_ms);
/** Kill what is in the group, wait up to @p timeout_ms for it to empty. 0 if it did. */
int cg_group_empty(const cg_group *g, int timeout_ms);
/** Close the group's fds and remove it (it must be empty). */
void cg_group_close(cg_group *g, bool remove);

/**
 * In a child between fork and exec (async-signal-safe): join the group
 * whose cgroup.procs is open as @p procs_fd.
 */
static inline int cg_join(int procs_fd);

/**
 * Signal every descendant of @p root (not @p root itself), from the top
 * down, over and over until a pass finds none that was not signalled
 * already (at most a few passes: a process killed cannot fork again).
 * @p skip (may be NULL) is asked for each pid whether to leave it alone.
 * @return how many processes were signalled.
 */
int tree_signal(pid_t root, int sig, bool (*skip)(pid_t pid, void *ud), void *ud);
/**
 * Kill @p root and every descendant (stopped first, so none forks away),
 * then wait up to @p timeout_ms until they are all gone (or zombies).
 * @return 0, or -ETIMEDOUT.
 */
int tree_kill_wait(pid_t root, int timeout_ms);
/**
 * The children of process @p pid (of all its threads), up to @p max.
 * @return how many, or -errno.
 */
int proc_children(pid_t pid, pid_t *out, int max);
/** The start time of a process (field 22 of /proc/PID/stat), or 0 if gone. */
unsigned long long proc_start_time(pid_t pid);

#include <unistd.h>
#include <errno.h>

static inline int cg_join(int procs_fd)
{
    return write(procs_fd, "0", 1) == 1 ? 0 : -errno;
}

#endif
