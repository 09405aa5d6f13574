/* A simulated worker: a struct worker_ops (worker/ops.h) whose containers are records
 * on a virtual event loop (evloop.h, ev_loop_new_virtual). A start reports ready()
 * after a cold-start delay, an input reports output() after the duration its payload
 * carries, a stop or kill reports exit() on the next loop turn; every event comes
 * from a timer, never from inside an operation (the seam's rule).
 *
 * It also measures what the simulator reports, from its own events and independent
 * of control's metering: containers started and stopped, memory- and GPU-time alive
 * and busy, and inputs that waited for a container start (cold). */
#ifndef GUST_SIM_SIMWORKER_H
#define GUST_SIM_SIMWORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "evloop/evloop.h"
#include "worker/ops.h"

/* An input's payload, as the simulator encodes it: when the call was submitted and how
 * long it runs, both in virtual ms. SIM_INPUT_LEN bytes, little-endian. */
#define SIM_INPUT_LEN 12
struct sim_input {
    uint64_t submit_ms;
    uint32_t duration_ms;
};
void sim_input_encode(const struct sim_input *in, unsigned char out[SIM_INPUT_LEN]);
/* false when data is not SIM_INPUT_LEN bytes. */
bool sim_input_decode(const void *data, size_t len, struct sim_input *out);

struct simworker_config {
    uint32_t cpu_millicores;
    uint64_t memory_mib;
    int ngpus;                 /* "H100" GPUs in the inventory (at most WORKER_MAX_GPUS) */
    uint32_t cold_start_ms;    /* every start: sandbox + runtime */
    uint32_t init_ms_per_gib;  /* plus the function's init, by its memory reservation */
};

/* Measured from the worker's own events. "Alive": start() to exit(); "busy": at least
 * one input in flight; memory-time in MiB-ms of the container's reservation, GPU-time
 * in GPU-ms. */
struct simworker_stats {
    uint64_t started, ready, exited;
    uint64_t stopped;          /* stop() or kill() by control: scale-downs and evictions */
    uint64_t inputs, cold_inputs; /* cold: the container became ready after the call was submitted */
    uint64_t outputs;
    double alive_mib_ms, ready_mib_ms, busy_mib_ms;
    double gpu_alive_ms, gpu_busy_ms;
    uint32_t live, peak_live;
};

struct simworker;
void simworker_new(struct ev_loop *loop, const struct simworker_config *cfg, struct simworker **out);
/* Closes the accounting of containers still alive at virtual time now (they are
 * counted as if they exited then) and returns the totals. Call once, at the end. */
void simworker_finish(struct simworker *w, struct simworker_stats *out);
void simworker_free(struct simworker *w);

extern const struct worker_ops simworker_ops;

#endif
