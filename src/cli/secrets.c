/* Secrets: gust secret create, ls and rm. Values go to gustd and never come back. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cleanup.h"
#include "base/json_cleanup.h"
#include "base/util.h"
#include "cli/cli.h"
#include "gust.h"

/* gust secret create NAME KEY=VALUE... | KEY... : a bare KEY takes its value from
 * this process's environment, so values need not appear in argv (or shell history). */
int cmd_secret_create(const struct cli_cmd *cmd, int argc, char **argv)
{
    const char *name = NULL;
    json_t *env = json_object();
    json_t *req AUTO_JSON = json_pack("{s:o}", "env", env);
    int rc = EXIT_OK;
    for (int i = 1; i < argc && rc == EXIT_OK; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            cli_print_usage(stdout, cmd);
            return EXIT_OK;
        }
        if (cli_take_global_opt(argc, argv, &i))
            continue;
        if (a[0] == '-') {
            rc = cli_usage_error(cmd, "unknown option \"%s\"", a);
        } else if (!name) {
            name = a;
        } else {
            const char *eq = strchr(a, '=');
            char key[256];
            size_t kl = eq ? (size_t)(eq - a) : strlen(a);
            if (kl == 0 || kl >= sizeof key) {
                rc = cli_usage_error(cmd, "\"%.40s\": give KEY=VALUE, or KEY to take its value from the environment",
                                     a);
                break;
            }
            memcpy(key, a, kl);
            key[kl] = '\0';
            const char *val = eq ? eq + 1 : getenv(key);
            if (!val)
                rc = cli_usage_error(cmd, "%s: not set in the environment; give %s=VALUE or export it", key, key);
            else
                json_object_set_new(env, key, json_string(val));
        }
    }
    if (rc == EXIT_OK && (!name || json_object_size(env) == 0))
        rc = cli_usage_error(cmd, "give a NAME and at least one KEY=VALUE");
    if (rc != EXIT_OK)
        return rc;
    AUTO_FREE char *body = json_dumps(req, JSON_COMPACT);
    AUTO_CLIENT gust_client *c = cli_open_client();
    if (!c || !body)
        return EXIT_USAGE;
    json_t *j AUTO_JSON = cli_api_json(c, &rc, "PUT", body, "/v1/secrets/%s", name);
    if (!j)
        return rc;
    if (cli_opts.json) {
        cli_print_json(j);
    } else {
        AUTO_FREE char *keys = json_dumps(json_object_get(j, "keys"), JSON_COMPACT);
        printf("%s secret %s with %s\n", json_is_true(json_object_get(j, "created")) ? "created" : "updated", name,
               keys ? keys : "its keys");
    }
    return EXIT_OK;
}

static const char *const SECRET_TITLES[] = {"NAME", "KEYS", "USED-BY"};

/* gust secret ls: names, keys and users; never values (gustd does not return them). */
void cmd_print_secrets(json_t *j, const char *arg, const gust_client *c)
{
    struct table t = table_new(SECRET_TITLES, ARRAY_LEN(SECRET_TITLES));
    size_t i;
    json_t *sec;
    json_array_foreach(json_object_get(j, "secrets"), i, sec)
    {
        char *row[] = {cell_field(sec, "name"), cell_list(json_object_get(sec, "keys")),
                       cell_list(json_object_get(sec, "used_by"))};
        table_add(&t, row);
    }
    table_print(&t, NULL);
}

/* gust secret rm NAME. */
void cmd_print_secret_removed(json_t *j, const char *name, const gust_client *c)
{
    printf("deleted secret %s\n", name);
}
