"""What the C CLI runs for Python files:
  python3 -m gust.cli deploy FILE.py [--json]   deploys every gust.App FILE defines
                                                (progress on stderr, one line per function)
  python3 -m gust.cli run FILE.py[::ENTRY] [-- ARGS]
                                                deploys the app, calls its local entrypoint
                                                (ENTRY, or the only one; an async one is run
                                                to its end), then stops the app; what the
                                                app's functions print meanwhile is shown
                                                here, prefixed with the function. As with
                                                `modal run`, ENTRY may name a function
                                                (FN, Cls.method, or APP.FN with the App's
                                                variable), which is called with .remote();
                                                without ENTRY, a file with no local
                                                entrypoint and one function runs that one.
                                                ARGS are its parameters as options, as with
                                                `modal run`: --name VALUE, --flag/--no-flag
  python3 -m gust.cli serve FILE.py            deploys FILE's apps as ephemeral copies
                                                (APP-dev), prints the web endpoints' URLs,
                                                redeploys when a source changes, stops the
                                                copies on Ctrl-C or SIGTERM (gust._serve)
  -v (all): image builds show every line their steps print, not just the steps"""
import asyncio
import functools
import importlib.util
import inspect
import json
import os
import sys

from . import _serve
from ._output import RemoteOutput
from .app import App, Cls, GustError, _is_generator_function
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


def _runnables(app):
    """{name: (function, method or None)} of what `gust run` runs of app besides its
    local entrypoints, named as `modal run` names them: each function ("fn") and each
    method of each class ("Cls.method")."""
    out = {}
    for name, fn in app.registered_functions.items():
        if isinstance(fn.raw_f, type):
            for m in dir(fn.raw_f):  # inherited methods too
                if getattr(getattr(fn.raw_f, m, None), "_gust_method", False):
                    out[f"{name}.{m}"] = (fn, m)
        else:
            out[name] = (fn, None)
    return out


def _remote_call(fn, method):
    """What `modal run FILE.py::fn` does: fn.remote() with the command line's arguments
    (entry_arguments: the function's own raw_f says which), its result not printed. A
    generator function is refused, as there."""
    if method is None:
        gen = fn.is_generator
    else:
        gen = _is_generator_function(getattr(fn.raw_f, method))
    what = fn.name if method is None else f"{fn.name}.{method}"
    if gen:
        raise GustError(f"{what} is a generator function, which `gust run` does not run (as `modal run`): "
                        f"iterate its .remote_gen() in a local entrypoint")
    if method is None:
        call = lambda *a, **k: fn.remote(*a, **k)  # noqa: E731
        call.signature_of = fn.raw_f
    else:
        call = lambda *a, **k: getattr(Cls(fn, fn.raw_f)(), method).remote(*a, **k)  # noqa: E731
        call.signature_of = functools.partial(getattr(fn.raw_f, method), None)
    return call


def pick_entrypoint(mod, apps, entry):
    """(app, callable) that `gust run FILE.py[::entry]` runs, by Modal's rules: entry
    names a local entrypoint, a function or Cls.method (optionally after the variable
    of its App and a dot: "app.fn"); without entry, the only local entrypoint, else,
    when the file has none, the only function or method. A function is called with
    .remote() and no arguments."""
    if entry:
        for var, v in vars(mod).items():
            if isinstance(v, App) and v in apps and entry.startswith(var + "."):
                apps, entry = [v], entry[len(var) + 1:]
                break
        found = [(a, f) for a in apps for name, f in a.local_entrypoints.items() if name == entry]
        found += [(a, _remote_call(*r)) for a in apps for name, r in _runnables(a).items() if name == entry]
    else:
        found = [(a, f) for a in apps for f in a.local_entrypoints.values()]
        if not found:
            found = [(a, r) for a in apps for r in _runnables(a).values()]
            if len(found) == 1:
                found = [(found[0][0], _remote_call(*found[0][1]))]
    if len(found) == 1:
        return found[0]
    entries = ", ".join(n for a in apps for n in a.local_entrypoints) or "none"
    fns = ", ".join(n for a in apps for n in _runnables(a)) or "none"
    have = f"local entrypoints: {entries}; functions: {fns}"
    if entry:
        raise GustError(f"no local entrypoint named {entry}, nor a function ({have})")
    if not found:
        raise GustError(f"nothing to run: no local entrypoint and no function ({have})")
    what = "local entrypoint" if entries != "none" else "function"
    raise GustError(f"more than one {what}: pick one with FILE.py::NAME ({have})")


def _option_type(annotation):
    """The parser of an entrypoint parameter's command-line value, by its annotation as
    `modal run` reads it: str, int, float, bool (a --x/--no-x flag), datetime.datetime
    (ISO 8601), Optional[X] as X; none at all: the string as given. None: unparseable."""
    import datetime
    import typing
    if annotation is inspect.Parameter.empty:
        return str
    if isinstance(annotation, str):  # `from __future__ import annotations`
        annotation = {"str": str, "int": int, "float": float, "bool": bool,
                      "datetime.datetime": datetime.datetime}.get(annotation.replace("Optional[", "").rstrip("]"))
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Union and len(args) == 1:
        annotation = args[0]
    if annotation is datetime.datetime:
        return datetime.datetime.fromisoformat
    return annotation if annotation in (str, int, float, bool) else None


def entry_arguments(f, argv, prog):
    """(args, kwargs) for f from the command line after FILE.py, as `modal run` makes
    them: each parameter is an option --name (underscores as dashes), typed by its
    annotation, required when it has no default; a bool one is --name / --no-name; a
    *args parameter takes the positional arguments. SystemExit (2, or 0 for --help)
    with argparse's message when they do not fit."""
    import argparse
    sig = inspect.signature(f)
    parser = argparse.ArgumentParser(prog=prog, description=(inspect.getdoc(f) or "").split("\n\n")[0] or None)
    variadic = None
    for p in sig.parameters.values():
        if p.kind == p.VAR_POSITIONAL:
            variadic = p.name
            parser.add_argument(p.name, nargs="*")
            continue
        if p.kind == p.VAR_KEYWORD:
            continue
        conv = _option_type(p.annotation)
        if conv is None:
            raise GustError(f"parameter {p.name} of {f.__name__}: `gust run` cannot read a {p.annotation!r} from "
                            f"the command line (str, int, float, bool, datetime.datetime)")
        flag = "--" + p.name.replace("_", "-")
        required = p.default is inspect.Parameter.empty
        if conv is bool:
            parser.add_argument(flag, dest=p.name, action=argparse.BooleanOptionalAction, required=required,
                                default=None if required else p.default)
        else:
            parser.add_argument(flag, dest=p.name, type=conv, required=required,
                                default=None if required else p.default, metavar=p.name.upper())
    ns = vars(parser.parse_args(argv))
    args = tuple(ns.pop(variadic)) if variadic else ()
    return args, ns


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
    # What comes after "--" is the entrypoint's own command line (gust run FILE.py ARGS).
    entry_argv = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    as_json = "--json" in argv
    verbose = "-v" in argv or "--verbose" in argv
    args = [a for a in argv if a not in ("--json", "-v", "--verbose")]
    if len(args) != 2 or args[0] not in ("deploy", "run", "serve") or (entry_argv and args[0] != "run"):
        print("usage: python3 -m gust.cli deploy FILE.py [--json] [-v] | run FILE.py[::ENTRY] [-v] [-- ARGS...] | "
              "serve FILE.py [-v]", file=sys.stderr)
        return 2
    if args[0] == "serve":
        return _serve.serve(args[1], load_module, verbose)
    target, _, entry = args[1].partition("::")
    try:
        mod = load_module(target)
    except (OSError, SyntaxError, GustError) as e:
        print(f"error: {target}: {e}", file=sys.stderr)
        return 2
    apps = list({id(v): v for v in vars(mod).values() if isinstance(v, App)}.values())
    if not apps:
        print(f"error: {target} defines no gust.App at its top level", file=sys.stderr)
        return 2
    if args[0] == "run":
        try:
            app, f = pick_entrypoint(mod, apps, entry)
            # The command line is checked before anything is deployed.
            call_args, call_kwargs = entry_arguments(getattr(f, "signature_of", f), entry_argv,
                                                     f"gust run {args[1]}")
        except GustError as e:
            print(f"error: {target}: {e}", file=sys.stderr)
            return 2
        except SystemExit as e:  # argparse printed the usage, or --help
            return e.code if isinstance(e.code, int) else 2
        rc, dep = deploy_app(app, verbose)
        if rc:
            return rc
        output = RemoteOutput(app.addr, app.name, dep.get("log_seq")).start()
        try:
            result = f(*call_args, **call_kwargs)
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
