"""Deferred imports (gatecheck._deferred): what Great Expectations imports and gatecheck never
uses through it runs on first use, once, whole, whichever threads reach it."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatecheck._deferred import deferring


@pytest.fixture
def modules(tmp_path: Path) -> Iterator[Path]:
    """A directory on sys.path for modules written by the test (forgotten afterwards)."""
    sys.path.insert(0, str(tmp_path))
    before = set(sys.modules)
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in set(sys.modules) - before:
            del sys.modules[name]


def test_a_deferred_module_runs_on_first_use_and_once(modules: Path) -> None:
    (modules / "gc_heavy.py").write_text("import gc_runs\ngc_runs.RUNS.append(1)\nVALUE = 42\n")
    (modules / "gc_runs.py").write_text("RUNS = []\n")
    (modules / "gc_user.py").write_text("import gc_heavy\n")
    import gc_runs  # type: ignore[import-not-found]

    with deferring("gc_heavy"):
        import gc_user  # type: ignore[import-not-found]
    assert gc_runs.RUNS == []  # imported by gc_user, not run
    assert gc_user.gc_heavy.VALUE == 42
    from gc_heavy import VALUE  # type: ignore[import-not-found]

    assert VALUE == 42
    assert gc_runs.RUNS == [1]


def test_a_module_imported_before_is_left_as_it_is(modules: Path) -> None:
    (modules / "gc_early.py").write_text("VALUE = 1\n")
    import gc_early  # type: ignore[import-not-found]

    with deferring("gc_early"):
        import gc_early as again  # type: ignore[import-not-found]
    assert again is gc_early and type(again) is type(sys)


def test_a_failing_module_fails_at_first_use_as_it_would_at_import(modules: Path) -> None:
    (modules / "gc_broken.py").write_text("raise RuntimeError('broken at import')\n")
    with deferring("gc_broken"):
        import gc_broken  # type: ignore[import-not-found]
    with pytest.raises(RuntimeError, match="broken at import"):
        _ = gc_broken.anything


def test_a_thread_reaching_a_module_another_is_running_waits_for_it_whole(modules: Path) -> None:
    """Python 3.11's LazyLoader would hand the second thread the half-run module (no VALUE)."""
    (modules / "gc_events.py").write_text(
        "import threading\nSTARTED = threading.Event()\nGO = threading.Event()\n"
    )
    (modules / "gc_slow.py").write_text(
        "import gc_events\ngc_events.STARTED.set()\ngc_events.GO.wait(30)\nRUNS = [1]\nVALUE = 42\n"
    )
    import gc_events  # type: ignore[import-not-found]

    with deferring("gc_slow"):
        import gc_slow  # type: ignore[import-not-found]
    seen: dict[str, object] = {}

    def read(who: str) -> None:
        try:
            seen[who] = (gc_slow.VALUE, gc_slow.RUNS)
        except Exception as exc:
            seen[who] = exc

    first = threading.Thread(target=read, args=("first",))
    first.start()
    assert gc_events.STARTED.wait(30)  # the first thread is running the module
    second = threading.Thread(target=read, args=("second",))
    second.start()
    second.join(0.5)  # a chance to get ahead of the first thread (it must wait)
    gc_events.GO.set()
    first.join(30)
    second.join(30)
    assert seen == {"first": (42, [1]), "second": (42, [1])}


def test_great_expectations_is_imported_without_running_altair_or_scipy_stats() -> None:
    """In a process of its own: the modules' own submodules are not imported until first use;
    then both work."""
    code = (
        "import sys\n"
        "from gatecheck.evaluation.ge import gx\n"
        "assert gx.ExpectationSuite\n"
        "late = [m for m in ('altair.vegalite', 'scipy.stats._stats_py') if m in sys.modules]\n"
        "import altair as alt\n"
        "from scipy.stats import mannwhitneyu\n"
        "assert alt.Chart({'values': [{'x': 1}]}).mark_point().to_dict()['mark']['type'] == 'point'\n"
        "print(late, round(mannwhitneyu([1, 2, 3], [4, 5, 6]).pvalue, 2))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "0.1"]
