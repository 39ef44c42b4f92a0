/* libatx internals shared by framework/, plugins/ and orchestrator/. Private. */
#ifndef ATX_INTERNAL_H
#define ATX_INTERNAL_H

#define _GNU_SOURCE 1
#include "atx.h"
#include "atx/plugin/abi.h"
#include "atx/plugin/aggregator.h"
#include "atx/plugin/capture.h"
#include "atx/plugin/executor.h"
#include "atx/plugin/provisioner.h"
#include "atx/plugin/text.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/types.h>

#define ATX_INTERNAL __attribute__((visibility("hidden")))

#define ATX_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Records "out of memory" without allocating; returns ATX_ENOMEM. */
ATX_INTERNAL int atx_error_oom(void);

/* Growable array of pointers. */
typedef struct atx_vec {
    void **items;
    size_t len, cap;
} atx_vec;
ATX_INTERNAL int atx_vec_push(atx_vec *v, void *item);
ATX_INTERNAL void atx_vec_release(atx_vec *v);

/* A span as poll()'s timeout: negative is none (-1), a part of a
 * millisecond rounds up, and a very long one stops at INT_MAX. */
static inline int atx_poll_ms(int64_t ns)
{
    if (ns < 0)
        return -1;
    int64_t ms = (ns + ATX_NSEC_PER_MSEC - 1) / ATX_NSEC_PER_MSEC;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* FNV-1a of a string, for the open-addressing sets. */
ATX_INTERNAL uint64_t atx_hash_str(const char *s);
ATX_INTERNAL uint64_t atx_hash_mem(const void *p, size_t n);

/* strdup that records OOM. NULL in, NULL out (and returns 0). */
ATX_INTERNAL int atx_strdup_into(char **dst, const char *src);

/* mkdir -p with mode 0755. */
ATX_INTERNAL int atx_mkdir_p(const char *path);
/* Secrets (secret.c): values masked as "[MASKED]" wherever test data is
 * written; variables hidden from every process spawned on this host. */
typedef struct atx_secrets {
    pthread_rwlock_t lock;  /* added to while a run goes (a new token) */
    char **v;               /* longest first, with their JSON and XML forms */
    size_t n, maxlen;
    bool first[256];        /* a secret starts with this byte */
} atx_secrets;
ATX_INTERNAL void atx_secrets_init(atx_secrets *s);
ATX_INTERNAL int atx_secrets_add(atx_secrets *s, const char *value);
ATX_INTERNAL size_t atx_secrets_count(atx_secrets *s);
ATX_INTERNAL void atx_secrets_free(atx_secrets *s);
/* 1 with *out (malloc'ed, NUL-terminated) when data held a secret, 0 when
 * not (nothing allocated), or ATX_ENOMEM. */
ATX_INTERNAL int atx_secrets_mask(atx_secrets *s, const char *data, size_t len, char **out,
                                  size_t *outlen);
/* Every regular file below dir masked, names included (links not
 * followed); what cannot be masked is removed, and the error says so. */
ATX_INTERNAL int atx_secrets_mask_tree(atx_secrets *s, const char *dir);
ATX_INTERNAL int atx_env_hide(const char *name);
/* A result's test-made text (subtest, status word, note, error type,
 * output) masked. */
ATX_INTERNAL int atx_result_mask(atx_result *r, atx_secrets *s);
/* Drop the hidden variables' "NAME=value" entries from a NULL-ended list. */
ATX_INTERNAL void atx_env_drop_hidden(const char **envp);

/* The mode a file taken from a system keeps: 0755 if anyone could run it,
 * else 0644; never setuid, setgid or sticky. */
static inline unsigned atx_taken_mode(unsigned mode)
{
    return mode & 0111 ? 0755 : 0644;
}
/* Remove dfd/name, a folder with all below it (links removed, never
 * followed): 0 or -errno. */
ATX_INTERNAL int atx_remove_at(int dfd, const char *name);
/* Remove everything below a folder (links are removed, never followed). */
ATX_INTERNAL int atx_empty_dir(const char *path);

/* write(2) to a pipe whose reader may be gone: EPIPE, never a SIGPIPE to a
 * program that did not ask to ignore it. */
ATX_INTERNAL ssize_t atx_write_nosig(int fd, const void *buf, size_t len);

/* A NULL-terminated argv made from a JSON array of strings. */
struct json_object;
ATX_INTERNAL int atx_json_strv(const struct json_object *arr, char ***out);
ATX_INTERNAL void atx_strv_free(char **v);

/* Plugin context (plugins/ctx.c). */
ATX_INTERNAL void atx_plugin_ctx_set_secrets(atx_plugin_ctx *ctx, atx_secrets *secrets);
/* Where the run keeps its comparison (atx_plugin_ctx_changes()). */
ATX_INTERNAL void atx_plugin_ctx_set_changes(atx_plugin_ctx *ctx, const atx_changes **changes);
ATX_INTERNAL int atx_plugin_ctx_new(const char *name, const char *config_json,
                                    const char *results_dir, void *userdata,
                                    atx_log_fn log, void *log_ud, atx_log_level level,
                                    atx_plugin_ctx **out);
ATX_INTERNAL void atx_plugin_ctx_free(atx_plugin_ctx *ctx);
/* Check a descriptor's ABI, kind and vtable; on refusal returns ATX_EPLUGIN
 * with the reason (without the file) in the detail. */
ATX_INTERNAL int atx_plugin_descriptor_check(const atx_plugin_descriptor *d);

/* Attempts (orchestrator/attempt.c). */
ATX_INTERNAL void atx_system_mark_used(atx_system *sys);
/* Make a system's id unique in a run: "local-1" becomes "local-1.2". */
ATX_INTERNAL int atx_system_add_id_suffix(atx_system *sys, const char *suffix);
/* A process's control-channel fd (owned by it from now on). */
ATX_INTERNAL void atx_proc_attach_control(atx_proc *p, int fd);
/* Bound every spawn on the system by a monotonic instant (0: no bound). */
ATX_INTERNAL void atx_system_set_phase_deadline(atx_system *sys, int64_t deadline_ns);

/* What a copy from a system may still take (atx_copy_bounds). */
typedef struct atx_copy_budget {
    atx_copy_bounds b;
    uint64_t bytes, entries;
    char over[96];           /* the bound that left something out, or "" */
} atx_copy_budget;
ATX_INTERNAL void atx_copy_budget_init(atx_copy_budget *g, const atx_copy_bounds *b);
/** Whether one more entry (a file of @p size bytes, or a folder) fits; if
 *  not, g->over says which bound. */
ATX_INTERNAL bool atx_copy_budget_take(atx_copy_budget *g, bool file, uint64_t size);

#endif
