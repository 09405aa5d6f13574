/* Tests of gust-init without a sandbox: it is forked with a socketpair as fd 3 and
 * driven through the runner protocol. Binaries: $GUST_INIT / $GUST_ECHO, else
 * build-asan/ or build/ of the current directory, else compiled here (gcc -static)
 * into a temp dir. /bin/busybox must exist. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/util.h"
#include "proto/frame.h"
#include "unit.h"

#define BUSYBOX "/bin/busybox"

static char init_bin[512], echo_bin[512];

static bool is_exec(const char *p)
{
    return p && access(p, X_OK) == 0;
}

/* Finds a binary: env var, build-asan/rel, build/rel, else compiles it with gcc. */
static bool find_bin(const char *env, const char *rel, const char *sources, char *out, size_t n)
{
    const char *e = getenv(env);
    if (e && *e) {
        snprintf(out, n, "%s", e);
        return is_exec(out);
    }
    snprintf(out, n, "build-asan/%s", rel);
    if (is_exec(out))
        return true;
    snprintf(out, n, "build/%s", rel);
    if (is_exec(out))
        return true;
    char dir[] = "/tmp/gust-test-init-XXXXXX";
    if (!mkdtemp(dir))
        return false;
    snprintf(out, n, "%s/bin", dir);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "gcc -std=c17 -D_GNU_SOURCE -Iinclude -Isrc -O2 -static -o %s %s src/proto/*.c src/base/*.c",
             out, sources);
    return system(cmd) == 0 && is_exec(out);
}

struct gi {
    pid_t pid;
    int fd;
    struct frame_asm a;
    struct buf log[3]; /* by stream id */
    uint8_t rx[FRAME_MAX_DATAGRAM];
};

static struct gi *gi_start(const char *mode, int conc, char *const *cmd)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    char *argv[32];
    char cbuf[16];
    int n = 0;
    argv[n++] = "gust-init";
    argv[n++] = "--mode";
    argv[n++] = (char *)mode;
    argv[n++] = "--concurrency";
    snprintf(cbuf, sizeof cbuf, "%d", conc);
    argv[n++] = cbuf;
    argv[n++] = "--";
    for (int i = 0; cmd[i] && n < 31; i++)
        argv[n++] = cmd[i];
    argv[n] = NULL;
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(sv[1], 3);
        execv(init_bin, argv);
        _exit(126);
    }
    close(sv[1]);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct gi *g = calloc(1, sizeof *g);
    CHECK(g);
    g->pid = pid;
    g->fd = sv[0];
    frame_asm_init(&g->a, 256 << 20);
    return g;
}

/* Waits for gust-init to exit; returns its wait status. */
static int gi_wait(struct gi *g)
{
    int status = -1;
    for (int i = 0; i < 1000; i++) {
        pid_t r = waitpid(g->pid, &status, WNOHANG);
        if (r == g->pid)
            return status;
        usleep(10000);
    }
    kill(g->pid, SIGKILL);
    waitpid(g->pid, &status, 0);
    return -1;
}

static void gi_free(struct gi *g)
{
    if (g->fd >= 0)
        close(g->fd);
    if (g->pid > 0 && waitpid(g->pid, NULL, WNOHANG) == 0) {
        kill(g->pid, SIGKILL);
        waitpid(g->pid, NULL, 0);
    }
    frame_asm_free(&g->a);
    for (int i = 0; i < 3; i++)
        buf_free(&g->log[i]);
    free(g);
}

/* Receives frames (LOG collected, chunked payloads reassembled) until a whole frame of
 * one of the wanted types arrives; returns its type, -1 on EOF/timeout/error. */
static int gi_next(struct gi *g, uint64_t *id, uint8_t **data, size_t *len)
{
    for (;;) {
        struct frame_header h;
        int n = frame_recv(g->fd, g->rx, &h);
        if (n < 0)
            return -1;
        const uint8_t *body = g->rx + FRAME_HEADER_SIZE;
        if (h.type == FRAME_LOG) {
            if (h.id == 1 || h.id == 2)
                buf_append(&g->log[h.id], body, (size_t)n);
            continue;
        }
        if (h.type == FRAME_OUTPUT || h.type == FRAME_ERROR || h.type == FRAME_INPUT) {
            int r = frame_asm_feed(&g->a, &h, body, data, len);
            if (r < 0)
                return -1;
            if (r == 0)
                continue;
        } else {
            *data = malloc((size_t)n + 1);
            memcpy(*data, body, (size_t)n);
            (*data)[n] = 0;
            *len = (size_t)n;
        }
        *id = h.id;
        return h.type;
    }
}

static void expect_type(struct gi *g, int type)
{
    uint64_t id;
    uint8_t *d = NULL;
    size_t n;
    int t = gi_next(g, &id, &d, &n);
    free(d);
    CHECK_EQ_INT(t, type);
}

/* Expects a result frame for id; returns the body (caller frees). */
static uint8_t *expect_result(struct gi *g, int type, uint64_t want_id, size_t *len)
{
    uint64_t id;
    uint8_t *d = NULL;
    int t = gi_next(g, &id, &d, len);
    if (t != type)
        fprintf(stderr, "  got frame type %d (%s)\n", t, t == FRAME_ERROR && d ? (char *)d + 1 : "");
    CHECK_EQ_INT(t, type);
    CHECK_EQ_INT(id, want_id);
    return d;
}

/* Reads a FRAME_ERROR for want_id and checks its kind and (unless NULL) message. */
static void expect_error(struct gi *g, uint64_t want_id, int kind, const char *msg)
{
    size_t n;
    uint8_t *d = expect_result(g, FRAME_ERROR, want_id, &n);
    if (d[0] != kind || (msg && strcmp((char *)d + 1, msg)))
        fprintf(stderr, "  error frame %d: \"%s\"\n", d[0], (char *)d + 1);
    CHECK_EQ_INT(d[0], kind);
    if (msg)
        CHECK_STR((char *)d + 1, msg);
    free(d);
}

/* Reads the runner's FRAME_EXIT and checks how it ended (kind 1: exit code, 2: signal). */
static void expect_exit(struct gi *g, int kind, int code)
{
    size_t n;
    uint8_t *d = expect_result(g, FRAME_EXIT, 0, &n);
    struct frame_exit_body xb;
    CHECK_EQ_INT(n, sizeof xb);
    memcpy(&xb, d, sizeof xb);
    free(d);
    CHECK_EQ_INT(xb.kind, kind);
    CHECK_EQ_INT(xb.code, code);
}

static struct gi *start_per_input(int conc, char *const *cmd)
{
    struct gi *g = gi_start("per_input", conc, cmd);
    expect_type(g, FRAME_HELLO);
    expect_type(g, FRAME_READY);
    return g;
}

UNIT_TEST(test_binaries)
{
    CHECK(is_exec(BUSYBOX));
    CHECK(is_exec(init_bin));
    CHECK(is_exec(echo_bin));
}

UNIT_TEST(test_cat_echo)
{
    char *cmd[] = {BUSYBOX, "cat", NULL};
    struct gi *g = start_per_input(1, cmd);
    CHECK_EQ_INT(frame_send(g->fd, FRAME_INPUT, 1, "hello", 5), 0);
    size_t n;
    uint8_t *d = expect_result(g, FRAME_OUTPUT, 1, &n);
    CHECK(n == 5 && !memcmp(d, "hello", 5));
    free(d);
    /* empty input, empty output */
    CHECK_EQ_INT(frame_send(g->fd, FRAME_INPUT, 2, NULL, 0), 0);
    d = expect_result(g, FRAME_OUTPUT, 2, &n);
    CHECK_EQ_INT(n, 0);
    free(d);
    /* 3 MiB in and out: written to stdin incrementally, sent back in chunks */
    size_t big = 3 << 20;
    uint8_t *in = malloc(big);
    CHECK(in);
    for (size_t i = 0; i < big; i++)
        in[i] = (uint8_t)(i % 251);
    pid_t sender = fork();
    CHECK(sender >= 0);
    if (sender == 0)
        _exit(frame_send(g->fd, FRAME_INPUT, 3, in, big) == 0 ? 0 : 1);
    d = expect_result(g, FRAME_OUTPUT, 3, &n);
    int st;
    waitpid(sender, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_EQ_INT(n, big);
    CHECK(!memcmp(d, in, big));
    free(d);
    free(in);
    close(g->fd);
    g->fd = -1;
    st = gi_wait(g);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    gi_free(g);
}

UNIT_TEST(test_exit_status)
{
    char *cmd[] = {BUSYBOX, "sh", "-c", "cat >/dev/null; echo first >&2; echo oops-stderr-tail >&2; exit 3", NULL};
    struct gi *g = start_per_input(1, cmd);
    CHECK_EQ_INT(frame_send(g->fd, FRAME_INPUT, 7, "x", 1), 0);
    expect_error(g, 7, FRAME_ERR_EXIT_STATUS, "exit status 3: first\noops-stderr-tail");
    CHECK(strstr(g->log[2].data ? g->log[2].data : "", "oops-stderr-tail\n"));
    gi_free(g);
}

UNIT_TEST(test_killed_by_signal)
{
    char *cmd[] = {BUSYBOX, "sh", "-c", "kill -9 $$", NULL};
    struct gi *g = start_per_input(1, cmd);
    CHECK_EQ_INT(frame_send(g->fd, FRAME_INPUT, 8, "", 0), 0);
    expect_error(g, 8, FRAME_ERR_SIGNAL, "killed by signal 9 (SIGKILL)");
    gi_free(g);
}

UNIT_TEST(test_spawn_failure)
{
    char *cmd[] = {"/nonexistent/cmd", "arg", NULL};
    struct gi *g = start_per_input(1, cmd);
    CHECK_EQ_INT(frame_send(g->fd, FRAME_INPUT, 9, "x", 1), 0);
    expect_error(g, 9, FRAME_ERR_SPAWN, "cannot run /nonexistent/cmd: No such file or directory");
    /* PATH lookup failure too, and gust-init keeps serving */
    gi_free(g);
    char *cmd2[] = {"no-such-command-gust", NULL};
    g = start_per_input(1, cmd2);
    CHECK_EQ_INT(frame_send(g->fd, FRAME_INPUT, 10, "x", 1), 0);
    expect_error(g, 10, FRAME_ERR_SPAWN, "cannot run no-such-command-gust: No such file or directory");
    CHECK_EQ_INT(frame_send(g->fd, FRAME_INPUT, 11, "x", 1), 0);
    expect_error(g, 11, FRAME_ERR_SPAWN, NULL);
    gi_free(g);
}

UNIT_TEST(test_cancel)
{
    char *cmd[] = {BUSYBOX, "sh", "-c", "sleep 10; cat", NULL};
    struct gi *g = start_per_input(1, cmd);
    CHECK_EQ_INT(frame_send(g->fd, FRAME_INPUT, 20, "a", 1), 0);
    CHECK_EQ_INT(frame_send(g->fd, FRAME_INPUT, 21, "b", 1), 0); /* queued behind 20 */
    usleep(100000);
    uint64_t t0 = mono_ms();
    CHECK_EQ_INT(frame_send(g->fd, FRAME_CANCEL, 21, NULL, 0), 0);
    CHECK_EQ_INT(frame_send(g->fd, FRAME_CANCEL, 20, NULL, 0), 0);
    expect_error(g, 21, FRAME_ERR_CANCELLED, NULL);
    expect_error(g, 20, FRAME_ERR_CANCELLED, NULL);
    CHECK(mono_ms() - t0 < 3000);
    gi_free(g);
}

UNIT_TEST(test_concurrency)
{
    char *cmd[] = {BUSYBOX, "sh", "-c", "sleep 0.4; cat", NULL};
    struct gi *g = start_per_input(3, cmd);
    uint64_t t0 = mono_ms();
    for (uint64_t id = 1; id <= 4; id++)
        CHECK_EQ_INT(frame_send(g->fd, FRAME_INPUT, id, "c", 1), 0);
    bool seen[5] = {0};
    for (int i = 0; i < 3; i++) {
        uint64_t id;
        uint8_t *d = NULL;
        size_t n;
        CHECK_EQ_INT(gi_next(g, &id, &d, &n), FRAME_OUTPUT);
        CHECK(id >= 1 && id <= 3 && !seen[id]);
        seen[id] = true;
        free(d);
    }
    uint64_t three = mono_ms() - t0;
    size_t n;
    uint8_t *d = expect_result(g, FRAME_OUTPUT, 4, &n);
    free(d);
    uint64_t four = mono_ms() - t0;
    CHECK(three < 1100);  /* 3 ran together */
    CHECK(four >= 750);   /* the 4th waited for a slot */
    gi_free(g);
}

UNIT_TEST(test_shutdown_frame)
{
    char *cmd[] = {BUSYBOX, "sh", "-c", "sleep 0.3; cat", NULL};
    struct gi *g = start_per_input(1, cmd);
    CHECK_EQ_INT(frame_send(g->fd, FRAME_INPUT, 1, "done", 4), 0);
    usleep(50000);
    CHECK_EQ_INT(frame_send(g->fd, FRAME_SHUTDOWN, 0, NULL, 0), 0);
    size_t n;
    uint8_t *d = expect_result(g, FRAME_OUTPUT, 1, &n);
    CHECK(n == 4 && !memcmp(d, "done", 4));
    free(d);
    int st = gi_wait(g);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    gi_free(g);
}

UNIT_TEST(test_sigterm)
{
    char *cmd[] = {BUSYBOX, "sleep", "10", NULL};
    struct gi *g = start_per_input(1, cmd);
    CHECK_EQ_INT(frame_send(g->fd, FRAME_INPUT, 1, "", 0), 0);
    usleep(100000);
    uint64_t t0 = mono_ms();
    kill(g->pid, SIGTERM);
    expect_error(g, 1, FRAME_ERR_SIGNAL, "killed by signal 15 (SIGTERM)");
    int st = gi_wait(g);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(mono_ms() - t0 < 3000);
    gi_free(g);
}

UNIT_TEST(test_channel_eof_kills)
{
    char *cmd[] = {BUSYBOX, "sleep", "10", NULL};
    struct gi *g = start_per_input(1, cmd);
    CHECK_EQ_INT(frame_send(g->fd, FRAME_INPUT, 1, "", 0), 0);
    usleep(100000);
    uint64_t t0 = mono_ms();
    close(g->fd);
    g->fd = -1;
    int st = gi_wait(g);
    CHECK(st != -1 && WIFEXITED(st));
    CHECK(mono_ms() - t0 < 3000);
    gi_free(g);
}

UNIT_TEST(test_runner_echo)
{
    char *cmd[] = {echo_bin, NULL};
    struct gi *g = gi_start("runner", 1, cmd);
    expect_type(g, FRAME_HELLO);
    expect_type(g, FRAME_READY);
    CHECK_EQ_INT(frame_send(g->fd, FRAME_INPUT, 1, "abc", 3), 0);
    size_t n;
    uint8_t *d = expect_result(g, FRAME_OUTPUT, 1, &n);
    CHECK(n == 3 && !memcmp(d, "abc", 3));
    free(d);
    CHECK_EQ_INT(frame_send(g->fd, FRAME_INPUT, 2, "sleep:50", 8), 0);
    d = expect_result(g, FRAME_OUTPUT, 2, &n);
    CHECK(n == 8 && !memcmp(d, "sleep:50", 8));
    free(d);
    CHECK_EQ_INT(frame_send(g->fd, FRAME_INPUT, 3, "fail", 4), 0);
    expect_error(g, 3, FRAME_ERR_USER, NULL);
    CHECK_EQ_INT(frame_send(g->fd, FRAME_INPUT, 4, "alloc:8", 7), 0);
    d = expect_result(g, FRAME_OUTPUT, 4, &n);
    free(d);
    /* 200 warm round trips */
    uint64_t t0 = mono_ns();
    for (uint64_t id = 100; id < 300; id++) {
        CHECK_EQ_INT(frame_send(g->fd, FRAME_INPUT, id, "ping", 4), 0);
        d = expect_result(g, FRAME_OUTPUT, id, &n);
        free(d);
    }
    fprintf(stderr, "  runner round trip: %.1f us\n", (double)(mono_ns() - t0) / 200 / 1000);
    CHECK_EQ_INT(frame_send(g->fd, FRAME_INPUT, 5, "crash", 5), 0);
    expect_exit(g, 2, SIGABRT);
    int st = gi_wait(g);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 128 + SIGABRT);
    gi_free(g);
}

UNIT_TEST(test_runner_logs_and_exit)
{
    char *cmd[] = {BUSYBOX, "sh", "-c", "echo out-line; echo err-line >&2; test \"$GUST_RUNNER_FD\" = 3 && exit 4", NULL};
    struct gi *g = gi_start("runner", 1, cmd);
    expect_type(g, FRAME_HELLO);
    expect_exit(g, 1, 4);
    CHECK_STR(g->log[1].data, "out-line\n");
    CHECK_STR(g->log[2].data, "err-line\n");
    int st = gi_wait(g);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 4);
    gi_free(g);
}

UNIT_TEST(test_runner_sigterm)
{
    char *cmd[] = {BUSYBOX, "sleep", "10", NULL};
    struct gi *g = gi_start("runner", 1, cmd);
    expect_type(g, FRAME_HELLO);
    usleep(100000);
    kill(g->pid, SIGTERM);
    expect_exit(g, 2, SIGTERM);
    gi_free(g);
}

UNIT_TEST(test_runner_exec_failure)
{
    char *cmd[] = {"/nonexistent/runner", NULL};
    struct gi *g = gi_start("runner", 1, cmd);
    expect_type(g, FRAME_HELLO);
    expect_exit(g, 1, 127);
    CHECK(g->log[2].data && strstr(g->log[2].data, "cannot run /nonexistent/runner: No such file or directory"));
    int st = gi_wait(g);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 127);
    gi_free(g);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    bool ok = find_bin("GUST_INIT", "gust-init", "src/init/*.c", init_bin, sizeof init_bin);
    if (!ok)
        fprintf(stderr, "  cannot find or build gust-init (set GUST_INIT)\n");
    ok = find_bin("GUST_ECHO", "examples/echo/echo", "examples/echo/echo.c", echo_bin, sizeof echo_bin);
    if (!ok)
        fprintf(stderr, "  cannot find or build the echo example (set GUST_ECHO)\n");
    UNIT_RUN(test_binaries);
    UNIT_RUN(test_cat_echo);
    UNIT_RUN(test_exit_status);
    UNIT_RUN(test_killed_by_signal);
    UNIT_RUN(test_spawn_failure);
    UNIT_RUN(test_cancel);
    UNIT_RUN(test_concurrency);
    UNIT_RUN(test_shutdown_frame);
    UNIT_RUN(test_sigterm);
    UNIT_RUN(test_channel_eof_kills);
    UNIT_RUN(test_runner_echo);
    UNIT_RUN(test_runner_logs_and_exit);
    UNIT_RUN(test_runner_sigterm);
    UNIT_RUN(test_runner_exec_failure);
    UNIT_MAIN_END();
}
