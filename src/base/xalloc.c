#include "base/xalloc.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void xalloc_die(size_t bytes)
{
    /* No stdio buffers and no allocation on this path: the heap is what failed. */
    char msg[96];
    int n = snprintf(msg, sizeof msg, "gust: out of memory (allocating %zu bytes); aborting\n", bytes);
    if (n > 0) {
        ssize_t w = write(STDERR_FILENO, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
        (void)w;
    }
    abort();
}

void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p)
        xalloc_die(bytes);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total))
        xalloc_die(SIZE_MAX);
    void *p = calloc(total ? n : 1, total ? size : 1);
    if (!p)
        xalloc_die(total);
    return p;
}

void *xrealloc(void *p, size_t bytes)
{
    void *q = realloc(p, bytes ? bytes : 1);
    if (!q)
        xalloc_die(bytes);
    return q;
}

void *xreallocarray(void *p, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total))
        xalloc_die(SIZE_MAX);
    return xrealloc(p, total);
}

char *xstrdup(const char *s)
{
    return xmemdup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    return xmemdup(s, strnlen(s, n));
}

void *xmemdup(const void *p, size_t len)
{
    if (len == SIZE_MAX)
        xalloc_die(len);
    char *q = xmalloc(len + 1);
    if (len)
        memcpy(q, p, len);
    q[len] = '\0';
    return q;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        xalloc_die(strlen(fmt));
    return s;
}
