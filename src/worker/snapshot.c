/* Snapshots as fork templates (worker.h "Snapshots", docs/ARCHITECTURE.md).
 *
 * A template is a runner-mode container started with gust-init --template: its
 * runner is PID 1 of a PID namespace that belongs to the template's user namespace,
 * it keeps CONFINE_TEMPLATE_CAPS and the template seccomp profile, and after its
 * init (import, enter(snap=True) hooks) it sends READY and then serves FRAME_FORK.
 * A restore is one FRAME_FORK (proto/snap.h): the template spawns the new container's
 * PID 1 (gust-init snap_child) in a new PID namespace and forks itself, copy-on-write,
 * as that namespace's PID 2. This file drives the rest from the event loop, never
 * blocking: it puts both processes in the container's own cgroups as their hello
 * messages arrive (SO_PASSCRED names their pids), hands PID 1 the configuration
 * (hostname, disk, egress, seccomp program), and once PID 1 built the container's
 * root sends the runner FRAME_RESUME. From READY on the container is an ordinary
 * one to the rest of the worker; its exit status comes from the template (the
 * runner's parent) as FRAME_CHILD_EXIT. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "proto/snap.h"
#include "runtime/netlink.h"
#include "runtime/sysfilter.h"
#include "worker/gpu.h"
#include "worker/internal.h"

/* How long a forked container may take from FRAME_FORK to its root being ready. */
#define SNAP_SETUP_TIMEOUT_MS 30000
/* How long an exited forked container waits for its status from the template. */
#define SNAP_EXIT_WAIT_MS 300

struct worker_snapshot {
    struct list_node link;      /* in worker->snaps */
    struct worker *w;
    enum snapshot_state state;
    struct snapshot_callbacks cb;
    void *ud;
    struct ctr *tmpl;           /* NULL once the template is gone */
    char tmpl_id[64];
    struct list_node children;  /* forked containers alive (struct ctr.fork_link) */
    int nchildren;
    uint64_t next_fork_id;
    bool dropped;
};

static void snapshot_unlink_free(struct worker_snapshot *s)
{
    list_remove(&s->link);
    free(s);
}

/* A dropped snapshot goes once nothing needs it: its template stops when its last
 * child is gone (their PID namespaces descend from the template's), and the record
 * goes with the template. */
static void snapshot_maybe_release(struct worker_snapshot *s)
{
    if (!s->dropped || s->nchildren)
        return;
    if (s->tmpl)
        ctr_stop(s->tmpl, 1000);
    else
        snapshot_unlink_free(s);
}

/* ---- the template's events ------------------------------------------------------ */

static void tmpl_on_ready(struct ctr *c, void *ud)
{
    struct worker_snapshot *s = ud;
    s->state = SNAPSHOT_READY;
    log_info("worker", "snapshot %s ready after %.1f ms", s->tmpl_id, (double)(mono_ns() - c->start_ns) / 1e6);
    if (!s->dropped && s->cb.on_state)
        s->cb.on_state(s, s->ud, SNAPSHOT_READY, NULL);
}

static void tmpl_on_log(struct ctr *c, void *ud, int stream, uint64_t input_id, const char *line, size_t len)
{
    struct worker_snapshot *s = ud;
    if (!s->dropped && s->cb.on_log)
        s->cb.on_log(s, s->ud, stream, line, len);
}

static void tmpl_on_exit(struct ctr *c, void *ud, int kind, const char *msg)
{
    struct worker_snapshot *s = ud;
    s->tmpl = NULL;
    bool was_ready = s->state == SNAPSHOT_READY;
    s->state = SNAPSHOT_GONE;
    if (s->dropped) {
        snapshot_maybe_release(s);
        return;
    }
    char why[600];
    snprintf(why, sizeof why, "%s%s", was_ready ? "the snapshot template died: " : "", msg ? msg : "exited");
    log_warn("worker", "snapshot %s gone: %s", s->tmpl_id, why);
    if (s->cb.on_state)
        s->cb.on_state(s, s->ud, SNAPSHOT_GONE, why);
}

static const struct worker_callbacks tmpl_callbacks = {
    .on_ready = tmpl_on_ready,
    .on_log = tmpl_on_log,
    .on_exit = tmpl_on_exit,
};

static int fork_take(struct worker *w, const struct ctr_spec *spec, const struct snapshot_callbacks *cb, void *ud,
                     struct worker_snapshot **out, struct gerr *err)
{
    if (spec->mode != CTR_MODE_RUNNER)
        return gerr_set(err, EINVAL, "snapshot %s: only long-lived runners can be snapshotted", spec->id);
    struct worker_snapshot *s = xcalloc(1, sizeof *s);
    list_init(&s->link);
    list_init(&s->children);
    struct ctr_spec ts = *spec;
    ts.ngpus = 0;
    struct ctr *c;
    int r = ctr_start(w, &ts, s, true, &c, err);
    if (r < 0) {
        free(s);
        return gerr_prefix(err, "snapshot template");
    }
    c->cb = &tmpl_callbacks;
    c->template_of = s;
    s->w = w;
    s->state = SNAPSHOT_TAKING;
    s->cb = *cb;
    s->ud = ud;
    s->tmpl = c;
    snprintf(s->tmpl_id, sizeof s->tmpl_id, "%s", spec->id);
    list_push_front(&w->snaps, &s->link);
    *out = s;
    return 0;
}

/* ---- forked containers ---------------------------------------------------------- */

static void fork_timer_cancel(struct ctr *c)
{
    if (c->fork_timer) {
        ev_timer_cancel(c->w->loop, c->fork_timer);
        c->fork_timer = 0;
    }
}

static void sync_close(struct ctr *c)
{
    if (c->sync_watched) {
        ev_io_del(c->w->loop, c->sync);
        c->sync_watched = false;
    }
    if (c->sync >= 0) {
        close(c->sync);
        c->sync = -1;
    }
}

/* The fork failed before the container was up: kill what exists; the pidfd (or, if
 * there is no PID 1 yet, this call) finishes it as a start failure. */
static void fork_fail(struct ctr *c, const char *msg)
{
    if (c->exited)
        return;
    if (!c->last_err[0])
        snprintf(c->last_err, sizeof c->last_err, "%s", msg);
    log_warn("worker", "%s: %s", c->id, msg);
    sync_close(c);
    fork_timer_cancel(c);
    if (c->sb.pidfd >= 0) {
        sandbox_signal(&c->sb, SIGKILL);
        return;
    }
    c->sb.reaped = true;
    ctr_finish(c);
}

static void on_fork_timeout(struct ev_loop *loop, void *data)
{
    struct ctr *c = data;
    c->fork_timer = 0;
    if (c->exit_wait) {
        ctr_finish(c);
        return;
    }
    fork_fail(c, "the forked container was not set up in time");
}

static int send_go(struct ctr *c)
{
    uint32_t nfilter;
    memcpy(&nfilter, c->resume, sizeof nfilter);
    size_t flen = (size_t)nfilter * sizeof(struct sock_filter);
    AUTO_FREE uint8_t *msg = xmalloc(sizeof(struct snap_go) + flen);
    struct snap_go go = {.tag = SNAP_MSG_GO, .disk_mib = c->fork_disk_mib, .filter_len = nfilter};
    snprintf(go.hostname, sizeof go.hostname, "%s", c->id);
    if (c->egress_slot >= 0) {
        go.egress_addr = c->fork_egress.ctr_addr;
        go.egress_gw = c->fork_egress.host_addr;
        go.egress_prefix = c->fork_egress.prefix;
    }
    memcpy(msg, &go, sizeof go);
    memcpy(msg + sizeof go, c->resume + sizeof nfilter, flen);
    if (send(c->sync, msg, sizeof go + flen, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        return -errno;
    c->fork_go_sent = true;
    return 0;
}

/* Both processes are in the container's cgroups and its root is built. */
static void resume_runner(struct ctr *c)
{
    sync_close(c);
    fork_timer_cancel(c);
    if (ctr_send_frame(c, FRAME_RESUME, 0, c->resume, c->resume_len) < 0)
        fork_fail(c, "cannot resume the forked runner");
    free(c->resume);
    c->resume = NULL;
}

static void handle_hello(struct ctr *c, uint8_t tag, pid_t pid)
{
    struct gerr err;
    if (pid <= 0) {
        fork_fail(c, "a forked process sent no credentials");
        return;
    }
    if (tag == SNAP_MSG_ATTACH && !c->fork_pid1_seen) {
        if (sandbox_forked_attach(&c->sb, pid, true, &err) < 0 || ctr_watch(c, &err) < 0) {
            fork_fail(c, err.msg);
            return;
        }
        c->fork_pid1_seen = true;
        if (c->egress_slot >= 0) {
            if (netlink_veth_create(c->fork_egress.host_ifname, c->fork_egress.host_addr, c->fork_egress.prefix, pid,
                                    &err) < 0) {
                fork_fail(c, err.msg);
                return;
            }
            snprintf(c->sb.egress_ifname, sizeof c->sb.egress_ifname, "%s", c->fork_egress.host_ifname);
        }
    } else if (tag == SNAP_MSG_RUNNER && !c->fork_runner_seen) {
        if (sandbox_forked_attach(&c->sb, pid, false, &err) < 0) {
            fork_fail(c, err.msg);
            return;
        }
        c->fork_runner_seen = true;
    } else {
        fork_fail(c, "unexpected hello on the sync socket");
        return;
    }
    log_debug("worker", "%s: %s hello after %.2f ms", c->id, tag == SNAP_MSG_ATTACH ? "PID 1" : "runner",
              (double)(mono_ns() - c->start_ns) / 1e6);
    /* PID 1 builds the root while the template is still copying itself into the
     * runner; the runner is resumed once both are done. */
    if (c->fork_pid1_seen && !c->fork_go_sent) {
        int r = send_go(c);
        if (r < 0)
            fork_fail(c, "cannot send the configuration to the forked container's PID 1");
    }
    if (c->fork_runner_seen && c->fork_root_done)
        resume_runner(c);
}

static void handle_reply(struct ctr *c, const struct snap_reply *rep, bool failed)
{
    if (failed) {
        char m[sizeof rep->msg + 64];
        snprintf(m, sizeof m, "forked container setup: %s", rep->msg);
        fork_fail(c, m);
        return;
    }
    if (rep->start_ns >= c->start_ns) {
        c->sb.timing.clone_ns = rep->start_ns - c->start_ns;
        c->sb.timing.mounts_ns = rep->network_mounts_ns - rep->start_ns;
        c->sb.timing.security_ns = rep->security_ns - rep->network_mounts_ns;
    }
    c->sb.ready_ns = mono_ns();
    log_debug("worker", "%s: root set up after %.2f ms (mounts %.2f ms)", c->id,
              (double)(c->sb.ready_ns - c->start_ns) / 1e6, (double)c->sb.timing.mounts_ns / 1e6);
    c->fork_root_done = true;
    if (c->fork_runner_seen)
        resume_runner(c);
}

static void on_sync(struct ev_loop *loop, int fd, uint32_t events, void *data)
{
    struct ctr *c = data;
    while (c->sync >= 0) {
        union {
            struct snap_reply rep;
            uint8_t tag;
        } m;
        union {
            char buf[CMSG_SPACE(sizeof(struct ucred))];
            struct cmsghdr align;
        } ctl;
        struct iovec iov = {.iov_base = &m, .iov_len = sizeof m};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
        ssize_t n = recvmsg(c->sync, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            fork_fail(c, "the forked container's PID 1 exited during setup");
            return;
        }
        pid_t pid = 0;
        for (struct cmsghdr *h = CMSG_FIRSTHDR(&msg); h; h = CMSG_NXTHDR(&msg, h))
            if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_CREDENTIALS) {
                struct ucred cr;
                memcpy(&cr, CMSG_DATA(h), sizeof cr);
                pid = cr.pid;
            }
        struct snap_reply rep;
        switch (snap_parse_sync(&m, (size_t)n, &rep)) {
        case SNAP_SYNC_PID1:
            handle_hello(c, SNAP_MSG_ATTACH, pid);
            break;
        case SNAP_SYNC_RUNNER:
            handle_hello(c, SNAP_MSG_RUNNER, pid);
            break;
        case SNAP_SYNC_DONE:
        case SNAP_SYNC_FAILED:
            handle_reply(c, &rep, rep.tag == SNAP_MSG_FAILED);
            break;
        default:
            fork_fail(c, "malformed message on the sync socket");
        }
    }
}

/* FRAME_FORK with the three fds, sent now or not at all. */
static int send_fork(int chan, uint64_t fork_id, const int fds[3])
{
    uint8_t hdr[FRAME_HEADER_SIZE];
    struct frame_header h = {.type = FRAME_FORK, .id = fork_id};
    frame_header_encode(&h, hdr);
    union {
        char buf[CMSG_SPACE(3 * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = {.iov_base = hdr, .iov_len = sizeof hdr};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(3 * sizeof(int));
    memcpy(CMSG_DATA(cm), fds, 3 * sizeof(int));
    while (sendmsg(chan, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    return 0;
}

/* RESUME body: u32 filter length, the program, then K=V\0 entries. */
static void build_resume(const struct sock_fprog *prog, char *const *env, int nenv, uint8_t **out, size_t *len)
{
    size_t flen = (size_t)prog->len * sizeof(struct sock_filter), n = sizeof(uint32_t) + flen;
    for (int i = 0; i < nenv; i++)
        n += strlen(env[i]) + 1;
    uint8_t *b = xmalloc(n);
    uint32_t nf = prog->len;
    memcpy(b, &nf, sizeof nf);
    memcpy(b + sizeof nf, prog->filter, flen);
    size_t off = sizeof nf + flen;
    for (int i = 0; i < nenv; i++) {
        size_t k = strlen(env[i]) + 1;
        memcpy(b + off, env[i], k);
        off += k;
    }
    *out = b;
    *len = n;
}

static int fork_restore(struct worker_snapshot *s, const struct ctr_spec *spec, void *ud, struct ctr **out,
                        struct gerr *err)
{
    struct worker *w = s->w;
    struct ctr *t = s->tmpl;
    if (s->state != SNAPSHOT_READY || !t || t->exited || t->chan < 0 || s->dropped)
        return gerr_set(err, EAGAIN, "snapshot %s is not ready", s->tmpl_id);
    AUTO_FREE struct gpu_mounts *gm = ctr_gpu_mounts(w, spec, err);
    if (!gm)
        return -err->code;
    if (gm->ndevices || gm->nlibs)
        return gerr_set(err, ENOTSUP, "container %s needs GPU device nodes, which a fork template does not pass on",
                        spec->id);
    AUTO_SYSFILTER struct sock_fprog own_filter = {0};
    const struct sock_fprog *prog;
    int r = ctr_seccomp(w, spec, false, &own_filter, &prog, err);
    if (r < 0)
        return r;
    char idvar[96], snapvar[96];
    snprintf(idvar, sizeof idvar, "GUST_CONTAINER_ID=%s", spec->id);
    snprintf(snapvar, sizeof snapvar, "GUST_SNAPSHOT_ID=%s", s->tmpl_id);
    char *env[4 + GPU_ENV_MAX];
    int nenv = 0;
    env[nenv++] = idvar;
    env[nenv++] = snapvar;
    /* The template has the API socket bound (ctr_start); the token is this one's own. */
    AUTO_FREE char *tokvar = NULL;
    if (w->cfg.api_socket && spec->api_token) {
        size_t tl = strlen(spec->api_token) + sizeof "GUST_TOKEN=";
        tokvar = xmalloc(tl);
        snprintf(tokvar, tl, "GUST_TOKEN=%s", spec->api_token);
        env[nenv++] = "GUST_ADDR=unix:" WORKER_CTR_API_SOCKET;
        env[nenv++] = tokvar;
    }
    for (int i = 0; i < gm->nenv && nenv < (int)ARRAY_LEN(env); i++)
        env[nenv++] = gm->env[i];

    struct ctr *c = ctr_alloc(w, spec, ud);
    c->forked = true;
    /* The template's filters, then the container's own on top. */
    c->check.min_filters = t->check.min_filters + 1;
    c->fork_disk_mib = spec->disk_mib;
    c->fork_host_uid = ctr_host_uid(t);
    c->forked_from = s;
    c->fork_id = ++s->next_fork_id;
    list_push_front(&s->children, &c->fork_link);
    s->nchildren++;
    struct sandbox_config sc = {
        .id = spec->id,
        .cgroup_parent = w->cgroup_parent,
        .memory_mib = spec->memory_mib,
        .cpu_millicores = spec->cpu_millicores,
        .cpu_limit_millicores = spec->cpu_limit_millicores,
        .pids_max = spec->pids_max,
    };
    int chan[2] = {-1, -1}, sync[2] = {-1, -1};
    build_resume(prog, env, nenv, &c->resume, &c->resume_len);
    r = sandbox_forked_prepare(&sc, &c->sb, err);
    if (r < 0)
        goto fail;
    if (spec->network == CTR_NET_EGRESS) {
        char what[96];
        snprintf(what, sizeof what, "container %s", spec->id);
        r = worker_egress_take(w, what, &c->fork_egress, &c->egress_slot, err);
        if (r < 0)
            goto fail;
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, chan) < 0 ||
        socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sync) < 0) {
        r = gerr_sys(err, errno, "container %s: socketpair", spec->id);
        goto fail;
    }
    worker_set_sock_buf(chan[0]);
    worker_set_sock_buf(chan[1]);
    int one = 1;
    if (setsockopt(sync[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof one) < 0 || fd_set_nonblock(chan[0], true) < 0 ||
        fd_set_nonblock(sync[0], true) < 0) {
        r = gerr_sys(err, errno, "container %s: channel", spec->id);
        goto fail;
    }
    int pass[3] = {chan[1], sync[1], w->init_fd};
    r = send_fork(t->chan, c->fork_id, pass);
    if (r < 0) {
        gerr_sys(err, -r, "container %s: ask the snapshot template to fork", spec->id);
        goto fail;
    }
    close(chan[1]);
    close(sync[1]);
    c->chan = chan[0];
    c->sync = sync[0];
    chan[0] = chan[1] = sync[0] = sync[1] = -1;
    r = ev_io_add(w->loop, c->sync, EV_READ, on_sync, c);
    if (r < 0) {
        gerr_sys(err, -r, "container %s: watch on the event loop", spec->id);
        goto fail;
    }
    c->sync_watched = true;
    r = ctr_watch(c, err);
    if (r < 0)
        goto fail;
    c->fork_timer = ev_timer_add(w->loop, SNAP_SETUP_TIMEOUT_MS, on_fork_timeout, c);
    ctr_link(c);
    *out = c;
    return 0;
fail:
    for (int i = 0; i < 2; i++) {
        if (chan[i] >= 0)
            close(chan[i]);
        if (sync[i] >= 0)
            close(sync[i]);
    }
    sandbox_destroy(&c->sb, NULL);
    ctr_release(c);
    return r < 0 ? r : -EIO;
}

static void fork_drop(struct worker_snapshot *s)
{
    if (!s)
        return;
    s->dropped = true;
    memset(&s->cb, 0, sizeof s->cb);
    snapshot_maybe_release(s);
}

const struct snapshot_impl snapshot_fork_impl = {
    .name = "fork",
    .take = fork_take,
    .restore = fork_restore,
    .drop = fork_drop,
};

/* ---- hooks for worker.c --------------------------------------------------------- */

void snapshot_on_child_exit(struct ctr *tmpl, uint64_t fork_id, const uint8_t *body, size_t len)
{
    struct worker_snapshot *s = tmpl->template_of;
    struct ctr *c = NULL;
    list_for_each(k, &s->children, struct ctr, fork_link)
        if (k->fork_id == fork_id)
            c = k;
    struct frame_exit_body xb;
    char text[128];
    if (!c || snap_parse_child_exit(body, len, &xb, text, sizeof text) < 0)
        return;
    if (xb.kind == SNAP_EXIT_FORK_FAILED) {
        char m[192];
        snprintf(m, sizeof m, "the snapshot template could not fork: %s", text);
        fork_fail(c, m);
        return;
    }
    c->exitb = xb;
    c->have_exit = true;
    if (c->exit_wait) {
        fork_timer_cancel(c);
        ctr_finish(c);
    }
}

bool snapshot_forked_exit_pending(struct ctr *c)
{
    struct worker_snapshot *s = c->forked_from;
    if (c->have_exit || c->exit_wait || !s || !s->tmpl)
        return false;
    c->exit_wait = true;
    if (c->pidfd_watched) {
        ev_io_del(c->w->loop, c->sb.pidfd);
        c->pidfd_watched = false;
    }
    fork_timer_cancel(c);
    c->fork_timer = ev_timer_add(c->w->loop, SNAP_EXIT_WAIT_MS, on_fork_timeout, c);
    return c->fork_timer != 0;
}

void snapshot_forked_release(struct ctr *c)
{
    sync_close(c);
    fork_timer_cancel(c);
    free(c->resume);
    c->resume = NULL;
    struct worker_snapshot *s = c->forked_from;
    if (!s)
        return;
    if (!list_unlinked(&c->fork_link)) {
        list_remove(&c->fork_link);
        s->nchildren--;
    }
    c->forked_from = NULL;
    snapshot_maybe_release(s);
}

void snapshot_free_all(struct worker *w)
{
    list_for_each_safe(s, &w->snaps, struct worker_snapshot, link) {
        list_remove(&s->link);
        list_for_each_safe(c, &s->children, struct ctr, fork_link) {
            list_remove(&c->fork_link);
            c->forked_from = NULL;
        }
        if (s->tmpl)
            s->tmpl->template_of = NULL;
        free(s);
    }
}

/* ---- the worker's interface ----------------------------------------------------- */

int worker_snapshot_take(struct worker *w, const struct ctr_spec *spec, const struct snapshot_callbacks *cb,
                         void *ud, struct worker_snapshot **out, struct gerr *err)
{
    return w->snap_impl->take(w, spec, cb, ud, out, err);
}

int worker_snapshot_restore(struct worker_snapshot *s, const struct ctr_spec *spec, void *ud, struct ctr **out,
                            struct gerr *err)
{
    return s->w->snap_impl->restore(s, spec, ud, out, err);
}

void worker_snapshot_drop(struct worker_snapshot *s)
{
    if (s)
        s->w->snap_impl->drop(s);
}

enum snapshot_state worker_snapshot_state(const struct worker_snapshot *s)
{
    return s->state;
}

struct ctr *worker_snapshot_ctr(const struct worker_snapshot *s)
{
    return s->tmpl;
}

int worker_snapshot_children(const struct worker_snapshot *s)
{
    return s->nchildren;
}

const char *ctr_snapshot_of(const struct ctr *c)
{
    return c->forked && c->forked_from ? c->forked_from->tmpl_id : NULL;
}
