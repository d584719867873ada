"""HubSpot's batch object endpoints, read record by record.

Every input carries its own `objectWriteTraceId`, which is what makes HubSpot answer a 207
naming each failed input rather than fail the whole batch on the first bad one. Results come
in any order: successes are matched by their echoed trace id (or by the id property), errors
by `context.objectWriteTraceId`. An input the answer names neither way failed (HubSpot's 2xx
with empty results for a malformed body). A batch HubSpot refuses as a whole is sent again
one input at a time, so that one bad record cannot sink the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.delivery.destinations.hubspot.api import OBJECTS, HubSpotApi, HubSpotError

MAX_INPUTS = 100
NO_RESULT = "NO_RESULT"
NO_RESULT_MESSAGE = "HubSpot's answer named no result for this record"


@dataclass
class Answer:
    """Per trace id: the record HubSpot wrote or read, or the error it gave."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)

    def merge(self, other: Answer) -> None:
        """Add another answer's records and errors."""
        self.results.update(other.results)
        self.errors.update(other.errors)


def write(
    api: HubSpotApi, object_type: str, action: str, inputs: list[dict[str, Any]],
    id_property: str | None = None,
) -> Answer:  # fmt: skip
    """Send traced inputs (upsert, update or create) in batches of at most 100."""
    answer = Answer()
    for start in range(0, len(inputs), MAX_INPUTS):
        chunk = inputs[start : start + MAX_INPUTS]
        answer.merge(_write(api, f"{OBJECTS}/{object_type}/batch/{action}", chunk, id_property))
    return answer


def _write(
    api: HubSpotApi, path: str, inputs: list[dict[str, Any]], id_property: str | None
) -> Answer:
    try:
        body = api.post(path, {"inputs": inputs})
    except HubSpotError as exc:
        if len(inputs) > 1:
            answer = Answer()
            for one in inputs:
                answer.merge(_write(api, path, [one], id_property))
            return answer
        return Answer(errors={inputs[0]["objectWriteTraceId"]: _as_error(exc)})
    traces = {i["objectWriteTraceId"] for i in inputs}
    by_id = {str(i["id"]): i["objectWriteTraceId"] for i in inputs if id_property and "id" in i}
    answer = Answer()
    for result in body.get("results") or []:
        if not isinstance(result, dict):
            continue
        trace = str(result.get("objectWriteTraceId"))
        if trace not in traces and id_property:
            trace = by_id.get(str((result.get("properties") or {}).get(id_property)), "")
        if trace in traces:
            answer.results[trace] = result
    for error in body.get("errors") or []:
        context = error.get("context") if isinstance(error, dict) else None
        for trace in (context or {}).get("objectWriteTraceId") or []:
            if trace in traces and trace not in answer.results:
                answer.errors[trace] = error
    for trace in traces - answer.results.keys() - answer.errors.keys():
        answer.errors[trace] = {"category": NO_RESULT, "message": NO_RESULT_MESSAGE}
    return answer


def read(
    api: HubSpotApi, object_type: str, ids: list[str], properties: list[str],
    id_property: str | None = None,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """The records found for `ids` (by `id_property`, else by record id), keyed by the id
    asked for; ids HubSpot does not have are left out."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), MAX_INPUTS):
        chunk = ids[start : start + MAX_INPUTS]
        body: dict[str, Any] = {"inputs": [{"id": i} for i in chunk], "properties": properties}
        if id_property:
            body["idProperty"] = id_property
        answer = api.post(f"{OBJECTS}/{object_type}/batch/read", body)
        results = [r for r in answer.get("results") or [] if isinstance(r, dict)]
        if id_property:
            for result in results:
                key = (result.get("properties") or {}).get(id_property)
                if key is not None:
                    found[str(key)] = result
        elif len(chunk) == 1 and len(results) == 1:
            found[chunk[0]] = results[0]  # a merged-away id reads as the merged record
        else:
            found.update({str(r.get("id")): r for r in results})
    return found


def _as_error(exc: HubSpotError) -> dict[str, Any]:
    return {**exc.body, "category": exc.category or f"HTTP_{exc.status}", "message": exc.message}


def is_conflict(error: dict[str, Any]) -> str | None:
    """The id of the record that already holds a unique value (an email), if that is the error."""
    if error.get("category") not in ("CONFLICT", "OBJECT_ALREADY_EXISTS"):
        return None
    existing = (error.get("context") or {}).get("existingId") or []
    if existing:
        return str(existing[0])
    message = str(error.get("message") or "")
    _, found, rest = message.partition("Existing ID: ")
    return rest.split()[0].strip(".") if found and rest.split() else None


def is_invalid_email(error: dict[str, Any]) -> bool:
    """HubSpot refused the record's email as not an email."""
    return error.get("category") == "VALIDATION_ERROR" and "INVALID_EMAIL" in _codes(error)


def _codes(error: dict[str, Any]) -> str:
    inner = " ".join(
        str(e.get("code", "")) for e in error.get("errors") or [] if isinstance(e, dict)
    )
    return f"{error.get('message', '')} {inner}"
