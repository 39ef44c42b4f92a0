/*
 * ssh provisioner: copying files and trees in and out over SFTP.
 *
 * The destination is the path itself (not a folder to copy into): a tree
 * copied onto an existing folder updates it in place. Modes and modification
 * times are kept, and a regular file whose size and modification time
 * already match on the other side is not sent again. Each SFTP call holds the
 * lease's lock only for itself, so the pump keeps running processes fed.
 */
#define _GNU_SOURCE 1
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define CHUNK 32768 /* every SFTP server takes writes this large */

static const char *sftp_text(int code)
{
    switch (code) {
    case SSH_FX_EOF: return "end of file";
    case SSH_FX_NO_SUCH_FILE: return "no such file";
    case SSH_FX_PERMISSION_DENIED: return "permission denied";
    case SSH_FX_FAILURE: return "failure";
    case SSH_FX_BAD_MESSAGE: return "bad message";
    case SSH_FX_NO_CONNECTION: return "no connection";
    case SSH_FX_CONNECTION_LOST: return "connection lost";
    case SSH_FX_OP_UNSUPPORTED: return "not supported";
    case SSH_FX_FILE_ALREADY_EXISTS: return "file exists";
    default: return "error";
    }
}

static void lock(lease *l)
{
    pthread_mutex_lock(&l->mu);
}

static void unlock(lease *l)
{
    pthread_mutex_unlock(&l->mu);
    sshp_wake(l);
}

/* An SFTP call failed (under l->mu): the connection broke, or the call did. */
static int failed(lease *l, const char *what, const char *path)
{
    if (!ssh_is_connected(l->s) || (ssh_get_status(l->s) & (SSH_CLOSED | SSH_CLOSED_ERROR))) {
        sshp_lose(l, ssh_get_error(l->s));
        return atx_error_set(ATX_ELOST, "ssh: the connection to %s broke: %s", l->id,
                             l->lost_why);
    }
    int code = l->sftp ? sftp_get_error(l->sftp) : -1;
    return atx_error_set(ATX_EIO, "ssh: cannot %s %s on %s: %s", what, path, l->id,
                         code >= 0 ? sftp_text(code) : ssh_get_error(l->s));
}

/* Under l->mu. */
static int ensure_sftp(lease *l)
{
    if (l->lost)
        return atx_error_set(ATX_ELOST, "ssh: the connection to %s broke: %s", l->id,
                             l->lost_why);
    if (l->sftp)
        return 0;
    if (!(l->sftp = sftp_new(l->s)))
        return failed(l, "start SFTP for", "copies");
    if (sftp_init(l->sftp) != SSH_OK) {
        int r = failed(l, "start SFTP (is 'Subsystem sftp' in sshd_config?) for", "copies");
        sftp_free(l->sftp);
        l->sftp = NULL;
        return r;
    }
    return 0;
}

void sshp_sftp_close(lease *l)
{
    if (l->sftp)
        sftp_free(l->sftp);
    l->sftp = NULL;
}

static int start(lease *l)
{
    lock(l);
    int r = ensure_sftp(l);
    unlock(l);
    return r;
}

static char *remote_path(const lease *l, const char *path)
{
    char *p = NULL;
    if (path[0] == '/')
        return strdup(path);
    if (asprintf(&p, "%s/%s", l->workdir, path) < 0)
        return NULL;
    return p;
}

static char *join(const char *dir, const char *name)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s", dir, name) < 0)
        return NULL;
    return p;
}

static int oom(void)
{
    return atx_error_set(ATX_ENOMEM, "out of memory");
}

/* ---- in ---- */

/* Make the remote folders above @p path (mkdir -p of its parent). */
static int remote_parents(lease *l, const char *path)
{
    char *copy = strdup(path);
    int r = 0;

    if (!copy)
        return oom();
    for (char *p = copy + 1; *p && r == 0; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        lock(l);
        sftp_attributes a = sftp_stat(l->sftp, copy);
        if (a) {
            sftp_attributes_free(a);
        } else if (sftp_mkdir(l->sftp, copy, 0755) < 0) {
            r = failed(l, "create the folder", copy);
        }
        unlock(l);
        *p = '/';
    }
    free(copy);
    return r;
}

static int set_times(lease *l, const char *rpath, const struct stat *st)
{
    struct timeval tv[2] = { { st->st_atime, 0 }, { st->st_mtime, 0 } };
    lock(l);
    int r = sftp_utimes(l->sftp, rpath, tv) < 0 ? failed(l, "set the times of", rpath) : 0;
    unlock(l);
    return r;
}

static int put_file(lease *l, const char *local, const char *rpath, const struct stat *st)
{
    char *buf = malloc(CHUNK);
    int fd = open(local, O_RDONLY | O_CLOEXEC);
    sftp_file f = NULL;
    int r = 0;

    if (!buf || fd < 0) {
        r = fd < 0 ? atx_error_set(-errno, "cannot read %s: %s", local, strerror(errno)) : oom();
        goto out;
    }
    lock(l);
    f = sftp_open(l->sftp, rpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (!f) {
        /* A read-only file in the way: replace it. */
        sftp_unlink(l->sftp, rpath);
        f = sftp_open(l->sftp, rpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    }
    if (!f)
        r = failed(l, "create", rpath);
    unlock(l);
    while (r == 0) {
        ssize_t n = read(fd, buf, CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = atx_error_set(-errno, "cannot read %s: %s", local, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        lock(l);
        if (sftp_write(f, buf, (size_t)n) != n)
            r = failed(l, "write", rpath);
        unlock(l);
    }
    lock(l);
    if (f && sftp_close(f) < 0 && r == 0)
        r = failed(l, "write", rpath);
    if (r == 0 && sftp_chmod(l->sftp, rpath, st->st_mode & 07777) < 0)
        r = failed(l, "set the mode of", rpath);
    unlock(l);
    if (r == 0)
        r = set_times(l, rpath, st);
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    return r;
}

static int put_link(lease *l, const char *local, const char *rpath)
{
    char target[PATH_MAX];
    ssize_t n = readlink(local, target, sizeof(target) - 1);
    int r = 0;

    if (n < 0)
        return atx_error_set(-errno, "cannot read the link %s: %s", local, strerror(errno));
    target[n] = '\0';
    lock(l);
    char *now = sftp_readlink(l->sftp, rpath);
    if (!now || strcmp(now, target) != 0) {
        sftp_unlink(l->sftp, rpath);
        if (sftp_symlink(l->sftp, target, rpath) < 0)
            r = failed(l, "create the link", rpath);
    }
    ssh_string_free_char(now);
    unlock(l);
    return r;
}

/* What a remote folder holds, to skip files that are there already. */
typedef struct listing {
    sftp_attributes *a;
    size_t n, cap;
} listing;

static void listing_free(listing *ls)
{
    for (size_t i = 0; i < ls->n; i++)
        sftp_attributes_free(ls->a[i]);
    free(ls->a);
    *ls = (listing){ 0 };
}

static int list_remote(lease *l, const char *rpath, listing *ls)
{
    int r = 0;

    lock(l);
    sftp_dir d = sftp_opendir(l->sftp, rpath);
    if (!d)
        r = failed(l, "list", rpath);
    while (d && r == 0) {
        sftp_attributes a = sftp_readdir(l->sftp, d);
        if (!a) {
            if (!sftp_dir_eof(d))
                r = failed(l, "list", rpath);
            break;
        }
        if (ls->n == ls->cap) {
            size_t cap = ls->cap ? ls->cap * 2 : 32;
            sftp_attributes *na = realloc(ls->a, cap * sizeof(*na));
            if (!na) {
                sftp_attributes_free(a);
                r = oom();
                break;
            }
            ls->a = na;
            ls->cap = cap;
        }
        ls->a[ls->n++] = a;
    }
    if (d)
        sftp_closedir(d);
    unlock(l);
    return r;
}

static const struct sftp_attributes_struct *listed(const listing *ls, const char *name)
{
    for (size_t i = 0; i < ls->n; i++)
        if (ls->a[i]->name && strcmp(ls->a[i]->name, name) == 0)
            return ls->a[i];
    return NULL;
}

static bool same_file(const struct sftp_attributes_struct *a, const struct stat *st)
{
    return a && (a->flags & SSH_FILEXFER_ATTR_SIZE) && (a->flags & SSH_FILEXFER_ATTR_ACMODTIME) &&
           S_ISREG(a->permissions) && a->size == (uint64_t)st->st_size &&
           a->mtime == (uint32_t)st->st_mtime && (a->permissions & 07777) == (st->st_mode & 07777);
}

static int put_any(lease *l, const char *local, const char *rpath, const struct stat *st,
                   const struct sftp_attributes_struct *there);

static int put_tree(lease *l, const char *local, const char *rpath, const struct stat *st,
                    const struct sftp_attributes_struct *there)
{
    listing ls = { 0 };
    int r = 0;

    if (!there || !S_ISDIR(there->permissions)) {
        lock(l);
        if (there)
            sftp_unlink(l->sftp, rpath);
        if (sftp_mkdir(l->sftp, rpath, 0700) < 0)
            r = failed(l, "create the folder", rpath);
        unlock(l);
    } else {
        r = list_remote(l, rpath, &ls);
    }
    DIR *d = r == 0 ? opendir(local) : NULL;
    if (r == 0 && !d)
        r = atx_error_set(-errno, "cannot read %s: %s", local, strerror(errno));
    struct dirent *e;
    while (r == 0 && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *lp = join(local, e->d_name), *rp = join(rpath, e->d_name);
        struct stat est;
        if (!lp || !rp)
            r = oom();
        else if (lstat(lp, &est) < 0)
            r = atx_error_set(-errno, "cannot read %s: %s", lp, strerror(errno));
        else
            r = put_any(l, lp, rp, &est, listed(&ls, e->d_name));
        free(lp);
        free(rp);
    }
    if (d)
        closedir(d);
    listing_free(&ls);
    if (r == 0) {
        lock(l);
        if (sftp_chmod(l->sftp, rpath, st->st_mode & 07777) < 0)
            r = failed(l, "set the mode of", rpath);
        unlock(l);
    }
    return r;
}

static int put_any(lease *l, const char *local, const char *rpath, const struct stat *st,
                   const struct sftp_attributes_struct *there)
{
    if (S_ISDIR(st->st_mode))
        return put_tree(l, local, rpath, st, there);
    if (S_ISLNK(st->st_mode))
        return put_link(l, local, rpath);
    if (!S_ISREG(st->st_mode))
        return 0; /* sockets, fifos, devices: not content */
    if (same_file(there, st))
        return 0;
    return put_file(l, local, rpath, st);
}

int sshp_copy_in(void *impl, const char *local, const char *remote)
{
    lease *l = impl;
    char *rpath = remote_path(l, remote);
    struct stat st;
    int r;

    if (!rpath)
        return oom();
    if (lstat(local, &st) < 0) {
        r = atx_error_set(-errno, "cannot copy %s to %s: %s", local, l->id, strerror(errno));
        free(rpath);
        return r;
    }
    if ((r = start(l)) == 0 && (r = remote_parents(l, rpath)) == 0) {
        lock(l);
        sftp_attributes there = sftp_lstat(l->sftp, rpath);
        unlock(l);
        r = put_any(l, local, rpath, &st, there);
        sftp_attributes_free(there);
    }
    free(rpath);
    return r;
}

/* ---- out ---- */

static int local_parents(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return oom();
    for (char *p = copy + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(copy, 0755) < 0 && errno != EEXIST) {
            int r = atx_error_set(-errno, "cannot create %s: %s", copy, strerror(errno));
            free(copy);
            return r;
        }
        *p = '/';
    }
    free(copy);
    return 0;
}

static int get_any(lease *l, const char *rpath, const char *local,
                   const struct sftp_attributes_struct *a);

static int get_file(lease *l, const char *rpath, const char *local,
                    const struct sftp_attributes_struct *a)
{
    struct stat st;
    mode_t mode = a->permissions & 07777;
    char *buf;
    int r = 0;

    if (lstat(local, &st) == 0 && S_ISREG(st.st_mode) && (a->flags & SSH_FILEXFER_ATTR_SIZE) &&
        (a->flags & SSH_FILEXFER_ATTR_ACMODTIME) && (uint64_t)st.st_size == a->size &&
        (uint32_t)st.st_mtime == a->mtime && (st.st_mode & 07777) == mode)
        return 0;
    if (!(buf = malloc(CHUNK)))
        return oom();
    unlink(local);
    int fd = open(local, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        r = atx_error_set(-errno, "cannot write %s: %s", local, strerror(errno));
        free(buf);
        return r;
    }
    lock(l);
    sftp_file f = sftp_open(l->sftp, rpath, O_RDONLY, 0);
    if (!f)
        r = failed(l, "read", rpath);
    unlock(l);
    while (r == 0) {
        lock(l);
        ssize_t n = sftp_read(f, buf, CHUNK);
        if (n < 0)
            r = failed(l, "read", rpath);
        unlock(l);
        if (n <= 0)
            break;
        for (ssize_t off = 0; off < n && r == 0;) {
            ssize_t w = write(fd, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                r = atx_error_set(-errno, "cannot write %s: %s", local, strerror(errno));
            else
                off += w;
        }
    }
    if (f) {
        lock(l);
        sftp_close(f);
        unlock(l);
    }
    if (r == 0) {
        struct timespec ts[2] = { { a->atime, 0 }, { a->mtime, 0 } };
        if (fchmod(fd, mode) < 0 ||
            ((a->flags & SSH_FILEXFER_ATTR_ACMODTIME) && futimens(fd, ts) < 0))
            r = atx_error_set(-errno, "cannot set the mode of %s: %s", local, strerror(errno));
    }
    if (close(fd) < 0 && r == 0)
        r = atx_error_set(-errno, "cannot write %s: %s", local, strerror(errno));
    free(buf);
    return r;
}

static int get_tree(lease *l, const char *rpath, const char *local,
                    const struct sftp_attributes_struct *a)
{
    struct stat st;
    listing ls = { 0 };
    int r = 0;

    if (lstat(local, &st) == 0 && !S_ISDIR(st.st_mode))
        unlink(local);
    if (mkdir(local, 0700) < 0 && errno != EEXIST)
        return atx_error_set(-errno, "cannot create %s: %s", local, strerror(errno));
    r = list_remote(l, rpath, &ls);
    for (size_t i = 0; i < ls.n && r == 0; i++) {
        const char *name = ls.a[i]->name;
        if (!name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strchr(name, '/'))
            continue;
        char *rp = join(rpath, name), *lp = join(local, name);
        r = rp && lp ? get_any(l, rp, lp, ls.a[i]) : oom();
        free(rp);
        free(lp);
    }
    listing_free(&ls);
    if (r == 0 && chmod(local, a->permissions & 07777) < 0)
        r = atx_error_set(-errno, "cannot set the mode of %s: %s", local, strerror(errno));
    return r;
}

static int get_link(lease *l, const char *rpath, const char *local)
{
    int r = 0;

    lock(l);
    char *target = sftp_readlink(l->sftp, rpath);
    if (!target)
        r = failed(l, "read the link", rpath);
    unlock(l);
    if (r == 0) {
        unlink(local);
        if (symlink(target, local) < 0)
            r = atx_error_set(-errno, "cannot create the link %s: %s", local, strerror(errno));
    }
    ssh_string_free_char(target);
    return r;
}

static int get_any(lease *l, const char *rpath, const char *local,
                   const struct sftp_attributes_struct *a)
{
    if (S_ISDIR(a->permissions))
        return get_tree(l, rpath, local, a);
    if (S_ISLNK(a->permissions))
        return get_link(l, rpath, local);
    if (!S_ISREG(a->permissions))
        return 0;
    return get_file(l, rpath, local, a);
}

int sshp_copy_out(void *impl, const char *remote, const char *local)
{
    lease *l = impl;
    char *rpath = remote_path(l, remote);
    int r;

    if (!rpath)
        return oom();
    if ((r = start(l)) == 0 && (r = local_parents(local)) == 0) {
        lock(l);
        sftp_attributes a = sftp_lstat(l->sftp, rpath);
        if (!a) {
            r = failed(l, "find", rpath);
            if (r == ATX_EIO && sftp_get_error(l->sftp) == SSH_FX_NO_SUCH_FILE)
                r = atx_error_set(ATX_ENOTFOUND, "ssh: %s has no %s", l->id, rpath);
        }
        unlock(l);
        if (a)
            r = get_any(l, rpath, local, a);
        sftp_attributes_free(a);
    }
    free(rpath);
    return r;
}
