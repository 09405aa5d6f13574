/* Image builds: an image definition (spec/spec.h "image definitions") run step by
 * step into the content-addressed store, every step cached by its id.
 *
 * Step ids. The base is an image id: a registered image's (resolved by the caller),
 * the empty tree (scratch), a debootstrap result (debian_slim, cached under the id
 * of "suite + mirror") or an OCI import (cached under the id of the archive's
 * content). Each later step's id is SHA-256 over the parent image id and the
 * step's normalised definition, where copy and find_links directories count by the
 * digest of their content. The cache maps step id -> image id; a rebuild reuses
 * every step whose id is cached and runs from the first that is not.
 *
 * How steps run. run, apt_install and pip_install run in a sandbox of the worker
 * (own user namespace, seccomp, egress network with the host's resolvers) whose
 * writable layer is a directory on disk over the parent image; the parent with that
 * layer on top is then ingested (owners shifted back from the namespace's ids), so
 * the step's result is a new image. copy, env and workdir edit the parent's
 * manifest directly. debian_slim runs debootstrap from the host's apt mirror.
 *
 * Threads. Every build runs on a thread of its own; steps needing a sandbox share
 * the lanes the caller reserved (worker_build_lane_reserve). Two builds reaching
 * the same uncached step id run it once: the second waits for the first's result.
 * Events (progress, log lines, the result) reach the caller on the event loop's
 * thread, in order. All functions here are called on the loop's thread.
 */
#ifndef GUST_BUILD_BUILD_H
#define GUST_BUILD_BUILD_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"
#include "evloop/evloop.h"
#include "image/image.h"
#include "worker/worker.h"

struct builder;
struct cas;

#define BUILD_MAX_JOBS 16           /* builds running at once; more are refused (-EBUSY) */
#define BUILD_LOG_LINE_MAX 4096     /* longer output lines are split */
#define BUILD_TAIL_BYTES 4096       /* output kept for a failing step's report */

struct build_config {
    struct ev_loop *loop;
    struct cas *cas;
    const char *images_dir;         /* materialised images (image/image.h) */
    const char *work_dir;           /* scratch: writable layers, debootstrap trees; wiped at start */
    struct worker_build_lane *lanes;
    size_t nlanes;
    const char *debian_suite;       /* NULL: "bookworm" */
    const char *debian_mirror;      /* NULL: the first Debian mirror of the host's apt sources */
    uint32_t step_memory_mib;       /* memory limit of a step's sandbox; 0: 4096 */
    uint32_t step_timeout_s;        /* a step running longer is killed; 0: 3600 */
    /* A step's result is new (not from the cache): the caller persists it. */
    void (*on_cached)(void *ud, const char *step_id, const char *parent_id, const char *image_id);
    void *ud;
};

int build_new(const struct build_config *cfg, struct builder **out, struct gerr *err);
/* Kills running steps, waits for the build threads; pending events are dropped. */
void build_free(struct builder *b);

/* Adds a persisted cache entry (at start-up). Returns 0 (allocation failure aborts;
 * the int is kept for callers that still test it). */
void build_cache_put(struct builder *b, const char *step_id, const char *parent_id, const char *image_id);
/* Calls cb for every cache entry. */
void build_cache_each(struct builder *b, void (*cb)(void *ud, const char *step_id, const char *parent_id,
                                                    const char *image_id),
                      void *ud);
/* Forgets every cache entry whose image is not in live[0..n). */
void build_cache_retain(struct builder *b, char *const *live, size_t n);
/* Builds in progress. */
size_t build_running(const struct builder *b);

/* What a build reports, on the loop's thread. event(ud, ev) for every progress
 * event (ev borrowed; NDJSON objects with "event": "step", "log", "step_done"),
 * then done(ud, image_id or NULL, rootfs, final) once: final is the "done" or
 * "error" event. */
struct build_sink {
    void (*event)(void *ud, json_t *ev);
    void (*done)(void *ud, const char *image_id, const char *rootfs, json_t *final);
    void *ud;
};

/* Starts building def (normalised). base_id: the image id of a registered-image base
 * (NULL for scratch, debian_slim and from_oci). scope: whose step cache the build
 * uses (gustd: the workspace; "" or NULL: one shared cache); the base images
 * (debian_slim, from_oci) are shared by all, they hold nothing of a client's. force:
 * run every step even when cached. */
int build_submit(struct builder *b, json_t *def, const char *base_id, const char *scope, bool force,
                 const struct build_sink *sink, struct gerr *err);

/* The image id a build of def would produce if every step is cached: 0, or -ENOENT
 * (naming the first uncached step in err). Hashes copy sources on this thread. */
int build_lookup(struct builder *b, json_t *def, const char *base_id, const char *scope, char id_out[IMAGE_ID_MAX],
                 struct gerr *err);

#endif
