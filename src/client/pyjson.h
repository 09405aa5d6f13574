/* JSON for Python functions: the form in which clients other than the Python SDK
 * (the CLI's call, spawn and map) give a Python function its arguments and get its
 * result, and the parts of a Python runner's error text.
 *
 * A Python function is one the SDK deployed: its command runs the SDK's runner
 * (`python3 -m gust._container.runner FILE QUALNAME`, sdk/python/gust/_container/
 * runner.py). The SDK sends it pickle((args, kwargs)) and gets pickle(result). An input
 * that starts with GUST_PY_JSON_TAG is JSON instead:
 *
 *     GUST_PY_JSON_TAG {"args": [...], "kwargs": {...}}
 *
 * and the runner answers it with GUST_PY_JSON_TAG and the result as JSON. A failure is
 * an error whose text is "Type: message\nGUST_PY_EXC_TAG<pickled exception, base64>\n
 * <remote traceback>" for either input form.
 *
 * The tags are mirrored in sdk/python/gust/_container/proto.py (JSON_TAG, EXC_TAG);
 * scripts/check-proto-py.py compares the two. */
#ifndef GUST_CLIENT_PYJSON_H
#define GUST_CLIENT_PYJSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"
#include "base/error.h"

/* The JSON input and result tag. Its first byte, NUL, is no pickle opcode (pickle's
 * opcodes are printable ASCII and 0x80..0x98), so no pickle starts with it and the
 * runner tells the two apart by the first bytes alone. */
#define GUST_PY_JSON_TAG "\0GUSTJSON1\n"
#define GUST_PY_JSON_TAG_LEN (sizeof GUST_PY_JSON_TAG - 1)
/* Starts the line of a Python runner's error text that holds the pickled exception. */
#define GUST_PY_EXC_TAG "GUSTEXC1:"
/* The module the SDK's functions run (`python3 -m` it): how a Python function is told. */
#define GUST_PY_RUNNER_MODULE "gust._container.runner"
/* The most bytes of JSON one input may have: gustd's default --max-payload, which a
 * larger input would pass anyway; it also bounds what jansson holds while checking it
 * (several times the text). */
#define GUST_PY_JSON_MAX ((size_t)64 << 20)

/* How the JSON the user gives maps to the arguments. */
enum gust_py_args {
    GUST_PY_ONE_ARG, /* the value is the one positional argument; no input: none */
    GUST_PY_SPREAD,  /* an array is the positional arguments, an object the keyword ones */
};

/* Whether fn (an object of GET /v1/functions) is a Python function: its spec's command
 * runs "-m GUST_PY_RUNNER_MODULE". */
bool gust_py_is_function(json_t *fn);

/* Appends to out the tagged input for the user's JSON text[0..len) (surrounding
 * whitespace ignored; empty: no arguments). Fails with -E2BIG for text longer than
 * GUST_PY_JSON_MAX, -EINVAL for text that is not one JSON value or, with
 * GUST_PY_SPREAD, neither an array nor an object; out is unchanged then. The text
 * goes into the input as it is, so numbers keep every digit. */
int gust_py_json_input(const char *text, size_t len, enum gust_py_args how, struct buf *out, struct gerr *err);

/* Appends to out the NDJSON body of a map (docs/API.md) for ndjson[0..len), one
 * input a line (blank lines skipped, as gustd does): each line's tagged input
 * (gust_py_json_input) as {"b64": "..."}. Errors as gust_py_json_input, naming the
 * line; out may hold the lines before it then. */
int gust_py_map_inputs(const char *ndjson, size_t len, enum gust_py_args how, struct buf *out, struct gerr *err);

/* If out[0..len) is a tagged JSON result whose JSON parses and is one line (as the
 * runner writes it), points *json at that JSON text (*json_len bytes, within out) and
 * returns true; else returns false. */
bool gust_py_json_output(const void *out, size_t len, const char **json, size_t *json_len);

/* The parts of a Python runner's error text, pointers into it. */
struct gust_py_error {
    const char *type;      /* "ValueError" */
    size_t type_len;
    const char *message;   /* "ValueError: remote says no" (may span lines) */
    size_t message_len;
    const char *traceback; /* "Traceback (most recent call last):\n..." or "" */
    size_t traceback_len;
};

/* Splits msg[0..len) into its parts when it is a Python runner's error text (it has a
 * line that starts with GUST_PY_EXC_TAG); else returns false. A text cut short keeps
 * what it has: no traceback when the cut falls in the tag's line. */
bool gust_py_error_split(const char *msg, size_t len, struct gust_py_error *e);

#endif
