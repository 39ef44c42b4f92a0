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
#include <sys/mman.h>
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

int atx_secrets_add(atx_secrets *s, const char *value)
{
    if (!value || strlen(value) < SECRET_MIN)
        return 0;
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], value) == 0)
            return 0;
    char **v = realloc(s->v, (s->n + 1) * sizeof(*v));
    if (!v)
        return atx_error_oom();
    s->v = v;
    if (!(v[s->n] = strdup(value)))
        return atx_error_oom();
    s->n++;
    return 0;
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
}

/* Whether data holds any secret. */
static bool holds(const atx_secrets *s, const char *data, size_t len)
{
    for (size_t i = 0; i < s->n; i++)
        if (memmem(data, len, s->v[i], strlen(s->v[i])))
            return true;
    return false;
}

int atx_secrets_mask(const atx_secrets *s, const char *data, size_t len, char **out,
                     size_t *outlen)
{
    if (!s || !s->n || !data || !holds(s, data, len))
        return 0;
    /* One secret at a time: each pass makes at most len/SECRET_MIN marks. */
    char *cur = malloc(len + 1);
    size_t n = len;
    if (!cur)
        return atx_error_oom();
    memcpy(cur, data, len);
    for (size_t i = 0; i < s->n; i++) {
        size_t k = strlen(s->v[i]), hits = 0;
        for (const char *p = cur; (p = memmem(p, n - (size_t)(p - cur), s->v[i], k)); p += k)
            hits++;
        if (!hits)
            continue;
        size_t m = n - hits * k + hits * (sizeof(MASK) - 1);
        char *next = malloc(m + 1), *o = next;
        if (!next) {
            free(cur);
            return atx_error_oom();
        }
        const char *p = cur, *hit;
        while ((hit = memmem(p, n - (size_t)(p - cur), s->v[i], k))) {
            memcpy(o, p, (size_t)(hit - p));
            o += hit - p;
            memcpy(o, MASK, sizeof(MASK) - 1);
            o += sizeof(MASK) - 1;
            p = hit + k;
        }
        memcpy(o, p, n - (size_t)(p - cur));
        free(cur);
        cur = next;
        n = m;
    }
    cur[n] = '\0';
    *out = cur;
    if (outlen)
        *outlen = n;
    return 1;
}

/* Mask one regular file below dfd in place (it is rewritten only when it
 * holds a secret). */
static int mask_file(const atx_secrets *s, int dfd, const char *name)
{
    int fd = openat(dfd, name, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    int r = 0;

    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
        close(fd);
        return 0;
    }
    size_t len = (size_t)st.st_size;
    char *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0), *out = NULL;
    size_t outlen = 0;
    if (map == MAP_FAILED) {
        r = -errno;
        close(fd);
        return r;
    }
    r = atx_secrets_mask(s, map, len, &out, &outlen);
    munmap(map, len);
    if (r > 0) {
        size_t done = 0;
        while (done < outlen) {
            ssize_t w = pwrite(fd, out + done, outlen - done, (off_t)done);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            done += (size_t)w;
        }
        r = done == outlen && ftruncate(fd, (off_t)outlen) == 0 ? 0 : -EIO;
        free(out);
    }
    close(fd);
    return r;
}

static int mask_below(const atx_secrets *s, int dfd, int depth)
{
    DIR *d = fdopendir(dfd);
    struct dirent *de;
    int r = 0;

    if (!d) {
        close(dfd);
        return -errno;
    }
    while ((de = readdir(d))) {
        struct stat st;
        int k = 0;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        if (S_ISREG(st.st_mode)) {
            k = mask_file(s, dirfd(d), de->d_name);
        } else if (S_ISDIR(st.st_mode) && depth < 64) {
            int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            k = sub < 0 ? -errno : mask_below(s, sub, depth + 1);
        }
        if (k < 0 && !r)
            r = k;
    }
    closedir(d);
    return r;
}

int atx_secrets_mask_tree(const atx_secrets *s, const char *dir)
{
    if (!s || !s->n)
        return 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int r = fd < 0 ? -errno : mask_below(s, fd, 0);
    if (r < 0 && r != -ENOENT)
        return atx_error_set(r, "cannot mask secrets in %s: %s", dir, strerror(-r));
    return 0;
}
