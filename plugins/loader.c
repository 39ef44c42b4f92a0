/*
 * The plugin loader: search path, dlopen, and the checks made before any of
 * a plugin's code but its entry function runs.
 */
#include "../framework/src/internal.h"

#include <dirent.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#ifndef ATX_PLUGINDIR
#error "ATX_PLUGINDIR must name the installed plugin directory"
#endif

typedef struct entry {
    atx_plugin_info info;
    char *path;
    char *name;
    char *reason;
    void *handle;
    const atx_plugin_descriptor *desc;
} entry;

struct atx_plugins {
    char **dirs;
    size_t ndirs;
    atx_vec entries;
    atx_log_fn log;
    void *log_ud;
};

const char *atx_plugin_kind_name(atx_plugin_kind kind)
{
    switch (kind) {
    case ATX_PLUGIN_PROVISIONER: return "provisioner";
    case ATX_PLUGIN_EXECUTOR: return "executor";
    case ATX_PLUGIN_AGGREGATOR: return "aggregator";
    }
    return "unknown";
}

const char *atx_plugins_default_dir(void)
{
    return ATX_PLUGINDIR;
}

static int add_dir(atx_plugins *reg, const char *dir, size_t len)
{
    if (len == 0)
        return 0;
    char **dirs = realloc(reg->dirs, (reg->ndirs + 1) * sizeof(*dirs));
    if (!dirs)
        return atx_error_oom();
    reg->dirs = dirs;
    reg->dirs[reg->ndirs] = strndup(dir, len);
    if (!reg->dirs[reg->ndirs])
        return atx_error_oom();
    reg->ndirs++;
    return 0;
}

int atx_plugins_new(const atx_plugins_opts *opts, atx_plugins **out)
{
    atx_plugins_opts defaults = ATX_PLUGINS_OPTS_INIT;
    atx_plugins *reg;
    int r = 0;

    if (!out)
        return atx_error_set(ATX_EINVAL, "no output pointer");
    if (!opts)
        opts = &defaults;
    reg = calloc(1, sizeof(*reg));
    if (!reg)
        return atx_error_oom();
    reg->log = opts->log;
    reg->log_ud = opts->log_userdata;
    for (size_t i = 0; opts->paths && opts->paths[i] && r == 0; i++)
        r = add_dir(reg, opts->paths[i], strlen(opts->paths[i]));
    const char *env = opts->no_environment ? NULL : secure_getenv("ATX_PLUGIN_PATH");
    for (const char *p = env; p && *p && r == 0;) {
        const char *colon = strchr(p, ':');
        size_t n = colon ? (size_t)(colon - p) : strlen(p);
        r = add_dir(reg, p, n);
        p = colon ? colon + 1 : NULL;
    }
    if (!opts->no_default_dir && r == 0) {
        /* Next to the loaded libatx (<libdir>/atx/plugins): right for a
         * relocated install and for the build tree, which mirrors it. */
        Dl_info info;
        if (dladdr((void *)atx_plugins_new, &info) && info.dli_fname) {
            const char *slash = strrchr(info.dli_fname, '/');
            char *own;
            if (slash && asprintf(&own, "%.*s/atx/plugins", (int)(slash - info.dli_fname),
                                  info.dli_fname) >= 0) {
                if (strcmp(own, ATX_PLUGINDIR) != 0)
                    r = add_dir(reg, own, strlen(own));
                free(own);
            }
        }
        if (r == 0)
            r = add_dir(reg, ATX_PLUGINDIR, strlen(ATX_PLUGINDIR));
    }
    if (r < 0) {
        atx_plugins_free(reg);
        return r;
    }
    *out = reg;
    return 0;
}

void atx_plugins_free(atx_plugins *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->entries.len; i++) {
        entry *e = reg->entries.items[i];
        if (e->handle)
            dlclose(e->handle);
        free(e->path);
        free(e->name);
        free(e->reason);
        free(e);
    }
    atx_vec_release(&reg->entries);
    for (size_t i = 0; i < reg->ndirs; i++)
        free(reg->dirs[i]);
    free(reg->dirs);
    free(reg);
}

size_t atx_plugins_count(const atx_plugins *reg)
{
    return reg ? reg->entries.len : 0;
}

const atx_plugin_info *atx_plugins_at(const atx_plugins *reg, size_t i)
{
    if (!reg || i >= reg->entries.len)
        return NULL;
    return &((entry *)reg->entries.items[i])->info;
}

/* Required methods per kind; the reason names the first one missing. */
static const char *vtable_problem(const atx_plugin_descriptor *d)
{
    switch (d->kind) {
    case ATX_PLUGIN_PROVISIONER: {
        const atx_provisioner_vtable *v = d->vtable;
        if (v->version < 1)
            return "its provisioner vtable has no version";
        if (!v->create || !v->destroy || !v->capacity || !v->offer_count || !v->offer ||
            !v->reserve || !v->release)
            return "its provisioner vtable lacks a required method (create, destroy, "
                   "capacity, offer_count, offer, reserve, release)";
        return NULL;
    }
    case ATX_PLUGIN_EXECUTOR: {
        const atx_executor_vtable *v = d->vtable;
        if (v->version < 1)
            return "its executor vtable has no version";
        if (!v->create || !v->destroy || !v->run)
            return "its executor vtable lacks a required method (create, destroy, run)";
        return NULL;
    }
    case ATX_PLUGIN_AGGREGATOR: {
        const atx_aggregator_vtable *v = d->vtable;
        if (v->version < 1)
            return "its aggregator vtable has no version";
        if (!v->create || !v->destroy || !v->result)
            return "its aggregator vtable lacks a required method (create, destroy, result)";
        return NULL;
    }
    }
    return "it declares an unknown plugin kind";
}

int atx_plugin_descriptor_check(const atx_plugin_descriptor *d)
{
    if (!d)
        return atx_error_set(ATX_EPLUGIN, "its entry function returned no descriptor");
    if (d->abi_major != ATX_ABI_MAJOR)
        return atx_error_set(ATX_EPLUGIN, "it was built for plugin ABI %u.%u, this atx speaks %u.%u",
                             d->abi_major, d->abi_minor, ATX_ABI_MAJOR, ATX_ABI_MINOR);
    if (d->abi_minor > ATX_ABI_MINOR)
        return atx_error_set(ATX_EPLUGIN,
                             "it needs plugin ABI %u.%u, newer than this atx's %u.%u",
                             d->abi_major, d->abi_minor, ATX_ABI_MAJOR, ATX_ABI_MINOR);
    if (d->struct_size < sizeof(atx_plugin_descriptor))
        return atx_error_set(ATX_EPLUGIN, "its descriptor is %u bytes, expected at least %zu",
                             d->struct_size, sizeof(atx_plugin_descriptor));
    if (!d->name || !*d->name || !d->version || !d->vtable)
        return atx_error_set(ATX_EPLUGIN, "its descriptor lacks a name, version or vtable");
    const char *why = vtable_problem(d);
    if (why)
        return atx_error_set(ATX_EPLUGIN, "%s", why);
    return 0;
}

static entry *find_loaded(const atx_plugins *reg, const char *name)
{
    for (size_t i = 0; i < reg->entries.len; i++) {
        entry *e = reg->entries.items[i];
        if (strcmp(e->name, name) == 0)
            return e;
    }
    return NULL;
}

static void refuse(atx_plugins *reg, entry *e, const char *fmt, ...) ATX_PRINTF(3, 4);
static void refuse(atx_plugins *reg, entry *e, const char *fmt, ...)
{
    char why[768];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    /* One line: dlerror() texts may carry newlines. */
    for (char *p = why; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    if (asprintf(&e->reason, "plugin %s refused: %s", e->path, why) < 0)
        e->reason = NULL;
    e->info.refused = 1;
    e->info.reason = e->reason ? e->reason : "plugin refused";
    if (e->handle) {
        dlclose(e->handle);
        e->handle = NULL;
    }
    if (reg->log)
        reg->log(reg->log_ud, ATX_LOG_WARNING, "plugins", e->info.reason);
}

/* Load one file into a new entry (refused or not). */
static int load_file(atx_plugins *reg, const char *path, const char *stem, entry **out)
{
    entry *e = calloc(1, sizeof(*e));
    struct stat st;

    if (!e || !(e->path = strdup(path)) || !(e->name = strdup(stem))) {
        if (e)
            free(e->path);
        free(e);
        return atx_error_oom();
    }
    e->info.path = e->path;
    e->info.name = e->name;
    if (atx_vec_push(&reg->entries, e) < 0) {
        free(e->path);
        free(e->name);
        free(e);
        return ATX_ENOMEM;
    }
    *out = e;
    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
        refuse(reg, e, "not a regular file");
        return 0;
    }
    e->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!e->handle) {
        const char *err = dlerror();
        refuse(reg, e, "not a loadable shared object (%s)", err ? err : "dlopen failed");
        return 0;
    }
    dlerror();
    atx_plugin_entry_fn fn;
    *(void **)&fn = dlsym(e->handle, ATX_PLUGIN_ENTRY_SYMBOL);
    if (!fn) {
        refuse(reg, e, "it exports no %s symbol (not an atx plugin?)", ATX_PLUGIN_ENTRY_SYMBOL);
        return 0;
    }
    const atx_plugin_descriptor *d = fn();
    if (atx_plugin_descriptor_check(d) < 0) {
        refuse(reg, e, "%s", atx_error_last()->message);
        return 0;
    }
    if (strcmp(d->name, stem) != 0) {
        refuse(reg, e, "it declares the name '%s' but its file is named '%s.so'", d->name, stem);
        return 0;
    }
    e->desc = d;
    e->info.kind = d->kind;
    e->info.version = d->version;
    e->info.description = d->description ? d->description : "";
    e->info.abi_major = d->abi_major;
    e->info.abi_minor = d->abi_minor;
    return 0;
}

static bool valid_name(const char *name)
{
    if (!name || !*name)
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            return false;
    return name[0] != '.';
}

static int cmp_strp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int atx_plugins_scan(atx_plugins *reg)
{
    if (!reg)
        return ATX_EINVAL;
    for (size_t i = 0; i < reg->ndirs; i++) {
        DIR *d = opendir(reg->dirs[i]);
        struct dirent *de;
        if (!d)
            continue; /* a missing directory in the path is not an error */
        atx_vec names = { 0 };
        while ((de = readdir(d))) {
            size_t n = strlen(de->d_name);
            if (n <= 3 || strcmp(de->d_name + n - 3, ".so") != 0)
                continue;
            char *stem = strndup(de->d_name, n - 3);
            if (!stem || atx_vec_push(&names, stem) < 0) {
                free(stem);
                break;
            }
        }
        closedir(d);
        /* Sorted, so listings are stable. */
        qsort(names.items, names.len, sizeof(void *), cmp_strp);
        for (size_t k = 0; k < names.len; k++) {
            char *stem = names.items[k];
            char *path;
            entry *e;
            if (!find_loaded(reg, stem) && asprintf(&path, "%s/%s.so", reg->dirs[i], stem) >= 0) {
                load_file(reg, path, stem, &e);
                free(path);
            }
            free(stem);
        }
        atx_vec_release(&names);
    }
    return 0;
}

int atx_plugins_find(atx_plugins *reg, atx_plugin_kind kind, const char *name,
                     const atx_plugin_descriptor **out)
{
    entry *e;

    if (!reg || !out)
        return atx_error_set(ATX_EINVAL, "no registry");
    if (!valid_name(name))
        return atx_error_set(ATX_EINVAL, "'%s' is not a plugin name", name ? name : "");
    e = find_loaded(reg, name);
    for (size_t i = 0; !e && i < reg->ndirs; i++) {
        char *path;
        struct stat st;
        if (asprintf(&path, "%s/%s.so", reg->dirs[i], name) < 0)
            return atx_error_oom();
        if (stat(path, &st) == 0) {
            int r = load_file(reg, path, name, &e);
            free(path);
            if (r < 0)
                return r;
            break;
        }
        free(path);
    }
    if (!e) {
        char dirs[1024] = "";
        size_t o = 0;
        for (size_t i = 0; i < reg->ndirs && o < sizeof(dirs) - 1; i++)
            o += (size_t)snprintf(dirs + o, sizeof(dirs) - o, "%s%s", i ? ":" : "", reg->dirs[i]);
        return atx_error_set(ATX_ENOTFOUND, "no %s plugin '%s' in the plugin path (%s)",
                             atx_plugin_kind_name(kind), name, dirs);
    }
    if (e->info.refused)
        return atx_error_set(ATX_EPLUGIN, "%s", e->info.reason);
    if (e->desc->kind != kind)
        return atx_error_set(ATX_EPLUGIN, "plugin %s is a %s plugin, not a %s plugin", e->path,
                             atx_plugin_kind_name(e->desc->kind), atx_plugin_kind_name(kind));
    *out = e->desc;
    return 0;
}

int atx_plugins_add_builtin(atx_plugins *reg, const atx_plugin_descriptor *d)
{
    entry *e;
    int r;

    if (!reg || !d)
        return atx_error_set(ATX_EINVAL, "no registry or descriptor");
    if ((r = atx_plugin_descriptor_check(d)) < 0)
        return atx_error_set(ATX_EPLUGIN, "built-in plugin %s refused: %s",
                             d->name ? d->name : "(unnamed)", atx_error_last()->message);
    if (find_loaded(reg, d->name))
        return atx_error_set(ATX_EEXIST, "a plugin named '%s' is already registered", d->name);
    e = calloc(1, sizeof(*e));
    if (!e || !(e->name = strdup(d->name)) || !(e->path = strdup("(built in)"))) {
        if (e) {
            free(e->name);
            free(e);
        }
        return atx_error_oom();
    }
    e->desc = d;
    e->info = (atx_plugin_info){ .path = e->path, .name = e->name, .kind = d->kind,
                                 .version = d->version,
                                 .description = d->description ? d->description : "",
                                 .abi_major = d->abi_major, .abi_minor = d->abi_minor };
    if ((r = atx_vec_push(&reg->entries, e)) < 0) {
        free(e->name);
        free(e->path);
        free(e);
        return r;
    }
    return 0;
}
