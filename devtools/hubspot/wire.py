"""What every endpoint of the fake shares: HubSpot's error bodies (raised as `HubSpotError` and
answered by the server), its timestamps, the shape of a batch's `inputs`, and shuffled results."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

from devtools.httpserver import Request, Response, json_response

MAX_INPUTS = 100


class HubSpotError(Exception):
    """An answer in HubSpot's error shape; per input inside a 207, or the whole body."""

    def __init__(
        self,
        status: int,
        category: str,
        message: str,
        *,
        sub_category: str | None = None,
        context: dict[str, list[str]] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.category = category
        self.message = message
        self.sub_category = sub_category
        self.context = context or {}
        self.errors = errors or []

    def body(self) -> dict[str, Any]:
        """The whole answer: `{status, message, correlationId, category, subCategory?, ...}`."""
        body: dict[str, Any] = {
            "status": "error",
            "message": self.message,
            "correlationId": str(uuid.uuid4()),
            "category": self.category,
        }
        if self.sub_category:
            body["subCategory"] = self.sub_category
        if self.context:
            body["context"] = self.context
        if self.errors:
            body["errors"] = self.errors
        return body

    def item(self, trace: str) -> dict[str, Any]:
        """One input's error inside a traced 207, its trace id in `context.objectWriteTraceId`."""
        item: dict[str, Any] = {
            "status": "error",
            "category": self.category,
            "message": self.message,
            "context": {"objectWriteTraceId": [trace], **self.context},
        }
        if self.errors:
            item["errors"] = self.errors
        return item

    def response(self) -> Response:
        """The whole-body answer."""
        return json_response(self.status, self.body())


def validation(message: str, **kwargs: Any) -> HubSpotError:
    """A 400 `VALIDATION_ERROR`."""
    return HubSpotError(400, "VALIDATION_ERROR", message, **kwargs)


def not_found(message: str, ids: list[str] | None = None) -> HubSpotError:
    """A 404 `OBJECT_NOT_FOUND`, naming the ids when there are some."""
    return HubSpotError(404, "OBJECT_NOT_FOUND", message, context={"ids": ids} if ids else None)


def now_iso() -> str:
    """Now as HubSpot writes times: ISO 8601 UTC with milliseconds and a `Z`."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_body(request: Request) -> Any:
    """The request's JSON body, or a 400 like HubSpot's for a body that is not JSON."""
    try:
        return request.json()
    except ValueError:
        raise validation("Invalid input JSON: the body is not valid JSON") from None


def batch_inputs(body: Any, limit: int = MAX_INPUTS) -> list[dict[str, Any]]:
    """`body["inputs"]`, checked: a non-empty list of at most `limit` objects, else a 400."""
    inputs = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(inputs, list) or not all(isinstance(item, dict) for item in inputs):
        raise validation("Invalid input JSON: `inputs` must be a list of objects")
    if not inputs:
        raise validation("Invalid input: `inputs` must not be empty")
    if len(inputs) > limit:
        raise validation(f"Batch size {len(inputs)} exceeds the maximum of {limit} inputs")
    return inputs


def shuffled(items: list[Any], rng: random.Random) -> list[Any]:
    """`items` in an order that is never the given one (when there are two or more): HubSpot
    answers batches out of order, and a client that relies on the order must fail its tests."""
    answer = list(items)
    rng.shuffle(answer)
    if len(answer) > 1 and answer == items:
        answer = answer[1:] + answer[:1]
    return answer
