/* Allocation with one failure policy (docs/ARCHITECTURE.md "Allocation failure"): an
 * allocation that fails prints what was asked for and aborts the process, as crun's
 * xmalloc and redis's zmalloc do. Callers therefore never see NULL and carry no ENOMEM
 * branches. Sizes that a client controls are bounded before they reach these (each
 * parser states its bound), so a failure here means the machine is out of memory, not
 * that a request was too large. */
#ifndef GUST_BASE_XALLOC_H
#define GUST_BASE_XALLOC_H

#include <stddef.h>

/* Reports the failed request on stderr and aborts. */
__attribute__((noreturn)) void xalloc_die(size_t bytes);

/* As malloc/calloc/realloc/strdup/strndup, never NULL. xmalloc(0) and xrealloc(p, 0)
 * return a unique pointer (a 1-byte block), never NULL; xcalloc checks n * size for
 * overflow (an overflow is a caller bug and also aborts). */
void *xmalloc(size_t bytes) __attribute__((malloc, returns_nonnull));
void *xcalloc(size_t n, size_t size) __attribute__((malloc, returns_nonnull));
void *xrealloc(void *p, size_t bytes) __attribute__((returns_nonnull));
/* xrealloc of p to n elements of size bytes, overflow-checked. */
void *xreallocarray(void *p, size_t n, size_t size) __attribute__((returns_nonnull));
char *xstrdup(const char *s) __attribute__((malloc, returns_nonnull));
char *xstrndup(const char *s, size_t n) __attribute__((malloc, returns_nonnull));
/* A malloc'd copy of len bytes, with a NUL after them (so text can be used as a string). */
void *xmemdup(const void *p, size_t len) __attribute__((malloc, returns_nonnull));
/* A malloc'd formatted string. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2), malloc, returns_nonnull));

#endif
