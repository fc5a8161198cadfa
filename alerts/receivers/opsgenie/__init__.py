"""Opsgenie: Alert API v2 alerts, one per alert key (its alias), closed automatically."""

from __future__ import annotations

from alerts.receivers.base import Receiver
from alerts.receivers.opsgenie.config import EU_API_URL, US_API_URL, OpsgenieConfig
from alerts.receivers.opsgenie.render import close_body, create_body
from alerts.receivers.opsgenie.sink import OpsgenieConnection, OpsgenieSink

RECEIVER = Receiver("opsgenie", OpsgenieConfig, OpsgenieConnection, pages_only=True)

__all__ = ["EU_API_URL", "RECEIVER", "US_API_URL", "OpsgenieConfig", "OpsgenieConnection", "OpsgenieSink",
           "close_body", "create_body"]
