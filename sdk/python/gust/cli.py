"""What the C CLI runs for Python files:
  python3 -m gust.cli deploy FILE.py [--json]   deploys every gust.App FILE defines
                                                (progress on stderr, one line per function)
  python3 -m gust.cli run FILE.py[::ENTRY]      deploys the app, calls its local entrypoint
                                                (ENTRY, or the only one; an async one is run
                                                to its end), then stops the app; what the
                                                app's functions print meanwhile is shown
                                                here, prefixed with the function
  -v (both): image builds show every line their steps print, not just the steps"""
import asyncio
import importlib.util
import inspect
import json
import os
import sys

from ._output import RemoteOutput
from .app import App, GustError
from .image import BuildError


def load_module(path):
    path = os.path.abspath(path)
    sys.path.insert(0, os.path.dirname(path))
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None:
        raise GustError(f"{path} is not a Python module")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def deploy_app(app, verbose=False):
    """Deploys app; returns (exit code, result)."""
    try:
        return 0, app.deploy(verbose=verbose)
    except BuildError as e:
        fn = e.event.get("function")
        print(f"error: {fn + ': ' if fn else ''}{e.message}", file=sys.stderr)
        if e.command:
            print(f"  command: {e.command}\n  exit status: {e.exit_status}", file=sys.stderr)
        if e.output_tail:
            print("  last output:\n" + e.output_tail.rstrip("\n"), file=sys.stderr)
        return 1, None
    except (GustError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return (3 if isinstance(e, GustError) else 4), None


def main(argv):
    as_json = "--json" in argv
    verbose = "-v" in argv or "--verbose" in argv
    args = [a for a in argv if a not in ("--json", "-v", "--verbose")]
    if len(args) != 2 or args[0] not in ("deploy", "run"):
        print("usage: python3 -m gust.cli deploy FILE.py [--json] [-v] | run FILE.py[::ENTRY] [-v]", file=sys.stderr)
        return 2
    target, _, entry = args[1].partition("::")
    try:
        mod = load_module(target)
    except (OSError, SyntaxError, GustError) as e:
        print(f"error: {target}: {e}", file=sys.stderr)
        return 2
    apps = [v for v in vars(mod).values() if isinstance(v, App)]
    if not apps:
        print(f"error: {target} defines no gust.App at its top level", file=sys.stderr)
        return 2
    if args[0] == "run":
        found = [(a, name, f) for a in apps for name, f in a.local_entrypoints.items() if not entry or name == entry]
        if len(found) != 1:
            have = ", ".join(n for a in apps for n in a.local_entrypoints) or "none"
            print(f"error: {target}: {'no' if not found else 'more than one'} local entrypoint"
                  f"{' named ' + entry if entry else ''} (defined: {have}; pick one with FILE.py::NAME)",
                  file=sys.stderr)
            return 2
        app, _, f = found[0]
        rc, dep = deploy_app(app, verbose)
        if rc:
            return rc
        output = RemoteOutput(app.addr, app.name, dep.get("log_seq")).start()
        try:
            result = f()
            if inspect.iscoroutine(result):  # an async def entrypoint runs on a loop of its own, as with Modal
                asyncio.run(result)
        finally:
            output.stop()  # the last lines first: stopping the app ends its containers
            try:
                app.stop()
                app.drop_inline_secrets()  # an ephemeral app's values are not kept
            except (GustError, OSError) as e:
                print(f"warning: stopping app {app.name}: {e}", file=sys.stderr)
        return 0
    results = []
    for app in apps:
        rc, res = deploy_app(app, verbose)
        if rc:
            return rc
        res.pop("event", None)
        results.append(res)
        if not as_json:
            print(f"deployed app {res['app']}")
            for f in res["functions"]:
                print(f"  {res['app']}.{f['name']}  version {f['version']}")
    if as_json:
        print(json.dumps(results[0] if len(results) == 1 else results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
