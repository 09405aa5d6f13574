/* Minimal rtnetlink client for the sandbox's opt-in egress network: a veth pair
 * between the host and a container's network namespace, addresses, routes.
 * Addresses are IPv4 in host byte order. Every call opens its own socket in the
 * caller's current network namespace and waits for the kernel's acknowledgement. */
#ifndef GUST_RUNTIME_NETLINK_H
#define GUST_RUNTIME_NETLINK_H

#include <stdint.h>
#include <sys/types.h>

#include "base/error.h"

/* Creates veth host_ifname <-> "eth0" with the eth0 end in the network namespace of
 * process pid, gives the host end host_addr/prefix and brings it up. */
int netlink_veth_create(const char *host_ifname, uint32_t host_addr, int prefix, pid_t pid,
                        struct gerr *err);

/* In the caller's namespace: eth0 gets addr/prefix and comes up; default route via gw. */
int netlink_config_eth0(uint32_t addr, int prefix, uint32_t gw, struct gerr *err);

/* Deletes a link by name; a missing link is not an error. */
int netlink_link_delete(const char *ifname, struct gerr *err);

#endif
