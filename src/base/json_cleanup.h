/* Scope-bound release of jansson values: `json_t *v AUTO_JSON = json_object();`.
 * Hand a value over with TAKE_PTR (base/cleanup.h). Header-only so that base itself
 * does not link jansson (gust-init is static and has no JSON). */
#ifndef GUST_BASE_JSON_CLEANUP_H
#define GUST_BASE_JSON_CLEANUP_H

#include <jansson.h>

static inline void json_cleanup(json_t **j)
{
    json_decref(*j);
}
#define AUTO_JSON __attribute__((cleanup(json_cleanup)))

#endif
