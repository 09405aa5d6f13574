/* gustd's durable state in one SQLite file (WAL, synchronous=NORMAL): apps, function
 * versions, calls, containers (metering), logs, images and a small key/value table.
 *
 * Durability: a write is durable against a crash of the process (kill -9) once it is
 * committed, i.e. when the call that made it returns outside any store_begin(), or
 * when the store_commit() that closes the outermost level returns 0. It is not
 * guaranteed against a power loss of the machine (synchronous=NORMAL).
 *
 * Threading: a store is used from one thread (the event loop); it does no locking.
 * Every statement is prepared once at store_open() and reset/rebound per use.
 *
 * Errors: failing functions return a negative errno and fill *err (may be NULL) with
 * what was attempted and SQLite's message. SQLite results map to errno as: busy/locked
 * -EBUSY, out of memory -ENOMEM, disk full -ENOSPC, read-only -EROFS, unique/primary key
 * violation -EEXIST, other constraint (e.g. an unknown state name) -EINVAL, too big
 * -EMSGSIZE, anything else -EIO. A missing row is -ENOENT where documented.
 *
 * Listing functions call a callback per row. The callback returns 0 to go on, a
 * positive value to stop (the listing then returns 0), or a negative errno to stop
 * with that error (returned, and *err says the listing was stopped by its callback).
 * String arguments of a callback are valid only during that call. A callback may use
 * other store functions, but not the same listing again (-EBUSY), and, except in
 * store_calls_unfinished(), it must not write the table being listed.
 */
#ifndef GUST_STORE_STORE_H
#define GUST_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

struct store;

/* Schema version this code writes; store_open() migrates older files up to it and
 * refuses newer ones (-EPROTONOSUPPORT). */
#define STORE_SCHEMA_VERSION 15

/* ---------- open / close / transactions ---------- */

/* Opens (creating if needed) the database at path; a missing parent directory is
 * created with mode 0700 and a new file with mode 0600. Applies pending migrations.
 * On success *out owns the store; free it with store_close(). */
int store_open(const char *path, struct store **out, struct gerr *err);
/* Rolls back an open transaction (every level), finalizes the statements and closes
 * the file. NULL is a no-op. */
void store_close(struct store *st);
/* The sizes on disk of the database file and of its write-ahead log (0 when there is
 * none now). Returns 0, or -errno with *err naming the file. */
int store_size_bytes(struct store *st, uint64_t *db, uint64_t *wal, struct gerr *err);

/* Transactions nest. The outermost store_begin() opens a write transaction; inner
 * ones are counted and open a savepoint, so an inner store_rollback() undoes only
 * the work since its store_begin(). Every store_begin() that returned 0 must be
 * closed by exactly one store_commit() or store_rollback().
 * store_commit() closes the innermost level; the outermost makes everything durable.
 * If it fails, that level's work is rolled back and the level is closed anyway.
 * store_rollback() with no level open is a no-op returning 0. */
int store_begin(struct store *st, struct gerr *err);
int store_commit(struct store *st, struct gerr *err);
int store_rollback(struct store *st, struct gerr *err);
/* True while at least one store_begin() level is open. */
bool store_in_txn(const struct store *st);

/* ---------- apps ---------- */

/* Creates app `name` or updates its state. state: "deployed" or "stopped" (else
 * -EINVAL). created_at is set on creation only; updated_at always. */
int store_app_upsert(struct store *st, const char *name, const char *state, double now, struct gerr *err);
/* state_out gets the state, *created_at (may be NULL) the creation time. -ENOENT. */
int store_app_get(struct store *st, const char *name, char state_out[16], double *created_at,
                  struct gerr *err);
/* nfunctions: how many distinct functions the app has versions of. Ordered by name. */
typedef int (*store_app_cb)(const char *name, const char *state, double created_at, int nfunctions, void *ud);
int store_app_list(struct store *st, store_app_cb cb, void *ud, struct gerr *err);

/* ---------- function versions ---------- */

/* Stores a new version of app.name with its normalised spec JSON; *version_out gets
 * its number: the previous highest + 1, starting at 1. */
int store_function_add_version(struct store *st, const char *app, const char *name, const char *spec_json,
                               double now, uint32_t *version_out, struct gerr *err);
/* The highest version and its spec (*spec_json malloc'd, caller frees). -ENOENT. */
int store_function_latest(struct store *st, const char *app, const char *name, uint32_t *version,
                          char **spec_json, struct gerr *err);
/* The spec of one version (*spec_json malloc'd). -ENOENT. */
int store_function_get_version(struct store *st, const char *app, const char *name, uint32_t version,
                               char **spec_json, struct gerr *err);
/* The latest version of every function (apps in any state) that is not retired,
 * ordered by app, name. */
typedef int (*store_function_cb)(const char *app, const char *name, uint32_t version, const char *spec_json,
                                 void *ud);
int store_function_list_latest(struct store *st, store_function_cb cb, void *ud, struct gerr *err);
/* A deploy left the function out of its app: marks its latest version retired (a
 * later version, from a deploy that has it again, is not). Its calls stay readable. */
int store_function_retire(struct store *st, const char *app, const char *name, double now, struct gerr *err);

/* ---------- calls ---------- */

/* One call. Strings are NUL-terminated (longer values are cut to fit). Times are Unix
 * seconds, 0 = not yet. input/output/error_message are malloc'd when the store fills
 * the struct (free with store_call_free); on insert they belong to the caller. */
struct store_call {
    char id[64];
    char app[128];
    char function[64];
    uint32_t version;
    char state[16];           /* pending running succeeded failed timed_out cancelled */
    void *input;              /* NULL when not loaded or none; else NUL-terminated copy */
    size_t input_len;
    void *output;             /* as input */
    size_t output_len;        /* filled even when the payloads are not loaded */
    char error_code[32];      /* "" = none */
    char *error_message;      /* NULL = none */
    uint32_t attempts;
    double created_at, started_at, finished_at, next_attempt_at;
    char map_id[64];          /* "" = not part of a map */
    int64_t map_index;        /* -1 = none */
    char *timeline;           /* a finished call's timeline (JSON text), NULL = none */
};

/* Frees input, output and error_message and NULLs them; the rest stays. */
void store_call_free(struct store_call *c);

/* Inserts a call with every field of *c (error_code "" / map_id "" / map_index < 0 are
 * stored as NULL). -EEXIST if the id is taken, -EINVAL for an unknown state. */
int store_call_insert(struct store *st, const struct store_call *c, struct gerr *err);
/* state = running with these attempts and started_at. -ENOENT. The store does not
 * check transitions: the caller (control) owns the state machine. */
int store_call_set_running(struct store *st, const char *id, uint32_t attempts, double started_at,
                           struct gerr *err);
/* state = pending (a retry or requeue) with these attempts, not before next_attempt_at
 * (0 = at once). -ENOENT. */
int store_call_set_pending(struct store *st, const char *id, uint32_t attempts, double next_attempt_at,
                           struct gerr *err);
/* Final state (succeeded/failed/timed_out/cancelled) with output (NULL = none),
 * error_code (NULL = none), error_message (NULL = none), finished_at, timeline (the
 * call's timeline as text, NULL = none). -ENOENT. */
int store_call_finish(struct store *st, const char *id, const char *state, const void *output, size_t output_len,
                      const char *error_code, const char *error_message, double finished_at, const char *timeline,
                      struct gerr *err);
/* Reads a call into *out (overwritten; call store_call_free first if it held one).
 * with_payloads false leaves input/output NULL (their lengths are still filled).
 * -ENOENT. */
int store_call_get(struct store *st, const char *id, struct store_call *out, bool with_payloads,
                   struct gerr *err);
/* Every pending or running call with its input, oldest first (created_at): crash
 * recovery. The callback may change the listed calls (finish, requeue); each call is
 * delivered once. *c and its payloads are freed after the callback returns. */
typedef int (*store_call_cb)(const struct store_call *c, void *ud);
int store_calls_unfinished(struct store *st, store_call_cb cb, void *ud, struct gerr *err);
/* The newest `limit` finished calls of a function, newest finish first, without their
 * payloads (lengths filled); cb as for store_calls_unfinished (> 0 stops). */
int store_calls_recent(struct store *st, const char *app, const char *function, int64_t limit, store_call_cb cb,
                       void *ud, struct gerr *err);
/* Every pending/running call of app → cancelled (error_code "cancelled", message "the
 * app was stopped", finished_at now). Returns how many. */
int store_calls_cancel_app(struct store *st, const char *app, double now, struct gerr *err);
/* Deletes finished calls with finished_at < older_than. Returns how many. */
int store_calls_prune(struct store *st, double older_than, struct gerr *err);
/* Deletes the finished calls of one function but its keep most recent (by finish time;
 * calls finished in the same instant as the keep-th are deleted with it). */
int store_calls_trim_fn(struct store *st, const char *app, const char *function, int64_t keep, struct gerr *err);

/* ---------- containers (metering) ---------- */

/* What a container used, recorded when it stops (for billing and `gust usage`). */
struct store_ctr_usage {
    double cpu_s;             /* CPU seconds of all its processes */
    double memory_peak_mib;
    uint64_t oom_kills;
    double gpu_util_avg;      /* percent, mean of the samples; 0 without NVML */
    double gpu_mem_peak_mib;
};

struct store_container {
    char id[64];
    char app[128];
    char function[64];
    uint32_t version;
    uint32_t cpu_millicores;
    uint32_t memory_mib;
    char gpu_type[32];        /* "" = no GPU */
    uint32_t gpu_count;
    double started_at, ready_at, stopped_at; /* 0 = not yet */
    double busy_s;            /* seconds spent running inputs */
    uint64_t inputs_done;
    char stop_reason[32];     /* "" while running */
    struct store_ctr_usage usage; /* final accounting, zero while running */
};

/* Inserts a container record from id..started_at (ready/stop fields start empty).
 * -EEXIST. */
int store_container_start(struct store *st, const struct store_container *c, struct gerr *err);
/* The following return -ENOENT for an unknown id. */
int store_container_ready(struct store *st, const char *id, double ready_at, struct gerr *err);
/* Periodic flush of the counters. */
int store_container_update(struct store *st, const char *id, double busy_s, uint64_t inputs_done,
                           struct gerr *err);
int store_container_stop(struct store *st, const char *id, double stopped_at, double busy_s,
                         uint64_t inputs_done, const char *reason, const struct store_ctr_usage *usage,
                         struct gerr *err);
/* Crash recovery: every container with no stop time gets stopped_at = the larger of
 * its started_at and the given stopped_at (the dead daemon's last heartbeat), and
 * stop_reason = reason. Returns how many. */
int store_containers_close_open(struct store *st, double stopped_at, const char *reason, struct gerr *err);
/* Every container alive at some time >= since (still running, or stopped_at >= since),
 * ordered by started_at. */
typedef int (*store_container_cb)(const struct store_container *c, void *ud);
int store_usage_rows(struct store *st, double since, store_container_cb cb, void *ud, struct gerr *err);
/* Deletes containers that stopped before older_than. Returns how many. */
int store_containers_prune(struct store *st, double older_than, struct gerr *err);

/* ---------- key/value ---------- */

int store_kv_set(struct store *st, const char *key, const char *value, struct gerr *err);
/* *value malloc'd (caller frees). -ENOENT. */
int store_kv_get(struct store *st, const char *key, char **value, struct gerr *err);

/* ---------- logs ---------- */

/* One log line: len bytes of line (binary safe) of container_id's stream (1 stdout,
 * 2 stderr) with timestamp ts; call_id: the call that printed it (NULL or "": not
 * known). seq numbers the lines of one app in the order they were printed (control
 * assigns it; lines stored before schema 10 have 0); concurrent: other calls of the
 * function ran at the same time (control's ctl_log_entry says exactly what). */
struct store_log_row {
    const char *app, *function, *container_id, *call_id;
    int64_t seq;
    double ts;
    int stream;
    bool concurrent;
    const char *line;
    size_t len;
};
/* Appends one line. */
int store_log_append(struct store *st, const struct store_log_row *row, struct gerr *err);
/* id: increasing per appended line, never reused; line: len bytes plus a NUL;
 * call_id "" when not known. */
typedef int (*store_log_cb)(int64_t id, double ts, const char *container_id, const char *call_id, int stream,
                            const char *line, size_t len, void *ud);
/* The last `limit` lines of app.function in chronological order (limit < 0: all). */
int store_logs_tail(struct store *st, const char *app, const char *function, int limit, store_log_cb cb,
                    void *ud, struct gerr *err);
/* Which lines store_logs_find answers: ts in [since, until) (until 0: no bound), a
 * line holding search (bytes; NULL: any), of one call and one container (NULL: any),
 * among the newest `scan` lines of the function (the bound on the rows one read
 * looks at; it must be at least 1). */
struct store_log_filter {
    double since, until;
    const char *search, *call_id, *container_id;
    int64_t scan;
};
/* The last `limit` lines of app.function that pass f, in chronological order. */
int store_logs_find(struct store *st, const char *app, const char *function, const struct store_log_filter *f,
                    int limit, store_log_cb cb, void *ud, struct gerr *err);
/* At most `limit` lines with id > after_id, in order (limit < 0: all): for follow. */
int store_logs_after(struct store *st, const char *app, const char *function, int64_t after_id, int limit,
                     store_log_cb cb, void *ud, struct gerr *err);
/* row's strings, line included (len bytes plus a NUL), are valid during the call. */
typedef int (*store_log_row_cb)(const struct store_log_row *row, void *ud);
/* At most `limit` lines of app, every function's, with seq > after_seq, in seq order
 * (limit < 0: all). */
int store_logs_app_after(struct store *st, const char *app, int64_t after_seq, int limit, store_log_row_cb cb,
                         void *ud, struct gerr *err);
/* The highest seq of app's stored lines (0: none). */
int store_logs_app_seq(struct store *st, const char *app, int64_t *seq, struct gerr *err);
/* Keeps the newest keep lines of one function (through the (app, function, id) index:
 * cheap enough for the tick). Returns how many lines were deleted. */
int store_logs_trim_fn(struct store *st, const char *app, const char *function, int64_t keep, struct gerr *err);

/* ---------- images ---------- */

/* Creates or replaces image `name` (created_at is kept on replace). id: the image's
 * manifest digest in the content-addressed store ("sha256:..."), or NULL. */
int store_image_put(struct store *st, const char *name, const char *rootfs, bool host_usr, const char *id,
                    double now, struct gerr *err);
/* -ENOENT if there is no such image. */
int store_image_delete(struct store *st, const char *name, struct gerr *err);
/* *rootfs malloc'd; host_usr may be NULL. -ENOENT. */
int store_image_get(struct store *st, const char *name, char **rootfs, bool *host_usr, struct gerr *err);
/* Ordered by name. */
typedef int (*store_image_cb)(const char *name, const char *rootfs, bool host_usr, const char *id, double created_at,
                              void *ud);
int store_image_list(struct store *st, store_image_cb cb, void *ud, struct gerr *err);

/* ---------- the image build cache (src/build) ---------- */

/* Records (or replaces) what build step step_id produced. */
int store_build_step_put(struct store *st, const char *step_id, const char *parent_id, const char *image_id,
                         double now, struct gerr *err);
/* -ENOENT if there is no such step. */
int store_build_step_delete(struct store *st, const char *step_id, struct gerr *err);
typedef int (*store_build_step_cb)(const char *step_id, const char *parent_id, const char *image_id, void *ud);
int store_build_step_list(struct store *st, store_build_step_cb cb, void *ud, struct gerr *err);

/* Secrets: env_json is a JSON object of string values. The database file is the
 * only place they are kept at rest (gustd creates it 0600). */
int store_secret_put(struct store *st, const char *name, const char *env_json, double now, struct gerr *err);
/* -ENOENT if there is no such secret. */
int store_secret_delete(struct store *st, const char *name, struct gerr *err);
typedef int (*store_secret_cb)(const char *name, const char *env_json, double created_at, double updated_at,
                               void *ud);
int store_secret_list(struct store *st, store_secret_cb cb, void *ud, struct gerr *err);

/* ---------- identity: workspaces, tokens, blob ownership ---------- */

/* -EEXIST if the workspace exists. quotas_json: a JSON object. */
int store_workspace_create(struct store *st, const char *name, double now, const char *quotas_json,
                           struct gerr *err);
/* -ENOENT if there is no such workspace. */
int store_workspace_set_quotas(struct store *st, const char *name, const char *quotas_json, struct gerr *err);
typedef int (*store_workspace_cb)(const char *name, double created_at, const char *quotas_json, void *ud);
int store_workspace_list(struct store *st, store_workspace_cb cb, void *ud, struct gerr *err);

/* A token as stored: never the secret, only hash (hex SHA-256 of it). expires_at 0:
 * never. */
struct store_token {
    char id[32];
    char hash[72];
    char workspace[64];
    char role[16];
    char name[64];
    double created_at, expires_at;
};
int store_token_put(struct store *st, const struct store_token *t, struct gerr *err);
/* -ENOENT if there is no such token. */
int store_token_delete(struct store *st, const char *id, struct gerr *err);
typedef int (*store_token_cb)(const struct store_token *t, void *ud);
int store_token_list(struct store *st, store_token_cb cb, void *ud, struct gerr *err);

/* Records that workspace uploaded (or built) the object digest of bytes bytes; a
 * second record of the same pair is a no-op. */
int store_blob_own(struct store *st, const char *workspace, const char *digest, uint64_t bytes, struct gerr *err);
/* 0 if workspace owns digest, -ENOENT if not. */
int store_blob_owned(struct store *st, const char *workspace, const char *digest, struct gerr *err);
/* The sum of the sizes of the objects workspace owns. */
int store_workspace_stored_bytes(struct store *st, const char *workspace, uint64_t *bytes, struct gerr *err);

/* ---------- keep-alive histories ---------- */

/* Saves (replaces) one function's history, an opaque blob of control's. */
int store_keepalive_put(struct store *st, const char *app, const char *function, const char *policy,
                        const void *history, size_t len, double now, struct gerr *err);
typedef int (*store_keepalive_cb)(const char *app, const char *function, const char *policy, const void *history,
                                  size_t len, void *ud);
int store_keepalive_list(struct store *st, store_keepalive_cb cb, void *ud, struct gerr *err);

/* ---------- schedules ---------- */

/* A scheduled function's state (control's schedule.c), one row per (app, function):
 * spec is the schedule's normalised JSON (a changed one starts afresh), next_at when
 * it fires next (Unix seconds), last_runs a JSON array of its latest fires. A fire
 * writes its call and this row in one transaction, so a restart never repeats it. */
int store_schedule_put(struct store *st, const char *app, const char *function, const char *spec, double next_at,
                       const char *last_runs, struct gerr *err);
/* Deleting a row that does not exist is not an error. */
int store_schedule_delete(struct store *st, const char *app, const char *function, struct gerr *err);
typedef int (*store_schedule_cb)(const char *app, const char *function, const char *spec, double next_at,
                                 const char *last_runs, void *ud);
int store_schedule_list(struct store *st, store_schedule_cb cb, void *ud, struct gerr *err);

/* ---------- dicts and queues (control's kv.c) ---------- */

/* The longest "<workspace>/" prefix a listing takes (a workspace name and the slash). */
#define STORE_KV_WS_PREFIX_MAX 80

/* kind is "dict" or "queue"; name "<workspace>/<name>". 1 if created, 0 if it existed. */
int store_kvobj_create(struct store *st, const char *kind, const char *name, double now, struct gerr *err);
/* 0 if the object exists (*created_at: when, unless NULL), -ENOENT if not. */
int store_kvobj_exists(struct store *st, const char *kind, const char *name, double *created_at, struct gerr *err);
/* Deletes the object and everything in it; -ENOENT if there is no such object. */
int store_kvobj_delete(struct store *st, const char *kind, const char *name, struct gerr *err);
/* count: the entries of a dict, the items (all partitions not expired at now) of a queue. */
typedef int (*store_kvobj_cb)(const char *name, double created_at, int64_t count, void *ud);
/* The objects of kind of workspace ws, by name. */
int store_kvobj_list(struct store *st, const char *kind, const char *ws, double now, store_kvobj_cb cb, void *ud,
                     struct gerr *err);

/* A dict's entries, keyed by the bytes of the client's key. *value is malloc'd;
 * -ENOENT if there is no such key. */
int store_dict_get(struct store *st, const char *dict, const void *key, size_t klen, void **value, size_t *vlen,
                   struct gerr *err);
/* 1 if written, 0 if skip_if_exists and the key was there already (left as it was). */
int store_dict_put(struct store *st, const char *dict, const void *key, size_t klen, const void *value, size_t vlen,
                   bool skip_if_exists, struct gerr *err);
/* 1 if the key was there (removed), 0 if not. */
int store_dict_delete(struct store *st, const char *dict, const void *key, size_t klen, struct gerr *err);
int store_dict_count(struct store *st, const char *dict, int64_t *n, struct gerr *err);
typedef int (*store_pair_cb)(const void *key, size_t klen, const void *value, size_t vlen, void *ud);
/* At most limit entries whose key sorts after after (NULL: from the first), in key order. */
int store_dict_list(struct store *st, const char *dict, const void *after, size_t alen, int64_t limit,
                    store_pair_cb cb, void *ud, struct gerr *err);
int store_dict_clear(struct store *st, const char *dict, struct gerr *err);

/* A queue's items; partition "" is the default one. Ids grow in the order of puts.
 * A put pushes its items and records them with store_queue_partition_put in one
 * transaction, so that the partition's count stays the number of its items. */
int store_queue_push(struct store *st, const char *queue, const char *partition, const void *value, size_t len,
                     struct gerr *err);
/* n items were put into partition at now: its count grows by n and it expires ttl
 * seconds from now (Modal's partition_ttl: a partition not put into for that long). */
int store_queue_partition_put(struct store *st, const char *queue, const char *partition, int64_t n, double ttl,
                              double now, struct gerr *err);
/* The partition's item count and when it expires; -ENOENT when it holds no items.
 * Expiry is the caller's to check (control removes an expired one with clear). */
int store_queue_partition(struct store *st, const char *queue, const char *partition, int64_t *items,
                          double *expires_at, struct gerr *err);
/* The items of the queue's partitions that have not expired at now. */
int store_queue_count_total(struct store *st, const char *queue, double now, int64_t *n, struct gerr *err);
typedef int (*store_queue_item_cb)(int64_t id, const void *value, size_t len, void *ud);
/* At most limit items of partition with an id above after, oldest first. */
int store_queue_list(struct store *st, const char *queue, const char *partition, int64_t after, int64_t limit,
                     store_queue_item_cb cb, void *ud, struct gerr *err);
/* Removes the items of partition with an id up to upto (those a get took) and lowers
 * its count (an emptied partition is forgotten, its expiry with it). Call it inside a
 * transaction. */
int store_queue_remove_upto(struct store *st, const char *queue, const char *partition, int64_t upto,
                            struct gerr *err);
/* Removes the items and the record of partition (NULL: all partitions), in one
 * transaction (or a savepoint of the caller's). */
int store_queue_clear(struct store *st, const char *queue, const char *partition, struct gerr *err);
typedef int (*store_qpart_cb)(const char *queue, const char *partition, void *ud);
/* At most limit partitions that expired at now or before, the longest expired first. */
int store_queue_expired(struct store *st, double now, int64_t limit, store_qpart_cb cb, void *ud, struct gerr *err);

/* ---------- volumes (control's volumes.c) ---------- */

struct store_volume {
    char name[128];             /* "<workspace>/<name>" */
    int64_t version;            /* 1 at creation, +1 per commit */
    char manifest[80];          /* "sha256:<hex>" of the current version's tree */
    double created_at, updated_at;
};
/* 1 if created (version 1 with manifest), 0 if it existed. */
int store_volume_create(struct store *st, const char *name, const char *manifest, double now, struct gerr *err);
/* -ENOENT if there is no such volume. */
int store_volume_get(struct store *st, const char *name, struct store_volume *out, struct gerr *err);
/* Makes (version, manifest) the current version; -ENOENT if there is no such volume. */
int store_volume_set(struct store *st, const char *name, int64_t version, const char *manifest, double now,
                     struct gerr *err);
int store_volume_delete(struct store *st, const char *name, struct gerr *err);
typedef int (*store_volume_cb)(const struct store_volume *v, void *ud);
/* The volumes of workspace ws by name (ws NULL: of every workspace). */
int store_volume_list(struct store *st, const char *ws, store_volume_cb cb, void *ud, struct gerr *err);

#endif
