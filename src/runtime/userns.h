/* User namespaces for containers: container uid/gid 0..count-1 map to an unprivileged
 * host range host_base..host_base+count-1, so root in a container is nobody on the host.
 *
 * A user namespace is made once per range (userns_create) by a short-lived helper
 * process and kept as an fd; containers enter it (setns) as the last step before exec,
 * after their mount, PID, IPC, UTS and network namespaces were made by real root. Those
 * namespaces therefore belong to the initial user namespace, and container root has no
 * capability over them: it cannot mount, unmount, configure interfaces or open raw
 * sockets, whatever its capability sets say. The same fd is the idmap of the image's
 * read-only lower layer, so image files appear owned as built.
 */
#ifndef GUST_RUNTIME_USERNS_H
#define GUST_RUNTIME_USERNS_H

#include <stdint.h>

#include "base/error.h"

/* Creates a user namespace whose uid and gid maps are "0 host_base count" and returns
 * an O_CLOEXEC fd to it in *fd_out. Needs CAP_SETUID/CAP_SETGID on the host (root). */
int userns_create(uint32_t host_base, uint32_t count, int *fd_out, struct gerr *err);

/* Checks that host_base..host_base+count-1 is a sane unprivileged range: count >= 65536
 * (so uid 65534 "nobody" exists inside), base >= 65536 (away from host accounts), and
 * the end fits in 32 bits below (uid_t)-1. */
int userns_check_range(uint64_t host_base, uint64_t count, struct gerr *err);

#endif
