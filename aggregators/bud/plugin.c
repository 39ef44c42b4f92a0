/* The bud aggregator as a loadable plugin (its code is in bud.c). */
#include "bud.h"

ATX_PLUGIN_EXPORT const atx_plugin_descriptor *atx_plugin_entry(void);
ATX_PLUGIN_EXPORT const atx_plugin_descriptor *atx_plugin_entry(void)
{
    return &bud_descriptor;
}
