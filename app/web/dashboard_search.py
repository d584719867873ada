"""The dashboard's customer search (by LOKE id or email, across organizations or within one) and
a customer's page: its stored state (the admin API's customer view), its pending changes, and
what is known of its deliveries (delivered changes, the CRM's record id, dead letters)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from app.core.services import current_services
from app.deadletters.listing import as_json
from app.deadletters.naming import naming_customer
from app.mirror import search
from app.mirror import view as customer_view
from app.store.models import Organization

SHOWN_PER_TABLE = 50  # payments, pending changes, delivered changes on a customer's page


def register(blueprint: Blueprint) -> None:
    """Add the search routes to the dashboard's blueprint (its sign-in guard and headers; the
    endpoints are `dashboard.customer_search` and `dashboard.customer_page`)."""
    blueprint.add_url_rule("/search", view_func=customer_search, methods=["GET"])
    blueprint.add_url_rule(
        "/orgs/<id:org_id>/customers/<id:customer_id>", view_func=customer_page, methods=["GET"]
    )


def customer_search() -> Response | str:
    """`?q=` a LOKE customer id or an email (any case; `?prefix=1`: an email's beginning), of
    every organization or `?org=`. One match opens the customer's page."""
    query = request.args.get("q", "").strip()
    org_id = request.args.get("org") or None
    prefix = request.args.get("prefix") == "1"
    with current_services().db.transaction() as session:
        known = select(Organization.id, Organization.name).order_by(Organization.id)
        orgs = list(session.execute(known))
        found = search.find(session, query, org_id, prefix) if query else []
    if len(found) == 1:
        only = found[0]
        target = url_for(
            "dashboard.customer_page", org_id=only.org_id, customer_id=only.customer_id
        )
        return redirect(target, 303)
    return render_template(
        "customer_search.html",
        query=query,
        org_id=org_id,
        prefix=prefix,
        orgs=orgs,
        found=found,
        capped=len(found) >= search.MAX_RESULTS,
        min_prefix=search.MIN_PREFIX_CHARS,
    )


def customer_page(org_id: str, customer_id: str) -> str | tuple[str, int]:
    """One stored customer: profile, statistics, lists, payments; its pending changes; its
    delivered changes, the CRM's record id and the dead letters that name it."""
    with current_services().db.transaction() as session:
        customer = customer_view.view(session, org_id, customer_id)
        if customer is None:
            message = f"Customer {customer_id} of {org_id} is not stored here."
            return render_template("problem.html", title="Not found", message=message), 404
        org = session.get(Organization, org_id)
        letters = [as_json(letter) for letter in naming_customer(session, org_id, customer_id)]
    pending, settled = _split(customer["delivery"])
    return render_template(
        "customer.html",
        customer=customer,
        org_name=org.name if org is not None else None,
        pending=pending[:SHOWN_PER_TABLE],
        pending_count=len(pending),
        settled=settled[:SHOWN_PER_TABLE],
        settled_count=len(settled),
        payments=customer["payments"][:SHOWN_PER_TABLE],
        dead_letters=letters,
    )


def _split(entries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Outbox entries still to deliver, and those settled (delivered, or refused: lastError)."""
    return [e for e in entries if e["pending"]], [e for e in entries if not e["pending"]]
