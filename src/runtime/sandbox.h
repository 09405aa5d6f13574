/* The sandbox: one container = one clone()d process tree in fresh mount, PID, IPC,
 * UTS, network and cgroup namespaces, rooted (pivot_root) in an overlay of the image
 * rootfs (read-only lower) and a per-container size-limited tmpfs (upper), with
 * memory / CPU / pids limits in its own cgroup (v1 or v2, detected).
 *
 * Lifecycle: sandbox_create() -> the container's PID 1 runs cfg->init_argv from
 * cfg->init_fd (fexecve, so the init binary need not exist in the image) ->
 * the caller watches sb->pidfd (readable on exit) -> sandbox_reap() ->
 * sandbox_destroy(). If the creating process dies, the container dies with it
 * (PR_SET_PDEATHSIG), which is what makes crash recovery simple.
 */
#ifndef GUST_RUNTIME_SANDBOX_H
#define GUST_RUNTIME_SANDBOX_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/error.h"

struct sandbox_bind {
    const char *host_path;
    const char *container_path; /* absolute */
    bool read_only;
};

#define SANDBOX_MAX_BINDS 16
#define SANDBOX_MAX_DEVICES 16

struct sandbox_config {
    const char *id;             /* container id ([a-z0-9-]); names the cgroup and state dir */
    const char *rootfs;         /* image rootfs directory: the overlay's read-only lower layer */
    const char *state_root;     /* host dir under which <id>/ scratch is made (and removed) */
    const char *cgroup_parent;  /* cgroup sub-path for all containers, e.g. "gust" */
    const char *hostname;       /* UTS name inside; NULL = id */
    uint64_t disk_mib;          /* size of the writable upper tmpfs; 0 = 512 */
    uint64_t memory_mib;        /* memory limit (swap included where settable); 0 = none */
    uint32_t cpu_millicores;    /* CFS quota per 100 ms period; 0 = none */
    uint32_t pids_max;          /* 0 = 1024 */
    struct sandbox_bind binds[SANDBOX_MAX_BINDS]; /* e.g. host /usr read-only */
    int nbinds;
    const char *devices[SANDBOX_MAX_DEVICES]; /* extra host device nodes to expose (e.g. /dev/nvidia0) */
    int ndevices;
    int init_fd;                /* fd of the static init binary, opened O_RDONLY|O_CLOEXEC */
    char *const *init_argv;     /* argv for PID 1 (argv[0] is its name) */
    char *const *init_envp;     /* environment for PID 1 */
    const char *workdir;        /* cwd inside the container; NULL = "/" */
    int channel_fd;             /* dup2'd to fd 3 in the container (not CLOEXEC there) */
};

struct sandbox {
    char id[64];
    pid_t pid;                  /* host pid of the container's PID 1 */
    int pidfd;                  /* pidfd_open(pid): readable when PID 1 exits; owned */
    char state_dir[512];        /* host scratch dir (overlay upper/work/merged mountpoints) */
    char cgroup_memory[512];    /* cgroup dir holding the memory controller (v1) or the unified dir (v2) */
    char cgroup_cpu[512];       /* v1 cpu,cpuacct dir, or unified */
    char cgroup_pids[512];      /* v1 pids dir, or unified */
    char cgroup_cpuacct[512];   /* v1 cpuacct dir (may be separate from cpu), or unified */
    bool cgroup_v2;
    bool reaped;
    int exit_status;            /* waitpid-style status once reaped */
    uint64_t created_ns;        /* mono_ns() before clone */
    uint64_t ready_ns;          /* mono_ns() when the child reported setup done, just before exec */
};

/* Creates and starts the container. On success sb is filled and owns pidfd, state dir
 * and cgroups; PID 1 has exec'd (or failed: then this returns the child's setup error
 * with its message and nothing is left behind). Must run in the main thread of a
 * single-threaded process or a thread that lives as long as the container
 * (PR_SET_PDEATHSIG is tied to the creating thread). */
int sandbox_create(const struct sandbox_config *cfg, struct sandbox *sb, struct gerr *err);

/* Sends sig to PID 1 (pidfd_send_signal). SIGKILL on PID 1 ends the whole PID namespace. */
int sandbox_signal(struct sandbox *sb, int sig);

/* Non-blocking: if PID 1 has exited, collects its status into sb->exit_status, sets
 * sb->reaped and returns 1; returns 0 if still running. */
int sandbox_reap(struct sandbox *sb, struct gerr *err);

/* Number of OOM kills recorded in the container's memory cgroup so far. */
int sandbox_oom_kills(const struct sandbox *sb, uint64_t *out);

/* Current memory use (bytes) and CPU time used (ns), for metering and `gust ps`. */
int sandbox_usage(const struct sandbox *sb, uint64_t *memory_bytes, uint64_t *cpu_ns);

/* After PID 1 exited (reaped): kills anything left in the cgroup, removes cgroups and
 * the state dir, closes pidfd. Idempotent. */
int sandbox_destroy(struct sandbox *sb, struct gerr *err);

/* Startup sweep after a crash: kills every process in cgroups under cgroup_parent,
 * removes those cgroups, unmounts and removes everything under state_root. */
int sandbox_cleanup_stale(const char *cgroup_parent, const char *state_root, struct gerr *err);

/* Which cgroup hierarchy serves memory/cpu/pids here: 2 (unified) or 1 (v1/hybrid). */
int sandbox_cgroup_version(void);

#endif
