/* Streaming tar reader (see image/tar.h). */
#include "image/tar.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"

#define BLOCK 512

void tar_reader_init(struct tar_reader *t, tar_read_fn read, void *ud)
{
    memset(t, 0, sizeof *t);
    t->read = read;
    t->ud = ud;
}

/* Exactly n bytes, or an error (a short archive is malformed). */
static int read_full(struct tar_reader *t, void *buf, size_t n, struct gerr *err)
{
    uint8_t *p = buf;
    while (n) {
        ssize_t r = t->read(t->ud, p, n);
        if (r < 0)
            return gerr_sys(err, (int)-r, "read the archive");
        if (r == 0)
            return gerr_set(err, EBADMSG, "archive ends in the middle of an entry");
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int skip(struct tar_reader *t, uint64_t n, struct gerr *err)
{
    uint8_t buf[8192];
    while (n) {
        size_t k = n > sizeof buf ? sizeof buf : (size_t)n;
        int r = read_full(t, buf, k, err);
        if (r < 0)
            return r;
        n -= k;
    }
    return 0;
}

/* An octal (or base-256, GNU) numeric field. */
static int parse_num(const uint8_t *f, size_t len, uint64_t *out)
{
    if (f[0] & 0x80) {
        uint64_t v = f[0] & 0x7f;
        for (size_t i = 1; i < len; i++) {
            if (v >> 56)
                return -1;
            v = v << 8 | f[i];
        }
        *out = v;
        return 0;
    }
    uint64_t v = 0;
    size_t i = 0;
    while (i < len && (f[i] == ' ' || f[i] == 0))
        i++;
    if (i == len) {
        *out = 0;
        return 0;
    }
    for (; i < len && f[i] >= '0' && f[i] <= '7'; i++) {
        if (v >> 60)
            return -1;
        v = v * 8 + (uint64_t)(f[i] - '0');
    }
    for (; i < len; i++)
        if (f[i] != ' ' && f[i] != 0)
            return -1;
    *out = v;
    return 0;
}

static void copy_field(char *dst, size_t cap, const uint8_t *src, size_t len)
{
    size_t n = strnlen((const char *)src, len);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Reads a whole special entry (pax header, GNU long name) of size bytes into a
 * malloc'd NUL-terminated buffer. */
static int read_blob(struct tar_reader *t, uint64_t size, char **out, struct gerr *err)
{
    if (size > TAR_PAX_MAX)
        return gerr_set(err, EBADMSG, "extended header of %llu bytes is too large", (unsigned long long)size);
    char *buf = xmalloc((size_t)size + 1);
    int r = read_full(t, buf, (size_t)size, err);
    if (r == 0)
        r = skip(t, (BLOCK - size % BLOCK) % BLOCK, err);
    if (r < 0) {
        free(buf);
        return r;
    }
    buf[size] = '\0';
    *out = buf;
    return 0;
}

struct pax {
    bool has_path, has_link, has_size, has_uid, has_gid;
    char path[TAR_NAME_MAX], link[TAR_NAME_MAX];
    uint64_t size, uid, gid;
};

/* "LEN key=value\n" records. */
static int parse_pax(const char *text, size_t len, struct pax *p, struct gerr *err)
{
    size_t off = 0;
    while (off < len) {
        char *end;
        errno = 0;
        unsigned long n = strtoul(text + off, &end, 10);
        if (errno || end == text + off || *end != ' ' || n < 5 || n > len - off || text[off + n - 1] != '\n')
            return gerr_set(err, EBADMSG, "malformed pax record");
        const char *kv = end + 1, *stop = text + off + n - 1;
        const char *eq = memchr(kv, '=', (size_t)(stop - kv));
        if (!eq)
            return gerr_set(err, EBADMSG, "pax record without '='");
        size_t klen = (size_t)(eq - kv), vlen = (size_t)(stop - eq - 1);
        const char *v = eq + 1;
        if (klen == 4 && !memcmp(kv, "path", 4)) {
            if (vlen >= TAR_NAME_MAX)
                return gerr_set(err, EBADMSG, "pax path too long");
            memcpy(p->path, v, vlen);
            p->path[vlen] = '\0';
            p->has_path = true;
        } else if (klen == 8 && !memcmp(kv, "linkpath", 8)) {
            if (vlen >= TAR_NAME_MAX)
                return gerr_set(err, EBADMSG, "pax linkpath too long");
            memcpy(p->link, v, vlen);
            p->link[vlen] = '\0';
            p->has_link = true;
        } else if ((klen == 4 && !memcmp(kv, "size", 4)) || (klen == 3 && !memcmp(kv, "uid", 3)) ||
                   (klen == 3 && !memcmp(kv, "gid", 3))) {
            char num[32];
            if (vlen == 0 || vlen >= sizeof num)
                return gerr_set(err, EBADMSG, "bad pax number");
            memcpy(num, v, vlen);
            num[vlen] = '\0';
            char *ne;
            errno = 0;
            unsigned long long x = strtoull(num, &ne, 10);
            if (errno || *ne)
                return gerr_set(err, EBADMSG, "bad pax number");
            if (kv[0] == 's') {
                p->size = x;
                p->has_size = true;
            } else if (kv[0] == 'u') {
                p->uid = x;
                p->has_uid = true;
            } else {
                p->gid = x;
                p->has_gid = true;
            }
        }
        off += n;
    }
    return 0;
}

int tar_next(struct tar_reader *t, struct tar_entry *e, struct gerr *err)
{
    int r = skip(t, t->left + t->pad, err);
    if (r < 0)
        return r;
    t->left = t->pad = 0;
    if (t->eof)
        return 0;
    struct pax pax = {0};
    char *longname = NULL, *longlink = NULL;
    for (int guard = 0; guard < 16; guard++) {
        uint8_t h[BLOCK];
        ssize_t got = 0;
        while (got < BLOCK) {
            ssize_t n = t->read(t->ud, h + got, (size_t)(BLOCK - got));
            if (n < 0) {
                r = gerr_sys(err, (int)-n, "read the archive");
                goto out;
            }
            if (n == 0)
                break;
            got += n;
        }
        /* End of archive: a zero block, or (leniently) the end of the input. */
        bool zero = got == BLOCK;
        for (int i = 0; zero && i < BLOCK; i++)
            zero = h[i] == 0;
        if (got == 0 || zero) {
            t->eof = true;
            r = longname || longlink || pax.has_path ? gerr_set(err, EBADMSG, "archive ends after an extended header") : 0;
            goto out;
        }
        if (got < BLOCK) {
            r = gerr_set(err, EBADMSG, "archive ends inside a header");
            goto out;
        }
        uint64_t sum;
        if (parse_num(h + 148, 8, &sum) < 0) {
            r = gerr_set(err, EBADMSG, "bad header checksum field");
            goto out;
        }
        uint64_t calc = 0;
        for (int i = 0; i < BLOCK; i++)
            calc += (i >= 148 && i < 156) ? ' ' : h[i];
        if (calc != sum) {
            r = gerr_set(err, EBADMSG, "header checksum mismatch (not a tar archive?)");
            goto out;
        }
        uint64_t size, mode, uid, gid;
        if (parse_num(h + 124, 12, &size) < 0 || parse_num(h + 100, 8, &mode) < 0 || parse_num(h + 108, 8, &uid) < 0 ||
            parse_num(h + 116, 8, &gid) < 0 || size > TAR_SIZE_MAX) {
            r = gerr_set(err, EBADMSG, "bad numeric field in a header");
            goto out;
        }
        char tf = (char)h[156];
        if (tf == 'x' || tf == 'g' || tf == 'L' || tf == 'K') {
            char *blob = NULL;
            if ((r = read_blob(t, size, &blob, err)) < 0)
                goto out;
            if (tf == 'x')
                r = parse_pax(blob, (size_t)size, &pax, err);
            if (tf == 'L') {
                free(longname);
                longname = blob;
                blob = NULL;
            } else if (tf == 'K') {
                free(longlink);
                longlink = blob;
                blob = NULL;
            }
            free(blob);
            if (r < 0)
                goto out;
            continue; /* 'g' (global) records are ignored */
        }
        memset(e, 0, sizeof *e);
        if (pax.has_path) {
            snprintf(e->name, sizeof e->name, "%s", pax.path);
        } else if (longname) {
            if (strlen(longname) >= TAR_NAME_MAX) {
                r = gerr_set(err, EBADMSG, "long name too long");
                goto out;
            }
            snprintf(e->name, sizeof e->name, "%s", longname);
        } else {
            char name[101], prefix[156];
            copy_field(name, sizeof name, h, 100);
            copy_field(prefix, sizeof prefix, h + 345, 155);
            if (!memcmp(h + 257, "ustar", 5) && prefix[0])
                snprintf(e->name, sizeof e->name, "%s/%s", prefix, name);
            else
                snprintf(e->name, sizeof e->name, "%s", name);
        }
        if (pax.has_link)
            snprintf(e->link, sizeof e->link, "%s", pax.link);
        else if (longlink)
            snprintf(e->link, sizeof e->link, "%.4095s", longlink);
        else
            copy_field(e->link, sizeof e->link, h + 157, 100);
        if (pax.has_size)
            size = pax.size;
        if (size > TAR_SIZE_MAX) {
            r = gerr_set(err, EBADMSG, "entry size too large");
            goto out;
        }
        e->mode = (uint32_t)(mode & 07777);
        e->uid = (uint32_t)(pax.has_uid ? pax.uid : uid);
        e->gid = (uint32_t)(pax.has_gid ? pax.gid : gid);
        switch (tf) {
        case '0': case '\0': case '7': e->type = TAR_FILE; break;
        case '5': e->type = TAR_DIR; break;
        case '2': e->type = TAR_SYMLINK; break;
        case '1': e->type = TAR_HARDLINK; break;
        default: e->type = TAR_OTHER; break;
        }
        /* Old archives mark directories with a trailing slash on a regular entry. */
        size_t nl = strlen(e->name);
        if (e->type == TAR_FILE && nl && e->name[nl - 1] == '/')
            e->type = TAR_DIR;
        e->size = e->type == TAR_FILE ? size : 0;
        /* Data of links and directories (normally none) is skipped with the padding. */
        t->left = e->size;
        t->pad = (BLOCK - size % BLOCK) % BLOCK + (size - e->size);
        r = 1;
        goto out;
    }
    r = gerr_set(err, EBADMSG, "too many extended headers in a row");
out:
    free(longname);
    free(longlink);
    return r;
}

ssize_t tar_read_data(struct tar_reader *t, void *buf, size_t n, struct gerr *err)
{
    if (t->left == 0)
        return 0;
    if (n > t->left)
        n = (size_t)t->left;
    ssize_t r = t->read(t->ud, buf, n);
    if (r < 0)
        return gerr_sys(err, (int)-r, "read the archive");
    if (r == 0)
        return gerr_set(err, EBADMSG, "archive ends in the middle of an entry");
    t->left -= (uint64_t)r;
    return r;
}
