/* Opt-in egress networking for containers (function spec `network = "egress"`).
 *
 * Each egress container gets a veth pair: the host end "gv<tag>-<slot>" and the
 * container's "eth0", a /30 of the worker's subnet each (host .1, container .2 of
 * the /30), default route via the host end. One nftables table per worker
 * ("inet gust_<tag>") masquerades their traffic out of the host, drops traffic
 * between any two gust containers and drops what containers send to the host itself
 * (gustd's API and every other host service). IPv4 forwarding is switched on while
 * the table exists and put back as it was when the worker stops.
 * <tag> is a hash of the worker's cgroup parent, so two daemons on one host do not
 * collide.
 */
#ifndef GUST_WORKER_EGRESS_H
#define GUST_WORKER_EGRESS_H

#include "base/error.h"
#include "runtime/sandbox.h"

struct egress;

#define EGRESS_DEFAULT_SUBNET "10.213.0.0/16"

/* Installs the nftables table and turns forwarding on. subnet: an IPv4 /16 or
 * larger ("a.b.c.d/n", n <= 24); NULL = EGRESS_DEFAULT_SUBNET. */
int egress_new(const char *worker_tag, const char *subnet, struct egress **out, struct gerr *err);
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
