/* The local worker behind the seam of worker/ops.h: containers and snapshots on this
 * machine, named by the ids control chose. gustd creates one and hands
 * (&worker_local_ops, handle) to control. */
#ifndef GUST_WORKER_LOCAL_H
#define GUST_WORKER_LOCAL_H

#include "evloop/evloop.h"
#include "worker/ops.h"
#include "worker/worker.h"

struct worker_local;

extern const struct worker_ops worker_local_ops;

int worker_local_new(struct ev_loop *loop, const struct worker_config *cfg, struct worker_local **out,
                     struct gerr *err);
/* Kills every container at once (no exit events) and frees. */
void worker_local_free(struct worker_local *l);
/* The in-process worker underneath, for what stays on this machine (build lanes). */
struct worker *worker_local_worker(struct worker_local *l);

#endif
