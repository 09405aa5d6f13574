/* Shared body of the spec fuzz targets (fuzz_spec_json.c, fuzz_spec_toml.c): run one
 * parser on arbitrary bytes. On success every function must round-trip
 * to_json -> from_json -> to_json unchanged and copy faithfully; on failure the error
 * must be well formed. Header-only: each target is built alone by scripts/build-fuzz.sh. */
#ifndef GUST_SPEC_FUZZ_COMMON_H
#define GUST_SPEC_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "spec/spec.h"

typedef int (*spec_fuzz_parse_fn)(const char *text, size_t len, struct spec_app *out,
                                  char field_out[SPEC_FIELD_MAX], struct gerr *err);

static inline char *spec_fuzz_dump(const struct spec_function *f)
{
    json_t *j = spec_function_to_json(f);
    if (!j)
        abort();
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    if (!s)
        abort();
    return s;
}

static inline int spec_fuzz_one(spec_fuzz_parse_fn parse, const uint8_t *data, size_t size)
{
    struct spec_app app;
    struct gerr err = {0};
    char field[SPEC_FIELD_MAX];
    memset(field, 'x', sizeof field);
    int r = parse((const char *)data, size, &app, field, &err);
    if (r < 0) {
        if (!memchr(field, '\0', sizeof field) || err.msg[0] == '\0' || app.functions || app.name)
            abort();
        /* Messages and paths go into JSON error bodies: they must be valid UTF-8. */
        if (!utf8_valid(err.msg, strlen(err.msg)) || !utf8_valid(field, strlen(field)))
            abort();
        return 0;
    }
    for (size_t i = 0; i < app.nfunctions; i++) {
        char *a = spec_fuzz_dump(&app.functions[i]);
        json_t *j = spec_function_to_json(&app.functions[i]);
        struct spec_function back, copy;
        if (!j || spec_function_from_json(j, &back, field, &err) < 0) {
            fprintf(stderr, "round-trip failed: %s\n", err.msg);
            abort();
        }
        json_decref(j);
        spec_function_copy(&back, &copy);
        char *b = spec_fuzz_dump(&back), *c = spec_fuzz_dump(&copy);
        if (strcmp(a, b) || strcmp(b, c)) {
            fprintf(stderr, "round-trip mismatch:\n%s\n%s\n%s\n", a, b, c);
            abort();
        }
        free(a);
        free(b);
        free(c);
        spec_function_free(&back);
        spec_function_free(&copy);
    }
    spec_app_free(&app);
    return 0;
}

#endif
