/* The privilege check of a container's tasks (see runtime/taskcheck.h). */
#include "runtime/taskcheck.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/util.h"
#include "base/xalloc.h"

/* Names as in capabilities(7), for the messages. */
static const char *const cap_names[] = {
    "cap_chown", "cap_dac_override", "cap_dac_read_search", "cap_fowner", "cap_fsetid", "cap_kill",
    "cap_setgid", "cap_setuid", "cap_setpcap", "cap_linux_immutable", "cap_net_bind_service",
    "cap_net_broadcast", "cap_net_admin", "cap_net_raw", "cap_ipc_lock", "cap_ipc_owner", "cap_sys_module",
    "cap_sys_rawio", "cap_sys_chroot", "cap_sys_ptrace", "cap_sys_pacct", "cap_sys_admin", "cap_sys_boot",
    "cap_sys_nice", "cap_sys_resource", "cap_sys_time", "cap_sys_tty_config", "cap_mknod", "cap_lease",
    "cap_audit_write", "cap_audit_control", "cap_setfcap", "cap_mac_override", "cap_mac_admin", "cap_syslog",
    "cap_wake_alarm", "cap_block_suspend", "cap_audit_read", "cap_perfmon", "cap_bpf", "cap_checkpoint_restore",
};

/* Threads read per pass at most: beyond any pids limit a container gets. */
#define MAX_TASKS (1 << 20)
/* Passes over the list before giving up on a container whose tasks keep changing. */
#define MAX_PASSES 16

/* The value after "key:" at the start of a line of status, or NULL. */
static const char *field(const char *status, const char *key)
{
    size_t k = strlen(key);
    for (const char *l = status; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
        if (!strncmp(l, key, k) && l[k] == ':') {
            l += k + 1;
            while (*l == ' ' || *l == '\t')
                l++;
            return l;
        }
    return NULL;
}

static int hex_field(const char *status, const char *key, uint64_t *out)
{
    const char *v = field(status, key);
    char *end;
    if (!v)
        return -EPROTO;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 16);
    if (errno || end == v)
        return -EPROTO;
    *out = x;
    return 0;
}

static int int_field(const char *status, const char *key, long *out)
{
    const char *v = field(status, key);
    char *end;
    if (!v)
        return -ENOENT;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v)
        return -EPROTO;
    *out = x;
    return 0;
}

/* Appends ", name" for each bit of extra to out. */
static void cap_list(uint64_t extra, char *out, size_t n)
{
    size_t len = 0;
    out[0] = '\0';
    for (unsigned b = 0; b < 64 && len < n; b++) {
        if (!(extra & (1ull << b)))
            continue;
        char unknown[16];
        snprintf(unknown, sizeof unknown, "cap_%u", b);
        const char *name = b < ARRAY_LEN(cap_names) ? cap_names[b] : unknown;
        int w = snprintf(out + len, n - len, "%s%s", len ? "," : "", name);
        if (w < 0)
            break;
        len += (size_t)w;
    }
}

int taskcheck_status(const char *status, pid_t tid, const struct taskcheck_policy *pol, struct gerr *err)
{
    static const char *const sets[] = {"CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"};
    static const char *const set_words[] = {"effective", "permitted", "bounding", "inheritable", "ambient"};
    uint64_t extra = 0;
    char where[64] = "";
    size_t wl = 0;
    for (size_t i = 0; i < ARRAY_LEN(sets); i++) {
        uint64_t v;
        if (hex_field(status, sets[i], &v) < 0)
            return gerr_set(err, EPROTO, "container task %d: no %s in its status", (int)tid, sets[i]);
        if (v & ~pol->caps) {
            extra |= v & ~pol->caps;
            int w = snprintf(where + wl, sizeof where - wl, "%s%s", wl ? ", " : "", set_words[i]);
            if (w > 0 && (size_t)w < sizeof where - wl)
                wl += (size_t)w;
        }
    }
    long nnp = 0, mode = 0, filters = 0;
    if (int_field(status, "NoNewPrivs", &nnp) < 0 || int_field(status, "Seccomp", &mode) < 0)
        return gerr_set(err, EPROTO, "container task %d: no NoNewPrivs or Seccomp in its status", (int)tid);
    int fr = int_field(status, "Seccomp_filters", &filters);
    if (fr == -EPROTO)
        return gerr_set(err, EPROTO, "container task %d: malformed Seccomp_filters", (int)tid);
    bool few = fr == 0 && filters < (long)pol->min_filters;
    if (!extra && nnp == 1 && mode == 2 && !few)
        return 0;

    char name[64] = "?";
    const char *nm = field(status, "Name");
    if (nm)
        snprintf(name, sizeof name, "%.*s", (int)strcspn(nm, "\n"), nm);
    long tgid = tid;
    (void)int_field(status, "Tgid", &tgid);
    char who[160], what[GERR_MSG_MAX] = "";
    if (tgid != tid)
        snprintf(who, sizeof who, "container task %d (%s, a thread of process %ld)", (int)tid, name, tgid);
    else
        snprintf(who, sizeof who, "container task %d (%s)", (int)tid, name);
    size_t len = 0;
#define ADD(...)                                                                   \
    do {                                                                           \
        int w_ = snprintf(what + len, sizeof what - len, __VA_ARGS__);            \
        if (w_ > 0)                                                                \
            len = (size_t)w_ < sizeof what - len ? len + (size_t)w_ : sizeof what - 1; \
    } while (0)
    if (extra) {
        char caps[320];
        cap_list(extra, caps, sizeof caps);
        ADD("kept capabilities %s (%s) after the privilege drop", caps, where);
    }
    if (nnp != 1)
        ADD("%sdoes not have no_new_privs set", len ? "; " : "");
    if (mode != 2)
        ADD("%shas no seccomp filter", len ? "; " : "");
    else if (few)
        ADD("%shas %ld seccomp filter%s where the container installs %u: the container's profile is missing",
            len ? "; " : "", filters, filters == 1 ? "" : "s", pol->min_filters);
#undef ADD
    return gerr_set(err, EPERM, "%s %s", who, what);
}

/* Checks task tid; 0 also when it has gone meanwhile. */
static int check_tid(pid_t tid, const struct taskcheck_policy *pol, struct gerr *err)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/status", (int)tid);
    AUTO_FD int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT || errno == ESRCH ? 0 : gerr_sys(err, errno, "container task %d: open %s", (int)tid, path);
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == ESRCH ? 0 : gerr_sys(err, errno, "container task %d: read %s", (int)tid, path);
        if (n == 0 || (len += (size_t)n) == sizeof buf - 1)
            break;
    }
    buf[len] = '\0';
    if (len == 0)
        return 0; /* exited between open and read */
    return taskcheck_status(buf, tid, pol, err);
}

static int cmp_pid(const void *a, const void *b)
{
    pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
    return (x > y) - (x < y);
}

int taskcheck_cgroup(const char *dir, bool v2, const struct taskcheck_policy *pol, struct gerr *err)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, v2 ? "cgroup.threads" : "tasks");
    AUTO_FREE pid_t *seen = NULL;
    size_t nseen = 0, cap = 0;
    for (int pass = 0; pass < MAX_PASSES; pass++) {
        AUTO_FREE char *list = NULL;
        size_t len;
        int r = file_read_all(path, (size_t)MAX_TASKS * 8, &list, &len);
        if (r < 0)
            return gerr_sys(err, -r, "read the container's tasks from %s", path);
        size_t before = nseen;
        for (char *s = list, *end; *s; s = end) {
            long tid = strtol(s, &end, 10);
            if (end == s)
                break;
            while (*end == '\n')
                end++;
            if (tid <= 0 || (before && bsearch(&(pid_t){(pid_t)tid}, seen, before, sizeof *seen, cmp_pid)))
                continue;
            r = check_tid((pid_t)tid, pol, err);
            if (r < 0)
                return r;
            if (nseen == cap) {
                cap = cap ? cap * 2 : 16;
                seen = xreallocarray(seen, cap, sizeof *seen);
            }
            seen[nseen++] = (pid_t)tid;
        }
        if (nseen == before)
            return 0;
        qsort(seen, nseen, sizeof *seen, cmp_pid);
    }
    return gerr_set(err, EAGAIN, "the container's tasks kept changing while they were checked (%zu seen)", nseen);
}
