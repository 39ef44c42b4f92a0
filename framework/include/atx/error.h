/*
 * atx — error codes.
 *
 * Functions return 0 on success and a negative value on failure: -errno
 * where an errno fits (-ENOMEM, -ENOENT, ...), or one of the ATX_E* codes
 * below, which lie beyond the errno range. The list is append-only: a code is
 * never renumbered or reused.
 *
 * A failing call may leave a sentence in the calling thread's last error
 * (atx_error_last()); reading it never allocates.
 */
#ifndef ATX_ERROR_H
#define ATX_ERROR_H

#include "atx/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, text): one list for the enum and atx_strerror(). */
#define ATX_ERROR_LIST(X) \
    X(ATX_EINVAL,     -10001, "invalid argument") \
    X(ATX_ENOMEM,     -10002, "out of memory") \
    X(ATX_ENOTFOUND,  -10003, "not found") \
    X(ATX_EPARSE,     -10004, "malformed input") \
    X(ATX_EPLUGIN,    -10005, "plugin refused") \
    X(ATX_ETIMEDOUT,  -10006, "timed out") \
    X(ATX_ECANCELLED, -10007, "cancelled") \
    X(ATX_ESPAWN,     -10008, "cannot start process") \
    X(ATX_EIO,        -10009, "input/output error") \
    X(ATX_EUNSUPPORTED, -10010, "not supported") \
    X(ATX_EINFRA,     -10011, "infrastructure failure") \
    X(ATX_ESTATE,     -10012, "wrong state for this call") \
    X(ATX_EEXIST,     -10013, "already exists") \
    X(ATX_ELOST,      -10014, "system lost")

#define ATX_ERROR_ENUM_(name, value, text) name = value,
/** atx's own error codes (negative, beyond errno's range). */
enum atx_error_code { ATX_ERROR_LIST(ATX_ERROR_ENUM_) ATX_E_LAST_ = -10015 };
#undef ATX_ERROR_ENUM_

/** Detail of the last failure in the calling thread. */
typedef struct atx_error {
    int code;             /**< the code the failing call returned */
    const char *message;  /**< one sentence, never NULL ("" if none) */
} atx_error;

/**
 * A short text for any code this library returns, including -errno values.
 * Never NULL; the string is static.
 */
ATX_API const char *atx_strerror(int code);

/**
 * The calling thread's last error detail. The pointer stays valid until the
 * thread's next failing atx call. Thread-safe (thread-local), never allocates.
 */
ATX_API const atx_error *atx_error_last(void);

/** Clear the calling thread's last error. */
ATX_API void atx_error_clear(void);

/**
 * Record detail for the calling thread and return @p code, so callers can
 * write `return atx_error_set(ATX_EINVAL, "bad key %s", k);`. Plugins use it
 * too. The message is truncated to the thread-local buffer (1 KiB).
 */
ATX_API int atx_error_set(int code, const char *fmt, ...) ATX_PRINTF(2, 3);

#ifdef __cplusplus
}
#endif
#endif
