/* Library initialisation, clocks, durations and small shared helpers. */
#include "internal.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <libxml/parser.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int atx_init(void)
{
    /* libxml2's global state must be set up before threads use it. */
    xmlInitParser();
    return 0;
}

const char *atx_version(void)
{
    return ATX_VERSION_STRING;
}

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * ATX_NSEC_PER_SEC + ts.tv_nsec;
}

int64_t atx_now_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

int64_t atx_wallclock_ns(void)
{
    return clock_ns(CLOCK_REALTIME);
}

const char *atx_log_level_name(atx_log_level level)
{
    switch (level) {
    case ATX_LOG_ERROR: return "error";
    case ATX_LOG_WARNING: return "warning";
    case ATX_LOG_INFO: return "info";
    case ATX_LOG_DEBUG: return "debug";
    }
    return "unknown";
}

int64_t atx_seconds_ns(double seconds)
{
    if (!(seconds >= 0))
        return -1; /* NaN too */
    if (seconds >= (double)(ATX_DURATION_MAX / ATX_NSEC_PER_SEC))
        return ATX_DURATION_MAX;
    return (int64_t)(seconds * 1e9);
}

int atx_duration_parse(const char *text, int64_t *out)
{
    const char *p = text;
    int64_t total = 0;
    int parts = 0;

    if (!text || !out)
        return atx_error_set(ATX_EINVAL, "no duration given");
    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        if (!isdigit((unsigned char)*p))
            goto bad;
        /* Integer part, then an optional fraction: "1.5h" is fine. */
        int64_t whole = 0, frac = 0, frac_div = 1;
        while (isdigit((unsigned char)*p)) {
            if (whole > INT64_MAX / 10 - 10)
                goto bad;
            whole = whole * 10 + (*p++ - '0');
        }
        if (*p == '.') {
            p++;
            while (isdigit((unsigned char)*p)) {
                if (frac_div < 1000000000) {
                    frac = frac * 10 + (*p - '0');
                    frac_div *= 10;
                }
                p++;
            }
        }
        int64_t unit;
        if (strncmp(p, "ms", 2) == 0) {
            unit = ATX_NSEC_PER_MSEC;
            p += 2;
        } else if (*p == 's' || *p == 'm' || *p == 'h' || *p == 'd') {
            unit = *p == 's' ? ATX_NSEC_PER_SEC : *p == 'm' ? 60 * ATX_NSEC_PER_SEC
                 : *p == 'h' ? 3600 * ATX_NSEC_PER_SEC : 86400 * ATX_NSEC_PER_SEC;
            p++;
        } else if (!*p || isspace((unsigned char)*p)) {
            unit = ATX_NSEC_PER_SEC;
        } else {
            goto bad;
        }
        if (whole > INT64_MAX / unit)
            goto bad;
        int64_t part = whole * unit + frac * (unit / frac_div);
        if (part < 0 || total > INT64_MAX - part)
            goto bad;
        total += part;
        parts++;
    }
    if (parts == 0)
        goto bad;
    /* What fits is kept, cut to the longest duration atx keeps. */
    *out = total > ATX_DURATION_MAX ? ATX_DURATION_MAX : total;
    return 0;
bad:
    return atx_error_set(ATX_EINVAL,
                         "'%s' is not a duration (use 90, 90s, 5m, 1h 30m, 2d)", text);
}

int atx_vec_push(atx_vec *v, void *item)
{
    if (v->len == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8;
        void **items = realloc(v->items, cap * sizeof(*items));
        if (!items)
            return atx_error_oom();
        v->items = items;
        v->cap = cap;
    }
    v->items[v->len++] = item;
    return 0;
}

void atx_vec_release(atx_vec *v)
{
    free(v->items);
    v->items = NULL;
    v->len = v->cap = 0;
}

int atx_strdup_into(char **dst, const char *src)
{
    char *copy = NULL;

    if (src) {
        copy = strdup(src);
        if (!copy)
            return atx_error_oom();
    }
    free(*dst);
    *dst = copy;
    return 0;
}

/* mkdir, making missing parents from the deepest one that exists down:
 * a new folder below an existing one costs one call, not one per part. */
static int mkdir_up(char *buf)
{
    if (mkdir(buf, 0755) == 0 || errno == EEXIST)
        return 0;
    if (errno != ENOENT)
        return -errno;
    char *slash = strrchr(buf, '/');
    if (!slash || slash == buf)
        return -ENOENT;
    *slash = '\0';
    int r = mkdir_up(buf);
    *slash = '/';
    if (r < 0)
        return r;
    return mkdir(buf, 0755) == 0 || errno == EEXIST ? 0 : -errno;
}

int atx_mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    struct stat st;

    if (n == 0 || n >= sizeof(buf))
        return atx_error_set(ATX_EINVAL, "bad directory path '%s'", path);
    /* Usually only the last part is missing. */
    if (mkdir(path, 0755) == 0)
        return 0;
    memcpy(buf, path, n + 1);
    while (n > 1 && buf[n - 1] == '/')
        buf[--n] = '\0';
    int r = mkdir_up(buf);
    if (r < 0)
        return atx_error_set(r, "cannot create directory %s: %s", path, strerror(-r));
    if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
        return atx_error_set(-ENOTDIR, "%s is not a directory", path);
    return 0;
}

static int empty_below(int dfd, int depth);

/* Remove dfd/name, a folder with all below it; links are removed, never
 * followed. */
static int remove_at(int dfd, const char *name, int depth)
{
    if (unlinkat(dfd, name, 0) == 0)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return -errno;
    int sub = depth < 256 ? openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                          : -1;
    int k = sub < 0 ? -errno : empty_below(sub, depth + 1);
    if (k == 0 && unlinkat(dfd, name, AT_REMOVEDIR) < 0)
        k = -errno;
    return k;
}

int atx_remove_at(int dfd, const char *name)
{
    return remove_at(dfd, name, 0);
}

/* Everything below the folder dfd (closed here) removed. */
static int empty_below(int dfd, int depth)
{
    DIR *d = fdopendir(dfd);
    struct dirent *de;
    int r = 0;

    if (!d) {
        close(dfd);
        return -errno;
    }
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        int k = remove_at(dirfd(d), de->d_name, depth);
        if (k < 0 && !r)
            r = k;
    }
    closedir(d);
    return r;
}

int atx_empty_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), r;

    if (fd < 0 || (r = empty_below(fd, 0)) < 0) {
        r = fd < 0 ? -errno : r;
        return atx_error_set(r, "cannot empty %s: %s", path, strerror(-r));
    }
    return 0;
}

/* ---- files taken from a system on this host ---- */

/* Copy the open regular file @in to @dfd/@name (made or replaced, never
 * through a link), with @st's mtime and the taken mode. Holes stay holes: a
 * sparse file of terabytes costs what it holds. */
static int take_file(int in, const struct stat *st, int dfd, const char *name)
{
    int out = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0 && errno == ELOOP && unlinkat(dfd, name, 0) == 0)
        out = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0)
        return -errno;
    int r = 0;
    off_t end = st->st_size, pos = 0;
    while (r == 0 && pos < end) {
        off_t data = lseek(in, pos, SEEK_DATA);
        if (data < 0 && errno == ENXIO)
            break; /* a hole to the end */
        if (data < 0)
            data = pos; /* no SEEK_DATA here: all of it */
        off_t hole = lseek(in, data, SEEK_HOLE);
        if (hole < 0 || hole > end)
            hole = end;
        loff_t from = data, to = data;
        while (r == 0 && from < hole) {
            ssize_t n = copy_file_range(in, &from, out, &to, (size_t)(hole - from), 0);
            if (n > 0)
                continue;
            if (n == 0)
                break;
            if (errno == EINTR)
                continue;
            if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) {
                r = -errno;
                break;
            }
            /* Not between these files: by hand. */
            char buf[65536];
            while (r == 0 && from < hole) {
                size_t want = (size_t)(hole - from) < sizeof(buf) ? (size_t)(hole - from)
                                                                  : sizeof(buf);
                ssize_t k = pread(in, buf, want, from);
                if (k < 0 && errno == EINTR)
                    continue;
                if (k <= 0) {
                    r = k < 0 ? -errno : 0;
                    hole = from; /* shorter than it said */
                    break;
                }
                for (ssize_t done = 0; done < k;) {
                    ssize_t w = pwrite(out, buf + done, (size_t)(k - done), to + done);
                    if (w < 0 && errno == EINTR)
                        continue;
                    if (w <= 0) {
                        r = w < 0 ? -errno : -EIO;
                        break;
                    }
                    done += w;
                }
                from += k;
                to += k;
            }
        }
        pos = hole;
    }
    if (r == 0 && ftruncate(out, end) < 0)
        r = -errno;
    fchmod(out, atx_taken_mode(st->st_mode));
    struct timespec ts[2] = { { 0, UTIME_OMIT }, st->st_mtim };
    futimens(out, ts);
    if (close(out) < 0 && !r)
        r = -errno;
    return r;
}

void atx_copy_budget_init(atx_copy_budget *g, const atx_copy_bounds *b)
{
    *g = (atx_copy_budget){ .b = ATX_COPY_BOUNDS_INIT };
    if (b && b->version >= 1)
        g->b = *b;
}

bool atx_copy_budget_take(atx_copy_budget *g, bool file, uint64_t size)
{
    char why[96] = "";
    if (g->b.max_entries && g->entries >= g->b.max_entries)
        snprintf(why, sizeof(why), "more than %llu files and folders",
                 (unsigned long long)g->b.max_entries);
    else if (file && g->b.max_file_bytes && size > g->b.max_file_bytes)
        snprintf(why, sizeof(why), "a file of more than %llu bytes",
                 (unsigned long long)g->b.max_file_bytes);
    else if (file && g->b.max_total_bytes && size > g->b.max_total_bytes - g->bytes)
        snprintf(why, sizeof(why), "more than %llu bytes in all",
                 (unsigned long long)g->b.max_total_bytes);
    if (why[0]) {
        if (!g->over[0])
            memcpy(g->over, why, sizeof(why));
        return false;
    }
    g->entries++;
    if (file)
        g->bytes += size;
    return true;
}

/* The regular files and folders below @sfd into @dfd; both are closed. */
static int take_below(int sfd, int dfd, int depth, atx_copy_budget *g)
{
    DIR *d = fdopendir(sfd);
    struct dirent *de;
    int r = 0;

    if (!d) {
        r = -errno;
        close(sfd);
        close(dfd);
        return r;
    }
    while (r == 0 && (de = readdir(d))) {
        struct stat st;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        if ((S_ISREG(st.st_mode) || (S_ISDIR(st.st_mode) && depth < 64)) &&
            !atx_copy_budget_take(g, S_ISREG(st.st_mode), (uint64_t)st.st_size))
            continue;
        if (S_ISREG(st.st_mode)) {
            int in = openat(dirfd(d), de->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
            if (in < 0)
                continue;
            r = take_file(in, &st, dfd, de->d_name);
            close(in);
        } else if (S_ISDIR(st.st_mode) && depth < 64) {
            if (mkdirat(dfd, de->d_name, 0755) < 0 && errno != EEXIST) {
                r = -errno;
                break;
            }
            int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            int dsub = openat(dfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0 || dsub < 0) {
                /* One the test keeps from us: the rest is still taken. */
                if (sub >= 0)
                    close(sub);
                if (dsub >= 0)
                    close(dsub);
                continue;
            }
            r = take_below(sub, dsub, depth + 1, g);
        }
        /* Links, devices, FIFOs and sockets are not taken. */
    }
    closedir(d);
    close(dfd);
    return r;
}

int atx_copy_taken(const char *from, const char *to)
{
    return atx_copy_taken_bounded(from, to, NULL);
}

/* -EFBIG when @g left something out, else @r. */
static int budget_result(const atx_copy_budget *g, int r, const char *from)
{
    if (r == 0 && g->over[0])
        return atx_error_set(-EFBIG, "%s: %s: left out (what fits is kept)", from, g->over);
    return r;
}

int atx_copy_taken_bounded(const char *from, const char *to, const atx_copy_bounds *bounds)
{
    atx_copy_budget g;
    struct stat st;

    atx_copy_budget_init(&g, bounds);
    int in = open(from, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC), r;

    if (in < 0 && errno == ELOOP)
        return atx_error_set(-ELOOP, "%s is a symbolic link: not followed", from);
    if (in < 0 || fstat(in, &st) < 0) {
        r = -errno;
        if (in >= 0)
            close(in);
        return atx_error_set(r, "cannot read %s: %s", from, strerror(-r));
    }
    if (S_ISDIR(st.st_mode)) {
        int out = -1;
        if ((r = atx_mkdir_p(to)) < 0) {
            close(in);
            return r;
        }
        if ((out = open(to, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
            r = -errno;
            close(in);
            return atx_error_set(r, "cannot write %s: %s", to, strerror(-r));
        }
        fchmod(out, 0755);
        if ((r = take_below(in, out, 0, &g)) < 0)
            return atx_error_set(r, "copying %s to %s failed: %s", from, to, strerror(-r));
        return budget_result(&g, 0, from);
    }
    if (!S_ISREG(st.st_mode)) {
        close(in);
        return atx_error_set(ATX_EINVAL, "%s is neither a file nor a folder", from);
    }
    if (!atx_copy_budget_take(&g, true, (uint64_t)st.st_size)) {
        close(in);
        return atx_error_set(-EFBIG, "%s is %llu bytes: %s", from,
                             (unsigned long long)st.st_size, g.over);
    }
    char parent[PATH_MAX];
    const char *name = to;
    int dfd = AT_FDCWD;
    if (snprintf(parent, sizeof(parent), "%s", to) >= (int)sizeof(parent)) {
        close(in);
        return atx_error_set(ATX_EINVAL, "path too long: %s", to);
    }
    char *slash = strrchr(parent, '/');
    if (slash) {
        *slash = '\0';
        name = to + (slash - parent) + 1;
        if (slash != parent && (r = atx_mkdir_p(parent)) < 0) {
            close(in);
            return r;
        }
        if ((dfd = open(slash == parent ? "/" : parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
            r = -errno;
            close(in);
            return atx_error_set(r, "cannot write %s: %s", to, strerror(-r));
        }
    }
    r = take_file(in, &st, dfd, name);
    close(in);
    if (dfd >= 0)
        close(dfd);
    if (r < 0)
        return atx_error_set(r, "copying %s to %s failed: %s", from, to, strerror(-r));
    return 0;
}

void atx_strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

int atx_json_strv(const struct json_object *arr, char ***out)
{
    json_object *a = (json_object *)arr;
    size_t n;
    char **v;

    if (!json_object_is_type(a, json_type_array))
        return atx_error_set(ATX_EINVAL, "expected a list of strings");
    n = json_object_array_length(a);
    v = calloc(n + 1, sizeof(*v));
    if (!v)
        return atx_error_oom();
    for (size_t i = 0; i < n; i++) {
        json_object *s = json_object_array_get_idx(a, i);
        if (!json_object_is_type(s, json_type_string)) {
            atx_strv_free(v);
            return atx_error_set(ATX_EINVAL, "expected a list of strings (item %zu is not)", i);
        }
        v[i] = strdup(json_object_get_string(s));
        if (!v[i]) {
            atx_strv_free(v);
            return atx_error_oom();
        }
    }
    *out = v;
    return 0;
}

uint64_t atx_hash_mem(const void *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *c = p; n--; c++)
        h = (h ^ *c) * 1099511628211ULL;
    return h;
}

uint64_t atx_hash_str(const char *s)
{
    return atx_hash_mem(s, strlen(s));
}

ssize_t atx_write_nosig(int fd, const void *buf, size_t len)
{
    sigset_t pipe, old, pending;
    struct timespec zero = { 0, 0 };

    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, &old);
    /* One that was already waiting for this thread is not ours to take. */
    sigpending(&pending);
    bool had = sigismember(&pending, SIGPIPE);
    ssize_t n = write(fd, buf, len);
    int e = errno;
    if (n < 0 && e == EPIPE && !had && !sigismember(&old, SIGPIPE))
        sigtimedwait(&pipe, NULL, &zero);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
    return n;
}
