"""The compact answer for rollout controllers (``?view=compact``): the verdict, its one-line
reason, the checks that block, and links — a few hundred bytes, because Argo Rollouts' web
provider keeps the whole answer as each measurement's value (up to 10 per metric in the
AnalysisRun's status, printed by ``kubectl``) and Flagger shows a failed webhook's body.
"""

from __future__ import annotations

from typing import Any

from gatecheck._values import document_time
from gatecheck.errors import one_line
from gatecheck.results import Outcome, Verdict, blocking

#: At most this many checks are named; each line and the reason are cut to these lengths.
MAX_FAILING = 4
MAX_LINE = 80
MAX_REASON = 160


def _cut(text: str, length: int) -> str:
    text = one_line(text)
    return text if len(text) <= length else text[: length - 1] + "…"


def compact(verdict: Verdict, base_url: str) -> dict[str, Any]:
    """The verdict in a few hundred bytes: enough for a rollout's status to say why."""
    standing = [
        c for c in verdict.checks if blocking(c) and c.outcome is not Outcome.PASS and c.waiver is None
    ]
    standing.sort(key=lambda c: (c.role != "rollback", c.outcome is not Outcome.FAIL))
    lines = [_cut(f"{c.suite} {c.outcome.value}: {c.reason or ''}".rstrip(": "), MAX_LINE) for c in standing]
    if len(lines) > MAX_FAILING:
        lines = [*lines[: MAX_FAILING - 1], f"… and {len(lines) - MAX_FAILING + 1} more"]
    return {
        "phase": verdict.phase,
        "verdict": verdict.verdict.value,
        "as_of": document_time(verdict.as_of),
        "reason": _cut(verdict.reasons[0], MAX_REASON) if verdict.reasons else "",
        "failing": lines,
        "page": f"{base_url}/phases/{verdict.phase}",
    }


def compact_text(verdict: Verdict, base_url: str) -> str:
    """The same as plain text (Flagger's webhook answers): a line each."""
    found = compact(verdict, base_url)
    lines = [f"{found['phase']}: {found['verdict'].upper()} as of {found['as_of']} — {found['reason']}"]
    lines += [f"  {line}" for line in found["failing"]]
    lines.append(found["page"])
    return "\n".join(lines) + "\n"
