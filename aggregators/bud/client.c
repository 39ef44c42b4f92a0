/*
 * The Bud TMP client: identity, HTTP with the client rules, and the results
 * spool. See client.h and ../shared/BUD_API.md.
 */
#define _GNU_SOURCE 1
#include "client.h"

#include <ctype.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_BACKEND "http://localhost:8000"

static void say(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    if (!why || !whylen)
        return;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

static int set_str(char **dst, const char *src)
{
    free(*dst);
    *dst = NULL;
    if (src && !(*dst = strdup(src)))
        return ATX_ENOMEM;
    return 0;
}

/* ---- the vault ---- */

char *bud_vault_path(void)
{
    const char *home = getenv("HOME");
    char *p;
    if (!home || !*home)
        return NULL;
    return asprintf(&p, "%s/.bud/config.json", home) < 0 ? NULL : p;
}

/* The vault as JSON; an empty object when missing. Refuses one that others
 * can read: it holds tokens. */
static int vault_read(const char *path, json_object **out, char *why, size_t whylen)
{
    struct stat st;

    *out = NULL;
    if (stat(path, &st) < 0) {
        if (errno != ENOENT) {
            say(why, whylen, "cannot read the vault %s: %s", path, strerror(errno));
            return -errno;
        }
        *out = json_object_new_object();
        return 0;
    }
    if (st.st_mode & 077) {
        say(why, whylen, "the vault %s can be read by others (mode %04o): it holds tokens; "
            "chmod 600 it", path, (unsigned)(st.st_mode & 07777));
        return ATX_EINVAL;
    }
    json_object *o = json_object_from_file(path);
    if (!o || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        say(why, whylen, "the vault %s is not a JSON object", path);
        return ATX_EPARSE;
    }
    *out = o;
    return 0;
}

static const char *jstr(json_object *o, const char *key)
{
    json_object *v;
    if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

int bud_write_atomic(const char *dir, const char *name, const char *data, size_t len,
                     mode_t mode, bool durable)
{
    char target[PATH_MAX], proc[64];
    int fd, dfd, e = 0;

    snprintf(target, sizeof(target), "%s/%s", dir, name);
    /* An unnamed file, linked into place once complete: a kill at any
     * moment leaves either nothing or the whole file. */
    fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, mode);
    bool named = false;
    char tmp[PATH_MAX];
    if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        snprintf(tmp, sizeof(tmp), "%s/.%s.%d.tmp", dir, name, (int)getpid());
        unlink(tmp); /* left by a killed writer of this pid */
        fd = open(tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, mode);
        named = true;
    }
    if (fd < 0)
        return -errno;
    fchmod(fd, mode);
    for (size_t off = 0; off < len;) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            e = n < 0 ? -errno : -EIO;
            break;
        }
        off += (size_t)n;
    }
    if (e == 0 && durable && fsync(fd) < 0)
        e = -errno;
    if (e == 0) {
        if (named) {
            if (rename(tmp, target) < 0)
                e = -errno;
        } else {
            snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
            /* A new name: linked straight into place. An existing one (the
             * vault): linked to a fresh name, renamed over it. */
            if (linkat(AT_FDCWD, proc, AT_FDCWD, target, AT_SYMLINK_FOLLOW) < 0) {
                int why_not = errno;
                char fresh[PATH_MAX + 32];
                snprintf(fresh, sizeof(fresh), "%s/.%s.%d.new", dir, name, (int)getpid());
                unlink(fresh);
                errno = why_not;
                if (why_not != EEXIST ||
                    linkat(AT_FDCWD, proc, AT_FDCWD, fresh, AT_SYMLINK_FOLLOW) < 0)
                    e = -errno;
                else if (rename(fresh, target) < 0) {
                    e = -errno;
                    unlink(fresh);
                }
            }
        }
    }
    if (e < 0 && named)
        unlink(tmp);
    close(fd);
    if (e == 0 && durable && (dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return e;
}

static int mkdirs(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int bud_vault_store(const char *vault, const char *account, const char *email,
                    const char *token, int port, const char *backend, char *why,
                    size_t whylen)
{
    json_object *o, *entry;
    char dir[PATH_MAX];
    int r;

    if (!vault) {
        say(why, whylen, "no vault path (HOME is not set)");
        return ATX_EINVAL;
    }
    snprintf(dir, sizeof(dir), "%s", vault);
    char *slash = strrchr(dir, '/');
    const char *name = slash ? slash + 1 : vault;
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof(dir), ".");
    if ((r = mkdirs(dir, 0700)) < 0) {
        say(why, whylen, "cannot make %s: %s", dir, strerror(-r));
        return r;
    }
    if ((r = vault_read(vault, &o, why, whylen)) < 0)
        return r;
    entry = json_object_new_object();
    json_object_object_add(entry, "token", json_object_new_string(token));
    if (backend)
        json_object_object_add(entry, "backend", json_object_new_string(backend));
    if (account) {
        if (port > 0)
            json_object_object_add(entry, "port", json_object_new_int(port));
        json_object_object_add(o, account, entry);
    } else {
        json_object *users;
        if (!json_object_object_get_ex(o, "_users", &users) ||
            !json_object_is_type(users, json_type_object)) {
            users = json_object_new_object();
            json_object_object_add(o, "_users", users);
        }
        json_object_object_add(users, email ? email : "", entry);
    }
    const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE);
    r = bud_write_atomic(dir, name, text, strlen(text), 0600, true);
    json_object_put(o);
    if (r < 0)
        say(why, whylen, "cannot write the vault %s: %s", vault, strerror(-r));
    return r;
}

int bud_vault_port(const char *vault, const char *account)
{
    json_object *o, *a, *v;
    int port = 0;
    if (!vault || !account || vault_read(vault, &o, NULL, 0) < 0)
        return 0;
    if (json_object_object_get_ex(o, account, &a) && json_object_object_get_ex(a, "port", &v))
        port = json_object_get_int(v);
    json_object_put(o);
    return port;
}

/* ---- app.properties ---- */

/* Keys that must never be in a project file. */
static bool secret_key(const char *key)
{
    static const char *const words[] = { "token", "password", "passwd", "secret", "apikey",
                                         "api_key", "api-key", "credential" };
    char low[256];
    size_t i;
    for (i = 0; key[i] && i + 1 < sizeof(low); i++)
        low[i] = (char)tolower((unsigned char)key[i]);
    low[i] = '\0';
    for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strstr(low, words[i]))
            return true;
    return false;
}

/* Where the upward search for app.properties ends: a repository's root
 * (the folder with .git) or the home folder. Above them live files the
 * project did not put there. */
static bool search_ends(const char *dir, const struct stat *home)
{
    char git[PATH_MAX + 8];
    struct stat st;
    snprintf(git, sizeof(git), "%s/.git", strcmp(dir, "/") ? dir : "");
    if (lstat(git, &st) == 0)
        return true;
    return home && stat(dir, &st) == 0 && st.st_dev == home->st_dev && st.st_ino == home->st_ino;
}

/* Find app.properties upward from the working folder (to the repository's
 * root or $HOME); read budBackend and budRunnerAccount. One that is not
 * the user's own, or that others can write, is not used (id->warning
 * says so): anyone who can write it could send us to their server. */
static int read_properties(bud_identity *id, char **backend, char **account, char *why,
                           size_t whylen)
{
    char dir[PATH_MAX], path[PATH_MAX + 32];
    const char *home = getenv("HOME");
    struct stat hst, st;
    bool have_home = home && *home && stat(home, &hst) == 0;
    FILE *f = NULL;
    int fd;

    if (!getcwd(dir, sizeof(dir)))
        return 0;
    for (;;) {
        snprintf(path, sizeof(path), "%s/app.properties", strcmp(dir, "/") ? dir : "");
        /* Not blocking on a FIFO someone left in its place, not through a
         * link (its target's owner says nothing of who placed it). */
        if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | O_NOFOLLOW)) >= 0)
            break;
        if (errno == ELOOP) {
            if (asprintf(&id->warning, "ignored %s: it is a symbolic link; an app.properties "
                         "is used only when it is yours and no one else can write it", path) < 0)
                id->warning = NULL;
            return 0;
        }
        if (errno != ENOENT && errno != ENOTDIR) {
            if (asprintf(&id->warning, "ignored %s: %s", path, strerror(errno)) < 0)
                id->warning = NULL;
            return 0;
        }
        if (search_ends(dir, have_home ? &hst : NULL) || strcmp(dir, "/") == 0)
            return 0;
        char *slash = strrchr(dir, '/');
        if (slash == dir)
            strcpy(dir, "/");
        else
            *slash = '\0';
    }
    const char *bad = NULL;
    char because[128];
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        bad = "it is not a plain file";
    else if (st.st_uid != geteuid()) {
        snprintf(because, sizeof(because), "it belongs to uid %u, not to you",
                 (unsigned)st.st_uid);
        bad = because;
    } else if (st.st_mode & 022) {
        snprintf(because, sizeof(because), "others can write it (mode %04o)",
                 (unsigned)(st.st_mode & 07777));
        bad = because;
    } else {
        /* Nor may others replace it: its folder must be as safe. */
        struct stat dst;
        if (stat(dir, &dst) < 0) {
            bad = "its folder cannot be checked";
        } else if ((dst.st_uid != geteuid() && dst.st_uid != 0) ||
                   ((dst.st_mode & 022) && !(dst.st_mode & S_ISVTX))) {
            snprintf(because, sizeof(because), "others can replace it (its folder %s)",
                     dst.st_uid != geteuid() && dst.st_uid != 0 ? "is not yours" : "is writable");
            bad = because;
        }
    }
    if (bad || !(f = fdopen(fd, "r"))) {
        close(fd);
        if (asprintf(&id->warning, "ignored %s: %s; an app.properties is used only when it "
                     "is yours and no one else can write it", path,
                     bad ? bad : strerror(errno)) < 0)
            id->warning = NULL;
        return 0;
    }
    char line[4096];
    int lineno = 0, r = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char *p = line;
        while (isspace((unsigned char)*p))
            p++;
        if (!*p || *p == '#' || *p == '!')
            continue;
        char *sep = strpbrk(p, "=:");
        if (!sep)
            continue;
        char *kend = sep;
        while (kend > p && isspace((unsigned char)kend[-1]))
            kend--;
        *kend = '\0';
        char *v = sep + 1;
        while (isspace((unsigned char)*v))
            v++;
        v[strcspn(v, "\r\n")] = '\0';
        for (size_t n = strlen(v); n && isspace((unsigned char)v[n - 1]);)
            v[--n] = '\0';
        if (secret_key(p)) {
            say(why, whylen, "%s:%d holds the secret key '%s': secrets belong in the vault "
                "(~/.bud/config.json, mode 0600) or the environment, never in a project file",
                path, lineno, p);
            r = ATX_EINVAL;
            break;
        }
        if (strcmp(p, "budBackend") == 0 && *v)
            r = set_str(backend, v);
        else if (strcmp(p, "budRunnerAccount") == 0 && *v)
            r = set_str(account, v);
        if (r < 0)
            break;
    }
    fclose(f);
    if (r == 0)
        r = set_str(&id->properties, path);
    return r;
}

void bud_identity_release(bud_identity *id)
{
    free(id->backend);
    free(id->token);
    free(id->runner_account);
    free(id->email);
    free(id->password);
    free(id->api_key);
    free(id->vault);
    free(id->properties);
    free(id->warning);
    memset(id, 0, sizeof(*id));
}

bool bud_account_valid(const char *name)
{
    size_t n = strlen(name);
    if (n < 1 || n > 64 || name[0] == '.')
        return false;
    for (; *name; name++)
        if (!(isalnum((unsigned char)*name) || *name == '.' || *name == '_' || *name == '-'))
            return false;
    return true;
}

/* Two backend URLs naming the same server (trailing "/" and "/api" aside). */
static bool same_backend(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    while (la && a[la - 1] == '/')
        la--;
    while (lb && b[lb - 1] == '/')
        lb--;
    if (la >= 4 && strncmp(a + la - 4, "/api", 4) == 0)
        la -= 4;
    if (lb >= 4 && strncmp(b + lb - 4, "/api", 4) == 0)
        lb -= 4;
    return la == lb && strncasecmp(a, b, la) == 0;
}

static const char *first(const char *a, const char *b)
{
    return a && *a ? a : b && *b ? b : NULL;
}

int bud_identity_resolve(const bud_flags *fl, bud_identity *id, char *why, size_t whylen)
{
    static const bud_flags none;
    char *pbackend = NULL, *paccount = NULL;
    json_object *vault = NULL;
    int r;

    if (!fl)
        fl = &none;
    memset(id, 0, sizeof(*id));
    if ((r = read_properties(id, &pbackend, &paccount, why, whylen)) < 0)
        goto out;
    id->vault = bud_vault_path();
    if (id->vault && (r = vault_read(id->vault, &vault, why, whylen)) < 0)
        goto out;

    const char *account = first(fl->runner_account, first(getenv("BUD_RUNNER_ACCOUNT"), paccount));
    const char *email = first(fl->email, getenv("BUD_USERNAME"));
    /* The vault's entry: the runner's when an account is known, else the
     * user's. */
    json_object *ventry = NULL, *users;
    if (vault && account)
        json_object_object_get_ex(vault, account, &ventry);
    if (vault && !ventry && email && json_object_object_get_ex(vault, "_users", &users))
        json_object_object_get_ex(users, email, &ventry);
    const char *backend = first(fl->backend, first(getenv("BUD_BACKEND_URL"),
                                                   first(pbackend, jstr(ventry, "backend"))));
    const char *token = first(fl->token, first(getenv("BUD_TOKEN"), getenv("BUD_RUNNER_TOKEN")));
    const char *vbackend = jstr(ventry, "backend");
    if (account && !bud_account_valid(account)) {
        say(why, whylen, "runner account '%s' (from %s) is not a name: 1 to 64 letters, digits, "
            "'.', '_' or '-', not starting with '.'", account,
            account == fl->runner_account ? "the flags" : account == paccount
            ? id->properties : "BUD_RUNNER_ACCOUNT");
        r = ATX_EINVAL;
        goto out;
    }
    /* Credentials from the flags or the environment go only to a backend
     * the user named (flags, environment) or the vault holds a token for:
     * a project's app.properties must not be able to point them elsewhere. */
    const char *given = first(fl->token, NULL) ? "--token" : first(getenv("BUD_TOKEN"), NULL)
                        ? "BUD_TOKEN" : first(getenv("BUD_RUNNER_TOKEN"), NULL)
                        ? "BUD_RUNNER_TOKEN" : first(fl->password, NULL) ? "--password"
                        : first(getenv("BUD_PASSWORD"), NULL) ? "BUD_PASSWORD"
                        : first(fl->api_key, NULL) ? "--api-key"
                        : first(getenv("RUNNER_API_KEY"), NULL) ? "RUNNER_API_KEY" : NULL;
    const char *trust = getenv("BUD_TRUST_APP_PROPERTIES");
    if (given && pbackend && backend == pbackend && !fl->trust_properties &&
        !(trust && strcmp(trust, "1") == 0) && !(vbackend && same_backend(vbackend, pbackend))) {
        say(why, whylen, "%s names the backend %s, which the flags, the environment and the "
            "vault do not: the credentials from %s are not sent there (name it with "
            "--backend-url or BUD_BACKEND_URL, or set BUD_TRUST_APP_PROPERTIES=1)",
            id->properties, pbackend, given);
        r = ATX_EINVAL;
        goto out;
    }
    /* A vault token goes only to the server it was issued by: a project's
     * app.properties must not be able to point it elsewhere. */
    if (!token && jstr(ventry, "token") &&
        (!vbackend || same_backend(vbackend, backend ? backend : DEFAULT_BACKEND)))
        token = jstr(ventry, "token");
    if ((r = set_str(&id->backend, backend ? backend : DEFAULT_BACKEND)) < 0 ||
        (r = set_str(&id->token, token)) < 0 || (r = set_str(&id->runner_account, account)) < 0 ||
        (r = set_str(&id->email, email)) < 0 ||
        (r = set_str(&id->password, first(fl->password, getenv("BUD_PASSWORD")))) < 0 ||
        (r = set_str(&id->api_key, first(fl->api_key, getenv("RUNNER_API_KEY")))) < 0)
        goto out;
    /* A trailing slash or /api would double up in paths. */
    size_t n = strlen(id->backend);
    while (n && id->backend[n - 1] == '/')
        id->backend[--n] = '\0';
    if (n >= 4 && strcmp(id->backend + n - 4, "/api") == 0)
        id->backend[n - 4] = '\0';
out:
    json_object_put(vault);
    free(pbackend);
    free(paccount);
    if (r < 0)
        bud_identity_release(id);
    return r;
}

/* ---- HTTP ---- */

struct bud_client {
    CURL *curl;
    bud_identity id;        /* a copy: the token may change */
    bud_log_fn log;
    void *log_ud;
    int max_retries;
    long backoff_ms, timeout_s;
    void (*on_token)(void *ud, const char *token);
    void *token_ud;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static void logf_(bud_client *c, atx_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void logf_(bud_client *c, atx_log_level lvl, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    if (!c->log)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    c->log(c->log_ud, lvl, msg);
}

int bud_client_new(const bud_client_opts *o, bud_client **out, char *why, size_t whylen)
{
    bud_client *c = calloc(1, sizeof(*c));
    const bud_identity *id = o->id;

    pthread_once(&curl_once, curl_init_once);
    if (!c || !(c->curl = curl_easy_init())) {
        free(c);
        say(why, whylen, "cannot start an HTTP client");
        return ATX_ENOMEM;
    }
    if (set_str(&c->id.backend, id->backend ? id->backend : DEFAULT_BACKEND) < 0 ||
        set_str(&c->id.token, id->token) < 0 || set_str(&c->id.email, id->email) < 0 ||
        set_str(&c->id.password, id->password) < 0 || set_str(&c->id.api_key, id->api_key) < 0 ||
        set_str(&c->id.vault, id->vault) < 0 ||
        set_str(&c->id.runner_account, id->runner_account) < 0) {
        bud_client_free(c);
        return ATX_ENOMEM;
    }
    c->log = o->log;
    c->log_ud = o->log_ud;
    c->max_retries = o->max_retries > 0 ? o->max_retries : o->max_retries < 0 ? 0 : 5;
    c->backoff_ms = o->backoff_ms > 0 ? o->backoff_ms : 200;
    c->timeout_s = o->timeout_s > 0 ? o->timeout_s : 30;
    c->on_token = o->on_token;
    c->token_ud = o->token_ud;
    *out = c;
    return 0;
}

void bud_client_free(bud_client *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    bud_identity_release(&c->id);
    free(c);
}

const char *bud_client_token(const bud_client *c) { return c->id.token; }

void bud_resp_release(bud_resp *r)
{
    free(r->body);
    memset(r, 0, sizeof(*r));
}

typedef struct buf {
    char *data;
    size_t len, cap;
} buf;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    buf *b = ud;
    size_t len = size * n;
    /* Answers are small; a huge one is cut (not an error). */
    if (b->len + len + 1 > b->cap) {
        if (b->len + len + 1 > (8u << 20))
            return len;
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d)
            return 0;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, len);
    b->len += len;
    b->data[b->len] = '\0';
    return len;
}

typedef struct hdrs {
    long retry_after;       /* seconds, -1 none */
} hdrs;

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    hdrs *h = ud;
    size_t len = size * n;
    if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
        char *end;
        long v = strtol(p + 12, &end, 10);
        if (end != p + 12 && v >= 0)
            h->retry_after = v;
    }
    return len;
}

static bool retryable(long status)
{
    return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

/* One attempt. Returns 0 when an answer came, else a negative code. */
static int perform(bud_client *c, const char *method, const char *url, const char *body,
                   size_t len, const char *idem_key, unsigned flags, curl_mime *mime,
                   bud_resp *resp, hdrs *h, char *why, size_t whylen)
{
    CURL *k = c->curl;
    struct curl_slist *hl = NULL;
    char line[4096];
    buf b = { 0 };
    CURLcode rc;

    curl_easy_reset(k);
    curl_easy_setopt(k, CURLOPT_URL, url);
    curl_easy_setopt(k, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(k, CURLOPT_TIMEOUT, c->timeout_s);
    curl_easy_setopt(k, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(k, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(k, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(k, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(k, CURLOPT_HEADERDATA, h);
    curl_easy_setopt(k, CURLOPT_USERAGENT, "atx/" ATX_VERSION_STRING);
    hl = curl_slist_append(hl, "Accept: application/json");
    if (mime) {
        curl_easy_setopt(k, CURLOPT_MIMEPOST, mime);
    } else if (body) {
        hl = curl_slist_append(hl, "Content-Type: application/json");
        curl_easy_setopt(k, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(k, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    curl_easy_setopt(k, CURLOPT_CUSTOMREQUEST, method);
    /* No "Expect: 100-continue" round trip. */
    hl = curl_slist_append(hl, "Expect:");
    if ((flags & BUD_AUTH) && c->id.token) {
        snprintf(line, sizeof(line), "Authorization: Bearer %s", c->id.token);
        hl = curl_slist_append(hl, line);
    }
    if ((flags & BUD_API_KEY) && c->id.api_key) {
        snprintf(line, sizeof(line), "X-API-Key: %s", c->id.api_key);
        hl = curl_slist_append(hl, line);
    }
    if (idem_key) {
        snprintf(line, sizeof(line), "Idempotency-Key: %s", idem_key);
        hl = curl_slist_append(hl, line);
    }
    curl_easy_setopt(k, CURLOPT_HTTPHEADER, hl);
    h->retry_after = -1;
    rc = curl_easy_perform(k);
    curl_slist_free_all(hl);
    if (rc != CURLE_OK) {
        say(why, whylen, "%s %s: %s", method, url, curl_easy_strerror(rc));
        free(b.data);
        return ATX_EIO;
    }
    curl_easy_getinfo(k, CURLINFO_RESPONSE_CODE, &resp->status);
    resp->body = b.data;
    resp->len = b.len;
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* POST /auth/login with the configured email and password; keeps the new
 * token (and stores it in the vault). */
static int relogin(bud_client *c, char *why, size_t whylen)
{
    char url[2048];
    hdrs h;
    bud_resp r = { 0 };
    json_object *o = json_object_new_object(), *v;
    int e;

    json_object_object_add(o, "email", json_object_new_string(c->id.email));
    json_object_object_add(o, "password", json_object_new_string(c->id.password));
    const char *body = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    snprintf(url, sizeof(url), "%s/api/auth/login", c->id.backend);
    e = perform(c, "POST", url, body, strlen(body), NULL, 0, NULL, &r, &h, why, whylen);
    json_object_put(o);
    if (e < 0)
        return e;
    json_object *ans = r.status == 200 && r.body ? json_tokener_parse(r.body) : NULL;
    const char *tok = ans && json_object_object_get_ex(ans, "access_token", &v)
                          ? json_object_get_string(v) : NULL;
    if (!tok) {
        say(why, whylen, "logging in to %s as %s failed (HTTP %ld)", c->id.backend,
            c->id.email, r.status);
        json_object_put(ans);
        bud_resp_release(&r);
        return ATX_EINVAL;
    }
    if (c->on_token)
        c->on_token(c->token_ud, tok);
    e = set_str(&c->id.token, tok);
    json_object_put(ans);
    bud_resp_release(&r);
    if (e < 0)
        return e;
    logf_(c, ATX_LOG_INFO, "logged in to %s again as %s", c->id.backend, c->id.email);
    char vwhy[512];
    if (c->id.vault && bud_vault_store(c->id.vault, NULL, c->id.email, c->id.token, 0,
                                       c->id.backend, vwhy, sizeof(vwhy)) < 0)
        logf_(c, ATX_LOG_WARNING, "%s", vwhy);
    return 0;
}

/* A file handed to curl from its open descriptor: nothing is opened by
 * name once it was checked. */
typedef struct upload {
    int fd;
    curl_off_t size;        /* from fstat when opened: what is sent */
    curl_off_t off;         /* the next byte curl reads (it may rewind) */
    const char *name;       /* the part's filename */
    long run_id;
    const char *test_case;
} upload;

static size_t upload_read(char *dst, size_t size, size_t n, void *ud)
{
    upload *u = ud;
    size_t want = size * n;
    if (u->off >= u->size)
        return 0;
    if ((curl_off_t)want > u->size - u->off)
        want = (size_t)(u->size - u->off);
    ssize_t got;
    while ((got = pread(u->fd, dst, want, (off_t)u->off)) < 0 && errno == EINTR)
        ;
    /* Shorter than it was when opened: the part cannot be whole. */
    if (got <= 0)
        return CURL_READFUNC_ABORT;
    u->off += got;
    return (size_t)got;
}

static int upload_seek(void *ud, curl_off_t offset, int origin)
{
    upload *u = ud;
    if (origin != SEEK_SET || offset < 0 || offset > u->size)
        return CURL_SEEKFUNC_CANTSEEK;
    u->off = offset;
    return CURL_SEEKFUNC_OK;
}

static int call(bud_client *c, const char *method, const char *path, const char *body,
                size_t len, const char *idem_key, unsigned flags, upload *file,
                bud_resp *resp, char *why, size_t whylen)
{
    char url[2048];
    bool relogged = false;
    int e = 0;

    snprintf(url, sizeof(url), "%s/api%s", c->id.backend, path);
    memset(resp, 0, sizeof(*resp));
    for (int attempt = 0;; attempt++) {
        hdrs h;
        curl_mime *mime = NULL;
        if (file) {
            char num[32];
            mime = curl_mime_init(c->curl);
            curl_mimepart *part = curl_mime_addpart(mime);
            curl_mime_name(part, "file");
            file->off = 0;
            curl_mime_data_cb(part, file->size, upload_read, upload_seek, NULL, file);
            curl_mime_filename(part, file->name);
            curl_mime_type(part, "application/octet-stream");
            if (file->run_id > 0) {
                snprintf(num, sizeof(num), "%ld", file->run_id);
                part = curl_mime_addpart(mime);
                curl_mime_name(part, "run_id");
                curl_mime_data(part, num, CURL_ZERO_TERMINATED);
            }
            if (file->test_case) {
                part = curl_mime_addpart(mime);
                curl_mime_name(part, "test_case");
                curl_mime_data(part, file->test_case, CURL_ZERO_TERMINATED);
            }
        }
        bud_resp_release(resp);
        e = perform(c, method, url, body, len, idem_key, flags, mime, resp, &h, why, whylen);
        curl_mime_free(mime);
        if (e == 0 && resp->status == 401 && (flags & BUD_RELOGIN) && !relogged &&
            c->id.email && c->id.password) {
            /* Once: log in, resend the same payload (same key). */
            relogged = true;
            char lwhy[512];
            if (relogin(c, lwhy, sizeof(lwhy)) < 0) {
                logf_(c, ATX_LOG_WARNING, "%s", lwhy);
                return 0;
            }
            /* The resend carries the new token (there may have been none). */
            flags = (flags | BUD_AUTH) & ~(unsigned)BUD_API_KEY;
            attempt--;
            continue;
        }
        bool again = e < 0 || retryable(resp->status);
        if (!again || attempt >= c->max_retries)
            break;
        /* Doubling, capped: a shift by a large retry count would overflow. */
        long wait = c->backoff_ms;
        for (int i = 0; i < attempt && wait < 30000; i++)
            wait *= 2;
        if (wait > 30000)
            wait = 30000;
        if (e == 0 && h.retry_after >= 0)
            wait = (h.retry_after > 120 ? 120 : h.retry_after) * 1000;
        logf_(c, ATX_LOG_WARNING, "%s %s: %s; retrying in %.1f s (%d of %d)", method, path,
              e < 0 ? why : resp->status == 429 ? "rate limited" : "server error", wait / 1e3,
              attempt + 1, c->max_retries);
        sleep_ms(wait);
    }
    if (e == 0 && retryable(resp->status))
        say(why, whylen, "%s %s: HTTP %ld after %d retries", method, url, resp->status,
            c->max_retries);
    return e;
}

int bud_call(bud_client *c, const char *method, const char *path, const char *body,
             size_t len, const char *idem_key, unsigned flags, bud_resp *resp, char *why,
             size_t whylen)
{
    return call(c, method, path, body, len, idem_key, flags, NULL, resp, why, whylen);
}

/* openat2's RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS by hand: one component
 * at a time, none a link, no "..". */
static int open_fallback(int dfd, const char *rel, int flags)
{
    char path[PATH_MAX], *save = NULL;
    int cur = dfd;

    if (snprintf(path, sizeof(path), "%s", rel) >= (int)sizeof(path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *part = strtok_r(path, "/", &save); part;) {
        char *after = strtok_r(NULL, "/", &save);
        int next = -1;
        if (strcmp(part, "..") == 0)
            errno = EXDEV;
        else if (strcmp(part, ".") == 0) {
            part = after;
            continue;
        } else
            next = openat(cur, part, after ? O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
                                           : flags | O_NOFOLLOW);
        int e = errno;
        if (cur != dfd)
            close(cur);
        if (next < 0) {
            errno = e;
            return -1;
        }
        cur = next;
        part = after;
    }
    if (cur == dfd) {
        errno = EISDIR;
        return -1;
    }
    return cur;
}

int bud_open_beneath(const char *root, const char *rel, int *out, char *why, size_t whylen)
{
    struct open_how how = {
        .flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    struct stat st;
    int dfd, fd, e;

    if (!*rel || rel[0] == '/') {
        say(why, whylen, "%s is not a path inside %s", rel, root);
        return ATX_EINVAL;
    }
    if ((dfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
        say(why, whylen, "cannot open %s: %s", root, strerror(errno));
        return -errno;
    }
    fd = (int)syscall(SYS_openat2, dfd, rel, &how, sizeof(how));
    if (fd < 0 && (errno == ENOSYS || errno == EPERM))
        /* No openat2: before Linux 5.6, or a seccomp filter that does not
         * know it (older container runtimes answer EPERM). */
        fd = open_fallback(dfd, rel, (int)how.flags);
    e = errno;
    close(dfd);
    if (fd < 0) {
        if (e == ELOOP || e == EXDEV || e == ENOTDIR)
            say(why, whylen, "%s/%s is (or passes through) a link, or leads out of %s: "
                "not opened", root, rel, root);
        else
            say(why, whylen, "cannot open %s/%s: %s", root, rel, strerror(e));
        return -e;
    }
    /* Only a plain file of its own: a device or FIFO could hold the upload
     * forever, and a second name (a hard link) could be anyone's file. */
    if (fstat(fd, &st) < 0) {
        e = errno;
        close(fd);
        say(why, whylen, "cannot read %s/%s: %s", root, rel, strerror(e));
        return -e;
    }
    if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
        say(why, whylen, "%s/%s is %s: not opened", root, rel,
            S_ISDIR(st.st_mode) ? "a folder" : !S_ISREG(st.st_mode) ? "not a plain file"
            : "a file with several names (a hard link)");
        close(fd);
        return ATX_EINVAL;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    *out = fd;
    return 0;
}

int bud_upload_file(bud_client *c, const char *root, const char *rel, long run_id,
                    const char *test_case, bud_resp *resp, char *why, size_t whylen)
{
    struct stat st;
    int fd, e;

    memset(resp, 0, sizeof(*resp));
    if ((e = bud_open_beneath(root, rel, &fd, why, whylen)) < 0)
        return e;
    if (fstat(fd, &st) < 0) {
        e = -errno;
        close(fd);
        return e;
    }
    const char *slash = strrchr(rel, '/');
    upload u = { .fd = fd, .size = (curl_off_t)st.st_size, .name = slash ? slash + 1 : rel,
                 .run_id = run_id, .test_case = test_case };
    e = call(c, "POST", "/uploads", NULL, 0, NULL, BUD_AUTH | BUD_RELOGIN, &u, resp, why,
             whylen);
    close(fd);
    return e;
}

/* ---- results, spool, replay ---- */

void bud_new_key(char key[33])
{
    unsigned char r[16];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        for (size_t i = 0; i < sizeof(r); i++)
            r[i] = (unsigned char)((ts.tv_nsec >> (i % 8)) ^ (getpid() >> (i % 4)) ^ i * 37);
    }
    for (size_t i = 0; i < sizeof(r); i++)
        snprintf(key + 2 * i, 3, "%02x", r[i]);
}

char *bud_spool_dir(void)
{
    const char *home = getenv("HOME");
    char *p = NULL;
    if (home && *home && asprintf(&p, "%s/.bud/spool/results", home) >= 0 &&
        mkdirs(p, 0700) == 0 && access(p, W_OK) == 0)
        return p;
    free(p);
    p = NULL;
    const char *tmp = getenv("TMPDIR");
    char *top = NULL;
    if (asprintf(&top, "%s/atx-bud-spool-%d", tmp && *tmp ? tmp : "/tmp", (int)getuid()) < 0)
        return NULL;
    /* A shared folder: the spool's folder must be ours alone, or someone
     * could remove what is spooled or plant payloads to be sent with our
     * token. */
    struct stat st;
    mkdir(top, 0700);
    if (lstat(top, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != getuid() ||
        (st.st_mode & 077) || asprintf(&p, "%s/results", top) < 0 || mkdirs(p, 0700) < 0 ||
        lstat(p, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != getuid() ||
        (st.st_mode & 077)) {
        free(top);
        free(p);
        return NULL;
    }
    free(top);
    return p;
}

static int keep(const char *dir, const char *sub, const char *key, const char *body, size_t len,
                char *why, size_t whylen)
{
    char d[PATH_MAX], name[96];
    int r;
    snprintf(d, sizeof(d), "%s%s%s", dir, sub ? "/" : "", sub ? sub : "");
    if ((r = mkdirs(d, 0700)) < 0 ||
        (snprintf(name, sizeof(name), "%lld-%s.json", (long long)time(NULL), key),
         r = bud_write_atomic(d, name, body, len, 0600, true)) < 0) {
        say(why, whylen, "cannot spool results to %s: %s", d, strerror(-r));
        return r;
    }
    return 0;
}

/* The answer's detail, for messages. */
static void detail(const bud_resp *r, char *out, size_t len)
{
    json_object *o = r->body ? json_tokener_parse(r->body) : NULL, *d;
    if (o && json_object_object_get_ex(o, "detail", &d))
        snprintf(out, len, "%s", json_object_get_string(d));
    else
        snprintf(out, len, "%.200s", r->body ? r->body : "");
    json_object_put(o);
}

/* Send one payload: BUD_SENT, or why not: transient (spool) or final (dead). */
static int send_results(bud_client *c, const char *body, size_t len, const char *key,
                        char *why, size_t whylen)
{
    bud_resp r;
    unsigned flags = BUD_RELOGIN | (c->id.token ? BUD_AUTH : 0) |
                     (!c->id.token && c->id.api_key ? BUD_API_KEY : 0);
    int e = bud_call(c, "POST", "/results", body, len, key, flags, &r, why, whylen);
    if (e < 0)
        return BUD_SPOOLED;
    int out = BUD_SENT;
    if (r.status != 201 && r.status != 200) {
        char d[256];
        detail(&r, d, sizeof(d));
        bool final = r.status >= 400 && r.status < 500 && r.status != 401 && r.status != 429;
        say(why, whylen, "POST /api/results: HTTP %ld%s%s", r.status, *d ? ": " : "", d);
        out = final ? BUD_DEAD : BUD_SPOOLED;
        if (r.status == 404)
            out = -404; /* the caller decides */
    }
    bud_resp_release(&r);
    return out;
}

int bud_post_results(bud_client *c, const char *spool_dir, const char *body, size_t len,
                     const char *key, char *why, size_t whylen)
{
    int out = send_results(c, body, len, key, why, whylen);
    char kwhy[512];

    if (out == BUD_SENT)
        return BUD_SENT;
    if (out == -404)
        out = BUD_DEAD;
    if (keep(spool_dir, out == BUD_DEAD ? "dead" : NULL, key, body, len, kwhy,
             sizeof(kwhy)) < 0) {
        say(why, whylen, "%s", kwhy);
        return ATX_EIO;
    }
    return out;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rbe");
    char *data = NULL;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        rewind(f);
        if (n >= 0 && (data = malloc((size_t)n + 1)) && fread(data, 1, (size_t)n, f) == (size_t)n) {
            data[n] = '\0';
            *len = (size_t)n;
        } else {
            free(data);
            data = NULL;
        }
    }
    fclose(f);
    return data;
}

int bud_replay(bud_client *c, const char *spool_dir, size_t *sent, size_t *left, char *why,
               size_t whylen)
{
    DIR *d = opendir(spool_dir);
    struct dirent *de;
    char **names = NULL;
    size_t n = 0, cap = 0;
    int r = 0;

    *sent = *left = 0;
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.' || l < 6 || strcmp(de->d_name + l - 5, ".json") != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = realloc(names, cap * sizeof(char *));
            if (!nn)
                break;
            names = nn;
        }
        names[n++] = strdup(de->d_name);
    }
    closedir(d);
    /* <unix>-<key>.json: the name orders them oldest first (same width
     * for centuries). */
    if (n)
        qsort(names, n, sizeof(char *), cmp_name);
    size_t i;
    for (i = 0; i < n; i++) {
        char path[PATH_MAX], key[64] = "";
        size_t len = 0;
        snprintf(path, sizeof(path), "%s/%s", spool_dir, names[i]);
        const char *dash = strchr(names[i], '-');
        if (dash)
            snprintf(key, sizeof(key), "%.*s", (int)(strlen(dash + 1) - 5), dash + 1);
        char *body = slurp(path, &len);
        if (!body)
            continue;
        int out = send_results(c, body, len, *key ? key : NULL, why, whylen);
        if (out == BUD_SENT) {
            unlink(path);
            (*sent)++;
        } else if (out == -404 || out == BUD_DEAD) {
            /* The run it belongs to is gone, or the server will never take
             * it: out of the way, kept. */
            char dead[PATH_MAX], to[PATH_MAX + 128];
            snprintf(dead, sizeof(dead), "%s/dead", spool_dir);
            mkdirs(dead, 0700);
            snprintf(to, sizeof(to), "%s/%s", dead, names[i]);
            if (rename(path, to) == 0)
                logf_(c, ATX_LOG_WARNING, "spooled results %s moved to %s: %s", names[i], dead,
                      why);
        } else {
            free(body);
            break;
        }
        free(body);
    }
    *left = n - i;
    for (size_t j = 0; j < n; j++)
        free(names[j]);
    free(names);
    return r;
}
