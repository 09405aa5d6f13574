/* Control groups for sandboxes, v1 (per-controller hierarchies, as on hybrid hosts)
 * and v2 (one unified hierarchy), behind one small API.
 *
 * A container's cgroup is <controller root>/<parent>/<id> for each controller it
 * uses: memory, cpu, cpuacct (CPU accounting; on v1 it may be a separate mount from
 * cpu) and pids. On v2 all four are the same directory. The controller roots are
 * detected once per process: if /sys/fs/cgroup/cgroup.controllers exists the host
 * is pure v2, else each v1 controller is looked up in /proc/self/mountinfo.
 */
#ifndef GUST_RUNTIME_CGROUP_H
#define GUST_RUNTIME_CGROUP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/error.h"

/* CGROUP_DEVICES is optional on v1 (a host without the devices hierarchy gets an
 * empty directory for it, and no device rules); on v2 device access is an eBPF
 * program attached to the container's directory. */
enum cgroup_ctrl { CGROUP_MEMORY, CGROUP_CPU, CGROUP_CPUACCT, CGROUP_PIDS, CGROUP_DEVICES, CGROUP_NCTRL };

#define CGROUP_PATH_MAX 512

/* Detected controller roots, e.g. "/sys/fs/cgroup/memory" (v1) or "/sys/fs/cgroup" (v2). */
struct cgroup_roots {
    bool v2;
    char root[CGROUP_NCTRL][CGROUP_PATH_MAX];
};

/* One container's cgroup directories, indexed by enum cgroup_ctrl. On v1 two
 * controllers may share a directory (co-mounted "cpu,cpuacct"). */
struct cgroup_set {
    bool v2;
    char dir[CGROUP_NCTRL][CGROUP_PATH_MAX];
};

/* One allowed device: type 'c' or 'b', major and minor (-1 = any); access is always
 * read, write and mknod. */
struct cgroup_device {
    char type;
    int32_t major, minor;
};

#define CGROUP_MAX_DEVICES 64

struct cgroup_limits {
    uint64_t memory_bytes;   /* 0 = unlimited; swap is limited to 0 extra where settable */
    /* CPU request: the container's weight against its siblings when the CPU is
     * contended (cgroup_cpu_shares, cgroup_cpu_weight); 0 = the kernel's default.
     * It never caps use: an idle CPU is the container's to burst into. */
    uint32_t cpu_request_millicores;
    /* CPU limit: a CFS quota per 100 ms period (cgroup_cpu_quota_us); 0 = none. */
    uint32_t cpu_limit_millicores;
    uint32_t pids_max;       /* 0 = unlimited */
    bool restrict_devices;   /* deny every device but devices[] */
    const struct cgroup_device *devices;
    size_t ndevices;
};

/* CPU values written for a container, exposed for tests. A millicore request maps
 * so that one core (1000 millicores) gets the kernel's default weight, which is what
 * every other cgroup on the host has: a 1-core container competes as an equal with a
 * host service, and containers share contended CPU in proportion to their requests.
 *   v1 cpu.shares = millicores * 1024 / 1000, clamped to the kernel's [2, 262144];
 *   v2 cpu.weight = millicores / 10 (rounded), clamped to the kernel's [1, 10000]
 *     (default 100 = 1000 millicores; the spec's 10..64000 maps to 1..6400).
 * The quota for a millicore limit is millicores * 100 us per 100000 us period (1000
 * millicores = one full CPU), at least the kernel's minimum of 1000 us. */
uint64_t cgroup_cpu_shares(uint32_t millicores);
uint64_t cgroup_cpu_weight(uint32_t millicores);
uint64_t cgroup_cpu_quota_us(uint32_t millicores);
#define CGROUP_CPU_PERIOD_US 100000

/* Returns the detected roots (cached after the first successful call; thread-safe),
 * or NULL with err filled when a needed v1 controller is not mounted. */
const struct cgroup_roots *cgroup_detect(struct gerr *err);

/* 2 on a pure v2 host, 1 otherwise (also when detection fails). */
int cgroup_version(void);

/* Fills set with <root>/<parent>[/<id>] for every controller (id NULL: the parent
 * itself). parent is a relative path of [A-Za-z0-9_-] components joined by '/'. */
int cgroup_set_paths(struct cgroup_set *set, const char *parent, const char *id, struct gerr *err);

/* Creates the set's directories (and missing parents; on v2 enables the memory, cpu
 * and pids controllers down the path) and writes the limits. Fails with -EEXIST if
 * the leaf already exists, so a stale cgroup is never silently reused. On failure
 * whatever was created is removed again. */
int cgroup_set_create(const struct cgroup_set *set, const struct cgroup_limits *lim,
                      struct gerr *err);

/* Whether dir c of the set is present and not a repeat of an earlier controller's
 * directory (v2, co-mounted v1 controllers): loops handle each directory once. */
bool cgroup_set_dir_first(const struct cgroup_set *set, int c);

/* Moves pid into every directory of the set (cgroup.procs). */
int cgroup_set_attach(const struct cgroup_set *set, pid_t pid, struct gerr *err);

/* Kills every process in each directory of the set and removes the directories
 * (retrying briefly while they are busy). Missing directories are fine. */
int cgroup_set_destroy(const struct cgroup_set *set, struct gerr *err);

/* Kills every process in dir (cgroup.kill on v2 where present, else SIGKILL over
 * cgroup.procs) and waits up to about a second for it to empty. */
int cgroup_kill_all(const char *dir, bool v2, struct gerr *err);

/* Kills and removes every child cgroup of dir, depth first, then dir itself when
 * remove_self. Missing dir is fine. */
int cgroup_remove_tree(const char *dir, bool v2, bool remove_self, struct gerr *err);

/* Statistics read from a container's directories. */
int cgroup_read_oom_kills(const char *memory_dir, bool v2, uint64_t *out);
int cgroup_read_memory(const char *memory_dir, bool v2, uint64_t *bytes);
int cgroup_read_cpu(const char *cpuacct_dir, bool v2, uint64_t *ns);
/* Highest memory use since creation (v1 memory.max_usage_in_bytes, v2 memory.peak). */
int cgroup_read_memory_peak(const char *memory_dir, bool v2, uint64_t *bytes);

/* v2 device control: loads an eBPF cgroup-device program that allows exactly devs
 * and attaches it to the cgroup directory dir. Also usable on the unified hierarchy
 * of a hybrid host (which is how it is tested here). */
int cgroup_attach_device_filter(const char *dir, const struct cgroup_device *devs, size_t n,
                                struct gerr *err);

/* Moving a task between cgroups takes the kernel's global cgroup_threadgroup_rwsem for
 * writing; after an idle moment that waits for an RCU grace period, which measured 10-25
 * ms here and dominated container creation. The cgroup2 mount option "favordynmods"
 * (Linux 6.0+) keeps that lock in the mode where writers do not wait, at a small cost
 * to fork and exit host-wide. cgroup_favor_dynmods() turns it on by remounting the
 * host's cgroup2 mount (the unified one on hybrid hosts) with its per-mount flags and
 * other options kept; t records what to put back. It is a no-op when the option is
 * already on or there is no cgroup2 mount (t->changed stays false), except that a
 * record left in /run by an earlier gustd that turned it on and died is adopted, so
 * the options from before are still restored. */
struct cgroup_tuning {
    bool changed;
    int lock_fd;                /* shared lock on CGROUP_TUNING_LOCK while we run; -1 if none */
    char path[CGROUP_PATH_MAX];
    unsigned long mount_flags;
    char super_opts[512];       /* the options before, without rw/ro */
};

/* Turns on favordynmods (or adopts what an earlier daemon recorded) and holds a shared
 * lock that says a gust daemon relies on it, so that several daemons on one host share
 * the option: the last one to stop puts it back. */
int cgroup_favor_dynmods(struct cgroup_tuning *t, struct gerr *err);
/* Puts back the options recorded by cgroup_favor_dynmods (if it, or a crashed daemon
 * before it, changed anything), unless another daemon still holds the lock. */
int cgroup_tuning_restore(struct cgroup_tuning *t, struct gerr *err);

#endif
