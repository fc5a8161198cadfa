"""Turns settings + policy into the stream layer's config, and runs the worker."""

from __future__ import annotations

import os
from typing import Any

from streams.common.config import IngestLimits, StreamConfig
from streams.worker.reload import PolicySource
from tokenpulse.policy import MAX_POLICY_BYTES, Policy, PolicyError, parse_policy
from tokenpulse.quiet import quiet_worker_logs
from tokenpulse.settings import Settings


def stream_config(settings: Settings, policy: Policy, bootstrap: str, partitions: int | None = None) -> StreamConfig:
    return StreamConfig(
        bootstrap=bootstrap,
        app_id=settings.app_id,
        topic_prefix=settings.topic_prefix,
        usage_partitions=partitions or settings.usage_partitions,
        window_seconds=settings.window_seconds,
        lateness=settings.lateness_seconds,
        idle_grace=settings.idle_grace_seconds,
        checkpoint_seconds=settings.checkpoint_seconds,
        session_timeout=settings.kafka_session_timeout_seconds,
        watched=frozenset(policy.watch),
        price_overrides=policy.price_overrides(),
        detector_name=policy.detector.name,
        detector_params=dict(policy.detector.params),
        detector_overrides=tuple(policy.detector.override_list()),
        not_anomaly_step=policy.detector.feedback.not_anomaly_step,
        not_anomaly_max_raise=policy.detector.feedback.max_raise,
        not_anomaly_half_life_days=policy.detector.feedback.floor_half_life_days,
        new_series=policy.detector.new_series_settings(),
        team_scale_minutes=policy.detector.team_scale_minutes,
        team_corroboration_p=policy.detector.team_corroboration_p,
        team_corroboration_strict_p=policy.detector.team_corroboration_strict_p,
        team_week_ratio=policy.detector.team_week_ratio,
        team_week_shift_h=policy.detector.team_week_shift_h,
        shift_week_ratio=policy.detector.shift_week_ratio,
        internal_models=tuple(policy.mix.internal_models),
        mix_alert=policy.mix_alert_spec(),
        alert_policy=policy.alert_policy(),
        budgets=tuple(policy.budget_specs()),
        reports=tuple(policy.report_specs()),
        report_timezone=policy.budget_timezone,
        report_deadline=settings.report_deadline_seconds,
        receivers=settings.receivers(),
        routes=tuple(policy.delivery_routes()),
        web_host=settings.web_host,
        web_port=settings.web_port,
        advertised_url=settings.advertised_url,
        peer_timeout=settings.peer_timeout_seconds,
        judge_stall=settings.judge_stall_seconds,
        data_dir=str(settings.data_dir),
        dashboard_url=settings.dashboard_url,
        kafka_flavor=settings.kafka_flavor,
        security=settings.kafka_security(),
        dlq_max_bytes=settings.dlq_max_bytes,
        api_token=settings.secret("api_token"),
        metrics_token=settings.secret("metrics_token"),
        allow_unauthenticated=settings.allow_unauthenticated,
        dedupe_horizon=settings.dedupe_horizon_seconds,
        spend_hourly_after=settings.spend_hourly_after_seconds,
        spend_daily_after=settings.spend_daily_after_seconds,
        spend_user_hourly_after=settings.spend_user_hourly_after_seconds,
        spend_user_daily_after=settings.spend_user_daily_after_seconds,
        judge_state_every=settings.judge_state_every_windows,
        judge_park=settings.judge_park,
        placement=settings.placement,
        limits=IngestLimits(max_tokens_per_request=policy.limits.max_tokens_per_request,
                            max_cost_usd_per_request=policy.limits.max_cost_usd_per_request,
                            max_tools_per_window=policy.limits.max_tools_per_window),
    )


def policy_source(settings: Settings, bootstrap: str, partitions: int | None = None) -> PolicySource | None:
    """How the worker re-reads its policy file (None: no file, nothing to reload): the file's
    text becomes a config with the settings the worker started with, or a ``ValueError``
    naming the file and the line at fault."""
    if settings.policy is None:
        return None
    path = str(settings.policy)

    def load(raw: bytes) -> StreamConfig:
        try:
            policy = parse_policy(raw, path, receivers=settings.receivers())
        except PolicyError as exc:
            raise ValueError(str(exc)) from None
        return stream_config(settings, policy, bootstrap, partitions)

    return PolicySource(path=path, load=load, interval=settings.policy_reload_seconds, max_bytes=MAX_POLICY_BYTES)


def prepare_topics(settings: Settings, bootstrap: str) -> int:
    """Create the topics if missing; return the usage topic's real partition count.

    First checks that the cluster takes the TLS/SASL settings: a refused password or an
    untrusted certificate is a :class:`~tokenpulse.broker.BrokerError` naming the setting at
    once, not a retry loop. Then checks the placement against the one the deployment's state
    was written with, recorded on the broker: a :class:`~tokenpulse.placement.PlacementError`
    when this worker would switch it only because the default changed."""
    from kafka.admin import KafkaAdminClient

    from streams.worker.tables import changelog_topics
    from tokenpulse.broker import check_access, ensure_topics, topic_names
    from tokenpulse.placement import check_placement, meta_topic

    security = settings.kafka_security()
    check_access(bootstrap, security)
    # before any topic of the placement is made: a worker that must not start with its
    # placement (tokenpulse.placement) leaves the cluster as it found it, but for the record's topic
    ensure_topics(bootstrap, [(meta_topic(settings.app_id), 1)], compacted=[meta_topic(settings.app_id)],
                  security=security)
    check_placement(bootstrap, settings.app_id, settings.placement, settings.placement_explicit, security)
    names = topic_names(settings.topic_prefix)
    ensure_topics(bootstrap, [(names["usage"], settings.usage_partitions)], security=security)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="tokenpulse-admin", **security.kafka_python())
    try:
        desc = admin.describe_topics([names["usage"]])
        n = len(desc[0]["partitions"]) or settings.usage_partitions
    finally:
        admin.close()
    # Every table's changelog, made here rather than by Faust (streams.worker.tables.changelog_topics
    # says why): with Faust's own, the survivor of a SIGKILL restored no org stage (the open
    # incident paged again) or no budget ledger (the org's budget short), test_failover.py
    changelogs = changelog_topics(settings.app_id, settings.placement)
    ensure_topics(
        bootstrap,
        [(names["dlq"], n), (names["windows"], n), (names["outbox"], n), (names["ingest_state"], n),
         (names["decisions"], n), (names["reports"], n), (names["digest"], n),
         (names["feedback"], n)]
        # the org stage's input with TOKENPULSE_PLACEMENT=series (a topic the broker auto-created
        # on the first send would have its default partition count, not the windows topic's)
        + ([(names["verdicts"], n)] if settings.placement == "series" else [])
        + [(name, n) for name in changelogs],
        compacted=[names["ingest_state"], names["decisions"], *changelogs],
        security=security,
    )
    return n


def run_worker(cfg: StreamConfig, loglevel: str = "info", reload: PolicySource | None = None) -> None:
    """Run the Faust worker in this process until SIGINT/SIGTERM; with ``reload``, a changed
    policy file (or SIGHUP) reloads the policy (see ``streams.worker.reload``)."""
    import faust

    from streams.common.text import install_safe_logging
    from streams.worker.app import create_app

    install_safe_logging()  # names and reasons in log lines cannot forge a line or drive the terminal
    os.makedirs(cfg.data_dir, exist_ok=True)
    app = create_app(cfg, reload=reload)
    _install_task_dump()
    # Faust's own logging is chatty at info, and two of its warnings are flow control at work
    # (tokenpulse.quiet); keep ours at the chosen level.
    quiet_worker_logs()
    worker: Any = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


def _install_task_dump() -> None:
    """SIGUSR1 prints the stack of every asyncio task to stderr: what a stuck worker waits on."""
    import asyncio
    import signal
    import sys

    def dump(*_: object) -> None:
        try:
            tasks = asyncio.all_tasks()
        except RuntimeError:
            return
        sys.stderr.write(f"--- {len(tasks)} asyncio tasks ---\n")
        for task in tasks:
            task.print_stack(file=sys.stderr)
        sys.stderr.flush()

    signal.signal(signal.SIGUSR1, dump)
