/* Sandbox tests: real containers running a busybox rootfs. They need root, mount
 * and namespace rights and a memory/cpu/pids cgroup hierarchy; where those are
 * missing the tests fail rather than skip. All cgroups live under a random
 * "gust-test-*" parent and all files under a mktemp dir, both removed at the end. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>

#include "base/cleanup.h"
#include "base/error.h"
#include "base/util.h"
#include "image/image.h"
#include "runtime/cgroup.h"
#include "runtime/sandbox.h"
#include "runtime/sysfilter.h"
#include "runtime/taskcheck.h"
#include "runtime/userns.h"
#include "unit.h"

static bool g_ready;
static char g_base[64];
static char g_image[128], g_state[128], g_out[128], g_ro[128];
static char g_parent[64];
static int g_busybox_fd = -1;
static char *g_env[] = {(char *)"PATH=/bin:/usr/bin", NULL};

static void path_in(char *out, size_t cap, const char *dir, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

/* Writes a shell script into the shared /out dir; returns its container path. */
static const char *script(const char *name, const char *body)
{
    static char cpath[128];
    char host[256];
    path_in(host, sizeof host, g_out, name);
    if (file_write_atomic(host, body, strlen(body), 0755) < 0)
        return NULL;
    snprintf(cpath, sizeof cpath, "/out/%s", name);
    return cpath;
}

/* Contents of g_out/name with trailing newlines cut, or "" if missing. */
static const char *out_file(const char *name)
{
    static char text[8192];
    char path[256];
    path_in(path, sizeof path, g_out, name);
    char *data = NULL;
    size_t len = 0;
    text[0] = '\0';
    if (file_read_all(path, sizeof text - 1, &data, &len) < 0)
        return text;
    while (len > 0 && data[len - 1] == '\n')
        len--;
    memcpy(text, data, len);
    text[len] = '\0';
    free(data);
    return text;
}

static void base_cfg(struct sandbox_config *cfg, const char *id, char *const *argv)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->id = id;
    cfg->rootfs = g_image;
    cfg->state_root = g_state;
    cfg->cgroup_parent = g_parent;
    cfg->init_fd = g_busybox_fd;
    cfg->init_argv = argv;
    cfg->init_envp = g_env;
    cfg->channel_fd = -1;
    cfg->binds[0] = (struct sandbox_bind){.host_path = g_out, .container_path = "/out"};
    cfg->nbinds = 1;
}

/* The base config plus g_ro (holding "hello" = "from-host") bound read-only at /data. */
static bool ro_data_cfg(struct sandbox_config *cfg, const char *id, char *const *argv)
{
    char hello[256];
    path_in(hello, sizeof hello, g_ro, "hello");
    if (file_write_atomic(hello, "from-host", 9, 0644) < 0)
        return false;
    base_cfg(cfg, id, argv);
    cfg->binds[1] = (struct sandbox_bind){.host_path = g_ro, .container_path = "/data", .read_only = true};
    cfg->nbinds = 2;
    return true;
}

/* Creates container id with the base config running argv; the test fails if it cannot. */
static void create_base(struct sandbox *sb, const char *id, char *const *argv)
{
    struct sandbox_config cfg;
    base_cfg(&cfg, id, argv);
    struct gerr err;
    int r = sandbox_create(&cfg, sb, &err);
    if (r != 0)
        fprintf(stderr, "  sandbox_create %s: %s\n", id, err.msg);
    CHECK(r == 0);
}

/* Waits (pidfd) up to timeout_ms for PID 1 to exit and reaps it. */
static bool wait_exit(struct sandbox *sb, int timeout_ms)
{
    struct pollfd p = {.fd = sb->pidfd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) != 1)
        return false;
    struct gerr err;
    return sandbox_reap(sb, &err) == 1;
}

static bool path_missing(const char *p)
{
    struct stat st;
    return stat(p, &st) < 0 && errno == ENOENT;
}

/* Whether the host's mount table has anything at or below dir. */
static bool mounts_under(const char *dir)
{
    char *data = NULL;
    if (file_read_all("/proc/self/mountinfo", 1 << 24, &data, NULL) < 0)
        return true;
    bool found = strstr(data, dir) != NULL;
    free(data);
    return found;
}

static int read_cg(const char *dir, const char *file, char *out, size_t cap)
{
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    char *data = NULL;
    size_t len;
    int r = file_read_all(p, cap - 1, &data, &len);
    if (r < 0)
        return r;
    while (len > 0 && data[len - 1] == '\n')
        len--;
    memcpy(out, data, len);
    out[len] = '\0';
    free(data);
    return 0;
}

UNIT_TEST(test_setup)
{
    CHECK(geteuid() == 0);
    strcpy(g_base, "/tmp/gust-rt-XXXXXX");
    CHECK(mkdtemp(g_base) != NULL);
    path_in(g_image, sizeof g_image, g_base, "img");
    path_in(g_state, sizeof g_state, g_base, "state");
    path_in(g_out, sizeof g_out, g_base, "out");
    path_in(g_ro, sizeof g_ro, g_base, "ro");
    CHECK(mkdir(g_out, 0755) == 0);
    CHECK(mkdir(g_ro, 0755) == 0);
    char rnd[9];
    random_id(rnd, 8);
    snprintf(g_parent, sizeof g_parent, "gust-test-%s", rnd);
    struct gerr err;
    int r = image_build_busybox(g_image, &err);
    if (r < 0)
        fprintf(stderr, "  image: %s\n", err.msg);
    CHECK(r == 0);
    char bb[256];
    path_in(bb, sizeof bb, g_image, "bin/busybox");
    g_busybox_fd = open(bb, O_RDONLY | O_CLOEXEC);
    CHECK(g_busybox_fd >= 0);
    CHECK(cgroup_detect(&err) != NULL);
    CHECK(sandbox_cgroup_version() == 1 || sandbox_cgroup_version() == 2);
    g_ready = true;
}

UNIT_TEST(test_basic_container)
{
    CHECK(g_ready);
    const char *s = script("basic.sh",
                           "echo $$ > /out/pid\n"
                           "hostname > /out/hostname\n"
                           "cat /proc/net/dev > /out/netdev\n"
                           "ip link show lo > /out/lo\n"
                           "echo upper > /etc/written\n"
                           "echo hi > /dev/null && echo ok > /out/devnull\n"
                           "head -c 4 /dev/zero | wc -c > /out/zero\n"
                           "ls /dev > /out/devls\n"
                           "pwd > /out/pwd\n"
                           "cat /proc/self/cgroup > /out/cgroup\n"
                           "df -k /tmp | tail -1 > /out/tmpdf\n"
                           "echo chan-hello >&3\n"
                           "exit 7\n");
    CHECK(s);
    char *argv[] = {(char *)"sh", (char *)s, NULL};
    struct sandbox_config cfg;
    base_cfg(&cfg, "basic-1", argv);
    cfg.hostname = "box-one";
    cfg.workdir = "/tmp";
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    AUTO_FD int mine = sv[0];
    AUTO_FD int theirs = sv[1];
    cfg.channel_fd = theirs;
    struct sandbox sb;
    struct gerr err;
    int r = sandbox_create(&cfg, &sb, &err);
    if (r < 0)
        fprintf(stderr, "  create: %s\n", err.msg);
    CHECK(r == 0);
    CHECK(sb.pid > 0 && sb.pidfd >= 0);
    CHECK(sb.ready_ns >= sb.created_ns);
    close(TAKE_FD(theirs));
    CHECK(wait_exit(&sb, 10000));
    CHECK(WIFEXITED(sb.exit_status));
    CHECK_EQ_INT(WEXITSTATUS(sb.exit_status), 7);

    char msg[64] = {0};
    struct pollfd p = {.fd = mine, .events = POLLIN};
    CHECK(poll(&p, 1, 1000) == 1);
    CHECK(recv(mine, msg, sizeof msg - 1, 0) > 0);
    CHECK_STR(msg, "chan-hello\n");

    CHECK_STR(out_file("pid"), "1");
    CHECK_STR(out_file("hostname"), "box-one");
    CHECK_STR(out_file("pwd"), "/tmp");
    CHECK_STR(out_file("devnull"), "ok");
    CHECK_STR(out_file("zero"), "4");
    /* /tmp is a tmpfs capped at disk_mib (default 512 MiB). */
    CHECK(strstr(out_file("tmpdf"), " 524288 ") != NULL);
    const char *netdev = out_file("netdev");
    CHECK(strstr(netdev, "lo:") != NULL);
    int ifaces = 0;
    for (const char *q = netdev; (q = strchr(q, ':')); q++)
        ifaces++;
    /* The header lines have a '|' layout and no ':'; each interface line has one. */
    CHECK_EQ_INT(ifaces, 1);
    CHECK(strstr(out_file("lo"), ",UP") != NULL);
    const char *devls = out_file("devls");
    CHECK(strstr(devls, "null") && strstr(devls, "urandom") && strstr(devls, "pts") &&
          strstr(devls, "shm") && strstr(devls, "ptmx"));
    /* Inside its cgroup namespace the container sees itself at the root. */
    CHECK(strstr(out_file("cgroup"), g_parent) == NULL);
    char written[256];
    path_in(written, sizeof written, g_image, "etc/written");
    CHECK(path_missing(written));

    uint64_t mem = 0, cpu = 0;
    CHECK(sandbox_usage(&sb, &mem, &cpu) == 0);
    CHECK(cpu > 0);
    CHECK(sandbox_destroy(&sb, &err) == 0);
}

/* PID 1 starts with exactly fds 0-2 (/dev/null) and 3 (the channel). */
UNIT_TEST(test_init_fds)
{
    CHECK(g_ready);
    /* PID 1 is sleep; its fds are read from the host, so no shell of the container
     * (which may hold pipes or saved fds at any moment) is in the picture. */
    char *argv[] = {(char *)"sleep", (char *)"30", NULL};
    struct sandbox_config cfg;
    base_cfg(&cfg, "fds-1", argv);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    AUTO_FD int mine = sv[0];
    AUTO_FD int theirs = sv[1];
    cfg.channel_fd = theirs;
    struct sandbox sb;
    struct gerr err;
    CHECK(sandbox_create(&cfg, &sb, &err) == 0);
    close(TAKE_FD(theirs));
    char dir[64], fd0_path[80] = "", link[PATH_MAX] = "";
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)sb.pid);
    DIR *d = opendir(dir);
    int nfds = 0;
    bool bad = false;
    for (struct dirent *de; d && (de = readdir(d));) {
        if (de->d_name[0] == '.')
            continue;
        int fd = atoi(de->d_name);
        bad = bad || fd > 3;
        nfds++;
    }
    if (d)
        closedir(d);
    snprintf(fd0_path, sizeof fd0_path, "%s/0", dir);
    ssize_t ln = readlink(fd0_path, link, sizeof link - 1);
    link[ln > 0 ? ln : 0] = '\0';
    CHECK(sandbox_signal(&sb, SIGKILL) == 0);
    CHECK(wait_exit(&sb, 10000));
    CHECK(sandbox_destroy(&sb, &err) == 0);
    /* With the container gone nobody holds the other end any more. */
    char c;
    CHECK(recv(mine, &c, 1, MSG_DONTWAIT) == 0);
    CHECK(!bad && nfds == 4);
    CHECK_STR(link, "/dev/null");
}

UNIT_TEST(test_destroy_leaves_nothing)
{
    CHECK(g_ready);
    char *argv[] = {(char *)"sleep", (char *)"100", NULL};
    struct sandbox sb;
    create_base(&sb, "destroy-1", argv);
    struct gerr err;
    char cg[4][512];
    strcpy(cg[0], sb.cgroup_memory);
    strcpy(cg[1], sb.cgroup_cpu);
    strcpy(cg[2], sb.cgroup_cpuacct);
    strcpy(cg[3], sb.cgroup_pids);
    char state[512];
    strcpy(state, sb.state_dir);
    for (int i = 0; i < 4; i++)
        CHECK(!path_missing(cg[i]));
    CHECK(!path_missing(state));
    CHECK_EQ_INT(sandbox_reap(&sb, &err), 0);
    CHECK(sandbox_signal(&sb, SIGKILL) == 0);
    CHECK(wait_exit(&sb, 5000));
    CHECK(WIFSIGNALED(sb.exit_status) && WTERMSIG(sb.exit_status) == SIGKILL);
    CHECK(sandbox_destroy(&sb, &err) == 0);
    for (int i = 0; i < 4; i++)
        CHECK(path_missing(cg[i]));
    CHECK(path_missing(state));
    CHECK(!mounts_under(g_state));
    CHECK(sb.pidfd == -1);
    CHECK(sandbox_destroy(&sb, &err) == 0);
}

UNIT_TEST(test_destroy_running_container)
{
    CHECK(g_ready);
    char *argv[] = {(char *)"sh", (char *)"-c", (char *)"sleep 100 & sleep 100 & sleep 100", NULL};
    struct sandbox sb;
    create_base(&sb, "destroy-2", argv);
    struct gerr err;
    char pids_dir[512];
    strcpy(pids_dir, sb.cgroup_pids);
    CHECK(sandbox_destroy(&sb, &err) == 0);
    CHECK(sb.reaped);
    CHECK(path_missing(pids_dir));
}

UNIT_TEST(test_readonly_bind)
{
    CHECK(g_ready);
    const char *s = script("ro.sh",
                           "echo x > /data/f 2>/dev/null; echo $? > /out/ro_rc\n"
                           "cat /data/hello > /out/ro_read\n"
                           "echo y > /out/rw_ok\n");
    char *argv[] = {(char *)"sh", (char *)s, NULL};
    struct sandbox_config cfg;
    CHECK(ro_data_cfg(&cfg, "ro-1", argv));
    struct sandbox sb;
    struct gerr err;
    int r = sandbox_create(&cfg, &sb, &err);
    if (r < 0)
        fprintf(stderr, "  create: %s\n", err.msg);
    CHECK(r == 0);
    CHECK(wait_exit(&sb, 10000));
    CHECK(sandbox_destroy(&sb, &err) == 0);
    CHECK(strcmp(out_file("ro_rc"), "0") != 0);
    CHECK_STR(out_file("ro_read"), "from-host");
    CHECK_STR(out_file("rw_ok"), "y");
    char f[256];
    path_in(f, sizeof f, g_ro, "f");
    CHECK(path_missing(f));
}

/* The CPU files of sb's cgroup: v2 cpu.weight and cpu.max, or v1 cpu.shares and
 * cpu.cfs_quota_us, whichever the host has. */
static void check_cpu_cgroup(const struct sandbox *sb, const char *weight, const char *max, const char *shares,
                             const char *quota)
{
    char v[64];
    CHECK(read_cg(sb->cgroup_cpu, sb->cgroup_v2 ? "cpu.weight" : "cpu.shares", v, sizeof v) == 0);
    CHECK_STR(v, sb->cgroup_v2 ? weight : shares);
    CHECK(read_cg(sb->cgroup_cpu, sb->cgroup_v2 ? "cpu.max" : "cpu.cfs_quota_us", v, sizeof v) == 0);
    CHECK_STR(v, sb->cgroup_v2 ? max : quota);
}

UNIT_TEST(test_memory_limit_oom)
{
    CHECK(g_ready);
    char *argv[] = {(char *)"sh", (char *)"-c",
                    (char *)"a=0123456789abcdef; while true; do a=$a$a; done", NULL};
    struct sandbox_config cfg;
    base_cfg(&cfg, "oom-1", argv);
    cfg.memory_mib = 32;
    struct sandbox sb;
    struct gerr err;
    CHECK(sandbox_create(&cfg, &sb, &err) == 0);
    char limit[64];
    if (sb.cgroup_v2)
        CHECK(read_cg(sb.cgroup_memory, "memory.max", limit, sizeof limit) == 0);
    else
        CHECK(read_cg(sb.cgroup_memory, "memory.limit_in_bytes", limit, sizeof limit) == 0);
    CHECK_STR(limit, "33554432");
    CHECK(wait_exit(&sb, 20000));
    CHECK(WIFSIGNALED(sb.exit_status) && WTERMSIG(sb.exit_status) == SIGKILL);
    uint64_t kills = 0;
    CHECK(sandbox_oom_kills(&sb, &kills) == 0);
    CHECK(kills > 0);
    CHECK(sandbox_destroy(&sb, &err) == 0);
}

UNIT_TEST(test_pids_and_cpu_limits)
{
    CHECK(g_ready);
    const char *s = script("pids.sh",
                           "i=0\n"
                           "while [ $i -lt 20 ]; do sleep 30 & i=$((i+1)); done 2> /out/pids_err\n"
                           "echo done > /out/pids_done\n");
    char *argv[] = {(char *)"sh", (char *)s, NULL};
    struct sandbox_config cfg;
    base_cfg(&cfg, "pids-1", argv);
    cfg.pids_max = 8;
    cfg.cpu_millicores = 250;
    cfg.cpu_limit_millicores = 500;
    struct sandbox sb;
    struct gerr err;
    CHECK(sandbox_create(&cfg, &sb, &err) == 0);
    char v[64];
    CHECK(read_cg(sb.cgroup_pids, "pids.max", v, sizeof v) == 0);
    CHECK_STR(v, "8");
    /* The request is the weight, the limit the quota. */
    check_cpu_cgroup(&sb, "25", "50000 100000", "256", "50000");
    if (!sb.cgroup_v2) {
        CHECK(read_cg(sb.cgroup_cpu, "cpu.cfs_period_us", v, sizeof v) == 0);
        CHECK_STR(v, "100000");
    }
    CHECK(wait_exit(&sb, 10000));
    CHECK(sandbox_destroy(&sb, &err) == 0);
    /* The shell gives up at the first failed fork ("can't fork: Resource temporarily
     * unavailable"), well before its 20 background sleeps. */
    CHECK(strstr(out_file("pids_err"), "can't fork") != NULL);
    CHECK(strcmp(out_file("pids_done"), "done") != 0);
}

/* A request without a limit sets the weight and leaves the quota off, so the
 * container may use idle CPU. */
UNIT_TEST(test_cpu_request_without_limit)
{
    CHECK(g_ready);
    char *argv[] = {(char *)"sh", (char *)"-c", (char *)"exit 0", NULL};
    struct sandbox_config cfg;
    base_cfg(&cfg, "cpureq-1", argv);
    cfg.cpu_millicores = 25;
    struct sandbox sb;
    struct gerr err;
    CHECK(sandbox_create(&cfg, &sb, &err) == 0);
    check_cpu_cgroup(&sb, "3", "max 100000", "25", "-1");
    CHECK(wait_exit(&sb, 10000));
    CHECK(sandbox_destroy(&sb, &err) == 0);
}

/* The millicore mappings of runtime/cgroup.h, at the spec's bounds and the kernel's. */
UNIT_TEST(test_cgroup_cpu_mapping)
{
    static const struct {
        uint32_t millicores;
        uint64_t shares, weight, quota_us;
    } cases[] = {
        {1000, 1024, 100, 100000}, {125, 128, 13, 12500}, {100, 102, 10, 10000}, {300, 307, 30, 30000},
        {25, 25, 3, 2500},         {10, 10, 1, 1000},     {4, 4, 1, 1000},       {1, 2, 1, 1000},
        {64000, 65536, 6400, 6400000}, {UINT32_MAX, 262144, 10000, (uint64_t)UINT32_MAX * 100},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        CHECK_EQ_INT(cgroup_cpu_shares(cases[i].millicores), cases[i].shares);
        CHECK_EQ_INT(cgroup_cpu_weight(cases[i].millicores), cases[i].weight);
        CHECK_EQ_INT(cgroup_cpu_quota_us(cases[i].millicores), cases[i].quota_us);
    }
}

UNIT_TEST(test_setup_errors)
{
    CHECK(g_ready);
    char *argv[] = {(char *)"true", NULL};
    struct sandbox_config cfg;
    struct sandbox sb;
    struct gerr err;

    base_cfg(&cfg, "err-1", argv);
    cfg.rootfs = "/nonexistent/gust-rootfs";
    CHECK(sandbox_create(&cfg, &sb, &err) == -ENOENT);
    CHECK(strstr(err.msg, "/nonexistent/gust-rootfs") != NULL);

    base_cfg(&cfg, "Bad_Id", argv);
    CHECK(sandbox_create(&cfg, &sb, &err) == -EINVAL);
    CHECK(strstr(err.msg, "Bad_Id") != NULL);

    /* Failures inside the child come back with the child's message. */
    base_cfg(&cfg, "err-2", argv);
    cfg.binds[1] = (struct sandbox_bind){.host_path = "/nonexistent/gust-bind", .container_path = "/x"};
    cfg.nbinds = 2;
    CHECK(sandbox_create(&cfg, &sb, &err) == -ENOENT);
    CHECK(strstr(err.msg, "bind /nonexistent/gust-bind") != NULL);
    CHECK(strstr(err.msg, "No such file or directory") != NULL);

    base_cfg(&cfg, "err-3", argv);
    cfg.workdir = "/no/such/dir";
    CHECK(sandbox_create(&cfg, &sb, &err) == -ENOENT);
    CHECK(strstr(err.msg, "chdir /no/such/dir") != NULL);

    /* Nothing is left behind by failed creates. */
    struct cgroup_set set;
    CHECK(cgroup_set_paths(&set, g_parent, "err-2", &err) == 0);
    for (int c = 0; c < CGROUP_NCTRL; c++)
        CHECK(path_missing(set.dir[c]));
    char state[256];
    path_in(state, sizeof state, g_state, "err-2");
    CHECK(path_missing(state));
    path_in(state, sizeof state, g_state, "err-3");
    CHECK(path_missing(state));
    CHECK(!mounts_under(g_state));
}

UNIT_TEST(test_cleanup_stale)
{
    CHECK(g_ready);
    char *argv[] = {(char *)"sh", (char *)"-c", (char *)"sleep 1000 & sleep 1000", NULL};
    struct sandbox sb;
    create_base(&sb, "stale-1", argv);
    struct gerr err;
    char mem[512];
    strcpy(mem, sb.cgroup_memory);
    /* A leftover host-side mount under the state root, as after a crash. */
    char left[256];
    path_in(left, sizeof left, g_state, "leftover");
    CHECK(mkdir(left, 0755) == 0);
    CHECK(mount("tmpfs", left, "tmpfs", 0, "size=1m") == 0);
    CHECK(mounts_under(g_state));

    int r = sandbox_cleanup_stale(g_parent, g_state, &err);
    if (r < 0)
        fprintf(stderr, "  cleanup: %s\n", err.msg);
    CHECK(r == 0);
    CHECK(wait_exit(&sb, 5000));
    CHECK(WIFSIGNALED(sb.exit_status));
    CHECK(path_missing(mem));
    CHECK(path_missing(left));
    CHECK(path_missing(sb.state_dir));
    CHECK(!mounts_under(g_state));
    CHECK(sandbox_destroy(&sb, &err) == 0);
}

/* The host-/usr image: a skeleton rootfs plus the host's /usr bound read-only; a
 * dynamically linked host python3 must run inside (it needs the merged-usr links). */
UNIT_TEST(test_host_python_image)
{
    CHECK(g_ready);
    CHECK(access("/usr/bin/python3", X_OK) == 0);
    char py[256];
    path_in(py, sizeof py, g_base, "py-img");
    struct gerr err;
    CHECK(image_build_host_python(py, &err) == 0);
    char *argv[] = {(char *)"sh", (char *)"-c",
                    (char *)"/usr/bin/python3 -c 'import os; print(os.getpid(), 6*7)' > /out/py 2>&1;"
                            "touch /usr/gust-x 2>/dev/null; echo $? > /out/usr_rc",
                    NULL};
    struct sandbox_config cfg;
    base_cfg(&cfg, "py-1", argv);
    cfg.rootfs = py;
    cfg.binds[1] = (struct sandbox_bind){.host_path = "/usr", .container_path = "/usr", .read_only = true};
    cfg.nbinds = 2;
    struct sandbox sb;
    int r = sandbox_create(&cfg, &sb, &err);
    if (r < 0)
        fprintf(stderr, "  create: %s\n", err.msg);
    CHECK(r == 0);
    CHECK(wait_exit(&sb, 20000));
    CHECK(sandbox_destroy(&sb, &err) == 0);
    const char *out = out_file("py");
    if (!strstr(out, " 42"))
        fprintf(stderr, "  python said: %s\n", out);
    CHECK(strstr(out, " 42") != NULL);
    CHECK(strcmp(out_file("usr_rc"), "0") != 0);
    CHECK(path_missing("/usr/gust-x"));
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

#define CYCLES 20

UNIT_TEST(test_create_exec_timing)
{
    CHECK(g_ready);
    char *argv[] = {(char *)"true", NULL};
    uint64_t create[CYCLES], to_exec[CYCLES], cycle[CYCLES], destroy[CYCLES];
    for (int i = 0; i < CYCLES; i++) {
        char id[32];
        snprintf(id, sizeof id, "bench-%d", i);
        struct sandbox_config cfg;
        base_cfg(&cfg, id, argv);
        cfg.nbinds = 0;
        cfg.memory_mib = 256;
        cfg.cpu_millicores = 1000;
        struct sandbox sb;
        struct gerr err;
        uint64_t t0 = mono_ns();
        int r = sandbox_create(&cfg, &sb, &err);
        if (r < 0)
            fprintf(stderr, "  create: %s\n", err.msg);
        CHECK(r == 0);
        uint64_t t1 = mono_ns();
        CHECK(wait_exit(&sb, 5000));
        uint64_t t2 = mono_ns();
        CHECK(sandbox_destroy(&sb, &err) == 0);
        uint64_t t3 = mono_ns();
        CHECK(WIFEXITED(sb.exit_status) && WEXITSTATUS(sb.exit_status) == 0);
        create[i] = t1 - t0;
        to_exec[i] = sb.ready_ns - sb.created_ns;
        cycle[i] = t3 - t0;
        destroy[i] = t3 - t2;
    }
    qsort(create, CYCLES, sizeof create[0], cmp_u64);
    qsort(to_exec, CYCLES, sizeof to_exec[0], cmp_u64);
    qsort(cycle, CYCLES, sizeof cycle[0], cmp_u64);
    qsort(destroy, CYCLES, sizeof destroy[0], cmp_u64);
    fprintf(stderr,
            "  timing over %d runs (median / max, ms): sandbox_create %.2f / %.2f, "
            "clone->exec %.2f / %.2f, destroy %.2f / %.2f, full cycle %.2f / %.2f\n",
            CYCLES, create[CYCLES / 2] / 1e6, create[CYCLES - 1] / 1e6, to_exec[CYCLES / 2] / 1e6,
            to_exec[CYCLES - 1] / 1e6, destroy[CYCLES / 2] / 1e6, destroy[CYCLES - 1] / 1e6,
            cycle[CYCLES / 2] / 1e6, cycle[CYCLES - 1] / 1e6);

    /* For comparison: what creating a network namespace alone costs here. */
    uint64_t ns[CYCLES];
    for (int i = 0; i < CYCLES; i++) {
        int p[2];
        CHECK(pipe2(p, O_CLOEXEC) == 0);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            uint64_t a = mono_ns();
            int ok = unshare(CLONE_NEWNET) == 0;
            uint64_t d = ok ? mono_ns() - a : 0;
            (void)!write(p[1], &d, sizeof d);
            _exit(0);
        }
        close(p[1]);
        uint64_t d = 0;
        CHECK(read(p[0], &d, sizeof d) == (ssize_t)sizeof d);
        close(p[0]);
        waitpid(pid, NULL, 0);
        CHECK(d > 0);
        ns[i] = d;
    }
    qsort(ns, CYCLES, sizeof ns[0], cmp_u64);
    fprintf(stderr, "  unshare(CLONE_NEWNET) alone: median %.3f ms, max %.3f ms\n",
            ns[CYCLES / 2] / 1e6, ns[CYCLES - 1] / 1e6);
}

/* A hardened container: user namespace (root = host uid 3000000), idmapped image and
 * read-only bind, seccomp, capabilities. */
UNIT_TEST(test_userns_seccomp_container)
{
    CHECK(g_ready);
    int ufd = -1;
    struct gerr err;
    CHECK_EQ_INT(userns_create(3000000, 65536, &ufd, &err), 0);
    struct sock_fprog prog;
    CHECK_EQ_INT(sysfilter_build(NULL, 0, &prog, &err), 0);
    CHECK(chmod(g_out, 0777) == 0);
    const char *s = script("uns.sh",
                           "cat /proc/self/uid_map > /out/uns_map\n"
                           "stat -c %u:%g /bin/busybox > /out/uns_owner\n"
                           "stat -c %u /data/hello > /out/uns_ro_owner\n"
                           "grep -E '^(CapBnd|NoNewPrivs|Seccomp):' /proc/self/status | tr -d '\\t' > /out/uns_status\n"
                           "mount -t tmpfs none /tmp 2>/dev/null; echo $? > /out/uns_mount\n"
                           "echo hi > /out/uns_written\n");
    char *argv[] = {(char *)"sh", (char *)s, NULL};
    struct sandbox_config cfg;
    CHECK(ro_data_cfg(&cfg, "uns-1", argv));
    struct sandbox_userns uns = {.fd = ufd, .host_uid = 3000000, .host_gid = 3000000};
    cfg.userns = &uns;
    cfg.seccomp = &prog;
    struct sandbox sb;
    int r = sandbox_create(&cfg, &sb, &err);
    if (r < 0)
        fprintf(stderr, "  create: %s\n", err.msg);
    sysfilter_free(&prog);
    close(ufd);
    CHECK(r == 0);
    CHECK(sb.timing.mounts_ns > 0 && sb.timing.clone_ns > 0 && sb.timing.security_ns > 0);
    CHECK(wait_exit(&sb, 10000));
    CHECK(sandbox_destroy(&sb, &err) == 0);
    char map[128];
    snprintf(map, sizeof map, "%s", out_file("uns_map"));
    unsigned a = 1, b = 0, n = 0;
    CHECK(sscanf(map, "%u %u %u", &a, &b, &n) == 3);
    CHECK(a == 0 && b == 3000000 && n == 65536);
    CHECK_STR(out_file("uns_owner"), "0:0");      /* idmapped image */
    CHECK_STR(out_file("uns_ro_owner"), "0");     /* idmapped read-only bind */
    CHECK_STR(out_file("uns_status"), "CapBnd:00000000000005fb\nNoNewPrivs:1\nSeccomp:2");
    CHECK(strcmp(out_file("uns_mount"), "0") != 0);
    /* Written through the plain (writable) bind: owned by the host uid of container root. */
    char w[256];
    path_in(w, sizeof w, g_out, "uns_written");
    struct stat st;
    CHECK(stat(w, &st) == 0 && st.st_uid == 3000000);
    CHECK(chmod(g_out, 0755) == 0);
}

/* True once pid is gone or a zombie. */
static bool pid_dead(pid_t pid)
{
    char path[64], stat[256] = "";
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return true;
    bool dead = fgets(stat, sizeof stat, f) && strstr(stat, ") Z ");
    fclose(f);
    return dead;
}

/* The uid switch into the user namespace clears the parent-death signal; the sandbox
 * arms it again, so PID 1 (here sleep, with no gust-init and no channel to notice
 * anything) dies with the process that created it. */
UNIT_TEST(test_userns_container_dies_with_creator)
{
    CHECK(g_ready);
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    pid_t helper = fork();
    CHECK(helper >= 0);
    if (helper == 0) {
        close(pfd[0]);
        int ufd = -1;
        struct gerr err;
        if (userns_create(3000000, 65536, &ufd, &err) < 0)
            _exit(1);
        char *argv[] = {(char *)"sleep", (char *)"100", NULL};
        struct sandbox_config cfg;
        base_cfg(&cfg, "orphan-1", argv);
        struct sandbox_userns uns = {.fd = ufd, .host_uid = 3000000, .host_gid = 3000000};
        cfg.userns = &uns;
        struct sandbox sb;
        if (sandbox_create(&cfg, &sb, &err) < 0)
            _exit(2);
        pid_t pid = sb.pid;
        if (write(pfd[1], &pid, sizeof pid) != (ssize_t)sizeof pid)
            _exit(3);
        _exit(0); /* dies without cleaning anything up, as a crashed gustd would */
    }
    close(pfd[1]);
    pid_t ctr = 0;
    ssize_t n = read(pfd[0], &ctr, sizeof ctr);
    close(pfd[0]);
    int status;
    waitpid(helper, &status, 0);
    CHECK(n == (ssize_t)sizeof ctr && ctr > 0);
    bool dead = false;
    for (int i = 0; i < 200 && !dead; i++) {
        dead = pid_dead(ctr);
        if (!dead)
            usleep(10000);
    }
    if (!dead)
        kill(ctr, SIGKILL);
    struct gerr err;
    char dir[256];
    snprintf(dir, sizeof dir, "%s/orphan-1", g_state);
    rm_rf(dir);
    CHECK(dead);
    (void)err;
}

/* The v2 device program, attached to a cgroup of the unified hierarchy (present on
 * hybrid hosts too): /dev/null is allowed, /dev/zero is not. */
UNIT_TEST(test_device_filter_v2)
{
    const char *root = access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0 ? "/sys/fs/cgroup"
                                                                               : "/sys/fs/cgroup/unified";
    char dir[256];
    snprintf(dir, sizeof dir, "%s/%s-dev", root, g_parent);
    CHECK(mkdir(dir, 0755) == 0);
    struct cgroup_device allow[] = {{'c', 1, 3}, {'c', 136, -1}};
    struct gerr err;
    int r = cgroup_attach_device_filter(dir, allow, 2, &err);
    if (r < 0)
        fprintf(stderr, "  attach: %s\n", err.msg);
    pid_t pid = r == 0 ? fork() : -1;
    if (pid == 0) {
        char procs[300], me[32];
        snprintf(procs, sizeof procs, "%s/cgroup.procs", dir);
        snprintf(me, sizeof me, "%d", (int)getpid());
        int fd = open(procs, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, me, strlen(me)) < 0)
            _exit(10);
        close(fd);
        int ok = open("/dev/null", O_RDWR);
        int denied = open("/dev/zero", O_RDONLY);
        _exit(ok >= 0 && denied < 0 && errno == EPERM ? 0 : 11);
    }
    int status = -1;
    if (pid > 0)
        waitpid(pid, &status, 0);
    rmdir(dir);
    CHECK(r == 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

UNIT_TEST(test_teardown)
{
    CHECK(g_ready);
    struct gerr err;
    CHECK(sandbox_cleanup_stale(g_parent, g_state, &err) == 0);
    struct cgroup_set set;
    CHECK(cgroup_set_paths(&set, g_parent, NULL, &err) == 0);
    for (int c = 0; c < CGROUP_NCTRL; c++) {
        CHECK(cgroup_remove_tree(set.dir[c], set.v2, true, &err) == 0);
        CHECK(path_missing(set.dir[c]));
    }
    if (g_busybox_fd >= 0)
        close(g_busybox_fd);
    CHECK(!mounts_under(g_base));
    CHECK(rm_rf(g_base) == 0);
}

/* The cgroup2 mount's super options, as /proc/self/mountinfo shows them ("" if none). */
static void cgroup2_super_opts(char *out, size_t cap)
{
    out[0] = '\0';
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char line[1024];
    while (f && fgets(line, sizeof line, f)) {
        char *sep = strstr(line, " - cgroup2 ");
        if (!sep)
            continue;
        char src[64], opts[512];
        if (sscanf(sep + 11, "%63s %511s", src, opts) == 2)
            snprintf(out, cap, "%s", opts);
        break;
    }
    if (f)
        fclose(f);
}

/* favordynmods goes on (or was already on) and the exact previous options come back. */
UNIT_TEST(test_favordynmods_roundtrip)
{
    char before[512], during[512], after[512];
    cgroup2_super_opts(before, sizeof before);
    CHECK(before[0]); /* this host has a cgroup2 mount (unified, hybrid mode) */
    struct cgroup_tuning t;
    struct gerr err;
    CHECK(cgroup_favor_dynmods(&t, &err) == 0);
    cgroup2_super_opts(during, sizeof during);
    CHECK(strstr(during, "favordynmods") != NULL);
    /* Off before: we turned it on and, the last user, turn it off again. On before (a
     * gustd runs on this host): it stays on, since that daemon still holds the lock. */
    if (!strstr(before, "favordynmods"))
        CHECK(t.changed);
    CHECK(cgroup_tuning_restore(&t, &err) == 0);
    cgroup2_super_opts(after, sizeof after);
    CHECK_STR(after, before);
}

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

/* The errno of each argument-filtered call (0: allowed) in a child under the profile. */
enum { SF_NCALLS = 19 };
/* A system call this kernel may have and libseccomp 2.5 cannot name: mseal (462 on
 * x86-64 and aarch64). */
#define SF_NEW_NR 462
static void sysfilter_errnos(bool template, int out[SF_NCALLS])
{
    struct sock_fprog prog;
    struct gerr err;
    CHECK_EQ_INT((template ? sysfilter_build_template : sysfilter_build)(NULL, 0, &prog, &err), 0);
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        int e[SF_NCALLS];
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
            _exit(1);
        int sv[2];
        /* 0 when the call succeeded, else its errno. */
#define SF_OK(rc) ((rc) < 0 ? errno : 0)
        e[0] = SF_OK(socket(AF_VSOCK, SOCK_STREAM, 0));
        /* The kernel reads the family as an int: garbage above it must not matter. */
        e[1] = SF_OK(syscall(SYS_socket, (1UL << 32) | AF_VSOCK, SOCK_STREAM, 0));
        e[2] = SF_OK(socketpair(AF_VSOCK, SOCK_STREAM, 0, sv));
        e[3] = SF_OK(socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER));
        e[4] = SF_OK(socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE));
        e[5] = SF_OK(unshare(CLONE_NEWUSER));
        e[6] = SF_OK(unshare(CLONE_NEWNS | CLONE_NEWUSER));
        e[7] = SF_OK(unshare(CLONE_NEWTIME));
        int nsfd = open("/proc/self/ns/net", O_RDONLY);
        e[8] = SF_OK(setns(nsfd, 0));
        /* What a template's fork machinery uses. */
        e[9] = SF_OK(unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP |
                             CLONE_NEWPID));
        e[10] = SF_OK(setns(nsfd, CLONE_NEWNET));
        /* Off the allow-list, allowed before it: taking another process's fd. */
        int self = (int)syscall(SYS_pidfd_open, getpid(), 0);
        e[11] = SF_OK(syscall(SYS_pidfd_getfd, self, 0, 0));
        /* Unknown to the filter: ENOSYS, as from a kernel without it (below 512), else
         * EPERM. */
        e[12] = SF_OK(syscall(1000, 0, 0, 0));
        e[13] = SF_OK(syscall(SF_NEW_NR, 0, 0, 0));
        /* Ordinary sockets, also with garbage above the int the kernel reads. */
        e[14] = SF_OK(socket(AF_INET, SOCK_DGRAM, 0));
        e[15] = SF_OK(syscall(SYS_socket, (1UL << 32) | AF_INET6, SOCK_DGRAM, 0));
        e[16] = SF_OK(syscall(SYS_socket, AF_NETLINK, SOCK_RAW, (1UL << 32) | NETLINK_NETFILTER));
        /* personality: queries and plain Linux, not ADDR_NO_RANDOMIZE. */
        e[17] = SF_OK(syscall(SYS_personality, 0xffffffffUL));
        e[18] = SF_OK(syscall(SYS_personality, 0x0040000UL));
#undef SF_OK
        _exit(write(p[1], e, sizeof e) == (ssize_t)sizeof e ? 0 : 1);
    }
    sysfilter_free(&prog);
    close(p[1]);
    CHECK(pid > 0);
    ssize_t n = read(p[0], out, SF_NCALLS * sizeof(int));
    close(p[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(n == (ssize_t)(SF_NCALLS * sizeof(int)) && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Both profiles are allow-lists: a known call off the list is EPERM, an unknown one
 * ENOSYS; vsock and netfilter netlink sockets are denied in both; the template's
 * unshare and setns take exactly the namespace kinds its fork machinery uses. */
UNIT_TEST(test_sysfilter_arguments)
{
    int c[SF_NCALLS], t[SF_NCALLS];
    sysfilter_errnos(false, c);
    sysfilter_errnos(true, t);
    for (int i = 0; i <= 3; i++) {
        CHECK_EQ_INT(c[i], EPERM);
        CHECK_EQ_INT(t[i], EPERM);
    }
    CHECK_EQ_INT(c[4], 0);
    CHECK_EQ_INT(t[4], 0);
    for (int i = 5; i <= 10; i++) {
        CHECK_EQ_INT(c[i], EPERM); /* unshare and setns denied outright */
        CHECK_EQ_INT(t[i], i <= 8 ? EPERM : 0);
    }
    char *known = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, SF_NEW_NR);
    for (int k = 0; k < 2; k++) {
        const int *e = k ? t : c;
        CHECK_EQ_INT(e[11], EPERM);
        CHECK_EQ_INT(e[12], EPERM);
        CHECK_EQ_INT(e[13], known ? EPERM : ENOSYS);
        CHECK_EQ_INT(e[14], 0);
        CHECK_EQ_INT(e[15], 0);
        CHECK_EQ_INT(e[16], EPERM);
        CHECK_EQ_INT(e[17], 0);
        CHECK_EQ_INT(e[18], EPERM);
    }
    free(known);
}

/* A task's status: within the policy passes; kept capabilities, no no_new_privs, a
 * missing filter are each named, with the task. */
UNIT_TEST(test_taskcheck_status)
{
    static const char ok[] = "Name:\tpython3\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t1234\nPid:\t1234\n"
                             "CapInh:\t0000000000000000\nCapPrm:\t00000000000005fb\nCapEff:\t00000000000005fb\n"
                             "CapBnd:\t00000000000005fb\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n"
                             "Seccomp_filters:\t2\nSpeculation_Store_Bypass:\tthread vulnerable\n";
    struct taskcheck_policy pol = {.caps = 0x5fb, .min_filters = 2};
    struct gerr err;
    CHECK_EQ_INT(taskcheck_status(ok, 1234, &pol, &err), 0);
    char bad[sizeof ok + 64];
    snprintf(bad, sizeof bad, "%s", ok);
    /* SYS_ADMIN, NET_ADMIN and SYS_CHROOT, as a template's runner holds them. */
    memcpy(strstr(bad, "CapEff:\t") + 8, "00000000002415fb", 16);
    memcpy(strstr(bad, "CapBnd:\t") + 8, "00000000002415fb", 16);
    CHECK_EQ_INT(taskcheck_status(bad, 1234, &pol, &err), -EPERM);
    CHECK_STR(err.msg, "container task 1234 (python3) kept capabilities cap_net_admin,cap_sys_chroot,cap_sys_admin "
                       "(effective, bounding) after the privilege drop");
    snprintf(bad, sizeof bad, "%s", ok);
    strstr(bad, "NoNewPrivs:\t1")[12] = '0';
    strstr(bad, "Seccomp_filters:\t2")[17] = '1';
    CHECK_EQ_INT(taskcheck_status(bad, 1240, &pol, &err), -EPERM);
    CHECK_STR(err.msg, "container task 1240 (python3, a thread of process 1234) does not have no_new_privs set; has 1 "
                       "seccomp filter where the container installs 2: the container's profile is missing");
    snprintf(bad, sizeof bad, "%s", ok);
    strstr(bad, "Seccomp:\t2")[9] = '0';
    CHECK_EQ_INT(taskcheck_status(bad, 1234, &pol, &err), -EPERM);
    CHECK(strstr(err.msg, "has no seccomp filter") != NULL);
    /* A kernel without Seccomp_filters: the mode alone. */
    snprintf(bad, sizeof bad, "%.*s", (int)(strstr(ok, "Seccomp_filters") - ok), ok);
    CHECK_EQ_INT(taskcheck_status(bad, 1234, &pol, &err), 0);
    CHECK_EQ_INT(taskcheck_status("Name:\tx\n", 1, &pol, &err), -EPROTO);
}

/* The cgroup this process is in (no filter, full capabilities) fails the check; a
 * cgroup that does not exist is an error naming its file. */
UNIT_TEST(test_taskcheck_cgroup)
{
    struct taskcheck_policy pol = {.caps = 0x5fb, .min_filters = 1};
    struct gerr err;
    char line[512], dir[700] = "";
    bool v2 = access("/sys/fs/cgroup/pids", F_OK) != 0;
    FILE *f = fopen("/proc/self/cgroup", "re");
    CHECK(f != NULL);
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (v2 && !strncmp(line, "0::", 3))
            snprintf(dir, sizeof dir, "/sys/fs/cgroup%s", line + 3);
        else if (!v2 && strstr(line, ":pids:"))
            snprintf(dir, sizeof dir, "/sys/fs/cgroup/pids%s", strstr(line, ":pids:") + 6);
    }
    fclose(f);
    CHECK(dir[0]);
    CHECK_EQ_INT(taskcheck_cgroup(dir, v2, &pol, &err), -EPERM);
    CHECK(!strncmp(err.msg, "container task ", 15));
    CHECK(taskcheck_cgroup("/nonexistent-cgroup", false, &pol, &err) < 0);
    CHECK(strstr(err.msg, "/nonexistent-cgroup/tasks") != NULL);
}

int main(void)
{
    UNIT_RUN(test_setup);
    UNIT_RUN(test_basic_container);
    UNIT_RUN(test_init_fds);
    UNIT_RUN(test_destroy_leaves_nothing);
    UNIT_RUN(test_destroy_running_container);
    UNIT_RUN(test_readonly_bind);
    UNIT_RUN(test_memory_limit_oom);
    UNIT_RUN(test_pids_and_cpu_limits);
    UNIT_RUN(test_cpu_request_without_limit);
    UNIT_RUN(test_cgroup_cpu_mapping);
    UNIT_RUN(test_setup_errors);
    UNIT_RUN(test_cleanup_stale);
    UNIT_RUN(test_host_python_image);
    UNIT_RUN(test_favordynmods_roundtrip);
    UNIT_RUN(test_create_exec_timing);
    UNIT_RUN(test_userns_seccomp_container);
    UNIT_RUN(test_device_filter_v2);
    UNIT_RUN(test_userns_container_dies_with_creator);
    UNIT_RUN(test_sysfilter_arguments);
    UNIT_RUN(test_taskcheck_status);
    UNIT_RUN(test_taskcheck_cgroup);
    UNIT_RUN(test_teardown);
    UNIT_MAIN_END();
}
