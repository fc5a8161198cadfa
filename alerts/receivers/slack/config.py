"""Slack's settings: one bot token for the workspace; targets are channels."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr

from alerts.receivers.base import HttpUrl, ReceiverConfig


class SlackConfig(ReceiverConfig):
    """Posts to Slack channels through the Web API. A route's target is a channel (``#ads``
    or an ID); the ``channel`` setting gets what no route took. Channels need no secret of
    their own: without a token Slack is off and its routes are not used."""

    enabled_by: ClassVar[tuple[str, ...]] = ("token",)
    named_targets: ClassVar[bool] = False

    token: SecretStr | None = Field(default=None, description="Slack bot token (xoxb-...); unset: no Slack delivery.")
    api_url: HttpUrl = Field(default="https://slack.com/api/", description="Slack Web API base URL.")
    channel: str = Field(default="#ai-spend", min_length=1,
                         description="Channel for every alert that no route sends to a channel of its own.")
    signing_secret: SecretStr | None = Field(
        default=None,
        description="Slack app signing secret: turns on the answer buttons on alerts and the worker's "
                    "POST /slack/actions endpoint that verifies their requests; unset: no buttons, no endpoint.")
    pacing_seconds: float = Field(default=1.0, ge=0,
                                  description="Least time between two messages to one channel (Slack allows about one a second).")

    def targets(self) -> frozenset[str] | None:
        return None

    def default_targets(self) -> tuple[str, ...]:
        return (self.channel,)

    def target_error(self, target: str) -> str | None:
        return None if target.strip() else "a Slack route needs a channel as its target"

    def describe(self) -> str:
        return f"→ {self.channel}"
