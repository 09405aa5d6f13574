/* The /v1 routes (docs/API.md): dispatches parsed requests to the control plane. */
#ifndef GUST_API_ROUTES_H
#define GUST_API_ROUTES_H

#include "api/guard.h"
#include "api/server.h"
#include "control/control.h"
#include "http/http.h"

struct api_ctx;

/* Never NULL (allocation failure aborts). guard (copied; its strings must outlive the
 * routes) says which Origins and Host names are allowed; NULL: the defaults. */
struct api_ctx *api_routes_new(struct ctl *ctl, const struct api_guard *guard);
void api_routes_free(struct api_ctx *ctx);
/* An api_handler_fn; ud is the struct api_ctx. Every request needs a valid bearer
 * token (401), a role at least the route's (403); objects of another workspace are
 * not found (404). */
void api_routes_handle(struct api_conn *conn, struct http_request *req, void *ud);
/* An api_handler_fn for the --metrics-listen listener: GET /metrics without a token
 * (the listener is loopback only), the Host guard as for the API; any other path 404. */
void api_routes_metrics_handle(struct api_conn *conn, struct http_request *req, void *ud);
/* An api_status_fn (api_server_on_status) counting responses by route and status for
 * gust_http_requests_total; ud is the struct api_ctx. */
void api_routes_count(void *ud, int tag, int status);

#endif
