"""The digest's chart: accelerator utilization and p95 latency over the window, one line per deployment.

matplotlib is imported inside the function (it takes ~0.5 s to import; `infer-bot --help` must not
pay for it) and used through its object API with the Agg canvas: no pyplot global state, so
charts can be drawn from several threads at once.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ops.metrics import Point

MAX_LINES = 10  # more lines than this are unreadable; the rest are named in the legend note


@dataclass(frozen=True)
class Line:
    label: str
    util: Sequence[Point]  # percent
    latency: Sequence[Point]  # seconds


def render_png(lines: Sequence[Line], *, title: str, util_target: float = 70.0, dpi: int = 100) -> bytes:
    """A PNG of two stacked panels (utilization %, p95 latency s); the first MAX_LINES lines are drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import DateFormatter
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 6.5), dpi=dpi)
    FigureCanvasAgg(fig)
    util_ax, lat_ax = fig.subplots(2, 1, sharex=True)
    shown = list(lines)[:MAX_LINES]
    for index, line in enumerate(shown):
        color = f"C{index % 10}"  # the same colour in both panels, even when one series is empty
        util_ax.plot([_dt(t) for t, _ in line.util], [v for _, v in line.util], label=line.label, color=color,
                     linewidth=1.4)
        if line.latency:
            lat_ax.plot([_dt(t) for t, _ in line.latency], [v for _, v in line.latency], color=color, linewidth=1.4)
    util_ax.axhline(util_target, color="grey", linestyle="--", linewidth=1)
    util_ax.set_ylim(0, 100)
    util_ax.set_ylabel("accelerator util %")
    lat_ax.set_ylabel("e2e latency p95 (s)")
    lat_ax.set_ylim(bottom=0)
    lat_ax.xaxis.set_major_formatter(DateFormatter("%H:%M", tz=UTC))
    lat_ax.set_xlabel("UTC")
    for ax in (util_ax, lat_ax):
        ax.grid(True, alpha=0.3)
    if shown:
        util_ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    hidden = len(lines) - len(shown)
    fig.suptitle(title + (f"  (top {len(shown)}; {hidden} more in the table)" if hidden > 0 else ""), fontsize=11)
    fig.subplots_adjust(right=0.78, hspace=0.12)
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)
