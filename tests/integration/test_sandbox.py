"""The sandbox as seen from inside a container."""
import os
import socket

from gustlib import fn_spec

SH = fn_spec("sb", "sh", ["sh", "-c", 'eval "$(cat)"'], timeout=30, resources={"cpu": 100, "memory": 64},
             scaling={"max_containers": 1, "scaledown_window": 60})


def run(gust, script, app="sb", fn="sh"):
    r = gust.call(app, fn, script.encode())
    assert r.status == 200, (script, r)
    return r.body.decode()


def test_pid1_is_gust_init(gust):
    gust.deploy(SH)
    cmd = run(gust, "cat /proc/1/cmdline | tr '\\0' ' '")
    assert "gust-init" in cmd, cmd
    # The user command is not PID 1, and the container sees only its own processes.
    pids = run(gust, "ls /proc | grep -E '^[0-9]+$' | wc -l")
    assert int(pids.strip()) < 10, pids
    assert run(gust, "echo $$").strip() != "1"


def test_hostname_and_network(gust):
    gust.deploy(SH)
    h = run(gust, "hostname").strip()
    assert h and h != socket.gethostname(), h
    dev = run(gust, "cat /proc/net/dev")
    ifaces = [line.split(":")[0].strip() for line in dev.splitlines()[2:] if ":" in line]
    assert ifaces == ["lo"], dev
    # No route out: connecting to the host's daemon port fails.
    out = run(gust, f"nc -w 1 127.0.0.1 {gust.port} </dev/null && echo connected || echo refused")
    assert "refused" in out, out


def test_rootfs_writes_do_not_leak(gust, echo_rootfs):
    gust.add_image("echo", echo_rootfs)
    spec = fn_spec("sb", "w", ["sh", "-c", 'eval "$(cat)"'], image="echo", timeout=30,
                   resources={"cpu": 100, "memory": 64})
    gust.deploy(spec)
    out = run(gust, "echo leaked > /etc/leak-test && echo x > /bin/new-file && cat /etc/leak-test && rm /bin/cat; echo rc=$?",
              "sb", "w")
    assert out == "leaked\nrc=0\n", out
    assert not os.path.exists(os.path.join(echo_rootfs, "etc/leak-test"))
    assert not os.path.exists(os.path.join(echo_rootfs, "bin/new-file"))
    assert os.path.lexists(os.path.join(echo_rootfs, "bin/cat"))
    # Same for the built-in busybox image.
    gust.deploy(SH)
    run(gust, "echo leaked > /etc/leak-test2 || true")
    for img in gust.get_json("/v1/images")["images"]:
        if img["name"] == "busybox":
            assert not os.path.exists(os.path.join(img["rootfs"], "etc/leak-test2"))
    # And the host's /usr is not writable from the python image.
    gust.deploy(fn_spec("sb", "py", ["sh", "-c", 'eval "$(cat)"'], image="python", timeout=30))
    out = run(gust, "touch /usr/gust-leak-test 2>&1; echo rc=$?", "sb", "py")
    assert not os.path.exists("/usr/gust-leak-test"), out


def test_tmp_works(gust):
    gust.deploy(SH)
    out = run(gust, "echo tmpdata > /tmp/x && cat /tmp/x && dd if=/dev/zero of=/tmp/big bs=1M count=8 2>/dev/null && ls -l /tmp/big")
    assert out.startswith("tmpdata\n") and "8388608" in out, out


def test_python_image(gust):
    gust.deploy(fn_spec("py", "two", ["python3", "-c", "print(1+1)"], image="python", timeout=60,
                        resources={"cpu": 250, "memory": 256}))
    r = gust.call("py", "two", b"")
    assert r.status == 200 and r.body == b"2\n", r
    gust.deploy(fn_spec("py", "sq", ["python3", "-c", "import sys; n = int(sys.stdin.read() or 0); print(n * n)"],
                        image="python", timeout=60, resources={"cpu": 250, "memory": 256}))
    assert gust.call_ok("py", "sq", b"12") == b"144\n"


def test_env_and_workdir(gust):
    gust.deploy(fn_spec("sb", "env", ["sh", "-c", "cat >/dev/null; echo $GREETING; pwd"], workdir="/tmp",
                        env={"GREETING": "hi there"}, timeout=30))
    assert gust.call_ok("sb", "env", b"") == b"hi there\n/tmp\n"
