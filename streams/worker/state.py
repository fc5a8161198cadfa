"""Everything a running worker holds, in one object: what the views read and a policy reload
changes. :func:`streams.worker.app.create_app` builds it and sets it as ``app.tokenpulse``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from streams.common.config import StreamConfig
from streams.common.metrics import Metrics
from streams.ingest.hotpath import IngestLoop
from streams.ingest.pricing import Pricer
from streams.reports.reporting import Reporting
from streams.worker.delivering import DeliveryWorker
from streams.worker.feedback import FeedbackWorker
from streams.worker.inbox import DevInbox
from streams.worker.judging import JudgeWorker
from streams.worker.organizing import OrgWorker
from streams.worker.peers import Peers
from streams.worker.reload import PolicyReloader, apply_reload
from streams.worker.settle import SettleWatch
from streams.worker.tables import Tables

__all__ = ["WorkerState"]


@dataclass
class WorkerState:
    """The parts of one worker: the hot path (``ingest``), the judge side (``judging``: judges,
    ledgers, mix watches), the delivery side (``delivery``), the reports, the tables, metrics
    and pricer, and the policy reloader (None: no policy file)."""

    cfg: StreamConfig  # what the worker started with
    metrics: Metrics
    pricer: Pricer
    ingest: IngestLoop
    judging: JudgeWorker
    delivery: DeliveryWorker
    reporting: Reporting
    tables: Tables
    reloader: PolicyReloader | None = None
    inbox: DevInbox | None = None  # the dev stack's stand-in for Slack and PagerDuty
    feedback: FeedbackWorker | None = None  # on-call's answers (with the Slack signing secret)
    organizing: OrgWorker | None = None  # the org stage apart (TOKENPULSE_PLACEMENT=series)
    peers: Peers | None = None  # the other workers, for answers from any worker (None: this one's alone)
    started: float = field(default_factory=time.time)
    settle: SettleWatch = field(default_factory=lambda: SettleWatch(0))  # is the judge stuck settling?

    @property
    def live(self) -> StreamConfig:
        """The config in force: a policy reload replaces its reloadable sections (budgets, alert
        policy, routes, mix lines); everything else is what the worker started with."""
        return self.judging.live

    def apply_policy(self, new: StreamConfig, applied: list[str]) -> None:
        """The reloader's callback: install ``new`` in the running parts. On the event loop,
        between two awaits of the agents, so no window is judged half-old, half-new; judges and
        ledgers made later read :attr:`live`."""
        j = self.judging
        apply_reload(new, applied, judges=j.judges, ledgers=j.ledgers, mixes=j.mixes,
                     deliverer=self.delivery.deliverer, n_partitions=self.cfg.usage_partitions)
        j.live = new
        if self.organizing is not None:  # the org stage apart: its engines, and the judges' tracking
            self.organizing.reconfigure(new, applied)
        if self.feedback is not None:  # the new policy's silences, and on-call's snoozes still
            for judge in j.judges.values():
                self.feedback.install(judge.engine)
            for org in [] if self.organizing is None else list(self.organizing.orgs.values()):
                self.feedback.install(org.engine)  # apart, the org stage's engine is the one that silences
