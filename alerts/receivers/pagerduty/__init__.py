"""PagerDuty: Events API v2 pages, one incident per alert key, resolved automatically."""

from __future__ import annotations

from alerts.receivers.base import Receiver
from alerts.receivers.pagerduty.config import EVENTS_V2_URL, PagerDutyConfig
from alerts.receivers.pagerduty.render import pagerduty_event
from alerts.receivers.pagerduty.sink import PagerDutyConnection, PagerDutySink

RECEIVER = Receiver("pagerduty", PagerDutyConfig, PagerDutyConnection, pages_only=True)

__all__ = ["EVENTS_V2_URL", "RECEIVER", "PagerDutyConfig", "PagerDutyConnection", "PagerDutySink", "pagerduty_event"]
