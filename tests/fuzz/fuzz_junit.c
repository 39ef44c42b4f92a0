/*
 * libFuzzer target for the JUnit XML import (executors/junit/junit_import.c).
 *
 * The input is a report. Whatever it holds, the import must end quickly in
 * bounded memory (libFuzzer's -timeout and -rss_limit_mb watch that: an
 * entity expanded would be caught), and say why in one terminated line when
 * it refuses. Every testcase handed over must have terminated strings, a
 * name, an outcome in range and a time that is not negative; together they
 * hold no more bytes than the report (nothing was expanded).
 */
#define _GNU_SOURCE 1
#include <libxml/parser.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../executors/junit/junit_import.h"

typedef struct seen {
    size_t cases, bytes;
    size_t stop_after;
} seen;

static size_t opt_len(const char *s)
{
    return s ? strlen(s) : 0;
}

static int on_case(void *ud, const junit_case *c)
{
    seen *sn = ud;

    if (!c->name || !*c->name || !c->classname || c->outcome > JU_SKIP || !(c->seconds >= 0))
        abort();
    sn->bytes += strlen(c->name) + strlen(c->classname) + opt_len(c->message) +
                 opt_len(c->type) + opt_len(c->details) + opt_len(c->system_out) +
                 opt_len(c->system_err);
    sn->cases++;
    return sn->stop_after && sn->cases >= sn->stop_after ? 7 : 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    xmlInitParser();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len);
int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    seen sn = { 0 };
    char why[600];
    size_t cases = 99;
    int r;

    if (len < 1)
        return 0;
    sn.stop_after = buf[0] % 4;
    why[0] = '\0';
    r = junit_import_buffer((const char *)buf + 1, len - 1, "report.xml", on_case, &sn,
                            &cases, why, sizeof(why));
    if (r < 0) {
        size_t n = strnlen(why, sizeof(why));
        if (n == 0 || n >= sizeof(why) || cases != 0 || sn.cases != 0 ||
            strncmp(why, "the JUnit report report.xml ", 28) != 0)
            abort();
    } else if (r == 7) {
        if (!sn.stop_after || cases != sn.stop_after)
            abort();
    } else if (r != 0 || cases != sn.cases) {
        abort();
    }
    /* Nothing is expanded: what the testcases hold is at most the input. */
    if (sn.bytes > len)
        abort();
    return 0;
}
