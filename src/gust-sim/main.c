/* gust-sim: replays an Azure Functions 2019 trace against Gust's own control plane
 * (scheduler, autoscaler, keep-alive policy) on a virtual clock with a simulated
 * worker, once per keep-alive policy, and prints what each policy costs. A thin main
 * over src/sim (the engine) and src/trace (the reader). */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"
#include "sim/sim.h"
#include "trace/trace.h"

static const char *const policies[] = {"fixed_10min", "knative", "hybrid_histogram", "default"};
#define NPOLICIES (sizeof policies / sizeof policies[0])

static void usage(FILE *f)
{
    fprintf(f,
            "usage: gust-sim --trace DIR [options]\n"
            "\n"
            "Replays a trace of the Azure Functions 2019 dataset through Gust's control plane on a\n"
            "virtual clock with a simulated worker, once per keep-alive policy.\n"
            "\n"
            "DIR holds one *_inv.csv (HashFunction,HashApp,HashOwner,minute_1..minute_N: calls per\n"
            "minute), the *_run.csv beside it (duration percentiles in ms per function) and *_mem.csv\n"
            "(allocated memory per app); e.g. the shared 100-function sample in\n"
            "../shared/data/azure-functions-2019.\n"
            "\n"
            "  --policy NAME|all     keep-alive policy: fixed_10min, knative, hybrid_histogram,\n"
            "                        default, or all of them (default: all)\n"
            "  --functions N         the first N functions of the trace (default: all)\n"
            "  --replicate K         K copies of each function (after --functions), for a bigger\n"
            "                        trace than DIR holds: copy j is the trace rotated by an offset\n"
            "                        of minutes drawn from --seed, one per copy. A rotation keeps\n"
            "                        each function's own pattern (its per-minute counts in order:\n"
            "                        bursts, periods, idle times) while copies start their day at\n"
            "                        different minutes and do not fire in lockstep. The worker is\n"
            "                        not scaled: give K times --cpu and --memory to keep its\n"
            "                        load (default: 1, the trace as it is)\n"
            "  --minutes M           the first M minutes (default: all)\n"
            "  --cpu MILLICORES      the worker's CPU (default 640000: the sample is never short)\n"
            "  --memory MIB          the worker's memory (default 2621440, 2.5 TiB)\n"
            "  --gpus N              the worker's H100s for GPU functions (default 64)\n"
            "  --gpu-fraction F      the fraction F of functions with the most memory are GPU functions\n"
            "  --gpu-min-memory MB   functions with at least MB of memory are GPU functions\n"
            "  --fn-cpu MILLICORES   each function's CPU reservation (default 100)\n"
            "  --scaledown-window S  give every function this scaledown_window, which overrides\n"
            "                        the keep-alive policy (default: unset, the policy decides)\n"
            "  --cold-start-ms MS    a container start (default 8: Gust's measured cold start)\n"
            "  --init-ms-per-gib MS  plus the function's init per GiB of its memory (default 1000)\n"
            "  --arrivals poisson|even  how a minute's calls spread over it (default poisson)\n"
            "  --seed N              seed of arrivals and durations (default 1)\n"
            "  --time-scale X        divide times and durations by X (default 1)\n"
            "  --json                one JSON object instead of the table\n"
            "\n"
            "Per policy: cold_start_pct (calls that waited for a container start), idle_gib_s\n"
            "(memory reserved by containers alive and not busy, GiB x s), utilization (busy / alive,\n"
            "memory-weighted), evictions (containers control stopped), and with GPU functions\n"
            "gpu_utilization (GPU-seconds busy / alive). Measured from the simulated worker's events.\n");
}

static int parse_u64(const char *flag, const char *v, uint64_t min, uint64_t max, uint64_t *out)
{
    int64_t x;
    if (parse_i64(v, (int64_t)min, (int64_t)max, &x) < 0) {
        fprintf(stderr, "gust-sim: %s: \"%s\" is not a whole number from %llu to %llu\n", flag, v,
                (unsigned long long)min, (unsigned long long)max);
        return -1;
    }
    *out = (uint64_t)x;
    return 0;
}

static int parse_double(const char *flag, const char *v, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || errno || !(x >= min && x <= max)) {
        fprintf(stderr, "gust-sim: %s: \"%s\" is not a number from %g to %g\n", flag, v, min, max);
        return -1;
    }
    *out = x;
    return 0;
}

static json_t *result_json(const struct sim_result *r)
{
    json_t *o = json_pack("{s:I,s:I,s:I,s:f,s:f,s:f,s:f,s:I,s:I,s:i,s:f,s:f}", "calls", (json_int_t)r->calls,
                          "succeeded", (json_int_t)r->succeeded, "failed", (json_int_t)r->failed, "cold_start_pct",
                          r->cold_start_pct, "idle_gib_s", r->idle_gib_s, "alive_gib_s", r->alive_gib_s,
                          "utilization", r->utilization, "evictions", (json_int_t)r->evictions, "containers",
                          (json_int_t)r->containers, "peak_containers", (int)r->peak_containers, "virtual_s",
                          r->virtual_s, "wall_s", r->wall_s);
    if (r->gpu) {
        json_object_set_new(o, "gpu_utilization", json_real(r->gpu_utilization));
        json_object_set_new(o, "gpu_alive_s", json_real(r->gpu_alive_s));
    }
    return o;
}

int main(int argc, char **argv)
{
    enum { O_TRACE = 1, O_POLICY, O_FUNCTIONS, O_REPLICATE, O_MINUTES, O_CPU, O_MEMORY, O_GPUS, O_GPU_FRACTION,
           O_GPU_MIN, O_FN_CPU, O_WINDOW, O_COLD, O_INIT, O_ARRIVALS, O_SEED, O_SCALE, O_JSON, O_HELP };
    static const struct option opts[] = {
        {"trace", required_argument, NULL, O_TRACE},
        {"policy", required_argument, NULL, O_POLICY},
        {"functions", required_argument, NULL, O_FUNCTIONS},
        {"replicate", required_argument, NULL, O_REPLICATE},
        {"minutes", required_argument, NULL, O_MINUTES},
        {"cpu", required_argument, NULL, O_CPU},
        {"memory", required_argument, NULL, O_MEMORY},
        {"gpus", required_argument, NULL, O_GPUS},
        {"gpu-fraction", required_argument, NULL, O_GPU_FRACTION},
        {"gpu-min-memory", required_argument, NULL, O_GPU_MIN},
        {"fn-cpu", required_argument, NULL, O_FN_CPU},
        {"scaledown-window", required_argument, NULL, O_WINDOW},
        {"cold-start-ms", required_argument, NULL, O_COLD},
        {"init-ms-per-gib", required_argument, NULL, O_INIT},
        {"arrivals", required_argument, NULL, O_ARRIVALS},
        {"seed", required_argument, NULL, O_SEED},
        {"time-scale", required_argument, NULL, O_SCALE},
        {"json", no_argument, NULL, O_JSON},
        {"help", no_argument, NULL, O_HELP},
        {0},
    };
    struct sim_config cfg;
    sim_config_default(&cfg);
    struct trace_limits lim = {0};
    const char *dir = NULL, *policy = "all";
    uint32_t replicate = 1;
    bool json = false;
    uint64_t v;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case O_TRACE: dir = optarg; break;
        case O_POLICY: policy = optarg; break;
        case O_FUNCTIONS:
            if (parse_u64("--functions", optarg, 1, TRACE_MAX_FUNCTIONS, &v) < 0)
                return 2;
            lim.max_functions = v;
            break;
        case O_REPLICATE:
            if (parse_u64("--replicate", optarg, 1, TRACE_MAX_FUNCTIONS, &v) < 0)
                return 2;
            replicate = (uint32_t)v;
            break;
        case O_MINUTES:
            if (parse_u64("--minutes", optarg, 1, TRACE_MAX_MINUTES, &v) < 0)
                return 2;
            lim.max_minutes = (uint32_t)v;
            break;
        case O_CPU:
            if (parse_u64("--cpu", optarg, 10, 100000000, &v) < 0)
                return 2;
            cfg.cpu_millicores = (uint32_t)v;
            break;
        case O_MEMORY:
            if (parse_u64("--memory", optarg, 16, 1ull << 40, &v) < 0)
                return 2;
            cfg.memory_mib = v;
            break;
        case O_GPUS:
            if (parse_u64("--gpus", optarg, 0, 64, &v) < 0)
                return 2;
            cfg.ngpus = (int)v;
            break;
        case O_GPU_FRACTION:
            if (parse_double("--gpu-fraction", optarg, 0, 1, &cfg.gpu_fraction) < 0)
                return 2;
            break;
        case O_GPU_MIN:
            if (parse_u64("--gpu-min-memory", optarg, 1, 1048576, &v) < 0)
                return 2;
            cfg.gpu_min_memory_mib = (uint32_t)v;
            break;
        case O_FN_CPU:
            if (parse_u64("--fn-cpu", optarg, 10, 1000000, &v) < 0)
                return 2;
            cfg.fn_cpu_millicores = (uint32_t)v;
            break;
        case O_WINDOW:
            if (parse_u64("--scaledown-window", optarg, 1, 86400, &v) < 0)
                return 2;
            cfg.scaledown_window_s = (uint32_t)v;
            break;
        case O_COLD:
            if (parse_u64("--cold-start-ms", optarg, 0, 3600000, &v) < 0)
                return 2;
            cfg.cold_start_ms = (uint32_t)v;
            break;
        case O_INIT:
            if (parse_u64("--init-ms-per-gib", optarg, 0, 3600000, &v) < 0)
                return 2;
            cfg.init_ms_per_gib = (uint32_t)v;
            break;
        case O_ARRIVALS:
            if (strcmp(optarg, "poisson") && strcmp(optarg, "even")) {
                fprintf(stderr, "gust-sim: --arrivals: poisson or even, not \"%s\"\n", optarg);
                return 2;
            }
            cfg.even_arrivals = !strcmp(optarg, "even");
            break;
        case O_SEED:
            if (parse_u64("--seed", optarg, 0, INT64_MAX, &v) < 0)
                return 2;
            cfg.seed = v;
            break;
        case O_SCALE:
            if (parse_double("--time-scale", optarg, 0.001, 100000, &cfg.time_scale) < 0)
                return 2;
            break;
        case O_JSON: json = true; break;
        case O_HELP:
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!dir || optind != argc) {
        usage(stderr);
        return 2;
    }
    const char *run[NPOLICIES];
    size_t nrun = 0;
    if (!strcmp(policy, "all")) {
        for (size_t i = 0; i < NPOLICIES; i++)
            run[nrun++] = policies[i];
    } else {
        for (size_t i = 0; i < NPOLICIES; i++)
            if (!strcmp(policy, policies[i]))
                run[nrun++] = policies[i];
        if (!nrun) {
            fprintf(stderr, "gust-sim: --policy: one of fixed_10min, knative, hybrid_histogram, default, all; not \"%s\"\n",
                    policy);
            return 2;
        }
    }
    /* Control logs every scale-down at debug and warnings for real trouble; a
     * simulation of thousands of containers keeps only errors. */
    log_set_level(LOG_ERROR);
    struct trace t;
    struct gerr err;
    if (trace_load(dir, &lim, &t, &err) < 0) {
        fprintf(stderr, "gust-sim: %s\n", err.msg);
        return 1;
    }
    if (trace_replicate(&t, replicate, cfg.seed, &err) < 0) {
        fprintf(stderr, "gust-sim: --replicate: %s\n", err.msg);
        trace_free(&t);
        return 2;
    }
    cfg.trace = &t;
    uint64_t calls = 0;
    for (size_t i = 0; i < t.nfns; i++)
        calls += t.fns[i].total;
    json_t *all = json_object();
    json_t *pol = json_object();
    int rc = 0;
    if (!json)
        printf("trace %s: %zu functions, %u minutes, %llu calls\n\n%-17s %9s %12s %11s %9s %10s %9s%s\n", dir,
               t.nfns, t.nminutes, (unsigned long long)calls, "policy", "cold %", "idle GiB-s", "utilization",
               "evictions", "containers", "wall s", cfg.gpu_fraction > 0 || cfg.gpu_min_memory_mib ? "  GPU util" : "");
    for (size_t i = 0; i < nrun; i++) {
        struct sim_result r;
        if (sim_run(&cfg, run[i], &r, &err) < 0) {
            fprintf(stderr, "gust-sim: %s: %s\n", run[i], err.msg);
            rc = 1;
            break;
        }
        if (json) {
            json_object_set_new(pol, run[i], result_json(&r));
        } else {
            printf("%-17s %9.2f %12.0f %11.3f %9llu %10llu %9.2f", run[i], r.cold_start_pct, r.idle_gib_s,
                   r.utilization, (unsigned long long)r.evictions, (unsigned long long)r.containers, r.wall_s);
            if (r.gpu)
                printf("  %8.3f", r.gpu_utilization);
            printf("\n");
            fflush(stdout);
        }
    }
    if (json && rc == 0) {
        json_object_set_new(all, "functions", json_integer((json_int_t)t.nfns));
        json_object_set_new(all, "minutes", json_integer(t.nminutes));
        json_object_set_new(all, "calls", json_integer((json_int_t)calls));
        json_object_set(all, "policies", pol);
        char *s = json_dumps(all, JSON_INDENT(2) | JSON_SORT_KEYS);
        printf("%s\n", s);
        free(s);
    }
    json_decref(pol);
    json_decref(all);
    trace_free(&t);
    return rc;
}
