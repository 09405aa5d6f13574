"""Modal programs on Gust: each program in modal_programs/ is written for Modal, with
`import gust as modal` as its only change, and runs with `gust run` against a real
gustd (the shared daemon); what it prints is checked line by line."""
import os
import re
import subprocess
import sys

from gustlib import wait_until

# What the remote functions print reaches `gust run`'s terminal too, as "[function] line"
# or "[function fc-xxxxxx] line" (test_run_output.py checks those): the entrypoint's own
# lines are what is compared here.
REMOTE_LINE = re.compile(r"^\[[\w.-]+( fc-\w+)?\] ")

PROGRAMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "modal_programs")


def run_program(g, name, timeout=900):
    r = g.cli("run", os.path.join(PROGRAMS, name), timeout=timeout)
    assert r.rc == 0, r
    return [line for line in r.out.splitlines() if not REMOTE_LINE.match(line)]


def test_calls_gather_from_id_spawn_map_exceptions_and_context(shared_gust):
    assert run_program(shared_gust, "calls.py") == [
        "gather: [0, 1, 4, 9, 16]",
        "gather raised: boom",
        "from_id: 81",
        "spawn_map: [0, 1, 4, 9]",
        "timeout: FunctionTimeoutError",
        "lookup: NotFoundError",
        "cancel: InputCancellation",
        "context: True False True True",
    ]


def test_classes_parameters_with_options_from_name_and_exit_hooks(shared_gust):
    g = shared_gust
    assert run_program(g, "classes.py") == [
        "default: [12, 12]",
        "parameterized: [15, 15, 15]",
        "with_options: yes [8]",
        "from_name: [5, 5, 5]",
        "function with_options: 5",
        "bad parameter: True",
    ]
    # gust run stopped the app: each parameter set's container ran its exit hook.
    fns = [f["name"] for f in g.get_json("/v1/functions")["functions"] if f["app"] == "compat-classes"]
    assert sum(1 for f in fns if f.startswith("Embedder-v")) == 2 and "add" in fns, fns

    def logs():
        return "".join(g.http("GET", f"/v1/functions/compat-classes/{f}/logs").body.decode() for f in fns)
    wait_until(lambda: "Embedder(tiny, 2) shutting down" in logs() and "Embedder(large, 3) shutting down" in logs(),
               30, msg="the exit hooks' output in the logs")


def test_images_python_version_imports_run_function_and_app_defaults(shared_gust):
    assert run_program(shared_gust, "images.py") == [
        "yaml: {'a': 1, 'b': ['x', 'y']}",
        "baked: baked while building, local=False",
        "secret: s3",
    ]


def test_run_picks_functions_as_modal_run_and_app_run_in_scripts(shared_gust):
    g = shared_gust
    prog = os.path.join(PROGRAMS, "scripts.py")
    # No local entrypoint and three things to run: gust run says which there are.
    r = g.cli("run", prog)
    assert r.rc == 2 and "more than one function" in r.err, r
    assert "hello, Greeter.greet, numbers" in r.err, r
    # FILE.py::fn calls fn.remote(); its output shows, its result is not printed.
    r = g.cli("run", prog + "::hello", timeout=900)
    assert r.rc == 0 and r.out == "[hello] hello, world, from a container\n", r
    # The App's variable may come first; a class's method is Cls.method.
    r = g.cli("run", prog + "::app.Greeter.greet", timeout=300)
    assert r.rc == 0 and r.out == "[Greeter] greetings from the class\n", r
    r = g.cli("run", prog + "::numbers")
    assert r.rc == 2 and "generator function" in r.err, r
    r = g.cli("run", prog + "::nope")
    assert r.rc == 2 and "no local entrypoint named nope" in r.err, r
    # python3 scripts.py: app.run() deploys, runs the block and stops the app; only
    # inside enable_output() does the function's print show.
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(PROGRAMS), "..", "..", "sdk", "python"),
               **g.client_env())
    p = subprocess.run([sys.executable, prog], capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p
    # The remote line is followed from the app's logs as the call runs: it may show just
    # before or just after the block's own print.
    lines = p.stdout.splitlines()
    assert lines[0] == "quiet run: script" and sorted(lines[1:]) == [
        "[hello] hello, output, from a container", "shown run: output"], p
    apps = {a["name"]: a["state"] for a in g.get_json("/v1/apps")["apps"]}
    assert apps.get("compat-scripts") == "stopped", apps


def test_run_passes_the_command_line_to_the_entrypoint_as_modal_run(shared_gust):
    """What follows FILE.py is the entrypoint's: --name VALUE per parameter (dashes for
    underscores), typed by its annotation, --flag/--no-flag for a bool; a missing
    required one or a bad value is refused before anything is deployed."""
    g = shared_gust
    prog = os.path.join(PROGRAMS, "params.py")
    r = g.cli("run", prog, "--prompt", "hi", "--n", "3", "--no-shout", "--ratio", "2",
              "--when", "2026-12-05T10:00:00", "--max-tokens", "7", timeout=900)
    assert r.rc == 0, r
    assert run_program_lines(r) == ["render: hi hi hi", "types: float 2.0 2026-12-05T10:00:00 7"], r
    r = g.cli("run", prog, "--prompt", "yo", timeout=300)
    assert r.rc == 0 and run_program_lines(r) == ["render: YO YO", "types: float 0.5 None 16"], r
    # gust's own options before the file, the entrypoint's after it.
    r = g.cli("run", "-v", prog + "::main", "--prompt=a", "--n=1", timeout=300)
    assert r.rc == 0 and run_program_lines(r)[0] == "render: A", r
    # App() without a name is named after its file, as in Modal.
    before = [a for a in g.get_json("/v1/apps")["apps"] if a["name"] == "params"]
    assert len(before) == 1 and before[0]["state"] == "stopped", before
    r = g.cli("run", prog, "--n", "two")
    assert r.rc == 2 and "--n" in r.err and "invalid int value" in r.err, r
    r = g.cli("run", prog)
    assert r.rc == 2 and "--prompt" in r.err and "required" in r.err, r
    r = g.cli("run", prog, "--help")
    assert r.rc == 0 and "--max-tokens" in r.out and "--no-shout" in r.out, r
    # Refused before deploying: the app's record did not change.
    assert [a for a in g.get_json("/v1/apps")["apps"] if a["name"] == "params"] == before


def run_program_lines(r):
    return [line for line in r.out.splitlines() if not REMOTE_LINE.match(line)]
