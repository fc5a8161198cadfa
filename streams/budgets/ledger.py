"""The budget ledger core: exact spend per (budget, calendar period), threshold crossings fired
once per period, a burn forecast per budget, and a log of budget changes.

Pure Python (no Faust), like :class:`streams.judge.core.JudgeCore`: the worker keeps one
:class:`BudgetLedger` per judge partition and feeds it the judge's spend; tests and the offline
replay drive the same class.

Which budgets a partition owns: every budget reads exactly one series (``org``, ``team=ads``,
``user=bob``...), and every series of the org is judged on the org's partition
(:func:`streams.common.partitioning.judge_partition`), so :func:`budgets_for_partition` gives each
budget a single owner. The ledger state of a budget, its fired thresholds included, therefore
lives in one place at a time; after a restart or a
rebalance the new owner restores it (:meth:`BudgetLedger.restore`) and does not fire again what
was already fired. The threshold event's key (``budget:{name}:{period}:{threshold}``) is
deterministic too, so in the narrow gap between emitting an event and persisting the fired mark
the outbox's per-key idempotency absorbs the repeat.

Money is integer nano-dollars and tokens are integers, so a ledger is exact; the forecast is a
float projection on top.

State (JSON-able records, one key each, for a Faust table; :meth:`BudgetLedger.checkpoint`
returns the changed ones, value None deletes):

- ``led|{budget}|{period id}``: ``{"start", "end", "nusd", "tokens", "fired": [thresholds],
  "at": {threshold: event time it fired}, "burn": bool}`` -- the ledger of one period;
- ``mark|{budget}|{hour}``: ``{"t": clock, "w": {window: {source: [seqs]}}}`` -- which
  (source, seq) contributions were already counted, per window, for the windows touched in
  that hour; dropped ``mark_ttl`` seconds (event time) after their last use, which is far
  longer than any redelivery after a restart;
- ``fc|{budget}``: the :class:`~detectors.forecast.BurnForecaster` state;
- ``spec|{budget}``: the budget as last configured (so a change made while no worker ran is
  still noticed and logged) and ``chg|{budget}``: its change log (the newest 100 changes);
- ``dec|{budget}``: the last over-budget decision published for it (``{"period_id",
  "decision"}``, see :meth:`BudgetLedger.decisions` and :mod:`streams.budgets.decisions`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from alerts.model import BudgetNotification
from detectors.forecast import BurnForecaster, Forecast, burn_alert
from streams.budgets.decisions import ON_EXHAUSTED, decision_record, desired_decision
from streams.common.dimensions import series_key
from streams.common.partitioning import judge_partition
from streams.common.periods import Period
from streams.ingest.windows import NANO

__all__ = [
    "BudgetEvent",
    "BudgetLedger",
    "BudgetSpec",
    "BudgetStatus",
    "budget_notification",
    "budgets_for_partition",
    "reconfigure_ledgers",
]

Unit = Literal["usd", "tokens"]
DEFAULT_THRESHOLDS = (50.0, 80.0, 100.0)
# The labels a budget's scope may hold: a budget reads the series of its scope
# (streams.common.dimensions.series_key), and spend is kept per team and per user.
SCOPE_KEYS = ("team", "user")
# a scope may also name its org (another than the default: streams.common.dimensions.DEFAULT_ORG)
_SERIES_KEYS = frozenset({"org", *SCOPE_KEYS})
_HOUR = 3600
_CHANGES_KEPT = 100
_DAY = 86400.0


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    """One budget, as the ledger needs it (the policy builds these; see
    ``tokenpulse.policy.Policy.budget_specs``).

    ``scope`` holds labels that must equal the series' labels exactly: ``{}`` is the whole org
    (the ``org`` series), ``{"team": "ads"}`` the ``team=ads`` series (not ``team=ads|model=…``,
    which would count the same money twice). ``limit`` is in the unit's integer base:
    nano-dollars for ``usd``, tokens for ``tokens``. Thresholds are percentages of the limit.
    """

    name: str
    scope: tuple[tuple[str, str], ...]
    unit: Unit
    limit: int
    period: str = "month"
    tz: str = "UTC"
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    forecast_alert: bool = True
    forecast_margin: float = 0.05  # burn_alert(margin=...)
    forecast_min_elapsed: float = 0.1  # burn_alert(min_elapsed=...)
    parent: str | None = None  # the org budget this one is an allocation of
    on_exhausted: str = "none"  # the gateway decision at 100 %: none, block or downgrade

    def __post_init__(self) -> None:
        if self.unit not in ("usd", "tokens"):
            raise ValueError(f"budget {self.name!r}: unit must be usd or tokens, got {self.unit!r}")
        if self.on_exhausted not in ON_EXHAUSTED:
            raise ValueError(f"budget {self.name!r}: on_exhausted must be one of {', '.join(ON_EXHAUSTED)}, "
                             f"got {self.on_exhausted!r}")
        if self.limit <= 0:
            raise ValueError(f"budget {self.name!r}: limit must be > 0, got {self.limit!r}")
        bad = {k for k, _ in self.scope} - _SERIES_KEYS
        if bad:
            raise ValueError(f"budget {self.name!r}: unknown scope label(s) {sorted(bad)}")
        Period(self.period, self.tz)  # validates both

    @property
    def series(self) -> str:
        """The series the budget reads: ``{}`` (the whole org) -> ``org``; ``{team: ads}`` ->
        ``team=ads``."""
        return series_key(dict(self.scope))

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.scope)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a series with these labels is this budget's series (of its org: another
        org's ``team=ads`` is not the default org's)."""
        return series_key(labels) == self.series

    def amount(self, nusd: int, tokens: int) -> int:
        return nusd if self.unit == "usd" else tokens

    def to_display(self, x: int) -> float:
        """An amount in base units as USD or tokens."""
        return x / NANO if self.unit == "usd" else float(x)

    def to_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "scope": [list(kv) for kv in self.scope],
            "unit": self.unit,
            "limit": self.limit,
            "period": self.period,
            "tz": self.tz,
            "thresholds": list(self.thresholds),
        }
        if self.on_exhausted != "none":  # absent when unset: records saved before it compare equal
            rec["on_exhausted"] = self.on_exhausted
        return rec


def budgets_for_partition(specs: Iterable[BudgetSpec], partition: int, n_partitions: int) -> list[BudgetSpec]:
    """The budgets owned by one judge partition: those whose series that partition judges
    (:func:`streams.common.partitioning.judge_partition`: the org's partition, for every budget)."""
    return [s for s in specs if judge_partition(s.series, n_partitions) == partition]


def reconfigure_ledgers(
    ledgers: Mapping[int, BudgetLedger], specs: Iterable[BudgetSpec], n_partitions: int,
    now_of: Callable[[int], float | None] = lambda q: None,
) -> list[dict[str, Any]]:
    """A policy reload: give each judge partition's ledger its share of ``specs``
    (:func:`budgets_for_partition`), at ``now_of(partition)`` (event time: the judge's watermark;
    None: the ledger's clock). Each ledger logs what changed (``/api/budgets?budget=``), re-arms
    the thresholds a raised limit puts out of reach and checks its current period again at its
    next :meth:`BudgetLedger.crossings`, so a lowered limit fires there. Returns the new
    change-log entries, by partition order."""
    specs = list(specs)
    out: list[dict[str, Any]] = []
    for q, led in sorted(ledgers.items()):
        out += led.configure(budgets_for_partition(specs, q, n_partitions), now=now_of(q))
    return out


@dataclass(slots=True)
class BudgetStatus:
    """Where one budget stands at ``now`` in its current period (amounts in the unit)."""

    budget: str
    unit: str
    period_id: str
    period_start: int
    period_end: int
    spent: float
    limit: float
    pct_used: float
    days_left: float
    thresholds: list[float]
    fired: list[float]
    forecast: Forecast
    exhaustion_ts: float | None
    forecast_breach: bool
    fired_at: dict[str, float] = field(default_factory=dict)  # "50" -> event time (the watermark) it fired

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "unit": self.unit,
            "period_id": self.period_id,
            "period_start": self.period_start,
            "period_end": self.period_end,
            "spent": self.spent,
            "limit": self.limit,
            "pct_used": self.pct_used,
            "days_left": self.days_left,
            "thresholds": list(self.thresholds),
            "fired": list(self.fired),
            "fired_at": dict(self.fired_at),
            "forecast": self.forecast.to_dict(),
            "exhaustion_ts": self.exhaustion_ts,
            "forecast_breach": self.forecast_breach,
        }


@dataclass(slots=True)
class BudgetEvent:
    """Something to tell a budget's owners.

    ``kind``: ``threshold`` (``threshold`` percent reached; once per budget, period and
    threshold), ``forecast`` (the period is projected to overrun) or ``forecast_resolved``
    (it no longer is). ``key`` is stable per budget and period (and threshold), for the
    outbox's idempotency and for threading. ``past``: a threshold of a period that was already
    over when the crossing was counted (a first start on a backlog, a replayed history, a very
    late event): recorded as fired like any other, but not to be notified.
    """

    kind: Literal["threshold", "forecast", "forecast_resolved"]
    budget: str
    period_id: str
    threshold: float | None
    status: BudgetStatus
    past: bool = False

    @property
    def key(self) -> str:
        if self.kind == "threshold":
            return f"budget:{self.budget}:{self.period_id}:{self.threshold:g}"
        return f"budget_burn:{self.budget}:{self.period_id}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "budget": self.budget,
            "period_id": self.period_id,
            "threshold": self.threshold,
            "past": self.past,
            "status": self.status.to_dict(),
        }


def budget_notification(event: BudgetEvent, spec: BudgetSpec, now: float) -> BudgetNotification:
    """The notification for ``event``, for the outbox (delivery, idempotency and routing as
    for cost spikes: Slack goes to the team's channel when the scope names a team).

    ``seq`` is ``now`` (event time: the judge's watermark) in ms. A crash between sending
    this and checkpointing the ledger replays the same windows messages onto the same state,
    so the crossing comes back at the same watermark with the same ``seq`` and delivery skips
    it. A threshold fires once per period unless a raised limit re-arms it, which happens at a
    later watermark, so its seq grows as the delivery log needs. Budgets do not page.
    """
    st = event.status
    fc = st.forecast
    if event.kind == "threshold":
        th = float(event.threshold or 0.0)
        rule, action, reason = "budget_threshold", "trigger", "first"
        severity = "critical" if th >= 100 else "warning" if th >= 80 else "info"
        title = f"Budget {spec.name}: {th:g}% used ({st.period_id})"
    elif event.kind == "forecast":
        rule, action, reason, severity = "budget_forecast", "trigger", "first", "warning"
        title = f"Budget {spec.name}: projected to overrun ({st.period_id})"
    else:
        rule, action, reason, severity = "budget_forecast", "resolve", "resolved", "info"
        title = f"Budget {spec.name}: back on track ({st.period_id})"
    return BudgetNotification(
        key=event.key,
        seq=int(round(now * 1000)),
        action=action,  # type: ignore[arg-type]
        severity=severity,  # type: ignore[arg-type]
        reason=reason,  # type: ignore[arg-type]
        rule=rule,
        series=spec.series,
        labels=spec.labels,
        title=title,
        started_at=float(st.period_start),
        fired_at=float(now),
        ended_at=float(now) if action == "resolve" else None,
        explanation=fc.note if rule == "budget_forecast" else "",
        budget=spec.name,
        unit=spec.unit,
        period=spec.period,
        tz=spec.tz,
        period_id=st.period_id,
        period_start=float(st.period_start),
        period_end=float(st.period_end),
        spent=st.spent,
        limit=st.limit,
        pct_used=st.pct_used,
        days_left=st.days_left,
        threshold=event.threshold,
        thresholds=list(st.thresholds),
        projected_total=fc.projected_total,
        projected_pct=fc.projected_pct,
        exhaustion_ts=st.exhaustion_ts,
    )


@dataclass
class BudgetLedger:
    """Exact per-period spend of a set of budgets, with their alerts' state.

    Feed it every spend update of the judge (:meth:`apply`, or :meth:`apply_judge_spend` with a
    ``JudgeOutput.spend`` row); ask :meth:`crossings` for the events due at ``now`` (event
    time: the judge's watermark) and :meth:`status` for the numbers. :meth:`configure`
    installs a new set of budgets (a policy reload), logging what changed. Persist with
    :meth:`checkpoint` / :meth:`restore` (restore before the first :meth:`apply`). Not
    thread-safe; one instance per judge partition, holding the budgets that partition owns
    (:func:`budgets_for_partition`).

    >>> spec = BudgetSpec("ads", (("team", "ads"),), "usd", limit=100 * NANO, period="day")
    >>> led = BudgetLedger(window_seconds=60, specs=[spec])
    >>> led.apply({"team": "ads"}, 0, 60 * NANO, 0, source=0, seq=1)
    1
    >>> led.apply({"team": "ads"}, 0, 60 * NANO, 0, source=0, seq=1)  # redelivered
    0
    >>> [(e.kind, e.threshold) for e in led.crossings(now=3600)]
    [('threshold', 50.0)]
    >>> led.crossings(now=3660)
    []
    """

    window_seconds: int
    specs: Iterable[BudgetSpec] = ()
    mark_ttl: int = 2 * 86400
    forecaster_params: dict[str, Any] = field(default_factory=dict)
    past_grace: float = 900.0  # a period is past this long after its end (see crossings())

    budgets: dict[str, BudgetSpec] = field(init=False, default_factory=dict)
    ledgers: dict[str, dict[str, Any]] = field(init=False, default_factory=dict)  # "budget|pid"
    marks: dict[str, dict[str, Any]] = field(init=False, default_factory=dict)  # "budget|hour"
    forecasters: dict[str, BurnForecaster] = field(init=False, default_factory=dict)
    changes: dict[str, list[dict[str, Any]]] = field(init=False, default_factory=dict)
    seen_specs: dict[str, dict[str, Any]] = field(init=False, default_factory=dict)
    decided: dict[str, dict[str, Any]] = field(init=False, default_factory=dict)  # last decision per budget
    clock: int = field(init=False, default=0)  # newest window start applied (event time)
    _periods: dict[str, Period] = field(init=False, default_factory=dict)
    _by_series: dict[str, list[BudgetSpec]] = field(init=False, default_factory=dict)
    _synced: bool = field(init=False, default=False)
    _pruned_hour: int = field(init=False, default=0)
    _fc_hour: dict[str, float] = field(init=False, default_factory=dict)
    _dirty: set[str] = field(init=False, default_factory=set)
    _touched: set[str] = field(init=False, default_factory=set)  # ledger keys to check for crossings
    skipped: list[str] = field(init=False, default_factory=list)  # why the last crossings() held events back

    def __post_init__(self) -> None:
        # Installed now, compared with the persisted specs (and logged) on the first
        # restore / checkpoint / crossings, so that a restore comes first.
        specs, self.specs = list(self.specs), ()
        self._install(specs)
        self._synced = False

    def _install(self, specs: Iterable[BudgetSpec]) -> dict[str, BudgetSpec]:
        new = {s.name: s for s in specs}
        self.budgets = new
        self._periods = {n: Period(s.period, s.tz) for n, s in new.items()}
        self._by_series = {}
        for spec in new.values():
            self._by_series.setdefault(spec.series, []).append(spec)
        return new

    def _sync(self) -> None:
        if not self._synced:
            self.configure(list(self.budgets.values()), now=None)

    # -- configuration --------------------------------------------------------------------
    def configure(self, specs: Iterable[BudgetSpec], now: float | None) -> list[dict[str, Any]]:
        """Install the budgets ``specs`` (all of this partition's budgets). A changed limit
        takes effect at once for the current period's spend; every change is logged with
        ``now`` (None: the ledger's clock). Thresholds already fired stay fired unless the new
        limit puts the spend back below them (they are re-armed, and the log says so).
        Returns the new change-log entries."""
        t = float(self.clock if now is None else now)
        old_names = set(self.budgets) if self._synced else set()
        new = self._install(specs)
        self._synced = True
        logged: list[dict[str, Any]] = []
        for name, spec in new.items():
            rec = spec.to_record()
            old = self.seen_specs.get(name)
            if old == rec:
                continue
            entry: dict[str, Any] = {"t": t, "budget": name}
            if old is None:
                entry.update(change="created", new=rec)
            else:
                diff = {k: {"old": old.get(k), "new": v} for k, v in rec.items() if old.get(k) != v}
                entry.update(change="changed", fields=diff)
                if "limit" in diff:
                    entry["rearmed"] = self._rearm(spec, t)
            self._log(name, entry)
            self.seen_specs[name] = rec
            self._dirty.add(f"spec|{name}")
            logged.append(entry)
        for name in sorted(old_names - set(new)):
            entry = {"t": t, "budget": name, "change": "removed"}
            self._log(name, entry)
            self.seen_specs.pop(name, None)
            self._dirty.add(f"spec|{name}")
            logged.append(entry)
        return logged

    def _log(self, name: str, entry: dict[str, Any]) -> None:
        log = self.changes.setdefault(name, [])
        log.append(entry)
        del log[:-_CHANGES_KEPT]
        self._dirty.add(f"chg|{name}")

    def _rearm(self, spec: BudgetSpec, t: float) -> list[float]:
        """Un-fire the current period's thresholds that the new limit puts out of reach."""
        pid = Period(spec.period, spec.tz).period_id(t)
        led = self.ledgers.get(f"{spec.name}|{pid}")
        if led is None:
            return []
        spent = spec.amount(led["nusd"], led["tokens"])
        keep = [th for th in led["fired"] if 100 * spent >= th * spec.limit]  # as in crossings()
        rearmed = [th for th in led["fired"] if th not in keep]
        if rearmed:
            led["fired"] = keep
            led["at"] = {k: v for k, v in led.get("at", {}).items() if float(k) in keep}
            self._dirty.add(f"led|{spec.name}|{pid}")
        self._touched.add(f"{spec.name}|{pid}")
        return rearmed

    # -- counting -------------------------------------------------------------------------
    def apply(
        self, series_labels: Mapping[str, str], window_start: int, nusd: int, tokens: int,
        source: int | Mapping[int, int], seq: int = -1,
    ) -> int:
        """Add one window's spend of one series to every budget reading that series, in the
        period holding ``window_start`` (event time: a late window lands in its own, possibly
        past, period). ``source``/``seq`` identify the judge input that carried it (or pass the
        judge's ``{source: seq}`` mapping as ``source``); what was already counted for that
        window is skipped. Returns the number of budgets updated."""
        seqs = {int(source): int(seq)} if isinstance(source, int) else {int(k): int(v) for k, v in source.items()}
        w = int(window_start)
        if w > self.clock:
            self.clock = w
        keys = series_labels.keys()
        if keys and keys <= _SERIES_KEYS:
            # the org's own series (``org``, ``org=acme``) or a team's or user's, of its org
            series = series_key(series_labels)
        else:
            return 0  # team=…|model=… and the like: no budget reads them
        return self._apply_series(series, w, nusd, tokens, seqs)

    def judge_step(
        self, spend: Iterable[tuple[str, int, list[int], dict[int, int]]], wm: float | None,
        wall: float | None = None,
    ) -> list[tuple[BudgetEvent, BudgetNotification | None]]:
        """One judge output, as the worker and the offline replay both take it: its spend rows
        (:meth:`apply_judge_spend`), then the crossings at the judge's watermark ``wm``
        (:meth:`crossings`; none while it has none), each with its notification, or None for
        a past period's threshold (recorded as fired, not told)."""
        for series, w, sums, seqs in spend:
            self.apply_judge_spend(series, w, sums, seqs)
        if wm is None:
            return []
        return [(ev, None if ev.past else budget_notification(ev, self.budgets[ev.budget], wm))
                for ev in self.crossings(wm, wall=wall)]

    def apply_judge_spend(self, series: str, window_start: int, sums: list[int], seqs: Mapping[int, int]) -> int:
        """One ``JudgeOutput.spend`` row as it comes: (series, window start, sums, seqs), with
        ``sums`` = [cost nusd, input, output, cache read, cache write, events]. Tokens are
        input + output (input already includes the cache reads and writes)."""
        budgets = self._by_series.get(series)
        if not budgets:
            return 0
        w = int(window_start)
        if w > self.clock:
            self.clock = w
        return self._apply_series(series, w, int(sums[0]), int(sums[1]) + int(sums[2]),
                                  {int(k): int(v) for k, v in seqs.items()})

    def _apply_series(self, series: str, w: int, nusd: int, tokens: int, seqs: dict[int, int]) -> int:
        n = 0
        for spec in self._by_series.get(series, ()):
            if self._apply_one(spec, w, nusd, tokens, seqs):
                n += 1
        if n and self.clock // _HOUR > self._pruned_hour:
            self._pruned_hour = self.clock // _HOUR
            self._prune_marks()
        return n

    def _apply_one(self, spec: BudgetSpec, w: int, nusd: int, tokens: int, seqs: dict[int, int]) -> bool:
        name = spec.name
        hour = w - w % _HOUR
        mkey = f"{name}|{hour}"
        mark = self.marks.get(mkey)
        if mark is None:
            mark = self.marks[mkey] = {"t": self.clock, "w": {}}
        per_src = mark["w"].setdefault(str(w), {})
        if seqs and all(sq in per_src.get(str(src), ()) for src, sq in seqs.items()):
            return False  # this contribution was counted already: a redelivered message
        for src, sq in seqs.items():
            per_src.setdefault(str(src), []).append(sq)
        mark["t"] = self.clock
        self._dirty.add(f"mark|{mkey}")

        pid, start, end = self._periods[name].locate(w)
        lkey = f"{name}|{pid}"
        led = self.ledgers.get(lkey)
        if led is None:
            led = self.ledgers[lkey] = {"start": start, "end": end, "nusd": 0, "tokens": 0, "fired": [],
                                        "burn": False}
        led["nusd"] += nusd
        led["tokens"] += tokens
        self._dirty.add(f"led|{lkey}")
        self._touched.add(lkey)

        fc = self._forecaster(name)
        fc.observe(float(w + self.window_seconds), spec.to_display(spec.amount(nusd, tokens)))
        self._dirty.add(f"fc|{name}")
        return True

    def _forecaster(self, name: str) -> BurnForecaster:
        fc = self.forecasters.get(name)
        if fc is None:
            fc = self.forecasters[name] = BurnForecaster(**self.forecaster_params)
        return fc

    def _prune_marks(self) -> None:
        horizon = self.clock - self.mark_ttl
        for k in [k for k, m in self.marks.items() if m["t"] < horizon]:
            del self.marks[k]
            self._dirty.add(f"mark|{k}")

    # -- reading --------------------------------------------------------------------------
    def spent(self, budget: str, period_id: str) -> int:
        """Exact spend of a budget in a period, in its unit's base (nano-dollars or tokens)."""
        spec = self.budgets[budget]
        led = self.ledgers.get(f"{budget}|{period_id}")
        return 0 if led is None else spec.amount(led["nusd"], led["tokens"])

    def status(self, budget: str, now: float, period_id: str | None = None) -> BudgetStatus:
        """The budget in the period holding ``now`` (or in ``period_id``), with its forecast."""
        spec = self.budgets[budget]
        period = self._periods[budget]
        if period_id is None:
            pid, start, end = period.locate(now)
        else:
            pid, (start, end) = period_id, period.bounds_of(period_id)
        led = self.ledgers.get(f"{budget}|{pid}")
        spent_base = 0 if led is None else spec.amount(led["nusd"], led["tokens"])
        spent, limit = spec.to_display(spent_base), spec.to_display(spec.limit)
        # Read-only: a reader (the API) must not create state that changes what crossings() does.
        forecaster = self.forecasters.get(budget) or BurnForecaster(**self.forecaster_params)
        fc = forecaster.forecast(min(max(float(now), start), end), float(start), float(end), spent, limit)
        return BudgetStatus(
            budget=budget,
            unit=spec.unit,
            period_id=pid,
            period_start=start,
            period_end=end,
            spent=spent,
            limit=limit,
            pct_used=100.0 * spent_base / spec.limit,
            days_left=max(0.0, (end - max(float(now), start)) / _DAY),
            thresholds=sorted(spec.thresholds),
            fired=sorted(led["fired"]) if led else [],
            fired_at=dict(led.get("at", {})) if led else {},
            forecast=fc,
            exhaustion_ts=fc.exhaustion_ts,
            forecast_breach=spec.forecast_alert and burn_alert(
                fc, margin=spec.forecast_margin, min_elapsed=spec.forecast_min_elapsed
            ),
        )

    def crossings(self, now: float, wall: float | None = None) -> list[BudgetEvent]:
        """The events due at ``now`` (event time): each threshold reached in a period for the
        first time (late spend that pushes a past period over one fires too, naming that
        period), and forecast breaches starting or ending in the current period. What is
        returned is marked in the state at once: the same crossing is never returned again,
        also after :meth:`checkpoint` / :meth:`restore`. A forecast breach of a budget whose
        100 % threshold already fired in the period is not an event: ``skipped`` then says
        ``inhibited`` (once per period).

        ``wall`` is when the crossing is counted (the worker passes the wall clock; None: ``now``,
        as in the offline replay, whose clock is event time). A threshold of a period that
        ended ``past_grace`` or more before it comes with ``past=True``: a first start on a
        backlog of last week's usage records last week's crossings as fired (each with its
        event time) without a notification for each. The grace leaves room for the windows
        that close just after a period ends (lateness, judging) to fire normally."""
        self._sync()
        self.skipped = []
        counted_at = float(now if wall is None else wall)
        events: list[BudgetEvent] = []
        for name in self.budgets:
            fc = self.forecasters.get(name)
            if fc is not None and self._fc_hour.get(name) != now // _HOUR:
                fc.observe(float(now), 0.0)  # close the quiet hours up to now
                self._fc_hour[name] = now // _HOUR
                self._dirty.add(f"fc|{name}")
            pid = self._periods[name].period_id(now)
            self._touched.add(f"{name}|{pid}")
        touched, self._touched = self._touched, set()
        for lkey in sorted(touched):
            name, _, pid = lkey.partition("|")
            spec = self.budgets.get(name)
            if spec is None:
                continue
            led = self.ledgers.get(lkey)
            spent = 0 if led is None else spec.amount(led["nusd"], led["tokens"])
            due = [th for th in sorted(spec.thresholds)
                   if 100 * spent >= th * spec.limit and (led is None or th not in led["fired"])]
            current = self._periods[name].period_id(now) == pid
            if not due and not current:
                continue
            st = self.status(name, now, pid)
            for th in due:
                assert led is not None  # due thresholds need spend (every threshold is > 0)
                led["fired"].append(th)
                led.setdefault("at", {})[f"{th:g}"] = float(now)
                st.fired_at[f"{th:g}"] = float(now)
                self._dirty.add(f"led|{lkey}")
                events.append(BudgetEvent("threshold", name, pid, th, st,
                                          past=int(led["end"]) + self.past_grace <= counted_at))
            if current and spec.forecast_alert:
                was = bool(led and led["burn"])
                if st.forecast_breach and not was and led is not None and any(th >= 100 for th in led["fired"]):
                    # Exhausted: the 100 % alert has said it all; a burn warning now would only
                    # repeat it (it inhibits its own budget's warning). Recorded once a period.
                    if not led.get("burn_held"):
                        led["burn_held"] = True
                        self._dirty.add(f"led|{lkey}")
                        self.skipped.append("inhibited")
                    continue
                if st.forecast_breach != was:
                    if led is None:
                        led = self.ledgers[lkey] = {"start": st.period_start, "end": st.period_end,
                                                    "nusd": 0, "tokens": 0, "fired": [], "burn": False}
                    led["burn"] = st.forecast_breach
                    self._dirty.add(f"led|{lkey}")
                    events.append(BudgetEvent("forecast" if st.forecast_breach else "forecast_resolved",
                                              name, pid, None, st))
        return events

    def decisions(self, now: float) -> list[dict[str, Any]]:
        """The over-budget decisions due at ``now`` (event time: the judge's watermark), as
        records of the decisions topic (:func:`streams.budgets.decisions.decision_record`, key: the
        budget name). For each budget, the decision wanted for the period holding ``now``
        (:func:`streams.budgets.decisions.desired_decision`: its ``on_exhausted`` once the spend
        reaches the limit, else ``allow``) is returned when it differs from the last one
        published (none counts as ``allow``), and recorded at once (persisted as ``dec|``):
        so a block comes when the 100 % crossing is seen, and an ``allow`` lifts it when the
        watermark enters a new period (or the limit is raised above the spend). Deterministic
        in the ledger's state and ``now``, so a replay after a crash re-sends the same decision
        for the same period, never a contradicting one."""
        self._sync()
        out: list[dict[str, Any]] = []
        for name, spec in self.budgets.items():
            last = self.decided.get(name)
            if spec.on_exhausted == "none" and (last is None or last["decision"] == "allow"):
                continue  # nothing to block, nothing to lift
            pid = self._periods[name].period_id(now)
            want = desired_decision(spec.on_exhausted, self.spent(name, pid), spec.limit)
            if want == (last["decision"] if last else "allow"):
                continue
            st = self.status(name, now, pid)
            self.decided[name] = {"period_id": pid, "decision": want}
            self._dirty.add(f"dec|{name}")
            out.append(decision_record(name, spec.labels, spec.unit, pid, st.period_start, st.period_end,
                                       st.spent, st.limit, want, now))
        return out

    def change_log(self, budget: str) -> list[dict[str, Any]]:
        return list(self.changes.get(budget, ()))

    def periods(self, budget: str) -> list[str]:
        """Period ids with a ledger, oldest first."""
        prefix = f"{budget}|"
        return sorted(k[len(prefix):] for k in self.ledgers if k.startswith(prefix))

    # -- persistence ----------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        """Key -> record changes since the last checkpoint (None deletes the key)."""
        self._sync()
        out: dict[str, Any] = {}
        for key in self._dirty:
            kind, _, rest = key.partition("|")
            if kind == "led":
                led = self.ledgers.get(rest)
                out[key] = None if led is None else {**led, "fired": list(led["fired"]), "at": dict(led.get("at", {}))}
            elif kind == "mark":
                m = self.marks.get(rest)
                out[key] = None if m is None else {"t": m["t"], "w": {w: {s: list(q) for s, q in v.items()}
                                                                      for w, v in m["w"].items()}}
            elif kind == "fc":
                fc = self.forecasters.get(rest)
                out[key] = None if fc is None else fc.to_state()
            elif kind == "spec":
                out[key] = self.seen_specs.get(rest)
            elif kind == "chg":
                out[key] = list(self.changes.get(rest, ()))
            elif kind == "dec":
                dec = self.decided.get(rest)
                out[key] = None if dec is None else dict(dec)
        self._dirty.clear()
        return out

    def restore(self, items: Iterable[tuple[str, Any]]) -> None:
        """Load records from :meth:`checkpoint` (a table's contents), then re-check the
        configured budgets against the restored ``spec|`` records, logging what changed
        while the ledger was down."""
        for key, value in items:
            if value is None:
                continue
            kind, _, rest = key.partition("|")
            if kind == "led":
                self.ledgers[rest] = {**value, "fired": [float(x) for x in value["fired"]],
                                      "at": {str(k): float(v) for k, v in (value.get("at") or {}).items()}}
                self._touched.add(rest)
            elif kind == "mark":
                self.marks[rest] = {"t": int(value["t"]), "w": {w: {s: [int(x) for x in q] for s, q in v.items()}
                                                                for w, v in value["w"].items()}}
                self.clock = max(self.clock, int(value["t"]))
            elif kind == "fc":
                self.forecasters[rest] = BurnForecaster(**self.forecaster_params).load_state(value)
            elif kind == "spec":
                self.seen_specs[rest] = value
            elif kind == "chg":
                self.changes[rest] = list(value)
            elif kind == "dec":
                self.decided[rest] = dict(value)
        self._synced = False
        self._sync()
