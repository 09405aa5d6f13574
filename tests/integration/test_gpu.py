"""GPU passthrough without a GPU: a declared inventory marked real (--gpu-passthrough),
device nodes made with mknod in a directory of the test (real NVIDIA major numbers, no
driver behind them) and driver "libraries" as plain files. A container that asked for
one GPU gets exactly that GPU's node plus the control nodes and the libraries; one that
asked for none gets nothing; missing nodes or libraries are clear errors."""
import os
import re

import pytest

from gustlib import fn_spec
from test_hostile import SH, run

NV_MAJOR, UVM_MAJOR = 195, 235


@pytest.fixture
def fake_driver(tmp_path):
    dev = tmp_path / "dev"
    lib = tmp_path / "lib"
    dev.mkdir()
    lib.mkdir()
    for name, major, minor in (("nvidia0", NV_MAJOR, 0), ("nvidia1", NV_MAJOR, 1), ("nvidiactl", NV_MAJOR, 255),
                               ("nvidia-uvm", UVM_MAJOR, 0), ("nvidia-uvm-tools", UVM_MAJOR, 1)):
        os.mknod(dev / name, 0o666 | 0o020000, os.makedev(major, minor))
    for base in ("libcuda.so", "libnvidia-ml.so", "libnvidia-ptxjitcompiler.so"):
        (lib / f"{base}.580.65.06").write_text(f"fake {base}\n")
        os.symlink(f"{base}.580.65.06", lib / f"{base}.1")
    (lib / "libunrelated.so.1").write_text("not a driver library\n")
    return str(dev), str(lib)


def passthrough_gust(gust_factory, dev, lib, gpus="H100:2", name=None):
    """A gustd whose declared GPUs are real, with nodes in dev and libraries in lib."""
    return gust_factory("--gpus", gpus, "--gpu-passthrough", "--gpu-dev-dir", dev, "--gpu-driver-dir", lib,
                        "--no-nvml", name=name)


def gpu_fns(g, rootfs):
    g.add_image("hostile", rootfs)
    res = {"cpu": 250, "memory": 64}
    g.deploy({"app": "gpu", "functions": [
        fn_spec("gpu", "one", SH, image="hostile", timeout=30, resources=dict(res, gpu="H100:1"),
                scaling={"max_containers": 2})["functions"][0],
        fn_spec("gpu", "none", SH, image="hostile", timeout=30, resources=res)["functions"][0],
    ]})


PROBE = ("ls /dev | grep nvidia; echo ---; ls /opt/gust/nvidia/lib64 2>&1; echo ---; "
         "env | grep -E '^(CUDA|NVIDIA)_VISIBLE_DEVICES|^LD_LIBRARY_PATH' | sort; echo ---; "
         "cat /opt/gust/nvidia/lib64/libcuda.so.1 2>&1; hostile open_read /dev/nvidia0; hostile open_read /dev/nvidia1")


def test_one_gpu_sees_exactly_its_gpu(gust_factory, hostile_rootfs, fake_driver):
    dev, lib = fake_driver
    g = passthrough_gust(gust_factory, dev, lib)
    gpu_fns(g, hostile_rootfs)
    nodes, libs, env, rest = run(g, PROBE, app="gpu", fn="one").split("---\n")
    nodes = nodes.split()
    assert len([n for n in nodes if re.fullmatch(r"nvidia\d+", n)]) == 1, nodes
    assert {"nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"} <= set(nodes), nodes
    assert set(libs.split()) == {"libcuda.so.1", "libcuda.so.580.65.06", "libnvidia-ml.so.1",
                                 "libnvidia-ml.so.580.65.06", "libnvidia-ptxjitcompiler.so.1",
                                 "libnvidia-ptxjitcompiler.so.580.65.06"}, libs
    assert "CUDA_VISIBLE_DEVICES=0" in env and "NVIDIA_VISIBLE_DEVICES=0" in env, env
    assert "LD_LIBRARY_PATH=/opt/gust/nvidia/lib64" in env, env
    assert "fake libcuda.so" in rest, rest
    # Its own node opens as far as the device cgroup goes (no driver behind it: ENXIO);
    # the other GPU's node is not there at all.
    mine = [n for n in nodes if re.fullmatch(r"nvidia\d+", n)][0]
    other = "nvidia1" if mine == "nvidia0" else "nvidia0"
    assert re.search(rf"^open_read ENXIO$", rest, re.M), rest
    assert rest.count("open_read ENOENT") == 1, rest
    assert other not in nodes
    # The library files are read-only.
    out = run(g, "echo x > /opt/gust/nvidia/lib64/libcuda.so.1 2>&1; echo rc=$?", app="gpu", fn="one")
    assert "rc=1" in out, out


def test_no_gpu_sees_no_gpu(gust_factory, hostile_rootfs, fake_driver):
    dev, lib = fake_driver
    g = passthrough_gust(gust_factory, dev, lib)
    gpu_fns(g, hostile_rootfs)
    nodes, libs, env, rest = run(g, PROBE, app="gpu", fn="none").split("---\n")
    assert nodes.split() == [], nodes
    assert "No such file" in libs, libs
    assert "VISIBLE_DEVICES" not in env, env


def test_two_containers_get_different_gpus(gust_factory, hostile_rootfs, fake_driver):
    dev, lib = fake_driver
    g = passthrough_gust(gust_factory, dev, lib)
    gpu_fns(g, hostile_rootfs)
    calls = [g.spawn("gpu", "one", b"ls /dev | grep -E '^nvidia[0-9]+$'; sleep 2") for _ in range(2)]
    outs = []
    for c in calls:
        r = g.result(c, wait=30)
        assert r.status == 200, r
        outs.append(r.body.decode().strip())
    outs.sort()
    assert outs == ["nvidia0", "nvidia1"], outs


def test_missing_nodes_or_libraries_are_clear_errors(gust_factory, hostile_rootfs, fake_driver, tmp_path):
    dev, lib = fake_driver
    empty = tmp_path / "empty"
    empty.mkdir()
    g = passthrough_gust(gust_factory, str(empty), lib, gpus="H100:1")
    gpu_fns(g, hostile_rootfs)
    r = g.call("gpu", "one", b"true")
    assert r.status != 200 and "device node" in r.text and "nvidia0 is missing" in r.text, r
    g2 = passthrough_gust(gust_factory, dev, str(empty), gpus="H100:1", name="g2")
    gpu_fns(g2, hostile_rootfs)
    r = g2.call("gpu", "one", b"true")
    assert r.status != 200 and "libcuda.so.1 not found" in r.text, r
    # Simulated GPUs (no --gpu-passthrough) need neither.
    g3 = gust_factory("--gpus", "H100:1", "--gpu-dev-dir", str(empty), "--no-nvml", name="g3")
    gpu_fns(g3, hostile_rootfs)
    assert run(g3, "echo $CUDA_VISIBLE_DEVICES; ls /dev | grep -c nvidia; true", app="gpu", fn="one").split() == ["0", "0"]
