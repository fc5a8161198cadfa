"""What a receiver is, for the registry (:data:`alerts.receivers.RECEIVERS`) and everything
that loops over it: the settings, ``tokenpulse alerts test``, the delivery loop and its health.

A receiver is a folder (``alerts/receivers/<name>/``) holding

- its **config** (:class:`ReceiverConfig`): the settings it needs, each read from
  ``TOKENPULSE_<NAME>_<FIELD>`` by ``tokenpulse.settings``, secrets as ``SecretStr``; it
  also says which **targets** a route may name (a Slack channel, the name of a PagerDuty
  routing key or an Opsgenie API key) and where a notification goes when no route of the
  receiver takes it;
- its **sink** (:class:`alerts.sinks.Sink`), reached through a :class:`Connection`: what the
  receiver shares between its targets (an HTTP session, Slack's client and pacer);
- its **rendering**: the notification in the receiver's own format.

and one :class:`Receiver` value naming them. Like Alertmanager's ``notify/<name>/``, no other
file needs to know a receiver's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Protocol

import aiohttp
from pydantic import AfterValidator, BaseModel, ConfigDict, SecretStr

from alerts.sinks import Sink

DEFAULT_TARGET = "default"
"""The target of a receiver's one unnamed secret (``TOKENPULSE_PAGERDUTY_ROUTING_KEY``)."""


def _http_url(v: str) -> str:
    # anything but http(s) would only fail at the first alert
    if not v.startswith(("http://", "https://")):
        raise ValueError("must be an http(s) URL")
    return v


HttpUrl = Annotated[str, AfterValidator(_http_url)]
"""A receiver's URL setting: checked at start to be http(s)."""


class ReceiverConfig(BaseModel):
    """A receiver's settings. Subclasses list their fields (with ``description``: the
    settings table in docs/configuration.md says the same) and :attr:`enabled_by`, the fields any of
    which turns the receiver on; a field validator checks what must go together.

    The defaults below suit a receiver with one destination (the webhook): one target,
    :data:`DEFAULT_TARGET`, which gets everything no route of the receiver takes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled_by: ClassVar[tuple[str, ...]] = ()
    named_targets: ClassVar[bool] = True
    """Whether a route's target names a secret of the settings (a PagerDuty routing key; a
    route may leave it out for :data:`DEFAULT_TARGET`) rather than being a destination of its
    own that needs no secret (a Slack channel: required in a route; without the receiver's
    settings its routes are simply unused)."""

    def configured(self) -> bool:
        """Whether the receiver is on: one of :attr:`enabled_by` is set."""
        return any(getattr(self, f) for f in self.enabled_by)

    def targets(self) -> frozenset[str] | None:
        """The targets a route may name; ``None``: any (a Slack channel needs no secret)."""
        return frozenset({DEFAULT_TARGET})

    def default_targets(self) -> tuple[str, ...]:
        """Where a notification goes when no route of this receiver takes it."""
        return (DEFAULT_TARGET,)

    def target_error(self, target: str) -> str | None:
        """Why ``target`` cannot be delivered to (its secret is not set), or None."""
        known = self.targets()
        if known is None or target in known:
            return None
        have = ", ".join(sorted(known)) or "none"
        return f"{type(self).__name__} has no target {target!r} (configured: {have})"

    def secrets(self) -> list[str]:
        """Every secret value, for redaction: each ``SecretStr`` field (and mapping of them)."""
        out: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            values = value.values() if isinstance(value, dict) else (value,)
            out += [v.get_secret_value() for v in values if isinstance(v, SecretStr)]
        return out

    def describe(self) -> str:
        """One line for ``tokenpulse dev``: where notifications go (never a secret)."""
        return "on"


class Connection(Protocol):
    """A receiver's clients, shared by its targets for the life of a deliverer."""

    def sink(self, target: str) -> Sink: ...

    async def close(self) -> None: ...


class SessionConnection:
    """A :class:`Connection` whose sinks all post through the caller's ``aiohttp`` session,
    so it has nothing of its own to close. Subclasses say how to make a target's sink."""

    def __init__(self, cfg: Any, session: aiohttp.ClientSession) -> None:
        self.cfg = cfg
        self.session = session

    def key(self, target: str) -> SecretStr:
        """The key of ``target`` (a :class:`KeyedConfig`'s); ``KeyError`` saying what is missing."""
        key = self.cfg.key_for(target)
        if key is None:
            raise KeyError(self.cfg.target_error(target))
        return key  # type: ignore[no-any-return]

    async def close(self) -> None:
        return None  # the session is the caller's


@dataclass(frozen=True)
class Receiver:
    """One entry of the registry.

    ``connect(config, session)`` opens the receiver's :class:`Connection` (``session`` is
    the caller's ``aiohttp.ClientSession``, made in the running loop). ``pages_only``: it
    gets only notifications marked ``page`` (PagerDuty, Opsgenie: they wake people up).
    ``digests``: its routes may collect notifications in hourly or daily digests (Slack).
    """

    name: str
    config: type[ReceiverConfig]
    connect: Callable[[Any, aiohttp.ClientSession], Connection]
    pages_only: bool = False
    digests: bool = False

    def env(self, field: str) -> str:
        """The environment variable of one of its settings."""
        return f"TOKENPULSE_{self.name.upper()}_{field.upper()}"

    def enable_hint(self) -> str:
        """What to set to turn it on, for messages: ``TOKENPULSE_SLACK_TOKEN``."""
        return " or ".join(self.env(f) for f in self.config.enabled_by)


class KeyedConfig(ReceiverConfig):
    """A receiver whose targets are names of keys held by the settings: one unnamed key (the
    :data:`DEFAULT_TARGET`) in :attr:`key_field` and named ones in :attr:`keys_field`, a
    mapping set as JSON (``{"ads": "..."}``). Policy routes name a key, never hold one.
    Subclasses declare the two fields and call :meth:`check_names` from a validator of the
    mapping."""

    key_field: ClassVar[str]
    keys_field: ClassVar[str]
    keys_env: ClassVar[str]  # the variable of keys_field, for messages
    what: ClassVar[str]  # "PagerDuty routing key", for messages

    def _named(self) -> dict[str, SecretStr]:
        return dict(getattr(self, self.keys_field))

    def key_for(self, target: str) -> SecretStr | None:
        single = getattr(self, self.key_field)
        if target == DEFAULT_TARGET and single is not None:
            return single  # type: ignore[no-any-return]
        return self._named().get(target)

    def targets(self) -> frozenset[str]:
        single = getattr(self, self.key_field) is not None
        return frozenset(self._named()) | ({DEFAULT_TARGET} if single else set())

    def default_targets(self) -> tuple[str, ...]:
        return (DEFAULT_TARGET,) if self.key_for(DEFAULT_TARGET) is not None else ()

    def target_error(self, target: str) -> str | None:
        if self.key_for(target) is not None:
            return None
        have = ", ".join(sorted(self.targets())) or "none"
        return f"no {self.what} named {target!r}: add it to {self.keys_env} (configured: {have})"

    def describe(self) -> str:
        return "keys: " + ", ".join(sorted(self.targets()))

    @classmethod
    def check_names(cls, v: dict[str, SecretStr], single: SecretStr | None, single_env: str) -> dict[str, SecretStr]:
        if DEFAULT_TARGET in v and single is not None:
            raise ValueError(f"names {DEFAULT_TARGET!r}, which is {single_env}: set it once")
        if any(not k.strip() for k in v):
            raise ValueError("a key needs a name")
        return v
