#!/usr/bin/env python3
"""Fails when a lower layer of contaccum includes a higher one.

The layers and what each may include are docs/ARCHITECTURE.md's table; this
script holds the same table (ALLOWED) and checks every #include "contaccum/..."
(and every relative include) in include/contaccum/<area>/ and src/<area>/.
Usage: scripts/check-layers.py [REPO_ROOT]
"""
import pathlib
import re
import sys

# area -> the other areas it may include (docs/ARCHITECTURE.md).
ALLOWED = {
    "core": set(),
    "io": {"core"},
    "text": {"core", "io"},
    "data": {"core", "io", "text"},
    "encoders": {"core", "io"},
    "model": {"core", "encoders"},
    "loss": {"core"},
    "memory": {"core", "loss"},
    "distributed": {"core"},
    "strategy": {"core", "data", "encoders", "model", "loss", "memory", "distributed"},
    "eval": {"core", "io", "text", "data", "encoders", "model", "distributed"},
    "train": {"core", "io", "text", "data", "encoders", "model", "loss", "memory", "distributed", "strategy", "eval"},
}
# Top-level headers: the umbrella includes everything; the test helper sits
# above the engine; version.h is generated.
TOP_LEVEL = {
    "contaccum": set(ALLOWED) | {"version"},
    "testing": {"core", "data", "encoders", "model", "strategy"},
    "version": set(),
    "pch": set(),
}

INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


def inside_area(path, target, root):
    """A relative include stays in the including file's src/<area>/ tree
    (e.g. src/distributed/backend/ and src/distributed/ include each other)."""
    rel = path.relative_to(root).parts
    if rel[0] != "src" or len(rel) < 3:
        return False
    area_dir = (root / "src" / rel[1]).resolve()
    resolved = (path.parent / target).resolve()
    return area_dir in resolved.parents


def area_of(path, root):
    rel = path.relative_to(root)
    parts = rel.parts
    if parts[0] == "include":
        parts = parts[2:]  # include/contaccum/...
    else:
        parts = parts[1:]  # src/...
    return parts[0] if len(parts) > 1 else path.stem


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parent.parent)
    files = sorted(list((root / "include" / "contaccum").rglob("*.h")) + list((root / "src").rglob("*.[hc]pp")) +
                   list((root / "src").rglob("*.h")))
    problems = []
    for f in sorted(set(files)):
        area = area_of(f, root)
        allowed = ALLOWED.get(area, TOP_LEVEL.get(area))
        if allowed is None:
            problems.append(f"{f.relative_to(root)}: area '{area}' is not in docs/ARCHITECTURE.md's table")
            continue
        text = f.read_text(encoding="utf-8")
        for m in INCLUDE.finditer(text):
            target = m.group(1)
            line = text.count("\n", 0, m.start()) + 1
            where = f"{f.relative_to(root)}:{line}"
            if target.startswith("contaccum/"):
                rest = target[len("contaccum/"):]
                dep = rest.split("/")[0] if "/" in rest else pathlib.Path(rest).stem
                if dep != area and dep not in allowed:
                    problems.append(f"{where}: '{area}' must not include '{target}' ('{dep}' is not below it)")
            elif "/" in target and not inside_area(f, target, root):
                problems.append(f"{where}: relative include '{target}' reaches outside its area's folder; "
                                "include public headers as \"contaccum/<area>/...\"")
    if problems:
        print("layer check failed (see docs/ARCHITECTURE.md):", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 1
    print(f"layer check: {len(set(files))} files, no include reaches a higher layer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
