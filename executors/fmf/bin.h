/*
 * The helper programs every fmf test finds on its PATH (tmt's and
 * restraint's commands: tmt-report-result, ...), private to executors/fmf.
 *
 * Their text is in executors/fmf/bin/, built into the plugin; which names
 * a test sees, and which text each runs, is one table in bin.c. The
 * executor writes them into a folder here once per run and uploads that
 * folder to systems that do not share this host's files.
 */
#ifndef ATX_FMF_BIN_H
#define ATX_FMF_BIN_H

#include <stddef.h>

/**
 * Make @p dir (if missing) and write every helper into it, mode 0755,
 * over what is there.
 * @return 0, or -errno with the reason in @p err.
 */
int fmf_bin_write(const char *dir, char *err, size_t errlen);

/** Remove the helpers fmf_bin_write() wrote into @p dir, then @p dir if empty. */
void fmf_bin_remove(const char *dir);

#endif
