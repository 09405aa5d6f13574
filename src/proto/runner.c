/* C client of the runner protocol (see proto/runner.h). */
#include "proto/runner.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"

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
    r->rxbuf = malloc(FRAME_MAX_DATAGRAM + 1);
    if (!r->rxbuf)
        return -ENOMEM;
    /* Keep the channel away from programs this runner may exec. */
    (void)fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    r->fd = (int)fd;
    frame_asm_init(&r->asm_, RUNNER_MAX_INPUT);
    return 0;
}

int runner_ready(struct runner *r)
{
    return frame_send(r->fd, FRAME_READY, 0, NULL, 0);
}

int runner_next(struct runner *r, struct runner_input *in)
{
    for (;;) {
        struct frame_header h;
        int n = frame_recv(r->fd, r->rxbuf, &h);
        if (n < 0)
            return n;
        const uint8_t *body = r->rxbuf + FRAME_HEADER_SIZE;
        switch (h.type) {
        case FRAME_INPUT: {
            uint8_t *data;
            size_t len;
            int rc = frame_asm_feed(&r->asm_, &h, body, &data, &len);
            if (rc == 1) {
                in->id = h.id;
                in->data = data;
                in->len = len;
                return 0;
            }
            if (rc == -E2BIG) {
                static const char msg[] = "input too large for this runner";
                (void)frame_send_error(r->fd, h.id, FRAME_ERR_USER, msg, sizeof msg - 1);
            } else if (rc < 0) {
                return rc;
            }
            break;
        }
        case FRAME_CANCEL:
            frame_asm_drop(&r->asm_, FRAME_INPUT, h.id);
            break;
        case FRAME_SHUTDOWN:
            return -EPIPE;
        default:
            break;
        }
    }
}

int runner_reply(struct runner *r, uint64_t id, const void *data, size_t len)
{
    return frame_send(r->fd, FRAME_OUTPUT, id, data, len);
}

int runner_fail(struct runner *r, uint64_t id, const char *msg)
{
    return frame_send_error(r->fd, id, FRAME_ERR_USER, msg, msg ? strlen(msg) : 0);
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
}
