"""Aligned text tables for people at a terminal (scripts take `--json`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

GAP = "  "

# (heading, right-aligned): numbers line up on their last digit.
ORG_COLUMNS = (
    ("ID", False), ("NAME", False), ("CONNECTED", False), ("SUBSCRIPTION", False),
    ("BACKFILL", False), ("CUSTOMERS", True), ("DELIVERY", False), ("BACKLOG", True),
    ("LAG", True), ("DEAD LETTERS", True),
)  # fmt: skip


def table(columns: Sequence[tuple[str, bool]], rows: Sequence[Sequence[str]]) -> str:
    """Each column as wide as its widest cell; no trailing spaces."""
    cells = [[heading for heading, _ in columns], *rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = []
    for row in cells:
        padded = [
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, (_, right) in zip(row, widths, columns, strict=True)
        ]
        lines.append(GAP.join(padded).rstrip())
    return "\n".join(lines)


def organizations_table(states: Sequence[dict[str, Any]]) -> str:
    """One row per organization, from its status as GET /api/orgs/<orgId> shows it."""
    rows = []
    for state in states:
        backfill = state["backfill"] or {}
        delivery = state["delivery"]
        rows.append([
            state["id"],
            state["name"] or "-",
            "yes" if state["connected"] else "no",
            state["subscription"]["status"] or "-",
            backfill.get("status", "never"),
            f"{state['customers']:,}",
            delivery["state"],
            f"{delivery['backlog']:,}",
            duration(delivery["lagSeconds"]),
            f"{delivery['deadLetters']:,}",
        ])  # fmt: skip
    return table(ORG_COLUMNS, rows)


def duration(seconds: float) -> str:
    """`42 s`, `5 min`, `3 h 20 min`, `2 d 4 h`: as precise as a glance needs."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, hours = whole // 60, whole // 3600
    if hours == 0:
        return f"{minutes} min"
    if hours < 24:
        return f"{hours} h {minutes % 60} min"
    return f"{hours // 24} d {hours % 24} h"
