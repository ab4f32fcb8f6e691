"""Lists import cycles between the modules of a crate's src/ folder (flat layout): module A
uses `crate::b` and module b, directly or through others, uses `crate::a`. Doc comments and
comments are ignored. Exit status 1 when a cycle exists.

    python3 scripts/tools/module_cycles.py src esm-local/src xtask/src
"""
import glob
import os
import re
import sys


def graph(root):
    modules = {}
    for path in glob.glob(os.path.join(root, "*.rs")):
        code = "\n".join(
            line for line in open(path, encoding="utf-8") if not line.lstrip().startswith("//")
        )
        modules[os.path.basename(path)[:-3]] = code
    return {
        name: {used for used in re.findall(r"crate::([a-z_]+)", code) if used in modules and used != name}
        for name, code in modules.items()
    }


def cycles(edges):
    found = set()

    def visit(node, path):
        for nxt in sorted(edges[node]):
            if nxt in path:
                cycle = path[path.index(nxt):]
                start = cycle.index(min(cycle))
                found.add(tuple(cycle[start:] + cycle[:start]))
            else:
                visit(nxt, path + [nxt])

    for node in edges:
        visit(node, [node])
    return sorted(found)


def main(roots):
    failed = False
    for root in roots:
        found = cycles(graph(root))
        for cycle in found:
            print(f"{root}: {' -> '.join(cycle + (cycle[0],))}")
        failed |= bool(found)
        if not found:
            print(f"{root}: no import cycles")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["src"]))
