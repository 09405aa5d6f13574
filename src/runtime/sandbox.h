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

struct sock_fprog;

struct sandbox_bind {
    const char *host_path;
    const char *container_path; /* absolute */
    bool read_only;
};

#define SANDBOX_MAX_BINDS 48
/* Volumes per container: as many as a spec may name (SPEC_MAX_MOUNTS). */
#define SANDBOX_MAX_VOLUMES 16

/* A writable layered directory (a volume): an overlay at container_path whose lower
 * layer is the read-only host directory lower (idmapped into the user namespace like
 * the rootfs, so its root-owned files are the container root's) and whose upper and
 * work layers are the host directories upper and work (made when missing and given
 * to the container's root), so what the container writes outlives it there. */
struct sandbox_volume {
    const char *lower, *upper, *work;
    const char *container_path; /* absolute */
};
#define SANDBOX_MAX_DEVICES 16

/* A host device node exposed at container_path (under /dev/); it is also the only
 * kind of device the container's device cgroup lets it open, besides the standard
 * null, zero, full, random, urandom, tty and its own ptys. */
struct sandbox_device {
    const char *host_path;
    const char *container_path;
};

/* The user namespace the container runs in (runtime/userns.h): fd from
 * userns_create(), whose maps send container 0 to host_uid / host_gid. */
struct sandbox_userns {
    int fd;
    uint32_t host_uid, host_gid;
};

/* Opt-in network egress: a veth pair, host end host_ifname with host_addr, container
 * end "eth0" with ctr_addr (both in one /prefix), default route via host_addr. The
 * host side's forwarding and NAT are the caller's (worker/egress). */
struct sandbox_egress {
    char host_ifname[16];
    uint32_t host_addr, ctr_addr; /* IPv4, host byte order */
    int prefix;
};

/* Where sandbox_create spent its time, in nanoseconds (see docs/ARCHITECTURE.md). */
struct sandbox_timing {
    uint64_t cgroups_ns;    /* cgroup directories, limits, device rules, attach */
    uint64_t clone_ns;      /* clone() into the new namespaces, until the child runs */
    uint64_t network_ns;    /* loopback (and the veth pair for egress) */
    uint64_t mounts_ns;     /* overlay (idmapped lower), /dev, /tmp, binds, pivot_root, /proc, /sys, masks */
    uint64_t userns_ns;     /* entering the user namespace, uid/gid switch */
    uint64_t security_ns;   /* capabilities, no_new_privs, rlimits, seccomp load */
    uint64_t exec_ns;       /* from the end of setup until the parent saw exec */
};

struct sandbox_config {
    const char *id;             /* container id ([a-z0-9-]); names the cgroup and state dir */
    const char *rootfs;         /* image rootfs directory: the overlay's read-only lower layer */
    const char *state_root;     /* host dir under which <id>/ scratch is made (and removed) */
    const char *cgroup_parent;  /* cgroup sub-path for all containers, e.g. "gust" */
    const char *hostname;       /* UTS name inside; NULL = id */
    uint64_t disk_mib;          /* size of the writable upper tmpfs (and of /tmp); 0 = 512 */
    /* Image builds: the overlay's upper and work directories are these existing host
     * directories (same filesystem, both empty at first) instead of the tmpfs, so the
     * container's changes outlive it. NULL = the tmpfs. */
    const char *upper_dir, *work_dir;
    uint64_t memory_mib;        /* memory limit (swap included where settable); 0 = none */
    uint32_t cpu_millicores;    /* CPU request: the cgroup's weight (runtime/cgroup.h); 0 = default */
    uint32_t cpu_limit_millicores; /* CFS quota per 100 ms period; 0 = none (may burst) */
    uint32_t pids_max;          /* 0 = 1024 */
    uint32_t open_files;        /* RLIMIT_NOFILE (soft = hard); 0 = 65536 */
    struct sandbox_bind binds[SANDBOX_MAX_BINDS]; /* e.g. host /usr read-only; nosuid, nodev */
    int nbinds;
    struct sandbox_volume volumes[SANDBOX_MAX_VOLUMES]; /* mounted after the binds */
    int nvolumes;
    struct sandbox_device devices[SANDBOX_MAX_DEVICES]; /* extra device nodes (e.g. /dev/nvidia0) */
    int ndevices;
    /* Hardening. Always: capability bounding set cut to SANDBOX_CAPS (docs/SECURITY.md),
     * no_new_privs, nosuid/nodev image and binds, masked and read-only /proc paths,
     * read-only /sys, device cgroup allowlist. */
    const struct sandbox_userns *userns; /* NULL: container root is host root (bare-runtime tests only) */
    const struct sock_fprog *seccomp;    /* runtime/sysfilter.h; NULL: no filter */
    const struct sandbox_egress *egress; /* NULL: loopback only */
    int init_fd;                /* fd of the static init binary, opened O_RDONLY|O_CLOEXEC */
    char *const *init_argv;     /* argv for PID 1 (argv[0] is its name) */
    char *const *init_envp;     /* environment for PID 1 */
    const char *workdir;        /* cwd inside the container; NULL = "/" */
    int channel_fd;             /* dup2'd to fd 3 in the container (not CLOEXEC there) */
    /* A snapshot template (docs/ARCHITECTURE.md "Snapshots"): keeps
     * CONFINE_TEMPLATE_CAPS beyond the container set and gets the hidden proc and
     * sysfs, so it can make the namespaces of containers forked from it. Its
     * seccomp program must be the template profile (sysfilter_build_template). */
    bool snapshot_template;
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
    char cgroup_devices[512];   /* v1 devices dir ("" if that hierarchy is absent), or unified */
    bool cgroup_v2;
    bool forked;                /* made by sandbox_forked_prepare: PID 1 is not our child */
    bool reaped;
    int exit_status;            /* waitpid-style status once reaped */
    uint64_t created_ns;        /* mono_ns() before clone */
    uint64_t ready_ns;          /* mono_ns() when the child reported setup done, just before exec */
    struct sandbox_timing timing;
    char egress_ifname[16];     /* host end of the veth pair ("" = none); removed by destroy */
};

/* The capabilities container root keeps (bounding, permitted and effective sets). */
#define SANDBOX_CAPS_DOC "CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE"

/* Creates and starts the container. On success sb is filled and owns pidfd, state dir
 * and cgroups; PID 1 has exec'd (or failed: then this returns the child's setup error
 * with its message and nothing is left behind). Must run in the main thread of a
 * single-threaded process or a thread that lives as long as the container
 * (PR_SET_PDEATHSIG is tied to the creating thread). */
int sandbox_create(const struct sandbox_config *cfg, struct sandbox *sb, struct gerr *err);

/* A container forked from a snapshot template: makes its cgroups (the limits and
 * device rules of sandbox_create, from cfg: id, cgroup_parent, memory, cpu, pids,
 * devices) and nothing else; the template makes its processes, which are handed over
 * with sandbox_forked_attach. Reaping then means "PID 1's pidfd became readable"
 * (exit_status stays 0: the template, their parent, reports it). */
int sandbox_forked_prepare(const struct sandbox_config *cfg, struct sandbox *sb, struct gerr *err);
/* Moves pid (host pid) into the container's cgroups; leader: it is the container's
 * PID 1, whose pidfd sb->pidfd becomes. */
int sandbox_forked_attach(struct sandbox *sb, pid_t pid, bool leader, struct gerr *err);

/* Sends sig to PID 1 (pidfd_send_signal). SIGKILL on PID 1 ends the whole PID namespace. */
int sandbox_signal(struct sandbox *sb, int sig);

/* Non-blocking: if PID 1 has exited, collects its status into sb->exit_status, sets
 * sb->reaped and returns 1; returns 0 if still running. */
int sandbox_reap(struct sandbox *sb, struct gerr *err);

/* Number of OOM kills recorded in the container's memory cgroup so far. */
int sandbox_oom_kills(const struct sandbox *sb, uint64_t *out);

/* Current memory use (bytes) and CPU time used (ns), for metering and `gust ps`. */
int sandbox_usage(const struct sandbox *sb, uint64_t *memory_bytes, uint64_t *cpu_ns);
/* Highest memory use (bytes) since the container started. */
int sandbox_memory_peak(const struct sandbox *sb, uint64_t *bytes);

/* After PID 1 exited (reaped): kills anything left in the cgroup, removes cgroups and
 * the state dir, closes pidfd. Idempotent. */
int sandbox_destroy(struct sandbox *sb, struct gerr *err);

/* Volumes of a running container (sb from sandbox_create, PID 1 alive), changed from
 * outside it in its mount namespace (a short-lived child process enters it):
 * sandbox_volume_detach unmounts the volume at container path `path` (-EBUSY when a
 * file in it is open, or a process has its working directory there: then nothing
 * changed); sandbox_volume_attach mounts v at v->container_path as sandbox_create
 * did, with userns the container's user namespace (NULL: none). Both run in well
 * under a millisecond of the container's time; they block the caller for a fork. */
int sandbox_volume_detach(struct sandbox *sb, const char *path, struct gerr *err);
int sandbox_volume_attach(struct sandbox *sb, const struct sandbox_userns *userns, const struct sandbox_volume *v,
                          struct gerr *err);

/* Startup sweep after a crash: kills every process in cgroups under cgroup_parent,
 * removes those cgroups, unmounts and removes everything under state_root. */
int sandbox_cleanup_stale(const char *cgroup_parent, const char *state_root, struct gerr *err);

/* Which cgroup hierarchy serves memory/cpu/pids here: 2 (unified) or 1 (v1/hybrid). */
int sandbox_cgroup_version(void);

#endif
