"""The Faust application factory: topics, tables, agents, timers and web views, and nothing else.

Every decision is made below it: the hot path (:class:`streams.ingest.hotpath.IngestLoop`), the
judge side (:class:`streams.worker.judging.JudgeWorker`: judges, budget ledgers, mix watches,
reports), the delivery side (:class:`streams.worker.delivering.DeliveryWorker`: outbox,
retries, digests), the views (:func:`streams.worker.web.register_views`) and the policy reload
(:mod:`streams.worker.reload`). The agents and timers here only hand each message or tick to
them; :class:`streams.worker.state.WorkerState` holds them all (``app.tokenpulse``).

Topics (all with the usage topic's partition count, so Faust co-assigns partition *i* of the
windows and outbox topics and of the tables' changelogs to the same worker):

- ``<p>.usage``          usage events (one per message, a JSON array, or NDJSON), read by the
                         batched hot-path loop of :mod:`streams.ingest.hotpath`, not by an agent
- ``<p>.usage.dlq``      rejected input: original bytes as the value, reason in headers
- ``<p>.ingest.state``   the hot path's per-partition checkpoints (compacted)
- ``<p>.windows``        closed-window partials + source watermarks -> the ``judge`` agent
- ``<p>.alerts.outbox``  notifications, written before any delivery -> the ``deliver`` agent
- ``<p>.alerts.digest``   notifications for Slack digest channels, keyed and partitioned by
                         channel -> the ``digest`` agent (:mod:`streams.delivery.digests`)
- ``<p>.budget.decisions`` over-budget decisions for gateways (compacted, keyed by budget
                         name; :mod:`streams.budgets.decisions`), written by the judge agent
- ``<p>.reports``        parts of daily/weekly spend reports, from every judge partition to
                         the report's owner (:mod:`streams.reports.reporting`)
- ``<p>.feedback``       on-call's answers to alerts (Slack buttons, :mod:`streams.worker.slack_actions`),
                         keyed by series, on its org's partition (with ``TOKENPULSE_PLACEMENT=series``
                         their detector parts too, on the series' own) -> the ``feedback``
                         agent (:mod:`streams.worker.feedback`); only with the Slack signing secret
- ``<p>.verdicts``       with ``TOKENPULSE_PLACEMENT=series`` only: what each judge partition
                         gives each org (signals, spend rows, watermark), on the org's partition
                         -> the ``org`` agent (:mod:`streams.worker.organizing`)

Policy reload (:mod:`streams.worker.reload`): with a ``PolicySource``, a timer polls the policy
file and SIGHUP reads it again; a valid new policy replaces the budgets, the judges' alert
policy, the deliverer's routes and the mix lines (:meth:`WorkerState.apply_policy`), between two
awaits of the agents.

Exactness: the hot path and the judge both write their state at most once per checkpoint
interval and acknowledge input only once that state is written, so a crash replays the
unacknowledged input onto the last checkpoint (see :mod:`streams.ingest.hotpath`); producer
duplicates are dropped by ``event_id`` and redelivered window messages by their seq.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
import time
from collections.abc import Callable
from typing import Any, cast

import faust
import orjson

from streams.common.config import StreamConfig
from streams.common.metrics import Metrics
from streams.common.partitioning import judge_partition
from streams.ingest.hotpath import IngestLoop
from streams.ingest.pricing import Pricer
from streams.reports.reporting import Reporting
from streams.worker.access import Access, access_middleware, exposure_error
from streams.worker.delivering import DeliveryWorker
from streams.worker.feedback import FeedbackWorker
from streams.worker.inbox import DevInbox, register_inbox, register_inbox_press
from streams.worker.judging import JudgeWorker
from streams.worker.organizing import OrgWorker
from streams.worker.pagerduty_webhook import (
    PageAnswer,
    PagerDutyVerifier,
    forward_to_peers,
    page_event,
    register_pagerduty_webhook,
)
from streams.worker.peers import Peers, advertised_url, group_layout
from streams.worker.reload import PolicyReloader, PolicySource
from streams.worker.rewind import install_rewind
from streams.worker.settle import SettleWatch, faust_settling
from streams.worker.slack_actions import SlackVerifier, register_slack_actions
from streams.worker.state import WorkerState
from streams.worker.tables import Tables, owned_partitions, persist, table_names
from streams.worker.web import register_views

log = logging.getLogger("tokenpulse.worker")

RAW: dict[str, Any] = {"value_serializer": "raw", "key_serializer": "raw"}


class WorkerApp(faust.App):
    """The Faust app with the worker's state beside it: ``app.tokenpulse``, what the views,
    tests and benchmarks read."""

    tokenpulse: WorkerState


def create_app(cfg: StreamConfig, reload: PolicySource | None = None) -> WorkerApp:
    """Build the worker app. Nothing connects until the app is started.

    ``reload``: where the policy came from and how to build a config from a new version of it;
    the worker then polls the file every ``reload.interval`` seconds and reloads on SIGHUP
    (:mod:`streams.worker.reload`). None: the policy is fixed for the worker's life."""
    topics, n = cfg.topics, cfg.usage_partitions
    why = exposure_error(cfg.web_host, cfg.api_token, cfg.allow_unauthenticated)
    if why is not None:
        raise ValueError(why)
    metrics = Metrics()
    app = WorkerApp(cfg.app_id, **faust_settings(cfg, metrics))
    windows = app.topic(topics["windows"], partitions=n, **RAW)
    outbox = app.topic(topics["outbox"], partitions=n, **RAW)
    decisions = app.topic(topics["decisions"], partitions=n, compacting=True, **RAW)
    digest_topic = app.topic(topics["digest"], partitions=n, **RAW)
    # reports: a topic, a table and an agent only when the policy schedules some
    reports_topic = app.topic(topics["reports"], partitions=n, **RAW) if cfg.reports else None
    tables = Tables(**{name: app.Table(name, default=None, partitions=n) for name in table_names(bool(cfg.reports))})
    # the org stage apart from the judges (TOKENPULSE_PLACEMENT=series): its topic (None: beside them)
    verdicts_topic, send_verdicts = _verdicts_topic(app, cfg)

    pricer = Pricer(cfg.price_overrides)
    judging = JudgeWorker(cfg, metrics, tables, owned=lambda: owned_partitions(app, topics["windows"]),
                          send_outbox=lambda k, v, p: outbox.send(key=k, value=v, partition=p),
                          send_decision=lambda k, v: decisions.send(key=k, value=v),
                          send_verdicts=send_verdicts)
    reporting = judging.reporting = Reporting(
        cfg, metrics, judging.judges, judging.ledgers, table=tables.reports, persist=persist,
        send_note=lambda k, v, p: outbox.send(key=k, value=v, partition=p),
        send_part=None if reports_topic is None else lambda k, v, p: reports_topic.send(key=k, value=v, partition=p))
    delivery = DeliveryWorker(cfg, metrics, tables, owned=lambda topic: owned_partitions(app, topic),
                              send_digest=lambda k, v, p: digest_topic.send(key=k, value=v, partition=p, force=True),
                              settling=lambda: bool(getattr(app, "rebalancing", False) or getattr(app, "in_recovery", False)))
    state = app.tokenpulse = WorkerState(cfg, metrics, pricer, IngestLoop(cfg, pricer), judging, delivery, reporting,
                                         tables)
    state.peers = Peers(advertised_url(cfg.web_host, cfg.web_port, cfg.advertised_url), n,
                        owned=lambda: owned_partitions(app, topics["windows"]),
                        layout=group_layout(app, topics["windows"]), timeout=cfg.peer_timeout,
                        api_token=cfg.api_token)
    state.settle = SettleWatch(cfg.judge_stall, faust_settling(app))
    app.timer(interval=5.0)(_settle_poll(state))
    _own_routes(app, cfg, state)
    if reload is not None:
        state.reloader = PolicyReloader(reload, cfg, state.apply_policy, metrics)
        state.reloader.check()  # takes note of the file the worker was started with
        if reload.interval > 0:
            app.timer(interval=reload.interval)(_policy_poll(state.reloader))

    @app.agent(windows, name="judge")
    async def judge(stream: Any) -> None:
        s = stream.noack()
        judging.ack = s.ack
        async for event in s.events():
            await judging.receive(event.message.partition, orjson.loads(event.value), event)

    _org_stage(app, cfg, state, verdicts_topic)

    @app.agent(outbox, name="deliver")
    async def deliver(stream: Any) -> None:
        async for event in stream.events():
            await delivery.deliver(event.message.partition, orjson.loads(event.value))

    @app.agent(digest_topic, name="digest")
    async def digest(stream: Any) -> None:
        async for event in stream.events():
            await delivery.collect(event.message.partition, orjson.loads(event.value))

    if reports_topic is not None:
        @app.agent(reports_topic, name="reports")
        async def merge_reports(stream: Any) -> None:
            async for event in stream.events():
                await reporting.merge_part(event.message.partition, orjson.loads(event.value))

    app.timer(interval=min(1.0, cfg.checkpoint_seconds), name="judge_tick")(judging.tick)
    app.timer(interval=delivery.retry_interval, name="deliver_retry")(delivery.retry)
    app.timer(interval=delivery.digester.interval, name="digest_tick")(delivery.post_digests)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # Faust calls it (app, revoked, signal=...)
    async def on_revoked(app_: Any, revoked: Any, **kwargs: Any) -> None:
        judging.revoke(tp.partition for tp in revoked if tp.topic == topics["windows"])

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # Faust calls it (app, assigned, signal=...)
    async def on_assigned(app_: Any, assigned: Any, **kwargs: Any) -> None:
        judging.assigned(tp.partition for tp in assigned if tp.topic == topics["windows"])

    _rewind_on_rebalance(app, windows, verdicts_topic)
    _drain_on_revoke(app, delivery, topics["outbox"])

    app.service(_services(state))
    app.task(_on_started(state))
    register_views(app, state)
    return app


def _verdicts_topic(app: WorkerApp, cfg: StreamConfig) -> tuple[Any, Any]:
    """The verdicts topic and a send to it, with ``TOKENPULSE_PLACEMENT=series``; (None, None)
    with the org stage beside each judge."""
    if cfg.placement != "series":
        return None, None
    topic = app.topic(cfg.topics["verdicts"], partitions=cfg.usage_partitions, **RAW)
    return topic, lambda k, v, p: topic.send(key=k, value=v, partition=p)


def _org_stage(app: WorkerApp, cfg: StreamConfig, state: WorkerState, verdicts_topic: Any) -> None:
    """The org stage apart from the judges (``TOKENPULSE_PLACEMENT=series``): the ``org`` agent
    on the verdicts topic, its table, checkpoint timer and revoke (:mod:`streams.worker.organizing`).
    Nothing without a verdicts topic (the org stage beside each judge)."""
    if verdicts_topic is None:
        return
    n = cfg.usage_partitions
    organizing = state.organizing = OrgWorker(cfg, state.metrics, app.Table("org", default=None, partitions=n),
                                              state.judging)
    fb = state.feedback
    if fb is not None:  # on-call's answers: the alert part on the org stage (streams.worker.feedback)
        fb.organizing = organizing
        organizing.on_org = lambda o: fb.install(o.engine)  # snoozes survive a restart

    @app.agent(verdicts_topic, name="org")
    async def org_stage(stream: Any) -> None:
        s = stream.noack()
        organizing.ack = s.ack
        async for event in s.events():
            await organizing.receive(event.message.partition, orjson.loads(event.value), event)

    app.timer(interval=min(1.0, cfg.checkpoint_seconds), name="org_tick")(organizing.tick)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # Faust calls it (app, revoked, signal=...)
    async def on_org_revoked(app_: Any, revoked: Any, **kwargs: Any) -> None:
        organizing.revoke(tp.partition for tp in revoked if tp.topic == cfg.topics["verdicts"])

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # Faust calls it (app, assigned, signal=...)
    async def on_org_assigned(app_: Any, assigned: Any, **kwargs: Any) -> None:
        organizing.assigned(tp.partition for tp in assigned if tp.topic == cfg.topics["verdicts"])


def _drain_on_revoke(app: WorkerApp, delivery: DeliveryWorker, outbox: str) -> None:
    """Faust does not wait for the agents on a revoke (``stream_wait_empty=False``, which the
    judge's held acknowledgements need): the deliveries in flight finish, and their entries
    reach the deliveries changelog, before the group rebalances, so that the outbox partition's
    next owner finds them sent (:meth:`DeliveryWorker.drain`)."""

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # Faust calls it (app, revoked, signal=...)
    async def on_outbox_revoked(app_: Any, revoked: Any, **kwargs: Any) -> None:
        if any(tp.topic == outbox for tp in revoked):
            await delivery.drain()


def _rewind_on_rebalance(app: WorkerApp, *of: Any) -> None:
    """Faust reads records it dropped during a rebalance again only by seeking to the committed
    offset, and aiokafka does not seek where there is none: without this, a partition of the
    topics ``of`` (None: left out) never committed skipped them (:mod:`streams.worker.rewind`:
    each of Faust's seeks to the committed offsets seeks those to their beginning)."""
    topics = {t.get_topic_name() for t in of if t is not None}

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]  # Faust sends it after table recovery, before perform_seek
    async def on_rebalance_complete(app_: Any, **kwargs: Any) -> None:
        # Faust's Recovery.on_recovery_completed resumes the stream partitions and awaits its seek
        # to the committed offsets with the flow still running from the changelog reading, then
        # resumes the flow again, which clears the agents' queues: the records fetched meanwhile
        # were dropped, the fetch position already past them, and a partition given to this
        # worker with a backlog stalled after one record until the next rebalance (seen on the
        # outbox: tests/integration/test_rebalance_delivery.py). Stopped here, the consumer
        # yields nothing until that last resume (what it fetches meanwhile it seeks back to the
        # committed offset, or to the beginning: install_rewind), so nothing is queued to be cleared.
        app.consumer.stop_flow()
        install_rewind(app, topics)


def faust_settings(cfg: StreamConfig, metrics: Metrics | None = None) -> dict[str, Any]:
    """The Faust app's settings (benchmarks/throughput.py's Faust floor uses the same); the web
    server's middleware guards every path (:mod:`streams.worker.access`)."""
    tansu = cfg.kafka_flavor == "tansu"
    access = Access(api_token=cfg.api_token, metrics_token=cfg.metrics_token)
    denied = None if metrics is None else (lambda kind: metrics.inc("http_unauthorized_total", labels={"path": kind}))
    return dict(
        web_application_options={"middlewares": [access_middleware(access, denied)]},
        broker=[f"kafka://{h}" for h in cfg.bootstrap.split(",")],
        store="memory://",
        datadir=cfg.data_dir,
        web_enabled=True,
        web_bind=cfg.web_host,
        web_host=cfg.web_host,
        web_port=cfg.web_port,
        # announced to the group in the member metadata: the address peers fan out to (streams.worker.peers)
        canonical_url=advertised_url(cfg.web_host, cfg.web_port, cfg.advertised_url),
        web_in_thread=False,
        topic_partitions=cfg.usage_partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=cfg.session_timeout,
        broker_heartbeat_interval=cfg.heartbeat_interval,
        broker_commit_interval=1.0,
        stream_wait_empty=False,
        table_standby_replicas=0,
        # Tansu 0.6 answers ListOffsets(latest) with the last batch's base offset + 1, which
        # breaks table recovery unless every changelog record is its own batch.
        producer_max_batch_size=1 if tansu else 16384,
        producer_linger_ms=0 if tansu else 1,
        worker_redirect_stdouts=False,
        autodiscover=False,
        broker_credentials=faust_credentials(cfg),
    )


def faust_credentials(cfg: StreamConfig) -> Any:
    """TLS/SASL for Faust's own clients (agents, tables, its topic creation): the same
    settings as the hot path's (``cfg.security``), in Faust's spelling. None: PLAINTEXT."""
    sec = cfg.security
    if sec.sasl:
        return faust.SASLCredentials(username=sec.username, password=sec.password.reveal() if sec.password else None,
                                     mechanism=sec.mechanism, ssl_context=sec.ssl_context())
    if sec.tls:
        return faust.SSLCredentials(sec.ssl_context())
    return None


def _settle_poll(state: WorkerState) -> Callable[[], Any]:
    """Every 5 s: how long the judge has been settling (a gauge), and one error line when it has
    gone ``judge_stall`` seconds without reading a changelog record (``/healthz`` answers 503)."""
    watch = state.settle

    async def poll() -> None:
        now = time.monotonic()
        watch.poll(now)
        state.metrics.set("judge_settling_seconds", round(watch.settling_for(now), 1))
        if watch.stalled(now) and not watch.reported:
            watch.reported = True
            log.error("the judge has been rebalancing or recovering its tables for %.0f s without reading a "
                      "changelog record (TOKENPULSE_JUDGE_STALL_SECONDS=%g): /healthz answers 503 so that a "
                      "liveness probe restarts this worker", watch.stalled_for(now), watch.limit)

    return poll


def _own_routes(app: WorkerApp, cfg: StreamConfig, state: WorkerState) -> None:
    """The routes that are not JSON views on Faust's web driver: the dev inbox standing in for
    Slack and PagerDuty, Slack's interactivity endpoint and PagerDuty's webhook."""
    web_app = cast(Any, app.web).web_app  # the aiohttp application of Faust's web driver
    if cfg.dev_inbox is not None:
        state.inbox = DevInbox(cfg.dev_inbox)
        register_inbox(web_app, state.inbox)
    slack_secret, pd_secret = cfg.slack_signing_secret, cfg.pagerduty_webhook_secret
    if slack_secret is None and pd_secret is None:
        return
    send = _feedback(app, cfg, state)
    if slack_secret is not None:
        handle = register_slack_actions(web_app, SlackVerifier(slack_secret), lambda p: send(p.to_event()),
                                        state.metrics)
        if state.inbox is not None and hmac.compare_digest(slack_secret.encode(),
                                                           cfg.dev_inbox.signing_secret.encode()):
            # Slack is the stand-in (tokenpulse dev): its buttons are pressed in the dashboard
            register_inbox_press(web_app, state.inbox, handle)
    if pd_secret is not None:
        tables = state.tables

        def on_answer(answer: PageAnswer) -> bool:
            event = page_event(answer, list(tables.alerts.data.items()), tables.deliveries.data)
            if event is not None:
                send(event)
            return event is not None

        register_pagerduty_webhook(web_app, PagerDutyVerifier(pd_secret), on_answer, state.metrics,
                                   forward=forward_to_peers(lambda: state.peers))


def _feedback(app: WorkerApp, cfg: StreamConfig, state: WorkerState) -> Callable[[dict[str, Any]], None]:
    """On-call's answers: Slack's ``POST /slack/actions`` (:mod:`streams.worker.slack_actions`)
    and PagerDuty's ``POST /pagerduty/webhook`` (:mod:`streams.worker.pagerduty_webhook`) put
    each verified answer on ``<p>.feedback`` (the function returned), on the partition of its
    series' org (which judges the series with ``TOKENPULSE_PLACEMENT=org``; with ``series`` the
    org stage holds the alert there, and the answer's detector part is sent on to the series'
    own judge partition); the ``feedback`` agent applies it there
    (:class:`streams.worker.feedback.FeedbackWorker`), once: the ``feedback`` table keeps the ids
    applied."""
    n = cfg.usage_partitions
    feedback_topic = app.topic(cfg.topics["feedback"], partitions=n, **RAW)
    table = app.Table("feedback", default=None, partitions=n)
    # the org stage apart (TOKENPULSE_PLACEMENT=series: _org_stage sets ``organizing``): an answer's
    # detector part goes on to the series' own judge partition
    fb = state.feedback = FeedbackWorker(
        state.metrics, table, state.judging, state.delivery.deliverer,
        forward=lambda q, k, v: feedback_topic.send(key=k, value=v, partition=q))
    state.judging.on_judge = lambda j: fb.install(j.engine)  # snoozes survive a restart
    pending: set[asyncio.Task[Any]] = set()  # sends in flight (a task nobody holds may be collected)

    def send(event: dict[str, Any]) -> None:
        # Slack wants its answer within 3 s (PagerDuty within a few): the answer goes to the topic after it
        series = str(event["series"])
        task = asyncio.get_running_loop().create_task(feedback_topic.send(
            key=series.encode(), value=orjson.dumps(event), partition=judge_partition(series, n)))
        pending.add(task)
        task.add_done_callback(lambda t: _sent(t, pending, state.metrics, event))

    @app.agent(feedback_topic, name="feedback")
    async def feedback(stream: Any) -> None:
        async for event in stream.events():
            try:
                body = orjson.loads(event.value)
            except orjson.JSONDecodeError:
                log.warning("feedback record at offset %s is not JSON: skipped", event.message.offset)
                continue
            await fb.apply(event.message.partition, body)

    return send


def _sent(task: asyncio.Task[Any], pending: set[asyncio.Task[Any]], metrics: Metrics, event: dict[str, Any]) -> None:
    # the sender has had its 200: an answer the topic did not take is logged and counted, not lost quietly
    pending.discard(task)
    exc = None if task.cancelled() else task.exception()
    if task.cancelled() or exc is not None:
        metrics.inc("feedback_total", labels={"action": str(event.get("action")), "outcome": "not_sent"})
        log.error("the answer %s on %s by %s did not reach the feedback topic: %r", event.get("action"),
                  event.get("key"), event.get("user"), exc or "cancelled")


def _policy_poll(reloader: PolicyReloader) -> Any:
    async def policy_poll() -> None:
        reloader.check()

    return policy_poll


def _on_started(state: WorkerState) -> Any:
    async def on_started() -> None:
        reloader = state.reloader
        if reloader is not None:
            # SIGHUP: read the policy again now, as Prometheus does (also an unchanged file)
            try:
                asyncio.get_running_loop().add_signal_handler(
                    signal.SIGHUP, lambda: reloader.check(force=True, trigger="sighup"))
            except (NotImplementedError, RuntimeError, ValueError):  # no signals here (not the main thread)
                log.warning("SIGHUP does not reload the policy in this process; the file is still polled")
        log.info("tokenpulse worker running; API on http://%s:%s", state.cfg.web_host, state.cfg.web_port)

    return on_started


def _services(state: WorkerState) -> type[faust.Service]:
    """The worker's own service: the hot path's loop (it reads the usage topic, not an agent),
    and closing the receivers' connections at the end."""

    class WorkerService(faust.Service):
        async def on_start(self) -> None:
            await state.ingest.start()

        @faust.Service.task
        async def _run(self) -> None:
            await state.ingest.run()

        async def on_stop(self) -> None:
            await state.ingest.stop()
            await state.delivery.close()
            if state.peers is not None:
                await state.peers.close()

    return WorkerService
