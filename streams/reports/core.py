"""Daily and weekly spend reports: when each is due, each judge partition's share of it, and the
report itself, computed exactly from the judge's nano-dollar spend records.

Pure Python (no Faust): the worker (:mod:`streams.reports.reporting`) and the API drive it, tests too.
Rendering for Slack lives in :mod:`alerts.report`; this module only computes.

A report covers one calendar period (a day, or a week from Monday) in the report's time zone
(:class:`streams.common.periods.Period`: a DST day is 23 or 25 hours, a DST week 167 or 169) and
compares it with the calendar period before it. It is *due* once the judge's watermark (event
time, as for budgets) passes the period's end plus the report's ``at`` time of day; only the
latest closed period is ever due, so a worker that was down for a week sends one report, not
seven.

Where the money comes from: the judge keeps exact spend per ``"<series>|<window start>"``
(``{"s": [nano_usd, …]}``) on the partition that judges the series, so one org's spend is
spread over every judge partition. Each partition computes its :func:`report_part` (the
series it holds, summed over the two periods, and the budgets it holds), the parts go to the
report's owner, and :func:`build_report` merges them. Only ``org``, ``team=…``,
``team=…|model=…``, ``provider=…`` and ``model=…`` series are read (never ``user=…``); the
``team=…|model=…`` ones are folded into per-team model-mix sums in the part, so a part holds
teams + models + providers rows, not teams × models.

>>> from streams.ingest.windows import NANO
>>> spec = ReportSpec(name="daily:#finops", channel="#finops", period="day")
>>> spend = {"org|0": {"s": [5 * NANO]}, "team=ads|0": {"s": [5 * NANO]},
...          "org|-86400": {"s": [4 * NANO]}, "team=ads|-86400": {"s": [4 * NANO]}}
>>> due = spec.due(86400.0)
>>> due.period_id, due.prev_id
('1970-01-01', '1969-12-31')
>>> part = report_part(spend.items(), spec, due)
>>> rep = build_report(spec, due, [part])
>>> rep["total"]["usd"], rep["total"]["change_usd"], rep["total"]["change_pct"]
(5.0, 1.0, 25.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from alerts.model import ReportNotification
from streams.budgets.mix import is_internal
from streams.common.dimensions import ORG, TEAM, TEAM_MODEL, Dimension, parse_series, series_key
from streams.common.periods import Period
from streams.common.spend import spend_windows
from streams.ingest.windows import NANO

__all__ = [
    "MOVERS",
    "REPORT_PERIODS",
    "ReportDue",
    "ReportScheduler",
    "ReportSpec",
    "build_report",
    "merge_parts",
    "report_notification",
    "report_part",
]

MOVERS = 3  # largest increases and decreases shown per dimension
_KINDS = ("team", "model", "provider")
REPORT_PERIODS = {"daily": "day", "weekly": "week", "day": "day", "week": "week"}


@dataclass(frozen=True, slots=True)
class ReportDue:
    """One period of one report: its bounds, the previous period's, and when it is due."""

    period_id: str
    start: int
    end: int
    prev_id: str
    prev_start: int
    prev_end: int
    due_at: float  # epoch seconds: the period's end plus the report's time of day

    def to_dict(self) -> dict[str, Any]:
        return {"period_id": self.period_id, "start": self.start, "end": self.end, "prev_id": self.prev_id,
                "prev_start": self.prev_start, "prev_end": self.prev_end, "due_at": self.due_at}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReportDue:
        return cls(str(d["period_id"]), int(d["start"]), int(d["end"]), str(d["prev_id"]), int(d["prev_start"]),
                   int(d["prev_end"]), float(d["due_at"]))


@dataclass(frozen=True, slots=True)
class ReportSpec:
    """One subscribed report (the policy's ``reports`` entries become these).

    ``period`` is ``day`` or ``week`` (Monday-based, in ``tz``); ``team`` scopes the report to
    one team (None: the whole org); ``at`` is the local time of day, in minutes after
    midnight, at which the report of the period that just ended is due. ``name`` identifies
    the report in notification keys (``report:<name>:<period id>``): keep it stable.
    """

    name: str
    channel: str
    period: str = "day"
    tz: str = "UTC"
    team: str | None = None
    at: int = 0

    def __post_init__(self) -> None:
        if self.period not in ("day", "week"):
            raise ValueError(f"report {self.name!r}: period must be day or week, got {self.period!r}")
        if not 0 <= self.at < 24 * 60:
            raise ValueError(f"report {self.name!r}: at must be a time of day (00:00..23:59)")
        Period(self.period, self.tz)  # validates the zone

    @property
    def calendar(self) -> Period:
        return Period(self.period, self.tz)

    @property
    def series(self) -> str:
        """The series whose judge partition owns this report (see :mod:`streams.reports.reporting`)."""
        return series_key(self.labels)

    @property
    def labels(self) -> dict[str, str]:
        return {} if self.team is None else {"team": self.team}

    def key(self, period_id: str) -> str:
        return f"report:{self.name}:{period_id}"

    def closed(self, ts: float) -> ReportDue:
        """The last period that ended at or before ``ts`` (the one a report at ``ts`` covers),
        with the period before it and its due time."""
        cal = self.calendar
        cur_start, _ = cal.bounds(ts)
        pid, start, end = cal.locate(cur_start - 1)
        prev_id, prev_start, _ = cal.locate(start - 1)
        local_end = datetime.fromtimestamp(end, cal._zone).date()
        due = datetime.combine(local_end, time(self.at // 60, self.at % 60), tzinfo=cal._zone).timestamp()
        return ReportDue(pid, start, end, prev_id, prev_start, start, due)

    def due(self, now: float) -> ReportDue | None:
        """The report due at ``now`` (event time), or None before the latest closed period's
        ``at`` time. Older periods are never due: no backlog after downtime."""
        d = self.closed(now)
        return d if d.due_at <= now else None


def _wanted(series: str, team: str | None) -> tuple[Dimension, dict[str, str]] | None:
    """The dimension and labels of ``series`` when a report (of ``team``, or the org's when
    None) reads it: never a user's series."""
    got = parse_series(series)
    if got is None or "user" in got[0].labels or "org" in got[1]:
        return None  # a user's, or another org's (reports are the default org's)
    if team is not None and (got[0] not in (TEAM, TEAM_MODEL) or got[1]["team"] != team):
        return None
    return got


def report_part(items: Iterable[tuple[str, Any]], spec: ReportSpec, due: ReportDue,
                budgets: Sequence[Mapping[str, Any]] = (), internal_models: Sequence[str] = ()) -> dict[str, Any]:
    """One judge partition's share of a report from its spend records (``"<series>|<window
    start>" -> {"s": [nusd, …]}``); a window counts in the period holding its start.

    ``{"series": {series: [nusd in the period, nusd in the previous period]}, "mix": {team:
    [internal, third-party, previous internal, previous third-party]}, "budgets": [...]}``.
    ``team=…|model=…`` series are folded into ``mix`` (``internal_models``: patterns) rather
    than sent one by one (there are teams × models of them), except for a team report, whose
    models they are. ``budgets`` are the partition's budget rows (:func:`budget_row`)."""
    acc: dict[str, list[int]] = {}
    mix: dict[str, list[int]] = {}
    internal: dict[str, bool] = {}
    lo, mid, hi = due.prev_start, due.start, due.end
    team = spec.team
    for series, w, _, span_sums in spend_windows(items, 0):  # windows, hours and days alike
        if not lo <= w < hi:
            continue
        got = _wanted(series, team)
        if got is None:
            continue
        nusd = int(span_sums[0])
        cur = 0 if w >= mid else 1
        if got[0] is TEAM_MODEL:
            t, model = got[1]["team"], got[1]["model"]
            own = internal.get(model)
            if own is None:
                own = internal[model] = is_internal(model, internal_models)
            bucket = mix.get(t)
            if bucket is None:
                bucket = mix[t] = [0, 0, 0, 0]
            bucket[2 * cur + (0 if own else 1)] += nusd
            if team is None:
                continue
        sums = acc.get(series)
        if sums is None:
            sums = acc[series] = [0, 0]
        sums[cur] += nusd
    mine = [dict(b) for b in budgets if team is None or (b.get("scope") or {}).get("team") == team]
    return {"series": acc, "mix": mix, "budgets": mine}


def merge_parts(
    parts: Iterable[Mapping[str, Any]],
) -> tuple[dict[str, list[int]], dict[str, list[int]], list[dict[str, Any]]]:
    """The parts of every partition as one ``{series: [cur, prev]}``, one mix per team and one
    budget list."""
    series: dict[str, list[int]] = {}
    mix: dict[str, list[int]] = {}
    budgets: list[dict[str, Any]] = []
    for part in parts:
        for s, (c, p) in (part.get("series") or {}).items():
            acc = series.setdefault(s, [0, 0])
            acc[0] += int(c)
            acc[1] += int(p)
        for t, sums in (part.get("mix") or {}).items():
            m = mix.setdefault(t, [0, 0, 0, 0])
            for i in range(4):
                m[i] += int(sums[i])
        budgets.extend(dict(b) for b in part.get("budgets") or ())
    return series, mix, budgets


def budget_row(ledger: Any, name: str, due: ReportDue, now: float) -> dict[str, Any]:
    """Where one budget of a :class:`streams.budgets.ledger.BudgetLedger` stands for a report: in its
    period holding the report period's last second, numbers as of ``now``."""
    spec = ledger.budgets[name]
    pid = Period(spec.period, spec.tz).period_id(due.end - 1)
    st = ledger.status(name, now, pid)
    fc = st.forecast
    return {
        "budget": name,
        "scope": spec.labels,
        "unit": spec.unit,
        "period": spec.period,
        "period_id": st.period_id,
        "spent_base": ledger.spent(name, st.period_id),
        "limit_base": spec.limit,
        "spent": round(st.spent, 9),
        "limit": st.limit,
        "pct_used": round(st.pct_used, 4),
        "projected_total": round(fc.projected_total, 9),
        "projected_pct": round(fc.projected_pct, 4),
        "exhaustion_ts": st.exhaustion_ts,
        "breach": bool(st.forecast_breach),
    }


# -- the report ------------------------------------------------------------------------------
def _usd(nusd: int) -> float:
    return round(nusd / NANO, 9)


def _change(cur: int, prev: int) -> dict[str, Any]:
    return {
        "nusd": cur,
        "prev_nusd": prev,
        "usd": _usd(cur),
        "prev_usd": _usd(prev),
        "change_usd": _usd(cur - prev),
        # None: nothing was spent before, so any change is "infinite"
        "change_pct": None if prev == 0 else round(100.0 * (cur - prev) / prev, 2),
    }


def _rows(sums: Mapping[str, list[int]], kind: str) -> list[dict[str, Any]]:
    rows = [{kind: name, **_change(c, p)} for name, (c, p) in sums.items()]
    rows.sort(key=lambda r: (-r["nusd"], -r["prev_nusd"], r[kind]))
    return rows


def _movers(rows: Sequence[Mapping[str, Any]], kind: str, k: int = MOVERS) -> dict[str, list[dict[str, Any]]]:
    def slim(r: Mapping[str, Any]) -> dict[str, Any]:
        return {kind: r[kind], "usd": r["usd"], "prev_usd": r["prev_usd"], "change_usd": r["change_usd"],
                "change_pct": r["change_pct"]}

    delta = [(r["nusd"] - r["prev_nusd"], r) for r in rows]
    up = sorted((x for x in delta if x[0] > 0), key=lambda x: (-x[0], x[1][kind]))[:k]
    down = sorted((x for x in delta if x[0] < 0), key=lambda x: (x[0], x[1][kind]))[:k]
    return {"up": [slim(r) for _, r in up], "down": [slim(r) for _, r in down]}


def _mix(per: Mapping[str, list[int]]) -> list[dict[str, Any]]:
    def share(i: int, t: int) -> float | None:
        return None if i + t == 0 else round(100.0 * t / (i + t), 2)

    rows = []
    for team in sorted(per):
        i, t, pi, pt = per[team]
        s, ps = share(i, t), share(pi, pt)
        rows.append({
            "team": team,
            "internal_usd": _usd(i),
            "third_party_usd": _usd(t),
            "third_party_share_pct": s,
            "previous": {"internal_usd": _usd(pi), "third_party_usd": _usd(pt), "third_party_share_pct": ps},
            "change_pct_points": None if s is None or ps is None else round(s - ps, 2),
        })
    return rows


def build_report(
    spec: ReportSpec, due: ReportDue, parts: Iterable[Mapping[str, Any]], internal_models: Sequence[str] = (),
    *, mix: bool | None = None,
) -> dict[str, Any]:
    """The report of ``spec`` for ``due``'s period from every partition's :func:`report_part`.

    Money is exact: each figure comes with its integer nano-dollars (``nusd``) and the USD
    value rounded to 9 decimals. ``change_pct`` is None when the previous period spent
    nothing. A team report has no provider breakdown (spend is not kept per team and
    provider) and no team movers. ``mix`` (default: weekly reports) adds each team's
    internal vs third-party share (the parts' ``internal_models``, listed in the report).
    """
    series, per_team_mix, budgets = merge_parts(parts)
    by: dict[str, dict[str, list[int]]] = {k: {} for k in _KINDS}
    total = series.get(spec.series, [0, 0])
    for name, sums in series.items():
        got = parse_series(name)
        if got is None or got[0] is ORG:
            continue
        dim, labels = got
        if dim is TEAM_MODEL:
            if spec.team is not None:
                by["model"][labels["model"]] = sums
        elif len(dim.labels) == 1:
            kind = dim.labels[0]
            if kind == "team" or (spec.team is None and kind in ("model", "provider")):
                by[kind][labels[kind]] = sums
    teams, models, providers = _rows(by["team"], "team"), _rows(by["model"], "model"), _rows(by["provider"], "provider")
    movers: dict[str, Any] = {"model": _movers(models, "model")}
    if spec.team is None:
        movers["team"] = _movers(teams, "team")
    budgets.sort(key=lambda b: str(b.get("budget")))
    out: dict[str, Any] = {
        "name": spec.name,
        "channel": spec.channel,
        "period": spec.period,
        "tz": spec.tz,
        "scope": spec.labels,
        **due.to_dict(),
        "total": _change(*total),
        "by_team": teams,
        "by_model": models,
        "by_provider": providers if spec.team is None else None,
        "movers": movers,
        "budgets": budgets,
    }
    if mix if mix is not None else spec.period == "week":
        out["mix"] = _mix(per_team_mix)
        out["internal_models"] = list(internal_models)
    return out


def report_notification(
    report: Mapping[str, Any], spec: ReportSpec, dashboard_url: str | None = None
) -> ReportNotification:
    """The outbox notification of a built report: key ``report:<name>:<period id>`` and seq
    = the due time in ms, both functions of the report and the period, so a report built
    twice (a replay after a crash, a second worker) is delivered once (per-key idempotency
    of :class:`streams.delivery.outbox.Deliverer`). It goes to the report's channel only."""
    kind = "Daily" if spec.period == "day" else "Weekly"
    scope = f" · team {spec.team}" if spec.team is not None else ""
    due = float(report["due_at"])
    return ReportNotification(
        key=spec.key(str(report["period_id"])),
        seq=int(round(due * 1000)),
        action="trigger",
        severity="info",
        reason="first",
        series=spec.series,
        labels=spec.labels,
        title=f"{kind} spend report {report['period_id']}{scope}",
        started_at=float(report["start"]),
        fired_at=due,
        dashboard_url=dashboard_url,
        channel=spec.channel,
        report=dict(report),
    )


class ReportScheduler:
    """Which reports a judge partition owes its share of, at its watermark.

    One per judge partition. :meth:`due` returns the (report, period) pairs due at ``wm``
    whose part this partition has not sent; :meth:`mark` records one as sent and returns the
    record to persist (``sent|<name>`` -> period id). Restore with :meth:`restore`. Cheap per
    call: between two due times it compares one float per report.

    >>> s = ReportScheduler([ReportSpec("d", "#c", "day")])
    >>> [(spec.name, due.period_id) for spec, due in s.due(86400.0 * 3 + 5)]
    [('d', '1970-01-03')]
    >>> s.mark("d", "1970-01-03")
    ('sent|d', '1970-01-03')
    >>> s.due(86400.0 * 3 + 60), [d.period_id for _, d in s.due(86400.0 * 4)]
    ([], ['1970-01-04'])
    """

    def __init__(self, specs: Iterable[ReportSpec]) -> None:
        self.specs = {s.name: s for s in specs}
        self.sent: dict[str, str] = {}
        self._next: dict[str, float] = {}

    def due(self, wm: float) -> list[tuple[ReportSpec, ReportDue]]:
        out = []
        for name, spec in self.specs.items():
            if wm < self._next.get(name, -math.inf):
                continue
            d = spec.due(wm)
            if d is None:
                self._next[name] = spec.closed(wm).due_at
                continue
            # the next period's due time: the period that ends where this one's successor ends
            self._next[name] = spec.closed(spec.calendar.bounds(d.end)[1]).due_at
            last = self.sent.get(name)
            if last is None or last < d.period_id:  # ids of one kind sort in time order
                out.append((spec, d))
        return out

    def mark(self, name: str, period_id: str) -> tuple[str, str]:
        self.sent[name] = period_id
        return f"sent|{name}", period_id

    def restore(self, items: Iterable[tuple[str, Any]]) -> None:
        for key, value in items:
            kind, _, name = key.partition("|")
            if kind == "sent" and value is not None:
                self.sent[name] = str(value)
