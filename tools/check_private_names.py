"""Fail when a package imports another package's private names.

import-linter (``make lint``) already keeps the floors in order, forbids cycles and keeps private
modules private. It sees modules only, so ``from edgenas.cli import _fail`` would pass it; this
check reads the imports and rejects any name with a leading underscore taken from another package.
A package's ``__init__`` is its public face: export what others need from there.

Usage: python tools/check_private_names.py [SRC_DIR]   (default: src)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = "edgenas"
# base modules every floor may use
SHARED = {f"{ROOT}._io", f"{ROOT}._eta", f"{ROOT}.errors"}


def _module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package(module: str) -> str:
    """The first floor below the root: ``edgenas.study._runner`` -> ``edgenas.study``."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str | None:
    if node.level == 0:
        return node.module
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def violations(src: Path) -> list[str]:
    found = []
    for path in sorted((src / ROOT).rglob("*.py")):
        module = _module_name(path, src)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            target = _absolute(node, module, path.name == "__init__.py")
            if not target or not (target == ROOT or target.startswith(ROOT + ".")):
                continue
            # the root's __init__ is the public face of everything below it
            if module == ROOT or target in SHARED or _package(target) == _package(module):
                continue
            steps = target.split(".")[1:]
            names = [alias.name for alias in node.names]
            bad = [s for s in steps if _private(s)] + [n for n in names if _private(n)]
            if bad:
                face = _package(target)
                fix = (
                    f"export it from {face} (its __init__ and __all__) and import it from there"
                    if not _private(face.rsplit(".", 1)[-1])
                    else f"{face} is private to {ROOT}: move what is shared into a package"
                )
                found.append(
                    f"{path}:{node.lineno}: {module} imports {', '.join(bad)} from {target}; {fix}"
                )
    return found


def main(argv: list[str]) -> int:
    src = Path(argv[1]) if len(argv) > 1 else Path("src")
    found = violations(src)
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} private import(s) across packages")
        return 1
    print("no private imports across packages")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
