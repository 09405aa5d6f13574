/* warmcall: sequential warm-call latency over one HTTP/1.1 keep-alive connection.
 *
 * usage: warmcall HOST PORT PATH N BODY [WARMUP]   ($GUST_TOKEN: the bearer token)
 *
 * Sends WARMUP (default 200) unmeasured, then N measured POST requests with BODY to
 * PATH, one at a time, on one TCP connection (reconnecting only if the server closes
 * it, which is counted). Every response must be 200 and its body must equal BODY (the
 * echo runner echoes its input); anything else is an error: message on stderr, exit 1.
 * Prints one JSON line: {"n", "p50_us", "p99_us", "mean_us", "min_us", "max_us",
 * "reconnects"}.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *g_host;
static int g_port;

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        perror("socket");
        exit(1);
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    if (inet_pton(AF_INET, g_host, &sa.sin_addr) != 1) {
        fprintf(stderr, "warmcall: bad IPv4 address %s\n", g_host);
        exit(1);
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        fprintf(stderr, "warmcall: connect %s:%d: %s\n", g_host, g_port, strerror(errno));
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Receive buffer shared across responses (keep-alive: bytes of the next response may
 * never arrive early since we are strictly sequential, but keep leftovers anyway). */
static char *rbuf;
static size_t rlen, rcap;

static int fill(int fd)
{
    if (rcap - rlen < 65536) {
        rcap = rcap ? rcap * 2 : 1 << 20;
        rbuf = realloc(rbuf, rcap);
        if (!rbuf) {
            perror("realloc");
            exit(1);
        }
    }
    ssize_t n;
    do {
        n = recv(fd, rbuf + rlen, rcap - rlen, 0);
    } while (n < 0 && errno == EINTR);
    if (n <= 0)
        return -1;
    rlen += (size_t)n;
    return 0;
}

static void consume(size_t n)
{
    memmove(rbuf, rbuf + n, rlen - n);
    rlen -= n;
}

/* Reads one response. Returns 0 and sets *status, *close_after, and the body copied
 * into *body and *blen (malloc'd); -1 when the connection closed before a full response. */
static int read_response(int fd, int *status, int *close_after, char **body, size_t *blen)
{
    char *eoh;
    for (;;) {
        if (rlen > 0 && (eoh = memmem(rbuf, rlen, "\r\n\r\n", 4)))
            break;
        if (fill(fd) < 0)
            return -1;
    }
    size_t hlen = (size_t)(eoh - rbuf) + 4;
    if (sscanf(rbuf, "HTTP/1.%*d %d", status) != 1) {
        fprintf(stderr, "warmcall: bad status line: %.60s\n", rbuf);
        exit(1);
    }
    long clen = -1;
    int chunked = 0;
    *close_after = 0;
    /* Walk header lines. */
    char *p = memchr(rbuf, '\n', hlen) + 1;
    while (p < rbuf + hlen - 2) {
        char *e = memchr(p, '\n', (size_t)(rbuf + hlen - p));
        size_t l = (size_t)(e - p);
        if (l >= 15 && strncasecmp(p, "content-length:", 15) == 0)
            clen = strtol(p + 15, NULL, 10);
        else if (l >= 18 && strncasecmp(p, "transfer-encoding:", 18) == 0 && memmem(p, l, "chunked", 7))
            chunked = 1;
        else if (l >= 11 && strncasecmp(p, "connection:", 11) == 0 && memmem(p, l, "close", 5))
            *close_after = 1;
        p = e + 1;
    }
    consume(hlen);
    if (!chunked) {
        if (clen < 0) {
            fprintf(stderr, "warmcall: response without Content-Length or chunked\n");
            exit(1);
        }
        while (rlen < (size_t)clen)
            if (fill(fd) < 0)
                return -1;
        *body = malloc((size_t)clen + 1);
        memcpy(*body, rbuf, (size_t)clen);
        *blen = (size_t)clen;
        consume((size_t)clen);
        return 0;
    }
    size_t cap = 256, len = 0;
    char *b = malloc(cap);
    for (;;) {
        char *nl;
        while (!(nl = memmem(rbuf, rlen, "\r\n", 2)))
            if (fill(fd) < 0)
                return -1;
        size_t csz = strtoul(rbuf, NULL, 16);
        consume((size_t)(nl - rbuf) + 2);
        while (rlen < csz + 2)
            if (fill(fd) < 0)
                return -1;
        if (csz == 0) {
            consume(2); /* no trailers expected */
            break;
        }
        if (len + csz > cap) {
            while (len + csz > cap)
                cap *= 2;
            b = realloc(b, cap);
        }
        memcpy(b + len, rbuf, csz);
        len += csz;
        consume(csz + 2);
    }
    *body = b;
    *blen = len;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array. */
static double pct(const double *v, int n, double p)
{
    int k = (int)(p / 100.0 * n + 0.999999);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return v[k - 1];
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: warmcall HOST PORT PATH N BODY [WARMUP]\n");
        return 2;
    }
    g_host = argv[1];
    g_port = atoi(argv[2]);
    const char *path = argv[3];
    int n = atoi(argv[4]);
    const char *body = argv[5];
    int warmup = argc > 6 ? atoi(argv[6]) : 200;
    if (n < 1 || warmup < 0) {
        fprintf(stderr, "warmcall: bad N or WARMUP\n");
        return 2;
    }
    size_t bodylen = strlen(body);
    /* $GUST_TOKEN: sent as the bearer token of every call (gustd checks it on each). */
    const char *token = getenv("GUST_TOKEN");
    char auth[512] = "";
    if (token && *token)
        snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", token);
    char req[4096];
    int reqlen = snprintf(req, sizeof req,
                          "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/octet-stream\r\n"
                          "%sContent-Length: %zu\r\n\r\n%s",
                          path, g_host, g_port, auth, bodylen, body);
    if (reqlen <= 0 || (size_t)reqlen >= sizeof req) {
        fprintf(stderr, "warmcall: request too long\n");
        return 2;
    }
    double *lat = calloc((size_t)n, sizeof *lat);
    int fd = dial();
    int reconnects = 0;
    for (int i = 0; i < warmup + n; i++) {
        double t0 = now_us();
        ssize_t off = 0;
        while (off < reqlen) {
            ssize_t w = send(fd, req + off, (size_t)(reqlen - off), MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                fprintf(stderr, "warmcall: send: %s\n", strerror(errno));
                return 1;
            }
            off += w;
        }
        int status, close_after;
        char *rb;
        size_t rbl;
        if (read_response(fd, &status, &close_after, &rb, &rbl) < 0) {
            fprintf(stderr, "warmcall: connection closed before a full response (request %d)\n", i);
            return 1;
        }
        double t1 = now_us();
        if (status != 200) {
            fprintf(stderr, "warmcall: request %d: status %d: %.*s\n", i, status, (int)(rbl > 300 ? 300 : rbl), rb);
            return 1;
        }
        if (rbl != bodylen || memcmp(rb, body, bodylen) != 0) {
            fprintf(stderr, "warmcall: request %d: body mismatch (got %zu bytes: %.*s)\n", i, rbl,
                    (int)(rbl > 100 ? 100 : rbl), rb);
            return 1;
        }
        free(rb);
        if (i >= warmup)
            lat[i - warmup] = t1 - t0;
        if (close_after) {
            close(fd);
            rlen = 0;
            fd = dial();
            reconnects++;
        }
    }
    close(fd);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += lat[i];
    qsort(lat, (size_t)n, sizeof *lat, cmp_double);
    printf("{\"n\": %d, \"p50_us\": %.1f, \"p99_us\": %.1f, \"mean_us\": %.1f, \"min_us\": %.1f, "
           "\"max_us\": %.1f, \"reconnects\": %d}\n",
           n, pct(lat, n, 50), pct(lat, n, 99), sum / n, lat[0], lat[n - 1], reconnects);
    free(lat);
    return 0;
}
