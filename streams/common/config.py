"""What the stream layer needs to know, handed down by the entry point.

A plain dataclass on purpose: ``streams`` does not import the CLI/settings package (which sits
on top of it), so the entry point translates its settings and policy into this.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from alerts.receivers import ReceiverConfig
from alerts.routing import Route
from streams.common.dimensions import DEFAULT_WATCHED
from streams.common.security import PLAINTEXT, KafkaSecurity


@dataclass(frozen=True, slots=True)
class IngestLimits:
    """The most one usage event (one request) may carry: an event over either bound is
    implausible (a unit mistake, a uint overflow, a hostile producer) and is dead-lettered,
    never added to spend. The policy's ``limits`` section; a setting of the ingest.

    ``max_tools_per_window`` bounds spend records rather than events: the distinct ``tool``
    names one window of one usage partition keeps; the spend of further ones is counted under
    the tool ``(other)`` (:data:`streams.common.dimensions.OTHER_TOOL`), so made-up tool names
    cannot grow memory without bound."""

    max_tokens_per_request: int = 10_000_000  # input + output tokens; far above any context window
    max_cost_usd_per_request: float = 500.0  # the producer's cost_usd or the computed one
    max_tools_per_window: int = 50  # distinct tools per window of a partition; the rest are "(other)"


DLQ_MAX_BYTES = 256 * 1024


@dataclass(frozen=True)
class StreamConfig:
    bootstrap: str
    app_id: str = "tokenpulse"
    topic_prefix: str = "tokenpulse"
    usage_partitions: int = 4
    window_seconds: int = 60
    lateness: float = 10.0
    idle_grace: float = 10.0
    checkpoint_seconds: float = 1.0
    # consumer-group session timeout of the worker's consumers (Faust's and the hot path's):
    # how long after a worker dies its partitions move (TOKENPULSE_KAFKA_SESSION_TIMEOUT_SECONDS)
    session_timeout: float = 6.0
    watched: frozenset[str] = DEFAULT_WATCHED  # names of streams.common.dimensions.DIMENSIONS
    price_overrides: dict[str, dict[str, float]] = field(default_factory=dict)
    detector_name: str = "default"
    detector_params: dict[str, Any] = field(default_factory=dict)  # as written in the policy
    # (match labels, params) per override, in policy order
    detector_overrides: tuple[tuple[dict[str, str], dict[str, Any]], ...] = ()
    # on-call's "not an anomaly" (policy detector.feedback; streams.judge.raising): the series'
    # alert floor becomes this many times the answered incident's excess, at most max_raise
    # times the first answered one's (0: answers raise nothing)
    not_anomaly_step: float = 1.5
    not_anomaly_max_raise: float = 4.0
    # ... and without another answer the raised floor halves every this many days (0: never)
    not_anomaly_half_life_days: float = 14.0
    # the org stage's new-series rule (policy detector.new_series; streams.org.newseries): its
    # NewSeriesSettings' fields, None: off (also when team×model is not watched)
    new_series: dict[str, Any] | None = None
    # the org stage's team-scale gate (policy detector.team_scale_minutes; OrgCore.team_scale):
    # a team×model series' flag needs its incident's excess to reach this many minutes of its
    # team's expected spend (0: off)
    team_scale_minutes: float = 0.0
    # the org stage's team corroboration (policy detector.team_corroboration_p;
    # OrgCore.corroborate): a team×model series' flag starts an alert only when its team
    # series' surprise p in the window is at most this (0: off)
    team_corroboration_p: float = 0.0
    # ... and where the org stage has a week-ago reference of the team's spend (the new-series
    # rule's hourly sums), a p above the strict one corroborates only while the team's last hour
    # is at least team_week_ratio x the same hour a week before (policy
    # detector.team_corroboration_strict_p, detector.team_week_ratio; OrgCore.corroborate; 0: off)
    team_corroboration_strict_p: float = 0.0
    team_week_ratio: float = 0.0
    team_week_shift_h: int = 0  # ... or that hour and this many either side (detector.team_week_shift_h)
    # the week-ago check of a sustained shift (detector.shift_week_ratio; OrgCore.confirm_shift; 0: off)
    shift_week_ratio: float = 0.0
    internal_models: tuple[str, ...] = ()  # patterns of the organisation's own models (/api/mix)
    mix_alert: Any = None  # streams.budgets.mix.MixAlertSpec: the third-party share alert, None: off
    alert_policy: dict[str, Any] = field(default_factory=dict)
    budgets: tuple[Any, ...] = ()  # streams.budgets.ledger.BudgetSpec, every budget of the policy
    reports: tuple[Any, ...] = ()  # streams.reports.core.ReportSpec, every report of the policy
    report_timezone: str = "UTC"  # the policy's budget_timezone: /api/report's default
    # how long (event time past the due time, and as long on the wall clock) a report's owner waits
    # for every partition's part before it sends the report with what came (TOKENPULSE_REPORT_DEADLINE_SECONDS)
    report_deadline: float = 600.0
    # every receiver that is on, by name (settings: fixed for the life of the worker)
    receivers: Mapping[str, ReceiverConfig] = field(default_factory=dict)
    # where notifications go (policy: routes, teams.<t>.slack_channel, subscriptions)
    routes: tuple[Route, ...] = ()
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    # where peers reach this worker's API (TOKENPULSE_ADVERTISED_URL; None: from web_host and web_port,
    # streams.worker.peers.advertised_url), and how long a request waits for them (TOKENPULSE_PEER_TIMEOUT_SECONDS)
    advertised_url: str | None = None
    peer_timeout: float = 2.0
    # how long the judge may settle (rebalance, recover tables) without progress before /healthz
    # says it is stalled (TOKENPULSE_JUDGE_STALL_SECONDS; 0: never; streams.worker.settle)
    judge_stall: float = 300.0
    data_dir: str = ".tokenpulse"
    dashboard_url: str | None = None
    kafka_flavor: str = "kafka"  # "tansu" turns on workarounds for Tansu 0.6
    security: KafkaSecurity = PLAINTEXT  # TLS/SASL of every Kafka client (TOKENPULSE_KAFKA_SECURITY_PROTOCOL, ...)
    limits: IngestLimits = IngestLimits()
    dlq_max_bytes: int = DLQ_MAX_BYTES  # a dead-lettered message's bytes are cut to this
    # who may read the API (streams.worker.access): secrets, kept out of repr
    api_token: str | None = field(default=None, repr=False)
    metrics_token: str | None = field(default=None, repr=False)
    allow_unauthenticated: bool = False  # serve a non-loopback web_host with no token
    # streams.worker.inbox.DevInboxSpec: the dev inbox stands in for Slack and PagerDuty
    dev_inbox: Any = field(default=None, repr=False)
    dedupe_horizon: float = 7200.0  # event-time seconds a closed window's event ids are kept (a late retry counts once)
    # event-time seconds after which spend is kept by the hour, then by the day (0: never; streams.reports.retention)
    spend_hourly_after: int = 48 * 3600
    spend_daily_after: int = 35 * 86400
    # the same for users' series (user=…): shorter, what the per-user views read (streams.reports.retention)
    spend_user_hourly_after: int = 24 * 3600
    spend_user_daily_after: int = 7 * 86400
    # a series' detector state is written with one window in this many (and with every window
    # flagged or of an alert): what a crash can lose of its learning (JudgeCore.state_every)
    judge_state_every: int = 10
    # idle series parked: their empty windows applied when they next spend, their detector held
    # as its packed checkpoint record meanwhile (JudgeCore.park)
    judge_park: bool = True
    # where a series is judged (TOKENPULSE_PLACEMENT): "series", on the partition its own name
    # hashes to, the org stage fed over the verdicts topic (streams.common.partitioning,
    # streams.worker.organizing); "org", on its org's partition with the org stage beside the judge
    placement: str = "series"

    @property
    def heartbeat_interval(self) -> float:
        """Heartbeats a third of the session or more often (Kafka's rule), at most every second:
        the survivor of a dead worker hears of the rebalance at its next heartbeat."""
        return min(1.0, self.session_timeout / 3)

    @property
    def topics(self) -> dict[str, str]:
        p = self.topic_prefix
        return {
            "usage": f"{p}.usage",
            "dlq": f"{p}.usage.dlq",
            "windows": f"{p}.windows",
            "outbox": f"{p}.alerts.outbox",
            "ingest_state": f"{p}.ingest.state",
            "decisions": f"{p}.budget.decisions",
            "reports": f"{p}.reports",
            "digest": f"{p}.alerts.digest",
            "feedback": f"{p}.feedback",
            "verdicts": f"{p}.verdicts",
        }

    @property
    def slack_signing_secret(self) -> str | None:
        """The Slack receiver's signing secret (``TOKENPULSE_SLACK_SIGNING_SECRET``): with it,
        alerts carry answer buttons and the worker serves ``POST /slack/actions``."""
        slack = self.receivers.get("slack")
        secret = getattr(slack, "signing_secret", None)
        return None if secret is None else str(secret.get_secret_value()) or None

    @property
    def pagerduty_webhook_secret(self) -> str | None:
        """The PagerDuty webhook subscription's secret (``TOKENPULSE_PAGERDUTY_WEBHOOK_SECRET``):
        with it, the worker serves ``POST /pagerduty/webhook``."""
        secret = getattr(self.receivers.get("pagerduty"), "webhook_secret", None)
        return None if secret is None else str(secret.get_secret_value()) or None
