"""Settings from the environment (prefix ``TOKENPULSE_``), validated once at start.

The receivers' settings are not listed here: each receiver's config model
(``alerts/receivers/<name>/config.py``) declares them, and :meth:`Settings.receivers` reads
``TOKENPULSE_<RECEIVER>_<FIELD>`` for every receiver of the registry
(:data:`alerts.receivers.RECEIVERS`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pydantic_settings
from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from alerts.receivers import RECEIVERS, Receiver, ReceiverConfig
from streams.common.security import MECHANISMS, PROTOCOLS, KafkaSecurity, Secret


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
    advertised_url: str | None = Field(
        default=None, description="Where the other workers reach this worker's API (http://host:port), announced "
                                  "to them through the consumer group. Unset: http://<web_host>:<web_port>, with "
                                  "this machine's host name when web_host is 0.0.0.0 or ::.")
    peer_timeout_seconds: float = Field(
        default=2.0, gt=0, le=60, description="How long a worker waits for the others when it answers /api/* for the "
                                              "whole deployment; a peer slower than this is named in 'missing'.")
    judge_stall_seconds: float = Field(
        default=300.0, ge=0, le=24 * 3600,
        description="How long the judge may rebalance or recover its tables without reading a changelog record "
                    "before /healthz answers 503 (stalled), so that a liveness probe restarts the worker. 0: never.")
    report_deadline_seconds: float = Field(
        default=600.0, gt=0, le=6 * 3600,
        description="How long a scheduled report waits for the parts of every partition after it is due (in event "
                    "time, and as long on the wall clock) before it is sent with what came, marked partial.")
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
    placement: str = Field(
        default="series",
        description="Where a series is judged: 'series' (on the partition its own name hashes to; each org's alerts "
                    "and budgets on its org's partition, fed over the <prefix>.verdicts topic) or 'org' (on its org's "
                    "partition, with the org's alerts and budgets). Recorded on the broker at a deployment's first "
                    "start: a worker switches a deployment to the other one only when this is given. See "
                    "docs/deploying.md#placement.")
    checkpoint_seconds: float = Field(default=1.0, gt=0, description="How often ingest state is checkpointed.")
    kafka_session_timeout_seconds: float = Field(
        default=6.0, ge=1, le=1800,
        description="Consumer-group session timeout of the worker's Kafka consumers: how long the group waits "
                    "for a silent worker before its partitions move (Apache Kafka refuses less than the broker's "
                    "group.min.session.timeout.ms, 6 s by default).",
    )
    dlq_max_bytes: int = Field(
        default=262_144, ge=1024, le=1_000_000,
        description="A dead-lettered message's bytes are cut to this many (header tokenpulse.truncated: the original size).",
    )
    dedupe_horizon_seconds: float = Field(
        default=7200.0, ge=0, le=7 * 86400,
        description="Event-time seconds a closed window's event ids are kept: a producer retry up to this late counts once.",
    )
    spend_hourly_after_seconds: int = Field(
        default=48 * 3600, ge=0,
        description="Event-time seconds after which spend records are kept by the hour, not by the window (0: never).",
    )
    spend_daily_after_seconds: int = Field(
        default=35 * 86400, ge=0,
        description="Event-time seconds after which hourly spend records are kept by the day (0: never).",
    )
    spend_user_hourly_after_seconds: int = Field(
        default=24 * 3600, ge=0,
        description="Event-time seconds after which a user's spend records (series user=...) are kept by the hour, "
                    "not by the window (0: never).",
    )
    spend_user_daily_after_seconds: int = Field(
        default=7 * 86400, ge=0,
        description="Event-time seconds after which a user's hourly spend records are kept by the day (0: never).",
    )
    judge_state_every_windows: int = Field(
        default=10, ge=1, le=1440,
        description="A series' detector state is written to the judge changelog with one window in this many "
                    "(and with every flagged window): a crash loses at most this many windows of its learning.",
    )
    judge_park: bool = Field(
        default=True,
        description="Idle series parked: a series with no spend and no open alert is not stepped; its empty windows "
                    "are applied when it next spends, and meanwhile only its packed checkpoint record is held.",
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

    # Kafka transport security and authentication: every client of the project uses them
    # (streams.common.security); checked together at start by _check_kafka_security.
    kafka_security_protocol: str = Field(
        default="PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.")
    kafka_sasl_mechanism: str | None = Field(
        default=None, description="With SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.")
    kafka_sasl_username: str | None = Field(default=None, description="With SASL_*: the user.")
    kafka_sasl_password: SecretStr | None = Field(default=None, description="With SASL_*: its password (never shown).")
    kafka_ssl_cafile: Path | None = Field(
        default=None, description="With SSL/SASL_SSL: PEM file of the CA(s) to trust (unset: the system's).")
    kafka_ssl_certfile: Path | None = Field(
        default=None, description="With SSL/SASL_SSL: PEM client certificate, for brokers that require one.")
    kafka_ssl_keyfile: Path | None = Field(default=None, description="The client certificate's private key (PEM).")

    @field_validator("kafka_flavor")
    @classmethod
    def _flavor(cls, v: str) -> str:
        if v not in ("kafka", "tansu"):
            raise ValueError("must be 'kafka' or 'tansu'")
        return v

    @field_validator("placement")
    @classmethod
    def _placement(cls, v: str) -> str:
        if v not in ("org", "series"):
            raise ValueError("must be 'org' or 'series'")
        return v

    @field_validator("advertised_url")
    @classmethod
    def _advertised(cls, v: str | None) -> str | None:
        from yarl import URL

        if v is None:
            return v
        try:
            url = URL(v)
        except ValueError:
            raise ValueError("must be an http:// or https:// URL such as http://worker-1:6066") from None
        if url.scheme not in ("http", "https") or not url.host or url.user or url.password or url.query_string \
                or url.path not in ("", "/"):
            raise ValueError("must be http(s)://host:port with no path, query or credentials "
                             "(e.g. http://worker-1:6066)")
        return v.rstrip("/")

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

    @property
    def placement_explicit(self) -> bool:
        """Whether ``placement`` was given (TOKENPULSE_PLACEMENT, or a keyword) rather than left
        at its default: only a given placement may switch a deployment (tokenpulse.placement)."""
        return "placement" in self.model_fields_set

    def secret(self, name: str) -> str | None:
        """The value of a secret setting (``api_token``, ``metrics_token``), or None."""
        v = getattr(self, name)
        return None if v is None else v.get_secret_value()

    @model_validator(mode="after")
    def _check_kafka_security(self) -> Settings:
        # SettingsError (not a ValueError) goes through pydantic as it is: each line names
        # its setting, and no line holds the password.
        errors = kafka_security_errors(self)
        if errors:
            raise SettingsError("invalid settings:\n  " + "\n  ".join(errors))
        return self

    def kafka_security(self) -> KafkaSecurity:
        """What every Kafka client of the project is given (validated at construction)."""
        pw = self.kafka_sasl_password
        return KafkaSecurity(
            protocol=self.kafka_security_protocol.upper(),
            mechanism=self.kafka_sasl_mechanism.upper() if self.kafka_sasl_mechanism else None,
            username=self.kafka_sasl_username,
            password=Secret(pw.get_secret_value()) if pw is not None else None,
            cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None,
            certfile=str(self.kafka_ssl_certfile) if self.kafka_ssl_certfile else None,
            keyfile=str(self.kafka_ssl_keyfile) if self.kafka_ssl_keyfile else None,
        )

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


def _env(field: str) -> str:
    return "TOKENPULSE_" + field.upper()


def kafka_security_errors(s: Settings) -> list[str]:  # noqa: C901 - one check per line of the message
    """Every problem of the Kafka security settings, one line each naming the setting (never
    the password): what is missing for the protocol, what is set but would be ignored, files
    that do not exist or are not PEM."""
    import ssl

    errors: list[str] = []
    proto = s.kafka_security_protocol.upper()
    if proto not in PROTOCOLS:
        shown = s.kafka_security_protocol[:40]
        return [f"{_env('kafka_security_protocol')}: must be one of {', '.join(PROTOCOLS)}, got {shown!r}"]
    sasl, tls = proto.startswith("SASL_"), proto in ("SSL", "SASL_SSL")
    sasl_fields = ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")
    tls_fields = ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
    if sasl:
        mech = (s.kafka_sasl_mechanism or "").upper()
        if not mech:
            errors.append(f"{_env('kafka_sasl_mechanism')}: required with {proto} ({', '.join(MECHANISMS)})")
        elif mech not in MECHANISMS:
            errors.append(f"{_env('kafka_sasl_mechanism')}: must be one of {', '.join(MECHANISMS)}, "
                          f"got {s.kafka_sasl_mechanism[:40]!r}")  # type: ignore[index]  # not None: mech is set
        if not s.kafka_sasl_username:
            errors.append(f"{_env('kafka_sasl_username')}: required with {proto}")
        if s.kafka_sasl_password is None or not s.kafka_sasl_password.get_secret_value():
            errors.append(f"{_env('kafka_sasl_password')}: required with {proto}")
    else:
        for f in sasl_fields:
            if getattr(s, f) is not None:
                errors.append(f"{_env(f)}: set, but {_env('kafka_security_protocol')} is {proto}: "
                              "SASL needs SASL_PLAINTEXT or SASL_SSL")
    if not tls:
        for f in tls_fields:
            if getattr(s, f) is not None:
                errors.append(f"{_env(f)}: set, but {_env('kafka_security_protocol')} is {proto}: TLS needs SSL or SASL_SSL")
        return errors
    for f in tls_fields:
        path = getattr(s, f)
        if path is not None and not path.is_file():
            errors.append(f"{_env(f)}: {path}: no such file")
        elif path is not None and not os.access(path, os.R_OK):
            errors.append(f"{_env(f)}: {path}: not readable")
    if s.kafka_ssl_keyfile is not None and s.kafka_ssl_certfile is None:
        errors.append(f"{_env('kafka_ssl_keyfile')}: set without {_env('kafka_ssl_certfile')}")
    if errors:
        return errors
    # The files exist: load them as the clients will, so a wrong file fails here, not in a retry loop.
    try:
        ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(s.kafka_ssl_cafile) if s.kafka_ssl_cafile else None)
    except (ssl.SSLError, OSError, ValueError) as exc:
        errors.append(f"{_env('kafka_ssl_cafile')}: {s.kafka_ssl_cafile}: not a PEM CA certificate ({_ssl_why(exc)})")
    if s.kafka_ssl_certfile is not None:
        try:
            ssl.create_default_context().load_cert_chain(str(s.kafka_ssl_certfile),
                                                         str(s.kafka_ssl_keyfile) if s.kafka_ssl_keyfile else None)
        except (ssl.SSLError, OSError, ValueError) as exc:
            errors.append(f"{_env('kafka_ssl_certfile')}/{_env('kafka_ssl_keyfile').removeprefix('TOKENPULSE_')}: "
                          f"not a PEM certificate with its private key ({_ssl_why(exc)})")
    return errors


def _ssl_why(exc: BaseException) -> str:
    return getattr(exc, "reason", None) or type(exc).__name__
