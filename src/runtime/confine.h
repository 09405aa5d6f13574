/* Confinement steps of a process that is becoming a container, shared by the
 * sandbox's child (runtime/sandbox.c) and by the PID 1 of a container forked from a
 * snapshot template (gust-init's snap_child mode, see docs/ARCHITECTURE.md
 * "Snapshots"). Functions return 0 or a negative errno with err set. */
#ifndef GUST_RUNTIME_CONFINE_H
#define GUST_RUNTIME_CONFINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

/* Host device nodes every container gets, bound onto empty files in its /dev. */
extern const char *const confine_std_devices[];
extern const size_t confine_std_ndevices;

/* Capabilities a snapshot template keeps beyond the container set, so that it can
 * make the namespaces of the containers forked from it (they belong to its user
 * namespace; see docs/SECURITY.md): SYS_ADMIN, NET_ADMIN, SYS_CHROOT. */
#define CONFINE_TEMPLATE_CAPS ((1ull << 21) | (1ull << 12) | (1ull << 18))

/* Where a template keeps a proc and a sysfs that nothing covers, inside a directory
 * only host root may enter: the kernel lets a user namespace mount a new proc or
 * sysfs only while such an instance is in its mount namespace. */
#define CONFINE_HIDDEN_DIR "/.gust-snap"
/* And a bind of its root alone (no submounts): overlayfs takes a private clone of
 * its lower layer, which the kernel refuses for a mount with locked submounts, as
 * the root is in the namespaces of forked containers. */
#define CONFINE_ROOT_BIND "/.gust-root"

/* openat2 below rootfd with "/" and ".." clamped to it (flags get O_CLOEXEC). */
int confine_open_in_root(int rootfd, const char *rel, int flags);
/* Creates the absolute container path under the root (parents as directories, the
 * last as a directory or an empty file) and returns an O_PATH fd to it; every step
 * resolves with RESOLVE_IN_ROOT so symlinks cannot redirect a mount. */
int confine_mountpoint_in_root(int rootfd, const char *path, bool dir, struct gerr *err);
/* Creates the mount point at container path `where` and mounts there. */
int confine_mount_in_root(int rootfd, const char *src, const char *where, bool dir, const char *fstype,
                          unsigned long flags, const char *data, const char *what, struct gerr *err);
/* Attaches an idmapped (through userns_fd) clone of the tree at host_path on the
 * O_PATH fd target; -EINVAL when the filesystem cannot be idmapped. */
int confine_attach_idmapped(const char *host_path, int target, int userns_fd, uint64_t attrs);
/* Binds host onto container path where: nosuid, nodev (except device nodes),
 * read-only when asked; read-only directories idmapped when userns_fd >= 0. */
int confine_bind_in_root(int rootfd, const char *host, const char *where, bool read_only, int userns_fd,
                         struct gerr *err);

struct confine_dev {
    const char *dev_opts, *shm_opts;   /* tmpfs options of /dev and /dev/shm */
    const char *const *host_paths;     /* extra device nodes bound at ctr_paths[i] */
    const char *const *ctr_paths;
    int ndevices;
};
/* /dev: a small tmpfs with the standard nodes (bound from this process's /dev),
 * the extra ones, a devpts instance of its own, /dev/shm, the usual symlinks. */
int confine_setup_dev(int rootfd, const struct confine_dev *d, struct gerr *err);
int confine_loopback_up(struct gerr *err);
/* After pivot_root: /dev/null over leaky /proc files, empty read-only tmpfs over
 * leaky directories, read-only binds over kernel knobs. */
int confine_mask_paths(struct gerr *err);
/* Bounding, permitted and effective sets cut to the container set plus extra_caps
 * (a bit mask), nothing inheritable or ambient, no_new_privs. */
int confine_drop_privileges(uint64_t extra_caps, struct gerr *err);
void confine_reset_signals(void);

/* In a template's sandbox child, after /proc and /sys: the hidden proc and sysfs
 * (CONFINE_HIDDEN_DIR, mode 0700, owned by host root) and CONFINE_ROOT_BIND. */
int confine_template_hidden_mounts(struct gerr *err);

/* What the PID 1 of a forked container sets up, in namespaces it has just unshared
 * from its template (mount, network, IPC, UTS): hostname, loopback (and eth0 when
 * egress_addr is set), then a root of its own: an overlay whose lower layer is the
 * template's root (its bind at CONFINE_ROOT_BIND) and whose upper layer is a fresh tmpfs of
 * disk_mib, the template's other mounts (host /usr, source trees, driver files)
 * bound again, a fresh /dev, /tmp, /proc (of the new PID namespace) and read-only
 * /sys (of the new network namespace), pivot_root, masks. */
struct confine_forked {
    const char *hostname;
    uint64_t disk_mib;
    uint32_t egress_addr, egress_gw;   /* IPv4 host order; 0 = loopback only */
    int egress_prefix;
};
int confine_forked_root(const struct confine_forked *f, struct gerr *err);

#endif
