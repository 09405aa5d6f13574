/* Apps: gust deploy (a spec file here, a Python file through the SDK), gust run (the
 * SDK) and gust stop (its printer). */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/xalloc.h"
#include "base/json_cleanup.h"
#include "cli/cli.h"
#include "gust.h"

/* gust stop APP. */
void cmd_print_stopped(json_t *j, const char *app, const gust_client *c)
{
    printf("stopped app %s\n", app);
}

/* The Python SDK's directory: $GUST_SDK_DIR, else sdk/python beside the directory
 * this binary is in (a build tree of the repository). */
static bool sdk_dir(char *out, size_t cap)
{
    const char *env = getenv("GUST_SDK_DIR");
    if (env && *env) {
        snprintf(out, cap, "%s", env);
        return true;
    }
    char exe[PATH_MAX - 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return false;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return false;
    *slash = '\0';
    char cand[PATH_MAX + 32];
    snprintf(cand, sizeof cand, "%s/../sdk/python/gust/cli.py", exe);
    if (access(cand, R_OK) < 0)
        return false;
    return snprintf(out, cap, "%s/../sdk/python", exe) < (int)cap;
}

/* gust deploy FILE.py / gust run FILE.py[::ENTRY] / gust serve FILE.py: the SDK does
 * it (verb "deploy", "run" or "serve"; verbose: builds show their steps' output). Returns only on failure, with the
 * exit code. */
static int hand_to_python(const char *verb, const char *file, bool verbose, int nextra, char **extra)
{
    char sdk[PATH_MAX];
    if (!sdk_dir(sdk, sizeof sdk)) {
        fprintf(stderr, "error: cannot find the Python SDK for %s; set GUST_SDK_DIR to its directory "
                        "(sdk/python of the Gust repository)\n", file);
        return EXIT_USAGE;
    }
    const char *old = getenv("PYTHONPATH");
    AUTO_BUF struct buf pp = {0};
    buf_printf(&pp, "%s%s%s", sdk, old && *old ? ":" : "", old && *old ? old : "");
    /* The SDK finds the address, token and CA as the CLI does; what was given on this
     * command line goes over in the environment (never in argv, which others see). */
    if (setenv("PYTHONPATH", pp.data, 1) < 0 || (cli_opts.addr && setenv("GUST_ADDR", cli_opts.addr, 1) < 0) ||
        (cli_opts.token && setenv("GUST_TOKEN", cli_opts.token, 1) < 0) ||
        (cli_opts.ca_file && setenv("GUST_CA_FILE", cli_opts.ca_file, 1) < 0))
        return EXIT_USAGE;
    fflush(stdout);
    AUTO_FREE char **argv = xcalloc((size_t)nextra + 9, sizeof *argv);
    size_t argc = 0;
    argv[argc++] = "python3";
    argv[argc++] = "-m";
    argv[argc++] = "gust.cli";
    argv[argc++] = (char *)verb;
    argv[argc++] = (char *)file;
    if (cli_opts.json)
        argv[argc++] = "--json";
    if (verbose)
        argv[argc++] = "-v";
    if (nextra) {
        argv[argc++] = "--";
        for (int i = 0; i < nextra; i++)
            argv[argc++] = extra[i];
    }
    execvp("python3", argv);
    fprintf(stderr, "error: cannot run python3 for %s: %s\n", file, strerror(errno));
    return EXIT_USAGE;
}

/* Where FILE.py is in gust run's argv (argc when it is missing): gust's options come
 * before it, the entrypoint's after it, as with `modal run`. */
static int run_file_index(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--"))
            return i + 1 < argc ? i + 1 : argc;
        if (a[0] != '-' || !a[1])
            return i;
        if ((!strcmp(a, "--addr") || !strcmp(a, "--token") || !strcmp(a, "--ca-file")) && i + 1 < argc)
            i++;
    }
    return argc;
}

int cmd_run(const struct cli_cmd *cmd, int argc, char **argv)
{
    char *pos[1];
    bool verbose = false;
    struct cli_opt opts[] = {{"verbose", 'v', NULL, &verbose}, {0}};
    int rc;
    int file_at = run_file_index(argc, argv);
    int nown = file_at < argc ? file_at + 1 : argc;
    if (!cli_parse_args(cmd, nown, argv, opts, pos, 1, &rc))
        return rc;
    const char *sep = strstr(pos[0], "::");
    size_t flen = sep ? (size_t)(sep - pos[0]) : strlen(pos[0]);
    if (flen < 4 || strncmp(pos[0] + flen - 3, ".py", 3))
        return cli_usage_error(cmd, "want a Python file, FILE.py or FILE.py::ENTRYPOINT, got \"%s\"", pos[0]);
    return hand_to_python("run", pos[0], verbose, argc - nown, argv + nown);
}

int cmd_serve(const struct cli_cmd *cmd, int argc, char **argv)
{
    char *pos[1];
    bool verbose = false;
    struct cli_opt opts[] = {{"verbose", 'v', NULL, &verbose}, {0}};
    int rc;
    if (!cli_parse_args(cmd, argc, argv, opts, pos, 1, &rc))
        return rc;
    size_t plen = strlen(pos[0]);
    if (plen < 4 || strcmp(pos[0] + plen - 3, ".py"))
        return cli_usage_error(cmd, "want a Python file, FILE.py, got \"%s\"", pos[0]);
    return hand_to_python("serve", pos[0], verbose, 0, NULL);
}

int cmd_deploy(const struct cli_cmd *cmd, int argc, char **argv)
{
    char *pos[1];
    bool force = false, verbose = false;
    struct cli_opt opts[] = {{"force-build", 0, NULL, &force}, {"verbose", 'v', NULL, &verbose}, {0}};
    int rc;
    if (!cli_parse_args(cmd, argc, argv, opts, pos, 1, &rc))
        return rc;
    size_t plen = strlen(pos[0]);
    if (plen > 3 && !strcmp(pos[0] + plen - 3, ".py"))
        return hand_to_python("deploy", pos[0], verbose, 0, NULL);
    AUTO_BUF struct buf spec = {0};
    AUTO_BUF struct buf path = {0};
    const char *ctype;
    AUTO_CLIENT gust_client *c = cli_build_open(pos[0], "/v1/deploy?build=1", true, &spec, &ctype, &path, &rc);
    if (!c)
        return rc;
    if (force)
        buf_append_str(&path, "&force_build=1");
    json_t *j AUTO_JSON = NULL;
    if ((rc = cli_build_run(c, path.data, &spec, ctype, "deployed", verbose, &j)) != EXIT_OK)
        return rc;
    json_object_del(j, "event");
    if (cli_opts.json) {
        cli_print_json(j);
        return EXIT_OK;
    }
    const char *app = json_string_value(json_object_get(j, "app"));
    printf("deployed app %s\n", app ? app : "?");
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(j, "functions"), i, f)
    {
        const char *name = json_string_value(json_object_get(f, "name"));
        printf("  %s.%s  version %lld\n", app ? app : "?", name ? name : "?",
               (long long)json_integer_value(json_object_get(f, "version")));
    }
    return EXIT_OK;
}
