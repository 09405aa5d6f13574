/* Private to src/control: the in-memory model shared by control.c (apps, calls,
 * waiters, maps, logs, recovery), sched.c (dispatch, autoscaling, container events)
 * and meter.c (usage and cost). */
#ifndef GUST_CONTROL_INTERNAL_H
#define GUST_CONTROL_INTERNAL_H

#include "base/buf.h"
#include "base/hmap.h"
#include "build/build.h"
#include "control/control.h"
#include "spec/spec.h"

struct ctl_fn;
struct ctl_ctr;

struct ctl_app {
    struct ctl_app *next;
    char name[64];
    bool stopped;
    double created_at;
    struct ctl_fn *fns;
};

/* One deployed version of a function. Live while it is the latest version or still has
 * queued/running calls or containers; then freed (the store keeps it). */
struct ctl_fver {
    struct ctl_fver *next;      /* in fn->versions */
    struct ctl_fn *fn;
    uint32_t version;
    struct spec_function spec;
    json_t *spec_json;
    char rootfs[512];
    bool host_usr;
    char **env;                 /* the image's env, then the function's (NULL-terminated) */
    const char *workdir;        /* the function's, or the image's when the function kept "/" */
    char *image_workdir;
    char **mount_dirs;          /* materialised spec.mounts trees, parallel to spec.mount_paths */
    struct ctl_call *q_head, *q_tail; /* runnable calls, FIFO */
    size_t queued;
    size_t running;
    size_t retry_waiting;       /* calls waiting on a backoff timer */
    struct ctl_ctr *ctrs;
    uint32_t nstarting, nready;
    char waiting_reason[512];
    /* snapshot functions: the version's snapshot on the worker (NULL until the first
     * start needs it, and again after it failed or died), and how many in a row
     * failed before they were ready */
    struct ctl *ctl;
    struct worker_snapshot *snap;
    char snap_id[64];
    uint32_t snap_failures;
};

struct ctl_fn {
    struct ctl_fn *next;
    struct ctl_app *app;
    char name[64];
    struct ctl_fver *latest;
    struct ctl_fver *versions;
    struct ctl_log_sub *subs;
    uint64_t calls_total;
};

struct ctl_waiter {
    struct ctl_waiter *next;
    struct ctl_call *call;
    ctl_wait_cb cb;
    void *ud;
    uint64_t timer;
    struct ctl *ctl;
};

struct ctl_call {
    struct hmap_node node;
    struct ctl *ctl;
    struct ctl_call *qnext;     /* queue link while queued */
    struct ctl_call *fnext;     /* finished-calls FIFO, for eviction */
    char id[64];
    char app[64];
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
    struct ctl_waiter *waiters;
    struct ctl_map *map;
    size_t map_index;
};

struct ctl_slot {
    uint64_t input_id;          /* 0 = free */
    struct ctl_call *call;      /* NULL if the call was detached (cancelled/timed out) */
};

enum ctl_ctr_state { CTR_STARTING = 1, CTR_READY, CTR_STOPPING };

struct ctl_ctr {
    struct ctl_ctr *next;       /* in fv->ctrs */
    struct ctl *ctl;
    struct ctl_fver *fv;
    struct ctr *w;
    char id[32];
    enum ctl_ctr_state state;
    uint32_t inflight;
    uint32_t nslots;
    struct ctl_slot *slots;
    uint64_t idle_since_ms;
    double started_at, ready_at;
    uint64_t busy_since_ns;     /* 0 when idle */
    uint64_t busy_ns;
    uint64_t inputs_done;
    uint32_t cpu_millicores, memory_mib;
    int gpu_idx[CTR_MAX_GPUS];
    int ngpu;
    char gpu_type[32];
    uint64_t kill_timer;        /* armed when a cancelled input must come back in time */
};

struct ctl_map {
    struct ctl_map *next;       /* in ctl->maps, until all results are in */
    struct ctl *ctl;
    ctl_map_cb cb;
    void *ud;
    bool ordered;
    bool detached;
    size_t n, done, next_emit;
    struct ctl_call **calls;    /* by index; entries kept until emitted */
    bool *finished;             /* by index */
};

struct ctl_log_sub {
    struct ctl_log_sub *next;
    struct ctl_fn *fn;
    ctl_log_cb cb;
    void *ud;
};

struct ctl_log_line {
    char app[64], function[64], container[32], call_id[64];
    double ts;
    int stream;
    char *line;
    size_t len;
};

#define CTL_BUILD_LANES 2
struct ctl_deploy_build;

struct ctl {
    struct ev_loop *loop;
    struct store *store;
    struct worker *worker;
    uint64_t last_gpu_sample_ms;
    struct ctl_config cfg;
    char images_dir[512];
    struct cas *cas;
    struct builder *builder;
    struct worker_build_lane lanes[CTL_BUILD_LANES];
    struct ctl_deploy_build *deploy_builds;
    struct ctl_app *apps;
    struct hmap calls;
    struct ctl_map *maps;
    struct ctl_call *fin_head, *fin_tail;
    size_t fin_count;
    uint64_t next_input_id;
    bool sched_pending;
    bool shutting_down;
    void (*shutdown_cb)(void *ud);
    void *shutdown_ud;
    uint64_t tick_timer;
    uint64_t last_flush_ms;
    /* capacity in use */
    uint32_t cpu_used;
    uint64_t mem_used;
    bool gpu_used[WORKER_MAX_GPUS];
    struct ctl_log_line *logq;
    size_t logq_len, logq_cap;
    uint64_t log_timer;
    struct ctl_secret *secrets;
};

/* control.c */
void ctl_err(struct ctl_error *e, enum ctl_errkind kind, const char *code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void fver_free_env(struct ctl_fver *fv);
/* Parses spec into *app (refused while shutting down); e says why not. */
int ctl_parse_app(struct ctl *c, json_t *spec, struct spec_app *app, struct ctl_error *e);
/* build.c */
/* Sets up the builder (lanes from the worker, the cache from the store). */
int ctl_builder_start(struct ctl *c, struct gerr *err);
void ctl_builder_stop(struct ctl *c);
/* The image id and materialised rootfs of inline image definition def (paths
 * absolute): its built_id, or the cached result of every step. -ENOENT when it is
 * not built yet (err says which step); other errors for a bad base. */
int ctl_inline_image(struct ctl *c, json_t *def, char id[IMAGE_ID_MAX], char *rootfs, size_t cap, struct gerr *err);
/* The image id of registered image name (-ENOENT if unknown, -EINVAL if it is not in
 * the store, such as a host-/usr image). */
int ctl_named_image_id(struct ctl *c, const char *name, char id[IMAGE_ID_MAX], bool *host_usr, struct gerr *err);
/* Adds the ancestors (through the build cache) of live[0..*n) to live. */
int ctl_build_live_ancestors(struct ctl *c, char ***live, size_t *n, size_t *cap);
/* secrets.c: bounds on what a client can make us keep. */
#define CTL_MAX_BLOB_QUERY 100000
#define CTL_MAX_MOUNT_ENTRIES 100000
int ctl_secrets_load(struct ctl *c, struct gerr *err);
void ctl_secrets_free(struct ctl *c);
/* -ENOENT + e naming functions[index].secrets[i] when f names a secret that does not exist. */
int ctl_secrets_check(struct ctl *c, const struct spec_function *f, size_t index, struct ctl_error *e);
/* The environment of a new container of fv: fv->env with the variables of its
 * secrets (a later secret wins; secrets win over the function's env). *out is NULL
 * when fv names no secrets (use fv->env); else a malloc'd array (free it, not its
 * strings, which are borrowed from fv and the secrets). */
int ctl_secrets_env(struct ctl *c, const struct ctl_fver *fv, char ***out, struct gerr *err);
/* Materialises f's mount trees; *dirs: NULL-terminated host paths (ctl_mounts_free). */
int ctl_mounts_resolve(struct ctl *c, const struct spec_function *f, char ***dirs, struct gerr *err);
void ctl_mounts_free(char **dirs);
struct ctl_fn *ctl_find_fn(struct ctl *c, const char *app, const char *fn);
void ctl_call_finish(struct ctl *c, struct ctl_call *call, enum ctl_call_state state, const void *out, size_t out_len,
                     const char *code, const char *msg);
void ctl_call_failed_attempt(struct ctl *c, struct ctl_call *call, enum ctl_call_state state, const char *code,
                             const char *msg);
void ctl_call_requeue(struct ctl *c, struct ctl_call *call, bool front);
/* A line from container k; input_id: the input that printed it (0: not known). */
void ctl_log_push(struct ctl *c, struct ctl_ctr *k, int stream, uint64_t input_id, const char *line, size_t len);
/* A log line of fn from container ctr_id (no call: call_id ""). */
void ctl_log_push_line(struct ctl *c, struct ctl_fn *fn, const char *ctr_id, const char *call_id, int stream,
                       const char *line, size_t len);
/* Lets the version's snapshot go (containers from it keep running). */
void sched_snapshot_drop(struct ctl_fver *fv);
void ctl_fver_maybe_free(struct ctl *c, struct ctl_fver *fv);
bool ctl_fver_is_current(const struct ctl_fver *fv);

/* sched.c */
extern const struct worker_callbacks ctl_worker_callbacks;
void sched_kick(struct ctl *c);
void sched_tick(struct ctl *c);
void sched_stop_all(struct ctl *c);
size_t sched_live_containers(struct ctl *c);
void sched_call_timeout(struct ev_loop *loop, void *data);
void sched_cancel_running(struct ctl *c, struct ctl_call *call);
void sched_flush_usage(struct ctl *c);
int sched_fits_total(struct ctl *c, const struct spec_function *f, char *why, size_t why_len);
void ctl_call_view_fill(struct ctl_call *call, struct ctl_call_view *v);
void ctl_shutdown_check(struct ctl *c);

/* meter.c */
json_t *meter_usage_json(struct ctl *c, double since, struct gerr *err);

#endif
