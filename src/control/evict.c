/* The eviction ranking: which idle container to stop when queued work needs room
 * (sched.c, make_room), without a walk of every container.
 *
 * The victim is the evictable container least likely to be used soon (internal.h,
 * "evict.c"). Every evictable container of a version shares one prediction, that of
 * its function's level just above the version's work and idle containers
 * (ka_next_use_ms), so the choice is in two steps: within a version, its longest-idle
 * container, the head of the version's idle list (kept in that order as containers
 * go idle, in time order); across versions, the version whose head ranks first.
 *
 * A prediction moves as time passes, but as a line (ka_next_use_line) of slope -1, 0
 * or +1 that holds until a known time. Versions whose lines share a slope keep their
 * order as time passes, so each slope has a heap ordered by the line's base; the
 * victim is the best of the three heaps' tops at the time of the pick. A line that
 * ends is recomputed at the first pick after its end (a heap of end times). A version
 * whose counts, queue, idle containers or function's keep-alive state changed leaves
 * the heaps at once (an O(log n) removal) and is placed again, from its new state, at
 * the next pick: a busy function's many changes between two picks cost one placement.
 * A pick costs O(log n) for each version placed since the last one. */
#include <assert.h>
#include <string.h>

#include "control/internal.h"

/* The ranking's three heaps are indexed by a line's slope + 1. */
#define EVICT_SLOPES 3

/* ---------- idle lists ---------- */

/* Whether a idle since the same time as b ranks before it: fv->ctrs holds the newest
 * container first, and the walk that the ranking stands for took the first of equals. */
static bool idle_before(const struct ctl_ctr *a, const struct ctl_ctr *b)
{
    return a->idle_since_ms < b->idle_since_ms || (a->idle_since_ms == b->idle_since_ms && a->seq > b->seq);
}

void evict_idle_add(struct ctl_ctr *k)
{
    struct ctl_fver *fv = k->fv;
    assert(list_unlinked(&k->idle_link));
    /* Containers go idle in time order, so a new one's place is at the end or among
     * the few that went idle in the same millisecond; one put back after make_room
     * chose it (evict_victim's callers) goes back near the front. */
    struct list_node *at = &fv->idle;
    if (!list_empty(&fv->idle) && idle_before(k, list_entry(fv->idle.prev, struct ctl_ctr, idle_link))) {
        at = fv->idle.next;
        while (at != &fv->idle && !idle_before(k, list_entry(at, struct ctl_ctr, idle_link)))
            at = at->next;
    }
    list_insert_between(&k->idle_link, at->prev, at);
    fv->nidle++;
}

void evict_idle_del(struct ctl_ctr *k)
{
    assert(!list_unlinked(&k->idle_link) && k->fv->nidle > 0);
    list_remove(&k->idle_link);
    k->fv->nidle--;
}

struct ctl_ctr *evict_longest_idle(const struct ctl_fver *fv)
{
    return list_first_entry(&fv->idle, struct ctl_ctr, idle_link);
}

/* ---------- versions in the ranking ---------- */

/* How many of fv's idle containers make_room may take, one after another: none while
 * it has queued calls (they are about to use them); all of an old version's or a
 * stopped app's; of the current version's, those above min_containers (of its live
 * containers) and buffer_containers (of its idle ones), each taken one lowering both. */
static uint32_t evictable_count(const struct ctl_fver *fv)
{
    if (!fv->nidle || fv->queued)
        return 0;
    if (!ctl_fver_is_current(fv))
        return fv->nidle;
    uint32_t live = fv->nstarting + fv->nready, min = fv->spec.min_containers, buffer = fv->spec.buffer_containers;
    if (live <= min || fv->nidle <= buffer)
        return 0;
    return fv->nidle - buffer < live - min ? fv->nidle - buffer : live - min;
}

static void unplace(struct ctl *c, struct ctl_fver *fv)
{
    if (fv->ev_rank_pos)
        ctl_vheap_remove(&c->ev_rank[fv->ev_line.slope + 1], fv);
    ctl_vheap_remove(&c->ev_ends, fv);
}

void evict_update(struct ctl_fver *fv)
{
    struct ctl *c = fv->ctl;
    uint32_t n = evictable_count(fv), was = fv->ev_count;
    c->ev_cpu = c->ev_cpu - (uint64_t)was * fv->spec.cpu_millicores + (uint64_t)n * fv->spec.cpu_millicores;
    c->ev_mem = c->ev_mem - (uint64_t)was * fv->spec.memory_mib + (uint64_t)n * fv->spec.memory_mib;
    fv->ev_count = n;
    if (n > was)
        ctl_sched_evictable_grew(c);
    unplace(c, fv);
    if (!n)
        list_remove(&fv->ev_dirty_link);
    else if (list_unlinked(&fv->ev_dirty_link))
        list_push_back(&c->ev_dirty, &fv->ev_dirty_link);
}

void evict_update_fn(struct ctl_fn *fn)
{
    list_for_each(fv, &fn->versions, struct ctl_fver, link)
        evict_update(fv);
}

/* Puts fv (evictable) in the ranking with its line from now. */
static void place(struct ctl *c, struct ctl_fver *fv, uint64_t now)
{
    const struct ka_state *ka = &fv->fn->ka;
    ka_next_use_line(ka, ka->level + fv->nidle, now, &fv->ev_line);
    fv->ev_since_ms = evict_longest_idle(fv)->idle_since_ms;
    ctl_vheap_push(&c->ev_rank[fv->ev_line.slope + 1], fv);
    if (fv->ev_line.until_ms != UINT64_MAX)
        ctl_vheap_push(&c->ev_ends, fv);
}

/* fv's predicted next use at now (its line holds: placed since it last changed). */
static int64_t line_at(const struct ctl_fver *fv, uint64_t now)
{
    return fv->ev_line.base + fv->ev_line.slope * (int64_t)now;
}

/* Whether idle container a (whose version predicts next use na) goes before b (nb):
 * the later use, then the longer idle, then the first in the walk of every version
 * and of each version's containers (newest first). */
static bool victim_before(const struct ctl_ctr *a, int64_t na, const struct ctl_ctr *b, int64_t nb)
{
    if (na != nb)
        return na > nb;
    if (a->idle_since_ms != b->idle_since_ms)
        return a->idle_since_ms < b->idle_since_ms;
    if (a->fv != b->fv)
        return a->fv->order < b->fv->order;
    return a->seq > b->seq;
}

/* GPUs of one of f's GPU options that container k holds (0: none, or f has none). */
int evict_gpus_for(const struct spec_function *f, const struct ctl_ctr *k, size_t option)
{
    return k->ngpu && !strcmp(k->gpu_type, f->gpus[option].type) ? k->ngpu : 0;
}

/* The GPU holders are few (one container per GPU at most): each is looked at. */
static struct ctl_ctr *gpu_victim(struct ctl *c, uint64_t now, const struct spec_function *f)
{
    struct ctl_ctr *best = NULL;
    int64_t best_next = 0;
    for (int g = 0; g < c->inv.ngpus; g++) {
        struct ctl_ctr *k = c->gpu_holder[g];
        if (!k || k->state != CTR_READY || k->inflight || !k->fv->ev_count)
            continue;
        bool fits = false;
        for (size_t o = 0; o < f->ngpu_options && !fits; o++)
            fits = evict_gpus_for(f, k, o) > 0;
        if (!fits)
            continue;
        const struct ka_state *ka = &k->fv->fn->ka;
        int64_t next = (int64_t)ka_next_use_ms(ka, ka->level + k->fv->nidle, now);
        if (!best || victim_before(k, next, best, best_next)) {
            best = k;
            best_next = next;
        }
    }
    return best;
}

struct ctl_ctr *evict_victim(struct ctl *c, uint64_t now, const struct spec_function *gpu_for)
{
    if (gpu_for)
        return gpu_victim(c, now, gpu_for);
    while (!list_empty(&c->ev_dirty)) {
        struct ctl_fver *fv = list_entry(c->ev_dirty.next, struct ctl_fver, ev_dirty_link);
        list_remove(&fv->ev_dirty_link);
        place(c, fv, now);
    }
    while (c->ev_ends.n && c->ev_ends.v[0]->ev_line.until_ms <= now) {
        struct ctl_fver *fv = c->ev_ends.v[0];
        unplace(c, fv);
        place(c, fv, now);
    }
    struct ctl_ctr *best = NULL;
    int64_t best_next = 0;
    for (int i = 0; i < EVICT_SLOPES; i++) {
        if (!c->ev_rank[i].n)
            continue;
        struct ctl_fver *fv = c->ev_rank[i].v[0];
        struct ctl_ctr *k = evict_longest_idle(fv);
        int64_t next = line_at(fv, now);
        if (!best || victim_before(k, next, best, best_next)) {
            best = k;
            best_next = next;
        }
    }
    return best;
}

void evict_init(struct ctl *c)
{
    list_init(&c->ev_dirty);
    for (int i = 0; i < EVICT_SLOPES; i++)
        c->ev_rank[i].kind = CTL_VHEAP_RANK;
    c->ev_ends.kind = CTL_VHEAP_END;
}

void evict_free(struct ctl *c)
{
    for (int i = 0; i < EVICT_SLOPES; i++)
        ctl_vheap_free(&c->ev_rank[i]);
    ctl_vheap_free(&c->ev_ends);
    list_init(&c->ev_dirty);
    c->ev_cpu = c->ev_mem = 0;
}
