/* The seam between control and workers: one table of operations control calls and
 * one table of events a worker reports, both carrying values only (ids, specs, byte
 * buffers, counters). No pointer crosses it and survives the call: every pointer in
 * an argument is borrowed for the duration of that one call, and control names
 * containers and snapshots by the ids it chose. So the same tables can be carried over
 * a connection to a worker on another machine (the step after this one) without
 * changing control; the local worker (worker/local.c) implements them in process, and
 * the control unit tests (tests/unit/test_control.c) with a fake.
 *
 * Contract, for any implementation:
 * - Operations and events run on the control's event-loop thread; an event is never
 *   delivered from inside an operation (it is queued to a later loop iteration), so
 *   control may call operations while iterating its own records.
 * - A container started with start() or snapshot_restore() reports ready() at most
 *   once, then item()/output()/input_error()/log() for its inputs, then exit() exactly once
 *   (also when start() failed after returning 0). After exit() its id is unknown to
 *   the worker; operations on an unknown id are harmless no-ops or return -ESRCH.
 * - A snapshot taken with snapshot_take() reports snapshot_state() READY once, or GONE
 *   (it failed, or its template died); after GONE or snapshot_drop() its id is free.
 */
#ifndef GUST_WORKER_OPS_H
#define GUST_WORKER_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "runtime/sandbox.h"

/* Generator inputs: a container sends another item of an input only while the item
 * bytes it sent for it, less what item_ack() last acknowledged, are below this window
 * (the runner protocol's FRAME_ITEM_WINDOW, which worker/local.c checks is the same).
 * So one input has at most this much plus one item (up to the payload limit) that the
 * consumer has not taken, which is what control allows a call to hold. */
#define WORKER_ITEM_WINDOW (8u << 20)
/* Input streams (send_input_more): the stream bytes of one input sent beyond what
 * input_more_ack() acknowledged, at most (the protocol's FRAME_INPUT_WINDOW). */
#define WORKER_INPUT_WINDOW (1u << 20)

#define WORKER_MAX_GPUS 64
#define CTR_MAX_GPUS 16

struct worker_gpu {
    char type[32];      /* normalised name users write: "H100", "A100-80GB", "L4" */
    int index;          /* NVML index (declared GPUs: position in the inventory) */
    int minor;          /* NVML: the device node is /dev/nvidia<minor>; declared: = index */
    bool simulated;     /* declared with --gpus: no device node unless gpu_passthrough_declared */
    char uuid[96];      /* NVML: "GPU-..."; "" when declared */
    char product[96];   /* NVML product name; "" when declared */
    uint64_t memory_mib;/* NVML total memory; 0 when declared */
};

/* What a worker offers: capacity for reservations and its GPUs. */
struct worker_inventory {
    uint32_t cpu_millicores;
    uint64_t memory_mib;
    int ngpus;
    struct worker_gpu gpus[WORKER_MAX_GPUS];
};

/* Container network modes. */
enum ctr_net { CTR_NET_NONE = 0, CTR_NET_EGRESS = 1 };

enum ctr_mode { CTR_MODE_PER_INPUT = 1, CTR_MODE_RUNNER = 2 };

struct ctr_spec {
    const char *id;             /* container id, "ct-..." (unique) */
    const char *rootfs;
    bool host_usr;              /* bind host /usr read-only */
    char *const *command;       /* argv, NULL-terminated */
    char *const *env;           /* "K=V", NULL-terminated; GUST_* vars are added */
    const char *workdir;
    enum ctr_mode mode;
    uint32_t max_inputs;        /* concurrent inputs (per_input mode: concurrent children) */
    uint32_t cpu_millicores;    /* request: the cgroup's CPU weight; 0 = the kernel's default */
    uint32_t cpu_limit_millicores; /* CFS quota; 0 = none (the container may use idle CPU) */
    uint32_t memory_mib;        /* the hard memory limit (a spec's memory limit, not its request) */
    uint32_t disk_mib;
    int gpu_indices[CTR_MAX_GPUS]; /* indices into the worker inventory, exclusive */
    int ngpus;
    uint32_t pids_max;          /* 0 = 1024 */
    uint32_t open_files;        /* 0 = 65536 */
    enum ctr_net network;
    /* An API token for code inside (docs/API.md "Calls from inside a function"), or
     * NULL: the worker gives the container its API socket at /run/gust/api.sock and
     * GUST_ADDR/GUST_TOKEN, over whatever env says, when it has a socket to give. */
    const char *api_token;
    const char *const *deny_syscalls; /* added to the default seccomp profile */
    size_t ndeny_syscalls;
    /* Host directories bound read-only at mount_paths[i] (content-addressed trees
     * such as a Python function's source); nmounts <= 16. */
    char *const *mount_dirs;
    char *const *mount_paths;
    size_t nmounts;
    /* Volumes: at volume_paths[i] an overlay of the read-only host directory
     * volume_lowers[i] (a materialised version) under the writable layers
     * volume_dirs[i]/upper and volume_dirs[i]/work (host directories the worker makes
     * and gives to the container's root; what the container writes stays there after
     * it exits, for control to commit). nvolumes <= 16. */
    char *const *volume_paths;
    char *const *volume_lowers;
    char *const *volume_dirs;
    size_t nvolumes;
};

/* Per-container accounting, read live or at exit. */
struct ctr_stats {
    uint64_t cpu_ns;            /* CPU time used by all its processes */
    uint64_t memory_bytes;      /* current */
    uint64_t memory_peak_bytes; /* highest since start */
    uint64_t oom_kills;
    int ngpus;                  /* GPUs sampled (0 without NVML) */
    uint32_t gpu_util_pct;      /* latest sample, averaged over its GPUs */
    double gpu_util_avg_pct;    /* mean over all samples */
    uint64_t gpu_mem_bytes;     /* latest sample, summed over its GPUs */
    uint64_t gpu_mem_peak_bytes;
    uint32_t gpu_samples;
};

/* Why an input failed (or a container ended). */
enum ctr_fail {
    CTR_FAIL_EXIT_STATUS = 1, /* per-input command exited non-zero */
    CTR_FAIL_CRASHED,         /* killed by a signal / the runner process died mid-input */
    CTR_FAIL_OOM,             /* the memory cgroup OOM-killed it */
    CTR_FAIL_USER,            /* a runner reported an error for the input */
    CTR_FAIL_SPAWN,           /* command could not be started */
    CTR_FAIL_CANCELLED,       /* after ctr_cancel_input */
    CTR_FAIL_START,           /* the container itself failed to start */
};
const char *ctr_fail_code(enum ctr_fail f); /* "exit_status", "crashed", "oom", ... */

/* A container's live numbers, copied out. */
struct ctr_info {
    int pid;                    /* its PID 1 on the worker's host (0 once gone) */
    uint32_t host_uid;          /* host uid of its root */
    uint64_t start_ns;          /* start to ready (0 before ready) */
    struct ctr_stats stats;
    struct sandbox_timing timing; /* where sandbox creation spent its time */
    char snapshot_of[64];       /* the template it was forked from, "" if none */
};

enum snapshot_state { SNAPSHOT_TAKING = 1, SNAPSHOT_READY, SNAPSHOT_GONE };

/* A snapshot's live numbers. */
struct snapshot_info {
    enum snapshot_state state;
    int pid;                    /* its template's PID 1 (0 when it has none) */
    int children;               /* containers restored from it, alive */
    uint64_t memory_bytes;      /* its template's memory */
};

/* Events a worker reports; ud is what control gave to attach(). */
struct worker_events {
    /* The container finished its init and takes inputs. */
    void (*ready)(void *ud, const char *ctr_id);
    /* Input input_id succeeded with data. For a generator: it finished (data empty). */
    void (*output)(void *ud, const char *ctr_id, uint64_t input_id, const void *data, size_t len);
    /* Generator input input_id yielded a value: data, in order, before its output(). */
    void (*item)(void *ud, const char *ctr_id, uint64_t input_id, const void *data, size_t len);
    /* Input input_id failed: kind and a message for people. */
    void (*input_error)(void *ud, const char *ctr_id, uint64_t input_id, enum ctr_fail kind, const char *msg);
    /* A line of output (stream 1 stdout, 2 stderr) without its newline; input_id is the
     * input whose code printed it, 0 when not known. */
    void (*log)(void *ud, const char *ctr_id, int stream, uint64_t input_id, const char *line, size_t len);
    /* The container is gone. Inputs still in flight were not reported one by one.
     * kind: 0 after stop()/kill(), else CTR_FAIL_START (never ready), CTR_FAIL_OOM or
     * CTR_FAIL_CRASHED. final: its accounting at the end. */
    void (*exit)(void *ud, const char *ctr_id, int kind, const char *msg, const struct ctr_stats *final);
    /* A snapshot became READY, or GONE (msg says why). */
    void (*snapshot_state)(void *ud, const char *snap_id, enum snapshot_state st, const char *msg);
    /* A line of the snapshot's init output. */
    void (*snapshot_log)(void *ud, const char *snap_id, int stream, const char *line, size_t len);
    /* The code serving input input_id took `bytes` bytes of its input stream so far
     * (send_input_more), so the worker may be sent more (WORKER_INPUT_WINDOW). */
    void (*input_more_ack)(void *ud, const char *ctr_id, uint64_t input_id, uint64_t bytes);
};

/* Operations control calls on a worker (w: the implementation's handle). Failing ones
 * return 0 or a negative errno with err saying why. */
struct worker_ops {
    /* Routes the worker's events to ev with ud. Called once, before anything else. */
    void (*attach)(void *w, const struct worker_events *ev, void *ud);
    void (*inventory)(void *w, struct worker_inventory *out);
    /* Starts container spec->id (its GPUs are indices into the inventory). */
    int (*start)(void *w, const struct ctr_spec *spec, struct gerr *err);
    /* Hands an input of call call_id to a ready container (-EPIPE/-ESRCH: it is going
     * away). */
    int (*send_input)(void *w, const char *ctr_id, uint64_t input_id, const char *call_id, const void *data,
                      size_t len, struct gerr *err);
    /* Asks the container to give up input_id: input_error(CANCELLED) follows in
     * per-input mode; a runner cannot be interrupted (control stops it instead). */
    int (*cancel_input)(void *w, const char *ctr_id, uint64_t input_id);
    /* The consumer of generator input input_id has taken `bytes` item bytes of it in
     * all, so the container may send more (WORKER_ITEM_WINDOW). -EPIPE/-ESRCH: gone. */
    int (*item_ack)(void *w, const char *ctr_id, uint64_t input_id, uint64_t bytes);
    /* More input for input input_id, after what send_input gave: the next bytes of its
     * input stream, in order (len 0: the stream ended). The caller sends only while
     * what it sent, less what input_more_ack() last said, is below WORKER_INPUT_WINDOW.
     * -EPIPE/-ESRCH: the container is going away. NULL in a worker that carries no
     * streams (the simulator's): control then refuses ctl_call_input_more. */
    int (*send_input_more)(void *w, const char *ctr_id, uint64_t input_id, const void *data, size_t len);
    /* Graceful stop (grace_ms, then SIGKILL) or immediate kill; exit() follows. */
    void (*stop)(void *w, const char *ctr_id, uint32_t grace_ms);
    void (*kill)(void *w, const char *ctr_id);
    /* Live numbers of a container (-ESRCH if unknown). */
    int (*info)(void *w, const char *ctr_id, struct ctr_info *out);
    /* Periodic work control's tick asks for (GPU samples). */
    void (*tick)(void *w);
    /* Snapshots (docs/ARCHITECTURE.md "Snapshots"): take one of spec (spec->id is the
     * snapshot's id; its GPUs are ignored), start container spec->id from one
     * (-EAGAIN while not READY; -ENOTSUP when a container needs what a snapshot cannot
     * give, such as device nodes: start() it then), let one go (containers restored
     * from it keep running), read its numbers (-ESRCH if unknown). */
    int (*snapshot_take)(void *w, const struct ctr_spec *spec, struct gerr *err);
    int (*snapshot_restore)(void *w, const char *snap_id, const struct ctr_spec *spec, struct gerr *err);
    void (*snapshot_drop)(void *w, const char *snap_id);
    int (*snapshot_info)(void *w, const char *snap_id, struct snapshot_info *out);
    /* Volumes of a running container (ctr_spec.volume_paths): unmount the one at path
     * (-EBUSY: a file in it is open or a process works in it, and nothing changed),
     * or mount it at path again over lower with the layers of dir (as at start). NULL
     * in a worker without volumes (the simulator's): control then refuses commits and
     * reloads from inside. */
    int (*volume_detach)(void *w, const char *ctr_id, const char *path, struct gerr *err);
    int (*volume_attach)(void *w, const char *ctr_id, const char *path, const char *lower, const char *dir,
                         struct gerr *err);
};

#endif
