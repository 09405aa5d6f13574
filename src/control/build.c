/* Control's side of the image builder: its set-up, the build cache kept in the store,
 * and what deployed versions need of it (the image of an inline definition, the
 * ancestors gc must keep). Builds as clients see them are in builds.c. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cleanup.h"
#include "base/json_cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "control/internal.h"
#include "image/image.h"
#include "store/store.h"


static void cached_cb(void *ud, const char *step_id, const char *parent_id, const char *image_id)
{
    struct ctl *c = ud;
    struct gerr err;
    if (store_build_step_put(c->store, step_id, parent_id, image_id, wall_s(), &err) < 0)
        log_warn("control", "build cache: %s", err.msg);
}

static int load_step_row(const char *step_id, const char *parent_id, const char *image_id, void *ud)
{
    struct ctl *c = ud;
    build_cache_put(c->builder, step_id, parent_id, image_id);
    return 0;
}

int ctl_builder_start(struct ctl *c, struct gerr *err)
{
    char work[PATH_MAX];
    snprintf(work, sizeof work, "%s/build", c->cfg.data_dir);
    struct build_config bc = {
        .loop = c->loop,
        .cas = c->cas,
        .images_dir = c->images_dir,
        .work_dir = work,
        .lanes = c->cfg.build_lanes,
        .nlanes = c->cfg.nbuild_lanes,
        .on_cached = cached_cb,
        .ud = c,
    };
    int r = build_new(&bc, &c->builder, err);
    if (r < 0)
        return gerr_prefix(err, "image builder");
    return store_build_step_list(c->store, load_step_row, c, err);
}

void ctl_builder_stop(struct ctl *c)
{
    build_free(c->builder);
    c->builder = NULL;
}

int ctl_image_qname(struct ctl *c, const char *ws, const char *name, char qname[CTL_QNAME_MAX])
{
    ctl_qualify(qname, ws, name);
    AUTO_FREE char *path = NULL;
    if (store_image_get(c->store, qname, &path, NULL, NULL) == 0)
        return 0;
    free(TAKE_PTR(path));
    if (store_image_get(c->store, name, &path, NULL, NULL) == 0) {
        snprintf(qname, CTL_QNAME_MAX, "%s", name);
        return 0;
    }
    return -ENOENT;
}

/* Whether ws holds tree v (a string "sha256:..."); else e names field. */
static bool tree_held(struct ctl *c, const char *ws, json_t *v, const char *field, struct ctl_error *e)
{
    const char *id = json_string_value(v);
    if (!id || ctl_ws_holds(c, ws, id))
        return true;
    ctl_err(e, CTL_E_INVALID, "invalid_spec", field,
            "%s: tree %s is not stored; upload its files and create it with POST /v1/mounts first", field, id);
    return false;
}

int ctl_def_trees_held(struct ctl *c, const char *ws, json_t *def, const char *where, struct ctl_error *e)
{
    char field[SPEC_FIELD_MAX];
    snprintf(field, sizeof field, "%s.from_oci", where);
    if (!tree_held(c, ws, json_object_get(def, "from_oci"), field, e))
        return -ENOENT;
    size_t i;
    json_t *step;
    json_array_foreach(json_object_get(def, "steps"), i, step) {
        snprintf(field, sizeof field, "%s.steps[%zu].copy", where, i);
        if (!tree_held(c, ws, json_object_get(json_object_get(step, "copy"), "tree"), field, e))
            return -ENOENT;
        snprintf(field, sizeof field, "%s.steps[%zu].find_links", where, i);
        if (!tree_held(c, ws, json_object_get(step, "find_links"), field, e))
            return -ENOENT;
    }
    return 0;
}

int ctl_named_image_id(struct ctl *c, const char *ws, const char *name, char id[IMAGE_ID_MAX], bool *host_usr,
                       struct gerr *err)
{
    char qname[CTL_QNAME_MAX];
    if (ctl_image_qname(c, ws, name, qname) < 0)
        return gerr_set(err, ENOENT, "image %s not found", name);
    AUTO_FREE char *rootfs = NULL;
    int r = store_image_get(c->store, qname, &rootfs, host_usr, err);
    if (r < 0)
        return r;
    if (*host_usr || image_id_of_rootfs(c->images_dir, rootfs, id) < 0)
        return gerr_set(err, EINVAL, "image %s is not in the image store%s", name,
                        *host_usr ? " (it runs on the host's /usr)" : "");
    return 0;
}

/* The base image id of def: "" for the builder's own bases (scratch, debian_slim,
 * from_oci), else the registered image's. */
int ctl_image_base_of(struct ctl *c, const char *ws, json_t *def, char id[IMAGE_ID_MAX], struct gerr *err)
{
    id[0] = '\0';
    const char *base = json_string_value(json_object_get(def, "base"));
    if (!base || !strcmp(base, "scratch") || !strcmp(base, "debian_slim"))
        return 0;
    bool host_usr = false;
    int r = ctl_named_image_id(c, ws, base, id, &host_usr, err);
    if (r == -ENOENT)
        return gerr_set(err, ENOENT, "base \"%s\" is not debian_slim, busybox, scratch or a registered image", base);
    return r;
}

int ctl_inline_image(struct ctl *c, const char *ws, json_t *def, char id[IMAGE_ID_MAX], char *rootfs, size_t cap,
                     struct gerr *err)
{
    const char *built = json_string_value(json_object_get(def, "built_id"));
    int r;
    if (built) {
        snprintf(id, IMAGE_ID_MAX, "%s", built);
    } else {
        char base[IMAGE_ID_MAX];
        if ((r = ctl_image_base_of(c, ws, def, base, err)) < 0)
            return r;
        if ((r = build_lookup(c->builder, def, base, ws, id, err)) < 0)
            return r;
    }
    return image_materialize(c->cas, c->images_dir, id, rootfs, cap, err);
}

/* image -> [parents] from the build cache. */
static void collect_parent(void *ud, const char *step_id, const char *parent_id, const char *image_id)
{
    json_t *map = ud;
    if (!parent_id[0])
        return;
    json_t *l = json_object_get(map, image_id);
    if (!l) {
        l = json_array();
        if (!l || json_object_set_new(map, image_id, l) < 0)
            return;
    }
    json_array_append_new(l, json_string(parent_id));
}

void ctl_build_live_ancestors(struct ctl *c, char ***live, size_t *n, size_t *cap)
{
    /* A live image's parents are live; the loop below also visits what it appends. */
    json_t *parents AUTO_JSON = json_object();
    build_cache_each(c->builder, collect_parent, parents);
    for (size_t i = 0; i < *n; i++) {
        size_t k;
        json_t *p;
        json_array_foreach(json_object_get(parents, (*live)[i]), k, p) {
            bool have = false;
            for (size_t m = 0; m < *n && !have; m++)
                have = !strcmp((*live)[m], json_string_value(p));
            if (have)
                continue;
            if (*n == *cap) {
                *cap = *cap ? *cap * 2 : 16;
                *live = xreallocarray(*live, *cap, sizeof **live);
            }
            (*live)[(*n)++] = xstrdup(json_string_value(p));
        }
    }
}

