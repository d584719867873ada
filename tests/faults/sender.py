"""Delivers a signed stream of webhooks the way LOKE does, on background threads.

LOKE posts each event with a bounded number of connections and retries a 5xx, a timeout or a
refused connection a few times over minutes. The sender does the same on a compressed clock
(short delays, a deadline per event), so an outage of a few seconds is bridged by retries and
only an event the service never acknowledged counts as not accepted. Raw sockets keep the
client's own CPU small: the suite shares two cores with every process under test.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from tests.support.fake_loke import sign

RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0)  # then 2 s apart until the event's deadline


@dataclass
class Delivery:
    """What happened to the stream: counts by final answer, and every answer seen."""

    sent: int = 0  # distinct events handed to the sender
    accepted: int = 0  # events whose last answer was 202
    rejected: int = 0  # events whose last answer was another 4xx (never retried)
    gave_up: int = 0  # events still failing at their deadline
    retries: int = 0
    answers: Counter[int] = field(default_factory=Counter)  # every attempt; 0 = no answer
    finished_at: float = 0.0  # time.monotonic() when the last event was settled


class LokeSender:
    """`start()` sends every event on `threads` threads; `done()`/`wait()` follow progress."""

    def __init__(
        self,
        port: int,
        org_id: str,
        events: Sequence[dict[str, Any]],
        secret: str,
        threads: int = 8,
        deadline_seconds: float = 90,
    ) -> None:
        self.port = port
        self.path = f"/webhooks/loke/{org_id}"
        self.payloads = [self._request(event, secret) for event in events]
        self.threads = threads
        self.deadline_seconds = deadline_seconds
        self.result = Delivery(sent=len(self.payloads))
        self._lock = threading.Lock()
        self._settled = 0
        self._next = count()
        self._workers: list[threading.Thread] = []

    def start(self) -> LokeSender:
        self._workers = [
            threading.Thread(target=self._run, name=f"loke-sender-{n}", daemon=True)
            for n in range(self.threads)
        ]
        for worker in self._workers:
            worker.start()
        return self

    def settled(self) -> int:
        """Events that reached a final answer (or gave up) so far."""
        with self._lock:
            return self._settled

    def wait_until_settled(self, fraction: float, timeout: float = 120) -> None:
        """Block until `fraction` of the stream is settled: the moment to inject a fault."""
        target = int(len(self.payloads) * fraction)
        deadline = time.monotonic() + timeout
        while self.settled() < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.settled()} of {target} events settled")
            time.sleep(0.02)

    def wait(self, timeout: float = 300) -> Delivery:
        for worker in self._workers:
            worker.join(timeout)
            if worker.is_alive():
                raise TimeoutError("the sender did not finish")
        return self.result

    def _run(self) -> None:
        while (i := next(self._next)) < len(self.payloads):
            status = self._deliver(self.payloads[i])
            with self._lock:
                self._settled += 1
                if status == 202:
                    self.result.accepted += 1
                elif 400 <= status < 500:
                    self.result.rejected += 1
                else:
                    self.result.gave_up += 1
                self.result.finished_at = time.monotonic()

    def _deliver(self, payload: bytes) -> int:
        deadline = time.monotonic() + self.deadline_seconds
        attempt = 0
        while True:
            status = _post(self.port, payload)
            with self._lock:
                self.result.answers[status] += 1
            if 200 <= status < 500 or time.monotonic() > deadline:
                return status
            with self._lock:
                self.result.retries += 1
            time.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
            attempt += 1

    def _request(self, event: dict[str, Any], secret: str) -> bytes:
        body = json.dumps(event, separators=(",", ":")).encode()
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Content-Type: application/json\r\nX-Event-Signature: {sign(body, secret)}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        return head.encode() + body


def _post(port: int, payload: bytes, timeout: float = 10) -> int:
    """One request on a fresh connection; the answer's status, or 0 when there was none
    (refused, reset, timed out): LOKE treats all of those alike and retries."""
    data = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(payload)
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            while sock.recv(65536):  # read to the end: the server closes after the answer
                pass
    except OSError:
        pass  # an answer already read stands; none at all is "no answer"
    return int(data[9:12]) if data.startswith(b"HTTP/1.") and len(data) >= 12 else 0
