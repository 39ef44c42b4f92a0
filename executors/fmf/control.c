/*
 * Test control (TEST_CONTROL.md): a byte-at-a-time safe parser of the control
 * stream and the writer of one attempt's `results` and `files/`.
 *
 * The parser is a small state machine (control line, result JSON, file
 * payload) so that any split of the stream gives the same outcome. File
 * payloads are written to disk from the caller's buffer; only control lines
 * (4 KiB) and result JSON (capped) are held in memory.
 *
 * Results pass through three stages: received (its JSON and files read),
 * pending (a partial result, merged with later reports of the same name) and
 * written (a line in `results`, kept in memory for the executor).
 */
#define _GNU_SOURCE 1
#include "control.h"

#include <atx/error.h>

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* What json-c holds per value, beyond the text (measured with json-c 0.16
 * on x86_64, rounded up): an object with its 16-slot hash table, an array
 * with its 32 slots, a scalar, a key (its copy and hash entry), and the
 * slot a value takes in its parent. */
#define COST_OBJECT 800u
#define COST_ARRAY 160u
#define COST_SCALAR 96u
#define COST_KEY 64u
#define COST_SLOT 16u
/* A written result beside its line: its entry, paths and their allocations. */
#define COST_WRITTEN 64u
#define TO_STRING_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
#define FALLBACK_OUTPUT "output.txt"

/* ---- a byte-string keyed hash map (pending results, testout paths) ---- */

typedef struct hent {
    struct hent *next;
    uint64_t hash;
    void *val;
    size_t len;
    char key[];
} hent;

typedef struct hmap {
    hent **buckets;
    size_t nbuckets, count;
    uint64_t seed;
} hmap;

static uint64_t hash_bytes(uint64_t seed, const char *key, size_t len)
{
    uint64_t h = 14695981039346656037ull ^ seed;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static hent **hmap_slot(hmap *m, const char *key, size_t len, uint64_t h)
{
    if (!m->nbuckets)
        return NULL;
    hent **pp = &m->buckets[h & (m->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->hash == h && (*pp)->len == len && memcmp((*pp)->key, key, len) == 0)
            return pp;
    return NULL;
}

static void *hmap_get(hmap *m, const char *key, size_t len)
{
    hent **pp = hmap_slot(m, key, len, hash_bytes(m->seed, key, len));
    return pp ? (*pp)->val : NULL;
}

/* Add @key (absent) with a non-NULL @val. */
static int hmap_put(hmap *m, const char *key, size_t len, void *val)
{
    if (m->count >= m->nbuckets / 2) {
        size_t nb = m->nbuckets ? m->nbuckets * 2 : 64;
        hent **b = calloc(nb, sizeof(*b));
        if (!b)
            return -ENOMEM;
        for (size_t i = 0; i < m->nbuckets; i++) {
            for (hent *e = m->buckets[i], *next; e; e = next) {
                next = e->next;
                e->next = b[e->hash & (nb - 1)];
                b[e->hash & (nb - 1)] = e;
            }
        }
        free(m->buckets);
        m->buckets = b;
        m->nbuckets = nb;
    }
    hent *e = malloc(sizeof(*e) + len);
    if (!e)
        return -ENOMEM;
    e->hash = hash_bytes(m->seed, key, len);
    e->val = val;
    e->len = len;
    memcpy(e->key, key, len);
    e->next = m->buckets[e->hash & (m->nbuckets - 1)];
    m->buckets[e->hash & (m->nbuckets - 1)] = e;
    m->count++;
    return 0;
}

static void hmap_del(hmap *m, const char *key, size_t len)
{
    hent **pp = hmap_slot(m, key, len, hash_bytes(m->seed, key, len));
    if (pp) {
        hent *e = *pp;
        *pp = e->next;
        free(e);
        m->count--;
    }
}

static void hmap_release(hmap *m)
{
    for (size_t i = 0; i < m->nbuckets; i++) {
        for (hent *e = m->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(m->buckets);
    m->buckets = NULL;
    m->nbuckets = m->count = 0;
}

/* ---- the control state ---- */

/* A result: received, then pending or written. */
typedef struct rec {
    json_object *obj;   /* "partial" removed; "files" holds normalised names */
    char *key;          /* '\0' for the test's own result, '\1' + name for a subtest */
    size_t key_len;
    char *dir;          /* the result's folder below files/ ("" = files/ itself) */
    char *testout;      /* normalised testout already claimed, or NULL */
    size_t bytes;       /* estimated memory of the JSON merged in */
    struct rec *prev, *next;
} rec;

typedef struct upload {
    char *rel;          /* below files/ */
    uint64_t len;
} upload;

typedef struct written {
    char *line;
    char **paths;       /* NULL-terminated, relative to the attempt directory */
} written;

enum state { ST_LINE, ST_JSON, ST_FILE, ST_FAILED, ST_FINISHED };

struct fmf_control {
    char *files_dir;            /* <attempt>/files */
    int results_fd;
    fmf_control_hooks hooks;
    enum state st;
    json_tokener *tok;

    char line[FMF_CONTROL_LINE_MAX + 1];
    size_t line_len;

    char *json;
    size_t json_len, json_cap, json_want;

    rec *cur;                   /* the result being received */
    bool cur_partial;
    upload *ups;
    size_t n_ups, up_idx;
    uint64_t up_done;
    int up_fd;

    hmap pending;               /* key -> rec */
    rec *pend_head, *pend_tail;
    size_t pend_count;

    hmap testouts;              /* rel paths claimed by testout links */
    char **links;
    size_t n_links, cap_links;

    written *res;
    size_t n_res, cap_res;
    bool own_final;
    rec *held_own;              /* hooks.hold_own: the test's own final result, not written yet */
    bool own_from_exit;         /* the fallback's status came from the exit code */
    json_object *parsed;        /* fmf_control_result()'s one parsed line */
    size_t parsed_idx;

    size_t held;                /* estimated memory of results held (FMF_CONTROL_MEMORY_MAX) */
    hmap made;                  /* rel paths below files/ made or reserved (files and folders) */
    uint64_t file_bytes;        /* file data declared so far */

    char *err;
};

static const char oom_text[] = "out of memory";

/* ---- small helpers ---- */

/* Printable form of @s for messages: \xNN escapes, at most ~@max bytes shown. */
static void quote(char *buf, size_t cap, const char *s, size_t n, size_t max)
{
    size_t o = 0;

    for (size_t i = 0; i < n && o + 8 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (i >= max) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (ch >= 0x20 && ch < 0x7F && ch != '\\' && ch != '\'')
            buf[o++] = (char)ch;
        else
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
    }
    buf[o] = '\0';
}

/* @rel for a message: escaped and cut short (names may be megabytes long). */
static const char *shown(char buf[256], const char *rel)
{
    quote(buf, 256, rel, strlen(rel), 160);
    return buf;
}

/*
 * Record a problem (the first one's text is kept) and return @code; the
 * stream is not trusted after it.
 */
static int fail(fmf_control *c, int code, const char *fmt, ...) ATX_PRINTF(3, 4);
static int fail(fmf_control *c, int code, const char *fmt, ...)
{
    if (!c->err) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&c->err, fmt, ap) < 0)
            c->err = (char *)oom_text;
        va_end(ap);
    }
    if (c->up_fd >= 0) {
        close(c->up_fd);
        c->up_fd = -1;
    }
    c->st = ST_FAILED;
    return code;
}

static int fail_oom(fmf_control *c)
{
    return fail(c, -ENOMEM, "%s", oom_text);
}

static void rec_free(rec *r)
{
    if (!r)
        return;
    json_object_put(r->obj);
    free(r->key);
    free(r->dir);
    free(r->testout);
    free(r);
}

static void uploads_clear(fmf_control *c)
{
    for (size_t i = 0; i < c->n_ups; i++)
        free(c->ups[i].rel);
    free(c->ups);
    c->ups = NULL;
    c->n_ups = c->up_idx = 0;
    c->up_done = 0;
}

/* "a" + "/" + "b", or just the non-empty one. */
static char *path_join(const char *a, const char *b)
{
    char *out;

    if (!*a)
        return strdup(b);
    if (!*b)
        return strdup(a);
    return asprintf(&out, "%s/%s", a, b) < 0 ? NULL : out;
}

/*
 * A path made safe below a folder, as ATEX does: control characters (C0,
 * DEL and C1) become '_', then empty, "." and ".." components are dropped.
 * The result may be empty. @s is valid UTF-8 (the JSON was checked).
 */
static char *safe_path(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    size_t o = 0, i = 0;

    if (!out)
        return NULL;
    while (i < n) {
        if (s[i] == '/') {
            i++;
            continue;
        }
        size_t mark = o;
        if (o)
            out[o++] = '/';
        size_t start = o;
        while (i < n && s[i] != '/') {
            unsigned char ch = (unsigned char)s[i];
            if (ch < 0x20 || ch == 0x7F) {
                out[o++] = '_';
                i++;
            } else if (ch == 0xC2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 &&
                       (unsigned char)s[i + 1] <= 0x9F) {
                out[o++] = '_';
                i += 2;
            } else {
                out[o++] = (char)ch;
                i++;
            }
        }
        size_t len = o - start;
        if ((len == 1 && out[start] == '.') || (len == 2 && out[start] == '.' && out[start + 1] == '.'))
            o = mark;
    }
    out[o] = '\0';
    return out;
}

/* mkdir -p of the folders above @rel below files/. */
static int make_parents(fmf_control *c, const char *rel)
{
    char *path;

    if (asprintf(&path, "%s/%s", c->files_dir, rel) < 0)
        return -ENOMEM;
    size_t base = strlen(c->files_dir) + 1;
    for (char *p = path + base; (p = strchr(p, '/')); p++) {
        *p = '\0';
        int r = mkdir(path, 0755) < 0 && errno != EEXIST ? -errno : 0;
        *p = '/';
        if (r < 0) {
            free(path);
            return r;
        }
    }
    free(path);
    return 0;
}

/* open() below files/ with parents made; -errno on failure. */
static int open_below(fmf_control *c, const char *rel, int flags)
{
    char *path;
    int r = make_parents(c, rel);

    if (r < 0)
        return r;
    if (asprintf(&path, "%s/%s", c->files_dir, rel) < 0)
        return -ENOMEM;
    int fd = open(path, flags | O_CLOEXEC | O_NOFOLLOW, 0644);
    r = fd < 0 ? -errno : fd;
    free(path);
    return r;
}

/*
 * Count @rel and the folders above it below files/ as made (they will be
 * made next); the count is checked for all of them at once.
 * @bounded: refuse (-EDQUOT) past FMF_CONTROL_FILES_MAX.
 * @return 0, -EDQUOT or -ENOMEM.
 */
static int reserve_path(fmf_control *c, const char *rel, bool bounded)
{
    size_t n = strlen(rel), missing = 0, i = n;

    /* From the path up to the first prefix already made: a new path costs
     * hashing its new prefixes only, which the count bounds. */
    for (;;) {
        if (hmap_get(&c->made, rel, i))
            break;
        missing++;
        while (i && rel[i - 1] != '/')
            i--;
        if (!i)
            break;
        i--;
    }
    if (!missing)
        return 0;
    if (bounded && c->made.count + missing > FMF_CONTROL_FILES_MAX)
        return -EDQUOT;
    for (size_t k = i ? i + 1 : 0; k <= n; k++) {
        if (k < n && rel[k] != '/')
            continue;
        if (k && !hmap_get(&c->made, rel, k)) {
            if (hmap_put(&c->made, rel, k, (void *)1) < 0)
                return -ENOMEM;
            c->held += k + COST_KEY;
        }
    }
    return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* JSON truthiness as Python sees it (ATEX tests `partial` that way). */
static bool truthy(json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_null: return false;
    case json_type_boolean: return json_object_get_boolean(v);
    case json_type_int: return json_object_get_int64(v) != 0;
    case json_type_double: return json_object_get_double(v) != 0.0;
    case json_type_string: return json_object_get_string_len(v) != 0;
    case json_type_array: return json_object_array_length(v) != 0;
    case json_type_object: return json_object_object_length(v) != 0;
    }
    return false;
}

/*
 * Merge @src into @dst (RESULTS.md "Partial results"): null deletes, new keys
 * are added, lists are appended, objects merge recursively, anything else or
 * a changed type replaces. `files` (lists of names) thereby becomes a union
 * once written. Values are shared by reference; @src is dropped afterwards.
 */
static int merge(json_object *dst, json_object *src)
{
    json_object_object_foreach(src, key, val) {
        json_object *old = NULL;
        bool had = json_object_object_get_ex(dst, key, &old);

        if (!val) {
            json_object_object_del(dst, key);
        } else if (!had || json_object_get_type(old) != json_object_get_type(val)) {
            if (json_object_object_add(dst, key, json_object_get(val)) < 0) {
                json_object_put(val);
                return -ENOMEM;
            }
        } else if (json_object_is_type(val, json_type_object)) {
            int r = merge(old, val);
            if (r < 0)
                return r;
        } else if (json_object_is_type(val, json_type_array)) {
            size_t n = json_object_array_length(val);
            for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_array_get_idx(val, i);
                if (json_object_array_add(old, json_object_get(e)) < 0) {
                    json_object_put(e);
                    return -ENOMEM;
                }
            }
        } else if (json_object_object_add(dst, key, json_object_get(val)) < 0) {
            json_object_put(val);
            return -ENOMEM;
        }
    }
    return 0;
}

/* ---- testout links ---- */

/*
 * Reserve files/<rel> for a link to the test output: an empty placeholder is
 * created now (so a later upload or testout of the same path is refused, as
 * ATEX's immediate link would be) and replaced by the link at finish.
 * @bounded: within FMF_CONTROL_FILES_MAX (-EDQUOT past it).
 * @return 0, -EEXIST if the path is taken, or another -errno.
 */
static int claim_testout(fmf_control *c, const char *rel, bool bounded)
{
    int r = reserve_path(c, rel, bounded);

    if (r < 0)
        return r;

    if (c->n_links == c->cap_links) {
        size_t cap = c->cap_links ? c->cap_links * 2 : 8;
        char **l = realloc(c->links, cap * sizeof(*l));
        if (!l)
            return -ENOMEM;
        c->links = l;
        c->cap_links = cap;
    }
    char *copy = strdup(rel);
    if (!copy)
        return -ENOMEM;
    int fd = open_below(c, rel, O_WRONLY | O_CREAT | O_EXCL);
    if (fd < 0) {
        free(copy);
        return fd == -ENOTDIR || fd == -EISDIR ? -EEXIST : fd;
    }
    close(fd);
    if (hmap_put(&c->testouts, rel, strlen(rel), (void *)1) < 0) {
        free(copy);
        return -ENOMEM;
    }
    c->links[c->n_links++] = copy;
    return 0;
}

/* The test's whole output as files/<rel>: a copy (in the kernel where it
 * can), into the file that is there already if nothing else links to it. */
static int link_output(fmf_control *c, const char *rel, const char *output_path)
{
    char *path;
    struct stat st;
    int r = 0;

    if (!output_path)
        return 0;
    if (asprintf(&path, "%s/%s", c->files_dir, rel) < 0)
        return -ENOMEM;
    if (lstat(path, &st) == 0 && (!S_ISREG(st.st_mode) || st.st_nlink > 1) && unlink(path) < 0)
        r = -errno;
    int in = r < 0 ? -1 : open(output_path, O_RDONLY | O_CLOEXEC);
    int out = in < 0 ? -1 : open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (r == 0 && (in < 0 || out < 0))
        r = -errno;
    while (r == 0) {
        ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
        if (n > 0)
            continue;
        if (n == 0)
            break;
        if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP) {
            r = -errno;
            break;
        }
        /* Not between these files: by hand. */
        char buf[65536];
        for (;;) {
            ssize_t k = read(in, buf, sizeof(buf));
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0) {
                r = k < 0 ? -errno : 0;
                break;
            }
            if ((r = write_all(out, buf, (size_t)k)) < 0)
                break;
        }
        break;
    }
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out) < 0 && r == 0)
        r = -errno;
    if (r < 0)
        atx_error_set(r, "cannot copy the test output to %s: %s", path, strerror(-r));
    free(path);
    return r;
}

/* files/<rel> as a second name of files/<first>, for testouts past the
 * copies the attempt's budget allows. */
static int link_again(fmf_control *c, const char *first, const char *rel)
{
    char *from, *to;
    int r = 0;

    if (asprintf(&from, "%s/%s", c->files_dir, first) < 0)
        return -ENOMEM;
    if (asprintf(&to, "%s/%s", c->files_dir, rel) < 0) {
        free(from);
        return -ENOMEM;
    }
    if ((unlink(to) < 0 && errno != ENOENT) || link(from, to) < 0)
        r = -errno;
    free(from);
    free(to);
    return r;
}

/* ---- writing results ---- */

static void paths_free(char **paths, size_t k)
{
    for (size_t i = 0; i < k; i++)
        free(paths[i]);
    free(paths);
}

/* Append @name to a `files` list and its path below files/ to @paths[*k]. */
static int list_file(json_object *list, char **paths, size_t *k, const char *dir, const char *name)
{
    json_object *s = json_object_new_string(name);

    if (!s || json_object_array_add(list, s) < 0) {
        json_object_put(s);
        return -ENOMEM;
    }
    return (paths[(*k)++] = path_join(dir, name)) ? 0 : -ENOMEM;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Claim the path of @r's `testout` (if it has one and it is not claimed yet)
 * and move it from the JSON to @r->testout.
 * @return 0; ATX_EPARSE if the path is taken (as ATEX refuses it); -errno.
 */
/* Whether files/<rel> is a path the file system takes (each part within
 * NAME_MAX, the whole within PATH_MAX) and at most 64 folders deep (what
 * is taken and masked below an attempt goes no deeper). */
static bool path_fits(const fmf_control *c, const char *rel)
{
    size_t comp = 0, depth = 0, base = strlen(c->files_dir) + 1;
    for (const char *p = rel;; p++) {
        if (*p && *p != '/') {
            comp++;
            continue;
        }
        if (comp > NAME_MAX || (size_t)(p - rel) + base >= PATH_MAX || ++depth > 64)
            return false;
        if (!*p)
            return true;
        comp = 0;
    }
}

static int claim_result_testout(fmf_control *c, rec *r)
{
    json_object *to;
    char q[256], p[256];

    if (r->testout || !json_object_object_get_ex(r->obj, "testout", &to))
        return 0;
    size_t tl = (size_t)json_object_get_string_len(to);
    char *tn = safe_path(json_object_get_string(to), tl);
    char *rel = tn ? path_join(r->dir, tn) : NULL;
    /* Checked before any part of it is looked up or reserved. */
    int ret = !rel ? -ENOMEM : !path_fits(c, rel) ? -ENAMETOOLONG : claim_testout(c, rel, true);
    if (ret == 0) {
        r->testout = tn;
        json_object_object_del(r->obj, "testout");
    } else {
        quote(q, sizeof(q), json_object_get_string(to), tl, 100);
        free(tn);
        ret = ret == -ENOMEM ? fail_oom(c)
            : ret == -EEXIST ? fail(c, ATX_EPARSE, "result: testout '%s': files/%s already exists", q,
                                    shown(p, rel))
            : ret == -EDQUOT ? fail(c, ATX_EPARSE, "result: testout '%s': more than %d files and "
                                    "folders below files/", q, FMF_CONTROL_FILES_MAX)
            : ret == -ENAMETOOLONG ? fail(c, ATX_EPARSE, "result: testout '%s': too long or too "
                                          "deep a path", q)
            : fail(c, ret, "result: testout '%s': cannot create files/%s: %s", q, shown(p, rel),
                   strerror(-ret));
    }
    free(rel);
    return ret;
}

/*
 * Write @r as a `results` line: testout first in `files`, then the other
 * names sorted and de-duplicated. A `testout` not claimed yet is claimed now.
 * @bounded: apply the results caps.
 * @return 0; ATX_EPARSE (protocol error recorded, nothing written); or -errno.
 */
static int write_result(fmf_control *c, rec *r, bool bounded)
{
    json_object *files = NULL, *list = NULL;
    const char **names = NULL;
    char *line = NULL;
    char **paths = NULL;
    size_t n = 0, k = 0;
    int ret;

    if (bounded && c->n_res >= FMF_CONTROL_RESULTS_MAX)
        return fail(c, ATX_EPARSE, "result: more than %d results", FMF_CONTROL_RESULTS_MAX);
    if (c->n_res == c->cap_res) {
        size_t cap = c->cap_res ? c->cap_res * 2 : 16;
        written *w = realloc(c->res, cap * sizeof(*w));
        if (!w)
            return fail_oom(c);
        c->res = w;
        c->cap_res = cap;
    }
    if ((ret = claim_result_testout(c, r)) < 0)
        return ret;

    if (json_object_object_get_ex(r->obj, "files", &files) && json_object_is_type(files, json_type_array))
        n = json_object_array_length(files);
    names = malloc((n + 1) * sizeof(*names));
    paths = calloc(n + 2, sizeof(*paths));
    list = json_object_new_array_ext((int)(n + 1));
    if (!names || !paths || !list)
        goto oom;
    for (size_t i = 0; i < n; i++)
        names[i] = json_object_get_string(json_object_array_get_idx(files, i));
    qsort(names, n, sizeof(*names), cmp_str);
    if (r->testout && list_file(list, paths, &k, r->dir, r->testout) < 0)
        goto oom;
    for (size_t i = 0; i < n; i++)
        if ((i == 0 || strcmp(names[i], names[i - 1]) != 0) &&
            list_file(list, paths, &k, r->dir, names[i]) < 0)
            goto oom;
    free(names);
    names = NULL;
    /* Paths relative to the attempt: "files/" + rel. */
    for (size_t i = 0; i < k; i++) {
        char *p;
        if (asprintf(&p, "files/%s", paths[i]) < 0)
            goto oom;
        free(paths[i]);
        paths[i] = p;
    }
    if (files || r->testout) {
        /* Replacing an existing key keeps its place in the object. */
        if (json_object_object_add(r->obj, "files", list) < 0)
            goto oom;
    } else {
        json_object_put(list);
    }
    list = NULL;

    size_t len, cost;
    const char *s = json_object_to_json_string_length(r->obj, TO_STRING_FLAGS, &len);
    if (!s || len >= SIZE_MAX / 2 || !(line = malloc(len + 1)))
        goto oom;
    cost = len + COST_WRITTEN;
    for (size_t i = 0; i < k; i++)
        cost += strlen(paths[i]) + COST_SLOT * 2;
    /* The pending result it came from held more (its parsed form), so only
     * results written during the test can go past the budget. */
    if (bounded && c->held + cost > FMF_CONTROL_MEMORY_MAX) {
        free(line);
        paths_free(paths, k);
        return fail(c, ATX_EPARSE, "result: the attempt's results would hold more than %u MiB",
                    FMF_CONTROL_MEMORY_MAX >> 20);
    }
    memcpy(line, s, len);
    line[len] = '\n';
    ret = write_all(c->results_fd, line, len + 1);
    line[len] = '\0';
    if (ret < 0) {
        free(line);
        paths_free(paths, k);
        return fail(c, ret, "cannot write the results file: %s", strerror(-ret));
    }
    c->res[c->n_res++] = (written){ .line = line, .paths = paths };
    c->held += cost;
    if (r->key[0] == '\0')
        c->own_final = true;
    return 0;

oom:
    free(names);
    if (paths)
        paths_free(paths, k);
    json_object_put(list);
    return fail_oom(c);
}

/* ---- pending results ---- */

static void pending_unlink(fmf_control *c, rec *r)
{
    hmap_del(&c->pending, r->key, r->key_len);
    if (r->prev)
        r->prev->next = r->next;
    else
        c->pend_head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        c->pend_tail = r->prev;
    r->prev = r->next = NULL;
    c->pend_count--;
    c->held -= r->bytes;
}

static int pending_add(fmf_control *c, rec *r)
{
    if (hmap_put(&c->pending, r->key, r->key_len, r) < 0)
        return -ENOMEM;
    r->prev = c->pend_tail;
    r->next = NULL;
    if (c->pend_tail)
        c->pend_tail->next = r;
    else
        c->pend_head = r;
    c->pend_tail = r;
    c->pend_count++;
    c->held += r->bytes;
    return 0;
}

/*
 * Hold @r, the test's own final result, until fmf_control_finish(): its
 * testout is claimed now, as writing it would; one held before it is
 * written now.
 */
static int hold_own(fmf_control *c, rec *r)
{
    int ret = claim_result_testout(c, r);

    if (ret == 0 && c->held_own) {
        rec *old = c->held_own;
        c->held_own = NULL;
        c->held -= old->bytes;
        ret = write_result(c, old, true);
        rec_free(old);
    }
    if (ret < 0) {
        rec_free(r);
        return ret;
    }
    c->held_own = r;
    c->held += r->bytes;
    c->own_final = true;
    return 0;
}

/* The received result c->cur is complete: keep, merge or write it. */
static int report(fmf_control *c)
{
    rec *r = c->cur, *p = hmap_get(&c->pending, r->key, r->key_len);
    int ret;

    c->cur = NULL;
    if (c->cur_partial) {
        /* Within FMF_CONTROL_MEMORY_MAX: checked before it was parsed. */
        if (!p) {
            if (c->pend_count >= FMF_CONTROL_PENDING_MAX) {
                rec_free(r);
                return fail(c, ATX_EPARSE, "result: more than %d partial results pending",
                            FMF_CONTROL_PENDING_MAX);
            }
            if (pending_add(c, r) < 0) {
                rec_free(r);
                return fail_oom(c);
            }
            return 0;
        }
        ret = merge(p->obj, r->obj);
        p->bytes += r->bytes;
        c->held += r->bytes;
        rec_free(r);
        return ret < 0 ? fail_oom(c) : 0;
    }
    if (p) {
        pending_unlink(c, p);
        ret = merge(p->obj, r->obj);
        rec_free(r);
        r = p;
        if (ret < 0) {
            rec_free(r);
            return fail_oom(c);
        }
    }
    if (c->hooks.hold_own && r->key[0] == '\0')
        return hold_own(c, r);
    ret = write_result(c, r, true);
    rec_free(r);
    return ret;
}

/* ---- receiving a result ---- */

static int open_upload(fmf_control *c)
{
    const char *rel = c->ups[c->up_idx].rel;
    char p[256];

    if (hmap_get(&c->testouts, rel, strlen(rel)))
        return fail(c, ATX_EPARSE, "result: file files/%s is where the test output is linked",
                    shown(p, rel));
    int fd = open_below(c, rel, O_WRONLY | O_CREAT | O_APPEND);
    if (fd < 0)
        return fd == -ENOMEM ? fail_oom(c)
             : fail(c, fd == -ENOSPC || fd == -EIO || fd == -EDQUOT ? fd : ATX_EPARSE,
                    "result: cannot write files/%s: %s", shown(p, rel), strerror(-fd));
    c->up_fd = fd;
    c->up_done = 0;
    return 0;
}

/* Open the next file of the current result; report the result after the last. */
static int next_upload(fmf_control *c)
{
    for (;;) {
        if (c->up_fd >= 0) {
            close(c->up_fd);
            c->up_fd = -1;
            c->up_idx++;
        }
        if (c->up_idx == c->n_ups) {
            uploads_clear(c);
            c->st = ST_LINE;
            return report(c);
        }
        int r = open_upload(c);
        if (r < 0)
            return r;
        if (c->ups[c->up_idx].len > 0) {
            c->st = ST_FILE;
            return 0;
        }
    }
}

/* A file entry of `files` at index @i: {"name": non-empty string, "length": int >= 0}. */
static int check_file_entry(fmf_control *c, json_object *e, size_t i, const char *dir,
                            json_object *names)
{
    json_object *name, *len;

    if (!json_object_is_type(e, json_type_object) ||
        !json_object_object_get_ex(e, "name", &name) || !json_object_is_type(name, json_type_string) ||
        json_object_get_string_len(name) == 0)
        return fail(c, ATX_EPARSE, "result: files[%zu] needs \"name\": a non-empty string", i);
    if (!json_object_object_get_ex(e, "length", &len) || !json_object_is_type(len, json_type_int) ||
        json_object_get_int64(len) < 0)
        return fail(c, ATX_EPARSE, "result: files[%zu] needs \"length\": an integer >= 0", i);
    size_t nl = (size_t)json_object_get_string_len(name);
    char *norm = safe_path(json_object_get_string(name), nl);
    if (!norm)
        return fail_oom(c);
    if (!*norm) {
        char q[256];
        free(norm);
        quote(q, sizeof(q), json_object_get_string(name), nl, 100);
        return fail(c, ATX_EPARSE, "result: files[%zu]: name '%s' names no file", i, q);
    }
    upload *u = &c->ups[c->n_ups];
    u->len = (uint64_t)json_object_get_int64(len);
    u->rel = path_join(dir, norm);
    json_object *s = json_object_new_string(norm);
    free(norm);
    if (!u->rel || !s || json_object_array_add(names, s) < 0) {
        free(u->rel);
        json_object_put(s);
        return fail_oom(c);
    }
    c->n_ups++;
    /* Refused here rather than by open() after the files before it were made. */
    if (!path_fits(c, u->rel)) {
        char q[256];
        return fail(c, ATX_EPARSE, "result: files[%zu]: files/%s is too long or too deep a path",
                    i, shown(q, u->rel));
    }
    return 0;
}

/*
 * The files of the result being received fit the attempt's budgets: count
 * and declared bytes. Checked for all of them before any is made.
 */
static int reserve_uploads(fmf_control *c)
{
    uint64_t left = FMF_CONTROL_FILES_BYTES_MAX - c->file_bytes;
    char q[256];

    for (size_t i = 0; i < c->n_ups; i++) {
        if (c->ups[i].len > left)
            return fail(c, ATX_EPARSE,
                        "result: files[%zu] (files/%s) declares %llu bytes; the attempt's files "
                        "may take %llu more (of %llu)",
                        i, shown(q, c->ups[i].rel), (unsigned long long)c->ups[i].len,
                        (unsigned long long)left, (unsigned long long)FMF_CONTROL_FILES_BYTES_MAX);
        left -= c->ups[i].len;
    }
    for (size_t i = 0; i < c->n_ups; i++) {
        int r = reserve_path(c, c->ups[i].rel, true);
        if (r == -ENOMEM)
            return fail_oom(c);
        if (r < 0)
            return fail(c, ATX_EPARSE, "result: files[%zu] (files/%s): more than %d files and "
                        "folders below files/", i, shown(q, c->ups[i].rel), FMF_CONTROL_FILES_MAX);
    }
    c->file_bytes = FMF_CONTROL_FILES_BYTES_MAX - left;
    return 0;
}

/*
 * What json-c would hold for the JSON text @s (see COST_*), from one pass
 * over the text that allocates nothing. Only a bound for valid JSON: the
 * parser judges the rest.
 * @return the estimate, or SIZE_MAX if it nests deeper than
 *         FMF_CONTROL_DEPTH_MAX (*at: the offset where it does).
 */
static size_t json_cost(const char *s, size_t n, size_t *at)
{
    size_t cost = n, depth = 0;
    bool in_str = false, esc = false, in_tok = false;

    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (in_str) {
            if (esc)
                esc = false;
            else if (ch == '\\')
                esc = true;
            else if (ch == '"')
                in_str = false;
            continue;
        }
        bool tok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                   ch == '-' || ch == '+' || ch == '.';
        if (tok && !in_tok)
            cost += COST_SCALAR + COST_SLOT;
        in_tok = tok;
        switch (ch) {
        case '"':
            /* A key's cost is taken at its ':'. */
            in_str = true;
            cost += COST_SCALAR + COST_SLOT;
            break;
        case ':':
            cost = cost - COST_SCALAR - COST_SLOT + COST_KEY;
            break;
        case '{':
        case '[':
            if (++depth > FMF_CONTROL_DEPTH_MAX) {
                *at = i;
                return SIZE_MAX;
            }
            cost += (ch == '{' ? COST_OBJECT : COST_ARRAY) + COST_SLOT;
            break;
        case '}':
        case ']':
            if (depth)
                depth--;
            break;
        }
    }
    return cost;
}

/* The JSON of a `result` is complete: check it and start reading its files. */
static int received_json(fmf_control *c)
{
    json_object *obj, *v, *files = NULL;
    size_t cost, at = 0;
    rec *r;

    /* Refused before it is parsed: parsed, a few MiB of small objects take
     * gigabytes. */
    cost = json_cost(c->json ? c->json : "", c->json_len, &at);
    if (cost == SIZE_MAX)
        return fail(c, ATX_EPARSE, "result: bad JSON (nested deeper than %d at byte %zu)",
                    FMF_CONTROL_DEPTH_MAX, at);
    if (c->held + cost > FMF_CONTROL_MEMORY_MAX)
        return fail(c, ATX_EPARSE,
                    "result: %zu bytes of JSON would take about %zu MiB parsed, more than the "
                    "%zu MiB left of the %u MiB the attempt's results may hold",
                    c->json_len, (cost + (1u << 20) - 1) >> 20,
                    (FMF_CONTROL_MEMORY_MAX - c->held) >> 20, FMF_CONTROL_MEMORY_MAX >> 20);
    json_tokener_reset(c->tok);
    obj = json_tokener_parse_ex(c->tok, c->json ? c->json : "", (int)c->json_len);
    enum json_tokener_error je = json_tokener_get_error(c->tok);
    if (!obj) {
        if (je == json_tokener_continue)
            return fail(c, ATX_EPARSE, "result: bad JSON (it ends early, after %zu bytes)",
                        c->json_len);
        return fail(c, ATX_EPARSE, "result: bad JSON (%s at byte %zu)", json_tokener_error_desc(je),
                    json_tokener_get_parse_end(c->tok));
    }
    for (size_t i = json_tokener_get_parse_end(c->tok); i < c->json_len; i++) {
        char ch = c->json[i];
        if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') {
            json_object_put(obj);
            return fail(c, ATX_EPARSE, "result: bad JSON (data after the object at byte %zu)", i);
        }
    }
    if (!json_object_is_type(obj, json_type_object)) {
        const char *t = json_type_to_name(json_object_get_type(obj));
        json_object_put(obj);
        return fail(c, ATX_EPARSE, "result: the JSON is %s, not an object", t);
    }
    if (!(r = calloc(1, sizeof(*r)))) {
        json_object_put(obj);
        return fail_oom(c);
    }
    r->obj = obj;
    r->bytes = cost;
    c->cur = r;

    const char *name = NULL;
    size_t name_len = 0;
    if (json_object_object_get_ex(obj, "name", &v)) {
        if (!json_object_is_type(v, json_type_string))
            return fail(c, ATX_EPARSE, "result: \"name\" must be a string");
        name = json_object_get_string(v);
        name_len = (size_t)json_object_get_string_len(v);
    }
    r->key_len = name ? name_len + 1 : 1;
    if (!(r->key = malloc(r->key_len)) || !(r->dir = name ? safe_path(name, name_len) : strdup("")))
        return fail_oom(c);
    r->key[0] = name ? '\1' : '\0';
    if (name)
        memcpy(r->key + 1, name, name_len);

    if (json_object_object_get_ex(obj, "testout", &v)) {
        if (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0)
            return fail(c, ATX_EPARSE, "result: \"testout\" must be a non-empty string");
        char *tn = safe_path(json_object_get_string(v), (size_t)json_object_get_string_len(v));
        bool empty = tn && !*tn;
        if (!tn)
            return fail_oom(c);
        free(tn);
        if (empty) {
            char q[256];
            quote(q, sizeof(q), json_object_get_string(v), (size_t)json_object_get_string_len(v), 100);
            return fail(c, ATX_EPARSE, "result: testout '%s' names no file", q);
        }
    }
    c->cur_partial = json_object_object_get_ex(obj, "partial", &v) && truthy(v);
    json_object_object_del(obj, "partial");

    if (json_object_object_get_ex(obj, "files", &files)) {
        if (!json_object_is_type(files, json_type_array))
            return fail(c, ATX_EPARSE, "result: \"files\" must be a list of {\"name\", \"length\"}");
        size_t n = json_object_array_length(files);
        json_object *names = json_object_new_array_ext((int)n);
        if (!names || (n && !(c->ups = calloc(n, sizeof(*c->ups))))) {
            json_object_put(names);
            return fail_oom(c);
        }
        for (size_t i = 0; i < n; i++) {
            int ret = check_file_entry(c, json_object_array_get_idx(files, i), i, r->dir, names);
            if (ret < 0) {
                json_object_put(names);
                return ret;
            }
        }
        if (json_object_object_add(obj, "files", names) < 0)
            return fail_oom(c);
        int ret = reserve_uploads(c);
        if (ret < 0)
            return ret;
    }
    c->up_idx = 0;
    c->up_fd = -1;
    return next_upload(c);
}

/* ---- control lines ---- */

static bool word_is(const char *w, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(w, lit, n) == 0;
}

/* Digits only, no sign, at most @max; false otherwise. */
static bool parse_count(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        if (v > (max - (uint64_t)(*s - '0')) / 10)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return true;
}

static int control_line(fmf_control *c)
{
    char *ln = c->line, q[256];
    size_t n = c->line_len;
    char *sp = memchr(ln, ' ', n);
    size_t wlen = sp ? (size_t)(sp - ln) : n;
    const char *arg = sp ? sp + 1 : "";
    size_t arg_len = sp ? n - wlen - 1 : 0;

    ln[n] = '\0';
    if (n == 0)
        return fail(c, ATX_EPARSE, "empty control line");
    if (word_is(ln, wlen, "result")) {
        uint64_t len;
        quote(q, sizeof(q), arg, arg_len, 40);
        if (!parse_count(arg, UINT64_MAX, &len) || memchr(arg, '\0', arg_len))
            return fail(c, ATX_EPARSE, "result: '%s' is not a length in bytes", q);
        if (len > FMF_CONTROL_JSON_MAX)
            return fail(c, ATX_EPARSE, "result: %s bytes of JSON is over the limit of %u", q,
                        FMF_CONTROL_JSON_MAX);
        c->json_want = (size_t)len;
        c->json_len = 0;
        c->st = ST_JSON;
        return len == 0 ? received_json(c) : 0;
    }
    if (word_is(ln, wlen, "exitcode")) {
        uint64_t v;
        bool neg = arg[0] == '-';
        const char *d = arg[0] == '-' || arg[0] == '+' ? arg + 1 : arg;
        quote(q, sizeof(q), arg, arg_len, 40);
        if (memchr(arg, '\0', arg_len) || !parse_count(d, neg ? (uint64_t)INT_MAX + 1 : INT_MAX, &v))
            return fail(c, ATX_EPARSE, "exitcode: '%s' is not an integer exit code", q);
        if (c->hooks.exitcode)
            c->hooks.exitcode(c->hooks.ud, neg ? (int)(-(int64_t)v) : (int)v);
        return 0;
    }
    if (word_is(ln, wlen, "duration")) {
        fmf_duration_op op;
        int64_t ns;
        quote(q, sizeof(q), arg, arg_len, 40);
        if (memchr(arg, '\0', arg_len) || fmf_duration_spec_parse(arg, &op, &ns) < 0)
            return fail(c, ATX_EPARSE,
                        "duration: '%s' is not N, Ns, Nm, Nh, Nd, +N..., -N..., save or restore", q);
        if (c->hooks.duration)
            c->hooks.duration(c->hooks.ud, arg);
        return 0;
    }
    if (word_is(ln, wlen, "disconnect")) {
        if (c->hooks.disconnect)
            c->hooks.disconnect(c->hooks.ud);
        return 0;
    }
    if (word_is(ln, wlen, "reboot")) {
        /* TIMEOUT (seconds, or "-") and the rest of the line: the command. */
        const char *cmd = memchr(arg, ' ', arg_len);
        size_t tlen = cmd ? (size_t)(cmd - arg) : arg_len;
        uint64_t secs = 0;
        char num[24];
        quote(q, sizeof(q), arg, arg_len, 40);
        if (memchr(arg, '\0', arg_len) || tlen == 0 || tlen >= sizeof(num))
            return fail(c, ATX_EPARSE, "reboot: '%s' is not TIMEOUT COMMAND", q);
        memcpy(num, arg, tlen);
        num[tlen] = '\0';
        if (strcmp(num, "-") != 0 && (!parse_count(num, 86400, &secs) || secs == 0))
            return fail(c, ATX_EPARSE, "reboot: the timeout '%s' is not a number of seconds", num);
        if (c->hooks.reboot)
            c->hooks.reboot(c->hooks.ud, (int64_t)secs * ATX_NSEC_PER_SEC, cmd ? cmd + 1 : "");
        return 0;
    }
    if (word_is(ln, wlen, "noop"))
        return 0;
    quote(q, sizeof(q), ln, wlen, 60);
    return fail(c, ATX_EPARSE, "unknown control word '%s'", q);
}

/* ---- feeding ---- */

/* Take what a control line can use from @p; *used receives the bytes taken. */
static int feed_line(fmf_control *c, const char *p, size_t n, size_t *used)
{
    size_t room = FMF_CONTROL_LINE_MAX - c->line_len; /* content + newline still allowed */
    size_t lim = n < room ? n : room;
    const char *nl = memchr(p, '\n', lim);
    size_t seg = nl ? (size_t)(nl - p) : lim;

    for (size_t i = 0; i < seg; i++) {
        if ((unsigned char)p[i] >= 0x80) {
            char q[256];
            memcpy(c->line + c->line_len, p, i);
            quote(q, sizeof(q), c->line, c->line_len + i, 60);
            return fail(c, ATX_EPARSE, "non-ASCII byte 0x%02x in a control line, after '%s'",
                        (unsigned char)p[i], q);
        }
    }
    memcpy(c->line + c->line_len, p, seg);
    c->line_len += seg;
    *used = seg;
    if (!nl) {
        if (c->line_len == FMF_CONTROL_LINE_MAX) {
            char q[256];
            quote(q, sizeof(q), c->line, c->line_len, 60);
            return fail(c, ATX_EPARSE, "control line longer than %d bytes ('%s')",
                        FMF_CONTROL_LINE_MAX - 1, q);
        }
        return 0;
    }
    *used = seg + 1;
    int r = control_line(c);
    c->line_len = 0;
    return r;
}

static int feed_json(fmf_control *c, const char *p, size_t n, size_t *used)
{
    size_t take = c->json_want - c->json_len;

    if (take > n)
        take = n;
    if (c->json_len + take > c->json_cap) {
        size_t cap = c->json_cap ? c->json_cap : 4096;
        while (cap < c->json_len + take)
            cap *= 2;
        if (cap > c->json_want)
            cap = c->json_want;
        char *j = realloc(c->json, cap);
        if (!j)
            return fail_oom(c);
        c->json = j;
        c->json_cap = cap;
    }
    memcpy(c->json + c->json_len, p, take);
    c->json_len += take;
    *used = take;
    if (c->json_len < c->json_want)
        return 0;
    int r = received_json(c);
    /* Keep a small buffer for the next result, not a 16 MiB one. */
    if (c->json_cap > 65536) {
        free(c->json);
        c->json = NULL;
        c->json_cap = 0;
    }
    return r;
}

static int feed_file(fmf_control *c, const char *p, size_t n, size_t *used)
{
    upload *u = &c->ups[c->up_idx];
    uint64_t left = u->len - c->up_done;
    size_t take = left < n ? (size_t)left : n;
    int r = write_all(c->up_fd, p, take);
    char buf[256];

    *used = take;
    if (r < 0)
        return fail(c, r, "result: cannot write files/%s: %s", shown(buf, u->rel), strerror(-r));
    c->up_done += take;
    return c->up_done == u->len ? next_upload(c) : 0;
}

int fmf_control_feed(fmf_control *c, const char *data, size_t len)
{
    if (!c || (!data && len))
        return ATX_EINVAL;
    if (c->st == ST_FINISHED)
        return ATX_ESTATE;
    while (len && c->st != ST_FAILED) {
        size_t used = 0;
        int r = c->st == ST_LINE ? feed_line(c, data, len, &used)
              : c->st == ST_JSON ? feed_json(c, data, len, &used)
              : feed_file(c, data, len, &used);
        if (r < 0)
            return r;
        data += used;
        len -= used;
    }
    return 0;
}

int fmf_control_stream_end(fmf_control *c)
{
    char q[256];

    if (!c)
        return ATX_EINVAL;
    switch (c->st) {
    case ST_LINE:
        if (!c->line_len)
            return 0;
        quote(q, sizeof(q), c->line, c->line_len, 60);
        c->line_len = 0;
        return fail(c, ATX_EPARSE, "stream ended inside a control line ('%s')", q);
    case ST_JSON:
        return fail(c, ATX_EPARSE, "result: expected %zu bytes of JSON, stream ended after %zu",
                    c->json_want, c->json_len);
    case ST_FILE:
        return fail(c, ATX_EPARSE, "result: file files/%s: expected %llu bytes, stream ended after %llu",
                    shown(q, c->ups[c->up_idx].rel), (unsigned long long)c->ups[c->up_idx].len,
                    (unsigned long long)c->up_done);
    case ST_FAILED:
    case ST_FINISHED:
        break;
    }
    return 0;
}

const char *fmf_control_error(const fmf_control *c)
{
    return c ? c->err : NULL;
}

/* ---- finishing ---- */

static bool lists_name(json_object *obj, const char *name)
{
    json_object *files;

    if (!json_object_object_get_ex(obj, "files", &files) || !json_object_is_type(files, json_type_array))
        return false;
    for (size_t i = 0, n = json_object_array_length(files); i < n; i++)
        if (strcmp(json_object_get_string(json_object_array_get_idx(files, i)), name) == 0)
            return true;
    return false;
}

/*
 * Claim testouts of pending results before the fallback is decided; a result
 * whose path is taken is dropped, as a final one would be (and as ATEX does).
 */
static void claim_pending_testouts(fmf_control *c)
{
    for (rec *r = c->pend_head, *next; r; r = next) {
        next = r->next;
        if (claim_result_testout(c, r) < 0) {
            pending_unlink(c, r);
            rec_free(r);
        }
    }
}

/* "output.txt", else "output-2.txt", "output-3.txt", ...: the first free one. */
static int claim_fallback_output(fmf_control *c, char **out)
{
    for (unsigned i = 1; i < 1000; i++) {
        char *name;
        if (i == 1 ? !(name = strdup(FALLBACK_OUTPUT)) : asprintf(&name, "output-%u.txt", i) < 0)
            return -ENOMEM;
        /* The fallback is kept past the caps: it is the attempt's own record. */
        int r = claim_testout(c, name, false);
        if (r == 0) {
            *out = name;
            return 0;
        }
        free(name);
        if (r != -EEXIST)
            return r;
    }
    return -EEXIST;
}

static const char *end_text(fmf_end_kind end)
{
    switch (end) {
    case FMF_END_EXITED: return NULL;
    case FMF_END_TIMEOUT: return "the test timed out";
    case FMF_END_LOST: return "the system was lost";
    case FMF_END_INTERRUPTED: return "the run was interrupted";
    }
    return "the attempt ended abnormally";
}

/* The fallback result of the test, merged into its own pending partial (or a new one). */
static int add_fallback(fmf_control *c, int exit_code, fmf_end_kind end, const char *end_note)
{
    rec *own = hmap_get(&c->pending, "", 1);
    json_object *fb = json_object_new_object(), *status = NULL;
    bool infra = c->err || end != FMF_END_EXITED;
    int ret = -ENOMEM;

    if (!fb)
        return -ENOMEM;
    if (infra) {
        const char *what = end != FMF_END_EXITED ? (end_note && *end_note ? end_note : end_text(end)) : NULL;
        char *note;
        int n = c->err && what ? asprintf(&note, "test control: %s; %s", c->err, what)
              : c->err ? asprintf(&note, "test control: %s", c->err)
              : asprintf(&note, "%s", what);
        if (n < 0)
            goto out;
        json_object *s = json_object_new_string(note);
        free(note);
        if (json_object_object_add(fb, "status", json_object_new_string("infra")) < 0 ||
            json_object_object_add(fb, "note", s) < 0)
            goto out;
    } else {
        c->own_from_exit = !(own && json_object_object_get_ex(own->obj, "status", &status));
        if (c->own_from_exit)
            status = json_object_new_string(exit_code == 0 ? "pass" : "fail");
        else
            json_object_get(status);
        if (json_object_object_add(fb, "status", status) < 0)
            goto out;
    }
    if (!own) {
        if (!(own = calloc(1, sizeof(*own))) || !(own->key = calloc(1, 1)) || !(own->dir = strdup(""))) {
            rec_free(own);
            goto out;
        }
        own->key_len = 1;
        own->obj = fb;
        fb = NULL;
        if (pending_add(c, own) < 0) {
            rec_free(own);
            goto out;
        }
    } else if (merge(own->obj, fb) < 0) {
        goto out;
    }
    ret = 0;
    if (!own->testout && !lists_name(own->obj, FALLBACK_OUTPUT))
        ret = claim_fallback_output(c, &own->testout);
out:
    json_object_put(fb);
    return ret;
}

int fmf_control_finish(fmf_control *c, int exit_code, fmf_end_kind end, const char *end_note,
                       const char *output_path)
{
    int ret = 0, r;

    if (!c)
        return ATX_EINVAL;
    if (c->st == ST_FINISHED)
        return atx_error_set(ATX_ESTATE, "the attempt's results are already finished");
    fmf_control_stream_end(c);
    if (c->up_fd >= 0) {
        close(c->up_fd);
        c->up_fd = -1;
    }
    rec_free(c->cur);
    c->cur = NULL;
    uploads_clear(c);
    claim_pending_testouts(c);
    if (!c->own_final && (r = add_fallback(c, exit_code, end, end_note)) < 0)
        ret = atx_error_set(r, "cannot add the fallback result: %s", atx_strerror(r));
    c->st = ST_FINISHED;
    while (c->pend_head || c->held_own) {
        rec *p = c->pend_head ? c->pend_head : c->held_own;
        bool own = p->key[0] == '\0';
        if (p == c->held_own) {
            c->held_own = NULL;
            c->held -= p->bytes;
        } else {
            pending_unlink(c, p);
        }
        if (own && c->hooks.settle &&
            (r = c->hooks.settle(c->hooks.ud, c, p->obj, !c->own_final && c->own_from_exit)) < 0 &&
            !ret)
            ret = atx_error_set(r, "cannot settle the test's own result: %s", atx_strerror(r));
        /* Unbounded: what is pending was already within its own caps. */
        r = write_result(c, p, false);
        c->st = ST_FINISHED;
        if (r < 0 && !ret)
            ret = atx_error_set(r, "cannot write a pending result: %s", atx_strerror(r));
        rec_free(p);
    }
    /* A copy of the output per testout (a file with one name: what reads
     * the results folder may refuse second names, the Bud upload does), as
     * long as the copies fit the attempt's file budget; past it, second
     * names of the first copy. */
    struct stat ost;
    uint64_t out_size = output_path && stat(output_path, &ost) == 0 ? (uint64_t)ost.st_size : 0;
    uint64_t copies_left = FMF_CONTROL_FILES_BYTES_MAX;
    for (size_t i = 0, copied = SIZE_MAX; i < c->n_links; i++) {
        if (copied != SIZE_MAX && out_size > copies_left &&
            link_again(c, c->links[copied], c->links[i]) == 0)
            continue;
        r = link_output(c, c->links[i], output_path);
        if (r < 0 && !ret)
            ret = r;
        if (r == 0 && output_path && copied == SIZE_MAX)
            copied = i;
        copies_left -= out_size < copies_left ? out_size : copies_left;
    }
    if (c->results_fd >= 0) {
        if (close(c->results_fd) < 0 && !ret)
            ret = atx_error_set(-errno, "cannot write the results file: %s", strerror(errno));
        c->results_fd = -1;
    }
    return ret;
}

/* ---- results ---- */

size_t fmf_control_result_count(const fmf_control *c)
{
    return c ? c->n_res : 0;
}

const char *fmf_control_result_line(const fmf_control *c, size_t i)
{
    return c && i < c->n_res ? c->res[i].line : NULL;
}

const struct json_object *fmf_control_result(const fmf_control *c, size_t i)
{
    if (!c || i >= c->n_res)
        return NULL;
    /* One parsed at a time: all of them at once would take many times the
     * memory their lines do. A cache, not a visible change. */
    fmf_control *m = (fmf_control *)c;
    if (!m->parsed || m->parsed_idx != i) {
        json_object_put(m->parsed);
        /* Its own tokener: json_tokener_parse() stops at half the depth results may have. */
        json_tokener_reset(m->tok);
        m->parsed = json_tokener_parse_ex(m->tok, m->res[i].line, (int)strlen(m->res[i].line));
        m->parsed_idx = i;
    }
    return m->parsed;
}

const char *const *fmf_control_result_paths(const fmf_control *c, size_t i)
{
    return c && i < c->n_res ? (const char *const *)c->res[i].paths : NULL;
}

/* ---- life cycle ---- */

static int mkdir_p(char *path)
{
    for (char *p = path + 1; ; p++) {
        if (*p != '/' && *p)
            continue;
        char keep = *p;
        *p = '\0';
        int r = mkdir(path, 0755) < 0 && errno != EEXIST ? -errno : 0;
        *p = keep;
        if (r < 0)
            return r;
        if (!keep)
            return 0;
    }
}

int fmf_control_new(const char *attempt_dir, const fmf_control_hooks *hooks, fmf_control **out)
{
    fmf_control *c;
    char *path = NULL;
    int r;

    if (!attempt_dir || !*attempt_dir || !out)
        return atx_error_set(ATX_EINVAL, "fmf_control_new: no attempt directory");
    if (!(c = calloc(1, sizeof(*c))))
        return atx_error_set(-ENOMEM, "out of memory");
    c->results_fd = c->up_fd = -1;
    if (hooks)
        c->hooks = *hooks;
    c->pending.seed = c->testouts.seed = c->made.seed = (uint64_t)(uintptr_t)c ^ (uint64_t)time(NULL);
    if (!(path = strdup(attempt_dir)) || asprintf(&c->files_dir, "%s/files", attempt_dir) < 0) {
        c->files_dir = NULL;
        r = atx_error_set(-ENOMEM, "out of memory");
        goto fail;
    }
    /* The attempt's folder is usually there already. */
    if (mkdir(path, 0755) < 0 && errno != EEXIST && (r = mkdir_p(path)) < 0) {
        r = atx_error_set(r, "cannot create %s: %s", path, strerror(-r));
        goto fail;
    }
    if (mkdir(c->files_dir, 0755) < 0 && errno != EEXIST) {
        r = atx_error_set(-errno, "cannot create %s: %s", c->files_dir, strerror(errno));
        goto fail;
    }
    free(path);
    if (asprintf(&path, "%s/results", attempt_dir) < 0) {
        path = NULL;
        r = atx_error_set(-ENOMEM, "out of memory");
        goto fail;
    }
    c->results_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (c->results_fd < 0) {
        r = atx_error_set(-errno, "cannot create %s: %s", path, strerror(errno));
        goto fail;
    }
    if (!(c->tok = json_tokener_new_ex(FMF_CONTROL_DEPTH_MAX + 1))) {
        r = atx_error_set(-ENOMEM, "out of memory");
        goto fail;
    }
    json_tokener_set_flags(c->tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
                                   JSON_TOKENER_VALIDATE_UTF8);
    free(path);
    *out = c;
    return 0;
fail:
    free(path);
    fmf_control_free(c);
    return r;
}

void fmf_control_free(fmf_control *c)
{
    if (!c)
        return;
    if (c->up_fd >= 0)
        close(c->up_fd);
    if (c->results_fd >= 0)
        close(c->results_fd);
    for (rec *r = c->pend_head, *next; r; r = next) {
        next = r->next;
        rec_free(r);
    }
    hmap_release(&c->pending);
    hmap_release(&c->testouts);
    rec_free(c->held_own);
    rec_free(c->cur);
    uploads_clear(c);
    for (size_t i = 0; i < c->n_links; i++)
        free(c->links[i]);
    free(c->links);
    for (size_t i = 0; i < c->n_res; i++) {
        free(c->res[i].line);
        for (char **p = c->res[i].paths; p && *p; p++)
            free(*p);
        free(c->res[i].paths);
    }
    json_object_put(c->parsed);
    hmap_release(&c->made);
    free(c->res);
    if (c->tok)
        json_tokener_free(c->tok);
    free(c->json);
    if (c->err != oom_text)
        free(c->err);
    free(c->files_dir);
    free(c);
}

/* ---- duration ---- */

int fmf_duration_spec_parse(const char *spec, fmf_duration_op *op, int64_t *ns)
{
    fmf_duration_op o = FMF_DURATION_SET;
    const char *p = spec;
    uint64_t v, unit = 1;

    if (!spec || !op || !ns)
        return ATX_EINVAL;
    if (strcmp(spec, "save") == 0 || strcmp(spec, "restore") == 0) {
        *op = spec[0] == 's' ? FMF_DURATION_SAVE : FMF_DURATION_RESTORE;
        *ns = 0;
        return 0;
    }
    if (*p == '+' || *p == '-') {
        o = *p == '+' ? FMF_DURATION_ADD : FMF_DURATION_SUB;
        p++;
    }
    size_t n = strspn(p, "0123456789");
    if (n == 0 || n > 19)
        return ATX_EINVAL;
    if (p[n]) {
        if (p[n + 1])
            return ATX_EINVAL;
        switch (p[n]) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        default: return ATX_EINVAL;
        }
    }
    char digits[20];
    memcpy(digits, p, n);
    digits[n] = '\0';
    if (!parse_count(digits, (uint64_t)INT64_MAX / 1000000000u / unit, &v))
        return ATX_EINVAL;
    *op = o;
    *ns = (int64_t)(v * unit * 1000000000u);
    return 0;
}
