/* GPU inventory (NVML or declared), name normalisation, sampling and passthrough
 * (see worker/gpu.h). */
#include "worker/gpu.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/util.h"

/* ---- NVML, loaded at run time -------------------------------------------------- */

typedef int nvml_ret;
typedef void *nvml_device;
struct nvml_memory {
    unsigned long long total, free, used;
};
struct nvml_utilization {
    unsigned int gpu, memory;
};

static struct {
    void *lib;
    bool ok;
    char origin[PATH_MAX]; /* directory libnvidia-ml was loaded from */
    nvml_ret (*init)(void);
    nvml_ret (*count)(unsigned int *);
    nvml_ret (*by_index)(unsigned int, nvml_device *);
    nvml_ret (*name)(nvml_device, char *, unsigned int);
    nvml_ret (*uuid)(nvml_device, char *, unsigned int);
    nvml_ret (*memory)(nvml_device, struct nvml_memory *);
    nvml_ret (*minor)(nvml_device, unsigned int *);
    nvml_ret (*util)(nvml_device, struct nvml_utilization *);
} nvml;
static pthread_once_t nvml_once = PTHREAD_ONCE_INIT;

static void nvml_load(void)
{
    nvml.lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!nvml.lib)
        return;
    nvml.init = (nvml_ret(*)(void))dlsym(nvml.lib, "nvmlInit_v2");
    nvml.count = (nvml_ret(*)(unsigned int *))dlsym(nvml.lib, "nvmlDeviceGetCount_v2");
    nvml.by_index = (nvml_ret(*)(unsigned int, nvml_device *))dlsym(nvml.lib, "nvmlDeviceGetHandleByIndex_v2");
    nvml.name = (nvml_ret(*)(nvml_device, char *, unsigned int))dlsym(nvml.lib, "nvmlDeviceGetName");
    nvml.uuid = (nvml_ret(*)(nvml_device, char *, unsigned int))dlsym(nvml.lib, "nvmlDeviceGetUUID");
    nvml.memory = (nvml_ret(*)(nvml_device, struct nvml_memory *))dlsym(nvml.lib, "nvmlDeviceGetMemoryInfo");
    nvml.minor = (nvml_ret(*)(nvml_device, unsigned int *))dlsym(nvml.lib, "nvmlDeviceGetMinorNumber");
    nvml.util = (nvml_ret(*)(nvml_device, struct nvml_utilization *))dlsym(nvml.lib, "nvmlDeviceGetUtilizationRates");
    if (!nvml.init || !nvml.count || !nvml.by_index || !nvml.name || !nvml.uuid || !nvml.memory ||
        !nvml.minor || !nvml.util || nvml.init() != 0)
        return;
    if (dlinfo(nvml.lib, RTLD_DI_ORIGIN, nvml.origin) != 0)
        nvml.origin[0] = '\0';
    nvml.ok = true;
}

static bool nvml_ready(void)
{
    pthread_once(&nvml_once, nvml_load);
    return nvml.ok;
}

static const char *const gpu_known[] = {"H100", "H200", "B200", "A100-40GB", "A100-80GB",
                                        "L40S", "L4",   "A10G", "T4"};

int gpu_normalize_product(const char *product, char *out, size_t out_len)
{
    if (!product || !*product || out_len < 2)
        return -EINVAL;
    const char *p = product;
    static const char *const vendors[] = {"NVIDIA ", "Tesla ", "GeForce ", "Quadro "};
    for (bool again = true; again;) {
        again = false;
        for (size_t i = 0; i < ARRAY_LEN(vendors); i++) {
            size_t n = strlen(vendors[i]);
            if (!strncasecmp(p, vendors[i], n)) {
                p += n;
                again = true;
            }
        }
    }
    /* The model is the first word ("H100", "A100-SXM4-80GB" -> "A100"). */
    char model[32];
    size_t m = strcspn(p, " -");
    if (m == 0 || m >= sizeof model)
        return -EINVAL;
    memcpy(model, p, m);
    model[m] = '\0';
    if (!strcasecmp(model, "A100")) {
        snprintf(out, out_len, "%s", strstr(p, "80GB") ? "A100-80GB" : "A100-40GB");
        return 0;
    }
    for (size_t i = 0; i < ARRAY_LEN(gpu_known); i++) {
        if (!strcasecmp(model, gpu_known[i])) {
            snprintf(out, out_len, "%s", gpu_known[i]);
            return 0;
        }
    }
    /* Unknown product: the words joined by '-', upper-cased, as spec types are. */
    size_t k = 0;
    for (const char *q = p; *q && k + 1 < out_len && k < 31; q++) {
        char ch = *q;
        if (ch == ' ' || ch == '_')
            ch = '-';
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-'))
            continue;
        if (ch == '-' && (k == 0 || out[k - 1] == '-'))
            continue;
        out[k++] = (ch >= 'a' && ch <= 'z') ? (char)(ch - 'a' + 'A') : ch;
    }
    while (k > 0 && out[k - 1] == '-')
        k--;
    out[k] = '\0';
    return k ? 0 : -EINVAL;
}

int gpu_detect_nvml(struct worker_config *cfg, struct gerr *err)
{
    if (!nvml_ready())
        return 0;
    unsigned int count = 0;
    if (nvml.count(&count) != 0)
        return 0;
    int added = 0;
    for (unsigned int i = 0; i < count && cfg->ngpus < WORKER_MAX_GPUS; i++) {
        nvml_device dev;
        char name[96], uuid[96];
        unsigned int minor;
        struct nvml_memory mem;
        if (nvml.by_index(i, &dev) != 0 || nvml.name(dev, name, sizeof name) != 0 ||
            nvml.uuid(dev, uuid, sizeof uuid) != 0 || nvml.minor(dev, &minor) != 0 ||
            nvml.memory(dev, &mem) != 0)
            return gerr_set(err, EIO, "NVML: cannot read GPU %u", i);
        struct worker_gpu *g = &cfg->gpus[cfg->ngpus];
        memset(g, 0, sizeof *g);
        if (gpu_normalize_product(name, g->type, sizeof g->type) < 0)
            snprintf(g->type, sizeof g->type, "GPU");
        snprintf(g->product, sizeof g->product, "%s", name);
        snprintf(g->uuid, sizeof g->uuid, "%s", uuid);
        g->index = (int)i;
        g->minor = (int)minor;
        g->memory_mib = mem.total >> 20;
        g->simulated = false;
        cfg->ngpus++;
        added++;
    }
    return added;
}

int gpu_sample(const struct worker_gpu *g, uint32_t *util_pct, uint64_t *mem_used)
{
    if (g->simulated || !nvml_ready())
        return -ENODEV;
    nvml_device dev;
    struct nvml_utilization u;
    struct nvml_memory mem;
    if (nvml.by_index((unsigned)g->index, &dev) != 0 || nvml.util(dev, &u) != 0 || nvml.memory(dev, &mem) != 0)
        return -EIO;
    *util_pct = u.gpu;
    *mem_used = mem.used;
    return 0;
}

/* ---- passthrough ----------------------------------------------------------------- */

/* Driver libraries a CUDA program may load (the NVIDIA container toolkit's "compute"
 * and "utility" sets). Every name in a library directory that starts with one of
 * these and continues with "." or ends is taken (libcuda.so, .so.1, .so.580.65...). */
static const char *const driver_libs[] = {
    "libcuda.so",           "libnvidia-ml.so",        "libnvidia-ptxjitcompiler.so",
    "libnvidia-nvvm.so",    "libnvidia-gpucomp.so",   "libcudadebugger.so",
    "libnvidia-allocator.so", "libnvidia-cfg.so",     "libnvidia-opencl.so",
};
/* Without these CUDA cannot work at all. */
static const char *const required_libs[] = {"libcuda.so.1", "libnvidia-ml.so.1"};

static const char *const lib_dirs[] = {"/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib",
                                       "/lib/x86_64-linux-gnu", "/usr/local/nvidia/lib64"};

static bool lib_name_matches(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(driver_libs); i++) {
        size_t n = strlen(driver_libs[i]);
        if (!strncmp(name, driver_libs[i], n) && (name[n] == '\0' || name[n] == '.'))
            return true;
    }
    return false;
}

static bool lib_have(const struct gpu_mounts *m, const char *name)
{
    char want[300];
    snprintf(want, sizeof want, GPU_CTR_LIB_DIR "/%s", name);
    for (int i = 0; i < m->nlibs; i++)
        if (!strcmp(m->lib_ctr[i], want))
            return true;
    return false;
}

/* Adds the driver libraries found in dir (resolved to real files, bound under the
 * name they have in dir) that are not there yet. */
static int libs_from_dir(const char *dir, struct gpu_mounts *m, struct gerr *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *de;
    int r = 0;
    while ((de = readdir(d)) && r == 0) {
        if (!lib_name_matches(de->d_name) || lib_have(m, de->d_name))
            continue;
        char path[PATH_MAX], real[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= (int)sizeof path || !realpath(path, real))
            continue;
        struct stat st;
        if (stat(real, &st) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (m->nlibs >= GPU_MAX_LIBS) {
            r = gerr_set(err, E2BIG, "more than %d NVIDIA driver libraries in %s", GPU_MAX_LIBS, dir);
            break;
        }
        snprintf(m->lib_host[m->nlibs], sizeof m->lib_host[0], "%s", real);
        snprintf(m->lib_ctr[m->nlibs], sizeof m->lib_ctr[0], GPU_CTR_LIB_DIR "/%s", de->d_name);
        m->nlibs++;
    }
    closedir(d);
    return r;
}

static int add_device(struct gpu_mounts *m, const char *dev_dir, const char *name, bool required,
                      struct gerr *err)
{
    char host[512];
    snprintf(host, sizeof host, "%s/%s", dev_dir, name);
    struct stat st;
    if (stat(host, &st) < 0 || !S_ISCHR(st.st_mode)) {
        if (!required)
            return 0;
        return gerr_set(err, ENODEV, "GPU device node %s is missing (is the NVIDIA driver loaded, "
                        "and nvidia-uvm with it?)", host);
    }
    if (m->ndevices >= SANDBOX_MAX_DEVICES)
        return gerr_set(err, E2BIG, "too many GPU device nodes");
    snprintf(m->dev_host[m->ndevices], sizeof m->dev_host[0], "%s", host);
    snprintf(m->dev_ctr[m->ndevices], sizeof m->dev_ctr[0], "/dev/%s", name);
    m->ndevices++;
    return 0;
}

int gpu_passthrough(const struct worker_config *cfg, const int *idx, int n, struct gpu_mounts *m,
                    struct gerr *err)
{
    memset(m, 0, sizeof *m);
    if (n <= 0)
        return 0;
    char visible[1024] = "";
    size_t vlen = 0;
    bool real = false;
    for (int i = 0; i < n; i++) {
        if (idx[i] < 0 || idx[i] >= cfg->ngpus)
            return gerr_set(err, EINVAL, "GPU %d is not in the inventory", idx[i]);
        const struct worker_gpu *g = &cfg->gpus[idx[i]];
        bool pass = !g->simulated || cfg->gpu_passthrough_declared;
        real = real || pass;
        /* With UUIDs the selection does not depend on how CUDA numbers the devices it
         * can open; simulated GPUs get container-local indices. */
        int w = g->uuid[0] ? snprintf(visible + vlen, sizeof visible - vlen, "%s%s", i ? "," : "", g->uuid)
                           : snprintf(visible + vlen, sizeof visible - vlen, "%s%d", i ? "," : "", i);
        if (w < 0 || (size_t)w >= sizeof visible - vlen)
            return gerr_set(err, E2BIG, "too many GPUs");
        vlen += (size_t)w;
        if (!pass)
            continue;
        char node[32];
        snprintf(node, sizeof node, "nvidia%d", g->uuid[0] ? g->minor : g->index);
        int r = add_device(m, cfg->gpu_dev_dir ? cfg->gpu_dev_dir : "/dev", node, true, err);
        if (r < 0)
            return gerr_prefix(err, "GPU %d (%s)", g->index, g->type);
    }
    snprintf(m->env[m->nenv++], sizeof m->env[0], "CUDA_VISIBLE_DEVICES=%s", visible);
    snprintf(m->env[m->nenv++], sizeof m->env[0], "NVIDIA_VISIBLE_DEVICES=%s", visible);
    if (!real)
        return 0;
    const char *dev_dir = cfg->gpu_dev_dir ? cfg->gpu_dev_dir : "/dev";
    int r;
    if ((r = add_device(m, dev_dir, "nvidiactl", true, err)) < 0 ||
        (r = add_device(m, dev_dir, "nvidia-uvm", true, err)) < 0 ||
        (r = add_device(m, dev_dir, "nvidia-uvm-tools", false, err)) < 0)
        return r;
    if (cfg->gpu_driver_dir) {
        r = libs_from_dir(cfg->gpu_driver_dir, m, err);
    } else {
        r = nvml_ready() && nvml.origin[0] ? libs_from_dir(nvml.origin, m, err) : 0;
        for (size_t i = 0; r == 0 && i < ARRAY_LEN(lib_dirs); i++)
            r = libs_from_dir(lib_dirs[i], m, err);
    }
    if (r < 0)
        return r;
    for (size_t i = 0; i < ARRAY_LEN(required_libs); i++) {
        if (!lib_have(m, required_libs[i]))
            return gerr_set(err, ENOENT, "NVIDIA driver library %s not found in %s: install the driver's "
                            "user-space libraries (or point --gpu-driver-dir at them)", required_libs[i],
                            cfg->gpu_driver_dir ? cfg->gpu_driver_dir : "the usual library directories");
    }
    snprintf(m->env[m->nenv++], sizeof m->env[0], "GUST_GPU_LIB_DIR=" GPU_CTR_LIB_DIR);
    return 0;
}


int worker_normalize_gpu_type(const char *in, char *out, size_t out_len)
{
    size_t n = in ? strlen(in) : 0;
    if (n == 0 || n > 31)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        char ch = in[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-'))
            return -EINVAL;
    }
    const char *canon = NULL;
    if (!strcasecmp(in, "A100"))
        canon = "A100-40GB";
    for (size_t i = 0; !canon && i < ARRAY_LEN(gpu_known); i++)
        if (!strcasecmp(in, gpu_known[i]))
            canon = gpu_known[i];
    size_t cn = canon ? strlen(canon) : n;
    if (cn + 1 > out_len)
        return -ENOSPC;
    if (canon) {
        memcpy(out, canon, cn + 1);
    } else {
        for (size_t i = 0; i < n; i++)
            out[i] = (in[i] >= 'a' && in[i] <= 'z') ? (char)(in[i] - 'a' + 'A') : in[i];
        out[n] = 0;
    }
    return 0;
}

int worker_parse_gpus(const char *s, struct worker_config *cfg, struct gerr *err)
{
    if (!s)
        return gerr_set(err, EINVAL, "--gpus: missing value");
    const char *p = s;
    int added = 0;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len && *p == ' ') {
            p++;
            len--;
        }
        while (len && p[len - 1] == ' ')
            len--;
        char item[64];
        if (len == 0 || len >= sizeof item) {
            cfg->ngpus -= added;
            return gerr_set(err, EINVAL, "--gpus \"%s\": expected TYPE[:COUNT][,TYPE[:COUNT]...], e.g. H100:2,A100-80GB:1", s);
        }
        memcpy(item, p, len);
        item[len] = 0;
        int64_t count = 1;
        char *colon = strchr(item, ':');
        if (colon) {
            *colon = 0;
            if (parse_i64(colon + 1, 1, WORKER_MAX_GPUS, &count) < 0) {
                cfg->ngpus -= added;
                return gerr_set(err, EINVAL, "--gpus \"%s\": bad count \"%s\" (1..%d)", s, colon + 1, WORKER_MAX_GPUS);
            }
        }
        char type[32];
        if (worker_normalize_gpu_type(item, type, sizeof type) < 0) {
            cfg->ngpus -= added;
            return gerr_set(err, EINVAL, "--gpus \"%s\": bad GPU type \"%s\" (letters, digits, '-'; at most 31)", s,
                            item);
        }
        if (cfg->ngpus + count > WORKER_MAX_GPUS) {
            cfg->ngpus -= added;
            return gerr_set(err, EINVAL, "--gpus \"%s\": at most %d GPUs in total", s, WORKER_MAX_GPUS);
        }
        for (int64_t i = 0; i < count; i++) {
            struct worker_gpu *g = &cfg->gpus[cfg->ngpus];
            snprintf(g->type, sizeof g->type, "%s", type);
            g->index = cfg->ngpus;
            g->simulated = true;
            cfg->ngpus++;
            added++;
        }
        if (!end)
            break;
        p = end + 1;
        if (!*p) {
            cfg->ngpus -= added;
            return gerr_set(err, EINVAL, "--gpus \"%s\": trailing comma", s);
        }
    }
    return 0;
}
