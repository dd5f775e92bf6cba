"""The domain packages import only downward: facts <- counters <- cart <- rooms."""

from __future__ import annotations

import ast
from pathlib import Path

SERVER = Path(__file__).parent.parent / "server"
ORDER = ["facts", "counters", "cart", "rooms"]  # each may import only those before it


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("server."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[1] for a in node.names
                         if a.name.startswith("server."))
    return names


def test_domain_packages_import_downward_only() -> None:
    files = {"facts": [SERVER / "facts.py"],
             **{pkg: sorted((SERVER / pkg).glob("*.py")) for pkg in ORDER[1:]}}
    for pkg, paths in files.items():
        above = set(ORDER[ORDER.index(pkg) + 1:])
        for path in paths:
            wrong = imported(path) & above
            assert not wrong, f"{path.relative_to(SERVER)} imports {sorted(wrong)} (above it)"
    assert not imported(SERVER / "facts.py") - {"facts"}, "facts.py is the bottom"
