"""Modal programs on Gust: each program in modal_programs/ is written for Modal, with
`import gust as modal` as its only change, and runs with `gust run` against a real
gustd (the shared daemon); what it prints is checked line by line."""
import os
import re

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
