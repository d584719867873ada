"""The demo CRM's one page: does the CRM match LOKE, and what has just arrived."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

REFRESH_SECONDS = 2
_env = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=select_autoescape(default=True),
)
_env.filters["number"] = lambda n: f"{n:,}"
_env.filters["clock"] = lambda t: dt.datetime.fromtimestamp(t).strftime("%H:%M:%S")


def render(report: dict[str, Any], recent: list[dict[str, Any]], context: dict[str, Any]) -> str:
    """HTML for `/demo/crm`; refreshes itself, so a person can just watch it."""
    return _env.get_template("demo_crm.html").render(
        report=report, recent=recent, refresh=REFRESH_SECONDS, **context
    )
