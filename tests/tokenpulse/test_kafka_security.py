"""TLS/SASL settings: checked at start with one line per setting at fault, handed to every
client library in its own spelling, and the password never shown. The broker side is
tests/integration/test_security.py (Apache Kafka with SASL_SSL and SCRAM-SHA-512)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streams.common.config import StreamConfig
from streams.common.security import KafkaSecurity, Secret
from tokenpulse.cli import app
from tokenpulse.settings import SettingsError, load_settings

PW = "s3cret-Pa55-word"
SASL = dict(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="tp",
            kafka_sasl_password=PW)


def _error(**settings: object) -> str:
    with pytest.raises(SettingsError) as exc:
        load_settings(**settings)
    return str(exc.value)


@pytest.fixture(autouse=True)
def _clean(clean_env: None) -> None:
    pass


def test_default_is_plaintext_with_nothing_else() -> None:
    sec = load_settings().kafka_security()
    assert sec.protocol == "PLAINTEXT" and not sec.sasl and not sec.tls
    assert sec.aiokafka() == {"security_protocol": "PLAINTEXT"}
    assert sec.kafka_python() == {"security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize(("missing", "setting"), [
    ("kafka_sasl_username", "TOKENPULSE_KAFKA_SASL_USERNAME"),
    ("kafka_sasl_password", "TOKENPULSE_KAFKA_SASL_PASSWORD"),
    ("kafka_sasl_mechanism", "TOKENPULSE_KAFKA_SASL_MECHANISM"),
])
def test_sasl_without_a_part_names_it(missing: str, setting: str) -> None:
    msg = _error(**{k: v for k, v in SASL.items() if k != missing})
    assert f"{setting}: required with SASL_SSL" in msg
    assert PW not in msg


def test_bad_protocol_and_mechanism_say_what_is_allowed() -> None:
    assert "TOKENPULSE_KAFKA_SECURITY_PROTOCOL: must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, got 'TLS'" in \
        _error(kafka_security_protocol="TLS")
    assert "TOKENPULSE_KAFKA_SASL_MECHANISM: must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512" in \
        _error(**{**SASL, "kafka_sasl_mechanism": "GSSAPI"})


def test_a_ca_file_that_does_not_exist_is_named(tmp_path: Path) -> None:
    msg = _error(**SASL, kafka_ssl_cafile=tmp_path / "nope.pem")
    assert f"TOKENPULSE_KAFKA_SSL_CAFILE: {tmp_path / 'nope.pem'}: no such file" in msg
    assert PW not in msg


def test_a_ca_file_that_is_not_pem_is_named(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate\n")
    assert "TOKENPULSE_KAFKA_SSL_CAFILE" in _error(kafka_security_protocol="SSL", kafka_ssl_cafile=ca)


def test_a_key_without_its_certificate_is_named(tmp_path: Path) -> None:
    key = tmp_path / "client.key"
    key.write_text("x")
    assert "TOKENPULSE_KAFKA_SSL_KEYFILE: set without TOKENPULSE_KAFKA_SSL_CERTFILE" in \
        _error(kafka_security_protocol="SSL", kafka_ssl_keyfile=key)


def test_credentials_that_the_protocol_would_ignore_are_an_error(tmp_path: Path) -> None:
    msg = _error(kafka_sasl_username="tp", kafka_sasl_password=PW)
    assert "TOKENPULSE_KAFKA_SASL_USERNAME: set, but TOKENPULSE_KAFKA_SECURITY_PROTOCOL is PLAINTEXT" in msg
    assert "TOKENPULSE_KAFKA_SASL_PASSWORD: set" in msg and PW not in msg
    assert "TOKENPULSE_KAFKA_SSL_CAFILE: set, but" in _error(**{**SASL, "kafka_security_protocol": "SASL_PLAINTEXT"},
                                                            kafka_ssl_cafile=tmp_path / "x.pem")


def test_every_client_gets_the_settings_in_its_own_spelling() -> None:
    sec = load_settings(**SASL).kafka_security()
    a = sec.aiokafka()
    assert a["security_protocol"] == "SASL_SSL" and a["sasl_mechanism"] == "SCRAM-SHA-512"
    assert a["sasl_plain_username"] == "tp" and a["sasl_plain_password"] == PW
    assert a["ssl_context"].check_hostname  # the system's CAs, host name checked
    k = sec.kafka_python()
    assert k["ssl_check_hostname"] and k["sasl_plain_password"] == PW and k["ssl_context"] is not None

    from streams.worker.app import faust_settings

    creds = faust_settings(StreamConfig(bootstrap="k:9093", security=sec))["broker_credentials"]
    assert creds.protocol.value == "SASL_SSL" and creds.mechanism.value == "SCRAM-SHA-512"
    assert creds.username == "tp" and PW not in repr(creds)
    plain = faust_settings(StreamConfig(bootstrap="k:9092"))["broker_credentials"]
    assert plain is None
    tls = faust_settings(StreamConfig(bootstrap="k:9093", security=KafkaSecurity("SSL")))["broker_credentials"]
    assert tls.protocol.value == "SSL"


def test_the_password_is_never_shown() -> None:
    settings = load_settings(**SASL)
    sec = settings.kafka_security()
    cfg = StreamConfig(bootstrap="k:9093", security=sec)
    for text in (repr(settings), str(settings), repr(sec), str(sec), sec.describe(), repr(cfg),
                 repr(dataclasses.asdict(cfg)), str(Secret(PW))):
        assert PW not in text
    assert sec.describe() == "SASL_SSL (SCRAM-SHA-512 as tp, system CAs)"


def test_worker_stops_on_a_bad_security_setting_naming_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TOKENPULSE_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("TOKENPULSE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("TOKENPULSE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("TOKENPULSE_KAFKA_SASL_PASSWORD", PW)
    monkeypatch.setenv("TOKENPULSE_KAFKA_SSL_CAFILE", str(tmp_path / "ca.pem"))
    res = CliRunner().invoke(app, ["worker"])
    assert res.exit_code == 2
    assert "TOKENPULSE_KAFKA_SASL_USERNAME: required with SASL_SSL" in res.stderr
    assert "TOKENPULSE_KAFKA_SSL_CAFILE" in res.stderr and "no such file" in res.stderr
    assert PW not in res.output + res.stderr


def test_dev_refuses_security_settings_for_the_embedded_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in SASL.items():
        monkeypatch.setenv(f"TOKENPULSE_{k.upper()}", v)
    res = CliRunner().invoke(app, ["dev", "--no-simulate"])
    assert res.exit_code == 2 and "embedded broker speaks PLAINTEXT" in res.stderr


def test_an_unreachable_broker_is_one_line_after_the_timeout() -> None:
    import time

    from tokenpulse.broker import BrokerError, check_access, free_port

    port = free_port()  # nothing listens there
    t = time.monotonic()
    with pytest.raises(BrokerError) as exc:
        check_access(f"127.0.0.1:{port}", load_settings(**SASL).kafka_security(), timeout=1.0)
    assert time.monotonic() - t < 10
    msg = str(exc.value)
    assert "\n" not in msg and f"cannot reach Kafka (Kafka at 127.0.0.1:{port}" in msg
    assert "TOKENPULSE_KAFKA_SECURITY_PROTOCOL (SASL_SSL)" in msg and PW not in msg
