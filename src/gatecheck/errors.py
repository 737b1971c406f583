"""gatecheck's one error tree.

::

    GatecheckError
     ├── ConfigError            bad configuration or arguments (exit code 2)
     ├── LedgerError            the history ledger cannot be opened, written or read
     ├── WorkerError            the evaluation worker crashed, hung past its deadline, or did not start
     ├── ValidationTimeout      Great Expectations did not finish a validation in time
     └── SourceError            a source could not answer a query
          ├── SourceUnavailable   cannot connect / missing embedded path / unsupported type
          ├── SourceTimeout       the query or connection exceeded its time limit
          └── QueryError          the source rejected the query (syntax, unknown column…)

Driver exceptions (chDB, clickhouse-connect, …) are translated into these where the
driver is called, with ``raise ... from exc``. Messages never contain credentials: a URL is
shown through :func:`redact`.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterable

# The user part of a URL: everything after ``scheme://`` up to the *last* ``@`` before the
# path (a password may hold an unencoded ``@``), never crossing a space, quote or bracket.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#\s'\"<>()\[\]{}]*)@")
# A parameter whose name says it holds a secret: a URL's query parameter (?password=…,
# &token=…, ?sslpassword=…), or a keyword=value pair at the start or after a space, a quote,
# a bracket or a comma — libpq's connection string (``host=db password=s3cret`` or
# ``password='s 3cret'``), an environment assignment (``PGPASSWORD=…``).
_SECRET_PARAMETER = re.compile(
    r"(?P<name>(?:[?&;]|(?<![^\s(\[{,'\"]))"
    r"(?:[A-Za-z_]*(?:password|passwd|pwd|token|secret|api_?key|access_?key|auth)[A-Za-z_]*)\s*=\s*)"
    # a quoted value ends at a quote before a space, a closing bracket or the end: an escaped
    # quote stays inside, however a repr doubled its backslash
    r"(?P<value>'(?:[^'\\]|\\.|'(?![\s,)\]}\"]|$))*'?|[^&#\s'\"]*)",
    re.IGNORECASE,
)


def _hide_userinfo(match: re.Match[str]) -> str:
    user, colon, _password = match.group("userinfo").partition(":")
    # user:password@ keeps the user; a user part alone may be the secret itself
    # (nats://TOKEN@host, a bearer in the user part), so it is hidden whole.
    shown = f"{user}:***" if colon else "***"
    return f"{match.group('scheme')}{shown}@"


def redact(text: str) -> str:
    """``text`` with every credential a URL can carry hidden: the password of
    ``user:password@`` (up to the last ``@``), a user part without a password (a token), and
    query parameters named like a secret (``password``, ``token``, ``secret``, ``key``…)."""
    text = _USERINFO.sub(_hide_userinfo, text)
    return _SECRET_PARAMETER.sub(lambda m: f"{m.group('name')}***", text)


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known`` to a misspelt ``name``, or ''."""
    import difflib

    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


_ERRNO_WORDS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.ETIMEDOUT: "timed out",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.EADDRNOTAVAIL: "address not available",
}
_ERRNO_TEXT = re.compile(r"\[Errno (-?\d+)\]\s*")


def socket_reason(exc: BaseException) -> str | None:
    """Why one exception says a server could not be reached, in words — ``connection refused``,
    ``unknown host (Name or service not known)``, ``timed out`` — or None when it is not a
    socket error."""
    import socket

    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror or exc})"
    if isinstance(exc, OSError) and exc.errno is not None:
        return _ERRNO_WORDS.get(exc.errno) or (exc.strerror or str(exc)).lower()
    found = _ERRNO_TEXT.search(str(exc))  # a library that kept only the text
    if found and int(found.group(1)) in _ERRNO_WORDS:
        return _ERRNO_WORDS[int(found.group(1))]
    return None


def network_reason(exc: BaseException) -> str | None:
    """:func:`socket_reason` of the first socket error in ``exc``'s chain, or None. Never
    Python's ``[Errno 111] Connect call failed ('127.0.0.1', 4222)``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        reason = socket_reason(current)
        if reason is not None:
            return reason
        current = current.__cause__ or current.__context__
    return None


def server_of(url: str) -> str:
    """``host:port`` of ``url`` (its credentials hidden), for "cannot reach NATS at …"."""
    from urllib.parse import urlsplit

    shown = redact(url)
    try:
        parts = urlsplit(shown)
    except ValueError:
        return shown
    return parts.netloc or shown


class GatecheckError(Exception):
    """Root of every error gatecheck raises on purpose."""


def one_line(text: str) -> str:
    """``text`` with every non-printable character escaped: a key or value read from a file
    can hold newlines or terminal escape sequences, and a problem is printed as one line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def printable(text: str) -> str:
    """``text`` safe for a terminal or a log: control characters (ESC, NUL, …) from data are
    shown escaped (``\\x1b``) instead of moving the cursor or rewriting lines; newlines and tabs
    stay."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch in "\n\t" else repr(ch)[1:-1] for ch in text)


#: Characters XML 1.0 cannot hold at all, even escaped (a JUnit report with one is ill-formed).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """``text`` with every character XML 1.0 forbids shown escaped (``\\x1b``)."""
    return _NOT_XML.sub(lambda m: repr(m.group())[1:-1], text)


class ConfigError(GatecheckError):
    """Configuration, suite, gate or argument problem; the message names file and key.

    Each problem is made one printable line, whatever the file contained."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        message = one_line(message)
        super().__init__(message)
        self.problems: list[str] = [one_line(p) for p in problems] if problems is not None else [message]


class LedgerError(GatecheckError):
    """The history ledger cannot be opened, written or read (exit code 2 for a command;
    the service logs it, publishes nothing unrecorded and keeps running)."""


class WorkerError(GatecheckError):
    """The evaluation worker of ``gatecheck serve`` crashed, hung past its deadline, or could
    not start (its evaluations in flight are their phases' errors)."""


class ValidationTimeout(GatecheckError):
    """Great Expectations did not finish validating a frame in time: the check is ``error``."""


class SourceError(GatecheckError):
    """A source failed to answer; the check that asked becomes ``error``."""


class SourceUnavailable(SourceError):
    """The source cannot be reached or opened."""


class SourceTimeout(SourceError):
    """The source did not answer in time."""


class QueryError(SourceError):
    """The source rejected the query."""
