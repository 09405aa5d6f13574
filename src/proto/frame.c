/* Runner protocol framing: header codec, chunked send/receive over SEQPACKET,
 * and per-(type, id) reassembly. Depends only on libc and src/base. */
#include "proto/frame.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "base/xalloc.h"

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void frame_header_encode(const struct frame_header *h, uint8_t out[FRAME_HEADER_SIZE])
{
    out[0] = h->type;
    out[1] = h->flags;
    out[2] = (uint8_t)h->reserved;
    out[3] = (uint8_t)(h->reserved >> 8);
    put_u32(out + 4, h->body_len);
    put_u32(out + 8, (uint32_t)h->id);
    put_u32(out + 12, (uint32_t)(h->id >> 32));
}

int frame_header_decode(const uint8_t *in, size_t len, struct frame_header *h)
{
    if (len < FRAME_HEADER_SIZE)
        return -EPROTO;
    h->type = in[0];
    h->flags = in[1];
    h->reserved = (uint16_t)(in[2] | in[3] << 8);
    h->body_len = get_u32(in + 4);
    h->id = (uint64_t)get_u32(in + 8) | (uint64_t)get_u32(in + 12) << 32;
    if (h->type < FRAME_HELLO || h->type > FRAME_TYPE_MAX)
        return -EPROTO;
    if (h->flags & ~FRAME_F_MORE)
        return -EPROTO;
    if (h->reserved != 0 || h->body_len > FRAME_MAX_BODY)
        return -EPROTO;
    return 0;
}

/* Sends one datagram made of a header and a body chunk. `wait` makes a non-blocking
 * fd wait (poll) for room instead of returning -EAGAIN. */
static int send_datagram(int fd, uint8_t type, uint8_t flags, uint64_t id, const void *body,
                         size_t len, int wait)
{
    assert(len <= FRAME_MAX_BODY);
    uint8_t hdr[FRAME_HEADER_SIZE];
    struct frame_header h = {.type = type, .flags = flags, .body_len = (uint32_t)len, .id = id};
    frame_header_encode(&h, hdr);
    struct iovec iov[2] = {
        {.iov_base = hdr, .iov_len = sizeof hdr},
        {.iov_base = (void *)body, .iov_len = len},
    };
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
    for (;;) {
        ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (n >= 0)
            return 0;
        if (errno == EINTR)
            continue;
        if ((errno == EAGAIN || errno == EWOULDBLOCK) && wait) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            if (poll(&p, 1, -1) < 0 && errno != EINTR)
                return -errno;
            continue;
        }
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

int frame_send(int fd, uint8_t type, uint64_t id, const void *body, size_t len)
{
    const uint8_t *p = body;
    size_t off = 0;
    int first = 1;
    do {
        size_t chunk = len - off > FRAME_MAX_BODY ? FRAME_MAX_BODY : len - off;
        uint8_t flags = off + chunk < len ? FRAME_F_MORE : 0;
        int r = send_datagram(fd, type, flags, id, p ? p + off : NULL, chunk, !first);
        if (r < 0)
            return r;
        first = 0;
        off += chunk;
    } while (off < len);
    return 0;
}

int frame_send_error(int fd, uint64_t id, enum frame_error_kind kind, const char *msg, size_t msg_len)
{
    if (msg_len > FRAME_MAX_BODY - 1)
        msg_len = FRAME_MAX_BODY - 1;
    uint8_t body[FRAME_MAX_BODY];
    body[0] = (uint8_t)kind;
    if (msg_len)
        memcpy(body + 1, msg, msg_len);
    return frame_send(fd, FRAME_ERROR, id, body, msg_len + 1);
}

int frame_recv(int fd, uint8_t *buf, struct frame_header *h)
{
    for (;;) {
        struct iovec iov = {.iov_base = buf, .iov_len = FRAME_MAX_DATAGRAM};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
        ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        }
        if (n == 0)
            return -EPIPE;
        if (msg.msg_flags & MSG_TRUNC)
            return -EPROTO;
        if (frame_header_decode(buf, (size_t)n, h) < 0)
            return -EPROTO;
        if ((size_t)n != FRAME_HEADER_SIZE + (size_t)h->body_len)
            return -EPROTO;
        assert((size_t)n <= FRAME_MAX_DATAGRAM);
        return (int)h->body_len;
    }
}

void frame_asm_init(struct frame_asm *a, size_t max_payload)
{
    memset(a, 0, sizeof *a);
    a->max_payload = max_payload;
}

/* Slot states: 0 free, 1 collecting, 2 discarding an oversized payload. */
enum { SLOT_FREE = 0, SLOT_COLLECT = 1, SLOT_DISCARD = 2 };

static struct frame_asm_slot *asm_find(struct frame_asm *a, uint8_t type, uint64_t id)
{
    for (size_t i = 0; i < FRAME_ASM_SLOTS; i++) {
        struct frame_asm_slot *s = &a->slots[i];
        if (s->used && s->type == type && s->id == id)
            return s;
    }
    return NULL;
}

static void slot_release(struct frame_asm_slot *s)
{
    free(s->data);
    memset(s, 0, sizeof *s);
}

/* Appends to a collecting slot, growing geometrically up to max_payload + 1. The
 * caller has checked that the payload stays within max_payload. */
static void slot_append(struct frame_asm *a, struct frame_asm_slot *s, const uint8_t *body, size_t n)
{
    assert(n <= a->max_payload - s->len);
    size_t need = s->len + n + 1;
    if (need > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < need)
            cap *= 2;
        if (cap > a->max_payload + 1)
            cap = a->max_payload + 1;
        s->data = xrealloc(s->data, cap);
        s->cap = cap;
    }
    assert(need <= s->cap);
    if (n)
        memcpy(s->data + s->len, body, n);
    s->len += n;
    s->data[s->len] = 0;
}

int frame_asm_feed(struct frame_asm *a, const struct frame_header *h, const uint8_t *body,
                   uint8_t **out, size_t *out_len)
{
    /* h comes from frame_header_decode, which bounds the body. */
    assert(h->body_len <= FRAME_MAX_BODY);
    int more = (h->flags & FRAME_F_MORE) != 0;
    size_t n = h->body_len;
    struct frame_asm_slot *s = asm_find(a, h->type, h->id);

    if (s && s->used == SLOT_DISCARD) {
        if (!more)
            slot_release(s);
        return 0;
    }
    if (!s) {
        if (n > a->max_payload) {
            if (!more)
                return -E2BIG;
            for (size_t i = 0; i < FRAME_ASM_SLOTS && !s; i++)
                if (!a->slots[i].used)
                    s = &a->slots[i];
            if (!s)
                return -ENOSPC;
            s->type = h->type;
            s->id = h->id;
            s->used = SLOT_DISCARD;
            return -E2BIG;
        }
        if (!more) {
            *out = xmemdup(body, n);
            *out_len = n;
            return 1;
        }
        for (size_t i = 0; i < FRAME_ASM_SLOTS && !s; i++)
            if (!a->slots[i].used)
                s = &a->slots[i];
        if (!s)
            return -ENOSPC;
        s->type = h->type;
        s->id = h->id;
        s->used = SLOT_COLLECT;
    }
    if (n > a->max_payload - s->len) {
        if (more) {
            free(s->data);
            s->data = NULL;
            s->len = s->cap = 0;
            s->used = SLOT_DISCARD;
        } else {
            slot_release(s);
        }
        return -E2BIG;
    }
    slot_append(a, s, body, n);
    if (more)
        return 0;
    *out = s->data;
    *out_len = s->len;
    s->data = NULL;
    slot_release(s);
    return 1;
}

void frame_asm_drop(struct frame_asm *a, uint8_t type, uint64_t id)
{
    struct frame_asm_slot *s = asm_find(a, type, id);
    if (s)
        slot_release(s);
}

void frame_asm_free(struct frame_asm *a)
{
    for (size_t i = 0; i < FRAME_ASM_SLOTS; i++)
        if (a->slots[i].used)
            slot_release(&a->slots[i]);
}
