/* Echo runner: the long-lived runner example and the benchmark's warm-call target.
 *
 * Inputs: "sleep:N" sleeps N ms then echoes; "fail" reports an error; "crash" aborts;
 * "alloc:N" allocates and touches N MiB then echoes; anything else is echoed as is. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/runner.h"

static int starts_with(const struct runner_input *in, const char *p, size_t n)
{
    return in->len >= n && memcmp(in->data, p, n) == 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Blocks from alloc:N, chained so they stay reachable (and charged) until exit. */
static void *volatile kept;

/* Allocates and touches mib MiB, kept until exit. */
static int alloc_touch(long mib)
{
    if (mib < 0)
        return -1;
    size_t n = ((size_t)mib << 20) + sizeof(void *);
    char *volatile p = malloc(n);
    if (!p)
        return -1;
    for (size_t i = sizeof(void *); i < n; i += 4096)
        p[i] = 1;
    memcpy(p, (const void *)&kept, sizeof(void *));
    kept = p;
    return 0;
}

int main(void)
{
    struct runner r;
    int rc = runner_open(&r);
    if (rc < 0) {
        fprintf(stderr, "echo: runner_open: %s\n", strerror(-rc));
        return 1;
    }
    if (runner_ready(&r) < 0)
        return 1;
    struct runner_input in;
    while ((rc = runner_next(&r, &in)) == 0) {
        if (starts_with(&in, "sleep:", 6)) {
            sleep_ms(strtol((const char *)in.data + 6, NULL, 10));
        } else if (in.len == 4 && !memcmp(in.data, "fail", 4)) {
            rc = runner_fail(&r, in.id, "echo: asked to fail");
            runner_input_free(&in);
            if (rc < 0)
                break;
            continue;
        } else if (in.len == 5 && !memcmp(in.data, "crash", 5)) {
            abort();
        } else if (starts_with(&in, "alloc:", 6)) {
            if (alloc_touch(strtol((const char *)in.data + 6, NULL, 10)) < 0) {
                rc = runner_fail(&r, in.id, "echo: malloc failed");
                runner_input_free(&in);
                if (rc < 0)
                    break;
                continue;
            }
        }
        rc = runner_reply(&r, in.id, in.data, in.len);
        runner_input_free(&in);
        if (rc < 0)
            break;
    }
    runner_close(&r);
    return rc == -EPIPE || rc == 0 ? 0 : 1;
}
