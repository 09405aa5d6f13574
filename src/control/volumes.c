/* Volumes (Modal's modal.Volume): named trees of a workspace that functions mount
 * writable. A version is a tree manifest in the object store; the store's volumes row
 * names the current one and its number. Unchanged files cost nothing from version to
 * version (their chunks are the same objects) and identical files are stored once.
 *
 * In a container (ctr_spec volumes) a volume is an overlay: the lower layer is the
 * version current when the container started, materialised read-only under
 * <data-dir>/volumes/versions/<hex> (unchanged files hard-linked from the volume's
 * previous materialised version, so a new version costs only its changed files), the
 * upper and work layers <data-dir>/volumes/ctr/<container>/<i>. Reads go at the
 * speed of the disk; writes go to the container's upper layer.
 *
 * commit (from inside, or at a normal stop): the volume is unmounted in the container
 * (refused while a file in it is open: nothing changed), its upper layer is scanned
 * (cas_upper_scan: files stored, whiteouts as deletions, nothing followed), the
 * changes applied to the volume's *current* manifest (last writer wins per path), the
 * new version stored, the upper layer emptied and the volume mounted again on the new
 * version. reload: unmounted the same way and mounted again on the current version,
 * keeping the upper layer (uncommitted changes stay on top, as in Modal). A container
 * that crashes or is killed by the worker commits nothing.
 *
 * Clients change volumes without a container: they upload chunks with the blob
 * protocol and send one change list (ctl_volume_put), or remove paths. Everything here
 * runs on the loop thread: a commit stores the changed files' chunks before it
 * answers, so a commit of large new files holds the loop that long. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/json_cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "cas/cas.h"
#include "control/internal.h"
#include "spec/spec.h"
#include "store/store.h"

/* Entries a volume's tree may hold: each commit reads and rewrites the whole
 * manifest (about 200 bytes an entry), so this keeps one under 64 MiB
 * (CAS_MANIFEST_MAX) and a commit's manifest work in the tens of milliseconds. */
#define CTL_VOLUME_MAX_ENTRIES 200000
/* A listing answers at most this many entries (a client lists a large volume a
 * directory at a time). */
#define CTL_VOLUME_LIST_MAX 100000

static int store_failed(struct ctl_error *e, const struct gerr *err)
{
    ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "%s", err->msg);
    return -EIO;
}

static int qualify(const char *ws, const char *name, char qname[CTL_QNAME_MAX], struct ctl_error *e)
{
    if (!name || !spec_secret_name_valid(name)) {
        ctl_err(e, CTL_E_INVALID, "invalid_argument", "name", "name: a volume name must be %s",
                SPEC_SECRET_NAME_CHARS);
        return -EINVAL;
    }
    ctl_qualify(qname, ws, name);
    return 0;
}

/* The volume named qname into *v; CTL_E_NOT_FOUND when there is none. */
static int volume_get(struct ctl *c, const char *qname, struct store_volume *v, struct ctl_error *e)
{
    struct gerr err;
    int r = store_volume_get(c->store, qname, v, &err);
    if (r == -ENOENT) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "volume %s not found", ctl_local_name(qname));
        return r;
    }
    return r < 0 ? store_failed(e, &err) : 0;
}

static int find(struct ctl *c, const char *ws, const char *name, struct store_volume *v, struct ctl_error *e)
{
    char qname[CTL_QNAME_MAX];
    int r = qualify(ws, name, qname, e);
    return r < 0 ? r : volume_get(c, qname, v, e);
}

static int load_manifest(struct ctl *c, const char *id, json_t **m, struct ctl_error *e)
{
    struct cas_digest d;
    struct gerr err;
    if (cas_digest_parse(id, &d) < 0 || cas_manifest_load(c->cas, &d, m, &err) < 0) {
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "the volume's tree %s cannot be read: %s", id,
                err.code ? err.msg : "bad id");
        return -EIO;
    }
    return 0;
}

/* Normalises a path a client gives ("/a/b", "a/b/", "/" or "" for the root) into
 * out (relative, "." for the root); CTL_E_INVALID naming field for ".." or empty
 * parts. */
static int norm_path(const char *in, const char *field, char out[PATH_MAX], struct ctl_error *e)
{
    if (!in)
        in = "";
    while (*in == '/')
        in++;
    size_t n = strlen(in);
    while (n > 0 && in[n - 1] == '/')
        n--;
    if (n >= PATH_MAX) {
        ctl_err(e, CTL_E_INVALID, "invalid_argument", field, "%s: path too long", field);
        return -EINVAL;
    }
    if (n == 0) {
        strcpy(out, ".");
        return 0;
    }
    memcpy(out, in, n);
    out[n] = '\0';
    for (const char *s = out;;) {
        const char *slash = strchr(s, '/');
        size_t k = slash ? (size_t)(slash - s) : strlen(s);
        if (k == 0 || (k == 1 && s[0] == '.') || (k == 2 && s[0] == '.' && s[1] == '.')) {
            ctl_err(e, CTL_E_INVALID, "invalid_argument", field,
                    "%s: \"%s\" must be a path in the volume without empty, \".\" or \"..\" parts", field, in);
            return -EINVAL;
        }
        if (!slash)
            return 0;
        s = slash + 1;
    }
}

static json_t *empty_manifest(void)
{
    return json_pack("{s:i,s:{},s:[{s:s,s:s,s:i,s:i,s:i}]}", "gust_manifest", 1, "config", "entries", "path", ".",
                     "type", "dir", "mode", 0755, "uid", 0, "gid", 0);
}

/* ---------- materialised versions ---------- */

static void versions_dir(struct ctl *c, char *out, size_t cap)
{
    snprintf(out, cap, "%s/volumes/versions", c->cfg.data_dir);
}

/* The directory of version id (materialised when missing, reusing the files of the
 * volume's last materialised version) into dir. */
static int version_dir(struct ctl *c, const char *qname, const char *id, char dir[PATH_MAX], struct gerr *err)
{
    /* Room for "/<64 hex>" after the root in a PATH_MAX buffer. */
    char root[PATH_MAX - 80];
    versions_dir(c, root, sizeof root);
    snprintf(dir, PATH_MAX, "%s/%s", root, id + 7);
    struct stat st;
    if (stat(dir, &st) == 0)
        return 0;
    if (mkdir_p(root, 0700) < 0)
        return gerr_sys(err, errno, "mkdir %s", root);
    struct cas_digest d, pd;
    if (cas_digest_parse(id, &d) < 0)
        return gerr_set(err, EINVAL, "bad tree id %s", id);
    const char *prev = json_string_value(json_object_get(c->vol_last, qname));
    char prev_dir[PATH_MAX] = "";
    if (prev && cas_digest_parse(prev, &pd) == 0) {
        snprintf(prev_dir, sizeof prev_dir, "%s/%s", root, prev + 7);
        if (stat(prev_dir, &st) < 0)
            prev_dir[0] = '\0';
    }
    int r = cas_materialize_reuse(c->cas, &d, dir, prev_dir[0] ? prev_dir : NULL, prev_dir[0] ? &pd : NULL, err);
    if (r < 0)
        return r;
    json_object_set_new(c->vol_last, qname, json_string(id));
    return 0;
}

/* Removes the materialised versions no volume has as current and no running
 * container mounts. */
static int prune_row(const struct store_volume *v, void *ud)
{
    json_object_set_new(ud, v->manifest + 7, json_true());
    return 0;
}

static void prune_versions(struct ctl *c)
{
    AUTO_JSON json_t *live = json_object();
    struct gerr err;
    if (store_volume_list(c->store, NULL, prune_row, live, &err) < 0) {
        log_warn("control", "volumes: keeping old versions: %s", err.msg);
        return;
    }
    for (size_t b = 0; b < c->ctrs.nbuckets; b++)
        for (struct hmap_node *n = c->ctrs.buckets[b]; n; n = n->next) {
            const struct ctl_ctr *k = (const struct ctl_ctr *)n;
            for (size_t i = 0; i < k->nvols; i++)
                json_object_set_new(live, k->vols[i].manifest + 7, json_true());
        }
    char root[PATH_MAX];
    versions_dir(c, root, sizeof root);
    AUTO_FD int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d)
        return;
    fd = -1;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || json_object_get(live, de->d_name))
            continue;
        rm_rf_in(dirfd(d), de->d_name);
    }
    closedir(d);
}

/* ---------- objects ---------- */

json_t *ctl_volume_create(struct ctl *c, const char *ws, const char *name, bool create_if_missing,
                          struct ctl_error *e)
{
    char qname[CTL_QNAME_MAX];
    if (qualify(ws, name, qname, e) < 0)
        return NULL;
    int created = 0;
    struct gerr err;
    if (create_if_missing) {
        AUTO_JSON json_t *m = empty_manifest();
        struct cas_digest d;
        if (cas_manifest_store(c->cas, m, &d, &err) < 0) {
            store_failed(e, &err);
            return NULL;
        }
        char id[8 + CAS_HEX_LEN] = "sha256:";
        cas_digest_hex(&d, id + 7);
        created = store_volume_create(c->store, qname, id, wall_s(), &err);
        if (created < 0) {
            store_failed(e, &err);
            return NULL;
        }
        if (created)
            log_info("control", "volume %s created", qname);
    }
    struct store_volume v;
    if (volume_get(c, qname, &v, e) < 0)
        return NULL;
    return json_pack("{s:s,s:b,s:I}", "name", name, "created", created, "version", (json_int_t)v.version);
}

struct list_ud {
    json_t *arr;
};

static int list_row(const struct store_volume *v, void *ud)
{
    struct list_ud *l = ud;
    json_array_append_new(l->arr, json_pack("{s:s,s:I,s:f,s:f}", "name", ctl_local_name(v->name), "version",
                                            (json_int_t)v->version, "created_at", v->created_at, "updated_at",
                                            v->updated_at));
    return 0;
}

json_t *ctl_volume_list(struct ctl *c, const char *ws, struct ctl_error *e)
{
    struct list_ud l = {json_array()};
    struct gerr err;
    if (store_volume_list(c->store, ws, list_row, &l, &err) < 0) {
        json_decref(l.arr);
        store_failed(e, &err);
        return NULL;
    }
    return json_pack("{s:o}", "volumes", l.arr);
}

/* The id of a running container that mounts qname, or NULL. */
static const char *mounted_by(struct ctl *c, const char *qname)
{
    for (size_t b = 0; b < c->ctrs.nbuckets; b++)
        for (struct hmap_node *n = c->ctrs.buckets[b]; n; n = n->next) {
            const struct ctl_ctr *k = (const struct ctl_ctr *)n;
            for (size_t i = 0; i < k->nvols; i++)
                if (!strcmp(k->vols[i].qname, qname))
                    return k->id;
        }
    return NULL;
}

int ctl_volume_delete(struct ctl *c, const char *ws, const char *name, struct ctl_error *e)
{
    char qname[CTL_QNAME_MAX];
    struct store_volume v;
    if (qualify(ws, name, qname, e) < 0 || volume_get(c, qname, &v, e) < 0)
        return -1;
    const char *user = mounted_by(c, qname);
    if (user) {
        ctl_err(e, CTL_E_CONFLICT, "volume_in_use", NULL,
                "volume %s is mounted by running container %s; stop its app (gust stop) first", name, user);
        return -EBUSY;
    }
    struct gerr err;
    if (store_volume_delete(c->store, qname, &err) < 0)
        return store_failed(e, &err);
    json_object_del(c->vol_last, qname);
    prune_versions(c);
    log_info("control", "volume %s deleted", qname);
    return 0;
}

/* ---------- files, from clients ---------- */

static const char *entry_type(json_t *ent)
{
    return json_string_value(json_object_get(ent, "type"));
}

static json_t *file_entry_json(json_t *ent, double mtime)
{
    const char *t = entry_type(ent);
    const char *type = !strcmp(t, "dir") ? "directory" : !strcmp(t, "symlink") ? "symlink" : "file";
    json_t *j = json_pack("{s:s,s:s,s:O,s:f}", "path", json_string_value(json_object_get(ent, "path")), "type", type,
                          "mode", json_object_get(ent, "mode"), "mtime", mtime);
    json_object_set_new(j, "size", json_integer(json_integer_value(json_object_get(ent, "size"))));
    if (!strcmp(t, "symlink"))
        json_object_set(j, "target", json_object_get(ent, "target"));
    return j;
}

/* The entry at path in manifest m (hard links resolved to their target), or NULL. */
static json_t *entry_at(json_t *m, const char *path)
{
    size_t i;
    json_t *ent;
    json_array_foreach(json_object_get(m, "entries"), i, ent) {
        if (strcmp(json_string_value(json_object_get(ent, "path")), path))
            continue;
        if (!strcmp(entry_type(ent), "hardlink"))
            return entry_at(m, json_string_value(json_object_get(ent, "target")));
        return ent;
    }
    return NULL;
}

json_t *ctl_volume_listdir(struct ctl *c, const char *ws, const char *name, const char *path, bool recursive,
                           struct ctl_error *e)
{
    struct store_volume v;
    char p[PATH_MAX];
    if (find(c, ws, name, &v, e) < 0 || norm_path(path, "path", p, e) < 0)
        return NULL;
    AUTO_JSON json_t *m = NULL;
    if (load_manifest(c, v.manifest, &m, e) < 0)
        return NULL;
    json_t *at = entry_at(m, p);
    if (!at) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", "path", "%s not found in volume %s", p, name);
        return NULL;
    }
    json_t *list = json_array();
    /* A file's listing is that file alone (Modal's listdir of a file path). */
    if (strcmp(entry_type(at), "dir")) {
        json_array_append_new(list, file_entry_json(at, v.updated_at));
        return json_pack("{s:o,s:I}", "entries", list, "version", (json_int_t)v.version);
    }
    bool root = !strcmp(p, ".");
    size_t plen = strlen(p);
    size_t i;
    json_t *ent;
    json_array_foreach(json_object_get(m, "entries"), i, ent) {
        const char *ep = json_string_value(json_object_get(ent, "path"));
        if (i == 0)
            continue;
        const char *rest = root ? ep : (!strncmp(ep, p, plen) && ep[plen] == '/' ? ep + plen + 1 : NULL);
        if (!rest || (!recursive && strchr(rest, '/')))
            continue;
        json_t *shown = !strcmp(entry_type(ent), "hardlink")
                            ? entry_at(m, json_string_value(json_object_get(ent, "target")))
                            : ent;
        json_t *fe = file_entry_json(shown, v.updated_at);
        json_object_set(fe, "path", json_object_get(ent, "path"));
        json_array_append_new(list, fe);
        if (json_array_size(list) >= CTL_VOLUME_LIST_MAX)
            break;
    }
    return json_pack("{s:o,s:I}", "entries", list, "version", (json_int_t)v.version);
}

int ctl_volume_read(struct ctl *c, const char *ws, const char *name, const char *path, uint64_t chunk,
                    uint8_t **data, size_t *len, struct ctl_error *e)
{
    struct store_volume v;
    char p[PATH_MAX];
    if (find(c, ws, name, &v, e) < 0 || norm_path(path, "path", p, e) < 0)
        return -1;
    AUTO_JSON json_t *m = NULL;
    if (load_manifest(c, v.manifest, &m, e) < 0)
        return -1;
    json_t *at = entry_at(m, p);
    if (!at || strcmp(entry_type(at), "file")) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", "path", "%s: no such file in volume %s", p, name);
        return -ENOENT;
    }
    json_t *chunks = json_object_get(at, "chunks");
    if (chunk >= json_array_size(chunks)) {
        ctl_err(e, CTL_E_INVALID, "invalid_argument", "chunk", "chunk: %s has %zu chunks of %u bytes", p,
                json_array_size(chunks), CAS_CHUNK_SIZE);
        return -EINVAL;
    }
    struct cas_digest d;
    struct gerr err;
    cas_digest_parse(json_string_value(json_array_get(chunks, chunk)), &d);
    if (cas_get(c->cas, &d, data, len, &err) < 0)
        return store_failed(e, &err);
    return 0;
}

/* Stores m as the next version of v (one row update); *id_out its id. */
static int publish(struct ctl *c, const struct store_volume *v, json_t *m, char id_out[8 + CAS_HEX_LEN],
                   struct ctl_error *e)
{
    struct cas_digest d;
    struct gerr err;
    if (cas_manifest_store(c->cas, m, &d, &err) < 0)
        return store_failed(e, &err);
    strcpy(id_out, "sha256:");
    cas_digest_hex(&d, id_out + 7);
    if (!strcmp(id_out, v->manifest))
        return 0; /* nothing changed: no new version */
    if (store_volume_set(c->store, v->name, v->version + 1, id_out, wall_s(), &err) < 0)
        return store_failed(e, &err);
    log_info("control", "volume %s: version %lld", v->name, (long long)v->version + 1);
    return 1;
}

/* Applies changes to v's current tree and publishes the result. */
static json_t *apply_and_publish(struct ctl *c, const struct store_volume *v, json_t *changes, struct ctl_error *e)
{
    AUTO_JSON json_t *base = NULL, *next = NULL;
    if (load_manifest(c, v->manifest, &base, e) < 0)
        return NULL;
    struct gerr err;
    int r = cas_manifest_apply(base, changes, CTL_VOLUME_MAX_ENTRIES, &next, &err);
    if (r < 0) {
        ctl_err(e, r == -E2BIG ? CTL_E_TOO_LARGE : CTL_E_INVALID, r == -E2BIG ? "too_large" : "invalid_argument",
                r == -E2BIG ? NULL : "changes", "%s%s", err.msg,
                r == -E2BIG ? " (a volume holds at most 200,000 files and directories)" : "");
        return NULL;
    }
    char id[8 + CAS_HEX_LEN];
    r = publish(c, v, next, id, e);
    if (r < 0)
        return NULL;
    return json_pack("{s:s,s:I,s:b}", "id", id, "version", (json_int_t)(v->version + (r > 0)), "changed", r > 0);
}

json_t *ctl_volume_put(struct ctl *c, const char *ws, const char *name, json_t *changes, bool force,
                       struct ctl_error *e)
{
    struct store_volume v;
    if (find(c, ws, name, &v, e) < 0)
        return NULL;
    struct gerr err;
    if (cas_changes_check(changes, &err) < 0) {
        ctl_err(e, err.code == E2BIG ? CTL_E_TOO_LARGE : CTL_E_INVALID,
                err.code == E2BIG ? "too_large" : "invalid_argument", "changes", "%s", err.msg);
        return NULL;
    }
    AUTO_JSON json_t *base = NULL;
    if (load_manifest(c, v.manifest, &base, e) < 0)
        return NULL;
    size_t i;
    json_t *ch;
    json_array_foreach(changes, i, ch) {
        const char *type = entry_type(ch);
        char field[64];
        snprintf(field, sizeof field, "changes[%zu]", i);
        if (!strcmp(type, "delete") || json_is_true(json_object_get(ch, "opaque"))) {
            ctl_err(e, CTL_E_INVALID, "invalid_argument", field,
                    "%s: uploads add files, directories and symlinks (remove paths with POST "
                    "/v1/volumes/NAME/remove)", field);
            return NULL;
        }
        size_t k;
        json_t *d;
        json_array_foreach(json_object_get(ch, "chunks"), k, d) {
            if (!ctl_ws_holds(c, ws, json_string_value(d))) {
                ctl_err(e, CTL_E_CONFLICT, "missing_blobs", field,
                        "%s: chunk %s of %s is not stored; upload it (PUT /v1/blobs/DIGEST) first", field,
                        json_string_value(d), json_string_value(json_object_get(ch, "path")));
                return NULL;
            }
        }
        json_t *old = force ? NULL : entry_at(base, json_string_value(json_object_get(ch, "path")));
        if (old && strcmp(entry_type(old), "dir")) {
            ctl_err(e, CTL_E_CONFLICT, "file_exists", field,
                    "%s: %s already exists in volume %s (upload with force=True to replace it)", field,
                    json_string_value(json_object_get(ch, "path")), name);
            return NULL;
        }
    }
    return apply_and_publish(c, &v, changes, e);
}

json_t *ctl_volume_remove(struct ctl *c, const char *ws, const char *name, const char *path, bool recursive,
                          struct ctl_error *e)
{
    struct store_volume v;
    char p[PATH_MAX];
    if (find(c, ws, name, &v, e) < 0 || norm_path(path, "path", p, e) < 0)
        return NULL;
    if (!strcmp(p, ".")) {
        ctl_err(e, CTL_E_INVALID, "invalid_argument", "path", "path: the volume's root cannot be removed");
        return NULL;
    }
    AUTO_JSON json_t *base = NULL;
    if (load_manifest(c, v.manifest, &base, e) < 0)
        return NULL;
    json_t *at = entry_at(base, p);
    if (!at) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", "path", "%s not found in volume %s", p, name);
        return NULL;
    }
    if (!strcmp(entry_type(at), "dir") && !recursive) {
        size_t plen = strlen(p), i;
        json_t *ent;
        json_array_foreach(json_object_get(base, "entries"), i, ent) {
            const char *ep = json_string_value(json_object_get(ent, "path"));
            if (!strncmp(ep, p, plen) && ep[plen] == '/') {
                ctl_err(e, CTL_E_INVALID, "invalid_argument", "recursive",
                        "%s is a directory that is not empty: remove it with recursive=True", p);
                return NULL;
            }
        }
    }
    AUTO_JSON json_t *changes = json_pack("[{s:s,s:s}]", "path", p, "type", "delete");
    return apply_and_publish(c, &v, changes, e);
}

/* Copies entry ent (a file, a symlink or a directory) to path dst in changes. */
static void copy_entry(json_t *changes, json_t *ent, const char *dst)
{
    json_t *copy = json_deep_copy(ent);
    json_object_set_new(copy, "path", json_string(dst));
    json_object_del(copy, "opaque");
    json_array_append_new(changes, copy);
}

/* The last part of a normalised path. */
static const char *base_name(const char *p)
{
    const char *slash = strrchr(p, '/');
    return slash ? slash + 1 : p;
}

json_t *ctl_volume_copy(struct ctl *c, const char *ws, const char *name, json_t *srcs, const char *dst_path,
                        bool recursive, struct ctl_error *e)
{
    struct store_volume v;
    char dst[PATH_MAX];
    if (find(c, ws, name, &v, e) < 0 || norm_path(dst_path, "dst_path", dst, e) < 0)
        return NULL;
    if (!json_is_array(srcs) || !json_array_size(srcs)) {
        ctl_err(e, CTL_E_INVALID, "invalid_argument", "src_paths", "src_paths: a list of at least one path");
        return NULL;
    }
    AUTO_JSON json_t *base = NULL;
    if (load_manifest(c, v.manifest, &base, e) < 0)
        return NULL;
    /* As cp: into dst when it is a directory, else to dst itself (one source only). */
    json_t *at_dst = strcmp(dst, ".") ? entry_at(base, dst) : NULL;
    bool into = !strcmp(dst, ".") || (at_dst && !strcmp(entry_type(at_dst), "dir"));
    if (!into && json_array_size(srcs) > 1) {
        ctl_err(e, CTL_E_INVALID, "invalid_argument", "dst_path",
                "dst_path: %s is not a directory of volume %s; copying several paths needs one", dst, name);
        return NULL;
    }
    AUTO_JSON json_t *changes = json_array();
    size_t i;
    json_t *sj;
    json_array_foreach(srcs, i, sj) {
        char field[32], src[PATH_MAX], target[PATH_MAX];
        snprintf(field, sizeof field, "src_paths[%zu]", i);
        if (!json_is_string(sj)) {
            ctl_err(e, CTL_E_INVALID, "invalid_argument", field, "%s: must be a string", field);
            return NULL;
        }
        if (norm_path(json_string_value(sj), field, src, e) < 0)
            return NULL;
        json_t *ent = strcmp(src, ".") ? entry_at(base, src) : NULL;
        if (!ent) {
            ctl_err(e, CTL_E_NOT_FOUND, "not_found", field, "%s: %s not found in volume %s", field, src, name);
            return NULL;
        }
        int n = into ? (!strcmp(dst, ".") ? snprintf(target, sizeof target, "%s", base_name(src))
                                          : snprintf(target, sizeof target, "%s/%s", dst, base_name(src)))
                     : snprintf(target, sizeof target, "%s", dst);
        if (n >= (int)sizeof target) {
            ctl_err(e, CTL_E_INVALID, "invalid_argument", "dst_path", "dst_path: the copy's path is too long");
            return NULL;
        }
        bool dir = !strcmp(entry_type(ent), "dir");
        if (dir && !recursive) {
            ctl_err(e, CTL_E_INVALID, "invalid_argument", "recursive",
                    "%s is a directory: copy it with recursive=True", src);
            return NULL;
        }
        size_t slen = strlen(src);
        if (dir && (!strcmp(target, src) || (!strncmp(target, src, slen) && target[slen] == '/'))) {
            ctl_err(e, CTL_E_INVALID, "invalid_argument", "dst_path",
                    "dst_path: cannot copy directory %s into itself (%s)", src, target);
            return NULL;
        }
        if (!dir && !strcmp(target, src))
            continue; /* a file onto itself: nothing changes */
        copy_entry(changes, ent, target);
        if (!dir)
            continue;
        size_t k;
        json_t *sub;
        json_array_foreach(json_object_get(base, "entries"), k, sub) {
            const char *sp = json_string_value(json_object_get(sub, "path"));
            char to[PATH_MAX];
            if (strncmp(sp, src, slen) || sp[slen] != '/')
                continue;
            if (snprintf(to, sizeof to, "%s%s", target, sp + slen) >= (int)sizeof to) {
                ctl_err(e, CTL_E_INVALID, "invalid_argument", "dst_path", "dst_path: a copied path is too long");
                return NULL;
            }
            if (json_array_size(changes) >= CTL_VOLUME_MAX_ENTRIES) {
                ctl_err(e, CTL_E_TOO_LARGE, "too_large", "src_paths",
                        "the copy would hold more than 200,000 files and directories");
                return NULL;
            }
            copy_entry(changes, sub, to);
        }
    }
    return apply_and_publish(c, &v, changes, e);
}

/* ---------- in containers ---------- */

/* A container's volume layers without a disk size of its own get the sandbox's default
 * writable layer (runtime/sandbox.c: 512 MiB): what it writes into its volumes before a
 * commit is bounded like what it writes into its root. */
#define CTL_VOLUME_LAYER_DEFAULT_MIB 512u

/* The directory of container id's volume layers. */
static int layers_dir(struct ctl *c, const char *id, char out[PATH_MAX], struct gerr *err)
{
    if (snprintf(out, PATH_MAX, "%s/volumes/ctr/%s", c->cfg.data_dir, id) >= PATH_MAX)
        return gerr_set(err, ENAMETOOLONG, "data directory path too long");
    return 0;
}

/* Removes a container's layers directory: the tmpfs on it first (detached: a reload's
 * child may still hold it for a moment), then what is left. */
static void layers_remove(const char *dir)
{
    if (umount2(dir, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
        log_warn("control", "unmounting the volume layers at %s: %s", dir, strerror(errno));
    rm_rf(dir);
}

int ctl_volumes_for_start(struct ctl *c, struct ctl_ctr *k, const struct spec_function *f, struct ctr_spec *cs,
                          struct gerr *err)
{
    if (!f->nvolumes)
        return 0;
    char ws[CTL_WS_NAME_MAX + 1];
    ctl_ws_of(k->fv->fn->app->name, ws);
    k->vols = xcalloc(f->nvolumes, sizeof *k->vols);
    k->vol_paths = xcalloc(f->nvolumes + 1, sizeof *k->vol_paths);
    k->vol_lowers = xcalloc(f->nvolumes + 1, sizeof *k->vol_lowers);
    k->vol_dirs = xcalloc(f->nvolumes + 1, sizeof *k->vol_dirs);
    /* The upper and work layers of all its volumes are on one tmpfs of the container's
     * disk size: a container writing into a volume cannot fill the host's disk (another
     * tenant's), and the pages it writes are charged to its own memory cgroup, as its
     * root layer's are. A commit empties it. */
    char cdir[PATH_MAX], opts[64];
    if (layers_dir(c, k->id, cdir, err) < 0)
        return -1;
    if (mkdir_p(cdir, 0700) < 0)
        return gerr_sys(err, errno, "mkdir %s", cdir);
    snprintf(opts, sizeof opts, "size=%um,mode=0700", f->disk_mib ? f->disk_mib : CTL_VOLUME_LAYER_DEFAULT_MIB);
    if (mount("tmpfs", cdir, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
        return gerr_sys(err, errno, "mount the volume layers' tmpfs on %s", cdir);
    k->vol_layers = true;
    for (size_t i = 0; i < f->nvolumes; i++) {
        struct ctl_ctr_vol *kv = &k->vols[k->nvols];
        ctl_qualify(kv->qname, ws, f->volume_names[i]);
        struct store_volume v;
        int r = store_volume_get(c->store, kv->qname, &v, err);
        if (r < 0)
            return gerr_prefix(err, "volumes[%zu]: volume %s (create it: gust volume create %s)", i,
                               f->volume_names[i], f->volume_names[i]);
        snprintf(kv->manifest, sizeof kv->manifest, "%s", v.manifest);
        kv->version = v.version;
        snprintf(kv->path, sizeof kv->path, "%s", f->volume_paths[i]);
        char lower[PATH_MAX];
        r = version_dir(c, kv->qname, v.manifest, lower, err);
        if (r < 0)
            return gerr_prefix(err, "volumes[%zu]: volume %s", i, f->volume_names[i]);
        if (snprintf(kv->dir, sizeof kv->dir, "%s/volumes/ctr/%s/%zu", c->cfg.data_dir, k->id, i) >=
            (int)sizeof kv->dir)
            return gerr_set(err, ENAMETOOLONG, "volumes[%zu]: data directory path too long", i);
        if (mkdir_p(kv->dir, 0700) < 0)
            return gerr_sys(err, errno, "mkdir %s", kv->dir);
        k->vol_paths[i] = kv->path;
        k->vol_lowers[i] = xstrdup(lower);
        k->vol_dirs[i] = kv->dir;
        k->nvols++;
    }
    cs->volume_paths = k->vol_paths;
    cs->volume_lowers = k->vol_lowers;
    cs->volume_dirs = k->vol_dirs;
    cs->nvolumes = k->nvols;
    return 0;
}

/* The changes of kv's upper layer published onto the volume's current version
 * (kv->manifest is the version it was on). Returns 1 when a new version was made. */
static int commit_upper(struct ctl *c, struct ctl_ctr_vol *kv, char id_out[8 + CAS_HEX_LEN], struct ctl_error *e)
{
    struct store_volume v;
    if (volume_get(c, kv->qname, &v, e) < 0)
        return -1;
    char upper[PATH_MAX];
    snprintf(upper, sizeof upper, "%s/upper", kv->dir);
    AUTO_JSON json_t *changes = NULL;
    struct gerr err;
    if (cas_upper_scan(c->cas, upper, CTL_VOLUME_MAX_ENTRIES, &changes, &err) < 0) {
        ctl_err(e, err.code == E2BIG ? CTL_E_TOO_LARGE : CTL_E_INTERNAL, err.code == E2BIG ? "too_large" : "internal",
                NULL, "volume %s: %s", ctl_local_name(kv->qname), err.msg);
        return -1;
    }
    strcpy(id_out, v.manifest);
    if (json_array_size(changes) == 0)
        return 0;
    /* Over the workspace's quota the commit is refused and the changes stay in the
     * container's layer (their chunks are in the object store until a gc). */
    char ws[CTL_WS_NAME_MAX + 1];
    ctl_ws_of(kv->qname, ws);
    if (ctl_ws_own_chunks(c, ws, changes, e) < 0)
        return -1;
    json_t *r = apply_and_publish(c, &v, changes, e);
    if (!r)
        return -1;
    snprintf(id_out, 8 + CAS_HEX_LEN, "%s", json_string_value(json_object_get(r, "id")));
    bool changed = json_is_true(json_object_get(r, "changed"));
    json_decref(r);
    return changed;
}

/* Empties kv's upper and work layers (after their changes were published). */
static int clear_upper(struct ctl_ctr_vol *kv, struct gerr *err)
{
    AUTO_FD int dfd = open(kv->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return gerr_sys(err, errno, "open %s", kv->dir);
    int r = rm_rf_in(dfd, "upper");
    if (r == 0)
        r = rm_rf_in(dfd, "work");
    return r < 0 ? gerr_sys(err, -r, "empty %s", kv->dir) : 0;
}

/* The container k's volume named name (local), or NULL with the error set. */
static struct ctl_ctr_vol *ctr_volume(struct ctl *c, const char *ctr_id, const char *name, struct ctl_ctr **kout,
                                      struct ctl_error *e)
{
    struct ctl_ctr *k = ctr_id && ctr_id[0] ? ctl_find_ctr(c, ctr_id) : NULL;
    if (!k) {
        ctl_err(e, CTL_E_INVALID, "not_in_container", NULL,
                "commit() and reload() work inside a function's container, on a volume it mounts");
        return NULL;
    }
    if (!c->wops->volume_detach || !c->wops->volume_attach) {
        ctl_err(e, CTL_E_INVALID, "not_supported", NULL, "this worker cannot change a running container's volumes");
        return NULL;
    }
    for (size_t i = 0; i < k->nvols; i++)
        if (!strcmp(ctl_local_name(k->vols[i].qname), name)) {
            *kout = k;
            return &k->vols[i];
        }
    ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "volume %s is not mounted in this container", name);
    return NULL;
}

/* Mounts kv again over version id; on failure the volume stays unmounted in the
 * container (its upper layer is kept), which the error says. */
static int remount(struct ctl *c, struct ctl_ctr *k, struct ctl_ctr_vol *kv, const char *id, struct ctl_error *e)
{
    char lower[PATH_MAX];
    struct gerr err;
    /* A volatile overlay's work dir keeps a marker that refuses the next mount on it:
     * the work dir is scratch while unmounted, so it starts afresh. */
    AUTO_FD int dfd = open(kv->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int wr = dfd < 0 ? -errno : rm_rf_in(dfd, "work");
    if (wr < 0) {
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "volume %s: clearing %s/work: %s", ctl_local_name(kv->qname),
                kv->dir, strerror(-wr));
        return -EIO;
    }
    if (version_dir(c, kv->qname, id, lower, &err) < 0 ||
        c->wops->volume_attach(c->worker, k->id, kv->path, lower, kv->dir, &err) < 0) {
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "volume %s: mounting it again at %s failed: %s",
                ctl_local_name(kv->qname), kv->path, err.msg);
        return -EIO;
    }
    snprintf(kv->manifest, sizeof kv->manifest, "%s", id);
    return 0;
}

static int detach(struct ctl *c, struct ctl_ctr *k, struct ctl_ctr_vol *kv, const char *op, struct ctl_error *e)
{
    struct gerr err;
    int r = c->wops->volume_detach(c->worker, k->id, kv->path, &err);
    if (r == -EBUSY) {
        ctl_err(e, CTL_E_CONFLICT, "volume_busy", NULL,
                "volume %s has open files in this container (at %s): close them before %s()",
                ctl_local_name(kv->qname), kv->path, op);
        return r;
    }
    if (r < 0) {
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "volume %s: %s", ctl_local_name(kv->qname), err.msg);
        return r;
    }
    return 0;
}

json_t *ctl_volume_commit(struct ctl *c, const char *ctr_id, const char *name, struct ctl_error *e)
{
    struct ctl_ctr *k;
    struct ctl_ctr_vol *kv = ctr_volume(c, ctr_id, name, &k, e);
    if (!kv || detach(c, k, kv, "commit", e) < 0)
        return NULL;
    char id[8 + CAS_HEX_LEN];
    struct ctl_error ce = {0};
    int r = commit_upper(c, kv, id, &ce);
    struct gerr err;
    if (r >= 0 && clear_upper(kv, &err) < 0) {
        ctl_err(&ce, CTL_E_INTERNAL, "internal", NULL, "volume %s: %s", name, err.msg);
        r = -1;
    }
    /* Mounted again in any case: on the new version with an empty upper layer, or
     * (the commit failed) where it was with the container's changes still on top. */
    if (remount(c, k, kv, r >= 0 ? id : kv->manifest, e) < 0)
        return NULL;
    if (r < 0) {
        *e = ce;
        return NULL;
    }
    prune_versions(c);
    struct store_volume v;
    if (volume_get(c, kv->qname, &v, e) < 0)
        return NULL;
    return json_pack("{s:s,s:I,s:b}", "name", name, "version", (json_int_t)v.version, "changed", r > 0);
}

json_t *ctl_volume_reload(struct ctl *c, const char *ctr_id, const char *name, struct ctl_error *e)
{
    struct ctl_ctr *k;
    struct ctl_ctr_vol *kv = ctr_volume(c, ctr_id, name, &k, e);
    struct store_volume v;
    if (!kv || volume_get(c, kv->qname, &v, e) < 0 || detach(c, k, kv, "reload", e) < 0)
        return NULL;
    if (remount(c, k, kv, v.manifest, e) < 0)
        return NULL;
    kv->version = v.version;
    prune_versions(c);
    return json_pack("{s:s,s:I}", "name", name, "version", (json_int_t)v.version);
}

void ctl_volumes_release(struct ctl *c, struct ctl_ctr *k, bool commit)
{
    for (size_t i = 0; i < k->nvols; i++) {
        struct ctl_ctr_vol *kv = &k->vols[i];
        if (commit) {
            char id[8 + CAS_HEX_LEN];
            struct ctl_error e = {0};
            if (commit_upper(c, kv, id, &e) < 0)
                log_warn("control", "%s: the changes to volume %s were not committed: %s", k->id, kv->qname,
                         e.message);
        }
    }
    char dir[PATH_MAX];
    struct gerr err;
    if (k->vol_layers && layers_dir(c, k->id, dir, &err) == 0)
        layers_remove(dir);
    k->vol_layers = false;
    bool had = k->nvols > 0;
    ctl_ctr_vols_free(k);
    if (had)
        prune_versions(c);
}

void ctl_volumes_recover(struct ctl *c)
{
    /* The layers of containers of an earlier run: they crashed with it (nothing of
     * theirs is committed). */
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/volumes/ctr", c->cfg.data_dir);
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.') {
                char sub[PATH_MAX];
                if (snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name) < (int)sizeof sub)
                    layers_remove(sub);
            }
        closedir(d);
    }
    rm_rf(dir);
    prune_versions(c);
}

static int roots_row(const struct store_volume *v, void *ud)
{
    json_object_set_new(ud, v->manifest, json_true());
    return 0;
}

int ctl_volume_roots(struct ctl *c, json_t *ids, struct gerr *err)
{
    for (size_t b = 0; b < c->ctrs.nbuckets; b++)
        for (struct hmap_node *n = c->ctrs.buckets[b]; n; n = n->next) {
            const struct ctl_ctr *k = (const struct ctl_ctr *)n;
            for (size_t i = 0; i < k->nvols; i++)
                json_object_set_new(ids, k->vols[i].manifest, json_true());
        }
    return store_volume_list(c->store, NULL, roots_row, ids, err);
}
