/*
 * atx — common definitions shared by every public header.
 *
 * Thread-safety: atx_init() must be called once, before any thread that uses
 * the library starts; everything else documents its own rules.
 */
#ifndef ATX_COMMON_H
#define ATX_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(ATX_BUILDING_LIBRARY) && defined(__GNUC__)
#  define ATX_API __attribute__((visibility("default")))
#else
#  define ATX_API
#endif

#if defined(__GNUC__)
#  define ATX_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#  define ATX_PRINTF(f, a)
#endif

/** Library version (the package version, not the ABI). */
#define ATX_VERSION_MAJOR 0
#define ATX_VERSION_MINOR 1
#define ATX_VERSION_PATCH 0
#define ATX_VERSION_STRING "0.1.0"

/** Durations and instants are nanoseconds in an int64_t. */
#define ATX_NSEC_PER_MSEC INT64_C(1000000)
#define ATX_NSEC_PER_SEC INT64_C(1000000000)

/**
 * Global initialisation of the libraries atx builds on (libxml2, ...).
 * Call once from the main thread before starting threads. Idempotent.
 * @return 0, or a negative atx error code.
 */
ATX_API int atx_init(void);

/** The version string of the loaded library. Never NULL. */
ATX_API const char *atx_version(void);

/** Monotonic clock in nanoseconds. Thread-safe. */
ATX_API int64_t atx_now_ns(void);

/** Wall clock (UTC) in nanoseconds since the epoch. Thread-safe. */
ATX_API int64_t atx_wallclock_ns(void);

/**
 * Parse a duration: `90` (seconds), `90s`, `5m`, `1h 30m`, `2d`, `250ms`.
 * @param text  the duration text; parts may be separated by spaces.
 * @param out   receives nanoseconds; untouched on failure.
 * @return 0, or ATX_EINVAL with detail in atx_error_last().
 */
ATX_API int atx_duration_parse(const char *text, int64_t *out);

#ifdef __cplusplus
}
#endif
#endif
