/*
 * The run journal: a SQLite database (WAL) in the results directory holding
 * every test of the run, every attempt started and finished, and every
 * result in full. The aggregator thread commits each batch of events before
 * any aggregator sees it, so a run killed at any moment can be resumed, and
 * its reports rebuilt, from the journal alone.
 *
 * One connection, used by one thread at a time: the main thread while the
 * run is built and loaded, then the aggregator thread. The database is held
 * with an exclusive lock, so a second atx cannot resume a run still going.
 */
#include "journal.h"

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum {
    ST_META_SET,
    ST_META_GET,
    ST_TEST,
    ST_STARTED,
    ST_RESULT,
    ST_SYSTEM,
    ST_COUNT
};

static const char *const statements[ST_COUNT] = {
    [ST_META_SET] = "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
    [ST_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [ST_TEST] = "INSERT INTO tests(id, name) VALUES (?1, ?2)",
    [ST_STARTED] = "INSERT INTO attempts(test, number, system, started_ns) "
                   "VALUES (?1, ?2, ?3, ?4)",
    [ST_RESULT] = "INSERT INTO results(test, subtest, status, note, error_type, attempt, final, "
                  "started_ns, duration_ns, system, exit_code, files, out, out_total, "
                  "err, err_total, outcome, flake_rate, recent, quarantined) VALUES (?1, ?2, ?3, "
                  "?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
    [ST_SYSTEM] = "INSERT OR IGNORE INTO systems(id, labels) VALUES (?1, ?2)",
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS tests(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"
    /* Append-only. An attempt's start is a row here (unless its end was
     * committed with it); its end is its own result, whose outcome says
     * what became of the test. */
    "CREATE TABLE IF NOT EXISTS attempts(test INTEGER NOT NULL, number INTEGER NOT NULL,"
    " system TEXT, started_ns INTEGER);"
    "CREATE TABLE IF NOT EXISTS systems(id TEXT PRIMARY KEY, labels BLOB) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS results(seq INTEGER PRIMARY KEY, test INTEGER NOT NULL,"
    " subtest TEXT, status TEXT NOT NULL, note TEXT, error_type TEXT, attempt INTEGER NOT NULL,"
    " final INTEGER NOT NULL, started_ns INTEGER, duration_ns INTEGER, system TEXT,"
    " exit_code INTEGER, files BLOB, out BLOB, out_total INTEGER, err BLOB, err_total INTEGER,"
    " outcome TEXT, flake_rate REAL, recent TEXT, quarantined INTEGER);";

/* Columns added since the first journals: what the outcome history said of
 * a result (atx_run_annotate()), so `atx report` shows it as the run did. */
static const char *const added_columns[][2] = {
    { "flake_rate", "REAL" },
    { "recent", "TEXT" },
    { "quarantined", "INTEGER" },
};

struct journal {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *st[ST_COUNT];
    /* Systems whose labels are in the journal (open addressing). */
    char **systems;
    size_t sys_cap, sys_len;
};

/* 1 if id was not seen before (and is now), 0 if it was, <0 on OOM. */
static int system_seen_add(journal *j, const char *id)
{
    if (j->sys_len * 2 >= j->sys_cap) {
        size_t cap = j->sys_cap ? j->sys_cap * 2 : 32;
        char **slots = calloc(cap, sizeof(*slots));
        if (!slots)
            return atx_error_oom();
        for (size_t i = 0; i < j->sys_cap; i++) {
            if (!j->systems[i])
                continue;
            size_t k = atx_hash_str(j->systems[i]) & (cap - 1);
            while (slots[k])
                k = (k + 1) & (cap - 1);
            slots[k] = j->systems[i];
        }
        free(j->systems);
        j->systems = slots;
        j->sys_cap = cap;
    }
    size_t k = atx_hash_str(id) & (j->sys_cap - 1);
    for (; j->systems[k]; k = (k + 1) & (j->sys_cap - 1))
        if (strcmp(j->systems[k], id) == 0)
            return 0;
    if (!(j->systems[k] = strdup(id)))
        return atx_error_oom();
    j->sys_len++;
    return 1;
}

const char *jr_path(const journal *j) { return j->path; }

static int db_error(journal *j, int rc, const char *what)
{
    const char *why = j->db ? sqlite3_errmsg(j->db) : sqlite3_errstr(rc);
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        return atx_error_set(ATX_ESTATE, "journal %s is in use by another atx", j->path);
    if (rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT)
        return atx_error_set(ATX_EPARSE, "journal %s is not an atx journal: %s", j->path, why);
    return atx_error_set(ATX_EIO, "journal %s: %s: %s", j->path, what, why);
}

static int exec_sql(journal *j, const char *sql)
{
    int rc = sqlite3_exec(j->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : db_error(j, rc, "cannot write");
}

/* A journal of an older atx (resumed or reported on) gets the columns it lacks. */
static int add_columns(journal *j)
{
    for (size_t i = 0; i < ATX_ARRAY_SIZE(added_columns); i++) {
        char sql[128];
        sqlite3_stmt *st = NULL;
        snprintf(sql, sizeof(sql), "SELECT %s FROM results LIMIT 0", added_columns[i][0]);
        if (sqlite3_prepare_v2(j->db, sql, -1, &st, NULL) == SQLITE_OK) {
            sqlite3_finalize(st);
            continue;
        }
        snprintf(sql, sizeof(sql), "ALTER TABLE results ADD COLUMN %s %s", added_columns[i][0],
                 added_columns[i][1]);
        int r = exec_sql(j, sql);
        if (r < 0)
            return r;
    }
    return 0;
}

int jr_open(const char *dir, int mode, journal **out)
{
    journal *j = calloc(1, sizeof(*j));
    int rc, r;

    if (!j)
        return atx_error_oom();
    if (asprintf(&j->path, "%s/journal.db", dir) < 0) {
        free(j);
        return atx_error_oom();
    }
    if (mode == JR_NEW && access(j->path, F_OK) == 0) {
        /* Not the journal of a run still going: that one holds its lock. */
        sqlite3 *old = NULL;
        int orc = sqlite3_open_v2(j->path, &old, SQLITE_OPEN_READWRITE, NULL);
        if (orc == SQLITE_OK)
            orc = sqlite3_exec(old, "BEGIN EXCLUSIVE", NULL, NULL, NULL);
        sqlite3_close(old);
        if (orc == SQLITE_BUSY || orc == SQLITE_LOCKED) {
            r = atx_error_set(ATX_ESTATE, "%s holds the journal of a run still going (%s): "
                              "use another results folder", dir, j->path);
            jr_close(j);
            return r;
        }
    }
    if (mode == JR_NEW) {
        /* A new run replaces the journal of an earlier one in this folder. */
        static const char *const sfx[] = { "", "-wal", "-shm", "-journal" };
        for (size_t i = 0; i < ATX_ARRAY_SIZE(sfx); i++) {
            char p[4200];
            snprintf(p, sizeof(p), "%s%s", j->path, sfx[i]);
            if (unlink(p) < 0 && errno != ENOENT) {
                r = atx_error_set(-errno, "cannot remove the old journal %s: %s", p,
                                  strerror(errno));
                jr_close(j);
                return r;
            }
        }
    } else if (access(j->path, F_OK) < 0) {
        r = atx_error_set(ATX_ENOTFOUND, "%s holds no atx journal (%s is missing)", dir, j->path);
        jr_close(j);
        return r;
    }
    rc = sqlite3_open_v2(j->path, &j->db,
                         (mode == JR_NEW ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_READWRITE |
                             SQLITE_OPEN_NOMUTEX,
                         NULL);
    if (rc != SQLITE_OK) {
        r = db_error(j, rc, "cannot open");
        jr_close(j);
        return r;
    }
    /* WAL with synchronous=NORMAL: a commit survives the process being
     * killed (it is in the OS's hands); only a power cut may lose the last
     * few, which a resume then runs again. */
    if ((r = exec_sql(j, "PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=WAL;"
                         "PRAGMA synchronous=NORMAL;")) < 0 ||
        (r = exec_sql(j, "BEGIN IMMEDIATE")) < 0 || (r = exec_sql(j, schema)) < 0 ||
        (r = add_columns(j)) < 0 || (r = exec_sql(j, "COMMIT")) < 0) {
        jr_close(j);
        return r;
    }
    for (int i = 0; i < ST_COUNT; i++) {
        rc = sqlite3_prepare_v3(j->db, statements[i], -1, SQLITE_PREPARE_PERSISTENT, &j->st[i],
                                NULL);
        if (rc != SQLITE_OK) {
            r = db_error(j, rc, "cannot read");
            jr_close(j);
            return r;
        }
    }
    *out = j;
    return 0;
}

void jr_close(journal *j)
{
    if (!j)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(j->st[i]);
    for (size_t i = 0; i < j->sys_cap; i++)
        free(j->systems[i]);
    free(j->systems);
    sqlite3_close(j->db);
    free(j->path);
    free(j);
}

int jr_begin(journal *j) { return exec_sql(j, "BEGIN IMMEDIATE"); }

int jr_commit(journal *j)
{
    int r = exec_sql(j, "COMMIT");
    if (r < 0 && !sqlite3_get_autocommit(j->db))
        sqlite3_exec(j->db, "ROLLBACK", NULL, NULL, NULL);
    return r;
}

void jr_rollback(journal *j)
{
    if (!sqlite3_get_autocommit(j->db))
        sqlite3_exec(j->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Step a write statement once and reset it. */
static int step_done(journal *j, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : db_error(j, rc, "cannot write");
}

int jr_meta_set(journal *j, const char *key, const char *value)
{
    sqlite3_stmt *st = j->st[ST_META_SET];
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    return step_done(j, st);
}

char *jr_meta_get(journal *j, const char *key)
{
    sqlite3_stmt *st = j->st[ST_META_GET];
    char *v = NULL;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        v = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return v;
}

void jr_meta_int(journal *j, const char *key, int64_t *out)
{
    char *v = jr_meta_get(j, key);
    if (v)
        *out = strtoll(v, NULL, 10);
    free(v);
}

int jr_add_test(journal *j, int64_t id, const char *name)
{
    sqlite3_stmt *st = j->st[ST_TEST];
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    return step_done(j, st);
}

int jr_started(journal *j, int64_t test, int attempt, const char *system, int64_t when)
{
    sqlite3_stmt *st = j->st[ST_STARTED];
    sqlite3_bind_int64(st, 1, test);
    sqlite3_bind_int(st, 2, attempt);
    sqlite3_bind_text(st, 3, system, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, when);
    return step_done(j, st);
}

/* Strings packed one after another, each ending in NUL. */
static char *pack(size_t n, const char *(*at)(const void *, size_t, int), const void *obj,
                  int per, size_t *len)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < per; k++)
            total += strlen(at(obj, i, k)) + 1;
    char *buf = malloc(total ? total : 1), *p = buf;
    if (!buf)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < per; k++) {
            const char *s = at(obj, i, k);
            size_t l = strlen(s) + 1;
            memcpy(p, s, l);
            p += l;
        }
    }
    *len = total;
    return buf;
}

static const char *file_at(const void *r, size_t i, int k)
{
    (void)k;
    return atx_result_file(r, i);
}

static const char *label_at(const void *l, size_t i, int k)
{
    const char *key = "", *val = "";
    atx_labels_at(l, i, &key, &val);
    return k == 0 ? key : val;
}

/* A system's labels, once per system. */
static int journal_system(journal *j, const char *id, const atx_labels *labels)
{
    sqlite3_stmt *st = j->st[ST_SYSTEM];
    size_t len = 0;
    int r;

    /* Without labels (an attempt atx died under) the system is not marked
     * seen: its labels come with its next result. */
    if (!id || !labels || (r = system_seen_add(j, id)) == 0)
        return 0;
    if (r < 0)
        return r;
    char *lab = labels ? pack(atx_labels_count(labels), label_at, labels, 2, &len) : NULL;
    if (labels && !lab)
        return atx_error_oom();
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if (lab)
        sqlite3_bind_blob(st, 2, lab, (int)len, SQLITE_STATIC);
    r = step_done(j, st);
    free(lab);
    return r;
}

int jr_result(journal *j, int64_t test, const atx_result *r, const char *outcome)
{
    sqlite3_stmt *st = j->st[ST_RESULT];
    size_t flen = 0;
    char *files = pack(atx_result_file_count(r), file_at, r, 1, &flen);
    int code = atx_result_exit_code(r);
    int e;

    if (!files)
        return atx_error_oom();
    if ((e = journal_system(j, atx_result_system_id(r), atx_result_system_labels(r))) < 0) {
        free(files);
        return e;
    }
    sqlite3_bind_int64(st, 1, test);
    sqlite3_bind_text(st, 2, atx_result_subtest(r), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, atx_result_status_word(r), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, atx_result_note(r), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, atx_result_error_type(r), -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 6, atx_result_attempt(r));
    sqlite3_bind_int(st, 7, atx_result_final(r));
    sqlite3_bind_int64(st, 8, atx_result_started(r));
    sqlite3_bind_int64(st, 9, atx_result_duration(r));
    sqlite3_bind_text(st, 10, atx_result_system_id(r), -1, SQLITE_STATIC);
    if (code != ATX_NO_EXIT_CODE)
        sqlite3_bind_int(st, 11, code);
    sqlite3_bind_blob(st, 12, files, (int)flen, SQLITE_STATIC);
    for (int s = 0; s < 2; s++) {
        size_t len = 0;
        uint64_t total = 0;
        const char *d = atx_result_output(r, s == 0 ? ATX_STREAM_STDOUT : ATX_STREAM_STDERR, &len, &total);
        if (d)
            sqlite3_bind_blob64(st, 13 + 2 * s, d, len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 14 + 2 * s, (sqlite3_int64)total);
    }
    sqlite3_bind_text(st, 17, outcome, -1, SQLITE_STATIC);
    if (atx_result_flake_rate(r) >= 0)
        sqlite3_bind_double(st, 18, atx_result_flake_rate(r));
    sqlite3_bind_text(st, 19, atx_result_recent(r), -1, SQLITE_STATIC);
    if (atx_result_quarantined(r))
        sqlite3_bind_int(st, 20, 1);
    e = step_done(j, st);
    free(files);
    return e;
}

/* ---- reading ---- */

static int prepare(journal *j, const char *sql, sqlite3_stmt **st)
{
    int rc = sqlite3_prepare_v2(j->db, sql, -1, st, NULL);
    return rc == SQLITE_OK ? 0 : db_error(j, rc, "cannot read");
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? NULL
                                                     : (const char *)sqlite3_column_text(st, i);
}

int jr_each_test(journal *j, int (*fn)(void *, int64_t, const char *), void *ud)
{
    sqlite3_stmt *st;
    int r, rc;

    if ((r = prepare(j, "SELECT id, name FROM tests ORDER BY id", &st)) < 0)
        return r;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if ((r = fn(ud, sqlite3_column_int64(st, 0), col_text(st, 1))) < 0)
            break;
    if (r == 0 && rc != SQLITE_DONE)
        r = db_error(j, rc, "cannot read");
    sqlite3_finalize(st);
    return r;
}

int jr_each_attempt(journal *j, int (*fn)(void *, const jr_attempt *), void *ud)
{
    sqlite3_stmt *st;
    int r, rc;

    /* An attempt that started and ended in one batch has no start row: its
     * own result has the start and the system. */
    if ((r = prepare(j, "SELECT test, number, max(system), max(outcome), max(started_ns) FROM "
                        "(SELECT test, number, system, NULL AS outcome, started_ns FROM attempts "
                        "UNION ALL SELECT test, attempt, system, outcome, started_ns FROM results "
                        "WHERE outcome IS NOT NULL) GROUP BY test, number ORDER BY test, number",
                     &st)) < 0)
        return r;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        jr_attempt a = {
            .test = sqlite3_column_int64(st, 0),
            .number = sqlite3_column_int(st, 1),
            .system = col_text(st, 2),
            .outcome = col_text(st, 3),
            .started_ns = sqlite3_column_int64(st, 4),
        };
        if ((r = fn(ud, &a)) < 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = db_error(j, rc, "cannot read");
    sqlite3_finalize(st);
    return r;
}

int jr_each_final(journal *j, int (*fn)(void *, const jr_final *), void *ud)
{
    sqlite3_stmt *st;
    int r, rc;

    if ((r = prepare(j, "SELECT test, attempt, status, error_type, duration_ns "
                        "FROM results WHERE final = 1 AND subtest IS NULL ORDER BY seq",
                     &st)) < 0)
        return r;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        jr_final f = {
            .test = sqlite3_column_int64(st, 0),
            .attempt = sqlite3_column_int(st, 1),
            .status = col_text(st, 2),
            .error_type = col_text(st, 3),
            .duration_ns = sqlite3_column_int64(st, 4),
        };
        if ((r = fn(ud, &f)) < 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = db_error(j, rc, "cannot read");
    sqlite3_finalize(st);
    return r;
}

int jr_set_outcome(journal *j, int64_t test, int attempt, const char *outcome)
{
    sqlite3_stmt *st;
    int r;

    if ((r = prepare(j, "UPDATE results SET outcome = ?3 WHERE test = ?1 AND attempt = ?2 "
                        "AND outcome IS NOT NULL", &st)) < 0)
        return r;
    sqlite3_bind_int64(st, 1, test);
    sqlite3_bind_int(st, 2, attempt);
    sqlite3_bind_text(st, 3, outcome, -1, SQLITE_STATIC);
    r = step_done(j, st);
    sqlite3_finalize(st);
    return r;
}

int jr_supersede(journal *j, int64_t test, int attempt, bool drop)
{
    sqlite3_stmt *st;
    int r;
    const char *sql = drop ? "DELETE FROM results WHERE test = ?1 AND attempt = ?2 AND final = 1"
                           : "UPDATE results SET final = 0 WHERE test = ?1 AND attempt = ?2";

    if ((r = prepare(j, sql, &st)) < 0)
        return r;
    sqlite3_bind_int64(st, 1, test);
    sqlite3_bind_int(st, 2, attempt);
    r = step_done(j, st);
    sqlite3_finalize(st);
    return r;
}

int64_t jr_last_seq(journal *j)
{
    sqlite3_stmt *st;
    int64_t seq = 0;
    if (prepare(j, "SELECT max(seq) FROM results", &st) < 0)
        return 0;
    if (sqlite3_step(st) == SQLITE_ROW)
        seq = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return seq;
}

static int set_packed_labels(atx_result *r, const char *system, const char *blob, size_t len)
{
    atx_labels *l = NULL;
    int e;

    if (blob) {
        if ((e = atx_labels_new(&l)) < 0)
            return e;
        for (size_t off = 0; off < len;) {
            const char *k = blob + off;
            size_t kl = strnlen(k, len - off);
            if (off + kl + 1 >= len)
                break;
            const char *v = k + kl + 1;
            size_t vl = strnlen(v, len - off - kl - 1);
            if ((e = atx_labels_set(l, k, v)) < 0) {
                atx_labels_free(l);
                return e;
            }
            off += kl + 1 + vl + 1;
        }
    }
    e = atx_result_set_system(r, system, l);
    atx_labels_free(l);
    return e;
}

int jr_each_result(journal *j, int64_t max_seq, const jr_rebase *rb,
                   int (*fn)(void *, atx_result *), void *ud)
{
    sqlite3_stmt *st;
    int r, rc;

    if ((r = prepare(j,
                     "SELECT t.name, r.subtest, r.status, r.note, r.error_type, r.attempt, "
                     "r.final, r.started_ns, r.duration_ns, r.system, s.labels, r.exit_code, "
                     "r.files, r.out, r.out_total, r.err, r.err_total, r.flake_rate, "
                     "r.recent, r.quarantined FROM results r JOIN tests t ON t.id = r.test "
                     "LEFT JOIN systems s ON s.id = r.system WHERE r.seq <= ?1 "
                     "ORDER BY r.seq",
                     &st)) < 0)
        return r;
    sqlite3_bind_int64(st, 1, max_seq);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        atx_result *res;
        if ((r = atx_result_new(col_text(st, 0), col_text(st, 1), &res)) < 0)
            break;
        atx_result_set_status_word(res, col_text(st, 2));
        atx_result_set_note(res, col_text(st, 3));
        atx_result_set_error_type(res, col_text(st, 4));
        atx_result_set_attempt(res, sqlite3_column_int(st, 5));
        atx_result_set_final(res, sqlite3_column_int(st, 6));
        atx_result_set_times(res, sqlite3_column_int64(st, 7), sqlite3_column_int64(st, 8));
        const char *sys = col_text(st, 9);
        char *relabelled = NULL;
        if (rb && rb->system_label && sys &&
            asprintf(&relabelled, "%s (%s)", sys, rb->system_label) < 0) {
            atx_result_unref(res);
            r = atx_error_oom();
            break;
        }
        r = set_packed_labels(res, relabelled ? relabelled : sys, sqlite3_column_blob(st, 10),
                              (size_t)sqlite3_column_bytes(st, 10));
        free(relabelled);
        if (r == 0 && sqlite3_column_type(st, 11) != SQLITE_NULL)
            r = atx_result_set_exit_code(res, sqlite3_column_int(st, 11));
        const char *files = sqlite3_column_blob(st, 12);
        size_t flen = (size_t)sqlite3_column_bytes(st, 12);
        for (size_t off = 0; r == 0 && files && off < flen;) {
            size_t l = strnlen(files + off, flen - off);
            if (off + l >= flen)
                break;
            if (rb && rb->file_prefix) {
                char *p = NULL;
                r = asprintf(&p, "%s%s", rb->file_prefix, files + off) < 0
                        ? atx_error_oom()
                        : atx_result_add_file(res, p);
                free(p);
            } else {
                r = atx_result_add_file(res, files + off);
            }
            off += l + 1;
        }
        for (int s = 0; r == 0 && s < 2; s++) {
            if (sqlite3_column_type(st, 13 + 2 * s) == SQLITE_NULL)
                continue;
            const char *d = sqlite3_column_blob(st, 13 + 2 * s);
            r = atx_result_set_output(res, s == 0 ? ATX_STREAM_STDOUT : ATX_STREAM_STDERR, d ? d : "",
                                      (size_t)sqlite3_column_bytes(st, 13 + 2 * s),
                                      (uint64_t)sqlite3_column_int64(st, 14 + 2 * s));
        }
        double rate = sqlite3_column_double(st, 17);
        if (r == 0 && sqlite3_column_type(st, 17) != SQLITE_NULL && rate >= 0 && rate <= 1)
            r = atx_result_set_flake_rate(res, rate);
        if (r == 0 && col_text(st, 18))
            r = atx_result_set_recent(res, col_text(st, 18));
        if (r == 0 && sqlite3_column_int(st, 19))
            r = atx_result_set_quarantined(res, 1);
        if (r < 0) {
            atx_result_unref(res);
            break;
        }
        if ((r = fn(ud, res)) < 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
        r = db_error(j, rc, "cannot read");
    sqlite3_finalize(st);
    return r;
}

int jr_count_tests(journal *j, size_t *n)
{
    sqlite3_stmt *st;
    int r;
    if ((r = prepare(j, "SELECT count(*) FROM tests", &st)) < 0)
        return r;
    *n = sqlite3_step(st) == SQLITE_ROW ? (size_t)sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    return 0;
}

size_t jr_count_results(journal *j)
{
    sqlite3_stmt *st;
    size_t n = 0;
    if (prepare(j, "SELECT count(*) FROM results", &st) < 0)
        return 0;
    if (sqlite3_step(st) == SQLITE_ROW)
        n = (size_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}
