"""The batch object endpoints (`/crm/objects/{v}/{obj}/batch/{upsert|update|create|read}`).

Traced batches (every input has its own `objectWriteTraceId`) apply what is valid and answer
207 with one error per failed input; untraced ones fail whole on their first bad input and
apply nothing. Results come back out of input order, as HubSpot's do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from devtools.httpserver import Response, json_response
from devtools.hubspot.account import Account
from devtools.hubspot.objects import SINGULAR
from devtools.hubspot.records import EMAIL, Record
from devtools.hubspot.values import check
from devtools.hubspot.wire import (
    HubSpotError,
    batch_inputs,
    not_found,
    now_iso,
    shuffled,
    validation,
)

WRITES = ("upsert", "update", "create")
DUPLICATES = "Duplicate IDs found in batch input"


@dataclass
class _Plan:
    """One valid input of a write, ready to apply."""

    record: Record | None  # None: create
    values: dict[str, str]
    trace: str | None


def write(account: Account, obj: str, kind: str, body: Any) -> Response:
    """Upsert, update or create a batch of records."""
    started = now_iso()
    inputs = batch_inputs(body)
    traces = [item.get("objectWriteTraceId") for item in inputs]
    traced = all(isinstance(t, str) and t for t in traces) and len(set(traces)) == len(traces)
    if kind == "upsert":
        for item in inputs:
            _check_id_property(account, obj, item)
    _check_duplicates(account, obj, kind, inputs)
    plans: list[_Plan] = []
    errors: list[dict[str, Any]] = []
    for item, trace in zip(inputs, traces, strict=True):
        try:
            plans.append(_plan(account, obj, kind, item, trace if isinstance(trace, str) else None))
        except HubSpotError as error:
            if not traced:
                raise  # the whole batch fails, and nothing of it was applied yet
            errors.append(error.item(str(trace)))
    results = []
    for plan in plans:
        new = plan.record is None
        if plan.record is None:
            record = account.records.create(obj, plan.values)
        else:
            record = plan.record
            account.records.write(obj, record, plan.values)
        result = record.result()
        if kind == "upsert":
            result["new"] = new
        if plan.trace is not None:
            result["objectWriteTraceId"] = plan.trace
        results.append(result)
    return _answer(account, started, results, errors)


def read(account: Account, obj: str, body: Any) -> Response:
    """Read records by record id (merged-away ids resolve) or by a unique `idProperty`; 207
    naming the ids that match nothing."""
    started = now_iso()
    inputs = batch_inputs(body)
    id_property = body.get("idProperty")
    names = body.get("properties") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise validation("Invalid input JSON: `properties` must be a list of names")
    by_record_id = id_property in (None, "hs_object_id")
    if not by_record_id and not account.schema.keys_records(obj, str(id_property)):
        raise validation(f"{id_property} is not a unique property of {obj}")
    known = [n for n in names if account.schema.get(obj, n) is not None]
    results: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    for item in inputs:
        value = item.get("id")
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise validation("Invalid input: each input needs an `id`")
        asked = str(value)
        if by_record_id:
            record = account.records.resolve(obj, asked)
        else:
            record = account.records.find(obj, str(id_property), asked)
        if record is None:
            missing.append(asked)
        else:
            results.setdefault(record.id, record.result(known))
    errors = []
    if missing:
        message = (
            f"Could not get some {SINGULAR[obj]} objects, they may be deleted or not exist."
            " Check that ids are valid."
        )
        context = {"ids": list(dict.fromkeys(missing))}
        errors.append({"status": "error", "category": "OBJECT_NOT_FOUND", "message": message,
                       "context": context})  # fmt: skip
    return _answer(account, started, list(results.values()), errors)


def _answer(
    account: Account, started: str, results: list[dict[str, Any]], errors: list[dict[str, Any]]
) -> Response:
    """200 with the results, or 207 with the errors too."""
    payload: dict[str, Any] = {"status": "COMPLETE", "results": shuffled(results, account.rng)}
    if errors:
        payload["errors"] = errors
        payload["numErrors"] = len(errors)
    payload["startedAt"], payload["completedAt"] = started, now_iso()
    return json_response(207 if errors else 200, payload)


def _check_id_property(account: Account, obj: str, item: dict[str, Any]) -> None:
    """An upsert input must key on a unique property, with a non-empty string id."""
    name, value = item.get("idProperty"), item.get("id")
    if not isinstance(name, str) or not account.schema.keys_records(obj, name):
        raise validation(f"idProperty {name!r} is not a property of {obj} with unique values")
    if not isinstance(value, str) or not value:
        raise validation("Invalid input: each upsert input needs a non-empty string `id`")


def _check_duplicates(account: Account, obj: str, kind: str, inputs: list[dict[str, Any]]) -> None:
    """400 for the whole batch when two inputs share an id, an email or a unique value."""
    keyed = set(account.schema.unique_names(obj)) | ({"email"} if obj == "contacts" else set())
    seen: set[tuple[str, str]] = set()
    for item in inputs:
        values = item.get("properties")
        pairs = list(values.items()) if isinstance(values, dict) else []
        if kind == "upsert":
            pairs.append((item["idProperty"], item["id"]))
        keys = {
            ("email", value.strip().lower()) if (obj, name) == EMAIL else (name, value)
            for name, value in pairs
            if name in keyed and isinstance(value, str) and value
        }
        if kind == "update":
            keys.add(("hs_object_id", str(item.get("id"))))
        clash = keys & seen
        if clash:
            raise validation(DUPLICATES, context={"ids": sorted(value for _, value in clash)})
        seen |= keys


def _plan(account: Account, obj: str, kind: str, item: dict[str, Any], trace: str | None) -> _Plan:
    """Check one input against the values' rules and the records held; raise what fails."""
    values = check(obj, account.schema, item.get("properties"))
    record: Record | None = None
    if kind == "update":
        record_id = str(item.get("id") or "")
        record = account.records.resolve(obj, record_id)
        if record is None:
            message = f"Could not get some {SINGULAR[obj]} objects: {record_id} does not exist"
            raise not_found(message, [record_id])
    elif kind == "upsert":
        name, key = item["idProperty"], item["id"]
        check(obj, account.schema, {name: key})
        record = account.records.find(obj, name, key)
        if record is None:
            values = {**values, name: key}
    unique = account.schema.unique_names(obj)
    conflict = account.records.conflict(obj, values, unique, record.id if record else None)
    if conflict is not None:
        raise conflict
    return _Plan(record, values, trace)
