"""Slack: Block Kit messages per channel, one thread per incident, hourly and daily digests."""

from __future__ import annotations

from alerts.receivers.base import Receiver
from alerts.receivers.slack.config import SlackConfig
from alerts.receivers.slack.render import slack_blocks
from alerts.receivers.slack.sink import ChannelPacer, SlackConnection, SlackSink

RECEIVER = Receiver("slack", SlackConfig, SlackConnection, digests=True)

__all__ = ["RECEIVER", "ChannelPacer", "SlackConfig", "SlackConnection", "SlackSink", "slack_blocks"]
