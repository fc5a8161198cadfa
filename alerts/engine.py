"""The alert lifecycle: from per-window verdicts to a few notifications per incident.

Pure and deterministic: the only clock is the signals' ``window_end`` (event time), so the
worker, the offline replay and the tests get the same notifications from the same signals.

Like Alertmanager's dedup stage, every notification records *why* it was sent
(``first``, ``worsened``, ``repeat``, ``resolved``); anything else is skipped.

Example: a $3/window series spikes to $90, stays high, then is back to normal for three
windows.

>>> engine = AlertEngine(AlertPolicy())
>>> def window(i, usd, anomalous):
...     return Signal(series="team=ads", labels={"team": "ads"}, window_start=60.0 * i,
...                   window_end=60.0 * (i + 1), observed_usd=usd, expected_usd=3.0,
...                   upper_usd=6.0, score=0.99 if anomalous else 0.1, is_anomaly=anomalous)
>>> [(n.action, n.reason, n.severity, n.excess_usd) for n in engine.observe(window(0, 90.0, True))]
[('trigger', 'first', 'critical', 87.0)]
>>> engine.observe(window(1, 80.0, True))  # still burning, nothing new to say
[]
>>> engine.observe(window(2, 3.0, False)), engine.observe(window(3, 2.5, False))
([], [])
>>> [n.action for n in engine.observe(window(4, 3.1, False))]
['resolve']
>>> engine.state_for("cost_spike:team=ads") is None
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import urlencode

from alerts.model import SEVERITY_RANK, Contributor, Notification, Severity, Signal, Silence


@dataclass(slots=True)
class AlertPolicy:
    """Thresholds of the cost-spike rule. Field names match the YAML ``alerts:`` section.

    Whether a window is worth an alert is the detector's decision (``Signal.is_anomaly``): the
    default detector already weighs statistical surprise against material impact, summed over
    the incident. ``min_excess_usd`` / ``min_excess_pct`` add an optional gate on each
    window's own excess on top of it (0: off).

    Severity comes from the money: the larger of the window's excess and the incident's
    running excess (``Signal.impact_usd``), against ``warning_excess_usd`` and
    ``page_min_excess_usd``; so a slow leak pages once it has cost enough.
    """

    min_excess_usd: float = 0.0
    min_excess_pct: float = 0.0
    page_min_excess_usd: float = 50.0  # at or above: critical
    warning_excess_usd: float = 20.0
    resolve_after_windows: int = 3  # consecutive non-material windows before resolving
    repeat_interval_s: float = 4 * 3600.0
    worsen_factor: float = 1.5  # re-notify when excess reaches this multiple of the last one
    fire_after_windows: int = 1  # consecutive material windows before firing (1: at once)
    page_min_severity: Severity = "critical"  # PagerDuty pages from this severity up
    # Planned events (a known backfill): no alert starts under a matching silence, and a
    # firing one sends nothing but its resolve. Silence objects or their dicts.
    silences: tuple[Silence, ...] = ()

    def __post_init__(self) -> None:
        if self.page_min_severity not in SEVERITY_RANK:
            raise ValueError(f"page_min_severity must be one of {', '.join(SEVERITY_RANK)}, got {self.page_min_severity!r}")
        self.silences = tuple(s if isinstance(s, Silence) else Silence.from_dict(s) for s in self.silences)

    def severity_for(self, excess_usd: float) -> Severity:
        if excess_usd >= self.page_min_excess_usd:
            return "critical"
        if excess_usd >= self.warning_excess_usd:
            return "warning"
        return "info"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlertPolicy:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(slots=True)
class AlertState:
    """Everything the engine remembers about one alert key; JSON-able for a Faust table.

    ``status`` is ``"pending"`` (material windows seen, not yet ``fire_after_windows``) or
    ``"firing"``. A key with no alert has no state at all (``None``), so a table holds only
    the series that are misbehaving right now.
    """

    key: str
    series: str
    labels: dict[str, str]
    status: str = "pending"
    started_at: float = 0.0
    last_window_end: float = -math.inf
    material_windows: int = 0
    normal_windows: int = 0
    back_to_normal_at: float | None = None  # start of the first normal window of the streak
    seq: int = 0  # of the last notification sent
    notifications: int = 0  # sent in this incident
    severity: Severity = "info"
    paged: bool = False
    last_notified_at: float | None = None
    last_notified_excess: float = 0.0
    detector: str = ""
    # The worst window of the incident, for the resolve text.
    worst_observed_usd: float = 0.0
    worst_expected_usd: float = 0.0
    worst_excess_usd: float = 0.0
    worst_window_start: float = 0.0
    worst_window_end: float = 0.0
    worst_top_contributors: list[Contributor] = field(default_factory=list)
    impact_usd: float = 0.0  # the incident's running excess, as the detector last reported it

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["labels"] = dict(self.labels)
        d["worst_top_contributors"] = [dict(c) for c in self.worst_top_contributors]
        # JSON has no infinity; the sentinel only means "no window seen yet".
        if d["last_window_end"] == -math.inf:
            d["last_window_end"] = None
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlertState:
        names = {f.name for f in fields(cls)}
        d = {k: v for k, v in data.items() if k in names}
        if d.get("last_window_end") is None:
            d["last_window_end"] = -math.inf
        d["labels"] = dict(d.get("labels") or {})
        d["worst_top_contributors"] = [dict(c) for c in d.get("worst_top_contributors") or ()]
        return cls(**d)

    def copy(self) -> AlertState:
        return replace(
            self,
            labels=dict(self.labels),
            worst_top_contributors=[dict(c) for c in self.worst_top_contributors],  # type: ignore[misc]
        )


def seq_for(signal: Signal) -> int:
    """The ``seq`` of a notification produced by ``signal``: its window end in milliseconds.

    A key gets at most one notification per window and windows only move forward, so this
    grows per key across incidents, restarts and even a lost state, with nothing stored;
    a delivery log may skip any ``seq`` not above the last one it delivered.
    """
    return round(signal.window_end * 1000)


def excess_of(observed_usd: float, expected_usd: float) -> tuple[float, float | None]:
    """Excess in dollars and percent of the baseline (``None`` when the baseline is zero)."""
    excess = observed_usd - expected_usd
    if expected_usd <= 0.0:
        return excess, None
    return excess, 100.0 * excess / expected_usd


class AlertEngine:
    """Turns :class:`Signal` s into :class:`Notification` s for the ``cost_spike`` rule.

    Two ways to drive it:

    * :meth:`step` is a pure function of ``(state, signal)``; use it when the state lives
      elsewhere (a Faust table keyed by :meth:`key_for`), so a rebalance cannot leave a stale
      copy in memory.
    * :meth:`observe` keeps the states in a dict; :meth:`state_for` / :meth:`load_state`
      export and import them, e.g. to checkpoint into a table and restore after a restart.

    Signals of one key must arrive in window order; a signal whose window ends at or before
    the last one seen for an active alert is ignored (a redelivered message).
    """

    def __init__(
        self,
        policy: AlertPolicy | None = None,
        *,
        rule: str = "cost_spike",
        dashboard_url: str | None = None,
    ) -> None:
        self.policy = policy if policy is not None else AlertPolicy()
        self.rule = rule
        self.dashboard_url = dashboard_url
        self._states: dict[str, AlertState] = {}
        self.skipped: list[str] = []  # why the last observe() held notifications back

    # -- keys and persisted state ------------------------------------------------------------
    def key_for(self, series: str) -> str:
        return f"{self.rule}:{series}"

    def tracks(self, key: str) -> bool:
        """Whether the key has lifecycle state now (pending or firing)."""
        return key in self._states

    def state_for(self, key: str) -> dict[str, Any] | None:
        st = self._states.get(key)
        return st.to_dict() if st is not None else None

    def load_state(self, key: str, data: dict[str, Any] | None) -> None:
        if data is None:
            self._states.pop(key, None)
        else:
            self._states[key] = AlertState.from_dict(data)

    def active(self) -> list[AlertState]:
        """The alerts pending or firing now (copies)."""
        return [s.copy() for s in self._states.values()]

    # -- the lifecycle -----------------------------------------------------------------------
    def silence_for(self, signal: Signal) -> Silence | None:
        """The first silence that matches the signal's series at its window's start."""
        for s in self.policy.silences:
            if s.matches(self.rule, signal.series, signal.labels, signal.window_start):
                return s
        return None

    def observe(self, signal: Signal) -> list[Notification]:
        """Advance the key of ``signal``; ``skipped`` then lists why notifications that the
        lifecycle decided on were not sent (``"silenced"``)."""
        key = self.key_for(signal.series)
        prior = self._states.get(key)
        state, notes = self.step(prior, signal)
        self.skipped = []
        if notes and self.policy.silences and self.silence_for(signal) is not None:
            if prior is None or prior.status != "firing":
                # nothing starts under a silence: forget the incident it would have opened
                self.skipped = ["silenced"] * len(notes)
                self._states.pop(key, None)
                return []
            kept = [n for n in notes if n.action == "resolve"]  # a firing alert still closes
            self.skipped = ["silenced"] * (len(notes) - len(kept))
            notes = kept
        if state is None:
            self._states.pop(key, None)
        else:
            self._states[key] = state
        return notes

    def is_material(self, signal: Signal) -> bool:
        if not signal.is_anomaly:
            return False
        if not (math.isfinite(signal.observed_usd) and math.isfinite(signal.expected_usd)):
            return False  # a broken baseline must not page anyone
        excess, pct = excess_of(signal.observed_usd, signal.expected_usd)
        if excess < self.policy.min_excess_usd:
            return False
        return pct is None or pct >= self.policy.min_excess_pct

    def step(
        self, state: AlertState | None, signal: Signal
    ) -> tuple[AlertState | None, list[Notification]]:
        """Advance one key by one window. Does not modify ``state``; returns the new one."""
        p = self.policy
        material = self.is_material(signal)
        if state is None:
            if not material:
                return None, []
            st = AlertState(
                key=self.key_for(signal.series),
                series=signal.series,
                labels=dict(signal.labels),
                started_at=signal.window_start,
            )
        else:
            if signal.window_end <= state.last_window_end:
                return state, []
            st = state.copy()
        st.last_window_end = signal.window_end
        if signal.detector:
            st.detector = signal.detector

        if not material:
            if st.status == "pending":
                return None, []  # never fired: nothing to resolve
            if st.normal_windows == 0:
                st.back_to_normal_at = signal.window_start
            st.normal_windows += 1
            if st.normal_windows < p.resolve_after_windows:
                return st, []
            return None, [self._resolve(st, signal)]

        excess, _ = excess_of(signal.observed_usd, signal.expected_usd)
        impact = signal.impact_usd if signal.impact_usd is not None else excess
        if impact > st.impact_usd:
            st.impact_usd = impact
        st.normal_windows = 0
        st.back_to_normal_at = None
        st.material_windows += 1
        st.labels = dict(signal.labels)
        if excess > st.worst_excess_usd or st.material_windows == 1:
            st.worst_observed_usd = signal.observed_usd
            st.worst_expected_usd = signal.expected_usd
            st.worst_excess_usd = excess
            st.worst_window_start = signal.window_start
            st.worst_window_end = signal.window_end
            st.worst_top_contributors = [dict(c) for c in signal.top_contributors]  # type: ignore[misc]
        new_sev = p.severity_for(max(excess, st.impact_usd))
        escalated = SEVERITY_RANK[new_sev] > SEVERITY_RANK[st.severity]
        if escalated or st.material_windows == 1:
            # Severity only goes up within an incident: a page is not taken back by a
            # slightly better window.
            st.severity = new_sev

        if st.status == "pending":
            if st.material_windows < p.fire_after_windows:
                return st, []
            st.status = "firing"
            return st, [self._notify(st, signal, "trigger", "first")]

        last_at = st.last_notified_at if st.last_notified_at is not None else st.started_at
        if escalated or excess >= p.worsen_factor * st.last_notified_excess:
            return st, [self._notify(st, signal, "update", "worsened")]
        if signal.window_end - last_at >= p.repeat_interval_s:
            return st, [self._notify(st, signal, "update", "repeat")]
        return st, []

    # -- building notifications --------------------------------------------------------------
    def _link(self, series: str) -> str | None:
        if not self.dashboard_url:
            return None
        sep = "&" if "?" in self.dashboard_url else "?"
        return f"{self.dashboard_url}{sep}{urlencode({'series': series})}"

    def _notify(self, st: AlertState, signal: Signal, action: str, reason: str) -> Notification:
        excess, pct = excess_of(signal.observed_usd, signal.expected_usd)
        st.seq = seq_for(signal)
        st.notifications += 1
        st.last_notified_at = signal.window_end
        st.last_notified_excess = excess
        # Once an incident paged, every later notification goes to PagerDuty too, so that
        # the resolve closes the incident there.
        st.paged = st.paged or SEVERITY_RANK[st.severity] >= SEVERITY_RANK[self.policy.page_min_severity]
        titles = {
            "first": "Cost spike",
            "worsened": "Cost spike worsened",
            "repeat": "Cost spike still firing",
        }
        return Notification(
            key=st.key,
            seq=st.seq,
            action=action,  # type: ignore[arg-type]
            severity=st.severity,
            reason=reason,  # type: ignore[arg-type]
            series=st.series,
            labels=dict(st.labels),
            title=f"{titles[reason]}: {st.series}",
            observed_usd=signal.observed_usd,
            expected_usd=signal.expected_usd,
            excess_usd=excess,
            excess_pct=pct,
            top_contributors=[dict(c) for c in signal.top_contributors],  # type: ignore[misc]
            window_start=signal.window_start,
            window_end=signal.window_end,
            started_at=st.started_at,
            fired_at=signal.window_end,
            page=st.paged,
            dashboard_url=self._link(st.series),
            rule=self.rule,
            detector=st.detector,
            impact_usd=st.impact_usd or None,
            explanation=signal.explanation,
        )

    def _resolve(self, st: AlertState, signal: Signal) -> Notification:
        _, pct = excess_of(st.worst_observed_usd, st.worst_expected_usd)
        return Notification(
            key=st.key,
            seq=seq_for(signal),
            action="resolve",
            severity=st.severity,
            reason="resolved",
            series=st.series,
            labels=dict(st.labels),
            title=f"Resolved: cost spike {st.series}",
            observed_usd=st.worst_observed_usd,
            expected_usd=st.worst_expected_usd,
            excess_usd=st.worst_excess_usd,
            excess_pct=pct,
            top_contributors=[dict(c) for c in st.worst_top_contributors],  # type: ignore[misc]
            window_start=st.worst_window_start,
            window_end=st.worst_window_end,
            started_at=st.started_at,
            fired_at=signal.window_end,
            page=st.paged,
            dashboard_url=self._link(st.series),
            rule=self.rule,
            detector=st.detector,
            ended_at=st.back_to_normal_at if st.back_to_normal_at is not None else signal.window_start,
            impact_usd=st.impact_usd or None,
        )
