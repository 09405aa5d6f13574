/* A hostile function for the sandbox tests: each subcommand attempts one thing a
 * container must not be able to do and prints "<name> <result>", where result is
 * "ok" when the attempt succeeded or the errno name (EPERM, ESRCH, ...) when it
 * failed. The tests assert the exact failure. Built static: it runs in busybox images.
 *
 *   hostile NAME [ARG]   one attempt; ARG is a host pid, an address, a path...
 *   hostile --serve [NAME...]
 *                        a long-lived runner (proto/runner.h) whose inputs are shell
 *                        scripts, answered with their stdout: so the same attempts run
 *                        in containers forked from a snapshot template. Each NAME is
 *                        attempted in its init (in a child), so in a snapshot template,
 *                        and the result lines go into $HOSTILE_INIT (";"-separated),
 *                        which the forked containers inherit. */
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/netlink.h>
#include <linux/perf_event.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proto/runner.h"

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static const char *errname(int e)
{
    switch (e) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EROFS: return "EROFS";
    case ENOSPC: return "ENOSPC";
    case EAGAIN: return "EAGAIN";
    case ENOSYS: return "ENOSYS";
    case EINVAL: return "EINVAL";
    case ENETUNREACH: return "ENETUNREACH";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ETIMEDOUT: return "ETIMEDOUT";
    case ECONNREFUSED: return "ECONNREFUSED";
    case EBUSY: return "EBUSY";
    case EDQUOT: return "EDQUOT";
    case EXDEV: return "EXDEV";
    case ENOTDIR: return "ENOTDIR";
    case EBADF: return "EBADF";
    case EFAULT: return "EFAULT";
    case EIO: return "EIO";
    case ENXIO: return "ENXIO";
    case ENODEV: return "ENODEV";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    }
    static char buf[32];
    snprintf(buf, sizeof buf, "errno%d", e);
    return buf;
}

static int report(const char *name, long rc)
{
    printf("%s %s\n", name, rc < 0 ? errname(errno) : "ok");
    return 0;
}

/* Connects to ip:port with a 1 s timeout. */
static long try_connect(const char *ipport)
{
    char ip[64];
    snprintf(ip, sizeof ip, "%s", ipport);
    char *colon = strchr(ip, ':');
    if (!colon) {
        errno = EINVAL;
        return -1;
    }
    *colon = '\0';
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    inet_pton(AF_INET, ip, &sa.sin_addr);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0)
        return -1;
    struct timeval tv = {.tv_sec = 1};
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    long rc = connect(s, (struct sockaddr *)&sa, sizeof sa);
    if (rc < 0 && errno == EINPROGRESS)
        errno = ETIMEDOUT;
    if (rc == 0) {
        char buf[256];
        ssize_t n = read(s, buf, sizeof buf - 1);
        if (n > 0) {
            buf[n] = '\0';
            printf("read %s\n", buf);
        }
    }
    close(s);
    return rc;
}

/* clone (the system call: libc's fork would try clone3) with flags; the child exits. */
static long try_clone(unsigned long flags)
{
    long pid = syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid((pid_t)pid, NULL, 0);
    return pid;
}

/* Runs script with sh -c; its stdout is the answer, its stderr goes to ours. */
static int serve_one(struct runner *r, const struct runner_input *in)
{
    int p[2];
    if (pipe(p) < 0)
        return runner_fail(r, in->id, "pipe failed");
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], 1);
        execl("/bin/sh", "sh", "-c", (const char *)in->data, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    static char out[1 << 20];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof out && (n = read(p[0], out + len, sizeof out - len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        len += (size_t)n;
    }
    close(p[0]);
    int st = 0;
    while (pid > 0 && waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (pid < 0)
        return runner_fail(r, in->id, "fork failed");
    if (WIFSIGNALED(st)) {
        char msg[64];
        snprintf(msg, sizeof msg, "the script was killed by signal %d", WTERMSIG(st));
        return runner_fail(r, in->id, msg);
    }
    return runner_reply(r, in->id, out, len);
}

static int attempt(const char *n, const char *arg);

/* Makes each attempt of names in a child and puts the result lines in $HOSTILE_INIT. */
static void init_attempts(char **names, int count)
{
    static char results[4096];
    size_t len = 0;
    for (int i = 0; i < count; i++) {
        int p[2];
        if (pipe(p) < 0)
            break;
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            dup2(p[1], 1);
            int rc = attempt(names[i], "");
            fflush(stdout);
            _exit(rc);
        }
        close(p[1]);
        ssize_t n = 0;
        while (pid > 0 && len < sizeof results - 2 &&
               ((n = read(p[0], results + len, sizeof results - 2 - len)) > 0 || (n < 0 && errno == EINTR)))
            len += n > 0 ? (size_t)n : 0;
        close(p[0]);
        if (pid > 0)
            waitpid(pid, NULL, 0);
        while (len && results[len - 1] == '\n')
            len--;
        if (len < sizeof results - 1)
            results[len++] = ';';
    }
    results[len] = '\0';
    setenv("HOSTILE_INIT", results, 1);
}

static int serve(char **init_names, int ninit)
{
    struct runner r;
    init_attempts(init_names, ninit);
    if (runner_open(&r) < 0 || runner_ready(&r) < 0)
        return 1;
    for (;;) {
        struct runner_input in;
        if (runner_next(&r, &in) < 0)
            break;
        serve_one(&r, &in);
        runner_input_free(&in);
    }
    runner_close(&r);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "--serve"))
        return serve(argv + 2, argc - 2);
    if (argc < 2) {
        fprintf(stderr, "usage: hostile NAME [ARG]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    return attempt(argv[1], argc > 2 ? argv[2] : "");
}

/* One attempt: prints "<name> <result>" and returns 0; 2 for an unknown name. */
static int attempt(const char *n, const char *arg)
{
    if (!strcmp(n, "mount"))
        return report(n, mount("tmpfs", "/tmp", "tmpfs", 0, NULL));
    if (!strcmp(n, "umount"))
        return report(n, umount2("/proc/kcore", MNT_DETACH));
    if (!strcmp(n, "chroot"))
        return report(n, chroot("/tmp"));
    if (!strcmp(n, "pivot_root"))
        return report(n, syscall(SYS_pivot_root, ".", "."));
    if (!strcmp(n, "unshare_user"))
        return report(n, unshare(CLONE_NEWUSER));
    if (!strcmp(n, "unshare_net"))
        return report(n, unshare(CLONE_NEWNET));
    if (!strcmp(n, "clone_user"))
        return report(n, try_clone(CLONE_NEWUSER));
    if (!strcmp(n, "setns_any")) {
        /* nstype 0 ("any kind") into our own PID namespace: harmless, but a template's
         * profile refuses nstype 0 whatever the namespace. */
        int fd = open("/proc/self/ns/pid", O_RDONLY);
        return report(n, fd < 0 ? -1 : setns(fd, 0));
    }
    if (!strcmp(n, "vsock_socket"))
        return report(n, socket(AF_VSOCK, SOCK_STREAM, 0));
    if (!strcmp(n, "netfilter_socket"))
        return report(n, socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER));
    if (!strcmp(n, "netlink_route_socket"))
        return report(n, socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE));
    if (!strcmp(n, "clone_ns"))
        return report(n, try_clone(CLONE_NEWNS));
    if (!strcmp(n, "ptrace"))
        return report(n, ptrace(PTRACE_ATTACH, atoi(arg), NULL, NULL));
    if (!strcmp(n, "kill"))
        return report(n, kill(atoi(arg), SIGKILL));
    if (!strcmp(n, "vm_read")) {
        char buf[16];
        struct iovec local = {buf, sizeof buf}, remote = {(void *)0x400000, sizeof buf};
        return report(n, process_vm_readv(atoi(arg), &local, 1, &remote, 1, 0));
    }
    if (!strcmp(n, "open_read"))
        return report(n, open(arg, O_RDONLY));
    if (!strcmp(n, "open_write"))
        return report(n, open(arg, O_WRONLY));
    if (!strcmp(n, "init_module"))
        return report(n, syscall(SYS_init_module, "", 0, ""));
    if (!strcmp(n, "finit_module")) {
        int fd = open("/bin/busybox", O_RDONLY);
        return report(n, syscall(SYS_finit_module, fd, "", 0));
    }
    if (!strcmp(n, "mknod"))
        return report(n, mknod("/tmp/mem", S_IFCHR | 0600, makedev(1, 1)));
    if (!strcmp(n, "raw_socket"))
        return report(n, socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
    if (!strcmp(n, "packet_socket"))
        return report(n, socket(AF_PACKET, SOCK_RAW, 0));
    if (!strcmp(n, "connect"))
        return report(n, try_connect(arg));
    if (!strcmp(n, "bpf")) {
        union bpf_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.map_type = BPF_MAP_TYPE_ARRAY;
        attr.key_size = 4;
        attr.value_size = 4;
        attr.max_entries = 1;
        return report(n, syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr));
    }
    if (!strcmp(n, "perf_event_open")) {
        struct perf_event_attr pa;
        memset(&pa, 0, sizeof pa);
        pa.size = sizeof pa;
        pa.type = PERF_TYPE_SOFTWARE;
        pa.config = PERF_COUNT_SW_CPU_CLOCK;
        return report(n, syscall(SYS_perf_event_open, &pa, 0, -1, -1, 0));
    }
    if (!strcmp(n, "keyctl"))
        return report(n, syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0));
    if (!strcmp(n, "userfaultfd"))
        return report(n, syscall(SYS_userfaultfd, 0));
    if (!strcmp(n, "pidfd_getfd")) {
        /* Off the allow-list (Docker allows it only with SYS_PTRACE): taking a copy of
         * another process's fd, here our own stdin. */
        long self = syscall(SYS_pidfd_open, getpid(), 0);
        return report(n, self < 0 ? -1 : syscall(SYS_pidfd_getfd, (int)self, 0, 0));
    }
    if (!strcmp(n, "mseal"))
        /* A system call of the kernel (6.10 on, number 462 on x86-64 and aarch64) that
         * the profile's libseccomp may not know: ENOSYS then, EPERM if it does. */
        return report(n, syscall(462, 0, 0, 0));
    if (!strcmp(n, "personality_aslr"))
        /* ADDR_NO_RANDOMIZE: address-space randomisation off. */
        return report(n, syscall(SYS_personality, 0x0040000UL));
    if (!strcmp(n, "open_by_handle_at")) {
        char h[sizeof(struct file_handle) + 8];
        memset(h, 0, sizeof h);
        ((struct file_handle *)h)->handle_bytes = 8;
        return report(n, syscall(SYS_open_by_handle_at, AT_FDCWD, h, O_RDONLY));
    }
    if (!strcmp(n, "kexec_load"))
        return report(n, syscall(SYS_kexec_load, 0, 0, NULL, 0));
    if (!strcmp(n, "reboot"))
        return report(n, syscall(SYS_reboot, 0xfee1dead, 672274793, 0x4321fedc, NULL));
    if (!strcmp(n, "settime")) {
        struct timespec ts = {.tv_sec = 1};
        return report(n, clock_settime(CLOCK_REALTIME, &ts));
    }
    if (!strcmp(n, "swapon"))
        return report(n, syscall(SYS_swapon, "/tmp/swap", 0));
    if (!strcmp(n, "mkdir"))
        return report(n, mkdir(arg, 0755));
    if (!strcmp(n, "forkbomb")) {
        /* Forks until the pids limit stops it; children wait to be killed. */
        static pid_t kids[100000];
        int made = 0;
        long rc = 0;
        for (int i = 0; i < 100000; i++) {
            pid_t p = fork();
            if (p == 0) {
                pause();
                _exit(0);
            }
            if (p < 0) {
                rc = -1;
                break;
            }
            kids[made++] = p;
        }
        int e = errno;
        for (int i = 0; i < made; i++)
            kill(kids[i], SIGKILL);
        for (int i = 0; i < made; i++)
            waitpid(kids[i], NULL, 0);
        printf("forked %d\n", made);
        errno = e;
        return report(n, rc);
    }
    if (!strcmp(n, "fill")) {
        /* Writes 1 MiB blocks to arg until the filesystem is full. */
        int fd = open(arg, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0)
            return report(n, -1);
        static char block[1 << 20];
        long total = 0;
        ssize_t w;
        while ((w = write(fd, block, sizeof block)) > 0)
            total += w;
        int e = errno;
        printf("wrote_mib %ld\n", total >> 20);
        errno = e;
        return report(n, w < 0 ? -1 : 0);
    }
    if (!strcmp(n, "membomb")) {
        for (;;) {
            char *p = malloc(16 << 20);
            if (!p)
                return report(n, -1);
            memset(p, 1, 16 << 20);
        }
    }
    if (!strcmp(n, "euid")) {
        printf("euid %d uid %d\n", (int)geteuid(), (int)getuid());
        return 0;
    }
    if (!strcmp(n, "setuid_exec")) {
        /* As uid 1000, run arg (a set-user-ID root copy of this program) "euid". */
        if (setgid(1000) < 0 || setuid(1000) < 0)
            return report(n, -1);
        execl(arg, arg, "euid", (char *)NULL);
        return report(n, -1);
    }
    fprintf(stderr, "hostile: unknown attempt %s\n", n);
    return 2;
}
