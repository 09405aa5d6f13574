/* libFuzzer target: a volume's change lists as clients send them (POST
 * /v1/volumes/NAME/files: cas_changes_check) and their application to a manifest
 * (cas_manifest_apply). A list that validates must apply within its bound, and the
 * manifest it makes must pass the manifest parser, as a stored one must. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cas/cas.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Keeps each run small: the applied tree is bounded like a volume's. */
#define FUZZ_MAX_ENTRIES 1000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *changes = json_loadb((const char *)data, size, 0, NULL);
    if (!changes)
        return 0;
    struct gerr err;
    if (cas_changes_check(changes, &err) == 0) {
        json_t *base = json_loads("{\"gust_manifest\":1,\"config\":{},\"entries\":["
                                  "{\"path\":\".\",\"type\":\"dir\",\"mode\":493,\"uid\":0,\"gid\":0},"
                                  "{\"path\":\"a\",\"type\":\"dir\",\"mode\":493,\"uid\":0,\"gid\":0},"
                                  "{\"path\":\"a/f\",\"type\":\"file\",\"mode\":420,\"uid\":0,\"gid\":0,\"size\":0,"
                                  "\"chunks\":[\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"]},"
                                  "{\"path\":\"a/h\",\"type\":\"hardlink\",\"mode\":420,\"uid\":0,\"gid\":0,"
                                  "\"target\":\"a/f\"}]}",
                                  0, NULL);
        json_t *out = NULL;
        if (cas_manifest_apply(base, changes, FUZZ_MAX_ENTRIES, &out, &err) == 0) {
            char *text = json_dumps(out, JSON_COMPACT);
            json_t *check = NULL;
            if (!text || cas_manifest_parse(text, strlen(text), &check, &err) < 0)
                __builtin_trap();
            json_decref(check);
            free(text);
            json_decref(out);
        }
        json_decref(base);
    }
    json_decref(changes);
    return 0;
}
