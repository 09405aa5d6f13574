/* Who may talk to the API from where: the checks against the web page attacker.
 *
 * A page in the user's browser can send requests to gustd on 127.0.0.1 (a "simple"
 * cross-origin POST needs no preflight), and through DNS rebinding it can even read the
 * answers: its own name is made to resolve to 127.0.0.1, so the request carries the
 * page's name in Host. Both are refused here, before any route runs:
 * - Origin: browsers send it with every cross-origin request and every POST; gustd's
 *   clients (CLI, SDK, libgust, curl) never do. A request with an Origin not listed
 *   (gustd --allow-origin), and not gustd's own (the dashboard's, api_guard_same_origin),
 *   gets 403 origin_not_allowed.
 * - Host: its name must be an IP literal (which no DNS answer can rebind), "localhost",
 *   or a name listed with gustd --allow-host; else 403 host_not_allowed. A request
 *   without Host (HTTP/1.0 clients, never a browser) passes. */
#ifndef GUST_API_GUARD_H
#define GUST_API_GUARD_H

#include <stdbool.h>
#include <stddef.h>

#include "http/http.h"

#define API_GUARD_MAX_NAMES 16

struct api_guard {
    const char *hosts[API_GUARD_MAX_NAMES];   /* extra names allowed in Host */
    size_t nhosts;
    const char *origins[API_GUARD_MAX_NAMES]; /* origins allowed ("https://dash.example") */
    size_t norigins;
};

/* 0 when req may proceed; else the HTTP status (403) with code and a message for the
 * client (naming the flag that would allow it) in why. */
int api_guard_check(const struct api_guard *g, const struct http_request *req, const char **code, char *why,
                    size_t why_len);
/* Whether origin (an Origin header value) is the request's own: "http://" or "https://"
 * followed by host (its Host header value), compared case-insensitively. Such a request
 * comes from a page gustd itself served at that address (the dashboard, /ui): whatever
 * else answers on the same host and port is gustd. The Host check still applies, so a
 * rebound name ("http://evil.example:8470" with Host evil.example:8470) is refused. */
bool api_guard_same_origin(const char *origin, const char *host);
/* Whether the name part of a Host header value ("name", "name:port", "[v6]:port") is
 * allowed. */
bool api_guard_host_ok(const struct api_guard *g, const char *host);

/* The token of an "Authorization: Bearer <token>" header, NULL when there is none
 * (no other scheme is accepted: gustd has no ambient credentials, such as cookies or
 * Basic auth, that a browser would attach to a cross-site request by itself). */
const char *api_bearer_token(const struct http_request *req);

#endif
