/* The atx command line: shared between main.c and output.c. */
#ifndef ATX_CLI_H
#define ATX_CLI_H

#include <atx.h>
#include <atx/plugin/aggregator.h>
#include <stdbool.h>
#include <stdio.h>

typedef struct cli_output {
    int verbosity;     /* -1 quiet, 0 normal, 1 verbose */
    bool tty;          /* stderr is a terminal: redraw a progress line */
    bool color;
    atx_run *run;      /* for the ETA; NULL when there is none */
} cli_output;

/* Log callback printing "atx: level: message" to stderr. */
/* Text from tests (names, notes) onto a terminal or log: control
 * characters shown as ^X, never sent. */
void cli_put_clean(FILE *f, const char *s);
/* A password from the first line of a file (at most 1024 bytes; a warning
 * when others can read the file): 0 with *out malloc'ed, or the exit code
 * after one error line. */
int cli_secret_file(const char *path, char **out);
void cli_log(void *userdata, atx_log_level level, const char *origin, const char *message);

/* The progress display: an in-process aggregator. */
extern const atx_plugin_descriptor cli_progress_plugin;

/* atx bud ... (cli/bud.c): argv[0] is "bud". */
int cli_bud(int argc, char **argv, cli_output *out);

/* atx runnable-run, runnable-run-recipe, capabilities (cli/runnable.c):
 * argv[0] is the command's name. Status lines go to stdout as JSON. */
int cli_runnable_run(int argc, char **argv, cli_output *out);
int cli_runnable_run_recipe(int argc, char **argv, cli_output *out);
int cli_capabilities(int argc, char **argv, cli_output *out);

/* atx run --bud: what the flags say. */
typedef struct cli_bud_opts {
    const char *backend, *runner_account, *username, *password, *test_suite_name;
    const char *url_test_software, *ref_test_software, *url_software_under_test,
        *ref_software_under_test;
    long test_run_id;
} cli_bud_opts;
/* Add the bud aggregator (a built-in: secrets stay out of the journal). */
int cli_bud_add(atx_run *run, const cli_bud_opts *o);

/* "atx: MESSAGE" and a pointer to the help ("atx SUB --help" with sub);
 * returns 2, the usage exit code. */
int cli_usage(const char *sub, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "atx: error: MESSAGE"; returns code. */
int cli_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The closing summary. */
void cli_print_summary(const cli_output *out, const atx_summary *s, const char *results_dir,
                       const char *const *reports);

/* What changed since the run compared with (atx_changes_text()), after the
 * summary: its counts line, and with -q nothing else. */
void cli_print_changes(const cli_output *out, const atx_changes *c);

#endif
