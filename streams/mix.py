"""Model mix: the share of each team's spend on internal vs third-party models, and its trend.

Companies steer staff from third-party assistants towards their in-house model; this is the
number that shows whether it works. A model is *internal* when its name matches one of the
policy's ``mix.internal_models`` patterns (shell-style: ``acme-*``); everything else is
third-party. Pure: it reads the spend records the judge keeps (``"team=…|model=…|<window>"``
-> ``{"s": [nano_usd, …]}``), so the API and tests share it.

>>> from streams.ingest import NANO
>>> items = [("team=ads|model=gpt-4o|0", {"s": [3 * NANO]}), ("team=ads|model=acme-llama|0", {"s": [1 * NANO]}),
...          ("team=ads|model=gpt-4o|-600", {"s": [1 * NANO]}), ("team=ads|model=acme-llama|-600", {"s": [1 * NANO]})]
>>> [row] = mix_rows(items, ["acme-*"], since=0, until=600)
>>> row["team"], row["internal_usd"], row["third_party_usd"], row["third_party_share_pct"]
('ads', 1.0, 3.0, 75.0)
>>> row["previous"]["third_party_share_pct"], row["change_pct_points"]
(50.0, 25.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from typing import Any

from streams.ingest import NANO

__all__ = ["is_internal", "mix_rows"]


def is_internal(model: str, patterns: Sequence[str]) -> bool:
    return any(fnmatchcase(model, p) for p in patterns)


def _share(internal: int, third: int) -> float | None:
    total = internal + third
    return None if total == 0 else round(100.0 * third / total, 2)


def mix_rows(
    items: Iterable[tuple[str, Any]], internal_models: Sequence[str], since: float, until: float
) -> list[dict[str, Any]]:
    """Per team: internal and third-party spend over windows starting in ``[since, until)``,
    the third-party share, and the same over the previous period of equal length."""
    span = until - since
    prev_since = since - span
    cur: dict[str, list[int]] = {}
    prev: dict[str, list[int]] = {}
    models: dict[str, dict[str, int]] = {}
    verdict: dict[str, bool] = {}
    for key, rec in items:
        if rec is None or not key.startswith("team=") or "|model=" not in key:
            continue
        series, _, w_s = key.rpartition("|")
        w = int(w_s)
        if prev_since <= w < since:
            bucket = prev
        elif since <= w < until:
            bucket = cur
        else:
            continue
        team_part, _, model = series.partition("|model=")
        team = team_part[5:]
        internal = verdict.get(model)
        if internal is None:
            internal = verdict[model] = is_internal(model, internal_models)
        nusd = int(rec["s"][0])
        acc = bucket.setdefault(team, [0, 0])
        acc[0 if internal else 1] += nusd
        if bucket is cur and not internal:
            per = models.setdefault(team, {})
            per[model] = per.get(model, 0) + nusd
    rows = []
    for team in sorted(set(cur) | set(prev)):
        i, t = cur.get(team, [0, 0])
        pi, pt = prev.get(team, [0, 0])
        share, prev_share = _share(i, t), _share(pi, pt)
        top = sorted((models.get(team) or {}).items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        rows.append(
            {
                "team": team,
                "internal_usd": round(i / NANO, 9),
                "third_party_usd": round(t / NANO, 9),
                "third_party_share_pct": share,
                "top_third_party_models": [{"model": m, "usd": round(v / NANO, 9)} for m, v in top],
                "previous": {
                    "internal_usd": round(pi / NANO, 9),
                    "third_party_usd": round(pt / NANO, 9),
                    "third_party_share_pct": prev_share,
                },
                "change_pct_points": None
                if share is None or prev_share is None
                else round(share - prev_share, 2),
            }
        )
    return rows
