/*
 * atx aggregator plugins (plugin tier).
 *
 * An aggregator receives every result as soon as its attempt has ended, in
 * emission order, on one thread (the run's aggregator thread): begin once,
 * result for each result, end once with the summary. A slow aggregator delays
 * only the aggregator thread, never the workers.
 */
#ifndef ATX_PLUGIN_AGGREGATOR_H
#define ATX_PLUGIN_AGGREGATOR_H

#include "atx/plugin/abi.h"
#include "atx/result.h"
#include "atx/run.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Facts of the run an aggregator may put in its report. */
typedef struct atx_run_info {
    const char *run_id;        /**< unique id of the run */
    const char *results_dir;   /**< absolute */
    const char *hostname;      /**< where the orchestrator runs */
    int64_t started_ns;        /**< wall clock */
    size_t tests;              /**< tests in the run */
    /* ABI 1.1 */
    size_t replayed;           /**< the first this many results are replayed from
                                    the journal (a resumed run, atx report): an
                                    aggregator that sends results elsewhere
                                    skips them, they were sent before */
} atx_run_info;

#define ATX_AGGREGATOR_VTABLE_VERSION 1
typedef struct atx_aggregator_vtable {
    unsigned version;  /**< ATX_AGGREGATOR_VTABLE_VERSION when built */
    /** Required. */
    int (*create)(atx_plugin_ctx *ctx, void **state);
    /** Required. */
    void (*destroy)(void *state);
    /** Optional. Before the first result. */
    int (*begin)(void *state, const atx_run_info *info);
    /**
     * Required. One result; borrowed (atx_result_ref() to keep it).
     * attempt results superseded by a rerun arrive with final == 0.
     */
    int (*result)(void *state, const atx_result *r);
    /** Optional. After the last result: write the report. */
    int (*end)(void *state, const atx_summary *summary);
    /** Optional. An attempt started (for progress displays). */
    void (*started)(void *state, const atx_test *t, const char *system_id, int attempt);
} atx_aggregator_vtable;

#ifdef __cplusplus
}
#endif
#endif
