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
/** The longest duration atx keeps (100 years): longer ones are cut to it, so
 *  an instant plus a duration never overflows. */
#define ATX_DURATION_MAX (INT64_C(100) * 365 * 86400 * ATX_NSEC_PER_SEC)

/** @p a + @p b, saturating at INT64_MAX and INT64_MIN instead of overflowing. */
static inline int64_t atx_add_sat(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

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

/**
 * Seconds (from a report, a configuration) as nanoseconds, cut to
 * ATX_DURATION_MAX.
 * @return the nanoseconds, or -1 for NaN and negative values.
 */
ATX_API int64_t atx_seconds_ns(double seconds);

#ifdef __cplusplus
}
#endif
#endif
