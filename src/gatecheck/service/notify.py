"""Notifications on verdict change: ``notify:`` targets of ``gatecheck serve``.

One message per *change* of a phase's verdict (never per evaluation), to each target that
covers the phase and wants changes into the new verdict; the same change again within the
target's ``suppress`` time is not sent. Delivery runs on tasks of its own with a timeout per
attempt and a bounded retry with exponential backoff (tenacity): it never blocks or delays an
evaluation. Every outcome is counted (``gatecheck_notifications_total{target, result}``) and a
failed delivery is logged by target name — a webhook URL is a secret and never appears in a
log line, a metric or an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from gatecheck._values import document_time, timestamp
from gatecheck.config import NotifyTarget
from gatecheck.config.models import webhook_url_problem
from gatecheck.durations import format_duration
from gatecheck.errors import SourceTimeout, one_line
from gatecheck.render.describe import failure_text, keys_found, waiver_text
from gatecheck.results import Outcome, Verdict, VerdictState
from gatecheck.sources._http import AnswerTooLarge, fetch, verified_tls

log = logging.getLogger("gatecheck.notify")

#: At most this many deliveries under way at once; more are dropped and counted.
MAX_PENDING = 100


class _HideUrls(logging.Filter):
    """httpx logs every request's URL at INFO: a webhook URL is a secret, so it is replaced."""

    def __init__(self, notifier: Notifier) -> None:
        super().__init__()
        self.notifier = notifier

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
            for url in self.notifier.urls():
                if url in message:
                    message = message.replace(url, "<notify webhook URL>")
                    record.msg, record.args = message, ()
        except Exception:  # a filter never breaks the logging (or the request) it sits on
            pass
        return True


def _hide_urls_from_httpx_log(notifier: Notifier) -> None:
    logger = logging.getLogger("httpx")
    for existing in [f for f in logger.filters if isinstance(f, _HideUrls)]:
        logger.removeFilter(existing)  # the latest service's targets
    logger.addFilter(_HideUrls(notifier))


class DeliveryFailed(Exception):
    """One attempt failed in a way worth retrying (no answer, a 5xx, a 429)."""


def message_text(previous: Verdict | None, verdict: Verdict, link: str) -> str:
    """What a person needs at a glance: phase, old → new, what failed with observed value vs
    threshold and group, and where to look."""
    before = previous.verdict.value.upper() if previous is not None else "none"
    lines = [f"gatecheck: {verdict.phase} ({verdict.environment}) {before} → {verdict.verdict.value.upper()}"]
    if deadline_crossed(previous, verdict):
        assert verdict.deadline is not None
        lines[0] = (
            f"gatecheck: {verdict.phase} ({verdict.environment}) INCONCLUSIVE since "
            f"{timestamp(verdict.deadline.since)}, past its deadline of "
            f"{format_duration(verdict.deadline.inconclusive_for)}"
        )
    for check in verdict.checks:
        if check.outcome is Outcome.PASS:
            continue
        failing = [e for e in check.expectations if e.outcome is Outcome.FAIL]
        waived = f" ⚠️ {waiver_text(check)}" if check.waiver is not None else ""
        if failing:
            lines += [f"• {check.suite} ({check.role}): {failure_text(e)}{waived}" for e in failing]
            named = keys_found(check.reconciliation) if check.reconciliation is not None else ""
            if named:
                lines.append(f"  {named}")  # which records, by key
        else:
            lines.append(
                f"• {check.suite} ({check.role}) {check.outcome.value}: {check.reason or ''}".rstrip()
            )
    if len(lines) == 1:
        lines += [f"• {reason}" for reason in verdict.reasons]
    lines.append(f"as of {timestamp(verdict.as_of)} · {link}")
    # Each line one line: a group's value or an observed text from a source may hold a newline,
    # which would start a line of its own in the message (a forged "NO-GO → GO").
    return "\n".join(one_line(line) for line in lines)


#: Slack's control characters, written as its formatting reference asks ("Replace the
#: ampersand, &, with &amp;; the less-than sign, <, with &lt;; the greater-than sign, >, with
#: &gt;"): a source's ``<!channel>`` or ``<https://…|approve here>`` is shown, never a mention
#: or a link.
_SLACK_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def slack_text(text: str) -> str:
    """``text`` as Slack shows it literally (its ``&``, ``<`` and ``>`` escaped)."""
    return text.translate(_SLACK_ESCAPES)


def deadline_crossed(previous: Verdict | None, verdict: Verdict) -> bool:
    """This evaluation is the first past the gate's ``deadline: {then: notify}``."""
    now, before = verdict.deadline, previous.deadline if previous is not None else None
    return (
        now is not None and now.passed and now.then == "notify" and not (before is not None and before.passed)
    )


Message = tuple[dict[str, str], bytes]


def messages(
    target: NotifyTarget, previous: Verdict | None, verdict: Verdict, base_url: str
) -> list[Message]:
    """What one change sends to ``target``, in order: (headers, body) per HTTP request."""
    if target.kind == "cloudevents":
        from gatecheck.service.events import verdict_events

        return verdict_events(previous, verdict, base_url)
    link = f"{base_url}/api/v1/phases/{verdict.phase}/verdict"
    body = json.dumps(payload(target, previous, verdict, link)).encode()
    return [({"content-type": "application/json"}, body)]


def payload(target: NotifyTarget, previous: Verdict | None, verdict: Verdict, link: str) -> dict[str, Any]:
    """The body for a target: Slack's ``{"text": …}``, or the change with the verdict document."""
    text = message_text(previous, verdict, link)
    if target.kind == "slack":
        return {"text": slack_text(text)}
    return {
        "phase": verdict.phase,
        "previous": previous.verdict.value if previous is not None else None,
        "verdict": verdict.verdict.value,
        "as_of": document_time(verdict.as_of),
        "url": link,
        "text": text,
        "document": verdict.document(),
    }


class Notifier:
    """Decides which changes to send where, and delivers them off the evaluation path."""

    def __init__(
        self,
        targets: list[NotifyTarget],
        root: Path,
        base_url: str,
        on_count: Callable[[], None] | None = None,
        backoff_s: float = 1.0,
    ) -> None:
        self.targets = targets
        self.root = root
        self.base_url = base_url.rstrip("/")
        self.on_count = on_count  # the service re-renders its exposition
        self.backoff_s = backoff_s
        self.counts: Counter[tuple[str, str]] = Counter()
        self._sent: dict[tuple[str, str, str], float] = {}  # (target, phase, into) → when
        self._tasks: set[asyncio.Task[None]] = set()
        # One delivery at a time per target, in the order of the changes (a FIFO lock), so a
        # person never reads "NO-GO → GO" before "GO → NO-GO".
        self._order: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = {}
        _hide_urls_from_httpx_log(self)

    def _count(self, target: str, result: str) -> None:
        self.counts[(target, result)] += 1
        if self.on_count is not None:
            self.on_count()

    def changed(self, previous: Verdict | None, verdict: Verdict) -> None:
        """A phase was evaluated: schedule a message to every target that wants this change.
        Returns at once; the deliveries run on their own tasks."""
        before = previous.verdict if previous is not None else None
        # the first evaluation past a `then: notify` deadline is news to every target
        deadline = deadline_crossed(previous, verdict)
        if not deadline and (
            before is verdict.verdict or (before is None and verdict.verdict is VerdictState.GO)
        ):
            return  # not a change (a first GO is no news: "back to GO" needs a verdict to leave)
        now = time.monotonic()
        for target in self.targets:
            if target.phases is not None and verdict.phase not in target.phases:
                continue
            if verdict.verdict.value not in target.on and not deadline:
                continue
            key = (target.name, verdict.phase, "deadline" if deadline else verdict.verdict.value)
            last = self._sent.get(key)
            if last is not None and now - last < target.suppress.total_seconds():
                self._count(target.name, "suppressed")
                log.info(
                    "notification to %s suppressed: %s → %s again within %ss",
                    target.name, verdict.phase, verdict.verdict.value, int(target.suppress.total_seconds()),
                    extra={"target": target.name, "phase": verdict.phase},
                )  # fmt: skip
                continue
            if len(self._tasks) >= MAX_PENDING:
                self._count(target.name, "dropped")
                log.warning("notification to %s dropped: %d deliveries under way", target.name, MAX_PENDING)
                continue
            self._sent[key] = now
            body = messages(target, previous, verdict, self.base_url)
            task = asyncio.get_running_loop().create_task(self._deliver(target, body, verdict.phase))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _url(self, target: NotifyTarget) -> str:
        if target.url is not None:
            return target.url.get_secret_value()
        path = Path(target.url_file or "")
        path = path if path.is_absolute() else self.root / path
        url = path.read_text(encoding="utf-8").strip()
        problem = webhook_url_problem(url)
        if problem is not None:
            raise ValueError(f"url_file {target.url_file}: {problem}")
        return url

    def _lock(self, target: str) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        found = self._order.get(target)
        if found is None or found[0] is not loop:
            found = (loop, asyncio.Lock())
            self._order[target] = found
        return found[1]

    def urls(self) -> list[str]:
        """The targets' URLs as written, valid or not, that can be read now (for redaction
        only; never shown)."""
        found = []
        for target in self.targets:
            if target.url is not None:
                found.append(target.url.get_secret_value())
                continue
            path = Path(target.url_file or "")
            path = path if path.is_absolute() else self.root / path
            with contextlib.suppress(OSError):
                found.append(path.read_text(encoding="utf-8").strip())
        return [url for url in found if url]

    async def _deliver(self, target: NotifyTarget, body: list[Message], phase: str) -> None:
        async with self._lock(target.name):
            await self._deliver_now(target, body, phase)

    async def _deliver_now(self, target: NotifyTarget, body: list[Message], phase: str) -> None:
        from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

        timeout = target.timeout.total_seconds()
        try:
            url = self._url(target)
            async with httpx.AsyncClient(
                timeout=timeout, follow_redirects=False, verify=verified_tls()
            ) as client:
                for message in body:  # in order, each with its retries
                    async for attempt in AsyncRetrying(
                        stop=stop_after_attempt(target.retries + 1),
                        wait=wait_exponential(multiplier=self.backoff_s, max=60 * self.backoff_s),
                        retry=retry_if_exception_type(DeliveryFailed),
                        reraise=True,
                    ):
                        with attempt:
                            await self._attempt(client, url, message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not isinstance(exc, DeliveryFailed | OSError | ValueError):
                # never the exception's text: a driver's may quote the URL, which is a secret
                exc = DeliveryFailed(f"cannot deliver ({type(exc).__name__})")
            self._count(target.name, "failed")
            log.warning(
                "notification to %s about %s failed: %s", target.name, phase, exc,
                extra={"target": target.name, "phase": phase},
            )  # fmt: skip
            return
        self._count(target.name, "sent")
        log.info("notified %s about %s", target.name, phase, extra={"target": target.name, "phase": phase})

    @staticmethod
    async def _attempt(client: httpx.AsyncClient, url: str, message: Message) -> None:
        """One POST. Never lets the URL into an exception's text (it is a secret)."""
        headers, content = message
        try:
            timeout = client.timeout.read or 10.0
            response = await fetch(
                client, "POST", url, content=content, headers=headers, what="the webhook", timeout=timeout,
                limit=2**20,
            )  # fmt: skip
        except (httpx.TimeoutException, SourceTimeout):
            raise DeliveryFailed("no answer within the timeout") from None
        except AnswerTooLarge:
            raise DeliveryFailed("an answer of more than 1 MiB") from None
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"cannot reach the webhook ({type(exc).__name__})") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise DeliveryFailed(f"the webhook answered {response.status_code}")
        if response.status_code >= 300:
            # A 4xx will not change on a retry (a revoked webhook, a bad payload).
            raise ValueError(f"the webhook refused the message: {response.status_code}")

    @property
    def pending(self) -> int:
        """Deliveries under way (one at a time per target; each with its retries)."""
        return len(self._tasks)

    async def settled(self) -> None:
        """Wait for every delivery scheduled so far to end (delivered or given up)."""
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Stop: deliveries still under way are cancelled (and not counted)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
