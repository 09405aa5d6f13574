/* Private to src/worker: the container and worker records shared by worker.c
 * (containers, channels, exits) and snapshot.c (templates and forked containers). */
#ifndef GUST_WORKER_INTERNAL_H
#define GUST_WORKER_INTERNAL_H

#include <linux/filter.h>
#include <pthread.h>

#include "base/buf.h"
#include "base/list.h"
#include "proto/frame.h"
#include "runtime/cgroup.h"
#include "runtime/taskcheck.h"
#include "worker/worker.h"

/* A frame payload waiting for room in the socket. */
struct sendq {
    struct list_node link;      /* in ctr->sendq, oldest first */
    uint8_t type;
    uint64_t id;
    uint8_t *data;
    size_t len, off;
};

struct ctr {
    struct list_node link;      /* in worker->ctrs */
    struct worker *w;
    void *ud;
    char id[64];
    enum ctr_mode mode;
    uint32_t memory_mib;
    struct sandbox sb;
    int chan;
    bool chan_watched, pidfd_watched, want_write;
    bool ready, stop_requested, kill_requested, exited;
    uint64_t kill_timer;
    uint64_t oom_seen;   /* OOM kills already attributed */
    uint64_t start_ns, ready_ns;
    uint8_t *rx;         /* FRAME_MAX_DATAGRAM + 1 (room for a NUL after the body) */
    struct frame_asm asm_;
    struct list_node sendq;  /* struct sendq waiting for room in the socket */
    struct buf line[2];  /* partial log line per stream (stdout, stderr) */
    char last_err[256];  /* last stderr line, for start-failure messages */
    /* What every task must show before READY counts (runtime/taskcheck.h), and why
     * the container was killed instead ("" = it was not). */
    struct taskcheck_policy check;
    char refused[GERR_MSG_MAX];
    bool have_exit;
    struct frame_exit_body exitb;
    int userns_slot;     /* -1 = none held */
    int egress_slot;     /* -1 = none held */
    int gpu_idx[CTR_MAX_GPUS];
    int ngpus;
    struct ctr_stats stats; /* GPU samples live; cgroup counters frozen at exit */
    double gpu_util_sum;
    const struct worker_callbacks *cb; /* the worker's, or a snapshot's for its template */
    /* Snapshots (worker/snapshot.c). A template: the snapshot it holds. A forked
     * container: the snapshot it came from (NULL once that is gone), its fork id, its
     * link among the snapshot's children, the sync socket of the handshake and the
     * RESUME body waiting for PID 1's setup. */
    struct worker_snapshot *template_of;
    struct worker_snapshot *forked_from;
    bool forked, fork_pid1_seen, fork_runner_seen, fork_go_sent, fork_root_done, exit_wait;
    uint64_t fork_id;
    struct list_node fork_link; /* in the snapshot's children */
    int sync;
    bool sync_watched;
    uint64_t fork_timer;
    uint8_t *resume;
    size_t resume_len;
    struct sandbox_egress fork_egress; /* valid when egress_slot >= 0 */
    uint32_t fork_disk_mib;
    uint32_t fork_host_uid;            /* its template's: they share a user namespace */
};

/* One host uid range and the user namespace that maps it. A slot's range is ours once
 * we hold its lock (see slot_lock in worker.c) and stays ours until worker_free. */
struct userns_slot {
    int fd;              /* -1 until first used */
    bool used;
    bool foreign;        /* another daemon on this host held the range when we tried */
};

struct worker {
    struct ev_loop *loop;
    /* Guards egress set-up, acquire and release: image builds take their address
     * from their own thread (worker_build_lane_egress). */
    pthread_mutex_t egress_mu;
    struct worker_config cfg;
    struct worker_callbacks cb;
    char *state_root, *init_path, *cgroup_parent;
    int init_fd;
    struct list_node ctrs;                  /* struct ctr */
    struct cgroup_tuning tuning;
    struct userns_slot *slots;
    int userns_lock_fd;                     /* WORKER_USERNS_LOCK, -1 until the first slot */
    struct sock_fprog default_filter;
    struct sock_fprog template_filter;      /* sysfilter_build_template */
    const struct snapshot_impl *snap_impl;  /* snapshot_fork_impl */
    struct list_node snaps;                 /* struct worker_snapshot, for worker_free */
    struct egress *egress;   /* NULL until the first egress container */
    unsigned host_cpus;      /* CPUs gustd (and so every container) may run on */
};


/* worker.c, for snapshot.c */
int ctr_start(struct worker *w, const struct ctr_spec *spec, void *ud, bool template, struct ctr **out,
              struct gerr *err);
struct ctr *ctr_alloc(struct worker *w, const struct ctr_spec *spec, void *ud);
void ctr_link(struct ctr *c);
void ctr_finish(struct ctr *c);
void ctr_release(struct ctr *c);
int ctr_send_frame(struct ctr *c, uint8_t type, uint64_t id, const void *data, size_t len);
int ctr_watch(struct ctr *c, struct gerr *err);
void worker_set_sock_buf(int fd);
void ctr_on_chan(struct ev_loop *loop, int fd, uint32_t events, void *data);
void ctr_on_pidfd(struct ev_loop *loop, int fd, uint32_t events, void *data);
int worker_egress_take(struct worker *w, const char *what, struct sandbox_egress *eg, int *slot, struct gerr *err);
void worker_egress_give(struct worker *w, int slot);
/* spec's GPU device nodes, driver files and env (worker/gpu.h), malloc'd; NULL with
 * err set on failure. */
struct gpu_mounts;
struct gpu_mounts *ctr_gpu_mounts(struct worker *w, const struct ctr_spec *spec, struct gerr *err);
/* The seccomp program of spec: the worker's default (or template) one, or one built
 * into *own for the spec's extra denials (the caller frees own). */
int ctr_seccomp(struct worker *w, const struct ctr_spec *spec, bool template, struct sock_fprog *own,
                const struct sock_fprog **prog, struct gerr *err);

/* snapshot.c, for worker.c */
void snapshot_on_child_exit(struct ctr *tmpl, uint64_t fork_id, const uint8_t *body, size_t len);
void snapshot_forked_release(struct ctr *c);
void snapshot_free_all(struct worker *w);
/* A forked container's PID 1 is gone: true when its exit status has not come from
 * the template yet and finishing waits a moment for it (the timer finishes it). */
bool snapshot_forked_exit_pending(struct ctr *c);


#endif
