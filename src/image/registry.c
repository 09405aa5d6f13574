/* Images in the content-addressed store: import (ingest + materialise once), id of a
 * materialised rootfs, garbage collection (see image/image.h). */
#include "image/image.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"
#include "base/xalloc.h"
#include "cas/cas.h"

/* <images_dir>/by-id/<hex> */
static int image_dir(const char *images_dir, const char *hex, char *out, size_t cap)
{
    if (snprintf(out, cap, "%s/by-id/%s", images_dir, hex) >= (int)cap)
        return -ENAMETOOLONG;
    return 0;
}

int image_import(struct cas *cas, const char *images_dir, const char *src_dir, char id_out[IMAGE_ID_MAX],
                 char *rootfs_out, size_t rootfs_cap, struct cas_stats *st, struct gerr *err)
{
    return image_import_config(cas, images_dir, src_dir, NULL, id_out, rootfs_out, rootfs_cap, st, err);
}

int image_import_config(struct cas *cas, const char *images_dir, const char *src_dir, json_t *config,
                        char id_out[IMAGE_ID_MAX], char *rootfs_out, size_t rootfs_cap, struct cas_stats *st,
                        struct gerr *err)
{
    struct cas_digest d;
    int r = cas_ingest_tree(cas, src_dir, config, &d, st, err);
    if (r < 0)
        return r;
    char hex[CAS_HEX_LEN + 1];
    cas_digest_hex(&d, hex);
    snprintf(id_out, IMAGE_ID_MAX, "sha256:%s", hex);
    return image_materialize(cas, images_dir, id_out, rootfs_out, rootfs_cap, err);
}

/* Materialisations of all threads (the event loop, image builds) take turns: two
 * of the same image must not remove each other's directory. */
static pthread_mutex_t image_materialize_lock = PTHREAD_MUTEX_INITIALIZER;

int image_materialize(struct cas *cas, const char *images_dir, const char *id, char *rootfs_out, size_t rootfs_cap,
                      struct gerr *err)
{
    struct cas_digest d;
    if (cas_digest_parse(id, &d) < 0)
        return gerr_set(err, EINVAL, "bad image id \"%s\"", id);
    char hex[CAS_HEX_LEN + 1], dir[PATH_MAX], marker[PATH_MAX + 32];
    cas_digest_hex(&d, hex);
    if (image_dir(images_dir, hex, dir, sizeof dir) < 0 ||
        snprintf(rootfs_out, rootfs_cap, "%s/rootfs", dir) >= (int)rootfs_cap)
        return gerr_set(err, ENAMETOOLONG, "images directory %s too long", images_dir);
    snprintf(marker, sizeof marker, "%s/" IMAGE_OK_MARKER, dir);
    if (access(marker, F_OK) == 0)
        return 0;
    pthread_mutex_lock(&image_materialize_lock);
    int r = 0;
    if (access(marker, F_OK) == 0)
        goto out;
    /* A directory without the marker is an interrupted materialisation: redo it. */
    rm_rf(dir);
    /* by-id is 0700: images may hold set-user-ID files (nosuid and no_new_privs make
     * them inert in containers) that host users must not be able to reach. */
    char by_id[PATH_MAX];
    snprintf(by_id, sizeof by_id, "%s/by-id", images_dir);
    r = mkdir_p(by_id, 0700);
    if (r == 0 && chmod(by_id, 0700) < 0)
        r = -errno;
    if (r == 0 && mkdir(dir, 0755) < 0 && errno != EEXIST)
        r = -errno;
    if (r < 0) {
        r = gerr_sys(err, -r, "create %s", dir);
        goto out;
    }
    r = cas_materialize(cas, &d, rootfs_out, err);
    if (r < 0) {
        gerr_prefix(err, "materialise image %s", id);
        goto out;
    }
    r = file_write_atomic(marker, "", 0, 0644);
    if (r < 0)
        r = gerr_sys(err, -r, "write %s", marker);
out:
    pthread_mutex_unlock(&image_materialize_lock);
    return r;
}

int image_config(struct cas *cas, const char *id, json_t **config, struct gerr *err)
{
    struct cas_digest d;
    if (cas_digest_parse(id, &d) < 0)
        return gerr_set(err, EINVAL, "bad image id \"%s\"", id);
    json_t *m = NULL;
    int r = cas_manifest_load(cas, &d, &m, err);
    if (r < 0)
        return r;
    *config = json_incref(json_object_get(m, "config"));
    json_decref(m);
    return 0;
}

int image_id_of_rootfs(const char *images_dir, const char *rootfs, char id_out[IMAGE_ID_MAX])
{
    char prefix[PATH_MAX];
    if (snprintf(prefix, sizeof prefix, "%s/by-id/", images_dir) >= (int)sizeof prefix)
        return -EINVAL;
    size_t pl = strlen(prefix);
    if (strncmp(rootfs, prefix, pl) || strlen(rootfs) != pl + CAS_HEX_LEN + strlen("/rootfs") ||
        strcmp(rootfs + pl + CAS_HEX_LEN, "/rootfs"))
        return -EINVAL;
    struct cas_digest d;
    char hex[CAS_HEX_LEN + 1];
    memcpy(hex, rootfs + pl, CAS_HEX_LEN);
    hex[CAS_HEX_LEN] = '\0';
    if (cas_digest_parse(hex, &d) < 0)
        return -EINVAL;
    snprintf(id_out, IMAGE_ID_MAX, "sha256:%s", hex);
    return 0;
}

static bool listed(char *const *ids, size_t n, const char *hex)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(ids[i] + (strncmp(ids[i], "sha256:", 7) ? 0 : 7), hex))
            return true;
    return false;
}

int image_gc(struct cas *cas, const char *images_dir, char *const *live_ids, size_t n,
             struct image_gc_result *out, struct gerr *err)
{
    memset(out, 0, sizeof *out);
    struct cas_digest *roots = xcalloc(n, sizeof *roots);
    for (size_t i = 0; i < n; i++) {
        if (cas_digest_parse(live_ids[i], &roots[i]) < 0) {
            free(roots);
            return gerr_set(err, EINVAL, "bad image id \"%s\"", live_ids[i]);
        }
    }
    int r = cas_gc(cas, roots, n, &out->objects, &out->bytes, err);
    free(roots);
    if (r < 0)
        return r;
    char by_id[PATH_MAX];
    snprintf(by_id, sizeof by_id, "%s/by-id", images_dir);
    DIR *d = opendir(by_id);
    if (!d)
        return 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        struct cas_digest dg;
        if (cas_digest_parse(de->d_name, &dg) < 0 || listed(live_ids, n, de->d_name))
            continue;
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", by_id, de->d_name) < (int)sizeof path && rm_rf(path) == 0)
            out->images++;
    }
    closedir(d);
    return 0;
}
