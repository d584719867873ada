"""The demo CRM's one page: does the CRM match LOKE, and what has just arrived.

Both demo CRMs (the `http` one and the fake HubSpot) serve it at the same paths, each with its
own template, so a person and the tests find it in the same place whichever runs. The records
that do not match are listed in full, a page at a time (`?page=N`, on the page and its JSON
alike): a view that counts 7 and shows 5 leaves a person guessing about the other two.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from devtools.httpserver import Request, Response, json_response

BASE = "/demo/crm"
REFRESH_SECONDS = 2
PER_PAGE = 50
STYLESHEET = files("app") / "static" / "dashboard.css"  # the dashboard's look
_env = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=select_autoescape(default=True),
)
_env.filters["number"] = lambda n: f"{n:,}"
_env.filters["clock"] = lambda t: dt.datetime.fromtimestamp(t).strftime("%H:%M:%S")


def render(
    report: dict[str, Any],
    recent: list[dict[str, Any]],
    context: dict[str, Any],
    template: str = "demo_crm.html",
) -> str:
    """HTML for `/demo/crm`; refreshes itself, so a person can just watch it."""
    return _env.get_template(template).render(
        report=report, recent=recent, refresh=REFRESH_SECONDS, **context
    )


def paged(items: list[dict[str, Any]], requested: str | None) -> dict[str, Any]:
    """Page `requested` (1 when absent or not a number; the last when past it) of `items`."""
    pages = max(1, -(-len(items) // PER_PAGE))
    try:
        number = min(max(int(requested or 1), 1), pages)
    except ValueError:  # a link typed by hand: the first page rather than an error
        number = 1
    start = (number - 1) * PER_PAGE
    return {"total": len(items), "page": number, "pages": pages, "perPage": PER_PAGE,
            "first": start + 1, "items": items[start : start + PER_PAGE]}  # fmt: skip


def answer(
    request: Request,
    report: Callable[[], dict[str, Any]],
    recent: Callable[[], list[dict[str, Any]]],
    context: Callable[[], dict[str, Any]],
    template: str = "demo_crm.html",
) -> Response | None:
    """The page, its JSON (the report with the sandbox's counters) and its stylesheet; None
    for any other request, which is the CRM's own."""
    match request.method, request.path:
        case "GET", "/" | "/demo" | "/demo/crm/":
            return Response(302, headers={"Location": BASE})
        case "GET", "/demo/crm":
            html = render(_one_page(report(), request), recent(), context(), template)
            return Response(200, html.encode(), {"Content-Type": "text/html; charset=utf-8"})
        case "GET", "/demo/crm/fidelity.json":
            facts = context()
            sandbox = {k: facts[k] for k in ("webhooks", "events") if k in facts}
            return json_response(200, {**_one_page(report(), request), "sandbox": sandbox})
        case "GET", "/demo/crm/dashboard.css":
            return Response(200, STYLESHEET.read_bytes(), {"Content-Type": "text/css"})
    return None


def _one_page(report: dict[str, Any], request: Request) -> dict[str, Any]:
    return {**report, "differences": paged(report["differences"], request.param("page"))}
