"""PagerDuty's settings: Events v2 routing keys, one unnamed (the ``default`` target) and any
number of named ones, so that a team can page its own service."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from alerts.receivers.base import DEFAULT_TARGET, HttpUrl, ReceiverConfig

EVENTS_V2_URL = "https://events.pagerduty.com/v2/enqueue"


class PagerDutyConfig(ReceiverConfig):
    """Pages through the Events API v2. A route's target is the name of a routing key:
    ``default`` (``TOKENPULSE_PAGERDUTY_ROUTING_KEY``) or one of
    ``TOKENPULSE_PAGERDUTY_ROUTING_KEYS`` (a JSON object, name → integration key), so a
    policy names a team's service without holding its key."""

    enabled_by: ClassVar[tuple[str, ...]] = ("routing_key", "routing_keys")

    routing_key: SecretStr | None = Field(
        default=None, description="Events v2 integration key of the default service; unset: pages only where a route names a key.")
    routing_keys: dict[str, SecretStr] = Field(
        default_factory=dict, validate_default=True,
        description='More integration keys by name, as JSON ({"ads": "R0..."}): the targets of policy routes.')
    url: HttpUrl = Field(default=EVENTS_V2_URL, description="Events v2 enqueue URL.")

    @field_validator("routing_keys")
    @classmethod
    def _names(cls, v: dict[str, SecretStr], info: ValidationInfo) -> dict[str, SecretStr]:
        if DEFAULT_TARGET in v and info.data.get("routing_key") is not None:
            raise ValueError(f"names {DEFAULT_TARGET!r}, which is TOKENPULSE_PAGERDUTY_ROUTING_KEY: set it once")
        if any(not k.strip() for k in v):
            raise ValueError("a routing key needs a name")
        return v

    def key_for(self, target: str) -> SecretStr | None:
        if target == DEFAULT_TARGET and self.routing_key is not None:
            return self.routing_key
        return self.routing_keys.get(target)

    def targets(self) -> frozenset[str]:
        return frozenset(self.routing_keys) | ({DEFAULT_TARGET} if self.routing_key is not None else set())

    def default_targets(self) -> tuple[str, ...]:
        return (DEFAULT_TARGET,) if self.key_for(DEFAULT_TARGET) is not None else ()

    def target_error(self, target: str) -> str | None:
        if self.key_for(target) is not None:
            return None
        have = ", ".join(sorted(self.targets())) or "none"
        return (f"no PagerDuty routing key named {target!r}: add it to TOKENPULSE_PAGERDUTY_ROUTING_KEYS "
                f"(configured: {have})")

    def describe(self) -> str:
        return "keys: " + ", ".join(sorted(self.targets()))
