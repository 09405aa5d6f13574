/* Internals of gust, the command-line client, shared by the files of src/cli: exit
 * codes, global options, the command table's types, argument parsing, requests to
 * gustd with their error reports, and table output. Each file holds one group of
 * commands (calls, deploy, images, secrets, observe) or one of these shared parts;
 * main.c holds the command table and the dispatch. */
#ifndef GUST_CLI_CLI_H
#define GUST_CLI_CLI_H

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/buf.h"
#include "gust.h"

/* Exit codes (docs/CLI.md). */
enum {
    EXIT_OK = 0,
    EXIT_FAILED = 1,  /* the function failed */
    EXIT_USAGE = 2,   /* bad command line */
    EXIT_API = 3,     /* gustd refused the request (4xx, 503) */
    EXIT_CONNECT = 4, /* cannot reach gustd / broken connection */
    EXIT_TIMEOUT = 5, /* the call is still going after the wait */
};

/* The most bytes read from one input file or stdin. */
#define CLI_MAX_INPUT (1024u * 1024u * 1024u)

/* Global options, valid before or after the command. */
struct cli_options {
    const char *addr;    /* NULL: $GUST_ADDR, else libgust's default */
    bool json;           /* print the API's JSON answers as they are */
    const char *token;   /* --token; NULL: $GUST_TOKEN, else the token file (never printed) */
    const char *ca_file; /* --ca-file; NULL: $GUST_CA_FILE, else the system's CAs */
};
extern struct cli_options cli_opts;

/* ---------- the command table (main.c) ---------- */

struct cli_cmd {
    const char *name;
    const char *usage; /* synopsis line(s) after "gust " */
    const char *help;  /* description and options */
    int (*run)(const struct cli_cmd *cmd, int argc, char **argv);
    /* For run = cmd_request only: one request, method to the API path path (a
     * cli_api_path format whose "%s", if any, takes the one positional argument),
     * whose parsed answer print prints; arg is that argument or NULL. */
    const char *method;
    const char *path;
    void (*print)(json_t *answer, const char *arg, const gust_client *c);
};

/* Prints c's usage and help, then the global options, to f. */
void cli_print_usage(FILE *f, const struct cli_cmd *c);
/* Reports a usage error for c; returns EXIT_USAGE. */
int cli_usage_error(const struct cli_cmd *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---------- arguments and input files (args.c) ---------- */

struct cli_opt {
    const char *name; /* long name without "--" */
    char short_name;  /* or 0 */
    const char **val; /* option with an argument */
    bool *flag;       /* flag without one */
};

/* An "APP.FN" argument split in two; app and fn point into buf. */
struct cli_target {
    char buf[256];
    const char *app, *fn;
};

/* If argv[*i] is a global option (--json, --addr, --token, --ca-file; the last three
 * as "--opt VALUE" or "--opt=VALUE"), records it in cli_opts, moves *i past its value
 * and returns true; else returns false (a trailing --addr without a value is not
 * one). */
bool cli_take_global_opt(int argc, char **argv, int *i);
/* Parses argv[1..argc) (argv[0] is the command name) into opts (an array ended by a
 * zeroed entry, or NULL) and exactly npos positionals (pos may be NULL when npos is
 * 0); global options are accepted anywhere. Returns true to go on; false when the
 * command should end now with exit code *rc (EXIT_OK after --help, EXIT_USAGE after
 * reporting the problem). */
bool cli_parse_args(const struct cli_cmd *c, int argc, char **argv, const struct cli_opt *opts, char **pos, int npos,
                    int *rc);
/* cli_parse_args for a command whose one positional argument is APP.FN, split into t. */
bool cli_parse_target_args(const struct cli_cmd *c, int argc, char **argv, const struct cli_opt *opts,
                           struct cli_target *t, int *rc);
/* Parses a non-negative number of seconds. */
bool cli_parse_seconds(const char *s, double *out);
/* Reads a file ("-" = stdin, at most CLI_MAX_INPUT bytes) into b; on failure prints
 * why and returns false. */
bool cli_read_input_file(const char *path, struct buf *b);

/* ---------- local files to trees on gustd (upload.c) ---------- */

/* What uploads sent: distinct chunks and their bytes, and how many gustd lacked. */
struct cli_upload_stats {
    size_t chunks, chunks_sent;
    uint64_t bytes, bytes_sent;
};
struct cli_tree;
struct cli_tree *cli_tree_new(void);
void cli_tree_free(struct cli_tree *t);
/* Reads and hashes path (a directory: its tree; a file: a tree holding it alone under
 * its name; *is_file, if non-NULL, says which) into t, sending nothing. On failure
 * prints why, naming label, and returns false. */
bool cli_tree_scan(struct cli_tree *t, const char *path, const char *label, bool *is_file);
/* Sends the chunks of scanned t that gustd lacks (POST /v1/blobs/missing, PUT
 * /v1/blobs/...). On failure prints why and returns false with *rc. */
bool cli_tree_send_chunks(gust_client *c, struct cli_tree *t, const char *label, struct cli_upload_stats *st,
                          int *rc);
/* t's manifest entries (sorted, the root implied), owned by t. */
json_t *cli_tree_entries(const struct cli_tree *t);
/* Sends the chunks of scanned t that gustd lacks and its entries; id gets the tree
 * id. On failure prints why and returns false with *rc. */
bool cli_tree_upload(gust_client *c, struct cli_tree *t, const char *label, char id[80], struct cli_upload_stats *st,
                     int *rc);
/* Uploads the host paths of the image definitions in doc (deploy: each
 * functions[i].image; else doc's "image" table or doc itself) and puts the trees in
 * their place: from_oci and find_links become tree ids, copy = "SRC" becomes {src,
 * tree, file}. Relative paths are under dir (the spec file's directory); copy
 * sources must be relative without "..". Every path is read before anything is sent.
 * On failure prints why and returns false with *rc. */
bool cli_spec_upload(gust_client *c, json_t *doc, const char *dir, bool deploy, int *rc);

/* ---------- requests to gustd and their errors (request.c) ---------- */

/* A client for cli_opts.addr; NULL after reporting an invalid address. */
gust_client *cli_open_client(void);

static inline void cli_cleanup_clientp(gust_client **c)
{
    gust_client_free(*c);
}
#define AUTO_CLIENT __attribute__((cleanup(cli_cleanup_clientp)))

/* Appends s percent-encoded as a path segment. Returns 0 or -ENOMEM. */
int cli_path_seg(struct buf *b, const char *s);
/* Appends to b the API path fmt in which each "%s" stands for the next argument
 * (a const char *), percent-encoded as one path segment; "%s" is the only
 * conversion. Returns 0 or -ENOMEM. */
int cli_api_path(struct buf *b, const char *fmt, ...);
/* Sends method to the API path built from fmt and the segments after it (see
 * cli_api_path), with a JSON body (NULL for none). With --json prints the answer as
 * it came and returns NULL with *rc = EXIT_OK; otherwise returns it parsed (the caller
 * json_decref's it). A failed request or malformed answer is reported: NULL with *rc
 * its exit code. */
json_t *cli_api_json(gust_client *c, int *rc, const char *method, const char *body, const char *fmt, ...);
/* GETs the API path built from fmt and the segments after it (see cli_api_path) and
 * returns the answer parsed, with or without --json (the caller json_decref's it):
 * an answer the command reads rather than prints. Failures as cli_api_json. */
json_t *cli_api_get(gust_client *c, int *rc, const char *fmt, ...);
/* Tells on stderr that call e->call_id is still going (kind GUST_ERR_PENDING). */
void cli_print_pending(const gust_error *e);
/* Prints e and returns the exit code for it. */
int cli_report(const gust_error *e);
/* Prints a JSON value compactly with a newline. */
void cli_print_json(json_t *j);
/* The run function of the table's request commands (see struct cli_cmd): no options,
 * one positional argument if cmd->path has a "%s", else none. */
int cmd_request(const struct cli_cmd *cmd, int argc, char **argv);

/* ---------- tables (table.c) and their cells (cell.c) ---------- */

#define TABLE_MAX_COLS 16

/* Rows of cells; the first row holds the column titles. */
struct table {
    size_t ncols;
    size_t nrows;
    char **cells; /* nrows * ncols malloc'd strings (NULL prints as "") */
};

/* A table of ncols (at most TABLE_MAX_COLS) columns with titles as its first row. */
struct table table_new(const char *const *titles, size_t ncols);
/* Appends a row of ncols cells, taking ownership of the malloc'd strings. */
void table_add(struct table *t, char **row);
/* Prints aligned columns (two spaces apart; the last column unpadded) and frees t.
 * A table without rows under its titles prints the line if_empty instead, unless
 * if_empty is NULL. */
void table_print(struct table *t, const char *if_empty);

/* Cells are malloc'd strings; cell_json and cell_field may return NULL (jansson could
 * not print the value), which a table prints as "". */
/* A JSON scalar formatted for a cell; null/missing is "-". */
char *cell_json(json_t *v);
/* cell_json of member key of object o. */
char *cell_field(json_t *o, const char *key);
/* Member key of object o as "%.1f" (a missing one is 0.0). */
char *cell_field_1f(json_t *o, const char *key);
/* A fraction as a whole percentage ("42%"); a non-number is "-". */
char *cell_percent(json_t *v);
/* "12s", "5m", "3h", "2d" since the UNIX time in v (a number), else cell_json(v). */
char *cell_age(json_t *v);
/* The strings of a JSON array joined by "," ("?" for a non-string); "-" for none. */
char *cell_list(json_t *arr);

/* ---------- streamed image builds (build.c), for deploy and image build ---------- */

/* Reads spec file pos (see docs/CLI.md for how its format is told), opens the client,
 * uploads the host paths of its image definitions (cli_spec_upload; deploy: the
 * functions' inline images) and leaves in spec the JSON to send (*ctype JSON). path
 * gets endpoint. NULL (with *rc) when the command should end. */
gust_client *cli_build_open(const char *pos, const char *endpoint, bool deploy, struct buf *spec, const char **ctype,
                            struct buf *path, int *rc);
/* POSTs spec to path, showing the build's progress on stderr: steps, cache hits,
 * durations, and with verbose every line the steps print. Returns EXIT_OK with *final
 * the last event (the caller json_decref's it) when that event is want_event; else
 * reports the failure (with the failing command and its last output) and returns its
 * exit code. */
int cli_build_run(gust_client *c, const char *path, const struct buf *spec, const char *ctype, const char *want_event,
                  bool verbose, json_t **final);

/* ---------- commands: run functions and answer printers of the table ---------- */

/* deploy.c */
int cmd_deploy(const struct cli_cmd *cmd, int argc, char **argv);
int cmd_run(const struct cli_cmd *cmd, int argc, char **argv);
int cmd_serve(const struct cli_cmd *cmd, int argc, char **argv);
void cmd_print_stopped(json_t *j, const char *app, const gust_client *c);

/* calls.c */
int cmd_call(const struct cli_cmd *cmd, int argc, char **argv);
int cmd_spawn(const struct cli_cmd *cmd, int argc, char **argv);
int cmd_result(const struct cli_cmd *cmd, int argc, char **argv);
int cmd_map(const struct cli_cmd *cmd, int argc, char **argv);
int cmd_calls(const struct cli_cmd *cmd, int argc, char **argv);
void cmd_print_cancelled(json_t *j, const char *id, const gust_client *c);

/* observe.c */
int cmd_logs(const struct cli_cmd *cmd, int argc, char **argv);
int cmd_usage(const struct cli_cmd *cmd, int argc, char **argv);
void cmd_print_health(json_t *j, const char *arg, const gust_client *c);
void cmd_print_functions(json_t *j, const char *arg, const gust_client *c);
void cmd_print_containers(json_t *j, const char *arg, const gust_client *c);

/* images.c */
int cmd_image_build(const struct cli_cmd *cmd, int argc, char **argv);
/* image add and image import (told apart by cmd->name). */
int cmd_image_add(const struct cli_cmd *cmd, int argc, char **argv);
void cmd_print_images(json_t *j, const char *arg, const gust_client *c);
void cmd_print_image(json_t *j, const char *name, const gust_client *c);
void cmd_print_image_removed(json_t *j, const char *name, const gust_client *c);
void cmd_print_image_gc(json_t *j, const char *arg, const gust_client *c);

/* admin.c */
int cmd_workspace_create(const struct cli_cmd *cmd, int argc, char **argv);
int cmd_workspace_quota(const struct cli_cmd *cmd, int argc, char **argv);
void cmd_print_workspaces(json_t *j, const char *arg, const gust_client *c);
int cmd_token_create(const struct cli_cmd *cmd, int argc, char **argv);
void cmd_print_tokens(json_t *j, const char *arg, const gust_client *c);
void cmd_print_token_revoked(json_t *j, const char *id, const gust_client *c);
void cmd_print_whoami(json_t *j, const char *arg, const gust_client *c);

/* kv.c */
void cmd_print_kv_objects(json_t *j, const char *arg, const gust_client *c);
void cmd_print_kv_deleted(json_t *j, const char *name, const gust_client *c);

/* volume.c */
int cmd_volume_create(const struct cli_cmd *cmd, int argc, char **argv);
int cmd_volume_ls(const struct cli_cmd *cmd, int argc, char **argv);
int cmd_volume_put(const struct cli_cmd *cmd, int argc, char **argv);
int cmd_volume_get(const struct cli_cmd *cmd, int argc, char **argv);
int cmd_volume_rm(const struct cli_cmd *cmd, int argc, char **argv);
int cmd_volume_cp(const struct cli_cmd *cmd, int argc, char **argv);

/* secrets.c */
int cmd_secret_create(const struct cli_cmd *cmd, int argc, char **argv);
void cmd_print_secrets(json_t *j, const char *arg, const gust_client *c);
void cmd_print_secret_removed(json_t *j, const char *name, const gust_client *c);

#endif
