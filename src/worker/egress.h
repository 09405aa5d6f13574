/* Opt-in egress networking for containers (function spec `network = "egress"`).
 *
 * Each egress container gets a veth pair: the host end "gv<tag>-<slot>" and the
 * container's "eth0", a /30 of the worker's subnet each (host .1, container .2 of
 * the /30), default route via the host end. One nftables table per worker
 * ("inet gust_<tag>") masquerades their traffic out of the host, drops traffic
 * between any two gust containers and drops what containers send to the host itself
 * (gustd's API and every other host service). Unless allowed, it also drops what
 * containers send to private, link-local (cloud metadata at 169.254.169.254), shared
 * (100.64/10), loopback, multicast and reserved IPv4 ranges: the networks around the
 * host are not the internet, and a function should not reach them by default. The
 * host's nameservers stay reachable on port 53 (containers use its resolv.conf).
 * IPv4 forwarding is switched on while
 * the table exists and put back as it was when the worker stops.
 * <tag> is a hash of the worker's cgroup parent, so two daemons on one host do not
 * collide.
 */
#ifndef GUST_WORKER_EGRESS_H
#define GUST_WORKER_EGRESS_H

#include <stdbool.h>

#include "base/error.h"
#include "runtime/sandbox.h"

struct egress;

#define EGRESS_DEFAULT_SUBNET "10.213.0.0/16"

/* Ranges containers may not reach unless allow_private (docs/SECURITY.md says why). */
#define EGRESS_PRIVATE_RANGES                                                                                  \
    "0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10, 127.0.0.0/8, 169.254.0.0/16, 172.16.0.0/12, 192.168.0.0/16, "      \
    "224.0.0.0/4, 240.0.0.0/4"

/* Installs the nftables table and turns forwarding on. subnet: an IPv4 /16 or
 * larger ("a.b.c.d/n", n <= 24); NULL = EGRESS_DEFAULT_SUBNET. Without
 * allow_private, EGRESS_PRIVATE_RANGES are dropped, except port 53 of the IPv4
 * nameservers resolv_conf names. */
int egress_new(const char *worker_tag, const char *subnet, bool allow_private, const char *resolv_conf,
               struct egress **out, struct gerr *err);
/* Takes a free /30 for a container. */
int egress_acquire(struct egress *e, struct sandbox_egress *out, int *slot, struct gerr *err);
void egress_release(struct egress *e, int slot);
/* Removes the table and restores forwarding. NULL is fine. */
void egress_free(struct egress *e);
/* At daemon start: removes a table and host links left by a crashed daemon. */
void egress_cleanup_stale(const char *worker_tag);
/* Validates a subnet string as egress_new would. */
int egress_parse_subnet(const char *subnet, uint32_t *base, int *prefix, struct gerr *err);

#endif
