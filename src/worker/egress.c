/* Egress networking (see worker/egress.h). */
#include "worker/egress.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "runtime/netlink.h"

#define IP_FORWARD "/proc/sys/net/ipv4/ip_forward"
/* The forwarding value from before the first gust daemon turned it on; it outlives a
 * daemon killed with SIGKILL, so a later one can still put it back. */
#define FORWARD_RECORD "/run/gust-egress-ip-forward"

extern char **environ;

struct egress {
    char tag[5];          /* 4 hex digits */
    uint32_t base;
    int prefix;
    uint32_t nslots;
    uint8_t *used;
};

static void tag_of(const char *worker_tag, char out[5])
{
    uint32_t h = 2166136261u;
    for (const char *p = worker_tag; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    snprintf(out, 5, "%04x", (h ^ (h >> 16)) & 0xffff);
}

int egress_parse_subnet(const char *subnet, uint32_t *base, int *prefix, struct gerr *err)
{
    char ip[32];
    const char *slash = subnet ? strchr(subnet, '/') : NULL;
    if (!slash || (size_t)(slash - subnet) >= sizeof ip)
        return gerr_set(err, EINVAL, "egress subnet \"%s\": expected A.B.C.D/N", subnet ? subnet : "");
    memcpy(ip, subnet, (size_t)(slash - subnet));
    ip[slash - subnet] = '\0';
    struct in_addr a;
    int64_t n;
    if (inet_pton(AF_INET, ip, &a) != 1 || parse_i64(slash + 1, 8, 24, &n) < 0)
        return gerr_set(err, EINVAL, "egress subnet \"%s\": expected A.B.C.D/N with N from 8 to 24", subnet);
    uint32_t mask = n ? ~0u << (32 - n) : 0;
    *base = ntohl(a.s_addr) & mask;
    *prefix = (int)n;
    return 0;
}

/* Runs nft with argv[1..]. input (if any) goes to its standard input; output (if
 * any) collects its standard output (at most 64 KiB), else stdout and, when quiet,
 * stderr go to /dev/null. Fails unless nft exits 0. */
static int nft(char *const *argv, const char *input, struct buf *output, bool quiet, struct gerr *err)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1};
    if ((input && pipe2(in, O_CLOEXEC) < 0) || (output && pipe2(out, O_CLOEXEC) < 0)) {
        int e = errno;
        if (in[0] >= 0) {
            close(in[0]);
            close(in[1]);
        }
        return gerr_sys(err, e, "pipe");
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (input)
        posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    if (output)
        posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    else if (quiet)
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (quiet || output)
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int sr = posix_spawnp(&pid, "nft", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (input)
        close(in[0]);
    if (output)
        close(out[1]);
    ssize_t wr = 0;
    size_t len = input ? strlen(input) : 0;
    if (input) {
        wr = sr == 0 ? write(in[1], input, len) : (ssize_t)len;
        close(in[1]);
    }
    if (output) {
        char chunk[512];
        ssize_t n;
        while (sr == 0 && (n = read(out[0], chunk, sizeof chunk)) > 0 && output->len < 65536)
            buf_append(output, chunk, (size_t)n);
        close(out[0]);
    }
    if (sr != 0)
        return gerr_sys(err, sr, "run nft (apt-get install nftables)");
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (wr != (ssize_t)len)
        return gerr_sys(err, errno, "write the nftables ruleset");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return gerr_set(err, EIO, "nft %s failed (status %d)", argv[1], status);
    return 0;
}

/* Loads a ruleset (nft -f -). */
static int nft_run(const char *ruleset, bool quiet, struct gerr *err)
{
    char *const argv[] = {(char *)"nft", (char *)"-f", (char *)"-", NULL};
    return nft(argv, ruleset, NULL, quiet, err);
}

/* Whether any gust_* nftables table exists (another daemon's egress, or ours); true
 * when nft cannot tell, so forwarding is never turned off under someone. */
static bool gust_tables_exist(void)
{
    char *const argv[] = {(char *)"nft", (char *)"list", (char *)"tables", NULL};
    struct buf text = {0};
    struct gerr err;
    bool found = nft(argv, NULL, &text, true, &err) < 0 || (text.data && strstr(text.data, " gust_"));
    buf_free(&text);
    return found;
}

/* Puts forwarding back as FORWARD_RECORD says, once no gust table is left. */
static void forward_restore_if_last(void)
{
    char v = 0;
    AUTO_FD int fd = open(FORWARD_RECORD, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, &v, 1) != 1 || (v != '0' && v != '1') || gust_tables_exist())
        return;
    AUTO_FD int pf = open(IP_FORWARD, O_WRONLY | O_CLOEXEC);
    if (pf < 0 || write(pf, &v, 1) != 1) {
        log_warn("worker", "egress: could not restore %s", IP_FORWARD);
        return;
    }
    unlink(FORWARD_RECORD);
    log_info("worker", "egress: IPv4 forwarding restored to %c", v);
}

static char read_forward(void)
{
    char c = 0;
    AUTO_FD int fd = open(IP_FORWARD, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && read(fd, &c, 1) != 1)
        c = 0;
    return c;
}

static int write_forward(char v)
{
    AUTO_FD int fd = open(IP_FORWARD, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, &v, 1) != 1)
        return -errno;
    return 0;
}

/* The private-range rules of the forward chain (empty with allow_private): DNS to the
 * host's IPv4 nameservers first, then the drop. */
static void private_rules(struct buf *b, const char *tag, bool allow_private, const char *resolv_conf)
{
    if (allow_private)
        return;
    AUTO_FREE char *text = NULL;
    size_t len;
    if (resolv_conf && file_read_all(resolv_conf, 1 << 16, &text, &len) == 0) {
        for (char *line = text, *next; line && *line; line = next) {
            next = strchr(line, '\n');
            if (next)
                *next++ = '\0';
            char addr[64];
            struct in_addr a;
            if (sscanf(line, " nameserver %63s", addr) == 1 && inet_pton(AF_INET, addr, &a) == 1)
                buf_printf(b,
                           "    iifname \"gv%s-*\" ip daddr %s udp dport 53 accept\n"
                           "    iifname \"gv%s-*\" ip daddr %s tcp dport 53 accept\n",
                           tag, addr, tag, addr);
        }
    }
    buf_printf(b, "    iifname \"gv%s-*\" ip daddr { %s } drop\n", tag, EGRESS_PRIVATE_RANGES);
}

int egress_new(const char *worker_tag, const char *subnet, bool allow_private, const char *resolv_conf,
               struct egress **out, struct gerr *err)
{
    struct egress *e = xcalloc(1, sizeof *e);
    tag_of(worker_tag, e->tag);
    int r = egress_parse_subnet(subnet ? subnet : EGRESS_DEFAULT_SUBNET, &e->base, &e->prefix, err);
    if (r < 0) {
        free(e);
        return r;
    }
    e->nslots = 1u << (30 - e->prefix);
    if (e->nslots > 16384)
        e->nslots = 16384;
    e->used = xcalloc(e->nslots, 1);
    char net[32];
    struct in_addr a = {.s_addr = htonl(e->base)};
    inet_ntop(AF_INET, &a, net, sizeof net);
    struct buf rs = {0};
    /* "table ...; delete table ...;" makes the load idempotent after a crash. */
    buf_printf(&rs,
               "table inet gust_%s {}\n"
               "delete table inet gust_%s\n"
               "table inet gust_%s {\n"
               "  chain forward {\n"
               "    type filter hook forward priority -10; policy accept;\n"
               "    iifname \"gv*\" oifname \"gv*\" drop\n",
               e->tag, e->tag, e->tag);
    private_rules(&rs, e->tag, allow_private, resolv_conf);
    buf_printf(&rs,
               "  }\n"
               "  chain input {\n"
               "    type filter hook input priority -10; policy accept;\n"
               "    iifname \"gv%s-*\" ct state established,related accept\n"
               "    iifname \"gv%s-*\" drop\n"
               "  }\n"
               "  chain postrouting {\n"
               "    type nat hook postrouting priority 100; policy accept;\n"
               "    ip saddr %s/%d oifname != \"gv*\" masquerade\n"
               "  }\n"
               "}\n",
               e->tag, e->tag, net, e->prefix);
    r = nft_run(rs.data, false, err);
    buf_free(&rs);
    if (r < 0) {
        free(e->used);
        free(e);
        return r;
    }
    char before = read_forward();
    if (before == '0') {
        /* Record first: a crash right after the write must still be undoable. */
        if (file_write_atomic(FORWARD_RECORD, "0", 1, 0644) < 0 || write_forward('1') < 0) {
            r = gerr_sys(err, errno, "enable IPv4 forwarding (%s)", IP_FORWARD);
            egress_free(e);
            return r;
        }
        log_info("worker", "egress: IPv4 forwarding enabled (restored at exit), containers on %s/%d", net,
                 e->prefix);
    }
    *out = e;
    return 0;
}

/* Whether an address of net/30 is already on an interface of the host (another
 * gustd with the same subnet, or anything else): such a /30 is skipped. */
static bool subnet_busy(const struct ifaddrs *list, uint32_t net)
{
    for (const struct ifaddrs *a = list; a; a = a->ifa_next) {
        if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET)
            continue;
        uint32_t v = ntohl(((const struct sockaddr_in *)a->ifa_addr)->sin_addr.s_addr);
        if ((v & ~3u) == net)
            return true;
    }
    return false;
}

int egress_acquire(struct egress *e, struct sandbox_egress *out, int *slot, struct gerr *err)
{
    struct ifaddrs *addrs = NULL;
    if (getifaddrs(&addrs) < 0)
        return gerr_sys(err, errno, "list the host's addresses");
    for (uint32_t i = 0; i < e->nslots; i++) {
        if (e->used[i] || subnet_busy(addrs, e->base + i * 4))
            continue;
        freeifaddrs(addrs);
        e->used[i] = 1;
        memset(out, 0, sizeof *out);
        snprintf(out->host_ifname, sizeof out->host_ifname, "gv%s-%u", e->tag, i & 0x3fff);
        uint32_t net = e->base + i * 4;
        out->host_addr = net + 1;
        out->ctr_addr = net + 2;
        out->prefix = 30;
        /* A host end left by a crashed container would make creation fail. */
        netlink_link_delete(out->host_ifname, NULL);
        *slot = (int)i;
        return 0;
    }
    freeifaddrs(addrs);
    return gerr_set(err, EAGAIN, "all %u egress addresses are in use", e->nslots);
}

void egress_release(struct egress *e, int slot)
{
    if (e && slot >= 0 && (uint32_t)slot < e->nslots)
        e->used[slot] = 0;
}

void egress_free(struct egress *e)
{
    if (!e)
        return;
    char rs[128];
    snprintf(rs, sizeof rs, "delete table inet gust_%s\n", e->tag);
    struct gerr err;
    if (nft_run(rs, true, &err) < 0)
        log_warn("worker", "egress: %s", err.msg);
    forward_restore_if_last();
    free(e->used);
    free(e);
}

void egress_cleanup_stale(const char *worker_tag)
{
    char tag[5], rs[128], prefix[16];
    tag_of(worker_tag, tag);
    snprintf(prefix, sizeof prefix, "gv%s-", tag);
    DIR *d = opendir("/sys/class/net");
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)))
            if (!strncmp(de->d_name, prefix, strlen(prefix)))
                netlink_link_delete(de->d_name, NULL);
        closedir(d);
    }
    snprintf(rs, sizeof rs, "table inet gust_%s {}\ndelete table inet gust_%s\n", tag, tag);
    struct gerr err;
    if (access(FORWARD_RECORD, F_OK) == 0 || access("/usr/sbin/nft", X_OK) == 0)
        nft_run(rs, true, &err);
    forward_restore_if_last();
}
