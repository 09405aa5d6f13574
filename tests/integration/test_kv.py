"""gust.Dict and gust.Queue from the host (docs/API.md "Dicts", "Queues"): every method
of the SDK against a real gustd, Modal's semantics (KeyError, queue.Empty, queue.Full,
skip_if_exists), Modal's limits as clear errors, a blocked get woken by another
client's put, durability across a restart, and workspaces kept apart."""
import json
import os
import queue
import subprocess
import sys
import threading
import time

import pytest

from gustlib import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "sdk", "python"))

import gust as gsdk  # noqa: E402 - after the SDK's path
from gust.exception import GustError, InvalidError, NotFoundError  # noqa: E402


def test_dict_every_method(gust):
    a = gust.addr
    with pytest.raises(NotFoundError):
        sdk_dict("nope", a).len()
    d = sdk_dict("cache", a, create=True)
    assert d.len() == 0 and len(d) == 0
    d["a"] = 1
    d[("t", 2)] = {"x": [1, 2]}
    assert d["a"] == 1 and d[("t", 2)] == {"x": [1, 2]}
    assert d.get("missing") is None and d.get("missing", 7) == 7
    with pytest.raises(KeyError):
        d["missing"]
    assert d.contains("a") and "a" in d and "zz" not in d
    assert d.put("a", 2, skip_if_exists=True) is False and d["a"] == 1
    assert d.put("a", 3) is True and d["a"] == 3
    assert d.put("new", 4, skip_if_exists=True) is True and d["new"] == 4
    d.update({"u1": 10}, u2=20)
    d.update([("u3", 30)])
    assert d.len() == 6
    assert d.pop("u1") == 10
    with pytest.raises(KeyError):
        d.pop("u1")
    del d["u2"]
    with pytest.raises(KeyError):
        del d["u2"]
    items = dict(d.items())
    assert items == {"a": 3, ("t", 2): {"x": [1, 2]}, "new": 4, "u3": 30}, items
    assert sorted(map(repr, d.keys())) == sorted(map(repr, items.keys()))
    assert sorted(d.values(), key=repr) == sorted(items.values(), key=repr)
    # A second reference (another lookup) sees the same dict; from_name without
    # create_if_missing finds it now.
    assert sdk_dict("cache", a)["new"] == 4
    names = {x["name"]: x["len"] for x in gsdk.Dict.list(addr=a)}
    assert names == {"cache": 4}, names
    d.clear()
    assert d.len() == 0 and list(d.items()) == []
    gsdk.Dict.delete("cache", addr=a)
    with pytest.raises(NotFoundError):
        d.get("a")


def test_dict_items_page_through_many_entries(gust):
    d = sdk_dict("big", gust.addr, create=True)
    # More entries than one page (CTL_KV_PAGE_MAX 1000).
    d.update({i: i * i for i in range(2500)})
    assert d.len() == 2500
    assert dict(d.items()) == {i: i * i for i in range(2500)}


def test_queue_every_method(gust):
    a = gust.addr
    with pytest.raises(NotFoundError):
        gsdk.Queue.from_name("nope", addr=a).put(1)
    q = gsdk.Queue.from_name("jobs", create_if_missing=True, addr=a)
    assert q.len() == 0
    assert q.get(block=False) is None
    assert q.get_many(5, block=False) == []
    q.put(1)
    q.put_many([2, {"three": 3}, [4]])
    assert q.len() == 4 and len(q) == 4
    assert list(q.iterate()) == [1, 2, {"three": 3}, [4]]
    assert q.len() == 4  # iterate takes nothing
    assert q.get() == 1
    assert q.get_many(2) == [2, {"three": 3}]
    assert q.get_many(10, timeout=5) == [[4]]
    # Partitions are separate queues; len(total=True) counts them all.
    q.put_many(["p1", "p2"], partition="p")
    q.put("default")
    assert q.len(partition="p") == 2 and q.len() == 1 and q.len(total=True) == 3
    assert q.get(partition="p") == "p1"
    q.clear(partition="p")
    assert q.len(partition="p") == 0 and q.len() == 1
    q.put("x", partition="other")
    q.clear(all=True)
    assert q.len(total=True) == 0
    assert [x["name"] for x in gsdk.Queue.list(addr=a)] == ["jobs"]
    gsdk.Queue.delete("jobs", addr=a)
    with pytest.raises(NotFoundError):
        q.len()


def test_queue_timeout_raises_empty_as_modal(gust):
    q = gsdk.Queue.from_name("empty", create_if_missing=True, addr=gust.addr)
    with pytest.raises(queue.Empty):
        q.get(timeout=0.2)
    with pytest.raises(queue.Empty):
        q.get_many(3, timeout=0.2)
    q.put(5, partition="p")
    with pytest.raises(queue.Empty):
        q.get(timeout=0.2)  # the default partition is still empty
    assert q.get(timeout=0.2, partition="p") == 5


def test_blocked_get_is_woken_by_another_clients_put(gust):
    """The get waits in gustd (a waiter on the partition); a put from another process
    answers it. Its timeout is far longer than the join, so a result means the put
    woke it."""
    a = gust.addr
    q = gsdk.Queue.from_name("wake", create_if_missing=True, addr=a)
    assert q.len() == 0  # created (from_name is lazy, as Modal's)
    got = {}

    def getter(key, partition):
        got[key] = gsdk.Queue.from_name("wake", addr=a).get_many(10, timeout=45, partition=partition)

    threads = [threading.Thread(target=getter, args=(k, p)) for k, p in (("d", None), ("p", "part"))]
    for t in threads:
        t.start()
    # Both are waiting (nothing was there to take).
    time.sleep(0.5)
    assert all(t.is_alive() for t in threads) and q.len(total=True) == 0
    env = dict(os.environ, GUST_ADDR=a, PYTHONPATH=os.path.join(ROOT, "sdk", "python"))
    code = ("import gust; q = gust.Queue.from_name('wake'); q.put_many(['hello', 'world']); "
            "q.put('in part', partition='part')")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    for t in threads:
        t.join(40)
        assert not t.is_alive()
    assert got == {"d": ["hello", "world"], "p": ["in part"]}, got
    assert q.len(total=True) == 0


def test_limits_are_clear_errors(gust):
    a = gust.addr
    big = b"x" * (1 << 20)
    d = sdk_dict("lim", a, create=True)
    with pytest.raises(GustError, match="1 MiB"):
        d["k"] = big
    q = gsdk.Queue.from_name("lim", create_if_missing=True, addr=a)
    with pytest.raises(GustError, match="1 MiB"):
        q.put(big)
    with pytest.raises(InvalidError, match="partition"):
        q.put(1, partition="p" * 65)
    with pytest.raises(InvalidError, match="partition"):
        q.put(1, partition="")
    with pytest.raises(InvalidError, match="name"):
        gsdk.Queue.from_name("bad name!", create_if_missing=True, addr=a).len()
    # 5,000 items per partition: the 5,001st is refused (queue.Full), nothing of a
    # put_many that does not fit is kept.
    q.put_many(list(range(4999)))
    with pytest.raises(queue.Full):
        q.put_many([1, 2], block=False)
    assert q.len() == 4999
    q.put(4999)
    with pytest.raises(queue.Full):
        q.put("over", timeout=0.2)
    q.put("elsewhere", partition="other")  # another partition has its own room
    assert q.get() == 0
    q.put("now fits", block=False)
    # gustd checks what the SDK checks: raw requests get the field named.
    r = gust.http("POST", "/v1/queues/lim/put", json.dumps({"values": ["not base64!"]}),
                  {"Content-Type": "application/json"})
    assert r.status == 400 and r.error()["field"] == "values[0]", r
    r = gust.http("POST", "/v1/dicts/lim/put", json.dumps({"key": "", "value": "", "extra": 1}),
                  {"Content-Type": "application/json"})
    assert r.status == 400 and r.error()["field"] == "extra", r
    r = gust.http("POST", "/v1/queues/lim/get", json.dumps({"timeout": 51}), {"Content-Type": "application/json"})
    assert r.status == 400 and r.error()["field"] == "timeout", r
    r = gust.http("POST", "/v1/queues/lim/nosuchop", b"{}", {"Content-Type": "application/json"})
    assert r.status == 404, r


def test_data_survives_a_restart(gust):
    a = gust.addr
    d = sdk_dict("durable", a, create=True)
    d["k"] = {"v": 1}
    q = gsdk.Queue.from_name("durable", create_if_missing=True, addr=a)
    q.put_many([1, 2])
    q.put("p", partition="part")
    gust.restart()
    a = gust.addr
    assert sdk_dict("durable", a)["k"] == {"v": 1}
    q = gsdk.Queue.from_name("durable", addr=a)
    assert q.get_many(5, block=False) == [1, 2]
    assert q.get(partition="part", block=False) == "p"


def test_another_workspace_sees_nothing(gust, monkeypatch):
    a = gust.addr
    sdk_dict("mine", a, create=True)["secret"] = "value"
    gsdk.Queue.from_name("mine", create_if_missing=True, addr=a).put("item")
    other = gust.token_for("wsb", "invoker")
    for path in ("/v1/dicts/mine", "/v1/queues/mine"):
        r = gust.http("GET", path, token=other)
        assert r.status == 404 and r.error()["code"] == "not_found", r
    for path, body in (("/v1/dicts/mine/get", {"key": ""}), ("/v1/queues/mine/get", {}),
                       ("/v1/queues/mine/len", {})):
        r = gust.http("POST", path, json.dumps(body), {"Content-Type": "application/json"}, token=other)
        assert r.status == 404, r
    monkeypatch.setenv("GUST_TOKEN", other)
    assert gsdk.Dict.list(addr=a) == [] and gsdk.Queue.list(addr=a) == []
    with pytest.raises(NotFoundError):
        sdk_dict("mine", a).get("secret")
    # B's own "mine" is another dict; A's keeps its value. Invokers may not delete.
    b = sdk_dict("mine", a, create=True)
    assert b.get("secret") is None
    with pytest.raises(GustError, match="role"):
        gsdk.Dict.delete("mine", addr=a)
    monkeypatch.setenv("GUST_TOKEN", gust.admin_token)
    assert sdk_dict("mine", a)["secret"] == "value"


def test_ephemeral(gust):
    with gsdk.Dict.ephemeral(addr=gust.addr) as d:
        d["x"] = 1
        name = d.name
        assert d["x"] == 1
    assert name not in [x["name"] for x in gsdk.Dict.list(addr=gust.addr)]
    with gsdk.Queue.ephemeral(addr=gust.addr) as q:
        q.put(1)
        assert q.get() == 1


def sdk_dict(name, addr, create=False):
    return gsdk.Dict.from_name(name, create_if_missing=create, addr=addr)


def test_cli_ls_and_delete(gust):
    a = gust.addr
    sdk_dict("cfg", a, create=True).update(a=1, b=2)
    gsdk.Queue.from_name("work", create_if_missing=True, addr=a).put_many([1, 2, 3])
    for kind, name, n in (("dict", "cfg", "2"), ("queue", "work", "3")):
        r = gust.cli(kind, "ls")
        assert r.rc == 0, r
        assert name in r.out and n in r.out.split(name, 1)[1].split("\n")[0], r.out
        r = gust.cli(kind, "delete", name)
        assert r.rc == 0 and f"deleted {name}" in r.out, r
        r = gust.cli(kind, "delete", name)
        assert r.rc != 0 and "not found" in r.err, r
        assert name not in gust.cli(kind, "ls").out


def test_a_getter_that_went_away_takes_nothing(gust):
    """A client killed while its get waits: gustd sees its connection close and drops
    the waiter, so the next put's item stays in the queue for the next get."""
    a = gust.addr
    q = gsdk.Queue.from_name("gone", create_if_missing=True, addr=a)
    assert q.len() == 0
    env = dict(os.environ, GUST_ADDR=a, PYTHONPATH=os.path.join(ROOT, "sdk", "python"))
    p = subprocess.Popen([sys.executable, "-c", "import gust; print('waiting', flush=True); "
                          "gust.Queue.from_name('gone').get(timeout=45)"], env=env, stdout=subprocess.PIPE)
    assert p.stdout.readline() == b"waiting\n"
    time.sleep(0.5)  # its get reaches gustd
    p.kill()
    p.wait(30)
    time.sleep(0.5)  # gustd reads the close
    q.put("kept")
    assert q.get(block=False) == "kept"


def test_a_blocked_get_is_answered_at_shutdown(gust):
    """gustd stopping answers a waiting get (503 shutting_down) instead of leaving it to
    its connection's end; the stop is clean (the fixture checks the log)."""
    q = gsdk.Queue.from_name("stop", create_if_missing=True, addr=gust.addr)
    assert q.len() == 0
    errors = []

    def getter():
        try:
            q.get(timeout=45)
        except GustError as e:
            errors.append(e.code)

    t = threading.Thread(target=getter)
    t.start()
    time.sleep(0.5)  # its get reaches gustd
    assert gust.stop() == 0
    t.join(30)
    assert not t.is_alive() and errors == ["shutting_down"], errors


def test_partition_ttl_removes_a_partition_not_put_into(gust):
    """Modal's partition_ttl: a partition not put into for that long is removed with
    its items; the others keep theirs (a day by default). A partition nobody touches
    is swept by gustd itself (its log says so); one that is used is checked there."""
    a = gust.addr
    q = gsdk.Queue.from_name("ttl", create_if_missing=True, addr=a)
    q.put_many(["s1", "s2"], partition="short", partition_ttl=1)
    q.put("untouched", partition="swept", partition_ttl=1)
    q.put("l", partition="long")
    q.put("d")
    assert q.len(total=True) == 5
    wait_until(lambda: q.len(partition="short") == 0, 30, msg="partition 'short' expired")
    assert q.get(partition="short", block=False) is None
    wait_until(lambda: "partition 'swept' expired" in gust.stderr_text(), 30, msg="the sweep of 'swept'")
    assert q.len(partition="long") == 1 and q.len() == 1 and q.len(total=True) == 2
    assert {x["name"]: x["len"] for x in gsdk.Queue.list(addr=a)}["ttl"] == 2
    # An expired partition is a new one for the next put.
    q.put("again", partition="short")
    assert q.len(partition="short") == 1 and q.get(partition="short") == "again"
    assert q.get(partition="long") == "l" and q.get() == "d"


def test_partition_ttl_is_kept_across_a_restart(gust):
    """The expiry is stored: a partition put with a 1 s TTL before a restart is gone
    after it (without its TTL stored it would keep Modal's default day), while one of
    the default TTL keeps its items."""
    q = gsdk.Queue.from_name("ttl-restart", create_if_missing=True, addr=gust.addr)
    q.put("brief", partition="brief", partition_ttl=1)
    q.put("stays")
    gust.restart()
    q = gsdk.Queue.from_name("ttl-restart", addr=gust.addr)
    wait_until(lambda: q.len(partition="brief") == 0, 30, msg="partition 'brief' expired")
    assert q.get(block=False) == "stays"


def test_queue_len_and_clear_argument_rules_and_info(gust):
    """As Modal's client: naming a partition with total (len) or all (clear) is an
    InvalidError; gustd refuses the same, naming the field; partition_ttl must be a
    positive number of seconds. info() of both kinds: name and creation time."""
    import datetime
    a = gust.addr
    q = gsdk.Queue.from_name("rules", create_if_missing=True, addr=a)
    with pytest.raises(InvalidError):
        q.len(partition="p", total=True)
    with pytest.raises(InvalidError):
        q.clear(partition="p", all=True)
    h = {"Content-Type": "application/json"}
    r = gust.http("POST", "/v1/queues/rules/len", json.dumps({"partition": "p", "total": True}), h)
    assert r.status == 400 and r.error()["field"] == "total", r
    r = gust.http("POST", "/v1/queues/rules/clear", json.dumps({"partition": "p", "all": True}), h)
    assert r.status == 400 and r.error()["field"] == "all", r
    for bad in (0, -1, "1", 366 * 86400):
        r = gust.http("POST", "/v1/queues/rules/put", json.dumps({"values": [], "partition_ttl": bad}), h)
        assert r.status == 400 and r.error()["field"] == "partition_ttl", (bad, r)
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    qi = q.info()
    assert isinstance(qi, gsdk.QueueInfo) and qi.name == "rules" and qi.created_by is None
    assert qi.created_at.tzinfo is not None and before < qi.created_at <= datetime.datetime.now(datetime.timezone.utc)
    di = sdk_dict("infod", a, create=True).info()
    assert isinstance(di, gsdk.DictInfo) and di.name == "infod" and di.created_at >= before
    # The creation time is the object's, whichever reference asks.
    assert gsdk.Queue.from_name("rules", addr=a).info().created_at == qi.created_at
