/* Unit tests for src/proto: header codec, chunked send/receive, reassembly, runner API. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

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
    UNIT_MAIN_END();
}
