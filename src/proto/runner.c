/* C client of the runner protocol (see proto/runner.h). */
#include "proto/runner.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/caps.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "proto/snap.h"

/* Largest input a C runner accepts; the worker enforces its own (smaller) limit. */
#define RUNNER_MAX_INPUT ((size_t)1 << 30)

int runner_open(struct runner *r)
{
    memset(r, 0, sizeof *r);
    r->fd = -1;
    const char *s = getenv("GUST_RUNNER_FD");
    if (!s || !*s)
        return -ENOENT;
    int64_t fd;
    if (parse_i64(s, 0, 65535, &fd) < 0)
        return -EINVAL;
    struct stat st;
    if (fstat((int)fd, &st) < 0)
        return -errno;
    if (!S_ISSOCK(st.st_mode))
        return -ENOTSOCK;
    r->rxbuf = xmalloc(FRAME_MAX_DATAGRAM + 1);
    /* Keep the channel away from programs this runner may exec. */
    (void)fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    r->fd = (int)fd;
    frame_asm_init(&r->asm_, RUNNER_MAX_INPUT);
    r->live = xcalloc(RUNNER_MAX_LIVE, sizeof *r->live);
    return 0;
}

/* ---- snapshot templates (proto/snap.h) ------------------------------------------ */

#define SNAP_NS_FLAGS (CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP)
#define SNAP_MAX_KIDS 4096

struct snap_kid {
    int pidfd;
    pid_t pid;
    uint64_t fork_id;   /* 0: a PID 1, reaped only */
};

static int high_cloexec(int fd)
{
    int n = fcntl(fd, F_DUPFD_CLOEXEC, 10);
    close(fd);
    return n;
}

static void snap_report(int chan, uint64_t fork_id, uint8_t kind, int32_t code, const char *text)
{
    uint8_t body[sizeof(struct frame_exit_body) + 256];
    struct frame_exit_body xb = {.kind = kind, .code = code};
    memcpy(body, &xb, sizeof xb);
    size_t n = text ? strlen(text) : 0;
    if (n > 256)
        n = 256;
    memcpy(body + sizeof xb, text, n);
    (void)frame_send(chan, FRAME_CHILD_EXIT, fork_id, body, sizeof xb + n);
}

/* In the forked runner: hello, wait for RESUME, join PID 1's namespaces, confine. */
static int snap_become_container(struct runner *r, int chan, int sync, int pid1, int out_w, int err_w,
                                 const char *cwd)
{
    char tag = SNAP_MSG_RUNNER;
    if (send(sync, &tag, 1, MSG_NOSIGNAL) != 1)
        return -errno;
    close(sync);
    close(r->fd);
    r->fd = chan;
    struct frame_header h;
    uint8_t *body = NULL;
    size_t len = 0;
    for (;;) {
        int n = frame_recv(chan, r->rxbuf, &h);
        if (n < 0)
            return n;
        int rc = frame_asm_feed(&r->asm_, &h, r->rxbuf + FRAME_HEADER_SIZE, &body, &len);
        if (rc < 0)
            return rc;
        if (rc == 1 && h.type == FRAME_RESUME)
            break;
        free(body);
        body = NULL;
    }
    const uint8_t *fbytes;
    uint32_t nfilter;
    const char *env;
    size_t env_len;
    if (snap_parse_resume(body, len, &fbytes, &nfilter, &env, &env_len) < 0) {
        free(body);
        return -EPROTO;
    }
    if (setns(pid1, SNAP_NS_FLAGS) < 0 || chdir(cwd) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0) {
        int e = errno;
        free(body);
        return -e;
    }
    close(pid1);
    close(out_w);
    close(err_w);
    for (size_t off = 0; off < env_len;) {
        char *kv = (char *)env + off;
        size_t k = strlen(kv);
        char *eq = strchr(kv, '=');
        if (eq) {
            *eq = '\0';
            setenv(kv, eq + 1, 1);
        }
        off += k + 1;
    }
    setenv("GUST_SNAPSHOT", "restored", 1);
    struct gerr err;
    int rc = caps_limit(CAPS_CONTAINER, &err);
    /* snap_parse_resume bounds nfilter; the copy aligns the program (fbytes need not be). */
    assert(nfilter <= SNAP_MAX_FILTER);
    struct sock_filter *insns = nfilter ? xmemdup(fbytes, (size_t)nfilter * sizeof *insns) : NULL;
    struct sock_fprog prog = {.len = (unsigned short)nfilter, .filter = insns};
    if (rc == 0 && nfilter && syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
        rc = -errno;
    free(insns);
    free(body);
    return rc;
}

/* Spawns PID 1 of the new namespace (gust-init snap_child) and forks this process as
 * its PID 2. Returns 1 in the parent (kids recorded), 0 in the child (then set up),
 * 2 in a child whose setup failed, <0 when the fork could not be made. */
static int snap_fork(struct runner *r, int own_pidns, uint64_t fork_id, int fds[3], struct snap_kid *kids,
                     int *nkids, const char *cwd)
{
    int chan = fds[0], sync = fds[1], init = fds[2];
    int out[2] = {-1, -1}, errp[2] = {-1, -1};
    if (*nkids + 2 > SNAP_MAX_KIDS)
        return -EAGAIN;
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0)
        return -errno;
    out[0] = high_cloexec(out[0]);
    errp[0] = high_cloexec(errp[0]);
    if (unshare(CLONE_NEWPID) < 0) {
        int e = errno;
        close(out[0]), close(out[1]), close(errp[0]), close(errp[1]);
        return -e;
    }
    static char *const argv[] = {"gust-init", "--mode", "snap_child", NULL};
    static char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
    fflush(NULL); /* nothing buffered to be written twice */
    pid_t pid1 = vfork();
    if (pid1 == 0) {
        if (dup2(chan, FRAME_CHILD_FD) >= 0 && dup2(sync, SNAP_SYNC_FD) >= 0 && dup2(out[0], SNAP_STDOUT_FD) >= 0 &&
            dup2(errp[0], SNAP_STDERR_FD) >= 0)
            fexecve(init, argv, envp);
        _exit(127);
    }
    int rc = 1, pidfd1 = -1;
    pid_t kid = -1;
    if (pid1 < 0 || (pidfd1 = (int)syscall(SYS_pidfd_open, pid1, 0)) < 0)
        rc = -errno;
    else if ((kid = fork()) < 0)
        rc = -errno;
    if (kid == 0) {
        close(own_pidns);
        close(init);
        close(out[0]);
        close(errp[0]);
        for (int i = 0; i < *nkids; i++)
            close(kids[i].pidfd);
        *nkids = 0;
        return snap_become_container(r, chan, sync, pidfd1, out[1], errp[1], cwd) < 0 ? 2 : 0;
    }
    /* Back to our own PID namespace for the next fork: without it every later fork
     * would fail, so a failure here ends the template. */
    if (setns(own_pidns, CLONE_NEWPID) < 0)
        _exit(4);
    if (pidfd1 >= 0)
        kids[(*nkids)++] = (struct snap_kid){.pidfd = pidfd1, .pid = pid1, .fork_id = 0};
    if (kid > 0) {
        int kfd = (int)syscall(SYS_pidfd_open, kid, 0);
        if (kfd >= 0)
            kids[(*nkids)++] = (struct snap_kid){.pidfd = kfd, .pid = kid, .fork_id = fork_id};
    }
    close(out[0]), close(out[1]), close(errp[0]), close(errp[1]);
    return rc;
}

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#define SNAP_HUGE ((uintptr_t)2 << 20)

/* Backs the init's large private anonymous regions with huge pages where the kernel
 * can, so each fork copies one page-table entry per 2 MiB instead of 512 (most of a
 * large process's fork cost); a write in a forked container still copies one 4 KiB
 * page. Best effort. */
static void snap_compact(void)
{
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        uintptr_t lo, hi;
        char perms[8], path[256] = "";
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %255s", &lo, &hi, perms, path) < 3 || strcmp(perms, "rw-p") ||
            (path[0] && strcmp(path, "[heap]")))
            continue;
        lo = (lo + SNAP_HUGE - 1) & ~(SNAP_HUGE - 1);
        hi &= ~(SNAP_HUGE - 1);
        if (hi <= lo)
            continue;
        (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
        (void)madvise((void *)lo, hi - lo, MADV_COLLAPSE);
    }
    fclose(f);
}

/* A template's life after its init: forks on request, reports its forked runners'
 * exits; returns (0) only in a forked container, ready to say READY itself. */
static int snap_serve(struct runner *r)
{
    snap_compact();
    int own = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
    char cwd[PATH_MAX];
    if (own < 0 || !getcwd(cwd, sizeof cwd))
        return -errno;
    int rc = frame_send(r->fd, FRAME_READY, 0, NULL, 0);
    if (rc < 0)
        return rc;
    static struct snap_kid kids[SNAP_MAX_KIDS];
    static struct pollfd pfd[SNAP_MAX_KIDS + 1];
    int nkids = 0;
    for (;;) {
        pfd[0] = (struct pollfd){.fd = r->fd, .events = POLLIN};
        for (int i = 0; i < nkids; i++)
            pfd[i + 1] = (struct pollfd){.fd = kids[i].pidfd, .events = POLLIN};
        if (poll(pfd, (nfds_t)nkids + 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            _exit(1);
        }
        for (int i = nkids - 1; i >= 0; i--) {
            if (!pfd[i + 1].revents)
                continue;
            int st = 0;
            while (waitpid(kids[i].pid, &st, 0) < 0 && errno == EINTR) {
            }
            if (kids[i].fork_id)
                snap_report(r->fd, kids[i].fork_id, WIFSIGNALED(st) ? FRAME_EXIT_SIGNALED : FRAME_EXIT_EXITED,
                            WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), NULL);
            close(kids[i].pidfd);
            kids[i] = kids[--nkids];
        }
        if (!pfd[0].revents)
            continue;
        uint8_t hdr[FRAME_MAX_DATAGRAM];
        union {
            char buf[CMSG_SPACE(3 * sizeof(int))];
            struct cmsghdr align;
        } ctl;
        struct iovec iov = {.iov_base = hdr, .iov_len = sizeof hdr};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
        ssize_t n = recvmsg(r->fd, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            _exit(0);
        int fds[3] = {-1, -1, -1}, nfds = 0;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm))
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
                nfds = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                memcpy(fds, CMSG_DATA(cm), (size_t)(nfds < 3 ? nfds : 3) * sizeof(int));
            }
        struct frame_header h;
        if (frame_header_decode(hdr, (size_t)n, &h) < 0 || h.type != FRAME_FORK || nfds != 3) {
            for (int i = 0; i < 3; i++)
                if (fds[i] >= 0)
                    close(fds[i]);
            if (h.type == FRAME_SHUTDOWN)
                _exit(0);
            continue;
        }
        for (int i = 0; i < 3; i++)
            fds[i] = high_cloexec(fds[i]);
        rc = snap_fork(r, own, h.id, fds, kids, &nkids, cwd);
        if (rc == 0)
            return 0;
        if (rc == 2)
            _exit(126); /* a child whose setup failed */
        if (rc < 0) {
            char text[128];
            snprintf(text, sizeof text, "%s", strerror(-rc));
            snap_report(r->fd, h.id, SNAP_EXIT_FORK_FAILED, -rc, text);
        }
        for (int i = 0; i < 3; i++)
            close(fds[i]);
    }
}

int runner_ready(struct runner *r)
{
    const char *snap = getenv("GUST_SNAPSHOT");
    if (snap && !strcmp(snap, "template")) {
        int rc = snap_serve(r);
        if (rc < 0)
            return rc;
    }
    return frame_send(r->fd, FRAME_READY, 0, NULL, 0);
}

/* ---- inputs and their state ------------------------------------------------------ */

static struct runner_live *live_find(struct runner *r, uint64_t id)
{
    for (size_t i = 0; i < r->live_hw; i++)
        if (r->live[i].used && r->live[i].id == id)
            return &r->live[i];
    return NULL;
}

static void live_release(struct runner_live *l)
{
    free(l->data);
    free(l->sbuf);
    memset(l, 0, sizeof *l);
}

/* The input is answered: the library forgets it. */
static void live_forget(struct runner *r, uint64_t id)
{
    struct runner_live *l = live_find(r, id);
    if (l)
        live_release(l);
}

/* A complete input: queued for runner_next. */
static int live_arrive(struct runner *r, uint64_t id, uint8_t *data, size_t len)
{
    struct runner_live *l = live_find(r, id), *free_slot = NULL;
    if (l) {
        /* The worker never reuses an id it has not seen answered: drop the stale state. */
        live_release(l);
        free_slot = l;
    }
    for (size_t i = 0; i < RUNNER_MAX_LIVE && !free_slot; i++)
        if (!r->live[i].used)
            free_slot = &r->live[i];
    if (free_slot && (size_t)(free_slot - r->live) >= r->live_hw)
        r->live_hw = (size_t)(free_slot - r->live) + 1;
    if (!free_slot) {
        free(data);
        static const char msg[] = "the runner has too many inputs in progress";
        return frame_send_error(r->fd, id, FRAME_ERR_USER, msg, sizeof msg - 1);
    }
    *free_slot = (struct runner_live){.id = id, .used = true, .queued = true, .seq = r->next_seq++,
                                      .data = data, .len = len};
    return 0;
}

/* More bytes of an input's stream; empty: its end. Bounded: the worker keeps within
 * FRAME_INPUT_WINDOW of what runner_stream_read acknowledged, and a worker that does
 * not fails the stream instead of growing it. */
static void live_stream_feed(struct runner_live *l, const uint8_t *body, size_t n)
{
    if (l->stream_end || l->stream_overflow)
        return;
    if (n == 0) {
        l->stream_end = true;
        return;
    }
    size_t held = l->slen - l->soff;
    if (held + n > FRAME_INPUT_WINDOW) {
        l->stream_overflow = true;
        free(l->sbuf);
        l->sbuf = NULL;
        l->soff = l->slen = l->scap = 0;
        return;
    }
    if (l->soff) {
        memmove(l->sbuf, l->sbuf + l->soff, held);
        l->soff = 0;
        l->slen = held;
    }
    if (l->slen + n > l->scap) {
        size_t cap = l->scap ? l->scap : FRAME_MAX_BODY;
        while (cap < l->slen + n)
            cap *= 2;
        l->sbuf = xrealloc(l->sbuf, cap);
        l->scap = cap;
    }
    memcpy(l->sbuf + l->slen, body, n);
    l->slen += n;
}

static uint64_t get_u64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Receives one frame and does what it says. Returns 0, or frame_recv's or a send's
 * -errno (-EPIPE: the channel closed). */
static int runner_pump(struct runner *r)
{
    struct frame_header h;
    int n = frame_recv(r->fd, r->rxbuf, &h);
    if (n < 0)
        return n;
    const uint8_t *body = r->rxbuf + FRAME_HEADER_SIZE;
    struct runner_live *l;
    switch (h.type) {
    case FRAME_INPUT: {
        uint8_t *data;
        size_t len;
        int rc = frame_asm_feed(&r->asm_, &h, body, &data, &len);
        if (rc == 1)
            return live_arrive(r, h.id, data, len);
        if (rc == -E2BIG) {
            static const char msg[] = "input too large for this runner";
            return frame_send_error(r->fd, h.id, FRAME_ERR_USER, msg, sizeof msg - 1);
        }
        return rc < 0 ? rc : 0;
    }
    case FRAME_CANCEL:
        frame_asm_drop(&r->asm_, FRAME_INPUT, h.id);
        l = live_find(r, h.id);
        if (l && l->queued) {
            /* Not taken yet: given up at once, so the worker need not wait for it. */
            live_release(l);
            static const char msg[] = "cancelled before it started";
            return frame_send_error(r->fd, h.id, FRAME_ERR_CANCELLED, msg, sizeof msg - 1);
        }
        if (l)
            l->cancelled = true;
        return 0;
    case FRAME_ITEM_ACK:
        l = live_find(r, h.id);
        if (l && h.body_len >= FRAME_ITEM_ACK_SIZE) {
            uint64_t taken = get_u64le(body);
            if (taken > l->item_acked)
                l->item_acked = taken;
        }
        return 0;
    case FRAME_INPUT_MORE:
        l = live_find(r, h.id);
        if (l)
            live_stream_feed(l, body, h.body_len);
        return 0;
    case FRAME_SHUTDOWN:
        r->shutdown = true;
        return 0;
    default:
        return 0;
    }
}

/* Takes every frame already waiting, without blocking: a generator that never waits
 * for acknowledgements still sees its cancellation. */
static int runner_drain(struct runner *r)
{
    for (;;) {
        struct pollfd p = {.fd = r->fd, .events = POLLIN};
        int n = poll(&p, 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return 0;
        int rc = runner_pump(r);
        if (rc < 0)
            return rc;
    }
}

int runner_next(struct runner *r, struct runner_input *in)
{
    /* What came while the program was busy first: a queued input cancelled since is
     * given up rather than served. */
    int rc = runner_drain(r);
    if (rc < 0)
        return rc;
    for (;;) {
        struct runner_live *first = NULL;
        for (size_t i = 0; i < r->live_hw; i++)
            if (r->live[i].used && r->live[i].queued && (!first || r->live[i].seq < first->seq))
                first = &r->live[i];
        if (first) {
            first->queued = false;
            in->id = first->id;
            in->data = first->data;
            in->len = first->len;
            first->data = NULL;
            first->len = 0;
            return 0;
        }
        if (r->shutdown)
            return -EPIPE;
        rc = runner_pump(r);
        if (rc < 0)
            return rc;
    }
}

int runner_reply(struct runner *r, uint64_t id, const void *data, size_t len)
{
    live_forget(r, id);
    return frame_send(r->fd, FRAME_OUTPUT, id, data, len);
}

int runner_fail(struct runner *r, uint64_t id, const char *msg)
{
    struct runner_live *l = live_find(r, id);
    enum frame_error_kind kind = l && l->cancelled ? FRAME_ERR_CANCELLED : FRAME_ERR_USER;
    live_forget(r, id);
    return frame_send_error(r->fd, id, kind, msg, msg ? strlen(msg) : 0);
}

/* The input a program answers or streams: taken by runner_next, not answered. */
static struct runner_live *live_taken(struct runner *r, uint64_t id)
{
    struct runner_live *l = live_find(r, id);
    return l && !l->queued ? l : NULL;
}

int runner_item(struct runner *r, uint64_t id, const void *data, size_t len)
{
    struct runner_live *l = live_taken(r, id);
    if (!l)
        return -ENOENT;
    int rc = runner_drain(r);
    while (rc == 0 && !l->cancelled && l->item_sent - l->item_acked >= FRAME_ITEM_WINDOW)
        rc = runner_pump(r);
    if (rc < 0)
        return rc;
    if (l->cancelled)
        return -ECANCELED;
    rc = frame_send(r->fd, FRAME_ITEM, id, data, len);
    if (rc == 0)
        l->item_sent += len;
    return rc;
}

int runner_end(struct runner *r, uint64_t id)
{
    return runner_reply(r, id, NULL, 0);
}

ssize_t runner_stream_read(struct runner *r, uint64_t id, void *buf, size_t cap)
{
    struct runner_live *l = live_taken(r, id);
    if (!l)
        return -ENOENT;
    int rc = runner_drain(r);
    while (rc == 0 && !l->cancelled && !l->stream_overflow && l->slen == l->soff && !l->stream_end)
        rc = runner_pump(r);
    if (rc < 0)
        return rc;
    if (l->cancelled)
        return -ECANCELED;
    if (l->stream_overflow)
        return -EPROTO;
    size_t n = l->slen - l->soff;
    if (n == 0)
        return 0; /* the end */
    if (n > cap)
        n = cap;
    memcpy(buf, l->sbuf + l->soff, n);
    l->soff += n;
    l->stream_taken += n;
    uint8_t ack[FRAME_INPUT_MORE_ACK_SIZE];
    for (size_t i = 0; i < sizeof ack; i++)
        ack[i] = (uint8_t)(l->stream_taken >> (8 * i));
    rc = frame_send(r->fd, FRAME_INPUT_MORE_ACK, id, ack, sizeof ack);
    return rc < 0 ? rc : (ssize_t)n;
}

int runner_web_head(struct runner *r, uint64_t id, int status, const struct web_header *headers, size_t n,
                    const void *body, size_t len, const char **why)
{
    const char *reason;
    AUTO_BUF struct buf b = {0};
    if (web_head_encode(&b, status, headers, n, body, len, &reason) < 0) {
        if (why)
            *why = reason;
        return -EINVAL;
    }
    return runner_item(r, id, b.data, b.len);
}

int runner_web_respond(struct runner *r, uint64_t id, int status, const struct web_header *headers, size_t n,
                       const void *body, size_t len, const char **why)
{
    int rc = runner_web_head(r, id, status, headers, n, body, len, why);
    return rc < 0 ? rc : runner_end(r, id);
}

void runner_input_free(struct runner_input *in)
{
    free(in->data);
    in->data = NULL;
    in->len = 0;
}

void runner_close(struct runner *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    free(r->rxbuf);
    r->rxbuf = NULL;
    frame_asm_free(&r->asm_);
    for (size_t i = 0; r->live && i < r->live_hw; i++)
        if (r->live[i].used)
            live_release(&r->live[i]);
    free(r->live);
    r->live = NULL;
}
