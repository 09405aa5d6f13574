/* SQLite persistence for gustd. Every statement is prepared at open into st->stmt[]
 * and reused (bind, step, reset); SQL text is constant and user values are always
 * bound parameters. Times of 0 ("not yet") are stored as NULL. */
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/util.h"

/* ---------- schema ---------- */

/* migrations[i] takes the schema from version i to i + 1. Never edit a shipped entry:
 * append a new one and bump STORE_SCHEMA_VERSION. */
static const char *const migrations[] = {
    "CREATE TABLE apps("
    "  name TEXT PRIMARY KEY NOT NULL,"
    "  state TEXT NOT NULL CHECK (state IN ('deployed','stopped')),"
    "  created_at REAL NOT NULL,"
    "  updated_at REAL NOT NULL);"
    "CREATE TABLE function_versions("
    "  app TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  spec_json TEXT NOT NULL,"
    "  created_at REAL NOT NULL,"
    "  PRIMARY KEY (app, name, version));"
    /* Payload columns last, so reading the small ones never walks blob overflow pages. */
    "CREATE TABLE calls("
    "  id TEXT PRIMARY KEY NOT NULL,"
    "  app TEXT NOT NULL,"
    "  function TEXT NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  state TEXT NOT NULL CHECK (state IN"
    "    ('pending','running','succeeded','failed','timed_out','cancelled')),"
    "  error_code TEXT,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  created_at REAL NOT NULL,"
    "  started_at REAL,"
    "  finished_at REAL,"
    "  next_attempt_at REAL,"
    "  map_id TEXT,"
    "  map_index INTEGER,"
    "  error_message TEXT,"
    "  input BLOB,"
    "  output BLOB);"
    /* Recovery scans only unfinished calls, oldest first; pruning only finished ones. */
    "CREATE INDEX calls_unfinished ON calls(created_at) WHERE state IN ('pending','running');"
    "CREATE INDEX calls_finished ON calls(finished_at) WHERE finished_at IS NOT NULL;"
    "CREATE TABLE containers("
    "  id TEXT PRIMARY KEY NOT NULL,"
    "  app TEXT NOT NULL,"
    "  function TEXT NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  cpu_millicores INTEGER NOT NULL,"
    "  memory_mib INTEGER NOT NULL,"
    "  gpu_type TEXT,"
    "  gpu_count INTEGER NOT NULL,"
    "  started_at REAL NOT NULL,"
    "  ready_at REAL,"
    "  stopped_at REAL,"
    "  busy_s REAL NOT NULL DEFAULT 0,"
    "  inputs_done INTEGER NOT NULL DEFAULT 0,"
    "  stop_reason TEXT);"
    "CREATE INDEX containers_stopped ON containers(stopped_at);"
    "CREATE TABLE kv("
    "  key TEXT PRIMARY KEY NOT NULL,"
    "  value TEXT NOT NULL);"
    "CREATE TABLE logs("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  app TEXT NOT NULL,"
    "  function TEXT NOT NULL,"
    "  container_id TEXT,"
    "  ts REAL NOT NULL,"
    "  stream INTEGER NOT NULL,"
    "  line TEXT NOT NULL);"
    "CREATE INDEX logs_fn ON logs(app, function, id);"
    "CREATE TABLE images("
    "  name TEXT PRIMARY KEY NOT NULL,"
    "  rootfs TEXT NOT NULL,"
    "  host_usr INTEGER NOT NULL,"
    "  created_at REAL NOT NULL);",
};
_Static_assert(ARRAY_LEN(migrations) == STORE_SCHEMA_VERSION, "one migration per schema version");

/* ---------- statements ---------- */

enum stmt_id {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_SAVEPOINT,
    S_RELEASE,
    S_ROLLBACK_TO,
    S_APP_UPSERT,
    S_APP_GET,
    S_APP_LIST,
    S_FN_ADD,
    S_FN_LATEST,
    S_FN_GET,
    S_FN_LIST_LATEST,
    S_CALL_INSERT,
    S_CALL_RUNNING,
    S_CALL_PENDING,
    S_CALL_FINISH,
    S_CALL_GET_META,
    S_CALL_GET_FULL,
    S_CALLS_UNFINISHED,
    S_CALLS_CANCEL_APP,
    S_CALLS_PRUNE,
    S_CTR_START,
    S_CTR_READY,
    S_CTR_UPDATE,
    S_CTR_STOP,
    S_CTR_CLOSE_OPEN,
    S_CTR_USAGE,
    S_CTR_PRUNE,
    S_KV_SET,
    S_KV_GET,
    S_LOG_APPEND,
    S_LOGS_TAIL,
    S_LOGS_AFTER,
    S_LOGS_TRIM,
    S_IMG_PUT,
    S_IMG_GET,
    S_IMG_LIST,
    S_COUNT
};

/* Columns 0..15 of a call row, in the order read_call() expects; the payloads follow. */
#define CALL_COLS                                                                                  \
    "id, app, function, version, state, error_code, attempts, created_at, started_at, finished_at," \
    " next_attempt_at, map_id, map_index, error_message, length(input), length(output)"
enum { CC_INPUT = 16, CC_OUTPUT = 17, CC_ROWID = 18 };

#define CTR_COLS                                                                                 \
    "id, app, function, version, cpu_millicores, memory_mib, gpu_type, gpu_count, started_at," \
    " ready_at, stopped_at, busy_s, inputs_done, stop_reason"

#define UNFINISHED "state IN ('pending','running')"

/* Recovery hands calls to its callback in pages of this many, with no statement
 * active during the callback, so the callback may rewrite those rows. */
#define UNFINISHED_PAGE 64

static const char *const stmt_sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_SAVEPOINT] = "SAVEPOINT gust_nested",
    [S_RELEASE] = "RELEASE gust_nested",
    [S_ROLLBACK_TO] = "ROLLBACK TO gust_nested",

    [S_APP_UPSERT] = "INSERT INTO apps(name, state, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)"
                     " ON CONFLICT(name) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
    [S_APP_GET] = "SELECT state, created_at FROM apps WHERE name = ?1",
    [S_APP_LIST] = "SELECT a.name, a.state, a.created_at,"
                   " (SELECT COUNT(DISTINCT f.name) FROM function_versions f WHERE f.app = a.name)"
                   " FROM apps a ORDER BY a.name",

    [S_FN_ADD] = "INSERT INTO function_versions(app, name, version, spec_json, created_at)"
                 " SELECT ?1, ?2, COALESCE(MAX(version), 0) + 1, ?3, ?4 FROM function_versions"
                 " WHERE app = ?1 AND name = ?2 RETURNING version",
    [S_FN_LATEST] = "SELECT version, spec_json FROM function_versions WHERE app = ?1 AND name = ?2"
                    " ORDER BY version DESC LIMIT 1",
    [S_FN_GET] = "SELECT spec_json FROM function_versions WHERE app = ?1 AND name = ?2 AND version = ?3",
    /* SQLite takes the bare column spec_json from the row that has MAX(version). */
    [S_FN_LIST_LATEST] = "SELECT app, name, MAX(version), spec_json FROM function_versions"
                         " GROUP BY app, name ORDER BY app, name",

    [S_CALL_INSERT] = "INSERT INTO calls(id, app, function, version, state, error_code, attempts, created_at,"
                      " started_at, finished_at, next_attempt_at, map_id, map_index, error_message, input, output)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    [S_CALL_RUNNING] = "UPDATE calls SET state = 'running', attempts = ?2, started_at = ?3,"
                       " next_attempt_at = NULL WHERE id = ?1",
    [S_CALL_PENDING] = "UPDATE calls SET state = 'pending', attempts = ?2, next_attempt_at = ?3 WHERE id = ?1",
    [S_CALL_FINISH] = "UPDATE calls SET state = ?2, output = ?3, error_code = ?4, error_message = ?5,"
                      " finished_at = ?6, next_attempt_at = NULL WHERE id = ?1",
    [S_CALL_GET_META] = "SELECT " CALL_COLS " FROM calls WHERE id = ?1",
    [S_CALL_GET_FULL] = "SELECT " CALL_COLS ", input, output FROM calls WHERE id = ?1",
    /* Keyset pagination over (created_at, rowid); the redundant created_at >= ?1 lets
     * the partial index calls_unfinished seek to the page start. */
    [S_CALLS_UNFINISHED] = "SELECT " CALL_COLS ", input, output, rowid FROM calls WHERE " UNFINISHED
                           " AND created_at >= ?1 AND (created_at > ?1 OR rowid > ?2)"
                           " ORDER BY created_at, rowid LIMIT ?3",
    [S_CALLS_CANCEL_APP] = "UPDATE calls SET state = 'cancelled', error_code = 'cancelled',"
                           " error_message = 'the app was stopped', finished_at = ?2, next_attempt_at = NULL"
                           " WHERE app = ?1 AND " UNFINISHED,
    [S_CALLS_PRUNE] = "DELETE FROM calls WHERE finished_at < ?1 AND state NOT IN ('pending','running')",

    [S_CTR_START] = "INSERT INTO containers(id, app, function, version, cpu_millicores, memory_mib, gpu_type,"
                    " gpu_count, started_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [S_CTR_READY] = "UPDATE containers SET ready_at = ?2 WHERE id = ?1",
    [S_CTR_UPDATE] = "UPDATE containers SET busy_s = ?2, inputs_done = ?3 WHERE id = ?1",
    [S_CTR_STOP] = "UPDATE containers SET stopped_at = ?2, busy_s = ?3, inputs_done = ?4, stop_reason = ?5"
                   " WHERE id = ?1",
    [S_CTR_CLOSE_OPEN] = "UPDATE containers SET stopped_at = MAX(started_at, ?1), stop_reason = ?2"
                         " WHERE stopped_at IS NULL",
    [S_CTR_USAGE] = "SELECT " CTR_COLS " FROM containers WHERE stopped_at IS NULL OR stopped_at >= ?1"
                    " ORDER BY started_at, id",
    [S_CTR_PRUNE] = "DELETE FROM containers WHERE stopped_at < ?1",

    [S_KV_SET] = "INSERT INTO kv(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    [S_KV_GET] = "SELECT value FROM kv WHERE key = ?1",

    [S_LOG_APPEND] = "INSERT INTO logs(app, function, container_id, ts, stream, line) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [S_LOGS_TAIL] = "SELECT id, ts, container_id, stream, line FROM"
                    " (SELECT id, ts, container_id, stream, line FROM logs WHERE app = ?1 AND function = ?2"
                    "  ORDER BY id DESC LIMIT ?3) ORDER BY id",
    [S_LOGS_AFTER] = "SELECT id, ts, container_id, stream, line FROM logs"
                     " WHERE app = ?1 AND function = ?2 AND id > ?3 ORDER BY id LIMIT ?4",
    [S_LOGS_TRIM] = "DELETE FROM logs WHERE id IN (SELECT id FROM"
                    " (SELECT id, row_number() OVER (PARTITION BY app, function ORDER BY id DESC) AS rn FROM logs)"
                    " WHERE rn > ?1)",

    [S_IMG_PUT] = "INSERT INTO images(name, rootfs, host_usr, created_at) VALUES (?1, ?2, ?3, ?4)"
                  " ON CONFLICT(name) DO UPDATE SET rootfs = excluded.rootfs, host_usr = excluded.host_usr",
    [S_IMG_GET] = "SELECT rootfs, host_usr FROM images WHERE name = ?1",
    [S_IMG_LIST] = "SELECT name, rootfs, host_usr, created_at FROM images ORDER BY name",
};

struct store {
    sqlite3 *db;
    int depth; /* open store_begin() levels */
    sqlite3_stmt *stmt[S_COUNT];
};

/* ---------- helpers ---------- */

static int errno_of(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return EBUSY;
    case SQLITE_NOMEM:
        return ENOMEM;
    case SQLITE_FULL:
        return ENOSPC;
    case SQLITE_READONLY:
        return EROFS;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return EACCES;
    case SQLITE_TOOBIG:
        return EMSGSIZE;
    case SQLITE_CONSTRAINT:
        return (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE) ? EEXIST : EINVAL;
    default:
        return EIO;
    }
}

/* Fills *err with "store: <what>: <SQLite message>" and returns the mapped -errno.
 * Reads the message before any reset can replace it. */
static int db_fail(struct store *st, int rc, struct gerr *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int db_fail(struct store *st, int rc, struct gerr *err, const char *fmt, ...)
{
    int code = errno_of(rc);
    if (err) {
        char what[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof what, fmt, ap);
        va_end(ap);
        const char *msg = st && st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc);
        gerr_set(err, code, "store: %s: %s", what, msg);
    }
    return -code;
}

static int not_found(struct gerr *err, const char *what, const char *key)
{
    return gerr_set(err, ENOENT, "store: %s %s not found", what, key);
}

static int callback_stopped(struct gerr *err, int r, const char *what)
{
    if (r >= 0)
        return 0;
    return gerr_set(err, -r, "store: listing %s was stopped by its callback (error %d)", what, -r);
}

/* Hands out a prepared statement. A statement still stepping means a listing's
 * callback re-entered the same listing: refused, since reusing it would reset it. */
static sqlite3_stmt *stmt_take(struct store *st, enum stmt_id id, struct gerr *err)
{
    sqlite3_stmt *s = st->stmt[id];
    if (sqlite3_stmt_busy(s)) {
        gerr_set(err, EBUSY, "store: statement %d re-entered from a callback", (int)id);
        return NULL;
    }
    return s;
}

static void stmt_done(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* Bind helpers: NULL text / zero time / NULL blob become SQL NULL. The text and blob
 * are bound SQLITE_STATIC: the caller's memory must outlive the step, which it does
 * since every statement is stepped and reset before the store function returns. */
static int bind_text(sqlite3_stmt *s, int i, const char *v)
{
    return v ? sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(s, i);
}

static int bind_text_opt(sqlite3_stmt *s, int i, const char *v)
{
    return v && v[0] ? sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(s, i);
}

static int bind_time(sqlite3_stmt *s, int i, double t)
{
    return t != 0 ? sqlite3_bind_double(s, i, t) : sqlite3_bind_null(s, i);
}

static int bind_blob(sqlite3_stmt *s, int i, const void *p, size_t len)
{
    if (!p)
        return sqlite3_bind_null(s, i);
    return sqlite3_bind_blob64(s, i, len ? p : "", len, SQLITE_STATIC);
}

/* Runs a bound write statement (rc: the binding result) to completion. Returns the
 * number of rows changed, or -errno. */
static int run_write(struct store *st, sqlite3_stmt *s, int rc, struct gerr *err, const char *what,
                     const char *key)
{
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    int r = rc == SQLITE_DONE ? sqlite3_changes(st->db) : db_fail(st, rc, err, "%s %s", what, key);
    stmt_done(s);
    return r;
}

/* As run_write, for an UPDATE of one row by key: 0 row changed is -ENOENT. */
static int run_update_one(struct store *st, sqlite3_stmt *s, int rc, struct gerr *err, const char *what,
                          const char *key)
{
    int r = run_write(st, s, rc, err, what, key);
    if (r == 0)
        return not_found(err, what, key);
    return r < 0 ? r : 0;
}

#define BIND(expr)                  \
    do {                            \
        if (rc == SQLITE_OK)        \
            rc = (expr);            \
    } while (0)

static void col_copy(sqlite3_stmt *s, int i, char *dst, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

static double col_time(sqlite3_stmt *s, int i)
{
    return sqlite3_column_type(s, i) == SQLITE_NULL ? 0 : sqlite3_column_double(s, i);
}

/* malloc'd NUL-terminated copy of a text or blob column; NULL for SQL NULL. */
static int col_dup(sqlite3_stmt *s, int i, void **out, size_t *len_out)
{
    *out = NULL;
    if (len_out)
        *len_out = 0;
    if (sqlite3_column_type(s, i) == SQLITE_NULL)
        return 0;
    const void *p = sqlite3_column_blob(s, i);
    size_t n = (size_t)sqlite3_column_bytes(s, i);
    char *copy = malloc(n + 1);
    if (!copy || (!p && n)) {
        free(copy);
        return -ENOMEM;
    }
    if (n)
        memcpy(copy, p, n);
    copy[n] = '\0';
    *out = copy;
    if (len_out)
        *len_out = n;
    return 0;
}

static int col_strdup(sqlite3_stmt *s, int i, char **out)
{
    void *p;
    int r = col_dup(s, i, &p, NULL);
    *out = p;
    return r;
}

static int exec_sql(struct store *st, const char *sql, struct gerr *err, const char *what)
{
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : db_fail(st, rc, err, "%s", what);
}

/* ---------- open / close ---------- */

static int set_wal(struct store *st, struct gerr *err)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, "PRAGMA journal_mode=WAL", -1, &s, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        int r = db_fail(st, rc, err, "enabling WAL");
        sqlite3_finalize(s);
        return r;
    }
    const char *mode = (const char *)sqlite3_column_text(s, 0);
    bool wal = mode && !strcmp(mode, "wal");
    int r = wal ? 0 : gerr_set(err, EIO, "store: the file system refused WAL mode (got %s)", mode ? mode : "?");
    sqlite3_finalize(s);
    return r;
}

static int schema_version(struct store *st, int *out, struct gerr *err)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, "SELECT COALESCE(MAX(version), 0) FROM schema_version", -1, &s, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    int r = rc == SQLITE_ROW ? 0 : db_fail(st, rc, err, "reading the schema version");
    if (r == 0)
        *out = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return r;
}

static int migrate(struct store *st, struct gerr *err)
{
    int r = exec_sql(st,
                     "CREATE TABLE IF NOT EXISTS schema_version("
                     "version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)",
                     err, "creating the schema version table");
    int have = 0;
    if (r < 0 || (r = schema_version(st, &have, err)) < 0)
        return r;
    if (have > STORE_SCHEMA_VERSION)
        return gerr_set(err, EPROTONOSUPPORT,
                        "store: the database has schema version %d, newer than this gustd's %d; "
                        "use a newer gustd or another state directory",
                        have, STORE_SCHEMA_VERSION);
    for (int v = have; v < STORE_SCHEMA_VERSION; v++) {
        char record[128];
        snprintf(record, sizeof record, "INSERT INTO schema_version(version, applied_at) VALUES (%d, %.3f)",
                 v + 1, wall_s());
        if ((r = exec_sql(st, "BEGIN IMMEDIATE", err, "starting a migration")) < 0)
            return r;
        if ((r = exec_sql(st, migrations[v], err, "migrating the schema")) < 0 ||
            (r = exec_sql(st, record, err, "recording the schema version")) < 0 ||
            (r = exec_sql(st, "COMMIT", err, "committing a migration")) < 0) {
            sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
            return gerr_prefix(err, "to version %d", v + 1);
        }
    }
    return 0;
}

int store_open(const char *path, struct store **out, struct gerr *err)
{
    *out = NULL;
    if (!path || !path[0])
        return gerr_set(err, EINVAL, "store: empty database path");
    const char *slash = strrchr(path, '/');
    if (slash && slash != path) {
        AUTO_FREE char *dir = strndup(path, (size_t)(slash - path));
        if (!dir)
            return gerr_set(err, ENOMEM, "store: out of memory");
        int r = mkdir_p(dir, 0700);
        if (r < 0)
            return gerr_sys(err, -r, "store: creating directory %s", dir);
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return gerr_sys(err, errno, "store: opening %s", path);
    close(fd);

    struct store *st = calloc(1, sizeof *st);
    if (!st)
        return gerr_set(err, ENOMEM, "store: out of memory");
    int rc = sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    int r = 0;
    if (rc != SQLITE_OK) {
        r = db_fail(st, rc, err, "opening %s", path);
        goto fail;
    }
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, 5000);
    /* WAL + synchronous=NORMAL: a commit is in the OS page cache when it returns, so it
     * survives the process dying; only a machine crash can lose the last commits. */
    if ((r = set_wal(st, err)) < 0 ||
        (r = exec_sql(st,
                      "PRAGMA synchronous=NORMAL;"
                      "PRAGMA foreign_keys=OFF;"
                      "PRAGMA temp_store=MEMORY;"
                      "PRAGMA cache_size=-8192;"
                      "PRAGMA journal_size_limit=67108864;",
                      err, "setting pragmas")) < 0 ||
        (r = migrate(st, err)) < 0)
        goto fail;
    for (int i = 0; i < S_COUNT; i++) {
        rc = sqlite3_prepare_v3(st->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[i], NULL);
        if (rc != SQLITE_OK) {
            r = db_fail(st, rc, err, "preparing statement %d", i);
            goto fail;
        }
    }
    *out = st;
    return 0;
fail:
    if (err && !strncmp(err->msg, "store: ", 7))
        memmove(err->msg, err->msg + 7, strlen(err->msg + 7) + 1);
    gerr_prefix(err, "store: opening %s", path);
    store_close(st);
    return r;
}

void store_close(struct store *st)
{
    if (!st)
        return;
    if (st->db && !sqlite3_get_autocommit(st->db))
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(st->stmt[i]);
    sqlite3_close(st->db);
    free(st);
}

/* ---------- transactions ---------- */

static int run_simple(struct store *st, enum stmt_id id, struct gerr *err, const char *what)
{
    sqlite3_stmt *s = st->stmt[id];
    int rc = sqlite3_step(s);
    int r = rc == SQLITE_DONE ? 0 : db_fail(st, rc, err, "%s", what);
    sqlite3_reset(s);
    return r;
}

/* SQLite rolls a transaction back by itself after some errors (disk full, I/O, out of
 * memory); then our levels are gone too. */
static bool txn_lost(struct store *st)
{
    return st->depth > 0 && sqlite3_get_autocommit(st->db);
}

int store_begin(struct store *st, struct gerr *err)
{
    if (txn_lost(st))
        st->depth = 0;
    int r = run_simple(st, st->depth ? S_SAVEPOINT : S_BEGIN, err, "beginning a transaction");
    if (r == 0)
        st->depth++;
    return r;
}

/* Undoes and closes the innermost level. */
static void undo_level(struct store *st)
{
    st->depth--;
    if (sqlite3_get_autocommit(st->db)) {
        st->depth = 0;
        return;
    }
    if (st->depth == 0) {
        run_simple(st, S_ROLLBACK, NULL, "rollback");
    } else {
        run_simple(st, S_ROLLBACK_TO, NULL, "rollback to savepoint");
        run_simple(st, S_RELEASE, NULL, "release savepoint");
    }
}

int store_commit(struct store *st, struct gerr *err)
{
    if (st->depth == 0)
        return gerr_set(err, EINVAL, "store: commit without a transaction");
    if (txn_lost(st)) {
        st->depth = 0;
        return gerr_set(err, EIO, "store: the transaction was rolled back after an earlier error");
    }
    int r = run_simple(st, st->depth == 1 ? S_COMMIT : S_RELEASE, err, "committing");
    if (r < 0) {
        undo_level(st);
        return r;
    }
    st->depth--;
    return 0;
}

int store_rollback(struct store *st, struct gerr *err)
{
    if (st->depth > 0)
        undo_level(st);
    return 0;
}

bool store_in_txn(const struct store *st)
{
    return st->depth > 0;
}

/* ---------- apps ---------- */

int store_app_upsert(struct store *st, const char *name, const char *state, double now, struct gerr *err)
{
    sqlite3_stmt *s = stmt_take(st, S_APP_UPSERT, err);
    if (!s)
        return -EBUSY;
    int r = 0;
    int rc = SQLITE_OK;
    BIND(bind_text(s, 1, name));
    BIND(bind_text(s, 2, state));
    BIND(sqlite3_bind_double(s, 3, now));
    r = run_write(st, s, rc, err, "saving app", name ? name : "(null)");
    return r < 0 ? r : 0;
}

int store_app_get(struct store *st, const char *name, char state_out[16], double *created_at, struct gerr *err)
{
    sqlite3_stmt *s = stmt_take(st, S_APP_GET, err);
    if (!s)
        return -EBUSY;
    int r = 0;
    int rc = bind_text(s, 1, name);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        col_copy(s, 0, state_out, 16);
        if (created_at)
            *created_at = col_time(s, 1);
        r = 0;
    } else {
        r = rc == SQLITE_DONE ? not_found(err, "app", name) : db_fail(st, rc, err, "reading app %s", name);
    }
    stmt_done(s);
    return r;
}

int store_app_list(struct store *st, store_app_cb cb, void *ud, struct gerr *err)
{
    sqlite3_stmt *s = stmt_take(st, S_APP_LIST, err);
    if (!s)
        return -EBUSY;
    int r = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        r = cb((const char *)sqlite3_column_text(s, 0), (const char *)sqlite3_column_text(s, 1), col_time(s, 2),
               sqlite3_column_int(s, 3), ud);
        if (r)
            break;
    }
    r = r ? callback_stopped(err, r, "apps") : rc == SQLITE_DONE ? 0 : db_fail(st, rc, err, "listing apps");
    stmt_done(s);
    return r;
}

/* ---------- function versions ---------- */

int store_function_add_version(struct store *st, const char *app, const char *name, const char *spec_json,
                               double now, uint32_t *version_out, struct gerr *err)
{
    sqlite3_stmt *s = stmt_take(st, S_FN_ADD, err);
    if (!s)
        return -EBUSY;
    int r = 0;
    int rc = SQLITE_OK;
    BIND(bind_text(s, 1, app));
    BIND(bind_text(s, 2, name));
    BIND(bind_text(s, 3, spec_json));
    BIND(sqlite3_bind_double(s, 4, now));
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *version_out = (uint32_t)sqlite3_column_int64(s, 0);
        rc = sqlite3_step(s);
    }
    r = rc == SQLITE_DONE ? 0 : db_fail(st, rc, err, "adding a version of %s.%s", app, name);
    stmt_done(s);
    return r;
}

int store_function_latest(struct store *st, const char *app, const char *name, uint32_t *version,
                          char **spec_json, struct gerr *err)
{
    *spec_json = NULL;
    sqlite3_stmt *s = stmt_take(st, S_FN_LATEST, err);
    if (!s)
        return -EBUSY;
    int r = 0;
    int rc = SQLITE_OK;
    BIND(bind_text(s, 1, app));
    BIND(bind_text(s, 2, name));
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *version = (uint32_t)sqlite3_column_int64(s, 0);
        r = col_strdup(s, 1, spec_json) < 0 ? gerr_set(err, ENOMEM, "store: out of memory") : 0;
    } else if (rc == SQLITE_DONE) {
        r = gerr_set(err, ENOENT, "store: function %s.%s not found", app, name);
    } else {
        r = db_fail(st, rc, err, "reading function %s.%s", app, name);
    }
    stmt_done(s);
    return r;
}

int store_function_get_version(struct store *st, const char *app, const char *name, uint32_t version,
                               char **spec_json, struct gerr *err)
{
    *spec_json = NULL;
    sqlite3_stmt *s = stmt_take(st, S_FN_GET, err);
    if (!s)
        return -EBUSY;
    int r = 0;
    int rc = SQLITE_OK;
    BIND(bind_text(s, 1, app));
    BIND(bind_text(s, 2, name));
    BIND(sqlite3_bind_int64(s, 3, version));
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        r = col_strdup(s, 0, spec_json) < 0 ? gerr_set(err, ENOMEM, "store: out of memory") : 0;
    else if (rc == SQLITE_DONE)
        r = gerr_set(err, ENOENT, "store: function %s.%s version %u not found", app, name, version);
    else
        r = db_fail(st, rc, err, "reading function %s.%s version %u", app, name, version);
    stmt_done(s);
    return r;
}

int store_function_list_latest(struct store *st, store_function_cb cb, void *ud, struct gerr *err)
{
    sqlite3_stmt *s = stmt_take(st, S_FN_LIST_LATEST, err);
    if (!s)
        return -EBUSY;
    int r = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        r = cb((const char *)sqlite3_column_text(s, 0), (const char *)sqlite3_column_text(s, 1),
               (uint32_t)sqlite3_column_int64(s, 2), (const char *)sqlite3_column_text(s, 3), ud);
        if (r)
            break;
    }
    r = r ? callback_stopped(err, r, "functions") : rc == SQLITE_DONE ? 0 : db_fail(st, rc, err, "listing functions");
    stmt_done(s);
    return r;
}

/* ---------- calls ---------- */

void store_call_free(struct store_call *c)
{
    free(c->input);
    free(c->output);
    free(c->error_message);
    c->input = NULL;
    c->output = NULL;
    c->error_message = NULL;
}

static bool state_is_final(const char *state)
{
    return state && (!strcmp(state, "succeeded") || !strcmp(state, "failed") || !strcmp(state, "timed_out") ||
                     !strcmp(state, "cancelled"));
}

int store_call_insert(struct store *st, const struct store_call *c, struct gerr *err)
{
    sqlite3_stmt *s = stmt_take(st, S_CALL_INSERT, err);
    if (!s)
        return -EBUSY;
    int r = 0;
    int rc = SQLITE_OK;
    BIND(bind_text(s, 1, c->id));
    BIND(bind_text(s, 2, c->app));
    BIND(bind_text(s, 3, c->function));
    BIND(sqlite3_bind_int64(s, 4, c->version));
    BIND(bind_text(s, 5, c->state));
    BIND(bind_text_opt(s, 6, c->error_code));
    BIND(sqlite3_bind_int64(s, 7, c->attempts));
    BIND(sqlite3_bind_double(s, 8, c->created_at));
    BIND(bind_time(s, 9, c->started_at));
    BIND(bind_time(s, 10, c->finished_at));
    BIND(bind_time(s, 11, c->next_attempt_at));
    BIND(bind_text_opt(s, 12, c->map_id));
    BIND(c->map_index >= 0 ? sqlite3_bind_int64(s, 13, c->map_index) : sqlite3_bind_null(s, 13));
    BIND(bind_text(s, 14, c->error_message));
    BIND(bind_blob(s, 15, c->input, c->input_len));
    BIND(bind_blob(s, 16, c->output, c->output_len));
    r = run_write(st, s, rc, err, "inserting call", c->id);
    return r < 0 ? r : 0;
}

int store_call_set_running(struct store *st, const char *id, uint32_t attempts, double started_at,
                           struct gerr *err)
{
    sqlite3_stmt *s = stmt_take(st, S_CALL_RUNNING, err);
    if (!s)
        return -EBUSY;
    int rc = SQLITE_OK;
    BIND(bind_text(s, 1, id));
    BIND(sqlite3_bind_int64(s, 2, attempts));
    BIND(bind_time(s, 3, started_at));
    return run_update_one(st, s, rc, err, "call", id);
}

int store_call_set_pending(struct store *st, const char *id, uint32_t attempts, double next_attempt_at,
                           struct gerr *err)
{
    sqlite3_stmt *s = stmt_take(st, S_CALL_PENDING, err);
    if (!s)
        return -EBUSY;
    int rc = SQLITE_OK;
    BIND(bind_text(s, 1, id));
    BIND(sqlite3_bind_int64(s, 2, attempts));
    BIND(bind_time(s, 3, next_attempt_at));
    return run_update_one(st, s, rc, err, "call", id);
}

int store_call_finish(struct store *st, const char *id, const char *state, const void *output, size_t output_len,
                      const char *error_code, const char *error_message, double finished_at, struct gerr *err)
{
    if (!state_is_final(state))
        return gerr_set(err, EINVAL, "store: call %s: \"%s\" is not a final state", id, state ? state : "(null)");
    sqlite3_stmt *s = stmt_take(st, S_CALL_FINISH, err);
    if (!s)
        return -EBUSY;
    int rc = SQLITE_OK;
    BIND(bind_text(s, 1, id));
    BIND(bind_text(s, 2, state));
    BIND(bind_blob(s, 3, output, output_len));
    BIND(bind_text_opt(s, 4, error_code));
    BIND(bind_text(s, 5, error_message));
    BIND(bind_time(s, 6, finished_at));
    return run_update_one(st, s, rc, err, "call", id);
}

/* Fills *out from a row of CALL_COLS (+ payload columns when with_payloads). */
static int read_call(sqlite3_stmt *s, struct store_call *out, bool with_payloads)
{
    memset(out, 0, sizeof *out);
    col_copy(s, 0, out->id, sizeof out->id);
    col_copy(s, 1, out->app, sizeof out->app);
    col_copy(s, 2, out->function, sizeof out->function);
    out->version = (uint32_t)sqlite3_column_int64(s, 3);
    col_copy(s, 4, out->state, sizeof out->state);
    col_copy(s, 5, out->error_code, sizeof out->error_code);
    out->attempts = (uint32_t)sqlite3_column_int64(s, 6);
    out->created_at = col_time(s, 7);
    out->started_at = col_time(s, 8);
    out->finished_at = col_time(s, 9);
    out->next_attempt_at = col_time(s, 10);
    col_copy(s, 11, out->map_id, sizeof out->map_id);
    out->map_index = sqlite3_column_type(s, 12) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, 12);
    out->input_len = (size_t)sqlite3_column_int64(s, 14);
    out->output_len = (size_t)sqlite3_column_int64(s, 15);
    if (col_strdup(s, 13, &out->error_message) < 0)
        return -ENOMEM;
    if (with_payloads && (col_dup(s, CC_INPUT, &out->input, &out->input_len) < 0 ||
                          col_dup(s, CC_OUTPUT, &out->output, &out->output_len) < 0)) {
        store_call_free(out);
        return -ENOMEM;
    }
    return 0;
}

int store_call_get(struct store *st, const char *id, struct store_call *out, bool with_payloads, struct gerr *err)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s = stmt_take(st, with_payloads ? S_CALL_GET_FULL : S_CALL_GET_META, err);
    if (!s)
        return -EBUSY;
    int r = 0;
    int rc = bind_text(s, 1, id);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        r = read_call(s, out, with_payloads) < 0 ? gerr_set(err, ENOMEM, "store: out of memory") : 0;
    else
        r = rc == SQLITE_DONE ? not_found(err, "call", id) : db_fail(st, rc, err, "reading call %s", id);
    stmt_done(s);
    return r;
}

int store_calls_unfinished(struct store *st, store_call_cb cb, void *ud, struct gerr *err)
{
    struct store_call *page = calloc(UNFINISHED_PAGE, sizeof *page);
    if (!page)
        return gerr_set(err, ENOMEM, "store: out of memory");
    double after_created = -DBL_MAX;
    int64_t after_rowid = INT64_MIN;
    int r = 0;
    for (;;) {
        sqlite3_stmt *s = stmt_take(st, S_CALLS_UNFINISHED, err);
        if (!s) {
            r = -EBUSY;
            break;
        }
        int rc = SQLITE_OK;
        BIND(sqlite3_bind_double(s, 1, after_created));
        BIND(sqlite3_bind_int64(s, 2, after_rowid));
        BIND(sqlite3_bind_int(s, 3, UNFINISHED_PAGE));
        size_t n = 0;
        while (rc == SQLITE_OK && n < UNFINISHED_PAGE && (rc = sqlite3_step(s)) == SQLITE_ROW) {
            if (read_call(s, &page[n], true) < 0) {
                r = gerr_set(err, ENOMEM, "store: out of memory");
                break;
            }
            after_created = col_time(s, 7);
            after_rowid = sqlite3_column_int64(s, CC_ROWID);
            n++;
            rc = SQLITE_OK;
        }
        if (r == 0 && rc != SQLITE_OK && rc != SQLITE_DONE)
            r = db_fail(st, rc, err, "listing unfinished calls");
        stmt_done(s);
        for (size_t i = 0; i < n; i++) {
            if (r == 0) {
                int cr = cb(&page[i], ud);
                if (cr)
                    r = cr < 0 ? callback_stopped(err, cr, "unfinished calls") : 1;
            }
            store_call_free(&page[i]);
        }
        if (r != 0 || n < UNFINISHED_PAGE)
            break;
    }
    free(page);
    return r < 0 ? r : 0;
}

int store_calls_cancel_app(struct store *st, const char *app, double now, struct gerr *err)
{
    sqlite3_stmt *s = stmt_take(st, S_CALLS_CANCEL_APP, err);
    if (!s)
        return -EBUSY;
    int rc = SQLITE_OK;
    BIND(bind_text(s, 1, app));
    BIND(sqlite3_bind_double(s, 2, now));
    return run_write(st, s, rc, err, "cancelling the calls of app", app);
}

int store_calls_prune(struct store *st, double older_than, struct gerr *err)
{
    sqlite3_stmt *s = stmt_take(st, S_CALLS_PRUNE, err);
    if (!s)
        return -EBUSY;
    return run_write(st, s, sqlite3_bind_double(s, 1, older_than), err, "pruning", "calls");
}

/* ---------- containers ---------- */

int store_container_start(struct store *st, const struct store_container *c, struct gerr *err)
{
    sqlite3_stmt *s = stmt_take(st, S_CTR_START, err);
    if (!s)
        return -EBUSY;
    int r = 0;
    int rc = SQLITE_OK;
    BIND(bind_text(s, 1, c->id));
    BIND(bind_text(s, 2, c->app));
    BIND(bind_text(s, 3, c->function));
    BIND(sqlite3_bind_int64(s, 4, c->version));
    BIND(sqlite3_bind_int64(s, 5, c->cpu_millicores));
    BIND(sqlite3_bind_int64(s, 6, c->memory_mib));
    BIND(bind_text_opt(s, 7, c->gpu_type));
    BIND(sqlite3_bind_int64(s, 8, c->gpu_count));
    BIND(sqlite3_bind_double(s, 9, c->started_at));
    r = run_write(st, s, rc, err, "recording container", c->id);
    return r < 0 ? r : 0;
}

int store_container_ready(struct store *st, const char *id, double ready_at, struct gerr *err)
{
    sqlite3_stmt *s = stmt_take(st, S_CTR_READY, err);
    if (!s)
        return -EBUSY;
    int rc = SQLITE_OK;
    BIND(bind_text(s, 1, id));
    BIND(bind_time(s, 2, ready_at));
    return run_update_one(st, s, rc, err, "container", id);
}

int store_container_update(struct store *st, const char *id, double busy_s, uint64_t inputs_done,
                           struct gerr *err)
{
    sqlite3_stmt *s = stmt_take(st, S_CTR_UPDATE, err);
    if (!s)
        return -EBUSY;
    int rc = SQLITE_OK;
    BIND(bind_text(s, 1, id));
    BIND(sqlite3_bind_double(s, 2, busy_s));
    BIND(sqlite3_bind_int64(s, 3, (sqlite3_int64)inputs_done));
    return run_update_one(st, s, rc, err, "container", id);
}

int store_container_stop(struct store *st, const char *id, double stopped_at, double busy_s,
                         uint64_t inputs_done, const char *reason, struct gerr *err)
{
    sqlite3_stmt *s = stmt_take(st, S_CTR_STOP, err);
    if (!s)
        return -EBUSY;
    int rc = SQLITE_OK;
    BIND(bind_text(s, 1, id));
    BIND(bind_time(s, 2, stopped_at));
    BIND(sqlite3_bind_double(s, 3, busy_s));
    BIND(sqlite3_bind_int64(s, 4, (sqlite3_int64)inputs_done));
    BIND(bind_text_opt(s, 5, reason));
    return run_update_one(st, s, rc, err, "container", id);
}

int store_containers_close_open(struct store *st, double stopped_at, const char *reason, struct gerr *err)
{
    sqlite3_stmt *s = stmt_take(st, S_CTR_CLOSE_OPEN, err);
    if (!s)
        return -EBUSY;
    int rc = SQLITE_OK;
    BIND(sqlite3_bind_double(s, 1, stopped_at));
    BIND(bind_text_opt(s, 2, reason));
    return run_write(st, s, rc, err, "closing open", "containers");
}

int store_usage_rows(struct store *st, double since, store_container_cb cb, void *ud, struct gerr *err)
{
    sqlite3_stmt *s = stmt_take(st, S_CTR_USAGE, err);
    if (!s)
        return -EBUSY;
    int r = 0;
    int rc = sqlite3_bind_double(s, 1, since);
    struct store_container c;
    while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        memset(&c, 0, sizeof c);
        col_copy(s, 0, c.id, sizeof c.id);
        col_copy(s, 1, c.app, sizeof c.app);
        col_copy(s, 2, c.function, sizeof c.function);
        c.version = (uint32_t)sqlite3_column_int64(s, 3);
        c.cpu_millicores = (uint32_t)sqlite3_column_int64(s, 4);
        c.memory_mib = (uint32_t)sqlite3_column_int64(s, 5);
        col_copy(s, 6, c.gpu_type, sizeof c.gpu_type);
        c.gpu_count = (uint32_t)sqlite3_column_int64(s, 7);
        c.started_at = col_time(s, 8);
        c.ready_at = col_time(s, 9);
        c.stopped_at = col_time(s, 10);
        c.busy_s = sqlite3_column_double(s, 11);
        c.inputs_done = (uint64_t)sqlite3_column_int64(s, 12);
        col_copy(s, 13, c.stop_reason, sizeof c.stop_reason);
        r = cb(&c, ud);
        if (r)
            break;
        rc = SQLITE_OK;
    }
    r = r ? callback_stopped(err, r, "containers")
          : (rc == SQLITE_DONE || rc == SQLITE_OK) ? 0 : db_fail(st, rc, err, "listing containers");
    stmt_done(s);
    return r;
}

int store_containers_prune(struct store *st, double older_than, struct gerr *err)
{
    sqlite3_stmt *s = stmt_take(st, S_CTR_PRUNE, err);
    if (!s)
        return -EBUSY;
    return run_write(st, s, sqlite3_bind_double(s, 1, older_than), err, "pruning", "containers");
}

/* ---------- key/value ---------- */

int store_kv_set(struct store *st, const char *key, const char *value, struct gerr *err)
{
    sqlite3_stmt *s = stmt_take(st, S_KV_SET, err);
    if (!s)
        return -EBUSY;
    int r = 0;
    int rc = SQLITE_OK;
    BIND(bind_text(s, 1, key));
    BIND(bind_text(s, 2, value));
    r = run_write(st, s, rc, err, "setting key", key);
    return r < 0 ? r : 0;
}

int store_kv_get(struct store *st, const char *key, char **value, struct gerr *err)
{
    *value = NULL;
    sqlite3_stmt *s = stmt_take(st, S_KV_GET, err);
    if (!s)
        return -EBUSY;
    int r = 0;
    int rc = bind_text(s, 1, key);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        r = col_strdup(s, 0, value) < 0 ? gerr_set(err, ENOMEM, "store: out of memory") : 0;
    else
        r = rc == SQLITE_DONE ? not_found(err, "key", key) : db_fail(st, rc, err, "reading key %s", key);
    stmt_done(s);
    return r;
}

/* ---------- logs ---------- */

int store_log_append(struct store *st, const char *app, const char *function, const char *container_id,
                     double ts, int stream, const char *line, size_t len, struct gerr *err)
{
    sqlite3_stmt *s = stmt_take(st, S_LOG_APPEND, err);
    if (!s)
        return -EBUSY;
    int r = 0;
    int rc = SQLITE_OK;
    BIND(bind_text(s, 1, app));
    BIND(bind_text(s, 2, function));
    BIND(bind_text_opt(s, 3, container_id));
    BIND(sqlite3_bind_double(s, 4, ts));
    BIND(sqlite3_bind_int(s, 5, stream));
    BIND(sqlite3_bind_text64(s, 6, line ? line : "", line ? len : 0, SQLITE_STATIC, SQLITE_UTF8));
    r = run_write(st, s, rc, err, "appending a log line of", function);
    return r < 0 ? r : 0;
}

/* Steps a bound log query (rc: the binding result), feeding rows to cb. */
static int log_rows(struct store *st, sqlite3_stmt *s, int rc, store_log_cb cb, void *ud, struct gerr *err)
{
    int r = 0;
    while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        const unsigned char *cid = sqlite3_column_text(s, 2);
        const char *line = (const char *)sqlite3_column_text(s, 4);
        size_t len = (size_t)sqlite3_column_bytes(s, 4);
        r = cb(sqlite3_column_int64(s, 0), sqlite3_column_double(s, 1), cid ? (const char *)cid : "",
               sqlite3_column_int(s, 3), line ? line : "", line ? len : 0, ud);
        if (r)
            break;
        rc = SQLITE_OK;
    }
    r = r ? callback_stopped(err, r, "logs")
          : (rc == SQLITE_DONE || rc == SQLITE_OK) ? 0 : db_fail(st, rc, err, "reading logs");
    stmt_done(s);
    return r;
}

int store_logs_tail(struct store *st, const char *app, const char *function, int limit, store_log_cb cb,
                    void *ud, struct gerr *err)
{
    sqlite3_stmt *s = stmt_take(st, S_LOGS_TAIL, err);
    if (!s)
        return -EBUSY;
    int rc = SQLITE_OK;
    BIND(bind_text(s, 1, app));
    BIND(bind_text(s, 2, function));
    BIND(sqlite3_bind_int(s, 3, limit < 0 ? -1 : limit));
    return log_rows(st, s, rc, cb, ud, err);
}

int store_logs_after(struct store *st, const char *app, const char *function, int64_t after_id, int limit,
                     store_log_cb cb, void *ud, struct gerr *err)
{
    sqlite3_stmt *s = stmt_take(st, S_LOGS_AFTER, err);
    if (!s)
        return -EBUSY;
    int rc = SQLITE_OK;
    BIND(bind_text(s, 1, app));
    BIND(bind_text(s, 2, function));
    BIND(sqlite3_bind_int64(s, 3, after_id));
    BIND(sqlite3_bind_int(s, 4, limit < 0 ? -1 : limit));
    return log_rows(st, s, rc, cb, ud, err);
}

int store_logs_trim(struct store *st, int64_t keep_per_function, struct gerr *err)
{
    sqlite3_stmt *s = stmt_take(st, S_LOGS_TRIM, err);
    if (!s)
        return -EBUSY;
    return run_write(st, s, sqlite3_bind_int64(s, 1, keep_per_function < 0 ? 0 : keep_per_function), err,
                     "trimming", "logs");
}

/* ---------- images ---------- */

int store_image_put(struct store *st, const char *name, const char *rootfs, bool host_usr, double now,
                    struct gerr *err)
{
    sqlite3_stmt *s = stmt_take(st, S_IMG_PUT, err);
    if (!s)
        return -EBUSY;
    int r = 0;
    int rc = SQLITE_OK;
    BIND(bind_text(s, 1, name));
    BIND(bind_text(s, 2, rootfs));
    BIND(sqlite3_bind_int(s, 3, host_usr));
    BIND(sqlite3_bind_double(s, 4, now));
    r = run_write(st, s, rc, err, "saving image", name);
    return r < 0 ? r : 0;
}

int store_image_get(struct store *st, const char *name, char **rootfs, bool *host_usr, struct gerr *err)
{
    *rootfs = NULL;
    sqlite3_stmt *s = stmt_take(st, S_IMG_GET, err);
    if (!s)
        return -EBUSY;
    int r = 0;
    int rc = bind_text(s, 1, name);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        r = col_strdup(s, 0, rootfs) < 0 ? gerr_set(err, ENOMEM, "store: out of memory") : 0;
        if (host_usr)
            *host_usr = sqlite3_column_int(s, 1) != 0;
    } else {
        r = rc == SQLITE_DONE ? not_found(err, "image", name) : db_fail(st, rc, err, "reading image %s", name);
    }
    stmt_done(s);
    return r;
}

int store_image_list(struct store *st, store_image_cb cb, void *ud, struct gerr *err)
{
    sqlite3_stmt *s = stmt_take(st, S_IMG_LIST, err);
    if (!s)
        return -EBUSY;
    int r = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        r = cb((const char *)sqlite3_column_text(s, 0), (const char *)sqlite3_column_text(s, 1),
               sqlite3_column_int(s, 2) != 0, col_time(s, 3), ud);
        if (r)
            break;
    }
    r = r ? callback_stopped(err, r, "images") : rc == SQLITE_DONE ? 0 : db_fail(st, rc, err, "listing images");
    stmt_done(s);
    return r;
}
