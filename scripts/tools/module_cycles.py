"""Checks the module graph of a crate's src/ folder, folders included: no module uses `crate::b`
while b, directly or through others, uses it back, at the level of modules and at the level of
the top-level stages (a folder with everything inside it counts as one). With `--order`, also
that each listed top-level stage uses only the stages listed before it: the pipeline's order.
Comments and everything from the first `#[cfg(test)]` of a file on (its test module, which may
assemble several stages) are ignored. Exit status 1 when a check fails.

    python3 scripts/tools/module_cycles.py src --order lambda,config,decode,... esm-local/src
"""
import os
import re
import sys


def modules_of(root):
    """Module path (`a::b`) -> code, for every .rs file under root but the crate roots."""
    modules = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".rs"):
                continue
            relative = os.path.relpath(os.path.join(folder, name), root)[:-3].split(os.sep)
            if relative[-1] == "mod":
                relative = relative[:-1]
            if relative in (["lib"], ["main"]) or relative[:1] == ["bin"]:
                continue
            with open(os.path.join(folder, name), encoding="utf-8") as source:
                text = source.read()
            text = text.split("#[cfg(test)]", 1)[0]
            code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))
            modules["::".join(relative)] = code
    return modules


def graph(modules):
    edges = {}
    for name, code in modules.items():
        used = set()
        for path in re.findall(r"crate::((?:[a-z_][a-z0-9_]*)(?:::[a-z_][a-z0-9_]*)*)", code):
            parts = path.split("::")
            # The longest prefix that is a module: `crate::plan::stream::PlanStream` is plan::stream.
            for length in range(len(parts), 0, -1):
                candidate = "::".join(parts[:length])
                if candidate in modules:
                    if candidate != name and not name.startswith(candidate + "::"):
                        used.add(candidate)
                    break
        edges[name] = used
    return edges


def stage_graph(edges):
    stages = {}
    for name, used in edges.items():
        stage = name.split("::")[0]
        stages.setdefault(stage, set()).update(u.split("::")[0] for u in used)
    return {stage: {u for u in used if u != stage} for stage, used in stages.items()}


def cycles(edges):
    found = set()

    def visit(node, path):
        for nxt in sorted(edges.get(node, ())):
            if nxt in path:
                cycle = path[path.index(nxt):]
                start = cycle.index(min(cycle))
                found.add(tuple(cycle[start:] + cycle[:start]))
            else:
                visit(nxt, path + [nxt])

    for node in edges:
        visit(node, [node])
    return sorted(found)


def against_the_flow(stages, order):
    rank = {stage: index for index, stage in enumerate(order)}
    return sorted(
        (stage, used)
        for stage, uses in stages.items()
        for used in uses
        if stage in rank and used in rank and rank[used] > rank[stage]
    )


def main(argv):
    failed = False
    roots = []
    orders = {}
    args = iter(argv)
    for arg in args:
        if arg == "--order":
            orders[roots[-1]] = next(args).split(",")
        else:
            roots.append(arg)
    for root in roots or ["src"]:
        edges = graph(modules_of(root))
        stages = stage_graph(edges)
        problems = [f"{root}: {' -> '.join(c + (c[0],))}" for c in cycles(edges)]
        problems += [f"{root} (stages): {' -> '.join(c + (c[0],))}" for c in cycles(stages)]
        order = orders.get(root)
        if order:
            missing = sorted(set(stages) - set(order))
            problems += [f"{root}: stage {m} is not in --order" for m in missing]
            problems += [
                f"{root}: {stage} uses {used}, a later stage" for stage, used in against_the_flow(stages, order)
            ]
        for problem in problems:
            print(problem)
        failed |= bool(problems)
        if not problems:
            ordered = " in the pipeline's order" if order else ""
            print(f"{root}: {len(edges)} modules, no import cycles{ordered}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
