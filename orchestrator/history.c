/*
 * Duration history: how long each test took, per test name and system class,
 * kept across runs in a SQLite database (by default in the user's state
 * folder). The scheduler orders a run's tests longest expected first from it.
 *
 * An estimate is the mean of the first few durations, then a moving average
 * that gives each new run 30 %, so a test that became slower is noticed
 * within a few nights. Several atx may share the file: writers wait for each
 * other (busy timeout) and each run writes its durations in one transaction.
 *
 * Outcomes: each run of a plan (by its key) is a row of `runs`, and each of
 * its tests' final outcome a row of `outcomes`; a plan keeps its last
 * ATX_HISTORY_RUNS runs, and the file at most HIST_RUNS_MAX runs in all,
 * so it stays bounded however many nights pass.
 */
#include "history.h"

#include <sqlite3.h>

#define HIST_RUNS_MAX 2000 /* runs kept in all, of every plan */
#include <stdio.h>
#include <string.h>

struct history {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *put;
    sqlite3_stmt *put_outcome; /* made at the first outcome written */
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
                          " PRIMARY KEY(test, class)) WITHOUT ROWID;"
                          "CREATE TABLE IF NOT EXISTS runs(id INTEGER PRIMARY KEY AUTOINCREMENT,"
                          " plan TEXT NOT NULL, run_id TEXT NOT NULL, started INTEGER NOT NULL,"
                          " dir TEXT);"
                          "CREATE INDEX IF NOT EXISTS runs_plan ON runs(plan, id);"
                          "CREATE TABLE IF NOT EXISTS outcomes(run INTEGER NOT NULL,"
                          " test TEXT NOT NULL, class TEXT NOT NULL, status TEXT NOT NULL,"
                          " attempts INTEGER NOT NULL, flaky INTEGER NOT NULL,"
                          " duration_ns INTEGER NOT NULL, spec INTEGER NOT NULL,"
                          " PRIMARY KEY(run, test)) WITHOUT ROWID;",
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
    sqlite3_finalize(h->put_outcome);
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

void hist_rollback(history *h)
{
    sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
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

/* ---- outcomes ---- */

int hist_plan_read(history *h, const char *plan, const char *self, hist_run_fn on_run,
                   hist_outcome_fn on_outcome, void *ud)
{
    sqlite3_stmt *st = NULL;
    int rc, r = 0;

    rc = sqlite3_prepare_v2(h->db,
                            "SELECT id, run_id, started FROM runs WHERE plan = ?1 "
                            "AND run_id != ?2 ORDER BY id DESC LIMIT 1",
                            -1, &st, NULL);
    if (rc != SQLITE_OK)
        return db_error(h, rc, "cannot read");
    sqlite3_bind_text(st, 1, plan, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, self ? self : "", -1, SQLITE_STATIC);
    if ((rc = sqlite3_step(st)) == SQLITE_ROW)
        r = on_run(ud, sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1),
                   sqlite3_column_int64(st, 2));
    else if (rc != SQLITE_DONE)
        r = db_error(h, rc, "cannot read");
    sqlite3_finalize(st);
    if (r < 0 || rc != SQLITE_ROW)
        return r;
    rc = sqlite3_prepare_v2(h->db,
                            "SELECT o.run, o.test, o.status, o.flaky, o.duration_ns, o.spec "
                            "FROM outcomes o JOIN (SELECT id FROM runs WHERE plan = ?1 "
                            "AND run_id != ?3 ORDER BY id DESC LIMIT ?2) r ON o.run = r.id "
                            "ORDER BY o.run",
                            -1, &st, NULL);
    if (rc != SQLITE_OK)
        return db_error(h, rc, "cannot read");
    sqlite3_bind_text(st, 1, plan, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, ATX_HISTORY_RUNS);
    sqlite3_bind_text(st, 3, self ? self : "", -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if ((r = on_outcome(ud, sqlite3_column_int64(st, 0),
                            (const char *)sqlite3_column_text(st, 1),
                            (const char *)sqlite3_column_text(st, 2), sqlite3_column_int(st, 3),
                            sqlite3_column_int64(st, 4), (uint32_t)sqlite3_column_int64(st, 5))) < 0)
            break;
    if (r == 0 && rc != SQLITE_DONE)
        r = db_error(h, rc, "cannot read");
    sqlite3_finalize(st);
    return r;
}

int hist_plan_add_run(history *h, const char *plan, const char *run_id, int64_t started,
                      const char *dir, int64_t *run)
{
    /* A resumed run is one run: what its earlier part wrote goes. */
    static const char *const drop[] = {
        "DELETE FROM outcomes WHERE run IN (SELECT id FROM runs WHERE plan = ?1 AND run_id = ?2)",
        "DELETE FROM runs WHERE plan = ?1 AND run_id = ?2",
    };
    sqlite3_stmt *st;
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++) {
        int rc = sqlite3_prepare_v2(h->db, drop[i], -1, &st, NULL);
        if (rc != SQLITE_OK)
            return db_error(h, rc, "cannot write");
        sqlite3_bind_text(st, 1, plan, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, run_id, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE)
            return db_error(h, rc, "cannot write");
    }
    int rc = sqlite3_prepare_v2(h->db,
                                "INSERT INTO runs(plan, run_id, started, dir) VALUES (?1, ?2, ?3, ?4)",
                                -1, &st, NULL);
    if (rc != SQLITE_OK)
        return db_error(h, rc, "cannot write");
    sqlite3_bind_text(st, 1, plan, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, run_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, started);
    sqlite3_bind_text(st, 4, dir, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return db_error(h, rc, "cannot write");
    *run = sqlite3_last_insert_rowid(h->db);
    return 0;
}

int hist_plan_outcome(history *h, int64_t run, const char *test, const char *cls,
                      const char *status, int attempts, int flaky, int64_t duration_ns,
                      uint32_t spec)
{
    if (!h->put_outcome) {
        int rc = sqlite3_prepare_v2(h->db,
                                    "INSERT OR REPLACE INTO outcomes(run, test, class, status, "
                                    "attempts, flaky, duration_ns, spec) "
                                    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                                    -1, &h->put_outcome, NULL);
        if (rc != SQLITE_OK)
            return db_error(h, rc, "cannot write");
    }
    sqlite3_stmt *st = h->put_outcome;
    sqlite3_bind_int64(st, 1, run);
    sqlite3_bind_text(st, 2, test, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, cls ? cls : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, status, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 5, attempts);
    sqlite3_bind_int(st, 6, flaky);
    sqlite3_bind_int64(st, 7, duration_ns);
    sqlite3_bind_int64(st, 8, spec);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_error(h, rc, "cannot write");
}

int hist_plan_prune(history *h, const char *plan)
{
    static const char *const sql[] = {
        /* The plan's runs past its last ATX_HISTORY_RUNS, then the oldest of
         * all past HIST_RUNS_MAX, their outcomes first (by the key's prefix:
         * no scan of the rest). */
        "DELETE FROM outcomes WHERE run IN "
        "(SELECT id FROM runs WHERE plan = ?1 ORDER BY id DESC LIMIT -1 OFFSET ?2)",
        "DELETE FROM runs WHERE id IN "
        "(SELECT id FROM runs WHERE plan = ?1 ORDER BY id DESC LIMIT -1 OFFSET ?2)",
        "DELETE FROM outcomes WHERE run IN "
        "(SELECT id FROM runs ORDER BY id DESC LIMIT -1 OFFSET ?3)",
        "DELETE FROM runs WHERE id IN (SELECT id FROM runs ORDER BY id DESC LIMIT -1 OFFSET ?3)",
    };
    for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); i++) {
        sqlite3_stmt *st;
        int rc = sqlite3_prepare_v2(h->db, sql[i], -1, &st, NULL);
        if (rc != SQLITE_OK)
            return db_error(h, rc, "cannot write");
        int at;
        if ((at = sqlite3_bind_parameter_index(st, "?1")))
            sqlite3_bind_text(st, at, plan, -1, SQLITE_STATIC);
        if ((at = sqlite3_bind_parameter_index(st, "?2")))
            sqlite3_bind_int(st, at, ATX_HISTORY_RUNS);
        if ((at = sqlite3_bind_parameter_index(st, "?3")))
            sqlite3_bind_int(st, at, HIST_RUNS_MAX);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE)
            return db_error(h, rc, "cannot write");
    }
    return 0;
}
