/*
 * Duration history: how long each test took, per test name and system class,
 * kept across runs in a SQLite database (by default in the user's state
 * folder). The scheduler orders a run's tests longest expected first from it.
 *
 * An estimate is the mean of the first few durations, then a moving average
 * that gives each new run 30 %, so a test that became slower is noticed
 * within a few nights. Several atx may share the file: writers wait for each
 * other (busy timeout) and each run writes its durations in one transaction.
 */
#include "history.h"

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

struct history {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *put;
};

static int db_error(history *h, int rc, const char *what)
{
    return atx_error_set(rc == SQLITE_BUSY ? ATX_ESTATE : ATX_EIO, "history %s: %s: %s", h->path,
                         what, h->db ? sqlite3_errmsg(h->db) : sqlite3_errstr(rc));
}

int hist_open(const char *path, history **out)
{
    history *h = calloc(1, sizeof(*h));
    int rc, r;

    if (!h || !(h->path = strdup(path))) {
        free(h);
        return atx_error_oom();
    }
    char *dir = strdup(path), *slash = dir ? strrchr(dir, '/') : NULL;
    if (slash && slash != dir) {
        *slash = '\0';
        if ((r = atx_mkdir_p(dir)) < 0) {
            free(dir);
            hist_close(h);
            return r;
        }
    }
    free(dir);
    rc = sqlite3_open_v2(path, &h->db,
                         SQLITE_OPEN_CREATE | SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(h->db, 10000);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(h->db,
                          "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                          "CREATE TABLE IF NOT EXISTS durations(test TEXT NOT NULL,"
                          " class TEXT NOT NULL, runs INTEGER NOT NULL, mean_ns INTEGER NOT NULL,"
                          " last_ns INTEGER NOT NULL, updated INTEGER NOT NULL,"
                          " PRIMARY KEY(test, class)) WITHOUT ROWID;",
                          NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(
            h->db,
            "INSERT INTO durations(test, class, runs, mean_ns, last_ns, updated) "
            "VALUES (?1, ?2, 1, ?3, ?3, ?4) ON CONFLICT(test, class) DO UPDATE SET "
            "mean_ns = mean_ns + CAST((excluded.last_ns - mean_ns) * "
            "max(1.0 / (runs + 1), 0.3) AS INTEGER), runs = runs + 1, "
            "last_ns = excluded.last_ns, updated = excluded.updated",
            -1, &h->put, NULL);
    if (rc != SQLITE_OK) {
        r = db_error(h, rc, rc == SQLITE_NOTADB ? "not a history database" : "cannot open");
        hist_close(h);
        return r;
    }
    *out = h;
    return 0;
}

void hist_close(history *h)
{
    if (!h)
        return;
    sqlite3_finalize(h->put);
    sqlite3_close(h->db);
    free(h->path);
    free(h);
}

int hist_each(history *h, int (*fn)(void *, const char *, const char *, int64_t), void *ud)
{
    sqlite3_stmt *st;
    int rc, r = 0;

    rc = sqlite3_prepare_v2(h->db, "SELECT test, class, mean_ns FROM durations", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return db_error(h, rc, "cannot read");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if ((r = fn(ud, (const char *)sqlite3_column_text(st, 0),
                    (const char *)sqlite3_column_text(st, 1), sqlite3_column_int64(st, 2))) < 0)
            break;
    if (r == 0 && rc != SQLITE_DONE)
        r = db_error(h, rc, "cannot read");
    sqlite3_finalize(st);
    return r;
}

int hist_begin(history *h)
{
    int rc = sqlite3_exec(h->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : db_error(h, rc, "cannot write");
}

int hist_record(history *h, const char *test, const char *cls, int64_t ns)
{
    sqlite3_bind_text(h->put, 1, test, -1, SQLITE_STATIC);
    sqlite3_bind_text(h->put, 2, cls, -1, SQLITE_STATIC);
    sqlite3_bind_int64(h->put, 3, ns);
    sqlite3_bind_int64(h->put, 4, atx_wallclock_ns() / ATX_NSEC_PER_SEC);
    int rc = sqlite3_step(h->put);
    sqlite3_reset(h->put);
    return rc == SQLITE_DONE ? 0 : db_error(h, rc, "cannot write");
}

int hist_commit(history *h)
{
    int rc = sqlite3_exec(h->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        int r = db_error(h, rc, "cannot write");
        sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
        return r;
    }
    return 0;
}
