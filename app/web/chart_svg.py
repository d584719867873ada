"""Small charts as inline SVG, drawn on the server: the dashboard's pages run no script (see its
Content-Security-Policy), load nothing from elsewhere, and still show the last hour at a glance.

Colours come from the dashboard's stylesheet (classes, not style attributes, which the policy
refuses). Every bar or point carries its minute and value in a <title>: a tooltip on hover.
Markup is built from literal templates whose `format` escapes every value put in.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from itertools import count

from markupsafe import Markup

WIDTH, HEIGHT = 360, 150
LEFT, RIGHT, TOP, BOTTOM = 52, 8, 24, 22
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
_ids = count(1)

Format = Callable[[float], str]

BAR = Markup(
    '<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" '
    'data-value="{value:g}"><title>{label}: {shown}</title></rect>'
)
POINT = Markup(
    '<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="2" data-value="{value:g}">'
    "<title>{label}: {shown}</title></circle>"
)
POLYLINE = Markup('<polyline class="line" points="{points}"/>')
EMPTY = Markup('<text class="empty" x="{x}" y="{y}" text-anchor="middle">no sample yet</text>')
X_LABEL = Markup('<text class="axis x" x="{x}" y="{y}" text-anchor="{anchor}">{text}</text>')
FRAME = Markup(
    '<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
    'role="img" aria-labelledby="{title_id}" xmlns="http://www.w3.org/2000/svg">'
    '<title id="{title_id}">{title}</title>'
    '<text class="chart-title" x="{left}" y="15">{title}</text>'
    '<line class="grid" x1="{left}" y1="{top}" x2="{right}" y2="{top}"/>'
    '<line class="axis-line" x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}"/>'
    '<text class="axis y" x="{y_x}" y="{top_text}" text-anchor="end">{top_label}</text>'
    '<text class="axis y" x="{y_x}" y="{bottom}" text-anchor="end">{zero_label}</text>'
    "{shapes}{x_labels}</svg>"
)


def bars(
    title: str, minutes: Sequence[dt.datetime], values: Sequence[float], fmt: Format = str
) -> Markup:
    """A bar per minute (of every minute, zero included), with axes labelled."""
    top = nice_ceiling(max(values, default=0))
    slot = PLOT_W / max(len(minutes), 1)
    shapes = []
    for index, (minute, value) in enumerate(zip(minutes, values, strict=True)):
        height = value / top * PLOT_H
        shapes.append(
            BAR.format(
                x=LEFT + index * slot + 0.5,
                y=TOP + PLOT_H - height,
                w=max(slot - 1, 0.5),
                h=height,
                value=value,
                label=_label(minute),
                shown=fmt(value),
            )
        )
    return _frame(title, minutes, top, fmt, Markup("").join(shapes))


def line(
    title: str,
    minutes: Sequence[dt.datetime],
    values: Sequence[float | None],
    fmt: Format = str,
) -> Markup:
    """A point per minute that has a value, joined where consecutive; minutes without one (no
    sample taken) are gaps."""
    top = nice_ceiling(max((v for v in values if v is not None), default=0))
    slot = PLOT_W / max(len(minutes), 1)
    points: list[Markup] = []
    segments: list[list[str]] = [[]]
    for index, (minute, value) in enumerate(zip(minutes, values, strict=True)):
        if value is None:
            segments.append([])
            continue
        x, y = LEFT + (index + 0.5) * slot, TOP + PLOT_H - value / top * PLOT_H
        segments[-1].append(f"{x:.1f},{y:.1f}")
        points.append(POINT.format(x=x, y=y, value=value, label=_label(minute), shown=fmt(value)))
    shapes = [POLYLINE.format(points=" ".join(s)) for s in segments if len(s) > 1]
    shapes += points
    if not points:
        shapes.append(EMPTY.format(x=LEFT + PLOT_W / 2, y=TOP + PLOT_H / 2))
    return _frame(title, minutes, top, fmt, Markup("").join(shapes))


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above `value` (1 for nothing)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)


def _frame(
    title: str, minutes: Sequence[dt.datetime], top: float, fmt: Format, shapes: Markup
) -> Markup:
    """The chart's title, axes, the labels of both and the grid, around `shapes`."""
    right, bottom = LEFT + PLOT_W, TOP + PLOT_H
    x_labels = Markup("")
    if minutes:
        x_labels = X_LABEL.format(
            x=LEFT, y=HEIGHT - 6, anchor="start", text=f"{minutes[0]:%H:%M}"
        ) + X_LABEL.format(x=right, y=HEIGHT - 6, anchor="end", text=_label(minutes[-1]))
    return FRAME.format(
        width=WIDTH, height=HEIGHT, title_id=f"chart-title-{next(_ids)}", title=title,
        left=LEFT, right=right, top=TOP, bottom=bottom, y_x=LEFT - 6, top_text=TOP + 4,
        top_label=fmt(top), zero_label=fmt(0), shapes=shapes, x_labels=x_labels,
    )  # fmt: skip


def _label(minute: dt.datetime) -> str:
    return f"{minute:%H:%M} UTC"
