"""The alert lifecycle: from per-window verdicts to a few notifications per incident.

Pure and deterministic: the only clock is the signals' ``window_end`` (event time), so the
worker, the offline replay and the tests get the same notifications from the same signals.

Like Alertmanager's dedup stage, every notification records *why* it was sent
(``first``, ``worsened``, ``repeat``, ``resolved``), and :attr:`AlertEngine.skipped` why the
lifecycle's decisions that did not go out as notifications of their own were held back
(``silenced``, ``inhibited``, ``grouped``).

A window is judged in one step (:meth:`AlertEngine.observe_window`), as a pipeline of small
stages like Alertmanager's: the lifecycle of each series (:meth:`AlertEngine.step`), then
silences, then inhibition (while the ``org`` alert fires, no alert of another series starts),
then grouping (the alerts of one team become one notification). The ``org`` series is
stepped first, so its decision is known before its teams'.

Example: a $3/window series spikes to $90, stays high, then is back to normal for three
windows; its team's group sends the resolve ``group_keep_firing_s`` (1800) seconds later, as
windows (or a window's end without signals) carry event time past it.

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
>>> engine.observe(window(4, 3.1, False))  # resolved; the team's group holds its resolve (flap damping)
[]
>>> engine.state_for("cost_spike:team=ads") is None
True
>>> [n.action for n in engine.observe_window([], at=300.0 + 1800)]  # 30 minutes on, no re-fire
['resolve']
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import urlencode

from alerts.model import SEVERITY_RANK, Action, Contributor, Reason, Severity, Signal, Silence, SpikeNotification

ORG_SERIES = "org"
"""The series of all spend of the default org: its alert inhibits the org's others (see
:meth:`AlertEngine.observe_window`). Another org's is ``org=<name>``, and its series' keys
start with ``org=<name>|`` (``streams.common.dimensions``)."""


def org_series_of(series: str) -> str:
    """The org series whose alert inhibits ``series`` (itself, for an org series).

    >>> org_series_of("team=ads"), org_series_of("org"), org_series_of("org=acme|team=ads"), org_series_of("org=acme")
    ('org', 'org', 'org=acme', 'org=acme')
    """
    if series.startswith("org="):
        return series.partition("|")[0]
    return ORG_SERIES


def is_org_series(series: str) -> bool:
    """Whether ``series`` is the series of all of an org's spend (``org``, ``org=acme``)."""
    return series == ORG_SERIES or (series.startswith("org=") and "|" not in series)
GROUP_LABELS = ("team", "model", "provider", "user", "org")
"""What ``group_by`` may name: series labels."""


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
    resolve_after_windows: int = 3  # clearly normal windows, no material one between, before resolving
    # Hysteresis (a lower bar to resolve than to fire): once an alert has fired, a window the
    # detector no longer flags counts towards its resolve only when its excess over the series'
    # baseline (Signal.baseline_usd: the mean spend its expected value stands for) is under this
    # percent of it. A window above it (a spike still at 2x, scoring just under
    # the threshold) neither resolves nor re-fires: the streak of normal windows waits. 0: off.
    resolve_max_excess_pct: float = 50.0
    # The cap on that hold: past this many seconds after the alert's last material window, a
    # window the detector does not flag counts towards the resolve whatever its excess (the old
    # rule). Spend that settled at a new level is not held open for good: the detector's new
    # normal (Combined.new_normal_after) adopts a permanent step within hours and its expected
    # catches up anyway; this bounds the rest (a level the detector stopped flagging, learnt
    # slowly). A loop that keeps burning stays flagged, so material: the cap never touches it.
    resolve_max_hold_s: float = 3600.0
    repeat_interval_s: float = 4 * 3600.0
    worsen_factor: float = 1.5  # re-notify when excess reaches this multiple of the last one
    fire_after_windows: int = 1  # consecutive material windows before firing (1: at once)
    page_min_severity: Severity = "critical"  # PagerDuty pages from this severity up
    # Planned events (a known backfill): no alert starts under a matching silence, and a
    # firing one sends nothing but its resolve. Silence objects or their dicts.
    silences: tuple[Silence, ...] = ()
    # Grouping (Alertmanager's group_by / group_wait / group_interval; event-time seconds):
    # the alerts of series that share these labels' values are one notification. A series
    # without all of them (org, provider=...) is a group of its own. (): no grouping.
    group_by: tuple[str, ...] = ("team",)
    group_wait_s: float = 0.0  # a new group's first notification waits this long for members
    group_interval_s: float = 300.0  # members joining a notified group are announced at most this often
    # Flap damping (Prometheus' keep_firing_for, at the group): a notified group whose members
    # have all resolved sends its resolve only after this many seconds without a new trigger; a
    # member that fires again meanwhile continues the incident (an update under the group's key,
    # no new first notification, no second page). Default 1800 (docs/detection-log.md, "Flap
    # damping"); 0: the group resolves with its last member. On-call's answers that end the
    # incident (:meth:`AlertEngine.resolve_now`) resolve at once.
    group_keep_firing_s: float = 1800.0
    # While the org's alert fires, no alert of another series starts (it is its symptom).
    inhibit_by_org: bool = True

    def __post_init__(self) -> None:
        if self.page_min_severity not in SEVERITY_RANK:
            raise ValueError(f"page_min_severity must be one of {', '.join(SEVERITY_RANK)}, got {self.page_min_severity!r}")
        self.group_by = tuple(self.group_by)
        bad = sorted(set(self.group_by) - set(GROUP_LABELS))
        if bad:
            raise ValueError(f"group_by must be some of {', '.join(GROUP_LABELS)}; got {bad}")
        if not (self.resolve_max_excess_pct >= 0 and self.resolve_max_hold_s >= 0):
            raise ValueError(f"resolve_max_excess_pct and resolve_max_hold_s must be >= 0, got "
                             f"{self.resolve_max_excess_pct!r}, {self.resolve_max_hold_s!r}")
        if not (self.group_wait_s >= 0 and self.group_interval_s >= 0 and self.group_keep_firing_s >= 0):
            raise ValueError(f"group_wait_s, group_interval_s and group_keep_firing_s must be >= 0, got "
                             f"{self.group_wait_s!r}, {self.group_interval_s!r}, {self.group_keep_firing_s!r}")
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
    # End of the last material window: hysteresis holds the alert at most resolve_max_hold_s
    # after it (None, a state written before the field: no hold -- the old rule).
    last_material_end: float | None = None
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
    # On-call acknowledged it (a Slack button): no more repeat or worsened updates, only a
    # higher severity (a page is never held back) and the resolve.
    acknowledged_by: str = ""
    acknowledged_at: float | None = None

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
            worst_top_contributors=[c.copy() for c in self.worst_top_contributors],
        )


@dataclass(slots=True)
class GroupState:
    """One group of alerts (a team's) as its notifications see it; JSON-able for a table.

    ``key`` is the delivery key of the group's notifications (the PagerDuty ``dedup_key``,
    the Slack thread): the key of its leader, the broadest series firing when the group was
    first notified (``team=ads`` before ``team=ads|model=x``). A group of one therefore
    notifies exactly as its alert alone would. ``members`` holds each member's latest
    decided notification (a dict, with ``status`` ``firing`` or ``resolved``); ``unsent``
    the members whose first trigger the group has not announced yet. ``status``:
    ``waiting`` (``group_wait`` running, nothing sent) or ``notified``. A group exists from
    its first member's trigger until its last member resolves.
    """

    gid: str
    created_at: float  # window end of the first member's trigger
    started_at: float  # the group's incident start (constant: it names the Slack thread)
    status: str = "waiting"
    key: str = ""
    series: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    severity: Severity = "info"
    paged: bool = False
    last_sent_at: float | None = None
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    unsent: list[str] = field(default_factory=list)
    # When its last firing member resolved, while ``group_keep_firing_s`` holds its resolve
    # (None: a member is firing, or the group was written before flap damping).
    quiet_since: float | None = None

    def firing(self) -> list[dict[str, Any]]:
        """Firing members, broadest series first."""
        return sorted((m for m in self.members.values() if m["status"] == "firing"), key=_breadth)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["labels"] = dict(self.labels)
        d["members"] = {k: dict(v) for k, v in self.members.items()}
        d["unsent"] = list(self.unsent)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroupState:
        names = {f.name for f in fields(cls)}
        d = {k: v for k, v in data.items() if k in names}
        d["labels"] = dict(d.get("labels") or {})
        d["members"] = {str(k): dict(v) for k, v in (d.get("members") or {}).items()}
        d["unsent"] = [str(x) for x in d.get("unsent") or ()]
        return cls(**d)


def _breadth(m: dict[str, Any]) -> tuple[int, str]:
    # the broadest series first: team=ads before team=ads|model=x
    return len(m.get("labels") or ()), str(m.get("series", ""))


def member_record(n: SpikeNotification, status: str) -> dict[str, Any]:
    """What a group notification lists of one member (see ``SpikeNotification.members``)."""
    return {
        "series": n.series,
        "labels": dict(n.labels),
        "status": status,
        "severity": n.severity,
        "observed_usd": n.observed_usd,
        "expected_usd": n.expected_usd,
        "excess_usd": n.excess_usd,
        "excess_pct": n.excess_pct,
        "impact_usd": n.impact_usd,
        "started_at": n.started_at,
        "window_start": n.window_start,
        "window_end": n.window_end,
    }


def seq_for(signal: Signal) -> int:
    """The ``seq`` of a notification produced by ``signal``: its window end in milliseconds.

    A key gets at most one notification per window and windows only move forward, so this
    grows per key across incidents, restarts and even a lost state, with nothing stored;
    a delivery log may skip any ``seq`` not above the last one it delivered.
    """
    return round(signal.window_end * 1000)


def dashboard_link(dashboard_url: str | None, series: str) -> str | None:
    """The dashboard showing ``series``: ``dashboard_url`` with ``?series=…`` (None without a
    dashboard).

    >>> dashboard_link("https://tp.example/dashboard", "team=ads|model=x")
    'https://tp.example/dashboard?series=team%3Dads%7Cmodel%3Dx'
    """
    if not dashboard_url:
        return None
    sep = "&" if "?" in dashboard_url else "?"
    return f"{dashboard_url}{sep}{urlencode({'series': series})}"


def excess_of(observed_usd: float, expected_usd: float) -> tuple[float, float | None]:
    """Excess in dollars and percent of the baseline (``None`` when the baseline is zero)."""
    excess = observed_usd - expected_usd
    if expected_usd <= 0.0:
        return excess, None
    return excess, 100.0 * excess / expected_usd


def clearly_normal(policy: AlertPolicy, observed_usd: float, baseline_usd: float, held_for_s: float = 0.0) -> bool:
    """Whether a window the detector did not flag counts towards resolving a fired alert: its
    excess over ``baseline_usd`` is under ``policy.resolve_max_excess_pct`` of it (hysteresis),
    or the alert's last material window ended ``held_for_s`` ago, at or past
    ``policy.resolve_max_hold_s`` (the cap: a level that stays, unflagged, is not held open for
    good). Use it where a fired alert's windows must be followed without the engine at hand (a
    judge apart from the org stage keeps sending a series' windows while they hold its alert open).

    ``baseline_usd`` is the spend the detector counts an excess over when it decides to alert
    (:attr:`Signal.baseline_usd`: the mean spend its expected value stands for, where it tells
    them apart). Not the expected value itself: the models' expected value is a typical,
    log-scale value, on a young series an average of hours it has seen, and a series' normal
    windows can sit 50 % and more above it window after window (the org series in its sixth hour,
    on a morning ramp: ~100 %), which held every alert of such a series open to the cap.

    A window without a usable baseline (zero or not finite) counts: with nothing to measure the
    excess against, holding would keep the alert open for as long as the series spends (a new
    series' alert)."""
    bar = policy.resolve_max_excess_pct
    if bar <= 0.0 or held_for_s >= policy.resolve_max_hold_s:
        return True
    if not (math.isfinite(observed_usd) and math.isfinite(baseline_usd)):
        return True
    _, pct = excess_of(observed_usd, baseline_usd)
    return pct is None or pct < bar


class AlertEngine:
    """Turns :class:`Signal` s into :class:`SpikeNotification` s for the ``cost_spike`` rule.

    Drive it one window at a time with :meth:`observe_window` (every signal of the window of
    one org: the judge of the org's partition does that), which runs the lifecycle of each
    series and then silences, inhibition and grouping. :meth:`observe` is a window with one
    signal. :meth:`state_for` / :meth:`load_state` (per alert key) and
    :meth:`group_state_for` / :meth:`load_group_state` (per group) export and import the state,
    e.g. to checkpoint into a table and restore after a restart; :meth:`step` alone is the
    pure lifecycle of one key, ``(state, signal) -> (state, notifications)``.

    Signals of one key must arrive in window order; a signal whose window ends at or before
    the last one seen for an active alert is ignored (a redelivered message).

    Inhibition (Alertmanager's ``inhibit_rules``, source: the ``org`` alert firing; targets:
    every other series of the org). While it fires, no alert of another series starts: its
    trigger is skipped as ``inhibited`` and the incident is not kept (as under a silence), and
    the org's notification of that window lists the alerts it inhibited (``members``). An
    alert that was already firing when the org alert started keeps its incident: its updates
    are muted (``inhibited``), its resolve still goes out, and once the org alert has resolved
    it is updated again as usual. A series still burning after the org alert resolved starts
    a new incident then.

    Grouping (``group_by``, default ``team``): the decisions of one window for the series of
    one group become one notification under the group's key, listing the members with their
    numbers (:class:`GroupState`). ``group_wait_s`` delays a new group's first notification
    (0: the window it starts in); members that start after it are announced in one update at
    most every ``group_interval_s``, except that a member raising the group's severity is
    announced at once (a page is never held back); a member's worsened or repeat update is
    sent at once, as without grouping; a member's resolve is folded into the group, which
    resolves when its last member has. A group of one notifies exactly as its alert alone.
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
        self._groups: dict[str, GroupState] = {}
        self.skipped: list[str] = []  # why the last observe held decided notifications back
        self.changed_groups: set[str] = set()  # groups whose state the last observe changed
        # The triggers the org alert kept from starting in the last observe, the first of each
        # run of consecutive windows only (what an analyst credits the team with: the replay
        # writes them as firings). Not persisted: a restart may list a run again.
        self.inhibited: list[SpikeNotification] = []
        self._inhibited_until: dict[str, float] = {}  # series -> end of its last inhibited window

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

    def group_of(self, labels: dict[str, str]) -> str | None:
        """The group of a series with ``labels`` (``team=ads``), or None: a group of its own.
        Another org's series carry ``org`` in their labels, and their groups name it, so two
        orgs' teams of one name are two groups.

        >>> e = AlertEngine()
        >>> e.group_of({"team": "ads"}), e.group_of({"org": "acme", "team": "ads"}), e.group_of({"org": "acme"})
        ('team=ads', 'org=acme|team=ads', None)
        """
        by = self.policy.group_by
        if not by or not all(k in labels for k in by):
            return None
        gid = "|".join(f"{k}={labels[k]}" for k in by)
        org = labels.get("org")
        if org is not None and "org" not in by:
            gid = f"org={org}|{gid}"
        return gid

    def group_state_for(self, gid: str) -> dict[str, Any] | None:
        g = self._groups.get(gid)
        return g.to_dict() if g is not None else None

    def load_group_state(self, gid: str, data: dict[str, Any] | None) -> None:
        if data is None:
            self._groups.pop(gid, None)
        else:
            self._groups[gid] = GroupState.from_dict(data)

    # -- on-call's answers (Slack buttons) ---------------------------------------------------
    def answered(self, key: str, started_at: float | None = None) -> list[AlertState]:
        """The alerts firing now that an answer to the notification ``key`` speaks for: the
        members of the group that ``key`` leads (its notifications carry the leader's key), or
        the alert of ``key`` itself; none when that incident is over (``started_at``: the
        incident the answered message was posted for, when known)."""
        keys = [key]
        for g in self._groups.values():
            if g.key == key:
                keys = [self.key_for(s) for s, m in g.members.items() if m.get("status") == "firing"]
                if started_at is not None and g.started_at != started_at:
                    return []
                started_at = None  # the members started at their own times
                break
        out = []
        for k in keys:
            st = self._states.get(k)
            if st is None or st.status != "firing":
                continue
            if started_at is not None and st.started_at != started_at:
                continue  # an earlier incident of the same key was answered
            out.append(st)
        return out

    def acknowledge(self, key: str, by: str, at: float, started_at: float | None = None) -> list[str]:
        """On-call acknowledged the alert ``key``: its repeat and worsened updates stop (not a
        higher severity, nor the resolve). Returns the keys acknowledged (none: nothing fires)."""
        done = []
        for st in self.answered(key, started_at):
            if st.acknowledged_at is None:
                st.acknowledged_by, st.acknowledged_at = by, at
            done.append(st.key)
        return done

    def resolve_now(self, key: str, at: float, started_at: float | None = None,
                    why: str = "") -> list[SpikeNotification]:
        """Resolve the alert ``key`` (and the members of the group it leads) now, at event time
        ``at`` or the end of its last window if later: on-call answered "expected, new normal".
        Returns what to send: the resolve, or the group's notification, saying ``why`` (who
        answered: the root message rewritten on resolve keeps it). ``changed_groups`` says
        which groups' state changed.

        The answer ends the incident: the group's resolve is not held by flap damping
        (``group_keep_firing_s``), and a group whose resolve is being held when the answer
        comes (every member back to normal, the hold running) resolves now too."""
        self.skipped = []
        self.changed_groups = set()
        decided = []
        firing = self.answered(key, started_at)
        # the group(s) the answer ends: the one ``key`` leads (firing, or holding its resolve)
        release = {gid for gid, g in self._groups.items()
                   if g.key == key and g.status == "notified" and (started_at is None or g.started_at == started_at)}
        # event time: the latest window judged for them (a wall clock ahead of the windows would
        # give the resolve a seq that later notifications of the key could not pass)
        at = max([at, *(st.last_window_end for st in firing),
                  *(q for gid in release if (q := self._groups[gid].quiet_since) is not None)])
        for st in firing:
            del self._states[st.key]
            end = at
            signal = Signal(series=st.series, labels=dict(st.labels), window_start=end, window_end=end,
                            observed_usd=0.0, expected_usd=0.0)
            st.back_to_normal_at = at
            n = self._resolve(st, signal)
            n.seq = max(n.seq, st.seq + 1)  # after everything sent for the key: never taken for a redelivery
            n.explanation = why
            decided.append(n)
        if not (decided or release):
            return []
        out = self._group(decided, at, release)
        for n in out:
            if n.key == key and n.action == "resolve":
                n.explanation = why  # also a held group's, whose members resolved before the answer
        return out

    # -- the lifecycle -----------------------------------------------------------------------
    def silence_for(self, signal: Signal) -> Silence | None:
        """The first silence that matches the signal's series at its window's start."""
        for s in self.policy.silences:
            if s.matches(self.rule, signal.series, signal.labels, signal.window_start):
                return s
        return None

    def observe(self, signal: Signal) -> list[SpikeNotification]:
        """One window holding one signal (:meth:`observe_window`)."""
        return self.observe_window([signal])

    def observe_window(self, signals: Iterable[Signal], at: float | None = None) -> list[SpikeNotification]:
        """Advance every key of one window's ``signals`` (one org's) and return what to send.

        ``at`` is the window's end (event time); it drives ``group_wait`` / ``group_interval``
        also in a window without signals (default: the signals' latest end). Afterwards
        ``skipped`` lists why decisions were not sent as notifications of their own
        (``silenced``, ``inhibited``, ``grouped``) and ``changed_groups`` which groups' state
        changed. The ``org`` series goes first, so its alert's state is known before its teams'.

        >>> def sig(series, labels, usd):
        ...     return Signal(series=series, labels=labels, window_start=0.0, window_end=60.0,
        ...                   observed_usd=usd, expected_usd=3.0, is_anomaly=usd > 6.0)
        >>> ads, ads_x = sig("team=ads", {"team": "ads"}, 90.0), sig("team=ads|model=x", {"team": "ads", "model": "x"}, 80.0)
        >>> [(n.key, [m["series"] for m in n.members]) for n in AlertEngine().observe_window([ads_x, ads])]
        [('cost_spike:team=ads', ['team=ads', 'team=ads|model=x'])]
        >>> engine = AlertEngine()
        >>> [(n.key, [m["status"] for m in n.members]) for n in engine.observe_window([ads, sig("org", {"org": "acme"}, 200.0)])]
        [('cost_spike:org', ['inhibited'])]
        >>> engine.skipped
        ['inhibited']
        """
        sigs = sorted(signals, key=lambda sg: (not is_org_series(sg.series), sg.series))
        self.skipped = []
        self.changed_groups = set()
        self.inhibited = []
        if at is None:
            if not sigs:
                return []
            at = max(sg.window_end for sg in sigs)
        decided: list[SpikeNotification] = []
        # per org series: the alerts its firing alert inhibited in this window
        inhibited: dict[str, list[dict[str, Any]]] = {}
        for sg in sigs:
            org = org_series_of(sg.series)
            inhibiting = self.policy.inhibit_by_org and sg.series != org and self._org_firing(org)
            decided.extend(self._advance(sg, inhibiting, inhibited.setdefault(org, [])))
        if self._inhibited_until:
            # an org alert that is over: so are the runs it inhibited (another org's go on)
            for series in [s for s in self._inhibited_until if not self._org_firing(org_series_of(s))]:
                del self._inhibited_until[series]
        if any(inhibited.values()):
            for n in decided:
                members = inhibited.get(n.series)
                if members and n.action != "resolve":
                    n.members = sorted(members, key=_breadth)  # which teams drive it
        return self._group(decided, at)

    def _org_firing(self, org: str = ORG_SERIES) -> bool:
        st = self._states.get(self.key_for(org))
        return st is not None and st.status == "firing"

    def _advance(self, signal: Signal, inhibiting: bool, inhibited: list[dict[str, Any]]) -> list[SpikeNotification]:
        """The lifecycle of one key, then its silence and inhibition stages."""
        key = self.key_for(signal.series)
        prior = self._states.get(key)
        state, notes = self.step(prior, signal)
        held = None
        if notes:
            if self.policy.silences and self.silence_for(signal) is not None:
                held = "silenced"
            elif inhibiting:
                held = "inhibited"
        if held is not None:
            kept = [n for n in notes if n.action == "resolve"]  # a firing alert still closes
            self.skipped += [held] * (len(notes) - len(kept))
            if held == "inhibited":
                inhibited += [member_record(n, "inhibited") for n in notes if n.action != "resolve"]
                for n in notes:
                    if n.action == "trigger":
                        if self._inhibited_until.get(n.series) != signal.window_start:
                            self.inhibited.append(n)
                        self._inhibited_until[n.series] = signal.window_end
            if prior is None or prior.status != "firing":
                # nothing starts under a silence or an inhibition: forget the incident it
                # would have opened
                self._states.pop(key, None)
                return []
            notes = kept
        if state is None:
            self._states.pop(key, None)
        else:
            self._states[key] = state
        return notes

    # -- grouping ----------------------------------------------------------------------------
    def _group(self, decided: list[SpikeNotification], at: float,
               release: set[str] | frozenset[str] = frozenset()) -> list[SpikeNotification]:
        """Fold ``decided`` into their groups and run every group's timers at ``at``; the
        groups in ``release`` resolve without flap damping's hold (an answer ended them)."""
        out: list[SpikeNotification] = []
        by_gid: dict[str, list[SpikeNotification]] = {}
        for n in decided:
            gid = self.group_of(n.labels)
            if gid is None:
                out.append(n)
            else:
                by_gid.setdefault(gid, []).append(n)
        if by_gid or self._groups:
            for gid in sorted(set(by_gid) | set(self._groups)):
                out.extend(self._group_step(gid, by_gid.get(gid, []), at, gid in release))
        return out

    def _group_step(  # noqa: C901 - the group's lifecycle (wait, interval, resolve) as one sequence, as in Alertmanager
            self, gid: str, notes: list[SpikeNotification], at: float, release: bool = False) -> list[SpikeNotification]:
        p = self.policy
        g = self._groups.get(gid)
        # Only a trigger makes a member. An alert firing since before grouping (or another
        # group_by) is in no group: its updates and resolve go out under its own key, as before.
        out = [n for n in notes if n.action != "trigger" and (g is None or n.series not in g.members)]
        if out:
            notes = [n for n in notes if n.action == "trigger" or (g is not None and n.series in g.members)]
        if g is None:
            if not notes:
                return out
            g = self._groups[gid] = GroupState(gid=gid, created_at=at, started_at=min(n.started_at for n in notes))
        elif not notes and not release and not (
            (g.status == "waiting" and at - g.created_at >= p.group_wait_s)
            or (g.unsent and g.last_sent_at is not None and at - g.last_sent_at >= p.group_interval_s)
            or (g.quiet_since is not None and at - g.quiet_since >= p.group_keep_firing_s)
        ):
            return out  # nothing new, no timer due
        self.changed_groups.add(gid)
        urgent, worse = False, False
        for n in notes:
            g.members[n.series] = {**n.to_dict(), "status": "resolved" if n.action == "resolve" else "firing"}
            if n.action == "trigger":
                if n.series not in g.unsent:
                    g.unsent.append(n.series)
            elif n.action == "resolve":
                if n.series in g.unsent:
                    g.unsent.remove(n.series)
            else:  # a member's worsened or repeat update: sent at once, as without grouping
                urgent = True
                worse = worse or n.reason == "worsened"
        firing = g.firing()
        if g.status == "waiting":
            if not firing:  # every member back to normal before anything was sent
                del self._groups[gid]
                self.skipped += ["grouped"] * len(notes)
                return out
            if at - g.created_at < p.group_wait_s:
                self.skipped += ["grouped"] * len(notes)
                return out
            note = self._group_note(g, "trigger", "first", at)
        elif not firing:
            if g.quiet_since is None:
                g.quiet_since = at
            if at - g.quiet_since < p.group_keep_firing_s and not release:  # flap damping: the resolve waits
                self.skipped += ["grouped"] * len(notes)
                return out
            note = self._group_note(g, "resolve", "resolved", at)
            del self._groups[gid]
        else:
            g.quiet_since = None
            escalated = max(SEVERITY_RANK[m["severity"]] for m in firing) > SEVERITY_RANK[g.severity]
            joined = bool(g.unsent) and (g.last_sent_at is None or at - g.last_sent_at >= p.group_interval_s)
            if not (urgent or escalated or joined):
                self.skipped += ["grouped"] * len(notes)
                return out
            reason: Reason = "worsened" if (escalated or joined or worse) else "repeat"
            note = self._group_note(g, "update", reason, at)
        if note.members:
            self.skipped += ["grouped"] * len(notes)
        out.append(note)
        return out

    def _group_note(self, g: GroupState, action: Action, reason: Reason, at: float) -> SpikeNotification:
        """The group's notification at ``at``, and the group's bookkeeping for having sent it.

        Its numbers are its leader's (else the worst member's); for a group of one, it is
        the member's own notification."""
        firing = g.firing()
        if not g.key:  # the first notification: the broadest series firing leads
            lead = firing[0]
            g.key, g.series, g.labels = str(lead["key"]), str(lead["series"]), dict(lead["labels"])
        head = g.members.get(g.series)
        pool = firing if action != "resolve" else list(g.members.values())
        if head is None or head not in pool:
            head = max(pool, key=lambda m: (float(m["excess_usd"]), _breadth(m)))
        for m in firing:
            if SEVERITY_RANK[m["severity"]] > SEVERITY_RANK[g.severity]:
                g.severity = m["severity"]
        g.paged = g.paged or any(bool(m.get("page")) for m in firing) or (
            SEVERITY_RANK[g.severity] >= SEVERITY_RANK[self.policy.page_min_severity])
        # after everything sent under the group's key: an answer's resolve in the window of the
        # group's last notification would otherwise repeat its seq, and be taken for a redelivery
        seq = round(at * 1000) if g.last_sent_at is None else max(round(at * 1000), round(g.last_sent_at * 1000) + 1)
        g.status, g.last_sent_at, g.unsent = "notified", at, []
        n = SpikeNotification.from_dict(head)
        many = len(g.members) > 1
        n.key, n.seq, n.action, n.reason = g.key, seq, action, reason
        n.severity, n.page, n.started_at, n.fired_at = g.severity, g.paged, g.started_at, at
        n.series, n.labels = g.series, dict(g.labels)
        if action == "resolve":
            ends = [float(m["ended_at"]) for m in g.members.values() if m.get("ended_at") is not None]
            n.ended_at = max(ends) if ends else at
        if many:
            n.members = [member_record(SpikeNotification.from_dict(m), str(m["status"]))
                         for m in sorted(g.members.values(), key=_breadth)]
            n.dashboard_url = self._link(g.series)
            others = len(g.members) - 1
            titles = {"first": "Cost spike", "worsened": "Cost spike worsened", "repeat": "Cost spike still firing",
                      "resolved": "Resolved: cost spike"}
            n.title = f"{titles[reason]}: {g.series} (+{others} more series)"
        return n

    def is_material(self, signal: Signal) -> bool:
        if not signal.is_anomaly:
            return False
        if not (math.isfinite(signal.observed_usd) and math.isfinite(signal.expected_usd)):
            return False  # a broken baseline must not page anyone
        excess, pct = excess_of(signal.observed_usd, signal.expected_usd)
        if excess < self.policy.min_excess_usd:
            return False
        return pct is None or pct >= self.policy.min_excess_pct

    def clearly_normal(self, state: AlertState, signal: Signal) -> bool:
        """Whether a non-material window counts towards resolving a fired alert (hysteresis,
        ``AlertPolicy.resolve_max_excess_pct``, capped by ``resolve_max_hold_s``)."""
        last = state.last_material_end
        held_for = math.inf if last is None else signal.window_end - last
        return clearly_normal(self.policy, signal.observed_usd, signal.baseline_usd, held_for)

    def step(  # noqa: C901 - one alert's state machine, every transition in one place
        self, state: AlertState | None, signal: Signal
    ) -> tuple[AlertState | None, list[SpikeNotification]]:
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
            if not self.clearly_normal(st, signal):
                return st, []  # between: neither a normal window nor a material one
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
        st.last_material_end = signal.window_end
        st.material_windows += 1
        st.labels = dict(signal.labels)
        if excess > st.worst_excess_usd or st.material_windows == 1:
            st.worst_observed_usd = signal.observed_usd
            st.worst_expected_usd = signal.expected_usd
            st.worst_excess_usd = excess
            st.worst_window_start = signal.window_start
            st.worst_window_end = signal.window_end
            st.worst_top_contributors = [c.copy() for c in signal.top_contributors]
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

        if st.acknowledged_at is not None and not escalated:
            return st, []  # acknowledged: on-call knows; only a higher severity is news
        last_at = st.last_notified_at if st.last_notified_at is not None else st.started_at
        # worse: more than the last notified excess, by the factor (a notification sent at $0 of
        # excess would otherwise make every later window "worsened")
        worse = excess > st.last_notified_excess and excess >= p.worsen_factor * st.last_notified_excess
        if escalated or worse:
            return st, [self._notify(st, signal, "update", "worsened")]
        if signal.window_end - last_at >= p.repeat_interval_s:
            return st, [self._notify(st, signal, "update", "repeat")]
        return st, []

    # -- building notifications --------------------------------------------------------------
    def _link(self, series: str) -> str | None:
        return dashboard_link(self.dashboard_url, series)

    def _notify(self, st: AlertState, signal: Signal, action: Action, reason: Reason) -> SpikeNotification:
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
        return SpikeNotification(
            key=st.key,
            seq=st.seq,
            action=action,
            severity=st.severity,
            reason=reason,
            series=st.series,
            labels=dict(st.labels),
            title=f"{titles[reason]}: {st.series}",
            observed_usd=signal.observed_usd,
            expected_usd=signal.expected_usd,
            excess_usd=excess,
            excess_pct=pct,
            top_contributors=[c.copy() for c in signal.top_contributors],
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

    def _resolve(self, st: AlertState, signal: Signal) -> SpikeNotification:
        _, pct = excess_of(st.worst_observed_usd, st.worst_expected_usd)
        return SpikeNotification(
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
            top_contributors=[c.copy() for c in st.worst_top_contributors],
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
