/*
 * atx — Ad-hoc Test eXecution: the driver API in one include.
 */
#ifndef ATX_H
#define ATX_H

#include "atx/common.h"
#include "atx/error.h"
#include "atx/changes.h"
#include "atx/labels.h"
#include "atx/log.h"
#include "atx/plan.h"
#include "atx/plugin.h"
#include "atx/result.h"
#include "atx/run.h"
#include "atx/system.h"
#include "atx/test.h"

#endif
