/* Small OS helpers used across layers: clocks, whole-buffer I/O, files, ids. */
#ifndef GUST_BASE_UTIL_H
#define GUST_BASE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/error.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Monotonic clock (CLOCK_MONOTONIC) in ns / ms; wall clock (CLOCK_REALTIME) in ns / s. */
uint64_t mono_ns(void);
uint64_t mono_ms(void);
uint64_t wall_ns(void);
double wall_s(void);

/* Writes/reads exactly len bytes, retrying on EINTR/short I/O. Blocking fds only.
 * Return 0, or -errno (read_full returns -EPIPE on early EOF). */
int write_full(int fd, const void *data, size_t len);
int read_full(int fd, void *data, size_t len);

/* Reads a whole file (at most max_len bytes, else -EFBIG) into a malloc'd
 * NUL-terminated buffer. */
int file_read_all(const char *path, size_t max_len, char **out, size_t *out_len);
/* Writes a small string to a file (O_WRONLY|O_CLOEXEC, no create); for sysfs/cgroupfs. */
int file_write_str(const char *path, const char *s);
/* Creates or truncates path with data, atomically via rename of a temp file. */
int file_write_atomic(const char *path, const void *data, size_t len, mode_t mode);

/* mkdir -p with mode; existing directories are fine. */
int mkdir_p(const char *path, mode_t mode);
/* rm -rf that does not cross mount points; missing path is fine. */
int rm_rf(const char *path);
/* rm_rf of name in the directory parent_fd (symlinks are removed, not followed; never
 * crosses into another filesystem). Missing is fine. */
int rm_rf_in(int parent_fd, const char *name);
/* Removes everything inside the directory dir_fd, keeping the directory. */
int rm_contents(int dir_fd);

/* Fills out with `n` random lowercase base32 characters + NUL (out has n+1 bytes). */
void random_id(char *out, size_t n);

/* splitmix64: the next of a reproducible sequence of 64-bit numbers from *state (a
 * seed); the same seed gives the same sequence on every run. Not for secrets. */
uint64_t rng_splitmix64(uint64_t *state);

/* Sets O_NONBLOCK on fd. */
int fd_set_nonblock(int fd, bool on);

/* A point in time as a person writes it, into Unix seconds: RFC 3339
 * ("2026-12-05T14:00:00Z", "...T14:00:00.5+01:00"), a duration back from now ("90s",
 * "15m", "2h", "7d") or Unix seconds (a plain number). False for anything else. */
bool parse_when(const char *s, double now, double *out);
/* Strict integer parsing: whole string, base 10, range checked. */
int parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);

/* Names made of [A-Za-z0-9_-], 1..63 chars, starting alphanumeric. */
bool name_is_valid(const char *s);

/* Base64 (standard alphabet, padded). Out buffers are malloc'd and NUL-terminated.
 * base64_decode returns 0 or -EINVAL for text that is not base64. */
void base64_encode(const void *data, size_t len, char **out, size_t *out_len);
int base64_decode(const char *s, size_t len, char **out, size_t *out_len);

/* True if data is valid UTF-8 with no NUL bytes. */
bool utf8_valid(const void *data, size_t len);
/* Decodes the UTF-8 sequence at the start of data (len bytes available): returns its
 * length (1 to 4) with the code point in *cp, or 0 (*cp untouched) when len is 0 or the
 * sequence is invalid, truncated, overlong or a surrogate. NUL is a valid sequence. */
size_t utf8_decode(const void *data, size_t len, uint32_t *cp);

/* The value of a hex digit (either case), or -1. */
int hex_digit_value(unsigned char c);
/* Percent-decodes in[0..len) into out (NUL-terminated); with plus_space '+' becomes
 * ' '. Returns the decoded length, -ENOSPC, or -EINVAL (bad escape or NUL). */
int url_pct_decode(const char *in, size_t len, bool plus_space, char *out, size_t cap);
/* The first parameter called name (compared after decoding; '+' is a space) of a raw
 * query string ("a=1&b=x%20y", without '?') into out (NUL-terminated). Returns the
 * value length, -ENOENT if absent, -ENOSPC if it does not fit in cap, -EINVAL if badly
 * encoded or it decodes to a NUL. A bare "name" has the value "". */
int url_query_param(const char *query, const char *name, char *out, size_t cap);

#endif
