"""Fixtures for the Gust integration tests.

Every test gets real gustd processes from $GUST_BUILD (default build-asan), each on a free
loopback port with a fresh data dir and a unique --cgroup-parent (gust-it-<random>).
On teardown each daemon gets SIGTERM; the test then FAILS if gustd did not exit cleanly,
if any of its runs (killed ones included) printed an ASan/UBSan/LSan report, or if
cgroups, processes or mounts of its cgroup parent / data dir are left behind.

A missing prerequisite (binaries not built, busybox missing, not root) is a failure,
never a skip.

Another gustd (default flags, its own port and data dir) may run on the host while the
tests do: every check looks only at what the test's own daemons made — cgroups below
their cgroup parent, mounts and processes of their data dir, their egress table and
links (named by the tag of their cgroup parent, see gustlib.egress_tag) — and compares
host-wide settings (IPv4 forwarding, cgroup2 mount options) with their values from before.
"""
import os

import pytest

from gustlib import BUILD, Gust, make_rootfs


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


@pytest.fixture(scope="session")
def build_dir():
    missing = [p for p in ("gustd", "gust", "gust-init", "examples/echo/echo")
               if not os.access(os.path.join(BUILD, p), os.X_OK)]
    if missing:
        pytest.fail(f"not built in {BUILD}: {', '.join(missing)} (run `make asan` or set GUST_BUILD)")
    if os.geteuid() != 0:
        pytest.fail("the integration tests need root (namespaces, cgroups)")
    return BUILD


def _busybox_plus(tmp_path_factory, name, binary, dest):
    d = str(tmp_path_factory.mktemp(f"rootfs-{name}"))
    make_rootfs(d, {binary: dest})
    return d


@pytest.fixture(scope="session")
def echo_rootfs(build_dir, tmp_path_factory):
    """busybox rootfs + the static echo runner example at /usr/local/bin/gust-echo."""
    return _busybox_plus(tmp_path_factory, "echo", os.path.join(build_dir, "examples/echo/echo"),
                         "usr/local/bin/gust-echo")


@pytest.fixture(scope="session")
def hostile_rootfs(build_dir, tmp_path_factory):
    """busybox rootfs + the sandbox tests' hostile program at /usr/local/bin/hostile."""
    return _busybox_plus(tmp_path_factory, "hostile", os.path.join(build_dir, "tests/hostile"),
                         "usr/local/bin/hostile")


@pytest.fixture
def gust_factory(build_dir, tmp_path, request):
    """gust_factory(*extra_gustd_args, start=True) -> Gust. All daemons made here are
    stopped and checked at teardown."""
    made = []

    def make(*extra, start=True, name=None):
        g = Gust(tmp_path, extra, name=name or f"g{len(made)}")
        made.append(g)
        if start:
            g.start()
        return g

    yield make
    problems = []
    for g in made:
        for p in g.check_after_stop():
            problems.append(f"[{g.name} {g.cgparent}] {p}")
    if problems:
        pytest.fail("gustd teardown checks failed:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def gust(gust_factory):
    """A started gustd with default flags."""
    return gust_factory()


@pytest.fixture
def gust_echo(gust, echo_rootfs):
    """A started gustd with the echo rootfs registered as image "echo" (via `gust image add`)."""
    gust.add_image("echo", echo_rootfs)
    return gust



@pytest.fixture(scope="session", autouse=True)
def no_default_daemon():
    """SDK calls made in this process without an address go to $GUST_ADDR, else to the
    default 127.0.0.1:8470, where a gustd of the host's own may listen. $GUST_ADDR points
    at a port held here without listening instead, so such a call is refused rather than
    reaching that daemon. (Daemons and CLI runs get their own address: sanitizer_env.)"""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    old = os.environ.get("GUST_ADDR")
    os.environ["GUST_ADDR"] = "127.0.0.1:%d" % s.getsockname()[1]
    yield
    if old is None:
        os.environ.pop("GUST_ADDR", None)
    else:
        os.environ["GUST_ADDR"] = old
    s.close()


def _cgroup2_super_options():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if " - cgroup2 " in line:
                return line.split(" - ")[1].split()[2]
    return None


def _other_gustds():
    """pid -> command line of every gustd on the host. Called when none of this session's
    daemons runs, so each is another one (the user's, another test run's)."""
    found = {}
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != "gustd":
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                found[int(pid)] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError):
            continue
    return found


@pytest.fixture(scope="session", autouse=True)
def host_cgroup_options_restored():
    """gustd turns on the cgroup2 'favordynmods' option while it runs; after every daemon
    of the session has stopped — including ones killed with SIGKILL and restarted — the
    host's options must be exactly what they were before.

    The option is one for the whole host: another gustd may turn it on or off while the
    session runs. With other daemons around, the one thing the session's daemons answer
    for is not to turn it off under a gustd that had it on from before to after the
    session."""
    before, others_before = _cgroup2_super_options(), _other_gustds()
    # A gustd killed with SIGKILL before the session leaves the option on and its record
    # of what was there before; the session's last daemon then puts that back.
    stale = not others_before and os.path.exists("/run/gust-cgroup-tuning")
    yield
    after, others_after = _cgroup2_super_options(), _other_gustds()
    on = lambda opts: "favordynmods" in (opts or "").split(",")
    if not others_before and not others_after:
        restored = ",".join(o for o in (before or "").split(",") if o != "favordynmods")
        assert after == before or (stale and on(before) and after == restored), (
            f"cgroup2 mount options changed by the test session: {before!r} -> {after!r}")
        return
    throughout = {pid: cmd for pid, cmd in others_after.items() if others_before.get(pid) == cmd}
    assert not (on(before) and throughout and not on(after)), (
        f"cgroup2 mount options {before!r} -> {after!r} during the test session: favordynmods was turned "
        f"off under gustd {throughout}, which ran with it from before the session to its end (a gustd "
        f"that finds the option on must leave it on)")


def _remove_ext_host(ns, veth):
    import subprocess
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    subprocess.run(["ip", "link", "del", veth], capture_output=True)


def _make_ext_host():
    """Makes the namespace, link pair and addresses of netns_host with an <n> that no
    namespace, link or address on the host uses yet (another test run, another gustd),
    never touching what exists. Returns (ns, veth, host_ip, ext_ip)."""
    import random
    import subprocess
    sh = lambda *a: subprocess.run(a, check=True, capture_output=True)
    for _ in range(20):
        namespaces = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
        links = set(os.listdir("/sys/class/net"))
        addrs = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True).stdout
        free = [n for n in range(1, 251) if f"gust-it-ext{n}" not in namespaces and f"gxt{n}" not in links
                and f" 10.214.{n}." not in addrs]
        assert free, "no free 10.214.<n>.0/24 for the test's outside host"
        n = random.choice(free)
        ns, veth = f"gust-it-ext{n}", f"gxt{n}"
        if subprocess.run(["ip", "netns", "add", ns], capture_output=True).returncode != 0:
            continue  # taken since the listing: another n
        if subprocess.run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns],
                          capture_output=True).returncode != 0:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)   # ours; the link is not
            continue
        host_ip, ext_ip = f"10.214.{n}.1", f"10.214.{n}.2"
        try:
            sh("ip", "addr", "add", f"{host_ip}/24", "dev", veth)
            sh("ip", "link", "set", veth, "up")
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ext_ip}/24", "dev", "eth0")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        except subprocess.CalledProcessError:
            _remove_ext_host(ns, veth)
            raise
        return ns, veth, host_ip, ext_ip
    raise AssertionError("could not make a network namespace for the test's outside host")


@pytest.fixture
def netns_host():
    """A test "internet host": a network namespace made here, joined to the host by a veth
    pair (host end 10.214.<n>.1/24, namespace end 10.214.<n>.2/24), with a TCP server on
    10.214.<n>.2:8080 that answers every connection with "hello-from-ext". Yields (ip, port,
    host end's ip). Nothing leaves the machine: both ends of every packet are namespaces of
    this host. <n> is one nothing on the host uses, and only what was made here is removed."""
    import subprocess
    import time
    ns, veth, host_ip, ext_ip = _make_ext_host()
    server = subprocess.Popen(
        ["ip", "netns", "exec", ns, "python3", "-c",
         "import socket\n"
         "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
         f"s.bind(('{ext_ip}', 8080)); s.listen(16); s.settimeout(600)\n"
         "while True:\n"
         "    c, a = s.accept(); c.sendall(('hello-from-ext ' + a[0]).encode()); c.close()\n"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    try:
        yield ext_ip, 8080, host_ip
    finally:
        server.kill()
        server.wait()
        _remove_ext_host(ns, veth)


@pytest.fixture(scope="session")
def shared_gust(build_dir, tmp_path_factory):
    """One gustd for the Python SDK and example tests, so the debian_slim base they all
    use is built once per run. Checked like any other daemon when the session ends."""
    g = Gust(tmp_path_factory.mktemp("shared"), (), name="shared")
    g.start()
    yield g
    problems = g.check_after_stop()
    if problems:
        pytest.fail("shared gustd teardown checks failed:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture(autouse=True)
def sdk_token_for_the_shared_daemon(request, monkeypatch):
    """SDK calls made in this process send $GUST_TOKEN, which Gust.start sets to the
    token of the daemon started last; a test on the shared daemon (started once, long
    before) gets its token back here. A daemon the test starts itself still sets its
    own when it starts, after this."""
    if "shared_gust" in request.fixturenames:
        monkeypatch.setenv("GUST_TOKEN", request.getfixturevalue("shared_gust").admin_token)
    yield
