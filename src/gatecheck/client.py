"""``gatecheck run --url``: ask a running service for a phase's verdict (httpx).

CI steps use it to share the service's soak evidence instead of evaluating locally. The
answer is the same Verdict document ``gatecheck run --format json`` prints, so every output
format and exit code stays the same. A service that cannot be reached, or has no evaluation
of the phase yet, gives an INCONCLUSIVE verdict — never GO.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from pydantic import ValidationError

from gatecheck import __version__
from gatecheck.durations import MAX_CLOCK_SKEW, format_duration
from gatecheck.errors import ConfigError, SourceTimeout, SourceUnavailable, network_reason, one_line, redact
from gatecheck.render.status import PhaseStatus
from gatecheck.results import Verdict, VerdictState
from gatecheck.sources._http import AnswerTooLarge, fetch_sync


def _inconclusive(phase: str, reason: str) -> Verdict:
    return Verdict(
        phase=phase,
        environment="unknown",
        as_of=datetime.now(UTC).replace(microsecond=0),
        verdict=VerdictState.INCONCLUSIVE,
        reasons=[reason],
        checks=[],
        config_hash="",
        gatecheck_version=__version__,
    )


def _client(base: str, timeout: float, headers: dict[str, str]) -> httpx.Client:
    """A client for the service. Over plain http:// there is no TLS to verify, so the CA
    bundle is not loaded (it is most of a cold `run --url`); redirects are never followed, so
    the client cannot end up on https:// without verification. https:// verifies as usual,
    with the process's one verifying context."""
    from gatecheck.sources._http import verified_tls

    plain = base.startswith("http://")
    verify = False if plain else verified_tls()
    return httpx.Client(timeout=timeout, headers=headers, verify=verify, follow_redirects=False)


def _service(url: str) -> tuple[str, str, dict[str, str]]:
    """The service's base URL, the same redacted for messages, and the bearer header of
    ``GATECHECK_API_TOKEN`` (none when unset); a URL that is not http(s) is refused."""
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ConfigError(f"--url: expected http(s)://HOST:PORT, got {redact(url)!r}")
    token = os.environ.get("GATECHECK_API_TOKEN")
    return base, redact(base), {"Authorization": f"Bearer {token}"} if token else {}


#: How old the service's latest verdict may be for ``run --url`` (``--max-age``), unless told.
MAX_AGE = timedelta(hours=1)


def fetch_verdict(
    url: str,
    phase: str,
    evaluate_now: bool = False,
    timeout: float = 30.0,
    max_age: timedelta | None = MAX_AGE,
) -> Verdict:
    """The service's latest verdict of ``phase`` if at most ``max_age`` old — an older one is
    not taken: the service evaluates now (its ``max_age`` parameter), and a verdict older than
    that all the same (a service that does not know the parameter) is INCONCLUSIVE — or a
    fresh one with ``evaluate_now``."""
    base, shown, headers = _service(url)
    endpoint = f"{base}/api/v1/phases/{phase}/" + ("evaluate" if evaluate_now else "verdict")
    params: dict[str, str] = {}
    if not evaluate_now and max_age is not None:
        # an evaluation now must answer within this client's own timeout
        params = {"max_age": format_duration(max_age), "timeout": f"{max(1.0, min(120.0, timeout - 5)):g}"}
    try:
        with _client(base, timeout, headers) as client:
            method = "POST" if evaluate_now else "GET"
            response = fetch_sync(client, method, endpoint, params=params, what=shown, timeout=timeout)
    except (SourceTimeout, AnswerTooLarge) as exc:
        return _inconclusive(phase, f"the gatecheck service: {exc}")
    except httpx.HTTPError as exc:
        reason = network_reason(exc) or " ".join(str(exc).split()) or type(exc).__name__
        return _inconclusive(phase, f"cannot reach the gatecheck service at {shown}: {reason}")
    if response.status_code == 404:
        raise _not_found(response, shown, phase)
    if response.status_code != 200:
        detail = one_line(" ".join(response.text.split())[:200])
        return _inconclusive(phase, f"gatecheck service at {shown} answered {response.status_code}: {detail}")
    try:
        verdict = Verdict.model_validate(response.json())
    except (ValueError, ValidationError) as exc:
        return _inconclusive(
            phase, f"gatecheck service at {shown} sent an unreadable verdict: {unreadable(exc)}"
        )
    if response.headers.get("gatecheck-evaluated") == "false":  # none yet: said as it is
        return verdict
    return _as_asked(verdict, phase, shown, None if evaluate_now else max_age)


def _as_asked(verdict: Verdict, phase: str, shown: str, max_age: timedelta | None) -> Verdict:
    """``verdict`` if it is of ``phase`` and, with ``max_age``, at most that old; otherwise
    INCONCLUSIVE saying why: a GO of another phase, or one the service made hours ago and has
    not renewed since (its schedule stopped), is no GO of this phase now; nor is one dated
    further ahead of this machine's clock than two clocks may disagree (its age is unknown)."""
    if verdict.phase != phase:
        answered = f"answered a verdict of phase {verdict.phase!r}, not {phase!r}"
        return _inconclusive(phase, f"gatecheck service at {shown} {answered}")
    if max_age is not None:
        age = datetime.now(UTC) - verdict.as_of
        if -age > MAX_CLOCK_SKEW:  # a service whose clock runs ahead: its GO would look new for days
            return _inconclusive(
                phase,
                f"the latest verdict of {phase} at {shown} is dated {format_duration(-age)} ahead of this "
                f"machine's clock (as of {verdict.as_of:%Y-%m-%dT%H:%M:%SZ}, {verdict.verdict.value}), more "
                f"than the {format_duration(MAX_CLOCK_SKEW)} two clocks may disagree: its age cannot be "
                "told; --fresh has it evaluate now",
            )
        if age > max_age:
            return _inconclusive(
                phase,
                f"the latest verdict of {phase} at {shown} is {format_duration(age)} old (as of "
                f"{verdict.as_of:%Y-%m-%dT%H:%M:%SZ}, {verdict.verdict.value}), more than --max-age "
                f"{format_duration(max_age)}: the service may have stopped evaluating it; --fresh has it "
                "evaluate now",
            )
    return verdict


def wait_for_verdict(
    url: str,
    phase: str,
    wait: timedelta,
    progress: Callable[[str], None] | None = None,
    poll_s: float = 2.0,
    timeout: float = 30.0,
) -> Verdict:
    """Have the service evaluate ``phase`` now through its asynchronous API and wait up to
    ``wait`` for the verdict: ``POST …/evaluations`` (202, an id to poll), then ``GET
    /api/v1/evaluations/{id}`` until it is no longer in progress. ``progress`` is told how long
    it has waited at every poll. Past ``wait``, or without an answer, INCONCLUSIVE — never GO."""
    base, shown, headers = _service(url)
    deadline = time.monotonic() + wait.total_seconds()
    started = time.monotonic()
    try:
        with _client(base, timeout, headers) as client:
            response = fetch_sync(
                client, "POST", f"{base}/api/v1/phases/{phase}/evaluations", what=shown, timeout=timeout
            )
            if response.status_code == 404:
                raise _not_found(response, shown, phase)
            if response.status_code != 202:
                detail = one_line(" ".join(response.text.split())[:200])
                return _inconclusive(
                    phase, f"gatecheck service at {shown} answered {response.status_code}: {detail}"
                )
            location = response.headers.get("location") or f"/api/v1/evaluations/{response.json()['id']}"
            while True:
                answer = fetch_sync(client, "GET", f"{base}{location}", what=shown, timeout=timeout)
                if answer.status_code != 200:
                    detail = answer.text.strip()[:200]
                    return _inconclusive(
                        phase, f"gatecheck service at {shown} answered {answer.status_code}: {detail}"
                    )
                document = answer.json()
                if document.get("status") != "in_progress":
                    return _as_asked(Verdict.model_validate(document), phase, shown, None)
                if progress is not None:
                    progress(f"evaluating {phase} on {shown}: {time.monotonic() - started:.0f}s")
                left = deadline - time.monotonic()
                if left <= 0:
                    return _inconclusive(
                        phase,
                        f"no verdict from {shown} within {format_duration(wait)}; the evaluation goes on "
                        f"(GET {location})",
                    )
                time.sleep(min(poll_s, left))
    except (SourceTimeout, AnswerTooLarge) as exc:
        return _inconclusive(phase, f"the gatecheck service: {exc}")
    except httpx.HTTPError as exc:
        reason = network_reason(exc) or " ".join(str(exc).split()) or type(exc).__name__
        return _inconclusive(phase, f"cannot reach the gatecheck service at {shown}: {reason}")
    except (ValueError, KeyError, ValidationError) as exc:
        return _inconclusive(
            phase, f"gatecheck service at {shown} sent an unreadable answer: {unreadable(exc)}"
        )


def unreadable(exc: Exception) -> str:
    """Why an answer could not be read, in one line: a document's wrong or missing fields by
    where they are (pydantic's own text spans lines and quotes the whole answer)."""
    if isinstance(exc, ValidationError):
        problems = [
            f"{'.'.join(str(part) for part in e['loc']) or 'the document'}: {e['msg']}" for e in exc.errors()
        ]
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        return one_line(
            f"{len(problems)} problem{'s' if len(problems) > 1 else ''}: " + "; ".join(problems[:5]) + more
        )
    return one_line(" ".join(str(exc).split()))


def fetch_chain(url: str, timeout: float = 30.0) -> list[PhaseStatus]:
    """The service's phase chain with each phase's latest verdict (None if none yet)."""
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ConfigError(f"--url: expected http(s)://HOST:PORT, got {redact(url)!r}")
    shown = redact(base)
    try:
        with _client(base, timeout, {}) as client:
            listed = fetch_sync(client, "GET", f"{base}/api/v1/phases", what=shown, timeout=timeout)
            if listed.status_code != 200:  # (httpx's own words carry a link to a web page)
                raise SourceUnavailable(
                    f"gatecheck service at {shown} answered {listed.status_code} to GET /api/v1/phases "
                    "(--url is the service's address, without a path)"
                )
            chain = []
            for item in listed.json():
                verdict_url = f"{base}/api/v1/phases/{item['phase']}/verdict"
                response = fetch_sync(client, "GET", verdict_url, what=shown, timeout=timeout)
                # 200 with "Gatecheck-Evaluated: false": the service has no verdict of it yet.
                none_yet = response.headers.get("gatecheck-evaluated") == "false"
                evaluated = response.status_code == 200 and not none_yet
                verdict = Verdict.model_validate(response.json()) if evaluated else None
                overdue, withdrawn = item.get("overdue"), item.get("withdrawn")  # (not from an older service)
                chain.append(
                    PhaseStatus(
                        item["phase"],
                        item["environment"],
                        list(item["requires"]),
                        verdict,
                        overdue,
                        withdrawn,
                    )
                )
            return chain
    except (httpx.HTTPError, ValueError, KeyError, ValidationError) as exc:
        raise SourceUnavailable(
            f"gatecheck service at {shown}: {type(exc).__name__}: {unreadable(exc)}"
        ) from exc


def _not_found(response: httpx.Response, shown: str, phase: str) -> ConfigError:
    """A 404: the service does not know the phase (its own answer says so), or the URL is not
    a gatecheck service's address (a path after it, another server)."""
    if "unknown phase" in response.text[:500]:
        return ConfigError(f"--phase: the service at {shown} does not know phase {phase!r}")
    return ConfigError(
        f"--url: {shown} answered 404 to {response.request.url.path}: not a gatecheck service's "
        "address (give it without a path)"
    )


def fetch_page(url: str, phase: str, timeout: float = 30.0) -> str:
    """The service's page of ``phase`` as one self-contained file (``report --format html
    --url``): the same page ``/phases/{phase}`` shows, without refresh or links."""
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ConfigError(f"--url: expected http(s)://HOST:PORT, got {redact(url)!r}")
    shown = redact(base)
    token = os.environ.get("GATECHECK_API_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with _client(base, timeout, headers) as client:
            page = f"{base}/phases/{phase}"
            response = fetch_sync(client, "GET", page, params={"export": "true"}, what=shown, timeout=timeout)
    except httpx.HTTPError as exc:
        raise SourceUnavailable(
            f"gatecheck service at {shown}: {type(exc).__name__}: {unreadable(exc)}"
        ) from exc
    if response.status_code == 404:
        raise _not_found(response, shown, phase)
    if response.status_code == 401:
        raise ConfigError(f"the service at {shown} needs its token: set GATECHECK_API_TOKEN")
    if response.status_code != 200:
        raise SourceUnavailable(f"gatecheck service at {shown} answered {response.status_code}")
    return response.text
