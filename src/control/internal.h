/* Private to src/control: the in-memory model and the functions the files of control
 * offer each other.
 *
 * Control is a one-way stack. Each file may call functions of the files listed before
 * it, never of those after it (scripts/check-layers.sh checks this list against the
 * calls; docs/ARCHITECTURE.md "Control" explains it):
 *
 *   keepalive.c the keep-alive policy: per function idle-time history, keep-alive and
 *               pre-warm windows, next-use prediction (pure: calls nothing of control)
 *   kpa.c       the autoscaler's windows (Knative's KPA): concurrency averaged over a
 *               stable and a panic window, the containers wanted (pure)
 *   model.c     apps, functions, versions, container records, the worker handle;
 *               snapshots shared by content (references, spares)
 *   evict.c     the eviction ranking: idle containers by predicted next use
 *   ident.c     workspaces and quotas, tokens and roles, qualified names
 *   metrics.c   Prometheus metrics: per-function counters and histograms updated
 *               where calls start and end and containers start, become ready and
 *               exit; the exposition of them and of gauges read from the model
 *   items.c     a generator call's items: the bounded buffer of what the consumer has
 *               not taken, its absolute indices, the pollers told of a new item
 *   calls.c     call records and their lifecycle: queues, retries, final states;
 *               completion goes up through observers (ctl_call_obs), kicks through
 *               the hook c->kick
 *   logs.c      log lines: batched into the store, fanned out to subscribers
 *   stream.c    a call's input stream: bytes after its input, held while it is
 *               pending or its container's window is full, sent in order
 *   wait.c      waiters on one call (observers)
 *   map.c       map streams (one observer per input)
 *   secrets.c   secrets, uploaded blobs, mount trees
 *   kv.c        dicts and queues: request bodies, objects in the store, blocked
 *               queue gets (waiters per partition, answered by a put or a timer)
 *   volumes.c   volumes: objects in the store, versions as tree manifests, client
 *               changes, each container's layers (made at start, committed at a
 *               normal stop or from inside, reloaded), materialised versions
 *   build.c     the image builder: cache persistence, inline image resolution
 *   images.c    named images: add, import, list, inspect, rm, gc
 *   meter.c     usage and cost from container records
 *   sched.c     capacity, dispatch, autoscaling, worker events, cancel, drain
 *   schedule.c  schedules: a timer per scheduled function, each fire's call and next
 *               fire time stored together
 *   deploy.c    versions from specs, deploy, app stop
 *   builds.c    image builds and building deploys as clients see them
 *   views.c     listings: apps, functions, containers, health, usage
 *   control.c   the facade: create, recover, tick, cancel, shutdown, free
 *
 * Everything runs on the event-loop thread, but for the work of image jobs (images.c:
 * materialising and importing uploaded trees), which touches only the object store
 * and the images directory and hands its result back to the loop (ev_async).
 */
#ifndef GUST_CONTROL_INTERNAL_H
#define GUST_CONTROL_INTERNAL_H

#include "base/buf.h"
#include "base/hmap.h"
#include "base/list.h"
#include "build/build.h"
#include "control/control.h"
#include "spec/spec.h"

struct ctl_fn;
struct ctl_ctr;

/* ---- keepalive.c: types (struct ctl_fn holds the state; the functions are below) ---- */

/* ctl_config.keepalive_policy names them: "default", "fixed_10min", "knative",
 * "hybrid_histogram" (keepalive.c says what each does and why). */
enum ka_policy { KA_DEFAULT = 0, KA_FIXED_10MIN, KA_KNATIVE, KA_HYBRID };

/* The idle-time histogram over 4 hours: the first minute in KA_FINE_BINS bins of
 * KA_FINE_MS, then 1-minute bins (ATC'20's: the trace's granularity, and coarse enough
 * to fill with tens of samples). The first minute is finer because the default keeps a
 * container to the end of the bin its idle times fall in: with 1-minute bins a function
 * called every few seconds kept every idle container a whole minute after its work
 * fell (gust-sim: 7 % of the default's idle memory-time on the shared sample). 5 s is
 * the finest step that the fewest samples a histogram decides from (20) still fill
 * with about two each when they spread over the minute; it is also 1/12 of the
 * coarse bin, so ATC'20's minute view (hybrid policy) is a sum of whole fine bins. */
#define KA_FINE_MS 5000u
#define KA_FINE_BINS 12u
#define KA_BIN_MS 60000u
#define KA_NBINS (KA_FINE_BINS + 239u)
/* Levels (keepalive.c): level k is "the function needs k containers". Levels 1 and 2
 * have a histogram each, then levels are grouped by doubling (3-4, 5-8, ..., 2049-4096):
 * how often a function comes back to its k-th container depends on k relative to its
 * usual concurrency, so equal ratios share a history. 13 groups reach 4096 levels, more
 * containers than one control plane runs for one function; higher levels count as 4096. */
#define KA_NGROUPS 13
#define KA_MAX_LEVELS 4096u

/* Idle times of one level group, and the windows decided from them. */
struct ka_hist {
    uint32_t bins[KA_NBINS];    /* idle times by bin (keepalive.c: ka_bin_lo_ms) */
    uint32_t oob;               /* idle times of 4 hours or more */
    uint32_t samples;           /* all idle times (bins + oob) */
    uint32_t decided_at;        /* samples when the windows were last decided */
    bool predicts;              /* representative: the windows come from it */
    uint64_t short_ms, prewarm_ms, keepalive_ms; /* keepalive.c, struct windows */
};

/* A predicted next use as a line in time (ka_next_use_line). */
struct ka_use_line {
    int slope;                  /* -1, 0 or +1 */
    int64_t base;               /* the prediction at now is base + slope x now */
    uint64_t until_ms;          /* exact before this time; UINT64_MAX: until the state changes */
};

/* One function's keep-alive state. Times are whatever clock the caller uses (the
 * loop's ev_now_ms; a simulator's virtual clock), in ms. */
struct ka_state {
    enum ka_policy policy;
    uint32_t level;             /* containers the function's work needs now */
    uint32_t nlevels;           /* the highest level reached so far */
    uint32_t cap;               /* entries allocated in idle_since */
    uint64_t *idle_since;       /* [k - 1]: when level k last went idle (valid for level < k <= nlevels) */
    struct ka_hist *hist[KA_NGROUPS]; /* NULL until the group's first idle time */
    double value_ms;            /* default: a cold start's worth in ms of this function's
                                 * idle container (ka_set_value; 0: KA_COLD_VALUE_MS) */
    uint64_t changes;           /* counts idle times recorded (and histories loaded): saves compare it */
};

/* ---- kpa.c: types (struct ctl_fn holds the state; the functions are below) ---- */

/* The stable window: Knative's default of 60 s (REFERENCE.md, "Autoscaling"). A
 * function with a scaledown_window shorter than it uses that instead (sched.c): an idle
 * container must not outlive the window its function asked for. */
#define KPA_STABLE_MS 60000u
/* The window's ring of buckets: Knative keeps its metrics in 1-second buckets over the
 * 60-second window, so the panic window (10 %) is a whole number of them (6). */
#define KPA_NBUCKETS 60u
/* How often a function whose averages may still move the count is looked at again
 * between call events: Knative's autoscaler decides every 2 s, 1/30 of its stable
 * window (kept as that fraction when the window is shorter). */
#define KPA_RECHECKS 30u

/* One function's concurrency over the stable window (kpa.c). */
struct kpa_state {
    uint64_t window_ms, bucket_ms;
    uint64_t acc[KPA_NBUCKETS]; /* concurrency x ms per time slot (time / bucket_ms + 1) */
    uint64_t epoch[KPA_NBUCKETS]; /* the slot each bucket holds: another slot's bucket is empty */
    uint64_t last_ms;           /* integrated up to here */
    uint64_t busy_until;        /* the last time the concurrency was above zero (0: never) */
    uint64_t first_ms;          /* when the function last became active: partial windows start here */
    uint32_t value;             /* concurrency since last_ms */
    bool panicking;
    uint64_t panic_at;          /* the last decision over the panic threshold */
    uint32_t panic_max;         /* the most containers wanted since the panic began */
};

/* What a decision saw (kpa_decide), for the listing and the scheduler. */
struct kpa_view {
    uint32_t desired;           /* the containers wanted */
    uint32_t stable, panic;     /* what each window alone asks for */
    uint64_t stable_milli, panic_milli; /* the windows' average concurrency x 1000 */
    bool panicking;
};

/* ---- metrics.c: types (struct ctl_fn holds them; the functions are below) ---- */

/* Upper bounds of the latency histograms' buckets, in seconds (METRICS_BUCKETS in
 * metrics.c). Prometheus's default buckets (5 ms to 10 s) extended down to 0.5 ms,
 * because a warm call's queue wait and run are ~100 us here and would all fall in the
 * first default bucket, and up to 300 s, because cold starts of large images and
 * runs of batch functions take minutes. */
#define METRICS_NBUCKETS 17
/* A call's outcome as gust_calls_total labels it: success, failure, timeout, cancelled. */
#define METRICS_NOUTCOMES 4

/* One histogram: observations per bucket (not cumulative; the last one is +Inf) and
 * their sum. Updating it is a few compares and two additions: no allocation, no lock
 * (everything runs on the loop's thread). */
struct metrics_hist {
    uint64_t n[METRICS_NBUCKETS + 1];
    double sum;
};

/* A function's metrics since this daemon started (Prometheus handles the reset). */
struct metrics_fn {
    uint64_t calls[METRICS_NOUTCOMES]; /* finished calls by outcome */
    struct metrics_hist queue_wait;    /* submit to first start */
    struct metrics_hist run;           /* last start to end, of calls that started */
    struct metrics_hist cold_start;    /* container start to ready */
    uint64_t cold_starts;              /* containers started */
    uint64_t cpu_ns_gone;              /* CPU time of its containers that exited */
};

/* Per-workspace limits; 0: none. */
struct ctl_quotas {
    uint32_t containers;
    uint32_t cpu_millicores;
    uint64_t memory_mib;
    uint32_t gpus;
    uint64_t stored_bytes;
};

/* A workspace: its quotas and what its containers hold now (sched.c keeps the
 * counts as it reserves and releases). */
struct ctl_ws {
    struct list_node link;      /* in ctl->workspaces */
    char name[CTL_WS_NAME_MAX + 1];
    double created_at;
    struct ctl_quotas quotas;
    uint32_t containers;
    uint32_t cpu_used;
    uint64_t mem_used;
    uint32_t gpus_used;
};

struct ctl_app {
    struct list_node link;      /* in ctl->apps */
    char name[CTL_QNAME_MAX];   /* "<workspace>/<app>" */
    struct ctl_ws *ws;          /* its workspace (set by who adds the app; NULL: none, no quotas) */
    struct ctl *ctl;            /* the control it belongs to (its functions' timers and lookups) */
    bool stopped;
    double created_at;
    struct list_node fns;       /* struct ctl_fn */
    uint64_t log_seq;           /* the seq of its latest log line (logs.c) */
    bool log_seq_loaded;        /* log_seq was read from the store */
    struct list_node log_subs;  /* struct ctl_app_log_sub */
};

/* One deployed version of a function. Live while it is the latest version or still has
 * queued/running calls or containers; then freed (the store keeps it). */
struct ctl_fver {
    struct list_node link;      /* in fn->versions */
    struct ctl_fn *fn;
    struct ctl *ctl;
    uint32_t version;
    struct spec_function spec;
    json_t *spec_json;
    char rootfs[512];
    bool host_usr;
    char **env;                 /* the image's env, then the function's (NULL-terminated) */
    const char *workdir;        /* the function's, or the image's when the function kept "/" */
    char *image_workdir;
    char **mount_dirs;          /* materialised spec.mounts trees, parallel to spec.mount_paths */
    struct list_node queue;     /* runnable calls, FIFO (struct ctl_call.qlink) */
    size_t queued;              /* length of queue */
    size_t running;
    size_t retry_waiting;       /* calls waiting on a backoff timer */
    struct list_node ctrs;      /* struct ctl_ctr */
    uint32_t nstarting, nready;
    /* Ready containers with nothing in flight, longest idle first (struct
     * ctl_ctr.idle_link; evict.c keeps the order), and how many. */
    struct list_node idle;
    uint32_t nidle;
    char waiting_reason[512];
    /* Snapshot functions: the snapshot its containers are restored from, shared with
     * every version whose containers would be identical (struct ctl_snap); NULL until
     * one is taken (at deploy) and again after it failed or died. */
    struct ctl_snap *snap;
    /* The scheduling sets (model.c, "scheduling sets" below). */
    uint32_t order;             /* position in the walk of every version (ctl_for_each_version) */
    bool sched_marked;          /* in ctl->sched_next or in the running pass */
    uint8_t sched_blocked;      /* enum ctl_blocked */
    struct list_node blocked_link; /* in ctl->sched_blocked while CTL_BLOCKED */
    /* The eviction ranking (evict.c): how many idle containers make_room may take; the
     * predicted next use as placed, and the idle start of the longest idle then; the
     * positions in the ranking heap of its line's slope and in the heap of line ends
     * (index + 1, 0: not in it); linked in ctl->ev_dirty while waiting to be placed. */
    uint32_t ev_count;
    struct ka_use_line ev_line;
    uint64_t ev_since_ms;
    size_t ev_rank_pos, ev_end_pos;
    struct list_node ev_dirty_link;
    size_t room_pos;            /* while CTL_BLOCKED_ON_ROOM: in ctl->room_queued or room_idle (index + 1) */
    bool room_queued;           /* which of the two (model.c, scheduling sets) */
};

/* A snapshot on the worker (a fork template), named by the content of the containers
 * it serves: the versions whose container specs hash to the same key share it, so a
 * redeploy of unchanged code (`gust run` again) restores from the template the last
 * deploy warmed instead of running the init again. Referenced by those versions
 * (refs); with none it is kept as a spare (ctl->snaps_spare) for a while, then
 * dropped. */
/* How long a spare is kept: 10 minutes, the value keepalive.c gives a cold start (the
 * break-even of a fixed 10-minute keep-alive) -- a spare template is an idle container
 * that saves one init, so it earns its memory for as long as an idle container would.
 * At most CTL_SNAP_SPARES at once: the developer loop (edit, `gust run`, again) needs
 * one per snapshot function of the app being iterated on; four covers an app with a
 * few snapshot classes while bounding the memory that templates nobody uses hold. */
#define CTL_SNAP_SPARE_MS_DEFAULT (10u * 60 * 1000)
#define CTL_SNAP_SPARES 4

struct ctl_snap {
    struct list_node link;      /* in ctl->snaps */
    struct list_node spare_link; /* in ctl->snaps_spare while refs == 0 */
    struct ctl *ctl;
    char key[65];               /* hex SHA-256 of the workspace and the container spec */
    char id[64];                /* the worker's id of the template: "tp-..." */
    enum snapshot_state state;  /* TAKING or READY */
    uint32_t refs;              /* versions whose fv->snap is this */
    uint64_t spare_timer;       /* drops a spare when it fires; 0: none */
    uint64_t restores;          /* containers started from it */
};

struct ctl_fn {
    struct hmap_node node;      /* first: in ctl->fns by (app name, name), found by casting the node */
    struct list_node link;      /* in app->fns */
    struct ctl_app *app;
    char name[64];
    struct ctl_fver *latest;
    struct list_node versions;  /* struct ctl_fver */
    struct list_node subs;      /* struct ctl_log_sub */
    uint64_t calls_total;
    bool logs_dirty, calls_dirty; /* wrote to the store since the last trim */
    struct ka_state ka;         /* keep-alive: calls.c reports the work's level, sched.c reads it */
    struct kpa_state kpa;       /* autoscaler windows: calls.c reports the work, sched.c decides */
    uint64_t ka_timer, ka_timer_at; /* the keep-alive pass's timer (sched.c); 0: none */
    uint64_t ka_pass_ms;        /* when the last keep-alive pass ran (pre-warms due since) */
    uint64_t ka_saved;          /* ka.changes when the history was last stored */
    uint64_t evictions, prewarms; /* since this daemon started (the store counts evictions too) */
    uint64_t call_starts;       /* calls started since this daemon started (which ones overlapped) */
    struct ctl_schedule *schedule; /* schedule.c: its schedule while deployed with one; NULL: none */
    bool retired;               /* a deploy of its app left it out (latest NULL); a later one may bring it back */
    struct metrics_fn metrics;  /* metrics.c */
};

/* Told once when a call reaches its final state (calls.c), on the loop's thread. An
 * observer stays linked until it unlinks itself (ctl_call_unobserve); a finished call
 * with observers linked is kept in memory. */
struct ctl_call_obs {
    struct list_node link;      /* in call->observers */
    void (*on_final)(struct ctl_call_obs *o, struct ctl_call *call);
    /* Frees the observer when control is freed with it still linked (NULL: nothing). */
    void (*release)(struct ctl_call_obs *o);
};

/* Told when an item is added to a generator call's items (items.c), on the loop's
 * thread; linked until it unlinks itself. */
struct ctl_items_poller {
    struct list_node link;      /* in items->pollers */
    void (*on_item)(struct ctl_items_poller *p);
};

/* A generator call's items (items.c): those the consumer has not taken, oldest first,
 * head being item number `first`. */
struct ctl_items {
    struct ctl *ctl;
    struct ctl_item *head, *tail;
    uint64_t first;             /* index of head: the items the consumer took */
    uint64_t total;             /* items received */
    size_t held;                /* bytes of the items held (also counted in ctl->items_held) */
    uint64_t taken_bytes;       /* item bytes the consumer took in all (what item_ack says) */
    uint64_t acked_bytes;       /* taken_bytes when the container was last told */
    bool expired;               /* unread items were dropped CTL_ITEMS_KEEP_MS after the end */
    uint64_t expire_timer;
    struct list_node pollers;   /* struct ctl_items_poller */
};

/* One long poll on a generator call's items (wait.c): observes the call (its end) and
 * its items (a new one). */
struct ctl_items_waiter {
    struct ctl_call_obs obs;
    struct ctl_items_poller poller;
    struct ctl *ctl;
    struct ctl_call *call;
    uint64_t from;
    ctl_items_cb cb;
    void *ud;
    uint64_t timer;             /* the poll's deadline (0: none) */
    uint64_t soon;              /* answers at the end of this loop turn: items arrived */
};

struct ctl_waiter {
    struct ctl_call_obs obs;
    struct ctl_call *call;
    ctl_wait_cb cb;
    void *ud;
    uint64_t timer;
    struct ctl *ctl;
};

/* A call's timeline (docs/API.md "Call timelines"): offsets in µs from its submit, all
 * read from one clock (mono_ns), so that its phases are contiguous and add up to its
 * end-to-end time exactly. µs, not the loop's cached ms: a warm call takes a few hundred
 * µs in all. A few integers in the call record and no allocation: it is written to the
 * store in the final state's row write (calls.c). */
/* Attempts a timeline lists: the first three and the latest (a call may be requeued
 * any number of times after container losses; retries alone are at most 11 attempts).
 * Four keep the record small (these are in every call kept in memory); the phase sums
 * count every attempt. */
#define CTL_TL_ATTEMPTS 4
struct ctl_tl_attempt {
    int64_t dispatched_us, ended_us; /* ended_us 0 while it runs */
    char ctr[32];                    /* the container that took it */
    bool cold;                       /* its container's first input */
    bool snapshot;                   /* its container was forked from a snapshot template */
};
struct ctl_tl {
    uint64_t submit_ns;              /* mono_ns() at submit; 0 for a call read back from the store */
    int64_t first_output_us;         /* first item of a generator, else its result; -1 none yet */
    int64_t ended_us;                /* -1 while unfinished */
    int64_t running_us;              /* the sum of every attempt's time in a container */
    uint32_t nattempts;              /* attempts recorded (all of them, even past CTL_TL_ATTEMPTS) */
    struct ctl_tl_attempt att[CTL_TL_ATTEMPTS];
    /* How the container of its first cold attempt started: its start and ready times
     * (from submit; negative when before it) and the sandbox's phases (µs). */
    bool has_start;
    int64_t ctr_started_us, ctr_ready_us;
    uint32_t breakdown_us[7];
};

struct ctl_call {
    struct hmap_node node;      /* first: in ctl->calls, found by casting the node */
    struct ctl *ctl;
    struct list_node qlink;     /* in fv->queue while queued */
    struct list_node flink;     /* in ctl->finished once final, for eviction */
    char id[64];
    char app[CTL_QNAME_MAX];
    char function[64];
    uint32_t version;
    struct ctl_fver *fv;        /* NULL once finished */
    enum ctl_call_state state;
    bool durable;
    bool queued;
    void *input;
    size_t input_len;
    void *output;
    size_t output_len;
    char error_code[32];
    char *error_message;
    uint32_t attempts;
    double created_at, started_at, finished_at;
    uint64_t input_id;
    struct ctl_ctr *ctr;
    uint64_t timeout_timer;
    uint64_t retry_timer;
    struct list_node observers; /* struct ctl_call_obs */
    struct ctl_items *items;    /* a generator call's items; NULL for other calls */
    bool no_retry;              /* a web request: failed attempts are final (no retry) */
    /* Its input stream (stream.c, ctl_call_input_more): bytes not yet sent to a
     * container (from held_off on), bytes sent and acknowledged by the one running it,
     * and its end as asked and as sent. */
    struct buf more_held;
    size_t more_held_off;
    uint64_t more_sent, more_acked;
    bool more_end_asked, more_end_sent;
    /* Whether another call of its function ran while this one did (so far): one was
     * running when it started, or one started after it (fn->call_starts passed
     * start_no), while it still runs. Its log lines then say so (logs.c). */
    bool started_in_company;
    uint64_t start_no;
    struct ctl_tl tl;
    char *timeline_text;        /* the stored timeline of a call read back from the store */
};

struct ctl_slot {
    uint64_t input_id;          /* 0 = free */
    struct ctl_call *call;      /* NULL if the call was detached (cancelled/timed out) */
};

enum ctl_ctr_state { CTR_STARTING = 1, CTR_READY, CTR_STOPPING };

/* A container's metering record on its way to the store (sched.c): its start (every
 * field of rec from id to started_at), its ready time (id, ready_at) or its stop (id,
 * stopped_at, busy_s, inputs_done, stop_reason, usage). */
enum ctl_ctr_row_kind { CTR_ROW_START, CTR_ROW_READY, CTR_ROW_STOP };
struct ctl_ctr_row {
    enum ctl_ctr_row_kind kind;
    struct store_container rec;
};

/* Control's record of a container on the worker, named by id across the seam. */
/* An API token's length ("gust_" + 16-character id + "_" + 52-character secret, see
 * ident.c) and its id's. */
#define CTL_TOKEN_LEN 74
#define CTL_TOKEN_ID_LEN 16

struct ctl_ctr {
    struct hmap_node node;      /* first: in ctl->ctrs by id */
    struct list_node link;      /* in fv->ctrs */
    struct ctl *ctl;
    struct ctl_fver *fv;
    char id[32];
    enum ctl_ctr_state state;
    uint32_t inflight;          /* slots in use; <= nslots */
    uint32_t nslots;
    struct ctl_slot *slots;
    uint64_t idle_since_ms;
    struct list_node idle_link; /* in fv->idle while ready with nothing in flight */
    uint64_t seq;               /* start order (ctl->ctr_seq): fv->ctrs holds the newest first */
    char token_id[CTL_TOKEN_ID_LEN + 1]; /* its ephemeral API token's id, "" for none */
    double started_at, ready_at;
    uint64_t busy_since_ns;     /* 0 when idle */
    uint64_t busy_ns;
    uint64_t inputs_done;
    uint64_t inputs_taken;    /* inputs sent to it: it takes no more at the spec's lifetime_inputs */
    double flushed_busy_s;      /* busy time and inputs as sched_flush_usage last wrote them */
    uint64_t flushed_inputs;
    uint32_t cpu_millicores, memory_mib;
    bool evicted;               /* stopped to make room for queued work (its stop reason) */
    bool prewarm;               /* started ahead of a predicted call, not for one */
    int gpu_idx[CTR_MAX_GPUS];
    int ngpu;
    char gpu_type[32];
    uint64_t kill_timer;        /* armed when a cancelled input must come back in time */
    /* Its volumes (volumes.c): what each is mounted on, and the seam's arrays. */
    struct ctl_ctr_vol *vols;
    size_t nvols;
    char **vol_paths, **vol_lowers, **vol_dirs;
    bool vol_layers;            /* the tmpfs of its volume layers is mounted (volumes.c) */
    /* For call timelines: when it was asked to start and became ready (mono_ns), whether
     * it was forked from a snapshot, and the sandbox's phases (µs, from the worker at
     * ready: cgroups, namespaces, network, mounts, user namespace, seccomp/caps, exec). */
    uint64_t start_ns, ready_ns;
    bool from_snapshot;
    uint32_t breakdown_us[7];
};

/* A volume mounted in a container (volumes.c). */
struct ctl_ctr_vol {
    char qname[CTL_QNAME_MAX];
    char path[512];             /* where, in the container (a spec's absolute path) */
    char manifest[80];          /* the version its lower layer is ("sha256:...") */
    int64_t version;
    char dir[512];              /* its upper/ and work/ on the host */
};

/* One input of a map: observes its call until the result was emitted. */
struct ctl_map_entry {
    struct ctl_call_obs obs;
    struct ctl_map *map;
    struct ctl_call *call;      /* NULL once emitted */
    bool finished;
};

struct ctl_map {
    struct list_node link;      /* in ctl->maps, until all results are in */
    struct ctl *ctl;
    ctl_map_cb cb;
    void *ud;
    bool ordered;
    bool detached;
    size_t n, done, next_emit;
    struct ctl_map_entry *entries; /* by input index */
};

struct ctl_log_sub {
    struct list_node link;      /* in fn->subs */
    struct ctl_fn *fn;
    ctl_log_cb cb;
    void *ud;
};

struct ctl_app_log_sub {
    struct list_node link;      /* in app->log_subs */
    ctl_log_entry_cb cb;
    void *ud;
};

struct ctl_log_line {
    char app[CTL_QNAME_MAX], function[64], container[32], call_id[64];
    double ts;
    int stream;
    uint64_t seq;
    bool concurrent;
    char *line;
    size_t len;
};

#define CTL_BUILD_LANES 2

/* A binary heap of versions (model.c), by one of the keys versions keep:
 *   CTL_VHEAP_RANK  the eviction ranking's line (evict.c), highest first, then the
 *                   longest idle head, then walk order (in one slope's heap)
 *   CTL_VHEAP_END   the ranking's line end, earliest first
 *   CTL_VHEAP_ROOM  the memory (then cpu) a version blocked on room asks, least first
 * A version is in at most one heap of each kind; its position there is in it. */
enum ctl_vheap_kind { CTL_VHEAP_RANK, CTL_VHEAP_END, CTL_VHEAP_ROOM };
struct ctl_vheap {
    struct ctl_fver **v;
    size_t n, cap;
    enum ctl_vheap_kind kind;
};

/* The longest timeline text (ctl_call_timeline_text): its fixed part and four attempts
 * with 31-character container ids and 20-digit numbers fit in under 1,500 bytes. */
#define CTL_TIMELINE_MAX 2048

struct ctl {
    struct ev_loop *loop;
    struct store *store;
    const struct worker_ops *wops;   /* the worker, across the seam (worker/ops.h) */
    void *worker;
    struct worker_inventory inv;     /* its capacity, read once */
    uint64_t last_gpu_sample_ms;
    struct ctl_config cfg;
    char images_dir[512];
    /* Where web endpoints are reached (views.c, ctl_web_set_urls): "" when gustd has
     * no web listener. */
    char web_base[256];
    char web_domain[256];
    char web_scheme[8];
    char web_port[8];
    struct cas *cas;
    struct builder *builder;
    struct list_node deploy_builds;  /* struct ctl_deploy_build (builds.c) */
    struct list_node apps;           /* struct ctl_app */
    struct hmap fns;                 /* struct ctl_fn by (app name, name): calls find theirs in O(1) */
    struct hmap calls;               /* struct ctl_call by id */
    struct hmap ctrs;                /* struct ctl_ctr by id */
    struct list_node maps;           /* struct ctl_map */
    struct list_node finished;       /* final calls, oldest first */
    size_t fin_count;
    size_t items_held;               /* bytes of generator items of all calls (items.c) */
    uint64_t next_input_id;
    uint64_t ctr_seq;                /* containers started (struct ctl_ctr.seq) */
    /* Asks for a scheduling pass at the end of this loop iteration. Set by control.c
     * (to sched_kick) so that lower files can ask without calling up. */
    void (*kick)(struct ctl *c);
    /* Set to sched_keepalive_kick: fn's work changed (ctl_fn_work_changed). */
    void (*keepalive_kick)(struct ctl *c, struct ctl_fn *fn);
    bool sched_pending;
    bool shutting_down;
    char timeline_buf[CTL_TIMELINE_MAX]; /* ctl_call_timeline's answer for a call in memory */
    void (*shutdown_cb)(void *ud);
    void *shutdown_ud;
    uint64_t tick_timer;
    uint64_t last_flush_ms;          /* mono_ms of the last usage flush (control.c, tick) */
    uint64_t last_ka_save_ms;
    struct ctl_ctr_row *ctr_rows;    /* metering records not yet written (sched.c), oldest first */
    size_t nrows, rows_cap;
    uint64_t rows_since_ms;          /* mono_ms when the oldest of them was queued */
    uint64_t last_trim_ms;
    uint64_t last_kv_sweep_ms;       /* ctl_kv_tick (kv.c), once a second */
    enum ka_policy ka_policy;        /* cfg.keepalive_policy, parsed */
    double ka_lambda;                /* the default's exchange rate (ka_solve_value); 0: none yet */
    uint64_t ka_solved_samples;      /* idle times the last solve saw */
    /* capacity in use */
    uint32_t cpu_used;
    uint64_t mem_used;
    /* Within one scheduling pass: what stopping containers will free that a start
     * already counted on (sched.c, make_room). */
    uint32_t claimed_cpu;
    uint64_t claimed_mem;
    uint32_t claimed_gpus;
    /* What containers in CTR_STOPPING hold (sched.c: counted when a stop is asked,
     * uncounted at their exit), so make_room need not walk every container. */
    uint64_t stopping_cpu, stopping_mem;
    uint32_t nstopping;
    /* The scheduling sets (model.c). */
    struct ctl_fver **sched_next;    /* marked for the next pass, any order */
    size_t nnext, next_cap;
    struct ctl_fver **pass;          /* the running pass, in order; pass_pos: the next to visit */
    size_t npass, pass_cap, pass_pos;
    bool pass_active;
    uint32_t pass_cursor;            /* order of the version being visited */
    /* The version a pass is visiting: ctl_fver_maybe_free leaves it to the end of the
     * visit (a failed start can finish its last call mid-visit). */
    struct ctl_fver *sched_visiting;
    struct list_node sched_blocked;  /* CTL_BLOCKED versions (struct ctl_fver.blocked_link) */
    /* CTL_BLOCKED_ON_ROOM versions with queued calls (eviction may serve them) and
     * without, each heap by what they ask (model.c, scheduling sets). */
    struct ctl_vheap room_queued, room_idle;
    bool gpu_used[WORKER_MAX_GPUS];
    struct ctl_ctr *gpu_holder[WORKER_MAX_GPUS]; /* the container holding each used GPU */
    /* The eviction ranking (evict.c): evictable versions by their line's slope + 1,
     * those with a line that ends by its end, those waiting to be placed, and what all
     * evictable containers hold together. */
    struct ctl_vheap ev_rank[3], ev_ends;
    struct list_node ev_dirty;
    uint64_t ev_cpu, ev_mem;
    struct ctl_log_line *logq;
    size_t logq_len, logq_cap;
    uint64_t log_timer;
    struct list_node secrets;        /* struct ctl_secret (secrets.c) */
    struct list_node kv_waiters;     /* struct ctl_kv_waiter, oldest first (kv.c) */
    json_t *vol_last;                /* volume qname -> its last materialised version's id (volumes.c) */
    struct list_node workspaces;     /* struct ctl_ws (ident.c) */
    struct hmap tokens;              /* struct ctl_token by id (ident.c) */
    struct ctl_image_jobs *image_jobs; /* the image job thread (images.c), NULL until used */
    struct list_node snaps;          /* struct ctl_snap (model.c) */
    struct list_node snaps_spare;    /* the unreferenced ones, oldest first */
    size_t nspare;
};

/* Iterates every version of every function of every app. This walk's order is the
 * scheduler's order (fv->order): versions of newer apps first, then of newer
 * functions, then newer versions; a pass serves them in it, so it decides who gets
 * capacity that several wait for. */
#define ctl_for_each_version(fv, c)                                                                           \
    list_for_each(fv##_app_, &(c)->apps, struct ctl_app, link)                                               \
        list_for_each(fv##_fn_, &fv##_app_->fns, struct ctl_fn, link)                                        \
            list_for_each_safe(fv, &fv##_fn_->versions, struct ctl_fver, link)

/* ---- keepalive.c ----
 * The policy of one function, driven by one event and read by the scheduler:
 *   ka_set_level  the function's work (queued, running or waiting to retry, across its
 *                 versions) now needs n containers: ceil(work / inputs per container).
 *                 When it rises to k, level k's idle time ends (now_ms - when it went
 *                 idle); when it falls below k, level k's idle time begins. Level 1's
 *                 idle times are ATC'20's: from the end of the function's last work to
 *                 its next call. Level k's are the same for its k-th container.
 *   ka_wanted     how many containers the policy wants alive at now_ms: the level, plus
 *                 every idle level inside its keep-alive window and past its pre-warm
 *                 point. *next_ms: the earliest later time at which that count changes
 *                 when nothing else happens (UINT64_MAX: never); always > now_ms.
 *   ka_prewarms_due  how many idle levels reached their pre-warm point in (from_ms,
 *                 now_ms]: the containers to start for them (a container lost while
 *                 its level is wanted, to a crash or an eviction, is not re-created:
 *                 only a pre-warm point starts one).
 *   ka_keepalive_ms, ka_prewarm_ms, ka_short_ms  level k's windows: how long after it
 *                 went idle its container is kept; with a pre-warm (ka_prewarm_ms > 0),
 *                 the container is kept only for the short window (0: not at all), then
 *                 released, and started again at the pre-warm point. Always short <=
 *                 prewarm < keepalive.
 *   ka_next_use_ms  the predicted time from now_ms until level k is needed again: 0
 *                 while it is busy; the eviction ranking (largest first) uses it.
 *   ka_next_use_line  ka_next_use_ms as a line in time: base + slope x now, exact for
 *                 now from now_ms until until_ms (exclusive) while the state does not
 *                 change. A prediction moves only as idle time passes, in steps of the
 *                 histogram's bins, so the eviction ranking (evict.c) keeps each
 *                 function's line and recomputes it when it ends or the state moves.
 *   ka_idle_for_ms  how long level k has been idle (0 while busy or never reached).
 * Pure functions of the state and the times given: no clock is read. */
/* 0, or -EINVAL for an unknown name (NULL is "default"). */
int ka_policy_parse(const char *name, enum ka_policy *out);
const char *ka_policy_name(enum ka_policy p);
void ka_init(struct ka_state *s, enum ka_policy policy);
void ka_free(struct ka_state *s);
void ka_set_level(struct ka_state *s, uint32_t n, uint64_t now_ms);
uint32_t ka_wanted(const struct ka_state *s, uint64_t now_ms, uint64_t *next_ms);
uint32_t ka_prewarms_due(const struct ka_state *s, uint64_t from_ms, uint64_t now_ms);
uint64_t ka_keepalive_ms(const struct ka_state *s, uint32_t k);
uint64_t ka_prewarm_ms(const struct ka_state *s, uint32_t k);
uint64_t ka_short_ms(const struct ka_state *s, uint32_t k);
uint64_t ka_next_use_ms(const struct ka_state *s, uint32_t k, uint64_t now_ms);
void ka_next_use_line(const struct ka_state *s, uint32_t k, uint64_t now_ms, struct ka_use_line *out);
uint64_t ka_idle_for_ms(const struct ka_state *s, uint32_t k, uint64_t now_ms);
/*   ka_set_value  the default policy's valuation of a cold start, in ms of an idle
 *                 container of this function (ka_solve_value): decides its windows again
 *                 when it moved.
 *   ka_solve_value  the exchange rate that spends the fixed 10-minute keep-alive's cold
 *                 starts, as predicted from the n default-policy functions' own
 *                 histories (s[i], whose containers each reserve gib[i] GiB), with the
 *                 least idle memory: lambda in GiB x ms of idle container per cold start,
 *                 each function's value being lambda / gib[i]. prev (> 0) when nothing
 *                 is known yet. keepalive.c's comment says why. */
void ka_set_value(struct ka_state *s, double value_ms);
double ka_solve_value(const struct ka_state *const *s, const double *gib, size_t n, double prev);
/* The histories (not the levels: their times are of this daemon's clock), to store and
 * load across restarts. ka_decode replaces s's histories and decides their windows; 0,
 * or -EINVAL for data that is not an encoding of this version or the one before (s is
 * unchanged). */
struct buf;
void ka_encode(const struct ka_state *s, struct buf *out);
int ka_decode(struct ka_state *s, const void *data, size_t len);

/* ---- kpa.c ----
 *   kpa_init      an empty state with a stable window of window_ms (0: KPA_STABLE_MS),
 *                 rounded down to whole buckets; the panic window is a tenth of it
 *   kpa_set_window  the same with another window, when it differs (the history goes)
 *   kpa_observe   the function's concurrency is value from now_ms on (call events)
 *   kpa_decide    the containers the function wants at now_ms with target inputs per
 *                 container and `ready` containers ready: ceil(average / target) over
 *                 the stable window, or over the panic window while panicking (entered
 *                 when the panic window asks for 2 x ready or more, left after a whole
 *                 stable window below that, never going down meanwhile). Updates the
 *                 panic state; 0 when the window holds no concurrency. *out (may be
 *                 NULL) gets what it saw
 *   kpa_recheck_ms  how long after a decision the averages are worth deciding on again
 *                 when no call event comes (Knative's tick)
 * Pure functions of the state and the times given: no clock is read. */
void kpa_init(struct kpa_state *s, uint64_t window_ms);
void kpa_set_window(struct kpa_state *s, uint64_t window_ms);
void kpa_observe(struct kpa_state *s, uint32_t value, uint64_t now_ms);
uint32_t kpa_decide(struct kpa_state *s, uint32_t target, uint32_t ready, uint64_t now_ms, struct kpa_view *out);
uint64_t kpa_recheck_ms(const struct kpa_state *s);

/* ---- model.c ---- */
void ctl_err(struct ctl_error *e, enum ctl_errkind kind, const char *code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
struct ctl_app *ctl_find_app(struct ctl *c, const char *name);
struct ctl_fn *ctl_find_fn(struct ctl *c, const char *app, const char *fn);
struct ctl_app *ctl_app_get_or_add(struct ctl *c, const char *name, double created_at);
/* A new function's keep-alive state starts under policy. */
struct ctl_fn *ctl_fn_get_or_add(struct ctl_app *a, const char *name, enum ka_policy policy);
/* Whether any version of fn has calls queued, running or waiting to retry. */
bool ctl_fn_has_work(const struct ctl_fn *fn);
/* The inputs per container that the autoscaler sizes for: scaling.target_inputs when
 * given, else max_inputs (at least 1). Dispatch still fills a container to max_inputs,
 * so one takes more than its target when no other can start (Modal's burst). */
uint32_t ctl_inputs_per_ctr(const struct spec_function *f);
/* fn's work: its calls queued, running or waiting to retry, across its versions (the
 * concurrency the autoscaler averages). */
uint64_t ctl_fn_work(const struct ctl_fn *fn);
/* fn's stable window (kpa.c): KPA_STABLE_MS, or its latest version's scaledown_window
 * when that is shorter (an idle container must not be kept past the window its function
 * asked for because of an average over a longer one). */
uint64_t ctl_fn_kpa_window_ms(const struct ctl_fn *fn);
/* The containers fn's work (ctl_fn_work) needs: ceil(work / ctl_inputs_per_ctr of its
 * latest version). */
uint32_t ctl_fn_level(const struct ctl_fn *fn, uint64_t work);
/* Calls of fn running now, over its versions. */
size_t ctl_fn_running(const struct ctl_fn *fn);
struct ctl_fver *ctl_find_version(struct ctl_fn *fn, uint32_t version);
/* The snapshot with the worker id snap_id, or with content key key (NULL if none). */
struct ctl_snap *ctl_snap_by_id(struct ctl *c, const char *snap_id);
struct ctl_snap *ctl_snap_by_key(struct ctl *c, const char *key);
/* A new snapshot record in state TAKING (the caller asked the worker to take it) for
 * fv, which holds its first reference. */
struct ctl_snap *ctl_snap_new(struct ctl *c, struct ctl_fver *fv, const char *key, const char *id);
/* fv takes a reference on s (a spare stops being one). */
void ctl_snap_attach(struct ctl_fver *fv, struct ctl_snap *s);
/* fv stops using its snapshot, which the worker let go (it stays no spare). */
void ctl_fver_forget_snapshot(struct ctl_fver *fv);
/* The worker let s go (it failed or its template died): every version that still
 * used it forgets it, and the record is freed. */
void ctl_snap_gone(struct ctl *c, struct ctl_snap *s);
/* Drops every snapshot (ctl_free). */
void ctl_snaps_free(struct ctl *c);
struct ctl_ctr *ctl_find_ctr(struct ctl *c, const char *id);
/* Frees what k holds of its volumes (the records volumes.c made; memory only). */
void ctl_ctr_vols_free(struct ctl_ctr *k);
/* The deployed version of an app that is not stopped. */
bool ctl_fver_is_current(const struct ctl_fver *fv);
/* A version that can still start containers: current, or with containers or queue. */
bool ctl_fver_live(const struct ctl_fver *fv);
/* The version lets its snapshot go (containers from it keep running): the last
 * reference makes it a spare, kept cfg.snapshot_spare_ms for a redeploy of the same
 * content (the oldest spare is dropped first past CTL_SNAP_SPARES). */
void ctl_fver_drop_snapshot(struct ctl_fver *fv);
/* Frees fv (and drops its snapshot) once nothing uses it: not the latest, no queue,
 * no running or retrying calls, no containers; not while a pass visits it. */
void ctl_fver_maybe_free(struct ctl *c, struct ctl_fver *fv);
void ctl_fver_free(struct ctl_fver *fv);
void ctl_fver_free_env(struct ctl_fver *fv);
/* Frees every app, function and version record (ctl_free). */
void ctl_model_free(struct ctl *c);

/* Scheduling sets. A scheduling pass (sched.c) visits only the versions marked since
 * the last pass and the blocked ones that may now get further, in walk order. A visit
 * of any other version would change nothing, so passes decide exactly what visiting
 * every version decides. The contract for whoever changes what a pass decides from
 * (queue, containers and their slots, snapshot, spec, current version, shutdown,
 * quotas): mark the version (ctl_sched_mark), or all of them (ctl_sched_mark_all)
 * when the change is not one version's. Keep-alive timers (sched.c) start and stop
 * containers outside passes: those go through the same marks. Marking asks for no
 * pass: c->kick does.
 *   ctl_sched_mark        the next pass visits fv; during a pass, this pass when fv
 *                         comes after the version being visited (as a walk of every
 *                         version would), else the next one
 *   ctl_sched_mark_all    every version
 *   ctl_sched_set_blocked fv tried to start a container and could not. CTL_BLOCKED
 *                         (a snapshot on its way, a failed start, evictions or stops
 *                         it waits for): every pass visits it. CTL_BLOCKED_ON_ROOM
 *                         (the worker's cpu, memory or GPUs, or a quota, and eviction
 *                         could not free enough): only more room can change what its
 *                         visit does, so it is visited when room grows enough for it
 *   ctl_sched_room_grew   room may have grown: capacity or a quota's use released
 *                         (sched.c, release), containers asked to stop (stop_asked),
 *                         the last pass's claims on stopping containers dropped
 *                         (sched_run). Marks each version blocked on room that may fit
 *                         now: what is free, or for queued work what is free, stopping
 *                         and evictable together, holds its cpu and memory (any start
 *                         needs that, whatever else it waits for: GPUs, a quota). Heaps
 *                         by what they ask: only those that fit are looked at
 *   ctl_sched_evictable_grew  more is evictable (evict.c): room_grew when the most that
 *                         could be free now holds the memory of the smallest queued
 *                         version blocked on room
 *   ctl_sched_reorder     renumbers fv->order after a version was added
 * Less room never lets a version blocked on room start, and neither does room that
 * does not hold it; its waiting_reason keeps the free capacity seen at its last
 * visit. A freed version leaves every set (ctl_fver_free). */
enum ctl_blocked { CTL_UNBLOCKED, CTL_BLOCKED, CTL_BLOCKED_ON_ROOM };
void ctl_sched_mark(struct ctl_fver *fv);
void ctl_sched_mark_all(struct ctl *c);
void ctl_sched_set_blocked(struct ctl_fver *fv, enum ctl_blocked b);
void ctl_sched_room_grew(struct ctl *c);
void ctl_sched_evictable_grew(struct ctl *c);
void ctl_sched_reorder(struct ctl *c);
void ctl_vheap_push(struct ctl_vheap *h, struct ctl_fver *fv);
/* Takes fv out of h (nothing when it is not in a heap of h's kind). */
void ctl_vheap_remove(struct ctl_vheap *h, struct ctl_fver *fv);
void ctl_vheap_free(struct ctl_vheap *h);
/* Starts a pass over the marked and CTL_BLOCKED versions; ctl_sched_pass_next gives
 * them one at a time in walk order (NULL: the pass is over). */
void ctl_sched_pass_begin(struct ctl *c);
struct ctl_fver *ctl_sched_pass_next(struct ctl *c);

/* ---- evict.c ----
 * The eviction ranking, kept as containers and versions change so that make_room
 * (sched.c) finds its victim in O(log n), not by a walk of every container. The victim
 * is the evictable container least likely to be used soon: a function's idle
 * containers stand for the levels just above its work (keepalive.c), so a version's
 * evictable containers share the prediction of its highest, level + idle
 * (ka_next_use_ms); the largest prediction wins, then the longest idle container (LRU),
 * then the first in the walk of every version and of each version's containers.
 * Evictable: ready with nothing in flight, of a version with no queued calls, above
 * its min_containers and buffer_containers when it is current.
 * Who changes what the ranking decides from tells it:
 *   evict_idle_add, evict_idle_del  k became idle (idle_since_ms set) or stopped being
 *                 idle; they keep fv->idle and fv->nidle, and the caller then calls
 *                 evict_update
 *   evict_update  fv's counts (starting, ready, idle), queue, idle containers or
 *                 current-ness changed
 *   evict_update_fn  the function's keep-alive state changed (each ka_set_level), or a
 *                 deploy or app stop changed which of its versions is current
 *   evict_victim  the victim at now (NULL: none), among the containers holding a GPU
 *                 that gpu_for could use when gpu_for is not NULL
 *   ctl->ev_cpu, ctl->ev_mem  what all evictable containers hold: what make_room can
 *                 free at most
 *   evict_longest_idle  fv's idle container idle the longest (NULL: none)
 * A version freed has no containers, so it left the ranking at its last update. */
void evict_init(struct ctl *c);
void evict_free(struct ctl *c);
void evict_idle_add(struct ctl_ctr *k);
void evict_idle_del(struct ctl_ctr *k);
struct ctl_ctr *evict_longest_idle(const struct ctl_fver *fv);
void evict_update(struct ctl_fver *fv);
void evict_update_fn(struct ctl_fn *fn);
struct ctl_ctr *evict_victim(struct ctl *c, uint64_t now, const struct spec_function *gpu_for);
/* GPUs of one of f's GPU options that container k holds (0: none, or f has none). */
int evict_gpus_for(const struct spec_function *f, const struct ctl_ctr *k, size_t option);

/* ---- ident.c ---- */
#define CTL_DEFAULT_WS "default"
/* Loads workspaces and tokens; on first start creates workspace "default" and the
 * admin token (<data-dir>/admin.token, 0600). */
/* A container's token (docs/API.md "Calls from inside a function"): role invoker of
 * workspace ws, kept in memory only (never stored, not in the token listing, not
 * revocable through the API) until ctl_token_ephemeral_drop(id). name is its label
 * (the container id). Writes the token (CTL_TOKEN_LEN characters) and its id. 0, or -1
 * (the secret could not be drawn). */
int ctl_token_ephemeral(struct ctl *c, const char *ws, const char *name, char token_out[CTL_TOKEN_LEN + 1],
                        char id_out[CTL_TOKEN_ID_LEN + 1]);
/* Forgets the ephemeral token id: from now on it is refused (401). "" or an unknown
 * or stored token's id: nothing. */
void ctl_token_ephemeral_drop(struct ctl *c, const char *id);
int ctl_ident_load(struct ctl *c, struct gerr *err);
void ctl_ident_free(struct ctl *c);
struct ctl_ws *ctl_ws_find(struct ctl *c, const char *name);
/* The workspace of a qualified name (NULL when it has none or it is gone). */
struct ctl_ws *ctl_ws_of_name(struct ctl *c, const char *qname);
/* The workspace part of a qualified name ("" when it has none). */
void ctl_ws_of(const char *qname, char ws[CTL_WS_NAME_MAX + 1]);

/* ---- metrics.c ----
 * Recording (each a few additions on the function's struct metrics_fn):
 *   metrics_call_started   a call started an attempt; its first one observes the
 *                          queue wait (started_at - created_at)
 *   metrics_call_finished  a call reached its final state: counted by outcome, and
 *                          its run (finished_at - started_at) observed if it started
 *   metrics_ctr_started    a container of fn was asked to start (a cold start)
 *   metrics_ctr_ready      one became ready after `seconds`
 *   metrics_ctr_gone       one exited having used cpu_ns of CPU time */
void metrics_observe(struct metrics_hist *h, double seconds);
void metrics_call_started(struct ctl_fn *fn, const struct ctl_call *call);
void metrics_call_finished(struct ctl_fn *fn, const struct ctl_call *call);
void metrics_ctr_started(struct ctl_fn *fn);
void metrics_ctr_ready(struct ctl_fn *fn, double seconds);
void metrics_ctr_gone(struct ctl_fn *fn, uint64_t cpu_ns);

/* ---- items.c ---- */
struct ctl_items *ctl_items_new(struct ctl *c);
void ctl_items_free(struct ctl_items *it);
/* Appends one item and tells the pollers. 0; -EMSGSIZE when the call would hold more
 * than a runner that keeps the item window can send (WORKER_ITEM_WINDOW + one payload);
 * -ENOBUFS when gustd would hold more than CTL_ITEMS_MAX_TOTAL of all calls. Nothing
 * is added then. */
int ctl_items_push(struct ctl_items *it, const void *data, size_t len);
/* The consumer took every item before index upto (first <= upto <= total): freed. */
void ctl_items_take(struct ctl_items *it, uint64_t upto);
/* The call ended: items still held are dropped CTL_ITEMS_KEEP_MS from now. */
void ctl_items_ended(struct ctl_items *it);

/* ---- calls.c ---- */
/* fn's work changed (a call arrived, finished or was restored): its level goes to the
 * keep-alive policy and the scheduler reconsiders its containers (c->keepalive_kick). */
void ctl_fn_work_changed(struct ctl *c, struct ctl_fn *fn);
struct ctl_call *ctl_call_new(struct ctl *c, struct ctl_fver *fv, const void *input, size_t len, bool durable);
void ctl_call_free(struct ctl_call *call);
struct ctl_call *ctl_call_find(struct ctl *c, const char *id);
/* The call with this id, from memory or the store (a stored call not in memory is
 * final: unfinished ones were loaded by recovery). NULL + e if there is none, or if
 * ws is not NULL and the call belongs to another workspace. */
struct ctl_call *ctl_call_lookup(struct ctl *c, const char *ws, const char *id, struct ctl_error *e);
bool ctl_call_state_is_final(enum ctl_call_state s);
void ctl_call_view_fill(struct ctl_call *call, struct ctl_call_view *v);
void ctl_call_observe(struct ctl_call *call, struct ctl_call_obs *o);
void ctl_call_unobserve(struct ctl *c, struct ctl_call_obs *o);
/* Inserts a new durable call into the store as pending (map_id NULL and map_index -1
 * when it is not part of a map). */
int ctl_call_store_new(struct ctl *c, const struct ctl_call *call, const char *map_id, int64_t map_index,
                       struct gerr *err);
/* Appends to (or, front, prepends to) fv's queue as pending. */
void ctl_queue_push(struct ctl_fver *fv, struct ctl_call *call, bool front);
/* Takes the oldest queued call of fv (NULL when the queue is empty). */
struct ctl_call *ctl_queue_pop(struct ctl_fver *fv);
/* Marks a dequeued call running on container k (input_id assigned), stored. */
void ctl_call_start(struct ctl *c, struct ctl_call *call, struct ctl_ctr *k);
/* Timelines: µs since the call's submit now; a generator's first item (the first
 * output; a call's result is its output otherwise); the timeline as JSON text
 * (docs/API.md "Call timelines") into buf, -ENOSPC when cap is short; a call's
 * timeline for a view: its stored text, or rendered into c->timeline_buf (valid until
 * the next call), NULL when it has none (a call finished before timelines). */
int64_t ctl_call_tl_now(const struct ctl_call *call);
void ctl_call_output_seen(struct ctl_call *call);
int ctl_call_timeline_text(const struct ctl_call *call, char *buf, size_t cap);
const char *ctl_call_timeline(struct ctl *c, const struct ctl_call *call);
/* Back to the queue (an attempt that did not count), stored as pending. */
void ctl_call_requeue(struct ctl *c, struct ctl_call *call, bool front);
/* Final state: stored (durable calls), observers told, kept for lookups. */
void ctl_call_finish(struct ctl *c, struct ctl_call *call, enum ctl_call_state state, const void *out, size_t out_len,
                     const char *code, const char *msg);
/* An attempt failed: retried with backoff if the policy allows, else finished. */
void ctl_call_failed_attempt(struct ctl *c, struct ctl_call *call, enum ctl_call_state state, const char *code,
                             const char *msg);
/* A running call whose container went away during shutdown: back to pending in the
 * store (it runs after the restart), not queued here. */
void ctl_call_park(struct ctl *c, struct ctl_call *call);
/* A call of a stopped daemon's store, queued again on fv with its stored identity. */
void ctl_call_restore(struct ctl *c, struct ctl_fver *fv, const struct store_call *sc);
/* Drops old finished calls beyond the in-memory bound. */
void ctl_calls_evict(struct ctl *c);
void ctl_calls_free(struct ctl *c);
/* Trims the stored finished calls of functions that finished some since the last
 * trim to cfg.calls_per_fn, and all of them to the age bound. */
void ctl_calls_trim(struct ctl *c);

/* ---- logs.c ---- */
/* A line from container k; input_id: the input that printed it (0: not known). */
void ctl_log_push(struct ctl *c, struct ctl_ctr *k, int stream, uint64_t input_id, const char *line, size_t len);
/* A log line of fn from container ctr_id (no call: call_id ""). */
void ctl_log_push_line(struct ctl *c, struct ctl_fn *fn, const char *ctr_id, const char *call_id, int stream,
                       const char *line, size_t len);
void ctl_log_flush(struct ctl *c);
/* The seq of a's latest log line (read from the store the first time). */
uint64_t ctl_app_log_seq_of(struct ctl *c, struct ctl_app *a);
/* Trims the stored lines of functions that logged since the last trim to
 * cfg.log_lines_per_fn. */
void ctl_logs_trim(struct ctl *c);
void ctl_logs_free(struct ctl *c);

/* ---- stream.c ---- */
/* Sends what the call's input stream holds to the container running it, as far as its
 * window allows (after dispatch, and after the container took more). */
void ctl_stream_flush(struct ctl *c, struct ctl_call *call);
/* The container running call took `bytes` of its stream in all (input_more_ack). */
void ctl_stream_acked(struct ctl *c, struct ctl_call *call, uint64_t bytes);

/* ---- wait.c, map.c: public API only (control.h) ---- */
void ctl_maps_free(struct ctl *c);

/* ---- kv.c ---- */

/* Answers every blocked queue get shutting_down (its client asks again later). */
void ctl_kv_shutdown(struct ctl *c);
/* Removes queue partitions past their partition_ttl (a batch of them; the control
 * tick calls it once a second). */
void ctl_kv_tick(struct ctl *c);

/* Frees the blocked queue gets left without answering them: at ctl_free the API
 * servers, and so their connections, are gone already. */
void ctl_kv_free(struct ctl *c);

/* ---- volumes.c ---- */

/* The volumes of f for container k's start: each volume's current version
 * materialised, k's layers made, cs->volume_* set (borrowing from k). */
int ctl_volumes_for_start(struct ctl *c, struct ctl_ctr *k, const struct spec_function *f, struct ctr_spec *cs,
                          struct gerr *err);
/* k is gone: commits its volumes' changes when commit (a normal stop), removes its
 * layers and frees its volume records. */
void ctl_volumes_release(struct ctl *c, struct ctl_ctr *k, bool commit);
/* At start: removes the layers of an earlier run's containers and the materialised
 * versions no volume is on. */
void ctl_volumes_recover(struct ctl *c);
/* Adds the id of every volume's current version, and of the versions running
 * containers are on, to ids (an object used as a set), for gc. */
int ctl_volume_roots(struct ctl *c, json_t *ids, struct gerr *err);

/* ---- secrets.c ---- */
/* Bounds on what a client can make us keep. */
#define CTL_MAX_BLOB_QUERY 100000
#define CTL_MAX_MOUNT_ENTRIES 100000
int ctl_secrets_load(struct ctl *c, struct gerr *err);
/* Whether workspace ws uploaded or created the blob or tree digest ("sha256:..."):
 * what another workspace stored counts as missing. */
bool ctl_ws_holds(struct ctl *c, const char *ws, const char *digest);
/* The chunks of a change list (src/cas: files with size and chunks) that workspace ws
 * does not hold yet are charged to its stored_bytes quota and recorded as its own
 * (what a container commits to a volume is the workspace's, as an upload is): 0, or
 * -EDQUOT with e set (413 quota_exceeded) and nothing recorded. */
int ctl_ws_own_chunks(struct ctl *c, const char *ws, json_t *changes, struct ctl_error *e);
void ctl_secrets_free(struct ctl *c);
/* -ENOENT + e naming functions[index].secrets[i] when f names a secret that workspace
 * ws does not have. */
int ctl_secrets_check(struct ctl *c, const char *ws, const struct spec_function *f, size_t index,
                      struct ctl_error *e);
/* The environment of a new container of fv: fv->env with the variables of its
 * secrets (a later secret wins; secrets win over the function's env). *out is NULL
 * when fv names no secrets (use fv->env); else a malloc'd array (free it, not its
 * strings, which are borrowed from fv and the secrets). */
int ctl_secrets_env(struct ctl *c, const struct ctl_fver *fv, char ***out, struct gerr *err);
/* Materialises f's mount trees; *dirs: NULL-terminated host paths (ctl_mounts_free).
 * ws not NULL: each tree must be one workspace ws created (a deploy); NULL: a stored
 * version coming back. */
int ctl_mounts_resolve(struct ctl *c, const char *ws, const struct spec_function *f, char ***dirs,
                       struct gerr *err);
void ctl_mounts_free(char **dirs);

/* ---- build.c ---- */
/* Sets up the builder (lanes from the config, the cache from the store). */
int ctl_builder_start(struct ctl *c, struct gerr *err);
void ctl_builder_stop(struct ctl *c);
/* The image id and materialised rootfs of inline image definition def (paths
 * absolute): its built_id, or the cached result of every step. -ENOENT when it is
 * not built yet (err says which step); other errors for a bad base. */
int ctl_inline_image(struct ctl *c, const char *ws, json_t *def, char id[IMAGE_ID_MAX], char *rootfs, size_t cap,
                     struct gerr *err);
/* Whether every tree image definition def names (from_oci, copy, find_links) is one
 * workspace ws uploaded; else -ENOENT with e naming the field under where. Another
 * workspace's tree is "not stored", as a missing one. */
int ctl_def_trees_held(struct ctl *c, const char *ws, json_t *def, const char *where, struct ctl_error *e);
/* The qualified name under which workspace ws sees image name: its own
 * ("<ws>/<name>"), else the built-in one ("<name>"); -ENOENT if neither exists
 * (qname is then "<ws>/<name>"). */
int ctl_image_qname(struct ctl *c, const char *ws, const char *name, char qname[CTL_QNAME_MAX]);
/* The image id of the image workspace ws calls name (-ENOENT if unknown, -EINVAL if
 * it is not in the store, such as a host-/usr image). */
int ctl_named_image_id(struct ctl *c, const char *ws, const char *name, char id[IMAGE_ID_MAX], bool *host_usr,
                       struct gerr *err);
/* The base image id of definition def: "" for the builder's own bases (scratch,
 * debian_slim, from_oci), else the registered image's. */
int ctl_image_base_of(struct ctl *c, const char *ws, json_t *def, char id[IMAGE_ID_MAX], struct gerr *err);
/* Adds the ancestors (through the build cache) of live[0..*n) to live. */
void ctl_build_live_ancestors(struct ctl *c, char ***live, size_t *n, size_t *cap);

/* ---- images.c ---- */
/* The rootfs of the image workspace ws calls name. */
int ctl_image_resolve(struct ctl *c, const char *ws, const char *name, char *rootfs, size_t cap, bool *host_usr,
                      struct gerr *err);
/* Whether an image add or import is queued or running (gc waits for them). */
bool ctl_image_jobs_running(struct ctl *c);
/* Stops the image job thread (after its running job) and drops queued jobs. */
void ctl_image_jobs_free(struct ctl *c);
/* Stores the built-in images (busybox, the host's python). */
int ctl_images_builtin(struct ctl *c, struct gerr *err);

/* ---- meter.c ---- */
json_t *meter_usage_json(struct ctl *c, const char *ws, double since, struct gerr *err);

/* ---- sched.c ---- */
extern const struct worker_events ctl_worker_events;
void sched_kick(struct ctl *c);
/* fn's work changed: its keep-alive decision is reconsidered (now, or when it next
 * changes). */
void sched_keepalive_kick(struct ctl *c, struct ctl_fn *fn);

/* A snapshot function's version gets its snapshot before any call needs it (at deploy
 * and recovery): the one of identical content if there is one (ready or being taken),
 * else one taken now. 0 for other functions; -errno (and fv->waiting_reason) when the
 * worker refused to take one. */
int sched_snapshot_prepare(struct ctl *c, struct ctl_fver *fv);

void sched_tick(struct ctl *c);
void sched_stop_all(struct ctl *c);
size_t sched_live_containers(struct ctl *c);
/* A cancelled input (a per-input child gets SIGTERM; a runner's code gets its
 * cancellation) must be given up by then, else its container is killed: long enough for
 * a handler to clean up, short enough that a stuck input does not hold a slot for long. */
#define SCHED_CANCEL_GRACE_MS 2000
/* Detaches a running call from its container: terminate kills the container (what
 * else it runs fails or is requeued); otherwise it is told to drop the input and killed
 * only if it still holds it after SCHED_CANCEL_GRACE_MS. */
void sched_cancel_running(struct ctl *c, struct ctl_call *call, bool terminate);
/* Writes the queued metering records, then the busy time and inputs of containers
 * whose counters moved since they were last written. */
void sched_flush_usage(struct ctl *c);
/* Container starts, ready times and stops are queued and written together, one
 * transaction for many (each alone is a commit, the costliest thing a container
 * start does under gust-sim). sched_write_rows writes them; control.c's tick calls
 * it once they waited SCHED_ROWS_WAIT_MS of real time, and so does every reader of
 * the records (sched_flush_usage, before usage is read) and ctl_free. */
#define SCHED_ROWS_WAIT_MS 100
void sched_write_rows(struct ctl *c);
int sched_fits_total(struct ctl *c, const struct spec_function *f, char *why, size_t why_len);
/* While shutting down: stops containers once nothing runs; calls the shutdown
 * callback once every container is gone. */
void sched_drain_check(struct ctl *c);

/* ---- deploy.c ---- */
/* Parses spec into *app (refused while shutting down); e says why not. */
int ctl_parse_app(struct ctl *c, json_t *spec, struct spec_app *app, struct ctl_error *e);
/* A version of fn from its stored normalised spec JSON, added to fn->versions. */
struct ctl_fver *ctl_fver_new(struct ctl *c, struct ctl_fn *fn, uint32_t version, json_t *spec_json,
                              struct gerr *err);

/* ---- builds.c ---- */
void ctl_builds_free(struct ctl *c);

/* ---- schedule.c ----
 *   ctl_schedule_sync      fn's schedule follows its latest spec and its app's state:
 *                          started (first fire counted from now), kept (same schedule:
 *                          its stored next fire stands), or removed (stopped app, no
 *                          schedule); stored
 *   ctl_schedules_recover  after the functions are loaded: each stored schedule goes on
 *                          from its stored next fire (one in the past runs once, now)
 *   ctl_schedule_json      {spec, next_run, last_runs} of fn's schedule; NULL: none
 *   ctl_schedules_free     cancels every schedule's timer and frees them */
void ctl_schedule_sync(struct ctl *c, struct ctl_fn *fn);
int ctl_schedules_recover(struct ctl *c, struct gerr *err);
json_t *ctl_schedule_json(const struct ctl_fn *fn);
void ctl_schedules_free(struct ctl *c);

#endif
