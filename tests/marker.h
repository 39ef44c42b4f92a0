/*
 * For tests of processes (include after cmocka.h): a copy of sleep with a
 * name of the test's own, to count what is left of what tests started, and
 * the text of a capture.
 */
#ifndef ATX_TEST_MARKER_H
#define ATX_TEST_MARKER_H

#include <atx/plugin/capture.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char marker[64];   /* "atx-<what>-<pid>": the copy's name */
static char sleeper[128]; /* its path */

/* Make the copy (its name says which test and which process). */
static void marker_make(const char *what)
{
    char cmd[512];
    snprintf(marker, sizeof(marker), "atx-%s-%d", what, getpid());
    snprintf(sleeper, sizeof(sleeper), "/tmp/%s", marker);
    snprintf(cmd, sizeof(cmd), "cp \"$(command -v sleep)\" %s", sleeper);
    assert_int_equal(system(cmd), 0);
}

/* How many processes of the copy are alive (zombies not counted). */
static int marker_alive(void)
{
    char cmd[256];
    int n = 0;
    /* "[a]tx..." does not match the shell that runs grep. */
    snprintf(cmd, sizeof(cmd), "ps -eo stat=,args= | grep -v '^Z' | grep -c '[%c]%s'",
             marker[0], marker + 1);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    if (fscanf(f, "%d", &n) != 1)
        n = 0;
    pclose(f);
    return n;
}

/* What a capture kept, as a string (malloc'ed). */
static char *capture_text(const atx_capture *c)
{
    char *t;
    size_t n;
    assert_int_equal(atx_capture_collect(c, &t, &n), 0);
    return t;
}

#endif
