/* Store ingest throughput: ingests a directory tree (make bench uses the host's /usr/bin
 * and /usr/lib/x86_64-linux-gnu subset given on the command line) into a fresh
 * content-addressed store, twice: the first pass warms the page cache (and is
 * reported too), the second, into another fresh store, is the number. Prints one JSON
 * object: bytes, files, seconds and MB/s of each pass, and the stored size.
 *
 *   casbench SCRATCH_DIR TREE */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"
#include "cas/cas.h"

/* One ingest into the fresh store scratch/name (removed afterwards only when remove:
 * mass deletions right before the measured pass would make ext4 scan its recently
 * freed inodes on every create, which is not what an image build sees). */
static int pass(const char *scratch, const char *name, const char *tree, struct cas_stats *st, double *secs,
                bool remove)
{
    char root[4096];
    snprintf(root, sizeof root, "%s/%s", scratch, name);
    struct cas *c;
    struct gerr err;
    if (cas_open(root, &c, &err) < 0) {
        fprintf(stderr, "casbench: %s\n", err.msg);
        return -1;
    }
    struct cas_digest m;
    uint64_t t0 = mono_ns();
    int r = cas_ingest_tree(c, tree, NULL, &m, st, &err);
    *secs = (double)(mono_ns() - t0) / 1e9;
    cas_close(c);
    if (r < 0)
        fprintf(stderr, "casbench: %s\n", err.msg);
    if (remove)
        rm_rf(root);
    return r;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: casbench SCRATCH_DIR TREE\n");
        return 2;
    }
    struct cas_stats warm, st;
    double warm_s, secs;
    if (pass(argv[1], "warm", argv[2], &warm, &warm_s, false) < 0)
        return 1;
    /* The warm-up's writes go to disk now, not during the measured pass. */
    sync();
    if (pass(argv[1], "measured", argv[2], &st, &secs, true) < 0)
        return 1;
    char warm_root[4096];
    snprintf(warm_root, sizeof warm_root, "%s/warm", argv[1]);
    rm_rf(warm_root);
    printf("{\"tree\": \"%s\", \"bytes\": %llu, \"files\": %llu, \"objects\": %llu, \"stored_bytes\": %llu, "
           "\"warmup_seconds\": %.3f, \"warmup_mb_per_s\": %.1f, \"seconds\": %.3f, \"mb_per_s\": %.1f}\n",
           argv[2], (unsigned long long)st.bytes_in, (unsigned long long)st.files,
           (unsigned long long)st.objects_written, (unsigned long long)st.bytes_stored, warm_s,
           (double)warm.bytes_in / 1e6 / warm_s, secs, (double)st.bytes_in / 1e6 / secs);
    return 0;
}
