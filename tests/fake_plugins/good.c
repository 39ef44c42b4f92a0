/*
 * A well-formed fake aggregator that does nothing. Built under several names
 * (FAKE_NAME) and versions (FAKE_VERSION) by tests/plugins.cmake: the loader
 * must accept it, and the search-order tests tell copies apart by version.
 */
#include "atx/plugin/aggregator.h"

#ifndef FAKE_NAME
#error "FAKE_NAME must be the file stem"
#endif
#ifndef FAKE_VERSION
#define FAKE_VERSION "1.0"
#endif

static int fake_create(atx_plugin_ctx *ctx, void **state)
{
    (void)ctx;
    *state = NULL;
    return 0;
}

static void fake_destroy(void *state)
{
    (void)state;
}

static int fake_result(void *state, const atx_result *r)
{
    (void)state;
    (void)r;
    return 0;
}

static const atx_aggregator_vtable fake_vtable = {
    .version = ATX_AGGREGATOR_VTABLE_VERSION,
    .create = fake_create,
    .destroy = fake_destroy,
    .result = fake_result,
};

ATX_PLUGIN_DEFINE(ATX_PLUGIN_AGGREGATOR, FAKE_NAME, FAKE_VERSION, "A fake aggregator for the loader tests",
                  &fake_vtable)
