"""Settings from the environment (prefix ``TOKENPULSE_``), validated once at start.

The receivers' settings are not listed here: each receiver's config model
(``alerts/receivers/<name>/config.py``) declares them, and :meth:`Settings.receivers` reads
``TOKENPULSE_<RECEIVER>_<FIELD>`` for every receiver of the registry
(:data:`alerts.receivers.RECEIVERS`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic_settings
from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from alerts.receivers import RECEIVERS, Receiver, ReceiverConfig


class SettingsError(Exception):
    """A setting is invalid; the message names it and never echoes a secret."""


class Settings(BaseSettings):
    # An empty variable (e.g. `${TOKENPULSE_SLACK_TOKEN:-}` in compose) means "not set".
    model_config = SettingsConfigDict(env_prefix="TOKENPULSE_", extra="ignore", env_ignore_empty=True)

    kafka_bootstrap: str | None = Field(
        default=None, description="Kafka bootstrap servers (host:port,...). Unset: the dev command starts an embedded broker."
    )
    policy: Path | None = Field(default=None, description="Path to the YAML policy file.")
    web_port: int = Field(default=6066, ge=1, le=65535, description="Port of the JSON API and /metrics.")
    web_host: str = Field(default="127.0.0.1", description="Interface the API binds to.")
    window_seconds: int = Field(default=60, ge=1, le=86400, description="Tumbling window length in seconds.")
    lateness_seconds: float = Field(default=10.0, ge=0, description="Allowed lateness of events before a window closes.")
    idle_grace_seconds: float = Field(
        default=10.0, ge=0, description="How long a quiet partition waits before its clock follows the wall clock.")
    usage_partitions: int = Field(
        default=4, ge=1, le=1024, description="Partitions of the usage topic when tokenpulse creates it.")
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
    api_token: SecretStr | None = Field(
        default=None,
        description="Bearer token guarding /api/*, /dashboard and /metrics (the dashboard's login form takes it "
                    "too). Required when web_host is not loopback.",
    )
    metrics_token: SecretStr | None = Field(
        default=None, description="A second token that may read /metrics only (for a Prometheus scraper)."
    )
    allow_unauthenticated: bool = Field(
        default=False, description="Serve the API with no token on a non-loopback web_host (anyone who can reach "
                                   "the port reads every team's spend)."
    )

    @field_validator("kafka_flavor")
    @classmethod
    def _flavor(cls, v: str) -> str:
        if v not in ("kafka", "tansu"):
            raise ValueError("must be 'kafka' or 'tansu'")
        return v

    @field_validator("api_token", "metrics_token")
    @classmethod
    def _token(cls, v: SecretStr | None) -> SecretStr | None:
        # the value is never echoed: only what is wrong with it
        if v is not None and (len(v.get_secret_value()) < 16 or v.get_secret_value().strip() != v.get_secret_value()):
            raise ValueError("must be at least 16 characters, with no surrounding spaces (e.g. `openssl rand -hex 32`)")
        return v

    @model_validator(mode="after")
    def _metrics_needs_api(self) -> Settings:
        if self.metrics_token is not None and self.api_token is None:
            raise ValueError("TOKENPULSE_METRICS_TOKEN is set without TOKENPULSE_API_TOKEN: /metrics would be "
                             "guarded while /api/* is open; set TOKENPULSE_API_TOKEN too")
        return self

    def exposure_error(self) -> str | None:
        """Why a worker must not serve its API with these settings (None: it may): a
        non-loopback ``web_host`` with no API token, unless ``allow_unauthenticated``."""
        from streams.worker.access import exposure_error

        return exposure_error(self.web_host, self.secret("api_token"), self.allow_unauthenticated)

    def secret(self, name: str) -> str | None:
        """The value of a secret setting (``api_token``, ``metrics_token``), or None."""
        v = getattr(self, name)
        return None if v is None else v.get_secret_value()

    # name -> config of every receiver that is on (read from the environment at construction)
    _receivers: dict[str, ReceiverConfig] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _read_receivers(self) -> Settings:
        # SettingsError is not a ValueError: pydantic lets it through, with its own message.
        self._receivers = read_receivers()
        return self

    def receivers(self) -> dict[str, ReceiverConfig]:
        """The config of every receiver that is on, by name, in registry order."""
        return dict(self._receivers)

    def with_receivers(self, **configs: ReceiverConfig | None) -> Settings:
        """A copy with these receivers' configs instead of the environment's (``None``: off),
        for tests and embedding."""
        out = self.model_copy()
        got = {**self._receivers, **configs}
        out._receivers = {name: got[name] for name in RECEIVERS if got.get(name) is not None}  # type: ignore[misc]
        return out


def load_settings(**overrides: object) -> Settings:
    """Build the settings, turning pydantic's errors into one message per bad setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(_message(exc, lambda field: "TOKENPULSE_" + field.upper())) from None


def _message(exc: ValidationError, env: Any) -> str:
    lines = []
    for err in exc.errors():
        name = env(str(err["loc"][0])) if err["loc"] else "settings"
        # err["input"] may be a secret: never echo it
        lines.append(f"{name}: {err['msg']}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def _from_env(r: Receiver) -> type[BaseSettings]:
    # The receiver's own model, read by pydantic-settings from TOKENPULSE_<NAME>_<FIELD>: its
    # validators, secrets as SecretStr, JSON for mappings, an empty variable meaning unset.
    config = SettingsConfigDict(env_prefix=f"TOKENPULSE_{r.name.upper()}_", extra="ignore", env_ignore_empty=True,
                                frozen=True)
    return type(f"{r.config.__name__}FromEnv", (BaseSettings, r.config), {"model_config": config})


def read_receivers() -> dict[str, ReceiverConfig]:
    """Every receiver of the registry that the environment turns on, by name; a
    :class:`SettingsError` naming each bad variable (never its value) otherwise."""
    out: dict[str, ReceiverConfig] = {}
    errors: list[str] = []
    for name, r in RECEIVERS.items():
        try:
            got = _from_env(r)()
        except ValidationError as exc:
            errors.append(_message(exc, r.env).partition("\n  ")[2])
            continue
        except pydantic_settings.SettingsError as exc:
            # a mapping that is not JSON; the message names the field, not its value
            field = str(exc).split('"')[1] if '"' in str(exc) else "*"
            errors.append(f"{r.env(field)}: not valid JSON")
            continue
        cfg = r.config.model_validate(got.model_dump())
        if cfg.configured():
            out[name] = cfg
    if errors:
        raise SettingsError("invalid settings:\n  " + "\n  ".join(errors))
    return out
