/* The control plane: apps, function versions, calls, per-version input queues, the
 * scheduler/autoscaler that places inputs onto containers of the local worker,
 * retries and timeouts, and metering. Single-threaded: everything runs on the event
 * loop thread. The api layer above it turns HTTP into these calls; nothing here knows
 * about HTTP.
 *
 * Durability: spawned and mapped calls are written to the store before ctl_* returns
 * their id; sync calls live in memory (their caller holds the connection). After a
 * crash, ctl_recover() requeues every stored call that had not finished.
 */
#ifndef GUST_CONTROL_CONTROL_H
#define GUST_CONTROL_CONTROL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "evloop/evloop.h"
#include "spec/spec.h"
#include "store/store.h"
#include "worker/ops.h"

struct ctl;
struct ctl_call;
struct ctl_waiter;
struct ctl_map;
struct worker_build_lane;

/* Per-second prices; GPU prices by normalised type. */
#define CTL_MAX_RATE_GPUS 32
struct ctl_rates {
    double cpu_core_s;
    double memory_gib_s;
    int ngpu;
    char gpu_type[CTL_MAX_RATE_GPUS][32];
    double gpu_s[CTL_MAX_RATE_GPUS];
};
void ctl_rates_default(struct ctl_rates *r);
/* Overrides defaults from a JSON object {"cpu_core_s":..,"memory_gib_s":..,"gpu_s":{"H100":..}}. */
int ctl_rates_load_json(struct ctl_rates *r, const char *text, size_t len, struct gerr *err);

struct ctl_config {
    const char *data_dir;
    const char *images_dir;     /* built-in image sources and materialised images: <data-dir>/images */
    const char *cas_dir;        /* the content-addressed store: <data-dir>/cas */
    size_t max_payload;
    uint32_t stop_grace_ms;     /* graceful stop: how long running inputs may finish */
    struct ctl_rates rates;
    /* Sandboxes image builds may use (worker_build_lane_reserve on the machine that
     * runs the builder); none: builds that run steps fail with a clear error. */
    struct worker_build_lane *build_lanes;
    size_t nbuild_lanes;
    /* What the store keeps, trimmed every trim_interval_ms on the tick (0: defaults):
     * log lines per function (10,000: `gust logs` shows the recent past, a chatty
     * function cannot fill the disk), finished calls per function (100,000, and none
     * older than 7 days: results are for fetching, not an archive; Modal keeps a
     * spawned call's result for days, not forever), every 60 s (a trim costs one
     * indexed DELETE per function that wrote since the last one). */
    uint32_t log_lines_per_fn;
    uint32_t calls_per_fn;
    uint32_t trim_interval_ms;
    /* Do not build and store the built-in images (busybox, python) at recovery: for
     * a control whose worker brings no sandboxes (tests/unit/test_control.c). */
    bool no_builtin_images;
    /* How long idle containers are kept and whether they are pre-warmed, for functions
     * that do not set scaling.scaledown_window: "default" (NULL), "fixed_10min",
     * "knative" or "hybrid_histogram" (src/control/keepalive.c); ctl_new refuses
     * another name. */
    const char *keepalive_policy;
    /* How long a snapshot no version uses is kept for a redeploy of identical content
     * (0: CTL_SNAP_SPARE_MS_DEFAULT, 10 min; see model.c). */
    uint32_t snapshot_spare_ms;
};

/* Control drives its worker only through ops (worker/ops.h) on the handle worker,
 * and subscribes to the worker's events here (ops->attach). */
int ctl_new(struct ev_loop *loop, struct store *store, const struct worker_ops *ops, void *worker,
            const struct ctl_config *cfg, struct ctl **out, struct gerr *err);
void ctl_free(struct ctl *c);

/* Loads apps/functions, builds built-in images, closes containers of a dead daemon in
 * the metering records, and requeues unfinished stored calls. Call once after ctl_new. */
int ctl_recover(struct ctl *c, struct gerr *err);

/* Graceful stop: no new calls or dispatches; running inputs get stop_grace_ms; what is
 * still running then is requeued in the store; containers stopped. done_cb runs once
 * every container has exited. */
void ctl_shutdown(struct ctl *c, void (*done_cb)(void *ud), void *ud);
bool ctl_shutting_down(const struct ctl *c);

/* Error codes surfaced to clients (docs/API.md). */
enum ctl_errkind {
    CTL_E_INVALID = 1,     /* 400 invalid_spec / invalid_argument */
    CTL_E_NOT_FOUND,       /* 404 */
    CTL_E_CONFLICT,        /* 409 */
    CTL_E_UNSCHEDULABLE,   /* 422 */
    CTL_E_TOO_LARGE,       /* 413 */
    CTL_E_SHUTTING_DOWN,   /* 503 */
    CTL_E_INTERNAL,        /* 500 */
    CTL_E_GONE,            /* 410: what was asked for existed and is no longer kept */
    CTL_E_OVERLOADED,      /* 503 with Retry-After: a web endpoint's queue is full */
};
struct ctl_error {
    enum ctl_errkind kind;
    char code[32];
    char field[256];
    char message[1024];
};

/* ---------- identity (docs/API.md "Authentication") ----------
 *
 * Every object control keeps by name belongs to a workspace, and control keys it by
 * its qualified name "<workspace>/<name>" (a workspace name has no '/', nor does any
 * name a client gives). The api layer qualifies what a client names with the
 * workspace of its token, so another workspace's objects are simply not found. */
#define CTL_WS_NAME_MAX 32
#define CTL_QNAME_MAX 128
enum ctl_role { CTL_ROLE_NONE = 0, CTL_ROLE_INVOKER, CTL_ROLE_DEVELOPER, CTL_ROLE_ADMIN };
const char *ctl_role_name(enum ctl_role r);
/* Who a request comes from. */
struct ctl_principal {
    char ws[CTL_WS_NAME_MAX + 1];
    enum ctl_role role;
    char token_id[32];
    char ctr_id[64];            /* a container's token: the container ("" otherwise) */
};
/* 0 with *out for a known token; -EACCES for anything else, -EKEYEXPIRED for one
 * past its expiry. */
int ctl_authenticate(struct ctl *c, const char *token, struct ctl_principal *out);
/* 1 to CTL_WS_NAME_MAX of [a-z0-9-], starting with a letter or digit. */
bool ctl_ws_name_valid(const char *s);
/* out = "<ws>/<name>" (both already valid names, so it fits). */
void ctl_qualify(char out[CTL_QNAME_MAX], const char *ws, const char *name);
/* The part of qname after "<ws>/" when qname belongs to ws, else NULL. */
const char *ctl_unqualify(const char *qname, const char *ws);
/* The part of qname after its workspace (qname itself when it has none: built-in
 * images). */
const char *ctl_local_name(const char *qname);
/* body: {"name", "quotas"?}. Quotas: {"containers","cpu" (cores),"memory" (MiB),
 * "gpus","stored_bytes"}; missing or 0: no limit. */
json_t *ctl_workspace_create(struct ctl *c, json_t *body, struct ctl_error *e);
json_t *ctl_workspace_set_quotas(struct ctl *c, const char *name, json_t *quotas, struct ctl_error *e);
json_t *ctl_workspaces_json(struct ctl *c);
json_t *ctl_workspace_json(struct ctl *c, const char *name, struct ctl_error *e);
/* body: {"workspace","role","name"?,"expires_in"? (seconds)}. The answer carries the
 * token string ("token") once; it is kept nowhere (only its hash is stored). */
json_t *ctl_token_create(struct ctl *c, json_t *body, struct ctl_error *e);
/* Every token without its secret: id, workspace, role, name, created_at, expires_at. */
json_t *ctl_tokens_json(struct ctl *c);
int ctl_token_revoke(struct ctl *c, const char *id, struct ctl_error *e);


/* Deploys an app spec (already parsed JSON tree). On success *result is
 * {"app":..,"functions":[{"name","version"}]}. */
int ctl_deploy(struct ctl *c, const char *ws, json_t *spec, json_t **result, struct ctl_error *e);

/* ---------- image builds (docs/API.md "Image builds") ---------- */

/* What a build or a building deploy reports, on the loop's thread: event() for each
 * progress event (borrowed), then done() once with the final event (borrowed):
 * {"event":"done",...} / {"event":"deployed",...} or {"event":"error",...}. After
 * done() the handle is gone. */
struct ctl_build_sink {
    void (*event)(void *ud, json_t *ev);
    void (*done)(void *ud, json_t *final);
    void *ud;
};
struct ctl_build;
/* Builds the image definition doc (a definition, or a document with an "image"
 * table) and, with name, registers the result under it. */
int ctl_image_build(struct ctl *c, const char *ws, json_t *doc, const char *name, bool force,
                    const struct ctl_build_sink *sink, struct ctl_build **out, struct ctl_error *e);
/* Deploys spec after building the inline images it needs (force: all of them). */
int ctl_deploy_building(struct ctl *c, const char *ws, json_t *spec, bool force,
                        const struct ctl_build_sink *sink, struct ctl_build **out, struct ctl_error *e);
/* The client went away: the build goes on (its result is kept), nothing is reported. */
void ctl_build_detach(struct ctl_build *b);
int ctl_app_stop(struct ctl *c, const char *app, struct ctl_error *e);
json_t *ctl_apps_json(struct ctl *c, const char *ws);
json_t *ctl_functions_json(struct ctl *c, const char *ws);
/* NULL + e (not found) if there is no such function. */
json_t *ctl_function_json(struct ctl *c, const char *app, const char *fn, struct ctl_error *e);
json_t *ctl_containers_json(struct ctl *c, const char *ws);
json_t *ctl_usage_json(struct ctl *c, const char *ws, double since, struct ctl_error *e);
json_t *ctl_health_json(struct ctl *c);

/* Images (ws: the workspace asking; names are its own, and it also sees the built-in
 * images, listed with "builtin": true): a tree the client uploaded (POST /v1/mounts)
 * added under a name, or an OCI image it uploaded imported; gustd never opens a host
 * path a client names. Both run on the image job thread: the call validates and
 * queues (or fails with e), then done() is called once on the loop's thread with the
 * answer (borrowed), or with out NULL and the error. */
struct ctl_image_sink {
    void (*done)(void *ud, json_t *out, const struct ctl_error *e);
    void *ud;
};
struct ctl_image_job;
/* tree: "sha256:…", one workspace ws uploaded; its id becomes the image id. */
int ctl_image_add(struct ctl *c, const char *ws, const char *name, const char *tree, bool host_usr,
                  const struct ctl_image_sink *sink, struct ctl_image_job **out, struct ctl_error *e);
/* tree: an OCI image layout, or a tree of one file (an OCI or docker-archive tarball). */
int ctl_image_import_oci(struct ctl *c, const char *ws, const char *name, const char *tree,
                         const struct ctl_image_sink *sink, struct ctl_image_job **out, struct ctl_error *e);
/* The client went away: the job goes on (the name is registered), nothing is reported. */
void ctl_image_job_detach(struct ctl_image_job *j);
json_t *ctl_images_json(struct ctl *c, const char *ws);
/* One image: id, rootfs, host_usr, files, bytes (NULL + e when unknown). */
json_t *ctl_image_inspect(struct ctl *c, const char *ws, const char *name, struct ctl_error *e);
/* Removes the name; CTL_E_CONFLICT while a deployed function uses it. */
int ctl_image_rm(struct ctl *c, const char *ws, const char *name, struct ctl_error *e);
/* Deletes store objects and materialised copies of images that no name, no function
 * version and no container uses. */
json_t *ctl_image_gc(struct ctl *c, struct ctl_error *e);

/* ---------- secrets and mounts (docs/API.md "Secrets", "Mounts") ----------
 * ws: the workspace asking; names are its own (unqualified). Blobs and trees are
 * stored once underneath, but a workspace sees as present only those it uploaded or
 * created itself, and over its stored_bytes quota an upload gets quota_exceeded. */

/* Creates or replaces secret name with env (an object of strings). Returns
 * {"name","keys":[...],"created":bool}; values are never echoed. */
json_t *ctl_secret_put(struct ctl *c, const char *ws, const char *name, json_t *env, struct ctl_error *e);
/* {"secrets":[{"name","keys","created_at","updated_at","used_by"}]}: no values. */
json_t *ctl_secrets_json(struct ctl *c, const char *ws);
/* Refused (-EBUSY, secret_in_use) while a function of an app that is not stopped
 * (its latest version, or one with queued calls) names it. */
int ctl_secret_delete(struct ctl *c, const char *ws, const char *name, struct ctl_error *e);
/* {"missing":[...]}: which of digests (an array of "sha256:<hex>") the store lacks. */
json_t *ctl_blobs_missing(struct ctl *c, const char *ws, json_t *digests, struct ctl_error *e);
/* Stores one chunk (at most CAS_CHUNK_SIZE bytes) whose SHA-256 must be digest. */
int ctl_blob_put(struct ctl *c, const char *ws, const char *digest, const void *data, size_t len,
                 struct ctl_error *e);
/* Stores a tree from manifest entries whose chunks are stored; {"id":"sha256:..."}. */
json_t *ctl_mount_create(struct ctl *c, const char *ws, json_t *entries, struct ctl_error *e);

/* Final outcome of a call, as handed to waiters. */
enum ctl_call_state {
    CTL_CALL_PENDING = 0,
    CTL_CALL_RUNNING,
    CTL_CALL_SUCCEEDED,
    CTL_CALL_FAILED,
    CTL_CALL_TIMED_OUT,
    CTL_CALL_CANCELLED,
};
const char *ctl_call_state_name(enum ctl_call_state s);

/* A snapshot of a call for answering clients; borrowed pointers valid only during the
 * callback (or until the next ctl_* call for ctl_call_lookup). */
struct ctl_call_view {
    const char *id;
    const char *app;
    const char *function;
    uint32_t version;
    enum ctl_call_state state;
    const void *output;
    size_t output_len;
    const char *error_code;     /* NULL on success */
    const char *error_message;
    uint32_t attempts;
    double created_at, started_at, finished_at;
    /* Its timeline as JSON text (docs/API.md "Call timelines"), filled by
     * ctl_call_status alone (NULL elsewhere, and for a call stored without one); owned
     * by c until the next ctl_* call. */
    const char *timeline;
};

/* Submits a call. durable=true for spawn (stored before return). The input bytes are
 * copied. *call_id receives the id (static storage in the call; copy it). */
int ctl_submit(struct ctl *c, const char *app, const char *fn, const void *input, size_t len, bool durable,
               char call_id_out[64], struct ctl_error *e);

/* Submits a call of a generator function (not durable, like a sync call: its items
 * live in memory only). Its values are read with ctl_items_wait; a function that is not
 * a generator fails such a call (not_generator), as a generator fails a call that is
 * not one (not_generator_call). Errors as ctl_submit. */
int ctl_submit_generator(struct ctl *c, const char *app, const char *fn, const void *input, size_t len,
                         char call_id_out[64], struct ctl_error *e);

/* Submits a web request (src/proto/web.h's envelope) as a generator call of fn, whose
 * items are the response: as ctl_submit_generator, but a failed attempt is final (a
 * request is not run twice: it may not be idempotent, and its client waits).
 * CTL_E_OVERLOADED when CTL_WEB_QUEUE_ROUNDS x max_inputs x max_containers of fn's
 * calls are queued already (not yet on a container). */
/* The bound on a web endpoint's queue, in rounds of its whole capacity (max_inputs on
 * each of max_containers): Knative's queue-proxy queues 10 x its container's
 * concurrency "to allow the autoscaler time to react", and gustd is the one queue in
 * front of all of a function's containers. Containers merely starting never fill it
 * (the function can hold a whole round as soon as they are ready); a queue ten rounds
 * deep is overload, answered at once (503, Retry-After) instead of after the wait.
 * What the queued requests hold is bounded by the web listener's connection cap. */
#define CTL_WEB_QUEUE_ROUNDS 10u
int ctl_submit_web(struct ctl *c, const char *app, const char *fn, const void *input, size_t len,
                   char call_id_out[64], struct ctl_error *e);

/* Input streams: more input for a call after the input it was submitted with, for
 * calls whose code reads a byte stream (a WebSocket's bytes from its client). The bytes
 * reach the container serving the call in order, after its input (the runner
 * protocol's INPUT_MORE frames, src/proto/frame.h); len 0 ends the stream. While the
 * call is pending they are held and go out right after the input at dispatch; while
 * the container has WORKER_INPUT_WINDOW bytes it did not take, they are held too.
 * Control holds at most CTL_STREAM_HELD_MAX bytes per call: ctl_call_input_room says
 * how much more it takes now, and a writer that gets 0 waits (polls) before offering
 * more, which is how a client that sends faster than the code reads is slowed.
 *
 * A call whose container was sent stream bytes is not run again (its requeue and
 * retry end it failed, "interrupted"): those bytes are gone, and replaying the rest
 * would hand its next container a stream with a hole. Bytes still held go with a
 * requeued call that never got any to its next container.
 *
 * Returns 0; CTL_E_NOT_FOUND (unknown call), CTL_E_CONFLICT (the call ended, or its
 * stream did), CTL_E_TOO_LARGE (more than the room: nothing is taken), CTL_E_INVALID
 * (a worker that carries no streams: the simulator's). */
/* 256 KiB per call: four FRAME_MAX_BODY frames keep the container's window fed while
 * gustd waits for an ack, and with the web listener's 4,096 connections the held bytes
 * stay under 1 GiB even if every stream's container stopped reading. */
#define CTL_STREAM_HELD_MAX (256u << 10)
int ctl_call_input_more(struct ctl *c, const char *call_id, const void *data, size_t len, struct ctl_error *e);
/* The bytes ctl_call_input_more takes now (0 for an unknown or ended call). */
size_t ctl_call_input_room(struct ctl *c, const char *call_id);

/* ---------- web endpoints (docs/API.md "Web endpoints") ---------- */
struct ctl_web_endpoint {
    char app[CTL_QNAME_MAX];    /* qualified */
    char function[64];
    struct spec_web web;
    uint32_t timeout_s;
};
/* Where the web listener is: base "http://127.0.0.1:8480" (path form URLs), domain the
 * --web-domain ("" or NULL: none; URLs then take the Host form
 * "<scheme>://<ws>--<app>-<label>.<domain>[:port]", port "" for the default). base ""
 * or NULL: no web listener, functions show no web_url. */
void ctl_web_set_urls(struct ctl *c, const char *base, const char *domain, const char *scheme, const char *port);
/* The endpoint labelled label (case-insensitively) of app in workspace ws, of the
 * app's latest versions. 0 with *out, or -ENOENT (no such app, function or label, or
 * the app is stopped). */
int ctl_web_find(struct ctl *c, const char *ws, const char *app, const char *label, struct ctl_web_endpoint *out);
/* As ctl_web_find for the Host form, whose "<app>-<label>" is joined: the first split
 * at a '-' (shortest app name first) that names an endpoint. */
int ctl_web_find_joined(struct ctl *c, const char *ws, const char *app_label, struct ctl_web_endpoint *out);

/* Waits for a call to finish. cb is called exactly once: with done=true and the final view,
 * or with done=false (and the current state) when timeout_ms passes (timeout_ms 0 = answer
 * now; UINT64_MAX = no timeout). Returns NULL and calls cb synchronously when the answer is
 * immediate, else a waiter handle that the caller may cancel (then cb is not called).
 * Returns NULL with e set (cb not called) if the call id is unknown. */
typedef void (*ctl_wait_cb)(void *ud, bool done, const struct ctl_call_view *v);
int ctl_wait(struct ctl *c, const char *ws, const char *call_id, uint64_t timeout_ms, ctl_wait_cb cb, void *ud,
             struct ctl_waiter **out, struct ctl_error *e);
void ctl_waiter_cancel(struct ctl *c, struct ctl_waiter *w);

/* Current state of a call (from memory or the store). Fills *out; out->output points into
 * memory owned by c until the next ctl_* call. */
int ctl_call_status(struct ctl *c, const char *ws, const char *call_id, struct ctl_call_view *out,
                    struct ctl_error *e);
/* The newest `limit` calls of function app.fn (app qualified), newest submit first:
 * its calls in memory (every unfinished one and the newest finished ones) and its
 * stored finished ones. cb gets each view (timeline filled; borrowed for the
 * callback). CTL_E_NOT_FOUND for an unknown function. */
typedef void (*ctl_calls_cb)(void *ud, const struct ctl_call_view *v);
int ctl_calls_list(struct ctl *c, const char *app, const char *fn, size_t limit, ctl_calls_cb cb, void *ud,
                   struct ctl_error *e);
/* Cancels a call that has not finished: a queued one is dropped; a running one's
 * container is told to drop the input (killed if it still holds it after a grace of
 * 2 s; its other inputs go on). ctl_cancel_call with terminate_container kills the
 * container at once (Modal's FunctionCall.cancel(terminate_containers=True)): what
 * else it ran is requeued or fails as after any stop. */
int ctl_cancel(struct ctl *c, const char *ws, const char *call_id, struct ctl_call_view *out, struct ctl_error *e);
int ctl_cancel_call(struct ctl *c, const char *ws, const char *call_id, bool terminate_container,
                    struct ctl_call_view *out, struct ctl_error *e);
/* ws in ctl_wait, ctl_call_status and ctl_cancel: the workspace asking (another
 * workspace's call is not found); NULL: any. */

/* Generator items (docs/API.md "Generator items"). A generator call keeps the values
 * its function yielded that the consumer has not taken, oldest first, numbered from 0
 * in the order they were yielded. Asking for items from index `from` takes (frees)
 * every item before it, and tells the container it may yield that much more, in steps
 * of a quarter window (wait.c): a runner keeps at most WORKER_ITEM_WINDOW bytes beyond
 * what it was last told was taken (backpressure). A call
 * holds at most that window plus one payload; a runner that sends more, or an item that
 * would take gustd past CTL_ITEMS_MAX_TOTAL bytes of unread items of all calls, fails
 * the call (items_overflow), and nothing it yielded before is dropped. The items a
 * finished call still holds are dropped CTL_ITEMS_KEEP_MS after it ended (asking for
 * them then is CTL_E_GONE). */
/* Unread items gustd keeps of all calls together: 1 GiB is 128 calls each a full
 * window behind, far more than calls that stream as they are read hold, and a bound
 * on what clients that never read can make it keep. */
#define CTL_ITEMS_MAX_TOTAL ((size_t)1 << 30)
/* How long a finished call keeps items nobody read: 10 minutes is ample for a reader
 * that is still polling, and bounds what one that went away leaves behind. */
#define CTL_ITEMS_KEEP_MS (10u * 60 * 1000)
struct ctl_item {
    struct ctl_item *next;      /* the next item (index + 1), NULL for the newest */
    size_t len;
    unsigned char data[];
};
struct ctl_items_view {
    struct ctl_call_view call;  /* the call's state, its error when it failed */
    uint64_t from;              /* the index of first */
    const struct ctl_item *first; /* items from `from` on (NULL: none yet) */
    uint64_t total;             /* items yielded so far */
    bool ended;                 /* the call is final: no item follows number total - 1 */
};
/* Answers cb once, with the items from `from` on: now when there are some, when the call
 * is final or when timeout_ms is 0 (then *out is NULL), else as soon as an item arrives
 * or the call ends, or with none when timeout_ms passes (*out: a handle to cancel; then
 * cb is not called). The view is borrowed for the callback. Errors (cb not called):
 * not found (or another workspace's, ws not NULL), CTL_E_CONFLICT for a call that is
 * not a generator call, CTL_E_INVALID for a from past the items yielded so far,
 * CTL_E_GONE for items already taken or dropped. */
typedef void (*ctl_items_cb)(void *ud, const struct ctl_items_view *v);
struct ctl_items_waiter;
int ctl_items_wait(struct ctl *c, const char *ws, const char *call_id, uint64_t from, uint64_t timeout_ms,
                   ctl_items_cb cb, void *ud, struct ctl_items_waiter **out, struct ctl_error *e);
void ctl_items_waiter_cancel(struct ctl *c, struct ctl_items_waiter *w);

/* Map: submits every input as a durable call, then reports each result through cb as it
 * completes (index order if ordered). cb gets index and the final view; after the last
 * result cb is called once more with v == NULL (end). ctl_map_detach stops callbacks
 * (client gone) while the calls go on. inputs: array of (ptr,len) pairs. */
struct ctl_input {
    const void *data;
    size_t len;
};
typedef void (*ctl_map_cb)(void *ud, size_t index, const struct ctl_call_view *v);
int ctl_map(struct ctl *c, const char *app, const char *fn, const struct ctl_input *inputs, size_t n, bool ordered,
            ctl_map_cb cb, void *ud, struct ctl_map **out, struct ctl_error *e);
void ctl_map_detach(struct ctl *c, struct ctl_map *m);

/* Logs: the last `tail` lines (callback per line) and, with follow, new lines as they
 * come until ctl_log_unsubscribe. call_id: the call whose code printed the line, ""
 * when not known (output outside an input, or of a container's own processes). */
typedef void (*ctl_log_cb)(void *ud, double ts, const char *container_id, const char *call_id, int stream,
                           const char *line, size_t len);
struct ctl_log_sub;
/* f: only the lines it passes (store_log_filter), NULL: every line. */
int ctl_logs(struct ctl *c, const char *app, const char *fn, int tail, const struct store_log_filter *f, ctl_log_cb cb,
             void *ud, struct ctl_error *e);
int ctl_log_subscribe(struct ctl *c, const char *app, const char *fn, ctl_log_cb cb, void *ud,
                      struct ctl_log_sub **out, struct ctl_error *e);
void ctl_log_unsubscribe(struct ctl *c, struct ctl_log_sub *s);

/* Logs of a whole app (every function's), numbered: the app's lines get seq 1, 2, 3...
 * in the order gustd received them, so a client that remembers the last seq it saw
 * asks for what follows and misses nothing the store still holds (the newest
 * cfg.log_lines_per_fn lines of each function). A deploy's answer carries the app's
 * seq at that moment ("log_seq"). */
struct ctl_log_entry {
    uint64_t seq;
    double ts;
    const char *function, *container_id;
    const char *call_id;     /* "" when not known, as for ctl_log_cb */
    int stream;              /* 1 stdout, 2 stderr */
    /* Another call of the function ran at the same time as the one that printed it (up
     * to then); for a line of no known call: several were running when it came. */
    bool concurrent;
    const char *line;        /* len bytes, binary safe */
    size_t len;
};
typedef void (*ctl_log_entry_cb)(void *ud, const struct ctl_log_entry *l);
struct ctl_app_log_sub;
/* The seq of app's latest line (0: none yet). -ENOENT for an unknown app. */
int ctl_app_log_seq(struct ctl *c, const char *app, uint64_t *seq, struct ctl_error *e);
/* Calls cb for at most limit of app's lines with seq > since, in order, from the store
 * (lines still queued for it are written first). Returns how many, or -errno. */
int ctl_app_logs(struct ctl *c, const char *app, uint64_t since, int limit, ctl_log_entry_cb cb, void *ud,
                 struct ctl_error *e);
/* cb hears each new line of app as it comes, until ctl_app_log_unsubscribe; cb may
 * unsubscribe its own subscription, no other. */
int ctl_app_log_subscribe(struct ctl *c, const char *app, ctl_log_entry_cb cb, void *ud,
                          struct ctl_app_log_sub **out, struct ctl_error *e);
void ctl_app_log_unsubscribe(struct ctl *c, struct ctl_app_log_sub *s);

/* ---------- dicts and queues (kv.c; docs/API.md "Dicts", "Queues") ---------- */

/* Limits (SPEC_KV_*, SPEC_QUEUE_*) and request bodies (struct spec_kv_req) are
 * spec's (src/spec/kv.c). Blocked gets one workspace may have at once: each holds a
 * connection and a timer, so a client cannot make gustd keep unbounded numbers. */
#define CTL_KV_WAITERS_MAX 1024u

enum ctl_kv_kind { CTL_KV_DICT = 1, CTL_KV_QUEUE };

/* spec_kv_req_parse with its error as a control error (not_found for an unknown op,
 * too_large, invalid_argument naming the field). Free r with spec_kv_req_free. */
int ctl_kv_req_parse(enum ctl_kv_kind kind, const char *op, json_t *body, struct spec_kv_req *r,
                     struct ctl_error *e);

/* Looks name up ({"name","created":false}); creates it first when create_if_missing
 * ({"created":true} if it was new). CTL_E_NOT_FOUND when absent and not creating. */
json_t *ctl_kv_create(struct ctl *c, const char *ws, enum ctl_kv_kind kind, const char *name, bool create_if_missing,
                      struct ctl_error *e);
/* {"dicts"|"queues": [{"name","created_at","len"}]} of workspace ws. */
json_t *ctl_kv_list(struct ctl *c, const char *ws, enum ctl_kv_kind kind, struct ctl_error *e);
/* Deletes the object and its contents; blocked gets on it are answered not_found. */
int ctl_kv_delete(struct ctl *c, const char *ws, enum ctl_kv_kind kind, const char *name, struct ctl_error *e);
/* Dict operations but nothing that waits: get, contains, pop ({"found","value"?}),
 * put ({"written"}), update ({"written": n}), len ({"len"}), items ({"items":[[k,v]],
 * "next": key or null}), clear ({}). */
json_t *ctl_dict_op(struct ctl *c, const char *ws, const char *name, const char *op, const struct spec_kv_req *r,
                    struct ctl_error *e);
/* Queue put ({"put": n}; CTL_E_CONFLICT queue_full past SPEC_QUEUE_PARTITION_ITEMS,
 * nothing put), len ({"len"}), items ({"values", "next": the id to continue after when
 * there is more, else null, "last": the id of the last item listed}; nothing taken),
 * clear ({}). */
json_t *ctl_queue_op(struct ctl *c, const char *ws, const char *name, const char *op, const struct spec_kv_req *r,
                     struct ctl_error *e);
/* A get: takes up to r->n items of r->partition. With items there, or timeout_ms 0,
 * cb gets {"values":[...]} (perhaps empty) before this returns and *out is NULL.
 * Otherwise *out is a waiter: cb runs later, once, with the items of the next put
 * into the partition, with {"values":[]} after timeout_ms, or with answer NULL and an
 * error (the queue was deleted: not_found; gustd is shutting down: shutting_down,
 * also refused then instead of waiting). Cancel a waiter whose client went away
 * with ctl_kv_waiter_cancel (not after cb ran). -1 + e for errors (no cb). */
struct ctl_kv_waiter;
typedef void (*ctl_kv_answer_cb)(void *ud, json_t *answer, const struct ctl_error *e);
int ctl_queue_get(struct ctl *c, const char *ws, const char *name, const struct spec_kv_req *r, ctl_kv_answer_cb cb,
                  void *ud, struct ctl_kv_waiter **out, struct ctl_error *e);
void ctl_kv_waiter_cancel(struct ctl *c, struct ctl_kv_waiter *w);

/* ---------- volumes (docs/API.md "Volumes") ---------- */

/* Looks name up ({"name","created","version"}); creates it (empty) first when
 * create_if_missing. CTL_E_NOT_FOUND when absent and not creating. */
json_t *ctl_volume_create(struct ctl *c, const char *ws, const char *name, bool create_if_missing,
                          struct ctl_error *e);
/* {"volumes": [{"name","version","created_at","updated_at"}]} of workspace ws. */
json_t *ctl_volume_list(struct ctl *c, const char *ws, struct ctl_error *e);
/* CTL_E_CONFLICT volume_in_use while a running container mounts it. */
int ctl_volume_delete(struct ctl *c, const char *ws, const char *name, struct ctl_error *e);
/* {"entries": [{"path","type","mode","size","mtime"}], "version"}: the entries under
 * path (a file: itself), all below it when recursive. */
json_t *ctl_volume_listdir(struct ctl *c, const char *ws, const char *name, const char *path, bool recursive,
                           struct ctl_error *e);
/* Chunk `chunk` (CAS_CHUNK_SIZE bytes each) of the file at path: *data malloc'd. */
int ctl_volume_read(struct ctl *c, const char *ws, const char *name, const char *path, uint64_t chunk,
                    uint8_t **data, size_t *len, struct ctl_error *e);
/* Publishes a change list (files whose chunks the workspace uploaded, directories,
 * symlinks) as the next version: {"id","version","changed"}. Without force an
 * existing file is CTL_E_CONFLICT file_exists (nothing is changed). */
json_t *ctl_volume_put(struct ctl *c, const char *ws, const char *name, json_t *changes, bool force,
                       struct ctl_error *e);
/* Removes path (a directory only when recursive, or empty) as the next version. */
json_t *ctl_volume_remove(struct ctl *c, const char *ws, const char *name, const char *path, bool recursive,
                          struct ctl_error *e);
/* Copies the paths srcs (a JSON array of strings) to dst as cp does (into dst when it is
 * a directory; a directory only with recursive), as one new version; the files' chunks
 * are shared, nothing is read. {"id", "version", "changed"}. */
json_t *ctl_volume_copy(struct ctl *c, const char *ws, const char *name, json_t *srcs, const char *dst_path,
                        bool recursive, struct ctl_error *e);
/* From inside container ctr_id: publish its changes to its volume name and remount it
 * on the new version; or remount it on the current version keeping its changes.
 * CTL_E_CONFLICT volume_busy while a file in it is open. */
json_t *ctl_volume_commit(struct ctl *c, const char *ctr_id, const char *name, struct ctl_error *e);
json_t *ctl_volume_reload(struct ctl *c, const char *ctr_id, const char *name, struct ctl_error *e);

/* ---- Prometheus metrics (metrics.c; docs/API.md "Metrics") ---- */
struct buf;
/* Appends control's metrics in the text exposition format (0.0.4) to out: calls by
 * outcome, the latency histograms, cold starts, evictions, queues, containers by
 * state, resources reserved and used per function, the store's size. Reads each live
 * container's numbers from the worker (cgroup files), so it costs O(containers). */
void ctl_metrics_write(struct ctl *c, struct buf *out);
/* The format's pieces, for other components' metrics: a family's # HELP (help
 * escaped: backslash, newline) and # TYPE lines; one sample, name{labels} value, with
 * nlabels pairs labels[2i] (a name) = labels[2i+1] (a value, escaped: backslash,
 * double quote, newline). */
void ctl_metrics_family(struct buf *out, const char *name, const char *type, const char *help);
void ctl_metrics_sample(struct buf *out, const char *name, const char *const *labels, size_t nlabels, double value);

#endif
