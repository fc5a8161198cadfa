"""Model mix: the share of each team's spend on internal vs third-party models, and its trend.

Companies steer staff from third-party assistants towards their in-house model; this is the
number that shows whether it works. A model is *internal* when its name matches one of the
policy's ``mix.internal_models`` patterns (shell-style: ``acme-*``); everything else is
third-party. Pure: it reads the spend records the judge keeps (``"team=…|model=…|<window>"``
-> ``{"s": [nano_usd, …]}``), so the API and tests share it.

The optional alert (policy ``mix.max_third_party_share``) counts the same money incrementally,
from the judge's spend rows, per team and calendar period (:class:`MixWatch`), and tells a team
once per period when its third-party share goes past its line (:func:`mix_crossings`,
:func:`mix_notification`).

>>> from streams.ingest.windows import NANO
>>> items = [("team=ads|model=gpt-4o|0", {"s": [3 * NANO]}), ("team=ads|model=acme-llama|0", {"s": [1 * NANO]}),
...          ("team=ads|model=gpt-4o|-600", {"s": [1 * NANO]}), ("team=ads|model=acme-llama|-600", {"s": [1 * NANO]})]
>>> [row] = mix_rows(items, ["acme-*"], since=0, until=600)
>>> row["team"], row["internal_usd"], row["third_party_usd"], row["third_party_share_pct"]
('ads', 1.0, 3.0, 75.0)
>>> row["previous"]["third_party_share_pct"], row["change_pct_points"]
(50.0, 25.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import orjson

from alerts.model import MixNotification
from streams.common.dimensions import TEAM_MODEL, parse_series, series_key
from streams.common.partitioning import judge_partition
from streams.common.periods import Period
from streams.common.spend import spend_windows
from streams.ingest.windows import NANO

__all__ = ["MixAlertSpec", "MixEvent", "MixWatch", "is_internal", "mix_crossings", "mix_notification", "mix_owner",
           "mix_rows"]


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
    for series, w, _, sums in spend_windows(items, 0):  # windows, hours and days alike
        got = parse_series(series)
        if got is None or got[0] is not TEAM_MODEL or "org" in got[1]:
            continue  # the share is the default org's teams' (another org's are not mixed in)
        team, model = got[1]["team"], got[1]["model"]
        if prev_since <= w < since:
            bucket = prev
        elif since <= w < until:
            bucket = cur
        else:
            continue
        internal = verdict.get(model)
        if internal is None:
            internal = verdict[model] = is_internal(model, internal_models)
        nusd = int(sums[0])
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


# -- the third-party share alert ----------------------------------------------------------------

_HOUR = 3600


@dataclass(frozen=True, slots=True)
class MixAlertSpec:
    """When a team's third-party share is worth a notification (built from the policy's ``mix``
    section by ``tokenpulse.policy.Policy.mix_alert_spec``).

    ``line`` is the default maximum share (a fraction, 0..1; None: no alert unless the team has
    its own line), ``team_lines`` the per-team lines (None turns a team's alert off). The share
    is that of the calendar ``period`` so far (in ``tz``); no alert while the team's spend in
    the period is below ``min_spend_nusd``, so the first calls of a Monday do not count as a
    trend.
    """

    internal_models: tuple[str, ...]
    line: float | None = None
    team_lines: tuple[tuple[str, float | None], ...] = ()
    period: str = "week"
    tz: str = "UTC"
    min_spend_nusd: int = 10 * NANO

    def __post_init__(self) -> None:
        for v in (self.line, *(x for _, x in self.team_lines)):
            if v is not None and not 0 <= v < 1:
                raise ValueError(f"a third-party share line is a fraction in [0, 1), got {v!r}")
        if self.min_spend_nusd < 0:
            raise ValueError(f"min_spend must be >= 0, got {self.min_spend_nusd!r}")
        Period(self.period, self.tz)  # validates both

    def line_for(self, team: str) -> float | None:
        for t, v in self.team_lines:
            if t == team:
                return v
        return self.line


@dataclass(slots=True)
class MixEvent:
    """A team's third-party share of ``period_id`` went past its line (once per team and
    period). ``past``: the period was already over when the crossing was counted (a backlog
    or a late event): recorded, not notified."""

    team: str
    period_id: str
    period_start: int
    period_end: int
    share: float
    line: float
    internal_nusd: int
    third_party_nusd: int
    top_models: list[tuple[str, int]]
    previous_period_id: str
    previous_share: float | None
    past: bool = False

    @property
    def key(self) -> str:
        return f"mix:{self.team}:{self.period_id}"


def mix_owner(team: str, n_partitions: int) -> int:
    """The judge partition that keeps a team's fired marks: the one judging ``team=…``."""
    return judge_partition(series_key({"team": team}), n_partitions)


@dataclass
class MixWatch:
    """Exact per-team, per-period internal vs third-party spend of the ``team=…|model=…``
    series one judge partition judges, and the fired marks of the teams it owns
    (:func:`mix_owner`).

    The share is read across the watches of the partitions that judge series
    (:func:`mix_crossings`; :func:`streams.common.partitioning.judging_partitions`, today the org's
    one), by the worker that holds them (see ``streams.worker.app``). Feed it every ``JudgeOutput.spend`` row
    (:meth:`apply_judge_spend`; rows of other series are ignored); a redelivered message is
    skipped by its (source, seq), as in :class:`streams.budgets.ledger.BudgetLedger`.

    State (JSON records for the budgets table, :meth:`checkpoint` / :meth:`restore`):
    ``mix|{team}|{period}``: ``{"start", "end", "i", "t", "m": {third-party model: nusd}}``;
    ``mixmark|{hour}``: the (source, seq) counted per ``series|window`` of that hour;
    ``mixfired|{team}|{period}``: ``{"at", "share", "notified"}``. Records of periods that
    ended ``keep_seconds`` before the newest window are dropped, marks after ``mark_ttl``.
    """

    spec: MixAlertSpec
    mark_ttl: int = 2 * 86400
    keep_seconds: int = 70 * 86400  # the previous month is still there for the trend

    periods: dict[str, dict[str, Any]] = field(init=False, default_factory=dict)  # "team|pid"
    marks: dict[str, dict[str, Any]] = field(init=False, default_factory=dict)  # "hour"
    fired: dict[str, dict[str, Any]] = field(init=False, default_factory=dict)  # "team|pid"
    touched: set[str] = field(init=False, default_factory=set)  # "team|pid" since the last crossings
    clock: int = field(init=False, default=0)
    _period: Period = field(init=False)
    _internal: dict[str, bool] = field(init=False, default_factory=dict)
    _dirty: set[str] = field(init=False, default_factory=set)
    _pruned_hour: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._period = Period(self.spec.period, self.spec.tz)

    def apply_judge_spend(self, series: str, window_start: int, sums: list[int], seqs: Mapping[int, int]) -> bool:
        """One ``JudgeOutput.spend`` row; True when it counted (a team×model row not seen yet)."""
        got = parse_series(series)
        if got is None or got[0] is not TEAM_MODEL or "org" in got[1]:
            return False  # the default org's teams only (see mix_rows)
        team, model = got[1]["team"], got[1]["model"]
        w = int(window_start)
        self.clock = max(self.clock, w)
        hour = w - w % _HOUR
        mark = self.marks.get(str(hour))
        if mark is None:
            mark = self.marks[str(hour)] = {"t": self.clock, "w": {}}
        per_src = mark["w"].setdefault(f"{series}|{w}", {})
        if seqs and all(int(sq) in per_src.get(str(src), ()) for src, sq in seqs.items()):
            return False  # a redelivered message: counted already
        for src, sq in seqs.items():
            per_src.setdefault(str(src), []).append(int(sq))
        mark["t"] = self.clock
        self._dirty.add(f"mixmark|{hour}")
        pid, start, end = self._period.locate(w)
        key = f"{team}|{pid}"
        rec = self.periods.get(key)
        if rec is None:
            rec = self.periods[key] = {"start": start, "end": end, "i": 0, "t": 0, "m": {}}
        internal = self._internal.get(model)
        if internal is None:
            internal = self._internal[model] = is_internal(model, self.spec.internal_models)
        nusd = int(sums[0])
        if internal:
            rec["i"] += nusd
        else:
            rec["t"] += nusd
            rec["m"][model] = rec["m"].get(model, 0) + nusd
        self._dirty.add(f"mix|{key}")
        self.touched.add(key)
        self.tick(self.clock)
        return True

    def reconfigure(self, spec: MixAlertSpec) -> None:
        """New lines (a policy reload). The counts depend on ``internal_models``, the period and
        the zone, so those must not change (a restart is needed for that). The teams' current
        periods are looked at again by the next :func:`mix_crossings`: a lowered line fires
        there; a team already told in the period is not told again."""
        if (spec.internal_models, spec.period, spec.tz) != (self.spec.internal_models, self.spec.period, self.spec.tz):
            raise ValueError("internal_models, period and timezone of the mix alert change only with a restart")
        self.spec = spec
        pid = self._period.period_id(self.clock)
        self.touched |= {k for k in self.periods if k.partition("|")[2] == pid}

    def tick(self, now: float) -> None:
        """Move the clock to ``now`` (event time) and, once an hour, drop what is too old."""
        self.clock = max(self.clock, int(now))
        if self.clock // _HOUR > self._pruned_hour:
            self._pruned_hour = self.clock // _HOUR
            self._prune()

    def _prune(self) -> None:
        for h in [h for h, m in self.marks.items() if m["t"] < self.clock - self.mark_ttl]:
            del self.marks[h]
            self._dirty.add(f"mixmark|{h}")
        horizon = self.clock - self.keep_seconds
        for kind, recs in (("mix", self.periods), ("mixfired", self.fired)):
            for k in [k for k, r in recs.items() if int(r.get("end", self.clock)) < horizon]:
                del recs[k]
                self._dirty.add(f"{kind}|{k}")

    def checkpoint(self) -> dict[str, Any]:
        """Key -> record changes since the last checkpoint (None deletes the key)."""
        out: dict[str, Any] = {}
        for key in self._dirty:
            kind, _, rest = key.partition("|")
            src = self.periods if kind == "mix" else self.marks if kind == "mixmark" else self.fired
            rec = src.get(rest)
            out[key] = None if rec is None else orjson.loads(orjson.dumps(rec))  # a copy
        self._dirty.clear()
        return out

    def restore(self, items: Iterable[tuple[str, Any]]) -> None:
        """Load the ``mix*`` records of :meth:`checkpoint` (other keys are skipped)."""
        for key, value in items:
            if value is None:
                continue
            kind, _, rest = key.partition("|")
            if kind == "mix":
                self.periods[rest] = {**value, "m": dict(value["m"])}
                self.clock = max(self.clock, int(value["start"]))
                self.touched.add(rest)  # looked at again: a crossing lost in a crash comes back
            elif kind == "mixmark":
                self.marks[rest] = {"t": int(value["t"]), "w": {k: {s: [int(x) for x in q] for s, q in v.items()}
                                                                for k, v in value["w"].items()}}
                self.clock = max(self.clock, int(value["t"]))
            elif kind == "mixfired":
                self.fired[rest] = dict(value)


def _sum_team(watches: Iterable[MixWatch], key: str) -> tuple[int, int, dict[str, int]]:
    i = t = 0
    models: dict[str, int] = {}
    for watch in watches:
        rec = watch.periods.get(key)
        if rec is None:
            continue
        i += rec["i"]
        t += rec["t"]
        for m, v in rec["m"].items():
            models[m] = models.get(m, 0) + v
    return i, t, models


def mix_crossings(
    watches: Mapping[int, MixWatch], n_partitions: int, now: float, wall: float | None = None,
    past_grace: float = 900.0,
) -> list[MixEvent]:
    """The third-party share crossings due at ``now`` (event time: the judge's watermark),
    read across ``watches`` (every judge partition's, by partition). A team fires once per
    period, the first time its share of the period so far is above its line with at least
    the minimum spend; the mark is kept in the owner's watch (:func:`mix_owner`), so it
    survives restarts. It re-arms only with the next period: a team that drops back under
    and rises again in the same period is not told twice, and one that stays above is told
    once per period. A crossing in a period that ended more than ``past_grace`` seconds
    before ``wall`` (the time it is counted; None: ``now``) is recorded with ``past=True``,
    for the caller not to notify: a backlog does not replay last month's alerts."""
    counted_at = float(now if wall is None else wall)
    touched: set[str] = set()
    for watch in watches.values():
        watch.tick(now)
        touched |= watch.touched
        watch.touched = set()
    events: list[MixEvent] = []
    for key in sorted(touched):
        team, _, pid = key.partition("|")
        owner = watches.get(mix_owner(team, n_partitions))
        if owner is None or key in owner.fired:
            continue
        spec = owner.spec
        line = spec.line_for(team)
        if line is None:
            continue
        i, t, models = _sum_team(watches.values(), key)
        if i + t < spec.min_spend_nusd or i + t == 0 or t <= line * (i + t):
            continue
        share = t / (i + t)
        start, end = owner._period.bounds_of(pid)
        prev_pid = owner._period.period_id(start - 1)
        pi, pt, _ = _sum_team(watches.values(), f"{team}|{prev_pid}")
        past = end + past_grace <= counted_at
        owner.fired[key] = {"end": end, "at": float(now), "share": share, "notified": not past}
        owner._dirty.add(f"mixfired|{key}")
        top = sorted(models.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        events.append(MixEvent(team, pid, start, end, share, line, i, t, top, prev_pid,
                               None if pi + pt == 0 else pt / (pi + pt), past))
    return events


def mix_notification(ev: MixEvent, spec: MixAlertSpec, now: float) -> MixNotification:
    """The notification of a crossing, for the outbox (routed like the team's other alerts;
    never pages). ``seq`` is the period's start in ms: there is one notification per key,
    so a crossing counted again after a crash (at another watermark) is the same record and
    delivery skips it."""
    third = ev.third_party_nusd / NANO
    return MixNotification(
        key=ev.key,
        seq=ev.period_start * 1000,
        action="trigger",
        severity="warning",
        reason="first",
        series=series_key({"team": ev.team}),
        labels={"team": ev.team},
        title=f"Team {ev.team}: third-party models at {100 * ev.share:.1f}% of spend ({ev.period_id})",
        started_at=float(ev.period_start),
        fired_at=float(now),
        period=spec.period,
        tz=spec.tz,
        period_id=ev.period_id,
        period_start=float(ev.period_start),
        period_end=float(ev.period_end),
        share_pct=round(100 * ev.share, 2),
        line_pct=round(100 * ev.line, 2),
        previous_period_id=ev.previous_period_id,
        previous_share_pct=None if ev.previous_share is None else round(100 * ev.previous_share, 2),
        internal_usd=round(ev.internal_nusd / NANO, 9),
        third_party_usd=round(third, 9),
        top_third_party_models=[{"model": m, "usd": round(v / NANO, 9)} for m, v in ev.top_models],
    )
