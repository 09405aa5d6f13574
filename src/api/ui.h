/* The web dashboard: the bundle of ui/dist, embedded in gustd at build time
 * (scripts/embed-ui.py writes build/gen/ui_bundle.c), served at /ui without a token.
 * The page holds no data: it reads the /v1 API with the token the user pastes. */
#ifndef GUST_API_UI_H
#define GUST_API_UI_H

#include <stdbool.h>
#include <stddef.h>

#include "api/server.h"
#include "http/http.h"

struct api_ui_file {
    const char *name;         /* file name in ui/dist: letters, digits, '.', '_', '-' */
    const char *content_type;
    const unsigned char *data;
    size_t len;
};

/* The embedded files (generated). */
extern const struct api_ui_file api_ui_files[];
extern const size_t api_ui_nfiles;

/* Whether req's path is the dashboard's: "/ui" or under "/ui/". If so it is answered:
 * "/ui" redirects to "/ui/", "/ui/" is index.html, "/ui/NAME" the embedded file NAME
 * (a lookup by name in the table: no path ever reaches the file system), anything else
 * 404; GET and HEAD only (405). Every answer carries the dashboard's
 * Content-Security-Policy. */
bool api_ui_handle(struct api_conn *conn, struct http_request *req);

#endif
