/* worker/ops.h implemented over the in-process worker (worker.h): ids to pointers on
 * the way in, pointers to ids on the way out. */
#include "worker/local.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/hmap.h"
#include "base/xalloc.h"
#include "proto/frame.h"

/* Control bounds what a call holds by the window the seam promises; the runners keep
 * the protocol's. */
_Static_assert(WORKER_ITEM_WINDOW == FRAME_ITEM_WINDOW, "the seam's item window is the protocol's");
_Static_assert(WORKER_INPUT_WINDOW == FRAME_INPUT_WINDOW, "the seam's input window is the protocol's");

/* A container or snapshot the worker knows, by the id control gave it. */
struct local_rec {
    struct hmap_node node;      /* first: records are found by casting the node */
    struct worker_local *l;
    char id[64];
    struct ctr *ctr;            /* containers */
    struct worker_snapshot *snap; /* snapshots */
};

struct worker_local {
    struct worker *w;
    const struct worker_events *ev;
    void *ud;
    struct hmap ctrs, snaps;
};

static bool rec_eq(const struct hmap_node *n, const void *key)
{
    return !strcmp(((const struct local_rec *)n)->id, key);
}

static struct local_rec *rec_find(const struct hmap *m, const char *id)
{
    return (struct local_rec *)hmap_find(m, hmap_hash_str(id), rec_eq, id);
}

static struct local_rec *rec_new(struct worker_local *l, struct hmap *m, const char *id)
{
    struct local_rec *r = xcalloc(1, sizeof *r);
    r->l = l;
    snprintf(r->id, sizeof r->id, "%s", id);
    hmap_insert(m, &r->node, hmap_hash_str(r->id));
    return r;
}

static void rec_free(struct hmap *m, struct local_rec *r)
{
    hmap_remove(m, &r->node);
    free(r);
}

/* ---- events from the in-process worker, forwarded by id ---- */

static void on_ready(struct ctr *c, void *ud)
{
    struct local_rec *r = ud;
    (void)c;
    r->l->ev->ready(r->l->ud, r->id);
}

static void on_output(struct ctr *c, void *ud, uint64_t input_id, const void *data, size_t len)
{
    struct local_rec *r = ud;
    (void)c;
    r->l->ev->output(r->l->ud, r->id, input_id, data, len);
}

static void on_item(struct ctr *c, void *ud, uint64_t input_id, const void *data, size_t len)
{
    struct local_rec *r = ud;
    (void)c;
    r->l->ev->item(r->l->ud, r->id, input_id, data, len);
}

static void on_input_more_ack(struct ctr *c, void *ud, uint64_t input_id, uint64_t bytes)
{
    struct local_rec *r = ud;
    (void)c;
    r->l->ev->input_more_ack(r->l->ud, r->id, input_id, bytes);
}

static void on_input_error(struct ctr *c, void *ud, uint64_t input_id, enum ctr_fail kind, const char *msg)
{
    struct local_rec *r = ud;
    (void)c;
    r->l->ev->input_error(r->l->ud, r->id, input_id, kind, msg);
}

static void on_log(struct ctr *c, void *ud, int stream, uint64_t input_id, const char *line, size_t len)
{
    struct local_rec *r = ud;
    (void)c;
    r->l->ev->log(r->l->ud, r->id, stream, input_id, line, len);
}

static void on_exit_cb(struct ctr *c, void *ud, int kind, const char *msg)
{
    struct local_rec *r = ud;
    struct worker_local *l = r->l;
    struct ctr_stats st;
    ctr_stats(c, &st);
    char id[sizeof r->id];
    snprintf(id, sizeof id, "%s", r->id);
    rec_free(&l->ctrs, r);
    l->ev->exit(l->ud, id, kind, msg, &st);
}

static const struct worker_callbacks local_callbacks = {
    .on_ready = on_ready,
    .on_output = on_output,
    .on_item = on_item,
    .on_input_more_ack = on_input_more_ack,
    .on_input_error = on_input_error,
    .on_log = on_log,
    .on_exit = on_exit_cb,
};

static void snap_on_state(struct worker_snapshot *s, void *ud, enum snapshot_state st, const char *msg)
{
    struct local_rec *r = ud;
    struct worker_local *l = r->l;
    char id[sizeof r->id];
    snprintf(id, sizeof id, "%s", r->id);
    if (st == SNAPSHOT_GONE) {
        /* After GONE the id is free (ops.h): let the template go before reporting. */
        worker_snapshot_drop(s);
        rec_free(&l->snaps, r);
    }
    l->ev->snapshot_state(l->ud, id, st, msg);
}

static void snap_on_log(struct worker_snapshot *s, void *ud, int stream, const char *line, size_t len)
{
    struct local_rec *r = ud;
    (void)s;
    r->l->ev->snapshot_log(r->l->ud, r->id, stream, line, len);
}

static const struct snapshot_callbacks local_snap_callbacks = {
    .on_state = snap_on_state,
    .on_log = snap_on_log,
};

/* ---- operations ---- */

static void op_attach(void *w, const struct worker_events *ev, void *ud)
{
    struct worker_local *l = w;
    l->ev = ev;
    l->ud = ud;
}

static void op_inventory(void *w, struct worker_inventory *out)
{
    struct worker_local *l = w;
    const struct worker_config *cap = worker_capacity(l->w);
    memset(out, 0, sizeof *out);
    out->cpu_millicores = cap->cpu_millicores;
    out->memory_mib = cap->memory_mib;
    out->ngpus = cap->ngpus;
    memcpy(out->gpus, cap->gpus, sizeof out->gpus[0] * (size_t)cap->ngpus);
}

static int op_start(void *w, const struct ctr_spec *spec, struct gerr *err)
{
    struct worker_local *l = w;
    struct local_rec *r = rec_new(l, &l->ctrs, spec->id);
    int rc = worker_start(l->w, spec, r, &r->ctr, err);
    if (rc < 0)
        rec_free(&l->ctrs, r);
    return rc;
}

static struct ctr *ctr_of(struct worker_local *l, const char *id)
{
    struct local_rec *r = rec_find(&l->ctrs, id);
    return r ? r->ctr : NULL;
}

static int op_send_input(void *w, const char *ctr_id, uint64_t input_id, const char *call_id, const void *data,
                         size_t len, struct gerr *err)
{
    struct ctr *c = ctr_of(w, ctr_id);
    if (!c)
        return gerr_set(err, ESRCH, "container %s is gone", ctr_id);
    return ctr_send_input(c, input_id, call_id, data, len, err);
}

static int op_cancel_input(void *w, const char *ctr_id, uint64_t input_id)
{
    struct ctr *c = ctr_of(w, ctr_id);
    return c ? ctr_cancel_input(c, input_id) : -ESRCH;
}

static int op_item_ack(void *w, const char *ctr_id, uint64_t input_id, uint64_t bytes)
{
    struct ctr *c = ctr_of(w, ctr_id);
    return c ? ctr_item_ack(c, input_id, bytes) : -ESRCH;
}

static int op_send_input_more(void *w, const char *ctr_id, uint64_t input_id, const void *data, size_t len)
{
    struct ctr *c = ctr_of(w, ctr_id);
    return c ? ctr_send_input_more(c, input_id, data, len) : -ESRCH;
}

static void op_stop(void *w, const char *ctr_id, uint32_t grace_ms)
{
    struct ctr *c = ctr_of(w, ctr_id);
    if (c)
        ctr_stop(c, grace_ms);
}

static void op_kill(void *w, const char *ctr_id)
{
    struct ctr *c = ctr_of(w, ctr_id);
    if (c)
        ctr_kill(c);
}

static int op_info(void *w, const char *ctr_id, struct ctr_info *out)
{
    struct ctr *c = ctr_of(w, ctr_id);
    memset(out, 0, sizeof *out);
    if (!c)
        return -ESRCH;
    out->pid = ctr_pid(c);
    out->host_uid = ctr_host_uid(c);
    out->start_ns = ctr_start_ns(c);
    ctr_stats(c, &out->stats);
    out->timing = *ctr_timing(c);
    const char *tmpl = ctr_snapshot_of(c);
    snprintf(out->snapshot_of, sizeof out->snapshot_of, "%s", tmpl ? tmpl : "");
    return 0;
}

static void op_tick(void *w)
{
    struct worker_local *l = w;
    worker_sample_gpus(l->w);
}

static int op_snapshot_take(void *w, const struct ctr_spec *spec, struct gerr *err)
{
    struct worker_local *l = w;
    struct local_rec *r = rec_new(l, &l->snaps, spec->id);
    int rc = worker_snapshot_take(l->w, spec, &local_snap_callbacks, r, &r->snap, err);
    if (rc < 0)
        rec_free(&l->snaps, r);
    return rc;
}

static int op_snapshot_restore(void *w, const char *snap_id, const struct ctr_spec *spec, struct gerr *err)
{
    struct worker_local *l = w;
    struct local_rec *s = rec_find(&l->snaps, snap_id);
    if (!s)
        return gerr_set(err, EAGAIN, "snapshot %s is gone", snap_id);
    struct local_rec *r = rec_new(l, &l->ctrs, spec->id);
    int rc = worker_snapshot_restore(s->snap, spec, r, &r->ctr, err);
    if (rc < 0)
        rec_free(&l->ctrs, r);
    return rc;
}

static void op_snapshot_drop(void *w, const char *snap_id)
{
    struct worker_local *l = w;
    struct local_rec *s = rec_find(&l->snaps, snap_id);
    if (!s)
        return;
    worker_snapshot_drop(s->snap);
    rec_free(&l->snaps, s);
}

static int op_snapshot_info(void *w, const char *snap_id, struct snapshot_info *out)
{
    struct worker_local *l = w;
    struct local_rec *s = rec_find(&l->snaps, snap_id);
    memset(out, 0, sizeof *out);
    if (!s)
        return -ESRCH;
    out->state = worker_snapshot_state(s->snap);
    out->children = worker_snapshot_children(s->snap);
    struct ctr *t = worker_snapshot_ctr(s->snap);
    if (t) {
        uint64_t cpu = 0;
        out->pid = ctr_pid(t);
        ctr_usage(t, &out->memory_bytes, &cpu);
    }
    return 0;
}

static int op_volume_detach(void *w, const char *ctr_id, const char *path, struct gerr *err)
{
    struct ctr *c = ctr_of(w, ctr_id);
    return c ? ctr_volume_detach(c, path, err) : gerr_set(err, ESRCH, "container %s is gone", ctr_id);
}

static int op_volume_attach(void *w, const char *ctr_id, const char *path, const char *lower, const char *dir,
                            struct gerr *err)
{
    struct ctr *c = ctr_of(w, ctr_id);
    return c ? ctr_volume_attach(c, path, lower, dir, err) : gerr_set(err, ESRCH, "container %s is gone", ctr_id);
}

const struct worker_ops worker_local_ops = {
    .attach = op_attach,
    .inventory = op_inventory,
    .start = op_start,
    .send_input = op_send_input,
    .cancel_input = op_cancel_input,
    .item_ack = op_item_ack,
    .send_input_more = op_send_input_more,
    .stop = op_stop,
    .kill = op_kill,
    .info = op_info,
    .tick = op_tick,
    .snapshot_take = op_snapshot_take,
    .snapshot_restore = op_snapshot_restore,
    .snapshot_drop = op_snapshot_drop,
    .snapshot_info = op_snapshot_info,
    .volume_detach = op_volume_detach,
    .volume_attach = op_volume_attach,
};

int worker_local_new(struct ev_loop *loop, const struct worker_config *cfg, struct worker_local **out,
                     struct gerr *err)
{
    struct worker_local *l = xcalloc(1, sizeof *l);
    hmap_init(&l->ctrs, 256);
    hmap_init(&l->snaps, 64);
    int r = worker_new(loop, cfg, &local_callbacks, &l->w, err);
    if (r < 0) {
        hmap_free(&l->ctrs);
        hmap_free(&l->snaps);
        free(l);
        return r;
    }
    *out = l;
    return 0;
}

static void recs_free(struct hmap *m)
{
    for (size_t b = 0; b < m->nbuckets; b++)
        for (struct hmap_node *n = m->buckets[b], *next; n; n = next) {
            next = n->next;
            free(n);
        }
    hmap_free(m);
}

void worker_local_free(struct worker_local *l)
{
    if (!l)
        return;
    worker_free(l->w);
    recs_free(&l->ctrs);
    recs_free(&l->snaps);
    free(l);
}

struct worker *worker_local_worker(struct worker_local *l)
{
    return l->w;
}
