"""How every Kafka client of the project authenticates: TLS and SASL, in one place.

The entry point builds one :class:`KafkaSecurity` from the ``TOKENPULSE_KAFKA_*`` settings
(validated there, :mod:`tokenpulse.settings`) and hands it down in
:class:`~streams.common.config.StreamConfig`; each client library gets its own spelling of it
from here: :meth:`KafkaSecurity.aiokafka` (the hot path's consumer and producer),
:meth:`KafkaSecurity.kafka_python` (topic creation, the simulator) and, in the worker,
Faust's ``broker_credentials`` (``streams.worker.app.faust_settings``). A client that takes
its arguments anywhere else would be one that cannot reach a secured cluster.

The password is a :class:`Secret`: its ``repr`` and ``str`` are masked, so a config printed
in a log line, an error or a test failure never shows it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class Secret:
    """A string that never shows itself: ``repr``/``str`` print ``**********``;
    :meth:`reveal` is the one way to the value (for the client that sends it)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:  # pickling keeps the value (a worker hands its config to itself only)
        return (Secret, (self._value,))


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """Transport security and authentication of the Kafka clients. The default is
    PLAINTEXT with no credentials (a laptop broker, Tansu)."""

    protocol: str = "PLAINTEXT"  # one of PROTOCOLS
    mechanism: str | None = None  # one of MECHANISMS, with SASL_*
    username: str | None = None
    password: Secret | None = None
    cafile: str | None = None  # PEM CA bundle; None: the system's trust store
    certfile: str | None = None  # PEM client certificate (mutual TLS)
    keyfile: str | None = None  # its private key (PEM)

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client TLS context (hostname checked, the CA file or the system's CAs, the client
        certificate if any), or None without TLS. Raises ``ssl.SSLError``/``OSError`` for a
        file that is not what it should be (the settings check this at start)."""
        if not self.tls:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.cafile)
        if self.certfile:
            ctx.load_cert_chain(self.certfile, self.keyfile)
        return ctx

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for ``AIOKafkaConsumer``/``AIOKafkaProducer``."""
        out: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            out["ssl_context"] = self.ssl_context()
        if self.sasl:
            out.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.username,
                       sasl_plain_password=self.password.reveal() if self.password else None)
        return out

    def kafka_python(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's ``KafkaProducer``/``KafkaConsumer``/``KafkaAdminClient``."""
        out: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            out.update(ssl_context=self.ssl_context(), ssl_check_hostname=True)
        if self.sasl:
            out.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.username,
                       sasl_plain_password=self.password.reveal() if self.password else None)
        return out

    def describe(self) -> str:
        """One line for a banner or a log, never the password: ``SASL_SSL (SCRAM-SHA-512 as tokenpulse)``."""
        parts = []
        if self.sasl:
            parts.append(f"{self.mechanism} as {self.username}")
        if self.tls:
            parts.append(f"CA {self.cafile}" if self.cafile else "system CAs")
            if self.certfile:
                parts.append(f"client certificate {self.certfile}")
        return self.protocol + (f" ({', '.join(parts)})" if parts else "")


PLAINTEXT = KafkaSecurity()
