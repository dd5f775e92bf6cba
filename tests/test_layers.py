"""The layers of `server/` import only downward, and no module imports itself around a
circle — `TYPE_CHECKING` imports and imports inside functions included.

LAYERS is the whole order, bottom first; a module may import its own layer and the layers
below it. Inside a layer any order is fine as long as there is no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parent.parent
SERVER = ROOT / "server"

LAYERS: list[set[str]] = [
    {"errors", "settings", "clock", "events", "signals"},  # only each other
    {"facts", "validate"},                       # the domain's shared facts, input rules
    {"auth"},                                    # tokens and identities
    {"observe"},                                 # metrics, logs, GC timing
    {"valkey"},                                  # store, keys, scripts, batching, Lua
    {"edge"},                                    # bytes, frames, codecs, connections
    {"fanout"},                                  # hub (local rooms), broker (pub/sub)
    {"video"},                                   # HLS playlists, stream sources
    {"counters"},                                # presence, attribution, ledger, reports
    {"cart"},                                    # products, carts, orders, the saga
    {"rooms"},                                   # sessions, pins, deals, chat, auctions
    {"node"},                                    # the composition root
    {"api"},                                     # HTTP routes, OpenAPI, the demo's pages
    {"app"},                                     # the ASGI app
    {"runtime"},                                 # CLI, workers, tools
    {"launch"},                                  # the `livecart` entry point
]


def unit(module: str) -> str:
    """`server.cart.saga` -> `cart` (the top-level module or package it belongs to)."""
    return module.split(".")[1]


def tier(module: str) -> int:
    for i, layer in enumerate(LAYERS):
        if unit(module) in layer:
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, known: set[str]) -> set[str]:
    """Every `server.*` module this file imports, anywhere in it (`from server.x import y`
    counts as `server.x.y` when that is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and (
                node.module == "server" or node.module.startswith("server.")):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("server."))
    return {m for m in found if m != "server"}


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in SERVER.rglob("*.py")}
    known = set(paths)
    return {name: imports(path, known) for name, path in paths.items() if name != "server"}


def test_every_module_has_a_layer() -> None:
    for name in graph():
        tier(name)


def test_layers_import_only_downward() -> None:
    wrong = [f"{name} imports {dep}"
             for name, deps in graph().items() for dep in sorted(deps)
             if tier(dep) > tier(name)]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    edges = graph()
    done: set[str] = set()
    path: list[str] = []

    def visit(name: str) -> None:
        if name in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(name):], name]))
        if name in done:
            return
        path.append(name)
        for dep in sorted(edges.get(name, ())):
            visit(dep)
        path.pop()
        done.add(name)

    for name in sorted(edges):
        visit(name)


def test_top_level_stays_small() -> None:
    top = [p.name for p in SERVER.glob("*.py") if p.name != "__init__.py"]
    assert len(top) <= 12, sorted(top)


def test_the_checker_sees_type_checking_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                     "    from server.node import Node\n"
                     "def f() -> None:\n    from server.cart import saga\n")
    assert imports(probe, {"server.cart.saga"}) == {"server.node", "server.cart.saga"}
