"""Host uid ranges are locked per host: daemons on one host with the same (default)
--userns-base, or with bases whose ranges overlap in part, never run containers as the
same host uids (worker.c slot_lock, docs/SECURITY.md "User namespace")."""
from gustlib import echo_fn


def _ranges(g, app):
    g.deploy(echo_fn(app=app))
    assert g.call_ok(app, "echo", b"hi") == b"hi"
    ctrs = g.containers(app, "echo")
    assert len(ctrs) == 1, ctrs
    uid = ctrs[0]["host_uid"]
    assert uid >= 1000000, ctrs
    return uid


def test_two_default_daemons_get_disjoint_uid_ranges(gust_factory, echo_rootfs):
    # g0 and g1 run with the default --userns-base; g2's ranges start half-way into
    # theirs (1000000 + 32768), so each of its ranges overlaps two of theirs in part.
    daemons = [gust_factory(), gust_factory(), gust_factory("--userns-base", "1032768")]
    uids = []
    for i, g in enumerate(daemons):
        g.add_image("echo", echo_rootfs)
        uids.append(_ranges(g, f"uns{i}"))
    # Every container of each daemon, while all of them are alive.
    assert uids[0] != uids[1], uids
    for i in range(3):
        for j in range(i + 1, 3):
            a, b = uids[i], uids[j]
            assert a + 65536 <= b or b + 65536 <= a, f"daemons {i} and {j} overlap: {uids}"
    assert (uids[2] - 1032768) % 65536 == 0, uids
    # Still all alive and serving from those ranges.
    for i, g in enumerate(daemons):
        assert [c["host_uid"] for c in g.containers(f"uns{i}", "echo")] == [uids[i]]
