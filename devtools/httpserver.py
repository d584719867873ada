"""The dev tools' HTTP plumbing: a stdlib threaded server on 127.0.0.1 that answers `handle()`.

The LOKE sandbox and the fake CRM are small state machines behind one method; serving them from
a daemon thread (not a subprocess) lets the code that drives them (a test, a bench, `loke-sync
demo`) read and change their state directly while real HTTP clients talk to them over real
sockets.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Request:
    """What a handler needs from one HTTP request; header names are lower-cased."""

    method: str
    target: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        """Case-insensitive header lookup."""
        return self.headers.get(name.lower())

    def param(self, name: str) -> str | None:
        """Last value of a query parameter, as most servers read it."""
        values = self.query.get(name)
        return values[-1] if values else None

    def json(self) -> Any:
        """The body parsed as JSON (raises ValueError when it is not)."""
        return json.loads(self.body)


@dataclass
class Response:
    """What a handler answers; Content-Length is added by the server."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    trickle_seconds: float = 0.0  # the body goes out a byte at a time over this long
    # Called just before the answer's last byte goes out (or once the client is gone): the
    # client cannot have read the whole answer before it ran.
    after: Callable[[], None] | None = None


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer, compact like a real API."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(status, body, {"Content-Type": "application/json", **(headers or {})})


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler stuck in a delay must not block stop()
    request_queue_size = 128  # bursts from many workers must not be refused by a tiny backlog

    def __init__(self, owner: LocalServer, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.owner = owner


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, on a kept-alive connection the
        # body waits for the client's delayed ACK (~40 ms an answer), as no real server makes it.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.server.owner.keep_alive:
            self.protocol_version = "HTTP/1.1"  # connections stay open between requests

    def _serve(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        split = urlsplit(self.path)
        request = Request(
            method=self.command,
            target=self.path,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        owner = self.server.owner
        try:
            response = owner.handle(request)
        except Exception:
            owner.server_errors.append(traceback.format_exc())
            response = json_response(500, {"message": "server crashed", "code": "server_error"})
        release = response.after or (lambda: None)
        released = False
        answer = b"" if response.status == 204 else response.body
        try:
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            if response.status != 204:
                self.send_header("Content-Length", str(len(answer)))
            if answer:
                self.end_headers()
                if not self._write(answer[:-1], response.trickle_seconds / len(answer)):
                    return
            release()
            released = True
            if answer:
                self.wfile.write(answer[-1:])
            else:
                self.end_headers()
        except ConnectionError:
            pass  # the client gave up (its timeout): that is its business, not a server failure
        finally:
            if not released:
                release()

    def _write(self, data: bytes, pause_per_byte: float) -> bool:
        """Send `data`, a byte at a time when trickling; False if the client went away."""
        if pause_per_byte <= 0:
            self.wfile.write(data)
            return True
        for byte in data:
            self.wfile.write(bytes((byte,)))
            if self._client_gone(pause_per_byte):
                return False  # as a real server: an answer nobody reads is not sent on
        return True

    def _client_gone(self, within: float) -> bool:
        """Wait `within` seconds, or less if the client closes the connection meanwhile."""
        readable, _, _ = select.select([self.request], [], [], within)
        if not readable:
            return False
        try:
            peeked: bytes = self.request.recv(1, socket.MSG_PEEK)
            return peeked == b""
        except OSError:
            return True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request stderr noise; servers keep their own request logs."""


class LocalServer:
    """Serves `handle()` over real HTTP on 127.0.0.1:<ephemeral> from a daemon thread."""

    keep_alive = False  # HTTP/1.0 by default: every request on a connection of its own

    def __init__(self, port: int = 0) -> None:
        self.port = port  # 0: an ephemeral port, chosen at start()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.server_errors: list[str] = []  # tracebacks from handle(): a bug in the server itself

    def handle(self, request: Request) -> Response:
        """Answer one request; runs on a server thread, so subclasses lock their state."""
        raise NotImplementedError

    def start(self) -> Self:
        """Bind and serve; idempotent. A stopped server restarts (on a new port if ephemeral)."""
        if self._httpd is None:
            self._httpd = _Server(self, self.port)
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"{type(self).__name__}-server",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting and close the socket; in-flight handlers finish on daemon threads."""
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. `http://127.0.0.1:54321`."""
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
