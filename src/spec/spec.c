/* App/function spec validation, defaults and normalised JSON (contract in spec.h).
 *
 * Validation walks the jansson tree with a path buffer (struct spec_ctx) so that
 * every error names the exact field. At each level unknown fields are reported first,
 * then the known fields in canonical order. Numeric and string fields are described by
 * tables (struct spec_num_field, struct spec_str_field); the numeric tables also drive
 * spec_function_to_json. */
#include <ctype.h>
#include <seccomp.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/cleanup.h"
#include "base/json_cleanup.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "spec/spec.h"

#define SPEC_DEF_IMAGE "busybox"
#define SPEC_DEF_WORKDIR "/"

struct spec_ctx {
    char path[SPEC_FIELD_MAX];
    size_t len;
    char *field_out;
    struct gerr *err;
};

static const char *const spec_app_fields[] = {"app", "functions", NULL};
static const char *const spec_fn_fields[] = {"name",    "kind", "command",   "mode",
                                             "image",   "workdir", "timeout", "env",
                                             "resources", "retries", "scaling", "network",
                                             "security", "secrets", "mounts", "volumes", "snapshot", "web", "schedule", NULL};
static const char *const spec_schedule_fields[] = {"cron", "timezone", "every", NULL};
static const char *const spec_web_fields[] = {"kind", "method", "label", "public", "docs", "port",
                                               "startup_timeout", NULL};
static const char *const spec_mount_fields[] = {"path", "image", NULL};
static const char *const spec_volume_fields[] = {"path", "name", NULL};
static const char *const spec_res_fields[] = {"cpu", "memory", "gpu", "disk", "pids", "open_files", NULL};
static const char *const spec_sec_fields[] = {"deny_syscalls", NULL};
static const char *const spec_retry_fields[] = {"max_retries", "initial_delay",
                                                "backoff_coefficient", "max_delay", NULL};
static const char *const spec_scale_fields[] = {"min_containers", "max_containers",
                                                "buffer_containers", "scaledown_window",
                                                "max_inputs", "target_inputs", "lifetime_inputs", NULL};

static bool spec_is_bare(const char *s)
{
    if (!*s || strlen(s) > 64)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
            return false;
    return true;
}

/* Writes s as a JSON string literal (ASCII only), truncated to about `max` source
 * bytes with "..." inside the quotes when cut. */
static void spec_quote(const char *s, size_t slen, size_t max, char *out, size_t cap)
{
    bool cut = slen > max;
    if (cut) {
        slen = max;
        while (slen > 0 && ((unsigned char)s[slen] & 0xc0) == 0x80)
            slen--;
    }
    AUTO_JSON json_t *tmp = json_stringn(s, slen);
    AUTO_FREE char *d = tmp ? json_dumps(tmp, JSON_ENCODE_ANY | JSON_ENSURE_ASCII) : NULL;
    if (!d) {
        snprintf(out, cap, "\"?\"");
        return;
    }
    size_t dl = strlen(d);
    if (cut && dl >= 1)
        snprintf(out, cap, "%.*s...\"", (int)(dl - 1), d);
    else
        snprintf(out, cap, "%s", d);
}

/* Appends ".key" (or "key" at the root), quoting keys that are not bare. */
static size_t spec_push_key(struct spec_ctx *c, const char *key)
{
    size_t saved = c->len;
    char q[96];
    const char *k = key;
    if (!spec_is_bare(key)) {
        spec_quote(key, strlen(key), 48, q, sizeof q);
        k = q;
    }
    int w = snprintf(c->path + c->len, sizeof c->path - c->len, "%s%s", c->len ? "." : "", k);
    if (w > 0)
        c->len = c->len + (size_t)w < sizeof c->path ? c->len + (size_t)w : sizeof c->path - 1;
    return saved;
}

static size_t spec_push_index(struct spec_ctx *c, size_t i)
{
    size_t saved = c->len;
    int w = snprintf(c->path + c->len, sizeof c->path - c->len, "[%zu]", i);
    if (w > 0)
        c->len = c->len + (size_t)w < sizeof c->path ? c->len + (size_t)w : sizeof c->path - 1;
    return saved;
}

static void spec_pop(struct spec_ctx *c, size_t saved)
{
    c->len = saved;
    c->path[saved] = '\0';
}

/* Fails at the current path: "PATH: what" (just "what" at the root). */
__attribute__((format(printf, 2, 3))) static int spec_fail(struct spec_ctx *c, const char *fmt,
                                                            ...)
{
    char what[GERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (c->field_out)
        snprintf(c->field_out, SPEC_FIELD_MAX, "%s", c->path);
    if (c->len)
        return gerr_set(c->err, EINVAL, "%s: %s", c->path, what);
    return gerr_set(c->err, EINVAL, "%s", what);
}

/* Describes a value for "got ..." in messages. */
static void spec_describe(json_t *v, char *out, size_t cap)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        spec_quote(json_string_value(v), json_string_length(v), 40, out, cap);
        break;
    case JSON_INTEGER:
        snprintf(out, cap, "%lld", (long long)json_integer_value(v));
        break;
    case JSON_REAL: {
        AUTO_FREE char *d = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
        snprintf(out, cap, "%s", d ? d : "a number");
        break;
    }
    case JSON_TRUE:
        snprintf(out, cap, "true");
        break;
    case JSON_FALSE:
        snprintf(out, cap, "false");
        break;
    case JSON_NULL:
        snprintf(out, cap, "null");
        break;
    case JSON_OBJECT:
        snprintf(out, cap, "an object");
        break;
    case JSON_ARRAY:
        snprintf(out, cap, "an array");
        break;
    }
}

/* Joins a NULL-terminated list as "a, b, c" into out (cut to fit cap). */
static void spec_join(const char *const *list, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    for (const char *const *a = list; *a && o < cap; a++) {
        int w = snprintf(out + o, cap - o, "%s%s", o ? ", " : "", *a);
        if (w < 0)
            break;
        o += (size_t)w;
    }
}

/* Fails at the current path with "WHAT GOT": WHAT is formatted from fmt and ends in
 * "got" (e.g. "must be a string, got"); GOT describes the offending value v. */
__attribute__((format(printf, 3, 4))) static int spec_fail_got(struct spec_ctx *c, json_t *v,
                                                                const char *fmt, ...)
{
    char what[GERR_MSG_MAX], got[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    spec_describe(v, got, sizeof got);
    return spec_fail(c, "%s %s", what, got);
}

/* Reports the first key of obj not in allowed. obj may be NULL (an absent section),
 * which has no fields. */
static int spec_check_fields(struct spec_ctx *c, json_t *obj, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        bool ok = false;
        for (const char *const *a = allowed; *a; a++)
            if (!strcmp(*a, key))
                ok = true;
        if (ok)
            continue;
        char list[GERR_MSG_MAX];
        spec_join(allowed, list, sizeof list);
        spec_push_key(c, key);
        return spec_fail(c, "unknown field; allowed: %s", list);
    }
    return 0;
}

/* An optional numeric field of an object, stored in a member of struct spec_function.
 * Absent: def. Otherwise a JSON integer in [min, max] stored as uint32_t or, when
 * `real`, any JSON number in [min, max] stored as double. */
struct spec_num_field {
    const char *key;
    const char *what; /* completes "must be WHAT between MIN and MAX" */
    bool real;
    double min, max, def;
    size_t offset; /* of the uint32_t (or, when real, double) member */
};

#define SPEC_UINT_FIELD(key, what, min, max, def, member) \
    {key, what, false, min, max, def, offsetof(struct spec_function, member)}
#define SPEC_REAL_FIELD(key, what, min, max, def, member) \
    {key, what, true, min, max, def, offsetof(struct spec_function, member)}

static const struct spec_num_field spec_fn_timeout =
    SPEC_UINT_FIELD("timeout", "an integer number of seconds", 1, 86400, 300, timeout_s);
/* resources: cpu and memory (spec_req_lim_fields) come first, then gpu, then disk
 * (canonical order). */
static const struct spec_num_field spec_res_disk =
    SPEC_UINT_FIELD("disk", "an integer number of MiB", 1, 1048576, 512, disk_mib);
/* After disk. */
static const struct spec_num_field spec_res_limits[] = {
    SPEC_UINT_FIELD("pids", "an integer (the most processes and threads at once)", 16, 1048576, 1024, pids_max),
    SPEC_UINT_FIELD("open_files", "an integer (open files per process; 0 = the worker's default)", 0, 1048576, 0,
                    open_files),
};
static const struct spec_num_field spec_retry_nums[] = {
    SPEC_UINT_FIELD("max_retries", "an integer", 0, 10, 0, max_retries),
    SPEC_REAL_FIELD("initial_delay", "a number of seconds", 0, 60, 1.0, initial_delay_s),
    SPEC_REAL_FIELD("backoff_coefficient", "a number", 1, 10, 2.0, backoff_coefficient),
    SPEC_REAL_FIELD("max_delay", "a number of seconds", 0, 600, 60.0, max_delay_s),
};
static const struct spec_num_field spec_scale_nums[] = {
    SPEC_UINT_FIELD("min_containers", "an integer", 0, 1000, 0, min_containers),
    SPEC_UINT_FIELD("max_containers", "an integer", 1, 1000, 10, max_containers),
    SPEC_UINT_FIELD("buffer_containers", "an integer", 0, 1000, 0, buffer_containers),
    /* Default 0, below the minimum: not given, the control's keep-alive policy decides
     * (left out of the normalised JSON). */
    SPEC_UINT_FIELD("scaledown_window", "an integer number of seconds", 1, 86400, 0,
                    scaledown_window_s),
    SPEC_UINT_FIELD("max_inputs", "an integer", 1, 1000, 1, max_inputs),
    /* Default 0, below the minimum: not given, the autoscaler sizes for max_inputs. */
    SPEC_UINT_FIELD("target_inputs", "an integer", 1, 1000, 0, target_inputs),
    /* Modal's function max_inputs: the inputs a container takes before it is replaced
     * (1: single-use containers). Default 0, below the minimum: no limit (left out of
     * the normalised JSON). The bound is only against nonsense; any count works. */
    SPEC_UINT_FIELD("lifetime_inputs", "an integer", 1, 1000000000, 0, lifetime_inputs),
};

static double spec_num_load(const struct spec_function *f, const struct spec_num_field *d)
{
    const char *src = (const char *)f + d->offset;
    return d->real ? *(const double *)src : *(const uint32_t *)src;
}

/* x is within the field's range (so exact as uint32_t for an integer field). */
static void spec_num_store(struct spec_function *f, const struct spec_num_field *d, double x)
{
    char *dst = (char *)f + d->offset;
    if (d->real)
        *(double *)dst = x;
    else
        *(uint32_t *)dst = (uint32_t)x;
}

/* Reads field d of obj (NULL reads as an empty object) into f. */
static int spec_get_num(struct spec_ctx *c, json_t *obj, const struct spec_num_field *d,
                        struct spec_function *f)
{
    json_t *v = json_object_get(obj, d->key);
    if (!v) {
        spec_num_store(f, d, d->def);
        return 0;
    }
    size_t saved = spec_push_key(c, d->key);
    if (d->real) {
        double x = json_is_number(v) ? json_number_value(v) : 0;
        if (!json_is_number(v) || !(x >= d->min && x <= d->max))
            return spec_fail_got(c, v, "must be %s between %g and %g, got", d->what, d->min,
                                 d->max);
        spec_num_store(f, d, x);
    } else {
        if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)d->min ||
            json_integer_value(v) > (json_int_t)d->max)
            return spec_fail_got(c, v, "must be %s between %u and %u, got", d->what,
                                 (uint32_t)d->min, (uint32_t)d->max);
        spec_num_store(f, d, (double)json_integer_value(v));
    }
    spec_pop(c, saved);
    return 0;
}

/* spec_get_num for each of the n fields, in order; stops at the first error. */
static int spec_get_nums(struct spec_ctx *c, json_t *obj, const struct spec_num_field *fields,
                         size_t n, struct spec_function *f)
{
    for (size_t i = 0; i < n; i++) {
        int r = spec_get_num(c, obj, &fields[i], f);
        if (r < 0)
            return r;
    }
    return 0;
}

/* A resource that is both a reservation and a hard limit (resources.cpu and .memory):
 * a plain integer N in num's range, or a pair [REQUEST, LIMIT] of them with
 * REQUEST <= LIMIT. The request lands in num's member and is what the control plane
 * reserves (packing, quotas, billing); the limit lands in limit_offset's uint32_t.
 * A plain N is the request, and also the limit when plain_is_limit (memory keeps
 * meaning both); otherwise (cpu) a plain N sets no limit, stored as 0. */
struct spec_req_lim_field {
    struct spec_num_field num;
    size_t limit_offset;
    bool plain_is_limit;
};

static const struct spec_req_lim_field spec_req_lim_fields[] = {
    {SPEC_UINT_FIELD("cpu", "an integer number of millicores (1000 = one core)", 10, SPEC_MAX_CPU, 125,
                     cpu_millicores),
     offsetof(struct spec_function, cpu_limit_millicores), false},
    {SPEC_UINT_FIELD("memory", "an integer number of MiB", 16, 1048576, 128, memory_mib),
     offsetof(struct spec_function, memory_limit_mib), true},
};

/* One integer of a spec_req_lim_field at the current path; pair says whether it is
 * an element of [request, limit] (which shapes the message). */
static int spec_req_lim_num(struct spec_ctx *c, json_t *v, const struct spec_num_field *d, bool pair,
                            uint32_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)d->min ||
        json_integer_value(v) > (json_int_t)d->max)
        return spec_fail_got(c, v, "must be %s between %u and %u%s, got", d->what, (uint32_t)d->min,
                             (uint32_t)d->max, pair ? "" : ", or a [request, limit] pair of them");
    *out = (uint32_t)json_integer_value(v);
    return 0;
}

static int spec_get_req_lim(struct spec_ctx *c, json_t *obj, const struct spec_req_lim_field *d,
                            struct spec_function *f)
{
    uint32_t *limit = (uint32_t *)((char *)f + d->limit_offset);
    json_t *v = json_object_get(obj, d->num.key);
    uint32_t x[2] = {(uint32_t)d->num.def, 0};
    size_t saved = spec_push_key(c, d->num.key);
    int r;
    if (json_is_array(v)) {
        if (json_array_size(v) != 2)
            return spec_fail(c, "must be a [request, limit] pair, got %zu items", json_array_size(v));
        for (size_t i = 0; i < 2; i++) {
            size_t isaved = spec_push_index(c, i);
            if ((r = spec_req_lim_num(c, json_array_get(v, i), &d->num, true, &x[i])) < 0)
                return r;
            spec_pop(c, isaved);
        }
        if (x[1] < x[0])
            return spec_fail(c, "the limit (%u) is below the request (%u); the request is what is "
                                "reserved and must not exceed the limit",
                             x[1], x[0]);
    } else {
        if (v && (r = spec_req_lim_num(c, v, &d->num, false, &x[0])) < 0)
            return r;
        x[1] = d->plain_is_limit ? x[0] : 0;
    }
    spec_num_store(f, &d->num, x[0]);
    *limit = x[1];
    spec_pop(c, saved);
    return 0;
}

/* String value at the current path (no embedded NUL); hint completes "must be ...". */
static int spec_want_string(struct spec_ctx *c, json_t *v, const char *hint, const char **out)
{
    if (!json_is_string(v))
        return spec_fail_got(c, v, "must be %s, got", hint);
    if (strlen(json_string_value(v)) != json_string_length(v))
        return spec_fail(c, "must not contain NUL characters");
    *out = json_string_value(v);
    return 0;
}

static int spec_missing(struct spec_ctx *c, const char *key, const char *hint)
{
    spec_push_key(c, key);
    return spec_fail(c, "required field is missing; %s", hint);
}

/* A string field of an object: required when `missing` is set, else optional with a
 * default. */
struct spec_str_field {
    const char *key;
    const char *type;             /* completes "must be TYPE" for a value that is not a string */
    bool (*valid)(const char *s); /* the rule for the string's content */
    const char *invalid;          /* message for content failing valid, ending in "got" */
    const char *missing;          /* how to add the field, after "required field is missing; " */
    const char *def;              /* value of an absent optional field */
};

#define SPEC_STR_(x) #x
#define SPEC_STR(x) SPEC_STR_(x)
#define SPEC_NAME_CHARS "1 to 63 characters of letters, digits, '_' and '-'"

static bool spec_is_exec(const char *s)
{
    return !strcmp(s, "exec");
}

static bool spec_is_mode(const char *s)
{
    return !strcmp(s, "per_input") || !strcmp(s, "runner");
}

static bool spec_is_network(const char *s)
{
    return !strcmp(s, "none") || !strcmp(s, "egress");
}

static bool spec_is_abs_path(const char *s)
{
    return s[0] == '/' && strlen(s) <= SPEC_MAX_PATH;
}

static const struct spec_str_field spec_app_name = {
    .key = "app",
    .type = "a string",
    .valid = name_is_valid,
    .invalid = "must be " SPEC_NAME_CHARS ", starting with a letter or digit; got",
    .missing = "name the app, e.g. app = \"demo\"",
};
static const struct spec_str_field spec_fn_name = {
    .key = "name",
    .type = "a string",
    .valid = name_is_valid,
    .invalid = "must be " SPEC_NAME_CHARS ", starting with a letter or digit; got",
    .missing = "give the function a name, e.g. name = \"echo\"",
};
static const struct spec_str_field spec_fn_kind = {
    .key = "kind",
    .type = "\"exec\"",
    .valid = spec_is_exec,
    .invalid = "must be \"exec\" (the only kind supported), got",
    .missing = "set kind = \"exec\"",
};
static const struct spec_str_field spec_fn_mode = {
    .key = "mode",
    .type = "\"per_input\" or \"runner\"",
    .valid = spec_is_mode,
    .invalid = "must be \"per_input\" or \"runner\", got",
    .def = "per_input",
};
static const struct spec_str_field spec_fn_network = {
    .key = "network",
    .type = "\"none\" or \"egress\"",
    .valid = spec_is_network,
    .invalid = "must be \"none\" (loopback only, the default) or \"egress\" (outbound internet "
               "through NAT), got",
    .def = "none",
};
static const struct spec_str_field spec_fn_image = {
    .key = "image",
    .type = "the name of a registered image or an image definition table",
    .valid = name_is_valid,
    .invalid = "must be a registered image name (" SPEC_NAME_CHARS "), got",
    .def = SPEC_DEF_IMAGE,
};
static const struct spec_str_field spec_fn_workdir = {
    .key = "workdir",
    .type = "an absolute path",
    .valid = spec_is_abs_path,
    .invalid = "must be an absolute path (starting with '/', at most " SPEC_STR(SPEC_MAX_PATH)
               " characters), got",
    .def = SPEC_DEF_WORKDIR,
};

/* Reads field d of obj into *out (borrowed from obj, or d->def). */
static int spec_get_str(struct spec_ctx *c, json_t *obj, const struct spec_str_field *d,
                        const char **out)
{
    json_t *v = json_object_get(obj, d->key);
    if (!v) {
        if (d->missing)
            return spec_missing(c, d->key, d->missing);
        *out = d->def;
        return 0;
    }
    size_t saved = spec_push_key(c, d->key);
    int r = spec_want_string(c, v, d->type, out);
    if (r < 0)
        return r;
    if (!d->valid(*out))
        return spec_fail_got(c, v, "%s", d->invalid);
    spec_pop(c, saved);
    return 0;
}

/* Reads string field d of obj into a copy in *out. */
static int spec_get_str_dup(struct spec_ctx *c, json_t *obj, const struct spec_str_field *d,
                            char **out)
{
    const char *s;
    int r = spec_get_str(c, obj, d, &s);
    if (r < 0)
        return r;
    *out = xstrdup(s);
    return 0;
}

/* Enters the optional table `key` of the function object fobj: pushes key onto the path
 * (*saved takes what spec_pop needs) and checks that the value is an object with only
 * `allowed` fields. *out is NULL for an absent section, which the field getters read
 * as an empty object. */
static int spec_enter_section(struct spec_ctx *c, json_t *fobj, const char *key,
                              const char *const *allowed, json_t **out, size_t *saved)
{
    json_t *sec = json_object_get(fobj, key);
    *out = sec;
    *saved = spec_push_key(c, key);
    if (sec && !json_is_object(sec)) {
        char list[GERR_MSG_MAX];
        spec_join(allowed, list, sizeof list);
        return spec_fail_got(c, sec, "must be an object (a [functions.%s] table in TOML) with "
                                     "fields %s; got", key, list);
    }
    return spec_check_fields(c, sec, allowed);
}

/* "H100:2", "a100", ... into g. The value is at the current path. */
static int spec_parse_gpu(struct spec_ctx *c, json_t *v, struct spec_gpu *g)
{
    const char *s;
    int r = spec_want_string(c, v, "a GPU as \"TYPE\" or \"TYPE:COUNT\" (e.g. \"H100:1\")", &s);
    if (r < 0)
        return r;
    const char *colon = strchr(s, ':');
    size_t tlen = colon ? (size_t)(colon - s) : strlen(s);
    if (tlen == 0 || tlen > 31)
        return spec_fail_got(c, v, "must be a GPU as \"TYPE\" or \"TYPE:COUNT\" with a type of 1 "
                                   "to 31 characters (e.g. \"H100:1\"), got");
    for (size_t i = 0; i < tlen; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-')
            return spec_fail_got(c, v, "GPU type may contain only letters, digits and '-' "
                                       "(write \"TYPE\" or \"TYPE:COUNT\", e.g. \"H100:1\"), got");
    uint32_t count = 1;
    if (colon) {
        const char *n = colon + 1;
        size_t nl = strlen(n);
        bool digits = nl >= 1 && nl <= 2 && isdigit((unsigned char)n[0]) &&
                      (nl == 1 || isdigit((unsigned char)n[1]));
        count = digits ? (uint32_t)atoi(n) : 0;
        if (count < 1 || count > 8)
            return spec_fail_got(c, v, "GPU count after ':' must be an integer between 1 and 8, "
                                       "got");
    }
    char up[32];
    for (size_t i = 0; i < tlen; i++)
        up[i] = (char)toupper((unsigned char)s[i]);
    up[tlen] = '\0';
    if (!strcmp(up, "A100"))
        snprintf(up, sizeof up, "A100-40GB");
    memcpy(g->type, up, sizeof g->type);
    g->count = count;
    return 0;
}

/* The optional gpu field of resources: one option or a list of them, preferred first. */
static int spec_parse_gpu_field(struct spec_ctx *c, json_t *res, struct spec_function *f)
{
    json_t *gpu = json_object_get(res, "gpu");
    if (!gpu)
        return 0;
    size_t saved = spec_push_key(c, "gpu");
    int r;
    if (json_is_string(gpu)) {
        if ((r = spec_parse_gpu(c, gpu, &f->gpus[0])) < 0)
            return r;
        f->ngpu_options = 1;
    } else if (json_is_array(gpu)) {
        if (json_array_size(gpu) > SPEC_MAX_GPU_OPTIONS)
            return spec_fail(c, "at most %d GPU options are allowed, got %zu",
                             SPEC_MAX_GPU_OPTIONS, json_array_size(gpu));
        size_t i;
        json_t *g;
        json_array_foreach(gpu, i, g) {
            size_t isaved = spec_push_index(c, i);
            if ((r = spec_parse_gpu(c, g, &f->gpus[i])) < 0)
                return r;
            for (size_t j = 0; j < i; j++)
                if (!strcmp(f->gpus[j].type, f->gpus[i].type) &&
                    f->gpus[j].count == f->gpus[i].count)
                    return spec_fail(c, "duplicate GPU option \"%s:%u\" (same as gpu[%zu]); "
                                        "list each option once", f->gpus[i].type,
                                     f->gpus[i].count, j);
            spec_pop(c, isaved);
            f->ngpu_options = i + 1;
        }
    } else {
        return spec_fail_got(c, gpu, "must be a GPU as \"TYPE\" or \"TYPE:COUNT\" (e.g. "
                                     "\"H100:1\") or a list of them, preferred first; got");
    }
    spec_pop(c, saved);
    return 0;
}

static int spec_parse_resources(struct spec_ctx *c, json_t *fobj, struct spec_function *f)
{
    json_t *res;
    size_t saved;
    int r = spec_enter_section(c, fobj, "resources", spec_res_fields, &res, &saved);
    for (size_t i = 0; r == 0 && i < ARRAY_LEN(spec_req_lim_fields); i++)
        r = spec_get_req_lim(c, res, &spec_req_lim_fields[i], f);
    if (r < 0 || (r = spec_parse_gpu_field(c, res, f)) < 0 ||
        (r = spec_get_num(c, res, &spec_res_disk, f)) < 0 ||
        (r = spec_get_nums(c, res, spec_res_limits, ARRAY_LEN(spec_res_limits), f)) < 0)
        return r;
    if (f->open_files && f->open_files < 16) {
        spec_push_key(c, "open_files");
        return spec_fail(c, "must be 0 (the worker's default) or at least 16, got %u", f->open_files);
    }
    spec_pop(c, saved);
    return 0;
}

static int spec_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A list of distinct names under key of obj (absent: an empty list). *out gets a
 * NULL-terminated array (always allocated), *n its length. valid(name) decides each
 * name; invalid completes "... got"; list_hint completes "must be ..."; one names
 * a single item in messages ("system call", "secret"). */
struct spec_name_list {
    const char *key;
    size_t max;
    const char *one;
    const char *list_hint;
    bool (*valid)(const char *s);
    const char *invalid;
};

static int spec_parse_name_list(struct spec_ctx *c, json_t *obj, const struct spec_name_list *d, char ***out,
                                size_t *n)
{
    json_t *list = json_object_get(obj, d->key);
    *out = xcalloc(json_is_array(list) ? json_array_size(list) + 1 : 1, sizeof(char *));
    if (!list)
        return 0;
    size_t saved = spec_push_key(c, d->key);
    if (!json_is_array(list))
        return spec_fail_got(c, list, "must be %s, got", d->list_hint);
    if (json_array_size(list) > d->max)
        return spec_fail(c, "at most %zu %ss, got %zu", d->max, d->one, json_array_size(list));
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
        size_t isaved = spec_push_index(c, i);
        const char *name;
        char hint[64];
        snprintf(hint, sizeof hint, "a %s name", d->one);
        int r = spec_want_string(c, v, hint, &name);
        if (r < 0)
            return r;
        if (!d->valid(name))
            return spec_fail_got(c, v, "%s", d->invalid);
        for (size_t j = 0; j < *n; j++)
            if (!strcmp((*out)[j], name))
                return spec_fail(c, "\"%s\" is listed twice; list each %s once", name, d->one);
        (*out)[(*n)++] = xstrdup(name);
        spec_pop(c, isaved);
    }
    spec_pop(c, saved);
    return 0;
}

static bool spec_is_syscall(const char *name)
{
    return strlen(name) <= 64 && seccomp_syscall_resolve_name(name) >= 0;
}

static const struct spec_name_list spec_deny_list = {
    .key = "deny_syscalls",
    .max = SPEC_MAX_DENY_SYSCALLS,
    .one = "system call",
    .list_hint = "a list of system call names to deny in addition to the default profile (e.g. [\"socket\"])",
    .valid = spec_is_syscall,
    .invalid = "is not a system call known on this machine (names as in syscalls(2), e.g. \"socket\"); got",
};

/* security.deny_syscalls: names of system calls this machine knows, each once, sorted. */
static int spec_parse_security(struct spec_ctx *c, json_t *fobj, struct spec_function *f)
{
    json_t *sec;
    size_t saved;
    int r = spec_enter_section(c, fobj, "security", spec_sec_fields, &sec, &saved);
    if (r < 0 || (r = spec_parse_name_list(c, sec, &spec_deny_list, &f->deny_syscalls, &f->ndeny_syscalls)) < 0)
        return r;
    qsort(f->deny_syscalls, f->ndeny_syscalls, sizeof *f->deny_syscalls, spec_cmp_str);
    spec_pop(c, saved);
    return 0;
}

bool spec_secret_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > SPEC_SECRET_NAME_MAX || !isalnum((unsigned char)s[0]))
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
            return false;
    return true;
}

static const struct spec_name_list spec_secret_list = {
    .key = "secrets",
    .max = SPEC_MAX_SECRETS,
    .one = "secret",
    .list_hint = "a list of secret names (e.g. [\"openai\"]; create them with `gust secret create`)",
    .valid = spec_secret_name_valid,
    .invalid = "must be a secret name (" SPEC_SECRET_NAME_CHARS "), got",
};

/* secrets: names of secrets stored by gustd, each once, in the order given (a later
 * secret's variable wins over an earlier one's). */
static int spec_parse_secrets(struct spec_ctx *c, json_t *fobj, struct spec_function *f)
{
    return spec_parse_name_list(c, fobj, &spec_secret_list, &f->secrets, &f->nsecrets);
}

/* A mount path: absolute, normalised (no empty, "." or ".." parts, no trailing
 * slash), not "/" and not under the paths the runtime owns. */
static bool spec_mount_path_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 2 || n > SPEC_MAX_PATH || s[0] != '/' || s[n - 1] == '/')
        return false;
    for (const char *p = s; *p;) {
        p++;
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        p += len;
    }
    static const char *const owned[] = {"/proc", "/sys", "/dev", "/tmp"};
    for (size_t i = 0; i < ARRAY_LEN(owned); i++) {
        size_t ol = strlen(owned[i]);
        if (!strncmp(s, owned[i], ol) && (s[ol] == '\0' || s[ol] == '/'))
            return false;
    }
    return true;
}

bool spec_image_id_valid(const char *s)
{
    return !strncmp(s, "sha256:", 7) && strlen(s) == 7 + 64 && strspn(s + 7, "0123456789abcdef") == 64;
}

/* A list of {path, <what>} tables (mounts: image, volumes: name) into parallel
 * arrays kept sorted by path. Paths are absolute normalised directories that
 * overlap neither each other nor the paths in also[0..nalso) (the mounts, when the
 * volumes are parsed). */
struct spec_path_table {
    const char *key;            /* "mounts", "volumes" */
    const char *what;           /* "image", "name" */
    const char *what_hint;      /* how to give it, for a missing one */
    const char *what_form;      /* what it must be, for a bad one */
    bool (*valid)(const char *);
    const char *const *fields;
};

static int spec_parse_path_table(struct spec_ctx *c, json_t *fobj, const struct spec_path_table *t, char ***paths,
                                 char ***values, size_t *n, char *const *also, size_t nalso)
{
    json_t *list = json_object_get(fobj, t->key);
    size_t cap = json_is_array(list) ? json_array_size(list) + 1 : 1;
    *paths = xcalloc(cap, sizeof(char *));
    *values = xcalloc(cap, sizeof(char *));
    if (!list)
        return 0;
    size_t saved = spec_push_key(c, t->key);
    if (!json_is_array(list))
        return spec_fail_got(c, list, "must be a list of {path, %s} tables, got", t->what);
    if (json_array_size(list) > SPEC_MAX_MOUNTS)
        return spec_fail(c, "at most %d %s, got %zu", SPEC_MAX_MOUNTS, t->key, json_array_size(list));
    size_t i;
    json_t *m;
    json_array_foreach(list, i, m) {
        size_t isaved = spec_push_index(c, i);
        if (!json_is_object(m))
            return spec_fail_got(c, m, "must be a table {path = \"/abs/dir\", %s = ...}, got", t->what);
        int r = spec_check_fields(c, m, t->fields);
        if (r < 0)
            return r;
        json_t *pv = json_object_get(m, "path"), *iv = json_object_get(m, t->what);
        if (!pv)
            return spec_missing(c, "path", "give the absolute directory to mount at, e.g. \"/opt/app\"");
        if (!iv)
            return spec_missing(c, t->what, t->what_hint);
        const char *path, *value;
        size_t ksaved = spec_push_key(c, "path");
        if ((r = spec_want_string(c, pv, "an absolute path", &path)) < 0)
            return r;
        if (!spec_mount_path_valid(path))
            return spec_fail_got(c, pv, "must be an absolute, normalised directory other than /, /proc, /sys, "
                                        "/dev and /tmp (no '.', '..' or empty parts), got");
        for (size_t j = 0; j < *n + nalso; j++) {
            const char *o = j < *n ? (*paths)[j] : also[j - *n];
            size_t a = strlen(o), b = strlen(path), k = a < b ? a : b;
            if (!strncmp(o, path, k) && (a == b || (a < b ? path[a] : o[b]) == '/'))
                return spec_fail(c, "\"%s\" overlaps the mount at \"%s\"; mounts and volumes may not nest", path,
                                 o);
        }
        spec_pop(c, ksaved);
        ksaved = spec_push_key(c, t->what);
        if ((r = spec_want_string(c, iv, t->what_form, &value)) < 0)
            return r;
        if (!t->valid(value))
            return spec_fail_got(c, iv, "must be %s, got", t->what_form);
        spec_pop(c, ksaved);
        (*paths)[*n] = xstrdup(path);
        (*values)[*n] = xstrdup(value);
        (*n)++;
        spec_pop(c, isaved);
    }
    /* Sort by path (insertion sort: at most SPEC_MAX_MOUNTS), so the normalised form
     * does not depend on the order given. */
    for (size_t a = 1; a < *n; a++)
        for (size_t b = a; b > 0 && strcmp((*paths)[b - 1], (*paths)[b]) > 0; b--) {
            char *tmp = (*paths)[b];
            (*paths)[b] = (*paths)[b - 1];
            (*paths)[b - 1] = tmp;
            tmp = (*values)[b];
            (*values)[b] = (*values)[b - 1];
            (*values)[b - 1] = tmp;
        }
    spec_pop(c, saved);
    return 0;
}

/* mounts: [{path = "/opt/app", image = "sha256:..."}]: content-addressed trees
 * (POST /v1/mounts) bound read-only into the container. */
static int spec_parse_mounts(struct spec_ctx *c, json_t *fobj, struct spec_function *f)
{
    static const struct spec_path_table t = {
        .key = "mounts", .what = "image", .fields = spec_mount_fields, .valid = spec_image_id_valid,
        .what_hint = "give the tree's id from POST /v1/mounts (\"sha256:...\")",
        .what_form = "a tree id as POST /v1/mounts returns it (\"sha256:\" and 64 lowercase hex digits)"};
    return spec_parse_path_table(c, fobj, &t, &f->mount_paths, &f->mount_images, &f->nmounts, NULL, 0);
}

/* volumes: [{path = "/weights", name = "vol"}]: named volumes of the workspace,
 * writable through an overlay of their latest version (docs/SPEC.md). */
static int spec_parse_volumes(struct spec_ctx *c, json_t *fobj, struct spec_function *f)
{
    static const struct spec_path_table t = {
        .key = "volumes", .what = "name", .fields = spec_volume_fields, .valid = spec_secret_name_valid,
        .what_hint = "give the volume's name (gust volume create NAME)",
        .what_form = "a volume name (" SPEC_SECRET_NAME_CHARS ")"};
    int r = spec_parse_path_table(c, fobj, &t, &f->volume_paths, &f->volume_names, &f->nvolumes, f->mount_paths,
                                  f->nmounts);
    if (r == 0 && f->nvolumes && f->snapshot) {
        spec_push_key(c, "volumes");
        return spec_fail(c, "not supported with snapshot = true: a forked container cannot get its own volume "
                            "layers");
    }
    return r;
}

static int spec_parse_retries(struct spec_ctx *c, json_t *fobj, struct spec_function *f)
{
    json_t *rt = json_object_get(fobj, "retries");
    if (rt && !json_is_object(rt)) {
        /* Shorthand: the number of retries alone; the delays keep their defaults. */
        json_int_t n = json_integer_value(rt);
        if (!json_is_integer(rt) || n < 0 || n > 10) {
            spec_push_key(c, "retries");
            return spec_fail_got(c, rt, "must be an integer between 0 and 10 (the number of "
                                        "retries) or an object with max_retries, initial_delay, "
                                        "backoff_coefficient, max_delay; got");
        }
        int r = spec_get_nums(c, NULL, spec_retry_nums, ARRAY_LEN(spec_retry_nums), f);
        f->max_retries = (uint32_t)n;
        return r;
    }
    size_t saved;
    int r = spec_enter_section(c, fobj, "retries", spec_retry_fields, &rt, &saved);
    if (r < 0 || (r = spec_get_nums(c, rt, spec_retry_nums, ARRAY_LEN(spec_retry_nums), f)) < 0)
        return r;
    spec_pop(c, saved);
    return 0;
}

static int spec_parse_scaling(struct spec_ctx *c, json_t *fobj, struct spec_function *f)
{
    json_t *sc;
    size_t saved;
    int r = spec_enter_section(c, fobj, "scaling", spec_scale_fields, &sc, &saved);
    if (r < 0 || (r = spec_get_nums(c, sc, spec_scale_nums, ARRAY_LEN(spec_scale_nums), f)) < 0)
        return r;
    if (f->max_containers < f->min_containers) {
        if (json_object_get(sc, "max_containers")) {
            spec_push_key(c, "max_containers");
            return spec_fail(c, "must be >= min_containers (%u), got %u; raise max_containers "
                                "or lower min_containers", f->min_containers, f->max_containers);
        }
        spec_push_key(c, "min_containers");
        return spec_fail(c, "must be <= max_containers (%u, the default); lower min_containers "
                            "or set max_containers", f->max_containers);
    }
    if (f->target_inputs > f->max_inputs) {
        spec_push_key(c, "target_inputs");
        return spec_fail(c, "must be <= max_inputs (%u%s), got %u; the autoscaler aims at target_inputs per "
                            "container, a container takes at most max_inputs",
                         f->max_inputs, json_object_get(sc, "max_inputs") ? "" : ", the default", f->target_inputs);
    }
    spec_pop(c, saved);
    return 0;
}

static int spec_parse_command(struct spec_ctx *c, json_t *cmd, struct spec_function *f)
{
    size_t saved = spec_push_key(c, "command");
    if (!json_is_array(cmd) || json_array_size(cmd) == 0) {
        char got[96];
        spec_describe(cmd, got, sizeof got);
        return spec_fail(c, "must be a non-empty array of strings (the argv), e.g. "
                            "[\"/bin/cat\"]; got %s", json_is_array(cmd) ? "[]" : got);
    }
    size_t n = json_array_size(cmd);
    if (n > SPEC_MAX_ARGS)
        return spec_fail(c, "at most %d arguments are allowed, got %zu", SPEC_MAX_ARGS, n);
    f->command = xcalloc(n + 1, sizeof *f->command);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t isaved = spec_push_index(c, i);
        const char *s;
        int r = spec_want_string(c, json_array_get(cmd, i), "a string", &s);
        if (r < 0)
            return r;
        if (i == 0 && !*s)
            return spec_fail(c, "the program (first element) must not be empty");
        total += strlen(s) + 1;
        if (total > SPEC_MAX_ARGS_BYTES)
            return spec_fail(c, "arguments are too long in total (limit %d bytes)",
                             SPEC_MAX_ARGS_BYTES);
        f->command[i] = xstrdup(s);
        f->ncommand = i + 1;
        spec_pop(c, isaved);
    }
    spec_pop(c, saved);
    return 0;
}

bool spec_env_name_valid(const char *k)
{
    if (!*k || strlen(k) > 255 || isdigit((unsigned char)k[0]))
        return false;
    for (; *k; k++)
        if (!isalnum((unsigned char)*k) && *k != '_')
            return false;
    return true;
}

static int spec_env_cmp(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    size_t xl = strcspn(x, "="), yl = strcspn(y, "=");
    int r = strncmp(x, y, xl < yl ? xl : yl);
    if (r)
        return r;
    return xl < yl ? -1 : xl > yl;
}

static int spec_parse_env(struct spec_ctx *c, json_t *env, struct spec_function *f)
{
    size_t saved = spec_push_key(c, "env");
    if (!json_is_object(env))
        return spec_fail_got(c, env, "must be an object mapping variable names to string "
                                     "values, e.g. env = { GREETING = \"hi\" }; got");
    size_t n = json_object_size(env);
    if (n > SPEC_MAX_ENV)
        return spec_fail(c, "at most %d variables are allowed, got %zu", SPEC_MAX_ENV, n);
    f->env = xcalloc(n + 1, sizeof *f->env);
    size_t total = 0;
    const char *key;
    json_t *v;
    json_object_foreach(env, key, v) {
        size_t ksaved = spec_push_key(c, key);
        if (!spec_env_name_valid(key))
            return spec_fail(c, "invalid variable name; use letters, digits and '_', not "
                                "starting with a digit (at most 255 characters)");
        if (json_is_number(v) || json_is_boolean(v)) {
            char got[96];
            spec_describe(v, got, sizeof got);
            return spec_fail(c, "must be a string, got %s (quote the value)", got);
        }
        const char *s;
        int r = spec_want_string(c, v, "a string", &s);
        if (r < 0)
            return r;
        size_t kl = strlen(key), vl = strlen(s);
        total += kl + vl + 2;
        if (total > SPEC_MAX_ENV_BYTES)
            return spec_fail(c, "variables are too long in total (limit %d bytes)",
                             SPEC_MAX_ENV_BYTES);
        char *kv = xmalloc(kl + vl + 2);
        memcpy(kv, key, kl);
        kv[kl] = '=';
        memcpy(kv + kl + 1, s, vl + 1);
        f->env[f->nenv++] = kv;
        spec_pop(c, ksaved);
    }
    qsort(f->env, f->nenv, sizeof *f->env, spec_env_cmp);
    spec_pop(c, saved);
    return 0;
}

/* Validates one function object at the current path into f (zeroed by the caller;
 * partially filled on error). */
const char *spec_web_kind_name(enum spec_web_kind k)
{
    switch (k) {
    case SPEC_WEB_FUNCTION: return "function";
    case SPEC_WEB_ASGI: return "asgi";
    case SPEC_WEB_WSGI: return "wsgi";
    case SPEC_WEB_SERVER: return "web_server";
    case SPEC_WEB_NONE: break;
    }
    return "";
}

static bool spec_is_web_kind(const char *s)
{
    return !strcmp(s, "function") || !strcmp(s, "asgi") || !strcmp(s, "wsgi") || !strcmp(s, "web_server");
}

/* An HTTP method as a client may send it (upper-case letters, as the http parser
 * accepts only tokens and the runner compares exactly), or "*" for any. */
static bool spec_is_web_method(const char *s)
{
    if (!strcmp(s, "*"))
        return true;
    size_t n = strlen(s);
    if (n == 0 || n > 15)
        return false;
    for (; *s; s++)
        if (*s < 'A' || *s > 'Z')
            return false;
    return true;
}

/* A label is a URL path segment and, for Host routing, part of a DNS label. */
static bool spec_is_web_label(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > SPEC_WEB_LABEL_MAX || !isalnum((unsigned char)s[0]))
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_')
            return false;
    return true;
}

static const struct spec_str_field spec_web_kind = {
    .key = "kind",
    .type = "\"function\", \"asgi\", \"wsgi\" or \"web_server\"",
    .valid = spec_is_web_kind,
    .invalid = "must be \"function\" (the function handles each request: a Python handler of query or JSON "
               "arguments, or a runner that decodes the request itself, as C runners do), \"asgi\" or \"wsgi\" (an "
               "app the function returns) or \"web_server\" (a server the function starts on web.port), got",
    .def = "function",
};
static const struct spec_str_field spec_web_method = {
    .key = "method",
    .type = "an HTTP method such as \"GET\" or \"POST\", or \"*\"",
    .valid = spec_is_web_method,
    .invalid = "must be an upper-case HTTP method (\"GET\", \"POST\", ...) or \"*\" for any, got",
    .def = "GET",
};
static const struct spec_str_field spec_web_label = {
    .key = "label",
    .type = "a string",
    .valid = spec_is_web_label,
    .invalid = "must be 1 to " SPEC_STR(SPEC_WEB_LABEL_MAX) " characters of letters, digits, '-' and '_', "
               "starting with a letter or digit; got",
};

static int spec_get_bool(struct spec_ctx *c, json_t *obj, const char *key, bool *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    size_t saved = spec_push_key(c, key);
    if (!json_is_boolean(v))
        return spec_fail_got(c, v, "must be true or false, got");
    *out = json_is_true(v);
    spec_pop(c, saved);
    return 0;
}

/* web_server's: a TCP port (0 is no port to connect to), and how long the runner waits
 * for it. Up to an hour: a server that loads a large model before it listens may take
 * minutes; requests wait for it in the queue meanwhile (a web request no container took
 * within 30 s gets 503 and retries). The minimum is above 0, as Modal asks. */
static const struct spec_num_field spec_web_server_nums[] = {
    SPEC_UINT_FIELD("port", "an integer TCP port", 1, 65535, 0, web.port),
    SPEC_REAL_FIELD("startup_timeout", "a number of seconds", 0.001, 3600, 5.0, web.startup_timeout_s),
};

/* port (needed) and startup_timeout of a "web_server" endpoint; refused on the other
 * kinds, whose handler runs in the runner itself. */
static int spec_parse_web_server(struct spec_ctx *c, json_t *w, const char *kind, struct spec_function *f)
{
    bool server = !strcmp(kind, "web_server");
    for (size_t i = 0; i < ARRAY_LEN(spec_web_server_nums); i++) {
        const char *key = spec_web_server_nums[i].key;
        if (server || !json_object_get(w, key))
            continue;
        spec_push_key(c, key);
        return spec_fail(c, "is only for kind \"web_server\" (a server the function starts), not \"%s\"", kind);
    }
    if (!server)
        return 0;
    if (!json_object_get(w, "port")) {
        spec_push_key(c, "port");
        return spec_fail(c, "is needed for kind \"web_server\": the port its server listens on in the container");
    }
    return spec_get_nums(c, w, spec_web_server_nums, ARRAY_LEN(spec_web_server_nums), f);
}

static int spec_parse_web(struct spec_ctx *c, json_t *fobj, struct spec_function *f)
{
    if (!json_object_get(fobj, "web"))
        return 0;
    json_t *w;
    size_t saved;
    const char *kind, *method, *label = f->name;
    int r = spec_enter_section(c, fobj, "web", spec_web_fields, &w, &saved);
    if (r < 0 || (r = spec_get_str(c, w, &spec_web_kind, &kind)) < 0 ||
        (r = spec_get_str(c, w, &spec_web_method, &method)) < 0)
        return r;
    /* An app routes methods itself: by default it sees them all. */
    if (!json_object_get(w, "method") && strcmp(kind, "function"))
        method = "*";
    if (json_object_get(w, "label") && (r = spec_get_str(c, w, &spec_web_label, &label)) < 0)
        return r;
    if (!json_object_get(w, "label") && !spec_is_web_label(label)) {
        spec_push_key(c, "label");
        return spec_fail(c, "is needed: the function's name \"%.64s\" is not a valid label (1 to "
                            SPEC_STR(SPEC_WEB_LABEL_MAX) " characters of letters, digits, '-' and '_')", label);
    }
    if ((r = spec_get_bool(c, w, "public", &f->web.public_)) < 0 || (r = spec_get_bool(c, w, "docs", &f->web.docs)) < 0 ||
        (r = spec_parse_web_server(c, w, kind, f)) < 0)
        return r;
    if (f->mode != SPEC_MODE_RUNNER)
        return spec_fail(c, "needs mode \"runner\": a web endpoint's requests are inputs of a long-lived "
                            "runner (the Python SDK's, or a program using src/proto/runner.h), answered as "
                            "generator items");
    f->web.kind = !strcmp(kind, "asgi")         ? SPEC_WEB_ASGI
                  : !strcmp(kind, "wsgi")       ? SPEC_WEB_WSGI
                  : !strcmp(kind, "web_server") ? SPEC_WEB_SERVER
                                                : SPEC_WEB_FUNCTION;
    snprintf(f->web.method, sizeof f->web.method, "%s", method);
    snprintf(f->web.label, sizeof f->web.label, "%s", label);
    spec_pop(c, saved);
    return 0;
}

/* schedule = {cron = EXPR, timezone = ZONE} or {every = SECONDS}: one of the two forms. */
static int spec_parse_schedule(struct spec_ctx *c, json_t *fobj, struct spec_function *f)
{
    if (!json_object_get(fobj, "schedule"))
        return 0;
    json_t *s;
    size_t saved;
    int r = spec_enter_section(c, fobj, "schedule", spec_schedule_fields, &s, &saved);
    if (r < 0)
        return r;
    size_t in = c->len; /* the path at "schedule" */
    json_t *cron = json_object_get(s, "cron"), *tz = json_object_get(s, "timezone"), *every = json_object_get(s, "every");
    if (!cron == !every)
        return spec_fail(c, "needs exactly one of cron (with an optional timezone) or every (seconds)");
    if (every) {
        spec_push_key(c, tz ? "timezone" : "every");
        if (tz)
            return spec_fail(c, "is only for a cron schedule; every counts seconds from the last fire");
        if (!json_is_integer(every) || json_integer_value(every) < 1 ||
            json_integer_value(every) > (json_int_t)SPEC_SCHEDULE_EVERY_MAX)
            return spec_fail_got(c, every, "must be an integer number of seconds between 1 and %u, got",
                                 SPEC_SCHEDULE_EVERY_MAX);
        f->schedule.kind = SPEC_SCHEDULE_EVERY;
        f->schedule.every_s = (uint32_t)json_integer_value(every);
        spec_pop(c, saved);
        return 0;
    }
    spec_push_key(c, "cron");
    if (!json_is_string(cron))
        return spec_fail_got(c, cron, "must be a cron expression string such as \"0 * * * *\", got");
    struct cron_expr e;
    struct gerr cerr;
    if (cron_parse(json_string_value(cron), &e, &cerr) < 0)
        return spec_fail(c, "%s", cerr.msg);
    snprintf(f->schedule.cron, sizeof f->schedule.cron, "%s", json_string_value(cron));
    spec_pop(c, in);
    spec_push_key(c, "timezone");
    const char *zone = "UTC";
    if (tz && !json_is_string(tz))
        return spec_fail_got(c, tz, "must be an IANA time zone name such as \"Europe/Berlin\", got");
    if (tz)
        zone = json_string_value(tz);
    struct cron_tz *z = xmalloc(sizeof *z);
    r = cron_tz_load(zone, z, &cerr);
    free(z);
    if (r < 0)
        return spec_fail(c, "%s", cerr.msg);
    snprintf(f->schedule.timezone, sizeof f->schedule.timezone, "%s", zone);
    f->schedule.kind = SPEC_SCHEDULE_CRON;
    spec_pop(c, saved);
    return 0;
}

static int spec_parse_function(struct spec_ctx *c, json_t *obj, struct spec_function *f)
{
    if (!json_is_object(obj))
        return spec_fail_got(c, obj, "must be an object describing a function (a [[functions]] "
                                     "table in TOML), got");
    int r = spec_check_fields(c, obj, spec_fn_fields);
    if (r < 0 || (r = spec_get_str_dup(c, obj, &spec_fn_name, &f->name)) < 0 ||
        (r = spec_get_str_dup(c, obj, &spec_fn_kind, &f->kind)) < 0)
        return r;

    json_t *v = json_object_get(obj, "command");
    if (!v)
        return spec_missing(c, "command", "give the argv as an array of strings, e.g. "
                                          "command = [\"/bin/cat\"]");
    if ((r = spec_parse_command(c, v, f)) < 0)
        return r;

    const char *mode;
    if ((r = spec_get_str(c, obj, &spec_fn_mode, &mode)) < 0)
        return r;
    f->mode = strcmp(mode, "runner") ? SPEC_MODE_PER_INPUT : SPEC_MODE_RUNNER;

    json_t *img = json_object_get(obj, "image");
    if (json_is_object(img)) {
        size_t saved = spec_push_key(c, "image");
        r = spec_image_parse(img, c->path, &f->image_def, c->field_out, c->err);
        if (r < 0)
            return r;
        spec_pop(c, saved);
    } else if ((r = spec_get_str_dup(c, obj, &spec_fn_image, &f->image)) < 0) {
        return r;
    }
    if ((r = spec_get_str_dup(c, obj, &spec_fn_workdir, &f->workdir)) < 0 ||
        (r = spec_get_num(c, obj, &spec_fn_timeout, f)) < 0)
        return r;

    v = json_object_get(obj, "env");
    if (v) {
        if ((r = spec_parse_env(c, v, f)) < 0)
            return r;
    } else {
        f->env = xcalloc(1, sizeof *f->env);
    }

    v = json_object_get(obj, "snapshot");
    if (v) {
        size_t saved = spec_push_key(c, "snapshot");
        if (!json_is_boolean(v))
            return spec_fail_got(c, v, "must be true or false, got");
        f->snapshot = json_is_true(v);
        if (f->snapshot && f->mode != SPEC_MODE_RUNNER)
            return spec_fail(c, "needs mode \"runner\": a snapshot is taken of a long-lived process after its "
                                "init (per_input commands start afresh for every input)");
        spec_pop(c, saved);
    }
    const char *net;
    if ((r = spec_get_str(c, obj, &spec_fn_network, &net)) < 0)
        return r;
    f->network = strcmp(net, "egress") ? SPEC_NET_NONE : SPEC_NET_EGRESS;
    if ((r = spec_parse_resources(c, obj, f)) < 0 || (r = spec_parse_retries(c, obj, f)) < 0 ||
        (r = spec_parse_security(c, obj, f)) < 0 || (r = spec_parse_secrets(c, obj, f)) < 0 ||
        (r = spec_parse_mounts(c, obj, f)) < 0 || (r = spec_parse_volumes(c, obj, f)) < 0 ||
        (r = spec_parse_scaling(c, obj, f)) < 0 ||
        (r = spec_parse_schedule(c, obj, f)) < 0)
        return r;
    return spec_parse_web(c, obj, f);
}

void spec_function_free(struct spec_function *f)
{
    if (!f)
        return;
    free(f->name);
    free(f->kind);
    if (f->command)
        for (size_t i = 0; i < f->ncommand; i++)
            free(f->command[i]);
    free(f->command);
    free(f->image);
    json_decref(f->image_def);
    free(f->workdir);
    if (f->env)
        for (size_t i = 0; i < f->nenv; i++)
            free(f->env[i]);
    free(f->env);
    if (f->deny_syscalls)
        for (size_t i = 0; i < f->ndeny_syscalls; i++)
            free(f->deny_syscalls[i]);
    free(f->deny_syscalls);
    for (size_t i = 0; f->secrets && i < f->nsecrets; i++)
        free(f->secrets[i]);
    free(f->secrets);
    for (size_t i = 0; f->mount_paths && i < f->nmounts; i++)
        free(f->mount_paths[i]);
    for (size_t i = 0; f->mount_images && i < f->nmounts; i++)
        free(f->mount_images[i]);
    free(f->mount_paths);
    free(f->mount_images);
    for (size_t i = 0; f->volume_paths && i < f->nvolumes; i++)
        free(f->volume_paths[i]);
    for (size_t i = 0; f->volume_names && i < f->nvolumes; i++)
        free(f->volume_names[i]);
    free(f->volume_paths);
    free(f->volume_names);
    memset(f, 0, sizeof *f);
}

void spec_app_free(struct spec_app *app)
{
    if (!app)
        return;
    for (size_t i = 0; i < app->nfunctions; i++)
        spec_function_free(&app->functions[i]);
    free(app->functions);
    free(app->name);
    memset(app, 0, sizeof *app);
}

int spec_function_from_json(json_t *obj, struct spec_function *out,
                            char field_out[SPEC_FIELD_MAX], struct gerr *err)
{
    struct spec_ctx c = {.field_out = field_out, .err = err};
    memset(out, 0, sizeof *out);
    if (field_out)
        field_out[0] = '\0';
    if (!obj) {
        return spec_fail(&c, "function spec must be an object, got nothing");
    }
    int r = spec_parse_function(&c, obj, out);
    if (r < 0)
        spec_function_free(out);
    return r;
}

static int spec_app_fill(struct spec_ctx *c, json_t *root, struct spec_app *app)
{
    if (!json_is_object(root))
        return spec_fail_got(c, root, "the spec must be an object (a TOML document) with fields "
                                      "app and functions, got");
    int r = spec_check_fields(c, root, spec_app_fields);
    if (r < 0 || (r = spec_get_str_dup(c, root, &spec_app_name, &app->name)) < 0)
        return r;

    json_t *fns = json_object_get(root, "functions");
    if (!fns)
        return spec_missing(c, "functions", "add at least one function ([[functions]] in TOML)");
    size_t saved = spec_push_key(c, "functions");
    if (!json_is_array(fns))
        return spec_fail_got(c, fns, "must be an array of function objects ([[functions]] tables "
                                     "in TOML), got");
    size_t n = json_array_size(fns);
    if (n == 0)
        return spec_fail(c, "must list at least one function");
    if (n > SPEC_MAX_FUNCTIONS)
        return spec_fail(c, "at most %d functions per app are allowed, got %zu",
                         SPEC_MAX_FUNCTIONS, n);
    app->functions = xcalloc(n, sizeof *app->functions);
    for (size_t i = 0; i < n; i++) {
        size_t isaved = spec_push_index(c, i);
        app->nfunctions = i + 1;
        r = spec_parse_function(c, json_array_get(fns, i), &app->functions[i]);
        if (r < 0)
            return r;
        for (size_t j = 0; j < i; j++) {
            if (!strcmp(app->functions[j].name, app->functions[i].name)) {
                spec_push_key(c, "name");
                return spec_fail(c, "duplicate function name \"%s\" (already used by "
                                    "functions[%zu]); function names must be unique in an app",
                                 app->functions[i].name, j);
            }
            /* Case-insensitively: Host routing lowercases the label. */
            const struct spec_web *a = &app->functions[j].web, *b = &app->functions[i].web;
            if (a->kind && b->kind && !strcasecmp(a->label, b->label)) {
                spec_push_key(c, "web");
                spec_push_key(c, "label");
                return spec_fail(c, "duplicate web label \"%s\" (already used by functions[%zu]); an app's "
                                    "endpoints need distinct labels", b->label, j);
            }
        }
        spec_pop(c, isaved);
    }
    spec_pop(c, saved);
    return 0;
}

int spec_app_from_json(json_t *root, struct spec_app *out, char field_out[SPEC_FIELD_MAX],
                       struct gerr *err)
{
    struct spec_ctx c = {.field_out = field_out, .err = err};
    memset(out, 0, sizeof *out);
    if (field_out)
        field_out[0] = '\0';
    if (!root)
        return spec_fail(&c, "the spec is empty");
    int r = spec_app_fill(&c, root, out);
    if (r < 0)
        spec_app_free(out);
    return r;
}

static int spec_check_size(size_t len, const char *fmt, char field_out[SPEC_FIELD_MAX],
                           struct gerr *err)
{
    if (field_out)
        field_out[0] = '\0';
    if (len <= SPEC_DOC_MAX)
        return 0;
    return gerr_set(err, EINVAL, "%s spec is too large (%zu bytes); the limit is %d bytes (1 MiB)",
                    fmt, len, SPEC_DOC_MAX);
}

int spec_app_parse_json(const char *text, size_t len, struct spec_app *out,
                        char field_out[SPEC_FIELD_MAX], struct gerr *err)
{
    memset(out, 0, sizeof *out);
    int r = spec_check_size(len, "JSON", field_out, err);
    if (r < 0)
        return r;
    json_error_t je;
    AUTO_JSON json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        /* jansson may quote raw input bytes; keep the message printable ASCII. */
        for (char *q = je.text; *q; q++)
            if ((unsigned char)*q < 0x20 || (unsigned char)*q >= 0x7f)
                *q = '?';
        return gerr_set(err, EINVAL, "JSON syntax error at line %d, column %d: %s", je.line,
                        je.column, je.text);
    }
    return spec_app_from_json(root, out, field_out, err);
}

int spec_app_parse_toml(const char *text, size_t len, struct spec_app *out,
                        char field_out[SPEC_FIELD_MAX], struct gerr *err)
{
    memset(out, 0, sizeof *out);
    int r = spec_check_size(len, "TOML", field_out, err);
    if (r < 0)
        return r;
    AUTO_JSON json_t *root = NULL;
    r = toml_parse(text, len, &root, err);
    if (r < 0)
        return r;
    return spec_app_from_json(root, out, field_out, err);
}


/* Collects jansson set failures: returns false once any failed. */
static bool spec_set(json_t *obj, const char *key, json_t *v, bool *ok)
{
    if (!v || json_object_set_new(obj, key, v) < 0)
        *ok = false;
    return *ok;
}

/* Sets the n numeric fields of f in obj, in order. */
static void spec_put_nums(json_t *obj, const struct spec_num_field *fields, size_t n,
                          const struct spec_function *f, bool *ok)
{
    for (size_t i = 0; i < n; i++) {
        double x = spec_num_load(f, &fields[i]);
        if (x < fields[i].min && x == fields[i].def)
            continue; /* a field that was not given and has no value of its own */
        spec_set(obj, fields[i].key, fields[i].real ? json_real(x) : json_integer((json_int_t)x),
                 ok);
    }
}

/* The normalised form: a plain number when it says everything (no cpu limit, a
 * memory limit equal to the request), else [request, limit]. */
static void spec_put_req_lim(json_t *obj, const struct spec_req_lim_field *d, const struct spec_function *f,
                             bool *ok)
{
    uint32_t req = (uint32_t)spec_num_load(f, &d->num);
    uint32_t lim = *(const uint32_t *)((const char *)f + d->limit_offset);
    bool plain = d->plain_is_limit ? lim == req : lim == 0;
    spec_set(obj, d->num.key, plain ? json_integer(req) : json_pack("[I,I]", (json_int_t)req, (json_int_t)lim),
             ok);
}

json_t *spec_function_to_json(const struct spec_function *f)
{
    bool ok = true;
    AUTO_JSON json_t *o = json_object();
    if (!o)
        return NULL;
    json_t *cmd = json_array(), *env = json_object(), *res = json_object(), *gpu = json_array(),
           *rt = json_object(), *sc = json_object();
    spec_set(o, "name", json_string(f->name ? f->name : ""), &ok);
    spec_set(o, "kind", json_string(f->kind ? f->kind : "exec"), &ok);
    spec_set(o, "command", cmd, &ok);
    for (size_t i = 0; cmd && i < f->ncommand; i++)
        if (json_array_append_new(cmd, json_string(f->command[i])) < 0)
            ok = false;
    spec_set(o, "mode", json_string(f->mode == SPEC_MODE_RUNNER ? "runner" : "per_input"), &ok);
    spec_set(o, "image", f->image_def ? json_deep_copy(f->image_def) : json_string(f->image ? f->image : SPEC_DEF_IMAGE),
             &ok);
    spec_set(o, "workdir", json_string(f->workdir ? f->workdir : SPEC_DEF_WORKDIR), &ok);
    spec_put_nums(o, &spec_fn_timeout, 1, f, &ok);
    spec_set(o, "env", env, &ok);
    for (size_t i = 0; env && i < f->nenv; i++) {
        const char *kv = f->env[i];
        size_t kl = strcspn(kv, "=");
        char key[256];
        if (kl >= sizeof key || !kv[kl]) {
            ok = false;
            break;
        }
        memcpy(key, kv, kl);
        key[kl] = '\0';
        if (json_object_set_new(env, key, json_string(kv + kl + 1)) < 0)
            ok = false;
    }
    spec_set(o, "resources", res, &ok);
    if (!res)
        json_decref(gpu);
    if (res) {
        for (size_t i = 0; i < ARRAY_LEN(spec_req_lim_fields); i++)
            spec_put_req_lim(res, &spec_req_lim_fields[i], f, &ok);
        spec_set(res, "gpu", gpu, &ok);
        for (size_t i = 0; gpu && i < f->ngpu_options && i < SPEC_MAX_GPU_OPTIONS; i++) {
            char g[48];
            snprintf(g, sizeof g, "%.31s:%u", f->gpus[i].type, f->gpus[i].count);
            if (json_array_append_new(gpu, json_string(g)) < 0)
                ok = false;
        }
        spec_put_nums(res, &spec_res_disk, 1, f, &ok);
        spec_put_nums(res, spec_res_limits, ARRAY_LEN(spec_res_limits), f, &ok);
    }
    spec_set(o, "network", json_string(f->network == SPEC_NET_EGRESS ? "egress" : "none"), &ok);
    spec_set(o, "snapshot", json_boolean(f->snapshot), &ok);
    json_t *sec = json_object(), *deny = json_array();
    spec_set(o, "security", sec, &ok);
    if (!sec)
        json_decref(deny);
    if (sec) {
        spec_set(sec, "deny_syscalls", deny, &ok);
        for (size_t i = 0; deny && i < f->ndeny_syscalls; i++)
            if (json_array_append_new(deny, json_string(f->deny_syscalls[i])) < 0)
                ok = false;
    }
    json_t *secrets = json_array(), *mounts = json_array();
    spec_set(o, "secrets", secrets, &ok);
    for (size_t i = 0; secrets && i < f->nsecrets; i++)
        if (json_array_append_new(secrets, json_string(f->secrets[i])) < 0)
            ok = false;
    spec_set(o, "mounts", mounts, &ok);
    for (size_t i = 0; mounts && i < f->nmounts; i++)
        if (json_array_append_new(mounts, json_pack("{s:s,s:s}", "path", f->mount_paths[i], "image",
                                                    f->mount_images[i])) < 0)
            ok = false;
    /* Only functions with volumes carry "volumes": other normalised specs stay as
     * they were. */
    if (f->nvolumes) {
        json_t *vols = json_array();
        spec_set(o, "volumes", vols, &ok);
        for (size_t i = 0; vols && i < f->nvolumes; i++)
            if (json_array_append_new(vols, json_pack("{s:s,s:s}", "path", f->volume_paths[i], "name",
                                                      f->volume_names[i])) < 0)
                ok = false;
    }
    spec_set(o, "retries", rt, &ok);
    if (rt)
        spec_put_nums(rt, spec_retry_nums, ARRAY_LEN(spec_retry_nums), f, &ok);
    spec_set(o, "scaling", sc, &ok);
    if (sc)
        spec_put_nums(sc, spec_scale_nums, ARRAY_LEN(spec_scale_nums), f, &ok);
    /* Only endpoints carry "web": other functions' normalised specs stay as they were. */
    json_t *web = NULL;
    if (f->web.kind != SPEC_WEB_NONE)
        spec_set(o, "web",
                 web = json_pack("{s:s,s:s,s:s,s:b,s:b}", "kind", spec_web_kind_name(f->web.kind), "method",
                                 f->web.method, "label", f->web.label, "public", f->web.public_, "docs", f->web.docs),
                 &ok);
    if (web && f->web.kind == SPEC_WEB_SERVER)
        spec_put_nums(web, spec_web_server_nums, ARRAY_LEN(spec_web_server_nums), f, &ok);
    /* Likewise only scheduled functions carry "schedule". */
    if (f->schedule.kind == SPEC_SCHEDULE_CRON)
        spec_set(o, "schedule",
                 json_pack("{s:s,s:s}", "cron", f->schedule.cron, "timezone", f->schedule.timezone), &ok);
    else if (f->schedule.kind == SPEC_SCHEDULE_EVERY)
        spec_set(o, "schedule", json_pack("{s:I}", "every", (json_int_t)f->schedule.every_s), &ok);
    return ok ? TAKE_PTR(o) : NULL;
}

/* A NULL-terminated copy of the n strings of src; NULL for a NULL src. */
static char **spec_strv_copy(char *const *src, size_t n)
{
    if (!src)
        return NULL;
    char **dst = xcalloc(n + 1, sizeof *dst);
    for (size_t i = 0; i < n; i++)
        dst[i] = xstrdup(src[i]);
    return dst;
}

static char *spec_str_copy(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

void spec_function_copy(const struct spec_function *src, struct spec_function *dst)
{
    *dst = *src;
    /* A deep copy of a valid tree fails only on allocation, which gustd's jansson
     * allocator (xmalloc) turns into an abort. */
    dst->image_def = src->image_def ? json_deep_copy(src->image_def) : NULL;
    dst->name = spec_str_copy(src->name);
    dst->kind = spec_str_copy(src->kind);
    dst->image = spec_str_copy(src->image);
    dst->workdir = spec_str_copy(src->workdir);
    dst->command = spec_strv_copy(src->command, src->ncommand);
    dst->env = spec_strv_copy(src->env, src->nenv);
    dst->deny_syscalls = spec_strv_copy(src->deny_syscalls, src->ndeny_syscalls);
    dst->secrets = spec_strv_copy(src->secrets, src->nsecrets);
    dst->mount_paths = dst->mount_images = NULL;
    dst->nmounts = 0;
    if (src->mount_paths && src->mount_images) {
        dst->mount_paths = spec_strv_copy(src->mount_paths, src->nmounts);
        dst->mount_images = spec_strv_copy(src->mount_images, src->nmounts);
        dst->nmounts = src->nmounts;
    }
    dst->volume_paths = dst->volume_names = NULL;
    dst->nvolumes = 0;
    if (src->volume_paths && src->volume_names) {
        dst->volume_paths = spec_strv_copy(src->volume_paths, src->nvolumes);
        dst->volume_names = spec_strv_copy(src->volume_names, src->nvolumes);
        dst->nvolumes = src->nvolumes;
    }
}
