/* libFuzzer target: JSON for Python functions (src/client/pyjson.c) on arbitrary
 * bytes. The first byte picks the argument mapping; the rest is taken as a call's
 * input, as map's NDJSON lines, as a runner's answer and as a runner's error text.
 * Checks: an input that is accepted is the tag, then {"args": [...], "kwargs": {...}}
 * that parses as JSON with those types; a refused one leaves the output alone and
 * says why; a map line is {"b64": ...} of such an input; an accepted answer is one
 * line of JSON inside the bytes; error parts lie inside the text, in order. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/util.h"
#include "client/pyjson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts unless in[0..len) is a tagged input whose JSON is an object of an "args"
 * array and a "kwargs" object. */
static void check_input(const char *in, size_t len)
{
    if (len < GUST_PY_JSON_TAG_LEN || memcmp(in, GUST_PY_JSON_TAG, GUST_PY_JSON_TAG_LEN))
        abort();
    json_t *v = json_loadb(in + GUST_PY_JSON_TAG_LEN, len - GUST_PY_JSON_TAG_LEN,
                           JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, NULL);
    if (!json_is_array(json_object_get(v, "args")) || !json_is_object(json_object_get(v, "kwargs")) ||
        json_object_size(v) != 2)
        abort();
    json_decref(v);
}

static void check_in_text(const char *text, size_t len, const char *part, size_t part_len)
{
    if (part < text || part + part_len > text + len)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum gust_py_args how = data[0] & 1 ? GUST_PY_SPREAD : GUST_PY_ONE_ARG;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    struct buf b = {0};
    struct gerr err;
    buf_append(&b, "x", 1);
    if (gust_py_json_input(text, len, how, &b, &err) < 0) {
        if (b.len != 1 || !err.msg[0])
            abort();
    } else {
        check_input(b.data + 1, b.len - 1);
    }
    buf_free(&b);

    if (gust_py_map_inputs(text, len, how, &b, &err) < 0) {
        if (strncmp(err.msg, "line ", 5))
            abort();
    } else {
        for (size_t i = 0; i < b.len;) {
            char *nl = memchr(b.data + i, '\n', b.len - i);
            if (!nl || strncmp(b.data + i, "{\"b64\":\"", 8) || nl[-1] != '}' || nl[-2] != '"')
                abort();
            char *dec = NULL;
            size_t n;
            if (base64_decode(b.data + i + 8, (size_t)(nl - 2 - (b.data + i + 8)), &dec, &n) < 0)
                abort();
            check_input(dec, n);
            free(dec);
            i = (size_t)(nl - b.data) + 1;
        }
    }
    buf_free(&b);

    const char *json;
    size_t jl;
    if (gust_py_json_output(text, len, &json, &jl)) {
        check_in_text(text, len, json, jl);
        if (memchr(json, '\n', jl) || json != text + GUST_PY_JSON_TAG_LEN)
            abort();
    }

    struct gust_py_error e;
    if (gust_py_error_split(text, len, &e)) {
        check_in_text(text, len, e.message, e.message_len);
        check_in_text(text, len, e.type, e.type_len);
        check_in_text(text, len, e.traceback, e.traceback_len);
        if (e.type != text || e.type_len > e.message_len || e.traceback < e.message + e.message_len)
            abort();
    }
    return 0;
}
