"""Settings from the environment (prefix ``TOKENPULSE_``), validated once at start."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(Exception):
    """A setting is invalid; the message names it and never echoes a secret."""


class Settings(BaseSettings):
    # An empty variable (e.g. `${TOKENPULSE_SLACK_TOKEN:-}` in compose) means "not set".
    model_config = SettingsConfigDict(env_prefix="TOKENPULSE_", extra="ignore", env_ignore_empty=True)

    kafka_bootstrap: str | None = Field(
        default=None, description="Kafka bootstrap servers (host:port,...). Unset: the dev command starts an embedded broker."
    )
    policy: Path | None = Field(default=None, description="Path to the YAML policy file.")
    slack_token: SecretStr | None = Field(default=None, description="Slack bot token (xoxb-...).")
    slack_api_url: str = Field(default="https://slack.com/api/", description="Slack Web API base URL.")
    slack_channel: str = Field(default="#ai-spend", description="Channel for every alert when no policy routes it.")
    pagerduty_routing_key: SecretStr | None = Field(default=None, description="PagerDuty Events v2 integration key.")
    pagerduty_url: str = Field(default="https://events.pagerduty.com/v2/enqueue", description="PagerDuty Events v2 URL.")
    webhook_url: str | None = Field(default=None, description="Generic webhook receiver URL: every notification as signed JSON.")
    # validate_default: a URL without a secret must stop start-up, and that check lives here.
    webhook_secret: SecretStr | None = Field(
        default=None, validate_default=True, description="Shared secret that signs webhook requests (HMAC-SHA256)."
    )
    web_port: int = Field(default=6066, ge=1, le=65535, description="Port of the JSON API and /metrics.")
    web_host: str = Field(default="127.0.0.1", description="Interface the API binds to.")
    window_seconds: int = Field(default=60, ge=1, le=86400, description="Tumbling window length in seconds.")
    lateness_seconds: float = Field(default=10.0, ge=0, description="Allowed lateness of events before a window closes.")
    idle_grace_seconds: float = Field(default=10.0, ge=0, description="How long a quiet partition waits before its clock follows the wall clock.")
    usage_partitions: int = Field(default=4, ge=1, le=1024, description="Partitions of the usage topic when tokenpulse creates it.")
    topic_prefix: str = Field(default="tokenpulse", description="Prefix of every topic name.")
    app_id: str = Field(default="tokenpulse", description="Kafka consumer group / Faust app id.")
    data_dir: Path = Field(default=Path(".tokenpulse"), description="Local state directory of the worker.")
    dashboard_url: str | None = Field(default=None, description="Public URL of the dashboard, linked from alerts.")
    kafka_flavor: str = Field(default="kafka", description="'kafka' or 'tansu' (works around Tansu 0.6 quirks).")
    checkpoint_seconds: float = Field(default=1.0, gt=0, description="How often ingest state is checkpointed.")
    dlq_max_bytes: int = Field(
        default=262_144, ge=1024, le=1_000_000,
        description="A dead-lettered message's bytes are cut to this many (header tokenpulse.truncated: the original size).",
    )
    policy_reload_seconds: float = Field(
        default=5.0, ge=0, description="How often the worker checks the policy file for changes (0: only on SIGHUP)."
    )

    @field_validator("kafka_flavor")
    @classmethod
    def _flavor(cls, v: str) -> str:
        if v not in ("kafka", "tansu"):
            raise ValueError("must be 'kafka' or 'tansu'")
        return v

    @field_validator("slack_api_url", "pagerduty_url", "webhook_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return v

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, v: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # Unsigned requests would teach receivers to accept anything: no secret, no webhook.
        if v is None and info.data.get("webhook_url") is not None:
            raise ValueError("must be set when TOKENPULSE_WEBHOOK_URL is set (it signs every request)")
        return v


def load_settings(**overrides: object) -> Settings:
    """Build the settings, turning pydantic's errors into one message per bad setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "TOKENPULSE_" + str(err["loc"][0]).upper() if err["loc"] else "settings"
            # err["input"] may be a secret: never echo it
            lines.append(f"{name}: {err['msg']}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
