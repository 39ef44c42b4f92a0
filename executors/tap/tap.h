/* A TAP 13 stream read into test points (tap.c). */
#ifndef ATX_TAP_H
#define ATX_TAP_H

#include <stdbool.h>
#include <stddef.h>

typedef enum tap_kind {
    TAP_OK,
    TAP_NOT_OK,
    TAP_SKIP,         /* ok or not ok with # SKIP */
    TAP_TODO_FAILED,  /* not ok # TODO: failed as expected */
    TAP_TODO_PASSED,  /* ok # TODO: passed, unexpectedly */
} tap_kind;

typedef struct tap_point {
    long number;              /* as written, or the running count */
    tap_kind kind;
    const char *description;  /* may be "" */
    const char *directive;    /* the SKIP/TODO reason, or NULL */
    const char *diagnostics;  /* the YAML block or # lines after it, or NULL */
} tap_point;

typedef struct tap_summary {
    long planned;             /* -1: no plan */
    long seen;                /* test points */
    bool bailed;
    char bail_reason[512];
    bool skip_all;            /* 1..0 # SKIP */
    char problem[512];        /* a malformed stream, or a plan mismatch; "" if none */
    bool stopped;             /* the callback stopped the reading */
} tap_summary;

/* Called for each test point, in order; strings live for the call. Nonzero
 * stops the reading. */
typedef int (*tap_point_fn)(void *ud, const tap_point *p);

/* Read a whole stream (in time linear in its length), or up to where fn
 * stopped it. Never fails: trouble is described in sum->problem. */
void tap_parse(const char *data, size_t len, tap_point_fn fn, void *ud, tap_summary *sum);

#endif
