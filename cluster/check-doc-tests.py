#!/usr/bin/env python3
"""Every test the docs name exists: each `SomethingTests` in backticks is a test type under
Tests/, and each quoted name after it ("…" for the parts left out) is the display name of a
@Test or @Suite there. A claim in docs/security.md that names a test renamed or deleted fails the
suite here instead of pointing a reader at nothing.

    cluster/check-doc-tests.py            # from anywhere in the repository; exit 1 names each miss
"""
import glob
import os
import re
import sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISPLAY_NAME = re.compile(r'@(?:Test|Suite)\("((?:[^"\\]|\\.)*)"')
TYPE = re.compile(r"\b(?:struct|class|enum|actor)\s+(\w+)")
# A type in backticks, then one or more quoted names separated by commas (or "and").
REFERENCE = re.compile(r'`(\w+Tests)`((?:\s*(?:,|and)?\s*"[^"]+")*)')


def squash(text):
    return " ".join(text.split())


def named_by(quote, name):
    """Whether a doc's quote names this test: its pieces, split at "…", in order, the first at
    the start, and the last at the end unless the quote ends with "…"."""
    pieces = [p.strip() for p in quote.split("…")]
    at = 0
    for index, piece in enumerate(pieces):
        if not piece:
            continue
        found = name.find(piece, at)
        if found < 0 or (index == 0 and found != 0):
            return False
        at = found + len(piece)
    return quote.endswith("…") or at == len(name)


def main():
    names, types = [], set()
    for path in glob.glob(os.path.join(root, "Tests/**/*.swift"), recursive=True):
        source = open(path, encoding="utf-8").read()
        names += [squash(m.group(1).replace('\\"', '"')) for m in DISPLAY_NAME.finditer(source)]
        types.update(TYPE.findall(source))
    misses, checked = [], 0
    for doc in sorted(glob.glob(os.path.join(root, "docs/*.md"))) + [os.path.join(root, "README.md")]:
        text = open(doc, encoding="utf-8").read()
        for match in REFERENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            where = f"{os.path.relpath(doc, root)}:{line}"
            if match.group(1) not in types:
                misses.append(f"{where}: no test type {match.group(1)} under Tests/")
            for quote in re.findall(r'"([^"]+)"', match.group(2)):
                checked += 1
                quote = squash(quote)
                if not any(named_by(quote, name) for name in names):
                    misses.append(f'{where}: {match.group(1)} has no test named "{quote}"')
    for miss in misses:
        print(miss, file=sys.stderr)
    print(f"check-doc-tests: {checked} test names in the docs, {len(misses)} not found")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
