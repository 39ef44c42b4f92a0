/*
 * Secrets: values atx holds (tokens, passwords, keys) that a test must not
 * see or leak. Variables that hold them are hidden from every process spawned
 * on this host; their values, wherever test data is written, become
 * "[MASKED]" (as CI systems do).
 */
#include "internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MASK "[MASKED]"
/* Shorter values would mask ordinary words. */
#define SECRET_MIN 4

/* ---- variables hidden from spawned processes ---- */

static pthread_mutex_t hidden_mu = PTHREAD_MUTEX_INITIALIZER;
static char **hidden;
static size_t nhidden;

int atx_env_hide(const char *name)
{
    int r = 0;

    if (!name || !*name || strchr(name, '='))
        return atx_error_set(ATX_EINVAL, "'%s' is not a variable name", name ? name : "");
    pthread_mutex_lock(&hidden_mu);
    for (size_t i = 0; i < nhidden; i++)
        if (strcmp(hidden[i], name) == 0)
            goto out;
    char **v = realloc(hidden, (nhidden + 1) * sizeof(*v));
    if (!v || !(v[nhidden] = strdup(name))) {
        if (v)
            hidden = v;
        r = atx_error_oom();
        goto out;
    }
    hidden = v;
    nhidden++;
out:
    pthread_mutex_unlock(&hidden_mu);
    return r;
}

void atx_env_drop_hidden(const char **envp)
{
    size_t o = 0;

    pthread_mutex_lock(&hidden_mu);
    for (size_t i = 0; envp[i]; i++) {
        size_t klen = strcspn(envp[i], "=");
        bool found = false;
        for (size_t k = 0; k < nhidden && !found; k++)
            found = strncmp(hidden[k], envp[i], klen) == 0 && hidden[k][klen] == '\0';
        if (!found)
            envp[o++] = envp[i];
    }
    envp[o] = NULL;
    pthread_mutex_unlock(&hidden_mu);
}

/* ---- masking ---- */

/* A secret as it may be written: itself, and escaped for JSON and XML (a
 * report re-serialised keeps it so). */
static int add_one(atx_secrets *s, const char *value)
{
    size_t k = strlen(value);
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], value) == 0)
            return 0;
    char **v = realloc(s->v, (s->n + 1) * sizeof(*v));
    if (!v)
        return atx_error_oom();
    s->v = v;
    char *copy = strdup(value);
    if (!copy)
        return atx_error_oom();
    /* Longest first: a secret inside another must not leave the rest. */
    size_t at = s->n;
    while (at > 0 && strlen(v[at - 1]) < k) {
        v[at] = v[at - 1];
        at--;
    }
    v[at] = copy;
    s->n++;
    s->first[(unsigned char)value[0]] = true;
    if (k > s->maxlen)
        s->maxlen = k;
    return 0;
}

static int add_escaped(atx_secrets *s, const char *value, bool xml)
{
    char *e = malloc(strlen(value) * 6 + 1), *o = e;
    if (!e)
        return atx_error_oom();
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        const char *rep = NULL;
        char tmp[8];
        if (xml) {
            rep = *p == '&' ? "&amp;" : *p == '<' ? "&lt;" : *p == '>' ? "&gt;"
                : *p == '"' ? "&quot;" : *p == '\'' ? "&apos;" : NULL;
        } else if (*p == '"' || *p == '\\' || *p == '/') {
            snprintf(tmp, sizeof(tmp), "\\%c", *p);
            rep = tmp;
        } else if (*p < 0x20) {
            snprintf(tmp, sizeof(tmp), "\\u%04x", *p);
            rep = tmp;
        }
        if (rep) {
            size_t n = strlen(rep);
            memcpy(o, rep, n);
            o += n;
        } else {
            *o++ = (char)*p;
        }
    }
    *o = '\0';
    int r = strcmp(e, value) != 0 ? add_one(s, e) : 0;
    free(e);
    return r;
}

int atx_secrets_add(atx_secrets *s, const char *value)
{
    int r;
    if (!value || strlen(value) < SECRET_MIN)
        return 0;
    pthread_rwlock_wrlock(&s->lock);
    if ((r = add_one(s, value)) == 0 && (r = add_escaped(s, value, false)) == 0)
        r = add_escaped(s, value, true);
    pthread_rwlock_unlock(&s->lock);
    return r;
}

void atx_secrets_init(atx_secrets *s)
{
    memset(s, 0, sizeof(*s));
    pthread_rwlock_init(&s->lock, NULL);
}

void atx_secrets_free(atx_secrets *s)
{
    for (size_t i = 0; i < s->n; i++) {
        explicit_bzero(s->v[i], strlen(s->v[i]));
        free(s->v[i]);
    }
    free(s->v);
    s->v = NULL;
    s->n = 0;
    pthread_rwlock_destroy(&s->lock);
}

size_t atx_secrets_count(atx_secrets *s)
{
    pthread_rwlock_rdlock(&s->lock);
    size_t n = s->n;
    pthread_rwlock_unlock(&s->lock);
    return n;
}

/* The length of the (longest) secret at p, 0 if none. Under the lock. */
static size_t secret_at(const atx_secrets *s, const char *p, size_t left)
{
    if (!s->first[(unsigned char)*p])
        return 0;
    for (size_t i = 0; i < s->n; i++) {
        size_t k = strlen(s->v[i]);
        if (k <= left && memcmp(p, s->v[i], k) == 0)
            return k;
    }
    return 0;
}

/* Where masked text goes: memory, or a file when fd >= 0. */
typedef struct sink {
    char *p;
    size_t len, cap;
    int fd;                 /* >= 0: flushed there when full */
    int err;
} sink;

static void put(sink *k, const char *d, size_t n)
{
    if (k->err || n == 0)
        return;
    if (k->len + n > k->cap) {
        if (k->fd >= 0 && k->len) {
            size_t done = 0;
            while (done < k->len) {
                ssize_t w = write(k->fd, k->p + done, k->len - done);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0) {
                    k->err = w < 0 ? -errno : -EIO;
                    return;
                }
                done += (size_t)w;
            }
            k->len = 0;
        }
        if (k->len + n > k->cap) {
            size_t cap = (k->len + n) * 2;
            char *p = realloc(k->p, cap + 1);
            if (!p) {
                k->err = ATX_ENOMEM;
                return;
            }
            k->p = p;
            k->cap = cap;
        }
    }
    memcpy(k->p + k->len, d, n);
    k->len += n;
}

/* Mask data[0..upto) into out (a secret starting there may run to len);
 * returns where it stopped (>= upto), and counts the marks. */
static size_t mask_span(const atx_secrets *s, const char *data, size_t upto, size_t len,
                        sink *out, size_t *marks)
{
    size_t i = 0, plain = 0;
    while (i < upto) {
        size_t k = secret_at(s, data + i, len - i);
        if (!k) {
            i++;
            continue;
        }
        put(out, data + plain, i - plain);
        put(out, MASK, sizeof(MASK) - 1);
        (*marks)++;
        i += k;
        plain = i;
    }
    /* A secret that began before upto may end past it: then all is out. */
    if (plain < upto)
        put(out, data + plain, upto - plain);
    return i > upto ? i : upto;
}

int atx_secrets_mask(atx_secrets *s, const char *data, size_t len, char **out, size_t *outlen)
{
    if (!s || !data)
        return 0;
    pthread_rwlock_rdlock(&s->lock);
    if (!s->n) {
        pthread_rwlock_unlock(&s->lock);
        return 0;
    }
    sink k = { .fd = -1 };
    size_t marks = 0;
    mask_span(s, data, len, len, &k, &marks);
    pthread_rwlock_unlock(&s->lock);
    if (!marks || k.err) {
        free(k.p);
        return k.err ? atx_error_oom() : 0;
    }
    if (!k.p && !(k.p = malloc(1))) /* all of it was one secret: an empty text */
        return atx_error_oom();
    k.p[k.len] = '\0';
    *out = k.p;
    if (outlen)
        *outlen = k.len;
    return 1;
}

#define CHUNK (1 << 20)

static void flush(sink *k)
{
    size_t done = 0;
    while (!k->err && done < k->len) {
        ssize_t w = write(k->fd, k->p + done, k->len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            k->err = w < 0 ? -errno : -EIO;
        else
            done += (size_t)w;
    }
    k->len = 0;
}

/* Whether the file at fd holds a secret: read in chunks, a secret across
 * two of them found too. Under the read lock. */
static int holds_secret(const atx_secrets *s, int fd, char *buf, size_t keep)
{
    size_t have = 0;
    for (;;) {
        ssize_t n = read(fd, buf + have, CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        have += (size_t)n;
        size_t upto = n == 0 ? have : have > keep ? have - keep : 0;
        for (size_t i = 0; i < upto; i++)
            if (secret_at(s, buf + i, have - i))
                return 1;
        if (n == 0)
            return 0;
        memmove(buf, buf + upto, have - upto);
        have -= upto;
    }
}

/* Mask one regular file: only one holding a secret is rewritten, through a
 * fresh file renamed over it (never in place, never mapped). Under the read
 * lock. */
static int mask_file(const atx_secrets *s, int dfd, const char *name)
{
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t keep = s->maxlen ? s->maxlen - 1 : 0, have = 0, marks = 0;
    char *buf = malloc(CHUNK + keep);
    sink out = { .fd = -1 };
    char tmp[64] = "";
    int r;

    if (!buf) {
        close(fd);
        return ATX_ENOMEM;
    }
    if ((r = holds_secret(s, fd, buf, keep)) <= 0)
        goto out;
    r = 0;
    if (lseek(fd, 0, SEEK_SET) < 0) {
        r = -errno;
        goto out;
    }
    snprintf(tmp, sizeof(tmp), ".atx-mask-%d-%p", (int)getpid(), (void *)&tmp);
    out.fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out.fd < 0) {
        r = -errno;
        tmp[0] = '\0';
        goto out;
    }
    for (bool eof = false; !eof && !out.err;) {
        ssize_t n = read(fd, buf + have, CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            goto out;
        }
        eof = n == 0;
        have += (size_t)n;
        size_t upto = eof ? have : have > keep ? have - keep : 0;
        size_t done = mask_span(s, buf, upto, have, &out, &marks);
        memmove(buf, buf + done, have - done);
        have -= done;
    }
    flush(&out);
    if ((r = out.err) == 0) {
        struct stat st;
        if (fstat(fd, &st) == 0)
            fchmod(out.fd, st.st_mode & 0777);
        r = close(out.fd) < 0 ? -errno : 0;
        out.fd = -1;
        if (r == 0 && renameat(dfd, tmp, dfd, name) < 0)
            r = -errno;
        if (r == 0)
            tmp[0] = '\0';
    }
out:
    if (out.fd >= 0)
        close(out.fd);
    if (tmp[0])
        unlinkat(dfd, tmp, 0);
    free(out.p);
    free(buf);
    close(fd);
    return r;
}

typedef struct walk {
    const atx_secrets *s;
    size_t removed;         /* what could not be masked, so is gone */
    int err;
} walk;

/* Every regular file below dfd masked, names included; what cannot be
 * masked (too deep, unreadable, no memory) is removed: fail closed. */
static void mask_below(walk *w, int dfd, int depth)
{
    DIR *d = fdopendir(dfd);
    struct dirent *de;

    if (!d) {
        close(dfd);
        w->err = w->err ? w->err : -errno;
        return;
    }
    while ((de = readdir(d))) {
        struct stat st;
        char *masked = NULL;
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
            fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        /* A secret in a name: the entry is renamed (results name it so too). */
        sink k = { .fd = -1 };
        size_t marks = 0;
        mask_span(w->s, name, strlen(name), strlen(name), &k, &marks);
        if (marks && !k.err && k.len && k.len <= NAME_MAX) {
            k.p[k.len] = '\0';
            if (renameat(dirfd(d), name, dirfd(d), k.p) == 0)
                name = masked = k.p, k.p = NULL;
        }
        free(k.p);
        int r = 0;
        if (marks && !masked) {
            r = -EIO;
        } else if (S_ISREG(st.st_mode)) {
            r = mask_file(w->s, dirfd(d), name);
        } else if (S_ISDIR(st.st_mode) && depth < 64) {
            int sub = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0)
                r = -errno;
            else
                mask_below(w, sub, depth + 1);
        } else if (S_ISDIR(st.st_mode)) {
            r = -ELOOP;
        }
        if (r < 0) {
            atx_remove_at(dirfd(d), name);
            w->removed++;
            if (!w->err)
                w->err = r;
        }
        free(masked);
    }
    closedir(d);
}

int atx_secrets_mask_tree(atx_secrets *s, const char *dir)
{
    walk w = { .s = s };
    if (!s)
        return 0;
    pthread_rwlock_rdlock(&s->lock);
    if (s->n) {
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0)
            mask_below(&w, fd, 0);
        else if (errno != ENOENT)
            w.err = -errno;
    }
    pthread_rwlock_unlock(&s->lock);
    if (w.err)
        return atx_error_set(w.err, "cannot mask secrets in %s (%zu entries removed instead): %s",
                             dir, w.removed, strerror(-w.err));
    return 0;
}
