/*
 * atx — finding and loading plugins (driver tier).
 *
 * A registry searches, in order: the directories given in the options
 * (`--plugin-path`), those in ATX_PLUGIN_PATH (colon-separated), then
 * `atx/plugins` next to the loaded libatx (a relocated install, or the build
 * tree), then the installed plugin directory. Never the current directory
 * implicitly. Plugin names are letters, digits, '-', '_' and '.', not
 * starting with '.'; others are refused with ATX_EINVAL. Only
 * regular files named `<name>.so` are loaded, with RTLD_NOW|RTLD_LOCAL; a file
 * with a wrong ABI major, a newer ABI minor, a name that does not match its
 * file, no entry symbol, a vtable lacking required methods, or that is not a
 * shared object is refused with one sentence naming the file and the reason.
 *
 * Threads: a registry is used from one thread at a time. Descriptors it hands
 * out stay valid until atx_plugins_free().
 */
#ifndef ATX_PLUGIN_H
#define ATX_PLUGIN_H

#include "atx/common.h"
#include "atx/log.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct atx_plugins atx_plugins;
struct atx_plugin_descriptor;

/** What a plugin extends. */
typedef enum atx_plugin_kind {
    ATX_PLUGIN_PROVISIONER = 1,
    ATX_PLUGIN_EXECUTOR = 2,
    ATX_PLUGIN_AGGREGATOR = 3
} atx_plugin_kind;

/** "provisioner", "executor", "aggregator", or "unknown". */
ATX_API const char *atx_plugin_kind_name(atx_plugin_kind kind);

#define ATX_PLUGINS_OPTS_VERSION 1
typedef struct atx_plugins_opts {
    unsigned version;          /**< ATX_PLUGINS_OPTS_VERSION */
    const char *const *paths;  /**< directories searched first; NULL-terminated or NULL */
    int no_environment;        /**< 1: ignore ATX_PLUGIN_PATH */
    int no_default_dir;        /**< 1: do not search next to libatx nor the
                                    installed directory */
    atx_log_fn log;            /**< receives refusals as warnings; may be NULL */
    void *log_userdata;
} atx_plugins_opts;
#define ATX_PLUGINS_OPTS_INIT { ATX_PLUGINS_OPTS_VERSION, NULL, 0, 0, NULL, NULL }

/** What the registry knows of one plugin file. Borrowed from the registry. */
typedef struct atx_plugin_info {
    const char *path;          /**< the file */
    const char *name;          /**< the file stem */
    int refused;               /**< 1 if not usable: see reason */
    const char *reason;        /**< the refusal sentence (file and reason), or NULL */
    atx_plugin_kind kind;      /**< the rest only when not refused */
    const char *version;
    const char *description;
    unsigned abi_major, abi_minor;
} atx_plugin_info;

/** The installed plugin directory this library was built for. */
ATX_API const char *atx_plugins_default_dir(void);

/** A new registry. @p opts may be NULL for the defaults. */
ATX_API int atx_plugins_new(const atx_plugins_opts *opts, atx_plugins **out);
/** Unload everything; NULL is accepted. */
ATX_API void atx_plugins_free(atx_plugins *reg);

/**
 * Load every `*.so` in the search path (the first file of a name wins), for
 * listing. Refusals are recorded, not fatal.
 * @return 0, or a negative code for failures other than refusals.
 */
ATX_API int atx_plugins_scan(atx_plugins *reg);
ATX_API size_t atx_plugins_count(const atx_plugins *reg);
ATX_API const atx_plugin_info *atx_plugins_at(const atx_plugins *reg, size_t i);

/**
 * Find and load the plugin @p name of @p kind.
 * @return 0 with *out set; ATX_ENOTFOUND when no such file is in the path;
 *         ATX_EPLUGIN when the first file found is refused (detail: the
 *         refusal sentence) or is of another kind.
 */
ATX_API int atx_plugins_find(atx_plugins *reg, atx_plugin_kind kind, const char *name,
                             const struct atx_plugin_descriptor **out);

/**
 * Register a plugin compiled into the program (same descriptor as a file
 * plugin would export), so runs can use it by name. The descriptor must
 * outlive the registry. It is checked like a file plugin.
 */
ATX_API int atx_plugins_add_builtin(atx_plugins *reg, const struct atx_plugin_descriptor *desc);

#ifdef __cplusplus
}
#endif
#endif
