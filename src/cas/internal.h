/* The store's state, shared by the files of src/cas (not for other components). */
#ifndef GUST_CAS_INTERNAL_H
#define GUST_CAS_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <zstd.h>

#include "cas/cas.h"

/* Compression state of one writing thread. */
struct cas_writer {
    ZSTD_CCtx *cctx;
    uint8_t *cbuf;        /* compression output, ZSTD_compressBound(CAS_CHUNK_SIZE) */
    size_t cbuf_cap;
};

/* Returns 0, or -ENOMEM when zstd cannot create its context (zstd allocates it
 * itself; the output buffer comes from xmalloc). */
/* Reads up to CAS_CHUNK_SIZE bytes of fd into buf (fewer only at end of file): the
 * next chunk of a file being stored. *have: how many; 0 or -errno. */
int cas_read_chunk(int fd, uint8_t *buf, size_t *have);
int cas_writer_init(struct cas_writer *w);
void cas_writer_free(struct cas_writer *w);
/* cas_put through w; safe to call from several threads with one writer each
 * (the store's counters are updated atomically). */
int cas_put_with(struct cas *c, struct cas_writer *w, const void *data, size_t len, struct cas_digest *out,
                 struct gerr *err);

struct cas {
    char *root;
    int objects_fd;       /* <root>/objects */
    int tmp_fd;           /* <root>/tmp */
    uint64_t tmp_seq;
    struct cas_stats stats;
    /* cas_put and cas_get may be called from several threads (the event loop and
     * image builds): lock guards w and dctx, the only state they share. */
    pthread_mutex_t lock;
    struct cas_writer w;
    ZSTD_DCtx *dctx;
};

#endif
