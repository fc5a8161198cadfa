"""Alert lifecycle and delivery: pure rules in, notifications out, one folder per receiver
(:mod:`alerts.receivers`).

Never imports Faust, ``streams``, ``detectors`` or ``tokenpulse``: the worker, the replay
tool and the tests drive the same code.
"""

from __future__ import annotations

from alerts.engine import AlertEngine, AlertPolicy, AlertState, GroupState, dashboard_link, excess_of
from alerts.model import (
    BudgetNotification,
    Contributor,
    MixNotification,
    Notification,
    ReportNotification,
    Signal,
    Silence,
    SpikeNotification,
)
from alerts.receivers import RECEIVERS, Receiver, ReceiverConfig
from alerts.receivers.pagerduty import EVENTS_V2_URL, PagerDutySink, pagerduty_event
from alerts.receivers.slack import SlackSink, slack_blocks
from alerts.receivers.webhook import WebhookSink, verify_signature
from alerts.retry import deliver_all, deliver_with_retry
from alerts.sinks import DeliveryResult, Sink, classify_http

__all__ = [
    "EVENTS_V2_URL",
    "RECEIVERS",
    "AlertEngine",
    "AlertPolicy",
    "AlertState",
    "BudgetNotification",
    "Contributor",
    "DeliveryResult",
    "GroupState",
    "MixNotification",
    "Notification",
    "PagerDutySink",
    "Receiver",
    "ReceiverConfig",
    "ReportNotification",
    "Signal",
    "Silence",
    "Sink",
    "SlackSink",
    "SpikeNotification",
    "WebhookSink",
    "classify_http",
    "dashboard_link",
    "deliver_all",
    "deliver_with_retry",
    "excess_of",
    "pagerduty_event",
    "slack_blocks",
    "verify_signature",
]
