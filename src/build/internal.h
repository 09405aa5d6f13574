/* State shared by the files of src/build (not for other components). */
#ifndef GUST_BUILD_INTERNAL_H
#define GUST_BUILD_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "base/hmap.h"
#include "base/list.h"
#include "build/build.h"

#define BUILD_MAX_INFLIGHT 64
#define BUILD_POLL_MS 200          /* how often a running step checks for shutdown */

struct build_cache_entry {
    struct hmap_node node;
    char step_id[IMAGE_ID_MAX];
    char parent_id[IMAGE_ID_MAX];
    char image_id[IMAGE_ID_MAX];
};

struct build_job {
    struct list_node link;        /* in builder->jobs */
    struct builder *b;
    pthread_t thread;
    json_t *def;
    char base_id[IMAGE_ID_MAX];
    char scope[64];               /* whose cache the steps share (build_submit) */
    bool force;
    struct build_sink sink;
    uint64_t seq, start_ns;
    int step_index;               /* the step running now (0 = the base) */
    unsigned steps_run, steps_cached;
    /* Under b->mu: */
    json_t *events;               /* not yet delivered */
    bool finished;
    /* Written by the job's thread before finished: */
    bool ok;
    char image_id[IMAGE_ID_MAX];
    char rootfs[4096];
    json_t *final;
};

struct builder {
    struct build_config cfg;
    char work_dir[1024], images_dir[1024], suite[64], mirror[512];
    json_t *apt_sources;          /* [[name, text]...]: the host's apt sources for debian_slim */
    int efd;                      /* job threads' wake-ups to the loop */
    bool watching;                /* the loop watches efd (from the first build_submit) */
    uint64_t seq;
    struct list_node jobs;        /* struct build_job; loop thread only */
    size_t njobs;
    pthread_mutex_t mu;
    pthread_cond_t cond;          /* a step or lane became free, or stopping */
    bool stopping;
    struct hmap cache;
    char inflight[BUILD_MAX_INFLIGHT][IMAGE_ID_MAX];
    size_t ninflight;
    bool *lane_busy;
    json_t *cached_pending;       /* [[step, parent, image]...] for cfg.on_cached */
};

/* Queues an event of job j for the loop (reference stolen; NULL is ignored). */
void build_emit(struct build_job *j, json_t *ev);
/* Before running step_id: 1 with image_id when it is cached (after waiting for
 * another build running it, *waited then set), 0 when this job must run it (it is
 * then in flight until build_step_release), -ECANCELED when stopping. */
int build_step_claim(struct build_job *j, const char *step_id, char image_id[IMAGE_ID_MAX], bool *waited);
/* Ends a claim: image_id (NULL on failure) is cached and waiters wake up. */
void build_step_release(struct build_job *j, const char *step_id, const char *parent_id, const char *image_id);
/* Cache lookup without claiming (build_lookup). */
int build_cache_lookup(struct builder *b, const char *step_id, char image_id[IMAGE_ID_MAX]);
/* A free lane (its index, waiting for one), or -ECANCELED when stopping. */
int build_lane_take(struct build_job *j, struct worker_build_lane **out);
void build_lane_give(struct build_job *j, int lane);
void build_note_cached(struct builder *b, const char *step_id, const char *parent_id, const char *image_id);
void build_job_free(struct build_job *j);

/* steps.c */
/* Runs job j to the end: fills j->ok, image_id, rootfs and j->final. */
void build_run(struct build_job *j);
/* The Debian mirror (given, or the host's first) and the host's apt source files. */
int build_host_mirror(const char *given, char *mirror, size_t cap, json_t **sources, struct gerr *err);

#endif
