/* Secrets and source mounts of the control plane.
 *
 * Secrets: named sets of environment variables, kept in the store and in memory;
 * functions name them in `secrets` and get their variables in the environment of
 * every container started after a change. Values are never returned by the API,
 * never written to gustd's log and never part of a function's spec: only names and
 * keys are.
 *
 * Mounts: content-addressed trees a client uploads chunk by chunk (only the chunks
 * the store lacks), then describes as a manifest; functions bind them read-only
 * (`mounts`). A Python function's source and the SDK travel this way. */
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
#include "cas/cas.h"
#include "control/internal.h"
#include "image/image.h"
#include "store/store.h"

struct ctl_secret {
    struct list_node link;      /* in ctl->secrets */
    char name[CTL_QNAME_MAX];   /* "<workspace>/<secret>" */
    char **env;                 /* "K=V", sorted by key, NULL-terminated */
    size_t nenv;
    double created_at, updated_at;
};

static void secret_free(struct ctl_secret *s)
{
    if (s)
        spec_secret_env_free(s->env);
    free(s);
}

/* The variable names of s, in order. */
static json_t *secret_keys_json(const struct ctl_secret *s)
{
    json_t *keys = json_array();
    for (size_t i = 0; i < s->nenv; i++)
        json_array_append_new(keys, json_stringn(s->env[i], (size_t)(strchr(s->env[i], '=') - s->env[i])));
    return keys;
}

static struct ctl_secret *secret_find(struct ctl *c, const char *name)
{
    list_for_each(s, &c->secrets, struct ctl_secret, link)
        if (!strcmp(s->name, name))
            return s;
    return NULL;
}

/* Validates env into a new secret; NULL + e on error (field "env" or "env.KEY"). */
static struct ctl_secret *secret_from_json(const char *name, json_t *env, struct ctl_error *e)
{
    struct ctl_secret *s = xcalloc(1, sizeof *s);
    list_init(&s->link);
    char field[SPEC_FIELD_MAX];
    struct gerr err;
    int r = spec_secret_env_parse(env, &s->env, &s->nenv, field, &err);
    if (r < 0) {
        ctl_err(e, r == -E2BIG ? CTL_E_TOO_LARGE : CTL_E_INVALID, r == -E2BIG ? "too_large" : "invalid_argument",
                field[0] ? field : NULL,
                "%s", err.msg);
        free(s);
        return NULL;
    }
    snprintf(s->name, sizeof s->name, "%s", name);
    return s;
}

static int load_secret_row(const char *name, const char *env_json, double created_at, double updated_at, void *ud)
{
    struct ctl *c = ud;
    json_t *env = json_loads(env_json, 0, NULL);
    struct ctl_error e;
    struct ctl_secret *s = env ? secret_from_json(name, env, &e) : NULL;
    json_decref(env);
    if (!s) {
        log_error("control", "stored secret %s cannot be read; skipped", name);
        return 0;
    }
    s->created_at = created_at;
    s->updated_at = updated_at;
    list_push_front(&c->secrets, &s->link);
    return 0;
}

int ctl_secrets_load(struct ctl *c, struct gerr *err)
{
    return store_secret_list(c->store, load_secret_row, c, err);
}

void ctl_secrets_free(struct ctl *c)
{
    list_for_each_safe(s, &c->secrets, struct ctl_secret, link) {
        list_remove(&s->link);
        secret_free(s);
    }
}

json_t *ctl_secret_put(struct ctl *c, const char *ws, const char *local, json_t *env, struct ctl_error *e)
{
    if (!spec_secret_name_valid(local)) {
        ctl_err(e, CTL_E_INVALID, "invalid_argument", "name", "name: must be %s", SPEC_SECRET_NAME_CHARS);
        return NULL;
    }
    char name[CTL_QNAME_MAX];
    ctl_qualify(name, ws, local);
    struct ctl_secret *s = secret_from_json(name, env, e);
    if (!s)
        return NULL;
    AUTO_FREE char *text = json_dumps(env, JSON_COMPACT | JSON_SORT_KEYS);
    struct gerr err;
    double now = wall_s();
    struct ctl_secret *old = secret_find(c, name);
    s->created_at = old ? old->created_at : now;
    s->updated_at = now;
    if (!text || store_secret_put(c->store, name, text, now, &err) < 0) {
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "storing the secret failed: %s",
                text ? err.msg : "out of memory");
        secret_free(s);
        return NULL;
    }
    if (old) {
        list_insert_between(&s->link, old->link.prev, old->link.next);
        secret_free(old);
    } else {
        list_push_front(&c->secrets, &s->link);
    }
    log_info("control", "secret %s %s (%zu variables)", name, old ? "updated" : "created", s->nenv);
    return json_pack("{s:s,s:o,s:b}", "name", local, "keys", secret_keys_json(s), "created", old == NULL);
}

/* The functions that may still start containers needing secret qname, as "app.fn":
 * of an app of its workspace that is not stopped, the latest version or one with
 * queued or retrying calls. Running containers have their environment already. */
static json_t *secret_users(struct ctl *c, const char *qname)
{
    json_t *users = json_array();
    char ws[CTL_WS_NAME_MAX + 1];
    ctl_ws_of(qname, ws);
    const char *name = ctl_local_name(qname);
    list_for_each(a, &c->apps, struct ctl_app, link) {
        if (a->stopped || !ctl_unqualify(a->name, ws))
            continue;
        list_for_each(f, &a->fns, struct ctl_fn, link) {
            bool uses = false;
            list_for_each(fv, &f->versions, struct ctl_fver, link) {
                if (uses || (fv->fn->latest != fv && !fv->queued && !fv->retry_waiting))
                    continue;
                for (size_t i = 0; i < fv->spec.nsecrets && !uses; i++)
                    uses = !strcmp(fv->spec.secrets[i], name);
            }
            if (uses) {
                char who[140];
                snprintf(who, sizeof who, "%s.%s", ctl_local_name(a->name), f->name);
                json_array_append_new(users, json_string(who));
            }
        }
    }
    return users;
}

int ctl_secret_delete(struct ctl *c, const char *ws, const char *local, struct ctl_error *e)
{
    char name[CTL_QNAME_MAX];
    ctl_qualify(name, ws, local);
    struct ctl_secret *s = secret_find(c, name);
    if (!s) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "secret %s not found", local);
        return -ENOENT;
    }
    json_t *users = secret_users(c, name);
    if (json_array_size(users)) {
        AUTO_FREE char *list = json_dumps(users, JSON_COMPACT);
        ctl_err(e, CTL_E_CONFLICT, "secret_in_use", NULL,
                "secret %s is used by %s; stop those apps (gust stop) or deploy them without it first", local,
                list ? list : "deployed functions");
        json_decref(users);
        return -EBUSY;
    }
    json_decref(users);
    struct gerr err;
    if (store_secret_delete(c->store, name, &err) < 0 && err.code != ENOENT) {
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "deleting the secret failed: %s", err.msg);
        return -EIO;
    }
    list_remove(&s->link);
    secret_free(s);
    log_info("control", "secret %s deleted", name);
    return 0;
}

json_t *ctl_secrets_json(struct ctl *c, const char *ws)
{
    json_t *arr = json_array();
    list_for_each(s, &c->secrets, struct ctl_secret, link) {
        const char *local = ctl_unqualify(s->name, ws);
        if (!local)
            continue;
        json_array_append_new(arr, json_pack("{s:s,s:o,s:f,s:f,s:o}", "name", local, "keys", secret_keys_json(s),
                                             "created_at",
                                             s->created_at, "updated_at", s->updated_at, "used_by",
                                             secret_users(c, s->name)));
    }
    return json_pack("{s:o}", "secrets", arr);
}

/* The secret local of the workspace of qualified name owner (an app). */
static struct ctl_secret *secret_of(struct ctl *c, const char *owner, const char *local)
{
    char ws[CTL_WS_NAME_MAX + 1], name[CTL_QNAME_MAX];
    ctl_ws_of(owner, ws);
    ctl_qualify(name, ws, local);
    return secret_find(c, name);
}

int ctl_secrets_check(struct ctl *c, const char *ws, const struct spec_function *f, size_t index,
                      struct ctl_error *e)
{
    for (size_t i = 0; i < f->nsecrets; i++) {
        char name[CTL_QNAME_MAX];
        ctl_qualify(name, ws, f->secrets[i]);
        if (!secret_find(c, name)) {
            char fld[64];
            snprintf(fld, sizeof fld, "functions[%zu].secrets[%zu]", index, i);
            ctl_err(e, CTL_E_INVALID, "invalid_spec", fld,
                    "%s: there is no secret named \"%s\"; create it first (gust secret create %s KEY=VALUE, or "
                    "gust.Secret.from_dict in Python)", fld, f->secrets[i], f->secrets[i]);
            return -ENOENT;
        }
    }
    return 0;
}

/* Whether variable kv ("K=V") has its name set by one of vars[0..n). */
static bool env_overridden(const char *kv, char *const *vars, size_t n)
{
    size_t kl = (size_t)(strchr(kv, '=') - kv);
    for (size_t i = 0; i < n; i++)
        if (!strncmp(vars[i], kv, kl + 1))
            return true;
    return false;
}

int ctl_secrets_env(struct ctl *c, const struct ctl_fver *fv, char ***out, struct gerr *err)
{
    *out = NULL;
    if (!fv->spec.nsecrets)
        return 0;
    size_t nbase = 0, nsec = 0;
    while (fv->env && fv->env[nbase])
        nbase++;
    const struct ctl_secret *secs[SPEC_MAX_SECRETS];
    for (size_t i = 0; i < fv->spec.nsecrets && i < SPEC_MAX_SECRETS; i++) {
        if (!(secs[i] = secret_of(c, fv->fn->app->name, fv->spec.secrets[i])))
            return gerr_set(err, ENOENT, "secret %s was deleted", fv->spec.secrets[i]);
        nsec += secs[i]->nenv;
    }
    char **env = xcalloc(nbase + nsec + 1, sizeof *env);
    size_t k = 0;
    /* Pointers into fv->env and the secrets: valid while the container starts (the
     * caller uses the array before returning to the loop). A later secret's variable
     * wins over an earlier one's and over the function's env. */
    for (size_t i = 0; i < nbase; i++) {
        bool over = false;
        for (size_t s = 0; s < fv->spec.nsecrets && !over; s++)
            over = env_overridden(fv->env[i], secs[s]->env, secs[s]->nenv);
        if (!over)
            env[k++] = fv->env[i];
    }
    for (size_t s = 0; s < fv->spec.nsecrets; s++)
        for (size_t i = 0; i < secs[s]->nenv; i++) {
            bool over = false;
            for (size_t t = s + 1; t < fv->spec.nsecrets && !over; t++)
                over = env_overridden(secs[s]->env[i], secs[t]->env, secs[t]->nenv);
            if (!over)
                env[k++] = secs[s]->env[i];
        }
    *out = env;
    return 0;
}

/* ---------- mounts ---------- */

/* Whether v is an array of at most max items; else e names field (what: its items). */
static bool bounded_list(json_t *v, const char *field, size_t max, const char *what, struct ctl_error *e)
{
    if (!json_is_array(v)) {
        ctl_err(e, CTL_E_INVALID, "invalid_argument", field, "%s: must be a list of %s", field, what);
        return false;
    }
    if (json_array_size(v) > max) {
        ctl_err(e, CTL_E_TOO_LARGE, "too_large", field, "%s: at most %zu per request, got %zu", field, max,
                json_array_size(v));
        return false;
    }
    return true;
}

/* Whether ws holds the object d: uploaded or created it. What another workspace
 * stored counts as missing, so that no answer tells one workspace what another has;
 * uploading it again stores nothing new underneath. */
/* The key blob ownership is recorded under: "sha256:<hex>", whatever form the
 * client wrote the digest in (manifests name chunks by bare hex). */
static void owner_key(const struct cas_digest *d, char out[8 + CAS_HEX_LEN])
{
    char hex[CAS_HEX_LEN + 1];
    cas_digest_hex(d, hex);
    snprintf(out, 8 + CAS_HEX_LEN, "sha256:%s", hex);
}

bool ctl_ws_holds(struct ctl *c, const char *ws, const char *digest)
{
    struct cas_digest d;
    char key[8 + CAS_HEX_LEN];
    if (!digest || cas_digest_parse(digest, &d) < 0)
        return false;
    owner_key(&d, key);
    return store_blob_owned(c->store, ws, key, NULL) == 0;
}

/* Refuses (413 quota_exceeded) adding bytes to what ws stores beyond its quota. */
static int stored_quota_check(struct ctl *c, const char *ws, uint64_t bytes, struct ctl_error *e)
{
    struct ctl_ws *w = ctl_ws_find(c, ws);
    if (!w || !w->quotas.stored_bytes)
        return 0;
    uint64_t have = 0;
    struct gerr err;
    if (store_workspace_stored_bytes(c->store, ws, &have, &err) < 0) {
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "%s", err.msg);
        return -EIO;
    }
    if (have + bytes > w->quotas.stored_bytes) {
        ctl_err(e, CTL_E_TOO_LARGE, "quota_exceeded", "stored_bytes",
                "workspace %s is at its stored_bytes quota (%llu of %llu bytes stored; this adds %llu); "
                "remove images or ask an admin to raise the quota",
                ws, (unsigned long long)have, (unsigned long long)w->quotas.stored_bytes, (unsigned long long)bytes);
        return -EDQUOT;
    }
    return 0;
}

int ctl_ws_own_chunks(struct ctl *c, const char *ws, json_t *changes, struct ctl_error *e)
{
    /* The chunks ws does not hold yet, each once, with its length (a file's chunks are
     * CAS_CHUNK_SIZE bytes but its last). */
    AUTO_JSON json_t *fresh = json_object();
    uint64_t bytes = 0;
    size_t i;
    json_t *ch;
    json_array_foreach(changes, i, ch) {
        json_t *chunks = json_object_get(ch, "chunks");
        uint64_t size = (uint64_t)json_integer_value(json_object_get(ch, "size"));
        size_t k;
        json_t *d;
        json_array_foreach(chunks, k, d) {
            const char *digest = json_string_value(d);
            uint64_t off = (uint64_t)k * CAS_CHUNK_SIZE;
            uint64_t len = size > off ? (size - off < CAS_CHUNK_SIZE ? size - off : CAS_CHUNK_SIZE) : 0;
            if (!digest || json_object_get(fresh, digest) || ctl_ws_holds(c, ws, digest))
                continue;
            json_object_set_new(fresh, digest, json_integer((json_int_t)len));
            bytes += len;
        }
    }
    int r = stored_quota_check(c, ws, bytes, e);
    if (r < 0)
        return r;
    const char *digest;
    json_t *len;
    json_object_foreach(fresh, digest, len) {
        struct cas_digest d;
        char key[8 + CAS_HEX_LEN];
        struct gerr err;
        if (cas_digest_parse(digest, &d) < 0)
            continue;
        owner_key(&d, key);
        if (store_blob_own(c->store, ws, key, (uint64_t)json_integer_value(len), &err) < 0) {
            ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "recording the workspace's chunks: %s", err.msg);
            return -EIO;
        }
    }
    return 0;
}

json_t *ctl_blobs_missing(struct ctl *c, const char *ws, json_t *digests, struct ctl_error *e)
{
    if (!bounded_list(digests, "digests", CTL_MAX_BLOB_QUERY, "\"sha256:<hex>\" chunk digests", e))
        return NULL;
    json_t *missing = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(digests, i, v) {
        struct cas_digest d;
        if (!json_is_string(v) || cas_digest_parse(json_string_value(v), &d) < 0) {
            json_decref(missing);
            ctl_err(e, CTL_E_INVALID, "invalid_argument", "digests",
                    "digests[%zu]: must be \"sha256:\" and 64 lowercase hex digits", i);
            return NULL;
        }
        if (!ctl_ws_holds(c, ws, json_string_value(v)))
            json_array_append(missing, v);
    }
    return json_pack("{s:o}", "missing", missing);
}

int ctl_blob_put(struct ctl *c, const char *ws, const char *digest, const void *data, size_t len,
                 struct ctl_error *e)
{
    struct cas_digest want, got;
    if (cas_digest_parse(digest, &want) < 0) {
        ctl_err(e, CTL_E_INVALID, "invalid_argument", NULL,
                "the blob's name must be \"sha256:\" and 64 lowercase hex digits (its content's SHA-256)");
        return -EINVAL;
    }
    if (len > CAS_CHUNK_SIZE) {
        ctl_err(e, CTL_E_TOO_LARGE, "too_large", NULL,
                "a blob is one chunk: at most %u bytes; split files into %u-byte chunks", CAS_CHUNK_SIZE,
                CAS_CHUNK_SIZE);
        return -E2BIG;
    }
    cas_digest_of(data, len, &got);
    if (memcmp(want.b, got.b, sizeof want.b)) {
        char hex[CAS_HEX_LEN + 1];
        cas_digest_hex(&got, hex);
        ctl_err(e, CTL_E_INVALID, "digest_mismatch", NULL,
                "the body's SHA-256 is sha256:%s, not the %s it was sent as; nothing was stored", hex, digest);
        return -EINVAL;
    }
    if (ctl_ws_holds(c, ws, digest))
        return 0;
    int r = stored_quota_check(c, ws, len, e);
    if (r < 0)
        return r;
    struct gerr err;
    char key[8 + CAS_HEX_LEN];
    owner_key(&got, key);
    if (cas_put(c->cas, data, len, &got, &err) < 0 || store_blob_own(c->store, ws, key, len, &err) < 0) {
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "storing the blob failed: %s", err.msg);
        return -EIO;
    }
    return 0;
}

json_t *ctl_mount_create(struct ctl *c, const char *ws, json_t *entries, struct ctl_error *e)
{
    if (!bounded_list(entries, "entries", CTL_MAX_MOUNT_ENTRIES,
                      "tree entries (path, type, mode, and size + chunks for files)", e))
        return NULL;
    /* Owners are not the client's to choose: everything belongs to the container's
     * root. Modes keep the permission and sticky bits (a rootfs's /tmp), never setuid
     * or setgid. The root entry "." may be left out. */
    json_t *list = json_array();
    json_t *first = json_array_get(entries, 0);
    const char *p0 = json_string_value(json_object_get(first, "path"));
    if (!p0 || strcmp(p0, "."))  /* the root directory is implied */
        json_array_append_new(list, json_pack("{s:s,s:s,s:i,s:i,s:i}", "path", ".", "type", "dir", "mode", 0755,
                                              "uid", 0, "gid", 0));
    size_t i;
    json_t *ent;
    json_array_foreach(entries, i, ent) {
        json_t *copy = json_is_object(ent) ? json_copy(ent) : json_incref(ent);
        if (json_is_object(copy)) {
            json_object_set_new(copy, "uid", json_integer(0));
            json_object_set_new(copy, "gid", json_integer(0));
            json_t *mode = json_object_get(copy, "mode");
            if (json_is_integer(mode))
                json_object_set_new(copy, "mode", json_integer(json_integer_value(mode) & 01777));
        }
        json_array_append_new(list, copy);
    }
    json_t *m = json_pack("{s:i,s:{},s:o}", "gust_manifest", 1, "config", "entries", list);
    /* Round-trip through the manifest parser: the same validation as any stored tree
     * (sorted paths, parents first, bounds, known types). */
    AUTO_FREE char *text = m ? json_dumps(m, JSON_COMPACT) : NULL;
    json_decref(m);
    struct gerr err;
    json_t *parsed = NULL;
    if (!text || cas_manifest_parse(text, strlen(text), &parsed, &err) < 0) {
        ctl_err(e, CTL_E_INVALID, "invalid_argument", "entries", "entries: %s", text ? err.msg : "out of memory");
        return NULL;
    }
    /* Every chunk must be stored already: a tree that names a missing one could never
     * be materialised. */
    size_t nmissing = 0;
    const char *first_missing = NULL, *missing_in = NULL;
    json_array_foreach(json_object_get(parsed, "entries"), i, ent) {
        size_t k;
        json_t *ch;
        json_array_foreach(json_object_get(ent, "chunks"), k, ch) {
            struct cas_digest cd;
            if (cas_digest_parse(json_string_value(ch), &cd) == 0 && !ctl_ws_holds(c, ws, json_string_value(ch)) &&
                !nmissing++) {
                first_missing = json_string_value(ch);
                missing_in = json_string_value(json_object_get(ent, "path"));
            }
        }
    }
    if (nmissing) {
        ctl_err(e, CTL_E_CONFLICT, "missing_blobs", "entries",
                "entries: %zu chunks are not stored (the first: %s of %s); upload them (PUT /v1/blobs/DIGEST, "
                "POST /v1/blobs/missing lists them) first", nmissing, first_missing, missing_in);
        json_decref(parsed);
        return NULL;
    }
    struct cas_digest d;
    int r = cas_manifest_store(c->cas, parsed, &d, &err);
    json_decref(parsed);
    if (r < 0) {
        ctl_err(e, CTL_E_INVALID, "invalid_argument", "entries", "entries: %s", err.msg);
        return NULL;
    }
    char hex[CAS_HEX_LEN + 1], id[IMAGE_ID_MAX];
    cas_digest_hex(&d, hex);
    snprintf(id, sizeof id, "sha256:%s", hex);
    /* The tree is the workspace's to mount; its manifest counts as stored bytes. */
    char key[8 + CAS_HEX_LEN];
    owner_key(&d, key);
    if (store_blob_own(c->store, ws, key, strlen(text), &err) < 0) {
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "recording the tree failed: %s", err.msg);
        return NULL;
    }
    return json_pack("{s:s,s:I}", "id", id, "entries", (json_int_t)json_array_size(entries));
}

int ctl_mounts_resolve(struct ctl *c, const char *ws, const struct spec_function *f, char ***dirs, struct gerr *err)
{
    *dirs = xcalloc(f->nmounts + 1, sizeof **dirs);
    for (size_t i = 0; i < f->nmounts; i++) {
        char dir[PATH_MAX];
        struct cas_digest d;
        if (cas_digest_parse(f->mount_images[i], &d) < 0 || !cas_has(c->cas, &d) ||
            (ws && !ctl_ws_holds(c, ws, f->mount_images[i]))) {
            gerr_set(err, ENOENT, "mounts[%zu].image: tree %s is not stored; create it with POST /v1/mounts", i,
                     f->mount_images[i]);
            goto fail;
        }
        int r = image_materialize(c->cas, c->images_dir, f->mount_images[i], dir, sizeof dir, err);
        if (r < 0) {
            gerr_prefix(err, "mounts[%zu].image", i);
            goto fail;
        }
        (*dirs)[i] = xstrdup(dir);
    }
    return 0;
fail:
    ctl_mounts_free(*dirs);
    *dirs = NULL;
    return -err->code;
}

void ctl_mounts_free(char **dirs)
{
    for (size_t i = 0; dirs && dirs[i]; i++)
        free(dirs[i]);
    free(dirs);
}
