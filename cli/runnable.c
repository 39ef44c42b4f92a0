/*
 * atx runnable-run, runnable-run-recipe and capabilities: runnables in the
 * manner of Avocado's next runner (nrunner).
 *
 * A runnable is a kind, a URI, positional args and keyword args. Running one
 * is a task with a random id; its progress goes to stdout as JSON status
 * lines, one a line, flushed as they happen:
 *
 *   {"status": "started", "id": ..., "time": ...}
 *   {"status": "running", "id": ..., "time": ...}     at once, then each second
 *   {"status": "finished", "id": ..., "time": ..., "returncode": ...,
 *    "stdout": ..., "stderr": ..., "result": ...}
 *
 * "time" is wall-clock seconds since the epoch. "result" is there for the
 * test kinds, and for any kind that could not run ("error", with a
 * "message") or was interrupted ("interrupted"). The process runs on this
 * host in its own session; SIGINT or SIGTERM kills its whole process group.
 *
 * Exit codes: 0 the runnable ran (whatever its result); 1 it could not run;
 * 2 usage or recipe error; 128 + N when signal N interrupted it.
 */
#define _GNU_SOURCE 1
#include "cli.h"

#include <atx/plugin/capture.h>
#include <atx/plugin/process.h>
#include <atx/plugin/provisioner.h>
#include <atx/plugin/text.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define EXIT_RAN 0
#define EXIT_NOT_RUN 1
#define EXIT_USAGE 2

/* Each stream keeps its first and last half MiB: a runaway test cannot
 * exhaust memory, and the end (where unittest's summary is) survives. */
#define CAPTURE_HALF (512u * 1024u)
#define BEAT_NS ATX_NSEC_PER_SEC
#define KILL_GRACE_NS (2 * ATX_NSEC_PER_SEC)

typedef enum kind_id { KIND_NOOP, KIND_EXEC, KIND_EXEC_TEST, KIND_PYTHON_UNITTEST } kind_id;

static const struct kind_desc {
    const char *name;
    bool needs_uri;
    bool is_test; /* has a verdict: "result" */
} kinds[] = {
    [KIND_NOOP] = { "noop", false, false },
    [KIND_EXEC] = { "exec", true, false },
    [KIND_EXEC_TEST] = { "exec-test", true, true },
    [KIND_PYTHON_UNITTEST] = { "python-unittest", true, true },
};
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

static const char *const commands[] = { "capabilities", "runnable-run", "runnable-run-recipe" };

/* What to run. Strings are borrowed (argv or a recipe's JSON) except kwargs. */
typedef struct runnable {
    kind_id kind;
    const char *uri;
    const char **args;
    size_t nargs;
    char **kwargs; /* "KEY=VALUE", owned */
    size_t nkwargs;
} runnable;

static void runnable_release(runnable *r)
{
    for (size_t i = 0; i < r->nkwargs; i++)
        free(r->kwargs[i]);
    free(r->kwargs);
    free(r->args);
}

static int add_arg(runnable *r, const char *arg)
{
    const char **a = realloc(r->args, (r->nargs + 1) * sizeof(*a));
    if (!a)
        return -ENOMEM;
    r->args = a;
    r->args[r->nargs++] = arg;
    return 0;
}

/* Add KEY=VALUE; a later one with the same key replaces an earlier one. */
static int add_kwarg(runnable *r, const char *key, size_t klen, const char *value)
{
    char *kv;

    if (asprintf(&kv, "%.*s=%s", (int)klen, key, value) < 0)
        return -ENOMEM;
    for (size_t i = 0; i < r->nkwargs; i++)
        if (strncmp(r->kwargs[i], kv, klen + 1) == 0) {
            free(r->kwargs[i]);
            r->kwargs[i] = kv;
            return 0;
        }
    char **k = realloc(r->kwargs, (r->nkwargs + 1) * sizeof(*k));
    if (!k) {
        free(kv);
        return -ENOMEM;
    }
    r->kwargs = k;
    r->kwargs[r->nkwargs++] = kv;
    return 0;
}

/* The value of kwarg @p key, or NULL. */
static const char *kwarg(const runnable *r, const char *key)
{
    size_t klen = strlen(key);
    for (size_t i = 0; i < r->nkwargs; i++)
        if (strncmp(r->kwargs[i], key, klen) == 0 && r->kwargs[i][klen] == '=')
            return r->kwargs[i] + klen + 1;
    return NULL;
}

static bool kind_lookup(const char *name, kind_id *out)
{
    for (size_t i = 0; i < NKINDS; i++)
        if (strcmp(kinds[i].name, name) == 0) {
            *out = (kind_id)i;
            return true;
        }
    return false;
}

static bool valid_key(const char *key, size_t len)
{
    return len > 0 && !memchr(key, '=', len) && !memchr(key, '\0', len);
}

/* ---- status lines ---- */

/* One JSON object on one line, keys in insertion order, flushed. */
static void emit(json_object *o)
{
    bool first = true;

    putchar('{');
    json_object_object_foreach(o, key, val) {
        json_object *k = json_object_new_string(key);
        printf("%s%s: %s", first ? "" : ", ",
               json_object_to_json_string_ext(k, JSON_C_TO_STRING_PLAIN),
               json_object_to_json_string_ext(val, JSON_C_TO_STRING_PLAIN |
                                                       JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(k);
        first = false;
    }
    fputs("}\n", stdout);
    fflush(stdout);
}

typedef struct task {
    char id[37];
    const runnable *r;
} task;

/* A random (version 4) UUID: unique per invocation, across hosts. */
static void make_id(char id[37])
{
    unsigned char b[16];
    ssize_t n;

    do
        n = getrandom(b, sizeof(b), 0);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof(b)) {
        /* No kernel randomness: mix time and pid (splitmix64). */
        uint64_t x = (uint64_t)atx_wallclock_ns() ^ ((uint64_t)getpid() << 32);
        for (size_t i = 0; i < sizeof(b); i += 8) {
            uint64_t z = (x += UINT64_C(0x9E3779B97F4A7C15));
            z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
            z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
            z ^= z >> 31;
            memcpy(b + i, &z, 8);
        }
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(id, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

static json_object *status_new(const task *t, const char *status)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "status", json_object_new_string(status));
    json_object_object_add(o, "id", json_object_new_string(t->id));
    json_object_object_add(o, "time", json_object_new_double((double)atx_wallclock_ns() / 1e9));
    return o;
}

static void emit_status(const task *t, const char *status)
{
    json_object *o = status_new(t, status);
    emit(o);
    json_object_put(o);
}

/* ---- running a process ---- */

static int g_sigpipe[2] = { -1, -1 };
static volatile sig_atomic_t g_signal;

static void on_signal(int sig)
{
    int saved = errno;
    g_signal = sig;
    if (write(g_sigpipe[1], "", 1) < 0) {
        /* full pipe: a wake-up is pending already */
    }
    errno = saved;
}

typedef struct outcome {
    atx_exit ex;
    char *out, *err; /* valid UTF-8, capped */
    size_t out_len, err_len;
    int signal;      /* the SIGINT/SIGTERM that stopped it, or 0 */
} outcome;

static void outcome_release(outcome *oc)
{
    free(oc->out);
    free(oc->err);
}

static int collect_text(const atx_capture *c, char **out, size_t *len)
{
    char *raw;
    size_t rlen;
    int r;

    if ((r = atx_capture_collect(c, &raw, &rlen)) < 0)
        return r;
    r = atx_text_clean(raw, rlen, 0, out, len);
    free(raw);
    return r;
}

static int beat(void *ud)
{
    emit_status(ud, "running");
    return 0;
}

/* Spawn, say "running" at once and then each second, capture both streams,
 * and end with the exit status. A SIGINT/SIGTERM kills the whole tree. */
static int run_process(const task *t, const atx_spawn_opts *so, outcome *oc)
{
    atx_proc_run_opts o = ATX_PROC_RUN_OPTS_INIT;
    atx_proc_sink sink = { .ud = (void *)t, .tick = beat };
    atx_proc_outcome pr;
    atx_capture cap[2];
    atx_proc *p = NULL;
    int r;

    memset(oc, 0, sizeof(*oc));
    atx_capture_init(&cap[0], CAPTURE_HALF, CAPTURE_HALF);
    atx_capture_init(&cap[1], CAPTURE_HALF, CAPTURE_HALF);
    if ((r = atx_spawn_local(so, &p)) < 0)
        goto out;
    emit_status(t, "running");
    o.capture[0] = &cap[0];
    o.capture[1] = &cap[1];
    o.sink = &sink;
    o.tick_ns = BEAT_NS;
    o.grace_ns = KILL_GRACE_NS;
    o.cancel_fd = g_sigpipe[0];
    r = atx_proc_run(p, &o, &pr);
    oc->ex = pr.exit;
    if (pr.interrupted)
        oc->signal = g_signal;
    if (r == 0 && ((r = collect_text(&cap[0], &oc->out, &oc->out_len)) < 0 ||
                   (r = collect_text(&cap[1], &oc->err, &oc->err_len)) < 0))
        outcome_release(oc);
out:
    atx_proc_free(p);
    atx_capture_release(&cap[0]);
    atx_capture_release(&cap[1]);
    return r;
}

/* ---- verdicts ---- */

/* The last line of @p text that starts with @p prefix, copied into buf. */
static bool last_line(const char *text, const char *prefix, char *buf, size_t len)
{
    size_t plen = strlen(prefix);
    const char *found = NULL;

    for (const char *l = text; *l;) {
        if (strncmp(l, prefix, plen) == 0)
            found = l;
        const char *nl = strchr(l, '\n');
        if (!nl)
            break;
        l = nl + 1;
    }
    if (!found)
        return false;
    size_t n = strcspn(found, "\n");
    snprintf(buf, len, "%.*s", (int)n, found);
    return true;
}

/* A count like "skipped=2" in unittest's summary line, or 0. */
static long summary_count(const char *line, const char *name)
{
    const char *s = strstr(line, name);
    return s ? strtol(s + strlen(name), NULL, 10) : 0;
}

/* unittest -v prints "Ran N tests" and then "OK" or "FAILED (...)", with
 * counts in parentheses; the exit code is 0 when nothing failed. */
static const char *unittest_result(const outcome *oc)
{
    char ran[128], ok[256], failed[256];
    const char *text = oc->err;
    long nran;

    if (!oc->ex.exited || !last_line(text, "Ran ", ran, sizeof(ran)))
        return "error";
    nran = strtol(ran + 4, NULL, 10);
    if (oc->ex.code == 0 && last_line(text, "OK", ok, sizeof(ok))) {
        if (nran <= 0)
            return "error"; /* the id named no test */
        return summary_count(ok, "skipped=") == nran ? "skip" : "pass";
    }
    if (oc->ex.code == 1 && last_line(text, "FAILED", failed, sizeof(failed))) {
        if (summary_count(failed, "errors="))
            return "error";
        if (summary_count(failed, "failures=") || summary_count(failed, "unexpected successes="))
            return "fail";
    }
    return "error";
}

/* ---- the task ---- */

static int finish_error(const task *t, const char *message)
{
    json_object *o = status_new(t, "finished");
    json_object_object_add(o, "result", json_object_new_string("error"));
    json_object_object_add(o, "message", json_object_new_string(message));
    emit(o);
    json_object_put(o);
    return EXIT_NOT_RUN;
}

static const char *last_error_text(int r)
{
    return *atx_error_last()->message ? atx_error_last()->message : atx_strerror(r);
}

static int run_task(const runnable *rn)
{
    task t = { .r = rn };
    atx_spawn_opts so = ATX_SPAWN_OPTS_INIT;
    const char **argv = NULL, **env = NULL;
    char *pythonpath = NULL;
    outcome oc;
    size_t na = 0, ne = 0;
    int rc, r;

    make_id(t.id);
    emit_status(&t, "started");
    if (rn->kind == KIND_NOOP) {
        emit_status(&t, "running");
        emit_status(&t, "finished");
        return EXIT_RAN;
    }

    argv = calloc(rn->nargs + 6, sizeof(*argv));
    env = calloc(rn->nkwargs + 2, sizeof(*env));
    if (!argv || !env) {
        rc = finish_error(&t, "out of memory");
        goto out;
    }
    if (rn->kind == KIND_PYTHON_UNITTEST) {
        /* cwd and path say where the module is; other kwargs are environment. */
        const char *path = kwarg(rn, "path"), *old = getenv("PYTHONPATH");
        argv[na++] = "python3";
        argv[na++] = "-m";
        argv[na++] = "unittest";
        argv[na++] = "-v";
        so.cwd = kwarg(rn, "cwd");
        if (path) {
            if (asprintf(&pythonpath, "PYTHONPATH=%s%s%s", path, old && *old ? ":" : "",
                         old && *old ? old : "") < 0) {
                pythonpath = NULL;
                rc = finish_error(&t, "out of memory");
                goto out;
            }
            env[ne++] = pythonpath;
        }
        for (size_t i = 0; i < rn->nkwargs; i++)
            if (strncmp(rn->kwargs[i], "cwd=", 4) != 0 && strncmp(rn->kwargs[i], "path=", 5) != 0)
                env[ne++] = rn->kwargs[i];
    } else {
        /* As in Avocado's exec runners, kwargs are the process's environment. */
        for (size_t i = 0; i < rn->nkwargs; i++)
            env[ne++] = rn->kwargs[i];
    }
    argv[na++] = rn->uri;
    for (size_t i = 0; i < rn->nargs; i++)
        argv[na++] = rn->args[i];
    so.argv = argv;
    so.env = env;
    so.flags = ATX_SPAWN_STDOUT_PIPE | ATX_SPAWN_STDERR_PIPE;
    /* What the task starts ends with it, where this host allows. */
    if (atx_spawn_can_contain())
        so.flags |= ATX_SPAWN_CONTAIN;

    if ((r = run_process(&t, &so, &oc)) < 0) {
        rc = finish_error(&t, last_error_text(r));
        goto out;
    }
    json_object *o = status_new(&t, "finished");
    /* Python's convention: a negative returncode is the killing signal. */
    json_object_object_add(o, "returncode",
                           json_object_new_int(oc.ex.exited ? oc.ex.code : -oc.ex.signal));
    json_object_object_add(o, "stdout", json_object_new_string_len(oc.out, (int)oc.out_len));
    json_object_object_add(o, "stderr", json_object_new_string_len(oc.err, (int)oc.err_len));
    rc = EXIT_RAN;
    if (oc.signal) {
        char msg[64];
        snprintf(msg, sizeof(msg), "interrupted by SIG%s", sigabbrev_np(oc.signal));
        json_object_object_add(o, "result", json_object_new_string("interrupted"));
        json_object_object_add(o, "message", json_object_new_string(msg));
        rc = 128 + oc.signal;
    } else if (rn->kind == KIND_EXEC_TEST) {
        json_object_object_add(o, "result", json_object_new_string(
                                                oc.ex.exited && oc.ex.code == 0 ? "pass" : "fail"));
    } else if (rn->kind == KIND_PYTHON_UNITTEST) {
        json_object_object_add(o, "result", json_object_new_string(unittest_result(&oc)));
    }
    emit(o);
    json_object_put(o);
    outcome_release(&oc);
out:
    free(pythonpath);
    free(argv);
    free(env);
    return rc;
}

/* Run with SIGINT/SIGTERM turned into a wake-up of the poll loop. */
static int run_with_signals(const runnable *rn)
{
    struct sigaction sa = { 0 }, old_int, old_term;
    int rc;

    if (pipe2(g_sigpipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        fprintf(stderr, "atx: error: cannot make a pipe: %s\n", strerror(errno));
        return EXIT_NOT_RUN;
    }
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    /* A closed reader (| head) must not kill us before the child is reaped. */
    signal(SIGPIPE, SIG_IGN);
    rc = run_task(rn);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    close(g_sigpipe[0]);
    close(g_sigpipe[1]);
    g_sigpipe[0] = g_sigpipe[1] = -1;
    return rc;
}

/* ---- commands ---- */

static const char runnable_usage[] =
    "usage: atx runnable-run -k KIND [-u URI] [-a ARG]... [-w KEY=VALUE]...\n"
    "       atx runnable-run-recipe FILE\n"
    "       atx capabilities\n"
    "KIND is noop, exec, exec-test or python-unittest. Status lines (JSON) go\n"
    "to stdout; exit 0 when the runnable ran, 1 when it could not, 2 on usage\n"
    "errors.\n";

static int usage_error(const char *cmd, const char *fmt, ...) ATX_PRINTF(2, 3);
static int usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "atx: %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EXIT_USAGE;
}

static bool wants_help(int argc, char **argv)
{
    return argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
}

int cli_runnable_run(int argc, char **argv, cli_output *out)
{
    static const struct option longopts[] = {
        { "kind", required_argument, NULL, 'k' },
        { "uri", required_argument, NULL, 'u' },
        { "arg", required_argument, NULL, 'a' },
        { "kwargs", required_argument, NULL, 'w' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *cmd = argv[0], *kind = NULL;
    runnable rn = { 0 };
    int c, rc;

    (void)out;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:k:u:a:w:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'k': kind = optarg; break;
        case 'u': rn.uri = optarg; break;
        case 'a':
            if (add_arg(&rn, optarg) < 0) {
                rc = usage_error(cmd, "out of memory");
                goto out;
            }
            break;
        case 'w': {
            const char *eq = strchr(optarg, '=');
            if (!eq || !valid_key(optarg, (size_t)(eq - optarg))) {
                rc = usage_error(cmd, "-w takes KEY=VALUE, not '%s'", optarg);
                goto out;
            }
            if (add_kwarg(&rn, optarg, (size_t)(eq - optarg), eq + 1) < 0) {
                rc = usage_error(cmd, "out of memory");
                goto out;
            }
            break;
        }
        case 'h':
            fputs(runnable_usage, stdout);
            rc = 0;
            goto out;
        case ':':
            rc = usage_error(cmd, "%s needs a value", argv[optind - 1]);
            goto out;
        default:
            rc = usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
            goto out;
        }
    }
    if (optind < argc) {
        rc = usage_error(cmd, "unexpected argument '%s' (arguments go with -a)", argv[optind]);
        goto out;
    }
    if (!kind) {
        rc = usage_error(cmd, "-k KIND is required (noop, exec, exec-test, python-unittest)");
        goto out;
    }
    if (!kind_lookup(kind, &rn.kind)) {
        rc = usage_error(cmd, "unknown kind '%s' (noop, exec, exec-test, python-unittest)",
                         kind);
        goto out;
    }
    if (kinds[rn.kind].needs_uri && (!rn.uri || !*rn.uri)) {
        rc = usage_error(cmd, "kind %s needs -u URI", kind);
        goto out;
    }
    rc = run_with_signals(&rn);
out:
    runnable_release(&rn);
    return rc;
}

/* The recipe's text, or NULL with a line printed. */
static char *read_recipe(const char *path)
{
    FILE *f = fopen(path, "re");
    char *buf = NULL;
    size_t len = 0, cap = 0;

    if (!f) {
        fprintf(stderr, "atx: %s: cannot read the recipe: %s\n", path, strerror(errno));
        return NULL;
    }
    for (;;) {
        if (cap - len < 4096) {
            char *b = realloc(buf, cap = cap ? cap * 2 : 8192);
            if (!b) {
                fprintf(stderr, "atx: %s: out of memory\n", path);
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = b;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        fprintf(stderr, "atx: %s: cannot read the recipe: %s\n", path, strerror(errno));
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[len] = '\0';
    if (strlen(buf) != len) {
        fprintf(stderr, "atx: %s: not valid JSON (a NUL byte)\n", path);
        free(buf);
        return NULL;
    }
    return buf;
}

/* Fill @p rn from the recipe object; on a problem, write it to @p err. The
 * strings stay owned by @p root. */
static bool recipe_runnable(json_object *root, runnable *rn, char *err, size_t errlen)
{
    json_object *kind = NULL;

    if (!json_object_is_type(root, json_type_object)) {
        snprintf(err, errlen, "a recipe is a JSON object with \"kind\"");
        return false;
    }
    json_object_object_foreach(root, key, val) {
        if (strcmp(key, "kind") == 0) {
            if (!json_object_is_type(val, json_type_string)) {
                snprintf(err, errlen, "'kind' must be a string");
                return false;
            }
            kind = val;
        } else if (strcmp(key, "uri") == 0) {
            if (val && !json_object_is_type(val, json_type_string)) {
                snprintf(err, errlen, "'uri' must be a string");
                return false;
            }
            rn->uri = val ? json_object_get_string(val) : NULL;
        } else if (strcmp(key, "args") == 0) {
            if (!json_object_is_type(val, json_type_array)) {
                snprintf(err, errlen, "'args' must be a list of strings");
                return false;
            }
            for (size_t i = 0; i < json_object_array_length(val); i++) {
                json_object *a = json_object_array_get_idx(val, i);
                if (!json_object_is_type(a, json_type_string)) {
                    snprintf(err, errlen, "'args' item %zu is not a string", i + 1);
                    return false;
                }
                if (add_arg(rn, json_object_get_string(a)) < 0) {
                    snprintf(err, errlen, "out of memory");
                    return false;
                }
            }
        } else if (strcmp(key, "kwargs") == 0) {
            if (!json_object_is_type(val, json_type_object)) {
                snprintf(err, errlen, "'kwargs' must be an object");
                return false;
            }
            json_object_object_foreach(val, k, v) {
                json_type ty = json_object_get_type(v);
                if (!valid_key(k, strlen(k))) {
                    snprintf(err, errlen, "'kwargs' key '%s' is not a name", k);
                    return false;
                }
                if (ty != json_type_string && ty != json_type_int && ty != json_type_double &&
                    ty != json_type_boolean) {
                    snprintf(err, errlen, "'kwargs' value of '%s' must be a string, number "
                                          "or boolean", k);
                    return false;
                }
                if (add_kwarg(rn, k, strlen(k), json_object_get_string(v)) < 0) {
                    snprintf(err, errlen, "out of memory");
                    return false;
                }
            }
        } else if (strcmp(key, "config") != 0) {
            /* "config" is Avocado's runner configuration: atx needs none. */
            snprintf(err, errlen, "unknown key '%s' (kind, uri, args, kwargs)", key);
            return false;
        }
    }
    if (!kind) {
        snprintf(err, errlen, "'kind' is missing");
        return false;
    }
    if (!kind_lookup(json_object_get_string(kind), &rn->kind)) {
        snprintf(err, errlen, "unknown kind '%s' (noop, exec, exec-test, python-unittest)",
                 json_object_get_string(kind));
        return false;
    }
    if (kinds[rn->kind].needs_uri && (!rn->uri || !*rn->uri)) {
        snprintf(err, errlen, "kind %s needs a 'uri'", kinds[rn->kind].name);
        return false;
    }
    return true;
}

int cli_runnable_run_recipe(int argc, char **argv, cli_output *out)
{
    json_tokener *tok = NULL;
    json_object *root = NULL;
    runnable rn = { 0 };
    char *text, err[256];
    int rc = EXIT_USAGE;

    (void)out;
    if (wants_help(argc, argv)) {
        fputs(runnable_usage, stdout);
        return 0;
    }
    if (argc != 2)
        return usage_error(argv[0], "takes one recipe file");
    const char *path = argv[1];
    if (!(text = read_recipe(path)))
        return EXIT_USAGE;
    if (!(tok = json_tokener_new())) {
        fprintf(stderr, "atx: %s: out of memory\n", path);
        goto out;
    }
    root = json_tokener_parse_ex(tok, text, (int)strlen(text));
    enum json_tokener_error je = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    if (!root || je != json_tokener_success || text[end + strspn(text + end, " \t\r\n")]) {
        /* Say where: the line of the parser's stop. */
        size_t line = 1;
        for (size_t i = 0; i < end && text[i]; i++)
            line += text[i] == '\n';
        fprintf(stderr, "atx: %s: line %zu: not valid JSON (%s)\n", path, line,
                root && je == json_tokener_success ? "trailing data"
                : je == json_tokener_continue      ? "it ends too early"
                                                   : json_tokener_error_desc(je));
        goto out;
    }
    if (!recipe_runnable(root, &rn, err, sizeof(err))) {
        fprintf(stderr, "atx: %s: %s\n", path, err);
        goto out;
    }
    rc = run_with_signals(&rn);
out:
    runnable_release(&rn);
    json_object_put(root);
    if (tok)
        json_tokener_free(tok);
    free(text);
    return rc;
}

int cli_capabilities(int argc, char **argv, cli_output *out)
{
    json_object *o, *a;

    (void)out;
    if (wants_help(argc, argv)) {
        fputs(runnable_usage, stdout);
        return 0;
    }
    if (argc != 1)
        return usage_error(argv[0], "takes no arguments");
    o = json_object_new_object();
    a = json_object_new_array();
    for (size_t i = 0; i < NKINDS; i++)
        json_object_array_add(a, json_object_new_string(kinds[i].name));
    json_object_object_add(o, "runnables", a);
    a = json_object_new_array();
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        json_object_array_add(a, json_object_new_string(commands[i]));
    json_object_object_add(o, "commands", a);
    /* Avocado's runners list the configuration keys they read; atx reads none. */
    json_object_object_add(o, "configuration_used", json_object_new_array());
    emit(o);
    json_object_put(o);
    return 0;
}
