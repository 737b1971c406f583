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
    assert leaves and not imported & leaves
    assert not {m for m in imported if m.startswith(("gatecheck.config", "gatecheck.engine", "gatecheck.gate"))}


def test_one_registry_maps_each_type_to_its_leaf_config_and_query_forms() -> None:
    union = typing.get_args(typing.get_args(SourceConfig)[0])
    assert set(union) == {kind.config for kind in SOURCE_TYPES.values()}
    for name, kind in SOURCE_TYPES.items():
        assert typing.get_args(kind.config.model_fields["type"].annotation) == (name,)
        # The leaf owns its configuration model.
        assert kind.config.__module__.startswith("gatecheck.sources.")
    assert {form.__module__ for form in QUERY_FORMS.values()} <= {f"gatecheck.sources.{t}" for t in SOURCE_TYPES}


def test_no_module_keeps_great_expectations_chdb_or_executors_in_module_state() -> None:
    # The engine owns them: one GE validator and its thread, one ClickHouse hub, per engine.
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        assert "lru_cache" not in text, path
        assert "chdb.session" not in text and "chdb_session" not in text, path
        if path.name != "engine.py":
            assert "ThreadPoolExecutor(" not in text, path
        for node in ast.parse(text).body:  # module level
            if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Call):
                called = ast.unparse(node.value.func)
                assert not called.endswith(("Executor", "Session", "get_context", "get_client", "Lock", "RLock")), (
                    f"{path}: module-level {called}()"
                )
