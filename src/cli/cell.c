/* JSON values formatted for display: table cells and "key: value" lines. */
#include <jansson.h>
#include <stdlib.h>

#include "base/buf.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "cli/cli.h"

char *cell_json(json_t *v)
{
    if (json_is_string(v))
        return xstrdup(json_string_value(v));
    if (json_is_integer(v))
        return xasprintf("%lld", (long long)json_integer_value(v));
    if (json_is_real(v))
        return xasprintf("%.4g", json_real_value(v));
    if (json_is_true(v))
        return xstrdup("yes");
    if (json_is_false(v))
        return xstrdup("no");
    if (!v || json_is_null(v))
        return xstrdup("-");
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

char *cell_field(json_t *o, const char *key)
{
    return cell_json(json_object_get(o, key));
}

char *cell_field_1f(json_t *o, const char *key)
{
    return xasprintf("%.1f", json_number_value(json_object_get(o, key)));
}

char *cell_percent(json_t *v)
{
    return json_is_number(v) ? xasprintf("%.0f%%", json_number_value(v) * 100) : xstrdup("-");
}

char *cell_age(json_t *v)
{
    if (!json_is_number(v) || json_number_value(v) <= 0)
        return cell_json(v);
    double d = wall_s() - json_number_value(v);
    if (d < 0)
        d = 0;
    if (d < 120)
        return xasprintf("%.0fs", d);
    if (d < 7200)
        return xasprintf("%.0fm", d / 60);
    if (d < 172800)
        return xasprintf("%.0fh", d / 3600);
    return xasprintf("%.0fd", d / 86400);
}

char *cell_list(json_t *arr)
{
    struct buf b = {0};
    size_t k;
    json_t *v;
    json_array_foreach(arr, k, v)
        buf_printf(&b, "%s%s", k ? "," : "", json_is_string(v) ? json_string_value(v) : "?");
    char *s = b.len ? buf_steal(&b, NULL) : xstrdup("-");
    buf_free(&b);
    return s;
}
