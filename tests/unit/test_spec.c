#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "base/buf.h"
#include "base/error.h"
#include "spec/spec.h"
#include "unit.h"

static const char spec_md_toml[] =
    "app = \"demo\"                       # required, name\n"
    "\n"
    "[[functions]]\n"
    "name = \"echo\"                      # required, name rules as app\n"
    "kind = \"exec\"                      # required; only \"exec\" for now\n"
    "command = [\"/bin/cat\"]             # required\n"
    "mode = \"per_input\"                 # \"per_input\" (default)\n"
    "image = \"busybox\"                  # registered image name (default \"busybox\")\n"
    "workdir = \"/\"                      # absolute path (default \"/\")\n"
    "timeout = 60                       # seconds per input, 1..86400 (default 300)\n"
    "env = { GREETING = \"hi\" }          # string -> string\n"
    "\n"
    "[functions.resources]\n"
    "cpu = 250                          # millicores\n"
    "memory = 128                       # MiB\n"
    "gpu = \"H100:1\"                     # \"TYPE\" or \"TYPE:COUNT\" or a list\n"
    "                                   # the rest are fallbacks, e.g. [\"H100:1\", \"A100-80GB:1\"]\n"
    "disk = 512                         # writable layer size\n"
    "\n"
    "[functions.retries]                # or: retries = 2\n"
    "max_retries = 2                    # 0..10 (default 0)\n"
    "initial_delay = 1.0                # seconds, 0..60 (default 1.0)\n"
    "backoff_coefficient = 2.0          # 1..10 (default 2.0)\n"
    "max_delay = 60.0                   # seconds, 0..600 (default 60)\n"
    "\n"
    "[functions.scaling]\n"
    "min_containers = 0                 # 0..1000 (default 0)\n"
    "max_containers = 10                # 1..1000 (default 10), >= min_containers\n"
    "buffer_containers = 0              # 0..1000 (default 0)\n"
    "scaledown_window = 60              # seconds idle\n"
    "max_inputs = 1                     # concurrent inputs per container\n";

static const char spec_md_json[] =
    "{\"app\": \"demo\", \"functions\": [{\"name\": \"echo\", \"kind\": \"exec\", \"command\": "
    "[\"/bin/cat\"],\n"
    "  \"resources\": {\"cpu\": 250, \"memory\": 128}, \"retries\": 2,\n"
    "  \"scaling\": {\"max_containers\": 10, \"scaledown_window\": 60}}]}";

static const char fn_head[] = "{\"app\":\"a\",\"functions\":[{\"name\":\"f\",\"kind\":\"exec\","
                              "\"command\":[\"/bin/cat\"]";

/* Parses a JSON spec expected to fail; checks the field path and the exact message
 * (or, when msg starts with '~', a substring of it). */
static int expect_err(bool toml, const char *text, const char *field, const char *msg)
{
    struct spec_app app;
    struct gerr e = {0};
    char fld[SPEC_FIELD_MAX] = "unset";
    int r = toml ? spec_app_parse_toml(text, strlen(text), &app, fld, &e)
                 : spec_app_parse_json(text, strlen(text), &app, fld, &e);
    if (r != -EINVAL) {
        fprintf(stderr, "    r=%d for %s\n", r, text);
        return 0;
    }
    if (app.name || app.functions) {
        fprintf(stderr, "    out not zeroed\n");
        return 0;
    }
    if (strcmp(fld, field)) {
        fprintf(stderr, "    field \"%s\", expected \"%s\" (msg %s)\n", fld, field, e.msg);
        return 0;
    }
    bool ok = msg[0] == '~' ? strstr(e.msg, msg + 1) != NULL : strcmp(e.msg, msg) == 0;
    if (!ok)
        fprintf(stderr, "    msg \"%s\"\n    expected \"%s\"\n", e.msg, msg);
    return ok;
}

/* A JSON spec of one function with `extra` appended to its fields. */
static int expect_fn_err(const char *extra, const char *field, const char *msg)
{
    char doc[4096];
    snprintf(doc, sizeof doc, "%s%s}]}", fn_head, extra);
    return expect_err(false, doc, field, msg);
}

static int parse_fn(const char *extra, struct spec_app *app)
{
    char doc[4096];
    snprintf(doc, sizeof doc, "%s%s}]}", fn_head, extra);
    struct gerr e = {0};
    int r = spec_app_parse_json(doc, strlen(doc), app, NULL, &e);
    if (r < 0)
        fprintf(stderr, "    unexpected error: %s\n", e.msg);
    return r;
}

static char *fn_dump(const struct spec_function *f)
{
    json_t *j = spec_function_to_json(f);
    char *s = j ? json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

static int toml_err(const char *text, const char *msg)
{
    json_t *j = NULL;
    struct gerr e = {0};
    int r = toml_parse(text, strlen(text), &j, &e);
    if (r != -EINVAL || j) {
        fprintf(stderr, "    toml r=%d for %s\n", r, text);
        json_decref(j);
        return 0;
    }
    if (!strstr(e.msg, msg)) {
        fprintf(stderr, "    msg \"%s\"\n    expected \"%s\"\n", e.msg, msg);
        return 0;
    }
    return 1;
}

/* Parses TOML and compares it with the expected JSON. */
static int toml_eq(const char *text, const char *json)
{
    json_t *j = NULL;
    struct gerr e = {0};
    if (toml_parse(text, strlen(text), &j, &e) < 0) {
        fprintf(stderr, "    toml error: %s\n", e.msg);
        return 0;
    }
    json_error_t je;
    json_t *want = json_loads(json, 0, &je);
    int ok = want && json_equal(j, want);
    if (!ok) {
        char *got = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
        fprintf(stderr, "    got %s\n    want %s\n", got, json);
        free(got);
    }
    json_decref(want);
    json_decref(j);
    return ok;
}

UNIT_TEST(test_spec_md_example_toml)
{
    struct spec_app app;
    struct gerr e = {0};
    char fld[SPEC_FIELD_MAX];
    int r = spec_app_parse_toml(spec_md_toml, strlen(spec_md_toml), &app, fld, &e);
    if (r < 0)
        fprintf(stderr, "    %s\n", e.msg);
    CHECK_EQ_INT(r, 0);
    CHECK_STR(app.name, "demo");
    CHECK_EQ_INT(app.nfunctions, 1);
    struct spec_function *f = &app.functions[0];
    CHECK_STR(f->name, "echo");
    CHECK_STR(f->kind, "exec");
    CHECK_EQ_INT(f->ncommand, 1);
    CHECK_STR(f->command[0], "/bin/cat");
    CHECK(f->command[1] == NULL);
    CHECK_EQ_INT(f->mode, SPEC_MODE_PER_INPUT);
    CHECK_STR(f->image, "busybox");
    CHECK_STR(f->workdir, "/");
    CHECK_EQ_INT(f->timeout_s, 60);
    CHECK_EQ_INT(f->nenv, 1);
    CHECK_STR(f->env[0], "GREETING=hi");
    CHECK(f->env[1] == NULL);
    CHECK_EQ_INT(f->cpu_millicores, 250);
    CHECK_EQ_INT(f->memory_mib, 128);
    CHECK_EQ_INT(f->disk_mib, 512);
    CHECK_EQ_INT(f->ngpu_options, 1);
    CHECK_STR(f->gpus[0].type, "H100");
    CHECK_EQ_INT(f->gpus[0].count, 1);
    CHECK_EQ_INT(f->max_retries, 2);
    CHECK(f->initial_delay_s == 1.0 && f->backoff_coefficient == 2.0 && f->max_delay_s == 60.0);
    CHECK_EQ_INT(f->min_containers, 0);
    CHECK_EQ_INT(f->max_containers, 10);
    CHECK_EQ_INT(f->buffer_containers, 0);
    CHECK_EQ_INT(f->scaledown_window_s, 60);
    CHECK_EQ_INT(f->max_inputs, 1);
    spec_app_free(&app);
    CHECK(app.name == NULL && app.functions == NULL);
}

UNIT_TEST(test_spec_md_example_json_defaults)
{
    struct spec_app app;
    struct gerr e = {0};
    CHECK_EQ_INT(spec_app_parse_json(spec_md_json, strlen(spec_md_json), &app, NULL, &e), 0);
    struct spec_function *f = &app.functions[0];
    CHECK_EQ_INT(f->timeout_s, 300);
    CHECK_EQ_INT(f->nenv, 0);
    CHECK(f->env && f->env[0] == NULL);
    CHECK_EQ_INT(f->ngpu_options, 0);
    CHECK_EQ_INT(f->disk_mib, 512);
    CHECK_EQ_INT(f->max_retries, 2);
    CHECK(f->initial_delay_s == 1.0);
    CHECK_EQ_INT(f->max_containers, 10);
    CHECK_EQ_INT(f->scaledown_window_s, 60);
    CHECK_EQ_INT(f->max_inputs, 1);
    spec_app_free(&app);

    CHECK_EQ_INT(parse_fn("", &app), 0);
    f = &app.functions[0];
    CHECK_EQ_INT(f->cpu_millicores, 125);
    CHECK_EQ_INT(f->memory_mib, 128);
    CHECK_EQ_INT(f->max_retries, 0);
    CHECK(f->backoff_coefficient == 2.0 && f->max_delay_s == 60.0);
    CHECK_EQ_INT(f->min_containers, 0);
    CHECK_EQ_INT(f->max_containers, 10);
    /* scaledown_window not given: 0 (the keep-alive policy decides), and left out of the
     * normalised JSON so that a stored version reads back the same. */
    CHECK_EQ_INT(f->scaledown_window_s, 0);
    json_t *j = spec_function_to_json(f);
    CHECK(j && json_object_get(j, "scaling") && !json_object_get(json_object_get(j, "scaling"), "scaledown_window"));
    CHECK(json_integer_value(json_object_get(json_object_get(j, "scaling"), "max_containers")) == 10);
    json_decref(j);
    spec_app_free(&app);
}

UNIT_TEST(test_json_and_toml_same_normalised)
{
    const char *toml =
        "app = 'multi'\n"
        "[[functions]]\n"
        "name = \"a\"\nkind = \"exec\"\ncommand = [\"/bin/sh\", \"-c\", \"echo $X\"]\n"
        "mode = \"runner\"\nworkdir = \"/srv\"\n"
        "env.ZED = \"z\"\nenv.ALPHA = \"a\"\n"
        "resources = { cpu = 2000, gpu = [\"h100:2\", \"a100\"] }\n"
        "retries = 3\n"
        "[[functions]]\n"
        "name = \"b\"\nkind = \"exec\"\ncommand = [\"/x\"]\n"
        "[functions.scaling]\nmin_containers = 2\nmax_inputs = 4\n"
        "[functions.retries]\ninitial_delay = 0.5\nmax_delay = 30\n";
    const char *json =
        "{\"app\":\"multi\",\"functions\":[{\"name\":\"a\",\"kind\":\"exec\",\"command\":"
        "[\"/bin/sh\",\"-c\",\"echo $X\"],\"mode\":\"runner\",\"workdir\":\"/srv\",\"env\":"
        "{\"ALPHA\":\"a\",\"ZED\":\"z\"},\"resources\":{\"cpu\":2000,\"gpu\":[\"H100:2\","
        "\"A100-40GB:1\"]},\"retries\":{\"max_retries\":3}},{\"name\":\"b\",\"kind\":\"exec\","
        "\"command\":[\"/x\"],\"scaling\":{\"min_containers\":2,\"max_inputs\":4},"
        "\"retries\":{\"initial_delay\":0.5,\"max_delay\":30.0}}]}";
    struct spec_app ta, ja;
    struct gerr e = {0};
    int r = spec_app_parse_toml(toml, strlen(toml), &ta, NULL, &e);
    if (r < 0)
        fprintf(stderr, "    %s\n", e.msg);
    CHECK_EQ_INT(r, 0);
    r = spec_app_parse_json(json, strlen(json), &ja, NULL, &e);
    if (r < 0)
        fprintf(stderr, "    %s\n", e.msg);
    CHECK_EQ_INT(r, 0);
    CHECK_EQ_INT(ta.nfunctions, 2);
    CHECK_EQ_INT(ja.nfunctions, 2);
    for (size_t i = 0; i < 2; i++) {
        char *a = fn_dump(&ta.functions[i]), *b = fn_dump(&ja.functions[i]);
        int same = a && b && !strcmp(a, b);
        if (!same)
            fprintf(stderr, "    toml %s\n    json %s\n", a, b);
        free(a);
        free(b);
        CHECK(same);
    }
    struct spec_function *f = &ta.functions[0];
    CHECK_STR(f->env[0], "ALPHA=a");
    CHECK_STR(f->env[1], "ZED=z");
    CHECK_EQ_INT(f->mode, SPEC_MODE_RUNNER);
    CHECK_EQ_INT(f->ngpu_options, 2);
    CHECK_STR(f->gpus[0].type, "H100");
    CHECK_EQ_INT(f->gpus[0].count, 2);
    CHECK_STR(f->gpus[1].type, "A100-40GB");
    CHECK_EQ_INT(f->gpus[1].count, 1);
    CHECK_EQ_INT(f->max_retries, 3);
    CHECK_EQ_INT(ta.functions[1].min_containers, 2);
    CHECK(ta.functions[1].initial_delay_s == 0.5);
    CHECK(ta.functions[1].max_delay_s == 30.0);
    spec_app_free(&ta);
    spec_app_free(&ja);
}

UNIT_TEST(test_roundtrip_and_copy)
{
    struct spec_app app;
    CHECK_EQ_INT(parse_fn(",\"env\":{\"B\":\"2\",\"A\":\"x=y\"},\"resources\":{\"gpu\":"
                          "[\"L4\",\"t4:3\",\"rtx-4090:8\"],\"disk\":1,\"pids\":64,\"open_files\":256},"
                          "\"retries\":{\"backoff_coefficient\":1.1},\"network\":\"egress\","
                          "\"security\":{\"deny_syscalls\":[\"socket\",\"chmod\"]}",
                          &app),
                 0);
    struct spec_function *f = &app.functions[0];
    CHECK_STR(f->gpus[2].type, "RTX-4090");
    CHECK_STR(f->env[0], "A=x=y");
    json_t *j = spec_function_to_json(f);
    CHECK(j);
    char *d1 = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK(strstr(d1, "\"gpu\":[\"L4:1\",\"T4:3\",\"RTX-4090:8\"]"));
    CHECK(strstr(d1, "\"env\":{\"A\":\"x=y\",\"B\":\"2\"}"));
    CHECK(strstr(d1, "\"network\":\"egress\""));
    CHECK(strstr(d1, "\"security\":{\"deny_syscalls\":[\"chmod\",\"socket\"]}"));
    CHECK(strstr(d1, "\"open_files\":256") && strstr(d1, "\"pids\":64"));
    struct spec_function g, h;
    struct gerr e = {0};
    char fld[SPEC_FIELD_MAX];
    CHECK_EQ_INT(spec_function_from_json(j, &g, fld, &e), 0);
    json_decref(j);
    char *d2 = fn_dump(&g);
    spec_function_copy(&g, &h);
    char *d3 = fn_dump(&h);
    CHECK_STR(d1, d2);
    CHECK_STR(d2, d3);
    CHECK(g.backoff_coefficient == 1.1 && h.backoff_coefficient == 1.1);
    CHECK(h.command[1] == NULL && h.env[2] == NULL);
    free(d1);
    free(d2);
    free(d3);
    spec_function_free(&g);
    spec_function_free(&h);
    spec_app_free(&app);

    /* No GPU round-trips as an empty list. */
    CHECK_EQ_INT(parse_fn("", &app), 0);
    j = spec_function_to_json(&app.functions[0]);
    CHECK(json_array_size(json_object_get(json_object_get(j, "resources"), "gpu")) == 0);
    CHECK_EQ_INT(spec_function_from_json(j, &g, fld, &e), 0);
    CHECK_EQ_INT(g.ngpu_options, 0);
    json_decref(j);
    spec_function_free(&g);
    spec_app_free(&app);
}

UNIT_TEST(test_function_from_json_relative_paths)
{
    json_t *j = json_loads("{\"name\":\"f\",\"kind\":\"exec\",\"command\":[\"/a\"],"
                           "\"resources\":{\"memory\":\"lots\"}}", 0, NULL);
    struct spec_function f;
    struct gerr e = {0};
    char fld[SPEC_FIELD_MAX];
    CHECK_EQ_INT(spec_function_from_json(j, &f, fld, &e), -EINVAL);
    CHECK_STR(fld, "resources.memory");
    CHECK_STR(e.msg, "resources.memory: must be an integer number of MiB between 16 and "
                     "1048576, or a [request, limit] pair of them, got \"lots\"");
    CHECK(f.name == NULL);
    json_decref(j);
}

UNIT_TEST(test_errors_brief_examples)
{
    CHECK(expect_fn_err(",\"scaling\":{\"max_containers\":\"ten\"}",
                        "functions[0].scaling.max_containers",
                        "functions[0].scaling.max_containers: must be an integer between 1 and "
                        "1000, got \"ten\""));
    CHECK(expect_fn_err(",\"resourcs\":{}", "functions[0].resourcs",
                        "functions[0].resourcs: unknown field; allowed: name, kind, command, mode, "
                        "image, workdir, timeout, env, resources, retries, scaling, network, security, "
                        "secrets, mounts, volumes, snapshot, web, schedule"));
    CHECK(expect_fn_err(",\"resources\":{\"memory\":\"lots\"}", "functions[0].resources.memory",
                        "functions[0].resources.memory: must be an integer number of MiB between "
                        "16 and 1048576, or a [request, limit] pair of them, got \"lots\""));
}

UNIT_TEST(test_errors_document)
{
    CHECK(expect_err(false, "{\"app\": \"a\",\n  \"functions\": [}", "",
                     "~JSON syntax error at line 2, column"));
    CHECK(expect_err(false, "{\"app\":\"a\",\"app\":\"b\"}", "", "~duplicate object key"));
    CHECK(expect_err(false, "[1]", "", "~the spec must be an object"));
    CHECK(expect_err(false, "{\"functions\":[]}", "app", "~app: required field is missing"));
    CHECK(expect_err(false, "{\"app\":\"x\"}", "functions", "~functions: required field"));
    CHECK(expect_err(false, "{\"app\":\"x\",\"functions\":[]}", "functions",
                     "functions: must list at least one function"));
    CHECK(expect_err(false, "{\"app\":\"x\",\"functions\":{}}", "functions",
                     "~must be an array of function objects"));
    CHECK(expect_err(false, "{\"app\":\"x\",\"functions\":[3]}", "functions[0]",
                     "~must be an object describing a function"));
    CHECK(expect_err(false, "{\"app\":\"-bad\",\"functions\":[]}", "app",
                     "~app: must be 1 to 63 characters"));
    CHECK(expect_err(false, "{\"app\":5,\"functions\":[]}", "app", "app: must be a string, got 5"));
    CHECK(expect_err(false, "{\"ap\":\"x\",\"functions\":[]}", "ap",
                     "ap: unknown field; allowed: app, functions"));
    CHECK(expect_err(false, "{\"a b\":1}", "\"a b\"", "~unknown field"));
    CHECK(expect_err(true, "app = \"x\"\nfunctions = 1\n", "functions", "~got 1"));
    CHECK(expect_err(true, "app = \"x\"\n[functions]\nname = \"f\"\n", "functions",
                     "~got an object"));
    CHECK(expect_err(true, "app = \"x\"\n[[functions]]\nname = 1979-05-27\n", "",
                     "TOML syntax error at line 3, column 8: dates and times are not supported; "
                     "write them as strings"));

    /* 65 functions. */
    struct buf b = {0};
    buf_append_str(&b, "{\"app\":\"x\",\"functions\":[");
    for (int i = 0; i < 65; i++)
        buf_printf(&b, "%s{\"name\":\"f%d\",\"kind\":\"exec\",\"command\":[\"/a\"]}", i ? "," : "", i);
    buf_append_str(&b, "]}");
    CHECK(expect_err(false, b.data, "functions", "functions: at most 64 functions per app are "
                                                  "allowed, got 65"));
    buf_free(&b);

    /* Over 1 MiB. */
    size_t big = SPEC_DOC_MAX + 10;
    char *t = malloc(big + 1);
    memset(t, ' ', big);
    t[big] = '\0';
    memcpy(t, "{}", 2);
    CHECK(expect_err(false, t, "", "~spec is too large"));
    CHECK(expect_err(true, t, "", "~spec is too large"));
    free(t);
}

UNIT_TEST(test_errors_function_fields)
{
    CHECK(expect_err(false, "{\"app\":\"a\",\"functions\":[{\"kind\":\"exec\"}]}",
                     "functions[0].name", "~functions[0].name: required field is missing"));
    CHECK(expect_err(false, "{\"app\":\"a\",\"functions\":[{\"name\":\"f\"}]}",
                     "functions[0].kind", "~required field is missing; set kind = \"exec\""));
    CHECK(expect_err(false, "{\"app\":\"a\",\"functions\":[{\"name\":\"f\",\"kind\":\"exec\"}]}",
                     "functions[0].command", "~functions[0].command: required field is missing"));
    CHECK(expect_err(false, "{\"app\":\"a\",\"functions\":[{\"name\":\"f f\",\"kind\":\"exec\"}]}",
                     "functions[0].name", "~must be 1 to 63 characters"));
    CHECK(expect_err(false,
                     "{\"app\":\"a\",\"functions\":[{\"name\":\"f\",\"kind\":\"docker\","
                     "\"command\":[\"/a\"]}]}",
                     "functions[0].kind",
                     "functions[0].kind: must be \"exec\" (the only kind supported), got "
                     "\"docker\""));
    CHECK(expect_err(false,
                     "{\"app\":\"a\",\"functions\":[{\"name\":\"f\",\"kind\":\"exec\",\"command\":"
                     "[\"/a\"]},{\"name\":\"f\",\"kind\":\"exec\",\"command\":[\"/b\"]}]}",
                     "functions[1].name", "~duplicate function name \"f\" (already used by "
                                          "functions[0])"));
    CHECK(expect_err(false,
                     "{\"app\":\"a\",\"functions\":[{\"name\":\"f\",\"kind\":\"exec\",\"command\":"
                     "[]}]}",
                     "functions[0].command", "~must be a non-empty array of strings"));
    CHECK(expect_err(false,
                     "{\"app\":\"a\",\"functions\":[{\"name\":\"f\",\"kind\":\"exec\",\"command\":"
                     "\"/bin/cat\"}]}",
                     "functions[0].command", "~got \"/bin/cat\""));
    CHECK(expect_err(false,
                     "{\"app\":\"a\",\"functions\":[{\"name\":\"f\",\"kind\":\"exec\",\"command\":"
                     "[\"/a\", 5]}]}",
                     "functions[0].command[1]", "functions[0].command[1]: must be a string, got 5"));
    CHECK(expect_err(false,
                     "{\"app\":\"a\",\"functions\":[{\"name\":\"f\",\"kind\":\"exec\",\"command\":"
                     "[\"\"]}]}",
                     "functions[0].command[0]", "~must not be empty"));
    CHECK(expect_fn_err(",\"mode\":\"batch\"", "functions[0].mode",
                        "functions[0].mode: must be \"per_input\" or \"runner\", got \"batch\""));
    CHECK(expect_fn_err(",\"image\":\"a/b\"", "functions[0].image",
                        "~must be a registered image name"));
    CHECK(expect_fn_err(",\"workdir\":\"srv\"", "functions[0].workdir",
                        "~must be an absolute path"));
    CHECK(expect_fn_err(",\"timeout\":0", "functions[0].timeout",
                        "functions[0].timeout: must be an integer number of seconds between 1 and "
                        "86400, got 0"));
    CHECK(expect_fn_err(",\"timeout\":86401", "functions[0].timeout", "~got 86401"));
    CHECK(expect_fn_err(",\"timeout\":1.5", "functions[0].timeout", "~got 1.5"));
    CHECK(expect_fn_err(",\"timeout\":60.0", "functions[0].timeout", "~got 60.0"));
    CHECK(expect_fn_err(",\"timeout\":true", "functions[0].timeout", "~got true"));
    CHECK(expect_fn_err(",\"timeout\":null", "functions[0].timeout", "~got null"));
    CHECK(expect_fn_err(",\"env\":[]", "functions[0].env", "~got an array"));
    CHECK(expect_fn_err(",\"env\":{\"1X\":\"a\"}", "functions[0].env.1X",
                        "~invalid variable name"));
    CHECK(expect_fn_err(",\"env\":{\"A-B\":\"a\"}", "functions[0].env.A-B",
                        "~invalid variable name"));
    CHECK(expect_fn_err(",\"env\":{\"PORT\":8080}", "functions[0].env.PORT",
                        "functions[0].env.PORT: must be a string, got 8080 (quote the value)"));
    CHECK(expect_fn_err(",\"env\":{\"P\":{}}", "functions[0].env.P", "~got an object"));
}

/* resources.cpu and .memory: a plain number or [request, limit], the same in TOML
 * and JSON; a plain cpu sets no limit, a plain memory is both; the normalised form
 * keeps the plain number when it says everything and round-trips. */
UNIT_TEST(test_resources_request_limit)
{
    const char *toml = "app = 'rl'\n"
                       "[[functions]]\nname = 'a'\nkind = 'exec'\ncommand = ['/x']\n"
                       "resources = { cpu = [25, 50], memory = [64, 256] }\n"
                       "[[functions]]\nname = 'b'\nkind = 'exec'\ncommand = ['/x']\n"
                       "resources = { cpu = 25, memory = 64 }\n"
                       "[[functions]]\nname = 'c'\nkind = 'exec'\ncommand = ['/x']\n"
                       "resources = { cpu = [100, 100], memory = [64, 64] }\n";
    struct spec_app app;
    struct gerr e = {0};
    int r = spec_app_parse_toml(toml, strlen(toml), &app, NULL, &e);
    if (r < 0)
        fprintf(stderr, "    %s\n", e.msg);
    CHECK_EQ_INT(r, 0);
    struct spec_function *a = &app.functions[0], *b = &app.functions[1], *c = &app.functions[2];
    CHECK_EQ_INT(a->cpu_millicores, 25);
    CHECK_EQ_INT(a->cpu_limit_millicores, 50);
    CHECK_EQ_INT(a->memory_mib, 64);
    CHECK_EQ_INT(a->memory_limit_mib, 256);
    CHECK_EQ_INT(b->cpu_millicores, 25);
    CHECK_EQ_INT(b->cpu_limit_millicores, 0);
    CHECK_EQ_INT(b->memory_mib, 64);
    CHECK_EQ_INT(b->memory_limit_mib, 64);
    CHECK_EQ_INT(c->cpu_millicores, 100);
    CHECK_EQ_INT(c->cpu_limit_millicores, 100);
    CHECK_EQ_INT(c->memory_limit_mib, 64);
    const char *want[] = {"\"cpu\": [25, 50], \"memory\": [64, 256]", "\"cpu\": 25, \"memory\": 64",
                          "\"cpu\": [100, 100], \"memory\": 64"};
    for (size_t i = 0; i < 3; i++) {
        json_t *j = spec_function_to_json(&app.functions[i]);
        CHECK(j != NULL);
        char *d = json_dumps(json_object_get(j, "resources"), JSON_PRESERVE_ORDER);
        bool has = d && strstr(d, want[i]) != NULL;
        if (!has)
            fprintf(stderr, "    %s lacks %s\n", d, want[i]);
        free(d);
        struct spec_function back;
        char fld[SPEC_FIELD_MAX];
        r = spec_function_from_json(j, &back, fld, &e);
        json_decref(j);
        CHECK(has);
        CHECK_EQ_INT(r, 0);
        CHECK_EQ_INT(back.cpu_millicores, app.functions[i].cpu_millicores);
        CHECK_EQ_INT(back.cpu_limit_millicores, app.functions[i].cpu_limit_millicores);
        CHECK_EQ_INT(back.memory_mib, app.functions[i].memory_mib);
        CHECK_EQ_INT(back.memory_limit_mib, app.functions[i].memory_limit_mib);
        spec_function_free(&back);
    }
    spec_app_free(&app);

    CHECK_EQ_INT(parse_fn("", &app), 0);
    CHECK_EQ_INT(app.functions[0].cpu_limit_millicores, 0);
    CHECK_EQ_INT(app.functions[0].memory_limit_mib, 128);
    spec_app_free(&app);

    CHECK(expect_fn_err(",\"resources\":{\"cpu\":[100,50]}", "functions[0].resources.cpu",
                        "functions[0].resources.cpu: the limit (50) is below the request (100); the "
                        "request is what is reserved and must not exceed the limit"));
    CHECK(expect_fn_err(",\"resources\":{\"memory\":[256,128]}", "functions[0].resources.memory",
                        "~the limit (128) is below the request (256)"));
    CHECK(expect_fn_err(",\"resources\":{\"cpu\":[100]}", "functions[0].resources.cpu",
                        "functions[0].resources.cpu: must be a [request, limit] pair, got 1 items"));
    CHECK(expect_fn_err(",\"resources\":{\"cpu\":[1,2,3]}", "functions[0].resources.cpu", "~got 3 items"));
    CHECK(expect_fn_err(",\"resources\":{\"cpu\":[100,64001]}", "functions[0].resources.cpu[1]",
                        "functions[0].resources.cpu[1]: must be an integer number of millicores (1000 = "
                        "one core) between 10 and 64000, got 64001"));
    CHECK(expect_fn_err(",\"resources\":{\"memory\":[\"a\",64]}", "functions[0].resources.memory[0]",
                        "~got \"a\""));
    CHECK(expect_fn_err(",\"resources\":{\"cpu\":0.5}", "functions[0].resources.cpu",
                        "~or a [request, limit] pair of them, got 0.5"));
    CHECK(expect_err(true, "app = 'x'\n[[functions]]\nname = 'f'\nkind = 'exec'\ncommand = ['/x']\n"
                           "resources = { cpu = [200, 100] }\n",
                     "functions[0].resources.cpu", "~the limit (100) is below the request (200)"));
}

UNIT_TEST(test_errors_resources_retries_scaling)
{
    CHECK(expect_fn_err(",\"resources\":{\"cpu\":5}", "functions[0].resources.cpu",
                        "~between 10 and 64000, or a [request, limit] pair of them, got 5"));
    CHECK(expect_fn_err(",\"resources\":{\"cpu\":64001}", "functions[0].resources.cpu",
                        "~got 64001"));
    CHECK(expect_fn_err(",\"resources\":{\"memory\":8}", "functions[0].resources.memory",
                        "~got 8"));
    CHECK(expect_fn_err(",\"resources\":{\"disk\":0}", "functions[0].resources.disk", "~got 0"));
    CHECK(expect_fn_err(",\"resources\":{\"gpus\":1}", "functions[0].resources.gpus",
                        "functions[0].resources.gpus: unknown field; allowed: cpu, memory, gpu, "
                        "disk, pids, open_files"));
    CHECK(expect_fn_err(",\"resources\":{\"pids\":2}", "functions[0].resources.pids", "~got 2"));
    CHECK(expect_fn_err(",\"resources\":{\"open_files\":3}", "functions[0].resources.open_files",
                        "~at least 16, got 3"));
    CHECK(expect_fn_err(",\"network\":\"host\"", "functions[0].network", "~\"egress\""));
    CHECK(expect_fn_err(",\"security\":{\"deny_syscalls\":[\"socket\",\"nosuchcall\"]}",
                        "functions[0].security.deny_syscalls[1]", "~not a system call known"));
    CHECK(expect_fn_err(",\"security\":{\"deny_syscalls\":[\"socket\",\"socket\"]}",
                        "functions[0].security.deny_syscalls[1]", "~listed twice"));
    CHECK(expect_fn_err(",\"security\":{\"allow_syscalls\":[\"mount\"]}",
                        "functions[0].security.allow_syscalls", "~unknown field; allowed: deny_syscalls"));
    CHECK(expect_fn_err(",\"resources\":5", "functions[0].resources", "~must be an object"));
    CHECK(expect_fn_err(",\"resources\":{\"gpu\":\"H100:9\"}", "functions[0].resources.gpu",
                        "~between 1 and 8, got \"H100:9\""));
    CHECK(expect_fn_err(",\"resources\":{\"gpu\":\"H100:0\"}", "functions[0].resources.gpu",
                        "~between 1 and 8"));
    CHECK(expect_fn_err(",\"resources\":{\"gpu\":\"H100:\"}", "functions[0].resources.gpu",
                        "~GPU count"));
    CHECK(expect_fn_err(",\"resources\":{\"gpu\":\"H100:1x\"}", "functions[0].resources.gpu",
                        "~GPU count"));
    CHECK(expect_fn_err(",\"resources\":{\"gpu\":\":1\"}", "functions[0].resources.gpu",
                        "~TYPE:COUNT"));
    CHECK(expect_fn_err(",\"resources\":{\"gpu\":\"H 100\"}", "functions[0].resources.gpu",
                        "~only letters, digits and '-'"));
    CHECK(expect_fn_err(",\"resources\":{\"gpu\":[\"H100\",2]}", "functions[0].resources.gpu[1]",
                        "~got 2"));
    CHECK(expect_fn_err(",\"resources\":{\"gpu\":[\"H100\",\"h100:1\"]}",
                        "functions[0].resources.gpu[1]", "~duplicate GPU option \"H100:1\""));
    CHECK(expect_fn_err(",\"resources\":{\"gpu\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\","
                        "\"i\"]}",
                        "functions[0].resources.gpu", "~at most 8 GPU options"));
    CHECK(expect_fn_err(",\"resources\":{\"gpu\":true}", "functions[0].resources.gpu",
                        "~or a list of them"));
    CHECK(expect_fn_err(",\"retries\":11", "functions[0].retries", "~got 11"));
    CHECK(expect_fn_err(",\"retries\":-1", "functions[0].retries", "~got -1"));
    CHECK(expect_fn_err(",\"retries\":\"2\"", "functions[0].retries", "~got \"2\""));
    CHECK(expect_fn_err(",\"retries\":{\"max\":1}", "functions[0].retries.max",
                        "functions[0].retries.max: unknown field; allowed: max_retries, "
                        "initial_delay, backoff_coefficient, max_delay"));
    CHECK(expect_fn_err(",\"retries\":{\"initial_delay\":61}", "functions[0].retries.initial_delay",
                        "functions[0].retries.initial_delay: must be a number of seconds between 0 "
                        "and 60, got 61"));
    CHECK(expect_fn_err(",\"retries\":{\"backoff_coefficient\":0.5}",
                        "functions[0].retries.backoff_coefficient", "~got 0.5"));
    CHECK(expect_fn_err(",\"retries\":{\"max_delay\":\"1m\"}", "functions[0].retries.max_delay",
                        "~got \"1m\""));
    CHECK(expect_fn_err(",\"scaling\":{\"min_containers\":5,\"max_containers\":2}",
                        "functions[0].scaling.max_containers", "~must be >= min_containers (5)"));
    CHECK(expect_fn_err(",\"scaling\":{\"min_containers\":20}",
                        "functions[0].scaling.min_containers", "~must be <= max_containers (10"));
    CHECK(expect_fn_err(",\"scaling\":{\"max_containers\":0}",
                        "functions[0].scaling.max_containers", "~got 0"));
    CHECK(expect_fn_err(",\"scaling\":{\"scaledown_window\":0}",
                        "functions[0].scaling.scaledown_window", "~got 0"));
    CHECK(expect_fn_err(",\"scaling\":{\"max_inputs\":1001}", "functions[0].scaling.max_inputs",
                        "~got 1001"));
    CHECK(expect_fn_err(",\"scaling\":{\"max_inputs\":4,\"target_inputs\":5}",
                        "functions[0].scaling.target_inputs", "~must be <= max_inputs (4), got 5"));
    CHECK(expect_fn_err(",\"scaling\":{\"target_inputs\":2}", "functions[0].scaling.target_inputs",
                        "~must be <= max_inputs (1, the default), got 2"));
    CHECK(expect_fn_err(",\"scaling\":{\"target_inputs\":0}", "functions[0].scaling.target_inputs",
                        "~got 0"));
    CHECK(expect_fn_err(",\"scaling\":{\"buffer_containers\":-1}",
                        "functions[0].scaling.buffer_containers", "~got -1"));
    CHECK(expect_fn_err(",\"scaling\":{\"idle\":1}", "functions[0].scaling.idle",
                        "~allowed: min_containers, max_containers, buffer_containers, "
                        "scaledown_window, max_inputs, target_inputs"));
    CHECK(expect_fn_err(",\"scaling\":[]", "functions[0].scaling", "~got an array"));

    struct spec_app app;
    CHECK_EQ_INT(parse_fn(",\"scaling\":{\"min_containers\":5}", &app), 0);
    CHECK_EQ_INT(app.functions[0].target_inputs, 0);
    spec_app_free(&app);
    CHECK_EQ_INT(parse_fn(",\"scaling\":{\"max_inputs\":10,\"target_inputs\":5}", &app), 0);
    CHECK_EQ_INT(app.functions[0].target_inputs, 5);
    {
        json_t *j = spec_function_to_json(&app.functions[0]);
        CHECK(j && json_integer_value(json_object_get(json_object_get(j, "scaling"), "target_inputs")) == 5);
        json_decref(j);
    }
    spec_app_free(&app);
    CHECK_EQ_INT(parse_fn(",\"retries\":{\"max_retries\":10,\"initial_delay\":0,\"max_delay\":600}",
                          &app), 0);
    CHECK_EQ_INT(app.functions[0].max_retries, 10);
    spec_app_free(&app);
}

UNIT_TEST(test_errors_limits)
{
    struct buf b = {0};
    buf_append_str(&b, ",\"command\":[\"/a\"");
    for (int i = 0; i < 256; i++)
        buf_append_str(&b, ",\"x\"");
    buf_append_str(&b, "]");
    char doc[8192];
    snprintf(doc, sizeof doc, "{\"app\":\"a\",\"functions\":[{\"name\":\"f\",\"kind\":\"exec\"%s}]}",
             b.data);
    CHECK(expect_err(false, doc, "functions[0].command", "~at most 256 arguments"));
    buf_free(&b);

    char *arg = malloc(40000);
    memset(arg, 'a', 39999);
    arg[39999] = '\0';
    buf_printf(&b, "{\"app\":\"a\",\"functions\":[{\"name\":\"f\",\"kind\":\"exec\",\"command\":"
                   "[\"%s\",\"%s\"]}]}", arg, arg);
    CHECK(expect_err(false, b.data, "functions[0].command[1]", "~too long in total"));
    buf_free(&b);
    buf_printf(&b, "{\"app\":\"a\",\"functions\":[{\"name\":\"f\",\"kind\":\"exec\",\"command\":"
                   "[\"/a\"],\"env\":{\"A\":\"%s\",\"B\":\"%s\"}}]}", arg, arg);
    CHECK(expect_err(false, b.data, "functions[0].env.B", "~too long in total"));
    buf_free(&b);
    free(arg);

    buf_append_str(&b, "{\"app\":\"a\",\"functions\":[{\"name\":\"f\",\"kind\":\"exec\",\"command\":"
                       "[\"/a\"],\"env\":{");
    for (int i = 0; i < 257; i++)
        buf_printf(&b, "%s\"V%d\":\"x\"", i ? "," : "", i);
    buf_append_str(&b, "}}]}");
    CHECK(expect_err(false, b.data, "functions[0].env", "~at most 256 variables"));
    buf_free(&b);

    /* Long unknown keys are quoted/truncated and the path stays bounded. */
    buf_append_str(&b, "{\"");
    for (int i = 0; i < 1000; i++)
        buf_append_str(&b, "k\\n");
    buf_append_str(&b, "\":1}");
    struct spec_app app;
    struct gerr e = {0};
    char fld[SPEC_FIELD_MAX];
    CHECK_EQ_INT(spec_app_parse_json(b.data, b.len, &app, fld, &e), -EINVAL);
    CHECK(strlen(fld) < 80);
    CHECK(strstr(e.msg, "...\": unknown field"));
    buf_free(&b);
}

UNIT_TEST(test_toml_strings)
{
    CHECK(toml_eq("a = \"tab\\there \\\"q\\\" \\\\ \\u00e9 \\U0001F600 \\b\\f\\r\\n\"",
                  "{\"a\":\"tab\\there \\\"q\\\" \\\\ \\u00e9 \\ud83d\\ude00 \\b\\f\\r\\n\"}"));
    CHECK(toml_eq("a = 'C:\\path\\no\\escape'", "{\"a\":\"C:\\\\path\\\\no\\\\escape\"}"));
    CHECK(toml_eq("a = \"\"\"\nline1\nline2\"\"\"", "{\"a\":\"line1\\nline2\"}"));
    CHECK(toml_eq("a = \"\"\"\r\nx\r\ny\"\"\"", "{\"a\":\"x\\ny\"}"));
    CHECK(toml_eq("a = \"\"\"one \\\n    two \\\n\n  three\"\"\"", "{\"a\":\"one two three\"}"));
    CHECK(toml_eq("a = \"\"\"q\"\"\"\"\"", "{\"a\":\"q\\\"\\\"\"}"));
    CHECK(toml_eq("a = \"\"\"has \"\" inside\"\"\"", "{\"a\":\"has \\\"\\\" inside\"}"));
    CHECK(toml_eq("a = '''\nraw \\n 'x' ''\n'''", "{\"a\":\"raw \\\\n 'x' ''\\n\"}"));
    CHECK(toml_eq("a = ''''quoted''''", "{\"a\":\"'quoted'\"}"));
    CHECK(toml_err("a = \"\"\na = 1", "duplicate key 'a'"));
    CHECK(toml_eq("e = \"\"\nl = ''", "{\"e\":\"\",\"l\":\"\"}"));
    CHECK(toml_eq("a = \"é ✓\"", "{\"a\":\"é ✓\"}"));
    CHECK(toml_err("a = \"open", "unterminated string"));
    CHECK(toml_err("a = \"x\ny\"", "newline in a single-line string"));
    CHECK(toml_err("a = \"\\x41\"", "invalid escape sequence"));
    CHECK(toml_err("a = \"\\u12\"", "\\u needs exactly 4 hex digits"));
    CHECK(toml_err("a = \"\\uD800\"", "not a Unicode scalar value"));
    CHECK(toml_err("a = \"\\U00110000\"", "not a Unicode scalar value"));
    CHECK(toml_err("a = \"\\u0000\"", "NUL characters are not allowed"));
    CHECK(toml_err("a = \"ctl\x01\"", "control character (byte 0x01)"));
    CHECK(toml_err("a = \"\"\"x\"\"\"\"\"\"", "too many quotes"));
    CHECK(toml_err("a = '''x", "unterminated string (missing closing ''')"));
    CHECK(toml_err("a = \"\xff\"", "invalid UTF-8"));
    CHECK(toml_err("a = \"\xed\xa0\x80\"", "invalid UTF-8"));
    CHECK(toml_err("\"\"\"k\"\"\" = 1", "multi-line strings cannot be used as keys"));
}

UNIT_TEST(test_toml_numbers)
{
    CHECK(toml_eq("a = 0\nb = +17\nc = -5\nd = 1_000_000\ne = 0xDEAD_beef\nf = 0o755\ng = 0b1010\n"
                  "h = 9223372036854775807\ni = -9223372036854775808\nj = -0",
                  "{\"a\":0,\"b\":17,\"c\":-5,\"d\":1000000,\"e\":3735928559,\"f\":493,\"g\":10,"
                  "\"h\":9223372036854775807,\"i\":-9223372036854775808,\"j\":0}"));
    CHECK(toml_eq("a = 1.5\nb = -0.25\nc = 5e2\nd = 6.626e-34\ne = 1_000.000_1\nf = 1E+3\ng = 0.0",
                  "{\"a\":1.5,\"b\":-0.25,\"c\":500.0,\"d\":6.626e-34,\"e\":1000.0001,"
                  "\"f\":1000.0,\"g\":0.0}"));
    CHECK(toml_eq("t = true\nf = false", "{\"t\":true,\"f\":false}"));
    CHECK(toml_err("a = 01", "leading zeros"));
    CHECK(toml_err("a = 1__0", "underscores must sit between digits"));
    CHECK(toml_err("a = _1", "invalid value"));
    CHECK(toml_err("a = 1_", "underscores"));
    CHECK(toml_err("a = 9223372036854775808", "does not fit in 64 bits"));
    CHECK(toml_err("a = -9223372036854775809", "does not fit in 64 bits"));
    CHECK(toml_err("a = 0xFFFFFFFFFFFFFFFF", "does not fit in 64 bits"));
    CHECK(toml_err("a = -0x10", "cannot have a sign"));
    CHECK(toml_err("a = 0x", "invalid number"));
    CHECK(toml_err("a = 0o8", "invalid number"));
    CHECK(toml_err("a = 1.", "a digit must follow the '.'"));
    CHECK(toml_err("a = .5", "invalid number '.5'"));
    CHECK(toml_err("a = 1e", "bad exponent"));
    CHECK(toml_err("a = 1.5.2", "invalid number"));
    CHECK(toml_err("a = 1e999", "out of range"));
    CHECK(toml_err("a = inf", "inf and nan are not supported"));
    CHECK(toml_err("a = -nan", "inf and nan are not supported"));
    CHECK(toml_err("a = 1979-05-27T07:32:00Z", "dates and times are not supported"));
    CHECK(toml_err("a = 07:32:00", "dates and times are not supported"));
    CHECK(toml_err("a = yes", "invalid value 'yes' (strings must be quoted)"));
    CHECK(toml_err("a = truex", "invalid value"));
    CHECK(toml_err("a = 1 2", "expected end of line after the value"));
    CHECK(toml_err("a = [97,-", "invalid number '-'"));
    CHECK(toml_err("a = +", "invalid number '+'"));
    CHECK(toml_err("a =", "expected a value"));
}

UNIT_TEST(test_toml_arrays_and_inline_tables)
{
    CHECK(toml_eq("a = [\n  1, # one\n  \"two\",\n  [3, [4]],\n  {x = 5},\n]\nb = []\nc = [ ]",
                  "{\"a\":[1,\"two\",[3,[4]],{\"x\":5}],\"b\":[],\"c\":[]}"));
    CHECK(toml_eq("t = { a = 1, b.c = \"x\", b.d = [1], e = {} }",
                  "{\"t\":{\"a\":1,\"b\":{\"c\":\"x\",\"d\":[1]},\"e\":{}}}"));
    CHECK(toml_eq("t = {}", "{\"t\":{}}"));
    CHECK(toml_err("a = [1, 2", "unterminated array"));
    CHECK(toml_err("a = [1 2]", "expected ',' or ']' in array"));
    CHECK(toml_err("a = [,]", "expected a value"));
    CHECK(toml_err("t = { a = 1, }", "trailing comma is not allowed"));
    CHECK(toml_err("t = { a = 1,\n b = 2 }", "inline tables must be on one line"));
    CHECK(toml_err("t = { a = 1\n}", "inline tables must be on one line"));
    CHECK(toml_err("t = { a = 1, a = 2 }", "duplicate key 'a'"));
    CHECK(toml_err("t = { a = {x=1}, a.y = 2 }", "cannot add keys to 'a'"));
    CHECK(toml_err("t = {a = 1}\nt.b = 2", "cannot add keys to 't'"));
    CHECK(toml_err("t = {a = 1}\n[t]", "table [t] is defined more than once (already an inline"));
    CHECK(toml_err("t = {a = {}}\n[t.a.b]", "cannot extend 't': it is an inline table"));
    CHECK(toml_err("t = { a = 1 b = 2 }", "expected ',' or '}'"));

    /* Depth is bounded. */
    struct buf b = {0};
    buf_append_str(&b, "a = ");
    for (int i = 0; i < 1000; i++)
        buf_append_str(&b, "[");
    CHECK(toml_err(b.data, "nesting is too deep"));
    buf_free(&b);
    buf_append_str(&b, "a = ");
    for (int i = 0; i < 1000; i++)
        buf_append_str(&b, "{a=");
    CHECK(toml_err(b.data, "nesting is too deep"));
    buf_free(&b);
    buf_append_str(&b, "a");
    for (int i = 0; i < 40; i++)
        buf_append_str(&b, ".a");
    buf_append_str(&b, " = 1");
    CHECK(toml_err(b.data, "too many dotted parts"));
    buf_free(&b);
}

UNIT_TEST(test_toml_keys_and_tables)
{
    CHECK(toml_eq("# top\n  a.b . c = 1 # x\n\"q k\".'l' = 2\n3 = \"num key\"\n-_ = 4\n\"\" = 5",
                  "{\"a\":{\"b\":{\"c\":1}},\"q k\":{\"l\":2},\"3\":\"num key\",\"-_\":4,\"\":5}"));
    CHECK(toml_eq("[a.b]\nx = 1\n[a]\ny = 2\n[ a . c ]\nz = 3",
                  "{\"a\":{\"b\":{\"x\":1},\"y\":2,\"c\":{\"z\":3}}}"));
    CHECK(toml_eq("[[f]]\nn = 1\n[f.r]\nm = 1\n[[f]]\nn = 2\n[f.r]\nm = 2\n[[f.s]]\nk = 1\n"
                  "[[f.s]]\nk = 2",
                  "{\"f\":[{\"n\":1,\"r\":{\"m\":1}},{\"n\":2,\"r\":{\"m\":2},"
                  "\"s\":[{\"k\":1},{\"k\":2}]}]}"));
    CHECK(toml_eq("[fruit]\napple.color = \"red\"\napple.taste.sweet = true\n"
                  "[fruit.apple.texture]\nsmooth = true",
                  "{\"fruit\":{\"apple\":{\"color\":\"red\",\"taste\":{\"sweet\":true},"
                  "\"texture\":{\"smooth\":true}}}}"));
    CHECK(toml_eq("a = 1\r\n[t]\r\nb = 2 # c\r\n", "{\"a\":1,\"t\":{\"b\":2}}"));
    CHECK(toml_eq("", "{}"));
    CHECK(toml_eq("\n\n# only comments\n", "{}"));
    CHECK(toml_err("a = 1\na = 2", "line 2, column 1: duplicate key 'a'"));
    CHECK(toml_err("a = 1\nb = \n", "line 2, column 5: expected a value"));
    CHECK(toml_err("[a]\n[a]", "table [a] is defined more than once"));
    CHECK(toml_err("[a]\nb = 1\n[a.b]", "cannot define table [a.b]: the key is already a value"));
    CHECK(toml_err("[[a]]\n[a]", "cannot define table [a]"));
    CHECK(toml_err("a = []\n[[a]]", "cannot append to [[a]]: the key is already a static array"));
    CHECK(toml_err("[a]\n[[a]]", "cannot append to [[a]]: the key is already a table"));
    CHECK(toml_err("a = [1]\n[a.b]", "cannot define a table under 'a': it is already a static"));
    CHECK(toml_err("a.b = 1\n[a]", "already defined by dotted keys"));
    CHECK(toml_err("[fruit]\napple.color = 1\n[fruit.apple]", "already defined by dotted keys"));
    CHECK(toml_err("[a.b.c]\nz = 9\n[a]\nb.c.t = 1", "cannot add keys to 'b'"));
    CHECK(toml_err("a.b = 1\na.b.c = 2", "cannot add keys to 'a.b': it is already defined as a "
                                          "value"));
    CHECK(toml_err("[a", "expected ']' to close the table header"));
    CHECK(toml_err("[[a]", "expected ']]' to close the table header"));
    CHECK(toml_err("[a] b = 1", "expected end of line after the table header"));
    CHECK(toml_err("[]", "expected a key"));
    CHECK(toml_err("a b = 1", "expected '=' after key"));
    CHECK(toml_err("= 1", "expected a key"));
    CHECK(toml_err("a = 1 # bad \x01 comment", "control character (byte 0x01) in comment"));
    CHECK(toml_err("a = 1\rb = 2", "expected end of line"));
    CHECK(toml_err("\"a\\nb\\\"\" = 1\n\"a\\u000Ab\\\"\" = 2", "duplicate key '\"a\\x0ab\\\"\"'"));
}

#define TREE_A "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define TREE_B "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

/* secrets and mounts: parsed, sorted (mounts by path), round-tripped and copied; bad
 * input names the field. */
static void test_snapshot_field(void)
{
    struct spec_app app;
    CHECK(parse_fn("", &app) == 0 && !app.functions[0].snapshot);
    char *d = fn_dump(&app.functions[0]);
    CHECK(d && strstr(d, "\"snapshot\":false"));
    free(d);
    spec_app_free(&app);
    CHECK(parse_fn(",\"mode\":\"runner\",\"snapshot\":true", &app) == 0 && app.functions[0].snapshot);
    spec_app_free(&app);
    CHECK(expect_fn_err(",\"mode\":\"runner\",\"snapshot\":\"yes\"", "functions[0].snapshot",
                        "~must be true or false"));
    /* A per_input command starts afresh for every input: nothing to snapshot. */
    CHECK(expect_fn_err(",\"snapshot\":true", "functions[0].snapshot", "~needs mode \"runner\""));
}

static void test_secrets_and_mounts(void)
{
    struct spec_app app;
    CHECK(parse_fn(",\"secrets\":[\"db\",\"inline.app.0\"],\"mounts\":[{\"path\":\"/opt/z\",\"image\":\"" TREE_A
                   "\"},{\"path\":\"/opt/a\",\"image\":\"" TREE_B "\"}]", &app) == 0);
    struct spec_function *f = &app.functions[0];
    CHECK(f->nsecrets == 2 && !strcmp(f->secrets[0], "db") && !strcmp(f->secrets[1], "inline.app.0"));
    CHECK(f->nmounts == 2 && !strcmp(f->mount_paths[0], "/opt/a") && !strcmp(f->mount_images[0], TREE_B) &&
          !strcmp(f->mount_paths[1], "/opt/z"));
    json_t *j = spec_function_to_json(f);
    struct spec_function back = {0};
    char fld[SPEC_FIELD_MAX];
    struct gerr e;
    CHECK(j && spec_function_from_json(j, &back, fld, &e) == 0);
    CHECK(back.nsecrets == 2 && back.nmounts == 2 && !strcmp(back.mount_images[1], TREE_A));
    struct spec_function copy;
    spec_function_copy(f, &copy);
    CHECK(copy.nmounts == 2 && !strcmp(copy.secrets[1], "inline.app.0") && copy.mount_paths != f->mount_paths);
    spec_function_free(&copy);
    spec_function_free(&back);
    json_decref(j);
    spec_app_free(&app);
    /* Defaults: none, and the normalised form lists both as empty. */
    CHECK(parse_fn("", &app) == 0 && app.functions[0].nsecrets == 0 && app.functions[0].nmounts == 0);
    char *d = fn_dump(&app.functions[0]);
    CHECK(d && strstr(d, "\"secrets\":[]") && strstr(d, "\"mounts\":[]"));
    free(d);
    spec_app_free(&app);

    CHECK(expect_fn_err(",\"secrets\":\"db\"", "functions[0].secrets", "~must be a list of secret names"));
    CHECK(expect_fn_err(",\"secrets\":[\"-x\"]", "functions[0].secrets[0]", "~must be a secret name"));
    CHECK(expect_fn_err(",\"secrets\":[\"a\",\"a\"]", "functions[0].secrets[1]", "~listed twice"));
    CHECK(expect_fn_err(",\"mounts\":[{\"path\":\"/opt/a\"}]", "functions[0].mounts[0].image",
                        "~required field is missing"));
    CHECK(expect_fn_err(",\"mounts\":[{\"path\":\"/\",\"image\":\"" TREE_A "\"}]", "functions[0].mounts[0].path",
                        "~must be an absolute, normalised directory"));
    CHECK(expect_fn_err(",\"mounts\":[{\"path\":\"/opt/../etc\",\"image\":\"" TREE_A "\"}]",
                        "functions[0].mounts[0].path", "~normalised"));
    CHECK(expect_fn_err(",\"mounts\":[{\"path\":\"/dev/shm\",\"image\":\"" TREE_A "\"}]",
                        "functions[0].mounts[0].path", "~/dev"));
    CHECK(expect_fn_err(",\"mounts\":[{\"path\":\"/opt/a\",\"image\":\"" TREE_A
                        "\"},{\"path\":\"/opt/a/b\",\"image\":\"" TREE_A "\"}]",
                        "functions[0].mounts[1].path", "~mounts and volumes may not nest"));
    /* Volumes: names as secrets', paths like mounts' and overlapping none of them,
     * not with a snapshot. */
    CHECK(expect_fn_err(",\"mounts\":[{\"path\":\"/opt/a\",\"image\":\"" TREE_A
                        "\"}],\"volumes\":[{\"path\":\"/opt/a/w\",\"name\":\"v\"}]",
                        "functions[0].volumes[0].path", "~may not nest"));
    CHECK(expect_fn_err(",\"volumes\":[{\"path\":\"/w\",\"name\":\"no/slash\"}]",
                        "functions[0].volumes[0].name", "~a volume name"));
    CHECK(expect_fn_err(",\"volumes\":[{\"path\":\"/w\"}]", "functions[0].volumes[0].name", "~missing"));
    CHECK(expect_fn_err(",\"mounts\":[{\"path\":\"/opt/a\",\"image\":\"sha256:XY\"}]",
                        "functions[0].mounts[0].image", "~must be a tree id"));
    CHECK(expect_fn_err(",\"mounts\":[{\"path\":\"/opt/a\",\"image\":\"" TREE_A "\",\"rw\":true}]",
                        "functions[0].mounts[0].rw", "~unknown field"));
    /* "/opt/ab" does not nest in "/opt/a". */
    CHECK(parse_fn(",\"mounts\":[{\"path\":\"/opt/a\",\"image\":\"" TREE_A "\"},{\"path\":\"/opt/ab\",\"image\":\""
                   TREE_A "\"}]", &app) == 0);
    spec_app_free(&app);
}

/* Secret bodies: sorted KEY=VALUE, fields named, bounds. */
static void test_secret_env(void)
{
    char field[SPEC_FIELD_MAX];
    struct gerr e;
    char **env;
    size_t n;
    json_t *j = json_loads("{\"B\":\"x=y\",\"A\":\"1\"}", 0, NULL);
    CHECK(spec_secret_env_parse(j, &env, &n, field, &e) == 0 && n == 2 && !strcmp(env[0], "A=1") &&
          !strcmp(env[1], "B=x=y") && env[2] == NULL);
    spec_secret_env_free(env);
    json_decref(j);
    j = json_loads("{\"1A\":\"v\"}", 0, NULL);
    CHECK(spec_secret_env_parse(j, &env, &n, field, &e) == -EINVAL && !strcmp(field, "env.1A") && !env);
    json_decref(j);
    j = json_loads("{\"A\":\"top-secret\",\"B\":2}", 0, NULL);
    CHECK(spec_secret_env_parse(j, &env, &n, field, &e) == -EINVAL && !strcmp(field, "env.B") &&
          !strstr(e.msg, "top-secret"));
    json_decref(j);
    j = json_object();
    CHECK(spec_secret_env_parse(j, &env, &n, field, &e) == -EINVAL && !strcmp(field, "env"));
    for (int i = 0; i < SPEC_SECRET_MAX_KEYS + 1; i++) {
        char k[16];
        snprintf(k, sizeof k, "K%d", i);
        json_object_set_new(j, k, json_string("v"));
    }
    CHECK(spec_secret_env_parse(j, &env, &n, field, &e) == -E2BIG && !strcmp(field, "env"));
    json_decref(j);
    CHECK(spec_secret_env_parse(NULL, &env, &n, field, &e) == -EINVAL);
    CHECK(spec_secret_name_valid("inline.app-1_x") && !spec_secret_name_valid(".x") && !spec_secret_name_valid("") &&
          !spec_secret_name_valid("a/b"));
}

static int parse_fn_json(const char *fields, struct spec_app *app, char field[SPEC_FIELD_MAX], struct gerr *e)
{
    char doc[2048];
    snprintf(doc, sizeof doc,
             "{\"app\":\"a\",\"functions\":[{\"name\":\"f\",\"kind\":\"exec\",\"command\":[\"/bin/true\"]%s}]}",
             fields);
    return spec_app_parse_json(doc, strlen(doc), app, field, e);
}

UNIT_TEST(test_schedule_field)
{
    struct spec_app app;
    char field[SPEC_FIELD_MAX];
    struct gerr e;
    CHECK_EQ_INT(parse_fn_json(",\"schedule\":{\"cron\":\"0 * * * *\",\"timezone\":\"Europe/Berlin\"}", &app, field, &e), 0);
    CHECK_EQ_INT(app.functions[0].schedule.kind, SPEC_SCHEDULE_CRON);
    CHECK_STR(app.functions[0].schedule.timezone, "Europe/Berlin");
    json_t *j = spec_function_to_json(&app.functions[0]);
    char *d = json_dumps(json_object_get(j, "schedule"), JSON_COMPACT | JSON_SORT_KEYS);
    CHECK_STR(d, "{\"cron\":\"0 * * * *\",\"timezone\":\"Europe/Berlin\"}");
    free(d);
    struct spec_function back;
    CHECK_EQ_INT(spec_function_from_json(j, &back, field, &e), 0);
    CHECK_STR(back.schedule.cron, "0 * * * *");
    spec_function_free(&back);
    json_decref(j);
    spec_app_free(&app);

    CHECK_EQ_INT(parse_fn_json(",\"schedule\":{\"cron\":\"@daily\"}", &app, field, &e), 0);
    CHECK_STR(app.functions[0].schedule.timezone, "UTC");
    spec_app_free(&app);
    CHECK_EQ_INT(parse_fn_json(",\"schedule\":{\"every\":2}", &app, field, &e), 0);
    CHECK_EQ_INT(app.functions[0].schedule.kind, SPEC_SCHEDULE_EVERY);
    CHECK_EQ_INT(app.functions[0].schedule.every_s, 2);
    j = spec_function_to_json(&app.functions[0]);
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(j, "schedule"), "every")), 2);
    json_decref(j);
    spec_app_free(&app);
    CHECK_EQ_INT(parse_fn_json("", &app, field, &e), 0);
    j = spec_function_to_json(&app.functions[0]);
    CHECK(!json_object_get(j, "schedule"));
    json_decref(j);
    spec_app_free(&app);

    static const struct {
        const char *fields, *field, *needle;
    } bad[] = {
        {",\"schedule\":{}", "functions[0].schedule", "exactly one of cron"},
        {",\"schedule\":{\"cron\":\"* * * * *\",\"every\":5}", "functions[0].schedule", "exactly one"},
        {",\"schedule\":\"hourly\"", "functions[0].schedule", "must be an object"},
        {",\"schedule\":{\"cron\":\"61 * * * *\"}", "functions[0].schedule.cron", "minute field"},
        {",\"schedule\":{\"cron\":5}", "functions[0].schedule.cron", "cron expression string"},
        {",\"schedule\":{\"cron\":\"0 0 * * *\",\"timezone\":\"Mars/Base\"}", "functions[0].schedule.timezone",
         "unknown time zone"},
        {",\"schedule\":{\"cron\":\"0 0 * * *\",\"timezone\":\"../etc/passwd\"}",
         "functions[0].schedule.timezone", "not a zone name"},
        {",\"schedule\":{\"every\":0}", "functions[0].schedule.every", "between 1 and"},
        {",\"schedule\":{\"every\":1.5}", "functions[0].schedule.every", "integer number of seconds"},
        {",\"schedule\":{\"every\":5,\"timezone\":\"UTC\"}", "functions[0].schedule.timezone", "only for a cron"},
        {",\"schedule\":{\"at\":5}", "functions[0].schedule.at", "unknown field"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ_INT(parse_fn_json(bad[i].fields, &app, field, &e), -EINVAL);
        if (strcmp(field, bad[i].field) || !strstr(e.msg, bad[i].needle))
            fprintf(stderr, "  %s -> %s: %s\n", bad[i].fields, field, e.msg);
        CHECK_STR(field, bad[i].field);
        CHECK(strstr(e.msg, bad[i].needle));
    }
}

int main(void)
{
    UNIT_RUN(test_spec_md_example_toml);
    UNIT_RUN(test_spec_md_example_json_defaults);
    UNIT_RUN(test_json_and_toml_same_normalised);
    UNIT_RUN(test_roundtrip_and_copy);
    UNIT_RUN(test_function_from_json_relative_paths);
    UNIT_RUN(test_errors_brief_examples);
    UNIT_RUN(test_errors_document);
    UNIT_RUN(test_errors_function_fields);
    UNIT_RUN(test_resources_request_limit);
    UNIT_RUN(test_errors_resources_retries_scaling);
    UNIT_RUN(test_errors_limits);
    UNIT_RUN(test_toml_strings);
    UNIT_RUN(test_toml_numbers);
    UNIT_RUN(test_toml_arrays_and_inline_tables);
    UNIT_RUN(test_toml_keys_and_tables);
    UNIT_RUN(test_secrets_and_mounts);
    UNIT_RUN(test_secret_env);
    UNIT_RUN(test_snapshot_field);
    UNIT_RUN(test_schedule_field);
    UNIT_MAIN_END();
}
