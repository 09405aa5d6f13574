/* Image builds and deploys that build their inline images first, as the client sees
 * them (control/control.h "image builds"): each is a record that collects its builder
 * jobs' events, then reports one final event (and, for a deploy, deploys). */
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

/* A build or a building deploy, as the client sees it. */
struct ctl_deploy_build {
    struct list_node link;      /* in ctl->deploy_builds */
    struct ctl *c;
    struct ctl_build_sink sink;
    bool attached;
    bool deploy;
    char ws[CTL_WS_NAME_MAX + 1]; /* the workspace that asked */
    char name[CTL_QNAME_MAX];   /* image build: the qualified name to register, "" for none */
    json_t *spec;               /* deploy: the spec to deploy once built */
    int pending;                /* builder jobs not done yet */
    json_t *error;              /* the first failure's final event */
    json_t *result;             /* image build: the final event */
};

/* One builder job of a ctl_build. */
struct ctl_build_part {
    struct ctl_deploy_build *b;
    char function[64];          /* deploy: whose image this is */
};

static void build_record_free(struct ctl_deploy_build *b)
{
    list_remove(&b->link);
    json_decref(b->spec);
    json_decref(b->error);
    json_decref(b->result);
    free(b);
}

static void finish(struct ctl_deploy_build *b)
{
    struct ctl *c = b->c;
    json_t *final = NULL;
    if (b->error) {
        final = json_incref(b->error);
    } else if (!b->deploy) {
        final = json_incref(b->result);
    } else {
        json_t *result = NULL;
        struct ctl_error e = {0};
        if (ctl_deploy(c, b->ws, b->spec, &result, &e) == 0) {
            json_object_set_new(result, "event", json_string("deployed"));
            final = result;
        } else {
            final = json_pack("{s:s,s:s,s:s,s:s}", "event", "error", "code", e.code, "field", e.field, "message",
                              e.message);
        }
    }
    if (b->attached && final)
        b->sink.done(b->sink.ud, final);
    json_decref(final);
    build_record_free(b);
}

static void part_event(void *ud, json_t *ev)
{
    struct ctl_build_part *p = ud;
    if (!p->b->attached)
        return;
    if (p->function[0])
        json_object_set_new(ev, "function", json_string(p->function));
    p->b->sink.event(p->b->sink.ud, ev);
}

static void part_done(void *ud, const char *image_id, const char *rootfs, json_t *final)
{
    struct ctl_build_part *p = ud;
    struct ctl_deploy_build *b = p->b;
    struct ctl *c = b->c;
    if (p->function[0] && final)
        json_object_set_new(final, "function", json_string(p->function));
    if (!image_id) {
        if (!b->error)
            b->error = json_incref(final);
        log_warn("control", "image build%s%s failed: %s", p->function[0] ? " for " : "", p->function,
                 json_string_value(json_object_get(final, "message")));
    } else {
        log_info("control", "image built: %s (%s)", image_id, p->function[0] ? p->function : b->name);
        if (b->name[0]) {
            struct gerr err;
            if (store_image_put(c->store, b->name, rootfs, false, image_id, wall_s(), &err) < 0) {
                json_decref(b->error);
                b->error = json_pack("{s:s,s:s}", "event", "error", "message", err.msg);
            } else {
                json_object_set_new(final, "name", json_string(ctl_local_name(b->name)));
            }
        }
        if (!b->deploy) {
            json_decref(b->result);
            b->result = json_incref(final);
        }
    }
    free(p);
    if (--b->pending == 0)
        finish(b);
}

static struct ctl_deploy_build *record_new(struct ctl *c, const struct ctl_build_sink *sink)
{
    struct ctl_deploy_build *b = xcalloc(1, sizeof *b);
    b->c = c;
    b->sink = *sink;
    b->attached = true;
    list_push_front(&c->deploy_builds, &b->link);
    return b;
}

static int start_part(struct ctl_deploy_build *b, json_t *def, const char *base, const char *function, bool force,
                      struct gerr *err)
{
    struct ctl_build_part *p = xcalloc(1, sizeof *p);
    p->b = b;
    snprintf(p->function, sizeof p->function, "%s", function ? function : "");
    struct build_sink s = {.event = part_event, .done = part_done, .ud = p};
    int r = build_submit(b->c->builder, def, base, b->ws, force, &s, err);
    if (r < 0) {
        free(p);
        return r;
    }
    b->pending++;
    return 0;
}

int ctl_image_build(struct ctl *c, const char *ws, json_t *doc, const char *name, bool force,
                    const struct ctl_build_sink *sink, struct ctl_build **out, struct ctl_error *e)
{
    if (c->shutting_down) {
        ctl_err(e, CTL_E_SHUTTING_DOWN, "shutting_down", NULL, "gustd is shutting down; retry shortly");
        return -ESHUTDOWN;
    }
    if (name && *name && !name_is_valid(name)) {
        ctl_err(e, CTL_E_INVALID, "invalid_argument", "name",
                "name: \"%s\" is not a valid image name; use 1-63 characters [A-Za-z0-9_-], starting alphanumeric",
                name);
        return -EINVAL;
    }
    json_t *v = json_is_object(doc) && json_object_get(doc, "image") ? json_object_get(doc, "image") : doc;
    const char *where = "image";
    char field[SPEC_FIELD_MAX] = "";
    struct gerr err;
    AUTO_JSON json_t *def = NULL;
    if (spec_image_parse(v, where, &def, field, &err) < 0) {
        ctl_err(e, CTL_E_INVALID, "invalid_spec", field, "%s", err.msg);
        return -EINVAL;
    }
    if (ctl_def_trees_held(c, ws, def, where, e) < 0)
        return -ENOENT;
    char base[IMAGE_ID_MAX];
    if (ctl_image_base_of(c, ws, def, base, &err) < 0) {
        ctl_err(e, CTL_E_INVALID, "invalid_spec", "image.base", "image.base: %s", err.msg);
        return -EINVAL;
    }
    struct ctl_deploy_build *b = record_new(c, sink);
    snprintf(b->ws, sizeof b->ws, "%s", ws);
    if (name && *name)
        ctl_qualify(b->name, ws, name);
    if (start_part(b, def, base[0] ? base : NULL, NULL, force, &err) < 0) {
        build_record_free(b);
        ctl_err(e, err.code == EBUSY ? CTL_E_CONFLICT : CTL_E_INTERNAL, err.code == EBUSY ? "busy" : "internal", NULL,
                "%s", err.msg);
        return -EIO;
    }
    *out = (struct ctl_build *)b;
    return 0;
}

int ctl_deploy_building(struct ctl *c, const char *ws, json_t *spec, bool force,
                        const struct ctl_build_sink *sink, struct ctl_build **out, struct ctl_error *e)
{
    struct spec_app app = {0};
    struct gerr err;
    int r0 = ctl_parse_app(c, spec, &app, e);
    if (r0 < 0)
        return r0;
    struct ctl_deploy_build *b = record_new(c, sink);
    snprintf(b->ws, sizeof b->ws, "%s", ws);
    AUTO_JSON json_t *cached = json_array();
    int r = 0;
    b->deploy = true;
    b->spec = json_incref(spec);
    b->pending = 1; /* held until every part is started */
    for (size_t i = 0; r == 0 && i < app.nfunctions; i++) {
        json_t *def = app.functions[i].image_def;
        if (!def)
            continue;
        char fld[64], id[IMAGE_ID_MAX], rootfs[PATH_MAX], base[IMAGE_ID_MAX];
        snprintf(fld, sizeof fld, "functions[%zu].image", i);
        if ((r = ctl_def_trees_held(c, ws, def, fld, e)) < 0)
            break;
        if ((r = ctl_image_base_of(c, ws, def, base, &err)) < 0) {
            ctl_err(e, CTL_E_INVALID, "invalid_spec", fld, "%s.base: %s", fld, err.msg);
            break;
        }
        if (!force && ctl_inline_image(c, ws, def, id, rootfs, sizeof rootfs, &err) == 0) {
            json_array_append_new(cached, json_pack("{s:s,s:s,s:s,s:b}", "event", "image", "function",
                                                    app.functions[i].name, "image_id", id, "cached", 1));
            continue;
        }
        if ((r = start_part(b, def, base[0] ? base : NULL, app.functions[i].name, force, &err)) < 0)
            ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "%s", err.msg);
    }
    spec_app_free(&app);
    if (r < 0 && b->pending == 1) {
        build_record_free(b);
        return r;
    }
    /* Parts already started report their end; the deploy then fails with this error. */
    if (r < 0 && !b->error)
        b->error = json_pack("{s:s,s:s,s:s,s:s}", "event", "error", "code", e->code, "field", e->field, "message",
                             e->message);
    /* Accepted: the client hears which images were already built. */
    size_t k;
    json_t *ev;
    json_array_foreach(cached, k, ev) sink->event(sink->ud, ev);
    *out = (struct ctl_build *)b;
    if (--b->pending == 0) {
        /* Nothing to build: deploy now. The sink hears of it on this call; *out is
         * then already gone. */
        *out = NULL;
        finish(b);
    }
    return 0;
}

void ctl_build_detach(struct ctl_build *handle)
{
    struct ctl_deploy_build *b = (struct ctl_deploy_build *)handle;
    if (b)
        b->attached = false;
}

void ctl_builds_free(struct ctl *c)
{
    list_for_each_safe(b, &c->deploy_builds, struct ctl_deploy_build, link)
        build_record_free(b);
}
