#!/usr/bin/python3
"""Checks that control is a one-way stack: src/control/internal.h lists control's
files in order (lowest first), and a file may use the functions and objects defined in
the files listed before it, never in those after it. Prints each violation with the
caller, the callee and the file that defines it; exits 1 if there is any."""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CTL = os.path.join(ROOT, "src", "control")

header = open(os.path.join(CTL, "internal.h")).read()
block = header[header.index("/*"):header.index("*/")]
order = re.findall(r"^ \*   ([a-z_]+\.c)\b", block, re.M)
present = sorted(f for f in os.listdir(CTL) if f.endswith(".c"))
bad = []
missing = [f for f in present if f not in order]
if missing:
    bad.append(f"control order: {', '.join(missing)} not listed in src/control/internal.h")
for f in order:
    if f not in present:
        bad.append(f"control order: {f} is listed in src/control/internal.h but does not exist")


def strip(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return re.sub(r'"(\\.|[^"\\])*"', '""', text)


defined = {}   # name -> file
sources = {}
for f in order:
    if f not in present:
        continue
    text = strip(open(os.path.join(CTL, f)).read())
    sources[f] = text
    # External definitions start in column 0, are not static, and open a body or
    # initialise an object (`const struct x name = {`).
    for m in re.finditer(r"^(?!static\b)(?:[A-Za-z_][\w \*]*?[\s\*])([a-z_][a-z0-9_]*)\s*(\([^;{]*\)\s*\{|=\s*\{)",
                         text, re.M):
        defined.setdefault(m.group(1), f)

rank = {f: i for i, f in enumerate(order)}
for f, text in sources.items():
    for name, where in defined.items():
        if where == f or rank[where] < rank[f]:
            continue
        if re.search(r"\b%s\b" % re.escape(name), text):
            bad.append(f"control order: {f} uses {name} from {where}, which comes after it "
                       f"(order in src/control/internal.h)")

for line in bad:
    print(line)
if not bad:
    print(f"control order: ok ({len(order)} files, {len(defined)} functions)")
sys.exit(1 if bad else 0)
