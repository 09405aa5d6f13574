/* GPU inventory and passthrough: product-name normalisation; NVML detection and
 * sampling through the real dlopen path against tests/unit/fake_nvml (the binary
 * re-executes itself with LD_LIBRARY_PATH pointing there); passthrough of detected
 * GPUs (minor numbers, UUIDs) and of declared ones, with device nodes made by mknod
 * and driver libraries as files in a scratch directory. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "base/util.h"
#include "worker/gpu.h"
#include "unit.h"

static char g_dir[64];

UNIT_TEST(test_normalize_product)
{
    static const char *const cases[][2] = {
        {"NVIDIA H100 80GB HBM3", "H100"},     {"NVIDIA H100 PCIe", "H100"},
        {"NVIDIA H200", "H200"},               {"NVIDIA A100-SXM4-80GB", "A100-80GB"},
        {"NVIDIA A100-PCIE-40GB", "A100-40GB"}, {"NVIDIA A100 80GB PCIe", "A100-80GB"},
        {"NVIDIA L4", "L4"},                   {"Tesla T4", "T4"},
        {"NVIDIA A10G", "A10G"},               {"NVIDIA L40S", "L40S"},
        {"NVIDIA B200", "B200"},               {"NVIDIA GeForce RTX 4090", "RTX-4090"},
        {"NVIDIA RTX A6000", "RTX-A6000"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[32];
        CHECK_EQ_INT(gpu_normalize_product(cases[i][0], out, sizeof out), 0);
        CHECK_STR(out, cases[i][1]);
    }
    char out[32];
    CHECK(gpu_normalize_product("", out, sizeof out) < 0);
    CHECK(gpu_normalize_product("NVIDIA ", out, sizeof out) < 0);
}

static void mknod_in(const char *dir, const char *name, int major, int minor)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    CHECK(mknod(p, S_IFCHR | 0666, makedev(major, minor)) == 0);
}

static void file_in(const char *dir, const char *name)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    CHECK(file_write_atomic(p, "x", 1, 0644) == 0);
}

static bool has_env(const struct gpu_mounts *m, const char *kv)
{
    for (int i = 0; i < m->nenv; i++)
        if (!strcmp(m->env[i], kv))
            return true;
    return false;
}

UNIT_TEST(test_nvml_detect_sample_passthrough)
{
    struct worker_config cfg;
    memset(&cfg, 0, sizeof cfg);
    struct gerr err;
    CHECK_EQ_INT(gpu_detect_nvml(&cfg, &err), 2);
    CHECK_STR(cfg.gpus[0].type, "H100");
    CHECK_STR(cfg.gpus[0].product, "NVIDIA H100 80GB HBM3");
    CHECK_STR(cfg.gpus[1].type, "A100-80GB");
    CHECK(!cfg.gpus[0].simulated && cfg.gpus[0].minor == 3 && cfg.gpus[1].minor == 5);
    CHECK_EQ_INT(cfg.gpus[0].memory_mib, 80 * 1024);
    uint32_t util = 0;
    uint64_t used = 0;
    CHECK_EQ_INT(gpu_sample(&cfg.gpus[1], &util, &used), 0);
    CHECK(util == 43 && used == 2ull << 30);

    char dev[128], lib[128];
    snprintf(dev, sizeof dev, "%s/dev", g_dir);
    snprintf(lib, sizeof lib, "%s/lib", g_dir);
    CHECK(mkdir(dev, 0755) == 0 && mkdir(lib, 0755) == 0);
    cfg.gpu_dev_dir = dev;
    cfg.gpu_driver_dir = lib;
    int idx[] = {1};
    struct gpu_mounts *m = malloc(sizeof *m);
    CHECK(m);
    /* No nodes yet: a clear error naming the node, minor number 5 (not index 1). */
    CHECK(gpu_passthrough(&cfg, idx, 1, m, &err) == -ENODEV);
    CHECK(strstr(err.msg, "/dev/nvidia5 is missing") && strstr(err.msg, "A100-80GB"));
    mknod_in(dev, "nvidia5", 195, 5);
    mknod_in(dev, "nvidiactl", 195, 255);
    CHECK(gpu_passthrough(&cfg, idx, 1, m, &err) == -ENODEV);
    CHECK(strstr(err.msg, "nvidia-uvm is missing"));
    mknod_in(dev, "nvidia-uvm", 235, 0);
    CHECK(gpu_passthrough(&cfg, idx, 1, m, &err) == -ENOENT);
    CHECK(strstr(err.msg, "libcuda.so.1 not found"));
    file_in(lib, "libcuda.so.1");
    file_in(lib, "libnvidia-ml.so.1");
    file_in(lib, "libcudart.so.12"); /* the CUDA runtime belongs to the image, not the driver */
    CHECK_EQ_INT(gpu_passthrough(&cfg, idx, 1, m, &err), 0);
    CHECK_EQ_INT(m->ndevices, 3);
    CHECK_STR(m->dev_ctr[0], "/dev/nvidia5");
    CHECK_STR(m->dev_ctr[1], "/dev/nvidiactl");
    CHECK_STR(m->dev_ctr[2], "/dev/nvidia-uvm");
    CHECK_EQ_INT(m->nlibs, 2);
    CHECK(has_env(m, "CUDA_VISIBLE_DEVICES=GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"));
    CHECK(has_env(m, "NVIDIA_VISIBLE_DEVICES=GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"));

    /* Declared GPUs are simulated: environment only. */
    struct worker_config dcl;
    memset(&dcl, 0, sizeof dcl);
    CHECK_EQ_INT(worker_parse_gpus("L4:2", &dcl, &err), 0);
    int both[] = {0, 1};
    CHECK_EQ_INT(gpu_passthrough(&dcl, both, 2, m, &err), 0);
    CHECK(m->ndevices == 0 && m->nlibs == 0 && has_env(m, "CUDA_VISIBLE_DEVICES=0,1"));
    CHECK(gpu_sample(&dcl.gpus[0], &util, &used) == -ENODEV);
    free(m);
}

int main(int argc, char **argv)
{
    /* The loader reads LD_LIBRARY_PATH once, at start: re-execute with the fake
     * NVML's directory (next to this binary) on it. */
    if (!getenv("GUST_TEST_GPU_REEXEC")) {
        char self[PATH_MAX], libdir[PATH_MAX + 16];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0)
            return 1;
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        *slash = '\0';
        snprintf(libdir, sizeof libdir, "%s/fake-nvml", self);
        *slash = '/';
        setenv("LD_LIBRARY_PATH", libdir, 1);
        setenv("GUST_TEST_GPU_REEXEC", "1", 1);
        execv(self, argv);
        return 1;
    }
    (void)argc;
    snprintf(g_dir, sizeof g_dir, "/tmp/gust-test-gpu-XXXXXX");
    if (!mkdtemp(g_dir))
        return 1;
    UNIT_RUN(test_normalize_product);
    UNIT_RUN(test_nvml_detect_sample_passthrough);
    rm_rf(g_dir);
    UNIT_MAIN_END();
}
