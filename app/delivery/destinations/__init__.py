"""The destination registry: a new CRM is one module here and one entry in DESTINATIONS."""

from __future__ import annotations

from typing import Any, Protocol

import requests

from app.delivery.destinations.base import Destination, DestinationConfig
from app.delivery.destinations.http import HttpConfig, HttpDestination


class DestinationFactory(Protocol):
    """Builds a destination's sender from its config and secret."""

    def __call__(
        self, config: Any, secret: str, timeout: float, session: requests.Session
    ) -> Destination: ...


DESTINATIONS: dict[str, tuple[type[DestinationConfig], DestinationFactory]] = {
    "http": (HttpConfig, HttpDestination),
}


class UnknownDestination(ValueError):
    """A destination type, or a stored destination, that cannot be sent to."""


def parse_config(raw: dict[str, Any]) -> DestinationConfig:
    """Validate a destination as given to PUT /api/orgs/<orgId> (raises pydantic errors)."""
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in DESTINATIONS:
        raise UnknownDestination(
            f"destination.type must be one of {sorted(DESTINATIONS)}, got {kind!r}"
        )
    return DESTINATIONS[kind][0].model_validate(raw)


def build(
    raw: dict[str, Any], secret: str | None, timeout: float, session: requests.Session
) -> Destination:
    """The adapter that sends to the stored destination `raw` (as saved, without its secret)."""
    config = parse_config(raw)
    if secret is None:
        raise UnknownDestination(f"destination {raw['type']} has no secret stored")
    return DESTINATIONS[raw["type"]][1](config, secret, timeout, session)
