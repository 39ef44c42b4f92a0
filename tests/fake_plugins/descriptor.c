/*
 * A fake plugin whose descriptor is written by hand, so that each field can
 * be wrong in a way ATX_PLUGIN_DEFINE cannot express. tests/plugins.cmake
 * builds it once per fault by defining one of:
 *   FAKE_ABI_MAJOR, FAKE_ABI_MINOR, FAKE_STRUCT_SIZE, FAKE_KIND,
 *   FAKE_DECLARED_NAME (instead of the file stem FAKE_NAME),
 *   FAKE_NEWLINE_NAME (declare a name with a newline in it),
 *   FAKE_VERSION (may be NULL),
 *   FAKE_VTABLE_VERSION, FAKE_OMIT_REQUIRED (leave out a required method of
 *   the kind's vtable), FAKE_NULL_DESCRIPTOR (the entry returns NULL).
 * Left undefined, each field is what a correct plugin would have.
 */
#include "atx/plugin/aggregator.h"
#include "atx/plugin/executor.h"
#include "atx/plugin/provisioner.h"

#ifndef FAKE_NAME
#error "FAKE_NAME must be the file stem"
#endif
#ifdef FAKE_NEWLINE_NAME
/* A name that would split the refusal sentence if the loader printed it raw. */
#define FAKE_DECLARED_NAME "two\nlines"
#endif
#ifndef FAKE_DECLARED_NAME
#define FAKE_DECLARED_NAME FAKE_NAME
#endif
#ifndef FAKE_ABI_MAJOR
#define FAKE_ABI_MAJOR ATX_ABI_MAJOR
#endif
#ifndef FAKE_ABI_MINOR
#define FAKE_ABI_MINOR ATX_ABI_MINOR
#endif
#ifndef FAKE_STRUCT_SIZE
#define FAKE_STRUCT_SIZE sizeof(atx_plugin_descriptor)
#endif
#ifndef FAKE_KIND
#define FAKE_KIND ATX_PLUGIN_AGGREGATOR
#endif
#ifndef FAKE_VERSION
#define FAKE_VERSION "1.0"
#endif
#ifndef FAKE_NULL_DESCRIPTOR
#define FAKE_NULL_DESCRIPTOR 0
#endif
#ifndef FAKE_OMIT_REQUIRED
#define FAKE_OMIT_REQUIRED 0
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

static int fake_run(void *state, atx_attempt *a)
{
    (void)state;
    (void)a;
    return 0;
}

static int fake_capacity(void *state)
{
    (void)state;
    return 1;
}

static size_t fake_offer_count(void *state)
{
    (void)state;
    return 0;
}

static const atx_labels *fake_offer(void *state, size_t i)
{
    (void)state;
    (void)i;
    return NULL;
}

static int fake_reserve(void *state, const struct atx_reserve_req *req, atx_system **out)
{
    (void)state;
    (void)req;
    (void)out;
    return ATX_EINFRA;
}

static void fake_release(void *state, atx_system *sys, unsigned flags)
{
    (void)state;
    (void)sys;
    (void)flags;
}

/* Each kind's vtable; FAKE_OMIT_REQUIRED leaves out the last required method. */
static const atx_aggregator_vtable fake_aggregator = {
#ifdef FAKE_VTABLE_VERSION
    .version = FAKE_VTABLE_VERSION,
#else
    .version = ATX_AGGREGATOR_VTABLE_VERSION,
#endif
    .create = fake_create,
    .destroy = fake_destroy,
    .result = FAKE_OMIT_REQUIRED ? NULL : fake_result,
};

static const atx_executor_vtable fake_executor = {
    .version = ATX_EXECUTOR_VTABLE_VERSION,
    .create = fake_create,
    .destroy = fake_destroy,
    .run = FAKE_OMIT_REQUIRED ? NULL : fake_run,
};

static const atx_provisioner_vtable fake_provisioner = {
    .version = ATX_PROVISIONER_VTABLE_VERSION,
    .create = fake_create,
    .destroy = fake_destroy,
    .capacity = fake_capacity,
    .offer_count = fake_offer_count,
    .offer = fake_offer,
    .reserve = fake_reserve,
    .release = FAKE_OMIT_REQUIRED ? NULL : fake_release,
};

static const atx_plugin_descriptor fake_descriptor = {
    .abi_major = FAKE_ABI_MAJOR,
    .abi_minor = FAKE_ABI_MINOR,
    .struct_size = (uint32_t)(FAKE_STRUCT_SIZE),
    .kind = (atx_plugin_kind)(FAKE_KIND),
    .name = FAKE_DECLARED_NAME,
    .version = FAKE_VERSION,
    .description = "A deliberately broken fake plugin for the loader tests",
    .vtable = (FAKE_KIND) == ATX_PLUGIN_EXECUTOR      ? (const void *)&fake_executor
              : (FAKE_KIND) == ATX_PLUGIN_PROVISIONER ? (const void *)&fake_provisioner
                                                      : (const void *)&fake_aggregator,
};

ATX_PLUGIN_EXPORT const atx_plugin_descriptor *atx_plugin_entry(void);
ATX_PLUGIN_EXPORT const atx_plugin_descriptor *atx_plugin_entry(void)
{
    return FAKE_NULL_DESCRIPTOR ? NULL : &fake_descriptor;
}
