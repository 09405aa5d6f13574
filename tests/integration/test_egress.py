"""Opt-in egress networking: a function with network = "egress" reaches an outside host
(a network namespace the test makes, see conftest.netns_host) through NAT, but not the
host itself nor other containers; a function without it has only loopback."""
import os
import re
import subprocess

from gustlib import fn_spec
from test_hostile import SH, run


with open("/proc/sys/net/ipv4/ip_forward") as _f:
    FORWARD_BEFORE = _f.read().strip()


def deploy(g, name, network, min_containers=0):
    g.deploy(fn_spec("net", name, SH, image="hostile", timeout=60, network=network,
                     resources={"cpu": 250, "memory": 64},
                     scaling={"min_containers": min_containers, "max_containers": 1, "scaledown_window": 60}))


def test_egress_reaches_outside_through_nat(gust, hostile_rootfs, netns_host):
    ext_ip, port, host_ip = netns_host
    gust.add_image("hostile", hostile_rootfs)
    deploy(gust, "out", "egress")
    deploy(gust, "none", "none")
    out = run(gust, f"hostile connect {ext_ip}:{port}; ip -4 addr show eth0 2>/dev/null || ifconfig eth0",
              app="net", fn="out")
    assert re.search(r"^connect ok$", out, re.M), out
    # The outside host saw the host's address on its link (masquerade), not the container's.
    m = re.search(r"read hello-from-ext (\S+)", out)
    assert m and m.group(1) == host_ip, out
    # Without egress: no route at all.
    out = run(gust, f"hostile connect {ext_ip}:{port}", app="net", fn="none")
    assert re.search(r"^connect ENETUNREACH$", out, re.M), out
    # The host's resolvers (when not on its loopback) come with egress, read-only.
    with open("/etc/resolv.conf") as f:
        host_resolv = f.read()
    servers = re.findall(r"^\s*nameserver\s+(\S+)", host_resolv, re.M)
    usable = servers and not [s for s in servers if s.startswith("127.") or s == "::1"]
    out = run(gust, "cat /etc/resolv.conf 2>/dev/null; echo x >> /etc/resolv.conf 2>/dev/null || echo ro",
              app="net", fn="out")
    if usable:
        assert out == host_resolv + "ro\n", out
    else:
        assert not out.startswith(host_resolv) or not host_resolv, out
    # While egress containers exist there is one gust table; after a stop nothing is left.
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    ours = [t for t in tables.split("\n") if "gust_" in t]
    assert len(ours) == 1, tables
    gust.stop()
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert ours[0] not in tables, tables
    assert not [n for n in os.listdir("/sys/class/net") if n.startswith("gv")], os.listdir("/sys/class/net")
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        assert f.read().strip() == FORWARD_BEFORE, "IPv4 forwarding not restored"


def test_egress_cannot_reach_host_or_other_containers(gust, hostile_rootfs, netns_host):
    ext_ip, port, host_ip = netns_host
    gust.add_image("hostile", hostile_rootfs)
    deploy(gust, "a", "egress", min_containers=1)
    deploy(gust, "b", "egress", min_containers=1)
    # a listens on its own address; b cannot connect to it.
    a_addr = re.search(r"inet (?:addr:)?(\d+\.\d+\.\d+\.\d+)", run(gust, "ifconfig eth0", app="net", fn="a")).group(1)
    gust.spawn("net", "a", b"nc -l -p 9000 -e echo from-a")
    out = run(gust, f"sleep 0.5; hostile connect {a_addr}:9000", app="net", fn="b")
    assert not re.search(r"^connect ok$", out, re.M), out
    # Host addresses (here the test's own veth end) are dropped too.
    out = run(gust, f"hostile connect {host_ip}:22", app="net", fn="b")
    assert not re.search(r"^connect (ok|ECONNREFUSED)$", out, re.M), out


def test_egress_cleaned_up_after_sigkill(gust, hostile_rootfs, netns_host):
    ext_ip, port, _ = netns_host
    gust.add_image("hostile", hostile_rootfs)
    deploy(gust, "out", "egress")
    out = run(gust, f"hostile connect {ext_ip}:{port}", app="net", fn="out")
    assert re.search(r"^connect ok$", out, re.M), out
    gust.kill9()
    # The table, the host ends of the veth pairs and forwarding outlive a SIGKILL...
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert "gust_" in tables, tables
    # ...until the next gustd on the same cgroup parent starts.
    gust.start()
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert "gust_" not in tables, tables
    assert not [n for n in os.listdir("/sys/class/net") if n.startswith("gv")]
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        assert f.read().strip() == FORWARD_BEFORE
    assert not os.path.exists("/run/gust-egress-ip-forward")


def test_two_daemons_share_the_subnet(gust_factory, hostile_rootfs, netns_host):
    """Two gustd on one host with the default subnet: the second skips the /30s the
    first has on its interfaces, and both reach the outside."""
    ext_ip, port, _ = netns_host
    daemons = [gust_factory(name="e1"), gust_factory(name="e2")]
    for g in daemons:
        g.add_image("hostile", hostile_rootfs)
        deploy(g, "out", "egress", min_containers=1)
    for g in daemons:
        out = run(g, f"hostile connect {ext_ip}:{port}", app="net", fn="out")
        assert re.search(r"^connect ok$", out, re.M), out
