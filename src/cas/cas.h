/* The content-addressed store: objects named by the SHA-256 of their content, kept
 * under <root>/objects/<2 hex>/<62 hex>, deduplicated, compressed with zstd where it
 * pays, verified against their name on every read (a corrupt object is an error,
 * never served). Files are split into fixed CAS_CHUNK_SIZE chunks, each an object,
 * so a lazy image filesystem can fetch part of a file.
 *
 * A directory tree is stored as a manifest (JSON, itself an object): every entry's
 * path, type, mode, owner and, for files, size and chunk digests. The manifest's
 * digest is the image id. cas_materialize() recreates the tree from it.
 *
 * On-disk object: "GCAS" magic, 1 byte format (0 raw, 1 zstd), 8 bytes little-endian
 * content length, then the payload. Writes go to <root>/tmp and are renamed into
 * place, so a crash never leaves a half-written object under its name.
 */
#ifndef GUST_CAS_CAS_H
#define GUST_CAS_CAS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#define CAS_CHUNK_SIZE (4u << 20)
#define CAS_HEX_LEN 64
/* Bounds on what a manifest may make us do or allocate. */
#define CAS_MANIFEST_MAX (64u << 20)       /* bytes of manifest JSON */
#define CAS_MAX_ENTRIES 2000000
#define CAS_MAX_FILE_SIZE (1ull << 40)

struct cas;

struct cas_digest {
    uint8_t b[32];
};

/* Counters of one ingest (or of a store's lifetime, with cas_stats). */
struct cas_stats {
    uint64_t objects_written, objects_reused;
    uint64_t bytes_in, bytes_stored;
    uint64_t files, dirs, symlinks, hardlinks, skipped;
};

void cas_digest_hex(const struct cas_digest *d, char out[CAS_HEX_LEN + 1]);
/* 64 lowercase hex digits, optionally prefixed "sha256:". -EINVAL otherwise. */
int cas_digest_parse(const char *s, struct cas_digest *d);
void cas_digest_of(const void *data, size_t len, struct cas_digest *out);

/* Opens (creating if needed) the store rooted at root (absolute). */
int cas_open(const char *root, struct cas **out, struct gerr *err);
void cas_close(struct cas *c);
const struct cas_stats *cas_stats(const struct cas *c);

/* Stores data; *out gets its digest. Existing objects are not rewritten. */
int cas_put(struct cas *c, const void *data, size_t len, struct cas_digest *out, struct gerr *err);
bool cas_has(struct cas *c, const struct cas_digest *d);
/* Reads and verifies an object: *data (malloc'd, NUL-terminated for convenience)
 * and *len. -ENOENT if missing, -EBADMSG if its content does not match its name. */
int cas_get(struct cas *c, const struct cas_digest *d, uint8_t **data, size_t *len, struct gerr *err);

/* Stores the tree under dir (absolute; symlinks are stored, not followed; device
 * nodes, sockets and fifos are skipped and counted) with config (a JSON object or
 * NULL, kept in the manifest as is) and returns the manifest's digest. st, if
 * non-NULL, receives the counts of this ingest. */
int cas_ingest_tree(struct cas *c, const char *dir, json_t *config, struct cas_digest *manifest,
                    struct cas_stats *st, struct gerr *err);

/* As cas_ingest_tree, storing owners (uid and gid separately) that fall in
 * [id_base, id_base + id_count) as owner - id_base: a tree written by a user
 * namespace's root (host id id_base) is stored as its root wrote it. */
int cas_ingest_tree_shifted(struct cas *c, const char *dir, json_t *config, uint32_t id_base, uint32_t id_count,
                            struct cas_digest *manifest, struct cas_stats *st, struct gerr *err);

/* Stores manifest m (a tree of the form cas_manifest_parse accepts: validated before
 * it is written; every chunk it names must already be stored) and returns its digest. */
int cas_manifest_store(struct cas *c, json_t *m, struct cas_digest *out, struct gerr *err);

/* Parses and validates manifest JSON: "gust_manifest": 1, "config" object,
 * "entries" sorted by path, each path relative without "." / ".." / empty
 * components, whose parent appears before it as a directory, types "dir", "file",
 * "symlink", "hardlink" with their fields, within the CAS_MAX_* bounds. */
int cas_manifest_parse(const char *text, size_t len, json_t **out, struct gerr *err);
/* Loads and validates the manifest object d. */
int cas_manifest_load(struct cas *c, const struct cas_digest *d, json_t **out, struct gerr *err);

/* Recreates the tree of manifest d at dest (absolute, must not exist), verifying
 * every chunk. Parent directories are resolved without following symlinks, so an
 * entry can never write outside dest. Atomic: built in dest.tmp-XXXXXX, renamed. */
int cas_materialize(struct cas *c, const struct cas_digest *d, const char *dest, struct gerr *err);

/* As cas_materialize, hard-linking each file whose content, mode and owner the tree
 * of manifest prev (materialised at prev_dir, never changed since) already holds
 * instead of writing it again: a new version of a large tree costs only its changed
 * files. prev_dir / prev NULL: none. The earlier tree's files must stay read-only
 * (they are shared). */
int cas_materialize_reuse(struct cas *c, const struct cas_digest *d, const char *dest, const char *prev_dir,
                          const struct cas_digest *prev, struct gerr *err);

/* ---- changes to a tree (volumes: src/cas/volume.c) ----
 *
 * A change list is a JSON array applied in order, each element one of
 *   {"path", "type": "file", "mode", "size", "chunks": [hex...]}
 *   {"path", "type": "dir", "mode", "opaque"?: true}   (opaque: its old contents go)
 *   {"path", "type": "symlink", "mode", "target"}
 *   {"path", "type": "delete"}                          (with everything below it)
 * with paths as in manifests (relative, no ".", ".." or empty parts, not "."). */

/* Bounds of one change list: as many changes as a manifest has entries. */
#define CAS_MAX_CHANGES CAS_MAX_ENTRIES

/* Validates a change list (shape, paths, modes, chunk digests, bounds). On error,
 * err names the element ("changes[3].path: ..."). */
int cas_changes_check(json_t *changes, struct gerr *err);

/* The manifest that results from applying changes (checked) to manifest base:
 * last writer wins per path; a file or symlink replaces whatever was at its path
 * (a directory with its contents); missing parent directories are made (0755);
 * hard links of base become files of their own. Owners are 0. *out is a new
 * manifest (not stored) of at most max_entries entries (-E2BIG otherwise). */
int cas_manifest_apply(json_t *base, json_t *changes, size_t max_entries, json_t **out, struct gerr *err);

/* Scans dir, an overlayfs upper directory (the changes a container made over a
 * lower tree), and stores its files' chunks: *changes gets the change list (files,
 * directories (opaque ones marked), symlinks, whiteouts as deletions), in path
 * order, parents first. Nothing is followed: every step is an openat with
 * O_NOFOLLOW below dir, so a symlink the container made never leads outside it.
 * Device nodes other than whiteouts, sockets and fifos are skipped. Owners are not
 * kept; modes keep the permission bits. At most max_entries changes (-E2BIG). */
int cas_upper_scan(struct cas *c, const char *dir, size_t max_entries, json_t **changes, struct gerr *err);

/* Removes every object not reachable from the manifests roots[0..n) (the manifests
 * themselves and their chunks). *removed / *bytes: what went. */
int cas_gc(struct cas *c, const struct cas_digest *roots, size_t n, uint64_t *removed, uint64_t *bytes,
           struct gerr *err);

#endif
