/* GPU inventory and passthrough for the local worker.
 *
 * Inventory: NVML (libnvidia-ml.so.1, loaded with dlopen so nothing needs a GPU to
 * build) when it is present and reports devices, else what the operator declared
 * with --gpus (simulated: scheduling and metering only, no device nodes). Product
 * names are normalised to what users write ("NVIDIA H100 80GB HBM3" -> "H100").
 *
 * Passthrough (gpu_passthrough): for a container's GPUs, exactly their
 * /dev/nvidia<minor> plus /dev/nvidiactl, /dev/nvidia-uvm(-tools), and the host's
 * driver libraries (libcuda, libnvidia-ml, libnvidia-ptxjitcompiler, ...) bound
 * read-only under GPU_CTR_LIB_DIR, with CUDA_VISIBLE_DEVICES / NVIDIA_VISIBLE_DEVICES
 * set. A GPU that is not simulated but whose device nodes or libraries are missing is
 * a clear error, never a container without its GPU.
 */
#ifndef GUST_WORKER_GPU_H
#define GUST_WORKER_GPU_H

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "runtime/sandbox.h"
#include "worker/worker.h"

#define GPU_CTR_LIB_DIR "/opt/gust/nvidia/lib64"
#define GPU_CTR_BIN_DIR "/opt/gust/nvidia/bin"
#define GPU_MAX_LIBS 32
#define GPU_ENV_MAX 4

/* Normalises an NVML product name into the type users write. */
int gpu_normalize_product(const char *product, char *out, size_t out_len);

/* Appends the GPUs NVML reports to cfg (returns how many, 0 when there is no NVML
 * or no device; never fails the worker for a missing driver). */
int gpu_detect_nvml(struct worker_config *cfg, struct gerr *err);

/* Samples one GPU through NVML: utilization (percent) and memory in use (bytes).
 * -ENODEV when NVML is not loaded or the GPU is simulated. */
int gpu_sample(const struct worker_gpu *g, uint32_t *util_pct, uint64_t *mem_used);

/* What a container needs for its GPUs. Strings live in this struct. */
struct gpu_mounts {
    int ndevices;
    char dev_host[SANDBOX_MAX_DEVICES][512];
    char dev_ctr[SANDBOX_MAX_DEVICES][64];
    int nlibs;
    char lib_host[GPU_MAX_LIBS][4096];
    char lib_ctr[GPU_MAX_LIBS][300];
    int nenv;
    char env[GPU_ENV_MAX][1100];
};

/* Fills m for the inventory entries idx[0..n): nothing for simulated GPUs (but the
 * environment), else device nodes from cfg->gpu_dev_dir and libraries from
 * cfg->gpu_driver_dir (or the usual library directories). */
int gpu_passthrough(const struct worker_config *cfg, const int *idx, int n, struct gpu_mounts *m,
                    struct gerr *err);

#endif
