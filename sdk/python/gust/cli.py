"""`python3 -m gust.cli deploy FILE.py`: what the C CLI runs for `gust deploy FILE.py`.
Imports FILE and deploys every gust.App defined at its top level; progress on stderr,
one line per deployed function on stdout (or the answers as JSON with --json)."""
import importlib.util
import json
import os
import sys

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


def main(argv):
    as_json = "--json" in argv
    args = [a for a in argv if a != "--json"]
    if len(args) != 2 or args[0] != "deploy":
        print("usage: python3 -m gust.cli deploy FILE.py [--json]", file=sys.stderr)
        return 2
    try:
        mod = load_module(args[1])
    except (OSError, SyntaxError, GustError) as e:
        print(f"error: {args[1]}: {e}", file=sys.stderr)
        return 2
    apps = [v for v in vars(mod).values() if isinstance(v, App)]
    if not apps:
        print(f"error: {args[1]} defines no gust.App at its top level", file=sys.stderr)
        return 2
    results = []
    for app in apps:
        try:
            res = app.deploy()
        except BuildError as e:
            print(f"error: {e.message}", file=sys.stderr)
            if e.command:
                print(f"  command: {e.command}\n  exit status: {e.exit_status}", file=sys.stderr)
            if e.output_tail:
                print("  last output:\n" + e.output_tail.rstrip("\n"), file=sys.stderr)
            return 1
        except (GustError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 3 if isinstance(e, GustError) else 4
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
