/* Volumes: gust volume create, ls, put, get, rm (and delete, a plain request in
 * main.c's table). Arguments are in Modal's order: put VOLUME LOCAL [REMOTE], get
 * VOLUME REMOTE [LOCAL]. Uploads reuse upload.c (only the chunks gustd lacks travel),
 * then one request makes the new version (docs/API.md "Volumes"). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/json_cleanup.h"
#include "base/util.h"
#include "cli/cli.h"
#include "gust.h"

/* Files are read back a chunk per request: the store's chunk size. */
#define VOL_CHUNK (4u << 20)

/* Positionals of a volume command (between min and max of them) and its one flag
 * (--force or -r, NULL: none). false with *rc when the command should end. */
static bool vol_args(const struct cli_cmd *cmd, int argc, char **argv, char **pos, int min, int max,
                     const char *flag_long, char flag_short, bool *flag, int *rc)
{
    int n = 0;
    *rc = EXIT_OK;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            cli_print_usage(stdout, cmd);
            return false;
        }
        if (cli_take_global_opt(argc, argv, &i))
            continue;
        if (flag_long && a[0] == '-' && ((a[1] == '-' && !strcmp(a + 2, flag_long)) || (a[1] == flag_short && !a[2]))) {
            *flag = true;
            continue;
        }
        if (a[0] == '-' && a[1]) {
            *rc = cli_usage_error(cmd, "unknown option \"%s\"", a);
            return false;
        }
        if (n == max) {
            *rc = cli_usage_error(cmd, "too many arguments (\"%s\")", a);
            return false;
        }
        pos[n++] = argv[i];
    }
    if (n < min) {
        *rc = cli_usage_error(cmd, "missing arguments");
        return false;
    }
    return true;
}

/* method on path (built by the caller, query included) with a JSON body or none;
 * the answer's bytes (malloc'd) and length, NULL after reporting the failure. */
static char *vol_request(gust_client *c, const char *method, const char *path, const char *body, size_t *len,
                         int *rc)
{
    int status;
    char *answer = NULL;
    gust_error e;
    if (gust_request(c, method, path, body ? "application/json" : NULL, body, body ? strlen(body) : 0, &status,
                     &answer, len, &e) < 0) {
        free(answer);
        *rc = cli_report(&e);
        return NULL;
    }
    return answer ? answer : calloc(1, 1);
}

static json_t *vol_json(gust_client *c, const char *method, const char *path, const char *body, int *rc)
{
    size_t len;
    AUTO_FREE char *a = vol_request(c, method, path, body, &len, rc);
    if (!a)
        return NULL;
    json_t *j = json_loadb(a, len, 0, NULL);
    if (!j) {
        fprintf(stderr, "error: gustd's answer is not JSON\n");
        *rc = EXIT_CONNECT;
    }
    return j;
}

/* "/v1/volumes/NAME/op" with path (a volume path) as the query's "path". */
static int vol_path(struct buf *b, const char *name, const char *op, const char *path)
{
    if (cli_api_path(b, "/v1/volumes/%s/", name) < 0)
        return -ENOMEM;
    buf_append_str(b, op);
    if (path) {
        buf_append_str(b, "?path=");
        if (cli_path_seg(b, path) < 0)
            return -ENOMEM;
    }
    return 0;
}

/* POST /v1/volumes/{name}/{op} with body req: the answer, NULL after reporting the
 * failure (*rc set). */
static json_t *vol_post(gust_client *c, const char *name, const char *op, json_t *req, int *rc)
{
    AUTO_FREE char *body = json_dumps(req, JSON_COMPACT);
    AUTO_BUF struct buf path = {0};
    if (vol_path(&path, name, op, NULL) < 0) {
        *rc = EXIT_USAGE;
        return NULL;
    }
    return vol_json(c, "POST", path.data, body, rc);
}

int cmd_volume_create(const struct cli_cmd *cmd, int argc, char **argv)
{
    char *pos[1];
    int rc;
    if (!vol_args(cmd, argc, argv, pos, 1, 1, NULL, 0, NULL, &rc))
        return rc;
    AUTO_CLIENT gust_client *c = cli_open_client();
    if (!c)
        return EXIT_USAGE;
    json_t *j AUTO_JSON = cli_api_json(c, &rc, "PUT", NULL, "/v1/volumes/%s", pos[0]);
    if (!j)
        return rc;
    if (cli_opts.json)
        cli_print_json(j);
    else
        printf("%s volume %s\n", json_is_true(json_object_get(j, "created")) ? "created" : "exists:", pos[0]);
    return EXIT_OK;
}

static const char *const VOL_TITLES[] = {"NAME", "VERSION", "UPDATED"};
static const char *const ENTRY_TITLES[] = {"PATH", "TYPE", "SIZE"};

int cmd_volume_ls(const struct cli_cmd *cmd, int argc, char **argv)
{
    char *pos[2] = {NULL, NULL};
    int rc;
    if (!vol_args(cmd, argc, argv, pos, 0, 2, NULL, 0, NULL, &rc))
        return rc;
    AUTO_CLIENT gust_client *c = cli_open_client();
    if (!c)
        return EXIT_USAGE;
    if (!pos[0]) {
        json_t *j AUTO_JSON = cli_api_json(c, &rc, "GET", NULL, "/v1/volumes");
        if (!j)
            return rc;
        struct table t = table_new(VOL_TITLES, ARRAY_LEN(VOL_TITLES));
        size_t i;
        json_t *o;
        json_array_foreach(json_object_get(j, "volumes"), i, o)
        {
            char *row[] = {cell_field(o, "name"), cell_field(o, "version"), cell_age(json_object_get(o, "updated_at"))};
            table_add(&t, row);
        }
        table_print(&t, NULL);
        return EXIT_OK;
    }
    AUTO_BUF struct buf path = {0};
    if (vol_path(&path, pos[0], "entries", pos[1] ? pos[1] : "/") < 0)
        return EXIT_USAGE;
    json_t *j AUTO_JSON = vol_json(c, "GET", path.data, NULL, &rc);
    if (!j)
        return rc;
    if (cli_opts.json) {
        cli_print_json(j);
        return EXIT_OK;
    }
    struct table t = table_new(ENTRY_TITLES, ARRAY_LEN(ENTRY_TITLES));
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(j, "entries"), i, o)
    {
        char *row[] = {cell_field(o, "path"), cell_field(o, "type"), cell_field(o, "size")};
        table_add(&t, row);
    }
    table_print(&t, NULL);
    return EXIT_OK;
}

/* The volume path under which put stores local (a file or directory) given remote. */
static void put_target(const char *local, bool is_file, const char *remote, char *out, size_t cap)
{
    while (remote && *remote == '/')
        remote++;
    if (!remote)
        remote = "";
    size_t n = strlen(remote);
    if (is_file && (n == 0 || remote[n - 1] == '/')) {
        size_t ll = strlen(local);
        while (ll > 1 && local[ll - 1] == '/')
            ll--;
        const char *base = memrchr(local, '/', ll);
        base = base ? base + 1 : local;
        snprintf(out, cap, "%.*s%.*s", (int)n, remote, (int)(local + ll - base), base);
        return;
    }
    while (n > 0 && remote[n - 1] == '/')
        n--;
    snprintf(out, cap, "%.*s", (int)n, remote);
}

int cmd_volume_put(const struct cli_cmd *cmd, int argc, char **argv)
{
    char *pos[3] = {NULL, NULL, NULL};
    bool force = false;
    int rc;
    if (!vol_args(cmd, argc, argv, pos, 2, 3, "force", 0, &force, &rc))
        return rc;
    struct cli_tree *t = cli_tree_new();
    bool is_file = false;
    char label[PATH_MAX + 16];
    snprintf(label, sizeof label, "%s", pos[1]);
    if (!cli_tree_scan(t, pos[1], label, &is_file)) {
        cli_tree_free(t);
        return EXIT_USAGE;
    }
    char target[PATH_MAX];
    put_target(pos[1], is_file, pos[2], target, sizeof target);
    if (is_file && !target[0]) {
        cli_tree_free(t);
        return cli_usage_error(cmd, "REMOTE must name a file for a file");
    }
    /* The scan named a file by its base name and a directory's entries from its
     * root: move them under the target. */
    json_t *changes = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(cli_tree_entries(t), i, e) {
        const char *p = json_string_value(json_object_get(e, "path"));
        if (!p || !strcmp(p, "."))
            continue;
        json_t *ch = json_deep_copy(e);
        char full[PATH_MAX];
        if (snprintf(full, sizeof full, "%s%s%s", target, is_file || !target[0] ? "" : "/", is_file ? "" : p) >=
            (int)sizeof full) {
            cli_tree_free(t);
            json_decref(ch);
            json_decref(changes);
            return cli_usage_error(cmd, "%s: path too long", p);
        }
        json_object_set_new(ch, "path", json_string(full));
        json_array_append_new(changes, ch);
    }
    AUTO_CLIENT gust_client *c = cli_open_client();
    struct cli_upload_stats st = {0};
    if (!c || !cli_tree_send_chunks(c, t, label, &st, &rc)) {
        cli_tree_free(t);
        json_decref(changes);
        return c ? rc : EXIT_USAGE;
    }
    cli_tree_free(t);
    json_t *req AUTO_JSON = json_pack("{s:o,s:b}", "changes", changes, "force", force);
    json_t *j AUTO_JSON = vol_post(c, pos[0], "files", req, &rc);
    if (!j)
        return rc;
    if (cli_opts.json)
        cli_print_json(j);
    else
        printf("uploaded %s to %s:/%s (version %lld; %zu of %zu chunks sent)\n", pos[1], pos[0], target,
               (long long)json_integer_value(json_object_get(j, "version")), st.chunks_sent, st.chunks);
    return EXIT_OK;
}

/* Writes file rpath of volume name to fd, a chunk per request. */
static int get_file(gust_client *c, const char *name, const char *rpath, uint64_t size, int fd)
{
    uint64_t n = size == 0 ? 1 : (size + VOL_CHUNK - 1) / VOL_CHUNK;
    for (uint64_t k = 0; k < n; k++) {
        AUTO_BUF struct buf path = {0};
        if (vol_path(&path, name, "file", rpath) < 0)
            return EXIT_USAGE;
        buf_printf(&path, "&chunk=%llu", (unsigned long long)k);
        int rc;
        size_t len;
        AUTO_FREE char *data = vol_request(c, "GET", path.data, NULL, &len, &rc);
        if (!data)
            return rc;
        if (write_full(fd, data, len) < 0) {
            fprintf(stderr, "error: writing %s: %s\n", rpath, strerror(errno));
            return EXIT_USAGE;
        }
    }
    return EXIT_OK;
}

static int get_to_path(gust_client *c, const char *name, const char *rpath, uint64_t size, const char *local)
{
    AUTO_FD int fd = open(local, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "error: %s: %s\n", local, strerror(errno));
        return EXIT_USAGE;
    }
    return get_file(c, name, rpath, size, fd);
}

int cmd_volume_get(const struct cli_cmd *cmd, int argc, char **argv)
{
    char *pos[3] = {NULL, NULL, NULL};
    int rc;
    if (!vol_args(cmd, argc, argv, pos, 2, 3, NULL, 0, NULL, &rc))
        return rc;
    const char *local = pos[2] ? pos[2] : ".";
    AUTO_CLIENT gust_client *c = cli_open_client();
    if (!c)
        return EXIT_USAGE;
    AUTO_BUF struct buf path = {0};
    if (vol_path(&path, pos[0], "entries", pos[1]) < 0)
        return EXIT_USAGE;
    buf_append_str(&path, "&recursive=1");
    json_t *j AUTO_JSON = vol_json(c, "GET", path.data, NULL, &rc);
    if (!j)
        return rc;
    json_t *entries = json_object_get(j, "entries");
    const char *want = pos[1];
    while (*want == '/')
        want++;
    json_t *first = json_array_get(entries, 0);
    const char *fp = json_string_value(json_object_get(first, "path"));
    bool single = json_array_size(entries) == 1 && fp && !strcmp(fp, want) &&
                  !strcmp(json_string_value(json_object_get(first, "type")), "file");
    if (single) {
        uint64_t size = (uint64_t)json_integer_value(json_object_get(first, "size"));
        if (!strcmp(local, "-"))
            return get_file(c, pos[0], want, size, STDOUT_FILENO);
        struct stat st;
        char dest[PATH_MAX];
        const char *base = strrchr(want, '/');
        if (stat(local, &st) == 0 && S_ISDIR(st.st_mode))
            snprintf(dest, sizeof dest, "%s/%s", local, base ? base + 1 : want);
        else
            snprintf(dest, sizeof dest, "%s", local);
        return get_to_path(c, pos[0], want, size, dest);
    }
    /* A directory: its tree under LOCAL, paths relative to it. */
    size_t wl = strlen(want);
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e) {
        const char *p = json_string_value(json_object_get(e, "path"));
        const char *type = json_string_value(json_object_get(e, "type"));
        const char *rel = wl ? p + wl + 1 : p;
        char dest[PATH_MAX];
        snprintf(dest, sizeof dest, "%s/%s", local, rel);
        if (!strcmp(type, "directory")) {
            if (mkdir_p(dest, 0755) < 0) {
                fprintf(stderr, "error: mkdir %s: %s\n", dest, strerror(errno));
                return EXIT_USAGE;
            }
        } else if (!strcmp(type, "file")) {
            char *slash = strrchr(dest, '/');
            *slash = '\0';
            int mr = mkdir_p(dest, 0755);
            *slash = '/';
            if (mr < 0) {
                fprintf(stderr, "error: mkdir for %s: %s\n", dest, strerror(errno));
                return EXIT_USAGE;
            }
            rc = get_to_path(c, pos[0], p, (uint64_t)json_integer_value(json_object_get(e, "size")), dest);
            if (rc != EXIT_OK)
                return rc;
        }
    }
    return EXIT_OK;
}

int cmd_volume_rm(const struct cli_cmd *cmd, int argc, char **argv)
{
    char *pos[2] = {NULL, NULL};
    bool recursive = false;
    int rc;
    if (!vol_args(cmd, argc, argv, pos, 2, 2, "recursive", 'r', &recursive, &rc))
        return rc;
    AUTO_CLIENT gust_client *c = cli_open_client();
    if (!c)
        return EXIT_USAGE;
    json_t *req AUTO_JSON = json_pack("{s:s,s:b}", "path", pos[1], "recursive", recursive);
    json_t *j AUTO_JSON = vol_post(c, pos[0], "remove", req, &rc);
    if (!j)
        return rc;
    if (cli_opts.json)
        cli_print_json(j);
    else
        printf("removed %s from %s (version %lld)\n", pos[1], pos[0],
               (long long)json_integer_value(json_object_get(j, "version")));
    return EXIT_OK;
}

/* The most paths one gust volume cp takes (sources and the destination): a command
 * line's worth; a longer copy goes through the SDK's copy_files. */
#define CLI_VOLUME_CP_MAX_PATHS 64

int cmd_volume_cp(const struct cli_cmd *cmd, int argc, char **argv)
{
    char *pos[1 + CLI_VOLUME_CP_MAX_PATHS] = {0};
    bool recursive = false;
    int rc;
    if (!vol_args(cmd, argc, argv, pos, 3, 1 + CLI_VOLUME_CP_MAX_PATHS, "recursive", 'r', &recursive, &rc))
        return rc;
    int n = 0;
    while (n < 1 + CLI_VOLUME_CP_MAX_PATHS && pos[n])
        n++;
    AUTO_CLIENT gust_client *c = cli_open_client();
    if (!c)
        return EXIT_USAGE;
    json_t *srcs = json_array();
    for (int i = 1; i < n - 1; i++)
        json_array_append_new(srcs, json_string(pos[i]));
    json_t *req AUTO_JSON = json_pack("{s:o,s:s,s:b}", "src_paths", srcs, "dst_path", pos[n - 1], "recursive", recursive);
    json_t *j AUTO_JSON = vol_post(c, pos[0], "copy", req, &rc);
    if (!j)
        return rc;
    if (cli_opts.json)
        cli_print_json(j);
    else
        printf("copied %d path%s to %s in %s (version %lld)\n", n - 2, n - 2 == 1 ? "" : "s", pos[n - 1], pos[0],
               (long long)json_integer_value(json_object_get(j, "version")));
    return EXIT_OK;
}
