/*
 * What the user sees: log lines, the progress line on a terminal (plain
 * lines otherwise), and the closing summary. The library prints nothing.
 */
#define _GNU_SOURCE 1
#include "cli.h"

#include <atx/plugin/text.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;
static bool line_shown; /* a progress line is on screen and must be cleared first */

static void clear_line_locked(void)
{
    if (line_shown) {
        fputs("\r\033[K", stderr);
        line_shown = false;
    }
}

void cli_put_clean(FILE *f, const char *s)
{
    /* Invalid UTF-8 becomes U+FFFD (a lone 0x9B is a CSI to some
     * terminals); control characters, ESC above all, and the C1 ones would
     * be the test's commands to the terminal: shown as ^X instead. */
    char *clean = NULL;
    size_t len = 0;
    if (!s || atx_text_clean(s, strlen(s), 0, &clean, &len) < 0)
        return;
    for (const unsigned char *p = (const unsigned char *)clean; *p; p++) {
        if (*p < 0x20 || *p == 0x7F) {
            putc('^', f);
            putc(*p == 0x7F ? '?' : *p + 0x40, f);
        } else if (*p == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F) {
            fputs("^?", f);
            p++;
        } else {
            putc(*p, f);
        }
    }
    free(clean);
}

void cli_log(void *userdata, atx_log_level level, const char *origin, const char *message)
{
    const cli_output *out = userdata;
    int max = out->verbosity < 0 ? ATX_LOG_ERROR : out->verbosity == 0 ? ATX_LOG_WARNING
                                                                        : ATX_LOG_DEBUG;
    if ((int)level > max)
        return;
    pthread_mutex_lock(&out_mu);
    clear_line_locked();
    fprintf(stderr, "atx: %s: %s%s", atx_log_level_name(level),
            origin && strcmp(origin, "orchestrator") != 0 ? origin : "",
            origin && strcmp(origin, "orchestrator") != 0 ? ": " : "");
    cli_put_clean(stderr, message);
    putc('\n', stderr);
    pthread_mutex_unlock(&out_mu);
}

/* ---- progress, as an aggregator on the run's aggregator thread ---- */

typedef struct progress {
    const cli_output *out;
    size_t total, done, running, failed;   /* under out_mu */
    int64_t t0;
    int64_t last_draw;
    pthread_t ticker;
    bool ticking;
    bool stop;                              /* under out_mu */
    pthread_cond_t cv;
} progress;

static int progress_create(atx_plugin_ctx *ctx, void **state)
{
    progress *p = calloc(1, sizeof(*p));
    if (!p)
        return ATX_ENOMEM;
    p->out = atx_plugin_ctx_userdata(ctx);
    *state = p;
    return 0;
}

static void progress_destroy(void *state)
{
    progress *p = state;
    if (p->ticking) {
        pthread_mutex_lock(&out_mu);
        p->stop = true;
        pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&out_mu);
        pthread_join(p->ticker, NULL);
    }
    free(p);
}

static void *tick(void *arg);

static int progress_begin(void *state, const atx_run_info *info)
{
    progress *p = state;
    p->total = info->tests;
    p->t0 = atx_now_ns();
    pthread_cond_init(&p->cv, NULL);
    if (p->out->tty && p->out->verbosity >= 0)
        p->ticking = pthread_create(&p->ticker, NULL, tick, p) == 0;
    return 0;
}

/* ", ETA 4m10s" from the run's expected durations, or "". Called without
 * out_mu: the library logs (taking out_mu) while holding its own lock. */
static void eta_text(const progress *p, char *buf, size_t len)
{
    atx_progress pg;

    buf[0] = '\0';
    if (!p->out->run || atx_run_progress(p->out->run, &pg) < 0 || pg.eta_ns < 0)
        return;
    long long s = (long long)((pg.eta_ns + ATX_NSEC_PER_SEC - 1) / ATX_NSEC_PER_SEC);
    if (s >= 3600)
        snprintf(buf, len, ", ETA %lldh%02lldm", s / 3600, s / 60 % 60);
    else if (s >= 60)
        snprintf(buf, len, ", ETA %lldm%02llds", s / 60, s % 60);
    else
        snprintf(buf, len, ", ETA %llds", s);
}

/* Under out_mu. */
static void draw_locked(progress *p, const char *eta)
{
    int64_t now = atx_now_ns();
    p->last_draw = now;
    fprintf(stderr, "\r\033[K[%zu/%zu] %zu running, %zu failed, %llds%s", p->done, p->total,
            p->running, p->failed, (long long)((now - p->t0) / ATX_NSEC_PER_SEC), eta);
    line_shown = true;
    fflush(stderr);
}

static void draw(progress *p, bool force)
{
    char eta[48];

    /* At most ~20 redraws a second: a terminal is slower than atx. */
    pthread_mutex_lock(&out_mu);
    bool due = force || atx_now_ns() - p->last_draw >= 50 * ATX_NSEC_PER_MSEC;
    pthread_mutex_unlock(&out_mu);
    if (!due)
        return;
    eta_text(p, eta, sizeof(eta));
    pthread_mutex_lock(&out_mu);
    if (!p->stop)
        draw_locked(p, eta);
    pthread_mutex_unlock(&out_mu);
}

/* Redraws once a second, so the clock moves while long tests run. */
static void *tick(void *arg)
{
    progress *p = arg;
    pthread_mutex_lock(&out_mu);
    while (!p->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_cond_timedwait(&p->cv, &out_mu, &until);
        if (p->stop)
            break;
        pthread_mutex_unlock(&out_mu);
        draw(p, true);
        pthread_mutex_lock(&out_mu);
    }
    pthread_mutex_unlock(&out_mu);
    return NULL;
}

static void progress_started(void *state, const atx_test *t, const char *sys, int attempt)
{
    progress *p = state;
    (void)t, (void)sys, (void)attempt;
    pthread_mutex_lock(&out_mu);
    p->running++;
    pthread_mutex_unlock(&out_mu);
    if (p->out->tty && p->out->verbosity >= 0)
        draw(p, false);
}

static const char *status_label(const cli_output *out, const atx_result *r)
{
    static const char *const plain[] = { "PASS", "FAIL", "ERROR", "SKIP", "WARN", "INFO",
                                         "INFRA", "OTHER" };
    static const char *const colored[] = { "\033[32mPASS\033[0m", "\033[31mFAIL\033[0m",
                                           "\033[31mERROR\033[0m", "\033[33mSKIP\033[0m",
                                           "\033[33mWARN\033[0m", "INFO",
                                           "\033[35mINFRA\033[0m", "\033[31mOTHER\033[0m" };
    unsigned s = (unsigned)atx_result_status(r);
    if (s > ATX_STATUS_CUSTOM)
        s = ATX_STATUS_CUSTOM;
    return out->color ? colored[s] : plain[s];
}

static int progress_result(void *state, const atx_result *r)
{
    progress *p = state;
    const cli_output *out = p->out;
    bool own = !atx_result_subtest(r);
    bool bad = atx_status_is_failure(atx_result_status(r));

    pthread_mutex_lock(&out_mu);
    if (own && atx_result_attempt(r) > 0 && p->running > 0)
        p->running--;
    if (own && atx_result_final(r)) {
        p->done++;
        if (bad)
            p->failed++;
    }
    pthread_mutex_unlock(&out_mu);
    if (out->verbosity < 0)
        return 0;
    /* On a terminal only what needs attention gets a line; otherwise one
     * line per test so logs show the run as it went. */
    if (!out->tty || bad || out->verbosity > 0) {
        char secs[32], extra[48] = "";
        atx_text_seconds(atx_result_duration(r), secs);
        if (atx_result_attempt(r) > 1)
            snprintf(extra, sizeof(extra), ", attempt %d", atx_result_attempt(r));
        const char *note = atx_result_note(r);
        const char *sub = atx_result_subtest(r);
        pthread_mutex_lock(&out_mu);
        clear_line_locked();
        fprintf(stdout, "%s ", status_label(out, r));
        cli_put_clean(stdout, atx_result_test(r));
        if (sub) {
            fputs(" :: ", stdout);
            cli_put_clean(stdout, sub);
        }
        fprintf(stdout, " (%ss%s)", secs, extra);
        if (note && *note) {
            fputs(": ", stdout);
            cli_put_clean(stdout, note);
        }
        putc('\n', stdout);
        if (!atx_result_final(r))
            fprintf(stdout, "  (will be rerun)\n");
        fflush(stdout);
        pthread_mutex_unlock(&out_mu);
    }
    if (out->tty)
        draw(p, false);
    return 0;
}

static int progress_end(void *state, const atx_summary *s)
{
    progress *p = state;
    (void)s;
    pthread_mutex_lock(&out_mu);
    p->stop = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&out_mu);
    if (p->ticking)
        pthread_join(p->ticker, NULL);
    p->ticking = false;
    pthread_mutex_lock(&out_mu);
    clear_line_locked();
    pthread_mutex_unlock(&out_mu);
    return 0;
}

static const atx_aggregator_vtable progress_vtable = {
    .version = ATX_AGGREGATOR_VTABLE_VERSION,
    .create = progress_create,
    .destroy = progress_destroy,
    .begin = progress_begin,
    .result = progress_result,
    .end = progress_end,
    .started = progress_started,
};

const atx_plugin_descriptor cli_progress_plugin = {
    ATX_ABI_MAJOR, ATX_ABI_MINOR, sizeof(atx_plugin_descriptor), ATX_PLUGIN_AGGREGATOR,
    "cli-progress", ATX_VERSION_STRING, "The atx command's progress display", &progress_vtable,
};

void cli_print_summary(const cli_output *out, const atx_summary *s, const char *results_dir,
                       const char *const *reports)
{
    char secs[32];

    atx_text_seconds(s->duration_ns, secs);
    fprintf(stderr, "atx: %zu tests: %zu passed, %zu failed, %zu errors", s->tests, s->passed,
            s->failed, s->errors);
    if (s->infra)
        fprintf(stderr, ", %zu infra", s->infra);
    if (s->skipped)
        fprintf(stderr, ", %zu skipped", s->skipped);
    if (s->not_run)
        fprintf(stderr, ", %zu not run", s->not_run);
    if (s->flaky)
        fprintf(stderr, " (%zu flaky)", s->flaky);
    fprintf(stderr, " in %ss%s\n", secs, s->cancelled ? " (cancelled)" : "");
    if (out->verbosity >= 0) {
        fprintf(stderr, "atx: results in %s\n", results_dir);
        for (size_t i = 0; reports && reports[i]; i++) {
            /* On a terminal the page is a link to open. */
            size_t n = strlen(reports[i]);
            bool page = out->tty && reports[i][0] == '/' && n > 5 &&
                        strcmp(reports[i] + n - 5, ".html") == 0;
            fprintf(stderr, "atx: report %s%s\n", page ? "file://" : "", reports[i]);
        }
    }
}

/* A line of the comparison longer than this is cut (a plan whose every
 * test is new): the summary stays a few lines; the HTML page and atx report
 * --compare have them all. */
#define CHANGES_LINE_MAX 1000

void cli_print_changes(const cli_output *out, const atx_changes *c)
{
    char *text = NULL;

    if (!c || atx_changes_text(c, &text) < 0)
        return;
    for (char *line = text, *next; *line; line = next) {
        char *nl = strchr(line, '\n');
        next = nl ? nl + 1 : line + strlen(line);
        if (nl)
            *nl = '\0';
        bool cut = strlen(line) > CHANGES_LINE_MAX;
        if (cut) {
            /* At a space, so no name is shown in part. */
            char *sp = line + CHANGES_LINE_MAX;
            while (sp > line && *sp != ' ')
                sp--;
            *sp = '\0';
        }
        fputs("atx: ", stderr);
        cli_put_clean(stderr, line);
        fputs(cut ? " ...\n" : "\n", stderr);
        /* -q: the counts only. */
        if (out->verbosity < 0)
            break;
    }
    free(text);
}

int cli_usage(const char *sub, const char *fmt, ...)
{
    va_list ap;
    fputs("atx: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(see atx%s%s --help)\n", sub ? " " : "", sub ? sub : "");
    return 2;
}

int cli_error(int code, const char *fmt, ...)
{
    va_list ap;
    fputs("atx: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

int cli_secret_file(const char *path, char **out)
{
    char buf[1100];
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return cli_error(2, "%s: %s", path, strerror(errno));
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return cli_error(2, "%s: not a plain file", path);
    }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 0)
        return cli_error(2, "%s: %s", path, strerror(errno));
    buf[n] = '\0';
    size_t len = strcspn(buf, "\r\n");
    if (len == 0 || len > 1024) {
        explicit_bzero(buf, sizeof(buf));
        return cli_error(2, "%s: %s", path, len ? "its first line is longer than 1024 bytes"
                                                  : "no password on its first line");
    }
    if (st.st_mode & 077)
        fprintf(stderr, "atx: warning: %s can be read by others (mode %04o)\n", path,
                (unsigned)(st.st_mode & 07777));
    buf[len] = '\0';
    *out = strdup(buf);
    explicit_bzero(buf, sizeof(buf));
    return *out ? 0 : cli_error(2, "out of memory");
}
