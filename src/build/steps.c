/* The steps of an image build: ids, the bases, sandboxed commands, manifest edits
 * (see build/build.h). Runs on a job's thread, except build_lookup. */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "base/cleanup.h"
#include "base/json_cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "build/internal.h"
#include "cas/cas.h"
#include "runtime/sandbox.h"

/* jansson calls whose arguments are known to be valid (values already validated,
 * ids, fixed text) can fail only on allocation, which aborts under gustd's allocator
 * (xmalloc): their results are not checked. Text from the host or from a step's
 * output is not known to be UTF-8, so calls on it are. */

static bool stopping(const struct builder *b)
{
    return __atomic_load_n(&b->stopping, __ATOMIC_RELAXED);
}

/* ---- ids -------------------------------------------------------------------------- */

static void id_of_digest(const struct cas_digest *d, char out[IMAGE_ID_MAX]);

static void id_of_text(const char *text, size_t len, char out[IMAGE_ID_MAX])
{
    struct cas_digest d;
    cas_digest_of(text, len, &d);
    id_of_digest(&d, out);
}

static void id_of_digest(const struct cas_digest *d, char out[IMAGE_ID_MAX])
{
    char hex[CAS_HEX_LEN + 1];
    cas_digest_hex(d, hex);
    snprintf(out, IMAGE_ID_MAX, "sha256:%s", hex);
}

/* Stores manifest m; out gets its image id. */
static int store_manifest(struct builder *b, json_t *m, char out[IMAGE_ID_MAX], struct gerr *err)
{
    struct cas_digest d;
    int r = cas_manifest_store(b->cfg.cas, m, &d, err);
    if (r == 0)
        id_of_digest(&d, out);
    return r;
}

/* What a step does as its id sees it: its identity, in the cache of scope (""
 * shared). Two scopes never share a step, so a cached answer tells one scope
 * nothing about what another built. */
static void step_scoped(json_t *what, const char *scope)
{
    if (scope && scope[0])
        json_object_set_new(what, "scope", json_string(scope));
}

/* A step's id: SHA-256 of "gust-step-1", the parent image id and the canonical
 * JSON of what the step does. */
static void step_id_of(const char *parent_id, json_t *what, char out[IMAGE_ID_MAX])
{
    AUTO_FREE char *canon = json_dumps(what, JSON_COMPACT | JSON_SORT_KEYS);
    AUTO_FREE char *text = xasprintf("gust-step-1\n%s\n%s", parent_id, canon);
    id_of_text(text, strlen(text), out);
}

/* Whether uploaded tree id (a step's copy source, wheel directory or OCI image) is
 * stored; the builder reads only such trees, never a host path a client named. */
static int tree_stored(struct builder *b, const char *what, const char *id, struct gerr *err)
{
    struct cas_digest d;
    if (cas_digest_parse(id, &d) < 0 || !cas_has(b->cfg.cas, &d))
        return gerr_set(err, ENOENT, "%s: tree %s is not stored; upload it (POST /v1/mounts) and build again", what,
                        id);
    return 0;
}

/* The empty image: a root directory and nothing else. */
static int scratch_id(struct builder *b, char out[IMAGE_ID_MAX], struct gerr *err)
{
    AUTO_JSON json_t *m = json_pack("{s:i,s:{},s:[{s:s,s:s,s:i,s:i,s:i}]}", "gust_manifest", 1, "config", "entries",
                                    "path", ".", "type", "dir", "mode", 0755, "uid", 0, "gid", 0);
    return store_manifest(b, m, out, err);
}

/* ---- the host's apt configuration -------------------------------------------------- */

/* From a sources.list line "deb [opts] URI suite..." or a deb822 "URIs:" line. */
static bool mirror_from_text(const char *text, char *mirror, size_t cap)
{
    const char *p = text;
    while (p && *p) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        char line[1024];
        snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line ? n : sizeof line - 1), p);
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        char uri[512] = "";
        if (!strncmp(s, "deb ", 4)) {
            s += 4;
            while (*s == ' ')
                s++;
            if (*s == '[') {
                char *close = strchr(s, ']');
                s = close ? close + 1 : s;
            }
            sscanf(s, " %511s", uri);
        } else if (!strncasecmp(s, "URIs:", 5)) {
            sscanf(s + 5, " %511s", uri);
        }
        if ((!strncmp(uri, "http://", 7) || !strncmp(uri, "https://", 8)) && !strstr(uri, "security")) {
            snprintf(mirror, cap, "%s", uri);
            return true;
        }
        p = eol ? eol + 1 : NULL;
    }
    return false;
}

int build_host_mirror(const char *given, char *mirror, size_t cap, json_t **sources, struct gerr *err)
{
    *sources = json_array();
    mirror[0] = '\0';
    char *text = NULL;
    size_t len;
    if (file_read_all("/etc/apt/sources.list", 1 << 20, &text, &len) == 0) {
        json_array_append_new(*sources, json_pack("[s,s]", "sources.list", text));
        if (!mirror[0])
            mirror_from_text(text, mirror, cap);
        free(text);
    }
    DIR *d = opendir("/etc/apt/sources.list.d");
    struct dirent **names = NULL;
    int n = d ? scandirat(dirfd(d), ".", &names, NULL, alphasort) : 0;
    for (int i = 0; i < n; i++) {
        const char *nm = names[i]->d_name;
        size_t l = strlen(nm);
        bool list = l > 5 && !strcmp(nm + l - 5, ".list"), deb822 = l > 8 && !strcmp(nm + l - 8, ".sources");
        char path[PATH_MAX];
        snprintf(path, sizeof path, "/etc/apt/sources.list.d/%s", nm);
        if ((list || deb822) && file_read_all(path, 1 << 20, &text, &len) == 0) {
            char rel[300];
            snprintf(rel, sizeof rel, "sources.list.d/%s", nm);
            json_array_append_new(*sources, json_pack("[s,s]", rel, text));
            if (!mirror[0])
                mirror_from_text(text, mirror, cap);
            free(text);
        }
        free(names[i]);
    }
    free(names);
    if (d)
        closedir(d);
    if (given)
        snprintf(mirror, cap, "%s", given);
    if (!mirror[0])
        snprintf(mirror, cap, "http://deb.debian.org/debian");
    return 0;
}

/* ---- output of a step's process ------------------------------------------------------ */

struct step_output {
    struct build_job *j;
    char line[BUILD_LOG_LINE_MAX + 1];
    size_t len;
    char tail[BUILD_TAIL_BYTES];
    size_t tail_len;
    int failed_cmd, failed_status; /* from the run script's marker, 0 if none */
};

#define FAIL_MARKER "__GUST_STEP_FAILED__ "

/* Bytes that are not UTF-8 become '?', so every line is a JSON string. */
static json_t *text_json(const char *s, size_t n)
{
    json_t *v = json_stringn(s, n);
    if (v)
        return v;
    char *copy = xmalloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_decode(s + i, n - i, &cp);
        if (k == 0) {
            copy[o++] = '?';
            i++;
        } else {
            memcpy(copy + o, s + i, k);
            o += k;
            i += k;
        }
    }
    v = json_stringn(copy, o);
    free(copy);
    return v;
}

static void tail_add(struct step_output *o, const char *s, size_t n)
{
    if (n >= sizeof o->tail) {
        memcpy(o->tail, s + n - sizeof o->tail, sizeof o->tail);
        o->tail_len = sizeof o->tail;
        return;
    }
    if (o->tail_len + n > sizeof o->tail) {
        size_t drop = o->tail_len + n - sizeof o->tail;
        memmove(o->tail, o->tail + drop, o->tail_len - drop);
        o->tail_len -= drop;
    }
    memcpy(o->tail + o->tail_len, s, n);
    o->tail_len += n;
}

static void output_line(struct step_output *o)
{
    o->line[o->len] = '\0';
    if (!strncmp(o->line, FAIL_MARKER, strlen(FAIL_MARKER))) {
        sscanf(o->line + strlen(FAIL_MARKER), "%d %d", &o->failed_cmd, &o->failed_status);
    } else {
        tail_add(o, o->line, o->len);
        tail_add(o, "\n", 1);
        build_emit(o->j, json_pack("{s:s,s:i,s:o}", "event", "log", "index", o->j->step_index, "line",
                                   text_json(o->line, o->len)));
    }
    o->len = 0;
}

static void output_feed(struct step_output *o, const char *data, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (data[i] == '\n') {
            output_line(o);
            continue;
        }
        if (data[i] == '\r')
            continue;
        o->line[o->len++] = data[i];
        if (o->len == BUILD_LOG_LINE_MAX)
            output_line(o);
    }
}

/* Reads fd (a pipe's read end) to EOF and waits for the process: pidfd, or pid for
 * a plain child (pidfd -1). kill_fn stops it on shutdown or timeout. Returns the
 * waitpid-style status through *status, or -ECANCELED / -ETIMEDOUT. */
static int pump_output(struct build_job *j, int fd, struct step_output *o, uint64_t deadline_ms,
                       void (*kill_fn)(void *), void *kill_ud)
{
    char buf[16384];
    int r = 0;
    bool killed = false;
    for (;;) {
        if (!killed && (stopping(j->b) || mono_ms() > deadline_ms)) {
            r = stopping(j->b) ? -ECANCELED : -ETIMEDOUT;
            kill_fn(kill_ud);
            killed = true;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, BUILD_POLL_MS);
        if (pr < 0 && errno != EINTR)
            return -errno;
        if (pr <= 0)
            continue;
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            break;
        output_feed(o, buf, (size_t)n);
    }
    if (o->len)
        output_line(o);
    return r;
}

/* ---- debian_slim ------------------------------------------------------------------------ */

static void kill_pid(void *ud)
{
    kill(*(pid_t *)ud, SIGKILL);
}

static int debootstrap_path(char out[64])
{
    static const char *const cands[] = {"/usr/sbin/debootstrap", "/sbin/debootstrap", "/usr/bin/debootstrap"};
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++)
        if (access(cands[i], X_OK) == 0) {
            snprintf(out, 64, "%s", cands[i]);
            return 0;
        }
    return -ENOENT;
}

/* Writes text to root/rel (relative, parents existing), replacing it. */
static int write_in(const char *root, const char *rel, const char *text, struct gerr *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    int r = file_write_atomic(path, text, strlen(text), 0644);
    return r < 0 ? gerr_sys(err, -r, "write %s", path) : 0;
}

/* debootstrap's tree made into the debian_slim base: no package archives or lists
 * (apt_install fetches fresh lists), the host's apt sources, neutral identity. */
static int debian_finish(struct builder *b, const char *root, struct gerr *err)
{
    static const char *const emptied[] = {"var/cache/apt/archives", "var/lib/apt/lists", "var/cache/apt"};
    for (size_t i = 0; i < sizeof emptied / sizeof emptied[0]; i++) {
        char path[PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/%s", root, emptied[i]);
        DIR *d = opendir(path);
        if (!d)
            continue;
        struct dirent *de;
        while ((de = readdir(d))) {
            size_t l = strlen(de->d_name);
            if ((l > 4 && !strcmp(de->d_name + l - 4, ".deb")) || strstr(de->d_name, "_Packages") ||
                strstr(de->d_name, "Release") || (l > 4 && !strcmp(de->d_name + l - 4, ".bin")))
                unlinkat(dirfd(d), de->d_name, 0);
        }
        closedir(d);
    }
    size_t i;
    json_t *s;
    bool any = false;
    json_array_foreach(b->apt_sources, i, s) {
        char rel[400];
        snprintf(rel, sizeof rel, "etc/apt/%s", json_string_value(json_array_get(s, 0)));
        int r = write_in(root, rel, json_string_value(json_array_get(s, 1)), err);
        if (r < 0)
            return r;
        any = true;
    }
    if (any) {
        char text[700];
        snprintf(text, sizeof text, "# the host's apt sources are in sources.list.d (gust debian_slim)\n");
        json_array_foreach(b->apt_sources, i, s) if (!strcmp(json_string_value(json_array_get(s, 0)), "sources.list"))
            *text = '\0';
        if (*text) {
            int r = write_in(root, "etc/apt/sources.list", text, err);
            if (r < 0)
                return r;
        }
    }
    int r = write_in(root, "etc/hostname", "gust\n", err);
    if (r == 0)
        r = write_in(root, "etc/resolv.conf", "", err);
    return r;
}

/* debian_slim's packages beyond minbase: Debian's python3, and python-is-python3 (two
 * symlinks) so that `python`, which Modal's images have and its examples run, is it.
 * Part of the base's cache key: a base built with another list is not reused. */
#define DEBIAN_SLIM_PACKAGES "python3,python-is-python3"

static int run_debootstrap(struct build_job *j, char id_out[IMAGE_ID_MAX], struct gerr *err)
{
    struct builder *b = j->b;
    char prog[64];
    if (debootstrap_path(prog) < 0)
        return gerr_set(err, ENOENT, "debian_slim needs debootstrap on this machine (apt-get install debootstrap)");
    char target[PATH_MAX], cache[PATH_MAX + 64];
    snprintf(target, sizeof target, "%s/debian-%llu", b->work_dir, (unsigned long long)j->seq);
    rm_rf(target);
    if (mkdir(target, 0755) < 0)
        return gerr_sys(err, errno, "create %s", target);
    snprintf(cache, sizeof cache, "--cache-dir=%s/debootstrap-cache", b->work_dir);
    char cache_dir[PATH_MAX + 32];
    snprintf(cache_dir, sizeof cache_dir, "%s/debootstrap-cache", b->work_dir);
    mkdir(cache_dir, 0755);
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return gerr_sys(err, errno, "pipe");
    char *argv[] = {prog, "--variant=minbase", "--include=" DEBIAN_SLIM_PACKAGES, cache, b->suite, target, b->mirror, NULL};
    char *envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive", NULL};
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return gerr_sys(err, errno, "fork debootstrap");
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_RDONLY);
        if (null < 0 || dup2(null, 0) < 0 || dup2(pfd[1], 1) < 0 || dup2(pfd[1], 2) < 0)
            _exit(127);
        execve(prog, argv, envp);
        _exit(127);
    }
    close(pfd[1]);
    struct step_output *o = xcalloc(1, sizeof *o);
    o->j = j;
    int r = pump_output(j, pfd[0], o, mono_ms() + (uint64_t)b->cfg.step_timeout_s * 1000, kill_pid, &pid);
    close(pfd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (r == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        json_t *fin = json_pack("{s:s,s:i,s:o}", "command", "debootstrap", "exit_status",
                                WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), "output_tail",
                                text_json(o->tail, o->tail_len));
        j->final = fin;
        r = gerr_set(err, EIO, "debootstrap %s from %s failed with exit status %d", b->suite, b->mirror,
                     WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    } else if (r < 0) {
        r = gerr_set(err, -r, "debootstrap %s", r == -ETIMEDOUT ? "timed out" : "was stopped: gustd is stopping");
    }
    free(o);
    if (r == 0)
        r = debian_finish(b, target, err);
    struct cas_digest d;
    if (r == 0)
        r = cas_ingest_tree(b->cfg.cas, target, NULL, &d, NULL, err);
    rm_rf(target);
    if (r < 0)
        return r;
    id_of_digest(&d, id_out);
    return 0;
}

/* ---- sandboxed commands ------------------------------------------------------------------ */

struct sb_kill {
    struct sandbox *sb;
};

static void kill_sandbox(void *ud)
{
    sandbox_signal(((struct sb_kill *)ud)->sb, SIGKILL);
}

/* Whether rootfs has an executable at rel, resolved inside it. */
static bool has_in_root(const char *rootfs, const char *rel)
{
    AUTO_FD int root = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return false;
    struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT};
    int fd = (int)syscall(SYS_openat2, root, rel, &how, sizeof how);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

/* The failure of a step's command, as the final event's details. */
static void set_failure(struct build_job *j, const char *command, int status, const struct step_output *o)
{
    json_decref(j->final);
    j->final = json_pack("{s:s,s:i,s:o}", "command", command, "exit_status", status, "output_tail",
                         text_json(o->tail, o->tail_len));
}

/* Runs cmds (each with /bin/sh -c, in order, stopping at the first failure) in a
 * sandbox over parent_id; on success ingests the result into id_out. */
static int run_commands(struct build_job *j, const char *parent_id, json_t *cmds, const char *wheels_tree,
                        char id_out[IMAGE_ID_MAX], struct gerr *err)
{
    struct builder *b = j->b;
    char parent_rootfs[PATH_MAX], wheels_dir[PATH_MAX];
    const char *wheels = NULL;
    int r = image_materialize(b->cfg.cas, b->images_dir, parent_id, parent_rootfs, sizeof parent_rootfs, err);
    if (r < 0)
        return r;
    /* The uploaded wheel directory, materialised once like any tree, bound read-only. */
    if (wheels_tree) {
        r = image_materialize(b->cfg.cas, b->images_dir, wheels_tree, wheels_dir, sizeof wheels_dir, err);
        if (r < 0)
            return gerr_prefix(err, "find_links");
        wheels = wheels_dir;
    }
    if (!has_in_root(parent_rootfs, "/bin/sh"))
        return gerr_set(err, ENOENT, "the image has no /bin/sh to run commands with (start from busybox or "
                                     "debian_slim, not scratch)");
    AUTO_JSON json_t *config = NULL;
    if ((r = image_config(b->cfg.cas, parent_id, &config, err)) < 0)
        return r;
    if (!b->cfg.nlanes)
        return gerr_set(err, ENODEV, "this daemon has no build sandbox (no worker lane reserved)");

    char dir[PATH_MAX], upper[PATH_MAX + 16], work[PATH_MAX + 16], merged[PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/step-%llu-%d", b->work_dir, (unsigned long long)j->seq, j->step_index);
    snprintf(upper, sizeof upper, "%s/upper", dir);
    snprintf(work, sizeof work, "%s/work", dir);
    snprintf(merged, sizeof merged, "%s/merged", dir);
    rm_rf(dir);
    if (mkdir(dir, 0700) < 0 || mkdir(upper, 0755) < 0 || mkdir(work, 0700) < 0 || mkdir(merged, 0755) < 0)
        return gerr_sys(err, errno, "create %s", dir);

    /* argv: gust-init --mode exec -- /bin/sh -c SCRIPT sh CMD... */
    static const char script[] =
        "i=0; for c in \"$@\"; do i=$((i+1)); printf '+ %s\\n' \"$c\"; /bin/sh -c \"$c\" || "
        "{ s=$?; printf '" FAIL_MARKER "%d %d\\n' \"$i\" \"$s\"; exit \"$s\"; }; done";
    size_t ncmd = json_array_size(cmds);
    AUTO_FREE char **argv = xcalloc(ncmd + 9, sizeof *argv);
    size_t nenv = json_array_size(json_object_get(config, "env"));
    AUTO_FREE char **envp = xcalloc(nenv + 8, sizeof *envp);
    size_t a = 0, e = 0;
    argv[a++] = "gust-init";
    argv[a++] = "--mode";
    argv[a++] = "exec";
    argv[a++] = "--";
    argv[a++] = "/bin/sh";
    argv[a++] = "-c";
    argv[a++] = (char *)script;
    argv[a++] = "sh";
    for (size_t i = 0; i < ncmd; i++)
        argv[a++] = (char *)json_string_value(json_array_get(cmds, i));
    bool has_path = false, has_home = false;
    for (size_t i = 0; i < nenv; i++) {
        const char *kv = json_string_value(json_array_get(json_object_get(config, "env"), i));
        if (!kv)
            continue;
        has_path = has_path || !strncmp(kv, "PATH=", 5);
        has_home = has_home || !strncmp(kv, "HOME=", 5);
        envp[e++] = (char *)kv;
    }
    if (!has_path)
        envp[e++] = "PATH=" WORKER_DEFAULT_PATH;
    if (!has_home)
        envp[e++] = "HOME=/root";
    envp[e++] = "DEBIAN_FRONTEND=noninteractive";
    envp[e++] = "PIP_DISABLE_PIP_VERSION_CHECK=1";
    envp[e++] = "PIP_ROOT_USER_ACTION=ignore";
    /* Both stay NULL-terminated: 8 fixed arguments and at most 5 added variables. */
    assert(a < ncmd + 9 && e < nenv + 8);
    const char *workdir = json_string_value(json_object_get(config, "workdir"));

    struct worker_build_lane *lane;
    int lane_idx = build_lane_take(j, &lane);
    if (lane_idx < 0) {
        rm_rf(dir);
        return gerr_set(err, ECANCELED, "gustd is stopping");
    }
    if (worker_build_lane_egress(lane) < 0) {
        char line[700];
        snprintf(line, sizeof line, "gust: this step has no network: %s", lane->egress_err);
        build_emit(j, json_pack("{s:s,s:i,s:o}", "event", "log", "index", j->step_index, "line",
                                text_json(line, strlen(line))));
    }
    char id[64];
    snprintf(id, sizeof id, "build-%llu-%d", (unsigned long long)j->seq, j->step_index);
    struct sandbox_config sc = {
        .id = id,
        .rootfs = parent_rootfs,
        .state_root = lane->state_root,
        .cgroup_parent = lane->cgroup_parent,
        .hostname = "gust-build",
        .disk_mib = 4096,
        .memory_mib = b->cfg.step_memory_mib,
        .pids_max = 4096,
        .upper_dir = upper,
        .work_dir = work,
        .userns = &lane->userns,
        .seccomp = lane->seccomp,
        .egress = lane->egress_ok ? &lane->egress : NULL,
        .init_fd = lane->init_fd,
        .init_argv = argv,
        .init_envp = envp,
        .workdir = workdir && has_in_root(parent_rootfs, workdir) ? workdir : "/",
    };
    if (lane->egress_ok && lane->resolv_conf_ok)
        sc.binds[sc.nbinds++] = (struct sandbox_bind){WORKER_RESOLV_CONF, "/etc/resolv.conf", true};
    if (wheels)
        sc.binds[sc.nbinds++] = (struct sandbox_bind){wheels, "/tmp/gust-wheels", true};
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0) {
        build_lane_give(j, lane_idx);
        rm_rf(dir);
        return gerr_sys(err, errno, "pipe");
    }
    sc.channel_fd = pfd[1];
    struct sandbox sb;
    r = sandbox_create(&sc, &sb, err);
    close(pfd[1]);
    if (r < 0) {
        close(pfd[0]);
        build_lane_give(j, lane_idx);
        rm_rf(dir);
        return gerr_prefix(err, "build sandbox");
    }
    struct step_output *o = xcalloc(1, sizeof *o);
    struct sb_kill k = {&sb};
    o->j = j;
    r = pump_output(j, pfd[0], o, mono_ms() + (uint64_t)b->cfg.step_timeout_s * 1000, kill_sandbox, &k);
    close(pfd[0]);
    struct pollfd p = {.fd = sb.pidfd, .events = POLLIN};
    while (sandbox_reap(&sb, NULL) == 0)
        poll(&p, 1, BUILD_POLL_MS);
    int status = sb.exit_status;
    struct gerr derr;
    if (sandbox_destroy(&sb, &derr) < 0)
        log_warn("build", "%s: cleanup: %s", id, derr.msg);
    build_lane_give(j, lane_idx);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (r == 0 && code != 0) {
        int idx = o->failed_cmd;
        const char *cmd = idx >= 1 && (size_t)idx <= ncmd ? json_string_value(json_array_get(cmds, (size_t)idx - 1))
                                                          : json_string_value(json_array_get(cmds, 0));
        set_failure(j, cmd, code, o);
        const char *hint = "";
        if (memmem(o->tail, o->tail_len, "No module named pip", 19))
            hint = "; the image has no pip and no apt-get to install it with: add pip to the image before pip_install";
        else if (code == 137 && !o->failed_cmd)
            hint = "; it was killed (out of memory?)";
        r = gerr_set(err, EIO, "command `%.200s` exited with status %d%s", cmd, code, hint);
    } else if (r < 0) {
        r = gerr_set(err, -r, "%s", r == -ETIMEDOUT ? "the step ran past its timeout and was killed" : "gustd is stopping");
    }
    free(o);
    if (r == 0) {
        /* The result: the step's writable layer over the parent, as one tree. */
        char opts[3 * PATH_MAX];
        snprintf(opts, sizeof opts, "lowerdir=%s:%s", upper, parent_rootfs);
        if (mount("overlay", merged, "overlay", MS_RDONLY | MS_NODEV | MS_NOSUID, opts) < 0) {
            r = gerr_sys(err, errno, "mount the step's result at %s", merged);
        } else {
            struct cas_digest d;
            r = cas_ingest_tree_shifted(b->cfg.cas, merged, config, lane->userns.host_uid, lane->id_count, &d,
                                        NULL, err);
            umount2(merged, MNT_DETACH);
            if (r == 0) {
                id_of_digest(&d, id_out);
            }
        }
    }
    rm_rf(dir);
    return r;
}

/* ---- manifest edits: copy, env, workdir ------------------------------------------------------ */

/* Orders paths as a depth-first walk with sorted names: '/' sorts first. */
static int path_cmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        unsigned char ca = *a == '/' ? 1 : (unsigned char)*a, cb = *b == '/' ? 1 : (unsigned char)*b;
        if (ca != cb)
            return ca < cb ? -1 : 1;
        if (!ca)
            return 0;
    }
}

static int entry_cmp(const void *x, const void *y)
{
    const char *a = json_string_value(json_object_get(*(json_t *const *)x, "path"));
    const char *b = json_string_value(json_object_get(*(json_t *const *)y, "path"));
    if (!strcmp(a, "."))
        return strcmp(b, ".") ? -1 : 0;
    if (!strcmp(b, "."))
        return 1;
    return path_cmp(a, b);
}

/* "/a//b/" -> "a/b"; "/" -> "."; -EINVAL for ".." parts. */
static int rel_path(const char *abs, char *out, size_t cap)
{
    int r = image_path_clean(abs, out, cap);
    if (r == 0 && !out[0])
        snprintf(out, cap, ".");
    return r;
}

static json_t *dir_entry(const char *path)
{
    return json_pack("{s:s,s:s,s:i,s:i,s:i}", "path", path, "type", "dir", "mode", 0755, "uid", 0, "gid", 0);
}

/* index: path -> entry. Every ancestor of rel (and rel too when self) must be a
 * directory: missing ones are added, anything else is an error. */
static int ensure_dirs(json_t *index, const char *rel, bool self, struct gerr *err)
{
    char cur[PATH_MAX];
    size_t n = strlen(rel);
    for (size_t i = 0; i <= n; i++) {
        if (rel[i] != '/' && rel[i] != '\0')
            continue;
        if (rel[i] == '\0' && !self)
            break;
        snprintf(cur, sizeof cur, "%.*s", (int)i, rel);
        if (!strcmp(cur, "."))
            continue;
        json_t *e = json_object_get(index, cur);
        const char *type = e ? json_string_value(json_object_get(e, "type")) : NULL;
        if (!e) {
            json_object_set_new(index, cur, dir_entry(cur));
        } else if (strcmp(type, "dir")) {
            return gerr_set(err, ENOTDIR, "/%s is a %s in the image, not a directory", cur, type);
        }
    }
    return 0;
}

/* Removes path and everything under it from index. */
static void remove_tree(json_t *index, const char *path)
{
    json_object_del(index, path);
    size_t n = strlen(path);
    const char *key;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(index, tmp, key, v) {
        if (!strncmp(key, path, n) && key[n] == '/')
            json_object_del(index, key);
    }
}

/* Loads manifest id into an index path -> entry (and its config). */
static int load_index(struct builder *b, const char *id, json_t **index, json_t **config, struct gerr *err)
{
    struct cas_digest d;
    if (cas_digest_parse(id, &d) < 0)
        return gerr_set(err, EINVAL, "bad image id %s", id);
    AUTO_JSON json_t *m = NULL;
    int r = cas_manifest_load(b->cfg.cas, &d, &m, err);
    if (r < 0)
        return r;
    *index = json_object();
    *config = json_deep_copy(json_object_get(m, "config"));
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(m, "entries"), i, e) {
        json_object_set(*index, json_string_value(json_object_get(e, "path")), e);
    }
    return 0;
}

/* Stores index + config as a manifest; id_out gets its id. */
static int store_index(struct builder *b, json_t *index, json_t *config, char id_out[IMAGE_ID_MAX], struct gerr *err)
{
    size_t n = json_object_size(index);
    AUTO_FREE json_t **arr = xcalloc(n, sizeof *arr);
    size_t k = 0;
    const char *key;
    json_t *v;
    json_object_foreach(index, key, v) arr[k++] = v;
    assert(k == n);
    qsort(arr, n, sizeof *arr, entry_cmp);
    AUTO_JSON json_t *entries = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append(entries, arr[i]);
    AUTO_JSON json_t *m = json_pack("{s:i,s:O,s:O}", "gust_manifest", 1, "config", config, "entries", entries);
    return store_manifest(b, m, id_out, err);
}

/* copy: the tree of src_id (a one-file tree when is_file) placed at `to`. Copied
 * entries are owned by root, as Dockerfile COPY does. */
static int do_copy(struct builder *b, const char *parent_id, const char *src_id, bool is_file, const char *src_path,
                   const char *to, char id_out[IMAGE_ID_MAX], struct gerr *err)
{
    char rel[PATH_MAX], full[PATH_MAX + 256];
    if (rel_path(to, rel, sizeof rel) < 0)
        return gerr_set(err, EINVAL, "to \"%s\" must not contain \"..\" parts", to);
    const char *base = strrchr(src_path, '/');
    base = base ? base + 1 : src_path;
    if (is_file && to[strlen(to) - 1] == '/') {
        if (snprintf(full, sizeof full, "%s%s%s", strcmp(rel, ".") ? rel : "", strcmp(rel, ".") ? "/" : "", base) >=
            (int)sizeof rel)
            return gerr_set(err, ENAMETOOLONG, "to \"%s\" is too long", to);
        memcpy(rel, full, strlen(full) + 1);
    }
    if (is_file && !strcmp(rel, "."))
        return gerr_set(err, EINVAL, "cannot copy a file onto the image's root directory; give to = \"/%s\"", base);
    AUTO_JSON json_t *index = NULL, *config = NULL, *sidx = NULL, *scfg = NULL;
    int r = load_index(b, parent_id, &index, &config, err);
    if (r == 0)
        r = load_index(b, src_id, &sidx, &scfg, err);
    if (r < 0)
        return r;
    /* A file source is uploaded as a tree holding that file alone. */
    if (is_file) {
        size_t files = 0, others = 0;
        const char *k;
        json_t *en;
        json_object_foreach(sidx, k, en) {
            if (!strcmp(json_string_value(json_object_get(en, "type")), "file"))
                files++;
            else if (strcmp(k, "."))
                others++;
        }
        if (files != 1 || others)
            return gerr_set(err, EINVAL, "copy.file is true but tree %s holds more than one file", src_id);
    }
    if ((r = ensure_dirs(index, rel, false, err)) < 0)
        return gerr_prefix(err, "copy to %s", to);
    json_t *old = json_object_get(index, rel);
    const char *old_type = old ? json_string_value(json_object_get(old, "type")) : NULL;
    if (old && (is_file || strcmp(old_type, "dir")))
        remove_tree(index, rel);
    const char *key;
    json_t *e;
    json_object_foreach(sidx, key, e) {
        char path[PATH_MAX + 512];
        int pl;
        if (is_file) {
            if (!strcmp(key, "."))
                continue;
            pl = snprintf(path, sizeof path, "%s", rel);
        } else if (!strcmp(key, ".")) {
            pl = snprintf(path, sizeof path, "%s", rel);
        } else {
            pl = snprintf(path, sizeof path, "%s%s%s", strcmp(rel, ".") ? rel : "", strcmp(rel, ".") ? "/" : "", key);
        }
        /* A cut path could end inside a UTF-8 sequence, which jansson refuses as a key. */
        if (pl < 0 || (size_t)pl >= sizeof path)
            return gerr_set(err, ENAMETOOLONG, "copy to %s: /%.100s... is too long a path", to, rel);
        json_t *ne = json_deep_copy(e);
        json_object_set_new(ne, "path", json_string(path));
        json_object_set_new(ne, "uid", json_integer(0));
        json_object_set_new(ne, "gid", json_integer(0));
        const char *target = json_string_value(json_object_get(ne, "target"));
        if (target && !strcmp(json_string_value(json_object_get(ne, "type")), "hardlink")) {
            char t[PATH_MAX + 512];
            int tl = snprintf(t, sizeof t, "%s%s%s", strcmp(rel, ".") ? rel : "", strcmp(rel, ".") ? "/" : "", target);
            if (tl < 0 || (size_t)tl >= sizeof t) {
                json_decref(ne);
                return gerr_set(err, ENAMETOOLONG, "copy to %s: /%.100s... is too long a path", to, rel);
            }
            json_object_set_new(ne, "target", json_string(t));
        }
        json_t *prev = json_object_get(index, path);
        if (prev && strcmp(json_string_value(json_object_get(prev, "type")), "dir") == 0 &&
            strcmp(json_string_value(json_object_get(ne, "type")), "dir"))
            remove_tree(index, path);
        if (strcmp(path, ".") == 0)
            json_decref(ne);
        else
            json_object_set_new(index, path, ne);
    }
    return store_index(b, index, config, id_out, err);
}

static int do_env(struct builder *b, const char *parent_id, json_t *vars, char id_out[IMAGE_ID_MAX],
                  struct gerr *err)
{
    AUTO_JSON json_t *index = NULL, *config = NULL;
    int r = load_index(b, parent_id, &index, &config, err);
    if (r < 0)
        return r;
    json_t *env = json_object_get(config, "env");
    if (!json_is_array(env)) {
        env = json_array();
        json_object_set_new(config, "env", env);
    }
    const char *key;
    json_t *val;
    json_object_foreach(vars, key, val) {
        AUTO_FREE char *kv = xasprintf("%s=%s", key, json_string_value(val));
        size_t kl = strlen(key), i;
        json_t *e;
        bool replaced = false;
        json_array_foreach(env, i, e) {
            const char *s = json_string_value(e);
            if (s && !strncmp(s, key, kl) && s[kl] == '=') {
                json_array_set_new(env, i, json_string(kv));
                replaced = true;
                break;
            }
        }
        if (!replaced)
            json_array_append_new(env, json_string(kv));
    }
    return store_index(b, index, config, id_out, err);
}

static int do_workdir(struct builder *b, const char *parent_id, const char *dir, char id_out[IMAGE_ID_MAX],
                      struct gerr *err)
{
    char rel[PATH_MAX];
    if (rel_path(dir, rel, sizeof rel) < 0)
        return gerr_set(err, EINVAL, "workdir \"%s\" must not contain \"..\" parts", dir);
    AUTO_JSON json_t *index = NULL, *config = NULL;
    int r = load_index(b, parent_id, &index, &config, err);
    if (r == 0)
        r = ensure_dirs(index, rel, true, err);
    if (r < 0)
        return r;
    char norm[PATH_MAX + 2];
    snprintf(norm, sizeof norm, "/%s", strcmp(rel, ".") ? rel : "");
    json_object_set_new(config, "workdir", json_string(norm));
    return store_index(b, index, config, id_out, err);
}

/* ---- one step ---------------------------------------------------------------------------- */

static const char *step_kind(json_t *step)
{
    static const char *const kinds[] = {"run", "apt_install", "pip_install", "copy", "env", "workdir"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (json_object_get(step, kinds[i]))
            return kinds[i];
    return "?";
}

/* "RUN a && b", "APT_INSTALL x y", ... at most cap bytes. */
static void step_describe(json_t *step, char *out, size_t cap)
{
    const char *kind = step_kind(step);
    size_t o = 0;
    for (const char *k = kind; *k && o + 1 < cap; k++)
        out[o++] = (char)(*k >= 'a' && *k <= 'z' ? *k - 32 : *k);
    out[o] = '\0';
    json_t *v = json_object_get(step, kind);
    char rest[1024] = "";
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) snprintf(rest + strlen(rest), sizeof rest - strlen(rest), "%s%s",
                                             i ? (strcmp(kind, "run") ? " " : " && ") : "", json_string_value(e));
    } else if (json_is_string(v)) {
        snprintf(rest, sizeof rest, "%s%s%s", json_string_value(v), json_object_get(step, "to") ? " -> " : "",
                 json_object_get(step, "to") ? json_string_value(json_object_get(step, "to")) : "");
    } else if (json_is_object(v)) { /* a copy: {src, tree, file}; its label and where it goes */
        const char *src = json_string_value(json_object_get(v, "src"));
        const char *to = json_string_value(json_object_get(step, "to"));
        snprintf(rest, sizeof rest, "%s%s%s", src ? src : "", to ? " -> " : "", to ? to : "");
    }
    snprintf(out + o, cap - o, " %.*s%s", 180, rest, strlen(rest) > 180 ? "..." : "");
}

/* What a step's id is computed from: the step, with a copy's uploaded tree standing
 * for its content (src is only a label); *src_id / *is_file for copy. Uploaded trees
 * must be stored. */
static int step_identity(struct builder *b, json_t *step, json_t **what, char src_id[IMAGE_ID_MAX], bool *is_file,
                         struct gerr *err)
{
    *what = NULL;
    json_t *copy = json_object_get(step, "copy");
    const char *wheels = json_string_value(json_object_get(step, "find_links"));
    int r = 0;
    if (copy) {
        const char *tree = json_string_value(json_object_get(copy, "tree"));
        *is_file = json_is_true(json_object_get(copy, "file"));
        if ((r = tree_stored(b, "copy", tree, err)) < 0)
            return r;
        snprintf(src_id, IMAGE_ID_MAX, "%s", tree);
    } else if (wheels && (r = tree_stored(b, "find_links", wheels, err)) < 0) {
        return r;
    }
    *what = json_deep_copy(step);
    if (copy)
        json_object_set_new(*what, "copy", json_pack("{s:s,s:b}", "content", src_id, "file", *is_file));
    return 0;
}

/* Installs Debian's pip when python3 has none and the image has apt-get. */
#define PIP_ENSURE                                                                                              \
    "python3 -m pip --version >/dev/null 2>&1 || ! command -v apt-get >/dev/null || "                          \
    "{ apt-get update -q && apt-get install -y -q --no-install-recommends python3-pip && apt-get clean && "     \
    "rm -rf /var/lib/apt/lists/*; }"

/* The shell commands of run, apt_install and pip_install steps (new reference). */
static json_t *step_commands(json_t *step)
{
    json_t *run = json_object_get(step, "run");
    if (run)
        return json_incref(run);
    json_t *apt = json_object_get(step, "apt_install"), *pip = json_object_get(step, "pip_install");
    json_t *list = apt ? apt : pip;
    AUTO_FREE char *joined = NULL;
    size_t len = 0;
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e) len += json_string_length(e) + 1;
    joined = xcalloc(1, len + 1);
    json_array_foreach(list, i, e) {
        strcat(joined, json_string_value(e));
        if (i + 1 < json_array_size(list))
            strcat(joined, " ");
    }
    if (apt) {
        AUTO_FREE char *cmd = xasprintf("apt-get install -y -q --no-install-recommends %s", joined);
        return json_pack("[s,s,s,s]", "apt-get update -q", cmd, "apt-get clean", "rm -rf /var/lib/apt/lists/*");
    }
    AUTO_FREE char *cmd = xasprintf("python3 -m pip install --no-cache-dir --break-system-packages %s%s",
                                    json_object_get(step, "find_links") ? "--no-index --find-links /tmp/gust-wheels " : "",
                                    joined);
    /* As in Modal, pip_install works on debian_slim as it is: pip comes from apt first
       when the image lacks it (without apt-get, pip install fails naming what is missing). */
    return json_pack("[s,s]", PIP_ENSURE, cmd);
}

/* Runs (or takes from the cache) one step over parent_id. */
static int run_step(struct build_job *j, json_t *step, const char *parent_id, char id_out[IMAGE_ID_MAX],
                    struct gerr *err)
{
    struct builder *b = j->b;
    AUTO_JSON json_t *what = NULL;
    char src_id[IMAGE_ID_MAX] = "", step_id[IMAGE_ID_MAX];
    bool is_file = false;
    int r = step_identity(b, step, &what, src_id, &is_file, err);
    if (r < 0)
        return r;
    step_scoped(what, j->scope);
    step_id_of(parent_id, what, step_id);
    bool waited;
    r = build_step_claim(j, step_id, id_out, &waited);
    if (r == 1) {
        j->steps_cached++;
        build_emit(j, json_pack("{s:s,s:i,s:s,s:s,s:b,s:b}", "event", "step_done", "index", j->step_index, "id",
                                step_id, "image_id", id_out, "cached", 1, "waited", waited));
        return 0;
    }
    if (r < 0)
        return gerr_set(err, ECANCELED, "gustd is stopping");
    uint64_t t0 = mono_ns();
    build_emit(j, json_pack("{s:s,s:i,s:s}", "event", "step_run", "index", j->step_index, "id", step_id));
    const char *kind = step_kind(step);
    if (!strcmp(kind, "copy")) {
        r = do_copy(b, parent_id, src_id, is_file, json_string_value(json_object_get(json_object_get(step, "copy"), "src")),
                    json_string_value(json_object_get(step, "to")), id_out, err);
    } else if (!strcmp(kind, "env")) {
        r = do_env(b, parent_id, json_object_get(step, "env"), id_out, err);
    } else if (!strcmp(kind, "workdir")) {
        r = do_workdir(b, parent_id, json_string_value(json_object_get(step, "workdir")), id_out, err);
    } else {
        AUTO_JSON json_t *cmds = step_commands(step);
        r = run_commands(j, parent_id, cmds, json_string_value(json_object_get(step, "find_links")), id_out, err);
    }
    build_step_release(j, step_id, parent_id, r == 0 ? id_out : NULL);
    if (r == 0) {
        j->steps_run++;
        build_emit(j, json_pack("{s:s,s:i,s:s,s:s,s:b,s:f}", "event", "step_done", "index", j->step_index, "id",
                                step_id, "image_id", id_out, "cached", 0, "seconds",
                                (double)(mono_ns() - t0) / 1e9));
    }
    return r;
}

/* The base's cache key, or "" for bases that are image ids already. */
static int base_key(struct builder *b, json_t *def, char key[IMAGE_ID_MAX], struct gerr *err)
{
    key[0] = '\0';
    const char *base = json_string_value(json_object_get(def, "base"));
    const char *oci = json_string_value(json_object_get(def, "from_oci"));
    AUTO_JSON json_t *what = NULL;
    if (base && !strcmp(base, "debian_slim")) {
        AUTO_FREE char *srcs = json_dumps(b->apt_sources, JSON_COMPACT);
        what = json_pack("{s:s,s:s,s:s,s:s,s:s}", "base", "debian_slim", "suite", b->suite, "mirror", b->mirror,
                         "apt_sources", srcs ? srcs : "", "packages", DEBIAN_SLIM_PACKAGES);
    } else if (oci) {
        /* The uploaded tree's id is the digest of its content. */
        int r = tree_stored(b, "from_oci", oci, err);
        if (r < 0)
            return r;
        what = json_pack("{s:s,s:s}", "base", "from_oci", "tree", oci);
    } else {
        return 0;
    }
    /* The mirror, suite and sources come from the host and need not be UTF-8. */
    if (!what)
        return gerr_set(err, EILSEQ, "the apt mirror, suite or sources of this machine are not valid UTF-8");
    step_id_of("", what, key);
    return 0;
}

/* The base image id: given, scratch, or from the cache / by building it. */
static int run_base(struct build_job *j, char id_out[IMAGE_ID_MAX], struct gerr *err)
{
    struct builder *b = j->b;
    if (j->base_id[0]) {
        snprintf(id_out, IMAGE_ID_MAX, "%s", j->base_id);
        build_emit(j, json_pack("{s:s,s:i,s:s,s:b}", "event", "step_done", "index", 0, "image_id", id_out, "cached", 1));
        return 0;
    }
    const char *base = json_string_value(json_object_get(j->def, "base"));
    if (base && !strcmp(base, "scratch")) {
        int r = scratch_id(b, id_out, err);
        if (r == 0)
            build_emit(j, json_pack("{s:s,s:i,s:s,s:b}", "event", "step_done", "index", 0, "image_id", id_out, "cached",
                                    1));
        return r;
    }
    char key[IMAGE_ID_MAX];
    int r = base_key(b, j->def, key, err);
    if (r < 0)
        return r;
    if (!key[0])
        return gerr_set(err, EINVAL, "base \"%s\" is not a registered image", base ? base : "");
    bool waited;
    r = build_step_claim(j, key, id_out, &waited);
    if (r == 1) {
        j->steps_cached++;
        build_emit(j, json_pack("{s:s,s:i,s:s,s:s,s:b,s:b}", "event", "step_done", "index", 0, "id", key, "image_id",
                                id_out, "cached", 1, "waited", waited));
        return 0;
    }
    if (r < 0)
        return gerr_set(err, ECANCELED, "gustd is stopping");
    uint64_t t0 = mono_ns();
    build_emit(j, json_pack("{s:s,s:i,s:s}", "event", "step_run", "index", 0, "id", key));
    const char *oci = json_string_value(json_object_get(j->def, "from_oci"));
    if (oci) {
        char rootfs[PATH_MAX];
        r = image_import_oci_tree(b->cfg.cas, b->images_dir, oci, id_out, rootfs, sizeof rootfs, NULL, err);
    } else {
        r = run_debootstrap(j, id_out, err);
    }
    build_step_release(j, key, "", r == 0 ? id_out : NULL);
    if (r == 0) {
        j->steps_run++;
        build_emit(j, json_pack("{s:s,s:i,s:s,s:s,s:b,s:f}", "event", "step_done", "index", 0, "id", key, "image_id",
                                id_out, "cached", 0, "seconds", (double)(mono_ns() - t0) / 1e9));
    }
    return r;
}

static void step_start_event(struct build_job *j, int idx, size_t total, const char *desc)
{
    build_emit(j, json_pack("{s:s,s:i,s:i,s:s}", "event", "step", "index", idx, "of", (int)total, "step", desc));
}

void build_run(struct build_job *j)
{
    struct builder *b = j->b;
    json_t *steps = json_object_get(j->def, "steps");
    size_t n = json_array_size(steps);
    struct gerr err = {0};
    char cur[IMAGE_ID_MAX], desc[256];
    const char *base = json_string_value(json_object_get(j->def, "base"));
    const char *oci = json_string_value(json_object_get(j->def, "from_oci"));
    snprintf(desc, sizeof desc, "FROM %s%.200s", oci ? "oci " : "", oci ? oci : base);
    j->step_index = 0;
    step_start_event(j, 0, n, desc);
    int r = run_base(j, cur, &err);
    for (size_t i = 0; r == 0 && i < n; i++) {
        json_t *step = json_array_get(steps, i);
        j->step_index = (int)i + 1;
        step_describe(step, desc, sizeof desc);
        step_start_event(j, j->step_index, n, desc);
        char next[IMAGE_ID_MAX];
        r = run_step(j, step, cur, next, &err);
        if (r == 0)
            snprintf(cur, sizeof cur, "%s", next);
    }
    if (r == 0)
        r = image_materialize(b->cfg.cas, b->images_dir, cur, j->rootfs, sizeof j->rootfs, &err);
    double secs = (double)(mono_ns() - j->start_ns) / 1e9;
    if (r == 0) {
        j->ok = true;
        snprintf(j->image_id, sizeof j->image_id, "%s", cur);
        json_decref(j->final);
        j->final = json_pack("{s:s,s:s,s:s,s:f,s:i,s:i,s:i}", "event", "done", "image_id", cur, "rootfs", j->rootfs,
                             "seconds", secs, "steps", (int)n + 1, "steps_run", (int)j->steps_run, "steps_cached",
                             (int)j->steps_cached);
        return;
    }
    json_t *fin = j->final ? j->final : json_object();
    j->final = fin;
    json_t *step = j->step_index ? json_array_get(steps, (size_t)j->step_index - 1) : NULL;
    if (step)
        step_describe(step, desc, sizeof desc);
    else
        snprintf(desc, sizeof desc, "FROM %s%.200s", oci ? "oci " : "", oci ? oci : base);
    char msg[GERR_MSG_MAX + 300];
    snprintf(msg, sizeof msg, "step %d/%zu (%s) failed: %s", j->step_index, n, desc, err.msg);
    json_object_set_new(fin, "event", json_string("error"));
    json_object_set_new(fin, "index", json_integer(j->step_index));
    json_object_set_new(fin, "step", json_string(desc));
    json_object_set_new(fin, "message", text_json(msg, strlen(msg)));
    json_object_set_new(fin, "seconds", json_real(secs));
}

/* ---- lookups without building ------------------------------------------------------------- */

int build_lookup(struct builder *b, json_t *def, const char *base_id, const char *scope, char id_out[IMAGE_ID_MAX],
                 struct gerr *err)
{
    char cur[IMAGE_ID_MAX];
    const char *base = json_string_value(json_object_get(def, "base"));
    int r;
    if (base_id && base_id[0]) {
        snprintf(cur, sizeof cur, "%s", base_id);
    } else if (base && !strcmp(base, "scratch")) {
        if ((r = scratch_id(b, cur, err)) < 0)
            return r;
    } else {
        char key[IMAGE_ID_MAX];
        if ((r = base_key(b, def, key, err)) < 0)
            return r;
        if (!key[0] || build_cache_lookup(b, key, cur) < 0)
            return gerr_set(err, ENOENT, "its base is not built yet");
    }
    size_t i;
    json_t *step;
    json_array_foreach(json_object_get(def, "steps"), i, step) {
        AUTO_JSON json_t *what = NULL;
        char src[IMAGE_ID_MAX], sid[IMAGE_ID_MAX];
        bool is_file;
        if ((r = step_identity(b, step, &what, src, &is_file, err)) < 0)
            return gerr_prefix(err, "steps[%zu]", i);
        step_scoped(what, scope);
        step_id_of(cur, what, sid);
        if (build_cache_lookup(b, sid, cur) < 0)
            return gerr_set(err, ENOENT, "steps[%zu] is not built yet", i);
    }
    snprintf(id_out, IMAGE_ID_MAX, "%s", cur);
    return 0;
}
