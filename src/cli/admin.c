/* Identity: gust workspace create|ls|quota, gust token create|ls|revoke, gust whoami.
 * A created token is printed once (gustd keeps only its hash). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cleanup.h"
#include "base/json_cleanup.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "cli/cli.h"
#include "gust.h"

/* Reads "KEY=NUMBER" into quotas (cpu may be fractional); false after a usage error. */
static bool parse_quota(const struct cli_cmd *cmd, const char *a, json_t *quotas, int *rc)
{
    const char *eq = strchr(a, '=');
    char key[32];
    size_t kl = eq ? (size_t)(eq - a) : 0;
    char *end = NULL;
    double v = eq ? strtod(eq + 1, &end) : 0;
    if (!eq || kl == 0 || kl >= sizeof key || end == eq + 1 || *end) {
        *rc = cli_usage_error(cmd, "\"%.40s\": give a quota as KEY=NUMBER (containers, cpu, memory, gpus, "
                                   "stored_bytes)", a);
        return false;
    }
    memcpy(key, a, kl);
    key[kl] = '\0';
    json_object_set_new(quotas, key, strcmp(key, "cpu") ? json_integer((json_int_t)v) : json_real(v));
    return true;
}

/* Arguments of workspace create and quota: NAME, then quotas as KEY=N (bare_quotas:
 * quota) or --quota KEY=N (create). Returns EXIT_OK, a usage error's exit code, or -1
 * after printing the help. */
static int workspace_args(const struct cli_cmd *cmd, int argc, char **argv, bool bare_quotas, const char **name,
                          json_t *quotas)
{
    int rc = EXIT_OK;
    for (int i = 1; i < argc && rc == EXIT_OK; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            cli_print_usage(stdout, cmd);
            return -1;
        }
        if (cli_take_global_opt(argc, argv, &i))
            continue;
        if (!bare_quotas && !strcmp(a, "--quota") && i + 1 < argc)
            parse_quota(cmd, argv[++i], quotas, &rc);
        else if (a[0] == '-')
            rc = cli_usage_error(cmd, "unknown option \"%s\"", a);
        else if (!*name)
            *name = a;
        else if (bare_quotas)
            parse_quota(cmd, a, quotas, &rc);
        else
            rc = cli_usage_error(cmd, "one workspace NAME, got \"%s\" too", a);
    }
    if (rc == EXIT_OK && !*name)
        rc = cli_usage_error(cmd, "give the workspace NAME");
    return rc;
}

/* gust workspace create NAME [--quota KEY=N]... and gust workspace quota NAME KEY=N...
 * (0: no limit). */
static int workspace_send(const struct cli_cmd *cmd, int argc, char **argv, bool create)
{
    const char *name = NULL;
    json_t *quotas AUTO_JSON = json_object();
    int rc = workspace_args(cmd, argc, argv, !create, &name, quotas);
    if (rc != EXIT_OK)
        return rc < 0 ? EXIT_OK : rc;
    json_t *req AUTO_JSON = create ? json_pack("{s:s,s:O}", "name", name, "quotas", quotas) : json_incref(quotas);
    AUTO_FREE char *body = json_dumps(req, JSON_COMPACT);
    AUTO_CLIENT gust_client *c = cli_open_client();
    if (!c || !body)
        return EXIT_USAGE;
    json_t *j AUTO_JSON = create ? cli_api_json(c, &rc, "POST", body, "/v1/workspaces")
                                 : cli_api_json(c, &rc, "PUT", body, "/v1/workspaces/%s/quotas", name);
    if (!j)
        return rc;
    if (cli_opts.json) {
        cli_print_json(j);
    } else {
        AUTO_FREE char *q = json_dumps(json_object_get(j, "quotas"), JSON_COMPACT);
        printf("%s workspace %s, quotas %s\n", create ? "created" : "updated", name, q ? q : "{}");
    }
    return EXIT_OK;
}

int cmd_workspace_create(const struct cli_cmd *cmd, int argc, char **argv)
{
    return workspace_send(cmd, argc, argv, true);
}

int cmd_workspace_quota(const struct cli_cmd *cmd, int argc, char **argv)
{
    return workspace_send(cmd, argc, argv, false);
}

static const char *const WS_TITLES[] = {"NAME", "QUOTAS", "CONTAINERS", "CPU", "MEMORY-MIB", "GPUS", "CREATED"};

void cmd_print_workspaces(json_t *j, const char *arg, const gust_client *c)
{
    struct table t = table_new(WS_TITLES, ARRAY_LEN(WS_TITLES));
    size_t i;
    json_t *w;
    json_array_foreach(json_object_get(j, "workspaces"), i, w)
    {
        json_t *use = json_object_get(w, "in_use");
        char *row[] = {cell_field(w, "name"), cell_json(json_object_get(w, "quotas")), cell_field(use, "containers"),
                       cell_field(use, "cpu"), cell_field(use, "memory"), cell_field(use, "gpus"),
                       cell_age(json_object_get(w, "created_at"))};
        table_add(&t, row);
    }
    table_print(&t, NULL);
}

/* gust token create --workspace W --role R [--name N] [--expires-in SECONDS] */
int cmd_token_create(const struct cli_cmd *cmd, int argc, char **argv)
{
    json_t *req AUTO_JSON = json_object();
    int rc = EXIT_OK;
    for (int i = 1; i < argc && rc == EXIT_OK; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            cli_print_usage(stdout, cmd);
            return EXIT_OK;
        }
        if (cli_take_global_opt(argc, argv, &i))
            continue;
        const char *key = !strcmp(a, "--workspace") || !strcmp(a, "-w") ? "workspace"
                          : !strcmp(a, "--role") || !strcmp(a, "-r")    ? "role"
                          : !strcmp(a, "--name")                        ? "name"
                          : !strcmp(a, "--expires-in")                  ? "expires_in"
                                                                        : NULL;
        if (!key || i + 1 >= argc) {
            rc = cli_usage_error(cmd, key ? "%s needs a value" : "unknown argument \"%s\"", a);
            break;
        }
        const char *v = argv[++i];
        if (!strcmp(key, "expires_in")) {
            char *end;
            double s = strtod(v, &end);
            if (end == v || *end || s <= 0)
                rc = cli_usage_error(cmd, "--expires-in: a number of seconds > 0, got \"%s\"", v);
            json_object_set_new(req, key, json_real(s));
        } else {
            json_object_set_new(req, key, json_string(v));
        }
    }
    if (rc == EXIT_OK && (!json_object_get(req, "workspace") || !json_object_get(req, "role")))
        rc = cli_usage_error(cmd, "give --workspace W and --role admin|developer|invoker");
    if (rc != EXIT_OK)
        return rc;
    AUTO_FREE char *body = json_dumps(req, JSON_COMPACT);
    AUTO_CLIENT gust_client *c = cli_open_client();
    if (!c || !body)
        return EXIT_USAGE;
    json_t *j AUTO_JSON = cli_api_json(c, &rc, "POST", body, "/v1/tokens");
    if (!j)
        return rc;
    if (cli_opts.json) {
        cli_print_json(j);
    } else {
        /* The token on stdout alone (for `export GUST_TOKEN=$(gust token create ...)`),
         * the rest on stderr. */
        fprintf(stderr, "token %s: role %s in workspace %s (shown once; gustd keeps only its hash)\n",
                json_string_value(json_object_get(j, "id")), json_string_value(json_object_get(j, "role")),
                json_string_value(json_object_get(j, "workspace")));
        printf("%s\n", json_string_value(json_object_get(j, "token")));
    }
    return EXIT_OK;
}

static const char *const TOKEN_TITLES[] = {"ID", "WORKSPACE", "ROLE", "NAME", "CREATED", "EXPIRES"};

void cmd_print_tokens(json_t *j, const char *arg, const gust_client *c)
{
    struct table t = table_new(TOKEN_TITLES, ARRAY_LEN(TOKEN_TITLES));
    size_t i;
    json_t *tok;
    json_array_foreach(json_object_get(j, "tokens"), i, tok)
    {
        json_t *exp = json_object_get(tok, "expires_at");
        char *row[] = {cell_field(tok, "id"), cell_field(tok, "workspace"), cell_field(tok, "role"),
                       cell_field(tok, "name"), cell_age(json_object_get(tok, "created_at")),
                       json_is_number(exp) ? cell_json(exp) : xstrdup("never")};
        table_add(&t, row);
    }
    table_print(&t, NULL);
}

void cmd_print_token_revoked(json_t *j, const char *id, const gust_client *c)
{
    printf("revoked token %s\n", id);
}

void cmd_print_whoami(json_t *j, const char *arg, const gust_client *c)
{
    printf("workspace %s, role %s (token %s)\n", json_string_value(json_object_get(j, "workspace")),
           json_string_value(json_object_get(j, "role")), json_string_value(json_object_get(j, "token_id")));
}
