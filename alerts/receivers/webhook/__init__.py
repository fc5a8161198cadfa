"""The generic webhook: every notification as signed JSON to one URL."""

from __future__ import annotations

from alerts.receivers.base import Receiver
from alerts.receivers.webhook.config import WebhookConfig
from alerts.receivers.webhook.render import sign, verify_signature, webhook_body
from alerts.receivers.webhook.sink import WebhookConnection, WebhookSink

RECEIVER = Receiver("webhook", WebhookConfig, WebhookConnection)

__all__ = ["RECEIVER", "WebhookConfig", "WebhookConnection", "WebhookSink", "sign", "verify_signature", "webhook_body"]
