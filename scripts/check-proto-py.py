#!/usr/bin/env python3
"""Checks the Python SDK's copy of the runner protocol (sdk/python/gust/_container/proto.py)
against the C headers it mirrors (src/proto/*.h, src/base/caps.h, src/client/pyjson.h):
every name in MIRRORED must be defined by the headers (a #define or an enum constant) and
by proto.py, with the same value, and so must every pair of RENAMED; HEADER and EXIT_BODY must have the fields of their C structs; proto.py may
define nothing else but the SDK_ONLY names; and no other SDK module may define one of
proto.py's names or write one of its strings again. Stdlib only. Exit status 0 when all
agree, 1 with one line per difference.

    python3 scripts/check-proto-py.py [REPO]"""
import ast
import glob
import importlib.util
import os
import re
import struct
import sys

# The C names proto.py mirrors (under the same names).
MIRRORED = [
    # frame.h
    "FRAME_HEADER_SIZE", "FRAME_MAX_BODY", "FRAME_CHILD_FD",
    "FRAME_HELLO", "FRAME_READY", "FRAME_INPUT", "FRAME_OUTPUT", "FRAME_ERROR", "FRAME_LOG", "FRAME_CANCEL",
    "FRAME_EXIT", "FRAME_SHUTDOWN", "FRAME_INPUT_LOG", "FRAME_FORK", "FRAME_CHILD_EXIT", "FRAME_RESUME",
    "FRAME_ITEM", "FRAME_ITEM_ACK", "FRAME_ITEM_WINDOW", "FRAME_ITEM_ACK_SIZE", "FRAME_INPUT_CALL",
    "FRAME_INPUT_MORE", "FRAME_INPUT_MORE_ACK", "FRAME_INPUT_WINDOW", "FRAME_INPUT_MORE_ACK_SIZE",
    "FRAME_F_MORE", "FRAME_ERR_USER", "FRAME_ERR_CANCELLED", "FRAME_EXIT_EXITED", "FRAME_EXIT_SIGNALED",
    # snap.h
    "SNAP_MSG_RUNNER", "SNAP_EXIT_FORK_FAILED", "SNAP_SYNC_FD", "SNAP_STDOUT_FD", "SNAP_STDERR_FD",
    # base/caps.h
    "CAPS_CONTAINER",
    # web.h
    "WEB_TAG", "WEB_TAG_LEN", "WEB_MAX_HEADERS", "WEB_STATUS_MIN", "WEB_STATUS_MAX", "WEB_MAX_HEADER_BYTES",
    "WEB_BODY_LEN_UNKNOWN",
]
# proto.py names -> the C names of the same values, where C needs its component's
# prefix: the Python runner's tags, which the CLI reads through libgust.
RENAMED = {"EXC_TAG": "GUST_PY_EXC_TAG", "JSON_TAG": "GUST_PY_JSON_TAG"}
# struct.Struct objects of proto.py -> the C struct whose fields they pack (little endian).
STRUCTS = {"HEADER": "frame_header", "EXIT_BODY": "frame_exit_body"}
# Names proto.py defines that C does not have, and why.
SDK_ONLY = {}
HEADERS = ["src/proto/*.h", "src/base/caps.h", "src/client/pyjson.h"]
PROTO_PY = "sdk/python/gust/_container/proto.py"
SDK_DIR = "sdk/python/gust"

# C field types -> struct format characters.
C_TYPES = {"uint8_t": "B", "int8_t": "b", "uint16_t": "H", "int16_t": "h", "uint32_t": "I", "int32_t": "i",
           "uint64_t": "Q", "int64_t": "q", "char": "s"}


def strip_comments(text):
    """The C text without comments, string and char literals kept; continued lines joined."""
    text = text.replace("\\\n", " ")
    tok = re.compile(r'("(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\')|/\*.*?\*/|//[^\n]*', re.S)
    return tok.sub(lambda m: m.group(1) or (" " if m.group(0).startswith("//") else
                                            "\n" * m.group(0).count("\n") or " "), text)


def c_eval(expr, known):
    """The value of a constant C expression (integers with suffixes, 'c', "s", names in
    known, + - * / % << >> | & ~ and parentheses), or None when it is not one."""
    expr = expr.strip()
    s = re.fullmatch(r'"((?:\\.|[^"\\])*)"', expr)
    if s:
        return ast.literal_eval('"' + s.group(1) + '"')
    out = []
    for m in re.finditer(r"\s+|'(\\.|[^'\\])'|(0[xX][0-9a-fA-F]+|\d+)[uUlL]*|([A-Za-z_]\w*)|(<<|>>|[-+*/%|&~()])|(.)",
                         expr):
        if m.group(1) is not None:
            out.append(str(ord(ast.literal_eval("'" + m.group(1) + "'"))))
        elif m.group(2):
            out.append(str(int(m.group(2), 0)))
        elif m.group(3):
            if not isinstance(known.get(m.group(3)), int):
                return None
            out.append(str(known[m.group(3)]))
        elif m.group(4):
            out.append("//" if m.group(4) == "/" else m.group(4))
        elif m.group(5):
            return None
    try:
        tree = ast.parse("".join(out) or "x", mode="eval")
    except SyntaxError:
        return None
    allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.operator, ast.unaryop)
    if not all(isinstance(n, allowed) for n in ast.walk(tree)):
        return None
    return eval(compile(tree, "<c>", "eval"))  # only integer arithmetic on literals is left


def parse_c(repo):
    """{name: (value or None, "file:line")} of the headers' object-like #defines and
    enum constants, and {struct name: struct format (without "<"), "file:line"}."""
    consts, structs = {}, {}
    values = {}
    for pattern in HEADERS:
        for path in sorted(glob.glob(os.path.join(repo, pattern))):
            rel = os.path.relpath(path, repo)
            with open(path) as f:
                text = strip_comments(f.read())

            def where(pos):
                return f"{rel}:{text.count(chr(10), 0, pos) + 1}"
            for m in re.finditer(r"^[ \t]*#[ \t]*define[ \t]+(\w+)(?!\()[ \t]*(.*)$", text, re.M):
                v = c_eval(m.group(2), values)
                consts[m.group(1)] = (v, where(m.start(1)))
                values[m.group(1)] = v
            for m in re.finditer(r"\benum\s*\w*\s*\{([^}]*)\}", text):
                nxt = 0
                for item in re.finditer(r"(\w+)\s*(?:=\s*([^,]+))?", m.group(1)):
                    v = c_eval(item.group(2), values) if item.group(2) else nxt
                    consts[item.group(1)] = (v, where(m.start(1) + item.start(1)))
                    values[item.group(1)] = v
                    nxt = v + 1 if isinstance(v, int) else None
            for m in re.finditer(r"\bstruct\s+(\w+)\s*\{([^}]*)\}", text):
                structs[m.group(1)] = (struct_format(m.group(2), values), where(m.start(1)))
    return consts, structs


def struct_format(body, values):
    """The struct module format of C fields ("uint8_t pad[3];" is padding), or None
    when a field has a type this check does not know."""
    fmt = ""
    for decl in filter(None, (d.strip() for d in body.split(";"))):
        m = re.fullmatch(r"(\w+)\s+(.+)", decl)
        if not m or m.group(1) not in C_TYPES:
            return None
        for name in m.group(2).split(","):
            a = re.fullmatch(r"\s*(\w+)\s*(?:\[(.+)\])?\s*", name)
            if not a:
                return None
            n = c_eval(a.group(2), values) if a.group(2) else 1
            if not isinstance(n, int):
                return None
            code = "x" if a.group(1).startswith("pad") else C_TYPES[m.group(1)]
            fmt += (str(n) if n != 1 or code == "s" else "") + code
    return fmt


def load_py(repo):
    """proto.py's module and {name: line} of its top-level assignments."""
    path = os.path.join(repo, PROTO_PY)
    spec = importlib.util.spec_from_file_location("gust_proto_checked", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with open(path) as f:
        tree = ast.parse(f.read())
    lines = {t.id: node.lineno for node in tree.body if isinstance(node, ast.Assign)
             for t in node.targets if isinstance(t, ast.Name)}
    return mod, lines


def same(c_val, py_val):
    if isinstance(py_val, bytes) and len(py_val) == 1 and isinstance(c_val, int):
        return py_val[0] == c_val  # a char constant
    if isinstance(py_val, bytes) and isinstance(c_val, str):
        return py_val == c_val.encode("latin-1")  # a string literal of bytes
    return type(c_val) is type(py_val) and c_val == py_val


def show(v):
    return f"{v} ({v:#x})" if isinstance(v, int) and v > 255 else repr(v)


def check(repo):
    problems = []
    consts, structs = parse_c(repo)
    mod, py_lines = load_py(repo)
    py = f"{PROTO_PY}:{{}}"
    for name, c_name in [(n, n) for n in MIRRORED] + list(RENAMED.items()):
        if c_name not in consts:
            problems.append(f"{c_name}: no longer defined in {' '.join(HEADERS)} (C); it is in MIRRORED or RENAMED "
                            f"of scripts/check-proto-py.py and at {py.format(py_lines.get(name, '?'))}: rename or "
                            f"remove it on both sides")
            continue
        c_val, c_where = consts[c_name]
        if c_val is None:
            problems.append(f"{c_name}: {c_where}: the value is not a constant expression this check can evaluate")
        elif not hasattr(mod, name):
            problems.append(f"{name}: {c_where} defines it as {show(c_val)}, {PROTO_PY} does not define it")
        elif not same(c_val, getattr(mod, name)):
            problems.append(f"{name}: C {c_where} says {show(c_val)}, Python {py.format(py_lines.get(name, '?'))} "
                            f"says {show(getattr(mod, name))}")
    for name, c_struct in STRUCTS.items():
        if c_struct not in structs:
            problems.append(f"{name}: struct {c_struct} is no longer defined in {' '.join(HEADERS)}")
            continue
        fmt, c_where = structs[c_struct]
        got = getattr(getattr(mod, name, None), "format", None)
        if fmt is None:
            problems.append(f"{name}: {c_where}: struct {c_struct} has a field type this check does not know")
        elif got != "<" + fmt:
            problems.append(f"{name}: C struct {c_struct} ({c_where}) packs as {'<' + fmt!r}, Python "
                            f"{py.format(py_lines.get(name, '?'))} says {got!r}")
        elif struct.calcsize("@" + fmt) != struct.calcsize("<" + fmt):
            problems.append(f"{name}: C struct {c_struct} ({c_where}) has padding between fields; make it explicit")
    names = {n for n in py_lines if n.isupper()}
    for name in sorted(names - set(MIRRORED) - set(RENAMED) - set(STRUCTS) - set(SDK_ONLY)):
        problems.append(f"{name}: {py.format(py_lines[name])} defines it, but scripts/check-proto-py.py neither "
                        f"compares it with C (MIRRORED, RENAMED, STRUCTS) nor lists it as SDK_ONLY")
    problems += check_single_source(repo, names, mod)
    return problems


def check_single_source(repo, names, mod):
    """No SDK module but proto.py defines one of its names or spells one of its strings."""
    strings = {getattr(mod, n): n for n in names if isinstance(getattr(mod, n, None), str)}
    strings.update({getattr(mod, n).format: n for n in STRUCTS if hasattr(getattr(mod, n, None), "format")})
    problems = []
    proto_path = os.path.normpath(os.path.join(repo, PROTO_PY))
    for path in sorted(glob.glob(os.path.join(repo, SDK_DIR, "**", "*.py"), recursive=True)):
        if os.path.normpath(path) == proto_path:
            continue
        rel = os.path.relpath(path, repo)
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
            for t in targets:
                if isinstance(t, ast.Name) and t.id in names:
                    problems.append(f"{t.id}: {rel}:{node.lineno} defines it again; import it from {PROTO_PY}")
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in strings:
                problems.append(f"{strings[node.value]}: {rel}:{node.lineno} writes its value {node.value!r} again; "
                                f"import it from {PROTO_PY}")
    return problems


def main():
    repo = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    problems = check(repo)
    for p in problems:
        print(f"check-proto-py: {p}", file=sys.stderr)
    if problems:
        print(f"check-proto-py: {len(problems)} difference(s) between {PROTO_PY} and the C headers", file=sys.stderr)
        return 1
    print(f"check-proto-py: {len(MIRRORED) + len(RENAMED)} constants and {len(STRUCTS)} structs of {PROTO_PY} match the C headers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
