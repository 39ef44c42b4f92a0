/*
 * atx — logging. The library never prints: it hands messages to a callback
 * that the driver (or the CLI) installs per run or per plugin registry.
 */
#ifndef ATX_LOG_H
#define ATX_LOG_H

#include "atx/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum atx_log_level {
    ATX_LOG_ERROR = 0,
    ATX_LOG_WARNING = 1,
    ATX_LOG_INFO = 2,
    ATX_LOG_DEBUG = 3
} atx_log_level;

/**
 * A log sink. @p origin names who speaks ("orchestrator", a plugin name).
 * May be called from any of the run's threads, concurrently: the callback
 * must be thread-safe. The strings are borrowed for the call only.
 */
typedef void (*atx_log_fn)(void *userdata, atx_log_level level,
                           const char *origin, const char *message);

/** The lower-case name of a level ("error", "warning", ...). */
ATX_API const char *atx_log_level_name(atx_log_level level);

#ifdef __cplusplus
}
#endif
#endif
