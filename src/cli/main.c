/* gust: the command-line client of gustd, built on libgust (include/gust.h).
 * docs/CLI.md documents the commands, their output and the exit codes. This file holds
 * the command table, the global options before the command, the help and the
 * dispatch; cli.h says where the commands themselves are. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "base/util.h"
#include "cli/cli.h"
#include "gust.h"

struct cli_options cli_opts;

static const char GLOBAL_HELP[] =
    "Global options:\n"
    "  --addr ADDR       gustd address: HOST:PORT, http://HOST:PORT or https://HOST:PORT\n"
    "                    (default $GUST_ADDR, else 127.0.0.1:8470)\n"
    "  --token TOKEN     API token sent as a bearer token (default $GUST_TOKEN, else the\n"
    "                    first line of ~/.config/gust/token, or $XDG_CONFIG_HOME/gust/token)\n"
    "  --ca-file FILE    for https: trust the PEM CA certificates in FILE instead of the\n"
    "                    system's (default $GUST_CA_FILE)\n"
    "  --json            print the API's JSON answers as they are\n"
    "  --help            show help\n";

void cli_print_usage(FILE *f, const struct cli_cmd *c)
{
    fprintf(f, "usage: gust %s\n\n%s\n%s", c->usage, c->help, GLOBAL_HELP);
}

int cli_usage_error(const struct cli_cmd *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "gust %s: ", c->name);
    vfprintf(stderr, fmt, ap);
    fputs("\n\n", stderr);
    va_end(ap);
    cli_print_usage(stderr, c);
    return EXIT_USAGE;
}

/* How call and spawn take a Python function's input (client/pyjson.h holds the form
 * it travels in). */
#define PY_JSON_HELP                                                                     \
    "A Python function (deployed by the Python SDK) takes JSON, at most 64 MiB, and\n"   \
    "its result is printed as JSON. The value is its one argument: -d 7 calls f(7),\n"  \
    "-d '[1, 2]' f([1, 2]), -d '\"ada\"' f(\"ada\"), no input f(). With --args an array\n" \
    "is the positional arguments and an object the keyword ones: --args -d '[1, 2]'\n"  \
    "calls f(1, 2), --args -d '{\"x\": 1}' f(x=1).\n"
#define PY_JSON_OPTS                                                                     \
    "  --args              Python: the JSON array or object is the arguments\n"         \
    "  --raw               send the input bytes as they are and print the output\n"     \
    "                      bytes (a Python function's are pickles)\n"

static const struct cli_cmd CMDS[] = {
    {"deploy", "deploy SPEC [--force-build] [-v]",
     "Deploys the app in SPEC (a .json or .toml file, or - for stdin; other names are\n"
     "read as JSON if they start with '{', else TOML; a .py file goes to the Python SDK,\n"
     "which deploys every gust.App it defines). Every function gets a new version.\n"
     "Inline image definitions are built first (cached steps are reused), with progress\n"
     "on stderr; relative paths in them are taken from SPEC's directory.\n"
     "  --force-build       run every build step again, ignoring the cache\n"
     "  -v, --verbose       show every line the build steps print (default: the steps,\n"
     "                      cache hits and durations; a failing step's output always)\n",
     .run = cmd_deploy},
    {"run", "run [-v] FILE.py[::ENTRYPOINT] [--PARAM VALUE ...]",
     "Runs a Python app: deploys the gust.App in FILE.py (building its images), calls its\n"
     "@app.local_entrypoint() (ENTRYPOINT picks one when there are several) on this\n"
     "machine, then stops the app. What the app's functions print meanwhile is shown\n"
     "as it happens, each line prefixed with its function ([fn] text; [fn fc-xxxxxx]\n"
     "when another call of fn ran at the same time), stderr lines on stderr.\n"
     "What follows FILE.py is the entrypoint's (as with `modal run`): each parameter is\n"
     "an option --name VALUE (underscores as dashes), typed by its annotation (str, int,\n"
     "float, datetime; bool: --name / --no-name), required without a default;\n"
     "`gust run FILE.py --help` lists them. gust's own options go before FILE.py.\n"
     "  -v, --verbose       show every line the image build steps print\n",
     .run = cmd_run},
    {"serve", "serve [-v] FILE.py",
     "Serves a Python app while you edit it (as `modal serve`): deploys the gust.Apps in\n"
     "FILE.py as ephemeral copies named APP-dev, prints each web endpoint's URL, shows\n"
     "what the functions print (as `gust run`), and redeploys when one of the app's\n"
     "Python sources changes (polled every 0.5 s; only changed chunks are uploaded; new\n"
     "containers run the new code, requests in flight finish on the old). Ctrl-C or\n"
     "SIGTERM stops the copies.\n"
     "  -v, --verbose       show every line the image build steps print\n",
     .run = cmd_serve},
    {"call", "call APP.FN [-d DATA | -d @FILE | -d @-] [--args | --raw] [--timeout S]",
     "Calls APP.FN and writes its output bytes to stdout. The input is DATA, the\n"
     "contents of FILE, or stdin (when no -d is given and stdin is not a terminal).\n"
     PY_JSON_HELP
     "A result JSON cannot hold (bytes, a set, a class instance) fails the call, naming\n"
     "its type; an exception fails it with its type, message and remote traceback.\n"
     "  -d, --data DATA     the input; @FILE reads a file, @- stdin\n"
     PY_JSON_OPTS
     "  -t, --timeout S     wait at most S seconds; if the call is still going, print\n"
     "                      its id and exit 5 (default: wait until done)\n",
     .run = cmd_call},
    {"spawn", "spawn APP.FN [-d DATA | -d @FILE | -d @-] [--args | --raw]",
     "Queues a call of APP.FN and prints its call id at once; `gust result ID` gets\n"
     "its output.\n"
     PY_JSON_HELP
     "  -d, --data DATA     the input; @FILE reads a file, @- stdin\n"
     PY_JSON_OPTS,
     .run = cmd_spawn},
    {"result", "result ID [--wait S] [--raw]",
     "Writes the output of call ID to stdout (a Python function's JSON result as JSON,\n"
     "see `gust call --help`). Exits 5 if the call is still going after the wait, 1\n"
     "if it failed.\n"
     "  -w, --wait S        wait up to S seconds for the call to finish (default 0)\n"
     "  --raw               write the output bytes as they are\n",
     .run = cmd_result},
    {"cancel", "cancel ID", "Cancels call ID (a running input is stopped) and prints its status.\n",
     .run = cmd_request, .method = "POST", .path = "/v1/calls/%s/cancel", .print = cmd_print_cancelled},
    {"map", "map APP.FN [--ordered] [--input FILE] [--args | --raw] < inputs.jsonl",
     "Calls APP.FN once per input line (NDJSON: a JSON string is passed as its UTF-8\n"
     "bytes, {\"b64\": \"...\"} as the decoded bytes, other JSON as its text). Prints one\n"
     "JSON line per result as it completes, and progress on stderr. Exits 1 if any\n"
     "input failed.\n"
     "A Python function (deployed by the Python SDK) takes each line as JSON, as\n"
     "`gust call -d LINE` does (the value is its one argument; with --args an array\n"
     "or object is its arguments), and its result is the line's \"result\" (JSON);\n"
     "an exception's \"error\" has its \"type\", \"message\" and \"traceback\".\n"
     "  --ordered           print results in input order\n"
     "  -i, --input FILE    read the inputs from FILE instead of stdin\n"
     PY_JSON_OPTS,
     .run = cmd_map},
    {"ls", "ls", "Lists deployed functions: version, queue, running inputs, containers and why\n"
                 "queued inputs wait, if they do; a scheduled function's next and latest run (UTC).\n",
     .run = cmd_request, .method = "GET", .path = "/v1/functions", .print = cmd_print_functions},
    {"ps", "ps", "Lists containers.\n",
     .run = cmd_request, .method = "GET", .path = "/v1/containers", .print = cmd_print_containers},
    {"calls", "calls APP.FN [--limit N]",
     "Lists the function's recent calls, newest first, with their timelines: time queued\n"
     "(waiting for a container, retry backoff included), START (the cold start of the\n"
     "container it waited for), RUN (in containers), TOTAL (submit to end), the container\n"
     "of its last attempt and whether that was the container's first input (COLD).\n"
     "  -n, --limit N       at most N calls (1..1000, default 20)\n",
     .run = cmd_calls},
    {"logs", "logs APP.FN [-f] [--tail N] [--since T] [--until T] [--search TEXT] [--call ID] [--container ID]",
     "Prints the function's log lines (TIMESTAMP CONTAINER CALL STREAM TEXT; CALL is\n"
     "the call that printed the line, or - when not known).\n"
     "  -f, --follow        keep streaming new lines (Ctrl-C to stop)\n"
     "  -n, --tail N        only the last N lines (of those the filters pass)\n"
     "  -s, --since T       only lines from T on: RFC 3339 (2026-12-05T14:00:00Z), UNIX\n"
     "                      seconds, or a duration back from now (90s, 10m, 2h, 7d)\n"
     "  -u, --until T       only lines before T (as --since)\n"
     "      --search TEXT   only lines that contain TEXT\n"
     "      --call ID       only the lines printed by call ID\n"
     "      --container ID  only the lines of container ID\n"
     "A filtered read looks at the function's newest 20,000 stored lines.\n",
     .run = cmd_logs},
    {"stop", "stop APP", "Stops every container of APP, cancels its pending calls and refuses new calls\n"
                         "until the next deploy.\n",
     .run = cmd_request, .method = "POST", .path = "/v1/apps/%s/stop", .print = cmd_print_stopped},
    {"usage", "usage [--since S]",
     "Prints resource usage and cost per function.\n"
     "  -s, --since S       only usage after S: UNIX seconds, or a duration back from\n"
     "                      now such as 90s, 15m, 2h, 7d\n",
     .run = cmd_usage},
    {"image ls", "image ls", "Lists registered images.\n",
     .run = cmd_request, .method = "GET", .path = "/v1/images", .print = cmd_print_images},
    {"image add", "image add NAME ROOTFS [--host-usr]",
     "Stores the directory ROOTFS in the content-addressed image store as image NAME\n"
     "(same content, same id: unchanged files are not stored twice).\n"
     "  --host-usr          bind-mount the host's /usr read-only into it\n",
     .run = cmd_image_add},
    {"image import", "image import NAME PATH",
     "Imports an OCI image: PATH is an OCI image layout directory, or a tarball made by\n"
     "`skopeo copy ... oci-archive:` or `docker save`. Layers are applied with whiteouts.\n",
     .run = cmd_image_add},
    {"image build", "image build FILE [--name NAME] [--force-build] [-v]",
     "Builds the image definition in FILE (.json or .toml: base or from_oci, and steps;\n"
     "see docs/SPEC.md), showing each step on stderr. Unchanged steps come from the\n"
     "cache. Relative paths in FILE are taken from FILE's directory.\n"
     "  -t, --name NAME     register the result under NAME (usable as image = \"NAME\")\n"
     "  --force-build       run every step again, ignoring the cache\n"
     "  -v, --verbose       show every line the steps print (a failing step's output is\n"
     "                      always shown)\n",
     .run = cmd_image_build},
    {"image inspect", "image inspect NAME", "Shows an image: id, rootfs, files, bytes, config.\n",
     .run = cmd_request, .method = "GET", .path = "/v1/images/%s", .print = cmd_print_image},
    {"image rm", "image rm NAME", "Removes the name NAME (refused while a deployed function uses it).\n",
     .run = cmd_request, .method = "DELETE", .path = "/v1/images/%s", .print = cmd_print_image_removed},
    {"image gc", "image gc",
     "Deletes from the store every image no name, deployed function or container uses.\n",
     .run = cmd_request, .method = "POST", .path = "/v1/images/gc", .print = cmd_print_image_gc},
    {"secret create", "secret create NAME KEY=VALUE... | KEY...",
     "Creates (or replaces) secret NAME: environment variables that functions naming it\n"
     "in `secrets` get in every new container. A bare KEY takes its value from this\n"
     "shell's environment, keeping the value out of argv. gustd never shows values.\n",
     .run = cmd_secret_create},
    {"secret ls", "secret ls", "Lists secrets: names, keys and the functions using them (never values).\n",
     .run = cmd_request, .method = "GET", .path = "/v1/secrets", .print = cmd_print_secrets},
    {"secret rm", "secret rm NAME", "Deletes secret NAME (refused while a deployed function uses it).\n",
     .run = cmd_request, .method = "DELETE", .path = "/v1/secrets/%s", .print = cmd_print_secret_removed},
    {"dict ls", "dict ls", "Lists the workspace's dicts (gust.Dict): names, entries, age.\n", .run = cmd_request,
     .method = "GET", .path = "/v1/dicts", .print = cmd_print_kv_objects},
    {"dict delete", "dict delete NAME", "Deletes dict NAME and its entries (developer).\n", .run = cmd_request,
     .method = "DELETE", .path = "/v1/dicts/%s", .print = cmd_print_kv_deleted},
    {"queue ls", "queue ls", "Lists the workspace's queues (gust.Queue): names, items (all partitions), age.\n",
     .run = cmd_request, .method = "GET", .path = "/v1/queues", .print = cmd_print_kv_objects},
    {"queue delete", "queue delete NAME", "Deletes queue NAME and its items (developer); blocked gets on it fail.\n",
     .run = cmd_request, .method = "DELETE", .path = "/v1/queues/%s", .print = cmd_print_kv_deleted},
    {"volume create", "volume create NAME", "Creates volume NAME (gust.Volume), empty.\n", .run = cmd_volume_create},
    {"volume ls", "volume ls [VOLUME [PATH]]",
     "Without VOLUME: the workspace's volumes. With it: the entries in PATH (default: its root).\n",
     .run = cmd_volume_ls},
    {"volume put", "volume put VOLUME LOCAL [REMOTE] [--force]",
     "Uploads the file or directory LOCAL to REMOTE in VOLUME (default: its root; a REMOTE\n"
     "ending in / takes a file under its own name) as one new version, sending only the\n"
     "chunks gustd lacks. An existing file is refused unless --force.\n",
     .run = cmd_volume_put},
    {"volume get", "volume get VOLUME REMOTE [LOCAL]",
     "Downloads the file or directory REMOTE of VOLUME to LOCAL (default: the current\n"
     "directory; \"-\" writes a file to stdout).\n",
     .run = cmd_volume_get},
    {"volume rm", "volume rm VOLUME PATH [-r]",
     "Removes PATH from VOLUME as a new version (a directory that is not empty only with -r).\n",
     .run = cmd_volume_rm},
    {"volume cp", "volume cp VOLUME SRC... DST [-r]",
     "Copies SRC paths within VOLUME as cp does (into DST when it is a directory; a\n"
     "directory only with -r), as one new version; no file's bytes move.\n",
     .run = cmd_volume_cp},
    {"volume delete", "volume delete NAME", "Deletes volume NAME (developer; refused while a container mounts it).\n",
     .run = cmd_request, .method = "DELETE", .path = "/v1/volumes/%s", .print = cmd_print_kv_deleted},
    {"workspace create", "workspace create NAME [--quota KEY=N]...",
     "Creates workspace NAME (admin). Quotas: containers, cpu (cores), memory (MiB), gpus,\n"
     "stored_bytes; 0 or none: no limit. Each workspace sees only its own apps, calls,\n"
     "logs, secrets, images and usage.\n",
     .run = cmd_workspace_create},
    {"workspace ls", "workspace ls", "Lists workspaces with their quotas and what they use now (admin).\n",
     .run = cmd_request, .method = "GET", .path = "/v1/workspaces", .print = cmd_print_workspaces},
    {"workspace quota", "workspace quota NAME KEY=N...",
     "Sets the quotas of workspace NAME (admin); calls over a quota wait, naming it.\n",
     .run = cmd_workspace_quota},
    {"token create", "token create --workspace W --role admin|developer|invoker [--name N] [--expires-in S]",
     "Creates an API token (admin) and prints it once on stdout. Roles: invoker calls\n"
     "functions; developer also deploys and manages images, secrets and logs; admin also\n"
     "manages workspaces and tokens.\n",
     .run = cmd_token_create},
    {"token ls", "token ls", "Lists tokens: id, workspace, role, name, expiry; never the token (admin).\n",
     .run = cmd_request, .method = "GET", .path = "/v1/tokens", .print = cmd_print_tokens},
    {"token revoke", "token revoke ID", "Revokes the token with id ID (admin); it stops working at once.\n",
     .run = cmd_request, .method = "DELETE", .path = "/v1/tokens/%s", .print = cmd_print_token_revoked},
    {"whoami", "whoami", "Shows the workspace and role of the token in use.\n",
     .run = cmd_request, .method = "GET", .path = "/v1/whoami", .print = cmd_print_whoami},
    {"health", "health", "Checks that gustd answers and prints its version and worker capacity.\n",
     .run = cmd_request, .method = "GET", .path = "/v1/health", .print = cmd_print_health},
};

static void print_main_help(FILE *f)
{
    fprintf(f, "usage: gust [--addr ADDR] [--token TOKEN] [--ca-file FILE] [--json] COMMAND [ARGS]\n\n"
               "The command-line client of gustd.\n\nCommands:\n");
    for (size_t i = 0; i < ARRAY_LEN(CMDS); i++)
        fprintf(f, "  %s\n", CMDS[i].usage);
    fprintf(f, "\n%s"
               "  --version         print the version\n\n"
               "Run `gust COMMAND --help` for a command's options.\n"
               "Exit codes: 0 ok, 1 the function failed, 2 usage error, 3 API error,\n"
               "4 cannot reach gustd, 5 timed out with the call still going.\n",
            GLOBAL_HELP);
}

/* Command groups and their subcommands. */
static const struct {
    const char *group, *subs;
} GROUPS[] = {
    {"image", "ls, build, add, import, inspect, rm or gc"},
    {"secret", "create, ls or rm"},
    {"dict", "ls or delete"},
    {"queue", "ls or delete"},
    {"volume", "create, ls, put, get, rm, cp or delete"},
    {"workspace", "create, ls or quota"},
    {"token", "create, ls or revoke"},
};

static const char *group_subs(const char *name)
{
    for (size_t g = 0; g < ARRAY_LEN(GROUPS); g++)
        if (!strcmp(GROUPS[g].group, name))
            return GROUPS[g].subs;
    return NULL;
}

/* A command of a group ("image", "secret"): the group and its subcommand argv[1]
 * joined into name. Returns -1 to go on, or the exit code after printing the group's
 * commands (for --help, or when the subcommand is missing). */
static int group_name(const char *group, const char *subs, int argc, char **argv, char *name, size_t cap)
{
    if (argc < 2 || argv[1][0] == '-') {
        bool help = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
        FILE *f = help ? stdout : stderr;
        if (!help)
            fprintf(f, "gust %s: missing subcommand (%s)\n\n", group, subs);
        size_t gl = strlen(group);
        for (size_t k = 0; k < ARRAY_LEN(CMDS); k++)
            if (!strncmp(CMDS[k].name, group, gl) && CMDS[k].name[gl] == ' ')
                fprintf(f, "  gust %s\n", CMDS[k].usage);
        return help ? EXIT_OK : EXIT_USAGE;
    }
    snprintf(name, cap, "%s %s", group, argv[1]);
    return -1;
}

int main(int argc, char **argv)
{
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_main_help(stdout);
            return EXIT_OK;
        }
        if (!strcmp(a, "--version")) {
            printf("gust %s (libgust %s)\n", GUST_CLIENT_VERSION, gust_version());
            return EXIT_OK;
        }
        if (!cli_take_global_opt(argc, argv, &i)) {
            fprintf(stderr, "gust: unknown option \"%s\"\n\n", a);
            print_main_help(stderr);
            return EXIT_USAGE;
        }
    }
    if (i >= argc) {
        fprintf(stderr, "gust: missing command\n\n");
        print_main_help(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[i], "help")) {
        if (i + 1 < argc)
            for (size_t k = 0; k < ARRAY_LEN(CMDS); k++)
                if (!strcmp(CMDS[k].name, argv[i + 1]) ||
                    (group_subs(argv[i + 1]) && !strncmp(CMDS[k].name, argv[i + 1], strlen(argv[i + 1])) &&
                     CMDS[k].name[strlen(argv[i + 1])] == ' ')) {
                    cli_print_usage(stdout, &CMDS[k]);
                    return EXIT_OK;
                }
        print_main_help(stdout);
        return EXIT_OK;
    }
    char name[64];
    int skip = 0;
    const char *subs = group_subs(argv[i]);
    if (subs) {
        int rc = group_name(argv[i], subs, argc - i, argv + i, name, sizeof name);
        if (rc >= 0)
            return rc;
        skip = 1;
    } else {
        snprintf(name, sizeof name, "%s", argv[i]);
    }
    for (size_t k = 0; k < ARRAY_LEN(CMDS); k++)
        if (!strcmp(CMDS[k].name, name))
            return CMDS[k].run(&CMDS[k], argc - i - skip, argv + i + skip);
    fprintf(stderr, "gust: unknown command \"%s\"\n\n", name);
    print_main_help(stderr);
    return EXIT_USAGE;
}
