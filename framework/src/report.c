/* Report files for aggregators: paths, spools, write-then-rename. */
#include "internal.h"

#include "atx/plugin/report.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int atx_report_path(const atx_plugin_ctx *ctx, const char *path, char *out, size_t len)
{
    const char *dir = atx_plugin_ctx_results_dir(ctx);
    int n;

    if (!path || !out)
        return atx_error_set(ATX_EINVAL, "a report needs a path");
    if (path[0] == '/' || !dir)
        n = snprintf(out, len, "%s", path);
    else
        n = snprintf(out, len, "%s/%s", dir, path);
    if (n < 0 || (size_t)n >= len)
        return atx_error_set(ATX_EINVAL, "the report path %s is too long", path);
    return 0;
}

/* A new file named after prefix (ending in XXXXXX). */
static FILE *make_temp(char *name, const char *what)
{
    int fd = mkostemp(name, O_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "w+") : NULL;

    if (!f) {
        int e = errno;
        if (fd >= 0) {
            close(fd);
            unlink(name);
        }
        atx_error_set(-e, "cannot create %s %s: %s", what, name, strerror(e));
    }
    return f;
}

FILE *atx_report_spool(const char *near)
{
    char name[PATH_MAX + 32];
    FILE *f;

    snprintf(name, sizeof(name), "%s.spool.XXXXXX", near);
    if ((f = make_temp(name, "the spool")))
        unlink(name); /* ours alone: nobody needs its name */
    return f;
}

FILE *atx_report_begin(const char *path, char *tmp, size_t tmplen)
{
    FILE *f;

    if (snprintf(tmp, tmplen, "%s.tmp.XXXXXX", path) >= (int)tmplen) {
        atx_error_set(ATX_EINVAL, "the report path %s is too long", path);
        return NULL;
    }
    if ((f = make_temp(tmp, "the report")))
        fchmod(fileno(f), 0644);
    return f;
}

int atx_report_finish(FILE *f, const char *tmp, const char *path, int failed)
{
    int r = 0;

    /* Durable before it replaces the old report. */
    if (f) {
        errno = 0;
        if (!failed && (fflush(f) != 0 || ferror(f) || fsync(fileno(f)) < 0))
            r = atx_error_set(errno ? -errno : ATX_EIO, "cannot write %s: %s", tmp,
                              strerror(errno ? errno : EIO));
        if (fclose(f) != 0 && !failed && r == 0)
            r = atx_error_set(-errno, "cannot write %s: %s", tmp, strerror(errno));
    } else if (!failed) {
        int fd = open(tmp, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) < 0)
            r = atx_error_set(-errno, "cannot sync %s: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
    }
    if (!failed && r == 0 && rename(tmp, path) < 0)
        r = atx_error_set(-errno, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (failed || r < 0)
        unlink(tmp);
    return r;
}
