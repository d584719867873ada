"""Property values, checked on every write by the property's type as HubSpot checks them: all
problems of one input are reported together, as one `VALIDATION_ERROR`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from devtools.hubspot.properties import Property, Schema
from devtools.hubspot.wire import HubSpotError, validation

MAX_TEXT = 65_536
DAY_MS = 86_400_000
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_EPOCH_MS = re.compile(r"-?\d+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_START = re.compile(r"\d{4}-?\d{2}-?\d{2}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")
READ_ONLY = frozenset({"hs_object_id"})  # always the record's id, whatever a write says


@dataclass(frozen=True)
class Problem:
    """What is wrong with one property's value."""

    name: str
    code: str
    message: str

    def as_json(self) -> dict[str, Any]:
        """The entry of the JSON list in the message."""
        return {"isValid": False, "message": self.message, "error": self.code, "name": self.name}


def check(obj: str, schema: Schema, values: Any) -> dict[str, str]:
    """`values` (a write's `properties`) if every one is valid, else a `VALIDATION_ERROR` that
    lists each problem; "" is valid (it clears the value)."""
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise validation("Invalid input JSON: `properties` must be an object")
    problems = [
        problem
        for name, value in values.items()
        if (problem := _problem(obj, schema.get(obj, name), name, value)) is not None
    ]
    if problems:
        raise invalid(problems)
    return {name: value for name, value in values.items() if name not in READ_ONLY}


def invalid(problems: list[Problem]) -> HubSpotError:
    """The error HubSpot answers for invalid values: the list as a JSON string in the message,
    and one entry per problem in `errors`."""
    detail = json.dumps([problem.as_json() for problem in problems])
    errors = [
        {"code": p.code, "message": p.message, "context": {"propertyName": [p.name]}}
        for p in problems
    ]
    return validation(f"Property values were not valid: {detail}", errors=errors)


def _problem(obj: str, prop: Property | None, name: str, value: Any) -> Problem | None:
    if prop is None:
        return Problem(name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist')
    if not isinstance(value, str):
        return Problem(name, "INVALID_TYPE", f"{json.dumps(value)} is not a string value")
    if value == "":
        return None
    if len(value) > MAX_TEXT:
        return Problem(name, "MAX_LENGTH_EXCEEDED", f"longer than {MAX_TEXT} characters")
    if prop.type != "string" and value != value.strip():
        message = f"{value!r} has leading or trailing whitespace"
        return Problem(name, "LEADING_TRAILING_WHITESPACE", message)
    code = _type_problem(prop, value)
    if code is None and prop.rule is not None and not re.fullmatch(prop.rule, value):
        return Problem(name, "INVALID_FORMAT", f"{value!r} does not match the portal's rule")
    if code is None and (obj, name) == ("contacts", "email") and not _EMAIL.fullmatch(value):
        code = "INVALID_EMAIL"
    if code is None:
        return None
    return Problem(name, code, f"{value!r} is not a valid {prop.type} value for {name}")


def _type_problem(prop: Property, value: str) -> str | None:
    """The error code for a value that does not fit the property's type, or None."""
    if prop.type == "number":
        return None if _NUMBER.fullmatch(value) else "INVALID_INTEGER"
    if prop.type == "date":
        return None if _is_date(value) else "INVALID_DATE"
    if prop.type == "datetime":
        return None if _is_datetime(value) else "INVALID_DATETIME"
    if prop.type == "bool":
        return None if value in ("true", "false") else "INVALID_BOOLEAN"
    if prop.type == "enumeration" and prop.options:
        allowed = {option["value"] for option in prop.options}
        chosen = value.split(";") if prop.field_type == "checkbox" else [value]
        return None if set(chosen) <= allowed else "INVALID_OPTION"
    return None


def _is_date(value: str) -> bool:
    """`YYYY-MM-DD`, or epoch milliseconds at midnight UTC."""
    if _EPOCH_MS.fullmatch(value):
        return int(value) % DAY_MS == 0
    if not _DATE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_datetime(value: str) -> bool:
    """ISO 8601 (a date, or a date and a time), or epoch milliseconds."""
    if _EPOCH_MS.fullmatch(value):
        return True
    if not _ISO_START.match(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True
