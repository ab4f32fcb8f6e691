"""Lists the Rust functions longer than --max-fn lines and the files with more than --max-file
lines of code (neither blank nor only a comment), so that every file reads in one sitting and
every function top-down. A file's `#[cfg(test)]` module counts for its functions but not for
its size. Exit status 1 when anything is over.

    python3 scripts/tools/code_size.py --max-fn 100 --max-file 600 src esm-local/src benches
"""
import os
import re
import sys

from files import files_under

FN = re.compile(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+([a-z_][a-z0-9_]*)")


def strip(line):
    """The line without string and char literals and comments, for counting braces."""
    line = re.sub(r'"(?:\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(?:\\.|[^'\\])'", "''", line)
    return line.split("//", 1)[0]


def functions(lines):
    """(name, first line, length) of each function with a body."""
    found = []
    for index, line in enumerate(lines):
        match = FN.match(line)
        if not match:
            continue
        depth = 0
        opened = False
        for end in range(index, len(lines)):
            code = strip(lines[end])
            if not opened and ";" in code and "{" not in code:
                break  # a declaration without a body (a trait method)
            depth += code.count("{") - code.count("}")
            opened |= "{" in code
            if opened and depth <= 0:
                found.append((match.group(1), index + 1, end - index + 1))
                break
    return found


def code_lines(lines):
    count = 0
    for line in lines:
        if line.lstrip().startswith("#[cfg(test)]"):
            break
        text = line.strip()
        if text and not text.startswith("//"):
            count += 1
    return count


def main(argv):
    max_fn, max_file, paths = 100, 600, []
    args = iter(argv)
    for arg in args:
        if arg == "--max-fn":
            max_fn = int(next(args))
        elif arg == "--max-file":
            max_file = int(next(args))
        else:
            paths.append(arg)
    over = []
    for path in files_under(paths, ".rs"):
        with open(path, encoding="utf-8") as source:
            lines = source.read().splitlines()
        size = code_lines(lines)
        if size > max_file:
            over.append(f"{path}: {size} lines of code (at most {max_file})")
        for name, line, length in functions(lines):
            if length > max_fn:
                over.append(f"{path}:{line}: fn {name} is {length} lines (at most {max_fn})")
    for line in over:
        print(line)
    if not over:
        print(f"no function over {max_fn} lines, no file over {max_file} lines of code")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
