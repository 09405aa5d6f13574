/* Secret bodies: {"env": {"NAME": "value", ...}} as PUT /v1/secrets/{name} takes them.
 * Validation lives here, with the other parsers of outside input, so that it can be
 * fuzzed without a control plane. Messages name the field but never quote a value. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"
#include "spec/spec.h"

static int secret_env_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int secret_fail(char field_out[SPEC_FIELD_MAX], const char *field, struct gerr *err, int code,
                       const char *fmt, const char *what)
{
    if (field_out)
        snprintf(field_out, SPEC_FIELD_MAX, "%s", field);
    return gerr_set(err, code, fmt, field, what);
}

void spec_secret_env_free(char **env)
{
    for (size_t i = 0; env && env[i]; i++)
        free(env[i]);
    free(env);
}

int spec_secret_env_parse(json_t *env, char ***out, size_t *n_out, char field_out[SPEC_FIELD_MAX], struct gerr *err)
{
    *out = NULL;
    *n_out = 0;
    if (field_out)
        field_out[0] = '\0';
    if (!json_is_object(env))
        return secret_fail(field_out, "env", err, EINVAL, "%s: %s", "must be an object of variable names to string "
                                                                    "values, e.g. {\"API_KEY\": \"...\"}");
    size_t n = json_object_size(env);
    if (n == 0)
        return secret_fail(field_out, "env", err, EINVAL, "%s: %s", "give at least one variable");
    if (n > SPEC_SECRET_MAX_KEYS) {
        char what[64];
        snprintf(what, sizeof what, "at most %d variables per secret, got %zu", SPEC_SECRET_MAX_KEYS, n);
        return secret_fail(field_out, "env", err, E2BIG, "%s: %s", what);
    }
    char **kv = xcalloc(n + 1, sizeof *kv);
    size_t k = 0, total = 0;
    const char *key;
    json_t *v;
    int r = 0;
    json_object_foreach(env, key, v) {
        char fld[SPEC_FIELD_MAX];
        snprintf(fld, sizeof fld, "env.%.200s", key);
        if (!spec_env_name_valid(key)) {
            r = secret_fail(field_out, fld, err, EINVAL, "%s: %s",
                            "invalid variable name; use letters, digits and '_', not starting with a digit "
                            "(at most 255 characters)");
            break;
        }
        if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
            r = secret_fail(field_out, fld, err, EINVAL, "%s: %s", "must be a string without NUL characters");
            break;
        }
        size_t kl = strlen(key), vl = json_string_length(v);
        total += kl + vl + 2;
        if (total > SPEC_SECRET_MAX_BYTES) {
            r = secret_fail(field_out, "env", err, E2BIG, "%s: %s",
                            "the variables are over " SPEC_STR_SECRET_BYTES " bytes in total");
            break;
        }
        assert(k < n); /* kv has n entries and the NULL */
        kv[k] = xmalloc(kl + vl + 2);
        memcpy(kv[k], key, kl);
        kv[k][kl] = '=';
        memcpy(kv[k] + kl + 1, json_string_value(v), vl + 1);
        k++;
    }
    if (r < 0) {
        spec_secret_env_free(kv);
        return r;
    }
    qsort(kv, k, sizeof *kv, secret_env_cmp);
    *out = kv;
    *n_out = k;
    return 0;
}
