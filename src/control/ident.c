/* Identity at the bottom of control: workspaces with their quotas, API tokens with
 * their roles, and the qualified names ("<workspace>/<name>") every other file keys
 * apps, secrets and images by. Above model.c only for its error object.
 *
 * Tokens: "gust_<id>_<secret>", id 16 and secret 52 base32 characters (the secret
 * carries 260 random bits from getrandom). The store keeps the id and the SHA-256 of
 * the secret, never the secret: a stolen database does not let anyone in. A request's
 * token is found by its id (not secret) and its secret's hash is compared with
 * CRYPTO_memcmp, whose time does not depend on where the bytes differ.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/json_cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "base/xalloc.h"
#include "control/internal.h"

#define TOKEN_PREFIX "gust_"
#define TOKEN_ID_LEN 16
#define TOKEN_SECRET_LEN 52
#define TOKEN_LEN (sizeof TOKEN_PREFIX - 1 + TOKEN_ID_LEN + 1 + TOKEN_SECRET_LEN)

/* Bounds on what an admin can make us keep: a token table that fits in memory many
 * times over for any team, and workspaces likewise. */
#define CTL_MAX_TOKENS 100000
#define CTL_MAX_WORKSPACES 10000
/* Longest expiry a token may ask for: ten years, so that expires_at stays a plain
 * double of seconds. */
#define CTL_MAX_TOKEN_TTL_S (10.0 * 365 * 86400)

struct ctl_token {
    struct hmap_node node;      /* first: in ctl->tokens by id */
    char id[TOKEN_ID_LEN + 1];
    unsigned char hash[SHA256_DIGEST_LENGTH];
    char ws[CTL_WS_NAME_MAX + 1];
    enum ctl_role role;
    char name[64];
    double created_at, expires_at;
    bool ephemeral;             /* a container's (ctl_token_ephemeral): memory only, unlisted */
};

const char *ctl_role_name(enum ctl_role r)
{
    switch (r) {
    case CTL_ROLE_INVOKER: return "invoker";
    case CTL_ROLE_DEVELOPER: return "developer";
    case CTL_ROLE_ADMIN: return "admin";
    case CTL_ROLE_NONE: break;
    }
    return "none";
}

static enum ctl_role role_parse(const char *s)
{
    if (!s)
        return CTL_ROLE_NONE;
    if (!strcmp(s, "invoker"))
        return CTL_ROLE_INVOKER;
    if (!strcmp(s, "developer"))
        return CTL_ROLE_DEVELOPER;
    if (!strcmp(s, "admin"))
        return CTL_ROLE_ADMIN;
    return CTL_ROLE_NONE;
}

bool ctl_ws_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CTL_WS_NAME_MAX || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
            return false;
    return true;
}

void ctl_qualify(char out[CTL_QNAME_MAX], const char *ws, const char *name)
{
    snprintf(out, CTL_QNAME_MAX, "%s/%s", ws, name);
}

const char *ctl_unqualify(const char *qname, const char *ws)
{
    size_t n = strlen(ws);
    if (strncmp(qname, ws, n) || qname[n] != '/')
        return NULL;
    return qname + n + 1;
}

const char *ctl_local_name(const char *qname)
{
    const char *slash = strchr(qname, '/');
    return slash ? slash + 1 : qname;
}

void ctl_ws_of(const char *qname, char ws[CTL_WS_NAME_MAX + 1])
{
    const char *slash = strchr(qname, '/');
    size_t n = slash ? (size_t)(slash - qname) : 0;
    if (n > CTL_WS_NAME_MAX)
        n = 0;
    memcpy(ws, qname, n);
    ws[n] = '\0';
}

struct ctl_ws *ctl_ws_find(struct ctl *c, const char *name)
{
    list_for_each(w, &c->workspaces, struct ctl_ws, link)
        if (!strcmp(w->name, name))
            return w;
    return NULL;
}

struct ctl_ws *ctl_ws_of_name(struct ctl *c, const char *qname)
{
    char ws[CTL_WS_NAME_MAX + 1];
    ctl_ws_of(qname, ws);
    return ws[0] ? ctl_ws_find(c, ws) : NULL;
}

/* ---------- quotas ---------- */

static json_t *quotas_json(const struct ctl_quotas *q)
{
    json_t *j = json_object();
    if (q->containers)
        json_object_set_new(j, "containers", json_integer(q->containers));
    if (q->cpu_millicores)
        json_object_set_new(j, "cpu", json_real(q->cpu_millicores / 1000.0));
    if (q->memory_mib)
        json_object_set_new(j, "memory", json_integer((json_int_t)q->memory_mib));
    if (q->gpus)
        json_object_set_new(j, "gpus", json_integer(q->gpus));
    if (q->stored_bytes)
        json_object_set_new(j, "stored_bytes", json_integer((json_int_t)q->stored_bytes));
    return j;
}

/* Reads quotas from j ({"containers":N,"cpu":cores,"memory":MiB,"gpus":N,
 * "stored_bytes":N}; a missing key or 0: no limit). e names the bad field. */
static int quotas_parse(json_t *j, struct ctl_quotas *q, struct ctl_error *e)
{
    memset(q, 0, sizeof *q);
    if (!j || json_is_null(j))
        return 0;
    if (!json_is_object(j)) {
        ctl_err(e, CTL_E_INVALID, "invalid_argument", "quotas",
                "quotas: must be an object such as {\"containers\": 10, \"cpu\": 4, \"memory\": 8192, \"gpus\": 1, "
                "\"stored_bytes\": 10000000000}");
        return -EINVAL;
    }
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) {
        double max = !strcmp(key, "containers")     ? 1e6
                     : !strcmp(key, "cpu")          ? 1e6
                     : !strcmp(key, "memory")       ? 1e12
                     : !strcmp(key, "gpus")         ? 1e4
                     : !strcmp(key, "stored_bytes") ? 9e18
                                                    : -1;
        if (max < 0) {
            ctl_err(e, CTL_E_INVALID, "invalid_argument", "quotas",
                    "quotas.%s: unknown quota; known: containers, cpu (cores), memory (MiB), gpus, stored_bytes", key);
            return -EINVAL;
        }
        double x = json_number_value(v);
        bool whole = strcmp(key, "cpu") != 0;
        if (!json_is_number(v) || x < 0 || x > max || (whole && !json_is_integer(v))) {
            ctl_err(e, CTL_E_INVALID, "invalid_argument", "quotas",
                    "quotas.%s: must be a %s from 0 (no limit) to %.0f", key, whole ? "whole number" : "number", max);
            return -EINVAL;
        }
        if (!strcmp(key, "containers"))
            q->containers = (uint32_t)x;
        else if (!strcmp(key, "cpu"))
            q->cpu_millicores = (uint32_t)(x * 1000.0 + 0.5);
        else if (!strcmp(key, "memory"))
            q->memory_mib = (uint64_t)x;
        else if (!strcmp(key, "gpus"))
            q->gpus = (uint32_t)x;
        else
            q->stored_bytes = (uint64_t)x;
    }
    return 0;
}

/* ---------- workspaces ---------- */

static struct ctl_ws *ws_add(struct ctl *c, const char *name, double created_at, const struct ctl_quotas *q)
{
    struct ctl_ws *w = xcalloc(1, sizeof *w);
    snprintf(w->name, sizeof w->name, "%s", name);
    w->created_at = created_at;
    w->quotas = *q;
    list_push_back(&c->workspaces, &w->link);
    return w;
}

static int load_ws_row(const char *name, double created_at, const char *quotas_text, void *ud)
{
    struct ctl *c = ud;
    struct ctl_quotas q;
    AUTO_JSON json_t *j = json_loads(quotas_text, 0, NULL);
    struct ctl_error e;
    if (quotas_parse(j, &q, &e) < 0) {
        log_error("control", "workspace %s: stored quotas unreadable (%s); no limits applied", name, e.message);
        memset(&q, 0, sizeof q);
    }
    ws_add(c, name, created_at, &q);
    return 0;
}

static json_t *ws_json(const struct ctl_ws *w)
{
    return json_pack("{s:s,s:f,s:o,s:{s:i,s:f,s:I,s:i}}", "name", w->name, "created_at", w->created_at, "quotas",
                     quotas_json(&w->quotas), "in_use", "containers", (int)w->containers, "cpu",
                     w->cpu_used / 1000.0, "memory", (json_int_t)w->mem_used, "gpus", (int)w->gpus_used);
}

json_t *ctl_workspace_create(struct ctl *c, json_t *body, struct ctl_error *e)
{
    const char *name = json_string_value(json_object_get(body, "name"));
    if (!name || !ctl_ws_name_valid(name)) {
        ctl_err(e, CTL_E_INVALID, "invalid_argument", "name",
                "name: must be 1 to %d lowercase letters, digits and '-', starting with a letter or digit",
                CTL_WS_NAME_MAX);
        return NULL;
    }
    struct ctl_quotas q;
    if (quotas_parse(json_object_get(body, "quotas"), &q, e) < 0)
        return NULL;
    if (ctl_ws_find(c, name)) {
        ctl_err(e, CTL_E_CONFLICT, "exists", "name", "workspace %s exists", name);
        return NULL;
    }
    if (list_length(&c->workspaces) >= CTL_MAX_WORKSPACES) {
        ctl_err(e, CTL_E_TOO_LARGE, "too_many_workspaces", "name", "at most %d workspaces", CTL_MAX_WORKSPACES);
        return NULL;
    }
    double now = wall_s();
    AUTO_JSON json_t *qj = quotas_json(&q);
    AUTO_FREE char *text = json_dumps(qj, JSON_COMPACT | JSON_SORT_KEYS);
    struct gerr err;
    if (store_workspace_create(c->store, name, now, text, &err) < 0) {
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "storing the workspace failed: %s", err.msg);
        return NULL;
    }
    log_info("control", "workspace %s created", name);
    return ws_json(ws_add(c, name, now, &q));
}

json_t *ctl_workspace_set_quotas(struct ctl *c, const char *name, json_t *quotas, struct ctl_error *e)
{
    struct ctl_ws *w = ctl_ws_find(c, name);
    if (!w) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "workspace %s not found", name);
        return NULL;
    }
    struct ctl_quotas q;
    if (quotas_parse(quotas, &q, e) < 0)
        return NULL;
    AUTO_JSON json_t *qj = quotas_json(&q);
    AUTO_FREE char *text = json_dumps(qj, JSON_COMPACT | JSON_SORT_KEYS);
    struct gerr err;
    if (store_workspace_set_quotas(c->store, name, text, &err) < 0) {
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "storing the quotas failed: %s", err.msg);
        return NULL;
    }
    w->quotas = q;
    /* Calls waiting on the old quota may fit now (they are blocked, so visited by
     * every pass); a lower quota may change what others may start. */
    ctl_sched_mark_all(c);
    c->kick(c);
    return ws_json(w);
}

json_t *ctl_workspaces_json(struct ctl *c)
{
    json_t *arr = json_array();
    list_for_each(w, &c->workspaces, struct ctl_ws, link)
        json_array_append_new(arr, ws_json(w));
    return json_pack("{s:o}", "workspaces", arr);
}

json_t *ctl_workspace_json(struct ctl *c, const char *name, struct ctl_error *e)
{
    struct ctl_ws *w = ctl_ws_find(c, name);
    if (!w) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "workspace %s not found", name);
        return NULL;
    }
    return ws_json(w);
}

/* ---------- tokens ---------- */

static bool token_eq(const struct hmap_node *n, const void *key)
{
    return !strcmp(((const struct ctl_token *)n)->id, key);
}

static struct ctl_token *token_find(struct ctl *c, const char *id)
{
    return (struct ctl_token *)hmap_find(&c->tokens, hmap_hash_str(id), token_eq, id);
}

static void token_insert(struct ctl *c, struct ctl_token *t)
{
    hmap_insert(&c->tokens, &t->node, hmap_hash_str(t->id));
}

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hex_decode(const char *s, unsigned char *out, size_t n)
{
    if (strlen(s) != 2 * n)
        return -EINVAL;
    for (size_t i = 0; i < 2 * n; i++) {
        char ch = s[i];
        int v = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (v < 0)
            return -EINVAL;
        out[i / 2] = (unsigned char)(i % 2 ? (out[i / 2] | v) : v << 4);
    }
    return 0;
}

static int load_token_row(const struct store_token *st, void *ud)
{
    struct ctl *c = ud;
    struct ctl_token *t = xcalloc(1, sizeof *t);
    bool fits = strlen(st->id) == TOKEN_ID_LEN && strlen(st->workspace) <= CTL_WS_NAME_MAX;
    snprintf(t->id, sizeof t->id, "%.16s", st->id);
    snprintf(t->ws, sizeof t->ws, "%.32s", st->workspace);
    snprintf(t->name, sizeof t->name, "%s", st->name);
    t->role = role_parse(st->role);
    t->created_at = st->created_at;
    t->expires_at = st->expires_at;
    if (!fits || hex_decode(st->hash, t->hash, sizeof t->hash) < 0 || t->role == CTL_ROLE_NONE ||
        token_find(c, t->id)) {
        log_error("control", "stored token %s is unreadable; it will not be accepted", st->id);
        free(t);
        return 0;
    }
    token_insert(c, t);
    return 0;
}

/* Splits "gust_<id>_<secret>": id and secret point into token. */
static bool token_split(const char *token, const char **id, const char **secret)
{
    if (strlen(token) != TOKEN_LEN || strncmp(token, TOKEN_PREFIX, sizeof TOKEN_PREFIX - 1))
        return false;
    *id = token + sizeof TOKEN_PREFIX - 1;
    if ((*id)[TOKEN_ID_LEN] != '_')
        return false;
    *secret = *id + TOKEN_ID_LEN + 1;
    return true;
}

int ctl_authenticate(struct ctl *c, const char *token, struct ctl_principal *out)
{
    const char *id, *secret;
    if (!token || !token_split(token, &id, &secret))
        return -EACCES;
    char idbuf[TOKEN_ID_LEN + 1];
    memcpy(idbuf, id, TOKEN_ID_LEN);
    idbuf[TOKEN_ID_LEN] = '\0';
    unsigned char h[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)secret, TOKEN_SECRET_LEN, h);
    struct ctl_token *t = token_find(c, idbuf);
    if (!t || CRYPTO_memcmp(h, t->hash, sizeof h) != 0)
        return -EACCES;
    if (t->expires_at && wall_s() >= t->expires_at)
        return -EKEYEXPIRED;
    snprintf(out->ws, sizeof out->ws, "%s", t->ws);
    snprintf(out->token_id, sizeof out->token_id, "%s", t->id);
    /* A container's token is named after its container (sched.c). */
    snprintf(out->ctr_id, sizeof out->ctr_id, "%s", t->ephemeral ? t->name : "");
    out->role = t->role;
    return 0;
}

static json_t *token_json(const struct ctl_token *t)
{
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:f}", "id", t->id, "workspace", t->ws, "role", ctl_role_name(t->role),
                          "name", t->name, "created_at", t->created_at);
    json_object_set_new(j, "expires_at", t->expires_at ? json_real(t->expires_at) : json_null());
    return j;
}

/* Mints a token of role for workspace ws: kept in memory, and stored (hashed) when
 * persist; the whole token string is written to token_out (TOKEN_LEN + 1 bytes) and
 * exists nowhere else. */
static struct ctl_token *token_mint(struct ctl *c, const char *ws, enum ctl_role role, const char *name,
                                    double expires_at, bool persist, char token_out[TOKEN_LEN + 1],
                                    struct gerr *err)
{
    struct ctl_token *t = xcalloc(1, sizeof *t);
    do
        random_id(t->id, TOKEN_ID_LEN);
    while (token_find(c, t->id));
    char secret[TOKEN_SECRET_LEN + 1];
    random_id(secret, TOKEN_SECRET_LEN);
    SHA256((const unsigned char *)secret, TOKEN_SECRET_LEN, t->hash);
    snprintf(t->ws, sizeof t->ws, "%s", ws);
    snprintf(t->name, sizeof t->name, "%s", name ? name : "");
    t->role = role;
    t->created_at = wall_s();
    t->expires_at = expires_at;
    t->ephemeral = !persist;
    if (!persist)
        goto kept;
    struct store_token st = {.created_at = t->created_at, .expires_at = expires_at};
    snprintf(st.id, sizeof st.id, "%s", t->id);
    hex_encode(t->hash, sizeof t->hash, st.hash);
    snprintf(st.workspace, sizeof st.workspace, "%s", ws);
    snprintf(st.role, sizeof st.role, "%s", ctl_role_name(role));
    snprintf(st.name, sizeof st.name, "%s", t->name);
    if (store_token_put(c->store, &st, err) < 0) {
        explicit_bzero(secret, sizeof secret);
        free(t);
        return NULL;
    }
kept:
    token_insert(c, t);
    snprintf(token_out, TOKEN_LEN + 1, TOKEN_PREFIX "%s_%s", t->id, secret);
    explicit_bzero(secret, sizeof secret);
    return t;
}

json_t *ctl_token_create(struct ctl *c, json_t *body, struct ctl_error *e)
{
    const char *ws = json_string_value(json_object_get(body, "workspace"));
    const char *role_s = json_string_value(json_object_get(body, "role"));
    json_t *namev = json_object_get(body, "name");
    json_t *ttl = json_object_get(body, "expires_in");
    if (!ws) {
        ctl_err(e, CTL_E_INVALID, "invalid_argument", "workspace", "workspace: name the workspace the token acts in");
        return NULL;
    }
    if (!ctl_ws_find(c, ws)) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", "workspace",
                "workspace: no workspace named \"%s\"; create it first (gust workspace create %s)", ws, ws);
        return NULL;
    }
    enum ctl_role role = role_parse(role_s);
    if (role == CTL_ROLE_NONE) {
        ctl_err(e, CTL_E_INVALID, "invalid_argument", "role", "role: must be \"admin\", \"developer\" or \"invoker\"");
        return NULL;
    }
    if (namev && (!json_is_string(namev) || strlen(json_string_value(namev)) >= 64)) {
        ctl_err(e, CTL_E_INVALID, "invalid_argument", "name", "name: must be a string of at most 63 bytes");
        return NULL;
    }
    double expires_at = 0;
    if (ttl && !json_is_null(ttl)) {
        double s = json_number_value(ttl);
        if (!json_is_number(ttl) || s <= 0 || s > CTL_MAX_TOKEN_TTL_S) {
            ctl_err(e, CTL_E_INVALID, "invalid_argument", "expires_in",
                    "expires_in: must be a number of seconds > 0 and at most %.0f (ten years)", CTL_MAX_TOKEN_TTL_S);
            return NULL;
        }
        expires_at = wall_s() + s;
    }
    if (c->tokens.count >= CTL_MAX_TOKENS) {
        ctl_err(e, CTL_E_TOO_LARGE, "too_many_tokens", NULL, "at most %d tokens; revoke unused ones", CTL_MAX_TOKENS);
        return NULL;
    }
    char token[TOKEN_LEN + 1];
    struct gerr err;
    struct ctl_token *t = token_mint(c, ws, role, json_string_value(namev), expires_at, true, token, &err);
    if (!t) {
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "storing the token failed: %s", err.msg);
        return NULL;
    }
    log_info("control", "token %s created (workspace %s, role %s)", t->id, ws, ctl_role_name(role));
    json_t *j = token_json(t);
    json_object_set_new(j, "token", json_string(token));
    explicit_bzero(token, sizeof token);
    return j;
}

json_t *ctl_tokens_json(struct ctl *c)
{
    json_t *arr = json_array();
    for (size_t b = 0; b < c->tokens.nbuckets; b++)
        for (struct hmap_node *n = c->tokens.buckets[b]; n; n = n->next)
            if (!((struct ctl_token *)n)->ephemeral)
                json_array_append_new(arr, token_json((struct ctl_token *)n));
    return json_pack("{s:o}", "tokens", arr);
}

int ctl_token_ephemeral(struct ctl *c, const char *ws, const char *name, char token_out[CTL_TOKEN_LEN + 1],
                        char id_out[CTL_TOKEN_ID_LEN + 1])
{
    _Static_assert(CTL_TOKEN_LEN == TOKEN_LEN && CTL_TOKEN_ID_LEN == TOKEN_ID_LEN, "token sizes");
    struct gerr err;
    struct ctl_token *t = token_mint(c, ws, CTL_ROLE_INVOKER, name, 0, false, token_out, &err);
    if (!t)
        return -1;
    memcpy(id_out, t->id, TOKEN_ID_LEN + 1);
    return 0;
}

void ctl_token_ephemeral_drop(struct ctl *c, const char *id)
{
    struct ctl_token *t = id[0] ? token_find(c, id) : NULL;
    if (!t || !t->ephemeral)
        return;
    hmap_remove(&c->tokens, &t->node);
    explicit_bzero(t->hash, sizeof t->hash);
    free(t);
}

int ctl_token_revoke(struct ctl *c, const char *id, struct ctl_error *e)
{
    struct ctl_token *t = token_find(c, id);
    if (t && t->ephemeral)
        t = NULL; /* a container's: it ends with the container */
    if (!t) {
        ctl_err(e, CTL_E_NOT_FOUND, "not_found", NULL, "token %s not found", id);
        return -ENOENT;
    }
    struct gerr err;
    if (store_token_delete(c->store, id, &err) < 0 && err.code != ENOENT) {
        ctl_err(e, CTL_E_INTERNAL, "internal", NULL, "revoking the token failed: %s", err.msg);
        return -EIO;
    }
    hmap_remove(&c->tokens, &t->node);
    free(t);
    log_info("control", "token %s revoked", id);
    return 0;
}

/* ---------- start-up ---------- */

/* Writes token to <data-dir>/admin.token, created 0600 and never replaced: a file
 * that is there (or a link planted there) is left alone. */
static int write_admin_token(struct ctl *c, const char *token, struct gerr *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/admin.token", c->cfg.data_dir);
    AUTO_FD int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return gerr_sys(err, errno, "creating %s", path);
    char line[TOKEN_LEN + 2];
    int n = snprintf(line, sizeof line, "%s\n", token);
    int r = write_full(fd, line, (size_t)n);
    explicit_bzero(line, sizeof line);
    if (r < 0 || fsync(fd) < 0)
        return gerr_sys(err, r < 0 ? -r : errno, "writing %s", path);
    log_info("control", "admin token written to %s (role admin, workspace default)", path);
    return 0;
}

int ctl_ident_load(struct ctl *c, struct gerr *err)
{
    int r = store_workspace_list(c->store, load_ws_row, c, err);
    if (r < 0 || (r = store_token_list(c->store, load_token_row, c, err)) < 0)
        return r;
    if (!ctl_ws_find(c, CTL_DEFAULT_WS)) {
        double now = wall_s();
        if ((r = store_workspace_create(c->store, CTL_DEFAULT_WS, now, "{}", err)) < 0)
            return r;
        struct ctl_quotas none = {0};
        ws_add(c, CTL_DEFAULT_WS, now, &none);
    }
    /* First start (no token at all): the admin token, for the operator who started
     * gustd, in a file only they can read. */
    if (c->tokens.count == 0 && c->cfg.data_dir) {
        char token[TOKEN_LEN + 1];
        struct ctl_token *t = token_mint(c, CTL_DEFAULT_WS, CTL_ROLE_ADMIN, "admin", 0, true, token, err);
        if (!t)
            return gerr_prefix(err, "creating the admin token");
        r = write_admin_token(c, token, err);
        explicit_bzero(token, sizeof token);
        if (r < 0)
            return r;
    }
    return 0;
}

void ctl_ident_free(struct ctl *c)
{
    list_for_each_safe(w, &c->workspaces, struct ctl_ws, link)
        free(w);
    for (size_t b = 0; b < c->tokens.nbuckets; b++)
        for (struct hmap_node *n = c->tokens.buckets[b], *next; n; n = next) {
            next = n->next;
            free(n);
        }
    hmap_free(&c->tokens);
}
