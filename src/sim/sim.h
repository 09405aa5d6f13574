/* gust-sim's engine: replays a trace (trace/trace.h) against the real control plane
 * (control/control.h: the same scheduler, autoscaler and keep-alive code gustd runs)
 * on a virtual event loop, with the simulated worker (sim/simworker.h) behind the
 * seam. One sim_run is one policy: a fresh store, control and worker each time. */
#ifndef GUST_SIM_SIM_H
#define GUST_SIM_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "trace/trace.h"

struct sim_config {
    const struct trace *trace;
    /* The simulated worker. */
    uint32_t cpu_millicores;
    uint64_t memory_mib;
    int ngpus;
    uint32_t cold_start_ms;
    uint32_t init_ms_per_gib;
    /* Each function's spec. */
    uint32_t fn_cpu_millicores;
    uint32_t scaledown_window_s;
    /* GPU functions: the gpu_fraction of functions with the most memory, or (when
     * gpu_min_memory_mib > 0) those with at least that much; each container holds one
     * H100 of the worker's ngpus. */
    double gpu_fraction;
    uint32_t gpu_min_memory_mib;
    /* Arrivals: evenly spaced in each minute, or uniform order statistics (what a
     * Poisson process with that minute's count looks like). */
    bool even_arrivals;
    uint64_t seed;
    /* Divides every arrival time and duration (1: real time; 60: a minute per second). */
    double time_scale;
};

void sim_config_default(struct sim_config *cfg);

struct sim_result {
    char policy[32];
    uint64_t calls, succeeded, failed;
    uint64_t inputs, cold_inputs;
    double cold_start_pct;    /* inputs that waited for a container start, of all inputs */
    double alive_gib_s, busy_gib_s, idle_gib_s; /* idle = alive - busy, memory reservation x time */
    double utilization;       /* busy / alive, memory-weighted */
    uint64_t containers, evictions; /* started; stopped by control before the end */
    uint32_t peak_containers;
    bool gpu;
    double gpu_alive_s, gpu_busy_s, gpu_utilization;
    double virtual_s, wall_s;
};

/* Runs the whole trace under keep-alive policy (control's keepalive_policy). */
int sim_run(const struct sim_config *cfg, const char *policy, struct sim_result *out, struct gerr *err);

#endif
