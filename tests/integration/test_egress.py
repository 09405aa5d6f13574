"""Opt-in egress networking: a function with network = "egress" reaches an outside host
(a network namespace the test makes, see conftest.netns_host) through NAT, but not the
host itself nor other containers; a function without it has only loopback.

Another gustd may run on the host with egress of its own (its gust_* table, gv* links,
forwarding turned on): the checks look only at this test's daemon's table and links
(Gust.egress_table, Gust.veth_prefix), and at forwarding as the daemons share it
(gustlib.assert_forwarding_restored)."""
import re

from gustlib import assert_forwarding_restored, fn_spec, forwarding_state, nft_tables
from test_hostile import SH, run


def deploy(g, name, network, min_containers=0):
    g.deploy(fn_spec("net", name, SH, image="hostile", timeout=60, network=network,
                     resources={"cpu": 250, "memory": 64},
                     scaling={"min_containers": min_containers, "max_containers": 1, "scaledown_window": 60}))


def test_egress_reaches_outside_through_nat(gust, hostile_rootfs, netns_host):
    ext_ip, port, host_ip = netns_host
    forwarding_before = forwarding_state()
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
    # While egress containers exist the daemon has its table and a host link per
    # container; after a stop neither is left, and forwarding is as it was.
    assert gust.egress_table in nft_tables(), nft_tables()
    assert gust.host_veths(), f"no {gust.veth_prefix}* link while an egress container runs"
    gust.stop()
    assert gust.egress_table not in nft_tables(), nft_tables()
    assert not gust.host_veths(), gust.host_veths()
    assert_forwarding_restored(forwarding_before)


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
    forwarding_before = forwarding_state()
    gust.add_image("hostile", hostile_rootfs)
    deploy(gust, "out", "egress")
    out = run(gust, f"hostile connect {ext_ip}:{port}", app="net", fn="out")
    assert re.search(r"^connect ok$", out, re.M), out
    gust.kill9()
    # The table and forwarding (with its record) outlive a SIGKILL...
    assert gust.egress_table in nft_tables(), nft_tables()
    # ...until the next gustd on the same cgroup parent starts.
    gust.start()
    assert gust.egress_table not in nft_tables(), nft_tables()
    assert not gust.host_veths(), gust.host_veths()
    assert_forwarding_restored(forwarding_before)


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
    # Each has a table of its own.
    assert daemons[0].egress_table != daemons[1].egress_table
    assert {g.egress_table for g in daemons} <= set(nft_tables()), nft_tables()
