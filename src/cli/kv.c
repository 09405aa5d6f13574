/* Dicts and queues: gust dict|queue ls and delete. Their contents are the SDK's
 * pickles, so reading and writing them is the SDK's (gust.Dict, gust.Queue). */
#include <jansson.h>
#include <stdio.h>

#include "base/util.h"
#include "cli/cli.h"
#include "gust.h"

static const char *const KV_TITLES[] = {"NAME", "LEN", "CREATED"};

/* gust dict ls, gust queue ls: the answer holds "dicts" or "queues". */
void cmd_print_kv_objects(json_t *j, const char *arg, const gust_client *c)
{
    json_t *list = json_object_get(j, "dicts");
    if (!list)
        list = json_object_get(j, "queues");
    struct table t = table_new(KV_TITLES, ARRAY_LEN(KV_TITLES));
    size_t i;
    json_t *o;
    json_array_foreach(list, i, o)
    {
        char *row[] = {cell_field(o, "name"), cell_field(o, "len"), cell_age(json_object_get(o, "created_at"))};
        table_add(&t, row);
    }
    table_print(&t, NULL);
}

/* gust dict delete NAME, gust queue delete NAME. */
void cmd_print_kv_deleted(json_t *j, const char *name, const gust_client *c)
{
    printf("deleted %s\n", name);
}
