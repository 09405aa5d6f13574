/* Unit tests for src/proto: header codec, chunked send/receive, reassembly, runner API. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/buf.h"
#include "proto/frame.h"
#include "proto/runner.h"
#include "unit.h"

static void make_pair(int sv[2])
{
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
}

UNIT_TEST(test_header_roundtrip)
{
    struct frame_header h = {.type = FRAME_OUTPUT, .flags = FRAME_F_MORE, .body_len = 1234,
                             .id = 0x0102030405060708ull};
    uint8_t raw[FRAME_HEADER_SIZE];
    frame_header_encode(&h, raw);
    CHECK_EQ_INT(raw[0], FRAME_OUTPUT);
    CHECK_EQ_INT(raw[4], 1234 & 0xff);
    CHECK_EQ_INT(raw[8], 0x08); /* little endian id */
    CHECK_EQ_INT(raw[15], 0x01);
    struct frame_header d;
    CHECK_EQ_INT(frame_header_decode(raw, sizeof raw, &d), 0);
    CHECK_EQ_INT(d.type, h.type);
    CHECK_EQ_INT(d.flags, h.flags);
    CHECK_EQ_INT(d.body_len, h.body_len);
    CHECK(d.id == h.id);
}

UNIT_TEST(test_header_malformed)
{
    struct frame_header h = {.type = FRAME_INPUT, .body_len = 10, .id = 1}, d;
    uint8_t raw[FRAME_HEADER_SIZE];
    frame_header_encode(&h, raw);
    CHECK_EQ_INT(frame_header_decode(raw, FRAME_HEADER_SIZE - 1, &d), -EPROTO);
    raw[0] = 0;
    CHECK_EQ_INT(frame_header_decode(raw, sizeof raw, &d), -EPROTO);
    raw[0] = FRAME_TYPE_MAX + 1;
    CHECK_EQ_INT(frame_header_decode(raw, sizeof raw, &d), -EPROTO);
    raw[0] = FRAME_INPUT_MORE_ACK; /* the newest types are known */
    CHECK_EQ_INT(frame_header_decode(raw, sizeof raw, &d), 0);
    raw[0] = FRAME_ITEM;
    CHECK_EQ_INT(frame_header_decode(raw, sizeof raw, &d), 0);
    raw[0] = FRAME_ITEM_ACK;
    CHECK_EQ_INT(frame_header_decode(raw, sizeof raw, &d), 0);
    raw[0] = FRAME_INPUT;
    raw[2] = 1; /* reserved */
    CHECK_EQ_INT(frame_header_decode(raw, sizeof raw, &d), -EPROTO);
    raw[2] = 0;
    raw[1] = 0x80; /* unknown flag */
    CHECK_EQ_INT(frame_header_decode(raw, sizeof raw, &d), -EPROTO);
    raw[1] = 0;
    h.body_len = FRAME_MAX_BODY + 1;
    frame_header_encode(&h, raw);
    CHECK_EQ_INT(frame_header_decode(raw, sizeof raw, &d), -EPROTO);
    h.body_len = FRAME_MAX_BODY;
    frame_header_encode(&h, raw);
    CHECK_EQ_INT(frame_header_decode(raw, sizeof raw, &d), 0);
}

UNIT_TEST(test_send_recv_small)
{
    int sv[2];
    make_pair(sv);
    static uint8_t buf[FRAME_MAX_DATAGRAM];
    CHECK_EQ_INT(frame_send(sv[0], FRAME_INPUT, 42, "hello", 5), 0);
    CHECK_EQ_INT(frame_send(sv[0], FRAME_READY, 0, NULL, 0), 0);
    CHECK_EQ_INT(frame_send_error(sv[0], 7, FRAME_ERR_USER, "bad", 3), 0);
    struct frame_header h;
    CHECK_EQ_INT(frame_recv(sv[1], buf, &h), 5);
    CHECK_EQ_INT(h.type, FRAME_INPUT);
    CHECK(h.id == 42 && h.flags == 0);
    CHECK(!memcmp(buf + FRAME_HEADER_SIZE, "hello", 5));
    CHECK_EQ_INT(frame_recv(sv[1], buf, &h), 0);
    CHECK_EQ_INT(h.type, FRAME_READY);
    CHECK_EQ_INT(frame_recv(sv[1], buf, &h), 4);
    CHECK_EQ_INT(h.type, FRAME_ERROR);
    CHECK_EQ_INT(buf[FRAME_HEADER_SIZE], FRAME_ERR_USER);
    CHECK(!memcmp(buf + FRAME_HEADER_SIZE + 1, "bad", 3));
    close(sv[0]);
    CHECK_EQ_INT(frame_recv(sv[1], buf, &h), -EPIPE);
    close(sv[1]);
}

UNIT_TEST(test_recv_malformed)
{
    int sv[2];
    make_pair(sv);
    static uint8_t buf[FRAME_MAX_DATAGRAM];
    struct frame_header h;
    CHECK_EQ_INT(write(sv[0], "short", 5), 5);
    CHECK_EQ_INT(frame_recv(sv[1], buf, &h), -EPROTO);
    /* header says 10 body bytes, datagram carries 3 */
    uint8_t raw[FRAME_HEADER_SIZE + 3];
    struct frame_header bad = {.type = FRAME_OUTPUT, .body_len = 10, .id = 1};
    frame_header_encode(&bad, raw);
    memcpy(raw + FRAME_HEADER_SIZE, "abc", 3);
    CHECK_EQ_INT(write(sv[0], raw, sizeof raw), (long)sizeof raw);
    CHECK_EQ_INT(frame_recv(sv[1], buf, &h), -EPROTO);
    /* oversized datagram is truncated and rejected */
    size_t big = FRAME_MAX_DATAGRAM + 100;
    uint8_t *b = calloc(1, big);
    CHECK(b);
    struct frame_header over = {.type = FRAME_OUTPUT, .body_len = FRAME_MAX_BODY, .id = 1};
    frame_header_encode(&over, b);
    ssize_t w = write(sv[0], b, big);
    free(b);
    CHECK_EQ_INT(w, (long)big);
    CHECK_EQ_INT(frame_recv(sv[1], buf, &h), -EPROTO);
    /* a good frame after the bad ones still arrives */
    CHECK_EQ_INT(frame_send(sv[0], FRAME_HELLO, 0, NULL, 0), 0);
    CHECK_EQ_INT(frame_recv(sv[1], buf, &h), 0);
    CHECK_EQ_INT(h.type, FRAME_HELLO);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    CHECK_EQ_INT(frame_recv(sv[1], buf, &h), -EAGAIN);
    close(sv[0]);
    close(sv[1]);
}

UNIT_TEST(test_chunked_1mib)
{
    int sv[2];
    make_pair(sv);
    size_t len = 1 << 20;
    uint8_t *payload = malloc(len);
    CHECK(payload);
    for (size_t i = 0; i < len; i++)
        payload[i] = (uint8_t)(i * 31 + (i >> 8));
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(sv[1]);
        int r = frame_send(sv[0], FRAME_OUTPUT, 99, payload, len);
        _exit(r == 0 ? 0 : 1);
    }
    close(sv[0]);
    static uint8_t buf[FRAME_MAX_DATAGRAM];
    struct frame_asm a;
    frame_asm_init(&a, len);
    uint8_t *out = NULL;
    size_t out_len = 0;
    int frames = 0, r = 0;
    while (r == 0) {
        struct frame_header h;
        int n = frame_recv(sv[1], buf, &h);
        CHECK(n >= 0);
        CHECK(h.type == FRAME_OUTPUT && h.id == 99);
        frames++;
        r = frame_asm_feed(&a, &h, buf + FRAME_HEADER_SIZE, &out, &out_len);
        CHECK(r >= 0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_EQ_INT(frames, (int)((len + FRAME_MAX_BODY - 1) / FRAME_MAX_BODY));
    CHECK_EQ_INT(out_len, len);
    CHECK(!memcmp(out, payload, len));
    CHECK_EQ_INT(out[len], 0);
    free(out);
    free(payload);
    frame_asm_free(&a);
    close(sv[1]);
}

UNIT_TEST(test_send_nonblocking_full)
{
    int sv[2];
    make_pair(sv);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    int r, sent = 0;
    while ((r = frame_send(sv[0], FRAME_LOG, 1, "x", 1)) == 0)
        sent++;
    CHECK_EQ_INT(r, -EAGAIN);
    CHECK(sent > 0);
    close(sv[0]);
    close(sv[1]);
}

static void feed_frame(struct frame_asm *a, uint8_t type, uint64_t id, int more, const void *body,
                       size_t len, int expect, uint8_t **out, size_t *out_len)
{
    struct frame_header h = {.type = type, .flags = more ? FRAME_F_MORE : 0, .body_len = (uint32_t)len,
                             .id = id};
    CHECK_EQ_INT(frame_asm_feed(a, &h, body, out, out_len), expect);
}

UNIT_TEST(test_asm_limits)
{
    struct frame_asm a;
    frame_asm_init(&a, 10);
    uint8_t *out = NULL;
    size_t n = 0;
    /* single frame too big */
    feed_frame(&a, FRAME_OUTPUT, 1, 0, "01234567890", 11, -E2BIG, &out, &n);
    /* exactly the limit, in two frames */
    feed_frame(&a, FRAME_OUTPUT, 1, 1, "01234", 5, 0, &out, &n);
    feed_frame(&a, FRAME_OUTPUT, 1, 0, "56789", 5, 1, &out, &n);
    CHECK_EQ_INT(n, 10);
    CHECK_STR((char *)out, "0123456789");
    free(out);
    /* over the limit mid-way: E2BIG once, the rest ignored until the last frame */
    feed_frame(&a, FRAME_OUTPUT, 2, 1, "012345", 6, 0, &out, &n);
    feed_frame(&a, FRAME_OUTPUT, 2, 1, "012345", 6, -E2BIG, &out, &n);
    feed_frame(&a, FRAME_OUTPUT, 2, 1, "012345", 6, 0, &out, &n);
    feed_frame(&a, FRAME_OUTPUT, 2, 0, "0", 1, 0, &out, &n);
    /* the id is usable again afterwards */
    feed_frame(&a, FRAME_OUTPUT, 2, 0, "ok", 2, 1, &out, &n);
    CHECK_STR((char *)out, "ok");
    free(out);
    /* same id, different types are separate payloads */
    feed_frame(&a, FRAME_OUTPUT, 3, 1, "a", 1, 0, &out, &n);
    feed_frame(&a, FRAME_ERROR, 3, 1, "b", 1, 0, &out, &n);
    feed_frame(&a, FRAME_ERROR, 3, 0, "c", 1, 1, &out, &n);
    CHECK_STR((char *)out, "bc");
    free(out);
    frame_asm_drop(&a, FRAME_OUTPUT, 3);
    feed_frame(&a, FRAME_OUTPUT, 3, 0, "z", 1, 1, &out, &n);
    CHECK_STR((char *)out, "z");
    free(out);
    /* empty payload */
    feed_frame(&a, FRAME_OUTPUT, 4, 0, NULL, 0, 1, &out, &n);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(out[0], 0);
    free(out);
    /* all slots busy */
    for (uint64_t id = 100; id < 100 + FRAME_ASM_SLOTS; id++)
        feed_frame(&a, FRAME_INPUT, id, 1, "x", 1, 0, &out, &n);
    feed_frame(&a, FRAME_INPUT, 1000, 1, "x", 1, -ENOSPC, &out, &n);
    /* a single-frame payload needs no slot */
    feed_frame(&a, FRAME_INPUT, 1000, 0, "y", 1, 1, &out, &n);
    free(out);
    frame_asm_free(&a);
}

UNIT_TEST(test_runner_api)
{
    struct runner r;
    unsetenv("GUST_RUNNER_FD");
    CHECK(runner_open(&r) < 0);
    setenv("GUST_RUNNER_FD", "0", 1);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    char num[16];
    snprintf(num, sizeof num, "%d", devnull);
    setenv("GUST_RUNNER_FD", num, 1);
    CHECK_EQ_INT(runner_open(&r), -ENOTSOCK);
    close(devnull);

    int sv[2];
    make_pair(sv);
    snprintf(num, sizeof num, "%d", sv[1]);
    setenv("GUST_RUNNER_FD", num, 1);
    CHECK_EQ_INT(runner_open(&r), 0);
    CHECK_EQ_INT(runner_ready(&r), 0);
    static uint8_t buf[FRAME_MAX_DATAGRAM];
    struct frame_header h;
    CHECK_EQ_INT(frame_recv(sv[0], buf, &h), 0);
    CHECK_EQ_INT(h.type, FRAME_READY);

    /* a cancelled partial input is dropped; the next one is delivered */
    uint8_t part[FRAME_MAX_BODY];
    memset(part, 'p', sizeof part);
    struct frame_header ph = {.type = FRAME_INPUT, .flags = FRAME_F_MORE, .body_len = sizeof part, .id = 5};
    uint8_t raw[FRAME_MAX_DATAGRAM];
    frame_header_encode(&ph, raw);
    memcpy(raw + FRAME_HEADER_SIZE, part, sizeof part);
    CHECK_EQ_INT(write(sv[0], raw, sizeof raw), (long)sizeof raw);
    CHECK_EQ_INT(frame_send(sv[0], FRAME_CANCEL, 5, NULL, 0), 0);
    CHECK_EQ_INT(frame_send(sv[0], FRAME_INPUT, 6, "in6", 3), 0);
    struct runner_input in;
    CHECK_EQ_INT(runner_next(&r, &in), 0);
    CHECK(in.id == 6 && in.len == 3);
    CHECK_STR((char *)in.data, "in6");
    CHECK_EQ_INT(runner_reply(&r, in.id, in.data, in.len), 0);
    runner_input_free(&in);
    CHECK_EQ_INT(frame_recv(sv[0], buf, &h), 3);
    CHECK(h.type == FRAME_OUTPUT && h.id == 6);
    CHECK_EQ_INT(runner_fail(&r, 6, "nope"), 0);
    CHECK_EQ_INT(frame_recv(sv[0], buf, &h), 5);
    CHECK(h.type == FRAME_ERROR && buf[FRAME_HEADER_SIZE] == FRAME_ERR_USER);
    CHECK_EQ_INT(frame_send(sv[0], FRAME_SHUTDOWN, 0, NULL, 0), 0);
    CHECK_EQ_INT(runner_next(&r, &in), -EPIPE);
    close(sv[0]);
    CHECK_EQ_INT(runner_next(&r, &in), -EPIPE);
    runner_close(&r);
    unsetenv("GUST_RUNNER_FD");
}

/* Opens a runner on a fresh socketpair; sv[0] is the worker's end. */
static void runner_on_pair(struct runner *r, int sv[2])
{
    char num[16];
    make_pair(sv);
    snprintf(num, sizeof num, "%d", sv[1]);
    setenv("GUST_RUNNER_FD", num, 1);
    CHECK_EQ_INT(runner_open(r), 0);
    unsetenv("GUST_RUNNER_FD");
}

static void send_u64(int fd, uint8_t type, uint64_t id, uint64_t v)
{
    uint8_t le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(v >> (8 * i));
    CHECK_EQ_INT(frame_send(fd, type, id, le, sizeof le), 0);
}

static uint64_t body_u64(const uint8_t *buf)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | buf[FRAME_HEADER_SIZE + i];
    return v;
}

/* The worker's side of test_runner_item_window, in a child: it takes exactly the
 * window's worth of items, acknowledges one, takes one more, then cancels; the next
 * frame must be the cancelled ERROR, not another item. Exit 0 when all held. */
static int window_worker(int fd, size_t item)
{
    static uint8_t buf[FRAME_MAX_DATAGRAM];
    struct frame_header h;
    for (size_t got = 0; got < FRAME_ITEM_WINDOW; got += item)
        if (frame_recv(fd, buf, &h) != (int)item || h.type != FRAME_ITEM || h.id != 9)
            return 1;
    send_u64(fd, FRAME_ITEM_ACK, 9, item);
    if (frame_recv(fd, buf, &h) != (int)item || h.type != FRAME_ITEM)
        return 2;
    if (frame_send(fd, FRAME_CANCEL, 9, NULL, 0) < 0)
        return 3;
    if (frame_recv(fd, buf, &h) < 1 || h.type != FRAME_ERROR || buf[FRAME_HEADER_SIZE] != FRAME_ERR_CANCELLED)
        return 4;
    return 0;
}

UNIT_TEST(test_runner_item_window)
{
    struct runner r;
    int sv[2];
    runner_on_pair(&r, sv);
    /* One frame per item, so the worker counts items by frames. */
    const size_t item = 32 * 1024;
    CHECK_EQ_INT(frame_send(sv[0], FRAME_INPUT, 9, "gen", 3), 0);
    struct runner_input in;
    CHECK_EQ_INT(runner_next(&r, &in), 0);
    CHECK(runner_item(&r, 77, "x", 1) == -ENOENT); /* never an input */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(sv[1]);
        _exit(window_worker(sv[0], item));
    }
    close(sv[0]);
    static uint8_t piece[32 * 1024];
    size_t sent = 0;
    int rc;
    while ((rc = runner_item(&r, in.id, piece, item)) == 0)
        sent++;
    CHECK_EQ_INT(rc, -ECANCELED);
    /* The window's worth, then the one its acknowledgement made room for. */
    CHECK_EQ_INT(sent, FRAME_ITEM_WINDOW / item + 1);
    CHECK_EQ_INT(runner_fail(&r, in.id, "stopped"), 0);
    CHECK(runner_item(&r, in.id, "x", 1) == -ENOENT); /* answered: forgotten */
    runner_input_free(&in);
    int st;
    CHECK_EQ_INT(waitpid(pid, &st, 0), pid);
    CHECK(WIFEXITED(st));
    CHECK_EQ_INT(WEXITSTATUS(st), 0);
    runner_close(&r);
}

UNIT_TEST(test_runner_streams_and_queue)
{
    struct runner r;
    int sv[2];
    runner_on_pair(&r, sv);
    static uint8_t buf[FRAME_MAX_DATAGRAM];
    struct frame_header h;
    /* Input 1 with a stream; input 2 comes while 1 runs; an ITEM_ACK for nothing. */
    CHECK_EQ_INT(frame_send(sv[0], FRAME_INPUT, 1, "one", 3), 0);
    CHECK_EQ_INT(frame_send(sv[0], FRAME_INPUT_MORE, 1, "hel", 3), 0);
    send_u64(sv[0], FRAME_ITEM_ACK, 55, 1);
    struct runner_input in;
    CHECK_EQ_INT(runner_next(&r, &in), 0);
    CHECK(in.id == 1);
    runner_input_free(&in);
    CHECK_EQ_INT(frame_send(sv[0], FRAME_INPUT_MORE, 1, "lo", 2), 0);
    CHECK_EQ_INT(frame_send(sv[0], FRAME_INPUT, 2, "two", 3), 0);
    CHECK_EQ_INT(frame_send(sv[0], FRAME_INPUT_MORE, 1, NULL, 0), 0);
    char got[16];
    CHECK_EQ_INT(runner_stream_read(&r, 1, got, 4), 4); /* all that came, up to cap */
    CHECK(!memcmp(got, "hell", 4));
    CHECK_EQ_INT(frame_recv(sv[0], buf, &h), FRAME_INPUT_MORE_ACK_SIZE);
    CHECK(h.type == FRAME_INPUT_MORE_ACK && h.id == 1 && body_u64(buf) == 4);
    CHECK_EQ_INT(runner_stream_read(&r, 1, got, sizeof got), 1);
    CHECK_EQ_INT(got[0], 'o');
    CHECK_EQ_INT(frame_recv(sv[0], buf, &h), FRAME_INPUT_MORE_ACK_SIZE);
    CHECK(body_u64(buf) == 5);
    CHECK_EQ_INT(runner_stream_read(&r, 1, got, sizeof got), 0); /* the end */
    CHECK_EQ_INT(runner_stream_read(&r, 1, got, sizeof got), 0);
    CHECK(runner_stream_read(&r, 2, got, sizeof got) == -ENOENT); /* queued, not taken */
    CHECK_EQ_INT(runner_item(&r, 1, "a", 1), 0);
    CHECK_EQ_INT(runner_end(&r, 1), 0);
    CHECK_EQ_INT(frame_recv(sv[0], buf, &h), 1);
    CHECK(h.type == FRAME_ITEM && h.id == 1);
    CHECK_EQ_INT(frame_recv(sv[0], buf, &h), 0);
    CHECK(h.type == FRAME_OUTPUT && h.id == 1);
    /* Stream bytes for an answered input are dropped. */
    CHECK_EQ_INT(frame_send(sv[0], FRAME_INPUT_MORE, 1, "late", 4), 0);
    /* 3 is cancelled before it is taken: answered at once, skipped; then SHUTDOWN,
     * which comes after the inputs already sent. */
    CHECK_EQ_INT(frame_send(sv[0], FRAME_INPUT, 3, "three", 5), 0);
    CHECK_EQ_INT(frame_send(sv[0], FRAME_INPUT, 4, "four", 4), 0);
    CHECK_EQ_INT(frame_send(sv[0], FRAME_CANCEL, 3, NULL, 0), 0);
    CHECK_EQ_INT(frame_send(sv[0], FRAME_SHUTDOWN, 0, NULL, 0), 0);
    CHECK_EQ_INT(runner_next(&r, &in), 0);
    CHECK(in.id == 2 && !strcmp((char *)in.data, "two"));
    runner_input_free(&in);
    CHECK_EQ_INT(runner_reply(&r, 2, "ok", 2), 0);
    CHECK_EQ_INT(runner_next(&r, &in), 0);
    CHECK(in.id == 4);
    runner_input_free(&in);
    CHECK_EQ_INT(runner_next(&r, &in), -EPIPE);
    CHECK(frame_recv(sv[0], buf, &h) > 0);
    CHECK(h.type == FRAME_ERROR && h.id == 3 && buf[FRAME_HEADER_SIZE] == FRAME_ERR_CANCELLED);
    CHECK_EQ_INT(frame_recv(sv[0], buf, &h), 2);
    CHECK(h.type == FRAME_OUTPUT && h.id == 2);
    close(sv[0]);
    runner_close(&r);
}

/* A stream the worker overfills (past FRAME_INPUT_WINDOW unread) fails its reader
 * instead of growing: the bytes pile up while runner_next waits for input 2. */
UNIT_TEST(test_runner_stream_overflow)
{
    struct runner r;
    int sv[2];
    runner_on_pair(&r, sv);
    CHECK_EQ_INT(frame_send(sv[0], FRAME_INPUT, 1, "one", 3), 0);
    struct runner_input in;
    CHECK_EQ_INT(runner_next(&r, &in), 0);
    runner_input_free(&in);
    pid_t pid = fork(); /* more than the socket holds: a child sends it */
    CHECK(pid >= 0);
    if (pid == 0) {
        static uint8_t big[FRAME_MAX_BODY];
        for (size_t n = 0; n <= FRAME_INPUT_WINDOW; n += sizeof big)
            if (frame_send(sv[0], FRAME_INPUT_MORE, 1, big, sizeof big) < 0)
                _exit(1);
        _exit(frame_send(sv[0], FRAME_INPUT, 2, "two", 3) < 0);
    }
    CHECK_EQ_INT(runner_next(&r, &in), 0);
    CHECK(in.id == 2);
    runner_input_free(&in);
    int st;
    CHECK_EQ_INT(waitpid(pid, &st, 0), pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char got[16];
    CHECK(runner_stream_read(&r, 1, got, sizeof got) == -EPROTO);
    close(sv[0]);
    runner_close(&r);
}

UNIT_TEST(test_runner_web)
{
    struct runner r;
    int sv[2];
    runner_on_pair(&r, sv);
    struct web_header hs[1] = {{"X-Req", 5, "v", 1}};
    struct web_request want = {.method = "GET", .scheme = "http", .root_path = "/w/a/l", .path = "/hello",
                               .query = "name=ada", .client = "127.0.0.1", .headers = hs, .nheaders = 1};
    struct buf env = {0};
    web_request_encode(&env, &want);
    CHECK_EQ_INT(frame_send(sv[0], FRAME_INPUT, 8, env.data, env.len), 0);
    buf_free(&env);
    struct runner_input in;
    CHECK_EQ_INT(runner_next(&r, &in), 0);
    struct web_header got_h[WEB_MAX_HEADERS];
    struct web_request req;
    const char *why;
    CHECK_EQ_INT(web_request_decode(in.data, in.len, &req, got_h, &why), 0);
    CHECK_STR(req.path, "/hello");
    CHECK_STR(web_request_header(&req, "x-req")->value, "v");
    const struct web_header bad[1] = {{"X", 1, "a\nb", 3}};
    CHECK_EQ_INT(runner_web_respond(&r, in.id, 200, bad, 1, NULL, 0, &why), -EINVAL);
    const struct web_header ct[1] = {{"Content-Type", 12, "text/plain", 10}};
    CHECK_EQ_INT(runner_web_respond(&r, in.id, 201, ct, 1, "hi", 2, &why), 0);
    runner_input_free(&in);
    static uint8_t buf[FRAME_MAX_DATAGRAM];
    struct frame_header h;
    int n = frame_recv(sv[0], buf, &h);
    CHECK(n > 0 && h.type == FRAME_ITEM && h.id == 8);
    struct web_head head;
    CHECK_EQ_INT(web_head_decode(buf + FRAME_HEADER_SIZE, (size_t)n, &head, &why), 0);
    CHECK(head.status == 201 && head.nheaders == 1 && head.body_len == 2 && !memcmp(head.body, "hi", 2));
    CHECK_EQ_INT(frame_recv(sv[0], buf, &h), 0);
    CHECK(h.type == FRAME_OUTPUT && h.id == 8);
    close(sv[0]);
    runner_close(&r);
}

int main(void)
{
    UNIT_RUN(test_header_roundtrip);
    UNIT_RUN(test_header_malformed);
    UNIT_RUN(test_send_recv_small);
    UNIT_RUN(test_recv_malformed);
    UNIT_RUN(test_chunked_1mib);
    UNIT_RUN(test_send_nonblocking_full);
    UNIT_RUN(test_asm_limits);
    UNIT_RUN(test_runner_api);
    UNIT_RUN(test_runner_item_window);
    UNIT_RUN(test_runner_streams_and_queue);
    UNIT_RUN(test_runner_stream_overflow);
    UNIT_RUN(test_runner_web);
    UNIT_MAIN_END();
}
