/*
 * atx helpers for aggregators that write a report file (plugin tier): where
 * the file goes, a spool for what arrives during the run, and writing the
 * report beside the old one and renaming it into place, so a reader never
 * sees half a report.
 */
#ifndef ATX_PLUGIN_REPORT_H
#define ATX_PLUGIN_REPORT_H

#include "atx/plugin/abi.h"

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * The report's path: @p path as it is when absolute (or when the plugin has
 * no results folder), else relative to the results folder.
 * @return 0, or ATX_EINVAL when it does not fit in @p len bytes.
 */
ATX_API int atx_report_path(const atx_plugin_ctx *ctx, const char *path, char *out, size_t len);

/**
 * An anonymous temporary file next to @p near (so a full disk shows now,
 * not at the end), already unlinked: it goes when it is closed.
 * @return the file, or NULL with the error set (one sentence naming it).
 */
ATX_API FILE *atx_report_spool(const char *near);

/**
 * Start writing the report @p path: a new file beside it (mode 0644),
 * whose name goes to @p tmp.
 * @return the file, or NULL with the error set.
 */
ATX_API FILE *atx_report_begin(const char *path, char *tmp, size_t tmplen);

/**
 * Finish: flush, sync and close @p f (NULL when the caller wrote and closed
 * @p tmp itself), then rename @p tmp over @p path. With @p failed, or when
 * any step fails, @p tmp is removed and the old report stays.
 * @return 0, or a negative code with the error set.
 */
ATX_API int atx_report_finish(FILE *f, const char *tmp, const char *path, int failed);

#ifdef __cplusplus
}
#endif
#endif
