"""Charts as server-rendered SVG: no script, no library, nothing from the internet. Pure functions that return
markup (`markupsafe.Markup`) with every text escaped.

The pages' Content-Security-Policy allows no inline `style`, so colours and fonts are SVG presentation attributes
(`fill=`, `font-size=`); app.css only sizes the drawings and picks which one shows (`/* --- statistics --- */`).

Each chart is drawn twice, for a wide screen (`WIDE`, 720 units) and a phone (`NARROW`, 360 units): an SVG scales
with its viewBox, so one drawing alone would have either tiny numbers on a phone or huge ones on a desktop. Both
show every bar and every tick number; the phone's has fewer x labels. The y axis has round tick values
(`nice_ticks`: 1, 2 or 5 × 10^k), and x labels never overlap (`thin_labels` keeps every n-th, and a label that would
still touch its neighbour or the end label is dropped).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

CHAR_WIDTH = 0.62   # a glyph's width per unit of font size, generous for digits and lower case of a sans-serif
LABEL_GAP = 8       # units between two x labels
INK, MUTED, GRID = "#1b1f24", "#57606a", "#d0d7de"
FONT_FAMILY = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"

# Colours of the series (the UI's own: app.css --ok, --bad, a grey, --accent)
DELIVERED, FAILED, OTHER, SENT = "#1a7f37", "#b3261e", "#8c959f", "#0b5cad"


@dataclass(frozen=True)
class Series:
    """One stacked part of each bar: its legend text, colour, and a value per bar."""

    name: str
    color: str
    values: Sequence[float]


@dataclass(frozen=True)
class Layout:
    """A drawing's size in viewBox units and its font size; `css` is the class that app.css shows or hides."""

    width: int
    height: int
    font: int
    css: str


WIDE = Layout(720, 260, 13, "plot-wide")
NARROW = Layout(360, 250, 13, "plot-narrow")


# --- numbers and labels ---------------------------------------------------------------------------------------

def nice_ticks(maximum: float, most: int = 5, whole: bool = True) -> list[float]:
    """Round tick values from 0 up to the first one at or above `maximum`, at most `most` steps of 1, 2 or 5 × 10^k
    (whole numbers only with `whole`: counts have no half messages). [0, 1] when there is nothing to show."""
    if not math.isfinite(maximum) or maximum <= 0:
        return [0, 1]
    most = max(1, most)
    base = 10.0 ** math.floor(math.log10(maximum / most))
    step = next(m * base for m in (1, 2, 5, 10, 20) if m * base * most >= maximum * (1 - 1e-12))
    if whole:
        step = max(1.0, round(step))
    count = math.ceil(maximum / step - 1e-9)
    return [_round(index * step) for index in range(count + 1)]


def _round(value: float) -> float:
    """`value` without the float noise of a multiplication (0.30000000000000004 is 0.3); whole ones as int."""
    value = round(value, 9)
    return int(value) if value == int(value) else value


def tick_text(value: float) -> str:
    """A tick's number, short: 950, 1500, 25k, 1.5M."""
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if abs(value) >= 10_000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def text_width(text: str, font: float) -> float:
    """The width a text takes at `font` (an estimate on the generous side: the browser measures nothing for us)."""
    return len(text) * font * CHAR_WIDTH


def label_step(slot: float, width: float, steps: Sequence[int] | None = None) -> int:
    """Every how many bars an x label fits, for bars `slot` units apart and labels `width` units wide: the smallest
    of `steps` that leaves room (e.g. hours: every 3 or 6), or the smallest whole number that does."""
    needed = max(1, math.ceil((width + LABEL_GAP) / slot - 1e-9)) if slot > 0 else 1
    return next((step for step in sorted(steps or ()) if step >= needed), needed)


def thin_labels(labels: Sequence[str], slot: float, font: float, keys: Sequence[int] | None = None,
                steps: Sequence[int] | None = None) -> list[str]:
    """`labels` with those that do not fit blanked: one every `label_step` bars, chosen by `keys` (a label shows
    when its key is a multiple of the step: an hour of the day, say), by default counting back from the last bar
    so that the latest period is always labelled."""
    if not labels:
        return []
    step = label_step(slot, max(text_width(label, font) for label in labels), steps)
    keys = keys if keys is not None else [len(labels) - 1 - index for index in range(len(labels))]
    return [label if key % step == 0 else "" for label, key in zip(labels, keys, strict=True)]


def _n(value: float) -> str:
    """A coordinate, short."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _place(text: str, center: float, font: float, low: float, high: float) -> tuple[float, float, str, float]:
    """(left, right, anchor, x) of a label centred at `center`, kept inside [low, high]."""
    width = text_width(text, font)
    if center - width / 2 < low:
        return low, low + width, "start", low
    if center + width / 2 > high:
        return high - width, high, "end", high
    return center - width / 2, center + width / 2, "middle", center


def _svg_open(layout: Layout, title: str) -> list[str]:
    return [f'<svg class="plot {layout.css}" viewBox="0 0 {layout.width} {layout.height}" role="img" '
            f'aria-label="{escape(title)}" font-size="{layout.font}" font-family="{FONT_FAMILY}">',
            f"<title>{escape(title)}</title>"]


def legend(series: Sequence[Series]) -> Markup:
    """The series' names with their colours, as an HTML list under a chart (it wraps on a phone)."""
    items = "".join(f'<li><svg class="swatch" width="12" height="12" viewBox="0 0 12 12" aria-hidden="true">'
                    f'<rect width="12" height="12" rx="2" fill="{s.color}"/></svg>{escape(s.name)}</li>'
                    for s in series)
    return Markup(f'<ul class="plot-legend">{items}</ul>')


# --- column chart (bars over time) -----------------------------------------------------------------------------

def _columns(layout: Layout, title: str, labels: Sequence[str], series: Sequence[Series], details: Sequence[str],
             keys: Sequence[int] | None, steps: Sequence[int] | None, end_label: str | None) -> str:
    count, font = len(labels), layout.font
    totals = [sum(s.values[index] for s in series) for index in range(count)]
    ticks = nice_ticks(max(totals, default=0), most=5)
    texts = [tick_text(tick) for tick in ticks]
    left = max(text_width(text, font) for text in texts) + 10
    x0, x1, y0, y1 = left, layout.width - 4, font * 0.7, layout.height - font - 12
    top, slot = ticks[-1], (x1 - x0) / max(count, 1)
    bar = max(1.0, slot * 0.72)
    out = _svg_open(layout, title)
    for tick, text in zip(ticks, texts, strict=True):
        y = y1 - tick / top * (y1 - y0)
        out.append(f'<line x1="{_n(x0)}" x2="{_n(x1)}" y1="{_n(y)}" y2="{_n(y)}" stroke="{GRID}"/>'
                   f'<text class="tick" x="{_n(x0 - 6)}" y="{_n(y)}" dy="0.35em" text-anchor="end" '
                   f'fill="{MUTED}">{escape(text)}</text>')
    for index in range(count):
        base, x = float(y1), x0 + index * slot + (slot - bar) / 2
        rects = []
        for s in series:
            value = s.values[index]
            if value > 0:
                height = value / top * (y1 - y0)
                base -= height
                rects.append(f'<rect x="{_n(x)}" y="{_n(base)}" width="{_n(bar)}" height="{_n(height)}" '
                             f'fill="{s.color}"/>')
        # the whole column answers a hover (its numbers), the empty ones too
        out.append(f'<g class="bar"><title>{escape(details[index])}</title><rect x="{_n(x0 + index * slot)}" '
                   f'y="{_n(y0)}" width="{_n(slot)}" height="{_n(y1 - y0)}" fill="transparent"/>{"".join(rects)}</g>')
    out.append(f'<line x1="{_n(x0)}" x2="{_n(x1)}" y1="{_n(y1)}" y2="{_n(y1)}" stroke="{MUTED}"/>')
    baseline = layout.height - 4
    taken: list[tuple[float, float]] = []
    if end_label:
        width = text_width(end_label, font)
        taken.append((x1 - width, x1))
        out.append(f'<text class="xlabel end" x="{_n(x1)}" y="{_n(baseline)}" text-anchor="end" '
                   f'fill="{INK}">{escape(end_label)}</text>')
    for index, text in enumerate(thin_labels(labels, slot, font, keys, steps)):
        if not text:
            continue
        low, high, anchor, x = _place(text, x0 + (index + 0.5) * slot, font, 0, layout.width)
        if any(low < right + LABEL_GAP / 2 and high + LABEL_GAP / 2 > other for other, right in taken):
            continue  # it would touch a label already placed
        taken.append((low, high))
        out.append(f'<text class="xlabel" x="{_n(x)}" y="{_n(baseline)}" text-anchor="{anchor}" '
                   f'fill="{MUTED}">{escape(text)}</text>')
    out.append("</svg>")
    return "".join(out)


def column_chart(title: str, labels: Sequence[str], series: Sequence[Series], *, details: Sequence[str] = (),
                 keys: Sequence[int] | None = None, steps: Sequence[int] | None = None,
                 end_label: str | None = None, show_legend: bool = True) -> Markup:
    """Bars over time, each stacking `series` (bottom first), with a y axis of round tick numbers, x `labels`
    thinned to fit (see `thin_labels` for `keys` and `steps`), an optional `end_label` at the right end ("now"),
    a hover text per bar (`details`, by default its label and numbers) and a legend. Two drawings (wide and
    phone) in a <figure>."""
    if details:
        if len(details) != len(labels):
            raise ValueError("one detail per bar")
    else:
        details = [f"{label}: " + ", ".join(f"{tick_text(s.values[index])} {s.name.lower()}" for s in series)
                   for index, label in enumerate(labels)]
    if any(len(s.values) != len(labels) for s in series):
        raise ValueError("every series needs one value per bar")
    drawings = "".join(_columns(layout, title, labels, series, details, keys, steps, end_label)
                       for layout in (WIDE, NARROW))
    return Markup(f'<figure class="plot">{drawings}{legend(series) if show_legend else ""}</figure>')


# --- bar chart (one row per thing, e.g. per SIM) ---------------------------------------------------------------

def _shorten(text: str, width: float, font: float) -> str:
    """`text` cut with "…" to fit `width`."""
    fits = max(1, int(width / (font * CHAR_WIDTH) + 1e-6))
    return text if len(text) <= fits else text[:max(1, fits - 1)] + "…"


def _rows(layout: Layout, title: str, labels: Sequence[str], series: Sequence[Series], details: Sequence[str]
          ) -> str:
    font, row = layout.font, layout.font * 2.2
    totals = [sum(s.values[index] for s in series) for index in range(len(labels))]
    label_width = min(max((text_width(label, font) for label in labels), default=0), layout.width * 0.34)
    value_width = max(text_width(tick_text(total), font) for total in [*totals, 0]) + 6
    x0, x1 = label_width + 8, layout.width - value_width - 2
    ticks = nice_ticks(max(totals, default=0), most=5 if layout is WIDE else 3)
    tick_room = max(text_width(tick_text(tick), font) for tick in ticks) + LABEL_GAP
    while len(ticks) > 2 and (x1 - x0) / (len(ticks) - 1) < tick_room:  # fewer, wider steps until they fit
        ticks = nice_ticks(max(totals, default=0), most=len(ticks) - 2)
    top, y0 = ticks[-1], 4.0
    y1 = y0 + row * max(len(labels), 1)
    height = y1 + font + 12
    out = _svg_open(Layout(layout.width, math.ceil(height), font, layout.css), title)
    for tick in ticks:
        x = x0 + tick / top * (x1 - x0)
        anchor = "end" if tick == ticks[-1] and x + text_width(tick_text(tick), font) / 2 > layout.width else "middle"
        out.append(f'<line x1="{_n(x)}" x2="{_n(x)}" y1="{_n(y0)}" y2="{_n(y1)}" stroke="{GRID}"/>'
                   f'<text class="tick" x="{_n(x)}" y="{_n(height - 4)}" text-anchor="{anchor}" '
                   f'fill="{MUTED}">{escape(tick_text(tick))}</text>')
    for index, label in enumerate(labels):
        top_y = y0 + index * row
        middle, bar = top_y + row / 2, row * 0.62
        rects, x = [], x0
        for s in series:
            value = s.values[index]
            if value > 0:
                width = value / top * (x1 - x0)
                rects.append(f'<rect x="{_n(x)}" y="{_n(middle - bar / 2)}" width="{_n(width)}" height="{_n(bar)}" '
                             f'fill="{s.color}"/>')
                x += width
        out.append(f'<g class="bar"><title>{escape(details[index])}</title>'
                   f'<text x="{_n(x0 - 8)}" y="{_n(middle)}" dy="0.35em" text-anchor="end" fill="{INK}">'
                   f'{escape(_shorten(label, label_width, font))}</text>{"".join(rects)}'
                   f'<text class="value" x="{_n(x + 4)}" y="{_n(middle)}" dy="0.35em" fill="{INK}">'
                   f'{escape(tick_text(totals[index]))}</text></g>')
    out.append(f'<line x1="{_n(x0)}" x2="{_n(x0)}" y1="{_n(y0)}" y2="{_n(y1)}" stroke="{MUTED}"/></svg>')
    return "".join(out)


def bar_chart(title: str, labels: Sequence[str], series: Sequence[Series], *, details: Sequence[str] = ()
              ) -> Markup:
    """One horizontal bar per label (a SIM), stacking `series`, with its total at its end, an x axis of round
    tick numbers and a legend; long labels are cut with "…" (the hover text has them whole). Two drawings (wide
    and phone) in a <figure>."""
    if any(len(s.values) != len(labels) for s in series):
        raise ValueError("every series needs one value per bar")
    details = details or [f"{label}: " + ", ".join(f"{tick_text(s.values[index])} {s.name.lower()}" for s in series)
                          for index, label in enumerate(labels)]
    drawings = "".join(_rows(layout, title, labels, series, details) for layout in (WIDE, NARROW))
    return Markup(f'<figure class="plot">{drawings}{legend(series)}</figure>')
