/* rtnetlink requests (see runtime/netlink.h). Messages are built in a fixed buffer
 * with nested attributes; replies are only acknowledgements. */
#include "runtime/netlink.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/cleanup.h"

#define NL_BUF 1024

struct nl_msg {
    union {
        struct nlmsghdr hdr;
        char raw[NL_BUF];
    } u;
    bool overflow;
};

static void *nl_tail(struct nl_msg *m)
{
    return m->u.raw + NLMSG_ALIGN(m->u.hdr.nlmsg_len);
}

static void nl_init(struct nl_msg *m, uint16_t type, uint16_t flags, const void *body, size_t len)
{
    memset(m, 0, sizeof *m);
    m->u.hdr.nlmsg_type = type;
    m->u.hdr.nlmsg_flags = (uint16_t)(NLM_F_REQUEST | NLM_F_ACK | flags);
    m->u.hdr.nlmsg_seq = 1;
    m->u.hdr.nlmsg_len = (uint32_t)NLMSG_LENGTH(len);
    memcpy(NLMSG_DATA(&m->u.hdr), body, len);
}

static struct rtattr *nl_attr(struct nl_msg *m, uint16_t type, const void *data, size_t len)
{
    size_t need = NLMSG_ALIGN(m->u.hdr.nlmsg_len) + RTA_SPACE(len);
    if (need > sizeof m->u.raw) {
        m->overflow = true;
        return NULL;
    }
    struct rtattr *a = nl_tail(m);
    a->rta_type = type;
    a->rta_len = (unsigned short)RTA_LENGTH(len);
    if (len)
        memcpy(RTA_DATA(a), data, len);
    m->u.hdr.nlmsg_len = (uint32_t)need;
    return a;
}

/* Closes a nested attribute opened with nl_attr(m, type, NULL, 0). */
static void nl_nest_end(struct nl_msg *m, struct rtattr *nest)
{
    if (nest)
        nest->rta_len = (unsigned short)((char *)nl_tail(m) - (char *)nest);
}

static int nl_send(struct nl_msg *m, const char *what, struct gerr *err)
{
    if (m->overflow)
        return gerr_set(err, E2BIG, "netlink %s: message too large", what);
    AUTO_FD int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0)
        return gerr_sys(err, errno, "netlink socket");
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    if (sendto(fd, m->u.raw, m->u.hdr.nlmsg_len, 0, (struct sockaddr *)&sa, sizeof sa) < 0)
        return gerr_sys(err, errno, "netlink %s: send", what);
    char reply[NL_BUF];
    for (;;) {
        ssize_t n = recv(fd, reply, sizeof reply, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return gerr_sys(err, errno, "netlink %s: receive", what);
        }
        for (struct nlmsghdr *h = (struct nlmsghdr *)reply; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type != NLMSG_ERROR)
                continue;
            const struct nlmsgerr *e = NLMSG_DATA(h);
            if (e->error == 0)
                return 0;
            return gerr_sys(err, -e->error, "netlink %s", what);
        }
    }
}

static int link_up(int ifindex, const char *name, struct gerr *err)
{
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = ifindex, .ifi_flags = IFF_UP,
                            .ifi_change = IFF_UP};
    struct nl_msg m;
    nl_init(&m, RTM_NEWLINK, 0, &ifi, sizeof ifi);
    char what[48];
    snprintf(what, sizeof what, "bring %s up", name);
    return nl_send(&m, what, err);
}

static int addr_add(int ifindex, uint32_t addr, int prefix, const char *name, struct gerr *err)
{
    struct ifaddrmsg ifa = {.ifa_family = AF_INET, .ifa_prefixlen = (unsigned char)prefix,
                            .ifa_index = (unsigned)ifindex};
    struct nl_msg m;
    nl_init(&m, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &ifa, sizeof ifa);
    uint32_t be = htonl(addr);
    nl_attr(&m, IFA_LOCAL, &be, 4);
    nl_attr(&m, IFA_ADDRESS, &be, 4);
    char what[48];
    snprintf(what, sizeof what, "address for %s", name);
    return nl_send(&m, what, err);
}

int netlink_veth_create(const char *host_ifname, uint32_t host_addr, int prefix, pid_t pid,
                        struct gerr *err)
{
    if (!host_ifname || !*host_ifname || strlen(host_ifname) >= IFNAMSIZ)
        return gerr_set(err, EINVAL, "bad interface name \"%s\"", host_ifname ? host_ifname : "");
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
    struct nl_msg m;
    nl_init(&m, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof ifi);
    nl_attr(&m, IFLA_IFNAME, host_ifname, strlen(host_ifname) + 1);
    struct rtattr *info = nl_attr(&m, IFLA_LINKINFO, NULL, 0);
    nl_attr(&m, IFLA_INFO_KIND, "veth", 5);
    struct rtattr *data = nl_attr(&m, IFLA_INFO_DATA, NULL, 0);
    struct rtattr *peer = nl_attr(&m, VETH_INFO_PEER, NULL, 0);
    /* The peer's body starts with its own ifinfomsg. */
    struct ifinfomsg pifi = {.ifi_family = AF_UNSPEC};
    if (!m.overflow && NLMSG_ALIGN(m.u.hdr.nlmsg_len) + sizeof pifi <= sizeof m.u.raw) {
        memcpy(nl_tail(&m), &pifi, sizeof pifi);
        m.u.hdr.nlmsg_len = (uint32_t)(NLMSG_ALIGN(m.u.hdr.nlmsg_len) + sizeof pifi);
    } else {
        m.overflow = true;
    }
    nl_attr(&m, IFLA_IFNAME, "eth0", 5);
    uint32_t p = (uint32_t)pid;
    nl_attr(&m, IFLA_NET_NS_PID, &p, 4);
    nl_nest_end(&m, peer);
    nl_nest_end(&m, data);
    nl_nest_end(&m, info);
    char what[64];
    snprintf(what, sizeof what, "create veth %s", host_ifname);
    int r = nl_send(&m, what, err);
    if (r < 0)
        return r;
    int idx = (int)if_nametoindex(host_ifname);
    if (idx <= 0) {
        r = gerr_sys(err, errno, "find interface %s", host_ifname);
    } else {
        r = addr_add(idx, host_addr, prefix, host_ifname, err);
        if (r == 0)
            r = link_up(idx, host_ifname, err);
    }
    if (r < 0)
        netlink_link_delete(host_ifname, NULL);
    return r;
}

int netlink_config_eth0(uint32_t addr, int prefix, uint32_t gw, struct gerr *err)
{
    int idx = (int)if_nametoindex("eth0");
    if (idx <= 0)
        return gerr_sys(err, errno, "find eth0 in the container");
    int r = addr_add(idx, addr, prefix, "eth0", err);
    if (r == 0)
        r = link_up(idx, "eth0", err);
    if (r < 0)
        return r;
    struct rtmsg rt = {.rtm_family = AF_INET, .rtm_table = RT_TABLE_MAIN, .rtm_protocol = RTPROT_BOOT,
                       .rtm_scope = RT_SCOPE_UNIVERSE, .rtm_type = RTN_UNICAST};
    struct nl_msg m;
    nl_init(&m, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &rt, sizeof rt);
    uint32_t be = htonl(gw);
    nl_attr(&m, RTA_GATEWAY, &be, 4);
    uint32_t oif = (uint32_t)idx;
    nl_attr(&m, RTA_OIF, &oif, 4);
    return nl_send(&m, "default route in the container", err);
}

int netlink_link_delete(const char *ifname, struct gerr *err)
{
    int idx = (int)if_nametoindex(ifname);
    if (idx <= 0)
        return 0;
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = idx};
    struct nl_msg m;
    nl_init(&m, RTM_DELLINK, 0, &ifi, sizeof ifi);
    int r = nl_send(&m, "delete link", err);
    return r == -ENODEV ? 0 : r;
}
