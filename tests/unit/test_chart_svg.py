"""The dashboard's inline SVG charts: a title, labelled axes, a bar or point per minute, gaps
where no sample was taken, and every text escaped."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

from app.web import chart_svg

SVG = "{http://www.w3.org/2000/svg}"
START = dt.datetime(2026, 12, 8, 10, 0, tzinfo=dt.UTC)
MINUTES = [START + dt.timedelta(minutes=m) for m in range(60)]


def parsed(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))  # noqa: S314 (our own markup; parsing checks it is well formed)


def texts(svg: ET.Element, css_class: str) -> list[str]:
    return [t.text or "" for t in svg.iter(f"{SVG}text") if css_class in t.get("class", "")]


def test_a_bar_chart_has_a_title_axis_labels_and_one_bar_per_minute() -> None:
    values = [0] * 59 + [37]
    svg = parsed(chart_svg.bars("Webhooks in per minute", MINUTES, values, str))
    assert svg.findtext(f"{SVG}title") == "Webhooks in per minute"
    assert texts(svg, "chart-title") == ["Webhooks in per minute"]
    assert texts(svg, "axis x") == ["10:00", "10:59 UTC"]
    assert texts(svg, "axis y") == ["50.0", "0"]  # a round top above the highest bar
    bars = list(svg.iter(f"{SVG}rect"))
    assert len(bars) == 60
    assert [b.get("data-value") for b in bars[-2:]] == ["0", "37"]
    assert bars[-1].findtext(f"{SVG}title") == "10:59 UTC: 37"
    assert float(bars[-1].get("height", "0")) > float(bars[0].get("height", "1")) == 0


def test_a_line_chart_has_a_point_per_sampled_minute_and_gaps_where_none_was_taken() -> None:
    values: list[float | None] = [None] * 60
    values[10:13] = [1.0, 2.0, 3.0]
    values[20] = 8.0
    svg = parsed(chart_svg.line("Lag", MINUTES, values, lambda v: f"{v:g} s"))
    assert [p.get("data-value") for p in svg.iter(f"{SVG}circle")] == ["1", "2", "3", "8"]
    [joined] = svg.iter(f"{SVG}polyline")  # 10-12 joined; 20 alone; nothing across the gap
    assert len(joined.get("points", "").split()) == 3
    assert texts(svg, "axis y") == ["10 s", "0 s"]


def test_a_chart_without_samples_says_so_and_text_is_escaped() -> None:
    markup = chart_svg.line("<b>Backlog</b> & co", MINUTES, [None] * 60)
    svg = parsed(markup)
    assert "<b>" not in str(markup)
    assert svg.findtext(f"{SVG}title") == "<b>Backlog</b> & co"
    assert texts(svg, "empty") == ["no sample yet"]


def test_round_tops() -> None:
    assert [chart_svg.nice_ceiling(v) for v in (0, 0.3, 1, 3, 7, 10, 11, 4100)] == [
        1.0, 0.5, 1.0, 5.0, 10.0, 10.0, 20.0, 5000.0,
    ]  # fmt: skip
