"""The outermost layer of the app: a request id on every request and response, one access log line per request,
and the request metrics. Outside the body-size limit, so a 413 is logged and counted like any answer.

Request id: the request's ``X-Request-ID`` when it is 1 to 128 visible ASCII characters, else a new random one;
the response carries it back in ``X-Request-ID`` and the access line (logger ``serving.access``, level info)
names it. A request whose client hangs up before the answer is logged and counted with status 499 (nginx's
"client closed request"), never as an answer the client got.
"""
from __future__ import annotations

import logging
import re
import time
import uuid

from serving.logs import ACCESS

HEADER = b"x-request-id"
_VALID_ID = re.compile(rb"[!-~]{1,128}")
CLIENT_CLOSED = 499
log = logging.getLogger(ACCESS)


def request_id(headers) -> str:
    """The request's X-Request-ID when it is a valid one, else a new one (32 hex digits)."""
    for name, value in headers:
        if name == HEADER:
            if _VALID_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return uuid.uuid4().hex


class Observed:
    """ASGI middleware: request id, access line, metrics (`metrics` None: no metrics)."""

    def __init__(self, app, metrics=None):
        self.app, self.metrics = app, metrics
        self._routes: frozenset[str] | None = None

    def route_of(self, scope) -> str:
        if self._routes is None:   # the app's routes are all declared by the first request
            self._routes = frozenset(getattr(r, "path", "") for r in scope["app"].routes)
        return scope["path"] if scope["path"] in self._routes else "other"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = request_id(scope.get("headers") or [])
        scope.setdefault("state", {})["request_id"] = rid
        started, status, gone = time.perf_counter(), None, False

        async def watched_receive():
            nonlocal gone
            message = await receive()
            gone = gone or message["type"] == "http.disconnect"
            return message

        async def stamped_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = CLIENT_CLOSED if gone else message["status"]
                self._count(scope, status)   # before the client can see the answer: a scrape after it counts it
                message = {**message, "headers": [*message.get("headers", []), (HEADER, rid.encode())]}
            await send(message)

        try:
            await self.app(scope, watched_receive, stamped_send)
        except BaseException:
            if status is None:
                status = CLIENT_CLOSED if gone else 500
                self._count(scope, status)
            raise
        finally:
            if status is None:   # the app returned without answering: the client is gone
                status = CLIENT_CLOSED
                self._count(scope, status)
            self._done(scope, rid, status, time.perf_counter() - started)

    def _count(self, scope, status: int) -> None:
        if self.metrics is not None:
            self.metrics.count_request(self.route_of(scope), scope["method"], status)

    def _done(self, scope, rid: str, status: int, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.observe_latency(self.route_of(scope), seconds)
        if log.isEnabledFor(logging.INFO):
            client = "{}:{}".format(*scope["client"]) if scope.get("client") else "-"
            log.info('%s - "%s %s HTTP/%s" %d %.1f ms request_id=%s', client, scope["method"], scope["path"],
                     scope.get("http_version", "1.1"), status, seconds * 1000, rid,
                     extra={"request_id": rid, "client": client, "method": scope["method"], "path": scope["path"],
                            "status": status, "duration_ms": round(seconds * 1000, 3)})
