"""The dashboard: sign-in with ADMIN_TOKEN, CSRF on every POST, every page and action behind
the session, and each action going through the same app functions as the admin API."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text, update
from werkzeug.routing import IntegerConverter

from app.core.services import Services
from app.core.task_names import BACKFILL_PAGE, LISTS_READ
from app.delivery.sender import flush_org
from app.factory import create_app
from app.ingest.apply import drain_inbox
from app.store.migrate import upgrade
from app.store.models import BackfillRun
from app.web.dashboard_format import duration, safe_url
from devtools.crm import FakeCrm
from tests.conftest import (
    ADMIN_TOKEN,
    AUTH,
    CRM_SECRET,
    SECRET_KEY,
    RecordingDispatcher,
    destination,
    make_settings,
    services_of,
)
from tests.support.fake_loke import FakeLoke, customer_event, make_customer, sign

ORG = "org-dash"
NOW = dt.datetime(2026, 9, 1, 10, 0, tzinfo=dt.UTC)
# Routes anyone may call: the sign-in page, static files, health and metrics, LOKE's webhooks
# (signed per organization). Everything else needs the dashboard session or the bearer token.
PUBLIC_ENDPOINTS = {"dashboard.signin", "static"}
PUBLIC_BLUEPRINTS = {"health", "receiver"}


@pytest.fixture
def connected(client: FlaskClient, loke: FakeLoke, crm: FakeCrm) -> str:
    """Connects ORG through the admin API; returns the webhook secret LOKE was given."""
    loke.add_org(ORG, "Cafe Dash")
    answer = client.put(f"/api/orgs/{ORG}", json={"destination": destination(crm)}, headers=AUTH)
    assert answer.status_code == 201
    return loke.secret_for(ORG)


def csrf_of(client: FlaskClient, page: str = "/signin") -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get(page).get_data(as_text=True))
    assert found, f"no CSRF field on {page}"
    return found.group(1)


def sign_in(client: FlaskClient, token: str = ADMIN_TOKEN) -> Any:
    return client.post("/signin", data={"token": token, "csrf": csrf_of(client), "next": "/"})


@pytest.fixture
def signed_in(client: FlaskClient) -> str:
    """Signs the client in; returns the session's CSRF token."""
    assert sign_in(client).status_code == 303
    return csrf_of(client, "/")


def page(client: FlaskClient, url: str) -> str:
    answer = client.get(url)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_data(as_text=True)


def flashed(client: FlaskClient, answer: Any) -> str:
    assert answer.status_code == 303
    return page(client, answer.headers["Location"])


def finish_backfill(services: Services) -> None:
    with services.db.transaction() as session:
        session.execute(update(BackfillRun).values(status="finished", finished_at=NOW))


# -- signing in and out -------------------------------------------------------------------------
def test_pages_redirect_to_sign_in_and_the_right_token_opens_them(client: FlaskClient) -> None:
    answer = client.get("/")
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/signin?next=/"
    assert "Admin token" in page(client, "/signin")
    signed = sign_in(client)
    assert signed.headers["Location"] == "/"
    assert "Organizations" in page(client, "/")


@pytest.mark.parametrize("token", ["wrong-token", "", ADMIN_TOKEN + "x", ADMIN_TOKEN.upper()])
def test_a_wrong_token_does_not_sign_in(client: FlaskClient, token: str) -> None:
    answer = sign_in(client, token)
    assert answer.status_code == 401
    assert "not the admin token" in answer.get_data(as_text=True)
    assert client.get("/").status_code == 303


def test_sign_in_itself_needs_the_csrf_token(client: FlaskClient) -> None:
    client.get("/signin")
    answer = client.post("/signin", data={"token": ADMIN_TOKEN})
    assert answer.status_code == 400
    assert client.get("/").status_code == 303


def test_signing_out_ends_the_session(client: FlaskClient, signed_in: str) -> None:
    answer = client.post("/signout", data={"csrf": signed_in})
    assert "Signed out." in flashed(client, answer)
    assert client.get("/").status_code == 303
    # The old CSRF token is gone with the session.
    assert (
        client.post("/signout", data={"csrf": signed_in}).headers["Location"].startswith("/signin")
    )


def test_sign_in_redirects_only_to_paths_on_this_site(app: Flask) -> None:
    for target, expected in [("/dead-letters", "/dead-letters"), ("//evil.example/", "/"),
                             ("https://evil.example/", "/"), ("/\\evil.example", "/")]:  # fmt: skip
        client = app.test_client()
        data = {"token": ADMIN_TOKEN, "csrf": csrf_of(client), "next": target}
        assert client.post("/signin", data=data).headers["Location"] == expected


def test_rotating_the_admin_token_ends_existing_sessions(
    app: Flask, client: FlaskClient, signed_in: str
) -> None:
    services_of(app).settings.admin_token = "a-new-admin-token"
    assert client.get("/").status_code == 303


def test_the_session_cookie_is_http_only_lax_and_secure_behind_https(
    tmp_path: Path, loke: FakeLoke, client: FlaskClient, app: Flask
) -> None:
    sign_in(client)
    cookie = client.get_cookie("session")
    assert cookie is not None
    assert cookie.http_only
    assert cookie.same_site == "Lax"
    assert not cookie.secure  # PUBLIC_URL is http://localhost here
    assert app.secret_key not in (SECRET_KEY, SECRET_KEY.encode())
    settings = make_settings(tmp_path / "https", loke, public_url="https://sync.example")
    upgrade(settings.sqlalchemy_url)
    secure_app = create_app(settings, RecordingDispatcher())
    assert secure_app.config["SESSION_COOKIE_SECURE"] is True
    services_of(secure_app).db.dispose()


# -- every route is behind the session (or the bearer token) ---------------------------------
def routes(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) of every rule, placeholders filled in, except the public ones."""
    adapter = app.url_map.bind("localhost")
    found = []
    for rule in app.url_map.iter_rules():
        blueprint = rule.endpoint.rpartition(".")[0]
        if rule.endpoint in PUBLIC_ENDPOINTS or blueprint in PUBLIC_BLUEPRINTS:
            continue
        values = {
            name: 1 if isinstance(converter, IntegerConverter) else ORG
            for name, converter in rule._converters.items()
        }
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append(
                (rule.endpoint, method, adapter.build(rule.endpoint, values, method=method))
            )
    return found


def test_every_route_but_sign_in_static_health_and_webhooks_refuses_without_credentials(
    app: Flask, client: FlaskClient, connected: str, loke: FakeLoke, dispatcher: RecordingDispatcher
) -> None:
    found = routes(app)
    endpoints = {endpoint for endpoint, _, _ in found}
    assert {"dashboard.home", "dashboard.replay", "admin.list_orgs"} <= endpoints
    subscribed, sent = len(loke.requests), len(dispatcher.sent)
    for endpoint, method, url in found:
        answer = client.open(url, method=method, data={})
        if endpoint.startswith("admin."):
            assert answer.status_code == 401, (method, url)
        else:
            # A new blueprint must be added here or to the public sets above, on purpose.
            assert endpoint.startswith("dashboard."), f"unclassified route {endpoint}"
            assert answer.status_code == 303, (method, url)
            assert answer.headers["Location"].startswith("/signin"), (method, url)
    assert (len(loke.requests), len(dispatcher.sent)) == (subscribed, sent)  # nothing was done


@pytest.mark.parametrize("csrf", [None, "", "forged"], ids=["missing", "empty", "forged"])
def test_every_dashboard_post_refuses_without_the_session_csrf_token(
    app: Flask,
    client: FlaskClient,
    connected: str,
    signed_in: str,
    loke: FakeLoke,
    dispatcher: RecordingDispatcher,
    csrf: str | None,
) -> None:
    posts = [(m, url) for e, m, url in routes(app) if e.startswith("dashboard.") and m == "POST"]
    assert len(posts) >= 6
    subscribed, sent = len(loke.requests), len(dispatcher.sent)
    for method, url in posts:
        answer = client.open(url, method=method, data={} if csrf is None else {"csrf": csrf})
        assert answer.status_code == 400, (method, url)
        assert "expired" in answer.get_data(as_text=True)
    assert (len(loke.requests), len(dispatcher.sent)) == (subscribed, sent)
    assert client.get("/").status_code == 200  # still signed in


# -- pages ------------------------------------------------------------------------------------
def test_the_home_page_shows_each_organization_and_refreshes_while_a_backfill_runs(
    client: FlaskClient, services: Services, connected: str, signed_in: str
) -> None:
    shown = page(client, "/")
    assert "Cafe Dash" not in shown or ORG in shown
    assert f'href="/orgs/{ORG}"' in shown
    assert "running" in shown
    assert 'http-equiv="refresh"' in shown
    finish_backfill(services)
    shown = page(client, "/")
    assert "finished" in shown
    assert 'http-equiv="refresh"' not in shown


def test_the_org_page_shows_lists_and_never_a_secret(
    client: FlaskClient, services: Services, loke: FakeLoke, connected: str, signed_in: str
) -> None:
    loke.set_list(ORG, "L1", "VIP <guests>", ["C1", "C2"])
    shown = page(client, f"/orgs/{ORG}")
    assert "VIP &lt;guests&gt;" in shown  # escaped
    assert "Sync this list" in shown
    with services.db.engine.connect() as connection:
        stored = connection.execute(
            text("SELECT webhook_secret_enc, destination_secret_enc FROM organizations")
        ).one()
    for secret in (CRM_SECRET, connected, ADMIN_TOKEN, SECRET_KEY, *stored):
        assert secret not in shown


def test_the_org_page_shows_an_error_box_when_loke_fails(
    client: FlaskClient, loke: FakeLoke, connected: str, signed_in: str
) -> None:
    loke.fail_next(1, status=403)
    shown = page(client, f"/orgs/{ORG}")
    assert "Could not read the lists from LOKE" in shown
    assert "Reset subscription" in shown


def test_an_unknown_org_is_not_found(client: FlaskClient, signed_in: str) -> None:
    assert client.get("/orgs/nobody").status_code == 404


# -- actions ----------------------------------------------------------------------------------
def test_reset_subscription_puts_it_at_loke_again(
    client: FlaskClient, loke: FakeLoke, connected: str, signed_in: str
) -> None:
    answer = client.post(f"/orgs/{ORG}/subscription", data={"csrf": signed_in})
    assert "Subscription sent to LOKE again" in flashed(client, answer)
    assert [m for m, p in loke.requests if "/webhooks/" in p] == ["PUT", "PUT"]


def test_backfill_starts_one_run_at_a_time(
    client: FlaskClient,
    services: Services,
    dispatcher: RecordingDispatcher,
    connected: str,
    signed_in: str,
) -> None:
    answer = client.post(f"/orgs/{ORG}/backfill", data={"csrf": signed_in})
    assert "already running" in flashed(client, answer)
    assert dispatcher.names().count(BACKFILL_PAGE) == 1
    finish_backfill(services)
    answer = client.post(f"/orgs/{ORG}/backfill", data={"csrf": signed_in})
    assert "started" in flashed(client, answer)
    assert dispatcher.names().count(BACKFILL_PAGE) == 2


def test_list_toggles_choose_lists_and_sync_now_starts_them(
    client: FlaskClient,
    loke: FakeLoke,
    dispatcher: RecordingDispatcher,
    connected: str,
    signed_in: str,
) -> None:
    loke.set_list(ORG, "L1", "VIP", ["C1"])
    answer = client.post(f"/orgs/{ORG}/lists/sync", data={"csrf": signed_in})
    assert "No lists are chosen" in flashed(client, answer)
    answer = client.post(f"/orgs/{ORG}/lists/L1/choice", data={"csrf": signed_in, "synced": "on"})
    assert "List L1 is now synced" in flashed(client, answer)
    assert client.get(f"/api/orgs/{ORG}", headers=AUTH).json["lists"] == ["L1"]  # type: ignore[index]
    answer = client.post(f"/orgs/{ORG}/lists/sync", data={"csrf": signed_in})
    assert "1 started" in flashed(client, answer)
    assert LISTS_READ in dispatcher.names()
    answer = client.post(f"/orgs/{ORG}/lists/L1/choice", data={"csrf": signed_in, "synced": "off"})
    assert "no longer synced" in flashed(client, answer)
    assert client.get(f"/api/orgs/{ORG}", headers=AUTH).json["lists"] == []  # type: ignore[index]


def test_a_list_toggle_never_reconnects_a_disconnected_org(
    client: FlaskClient, loke: FakeLoke, connected: str, signed_in: str
) -> None:
    assert client.delete(f"/api/orgs/{ORG}", headers=AUTH).status_code == 200
    answer = client.post(f"/orgs/{ORG}/lists/L1/choice", data={"csrf": signed_in, "synced": "on"})
    assert "not connected" in flashed(client, answer)
    assert loke.subscriptions == {}


def test_a_dead_letter_is_shown_with_its_reason_and_replayed_to_the_crm(
    client: FlaskClient, services: Services, crm: FakeCrm, connected: str, signed_in: str
) -> None:
    crm.reject_customer("C1")
    raw = json.dumps(customer_event("customer.created", ORG, make_customer("C1", NOW))).encode()
    headers = {"Content-Type": "application/json", "X-Event-Signature": sign(raw, connected)}
    assert client.post(f"/webhooks/loke/{ORG}", data=raw, headers=headers).status_code == 202
    drain_inbox(services)
    flush_org(services, ORG)
    letters = client.get("/api/dead-letters", headers=AUTH).json["deadLetters"]  # type: ignore[index]
    assert len(letters) == 1
    letter = letters[0]["id"]
    for url in (f"/orgs/{ORG}", "/dead-letters", f"/dead-letters?org={ORG}"):
        shown = page(client, url)
        assert f'id="dead-letter-{letter}"' in shown
        assert "refused" in shown
    crm.reset()
    data = {"csrf": signed_in, "next": f"/orgs/{ORG}"}
    answer = client.post(f"/dead-letters/{letter}/replay", data=data)
    assert answer.headers["Location"] == f"/orgs/{ORG}"
    assert f"Dead letter {letter} is being replayed" in flashed(client, answer)
    flush_org(services, ORG)
    assert (ORG, "C1") in crm.contacts
    assert "Replay again" in page(client, f"/orgs/{ORG}")
    missing = client.post("/dead-letters/999/replay", data={"csrf": signed_in, "next": "//x"})
    assert missing.headers["Location"] == "/dead-letters"
    assert "does not exist" in flashed(client, missing)


def test_a_crm_that_is_down_shows_since_when_and_the_next_try(
    client: FlaskClient, services: Services, crm: FakeCrm, connected: str, signed_in: str
) -> None:
    crm.fail_for(60, status=503)
    raw = json.dumps(customer_event("customer.created", ORG, make_customer("C1", NOW))).encode()
    headers = {"Content-Type": "application/json", "X-Event-Signature": sign(raw, connected)}
    assert client.post(f"/webhooks/loke/{ORG}", data=raw, headers=headers).status_code == 202
    drain_inbox(services)
    flush_org(services, ORG)
    shown = page(client, f"/orgs/{ORG}")
    assert re.search(r"unreachable since .+; next try ", shown), shown
    assert "HTTP 503" in shown


def test_every_waiting_dead_letter_matching_a_reason_is_replayed_from_one_form(
    client: FlaskClient, services: Services, crm: FakeCrm, connected: str, signed_in: str
) -> None:
    crm.refuse_records({"C1", "C2"}, reason="invalid email")
    crm.refuse_records({"C3"}, reason="name too long")
    for customer in ("C1", "C2", "C3"):
        raw = json.dumps(customer_event("customer.created", ORG, make_customer(customer, NOW)))
        headers = {"Content-Type": "application/json",
                   "X-Event-Signature": sign(raw.encode(), connected)}  # fmt: skip
        assert client.post(f"/webhooks/loke/{ORG}", data=raw, headers=headers).status_code == 202
    drain_inbox(services)
    flush_org(services, ORG)
    assert 'id="replay-all"' in page(client, f"/dead-letters?org={ORG}")
    crm.reset()
    form = {"csrf": signed_in, "org": ORG, "reason": "EMAIL"}
    answer = client.post("/dead-letters/replay", data=form)
    assert answer.headers["Location"] == f"/dead-letters?org={ORG}"
    assert "2 dead letters are being replayed" in flashed(client, answer)
    flush_org(services, ORG)
    assert {customer for org, customer in crm.contacts if org == ORG} == {"C1", "C2"}
    refused = client.post("/dead-letters/replay", data={**form, "reason": "a\x00b"})
    assert "Nothing replayed: reason: must not contain the NUL character" in flashed(
        client, refused
    )


# -- presentation helpers -----------------------------------------------------------------------
def test_durations_and_urls_read_plainly() -> None:
    shown = [duration(s) for s in (None, 0, 45, 60, 65, 3600, 3660, 90000)]
    assert shown == ["—", "0 s", "45 s", "1 min", "1 min 5 s", "1 h", "1 h 1 min", "1 d 1 h"]
    assert safe_url("https://user:pw@crm.example:8443/in?token=x") == "https://crm.example:8443/in"
