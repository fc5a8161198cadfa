"""How the answers of several workers to one API request become one answer: one rule per
endpoint, all in :data:`MERGES` (pure functions of the JSON bodies; no I/O).

A worker answers ``/api/*`` from the judge partitions it holds; :func:`streams.worker.web.anyworker`
asks the peers holding the others (:mod:`streams.worker.peers`) and merges every answer with the
endpoint's rule. The rules are written so that the result does not depend on which worker was
asked, i.e. on the order of the bodies:

- sums by key are summed in integers (dollars rounded to 9 or 6 decimals become nano- or
  micro-dollars again), so ``a + b`` and ``b + a`` are the same to the last digit;
- lists are merged and re-sorted with a total order (ties broken by a key);
- rows a single partition owns (a budget, a series' windows, a digest channel) are taken as the
  owner wrote them;
- top-N lists are cut again after merging: a forwarded request is answered uncut where the cut
  would lose what the merge needs (``/api/timeseries``'s ``other`` line).

:data:`LOCAL` lists the endpoints answered by the worker asked alone, and why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from streams.worker.charts import TOP_SERIES

__all__ = ["LOCAL", "MERGES", "Merge", "merge"]

Body = dict[str, Any]
Merge = Callable[[list[Body]], Body]

NANO = 1_000_000_000
MICRO = 1_000_000
SPEND_INTS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "events")


def _units(x: Any, scale: int) -> int:
    return round(float(x or 0) * scale)


def _usd(units: int, scale: int) -> float:
    return round(units / scale, 9 if scale == NANO else 6)


def _first(bodies: list[Body]) -> Body:
    """The fields every worker answers alike (the request's own parameters, notes)."""
    return dict(bodies[0]) if bodies else {}


def _max(bodies: list[Body], key: str) -> Any:
    vals: list[Any] = [b[key] for b in bodies if b.get(key) is not None]
    return max(vals) if vals else None


def _concat(bodies: list[Body], key: str) -> list[Any]:
    return [x for b in bodies for x in (b.get(key) or ())]


def _sort_key(*fields: str) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A total order on rows by ``fields``: numbers, then text, then absent values."""

    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        out: list[tuple[int, Any]] = []
        for f in fields:
            v = row.get(f)
            out.append((0, v) if isinstance(v, int | float) else (2, "") if v is None else (1, str(v)))
        return tuple(out)

    return key


# -- /api/spend ----------------------------------------------------------------------------------

def spend(bodies: list[Body]) -> Body:
    """Rows summed by (value, org), sorted by cost (then by value); the total summed; the
    coarsest resolution of any worker's records.

    >>> a = {"group_by": "team", "rows": [{"team": "ads", "cost_usd": 0.1, "events": 1}], "total": {"cost_usd": 0.1, "events": 1}}
    >>> b = {"group_by": "team", "rows": [{"team": "ads", "cost_usd": 0.2, "events": 2}, {"team": "x", "org": "acme",
    ...       "cost_usd": 0.5, "events": 1}], "total": {"cost_usd": 0.7, "events": 3}}
    >>> out = spend([a, b])
    >>> [(r["team"], r.get("org"), r["cost_usd"], r["events"]) for r in out["rows"]], out["total"]["cost_usd"]
    ([('x', 'acme', 0.5, 1), ('ads', None, 0.3, 3)], 0.8)
    >>> spend([a, b]) == spend([b, a])
    True
    """
    out = _first(bodies)
    group_by = out.get("group_by", "team")
    acc: dict[tuple[str, str], list[int]] = {}
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for b in bodies:
        for r in b.get("rows") or ():
            k = (str(r.get(group_by)), str(r.get("org") or ""))
            cur = acc.setdefault(k, [0] * (1 + len(SPEND_INTS)))
            rows.setdefault(k, {f: v for f, v in r.items() if f not in ("cost_usd", *SPEND_INTS)})
            cur[0] += _units(r.get("cost_usd"), NANO)
            for i, f in enumerate(SPEND_INTS, 1):
                cur[i] += int(r.get(f) or 0)
    total = [0] * (1 + len(SPEND_INTS))
    merged = []
    for k, s in sorted(acc.items(), key=lambda kv: (-kv[1][0], kv[0])):
        for i, v in enumerate(s):
            total[i] += v
        merged.append({**rows[k], "cost_usd": _usd(s[0], NANO), **dict(zip(SPEND_INTS, s[1:], strict=True))})
    out["rows"] = merged
    out["total"] = {"cost_usd": _usd(total[0], NANO), **dict(zip(SPEND_INTS, total[1:], strict=True))}
    out["resolution_seconds"] = _max(bodies, "resolution_seconds")
    return out


# -- /api/alerts, /api/timeseries ----------------------------------------------------------------

def alerts(bodies: list[Body]) -> Body:
    """Every alert once (by key; the newest notification of a key seen twice), newest first.

    >>> out = alerts([{"alerts": [{"key": "a", "fired_at": 1}]}, {"alerts": [{"key": "b", "fired_at": 2}]}])
    >>> [a["key"] for a in out["alerts"]]
    ['b', 'a']
    """
    best: dict[str, dict[str, Any]] = {}
    for a in _concat(bodies, "alerts"):
        k = str(a.get("key"))
        if k not in best or (a.get("seq") or 0, a.get("fired_at") or 0) > (best[k].get("seq") or 0,
                                                                           best[k].get("fired_at") or 0):
            best[k] = a
    out = _first(bodies)
    out["alerts"] = sorted(best.values(), key=lambda a: (-(a.get("fired_at") or 0), str(a.get("key"))))
    return out


def _markers(bodies: list[Body]) -> list[dict[str, Any]]:
    seen = {(m.get("at"), m.get("state"), m.get("key")): m for m in _concat(bodies, "alerts")}
    return [seen[k] for k in sorted(seen, key=lambda k: (k[0] or 0, str(k[1]), str(k[2])))]


def timeseries(bodies: list[Body], top: int = TOP_SERIES) -> Body:
    """Each line summed by name over the same buckets, the ``top`` largest kept and the rest
    summed into ``other (N)`` (the workers answer a forwarded request uncut); the alert markers
    merged by time.

    >>> a = {"t": [0, 60], "series": [{"name": "ads", "usd": [1.0, 0.5], "total_usd": 1.5}]}
    >>> b = {"t": [0, 60], "series": [{"name": "ads", "usd": [0.0, 1.0], "total_usd": 1.0},
    ...                               {"name": "search", "usd": [2.0, 0.0], "total_usd": 2.0}]}
    >>> [(s["name"], s["usd"]) for s in timeseries([a, b], top=1)["series"]]
    [('ads', [1.0, 1.5]), ('other (1)', [2.0, 0.0])]
    """
    out = _first(bodies)
    n = len(out.get("t") or ())
    acc: dict[str, list[int]] = {}
    for s in _concat(bodies, "series"):
        name = str(s.get("name"))
        if name.startswith("other ("):  # an answer cut by a worker of an older version: kept, not re-ranked
            name = "other"
        cur = acc.setdefault(name, [0] * n)
        for i, v in enumerate((s.get("usd") or ())[:n]):
            cur[i] += _units(v, MICRO)
    ranked = sorted(acc.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
    shown, rest = ranked[:top], ranked[top:]
    if rest:
        shown.append((f"other ({len(rest)})", [sum(v[i] for _, v in rest) for i in range(n)]))
    out["series"] = [{"name": name, "usd": [_usd(x, MICRO) for x in v], "total_usd": _usd(sum(v), MICRO)}
                     for name, v in shown]
    out["alerts"] = _markers(bodies)
    out["resolution_seconds"] = _max(bodies, "resolution_seconds")
    return out


# -- rows one partition owns ----------------------------------------------------------------------

def _rows(list_key: str, *order: str, extra: Callable[[Body, list[Body]], None] | None = None) -> Merge:
    """Rows of ``list_key`` as their owners wrote them, merged and sorted by ``order``."""

    def merge_rows(bodies: list[Body]) -> Body:
        out = _first(bodies)
        out[list_key] = sorted(_concat(bodies, list_key), key=_sort_key(*order))
        if "resolution_seconds" in out:
            out["resolution_seconds"] = _max(bodies, "resolution_seconds")
        if extra is not None:
            extra(out, bodies)
        return out

    merge_rows.__name__ = f"rows_{list_key}"
    return merge_rows


def burndown(bodies: list[Body]) -> Body:
    """Each budget's row as its ledger's owner wrote it, with the ``parts`` of its curve that
    other workers drew from the spend records they hold added (the budget's series may be
    judged on another worker than its ledger's: ``TOKENPULSE_PLACEMENT=series``); a part of
    another period's buckets (a period that turned between the answers) is left out.

    >>> row = {"budget": "b", "unit": "usd", "t": [60, 120], "cumulative": [0.0, 0.0]}
    >>> part = {"budget": "b", "t": [60, 120], "cumulative": [0.5, 1.25]}
    >>> burndown([{"budgets": [row], "parts": []}, {"budgets": [], "parts": [part]}])["budgets"][0]["cumulative"]
    [0.5, 1.25]
    >>> "parts" in burndown([{"budgets": [row], "parts": [part]}])
    False
    """
    out = _first(bodies)
    out.pop("parts", None)
    parts: dict[str, list[Body]] = {}
    for p in _concat(bodies, "parts"):
        parts.setdefault(str(p.get("budget")), []).append(p)
    rows = []
    for r in sorted(_concat(bodies, "budgets"), key=_sort_key("budget")):
        extra = [p for p in parts.get(str(r.get("budget")), ()) if p.get("t") == r.get("t")]
        if extra:
            curves = [r.get("cumulative") or [], *(p.get("cumulative") or [] for p in extra)]
            n = len(r.get("t") or ())
            if r.get("unit") == "usd":
                cum: list[Any] = [_usd(sum(_units(c[i], MICRO) for c in curves if i < len(c)), MICRO) for i in range(n)]
            else:
                cum = [sum(int(c[i]) for c in curves if i < len(c)) for i in range(n)]
            r = {**r, "cumulative": cum}
        rows.append(r)
    out["budgets"] = rows
    return out


def _union_partitions(out: Body, bodies: list[Body]) -> None:
    out["partitions"] = sorted({p for b in bodies for p in (b.get("partitions") or ())})


def _dicts(*keys: str) -> Merge:
    """Mappings (by series, by partition) whose keys one worker owns, united."""

    def merge_dicts(bodies: list[Body]) -> Body:
        out = _first(bodies)
        for k in keys:
            got: dict[str, Any] = {}
            for b in bodies:
                got.update(b.get(k) or {})
            out[k] = dict(sorted(got.items(), key=lambda kv: (len(kv[0]), kv[0])))
        return out

    merge_dicts.__name__ = "dicts_" + "_".join(keys)
    return merge_dicts


def status(bodies: list[Body]) -> Body:
    """Every worker's ingest and judge partitions (and org stages, under series placement), the
    ingest counters summed."""
    out = _dicts("ingest", "judge", *(["org"] if any("org" in b for b in bodies) else []))(bodies)
    totals: dict[str, int] = {}
    for b in bodies:
        for k, v in (b.get("ingest_totals") or {}).items():
            totals[k] = totals.get(k, 0) + int(v)
    out["ingest_totals"] = totals
    out["now"] = _max(bodies, "now")
    return out


# -- per user and per team: summed by key ---------------------------------------------------------

def top_users(bodies: list[Body]) -> Body:
    """Users summed by name (as one worker sums a name's spend over orgs), ranked and cut again
    to the request's ``limit`` (the longest list any worker sent): exact as long as a user's
    spend sits on one worker or each worker's list holds all of its users."""
    out = _first(bodies)
    limit = max([len(b.get("by_spend") or ()) for b in bodies] + [len(b.get("by_excess") or ()) for b in bodies]
                + [0])
    users: dict[str, list[dict[str, Any]]] = {}
    for b in bodies:
        mine = {str(r.get("user")): r for r in [*(b.get("by_spend") or ()), *(b.get("by_excess") or ())]}
        for user, row in mine.items():  # one row per user and worker (it may be in both lists)
            users.setdefault(user, []).append(row)
    merged = []
    for user, parts in users.items():
        if len(parts) == 1:  # one worker holds the user: its row as it wrote it
            merged.append(parts[0])
            continue
        usd = sum(_units(r.get("usd"), MICRO) for r in parts)
        usual = [r.get("usual_usd") for r in parts if r.get("usual_usd") is not None]
        usual_u = sum(_units(u, MICRO) for u in usual) if usual else None
        merged.append({"user": user, "usd": _usd(usd, MICRO),
                       "requests": sum(int(r.get("requests") or 0) for r in parts),
                       "input_tokens": sum(int(r.get("input_tokens") or 0) for r in parts),
                       "output_tokens": sum(int(r.get("output_tokens") or 0) for r in parts),
                       "usual_usd": None if usual_u is None else _usd(usual_u, MICRO),
                       "excess_usd": _usd(usd - (usual_u or 0), MICRO)})
    # how many users: counted once each when every worker listed all of its own, else summed
    listed_all = all(int(b.get("users") or 0) <= len(b.get("by_spend") or ()) for b in bodies)
    out["users"] = len(merged) if listed_all else sum(int(b.get("users") or 0) for b in bodies)
    out["by_spend"] = sorted(merged, key=lambda r: (-r["usd"], r["user"]))[:limit]
    out["by_excess"] = sorted(merged, key=lambda r: (-r["excess_usd"], r["user"]))[:limit]
    out["resolution_seconds"] = _max(bodies, "resolution_seconds")
    return out


def _row_identity(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted((k, repr(v)) for k, v in row.items()))


def _share(internal: int, third: int) -> float | None:
    tot = internal + third
    return None if tot <= 0 else round(100 * third / tot, 2)


def mix(bodies: list[Body]) -> Body:
    """Per team: internal and third-party spend summed, the share and its change recomputed,
    the top third-party models merged.

    >>> a = {"teams": [{"team": "ads", "internal_usd": 1.0, "third_party_usd": 1.0, "top_third_party_models": [],
    ...                 "previous": {"internal_usd": 0, "third_party_usd": 0}}]}
    >>> mix([a, a])["teams"][0]["third_party_share_pct"], mix([a])["teams"][0]["change_pct_points"]
    (50.0, None)
    """
    out = _first(bodies)
    acc: dict[str, dict[str, Any]] = {}
    for r in _concat(bodies, "teams"):
        t = acc.setdefault(str(r.get("team")), {"i": 0, "t": 0, "pi": 0, "pt": 0, "models": {}})
        prev = r.get("previous") or {}
        t["i"] += _units(r.get("internal_usd"), NANO)
        t["t"] += _units(r.get("third_party_usd"), NANO)
        t["pi"] += _units(prev.get("internal_usd"), NANO)
        t["pt"] += _units(prev.get("third_party_usd"), NANO)
        for m in r.get("top_third_party_models") or ():
            t["models"][str(m.get("model"))] = t["models"].get(str(m.get("model")), 0) + _units(m.get("usd"), NANO)
    rows = []
    for team, t in sorted(acc.items()):
        share, prev_share = _share(t["i"], t["t"]), _share(t["pi"], t["pt"])
        top = sorted(t["models"].items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        rows.append({"team": team, "internal_usd": _usd(t["i"], NANO), "third_party_usd": _usd(t["t"], NANO),
                     "third_party_share_pct": share,
                     "top_third_party_models": [{"model": m, "usd": _usd(v, NANO)} for m, v in top],
                     "previous": {"internal_usd": _usd(t["pi"], NANO), "third_party_usd": _usd(t["pt"], NANO),
                                  "third_party_share_pct": prev_share},
                     "change_pct_points": None if share is None or prev_share is None else round(share - prev_share, 2)})
    out["teams"] = rows
    out["resolution_seconds"] = _max(bodies, "resolution_seconds")
    return out


def inhouse(bodies: list[Body]) -> Body:
    """Per team: in-house and total spend summed; each bucket's percentage weighted by the
    parts' total spend (exact when one worker holds the team, as partitioning by org gives)."""
    out = _first(bodies)
    acc: dict[str, list[dict[str, Any]]] = {}
    for r in _concat(bodies, "teams"):
        acc.setdefault(str(r.get("team")), []).append(r)
    teams = []
    for team, parts in sorted(acc.items()):
        if len(parts) == 1:
            teams.append(parts[0])
            continue
        inside = sum(_units(p.get("internal_usd"), MICRO) for p in parts)
        total = sum(_units(p.get("total_usd"), MICRO) for p in parts)
        n = max(len(p.get("pct") or ()) for p in parts)
        pct: list[float | None] = []
        for i in range(n):
            got = [(p["pct"][i], _units(p.get("total_usd"), MICRO)) for p in parts
                   if i < len(p.get("pct") or ()) and p["pct"][i] is not None]
            weight = sum(w for _, w in got)
            pct.append(None if not got else round(sum(v * w for v, w in got) / weight, 3) if weight
                       else round(sum(v for v, _ in got) / len(got), 3))
        teams.append({"team": team, "pct": pct, "internal_usd": _usd(inside, MICRO), "total_usd": _usd(total, MICRO)})
    out["teams"] = teams
    out["resolution_seconds"] = _max(bodies, "resolution_seconds")
    return out


def feedback(bodies: list[Body]) -> Body:
    """On-call's answers newest first; the per-team summary summed by (org, team) with its
    precision recomputed; the raised floors by series."""
    out = _first(bodies)
    out["enabled"] = any(b.get("enabled") for b in bodies)
    out["feedback"] = sorted(_concat(bodies, "feedback"),
                             key=lambda r: (str(r.get("at") or ""), str(r.get("id") or "")), reverse=True)
    if any("raised" in b for b in bodies):
        out["raised"] = sorted(_concat(bodies, "raised"), key=lambda r: str(r.get("series")))
    counts = ("alerts", "answered", "acknowledged", "new_normal", "not_anomaly", "snoozed")
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for b in bodies:
        for r in (b.get("summary") or {}).get("teams") or ():
            k = (str(r.get("org") or ""), str(r.get("team") or ""))
            row = rows.setdefault(k, {"org": r.get("org"), "team": r.get("team"), **dict.fromkeys(counts, 0)})
            for c in counts:
                row[c] += int(r.get(c) or 0)
    for row in rows.values():
        row["precision"] = None if not row["answered"] else round(1 - row["not_anomaly"] / row["answered"], 4)
    if "summary" in out:
        out["summary"] = {**out["summary"], "teams": sorted(rows.values(), key=lambda r: (
            -r["alerts"], r["team"] or "", r["org"] or ""))}
    return out


def sinks(bodies: list[Body]) -> Body:
    """Per receiver, over every worker delivering to it: up only if up on every worker, the
    most consecutive failures, the latest error and success, the pending notifications summed."""
    out = _first(bodies)
    acc: dict[str, dict[str, Any]] = {}
    for r in _concat(bodies, "sinks"):
        name = str(r.get("sink"))
        cur = acc.get(name)
        if cur is None:
            acc[name] = {**r, "pending_keys": list(r.get("pending_keys") or ())}
            continue
        cur["up"] = bool(cur.get("up")) and bool(r.get("up"))
        cur["consecutive_failures"] = max(int(cur.get("consecutive_failures") or 0),
                                          int(r.get("consecutive_failures") or 0))
        if str(r.get("last_error_at") or "") > str(cur.get("last_error_at") or ""):
            cur["last_error"], cur["last_error_at"] = r.get("last_error"), r.get("last_error_at")
        cur["last_success_at"] = max(str(cur.get("last_success_at") or ""), str(r.get("last_success_at") or "")) or None
        cur["pending_notifications"] = int(cur.get("pending_notifications") or 0) + int(r.get("pending_notifications") or 0)
        cur["pending_keys"] = sorted(set(cur["pending_keys"]) | set(r.get("pending_keys") or ()))
    out["sinks"] = [acc[k] for k in sorted(acc)]
    out["now"] = _max(bodies, "now")
    return out


def silences(bodies: list[Body]) -> Body:
    """The policy's silences (alike on every worker) and on-call's snoozes (each on its
    series' worker), once each, by start."""
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for s in _concat(bodies, "silences"):
        seen.setdefault(_row_identity({k: v for k, v in s.items() if k != "state"}), s)
    return {**_first(bodies), "silences": sorted(seen.values(), key=lambda s: (str(s.get("starts_at")),
                                                                              _row_identity(s)))}


#: Endpoint -> how the answers of every worker become one. An endpoint missing here is answered by
#: the worker asked alone (:data:`LOCAL` says why), so adding a view means choosing its row.
MERGES: dict[str, Merge] = {
    "/api/spend": spend,
    "/api/alerts": alerts,
    "/api/timeseries": timeseries,
    "/api/budgets": _rows("budgets", "budget", "partition", extra=_union_partitions),
    "/api/burndown": burndown,
    "/api/windows": _dicts("series"),
    "/api/status": status,
    "/api/top_users": top_users,
    "/api/mix": mix,
    "/api/inhouse": inhouse,
    "/api/feedback": feedback,
    "/api/digests": _rows("digests", "channel"),
    "/api/sinks": sinks,
    "/api/silences": silences,
}

#: Endpoints answered by the worker asked alone.
LOCAL: dict[str, str] = {
    "/api/policy": "the policy file: the same on every worker",
    "/api/inbox": "the dev inbox: one process (tokenpulse dev)",
    "/api/report": "the peers send their parts of the report, not reports: the view builds it from all (web.py)",
    "/healthz": "this process's liveness",
    "/metrics": "this process's counters (Prometheus scrapes every worker)",
}


def merge(path: str, bodies: Iterable[Body]) -> Body:
    """The one answer for ``path`` from the workers' ``bodies`` (this worker's first)."""
    got = list(bodies)
    return MERGES[path](got) if got else {}
