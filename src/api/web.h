/* The web listener's handler (docs/API.md "Web endpoints"): HTTP requests to
 * /<workspace>/<app>/<label>/<rest> (or Host <workspace>--<app>-<label>.<domain>)
 * become calls of the endpoint's function (src/proto/web.h), answered from the call's
 * items as they come. It runs on a second api_server of its own (src/api/server.c),
 * never on the API's, so the /v1 routes are not reachable through it. */
#ifndef GUST_API_WEB_H
#define GUST_API_WEB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/guard.h"
#include "api/server.h"
#include "control/control.h"

/* --web-max-body's default: 32 MiB: the uploads an endpoint takes (forms, images,
 * documents; larger files belong in a mount). It bounds every request body, streamed
 * or not (proto/web.h): gustd holds a streamed one only a window at a time, but a
 * web_endpoint function holds its body whole in the container. It stays within
 * --max-payload less the envelope's slack (main.c) as when bodies were the input. */
#define API_WEB_MAX_BODY_DEFAULT (32u << 20)
/* How long a request waits for a container to take it before 503 (Retry-After): a
 * cold start is well under it, a queue that does not move for this long is overload. */
#define API_WEB_QUEUE_MS_DEFAULT 30000u
/* The envelope's own bytes beyond the body are at most the request head, bounded by
 * the server's limits (64 KiB), plus these per-field lengths. */
#define API_WEB_ENVELOPE_SLACK (128u * 1024u)

struct api_web_config {
    const struct api_guard *guard; /* names allowed in Host besides IP literals and localhost (copied) */
    const char *domain;            /* --web-domain: Host routing under it; NULL: path routing only */
    bool tls;                      /* the listener speaks HTTPS (the envelope's scheme) */
    uint32_t queue_ms;             /* 0: API_WEB_QUEUE_MS_DEFAULT */
};
struct api_web;

/* Never NULL. cfg's strings must outlive the handler. */
struct api_web *api_web_new(struct ev_loop *loop, struct ctl *ctl, const struct api_web_config *cfg);
/* Requests in flight at free must be gone first (their server freed). */
void api_web_free(struct api_web *w);
/* An api_handler_fn; ud is the struct api_web. */
void api_web_handle(struct api_conn *conn, struct http_request *req, void *ud);

/* The route of a request, before any lookup: ws, app and label (app_label joined for
 * the Host form, app and label empty), and the path after the label ("/" at least) and
 * the prefix that named the endpoint. 0, -ENOENT when neither form matches, or 403's
 * -EACCES when Host names something else than this gustd (DNS rebinding). */
struct api_web_route {
    char ws[160], app[160], label[160], app_label[160];
    char root_path[512];
    const char *rest;
    bool by_host;
};
int api_web_route(const struct api_guard *guard, const char *domain, const struct http_request *req,
                  struct api_web_route *out);

#endif
