/*
 * atx — the command line. Thin: everything it does goes through the public
 * API; it decides only what the user sees and the exit code.
 *
 * Exit codes: 0 all passed; 1 a test failed or errored (not one quarantined;
 * with --fail-on new, one that failed in the run compared with neither); 2
 * usage, plan or plugin error; 3 infrastructure (provisioning exhausted).
 */
#define _GNU_SOURCE 1
#include "cli.h"

#include <atx/plugin/text.h>

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE 2

static const char usage_text[] =
    "usage: atx run [PATH...] [--plan FILE] [options]   run tests, write reports\n"
    "       atx run --resume DIR                       finish a killed run\n"
    "       atx list [PATH...] [--plan FILE]           the tests a run would run\n"
    "       atx report DIR [--junit FILE]...           rebuild a run's reports\n"
    "       atx report --compare DIR_A DIR_B           what changed between two runs\n"
    "       atx plugins                                the plugins atx finds\n"
    "       atx bud register|status|add-test-run|daemon   Bud TMP (atx bud --help)\n"
    "       atx runnable-run -k KIND ...               one Avocado-style runnable\n"
    "       atx runnable-run-recipe FILE\n"
    "       atx capabilities\n"
    "       atx help [COMMAND], atx COMMAND --help     a command's options\n"
    "       atx --version\n";

static const char run_usage[] =
    "usage: atx run [PATH...] [--plan FILE] [options]\n"
    "       atx run --resume DIR\n"
    "\n"
    "PATH is an fmf tree (a folder with .fmf/version: its tests), an executable\n"
    "file (one test) or a folder (every executable file below it is a test,\n"
    "named by its path inside the folder).\n"
    "\n"
    "options:\n"
    "  --plan FILE          a JSON plan (tests, provisioners, aggregators, policy)\n"
    "  --fmf-plan NAME      run an fmf tree through its tmt plan NAME\n"
    "  --filter EXPR        fmf filter for the tests of a tree (tag: smoke)\n"
    "  --test NAME          the tree's tests whose names match NAME (a regular\n"
    "                       expression, as tmt's; repeatable)\n"
    "  -c KEY=VALUE         fmf context for adjust rules (repeatable)\n"
    "  --provisioner SPEC   local[:N], podman:IMAGE[:N], ssh:POOLFILE,\n"
    "                       slurm:[PARTITION][:N]; repeatable\n"
    "                       (default local with -j slots)\n"
    "  -j, --jobs N         slots of the default local provisioner (default: cores)\n"
    "  -o, --results DIR    results directory (default atx-results/<UTC time>)\n"
    "  --junit FILE         JUnit XML report (default DIR/junit.xml)\n"
    "  --jsonl FILE         JSON lines report (default DIR/results.jsonl)\n"
    "  --html FILE          the HTML report page (default DIR/report.html)\n"
    "  --ctrf FILE          a CTRF JSON report\n"
    "  --report PLUGIN[:KEY=VALUE,...]  any report plugin with its configuration\n"
    "                       (repeatable): --report junit:path=all.xml,suite=nightly\n"
    "  --no-reports         write no default reports\n"
    "  --reruns N           reruns of a failed test (default 0)\n"
    "  --timeout DURATION   per-test timeout (default 5m)\n"
    "  --deadline DURATION  stop starting tests after this long\n"
    "  --max-running N      systems leased at once, over all provisioners\n"
    "  --shard K/N          run only shard K of N (1 <= K <= N): a share of the\n"
    "                       tests balanced by expected duration (history, else\n"
    "                       declared); the N shards together run every test once\n"
    "  --resume DIR         run the rest of the run in DIR (killed, cancelled) with\n"
    "                       its own options; its reports are rebuilt whole\n"
    "  --history FILE       duration and outcome history (default\n"
    "                       $XDG_STATE_HOME/atx/history.db); --no-history: none\n"
    "  --compare DIR        compare with the run in DIR (its results.jsonl) instead\n"
    "                       of the previous run of the plan the history keeps\n"
    "  --quarantine FILE    tests whose failures do not fail the run: a name or\n"
    "                       regular expression per line, # comments (replaces the\n"
    "                       plan's \"quarantine\")\n"
    "  --fail-on new|any    what fails the run (exit 1): any failure (default) or\n"
    "                       only a new one, failing now and not in the run\n"
    "                       compared with; quarantined failures never do\n"
    "  --bud                upload results to Bud TMP as they come (see atx bud --help);\n"
    "                       with --backend-url URL, --runner-account NAME,\n"
    "                       --test-run-id N (else a run is made), --username EMAIL\n"
    "                       and --password-file FILE (or $BUD_PASSWORD; --password P\n"
    "                       shows it to ps) to log in again on 401,\n"
    "                       --test-suite-name, --url-test-software,\n"
    "                       --ref-test-software, --url-software-under-test,\n"
    "                       --ref-software-under-test\n"
    "  --plugin-path DIR    search DIR for plugins first (repeatable)\n"
    "  -q, --quiet          only the summary and errors\n"
    "  -v, --verbose        a line per result and debug logs\n"
    "  --color WHEN         statuses in colour: auto (a terminal, unless NO_COLOR\n"
    "                       is set), always or never\n"
    "\n"
    "After the summary: what changed since the previous run of the same plan\n"
    "(new failures, fixed, still failing, new and removed tests, newly flaky,\n"
    "slower), from the history.\n"
    "\n"
    "example:\n"
    "  atx run tests/ -j 4 --timeout 10m --reruns 1 -o results\n"
    "  atx run --plan nightly.json --quarantine known.txt --fail-on new\n";

static const char list_usage[] =
    "usage: atx list [PATH...] [--plan FILE] [options]\n"
    "\n"
    "The tests a run of the same PATHs or plan would run, one a line with what\n"
    "they require (or a JSON list).\n"
    "\n"
    "options:\n"
    "  --plan FILE          a JSON plan\n"
    "  --fmf-plan NAME      the tests of an fmf tree's tmt plan NAME\n"
    "  --filter EXPR        fmf filter for the tests of a tree (tag: smoke)\n"
    "  --test NAME          the tree's tests whose names match NAME (repeatable)\n"
    "  -c KEY=VALUE         fmf context for adjust rules (repeatable)\n"
    "  --format text|json   the listing's form (default text); JSON gives each\n"
    "                       test's expected duration (null: unknown)\n"
    "  --shard K/N          only the tests of shard K of N, as atx run --shard\n"
    "                       splits them; their expected total on stderr\n"
    "  --history FILE       duration history the estimates come from (default\n"
    "                       $XDG_STATE_HOME/atx/history.db); --no-history: none\n"
    "  --plugin-path DIR    search DIR for plugins first (repeatable)\n"
    "  -v, --verbose        each test's expected duration too\n"
    "\n"
    "example:\n"
    "  atx list examples/fmf --filter 'tag: smoke'\n"
    "  atx list --plan plan.json --shard 2/4 -v\n";

static const char report_usage[] =
    "usage: atx report DIR [options]\n"
    "       atx report --merge OUT DIR... [options]\n"
    "       atx report --compare DIR_A DIR_B [--format text|json]\n"
    "\n"
    "Rebuild the reports of the run in DIR from its journal: the run's own, or\n"
    "those the options name. With --merge, one set of reports in OUT (JUnit,\n"
    "JSON lines and the HTML page, and those the options name) from the\n"
    "journals of several runs, such as the shards of one plan. With --compare,\n"
    "what changed from the run in DIR_A to the run in DIR_B, on stdout.\n"
    "\n"
    "options:\n"
    "  --merge OUT          merge the runs in DIR... into reports in OUT; a test\n"
    "                       in two runs, shards of different N or one shard twice\n"
    "                       are refused (exit 2, nothing written); a missing\n"
    "                       shard is named, the reports of the others are\n"
    "                       written, and atx exits 3\n"
    "  --compare DIR_A DIR_B\n"
    "                       the tests of DIR_B's run that fail anew, are fixed,\n"
    "                       still fail, are new, were removed, newly flaky or\n"
    "                       slower than in DIR_A's (their results.jsonl)\n"
    "  --format text|json   --compare's form (default text)\n"
    "  --junit FILE         a JUnit XML report\n"
    "  --jsonl FILE         a JSON lines report\n"
    "  --html FILE          the HTML report page\n"
    "  --ctrf FILE          a CTRF JSON report\n"
    "  --report PLUGIN[:KEY=VALUE,...]  any report plugin (repeatable)\n"
    "  --plugin-path DIR    search DIR for plugins first (repeatable)\n"
    "\n"
    "example:\n"
    "  atx report atx-results/nightly --html /srv/www/nightly.html\n"
    "  atx report --merge merged shard-1 shard-2 shard-3 shard-4\n"
    "  atx report --compare atx-results/monday atx-results/tuesday --format json\n";

static const char plugins_usage[] =
    "usage: atx plugins [--plugin-path DIR]...\n"
    "\n"
    "The plugins atx finds (ATX_PLUGIN_PATH, --plugin-path, next to libatx, the\n"
    "installed folder): name, kind, version and file; broken ones with why.\n"
    "\n"
    "example:\n"
    "  atx plugins --plugin-path ./build/plugins\n";

/* The usage of a command, or NULL. */
static const char *command_usage(const char *cmd)
{
    return strcmp(cmd, "run") == 0       ? run_usage
         : strcmp(cmd, "list") == 0      ? list_usage
         : strcmp(cmd, "report") == 0    ? report_usage
         : strcmp(cmd, "plugins") == 0   ? plugins_usage
                                         : NULL;
}

/* The candidate closest to @p word, when it is close (a typo): at most a
 * third of its letters off, and at most 3. */
static const char *closest(const char *word, const char *const *cands, size_t n)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX, wl = strlen(word);
    static size_t d[66][66]; /* the CLI's main thread only */
    if (wl == 0 || wl > 64)
        return NULL;
    for (size_t c = 0; c < n; c++) {
        const char *t = cands[c];
        size_t cl = strlen(t);
        if (cl > 64)
            continue;
        /* Edit distance with adjacent swaps ("rnu" is one from "run"). */
        for (size_t i = 0; i <= wl; i++)
            d[i][0] = i;
        for (size_t j = 0; j <= cl; j++)
            d[0][j] = j;
        for (size_t i = 1; i <= wl; i++)
            for (size_t j = 1; j <= cl; j++) {
                size_t v = d[i - 1][j - 1] + (word[i - 1] != t[j - 1]);
                if (d[i - 1][j] + 1 < v)
                    v = d[i - 1][j] + 1;
                if (d[i][j - 1] + 1 < v)
                    v = d[i][j - 1] + 1;
                if (i > 1 && j > 1 && word[i - 1] == t[j - 2] && word[i - 2] == t[j - 1] &&
                    d[i - 2][j - 2] + 1 < v)
                    v = d[i - 2][j - 2] + 1;
                d[i][j] = v;
            }
        if (d[wl][cl] < best_d) {
            best_d = d[wl][cl];
            best = t;
        }
    }
    size_t limit = wl / 3 < 3 ? (wl / 3 ? wl / 3 : 1) : 3;
    return best_d <= limit ? best : NULL;
}

static atx_run *volatile g_run;
static volatile sig_atomic_t g_signals;

static void on_signal(int sig)
{
    (void)sig;
    g_signals++;
    if (g_run)
        atx_run_cancel(g_run, g_signals > 1);
}

#define usage_error(...) cli_usage(NULL, __VA_ARGS__)

static int fail_last(void)
{
    return cli_error(EXIT_USAGE, "%s", *atx_error_last()->message
                                           ? atx_error_last()->message
                                           : atx_strerror(atx_error_last()->code));
}

typedef struct options {
    const char *plan;
    const char *results;
    const char *junit;
    const char *jsonl;
    const char *html;
    const char *ctrf;
    const char **report_specs; /* --report PLUGIN[:KEY=VALUE,...] */
    size_t nreport_specs;
    const char *format;
    const char *fmf_plan;
    json_object *names;     /* --test NAME (repeatable): fmf tests by name */
    const char *filter;
    json_object *context;
    char **provisioners;
    size_t nprov;
    const char **plugin_paths;
    size_t npaths;
    int jobs;
    int reruns;
    int64_t timeout_ns;
    int64_t deadline_ns;
    int max_running;
    unsigned shard_k, shard_n; /* --shard K/N; 0/0 none */
    const char *resume;
    const char *merge;  /* atx report --merge OUT */
    const char *compare;    /* run: the results folder to compare with; report: DIR_A */
    const char *quarantine; /* --quarantine FILE */
    atx_fail_on fail_on;    /* --fail-on new|any */
    bool fail_on_given;
    const char *history;
    bool no_history;
    int other_opts;     /* options besides -q, -v, --plugin-path, --history */
    bool bud;
    cli_bud_opts budo;
    char *password;     /* --password or --password-file */
    json_object *kept;  /* the command line as parsed, without secrets: the journal's */
    bool help;          /* -h, --help */
    bool no_reports;
    char **paths;
    int npaths_args;
    cli_output out;
} options;

/* "K/N" with 1 <= K <= N: decimal digits only, nothing around them. */
static int parse_shard(const char *s, unsigned *k, unsigned *n)
{
    unsigned long v[2];
    const char *p = s;

    for (int i = 0; i < 2; i++) {
        char *end;
        if (*p < '0' || *p > '9')
            return -1;
        errno = 0;
        v[i] = strtoul(p, &end, 10);
        if (errno || v[i] > 100000 || *end != (i == 0 ? '/' : '\0'))
            return -1;
        p = end + 1;
    }
    if (v[1] < 1 || v[0] < 1 || v[0] > v[1])
        return -1;
    *k = (unsigned)v[0];
    *n = (unsigned)v[1];
    return 0;
}

static int parse_options(int argc, char **argv, options *o)
{
    enum { O_PLAN = 256, O_PROV, O_JUNIT, O_JSONL, O_NOREP, O_RERUNS, O_TIMEOUT, O_DEADLINE,
           O_PPATH, O_FORMAT, O_FMFPLAN, O_FILTER, O_RESUME, O_HISTORY, O_NOHIST, O_MAXRUN,
           O_BUD, O_BACKEND, O_ACCOUNT, O_TRID, O_USER, O_PASS, O_PASSFILE, O_SUITE, O_UTS,
           O_RTS, O_USUT, O_RSUT, O_HTML, O_CTRF, O_REPORT, O_COLOR, O_TEST, O_SHARD, O_MERGE,
           O_COMPARE, O_QUARANTINE, O_FAILON };
    static const struct option longopts[] = {
        { "plan", required_argument, NULL, O_PLAN },
        { "provisioner", required_argument, NULL, O_PROV },
        { "jobs", required_argument, NULL, 'j' },
        { "results", required_argument, NULL, 'o' },
        { "junit", required_argument, NULL, O_JUNIT },
        { "jsonl", required_argument, NULL, O_JSONL },
        { "html", required_argument, NULL, O_HTML },
        { "ctrf", required_argument, NULL, O_CTRF },
        { "report", required_argument, NULL, O_REPORT },
        { "no-reports", no_argument, NULL, O_NOREP },
        { "reruns", required_argument, NULL, O_RERUNS },
        { "timeout", required_argument, NULL, O_TIMEOUT },
        { "deadline", required_argument, NULL, O_DEADLINE },
        { "plugin-path", required_argument, NULL, O_PPATH },
        { "format", required_argument, NULL, O_FORMAT },
        { "fmf-plan", required_argument, NULL, O_FMFPLAN },
        { "filter", required_argument, NULL, O_FILTER },
        { "test", required_argument, NULL, O_TEST },
        { "resume", required_argument, NULL, O_RESUME },
        { "history", required_argument, NULL, O_HISTORY },
        { "no-history", no_argument, NULL, O_NOHIST },
        { "max-running", required_argument, NULL, O_MAXRUN },
        { "shard", required_argument, NULL, O_SHARD },
        { "merge", required_argument, NULL, O_MERGE },
        { "compare", required_argument, NULL, O_COMPARE },
        { "quarantine", required_argument, NULL, O_QUARANTINE },
        { "fail-on", required_argument, NULL, O_FAILON },
        { "bud", no_argument, NULL, O_BUD },
        { "backend-url", required_argument, NULL, O_BACKEND },
        { "runner-account", required_argument, NULL, O_ACCOUNT },
        { "test-run-id", required_argument, NULL, O_TRID },
        { "username", required_argument, NULL, O_USER },
        { "password", required_argument, NULL, O_PASS },
        { "password-file", required_argument, NULL, O_PASSFILE },
        { "test-suite-name", required_argument, NULL, O_SUITE },
        { "url-test-software", required_argument, NULL, O_UTS },
        { "ref-test-software", required_argument, NULL, O_RTS },
        { "url-software-under-test", required_argument, NULL, O_USUT },
        { "ref-software-under-test", required_argument, NULL, O_RSUT },
        { "context", required_argument, NULL, 'c' },
        { "quiet", no_argument, NULL, 'q' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { "color", required_argument, NULL, O_COLOR },
        { NULL, 0, NULL, 0 },
    };
    int c;
    char *end;

    o->reruns = -1;
    json_object_put(o->kept);
    o->kept = json_object_new_array();
    optind = 0; /* a full reset: the options may be parsed twice (--resume) */
    opterr = 0; /* getopt's messages would show an option's value (a password) */
    /* -u, -b, -n: bud_runner's short forms of the Bud flags. */
    while ((c = getopt_long(argc, argv, "c:j:o:qvhu:b:n:", longopts, NULL)) != -1) {
        if (c != 'q' && c != 'v' && c != O_PPATH && c != O_HISTORY && c != O_NOHIST &&
            c != O_RESUME && c != O_COLOR)
            o->other_opts++;
        /* What the journal keeps is rebuilt from what was parsed (an
         * abbreviated --pass=X included), secrets left out. */
        if (c != O_PASS && c != '?') {
            const struct option *lo = longopts;
            int key = c == 'u' ? O_USER : c == 'b' ? O_BACKEND : c == 'n' ? O_SUITE : c;
            while (lo->name && lo->val != key)
                lo++;
            char name[64];
            snprintf(name, sizeof(name), "--%s", lo->name ? lo->name : "?");
            json_object_array_add(o->kept, json_object_new_string(name));
            if (lo->has_arg && optarg)
                json_object_array_add(o->kept, json_object_new_string(optarg));
        }
        switch (c) {
        case O_RESUME: o->resume = optarg; break;
        case O_BUD: o->bud = true; break;
        case 'b':
        case O_BACKEND: o->budo.backend = optarg; break;
        case O_ACCOUNT: o->budo.runner_account = optarg; break;
        case 'u':
        case O_USER: o->budo.username = optarg; break;
        case O_PASS:
            /* Kept, and wiped from what ps shows. */
            free(o->password);
            if (!(o->password = strdup(optarg)))
                return usage_error("out of memory");
            o->budo.password = o->password;
            memset(optarg, 'x', strlen(optarg));
            break;
        case O_PASSFILE: {
            char *pw = NULL;
            int rc = cli_secret_file(optarg, &pw);
            if (rc)
                return rc;
            free(o->password);
            o->password = pw;
            o->budo.password = o->password;
            break;
        }
        case 'n':
        case O_SUITE: o->budo.test_suite_name = optarg; break;
        case O_UTS: o->budo.url_test_software = optarg; break;
        case O_RTS: o->budo.ref_test_software = optarg; break;
        case O_USUT: o->budo.url_software_under_test = optarg; break;
        case O_RSUT: o->budo.ref_software_under_test = optarg; break;
        case O_TRID: {
            long n = strtol(optarg, &end, 10);
            if (*end || n < 1)
                return usage_error("--test-run-id takes a run number, not '%s'", optarg);
            o->budo.test_run_id = n;
            break;
        }
        case O_HISTORY: o->history = optarg; break;
        case O_NOHIST: o->no_history = true; break;
        case O_MAXRUN: {
            long n = strtol(optarg, &end, 10);
            if (*end || n < 1 || n > 100000)
                return usage_error("--max-running takes a number from 1 to 100000, not '%s'",
                                   optarg);
            o->max_running = (int)n;
            break;
        }
        case O_SHARD:
            if (parse_shard(optarg, &o->shard_k, &o->shard_n) < 0)
                return usage_error("--shard takes K/N, shard K of N with 1 <= K <= N "
                                   "(--shard 2/4), not '%s'", optarg);
            break;
        case O_MERGE: o->merge = optarg; break;
        case O_COMPARE: o->compare = optarg; break;
        case O_QUARANTINE: o->quarantine = optarg; break;
        case O_FAILON:
            if (strcmp(optarg, "any") == 0)
                o->fail_on = ATX_FAIL_ON_ANY;
            else if (strcmp(optarg, "new") == 0)
                o->fail_on = ATX_FAIL_ON_NEW;
            else
                return usage_error("--fail-on is any (a failure fails the run) or new (only "
                                   "a new failure does), not '%s'", optarg);
            o->fail_on_given = true;
            break;
        case O_PLAN: o->plan = optarg; break;
        case O_PROV:
            o->provisioners = realloc(o->provisioners, (o->nprov + 1) * sizeof(char *));
            if (!o->provisioners)
                return usage_error("out of memory");
            o->provisioners[o->nprov++] = optarg;
            break;
        case 'j': {
            long n = strtol(optarg, &end, 10);
            if (*end || n < 1 || n > 4096)
                return usage_error("-j takes a number from 1 to 4096, not '%s'", optarg);
            o->jobs = (int)n;
            break;
        }
        case 'o': o->results = optarg; break;
        case O_JUNIT: o->junit = optarg; break;
        case O_JSONL: o->jsonl = optarg; break;
        case O_HTML: o->html = optarg; break;
        case O_CTRF: o->ctrf = optarg; break;
        case O_REPORT: {
            const char **v = realloc(o->report_specs, (o->nreport_specs + 1) * sizeof(*v));
            if (!v)
                return usage_error("out of memory");
            o->report_specs = v;
            v[o->nreport_specs++] = optarg;
            break;
        }
        case O_NOREP: o->no_reports = true; break;
        case O_RERUNS: {
            long n = strtol(optarg, &end, 10);
            if (*end || n < 0 || n > 1000)
                return usage_error("--reruns takes a number from 0 to 1000, not '%s'", optarg);
            o->reruns = (int)n;
            break;
        }
        case O_TIMEOUT:
        case O_DEADLINE: {
            int64_t ns;
            if (atx_duration_parse(optarg, &ns) < 0 || ns <= 0)
                return usage_error("--%s: '%s' is not a duration (90, 90s, 5m, 1h 30m)",
                                   c == O_TIMEOUT ? "timeout" : "deadline", optarg);
            *(c == O_TIMEOUT ? &o->timeout_ns : &o->deadline_ns) = ns;
            break;
        }
        case O_PPATH:
            o->plugin_paths = realloc(o->plugin_paths, (o->npaths + 2) * sizeof(char *));
            if (!o->plugin_paths)
                return usage_error("out of memory");
            o->plugin_paths[o->npaths++] = optarg;
            break;
        case O_FORMAT:
            if (strcmp(optarg, "text") != 0 && strcmp(optarg, "json") != 0)
                return usage_error("--format is text or json, not '%s'", optarg);
            o->format = optarg;
            break;
        case O_FMFPLAN: o->fmf_plan = optarg; break;
        case O_FILTER: o->filter = optarg; break;
        case O_TEST:
            if (!o->names)
                o->names = json_object_new_array();
            json_object_array_add(o->names, json_object_new_string(optarg));
            break;
        case 'c': {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg)
                return usage_error("-c takes KEY=VALUE, not '%s'", optarg);
            if (!o->context)
                o->context = json_object_new_object();
            *eq = '\0';
            json_object_object_add(o->context, optarg, json_object_new_string(eq + 1));
            *eq = '=';
            break;
        }
        case 'q': o->out.verbosity = -1; break;
        case 'v': o->out.verbosity = 1; break;
        case 'h': o->help = true; break;
        case O_COLOR:
            /* auto: on a terminal, unless NO_COLOR is set. */
            if (strcmp(optarg, "always") == 0)
                o->out.color = true;
            else if (strcmp(optarg, "never") == 0)
                o->out.color = false;
            else if (strcmp(optarg, "auto") == 0)
                o->out.color = isatty(STDOUT_FILENO) && !getenv("NO_COLOR");
            else
                return usage_error("--color is auto, always or never, not '%s'", optarg);
            break;
        default: {
            /* The option as given, without its value. */
            const char *arg = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
            if (strncmp(arg, "--", 2) != 0 && optopt)
                return usage_error("-%c: unknown option, or its value is missing", optopt);
            const char *names[sizeof(longopts) / sizeof(longopts[0])];
            size_t n = 0;
            for (const struct option *lo = longopts; lo->name; lo++)
                names[n++] = lo->name;
            char word[80];
            snprintf(word, sizeof(word), "%.*s", (int)strcspn(arg + 2, "="), arg + 2);
            const char *near = closest(word, names, n);
            if (near)
                return usage_error("--%s: unknown option; did you mean --%s?", word, near);
            return usage_error("--%s: unknown or ambiguous option, or its value is missing",
                               word);
        }
        }
    }
    o->paths = argv + optind;
    o->npaths_args = argc - optind;
    for (int i = optind; i < argc; i++)
        json_object_array_add(o->kept, json_object_new_string(argv[i]));
    return 0;
}

/* Plugin search: --plugin-path first, then what the library searches
 * (ATX_PLUGIN_PATH, next to libatx, the installed directory). */
static int make_registry(options *o, atx_plugins **out)
{
    atx_plugins_opts po = ATX_PLUGINS_OPTS_INIT;
    const char **paths = calloc(o->npaths + 1, sizeof(char *));
    int r;

    if (!paths)
        return ATX_ENOMEM;
    for (size_t i = 0; i < o->npaths; i++)
        paths[i] = o->plugin_paths[i];
    po.paths = paths;
    po.log = cli_log;
    po.log_userdata = &o->out;
    r = atx_plugins_new(&po, out);
    free(paths);
    return r;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Collect executable files below dir (sorted, relative paths). */
static int collect(const char *root, const char *rel, char ***list, size_t *n)
{
    char path[PATH_MAX];
    DIR *d;
    struct dirent *de;
    char **names = NULL;
    size_t nn = 0;

    snprintf(path, sizeof(path), "%s%s%s", root, *rel ? "/" : "", rel);
    if (!(d = opendir(path)))
        return -errno;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char **nn2 = realloc(names, (nn + 1) * sizeof(char *));
        if (!nn2)
            break;
        names = nn2;
        names[nn++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, nn, sizeof(char *), cmp_str);
    for (size_t i = 0; i < nn; i++) {
        char sub[PATH_MAX], full[PATH_MAX];
        struct stat st;
        snprintf(sub, sizeof(sub), "%s%s%s", rel, *rel ? "/" : "", names[i]);
        snprintf(full, sizeof(full), "%s/%s", root, sub);
        if (stat(full, &st) == 0) {
            if (S_ISDIR(st.st_mode)) {
                collect(root, sub, list, n);
            } else if (S_ISREG(st.st_mode) && (st.st_mode & 0111)) {
                char **l = realloc(*list, (*n + 1) * sizeof(char *));
                if (l) {
                    *list = l;
                    (*list)[(*n)++] = strdup(sub);
                }
            }
        }
        free(names[i]);
    }
    free(names);
    return 0;
}

static int add_path_test(atx_run *run, const char *name, const char *file, options *o)
{
    char abs[PATH_MAX], dir[PATH_MAX];
    atx_test *t;
    json_object *spec, *cmd;
    int r;

    if (!realpath(file, abs))
        return atx_error_set(-errno, "%s: %s", file, strerror(errno));
    snprintf(dir, sizeof(dir), "%s", abs);
    *strrchr(dir, '/') = '\0';
    if ((r = atx_test_new(name, "exec", &t)) < 0)
        return r;
    spec = json_object_new_object();
    cmd = json_object_new_array();
    json_object_array_add(cmd, json_object_new_string(abs));
    json_object_object_add(spec, "command", cmd);
    json_object_object_add(spec, "basedir", json_object_new_string(*dir ? dir : "/"));
    r = atx_test_set_spec_json(t, json_object_to_json_string_ext(spec, JSON_C_TO_STRING_PLAIN));
    json_object_put(spec);
    if (r < 0) {
        atx_test_free(t);
        return r;
    }
    if (o->timeout_ns)
        atx_test_set_timeout(t, o->timeout_ns);
    return atx_run_add_test(run, t);
}

static int add_paths(atx_run *run, options *o)
{
    for (int i = 0; i < o->npaths_args; i++) {
        const char *p = o->paths[i];
        struct stat st;
        int r;
        if (stat(p, &st) < 0)
            return atx_error_set(-errno, "%s: %s", p, strerror(errno));
        char version[PATH_MAX + 16];
        snprintf(version, sizeof(version), "%s/.fmf/version", p);
        if (S_ISDIR(st.st_mode) && access(version, F_OK) == 0) {
            /* An fmf tree: its tests come from the fmf executor. */
            json_object *src = json_object_new_object();
            json_object_object_add(src, "tree", json_object_new_string(p));
            if (o->fmf_plan)
                json_object_object_add(src, "plan", json_object_new_string(o->fmf_plan));
            if (o->filter)
                json_object_object_add(src, "filter", json_object_new_string(o->filter));
            if (o->names)
                json_object_object_add(src, "test", json_object_get(o->names));
            if (o->context)
                json_object_object_add(src, "context", json_object_get(o->context));
            r = atx_run_discover(run, "fmf", json_object_to_json_string(src), NULL);
            json_object_put(src);
            if (r < 0)
                return r;
            continue;
        }
        if (o->fmf_plan || o->filter || o->context || o->names)
            return atx_error_set(ATX_EINVAL, "%s is not an fmf tree (no .fmf/version): "
                                 "--fmf-plan, --filter, --test and -c are for fmf trees", p);
        if (S_ISDIR(st.st_mode)) {
            char **list = NULL;
            size_t n = 0;
            if ((r = collect(p, "", &list, &n)) < 0)
                return atx_error_set(r, "%s: %s", p, strerror(-r));
            if (n == 0)
                fprintf(stderr, "atx: warning: %s holds no executable files\n", p);
            for (size_t k = 0; k < n; k++) {
                char name[PATH_MAX + 1], file[PATH_MAX * 2];
                snprintf(name, sizeof(name), "/%s", list[k]);
                snprintf(file, sizeof(file), "%s/%s", p, list[k]);
                if (r == 0)
                    r = add_path_test(run, name, file, o);
                free(list[k]);
            }
            free(list);
            if (r < 0)
                return r;
        } else if (S_ISREG(st.st_mode)) {
            const char *base = strrchr(p, '/');
            char name[PATH_MAX];
            snprintf(name, sizeof(name), "/%s", base ? base + 1 : p);
            if (!(st.st_mode & 0111))
                return atx_error_set(ATX_EINVAL, "%s is not executable", p);
            if ((r = add_path_test(run, name, p, o)) < 0)
                return r;
        } else {
            return atx_error_set(ATX_EINVAL, "%s is neither a file nor a folder", p);
        }
    }
    return 0;
}

static char *absolute(const char *p);
static int add_report_spec(atx_run *run, const char *spec, char **path);
static int add_reports(atx_run *run, const options *o, bool defaults, char **list, size_t *n);

/* A slot count after a spec's ':': 1 when @p text is a number from 1 to
 * @p max (*out), 0 a number out of range, -1 not a number. */
static int spec_count(const char *text, long max, long *out)
{
    char *end;
    long n = strtol(text, &end, 10);

    if (!*text || *end)
        return -1;
    if (n < 1 || n > max)
        return 0;
    *out = n;
    return 1;
}

static int add_provisioner_spec(atx_run *run, const char *spec, int jobs)
{
    char name[64], config[128];
    const char *colon = strchr(spec, ':');
    size_t n = colon ? (size_t)(colon - spec) : strlen(spec);

    if (n == 0 || n >= sizeof(name))
        return atx_error_set(ATX_EINVAL, "'%s' is not a provisioner (try local:4)", spec);
    memcpy(name, spec, n);
    name[n] = '\0';
    if (strcmp(name, "local") == 0) {
        long slots = jobs;
        if (colon && spec_count(colon + 1, 4096, &slots) != 1)
            return atx_error_set(ATX_EINVAL, "local:N takes N from 1 to 4096, not '%s'",
                                 colon + 1);
        snprintf(config, sizeof(config), "{\"slots\": %ld}", slots);
        return atx_run_add_provisioner(run, "local", config);
    }
    json_object *c = json_object_new_object();
    int r;
    if (strcmp(name, "podman") == 0 && colon) {
        /* podman:IMAGE[:N] (the image may hold ':' for its tag: N is the
         * last part when it is a number) */
        char *img = strdup(colon + 1), *last = strrchr(img, ':');
        long slots = jobs;
        int got = last ? spec_count(last + 1, 1024, &slots) : -1;
        if (got == 0) {
            free(img);
            json_object_put(c);
            return atx_error_set(ATX_EINVAL, "podman:IMAGE:N takes N from 1 to 1024");
        }
        if (got == 1)
            *last = '\0';
        json_object_object_add(c, "image", json_object_new_string(img));
        json_object_object_add(c, "slots", json_object_new_int((int)slots));
        free(img);
    } else if (strcmp(name, "slurm") == 0 && colon) {
        /* slurm:PARTITION[:N] (an empty PARTITION: any) */
        char *part = strdup(colon + 1), *last = strchr(part, ':');
        long count;
        if (last) {
            if (spec_count(last + 1, 4096, &count) != 1) {
                free(part);
                json_object_put(c);
                return atx_error_set(ATX_EINVAL, "slurm:PARTITION:N takes N from 1 to 4096");
            }
            json_object_object_add(c, "slots", json_object_new_int((int)count));
            *last = '\0';
        }
        if (*part)
            json_object_object_add(c, "partition", json_object_new_string(part));
        free(part);
    } else if (strcmp(name, "ssh") == 0 && colon) {
        char *pool = absolute(colon + 1);
        json_object_object_add(c, "pool", json_object_new_string(pool ? pool : colon + 1));
        free(pool);
    } else if (colon) {
        json_object_put(c);
        return atx_error_set(ATX_EINVAL, "provisioner '%s' takes no argument here; use a plan",
                             name);
    }
    r = atx_run_add_provisioner(run, name, json_object_to_json_string(c));
    json_object_put(c);
    return r;
}

static char *absolute(const char *p)
{
    char cwd[PATH_MAX], *out;
    if (p[0] == '/' || !getcwd(cwd, sizeof(cwd)))
        return strdup(p);
    return asprintf(&out, "%s/%s", cwd, p) < 0 ? NULL : out;
}

/* Build a run from the options: plan, paths, provisioners, reports. */
static int build_run(options *o, atx_plugins *reg, const char *results, atx_run **out,
                     char ***reports)
{
    atx_run_opts ro = ATX_RUN_OPTS_INIT;
    atx_run *run;
    int r;

    ro.results_dir = results;
    ro.plugins = reg;
    ro.log = cli_log;
    ro.log_userdata = &o->out;
    ro.log_level = o->out.verbosity > 0 ? ATX_LOG_DEBUG : ATX_LOG_INFO;
    if ((r = atx_run_new(&ro, &run)) < 0)
        return r;
    *out = run;
    if (o->plan && (r = atx_plan_load_file(run, o->plan)) < 0)
        return r;
    if (!o->plan && o->npaths_args == 0)
        return atx_error_set(ATX_EINVAL, "nothing to run: give test paths or --plan FILE");
    if (o->npaths_args == 0 && (o->fmf_plan || o->filter || o->context || o->names))
        return atx_error_set(ATX_EINVAL, "--fmf-plan, --filter, --test and -c are for an fmf "
                             "tree given as PATH (a plan's tree entry takes \"plan\", "
                             "\"filter\", \"test\" and \"context\")");
    if ((r = add_paths(run, o)) < 0)
        return r;
    atx_policy pol = *atx_run_policy(run);
    if (o->reruns >= 0)
        pol.reruns = o->reruns;
    if (o->timeout_ns)
        pol.timeout_ns = o->timeout_ns;
    if (o->deadline_ns)
        pol.deadline_ns = o->deadline_ns;
    if (o->max_running)
        pol.max_running = o->max_running;
    if ((r = atx_run_set_policy(run, &pol)) < 0)
        return r;
    int jobs = o->jobs ? o->jobs : (int)sysconf(_SC_NPROCESSORS_ONLN);
    for (size_t i = 0; i < o->nprov; i++)
        if ((r = add_provisioner_spec(run, o->provisioners[i], jobs)) < 0)
            return r;
    if (atx_run_provisioner_count(run) == 0 &&
        (r = add_provisioner_spec(run, "local", jobs > 0 ? jobs : 1)) < 0)
        return r;

    /* Reports: the plan's and the flags'; without a plan's, JUnit, JSONL
     * and the HTML page in DIR as well. */
    char **list = calloc(4 + o->nreport_specs + 1, sizeof(char *));
    if (!list)
        return atx_error_set(ATX_ENOMEM, "out of memory");
    *reports = list;
    size_t nlist = 0;
    if ((r = add_reports(run, o, atx_run_aggregator_count(run) == 0 && !o->no_reports, list,
                         &nlist)) < 0)
        return r;
    return atx_run_add_builtin(run, &cli_progress_plugin, NULL, &o->out);
}

/* The reports the flags name (--junit, --jsonl, --html, --ctrf, --report)
 * and, with @p defaults, JUnit, JSONL and the HTML page in the results
 * folder for those not named; each one's file goes to list[*n]. Flag paths
 * are relative to where atx runs. */
static int add_reports(atx_run *run, const options *o, bool defaults, char **list, size_t *n)
{
    const struct {
        const char *plugin, *flag, *file;
    } std[] = {
        { "junit", o->junit, "junit.xml" },
        { "jsonl", o->jsonl, "results.jsonl" },
        { "html", o->html, "report.html" },
        { "ctrf", o->ctrf, NULL },
    };
    int r;

    for (size_t i = 0; i < sizeof(std) / sizeof(std[0]); i++) {
        if (!std[i].flag && !(defaults && std[i].file))
            continue;
        char *path = std[i].flag ? absolute(std[i].flag) : NULL;
        json_object *c = json_object_new_object();
        json_object_object_add(c, "path", json_object_new_string(path ? path : std[i].file));
        r = atx_run_add_aggregator(run, std[i].plugin, json_object_to_json_string(c));
        json_object_put(c);
        if (r < 0) {
            free(path);
            return r;
        }
        if (!path && asprintf(&path, "%s/%s", atx_run_results_dir(run), std[i].file) < 0)
            path = NULL;
        if (path)
            list[(*n)++] = path;
    }
    for (size_t i = 0; i < o->nreport_specs; i++) {
        char *path = NULL;
        if ((r = add_report_spec(run, o->report_specs[i], &path)) < 0)
            return r;
        if (path)
            list[(*n)++] = path;
    }
    return 0;
}

/* --report PLUGIN[:KEY=VALUE,...]: any aggregator, its configuration from
 * the pairs (a value that is a JSON number or boolean is one); *path gets
 * its report file when it names one. */
static int add_report_spec(atx_run *run, const char *spec, char **path)
{
    const char *colon = strchr(spec, ':');
    char *plugin = strndup(spec, colon ? (size_t)(colon - spec) : strlen(spec));
    json_object *c = json_object_new_object();
    int r = 0;

    if (!plugin || !c) {
        free(plugin);
        json_object_put(c);
        return atx_error_set(ATX_ENOMEM, "out of memory");
    }
    for (const char *p = colon ? colon + 1 : NULL; p && *p && r == 0;) {
        size_t n = strcspn(p, ",");
        char *pair = strndup(p, n), *eq = pair ? strchr(pair, '=') : NULL;
        if (!eq || eq == pair) {
            r = atx_error_set(ATX_EINVAL, "--report %s: '%.*s' is not KEY=VALUE", spec, (int)n, p);
        } else {
            *eq = '\0';
            json_object *v = json_tokener_parse(eq + 1);
            if (!v || !(json_object_is_type(v, json_type_int) ||
                        json_object_is_type(v, json_type_double) ||
                        json_object_is_type(v, json_type_boolean))) {
                json_object_put(v);
                if (strcmp(pair, "path") == 0 && eq[1] != '/') {
                    char *abs = absolute(eq + 1);
                    v = json_object_new_string(abs ? abs : eq + 1);
                    free(abs);
                } else {
                    v = json_object_new_string(eq + 1);
                }
            }
            json_object_object_add(c, pair, v);
        }
        free(pair);
        p += n;
        if (*p == ',')
            p++;
    }
    json_object *pv;
    if (r == 0 && (r = atx_run_add_aggregator(run, plugin, json_object_to_json_string(c))) == 0 &&
        json_object_object_get_ex(c, "path", &pv))
        *path = strdup(json_object_get_string(pv));
    free(plugin);
    json_object_put(c);
    return r;
}

static void default_results(char *buf, size_t len)
{
    char ts[32];
    atx_text_utc(atx_wallclock_ns(), 1, ts);
    snprintf(buf, len, "atx-results/%s", ts);
}

/* The history file: --history, else $XDG_STATE_HOME/atx/history.db (or
 * ~/.local/state/...); NULL with --no-history or without a home. */
static char *history_path(const options *o)
{
    const char *state = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    char *p = NULL;

    if (o->no_history)
        return NULL;
    if (o->history)
        return absolute(o->history);
    if (state && state[0] == '/')
        return asprintf(&p, "%s/atx/history.db", state) < 0 ? NULL : p;
    if (home && home[0] == '/')
        return asprintf(&p, "%s/.local/state/atx/history.db", home) < 0 ? NULL : p;
    return NULL;
}

/* The stored command line of the run in o->resume, parsed into o (which
 * keeps -q, -v, --plugin-path and --history given now). The strings live
 * in *keep until the command ends. */
static int load_resumed(options *o, char *results, size_t len, char ***keep)
{
    char *args = NULL, *cwd = NULL;
    int rc = EXIT_USAGE;

    if (o->other_opts || o->npaths_args)
        return usage_error("--resume DIR runs the rest of that run with its own tests and "
                           "options; only -q, -v, --plugin-path and --history go with it");
    char *dir = absolute(o->resume);
    if (!dir)
        return usage_error("out of memory");
    snprintf(results, len, "%s", dir);
    free(dir);
    if (atx_journal_meta(results, "argv", &args) < 0 ||
        atx_journal_meta(results, "cwd", &cwd) < 0)
        return fail_last();
    json_object *arr = args ? json_tokener_parse(args) : NULL;
    if (!arr || !json_object_is_type(arr, json_type_array)) {
        cli_error(EXIT_USAGE, "%s was not started by atx run: its journal keeps no command "
                  "line to resume with", results);
        goto out;
    }
    size_t n = json_object_array_length(arr);
    char **av = calloc(n + 2, sizeof(char *));
    if (!av)
        goto out;
    *keep = av;
    av[0] = strdup("run");
    for (size_t i = 0; i < n; i++)
        av[i + 1] = strdup(json_object_get_string(json_object_array_get_idx(arr, i)));
    options now = *o;
    options was = { 0 };
    was.out = o->out;
    if ((rc = parse_options((int)n + 1, av, &was)) != 0) {
        json_object_put(was.kept);
        json_object_put(was.names);
        free(was.report_specs);
        free(was.password);
        free(was.provisioners);
        free(was.plugin_paths);
        json_object_put(was.context);
        goto out;
    }
    if (now.out.verbosity)
        was.out.verbosity = now.out.verbosity;
    if (now.npaths) {
        free(was.plugin_paths);
        was.plugin_paths = now.plugin_paths;
        was.npaths = now.npaths;
        now.plugin_paths = NULL;
    }
    if (now.history || now.no_history) {
        was.history = now.history;
        was.no_history = now.no_history;
    }
    was.resume = now.resume;
    free(now.provisioners);
    free(now.plugin_paths);
    json_object_put(now.context);
    json_object_put(now.kept);
    json_object_put(now.names);
    free(now.report_specs);
    *o = was;
    /* Relative paths in the command line are the run's folder's. */
    if (cwd && chdir(cwd) < 0) {
        rc = cli_error(EXIT_USAGE, "cannot go back to the run's folder %s: %s", cwd,
                       strerror(errno));
        goto out;
    }
    rc = 0;
out:
    json_object_put(arr);
    free(args);
    free(cwd);
    return rc;
}

static void free_strv(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* Keep how atx was invoked in the journal, for --resume: the options as
 * parsed, without secrets (a resume asks the vault, the environment or a
 * password file for them). */
static int keep_invocation(const options *o, atx_run *run)
{
    char cwd[PATH_MAX];
    int r = atx_run_set_meta(run, "argv",
                             json_object_to_json_string_ext(o->kept, JSON_C_TO_STRING_PLAIN));
    if (r == 0 && getcwd(cwd, sizeof(cwd)))
        r = atx_run_set_meta(run, "cwd", cwd);
    return r;
}

/* A run holds about five descriptors per running test (its pipes, its
 * cgroup, an agent's stream): take up to 65,536 of the hard limit on open
 * files rather than the soft one, often 1,024 (a few hundred slots). */
static void raise_open_files(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= 65536 || rl.rlim_cur >= rl.rlim_max)
        return;
    rl.rlim_cur = rl.rlim_max < 65536 ? rl.rlim_max : 65536;
    setrlimit(RLIMIT_NOFILE, &rl);
}

/* Whether DIR holds a results.jsonl to compare with (errno says why not). */
static bool compare_readable(const char *dir)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/results.jsonl", dir);
    return access(path, R_OK) == 0;
}

/* A path as the plan key holds it: its real path (a link or "./" does not
 * make another plan), else absolute. */
static void put_real(FILE *f, const char *path)
{
    char *real = realpath(path, NULL);
    char *abs = real ? NULL : absolute(path);
    fprintf(f, "%s\n", real ? real : abs ? abs : path);
    free(real);
    free(abs);
}

/* What identifies the plan across nights in the outcome history (a run is
 * compared with the previous run of the same key): the plan file's real
 * path, the PATHs' real paths in order, then the options that choose the
 * tests, one a line. A resumed run parses the same options in the same
 * folder, so it gets the same key. NULL when out of memory. */
static char *plan_key(const options *o)
{
    char *key = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&key, &len);

    if (!f)
        return NULL;
    if (o->plan)
        put_real(f, o->plan);
    for (int i = 0; i < o->npaths_args; i++)
        put_real(f, o->paths[i]);
    if (o->fmf_plan)
        fprintf(f, "--fmf-plan %s\n", o->fmf_plan);
    if (o->filter)
        fprintf(f, "--filter %s\n", o->filter);
    for (size_t i = 0; o->names && i < json_object_array_length(o->names); i++)
        fprintf(f, "--test %s\n", json_object_get_string(json_object_array_get_idx(o->names, i)));
    if (o->context) {
        /* -c a=1 -c b=2 is the same context as -c b=2 -c a=1. */
        size_t n = (size_t)json_object_object_length(o->context), k = 0;
        const char **keys = calloc(n + 1, sizeof(*keys));
        json_object_object_foreach(o->context, ck, cv) {
            (void)cv;
            if (keys)
                keys[k++] = ck;
        }
        if (keys)
            qsort(keys, k, sizeof(*keys), cmp_str);
        for (size_t i = 0; i < k; i++) {
            json_object *v = json_object_object_get(o->context, keys[i]);
            fprintf(f, "-c %s=%s\n", keys[i], json_object_get_string(v));
        }
        free(keys);
    }
    if (o->shard_n)
        fprintf(f, "--shard %u/%u\n", o->shard_k, o->shard_n);
    if (fclose(f) != 0) {
        free(key);
        return NULL;
    }
    if (len && key[len - 1] == '\n')
        key[len - 1] = '\0';
    return key;
}

static int cmd_run(options *o)
{
    atx_plugins *reg = NULL;
    atx_run *run = NULL;
    char results[PATH_MAX], **reports = NULL, **keep = NULL, *hist = NULL, *key = NULL;
    atx_summary sum;
    int rc;

    if (o->format)
        return usage_error("--format is for atx list and atx report --compare");
    if (o->merge)
        return usage_error("--merge is for atx report");
    raise_open_files();
    /* Before the run, not after it: a typo would cost a night's comparison. */
    if (o->compare && !o->resume && !compare_readable(o->compare))
        return cli_error(EXIT_USAGE, "--compare %s: %s/results.jsonl: %s", o->compare,
                         o->compare, strerror(errno));
    if (o->resume) {
        if ((rc = load_resumed(o, results, sizeof(results), &keep)) != 0)
            goto out;
    } else if (o->results) {
        snprintf(results, sizeof(results), "%s", o->results);
    } else {
        default_results(results, sizeof(results));
    }
    if (make_registry(o, &reg) < 0) {
        rc = fail_last();
        goto out;
    }
    hist = history_path(o);
    if (build_run(o, reg, results, &run, &reports) < 0 ||
        atx_run_set_journal(run, o->resume ? ATX_JOURNAL_RESUME : ATX_JOURNAL_NEW) < 0 ||
        (!o->resume && keep_invocation(o, run) < 0) ||
        (hist && atx_run_set_history(run, hist) < 0) ||
        (!(key = plan_key(o)) ? atx_error_set(ATX_ENOMEM, "out of memory")
                              : atx_run_set_plan_key(run, key)) < 0 ||
        (o->compare && atx_run_set_compare_dir(run, o->compare) < 0) ||
        (o->quarantine && atx_run_set_quarantine(run, o->quarantine) < 0) ||
        (o->shard_n && atx_run_set_shard(run, o->shard_k, o->shard_n) < 0) ||
        (o->password && atx_run_add_secret(run, o->password) < 0) ||
        (o->bud && cli_bud_add(run, &o->budo) < 0)) {
        rc = fail_last();
        goto out;
    }
    o->out.run = run;
    struct sigaction sa = { 0 };
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    g_run = run;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* A closed pipe (| head) must not kill the run before its reports exist. */
    signal(SIGPIPE, SIG_IGN);

    if (atx_run_execute(run, &sum) < 0) {
        rc = fail_last();
        goto out;
    }
    cli_print_summary(&o->out, &sum, atx_run_results_dir(run), (const char *const *)reports);
    cli_print_changes(&o->out, atx_run_changes(run));
    /* Quarantined failures, and with --fail-on new known ones, do not fail
     * the run; exhausted provisioning is 3 still. */
    rc = atx_run_exit_code(run, o->fail_on);
    if (atx_run_failed_aggregators(run))
        rc = 3; /* a report is missing, or results were not delivered */
out:
    g_run = NULL;
    o->out.run = NULL;
    atx_run_free(run);
    atx_plugins_free(reg);
    free_strv(reports);
    free_strv(keep);
    free(hist);
    free(key);
    return rc;
}

typedef struct merged_run {
    const char *dir;
    unsigned k, n; /* its shard; 0/0 unsharded */
} merged_run;

static int cmp_shard(const void *a, const void *b)
{
    const merged_run *x = a, *y = b;
    return (x->k > y->k) - (x->k < y->k);
}

/* atx report --merge OUT DIR...: one set of reports from several runs. The
 * shards are checked here, before the library reads any result: shards of
 * different N or one shard twice are refused; a missing shard is named
 * after the reports of the others are written (exit 3: the reports are
 * not of the whole plan). */
static int cmd_merge(options *o)
{
    atx_plugins *reg = NULL;
    atx_run *run = NULL;
    atx_run_opts ro = ATX_RUN_OPTS_INIT;
    merged_run *runs = calloc((size_t)o->npaths_args + 1, sizeof(*runs));
    const char **dirs = calloc((size_t)o->npaths_args + 1, sizeof(*dirs));
    char **reports = calloc(5 + o->nreport_specs, sizeof(char *)), missing[256] = "";
    size_t nmissing = 0;
    size_t nrep = 0, sharded = 0;
    atx_summary sum;
    int rc = EXIT_USAGE;

    if (!runs || !dirs || !reports) {
        rc = usage_error("out of memory");
        goto out;
    }
    if (o->npaths_args < 1 || o->plan || o->nprov || o->resume || o->shard_n) {
        rc = usage_error("atx report --merge OUT takes the results folders of the runs to "
                         "merge (see atx report --help)");
        goto out;
    }
    for (int i = 0; i < o->npaths_args; i++) {
        char *v = NULL;
        runs[i].dir = o->paths[i];
        if (atx_journal_meta(o->paths[i], "shard", &v) < 0) {
            rc = fail_last();
            goto out;
        }
        if (v && parse_shard(v, &runs[i].k, &runs[i].n) < 0) {
            rc = cli_error(EXIT_USAGE, "%s: its journal names no shard K/N but '%s'",
                           o->paths[i], v);
            free(v);
            goto out;
        }
        sharded += v != NULL;
        free(v);
    }
    if (sharded && sharded != (size_t)o->npaths_args) {
        for (int i = 0; i < o->npaths_args; i++)
            if (!runs[i].n) {
                rc = cli_error(EXIT_USAGE, "%s ran the whole plan, not a shard: shards are "
                               "merged with shards only", runs[i].dir);
                goto out;
            }
    }
    if (sharded) {
        qsort(runs, (size_t)o->npaths_args, sizeof(*runs), cmp_shard);
        for (int i = 0; i < o->npaths_args; i++) {
            if (runs[i].n != runs[0].n) {
                rc = cli_error(EXIT_USAGE, "%s is shard %u/%u but %s is shard %u/%u: the "
                               "shards of one split have one N", runs[0].dir, runs[0].k,
                               runs[0].n, runs[i].dir, runs[i].k, runs[i].n);
                goto out;
            }
            if (i > 0 && runs[i].k == runs[i - 1].k) {
                rc = cli_error(EXIT_USAGE, "shard %u/%u is given twice: %s and %s", runs[i].k,
                               runs[i].n, runs[i - 1].dir, runs[i].dir);
                goto out;
            }
        }
        /* The missing ones, "3/4, 5/8": at most a line's worth named. */
        size_t next = 0, len = 0;
        for (unsigned k = 1; k <= runs[0].n; k++) {
            if (next < (size_t)o->npaths_args && runs[next].k == k) {
                next++;
                continue;
            }
            if (nmissing++ < 16)
                len += (size_t)snprintf(missing + len, sizeof(missing) - len, "%s%u/%u",
                                        len ? ", " : "", k, runs[0].n);
        }
        if (nmissing > 16)
            snprintf(missing + len, sizeof(missing) - len, " and %zu more", nmissing - 16);
    }
    for (int i = 0; i < o->npaths_args; i++)
        dirs[i] = runs[i].dir;
    ro.results_dir = o->merge;
    ro.log = cli_log;
    ro.log_userdata = &o->out;
    if (make_registry(o, &reg) < 0 || (ro.plugins = reg, atx_run_new(&ro, &run)) < 0 ||
        add_reports(run, o, true, reports, &nrep) < 0 ||
        atx_run_report_merge(run, dirs, (size_t)o->npaths_args, &sum) < 0) {
        rc = fail_last();
        goto out;
    }
    cli_print_summary(&o->out, &sum, atx_run_results_dir(run), (const char *const *)reports);
    rc = atx_summary_exit_code(&sum);
    if (atx_run_failed_aggregators(run))
        rc = 3; /* a report is missing */
    if (*missing)
        rc = cli_error(3, "missing shard%s %s: the merged reports hold %zu of the %u shards",
                       nmissing > 1 ? "s" : "", missing,
                       sharded, runs[0].n);
out:
    atx_run_free(run);
    atx_plugins_free(reg);
    free_strv(reports);
    free(runs);
    free(dirs);
    return rc;
}

/* atx report --compare DIR_A DIR_B: what changed from the run in DIR_A to
 * the run in DIR_B (their results.jsonl), as text or JSON on stdout. */
static int cmd_compare(options *o)
{
    atx_changes *c = NULL;
    char *text = NULL;

    if (o->npaths_args != 1 || o->merge || o->plan || o->nprov || o->resume || o->shard_n ||
        o->junit || o->jsonl || o->html || o->ctrf || o->nreport_specs)
        return usage_error("atx report --compare DIR_A DIR_B takes two results folders and "
                           "--format (see atx report --help)");
    if (atx_changes_compare_dirs(o->compare, o->paths[0], &c) < 0)
        return fail_last();
    int r = o->format && strcmp(o->format, "json") == 0 ? atx_changes_json(c, &text)
                                                          : atx_changes_text(c, &text);
    atx_changes_free(c);
    if (r < 0)
        return fail_last();
    fputs(text, stdout);
    if (!*text || text[strlen(text) - 1] != '\n')
        putchar('\n');
    free(text);
    return 0;
}

/* atx report DIR: the reports again, from the journal alone. */
static int cmd_report(options *o)
{
    if (o->quarantine || o->fail_on_given)
        return usage_error("--quarantine and --fail-on are for atx run");
    if (o->compare)
        return cmd_compare(o);
    if (o->format)
        return usage_error("--format is for atx list and atx report --compare");
    if (o->merge)
        return cmd_merge(o);
    atx_plugins *reg = NULL;
    atx_run *run = NULL;
    atx_run_opts ro = ATX_RUN_OPTS_INIT;
    /* The journal's reports (63 at most) or the flags' (4 and the --report). */
    char **reports = calloc(64 + o->nreport_specs, sizeof(char *)), *aggs = NULL;
    size_t nrep = 0;
    json_object *arr = NULL;
    atx_summary sum;
    int rc = EXIT_USAGE;

    if (o->npaths_args != 1 || o->plan || o->nprov || o->resume || o->shard_n)
        return free(reports), usage_error("atx report takes one results folder (see atx "
                                          "report --help)");
    const char *dir = o->paths[0];
    ro.results_dir = dir;
    ro.log = cli_log;
    ro.log_userdata = &o->out;
    if (!reports || make_registry(o, &reg) < 0 || (ro.plugins = reg, atx_run_new(&ro, &run)) < 0)
        goto fail;
    if (o->junit || o->jsonl || o->html || o->ctrf || o->nreport_specs) {
        if (add_reports(run, o, false, reports, &nrep) < 0)
            goto fail;
    } else {
        /* The run's own reports, as its journal recorded them. */
        if (atx_journal_meta(dir, "aggregators", &aggs) < 0)
            goto fail;
        arr = aggs ? json_tokener_parse(aggs) : json_object_new_array();
        for (size_t i = 0; arr && i < json_object_array_length(arr) && nrep < 63; i++) {
            json_object *g = json_object_array_get_idx(arr, i), *name, *cfg, *path;
            if (!json_object_object_get_ex(g, "plugin", &name) ||
                !json_object_object_get_ex(g, "config", &cfg))
                continue;
            if (atx_run_add_aggregator(run, json_object_get_string(name),
                                       json_object_to_json_string(cfg)) < 0)
                goto fail;
            if (json_object_object_get_ex(cfg, "path", &path)) {
                const char *p = json_object_get_string(path);
                char *full = NULL;
                if (p[0] == '/' ? !!(full = strdup(p))
                                : asprintf(&full, "%s/%s", atx_run_results_dir(run), p) >= 0)
                    reports[nrep++] = full;
            }
        }
    }
    if (atx_run_report(run, &sum) < 0)
        goto fail;
    cli_print_summary(&o->out, &sum, atx_run_results_dir(run), (const char *const *)reports);
    rc = atx_summary_exit_code(&sum);
    if (atx_run_failed_aggregators(run))
        rc = 3; /* a report is missing, or results were not delivered */
    goto out;
fail:
    rc = fail_last();
out:
    json_object_put(arr);
    free(aggs);
    atx_run_free(run);
    atx_plugins_free(reg);
    free_strv(reports);
    return rc;
}

static int cmd_list(options *o)
{
    atx_plugins *reg = NULL;
    atx_run *run = NULL;
    char tmp[] = "/tmp/atx-list-XXXXXX", **reports = NULL, *hist = NULL, secs[32];
    int rc = 0;
    bool json = o->format && strcmp(o->format, "json") == 0;
    size_t all = 0, unknown = 0;
    int64_t total = 0;

    if (o->resume || o->merge)
        return usage_error("%s is for atx %s", o->resume ? "--resume" : "--merge",
                           o->resume ? "run" : "report");
    if (o->compare)
        return usage_error("--compare is for atx run and atx report");
    if (o->quarantine || o->fail_on_given)
        return usage_error("--quarantine and --fail-on are for atx run");
    /* Listing resolves tests exactly as a run would, without running. */
    if (!mkdtemp(tmp))
        return usage_error("cannot create a temporary folder: %s", strerror(errno));
    o->no_reports = true;
    hist = history_path(o);
    if (make_registry(o, &reg) < 0 || build_run(o, reg, tmp, &run, &reports) < 0 ||
        (hist && atx_run_set_history(run, hist) < 0) ||
        (all = atx_run_test_count(run),
         o->shard_n && atx_run_set_shard(run, o->shard_k, o->shard_n) < 0)) {
        rc = fail_last();
        goto out;
    }
    json_object *arr = json ? json_object_new_array() : NULL;
    for (size_t i = 0; i < atx_run_test_count(run); i++) {
        const atx_test *t = atx_run_test(run, i);
        const atx_labels *req = atx_test_requires(t);
        int64_t expected = atx_run_test_expected(run, i);
        total += expected;
        unknown += expected == 0;
        atx_text_seconds(expected, secs);
        if (json) {
            json_object *to = json_object_new_object(), *rq = json_object_new_object();
            json_object_object_add(to, "name", json_object_new_string(atx_test_name(t)));
            json_object_object_add(to, "executor", json_object_new_string(atx_test_executor(t)));
            json_object_object_add(to, "spec", json_tokener_parse(atx_test_spec_json(t)));
            for (size_t k = 0; k < atx_labels_count(req); k++) {
                const char *key, *val;
                atx_labels_at(req, k, &key, &val);
                json_object_object_add(rq, key, json_object_new_string(val));
            }
            json_object_object_add(to, "requires", rq);
            json_object_object_add(to, "duration",
                                   json_object_new_double((double)atx_test_duration(t) / 1e9));
            /* What shards are split by: the history's, else the declared. */
            json_object_object_add(to, "expected",
                                   expected ? json_object_new_double((double)expected / 1e9)
                                            : NULL);
            json_object_object_add(to, "priority", json_object_new_int(atx_test_priority(t)));
            json_object_object_add(to, "destructive",
                                   json_object_new_boolean(atx_test_destructive(t)));
            json_object_array_add(arr, to);
        } else {
            cli_put_clean(stdout, atx_test_name(t));
            for (size_t k = 0; k < atx_labels_count(req); k++) {
                const char *key, *val;
                atx_labels_at(req, k, &key, &val);
                printf("%s%s=%s", k ? "," : "  requires ", key, val);
            }
            if (o->out.verbosity > 0)
                printf("  expected %ss", expected ? secs : "?");
            putchar('\n');
        }
    }
    if (o->shard_n && o->out.verbosity >= 0 && (!json || o->out.verbosity > 0)) {
        atx_text_seconds(total, secs);
        fprintf(stderr, "atx: shard %u/%u: %zu of %zu tests, expected %ss", o->shard_k,
                o->shard_n, atx_run_test_count(run), all, secs);
        if (unknown)
            fprintf(stderr, " and %zu without an estimate", unknown);
        fputc('\n', stderr);
    }
    if (json) {
        puts(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY |
                                                     JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(arr);
    }
out:
    atx_run_free(run);
    atx_plugins_free(reg);
    for (size_t i = 0; reports && reports[i]; i++)
        free(reports[i]);
    free(reports);
    free(hist);
    rmdir(tmp);
    return rc;
}

static int cmd_plugins(options *o)
{
    atx_plugins *reg;
    size_t refused = 0;

    /* Refusals are printed here as a table row each, not as log lines. */
    cli_output quiet = o->out;
    quiet.verbosity = -1;
    o->out = quiet;
    if (make_registry(o, &reg) < 0 || atx_plugins_scan(reg) < 0)
        return fail_last();
    for (size_t i = 0; i < atx_plugins_count(reg); i++) {
        const atx_plugin_info *p = atx_plugins_at(reg, i);
        if (p->refused) {
            refused++;
            continue;
        }
        printf("%-12s %-12s %-8s %s\n", p->name, atx_plugin_kind_name(p->kind), p->version,
               p->description);
    }
    for (size_t i = 0; i < atx_plugins_count(reg); i++) {
        const atx_plugin_info *p = atx_plugins_at(reg, i);
        if (p->refused)
            fprintf(stderr, "atx: %s\n", p->reason);
    }
    atx_plugins_free(reg);
    (void)refused;
    return 0;
}

int main(int argc, char **argv)
{
    options o = { 0 };
    int rc;

    o.out.tty = isatty(STDERR_FILENO);
    o.out.color = isatty(STDOUT_FILENO) && !getenv("NO_COLOR");
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("atx %s\n", atx_version());
        return 0;
    }
    atx_init();
    const char *cmd = argv[1];
    static const char *const commands[] = { "run", "list", "report", "plugins", "bud",
                                            "runnable-run", "runnable-run-recipe",
                                            "capabilities", "help" };
    size_t ncommands = sizeof(commands) / sizeof(commands[0]);
    if (strcmp(cmd, "help") == 0) {
        /* atx help [COMMAND]: that command's usage. */
        if (argc < 3) {
            fputs(usage_text, stdout);
            return 0;
        }
        const char *what = argv[2];
        if (command_usage(what)) {
            fputs(command_usage(what), stdout);
            return 0;
        }
        char *help_argv[] = { argv[2], (char *)"--help", NULL };
        if (strcmp(what, "bud") == 0)
            return cli_bud(2, help_argv, &o.out);
        if (strcmp(what, "runnable-run") == 0)
            return cli_runnable_run(2, help_argv, &o.out);
        if (strcmp(what, "runnable-run-recipe") == 0)
            return cli_runnable_run_recipe(2, help_argv, &o.out);
        if (strcmp(what, "capabilities") == 0)
            return cli_capabilities(2, help_argv, &o.out);
        const char *near = closest(what, commands, ncommands);
        return near ? usage_error("unknown command '%s'; did you mean '%s'?", what, near)
                    : usage_error("unknown command '%s'", what);
    }
    if (strcmp(cmd, "bud") == 0)
        return cli_bud(argc - 1, argv + 1, &o.out);
    if (strcmp(cmd, "runnable-run") == 0)
        return cli_runnable_run(argc - 1, argv + 1, &o.out);
    if (strcmp(cmd, "runnable-run-recipe") == 0)
        return cli_runnable_run_recipe(argc - 1, argv + 1, &o.out);
    if (strcmp(cmd, "capabilities") == 0)
        return cli_capabilities(argc - 1, argv + 1, &o.out);
    if (!command_usage(cmd)) {
        const char *near = closest(cmd, commands, ncommands);
        return near ? usage_error("unknown command '%s'; did you mean '%s'?", cmd, near)
                    : usage_error("unknown command '%s'", cmd);
    }
    if ((rc = parse_options(argc - 1, argv + 1, &o)) != 0)
        ;
    else if (o.help) {
        fputs(command_usage(cmd), stdout);
        rc = 0;
    } else if (strcmp(cmd, "run") == 0)
        rc = cmd_run(&o);
    else if (strcmp(cmd, "report") == 0)
        rc = cmd_report(&o);
    else if (strcmp(cmd, "list") == 0)
        rc = cmd_list(&o);
    else if (strcmp(cmd, "plugins") == 0)
        rc = o.npaths_args ? usage_error("atx plugins takes no paths") : cmd_plugins(&o);
    else
        rc = usage_error("unknown command '%s'", cmd);
    free(o.provisioners);
    free(o.plugin_paths);
    json_object_put(o.context);
    json_object_put(o.kept);
    json_object_put(o.names);
    free(o.report_specs);
    if (o.password)
        explicit_bzero(o.password, strlen(o.password));
    free(o.password);
    return rc;
}
