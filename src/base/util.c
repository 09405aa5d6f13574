#include "base/util.h"

#include <dirent.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/xalloc.h"

uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t mono_ms(void)
{
    return mono_ns() / 1000000ull;
}

uint64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double wall_s(void)
{
    return (double)wall_ns() / 1e9;
}

int write_full(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int read_full(int fd, void *data, size_t len)
{
    char *p = data;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EPIPE;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int file_read_all(const char *path, size_t max_len, char **out, size_t *out_len)
{
    AUTO_FD int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t cap = 4096, len = 0;
    char *data = xmalloc(cap);
    for (;;) {
        if (len + 1 >= cap) {
            if (cap > max_len + 1) {
                free(data);
                return -EFBIG;
            }
            data = xrealloc(data, cap * 2);
            cap *= 2;
        }
        ssize_t n = read(fd, data + len, cap - len - 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            free(data);
            return -e;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > max_len) {
            free(data);
            return -EFBIG;
        }
    }
    data[len] = '\0';
    *out = data;
    if (out_len)
        *out_len = len;
    return 0;
}

int file_write_str(const char *path, const char *s)
{
    AUTO_FD int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = strlen(s);
    ssize_t n = write(fd, s, len);
    if (n < 0)
        return -errno;
    return (size_t)n == len ? 0 : -EIO;
}

int file_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp)
        return -ENAMETOOLONG;
    AUTO_FD int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    int r = write_full(fd, data, len);
    if (r < 0) {
        unlink(tmp);
        return r;
    }
    if (rename(tmp, path) < 0) {
        r = -errno;
        unlink(tmp);
        return r;
    }
    return 0;
}

int mkdir_p(const char *path, mode_t mode)
{
    char p[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof p)
        return -ENAMETOOLONG;
    memcpy(p, path, len + 1);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, mode) < 0 && errno != EEXIST)
            return -errno;
        *s = '/';
    }
    if (mkdir(p, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int rm_rf_at(int parent_fd, const char *name, dev_t dev);

/* Removes every entry of the directory open as fd (taken over and closed). */
static int rm_children(int fd, dev_t dev)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    int r = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        int rr = rm_rf_at(dirfd(d), de->d_name, dev);
        if (rr < 0 && r == 0)
            r = rr;
    }
    closedir(d);
    return r;
}

static int rm_rf_at(int parent_fd, const char *name, dev_t dev)
{
    struct stat st;
    if (fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISDIR(st.st_mode))
        return unlinkat(parent_fd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
    if (st.st_dev != dev)
        return -EXDEV;
    int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = rm_children(fd, dev);
    if (unlinkat(parent_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
        r = -errno;
    return r;
}

int rm_rf_in(int parent_fd, const char *name)
{
    struct stat st;
    if (fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    return rm_rf_at(parent_fd, name, st.st_dev);
}

int rm_contents(int dir_fd)
{
    struct stat st;
    if (fstat(dir_fd, &st) < 0)
        return -errno;
    int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    return rm_children(fd, st.st_dev);
}

int rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    return rm_rf_at(AT_FDCWD, path, st.st_dev);
}

/* random_id's bytes come from getrandom a pool at a time: one system call per
 * RANDOM_POOL bytes (25 call ids of 20) instead of one per id, and gust-sim makes
 * millions of ids. The pool is per thread; a forked child empties its copy (pool_forked), so
 * parent and child never hand out the same bytes; handed-out bytes are wiped. */
#define RANDOM_POOL 512
static _Thread_local unsigned char random_pool[RANDOM_POOL];
static _Thread_local size_t random_left;
static pthread_once_t random_once = PTHREAD_ONCE_INIT;

static void pool_forked(void)
{
    explicit_bzero(random_pool, sizeof random_pool);
    random_left = 0;
}

static void pool_register(void)
{
    pthread_atfork(NULL, NULL, pool_forked);
}

static unsigned char random_byte(void)
{
    if (!random_left) {
        pthread_once(&random_once, pool_register);
        size_t got = 0;
        while (got < sizeof random_pool) {
            ssize_t r = getrandom(random_pool + got, sizeof random_pool - got, 0);
            if (r > 0)
                got += (size_t)r;
        }
        random_left = sizeof random_pool;
    }
    unsigned char *p = &random_pool[sizeof random_pool - random_left--];
    unsigned char b = *p;
    *p = 0;
    return b;
}

void random_id(char *out, size_t n)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
    for (size_t i = 0; i < n; i++)
        out[i] = alphabet[random_byte() & 31];
    out[n] = '\0';
}

uint64_t rng_splitmix64(uint64_t *state)
{
    /* Steele, Lea and Flood's constants (SplittableRandom): the golden-ratio step and
     * the two multipliers of the finaliser. */
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int fd_set_nonblock(int fd, bool on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
    return fcntl(fd, F_SETFL, fl) < 0 ? -errno : 0;
}

int parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (!s || !*s)
        return -EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return -EINVAL;
    if (v < min || v > max)
        return -ERANGE;
    *out = v;
    return 0;
}

/* n digits of s as a number into *out; false unless they are all digits. */
static bool digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* RFC 3339: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM), 't'/'z'/' ' accepted as the
 * RFC allows. */
static bool parse_rfc3339(const char *s, double *out)
{
    int y, mo, d, h, mi, sec;
    if (strlen(s) < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !digits(s + 11, 2, &h) ||
        s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &sec))
        return false;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return false;
    const char *p = s + 19;
    double frac = 0, scale = 0.1;
    if (*p == '.') {
        if (!isdigit((unsigned char)p[1]))
            return false;
        for (p++; isdigit((unsigned char)*p); p++, scale /= 10)
            frac += (*p - '0') * scale;
    }
    int offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) || oh > 23 || om > 59)
            return false;
        offset = (oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return false;
    }
    if (*p)
        return false;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = sec};
    time_t t = timegm(&tm);
    if (t == (time_t)-1 || tm.tm_mday != d) /* timegm normalises Feb 30 into March */
        return false;
    *out = (double)t - offset + frac;
    return true;
}

bool parse_when(const char *s, double now, double *out)
{
    if (!s || !*s || strlen(s) > 64)
        return false;
    if (strchr(s, 'T') || strchr(s, 't') || strchr(s, ':'))
        return parse_rfc3339(s, out);
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0 || !isdigit((unsigned char)s[0]))
        return false;
    double mul;
    if (!*end)
        mul = 0;
    else if (!strcmp(end, "s"))
        mul = 1;
    else if (!strcmp(end, "m"))
        mul = 60;
    else if (!strcmp(end, "h"))
        mul = 3600;
    else if (!strcmp(end, "d"))
        mul = 86400;
    else
        return false;
    *out = mul ? now - v * mul : v;
    if (*out < 0)
        *out = 0;
    return true;
}

bool name_is_valid(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 63)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (i == 0 && !alnum)
            return false;
        if (!alnum && c != '_' && c != '-')
            return false;
    }
    return true;
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void base64_encode(const void *data, size_t len, char **out, size_t *out_len)
{
    const unsigned char *in = data;
    size_t olen = 4 * ((len + 2) / 3);
    char *o = xmalloc(olen + 1);
    size_t j = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        o[j++] = b64_alphabet[(v >> 18) & 63];
        o[j++] = b64_alphabet[(v >> 12) & 63];
        o[j++] = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
        o[j++] = i + 2 < len ? b64_alphabet[v & 63] : '=';
    }
    o[j] = '\0';
    *out = o;
    if (out_len)
        *out_len = j;
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int base64_decode(const char *s, size_t len, char **out, size_t *out_len)
{
    if (len % 4)
        return -EINVAL;
    char *o = xmalloc(len / 4 * 3 + 1);
    size_t j = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            char c = s[i + k];
            if (c == '=' && i + 4 == len && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad) {
                free(o);
                return -EINVAL;
            }
            v[k] = b64_value(c);
            if (v[k] < 0) {
                free(o);
                return -EINVAL;
            }
        }
        uint32_t w = ((uint32_t)v[0] << 18) | ((uint32_t)v[1] << 12) | ((uint32_t)v[2] << 6) | (uint32_t)v[3];
        o[j++] = (char)(w >> 16);
        if (pad < 2)
            o[j++] = (char)(w >> 8);
        if (pad < 1)
            o[j++] = (char)w;
    }
    o[j] = '\0';
    *out = o;
    if (out_len)
        *out_len = j;
    return 0;
}

size_t utf8_decode(const void *data, size_t len, uint32_t *cp)
{
    const unsigned char *s = data;
    if (len == 0)
        return 0;
    unsigned char c = s[0];
    size_t n;
    uint32_t v;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        n = 2;
        v = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3;
        v = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4;
        v = c & 0x07;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t k = 1; k < n; k++) {
        if ((s[k] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[k] & 0x3f);
    }
    if ((n == 2 && v < 0x80) || (n == 3 && v < 0x800) || (n == 4 && v < 0x10000) || v > 0x10ffff ||
        (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return n;
}

bool utf8_valid(const void *data, size_t len)
{
    const unsigned char *s = data;
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        size_t n = utf8_decode(s + i, len - i, &cp);
        if (n == 0 || cp == 0)
            return false;
        i += n;
    }
    return true;
}

/* ---- URL query strings ---- */

int hex_digit_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int url_pct_decode(const char *in, size_t len, bool plus_space, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '%') {
            if (i + 2 >= len)
                return -EINVAL;
            int hi = hex_digit_value((unsigned char)in[i + 1]), lo = hex_digit_value((unsigned char)in[i + 2]);
            if (hi < 0 || lo < 0)
                return -EINVAL;
            c = (unsigned char)(hi * 16 + lo);
            if (c == 0)
                return -EINVAL;
            i += 2;
        } else if (c == '+' && plus_space) {
            c = ' ';
        } else if (c == 0) {
            return -EINVAL;
        }
        if (o + 1 >= cap)
            return -ENOSPC;
        out[o++] = (char)c;
    }
    if (cap == 0)
        return -ENOSPC;
    out[o] = '\0';
    return (int)o;
}

int url_query_param(const char *query, const char *name, char *out, size_t cap)
{
    const char *p = query;
    size_t nlen = strlen(name);
    char key[256];
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t plen = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        size_t klen = eq ? (size_t)(eq - p) : plen;
        /* Compare decoded keys; keys too long to decode here cannot match a short name. */
        int kl = url_pct_decode(p, klen, true, key, sizeof key);
        if (kl >= 0 && (size_t)kl == nlen && !memcmp(key, name, nlen)) {
            if (!eq) {
                if (cap == 0)
                    return -ENOSPC;
                out[0] = '\0';
                return 0;
            }
            return url_pct_decode(eq + 1, plen - klen - 1, true, out, cap);
        }
        p += plen;
        if (*p == '&')
            p++;
    }
    return -ENOENT;
}
