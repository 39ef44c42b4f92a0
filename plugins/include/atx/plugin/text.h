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

/**
 * Format a share from 0 to 1 (a flake rate) with at most three decimals and
 * no trailing zeros ("0", "0.5", "0.667", "1"), rounded, no locale; a value
 * outside 0..1 is clamped. Since ABI 1.2.
 */
ATX_API void atx_text_rate(double rate, char buf[8]);

/** Format a wall-clock instant as UTC "YYYY-MM-DDTHH:MM:SS" (+ "Z" if @p zulu). */
ATX_API void atx_text_utc(int64_t wall_ns, int zulu, char buf[32]);

/**
 * Make a relative path safe below a directory: components "", "." and ".."
 * dropped, leading "/" dropped, control characters and backslashes become
 * '_'. An empty result becomes "_".
 */
ATX_API int atx_text_safe_relpath(const char *path, char **out);

/**
 * A folder path below a directory for a name (a test's), one to one:
 * different names never get the same path. The name's '/' separate the
 * folders (one leading '/' dropped); in each part '%', '\\', control
 * characters and DEL become "%XX"; a part that is empty becomes "%E", "."
 * and ".." become "%2E" and "%2E%2E", and a part starting "attempt-" (an
 * attempt's folder) starts "%61"; a name without its leading '/' starts
 * with the part "%N". A part longer than 200 bytes keeps its first bytes
 * and ends with "%H" and a hash of the whole part.
 * @param out  receives a malloc'ed string (caller frees).
 * @return 0 or ATX_ENOMEM.
 */
ATX_API int atx_text_name_path(const char *name, char **out);

#ifdef __cplusplus
}
#endif
#endif
