"""Calls from inside a function (docs/API.md "Calls from inside a function"): a
container reaches gustd's API only through the socket bound at /run/gust/api.sock,
with a token of its own (invoker of its workspace) that works while the container
lives and is refused once it ended; the SDK uses them unchanged (.remote, .map,
.spawn, Function.from_name, and Dict/Queue: a get blocked in one container is woken by a
put from another)."""
import http.client
import json
import os
import socket
import sys

import pytest

from gustlib import SDK_DIR, sdk_module, wait_until

MODULE = '''
import os
import socket

import gust
import gust.exception

app = gust.App("incall")


@app.function()
def square(x):
    return x * x


@app.function()
def fan(n):
    byname = gust.Function.from_name("incall", "square")
    call = square.spawn(n + 1)
    return [square.remote(n), list(square.map(range(n))), call.get(timeout=60), byname.remote(3),
            sorted(byname.map(range(3), order_outputs=False))]


@app.function(snapshot=True, env={"GUST_TOKEN": "set-by-the-user"})
def from_snapshot(n):
    return square.remote(n), os.environ.get("GUST_SNAPSHOT"), os.environ["GUST_TOKEN"] != "set-by-the-user"


@app.function(env={"GUST_TOKEN": "set-by-the-user", "GUST_ADDR": "127.0.0.1:1"})
def whoami():
    return os.environ.get("GUST_TOKEN"), os.environ.get("GUST_ADDR"), os.path.exists("/run/gust/api.sock")


@app.function()
def reach_tcp(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        return "connected"
    except OSError as e:
        return "refused: " + type(e).__name__


@app.function()
def call_other(app_name):
    try:
        return gust.Function.from_name(app_name, "square").remote(2)
    except gust.exception.NotFoundError as e:
        return "not found: " + str(e)
'''

OTHER = '''
import gust
import gust.exception

app = gust.App("incall-victim")


@app.function()
def square(x):
    return x * x
'''


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=30)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self._path)


def on_socket(g, method, path, token, body=None):
    c = UnixHTTP(os.path.join(g.data_dir, "api", "api.sock"))
    try:
        h = {"Authorization": "Bearer " + token} if token else {}
        if body is not None:
            h["Content-Type"] = "application/json"
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def test_the_socket_is_the_api_with_its_auth(shared_gust):
    g = shared_gust
    st = os.stat(os.path.join(g.data_dir, "api"))
    assert st.st_mode & 0o777 == 0o700 and st.st_uid == os.geteuid(), oct(st.st_mode)
    assert on_socket(g, "GET", "/v1/apps", None)[0] == 401
    assert on_socket(g, "GET", "/v1/apps", "gust_" + "x" * 69)[0] == 401
    status, body = on_socket(g, "GET", "/v1/apps", g.admin_token)
    assert status == 200 and "apps" in json.loads(body), body
    # The SDK speaks to it as to a TCP address (the token from $GUST_TOKEN).
    if SDK_DIR not in sys.path:
        sys.path.insert(0, SDK_DIR)
    from gust import _net
    sock = "unix:" + os.path.join(g.data_dir, "api", "api.sock")
    status, _, body = _net.request(sock, "GET", "/v1/apps")
    assert status == 200 and "apps" in json.loads(body), body
    with pytest.raises(ValueError, match="absolute"):
        _net.request("unix:api.sock", "GET", "/v1/apps")


def test_functions_call_functions_from_inside(shared_gust, tmp_path, monkeypatch):
    g = shared_gust
    # Another workspace's app, which the container's token must not reach.
    (tmp_path / "o").mkdir()
    (tmp_path / "m").mkdir()
    other = sdk_module(tmp_path / "o", "incall_other", OTHER)
    other.app.addr = g.addr
    monkeypatch.setenv("GUST_TOKEN", g.token_for("incall-b", "developer"))
    other.app.deploy(progress=None)
    monkeypatch.setenv("GUST_TOKEN", g.admin_token)

    mod = sdk_module(tmp_path / "m", "incall_mod", MODULE)
    mod.app.addr = g.addr
    mod.app.deploy(progress=None)
    assert mod.fan.remote(4) == [16, [0, 1, 4, 9], 25, 9, [0, 1, 4]]
    # A container forked from a snapshot template gets its own token when resumed.
    assert mod.from_snapshot.remote(5) == (25, "restored", True)

    # The container's own token and address, whatever the function's env says.
    token, addr, has_sock = mod.whoami.remote()
    assert addr == "unix:/run/gust/api.sock" and has_sock, (addr, has_sock)
    assert token.startswith("gust_") and token != "set-by-the-user"
    # Nowhere in the API's views: not a listed token, not in the containers.
    assert token not in g.http("GET", "/v1/tokens").text
    assert token not in g.http("GET", "/v1/containers").text
    tid = token[len("gust_"):len("gust_") + 16]
    assert on_socket(g, "DELETE", "/v1/tokens/" + tid, g.admin_token)[0] == 404
    # While its container lives it is an invoker of workspace default.
    assert on_socket(g, "GET", "/v1/functions/incall/square", token)[0] == 200
    assert on_socket(g, "POST", "/v1/apps/incall/stop", token)[0] == 403
    assert on_socket(g, "GET", "/v1/functions/incall-victim/square", token)[0] == 404
    assert mod.call_other.remote("incall-victim").startswith("not found"), mod.call_other.remote("incall-victim")
    # Network none: the TCP API is out of reach, the socket is not.
    port = int(g.addr.rsplit(":", 1)[1])
    assert mod.reach_tcp.remote(port).startswith("refused"), port

    # Once its container ended, the token is refused.
    g.http("POST", "/v1/apps/incall/stop")
    wait_until(lambda: not [c for c in g.get_json("/v1/containers")["containers"] if c["app"] == "incall"],
               60, msg="incall's containers gone")
    assert on_socket(g, "GET", "/v1/functions/incall/square", token)[0] == 401
    assert g.http("GET", "/v1/functions/incall/square", token=token).status == 401


KV = '''
import gust

app = gust.App("incall-kv")


@app.function(timeout=120)
def consumer(qname, dname):
    """Blocks on the queue until another container puts, then records what it got."""
    q = gust.Queue.from_name(qname)
    item = q.get(block=True, timeout=90)
    gust.Dict.from_name(dname)["got"] = item
    return item


@app.function()
def producer(qname, item):
    gust.Queue.from_name(qname).put(item)
    return "put"
'''


def test_dict_and_queue_from_inside_containers(shared_gust, tmp_path):
    """A get blocked in one container is woken by a put from another container; what it
    got lands in a Dict that the host reads."""
    g = shared_gust.use_for_sdk()
    mod = sdk_module(tmp_path, "incall_kv", KV)
    mod.app.addr = g.addr
    mod.app.deploy(progress=None)
    import gust
    gust.Queue.from_name("jobs-incall", create_if_missing=True, addr=g.addr).clear()
    d = gust.Dict.from_name("results-incall", create_if_missing=True, addr=g.addr)
    d.clear()
    waiting = mod.consumer.spawn("jobs-incall", "results-incall")
    # The consumer is running and its get waits on gustd (nothing was put yet).
    wait_until(lambda: g.get_json(f"/v1/calls/{waiting.object_id}/status")["status"] == "running", 60,
               msg="the consumer running")
    assert d.get("got") is None
    assert mod.producer.remote("jobs-incall", {"job": 7}) == "put"
    assert waiting.get(timeout=90) == {"job": 7}
    assert d["got"] == {"job": 7}
    g.http("POST", "/v1/apps/incall-kv/stop")
