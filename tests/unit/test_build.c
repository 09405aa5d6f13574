/* Image definitions (validation, normalisation, paths) and the builder's manifest
 * steps (copy, env, workdir) with the step cache, on a real event loop and store. A
 * builder without lanes has no sandbox: run steps fail with a clear error. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/util.h"
#include "build/build.h"
#include "cas/cas.h"
#include "spec/spec.h"
#include "unit.h"

static char g_dir[64];

static json_t *parse_def(const char *text, char field[SPEC_FIELD_MAX], struct gerr *err)
{
    json_t *doc = json_loads(text, 0, NULL);
    json_t *out = NULL;
    if (doc && spec_image_parse(doc, "image", &out, field, err) < 0)
        out = NULL;
    json_decref(doc);
    return out;
}

UNIT_TEST(test_definition_normalised)
{
    char field[SPEC_FIELD_MAX];
    struct gerr err;
    json_t *d = parse_def("{\"base\":\"busybox\",\"steps\":[{\"run\":\"echo hi\"},{\"apt_install\":\"curl\"},"
                          "{\"pip_install\":[\"numpy==1.26\"],\"find_links\":\"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"},"
                          "{\"copy\":{\"src\":\"./src\",\"tree\":\"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"},\"to\":\"/app\"},"
                          "{\"env\":{\"A\":\"1\"}},{\"workdir\":\"/app\"}]}",
                          field, &err);
    CHECK(d != NULL);
    json_t *steps = json_object_get(d, "steps");
    CHECK(json_is_array(json_object_get(json_array_get(steps, 0), "run")));
    CHECK(json_is_array(json_object_get(json_array_get(steps, 1), "apt_install")));
    CHECK_STR(json_string_value(json_object_get(json_array_get(steps, 2), "find_links")), "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    json_t *copy = json_object_get(json_array_get(steps, 3), "copy");
    CHECK_STR(json_string_value(json_object_get(copy, "src")), "./src");
    CHECK(json_is_false(json_object_get(copy, "file")));
    json_decref(d);
}

UNIT_TEST(test_definition_errors_name_the_field)
{
    static const struct {
        const char *doc, *field;
    } cases[] = {
        {"{\"steps\":[]}", "image.base"},
        {"{\"base\":\"busybox\",\"from_oci\":\"/x\"}", "image.from_oci"},
        {"{\"base\":\"bad name\"}", "image.base"},
        {"{\"base\":\"busybox\",\"steps\":[{\"run\":\"a\",\"env\":{}}]}", "image.steps[0]"},
        {"{\"base\":\"busybox\",\"steps\":[{\"nope\":1}]}", "image.steps[0]"},
        {"{\"base\":\"busybox\",\"steps\":[{\"apt_install\":[\"ok\",\"-o=evil\"]}]}", "image.steps[0].apt_install[1]"},
        {"{\"base\":\"busybox\",\"steps\":[{\"pip_install\":[\"--index-url=x\"]}]}", "image.steps[0].pip_install[0]"},
        {"{\"base\":\"busybox\",\"steps\":[{\"copy\":{\"src\":\"a\",\"tree\":\"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}}]}", "image.steps[0].to"},
        {"{\"base\":\"busybox\",\"steps\":[{\"copy\":{\"src\":\"a\",\"tree\":\"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"},\"to\":\"rel\"}]}",
         "image.steps[0].to"},
        /* Host paths are refused, naming the field: gustd never opens them. */
        {"{\"base\":\"busybox\",\"steps\":[{\"copy\":\"/etc/shadow\",\"to\":\"/x\"}]}", "image.steps[0].copy"},
        {"{\"base\":\"busybox\",\"steps\":[{\"copy\":{\"src\":\"/etc/shadow\",\"tree\":\"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"},\"to\":\"/x\"}]}",
         "image.steps[0].copy.src"},
        {"{\"base\":\"busybox\",\"steps\":[{\"copy\":{\"src\":\"a/../../b\",\"tree\":\"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"},\"to\":\"/x\"}]}",
         "image.steps[0].copy.src"},
        {"{\"base\":\"busybox\",\"steps\":[{\"copy\":{\"src\":\"a\"},\"to\":\"/x\"}]}", "image.steps[0].copy.tree"},
        {"{\"base\":\"busybox\",\"steps\":[{\"pip_install\":\"x\",\"find_links\":\"/w\"}]}",
         "image.steps[0].find_links"},
        {"{\"from_oci\":\"/img.tar\"}", "image.from_oci"},
        {"{\"base\":\"busybox\",\"steps\":[{\"env\":{\"1X\":\"v\"}}]}", "image.steps[0].env.1X"},
        {"{\"base\":\"busybox\",\"steps\":[{\"workdir\":\"x\"}]}", "image.steps[0].workdir"},
        {"{\"base\":\"busybox\",\"extra\":1}", "image.extra"},
        {"{\"base\":\"busybox\",\"built_id\":\"sha256:12\"}", "image.built_id"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char field[SPEC_FIELD_MAX] = "";
        struct gerr err;
        json_t *d = parse_def(cases[i].doc, field, &err);
        if (d)
            fprintf(stderr, "  accepted: %s\n", cases[i].doc);
        CHECK(d == NULL);
        CHECK_STR(field, cases[i].field);
        CHECK(strstr(err.msg, cases[i].field) == err.msg);
    }
}

/* ---- the builder on a real loop ---- */

struct result {
    struct ev_loop *loop;
    char image_id[IMAGE_ID_MAX];
    json_t *final;
    int ran, cached, cached_notes;
};

static void on_event(void *ud, json_t *ev)
{
    struct result *r = ud;
    const char *kind = json_string_value(json_object_get(ev, "event"));
    if (!strcmp(kind, "step_run"))
        r->ran++;
    if (!strcmp(kind, "step_done") && json_is_true(json_object_get(ev, "cached")))
        r->cached++;
}

static void on_done(void *ud, const char *image_id, const char *rootfs, json_t *final)
{
    struct result *r = ud;
    snprintf(r->image_id, sizeof r->image_id, "%s", image_id ? image_id : "");
    r->final = json_incref(final);
    ev_stop(r->loop);
}

static int g_notes;
static void on_cached(void *ud, const char *step, const char *parent, const char *image)
{
    g_notes++;
}

static void run_build(struct ev_loop *loop, struct builder *b, json_t *def, bool force, struct result *r)
{
    memset(r, 0, sizeof *r);
    r->loop = loop;
    struct build_sink s = {on_event, on_done, r};
    struct gerr err;
    CHECK_EQ_INT(build_submit(b, def, NULL, "", force, &s, &err), 0);
    ev_run(loop);
}

static void write_file(const char *path, const char *text)
{
    CHECK_EQ_INT(file_write_atomic(path, text, strlen(text), 0640), 0);
}

/* The id of dir stored as a tree: what a client's upload (POST /v1/mounts) gives. */
static void tree_of(struct cas *cas, const char *dir, char out[IMAGE_ID_MAX])
{
    struct cas_digest d;
    struct gerr err;
    char hex[CAS_HEX_LEN + 1];
    CHECK_EQ_INT(cas_ingest_tree(cas, dir, NULL, &d, NULL, &err), 0);
    cas_digest_hex(&d, hex);
    snprintf(out, IMAGE_ID_MAX, "sha256:%s", hex);
}

/* The test's definition over the uploaded trees of src and of the file a.txt alone. */
static json_t *copy_def(struct cas *cas, const char *src, const char *file_dir)
{
    char doc[1024], t_src[IMAGE_ID_MAX], t_file[IMAGE_ID_MAX], field[SPEC_FIELD_MAX];
    struct gerr err;
    tree_of(cas, src, t_src);
    tree_of(cas, file_dir, t_file);
    snprintf(doc, sizeof doc,
             "{\"base\":\"scratch\",\"steps\":[{\"copy\":{\"src\":\"src\",\"tree\":\"%s\"},\"to\":\"/app/code\"},"
             "{\"copy\":{\"src\":\"src/a.txt\",\"tree\":\"%s\",\"file\":true},\"to\":\"/etc/\"},"
             "{\"env\":{\"A\":\"1\",\"PATH\":\"/bin\"}},{\"env\":{\"A\":\"2\"}},{\"workdir\":\"/app/code/sub\"}]}",
             t_src, t_file);
    json_t *def = parse_def(doc, field, &err);
    CHECK(def != NULL);
    return def;
}

UNIT_TEST(test_manifest_steps_and_cache)
{
    struct ev_loop *loop = NULL;
    CHECK_EQ_INT(ev_loop_new(&loop), 0);
    char path[1024], src[256], file_dir[256];
    snprintf(path, sizeof path, "%s/cas", g_dir);
    struct cas *cas = NULL;
    struct gerr err;
    CHECK_EQ_INT(cas_open(path, &cas, &err), 0);
    snprintf(src, sizeof src, "%s/src", g_dir);
    CHECK_EQ_INT(mkdir_p(src, 0755), 0);
    snprintf(path, sizeof path, "%s/src/a.txt", g_dir);
    write_file(path, "one\n");
    snprintf(path, sizeof path, "%s/src/sub", g_dir);
    CHECK_EQ_INT(mkdir_p(path, 0755), 0);
    snprintf(path, sizeof path, "%s/src/sub/b.txt", g_dir);
    write_file(path, "two\n");
    snprintf(file_dir, sizeof file_dir, "%s/one-file", g_dir);
    CHECK_EQ_INT(mkdir_p(file_dir, 0755), 0);
    snprintf(path, sizeof path, "%s/a.txt", file_dir);
    write_file(path, "one\n");
    char images[256], work[256];
    snprintf(images, sizeof images, "%s/images", g_dir);
    snprintf(work, sizeof work, "%s/work", g_dir);
    struct build_config bc = {.loop = loop, .cas = cas, .images_dir = images, .work_dir = work, .on_cached = on_cached};
    struct builder *b = NULL;
    CHECK_EQ_INT(build_new(&bc, &b, &err), 0);

    char doc[1024], field[SPEC_FIELD_MAX];
    json_t *def = copy_def(cas, src, file_dir);
    struct result r;
    run_build(loop, b, def, false, &r);
    CHECK_STR(json_string_value(json_object_get(r.final, "event")), "done");
    CHECK_EQ_INT(r.ran, 5);
    CHECK_EQ_INT(g_notes, 5);

    /* The result, materialised: files where asked, owned by root, config merged. */
    char rootfs[512], want[640];
    snprintf(want, sizeof want, "%s/by-id/%s/rootfs", images, r.image_id + 7);
    snprintf(rootfs, sizeof rootfs, "%s", json_string_value(json_object_get(r.final, "rootfs")));
    CHECK_STR(rootfs, want);
    AUTO_FREE char *text = NULL;
    size_t len;
    snprintf(path, sizeof path, "%s/app/code/sub/b.txt", rootfs);
    CHECK_EQ_INT(file_read_all(path, 100, &text, &len), 0);
    CHECK_STR(text, "two\n");
    struct stat st;
    snprintf(path, sizeof path, "%s/etc/a.txt", rootfs);
    CHECK_EQ_INT(stat(path, &st), 0);
    CHECK_EQ_INT((int)(st.st_mode & 0777), 0640);
    CHECK_EQ_INT((int)st.st_uid, 0);
    json_t *config = NULL;
    CHECK_EQ_INT(image_config(cas, r.image_id, &config, &err), 0);
    CHECK_STR(json_string_value(json_object_get(config, "workdir")), "/app/code/sub");
    json_t *env = json_object_get(config, "env");
    CHECK_EQ_INT((int)json_array_size(env), 2);
    CHECK_STR(json_string_value(json_array_get(env, 0)), "A=2");
    json_decref(config);
    char first[IMAGE_ID_MAX];
    snprintf(first, sizeof first, "%s", r.image_id);
    json_decref(r.final);

    /* Everything cached now, and the lookup agrees without building. */
    run_build(loop, b, def, false, &r);
    CHECK_EQ_INT(r.ran, 0);
    CHECK_EQ_INT(r.cached, 6);
    CHECK_STR(r.image_id, first);
    json_decref(r.final);
    char looked[IMAGE_ID_MAX];
    CHECK_EQ_INT(build_lookup(b, def, NULL, "", looked, &err), 0);
    CHECK_STR(looked, first);

    /* A changed source file (uploaded again: a new tree) changes the copy step and
     * what follows. */
    snprintf(path, sizeof path, "%s/src/sub/b.txt", g_dir);
    write_file(path, "three\n");
    json_decref(def);
    def = copy_def(cas, src, file_dir);
    CHECK_EQ_INT(build_lookup(b, def, NULL, "", looked, &err), -ENOENT);
    run_build(loop, b, def, false, &r);
    CHECK_EQ_INT(r.ran, 5);
    CHECK(strcmp(r.image_id, first) != 0);
    json_decref(r.final);

    /* Forced: every step runs, the result is the same content. */
    snprintf(first, sizeof first, "%s", r.image_id);
    run_build(loop, b, def, true, &r);
    CHECK_EQ_INT(r.ran, 5);
    CHECK_STR(r.image_id, first);
    json_decref(r.final);
    json_decref(def);

    /* A copy through a file is refused; a tree that is not stored is a clear error; a
     * run step without a sandbox fails clearly. */
    char t_file[IMAGE_ID_MAX];
    tree_of(cas, file_dir, t_file);
    snprintf(doc, sizeof doc, "{\"base\":\"scratch\",\"steps\":[{\"copy\":{\"src\":\"a.txt\",\"tree\":\"%s\",\"file\":true},"
                              "\"to\":\"/f\"},{\"copy\":{\"src\":\"a.txt\",\"tree\":\"%s\",\"file\":true},\"to\":\"/f/inside\"}]}",
             t_file, t_file);
    def = parse_def(doc, field, &err);
    run_build(loop, b, def, false, &r);
    CHECK_STR(json_string_value(json_object_get(r.final, "event")), "error");
    CHECK(strstr(json_string_value(json_object_get(r.final, "message")), "not a directory") != NULL);
    CHECK_EQ_INT((int)json_integer_value(json_object_get(r.final, "index")), 2);
    json_decref(r.final);
    json_decref(def);
    def = parse_def("{\"base\":\"scratch\",\"steps\":[{\"copy\":{\"src\":\"x\",\"tree\":\"sha256:"
                    "0000000000000000000000000000000000000000000000000000000000000000\"},\"to\":\"/x\"}]}",
                    field, &err);
    run_build(loop, b, def, false, &r);
    CHECK_STR(json_string_value(json_object_get(r.final, "event")), "error");
    CHECK(strstr(json_string_value(json_object_get(r.final, "message")), "is not stored") != NULL);
    json_decref(r.final);
    json_decref(def);
    def = parse_def("{\"base\":\"busybox\",\"steps\":[{\"run\":\"true\"}]}", field, &err);
    run_build(loop, b, def, false, &r);
    CHECK_STR(json_string_value(json_object_get(r.final, "event")), "error");
    json_decref(r.final);
    json_decref(def);

    build_free(b);
    cas_close(cas);
    ev_loop_free(loop);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/gust-test-build-XXXXXX");
    if (!mkdtemp(g_dir))
        return 1;
    UNIT_RUN(test_definition_normalised);
    UNIT_RUN(test_definition_errors_name_the_field);
    UNIT_RUN(test_manifest_steps_and_cache);
    rm_rf(g_dir);
    UNIT_MAIN_END();
}
