/* Serving the embedded dashboard bundle (api/ui.h). */
#include "api/ui.h"

#include <string.h>

/* Headers of every /ui answer. The CSP allows only this origin's scripts, styles and
 * fetches, and no inline script: an injected string (a function name, a log line) can
 * never run as code, and the API the page reads is same-origin, which the Origin guard
 * wants. frame-ancestors / X-Frame-Options stop another site framing the page
 * (clickjacking). no-cache: the bundle's names are fixed, so a browser must revalidate
 * to see a new gustd's bundle. */
#define UI_HEADERS                                                                                                 \
    "Content-Security-Policy: default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "     \
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'\r\n"       \
    "X-Content-Type-Options: nosniff\r\n"                                                                          \
    "X-Frame-Options: DENY\r\n"                                                                                    \
    "Referrer-Policy: no-referrer\r\n"                                                                             \
    "Cache-Control: no-cache\r\n"

static const char ui_moved[] = "see /ui/\n";
static const char ui_not_found[] = "not found\n";

static const struct api_ui_file *ui_find(const char *name)
{
    for (size_t i = 0; i < api_ui_nfiles; i++)
        if (!strcmp(api_ui_files[i].name, name))
            return &api_ui_files[i];
    return NULL;
}

bool api_ui_handle(struct api_conn *conn, struct http_request *req)
{
    const char *p = req->path;
    if (strncmp(p, "/ui", 3) || (p[3] != '\0' && p[3] != '/'))
        return false;
    if (strcmp(req->method, "GET") && strcmp(req->method, "HEAD")) {
        api_conn_error(conn, 405, "method_not_allowed", "the dashboard (/ui) takes GET", NULL);
        return true;
    }
    if (p[3] == '\0') {
        api_conn_respond(conn, 301, "text/plain; charset=utf-8", ui_moved, sizeof ui_moved - 1,
                         "Location: /ui/\r\n" UI_HEADERS);
        return true;
    }
    const char *name = p[4] ? p + 4 : "index.html";
    const struct api_ui_file *f = ui_find(name);
    if (!f) {
        api_conn_respond(conn, 404, "text/plain; charset=utf-8", ui_not_found, sizeof ui_not_found - 1, UI_HEADERS);
        return true;
    }
    api_conn_respond(conn, 200, f->content_type, f->data, f->len, UI_HEADERS);
    return true;
}
