/*
 * Argument vectors, commands run to their end, and the facts probe, for the
 * provisioners that drive a command-line tool (see command.h).
 */
#define _GNU_SOURCE 1
#include "command.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OUT_MAX (4u << 20) /* what we keep of a command's stdout */

/* ---- argument vectors ---- */

void av_add(argv_buf *a, const char *s)
{
    if (a->oom)
        return;
    if (a->len + 2 > a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 32;
        const char **v = realloc(a->v, cap * sizeof(*v));
        if (!v) {
            a->oom = true;
            return;
        }
        a->v = v;
        a->cap = cap;
    }
    a->v[a->len++] = s;
    a->v[a->len] = NULL;
}

void av_addf(argv_buf *a, const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    int n;

    if (a->oom)
        return;
    if (a->nown == a->capown) {
        size_t cap = a->capown ? a->capown * 2 : 8;
        char **own = realloc(a->own, cap * sizeof(*own));
        if (!own) {
            a->oom = true;
            return;
        }
        a->own = own;
        a->capown = cap;
    }
    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) {
        a->oom = true;
        return;
    }
    a->own[a->nown++] = s;
    av_add(a, s);
}

void av_free(argv_buf *a)
{
    for (size_t i = 0; i < a->nown; i++)
        free(a->own[i]);
    free(a->own);
    free(a->v);
}

/* ---- running a command ---- */

void cmd_result_release(cmd_result *res)
{
    free(res->out);
    res->out = NULL;
}

int run_cmd_input(argv_buf *a, const char *input, size_t input_len, int64_t deadline_ns,
                  int cancel_fd, cmd_result *res)
{
    atx_spawn_opts so = ATX_SPAWN_OPTS_INIT;
    atx_proc_run_opts o = ATX_PROC_RUN_OPTS_INIT;
    atx_proc_outcome pr = { 0 };
    atx_capture out, err;
    int r;

    memset(res, 0, sizeof(*res));
    if (a->oom)
        return atx_error_set(-ENOMEM, "out of memory");
    so.argv = a->v;
    so.flags = ATX_SPAWN_STDOUT_PIPE | ATX_SPAWN_STDERR_PIPE | (input ? ATX_SPAWN_STDIN_PIPE : 0);
    /* Keep stdout up to a cap, and the tail of stderr: a tool's last line
     * says what went wrong. */
    atx_capture_init(&out, OUT_MAX, 0);
    atx_capture_init(&err, 0, sizeof(res->err) - 1);
    o.input = input;
    o.input_len = input_len;
    o.capture[0] = &out;
    o.capture[1] = &err;
    o.deadline_ns = deadline_ns > 0 ? &deadline_ns : NULL;
    o.grace_ns = 100 * ATX_NSEC_PER_MSEC;
    o.cancel_fd = cancel_fd;
    r = atx_proc_run_spawn(NULL, &so, &o, &pr);
    if (r == 0 && pr.interrupted)
        r = atx_error_set(ATX_ECANCELLED, "%s %s was interrupted: the run stops", a->v[0], a->v[1]);
    else if (r == 0 && (pr.exit.timed_out || pr.abandoned))
        r = atx_error_set(ATX_ETIMEDOUT, "%s %s did not finish in time", a->v[0], a->v[1]);
    res->ex = pr.exit;
    char *text;
    size_t len;
    if (atx_capture_collect(&err, &text, &len) == 0) {
        res->err_len = len < sizeof(res->err) ? len : sizeof(res->err) - 1;
        memcpy(res->err, text + (len - res->err_len), res->err_len);
        res->err[res->err_len] = '\0';
        free(text);
    }
    if (atx_capture_collect(&out, &res->out, &res->out_len) < 0) {
        res->out = NULL;
        res->out_len = 0;
    }
    atx_capture_release(&out);
    atx_capture_release(&err);
    if (!res->out && !(res->out = calloc(1, 1)))
        return atx_error_set(-ENOMEM, "out of memory");
    return r;
}

bool cmd_ok(const cmd_result *res)
{
    return res->ex.exited && res->ex.code == 0;
}

const char *cmd_why(const cmd_result *res, char *buf, size_t len)
{
    const char *line = NULL, *last = NULL;

    for (const char *p = res->err; *p; p += strcspn(p, "\n") + (p[strcspn(p, "\n")] ? 1 : 0)) {
        size_t n = strcspn(p, "\r\n");
        const char *e;
        if (n == 0)
            continue;
        last = p;
        if (strncmp(p, "Error: ", 7) == 0)
            line = p + 7;
        else if ((e = strstr(p, ": error: ")) && e < p + n)
            line = e + 9;
    }
    if (!line)
        line = last;
    if (line)
        snprintf(buf, len, "%.*s", (int)strcspn(line, "\r\n"), line);
    else if (res->ex.exited)
        snprintf(buf, len, "it exited with status %d", res->ex.code);
    else
        snprintf(buf, len, "it was killed by signal %d", res->ex.signal);
    return buf;
}

/* ---- processes ---- */

/* The start time of a process (field 22 of /proc/PID/stat), or "" if gone. */
void proc_start_time(const char *pid, char *buf, size_t len)
{
    char path[64], stat[1024];
    ssize_t n;
    int fd;

    buf[0] = '\0';
    snprintf(path, sizeof(path), "/proc/%s/stat", pid);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return;
    n = read(fd, stat, sizeof(stat) - 1);
    close(fd);
    if (n <= 0)
        return;
    stat[n] = '\0';
    /* The command name may hold spaces and parentheses: count from the last ')'. */
    char *p = strrchr(stat, ')');
    if (!p)
        return;
    p++;
    for (int field = 3; field <= 22; field++) {
        p += strspn(p, " ");
        size_t w = strcspn(p, " \n");
        if (field == 22) {
            snprintf(buf, len, "%.*s", (int)w, p);
            return;
        }
        p += w;
    }
}

/* ---- processes through a tool ---- */

int spawn_through(argv_buf *a, const atx_spawn_opts *opts, atx_proc **out)
{
    atx_spawn_opts o = *opts;
    int r;

    for (size_t i = 0; opts->argv[i]; i++)
        av_add(a, opts->argv[i]);
    if (a->oom) {
        av_free(a);
        return atx_error_set(-ENOMEM, "out of memory");
    }
    o.argv = a->v;
    o.env = NULL;
    o.cwd = NULL;
    o.flags &= ~(unsigned)ATX_SPAWN_CLEAR_ENV;
    r = atx_spawn_local(&o, out);
    av_free(a);
    return r;
}

/* ---- configuration ---- */

int prov_config_labels(atx_plugin_ctx *ctx, const char *plugin, atx_labels **out)
{
    const json_object *cfg = atx_plugin_ctx_config(ctx);
    json_object *conf;
    int r;

    if ((r = atx_labels_new(out)) < 0)
        return r;
    if (!json_object_object_get_ex((json_object *)cfg, "labels", &conf))
        return 0;
    if (!json_object_is_type(conf, json_type_object))
        return atx_error_set(ATX_EINVAL, "%s: 'labels' must be an object of strings", plugin);
    json_object_object_foreach(conf, k, v) {
        if (!json_object_is_type(v, json_type_string))
            return atx_error_set(ATX_EINVAL, "%s: label '%s' must be a string", plugin, k);
        if ((r = atx_labels_set(*out, k, json_object_get_string(v))) < 0)
            return r;
    }
    return 0;
}

int prov_config_strings(atx_plugin_ctx *ctx, const char *plugin, const char *key,
                        const char ***out)
{
    const json_object *cfg = atx_plugin_ctx_config(ctx);
    json_object *list;
    size_t n = 0;

    if (json_object_object_get_ex((json_object *)cfg, key, &list)) {
        if (!json_object_is_type(list, json_type_array))
            return atx_error_set(ATX_EINVAL, "%s: '%s' must be a list of strings", plugin, key);
        n = json_object_array_length(list);
    }
    if (!(*out = calloc(n + 1, sizeof(**out))))
        return atx_error_set(-ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_object *v = json_object_array_get_idx(list, i);
        if (!json_object_is_type(v, json_type_string))
            return atx_error_set(ATX_EINVAL, "%s: '%s' item %zu must be a string", plugin, key,
                                 i + 1);
        (*out)[i] = json_object_get_string(v);
    }
    return 0;
}

/* ---- facts ---- */

const char prov_probe_cmd[] =
    "uname -m; uname -s; uname -r; uname -n; "
    "cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null";

/* Lines: arch, kernel name, kernel release, node name, then os-release. */
int prov_parse_facts(const char *text, atx_labels **out)
{
    static const char *const first[] = { "arch", "os", "kernel", "hostname" };
    char id[128] = "", ver[128] = "";
    atx_labels *l;
    int r;

    if ((r = atx_labels_new(&l)) < 0)
        return r;
    const char *p = text;
    for (size_t i = 0; *p; i++) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char line[512];
        snprintf(line, sizeof(line), "%.*s", (int)(n < sizeof(line) ? n : sizeof(line) - 1), p);
        p += n + (nl ? 1 : 0);
        if (i < 4) {
            if (i == 1)
                for (char *c = line; *c; c++)
                    *c = (char)tolower((unsigned char)*c);
            if (*line)
                atx_labels_set(l, first[i], line);
            continue;
        }
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = '\0';
        char *v = eq + 1;
        size_t vl = strlen(v);
        if (vl >= 2 && (v[0] == '"' || v[0] == '\'') && v[vl - 1] == v[0]) {
            v[vl - 1] = '\0';
            v++;
        }
        if (strcmp(line, "ID") == 0)
            snprintf(id, sizeof(id), "%s", v);
        else if (strcmp(line, "VERSION_ID") == 0)
            snprintf(ver, sizeof(ver), "%s", v);
    }
    if (!atx_labels_get(l, "arch")) {
        atx_labels_free(l);
        return atx_error_set(ATX_EINFRA, "the probe printed nothing");
    }
    if (*id) {
        atx_labels_set(l, "os_id", id);
        if (*ver) {
            char distro[300];
            atx_labels_set(l, "os_version_id", ver);
            snprintf(distro, sizeof(distro), "%s-%s", id, ver);
            atx_labels_set(l, "distro", distro);
        }
    }
    *out = l;
    return 0;
}
