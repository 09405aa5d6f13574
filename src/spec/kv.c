/* Dict and queue request bodies (docs/API.md "Dicts", "Queues"): JSON objects from
 * clients, values base64. Every field is checked and every length bounded before
 * anything is decoded, so what a client makes us allocate stays within Modal's limits
 * (a key, value or item of 1 MiB; SPEC_KV_BATCH_MAX of them per request). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "base/xalloc.h"
#include "spec/spec.h"

static const char *kind_name(enum spec_kv_kind kind)
{
    return kind == SPEC_KV_DICT ? "dict" : "queue";
}

/* Sets field_out to field (or "") and err to the message; returns -code. */
static int fail(char field_out[SPEC_FIELD_MAX], struct gerr *err, int code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail(char field_out[SPEC_FIELD_MAX], struct gerr *err, int code, const char *field, const char *fmt, ...)
{
    snprintf(field_out, SPEC_FIELD_MAX, "%s", field ? field : "");
    char msg[GERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    gerr_set(err, code, "%s", msg);
    return -code;
}

void spec_kv_req_free(struct spec_kv_req *r)
{
    free(r->key);
    free(r->value);
    free(r->after_key);
    for (size_t i = 0; i < r->nvalues; i++) {
        free((void *)r->values[i].data);
        free(r->keys ? (void *)r->keys[i].data : NULL);
    }
    free(r->values);
    free(r->keys);
    memset(r, 0, sizeof *r);
}

/* The longest base64 text of SPEC_KV_VALUE_MAX bytes: checked before decoding, so that a
 * client cannot make us decode (allocate) more than the limit. */
#define B64_TEXT_MAX ((SPEC_KV_VALUE_MAX + 2) / 3 * 4)

/* Decodes the base64 string j (field names it in errors) into *out. */
static int b64_field(json_t *j, const char *field, const char *what, void **out, size_t *len,
                     char field_out[SPEC_FIELD_MAX], struct gerr *err)
{
    if (!json_is_string(j)) {
        fail(field_out, err, EINVAL, field, "%s: must be a base64 string (%s)", field, what);
        return -EINVAL;
    }
    size_t n = json_string_length(j);
    if (n > B64_TEXT_MAX) {
        fail(field_out, err, E2BIG, field, "%s: %s is over the limit of %u bytes (1 MiB)", field, what,
             SPEC_KV_VALUE_MAX);
        return -E2BIG;
    }
    char *data;
    if (base64_decode(json_string_value(j), n, &data, len) < 0) {
        fail(field_out, err, EINVAL, field, "%s: not valid base64", field);
        return -EINVAL;
    }
    if (*len > SPEC_KV_VALUE_MAX) {
        free(data);
        fail(field_out, err, E2BIG, field, "%s: %s is over the limit of %u bytes (1 MiB)", field, what,
             SPEC_KV_VALUE_MAX);
        return -E2BIG;
    }
    *out = data;
    return 0;
}

/* A whole number in [lo, hi] at field, or dflt when absent or null. */
static int int_field(json_t *body, const char *field, int64_t lo, int64_t hi, int64_t dflt, int64_t *out,
                     char field_out[SPEC_FIELD_MAX], struct gerr *err)
{
    json_t *j = json_object_get(body, field);
    if (!j || json_is_null(j)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(j) || json_integer_value(j) < lo || json_integer_value(j) > hi) {
        fail(field_out, err, EINVAL, field, "%s: must be a whole number from %lld to %lld", field, (long long)lo,
             (long long)hi);
        return -EINVAL;
    }
    *out = json_integer_value(j);
    return 0;
}

static int bool_field(json_t *body, const char *field, bool *out, char field_out[SPEC_FIELD_MAX], struct gerr *err)
{
    json_t *j = json_object_get(body, field);
    if (!j || json_is_null(j)) {
        *out = false;
        return 0;
    }
    if (!json_is_boolean(j)) {
        fail(field_out, err, EINVAL, field, "%s: must be true or false", field);
        return -EINVAL;
    }
    *out = json_is_true(j);
    return 0;
}

static int partition_field(json_t *body, struct spec_kv_req *r, char field_out[SPEC_FIELD_MAX], struct gerr *err)
{
    json_t *j = json_object_get(body, "partition");
    r->partition[0] = 0;
    if (!j || json_is_null(j))
        return 0;
    size_t n = json_is_string(j) ? json_string_length(j) : 0;
    if (!json_is_string(j) || n == 0 || n > SPEC_QUEUE_PARTITION_MAX || strlen(json_string_value(j)) != n) {
        fail(field_out, err, EINVAL, "partition",
             "partition: a queue partition key must be 1 to %d bytes (no NUL), or null for the default partition",
             SPEC_QUEUE_PARTITION_MAX);
        return -EINVAL;
    }
    memcpy(r->partition, json_string_value(j), n + 1);
    return 0;
}

/* The fields each operation takes (anything else is refused, naming it). */
struct op_fields {
    enum spec_kv_kind kind;
    const char *op;
    const char *const fields[5];
};
static const struct op_fields op_table[] = {
    {SPEC_KV_DICT, "get", {"key"}},
    {SPEC_KV_DICT, "contains", {"key"}},
    {SPEC_KV_DICT, "pop", {"key"}},
    {SPEC_KV_DICT, "put", {"key", "value", "skip_if_exists"}},
    {SPEC_KV_DICT, "update", {"items"}},
    {SPEC_KV_DICT, "len", {NULL}},
    {SPEC_KV_DICT, "items", {"after", "limit"}},
    {SPEC_KV_DICT, "clear", {NULL}},
    {SPEC_KV_QUEUE, "put", {"values", "partition", "partition_ttl"}},
    {SPEC_KV_QUEUE, "get", {"n", "partition", "timeout"}},
    {SPEC_KV_QUEUE, "len", {"partition", "total"}},
    {SPEC_KV_QUEUE, "items", {"partition", "after", "limit"}},
    {SPEC_KV_QUEUE, "clear", {"partition", "all"}},
};

static const struct op_fields *op_find(enum spec_kv_kind kind, const char *op)
{
    for (size_t i = 0; i < ARRAY_LEN(op_table); i++)
        if (op_table[i].kind == kind && !strcmp(op_table[i].op, op))
            return &op_table[i];
    return NULL;
}

/* A list of base64 values (dict update: [key, value] pairs) at field into r. */
static int values_field(json_t *body, const char *field, bool pairs, struct spec_kv_req *r,
                        char field_out[SPEC_FIELD_MAX], struct gerr *err)
{
    json_t *a = json_object_get(body, field);
    if (!json_is_array(a) || json_array_size(a) > SPEC_KV_BATCH_MAX) {
        fail(field_out, err, EINVAL, field, "%s: must be a list of at most %u %s", field, SPEC_KV_BATCH_MAX,
             pairs ? "[key, value] pairs of base64 strings" : "base64 strings");
        return -EINVAL;
    }
    size_t n = json_array_size(a);
    r->values = xcalloc(n ? n : 1, sizeof *r->values);
    if (pairs)
        r->keys = xcalloc(n ? n : 1, sizeof *r->keys);
    for (size_t i = 0; i < n; i++) {
        char f[64];
        json_t *v = json_array_get(a, i);
        if (pairs) {
            if (!json_is_array(v) || json_array_size(v) != 2) {
                snprintf(f, sizeof f, "%s[%zu]", field, i);
                fail(field_out, err, EINVAL, f, "%s: must be a [key, value] pair", f);
                return -EINVAL;
            }
            snprintf(f, sizeof f, "%s[%zu][0]", field, i);
            void *k;
            size_t kl;
            if (b64_field(json_array_get(v, 0), f, "a key", &k, &kl, field_out, err) < 0)
                return -EINVAL;
            r->keys[r->nvalues] = (struct spec_bytes){k, kl};
            v = json_array_get(v, 1);
            snprintf(f, sizeof f, "%s[%zu][1]", field, i);
        } else {
            snprintf(f, sizeof f, "%s[%zu]", field, i);
        }
        void *d;
        size_t dl;
        if (b64_field(v, f, "an item", &d, &dl, field_out, err) < 0) {
            if (pairs)
                free((void *)r->keys[r->nvalues].data);
            return -EINVAL;
        }
        r->values[r->nvalues++] = (struct spec_bytes){d, dl};
    }
    return 0;
}

int spec_kv_req_parse(enum spec_kv_kind kind, const char *op, json_t *body, struct spec_kv_req *r,
                      char field_out[SPEC_FIELD_MAX], struct gerr *err)
{
    memset(r, 0, sizeof *r);
    const struct op_fields *of = op_find(kind, op);
    if (!of) {
        fail(field_out, err, ENOENT, NULL, "a %s has no operation '%s'", kind_name(kind), op);
        return -ENOENT;
    }
    if (!json_is_object(body)) {
        fail(field_out, err, EINVAL, NULL, "the body must be a JSON object");
        return -EINVAL;
    }
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v) {
        bool known = false;
        for (size_t i = 0; i < ARRAY_LEN(of->fields) && of->fields[i] && !known; i++)
            known = !strcmp(of->fields[i], k);
        if (!known) {
            fail(field_out, err, EINVAL, k, "%s: not a field of %s %s", k, kind_name(kind), op);
            return -EINVAL;
        }
    }
    int rc = 0;
    json_t *j;
    if (kind == SPEC_KV_DICT) {
        if ((j = json_object_get(body, "key")) || !strcmp(op, "get") || !strcmp(op, "contains") || !strcmp(op, "pop") ||
            !strcmp(op, "put"))
            rc = b64_field(j, "key", "a key", &r->key, &r->klen, field_out, err);
        if (rc == 0 && !strcmp(op, "put"))
            rc = b64_field(json_object_get(body, "value"), "value", "a value", &r->value, &r->vlen, field_out, err);
        if (rc == 0)
            rc = bool_field(body, "skip_if_exists", &r->skip_if_exists, field_out, err);
        if (rc == 0 && !strcmp(op, "update"))
            rc = values_field(body, "items", true, r, field_out, err);
        if (rc == 0 && (j = json_object_get(body, "after")) && !json_is_null(j))
            rc = b64_field(j, "after", "a key", &r->after_key, &r->after_klen, field_out, err);
        if (rc == 0)
            rc = int_field(body, "limit", 1, SPEC_KV_PAGE_MAX, SPEC_KV_PAGE_MAX, &r->limit, field_out, err);
    } else {
        rc = partition_field(body, r, field_out, err);
        if (rc == 0 && !strcmp(op, "put"))
            rc = values_field(body, "values", false, r, field_out, err);
        if (rc == 0)
            rc = int_field(body, "n", 1, SPEC_QUEUE_PARTITION_ITEMS, 1, &r->n, field_out, err);
        if (rc == 0)
            rc = int_field(body, "after", 0, INT64_MAX, 0, &r->after, field_out, err);
        if (rc == 0)
            rc = int_field(body, "limit", 1, SPEC_KV_PAGE_MAX, SPEC_KV_PAGE_MAX, &r->limit, field_out, err);
        if (rc == 0)
            rc = bool_field(body, "total", &r->total, field_out, err);
        if (rc == 0)
            rc = bool_field(body, "all", &r->all, field_out, err);
        /* Modal's client refuses both, rather than letting one win. */
        if (rc == 0 && r->partition[0] && (r->total || r->all))
            rc = fail(field_out, err, EINVAL, r->total ? "total" : "all",
                      "%s: must be false when a partition is named (it means every partition)",
                      r->total ? "total" : "all");
        r->partition_ttl = SPEC_QUEUE_TTL_DEFAULT_S;
        j = json_object_get(body, "partition_ttl");
        if (rc == 0 && j && !json_is_null(j)) {
            double t = json_is_number(j) ? json_number_value(j) : -1;
            if (!(t > 0 && t <= SPEC_QUEUE_TTL_MAX_S))
                rc = fail(field_out, err, EINVAL, "partition_ttl",
                          "partition_ttl: must be a number of seconds above 0, at most %d", SPEC_QUEUE_TTL_MAX_S);
            else
                r->partition_ttl = t;
        }
        j = json_object_get(body, "timeout");
        if (rc == 0 && j && !json_is_null(j)) {
            double t = json_is_number(j) ? json_number_value(j) : -1;
            if (!(t >= 0 && t <= SPEC_QUEUE_WAIT_MAX_S)) {
                fail(field_out, err, EINVAL, "timeout",
                     "timeout: must be a number of seconds from 0 to %d (the client asks again to wait longer)",
                     SPEC_QUEUE_WAIT_MAX_S);
                rc = -EINVAL;
            } else {
                r->timeout_ms = (uint64_t)(t * 1000.0);
            }
        }
    }
    if (rc < 0)
        spec_kv_req_free(r);
    return rc;
}
