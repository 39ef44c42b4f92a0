/* The atx command line: shared between main.c and output.c. */
#ifndef ATX_CLI_H
#define ATX_CLI_H

#include <atx.h>
#include <atx/plugin/aggregator.h>
#include <stdbool.h>

typedef struct cli_output {
    int verbosity;     /* -1 quiet, 0 normal, 1 verbose */
    bool tty;          /* stderr is a terminal: redraw a progress line */
    bool color;
    atx_run *run;      /* for the ETA; NULL when there is none */
} cli_output;

/* Log callback printing "atx: level: message" to stderr. */
void cli_log(void *userdata, atx_log_level level, const char *origin, const char *message);

/* The progress display: an in-process aggregator. */
extern const atx_plugin_descriptor cli_progress_plugin;

/* The closing summary. */
void cli_print_summary(const cli_output *out, const atx_summary *s, const char *results_dir,
                       const char *const *reports);

#endif
