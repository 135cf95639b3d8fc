#!/usr/bin/env python3
"""The gateway crate's module graph: which top-level folder or file uses which (from the
`crate::` paths in gateway/src), checked for cycles.

  scripts/module-graph.py            prints the edges and exits 1 if there is a cycle
  scripts/module-graph.py --dot F    also writes the graph as Graphviz DOT to F
  scripts/module-graph.py --max-lines N   also fails on a source file over N lines

A module's own tests (`tests.rs`, `#[cfg(test)]` blocks) are left out: they may reach
anywhere. Part of scripts/test.sh, so a cycle fails the gate.
"""
import argparse
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "gateway" / "src"
USE = re.compile(r"crate::([a-z_]+)")


def top_module(path: pathlib.Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".rs")


def code_without_tests(text: str) -> str:
    # Drop everything from the first `#[cfg(test)]` on: by convention the tests come last.
    cut = text.find("#[cfg(test)]")
    code = text if cut < 0 else text[:cut]
    # Doc comments name modules in links; they are not dependencies.
    return "\n".join(line for line in code.splitlines() if not line.lstrip().startswith("//"))


def graph():
    edges = {}
    for path in sorted(SRC.rglob("*.rs")):
        if path.name == "tests.rs" or path.name == "main.rs":
            continue
        src = top_module(path)
        if src == "lib":
            continue
        for dst in USE.findall(code_without_tests(path.read_text())):
            if dst != src:
                edges.setdefault(src, set()).add(dst)
    return edges


def find_cycle(edges):
    state = {}
    stack = []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == "open":
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = "done"
        return None

    for n in sorted(edges):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dot")
    ap.add_argument("--max-lines", type=int)
    args = ap.parse_args()
    edges = graph()
    for src in sorted(edges):
        print(f"{src} -> {', '.join(sorted(edges[src]))}")
    if args.dot:
        lines = ["digraph trackgate {", "  rankdir=LR; node [shape=box, fontname=monospace];"]
        lines += [f"  {s} -> {d};" for s in sorted(edges) for d in sorted(edges[s])]
        lines.append("}")
        pathlib.Path(args.dot).write_text("\n".join(lines) + "\n")
    failed = False
    cycle = find_cycle(edges)
    if cycle:
        print("module cycle: " + " -> ".join(cycle), file=sys.stderr)
        failed = True
    if args.max_lines:
        for path in sorted(SRC.rglob("*.rs")):
            n = len(path.read_text().splitlines())
            if n > args.max_lines and path.name != "tests.rs":
                print(f"{path.relative_to(SRC)}: {n} lines (over {args.max_lines})", file=sys.stderr)
                failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
