/* Worker tests with a real event loop and real sandboxes (needs root and cgroups).
 * gust-init and the echo runner are found as in test_init.c ($GUST_INIT, $GUST_ECHO,
 * build-asan/, build/, else compiled here); the rootfs is a busybox image built in a
 * temp dir with the echo runner at /usr/local/bin/gust-echo. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/util.h"
#include "evloop/evloop.h"
#include "image/image.h"
#include "worker/worker.h"
#include "unit.h"

static char init_bin[4096], echo_bin[4096];
static char tmpdir[256], rootfs[320], state_root[320], cgparent[64];
static struct ev_loop *loop;
static struct worker *wk;
static bool timed_out;

#define MAX_EVENTS 64
struct rec {
    bool ready, exited;
    int exit_kind;
    char exit_msg[600];
    int nout, nerr;
    uint64_t out_id[MAX_EVENTS], err_id[MAX_EVENTS];
    struct buf out[MAX_EVENTS];
    enum ctr_fail err_kind[MAX_EVENTS];
    char err_msg[MAX_EVENTS][600];
    struct buf logs; /* "stream:line\n" */
};

static void rec_free(struct rec *r)
{
    for (int i = 0; i < MAX_EVENTS; i++)
        buf_free(&r->out[i]);
    buf_free(&r->logs);
}

static void cb_ready(struct ctr *c, void *ud)
{
    ((struct rec *)ud)->ready = true;
    ev_stop(loop);
}

static void cb_output(struct ctr *c, void *ud, uint64_t id, const void *data, size_t len)
{
    struct rec *r = ud;
    if (r->nout < MAX_EVENTS) {
        r->out_id[r->nout] = id;
        buf_append(&r->out[r->nout], data, len);
        r->nout++;
    }
    ev_stop(loop);
}

static void cb_error(struct ctr *c, void *ud, uint64_t id, enum ctr_fail kind, const char *msg)
{
    struct rec *r = ud;
    if (r->nerr < MAX_EVENTS) {
        r->err_id[r->nerr] = id;
        r->err_kind[r->nerr] = kind;
        snprintf(r->err_msg[r->nerr], sizeof r->err_msg[0], "%s", msg);
        r->nerr++;
    }
    ev_stop(loop);
}

static void cb_log(struct ctr *c, void *ud, int stream, uint64_t input_id, const char *line, size_t len)
{
    struct rec *r = ud;
    if (input_id)
        buf_printf(&r->logs, "%d@%llu:%.*s\n", stream, (unsigned long long)input_id, (int)len, line);
    else
        buf_printf(&r->logs, "%d:%.*s\n", stream, (int)len, line);
}

static void cb_exit(struct ctr *c, void *ud, int kind, const char *msg)
{
    struct rec *r = ud;
    r->exited = true;
    r->exit_kind = kind;
    snprintf(r->exit_msg, sizeof r->exit_msg, "%s", msg ? msg : "");
    ev_stop(loop);
}

static const struct worker_callbacks cbs = {cb_ready, cb_output, cb_error, cb_log, cb_exit, NULL, NULL};

static void on_timeout(struct ev_loop *l, void *data)
{
    timed_out = true;
    ev_stop(l);
}

/* Runs the loop until *flag turns true or timeout_ms passes; returns *flag. */
static bool run_until_flag(const bool *flag, uint64_t timeout_ms)
{
    timed_out = false;
    uint64_t t = ev_timer_add(loop, timeout_ms, on_timeout, NULL);
    while (!*flag && !timed_out)
        ev_run(loop);
    ev_timer_cancel(loop, t);
    return *flag;
}

static bool run_until_count(const int *count, int want, uint64_t timeout_ms)
{
    timed_out = false;
    uint64_t t = ev_timer_add(loop, timeout_ms, on_timeout, NULL);
    while (*count < want && !timed_out)
        ev_run(loop);
    ev_timer_cancel(loop, t);
    return *count >= want;
}

static struct ctr *start(struct rec *r, enum ctr_mode mode, uint32_t mem, char *const *cmd)
{
    static int seq;
    char id[64];
    snprintf(id, sizeof id, "ct-wtest-%d-%d", (int)getpid(), ++seq);
    char *env[] = {"GREETING=hi", NULL};
    struct ctr_spec s = {
        .id = id, .rootfs = rootfs, .command = cmd, .env = env, .workdir = "/", .mode = mode,
        .max_inputs = 2, .cpu_millicores = 500, .memory_mib = mem, .disk_mib = 64,
    };
    struct ctr *c = NULL;
    struct gerr err = {0};
    int rc = worker_start(wk, &s, r, &c, &err);
    if (rc < 0)
        fprintf(stderr, "  worker_start: %s\n", err.msg);
    CHECK_EQ_INT(rc, 0);
    CHECK_STR(ctr_id(c), id);
    CHECK(ctr_pid(c) > 0);
    CHECK(ctr_userdata(c) == r);
    return c;
}

static void send_input(struct ctr *c, uint64_t id, const void *data, size_t len)
{
    struct gerr err = {0};
    int rc = ctr_send_input(c, id, "fc-unit-test", data, len, &err);
    if (rc < 0)
        fprintf(stderr, "  ctr_send_input: %s\n", err.msg);
    CHECK_EQ_INT(rc, 0);
}

UNIT_TEST(test_setup)
{
    CHECK(init_bin[0] && access(init_bin, X_OK) == 0);
    CHECK(echo_bin[0] && access(echo_bin, X_OK) == 0);
    CHECK(loop && wk);
}

UNIT_TEST(test_per_input_roundtrip)
{
    struct rec r = {0};
    char *cmd[] = {"/bin/sh", "-c", "echo \"log $GREETING $GUST_CONTAINER_ID\" >&2; cat", NULL};
    struct ctr *c = start(&r, CTR_MODE_PER_INPUT, 64, cmd);
    CHECK(run_until_flag(&r.ready, 10000));
    CHECK(ctr_start_ns(c) > 0);
    uint64_t mem, cpu;
    CHECK_EQ_INT(ctr_usage(c, &mem, &cpu), 0);
    send_input(c, 1, "hello", 5);
    CHECK(run_until_count(&r.nout, 1, 10000));
    CHECK(r.out_id[0] == 1);
    CHECK_STR(r.out[0].data, "hello");
    CHECK(strstr(r.logs.data, "2:log hi ct-wtest-"));
    ctr_stop(c, 2000);
    CHECK(run_until_flag(&r.exited, 10000));
    CHECK_EQ_INT(r.exit_kind, 0);
    rec_free(&r);
}

UNIT_TEST(test_exit_status_and_cancel)
{
    struct rec r = {0};
    char *cmd[] = {"/bin/sh", "-c", "read x; case $x in sleep) sleep 10;; esac; echo oops-stderr-tail >&2; exit 3", NULL};
    struct ctr *c = start(&r, CTR_MODE_PER_INPUT, 64, cmd);
    CHECK(run_until_flag(&r.ready, 10000));
    send_input(c, 5, "x\n", 2);
    CHECK(run_until_count(&r.nerr, 1, 10000));
    CHECK(r.err_id[0] == 5);
    CHECK_EQ_INT(r.err_kind[0], CTR_FAIL_EXIT_STATUS);
    CHECK_STR(r.err_msg[0], "exit status 3: oops-stderr-tail");
    send_input(c, 6, "sleep\n", 6);
    usleep(100000);
    CHECK_EQ_INT(ctr_cancel_input(c, 6), 0);
    CHECK(run_until_count(&r.nerr, 2, 5000));
    CHECK(r.err_id[1] == 6);
    CHECK_EQ_INT(r.err_kind[1], CTR_FAIL_CANCELLED);
    ctr_kill(c);
    CHECK(run_until_flag(&r.exited, 10000));
    CHECK_EQ_INT(r.exit_kind, 0);
    rec_free(&r);
}

UNIT_TEST(test_per_input_oom)
{
    struct rec r = {0};
    char *cmd[] = {"/bin/sh", "-c",
                   "x=$(dd if=/dev/zero bs=1M count=200 2>/dev/null | tr '\\0' a); echo ${#x}", NULL};
    struct ctr *c = start(&r, CTR_MODE_PER_INPUT, 32, cmd);
    CHECK(run_until_flag(&r.ready, 10000));
    send_input(c, 9, "", 0);
    CHECK(run_until_count(&r.nerr, 1, 30000));
    CHECK_EQ_INT(r.nerr, 1);
    if (r.err_kind[0] != CTR_FAIL_OOM)
        fprintf(stderr, "  got kind %d: %s\n", r.err_kind[0], r.err_msg[0]);
    CHECK_EQ_INT(r.err_kind[0], CTR_FAIL_OOM);
    CHECK_STR(r.err_msg[0], "out of memory: the function exceeded its memory limit of 32 MiB");
    ctr_stop(c, 2000);
    CHECK(run_until_flag(&r.exited, 10000));
    CHECK_EQ_INT(r.exit_kind, 0);
    rec_free(&r);
}

/* Starts the echo runner example with mem MiB and waits until it is ready. */
static struct ctr *start_echo_runner(struct rec *r, uint32_t mem)
{
    static char *cmd[] = {"/usr/local/bin/gust-echo", NULL};
    struct ctr *c = start(r, CTR_MODE_RUNNER, mem, cmd);
    CHECK(run_until_flag(&r->ready, 10000));
    return c;
}

UNIT_TEST(test_runner_echo_and_crash)
{
    struct rec r = {0};
    struct ctr *c = start_echo_runner(&r, 64);
    send_input(c, 1, "abc", 3);
    /* 3 MiB: more than the socket holds, so it is queued and sent on EV_WRITE */
    size_t big = 3 << 20;
    char *in = malloc(big);
    CHECK(in);
    for (size_t i = 0; i < big; i++)
        in[i] = (char)('a' + i % 26);
    send_input(c, 2, in, big);
    send_input(c, 3, "fail", 4);
    CHECK(run_until_count(&r.nout, 2, 20000));
    CHECK(run_until_count(&r.nerr, 1, 5000));
    CHECK(r.out_id[0] == 1 && r.out_id[1] == 2);
    CHECK_STR(r.out[0].data, "abc");
    CHECK_EQ_INT(r.out[1].len, big);
    CHECK(!memcmp(r.out[1].data, in, big));
    free(in);
    CHECK(r.err_id[0] == 3);
    CHECK_EQ_INT(r.err_kind[0], CTR_FAIL_USER);
    /* warm round trips through the real loop */
    uint64_t t0 = mono_ns();
    for (int i = 0; i < 200; i++) {
        send_input(c, 100 + (uint64_t)i, "ping", 4);
        int want = r.nout + 1;
        if (want > MAX_EVENTS - 1) {
            for (int k = 0; k < MAX_EVENTS; k++)
                buf_reset(&r.out[k]);
            r.nout = 2;
            want = 3;
        }
        CHECK(run_until_count(&r.nout, want, 5000));
    }
    fprintf(stderr, "  worker<->runner round trip: %.1f us\n", (double)(mono_ns() - t0) / 200 / 1000);
    send_input(c, 4, "crash", 5);
    CHECK(run_until_flag(&r.exited, 10000));
    CHECK_EQ_INT(r.exit_kind, CTR_FAIL_CRASHED);
    CHECK(strstr(r.exit_msg, "killed by signal 6"));
    rec_free(&r);
}

UNIT_TEST(test_runner_oom)
{
    struct rec r = {0};
    struct ctr *c = start_echo_runner(&r, 32);
    send_input(c, 1, "alloc:200", 9);
    if (!run_until_flag(&r.exited, 30000)) {
        char ps[256];
        snprintf(ps, sizeof ps, "ps -o pid,stat,rss,args --ppid %d; ps -o pid,stat,rss,args -p %d", ctr_pid(c), ctr_pid(c));
        if (system(ps) != 0)
            fprintf(stderr, "  ps failed\n");
        fprintf(stderr, "  outputs %d errors %d logs: %s\n", r.nout, r.nerr, r.logs.data ? r.logs.data : "");
    }
    CHECK(r.exited);
    CHECK_EQ_INT(r.exit_kind, CTR_FAIL_OOM);
    CHECK_STR(r.exit_msg, "out of memory: the function exceeded its memory limit of 32 MiB");
    rec_free(&r);
}

UNIT_TEST(test_runner_start_failure)
{
    struct rec r = {0};
    char *cmd[] = {"/no/such/runner", NULL};
    start(&r, CTR_MODE_RUNNER, 64, cmd);
    CHECK(run_until_flag(&r.exited, 10000));
    CHECK(!r.ready);
    CHECK_EQ_INT(r.exit_kind, CTR_FAIL_START);
    CHECK(strstr(r.exit_msg, "exited with status 127"));
    CHECK(strstr(r.exit_msg, "cannot run /no/such/runner"));
    rec_free(&r);
}

UNIT_TEST(test_worker_free_kills)
{
    /* a second worker with a live container: worker_free must kill and clean up */
    struct worker_config cfg = {.state_root = state_root, .init_path = init_bin, .cgroup_parent = cgparent};
    struct worker *w2;
    struct gerr err;
    CHECK_EQ_INT(worker_new(loop, &cfg, &cbs, &w2, &err), 0);
    struct rec r = {0};
    char *cmd[] = {"/bin/sleep", "100", NULL};
    struct ctr_spec s = {.id = "ct-wtest-free", .rootfs = rootfs, .command = cmd, .mode = CTR_MODE_RUNNER,
                         .max_inputs = 1, .memory_mib = 64};
    struct ctr *c;
    int rc = worker_start(w2, &s, &r, &c, &err);
    if (rc < 0)
        fprintf(stderr, "  %s\n", err.msg);
    CHECK_EQ_INT(rc, 0);
    worker_free(w2);
    CHECK(!r.exited);
    char path[600];
    snprintf(path, sizeof path, "%s/ct-wtest-free", state_root);
    CHECK(access(path, F_OK) < 0);
    rec_free(&r);
}

/* F_OFD_SETLK of [start, start+len) on a fresh open of WORKER_USERNS_LOCK: 0 or -errno.
 * The open is closed again, dropping the lock if taken. */
static int try_range_lock(off_t start, off_t len, int *keep_fd)
{
    int fd = open(WORKER_USERNS_LOCK, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    int r = fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
    if (r == 0 && keep_fd)
        *keep_fd = fd;
    else
        close(fd);
    return r;
}

UNIT_TEST(test_userns_ranges_locked_per_host)
{
    /* OFD locks belong to the open file description: two opens in one process conflict
     * (checked on byte 0, which is no uid range: bases are >= 65536). */
    int held = -1;
    CHECK_EQ_INT(try_range_lock(0, 1, &held), 0);
    CHECK_EQ_INT(try_range_lock(0, 1, NULL), -EAGAIN);
    close(held);
    CHECK_EQ_INT(try_range_lock(0, 1, NULL), 0);

    /* Two workers with the same (default) userns_base in one process, as two daemons on
     * one host: their containers and build lanes never share a host uid range. */
    struct rec r1 = {0}, r2 = {0};
    char *cmd[] = {"/bin/sleep", "100", NULL};
    struct ctr *c1 = start(&r1, CTR_MODE_RUNNER, 64, cmd);
    uint32_t u1 = ctr_host_uid(c1);
    CHECK(u1 >= 1000000);
    struct worker_config cfg = {.state_root = state_root, .init_path = init_bin, .cgroup_parent = cgparent};
    struct worker *w2;
    struct gerr err;
    CHECK_EQ_INT(worker_new(loop, &cfg, &cbs, &w2, &err), 0);
    CHECK_EQ_INT(worker_capacity(w2)->userns_base, worker_capacity(wk)->userns_base);
    struct ctr_spec s = {.id = "ct-wtest-userns2", .rootfs = rootfs, .command = cmd, .mode = CTR_MODE_RUNNER,
                         .max_inputs = 1, .memory_mib = 64};
    struct ctr *c2;
    int rc = worker_start(w2, &s, &r2, &c2, &err);
    if (rc < 0)
        fprintf(stderr, "  %s\n", err.msg);
    CHECK_EQ_INT(rc, 0);
    uint32_t u2 = ctr_host_uid(c2);
    CHECK(u2 >= 1000000 && u2 != u1);
    CHECK((u2 - 1000000) % 65536 == 0);
    struct worker_build_lane lane;
    CHECK_EQ_INT(worker_build_lane_reserve(w2, &lane, &err), 0);
    CHECK(lane.userns.host_uid != u1 && lane.userns.host_uid != u2 && lane.userns.host_uid >= 1000000);
    /* Each range is locked host-wide while its worker lives, even after its container
     * is gone (the worker keeps the namespace for its next container). */
    CHECK_EQ_INT(try_range_lock(u1, 65536, NULL), -EAGAIN);
    CHECK_EQ_INT(try_range_lock(u2, 65536, NULL), -EAGAIN);
    CHECK_EQ_INT(try_range_lock(lane.userns.host_uid + 65535, 1, NULL), -EAGAIN);
    ctr_kill(c1);
    CHECK(run_until_flag(&r1.exited, 10000));
    CHECK_EQ_INT(try_range_lock(u1, 65536, NULL), -EAGAIN);
    /* wk's next container reuses its own range, not one w2 holds. */
    struct rec r3 = {0};
    struct ctr *c3 = start(&r3, CTR_MODE_RUNNER, 64, cmd);
    CHECK(ctr_host_uid(c3) != u2 && ctr_host_uid(c3) != lane.userns.host_uid);
    ctr_kill(c3);
    CHECK(run_until_flag(&r3.exited, 10000));
    /* worker_free drops w2's locks. */
    worker_free(w2);
    CHECK_EQ_INT(try_range_lock(u2, 65536, NULL), 0);
    CHECK_EQ_INT(try_range_lock(u1, 65536, NULL), -EAGAIN);
    rec_free(&r1);
    rec_free(&r2);
    rec_free(&r3);
}

/* The thread-pool size of a container: limit, else request, in whole cores (at least
 * 1), bounded by the host's CPUs. */
UNIT_TEST(test_cpu_threads)
{
    CHECK_EQ_INT(worker_cpu_threads(250, 0, 8), 1);
    CHECK_EQ_INT(worker_cpu_threads(10, 0, 8), 1);
    CHECK_EQ_INT(worker_cpu_threads(1000, 0, 8), 1);
    CHECK_EQ_INT(worker_cpu_threads(1001, 0, 8), 2);
    CHECK_EQ_INT(worker_cpu_threads(2000, 0, 8), 2);
    CHECK_EQ_INT(worker_cpu_threads(500, 3000, 8), 3);
    CHECK_EQ_INT(worker_cpu_threads(500, 2500, 8), 3);
    CHECK_EQ_INT(worker_cpu_threads(500, 3000, 2), 2);
    CHECK_EQ_INT(worker_cpu_threads(64000, 0, 16), 16);
    CHECK_EQ_INT(worker_cpu_threads(3000, 0, 0), 3);
    CHECK_EQ_INT(worker_cpu_threads(0, 0, 4), 1);
}

UNIT_TEST(test_gpu_parse)
{
    char out[32];
    CHECK_EQ_INT(worker_normalize_gpu_type("h100", out, sizeof out), 0);
    CHECK_STR(out, "H100");
    CHECK_EQ_INT(worker_normalize_gpu_type("a100", out, sizeof out), 0);
    CHECK_STR(out, "A100-40GB");
    CHECK_EQ_INT(worker_normalize_gpu_type("a100-80gb", out, sizeof out), 0);
    CHECK_STR(out, "A100-80GB");
    CHECK_EQ_INT(worker_normalize_gpu_type("l40s", out, sizeof out), 0);
    CHECK_STR(out, "L40S");
    CHECK_EQ_INT(worker_normalize_gpu_type("mi300x", out, sizeof out), 0);
    CHECK_STR(out, "MI300X");
    CHECK_EQ_INT(worker_normalize_gpu_type("", out, sizeof out), -EINVAL);
    CHECK_EQ_INT(worker_normalize_gpu_type("H 100", out, sizeof out), -EINVAL);
    CHECK_EQ_INT(worker_normalize_gpu_type("H100:1", out, sizeof out), -EINVAL);

    struct worker_config cfg = {0};
    struct gerr err;
    CHECK_EQ_INT(worker_parse_gpus("H100:2,a100-80gb:1,t4", &cfg, &err), 0);
    CHECK_EQ_INT(cfg.ngpus, 4);
    CHECK_STR(cfg.gpus[0].type, "H100");
    CHECK_STR(cfg.gpus[1].type, "H100");
    CHECK_STR(cfg.gpus[2].type, "A100-80GB");
    CHECK_STR(cfg.gpus[3].type, "T4");
    CHECK(cfg.gpus[3].index == 3 && cfg.gpus[3].simulated);
    CHECK_EQ_INT(worker_parse_gpus("H100:0", &cfg, &err), -EINVAL);
    CHECK_EQ_INT(worker_parse_gpus("H100:x", &cfg, &err), -EINVAL);
    CHECK_EQ_INT(worker_parse_gpus("H100,,T4", &cfg, &err), -EINVAL);
    CHECK_EQ_INT(worker_parse_gpus("H100,", &cfg, &err), -EINVAL);
    CHECK_EQ_INT(worker_parse_gpus("H100:65", &cfg, &err), -EINVAL);
    CHECK_EQ_INT(cfg.ngpus, 4); /* failures add nothing */
    CHECK_STR(ctr_fail_code(CTR_FAIL_OOM), "oom");
}

/* Finds a binary: env var, build-asan/rel, build/rel, else compiles it with gcc. */
static bool find_bin(const char *env, const char *rel, const char *sources, char out[4096])
{
    char p[4096];
    const char *e = getenv(env);
    const char *base = strrchr(rel, '/');
    bool ok = false;
    if (e && *e) {
        snprintf(p, sizeof p, "%s", e);
        ok = access(p, X_OK) == 0;
    } else {
        const char *dirs[] = {"build-asan", "build"};
        for (size_t i = 0; i < 2 && !ok; i++) {
            snprintf(p, sizeof p, "%s/%s", dirs[i], rel);
            ok = access(p, X_OK) == 0;
        }
        if (!ok) {
            snprintf(p, sizeof p, "%s/%s", tmpdir, base ? base + 1 : rel);
            char cmd[9000];
            snprintf(cmd, sizeof cmd,
                     "gcc -std=c17 -D_GNU_SOURCE -Iinclude -Isrc -O2 -static -o %s %s src/proto/*.c src/base/*.c",
                     p, sources);
            ok = system(cmd) == 0 && access(p, X_OK) == 0;
        }
    }
    memcpy(out, p, sizeof p);
    return ok;
}

static bool setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/gust-test-worker-XXXXXX");
    if (!mkdtemp(tmpdir))
        return false;
    if (!find_bin("GUST_INIT", "gust-init", "src/init/*.c", init_bin) ||
        !find_bin("GUST_ECHO", "examples/echo/echo", "examples/echo/echo.c", echo_bin)) {
        fprintf(stderr, "  cannot find or build gust-init / echo (set GUST_INIT, GUST_ECHO)\n");
        return false;
    }
    char abs_init[4096] = "";
    if (init_bin[0] != '/' && realpath(init_bin, abs_init))
        snprintf(init_bin, sizeof init_bin, "%s", abs_init);
    snprintf(rootfs, sizeof rootfs, "%s/rootfs", tmpdir);
    snprintf(state_root, sizeof state_root, "%s/run", tmpdir);
    char rid[9];
    random_id(rid, 8);
    snprintf(cgparent, sizeof cgparent, "gust-test-%s", rid);
    struct gerr err;
    if (image_build_busybox(rootfs, &err) < 0) {
        fprintf(stderr, "  image_build_busybox: %s\n", err.msg);
        return false;
    }
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/usr/local/bin && cp %s %s/usr/local/bin/gust-echo", rootfs, echo_bin,
             rootfs);
    if (system(cmd) != 0)
        return false;
    if (ev_loop_new(&loop) < 0)
        return false;
    struct worker_config cfg = {.state_root = state_root, .init_path = init_bin, .cgroup_parent = cgparent,
                                .max_payload = 16 << 20};
    if (worker_new(loop, &cfg, &cbs, &wk, &err) < 0) {
        fprintf(stderr, "  worker_new: %s\n", err.msg);
        return false;
    }
    const struct worker_config *cap = worker_capacity(wk);
    if (!cap->cpu_millicores || !cap->memory_mib || cap->max_payload != 16 << 20)
        return false;
    return true;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (geteuid() != 0)
        fprintf(stderr, "  the worker tests need root (namespaces, cgroups)\n");
    else if (!setup())
        fprintf(stderr, "  setup failed\n");
    UNIT_RUN(test_setup);
    UNIT_RUN(test_gpu_parse);
    UNIT_RUN(test_cpu_threads);
    if (wk) {
        UNIT_RUN(test_per_input_roundtrip);
        UNIT_RUN(test_exit_status_and_cancel);
        UNIT_RUN(test_per_input_oom);
        UNIT_RUN(test_runner_echo_and_crash);
        UNIT_RUN(test_runner_oom);
        UNIT_RUN(test_runner_start_failure);
        UNIT_RUN(test_worker_free_kills);
        UNIT_RUN(test_userns_ranges_locked_per_host);
    }
    worker_free(wk);
    if (loop)
        ev_loop_free(loop);
    struct gerr err;
    if (cgparent[0]) {
        worker_cleanup_stale(cgparent, state_root, &err);
        const char *roots[] = {"/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu,cpuacct",
                               "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/pids",
                               "/sys/fs/cgroup/devices", "/sys/fs/cgroup/unified"};
        for (size_t i = 0; i < ARRAY_LEN(roots); i++) {
            char d[256];
            snprintf(d, sizeof d, "%s/%s", roots[i], cgparent);
            rmdir(d);
        }
    }
    if (tmpdir[0])
        rm_rf(tmpdir);
    UNIT_MAIN_END();
}
