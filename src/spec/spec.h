/* App and function specs (docs/SPEC.md): JSON and TOML parsing, validation,
 * defaults and the normalised JSON form used for storage and the API.
 *
 * Every parse function validates the whole tree: unknown fields, types, ranges and
 * cross-field rules. On error it returns -EINVAL, leaves *out zeroed,
 * sets err->msg to "FIELD: what is wrong and what to fix" and, when field_out is
 * non-NULL, copies the field path into it (e.g. "functions[0].resources.memory"; ""
 * for whole-document errors such as a syntax error, whose message gives line and
 * column). Paths of spec_function_from_json are relative to the function
 * ("resources.memory").
 *
 * The TOML reader (toml_parse) implements the TOML 1.0 subset documented below and
 * produces the same jansson tree the JSON form would.
 */
#ifndef GUST_SPEC_SPEC_H
#define GUST_SPEC_SPEC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "spec/cron.h"

#define SPEC_FIELD_MAX 256
#define SPEC_MAX_GPU_OPTIONS 8

/* Bounds enforced by the parsers. */
#define SPEC_DOC_MAX (1024 * 1024)   /* bytes of one JSON or TOML document */
#define SPEC_MAX_FUNCTIONS 64
#define SPEC_MAX_ARGS 256            /* command entries */
#define SPEC_MAX_ARGS_BYTES 65536    /* sum over command of strlen + 1 */
#define SPEC_MAX_ENV 256             /* env entries */
#define SPEC_MAX_ENV_BYTES 65536     /* sum over env of strlen("K=V") + 1 */
#define SPEC_MAX_PATH 4095           /* workdir length */
#define SPEC_MAX_CPU 64000           /* millicores; the control plane checks worker capacity */
#define SPEC_MAX_SECRETS 16          /* secrets per function */
#define SPEC_MAX_MOUNTS 16           /* mounts per function */
#define SPEC_SECRET_NAME_MAX 63
#define SPEC_SECRET_MAX_KEYS 256     /* variables per secret */
#define SPEC_SECRET_MAX_BYTES 65536  /* sum over a secret of strlen("K=V") + 1 */
#define SPEC_STR_SECRET_BYTES "65536"
#define SPEC_SECRET_NAME_CHARS "1 to 63 letters, digits, '.', '_' and '-', starting with a letter or digit"

enum spec_mode { SPEC_MODE_PER_INPUT = 1, SPEC_MODE_RUNNER = 2 };
enum spec_network { SPEC_NET_NONE = 0, SPEC_NET_EGRESS = 1 };

#define SPEC_MAX_DENY_SYSCALLS 128

/* type is normalised: the known types "H100", "H200", "B200", "A100-40GB" (alias
 * "A100"), "A100-80GB", "L40S", "L4", "A10G", "T4" are matched case-insensitively;
 * other types ([A-Za-z0-9-], 1..31 chars) are upper-cased. count is 1..8. */
struct spec_gpu {
    char type[32];
    uint32_t count;
};

/* A web endpoint (docs/SPEC.md "web"): HTTP requests to the function's URL become
 * calls of it (src/proto/web.h). Fixed-size so that a function's copy is a plain one. */
#define SPEC_WEB_LABEL_MAX 63
enum spec_web_kind { SPEC_WEB_NONE = 0, SPEC_WEB_FUNCTION, SPEC_WEB_ASGI, SPEC_WEB_WSGI, SPEC_WEB_SERVER };
struct spec_web {
    enum spec_web_kind kind;        /* SPEC_WEB_NONE: not an endpoint */
    char method[16];                /* "GET", "POST", ... or "*" (any) */
    char label[SPEC_WEB_LABEL_MAX + 1]; /* the URL's name of the endpoint (default: the function's) */
    bool public_;                   /* served without a token */
    bool docs;                      /* FastAPI's /docs (the runner's business) */
    /* SPEC_WEB_SERVER only (0 otherwise): the port the function's own HTTP server
     * listens on inside the container, and how long the runner waits for it to accept
     * a connection before the container's start fails. The runner proxies to it. */
    uint32_t port;
    double startup_timeout_s;
};
const char *spec_web_kind_name(enum spec_web_kind k);

/* A schedule (docs/SPEC.md "schedule"): gustd calls the function, with no arguments,
 * at each fire. Fixed-size so that a function's copy is a plain one. The cron
 * expression has been checked by cron_parse and the zone loaded by cron_tz_load. */
#define SPEC_SCHEDULE_EVERY_MAX (10u * 366 * 86400) /* Modal's Period goes up to years */
enum spec_schedule_kind { SPEC_SCHEDULE_NONE = 0, SPEC_SCHEDULE_CRON, SPEC_SCHEDULE_EVERY };
struct spec_schedule {
    enum spec_schedule_kind kind;
    char cron[CRON_EXPR_MAX + 1];          /* SPEC_SCHEDULE_CRON: the expression as given */
    char timezone[CRON_TZ_NAME_MAX + 1];   /* SPEC_SCHEDULE_CRON: an IANA zone (default "UTC") */
    uint32_t every_s;                      /* SPEC_SCHEDULE_EVERY: seconds between fires, >= 1 */
};

struct spec_function {
    char *name;
    char *kind;                 /* "exec" */
    char **command;             /* ncommand entries, NULL-terminated */
    size_t ncommand;
    enum spec_mode mode;
    char *image;                /* a registered image's name, or NULL when image_def is set */
    json_t *image_def;          /* an inline image definition, normalised (spec_image_parse) */
    char *workdir;
    uint32_t timeout_s;
    char **env;                 /* "K=V", sorted by key, NULL-terminated */
    size_t nenv;
    /* resources.cpu and .memory (docs/SPEC.md): the request is what the control plane
     * reserves on a worker, counts against quotas and bills; the limit is the hard
     * cgroup cap. cpu_limit_millicores is 0 when there is none (the container may
     * burst into idle CPU, weighted by its request); memory_limit_mib is always set
     * and >= memory_mib (a plain number sets both). */
    uint32_t cpu_millicores, cpu_limit_millicores;
    uint32_t memory_mib, memory_limit_mib;
    uint32_t disk_mib;
    struct spec_gpu gpus[SPEC_MAX_GPU_OPTIONS]; /* [0] preferred, the rest fallbacks */
    size_t ngpu_options;                        /* 0 = no GPU */
    uint32_t max_retries;
    double initial_delay_s, backoff_coefficient, max_delay_s;
    uint32_t min_containers, max_containers, buffer_containers, max_inputs;
    uint32_t target_inputs;      /* 0: not given; else 1..max_inputs, inputs per container the autoscaler aims at */
    uint32_t lifetime_inputs;    /* 0: no limit; else the inputs a container takes before it is replaced */
    uint32_t scaledown_window_s; /* 0: not given (the keep-alive policy decides) */
    uint32_t pids_max;          /* resources.pids (default 1024) */
    uint32_t open_files;        /* resources.open_files; 0 = the worker's default (65536 or its own limit) */
    enum spec_network network;  /* "none" (loopback only, default) or "egress" */
    bool snapshot;              /* start containers from a memory snapshot taken after the init (runner mode) */
    char **deny_syscalls;       /* security.deny_syscalls: added to the seccomp profile, sorted, NULL-terminated */
    size_t ndeny_syscalls;
    char **secrets;             /* names of stored secrets injected as env, in order, NULL-terminated */
    size_t nsecrets;
    char **mount_paths;         /* mounts[].path, sorted, non-nesting; NULL-terminated */
    char **mount_images;        /* mounts[].image ("sha256:..." tree ids), parallel to mount_paths */
    size_t nmounts;
    char **volume_paths;        /* volumes[].path, sorted, overlapping no mount or volume; NULL-terminated */
    char **volume_names;        /* volumes[].name (the workspace's volume), parallel to volume_paths */
    size_t nvolumes;
    struct spec_web web;
    struct spec_schedule schedule;
};

struct spec_app {
    char *name;
    struct spec_function *functions;
    size_t nfunctions;
};

/* Parse + validate + fill defaults (see the header comment for the error contract).
 * Documents over SPEC_DOC_MAX bytes are rejected. */
int spec_app_parse_json(const char *text, size_t len, struct spec_app *out,
                        char field_out[SPEC_FIELD_MAX], struct gerr *err);
int spec_app_parse_toml(const char *text, size_t len, struct spec_app *out,
                        char field_out[SPEC_FIELD_MAX], struct gerr *err);
/* Validates an already parsed tree (root is borrowed). */
int spec_app_from_json(json_t *root, struct spec_app *out, char field_out[SPEC_FIELD_MAX],
                       struct gerr *err);
/* Frees everything and zeroes *app; a zeroed app is fine. */
void spec_app_free(struct spec_app *app);

/* Normalised JSON of one function: every field present, defaults filled, env keys
 * sorted, gpu always a list of "TYPE:COUNT" strings ([] = no GPU), retries always a
 * table. Round-trips through spec_function_from_json. NULL on allocation failure. */
json_t *spec_function_to_json(const struct spec_function *f);
/* Validates one function object (same rules as one element of "functions"). */
int spec_function_from_json(json_t *obj, struct spec_function *out,
                            char field_out[SPEC_FIELD_MAX], struct gerr *err);
/* Whether s is an image or tree id: "sha256:" and 64 lowercase hex digits. */
bool spec_image_id_valid(const char *s);
/* Whether k is a valid environment variable name: letters, digits and '_', not
 * starting with a digit, at most 255 characters. */
bool spec_env_name_valid(const char *k);
/* Whether s is a valid secret name (SPEC_SECRET_NAME_CHARS). */
bool spec_secret_name_valid(const char *s);
/* Validates a secret's env (a JSON object of string values, 1..SPEC_SECRET_MAX_KEYS
 * variables, at most SPEC_SECRET_MAX_BYTES) into *out: "K=V" strings sorted by key,
 * NULL-terminated, *n of them (free with spec_secret_env_free). Errors name the field
 * ("env", "env.KEY"; -EINVAL, -E2BIG for bounds) and never quote a value. */
int spec_secret_env_parse(json_t *env, char ***out, size_t *n, char field_out[SPEC_FIELD_MAX], struct gerr *err);
void spec_secret_env_free(char **env);
/* Frees everything and zeroes *f; a zeroed function is fine. */
void spec_function_free(struct spec_function *f);
/* Deep copy (allocation failure aborts, base/xalloc.h). */
void spec_function_copy(const struct spec_function *src, struct spec_function *dst);

/* ---- image definitions (docs/SPEC.md "Images") ----
 * As gustd takes them (docs/API.md "Image builds"):
 * { base = "debian_slim" | "busybox" | "scratch" | NAME  (or from_oci = TREE),
 *   steps = [ {run = CMD | [CMD...]}, {apt_install = [PKG...]},
 *             {pip_install = [REQ...], find_links = TREE},
 *             {copy = {src = REL, tree = TREE, file = BOOL}, to = ABS},
 *             {env = {K = V}}, {workdir = ABS} ] }
 * TREE is the id ("sha256:…") of a tree the client uploaded (POST /v1/mounts): gustd
 * never opens a host path a client names. A spec file names host paths instead
 * (from_oci = PATH, find_links = DIR, copy = REL); the client uploads them and puts
 * the trees in (src/cli, the Python SDK); a path where a tree belongs is refused with
 * a message that says so. */
#define SPEC_IMAGE_MAX_STEPS 128
#define SPEC_IMAGE_MAX_ITEMS 512    /* commands of a run step, packages of an install */
#define SPEC_IMAGE_MAX_BYTES 65536  /* of the strings of one step */

/* Validates v and returns the normalised definition in *out (new reference): every
 * step a table with its kind as key; run/apt_install/pip_install values as arrays.
 * Field paths in errors start with where ("image", "functions[0].image"). */
int spec_image_parse(json_t *v, const char *where, json_t **out, char field_out[SPEC_FIELD_MAX], struct gerr *err);
/* Whether src is a copy source a client may name: non-empty, relative, without ".."
 * components (it names a file under the spec's directory). -EINVAL with *why (a
 * static phrase to follow the quoted path) otherwise. The CLI checks spec files
 * with it too, so both say the same. */
int spec_copy_src_check(const char *src, const char **why);
/* Whether base names a built-in base (scratch, busybox, debian_slim). */
bool spec_image_base_builtin(const char *base);

/* A TOML document to a jansson tree (*out owned by the caller).
 * Supported: comments; bare, quoted and dotted keys; basic strings with escapes
 * (\b \t \n \f \r \" \\ \uXXXX \UXXXXXXXX), literal strings, multi-line basic and
 * literal strings; integers (decimal with underscores and sign, 0x/0o/0b); floats;
 * booleans; arrays (multi-line, trailing comma, mixed types); inline tables (one
 * line); [table] and [[array.of.tables]] headers with dotted names ([a.b] after
 * [[a]] applies to the last element). Dates/times, inf and nan are rejected. Duplicate
 * keys and tables are errors. Errors: -EINVAL with "TOML syntax error at line L,
 * column C: ..." (column in bytes, 1-based). At most SPEC_DOC_MAX bytes and nesting
 * depth 64 (arrays, inline tables and key parts together). */
int toml_parse(const char *text, size_t len, json_t **out, struct gerr *err);

/* ---------- dict and queue request bodies (kv.c) ---------- */

/* Modal's limits: a key, value or item is at most 1 MiB; a queue partition holds at
 * most 5,000 items; a partition key is 1 to 64 bytes. */
#define SPEC_KV_VALUE_MAX (1u << 20)
#define SPEC_QUEUE_PARTITION_ITEMS 5000u
#define SPEC_QUEUE_PARTITION_MAX 64
/* Entries one put_many or update carries: a partition's worth, so that filling one
 * takes a single request. */
#define SPEC_KV_BATCH_MAX 5000u
/* One page of a listing (dict items, queue iteration): at most this many entries and
 * SPEC_KV_PAGE_BYTES of them (but always one), so an answer stays a few MiB. */
#define SPEC_KV_PAGE_MAX 1000
#define SPEC_KV_PAGE_BYTES (4u << 20)
/* The longest one blocked get waits before it is answered empty: Modal's client asks
 * for 50 s at a time so that proxies keep the connection; ours loops the same way. */
#define SPEC_QUEUE_WAIT_MAX_S 50
/* A queue put's partition_ttl (Modal's): the partition is removed when not put into
 * for this many seconds; Modal's default is a day. The bound (a year) only keeps the
 * expiry a sane time; Modal documents none. */
#define SPEC_QUEUE_TTL_DEFAULT_S 86400
#define SPEC_QUEUE_TTL_MAX_S (365 * 86400)

enum spec_kv_kind { SPEC_KV_DICT = 1, SPEC_KV_QUEUE };

struct spec_bytes {
    const void *data;
    size_t len;
};

/* A dict or queue operation's body, decoded. */
struct spec_kv_req {
    void *key;                  /* dict: the key (get, contains, pop, put) */
    size_t klen;
    void *value;                /* dict put: the value */
    size_t vlen;
    bool skip_if_exists;        /* dict put */
    struct spec_bytes *keys;    /* dict update: keys parallel to values */
    struct spec_bytes *values;  /* queue put: the items; dict update: the values */
    size_t nvalues;
    void *after_key;            /* dict items: the page starts after this key (NULL: first) */
    size_t after_klen;
    char partition[SPEC_QUEUE_PARTITION_MAX + 1]; /* queue: "" is the default partition */
    int64_t n;                  /* queue get: at most this many items */
    uint64_t timeout_ms;        /* queue get: 0 answers at once */
    int64_t after;              /* queue items: the page starts after this item id */
    int64_t limit;              /* items: page size */
    bool total;                 /* queue len: all partitions */
    bool all;                   /* queue clear: all partitions */
    double partition_ttl;       /* queue put: seconds, > 0 (default SPEC_QUEUE_TTL_DEFAULT_S) */
};

/* Decodes body (a JSON object; values base64) for operation op of kind: unknown
 * fields refused, every length bounded before anything is decoded. 0; -ENOENT for an
 * op the kind does not have; -E2BIG past a limit; -EINVAL otherwise; field_out names
 * the field ("" for none). Free r with spec_kv_req_free (after an error too: empty). */
int spec_kv_req_parse(enum spec_kv_kind kind, const char *op, json_t *body, struct spec_kv_req *r,
                      char field_out[SPEC_FIELD_MAX], struct gerr *err);
void spec_kv_req_free(struct spec_kv_req *r);

#endif
