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
