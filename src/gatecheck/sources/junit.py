"""JUnit source: the E2E job's JUnit XML reports as evidence, one row per run.

The reports are read from a directory (``file://PATH``, relative to the ``--config``
directory, or ``file:///abs/path``) or from an HTTP(S) URL whose page lists them (a
directory index: every link whose file name matches the suite's glob). Each report is one
run: its time is the ``timestamp`` of its first ``<testsuite>`` (a timestamp without a zone
is UTC), else the file's modification time (``Last-Modified`` over HTTP). The runs inside the
window, newest first — at most ``newest`` of them — are the frame.

XML is parsed with defusedxml: a document type declaration or an entity (an XML bomb, an
external entity) is refused, and the report named in the error, as is one that is not
JUnit XML. At most ``MAX_REPORTS`` reports of at most ``MAX_REPORT_BYTES`` each are read: in a
directory the most recently modified ones, and the check is an error unless the reports left
unread cannot hold a run it judges (a run's timestamp is at most ``TIMESTAMP_LEAD`` after its
file's modification time); a listing says nothing of its reports' times, so beyond
``MAX_REPORTS`` matching links it is an error.
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import unquote, urljoin, urlsplit

from pydantic import field_validator

from gatecheck._values import document_time, whole_characters
from gatecheck.durations import MAX_CLOCK_SKEW, format_duration
from gatecheck.errors import QueryError, SourceTimeout, SourceUnavailable, redact
from gatecheck.frozen import NAME, Frozen
from gatecheck.sources._http import AnswerTooLarge, fetch, http_errors, verified_tls
from gatecheck.sources.base import QueryParameters, Source, SourceSettings
from gatecheck.sources.probe import Probe, counted

if TYPE_CHECKING:
    import pandas as pd

MAX_REPORTS = 500
MAX_REPORT_BYTES = 5 * 2**20
#: Reports behind a listing fetched at once.
LISTING_FETCHES = 8
#: How far a run's timestamp may lie after its report file's modification time: a report is
#: written when its run ends, but a timestamp in local time without its zone reads as UTC
#: (UTC+14 at most).
TIMESTAMP_LEAD = timedelta(hours=14)
#: The columns of the frame, one row per run.
COLUMNS = [
    "run", "time", "tests", "failures", "errors", "skipped", "executed", "failed", "runs", "failing_tests",
]  # fmt: skip


class JUnitSourceConfig(SourceSettings):
    """Where the E2E job's JUnit reports are: ``file://DIR`` or ``http(s)://…`` (a listing)."""

    type: Literal["junit"]
    schemes: ClassVar[tuple[str, ...]] = ("file", "http", "https")


class JUnitQuery(Frozen):
    """The ``query:`` of a suite on a JUnit source: which reports, and how many of the newest
    runs in the window (a number or ``{$PARAMETER: name}`` from thresholds.yaml)."""

    form_keys: ClassVar[frozenset[str]] = frozenset({"reports"})

    reports: str = "*.xml"
    newest: int | dict[str, str] | None = None

    @field_validator("reports")
    @classmethod
    def _a_file_glob(cls, value: str) -> str:
        if not value or "/" in value:
            raise ValueError("a file-name glob such as 'e2e-*.xml' (no directory)")
        return value

    @field_validator("newest")
    @classmethod
    def _count_or_parameter(cls, value: int | dict[str, str] | None) -> int | dict[str, str] | None:
        if isinstance(value, dict):
            name = value.get("$PARAMETER")
            if set(value) != {"$PARAMETER"} or not isinstance(name, str) or not NAME.match(name):
                raise ValueError("a number or {$PARAMETER: name}")
        elif value is not None and value < 1:
            raise ValueError("must be at least 1")
        return value

    def problems(self) -> list[str]:
        """Nothing beyond what the model checks itself."""
        return []

    def counted_parameters(self) -> dict[str, str]:
        """Thresholds this query uses as a count of runs (at least 1): name → where."""
        if isinstance(self.newest, dict):
            return {self.newest["$PARAMETER"]: "query.newest"}
        return {}

    def query_parameters(self) -> dict[str, str]:
        """The thresholds this query is sent with (``newest`` as a parameter): name → type."""
        if isinstance(self.newest, dict):
            return {self.newest["$PARAMETER"]: "UInt32"}
        return {}


@dataclass(frozen=True)
class Unread:
    """A directory's reports that matched beyond ``MAX_REPORTS`` and were not read: how many
    matched, and the newest modification time among the unread ones."""

    matched: int
    modified_until: datetime


@dataclass(frozen=True)
class Run:
    name: str
    time: datetime
    tests: int
    failures: int
    errors: int
    skipped: int
    failing_tests: list[str]


def _location(config: JUnitSourceConfig, root: Path) -> Path | str:
    """The reports' directory (a Path) or listing URL (a str)."""
    parts = urlsplit(config.url)
    if parts.scheme == "file":
        raw = unquote(parts.netloc + parts.path)
        if not raw:
            raise SourceUnavailable("file:// URL needs a directory, e.g. file://reports/e2e")
        path = Path(raw)
        return path if path.is_absolute() else root / path
    return config.url


def parse_report(name: str, data: bytes, modified: datetime | None) -> Run:
    """One JUnit XML report as a run; QueryError naming the report when it is not one."""
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import ParseError, fromstring

    try:
        root = fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise QueryError(
            f"report {name}: refused: {type(exc).__name__} (no DTD or entities in a report)"
        ) from None
    except ParseError as exc:
        raise QueryError(f"report {name}: not well-formed XML ({exc})") from None
    # The suites that hold test cases: a suite of suites (PHPUnit, Karma) only sums its own,
    # and counting both counted every test twice.
    suites = [suite for suite in root.iter("testsuite") if suite.find("testsuite") is None]
    if root.tag not in ("testsuite", "testsuites") or not suites:
        raise QueryError(f"report {name}: not a JUnit report (root element <{root.tag}>)")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failing: list[str] = []
    try:
        for suite in suites:
            cases = list(suite.iter("testcase"))
            for key in counts:
                given = suite.get(key)
                tag = {"tests": "", "failures": "failure", "errors": "error", "skipped": "skipped"}[key]
                found = len(cases) if key == "tests" else sum(case.find(tag) is not None for case in cases)
                if given is None:
                    counts[key] += found
                elif key == "tests":
                    counts[key] += int(given)
                else:  # a failure in a test case counts even where the suite's summary says 0
                    counts[key] += max(int(given), found)
            for case in cases:
                if case.find("failure") is not None or case.find("error") is not None:
                    failing.append(".".join(p for p in (case.get("classname"), case.get("name")) if p))
    except ValueError as exc:
        raise QueryError(f"report {name}: a count is not a number ({exc})") from None
    stamp = next((s.get("timestamp") for s in root.iter("testsuite") if s.get("timestamp")), None)
    when = modified
    if stamp:
        try:
            when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            raise QueryError(f"report {name}: timestamp {stamp!r} is not ISO 8601") from None
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    if when is None:
        raise QueryError(f"report {name}: no timestamp and no modification time")
    return Run(name, when, failing_tests=failing, **counts)


def frame_of(
    runs: list[Run], window_start: datetime, window_end: datetime, newest: int | None
) -> pd.DataFrame:
    """The runs inside ``[window_start, window_end)``, newest first, at most ``newest``."""
    import pandas as pd

    inside = sorted(
        (r for r in runs if window_start <= r.time < window_end), key=lambda r: r.time, reverse=True
    )
    if newest is not None:
        inside = inside[:newest]
    rows = [
        {
            "run": r.name,
            "time": document_time(r.time),
            "tests": r.tests,
            "failures": r.failures,
            "errors": r.errors,
            "skipped": r.skipped,
            "executed": max(r.tests - r.skipped, 0),  # a run that skipped every test ran none
            "failed": r.failures + r.errors,
            "runs": 1,
            "failing_tests": ", ".join(r.failing_tests[:5]) + (" …" if len(r.failing_tests) > 5 else ""),
        }
        for r in inside
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.extend(v for k, v in attrs if k == "href" and v)


def _listed(page: str, base: str, pattern: str) -> Iterator[tuple[str, str]]:
    """(file name, absolute URL) of every link on a listing page matching ``pattern`` that
    stays on the listing's own scheme and host (a link elsewhere is not followed)."""
    parser = _Links()
    parser.feed(page)
    seen = set()
    home = urlsplit(base)
    for link in parser.links:
        url = urljoin(base if base.endswith("/") else base + "/", link)
        target = urlsplit(url)
        if (target.scheme, target.netloc) != (home.scheme, home.netloc):
            continue
        name = unquote(target.path.rsplit("/", 1)[-1])
        if name and name not in seen and fnmatch.fnmatchcase(name, pattern):
            seen.add(name)
            yield name, url


class JUnitSource(Source):
    """The reports in a directory or behind a listing URL."""

    def __init__(self, name: str, config: JUnitSourceConfig, root: Path) -> None:
        super().__init__(name, config)
        self.location = _location(config, root)
        self.where = f"JUnit reports at {redact(str(self.location))}"

    def _read_directory(self, directory: Path, pattern: str) -> tuple[list[Run], Unread | None]:
        if not directory.is_dir():
            raise SourceUnavailable(f"{self.where}: not a directory")
        files = sorted(p for p in directory.iterdir() if p.is_file() and fnmatch.fnmatchcase(p.name, pattern))
        unread = None
        if len(files) > MAX_REPORTS:
            by_age = sorted(files, key=lambda p: p.stat().st_mtime)
            files = by_age[-MAX_REPORTS:]
            newest_unread = datetime.fromtimestamp(by_age[-MAX_REPORTS - 1].stat().st_mtime, UTC)
            unread = Unread(len(by_age), newest_unread)
        runs = []
        for path in files:
            # a file name that is not UTF-8 reads as half characters, which no frame, report or
            # record can hold: shown with U+FFFD instead
            name = whole_characters(path.name)
            stat = path.stat()
            if stat.st_size > MAX_REPORT_BYTES:
                raise QueryError(f"report {name}: {stat.st_size} bytes, more than {MAX_REPORT_BYTES}")
            modified = datetime.fromtimestamp(stat.st_mtime, UTC)
            runs.append(parse_report(name, path.read_bytes(), modified))
        return runs, unread

    async def _read_listing(self, url: str, pattern: str) -> tuple[list[Run], Unread | None]:
        """The listing and its matching reports, all within the source's ``timeout``: each
        answer was bounded alone, so a server answering 500 reports each just inside it held a
        run for hours. Reports are fetched ``LISTING_FETCHES`` at a time, kept in listing order."""
        import httpx

        try:
            async with asyncio.timeout(self.timeout):
                async with httpx.AsyncClient(
                    timeout=self.timeout, follow_redirects=False, verify=verified_tls()
                ) as client:
                    with http_errors(self.where, self.timeout):
                        return await self._listed_reports(client, url, pattern)
        except TimeoutError:
            # the same words as one answer's: the listing and its reports are one answer
            raise SourceTimeout(f"{self.where} did not answer within {self.timeout:g}s") from None

    async def _listed_reports(self, client: Any, url: str, pattern: str) -> tuple[list[Run], Unread | None]:
        page = await fetch(client, "GET", url, what=self.where, timeout=self.timeout)
        page.raise_for_status()
        found = list(_listed(page.text, url, pattern))
        if len(found) > MAX_REPORTS:  # before reading any: no choice of 500 could be trusted
            raise listing_too_long(len(found), pattern)
        slots = asyncio.Semaphore(LISTING_FETCHES)

        async def report(name: str, link: str) -> Run:
            async with slots:
                try:
                    response = await fetch(
                        client, "GET", link, what=f"report {name}", timeout=self.timeout,
                        limit=MAX_REPORT_BYTES,
                    )  # fmt: skip
                except AnswerTooLarge:
                    raise QueryError(f"report {name}: more than {MAX_REPORT_BYTES} bytes") from None
            response.raise_for_status()
            stamp = response.headers.get("last-modified")
            modified = parsedate_to_datetime(stamp).astimezone(UTC) if stamp else None
            return parse_report(name, response.content, modified)

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(report(name, link)) for name, link in found]
        except BaseExceptionGroup as failed:  # the first report that failed, as itself
            raise failed.exceptions[0] from None
        return [task.result() for task in tasks], None

    async def read(self, pattern: str) -> tuple[list[Run], Unread | None]:
        """The reports matching ``pattern`` as runs (at most ``MAX_REPORTS``), and those left unread."""
        if isinstance(self.location, Path):
            return await asyncio.to_thread(self._read_directory, self.location, pattern)
        return await self._read_listing(self.location, pattern)

    async def runs(self, pattern: str) -> list[Run]:
        """The reports matching ``pattern``, as runs (at most ``MAX_REPORTS``)."""
        return (await self.read(pattern))[0]

    async def query(self, text: JUnitQuery, parameters: QueryParameters) -> pd.DataFrame:
        newest: Any = text.newest
        if isinstance(newest, dict):
            name = newest["$PARAMETER"]
            raw = parameters[name]
            if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 1 or int(raw) != raw:
                raise QueryError(f"newest: {name} = {raw!r} is not a whole number of runs (at least 1)")
            newest = int(raw)
        runs, unread = await self.read(text.reports)
        start, end = parameters["window_start"], parameters["window_end"]
        assert isinstance(start, datetime) and isinstance(end, datetime)
        ahead_of_now(runs, datetime.now(UTC))
        if unread is not None:
            complete(runs, unread, start, end, newest, text.reports)
        return frame_of(runs, start, end, newest)


def ahead_of_now(runs: list[Run], now: datetime) -> None:
    """QueryError for a run dated after ``now`` (beyond clock skew): no run has happened yet,
    so its timestamp is a local time written without its zone (Maven Surefire, Jest and others
    write one) and read as UTC — east of Greenwich, hours late. Left out of the window as a run
    of the future, it let the runs before it decide: the newest run, failing, was not seen."""
    ahead = [r for r in runs if r.time > now + MAX_CLOCK_SKEW]
    if ahead:
        first = min(ahead, key=lambda r: r.time)
        lead = format_duration(timedelta(seconds=int((first.time - now).total_seconds()) // 60 * 60))
        more = f" (and {len(ahead) - 1} more)" if len(ahead) > 1 else ""
        raise QueryError(
            f"report {first.name}{more}: its run is dated {document_time(first.time)}, {lead} ahead of now: "
            "a timestamp without its zone is read as UTC; write it with its offset (e.g. "
            "2026-12-04T10:00:00+02:00) or in UTC"
        )


def listing_too_long(matched: int, pattern: str) -> QueryError:
    return QueryError(
        f"{matched} reports match {pattern!r} and at most {MAX_REPORTS} are read; a listing does not say "
        "when its reports were written, so runs in the window may be among any of them: list only recent "
        "reports or narrow the glob"
    )


def complete(
    runs: list[Run], unread: Unread, start: datetime, end: datetime, newest: int | None, pattern: str
) -> None:
    """Nothing judged is among the unread reports, or QueryError: each unread run is at most
    ``TIMESTAMP_LEAD`` after its file's modification time, so it lies before the window, or
    behind ``newest`` runs read that are all later than it."""
    read = f"{unread.matched} reports match {pattern!r} and only the {MAX_REPORTS}"
    bound = unread.modified_until + TIMESTAMP_LEAD
    if bound < start:
        return
    if newest is not None and sum(1 for r in runs if start <= r.time < end and r.time > bound) >= newest:
        return
    lead = f"{TIMESTAMP_LEAD.total_seconds() / 3600:.0f}h"
    raise QueryError(
        f"{read} most recently modified are read; the others, modified up to "
        f"{document_time(unread.modified_until)}, may hold runs of the window (a run's timestamp may be "
        f"up to {lead} after its file's time): move older reports out or narrow the glob"
    )


def explain_query(
    name: str, config: JUnitSourceConfig, query: JUnitQuery, parameters: QueryParameters, root: Path
) -> dict[str, Any]:
    location = _location(config, root)
    newest = query.newest
    if isinstance(newest, dict):
        newest = parameters.get(newest["$PARAMETER"])  # type: ignore[assignment]
    how = "list the directory" if isinstance(location, Path) else "GET the listing page"
    return {
        "sent_to": f"JUnit reports at {redact(str(location))}",
        "requests": [
            {
                "what": f"{how}; read every report matching {query.reports!r} (one run each)",
                "text": f"runs with {_shown(parameters['window_start'])} ≤ time < "
                f"{_shown(parameters['window_end'])}"
                + (f", the newest {newest}" if newest is not None else ""),
                "parameters": [],
            }
        ],
    }


def _shown(value: Any) -> str:
    return document_time(value) if isinstance(value, datetime) else str(value)


async def check_source(name: str, config: JUnitSourceConfig, root: Path, suites: list[Any]) -> Probe:
    """The reports can be listed and each suite's glob finds some."""
    import time

    source = JUnitSource(name, config, root)
    started = time.perf_counter()
    problems = []
    found = 0
    for suite in suites:
        try:
            runs = await source.runs(suite.query.reports)
        except (SourceUnavailable, SourceTimeout) as exc:
            return Probe(reachable=False, problems=[str(exc)])
        except QueryError as exc:
            problems.append(f"{exc} (read by {suite.name})")
            continue
        found += len(runs)
        if not runs:
            problems.append(f"no report matches {suite.query.reports!r} (read by {suite.name})")
    return Probe(
        version="JUnit XML",
        latency_ms=(time.perf_counter() - started) * 1000,
        checked=f"{counted(found, 'report')} the suites read",
        problems=problems,
    )
