/* libFuzzer target: image definitions (spec_image_parse) on arbitrary JSON. An
 * accepted definition must be a fixed point (its normalised form parses again to the
 * same tree) and name no host path: from_oci, find_links and copy trees are tree ids,
 * copy sources relative without "..". */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/util.h"
#include "spec/spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > SPEC_DOC_MAX)
        return 0;
    json_t *doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!doc)
        return 0;
    char field[SPEC_FIELD_MAX];
    struct gerr err;
    json_t *norm = NULL;
    if (spec_image_parse(doc, "image", &norm, field, &err) == 0) {
        json_t *again = NULL;
        if (spec_image_parse(norm, "image", &again, field, &err) < 0 || !json_equal(norm, again))
            __builtin_trap();
        size_t i;
        json_t *s;
        const char *oci = json_string_value(json_object_get(again, "from_oci"));
        if (oci && !spec_image_id_valid(oci))
            __builtin_trap();
        json_array_foreach(json_object_get(again, "steps"), i, s) {
            json_t *copy = json_object_get(s, "copy");
            const char *w = json_string_value(json_object_get(s, "find_links"));
            const char *why;
            if (w && !spec_image_id_valid(w))
                __builtin_trap();
            if (copy && (!spec_image_id_valid(json_string_value(json_object_get(copy, "tree"))) ||
                         spec_copy_src_check(json_string_value(json_object_get(copy, "src")), &why) < 0))
                __builtin_trap();
        }
        json_decref(again);
        json_decref(norm);
    } else if (!utf8_valid(err.msg, strlen(err.msg)) || !utf8_valid(field, strlen(field))) {
        __builtin_trap(); /* messages go into JSON error bodies */
    }
    json_decref(doc);
    return 0;
}
