/* The bud aggregator and its client: shared by the plugin and the atx command. */
#ifndef ATX_BUD_H
#define ATX_BUD_H

#include "client.h"

#include <atx/plugin/abi.h>

/* Secrets a program hands the aggregator when it adds it as a built-in
 * (userdata): they never go through the configuration, which the journal
 * keeps. Any may be NULL. */
typedef struct bud_secrets {
    const char *token;
    const char *password;
} bud_secrets;

extern const atx_plugin_descriptor bud_descriptor;

#endif
