/*
 * atx text helpers for plugins that write reports (plugin tier).
 * All functions are pure and thread-safe.
 */
#ifndef ATX_PLUGIN_TEXT_H
#define ATX_PLUGIN_TEXT_H

#include "atx/common.h"

#ifdef __cplusplus
extern "C" {
#endif

enum atx_text_flags {
    ATX_TEXT_STRIP_ANSI = 1u << 0,  /**< drop ANSI escape sequences */
    ATX_TEXT_XML = 1u << 1,         /**< replace characters XML 1.0 forbids */
    ATX_TEXT_KEEP_NEWLINES = 1u << 2 /**< with XML: keep TAB, LF and CR */
};

/**
 * Clean @p len bytes into valid UTF-8: invalid sequences become U+FFFD, NUL
 * and (with ATX_TEXT_XML) other characters XML 1.0 forbids become U+FFFD.
 * @param out  receives a NUL-terminated malloc'ed string (caller frees).
 * @return 0 or -ENOMEM.
 */
ATX_API int atx_text_clean(const char *data, size_t len, unsigned flags, char **out, size_t *out_len);

/**
 * The largest n <= @p max such that data[0..n) does not end inside a UTF-8
 * sequence.
 */
ATX_API size_t atx_text_utf8_floor(const char *data, size_t len, size_t max);

/** Format an ns duration as seconds with three decimals ("12.345"), no locale. */
ATX_API void atx_text_seconds(int64_t ns, char buf[32]);

/** Format a wall-clock instant as UTC "YYYY-MM-DDTHH:MM:SS" (+ "Z" if @p zulu). */
ATX_API void atx_text_utc(int64_t wall_ns, int zulu, char buf[32]);

/**
 * Make a relative path safe below a directory: components "", "." and ".."
 * dropped, leading "/" dropped, control characters and backslashes become
 * '_'. An empty result becomes "_".
 */
ATX_API int atx_text_safe_relpath(const char *path, char **out);

#ifdef __cplusplus
}
#endif
#endif
