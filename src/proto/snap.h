/* Snapshot fork protocol: how the worker, a snapshot template and the containers
 * forked from it talk (docs/ARCHITECTURE.md "Snapshots" has the sequence).
 *
 * On the template's runner channel (frames, proto/frame.h):
 *   worker -> template  FRAME_FORK, id = fork id, empty body, SCM_RIGHTS with three
 *                       fds: the new container's runner channel, its sync socket and
 *                       the gust-init binary.
 *   template -> worker  FRAME_CHILD_EXIT, id = fork id: struct frame_exit_body of the
 *                       forked runner (kind SNAP_EXIT_FORK_FAILED: it never ran;
 *                       code = errno), then optional text.
 * The template makes the new PID namespace, spawns gust-init --mode snap_child in it
 * as PID 1 (fd 3 channel, 4 sync, 5 and 6 the read ends of the runner's stdout and
 * stderr pipes) and forks itself as PID 2, the container's runner.
 *
 * On the sync socket (SOCK_SEQPACKET; the worker's end has SO_PASSCRED, so every
 * message carries the sender's pid as the worker sees it):
 *   PID 1  -> worker  SNAP_MSG_ATTACH (one byte) after unsharing its namespaces
 *   runner -> worker  SNAP_MSG_RUNNER (one byte) right after the fork
 *   worker -> PID 1   struct snap_go, then go.filter_len struct sock_filter: the
 *                     container's seccomp program. Sent once both are in the
 *                     container's cgroups (and its veth is in place).
 *   PID 1  -> worker  struct snap_reply: SNAP_MSG_DONE with its step times, or
 *                     SNAP_MSG_FAILED with errno and message.
 * Then on the new runner channel:
 *   worker -> runner  FRAME_RESUME: u32 filter_len (little endian), the seccomp
 *                     program, then "K=V\0" environment entries that differ per
 *                     container (GUST_CONTAINER_ID, GPU variables). The runner joins
 *                     PID 1's namespaces (setns on its pidfd), drops privileges,
 *                     installs the program, runs its enter(snap=False) hooks and
 *                     sends READY.
 */
#ifndef GUST_PROTO_SNAP_H
#define GUST_PROTO_SNAP_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#define SNAP_MSG_ATTACH 'a'
#define SNAP_MSG_RUNNER 'c'
#define SNAP_MSG_GO 'g'
#define SNAP_MSG_DONE 'd'
#define SNAP_MSG_FAILED 'e'

#define SNAP_EXIT_FORK_FAILED 3 /* frame_exit_body.kind: the template could not fork */

#define SNAP_SYNC_FD 4
#define SNAP_STDOUT_FD 5
#define SNAP_STDERR_FD 6

/* Largest seccomp program either side accepts (BPF_MAXINSNS). */
#define SNAP_MAX_FILTER 4096

struct snap_go {
    uint8_t tag;                /* SNAP_MSG_GO */
    uint8_t pad[3];
    uint32_t egress_addr;       /* container address, host order; 0 = loopback only */
    uint32_t egress_gw;
    int32_t egress_prefix;
    uint64_t disk_mib;
    char hostname[72];
    uint32_t filter_len;        /* struct sock_filter entries that follow */
};

struct snap_reply {
    uint8_t tag;                /* SNAP_MSG_DONE or SNAP_MSG_FAILED */
    uint8_t pad[3];
    int32_t code;               /* errno for FAILED */
    uint64_t start_ns, network_mounts_ns, security_ns; /* CLOCK_MONOTONIC */
    char msg[GERR_MSG_MAX];
};

/* What the worker reads from a forked container's sync socket (a container writes
 * it, so anything may come): one of these, or SNAP_SYNC_BAD. */
enum snap_sync_kind { SNAP_SYNC_BAD = 0, SNAP_SYNC_PID1, SNAP_SYNC_RUNNER, SNAP_SYNC_DONE, SNAP_SYNC_FAILED };
/* Classifies one datagram; for DONE and FAILED copies it into *rep with rep->msg
 * NUL-terminated, and DONE's times must be in order. */
enum snap_sync_kind snap_parse_sync(const void *buf, size_t n, struct snap_reply *rep);

struct frame_exit_body;
/* A FRAME_CHILD_EXIT body (from a template): the exit body, then text, of which at
 * most cap - 1 bytes are copied to text (NUL-terminated, cap >= 1). -EPROTO when too
 * short or of an unknown kind. */
int snap_parse_child_exit(const uint8_t *body, size_t len, struct frame_exit_body *xb, char *text, size_t cap);

/* A FRAME_RESUME body: *filter and *nfilter the seccomp program (unaligned bytes:
 * copy before use), *env and *env_len the "K=V\0" entries. -EPROTO when malformed. */
int snap_parse_resume(const uint8_t *body, size_t len, const uint8_t **filter, uint32_t *nfilter, const char **env,
                      size_t *env_len);

#endif
