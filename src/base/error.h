/* Error objects shared by every layer.
 *
 * Contract: a function that can fail takes `struct gerr *err` last and returns a
 * negative errno on failure (0 or a non-negative value on success). On failure it has
 * filled *err with the same code and a human message naming what went wrong and,
 * where it is the user's input, what to fix. `err` may be NULL when the caller only
 * wants the code. Callers add context with gerr_prefix() as the error travels up.
 */
#ifndef GUST_BASE_ERROR_H
#define GUST_BASE_ERROR_H

#include <stddef.h>

#define GERR_MSG_MAX 512

struct gerr {
    int code;                 /* positive errno value */
    char msg[GERR_MSG_MAX];
};

/* Fills *err (if non-NULL) and returns -code, so `return gerr_set(err, EINVAL, ...)`
 * works. code must be > 0. */
int gerr_set(struct gerr *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* As gerr_set, appending ": strerror(code)". */
int gerr_sys(struct gerr *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "context: " to the message already in *err; returns -err->code. */
int gerr_prefix(struct gerr *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void gerr_clear(struct gerr *err);

#endif
