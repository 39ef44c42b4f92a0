/*
 * What the provisioners that drive a command-line tool share (podman,
 * slurm): argument vectors, running a command to its end with a deadline,
 * and the facts probe a system answers with (arch, os, kernel, hostname,
 * os-release). Compiled into each plugin; hidden from its exports.
 */
#ifndef ATX_PROVISIONERS_COMMAND_H
#define ATX_PROVISIONERS_COMMAND_H

#include <atx/common.h>
#include <atx/error.h>
#include <atx/labels.h>
#include <atx/plugin/abi.h>
#include <atx/plugin/process.h>
#include <atx/plugin/provisioner.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- argument vectors ---- */

typedef struct argv_buf {
    const char **v;  /* NULL-terminated */
    size_t len, cap;
    char **own;      /* strings made here, freed with the vector */
    size_t nown, capown;
    bool oom;        /* an addition failed: run_cmd refuses the vector */
} argv_buf;

/* Add a borrowed string (it must outlive the vector). */
void av_add(argv_buf *a, const char *s);
/* Add a formatted string, owned by the vector. */
void av_addf(argv_buf *a, const char *fmt, ...) ATX_PRINTF(2, 3);
void av_free(argv_buf *a);

/* ---- running a command ---- */

typedef struct cmd_result {
    char *out;        /* stdout (at most 4 MiB), NUL-terminated, never NULL after a run */
    size_t out_len;
    char err[4096];   /* the tail of stderr */
    size_t err_len;
    atx_exit ex;
} cmd_result;

/*
 * Run a command on this host to its end, collecting its output, with
 * @p input on its stdin (NULL: none). Gives up at @p deadline_ns
 * (monotonic) or when @p cancel_fd polls readable.
 * @return 0 when it ran (whatever its exit status: see res->ex);
 *         ATX_ESPAWN, ATX_ETIMEDOUT, ATX_ECANCELLED or -ENOMEM with detail.
 */
int run_cmd_input(argv_buf *a, const char *input, size_t input_len, int64_t deadline_ns,
                  int cancel_fd, cmd_result *res);
static inline int run_cmd(argv_buf *a, int64_t deadline_ns, int cancel_fd, cmd_result *res)
{
    return run_cmd_input(a, NULL, 0, deadline_ns, cancel_fd, res);
}
void cmd_result_release(cmd_result *res);
bool cmd_ok(const cmd_result *res);
/* Why a command failed, in a few words: the last line of stderr that says
 * "Error: " or ": error: " (from there), else its last line, else how it
 * ended. */
const char *cmd_why(const cmd_result *res, char *buf, size_t len);

/* ---- processes ---- */

/* The start time of process @p pid ("self" too) in clock ticks since boot
 * (field 22 of /proc/PID/stat), or "" when it is gone: with the pid, it
 * names one process across pid reuse. */
void proc_start_time(const char *pid, char *buf, size_t len);

/* ---- processes through a tool ---- */

/*
 * Start @p opts' process through the tool whose command line is in @p a
 * (podman exec ..., srun ...): opts->argv is appended, and the tool runs
 * here with this host's environment, opts' pipes and deadline (the tool
 * passes the environment and folder on itself). Frees @p a.
 */
int spawn_through(argv_buf *a, const atx_spawn_opts *opts, atx_proc **out);

/* ---- configuration ---- */

/* The configuration's "labels" (an object of strings) into *out, made here;
 * @p plugin names the plugin in the error. */
int prov_config_labels(atx_plugin_ctx *ctx, const char *plugin, atx_labels **out);

/* The configuration's list of strings @p key into *out, NULL-terminated,
 * the strings borrowed from the configuration (free only the array); an
 * absent key gives an empty list. */
int prov_config_strings(atx_plugin_ctx *ctx, const char *plugin, const char *key,
                        const char ***out);

/* ---- facts ---- */

/* A shell command printing arch, kernel name, kernel release and node name
 * (a line each), then the system's os-release. */
extern const char prov_probe_cmd[];
/* Labels from what prov_probe_cmd printed: arch, os, kernel, hostname,
 * os_id, os_version_id, distro. ATX_EINFRA when it printed nothing. */
int prov_parse_facts(const char *text, atx_labels **out);

#endif
