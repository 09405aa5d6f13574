/* Growable byte buffer. Binary safe; always keeps a NUL after `len` so text users
 * can treat data as a C string. A zeroed struct buf is a valid empty buffer. */
#ifndef GUST_BASE_BUF_H
#define GUST_BASE_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data;
    size_t len;
    size_t cap;
};

/* Ensures room for `extra` more bytes (+ NUL). Growth goes through xrealloc, so
 * allocation failure aborts (base/xalloc.h), so growing cannot fail. */
void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *data, size_t len);
void buf_append_str(struct buf *b, const char *s);
/* Appends formatted text. Returns 0, or -EINVAL when fmt cannot be formatted (an
 * encoding error in vsnprintf); b is unchanged then. */
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Removes the first n bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);
void buf_reset(struct buf *b);
void buf_free(struct buf *b);
/* Hands the storage to the caller (NUL-terminated, may be NULL if empty); b is empty after. */
char *buf_steal(struct buf *b, size_t *len_out);

static inline void cleanup_buf(struct buf *b)
{
    buf_free(b);
}
#define AUTO_BUF __attribute__((cleanup(cleanup_buf)))

#endif
