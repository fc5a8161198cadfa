"""PagerDuty's settings: Events v2 routing keys, one unnamed (the ``default`` target) and any
number of named ones, so that a team can page its own service."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from alerts.receivers.base import HttpUrl, KeyedConfig

EVENTS_V2_URL = "https://events.pagerduty.com/v2/enqueue"


class PagerDutyConfig(KeyedConfig):
    """Pages through the Events API v2. A route's target is the name of a routing key:
    ``default`` (``TOKENPULSE_PAGERDUTY_ROUTING_KEY``) or one of
    ``TOKENPULSE_PAGERDUTY_ROUTING_KEYS`` (a JSON object, name → integration key), so a
    policy names a team's service without holding its key."""

    enabled_by: ClassVar[tuple[str, ...]] = ("routing_key", "routing_keys")
    key_field: ClassVar[str] = "routing_key"
    keys_field: ClassVar[str] = "routing_keys"
    keys_env: ClassVar[str] = "TOKENPULSE_PAGERDUTY_ROUTING_KEYS"
    what: ClassVar[str] = "PagerDuty routing key"

    routing_key: SecretStr | None = Field(
        default=None,
        description="Events v2 integration key of the default service; unset: pages only where a route names a key.")
    routing_keys: dict[str, SecretStr] = Field(
        default_factory=dict, validate_default=True,
        description='More integration keys by name, as JSON ({"ads": "R0..."}): the targets of policy routes.')
    url: HttpUrl = Field(default=EVENTS_V2_URL, description="Events v2 enqueue URL.")
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="Secret of a PagerDuty webhook (v3) subscription: turns on the worker's POST /pagerduty/webhook, "
                    "so a page acknowledged or resolved in PagerDuty acknowledges or resolves the alert; "
                    "unset: no endpoint.")

    @field_validator("routing_keys")
    @classmethod
    def _names(cls, v: dict[str, SecretStr], info: ValidationInfo) -> dict[str, SecretStr]:
        return cls.check_names(v, info.data.get("routing_key"), "TOKENPULSE_PAGERDUTY_ROUTING_KEY")
