"""A change of verdict as CloudEvents 1.0 in structured mode (notify ``kind: cloudevents``),
built and encoded by the CloudEvents SDK.

Two events per change, in this order:

- ``dev.cdevents.testsuiterun.finished.0.2.0`` — the evaluation that changed the verdict, as a
  CDEvents (spec 0.4.1) test suite run: the gate is the test suite, the environment its
  environment; GO is ``success``, NO-GO and ROLLBACK ``failure``, INCONCLUSIVE ``error``.
- ``dev.gatecheck.verdict.changed.v1`` — gatecheck's own: the phase, the verdict before and
  after, the reasons, the checks that did not pass, and links to the verdict and its page.

Each event's ``id`` is derived from the phase, the evaluation's ``as_of`` and the type, so a
receiver can drop a delivery retried after a lost answer.
"""

from __future__ import annotations

import hashlib
from typing import Any

from cloudevents.core.bindings.http import to_structured_event
from cloudevents.core.v1.event import CloudEvent

from gatecheck._values import document_time
from gatecheck.results import Outcome, Verdict, VerdictState

CDEVENTS_TYPE = "dev.cdevents.testsuiterun.finished.0.2.0"
CDEVENTS_VERSION = "0.4.1"
VERDICT_CHANGED = "dev.gatecheck.verdict.changed.v1"

_OUTCOME = {
    VerdictState.GO: "success",
    VerdictState.NO_GO: "failure",
    VerdictState.ROLLBACK: "failure",
    VerdictState.INCONCLUSIVE: "error",
}
_SEVERITY = {
    VerdictState.ROLLBACK: "critical",
    VerdictState.NO_GO: "high",
    VerdictState.INCONCLUSIVE: "medium",
}


def _id(verdict: Verdict, kind: str) -> str:
    text = f"{verdict.phase}|{document_time(verdict.as_of)}|{kind}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def essentials(previous: Verdict | None, verdict: Verdict, base_url: str) -> dict[str, Any]:
    """The verdict document's essentials and where to read the rest."""
    return {
        "phase": verdict.phase,
        "environment": verdict.environment,
        "previous": previous.verdict.value if previous is not None else None,
        "verdict": verdict.verdict.value,
        "as_of": document_time(verdict.as_of),
        "reasons": verdict.reasons,
        "checks": [
            {"suite": c.suite, "role": c.role, "outcome": c.outcome.value, "reason": c.reason}
            for c in verdict.checks
            if c.outcome is not Outcome.PASS
        ],
        "config_hash": verdict.config_hash,
        "url": f"{base_url}/api/v1/phases/{verdict.phase}/verdict",
        "page": f"{base_url}/phases/{verdict.phase}",
    }


def verdict_events(
    previous: Verdict | None, verdict: Verdict, base_url: str
) -> list[tuple[dict[str, str], bytes]]:
    """The change as structured-mode HTTP messages: (headers, body) each."""
    source = f"{base_url}/api/v1/phases/{verdict.phase}"
    reason = "; ".join(verdict.reasons)
    content: dict[str, Any] = {
        "outcome": _OUTCOME[verdict.verdict],
        "environment": {"id": verdict.environment},
        "testSuite": {"id": verdict.phase, "name": verdict.description or verdict.phase},
    }
    if reason:
        content["reason"] = reason
    if verdict.verdict in _SEVERITY:
        content["severity"] = _SEVERITY[verdict.verdict]
    cdevent_id = _id(verdict, CDEVENTS_TYPE)
    cdevent = {
        "context": {
            "version": CDEVENTS_VERSION,
            "id": cdevent_id,
            "source": source,
            "type": CDEVENTS_TYPE,
            "timestamp": document_time(verdict.as_of),
        },
        "subject": {
            "id": f"{verdict.phase}@{document_time(verdict.as_of)}",
            "source": source,
            "content": content,
        },
    }
    events = [
        CloudEvent(
            attributes={
                "id": cdevent_id,
                "source": source,
                "type": CDEVENTS_TYPE,
                "time": verdict.as_of,
                "subject": verdict.phase,
                "datacontenttype": "application/json",
            },
            data=cdevent,
        ),
        CloudEvent(
            attributes={
                "id": _id(verdict, VERDICT_CHANGED),
                "source": source,
                "type": VERDICT_CHANGED,
                "time": verdict.as_of,
                "subject": verdict.phase,
                "datacontenttype": "application/json",
            },
            data=essentials(previous, verdict, base_url),
        ),
    ]
    messages = [to_structured_event(event) for event in events]
    return [(dict(message.headers), message.body) for message in messages]
