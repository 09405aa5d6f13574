/* Image builds: jobs, the step cache, events to the loop (see build/build.h). The
 * steps themselves are in steps.c. */
#include "build/build.h"

#include <assert.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/list.h"
#include "base/log.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "build/internal.h"

/* ---- the cache ---------------------------------------------------------------- */

static bool cache_eq(const struct hmap_node *n, const void *key)
{
    return !strcmp(((const struct build_cache_entry *)n)->step_id, key);
}

/* Under b->mu. */
static struct build_cache_entry *cache_find(struct builder *b, const char *step_id)
{
    struct hmap_node *n = hmap_find(&b->cache, hmap_hash_str(step_id), cache_eq, step_id);
    return (struct build_cache_entry *)n;
}

/* Under b->mu: adds or replaces. */
static void cache_set(struct builder *b, const char *step_id, const char *parent_id, const char *image_id)
{
    struct build_cache_entry *e = cache_find(b, step_id);
    if (!e) {
        e = xcalloc(1, sizeof *e);
        snprintf(e->step_id, sizeof e->step_id, "%s", step_id);
        hmap_insert(&b->cache, &e->node, hmap_hash_str(step_id));
    }
    snprintf(e->parent_id, sizeof e->parent_id, "%s", parent_id ? parent_id : "");
    snprintf(e->image_id, sizeof e->image_id, "%s", image_id);
}

void build_cache_put(struct builder *b, const char *step_id, const char *parent_id, const char *image_id)
{
    pthread_mutex_lock(&b->mu);
    cache_set(b, step_id, parent_id, image_id);
    pthread_mutex_unlock(&b->mu);
}

void build_cache_each(struct builder *b, void (*cb)(void *ud, const char *step_id, const char *parent_id,
                                                    const char *image_id),
                      void *ud)
{
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->cache.nbuckets; i++)
        for (struct hmap_node *n = b->cache.buckets[i]; n; n = n->next) {
            struct build_cache_entry *e = (struct build_cache_entry *)n;
            cb(ud, e->step_id, e->parent_id, e->image_id);
        }
    pthread_mutex_unlock(&b->mu);
}

void build_cache_retain(struct builder *b, char *const *live, size_t n)
{
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->cache.nbuckets; i++) {
        struct hmap_node *node = b->cache.buckets[i];
        while (node) {
            struct hmap_node *next = node->next;
            struct build_cache_entry *e = (struct build_cache_entry *)node;
            bool keep = false;
            for (size_t k = 0; k < n && !keep; k++)
                keep = !strcmp(live[k], e->image_id);
            if (!keep) {
                hmap_remove(&b->cache, node);
                free(e);
            }
            node = next;
        }
    }
    pthread_mutex_unlock(&b->mu);
}

size_t build_running(const struct builder *b)
{
    return b->njobs;
}

int build_cache_lookup(struct builder *b, const char *step_id, char image_id[IMAGE_ID_MAX])
{
    pthread_mutex_lock(&b->mu);
    struct build_cache_entry *e = cache_find(b, step_id);
    if (e)
        snprintf(image_id, IMAGE_ID_MAX, "%s", e->image_id);
    pthread_mutex_unlock(&b->mu);
    return e ? 0 : -ENOENT;
}

/* ---- events to the loop --------------------------------------------------------- */

static void wake_loop(struct builder *b)
{
    uint64_t one = 1;
    ssize_t w = write(b->efd, &one, sizeof one);
    (void)w;
}

void build_emit(struct build_job *j, json_t *ev)
{
    if (!ev)
        return;
    pthread_mutex_lock(&j->b->mu);
    int r = json_array_append_new(j->events, ev);
    pthread_mutex_unlock(&j->b->mu);
    if (r == 0)
        wake_loop(j->b);
}

static void on_events(struct ev_loop *loop, int fd, uint32_t events, void *data)
{
    struct builder *b = data;
    uint64_t n;
    ssize_t got = read(b->efd, &n, sizeof n);
    (void)got;
    pthread_mutex_lock(&b->mu);
    json_t *cached = b->cached_pending;
    b->cached_pending = json_array();
    pthread_mutex_unlock(&b->mu);
    size_t i;
    json_t *c;
    json_array_foreach(cached, i, c) {
        if (b->cfg.on_cached)
            b->cfg.on_cached(b->cfg.ud, json_string_value(json_array_get(c, 0)),
                             json_string_value(json_array_get(c, 1)), json_string_value(json_array_get(c, 2)));
    }
    json_decref(cached);
    list_for_each_safe(j, &b->jobs, struct build_job, link) {
        pthread_mutex_lock(&b->mu);
        json_t *evs = j->events;
        j->events = json_array();
        bool finished = j->finished;
        pthread_mutex_unlock(&b->mu);
        json_array_foreach(evs, i, c) j->sink.event(j->sink.ud, c);
        json_decref(evs);
        if (!finished)
            continue;
        pthread_join(j->thread, NULL);
        list_remove(&j->link);
        b->njobs--;
        j->sink.done(j->sink.ud, j->ok ? j->image_id : NULL, j->ok ? j->rootfs : NULL, j->final);
        build_job_free(j);
        /* A build parses and frees large manifests, much of it in its thread's arena.
         * Give those pages back: every sandbox is cloned fork-style from this
         * process, and the clone's cost grows with its resident memory. */
        malloc_trim(0);
    }
}

void build_note_cached(struct builder *b, const char *step_id, const char *parent_id, const char *image_id)
{
    json_t *rec = json_pack("[s,s,s]", step_id, parent_id ? parent_id : "", image_id);
    pthread_mutex_lock(&b->mu);
    if (rec)
        json_array_append_new(b->cached_pending, rec);
    pthread_mutex_unlock(&b->mu);
    wake_loop(b);
}

/* ---- in-flight steps and lanes ------------------------------------------------------ */

int build_step_claim(struct build_job *j, const char *step_id, char image_id[IMAGE_ID_MAX], bool *waited)
{
    struct builder *b = j->b;
    *waited = false;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        struct build_cache_entry *e = j->force ? NULL : cache_find(b, step_id);
        if (e) {
            snprintf(image_id, IMAGE_ID_MAX, "%s", e->image_id);
            pthread_mutex_unlock(&b->mu);
            return 1;
        }
        bool busy = false;
        for (size_t i = 0; i < b->ninflight; i++)
            busy = busy || !strcmp(b->inflight[i], step_id);
        if (!busy || j->force || b->stopping)
            break;
        if (!*waited) {
            json_t *ev = json_pack("{s:s,s:i,s:s}", "event", "step_wait", "index", j->step_index, "id", step_id);
            if (ev && json_array_append_new(j->events, ev) == 0)
                wake_loop(b);
        }
        *waited = true;
        pthread_cond_wait(&b->cond, &b->mu);
    }
    int r = 0;
    if (b->stopping) {
        r = -ECANCELED;
    } else if (b->ninflight < BUILD_MAX_INFLIGHT) {
        snprintf(b->inflight[b->ninflight++], sizeof b->inflight[0], "%s", step_id);
    }
    pthread_mutex_unlock(&b->mu);
    return r;
}

void build_step_release(struct build_job *j, const char *step_id, const char *parent_id, const char *image_id)
{
    struct builder *b = j->b;
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->ninflight; i++) {
        if (!strcmp(b->inflight[i], step_id)) {
            memmove(b->inflight[i], b->inflight[b->ninflight - 1], sizeof b->inflight[0]);
            b->ninflight--;
            break;
        }
    }
    bool fresh = image_id != NULL;
    if (fresh)
        cache_set(b, step_id, parent_id, image_id);
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->mu);
    if (fresh)
        build_note_cached(b, step_id, parent_id, image_id);
}

int build_lane_take(struct build_job *j, struct worker_build_lane **out)
{
    struct builder *b = j->b;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        if (b->stopping) {
            pthread_mutex_unlock(&b->mu);
            return -ECANCELED;
        }
        for (size_t i = 0; i < b->cfg.nlanes; i++) {
            if (!b->lane_busy[i]) {
                b->lane_busy[i] = true;
                *out = &b->cfg.lanes[i];
                pthread_mutex_unlock(&b->mu);
                return (int)i;
            }
        }
        pthread_cond_wait(&b->cond, &b->mu);
    }
}

void build_lane_give(struct build_job *j, int lane)
{
    pthread_mutex_lock(&j->b->mu);
    /* Only a lane this job took (build_lane_take) is given back. */
    assert(lane >= 0 && (size_t)lane < j->b->cfg.nlanes && j->b->lane_busy[lane]);
    j->b->lane_busy[lane] = false;
    pthread_cond_broadcast(&j->b->cond);
    pthread_mutex_unlock(&j->b->mu);
}

/* ---- jobs ------------------------------------------------------------------------ */

void build_job_free(struct build_job *j)
{
    json_decref(j->def);
    json_decref(j->events);
    json_decref(j->final);
    free(j);
}

static void *job_main(void *arg)
{
    struct build_job *j = arg;
    /* Mounts this build makes (the merged view of a step's result, debootstrap's
     * /proc) stay in a mount namespace of this thread, gone when it ends. */
    if (unshare(CLONE_FS | CLONE_NEWNS) == 0)
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
    else
        log_warn("build", "unshare of the mount namespace failed: %s", strerror(errno));
    build_run(j);
    pthread_mutex_lock(&j->b->mu);
    j->finished = true;
    pthread_mutex_unlock(&j->b->mu);
    wake_loop(j->b);
    return NULL;
}

int build_submit(struct builder *b, json_t *def, const char *base_id, const char *scope, bool force,
                 const struct build_sink *sink, struct gerr *err)
{
    if (b->njobs >= BUILD_MAX_JOBS)
        return gerr_set(err, EBUSY, "%d image builds are running; wait for one to finish", BUILD_MAX_JOBS);
    /* Only jobs send events, so the loop watches for them from the first job on: a
     * daemon that never builds (and gust-sim's virtual loop, which polls every watched
     * descriptor on each of its iterations) has nothing to poll. */
    if (!b->watching) {
        int wr = ev_io_add(b->cfg.loop, b->efd, EV_READ, on_events, b);
        if (wr < 0)
            return gerr_sys(err, -wr, "watch the build events");
        b->watching = true;
    }
    struct build_job *j = xcalloc(1, sizeof *j);
    list_init(&j->link);
    j->b = b;
    j->def = json_deep_copy(def);
    j->events = json_array();
    j->force = force;
    j->sink = *sink;
    j->seq = ++b->seq;
    j->start_ns = mono_ns();
    snprintf(j->base_id, sizeof j->base_id, "%s", base_id ? base_id : "");
    snprintf(j->scope, sizeof j->scope, "%s", scope ? scope : "");
    int r = pthread_create(&j->thread, NULL, job_main, j);
    if (r != 0) {
        build_job_free(j);
        return gerr_sys(err, r, "start the build thread");
    }
    list_push_front(&b->jobs, &j->link);
    b->njobs++;
    return 0;
}

int build_new(const struct build_config *cfg, struct builder **out, struct gerr *err)
{
    struct builder *b = xcalloc(1, sizeof *b);
    list_init(&b->jobs);
    b->cfg = *cfg;
    b->efd = -1;
    snprintf(b->work_dir, sizeof b->work_dir, "%s", cfg->work_dir);
    snprintf(b->images_dir, sizeof b->images_dir, "%s", cfg->images_dir);
    snprintf(b->suite, sizeof b->suite, "%s", cfg->debian_suite ? cfg->debian_suite : "bookworm");
    b->cfg.work_dir = b->work_dir;
    b->cfg.images_dir = b->images_dir;
    if (!b->cfg.step_memory_mib)
        b->cfg.step_memory_mib = 4096;
    if (!b->cfg.step_timeout_s)
        b->cfg.step_timeout_s = 3600;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cond, NULL);
    b->lane_busy = xcalloc(cfg->nlanes, sizeof *b->lane_busy);
    b->cached_pending = json_array();
    hmap_init(&b->cache, 64);
    /* Scratch of a previous daemon: nothing in it is referenced. */
    rm_rf(b->work_dir);
    int r = mkdir_p(b->work_dir, 0700);
    if (r < 0) {
        build_free(b);
        return gerr_sys(err, -r, "create %s", cfg->work_dir);
    }
    r = build_host_mirror(cfg->debian_mirror, b->mirror, sizeof b->mirror, &b->apt_sources, err);
    if (r < 0) {
        build_free(b);
        return r;
    }
    b->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (b->efd < 0) {
        r = gerr_sys(err, errno, "eventfd");
        build_free(b);
        return r;
    }
    *out = b;
    return 0;
}

void build_free(struct builder *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->mu);
    __atomic_store_n(&b->stopping, true, __ATOMIC_RELAXED);
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->mu);
    /* A running step sees b->stopping within BUILD_POLL_MS and kills its sandbox or
     * debootstrap (steps.c). */
    list_for_each_safe(j, &b->jobs, struct build_job, link) {
        list_remove(&j->link);
        pthread_join(j->thread, NULL);
        build_job_free(j);
    }
    if (b->watching)
        ev_io_del(b->cfg.loop, b->efd);
    if (b->efd >= 0)
        close(b->efd);
    for (size_t i = 0; i < b->cache.nbuckets; i++) {
        struct hmap_node *n = b->cache.buckets[i];
        while (n) {
            struct hmap_node *next = n->next;
            free(n);
            n = next;
        }
    }
    hmap_free(&b->cache);
    json_decref(b->cached_pending);
    json_decref(b->apt_sources);
    free(b->lane_busy);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cond);
    if (b->work_dir[0])
        rm_rf(b->work_dir);
    free(b);
}
