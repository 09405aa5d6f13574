/* Images: gust image ls, add, import, build, inspect, rm and gc. */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/json_cleanup.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "cli/cli.h"
#include "gust.h"

int cmd_image_build(const struct cli_cmd *cmd, int argc, char **argv)
{
    char *pos[1];
    bool force = false, verbose = false;
    const char *name = NULL;
    struct cli_opt opts[] = {
        {"name", 't', &name, NULL}, {"force-build", 0, NULL, &force}, {"verbose", 'v', NULL, &verbose}, {0}};
    int rc;
    if (!cli_parse_args(cmd, argc, argv, opts, pos, 1, &rc))
        return rc;
    AUTO_BUF struct buf spec = {0};
    AUTO_BUF struct buf path = {0};
    const char *ctype;
    AUTO_CLIENT gust_client *c = cli_build_open(pos[0], "/v1/images/build", false, &spec, &ctype, &path, &rc);
    if (!c)
        return rc;
    if (name) {
        buf_append_str(&path, "?name=");
        cli_path_seg(&path, name);
    }
    if (force)
        buf_append_str(&path, name ? "&force_build=1" : "?force_build=1");
    json_t *j AUTO_JSON = NULL;
    if ((rc = cli_build_run(c, path.data, &spec, ctype, "done", verbose, &j)) != EXIT_OK)
        return rc;
    if (cli_opts.json) {
        cli_print_json(j);
    } else {
        printf("built image %s%s%s in %.2f s (%lld steps run, %lld cached)\n", name ? name : "",
               name ? " = " : "", json_string_value(json_object_get(j, "image_id")),
               json_number_value(json_object_get(j, "seconds")),
               (long long)json_integer_value(json_object_get(j, "steps_run")),
               (long long)json_integer_value(json_object_get(j, "steps_cached")));
    }
    return EXIT_OK;
}

int cmd_image_add(const struct cli_cmd *cmd, int argc, char **argv)
{
    bool host_usr = false;
    bool oci = !strcmp(cmd->name, "image import");
    struct cli_opt opts[] = {{"host-usr", 0, NULL, &host_usr}, {0}};
    char *pos[2];
    int rc;
    if (!cli_parse_args(cmd, argc, argv, opts, pos, 2, &rc))
        return rc;
    /* gustd opens no host path a client names: this command reads the directory (or
     * the OCI tarball) itself and uploads what gustd lacks, then names the tree. */
    struct cli_tree *t = cli_tree_new();
    bool is_file = false;
    if (!cli_tree_scan(t, pos[1], oci ? "oci" : "rootfs", &is_file)) {
        cli_tree_free(t);
        return EXIT_USAGE;
    }
    if (!oci && is_file) {
        cli_tree_free(t);
        fprintf(stderr, "error: rootfs %s is a file; give the image's root directory\n", pos[1]);
        return EXIT_USAGE;
    }
    AUTO_CLIENT gust_client *c = cli_open_client();
    if (!c) {
        cli_tree_free(t);
        return EXIT_USAGE;
    }
    char tree[80];
    struct cli_upload_stats st = {0};
    bool ok = cli_tree_upload(c, t, pos[1], tree, &st, &rc);
    cli_tree_free(t);
    if (!ok)
        return rc;
    json_t *req AUTO_JSON = oci ? json_pack("{s:s, s:s}", "name", pos[0], "oci", tree)
                                : json_pack("{s:s, s:s, s:b}", "name", pos[0], "tree", tree, "host_usr", host_usr);
    AUTO_FREE char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    if (!body) {
        fprintf(stderr, "error: the image name is not valid UTF-8\n");
        return EXIT_USAGE;
    }
    /* gustd answers when the image is stored and materialised: as long as that takes. */
    gust_client_set_timeout(c, 0);
    json_t *j AUTO_JSON = cli_api_json(c, &rc, "POST", body, "/v1/images");
    if (!j)
        return rc;
    printf("added image %s = %s (%s%s): %lld files, %.1f MB; uploaded %zu of %zu chunks (%.1f MB)\n", pos[0],
           json_string_value(json_object_get(j, "id")), pos[1], host_usr ? ", host /usr" : "",
           (long long)json_integer_value(json_object_get(j, "files")),
           (double)json_integer_value(json_object_get(j, "bytes")) / 1e6, st.chunks_sent, st.chunks,
           (double)st.bytes_sent / 1e6);
    return EXIT_OK;
}

static const char *const IMAGE_TITLES[] = {"NAME", "ID", "HOST-USR", "ROOTFS"};

/* The first 12 hex digits of an image id ("sha256:..."), "-" for none. */
static char *short_id_cell(json_t *im)
{
    const char *id = json_string_value(json_object_get(im, "id"));
    if (!id)
        return xstrdup("-");
    if (!strncmp(id, "sha256:", 7))
        id += 7;
    return xstrndup(id, 12);
}

/* gust image ls: one row an image (the titles alone when there is none). */
void cmd_print_images(json_t *j, const char *arg, const gust_client *c)
{
    struct table t = table_new(IMAGE_TITLES, ARRAY_LEN(IMAGE_TITLES));
    size_t i;
    json_t *im;
    json_array_foreach(json_object_get(j, "images"), i, im)
    {
        char *row[] = {cell_field(im, "name"), short_id_cell(im), cell_field(im, "host_usr"),
                       cell_field(im, "rootfs")};
        table_add(&t, row);
    }
    table_print(&t, NULL);
}

/* gust image inspect NAME. */
void cmd_print_image(json_t *j, const char *name, const gust_client *c)
{
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v)
    {
        AUTO_FREE char *txt = cell_json(v);
        printf("%-16s %s\n", k, txt ? txt : "?");
    }
}

/* gust image rm NAME. */
void cmd_print_image_removed(json_t *j, const char *name, const gust_client *c)
{
    printf("removed image %s (its files stay in the store until `gust image gc`)\n", name);
}

/* gust image gc. */
void cmd_print_image_gc(json_t *j, const char *arg, const gust_client *c)
{
    printf("removed %lld objects (%.1f MB) and %lld materialised images; %lld images kept\n",
           (long long)json_integer_value(json_object_get(j, "objects_removed")),
           (double)json_integer_value(json_object_get(j, "bytes_removed")) / 1e6,
           (long long)json_integer_value(json_object_get(j, "images_removed")),
           (long long)json_integer_value(json_object_get(j, "images_live")));
}
