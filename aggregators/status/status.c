/*
 * status: every result POSTed as JSON to one or more status servers while
 * the run goes.
 *
 * result() only queues: each endpoint has a queue and a sender thread of its
 * own (with its own curl handles), so a slow or dead server never slows the
 * run or the other endpoints. A request that times out, or fails every
 * retry, takes its endpoint down: later results for it are dropped and
 * counted, so a dead server costs the run at most one timeout. end() waits
 * for the live endpoints' queues to drain, for one timeout at most.
 */
#define _GNU_SOURCE 1
#include <atx/plugin/aggregator.h>
#include <atx/plugin/text.h>

#include <curl/curl.h>
#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_TIMEOUT (5 * ATX_NSEC_PER_SEC)
#define DEFAULT_RETRIES 2
#define DEFAULT_MAX_QUEUE 100000
#define BACKOFF_NS (100 * ATX_NSEC_PER_MSEC)
#define MAX_BACKOFF_NS (2 * ATX_NSEC_PER_SEC)

/* One result's body, shared by the endpoints' queues. */
typedef struct payload {
    atomic_int refs;
    size_t len;
    char body[];
} payload;

typedef struct status_state status_state;

typedef struct endpoint {
    status_state *s;
    char *url;
    CURL *easy;
    CURLM *multi;
    pthread_t thread;
    bool started;
    pthread_cond_t cv;        /* work for the sender, or told to stop */
    /* The rest under s->mu, but for abort. */
    payload **ring;           /* queued bodies, oldest at head */
    size_t head, len, cap;
    bool busy;                /* a request in flight (or backing off) */
    bool down;
    char why[256];            /* why it went down */
    size_t sent, rejected, dropped, evicted;
    long last_rejection;      /* HTTP code */
    atomic_bool abort;        /* stop the request in flight */
} endpoint;

struct status_state {
    atx_plugin_ctx *ctx;
    endpoint *eps;
    size_t neps;
    struct curl_slist *headers;
    int64_t timeout_ns;
    int retries;
    size_t max_queue;
    pthread_mutex_t mu;
    pthread_cond_t idle;      /* a sender finished a request or stopped */
    bool closing;
    size_t skip;              /* replayed results: sent by an earlier run */
    size_t seen, posted;
    char run_id[128];
};

enum outcome { SENT, REJECTED, DOWN };

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void payload_unref(payload *p)
{
    if (p && atomic_fetch_sub(&p->refs, 1) == 1)
        free(p);
}

static void cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

/* Wait on cv (with s->mu held) until the monotonic instant until_ns. */
static void wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t until_ns)
{
    struct timespec ts = { .tv_sec = (time_t)(until_ns / ATX_NSEC_PER_SEC),
                           .tv_nsec = (long)(until_ns % ATX_NSEC_PER_SEC) };
    pthread_cond_timedwait(cv, mu, &ts);
}

/* Drop what an endpoint has queued. Under s->mu. */
static void drop_queue(endpoint *ep)
{
    for (size_t i = 0; i < ep->len; i++)
        payload_unref(ep->ring[(ep->head + i) % ep->cap]);
    ep->dropped += ep->len;
    ep->head = ep->len = 0;
}

/* Take an endpoint down (the first reason stays). Under s->mu. */
static void take_down(endpoint *ep, const char *why)
{
    if (!ep->down) {
        ep->down = true;
        snprintf(ep->why, sizeof(ep->why), "%s", why);
    }
    drop_queue(ep);
    atomic_store(&ep->abort, true);
    if (ep->multi)
        curl_multi_wakeup(ep->multi);
    pthread_cond_broadcast(&ep->cv);
}

/* ---- configuration ---- */

static bool header_ok(const char *k, const char *v)
{
    if (!*k || strpbrk(k, ":\r\n \t") || strpbrk(v, "\r\n"))
        return false;
    return true;
}

static int read_config(status_state *s)
{
    const json_object *cfg = atx_plugin_ctx_config(s->ctx);
    json_object *eps = NULL, *hdrs = NULL;
    int64_t retries = DEFAULT_RETRIES, max_queue = DEFAULT_MAX_QUEUE;
    int r;

    s->timeout_ns = DEFAULT_TIMEOUT;
    if ((r = atx_plugin_config_duration(s->ctx, "timeout", &s->timeout_ns)) < 0 ||
        (r = atx_plugin_config_int(s->ctx, "retries", &retries)) < 0 ||
        (r = atx_plugin_config_int(s->ctx, "max_queue", &max_queue)) < 0)
        return r;
    if (s->timeout_ns < ATX_NSEC_PER_MSEC)
        return atx_error_set(ATX_EINVAL, "status: 'timeout' must be at least 1ms");
    if (retries < 0 || retries > 100)
        return atx_error_set(ATX_EINVAL, "status: 'retries' must be 0 to 100");
    if (max_queue < 1)
        return atx_error_set(ATX_EINVAL, "status: 'max_queue' must be at least 1");
    s->retries = (int)retries;
    s->max_queue = (size_t)max_queue;

    if (!cfg || !json_object_object_get_ex(cfg, "endpoints", &eps) ||
        !json_object_is_type(eps, json_type_array) || json_object_array_length(eps) == 0)
        return atx_error_set(ATX_EINVAL, "status: 'endpoints' must be a list of URLs");
    s->neps = json_object_array_length(eps);
    s->eps = calloc(s->neps, sizeof(*s->eps));
    if (!s->eps)
        return atx_error_set(ATX_ENOMEM, "out of memory");
    for (size_t i = 0; i < s->neps; i++)
        cond_init_monotonic(&s->eps[i].cv);
    for (size_t i = 0; i < s->neps; i++) {
        json_object *u = json_object_array_get_idx(eps, i);
        const char *url = json_object_get_string(u);
        if (!json_object_is_type(u, json_type_string) ||
            (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0))
            return atx_error_set(ATX_EINVAL, "status: endpoint %zu must be an http:// or "
                                 "https:// URL", i + 1);
        if (!(s->eps[i].url = strdup(url)))
            return atx_error_set(ATX_ENOMEM, "out of memory");
    }

    s->headers = curl_slist_append(NULL, "Content-Type: application/json");
    s->headers = curl_slist_append(s->headers, "User-Agent: atx/" ATX_VERSION_STRING);
    if (cfg && json_object_object_get_ex(cfg, "headers", &hdrs)) {
        if (!json_object_is_type(hdrs, json_type_object))
            return atx_error_set(ATX_EINVAL, "status: 'headers' must be an object of strings");
        json_object_object_foreach(hdrs, k, v) {
            char *line;
            if (!json_object_is_type(v, json_type_string) ||
                !header_ok(k, json_object_get_string(v)))
                return atx_error_set(ATX_EINVAL, "status: header '%s' must be a token with "
                                     "a one-line string value", k);
            if (asprintf(&line, "%s: %s", k, json_object_get_string(v)) < 0)
                return atx_error_set(ATX_ENOMEM, "out of memory");
            struct curl_slist *n = curl_slist_append(s->headers, line);
            free(line);
            if (!n)
                return atx_error_set(ATX_ENOMEM, "out of memory");
            s->headers = n;
        }
    }
    if (!s->headers)
        return atx_error_set(ATX_ENOMEM, "out of memory");
    return 0;
}

static void status_destroy(void *state);

static int status_create(atx_plugin_ctx *ctx, void **out)
{
    static const char *const keys[] = { "endpoints", "timeout", "retries", "headers",
                                        "max_queue", NULL };
    status_state *s;
    int r;

    if ((r = atx_plugin_config_check_keys(ctx, keys)) < 0)
        return r;
    pthread_once(&curl_once, curl_init_once);
    if (!(s = calloc(1, sizeof(*s))))
        return atx_error_set(ATX_ENOMEM, "out of memory");
    s->ctx = ctx;
    pthread_mutex_init(&s->mu, NULL);
    cond_init_monotonic(&s->idle);
    if ((r = read_config(s)) < 0) {
        status_destroy(s);
        return r;
    }
    *out = s;
    return 0;
}

/* Join the senders. They stop once their queue is empty; with hurry (a
 * destroy without end) at once, dropping what is queued. */
static void stop_senders(status_state *s, bool hurry)
{
    pthread_mutex_lock(&s->mu);
    s->closing = true;
    for (size_t i = 0; i < s->neps; i++) {
        if (hurry && s->eps[i].started && !s->eps[i].down)
            take_down(&s->eps[i], "stopped before the end of the run");
        pthread_cond_broadcast(&s->eps[i].cv);
    }
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < s->neps; i++) {
        if (s->eps[i].started) {
            pthread_join(s->eps[i].thread, NULL);
            s->eps[i].started = false;
        }
    }
}

static void status_destroy(void *state)
{
    status_state *s = state;

    if (s->eps) {
        stop_senders(s, true);
        for (size_t i = 0; i < s->neps; i++) {
            endpoint *ep = &s->eps[i];
            if (ep->ring) {
                drop_queue(ep);
                free(ep->ring);
            }
            if (ep->multi && ep->easy)
                curl_multi_remove_handle(ep->multi, ep->easy);
            if (ep->easy)
                curl_easy_cleanup(ep->easy);
            if (ep->multi)
                curl_multi_cleanup(ep->multi);
            pthread_cond_destroy(&ep->cv);
            free(ep->url);
        }
        free(s->eps);
    }
    curl_slist_free_all(s->headers);
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ---- the sender threads ---- */

static size_t discard(char *data, size_t size, size_t n, void *ud)
{
    (void)data;
    (void)ud;
    return size * n;
}

/* One POST; the answer's HTTP code in *code (0: none). The multi interface
 * lets end() interrupt a request that would take the rest of its timeout. */
static CURLcode perform(endpoint *ep, const payload *p, long *code)
{
    CURLcode res = CURLE_OK;
    int running = 1;

    const char *body = p->body;

    *code = 0;
    curl_easy_setopt(ep->easy, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(ep->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)p->len);
    if (curl_multi_add_handle(ep->multi, ep->easy) != CURLM_OK)
        return CURLE_OUT_OF_MEMORY;
    while (running) {
        if (curl_multi_perform(ep->multi, &running) != CURLM_OK) {
            res = CURLE_SEND_ERROR;
            break;
        }
        if (!running)
            break;
        if (atomic_load(&ep->abort)) {
            res = CURLE_ABORTED_BY_CALLBACK;
            break;
        }
        curl_multi_poll(ep->multi, NULL, 0, 1000, NULL);
    }
    if (!running) {
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(ep->multi, &left)))
            if (m->msg == CURLMSG_DONE)
                res = m->data.result;
    }
    curl_multi_remove_handle(ep->multi, ep->easy);
    if (res == CURLE_OK)
        curl_easy_getinfo(ep->easy, CURLINFO_RESPONSE_CODE, code);
    return res;
}

/* Send one body, retrying connection errors and 5xx answers. */
static enum outcome deliver(endpoint *ep, const payload *p, long *http, char *why, size_t wlen)
{
    status_state *s = ep->s;
    char secs[32];

    for (int attempt = 0;; attempt++) {
        long code;
        CURLcode c = perform(ep, p, &code);
        *http = code;
        if (c == CURLE_OK && code >= 200 && code < 300)
            return SENT;
        if (c == CURLE_OK && code < 500)
            return REJECTED;   /* the server is there: it refused this one */
        if (c == CURLE_ABORTED_BY_CALLBACK) {
            snprintf(why, wlen, "gave up at the end of the run");
            return DOWN;
        }
        if (c == CURLE_OPERATION_TIMEDOUT) {
            /* A timeout is not retried: that is what bounds the run's loss. */
            atx_text_seconds(s->timeout_ns, secs);
            snprintf(why, wlen, "no answer within %ss", secs);
            return DOWN;
        }
        if (c != CURLE_OK)
            snprintf(why, wlen, "%s", curl_easy_strerror(c));
        else
            snprintf(why, wlen, "HTTP %ld", code);
        if (attempt >= s->retries)
            return DOWN;
        int64_t backoff = BACKOFF_NS << (attempt < 5 ? attempt : 5);
        if (backoff > MAX_BACKOFF_NS)
            backoff = MAX_BACKOFF_NS;
        int64_t until = atx_now_ns() + backoff;
        pthread_mutex_lock(&s->mu);
        while (!atomic_load(&ep->abort) && atx_now_ns() < until)
            wait_until(&ep->cv, &s->mu, until);
        pthread_mutex_unlock(&s->mu);
        if (atomic_load(&ep->abort)) {
            snprintf(why, wlen, "gave up at the end of the run");
            return DOWN;
        }
    }
}

static void *sender(void *arg)
{
    endpoint *ep = arg;
    status_state *s = ep->s;
    char why[256];

    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!ep->len && !ep->down && !s->closing)
            pthread_cond_wait(&ep->cv, &s->mu);
        if (ep->down || !ep->len)
            break;
        payload *p = ep->ring[ep->head];
        ep->head = (ep->head + 1) % ep->cap;
        ep->len--;
        ep->busy = true;
        pthread_mutex_unlock(&s->mu);

        long http = 0;
        enum outcome out = deliver(ep, p, &http, why, sizeof(why));
        payload_unref(p);

        pthread_mutex_lock(&s->mu);
        ep->busy = false;
        if (out == SENT) {
            ep->sent++;
        } else if (out == REJECTED) {
            ep->rejected++;
            ep->last_rejection = http;
        } else {
            ep->dropped++;
            take_down(ep, why);
        }
        pthread_cond_broadcast(&s->idle);
    }
    ep->busy = false;
    pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static int setup_endpoint(status_state *s, endpoint *ep)
{
    long timeout_ms = (long)(s->timeout_ns / ATX_NSEC_PER_MSEC);

    ep->s = s;
    if (!(ep->easy = curl_easy_init()) || !(ep->multi = curl_multi_init()))
        return atx_error_set(ATX_ENOMEM, "status: cannot set up libcurl");
    curl_easy_setopt(ep->easy, CURLOPT_URL, ep->url);
    curl_easy_setopt(ep->easy, CURLOPT_POST, 1L);
    curl_easy_setopt(ep->easy, CURLOPT_HTTPHEADER, s->headers);
    curl_easy_setopt(ep->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(ep->easy, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(ep->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(ep->easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(ep->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(ep->easy, CURLOPT_WRITEFUNCTION, discard);
    int e = pthread_create(&ep->thread, NULL, sender, ep);
    if (e != 0)
        return atx_error_set(-e, "status: cannot start a sender thread: %s", strerror(e));
    ep->started = true;
    return 0;
}

static int status_begin(void *state, const atx_run_info *info)
{
    status_state *s = state;
    int r;

    snprintf(s->run_id, sizeof(s->run_id), "%s", info->run_id ? info->run_id : "");
    s->skip = info->replayed;
    for (size_t i = 0; i < s->neps; i++)
        if ((r = setup_endpoint(s, &s->eps[i])) < 0)
            return r;
    return 0;
}

/* ---- queueing results ---- */

static json_object *text(const char *data)
{
    char *clean;
    size_t n;

    if (!data || atx_text_clean(data, strlen(data), 0, &clean, &n) < 0)
        return NULL;
    json_object *o = json_object_new_string_len(clean, (int)n);
    free(clean);
    return o;
}

static payload *make_payload(status_state *s, const atx_result *r)
{
    json_object *o = json_object_new_object(), *sys = json_object_new_object();
    json_object *labels = json_object_new_object();
    const atx_labels *l = atx_result_system_labels(r);
    char when[32], secs[32];

    json_object_object_add(o, "test", text(atx_result_test(r)));
    json_object_object_add(o, "subtest", text(atx_result_subtest(r)));
    json_object_object_add(o, "status", text(atx_result_status_word(r)));
    json_object_object_add(o, "note", text(atx_result_note(r)));
    json_object_object_add(o, "error_type", text(atx_result_error_type(r)));
    json_object_object_add(o, "attempt", json_object_new_int(atx_result_attempt(r)));
    json_object_object_add(o, "final", json_object_new_boolean(atx_result_final(r)));
    json_object_object_add(sys, "id", text(atx_result_system_id(r)));
    for (size_t i = 0; i < atx_labels_count(l); i++) {
        const char *k, *v;
        atx_labels_at(l, i, &k, &v);
        json_object_object_add(labels, k, text(v));
    }
    json_object_object_add(sys, "labels", labels);
    json_object_object_add(o, "system", sys);
    atx_text_utc(atx_result_started(r), 1, when);
    json_object_object_add(o, "started", json_object_new_string(when));
    snprintf(secs, sizeof(secs), "%.6f", (double)atx_result_duration(r) / 1e9);
    json_object_object_add(o, "duration", json_object_new_double_s(atof(secs), secs));
    int code = atx_result_exit_code(r);
    json_object_object_add(o, "exit_code",
                           code == ATX_NO_EXIT_CODE ? NULL : json_object_new_int(code));
    /* run + seq: a server can tell a result it already has. */
    json_object_object_add(o, "run", json_object_new_string(s->run_id));
    json_object_object_add(o, "seq", json_object_new_int64((int64_t)s->seen));

    const char *body = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE);
    size_t len = body ? strlen(body) : 0;
    payload *p = body ? malloc(sizeof(*p) + len + 1) : NULL;
    if (p) {
        atomic_init(&p->refs, 1);
        p->len = len;
        memcpy(p->body, body, len + 1);
    }
    json_object_put(o);
    return p;
}

/* Queue p on ep (a reference taken); full: the oldest goes. Under s->mu. */
static void enqueue(status_state *s, endpoint *ep, payload *p)
{
    if (ep->len == ep->cap) {
        if (ep->cap < s->max_queue) {
            size_t cap = ep->cap ? ep->cap * 2 : 64;
            if (cap > s->max_queue)
                cap = s->max_queue;
            payload **ring = malloc(cap * sizeof(*ring));
            if (!ring) {
                ep->evicted++;
                return;
            }
            for (size_t i = 0; i < ep->len; i++)
                ring[i] = ep->ring[(ep->head + i) % ep->cap];
            free(ep->ring);
            ep->ring = ring;
            ep->cap = cap;
            ep->head = 0;
        } else {
            payload_unref(ep->ring[ep->head]);
            ep->head = (ep->head + 1) % ep->cap;
            ep->len--;
            ep->evicted++;
        }
    }
    atomic_fetch_add(&p->refs, 1);
    ep->ring[(ep->head + ep->len) % ep->cap] = p;
    ep->len++;
    pthread_cond_signal(&ep->cv);
}

static int status_result(void *state, const atx_result *r)
{
    status_state *s = state;

    /* Replayed results (a resumed run, atx report) were posted before. */
    if (s->seen++ < s->skip)
        return 0;
    payload *p = make_payload(s, r);
    if (!p)
        return atx_error_set(ATX_ENOMEM, "out of memory");
    pthread_mutex_lock(&s->mu);
    s->posted++;
    for (size_t i = 0; i < s->neps; i++) {
        endpoint *ep = &s->eps[i];
        if (!ep->started || ep->down)
            ep->dropped++;
        else
            enqueue(s, ep, p);
    }
    pthread_mutex_unlock(&s->mu);
    payload_unref(p);
    return 0;
}

/* ---- the end ---- */

static int status_end(void *state, const atx_summary *summary)
{
    status_state *s = state;
    size_t reached = 0;
    char secs[32];

    (void)summary;
    pthread_mutex_lock(&s->mu);
    s->closing = true;
    for (size_t i = 0; i < s->neps; i++)
        pthread_cond_broadcast(&s->eps[i].cv);
    /* Live endpoints drain, for one timeout at most: past it, whatever is
     * still queued or in flight is given up. */
    int64_t limit = atx_now_ns() + s->timeout_ns;
    atx_text_seconds(s->timeout_ns, secs);
    for (;;) {
        bool draining = false;
        for (size_t i = 0; i < s->neps; i++) {
            endpoint *ep = &s->eps[i];
            if (!ep->started || ep->down || (!ep->len && !ep->busy))
                continue;
            if (atx_now_ns() >= limit) {
                char why[128];
                snprintf(why, sizeof(why), "not drained within %ss at the end of the run",
                         secs);
                /* The sender counts its request in flight when it returns. */
                take_down(ep, why);
            } else {
                draining = true;
            }
        }
        if (!draining)
            break;
        wait_until(&s->idle, &s->mu, limit);
    }
    pthread_mutex_unlock(&s->mu);
    stop_senders(s, false);

    for (size_t i = 0; i < s->neps; i++) {
        endpoint *ep = &s->eps[i];
        if (ep->sent)
            reached++;
        if (ep->down)
            atx_plugin_log(s->ctx, ATX_LOG_WARNING, "endpoint %s went down (%s): %zu of %zu "
                           "results dropped", ep->url, ep->why, ep->dropped, s->posted);
        else if (ep->dropped)
            atx_plugin_log(s->ctx, ATX_LOG_WARNING, "endpoint %s: %zu of %zu results "
                           "dropped", ep->url, ep->dropped, s->posted);
        if (ep->evicted)
            atx_plugin_log(s->ctx, ATX_LOG_WARNING, "endpoint %s: queue full, %zu oldest "
                           "results dropped", ep->url, ep->evicted);
        if (ep->rejected)
            atx_plugin_log(s->ctx, ATX_LOG_WARNING, "endpoint %s refused %zu results "
                           "(last: HTTP %ld)", ep->url, ep->rejected, ep->last_rejection);
        atx_plugin_log(s->ctx, ATX_LOG_DEBUG, "endpoint %s: %zu of %zu results sent", ep->url,
                       ep->sent, s->posted);
    }
    if (s->posted && !reached)
        return atx_error_set(ATX_EIO, "status: no endpoint received any of the %zu results",
                             s->posted);
    return 0;
}

static const atx_aggregator_vtable status_vtable = {
    .version = ATX_AGGREGATOR_VTABLE_VERSION,
    .create = status_create,
    .destroy = status_destroy,
    .begin = status_begin,
    .result = status_result,
    .end = status_end,
    .started = NULL,
};

ATX_PLUGIN_DEFINE(ATX_PLUGIN_AGGREGATOR, "status", ATX_VERSION_STRING,
                  "Each result POSTed as JSON to status servers as it arrives", &status_vtable)
