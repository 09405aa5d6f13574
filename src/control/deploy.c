/* Deploys and app stops: a deploy validates every function (image, secrets, mounts,
 * resources) before it changes anything, stores the new versions, then makes them
 * the latest; the old versions drain (their calls finish on them). */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "control/internal.h"
#include "image/image.h"

/* The container environment of fv: the image's env (id "" for none), then the
 * function's, which wins on a name both set; the image's workdir unless the function
 * gave one other than "/". */
static int fver_image_config(struct ctl *c, struct ctl_fver *fv, const char *id, struct gerr *err)
{
    json_t *config = NULL;
    if (id[0] && image_config(c->cas, id, &config, err) < 0)
        return gerr_prefix(err, "image %s", id);
    json_t *ienv = json_object_get(config, "env");
    size_t n = json_array_size(ienv) + fv->spec.nenv, k = 0;
    fv->env = xcalloc(n + 1, sizeof *fv->env);
    for (size_t i = 0; i < json_array_size(ienv); i++) {
        const char *kv = json_string_value(json_array_get(ienv, i));
        if (!kv || !strchr(kv, '='))
            continue;
        size_t kl = (size_t)(strchr(kv, '=') - kv);
        bool overridden = false;
        for (size_t j = 0; j < fv->spec.nenv && !overridden; j++)
            overridden = !strncmp(fv->spec.env[j], kv, kl + 1);
        if (!overridden)
            fv->env[k++] = xstrdup(kv);
    }
    for (size_t j = 0; j < fv->spec.nenv; j++)
        fv->env[k++] = xstrdup(fv->spec.env[j]);
    const char *iwd = json_string_value(json_object_get(config, "workdir"));
    if (iwd && iwd[0] == '/')
        fv->image_workdir = xstrdup(iwd);
    json_decref(config);
    /* The manifest parsed for the config can be large: give its pages back, since
     * sandboxes are cloned fork-style from this process (cost grows with its RSS). */
    if (id[0])
        malloc_trim(0);
    fv->workdir = fv->image_workdir && (!fv->spec.workdir || !strcmp(fv->spec.workdir, "/")) ? fv->image_workdir
                                                                                          : fv->spec.workdir;
    return 0;
}

/* Builds an in-memory version from its stored normalised spec JSON. */
struct ctl_fver *ctl_fver_new(struct ctl *c, struct ctl_fn *fn, uint32_t version, json_t *spec_json,
                              struct gerr *err)
{
    struct ctl_fver *fv = xcalloc(1, sizeof *fv);
    list_init(&fv->link);
    list_init(&fv->queue);
    list_init(&fv->ctrs);
    list_init(&fv->idle);
    list_init(&fv->ev_dirty_link);
    list_init(&fv->blocked_link);
    char field[SPEC_FIELD_MAX] = "";
    if (spec_function_from_json(spec_json, &fv->spec, field, err) < 0) {
        free(fv);
        return NULL;
    }
    char id[IMAGE_ID_MAX], ws[CTL_WS_NAME_MAX + 1];
    ctl_ws_of(fn->app->name, ws);
    int r = fv->spec.image_def
                ? ctl_inline_image(c, ws, fv->spec.image_def, id, fv->rootfs, sizeof fv->rootfs, err)
                : ctl_image_resolve(c, ws, fv->spec.image, fv->rootfs, sizeof fv->rootfs, &fv->host_usr, err);
    if (r == 0 && !fv->spec.image_def && image_id_of_rootfs(c->images_dir, fv->rootfs, id) < 0)
        id[0] = '\0';
    if (r == 0)
        r = fver_image_config(c, fv, id, err);
    if (r == 0)
        r = ctl_mounts_resolve(c, NULL, &fv->spec, &fv->mount_dirs, err);
    if (r < 0) {
        ctl_fver_free(fv);
        return NULL;
    }
    fv->fn = fn;
    fv->ctl = c;
    fv->version = version;
    fv->spec_json = json_incref(spec_json);
    list_push_front(&fn->versions, &fv->link);
    ctl_sched_reorder(c);
    return fv;
}

int ctl_parse_app(struct ctl *c, json_t *spec, struct spec_app *app, struct ctl_error *e)
{
    if (c->shutting_down) {
        ctl_err(e, CTL_E_SHUTTING_DOWN, "shutting_down", NULL, "gustd is shutting down; retry shortly");
        return -ESHUTDOWN;
    }
    char field[SPEC_FIELD_MAX] = "";
    struct gerr err;
    if (spec_app_from_json(spec, app, field, &err) < 0) {
        ctl_err(e, CTL_E_INVALID, "invalid_spec", field, "%s", err.msg);
        return -EINVAL;
    }
    return 0;
}

/* The SDK's with_options variants (ARCHITECTURE.md "Variants"): a function whose env
 * has GUST_VARIANT_OF=<base>@<version> was derived from base. Its base's name into
 * base (cap bytes); false for a function that is not a variant. */
static bool variant_base(const struct spec_function *f, char *base, size_t cap)
{
    static const char key[] = "GUST_VARIANT_OF=";
    for (size_t i = 0; i < f->nenv; i++) {
        if (strncmp(f->env[i], key, sizeof key - 1))
            continue;
        const char *v = f->env[i] + sizeof key - 1, *at = strrchr(v, '@');
        snprintf(base, cap, "%.*s", (int)(at ? at - v : (ptrdiff_t)strlen(v)), v);
        return true;
    }
    return false;
}

static bool spec_has(const struct spec_app *app, const char *name)
{
    for (size_t i = 0; i < app->nfunctions; i++)
        if (!strcmp(app->functions[i].name, name))
            return true;
    return false;
}

/* Whether a deploy of app (its spec) retires f, a function of the app it replaces: f
 * is not in the spec, and it is not a variant of a function that is (a variant goes
 * with its base: a client that derived it may still call it, and derives it again
 * from the base's new version on its next first use). A deploy of variants alone (the
 * SDK deploys one on its first use) adds them and retires nothing. */
static bool deploy_retires(const struct spec_app *app, bool variants_only, const struct ctl_fn *f)
{
    char base[64];
    if (variants_only || f->retired || spec_has(app, f->name))
        return false;
    return !(f->latest && variant_base(&f->latest->spec, base, sizeof base) && spec_has(app, base));
}

/* Cancels the queued, running and retry-waiting calls of a's functions (only's alone
 * unless NULL) with message why, and lets their snapshots go; the scheduler stops
 * their containers (their versions are no longer current). */
static void cancel_calls(struct ctl *c, struct ctl_app *a, const struct ctl_fn *only, const char *why)
{
    list_for_each(f, &a->fns, struct ctl_fn, link) {
        if (only && f != only)
            continue;
        list_for_each_safe(fv, &f->versions, struct ctl_fver, link) {
            /* Queued calls are cancelled here; running ones below, through their
             * containers. The snapshot goes first: finishing the last call may free
             * the version. */
            ctl_fver_drop_snapshot(fv);
            while (fv->queued) {
                /* Finishing the last queued call may free fv. */
                bool last = fv->queued == 1;
                struct ctl_call *call = list_first_entry(&fv->queue, struct ctl_call, qlink);
                ctl_call_finish(c, call, CTL_CALL_CANCELLED, NULL, 0, "cancelled", why);
                if (last)
                    break;
            }
        }
    }
    /* Running and retry-waiting calls. */
    for (size_t b = 0; b < c->calls.nbuckets; b++) {
        for (struct hmap_node *n = c->calls.buckets[b], *next; n; n = next) {
            next = n->next;
            struct ctl_call *call = (struct ctl_call *)n;
            if (call->fv && call->fv->fn->app == a && (!only || call->fv->fn == only) &&
                !ctl_call_state_is_final(call->state)) {
                if (call->state == CTL_CALL_RUNNING)
                    sched_cancel_running(c, call, true);
                ctl_call_finish(c, call, CTL_CALL_CANCELLED, NULL, 0, "cancelled", why);
                next = NULL; /* the table may have changed (eviction): restart this bucket */
                b = (size_t)-1;
                break;
            }
        }
    }
}

/* f left its app's spec: as a stop of the app does for all of them, its calls are
 * cancelled and its containers stop (draining them instead would start containers
 * of a function the app no longer has, which new calls cannot reach: 404). Its store
 * record was marked in the deploy's transaction. */
static void retire_fn(struct ctl *c, struct ctl_fn *f)
{
    char why[192];
    snprintf(why, sizeof why, "function %s was removed from app %s by a deploy", f->name,
             ctl_local_name(f->app->name));
    cancel_calls(c, f->app, f, why);
    struct ctl_fver *old = f->latest;
    f->latest = NULL;
    f->retired = true;
    if (old)
        ctl_fver_maybe_free(c, old);
    log_info("control", "%s.%s retired: the deploy left it out", f->app->name, f->name);
}

int ctl_deploy(struct ctl *c, const char *ws, json_t *spec, json_t **result, struct ctl_error *e)
{
    *result = NULL;
    struct spec_app app = {0};
    struct gerr err;
    int r0 = ctl_parse_app(c, spec, &app, e);
    if (r0 < 0)
        return r0;
    int r = 0;
    /* Validate everything before changing anything: images exist, resources fit. */
    for (size_t i = 0; i < app.nfunctions; i++) {
        struct spec_function *f = &app.functions[i];
        char rootfs[512];
        bool host_usr;
        if (f->image_def) {
            char fld[64], id[IMAGE_ID_MAX];
            snprintf(fld, sizeof fld, "functions[%zu].image", i);
            if ((r = ctl_def_trees_held(c, ws, f->image_def, fld, e)) < 0)
                goto out;
            r = ctl_inline_image(c, ws, f->image_def, id, rootfs, sizeof rootfs, &err);
            if (r == -ENOENT) {
                ctl_err(e, CTL_E_CONFLICT, "image_not_built", fld,
                        "%s: this image is not built yet (%s); build it first: deploy with ?build=1 (gust deploy "
                        "does), or POST /v1/images/build with the definition",
                        fld, err.msg);
                goto out;
            }
            if (r < 0) {
                ctl_err(e, CTL_E_INVALID, "invalid_spec", fld, "%s: %s", fld, err.msg);
                goto out;
            }
            /* The version keeps the image it was deployed with. */
            json_object_set_new(f->image_def, "built_id", json_string(id));
        } else if (ctl_image_resolve(c, ws, f->image, rootfs, sizeof rootfs, &host_usr, &err) < 0) {
            char fld[64];
            snprintf(fld, sizeof fld, "functions[%zu].image", i);
            json_t *names = ctl_images_json(c, ws);
            struct buf list = {0};
            size_t k;
            json_t *img;
            json_array_foreach(json_object_get(names, "images"), k, img)
                buf_printf(&list, "%s%s", k ? ", " : "", json_string_value(json_object_get(img, "name")));
            ctl_err(e, CTL_E_INVALID, "invalid_spec", fld,
                    "%s: unknown image \"%s\"; registered images: %s (add one with `gust image add`)", fld, f->image,
                    list.data ? list.data : "none");
            buf_free(&list);
            json_decref(names);
            r = -EINVAL;
            goto out;
        }
        if ((r = ctl_secrets_check(c, ws, f, i, e)) < 0)
            goto out;
        for (size_t j = 0; j < f->nvolumes; j++) {
            char fld[96], qname[CTL_QNAME_MAX];
            struct store_volume v;
            ctl_qualify(qname, ws, f->volume_names[j]);
            if (store_volume_get(c->store, qname, &v, &err) < 0) {
                snprintf(fld, sizeof fld, "functions[%zu].volumes[%zu].name", i, j);
                ctl_err(e, CTL_E_INVALID, "invalid_spec", fld,
                        "%s: there is no volume named \"%s\"; create it first (gust volume create %s, or "
                        "gust.Volume.from_name(..., create_if_missing=True))", fld, f->volume_names[j],
                        f->volume_names[j]);
                r = -ENOENT;
                goto out;
            }
        }
        char **mdirs = NULL;
        if ((r = ctl_mounts_resolve(c, ws, f, &mdirs, &err)) < 0) {
            char fld[64];
            snprintf(fld, sizeof fld, "functions[%zu].mounts", i);
            ctl_err(e, CTL_E_INVALID, "invalid_spec", fld, "functions[%zu].%s", i, err.msg);
            goto out;
        }
        ctl_mounts_free(mdirs);
        char why[256];
        if (sched_fits_total(c, f, why, sizeof why) < 0) {
            char fld[64];
            snprintf(fld, sizeof fld, "functions[%zu].resources", i);
            ctl_err(e, CTL_E_UNSCHEDULABLE, "unschedulable", fld, "%s: %s", fld, why);
            r = -ENOSPC;
            goto out;
        }
    }
    double now = wall_s();
    char qapp[CTL_QNAME_MAX];
    ctl_qualify(qapp, ws, app.name);
    if ((r = store_begin(c->store, &err)) < 0 || (r = store_app_upsert(c->store, qapp, "deployed", now, &err)) < 0)
        goto store_fail;
    uint32_t versions[64] = {0};
    json_t *specs[64] = {0};
    for (size_t i = 0; i < app.nfunctions && i < 64; i++) {
        specs[i] = spec_function_to_json(&app.functions[i]);
        AUTO_FREE char *text = json_dumps(specs[i], JSON_COMPACT | JSON_SORT_KEYS);
        r = store_function_add_version(c->store, qapp, app.functions[i].name, text, now, &versions[i], &err);
        if (r < 0)
            break;
    }
    bool variants_only = true;
    char base[64];
    for (size_t i = 0; i < app.nfunctions; i++)
        variants_only = variants_only && variant_base(&app.functions[i], base, sizeof base);
    struct ctl_app *prev = ctl_find_app(c, qapp);
    if (prev && r >= 0)
        list_for_each(f, &prev->fns, struct ctl_fn, link)
            if (deploy_retires(&app, variants_only, f) &&
                (r = store_function_retire(c->store, qapp, f->name, now, &err)) < 0)
                break;
    if (r >= 0)
        r = store_commit(c->store, &err);
    if (r < 0) {
        store_rollback(c->store, NULL);
        for (size_t i = 0; i < 64; i++)
            json_decref(specs[i]);
        goto store_fail;
    }
    struct ctl_app *a = ctl_app_get_or_add(c, qapp, now);
    a->ws = ctl_ws_of_name(c, qapp);
    /* Before the new versions: the retired ones are those the spec lacks. */
    list_for_each(f, &a->fns, struct ctl_fn, link)
        if (deploy_retires(&app, variants_only, f))
            retire_fn(c, f);
    json_t *fns = json_array();
    for (size_t i = 0; i < app.nfunctions && i < 64; i++) {
        struct ctl_fn *fn = ctl_fn_get_or_add(a, app.functions[i].name, c->ka_policy);
        struct ctl_fver *fv = ctl_fver_new(c, fn, versions[i], specs[i], &err);
        if (!fv) {
            log_error("control", "deploy %s.%s: %s", qapp, app.functions[i].name, err.msg);
        } else {
            struct ctl_fver *old = fn->latest;
            fn->latest = fv;
            fn->retired = false;
            kpa_set_window(&fn->kpa, ctl_fn_kpa_window_ms(fn)); /* its scaledown_window may have changed */
            /* Before the old version may go: a new version of the same content takes
             * over its snapshot rather than letting it become a spare. */
            sched_snapshot_prepare(c, fv);
            if (old)
                ctl_fver_maybe_free(c, old);
        }
        json_array_append_new(fns, json_pack("{s:s,s:i}", "name", app.functions[i].name, "version",
                                             (json_int_t)versions[i]));
        json_decref(specs[i]);
    }
    a->stopped = false;
    list_for_each(f, &a->fns, struct ctl_fn, link)
        ctl_schedule_sync(c, f);
    /* What is current changed: which idle containers eviction may take too. */
    list_for_each(f, &a->fns, struct ctl_fn, link)
        evict_update_fn(f);
    *result = json_pack("{s:s,s:o}", "app", app.name, "functions", fns);
    /* Where the new versions' output begins: a client follows the app's logs from here
     * (gust run) and misses nothing, not even what the first containers print. */
    json_object_set_new(*result, "log_seq", json_integer((json_int_t)ctl_app_log_seq_of(c, a)));
    log_info("control", "deployed app %s (%zu functions)", qapp, app.nfunctions);
    ctl_sched_mark_all(c); /* new current versions; the old ones' idle containers go */
    c->kick(c);
    goto out;
store_fail:
    ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "storing the deploy failed: %s", err.msg);
out:
    spec_app_free(&app);
    return r < 0 ? r : 0;
}

int ctl_app_stop(struct ctl *c, const char *name, struct ctl_error *e)
{
    struct ctl_app *a = ctl_find_app(c, name);
    if (!a) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "app %s not found", ctl_local_name(name));
        return -ENOENT;
    }
    a->stopped = true;
    struct gerr err;
    double now = wall_s();
    if (store_app_upsert(c->store, name, "stopped", now, &err) < 0)
        log_error("control", "stop app %s: %s", name, err.msg);
    cancel_calls(c, a, NULL, "the app was stopped");
    store_calls_cancel_app(c->store, name, now, &err);
    list_for_each(f, &a->fns, struct ctl_fn, link) {
        evict_update_fn(f); /* its versions are no longer current */
        ctl_schedule_sync(c, f); /* a stopped app's schedules go */
    }
    ctl_sched_mark_all(c); /* the app's containers stop */
    sched_kick(c);
    return 0;
}

