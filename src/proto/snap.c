/* Parsers of the snapshot fork protocol (proto/snap.h). */
#include "proto/snap.h"

#include <assert.h>
#include <errno.h>
#include <linux/filter.h>
#include <string.h>

#include "proto/frame.h"

enum snap_sync_kind snap_parse_sync(const void *buf, size_t n, struct snap_reply *rep)
{
    const uint8_t *b = buf;
    if (n == 1)
        return b[0] == SNAP_MSG_ATTACH ? SNAP_SYNC_PID1 : b[0] == SNAP_MSG_RUNNER ? SNAP_SYNC_RUNNER : SNAP_SYNC_BAD;
    if (n != sizeof *rep)
        return SNAP_SYNC_BAD;
    memcpy(rep, buf, sizeof *rep);
    rep->msg[sizeof rep->msg - 1] = '\0';
    if (rep->tag == SNAP_MSG_FAILED)
        return SNAP_SYNC_FAILED;
    if (rep->tag != SNAP_MSG_DONE || rep->network_mounts_ns < rep->start_ns || rep->security_ns < rep->network_mounts_ns)
        return SNAP_SYNC_BAD;
    return SNAP_SYNC_DONE;
}

int snap_parse_child_exit(const uint8_t *body, size_t len, struct frame_exit_body *xb, char *text, size_t cap)
{
    assert(cap > 0);
    text[0] = '\0';
    if (len < sizeof *xb)
        return -EPROTO;
    memcpy(xb, body, sizeof *xb);
    if (xb->kind != FRAME_EXIT_EXITED && xb->kind != FRAME_EXIT_SIGNALED && xb->kind != SNAP_EXIT_FORK_FAILED)
        return -EPROTO;
    size_t n = len - sizeof *xb;
    if (n > cap - 1)
        n = cap - 1;
    memcpy(text, body + sizeof *xb, n);
    text[n] = '\0';
    return 0;
}

int snap_parse_resume(const uint8_t *body, size_t len, const uint8_t **filter, uint32_t *nfilter, const char **env,
                      size_t *env_len)
{
    uint32_t nf;
    if (len < sizeof nf)
        return -EPROTO;
    memcpy(&nf, body, sizeof nf);
    if (nf > SNAP_MAX_FILTER || len - sizeof nf < (size_t)nf * sizeof(struct sock_filter))
        return -EPROTO;
    size_t off = sizeof nf + (size_t)nf * sizeof(struct sock_filter);
    assert(off <= len);
    /* The entries end with a NUL, so a reader can walk them with strlen. */
    if (off < len && body[len - 1] != '\0')
        return -EPROTO;
    *filter = body + sizeof nf;
    *nfilter = nf;
    *env = (const char *)body + off;
    *env_len = len - off;
    return 0;
}
