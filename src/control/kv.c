/* Dicts and queues (Modal's modal.Dict and modal.Queue): named objects of a
 * workspace, kept in the store, holding the client's serialised bytes (pickles from
 * the SDK; control never looks inside them).
 *
 * A dict maps key bytes to value bytes. A queue holds items in partitions (the
 * default one is ""), each first in, first out. A get on an empty partition may wait:
 * it becomes a waiter on that partition, answered by the next put into it or by its
 * timer, so that a client blocked in get is woken by another client's put without
 * polling and without the loop ever blocking. Waiters live in memory only: after a
 * restart the clients ask again.
 *
 * A partition that holds items has a record in the store with its count and its
 * expiry (Modal's partition_ttl, a day by default: removed when not put into for that
 * long). Expiry is checked where a partition is used (so nobody ever sees an expired
 * partition's items) and swept once a second (ctl_kv_tick), so that one nobody
 * touches again does not keep its items for ever; both survive a restart. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "control/internal.h"
#include "evloop/evloop.h"
#include "spec/spec.h"
#include "store/store.h"

struct ctl_kv_waiter {
    struct list_node link;      /* in ctl->kv_waiters, oldest first */
    struct ctl *ctl;
    char ws[CTL_WS_NAME_MAX + 1];
    char queue[CTL_QNAME_MAX];
    char partition[SPEC_QUEUE_PARTITION_MAX + 1];
    int64_t n;
    uint64_t timer;
    ctl_kv_answer_cb cb;
    void *ud;
};

static const char *kind_name(enum ctl_kv_kind kind)
{
    return kind == CTL_KV_DICT ? "dict" : "queue";
}

/* ---------- request bodies ---------- */

int ctl_kv_req_parse(enum ctl_kv_kind kind, const char *op, json_t *body, struct spec_kv_req *r, struct ctl_error *e)
{
    char field[SPEC_FIELD_MAX];
    struct gerr err;
    int rc = spec_kv_req_parse(kind == CTL_KV_DICT ? SPEC_KV_DICT : SPEC_KV_QUEUE, op, body, r, field, &err);
    if (rc < 0)
        ctl_err(e, rc == -ENOENT ? CTL_E_NOT_FOUND : rc == -E2BIG ? CTL_E_TOO_LARGE : CTL_E_INVALID,
                rc == -ENOENT ? "not_found" : rc == -E2BIG ? "too_large" : "invalid_argument", field[0] ? field : NULL,
                "%s", err.msg);
    return rc;
}

/* ---------- objects ---------- */

static int qualify_checked(const char *ws, enum ctl_kv_kind kind, const char *local, char qname[CTL_QNAME_MAX],
                           struct ctl_error *e)
{
    if (!spec_secret_name_valid(local)) {
        ctl_err(e, CTL_E_INVALID, "invalid_argument", "name", "name: a %s name must be %s", kind_name(kind),
                SPEC_SECRET_NAME_CHARS);
        return -EINVAL;
    }
    ctl_qualify(qname, ws, local);
    return 0;
}

static int store_failed(struct ctl_error *e, const struct gerr *err)
{
    ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "%s", err->msg);
    return -EIO;
}

/* 0 when the object exists (*created_at: when, unless NULL); CTL_E_NOT_FOUND otherwise. */
static int object_exists(struct ctl *c, enum ctl_kv_kind kind, const char *qname, double *created_at,
                         struct ctl_error *e)
{
    struct gerr err;
    int r = store_kvobj_exists(c->store, kind_name(kind), qname, created_at, &err);
    if (r == -ENOENT) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "%s %s not found", kind_name(kind), ctl_local_name(qname));
        return r;
    }
    return r < 0 ? store_failed(e, &err) : 0;
}

/* qname of an existing object; CTL_E_INVALID for a bad name, CTL_E_NOT_FOUND. */
static int find_object(struct ctl *c, const char *ws, enum ctl_kv_kind kind, const char *name,
                       char qname[CTL_QNAME_MAX], struct ctl_error *e)
{
    int r = qualify_checked(ws, kind, name, qname, e);
    return r < 0 ? r : object_exists(c, kind, qname, NULL, e);
}

json_t *ctl_kv_create(struct ctl *c, const char *ws, enum ctl_kv_kind kind, const char *name, bool create_if_missing,
                      struct ctl_error *e)
{
    char qname[CTL_QNAME_MAX];
    if (qualify_checked(ws, kind, name, qname, e) < 0)
        return NULL;
    struct gerr err;
    int created = 0;
    if (create_if_missing) {
        created = store_kvobj_create(c->store, kind_name(kind), qname, wall_s(), &err);
        if (created < 0) {
            store_failed(e, &err);
            return NULL;
        }
        if (created)
            log_info("control", "%s %s created", kind_name(kind), qname);
    }
    double created_at = 0;
    if (object_exists(c, kind, qname, &created_at, e) < 0)
        return NULL;
    return json_pack("{s:s,s:b,s:f}", "name", name, "created", created, "created_at", created_at);
}

struct list_ud {
    json_t *arr;
};

static int list_row(const char *name, double created_at, int64_t count, void *ud)
{
    struct list_ud *l = ud;
    json_array_append_new(l->arr, json_pack("{s:s,s:f,s:I}", "name", ctl_local_name(name), "created_at", created_at,
                                            "len", (json_int_t)count));
    return 0;
}

json_t *ctl_kv_list(struct ctl *c, const char *ws, enum ctl_kv_kind kind, struct ctl_error *e)
{
    struct list_ud l = {json_array()};
    struct gerr err;
    if (store_kvobj_list(c->store, kind_name(kind), ws, wall_s(), list_row, &l, &err) < 0) {
        json_decref(l.arr);
        store_failed(e, &err);
        return NULL;
    }
    return json_pack("{s:o}", kind == CTL_KV_DICT ? "dicts" : "queues", l.arr);
}

static void waiter_answer(struct ctl_kv_waiter *w, json_t *answer, const struct ctl_error *e);

int ctl_kv_delete(struct ctl *c, const char *ws, enum ctl_kv_kind kind, const char *name, struct ctl_error *e)
{
    char qname[CTL_QNAME_MAX];
    if (qualify_checked(ws, kind, name, qname, e) < 0)
        return -EINVAL;
    struct gerr err;
    int r = store_kvobj_delete(c->store, kind_name(kind), qname, &err);
    if (r == -ENOENT) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "%s %s not found", kind_name(kind), name);
        return r;
    }
    if (r < 0)
        return store_failed(e, &err);
    if (kind == CTL_KV_QUEUE) {
        struct ctl_error gone;
        ctl_err(&gone, CTL_E_NOT_FOUND, "not_found", NULL, "queue %s was deleted", name);
        list_for_each_safe(w, &c->kv_waiters, struct ctl_kv_waiter, link)
            if (!strcmp(w->queue, qname))
                waiter_answer(w, NULL, &gone);
    }
    log_info("control", "%s %s deleted", kind_name(kind), qname);
    return 0;
}

/* ---------- dicts ---------- */

static json_t *b64_json(const void *data, size_t len)
{
    char *s;
    size_t n;
    base64_encode(data, len, &s, &n);
    json_t *j = json_stringn_nocheck(s, n);
    free(s);
    return j;
}

/* A page of entries or items: at most limit of them and SPEC_KV_PAGE_BYTES of values
 * (but always the first), so that one answer stays bounded. */
struct page {
    json_t *arr;
    int64_t limit, n;
    size_t bytes;
    bool more;
    int64_t last_id;
};

static int page_room(struct page *p, size_t len)
{
    if (p->n >= p->limit || (p->n > 0 && p->bytes + len > SPEC_KV_PAGE_BYTES)) {
        p->more = true;
        return 1;
    }
    p->bytes += len;
    p->n++;
    return 0;
}

static int dict_page_row(const void *key, size_t klen, const void *value, size_t vlen, void *ud)
{
    struct page *p = ud;
    if (page_room(p, klen + vlen))
        return 1;
    json_array_append_new(p->arr, json_pack("[o,o]", b64_json(key, klen), b64_json(value, vlen)));
    return 0;
}

static json_t *dict_items(struct ctl *c, const char *qname, const struct spec_kv_req *r, struct ctl_error *e)
{
    /* One more than the page holds tells whether there is more. */
    struct page p = {.arr = json_array(), .limit = r->limit};
    struct gerr err;
    if (store_dict_list(c->store, qname, r->after_key, r->after_klen, r->limit + 1, dict_page_row, &p, &err) < 0) {
        json_decref(p.arr);
        store_failed(e, &err);
        return NULL;
    }
    json_t *next = json_null();
    if (p.more && p.n > 0)
        next = json_incref(json_array_get(json_array_get(p.arr, (size_t)p.n - 1), 0));
    return json_pack("{s:o,s:o}", "items", p.arr, "next", next);
}

/* get, contains and pop: the value of r->key, removed for pop. */
static json_t *dict_lookup(struct ctl *c, const char *qname, const char *op, const struct spec_kv_req *r,
                           struct ctl_error *e)
{
    struct gerr err;
    AUTO_FREE void *value = NULL;
    size_t vlen = 0;
    bool pop = !strcmp(op, "pop");
    if (pop && store_begin(c->store, &err) < 0) {
        store_failed(e, &err);
        return NULL;
    }
    int g = store_dict_get(c->store, qname, r->key, r->klen, &value, &vlen, &err);
    if (g == 0 && pop)
        g = store_dict_delete(c->store, qname, r->key, r->klen, &err) < 0 ? -EIO : 0;
    if (pop && (g < 0 && g != -ENOENT ? store_rollback(c->store, NULL) : store_commit(c->store, &err)) < 0)
        g = -EIO;
    if (g < 0 && g != -ENOENT) {
        store_failed(e, &err);
        return NULL;
    }
    json_t *o = json_pack("{s:b}", "found", g == 0);
    if (g == 0 && strcmp(op, "contains"))
        json_object_set_new(o, "value", b64_json(value, vlen));
    return o;
}

static json_t *dict_update(struct ctl *c, const char *qname, const struct spec_kv_req *r, struct ctl_error *e)
{
    struct gerr err;
    if (store_begin(c->store, &err) < 0) {
        store_failed(e, &err);
        return NULL;
    }
    for (size_t i = 0; i < r->nvalues; i++) {
        if (store_dict_put(c->store, qname, r->keys[i].data, r->keys[i].len, r->values[i].data, r->values[i].len,
                           false, &err) < 0) {
            store_rollback(c->store, NULL);
            store_failed(e, &err);
            return NULL;
        }
    }
    if (store_commit(c->store, &err) < 0) {
        store_failed(e, &err);
        return NULL;
    }
    return json_pack("{s:I}", "written", (json_int_t)r->nvalues);
}

json_t *ctl_dict_op(struct ctl *c, const char *ws, const char *name, const char *op, const struct spec_kv_req *r,
                    struct ctl_error *e)
{
    char qname[CTL_QNAME_MAX];
    if (find_object(c, ws, CTL_KV_DICT, name, qname, e) < 0)
        return NULL;
    struct gerr err;
    if (!strcmp(op, "get") || !strcmp(op, "contains") || !strcmp(op, "pop"))
        return dict_lookup(c, qname, op, r, e);
    if (!strcmp(op, "update"))
        return dict_update(c, qname, r, e);
    if (!strcmp(op, "items"))
        return dict_items(c, qname, r, e);
    if (!strcmp(op, "put")) {
        int w = store_dict_put(c->store, qname, r->key, r->klen, r->value, r->vlen, r->skip_if_exists, &err);
        return w < 0 ? (store_failed(e, &err), NULL) : json_pack("{s:b}", "written", w > 0);
    }
    if (!strcmp(op, "len")) {
        int64_t n = 0;
        if (store_dict_count(c->store, qname, &n, &err) < 0)
            return store_failed(e, &err), NULL;
        return json_pack("{s:I}", "len", (json_int_t)n);
    }
    if (store_dict_clear(c->store, qname, &err) < 0) /* clear */
        return store_failed(e, &err), NULL;
    return json_object();
}

/* ---------- queues ---------- */

static int queue_page_row(int64_t id, const void *value, size_t len, void *ud)
{
    struct page *p = ud;
    if (page_room(p, len))
        return 1;
    p->last_id = id;
    json_array_append_new(p->arr, b64_json(value, len));
    return 0;
}

/* The items partition holds (*items), after removing it if it expired. */
static int partition_live(struct ctl *c, const char *qname, const char *partition, int64_t *items,
                          struct ctl_error *e)
{
    struct gerr err;
    double expires_at;
    int r = store_queue_partition(c->store, qname, partition, items, &expires_at, &err);
    if (r == -ENOENT) {
        *items = 0;
        return 0;
    }
    if (r < 0)
        return store_failed(e, &err);
    if (expires_at > wall_s())
        return 0;
    if (store_queue_clear(c->store, qname, partition, &err) < 0)
        return store_failed(e, &err);
    log_info("control", "queue %s: partition '%s' expired with %lld items", qname, partition, (long long)*items);
    *items = 0;
    return 0;
}

/* Reads up to n items of the partition after id after into a page (taken: removed). */
static int queue_read(struct ctl *c, const char *qname, const char *partition, int64_t after, int64_t n, bool take,
                      struct page *p, struct ctl_error *e)
{
    *p = (struct page){.arr = json_array(), .limit = n, .last_id = after};
    int64_t items;
    if (partition_live(c, qname, partition, &items, e) < 0) {
        json_decref(p->arr);
        p->arr = NULL;
        return -1;
    }
    if (items == 0)
        return 0;
    struct gerr err;
    int r = take ? store_begin(c->store, &err) : 0;
    if (r == 0)
        r = store_queue_list(c->store, qname, partition, after, n + 1, queue_page_row, p, &err);
    if (r == 0 && take && p->n > 0)
        r = store_queue_remove_upto(c->store, qname, partition, p->last_id, &err);
    if (take && (r < 0 ? store_rollback(c->store, NULL) : (r = store_commit(c->store, &err))) < 0)
        r = -EIO;
    if (r < 0) {
        json_decref(p->arr);
        p->arr = NULL;
        return store_failed(e, &err);
    }
    return 0;
}

static void waiter_free(struct ctl_kv_waiter *w)
{
    list_remove(&w->link);
    if (w->timer)
        ev_timer_cancel(w->ctl->loop, w->timer);
    free(w);
}

/* Answers w (answer, or NULL and e) and frees it; the callback must not cancel it. */
static void waiter_answer(struct ctl_kv_waiter *w, json_t *answer, const struct ctl_error *e)
{
    ctl_kv_answer_cb cb = w->cb;
    void *ud = w->ud;
    waiter_free(w);
    cb(ud, answer, e);
}

static void waiter_timeout(struct ev_loop *loop, void *data)
{
    (void)loop;
    struct ctl_kv_waiter *w = data;
    w->timer = 0;
    waiter_answer(w, json_pack("{s:[]}", "values"), NULL);
}

void ctl_kv_waiter_cancel(struct ctl *c, struct ctl_kv_waiter *w)
{
    (void)c;
    if (w)
        waiter_free(w);
}

/* Hands the items of a partition that was just put into to its waiters, oldest first. */
static void wake_waiters(struct ctl *c, const char *qname, const char *partition)
{
    list_for_each_safe(w, &c->kv_waiters, struct ctl_kv_waiter, link) {
        if (strcmp(w->queue, qname) || strcmp(w->partition, partition))
            continue;
        struct page p;
        struct ctl_error e;
        if (queue_read(c, qname, partition, 0, w->n, true, &p, &e) < 0) {
            waiter_answer(w, NULL, &e);
            continue;
        }
        if (p.n == 0) {
            json_decref(p.arr);
            return;
        }
        waiter_answer(w, json_pack("{s:o}", "values", p.arr), NULL);
    }
}

static json_t *queue_put(struct ctl *c, const char *qname, const struct spec_kv_req *r, struct ctl_error *e)
{
    struct gerr err;
    int64_t have = 0;
    if (partition_live(c, qname, r->partition, &have, e) < 0)
        return NULL;
    if (have + (int64_t)r->nvalues > SPEC_QUEUE_PARTITION_ITEMS) {
        ctl_err(e, CTL_E_CONFLICT, "queue_full", "values",
                "queue %s is full: a partition holds at most %u items (it has %lld, this put adds %zu)",
                ctl_local_name(qname), SPEC_QUEUE_PARTITION_ITEMS, (long long)have, r->nvalues);
        return NULL;
    }
    if (store_begin(c->store, &err) < 0)
        return store_failed(e, &err), NULL;
    for (size_t i = 0; i < r->nvalues; i++) {
        if (store_queue_push(c->store, qname, r->partition, r->values[i].data, r->values[i].len, &err) < 0) {
            store_rollback(c->store, NULL);
            return store_failed(e, &err), NULL;
        }
    }
    if (r->nvalues && store_queue_partition_put(c->store, qname, r->partition, (int64_t)r->nvalues, r->partition_ttl,
                                                wall_s(), &err) < 0) {
        store_rollback(c->store, NULL);
        return store_failed(e, &err), NULL;
    }
    if (store_commit(c->store, &err) < 0)
        return store_failed(e, &err), NULL;
    if (r->nvalues)
        wake_waiters(c, qname, r->partition);
    return json_pack("{s:I}", "put", (json_int_t)r->nvalues);
}

static size_t waiters_of(struct ctl *c, const char *ws)
{
    size_t n = 0;
    list_for_each(w, &c->kv_waiters, struct ctl_kv_waiter, link)
        n += !strcmp(w->ws, ws);
    return n;
}

int ctl_queue_get(struct ctl *c, const char *ws, const char *name, const struct spec_kv_req *r, ctl_kv_answer_cb cb,
                  void *ud, struct ctl_kv_waiter **out, struct ctl_error *e)
{
    *out = NULL;
    char qname[CTL_QNAME_MAX];
    if (find_object(c, ws, CTL_KV_QUEUE, name, qname, e) < 0)
        return -1;
    struct page p;
    if (queue_read(c, qname, r->partition, 0, r->n, true, &p, e) < 0)
        return -1;
    if (p.n > 0 || r->timeout_ms == 0) {
        cb(ud, json_pack("{s:o}", "values", p.arr), NULL);
        return 0;
    }
    json_decref(p.arr);
    if (c->shutting_down) {
        ctl_err(e, CTL_E_SHUTTING_DOWN, "shutting_down", NULL, "gustd is shutting down; retry shortly");
        return -1;
    }
    if (waiters_of(c, ws) >= CTL_KV_WAITERS_MAX) {
        ctl_err(e, CTL_E_OVERLOADED, "too_many_waiters", NULL,
                "workspace %s has %u blocked queue gets already; try again later", ws, CTL_KV_WAITERS_MAX);
        return -1;
    }
    struct ctl_kv_waiter *w = xcalloc(1, sizeof *w);
    w->ctl = c;
    snprintf(w->ws, sizeof w->ws, "%s", ws);
    memcpy(w->queue, qname, sizeof w->queue);
    memcpy(w->partition, r->partition, sizeof w->partition);
    w->n = r->n;
    w->cb = cb;
    w->ud = ud;
    list_push_back(&c->kv_waiters, &w->link);
    w->timer = ev_timer_add(c->loop, r->timeout_ms, waiter_timeout, w);
    *out = w;
    return 0;
}

json_t *ctl_queue_op(struct ctl *c, const char *ws, const char *name, const char *op, const struct spec_kv_req *r,
                     struct ctl_error *e)
{
    char qname[CTL_QNAME_MAX];
    if (find_object(c, ws, CTL_KV_QUEUE, name, qname, e) < 0)
        return NULL;
    struct gerr err;
    if (!strcmp(op, "put"))
        return queue_put(c, qname, r, e);
    if (!strcmp(op, "len")) {
        int64_t n = 0;
        if (!r->total && partition_live(c, qname, r->partition, &n, e) < 0)
            return NULL;
        if (r->total && store_queue_count_total(c->store, qname, wall_s(), &n, &err) < 0)
            return store_failed(e, &err), NULL;
        return json_pack("{s:I}", "len", (json_int_t)n);
    }
    if (!strcmp(op, "items")) {
        struct page p;
        if (queue_read(c, qname, r->partition, r->after, r->limit, false, &p, e) < 0)
            return NULL;
        return json_pack("{s:o,s:o,s:I}", "values", p.arr, "next",
                         p.more ? json_integer((json_int_t)p.last_id) : json_null(), "last", (json_int_t)p.last_id);
    }
    if (store_queue_clear(c->store, qname, r->all ? NULL : r->partition, &err) < 0) /* clear */
        return store_failed(e, &err), NULL;
    return json_object();
}

/* Expired partitions removed per sweep: a sweep is a few milliseconds at most (each
 * partition up to 5,000 items), and the rest go on the next one, a second later. */
#define KV_SWEEP_BATCH 64

struct expired {
    char queue[CTL_QNAME_MAX];
    char partition[SPEC_QUEUE_PARTITION_MAX + 1];
};

struct expired_list {
    struct expired v[KV_SWEEP_BATCH];
    size_t n;
};

static int expired_row(const char *queue, const char *partition, void *ud)
{
    struct expired_list *l = ud;
    if (l->n == KV_SWEEP_BATCH)
        return 1;
    snprintf(l->v[l->n].queue, sizeof l->v[l->n].queue, "%s", queue);
    snprintf(l->v[l->n].partition, sizeof l->v[l->n].partition, "%s", partition);
    l->n++;
    return 0;
}

void ctl_kv_tick(struct ctl *c)
{
    /* Listed first, removed after: the listing's statement is done before any write. */
    AUTO_FREE struct expired_list *l = xcalloc(1, sizeof *l);
    struct gerr err;
    if (store_queue_expired(c->store, wall_s(), KV_SWEEP_BATCH, expired_row, l, &err) < 0) {
        log_warn("control", "queue partitions: %s", err.msg);
        return;
    }
    for (size_t i = 0; i < l->n; i++) {
        if (store_queue_clear(c->store, l->v[i].queue, l->v[i].partition, &err) < 0) {
            log_warn("control", "queue %s: removing expired partition '%s': %s", l->v[i].queue, l->v[i].partition,
                     err.msg);
            return;
        }
        log_info("control", "queue %s: partition '%s' expired", l->v[i].queue, l->v[i].partition);
    }
}

void ctl_kv_shutdown(struct ctl *c)
{
    struct ctl_error e;
    ctl_err(&e, CTL_E_SHUTTING_DOWN, "shutting_down", NULL, "gustd is shutting down; retry shortly");
    list_for_each_safe(w, &c->kv_waiters, struct ctl_kv_waiter, link)
        waiter_answer(w, NULL, &e);
}

void ctl_kv_free(struct ctl *c)
{
    list_for_each_safe(w, &c->kv_waiters, struct ctl_kv_waiter, link)
        waiter_free(w);
}
