"""What the dashboard's charts draw, computed from the worker's spend table (pure functions).

Each takes the table's items (``"<series>|<window start>" -> {"s": [nusd, input, output,
cache_read, cache_write, events]}``, closed windows only) and returns plain JSON-ready values;
the views in :mod:`streams.worker.web` serve them:

- :func:`spend_over_time`: spend per time bucket, one line per team, model, provider or tool (the
  stacked area of ``/api/timeseries``), the rest summed into ``other``;
- :func:`burn_down`: a budget's cumulative spend over its period (``/api/burndown``);
- :func:`inhouse_over_time`: per team, the in-house share of spend per bucket (``/api/inhouse``);
- :func:`top_users`: users by spend and by excess over their usual (``/api/top_users``).

Time buckets are aligned to the epoch, so a chart refreshed a minute later moves by whole
buckets rather than reshuffling them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from streams.budgets.mix import is_internal
from streams.common.dimensions import TEAM_MODEL, parse_series
from streams.common.spend import spend_windows
from streams.ingest.windows import NANO

__all__ = ["RANGES", "STACK_BY", "burn_down", "inhouse_over_time", "spend_over_time", "top_users"]

# range name -> (seconds, bucket seconds): about 60 to 120 points per chart
RANGES: dict[str, tuple[int, int]] = {
    "1h": (3600, 60),
    "24h": (86400, 900),
    "7d": (7 * 86400, 7200),
    "30d": (30 * 86400, 6 * 3600),
}
STACK_BY = ("team", "model", "provider", "tool")
TOP_SERIES = 8  # stacked lines; the rest are one line, "other"


def _windows(items: Iterable[tuple[str, Any]]) -> Iterable[tuple[str, int, Sequence[int]]]:
    # windows, and the hours and days older spend is rolled up into (streams.reports.retention):
    # a rolled-up span counts in the bucket holding its start
    for series, w, _, sums in spend_windows(items, 0):
        yield series, w, sums


def buckets(since: float, until: float, step: int) -> list[int]:
    """Bucket starts covering ``[since, until)``, aligned to multiples of ``step``.

    >>> buckets(125, 300, 60)
    [120, 180, 240]
    """
    first = int(since // step * step)
    return list(range(first, int(until), step))


def spend_over_time(items: Iterable[tuple[str, Any]], by: str, since: float, until: float, step: int,
                    top: int = TOP_SERIES) -> dict[str, Any]:
    """USD per bucket for each value of dimension ``by`` (``team``, ``model``, ``provider`` or ``tool``):
    the ``top`` largest over the range, the rest as ``other``; ``t`` is the bucket starts.

    >>> items = [("team=ads|0", {"s": [2 * NANO, 0, 0, 0, 0, 1]}), ("team=ads|60", {"s": [NANO, 0, 0, 0, 0, 1]}),
    ...          ("team=search|60", {"s": [NANO // 2, 0, 0, 0, 0, 1]}), ("model=m|0", {"s": [NANO, 0, 0, 0, 0, 1]})]
    >>> out = spend_over_time(items, "team", 0, 120, 60)
    >>> out["t"], [(s["name"], s["usd"], s["total_usd"]) for s in out["series"]]
    ([0, 60], [('ads', [2.0, 1.0], 3.0), ('search', [0.0, 0.5], 0.5)])
    """
    t = buckets(since, until, step)
    index = {b: i for i, b in enumerate(t)}
    first = t[0] if t else 0
    acc: dict[str, list[int]] = {}
    for series, w, s in _windows(items):
        if w < first or w >= until:
            continue
        got = parse_series(series)
        if got is None or got[0].name != by:
            continue
        i = index.get(w // step * step)
        if i is None:
            continue
        acc.setdefault(got[1][by], [0] * len(t))[i] += int(s[0])
    ranked = sorted(acc.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
    shown, rest = ranked[:top], ranked[top:]
    if rest:
        other = [sum(v[i] for _, v in rest) for i in range(len(t))]
        shown.append((f"other ({len(rest)})", other))
    return {"t": t, "step": step,
            "series": [{"name": name, "usd": [round(x / NANO, 6) for x in v], "total_usd": round(sum(v) / NANO, 6)}
                       for name, v in shown]}


def burn_down(items: Iterable[tuple[str, Any]], series: str, unit: str, start: float, now: float,
              step: int) -> dict[str, Any]:
    """A budget's cumulative spend (USD, or input + output tokens) over ``[start, now)``, per
    bucket end: ``t`` and ``cumulative``.

    >>> items = [("team=ads|0", {"s": [NANO, 5, 5, 0, 0, 1]}), ("team=ads|120", {"s": [NANO, 5, 5, 0, 0, 1]})]
    >>> burn_down(items, "team=ads", "usd", 0, 180, 60)
    {'t': [60, 120, 180], 'cumulative': [1.0, 1.0, 2.0]}
    >>> burn_down(items, "team=ads", "tokens", 0, 180, 60)["cumulative"]
    [10, 10, 20]
    """
    t = buckets(start, now, step)
    per = [0] * len(t)
    first = t[0] if t else 0
    for s_key, w, s in _windows(items):
        if s_key != series or w < first or w >= now:
            continue
        i = (w - first) // step
        if 0 <= i < len(per):
            per[i] += int(s[0]) if unit == "usd" else int(s[1]) + int(s[2])
    out, run = [], 0
    for x in per:
        run += x
        out.append(round(run / NANO, 6) if unit == "usd" else run)
    return {"t": [b + step for b in t], "cumulative": out}


def inhouse_over_time(items: Iterable[tuple[str, Any]], internal_models: Sequence[str], since: float,
                      until: float, step: int) -> dict[str, Any]:
    """Per team, the in-house share of its spend per bucket (percent; None where it spent
    nothing), from the team×model series; ``internal_models`` as in the policy's ``mix``.

    >>> items = [("team=ads|model=acme-x|0", {"s": [NANO, 0, 0, 0, 0, 1]}),
    ...          ("team=ads|model=gpt-4o|0", {"s": [3 * NANO, 0, 0, 0, 0, 1]})]
    >>> inhouse_over_time(items, ["acme-*"], 0, 120, 60)["teams"]
    [{'team': 'ads', 'pct': [25.0, None], 'internal_usd': 1.0, 'total_usd': 4.0}]
    """
    t = buckets(since, until, step)
    first = t[0] if t else 0
    verdict: dict[str, bool] = {}
    acc: dict[str, tuple[list[int], list[int]]] = {}
    for series, w, s in _windows(items):
        if w < first or w >= until:
            continue
        got = parse_series(series)
        if got is None or got[0] is not TEAM_MODEL:
            continue
        team, model = got[1]["team"], got[1]["model"]
        internal = verdict.get(model)
        if internal is None:
            internal = verdict[model] = is_internal(model, internal_models)
        inside, total = acc.setdefault(team, ([0] * len(t), [0] * len(t)))
        i = (w - first) // step
        total[i] += int(s[0])
        if internal:
            inside[i] += int(s[0])
    teams = []
    for team, (inside, total) in sorted(acc.items()):
        teams.append({"team": team,
                      "pct": [None if tot <= 0 else round(100 * ins / tot, 3) for ins, tot in zip(inside, total, strict=True)],
                      "internal_usd": round(sum(inside) / NANO, 6), "total_usd": round(sum(total) / NANO, 6)})
    return {"t": t, "step": step, "teams": teams}


def top_users(items: Iterable[tuple[str, Any]], since: float, until: float, limit: int = 10,
              history_spans: int = 7) -> dict[str, Any]:
    """Users over ``[since, until)``: spend, requests and tokens, and their usual spend for a
    span of that length (the mean over up to ``history_spans`` spans before it in which the
    user spent anything); the ``limit`` first by spend and by excess over the usual.

    >>> NU = NANO
    >>> items = [("user=a|0", {"s": [NU, 1, 1, 0, 0, 1]}), ("user=a|100", {"s": [5 * NU, 2, 2, 0, 0, 2]}),
    ...          ("user=b|100", {"s": [2 * NU, 1, 1, 0, 0, 1]})]
    >>> out = top_users(items, 100, 200)
    >>> [(u["user"], u["usd"], u["usual_usd"], u["excess_usd"]) for u in out["by_excess"]]
    [('a', 5.0, 1.0, 4.0), ('b', 2.0, None, 2.0)]
    """
    span = until - since
    cur: dict[str, list[int]] = {}
    past: dict[str, dict[int, int]] = {}
    floor = since - history_spans * span
    for series, w, s in _windows(items):
        got = parse_series(series)
        if got is None or got[0].name != "user":
            continue
        user = got[1]["user"]
        if since <= w < until:
            acc = cur.setdefault(user, [0, 0, 0, 0])
            acc[0] += int(s[0])
            acc[1] += int(s[5])
            acc[2] += int(s[1])
            acc[3] += int(s[2])
        elif floor <= w < since:
            k = int((since - w - 1) // span)
            past.setdefault(user, {}).setdefault(k, 0)
            past[user][k] += int(s[0])
    rows: list[dict[str, Any]] = []
    for user, (nusd, events, tin, tout) in cur.items():
        spans = past.get(user) or {}
        usual = None if not spans else math.fsum(spans.values()) / len(spans) / NANO
        usd = nusd / NANO
        rows.append({"user": user, "usd": round(usd, 6), "requests": events, "input_tokens": tin,
                     "output_tokens": tout, "usual_usd": None if usual is None else round(usual, 6),
                     "excess_usd": round(usd - (usual or 0.0), 6)})
    by_spend = sorted(rows, key=lambda r: (-r["usd"], r["user"]))[:limit]
    by_excess = sorted(rows, key=lambda r: (-r["excess_usd"], r["user"]))[:limit]
    return {"users": len(rows), "by_spend": by_spend, "by_excess": by_excess}
