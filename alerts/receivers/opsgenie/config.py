"""Opsgenie's settings: API keys of Opsgenie API integrations, one unnamed (the ``default``
target) and any number of named ones (a team's own integration), and the account's region."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from alerts.receivers.base import HttpUrl, KeyedConfig

US_API_URL = "https://api.opsgenie.com"
EU_API_URL = "https://api.eu.opsgenie.com"


class OpsgenieConfig(KeyedConfig):
    """Opens and closes alerts through the Alert API v2. A route's target is the name of an
    API key: ``default`` (``TOKENPULSE_OPSGENIE_API_KEY``) or one of
    ``TOKENPULSE_OPSGENIE_API_KEYS`` (a JSON object, name → key). Each key belongs to an API
    integration, whose team gets the alert."""

    enabled_by: ClassVar[tuple[str, ...]] = ("api_key", "api_keys")
    key_field: ClassVar[str] = "api_key"
    keys_field: ClassVar[str] = "api_keys"
    keys_env: ClassVar[str] = "TOKENPULSE_OPSGENIE_API_KEYS"
    what: ClassVar[str] = "Opsgenie API key"

    api_key: SecretStr | None = Field(
        default=None,
        description=("API key of an Opsgenie API integration (sent as 'GenieKey <key>'); "
                     "unset: alerts only where a route names a key."))
    api_keys: dict[str, SecretStr] = Field(
        default_factory=dict, validate_default=True,
        description='More API keys by name, as JSON ({"ads": "..."}): the targets of policy routes.')
    api_url: HttpUrl = Field(
        default=US_API_URL, description=f"Alert API base URL: {US_API_URL}, or {EU_API_URL} for an EU account.")

    @field_validator("api_keys")
    @classmethod
    def _names(cls, v: dict[str, SecretStr], info: ValidationInfo) -> dict[str, SecretStr]:
        return cls.check_names(v, info.data.get("api_key"), "TOKENPULSE_OPSGENIE_API_KEY")
