#include "runtime/cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/bpf.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/util.h"

#define CGROUP_FS "/sys/fs/cgroup"

static const char *const ctrl_names[CGROUP_NCTRL] = {"memory", "cpu", "cpuacct", "pids", "devices"};

/* Controllers a v2 container cgroup needs enabled by its parent (cpuacct is
 * implicit on v2: cpu.stat is always there). */
static const char *const v2_enable[] = {"memory", "cpu", "pids"};

static struct cgroup_roots detected;
static struct gerr detect_err;
static int detect_rc;
static pthread_once_t detect_once = PTHREAD_ONCE_INIT;

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* Joins a and b with '/' into out; -ENAMETOOLONG if it does not fit. */
static int path_join(char *out, size_t cap, const char *a, const char *b)
{
    int n = snprintf(out, cap, "%s/%s", a, b);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

/* Reads a small cgroup file into buf (NUL-terminated). Returns bytes read or -errno. */
static ssize_t read_small(const char *dir, const char *file, char *buf, size_t cap)
{
    char path[CGROUP_PATH_MAX + 64];
    if (path_join(path, sizeof path, dir, file) < 0)
        return -ENAMETOOLONG;
    AUTO_FD int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return (ssize_t)len;
}

static int write_file(const char *dir, const char *file, const char *value, struct gerr *err)
{
    char path[CGROUP_PATH_MAX + 64];
    if (path_join(path, sizeof path, dir, file) < 0)
        return gerr_set(err, ENAMETOOLONG, "cgroup path %s/%s too long", dir, file);
    int r = file_write_str(path, value);
    if (r < 0)
        return gerr_sys(err, -r, "write \"%s\" to %s", value, path);
    return 0;
}

/* Decodes mountinfo's octal escapes (\040 for space etc.) in place. */
static void mountinfo_unescape(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '7' && r[2] >= '0' && r[2] <= '7' &&
            r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
            r += 3;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

/* Finds the v1 mount point of each controller from the "cgroup" lines of
 * /proc/self/mountinfo (super options list the controllers of a hierarchy). */
static int detect_v1(struct cgroup_roots *r, struct gerr *err)
{
    AUTO_FREE char *data = NULL;
    int rc = file_read_all("/proc/self/mountinfo", 16u << 20, &data, NULL);
    if (rc < 0)
        return gerr_sys(err, -rc, "read /proc/self/mountinfo");
    char *save = NULL;
    for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *tok[64];
        int n = 0;
        char *s2 = NULL;
        for (char *t = strtok_r(line, " ", &s2); t && n < (int)ARRAY_LEN(tok); t = strtok_r(NULL, " ", &s2))
            tok[n++] = t;
        int sep = -1;
        for (int i = 6; i < n; i++) {
            if (!strcmp(tok[i], "-")) {
                sep = i;
                break;
            }
        }
        if (sep < 0 || sep + 3 >= n || strcmp(tok[sep + 1], "cgroup"))
            continue;
        char *opts = tok[sep + 3];
        char *s3 = NULL;
        for (char *o = strtok_r(opts, ",", &s3); o; o = strtok_r(NULL, ",", &s3)) {
            for (int c = 0; c < CGROUP_NCTRL; c++) {
                if (strcmp(o, ctrl_names[c]) || r->root[c][0])
                    continue;
                mountinfo_unescape(tok[4]);
                if (strlen(tok[4]) >= sizeof r->root[c])
                    return gerr_set(err, ENAMETOOLONG, "cgroup mount point %s too long", tok[4]);
                strcpy(r->root[c], tok[4]);
            }
        }
    }
    for (int c = 0; c < CGROUP_NCTRL; c++) {
        if (!r->root[c][0] && c != CGROUP_DEVICES)
            return gerr_set(err, ENOENT,
                            "cgroup v1 controller \"%s\" is not mounted (no cgroup mount with it "
                            "in /proc/self/mountinfo)",
                            ctrl_names[c]);
    }
    return 0;
}

static void detect_run(void)
{
    if (access(CGROUP_FS "/cgroup.controllers", F_OK) == 0) {
        detected.v2 = true;
        for (int c = 0; c < CGROUP_NCTRL; c++)
            strcpy(detected.root[c], CGROUP_FS);
        detect_rc = 0;
        return;
    }
    detect_rc = detect_v1(&detected, &detect_err);
}

const struct cgroup_roots *cgroup_detect(struct gerr *err)
{
    pthread_once(&detect_once, detect_run);
    if (detect_rc < 0) {
        if (err)
            *err = detect_err;
        return NULL;
    }
    return &detected;
}

int cgroup_version(void)
{
    const struct cgroup_roots *r = cgroup_detect(NULL);
    if (r)
        return r->v2 ? 2 : 1;
    return access(CGROUP_FS "/cgroup.controllers", F_OK) == 0 ? 2 : 1;
}

/* A cgroup_parent is one or more [A-Za-z0-9_.-] components separated by '/', none
 * of them "." or "..", so it can never climb out of the controller root. */
static bool parent_is_valid(const char *p)
{
    if (!p || !*p || *p == '/')
        return false;
    const char *comp = p;
    for (const char *s = p;; s++) {
        if (*s == '/' || *s == '\0') {
            size_t len = (size_t)(s - comp);
            if (len == 0 || (len == 1 && comp[0] == '.') || (len == 2 && !strncmp(comp, "..", 2)))
                return false;
            if (*s == '\0')
                return true;
            comp = s + 1;
            continue;
        }
        char c = *s;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-' || c == '.';
        if (!ok)
            return false;
    }
}

int cgroup_set_paths(struct cgroup_set *set, const char *parent, const char *id, struct gerr *err)
{
    const struct cgroup_roots *r = cgroup_detect(err);
    if (!r)
        return -detect_err.code;
    if (!parent_is_valid(parent))
        return gerr_set(err, EINVAL, "invalid cgroup parent \"%s\" (want relative a/b/c of [A-Za-z0-9_.-])",
                        parent ? parent : "(null)");
    if (id && (!*id || strchr(id, '/') || !strcmp(id, ".") || !strcmp(id, "..")))
        return gerr_set(err, EINVAL, "invalid cgroup name \"%s\"", id);
    set->v2 = r->v2;
    for (int c = 0; c < CGROUP_NCTRL; c++) {
        if (!r->root[c][0]) {
            set->dir[c][0] = '\0';
            continue;
        }
        int n = id ? snprintf(set->dir[c], sizeof set->dir[c], "%s/%s/%s", r->root[c], parent, id)
                   : snprintf(set->dir[c], sizeof set->dir[c], "%s/%s", r->root[c], parent);
        if (n < 0 || (size_t)n >= sizeof set->dir[c])
            return gerr_set(err, ENAMETOOLONG, "cgroup path for %s/%s too long", parent, id ? id : "");
    }
    return 0;
}

/* True if dir c of the set repeats an earlier controller's directory (v2, or
 * co-mounted v1 controllers), so each directory is handled once. */
static bool dir_seen_before(const struct cgroup_set *set, int c)
{
    if (!set->dir[c][0])
        return true; /* an absent optional controller: nothing to do */
    for (int i = 0; i < c; i++) {
        if (!strcmp(set->dir[i], set->dir[c]))
            return true;
    }
    return false;
}

bool cgroup_set_dir_first(const struct cgroup_set *set, int c)
{
    return !dir_seen_before(set, c);
}

/* Whether the space-separated list has word. */
static bool list_has(const char *list, const char *word)
{
    size_t wl = strlen(word);
    for (const char *p = list; (p = strstr(p, word)); p += wl) {
        bool start = p == list || p[-1] == ' ' || p[-1] == '\n';
        bool end = p[wl] == '\0' || p[wl] == ' ' || p[wl] == '\n';
        if (start && end)
            return true;
    }
    return false;
}

/* v2: makes every directory from the root down to the leaf's parent exist and
 * delegate the memory, cpu and pids controllers to its children. */
static int v2_prepare_parents(const char *leaf, struct gerr *err)
{
    char path[CGROUP_PATH_MAX];
    size_t rootlen = strlen(CGROUP_FS);
    if (strlen(leaf) >= sizeof path)
        return gerr_set(err, ENAMETOOLONG, "cgroup path %s too long", leaf);
    strcpy(path, leaf);
    char *last = strrchr(path, '/');
    if (!last || (size_t)(last - path) < rootlen)
        return gerr_set(err, EINVAL, "cgroup path %s is not under " CGROUP_FS, leaf);
    *last = '\0';
    /* Walk each level: the root first, then every component of the parent path. */
    for (char *p = path + rootlen;; ) {
        char saved = *p;
        *p = '\0';
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
            return gerr_sys(err, errno, "mkdir cgroup %s", path);
        char cur[256];
        ssize_t n = read_small(path, "cgroup.subtree_control", cur, sizeof cur);
        if (n < 0)
            return gerr_sys(err, (int)-n, "read %s/cgroup.subtree_control", path);
        for (size_t i = 0; i < ARRAY_LEN(v2_enable); i++) {
            if (list_has(cur, v2_enable[i]))
                continue;
            char plus[32];
            snprintf(plus, sizeof plus, "+%s", v2_enable[i]);
            int r = write_file(path, "cgroup.subtree_control", plus, err);
            if (r < 0)
                return gerr_prefix(err, "enable the %s controller for children of %s "
                                        "(is it available in cgroup.controllers, and does the "
                                        "cgroup have no processes of its own?)",
                                   v2_enable[i], path);
        }
        *p = saved;
        if (saved == '\0')
            return 0;
        p = strchr(p + 1, '/');
        if (!p)
            p = path + strlen(path);
    }
}

/* The kernel's bounds: v1 MIN_SHARES/MAX_SHARES, v2 CGROUP_WEIGHT_MIN/MAX, and the
 * smallest CFS quota it accepts (1 ms). */
#define CPU_SHARES_MIN 2
#define CPU_SHARES_MAX 262144
#define CPU_WEIGHT_MIN 1
#define CPU_WEIGHT_MAX 10000
#define CPU_QUOTA_MIN_US 1000

uint64_t cgroup_cpu_shares(uint32_t millicores)
{
    uint64_t s = (uint64_t)millicores * 1024 / 1000;
    return s < CPU_SHARES_MIN ? CPU_SHARES_MIN : s > CPU_SHARES_MAX ? CPU_SHARES_MAX : s;
}

uint64_t cgroup_cpu_weight(uint32_t millicores)
{
    uint64_t w = ((uint64_t)millicores + 5) / 10;
    return w < CPU_WEIGHT_MIN ? CPU_WEIGHT_MIN : w > CPU_WEIGHT_MAX ? CPU_WEIGHT_MAX : w;
}

uint64_t cgroup_cpu_quota_us(uint32_t millicores)
{
    uint64_t q = (uint64_t)millicores * (CGROUP_CPU_PERIOD_US / 1000);
    return q < CPU_QUOTA_MIN_US ? CPU_QUOTA_MIN_US : q;
}

/* Writes the limits that belong to controller c into dir. */
static int write_limits(int c, const char *dir, bool v2, const struct cgroup_limits *lim,
                        struct gerr *err)
{
    char v[64];
    int r = 0;
    switch (c) {
    case CGROUP_MEMORY:
        if (!lim->memory_bytes)
            return 0;
        snprintf(v, sizeof v, "%" PRIu64, lim->memory_bytes);
        r = write_file(dir, v2 ? "memory.max" : "memory.limit_in_bytes", v, err);
        if (r < 0)
            return r;
        /* Swap: v2 caps it separately (0 = none), v1 caps memory+swap together. The
         * files exist only with swap accounting, which is fine to lack. */
        if (v2)
            r = write_file(dir, "memory.swap.max", "0", err);
        else
            r = write_file(dir, "memory.memsw.limit_in_bytes", v, err);
        return r == -ENOENT ? 0 : r;
    case CGROUP_CPU:
        if (lim->cpu_request_millicores) {
            if (v2)
                snprintf(v, sizeof v, "%" PRIu64, cgroup_cpu_weight(lim->cpu_request_millicores));
            else
                snprintf(v, sizeof v, "%" PRIu64, cgroup_cpu_shares(lim->cpu_request_millicores));
            r = write_file(dir, v2 ? "cpu.weight" : "cpu.shares", v, err);
            if (r < 0)
                return r;
        }
        if (!lim->cpu_limit_millicores)
            return 0;
        if (v2) {
            snprintf(v, sizeof v, "%" PRIu64 " %d", cgroup_cpu_quota_us(lim->cpu_limit_millicores),
                     CGROUP_CPU_PERIOD_US);
            return write_file(dir, "cpu.max", v, err);
        }
        snprintf(v, sizeof v, "%d", CGROUP_CPU_PERIOD_US);
        r = write_file(dir, "cpu.cfs_period_us", v, err);
        if (r < 0)
            return r;
        snprintf(v, sizeof v, "%" PRIu64, cgroup_cpu_quota_us(lim->cpu_limit_millicores));
        return write_file(dir, "cpu.cfs_quota_us", v, err);
    case CGROUP_PIDS:
        if (!lim->pids_max)
            return 0;
        snprintf(v, sizeof v, "%" PRIu32, lim->pids_max);
        return write_file(dir, "pids.max", v, err);
    case CGROUP_DEVICES:
        if (!lim->restrict_devices || !dir[0])
            return 0;
        if (v2)
            return cgroup_attach_device_filter(dir, lim->devices, lim->ndevices, err);
        r = write_file(dir, "devices.deny", "a", err);
        for (size_t i = 0; i < lim->ndevices && r == 0; i++) {
            const struct cgroup_device *d = &lim->devices[i];
            char maj[16] = "*", min[16] = "*";
            if (d->major >= 0)
                snprintf(maj, sizeof maj, "%d", (int)d->major);
            if (d->minor >= 0)
                snprintf(min, sizeof min, "%d", (int)d->minor);
            snprintf(v, sizeof v, "%c %s:%s rwm", d->type, maj, min);
            r = write_file(dir, "devices.allow", v, err);
        }
        return r;
    default:
        return 0;
    }
}

int cgroup_set_create(const struct cgroup_set *set, const struct cgroup_limits *lim,
                      struct gerr *err)
{
    bool made[CGROUP_NCTRL] = {false};
    int r = 0;
    for (int c = 0; c < CGROUP_NCTRL && r == 0; c++) {
        if (dir_seen_before(set, c))
            continue;
        char parent[CGROUP_PATH_MAX];
        strcpy(parent, set->dir[c]);
        char *slash = strrchr(parent, '/');
        if (slash)
            *slash = '\0';
        if (set->v2)
            r = v2_prepare_parents(set->dir[c], err);
        else if ((r = mkdir_p(parent, 0755)) < 0)
            r = gerr_sys(err, -r, "mkdir cgroup %s", parent);
        if (r < 0)
            break;
        if (mkdir(set->dir[c], 0755) < 0) {
            r = errno == EEXIST
                    ? gerr_set(err, EEXIST, "cgroup %s already exists (stale container with this id?)",
                               set->dir[c])
                    : gerr_sys(err, errno, "mkdir cgroup %s", set->dir[c]);
            break;
        }
        made[c] = true;
    }
    /* Per controller, not per directory: co-mounted v1 controllers and v2 keep
     * several controllers' files in one directory. */
    for (int c = 0; c < CGROUP_NCTRL && r == 0; c++)
        r = write_limits(c, set->dir[c], set->v2, lim, err);
    if (r < 0) {
        for (int c = 0; c < CGROUP_NCTRL; c++) {
            if (made[c])
                rmdir(set->dir[c]);
        }
    }
    return r;
}

int cgroup_set_attach(const struct cgroup_set *set, pid_t pid, struct gerr *err)
{
    char v[32];
    snprintf(v, sizeof v, "%d", (int)pid);
    for (int c = 0; c < CGROUP_NCTRL; c++) {
        if (dir_seen_before(set, c))
            continue;
        int r = write_file(set->dir[c], "cgroup.procs", v, err);
        if (r < 0)
            return r;
    }
    return 0;
}

int cgroup_kill_all(const char *dir, bool v2, struct gerr *err)
{
    if (v2) {
        int r = write_file(dir, "cgroup.kill", "1", NULL);
        if (r == 0) {
            for (int i = 0; i < 500; i++) {
                char buf[64];
                ssize_t n = read_small(dir, "cgroup.procs", buf, sizeof buf);
                if (n == -ENOENT || n == 0)
                    return 0;
                if (n < 0)
                    return gerr_sys(err, (int)-n, "read %s/cgroup.procs", dir);
                sleep_ms(2);
            }
            return gerr_set(err, EBUSY, "processes in %s survived cgroup.kill", dir);
        }
    }
    /* No cgroup.kill: SIGKILL whatever is listed until the list stays empty; the
     * loop catches processes forked while we were reading. */
    for (int i = 0; i < 500; i++) {
        char buf[8192];
        ssize_t n = read_small(dir, "cgroup.procs", buf, sizeof buf);
        if (n == -ENOENT || n == 0)
            return 0;
        if (n < 0)
            return gerr_sys(err, (int)-n, "read %s/cgroup.procs", dir);
        char *save = NULL;
        for (char *t = strtok_r(buf, "\n", &save); t; t = strtok_r(NULL, "\n", &save)) {
            long pid = strtol(t, NULL, 10);
            if (pid > 0)
                kill((pid_t)pid, SIGKILL);
        }
        sleep_ms(2);
    }
    return gerr_set(err, EBUSY, "processes in %s survived SIGKILL", dir);
}

/* rmdir with a kill and brief retries while the cgroup is still busy (tasks
 * exiting, or v1 memory cgroups still being offlined). */
static int remove_dir(const char *dir, bool v2, struct gerr *err)
{
    for (int i = 0; i < 250; i++) {
        if (rmdir(dir) == 0 || errno == ENOENT)
            return 0;
        if (errno != EBUSY)
            return gerr_sys(err, errno, "rmdir cgroup %s", dir);
        int r = cgroup_kill_all(dir, v2, err);
        if (r < 0)
            return r;
        if (i > 0)
            sleep_ms(4);
    }
    return gerr_set(err, EBUSY, "rmdir cgroup %s: still busy after killing its processes", dir);
}

int cgroup_set_destroy(const struct cgroup_set *set, struct gerr *err)
{
    int first = 0;
    for (int c = 0; c < CGROUP_NCTRL; c++) {
        if (!set->dir[c][0] || dir_seen_before(set, c))
            continue;
        struct gerr e;
        int r = remove_dir(set->dir[c], set->v2, &e);
        if (r < 0 && first == 0) {
            first = r;
            if (err)
                *err = e;
        }
    }
    return first;
}

int cgroup_remove_tree(const char *dir, bool v2, bool remove_self, struct gerr *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : gerr_sys(err, errno, "open cgroup dir %s", dir);
    int first = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_type != DT_DIR || !strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char sub[CGROUP_PATH_MAX];
        if (path_join(sub, sizeof sub, dir, de->d_name) < 0) {
            if (first == 0)
                first = gerr_set(err, ENAMETOOLONG, "cgroup path %s/%s too long", dir, de->d_name);
            continue;
        }
        struct gerr e;
        int r = cgroup_remove_tree(sub, v2, true, &e);
        if (r < 0 && first == 0) {
            first = r;
            if (err)
                *err = e;
        }
    }
    closedir(d);
    if (remove_self && first == 0)
        return remove_dir(dir, v2, err);
    return first;
}

/* Finds "key N" on its own line in the text and parses N. */
static int find_counter(const char *text, const char *key, uint64_t *out)
{
    size_t kl = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (!strncmp(p, key, kl) && p[kl] == ' ') {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(p + kl + 1, &end, 10);
            if (errno || end == p + kl + 1)
                return -EINVAL;
            *out = v;
            return 0;
        }
    }
    return -ENODATA;
}

static int read_u64(const char *dir, const char *file, uint64_t *out)
{
    char buf[64];
    ssize_t n = read_small(dir, file, buf, sizeof buf);
    if (n < 0)
        return (int)n;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno || end == buf)
        return -EINVAL;
    *out = v;
    return 0;
}

int cgroup_read_oom_kills(const char *memory_dir, bool v2, uint64_t *out)
{
    char buf[1024];
    ssize_t n = read_small(memory_dir, v2 ? "memory.events" : "memory.oom_control", buf, sizeof buf);
    if (n < 0)
        return (int)n;
    return find_counter(buf, "oom_kill", out);
}

int cgroup_read_memory(const char *memory_dir, bool v2, uint64_t *bytes)
{
    return read_u64(memory_dir, v2 ? "memory.current" : "memory.usage_in_bytes", bytes);
}

int cgroup_read_cpu(const char *cpuacct_dir, bool v2, uint64_t *ns)
{
    if (!v2)
        return read_u64(cpuacct_dir, "cpuacct.usage", ns);
    char buf[1024];
    ssize_t n = read_small(cpuacct_dir, "cpu.stat", buf, sizeof buf);
    if (n < 0)
        return (int)n;
    uint64_t usec;
    int r = find_counter(buf, "usage_usec", &usec);
    if (r < 0)
        return r;
    *ns = usec * 1000;
    return 0;
}

int cgroup_read_memory_peak(const char *memory_dir, bool v2, uint64_t *bytes)
{
    return read_u64(memory_dir, v2 ? "memory.peak" : "memory.max_usage_in_bytes", bytes);
}

/* ---------- v2 device filter (eBPF) ---------- */

static struct bpf_insn insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm)
{
    struct bpf_insn i = {.code = code, .dst_reg = dst, .src_reg = src, .off = off, .imm = imm};
    return i;
}

/* The program reads struct bpf_cgroup_dev_ctx {access_type, major, minor}: r2 = the
 * device type (low 16 bits of access_type), r4 = major, r5 = minor. Each rule is a
 * block that falls through to "allow" when every check matches and otherwise jumps
 * to the next block; the last block denies. */
int cgroup_attach_device_filter(const char *dir, const struct cgroup_device *devs, size_t n,
                                struct gerr *err)
{
    if (n > CGROUP_MAX_DEVICES)
        return gerr_set(err, EINVAL, "at most %d device rules", CGROUP_MAX_DEVICES);
    struct bpf_insn prog[4 + CGROUP_MAX_DEVICES * 5 + 2];
    size_t k = 0;
    prog[k++] = insn(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_2, BPF_REG_1, 0, 0);
    prog[k++] = insn(BPF_ALU | BPF_AND | BPF_K, BPF_REG_2, 0, 0, 0xffff);
    prog[k++] = insn(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_4, BPF_REG_1, 4, 0);
    prog[k++] = insn(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_5, BPF_REG_1, 8, 0);
    for (size_t i = 0; i < n; i++) {
        const struct cgroup_device *d = &devs[i];
        int checks = 1 + (d->major >= 0) + (d->minor >= 0);
        int type = d->type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR;
        /* A jump's offset counts from the next instruction: from the j-th check
         * (1-based) the next block is (checks - j) checks plus mov and exit away. */
        int j = 1;
        prog[k++] = insn(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_2, 0, (int16_t)(checks - j + 2), type);
        if (d->major >= 0) {
            j++;
            prog[k++] = insn(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_4, 0, (int16_t)(checks - j + 2), d->major);
        }
        if (d->minor >= 0) {
            j++;
            prog[k++] = insn(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_5, 0, (int16_t)(checks - j + 2), d->minor);
        }
        prog[k++] = insn(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 1);
        prog[k++] = insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    }
    prog[k++] = insn(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0);
    prog[k++] = insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);

    static const char license[] = "GPL";
    union bpf_attr load;
    memset(&load, 0, sizeof load);
    load.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    load.insns = (uint64_t)(uintptr_t)prog;
    load.insn_cnt = (uint32_t)k;
    load.license = (uint64_t)(uintptr_t)license;
    AUTO_FD int pfd = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &load, sizeof load);
    if (pfd < 0)
        return gerr_sys(err, errno, "load the device filter for %s", dir);
    AUTO_FD int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return gerr_sys(err, errno, "open cgroup %s", dir);
    union bpf_attr at;
    memset(&at, 0, sizeof at);
    at.target_fd = (uint32_t)dfd;
    at.attach_bpf_fd = (uint32_t)pfd;
    at.attach_type = BPF_CGROUP_DEVICE;
    if (syscall(SYS_bpf, BPF_PROG_ATTACH, &at, sizeof at) < 0)
        return gerr_sys(err, errno, "attach the device filter to %s", dir);
    return 0;
}

/* ---------- favordynmods ---------- */

struct mount_flag_name {
    const char *name;
    unsigned long flag;
};

static const struct mount_flag_name mount_flag_names[] = {
    {"ro", MS_RDONLY},          {"nosuid", MS_NOSUID},   {"nodev", MS_NODEV},
    {"noexec", MS_NOEXEC},      {"relatime", MS_RELATIME}, {"noatime", MS_NOATIME},
    {"nodiratime", MS_NODIRATIME}, {"strictatime", MS_STRICTATIME},
};

static unsigned long mount_flags_from(const char *opts)
{
    unsigned long flags = 0;
    char copy[256];
    snprintf(copy, sizeof copy, "%s", opts);
    char *save = NULL;
    for (char *o = strtok_r(copy, ",", &save); o; o = strtok_r(NULL, ",", &save))
        for (size_t i = 0; i < ARRAY_LEN(mount_flag_names); i++)
            if (!strcmp(o, mount_flag_names[i].name))
                flags |= mount_flag_names[i].flag;
    return flags;
}

/* Copies the comma-separated super options without rw/ro (those are per-mount flags). */
static void super_opts_without_rw(const char *in, char *out, size_t cap)
{
    char copy[512];
    snprintf(copy, sizeof copy, "%s", in);
    out[0] = '\0';
    size_t len = 0;
    char *save = NULL;
    for (char *o = strtok_r(copy, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
        if (!strcmp(o, "rw") || !strcmp(o, "ro"))
            continue;
        int n = snprintf(out + len, cap - len, "%s%s", len ? "," : "", o);
        if (n < 0 || (size_t)n >= cap - len)
            break;
        len += (size_t)n;
    }
}

/* Finds the first cgroup2 mount: its path, per-mount options and super options. */
static int find_cgroup2_mount(char *path, size_t path_cap, char *mnt_opts, size_t mnt_cap, char *super_opts,
                              size_t super_cap)
{
    char *data = NULL;
    int rc = file_read_all("/proc/self/mountinfo", 16u << 20, &data, NULL);
    if (rc < 0)
        return rc;
    rc = -ENOENT;
    char *save = NULL;
    for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *sep = strstr(line, " - ");
        if (!sep)
            continue;
        *sep = '\0';
        char fstype[32] = "", src[64] = "", sopts[512] = "";
        if (sscanf(sep + 3, "%31s %63s %511s", fstype, src, sopts) < 2 || strcmp(fstype, "cgroup2"))
            continue;
        char *tok[6] = {0};
        char *s2 = NULL;
        int n = 0;
        for (char *t = strtok_r(line, " ", &s2); t && n < 6; t = strtok_r(NULL, " ", &s2))
            tok[n++] = t;
        if (n < 6)
            continue;
        mountinfo_unescape(tok[4]);
        snprintf(path, path_cap, "%s", tok[4]);
        snprintf(mnt_opts, mnt_cap, "%s", tok[5]);
        snprintf(super_opts, super_cap, "%s", sopts);
        rc = 0;
        break;
    }
    free(data);
    return rc;
}

static bool opt_listed(const char *list, const char *word)
{
    size_t wl = strlen(word);
    for (const char *p = list; (p = strstr(p, word)); p += wl)
        if ((p == list || p[-1] == ',') && (p[wl] == ',' || p[wl] == '\0'))
            return true;
    return false;
}

/* Where the options from before the change are recorded, so that a gustd started after
 * one that died without restoring them can still put them back. /run is a tmpfs: the
 * record goes at reboot, as does the mount option. */
#define CGROUP_TUNING_RECORD "/run/gust-cgroup-tuning"
/* Every daemon that relies on the option holds a shared flock on this file while it
 * runs (the kernel drops it when the process dies, also on SIGKILL); one that gets an
 * exclusive lock at exit is the last. */
#define CGROUP_TUNING_LOCK "/run/gust-cgroup-tuning.lock"

static void tuning_record(const struct cgroup_tuning *t)
{
    char text[1024];
    int n = snprintf(text, sizeof text, "%s\n%lu\n%s\n", t->path, t->mount_flags, t->super_opts);
    if (n > 0 && (size_t)n < sizeof text)
        (void)file_write_atomic(CGROUP_TUNING_RECORD, text, (size_t)n, 0600);
}

/* Adopts a record left by an earlier gustd for the same mount; true if one was found. */
static bool tuning_adopt(struct cgroup_tuning *t)
{
    char *text = NULL;
    if (file_read_all(CGROUP_TUNING_RECORD, 4096, &text, NULL) < 0)
        return false;
    char path[CGROUP_PATH_MAX] = "", opts[512] = "";
    unsigned long flags = 0;
    bool ok = sscanf(text, "%511[^\n]\n%lu\n%511[^\n]", path, &flags, opts) >= 2 && !strcmp(path, t->path);
    free(text);
    if (ok) {
        t->mount_flags = flags;
        snprintf(t->super_opts, sizeof t->super_opts, "%s", opts);
        t->changed = true;
    }
    return ok;
}

int cgroup_favor_dynmods(struct cgroup_tuning *t, struct gerr *err)
{
    memset(t, 0, sizeof *t);
    t->lock_fd = open(CGROUP_TUNING_LOCK, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (t->lock_fd < 0 || flock(t->lock_fd, LOCK_SH) < 0) {
        int e = errno;
        if (t->lock_fd >= 0)
            close(t->lock_fd);
        t->lock_fd = -1;
        return gerr_sys(err, e, "lock %s", CGROUP_TUNING_LOCK);
    }
    char mnt_opts[256], super_opts[512];
    int rc = find_cgroup2_mount(t->path, sizeof t->path, mnt_opts, sizeof mnt_opts, super_opts, sizeof super_opts);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return gerr_sys(err, -rc, "read /proc/self/mountinfo");
    if (opt_listed(super_opts, "favordynmods")) {
        tuning_adopt(t);
        return 0;
    }
    t->mount_flags = mount_flags_from(mnt_opts);
    super_opts_without_rw(super_opts, t->super_opts, sizeof t->super_opts);
    char data[600];
    snprintf(data, sizeof data, "%s%sfavordynmods", t->super_opts, t->super_opts[0] ? "," : "");
    if (mount("cgroup2", t->path, NULL, MS_REMOUNT | t->mount_flags, data) < 0)
        return gerr_sys(err, errno, "remount %s with %s", t->path, data);
    t->changed = true;
    tuning_record(t);
    return 0;
}

int cgroup_tuning_restore(struct cgroup_tuning *t, struct gerr *err)
{
    /* A failed conversion may drop our shared lock (flock(2)); we are leaving anyway. */
    bool last = t->lock_fd >= 0 && flock(t->lock_fd, LOCK_EX | LOCK_NB) == 0;
    if (t->lock_fd >= 0)
        close(t->lock_fd);
    t->lock_fd = -1;
    if (!t->changed || !last)
        return 0;
    t->changed = false;
    if (mount("cgroup2", t->path, NULL, MS_REMOUNT | t->mount_flags, t->super_opts) < 0)
        return gerr_sys(err, errno, "remount %s with \"%s\"", t->path, t->super_opts);
    unlink(CGROUP_TUNING_RECORD);
    return 0;
}
