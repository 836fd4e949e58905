#!/usr/bin/env python3
"""Lists the import cycles between sibling modules of the workspace's crates; exits 1 if any.

The rule (ARCHITECTURE.md, "Invariants"): inside every crate, for each module that has
submodules, draw an edge from child A to child B when code anywhere inside A names an item that
lives inside B (through `crate::`, `super::` or `self::` paths, `use` lines included, following
`use` re-exports to where the item is defined). The siblings must form no cycle, so each module
reads top-down: a layer uses the ones below it, never the other way round. A child naming what
its parent module itself defines, and a parent naming its children, are containment, not edges.

It reads the source as text (comments and strings are blanked first), which is enough for this
codebase's plain `use` and path style; macros' generated paths are not seen.

Usage: scripts/module-cycles.py [CRATE_SRC_DIR...]   (default: every apps/*/src, packages/*/src)
"""

import glob
import os
import re
import sys

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
MOD_DECL = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", re.M)
PATH = re.compile(r"\b(crate|super|self)((?:\s*::\s*" + IDENT + r")+)")
USE = re.compile(r"\buse\s+([^;]*);", re.S)
INLINE_MOD = re.compile(r"\bmod\s+(" + IDENT + r")\s*\{")


def blank(text):
    """Replaces comments, string and char literals by spaces, keeping offsets and newlines."""
    out = list(text)
    i, n = 0, len(text)

    def wipe(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            wipe(i, j)
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            wipe(i, j)
            i = j
        elif re.match(r'(?:b|c)?r(#*)"', text[i:i + 40]) and (i == 0 or not text[i - 1].isalnum()):
            m = re.match(r'(?:b|c)?r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            wipe(i, j)
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            wipe(i, j + 1)
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{1F600}'), not a lifetime ('a).
            m = re.match(r"'(?:\\(?:u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|.)|[^\\'])'", text[i:])
            if m:
                wipe(i, i + m.end())
                i += m.end()
            else:
                i += 1
        else:
            i += 1
    return "".join(out)


def expand_use(tree):
    """`a::{b, c::{d, self}}` -> [['a', 'b'], ['a', 'c', 'd'], ['a', 'c']] (no whitespace in `tree`)."""
    tree = re.sub(r"\s+", "", tree)
    results = []

    def split_top(s):
        parts, depth, start = [], 0, 0
        for k, ch in enumerate(s):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(s[start:k])
                start = k + 1
        parts.append(s[start:])
        return [p for p in parts if p]

    def walk(prefix, s):
        if "{" in s and s.endswith("}"):
            head, inner = s[: s.index("{")], s[s.index("{") + 1: -1]
            head = [p for p in head.split("::") if p]
            for part in split_top(inner):
                walk(prefix + head, part)
            return
        segs = [p for p in s.split("::") if p]
        if segs and segs[-1] == "self":
            segs = segs[:-1]
        if not segs and not prefix:
            return
        full = prefix + segs
        results.append(full)

    walk([], tree)
    return results


class Crate:
    def __init__(self, root_file):
        self.root = root_file
        self.files = {}  # module path (tuple) -> file
        self.uses = {}  # module path -> {local name: absolute target path (list)}
        self.text = {}  # module path -> blanked text
        self.load((), root_file)

    def child_file(self, file, name):
        base = os.path.basename(file)
        d = os.path.dirname(file)
        if base not in ("lib.rs", "main.rs", "mod.rs"):
            d = os.path.join(d, base[:-3])
        for cand in (os.path.join(d, name + ".rs"), os.path.join(d, name, "mod.rs")):
            if os.path.exists(cand):
                return cand
        return None

    def load(self, path, file):
        with open(file, encoding="utf-8") as f:
            text = blank(f.read())
        self.files[path] = file
        self.text[path] = text
        for m in MOD_DECL.finditer(text):
            child = self.child_file(file, m.group(1))
            if child:
                self.load(path + (m.group(1),), child)

    def absolute(self, here, kind, segs):
        """The absolute segments a `crate::`/`super::`/`self::` path names from module `here`."""
        if kind == "crate":
            return list(segs)
        base = list(here)
        while kind == "super" or (segs and segs[0] == "super"):
            if kind == "super":
                kind = None
            else:
                segs = segs[1:]
            base = base[:-1]
        return base + list(segs)

    def collect_uses(self):
        for path, text in self.text.items():
            table = {}
            for m in USE.finditer(text):
                body = m.group(1)
                body = re.sub(r"\s+as\s+", " AS ", body)
                for full in expand_use(body.replace(" AS ", "__AS__")):
                    if not full:
                        continue
                    last = full[-1]
                    alias = last
                    if "__AS__" in last:
                        last, alias = last.split("__AS__")
                        full = full[:-1] + [last]
                    if full[0] in ("crate", "super", "self"):
                        target = self.absolute(path, full[0], full[1:])
                    elif path == () and full[0] in {p[0] for p in self.files if p}:
                        target = full  # `use child::X` in the crate root
                    else:
                        continue
                    if alias != "_" and alias != "*":
                        table[alias] = target
            self.uses[path] = table

    def resolve(self, segs, depth=0):
        """The module that defines the item `segs` names (following `use` re-exports)."""
        module = ()
        for i, seg in enumerate(segs):
            if module + (seg,) in self.files:
                module = module + (seg,)
                continue
            target = self.uses.get(module, {}).get(seg)
            if target is not None and depth < 16 and target != list(module) + [seg]:
                return self.resolve(target + list(segs[i + 1:]), depth + 1)
            return module
        return module

    def edges(self):
        """(parent, child_a, child_b) -> [(file, line, what)] for every sibling edge."""
        found = {}
        for path, text in self.text.items():
            inline = [(m.start(), m.group(1)) for m in INLINE_MOD.finditer(text)]
            for m in PATH.finditer(text):
                kind = m.group(1)
                segs = [s for s in re.split(r"\s*::\s*", m.group(2)) if s]
                # `super` inside an inline `mod tests {}` of this file means this file's module.
                here = path
                if kind == "super" and any(start < m.start() for start, _ in inline):
                    here = path + ("<inline>",)
                target = self.resolve(self.absolute(here, kind, segs))
                self.add(found, path, target, text, m.start(), m.group(0))
        return found

    def add(self, found, src, dst, text, offset, what):
        k = 0
        while k < len(src) and k < len(dst) and src[k] == dst[k]:
            k += 1
        if k >= len(src) or k >= len(dst):
            return  # one contains the other
        parent, a, b = src[:k], src[k], dst[k]
        line = text.count("\n", 0, offset) + 1
        found.setdefault((parent, a, b), []).append((self.files[src], line, re.sub(r"\s+", "", what)))


def cycles(crate):
    crate.collect_uses()
    found = crate.edges()
    by_parent = {}
    for (parent, a, b), sites in found.items():
        by_parent.setdefault(parent, {}).setdefault(a, {})[b] = sites
    out = []
    for parent, graph in by_parent.items():
        for scc in strongly_connected(graph):
            if len(scc) > 1:
                out.append((parent, scc, graph))
    return out


def strongly_connected(graph):
    index, low, stack, on, result, counter = {}, {}, [], set(), [], [0]
    nodes = set(graph) | {b for a in graph for b in graph[a]}

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            result.append(sorted(scc))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return result


def roots(src_dirs):
    for d in src_dirs:
        for name in ("lib.rs", "main.rs"):
            f = os.path.join(d, name)
            if os.path.exists(f):
                yield f
        for f in sorted(glob.glob(os.path.join(d, "bin", "*.rs"))):
            yield f


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(here)
    dirs = sys.argv[1:] or sorted(glob.glob(os.path.join(repo, "apps", "*", "src"))
                                  + glob.glob(os.path.join(repo, "packages", "*", "src")))
    bad = 0
    checked = 0
    for root in roots(dirs):
        crate = Crate(root)
        checked += len(crate.files)
        for parent, scc, graph in cycles(crate):
            bad += 1
            where = "::".join(("crate",) + parent)
            print(f"cycle in {os.path.relpath(root, repo)} under {where}: {' <-> '.join(scc)}")
            for a in scc:
                for b in scc:
                    sites = graph.get(a, {}).get(b)
                    if sites:
                        file, line, what = sites[0]
                        more = f" (+{len(sites) - 1} more)" if len(sites) > 1 else ""
                        print(f"  {a} -> {b}: {os.path.relpath(file, repo)}:{line} {what}{more}")
    if bad:
        print(f"{bad} module cycle(s) in {checked} modules", file=sys.stderr)
        return 1
    print(f"no module cycles ({checked} modules)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
