"""The package's import graph, as a reader follows it: every import counts, module-level,
function-level and type-only alike. No circles anywhere; between the domains of core/ only the
arrows batchin/core/__init__.py (and docs/reference/architecture.mdx) allow; core imports no
transport; runners know no users or money."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "batchin"

# Each core domain and the domains it may import (besides the shared pieces at core/'s top level).
ALLOWED: dict[str, set[str]] = {
    "batches": {"serving", "media", "billing", "accounts"},
    "experiments": {"prompts", "serving", "media", "billing", "accounts"},
    "media": {"serving", "billing"},
    "serving": {"audit", "traces", "prompts", "billing"},
    "prompts": {"audit"},
    "accounts": {"billing"},
    "traces": {"billing"},
    "audit": set(),
    "webhooks": set(),
    "billing": set(),
}
SHARED = "(shared)"  # the modules at core/'s top level: they import no domain


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            for target in targets:
                if target.split(".")[0] != "batchin":
                    continue
                resolved = owner(target)
                if resolved and resolved != name:
                    edges[name].add(resolved)
    return edges


def _external_imports(prefix: str) -> set[tuple[str, str]]:
    found = set()
    for name, path in _modules().items():
        if not name.startswith(prefix):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {(name, alias.name.split(".")[0]) for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add((name, node.module.split(".")[0]))
    return found


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _domain(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] != ["batchin", "core"] or len(parts) < 3:
        return None
    return parts[2] if parts[2] in ALLOWED else SHARED


def test_no_module_imports_itself_through_a_circle() -> None:
    assert _cycles(_graph()) == []


def test_core_domains_import_only_the_allowed_ones() -> None:
    wrong = set()
    for module, targets in _graph().items():
        source = _domain(module)
        for target in targets:
            dest = _domain(target)
            if source is None or dest is None or source == dest or dest == SHARED:
                continue
            if source == SHARED or dest not in ALLOWED[source]:
                wrong.add(f"{module} -> {target}")
    assert sorted(wrong) == []


def test_every_core_module_belongs_to_a_known_domain_or_the_shared_pieces() -> None:
    core = PACKAGE / "core"
    packages = {p.name for p in core.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(ALLOWED)


@pytest.mark.parametrize("transport", ["starlette", "mcp", "fastmcp", "sse_starlette", "uvicorn", "torch"])
def test_core_imports_no_transport_and_no_engine(transport: str) -> None:
    assert sorted(m for m, top in _external_imports("batchin.core") if top == transport) == []


def test_runners_know_no_users_or_money() -> None:
    reaching_up = {
        f"{module} -> {target}"
        for module, targets in _graph().items()
        if module.startswith("batchin.models")
        for target in targets
        if target.startswith(("batchin.core", "batchin.store", "batchin.http_api", "batchin.mcp_server"))
    }
    assert sorted(reaching_up) == []


def test_the_domain_table_is_the_one_core_documents() -> None:
    """The table in core/__init__.py lists each domain with what it may import."""
    doc = (PACKAGE / "core" / "__init__.py").read_text()
    for domain, allowed in ALLOWED.items():
        line = next((ln for ln in doc.splitlines() if ln.split()[:1] == [domain]), None)
        assert line is not None, domain
        listed = {word.strip(",") for word in line.split("(")[0].split()[1:]} - {"—"}
        assert listed == allowed, domain
