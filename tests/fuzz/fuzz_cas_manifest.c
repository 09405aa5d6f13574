/* libFuzzer target: image manifests read back from the store (cas_manifest_parse).
 * A manifest that validates must also be safe to walk: every entry has the fields
 * its type needs. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cas/cas.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *m = NULL;
    struct gerr err;
    if (cas_manifest_parse((const char *)data, size, &m, &err) == 0) {
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(m, "entries"), i, e) {
            const char *type = json_string_value(json_object_get(e, "type"));
            const char *path = json_string_value(json_object_get(e, "path"));
            size_t n = path ? strlen(path) : 0;
            bool dotdot = path && (!strcmp(path, "..") || !strncmp(path, "../", 3) || strstr(path, "/../") ||
                                   (n >= 3 && !strcmp(path + n - 3, "/..")));
            if (!type || !path || path[0] == '/' || dotdot)
                __builtin_trap();
        }
        json_decref(m);
    }
    return 0;
}
