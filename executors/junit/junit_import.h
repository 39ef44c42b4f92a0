/* JUnit XML files read into test cases (junit_import.c). */
#ifndef ATX_JUNIT_IMPORT_H
#define ATX_JUNIT_IMPORT_H

#include <stddef.h>

typedef enum junit_outcome { JU_PASS, JU_FAIL, JU_ERROR, JU_SKIP } junit_outcome;

typedef struct junit_case {
    const char *classname;     /* may be "" */
    const char *name;
    junit_outcome outcome;
    const char *message;       /* of failure/error/skipped, or NULL */
    const char *type;          /* of failure/error, or NULL */
    const char *details;       /* the element's text (a traceback), or NULL */
    const char *system_out;    /* or NULL */
    const char *system_err;    /* or NULL */
    double seconds;            /* time=, 0 when missing */
} junit_case;

/* Called for each testcase, in order; strings live for the call. Nonzero
 * stops the reading (junit_import_file returns it). */
typedef int (*junit_case_fn)(void *ud, const junit_case *c);

/* Reports longer than this are refused, not read. */
#define JUNIT_REPORT_MAX (64u << 20)
/* Elements, attributes and texts of one report (the tree libxml2 builds). */
#define JUNIT_NODES_MAX 1000000u

/*
 * Read every <testcase> of a JUnit XML file (a <testsuites> or <testsuite>
 * root, suites nested or not). Returns 0; what fn returned when it stopped
 * the reading; or -1 with why set to one sentence (missing, longer than
 * JUNIT_REPORT_MAX, not XML, declaring entities, not JUnit).
 */
int junit_import_file(const char *path, junit_case_fn fn, void *ud, size_t *cases, char *why,
                      size_t whylen);

/* The same for a report in memory (@p len bytes, no NUL needed), named
 * @p name in why. */
int junit_import_buffer(const char *text, size_t len, const char *name, junit_case_fn fn,
                        void *ud, size_t *cases, char *why, size_t whylen);

#endif
