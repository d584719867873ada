"""The destination registry: a new CRM is one module here and one entry in DESTINATIONS."""

from __future__ import annotations

from typing import Any, Protocol

from app.delivery.destinations import public_http
from app.delivery.destinations.base import Destination, DestinationConfig, DestinationContext
from app.delivery.destinations.http import HttpConfig, HttpDestination
from app.delivery.destinations.hubspot import HubSpotDestination
from app.delivery.destinations.hubspot.config import HubSpotConfig


class DestinationFactory(Protocol):
    """Builds a destination's sender from its config and secret."""

    def __call__(self, config: Any, secret: str, context: DestinationContext) -> Destination: ...


DESTINATIONS: dict[str, tuple[type[DestinationConfig], DestinationFactory]] = {
    "http": (HttpConfig, HttpDestination),
    "hubspot": (HubSpotConfig, HubSpotDestination),
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
    config: DestinationConfig, secret: str | None, context: DestinationContext
) -> Destination:
    """The adapter that sends to the destination `config` with its (decrypted) secret."""
    if secret is None or config.type not in DESTINATIONS:
        raise UnknownDestination(f"destination {config.type} has no secret stored")
    # In production its requests go through a session that connects to public addresses only.
    return DESTINATIONS[config.type][1](config, secret, public_http.confined(context))
