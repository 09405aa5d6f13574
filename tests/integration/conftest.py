"""Fixtures for the Gust integration tests.

Every test gets real gustd processes from $GUST_BUILD (default build-asan), each on a free
loopback port with a fresh data dir and a unique --cgroup-parent (gust-it-<random>).
On teardown each daemon gets SIGTERM; the test then FAILS if gustd did not exit cleanly,
if any of its runs (killed ones included) printed an ASan/UBSan/LSan report, or if
cgroups, processes or mounts of its cgroup parent / data dir are left behind.

A missing prerequisite (binaries not built, busybox missing, not root) is a failure,
never a skip.
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



def _cgroup2_super_options():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if " - cgroup2 " in line:
                return line.split(" - ")[1].split()[2]
    return None


@pytest.fixture(scope="session", autouse=True)
def host_cgroup_options_restored():
    """gustd turns on the cgroup2 'favordynmods' option while it runs; after every daemon
    of the session has stopped — including ones killed with SIGKILL and restarted — the
    host's options must be exactly what they were before."""
    before = _cgroup2_super_options()
    yield
    after = _cgroup2_super_options()
    assert after == before, f"cgroup2 mount options changed by the test session: {before!r} -> {after!r}"


@pytest.fixture
def netns_host():
    """A test "internet host": a network namespace made here, joined to the host by a veth
    pair (host end 10.214.<n>.1/24, namespace end 10.214.<n>.2/24), with a TCP server on
    10.214.<n>.2:8080 that answers every connection with "hello-from-ext". Yields (ip, port).
    Nothing leaves the machine: both ends of every packet are namespaces of this host."""
    import random
    import subprocess
    import time
    n = random.randint(1, 250)
    ns, veth = f"gust-it-ext{n}", f"gxt{n}"
    host_ip, ext_ip = f"10.214.{n}.1", f"10.214.{n}.2"
    sh = lambda *a: subprocess.run(a, check=True, capture_output=True)
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    subprocess.run(["ip", "link", "del", veth], capture_output=True)
    sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    sh("ip", "addr", "add", f"{host_ip}/24", "dev", veth)
    sh("ip", "link", "set", veth, "up")
    sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ext_ip}/24", "dev", "eth0")
    sh("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
    sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
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
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", veth], capture_output=True)


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
