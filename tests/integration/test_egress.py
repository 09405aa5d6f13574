"""Opt-in egress networking: a function with network = "egress" reaches an outside host
(a network namespace the test makes, see conftest.netns_host) through NAT, but not the
host itself nor other containers; a function without it has only loopback.

The outside host sits on a private address (10.214.<n>.2), which egress drops by
default: these tests start gustd with --egress-allow-private, except the one that checks
the default (test_egress_drops_private_ranges_by_default).

Another gustd may run on the host with egress of its own (its gust_* table, gv* links,
forwarding turned on): the checks look only at this test's daemon's table and links
(Gust.egress_table, Gust.veth_prefix), and at forwarding as the daemons share it
(gustlib.assert_forwarding_restored)."""
import re
import subprocess
import time

import pytest
from conftest import _make_ext_host, _remove_ext_host
from gustlib import assert_forwarding_restored, fn_spec, forwarding_state, nft_tables
from test_hostile import SH, run


def deploy(g, name, network, min_containers=0):
    """Adds function name to app "net" on g: a deploy is the app's whole set of
    functions, so the ones deployed before on this daemon go with it (unchanged, they
    keep their version and containers)."""
    fns = g.__dict__.setdefault("net_functions", {})
    fns[name] = fn_spec("net", name, SH, image="hostile", timeout=60, network=network,
                        resources={"cpu": 250, "memory": 64},
                        scaling={"min_containers": min_containers, "max_containers": 1,
                                 "scaledown_window": 60})["functions"][0]
    g.deploy({"app": "net", "functions": list(fns.values())})


ALLOW_PRIVATE = "--egress-allow-private"


def test_egress_reaches_outside_through_nat(gust_factory, hostile_rootfs, netns_host):
    gust = gust_factory(ALLOW_PRIVATE)
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


def test_egress_cannot_reach_host_or_other_containers(gust_factory, hostile_rootfs, netns_host):
    gust = gust_factory(ALLOW_PRIVATE)
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


def test_egress_cleaned_up_after_sigkill(gust_factory, hostile_rootfs, netns_host):
    gust = gust_factory(ALLOW_PRIVATE)
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
    daemons = [gust_factory(ALLOW_PRIVATE, name="e1"), gust_factory(ALLOW_PRIVATE, name="e2")]
    for g in daemons:
        g.add_image("hostile", hostile_rootfs)
        deploy(g, "out", "egress", min_containers=1)
    for g in daemons:
        out = run(g, f"hostile connect {ext_ip}:{port}", app="net", fn="out")
        assert re.search(r"^connect ok$", out, re.M), out
    # Each has a table of its own.
    assert daemons[0].egress_table != daemons[1].egress_table
    assert {g.egress_table for g in daemons} <= set(nft_tables()), nft_tables()


@pytest.fixture
def ranged_host():
    """An outside host (a network namespace made here, as netns_host) answering on port
    8080 of three addresses, each routed from the host through its link: its private
    10.214.<n>.2, a link-local 169.254.214.<n> (the range of cloud metadata services;
    not 169.254.169.254 itself, so the host's own route to a real one is never touched)
    and 198.51.100.<n> (TEST-NET-2, standing for a public address). Nothing leaves the
    machine. Yields {"private", "link_local", "public"} -> address."""
    ns, veth, host_ip, ext_ip = _make_ext_host()
    n = ext_ip.split(".")[2]
    extra = {"link_local": f"169.254.214.{n}", "public": f"198.51.100.{n}"}
    routes = []
    try:
        for ip in extra.values():
            subprocess.run(["ip", "netns", "exec", ns, "ip", "addr", "add", f"{ip}/32", "dev", "eth0"], check=True,
                           capture_output=True)
            subprocess.run(["ip", "route", "add", f"{ip}/32", "via", ext_ip, "dev", veth], check=True,
                           capture_output=True)
            routes.append(ip)
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns, "python3", "-c",
             "import socket\n"
             "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
             "s.bind(('0.0.0.0', 8080)); s.listen(16); s.settimeout(600)\n"
             "while True:\n"
             "    c, a = s.accept(); c.sendall(b'hello-from-ext'); c.close()\n"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        try:
            yield {"private": ext_ip, **extra}
        finally:
            server.kill()
            server.wait()
    finally:
        for ip in routes:
            subprocess.run(["ip", "route", "del", f"{ip}/32"], capture_output=True)
        _remove_ext_host(ns, veth)


def test_egress_drops_private_ranges_by_default(gust_factory, hostile_rootfs, ranged_host):
    """By default an egress container reaches a public address but not private or
    link-local ones (cloud metadata); --egress-allow-private lets it."""
    strict = gust_factory(name="strict")
    strict.add_image("hostile", hostile_rootfs)
    deploy(strict, "out", "egress")
    out = run(strict, "; ".join(f"hostile connect {ranged_host[k]}:8080" for k in ("public", "private", "link_local")),
              app="net", fn="out")
    results = re.findall(r"^connect (\S+)$", out, re.M)
    assert len(results) == 3, out
    assert results[0] == "ok", out                       # public
    assert results[1] not in ("ok", "ECONNREFUSED"), out  # private: dropped, no answer at all
    assert results[2] not in ("ok", "ECONNREFUSED"), out  # link-local: dropped
    # The host's resolvers stay reachable on port 53 (an accept rule before the drop).
    table = subprocess.run(["nft", "list", "table", *strict.egress_table.split()], capture_output=True, text=True).stdout
    assert "169.254.0.0/16" in table and "10.0.0.0/8" in table, table
    with open("/etc/resolv.conf") as f:
        for ns in re.findall(r"^\s*nameserver\s+(\d+\.\d+\.\d+\.\d+)", f.read(), re.M):
            assert f"ip daddr {ns} udp dport 53 accept" in table, table
    strict.stop()

    loose = gust_factory(ALLOW_PRIVATE, name="loose")
    loose.add_image("hostile", hostile_rootfs)
    deploy(loose, "out", "egress")
    out = run(loose, f"hostile connect {ranged_host['private']}:8080; hostile connect {ranged_host['link_local']}:8080",
              app="net", fn="out")
    assert re.findall(r"^connect (\S+)$", out, re.M) == ["ok", "ok"], out
