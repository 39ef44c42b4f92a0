/*
 * A loadable shared object that exports a function, but not the plugin entry
 * symbol: the loader must refuse it by naming the missing symbol.
 */
#include "atx/plugin/abi.h"

ATX_PLUGIN_EXPORT int fake_not_a_plugin(void);
ATX_PLUGIN_EXPORT int fake_not_a_plugin(void)
{
    return 42;
}
