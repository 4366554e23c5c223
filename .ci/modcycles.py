#!/usr/bin/env python3
"""Import cycles between the modules of each crate (CI check).

For every crate under crates/ (and fuzz/), builds the graph "module A names
an item of module B" from `crate::`, `super::` and `self::` paths in A's
file (use lines and inline paths alike), and reports every strongly
connected component of more than one module. A module's own child modules
are part of it: a child naming its parent's items (`super::`) and the parent
naming the child's are one module split over files, so edges between a
module and its descendants are not counted. Exit status 1 on any cycle.
"""
import os
import re
import sys

def modules(src):
    """Map module path (tuple) -> file, from a crate's src/ tree."""
    mods = {}
    for root in ("lib.rs", "main.rs"):
        if os.path.exists(os.path.join(src, root)):
            mods[()] = os.path.join(src, root)
            break
    for dirpath, _, files in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        parts = () if rel == "." else tuple(rel.split(os.sep))
        if parts[:1] == ("bin",):
            continue
        for f in files:
            if not f.endswith(".rs") or (parts == () and f in ("lib.rs", "main.rs")):
                continue
            name = f[:-3]
            path = parts if name == "mod" else parts + (name,)
            mods[path] = os.path.join(dirpath, f)
    return mods

def strip(text):
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'"(\\.|[^"\\])*"', '""', text)
    # Test modules may reach anywhere.
    cut = re.search(r"#\[cfg\(test\)\]\s*mod\s+tests", text)
    return text[: cut.start()] if cut else text

def paths(text):
    """Yield (anchor, [segments]) for crate::/super::/self:: paths, braces expanded."""
    for m in re.finditer(r"\b(crate|super|self)((?:::\w+)*)(::\{)?", text):
        anchor, segs = m.group(1), [s for s in m.group(2).split("::") if s]
        if m.group(3):
            depth, i, start = 1, m.end(), m.end()
            items = []
            while i < len(text) and depth:
                c = text[i]
                if c == "{":
                    depth += 1
                elif c == "}":
                    depth -= 1
                    if depth == 0:
                        items.append(text[start:i])
                elif c == "," and depth == 1:
                    items.append(text[start:i])
                    start = i + 1
                i += 1
            for item in items:
                first = re.match(r"\s*(\w+)", item)
                if first and first.group(1) != "self":
                    yield anchor, segs + [first.group(1)]
                elif first:
                    yield anchor, segs
        else:
            yield anchor, segs

def resolve(mods, here, anchor, segs):
    if anchor == "crate":
        base = ()
    elif anchor == "super":
        base = here[:-1]
        while segs and segs[0] == "super":
            base, segs = base[:-1], segs[1:]
    else:
        base = here
    target = base
    for s in segs:
        if target + (s,) in mods:
            target = target + (s,)
        else:
            break
    return target

def sccs(nodes, edges):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)
    def visit(v):
        index[v] = low[v] = counter[0]; counter[0] += 1
        stack.append(v); on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            out.append(comp)
    for v in nodes:
        if v not in index:
            visit(v)
    return out

def related(a, b):
    return a[: len(b)] == b or b[: len(a)] == a

def main():
    top = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    srcs = [os.path.join(top, "crates", c, "src") for c in sorted(os.listdir(os.path.join(top, "crates")))]
    bad = 0
    for src in srcs:
        if not os.path.isdir(src):
            continue
        mods = modules(src)
        edges = {}
        for here, f in mods.items():
            text = strip(open(f, encoding="utf-8").read())
            for anchor, segs in paths(text):
                t = resolve(mods, here, anchor, segs)
                if not related(t, here):
                    edges.setdefault(here, set()).add(t)
        crate = os.path.basename(os.path.dirname(src))
        for comp in sccs(list(mods), edges):
            if len(comp) > 1:
                bad += 1
                names = sorted("::".join(m) or "(root)" for m in comp)
                print(f"{crate}: import cycle among {', '.join(names)}")
        print(f"{crate}: {len(mods)} modules, {sum(len(e) for e in edges.values())} edges checked")
    if bad:
        sys.exit(1)

main()
