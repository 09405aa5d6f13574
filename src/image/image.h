/* Built-in rootfs images. An image is a plain directory used as the read-only lower
 * layer of a container's overlay (see runtime/sandbox.h).
 *
 * Builders are idempotent and atomic: a finished image holds the marker file
 * IMAGE_OK_MARKER; a build goes into "<dest>.tmp-XXXXXX" and is renamed into place
 * only when complete, so a crash never leaves a half-built image at dest.
 */
#ifndef GUST_IMAGE_IMAGE_H
#define GUST_IMAGE_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#define IMAGE_OK_MARKER ".gust-image-ok"
#define IMAGE_BUSYBOX_SRC "/bin/busybox"

/* Builds a busybox rootfs at dest (absolute): the host's static /bin/busybox (error
 * if it is dynamically linked, since the image has no libc), a /bin symlink for
 * every applet it lists, the usual empty dirs (/tmp and /var/tmp 1777) and minimal
 * /etc (passwd, group, hostname, hosts). Returns 0 at once if dest is already built. */
int image_build_busybox(const char *dest, struct gerr *err);

/* Builds a skeleton rootfs at dest (absolute) meant to run with the host's /usr
 * bind-mounted read-only at /usr: an empty /usr, the merged-usr symlinks bin, sbin,
 * lib, lib64 (each only where the host has it as a symlink into usr/), minimal /etc
 * (passwd, group, hosts, hostname, nsswitch.conf, and the host's ld.so.cache if it
 * has one) and empty /proc /dev /sys /tmp /root /var/tmp. */
int image_build_host_python(const char *dest, struct gerr *err);

/* True if rootfs is an absolute path naming an existing directory; otherwise false
 * with err (if non-NULL) saying why. */
bool image_rootfs_valid(const char *rootfs, struct gerr *err);

/* ---- images in the content-addressed store (src/cas) ----
 * An image id is "sha256:<hex>" of its manifest. Each image is materialised once per
 * worker at <images_dir>/by-id/<hex>/rootfs (with IMAGE_OK_MARKER beside it), the
 * read-only lower layer shared by all of that image's containers. */

struct cas;
struct cas_stats;
typedef struct json_t json_t;

#define IMAGE_ID_MAX 72

/* Ingests src_dir into the store and materialises it (unless already there).
 * id_out gets "sha256:<hex>", rootfs_out the materialised directory. */
int image_import(struct cas *cas, const char *images_dir, const char *src_dir, char id_out[IMAGE_ID_MAX],
                 char *rootfs_out, size_t rootfs_cap, struct cas_stats *st, struct gerr *err);

/* As image_import, with config (a JSON object or NULL) kept in the manifest. */
int image_import_config(struct cas *cas, const char *images_dir, const char *src_dir, json_t *config,
                        char id_out[IMAGE_ID_MAX], char *rootfs_out, size_t rootfs_cap, struct cas_stats *st,
                        struct gerr *err);

/* Imports an OCI image: an OCI image layout directory, or a tarball holding one or a
 * docker-archive ("docker save"). Layers (tar, gzip or zstd; OCI layout blobs checked
 * against their digests) are applied in order with whiteouts (".wh.NAME") and opaque
 * directories (".wh..wh..opq"); members with ".." or device nodes are refused or
 * skipped. The result is stored like image_import, with the image's Env, WorkingDir,
 * Cmd, Entrypoint and User kept as config. */
int image_import_oci(struct cas *cas, const char *images_dir, const char *path, char id_out[IMAGE_ID_MAX],
                     char *rootfs_out, size_t rootfs_cap, struct cas_stats *st, struct gerr *err);

/* image_import_oci of an uploaded tree (a client's files, never a host path it
 * names): tree ("sha256:…", stored) is an OCI image layout, or holds one regular file,
 * an image tarball. It is materialised in a scratch directory under images_dir for
 * the import and removed after. -ENOENT when the tree is not stored. */
int image_import_oci_tree(struct cas *cas, const char *images_dir, const char *tree, char id_out[IMAGE_ID_MAX],
                          char *rootfs_out, size_t rootfs_cap, struct cas_stats *st, struct gerr *err);

/* Materialises the stored image id ("sha256:<hex>") at <images_dir>/by-id/<hex>/rootfs
 * unless it is there already (rootfs_out gets that path). Thread-safe. */
int image_materialize(struct cas *cas, const char *images_dir, const char *id, char *rootfs_out, size_t rootfs_cap,
                      struct gerr *err);
/* The config object of stored image id (new reference): "env" ["K=V"...], "workdir",
 * and what else the image's maker kept. */
int image_config(struct cas *cas, const char *id, json_t **config, struct gerr *err);

/* Normalises a path in an image ("./a/b/", "/a//b", "a/./b") into "a/b"; "" is the
 * root. -EINVAL for ".." components, -ENAMETOOLONG past cap. */
int image_path_clean(const char *in, char *out, size_t cap);

/* The image id of a materialised rootfs path (as image_import returns it), or -EINVAL
 * for a rootfs that is not one (a plain registered directory). */
int image_id_of_rootfs(const char *images_dir, const char *rootfs, char id_out[IMAGE_ID_MAX]);

/* Removes store objects and materialised directories of every image not in
 * live_ids[0..n). */
struct image_gc_result {
    uint64_t objects, bytes, images;
};
int image_gc(struct cas *cas, const char *images_dir, char *const *live_ids, size_t n,
             struct image_gc_result *out, struct gerr *err);

#endif
