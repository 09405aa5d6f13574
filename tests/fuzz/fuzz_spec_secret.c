/* libFuzzer target: secret bodies as PUT /v1/secrets/{name} receives them (the "env"
 * object, spec_secret_env_parse). What validates must be within the bounds, every
 * entry "KEY=VALUE" with a valid KEY, sorted and unique; errors name a field. */
#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "spec/spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!body)
        return 0;
    char **env = NULL;
    size_t n = 0, total = 0;
    char field[SPEC_FIELD_MAX];
    struct gerr err;
    if (spec_secret_env_parse(json_object_get(body, "env"), &env, &n, field, &err) == 0) {
        if (n == 0 || n > SPEC_SECRET_MAX_KEYS || env[n])
            __builtin_trap();
        for (size_t i = 0; i < n; i++) {
            const char *eq = strchr(env[i], '=');
            if (!eq)
                __builtin_trap();
            char key[256];
            size_t kl = (size_t)(eq - env[i]);
            if (kl >= sizeof key)
                __builtin_trap();
            memcpy(key, env[i], kl);
            key[kl] = '\0';
            if (!spec_env_name_valid(key) || (i && strcmp(env[i - 1], env[i]) >= 0))
                __builtin_trap();
            total += strlen(env[i]) + 1;
        }
        if (total > SPEC_SECRET_MAX_BYTES)
            __builtin_trap();
        spec_secret_env_free(env);
    } else if (strncmp(field, "env", 3) && err.code != ENOMEM) {
        __builtin_trap();
    }
    json_decref(body);
    return 0;
}
