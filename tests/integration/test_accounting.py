"""Per-container accounting: CPU seconds, peak memory and OOM events, live in
/v1/containers and `gust ps`, and recorded at stop for /v1/usage and `gust usage`."""
from gustlib import fn_spec, wait_until
from test_hostile import SH

BURN = b"i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; head -c 40000000 /dev/zero | tr '\\0' x > /tmp/blob; echo done"


def test_cpu_memory_oom_accounted(gust, hostile_rootfs):
    gust.add_image("hostile", hostile_rootfs)
    gust.deploy(fn_spec("acct", "burn", SH, image="hostile", timeout=60,
                        resources={"cpu": 1000, "memory": 128, "disk": 64},
                        scaling={"max_containers": 1, "scaledown_window": 60}))
    assert gust.call_ok("acct", "burn", BURN).strip() == b"done"
    ctrs = gust.get_json("/v1/containers")["containers"]
    assert len(ctrs) == 1, ctrs
    c = ctrs[0]
    assert c["cpu_s"] > 0.2, c
    # /tmp is tmpfs, charged to the container's memory: the 40 MB file shows in the peak.
    assert c["memory_peak_bytes"] >= 38 << 20, c
    assert c["oom_kills"] == 0 and c["host_uid"] >= 1000000, c
    assert set(c["start_breakdown_us"]) == {"cgroups", "namespaces", "network", "mounts", "user_namespace",
                                            "seccomp_caps", "exec"}, c
    assert all(v > 0 for k, v in c["start_breakdown_us"].items() if k != "network"), c
    ps = gust.cli("ps")
    assert ps.rc == 0 and "CPU-USED(s)" in ps.out and "MEM-PEAK(MiB)" in ps.out, ps
    # An OOM kill is counted.
    r = gust.call("acct", "burn", b"hostile membomb")
    assert r.error()["code"] == "oom", r
    wait_until(lambda: not gust.get_json("/v1/containers")["containers"] or
               gust.get_json("/v1/containers")["containers"][0]["oom_kills"] >= 1, 10, msg="oom counted")
    # Stopping the app records the final numbers for billing.
    assert gust.cli("stop", "acct").rc == 0
    wait_until(lambda: not gust.get_json("/v1/containers")["containers"], 20, msg="containers gone")
    u = gust.get_json("/v1/usage")
    f = [f for a in u["apps"] if a["app"] == "acct" for f in a["functions"]][0]
    assert f["cpu_used_s"] > 0.2 and f["memory_peak_mib"] >= 38 and f["oom_kills"] >= 1, f
    assert f["gpu_util_measured"] is None, f
    out = gust.cli("usage")
    assert out.rc == 0 and "CPU-USED(s)" in out.out and "OOM" in out.out and "EVICTED" in out.out, out
