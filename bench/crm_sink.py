"""A minimal, fast CRM for benches: counts `contact.upsert` operations per customer, nothing more.

    python -m bench.crm_sink --port PORT --secret SECRET

Run as its own process (so it does not share the bench process's GIL with the FakeLoke). It
checks each batch's `X-Signature` (one HMAC, cheap) and that the body is a JSON object with
`batchId`, `organizationId` and an `operations` list, counts operations by type and
`contact.upsert` per (organizationId, customerId), records every 2xx answer's epoch time, and
answers `200 {"status": "applied"}`. A repeated `batchId` is answered `duplicate` and counted,
not applied. None of RecordingCrm's per-operation ordering checks run here: the bench only asks
"did every customer arrive exactly once, and when".

`GET /stats?org=<org>[&full=1]` returns that organization's figures (see `Sink.stats`).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class Sink:
    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.lock = threading.Lock()
        self.upserts: dict[str, Counter[str]] = {}  # org -> customerId -> contact.upserts
        self.ops: dict[str, Counter[str]] = {}  # org -> operation type -> count
        self.answers: dict[str, list[tuple[float, int]]] = {}  # org -> (epoch, ops) per batch
        self.seen: set[str] = set()
        self.duplicates: Counter[str] = Counter()
        self.errors: list[str] = []  # bad signatures and malformed batches

    def receive(self, body: bytes, signature: str) -> tuple[int, dict[str, Any]]:
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            with self.lock:
                self.errors.append("bad signature")
            return 401, {"error": {"code": "bad_signature", "message": "bad X-Signature"}}
        try:
            batch = json.loads(body)
            batch_id, org, ops = batch["batchId"], batch["organizationId"], batch["operations"]
            if not isinstance(ops, list) or not batch_id or not org:
                raise ValueError("bad batch")
            customers = [op["customerId"] for op in ops if op["type"] == "contact.upsert"]
            kinds = Counter(op["type"] for op in ops)
        except (ValueError, KeyError, TypeError) as exc:
            with self.lock:
                self.errors.append(f"malformed batch: {exc!r}")
            return 400, {"error": {"code": "invalid_batch", "message": str(exc)}}
        with self.lock:
            if batch_id in self.seen:
                self.duplicates[org] += 1
                return 200, {"status": "duplicate"}
            self.seen.add(batch_id)
            self.upserts.setdefault(org, Counter()).update(customers)
            self.ops.setdefault(org, Counter()).update(kinds)
            self.answers.setdefault(org, []).append((time.time(), len(ops)))
        return 200, {"status": "applied", "operations": len(ops)}

    def stats(self, org: str, full: bool) -> dict[str, Any]:
        """customers: distinct customers upserted; errors. With `full` also per_customer:
        {upserts per customer: how many customers}; operations by type; duplicates (repeated
        batchIds); answers: [[epoch, ops], ...] per applied batch, in answer order."""
        with self.lock:
            upserts = self.upserts.get(org, Counter())
            if not full:
                return {"customers": len(upserts), "errors": list(self.errors)}
            return {
                "customers": len(upserts),
                "per_customer": dict(Counter(upserts.values())),
                "operations": dict(self.ops.get(org, Counter())),
                "answers": list(self.answers.get(org, [])),
                "duplicates": self.duplicates[org],
                "errors": list(self.errors),
            }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, port: int, sink: Sink) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.sink = sink


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as the service's requests.Session expects

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, answer = self.server.sink.receive(body, self.headers.get("X-Signature") or "")
        self._reply(status, answer)

    def do_GET(self) -> None:
        split = urlsplit(self.path)
        if split.path == "/healthz":
            self._reply(200, {"status": "ok"})
            return
        query = parse_qs(split.query)
        org, full = query.get("org", [""])[-1], query.get("full", [""])[-1] == "1"
        self._reply(200, self.server.sink.stats(org, full))

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        raw = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        """No per-request stderr lines."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.crm_sink", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    args = parser.parse_args(argv)
    server = _Server(args.port, Sink(args.secret))
    print(f"crm sink listening on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
