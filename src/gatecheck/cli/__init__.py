"""``gatecheck`` command line: load configuration, call the library, render, exit.

Exit codes (docs/commands.md): 0 go, 1 no-go, 2 bad configuration / arguments / internal error,
3 inconclusive, 4 rollback. Only ``GatecheckError`` is printed as one clear line; anything
else is a bug and shows its traceback (still exit code 2).
"""

from __future__ import annotations

import faulthandler
import io
import signal
import sys
import traceback

import typer

# Each module registers its commands on the one app (the help lists them in COMMAND_ORDER).
from gatecheck.cli import decisions, evaluate, project, records, serve  # noqa: F401
from gatecheck.cli._common import Scenario, app
from gatecheck.exitcodes import ExitCode

__all__ = ["Scenario", "app", "main"]


def main() -> None:
    """Console-script entry point."""
    from gatecheck import logs

    # Warnings and errors only for one-shot commands; `serve` takes --log-level/--log-format.
    logs.configure("warning", "text")
    _writable_in_any_encoding()
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 <pid>` prints every thread's stack (stuck service)
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        app()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception:
        traceback.print_exc()
        typer.echo("gatecheck: internal error (a bug; please report it with the traceback above)", err=True)
        sys.exit(ExitCode.USAGE)


def _writable_in_any_encoding() -> None:
    """Standard output in a locale that cannot write every character gatecheck prints (``≤``,
    ``→``; a CI agent in ``en_US.ISO-8859-1``) writes those as ``\\u2264`` escapes instead of
    failing. It failed: after the evaluation was recorded, printing its verdict raised
    UnicodeEncodeError, and the gate step ended in a traceback and exit 2 instead of its
    verdict and exit code. (An escape is also what JSON means by it.) Standard error already
    escapes so; UTF-8 output is left as it is."""
    stream = sys.stdout
    if isinstance(stream, io.TextIOWrapper):  # (a test runner's capture is not one)
        encoding = (stream.encoding or "").lower().replace("-", "").replace("_", "")
        if encoding != "utf8":
            stream.reconfigure(errors="backslashreplace")
