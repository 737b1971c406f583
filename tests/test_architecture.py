"""The structure the architecture page (docs/architecture.md) promises, checked on the source."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

from gatecheck.sources import QUERY_FORMS, SOURCE_TYPES, SourceConfig

SRC = Path(__file__).resolve().parents[1] / "src" / "gatecheck"


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_source_contract_imports_no_implementation() -> None:
    imported = imported_modules(SRC / "sources" / "base.py")
    leaves = {f"gatecheck.sources.{p.stem}" for p in (SRC / "sources").glob("*.py") if p.stem not in ("__init__", "base")}
    leaves |= {f"gatecheck.sources.{p.name}" for p in (SRC / "sources").iterdir() if (p / "__init__.py").is_file()}
    assert leaves and not {m for m in imported if any(m == leaf or m.startswith(leaf + ".") for leaf in leaves)}
    assert not {m for m in imported if m.startswith(("gatecheck.config", "gatecheck.evaluation"))}


def test_one_registry_maps_each_type_to_its_leaf_config_and_query_forms() -> None:
    union = typing.get_args(typing.get_args(SourceConfig)[0])
    assert set(union) == {kind.config for kind in SOURCE_TYPES.values()}
    for name, kind in SOURCE_TYPES.items():
        assert typing.get_args(kind.config.model_fields["type"].annotation) == (name,)
        # The leaf owns its configuration model.
        assert kind.config.__module__.startswith("gatecheck.sources.")
    # each query form belongs to its kind's module (or, for a kind that is a package, inside it)
    kinds = {f"gatecheck.sources.{t}" for t in SOURCE_TYPES}
    assert all(
        any(form.__module__ == k or form.__module__.startswith(k + ".") for k in kinds) for form in QUERY_FORMS.values()
    )


def test_no_module_keeps_great_expectations_chdb_or_executors_in_module_state() -> None:
    # The engine owns them: one GE validator and its thread, one ClickHouse hub, per engine.
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        # a cache holds plain values (a pure function of text: a YAML text's tree, copied for
        # each caller), the page templates or the one TLS context the HTTP clients share
        # (trusted CAs: configuration, no engine), never an engine
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef) and any("cache" in ast.unparse(d) for d in node.decorator_list):
                if (path.parent.name, node.name) in (
                    ("html", "_environment"), ("sources", "verified_tls"), ("config", "_parsed")
                ):  # fmt: skip
                    continue
                plain = ("str | None", "str", "bool", "tuple[tuple[str, str], ...]")  # immutable text, no engine
                assert node.returns is not None and ast.unparse(node.returns) in plain, (
                    f"{path}: {node.name} caches {ast.unparse(node.returns) if node.returns else 'anything'}"
                )
        assert "chdb.session" not in text and "chdb_session" not in text, path
        if path.name != "engine.py":
            assert "ThreadPoolExecutor(" not in text, path
        for node in ast.parse(text).body:  # module level
            if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Call):
                called = ast.unparse(node.value.func)
                assert not called.endswith(("Executor", "Session", "get_context", "get_client", "Lock", "RLock")), (
                    f"{path}: module-level {called}()"
                )


def _import_graph() -> dict[str, set[str]]:
    """Module → the gatecheck modules it imports, at its top or inside a function (a lazy
    import hides a cycle, it does not break it). Importing ``a.b.c`` imports the packages
    ``a`` and ``a.b`` too, except a module's own ancestors (their ``__init__`` has run)."""
    root = SRC.parent
    modules = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("gatecheck"):
                assert node.module is not None
                targets.append(node.module)
                targets += [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
            elif isinstance(node, ast.Import):
                targets += [a.name for a in node.names if a.name.startswith("gatecheck")]
            for target in targets:
                parts = target.split(".")
                for end in range(1, len(parts) + 1):
                    imported = ".".join(parts[:end])
                    if imported in modules and imported != name and not name.startswith(imported + "."):
                        graph[name].add(imported)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycle() -> None:
    assert _cycles(_import_graph()) == []


def test_the_cycle_finder_counts_lazy_imports_and_finds_a_cycle() -> None:
    graph = _import_graph()
    assert "gatecheck.evaluation.validation" in graph["gatecheck.cli._common"]  # inside a function only
    graph["gatecheck.results"].add("gatecheck.ledger.base")  # the ledger imports results
    assert any({"gatecheck.ledger.base", "gatecheck.results"} <= set(c) for c in _cycles(graph))


def test_a_module_over_500_lines_says_why_and_how_long_it_is() -> None:
    """Issue 32: no module over about 500 lines without a sentence at its top saying why —
    and the size it gives is the module's own, within a quarter (a module that grew past its
    sentence says so again)."""
    import re

    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        lines = len(path.read_text().splitlines())
        if lines <= 500:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        why = re.search(r"Why (?:one module of )?~([\d,]+) lines:", doc)
        if why is None:
            wrong.append(f"{path.relative_to(SRC)} ({lines} lines): no 'Why … ~N lines:' sentence")
            continue
        said = int(why.group(1).replace(",", ""))
        if not 0.75 * said <= lines <= 1.25 * said:
            wrong.append(f"{path.relative_to(SRC)}: says ~{said} lines, has {lines}")
    assert wrong == []


def test_the_architecture_page_names_every_module() -> None:
    """Issue 32: a newcomer finds each module of the package on docs/architecture.md — a
    module added without a word there fails here, naming it."""
    import re

    page = (SRC.parents[1] / "docs" / "architecture.md").read_text()
    tree = page.split("```")[1]  # the page's first block: the tree
    # named in the tree, as `NAME.py`, or in backticks — a word of the prose ("frozen") is not
    # the module
    named = (
        set(re.findall(r"[A-Za-z_]\w*", tree))
        | set(re.findall(r"([A-Za-z_]\w*)\.py", page))
        | set(re.findall(r"`(?:[\w/]+/)?([A-Za-z_]\w*)`", page))
    )
    unnamed = [
        str(path.relative_to(SRC))
        for path in sorted(SRC.rglob("*.py"))
        if path.stem != "__init__" and path.stem not in named
    ]
    assert unnamed == []
