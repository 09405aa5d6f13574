/* Streamed image builds (NDJSON events, docs/API.md), shared by gust deploy and gust
 * image build: the spec file, the request, progress on stderr and the result. */
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/json_cleanup.h"
#include "cli/cli.h"
#include "gust.h"
#include "spec/spec.h"

/* Output lines of the running step of one image (a deploy builds one per function),
 * counted while quiet. */
struct build_hidden {
    char who[80];
    unsigned long lines;
};

/* Progress of a build on stderr; the final event is kept for the caller. */
struct build_view {
    struct buf line;
    json_t *final;
    bool quiet_logs;
    struct build_hidden hidden[SPEC_MAX_FUNCTIONS];
    size_t nhidden;
};

/* The count of who's hidden lines (NULL once every function of an app has one). */
static unsigned long *hidden_lines(struct build_view *v, const char *who)
{
    for (size_t i = 0; i < v->nhidden; i++)
        if (!strcmp(v->hidden[i].who, who))
            return &v->hidden[i].lines;
    if (v->nhidden == SPEC_MAX_FUNCTIONS)
        return NULL;
    struct build_hidden *h = &v->hidden[v->nhidden++];
    snprintf(h->who, sizeof h->who, "%s", who);
    h->lines = 0;
    return &h->lines;
}

/* Shows event ev, or keeps it as v->final if it ends the build. */
static void build_show(struct build_view *v, json_t *ev)
{
    const char *kind = json_string_value(json_object_get(ev, "event"));
    const char *fn = json_string_value(json_object_get(ev, "function"));
    char who[80] = "";
    if (fn)
        snprintf(who, sizeof who, "%s: ", fn);
    int idx = (int)json_integer_value(json_object_get(ev, "index"));
    if (!kind)
        return;
    if (!strcmp(kind, "image")) {
        fprintf(stderr, "%simage %s (cached)\n", who, json_string_value(json_object_get(ev, "image_id")));
    } else if (!strcmp(kind, "step")) {
        fprintf(stderr, "%s[%d/%d] %s\n", who, idx, (int)json_integer_value(json_object_get(ev, "of")),
                json_string_value(json_object_get(ev, "step")));
    } else if (!strcmp(kind, "step_wait")) {
        fprintf(stderr, "%s  waiting: another build is running this step\n", who);
    } else if (!strcmp(kind, "log")) {
        unsigned long *n = v->quiet_logs ? hidden_lines(v, who) : NULL;
        if (!v->quiet_logs)
            fprintf(stderr, "%s  | %s\n", who, json_string_value(json_object_get(ev, "line")));
        else if (n)
            ++*n;
    } else if (!strcmp(kind, "step_done")) {
        const char *id = json_string_value(json_object_get(ev, "image_id"));
        unsigned long *n = v->quiet_logs ? hidden_lines(v, who) : NULL;
        char hidden[64] = "";
        if (n && *n)
            snprintf(hidden, sizeof hidden, ", %lu output line%s (-v shows %s)", *n, *n == 1 ? "" : "s",
                     *n == 1 ? "it" : "them");
        if (n)
            *n = 0;
        if (json_is_true(json_object_get(ev, "cached")))
            fprintf(stderr, "%s  cached (%.19s)\n", who, id ? id : "?");
        else
            fprintf(stderr, "%s  done in %.1f s%s (%.19s)\n", who, json_number_value(json_object_get(ev, "seconds")),
                    hidden, id ? id : "?");
    } else if (!strcmp(kind, "done") || !strcmp(kind, "error") || !strcmp(kind, "deployed")) {
        json_decref(v->final);
        v->final = json_incref(ev);
    }
    fflush(stderr);
}

/* gust_request_stream's callback: splits the stream into lines, one event each. */
static int build_data(void *ud, const char *data, size_t len)
{
    struct build_view *v = ud;
    for (size_t i = 0; i < len; i++) {
        if (data[i] != '\n') {
            buf_append(&v->line, data + i, 1);
            continue;
        }
        json_t *ev = json_loadb(v->line.data ? v->line.data : "", v->line.len, 0, NULL);
        v->line.len = 0;
        if (ev)
            build_show(v, ev);
        json_decref(ev);
    }
    return 0;
}

/* Reports a failed build from its error event; returns the exit code. */
static int build_failed(json_t *fin)
{
    const char *msg = json_string_value(json_object_get(fin, "message"));
    const char *fn = json_string_value(json_object_get(fin, "function"));
    fprintf(stderr, "error: %s%s%s\n", fn ? fn : "", fn ? ": " : "", msg ? msg : "the build failed");
    const char *cmd = json_string_value(json_object_get(fin, "command"));
    if (cmd)
        fprintf(stderr, "  command: %s\n  exit status: %lld\n", cmd,
                (long long)json_integer_value(json_object_get(fin, "exit_status")));
    const char *tail = json_string_value(json_object_get(fin, "output_tail"));
    if (tail && *tail)
        fprintf(stderr, "  last output:\n%s%s", tail, tail[strlen(tail) - 1] == '\n' ? "" : "\n");
    if (cli_opts.json)
        cli_print_json(fin);
    return json_string_value(json_object_get(fin, "code")) &&
                   strcmp(json_string_value(json_object_get(fin, "code")), "internal")
               ? EXIT_API
               : EXIT_FAILED;
}

/* The directory relative paths of the spec file pos are resolved against. */
static bool spec_context(const char *pos, char *out, size_t cap)
{
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return false;
    if (!strcmp(pos, "-")) {
        snprintf(out, cap, "%s", cwd);
        return true;
    }
    char full[PATH_MAX * 2];
    if (pos[0] == '/')
        snprintf(full, sizeof full, "%s", pos);
    else
        snprintf(full, sizeof full, "%s/%s", cwd, pos);
    char *slash = strrchr(full, '/');
    if (slash == full)
        slash[1] = '\0';
    else
        *slash = '\0';
    if (strlen(full) >= cap)
        return false;
    memcpy(out, full, strlen(full) + 1);
    return true;
}

/* Reads spec file pos; *ctype gets its content type. */
static bool read_spec(const char *pos, struct buf *spec, const char **ctype)
{
    if (!cli_read_input_file(pos, spec))
        return false;
    if (!spec->len) {
        fprintf(stderr, "error: %s is empty\n", pos);
        return false;
    }
    const char *dot = strrchr(pos, '.');
    bool json = dot && !strcmp(dot, ".json");
    bool toml = dot && !strcmp(dot, ".toml");
    if (!json && !toml)
        json = spec->data[strspn(spec->data, " \t\r\n")] == '{';
    *ctype = json ? "application/json" : "application/toml";
    return true;
}

gust_client *cli_build_open(const char *pos, const char *endpoint, bool deploy, struct buf *spec, const char **ctype,
                            struct buf *path, int *rc)
{
    char context[PATH_MAX];
    *rc = EXIT_USAGE;
    if (!read_spec(pos, spec, ctype) || !spec_context(pos, context, sizeof context))
        return NULL;
    /* The spec is parsed here, with gustd's own parser, to find its host paths. */
    struct gerr err;
    json_t *doc AUTO_JSON = NULL;
    if (!strcmp(*ctype, "application/toml")) {
        if (toml_parse(spec->data, spec->len, &doc, &err) < 0) {
            fprintf(stderr, "error: %s: %s\n", pos, err.msg);
            *rc = EXIT_API;
            return NULL;
        }
    } else {
        json_error_t je;
        if (!(doc = json_loadb(spec->data, spec->len, 0, &je))) {
            fprintf(stderr, "error: %s is not valid JSON: line %d, column %d: %s\n", pos, je.line, je.column, je.text);
            *rc = EXIT_API;
            return NULL;
        }
    }
    gust_client *c = cli_open_client();
    if (!c)
        return NULL;
    if (!cli_spec_upload(c, doc, context, deploy, rc)) {
        gust_client_free(c);
        return NULL;
    }
    AUTO_FREE char *text = json_dumps(doc, JSON_COMPACT);
    if (!text) {
        fprintf(stderr, "error: %s: its strings are not valid UTF-8\n", pos);
        gust_client_free(c);
        return NULL;
    }
    spec->len = 0;
    buf_append_str(spec, text);
    *ctype = "application/json";
    buf_append_str(path, endpoint);
    return c;
}

int cli_build_run(gust_client *c, const char *path, const struct buf *spec, const char *ctype, const char *want_event,
                  bool verbose, json_t **final)
{
    struct build_view v = {.quiet_logs = !verbose};
    gust_error e;
    int r = gust_request_stream(c, "POST", path, ctype, spec->data, spec->len, build_data, &v, &e);
    buf_free(&v.line);
    if (r < 0) {
        json_decref(v.final);
        return cli_report(&e);
    }
    if (!v.final) {
        fprintf(stderr, "error: gustd ended the build stream without a result\n");
        return EXIT_CONNECT;
    }
    if (strcmp(json_string_value(json_object_get(v.final, "event")), want_event)) {
        int rc = build_failed(v.final);
        json_decref(v.final);
        return rc;
    }
    *final = v.final;
    return EXIT_OK;
}
