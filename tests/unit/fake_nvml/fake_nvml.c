/* A stand-in for libnvidia-ml.so.1 for tests on machines without a GPU: two devices
 * with real product-name strings, UUIDs, minor numbers, memory and utilization. It
 * exports only the NVML entry points src/worker/gpu.c resolves, with NVML's ABI, so
 * the worker's dlopen/dlsym, detection, normalisation and sampling code runs as it
 * would against the driver. Built as BUILD/tests/fake-nvml/libnvidia-ml.so.1. */
#include <stdio.h>
#include <string.h>

struct fake_memory {
    unsigned long long total, free, used;
};
struct fake_util {
    unsigned int gpu, memory;
};

static const struct {
    const char *name, *uuid;
    unsigned minor;
} devs[] = {
    {"NVIDIA H100 80GB HBM3", "GPU-11111111-2222-3333-4444-555555555555", 3},
    {"NVIDIA A100-SXM4-80GB", "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", 5},
};
static int initialised;

int nvmlInit_v2(void);
int nvmlDeviceGetCount_v2(unsigned int *n);
int nvmlDeviceGetHandleByIndex_v2(unsigned int i, void **dev);
int nvmlDeviceGetName(void *dev, char *out, unsigned int len);
int nvmlDeviceGetUUID(void *dev, char *out, unsigned int len);
int nvmlDeviceGetMemoryInfo(void *dev, struct fake_memory *m);
int nvmlDeviceGetMinorNumber(void *dev, unsigned int *minor);
int nvmlDeviceGetUtilizationRates(void *dev, struct fake_util *u);

int nvmlInit_v2(void)
{
    initialised = 1;
    return 0;
}

int nvmlDeviceGetCount_v2(unsigned int *n)
{
    if (!initialised)
        return 1;
    *n = 2;
    return 0;
}

/* Handles are 1-based indices. */
static int index_of(void *dev)
{
    unsigned long i = (unsigned long)dev;
    return initialised && i >= 1 && i <= 2 ? (int)i - 1 : -1;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int i, void **dev)
{
    if (!initialised || i >= 2)
        return 2;
    *dev = (void *)(unsigned long)(i + 1);
    return 0;
}

int nvmlDeviceGetName(void *dev, char *out, unsigned int len)
{
    int i = index_of(dev);
    if (i < 0)
        return 2;
    snprintf(out, len, "%s", devs[i].name);
    return 0;
}

int nvmlDeviceGetUUID(void *dev, char *out, unsigned int len)
{
    int i = index_of(dev);
    if (i < 0)
        return 2;
    snprintf(out, len, "%s", devs[i].uuid);
    return 0;
}

int nvmlDeviceGetMemoryInfo(void *dev, struct fake_memory *m)
{
    int i = index_of(dev);
    if (i < 0)
        return 2;
    m->total = 80ull << 30;
    m->used = (unsigned long long)(i + 1) << 30;
    m->free = m->total - m->used;
    return 0;
}

int nvmlDeviceGetMinorNumber(void *dev, unsigned int *minor)
{
    int i = index_of(dev);
    if (i < 0)
        return 2;
    *minor = devs[i].minor;
    return 0;
}

int nvmlDeviceGetUtilizationRates(void *dev, struct fake_util *u)
{
    int i = index_of(dev);
    if (i < 0)
        return 2;
    u->gpu = 42 + (unsigned)i;
    u->memory = 10;
    return 0;
}
