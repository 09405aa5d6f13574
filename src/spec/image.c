/* Image definitions (docs/SPEC.md "Images"): validation and the normalised form that
 * step ids are computed from (see spec/spec.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cleanup.h"
#include "base/json_cleanup.h"
#include "base/util.h"
#include "spec/spec.h"

struct img_ctx {
    char path[SPEC_FIELD_MAX];
    char *field_out;
    struct gerr *err;
};

/* Messages go into JSON error bodies: bytes of a sequence that is not UTF-8 (a value
 * cut by a %.Ns precision, say) become '?'. */
static void img_fix_utf8(char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_decode(s + i, n - i, &cp);
        if (k == 0) {
            s[i++] = '?';
            continue;
        }
        i += k;
    }
}

/* Fails at where + suffix: "PATH: what". */
__attribute__((format(printf, 3, 4))) static int img_fail(struct img_ctx *c, const char *suffix, const char *fmt,
                                                           ...)
{
    char what[GERR_MSG_MAX / 2], where[SPEC_FIELD_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(where, sizeof where, "%s%s", c->path, suffix);
    img_fix_utf8(what);
    img_fix_utf8(where);
    if (c->field_out)
        snprintf(c->field_out, SPEC_FIELD_MAX, "%s", where);
    return gerr_set(c->err, EINVAL, "%s: %s", where, what);
}

/* A printable description of a JSON value's type for messages. */
static const char *img_type(json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "a table";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static bool img_plain_string(json_t *v)
{
    return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v) && json_string_length(v) > 0;
}

/* Debian package names (policy 5.6.1), optionally "=VERSION" or "/RELEASE". */
static bool img_apt_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 2 || n > 200 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
        return false;
    bool suffix = false;
    for (const char *p = s; *p; p++) {
        char ch = *p;
        if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '+' || ch == '-' || ch == '.')
            continue;
        if ((ch == '=' || ch == '/') && !suffix && p != s) {
            suffix = true;
            continue;
        }
        if (suffix && (ch == ':' || ch == '~' || (ch >= 'A' && ch <= 'Z') || ch == '_'))
            continue;
        return false;
    }
    return true;
}

/* A pip requirement: no leading '-' (no option injection), no whitespace or quotes. */
static bool img_pip_req_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 400 || s[0] == '-')
        return false;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '"' || *p == '\'' || *p == '\\' || *p == '`' || *p == '$' ||
            (unsigned char)*p >= 0x7f)
            return false;
    return true;
}

static bool img_env_key_ok(const char *k)
{
    if (!*k || strlen(k) > 255 || (*k >= '0' && *k <= '9'))
        return false;
    for (const char *p = k; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return false;
    return true;
}

static bool img_abs_path_ok(const char *s)
{
    return s[0] == '/' && strlen(s) <= SPEC_MAX_PATH;
}

/* A tree the client uploaded (POST /v1/mounts), named by its id. */
static bool img_tree_ok(json_t *v)
{
    return img_plain_string(v) && spec_image_id_valid(json_string_value(v));
}

/* What a host path in a definition gets: gustd never opens a host path a client
 * names, so the client uploads the files and names the tree (what: where it goes). */
static int img_host_path(struct img_ctx *c, const char *suffix, json_t *v, const char *what)
{
    if (img_plain_string(v))
        return img_fail(c, suffix,
                        "\"%.80s\" is a path on the client's machine, which gustd does not open; upload %s as a "
                        "tree (POST /v1/blobs/missing, PUT /v1/blobs/DIGEST, POST /v1/mounts) and give its id "
                        "\"sha256:...\" (gust and the Python SDK do this)",
                        json_string_value(v), what);
    return img_fail(c, suffix, "must be the id \"sha256:...\" of an uploaded tree (%s), got %s", what, img_type(v));
}

int spec_copy_src_check(const char *src, const char **why)
{
    if (!*src) {
        *why = "is empty; give a path relative to the spec's directory";
        return -EINVAL;
    }
    if (strlen(src) > SPEC_MAX_PATH) {
        *why = "is too long a path";
        return -EINVAL;
    }
    if (src[0] == '/') {
        *why = "is an absolute path; copy sources are relative paths inside the spec's directory";
        return -EINVAL;
    }
    for (const char *p = src; *p;) {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            *why = "has a \"..\" component; copy sources are relative paths inside the spec's directory";
            return -EINVAL;
        }
        p += n;
        p += strspn(p, "/");
    }
    return 0;
}

/* A non-empty array of strings (or, when one_ok, a single string), each passing ok. */
static int img_string_list(struct img_ctx *c, const char *suffix, json_t *v, bool one_ok,
                           bool (*ok)(const char *), const char *what, json_t **out)
{
    /* The jansson calls on values already parsed fail only on allocation, which
     * aborts under gustd's allocator (xmalloc); their results are not checked. */
    AUTO_JSON json_t *list = json_array();
    if (one_ok && json_is_string(v)) {
        json_array_append(list, v);
    } else if (json_is_array(v)) {
        if (json_array_size(v) == 0)
            return img_fail(c, suffix, "must list at least one %s", what);
        if (json_array_size(v) > SPEC_IMAGE_MAX_ITEMS)
            return img_fail(c, suffix, "at most %d entries, got %zu", SPEC_IMAGE_MAX_ITEMS, json_array_size(v));
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
            json_array_append(list, e);
    } else {
        return img_fail(c, suffix, "must be %s%s, got %s", one_ok ? "a string or " : "", "an array of strings",
                        img_type(v));
    }
    size_t total = 0, i;
    json_t *e;
    json_array_foreach(list, i, e) {
        char sub[64];
        snprintf(sub, sizeof sub, "%s[%zu]", suffix, i);
        if (!img_plain_string(e))
            return img_fail(c, one_ok && json_is_string(v) ? suffix : sub, "must be a non-empty %s, got %s", what,
                            img_type(e));
        if (!ok(json_string_value(e)))
            return img_fail(c, one_ok && json_is_string(v) ? suffix : sub, "\"%.80s\" is not a valid %s",
                            json_string_value(e), what);
        total += json_string_length(e) + 1;
    }
    if (total > SPEC_IMAGE_MAX_BYTES)
        return img_fail(c, suffix, "is %zu bytes long; at most %d bytes per step", total, SPEC_IMAGE_MAX_BYTES);
    *out = json_incref(list);
    return 0;
}

static bool img_any_command(const char *s)
{
    return *s != '\0';
}

static int img_only_keys(struct img_ctx *c, const char *suffix, json_t *obj, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        bool found = false;
        for (const char *const *a = allowed; *a; a++)
            found = found || !strcmp(*a, key);
        if (!found) {
            char list[256] = "";
            for (const char *const *a = allowed; *a; a++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", a == allowed ? "" : ", ", *a);
            char sub[SPEC_FIELD_MAX];
            snprintf(sub, sizeof sub, "%s.%.64s", suffix, key);
            return img_fail(c, sub, "unknown field; allowed here: %s", list);
        }
    }
    return 0;
}

static const char *const img_kinds[] = {"run", "apt_install", "pip_install", "copy", "env", "workdir", NULL};

/* One step: exactly one kind key, plus that kind's options. */
static int img_step(struct img_ctx *c, size_t idx, json_t *s, json_t **out)
{
    char suf[48];
    snprintf(suf, sizeof suf, ".steps[%zu]", idx);
    if (!json_is_object(s))
        return img_fail(c, suf, "must be a table with one of run, apt_install, pip_install, copy, env, workdir; got %s",
                        img_type(s));
    const char *kind = NULL;
    for (const char *const *k = img_kinds; *k; k++) {
        if (json_object_get(s, *k)) {
            if (kind)
                return img_fail(c, suf, "has both %s and %s; give one step per table", kind, *k);
            kind = *k;
        }
    }
    if (!kind)
        return img_fail(c, suf, "names no step; use one of run, apt_install, pip_install, copy, env, workdir");
    char ksuf[64];
    snprintf(ksuf, sizeof ksuf, "%s.%s", suf, kind);
    json_t *v = json_object_get(s, kind);
    AUTO_JSON json_t *n = NULL;
    int r;
    if (!strcmp(kind, "run")) {
        static const char *const allowed[] = {"run", NULL};
        json_t *cmds = NULL;
        if ((r = img_only_keys(c, suf, s, allowed)) < 0 ||
            (r = img_string_list(c, ksuf, v, true, img_any_command, "shell command", &cmds)) < 0)
            return r;
        n = json_pack("{s:o}", "run", cmds);
    } else if (!strcmp(kind, "apt_install")) {
        static const char *const allowed[] = {"apt_install", NULL};
        json_t *pkgs = NULL;
        if ((r = img_only_keys(c, suf, s, allowed)) < 0 ||
            (r = img_string_list(c, ksuf, v, true, img_apt_name_ok, "Debian package name", &pkgs)) < 0)
            return r;
        n = json_pack("{s:o}", "apt_install", pkgs);
    } else if (!strcmp(kind, "pip_install")) {
        static const char *const allowed[] = {"pip_install", "find_links", NULL};
        json_t *reqs = NULL;
        if ((r = img_only_keys(c, suf, s, allowed)) < 0 ||
            (r = img_string_list(c, ksuf, v, true, img_pip_req_ok, "pip requirement", &reqs)) < 0)
            return r;
        n = json_pack("{s:o}", "pip_install", reqs);
        json_t *fl = json_object_get(s, "find_links");
        if (fl) {
            char fsuf[64];
            snprintf(fsuf, sizeof fsuf, "%s.find_links", suf);
            if (!img_tree_ok(fl))
                return img_host_path(c, fsuf, fl, "the directory of wheels");
            json_object_set(n, "find_links", fl);
        }
    } else if (!strcmp(kind, "copy")) {
        static const char *const allowed[] = {"copy", "to", NULL};
        if ((r = img_only_keys(c, suf, s, allowed)) < 0)
            return r;
        if (!json_is_object(v))
            return img_host_path(c, ksuf, v, "the file or directory with its src");
        static const char *const callowed[] = {"src", "tree", "file", NULL};
        if ((r = img_only_keys(c, ksuf, v, callowed)) < 0)
            return r;
        json_t *src = json_object_get(v, "src"), *tree = json_object_get(v, "tree"), *file = json_object_get(v, "file");
        char csuf[80];
        snprintf(csuf, sizeof csuf, "%s.src", ksuf);
        const char *why;
        if (!img_plain_string(src))
            return img_fail(c, csuf, "must be the source's path relative to the spec's directory, got %s",
                            src ? img_type(src) : "nothing");
        if (spec_copy_src_check(json_string_value(src), &why) < 0)
            return img_fail(c, csuf, "\"%.80s\" %s", json_string_value(src), why);
        snprintf(csuf, sizeof csuf, "%s.tree", ksuf);
        if (!img_tree_ok(tree))
            return img_fail(c, csuf, "must be the id \"sha256:...\" of the uploaded tree of src (POST /v1/mounts), got %s",
                            tree ? img_type(tree) : "nothing");
        snprintf(csuf, sizeof csuf, "%s.file", ksuf);
        if (file && !json_is_boolean(file))
            return img_fail(c, csuf, "must be true (src is a file: the tree holds it alone) or false, got %s",
                            img_type(file));
        json_t *to = json_object_get(s, "to");
        char tsuf[64];
        snprintf(tsuf, sizeof tsuf, "%s.to", suf);
        if (!to)
            return img_fail(c, tsuf, "required field is missing; give the absolute path in the image, e.g. to = \"/app\"");
        if (!img_plain_string(to) || !img_abs_path_ok(json_string_value(to)))
            return img_fail(c, tsuf, "must be an absolute path in the image, got %s", img_type(to));
        n = json_pack("{s:{s:O,s:O,s:b},s:O}", "copy", "src", src, "tree", tree, "file", json_is_true(file), "to", to);
    } else if (!strcmp(kind, "env")) {
        static const char *const allowed[] = {"env", NULL};
        if ((r = img_only_keys(c, suf, s, allowed)) < 0)
            return r;
        if (!json_is_object(v) || json_object_size(v) == 0)
            return img_fail(c, ksuf, "must be a non-empty table of NAME = \"value\", got %s", img_type(v));
        if (json_object_size(v) > SPEC_MAX_ENV)
            return img_fail(c, ksuf, "at most %d variables per step", SPEC_MAX_ENV);
        const char *key;
        json_t *val;
        json_object_foreach(v, key, val) {
            char esuf[SPEC_FIELD_MAX];
            snprintf(esuf, sizeof esuf, "%s.%.64s", ksuf, key);
            if (!img_env_key_ok(key))
                return img_fail(c, esuf, "is not a valid variable name (letters, digits, _; not starting with a digit)");
            if (!json_is_string(val) || strlen(json_string_value(val)) != json_string_length(val) ||
                json_string_length(val) > 32768)
                return img_fail(c, esuf, "must be a string without NUL, at most 32768 bytes, got %s", img_type(val));
        }
        n = json_pack("{s:O}", "env", v);
    } else {
        static const char *const allowed[] = {"workdir", NULL};
        if ((r = img_only_keys(c, suf, s, allowed)) < 0)
            return r;
        if (!img_plain_string(v) || !img_abs_path_ok(json_string_value(v)))
            return img_fail(c, ksuf, "must be an absolute path in the image, got %s", img_type(v));
        n = json_pack("{s:O}", "workdir", v);
    }
    *out = json_incref(n);
    return 0;
}

static const char *const img_bases[] = {"scratch", "busybox", "debian_slim", NULL};

bool spec_image_base_builtin(const char *base)
{
    for (const char *const *b = img_bases; *b; b++)
        if (!strcmp(*b, base))
            return true;
    return false;
}

int spec_image_parse(json_t *v, const char *where, json_t **out, char field_out[SPEC_FIELD_MAX], struct gerr *err)
{
    struct img_ctx c = {.field_out = field_out, .err = err};
    snprintf(c.path, sizeof c.path, "%s", where);
    *out = NULL;
    if (field_out)
        field_out[0] = '\0';
    if (!json_is_object(v))
        return img_fail(&c, "", "must be a table with base (or from_oci) and steps, got %s", v ? img_type(v) : "nothing");
    static const char *const allowed[] = {"base", "from_oci", "steps", "built_id", NULL};
    int r = img_only_keys(&c, "", v, allowed);
    if (r < 0)
        return r;
    json_t *base = json_object_get(v, "base"), *oci = json_object_get(v, "from_oci");
    AUTO_JSON json_t *n = json_object();
    if (base && oci)
        return img_fail(&c, ".from_oci", "give either base or from_oci, not both");
    if (!base && !oci)
        return img_fail(&c, ".base", "required field is missing; use \"debian_slim\", \"busybox\", \"scratch\" or a "
                                     "registered image name, or give from_oci");
    if (base) {
        if (!img_plain_string(base))
            return img_fail(&c, ".base", "must be a string, got %s", img_type(base));
        const char *b = json_string_value(base);
        bool name_ok = strlen(b) <= 63 && ((b[0] >= 'a' && b[0] <= 'z') || (b[0] >= 'A' && b[0] <= 'Z') ||
                                           (b[0] >= '0' && b[0] <= '9'));
        for (const char *p = b; *p && name_ok; p++)
            name_ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      *p == '_' || *p == '-';
        if (!name_ok)
            return img_fail(&c, ".base", "\"%.80s\" is not debian_slim, busybox, scratch or an image name", b);
        json_object_set(n, "base", base);
    } else {
        if (!img_tree_ok(oci))
            return img_host_path(&c, ".from_oci", oci, "the OCI image layout directory or image tarball");
        json_object_set(n, "from_oci", oci);
    }
    json_t *steps = json_object_get(v, "steps");
    AUTO_JSON json_t *ns = json_array();
    if (steps) {
        if (!json_is_array(steps))
            return img_fail(&c, ".steps", "must be an array of step tables ([[image.steps]] in TOML), got %s",
                            img_type(steps));
        if (json_array_size(steps) > SPEC_IMAGE_MAX_STEPS)
            return img_fail(&c, ".steps", "at most %d steps, got %zu", SPEC_IMAGE_MAX_STEPS, json_array_size(steps));
        size_t i;
        json_t *s;
        json_array_foreach(steps, i, s) {
            json_t *one = NULL;
            if ((r = img_step(&c, i, s, &one)) < 0)
                return r;
            json_array_append_new(ns, one);
        }
    }
    json_object_set(n, "steps", ns);
    json_t *built = json_object_get(v, "built_id");
    if (built) {
        if (!json_is_string(built) || strlen(json_string_value(built)) != json_string_length(built) ||
            !spec_image_id_valid(json_string_value(built)))
            return img_fail(&c, ".built_id", "must be an image id \"sha256:<64 hex digits>\"");
        json_object_set(n, "built_id", built);
    }
    *out = json_incref(n);
    return 0;
}
