/* JSON for Python functions (client/pyjson.h). */
#include "client/pyjson.h"

#include <errno.h>
#include <string.h>

#include "base/cleanup.h"
#include "base/json_cleanup.h"
#include "base/util.h"

/* Python's json module reads integers of any size, which jansson's integers (64 bits)
 * cannot hold: checked as reals, they parse, and the text is what is sent. NUL in
 * strings is fine for Python. */
#define PY_JSON_FLAGS (JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL)

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

bool gust_py_is_function(json_t *fn)
{
    json_t *cmd = json_object_get(json_object_get(fn, "spec"), "command");
    for (size_t i = 0; i + 1 < json_array_size(cmd); i++) {
        const char *a = json_string_value(json_array_get(cmd, i));
        const char *m = json_string_value(json_array_get(cmd, i + 1));
        if (a && m && !strcmp(a, "-m") && !strcmp(m, GUST_PY_RUNNER_MODULE))
            return true;
    }
    return false;
}

/* A short name for the JSON type of v, for messages. */
static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

int gust_py_json_input(const char *text, size_t len, enum gust_py_args how, struct buf *out, struct gerr *err)
{
    if (len > GUST_PY_JSON_MAX)
        return gerr_set(err, E2BIG, "the JSON input is %zu bytes, more than the %zu MiB a Python function takes here",
                        len, GUST_PY_JSON_MAX >> 20);
    while (len && is_space(*text)) {
        text++;
        len--;
    }
    while (len && is_space(text[len - 1]))
        len--;
    const char *args = "[]", *kwargs = "{}";
    size_t args_len = 2, kwargs_len = 2;
    bool wrap = false; /* args is "[" text "]" */
    if (len) {
        json_error_t je;
        json_t *v AUTO_JSON = json_loadb(text, len, PY_JSON_FLAGS, &je);
        if (!v)
            return gerr_set(err, EINVAL, "the input is not JSON (line %d, column %d: %s)", je.line, je.column,
                            je.text);
        if (how == GUST_PY_ONE_ARG) {
            args = text;
            args_len = len;
            wrap = true;
        } else if (json_is_array(v)) {
            args = text;
            args_len = len;
        } else if (json_is_object(v)) {
            kwargs = text;
            kwargs_len = len;
        } else {
            return gerr_set(err, EINVAL,
                            "the input must be a JSON array (the positional arguments) or object (the keyword "
                            "arguments), not %s",
                            json_kind(v));
        }
    }
    buf_append(out, GUST_PY_JSON_TAG, GUST_PY_JSON_TAG_LEN);
    buf_append_str(out, wrap ? "{\"args\":[" : "{\"args\":");
    buf_append(out, args, args_len);
    buf_append_str(out, wrap ? "],\"kwargs\":" : ",\"kwargs\":");
    buf_append(out, kwargs, kwargs_len);
    buf_append_str(out, "}");
    return 0;
}

int gust_py_map_inputs(const char *ndjson, size_t len, enum gust_py_args how, struct buf *out, struct gerr *err)
{
    size_t lineno = 0;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(ndjson + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - ndjson) : len;
        const char *line = ndjson + i;
        size_t n = end - i;
        i = end + 1;
        lineno++;
        /* Blank as gustd counts it (src/api/routes.c): spaces, tabs and CRs only. */
        size_t k = 0;
        while (k < n && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r'))
            k++;
        if (k == n)
            continue;
        AUTO_BUF struct buf one = {0};
        int r = gust_py_json_input(line, n, how, &one, err);
        if (r < 0)
            return gerr_prefix(err, "line %zu", lineno);
        AUTO_FREE char *b64 = NULL;
        size_t b64_len;
        base64_encode(one.data, one.len, &b64, &b64_len);
        buf_append_str(out, "{\"b64\":\"");
        buf_append(out, b64, b64_len);
        buf_append_str(out, "\"}\n");
    }
    return 0;
}

bool gust_py_json_output(const void *out, size_t len, const char **json, size_t *json_len)
{
    if (len < GUST_PY_JSON_TAG_LEN || memcmp(out, GUST_PY_JSON_TAG, GUST_PY_JSON_TAG_LEN))
        return false;
    const char *text = (const char *)out + GUST_PY_JSON_TAG_LEN;
    size_t n = len - GUST_PY_JSON_TAG_LEN;
    /* One line, as the runner writes it, so that it can be a line of map's output. */
    if (memchr(text, '\n', n) || memchr(text, '\r', n))
        return false;
    json_t *v AUTO_JSON = json_loadb(text, n, PY_JSON_FLAGS, NULL);
    if (!v)
        return false;
    *json = text;
    *json_len = n;
    return true;
}

/* The first line of msg[0..len) that starts with s, or NULL. */
static const char *line_starting(const char *msg, size_t len, const char *s)
{
    size_t sl = strlen(s);
    for (size_t i = 0; i + sl <= len;) {
        if (!memcmp(msg + i, s, sl))
            return msg + i;
        const char *nl = memchr(msg + i, '\n', len - i);
        if (!nl)
            break;
        i = (size_t)(nl - msg) + 1;
    }
    return NULL;
}

bool gust_py_error_split(const char *msg, size_t len, struct gust_py_error *e)
{
    const char *tag = line_starting(msg, len, GUST_PY_EXC_TAG);
    if (!tag)
        return false;
    const char *end = msg + len;
    size_t head = (size_t)(tag - msg);
    while (head && is_space(msg[head - 1]))
        head--;
    e->message = msg;
    e->message_len = head;
    /* The runner writes "Type: message": the type is what comes before ": " on the
     * first line (all of that line when there is none). */
    const char *nl = memchr(msg, '\n', head);
    size_t first = nl ? (size_t)(nl - msg) : head;
    e->type = msg;
    e->type_len = first;
    for (size_t i = 0; i + 1 < first; i++)
        if (msg[i] == ':' && msg[i + 1] == ' ') {
            e->type_len = i;
            break;
        }
    const char *blob_end = memchr(tag, '\n', (size_t)(end - tag));
    e->traceback = blob_end ? blob_end + 1 : end;
    e->traceback_len = (size_t)(end - e->traceback);
    while (e->traceback_len && is_space(e->traceback[e->traceback_len - 1]))
        e->traceback_len--;
    return true;
}
