/*
 * ssh provisioner: putting a file on a host over SFTP: the agent program,
 * once per lease (every other copy goes through the agent). Its mode and
 * modification time are kept. Each SFTP call holds the lease's lock only for
 * itself, so the pump keeps running processes fed.
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

int sshp_copy_in(void *impl, const char *local, const char *remote)
{
    lease *l = impl;
    char *rpath = remote_path(l, remote);
    struct stat st;
    int r;

    if (!rpath)
        return oom();
    if (stat(local, &st) < 0) {
        r = atx_error_set(-errno, "cannot copy %s to %s: %s", local, l->id, strerror(errno));
        free(rpath);
        return r;
    }
    if (!S_ISREG(st.st_mode)) {
        free(rpath);
        return atx_error_set(ATX_EINVAL, "cannot copy %s to %s: not a file", local, l->id);
    }
    if ((r = start(l)) == 0 && (r = remote_parents(l, rpath)) == 0)
        r = put_file(l, local, rpath, &st);
    free(rpath);
    return r;
}
