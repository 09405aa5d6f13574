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
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/util.h"
#include "base/xalloc.h"

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
    /* 2: per-container accounting. */
    "ALTER TABLE containers ADD COLUMN cpu_s REAL NOT NULL DEFAULT 0;"
    "ALTER TABLE containers ADD COLUMN memory_peak_mib REAL NOT NULL DEFAULT 0;"
    "ALTER TABLE containers ADD COLUMN oom_kills INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE containers ADD COLUMN gpu_util_avg REAL NOT NULL DEFAULT 0;"
    "ALTER TABLE containers ADD COLUMN gpu_mem_peak_mib REAL NOT NULL DEFAULT 0;",
    /* 3: images live in the content-addressed store; id = manifest digest. */
    "ALTER TABLE images ADD COLUMN id TEXT;",
    /* 4: the image build cache: step id -> the image it produced. */
    "CREATE TABLE build_steps("
    "  step_id TEXT PRIMARY KEY NOT NULL,"
    "  parent_id TEXT NOT NULL,"
    "  image_id TEXT NOT NULL,"
    "  created_at REAL NOT NULL);",
    /* 5: secrets: named sets of environment variables (env_json: a JSON object). */
    "CREATE TABLE secrets("
    "  name TEXT PRIMARY KEY NOT NULL,"
    "  env_json TEXT NOT NULL,"
    "  created_at REAL NOT NULL,"
    "  updated_at REAL NOT NULL);",
    /* 6: the call whose code printed a log line ('' when not known). */
    "ALTER TABLE logs ADD COLUMN call_id TEXT NOT NULL DEFAULT '';",
    /* 7: trimming one function's finished calls, newest kept (store_calls_trim_fn). */
    "CREATE INDEX calls_fn_finished ON calls(app, function, finished_at) WHERE finished_at IS NOT NULL;",
    /* 8: identity. Workspaces (quotas_json: a JSON object of limits), tokens (hash: hex
     * SHA-256 of the secret part; the secret itself is never stored), which workspace
     * uploaded which blob or tree (so that no answer reveals another's). Every name
     * control keys by becomes "<workspace>/<name>": what existed belongs to "default".
     * The images "busybox" and "python" stay global: recovery registers them under
     * those names on every start. */
    "CREATE TABLE workspaces("
    "  name TEXT PRIMARY KEY NOT NULL,"
    "  created_at REAL NOT NULL,"
    "  quotas_json TEXT NOT NULL DEFAULT '{}');"
    "CREATE TABLE tokens("
    "  id TEXT PRIMARY KEY NOT NULL,"
    "  hash TEXT NOT NULL,"
    "  workspace TEXT NOT NULL,"
    "  role TEXT NOT NULL CHECK (role IN ('admin','developer','invoker')),"
    "  name TEXT NOT NULL DEFAULT '',"
    "  created_at REAL NOT NULL,"
    "  expires_at REAL);"
    "CREATE TABLE blob_owners("
    "  workspace TEXT NOT NULL,"
    "  digest TEXT NOT NULL,"
    "  bytes INTEGER NOT NULL,"
    "  PRIMARY KEY (workspace, digest)) WITHOUT ROWID;"
    "UPDATE apps SET name = 'default/' || name;"
    "UPDATE function_versions SET app = 'default/' || app;"
    "UPDATE calls SET app = 'default/' || app;"
    "UPDATE containers SET app = 'default/' || app;"
    "UPDATE logs SET app = 'default/' || app;"
    "UPDATE secrets SET name = 'default/' || name;"
    "UPDATE images SET name = 'default/' || name WHERE name NOT IN ('busybox', 'python');",
    /* 9: keep-alive histories (control's keepalive.c encoding), so that an adaptive
     * policy does not start from nothing after a restart. */
    "CREATE TABLE keepalive("
    "  app TEXT NOT NULL,"
    "  function TEXT NOT NULL,"
    "  policy TEXT NOT NULL,"
    "  history BLOB NOT NULL,"
    "  updated_at REAL NOT NULL,"
    "  PRIMARY KEY (app, function)) WITHOUT ROWID;",
    /* 10: an app's lines numbered in the order they were printed (seq, assigned by
     * control), so that a client follows all of an app's functions from a cursor
     * without missing a line (GET /v1/apps/{app}/logs); and whether other calls of the
     * function ran at the same time (gust run then names the call). */
    "ALTER TABLE logs ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE logs ADD COLUMN concurrent INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX logs_app_seq ON logs(app, seq);",
    /* 11: schedules (control's schedule.c): when each scheduled function fires next
     * and its latest fires, written with each fire's call so a restart doubles none. */
    "CREATE TABLE schedules("
    "  app TEXT NOT NULL,"
    "  function TEXT NOT NULL,"
    "  spec TEXT NOT NULL,"
    "  next_at REAL NOT NULL,"
    "  last_runs TEXT NOT NULL,"
    "  PRIMARY KEY (app, function)) WITHOUT ROWID;",
    /* 12: dicts and queues (control's kv.c): named objects of a workspace (name
     * "<workspace>/<name>"), a dict's entries keyed by the client's serialised key, a
     * queue's items by partition ('' the default one) in the order they were put (id). */
    "CREATE TABLE kv_objects("
    "  kind TEXT NOT NULL CHECK (kind IN ('dict','queue')),"
    "  name TEXT NOT NULL,"
    "  created_at REAL NOT NULL,"
    "  PRIMARY KEY (kind, name)) WITHOUT ROWID;"
    "CREATE TABLE dict_entries("
    "  dict TEXT NOT NULL,"
    "  key BLOB NOT NULL,"
    "  value BLOB NOT NULL,"
    "  PRIMARY KEY (dict, key)) WITHOUT ROWID;"
    "CREATE TABLE queue_items("
    "  id INTEGER PRIMARY KEY,"
    "  queue TEXT NOT NULL,"
    "  partition TEXT NOT NULL,"
    "  value BLOB NOT NULL);"
    "CREATE INDEX queue_items_order ON queue_items(queue, partition, id);",
    /* 13: a queue's partitions that hold
     * items, with their count (a put checks the 5,000-item bound without counting the
     * partition's items, and len reads one row) and their expiry (Modal's
     * partition_ttl: removed when not put into for ttl seconds; 24 hours for the
     * items already there, as Modal's default). */
    "CREATE TABLE queue_partitions("
    "  queue TEXT NOT NULL,"
    "  partition TEXT NOT NULL,"
    "  items INTEGER NOT NULL,"
    "  ttl REAL NOT NULL,"
    "  expires_at REAL NOT NULL,"
    "  PRIMARY KEY (queue, partition)) WITHOUT ROWID;"
    "CREATE INDEX queue_partitions_expiry ON queue_partitions(expires_at);"
    "INSERT INTO queue_partitions(queue, partition, items, ttl, expires_at)"
    "  SELECT queue, partition, COUNT(*), 86400, (julianday('now') - 2440587.5) * 86400 + 86400"
    "  FROM queue_items GROUP BY queue, partition;"
    /* ... and functions a deploy retired (its spec no longer had them): the time is set
     * on their latest version, so that a later deploy of the name (a new version)
     * brings the function back. */
    "ALTER TABLE function_versions ADD COLUMN retired_at REAL;",
    /* 14: volumes (control's volumes.c): a named tree of a workspace (name
     * "<workspace>/<name>"), its current version number and that version's manifest
     * in the object store ("sha256:<hex>"), replaced together at each commit. */
    "CREATE TABLE volumes("
    "  name TEXT PRIMARY KEY,"
    "  version INTEGER NOT NULL,"
    "  manifest TEXT NOT NULL,"
    "  created_at REAL NOT NULL,"
    "  updated_at REAL NOT NULL) WITHOUT ROWID;",
    /* 15: a finished call's timeline (control's calls.c: JSON text, docs/API.md "Call
     * timelines"), written with its final state in the same row update. */
    "ALTER TABLE calls ADD COLUMN timeline TEXT;",
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
    S_FN_RETIRE,
    S_CALL_INSERT,
    S_CALL_RUNNING,
    S_CALL_PENDING,
    S_CALL_FINISH,
    S_CALL_GET_META,
    S_CALL_GET_FULL,
    S_CALLS_UNFINISHED,
    S_CALLS_CANCEL_APP,
    S_CALLS_PRUNE,
    S_CALLS_TRIM_FN,
    S_CALLS_RECENT,
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
    S_LOGS_FIND,
    S_LOGS_AFTER,
    S_LOGS_TRIM_FN,
    S_LOGS_APP_AFTER,
    S_LOGS_APP_SEQ,
    S_IMG_PUT,
    S_IMG_GET,
    S_IMG_LIST,
    S_IMG_DELETE,
    S_STEP_PUT,
    S_STEP_LIST,
    S_STEP_DELETE,
    S_SECRET_PUT,
    S_SECRET_LIST,
    S_SECRET_DELETE,
    S_WS_PUT,
    S_WS_QUOTAS,
    S_WS_LIST,
    S_TOKEN_PUT,
    S_TOKEN_DELETE,
    S_TOKEN_LIST,
    S_BLOB_OWN,
    S_BLOB_OWNED,
    S_WS_STORED,
    S_KA_PUT,
    S_KA_LIST,
    S_SCHED_PUT,
    S_SCHED_DELETE,
    S_SCHED_LIST,
    S_KVOBJ_CREATE,
    S_KVOBJ_EXISTS,
    S_KVOBJ_DELETE,
    S_KVOBJ_LIST,
    S_DICT_GET,
    S_DICT_PUT,
    S_DICT_PUT_NEW,
    S_DICT_DELETE,
    S_DICT_COUNT,
    S_DICT_LIST,
    S_DICT_CLEAR,
    S_QUEUE_PUSH,
    S_QUEUE_LIST,
    S_QUEUE_REMOVE_UPTO,
    S_QUEUE_CLEAR,
    S_QUEUE_CLEAR_ALL,
    S_QPART_GET,
    S_QPART_PUT,
    S_QPART_TAKE,
    S_QPART_DROP_EMPTY,
    S_QPART_CLEAR,
    S_QPART_CLEAR_ALL,
    S_QPART_SUM,
    S_QPART_EXPIRED,
    S_VOL_CREATE,
    S_VOL_GET,
    S_VOL_SET,
    S_VOL_DELETE,
    S_VOL_LIST,
    S_VOL_ALL,
    S_COUNT
};

/* Columns 0..16 of a call row, in the order read_call() expects; the payloads follow. */
#define CALL_COLS                                                                                  \
    "id, app, function, version, state, error_code, attempts, created_at, started_at, finished_at," \
    " next_attempt_at, map_id, map_index, error_message, length(input), length(output), timeline"
enum { CC_TIMELINE = 16, CC_INPUT = 17, CC_OUTPUT = 18, CC_ROWID = 19 };

#define CTR_COLS                                                                                 \
    "id, app, function, version, cpu_millicores, memory_mib, gpu_type, gpu_count, started_at," \
    " ready_at, stopped_at, busy_s, inputs_done, stop_reason, cpu_s, memory_peak_mib, oom_kills," \
    " gpu_util_avg, gpu_mem_peak_mib"

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
    /* SQLite takes the bare columns spec_json and retired_at from the row that has
     * MAX(version); a function whose latest version was retired is left out. */
    [S_FN_LIST_LATEST] = "SELECT app, name, version, spec_json FROM"
                         " (SELECT app, name, MAX(version) AS version, spec_json, retired_at FROM function_versions"
                         "  GROUP BY app, name) WHERE retired_at IS NULL ORDER BY app, name",
    [S_FN_RETIRE] = "UPDATE function_versions SET retired_at = ?3 WHERE app = ?1 AND name = ?2 AND version ="
                    " (SELECT MAX(version) FROM function_versions WHERE app = ?1 AND name = ?2)",

    [S_CALL_INSERT] = "INSERT INTO calls(id, app, function, version, state, error_code, attempts, created_at,"
                      " started_at, finished_at, next_attempt_at, map_id, map_index, error_message, input, output)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    [S_CALL_RUNNING] = "UPDATE calls SET state = 'running', attempts = ?2, started_at = ?3,"
                       " next_attempt_at = NULL WHERE id = ?1",
    [S_CALL_PENDING] = "UPDATE calls SET state = 'pending', attempts = ?2, next_attempt_at = ?3 WHERE id = ?1",
    [S_CALL_FINISH] = "UPDATE calls SET state = ?2, output = ?3, error_code = ?4, error_message = ?5,"
                      " finished_at = ?6, next_attempt_at = NULL, timeline = ?7 WHERE id = ?1",
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
    /* The newest finished calls of a function, by the index calls_fn_finished. */
    [S_CALLS_RECENT] = "SELECT " CALL_COLS " FROM calls WHERE app = ?1 AND function = ?2"
                       " AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT ?3",
    [S_CALLS_TRIM_FN] = "DELETE FROM calls WHERE app = ?1 AND function = ?2 AND finished_at IS NOT NULL"
                        " AND finished_at <= (SELECT finished_at FROM calls WHERE app = ?1 AND function = ?2"
                        " AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT 1 OFFSET ?3)"
                        " AND state NOT IN ('pending','running')",

    [S_CTR_START] = "INSERT INTO containers(id, app, function, version, cpu_millicores, memory_mib, gpu_type,"
                    " gpu_count, started_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [S_CTR_READY] = "UPDATE containers SET ready_at = ?2 WHERE id = ?1",
    [S_CTR_UPDATE] = "UPDATE containers SET busy_s = ?2, inputs_done = ?3 WHERE id = ?1",
    [S_CTR_STOP] = "UPDATE containers SET stopped_at = ?2, busy_s = ?3, inputs_done = ?4, stop_reason = ?5,"
                   " cpu_s = ?6, memory_peak_mib = ?7, oom_kills = ?8, gpu_util_avg = ?9, gpu_mem_peak_mib = ?10"
                   " WHERE id = ?1",
    [S_CTR_CLOSE_OPEN] = "UPDATE containers SET stopped_at = MAX(started_at, ?1), stop_reason = ?2"
                         " WHERE stopped_at IS NULL",
    [S_CTR_USAGE] = "SELECT " CTR_COLS " FROM containers WHERE stopped_at IS NULL OR stopped_at >= ?1"
                    " ORDER BY started_at, id",
    [S_CTR_PRUNE] = "DELETE FROM containers WHERE stopped_at < ?1",

    [S_KV_SET] = "INSERT INTO kv(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    [S_KV_GET] = "SELECT value FROM kv WHERE key = ?1",

    [S_LOG_APPEND] = "INSERT INTO logs(app, function, container_id, ts, stream, line, call_id, seq, concurrent)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [S_LOGS_TAIL] = "SELECT id, ts, container_id, stream, line, call_id FROM"
                    " (SELECT id, ts, container_id, stream, line, call_id FROM logs WHERE app = ?1 AND function = ?2"
                    "  ORDER BY id DESC LIMIT ?3) ORDER BY id",
    /* The filtered tail: among the newest ?4 lines of the function (the bound on what
     * one request scans, by the index logs_fn), the last ?3 that match. */
    [S_LOGS_FIND] = "SELECT id, ts, container_id, stream, line, call_id FROM"
                    " (SELECT id, ts, container_id, stream, line, call_id FROM logs WHERE app = ?1 AND function = ?2"
                    "  AND id >= COALESCE((SELECT id FROM logs WHERE app = ?1 AND function = ?2"
                    "   ORDER BY id DESC LIMIT 1 OFFSET ?4), 0)"
                    "  AND ts >= ?5 AND ts < ?6 AND (?7 IS NULL OR instr(line, ?7) > 0)"
                    "  AND (?8 IS NULL OR call_id = ?8) AND (?9 IS NULL OR container_id = ?9)"
                    "  ORDER BY id DESC LIMIT ?3) ORDER BY id",
    [S_LOGS_AFTER] = "SELECT id, ts, container_id, stream, line, call_id FROM logs"
                     " WHERE app = ?1 AND function = ?2 AND id > ?3 ORDER BY id LIMIT ?4",
    [S_LOGS_TRIM_FN] = "DELETE FROM logs WHERE app = ?1 AND function = ?2 AND id <= (SELECT id FROM logs"
                       " WHERE app = ?1 AND function = ?2 ORDER BY id DESC LIMIT 1 OFFSET ?3)",
    [S_LOGS_APP_AFTER] = "SELECT function, seq, ts, container_id, call_id, stream, concurrent, line FROM logs"
                         " WHERE app = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    [S_LOGS_APP_SEQ] = "SELECT COALESCE(MAX(seq), 0) FROM logs WHERE app = ?1",

    [S_IMG_PUT] = "INSERT INTO images(name, rootfs, host_usr, created_at, id) VALUES (?1, ?2, ?3, ?4, ?5)"
                  " ON CONFLICT(name) DO UPDATE SET rootfs = excluded.rootfs, host_usr = excluded.host_usr,"
                  " id = excluded.id",
    [S_IMG_GET] = "SELECT rootfs, host_usr FROM images WHERE name = ?1",
    [S_IMG_LIST] = "SELECT name, rootfs, host_usr, created_at, id FROM images ORDER BY name",
    [S_IMG_DELETE] = "DELETE FROM images WHERE name = ?1",
    [S_STEP_PUT] = "INSERT OR REPLACE INTO build_steps(step_id, parent_id, image_id, created_at) VALUES (?1, ?2, ?3, ?4)",
    [S_STEP_LIST] = "SELECT step_id, parent_id, image_id FROM build_steps",
    [S_STEP_DELETE] = "DELETE FROM build_steps WHERE step_id = ?1",
    [S_SECRET_PUT] = "INSERT INTO secrets(name, env_json, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)"
                     " ON CONFLICT(name) DO UPDATE SET env_json = excluded.env_json, updated_at = excluded.updated_at",
    [S_SECRET_LIST] = "SELECT name, env_json, created_at, updated_at FROM secrets ORDER BY name",
    [S_SECRET_DELETE] = "DELETE FROM secrets WHERE name = ?1",
    [S_WS_PUT] = "INSERT INTO workspaces(name, created_at, quotas_json) VALUES (?1, ?2, ?3)",
    [S_WS_QUOTAS] = "UPDATE workspaces SET quotas_json = ?2 WHERE name = ?1",
    [S_WS_LIST] = "SELECT name, created_at, quotas_json FROM workspaces ORDER BY name",
    [S_TOKEN_PUT] = "INSERT INTO tokens(id, hash, workspace, role, name, created_at, expires_at)"
                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [S_TOKEN_DELETE] = "DELETE FROM tokens WHERE id = ?1",
    [S_TOKEN_LIST] = "SELECT id, hash, workspace, role, name, created_at, expires_at FROM tokens ORDER BY created_at",
    [S_BLOB_OWN] = "INSERT OR IGNORE INTO blob_owners(workspace, digest, bytes) VALUES (?1, ?2, ?3)",
    [S_BLOB_OWNED] = "SELECT 1 FROM blob_owners WHERE workspace = ?1 AND digest = ?2",
    [S_WS_STORED] = "SELECT COALESCE(SUM(bytes), 0) FROM blob_owners WHERE workspace = ?1",
    [S_KA_PUT] = "INSERT INTO keepalive(app, function, policy, history, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)"
                 " ON CONFLICT(app, function) DO UPDATE SET policy = ?3, history = ?4, updated_at = ?5",
    [S_KA_LIST] = "SELECT app, function, policy, history FROM keepalive",
    [S_SCHED_PUT] = "INSERT INTO schedules(app, function, spec, next_at, last_runs) VALUES (?1, ?2, ?3, ?4, ?5)"
                    " ON CONFLICT(app, function) DO UPDATE SET spec = ?3, next_at = ?4, last_runs = ?5",
    [S_SCHED_DELETE] = "DELETE FROM schedules WHERE app = ?1 AND function = ?2",
    [S_SCHED_LIST] = "SELECT app, function, spec, next_at, last_runs FROM schedules",

    [S_KVOBJ_CREATE] = "INSERT OR IGNORE INTO kv_objects(kind, name, created_at) VALUES (?1, ?2, ?3)",
    [S_KVOBJ_EXISTS] = "SELECT created_at FROM kv_objects WHERE kind = ?1 AND name = ?2",
    [S_KVOBJ_DELETE] = "DELETE FROM kv_objects WHERE kind = ?1 AND name = ?2",
    /* ?2 is "<workspace>/": substr, not LIKE, whose wildcards a name may contain. */
    [S_KVOBJ_LIST] = "SELECT o.name, o.created_at, CASE o.kind"
                     " WHEN 'dict' THEN (SELECT COUNT(*) FROM dict_entries d WHERE d.dict = o.name)"
                     " ELSE (SELECT COALESCE(SUM(p.items), 0) FROM queue_partitions p"
                     "       WHERE p.queue = o.name AND p.expires_at > ?3) END"
                     " FROM kv_objects o WHERE o.kind = ?1 AND substr(o.name, 1, length(?2)) = ?2 ORDER BY o.name",
    [S_DICT_GET] = "SELECT value FROM dict_entries WHERE dict = ?1 AND key = ?2",
    [S_DICT_PUT] = "INSERT INTO dict_entries(dict, key, value) VALUES (?1, ?2, ?3)"
                   " ON CONFLICT(dict, key) DO UPDATE SET value = excluded.value",
    [S_DICT_PUT_NEW] = "INSERT INTO dict_entries(dict, key, value) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
    [S_DICT_DELETE] = "DELETE FROM dict_entries WHERE dict = ?1 AND key = ?2",
    [S_DICT_COUNT] = "SELECT COUNT(*) FROM dict_entries WHERE dict = ?1",
    [S_DICT_LIST] = "SELECT key, value FROM dict_entries WHERE dict = ?1 AND (?2 IS NULL OR key > ?2)"
                    " ORDER BY key LIMIT ?3",
    [S_DICT_CLEAR] = "DELETE FROM dict_entries WHERE dict = ?1",
    [S_QUEUE_PUSH] = "INSERT INTO queue_items(queue, partition, value) VALUES (?1, ?2, ?3)",
    [S_QUEUE_LIST] = "SELECT id, value FROM queue_items WHERE queue = ?1 AND partition = ?2 AND id > ?3"
                     " ORDER BY id LIMIT ?4",
    [S_QUEUE_REMOVE_UPTO] = "DELETE FROM queue_items WHERE queue = ?1 AND partition = ?2 AND id <= ?3",
    [S_QUEUE_CLEAR] = "DELETE FROM queue_items WHERE queue = ?1 AND partition = ?2",
    [S_QUEUE_CLEAR_ALL] = "DELETE FROM queue_items WHERE queue = ?1",
    [S_QPART_GET] = "SELECT items, expires_at FROM queue_partitions WHERE queue = ?1 AND partition = ?2",
    [S_QPART_PUT] = "INSERT INTO queue_partitions(queue, partition, items, ttl, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)"
                    " ON CONFLICT(queue, partition) DO UPDATE SET items = items + ?3, ttl = ?4, expires_at = ?5",
    [S_QPART_TAKE] = "UPDATE queue_partitions SET items = items - ?3 WHERE queue = ?1 AND partition = ?2",
    [S_QPART_DROP_EMPTY] = "DELETE FROM queue_partitions WHERE queue = ?1 AND partition = ?2 AND items <= 0",
    [S_QPART_CLEAR] = "DELETE FROM queue_partitions WHERE queue = ?1 AND partition = ?2",
    [S_QPART_CLEAR_ALL] = "DELETE FROM queue_partitions WHERE queue = ?1",
    [S_QPART_SUM] = "SELECT COALESCE(SUM(items), 0) FROM queue_partitions WHERE queue = ?1 AND expires_at > ?2",
    [S_QPART_EXPIRED] = "SELECT queue, partition FROM queue_partitions WHERE expires_at <= ?1"
                        " ORDER BY expires_at LIMIT ?2",
    [S_VOL_CREATE] = "INSERT OR IGNORE INTO volumes(name, version, manifest, created_at, updated_at)"
                     " VALUES (?1, 1, ?2, ?3, ?3)",
    [S_VOL_GET] = "SELECT name, version, manifest, created_at, updated_at FROM volumes WHERE name = ?1",
    [S_VOL_SET] = "UPDATE volumes SET version = ?2, manifest = ?3, updated_at = ?4 WHERE name = ?1",
    [S_VOL_DELETE] = "DELETE FROM volumes WHERE name = ?1",
    /* ?1 is "<workspace>/", as for dicts. */
    [S_VOL_LIST] = "SELECT name, version, manifest, created_at, updated_at FROM volumes"
                   " WHERE substr(name, 1, length(?1)) = ?1 ORDER BY name",
    [S_VOL_ALL] = "SELECT name, version, manifest, created_at, updated_at FROM volumes ORDER BY name",
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

static int out_of_memory(struct gerr *err)
{
    return gerr_set(err, ENOMEM, "store: out of memory");
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

/* ---------- parameters ---------- */

/* One bound parameter, built with the P_* macros and passed as PARAMS(...) (bound to
 * ?1, ?2, ... in order) or NO_PARAMS. Text and blobs are bound SQLITE_STATIC: the
 * caller's memory must outlive the step, which it does since every statement is
 * stepped and reset before the store function returns. */
struct param {
    enum param_kind {
        PK_TEXT,     /* NULL -> SQL NULL */
        PK_TEXT_OPT, /* NULL or "" -> SQL NULL */
        PK_TEXT_LEN, /* len bytes of text; NULL -> "" */
        PK_TIME,     /* 0 ("not yet") -> SQL NULL */
        PK_REAL,
        PK_INT,
        PK_BLOB,     /* len bytes; NULL -> SQL NULL */
        PK_NULL,
    } kind;
    const char *text;
    const void *blob;
    size_t len;
    double real;
    int64_t integer;
};

#define P_TEXT(v) ((struct param){.kind = PK_TEXT, .text = (v)})
#define P_TEXT_OPT(v) ((struct param){.kind = PK_TEXT_OPT, .text = (v)})
#define P_TEXT_LEN(v, n) ((struct param){.kind = PK_TEXT_LEN, .text = (v), .len = (n)})
#define P_TIME(t) ((struct param){.kind = PK_TIME, .real = (t)})
#define P_REAL(x) ((struct param){.kind = PK_REAL, .real = (x)})
#define P_INT(x) ((struct param){.kind = PK_INT, .integer = (int64_t)(x)})
#define P_BLOB(p, n) ((struct param){.kind = PK_BLOB, .blob = (p), .len = (n)})
#define P_NULL ((struct param){.kind = PK_NULL})

#define PARAMS(...) (const struct param[]){__VA_ARGS__}, ARRAY_LEN(((const struct param[]){__VA_ARGS__}))
#define NO_PARAMS NULL, 0

static int bind_param(sqlite3_stmt *s, int i, const struct param *p)
{
    switch (p->kind) {
    case PK_TEXT:
        return p->text ? sqlite3_bind_text(s, i, p->text, -1, SQLITE_STATIC) : sqlite3_bind_null(s, i);
    case PK_TEXT_OPT:
        return p->text && p->text[0] ? sqlite3_bind_text(s, i, p->text, -1, SQLITE_STATIC) : sqlite3_bind_null(s, i);
    case PK_TEXT_LEN:
        return sqlite3_bind_text64(s, i, p->text ? p->text : "", p->text ? p->len : 0, SQLITE_STATIC, SQLITE_UTF8);
    case PK_TIME:
        return p->real != 0 ? sqlite3_bind_double(s, i, p->real) : sqlite3_bind_null(s, i);
    case PK_REAL:
        return sqlite3_bind_double(s, i, p->real);
    case PK_INT:
        return sqlite3_bind_int64(s, i, p->integer);
    case PK_BLOB:
        if (!p->blob)
            return sqlite3_bind_null(s, i);
        return sqlite3_bind_blob64(s, i, p->len ? p->blob : "", p->len, SQLITE_STATIC);
    case PK_NULL:
        break;
    }
    return sqlite3_bind_null(s, i);
}

/* Takes statement id, binds params[0..n) to ?1..?n (stopping at the first failure)
 * and steps it once. Returns the statement with *rc the result of that step, or of
 * the binding that failed (the caller reports either the same way and then calls
 * stmt_done); NULL with err set when the statement is in use (the caller returns
 * -EBUSY). */
static sqlite3_stmt *stmt_start(struct store *st, enum stmt_id id, const struct param *params, size_t n, int *rc,
                                struct gerr *err)
{
    sqlite3_stmt *s = stmt_take(st, id, err);
    if (!s)
        return NULL;
    *rc = SQLITE_OK;
    for (size_t i = 0; i < n && *rc == SQLITE_OK; i++)
        *rc = bind_param(s, (int)i + 1, &params[i]);
    if (*rc == SQLITE_OK)
        *rc = sqlite3_step(s);
    return s;
}

/* ---------- running statements ---------- */

/* Runs write statement id with params to completion. Returns the number of rows
 * changed, or -errno with err "store: <what> <key>: <SQLite message>". */
static int exec_write(struct store *st, enum stmt_id id, const struct param *params, size_t n, struct gerr *err,
                      const char *what, const char *key)
{
    int rc;
    sqlite3_stmt *s = stmt_start(st, id, params, n, &rc, err);
    if (!s)
        return -EBUSY;
    int r = rc == SQLITE_DONE ? sqlite3_changes(st->db) : db_fail(st, rc, err, "%s %s", what, key);
    stmt_done(s);
    return r;
}

/* As exec_write, where the number of rows changed does not matter: 0 or -errno. */
static int exec_ok(struct store *st, enum stmt_id id, const struct param *params, size_t n, struct gerr *err,
                   const char *what, const char *key)
{
    int r = exec_write(st, id, params, n, err, what, key);
    return r < 0 ? r : 0;
}

/* As exec_write, for an UPDATE of the one row named by key: 0, -ENOENT when no row
 * changed (err "store: <what> <key> not found"), or -errno. */
static int exec_update_one(struct store *st, enum stmt_id id, const struct param *params, size_t n,
                           struct gerr *err, const char *what, const char *key)
{
    int r = exec_write(st, id, params, n, err, what, key);
    if (r == 0)
        return not_found(err, what, key);
    return r < 0 ? r : 0;
}

/* Copies what a single-row query found from the row at s into out; 0, or -ENOMEM
 * when SQLite could not hand a column over (col_dup). */
typedef int (*row_reader)(sqlite3_stmt *s, void *out);

/* Runs query id with params and hands its first row to reader(s, out). Returns 0;
 * -ENOENT when there is no row (err "store: <thing> not found"); -ENOMEM when reader
 * fails; or -errno (err "store: reading <thing>: <SQLite message>"). <thing> is fmt
 * expanded printf-style. */
static int query_one(struct store *st, enum stmt_id id, const struct param *params, size_t n, row_reader reader,
                     void *out, struct gerr *err, const char *fmt, ...) __attribute__((format(printf, 8, 9)));
static int query_one(struct store *st, enum stmt_id id, const struct param *params, size_t n, row_reader reader,
                     void *out, struct gerr *err, const char *fmt, ...)
{
    int rc;
    sqlite3_stmt *s = stmt_start(st, id, params, n, &rc, err);
    if (!s)
        return -EBUSY;
    int r;
    if (rc == SQLITE_ROW) {
        r = reader(s, out) < 0 ? out_of_memory(err) : 0;
    } else {
        char thing[GERR_MSG_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(thing, sizeof thing, fmt, ap);
        va_end(ap);
        r = rc == SQLITE_DONE ? gerr_set(err, ENOENT, "store: %s not found", thing)
                              : db_fail(st, rc, err, "reading %s", thing);
    }
    stmt_done(s);
    return r;
}

/* A listing's callback (the member of its kind) and the callback's argument. */
struct listing {
    union {
        store_app_cb app;
        store_function_cb function;
        store_container_cb container;
        store_log_cb log;
        store_log_row_cb log_row;
        store_image_cb image;
        store_build_step_cb step;
        store_secret_cb secret;
        store_workspace_cb workspace;
        store_token_cb token;
        store_keepalive_cb keepalive;
        store_schedule_cb schedule;
        store_kvobj_cb kvobj;
        store_pair_cb pair;
        store_queue_item_cb qitem;
        store_qpart_cb qpart;
        store_volume_cb volume;
        store_call_cb call;
    } cb;
    void *ud;
};

/* Hands the row at s to l's callback and returns what the callback returned. */
typedef int (*row_handler)(sqlite3_stmt *s, const struct listing *l);

/* Runs query id with params and calls row(s, l) for each row until it returns
 * nonzero. Returns 0 when the rows ran out or the callback returned > 0 (stop); the
 * callback's negative errno (err "store: listing <what> was stopped by its
 * callback"); or -errno (err "store: <failing>: <SQLite message>"). */
static int list_rows(struct store *st, enum stmt_id id, const struct param *params, size_t n, row_handler row,
                     const struct listing *l, struct gerr *err, const char *what, const char *failing)
{
    int rc;
    sqlite3_stmt *s = stmt_start(st, id, params, n, &rc, err);
    if (!s)
        return -EBUSY;
    int r = 0;
    for (; rc == SQLITE_ROW; rc = sqlite3_step(s)) {
        r = row(s, l);
        if (r)
            break;
    }
    r = r ? callback_stopped(err, r, what) : rc == SQLITE_DONE ? 0 : db_fail(st, rc, err, "%s", failing);
    stmt_done(s);
    return r;
}

/* ---------- columns ---------- */

static void col_copy(sqlite3_stmt *s, int i, char *dst, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

static double col_time(sqlite3_stmt *s, int i)
{
    return sqlite3_column_type(s, i) == SQLITE_NULL ? 0 : sqlite3_column_double(s, i);
}

/* malloc'd NUL-terminated copy of a text or blob column; NULL for SQL NULL. -ENOMEM
 * when SQLite cannot hand the column over (its own allocation failed); the copy itself
 * comes from xmalloc, whose failure aborts. */
static int col_dup(sqlite3_stmt *s, int i, void **out, size_t *len_out)
{
    *out = NULL;
    if (len_out)
        *len_out = 0;
    if (sqlite3_column_type(s, i) == SQLITE_NULL)
        return 0;
    const void *p = sqlite3_column_blob(s, i);
    size_t n = (size_t)sqlite3_column_bytes(s, i);
    if (!p && n)
        return -ENOMEM;
    *out = xmemdup(p, n);
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
        AUTO_FREE char *dir = xstrndup(path, (size_t)(slash - path));
        int r = mkdir_p(dir, 0700);
        if (r < 0)
            return gerr_sys(err, -r, "store: creating directory %s", dir);
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return gerr_sys(err, errno, "store: opening %s", path);
    close(fd);

    struct store *st = xcalloc(1, sizeof *st);
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

int store_size_bytes(struct store *st, uint64_t *db, uint64_t *wal, struct gerr *err)
{
    *db = *wal = 0;
    const char *path = sqlite3_db_filename(st->db, "main");
    if (!path || !path[0])
        return 0; /* an in-memory database has no file */
    struct stat sb;
    if (stat(path, &sb) < 0)
        return gerr_sys(err, errno, "store: stat %s", path);
    *db = (uint64_t)sb.st_size;
    char walp[PATH_MAX];
    if ((size_t)snprintf(walp, sizeof walp, "%s-wal", path) >= sizeof walp)
        return 0;
    if (stat(walp, &sb) == 0)
        *wal = (uint64_t)sb.st_size;
    else if (errno != ENOENT)
        return gerr_sys(err, errno, "store: stat %s", walp);
    return 0;
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
    return exec_ok(st, S_APP_UPSERT, PARAMS(P_TEXT(name), P_TEXT(state), P_REAL(now)), err, "saving app",
                   name ? name : "(null)");
}

struct app_out {
    char *state; /* 16 bytes */
    double *created_at;
};

static int read_app(sqlite3_stmt *s, void *out)
{
    struct app_out *a = out;
    col_copy(s, 0, a->state, 16);
    if (a->created_at)
        *a->created_at = col_time(s, 1);
    return 0;
}

int store_app_get(struct store *st, const char *name, char state_out[16], double *created_at, struct gerr *err)
{
    struct app_out a = {.state = state_out, .created_at = created_at};
    return query_one(st, S_APP_GET, PARAMS(P_TEXT(name)), read_app, &a, err, "app %s", name);
}

static int app_row(sqlite3_stmt *s, const struct listing *l)
{
    return l->cb.app((const char *)sqlite3_column_text(s, 0), (const char *)sqlite3_column_text(s, 1),
                     col_time(s, 2), sqlite3_column_int(s, 3), l->ud);
}

int store_app_list(struct store *st, store_app_cb cb, void *ud, struct gerr *err)
{
    const struct listing l = {.cb.app = cb, .ud = ud};
    return list_rows(st, S_APP_LIST, NO_PARAMS, app_row, &l, err, "apps", "listing apps");
}

/* ---------- function versions ---------- */

int store_function_add_version(struct store *st, const char *app, const char *name, const char *spec_json,
                               double now, uint32_t *version_out, struct gerr *err)
{
    int rc;
    sqlite3_stmt *s = stmt_start(st, S_FN_ADD, PARAMS(P_TEXT(app), P_TEXT(name), P_TEXT(spec_json), P_REAL(now)),
                                 &rc, err);
    if (!s)
        return -EBUSY;
    if (rc == SQLITE_ROW) {
        *version_out = (uint32_t)sqlite3_column_int64(s, 0);
        rc = sqlite3_step(s);
    }
    int r = rc == SQLITE_DONE ? 0 : db_fail(st, rc, err, "adding a version of %s.%s", app, name);
    stmt_done(s);
    return r;
}

/* row_reader for a query whose column 0 is text: *(char **)out gets a malloc'd copy. */
static int read_text(sqlite3_stmt *s, void *out)
{
    return col_strdup(s, 0, out);
}

struct function_out {
    uint32_t *version;
    char **spec_json;
};

static int read_function(sqlite3_stmt *s, void *out)
{
    struct function_out *f = out;
    *f->version = (uint32_t)sqlite3_column_int64(s, 0);
    return col_strdup(s, 1, f->spec_json);
}

int store_function_latest(struct store *st, const char *app, const char *name, uint32_t *version,
                          char **spec_json, struct gerr *err)
{
    *spec_json = NULL;
    struct function_out f = {.version = version, .spec_json = spec_json};
    return query_one(st, S_FN_LATEST, PARAMS(P_TEXT(app), P_TEXT(name)), read_function, &f, err, "function %s.%s",
                     app, name);
}

int store_function_get_version(struct store *st, const char *app, const char *name, uint32_t version,
                               char **spec_json, struct gerr *err)
{
    *spec_json = NULL;
    return query_one(st, S_FN_GET, PARAMS(P_TEXT(app), P_TEXT(name), P_INT(version)), read_text, spec_json, err,
                     "function %s.%s version %u", app, name, version);
}

static int function_row(sqlite3_stmt *s, const struct listing *l)
{
    return l->cb.function((const char *)sqlite3_column_text(s, 0), (const char *)sqlite3_column_text(s, 1),
                          (uint32_t)sqlite3_column_int64(s, 2), (const char *)sqlite3_column_text(s, 3), l->ud);
}

int store_function_retire(struct store *st, const char *app, const char *name, double now, struct gerr *err)
{
    return exec_ok(st, S_FN_RETIRE, PARAMS(P_TEXT(app), P_TEXT(name), P_REAL(now)), err, "retiring function", name);
}

int store_function_list_latest(struct store *st, store_function_cb cb, void *ud, struct gerr *err)
{
    const struct listing l = {.cb.function = cb, .ud = ud};
    return list_rows(st, S_FN_LIST_LATEST, NO_PARAMS, function_row, &l, err, "functions", "listing functions");
}

/* ---------- calls ---------- */

void store_call_free(struct store_call *c)
{
    free(c->input);
    free(c->output);
    free(c->error_message);
    free(c->timeline);
    c->input = NULL;
    c->output = NULL;
    c->error_message = NULL;
    c->timeline = NULL;
}

static bool state_is_final(const char *state)
{
    return state && (!strcmp(state, "succeeded") || !strcmp(state, "failed") || !strcmp(state, "timed_out") ||
                     !strcmp(state, "cancelled"));
}

int store_call_insert(struct store *st, const struct store_call *c, struct gerr *err)
{
    return exec_ok(st, S_CALL_INSERT,
                   PARAMS(P_TEXT(c->id), P_TEXT(c->app), P_TEXT(c->function), P_INT(c->version), P_TEXT(c->state),
                          P_TEXT_OPT(c->error_code), P_INT(c->attempts), P_REAL(c->created_at),
                          P_TIME(c->started_at), P_TIME(c->finished_at), P_TIME(c->next_attempt_at),
                          P_TEXT_OPT(c->map_id), c->map_index >= 0 ? P_INT(c->map_index) : P_NULL,
                          P_TEXT(c->error_message), P_BLOB(c->input, c->input_len),
                          P_BLOB(c->output, c->output_len)),
                   err, "inserting call", c->id);
}

int store_call_set_running(struct store *st, const char *id, uint32_t attempts, double started_at,
                           struct gerr *err)
{
    return exec_update_one(st, S_CALL_RUNNING, PARAMS(P_TEXT(id), P_INT(attempts), P_TIME(started_at)), err,
                           "call", id);
}

int store_call_set_pending(struct store *st, const char *id, uint32_t attempts, double next_attempt_at,
                           struct gerr *err)
{
    return exec_update_one(st, S_CALL_PENDING, PARAMS(P_TEXT(id), P_INT(attempts), P_TIME(next_attempt_at)), err,
                           "call", id);
}

int store_call_finish(struct store *st, const char *id, const char *state, const void *output, size_t output_len,
                      const char *error_code, const char *error_message, double finished_at, const char *timeline,
                      struct gerr *err)
{
    if (!state_is_final(state))
        return gerr_set(err, EINVAL, "store: call %s: \"%s\" is not a final state", id, state ? state : "(null)");
    return exec_update_one(st, S_CALL_FINISH,
                           PARAMS(P_TEXT(id), P_TEXT(state), P_BLOB(output, output_len), P_TEXT_OPT(error_code),
                                  P_TEXT(error_message), P_TIME(finished_at), P_TEXT(timeline)),
                           err, "call", id);
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
    if (col_strdup(s, 13, &out->error_message) < 0 || col_strdup(s, CC_TIMELINE, &out->timeline) < 0) {
        store_call_free(out);
        return -ENOMEM;
    }
    if (with_payloads && (col_dup(s, CC_INPUT, &out->input, &out->input_len) < 0 ||
                          col_dup(s, CC_OUTPUT, &out->output, &out->output_len) < 0)) {
        store_call_free(out);
        return -ENOMEM;
    }
    return 0;
}

struct call_out {
    struct store_call *call;
    bool with_payloads;
};

static int read_call_out(sqlite3_stmt *s, void *out)
{
    struct call_out *c = out;
    return read_call(s, c->call, c->with_payloads);
}

int store_call_get(struct store *st, const char *id, struct store_call *out, bool with_payloads, struct gerr *err)
{
    memset(out, 0, sizeof *out);
    struct call_out c = {.call = out, .with_payloads = with_payloads};
    return query_one(st, with_payloads ? S_CALL_GET_FULL : S_CALL_GET_META, PARAMS(P_TEXT(id)), read_call_out, &c,
                     err, "call %s", id);
}

int store_calls_unfinished(struct store *st, store_call_cb cb, void *ud, struct gerr *err)
{
    struct store_call *page = xcalloc(UNFINISHED_PAGE, sizeof *page);
    double after_created = -DBL_MAX;
    int64_t after_rowid = INT64_MIN;
    int r = 0;
    for (;;) {
        int rc;
        sqlite3_stmt *s = stmt_start(st, S_CALLS_UNFINISHED,
                                     PARAMS(P_REAL(after_created), P_INT(after_rowid), P_INT(UNFINISHED_PAGE)), &rc,
                                     err);
        if (!s) {
            r = -EBUSY;
            break;
        }
        size_t n = 0;
        while (rc == SQLITE_ROW) {
            if (read_call(s, &page[n], true) < 0) {
                r = out_of_memory(err);
                break;
            }
            after_created = col_time(s, 7);
            after_rowid = sqlite3_column_int64(s, CC_ROWID);
            if (++n == UNFINISHED_PAGE)
                break;
            rc = sqlite3_step(s);
        }
        if (r == 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
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

static int row_call(sqlite3_stmt *s, const struct listing *l)
{
    struct store_call c;
    if (read_call(s, &c, false) < 0)
        return -ENOMEM;
    int r = l->cb.call(&c, l->ud);
    store_call_free(&c);
    return r;
}

int store_calls_recent(struct store *st, const char *app, const char *function, int64_t limit, store_call_cb cb,
                       void *ud, struct gerr *err)
{
    struct listing l = {.cb.call = cb, .ud = ud};
    return list_rows(st, S_CALLS_RECENT, PARAMS(P_TEXT(app), P_TEXT(function), P_INT(limit)), row_call, &l, err,
                     "recent calls", "listing recent calls");
}

int store_calls_cancel_app(struct store *st, const char *app, double now, struct gerr *err)
{
    return exec_write(st, S_CALLS_CANCEL_APP, PARAMS(P_TEXT(app), P_REAL(now)), err, "cancelling the calls of app",
                      app);
}

int store_calls_prune(struct store *st, double older_than, struct gerr *err)
{
    return exec_write(st, S_CALLS_PRUNE, PARAMS(P_REAL(older_than)), err, "pruning", "calls");
}

int store_calls_trim_fn(struct store *st, const char *app, const char *function, int64_t keep, struct gerr *err)
{
    return exec_write(st, S_CALLS_TRIM_FN, PARAMS(P_TEXT(app), P_TEXT(function), P_INT(keep < 0 ? 0 : keep)), err,
                      "trimming", "calls");
}

/* ---------- containers ---------- */

int store_container_start(struct store *st, const struct store_container *c, struct gerr *err)
{
    return exec_ok(st, S_CTR_START,
                   PARAMS(P_TEXT(c->id), P_TEXT(c->app), P_TEXT(c->function), P_INT(c->version),
                          P_INT(c->cpu_millicores), P_INT(c->memory_mib), P_TEXT_OPT(c->gpu_type),
                          P_INT(c->gpu_count), P_REAL(c->started_at)),
                   err, "recording container", c->id);
}

int store_container_ready(struct store *st, const char *id, double ready_at, struct gerr *err)
{
    return exec_update_one(st, S_CTR_READY, PARAMS(P_TEXT(id), P_TIME(ready_at)), err, "container", id);
}

int store_container_update(struct store *st, const char *id, double busy_s, uint64_t inputs_done,
                           struct gerr *err)
{
    return exec_update_one(st, S_CTR_UPDATE, PARAMS(P_TEXT(id), P_REAL(busy_s), P_INT(inputs_done)), err,
                           "container", id);
}

int store_container_stop(struct store *st, const char *id, double stopped_at, double busy_s,
                         uint64_t inputs_done, const char *reason, const struct store_ctr_usage *usage,
                         struct gerr *err)
{
    static const struct store_ctr_usage none;
    const struct store_ctr_usage *u = usage ? usage : &none;
    return exec_update_one(st, S_CTR_STOP,
                           PARAMS(P_TEXT(id), P_TIME(stopped_at), P_REAL(busy_s), P_INT(inputs_done),
                                  P_TEXT_OPT(reason), P_REAL(u->cpu_s), P_REAL(u->memory_peak_mib),
                                  P_INT(u->oom_kills), P_REAL(u->gpu_util_avg), P_REAL(u->gpu_mem_peak_mib)),
                           err, "container", id);
}

int store_containers_close_open(struct store *st, double stopped_at, const char *reason, struct gerr *err)
{
    return exec_write(st, S_CTR_CLOSE_OPEN, PARAMS(P_REAL(stopped_at), P_TEXT_OPT(reason)), err, "closing open",
                      "containers");
}

/* Fills *c from a row of CTR_COLS. */
static void read_container(sqlite3_stmt *s, struct store_container *c)
{
    memset(c, 0, sizeof *c);
    col_copy(s, 0, c->id, sizeof c->id);
    col_copy(s, 1, c->app, sizeof c->app);
    col_copy(s, 2, c->function, sizeof c->function);
    c->version = (uint32_t)sqlite3_column_int64(s, 3);
    c->cpu_millicores = (uint32_t)sqlite3_column_int64(s, 4);
    c->memory_mib = (uint32_t)sqlite3_column_int64(s, 5);
    col_copy(s, 6, c->gpu_type, sizeof c->gpu_type);
    c->gpu_count = (uint32_t)sqlite3_column_int64(s, 7);
    c->started_at = col_time(s, 8);
    c->ready_at = col_time(s, 9);
    c->stopped_at = col_time(s, 10);
    c->busy_s = sqlite3_column_double(s, 11);
    c->inputs_done = (uint64_t)sqlite3_column_int64(s, 12);
    col_copy(s, 13, c->stop_reason, sizeof c->stop_reason);
    c->usage.cpu_s = sqlite3_column_double(s, 14);
    c->usage.memory_peak_mib = sqlite3_column_double(s, 15);
    c->usage.oom_kills = (uint64_t)sqlite3_column_int64(s, 16);
    c->usage.gpu_util_avg = sqlite3_column_double(s, 17);
    c->usage.gpu_mem_peak_mib = sqlite3_column_double(s, 18);
}

static int container_row(sqlite3_stmt *s, const struct listing *l)
{
    struct store_container c;
    read_container(s, &c);
    return l->cb.container(&c, l->ud);
}

int store_usage_rows(struct store *st, double since, store_container_cb cb, void *ud, struct gerr *err)
{
    const struct listing l = {.cb.container = cb, .ud = ud};
    return list_rows(st, S_CTR_USAGE, PARAMS(P_REAL(since)), container_row, &l, err, "containers",
                     "listing containers");
}

int store_containers_prune(struct store *st, double older_than, struct gerr *err)
{
    return exec_write(st, S_CTR_PRUNE, PARAMS(P_REAL(older_than)), err, "pruning", "containers");
}

/* ---------- key/value ---------- */

int store_kv_set(struct store *st, const char *key, const char *value, struct gerr *err)
{
    return exec_ok(st, S_KV_SET, PARAMS(P_TEXT(key), P_TEXT(value)), err, "setting key", key);
}

int store_kv_get(struct store *st, const char *key, char **value, struct gerr *err)
{
    *value = NULL;
    return query_one(st, S_KV_GET, PARAMS(P_TEXT(key)), read_text, value, err, "key %s", key);
}

/* ---------- logs ---------- */

int store_log_append(struct store *st, const struct store_log_row *row, struct gerr *err)
{
    return exec_ok(st, S_LOG_APPEND,
                   PARAMS(P_TEXT(row->app), P_TEXT(row->function), P_TEXT_OPT(row->container_id), P_REAL(row->ts),
                          P_INT(row->stream), P_TEXT_LEN(row->line, row->len),
                          P_TEXT(row->call_id ? row->call_id : ""), P_INT(row->seq), P_INT(row->concurrent)),
                   err, "appending a log line of", row->function);
}

static int log_row(sqlite3_stmt *s, const struct listing *l)
{
    const unsigned char *cid = sqlite3_column_text(s, 2);
    const char *line = (const char *)sqlite3_column_text(s, 4);
    size_t len = (size_t)sqlite3_column_bytes(s, 4);
    const unsigned char *call = sqlite3_column_text(s, 5);
    return l->cb.log(sqlite3_column_int64(s, 0), sqlite3_column_double(s, 1), cid ? (const char *)cid : "",
                     call ? (const char *)call : "", sqlite3_column_int(s, 3), line ? line : "", line ? len : 0,
                     l->ud);
}

int store_logs_tail(struct store *st, const char *app, const char *function, int limit, store_log_cb cb,
                    void *ud, struct gerr *err)
{
    const struct listing l = {.cb.log = cb, .ud = ud};
    return list_rows(st, S_LOGS_TAIL, PARAMS(P_TEXT(app), P_TEXT(function), P_INT(limit < 0 ? -1 : limit)), log_row,
                     &l, err, "logs", "reading logs");
}

int store_logs_find(struct store *st, const char *app, const char *function, const struct store_log_filter *f,
                    int limit, store_log_cb cb, void *ud, struct gerr *err)
{
    const struct listing l = {.cb.log = cb, .ud = ud};
    return list_rows(st, S_LOGS_FIND,
                     PARAMS(P_TEXT(app), P_TEXT(function), P_INT(limit < 0 ? -1 : limit),
                            P_INT(f->scan > 0 ? f->scan - 1 : 0), P_REAL(f->since), P_REAL(f->until > 0 ? f->until : DBL_MAX),
                            P_TEXT(f->search), P_TEXT(f->call_id), P_TEXT(f->container_id)),
                     log_row, &l, err, "logs", "reading logs");
}

int store_logs_after(struct store *st, const char *app, const char *function, int64_t after_id, int limit,
                     store_log_cb cb, void *ud, struct gerr *err)
{
    const struct listing l = {.cb.log = cb, .ud = ud};
    return list_rows(st, S_LOGS_AFTER,
                     PARAMS(P_TEXT(app), P_TEXT(function), P_INT(after_id), P_INT(limit < 0 ? -1 : limit)), log_row,
                     &l, err, "logs", "reading logs");
}

static const char *col_text_or_empty(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? (const char *)t : "";
}

static int app_log_row(sqlite3_stmt *s, const struct listing *l)
{
    const char *line = (const char *)sqlite3_column_text(s, 7);
    struct store_log_row row = {
        .function = col_text_or_empty(s, 0),
        .seq = sqlite3_column_int64(s, 1),
        .ts = sqlite3_column_double(s, 2),
        .container_id = col_text_or_empty(s, 3),
        .call_id = col_text_or_empty(s, 4),
        .stream = sqlite3_column_int(s, 5),
        .concurrent = sqlite3_column_int(s, 6) != 0,
        .line = line ? line : "",
        .len = line ? (size_t)sqlite3_column_bytes(s, 7) : 0,
    };
    return l->cb.log_row(&row, l->ud);
}

int store_logs_app_after(struct store *st, const char *app, int64_t after_seq, int limit, store_log_row_cb cb,
                         void *ud, struct gerr *err)
{
    const struct listing l = {.cb.log_row = cb, .ud = ud};
    return list_rows(st, S_LOGS_APP_AFTER, PARAMS(P_TEXT(app), P_INT(after_seq), P_INT(limit < 0 ? -1 : limit)),
                     app_log_row, &l, err, "logs", "reading logs");
}

static int read_int64(sqlite3_stmt *s, void *out);

int store_logs_app_seq(struct store *st, const char *app, int64_t *seq, struct gerr *err)
{
    *seq = 0;
    return query_one(st, S_LOGS_APP_SEQ, PARAMS(P_TEXT(app)), read_int64, seq, err, "log position of %s", app);
}

int store_logs_trim_fn(struct store *st, const char *app, const char *function, int64_t keep, struct gerr *err)
{
    return exec_write(st, S_LOGS_TRIM_FN, PARAMS(P_TEXT(app), P_TEXT(function), P_INT(keep < 0 ? 0 : keep)), err,
                      "trimming", "logs");
}



/* ---------- images ---------- */

int store_image_put(struct store *st, const char *name, const char *rootfs, bool host_usr, const char *id,
                    double now, struct gerr *err)
{
    return exec_ok(st, S_IMG_PUT,
                   PARAMS(P_TEXT(name), P_TEXT(rootfs), P_INT(host_usr), P_REAL(now), P_TEXT_OPT(id)), err,
                   "saving image", name);
}

int store_image_delete(struct store *st, const char *name, struct gerr *err)
{
    return exec_update_one(st, S_IMG_DELETE, PARAMS(P_TEXT(name)), err, "image", name);
}

struct image_out {
    char **rootfs;
    bool *host_usr;
};

static int read_image(sqlite3_stmt *s, void *out)
{
    struct image_out *img = out;
    int r = col_strdup(s, 0, img->rootfs);
    if (img->host_usr)
        *img->host_usr = sqlite3_column_int(s, 1) != 0;
    return r;
}

int store_image_get(struct store *st, const char *name, char **rootfs, bool *host_usr, struct gerr *err)
{
    *rootfs = NULL;
    struct image_out img = {.rootfs = rootfs, .host_usr = host_usr};
    return query_one(st, S_IMG_GET, PARAMS(P_TEXT(name)), read_image, &img, err, "image %s", name);
}

static int image_row(sqlite3_stmt *s, const struct listing *l)
{
    return l->cb.image((const char *)sqlite3_column_text(s, 0), (const char *)sqlite3_column_text(s, 1),
                       sqlite3_column_int(s, 2) != 0, (const char *)sqlite3_column_text(s, 4), col_time(s, 3),
                       l->ud);
}

int store_image_list(struct store *st, store_image_cb cb, void *ud, struct gerr *err)
{
    const struct listing l = {.cb.image = cb, .ud = ud};
    return list_rows(st, S_IMG_LIST, NO_PARAMS, image_row, &l, err, "images", "listing images");
}

int store_build_step_put(struct store *st, const char *step_id, const char *parent_id, const char *image_id,
                         double now, struct gerr *err)
{
    return exec_ok(st, S_STEP_PUT, PARAMS(P_TEXT(step_id), P_TEXT(parent_id), P_TEXT(image_id), P_REAL(now)), err,
                   "saving build step", step_id);
}

int store_build_step_delete(struct store *st, const char *step_id, struct gerr *err)
{
    return exec_update_one(st, S_STEP_DELETE, PARAMS(P_TEXT(step_id)), err, "build step", step_id);
}

static int step_row(sqlite3_stmt *s, const struct listing *l)
{
    return l->cb.step((const char *)sqlite3_column_text(s, 0), (const char *)sqlite3_column_text(s, 1),
                      (const char *)sqlite3_column_text(s, 2), l->ud);
}

int store_build_step_list(struct store *st, store_build_step_cb cb, void *ud, struct gerr *err)
{
    const struct listing l = {.cb.step = cb, .ud = ud};
    return list_rows(st, S_STEP_LIST, NO_PARAMS, step_row, &l, err, "build_steps", "listing build steps");
}

int store_secret_put(struct store *st, const char *name, const char *env_json, double now, struct gerr *err)
{
    return exec_ok(st, S_SECRET_PUT, PARAMS(P_TEXT(name), P_TEXT(env_json), P_REAL(now)), err, "saving secret",
                   name);
}

int store_secret_delete(struct store *st, const char *name, struct gerr *err)
{
    return exec_update_one(st, S_SECRET_DELETE, PARAMS(P_TEXT(name)), err, "secret", name);
}

static int secret_row(sqlite3_stmt *s, const struct listing *l)
{
    return l->cb.secret((const char *)sqlite3_column_text(s, 0), (const char *)sqlite3_column_text(s, 1),
                        col_time(s, 2), col_time(s, 3), l->ud);
}

int store_secret_list(struct store *st, store_secret_cb cb, void *ud, struct gerr *err)
{
    const struct listing l = {.cb.secret = cb, .ud = ud};
    return list_rows(st, S_SECRET_LIST, NO_PARAMS, secret_row, &l, err, "secrets", "listing secrets");
}

/* ---------- identity ---------- */

int store_workspace_create(struct store *st, const char *name, double now, const char *quotas_json,
                           struct gerr *err)
{
    return exec_ok(st, S_WS_PUT, PARAMS(P_TEXT(name), P_REAL(now), P_TEXT(quotas_json)), err, "creating workspace",
                   name);
}

int store_workspace_set_quotas(struct store *st, const char *name, const char *quotas_json, struct gerr *err)
{
    return exec_update_one(st, S_WS_QUOTAS, PARAMS(P_TEXT(name), P_TEXT(quotas_json)), err, "workspace", name);
}

static int workspace_row(sqlite3_stmt *s, const struct listing *l)
{
    return l->cb.workspace((const char *)sqlite3_column_text(s, 0), col_time(s, 1),
                           (const char *)sqlite3_column_text(s, 2), l->ud);
}

int store_workspace_list(struct store *st, store_workspace_cb cb, void *ud, struct gerr *err)
{
    const struct listing l = {.cb.workspace = cb, .ud = ud};
    return list_rows(st, S_WS_LIST, NO_PARAMS, workspace_row, &l, err, "workspaces", "listing workspaces");
}

int store_token_put(struct store *st, const struct store_token *t, struct gerr *err)
{
    return exec_ok(st, S_TOKEN_PUT,
                   PARAMS(P_TEXT(t->id), P_TEXT(t->hash), P_TEXT(t->workspace), P_TEXT(t->role), P_TEXT(t->name),
                          P_REAL(t->created_at), P_TIME(t->expires_at)),
                   err, "saving token", t->id);
}

int store_token_delete(struct store *st, const char *id, struct gerr *err)
{
    return exec_update_one(st, S_TOKEN_DELETE, PARAMS(P_TEXT(id)), err, "token", id);
}

static int token_row(sqlite3_stmt *s, const struct listing *l)
{
    struct store_token t = {.created_at = col_time(s, 5), .expires_at = col_time(s, 6)};
    col_copy(s, 0, t.id, sizeof t.id);
    col_copy(s, 1, t.hash, sizeof t.hash);
    col_copy(s, 2, t.workspace, sizeof t.workspace);
    col_copy(s, 3, t.role, sizeof t.role);
    col_copy(s, 4, t.name, sizeof t.name);
    return l->cb.token(&t, l->ud);
}

int store_token_list(struct store *st, store_token_cb cb, void *ud, struct gerr *err)
{
    const struct listing l = {.cb.token = cb, .ud = ud};
    return list_rows(st, S_TOKEN_LIST, NO_PARAMS, token_row, &l, err, "tokens", "listing tokens");
}

int store_blob_own(struct store *st, const char *workspace, const char *digest, uint64_t bytes, struct gerr *err)
{
    return exec_ok(st, S_BLOB_OWN, PARAMS(P_TEXT(workspace), P_TEXT(digest), P_INT(bytes)), err, "recording blob",
                   digest);
}

static int read_nothing(sqlite3_stmt *s, void *out)
{
    return 0;
}

int store_blob_owned(struct store *st, const char *workspace, const char *digest, struct gerr *err)
{
    return query_one(st, S_BLOB_OWNED, PARAMS(P_TEXT(workspace), P_TEXT(digest)), read_nothing, NULL, err,
                     "blob %s of workspace %s", digest, workspace);
}

static int read_int64(sqlite3_stmt *s, void *out)
{
    *(int64_t *)out = sqlite3_column_int64(s, 0);
    return 0;
}

int store_workspace_stored_bytes(struct store *st, const char *workspace, uint64_t *bytes, struct gerr *err)
{
    int64_t v = 0;
    int r = query_one(st, S_WS_STORED, PARAMS(P_TEXT(workspace)), read_int64, &v, err, "stored bytes of %s",
                      workspace);
    *bytes = r == 0 && v > 0 ? (uint64_t)v : 0;
    return r;
}

int store_keepalive_put(struct store *st, const char *app, const char *function, const char *policy,
                        const void *history, size_t len, double now, struct gerr *err)
{
    return exec_ok(st, S_KA_PUT,
                   PARAMS(P_TEXT(app), P_TEXT(function), P_TEXT(policy), P_BLOB(history, len), P_REAL(now)), err,
                   "saving the keep-alive history of", function);
}

static int keepalive_row(sqlite3_stmt *s, const struct listing *l)
{
    return l->cb.keepalive((const char *)sqlite3_column_text(s, 0), (const char *)sqlite3_column_text(s, 1),
                           (const char *)sqlite3_column_text(s, 2), sqlite3_column_blob(s, 3),
                           (size_t)sqlite3_column_bytes(s, 3), l->ud);
}

int store_keepalive_list(struct store *st, store_keepalive_cb cb, void *ud, struct gerr *err)
{
    const struct listing l = {.cb.keepalive = cb, .ud = ud};
    return list_rows(st, S_KA_LIST, NO_PARAMS, keepalive_row, &l, err, "keep-alive histories",
                     "listing keep-alive histories");
}

int store_schedule_put(struct store *st, const char *app, const char *function, const char *spec, double next_at,
                       const char *last_runs, struct gerr *err)
{
    return exec_ok(st, S_SCHED_PUT,
                   PARAMS(P_TEXT(app), P_TEXT(function), P_TEXT(spec), P_REAL(next_at), P_TEXT(last_runs)), err,
                   "saving the schedule of", function);
}

int store_schedule_delete(struct store *st, const char *app, const char *function, struct gerr *err)
{
    return exec_ok(st, S_SCHED_DELETE, PARAMS(P_TEXT(app), P_TEXT(function)), err, "deleting the schedule of",
                   function);
}

static int schedule_row(sqlite3_stmt *s, const struct listing *l)
{
    return l->cb.schedule((const char *)sqlite3_column_text(s, 0), (const char *)sqlite3_column_text(s, 1),
                          (const char *)sqlite3_column_text(s, 2), sqlite3_column_double(s, 3),
                          (const char *)sqlite3_column_text(s, 4), l->ud);
}

int store_schedule_list(struct store *st, store_schedule_cb cb, void *ud, struct gerr *err)
{
    const struct listing l = {.cb.schedule = cb, .ud = ud};
    return list_rows(st, S_SCHED_LIST, NO_PARAMS, schedule_row, &l, err, "schedules", "listing schedules");
}

/* ---------- dicts and queues ---------- */

int store_kvobj_create(struct store *st, const char *kind, const char *name, double now, struct gerr *err)
{
    int r = exec_write(st, S_KVOBJ_CREATE, PARAMS(P_TEXT(kind), P_TEXT(name), P_REAL(now)), err, "creating", name);
    return r < 0 ? r : r > 0;
}

static int read_time(sqlite3_stmt *s, void *out)
{
    *(double *)out = col_time(s, 0);
    return 0;
}

int store_kvobj_exists(struct store *st, const char *kind, const char *name, double *created_at, struct gerr *err)
{
    double at_unused;
    return query_one(st, S_KVOBJ_EXISTS, PARAMS(P_TEXT(kind), P_TEXT(name)), read_time,
                     created_at ? created_at : &at_unused, err, "%s %s", kind,
                     name);
}

int store_kvobj_delete(struct store *st, const char *kind, const char *name, struct gerr *err)
{
    int r = store_begin(st, err);
    if (r < 0)
        return r;
    r = exec_update_one(st, S_KVOBJ_DELETE, PARAMS(P_TEXT(kind), P_TEXT(name)), err, kind, name);
    if (r == 0)
        r = strcmp(kind, "dict") ? store_queue_clear(st, name, NULL, err)
                                 : exec_ok(st, S_DICT_CLEAR, PARAMS(P_TEXT(name)), err, "deleting the contents of", name);
    if (r == 0)
        return store_commit(st, err);
    store_rollback(st, NULL);
    return r;
}

static int kvobj_row(sqlite3_stmt *s, const struct listing *l)
{
    return l->cb.kvobj((const char *)sqlite3_column_text(s, 0), col_time(s, 1), sqlite3_column_int64(s, 2), l->ud);
}

int store_kvobj_list(struct store *st, const char *kind, const char *ws, double now, store_kvobj_cb cb, void *ud,
                     struct gerr *err)
{
    char prefix[STORE_KV_WS_PREFIX_MAX];
    snprintf(prefix, sizeof prefix, "%s/", ws);
    const struct listing l = {.cb.kvobj = cb, .ud = ud};
    return list_rows(st, S_KVOBJ_LIST, PARAMS(P_TEXT(kind), P_TEXT(prefix), P_REAL(now)), kvobj_row, &l, err, kind,
                     "listing");
}

struct blob_out {
    void *data;
    size_t len;
};

static int read_blob(sqlite3_stmt *s, void *out)
{
    struct blob_out *b = out;
    return col_dup(s, 0, &b->data, &b->len);
}

int store_dict_get(struct store *st, const char *dict, const void *key, size_t klen, void **value, size_t *vlen,
                   struct gerr *err)
{
    struct blob_out b = {0};
    int r = query_one(st, S_DICT_GET, PARAMS(P_TEXT(dict), P_BLOB(key, klen)), read_blob, &b, err, "key of %s",
                      dict);
    *value = b.data;
    *vlen = b.len;
    return r;
}

int store_dict_put(struct store *st, const char *dict, const void *key, size_t klen, const void *value, size_t vlen,
                   bool skip_if_exists, struct gerr *err)
{
    int r = exec_write(st, skip_if_exists ? S_DICT_PUT_NEW : S_DICT_PUT,
                       PARAMS(P_TEXT(dict), P_BLOB(key, klen), P_BLOB(value, vlen)), err, "writing an entry of", dict);
    return r < 0 ? r : r > 0;
}

int store_dict_delete(struct store *st, const char *dict, const void *key, size_t klen, struct gerr *err)
{
    int r = exec_write(st, S_DICT_DELETE, PARAMS(P_TEXT(dict), P_BLOB(key, klen)), err, "deleting an entry of", dict);
    return r < 0 ? r : r > 0;
}

int store_dict_count(struct store *st, const char *dict, int64_t *n, struct gerr *err)
{
    return query_one(st, S_DICT_COUNT, PARAMS(P_TEXT(dict)), read_int64, n, err, "the entries of %s", dict);
}

static int pair_row(sqlite3_stmt *s, const struct listing *l)
{
    return l->cb.pair(sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0), sqlite3_column_blob(s, 1),
                      (size_t)sqlite3_column_bytes(s, 1), l->ud);
}

int store_dict_list(struct store *st, const char *dict, const void *after, size_t alen, int64_t limit,
                    store_pair_cb cb, void *ud, struct gerr *err)
{
    const struct listing l = {.cb.pair = cb, .ud = ud};
    return list_rows(st, S_DICT_LIST, PARAMS(P_TEXT(dict), after ? P_BLOB(after, alen) : P_NULL, P_INT(limit)),
                     pair_row, &l, err, "dict entries", "listing dict entries");
}

int store_dict_clear(struct store *st, const char *dict, struct gerr *err)
{
    return exec_ok(st, S_DICT_CLEAR, PARAMS(P_TEXT(dict)), err, "clearing", dict);
}

int store_queue_push(struct store *st, const char *queue, const char *partition, const void *value, size_t len,
                     struct gerr *err)
{
    return exec_ok(st, S_QUEUE_PUSH, PARAMS(P_TEXT(queue), P_TEXT(partition), P_BLOB(value, len)), err,
                   "putting an item into", queue);
}

int store_queue_partition_put(struct store *st, const char *queue, const char *partition, int64_t n, double ttl,
                              double now, struct gerr *err)
{
    return exec_ok(st, S_QPART_PUT,
                   PARAMS(P_TEXT(queue), P_TEXT(partition), P_INT(n), P_REAL(ttl), P_REAL(now + ttl)), err,
                   "recording a put into", queue);
}

struct qpart_out {
    int64_t items;
    double expires_at;
};

static int read_qpart(sqlite3_stmt *s, void *out)
{
    struct qpart_out *q = out;
    q->items = sqlite3_column_int64(s, 0);
    q->expires_at = sqlite3_column_double(s, 1);
    return 0;
}

int store_queue_partition(struct store *st, const char *queue, const char *partition, int64_t *items,
                          double *expires_at, struct gerr *err)
{
    struct qpart_out q = {0, 0};
    int r = query_one(st, S_QPART_GET, PARAMS(P_TEXT(queue), P_TEXT(partition)), read_qpart, &q, err,
                      "a partition of %s", queue);
    *items = q.items;
    *expires_at = q.expires_at;
    return r;
}

int store_queue_count_total(struct store *st, const char *queue, double now, int64_t *n, struct gerr *err)
{
    return query_one(st, S_QPART_SUM, PARAMS(P_TEXT(queue), P_REAL(now)), read_int64, n, err, "the items of %s",
                     queue);
}

static int qitem_row(sqlite3_stmt *s, const struct listing *l)
{
    return l->cb.qitem(sqlite3_column_int64(s, 0), sqlite3_column_blob(s, 1), (size_t)sqlite3_column_bytes(s, 1),
                       l->ud);
}

int store_queue_list(struct store *st, const char *queue, const char *partition, int64_t after, int64_t limit,
                     store_queue_item_cb cb, void *ud, struct gerr *err)
{
    const struct listing l = {.cb.qitem = cb, .ud = ud};
    return list_rows(st, S_QUEUE_LIST, PARAMS(P_TEXT(queue), P_TEXT(partition), P_INT(after), P_INT(limit)),
                     qitem_row, &l, err, "queue items", "listing queue items");
}

int store_queue_remove_upto(struct store *st, const char *queue, const char *partition, int64_t upto,
                            struct gerr *err)
{
    int n = exec_write(st, S_QUEUE_REMOVE_UPTO, PARAMS(P_TEXT(queue), P_TEXT(partition), P_INT(upto)), err,
                       "taking items from", queue);
    if (n <= 0)
        return n;
    int r = exec_ok(st, S_QPART_TAKE, PARAMS(P_TEXT(queue), P_TEXT(partition), P_INT(n)), err,
                    "counting the items taken from", queue);
    return r < 0 ? r
                 : exec_ok(st, S_QPART_DROP_EMPTY, PARAMS(P_TEXT(queue), P_TEXT(partition)), err,
                           "dropping an emptied partition of", queue);
}

int store_queue_clear(struct store *st, const char *queue, const char *partition, struct gerr *err)
{
    int r = store_begin(st, err);
    if (r < 0)
        return r;
    if (!partition) {
        r = exec_ok(st, S_QUEUE_CLEAR_ALL, PARAMS(P_TEXT(queue)), err, "clearing", queue);
        if (r == 0)
            r = exec_ok(st, S_QPART_CLEAR_ALL, PARAMS(P_TEXT(queue)), err, "clearing the partitions of", queue);
    } else {
        r = exec_ok(st, S_QUEUE_CLEAR, PARAMS(P_TEXT(queue), P_TEXT(partition)), err, "clearing", queue);
        if (r == 0)
            r = exec_ok(st, S_QPART_CLEAR, PARAMS(P_TEXT(queue), P_TEXT(partition)), err,
                        "clearing a partition of", queue);
    }
    if (r == 0)
        return store_commit(st, err);
    store_rollback(st, NULL);
    return r;
}

static int qpart_row(sqlite3_stmt *s, const struct listing *l)
{
    return l->cb.qpart((const char *)sqlite3_column_text(s, 0), (const char *)sqlite3_column_text(s, 1), l->ud);
}

int store_queue_expired(struct store *st, double now, int64_t limit, store_qpart_cb cb, void *ud, struct gerr *err)
{
    const struct listing l = {.cb.qpart = cb, .ud = ud};
    return list_rows(st, S_QPART_EXPIRED, PARAMS(P_REAL(now), P_INT(limit)), qpart_row, &l, err, "queue partitions",
                     "listing expired queue partitions");
}

/* ---------- volumes ---------- */

static void volume_from_row(sqlite3_stmt *s, struct store_volume *v)
{
    snprintf(v->name, sizeof v->name, "%s", (const char *)sqlite3_column_text(s, 0));
    v->version = sqlite3_column_int64(s, 1);
    snprintf(v->manifest, sizeof v->manifest, "%s", (const char *)sqlite3_column_text(s, 2));
    v->created_at = sqlite3_column_double(s, 3);
    v->updated_at = sqlite3_column_double(s, 4);
}

static int read_volume(sqlite3_stmt *s, void *out)
{
    volume_from_row(s, out);
    return 0;
}

int store_volume_create(struct store *st, const char *name, const char *manifest, double now, struct gerr *err)
{
    int r = exec_write(st, S_VOL_CREATE, PARAMS(P_TEXT(name), P_TEXT(manifest), P_REAL(now)), err, "creating volume",
                       name);
    return r < 0 ? r : r > 0;
}

int store_volume_get(struct store *st, const char *name, struct store_volume *out, struct gerr *err)
{
    return query_one(st, S_VOL_GET, PARAMS(P_TEXT(name)), read_volume, out, err, "volume %s", name);
}

int store_volume_set(struct store *st, const char *name, int64_t version, const char *manifest, double now,
                     struct gerr *err)
{
    return exec_update_one(st, S_VOL_SET, PARAMS(P_TEXT(name), P_INT(version), P_TEXT(manifest), P_REAL(now)), err,
                           "volume", name);
}

int store_volume_delete(struct store *st, const char *name, struct gerr *err)
{
    return exec_update_one(st, S_VOL_DELETE, PARAMS(P_TEXT(name)), err, "volume", name);
}

static int volume_row(sqlite3_stmt *s, const struct listing *l)
{
    struct store_volume v;
    volume_from_row(s, &v);
    return l->cb.volume(&v, l->ud);
}

int store_volume_list(struct store *st, const char *ws, store_volume_cb cb, void *ud, struct gerr *err)
{
    const struct listing l = {.cb.volume = cb, .ud = ud};
    if (!ws)
        return list_rows(st, S_VOL_ALL, NO_PARAMS, volume_row, &l, err, "volumes", "listing volumes");
    char prefix[STORE_KV_WS_PREFIX_MAX];
    snprintf(prefix, sizeof prefix, "%s/", ws);
    return list_rows(st, S_VOL_LIST, PARAMS(P_TEXT(prefix)), volume_row, &l, err, "volumes", "listing volumes");
}
