/*
 * atx plugin ABI (plugin tier).
 *
 * A plugin is a shared object `<name>.so` exporting exactly one symbol,
 * ATX_PLUGIN_ENTRY_SYMBOL, made by ATX_PLUGIN_DEFINE. It returns a constant
 * descriptor; the loader checks abi_major (must equal ATX_ABI_MAJOR),
 * abi_minor (must not be newer than the loader's), struct_size, the kind, the
 * name (must equal the file stem) and the vtable's required methods before
 * anything else of the plugin is used.
 *
 * Vtables are versioned and append-only: a new method is added at the end
 * and bumps the kind's vtable version; the host calls an optional method only
 * when the plugin's vtable version includes it and the pointer is not NULL.
 */
#ifndef ATX_PLUGIN_ABI_H
#define ATX_PLUGIN_ABI_H

#include "atx/common.h"
#include "atx/error.h"
#include "atx/log.h"
#include "atx/plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The ABI this header describes. The soname major equals ATX_ABI_MAJOR.
 *  Minor 2: reboots, bounded copies, closing a control channel, outcome
 *  history and changes (atx_plugin_ctx_changes(), atx_result_flake_rate(),
 *  atx_text_rate()). */
#define ATX_ABI_MAJOR 1
#define ATX_ABI_MINOR 2

#define ATX_PLUGIN_ENTRY_SYMBOL "atx_plugin_entry"

struct json_object;

/** A plugin's constant self-description. */
typedef struct atx_plugin_descriptor {
    uint16_t abi_major;       /**< ATX_ABI_MAJOR when built */
    uint16_t abi_minor;       /**< ATX_ABI_MINOR when built */
    uint32_t struct_size;     /**< sizeof(atx_plugin_descriptor) when built */
    atx_plugin_kind kind;
    const char *name;         /**< equal to the file stem */
    const char *version;      /**< the plugin's own version */
    const char *description;  /**< one line */
    const void *vtable;       /**< atx_provisioner_vtable, ... per kind */
} atx_plugin_descriptor;

typedef const atx_plugin_descriptor *(*atx_plugin_entry_fn)(void);

#if defined(__GNUC__)
#  define ATX_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#  define ATX_PLUGIN_EXPORT
#endif

/**
 * Define the plugin's entry symbol. Use once per plugin, at file scope:
 *   ATX_PLUGIN_DEFINE(ATX_PLUGIN_EXECUTOR, "exec", "1.0", "Runs commands", &vt)
 */
#define ATX_PLUGIN_DEFINE(kind_, name_, version_, description_, vtable_)        \
    ATX_PLUGIN_EXPORT const atx_plugin_descriptor *atx_plugin_entry(void);      \
    ATX_PLUGIN_EXPORT const atx_plugin_descriptor *atx_plugin_entry(void)       \
    {                                                                           \
        static const atx_plugin_descriptor desc_ = {                            \
            ATX_ABI_MAJOR, ATX_ABI_MINOR, (uint32_t)sizeof(atx_plugin_descriptor),\
            (kind_), (name_), (version_), (description_), (vtable_) };          \
        return &desc_;                                                          \
    }

/**
 * What the host hands a plugin instance: its configuration, a log sink and
 * a few facts of the run. Valid from create until destroy returns.
 * Thread-safe for reading and logging.
 */
typedef struct atx_plugin_ctx atx_plugin_ctx;

/** The instance's configuration (a json-c object; borrowed). */
ATX_API const struct json_object *atx_plugin_ctx_config(const atx_plugin_ctx *ctx);
/** The plugin's name. */
ATX_API const char *atx_plugin_ctx_name(const atx_plugin_ctx *ctx);
/** The run's results directory (absolute), or NULL outside a run. */
ATX_API const char *atx_plugin_ctx_results_dir(const atx_plugin_ctx *ctx);
/**
 * The run compared with the previous run of its plan (atx/changes.h), for an
 * aggregator's `end` (NULL before it, and when there is nothing to compare).
 */
ATX_API const struct atx_changes *atx_plugin_ctx_changes(const atx_plugin_ctx *ctx);
/**
 * A secret the plugin holds (a token, a password, one it got while the run
 * goes): the run masks it as "[MASKED]" wherever test data is written from
 * then on. Values under 4 bytes are not masked. Thread-safe.
 */
ATX_API int atx_plugin_ctx_add_secret(atx_plugin_ctx *ctx, const char *value);
/** What atx_run_add_builtin() was given, or NULL. */
ATX_API void *atx_plugin_ctx_userdata(const atx_plugin_ctx *ctx);
/** Log through the run's callback, with the plugin's name as origin. */
ATX_API void atx_plugin_log(const atx_plugin_ctx *ctx, atx_log_level level,
                            const char *fmt, ...) ATX_PRINTF(3, 4);

/**
 * Configuration helpers: read a key of the instance's configuration.
 * Each returns 0 (with *out set, or untouched if the key is absent) or
 * ATX_EINVAL with detail naming the key and what it should be.
 */
ATX_API int atx_plugin_config_string(const atx_plugin_ctx *ctx, const char *key, const char **out);
ATX_API int atx_plugin_config_int(const atx_plugin_ctx *ctx, const char *key, int64_t *out);
ATX_API int atx_plugin_config_bool(const atx_plugin_ctx *ctx, const char *key, int *out);
/** A duration: a number of seconds or a string for atx_duration_parse(). */
ATX_API int atx_plugin_config_duration(const atx_plugin_ctx *ctx, const char *key, int64_t *out);
/**
 * Refuse configuration keys not in @p known (NULL-terminated).
 * @return 0 or ATX_EINVAL naming the first unknown key and the plugin.
 */
ATX_API int atx_plugin_config_check_keys(const atx_plugin_ctx *ctx, const char *const *known);

#ifdef __cplusplus
}
#endif
#endif
