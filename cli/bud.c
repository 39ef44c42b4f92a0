/*
 * atx bud: Bud TMP from the command line (../shared/BUD_API.md).
 *
 *   atx bud register      a runner account; its token goes to the vault
 *   atx bud status        the backend, the token, the runner
 *   atx bud add-test-run  a test run to upload results to
 *   atx bud daemon        heartbeats and a control socket (status, ping,
 *                         run, stop) for one runner account
 *
 * and `atx run --bud`, which adds the bud aggregator to a run. Secrets (the
 * token, passwords, the API key) are never printed, logged or written
 * anywhere but the vault; a generated password is printed once.
 */
#define _GNU_SOURCE 1
#include "cli.h"

#include "bud.h"

#include <atx/plugin/text.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE 2
#define EXIT_INFRA 3
#define DEFAULT_PORT 53035
#define MAX_PLAN_DIRS 16

#define usage(...) cli_usage("bud", __VA_ARGS__)
#define fail cli_error

static const char bud_usage[] =
    "usage: atx bud register -u NAME [--password-file F | --password P] [--api-key KEY]\n"
    "                        [--port N] [--location TEXT] [--re-register]\n"
    "       atx bud status [--runner-account NAME]\n"
    "       atx bud add-test-run -n SUITE [-t TEXT]\n"
    "       atx bud daemon --runner-account NAME [--interval SECONDS] [--port N]\n"
    "                      [--bind-host ADDRESS] [--location TEXT] [--plan-dir DIR]...\n"
    "       atx bud version\n"
    "common: -b, --backend-url URL (BUD_BACKEND_URL, budBackend in app.properties)\n"
    "        --output-format text|json   what the command prints\n"
    "        --trust-app-properties (BUD_TRUST_APP_PROPERTIES=1): credentials from\n"
    "        the flags or environment may go to the backend app.properties names\n"
    "bud_runner's spellings work too: -u/--username, -n/--test-suite-name,\n"
    "-t/--test-case-list, --socket-port for --port (docs/bud.md maps them all).\n"
    "The API key comes from --api-key or RUNNER_API_KEY; tokens live in the\n"
    "vault ~/.bud/config.json (mode 0600).\n"
    "\n"
    "example:\n"
    "  atx bud register -u lab-7 -b https://bud.example.com --password-file ~/.lab7\n";

static void log_stderr(void *ud, atx_log_level lvl, const char *msg)
{
    const cli_output *out = ud;
    if (out && out->verbosity < 0 && lvl > ATX_LOG_ERROR)
        return;
    if (lvl <= ATX_LOG_WARNING || (out && out->verbosity > 0))
        fprintf(stderr, "atx: %s: %s\n", atx_log_level_name(lvl), msg);
}

/* The "detail" of an error answer, for messages. */
static void detail_of(const bud_resp *r, char *out, size_t len)
{
    json_object *o = r->body ? json_tokener_parse(r->body) : NULL, *d;
    out[0] = '\0';
    if (o && json_object_object_get_ex(o, "detail", &d)) {
        if (json_object_is_type(d, json_type_string))
            snprintf(out, len, "%s", json_object_get_string(d));
        else
            snprintf(out, len, "%s", json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN));
    }
    json_object_put(o);
}

/* ---- options shared by the subcommands ---- */

typedef struct bud_cli {
    bud_flags fl;
    const char *username, *location, *format, *suite, *cases, *bind_host;
    int port, interval;
    bool re_register;
    const char *plan_dirs[MAX_PLAN_DIRS]; /* the daemon runs plans below these only */
    int nplan_dirs;
    cli_output *out;
    bool help;
} bud_cli;

/* A secret given on the command line: kept, and wiped from what ps shows.
 * The copies stay reachable until exit. */
static const char *secret_arg(char *arg)
{
    static char *kept[8];
    static size_t n;
    char *copy = n < sizeof(kept) / sizeof(kept[0]) ? strdup(arg) : NULL;
    if (!copy)
        return arg;
    kept[n++] = copy;
    memset(arg, 'x', strlen(arg));
    return copy;
}

static int parse(int argc, char **argv, bud_cli *b)
{
    enum { O_BACKEND = 256, O_USER, O_PASS, O_KEY, O_PORT, O_LOC, O_REREG, O_FORMAT, O_ACCOUNT,
           O_SUITE, O_CASES, O_INTERVAL, O_BIND, O_TOKEN, O_EMAIL, O_PLAN_DIR, O_TRUST,
           O_PASSFILE };
    static const struct option opts[] = {
        { "backend-url", required_argument, NULL, O_BACKEND },
        { "username", required_argument, NULL, O_USER },
        { "password", required_argument, NULL, O_PASS },
        { "password-file", required_argument, NULL, O_PASSFILE },
        { "api-key", required_argument, NULL, O_KEY },
        { "port", required_argument, NULL, O_PORT },
        { "socket-port", required_argument, NULL, O_PORT }, /* bud_runner's name */
        { "location", required_argument, NULL, O_LOC },
        { "re-register", no_argument, NULL, O_REREG },
        { "output-format", required_argument, NULL, O_FORMAT },
        { "runner-account", required_argument, NULL, O_ACCOUNT },
        { "test-suite-name", required_argument, NULL, O_SUITE },
        { "test-case-list", required_argument, NULL, O_CASES },
        { "interval", required_argument, NULL, O_INTERVAL },
        { "bind-host", required_argument, NULL, O_BIND },
        { "token", required_argument, NULL, O_TOKEN },
        { "email", required_argument, NULL, O_EMAIL },
        { "plan-dir", required_argument, NULL, O_PLAN_DIR },
        { "trust-app-properties", no_argument, NULL, O_TRUST },
        { "quiet", no_argument, NULL, 'q' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    char *end;

    optind = 0;
    opterr = 0; /* getopt's messages would show a value (a password) */
    /* bud_runner's short forms: -u, -b, -t, -n. */
    while ((c = getopt_long(argc, argv, "qvhu:b:t:n:", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
        case O_BACKEND: b->fl.backend = optarg; break;
        case 'u':
        case O_USER: b->username = optarg; break;
        case O_PASS: b->fl.password = secret_arg(optarg); break;
        case O_PASSFILE: {
            /* Kept until exit, like the flags' copies. */
            static char *from_file;
            free(from_file);
            from_file = NULL;
            int rc = cli_secret_file(optarg, &from_file);
            if (rc)
                return rc;
            b->fl.password = from_file;
            break;
        }
        case O_KEY: b->fl.api_key = secret_arg(optarg); break;
        case O_TOKEN: b->fl.token = secret_arg(optarg); break;
        case O_EMAIL: b->fl.email = optarg; break;
        case O_LOC: b->location = optarg; break;
        case O_REREG: b->re_register = true; break;
        case O_ACCOUNT: b->fl.runner_account = optarg; break;
        case 'n':
        case O_SUITE: b->suite = optarg; break;
        case 't':
        case O_CASES: b->cases = optarg; break;
        case O_BIND: b->bind_host = optarg; break;
        case O_TRUST: b->fl.trust_properties = true; break;
        case O_PLAN_DIR:
            if (b->nplan_dirs == MAX_PLAN_DIRS)
                return usage("at most %d --plan-dir", MAX_PLAN_DIRS);
            b->plan_dirs[b->nplan_dirs++] = optarg;
            break;
        case O_FORMAT:
            if (strcmp(optarg, "text") && strcmp(optarg, "json"))
                return usage("--output-format is text or json, not '%s'", optarg);
            b->format = optarg;
            break;
        case O_PORT:
            b->port = (int)strtol(optarg, &end, 10);
            if (*end || b->port < 1024 || b->port > 65535)
                return usage("--port takes a number from 1024 to 65535, not '%s'", optarg);
            break;
        case O_INTERVAL:
            b->interval = (int)strtol(optarg, &end, 10);
            if (*end || b->interval < 1 || b->interval > 86400)
                return usage("--interval takes seconds from 1 to 86400, not '%s'", optarg);
            break;
        case 'q': b->out->verbosity = -1; break;
        case 'v': b->out->verbosity = 1; break;
        case 'h':
            b->help = true;
            break;
        default: {
            const char *arg = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
            return usage("%.*s: unknown option, or its value is missing", (int)strcspn(arg, "="),
                         arg);
        }
        }
    }
    if (optind < argc)
        return usage("unexpected argument '%s'", argv[optind]);
    return 0;
}

static int client_for(bud_cli *b, bud_identity *id, bud_client **c)
{
    char why[1024];
    if (bud_identity_resolve(&b->fl, id, why, sizeof(why)) < 0)
        return fail(EXIT_USAGE, "%s", why);
    if (id->warning)
        fprintf(stderr, "atx: warning: %s\n", id->warning);
    bud_client_opts co = { .id = id, .log = log_stderr, .log_ud = b->out };
    if (bud_client_new(&co, c, why, sizeof(why)) < 0) {
        bud_identity_release(id);
        return fail(EXIT_INFRA, "%s", why);
    }
    return 0;
}

/* ---- register ---- */

static bool valid_username(const char *u)
{
    size_t n = strlen(u);
    if (n < 3 || n > 50)
        return false;
    for (; *u; u++)
        if (!(isalnum((unsigned char)*u) || *u == '_' || *u == '-'))
            return false;
    return true;
}

static void new_password(char out[25])
{
    static const char set[] = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    unsigned char r[24];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
        for (size_t i = 0; i < sizeof(r); i++)
            r[i] = (unsigned char)(rand() ^ (int)i);
    for (size_t i = 0; i < 24; i++)
        out[i] = set[r[i] % (sizeof(set) - 1)];
    out[24] = '\0';
}

static int cmd_register(bud_cli *b)
{
    bud_identity id;
    bud_client *c;
    bud_resp r;
    char why[1024], pw[25];
    int rc;

    if (!b->username)
        return usage("atx bud register needs --username NAME");
    if (!valid_username(b->username))
        return usage("--username: 3 to 50 letters, digits, '_' or '-', not '%s'", b->username);
    if (b->re_register && !b->fl.password)
        return usage("--re-register refreshes the token with the runner's --password");
    if (b->fl.password && (strlen(b->fl.password) < 12 || strlen(b->fl.password) > 128))
        return usage("--password must have 12 to 128 characters");
    b->fl.runner_account = b->username;
    if ((rc = client_for(b, &id, &c)) != 0)
        return rc;
    if (!id.api_key) {
        rc = fail(EXIT_USAGE, "registering needs the backend's runner API key: --api-key KEY "
                              "or RUNNER_API_KEY");
        goto out;
    }
    const char *password = b->fl.password;
    if (!password) {
        new_password(pw);
        password = pw;
    }
    int port = b->port ? b->port : DEFAULT_PORT;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "username", json_object_new_string(b->username));
    json_object_object_add(o, "password", json_object_new_string(password));
    json_object_object_add(o, "socket_port", json_object_new_int(port));
    if (b->location)
        json_object_object_add(o, "location", json_object_new_string(b->location));
    const char *body = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    int e = bud_call(c, "POST", "/runners/register", body, strlen(body), NULL, BUD_API_KEY, &r,
                     why, sizeof(why));
    json_object_put(o);
    if (e < 0) {
        rc = fail(EXIT_INFRA, "cannot reach %s: %s", id.backend, why);
        goto out;
    }
    char d[512];
    detail_of(&r, d, sizeof(d));
    if (r.status == 403)
        rc = fail(EXIT_USAGE, "%s refused the runner API key (HTTP 403%s%s)", id.backend,
                  *d ? ": " : "", d);
    else if (r.status == 400)
        rc = fail(EXIT_USAGE, "%s: %s (to refresh its token: --re-register with its password)",
                  b->username, *d ? d : "refused");
    else if (r.status != 201 && r.status != 200)
        rc = fail(EXIT_INFRA, "registering %s: HTTP %ld%s%s", b->username, r.status,
                  *d ? ": " : "", d);
    else {
        json_object *ans = json_tokener_parse(r.body ? r.body : ""), *t;
        const char *token = ans && json_object_object_get_ex(ans, "token", &t)
                                ? json_object_get_string(t) : NULL;
        if (!token) {
            rc = fail(EXIT_INFRA, "%s answered without a token", id.backend);
        } else if (bud_vault_store(id.vault, b->username, NULL, token, port, id.backend, why,
                                   sizeof(why)) < 0) {
            rc = fail(EXIT_INFRA, "%s", why);
        } else {
            rc = 0;
            if (b->format && strcmp(b->format, "json") == 0) {
                json_object *j = json_object_new_object();
                json_object_object_add(j, "runner", json_object_new_string(b->username));
                json_object_object_add(j, "backend", json_object_new_string(id.backend));
                json_object_object_add(j, "vault", json_object_new_string(id.vault));
                if (!b->fl.password)
                    json_object_object_add(j, "password", json_object_new_string(password));
                printf("%s\n", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
                json_object_put(j);
            } else {
                printf("runner %s %s at %s; its token is in %s\n", b->username,
                       b->re_register ? "registered again" : "registered", id.backend, id.vault);
                if (!b->fl.password)
                    printf("password: %s\n(printed this once: keep it to re-register)\n",
                           password);
            }
        }
        json_object_put(ans);
    }
    bud_resp_release(&r);
out:
    bud_client_free(c);
    bud_identity_release(&id);
    return rc;
}

/* ---- status ---- */

static json_object *get_json(bud_client *c, const char *path, unsigned flags, long *status)
{
    bud_resp r;
    char why[512];
    *status = 0;
    if (bud_call(c, "GET", path, NULL, 0, NULL, flags, &r, why, sizeof(why)) < 0)
        return NULL;
    *status = r.status;
    json_object *o = r.status == 200 && r.body ? json_tokener_parse(r.body) : NULL;
    bud_resp_release(&r);
    return o;
}

static const char *sget(json_object *o, const char *k)
{
    json_object *v;
    return o && json_object_object_get_ex(o, k, &v) && !json_object_is_type(v, json_type_null)
               ? json_object_get_string(v) : NULL;
}

static int cmd_status(bud_cli *b)
{
    bud_identity id;
    bud_client *c;
    long st;
    int rc;

    if ((rc = client_for(b, &id, &c)) != 0)
        return rc;
    json_object *health = get_json(c, "/health", 0, &st);
    bool healthy = health && sget(health, "status") && strcmp(sget(health, "status"), "healthy") == 0;
    json_object *ver = healthy ? get_json(c, "/version", 0, &st) : NULL;
    int port = id.runner_account ? bud_vault_port(id.vault, id.runner_account) : 0;
    json_object *runner = NULL;
    json_object *runners = healthy && id.token ? get_json(c, "/runners/status", BUD_AUTH, &st)
                                               : NULL;
    json_object *list;
    if (runners && id.runner_account && json_object_object_get_ex(runners, "runners", &list))
        for (size_t i = 0; i < json_object_array_length(list); i++) {
            json_object *x = json_object_array_get_idx(list, i);
            if (sget(x, "account") && strcmp(sget(x, "account"), id.runner_account) == 0)
                runner = x;
        }
    const char *api = sget(ver, "api_version");
    json_object *o = json_object_new_object();
    json_object_object_add(o, "backend", json_object_new_string(id.backend));
    json_object_object_add(o, "healthy", json_object_new_boolean(healthy));
    json_object_object_add(o, "version", sget(health, "version") ? json_object_new_string(
                                             sget(health, "version")) : NULL);
    json_object_object_add(o, "api_version", api ? json_object_new_string(api) : NULL);
    json_object_object_add(o, "token", json_object_new_boolean(id.token != NULL));
    json_object_object_add(o, "runner_account", id.runner_account
                                                    ? json_object_new_string(id.runner_account)
                                                    : NULL);
    json_object_object_add(o, "socket_port",
                           json_object_new_int(port ? port : DEFAULT_PORT));
    json_object_object_add(o, "runner", runner ? json_object_get(runner) : NULL);
    if (b->format && strcmp(b->format, "json") == 0) {
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
                                                   JSON_C_TO_STRING_NOSLASHESCAPE));
    } else {
        printf("backend:  %s (%s%s%s)\n", id.backend, healthy ? "healthy" : "unreachable",
               healthy ? ", version " : "", healthy && sget(health, "version")
                                                 ? sget(health, "version") : "");
        if (api && strcmp(api, "v1") != 0)
            printf("warning:  the backend speaks API %s; atx speaks v1\n", api);
        printf("token:    %s\n", id.token ? "present" : "none (atx bud register, or BUD_TOKEN)");
        printf("runner:   %s\n", id.runner_account ? id.runner_account : "none");
        printf("port:     %d\n", port ? port : DEFAULT_PORT);
        if (runner)
            printf("backend:  runner %s, last heartbeat %s\n",
                   sget(runner, "is_online") && strcmp(sget(runner, "is_online"), "true") == 0
                       ? "online" : "offline",
                   sget(runner, "last_heartbeat") ? sget(runner, "last_heartbeat") : "never");
        else if (id.runner_account && healthy)
            printf("backend:  the runner is not known there%s\n",
                   id.token ? "" : " (no token to ask with)");
    }
    if (api && strcmp(api, "v1") != 0)
        fprintf(stderr, "atx: warning: %s speaks API %s, atx speaks v1\n", id.backend, api);
    json_object_put(o);
    json_object_put(health);
    json_object_put(ver);
    json_object_put(runners);
    bud_client_free(c);
    bud_identity_release(&id);
    return healthy ? 0 : EXIT_INFRA;
}

/* ---- add-test-run ---- */

static int cmd_add_test_run(bud_cli *b)
{
    bud_identity id;
    bud_client *c;
    bud_resp r;
    char why[1024];
    int rc;

    if (!b->suite)
        return usage("atx bud add-test-run needs --test-suite-name NAME");
    if ((rc = client_for(b, &id, &c)) != 0)
        return rc;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "test_case_list", json_object_new_string(b->cases ? b->cases : ""));
    json_object_object_add(o, "test_suite_name", json_object_new_string(b->suite));
    json_object_object_add(o, "ref_test_software", json_object_new_string("main"));
    json_object_object_add(o, "product_composition_id", json_object_new_int(1));
    json_object_object_add(o, "status", json_object_new_string("Pending"));
    if (id.runner_account)
        json_object_object_add(o, "runner_account", json_object_new_string(id.runner_account));
    const char *body = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    int e = bud_call(c, "POST", "/test-runs", body, strlen(body), NULL, BUD_AUTH | BUD_RELOGIN,
                     &r, why, sizeof(why));
    json_object_put(o);
    if (e < 0) {
        rc = fail(EXIT_INFRA, "cannot reach %s: %s", id.backend, why);
    } else if (r.status != 201 && r.status != 200) {
        char d[512];
        detail_of(&r, d, sizeof(d));
        rc = fail(r.status == 401 ? EXIT_USAGE : EXIT_INFRA, "creating a test run: HTTP %ld%s%s",
                  r.status, *d ? ": " : "", d);
    } else {
        json_object *ans = json_tokener_parse(r.body ? r.body : ""), *v;
        if (ans && json_object_object_get_ex(ans, "id", &v)) {
            if (b->format && strcmp(b->format, "json") == 0)
                printf("{\"id\":%lld}\n", (long long)json_object_get_int64(v));
            else
                printf("%lld\n", (long long)json_object_get_int64(v));
            rc = 0;
        } else {
            rc = fail(EXIT_INFRA, "%s answered without a run id", id.backend);
        }
        json_object_put(ans);
    }
    if (e == 0)
        bud_resp_release(&r);
    bud_client_free(c);
    bud_identity_release(&id);
    return rc;
}

/* ---- the daemon ---- */

typedef struct daemon {
    bud_cli *b;
    bud_identity id;
    bud_client *hb;          /* the heartbeat's client (its own thread) */
    const char *account;
    char dir[PATH_MAX];      /* ~/.bud/daemons */
    char pidfile[PATH_MAX + 64];
    FILE *log;
    pthread_mutex_t mu;      /* the log, the counters */
    pthread_cond_t cv;
    bool stopping;
    int port;
    bool loopback;
    int64_t started;
    size_t heartbeats, heartbeat_failures;
    int runs;
    int sig_pipe[2];
    char control_token[65];  /* clients' key: its own, not the runner's bearer token */
    char tokenfile[PATH_MAX + 64];
    char *plan_dirs[MAX_PLAN_DIRS]; /* resolved: runs only of plans below them */
    int nplan_dirs;
} daemon_t;

static int g_sig_fd = -1;
static void on_term(int sig)
{
    char c = (char)sig;
    if (g_sig_fd >= 0) {
        ssize_t n = write(g_sig_fd, &c, 1);
        (void)n;
    }
}

/* A newline-delimited JSON log line: timestamp, level, logger, message. */
static void dlog(daemon_t *d, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void dlog(daemon_t *d, const char *level, const char *fmt, ...)
{
    char msg[1024], when[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    atx_text_utc(atx_wallclock_ns(), 1, when);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "timestamp", json_object_new_string(when));
    json_object_object_add(o, "level", json_object_new_string(level));
    json_object_object_add(o, "logger", json_object_new_string("atx.bud.daemon"));
    json_object_object_add(o, "message", json_object_new_string(msg));
    pthread_mutex_lock(&d->mu);
    if (d->log) {
        fprintf(d->log, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                                      JSON_C_TO_STRING_NOSLASHESCAPE));
        fflush(d->log);
    }
    pthread_mutex_unlock(&d->mu);
    json_object_put(o);
}

static void hb_log(void *ud, atx_log_level lvl, const char *msg)
{
    dlog(ud, lvl <= ATX_LOG_WARNING ? "WARNING" : "INFO", "%s", msg);
}

static void *heartbeat_main(void *arg)
{
    daemon_t *d = arg;
    char why[1024];

    pthread_mutex_lock(&d->mu);
    while (!d->stopping) {
        pthread_mutex_unlock(&d->mu);
        json_object *o = json_object_new_object();
        json_object_object_add(o, "runner_account", json_object_new_string(d->account));
        if (d->b->location)
            json_object_object_add(o, "location", json_object_new_string(d->b->location));
        const char *body = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        bud_resp r;
        int e = bud_call(d->hb, "POST", "/runners/heartbeat", body, strlen(body), NULL,
                         BUD_AUTH, &r, why, sizeof(why));
        json_object_put(o);
        bool ok = e == 0 && r.status == 200;
        if (ok)
            dlog(d, "INFO", "heartbeat sent");
        else if (e < 0)
            dlog(d, "WARNING", "heartbeat failed: %s", why);
        else
            dlog(d, "WARNING", "heartbeat refused: HTTP %ld", r.status);
        if (e == 0)
            bud_resp_release(&r);
        pthread_mutex_lock(&d->mu);
        if (ok)
            d->heartbeats++;
        else
            d->heartbeat_failures++;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += d->b->interval;
        while (!d->stopping &&
               pthread_cond_timedwait(&d->cv, &d->mu, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

static bool is_loopback_host(const char *h)
{
    return strcmp(h, "localhost") == 0 || strncmp(h, "127.", 4) == 0 || strcmp(h, "::1") == 0;
}

static bool peer_is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            return true;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
            return in6->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}

/* Compare without leaking where they differ. */
static bool same_secret(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < la; i++)
        diff |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return diff == 0 && lb > 0;
}

static void reply(int fd, json_object *o)
{
    const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                          JSON_C_TO_STRING_NOSLASHESCAPE);
    size_t len = strlen(s);
    ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
    n = send(fd, "\n", 1, MSG_NOSIGNAL);
    (void)n;
    json_object_put(o);
}

static json_object *err(const char *msg)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "ok", json_object_new_boolean(0));
    json_object_object_add(o, "error", json_object_new_string(msg));
    return o;
}

/* Why @p plan may not run, or NULL; real gets its resolved path. A plan
 * is a program: it must lie below a folder --plan-dir allows (after every
 * link and ".." is resolved), and neither it nor any folder from that one
 * down to it may be writable by everyone, or anyone could change what runs
 * between the request and the run. */
static const char *plan_refusal(daemon_t *d, const char *plan, char real[PATH_MAX],
                                char *msg, size_t msglen)
{
    struct stat st;
    size_t dlen = 0;
    int i;

    if (!d->nplan_dirs)
        return "refused: runs are off (the daemon was started without --plan-dir)";
    if (!realpath(plan, real) || stat(real, &st) < 0)
        return "refused: the plan cannot be found";
    if (!S_ISREG(st.st_mode))
        return "refused: the plan is not a file";
    for (i = 0; i < d->nplan_dirs; i++) {
        dlen = strlen(d->plan_dirs[i]);
        if (strcmp(d->plan_dirs[i], "/") == 0 ||
            (strncmp(real, d->plan_dirs[i], dlen) == 0 && real[dlen] == '/'))
            break;
    }
    if (i == d->nplan_dirs)
        return "refused: the plan is not below a folder the daemon's --plan-dir allows";
    if (st.st_mode & S_IWOTH)
        return "refused: the plan is writable by everyone";
    /* The allowed folder itself, then each one below it on the way. */
    char *q = real + dlen - (dlen == 1);
    for (;;) {
        char keep = *q;
        *q = '\0';
        bool bad = stat(*real ? real : "/", &st) < 0 || (st.st_mode & S_IWOTH);
        if (bad)
            snprintf(msg, msglen, "refused: the plan is in %s, which everyone can write",
                     *real ? real : "/");
        *q = keep;
        if (bad)
            return msg;
        if (!(q = strchr(q + 1, '/')))
            break;
    }
    if (access(real, R_OK) < 0)
        return "refused: the plan cannot be read";
    return NULL;
}

/* Run a plan through atx itself, reporting to Bud as this runner. */
static json_object *start_run(daemon_t *d, const char *plan)
{
    char results[PATH_MAX + 64], when[32], self[PATH_MAX], real[PATH_MAX], msg[PATH_MAX + 64];
    char logp[PATH_MAX + 96];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return err("cannot find the atx program");
    self[n] = '\0';
    const char *no = plan_refusal(d, plan, real, msg, sizeof(msg));
    if (no) {
        dlog(d, "WARNING", "run of %s %s", plan, no);
        return err(no);
    }
    atx_text_utc(atx_wallclock_ns(), 1, when);
    snprintf(results, sizeof(results), "%s/%s-runs", d->dir, d->account);
    if (mkdir(results, 0700) < 0 && errno != EEXIST)
        return err("cannot make the runs folder");
    snprintf(results, sizeof(results), "%s/%s-runs/%s-%d", d->dir, d->account, when, d->runs + 1);
    snprintf(logp, sizeof(logp), "%s.log", results);
    pid_t pid = fork();
    if (pid < 0)
        return err("cannot start a run");
    if (pid == 0) {
        int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        int nul = open("/dev/null", O_RDONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (nul >= 0)
            dup2(nul, 0);
        setsid();
        execl(self, "atx", "run", "--plan", real, "--bud", "--runner-account", d->account,
              "--backend-url", d->id.backend, "-o", results, (char *)NULL);
        _exit(127);
    }
    pthread_mutex_lock(&d->mu);
    d->runs++;
    pthread_mutex_unlock(&d->mu);
    dlog(d, "INFO", "run %d started (pid %d): plan %s, results in %s", d->runs, (int)pid, real,
         results);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "ok", json_object_new_boolean(1));
    json_object_object_add(o, "pid", json_object_new_int(pid));
    json_object_object_add(o, "results", json_object_new_string(results));
    return o;
}

/* A control connection being read: one JSON line in, one out. */
#define MAX_CLIENTS 256
#define CLIENT_LINE 16384

typedef struct client {
    int fd;
    size_t len;
    int64_t until;          /* monotonic: the line must be in by then */
    char addr[INET6_ADDRSTRLEN];
    char line[CLIENT_LINE];
} client_t;

/* Answer one request line. Returns true for "stop". */
static bool serve(daemon_t *d, int fd, char *line, const char *addr)
{
    bool stop = false;
    json_object *req = json_tokener_parse(line), *v;
    const char *token = req && json_object_object_get_ex(req, "token", &v)
                            ? json_object_get_string(v) : NULL;
    const char *cmd = req && json_object_object_get_ex(req, "command", &v)
                          ? json_object_get_string(v) : NULL;
    if (!token || !same_secret(token, d->control_token)) {
        dlog(d, "WARNING", "refused a control connection from %s: %s", addr,
             token ? "wrong token" : "no token");
        reply(fd, err("refused: a valid token is required"));
    } else if (!cmd) {
        reply(fd, err("no command (status, ping, run, stop)"));
    } else if (strcmp(cmd, "ping") == 0) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "ok", json_object_new_boolean(1));
        json_object_object_add(o, "pong", json_object_new_boolean(1));
        reply(fd, o);
    } else if (strcmp(cmd, "status") == 0) {
        json_object *o = json_object_new_object();
        pthread_mutex_lock(&d->mu);
        json_object_object_add(o, "ok", json_object_new_boolean(1));
        json_object_object_add(o, "runner_account", json_object_new_string(d->account));
        json_object_object_add(o, "backend", json_object_new_string(d->id.backend));
        json_object_object_add(o, "port", json_object_new_int(d->port));
        json_object_object_add(o, "pid", json_object_new_int(getpid()));
        json_object_object_add(o, "uptime_seconds",
                               json_object_new_double((double)(atx_now_ns() - d->started) / 1e9));
        json_object_object_add(o, "heartbeats", json_object_new_int64((int64_t)d->heartbeats));
        json_object_object_add(o, "heartbeat_failures",
                               json_object_new_int64((int64_t)d->heartbeat_failures));
        json_object_object_add(o, "runs", json_object_new_int(d->runs));
        pthread_mutex_unlock(&d->mu);
        reply(fd, o);
    } else if (strcmp(cmd, "run") == 0) {
        const char *plan = json_object_object_get_ex(req, "plan", &v) ? json_object_get_string(v)
                                                                       : NULL;
        reply(fd, plan && *plan == '/' ? start_run(d, plan)
                                       : err("run needs \"plan\": an absolute path"));
    } else if (strcmp(cmd, "stop") == 0) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "ok", json_object_new_boolean(1));
        json_object_object_add(o, "stopping", json_object_new_boolean(1));
        reply(fd, o);
        dlog(d, "INFO", "stop asked by %s", addr);
        stop = true;
    } else {
        reply(fd, err("unknown command (status, ping, run, stop)"));
    }
    json_object_put(req);
    return stop;
}

/* Read what a client sent; when its line is whole (or it stopped sending),
 * answer it. Returns 1 when the client is done, 2 for "stop", 0 to wait. */
static int client_input(daemon_t *d, client_t *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, c->line + c->len, sizeof(c->line) - 1 - c->len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n > 0)
            c->len += (size_t)n;
        c->line[c->len] = '\0';
        if (n <= 0 || memchr(c->line, '\n', c->len) || c->len == sizeof(c->line) - 1)
            return serve(d, c->fd, c->line, c->addr) ? 2 : 1;
    }
}

static int listen_on(const char *host, int port, char *why, size_t whylen)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV }, *res, *a;
    char ps[16];
    int fd = -1, one = 1;

    snprintf(ps, sizeof(ps), "%d", port);
    int e = getaddrinfo(host, ps, &hints, &res);
    if (e) {
        snprintf(why, whylen, "cannot resolve %s: %s", host, gai_strerror(e));
        return -1;
    }
    for (a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0)
            continue;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 16) == 0)
            break;
        snprintf(why, whylen, "cannot listen on %s:%d: %s", host, port, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* Another daemon of this account alive? */
static pid_t running_pid(const char *pidfile)
{
    FILE *f = fopen(pidfile, "re");
    long pid = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    fclose(f);
    return pid > 0 && kill((pid_t)pid, 0) == 0 ? (pid_t)pid : 0;
}

/* ~/.bud/daemons: a folder of our own that only we can enter. */
static int daemons_dir(daemon_t *d, char *why, size_t whylen)
{
    const char *home = getenv("HOME");
    char top[PATH_MAX];
    struct stat st;

    if (!home || !*home) {
        snprintf(why, whylen, "HOME is not set: the daemon keeps its files in ~/.bud/daemons");
        return -1;
    }
    snprintf(top, sizeof(top), "%s/.bud", home);
    snprintf(d->dir, sizeof(d->dir), "%s/.bud/daemons", home);
    mkdir(top, 0700);
    mkdir(d->dir, 0700);
    if (lstat(d->dir, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid()) {
        snprintf(why, whylen, "%s is not a folder of yours", d->dir);
        return -1;
    }
    if ((st.st_mode & 077) && chmod(d->dir, 0700) < 0) {
        snprintf(why, whylen, "cannot make %s private: %s", d->dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* The folders --plan-dir allows, resolved; none writable by everyone. */
static int plan_dirs(daemon_t *d, char *why, size_t whylen)
{
    struct stat st;
    for (int i = 0; i < d->b->nplan_dirs; i++) {
        const char *p = d->b->plan_dirs[i];
        char *real = realpath(p, NULL);
        if (!real || stat(real, &st) < 0 || !S_ISDIR(st.st_mode)) {
            snprintf(why, whylen, "--plan-dir %s: not a folder", p);
            free(real);
            return -1;
        }
        if (st.st_mode & S_IWOTH) {
            snprintf(why, whylen, "--plan-dir %s: everyone can write it, so anyone could "
                     "put a plan there", p);
            free(real);
            return -1;
        }
        d->plan_dirs[d->nplan_dirs++] = real;
    }
    return 0;
}

/* A fresh control token, in ~/.bud/daemons/<account>.token (0600). */
static int control_token(daemon_t *d, char *why, size_t whylen)
{
    unsigned char r[32];
    char text[sizeof(d->control_token) + 1], name[128];

    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        snprintf(why, whylen, "no random bytes for a control token: %s", strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < sizeof(r); i++)
        snprintf(d->control_token + 2 * i, 3, "%02x", r[i]);
    snprintf(text, sizeof(text), "%s\n", d->control_token);
    snprintf(name, sizeof(name), "%s.token", d->account);
    snprintf(d->tokenfile, sizeof(d->tokenfile), "%s/%s", d->dir, name);
    int e = bud_write_atomic(d->dir, name, text, strlen(text), 0600, true);
    if (e < 0) {
        snprintf(why, whylen, "cannot write %s: %s", d->tokenfile, strerror(-e));
        return -1;
    }
    return 0;
}

/* Serve control connections until stopped: each client is read without
 * blocking, with its own deadline, so a silent or slow one holds up no
 * other (nor a SIGTERM). */
static void serve_clients(daemon_t *d, int lfd)
{
    client_t *cl[MAX_CLIENTS];
    size_t n = 0;
    bool stop = false;

    while (!stop) {
        struct pollfd p[2 + MAX_CLIENTS] = {
            { .fd = n < MAX_CLIENTS ? lfd : -1, .events = POLLIN },
            { .fd = d->sig_pipe[0], .events = POLLIN },
        };
        int64_t now = atx_now_ns(), wait_ms = 1000;
        for (size_t i = 0; i < n; i++) {
            p[2 + i] = (struct pollfd){ .fd = cl[i]->fd, .events = POLLIN };
            int64_t left = (cl[i]->until - now + ATX_NSEC_PER_MSEC - 1) / ATX_NSEC_PER_MSEC;
            if (left < wait_ms)
                wait_ms = left > 0 ? left : 0;
        }
        int ready = poll(p, 2 + n, (int)wait_ms);
        /* Reap finished runs. */
        int status;
        pid_t done;
        while ((done = waitpid(-1, &status, WNOHANG)) > 0)
            dlog(d, "INFO", "run (pid %d) finished: exit %d", (int)done,
                 WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
        if (ready < 0 && errno != EINTR)
            break;
        if (ready > 0 && p[1].revents) {
            dlog(d, "INFO", "stopping on a signal");
            break;
        }
        now = atx_now_ns();
        size_t kept = 0;
        for (size_t i = 0; i < n; i++) {
            client_t *c = cl[i];
            int out = 0;
            if (ready > 0 && p[2 + i].revents)
                out = client_input(d, c);
            else if (now >= c->until)
                /* Its time is up: what came is the request (often nothing). */
                out = serve(d, c->fd, c->line, c->addr) ? 2 : 1;
            if (out == 2)
                stop = true;
            if (out) {
                close(c->fd);
                free(c);
            } else {
                cl[kept++] = c;
            }
        }
        n = kept;
        while (!stop && ready > 0 && (p[0].revents & POLLIN) && n < MAX_CLIENTS) {
            struct sockaddr_storage peer;
            socklen_t plen = sizeof(peer);
            int fd = accept4(lfd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (fd < 0)
                break;
            client_t *c = malloc(sizeof(*c));
            if (!c) {
                close(fd);
                break;
            }
            c->fd = fd;
            c->len = 0;
            c->line[0] = '\0';
            c->until = atx_now_ns() + ATX_NSEC_PER_SEC;
            snprintf(c->addr, sizeof(c->addr), "?");
            if (peer.ss_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)&peer)->sin_addr, c->addr,
                          sizeof(c->addr));
            else if (peer.ss_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&peer)->sin6_addr, c->addr,
                          sizeof(c->addr));
            if (d->loopback && !peer_is_loopback(&peer)) {
                dlog(d, "WARNING", "refused a control connection from %s: not loopback",
                     c->addr);
                reply(fd, err("refused: only loopback clients"));
                close(fd);
                free(c);
                continue;
            }
            cl[n++] = c;
        }
    }
    for (size_t i = 0; i < n; i++) {
        close(cl[i]->fd);
        free(cl[i]);
    }
}

static int cmd_daemon(bud_cli *b)
{
    daemon_t d = { .b = b, .sig_pipe = { -1, -1 } };
    char why[1024];
    int rc = 0, lfd = -1;

    if (!b->fl.runner_account && !getenv("BUD_RUNNER_ACCOUNT"))
        return usage("atx bud daemon needs --runner-account NAME (one daemon per runner)");
    if (!b->interval)
        b->interval = 60;
    if (bud_identity_resolve(&b->fl, &d.id, why, sizeof(why)) < 0)
        return fail(EXIT_USAGE, "%s", why);
    if (d.id.warning)
        fprintf(stderr, "atx: warning: %s\n", d.id.warning);
    d.account = d.id.runner_account;
    /* Its name makes file names: nothing that leads out of the folder. */
    if (!d.account || !bud_account_valid(d.account)) {
        rc = usage("--runner-account: 1 to 64 letters, digits, '.', '_' or '-', not "
                   "starting with '.'");
        goto out_id;
    }
    if (!d.id.token) {
        rc = fail(EXIT_USAGE, "runner %s has no token: atx bud register --username %s first",
                  d.account, d.account);
        goto out_id;
    }
    if (plan_dirs(&d, why, sizeof(why)) < 0) {
        rc = usage("%s", why);
        goto out_id;
    }
    if (daemons_dir(&d, why, sizeof(why)) < 0) {
        rc = fail(EXIT_INFRA, "%s", why);
        goto out_id;
    }
    snprintf(d.pidfile, sizeof(d.pidfile), "%s/%s.pid", d.dir, d.account);
    pid_t other = running_pid(d.pidfile);
    if (other) {
        rc = fail(EXIT_USAGE, "a daemon for runner %s already runs (pid %d)", d.account,
                  (int)other);
        goto out_id;
    }
    d.port = b->port ? b->port : bud_vault_port(d.id.vault, d.account);
    if (!d.port)
        d.port = DEFAULT_PORT;
    const char *host = b->bind_host ? b->bind_host : "127.0.0.1";
    d.loopback = is_loopback_host(host);
    if (!d.loopback)
        fprintf(stderr, "atx: warning: the control socket on %s:%d can be reached from other "
                        "machines; only the control token guards it\n", host, d.port);
    if ((lfd = listen_on(host, d.port, why, sizeof(why))) < 0) {
        rc = fail(EXIT_INFRA, "%s", why);
        goto out_id;
    }
    char logpath[PATH_MAX + 64], pidtext[32];
    snprintf(logpath, sizeof(logpath), "%s/%s.log", d.dir, d.account);
    d.log = fopen(logpath, "ae");
    if (d.log)
        fchmod(fileno(d.log), 0600);
    pthread_mutex_init(&d.mu, NULL);
    pthread_cond_init(&d.cv, NULL);
    d.started = atx_now_ns();
    if (control_token(&d, why, sizeof(why)) < 0) {
        rc = fail(EXIT_INFRA, "%s", why);
        goto out_close;
    }
    snprintf(pidtext, sizeof(pidtext), "%d\n", (int)getpid());
    char *slash = strrchr(d.pidfile, '/');
    if (bud_write_atomic(d.dir, slash + 1, pidtext, strlen(pidtext), 0644, false) < 0) {
        rc = fail(EXIT_INFRA, "cannot write %s", d.pidfile);
        goto out_token;
    }
    if (!d.loopback)
        dlog(&d, "WARNING", "control socket on %s:%d, reachable from other machines", host,
             d.port);
    for (int i = 0; i < d.nplan_dirs; i++)
        dlog(&d, "INFO", "runs plans below %s", d.plan_dirs[i]);
    dlog(&d, "INFO", "started: runner %s, backend %s, control socket %s:%d, heartbeat every %d s",
         d.account, d.id.backend, host, d.port, b->interval);
    fprintf(stderr, "atx: daemon for runner %s: control socket %s:%d, its token in %s, log %s%s\n",
            d.account, host, d.port, d.tokenfile, logpath,
            d.nplan_dirs ? "" : "; runs are off (no --plan-dir)");

    bud_client_opts co = { .id = &d.id, .log = hb_log, .log_ud = &d, .max_retries = 1 };
    if (bud_client_new(&co, &d.hb, why, sizeof(why)) < 0) {
        rc = fail(EXIT_INFRA, "%s", why);
        goto out_pid;
    }
    if (pipe2(d.sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        rc = fail(EXIT_INFRA, "cannot make a pipe: %s", strerror(errno));
        goto out_pid;
    }
    g_sig_fd = d.sig_pipe[1];
    struct sigaction sa = { 0 };
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    pthread_t hb;
    bool hb_started = pthread_create(&hb, NULL, heartbeat_main, &d) == 0;

    serve_clients(&d, lfd);

    pthread_mutex_lock(&d.mu);
    d.stopping = true;
    pthread_cond_signal(&d.cv);
    pthread_mutex_unlock(&d.mu);
    if (hb_started)
        pthread_join(hb, NULL);
    g_sig_fd = -1;
    dlog(&d, "INFO", "stopped");
out_pid:
    if (d.sig_pipe[0] >= 0) {
        close(d.sig_pipe[0]);
        close(d.sig_pipe[1]);
    }
    unlink(d.pidfile);
out_token:
    unlink(d.tokenfile);
out_close:
    bud_client_free(d.hb);
    close(lfd);
    if (d.log)
        fclose(d.log);
    pthread_mutex_destroy(&d.mu);
    pthread_cond_destroy(&d.cv);
out_id:
    for (int i = 0; i < d.nplan_dirs; i++)
        free(d.plan_dirs[i]);
    bud_identity_release(&d.id);
    return rc;
}

int cli_bud(int argc, char **argv, cli_output *out)
{
    bud_cli b = { .out = out };
    int rc;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(bud_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "version") == 0) {
        bool json = argc > 3 && strcmp(argv[2], "--output-format") == 0 &&
                    strcmp(argv[3], "json") == 0;
        printf(json ? "{\"version\":\"%s\"}\n" : "atx %s\n", atx_version());
        return 0;
    }
    if ((rc = parse(argc - 1, argv + 1, &b)) != 0)
        return rc;
    if (b.help) {
        fputs(bud_usage, stdout);
        return 0;
    }
    if (strcmp(sub, "register") == 0)
        return cmd_register(&b);
    if (strcmp(sub, "status") == 0)
        return cmd_status(&b);
    if (strcmp(sub, "add-test-run") == 0)
        return cmd_add_test_run(&b);
    if (strcmp(sub, "daemon") == 0)
        return cmd_daemon(&b);
    return usage("unknown bud command '%s' (register, status, add-test-run, daemon, version)",
                 sub);
}

int cli_bud_add(atx_run *run, const cli_bud_opts *o)
{
    json_object *c = json_object_new_object();
    static bud_secrets secrets;

    /* Secrets go to the aggregator directly, never into its configuration
     * (the journal keeps that). */
    secrets.password = o->password;
    if (o->backend)
        json_object_object_add(c, "backend", json_object_new_string(o->backend));
    if (o->runner_account)
        json_object_object_add(c, "runner_account", json_object_new_string(o->runner_account));
    if (o->username)
        json_object_object_add(c, "email", json_object_new_string(o->username));
    if (o->test_run_id > 0)
        json_object_object_add(c, "test_run_id", json_object_new_int64(o->test_run_id));
    const char *keys[] = { "test_suite_name", "url_test_software", "ref_test_software",
                           "url_software_under_test", "ref_software_under_test" };
    const char *vals[] = { o->test_suite_name, o->url_test_software, o->ref_test_software,
                           o->url_software_under_test, o->ref_software_under_test };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (vals[i])
            json_object_object_add(c, keys[i], json_object_new_string(vals[i]));
    int r = atx_run_add_builtin(run, &bud_descriptor, json_object_to_json_string(c), &secrets);
    json_object_put(c);
    return r;
}
