/* Containment of process trees: cgroup v2 groups and /proc tree walks. */
#define _GNU_SOURCE 1
#include "contain.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Read a small file whole (NUL-terminated). Bytes read, or -errno. */
static ssize_t read_file(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t got = 0;

    if (fd < 0)
        return -errno;
    while (got + 1 < len) {
        ssize_t n = read(fd, buf + got, len - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    return (ssize_t)got;
}

/* Read a file whole, however long (a /proc list may be), NUL-terminated;
 * malloc'ed. NULL if it cannot be read. */
static char *read_all(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t len = 0, cap = 4096;
    char *buf = fd < 0 ? NULL : malloc(cap);

    if (!buf) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    for (;;) {
        if (len + 1 >= cap) {
            char *b = realloc(buf, cap * 2);
            if (!b)
                break;
            buf = b;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return buf;
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    int r = 0;

    if (fd < 0)
        return -errno;
    if (write(fd, text, strlen(text)) < 0)
        r = -errno;
    close(fd);
    return r;
}

/* ---- processes ---- */

unsigned long long proc_start_time(pid_t pid)
{
    char path[64], buf[1024];

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (read_file(path, buf, sizeof(buf)) <= 0)
        return 0;
    /* The command name may hold spaces and parentheses: count from the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    p++;
    for (int field = 3; field < 22; field++) {
        p += strspn(p, " ");
        p += strcspn(p, " ");
    }
    return strtoull(p, NULL, 10);
}

void cg_owner_tag(char *buf, size_t len)
{
    snprintf(buf, len, "%d-%llu", (int)getpid(), proc_start_time(getpid()));
}

int proc_children(pid_t pid, pid_t *out, int max)
{
    char path[64];
    int n = 0;

    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -errno;
    struct dirent *de;
    while ((de = readdir(d))) {
        char file[128], *buf;
        if (de->d_name[0] == '.')
            continue;
        snprintf(file, sizeof(file), "/proc/%d/task/%s/children", (int)pid, de->d_name);
        if (!(buf = read_all(file)))
            continue;
        for (char *s = buf; *s;) {
            char *end;
            long v = strtol(s, &end, 10);
            if (end == s)
                break;
            if (v > 0 && n < max)
                out[n++] = (pid_t)v;
            s = end;
        }
        free(buf);
    }
    closedir(d);
    return n;
}

typedef struct pidset {
    pid_t *v;
    size_t n, cap;
} pidset;

static bool pidset_has(const pidset *s, pid_t p)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i] == p)
            return true;
    return false;
}

static void pidset_add(pidset *s, pid_t p)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        pid_t *v = realloc(s->v, cap * sizeof(*v));
        if (!v)
            return;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = p;
}

/* One pass over the tree under root: signal what was not signalled yet. */
static int tree_pass(pid_t root, int sig, pidset *done, bool (*skip)(pid_t, void *), void *ud)
{
    pidset todo = { 0 };
    pid_t kids[512];
    int fresh = 0;

    pidset_add(&todo, root);
    for (size_t i = 0; i < todo.n && i < 100000; i++) {
        int k = proc_children(todo.v[i], kids, (int)(sizeof(kids) / sizeof(kids[0])));
        for (int j = 0; j < k; j++) {
            if (skip && skip(kids[j], ud))
                continue;
            if (!pidset_has(done, kids[j])) {
                kill(kids[j], sig);
                pidset_add(done, kids[j]);
                fresh++;
            }
            pidset_add(&todo, kids[j]);
        }
    }
    free(todo.v);
    return fresh;
}

/* Whether a process is gone or a zombie. */
static bool dead(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (read_file(path, buf, sizeof(buf)) <= 0)
        return true;
    char *rp = strrchr(buf, ')');
    return !rp || rp[1] != ' ' || rp[2] == 'Z' || rp[2] == 'X';
}

int tree_kill_wait(pid_t root, int timeout_ms)
{
    pidset done = { 0 };
    struct timespec step = { 0, 5 * 1000 * 1000 };

    kill(root, SIGSTOP);
    for (int pass = 0; pass < 16 && tree_pass(root, SIGSTOP, &done, NULL, NULL) > 0; pass++)
        ;
    for (size_t i = 0; i < done.n; i++)
        kill(done.v[i], SIGKILL);
    kill(root, SIGKILL);
    int left = 0;
    for (int waited = 0; waited <= timeout_ms; waited += 5) {
        left = dead(root) ? 0 : 1;
        for (size_t i = 0; i < done.n; i++)
            left += !dead(done.v[i]);
        if (!left)
            break;
        nanosleep(&step, NULL);
    }
    free(done.v);
    return left ? -ETIMEDOUT : 0;
}

int tree_signal(pid_t root, int sig, bool (*skip)(pid_t pid, void *ud), void *ud)
{
    pidset done = { 0 };
    int total = 0, fresh;

    if (sig == SIGKILL) {
        /* Stopped processes neither fork nor leave their children to be
         * reparented out of reach while the tree is read. */
        for (int pass = 0; pass < 16 && tree_pass(root, SIGSTOP, &done, skip, ud) > 0; pass++)
            ;
        for (size_t i = 0; i < done.n; i++)
            kill(done.v[i], SIGKILL);
        total = (int)done.n;
        free(done.v);
        return total;
    }
    for (int pass = 0; pass < 16 && (fresh = tree_pass(root, sig, &done, skip, ud)) > 0; pass++)
        total += fresh;
    free(done.v);
    return total;
}

/* ---- cgroup v2 ---- */

/* Where cgroup2 is mounted, and the root of the hierarchy it shows. */
static int cgroup2_mount(char *mnt, size_t mlen, char *mroot, size_t rlen)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char line[4096];
    int r = -ENOENT;

    if (!f)
        return -errno;
    while (fgets(line, sizeof(line), f)) {
        /* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER */
        char *dash = strstr(line, " - ");
        char root[PATH_MAX], point[PATH_MAX], type[64];
        if (!dash || sscanf(dash + 3, "%63s", type) != 1 || strcmp(type, "cgroup2") != 0)
            continue;
        if (sscanf(line, "%*s %*s %*s %4095s %4095s", root, point) != 2)
            continue;
        snprintf(mnt, mlen, "%s", point);
        snprintf(mroot, rlen, "%s", root);
        r = 0;
        break;
    }
    fclose(f);
    return r;
}

int cg_root_at(cg_root *root, pid_t pid, const char *name, bool create)
{
    char mnt[PATH_MAX], mroot[PATH_MAX], buf[8192], own[PATH_MAX] = "", file[64];
    int r;

    if ((r = cgroup2_mount(mnt, sizeof(mnt), mroot, sizeof(mroot))) < 0)
        return r;
    snprintf(file, sizeof(file), "/proc/%d/cgroup", (int)pid);
    if (read_file(file, buf, sizeof(buf)) <= 0)
        return -ENOENT;
    for (char *l = buf; *l;) {
        char *nl = strchr(l, '\n');
        if (nl)
            *nl = '\0';
        if (strncmp(l, "0::", 3) == 0)
            snprintf(own, sizeof(own), "%s", l + 3);
        if (!nl)
            break;
        l = nl + 1;
    }
    if (!*own)
        return -ENOENT;
    /* A mount of part of the hierarchy shows paths below its root. */
    size_t rl = strlen(mroot);
    const char *rel = own;
    if (strcmp(mroot, "/") != 0 && strncmp(own, mroot, rl) == 0)
        rel = own + rl;
    if (strcmp(rel, "/") == 0)
        rel = "";
    if (snprintf(root->path, sizeof(root->path), "%s%s/%s", mnt, rel, name) >=
        (int)sizeof(root->path))
        return -ENAMETOOLONG;
    if (!create) {
        struct stat st;
        return stat(root->path, &st) == 0 ? 0 : -errno;
    }
    if (mkdir(root->path, 0755) < 0 && errno != EEXIST)
        return -errno;
    /* cgroup.kill (Linux 5.14) is what makes a group worth having. */
    char kill_file[PATH_MAX + 16];
    snprintf(kill_file, sizeof(kill_file), "%s/cgroup.kill", root->path);
    if (access(kill_file, W_OK) < 0) {
        r = -errno;
        rmdir(root->path);
        return r;
    }
    return 0;
}

int cg_root_open(cg_root *root, const char *name)
{
    return cg_root_at(root, getpid(), name, true);
}

static void remove_groups(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;

    if (!d)
        return;
    while ((de = readdir(d))) {
        char sub[PATH_MAX + 256];
        if (de->d_type != DT_DIR || de->d_name[0] == '.')
            continue;
        snprintf(sub, sizeof(sub), "%s/%s", dir, de->d_name);
        remove_groups(sub);
    }
    closedir(d);
    char kill_file[PATH_MAX + 16];
    snprintf(kill_file, sizeof(kill_file), "%s/cgroup.kill", dir);
    write_file(kill_file, "1");
    /* A group empties a moment after the kill. */
    for (int i = 0; i < 100 && rmdir(dir) < 0 && errno == EBUSY; i++) {
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
}

void cg_root_remove(cg_root *root)
{
    if (root->path[0])
        remove_groups(root->path);
    root->path[0] = '\0';
}

void cg_root_reap_stale(const cg_root *root, const char *prefix)
{
    char parent[PATH_MAX];
    size_t plen = strlen(prefix);

    snprintf(parent, sizeof(parent), "%s", root->path);
    char *slash = strrchr(parent, '/');
    if (!slash)
        return;
    *slash = '\0';
    DIR *d = opendir(parent);
    struct dirent *de;
    if (!d)
        return;
    while ((de = readdir(d))) {
        int pid;
        unsigned long long start;
        char dir[PATH_MAX + 256];
        if (de->d_type != DT_DIR || strncmp(de->d_name, prefix, plen) != 0 ||
            sscanf(de->d_name + plen, "%d-%llu", &pid, &start) != 2)
            continue;
        snprintf(dir, sizeof(dir), "%s/%s", parent, de->d_name);
        if (strcmp(dir, root->path) == 0 || (start && proc_start_time(pid) == start))
            continue; /* ours, or its owner is still there */
        remove_groups(dir);
    }
    closedir(d);
}

int cg_group_open(const cg_root *root, const char *leaf, cg_group *g)
{
    char file[PATH_MAX + 32];
    int r;

    g->procs_fd = g->events_fd = -1;
    if (snprintf(g->path, sizeof(g->path), "%s/%s", root->path, leaf) >= (int)sizeof(g->path))
        return -ENAMETOOLONG;
    if (mkdir(g->path, 0755) < 0 && errno != EEXIST)
        return -errno;
    snprintf(file, sizeof(file), "%s/cgroup.procs", g->path);
    g->procs_fd = open(file, O_WRONLY | O_CLOEXEC);
    snprintf(file, sizeof(file), "%s/cgroup.events", g->path);
    g->events_fd = open(file, O_RDONLY | O_CLOEXEC);
    if (g->procs_fd < 0 || g->events_fd < 0) {
        r = -errno;
        cg_group_close(g, true);
        return r;
    }
    return 0;
}

int cg_group_populated(const cg_group *g)
{
    char buf[256];
    ssize_t n = pread(g->events_fd, buf, sizeof(buf) - 1, 0);

    if (n < 0)
        return -errno;
    buf[n] = '\0';
    const char *p = strstr(buf, "populated ");
    return p && p[10] == '1';
}

int cg_group_signal(const cg_group *g, int sig)
{
    char file[PATH_MAX + 32], *buf;

    if (sig == SIGKILL) {
        snprintf(file, sizeof(file), "%s/cgroup.kill", g->path);
        if (write_file(file, "1") == 0)
            return 0;
    }
    snprintf(file, sizeof(file), "%s/cgroup.procs", g->path);
    if (!(buf = read_all(file)))
        return -errno;
    for (char *s = buf; *s;) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s)
            break;
        if (v > 0)
            kill((pid_t)v, sig);
        s = end;
    }
    free(buf);
    return 0;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int cg_group_wait_empty(const cg_group *g, int timeout_ms)
{
    int64_t until = mono_ms() + timeout_ms;

    for (;;) {
        int p = cg_group_populated(g);
        if (p <= 0)
            return p;
        int64_t left = until - mono_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        /* cgroup.events signals a change with POLLPRI; the cap guards a
         * change that came between the read and the poll. */
        struct pollfd pfd = { .fd = g->events_fd, .events = POLLPRI };
        poll(&pfd, 1, left < 50 ? (int)left : 50);
    }
}

int cg_group_empty(const cg_group *g, int timeout_ms)
{
    int p = cg_group_populated(g);

    if (p == 0)
        return 0;
    cg_group_signal(g, SIGKILL);
    return cg_group_wait_empty(g, timeout_ms);
}

void cg_group_close(cg_group *g, bool remove)
{
    if (g->procs_fd >= 0)
        close(g->procs_fd);
    if (g->events_fd >= 0)
        close(g->events_fd);
    g->procs_fd = g->events_fd = -1;
    if (remove && g->path[0])
        rmdir(g->path);
}
