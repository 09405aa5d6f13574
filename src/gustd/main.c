/* gustd: the all-in-one daemon — HTTP API + control plane + local worker + SQLite
 * state in one process and one event-loop thread. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "api/routes.h"
#include "api/server.h"
#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "api/web.h"
#include "control/control.h"
#include "evloop/evloop.h"
#include "http/http.h"
#include "runtime/userns.h"
#include "store/store.h"
#include "worker/egress.h"
#include "worker/local.h"
#include "worker/worker.h"

struct gustd {
    struct ev_loop *loop;
    struct api_server *server;
    struct api_server *web;     /* NULL with --web-listen off */
    struct api_server *sock;    /* the API on <data-dir>/api/api.sock, for containers */
    struct api_server *metrics; /* --metrics-listen; NULL without it */
    struct ctl *ctl;
    int sigfd;
    bool stopping;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: gustd [options]\n"
            "\n"
            "The Gust daemon: HTTP API, control plane, local worker and state in one process.\n"
            "\n"
            "  --data-dir DIR        state directory (default /var/lib/gust as root, else ~/.local/share/gust);\n"
            "                        the API is also served on DIR/api/api.sock, which containers get\n"
            "                        at /run/gust/api.sock (off when that path is over 107 bytes)\n"
            "  --listen HOST:PORT    API address (default 127.0.0.1:8470; port 0 = any free port).\n"
            "                        An address other than loopback (127.0.0.0/8, ::1, localhost)\n"
            "                        needs --tls-cert and --tls-key, or --insecure-listen\n"
            "  --web-listen HOST:PORT  web endpoints' address (default 127.0.0.1:8480; port 0 = any free\n"
            "                        port; off = none); TLS and the non-loopback rule as --listen\n"
            "  --metrics-listen HOST:PORT  also serve GET /metrics (Prometheus) there without a token\n"
            "                        (default: off; /metrics on --listen needs an admin token); loopback\n"
            "                        addresses only, for a Prometheus on this machine\n"
            "  --web-domain DOMAIN   also route Host <workspace>--<app>-<label>.DOMAIN (a wildcard DNS\n"
            "                        name) to endpoints; URLs are then shown in that form\n"
            "  --web-max-body BYTES  largest request body of a web endpoint (default 33554432, 32 MiB;\n"
            "                        at most --max-payload less 128 KiB); beyond: 413\n"
            "  --tls-cert FILE       serve the API over HTTPS (TLS 1.2+) with this PEM certificate\n"
            "                        chain (leaf first, then intermediates); needs --tls-key\n"
            "  --tls-key FILE        the PEM private key of --tls-cert\n"
            "  --insecure-listen     allow plain HTTP on a non-loopback --listen address: anyone on\n"
            "                        the network can then read and alter requests and answers,\n"
            "                        tokens included (a warning is logged at every start)\n"
            "  --gpus LIST           declare a simulated GPU inventory, e.g. H100:2,L4:1 (default:\n"
            "                        the GPUs NVML reports, if libnvidia-ml.so.1 is present)\n"
            "  --gpu-passthrough     declared GPUs are real: containers get /dev/nvidia<N> etc.\n"
            "  --gpu-dev-dir DIR     where the nvidia* device nodes are (default /dev)\n"
            "  --gpu-driver-dir DIR  the only directory searched for NVIDIA driver libraries\n"
            "  --no-nvml             do not detect GPUs through NVML\n"
            "  --userns-base UID     host uid/gid of the first container's root (default 1000000)\n"
            "  --userns-size N       uids per container (default 65536)\n"
            "  --userns-slots N      uid ranges, i.e. most containers alive at once (default 512)\n"
            "                        (a range another gustd on this host holds is skipped: each\n"
            "                        daemon locks its ranges in /run/gust-userns.lock)\n"
            "  --egress-subnet CIDR  addresses for network=\"egress\" containers (default " EGRESS_DEFAULT_SUBNET ")\n"
            "  --egress-allow-private  let egress containers reach private, link-local (cloud metadata),\n"
            "                        CGNAT, multicast and reserved IPv4 ranges (dropped by default)\n"
            "  --cpu MILLICORES      worker CPU capacity (default: all cores x 1000)\n"
            "  --memory MIB          worker memory capacity (default: all memory)\n"
            "  --max-payload BYTES   largest input/output/request body (default 67108864)\n"
            "  --max-connections N   most open API connections; beyond, new ones get 503 and are\n"
            "                        closed (default 4096, lowered to fit the open-files limit)\n"
            "  --allow-host NAME     a DNS name clients may use in Host (repeatable; IP addresses and\n"
            "                        localhost always work; other names are refused against DNS rebinding)\n"
            "  --allow-origin ORIGIN a web origin whose pages may call the API, e.g. https://dash.example\n"
            "                        (repeatable; requests carrying any other Origin are refused)\n"
            "  --keepalive-policy P  how long idle containers stay for functions without\n"
            "                        scaling.scaledown_window: default (adaptive), fixed_10min, knative,\n"
            "                        hybrid_histogram (README \"Keep-alive and eviction\")\n"
            "  --rates FILE          JSON price table {\"cpu_core_s\",\"memory_gib_s\",\"gpu_s\":{TYPE:price}}\n"
            "  --stop-grace SECONDS  on SIGTERM, how long running inputs may finish (default 10)\n"
            "  --cgroup-parent NAME  cgroup directory for containers (default gust)\n"
            "  --init PATH           gust-init binary (default: next to gustd)\n"
            "  --no-cgroup-tuning    do not enable the cgroup2 'favordynmods' mount option (it makes\n"
            "                        container starts ~4x faster after idle periods; restored at exit)\n"
            "  --log-level LEVEL     debug, info, warn or error (default info)\n"
            "  --help                this text\n");
}

static void stop_loop(struct ev_loop *loop, void *data)
{
    (void)data;
    ev_stop(loop);
}

/* The loop stops after the deferred work already queued (a connection's deferred
 * close, say, of a web response cut short by the shutdown), which would otherwise
 * never run and leak what it holds. */
static void on_shutdown_done(void *ud)
{
    struct gustd *g = ud;
    if (ev_defer(g->loop, stop_loop, NULL) < 0)
        ev_stop(g->loop);
}

static void on_signal(struct ev_loop *loop, int fd, uint32_t events, void *data)
{
    struct gustd *g = data;
    (void)loop;
    (void)events;
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo != SIGTERM && si.ssi_signo != SIGINT)
            continue;
        if (g->stopping) {
            log_warn("gustd", "second signal: stopping now");
            ev_stop(g->loop);
            return;
        }
        g->stopping = true;
        log_info("gustd", "stopping: finishing running inputs, then stopping containers");
        api_server_stop_accepting(g->server);
        api_server_stop_accepting(g->sock);
        if (g->web)
            api_server_stop_accepting(g->web);
        ctl_shutdown(g->ctl, on_shutdown_done, g);
    }
}

/* File descriptors kept free of API connections: the database, logs, builds, and per
 * live container its pidfd, pipes, sockets and cgroup files (FDS_PER_CONTAINER, an
 * allowance with room to spare) for every userns slot. */
#define FDS_BASE 256u
#define FDS_PER_CONTAINER 8u

/* Raises the soft RLIMIT_NOFILE to the hard one (containers get their own limit, see
 * docs/SECURITY.md) and returns how many API connections fit next to the containers. */
static size_t fit_max_connections(size_t want, bool explicit, uint64_t slots)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return want;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit up = {.rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max};
        if (up.rlim_cur == RLIM_INFINITY || up.rlim_cur > (1u << 20))
            up.rlim_cur = 1u << 20;
        if (up.rlim_cur > rl.rlim_cur && setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl.rlim_cur = up.rlim_cur;
    }
    uint64_t nofile = rl.rlim_cur == RLIM_INFINITY ? (1u << 20) : (uint64_t)rl.rlim_cur;
    uint64_t reserve = FDS_BASE + FDS_PER_CONTAINER * slots;
    uint64_t fit = nofile > reserve + 64 ? nofile - reserve : (nofile / 4 > 16 ? nofile / 4 : 16);
    if (want <= fit)
        return want;
    if (explicit)
        log_warn("gustd",
                 "--max-connections %zu lowered to %llu: the open-files limit is %llu and %llu are kept for "
                 "containers (raise the hard limit, e.g. LimitNOFILE=, to allow more)",
                 want, (unsigned long long)fit, (unsigned long long)nofile, (unsigned long long)reserve);
    else
        log_info("gustd", "API connections limited to %llu (open-files limit %llu, %llu kept for containers)",
                 (unsigned long long)fit, (unsigned long long)nofile, (unsigned long long)reserve);
    return (size_t)fit;
}

static int default_data_dir(char *out, size_t cap)
{
    if (geteuid() == 0) {
        snprintf(out, cap, "/var/lib/gust");
        return 0;
    }
    const char *home = getenv("HOME");
    if (!home)
        return -ENOENT;
    snprintf(out, cap, "%s/.local/share/gust", home);
    return 0;
}

static int default_init_path(char *out, size_t cap)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0)
        return -errno;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    int n2 = snprintf(out, cap, "%.*s/gust-init", (int)(cap > 16 ? cap - 16 : 0), self);
    return n2 > 0 && (size_t)n2 < cap ? 0 : -ENAMETOOLONG;
}

int main(int argc, char **argv)
{
    /* One allocation-failure policy (docs/ARCHITECTURE.md): jansson allocates through
     * xmalloc too, so a NULL from a JSON constructor means bad input, never memory. */
    json_set_alloc_funcs(xmalloc, free);
    char data_dir[PATH_MAX] = "", init_path[PATH_MAX] = "";
    const char *listen_addr = "127.0.0.1:8470", *gpus = NULL, *rates_file = NULL, *cgroup_parent = "gust";
    int64_t max_payload = 64ll << 20, stop_grace = 10, cpu = 0, memory = 0;
    bool no_cgroup_tuning = false, gpu_passthrough = false, no_nvml = false, egress_allow_private = false;
    const char *gpu_dev_dir = NULL, *gpu_driver_dir = NULL, *egress_subnet = NULL;
    const char *tls_cert = NULL, *tls_key = NULL;
    bool insecure_listen = false;
    int64_t userns_base = 1000000, userns_size = 65536, userns_slots = 512;
    int64_t max_conns = API_MAX_CONNS_DEFAULT;
    bool max_conns_given = false;
    const char *keepalive_policy = NULL;
    const char *web_listen = "127.0.0.1:8480", *web_domain = NULL;
    const char *metrics_listen = NULL;
    int64_t web_max_body = API_WEB_MAX_BODY_DEFAULT;
    static const struct option opts[] = {
        {"web-listen", required_argument, 0, 'W'}, {"web-domain", required_argument, 0, 'w'},
        {"web-max-body", required_argument, 0, 'B'}, {"metrics-listen", required_argument, 0, 'm'},
        {"gpu-passthrough", no_argument, 0, 'P'}, {"gpu-dev-dir", required_argument, 0, 'D'},
        {"gpu-driver-dir", required_argument, 0, 'R'}, {"no-nvml", no_argument, 0, 'N'},
        {"userns-base", required_argument, 0, 'U'}, {"userns-size", required_argument, 0, 'Z'},
        {"userns-slots", required_argument, 0, 'S'}, {"egress-subnet", required_argument, 0, 'E'},
        {"data-dir", required_argument, 0, 'd'}, {"listen", required_argument, 0, 'l'},
        {"gpus", required_argument, 0, 'g'},     {"max-payload", required_argument, 0, 'p'},
        {"rates", required_argument, 0, 'r'},    {"stop-grace", required_argument, 0, 's'},
        {"cgroup-parent", required_argument, 0, 'c'}, {"init", required_argument, 0, 'i'},
        {"log-level", required_argument, 0, 'L'}, {"cpu", required_argument, 0, 'C'},
        {"memory", required_argument, 0, 'M'},   {"help", no_argument, 0, 'h'},
        {"no-cgroup-tuning", no_argument, 0, 'T'}, {"egress-allow-private", no_argument, 0, 'A'},
        {"max-connections", required_argument, 0, 'K'},
        {"allow-host", required_argument, 0, 'H'}, {"allow-origin", required_argument, 0, 'O'},
        {"tls-cert", required_argument, 0, 'X'}, {"tls-key", required_argument, 0, 'Y'},
        {"insecure-listen", no_argument, 0, 'I'}, {"keepalive-policy", required_argument, 0, 'k'},
        {0, 0, 0, 0},
    };
    struct api_guard guard = {0};
    struct gerr err = {0};
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'd': snprintf(data_dir, sizeof data_dir, "%s", optarg); break;
        case 'l': listen_addr = optarg; break;
        case 'W': web_listen = strcmp(optarg, "off") ? optarg : NULL; break;
        case 'w': web_domain = optarg; break;
        case 'm': metrics_listen = optarg; break;
        case 'B':
            if (parse_i64(optarg, 0, 1ll << 32, &web_max_body) < 0) {
                fprintf(stderr, "gustd: --web-max-body: expected bytes between 0 and 4294967296, got \"%s\"\n",
                        optarg);
                return 2;
            }
            break;
        case 'X': tls_cert = optarg; break;
        case 'Y': tls_key = optarg; break;
        case 'I': insecure_listen = true; break;
        case 'g': gpus = optarg; break;
        case 'r': rates_file = optarg; break;
        case 'c': cgroup_parent = optarg; break;
        case 'k': keepalive_policy = optarg; break;
        case 'i': snprintf(init_path, sizeof init_path, "%s", optarg); break;
        case 'p':
            if (parse_i64(optarg, 1024, 1ll << 32, &max_payload) < 0) {
                fprintf(stderr, "gustd: --max-payload: expected bytes between 1024 and 4294967296, got \"%s\"\n",
                        optarg);
                return 2;
            }
            break;
        case 'H':
        case 'O': {
            size_t *n = ch == 'H' ? &guard.nhosts : &guard.norigins;
            const char **list = ch == 'H' ? guard.hosts : guard.origins;
            if (*n == API_GUARD_MAX_NAMES || !optarg[0]) {
                fprintf(stderr, "gustd: --allow-%s: give 1 to %d non-empty values\n", ch == 'H' ? "host" : "origin",
                        API_GUARD_MAX_NAMES);
                return 2;
            }
            list[(*n)++] = optarg;
            break;
        }
        case 'K':
            if (parse_i64(optarg, 1, 1 << 20, &max_conns) < 0) {
                fprintf(stderr, "gustd: --max-connections: expected a count between 1 and 1048576, got \"%s\"\n",
                        optarg);
                return 2;
            }
            max_conns_given = true;
            break;
        case 's':
            if (parse_i64(optarg, 0, 3600, &stop_grace) < 0) {
                fprintf(stderr, "gustd: --stop-grace: expected seconds between 0 and 3600, got \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 'C':
            if (parse_i64(optarg, 100, 1 << 24, &cpu) < 0) {
                fprintf(stderr, "gustd: --cpu: expected millicores (e.g. 2000 for 2 cores), got \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 'M':
            if (parse_i64(optarg, 64, 1ll << 30, &memory) < 0) {
                fprintf(stderr, "gustd: --memory: expected MiB (e.g. 4096), got \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 'P': gpu_passthrough = true; break;
        case 'N': no_nvml = true; break;
        case 'D': gpu_dev_dir = optarg; break;
        case 'R': gpu_driver_dir = optarg; break;
        case 'E': {
            uint32_t base;
            int prefix;
            if (egress_parse_subnet(optarg, &base, &prefix, &err) < 0) {
                fprintf(stderr, "gustd: --egress-subnet: %s\n", err.msg);
                return 2;
            }
            egress_subnet = optarg;
            break;
        }
        case 'U':
        case 'Z':
        case 'S': {
            int64_t *dst = ch == 'U' ? &userns_base : ch == 'Z' ? &userns_size : &userns_slots;
            int64_t lo = ch == 'U' ? 65536 : ch == 'Z' ? 65536 : 1, hi = ch == 'S' ? 65536 : 4000000000ll;
            if (parse_i64(optarg, lo, hi, dst) < 0) {
                fprintf(stderr, "gustd: --%s: expected an integer between %lld and %lld, got \"%s\"\n",
                        ch == 'U' ? "userns-base" : ch == 'Z' ? "userns-size" : "userns-slots", (long long)lo,
                        (long long)hi, optarg);
                return 2;
            }
            break;
        }
        case 'L':
            if (!strcmp(optarg, "debug"))
                log_set_level(LOG_DEBUG);
            else if (!strcmp(optarg, "info"))
                log_set_level(LOG_INFO);
            else if (!strcmp(optarg, "warn"))
                log_set_level(LOG_WARN);
            else if (!strcmp(optarg, "error"))
                log_set_level(LOG_ERROR);
            else {
                fprintf(stderr, "gustd: --log-level: expected debug, info, warn or error, got \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 'T': no_cgroup_tuning = true; break;
        case 'A': egress_allow_private = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "gustd: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (!tls_cert != !tls_key) {
        fprintf(stderr, "gustd: --tls-cert and --tls-key go together: give both, or neither for plain HTTP\n");
        return 2;
    }
    /* Plain HTTP off this machine exposes every request, tokens included, to the
     * network: refused unless the operator says so (a TLS-terminating proxy in front,
     * a private network). */
    bool loopback = api_listen_is_loopback(listen_addr);
    if (!tls_cert && !loopback && !insecure_listen) {
        fprintf(stderr,
                "gustd: --listen %s is not a loopback address: serve HTTPS with --tls-cert FILE --tls-key FILE, "
                "or pass --insecure-listen to accept plain HTTP from the network (docs/SECURITY.md, "
                "\"Transport\")\n",
                listen_addr);
        return 2;
    }
    /* Metrics are served without a token, so only to this machine: a Prometheus
     * elsewhere scrapes /metrics on --listen with an admin token (over TLS). */
    if (metrics_listen && !api_listen_is_loopback(metrics_listen)) {
        fprintf(stderr,
                "gustd: --metrics-listen %s is not a loopback address: it serves /metrics without a token, so only "
                "127.0.0.0/8, ::1 or localhost; scrape /metrics on --listen with an admin token from elsewhere\n",
                metrics_listen);
        return 2;
    }
    if (web_listen && !tls_cert && !api_listen_is_loopback(web_listen) && !insecure_listen) {
        fprintf(stderr,
                "gustd: --web-listen %s is not a loopback address: serve HTTPS with --tls-cert FILE --tls-key FILE, "
                "or pass --insecure-listen to accept plain HTTP from the network (docs/SECURITY.md)\n",
                web_listen);
        return 2;
    }
    /* The request becomes a call's input: body plus the envelope's head must fit. */
    if (web_max_body + (int64_t)API_WEB_ENVELOPE_SLACK > max_payload) {
        if (web_max_body != (int64_t)API_WEB_MAX_BODY_DEFAULT) {
            fprintf(stderr, "gustd: --web-max-body %lld is over --max-payload (%lld) less 128 KiB\n",
                    (long long)web_max_body, (long long)max_payload);
            return 2;
        }
        web_max_body = max_payload > (int64_t)API_WEB_ENVELOPE_SLACK ? max_payload - (int64_t)API_WEB_ENVELOPE_SLACK : 0;
    }
    if (!data_dir[0] && default_data_dir(data_dir, sizeof data_dir) < 0) {
        fprintf(stderr, "gustd: no --data-dir given and $HOME is not set\n");
        return 2;
    }
    if (!init_path[0] && default_init_path(init_path, sizeof init_path) < 0) {
        fprintf(stderr, "gustd: cannot locate gust-init; pass --init PATH\n");
        return 2;
    }
    if (access(init_path, X_OK) < 0) {
        fprintf(stderr, "gustd: gust-init not found at %s (build it with `make`, or pass --init PATH)\n", init_path);
        return 2;
    }

    int r = mkdir_p(data_dir, 0700);
    if (r < 0) {
        fprintf(stderr, "gustd: cannot create data dir %s: %s\n", data_dir, strerror(-r));
        return 1;
    }
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/gustd.lock", data_dir);
    AUTO_FD int lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) < 0) {
        fprintf(stderr, "gustd: another gustd is using %s (lock %s: %s)\n", data_dir, path, strerror(errno));
        return 1;
    }

    signal(SIGPIPE, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);

    struct ctl_config ccfg = {.max_payload = (size_t)max_payload, .stop_grace_ms = (uint32_t)stop_grace * 1000};
    ctl_rates_default(&ccfg.rates);
    if (rates_file) {
        AUTO_FREE char *text = NULL;
        size_t len;
        if ((r = file_read_all(rates_file, 1 << 20, &text, &len)) < 0) {
            fprintf(stderr, "gustd: --rates %s: %s\n", rates_file, strerror(-r));
            return 2;
        }
        if (ctl_rates_load_json(&ccfg.rates, text, len, &err) < 0) {
            fprintf(stderr, "gustd: --rates %s: %s\n", rates_file, err.msg);
            return 2;
        }
    }

    char run_dir[PATH_MAX + 16], images_dir[PATH_MAX + 16], cas_dir[PATH_MAX + 16];
    snprintf(run_dir, sizeof run_dir, "%s/run", data_dir);
    snprintf(images_dir, sizeof images_dir, "%s/images", data_dir);
    snprintf(cas_dir, sizeof cas_dir, "%s/cas", data_dir);
    ccfg.data_dir = data_dir;
    ccfg.keepalive_policy = keepalive_policy;
    ccfg.images_dir = images_dir;
    ccfg.cas_dir = cas_dir;
    if ((r = mkdir_p(run_dir, 0700)) < 0 || (r = mkdir_p(images_dir, 0755)) < 0) {
        fprintf(stderr, "gustd: cannot create %s: %s\n", run_dir, strerror(-r));
        return 1;
    }

    /* The API's socket for code in containers (docs/API.md "Calls from inside a
     * function"): one socket, bound into each container. Its mode lets any uid connect
     * (each container's root is a uid of its own), so who reaches it is decided by the
     * directory: ours alone (0700, our uid), which no other local user can search; a
     * container reaches it only through its bind. What a connection may do is decided
     * by its token, as over TCP. */
    char api_dir[PATH_MAX + 16], api_sock[PATH_MAX + 32];
    snprintf(api_dir, sizeof api_dir, "%s/api", data_dir);
    snprintf(api_sock, sizeof api_sock, "%s/api.sock", api_dir);
    struct stat api_st;
    errno = 0;
    bool api_sock_on = strlen(api_sock) < sizeof((struct sockaddr_un){0}.sun_path);
    if (!api_sock_on)
        log_warn("gustd", "%s is over 107 bytes, too long for a unix socket: no API in containers "
                 "(calls from inside a function fail); use a shorter --data-dir", api_sock);
    else if ((r = mkdir_p(api_dir, 0700)) < 0 || lstat(api_dir, &api_st) < 0 || !S_ISDIR(api_st.st_mode) ||
             api_st.st_uid != geteuid() || chmod(api_dir, 0700) < 0) {
        fprintf(stderr, "gustd: %s must be a directory of ours (mode 0700): %s\n", api_dir,
                strerror(r < 0 ? -r : errno ? errno : EPERM));
        return 1;
    }
    struct worker_config wcfg = {
        .state_root = run_dir,
        .init_path = init_path,
        .cgroup_parent = cgroup_parent,
        .cpu_millicores = (uint32_t)cpu,
        .memory_mib = (uint64_t)memory,
        .max_payload = (size_t)max_payload,
        .no_cgroup_tuning = no_cgroup_tuning,
        .userns_base = (uint64_t)userns_base,
        .userns_size = (uint32_t)userns_size,
        .userns_slots = (uint32_t)userns_slots,
        .gpu_passthrough_declared = gpu_passthrough,
        .no_nvml = no_nvml,
        .gpu_dev_dir = gpu_dev_dir,
        .gpu_driver_dir = gpu_driver_dir,
        .egress_subnet = egress_subnet,
        .egress_allow_private = egress_allow_private,
        .api_socket = api_sock_on ? api_sock : NULL,
    };
    if (userns_check_range((uint64_t)userns_base, (uint64_t)userns_size * (uint64_t)userns_slots, &err) < 0) {
        fprintf(stderr, "gustd: --userns-base/--userns-size/--userns-slots: %s\n", err.msg);
        return 2;
    }
    if (gpus && worker_parse_gpus(gpus, &wcfg, &err) < 0) {
        fprintf(stderr, "gustd: --gpus: %s\n", err.msg);
        return 2;
    }
    if (worker_cleanup_stale(cgroup_parent, run_dir, &err) < 0)
        log_warn("gustd", "cleaning up after a previous run: %s", err.msg);

    struct gustd g = {.sigfd = -1};
    struct store *store = NULL;
    struct worker_local *worker = NULL;
    struct worker_build_lane lanes[2];
    struct api_ctx *routes = NULL;
    struct api_web *web = NULL;
    int rc = 1;
    snprintf(path, sizeof path, "%s/gust.db", data_dir);
    if (store_open(path, &store, &err) < 0) {
        fprintf(stderr, "gustd: %s\n", err.msg);
        goto out;
    }
    if ((r = ev_loop_new(&g.loop)) < 0) {
        fprintf(stderr, "gustd: event loop: %s\n", strerror(-r));
        goto out;
    }
    if (worker_local_new(g.loop, &wcfg, &worker, &err) < 0) {
        fprintf(stderr, "gustd: worker: %s\n", err.msg);
        goto out;
    }
    /* Image builds run their steps in sandboxes of this machine's worker: two lanes,
     * so two builds (or a build and a deploy's build) run steps at once on 2+ cores. */
    for (size_t i = 0; i < ARRAY_LEN(lanes); i++) {
        struct gerr lerr;
        if (worker_build_lane_reserve(worker_local_worker(worker), &lanes[i], &lerr) < 0) {
            log_warn("gustd", "image builds: %s", lerr.msg);
            break;
        }
        ccfg.nbuild_lanes++;
    }
    ccfg.build_lanes = lanes;
    if (ctl_new(g.loop, store, &worker_local_ops, worker, &ccfg, &g.ctl, &err) < 0 || ctl_recover(g.ctl, &err) < 0) {
        fprintf(stderr, "gustd: control: %s\n", err.msg);
        goto out;
    }
    routes = api_routes_new(g.ctl, &guard);
    struct http_limits limits = {.max_header_bytes = 64 * 1024, .max_headers = 100, .max_body = (size_t)max_payload};
    if (api_server_listen(g.loop, listen_addr, &limits, api_routes_handle, routes, &g.server, &err) < 0) {
        fprintf(stderr, "gustd: listen on %s: %s\n", listen_addr, err.msg);
        goto out;
    }
    if (tls_cert && api_server_use_tls(g.server, tls_cert, tls_key, &err) < 0) {
        fprintf(stderr, "gustd: %s\n", err.msg);
        goto out;
    }
    api_server_on_status(g.server, api_routes_count, routes);
    if (metrics_listen) {
        /* Plain HTTP, no token: loopback only (checked above). */
        if (api_server_listen(g.loop, metrics_listen, &limits, api_routes_metrics_handle, routes, &g.metrics, &err) <
            0) {
            fprintf(stderr, "gustd: --metrics-listen %s: %s\n", metrics_listen, err.msg);
            goto out;
        }
        api_server_on_status(g.metrics, api_routes_count, routes);
        fprintf(stderr, "gustd: metrics on %s (port %d), path /metrics\n", metrics_listen,
                api_server_port(g.metrics));
    }
    /* Plain HTTP: the socket never leaves this machine. */
    if (api_sock_on && api_server_listen_unix(g.loop, api_sock, 0666, &limits, api_routes_handle, routes, &g.sock, &err) < 0) {
        fprintf(stderr, "gustd: API socket: %s\n", err.msg);
        goto out;
    }
    if (g.sock)
        api_server_on_status(g.sock, api_routes_count, routes);
    if (!tls_cert && !loopback)
        log_warn("gustd",
                 "--insecure-listen: serving plain HTTP on %s, reachable from the network; requests, answers "
                 "and tokens travel unencrypted (use --tls-cert/--tls-key)",
                 listen_addr);
    size_t conns_cap = fit_max_connections((size_t)max_conns, max_conns_given, (uint64_t)userns_slots);
    api_server_set_max_conns(g.server, conns_cap);
    /* Containers connect here: the same cap, so that code inside cannot take every fd. */
    if (g.sock)
        api_server_set_max_conns(g.sock, conns_cap);
    if (web_listen) {
        /* A second server of the same code, with the web handler and its own body limit. */
        struct api_web_config wc = {.guard = &guard, .domain = web_domain, .tls = tls_cert != NULL};
        web = api_web_new(g.loop, g.ctl, &wc);
        struct http_limits wl = {.max_header_bytes = 64 * 1024, .max_headers = 100, .max_body = (size_t)web_max_body};
        if (api_server_listen(g.loop, web_listen, &wl, api_web_handle, web, &g.web, &err) < 0) {
            fprintf(stderr, "gustd: --web-listen %s: %s\n", web_listen, err.msg);
            goto out;
        }
        /* Bodies go on to the call as they arrive (proto/web.h "Streamed bodies"). */
        api_server_stream_bodies(g.web, true);
        if (tls_cert && api_server_use_tls(g.web, tls_cert, tls_key, &err) < 0) {
            fprintf(stderr, "gustd: %s\n", err.msg);
            goto out;
        }
        api_server_set_max_conns(g.web,
                                 fit_max_connections((size_t)max_conns, max_conns_given, (uint64_t)userns_slots));
        char whost[256], base[300], port[8];
        snprintf(whost, sizeof whost, "%s", web_listen);
        char *wc_colon = strrchr(whost, ':');
        if (wc_colon)
            *wc_colon = '\0';
        int wport = api_server_port(g.web);
        bool default_port = wport == (tls_cert ? 443 : 80);
        snprintf(port, sizeof port, "%d", wport);
        snprintf(base, sizeof base, "%s://%s:%d", tls_cert ? "https" : "http", whost[0] ? whost : "127.0.0.1", wport);
        ctl_web_set_urls(g.ctl, base, web_domain, tls_cert ? "https" : "http", default_port ? "" : port);
        fprintf(stderr, "gustd: web endpoints on %s\n", base);
    }
    g.sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (g.sigfd < 0 || ev_io_add(g.loop, g.sigfd, EV_READ, on_signal, &g) < 0) {
        fprintf(stderr, "gustd: signalfd: %s\n", strerror(errno));
        goto out;
    }
    const struct worker_config *cap = worker_capacity(worker_local_worker(worker));
    char host[256];
    snprintf(host, sizeof host, "%s", listen_addr);
    char *colon = strrchr(host, ':');
    if (colon)
        *colon = '\0';
    fprintf(stderr, "gustd: listening on %s://%s:%d (data %s, %u millicores, %llu MiB, %d GPUs)\n",
            tls_cert ? "https" : "http", host[0] ? host : "127.0.0.1", api_server_port(g.server), data_dir,
            cap->cpu_millicores,
            (unsigned long long)cap->memory_mib, cap->ngpus);
    if ((r = ev_run(g.loop)) < 0) {
        fprintf(stderr, "gustd: event loop failed: %s\n", strerror(-r));
        goto out;
    }
    rc = 0;
    log_info("gustd", "stopped");
out:
    if (g.web)
        api_server_free(g.web);
    api_server_free(g.sock);
    api_server_free(g.metrics);
    if (g.server)
        api_server_free(g.server);
    if (g.ctl)
        ctl_free(g.ctl);
    api_routes_free(routes);
    api_web_free(web);
    worker_local_free(worker);
    if (g.sigfd >= 0)
        close(g.sigfd);
    if (g.loop)
        ev_loop_free(g.loop);
    if (store)
        store_close(store);
    return rc;
}
