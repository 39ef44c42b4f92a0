/* Duration history (history.c). Private to libatx. */
#ifndef ATX_HISTORY_H
#define ATX_HISTORY_H

#include "../framework/src/internal.h"

typedef struct history history;

/* Open (creating it and its folder) the history database at path. */
ATX_INTERNAL int hist_open(const char *path, history **out);
ATX_INTERNAL void hist_close(history *h);

/* Every estimate: test name, system class, expected duration. */
ATX_INTERNAL int hist_each(history *h, int (*fn)(void *, const char *, const char *, int64_t),
                           void *ud);

/* Record durations, between hist_begin() and hist_commit(). */
ATX_INTERNAL int hist_begin(history *h);
ATX_INTERNAL int hist_record(history *h, const char *test, const char *cls, int64_t ns);
ATX_INTERNAL int hist_commit(history *h);

#endif
