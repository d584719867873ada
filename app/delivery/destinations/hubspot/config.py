"""The `hubspot` destination's settings (see "HubSpot" in the README)."""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import AnyHttpUrl, Field

from app.delivery.destinations.base import DestinationConfig

# A request's slot is a little longer than the allowance's average: HubSpot counts a rolling
# window by arrival, and requests paced exactly at the limit arrive, jittered by the network,
# a few at a time over it. 5% keeps 429s rare and costs 5% of the ceiling.
PACING_MARGIN = 0.95


def token_id(token: str) -> str:
    """A fingerprint naming the token without revealing it (the key of its allowance)."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


class HubSpotConfig(DestinationConfig):
    """A HubSpot portal, written to with a service key's or private app's access token."""

    type: Literal["hubspot"]
    # Write-only, as every destination's secret: stored encrypted, never returned.
    secret: str | None = Field(
        None, alias="accessToken", min_length=8, max_length=500, exclude=True
    )
    base_url: AnyHttpUrl = Field(AnyHttpUrl("https://api.hubapi.com"), alias="baseUrl")
    batch_size: int = Field(100, alias="batchSize", ge=1, le=100)  # HubSpot's batch limit
    requests_per_ten_seconds: int = Field(100, alias="requestsPerTenSeconds", ge=1, le=1000)
    daily_limit: int | None = Field(None, alias="dailyLimit", ge=1)
    list_name_prefix: str = Field("LOKE: ", alias="listNamePrefix", max_length=100)
    # Learnt when connecting (whatever a caller sends is replaced): which portal the token
    # opens, its time zone (the daily limit resets at its midnight) and the token's fingerprint.
    portal_id: int | None = Field(None, alias="portalId")
    time_zone: str | None = Field(None, alias="timeZone", max_length=64)
    token_id: str | None = Field(None, alias="tokenId", max_length=16)

    def seconds_per_request(self) -> float:
        """Ten seconds over the allowance, with a margin for the network's jitter."""
        return 10.0 / (self.requests_per_ten_seconds * PACING_MARGIN)

    def daily_requests(self) -> int | None:
        """`dailyLimit`: a budget of the portal's daily allowance for this service."""
        return self.daily_limit

    def day_zone(self) -> str | None:
        """HubSpot's day is the portal's."""
        return self.time_zone

    def account_key(self) -> str:
        """The token's allowance: HubSpot limits requests per ten seconds per token."""
        return f"hubspot:{self.portal_id}:{self.token_id}"
