/*
 * The Bud TMP client (../shared/BUD_API.md): HTTP with the client rules
 * (retries with backoff and Retry-After, one re-login on 401, an
 * Idempotency-Key on every results POST), the results spool and its replay,
 * and the identity (vault, app.properties, environment, flags).
 *
 * Shared by the bud aggregator plugin and the atx command. Nothing here
 * prints: problems come back as one sentence, warnings go to the log
 * callback. Secrets never reach a log line.
 */
#ifndef ATX_BUD_CLIENT_H
#define ATX_BUD_CLIENT_H

#include <atx.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* ---- identity ---- */

/* Where Bud is and who we are. Strings are owned (malloc'd). */
typedef struct bud_identity {
    char *backend;          /* base URL without /api; default http://localhost:8000 */
    char *token;            /* bearer: a user's or a runner's */
    char *runner_account;
    char *email;            /* for a re-login on 401 */
    char *password;
    char *api_key;          /* RUNNER_API_KEY: registration only */
    char *vault;            /* the vault's path (~/.bud/config.json) */
    char *properties;       /* the app.properties used, if any */
    char *warning;          /* one sentence for the user (an app.properties not used), or NULL */
} bud_identity;

/* What the command line gave (NULL: not given). */
typedef struct bud_flags {
    const char *backend, *token, *runner_account, *email, *password, *api_key;
    bool trust_properties;  /* credentials may go to app.properties' backend */
} bud_flags;

/*
 * Resolve with BUD_API.md's precedence: flags, environment (BUD_BACKEND_URL,
 * BUD_TOKEN, BUD_RUNNER_ACCOUNT, BUD_RUNNER_TOKEN, RUNNER_API_KEY),
 * app.properties (found upward from the working folder to the repository's
 * root or $HOME; non-secret keys only; used only when it is the user's own
 * and no one else can write it, else id->warning says why not), the vault.
 * Fails on a vault others can read, on an app.properties holding a secret
 * (naming the key), on a runner account that is not a name
 * (bud_account_valid), and when credentials from the flags or the
 * environment would go to a backend that only app.properties names and the
 * vault holds no token for (unless trust_properties or
 * BUD_TRUST_APP_PROPERTIES=1).
 */
int bud_identity_resolve(const bud_flags *flags, bud_identity *id, char *why, size_t whylen);
void bud_identity_release(bud_identity *id);

/* A runner account usable as a file name: 1 to 64 of [A-Za-z0-9._-], not
 * starting with '.'. */
bool bud_account_valid(const char *name);

/* The vault's default path: $HOME/.bud/config.json (malloc'd). */
char *bud_vault_path(void);
/* Store a runner's token (and port, backend) or, with account NULL, a
 * user's token under "_users"/email: the vault is rewritten atomically,
 * mode 0600, in a 0700 folder. */
int bud_vault_store(const char *vault, const char *account, const char *email,
                    const char *token, int port, const char *backend, char *why,
                    size_t whylen);
/* A runner's port from the vault, or 0. */
int bud_vault_port(const char *vault, const char *account);

/* ---- HTTP ---- */

typedef void (*bud_log_fn)(void *ud, atx_log_level level, const char *message);

typedef struct bud_client bud_client;

typedef struct bud_client_opts {
    const bud_identity *id;     /* borrowed; the token may be refreshed (copied) */
    bud_log_fn log;
    void *log_ud;
    int max_retries;            /* 0: the default, 5; negative: none */
    long backoff_ms;            /* first backoff; doubles (200) */
    long timeout_s;             /* per request (30) */
    /* A token got by logging in again, before it is used or stored: the
     * host masks it (a test may read the vault it goes to). */
    void (*on_token)(void *ud, const char *token);
    void *token_ud;
} bud_client_opts;

int bud_client_new(const bud_client_opts *o, bud_client **out, char *why, size_t whylen);
void bud_client_free(bud_client *c);
/* The token in use (it changes after a re-login). */
const char *bud_client_token(const bud_client *c);

typedef struct bud_resp {
    long status;            /* HTTP status; 0 when none came */
    char *body;             /* NUL-terminated (malloc'd), may be NULL */
    size_t len;
} bud_resp;
void bud_resp_release(bud_resp *r);

enum {
    BUD_AUTH = 1,           /* send the bearer token */
    BUD_API_KEY = 2,        /* send X-API-Key */
    BUD_RELOGIN = 4,        /* on 401, log in once and resend */
};

/*
 * One call with the client rules: connection errors and 429/500/502/503/504
 * are retried with exponential backoff (Retry-After honoured), at most
 * max_retries times. Returns 0 with resp filled when an answer came (any
 * status), or a negative code when none did (why says what happened).
 */
int bud_call(bud_client *c, const char *method, const char *path, const char *body,
             size_t len, const char *idem_key, unsigned flags, bud_resp *resp, char *why,
             size_t whylen);

/*
 * Open root/rel for reading beneath root without following any link, in
 * rel or at its end (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, else
 * one component at a time with O_NOFOLLOW); rel is relative, without
 * "..". Only a plain file with one name is opened: a link, a hard link, a
 * FIFO or a device is refused (why says which). *fd is O_CLOEXEC, the
 * caller's to close.
 */
int bud_open_beneath(const char *root, const char *rel, int *fd, char *why, size_t whylen);

/* POST /uploads: root/rel (opened with bud_open_beneath; curl reads the
 * open file, never the name) as multipart (run_id <= 0: none). A file
 * that cannot be opened so fails with no request sent. */
int bud_upload_file(bud_client *c, const char *root, const char *rel, long run_id,
                    const char *test_case, bud_resp *resp, char *why, size_t whylen);

/* ---- results: upload, spool, replay ---- */

enum { BUD_SENT = 0, BUD_SPOOLED = 1, BUD_DEAD = 2 };

/* A new Idempotency-Key: 32 hex digits. */
void bud_new_key(char key[33]);

/*
 * POST /results with the key. When it cannot be delivered the exact body is
 * spooled (spool_dir/<unix>-<key>.json, written atomically) or, when the
 * server refused it for good (4xx but 401/429), kept in spool_dir/dead/.
 * Returns BUD_SENT, BUD_SPOOLED, BUD_DEAD, or a negative code when even
 * the spool failed (why says so).
 */
int bud_post_results(bud_client *c, const char *spool_dir, const char *body, size_t len,
                     const char *key, char *why, size_t whylen);

/*
 * Replay the spool, oldest first, deleting each file the server took,
 * moving one answered 404 (or another final 4xx) to dead/, stopping at the
 * first that fails. Counts what was sent and what is left.
 */
int bud_replay(bud_client *c, const char *spool_dir, size_t *sent, size_t *left, char *why,
               size_t whylen);

/* The default spool: $HOME/.bud/spool/results, else a temp-folder spool
 * (malloc'd). */
char *bud_spool_dir(void);

/* Write data to dir/name atomically: nothing at that name until it is all
 * there (an unnamed temp file linked into place); durable: synced first,
 * so it also survives a power cut, not only a kill. */
int bud_write_atomic(const char *dir, const char *name, const char *data, size_t len,
                     mode_t mode, bool durable);

#endif
