/* The local worker: runs containers on this machine.
 *
 * It owns, per container, the sandbox (src/runtime), the runner channel (a SEQPACKET
 * socketpair whose far end is fd 3 of gust-init), and the pidfd watch on the event
 * loop. This header is the in-process API (pointers to containers); control does not
 * use it: control talks to workers only through worker/ops.h, whose local
 * implementation (worker/local.c) sits on top of this. All calls and callbacks happen
 * on the event-loop thread.
 *
 * Ownership: a struct ctr belongs to the worker. It stays valid until on_exit has
 * returned; control must drop its pointers in on_exit.
 */
#ifndef GUST_WORKER_WORKER_H
#define GUST_WORKER_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "evloop/evloop.h"
#include "runtime/sandbox.h"
#include "worker/ops.h"

struct worker;
struct ctr;

struct worker_config {
    const char *state_root;     /* dir for per-container scratch, e.g. <data-dir>/run */
    const char *init_path;      /* path of the static gust-init binary */
    const char *cgroup_parent;  /* e.g. "gust" or "gust-<suffix>" for tests */
    uint32_t cpu_millicores;    /* capacity; 0 = nproc * 1000 */
    uint64_t memory_mib;        /* capacity; 0 = MemTotal */
    struct worker_gpu gpus[WORKER_MAX_GPUS];
    int ngpus;
    size_t max_payload;         /* per input/output bytes */
    bool no_cgroup_tuning;      /* leave the host's cgroup2 mount options alone (see cgroup_favor_dynmods) */
    /* User namespaces: container i's root is host uid/gid userns_base + slot * userns_size;
     * userns_slots ranges in all (the most containers alive at once). 0 = defaults
     * (1000000, 65536, 512). A slot's range is locked host-wide (WORKER_USERNS_LOCK)
     * when the slot is first used and held until worker_free: a range another worker
     * (another gustd) holds is skipped, so two never hand out the same host uids. */
    uint64_t userns_base;
    uint32_t userns_size, userns_slots;
    /* GPUs. Declared GPUs are simulated unless gpu_passthrough_declared, which makes
     * them need device nodes and driver libraries like detected ones (for tests and
     * for hosts without NVML). gpu_dev_dir: where nvidia* nodes are (default /dev);
     * gpu_driver_dir: the only directory searched for driver libraries (default: the
     * usual ones). no_nvml: do not detect GPUs. */
    bool gpu_passthrough_declared, no_nvml;
    const char *gpu_dev_dir, *gpu_driver_dir;
    /* Egress networking (functions with network "egress"): container addresses come
     * from this IPv4 /16 (default 10.213.0.0/16), one /30 each. */
    const char *egress_subnet;
    /* Let egress containers reach private, link-local and other non-internet ranges
     * (worker/egress.h, EGRESS_PRIVATE_RANGES); off by default. */
    bool egress_allow_private;
    /* gustd's API socket on the host: bound at WORKER_CTR_API_SOCKET into containers
     * whose spec carries an api_token (NULL: none is, whatever the spec says). */
    const char *api_socket;
};

/* Where a container finds gustd's API (docs/API.md "Calls from inside a function"):
 * under /run, the usual place of a service's socket, which images leave empty. */
#define WORKER_CTR_API_SOCKET "/run/gust/api.sock"

struct worker_callbacks {
    /* Container finished init and can take inputs. */
    void (*on_ready)(struct ctr *c, void *ud);
    /* Input succeeded; data valid only during the call. */
    void (*on_output)(struct ctr *c, void *ud, uint64_t input_id, const void *data, size_t len);
    /* Input failed with kind and a message (e.g. "exit status 3: <stderr tail>"). */
    void (*on_input_error)(struct ctr *c, void *ud, uint64_t input_id, enum ctr_fail kind, const char *msg);
    /* One line of user output (stream 1 stdout, 2 stderr), without the newline. */
    /* input_id: the input whose code printed the line (FRAME_INPUT_LOG), 0 when the
     * line came from the container's captured stdout/stderr. */
    void (*on_log)(struct ctr *c, void *ud, int stream, uint64_t input_id, const char *line, size_t len);
    /* The container is gone (PID 1 exited and everything was cleaned up). Inputs still in
     * flight were NOT reported individually: control fails/requeues them. kind is
     * CTR_FAIL_START if it never became ready, CTR_FAIL_OOM if the cgroup saw an OOM kill,
     * CTR_FAIL_CRASHED for an unexpected exit, 0 for an exit after ctr_stop(). */
    void (*on_exit)(struct ctr *c, void *ud, int kind, const char *msg);
    /* A generator input yielded a value (FRAME_ITEM); data valid only during the call.
     * (Last: the fields above keep their positions.) */
    void (*on_item)(struct ctr *c, void *ud, uint64_t input_id, const void *data, size_t len);
    /* The runner's code took `bytes` stream bytes of input_id so far (FRAME_INPUT_MORE_ACK). */
    void (*on_input_more_ack)(struct ctr *c, void *ud, uint64_t input_id, uint64_t bytes);
};

int worker_new(struct ev_loop *loop, const struct worker_config *cfg, const struct worker_callbacks *cb,
               struct worker **out, struct gerr *err);
/* Kills all containers immediately (SIGKILL), cleans up, frees. on_exit is not called. */
void worker_free(struct worker *w);

const struct worker_config *worker_capacity(const struct worker *w);

/* The thread count a container's thread pools are told to use (OMP_NUM_THREADS and
 * the like, see ctr_start): its CPU limit when it has one, else its request, rounded
 * up to whole cores and at least 1, and never more than host_cpus (the CPUs this
 * worker may run on; 0: no bound). The request rather than the machine's CPU count
 * when there is no limit: a container may burst into idle cores, but what it is
 * promised under contention is its request, and a pool sized to every core of a
 * busy machine only adds threads that wait for each other. */
unsigned worker_cpu_threads(uint32_t cpu_millicores, uint32_t cpu_limit_millicores, unsigned host_cpus);

/* Starts a container (synchronously creates the sandbox; readiness comes later through
 * on_ready). ud is handed back in every callback for this container. */
int worker_start(struct worker *w, const struct ctr_spec *spec, void *ud, struct ctr **out, struct gerr *err);

/* Hands an input to a ready container; call_id (NULL: none) goes first in an INPUT_CALL
 * frame. Returns 0 or -errno (-EPIPE if it is gone). */
int ctr_send_input(struct ctr *c, uint64_t input_id, const char *call_id, const void *data, size_t len,
                   struct gerr *err);
/* Asks the container to stop working on input_id; its on_input_error(CANCELLED) follows
 * (per_input mode), or nothing for runner mode (control then stops the container). */
int ctr_cancel_input(struct ctr *c, uint64_t input_id);
/* Tells a generator input's runner that the consumer took `bytes` item bytes of it so
 * far (FRAME_ITEM_ACK), so it may send more. Returns 0 or -EPIPE. */
int ctr_item_ack(struct ctr *c, uint64_t input_id, uint64_t bytes);
/* More bytes of input_id's stream (FRAME_INPUT_MORE; len 0: its end). The caller keeps
 * within FRAME_INPUT_WINDOW of what on_input_more_ack said, which bounds what this
 * queues when the channel is full. Returns 0 or -EPIPE. */
int ctr_send_input_more(struct ctr *c, uint64_t input_id, const void *data, size_t len);
/* Graceful stop: SHUTDOWN frame + SIGTERM, SIGKILL after grace_ms. on_exit follows. */
void ctr_stop(struct ctr *c, uint32_t grace_ms);
/* Immediate SIGKILL; on_exit follows. */
void ctr_kill(struct ctr *c);

const char *ctr_id(const struct ctr *c);
int ctr_pid(const struct ctr *c);
/* The worker_ops volume operations (ops.h) on a running container. */
int ctr_volume_detach(struct ctr *c, const char *path, struct gerr *err);
int ctr_volume_attach(struct ctr *c, const char *path, const char *lower, const char *dir, struct gerr *err);
void *ctr_userdata(const struct ctr *c);
/* Memory bytes and CPU ns used so far. */
int ctr_usage(const struct ctr *c, uint64_t *memory_bytes, uint64_t *cpu_ns);
/* Accounting so far (cgroup counters read now, GPU samples as last taken). After the
 * container exited (in on_exit) the values are the final ones. */
int ctr_stats(const struct ctr *c, struct ctr_stats *out);
/* Takes one GPU sample for every container with NVML-visible GPUs (control calls it
 * on its tick). */
void worker_sample_gpus(struct worker *w);
/* Where sandbox creation spent its time for this container. */
const struct sandbox_timing *ctr_timing(const struct ctr *c);
/* Host uid of the container's root. */
uint32_t ctr_host_uid(const struct ctr *c);
/* Nanoseconds from worker_start to on_ready (0 before ready). */
uint64_t ctr_start_ns(const struct ctr *c);

/* ---- Snapshots (docs/ARCHITECTURE.md "Snapshots") -------------------------------
 * A snapshot is a function version's state after its init (module import and
 * enter(snap=True) hooks). take() starts making one; restore() starts a container
 * from it, which reports through the worker callbacks like any other; drop() lets it
 * go (containers restored from it keep running). The interface is a table so that an
 * implementation of another kind (a snapshot on disk, restorable on any worker) can
 * replace the fork template without changing its callers. */
struct worker_snapshot;
struct snapshot_callbacks {
    /* READY: restore() works now. GONE: it failed before it was ready or died after;
     * msg says why; the caller then drops it (and may take a new one). */
    void (*on_state)(struct worker_snapshot *s, void *ud, enum snapshot_state st, const char *msg);
    /* Output of the init phase (stream 1 stdout, 2 stderr), one line at a time. */
    void (*on_log)(struct worker_snapshot *s, void *ud, int stream, const char *line, size_t len);
};
struct snapshot_impl {
    const char *name;
    int (*take)(struct worker *w, const struct ctr_spec *spec, const struct snapshot_callbacks *cb, void *ud,
                struct worker_snapshot **out, struct gerr *err);
    int (*restore)(struct worker_snapshot *s, const struct ctr_spec *spec, void *ud, struct ctr **out,
                   struct gerr *err);
    void (*drop)(struct worker_snapshot *s);
};
/* The fork template (worker/snapshot.c): a runner-mode container that ran the init
 * and then forks itself, copy-on-write, into each new container's own sandbox. */
extern const struct snapshot_impl snapshot_fork_impl;

/* The worker's implementation. spec is the version's container spec (its GPUs are
 * ignored: a template initialises without them). */
int worker_snapshot_take(struct worker *w, const struct ctr_spec *spec, const struct snapshot_callbacks *cb,
                         void *ud, struct worker_snapshot **out, struct gerr *err);
/* spec: the new container's (its id, resources, GPUs, env; the command and image are
 * the snapshot's). -EAGAIN while not READY; -ENOTSUP when the container needs
 * something a fork cannot give it (device nodes): start it from scratch then. */
int worker_snapshot_restore(struct worker_snapshot *s, const struct ctr_spec *spec, void *ud, struct ctr **out,
                            struct gerr *err);
void worker_snapshot_drop(struct worker_snapshot *s);
enum snapshot_state worker_snapshot_state(const struct worker_snapshot *s);
/* The template's container (for ps and accounting); NULL once it is gone. */
struct ctr *worker_snapshot_ctr(const struct worker_snapshot *s);
/* How many containers restored from it are alive. */
int worker_snapshot_children(const struct worker_snapshot *s);
/* Whether a container came from a snapshot (and which template's id). */
const char *ctr_snapshot_of(const struct ctr *c);

/* At daemon start: removes what containers of a previous (crashed) daemon left. */
/* What image builds (src/build) need to run their steps in sandboxes beside this
 * worker's containers: a user-namespace range of their own (held until worker_free),
 * and the worker's init binary, seccomp program, cgroup parent and state root, all
 * valid until worker_free. Reserved on the loop's thread; a lane is then used by one
 * build thread at a time. Its egress address is taken on first use
 * (worker_build_lane_egress, from any thread), so a daemon that never builds sets up
 * no egress network. */
struct worker;
struct worker_build_lane {
    struct worker *worker;
    struct sandbox_userns userns;
    uint32_t id_count;                 /* ids mapped from userns.host_uid on */
    struct sandbox_egress egress;
    bool egress_ok, resolv_conf_ok;    /* resolv_conf_ok: bind the host's WORKER_RESOLV_CONF */
    char egress_err[512];
    const struct sock_fprog *seccomp;
    int init_fd;
    const char *state_root, *cgroup_parent;
};
/* Held ranges are open-file-description byte-range locks (F_OFD_SETLK) on this file,
 * one byte per host uid: [host_base, host_base + count). */
#define WORKER_USERNS_LOCK "/run/gust-userns.lock"
#define WORKER_RESOLV_CONF "/etc/resolv.conf"
#define WORKER_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
int worker_build_lane_reserve(struct worker *w, struct worker_build_lane *lane, struct gerr *err);
/* Gives the lane its egress address unless it has one: 0, or -ENETUNREACH with
 * lane->egress_err saying why (steps then run without network). Thread-safe. */
int worker_build_lane_egress(struct worker_build_lane *lane);

int worker_cleanup_stale(const char *cgroup_parent, const char *state_root, struct gerr *err);

/* Parses "H100:2,A100-80GB:1" into a simulated inventory appended to cfg. */
int worker_parse_gpus(const char *s, struct worker_config *cfg, struct gerr *err);
/* Normalises a GPU type name users write ("h100" -> "H100", "a100-80gb" -> "A100-80GB"). */
int worker_normalize_gpu_type(const char *in, char *out, size_t out_len);

#endif
