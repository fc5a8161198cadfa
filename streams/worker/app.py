"""The Faust application factory: topics, tables, agents, timers and web views.

Thin glue only: every decision is made by the pure cores (``streams.ingest.normalize``,
``streams.ingest.pricing``, ``streams.ingest.windows``, ``streams.judge.core``, ``detectors``, ``alerts``).

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

Budgets: the judge agent feeds each partition's :class:`streams.budgets.ledger.BudgetLedger` the spend
it judged, writes its threshold and forecast events to the outbox like cost spikes, and
persists the ledger (table ``budgets``) in the judge's checkpoint step. Budgets with
``on_exhausted`` get their block/downgrade/allow decisions on the decisions topic, sent like
the outbox records: before the checkpoint that records them.

Model mix alert (policy ``mix.max_third_party_share``): each judge partition's
:class:`streams.budgets.mix.MixWatch` counts the team×model spend it judged (kept in the ``budgets``
table too, under ``mix*`` keys); the share is read across the watches of the partitions that
judge series (:func:`streams.common.partitioning.judging_partitions`: the org's), by the worker that
holds them. Its notification goes to the outbox on the team's owner partition
(:func:`streams.budgets.mix.mix_owner`).

Policy reload (:mod:`streams.worker.reload`): with a ``PolicySource``, a timer polls the policy file and
SIGHUP reads it again; a valid new policy replaces the budgets (each ledger's ``configure``), the
judges' alert policy, the deliverer's routes and the mix lines, between two awaits of the
agents; judges and ledgers made later (a rebalance) read the config in force (``live``).

Exactness: the hot path and the judge both write their state at most once per checkpoint
interval and acknowledge input only once that state is written, so a crash replays the
unacknowledged input onto the last checkpoint (see :mod:`streams.ingest.hotpath`); producer
duplicates are dropped by ``event_id`` and redelivered window messages by their seq.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import defaultdict
from typing import Any

import faust
import orjson

from alerts import AlertPolicy, dashboard_link
from streams.budgets.ledger import BudgetLedger, budgets_for_partition
from streams.common.config import StreamConfig
from streams.delivery.outbox import Deliverer, pending_keys
from streams.delivery.digests import Digester
from streams.ingest.hotpath import IngestLoop
from streams.common.partitioning import judge_partition, judging_partitions
from streams.ingest.windows import Partial
from streams.judge.core import JudgeCore, judge_factory
from streams.common.metrics import Metrics
from streams.budgets.mix import MixWatch, mix_crossings, mix_notification, mix_owner
from streams.ingest.pricing import Pricer
from streams.worker.reload import PolicyReloader, PolicySource, apply_reload
from streams.reports.reporting import Reporting
from streams.worker.web import register_digest_view, register_report_view, register_views

log = logging.getLogger("tokenpulse.worker")


def create_app(cfg: StreamConfig, reload: PolicySource | None = None) -> faust.App:
    """Build the worker app. Nothing connects until the app is started.

    ``reload``: where the policy came from and how to build a config from a new version of it;
    the worker then polls the file every ``reload.interval`` seconds and reloads on SIGHUP
    (:mod:`streams.worker.reload`). None: the policy is fixed for the worker's life."""
    topics = cfg.topics
    # The config in force: a policy reload replaces its reloadable sections (budgets, alert
    # policy, routes, mix lines); everything else is what the worker started with.
    live = {"cfg": cfg}
    n = cfg.usage_partitions
    app = faust.App(
        cfg.app_id,
        broker=[f"kafka://{h}" for h in cfg.bootstrap.split(",")],
        store="memory://",
        datadir=cfg.data_dir,
        web_enabled=True,
        web_bind=cfg.web_host,
        web_host=cfg.web_host,
        web_port=cfg.web_port,
        web_in_thread=False,
        topic_partitions=n,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0,
        stream_wait_empty=False,
        table_standby_replicas=0,
        # Tansu 0.6 answers ListOffsets(latest) with the last batch's base offset + 1, which
        # breaks table recovery unless every changelog record is its own batch.
        producer_max_batch_size=1 if cfg.kafka_flavor == "tansu" else 16384,
        producer_linger_ms=0 if cfg.kafka_flavor == "tansu" else 1,
        worker_redirect_stdouts=False,
        autodiscover=False,
    )
    windows = app.topic(topics["windows"], value_serializer="raw", key_serializer="raw", partitions=n)
    outbox = app.topic(topics["outbox"], value_serializer="raw", key_serializer="raw", partitions=n)
    decisions_topic = app.topic(topics["decisions"], value_serializer="raw", key_serializer="raw", partitions=n,
                                compacting=True)

    def table(name: str) -> Any:
        return app.Table(name, default=None, partitions=n)

    judge_t = table("judge")
    spend_t = table("spend")
    alerts_t = table("alerts")
    deliveries_t = table("deliveries")
    budgets_t = table("budgets")  # the budget ledgers' state, keyed like the judge table

    metrics = Metrics()
    pricer = Pricer(cfg.price_overrides)
    new_judge = judge_factory(
        cfg.window_seconds, cfg.detector_name, cfg.detector_params, cfg.alert_policy,
        dashboard_url=cfg.dashboard_url, overrides=cfg.detector_overrides,
    )

    def persist(tbl: Any, partition: int, key: str, value: Any) -> None:
        # Explicit partition: checkpoints also run from timers, outside stream iteration.
        if value is None:
            tbl.data.pop(key, None)
        else:
            tbl.data[key] = value
        tbl.send_changelog(partition, key, value)

    # ---------------------------------------------------------------- ingest ----------
    # The hot topic is read by a batched aiokafka loop (see streams.ingest.hotpath), not an agent.
    ingest = IngestLoop(cfg, pricer)

    @app.service
    class IngestService(faust.Service):  # type: ignore[misc]
        async def on_start(self) -> None:
            await ingest.start()

        @faust.Service.task
        async def _run(self) -> None:
            await ingest.run()

        async def on_stop(self) -> None:
            await ingest.stop()

    @app.on_partitions_revoked.connect
    async def on_revoked(app_: Any, revoked: Any, **kwargs: Any) -> None:
        for tp in revoked:
            if tp.topic == topics["windows"]:
                judges.pop(tp.partition, None)
                ledgers.pop(tp.partition, None)
                mixes.pop(tp.partition, None)
                judge_held.pop(tp.partition, None)

    # ---------------------------------------------------------------- judge -----------
    judges: dict[int, JudgeCore] = {}
    # One budget ledger per judge partition, holding the budgets whose series it judges.
    ledgers: dict[int, BudgetLedger] = {}
    # The mix alert's per-partition counts and fired marks (absent: the alert is off; a reload
    # changes its lines only, never whether it is on).
    mixes: dict[int, MixWatch] = {}
    mix_on = cfg.mix_alert is not None

    def mix_for(p: int) -> MixWatch:
        m = mixes.get(p)
        if m is None:
            m = mixes[p] = MixWatch(live["cfg"].mix_alert)
            prefix = f"{p}|"
            m.restore((k[len(prefix):], v) for k, v in list(budgets_t.data.items()) if k.startswith(prefix))
        return m

    def mix_due(wm: float) -> list[tuple[int, Any]]:
        """The mix notifications due at ``wm``, with the partition each goes out on."""
        owned = _owned_partitions(app, topics["windows"])
        needed = judging_partitions(n)
        if owned is None or not needed <= owned:
            return []  # another worker judges the series; it evaluates the share
        watches = {p: mix_for(p) for p in needed}
        out = []
        for ev in mix_crossings(watches, n, wm, wall=time.time()):
            metrics.inc("mix_alerts_total", labels={"state": "past" if ev.past else "notified"})
            if not ev.past:
                out.append((mix_owner(ev.team, n), mix_notification(ev, live["cfg"].mix_alert, wm)))
        return out

    def judge_for(q: int) -> JudgeCore:
        j = judges.get(q)
        if j is None:
            j = new_judge(q)
            owns = j.owns = lambda series, q=q: judge_partition(series, n) == q
            if live["cfg"] is not cfg:  # the alert policy of the last reload
                j.engine.policy = AlertPolicy(**live["cfg"].alert_policy)
            prefix = f"{q}|"
            j.restore(
                ((k[len(prefix):], v) for k, v in list(judge_t.data.items()) if k.startswith(prefix)),
                ((k, v) for k, v in list(spend_t.data.items()) if owns(k.rpartition("|")[0])),
            )
            led = BudgetLedger(cfg.window_seconds, budgets_for_partition(live["cfg"].budgets, q, n))
            # before the first apply: the fired thresholds and counted seqs come back with it
            led.restore((k[len(prefix):], v) for k, v in list(budgets_t.data.items()) if k.startswith(prefix))
            ledgers[q] = led
            if mix_on:
                mix_for(q)
            judges[q] = j
        return j

    judge_held: dict[int, list[Any]] = defaultdict(list)
    judge_last: dict[int, float] = defaultdict(float)
    judge_stream: dict[str, Any] = {}

    async def judge_checkpoint(q: int, now: float) -> None:
        """Persist what changed on judge partition q, then ack the messages it covers.

        Like ingest: state is written at most once per ``checkpoint_seconds`` (a backfill
        judges many windows per second, but each detector state is written once), and a
        crash replays the unacked messages onto the last checkpoint, which gives the same
        state again.
        """
        j = judges.get(q)
        to_ack = judge_held.pop(q, [])
        judge_last[q] = now
        led = ledgers.get(q)
        if led is not None:
            # The ledger first: if a crash lands between the two, the judge re-emits spend
            # the ledger already holds (its seq marks skip it), rather than the other way round.
            for key, value in led.checkpoint().items():
                persist(budgets_t, q, f"{q}|{key}", value)
        # every partition's watch: a crossing marks the owner's, which may not be q
        for p, watch in list(mixes.items()):
            for key, value in watch.checkpoint().items():
                persist(budgets_t, p, f"{p}|{key}", value)
        if j is not None:
            for key, value in j.checkpoint().items():
                persist(judge_t, q, f"{q}|{key}", value)
            for key, value in j.spend_changes().items():
                persist(spend_t, q, key, value)
        stream = judge_stream.get("s")
        if stream is not None:
            for ev in to_ack:
                await stream.ack(ev)

    @app.agent(windows, name="judge")
    async def judge(stream: Any) -> None:
        s = stream.noack()
        judge_stream["s"] = s
        async for event in s.events():
            q = event.message.partition
            body = orjson.loads(event.value)
            j = judge_for(q)
            out = j.receive(
                int(body["src"]),
                int(body["n_src"]),
                body["closed_until"],
                [Partial.from_wire(r) for r in body["partials"]],
                int(body.get("seq", -1)),
                bool(body.get("wm", True)),
            )
            metrics.inc("windows_judged_total", out.windows_judged)
            for why in out.skipped:
                metrics.inc("alerts_skipped_total", labels={"reason": why})
            notes = [(q, note) for note in out.notifications]
            wm = j.watermark()
            led = ledgers[q]
            if led.budgets:
                for bev, bnote in led.judge_step(out.spend, None if wm is None else float(wm), wall=time.time()):
                    metrics.inc("budget_events_total", labels={"kind": bev.kind + ("_past" if bev.past else "")})
                    if bnote is not None:  # a backlog's past periods: recorded as fired, not told
                        notes.append((q, bnote))
                if wm is not None:
                    for why in led.skipped:
                        metrics.inc("alerts_skipped_total", labels={"reason": why})
                    # before the checkpoint, like the outbox: a replay re-sends the same decision
                    for dec in led.decisions(float(wm)):
                        await decisions_topic.send(key=dec["budget"].encode(), value=orjson.dumps(dec))
                        metrics.inc("budget_decisions_total", labels={"decision": dec["decision"]})
            if mix_on:
                watch = mixes[q]
                for series, w, sums, seqs in out.spend:
                    watch.apply_judge_spend(series, w, sums, seqs)
                if wm is not None and any(m.touched for m in mixes.values()):
                    notes += mix_due(float(wm))
            for p, note in notes:
                if note.dashboard_url is None:  # budgets, the mix share: the engine links its alerts
                    note.dashboard_url = dashboard_link(cfg.dashboard_url, note.series)
                record = note.to_dict()
                persist(alerts_t, p, note.key, record)
                metrics.inc("alerts_raised_total", labels={"action": note.action, "reason": note.reason})
                # delivery is idempotent per (key, seq): a replay after a crash re-sends nothing
                await outbox.send(key=note.key.encode(), value=orjson.dumps(record), partition=p)
            if reporting.specs:
                await reporting.after_judge(q, wm)
            judge_held[q].append(event)
            now = time.time()
            if now - judge_last[q] >= cfg.checkpoint_seconds:
                await judge_checkpoint(q, now)

    @app.timer(interval=min(1.0, cfg.checkpoint_seconds))
    async def judge_tick() -> None:
        now = time.time()
        for q in list(judge_held):
            if judge_held[q] and now - judge_last[q] >= cfg.checkpoint_seconds:
                await judge_checkpoint(q, now)

    # Daily and weekly spend reports: parts from every judge partition, merged by the owner.
    reporting = Reporting(app, cfg, metrics, outbox, persist, judges, ledgers)
    register_report_view(app, reporting)

    # ---------------------------------------------------------------- delivery --------
    digest_topic = app.topic(topics["digest"], value_serializer="raw", key_serializer="raw", partitions=n)
    digests_t = table("digests")  # digest channel -> its book (alerts.digest)

    async def forward_digest(channel: str, record: dict[str, Any]) -> None:
        # force: sent now, not attached to the outbox event (that would wait for its ack);
        # awaited: the broker has it before the deliveries entry says it was forwarded
        fut = await digest_topic.send(key=channel.encode(), value=orjson.dumps(record),
                                      partition=judge_partition(channel, n), force=True)
        await fut

    deliverer = Deliverer(cfg, metrics, forward_digest=forward_digest)
    digester = Digester(deliverer, metrics, interval=deliverer.retry_interval)

    @app.agent(outbox, name="deliver")
    async def deliver(stream: Any) -> None:
        async for event in stream.events():
            q = event.message.partition
            record = orjson.loads(event.value)
            key = record["key"]
            # The retry timer delivers too: one of them at a time per key.
            async with deliverer.lock(key):
                prior = deliveries_t.data.get(key)
                state = await deliverer.deliver(record, prior)
                persist(deliveries_t, q, key, state)

    @app.timer(interval=deliverer.retry_interval)
    async def deliver_retry() -> None:
        """Notifications a sink could not take stay pending in the deliveries table; try them
        again here, so an outage delays them and loses none."""
        owned = _owned_partitions(app, topics["outbox"])
        for key in pending_keys(list(deliveries_t.data.items())):
            async with deliverer.lock(key):
                prior = deliveries_t.data.get(key)
                deliverer.note_state(key, prior)  # also counts what a restart recovered
                waiting = [p for e in (prior or {}).values() if isinstance(e, dict) for p in e.get("pending") or ()]
                if not waiting:
                    continue
                q = judge_partition(waiting[0]["series"], n)
                if owned is not None and q not in owned:
                    continue  # another worker's key since a rebalance
                state = await deliverer.retry_pending(key, prior)
                if state is not None:
                    persist(deliveries_t, q, key, state)

    @app.agent(digest_topic, name="digest")
    async def digest(stream: Any) -> None:
        async for event in stream.events():
            record = orjson.loads(event.value)
            channel = record["channel"]
            async with digester.lock(channel):
                book = digester.collect(record, digests_t.data.get(channel))
                if book is not None:
                    persist(digests_t, event.message.partition, channel, book)

    @app.timer(interval=digester.interval)
    async def digest_tick() -> None:
        """Posts the digest of every period that is over (wall clock), and retries failed ones."""
        if getattr(app, "rebalancing", False) or getattr(app, "in_recovery", False):
            return  # a half-recovered book would post a digest missing what is still being read
        owned = _owned_partitions(app, topics["digest"])
        for channel, book in list(digests_t.data.items()):
            q = judge_partition(channel, n)
            if not digester.due(book) or (owned is not None and q not in owned):
                continue
            async with digester.lock(channel):
                book = await digester.send_due(channel, digests_t.data.get(channel))
                if book is not None:
                    persist(digests_t, q, channel, book)

    # ---------------------------------------------------------------- policy reload ---
    def apply_policy(new: StreamConfig, applied: list[str]) -> None:
        # On the event loop, between two awaits of the agents: no window is judged half-old,
        # half-new. Judges and ledgers made later read live["cfg"].
        apply_reload(new, applied, judges=judges, ledgers=ledgers, mixes=mixes, deliverer=deliverer, n_partitions=n)
        live["cfg"] = new

    reloader = None
    if reload is not None:
        reloader = PolicyReloader(reload, cfg, apply_policy, metrics)
        reloader.check()  # takes note of the file the worker was started with

        if reload.interval > 0:
            @app.timer(interval=reload.interval)
            async def policy_poll() -> None:
                reloader.check()

    @app.task
    async def on_started() -> None:
        if reloader is not None:
            # SIGHUP: read the policy again now, as Prometheus does (also an unchanged file)
            try:
                asyncio.get_running_loop().add_signal_handler(
                    signal.SIGHUP, lambda: reloader.check(force=True, trigger="sighup"))
            except (NotImplementedError, RuntimeError, ValueError):  # no signals here (not the main thread)
                log.warning("SIGHUP does not reload the policy in this process; the file is still polled")
        log.info("tokenpulse worker running; API on http://%s:%s", cfg.web_host, cfg.web_port)

    @app.service
    class _Closer(faust.Service):  # type: ignore[misc]
        async def on_stop(self) -> None:
            await deliverer.close()

    app.tokenpulse = {  # type: ignore[attr-defined]
        "config": cfg,
        "live": live,
        "reloader": reloader,
        "metrics": metrics,
        "pricer": pricer,
        "cores": ingest.cores,
        "judges": judges,
        "ledgers": ledgers,
        "mixes": mixes,
        "ingest": ingest,
        "tables": {"judge": judge_t, "spend": spend_t, "alerts": alerts_t, "deliveries": deliveries_t,
                   "budgets": budgets_t, "digests": digests_t},
    }
    register_views(app, cfg, metrics, spend_t, alerts_t, deliveries_t, ingest, judges, pricer,
                   sinks=deliverer.sinks_status, ledgers=ledgers, current=lambda: live["cfg"],
                   policy_status=None if reloader is None else reloader.status)
    register_digest_view(app, digests_t)
    return app


def _owned_partitions(app: Any, topic: str) -> set[int] | None:
    """Partitions of ``topic`` assigned to this worker (``None``: not known yet)."""
    try:
        return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}
    except Exception:  # noqa: BLE001 - before the first assignment
        return None
