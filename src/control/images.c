/* Named images: a tree the client uploaded, added under a name, or an OCI image it
 * uploaded, imported, goes into the content-addressed store and is materialised once
 * (on the job thread, below); names are kept in the store. Also the built-in images,
 * and gc of what nothing uses. gustd never opens a host path a client names. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>

#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "cas/cas.h"
#include "control/internal.h"
#include "evloop/evloop.h"
#include "image/image.h"

/* The rootfs of registered image name (its materialised copy, or host /usr based). */
int ctl_image_resolve(struct ctl *c, const char *ws, const char *name, char *rootfs, size_t cap, bool *host_usr,
                      struct gerr *err)
{
    char qname[CTL_QNAME_MAX];
    if (ctl_image_qname(c, ws, name, qname) < 0)
        return gerr_set(err, ENOENT, "image %s not found", name);
    AUTO_FREE char *path = NULL;
    int r = store_image_get(c->store, qname, &path, host_usr, err);
    if (r < 0)
        return r;
    snprintf(rootfs, cap, "%s", path);
    return 0;
}

static bool image_name_ok(const char *name, struct ctl_error *e)
{
    if (name_is_valid(name))
        return true;
    ctl_err(e, CTL_E_INVALID, "invalid_argument", "name",
            "name: \"%s\" is not a valid image name; use 1-63 characters [A-Za-z0-9_-], starting alphanumeric", name);
    return false;
}

/* ---- image jobs: ingest off the loop thread ----
 * Adding an uploaded tree (materialising it) and importing an OCI image (unpacking its
 * layers, storing the result) take as long as the image is large, so they run on one
 * job thread, never on the loop. A job's thread touches only the store of objects
 * (thread-safe: src/cas) and the images directory (image_materialize is thread-safe);
 * the database, the names and the client's answer are the loop's, in job_finish. One
 * thread, so imports queue behind each other and at most one writes at a time. */

#define IMAGE_JOBS_MAX 64   /* queued or running; more is 409 busy */

enum image_job_kind { JOB_ADD_TREE, JOB_IMPORT_OCI };

struct ctl_image_job {
    struct list_node link;         /* in jobs->queue, then jobs->done */
    struct ctl *c;
    enum image_job_kind kind;
    char name[CTL_QNAME_MAX];      /* "<workspace>/<name>" */
    char tree[IMAGE_ID_MAX];
    bool host_usr;
    struct ctl_image_sink sink;    /* .done NULL once detached (loop thread only) */
    /* results, written by the job thread before the job moves to done */
    int r;
    struct gerr err;
    char id[IMAGE_ID_MAX];
    char rootfs[PATH_MAX];
    struct cas_stats cs;
    uint64_t t0;
};

struct ctl_image_jobs {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th;
    struct list_node queue, done;  /* under mu */
    bool stop;                     /* under mu */
    struct ev_async *wake;
    size_t active;                 /* submitted, not finished (loop thread) */
};

/* Files and bytes of the stored tree d (counted from its manifest). */
static int tree_counts(struct cas *cas, const struct cas_digest *d, struct cas_stats *cs, struct gerr *err)
{
    json_t *m = NULL;
    int r = cas_manifest_load(cas, d, &m, err);
    if (r < 0)
        return r;
    size_t i;
    json_t *en;
    json_array_foreach(json_object_get(m, "entries"), i, en) {
        if (!strcmp(json_string_value(json_object_get(en, "type")), "file")) {
            cs->files++;
            cs->bytes_in += (uint64_t)json_integer_value(json_object_get(en, "size"));
        }
    }
    json_decref(m);
    return 0;
}

/* The job's work, on the job thread. */
static void job_work(struct ctl_image_job *j)
{
    struct ctl *c = j->c;
    struct cas_digest d;
    if (cas_digest_parse(j->tree, &d) < 0 || !cas_has(c->cas, &d)) {
        j->r = gerr_set(&j->err, ENOENT, "tree %s is not stored; upload it first (POST /v1/mounts)", j->tree);
        return;
    }
    if (j->kind == JOB_ADD_TREE) {
        j->r = tree_counts(c->cas, &d, &j->cs, &j->err);
        if (j->r == 0)
            j->r = image_materialize(c->cas, c->images_dir, j->tree, j->rootfs, sizeof j->rootfs, &j->err);
        if (j->r == 0)
            snprintf(j->id, sizeof j->id, "%s", j->tree);
        return;
    }
    j->r = image_import_oci_tree(c->cas, c->images_dir, j->tree, j->id, j->rootfs, sizeof j->rootfs, &j->cs, &j->err);
}

static void *job_thread(void *arg)
{
    struct ctl_image_jobs *q = arg;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->stop && list_empty(&q->queue))
            pthread_cond_wait(&q->cv, &q->mu);
        if (q->stop)
            break;
        struct ctl_image_job *j = list_first_entry(&q->queue, struct ctl_image_job, link);
        list_remove(&j->link);
        pthread_mutex_unlock(&q->mu);
        job_work(j);
        pthread_mutex_lock(&q->mu);
        list_push_back(&q->done, &j->link);
        ev_async_send(q->wake);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

/* The answer to an image add or import. */
static json_t *image_added_json(const char *name, const char *id, const char *rootfs, bool host_usr,
                                const struct cas_stats *cs, bool objects)
{
    json_t *j = json_pack("{s:s,s:s,s:s,s:b,s:I,s:I}", "name", name, "id", id, "rootfs", rootfs, "host_usr",
                          host_usr, "files", (json_int_t)cs->files, "bytes", (json_int_t)cs->bytes_in);
    if (objects) {
        json_object_set_new(j, "objects_written", json_integer((json_int_t)cs->objects_written));
        json_object_set_new(j, "objects_reused", json_integer((json_int_t)cs->objects_reused));
    }
    return j;
}

/* A finished job, on the loop thread: register the name, answer the client. */
static void job_finish(struct ctl *c, struct ctl_image_job *j)
{
    const char *field = j->kind == JOB_ADD_TREE ? "tree" : "oci";
    struct ctl_error e;
    json_t *out = NULL;
    if (j->r == 0)
        j->r = store_image_put(c->store, j->name, j->rootfs, j->host_usr, j->id, wall_s(), &j->err);
    if (j->r < 0) {
        /* A bad OCI image is the client's; an uploaded tree that cannot be
         * materialised (a corrupt object) is gustd's. */
        bool bad_input = j->r == -ENOENT || (j->kind == JOB_IMPORT_OCI && (j->r == -EBADMSG || j->r == -EINVAL ||
                                                                          j->r == -ENOTDIR));
        ctl_err(&e, bad_input ? CTL_E_INVALID : CTL_E_INTERNAL, bad_input ? "invalid_argument" : "internal",
                bad_input ? field : NULL, "%s: image %s: %s", field, ctl_local_name(j->name), j->err.msg);
        log_warn("control", "image %s: %s", j->name, j->err.msg);
    } else {
        log_info("control", "image %s = %s (%s %s): %llu files, %.1f MB, %.0f ms", j->name, j->id,
                 j->kind == JOB_ADD_TREE ? "tree" : "oci", j->tree, (unsigned long long)j->cs.files,
                 (double)j->cs.bytes_in / 1e6, (double)(mono_ns() - j->t0) / 1e6);
        out = image_added_json(ctl_local_name(j->name), j->id, j->rootfs, j->host_usr, &j->cs,
                               j->kind == JOB_IMPORT_OCI);
    }
    if (j->sink.done)
        j->sink.done(j->sink.ud, out, out ? NULL : &e);
    json_decref(out);
}

static void jobs_wake(struct ev_loop *loop, void *data)
{
    struct ctl *c = data;
    struct ctl_image_jobs *q = c->image_jobs;
    for (;;) {
        pthread_mutex_lock(&q->mu);
        struct ctl_image_job *j = list_first_entry(&q->done, struct ctl_image_job, link);
        if (j)
            list_remove(&j->link);
        pthread_mutex_unlock(&q->mu);
        if (!j)
            return;
        q->active--;
        job_finish(c, j);
        free(j);
    }
}

/* The job queue, started on first use. */
static int jobs_get(struct ctl *c, struct ctl_image_jobs **out, struct gerr *err)
{
    if (c->image_jobs) {
        *out = c->image_jobs;
        return 0;
    }
    struct ctl_image_jobs *q = xcalloc(1, sizeof *q);
    list_init(&q->queue);
    list_init(&q->done);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    int r = ev_async_new(c->loop, jobs_wake, c, &q->wake);
    if (r < 0) {
        free(q);
        return gerr_set(err, -r, "the image job wake-up: %s", strerror(-r));
    }
    if ((r = pthread_create(&q->th, NULL, job_thread, q)) != 0) {
        ev_async_free(q->wake);
        free(q);
        return gerr_set(err, r, "start the image job thread: %s", strerror(r));
    }
    c->image_jobs = *out = q;
    return 0;
}

void ctl_image_jobs_free(struct ctl *c)
{
    struct ctl_image_jobs *q = c->image_jobs;
    if (!q)
        return;
    /* A running job is finished first (its writes are atomic renames either way);
     * queued ones are dropped unanswered, as their connections are going too. */
    pthread_mutex_lock(&q->mu);
    q->stop = true;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->th, NULL);
    list_for_each_safe(j, &q->queue, struct ctl_image_job, link) free(j);
    list_for_each_safe(j, &q->done, struct ctl_image_job, link) free(j);
    ev_async_free(q->wake);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    free(q);
    c->image_jobs = NULL;
}

bool ctl_image_jobs_running(struct ctl *c)
{
    return c->image_jobs && c->image_jobs->active > 0;
}

void ctl_image_job_detach(struct ctl_image_job *j)
{
    if (j)
        j->sink.done = NULL;
}

/* A tree id from the client: "sha256:<64 hex>". */
static bool tree_id_ok(const char *tree, const char *field, struct ctl_error *e)
{
    if (spec_image_id_valid(tree))
        return true;
    ctl_err(e, CTL_E_INVALID, "invalid_argument", field,
            "%s: must be the id of an uploaded tree, \"sha256:\" and 64 lowercase hex digits (POST /v1/mounts "
            "answers it)", field);
    return false;
}

static int job_submit(struct ctl *c, enum image_job_kind kind, const char *ws, const char *name, const char *tree,
                      bool host_usr, const struct ctl_image_sink *sink, struct ctl_image_job **out,
                      struct ctl_error *e)
{
    const char *field = kind == JOB_ADD_TREE ? "tree" : "oci";
    if (!image_name_ok(name, e) || !tree_id_ok(tree, field, e))
        return -EINVAL;
    struct cas_digest d;
    /* Only a tree this workspace made: another's is "not stored", as a missing one. */
    if (cas_digest_parse(tree, &d) < 0 || !cas_has(c->cas, &d) || !ctl_ws_holds(c, ws, tree)) {
        ctl_err(e, CTL_E_INVALID, "invalid_argument", field,
                "%s: tree %s is not stored; upload its files and create it with POST /v1/mounts first", field, tree);
        return -ENOENT;
    }
    struct ctl_image_jobs *q = NULL;
    struct gerr err;
    if (jobs_get(c, &q, &err) < 0) {
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "%s", err.msg);
        return -EIO;
    }
    if (q->active >= IMAGE_JOBS_MAX) {
        ctl_err(e, CTL_E_CONFLICT, "busy", NULL, "%d image adds and imports are queued already; try again later",
                IMAGE_JOBS_MAX);
        return -EBUSY;
    }
    struct ctl_image_job *j = xcalloc(1, sizeof *j);
    j->c = c;
    j->kind = kind;
    ctl_qualify(j->name, ws, name);
    snprintf(j->tree, sizeof j->tree, "%s", tree);
    j->host_usr = host_usr;
    j->sink = *sink;
    j->t0 = mono_ns();
    q->active++;
    pthread_mutex_lock(&q->mu);
    list_push_back(&q->queue, &j->link);
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    *out = j;
    return 0;
}

int ctl_image_add(struct ctl *c, const char *ws, const char *name, const char *tree, bool host_usr,
                  const struct ctl_image_sink *sink, struct ctl_image_job **out, struct ctl_error *e)
{
    return job_submit(c, JOB_ADD_TREE, ws, name, tree, host_usr, sink, out, e);
}

int ctl_image_import_oci(struct ctl *c, const char *ws, const char *name, const char *tree,
                         const struct ctl_image_sink *sink, struct ctl_image_job **out, struct ctl_error *e)
{
    return job_submit(c, JOB_IMPORT_OCI, ws, name, tree, false, sink, out, e);
}

/* Ingests dir (a built-in image's source, made by gustd itself) and registers it. */
static int image_register(struct ctl *c, const char *name, const char *dir, bool host_usr, char id[IMAGE_ID_MAX],
                          char *rootfs, size_t rootfs_cap, struct cas_stats *st, struct gerr *err)
{
    int r = image_import(c->cas, c->images_dir, dir, id, rootfs, rootfs_cap, st, err);
    if (r < 0)
        return r;
    return store_image_put(c->store, name, rootfs, host_usr, id, wall_s(), err);
}

struct image_listing {
    const char *ws;
    json_t *arr;
};

static int image_row(const char *name, const char *rootfs, bool host_usr, const char *id, double created_at,
                     void *ud)
{
    struct image_listing *l = ud;
    bool builtin = !strchr(name, '/');
    const char *local = builtin ? name : l->ws ? ctl_unqualify(name, l->ws) : name;
    if (!local)
        return 0;
    json_t *j = json_pack("{s:s,s:s,s:b,s:f,s:b}", "name", local, "rootfs", rootfs, "host_usr", host_usr,
                          "created_at", created_at, "builtin", builtin);
    json_object_set_new(j, "id", id ? json_string(id) : json_null());
    json_array_append_new(l->arr, j);
    return 0;
}

json_t *ctl_images_json(struct ctl *c, const char *ws)
{
    json_t *arr = json_array();
    struct image_listing l = {.ws = ws, .arr = arr};
    struct gerr err;
    if (store_image_list(c->store, image_row, &l, &err) < 0)
        log_error("control", "list images: %s", err.msg);
    return json_pack("{s:o}", "images", arr);
}

/* The image workspace ws sees as name (a new reference), or NULL. */
static json_t *image_find(struct ctl *c, const char *ws, const char *name)
{
    json_t *all = ctl_images_json(c, ws);
    json_t *found = NULL;
    size_t i;
    json_t *im;
    json_array_foreach(json_object_get(all, "images"), i, im) {
        if (!strcmp(json_string_value(json_object_get(im, "name")), name))
            found = json_incref(im);
    }
    json_decref(all);
    return found;
}

json_t *ctl_image_inspect(struct ctl *c, const char *ws, const char *name, struct ctl_error *e)
{
    json_t *im = image_find(c, ws, name);
    if (!im) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "image %s not found", name);
        return NULL;
    }
    struct cas_digest d;
    json_t *m = NULL;
    struct gerr err;
    if (cas_digest_parse(json_string_value(json_object_get(im, "id")), &d) == 0 &&
        cas_manifest_load(c->cas, &d, &m, &err) == 0) {
        json_int_t files = 0, bytes = 0;
        size_t i;
        json_t *en;
        json_array_foreach(json_object_get(m, "entries"), i, en) {
            if (!strcmp(json_string_value(json_object_get(en, "type")), "file")) {
                files++;
                bytes += json_integer_value(json_object_get(en, "size"));
            }
        }
        json_object_set_new(im, "files", json_integer(files));
        json_object_set_new(im, "bytes", json_integer(bytes));
        json_object_set_new(im, "entries", json_integer((json_int_t)json_array_size(json_object_get(m, "entries"))));
        json_object_set(im, "config", json_object_get(m, "config"));
        json_decref(m);
    } else if (json_is_string(json_object_get(im, "id"))) {
        json_object_set_new(im, "store_error", json_string(err.msg));
    }
    return im;
}

/* Whether a live version of workspace ws runs on its image called name. */
static bool image_in_use(struct ctl *c, const char *ws, const char *name)
{
    ctl_for_each_version(fv, c)
        if (ctl_fver_live(fv) && fv->spec.image && !strcmp(fv->spec.image, name) && ctl_unqualify(fv->fn->app->name, ws))
            return true;
    return false;
}

int ctl_image_rm(struct ctl *c, const char *ws, const char *local, struct ctl_error *e)
{
    char name[CTL_QNAME_MAX];
    ctl_qualify(name, ws, local);
    if (image_in_use(c, ws, local)) {
        ctl_err(e, CTL_E_CONFLICT, "conflict", NULL,
                "image %s is used by a deployed function; deploy it with another image or stop its app first", local);
        return -EBUSY;
    }
    struct gerr err;
    int r = store_image_delete(c->store, name, &err);
    if (r == -ENOENT) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "image %s not found", local);
        return r;
    }
    if (r < 0) {
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "%s", err.msg);
        return r;
    }
    return 0;
}

struct gc_dropped {
    char *const *live;
    size_t n;
    json_t *steps;
};

static void gc_collect_dropped(void *ud, const char *step_id, const char *parent_id, const char *image_id)
{
    struct gc_dropped *d = ud;
    for (size_t i = 0; i < d->n; i++)
        if (!strcmp(d->live[i], image_id))
            return;
    json_array_append_new(d->steps, json_string(step_id));
}

json_t *ctl_image_gc(struct ctl *c, struct ctl_error *e)
{
    if (ctl_image_jobs_running(c)) {
        ctl_err(e, CTL_E_CONFLICT, "build_running", NULL,
                "an image add or import is running; run gc when it has finished (its objects are not named yet)");
        return NULL;
    }
    if (c->builder && build_running(c->builder)) {
        ctl_err(e, CTL_E_CONFLICT, "build_running",
                NULL, "an image build is running; run gc when it has finished (its steps are not referenced yet)");
        return NULL;
    }
    /* Live: every named image, the image of every live version (fver_live: a re-added
     * or removed name may leave such versions on an older image), and the images
     * their build steps started from, so rebuilds stay cached. */
    json_t *ids = json_object();
    json_t *all = ctl_images_json(c, NULL);
    size_t i;
    json_t *im;
    json_array_foreach(json_object_get(all, "images"), i, im) {
        const char *id = json_string_value(json_object_get(im, "id"));
        if (id)
            json_object_set_new(ids, id, json_true());
    }
    json_decref(all);
    ctl_for_each_version(fv, c) {
        char id[IMAGE_ID_MAX];
        if (ctl_fver_live(fv) && image_id_of_rootfs(c->images_dir, fv->rootfs, id) == 0)
            json_object_set_new(ids, id, json_true());
        for (size_t m = 0; ctl_fver_live(fv) && m < fv->spec.nmounts; m++)
            json_object_set_new(ids, fv->spec.mount_images[m], json_true());
    }
    /* Every volume's current version, and those running containers are on. */
    struct gerr verr;
    if (ctl_volume_roots(c, ids, &verr) < 0) {
        json_decref(ids);
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "image gc: listing volumes: %s", verr.msg);
        return NULL;
    }
    size_t n = 0, cap = json_object_size(ids) + 16;
    char **live = xcalloc(cap, sizeof *live);
    const char *key;
    json_t *v;
    json_object_foreach(ids, key, v)
        live[n++] = xstrdup(key);
    json_decref(ids);
    if (c->builder)
        ctl_build_live_ancestors(c, &live, &n, &cap);
    struct image_gc_result res;
    struct gerr err;
    int r = image_gc(c->cas, c->images_dir, live, n, &res, &err);
    if (r == 0 && c->builder) {
        struct gc_dropped d = {live, n, json_array()};
        build_cache_each(c->builder, gc_collect_dropped, &d);
        json_t *sid;
        json_array_foreach(d.steps, i, sid) store_build_step_delete(c->store, json_string_value(sid), NULL);
        json_decref(d.steps);
        build_cache_retain(c->builder, live, n);
    }
    for (size_t k = 0; k < n; k++)
        free(live[k]);
    free(live);
    if (r < 0) {
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "image gc: %s", err.msg);
        return NULL;
    }
    log_info("control", "image gc: %llu objects (%.1f MB) and %llu materialised images removed, %zu images live",
             (unsigned long long)res.objects, (double)res.bytes / 1e6, (unsigned long long)res.images, n);
    return json_pack("{s:I,s:I,s:I,s:I}", "objects_removed", (json_int_t)res.objects, "bytes_removed",
                     (json_int_t)res.bytes, "images_removed", (json_int_t)res.images, "images_live", (json_int_t)n);
}

int ctl_images_builtin(struct ctl *c, struct gerr *err)
{
    char path[600];
    /* The built-in images: sources built once, then stored like any added image. */
    char id[IMAGE_ID_MAX], rootfs[PATH_MAX];
    snprintf(path, sizeof path, "%s/src-busybox", c->images_dir);
    int r = image_build_busybox(path, err);
    if (r < 0)
        return gerr_prefix(err, "building the busybox image");
    if ((r = image_register(c, "busybox", path, false, id, rootfs, sizeof rootfs, NULL, err)) < 0)
        return gerr_prefix(err, "storing the busybox image");
    snprintf(path, sizeof path, "%s/src-python", c->images_dir);
    if ((r = image_build_host_python(path, err)) < 0)
        return gerr_prefix(err, "building the python image");
    if ((r = image_register(c, "python", path, true, id, rootfs, sizeof rootfs, NULL, err)) < 0)
        return gerr_prefix(err, "storing the python image");
    return 0;
}
