/*
 * atx — label sets: small sorted key=value maps describing what a system is
 * (arch, distro, hostname, provider, configured facts) and what a test
 * requires.
 *
 * Ownership: atx_labels_new() hands a set to the caller, atx_labels_free()
 * releases it. Getters borrow. A set is not locked: share it between threads
 * only while nobody modifies it.
 */
#ifndef ATX_LABELS_H
#define ATX_LABELS_H

#include "atx/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct atx_labels atx_labels;

/** A new, empty set. @return 0 or -ENOMEM. */
ATX_API int atx_labels_new(atx_labels **out);
/** A deep copy of @p src (NULL copies as an empty set). */
ATX_API int atx_labels_dup(const atx_labels *src, atx_labels **out);
/** Free a set; NULL is accepted. */
ATX_API void atx_labels_free(atx_labels *labels);

/** Set @p key to @p value, replacing an earlier value. Keys are non-empty. */
ATX_API int atx_labels_set(atx_labels *labels, const char *key, const char *value);
/** The value of @p key, or NULL. Borrowed. */
ATX_API const char *atx_labels_get(const atx_labels *labels, const char *key);
/** Number of pairs; NULL counts as empty. */
ATX_API size_t atx_labels_count(const atx_labels *labels);
/** The i-th pair in key order. @return 0, or ATX_EINVAL out of range. */
ATX_API int atx_labels_at(const atx_labels *labels, size_t i,
                          const char **key, const char **value);
/** Copy every pair of @p src into @p dst (overriding). */
ATX_API int atx_labels_merge(atx_labels *dst, const atx_labels *src);

/**
 * Whether @p have satisfies @p need: every key of @p need is present in
 * @p have with the same value. A required value may list alternatives
 * separated by `|` ("x86_64|aarch64"). An empty @p need is satisfied by
 * anything.
 * @param missing  if not NULL and the answer is no, receives the first
 *                 unsatisfied key of @p need (borrowed from @p need).
 * @return 1 if satisfied, 0 if not.
 */
ATX_API int atx_labels_satisfy(const atx_labels *have, const atx_labels *need,
                               const char **missing);

/** Whether two sets hold the same pairs. */
ATX_API int atx_labels_equal(const atx_labels *a, const atx_labels *b);

/**
 * The system class of a label set: "provider/arch/distro", "-" for a missing
 * label (NULL labels: "-/-/-"). Durations are learned per class, and Bud
 * rows name it. Truncated to @p len - 1 bytes.
 */
ATX_API void atx_labels_class(const atx_labels *labels, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
