/* A streaming tar reader (POSIX ustar, pax extended headers for long paths, link
 * names, sizes and ids, and GNU long names), for OCI image layers and docker-archive
 * tarballs. Input comes from a read callback, so layers can be gunzipped on the fly.
 * Everything a header claims is bounded: names and link names below 4096 bytes, pax
 * records at most TAR_PAX_MAX bytes, sizes at most TAR_SIZE_MAX. */
#ifndef GUST_IMAGE_TAR_H
#define GUST_IMAGE_TAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/error.h"

#define TAR_NAME_MAX 4096
#define TAR_PAX_MAX (1u << 20)
#define TAR_SIZE_MAX (1ull << 40)

/* Reads up to n bytes into buf: the count, 0 at the end, or -errno. */
typedef ssize_t (*tar_read_fn)(void *ud, void *buf, size_t n);

enum tar_type { TAR_FILE = 1, TAR_DIR, TAR_SYMLINK, TAR_HARDLINK, TAR_OTHER };

struct tar_entry {
    char name[TAR_NAME_MAX];
    char link[TAR_NAME_MAX];
    enum tar_type type;
    uint32_t mode, uid, gid;
    uint64_t size;            /* of the data that follows (files) */
};

struct tar_reader {
    tar_read_fn read;
    void *ud;
    uint64_t left;            /* data bytes of the current entry not yet read */
    uint64_t pad;             /* padding after them */
    bool eof;
};

void tar_reader_init(struct tar_reader *t, tar_read_fn read, void *ud);
/* The next entry: 1, 0 at the end of the archive, or -errno (EBADMSG for a malformed
 * header, with err saying what). Unread data of the previous entry is skipped. */
int tar_next(struct tar_reader *t, struct tar_entry *e, struct gerr *err);
/* Reads the current entry's data: count, 0 when it is all read, or -errno. */
ssize_t tar_read_data(struct tar_reader *t, void *buf, size_t n, struct gerr *err);

#endif
