"""Alert lifecycle and delivery: pure rules in, notifications out, one module per receiver.

Never imports Faust, ``streams``, ``detectors`` or ``tokenpulse``: the worker, the replay
tool and the tests drive the same code.
"""

from __future__ import annotations

from alerts.engine import AlertEngine, AlertPolicy, AlertState, GroupState, excess_of
from alerts.format import pagerduty_event, slack_blocks
from alerts.model import Contributor, Notification, Signal, Silence
from alerts.pagerduty import EVENTS_V2_URL, PagerDutySink
from alerts.retry import deliver_all, deliver_with_retry
from alerts.sinks import DeliveryResult, Sink, classify_http
from alerts.slack import SlackSink
from alerts.webhook import WebhookSink, verify_signature

__all__ = [
    "EVENTS_V2_URL",
    "AlertEngine",
    "AlertPolicy",
    "AlertState",
    "Contributor",
    "DeliveryResult",
    "GroupState",
    "Notification",
    "PagerDutySink",
    "Signal",
    "Silence",
    "Sink",
    "SlackSink",
    "WebhookSink",
    "classify_http",
    "deliver_all",
    "deliver_with_retry",
    "excess_of",
    "pagerduty_event",
    "slack_blocks",
    "verify_signature",
]
