/*
 * atx — plan files: JSON describing provisioners, tests, aggregators and
 * policy. Every key is optional but "tests"; an unknown key is an error that
 * names it. Relative paths in a plan are relative to the plan file's folder
 * (aggregator paths: to the results directory).
 *
 * Threads: like the run it fills.
 */
#ifndef ATX_PLAN_H
#define ATX_PLAN_H

#include "atx/common.h"
#include "atx/run.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Load a plan file into @p run: its tests, provisioners, aggregators and
 * policy are added. Errors name the file and, where one applies, the key.
 * @return 0, ATX_EPARSE, ATX_EINVAL, ATX_EPLUGIN or another negative code.
 */
ATX_API int atx_plan_load_file(atx_run *run, const char *path);

/**
 * The same from text; @p origin names it in errors, @p basedir resolves
 * relative paths (NULL: the current directory).
 */
ATX_API int atx_plan_load_string(atx_run *run, const char *json, const char *origin,
                                 const char *basedir);

#ifdef __cplusplus
}
#endif
#endif
