"""The ingest baseline: a Flask POST endpoint that reads the body and answers 202, nothing else.

Served by gunicorn with the same flags as the real receiver, so the ratio measures what the
receiver adds (signature, parsing, a durable insert, a kick) and not the web stack.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request

app = Flask(__name__)


@app.post("/webhooks/loke/<org_id>")
def receive(org_id: str) -> tuple[Response, int]:
    request.get_data(cache=False)
    return jsonify({"status": "accepted"}), 202


@app.get("/healthz")
def healthz() -> tuple[Response, int]:
    return jsonify({"status": "ok"}), 200
