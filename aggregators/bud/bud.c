/*
 * bud: results to Bud TMP while the run goes (../shared/BUD_API.md).
 *
 * The aggregator thread only turns each final result into a row and queues
 * it; an uploader thread of our own sends rows in batches (by count and by
 * time), so a slow or dead server never slows the run. Before its own
 * results it replays what earlier runs spooled. A batch that cannot be
 * delivered is spooled byte for byte; at the end the run fails (exit 3)
 * when anything stayed spooled.
 *
 * Configuration (all optional): backend, runner_account, email,
 * test_run_id (join a run; else one is created), test_suite_name,
 * url_test_software, ref_test_software, url_software_under_test,
 * ref_software_under_test, batch_size (500), batch_interval (5s),
 * spool (folder), artifacts (files to upload at the end; default the run's
 * junit.xml), max_retries (5), backoff (200ms). Secrets (token, password)
 * never come through the configuration, which is kept in the journal: they
 * come from the environment or the vault, or from the program that adds
 * this aggregator as a built-in (userdata: a bud_secrets).
 */
#define _GNU_SOURCE 1
#include "bud.h"

#include <atx/plugin/aggregator.h>
#include <atx/plugin/text.h>

#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct bud_state {
    atx_plugin_ctx *ctx;
    bud_identity id;
    bud_client *client;
    char *spool;
    long test_run_id;
    int64_t batch_size;
    int64_t interval_ns;
    json_object *run_fields;    /* test_suite_name, url_..., ref_... */
    json_object *artifacts;     /* array of paths, or NULL: the default */
    bool upload_files;          /* the files final results name, too */
    json_object *files;         /* [[path, test], ...] to upload at the end (under mu) */
    char results_dir[PATH_MAX];
    char run_id[128];
    size_t tests;
    size_t skip;                /* replayed results an earlier segment delivered */
    char *resend;               /* the batch an earlier segment had in flight, or NULL */
    char resend_key[33];        /* ... its Idempotency-Key */
    size_t resend_last;         /* ... its last row's stream position */
    size_t resend_rows;         /* ... and how many rows it has */
    size_t pos;                 /* results seen, replayed ones included */

    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    json_object **rows;         /* queued rows (under mu) */
    size_t *rowpos;             /* ... and the position of each in the stream */
    size_t nrows, cap;
    int64_t first_queued;       /* monotonic, of the oldest queued row */
    bool closing;
    const atx_summary *summary; /* at closing */

    /* the uploader's tally */
    size_t requests, sent_rows, spooled, dead, lost, replayed;
    bool unreachable;           /* a results request found no server */
    char last_error[512];
} bud_state;

/* A token got by logging in again: masked from then on. */
static void new_token(void *ud, const char *token)
{
    atx_plugin_ctx_add_secret(ud, token);
}

static void client_log(void *ud, atx_log_level lvl, const char *msg)
{
    atx_plugin_log(ud, lvl, "%s", msg);
}

static const char *cfg_str(atx_plugin_ctx *ctx, const char *key)
{
    const char *v = NULL;
    atx_plugin_config_string(ctx, key, &v);
    return v;
}

static int bud_create(atx_plugin_ctx *ctx, void **out)
{
    static const char *const keys[] = {
        "backend", "runner_account", "email", "test_run_id", "test_suite_name",
        "url_test_software", "ref_test_software", "url_software_under_test",
        "ref_software_under_test", "batch_size", "batch_interval", "spool", "artifacts",
        "max_retries", "backoff", "upload_files", NULL };
    const bud_secrets *sec = atx_plugin_ctx_userdata(ctx);
    bud_state *s;
    char why[1024];
    int r;

    if ((r = atx_plugin_config_check_keys(ctx, keys)) < 0)
        return r;
    if (!(s = calloc(1, sizeof(*s))))
        return ATX_ENOMEM;
    s->ctx = ctx;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    bud_flags fl = {
        .backend = cfg_str(ctx, "backend"),
        .runner_account = cfg_str(ctx, "runner_account"),
        .email = cfg_str(ctx, "email"),
        .token = sec ? sec->token : NULL,
        .password = sec ? sec->password : NULL,
    };
    if ((r = bud_identity_resolve(&fl, &s->id, why, sizeof(why))) < 0) {
        free(s);
        return atx_error_set(r, "bud: %s", why);
    }
    if (s->id.warning)
        atx_plugin_log(ctx, ATX_LOG_WARNING, "%s", s->id.warning);
    /* Whatever Bud credential a test finds (the vault is a file it may
     * read) is masked in what it writes. */
    if ((r = atx_plugin_ctx_add_secret(ctx, s->id.token)) < 0 ||
        (r = atx_plugin_ctx_add_secret(ctx, s->id.password)) < 0 ||
        (r = atx_plugin_ctx_add_secret(ctx, s->id.api_key)) < 0) {
        bud_identity_release(&s->id);
        free(s);
        return r;
    }
    if (!s->id.token && !(s->id.email && s->id.password)) {
        atx_plugin_log(ctx, ATX_LOG_WARNING, "no token (BUD_TOKEN, the vault) and no "
                       "login: uploads will be refused and spooled");
    }
    /* A missing key leaves the default in place. */
    int64_t run_id = 0, retries = 5, backoff = 200 * ATX_NSEC_PER_MSEC;
    s->batch_size = 500;
    s->interval_ns = 5 * ATX_NSEC_PER_SEC;
    if ((r = atx_plugin_config_int(ctx, "test_run_id", &run_id)) < 0 ||
        (r = atx_plugin_config_int(ctx, "batch_size", &s->batch_size)) < 0 ||
        (r = atx_plugin_config_duration(ctx, "batch_interval", &s->interval_ns)) < 0 ||
        (r = atx_plugin_config_int(ctx, "max_retries", &retries)) < 0 ||
        (r = atx_plugin_config_duration(ctx, "backoff", &backoff)) < 0) {
        bud_identity_release(&s->id);
        free(s);
        return r;
    }
    if (s->batch_size < 1 || s->batch_size > 100000 || run_id < 0 || retries < 0 ||
        retries > 1000 || backoff > 60 * ATX_NSEC_PER_SEC) {
        bud_identity_release(&s->id);
        free(s);
        return atx_error_set(ATX_EINVAL, "bud: batch_size must be 1 to 100000, test_run_id "
                             "not negative, max_retries 0 to 1000 and backoff at most 60s");
    }
    s->test_run_id = (long)run_id;
    int up = 1;
    atx_plugin_config_bool(ctx, "upload_files", &up);
    s->upload_files = up;
    s->files = json_object_new_array();
    const char *spool = cfg_str(ctx, "spool");
    s->spool = spool ? strdup(spool) : bud_spool_dir();
    s->run_fields = json_object_new_object();
    static const char *const fields[] = { "test_suite_name", "url_test_software",
                                          "ref_test_software", "url_software_under_test",
                                          "ref_software_under_test" };
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        const char *v = cfg_str(ctx, fields[i]);
        if (v)
            json_object_object_add(s->run_fields, fields[i], json_object_new_string(v));
    }
    const json_object *cfg = atx_plugin_ctx_config(ctx);
    json_object *a;
    if (cfg && json_object_object_get_ex(cfg, "artifacts", &a))
        s->artifacts = json_object_get(a);
    bud_client_opts co = { .id = &s->id, .log = client_log, .log_ud = ctx,
                           .on_token = new_token, .token_ud = ctx,
                           .max_retries = retries ? (int)retries : -1,
                           .backoff_ms = (long)(backoff / ATX_NSEC_PER_MSEC) };
    if (!s->spool || (r = bud_client_new(&co, &s->client, why, sizeof(why))) < 0) {
        bud_identity_release(&s->id);
        json_object_put(s->run_fields);
        json_object_put(s->artifacts);
        free(s->spool);
        free(s);
        return atx_error_set(ATX_ENOMEM, "bud: %s", why);
    }
    *out = s;
    return 0;
}

static void bud_destroy(void *state)
{
    bud_state *s = state;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->closing = true;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    for (size_t i = 0; i < s->nrows; i++)
        json_object_put(s->rows[i]);
    free(s->rows);
    free(s->rowpos);
    bud_client_free(s->client);
    bud_identity_release(&s->id);
    json_object_put(s->run_fields);
    json_object_put(s->artifacts);
    json_object_put(s->files);
    free(s->spool);
    free(s->resend);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

/* ---- progress: what a resumed run need not send again ---- */

/* One of our files in the results folder, read as we wrote it: a link a
 * test left in its place is not followed. */
static FILE *open_beneath(const bud_state *s, const char *name)
{
    int fd;
    FILE *f;
    if (bud_open_beneath(s->results_dir, name, &fd, NULL, 0) < 0)
        return NULL;
    if (!(f = fdopen(fd, "r")))
        close(fd);
    return f;
}

#define PROGRESS_FILE "bud-progress"

/* Results up to this stream position were delivered (or spooled). */
static void progress_write(bud_state *s, size_t pos)
{
    char text[32];
    snprintf(text, sizeof(text), "%zu\n", pos);
    /* Not synced: it must survive a kill, which it does once written; a
     * sync would widen the moment in which a kill makes a resume send a
     * delivered batch again. */
    if (bud_write_atomic(s->results_dir, PROGRESS_FILE, text, strlen(text), 0644, false) < 0)
        atx_plugin_log(s->ctx, ATX_LOG_WARNING, "cannot write %s/%s: a resumed run may send "
                       "some results twice", s->results_dir, PROGRESS_FILE);
}

/* Before a batch goes, the batch itself (its last position, key and
 * body): a kill after the server took it and before the progress says so
 * makes the resumed run send it again with the same key, which the server
 * knows, rather than its rows in a new batch under a new key. */
#define INFLIGHT_FILE "bud-inflight"

static void inflight_write(bud_state *s, size_t last, size_t rows, const char *key,
                           const char *body)
{
    char *text;
    int n = asprintf(&text, "%zu %zu %s\n%s", last, rows, key, body);
    if (n < 0 || bud_write_atomic(s->results_dir, INFLIGHT_FILE, text, (size_t)n, 0600,
                                  false) < 0)
        atx_plugin_log(s->ctx, ATX_LOG_WARNING, "cannot write %s/%s: a resumed run may send "
                       "some results twice", s->results_dir, INFLIGHT_FILE);
    if (n >= 0)
        free(text);
}

/* The batch in flight when an earlier segment stopped, if it is past @p
 * progress and within what the journal replays. */
static void inflight_read(bud_state *s, size_t progress, size_t replayed)
{
    FILE *f = open_beneath(s, INFLIGHT_FILE);
    unsigned long long last, rows;
    char key[33];
    if (!f)
        return;
    if (fscanf(f, "%llu %llu %32[0-9a-f]", &last, &rows, key) == 3 && fgetc(f) == '\n' &&
        last > progress && last <= replayed) {
        size_t len = 0, cap = 0;
        char *body = NULL;
        for (;;) {
            if (len + 4096 + 1 > cap) {
                char *b = realloc(body, cap = cap ? cap * 2 : 65536);
                if (!b)
                    break;
                body = b;
            }
            size_t got = fread(body + len, 1, cap - len - 1, f);
            len += got;
            if (got == 0)
                break;
        }
        if (body && !ferror(f)) {
            body[len] = '\0';
            s->resend = body;
            body = NULL;
            snprintf(s->resend_key, sizeof(s->resend_key), "%s", key);
            s->resend_last = (size_t)last;
            s->resend_rows = (size_t)rows;
        }
        free(body);
    }
    fclose(f);
}

static size_t progress_read(const bud_state *s)
{
    unsigned long long n = 0;
    FILE *f = open_beneath(s, PROGRESS_FILE);
    if (f) {
        if (fscanf(f, "%llu", &n) != 1)
            n = 0;
        fclose(f);
    }
    return (size_t)n;
}

/* ---- the uploader thread ---- */

static void add_run_fields(bud_state *s, json_object *o)
{
    json_object_object_foreach(s->run_fields, k, v)
        json_object_object_add(o, k, json_object_get(v));
}

/* Create the test run results go to, unless one was given. */
static void create_run(bud_state *s)
{
    char why[1024], list[256];
    bud_resp r;
    json_object *o = json_object_new_object(), *v;

    snprintf(list, sizeof(list), "%zu tests of atx run %s", s->tests, s->run_id);
    json_object_object_add(o, "test_case_list", json_object_new_string(list));
    json_object_object_add(o, "test_suite_name", json_object_new_string("atx"));
    json_object_object_add(o, "ref_test_software", json_object_new_string("main"));
    json_object_object_add(o, "product_composition_id", json_object_new_int(1));
    json_object_object_add(o, "status", json_object_new_string("Running"));
    if (s->id.runner_account)
        json_object_object_add(o, "runner_account", json_object_new_string(s->id.runner_account));
    add_run_fields(s, o);
    const char *body = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    if (bud_call(s->client, "POST", "/test-runs", body, strlen(body), NULL,
                 BUD_AUTH | BUD_RELOGIN, &r, why, sizeof(why)) < 0) {
        atx_plugin_log(s->ctx, ATX_LOG_WARNING, "cannot create a test run (%s); results "
                       "go without one and the server makes its own", why);
    } else if (r.status != 201 && r.status != 200) {
        atx_plugin_log(s->ctx, ATX_LOG_WARNING, "creating a test run: HTTP %ld; results "
                       "go without one", r.status);
    } else {
        json_object *ans = json_tokener_parse(r.body ? r.body : "");
        if (ans && json_object_object_get_ex(ans, "id", &v))
            s->test_run_id = (long)json_object_get_int64(v);
        json_object_put(ans);
        atx_plugin_log(s->ctx, ATX_LOG_INFO, "test run %ld", s->test_run_id);
    }
    bud_resp_release(&r);
    json_object_put(o);
}

/* Deliver one results request of @p n rows (or spool or keep it), under
 * @p key; last: the stream position of its last row. */
static void deliver(bud_state *s, const char *body, const char *key, size_t n, size_t last)
{
    char why[1024];

    if (!s->lost)
        inflight_write(s, last, n, key, body);
    int out = bud_post_results(s->client, s->spool, body, strlen(body), key, why, sizeof(why));
    s->requests++;
    if (out == BUD_SENT) {
        s->sent_rows += n;
    } else if (out < 0) {
        /* Not sent and not spooled: a resumed run must send them. */
        snprintf(s->last_error, sizeof(s->last_error), "%s", why);
        s->lost++;
        s->unreachable = true;
        atx_plugin_log(s->ctx, ATX_LOG_ERROR, "%zu results were neither delivered nor "
                       "spooled: %s", n, why);
        char path[PATH_MAX + 32];
        snprintf(path, sizeof(path), "%s/%s", s->results_dir, INFLIGHT_FILE);
        unlink(path); /* a resumed run sends from the progress on */
        return;
    } else {
        snprintf(s->last_error, sizeof(s->last_error), "%s", why);
        if (out == BUD_SPOOLED) {
            s->unreachable = true;
            s->spooled++;
            atx_plugin_log(s->ctx, ATX_LOG_WARNING, "%zu results spooled to %s: %s", n,
                           s->spool, why);
        } else {
            s->dead++;
            atx_plugin_log(s->ctx, ATX_LOG_ERROR, "%zu results refused by the server, "
                           "kept in %s/dead: %s", n, s->spool, why);
        }
    }
    /* Sent, spooled or kept: a resumed run does not send these again
     * (unless an earlier batch was lost: then it sends from there). */
    if (!s->lost)
        progress_write(s, last);
}

/* Send rows[0..n) as one results request; last: the stream position of
 * the last row. */
static void send_batch(bud_state *s, json_object **rows, size_t n, size_t last)
{
    json_object *o = json_object_new_object(), *arr = json_object_new_array_ext((int)n);
    char key[33];

    for (size_t i = 0; i < n; i++)
        json_object_array_add(arr, rows[i]);
    json_object_object_add(o, "results", arr);
    json_object_object_add(o, "test_run_id",
                           s->test_run_id > 0 ? json_object_new_int64(s->test_run_id) : NULL);
    json_object_object_add(o, "product_id", NULL);
    json_object_object_add(o, "runner_account", s->id.runner_account
                                                    ? json_object_new_string(s->id.runner_account)
                                                    : NULL);
    add_run_fields(s, o);
    const char *body = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    bud_new_key(key);
    deliver(s, body, key, n, last);
    json_object_put(o);
}

static void finish_run(bud_state *s, const atx_summary *sum)
{
    char why[1024];
    bud_resp r;

    /* Artifacts: warnings only, and not tried against a server that did not
     * answer (each would wait through every retry). */
    if (s->unreachable) {
        atx_plugin_log(s->ctx, ATX_LOG_WARNING, "%s did not take the results: artifacts and "
                       "the test run's status were not sent", s->id.backend);
        return;
    }
    /* Every file is opened beneath the results folder, no link followed
     * (a test can leave a link to anything there): the upload reads the
     * open file, never a name. */
    json_object *list = s->artifacts ? json_object_get(s->artifacts) : json_object_new_array();
    if (!s->artifacts)
        json_object_array_add(list, json_object_new_string("junit.xml"));
    size_t rlen = strlen(s->results_dir);
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        const char *f = json_object_get_string(json_object_array_get_idx(list, i));
        if (!f)
            continue;
        const char *rel = f;
        if (f[0] == '/') {
            if (strncmp(f, s->results_dir, rlen) != 0 || f[rlen] != '/') {
                atx_plugin_log(s->ctx, ATX_LOG_WARNING, "artifact %s not uploaded: it is not "
                               "in the results folder %s", f, s->results_dir);
                continue;
            }
            rel = f + rlen + 1;
        }
        int e = bud_upload_file(s->client, s->results_dir, rel, s->test_run_id, NULL, &r, why,
                                sizeof(why));
        if (e == -ENOENT && !s->artifacts)
            ; /* no JUnit report in this run */
        else if (e < 0)
            atx_plugin_log(s->ctx, ATX_LOG_WARNING, "artifact %s not uploaded: %s", f, why);
        else if (r.status != 201 && r.status != 200)
            atx_plugin_log(s->ctx, ATX_LOG_WARNING, "artifact %s not uploaded: HTTP %ld", f,
                           r.status);
        bud_resp_release(&r);
    }
    json_object_put(list);
    /* The files tests left (results' files), each with its test. */
    for (size_t i = 0; i < json_object_array_length(s->files); i++) {
        json_object *f = json_object_array_get_idx(s->files, i);
        const char *rel = json_object_get_string(json_object_array_get_idx(f, 0));
        const char *test = json_object_get_string(json_object_array_get_idx(f, 1));
        if (bud_upload_file(s->client, s->results_dir, rel, s->test_run_id, test, &r, why,
                            sizeof(why)) < 0 ||
            (r.status != 201 && r.status != 200))
            atx_plugin_log(s->ctx, ATX_LOG_WARNING, "file %s of %s not uploaded: %s", rel, test,
                           r.status ? "the server refused it" : why);
        bud_resp_release(&r);
    }
    if (s->test_run_id <= 0)
        return;
    /* Only status and duration: the server counts results itself. */
    json_object *o = json_object_new_object();
    char path[64];
    json_object_object_add(o, "status", json_object_new_string(sum && sum->cancelled
                                                                   ? "Cancelled" : "Completed"));
    json_object_object_add(o, "duration_seconds",
                           json_object_new_double(sum ? (double)sum->duration_ns / 1e9 : 0));
    const char *body = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    snprintf(path, sizeof(path), "/test-runs/%ld", s->test_run_id);
    if (bud_call(s->client, "PATCH", path, body, strlen(body), NULL, BUD_AUTH | BUD_RELOGIN,
                 &r, why, sizeof(why)) < 0)
        atx_plugin_log(s->ctx, ATX_LOG_WARNING, "cannot close test run %ld: %s",
                       s->test_run_id, why);
    else if (r.status != 200)
        atx_plugin_log(s->ctx, ATX_LOG_WARNING, "closing test run %ld: HTTP %ld",
                       s->test_run_id, r.status);
    bud_resp_release(&r);
    json_object_put(o);
}

static void *uploader(void *arg)
{
    bud_state *s = arg;
    char why[1024];
    size_t sent = 0, left = 0;

    /* What earlier runs could not deliver goes first, oldest first. */
    if (bud_replay(s->client, s->spool, &sent, &left, why, sizeof(why)) < 0)
        atx_plugin_log(s->ctx, ATX_LOG_WARNING, "cannot read the spool %s", s->spool);
    s->replayed = sent;
    if (sent)
        atx_plugin_log(s->ctx, ATX_LOG_INFO, "replayed %zu spooled results requests", sent);
    if (left)
        atx_plugin_log(s->ctx, ATX_LOG_WARNING, "%zu spooled results requests still "
                       "waiting in %s: %s", left, s->spool, why);
    /* What an earlier segment had in flight, again under its key. */
    if (s->resend) {
        deliver(s, s->resend, s->resend_key, s->resend_rows, s->resend_last);
        free(s->resend);
        s->resend = NULL;
    }
    if (s->test_run_id <= 0)
        create_run(s);

    pthread_mutex_lock(&s->mu);
    for (;;) {
        bool full = s->nrows >= (size_t)s->batch_size;
        bool due = s->nrows && atx_now_ns() - s->first_queued >= s->interval_ns;
        if (!full && !due && !s->closing) {
            if (s->nrows) {
                int64_t until = s->first_queued + s->interval_ns, left_ns = until - atx_now_ns();
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += left_ns / ATX_NSEC_PER_SEC;
                ts.tv_nsec += left_ns % ATX_NSEC_PER_SEC;
                if (ts.tv_nsec >= 1000000000L) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&s->cv, &s->mu, &ts);
            } else {
                pthread_cond_wait(&s->cv, &s->mu);
            }
            continue;
        }
        if (!s->nrows && s->closing)
            break;
        size_t n = s->nrows < (size_t)s->batch_size ? s->nrows : (size_t)s->batch_size;
        json_object **batch = malloc(n * sizeof(*batch));
        if (!batch)
            break;
        memcpy(batch, s->rows, n * sizeof(*batch));
        size_t last = s->rowpos[n - 1];
        memmove(s->rows, s->rows + n, (s->nrows - n) * sizeof(*batch));
        memmove(s->rowpos, s->rowpos + n, (s->nrows - n) * sizeof(*s->rowpos));
        s->nrows -= n;
        s->first_queued = atx_now_ns();
        pthread_mutex_unlock(&s->mu);
        send_batch(s, batch, n, last);
        free(batch);
        pthread_mutex_lock(&s->mu);
    }
    const atx_summary *sum = s->summary;
    pthread_mutex_unlock(&s->mu);
    finish_run(s, sum);
    return NULL;
}

/* ---- the aggregator ---- */

static int bud_begin(void *state, const atx_run_info *info)
{
    bud_state *s = state;
    int e;

    snprintf(s->results_dir, sizeof(s->results_dir), "%s", info->results_dir);
    snprintf(s->run_id, sizeof(s->run_id), "%s", info->run_id);
    s->tests = info->tests;
    /* A resumed run replays the journal's results first: those an earlier
     * segment delivered are skipped, the rest (journaled, not yet sent
     * when it stopped) go now. A new run starts its progress afresh. */
    s->skip = info->replayed ? progress_read(s) : 0;
    if (s->skip > info->replayed)
        s->skip = info->replayed;
    if (info->replayed) {
        inflight_read(s, s->skip, info->replayed);
        if (s->resend)
            s->skip = s->resend_last; /* its rows go in it, not again */
    } else {
        char path[PATH_MAX + 32];
        snprintf(path, sizeof(path), "%s/%s", s->results_dir, INFLIGHT_FILE);
        unlink(path);
        progress_write(s, 0);
    }
    if ((e = pthread_create(&s->thread, NULL, uploader, s)) != 0)
        return atx_error_set(-e, "bud: cannot start the uploader: %s", strerror(e));
    s->started = true;
    return 0;
}

static bool passed(atx_status st)
{
    return st == ATX_STATUS_PASS || st == ATX_STATUS_INFO || st == ATX_STATUS_WARN ||
           st == ATX_STATUS_SKIP;
}

/* The last max bytes of a result's output (stderr after stdout), or NULL. */
static json_object *output_tail(const atx_result *r, size_t max)
{
    size_t lo = 0, le = 0;
    const char *o = atx_result_output(r, ATX_STREAM_STDOUT, &lo, NULL);
    const char *e = atx_result_output(r, ATX_STREAM_STDERR, &le, NULL);
    if (!lo && !le)
        return NULL;
    char *buf = malloc(lo + le + 1), *text = NULL;
    if (!buf)
        return NULL;
    if (lo)
        memcpy(buf, o, lo);
    if (le)
        memcpy(buf + lo, e, le);
    size_t len = lo + le, from = len > max ? len - max : 0;
    json_object *j = NULL;
    if (atx_text_clean(buf + from, len - from, ATX_TEXT_STRIP_ANSI | ATX_TEXT_KEEP_NEWLINES,
                       &text, NULL) == 0)
        j = json_object_new_string(text);
    free(text);
    free(buf);
    return j;
}

static json_object *row_of(const atx_result *r)
{
    json_object *row = json_object_new_object(), *meta = json_object_new_object();
    char sys[256], cls[1024];
    atx_status st = atx_result_status(r);
    const char *note = atx_result_note(r);

    atx_labels_class(atx_result_system_labels(r), sys, sizeof(sys));
    snprintf(cls, sizeof(cls), "%s:%s", sys, atx_result_test(r));
    json_object_object_add(row, "test_class", json_object_new_string(cls));
    json_object_object_add(row, "test_method",
                           json_object_new_string(atx_result_subtest(r) ? atx_result_subtest(r)
                                                                        : atx_result_test(r)));
    json_object_object_add(row, "passed", json_object_new_boolean(passed(st)));
    json_object_object_add(row, "duration_seconds",
                           json_object_new_double((double)atx_result_duration(r) / 1e9));
    json_object_object_add(row, "error_message",
                           !passed(st) && note ? json_object_new_string(note) : NULL);
    json_object_object_add(row, "traceback", !passed(st) ? output_tail(r, 4096) : NULL);
    json_object_object_add(row, "assertions", json_object_new_array());
    json_object_object_add(meta, "outcome", json_object_new_string(atx_result_status_word(r)));
    if (passed(st) && note)
        json_object_object_add(meta, "note", json_object_new_string(note));
    if (atx_result_error_type(r))
        json_object_object_add(meta, "error_type",
                               json_object_new_string(atx_result_error_type(r)));
    json_object_object_add(meta, "attempt", json_object_new_int(atx_result_attempt(r)));
    if (atx_result_system_id(r))
        json_object_object_add(meta, "host", json_object_new_string(atx_result_system_id(r)));
    json_object_object_add(meta, "runner", json_object_new_string("atx " ATX_VERSION_STRING));
    json_object_object_add(row, "metadata", meta);
    return row;
}

static int bud_result(void *state, const atx_result *r)
{
    bud_state *s = state;

    if (++s->pos <= s->skip)
        return 0; /* replayed from the journal: an earlier segment sent it */
    /* Bud has no reruns: a test class passes only when all its rows pass,
     * so only final results go (the attempts are in their metadata). */
    if (!atx_result_final(r))
        return 0;
    json_object *row = row_of(r);
    pthread_mutex_lock(&s->mu);
    if (s->nrows == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        json_object **rows = realloc(s->rows, cap * sizeof(*rows));
        size_t *pos = rows ? realloc(s->rowpos, cap * sizeof(*pos)) : NULL;
        if (rows)
            s->rows = rows;
        if (!pos) {
            pthread_mutex_unlock(&s->mu);
            json_object_put(row);
            return atx_error_set(ATX_ENOMEM, "bud: out of memory");
        }
        s->rowpos = pos;
        s->cap = cap;
    }
    if (!s->nrows)
        s->first_queued = atx_now_ns();
    s->rowpos[s->nrows] = s->pos;
    s->rows[s->nrows++] = row;
    for (size_t i = 0; s->upload_files && i < atx_result_file_count(r); i++) {
        json_object *f = json_object_new_array();
        json_object_array_add(f, json_object_new_string(atx_result_file(r, i)));
        json_object_array_add(f, json_object_new_string(atx_result_test(r)));
        json_object_array_add(s->files, f);
    }
    if (s->nrows >= (size_t)s->batch_size)
        pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static int bud_end(void *state, const atx_summary *sum)
{
    bud_state *s = state;

    if (!s->started)
        return 0;
    pthread_mutex_lock(&s->mu);
    s->closing = true;
    s->summary = sum;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    s->started = false;
    atx_plugin_log(s->ctx, ATX_LOG_INFO, "%zu results in %zu requests to %s", s->sent_rows,
                   s->requests, s->id.backend);
    if (s->spooled || s->dead || s->lost)
        return atx_error_set(ATX_EINFRA, "%zu results requests were not delivered to %s: %zu "
                             "spooled in %s (the next run sends them first), %zu refused "
                             "(kept in %s/dead), %zu lost (a resume sends them); last: %s",
                             s->spooled + s->dead + s->lost, s->id.backend, s->spooled, s->spool,
                             s->dead, s->spool, s->lost, s->last_error);
    return 0;
}

static const atx_aggregator_vtable bud_vtable = {
    .version = ATX_AGGREGATOR_VTABLE_VERSION,
    .create = bud_create,
    .destroy = bud_destroy,
    .begin = bud_begin,
    .result = bud_result,
    .end = bud_end,
};

const atx_plugin_descriptor bud_descriptor = {
    ATX_ABI_MAJOR, ATX_ABI_MINOR, sizeof(atx_plugin_descriptor), ATX_PLUGIN_AGGREGATOR,
    "bud", ATX_VERSION_STRING, "Results to Bud TMP in batches, spooled when it is away",
    &bud_vtable,
};
