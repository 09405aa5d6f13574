/* Unit tests for src/store: every function, recovery across reopen, kill -9
 * durability, nesting of transactions, and a small throughput measurement. */
#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/util.h"
#include "store/store.h"
#include "unit.h"

static char tmpdir[] = "/tmp/gust-store-test-XXXXXX";
static int db_seq;

/* A fresh database path under the test's temp dir. */
static void db_path(char *out, size_t cap)
{
    snprintf(out, cap, "%s/db%d/state/gust.db", tmpdir, ++db_seq);
}

static struct store *open_new(char *path, size_t cap)
{
    db_path(path, cap);
    struct store *st = NULL;
    struct gerr err = {0};
    int r = store_open(path, &st, &err);
    if (r < 0)
        fprintf(stderr, "  store_open: %s\n", err.msg);
    return r < 0 ? NULL : st;
}

/* Appends printf output to the NUL-terminated text in buf (cap bytes), truncating:
 * how the listing callbacks record their rows. */
__attribute__((format(printf, 3, 4))) static void text_append(char *buf, size_t cap, const char *fmt, ...)
{
    size_t l = strlen(buf);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + l, cap - l, fmt, ap);
    va_end(ap);
}

static struct store *reopen(const char *path)
{
    struct store *st = NULL;
    struct gerr err = {0};
    if (store_open(path, &st, &err) < 0) {
        fprintf(stderr, "  store_open: %s\n", err.msg);
        return NULL;
    }
    return st;
}

static void make_call(struct store_call *c, const char *id, const char *app, const char *fn, double created_at)
{
    memset(c, 0, sizeof *c);
    snprintf(c->id, sizeof c->id, "%s", id);
    snprintf(c->app, sizeof c->app, "%s", app);
    snprintf(c->function, sizeof c->function, "%s", fn);
    snprintf(c->state, sizeof c->state, "pending");
    c->version = 1;
    c->created_at = created_at;
    c->map_index = -1;
}

/* Runs one SQL query returning a single integer, straight on the file. */
static long long sql_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    long long v = -999;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

/* ---------- open / schema ---------- */

UNIT_TEST(test_open_creates_and_versions)
{
    char path[256];
    struct store *st = open_new(path, sizeof path);
    CHECK(st);
    store_close(st);
    struct stat sb;
    char dir[256];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = '\0';
    CHECK(stat(dir, &sb) == 0);
    CHECK_EQ_INT(sb.st_mode & 0777, 0700);
    CHECK(stat(path, &sb) == 0);
    CHECK_EQ_INT(sb.st_mode & 0777, 0600);
    CHECK_EQ_INT(sql_int(path, "SELECT MAX(version) FROM schema_version"), STORE_SCHEMA_VERSION);

    /* Reopening an up-to-date file applies nothing more. */
    st = reopen(path);
    CHECK(st);
    store_close(st);
    CHECK_EQ_INT(sql_int(path, "SELECT COUNT(*) FROM schema_version"), STORE_SCHEMA_VERSION);

    /* WAL is persistent in the file header. */
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    sqlite3_stmt *s = NULL;
    CHECK(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(s) == SQLITE_ROW);
    CHECK_STR((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    /* A file from a newer gustd is refused. */
    CHECK(sqlite3_exec(db, "INSERT INTO schema_version VALUES (99, 0)", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    struct gerr err = {0};
    st = NULL;
    CHECK_EQ_INT(store_open(path, &st, &err), -EPROTONOSUPPORT);
    CHECK(st == NULL);
    CHECK(strstr(err.msg, "99"));

    /* Not a database. */
    char bad[300];
    snprintf(bad, sizeof bad, "%s/garbage.db", tmpdir);
    CHECK(file_write_atomic(bad, "this is not sqlite, just some text of enough length ........", 60, 0600) == 0);
    CHECK(store_open(bad, &st, &err) < 0);
    CHECK(err.msg[0]);
    CHECK_EQ_INT(store_open("", &st, &err), -EINVAL);
}

/* ---------- apps and functions ---------- */

struct app_row {
    char name[64], state[16];
    double created_at;
    int nfunctions;
};
struct app_rows {
    struct app_row rows[8];
    int n;
};

static int app_cb(const char *name, const char *state, double created_at, int nfunctions, void *ud)
{
    struct app_rows *a = ud;
    if (a->n < 8) {
        snprintf(a->rows[a->n].name, 64, "%s", name);
        snprintf(a->rows[a->n].state, 16, "%s", state);
        a->rows[a->n].created_at = created_at;
        a->rows[a->n].nfunctions = nfunctions;
    }
    a->n++;
    return 0;
}

static int ka_cb(const char *app, const char *function, const char *policy, const void *history, size_t len,
                 void *ud)
{
    int *n = ud;
    CHECK_STR(app, "default/a");
    CHECK_STR(function, "f");
    CHECK_STR(policy, "default");
    CHECK(len == 3 && !memcmp(history, "\x01\x00\x07", 3));
    (*n)++;
    return 0;
}

/* Schema 9: keep-alive histories, one row per function, replaced by a later save. */
UNIT_TEST(test_keepalive_histories)
{
    char path[256];
    struct store *st = open_new(path, sizeof path);
    CHECK(st);
    struct gerr err = {0};
    CHECK(store_keepalive_put(st, "default/a", "f", "knative", "\x01", 1, 1.0, &err) == 0);
    CHECK(store_keepalive_put(st, "default/a", "f", "default", "\x01\x00\x07", 3, 2.0, &err) == 0);
    int n = 0;
    CHECK(store_keepalive_list(st, ka_cb, &n, &err) == 0);
    CHECK_EQ_INT(n, 1);
    store_close(st);
}

struct sched_rows {
    int n;
    char spec[64], runs[128];
    double next_at;
};

static int sched_cb(const char *app, const char *function, const char *spec, double next_at, const char *last_runs,
                    void *ud)
{
    struct sched_rows *r = ud;
    CHECK_STR(app, "default/a");
    CHECK_STR(function, "f");
    snprintf(r->spec, sizeof r->spec, "%s", spec);
    snprintf(r->runs, sizeof r->runs, "%s", last_runs);
    r->next_at = next_at;
    r->n++;
    return 0;
}

/* Schema 11: a schedule's row, replaced by each fire, kept across a reopen; a fire's
 * row and call are one transaction (rolled back together). */
UNIT_TEST(test_schedules)
{
    char path[256];
    struct store *st = open_new(path, sizeof path);
    CHECK(st);
    struct gerr err = {0};
    CHECK(store_schedule_put(st, "default/a", "f", "{\"every\":2}", 10.0, "[]", &err) == 0);
    CHECK(store_schedule_put(st, "default/a", "f", "{\"every\":2}", 12.0, "[{\"at\":10}]", &err) == 0);
    CHECK(store_begin(st, &err) == 0);
    CHECK(store_schedule_put(st, "default/a", "f", "{\"every\":2}", 14.0, "[{\"at\":12}]", &err) == 0);
    CHECK(store_rollback(st, &err) == 0);
    store_close(st);
    st = reopen(path);
    CHECK(st);
    struct sched_rows r = {0};
    CHECK(store_schedule_list(st, sched_cb, &r, &err) == 0);
    CHECK_EQ_INT(r.n, 1);
    CHECK_STR(r.spec, "{\"every\":2}");
    CHECK_STR(r.runs, "[{\"at\":10}]");
    CHECK(r.next_at == 12.0);
    CHECK(store_schedule_delete(st, "default/a", "f", &err) == 0);
    CHECK(store_schedule_delete(st, "default/a", "f", &err) == 0);
    r.n = 0;
    CHECK(store_schedule_list(st, sched_cb, &r, &err) == 0);
    CHECK_EQ_INT(r.n, 0);
    store_close(st);
}

static int kv_item_cb(int64_t id, const void *value, size_t len, void *ud)
{
    char *seen = ud;
    strncat(seen, value, len);
    return 0;
}

static int kv_expired_cb(const char *queue, const char *partition, void *ud)
{
    struct { char q[64], p[64]; int n; } *ex = ud;
    snprintf(ex->q, sizeof ex->q, "%s", queue);
    snprintf(ex->p, sizeof ex->p, "%s", partition);
    ex->n++;
    return 0;
}

/* Schema 12: dicts and queues; a queue's partitions are separate FIFOs; deleting an
 * object deletes what it held; another workspace's listing does not show it. Schema 13:
 * a partition's count and expiry follow puts, gets and clears. */
UNIT_TEST(test_dicts_and_queues)
{
    char path[256];
    struct store *st = open_new(path, sizeof path);
    CHECK(st);
    struct gerr err = {0};
    CHECK_EQ_INT(store_kvobj_create(st, "queue", "default/q", 1.0, &err), 1);
    CHECK_EQ_INT(store_kvobj_create(st, "queue", "default/q", 2.0, &err), 0);
    CHECK_EQ_INT(store_kvobj_exists(st, "dict", "default/q", NULL, &err), -ENOENT);
    const char *const items[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        CHECK(store_queue_push(st, "default/q", i == 1 ? "p" : "", items[i], 1, &err) == 0);
        /* "p" expires at 100 + 10, "" at 100 + 50 */
        CHECK(store_queue_partition_put(st, "default/q", i == 1 ? "p" : "", 1, i == 1 ? 10 : 50, 100.0, &err) == 0);
    }
    int64_t n = 0;
    double exp = 0;
    CHECK(store_queue_count_total(st, "default/q", 0.0, &n, &err) == 0 && n == 3);
    CHECK(store_queue_count_total(st, "default/q", 120.0, &n, &err) == 0 && n == 2); /* "p" expired */
    CHECK(store_queue_partition(st, "default/q", "", &n, &exp, &err) == 0 && n == 2 && exp == 150.0);
    CHECK_EQ_INT(store_queue_partition(st, "default/q", "nope", &n, &exp, &err), -ENOENT);
    char seen[8] = "";
    CHECK(store_queue_list(st, "default/q", "", 0, 10, kv_item_cb, seen, &err) == 0);
    CHECK_STR(seen, "ac");
    struct { char q[64], p[64]; int n; } ex = {.n = 0};
    CHECK(store_queue_expired(st, 120.0, 10, kv_expired_cb, &ex, &err) == 0);
    CHECK(ex.n == 1 && !strcmp(ex.q, "default/q") && !strcmp(ex.p, "p"));
    CHECK(store_queue_clear(st, "default/q", "p", &err) == 0);
    CHECK_EQ_INT(store_queue_partition(st, "default/q", "p", &n, &exp, &err), -ENOENT);
    /* A get takes the oldest: the count follows, and an emptied partition is forgotten. */
    CHECK(store_begin(st, &err) == 0);
    CHECK(store_queue_remove_upto(st, "default/q", "", 1, &err) == 0);
    CHECK(store_commit(st, &err) == 0);
    CHECK(store_queue_partition(st, "default/q", "", &n, &exp, &err) == 0 && n == 1);
    CHECK(store_begin(st, &err) == 0);
    CHECK(store_queue_remove_upto(st, "default/q", "", 3, &err) == 0);
    CHECK(store_commit(st, &err) == 0);
    CHECK_EQ_INT(store_queue_partition(st, "default/q", "", &n, &exp, &err), -ENOENT);
    CHECK(store_queue_push(st, "default/q", "", "d", 1, &err) == 0);
    CHECK(store_queue_partition_put(st, "default/q", "", 1, 50, 100.0, &err) == 0);
    CHECK_EQ_INT(store_kvobj_create(st, "dict", "default/d", 1.0, &err), 1);
    CHECK_EQ_INT(store_dict_put(st, "default/d", "k", 1, "v1", 2, false, &err), 1);
    CHECK_EQ_INT(store_dict_put(st, "default/d", "k", 1, "v2", 2, true, &err), 0);
    void *v = NULL;
    size_t vlen = 0;
    CHECK(store_dict_get(st, "default/d", "k", 1, &v, &vlen, &err) == 0 && vlen == 2 && !memcmp(v, "v1", 2));
    free(v);
    CHECK_EQ_INT(store_dict_delete(st, "default/d", "k", 1, &err), 1);
    CHECK_EQ_INT(store_dict_delete(st, "default/d", "k", 1, &err), 0);
    CHECK(store_kvobj_delete(st, "queue", "default/q", &err) == 0);
    CHECK_EQ_INT(sql_int(path, "SELECT COUNT(*) FROM queue_items"), 0);
    CHECK_EQ_INT(sql_int(path, "SELECT COUNT(*) FROM queue_partitions"), 0);
    CHECK_EQ_INT(store_kvobj_delete(st, "queue", "default/q", &err), -ENOENT);
    store_close(st);
}

/* Schema 13: the items a schema-12 file's queues held get their partitions' counts
 * and Modal's default expiry, a day from the migration. */
UNIT_TEST(test_queue_partitions_migration)
{
    char path[256];
    struct store *st = open_new(path, sizeof path);
    CHECK(st);
    struct gerr err = {0};
    for (int i = 0; i < 3; i++)
        CHECK(store_queue_push(st, "default/q", i == 1 ? "p" : "", "x", 1, &err) == 0);
    store_close(st);
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db,
                       "DROP TABLE queue_partitions; ALTER TABLE function_versions DROP COLUMN retired_at;"
                       "DROP TABLE volumes; ALTER TABLE calls DROP COLUMN timeline; DELETE FROM schema_version WHERE version >= 13",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    st = reopen(path);
    CHECK(st);
    int64_t n = 0;
    double exp = 0;
    CHECK(store_queue_partition(st, "default/q", "", &n, &exp, &err) == 0 && n == 2);
    CHECK(exp > wall_s() + 86000 && exp < wall_s() + 86500);
    CHECK(store_queue_partition(st, "default/q", "p", &n, &exp, &err) == 0 && n == 1);
    store_close(st);
}

/* Schema 8: what a schema-7 file held belongs to workspace "default" (qualified
 * names), except the built-in images; workspaces, tokens and blob owners are kept. */
UNIT_TEST(test_identity_migration_and_tables)
{
    char path[256];
    struct store *st = open_new(path, sizeof path);
    CHECK(st);
    struct gerr err = {0};
    CHECK(store_app_upsert(st, "default/a", "deployed", 1.0, &err) == 0);
    CHECK(store_image_put(st, "default/mine", "/r", false, NULL, 1.0, &err) == 0);
    CHECK(store_image_put(st, "busybox", "/b", false, NULL, 1.0, &err) == 0);
    CHECK(store_secret_put(st, "default/s", "{}", 1.0, &err) == 0);
    store_close(st);
    /* Back to what schema 7 looked like. */
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db,
                       "DROP TABLE workspaces; DROP TABLE tokens; DROP TABLE blob_owners; DROP TABLE keepalive;"
                       "DROP TABLE schedules;"
                       "DROP TABLE kv_objects; DROP TABLE dict_entries; DROP TABLE queue_items;"
                       "DROP TABLE queue_partitions; DROP TABLE volumes; ALTER TABLE function_versions DROP COLUMN retired_at;"
                       "ALTER TABLE calls DROP COLUMN timeline;"
                       "DROP INDEX logs_app_seq; ALTER TABLE logs DROP COLUMN seq; ALTER TABLE logs DROP COLUMN concurrent;"
                       "UPDATE apps SET name = substr(name, 9); UPDATE images SET name = substr(name, 9)"
                       " WHERE name LIKE 'default/%'; UPDATE secrets SET name = substr(name, 9);"
                       "DELETE FROM schema_version WHERE version >= 8",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    CHECK_EQ_INT(sql_int(path, "SELECT COUNT(*) FROM apps WHERE name = 'a'"), 1);
    st = reopen(path);
    CHECK(st);
    CHECK_EQ_INT(sql_int(path, "SELECT COUNT(*) FROM apps WHERE name = 'default/a'"), 1);
    CHECK_EQ_INT(sql_int(path, "SELECT COUNT(*) FROM images WHERE name = 'default/mine'"), 1);
    CHECK_EQ_INT(sql_int(path, "SELECT COUNT(*) FROM images WHERE name = 'busybox'"), 1);
    CHECK_EQ_INT(sql_int(path, "SELECT COUNT(*) FROM secrets WHERE name = 'default/s'"), 1);

    CHECK(store_workspace_create(st, "w", 2.0, "{}", &err) == 0);
    CHECK_EQ_INT(store_workspace_create(st, "w", 2.0, "{}", &err), -EEXIST);
    CHECK(store_workspace_set_quotas(st, "w", "{\"containers\":1}", &err) == 0);
    CHECK_EQ_INT(store_workspace_set_quotas(st, "nope", "{}", &err), -ENOENT);
    struct store_token t = {.created_at = 3.0};
    snprintf(t.id, sizeof t.id, "abc");
    snprintf(t.hash, sizeof t.hash, "00");
    snprintf(t.workspace, sizeof t.workspace, "w");
    snprintf(t.role, sizeof t.role, "root");
    CHECK_EQ_INT(store_token_put(st, &t, &err), -EINVAL); /* not a role */
    snprintf(t.role, sizeof t.role, "invoker");
    CHECK(store_token_put(st, &t, &err) == 0);
    CHECK_EQ_INT(store_token_put(st, &t, &err), -EEXIST);
    CHECK(store_token_delete(st, "abc", &err) == 0);
    CHECK_EQ_INT(store_token_delete(st, "abc", &err), -ENOENT);
    CHECK_EQ_INT(store_blob_owned(st, "w", "sha256:x", &err), -ENOENT);
    CHECK(store_blob_own(st, "w", "sha256:x", 100, &err) == 0);
    CHECK(store_blob_own(st, "w", "sha256:x", 100, &err) == 0);
    CHECK(store_blob_own(st, "w", "sha256:y", 50, &err) == 0);
    CHECK(store_blob_owned(st, "w", "sha256:x", &err) == 0);
    CHECK_EQ_INT(store_blob_owned(st, "v", "sha256:x", &err), -ENOENT);
    uint64_t bytes = 0;
    CHECK(store_workspace_stored_bytes(st, "w", &bytes, &err) == 0);
    CHECK_EQ_INT(bytes, 150);
    store_close(st);
}

UNIT_TEST(test_apps)
{
    char path[256];
    struct store *st = open_new(path, sizeof path);
    CHECK(st);
    struct gerr err = {0};
    char state[16];
    double created = 0;
    CHECK_EQ_INT(store_app_get(st, "demo", state, &created, &err), -ENOENT);
    CHECK(strstr(err.msg, "demo"));
    CHECK_EQ_INT(store_app_upsert(st, "demo", "deployed", 100.5, &err), 0);
    CHECK_EQ_INT(store_app_upsert(st, "alpha", "deployed", 50, &err), 0);
    CHECK_EQ_INT(store_app_upsert(st, "demo", "stopped", 200, &err), 0);
    CHECK_EQ_INT(store_app_get(st, "demo", state, &created, &err), 0);
    CHECK_STR(state, "stopped");
    CHECK(created == 100.5); /* kept across updates */
    CHECK_EQ_INT(store_app_upsert(st, "demo", "exploded", 300, &err), -EINVAL);
    CHECK(strstr(err.msg, "CHECK"));
    CHECK_EQ_INT(sql_int(path, "SELECT updated_at FROM apps WHERE name='demo'"), 200);

    uint32_t v = 0;
    CHECK_EQ_INT(store_function_add_version(st, "demo", "echo", "{}", 1, &v, &err), 0);
    CHECK_EQ_INT(store_function_add_version(st, "demo", "sum", "{}", 1, &v, &err), 0);
    struct app_rows rows = {0};
    CHECK_EQ_INT(store_app_list(st, app_cb, &rows, &err), 0);
    CHECK_EQ_INT(rows.n, 2);
    CHECK_STR(rows.rows[0].name, "alpha");
    CHECK_EQ_INT(rows.rows[0].nfunctions, 0);
    CHECK_STR(rows.rows[1].name, "demo");
    CHECK_STR(rows.rows[1].state, "stopped");
    CHECK_EQ_INT(rows.rows[1].nfunctions, 2);
    CHECK(rows.rows[1].created_at == 100.5);
    store_close(st);
}

struct fn_rows {
    char text[512];
};

static int fn_cb(const char *app, const char *name, uint32_t version, const char *spec_json, void *ud)
{
    struct fn_rows *f = ud;
    text_append(f->text, sizeof f->text, "%s.%s=%u:%s;", app, name, version, spec_json);
    return 0;
}

UNIT_TEST(test_function_versions)
{
    char path[256];
    struct store *st = open_new(path, sizeof path);
    CHECK(st);
    struct gerr err = {0};
    uint32_t v = 0;
    AUTO_FREE char *spec = NULL;
    CHECK_EQ_INT(store_function_latest(st, "demo", "echo", &v, &spec, &err), -ENOENT);
    CHECK(spec == NULL);
    CHECK_EQ_INT(store_function_add_version(st, "demo", "echo", "{\"v\":1}", 10, &v, &err), 0);
    CHECK_EQ_INT(v, 1);
    CHECK_EQ_INT(store_function_add_version(st, "demo", "echo", "{\"v\":2}", 11, &v, &err), 0);
    CHECK_EQ_INT(v, 2);
    CHECK_EQ_INT(store_function_add_version(st, "other", "echo", "{\"o\":1}", 11, &v, &err), 0);
    CHECK_EQ_INT(v, 1); /* per (app, function) */
    CHECK_EQ_INT(store_function_add_version(st, "demo", "sum", "{\"s\":1}", 11, &v, &err), 0);
    CHECK_EQ_INT(v, 1);
    CHECK_EQ_INT(store_function_add_version(st, "demo", "echo", "{\"v\":3}", 12, &v, &err), 0);
    CHECK_EQ_INT(v, 3);

    CHECK_EQ_INT(store_function_latest(st, "demo", "echo", &v, &spec, &err), 0);
    CHECK_EQ_INT(v, 3);
    CHECK_STR(spec, "{\"v\":3}");
    free(spec);
    spec = NULL;
    CHECK_EQ_INT(store_function_get_version(st, "demo", "echo", 2, &spec, &err), 0);
    CHECK_STR(spec, "{\"v\":2}");
    free(spec);
    spec = NULL;
    CHECK_EQ_INT(store_function_get_version(st, "demo", "echo", 4, &spec, &err), -ENOENT);
    CHECK(strstr(err.msg, "version 4"));

    /* Latest of every function, whatever the app's state; survives reopen. */
    CHECK_EQ_INT(store_app_upsert(st, "other", "stopped", 1, &err), 0);
    store_close(st);
    st = reopen(path);
    CHECK(st);
    struct fn_rows rows = {{0}};
    CHECK_EQ_INT(store_function_list_latest(st, fn_cb, &rows, &err), 0);
    CHECK_STR(rows.text, "demo.echo=3:{\"v\":3};demo.sum=1:{\"s\":1};other.echo=1:{\"o\":1};");
    /* Numbering continues after reopen. */
    CHECK_EQ_INT(store_function_add_version(st, "demo", "echo", "{\"v\":4}", 13, &v, &err), 0);
    CHECK_EQ_INT(v, 4);
    /* Schema 13: a retired function is left out until a new version brings it back. */
    CHECK_EQ_INT(store_function_retire(st, "demo", "sum", 14, &err), 0);
    rows = (struct fn_rows){{0}};
    CHECK_EQ_INT(store_function_list_latest(st, fn_cb, &rows, &err), 0);
    CHECK_STR(rows.text, "demo.echo=4:{\"v\":4};other.echo=1:{\"o\":1};");
    CHECK_EQ_INT(store_function_add_version(st, "demo", "sum", "{\"s\":2}", 15, &v, &err), 0);
    rows = (struct fn_rows){{0}};
    CHECK_EQ_INT(store_function_list_latest(st, fn_cb, &rows, &err), 0);
    CHECK_STR(rows.text, "demo.echo=4:{\"v\":4};demo.sum=2:{\"s\":2};other.echo=1:{\"o\":1};");
    /* Hostile names are plain data. */
    CHECK_EQ_INT(store_function_add_version(st, "x'); DROP TABLE apps;--", "f", "{}", 1, &v, &err), 0);
    CHECK_EQ_INT(v, 1);
    CHECK_EQ_INT(store_app_upsert(st, "still-here", "deployed", 1, &err), 0);
    store_close(st);
}

/* ---------- calls ---------- */

/* What store_calls_recent listed: ids in order, the first one's timeline. */
struct recent {
    size_t n;
    char ids[4][64];
    char timeline0[64];
};

static int recent_row(const struct store_call *c, void *ud)
{
    struct recent *r = ud;
    if (r->n == 0)
        snprintf(r->timeline0, sizeof r->timeline0, "%s", c->timeline ? c->timeline : "");
    if (r->n < 4)
        snprintf(r->ids[r->n], sizeof r->ids[0], "%s", c->id);
    r->n++;
    return 0;
}

UNIT_TEST(test_call_lifecycle)
{
    char path[256];
    struct store *st = open_new(path, sizeof path);
    CHECK(st);
    struct gerr err = {0};
    static const char input[] = {'a', 0, 'b', 0, 0, (char)0xff, 'z'};
    struct store_call c;
    make_call(&c, "fc-1", "demo", "echo", 1000.25);
    c.version = 7;
    c.input = (void *)input;
    c.input_len = sizeof input;
    snprintf(c.map_id, sizeof c.map_id, "fm-9");
    c.map_index = 41;
    CHECK_EQ_INT(store_call_insert(st, &c, &err), 0);
    CHECK_EQ_INT(store_call_insert(st, &c, &err), -EEXIST);
    CHECK(strstr(err.msg, "fc-1"));
    struct store_call bad;
    make_call(&bad, "fc-bad", "demo", "echo", 1);
    snprintf(bad.state, sizeof bad.state, "bogus");
    CHECK_EQ_INT(store_call_insert(st, &bad, &err), -EINVAL);

    struct store_call g = {0};
    CHECK_EQ_INT(store_call_get(st, "fc-1", &g, true, &err), 0);
    CHECK_STR(g.id, "fc-1");
    CHECK_STR(g.app, "demo");
    CHECK_STR(g.function, "echo");
    CHECK_EQ_INT(g.version, 7);
    CHECK_STR(g.state, "pending");
    CHECK_EQ_INT(g.input_len, sizeof input);
    CHECK(memcmp(g.input, input, sizeof input) == 0);
    CHECK(g.output == NULL);
    CHECK_EQ_INT(g.output_len, 0);
    CHECK_STR(g.error_code, "");
    CHECK(g.error_message == NULL);
    CHECK(g.created_at == 1000.25);
    CHECK(g.started_at == 0 && g.finished_at == 0 && g.next_attempt_at == 0);
    CHECK_STR(g.map_id, "fm-9");
    CHECK_EQ_INT(g.map_index, 41);
    store_call_free(&g);
    CHECK(g.input == NULL);

    CHECK_EQ_INT(store_call_set_running(st, "fc-1", 1, 1001, &err), 0);
    CHECK_EQ_INT(store_call_get(st, "fc-1", &g, false, &err), 0);
    CHECK_STR(g.state, "running");
    CHECK_EQ_INT(g.attempts, 1);
    CHECK(g.started_at == 1001);
    CHECK(g.input == NULL);
    CHECK_EQ_INT(g.input_len, sizeof input);
    store_call_free(&g);

    CHECK_EQ_INT(store_call_set_pending(st, "fc-1", 1, 1010.5, &err), 0);
    CHECK_EQ_INT(store_call_get(st, "fc-1", &g, false, &err), 0);
    CHECK_STR(g.state, "pending");
    CHECK(g.next_attempt_at == 1010.5);
    store_call_free(&g);

    CHECK_EQ_INT(store_call_set_running(st, "fc-1", 2, 1011, &err), 0);
    static const char output[] = {0, 0, 'o', 'k', 0};
    CHECK_EQ_INT(store_call_finish(st, "fc-1", "running", output, sizeof output, NULL, NULL, 1012, NULL, &err),
                 -EINVAL);
    CHECK_EQ_INT(store_call_finish(st, "fc-1", "succeeded", output, sizeof output, NULL, NULL, 1012,
                                   "{\"ended_us\":5}", &err),
                 0);
    CHECK_EQ_INT(store_call_get(st, "fc-1", &g, true, &err), 0);
    CHECK_STR(g.state, "succeeded");
    CHECK_STR(g.timeline, "{\"ended_us\":5}");
    CHECK_EQ_INT(g.attempts, 2);
    CHECK_EQ_INT(g.output_len, sizeof output);
    CHECK(memcmp(g.output, output, sizeof output) == 0);
    CHECK(g.finished_at == 1012);
    CHECK(g.next_attempt_at == 0);
    store_call_free(&g);
    CHECK_EQ_INT(store_call_get(st, "fc-1", &g, false, &err), 0);
    CHECK(g.output == NULL);
    CHECK_EQ_INT(g.output_len, sizeof output); /* size without loading it */
    store_call_free(&g);

    /* A failure with an error and an empty (not absent) input. */
    make_call(&c, "fc-2", "demo", "echo", 1003);
    c.input = "";
    c.input_len = 0;
    CHECK_EQ_INT(store_call_insert(st, &c, &err), 0);
    CHECK_EQ_INT(store_call_finish(st, "fc-2", "failed", NULL, 0, "exit_status", "exited with status 3", 1004, NULL, &err),
                 0);
    CHECK_EQ_INT(store_call_get(st, "fc-2", &g, true, &err), 0);
    CHECK_STR(g.state, "failed");
    CHECK(g.input != NULL);
    CHECK_EQ_INT(g.input_len, 0);
    CHECK(g.output == NULL);
    CHECK_STR(g.error_code, "exit_status");
    CHECK_STR(g.error_message, "exited with status 3");
    CHECK_EQ_INT(g.map_index, -1);
    CHECK_STR(g.map_id, "");
    CHECK(g.timeline == NULL);
    store_call_free(&g);

    /* A function's newest finished calls, newest finish first, within the limit. */
    struct recent r = {0};
    CHECK_EQ_INT(store_calls_recent(st, "demo", "echo", 1, recent_row, &r, &err), 0);
    CHECK_EQ_INT(r.n, 1);
    CHECK_STR(r.ids[0], "fc-1");
    CHECK_STR(r.timeline0, "{\"ended_us\":5}");
    memset(&r, 0, sizeof r);
    CHECK_EQ_INT(store_calls_recent(st, "demo", "echo", 10, recent_row, &r, &err), 0);
    CHECK_EQ_INT(r.n, 2);
    CHECK_STR(r.ids[1], "fc-2");
    memset(&r, 0, sizeof r);
    CHECK_EQ_INT(store_calls_recent(st, "demo", "other", 10, recent_row, &r, &err), 0);
    CHECK_EQ_INT(r.n, 0);

    CHECK_EQ_INT(store_call_get(st, "fc-nope", &g, true, &err), -ENOENT);
    CHECK(strstr(err.msg, "fc-nope"));
    CHECK_EQ_INT(store_call_set_running(st, "fc-nope", 1, 1, &err), -ENOENT);
    CHECK_EQ_INT(store_call_set_pending(st, "fc-nope", 1, 1, &err), -ENOENT);
    CHECK_EQ_INT(store_call_finish(st, "fc-nope", "failed", NULL, 0, NULL, NULL, 1, NULL, &err), -ENOENT);
    store_close(st);
}

struct recover_ctx {
    struct store *st;
    int n;
    double last_created;
    char seen[400];
    int bad_order, dup;
    int modify; /* rewrite the rows while listing */
};

static int recover_cb(const struct store_call *c, void *ud)
{
    struct recover_ctx *r = ud;
    int idx = atoi(c->id + 3);
    if (idx < 0 || idx >= 400 || r->seen[idx])
        r->dup++;
    else
        r->seen[idx] = 1;
    if (c->created_at < r->last_created)
        r->bad_order++;
    r->last_created = c->created_at;
    /* Every input is "in-<idx>" with a NUL in the middle. */
    char want[32];
    int wl = snprintf(want, sizeof want, "in-%d", idx) + 1;
    if (c->input_len != (size_t)wl + 3 || memcmp(c->input, want, (size_t)wl) != 0)
        r->dup += 1000;
    if (r->modify) {
        struct gerr err;
        if (idx % 2)
            store_call_finish(r->st, c->id, "cancelled", NULL, 0, "cancelled", "x", 1, NULL, &err);
        else
            store_call_set_pending(r->st, c->id, c->attempts, 0, &err);
    }
    r->n++;
    return 0;
}

UNIT_TEST(test_recovery_across_reopen)
{
    char path[256];
    struct store *st = open_new(path, sizeof path);
    CHECK(st);
    struct gerr err = {0};
    CHECK_EQ_INT(store_begin(st, &err), 0);
    for (int i = 0; i < 300; i++) {
        char id[16], in[32];
        snprintf(id, sizeof id, "fc-%d", i);
        int l = snprintf(in, sizeof in, "in-%d", i) + 1;
        memcpy(in + l, "\0x\0", 3);
        struct store_call c;
        /* Many equal timestamps, straddling the page size, to exercise the tiebreak. */
        make_call(&c, id, "demo", "echo", 5000 + i / 100);
        c.input = in;
        c.input_len = (size_t)l + 3;
        CHECK_EQ_INT(store_call_insert(st, &c, &err), 0);
    }
    for (int i = 0; i < 300; i += 3) {
        char id[16];
        snprintf(id, sizeof id, "fc-%d", i);
        CHECK_EQ_INT(store_call_finish(st, id, "succeeded", "out", 3, NULL, NULL, 6000, NULL, &err), 0);
    }
    for (int i = 1; i < 300; i += 3) {
        char id[16];
        snprintf(id, sizeof id, "fc-%d", i);
        CHECK_EQ_INT(store_call_set_running(st, id, 1, 5500, &err), 0);
    }
    CHECK_EQ_INT(store_commit(st, &err), 0);
    store_close(st);

    st = reopen(path);
    CHECK(st);
    struct recover_ctx r = {.st = st, .modify = 1};
    CHECK_EQ_INT(store_calls_unfinished(st, recover_cb, &r, &err), 0);
    CHECK_EQ_INT(r.n, 200);
    CHECK_EQ_INT(r.dup, 0);
    CHECK_EQ_INT(r.bad_order, 0);
    for (int i = 0; i < 300; i++)
        CHECK_EQ_INT(r.seen[i], i % 3 != 0);
    /* The callback's writes landed: half cancelled, the rest pending. */
    struct recover_ctx r2 = {.st = st};
    CHECK_EQ_INT(store_calls_unfinished(st, recover_cb, &r2, &err), 0);
    CHECK_EQ_INT(r2.n, 100);
    CHECK_EQ_INT(r2.dup, 0);
    CHECK_EQ_INT(sql_int(path, "SELECT COUNT(*) FROM calls WHERE state='running'"), 0);
    store_close(st);
}

static int count_cb(const struct store_call *c, void *ud)
{
    ++*(int *)ud;
    return 0;
}

static int stop_neg_cb(const struct store_call *c, void *ud)
{
    ++*(int *)ud;
    return -ECANCELED;
}

static int stop_pos_cb(const struct store_call *c, void *ud)
{
    ++*(int *)ud;
    return 1;
}

UNIT_TEST(test_cancel_app_and_prune)
{
    char path[256];
    struct store *st = open_new(path, sizeof path);
    CHECK(st);
    struct gerr err = {0};
    const char *apps[] = {"demo", "demo", "demo", "other", "demo"};
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "fc-%d", i);
        struct store_call c;
        make_call(&c, id, apps[i], "echo", 100 + i);
        CHECK_EQ_INT(store_call_insert(st, &c, &err), 0);
    }
    CHECK_EQ_INT(store_call_set_running(st, "fc-1", 1, 110, &err), 0);
    CHECK_EQ_INT(store_call_finish(st, "fc-2", "succeeded", "ok", 2, NULL, NULL, 120, NULL, &err), 0);
    CHECK_EQ_INT(store_calls_cancel_app(st, "demo", 130, &err), 3); /* fc-0, fc-1, fc-4 */
    struct store_call g;
    CHECK_EQ_INT(store_call_get(st, "fc-1", &g, false, &err), 0);
    CHECK_STR(g.state, "cancelled");
    CHECK_STR(g.error_code, "cancelled");
    CHECK(g.error_message && g.error_message[0]);
    CHECK(g.finished_at == 130);
    store_call_free(&g);
    CHECK_EQ_INT(store_call_get(st, "fc-2", &g, false, &err), 0);
    CHECK_STR(g.state, "succeeded");
    store_call_free(&g);
    CHECK_EQ_INT(store_call_get(st, "fc-3", &g, false, &err), 0);
    CHECK_STR(g.state, "pending");
    store_call_free(&g);
    CHECK_EQ_INT(store_calls_cancel_app(st, "demo", 131, &err), 0);

    /* Callback stopping: negative is an error, positive a quiet stop. */
    int n = 0;
    CHECK_EQ_INT(store_calls_unfinished(st, stop_neg_cb, &n, &err), -ECANCELED);
    CHECK_EQ_INT(n, 1);
    CHECK(strstr(err.msg, "callback"));
    n = 0;
    CHECK_EQ_INT(store_calls_unfinished(st, stop_pos_cb, &n, &err), 0);
    CHECK_EQ_INT(n, 1);

    /* Prune: finished before the cutoff only. fc-2 finished at 120, the others at 130. */
    CHECK_EQ_INT(store_calls_prune(st, 125, &err), 1);
    CHECK_EQ_INT(store_call_get(st, "fc-2", &g, false, &err), -ENOENT);
    CHECK_EQ_INT(store_calls_prune(st, 1e12, &err), 3);
    CHECK_EQ_INT(store_call_get(st, "fc-3", &g, false, &err), 0); /* unfinished stays */
    store_call_free(&g);
    store_close(st);
}

/* Trimming one function keeps its newest finished calls, never an unfinished one, and
 * leaves other functions alone. */
UNIT_TEST(test_calls_trim_fn)
{
    char path[256];
    struct store *st = open_new(path, sizeof path);
    CHECK(st);
    struct gerr err = {0};
    const char *fns[] = {"f", "f", "f", "g", "f"};
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "fc-%d", i);
        struct store_call c;
        make_call(&c, id, "demo", fns[i], 100 + i);
        CHECK_EQ_INT(store_call_insert(st, &c, &err), 0);
        if (i < 4)
            CHECK_EQ_INT(store_call_finish(st, id, "succeeded", "ok", 2, NULL, NULL, 110 + 10 * i, NULL, &err), 0);
    }
    CHECK_EQ_INT(store_calls_trim_fn(st, "demo", "f", 1, &err), 2); /* fc-0 and fc-1 */
    struct store_call g;
    CHECK_EQ_INT(store_call_get(st, "fc-1", &g, false, &err), -ENOENT);
    CHECK_EQ_INT(store_call_get(st, "fc-2", &g, false, &err), 0);
    store_call_free(&g);
    CHECK_EQ_INT(store_call_get(st, "fc-4", &g, false, &err), 0); /* pending */
    store_call_free(&g);
    CHECK_EQ_INT(store_calls_trim_fn(st, "demo", "f", 1, &err), 0);
    CHECK_EQ_INT(store_calls_trim_fn(st, "demo", "g", 0, &err), 1);
    CHECK_EQ_INT(sql_int(path, "SELECT COUNT(*) FROM calls"), 2);
    store_close(st);
}

UNIT_TEST(test_kill9_durability)
{
    char path[256];
    db_path(path, sizeof path);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct store *st = NULL;
        struct gerr err;
        if (store_open(path, &st, &err) < 0)
            _exit(2);
        if (store_begin(st, &err) < 0)
            _exit(3);
        for (int i = 0; i < 50; i++) {
            char id[16];
            snprintf(id, sizeof id, "fc-%d", i);
            struct store_call c;
            make_call(&c, id, "demo", "echo", 100 + i);
            c.input = "payload\0x";
            c.input_len = 9;
            if (store_call_insert(st, &c, &err) < 0)
                _exit(4);
        }
        if (store_commit(st, &err) < 0)
            _exit(5);
        struct store_call c;
        make_call(&c, "fc-auto", "demo", "echo", 200); /* outside a transaction: autocommit */
        if (store_call_insert(st, &c, &err) < 0 || store_kv_set(st, "heartbeat", "123.5", &err) < 0)
            _exit(6);
        if (store_begin(st, &err) < 0)
            _exit(7);
        make_call(&c, "fc-uncommitted", "demo", "echo", 300);
        if (store_call_insert(st, &c, &err) < 0)
            _exit(8);
        raise(SIGKILL);
        _exit(9);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    struct store *st = reopen(path);
    CHECK(st);
    struct gerr err = {0};
    int n = 0;
    CHECK_EQ_INT(store_calls_unfinished(st, count_cb, &n, &err), 0);
    CHECK_EQ_INT(n, 51);
    struct store_call g;
    CHECK_EQ_INT(store_call_get(st, "fc-49", &g, true, &err), 0);
    CHECK_EQ_INT(g.input_len, 9);
    CHECK(memcmp(g.input, "payload\0x", 9) == 0);
    store_call_free(&g);
    CHECK_EQ_INT(store_call_get(st, "fc-auto", &g, false, &err), 0);
    store_call_free(&g);
    CHECK_EQ_INT(store_call_get(st, "fc-uncommitted", &g, false, &err), -ENOENT);
    AUTO_FREE char *hb = NULL;
    CHECK_EQ_INT(store_kv_get(st, "heartbeat", &hb, &err), 0);
    CHECK_STR(hb, "123.5");
    store_close(st);
    CHECK_EQ_INT(sql_int(path, "SELECT COUNT(*) FROM calls WHERE state='pending'"), 51);
}

/* ---------- containers ---------- */

struct ctr_rows {
    struct store_container rows[8];
    int n;
};

static int ctr_cb(const struct store_container *c, void *ud)
{
    struct ctr_rows *a = ud;
    if (a->n < 8)
        a->rows[a->n] = *c;
    a->n++;
    return 0;
}

static struct store_container ctr(const char *id, double started_at)
{
    struct store_container c = {0};
    snprintf(c.id, sizeof c.id, "%s", id);
    snprintf(c.app, sizeof c.app, "demo");
    snprintf(c.function, sizeof c.function, "echo");
    c.version = 2;
    c.cpu_millicores = 500;
    c.memory_mib = 256;
    c.started_at = started_at;
    return c;
}

UNIT_TEST(test_containers)
{
    char path[256];
    struct store *st = open_new(path, sizeof path);
    CHECK(st);
    struct gerr err = {0};
    struct store_container a = ctr("ct-a", 100), b = ctr("ct-b", 200), c = ctr("ct-c", 300), d = ctr("ct-d", 900);
    snprintf(b.gpu_type, sizeof b.gpu_type, "H100");
    b.gpu_count = 2;
    CHECK_EQ_INT(store_container_start(st, &a, &err), 0);
    CHECK_EQ_INT(store_container_start(st, &a, &err), -EEXIST);
    CHECK_EQ_INT(store_container_start(st, &b, &err), 0);
    CHECK_EQ_INT(store_container_start(st, &c, &err), 0);
    CHECK_EQ_INT(store_container_start(st, &d, &err), 0);
    CHECK_EQ_INT(store_container_ready(st, "ct-a", 101, &err), 0);
    CHECK_EQ_INT(store_container_update(st, "ct-a", 5.5, 10, &err), 0);
    struct store_ctr_usage u = {.cpu_s = 3.5, .memory_peak_mib = 42, .oom_kills = 1, .gpu_util_avg = 55,
                                .gpu_mem_peak_mib = 1024};
    CHECK_EQ_INT(store_container_stop(st, "ct-a", 150, 7.25, 12, "idle", &u, &err), 0);
    CHECK_EQ_INT(store_container_update(st, "ct-b", 1.5, 3, &err), 0);
    CHECK_EQ_INT(store_container_ready(st, "ct-x", 1, &err), -ENOENT);
    CHECK_EQ_INT(store_container_update(st, "ct-x", 1, 1, &err), -ENOENT);
    CHECK_EQ_INT(store_container_stop(st, "ct-x", 1, 1, 1, "x", NULL, &err), -ENOENT);

    struct ctr_rows rows = {0};
    CHECK_EQ_INT(store_usage_rows(st, 0, ctr_cb, &rows, &err), 0);
    CHECK_EQ_INT(rows.n, 4);
    struct store_container *ra = &rows.rows[0];
    CHECK_STR(ra->id, "ct-a");
    CHECK_STR(ra->app, "demo");
    CHECK_STR(ra->function, "echo");
    CHECK_EQ_INT(ra->version, 2);
    CHECK_EQ_INT(ra->cpu_millicores, 500);
    CHECK_EQ_INT(ra->memory_mib, 256);
    CHECK_STR(ra->gpu_type, "");
    CHECK(ra->started_at == 100 && ra->ready_at == 101 && ra->stopped_at == 150);
    CHECK(ra->busy_s == 7.25);
    CHECK_EQ_INT(ra->inputs_done, 12);
    CHECK_STR(ra->stop_reason, "idle");
    CHECK(ra->usage.cpu_s == 3.5 && ra->usage.memory_peak_mib == 42 && ra->usage.oom_kills == 1);
    CHECK(ra->usage.gpu_util_avg == 55 && ra->usage.gpu_mem_peak_mib == 1024);
    CHECK(rows.rows[1].usage.cpu_s == 0);
    CHECK_STR(rows.rows[1].gpu_type, "H100");
    CHECK_EQ_INT(rows.rows[1].gpu_count, 2);
    CHECK(rows.rows[1].stopped_at == 0);
    CHECK(rows.rows[1].busy_s == 1.5);

    /* Only containers alive at or after `since`. */
    rows.n = 0;
    CHECK_EQ_INT(store_usage_rows(st, 160, ctr_cb, &rows, &err), 0);
    CHECK_EQ_INT(rows.n, 3);
    CHECK_STR(rows.rows[0].id, "ct-b");

    /* Crash recovery: open ones close at the heartbeat, never before they started. */
    CHECK_EQ_INT(store_containers_close_open(st, 500, "daemon_restart", &err), 3);
    rows.n = 0;
    CHECK_EQ_INT(store_usage_rows(st, 0, ctr_cb, &rows, &err), 0);
    CHECK_EQ_INT(rows.n, 4);
    CHECK(rows.rows[0].stopped_at == 150); /* already closed: untouched */
    CHECK_STR(rows.rows[0].stop_reason, "idle");
    CHECK(rows.rows[1].stopped_at == 500);
    CHECK_STR(rows.rows[1].stop_reason, "daemon_restart");
    CHECK(rows.rows[2].stopped_at == 500);
    CHECK(rows.rows[3].stopped_at == 900); /* started after the heartbeat */
    CHECK_EQ_INT(store_containers_close_open(st, 600, "daemon_restart", &err), 0);

    rows.n = 0;
    CHECK_EQ_INT(store_usage_rows(st, 600, ctr_cb, &rows, &err), 0);
    CHECK_EQ_INT(rows.n, 1);
    CHECK_EQ_INT(store_containers_prune(st, 600, &err), 3);
    rows.n = 0;
    CHECK_EQ_INT(store_usage_rows(st, 0, ctr_cb, &rows, &err), 0);
    CHECK_EQ_INT(rows.n, 1);
    store_close(st);
}

/* ---------- kv, images ---------- */

struct img_rows {
    char text[256];
};

static int img_cb(const char *name, const char *rootfs, bool host_usr, const char *id, double created_at, void *ud)
{
    struct img_rows *a = ud;
    text_append(a->text, sizeof a->text, "%s=%s:%d:%s:%g;", name, rootfs, host_usr, id ? id : "-", created_at);
    return 0;
}

UNIT_TEST(test_kv_and_images)
{
    char path[256];
    struct store *st = open_new(path, sizeof path);
    CHECK(st);
    struct gerr err = {0};
    AUTO_FREE char *v = NULL;
    CHECK_EQ_INT(store_kv_get(st, "heartbeat", &v, &err), -ENOENT);
    CHECK_EQ_INT(store_kv_set(st, "heartbeat", "1.5", &err), 0);
    CHECK_EQ_INT(store_kv_set(st, "heartbeat", "2.5", &err), 0);
    CHECK_EQ_INT(store_kv_get(st, "heartbeat", &v, &err), 0);
    CHECK_STR(v, "2.5");

    AUTO_FREE char *rootfs = NULL;
    bool host_usr = true;
    CHECK_EQ_INT(store_image_get(st, "busybox", &rootfs, &host_usr, &err), -ENOENT);
    CHECK_EQ_INT(store_image_put(st, "python", "/img/py", true, NULL, 10, &err), 0);
    CHECK_EQ_INT(store_image_put(st, "busybox", "/img/old", true, "sha256:aa", 20, &err), 0);
    CHECK_EQ_INT(store_image_put(st, "busybox", "/img/bb", false, "sha256:bb", 30, &err), 0);
    CHECK_EQ_INT(store_image_get(st, "busybox", &rootfs, &host_usr, &err), 0);
    CHECK_STR(rootfs, "/img/bb");
    CHECK(!host_usr);
    struct img_rows rows = {{0}};
    CHECK_EQ_INT(store_image_list(st, img_cb, &rows, &err), 0);
    CHECK_STR(rows.text, "busybox=/img/bb:0:sha256:bb:20;python=/img/py:1:-:10;");
    CHECK_EQ_INT(store_image_delete(st, "python", &err), 0);
    CHECK_EQ_INT(store_image_delete(st, "python", &err), -ENOENT);
    rows.text[0] = '\0';
    CHECK_EQ_INT(store_image_list(st, img_cb, &rows, &err), 0);
    CHECK_STR(rows.text, "busybox=/img/bb:0:sha256:bb:20;");
    store_close(st);
}

/* ---------- logs ---------- */

struct log_rows {
    int64_t ids[16];
    char text[512];
    int n;
};

static int log_cb(int64_t id, double ts, const char *container_id, const char *call_id, int stream, const char *line,
                  size_t len, void *ud)
{
    struct log_rows *a = ud;
    if (a->n < 16)
        a->ids[a->n] = id;
    a->n++;
    if (strcmp(call_id, "fc-echo") && strcmp(call_id, "fc-sum"))
        text_append(a->text, sizeof a->text, "call_id %s!", call_id);
    text_append(a->text, sizeof a->text, "%g/%s/%d/%zu/%s;", ts, container_id, stream, len, line);
    return 0;
}

/* A line without seq (0) or running count, as test_logs writes them. */
static int log_append(struct store *st, const char *app, const char *fn, const char *ctr, const char *call, double ts,
                      int stream, const char *line, size_t len, struct gerr *err)
{
    const struct store_log_row row = {.app = app, .function = fn, .container_id = ctr, .call_id = call, .ts = ts,
                                      .stream = stream, .line = line, .len = len};
    return store_log_append(st, &row, err);
}

UNIT_TEST(test_logs)
{
    char path[256];
    struct store *st = open_new(path, sizeof path);
    CHECK(st);
    struct gerr err = {0};
    CHECK_EQ_INT(store_begin(st, &err), 0);
    for (int i = 0; i < 5; i++) {
        char line[16];
        int l = snprintf(line, sizeof line, "echo-%d", i);
        CHECK_EQ_INT(
            log_append(st, "demo", "echo", "ct-1", "fc-echo", 10 + i, 1 + i % 2, line, (size_t)l, &err), 0);
        l = snprintf(line, sizeof line, "sum-%d", i);
        CHECK_EQ_INT(log_append(st, "demo", "sum", "ct-2", "fc-sum", 10 + i, 1, line, (size_t)l, &err), 0);
    }
    CHECK_EQ_INT(store_commit(st, &err), 0);

    struct log_rows rows = {0};
    CHECK_EQ_INT(store_logs_tail(st, "demo", "echo", 3, log_cb, &rows, &err), 0);
    CHECK_EQ_INT(rows.n, 3);
    CHECK_STR(rows.text, "12/ct-1/1/6/echo-2;13/ct-1/2/6/echo-3;14/ct-1/1/6/echo-4;");
    CHECK(rows.ids[0] < rows.ids[1] && rows.ids[1] < rows.ids[2]);
    int64_t after = rows.ids[0];

    memset(&rows, 0, sizeof rows);
    CHECK_EQ_INT(store_logs_tail(st, "demo", "echo", -1, log_cb, &rows, &err), 0);
    CHECK_EQ_INT(rows.n, 5);
    memset(&rows, 0, sizeof rows);
    CHECK_EQ_INT(store_logs_tail(st, "demo", "echo", 0, log_cb, &rows, &err), 0);
    CHECK_EQ_INT(rows.n, 0);

    memset(&rows, 0, sizeof rows);
    CHECK_EQ_INT(store_logs_after(st, "demo", "echo", after, 1, log_cb, &rows, &err), 0);
    CHECK_STR(rows.text, "13/ct-1/2/6/echo-3;");
    memset(&rows, 0, sizeof rows);
    CHECK_EQ_INT(store_logs_after(st, "demo", "echo", after, -1, log_cb, &rows, &err), 0);
    CHECK_EQ_INT(rows.n, 2);
    int64_t last = rows.ids[1];

    /* Binary-safe line. */
    CHECK_EQ_INT(log_append(st, "demo", "echo", "", "fc-echo", 20, 2, "a\0b", 3, &err), 0);
    memset(&rows, 0, sizeof rows);
    CHECK_EQ_INT(store_logs_after(st, "demo", "echo", last, -1, log_cb, &rows, &err), 0);
    CHECK_STR(rows.text, "20//2/3/a;");

    /* Trim keeps the newest per function. */
    CHECK_EQ_INT(store_logs_trim_fn(st, "demo", "echo", 2, &err), 4);
    CHECK_EQ_INT(store_logs_trim_fn(st, "demo", "sum", 2, &err), 3);
    memset(&rows, 0, sizeof rows);
    CHECK_EQ_INT(store_logs_tail(st, "demo", "sum", -1, log_cb, &rows, &err), 0);
    CHECK_STR(rows.text, "13/ct-2/1/5/sum-3;14/ct-2/1/5/sum-4;");
    memset(&rows, 0, sizeof rows);
    CHECK_EQ_INT(store_logs_tail(st, "demo", "echo", -1, log_cb, &rows, &err), 0);
    CHECK_EQ_INT(rows.n, 2);
    last = rows.ids[1];

    /* Ids are never reused, even after every line is gone (follow stays correct). */
    CHECK_EQ_INT(store_logs_trim_fn(st, "demo", "echo", 0, &err) + store_logs_trim_fn(st, "demo", "sum", 0, &err), 4);
    store_close(st);
    st = reopen(path);
    CHECK(st);
    CHECK_EQ_INT(log_append(st, "demo", "echo", "ct-3", "fc-echo", 30, 1, "new", 3, &err), 0);
    memset(&rows, 0, sizeof rows);
    CHECK_EQ_INT(store_logs_after(st, "demo", "echo", last, -1, log_cb, &rows, &err), 0);
    CHECK_EQ_INT(rows.n, 1);
    CHECK(rows.ids[0] > last);
    store_close(st);
}

struct app_log_rows {
    int n;
    char text[256];
};

static int app_log_cb(const struct store_log_row *row, void *ud)
{
    struct app_log_rows *a = ud;
    a->n++;
    text_append(a->text, sizeof a->text, "%lld/%s/%s/%s/%d/%d/%s;", (long long)row->seq, row->function,
                row->container_id, row->call_id, row->stream, row->concurrent, row->line);
    return 0;
}

/* An app's lines in seq order across its functions, after a seq, and its highest seq. */
UNIT_TEST(test_app_logs)
{
    char path[256];
    struct store *st = open_new(path, sizeof path);
    CHECK(st);
    struct gerr err = {0};
    const char *fns[] = {"f", "g", "f", "g"};
    for (int i = 0; i < 4; i++) {
        char line[16];
        int l = snprintf(line, sizeof line, "line-%d", i + 1);
        const struct store_log_row row = {.app = "ws/a", .function = fns[i], .container_id = "ct-1",
                                          .call_id = i % 2 ? "fc-x" : "", .seq = i + 1, .ts = 10 + i,
                                          .stream = 1 + i % 2, .concurrent = i > 1, .line = line,
                                          .len = (size_t)l};
        CHECK_EQ_INT(store_log_append(st, &row, &err), 0);
    }
    const struct store_log_row other = {.app = "ws/b", .function = "f", .seq = 1, .ts = 1, .stream = 1,
                                        .line = "b", .len = 1};
    CHECK_EQ_INT(store_log_append(st, &other, &err), 0);
    struct app_log_rows rows = {0};
    CHECK_EQ_INT(store_logs_app_after(st, "ws/a", 1, -1, app_log_cb, &rows, &err), 0);
    CHECK_STR(rows.text, "2/g/ct-1/fc-x/2/0/line-2;3/f/ct-1//1/1/line-3;4/g/ct-1/fc-x/2/1/line-4;");
    memset(&rows, 0, sizeof rows);
    CHECK_EQ_INT(store_logs_app_after(st, "ws/a", 0, 2, app_log_cb, &rows, &err), 0);
    CHECK_EQ_INT(rows.n, 2);
    memset(&rows, 0, sizeof rows);
    CHECK_EQ_INT(store_logs_app_after(st, "ws/a", 4, -1, app_log_cb, &rows, &err), 0);
    CHECK_EQ_INT(rows.n, 0);
    int64_t seq = -1;
    CHECK_EQ_INT(store_logs_app_seq(st, "ws/a", &seq, &err), 0);
    CHECK(seq == 4);
    CHECK_EQ_INT(store_logs_app_seq(st, "ws/b", &seq, &err), 0);
    CHECK(seq == 1);
    CHECK_EQ_INT(store_logs_app_seq(st, "ws/none", &seq, &err), 0);
    CHECK(seq == 0);
    store_close(st);
}

/* ---------- transactions, re-entrancy ---------- */

static struct store *reenter_st;

static int reenter_cb(const char *name, const char *state, double created_at, int nfunctions, void *ud)
{
    struct gerr err;
    struct app_rows rows = {0};
    *(int *)ud = store_app_list(reenter_st, app_cb, &rows, &err);
    char st8[16];
    /* Other statements are fine from a callback. */
    return store_app_get(reenter_st, name, st8, NULL, &err);
}

UNIT_TEST(test_transactions)
{
    char path[256];
    struct store *st = open_new(path, sizeof path);
    CHECK(st);
    struct gerr err = {0};
    char state[16];
    CHECK(!store_in_txn(st));
    CHECK_EQ_INT(store_commit(st, &err), -EINVAL);
    CHECK_EQ_INT(store_rollback(st, &err), 0);

    CHECK_EQ_INT(store_begin(st, &err), 0);
    CHECK(store_in_txn(st));
    CHECK_EQ_INT(store_app_upsert(st, "outer", "deployed", 1, &err), 0);
    CHECK_EQ_INT(store_begin(st, &err), 0);
    CHECK_EQ_INT(store_app_upsert(st, "inner-undone", "deployed", 1, &err), 0);
    CHECK_EQ_INT(store_rollback(st, &err), 0);
    CHECK(store_in_txn(st));
    CHECK_EQ_INT(store_begin(st, &err), 0);
    CHECK_EQ_INT(store_app_upsert(st, "inner-kept", "deployed", 1, &err), 0);
    CHECK_EQ_INT(store_commit(st, &err), 0);
    CHECK(store_in_txn(st));
    /* Nothing is visible to another connection before the outermost commit. */
    CHECK_EQ_INT(sql_int(path, "SELECT COUNT(*) FROM apps"), 0);
    CHECK_EQ_INT(store_commit(st, &err), 0);
    CHECK(!store_in_txn(st));
    CHECK_EQ_INT(sql_int(path, "SELECT COUNT(*) FROM apps"), 2);
    CHECK_EQ_INT(store_app_get(st, "inner-undone", state, NULL, &err), -ENOENT);
    CHECK_EQ_INT(store_app_get(st, "inner-kept", state, NULL, &err), 0);

    CHECK_EQ_INT(store_begin(st, &err), 0);
    CHECK_EQ_INT(store_app_upsert(st, "gone", "deployed", 1, &err), 0);
    CHECK_EQ_INT(store_rollback(st, &err), 0);
    CHECK(!store_in_txn(st));
    CHECK_EQ_INT(store_app_get(st, "gone", state, NULL, &err), -ENOENT);

    /* A failing statement inside a transaction does not end it. */
    CHECK_EQ_INT(store_begin(st, &err), 0);
    CHECK_EQ_INT(store_app_upsert(st, "x", "bad-state", 1, &err), -EINVAL);
    CHECK_EQ_INT(store_app_upsert(st, "y", "deployed", 1, &err), 0);
    CHECK_EQ_INT(store_commit(st, &err), 0);
    CHECK_EQ_INT(store_app_get(st, "y", state, NULL, &err), 0);

    /* Re-entering the listing being iterated is refused, not corrupting. */
    reenter_st = st;
    int inner = 1;
    CHECK_EQ_INT(store_app_list(st, reenter_cb, &inner, &err), 0);
    CHECK_EQ_INT(inner, -EBUSY);
    store_close(st);

    /* Closing with an open transaction rolls it back. */
    st = reopen(path);
    CHECK(st);
    CHECK_EQ_INT(store_begin(st, &err), 0);
    CHECK_EQ_INT(store_app_upsert(st, "never", "deployed", 1, &err), 0);
    store_close(st);
    st = reopen(path);
    CHECK(st);
    CHECK_EQ_INT(store_app_get(st, "never", state, NULL, &err), -ENOENT);
    store_close(st);
}

/* ---------- throughput (printed, not asserted) ---------- */

UNIT_TEST(test_bench_insert_finish)
{
    char path[256];
    struct store *st = open_new(path, sizeof path);
    CHECK(st);
    struct gerr err = {0};
    enum { N = 1000, N_AUTO = 200 };
    char input[64], output[64];
    memset(input, 'i', sizeof input);
    memset(output, 'o', sizeof output);
    uint64_t t0 = mono_ns();
    CHECK_EQ_INT(store_begin(st, &err), 0);
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof id, "fc-bench%06d", i);
        struct store_call c;
        make_call(&c, id, "demo", "echo", 1000 + i);
        c.input = input;
        c.input_len = sizeof input;
        CHECK_EQ_INT(store_call_insert(st, &c, &err), 0);
        CHECK_EQ_INT(store_call_finish(st, id, "succeeded", output, sizeof output, NULL, NULL, 2000 + i, NULL, &err), 0);
    }
    CHECK_EQ_INT(store_commit(st, &err), 0);
    uint64_t t1 = mono_ns();
    for (int i = 0; i < N_AUTO; i++) {
        char id[32];
        snprintf(id, sizeof id, "fc-auto%06d", i);
        struct store_call c;
        make_call(&c, id, "demo", "echo", 3000 + i);
        c.input = input;
        c.input_len = sizeof input;
        CHECK_EQ_INT(store_call_insert(st, &c, &err), 0);
        CHECK_EQ_INT(store_call_finish(st, id, "succeeded", output, sizeof output, NULL, NULL, 4000 + i, NULL, &err), 0);
    }
    uint64_t t2 = mono_ns();
    fprintf(stderr, "  bench: insert+finish of a 64-byte call: %.2f us in a %d-call transaction, %.2f us autocommit\n",
            (double)(t1 - t0) / N / 1000.0, N, (double)(t2 - t1) / N_AUTO / 1000.0);
    store_close(st);
}

static int secret_row(const char *name, const char *env_json, double created_at, double updated_at, void *ud)
{
    text_append(ud, 512, "%s %s %s|", name, env_json, created_at < updated_at ? "updated" : "new");
    return 0;
}

/* Secrets: put replaces the variables and keeps created_at; delete; survive reopen. */
static void test_secrets(void)
{
    char path[512];
    struct store *st = open_new(path, sizeof path);
    CHECK(st != NULL);
    if (!st)
        return;
    struct gerr err;
    CHECK_EQ_INT(store_secret_put(st, "db", "{\"PW\":\"a\"}", 10.0, &err), 0);
    CHECK_EQ_INT(store_secret_put(st, "api", "{\"K\":\"v\"}", 11.0, &err), 0);
    CHECK_EQ_INT(store_secret_put(st, "db", "{\"PW\":\"b\"}", 12.0, &err), 0);
    char text[512] = "";
    CHECK_EQ_INT(store_secret_list(st, secret_row, text, &err), 0);
    CHECK_STR(text, "api {\"K\":\"v\"} new|db {\"PW\":\"b\"} updated|");
    CHECK_EQ_INT(store_secret_delete(st, "api", &err), 0);
    CHECK_EQ_INT(store_secret_delete(st, "api", &err), -ENOENT);
    store_close(st);
    st = reopen(path);
    CHECK(st != NULL);
    text[0] = '\0';
    CHECK_EQ_INT(store_secret_list(st, secret_row, text, &err), 0);
    CHECK_STR(text, "db {\"PW\":\"b\"} updated|");
    store_close(st);
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    UNIT_RUN(test_open_creates_and_versions);
    UNIT_RUN(test_identity_migration_and_tables);
    UNIT_RUN(test_keepalive_histories);
    UNIT_RUN(test_schedules);

    UNIT_RUN(test_dicts_and_queues);
    UNIT_RUN(test_queue_partitions_migration);
    UNIT_RUN(test_apps);
    UNIT_RUN(test_function_versions);
    UNIT_RUN(test_call_lifecycle);
    UNIT_RUN(test_recovery_across_reopen);
    UNIT_RUN(test_cancel_app_and_prune);
    UNIT_RUN(test_calls_trim_fn);
    UNIT_RUN(test_kill9_durability);
    UNIT_RUN(test_containers);
    UNIT_RUN(test_kv_and_images);
    UNIT_RUN(test_secrets);
    UNIT_RUN(test_logs);
    UNIT_RUN(test_app_logs);
    UNIT_RUN(test_transactions);
    UNIT_RUN(test_bench_insert_finish);
    rm_rf(tmpdir);
    UNIT_MAIN_END();
}
