"""Why LOKE would not let an organization be connected, as errors a caller can act on.

A first connect asks LOKE before it writes anything (`check_at_loke`), so that the usual
refusals (no client credentials configured, credentials LOKE does not accept, an organization
that has not installed the add-on, LOKE down) leave nothing behind; `refusal` names what a
refused subscription PUT means when LOKE refuses only then.
"""

from __future__ import annotations

from app.core.config import Settings
from app.loke.client import LokeClient
from app.loke.errors import LokeError


class ConnectRefused(RuntimeError):
    """The organization was not connected, and nothing of the attempt was kept. `code` and
    `http_status` are what the admin API answers."""

    code = "loke_refused"
    http_status = 409


class LokeNotConfigured(ConnectRefused):
    """LOKE_CLIENT_ID or LOKE_CLIENT_SECRET is not set: no organization can be connected."""

    code = "loke_not_configured"
    http_status = 400


class LokeRefused(ConnectRefused):
    """LOKE answered no: our client credentials, or the organization (not installed, unknown).
    Asking again changes nothing until that is put right, so it is a 4xx: 409, the request is
    fine but the state of things at LOKE is not."""


class LokeUnavailable(ConnectRefused):
    """LOKE could not be reached, or kept failing: trying again later may work."""

    code = "loke_unavailable"
    http_status = 503


def require_credentials(settings: Settings) -> None:
    """Refuse at once when the add-on's client credentials are not configured: without them
    no LOKE call can succeed, and a connect would only half happen."""
    if not settings.loke_client_id or not settings.loke_client_secret:
        raise LokeNotConfigured(
            "LOKE_CLIENT_ID and LOKE_CLIENT_SECRET must be set to connect an organization "
            "(the add-on's client credentials from LOKE; `loke-sync sandbox` prints a pair "
            "for its simulated LOKE); nothing was connected"
        )


def check_at_loke(settings: Settings, loke: LokeClient, org_id: str) -> None:
    """Before a first connect writes anything: credentials configured, a token granted, and
    the organization's webhooks readable (LOKE answers 403/404 for an organization that has
    not installed the add-on). A read, so a refusal here leaves no trace anywhere."""
    require_credentials(settings)
    try:
        loke.subscriptions(org_id)
    except LokeError as exc:
        raise refusal(org_id, exc) from None


def refusal(org_id: str, exc: LokeError) -> ConnectRefused:
    """The error to raise for LOKE's answer `exc` to connecting `org_id`."""
    if exc.retryable:
        return LokeUnavailable(
            f"LOKE could not be reached to connect {org_id}; nothing was connected, "
            f"try again later: {exc}"
        )
    if exc.status == 401:  # the token endpoint's invalid_client, or the API's, after a renewal
        hint = "LOKE did not accept the add-on's credentials (LOKE_CLIENT_ID, LOKE_CLIENT_SECRET)"
    elif exc.status in (403, 404):
        hint = (
            f"has {org_id} installed the add-on? (`loke-sync orgs discover` lists the "
            "organizations that have)"
        )
    else:
        hint = "LOKE refused"
    return LokeRefused(f"{org_id} was not connected: {hint}: {exc}")
