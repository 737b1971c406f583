"""Measure a page as a reader sees it: Debian's chromium, driven over the DevTools protocol on
a pipe (``--remote-debugging-pipe``: no port, no websocket library), at a fixed window size.

The pages forbid every script (their Content-Security-Policy); DevTools' own evaluation is not
a page script, so it can read the laid-out page — where each element lies, its computed font —
without the page allowing anything."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .conftest import chromium


class Browser:
    """One headless chromium; each page is opened in a tab of its own (``width`` × ``height``
    unless a call says otherwise) and closed after. A context manager; the tests share one per
    worker (the ``browser`` fixture): starting chromium costs more than most of what they ask."""

    def __init__(self, width: int = 1400, height: int = 1000) -> None:
        self.width, self.height = width, height
        self._ids = 0
        self._buffer = b""

    def __enter__(self) -> Browser:
        to_browser, self._commands = os.pipe()  # we write commands; chromium reads fd 3
        self._events, from_browser = os.pipe()  # chromium writes fd 4; we read answers and events

        def fds() -> None:
            os.dup2(to_browser, 3)
            os.dup2(from_browser, 4)

        self.process = subprocess.Popen(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--remote-debugging-pipe", "--no-first-run", "--hide-scrollbars",
             f"--window-size={self.width},{self.height}", "about:blank"],
            pass_fds=(3, 4), preexec_fn=fds, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(to_browser)
        os.close(from_browser)
        return self

    def __exit__(self, *_: object) -> None:
        with contextlib.suppress(OSError):
            self._send("Browser.close", {})
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        os.close(self._commands)
        os.close(self._events)

    def measure(self, url: str, expression: str, width: int | None = None, height: int | None = None) -> Any:
        """Load ``url`` and return the value of the JavaScript ``expression`` evaluated on it."""
        with self._tab(url, width, height) as session:
            return self._evaluate(session, expression)

    def dom(self, url: str, offline: bool = False) -> str:
        """The DOM of ``url`` once loaded (what ``chromium --dump-dom`` prints). ``offline``:
        every request the page makes goes to a proxy that is not there (loopback excepted)."""
        with self._tab(url, offline=offline) as session:
            return str(self._evaluate(session, "document.documentElement.outerHTML"))

    def screenshot(self, url: str, path: Path, width: int = 1280, height: int = 1500) -> None:
        """A PNG of the first ``width`` × ``height`` of ``url``, written to ``path``."""
        with self._tab(url, width, height) as session:
            shot = self._call("Page.captureScreenshot", {"format": "png"}, session)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    @contextlib.contextmanager
    def _tab(
        self, url: str, width: int | None = None, height: int | None = None, offline: bool = False
    ) -> Iterator[str]:
        """A new tab (in a browser context of its own, proxied when ``offline``) that has
        loaded ``url``: its session id; closed after."""
        options = {"proxyServer": "127.0.0.1:9", "proxyBypassList": "<-loopback>"} if offline else {}
        context = self._call("Target.createBrowserContext", options)["browserContextId"]
        target = self._call("Target.createTarget", {"url": "about:blank", "browserContextId": context})[
            "targetId"
        ]
        session = self._call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        try:
            self._call(
                "Emulation.setDeviceMetricsOverride",
                {"width": width or self.width, "height": height or self.height, "deviceScaleFactor": 1,
                 "mobile": False},
                session,
            )  # fmt: skip
            # The answer comes once the page is committed; its load event after that. A load of
            # the blank tab itself does not count: the page must be the one asked for, loaded.
            self._call("Page.navigate", {"url": url}, session)
            loaded = "document.readyState === 'complete' && location.href !== 'about:blank'"
            deadline = time.monotonic() + 60
            while not self._evaluate(session, loaded):
                assert time.monotonic() < deadline, f"{url} did not load within 60s"
                time.sleep(0.02)
            yield session
        finally:
            self._call("Target.closeTarget", {"targetId": target})
            self._call("Target.disposeBrowserContext", {"browserContextId": context})

    def _evaluate(self, session: str, expression: str) -> Any:
        answer = self._call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
        if "exceptionDetails" in answer:
            raise AssertionError(f"the measuring script failed: {answer['exceptionDetails']}")
        return answer["result"]["value"]

    # ------------------------------------------------------------------ the protocol

    def _send(self, method: str, params: dict[str, Any], session: str | None = None) -> int:
        self._ids += 1
        message: dict[str, Any] = {"id": self._ids, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        return self._ids

    def _call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        ident = self._send(method, params or {}, session)
        while True:
            message = self._read()
            if message.get("id") == ident:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message.get("result", {})

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._events, 1 << 16)
            if not chunk:
                raise AssertionError("chromium closed its DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        found: dict[str, Any] = json.loads(raw)
        return found


#: What a reader sees of a phase page in the first window: the verdict, its first reason and
#: the first check card, with where each lies and the page's font.
PHASE_PAGE = """(() => {
  const box = e => e ? e.getBoundingClientRect() : null;
  const badge = document.querySelector('h1 .verdict');
  const reason = document.querySelector('.verdict-reason');
  const first = document.querySelector('section.checks article.check');
  const headline = first && (first.querySelector('.check-headline') || first.querySelector('h3'));
  return {
    verdict: badge && badge.textContent.trim(), verdict_bottom: box(badge) && box(badge).bottom,
    reason: reason && reason.textContent.trim(), reason_bottom: box(reason) && box(reason).bottom,
    first: first && {suite: first.dataset.suite, standing: first.dataset.standing,
                     headline: headline.textContent.trim(), bottom: box(headline).bottom},
    standings: [...document.querySelectorAll('section.checks article.check')].map(a => a.dataset.standing),
    passed_open: !!document.querySelector('details.passed-checks[open]'),
    font: getComputedStyle(document.body).fontFamily,
    viewport: innerHeight,
  };
})()"""

#: Every chain card: its phase, verdict, height and how many lines its reason takes.
CHAIN_PAGE = """(() => [...document.querySelectorAll('li.card')].map(card => {
  const blocker = card.querySelector('.blocker');
  const line = blocker ? parseFloat(getComputedStyle(blocker).lineHeight) : 0;
  return {phase: card.dataset.phase, verdict: card.dataset.verdict,
          height: card.getBoundingClientRect().height,
          reason_lines: blocker ? Math.round(blocker.getBoundingClientRect().height / line) : 0,
          font: getComputedStyle(card).fontFamily};
}))()"""
