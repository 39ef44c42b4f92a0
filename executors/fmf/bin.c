/*
 * The helper programs fmf tests find on their PATH (bin.h). To add one:
 * put its text in executors/fmf/bin/<file> and give it its names below.
 */
#define _GNU_SOURCE 1
#include "bin.h"

#include "fmf_bin.h" /* generated: fmf_bin_<file>[] for each file of executors/fmf/bin */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
    const char *name; /* as the test calls it */
    const char *text;
} helpers[] = {
    /* Results as tmt and restraint take them: one result a call (result_key.c folds
     * them into the test's result). */
    { "tmt-report-result", (const char *)fmf_bin_tmt_report_result },
    { "rstrnt-report-result", (const char *)fmf_bin_tmt_report_result },
    { "rhts-report-result", (const char *)fmf_bin_tmt_report_result },
    /* A reboot, asked of atx over the control channel (executor.c). */
    { "tmt-reboot", (const char *)fmf_bin_tmt_reboot },
    { "rstrnt-reboot", (const char *)fmf_bin_tmt_reboot },
    { "rhts-reboot", (const char *)fmf_bin_tmt_reboot },
};

static int write_helper(int dfd, const char *name, const char *text)
{
    int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0755);
    size_t len = strlen(text);
    int r = 0;

    if (fd < 0)
        return -errno;
    while (len && r == 0) {
        ssize_t w = write(fd, text, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            r = w < 0 ? -errno : -EIO;
        } else {
            text += w;
            len -= (size_t)w;
        }
    }
    if (r == 0 && fchmod(fd, 0755) < 0)
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    return r;
}

int fmf_bin_write(const char *dir, char *err, size_t errlen)
{
    int r = 0;

    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        r = -errno;
        snprintf(err, errlen, "cannot make %s: %s", dir, strerror(-r));
        return r;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) {
        r = -errno;
        snprintf(err, errlen, "cannot open %s: %s", dir, strerror(-r));
        return r;
    }
    for (size_t i = 0; i < sizeof(helpers) / sizeof(helpers[0]) && r == 0; i++)
        if ((r = write_helper(dfd, helpers[i].name, helpers[i].text)) < 0)
            snprintf(err, errlen, "cannot write %s/%s: %s", dir, helpers[i].name, strerror(-r));
    close(dfd);
    return r;
}

void fmf_bin_remove(const char *dir)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

    if (dfd < 0)
        return;
    for (size_t i = 0; i < sizeof(helpers) / sizeof(helpers[0]); i++)
        unlinkat(dfd, helpers[i].name, 0);
    close(dfd);
    rmdir(dir);
}
