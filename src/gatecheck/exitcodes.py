"""``gatecheck`` exit codes (docs/commands.md), importable without pydantic for a fast CLI start."""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """``gatecheck run`` exit codes."""

    GO = 0
    NO_GO = 1
    USAGE = 2  # bad configuration, bad arguments, internal error
    INCONCLUSIVE = 3
    ROLLBACK = 4

    @classmethod
    def for_verdict(cls, verdict: Any) -> ExitCode:
        """The code for a verdict (a ``VerdictState`` or its value: go, no-go, …)."""
        return {"go": cls.GO, "no-go": cls.NO_GO, "inconclusive": cls.INCONCLUSIVE, "rollback": cls.ROLLBACK}[
            getattr(verdict, "value", verdict)
        ]
