/* Named images: a directory added under a name, or an OCI archive imported, goes
 * into the content-addressed store and is materialised once; names are kept in the
 * store. Also the built-in images, and gc of what nothing uses. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "cas/cas.h"
#include "control/internal.h"
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

/* The answer to an image add or import. */
static json_t *image_added_json(const char *name, const char *id, const char *rootfs, bool host_usr,
                                const struct cas_stats *cs)
{
    return json_pack("{s:s,s:s,s:s,s:b,s:I,s:I,s:I,s:I}", "name", name, "id", id, "rootfs", rootfs, "host_usr",
                     host_usr, "files", (json_int_t)cs->files, "bytes", (json_int_t)cs->bytes_in, "objects_written",
                     (json_int_t)cs->objects_written, "objects_reused", (json_int_t)cs->objects_reused);
}

/* Ingests dir and registers it as name. */
static int image_register(struct ctl *c, const char *name, const char *dir, bool host_usr, char id[IMAGE_ID_MAX],
                          char *rootfs, size_t rootfs_cap, struct cas_stats *st, struct gerr *err)
{
    int r = image_import(c->cas, c->images_dir, dir, id, rootfs, rootfs_cap, st, err);
    if (r < 0)
        return r;
    return store_image_put(c->store, name, rootfs, host_usr, id, wall_s(), err);
}

int ctl_image_add(struct ctl *c, const char *ws, const char *local, const char *rootfs, bool host_usr, json_t **out,
                  struct ctl_error *e)
{
    if (!image_name_ok(local, e))
        return -EINVAL;
    char name[CTL_QNAME_MAX];
    ctl_qualify(name, ws, local);
    if (rootfs[0] != '/') {
        ctl_err(e, CTL_E_INVALID, "invalid_argument", "rootfs", "rootfs: must be an absolute path, got \"%s\"",
                rootfs);
        return -EINVAL;
    }
    struct stat st;
    if (stat(rootfs, &st) < 0 || !S_ISDIR(st.st_mode)) {
        ctl_err(e, CTL_E_INVALID, "invalid_argument", "rootfs", "rootfs: \"%s\" is not a directory on the worker",
                rootfs);
        return -EINVAL;
    }
    struct gerr err;
    char id[IMAGE_ID_MAX], path[PATH_MAX];
    struct cas_stats cs;
    uint64_t t0 = mono_ns();
    if (image_register(c, name, rootfs, host_usr, id, path, sizeof path, &cs, &err) < 0) {
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "image %s: %s", name, err.msg);
        return -EIO;
    }
    log_info("control", "image %s = %s: %llu files, %.1f MB, %llu new objects, %.0f ms", name, id,
             (unsigned long long)cs.files, (double)cs.bytes_in / 1e6, (unsigned long long)cs.objects_written,
             (double)(mono_ns() - t0) / 1e6);
    *out = image_added_json(local, id, path, host_usr, &cs);
    return 0;
}

int ctl_image_import_oci(struct ctl *c, const char *ws, const char *local, const char *path, json_t **out,
                         struct ctl_error *e)
{
    if (!image_name_ok(local, e))
        return -EINVAL;
    char name[CTL_QNAME_MAX];
    ctl_qualify(name, ws, local);
    if (path[0] != '/') {
        ctl_err(e, CTL_E_INVALID, "invalid_argument", "oci", "oci: must be an absolute path, got \"%s\"", path);
        return -EINVAL;
    }
    struct gerr err;
    char id[IMAGE_ID_MAX], rootfs[PATH_MAX];
    struct cas_stats cs;
    int r = image_import_oci(c->cas, c->images_dir, path, id, rootfs, sizeof rootfs, &cs, &err);
    if (r == 0)
        r = store_image_put(c->store, name, rootfs, false, id, wall_s(), &err);
    if (r < 0) {
        bool bad_input = r == -EBADMSG || r == -EINVAL || r == -ENOENT || r == -ENOTDIR;
        ctl_err(e, bad_input ? CTL_E_INVALID : CTL_E_INTERNAL, bad_input ? "invalid_argument" : "internal",
                bad_input ? "oci" : NULL, "oci: %s", err.msg);
        return r;
    }
    log_info("control", "image %s = %s from %s: %llu files, %.1f MB", name, id, path, (unsigned long long)cs.files,
             (double)cs.bytes_in / 1e6);
    *out = image_added_json(local, id, rootfs, false, &cs);
    return 0;
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
