"""ASGI middlewares in front of the app: a bounded request body, and the Host header checked
against the names the service answers to.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


class BoundedBody:
    """ASGI middleware: a request's body is read and counted as it arrives, before anything
    parses or authenticates it; past ``limit`` bytes the answer is 413 and the rest is never
    read (a chunked body, which has no Content-Length, counts the same). The app then reads
    the body from memory."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, given = b"".join(chunks), False

        async def replay() -> Any:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)

    @staticmethod
    async def _too_large(scope: Any, receive: Any, send: Any) -> None:
        from starlette.responses import JSONResponse

        too_large = JSONResponse({"detail": "request body too large"}, status_code=413)
        await too_large(scope, receive, send)


class KnownHosts:
    """ASGI middleware: only requests whose ``Host`` names this service (its listen address,
    the loopback names, ``service.url``'s host, ``service.allowed_hosts``) are answered; any
    other is 400. A page of another site whose name was rebound to 127.0.0.1 sends its own
    name: without this, it could create waivers on a loopback service that has no token.
    A service listening on every address (``0.0.0.0``) with no ``allowed_hosts`` answers any
    name: there the token guards every change."""

    def __init__(self, app: Any, allowed: set[str] | None) -> None:
        self.app, self.allowed = app, allowed

    @staticmethod
    def allowed_for(listen: str, url: str | None, extra: list[str]) -> set[str] | None:
        """The host names a service on ``listen`` answers to (None: any)."""
        host = listen.rpartition(":")[0].strip("[]").lower()
        if host in ("0.0.0.0", "::", "") and not extra:
            return None
        allowed = {"localhost", host, *(h.lower() for h in extra)}
        if url:
            named = urlsplit(url).hostname
            if named:
                allowed.add(named.lower())
        return allowed

    def accepts(self, header: str) -> bool:
        if self.allowed is None:
            return True
        try:
            host = urlsplit(f"//{header}").hostname
        except ValueError:
            return False
        if not host:
            return False
        if host in self.allowed or is_loopback(host):
            return True
        return any(a.startswith("*.") and host.endswith(a[1:]) for a in self.allowed)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            header = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            if not self.accepts(header):
                from starlette.responses import PlainTextResponse

                await PlainTextResponse("unknown Host: this service answers to its own names only", 400)(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)


def is_loopback(host: str) -> bool:
    import ipaddress

    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
