"""The worker's memory ceiling against the container's: a ``memory_limit_mib`` above what the
container may use never takes effect (the kernel kills the worker mid-evaluation first), and
``serve`` says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatecheck.service.worker import BESIDE_THE_WORKER, container_memory_limit, memory_limit_warning

MIB = 2**20


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({"memory.max": "1073741824\n"}, 1024 * MIB),  # cgroup v2, a limit
        ({"memory.max": "max\n"}, None),  # cgroup v2, none
        ({"memory/memory.limit_in_bytes": "3221225472\n"}, 3072 * MIB),  # cgroup v1, a limit
        ({"memory/memory.limit_in_bytes": "9223372036854771712\n"}, None),  # v1's "unlimited"
        ({}, None),  # not in a cgroup we can read
    ],
)
def test_the_containers_limit_is_read_from_either_cgroup_version(
    tmp_path: Path, files: dict[str, str], limit: int | None
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert container_memory_limit(tmp_path) == limit


def test_a_worker_ceiling_the_container_cannot_hold_is_named_with_one_that_fits() -> None:
    # the default ceiling in the 1 GiB the shipped manifests used to give
    said = memory_limit_warning(2048 * MIB, 1024 * MIB)
    assert said is not None
    assert said.startswith("service.worker.memory_limit_mib (2048) cannot take effect in this container's memory limit (1024 MiB")
    assert "set it to 512 or less, or raise the container's limit" in said
    # too small a container for any ceiling: only raising it helps
    assert memory_limit_warning(2048 * MIB, 520 * MIB).endswith("raise the container's limit")  # type: ignore[union-attr]
    # room for the ceiling and what runs beside the worker; no container limit; no ceiling
    assert memory_limit_warning(2048 * MIB, 2048 * MIB + BESIDE_THE_WORKER) is None
    assert memory_limit_warning(2048 * MIB, 2048 * MIB + BESIDE_THE_WORKER - 1) is not None
    assert memory_limit_warning(2048 * MIB, None) is None


def test_serve_says_so_at_start_in_a_container_too_small_for_the_ceiling(config_copy: Path, tmp_path: Path) -> None:
    """`gatecheck serve` reads the container's limit at start and logs the warning before it
    starts the worker (a container of 1 GiB, as the shipped manifests once gave, stands in for
    the cgroup this machine does not limit). It logs too each soak its interval cannot cover
    (an hour between evaluations, soaks whose max_gap is 30 minutes)."""
    import os
    import subprocess
    import sys

    import yaml

    project = yaml.safe_load((config_copy / "gatecheck.yaml").read_text())
    project["service"]["interval"] = "1h"
    (config_copy / "gatecheck.yaml").write_text(yaml.safe_dump(project))
    script = (
        "import sys\n"
        "import gatecheck.service.worker as worker\n"
        "worker.container_memory_limit = lambda cgroup=None: 1024 * 2**20\n"
        "from gatecheck.cli import main\n"
        f"sys.argv = ['gatecheck', 'serve', '--config', {str(config_copy)!r}, '--listen', '127.0.0.1:0']\n"
        "main()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATECHECK_")}
    env["GATECHECK_HISTORY_URL"] = f"sqlite:///{tmp_path / 'history.db'}"
    process = subprocess.Popen(
        [sys.executable, "-c", script], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        # the warning comes before the worker starts: its "ready" line (or the end) says it did not
        said = ""
        lines = []
        for line in process.stderr or ():
            lines.append(line)
            if not said and ("memory_limit_mib" in line or "evaluation worker" in line):
                said = line
            if "staging-soak GO" in line or "evaluation worker" in line:
                break
        assert "WARNING gatecheck.service: service.worker.memory_limit_mib (2048) cannot take effect" in said, said
        assert "(1024 MiB, of which about 512 MiB" in said and "set it to 512 or less" in said
        soaks = [line.split("WARNING gatecheck.service: ")[1].strip() for line in lines if "max_gap" in line]
        assert soaks == [
            f"gatecheck.yaml: service.interval: 1h is not shorter than the soak's max_gap 30m in gates/{p}.yaml: "
            f"evaluations 1h apart break the soak every time, so the service alone never makes {p} GO"
            for p in ("prod-soak", "staging-soak")
        ], lines
    finally:
        process.kill()
        process.wait(timeout=30)
        if process.stderr is not None:
            process.stderr.close()
