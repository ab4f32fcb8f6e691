"""Checks that every relative link in the given Markdown files resolves: the file or folder
exists, and a `#fragment` names a heading of the target (GitHub's anchors: lower case, spaces to
hyphens, punctuation dropped). Links with a scheme (https:, mailto:) are not fetched. Exit
status 1 when a link does not resolve.

    python3 scripts/tools/check_links.py README.md CONTRIBUTING.md docs
"""
import os
import re
import sys

from files import files_under

LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*```")


def prose(path, keep_code=False):
    """The file's lines outside fenced code blocks, inline code removed unless keep_code."""
    inside = False
    with open(path, encoding="utf-8") as source:
        for number, line in enumerate(source, 1):
            if FENCE.match(line):
                inside = not inside
                continue
            if not inside:
                yield number, line if keep_code else re.sub(r"`[^`]*`", "", line)


def anchor(heading):
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path):
    found = set()
    counts = {}
    for _, line in prose(path, keep_code=True):
        match = re.match(r"^#{1,6}\s+(.*)", line)
        if match:
            base = anchor(match.group(1))
            count = counts.get(base, 0)
            counts[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def main(paths):
    broken = []
    checked = 0
    for path in files_under(paths, ".md"):
        for number, line in prose(path):
            for target in LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                    continue
                checked += 1
                file_part, _, fragment = target.partition("#")
                resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
                if not os.path.exists(resolved):
                    broken.append(f"{path}:{number}: {target} (no {resolved})")
                elif fragment and resolved.endswith(".md") and fragment not in anchors(resolved):
                    broken.append(f"{path}:{number}: {target} (no heading #{fragment} in {resolved})")
    for line in broken:
        print(line)
    if not broken:
        print(f"{checked} relative links, all resolve")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
