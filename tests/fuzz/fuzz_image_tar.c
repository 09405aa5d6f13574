/* libFuzzer target: the tar reader of OCI layers and image tarballs (tar_next,
 * tar_read_data) on arbitrary bytes. Every entry it returns must respect the bounds
 * of image/tar.h. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "image/tar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct mem {
    const uint8_t *p;
    size_t left;
};

static ssize_t mem_read(void *ud, void *buf, size_t n)
{
    struct mem *m = ud;
    /* Short reads on purpose: the reader must cope with any split. */
    if (n > 700)
        n = 700;
    if (n > m->left)
        n = m->left;
    memcpy(buf, m->p, n);
    m->p += n;
    m->left -= n;
    return (ssize_t)n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mem m = {data, size};
    struct tar_reader t;
    tar_reader_init(&t, mem_read, &m);
    struct tar_entry e;
    struct gerr err;
    uint8_t buf[4096];
    for (int i = 0; i < 1000; i++) {
        int r = tar_next(&t, &e, &err);
        if (r <= 0)
            break;
        if (strlen(e.name) >= TAR_NAME_MAX || strlen(e.link) >= TAR_NAME_MAX || e.size > TAR_SIZE_MAX)
            __builtin_trap();
        uint64_t got = 0;
        ssize_t n;
        while ((n = tar_read_data(&t, buf, sizeof buf, &err)) > 0)
            got += (uint64_t)n;
        if (n == 0 && got != e.size)
            __builtin_trap();
    }
    return 0;
}
