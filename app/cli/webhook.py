"""`loke-sync webhook send`: a webhook body posted to this service's receiver, signed as LOKE
signs it with the organization's stored secret; to try the receiver by hand, or to hand it an
event again."""

from __future__ import annotations

import hashlib
import hmac
from typing import BinaryIO
from urllib.parse import quote

import click

from app.cli.context import service_context
from app.cli.errors import one_line

# The receiver's contract (app/web/receiver.py): this header, this prefix, HMAC-SHA256 in hex.
SIGNATURE_HEADER = "X-Event-Signature"
SIGNATURE_PREFIX = "sha256="


def signature(body: bytes, secret: bytes) -> str:
    """The `X-Event-Signature` LOKE would send with `body` under `secret`."""
    return SIGNATURE_PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


@click.group("webhook")
def webhook() -> None:
    """Webhooks, as LOKE sends them."""


@webhook.command("send")
@click.argument("org_id")
@click.argument("body_file", metavar="FILE.json", type=click.File("rb"))
@click.option("--url", metavar="URL", show_default="PUBLIC_URL",
              help="the service's base URL, where its receiver listens")  # fmt: skip
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(0.1),
              help="seconds to wait for the receiver's answer")  # fmt: skip
def send(org_id: str, body_file: BinaryIO, url: str | None, timeout: float) -> None:
    """Sign FILE.json (`-`: standard input) with ORG_ID's webhook secret and POST it to
    URL/webhooks/loke/ORG_ID, as LOKE would; print the answer's status and body.

    The body is sent byte for byte as read: it must be a JSON object with an `event` and
    `organization.id` equal to ORG_ID. Exits with status 1 unless the answer is a 2xx.
    """
    import requests

    from app.orgs.webhook_secrets import WebhookSecrets

    body = body_file.read()
    with service_context() as (services, _):
        # The receiver's own reading of the secrets: the one it checks first is the one signed.
        signing = WebhookSecrets(services.db, services.box).get(org_id)
        base = url or services.settings.public_url
    if signing is None:
        raise click.ClickException(f"organization {org_id} is not connected: it has no secret")
    target = f"{base.rstrip('/')}/webhooks/loke/{quote(org_id, safe='')}"
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(body, signing.current),
    }
    try:
        answer = requests.post(
            target, data=body, headers=headers, timeout=timeout, allow_redirects=False
        )
    except requests.RequestException as exc:
        raise click.ClickException(
            one_line(f"could not reach the receiver at {target}: {exc}")
        ) from None
    said = one_line(answer.text) or "(no body)"
    if not 200 <= answer.status_code < 300:
        raise click.ClickException(f"the receiver answered {answer.status_code}: {said}")
    click.echo(f"{answer.status_code} {said}")
