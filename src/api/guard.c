/* The Origin and Host checks of api/guard.h. */
#include "api/guard.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

bool api_guard_host_ok(const struct api_guard *g, const char *host)
{
    char name[256];
    const char *end;
    if (host[0] == '[') {
        /* "[v6]" or "[v6]:port": an IPv6 literal. */
        end = strchr(host, ']');
        if (!end || (size_t)(end - host - 1) >= sizeof name)
            return false;
        memcpy(name, host + 1, (size_t)(end - host - 1));
        name[end - host - 1] = '\0';
        struct in6_addr a6;
        return inet_pton(AF_INET6, name, &a6) == 1 && (end[1] == '\0' || end[1] == ':');
    }
    end = strchr(host, ':');
    size_t n = end ? (size_t)(end - host) : strlen(host);
    if (n == 0 || n >= sizeof name)
        return false;
    memcpy(name, host, n);
    name[n] = '\0';
    struct in_addr a4;
    if (inet_pton(AF_INET, name, &a4) == 1 || !strcasecmp(name, "localhost"))
        return true;
    for (size_t i = 0; i < g->nhosts; i++)
        if (!strcasecmp(name, g->hosts[i]))
            return true;
    return false;
}

bool api_guard_same_origin(const char *origin, const char *host)
{
    if (!host || !*host)
        return false;
    if (!strncasecmp(origin, "http://", 7))
        origin += 7;
    else if (!strncasecmp(origin, "https://", 8))
        origin += 8;
    else
        return false;
    return !strcasecmp(origin, host);
}

int api_guard_check(const struct api_guard *g, const struct http_request *req, const char **code, char *why,
                    size_t why_len)
{
    const char *origin = http_request_header(req, "Origin");
    if (origin) {
        for (size_t i = 0; i < g->norigins; i++)
            if (!strcasecmp(origin, g->origins[i]))
                goto host;
        if (api_guard_same_origin(origin, http_request_header(req, "Host")))
            goto host;
        *code = "origin_not_allowed";
        snprintf(why, why_len,
                 "requests from a web page (Origin %.200s) are refused; start gustd with --allow-origin %.200s to "
                 "allow that origin",
                 origin, origin);
        return 403;
    }
host:;
    const char *host = http_request_header(req, "Host");
    if (host && !api_guard_host_ok(g, host)) {
        *code = "host_not_allowed";
        snprintf(why, why_len,
                 "Host %.200s does not name this gustd (an IP address, localhost, or a name given with --allow-host "
                 "is needed; refused to stop DNS rebinding)",
                 host);
        return 403;
    }
    return 0;
}

const char *api_bearer_token(const struct http_request *req)
{
    const char *h = http_request_header(req, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7))
        return NULL;
    h += 7;
    while (*h == ' ')
        h++;
    return *h ? h : NULL;
}
