"""Every error answer has one shape: {"error": {"code": "...", "message": "..."}}."""

from __future__ import annotations

from flask import Flask, Response, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from app.core.validation import summary
from app.delivery.destinations import UnknownDestination
from app.orgs.connect import DestinationUnavailable, InvalidRequest


def error(status: int, code: str, message: str) -> tuple[Response, int]:
    """An error answer in the one shape every endpoint uses."""
    return jsonify({"error": {"code": code, "message": message}}), status


def register(app: Flask) -> None:
    """Answer HTTP errors, invalid requests and unknown destinations in that shape."""

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[Response, int]:
        code = (exc.name or "error").lower().replace(" ", "_")
        return error(exc.code or 500, code, exc.description or code)

    @app.errorhandler(ValidationError)
    def _invalid(exc: ValidationError) -> tuple[Response, int]:
        return error(400, "invalid_request", summary(exc))

    @app.errorhandler(InvalidRequest)
    @app.errorhandler(UnknownDestination)
    def _bad(exc: ValueError) -> tuple[Response, int]:
        return error(400, "invalid_request", str(exc))

    @app.errorhandler(DestinationUnavailable)
    def _unavailable(exc: DestinationUnavailable) -> tuple[Response, int]:
        return error(503, "destination_unavailable", str(exc))
