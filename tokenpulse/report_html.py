"""``tokenpulse replay … --report report.html``: one self-contained HTML page of a replay, for
the analyst who tunes thresholds and would rather look than read.

What it holds, top to bottom: the history's span, the event counts and the policy's detector
settings; one chart per series that alerted or has labelled incidents (and the org), drawn
with matplotlib — observed spend per window, expected, the alert bound, alert spans shaded
from firing to resolve, labelled incidents shaded in their own colours, and zoomed panels of
the alerts and incidents at full resolution; then the score table (with ``--labels``), every
alert with its explanation, and the budget notifications.

Self-contained means no request leaves the page: no script, no CDN, the charts embedded as
PNG data URIs, and a Content-Security-Policy that allows nothing else. Every text value is
HTML-escaped, since team, user and model names come from usage events and labels files.

Use :class:`WindowTrace` to collect what the charts need during a replay (only when a report
is asked for: it keeps every window of every series), then :func:`write_report`.
"""

from __future__ import annotations

import base64
import html
import io
import math
import time
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["WindowTrace", "SeriesTrace", "Span", "alert_spans", "build_report", "write_report", "downsample",
           "MAX_CHARTS"]

MAX_CHARTS = 60
"""Charts drawn at most (series beyond it are named, not drawn: a report stays quick to make and
to open)."""

MAX_ZOOMS = 4
"""Zoomed panels per chart: the alerts and incidents at full resolution."""

RAW_POINTS = 2880
"""A series of at most this many windows (two days of minutes) is drawn window by window;
a longer one is downsampled to buckets (mean and max), keeping its alert and incident windows."""


# ------------------------------------------------------------------ collecting ------
class SeriesTrace:
    """Every judged window of one series: start (epoch s), observed, expected and the alert
    bound in USD per window, and the decision. Compact columns (``array``), appended in order."""

    __slots__ = ("labels", "w", "observed", "expected", "upper", "anomaly")

    def __init__(self, labels: Mapping[str, str] | None = None) -> None:
        self.labels = dict(labels or {})
        self.w = array("d")
        self.observed = array("d")
        self.expected = array("d")
        self.upper = array("d")
        self.anomaly = array("b")

    def __len__(self) -> int:
        return len(self.w)

    def extend(self, later: SeriesTrace) -> None:
        self.w += later.w
        self.observed += later.observed
        self.expected += later.expected
        self.upper += later.upper
        self.anomaly += later.anomaly
        if not self.labels:
            self.labels = later.labels

    def __getstate__(self) -> tuple[Any, ...]:  # __slots__: pickled across the replay's fork
        return (self.labels, self.w, self.observed, self.expected, self.upper, self.anomaly)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.labels, self.w, self.observed, self.expected, self.upper, self.anomaly = state


class WindowTrace:
    """The per-window verdicts of every series during a replay, for the report's charts.

    The replay hands it the judge after each step that judged windows (:meth:`collect`); it
    drains the judge's ``recent`` deques (the same records the worker's API serves), so the
    judge keeps nothing for it between steps. A replay that asks for no report passes no trace
    and its judge keeps no ``recent`` at all. Picklable, so that a forked judge can send its
    part back to be :meth:`extend`-ed.
    """

    def __init__(self) -> None:
        self.series: dict[str, SeriesTrace] = {}

    def prepare(self, judge: Any) -> None:
        """Turn on the judge's per-window records, long enough to hold every window that one
        step can judge (a silence fills at most ``max_fill_windows``)."""
        judge.keep_recent = True
        judge.recent_len = int(getattr(judge, "max_fill_windows", 10_080)) + 16

    def collect(self, judge: Any) -> None:
        """Take the windows the judge recorded since the last call."""
        for name, rec in judge.recent.items():
            if not rec:
                continue
            tr = self.series.get(name)
            if tr is None:
                info = judge.series.get(name)
                tr = self.series[name] = SeriesTrace(info.labels if info is not None else None)
            w, obs, exp, up, anom = tr.w, tr.observed, tr.expected, tr.upper, tr.anomaly
            for r in rec:
                w.append(r["window_start"])
                obs.append(r["observed_usd"])
                exp.append(r["expected_usd"])
                up.append(r["upper_usd"])
                anom.append(1 if r["is_anomaly"] else 0)
            rec.clear()

    def after(self) -> WindowTrace:
        """An empty trace that goes on from this one (the forked judge's part)."""
        return WindowTrace()

    def extend(self, later: WindowTrace) -> None:
        for name, tr in later.series.items():
            mine = self.series.get(name)
            if mine is None:
                self.series[name] = tr
            else:
                mine.extend(tr)


# ------------------------------------------------------------------ spans -----------
@dataclass
class Span:
    """A shaded stretch of a chart: an alert from firing to resolve (``kind`` ``alert``), or a
    labelled incident (``should`` / ``should_not``)."""

    start: float
    end: float
    kind: str
    label: str = ""
    severity: str = ""
    open_end: bool = False  # an alert still firing when the history ended


def alert_spans(notifications: Iterable[Mapping[str, Any]], end: float | None) -> dict[str, list[Span]]:
    """Alert spans per series from the replay's spike notifications: from the trigger that
    started a series firing to the notification that resolved it (a group's notifications
    speak for each member series; a span still open at the end closes at ``end``)."""
    open_at: dict[str, tuple[float, str]] = {}
    spans: dict[str, list[Span]] = {}
    for n in notifications:
        if n.get("kind") != "spike":
            continue
        at = float(n["fired_at"])
        own = {"series": n["series"], "status": "resolved" if n.get("action") == "resolve" else "firing",
               "severity": n.get("severity", "")}
        # a group's members include its own series; the org alert's members are the team alerts
        # it inhibited (status "inhibited": not shaded, marked on their own charts)
        members = list(n.get("members") or [])
        if not any(m.get("series") == n["series"] for m in members):
            members.insert(0, own)
        for m in members:
            series = str(m.get("series"))
            status = m.get("status")
            if status == "firing":
                if series not in open_at:
                    open_at[series] = (at, str(m.get("severity", "")))
                else:  # keep the worst severity seen
                    t0, sev = open_at[series]
                    open_at[series] = (t0, _worse(sev, str(m.get("severity", ""))))
            elif status == "resolved" and series in open_at:
                t0, sev = open_at.pop(series)
                spans.setdefault(series, []).append(Span(t0, at, "alert", severity=_worse(sev, str(m.get("severity", "")))))
    for series, (t0, sev) in open_at.items():
        spans.setdefault(series, []).append(Span(t0, max(t0, end or t0), "alert", severity=sev, open_end=True))
    return spans


_SEVERITY = {"": 0, "info": 1, "warning": 2, "critical": 3}


def _worse(a: str, b: str) -> str:
    return a if _SEVERITY.get(a, 0) >= _SEVERITY.get(b, 0) else b


# ------------------------------------------------------------------ downsampling ----
@dataclass
class Plotted:
    """What one chart draws: x (epoch s), observed mean and max, expected, bound (NaN: a gap)."""

    x: np.ndarray
    obs: np.ndarray
    obs_max: np.ndarray
    exp: np.ndarray
    up: np.ndarray
    bucket_s: int  # 0: window by window


_BUCKETS = (300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400)


def downsample(tr: SeriesTrace, window_s: int, keep: Sequence[tuple[float, float]] = (),
               max_points: int = RAW_POINTS) -> Plotted:
    """The series as drawn: window by window when short, else buckets (observed mean and max,
    expected and bound means) of the smallest size that gives at most ``max_points / 4``
    buckets (a pixel or two each on a chart 1,000 pixels wide), with the windows inside ``keep``
    (alert and incident spans) left window by window. Gaps longer than three steps are broken
    (NaN) so that no line bridges them.

    >>> tr = SeriesTrace()
    >>> for i in range(7200):
    ...     for col, v in ((tr.w, i * 60.0), (tr.observed, 1.0 + (i == 5000) * 9), (tr.expected, 1.0), (tr.upper, 2.0)):
    ...         col.append(v)
    >>> p = downsample(tr, 60, keep=[(5000 * 60, 5001 * 60)])
    >>> p.bucket_s, len(p.x) < 800, float(np.nanmax(p.obs_max)), float(np.nanmax(p.obs))
    (600, True, 10.0, 10.0)
    """
    w = np.frombuffer(tr.w, dtype=np.float64) if len(tr) else np.zeros(0)
    obs = np.frombuffer(tr.observed, dtype=np.float64) if len(tr) else np.zeros(0)
    exp = np.frombuffer(tr.expected, dtype=np.float64) if len(tr) else np.zeros(0)
    up = np.frombuffer(tr.upper, dtype=np.float64) if len(tr) else np.zeros(0)
    mid = w + window_s / 2
    n = len(w)
    if n <= max_points:
        return _with_gaps(Plotted(mid.copy(), obs.copy(), obs.copy(), exp.copy(), up.copy(), 0), 3 * window_s)
    span = float(w[-1] - w[0]) + window_s
    bucket = next((b for b in _BUCKETS if span / b <= max_points / 4), _BUCKETS[-1])
    kept = np.zeros(n, dtype=bool)
    for a, b in keep:
        lo, hi = np.searchsorted(w, a - window_s, "left"), np.searchsorted(w, b, "right")
        kept[lo:hi] = True
    rest = ~kept
    parts = [(mid[kept], obs[kept], obs[kept], exp[kept], up[kept])]
    if rest.any():
        wr = w[rest]
        bid = np.floor(wr / bucket).astype(np.int64)
        starts = np.flatnonzero(np.r_[True, bid[1:] != bid[:-1]])
        counts = np.diff(np.r_[starts, len(wr)])

        def mean(a: np.ndarray) -> np.ndarray:
            return np.add.reduceat(a[rest], starts) / counts

        parts.append((bid[starts] * bucket + bucket / 2.0, mean(obs), np.maximum.reduceat(obs[rest], starts),
                      mean(exp), mean(up)))
    cols = [np.concatenate([p[i] for p in parts]) for i in range(5)]
    order = np.argsort(cols[0], kind="stable")
    got = Plotted(*(c[order] for c in cols), bucket_s=bucket)
    return _with_gaps(got, 3 * bucket)


def _with_gaps(p: Plotted, gap: float) -> Plotted:
    if len(p.x) < 2:
        return p
    at = np.flatnonzero(np.diff(p.x) > gap) + 1
    if not len(at):
        return p
    xs = np.insert(p.x, at, (p.x[at - 1] + p.x[at]) / 2)

    def nan(a: np.ndarray) -> np.ndarray:
        return np.insert(a, at, np.nan)

    return Plotted(xs, nan(p.obs), nan(p.obs_max), nan(p.exp), nan(p.up), p.bucket_s)


# ------------------------------------------------------------------ charts ----------
_COLOURS = {
    "observed": "#1f4e99",
    "band": "#8fb0e0",
    "expected": "#2e8b57",
    "bound": "#c0392b",
    "alert": "#e0301e",
    "should": "#f5c400",
    "should_not": "#7f8c8d",
}


def _mpl_text(s: str) -> str:
    # matplotlib reads $…$ as mathematics (a name with two dollars would fail to draw)
    return s.replace("$", r"\$")


def _money(v: float) -> str:
    if not math.isfinite(v):
        return "–"
    a = abs(v)
    if a >= 100:
        return f"${v:,.0f}"
    if a >= 1:
        return f"${v:,.2f}"
    if a >= 0.01:
        return f"${v:.3f}"
    return f"${v:.2g}"


@dataclass
class Chart:
    series: str
    title: str
    png: bytes
    width: int
    height: int
    notes: list[str] = field(default_factory=list)


def _scale(p: Plotted) -> tuple[str, float, float, float | None]:
    """(linear|log, bottom, top, clip): a scale on which observed and expected can be read; the
    bound is clipped at ``clip`` (and its value printed) when it would flatten them."""
    obs_max = p.obs_max[np.isfinite(p.obs_max)]
    exp = p.exp[np.isfinite(p.exp)]
    up = p.up[np.isfinite(p.up)]
    top_data = max(float(obs_max.max()) if len(obs_max) else 0.0, float(exp.max()) if len(exp) else 0.0)
    if top_data <= 0:
        top_data = float(up.max()) if len(up) and up.max() > 0 else 1.0
    pos = np.concatenate([obs_max[obs_max > 0], exp[exp > 0]])
    typical = float(np.median(pos)) if len(pos) else top_data
    # A spike far above the series' usual level flattens the rest on a linear axis: log then.
    if len(pos) and top_data / max(typical, 1e-12) > 40:
        floor = max(float(np.percentile(pos, 1)) / 2, top_data / 1e6)
        top = top_data * 2.0
        clip = top if len(up) and up.max() > top else None
        return "log", floor, top, clip
    top = top_data * 1.15
    clip = top if len(up) and up.max() > top * 1.02 else None
    return "linear", 0.0, top, clip


def _draw(ax: Any, p: Plotted, spans: Sequence[Span], scale: tuple[str, float, float, float | None],
          x0: float, x1: float, zoom: bool = False) -> None:
    import matplotlib.dates as mdates

    kind, bottom, top, clip = scale
    day = 86400.0
    min_w = (x1 - x0) / 300  # a one-minute alert on a three-week axis still shows
    for s in spans:
        a, b = max(s.start, x0), min(max(s.end, s.start + min_w), x1)
        if b <= a:
            continue
        if s.kind == "alert":
            ax.axvspan(a / day, b / day, color=_COLOURS["alert"], alpha=0.28, lw=0, zorder=1)
        elif s.kind == "should":
            ax.axvspan(a / day, b / day, ymin=0.0, ymax=1.0, facecolor=_COLOURS["should"], alpha=0.35, lw=0, zorder=0)
        else:
            ax.axvspan(a / day, b / day, facecolor="none", edgecolor=_COLOURS["should_not"], hatch="///",
                       alpha=0.55, lw=0, zorder=0)
    xd = p.x / day

    def floor(a: np.ndarray) -> np.ndarray:
        return np.maximum(a, bottom) if kind == "log" else a

    if p.bucket_s:
        ax.fill_between(xd, floor(p.obs), floor(p.obs_max), color=_COLOURS["band"], alpha=0.55, lw=0, zorder=2,
                        label="observed, max per bucket")
    ax.plot(xd, floor(p.obs), color=_COLOURS["observed"], lw=0.9, zorder=3,
            label="observed" + (" (mean per bucket)" if p.bucket_s else ""))
    ax.plot(xd, floor(p.exp), color=_COLOURS["expected"], lw=1.0, zorder=4, label="expected")
    up = p.up if clip is None else np.minimum(p.up, clip)
    ax.plot(xd, floor(up), color=_COLOURS["bound"], lw=0.9, ls="--", zorder=4,
            label="alert bound" + (" (clipped)" if clip is not None else ""))
    ax.set_yscale("log" if kind == "log" else "linear")
    ax.set_ylim(bottom if kind == "log" else 0.0, top * (1.05 if clip is not None else 1.0))
    ax.set_xlim(x0 / day, x1 / day)
    # a zoomed panel is a quarter of the width: fewer, coarser ticks
    loc = mdates.AutoDateLocator(tz=timezone.utc, minticks=3 if zoom else 5, maxticks=6 if zoom else 10)
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc, tz=timezone.utc))
    ax.yaxis.set_major_formatter(_usd_formatter())
    if kind == "log":
        from matplotlib.ticker import NullFormatter

        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="major", color="#dddddd", lw=0.6)
    ax.tick_params(labelsize=8)


def _usd_formatter() -> Any:
    from matplotlib.ticker import FuncFormatter

    def tick(v: float, _pos: Any) -> str:
        a = abs(v)
        if not v:
            return "$0"
        if a >= 10:
            return f"${v:,.0f}"
        if a >= 1:
            return f"${v:.1f}".replace(".0", "")
        return f"${v:.2g}"

    return FuncFormatter(tick)


def _clusters(spans: Sequence[Span], join: float) -> list[tuple[float, float, list[Span]]]:
    """Spans merged into the stretches a zoomed panel shows (those within ``join`` of each other
    together), should-alert incidents and alerts only."""
    xs = sorted((s for s in spans if s.kind in ("alert", "should")), key=lambda s: s.start)
    out: list[tuple[float, float, list[Span]]] = []
    for s in xs:
        if out and s.start <= out[-1][1] + join:
            a, b, ss = out[-1]
            out[-1] = (a, max(b, s.end), ss + [s])
        else:
            out.append((s.start, s.end, [s]))
    return out


def _worth_zooming(clusters: list[tuple[float, float, list[Span]]], n: int) -> list[tuple[float, float, list[Span]]]:
    """The ``n`` stretches an analyst most wants to see up close, in time order: those with a
    should-alert incident first (caught or missed), then the alerts of the worst severity,
    the longer first."""

    def rank(c: tuple[float, float, list[Span]]) -> tuple[int, int, float]:
        a, b, ss = c
        return (int(any(s.kind == "should" for s in ss)),
                max((_SEVERITY.get(s.severity, 0) for s in ss if s.kind == "alert"), default=0), b - a)

    return sorted(sorted(clusters, key=rank, reverse=True)[:n], key=lambda c: c[0])


def render_chart(name: str, tr: SeriesTrace, spans: Sequence[Span], window_s: int,
                 inhibited: Sequence[float] = (), title: str | None = None) -> Chart:
    """One series' chart as PNG: the whole history on top, up to :data:`MAX_ZOOMS` zoomed
    panels of its alerts and incidents below, at full resolution."""
    import warnings

    # A Figure drawn on its own Agg canvas (never pyplot): no display, no global state.
    from matplotlib.figure import Figure

    day = 86400.0
    w = np.frombuffer(tr.w, dtype=np.float64)
    x0, x1 = float(w[0]), float(w[-1]) + window_s
    keep = [(s.start - 1800, s.end + 1800) for s in spans if s.kind in ("alert", "should") and s.end - s.start <= 12 * 3600]
    p = downsample(tr, window_s, keep)
    scale = _scale(p)
    kind, _, top, clip = scale
    clusters = _clusters(spans, 1800)
    shown = _worth_zooming(clusters, MAX_ZOOMS)
    notes = []
    height = 5.8 if shown else 3.6
    fig = Figure(figsize=(11.0, height), dpi=96)
    # fixed inches for the title and legend rows above the plots, whatever the figure's height
    top_frac = 1 - 0.62 / height
    if shown:
        grid = fig.add_gridspec(2, MAX_ZOOMS, height_ratios=[1.75, 1.0], hspace=0.5, wspace=0.25,
                                left=0.065, right=0.99, top=top_frac, bottom=0.07)
        ax = fig.add_subplot(grid[0, :])
    else:
        grid = fig.add_gridspec(1, 1, left=0.065, right=0.99, top=top_frac, bottom=0.12)
        ax = fig.add_subplot(grid[0, 0])
    _draw(ax, p, spans, scale, x0, x1)
    for t in inhibited:
        ax.plot([t / day], [1.0], marker="v", color=_COLOURS["alert"], ms=7, transform=ax.get_xaxis_transform(),
                clip_on=False, zorder=6, ls="none")
    head = title or name
    fig.text(0.065, 1 - 0.08 / height, _mpl_text(head), fontsize=11, fontweight="bold", va="top", ha="left")
    step = "each window" if not p.bucket_s else (
        f"{_duration(p.bucket_s)} buckets (mean line, max band), alert and incident windows one by one")
    fig.text(0.99, 1 - 0.1 / height, _mpl_text(f"USD per {_duration(window_s)} window · {step} · "
                                               f"{'log' if kind == 'log' else 'linear'} scale"),
             fontsize=7.5, color="#555555", va="top", ha="right")
    fig.legend(handles=_legend(ax, bool(p.bucket_s), clip is not None, bool(inhibited)), fontsize=7.5,
               loc="upper left", bbox_to_anchor=(0.06, 1 - 0.3 / height), ncol=8, frameon=False,
               handlelength=1.8, columnspacing=1.2)
    if clip is not None:
        upv = np.frombuffer(tr.upper, dtype=np.float64)
        note = (f"bound clipped at {_money(clip)} (max {_money(float(upv.max()))}, "
                f"median {_money(float(np.median(upv)))})")
        notes.append("alert " + note + " per window")
        ax.text(0.995, 0.97, _mpl_text(note), transform=ax.transAxes, ha="right", va="top", fontsize=7.5,
                color=_COLOURS["bound"], bbox={"facecolor": "white", "alpha": 0.85, "lw": 0}, zorder=7)
    if inhibited:
        notes.append(f"▼ {len(inhibited)} alert(s) of this series inhibited by the org alert (on-call got the org's)")
    if p.bucket_s:
        notes.append(f"downsampled for plotting to {_duration(p.bucket_s)} buckets (mean line, max band); "
                     "windows within 30 min of an alert or incident drawn one by one")
    if len(clusters) > len(shown):
        notes.append(f"zoomed below: {len(shown)} of {len(clusters)} stretches with an alert or incident "
                     "(labelled incidents first, then the most severe alerts)")
    for i, (a, b, ss) in enumerate(shown):
        zx = fig.add_subplot(grid[1, i])
        pad = max(1800.0, (b - a) * 0.5)
        lo, hi = max(x0, a - pad), min(x1, b + pad)
        sub = _slice(tr, lo, hi)
        if not len(sub):
            zx.set_visible(False)
            continue
        zp = downsample(sub, window_s, max_points=10**9)
        _draw(zx, zp, spans, _scale(zp), lo, hi, zoom=True)
        what = sorted({"alert" if s.kind == "alert" else "incident" for s in ss})
        zx.set_title(_mpl_text(f"{_when(a)} · {' + '.join(what)}"), fontsize=7.5, loc="left")
    with warnings.catch_warnings():
        # AutoDateLocator warns (and copes) when a zoomed range fits none of its tick steps
        warnings.simplefilter("ignore", UserWarning)
        png, width, px_height = _png(fig)
    return Chart(name, head, png, width, px_height, notes)


def _legend(ax: Any, bucketed: bool, clipped: bool, inhibited: bool) -> list[Any]:
    import matplotlib.lines as mlines
    import matplotlib.patches as mpatches

    out: list[Any] = []
    if bucketed:
        out.append(mpatches.Patch(color=_COLOURS["band"], alpha=0.6, label="observed, max"))
    out += [mlines.Line2D([], [], color=_COLOURS["observed"], lw=1.2, label="observed" + (" (mean)" if bucketed else "")),
            mlines.Line2D([], [], color=_COLOURS["expected"], lw=1.2, label="expected"),
            mlines.Line2D([], [], color=_COLOURS["bound"], lw=1.2, ls="--", label="alert bound" + (" (clipped)" if clipped else "")),
            mpatches.Patch(color=_COLOURS["alert"], alpha=0.35, label="alert: firing → resolved"),
            mpatches.Patch(facecolor=_COLOURS["should"], alpha=0.45, label="incident: should alert"),
            mpatches.Patch(facecolor="white", edgecolor=_COLOURS["should_not"], hatch="///", label="should not alert")]
    if inhibited:
        out.append(mlines.Line2D([], [], color=_COLOURS["alert"], marker="v", ls="none", label="inhibited by org"))
    return out


def _png(fig: Any) -> tuple[bytes, int, int]:
    """The figure as a palette PNG: a chart has few colours, and 192 of them make it about a
    third of the size of the full-colour image (a report of thirty charts stays a few MB)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    width, height = canvas.get_width_height()
    img = Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw", "RGBA", 0, 1).convert("RGB")
    buf = io.BytesIO()
    img.quantize(colors=192, method=Image.Quantize.MEDIANCUT).save(buf, format="PNG", optimize=True)
    return buf.getvalue(), width, height


def _slice(tr: SeriesTrace, lo: float, hi: float) -> SeriesTrace:
    w = np.frombuffer(tr.w, dtype=np.float64)
    a, b = int(np.searchsorted(w, lo, "left")), int(np.searchsorted(w, hi, "right"))
    out = SeriesTrace(tr.labels)
    out.w, out.observed, out.expected, out.upper = tr.w[a:b], tr.observed[a:b], tr.expected[a:b], tr.upper[a:b]
    out.anomaly = tr.anomaly[a:b]
    return out


def _duration(s: float) -> str:
    if s % 86400 == 0:
        return f"{int(s // 86400)} d"
    if s % 3600 == 0:
        return f"{int(s // 3600)} h"
    if s % 60 == 0:
        return f"{int(s // 60)} min"
    return f"{s:g} s"


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%a %Y-%m-%d %H:%M UTC")


# ------------------------------------------------------------------ which charts ----
def _team_of(series: str) -> str | None:
    for part in series.split("|"):
        k, _, v = part.partition("=")
        if k == "team":
            return v
    return None


def chart_order(trace: WindowTrace, firings: Sequence[Mapping[str, Any]], spans: Mapping[str, list[Span]],
                incident_teams: Iterable[str]) -> list[str]:
    """The series charted, in order: the org, then each team with its own series after it, then
    the rest (providers); only series that alerted or whose team has labelled incidents."""
    want = {"org"} | {str(f["series"]) for f in firings} | set(spans)
    want |= {f"team={t}" for t in incident_teams}
    have = [s for s in want if s in trace.series and len(trace.series[s])]

    def key(s: str) -> tuple[int, str, int, str]:
        if s == "org":
            return (0, "", 0, s)
        team = _team_of(s)
        if team is not None:
            return (1, team, 0 if s == f"team={team}" else 1, s)
        return (2, "", 0, s)

    return sorted(have, key=key)


# ------------------------------------------------------------------ HTML ------------
def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def _fmt_s(v: Any) -> str:
    if v is None:
        return "–"
    v = float(v)
    if v < 120:
        return f"{v:.0f} s"
    return f"{v / 60:.1f} min"


def _fmt_num(v: Any, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#f6f7f9}
main{max-width:1120px;margin:0 auto;padding:18px 20px 40px}
h1{font-size:22px;margin:4px 0 2px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;margin:0 0 14px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:10px 0}
.card{background:#fff;border:1px solid #e1e4e8;border-radius:6px;padding:8px 12px;min-width:120px}
.card b{display:block;font-size:18px}.card span{color:#666;font-size:12px}
table{border-collapse:collapse;background:#fff;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #e1e4e8;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f5;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
figure{background:#fff;border:1px solid #e1e4e8;border-radius:6px;margin:14px 0;padding:8px}
figure img{max-width:100%;height:auto;display:block}
figcaption{font-size:12px;color:#555;margin-top:4px}figcaption ul{margin:2px 0;padding-left:18px}
.why{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;white-space:pre-wrap;word-break:break-word}
.warn{background:#fff8e1;border:1px solid #f0d98a;border-radius:6px;padding:6px 10px}
.ok{color:#1e7e34}.miss{color:#b02a37;font-weight:600}.muted{color:#888}
code{font-size:12px;background:#eef0f3;padding:0 3px;border-radius:3px}
nav a{margin-right:10px}
"""

# Nothing may load or run: the charts are data URIs, the style is inline.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def build_report(
    *,
    trace: WindowTrace,
    window_seconds: int,
    notifications: Sequence[Mapping[str, Any]],
    firings: Sequence[Mapping[str, Any]],
    budget_firings: Sequence[Mapping[str, Any]] = (),
    counters: Mapping[str, int],
    first_ts: float | None,
    last_ts: float | None,
    teams: Iterable[str] = (),
    rejects: Sequence[tuple[int, str]] = (),
    summary: Mapping[str, Any] | None = None,
    incidents: Sequence[Any] | None = None,
    detector: Mapping[str, Any] | None = None,
    source: str = "",
    max_charts: int = MAX_CHARTS,
) -> tuple[str, list[Chart]]:
    """The report's HTML (and the charts drawn in it). ``summary`` is the replay's JSON summary
    (its ``score`` is shown as it is, so the page and the JSON agree); ``incidents`` the
    labelled incidents (``tokenpulse.replay.Incident``); ``detector`` the settings shown in the
    header (name, params, overrides, alert policy)."""
    summary = summary or {}
    incidents = list(incidents or [])
    teams = set(teams)
    end = last_ts
    spans = alert_spans(notifications, end)
    inhibited: dict[str, list[float]] = {}
    for f in firings:
        if f.get("inhibited_by"):
            inhibited.setdefault(str(f["series"]), []).append(_epoch(f["fired_at"]))
    inc_spans: dict[str, list[Span]] = {}
    for inc in incidents:
        inc_spans.setdefault(f"team={inc.team}", []).append(
            Span(inc.start, inc.end, "should" if inc.should_alert else "should_not", inc.name))
    order = chart_order(trace, firings, spans, {i.team for i in incidents})
    charts: list[Chart] = []
    for name in order[:max_charts]:
        s = list(inc_spans.get(name, [])) + list(spans.get(name, []))
        tr = trace.series[name]
        if last_ts is not None:  # not the quiet windows the replay closes after the last event
            tr = _slice(tr, -math.inf, last_ts) if tr.w[0] <= last_ts else tr
        charts.append(render_chart(name, tr, s, window_seconds, inhibited.get(name, ())))
    left_out = order[max_charts:]

    out: list[str] = []
    w = out.append
    w("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">")
    w(f"<meta http-equiv=\"Content-Security-Policy\" content=\"{_e(_CSP)}\">")
    w("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
    w(f"<title>tokenpulse replay report{(' — ' + _e(source)) if source else ''}</title>")
    w(f"<style>{_CSS}</style></head><body><main>")
    w("<h1>tokenpulse replay report</h1>")
    span_days = ((last_ts or 0) - (first_ts or 0)) / 86400 if first_ts is not None and last_ts is not None else 0
    w(f"<p class=\"sub\" id=\"span\">{_e(source) + ' · ' if source else ''}"
      f"{_e(_iso(first_ts))} → {_e(_iso(last_ts))} ({span_days:.1f} days) · made {_e(_iso(time.time()))}</p>")
    w("<nav><a href=\"#charts\">charts</a><a href=\"#score\">score</a><a href=\"#alerts\">alerts</a>"
      "<a href=\"#budgets\">budget notifications</a><a href=\"#settings\">detector settings</a></nav>")
    # header cards
    cards = [("events counted", counters.get("accepted", 0), "accepted"),
             ("rejected", counters.get("rejected", 0), "rejected"),
             ("duplicates", counters.get("duplicate", 0), "duplicate"),
             ("late", counters.get("late", 0), "late"),
             ("implausible", counters.get("implausible", 0), "implausible"),
             ("windows judged", summary.get("windows_judged", "–"), "windows_judged"),
             ("series", len(trace.series), "series"),
             ("teams", len(teams), "teams"),
             ("alerts fired", len(firings), "firings"),
             ("budget notifications", len(budget_firings), "budget_notifications")]
    w("<div class=\"cards\" id=\"counts\">")
    for label, v, key in cards:
        w(f"<div class=\"card\" data-count=\"{_e(key)}\"><b>{_e(f'{v:,}' if isinstance(v, int) else v)}</b>"
          f"<span>{_e(label)}</span></div>")
    w("</div>")
    if rejects:
        w("<details><summary>rejected lines (first "
          f"{min(len(rejects), 20)})</summary><table><tr><th>line</th><th>reason</th></tr>")
        for line, why in rejects[:20]:
            w(f"<tr><td class=\"n\">{_e(line)}</td><td>{_e(why)}</td></tr>")
        w("</table></details>")
    unknown = sorted({i.team for i in incidents} - teams)
    if unknown:
        w("<p class=\"warn\" id=\"unknown-teams\">Labels name teams with no events in this history (their "
          "incidents count as missed): " + ", ".join(f"<code>{_e(t)}</code>" for t in unknown) + "</p>")
    # charts
    w("<h2 id=\"charts\">Charts</h2>")
    w("<p class=\"sub\">Observed spend per window (blue), what the detector expected (green), the alert bound "
      "(red dashes); alerts shaded red from firing to resolve; labelled incidents that should alert shaded "
      "yellow (orange where an alert overlaps them), those that should not hatched grey; team alerts the "
      "org alert inhibited are marked ▼. Times in UTC.</p>")
    if not charts:
        w("<p class=\"muted\">No series alerted and no incidents are labelled.</p>")
    for i, c in enumerate(charts):
        uri = "data:image/png;base64," + base64.b64encode(c.png).decode("ascii")
        w(f"<figure id=\"chart-{i}\" data-series=\"{_e(c.series)}\">"
          f"<img src=\"{uri}\" width=\"{c.width}\" height=\"{c.height}\" alt=\"{_e('chart of ' + c.series)}\">"
          f"<figcaption><b>{_e(c.series)}</b>")
        if c.notes:
            w("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in c.notes) + "</ul>")
        w("</figcaption></figure>")
    if left_out:
        w(f"<p class=\"warn\">{len(left_out)} more series alerted or are labelled, not drawn (at most "
          f"{max_charts} charts): " + ", ".join(f"<code>{_e(s)}</code>" for s in left_out) + "</p>")
    chart_of = {c.series: i for i, c in enumerate(charts)}
    _score_section(w, summary.get("score"), incidents, firings)
    _alerts_section(w, firings, chart_of)
    _budget_section(w, budget_firings)
    _settings_section(w, detector or {}, window_seconds)
    w("</main></body></html>\n")
    return "".join(out), charts


def _score_section(w: Any, sc: Mapping[str, Any] | None, incidents: Sequence[Any],
                   firings: Sequence[Mapping[str, Any]]) -> None:
    w("<h2 id=\"score\">Score</h2>")
    if sc is None:
        w("<p class=\"muted\">No labels given (<code>--labels L.jsonl</code> scores the replay).</p>")
        return
    rows = [("recall", "recall", _fmt_num(sc.get("recall"))),
            ("should-alert incidents detected", "detected", f"{sc.get('detected')} of {sc.get('incidents')}"),
            ("false alerts", "false_alerts", _fmt_num(sc.get("false_alerts"))),
            ("team-weeks", "team_weeks", _fmt_num(sc.get("team_weeks"), 3)),
            ("false alerts per team-week", "false_alerts_per_team_week", _fmt_num(sc.get("false_alerts_per_team_week"), 3)),
            ("median detection delay", "median_delay_s", _fmt_s(sc.get("median_delay_s")))]
    w("<table id=\"score-table\"><tr><th>measure</th><th>value</th></tr>")
    for label, key, v in rows:
        raw = sc.get(key)
        w(f"<tr><td>{_e(label)}</td><td class=\"n\" data-metric=\"{_e(key)}\" data-value=\"{_e('' if raw is None else raw)}\">"
          f"{_e(v)}</td></tr>")
    w("</table>")
    per = sc.get("per_incident") or []
    if per:
        w("<table id=\"incidents-table\"><tr><th>team</th><th>incident</th><th>start (UTC)</th><th>detected</th>"
          "<th>delay</th></tr>")
        for r in per:
            ok = r.get("detected")
            w(f"<tr data-detected=\"{'1' if ok else '0'}\"><td>{_e(r.get('team'))}</td><td>{_e(r.get('name'))}</td>"
              f"<td>{_e(r.get('start'))}</td><td class=\"{'ok' if ok else 'miss'}\">{'yes' if ok else 'missed'}</td>"
              f"<td class=\"n\" data-delay=\"{_e('' if r.get('delay_s') is None else r.get('delay_s'))}\">"
              f"{_e(_fmt_s(r.get('delay_s')))}</td></tr>")
        w("</table>")
    quiet = [i for i in incidents if not i.should_alert]
    if quiet:
        w("<p>Labelled spans that should not alert, with the alerts of their team fired inside them:</p>")
        w("<table id=\"negatives-table\"><tr><th>team</th><th>span</th><th>from (UTC)</th><th>to</th><th>alerts inside</th></tr>")
        for inc in quiet:
            n = sum(1 for f in firings if f.get("team") == inc.team and inc.start <= _epoch(f["fired_at"]) <= inc.end)
            w(f"<tr><td>{_e(inc.team)}</td><td>{_e(inc.name)}</td><td>{_e(_iso(inc.start))}</td>"
              f"<td>{_e(_iso(inc.end))}</td><td class=\"n {'miss' if n else 'ok'}\">{n}</td></tr>")
        w("</table>")


def _contributors(cs: Any) -> str:
    if not cs:
        return "–"
    parts = []
    for c in cs[:5]:
        parts.append(f"{_e(c.get('kind'))} <b>{_e(c.get('name'))}</b> {_e(_money(float(c.get('usd') or 0)))}"
                     f" (+{_e(_money(float(c.get('excess_usd') or 0)))})")
    return "<br>".join(parts)


def _alerts_section(w: Any, firings: Sequence[Mapping[str, Any]], chart_of: Mapping[str, int]) -> None:
    w(f"<h2 id=\"alerts\">Alerts ({len(firings)})</h2>")
    if not firings:
        w("<p class=\"muted\">No alert fired.</p>")
        return
    w("<table id=\"alerts-table\"><tr><th>fired (UTC)</th><th>series</th><th>severity</th><th>observed</th>"
      "<th>expected</th><th>excess</th><th>incident excess</th><th>top contributors</th><th>why</th></tr>")
    for f in sorted(firings, key=lambda f: (_epoch(f["fired_at"]), str(f.get("series")))):
        series = str(f.get("series"))
        i = chart_of.get(series)
        name = f"<a href=\"#chart-{i}\">{_e(series)}</a>" if i is not None else _e(series)
        flags = []
        if f.get("page"):
            flags.append("paged")
        if f.get("inhibited_by"):
            flags.append(f"inhibited by {f['inhibited_by']}")
        pct = f.get("excess_pct")
        w(f"<tr><td>{_e(f.get('fired_at'))}</td><td>{name}</td>"
          f"<td>{_e(f.get('severity'))}{('<br><span class=muted>' + _e(', '.join(flags)) + '</span>') if flags else ''}</td>"
          f"<td class=\"n\">{_e(_money(float(f.get('observed') or 0)))}</td>"
          f"<td class=\"n\">{_e(_money(float(f.get('expected') or 0)))}</td>"
          f"<td class=\"n\">{_e(_money(float(f.get('excess_usd') or 0)))}"
          f"{'' if pct is None else '<br>' + _e(f'+{pct:,.0f} %')}</td>"
          f"<td class=\"n\">{_e('–' if f.get('incident_excess_usd') is None else _money(float(f['incident_excess_usd'])))}</td>"
          f"<td>{_contributors(f.get('top_contributors'))}</td><td class=\"why\">{_e(f.get('why'))}</td></tr>")
    w("</table>")


def _budget_section(w: Any, budget_firings: Sequence[Mapping[str, Any]]) -> None:
    w(f"<h2 id=\"budgets\">Budget notifications ({len(budget_firings)})</h2>")
    if not budget_firings:
        w("<p class=\"muted\">None (the policy has no budget, or none was reached).</p>")
        return
    w("<table id=\"budgets-table\"><tr><th>fired (UTC)</th><th>budget</th><th>kind</th><th>period</th>"
      "<th>spent / limit</th><th>why</th></tr>")
    for b in budget_firings:
        bd = b.get("budget") or {}
        unit = bd.get("unit")
        spent, limit = bd.get("spent"), bd.get("limit")
        amount = (f"{_money(float(spent))} / {_money(float(limit))}" if unit == "usd" and spent is not None and limit is not None
                  else f"{spent} / {limit} {unit or ''}")
        pct = bd.get("pct_used")
        kind = str(b.get("kind"))
        if bd.get("threshold") is not None:
            kind += f" {bd['threshold']:g} %"
        w(f"<tr><td>{_e(b.get('fired_at'))}</td><td>{_e(bd.get('name'))}<br><span class=muted>{_e(b.get('series'))}"
          f"</span></td><td>{_e(kind)}<br><span class=muted>{_e(b.get('action'))}</span></td>"
          f"<td>{_e(bd.get('period_id'))}</td><td class=\"n\">{_e(amount)}"
          f"{'' if pct is None else '<br>' + _e(f'{float(pct):.1f} %')}</td><td class=\"why\">{_e(b.get('why'))}</td></tr>")
    w("</table>")


def _settings_section(w: Any, detector: Mapping[str, Any], window_seconds: int) -> None:
    import json

    w("<h2 id=\"settings\">Detector settings</h2><table id=\"settings-table\">")
    rows = [("window", _duration(window_seconds))] + [(k, v) for k, v in detector.items()]
    for k, v in rows:
        text = v if isinstance(v, str) else json.dumps(v, default=str, sort_keys=True)
        w(f"<tr><th>{_e(k)}</th><td class=\"why\">{_e(text)}</td></tr>")
    w("</table>")


def _epoch(v: Any) -> float:
    if isinstance(v, (int, float)):
        return float(v)
    return datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp()


def _iso(ts: float | None) -> str:
    if ts is None:
        return "–"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def write_report(path: Path | str, res: Any, trace: WindowTrace, *, window_seconds: int,
                 summary: Mapping[str, Any] | None = None, incidents: Sequence[Any] | None = None,
                 detector: Mapping[str, Any] | None = None, source: str = "") -> tuple[int, float]:
    """Write the report of a replay (a ``tokenpulse.replay.ReplayResult`` and the trace it
    filled); returns (charts drawn, seconds taken)."""
    t0 = time.monotonic()
    page, charts = build_report(
        trace=trace, window_seconds=window_seconds, notifications=res.notifications, firings=res.firings,
        budget_firings=res.budget_firings, counters=res.counters, first_ts=res.first_ts, last_ts=res.last_ts,
        teams=res.teams, rejects=res.rejects, summary=summary, incidents=incidents, detector=detector,
        source=source,
    )
    Path(path).write_text(page, encoding="utf-8")
    return len(charts), time.monotonic() - t0
