/* libFuzzer target: dict and queue request bodies as POST /v1/dicts/{name}/{op} and
 * /v1/queues/{name}/{op} receive them (spec_kv_req_parse), for every operation. What
 * is accepted must be within the limits (values, batch, partition key, page, wait);
 * a refusal says why (its field is named by spec_kv_req_parse; a key of the body may
 * itself be ""), and only an unknown operation is -ENOENT. */
#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "spec/spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct {
    enum spec_kv_kind kind;
    const char *op;
} ops[] = {
    {SPEC_KV_DICT, "get"},     {SPEC_KV_DICT, "contains"}, {SPEC_KV_DICT, "pop"},    {SPEC_KV_DICT, "put"},
    {SPEC_KV_DICT, "update"},  {SPEC_KV_DICT, "len"},      {SPEC_KV_DICT, "items"},  {SPEC_KV_DICT, "clear"},
    {SPEC_KV_QUEUE, "put"},    {SPEC_KV_QUEUE, "get"},     {SPEC_KV_QUEUE, "len"},   {SPEC_KV_QUEUE, "items"},
    {SPEC_KV_QUEUE, "clear"},  {SPEC_KV_QUEUE, "nosuch"},
};

static void check_accepted(enum spec_kv_kind kind, const struct spec_kv_req *r)
{
    if (r->klen > SPEC_KV_VALUE_MAX || r->vlen > SPEC_KV_VALUE_MAX || r->after_klen > SPEC_KV_VALUE_MAX ||
        r->nvalues > SPEC_KV_BATCH_MAX || strlen(r->partition) > SPEC_QUEUE_PARTITION_MAX ||
        r->timeout_ms > SPEC_QUEUE_WAIT_MAX_S * 1000u || r->limit < 1 || r->limit > SPEC_KV_PAGE_MAX ||
        (kind == SPEC_KV_QUEUE && (r->n < 1 || r->n > (int64_t)SPEC_QUEUE_PARTITION_ITEMS)) || r->after < 0)
        __builtin_trap();
    for (size_t i = 0; i < r->nvalues; i++)
        if (r->values[i].len > SPEC_KV_VALUE_MAX || (r->keys && r->keys[i].len > SPEC_KV_VALUE_MAX))
            __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
    if (!body)
        return 0;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        struct spec_kv_req r;
        char field[SPEC_FIELD_MAX];
        struct gerr err;
        int rc = spec_kv_req_parse(ops[i].kind, ops[i].op, body, &r, field, &err);
        if (rc == 0) {
            if (!strcmp(ops[i].op, "nosuch"))
                __builtin_trap();
            check_accepted(ops[i].kind, &r);
        } else if (rc != -ENOENT && json_is_object(body) && !err.msg[0] && rc != -ENOMEM) {
            __builtin_trap();
        } else if (rc == -ENOENT && strcmp(ops[i].op, "nosuch")) {
            __builtin_trap();
        }
        spec_kv_req_free(&r);
    }
    json_decref(body);
    return 0;
}
