"""The integration tier: a real broker started by the tests (Tansu always; Apache Kafka when
Java is here), real kafka-python / aiokafka clients, and local servers speaking the Slack Web
API and PagerDuty Events v2."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.pagerduty_server import FakePagerDutyServer
from tests.fakes.slack_server import FakeSlackServer
from tests.integration import apache_kafka
from tokenpulse.broker import EmbeddedBroker

pytestmark = pytest.mark.integration


@dataclass
class Broker:
    flavor: str
    bootstrap: str


def _broker_params() -> list[object]:
    params: list[object] = ["tansu"]
    why = apache_kafka.available()
    if why is True:
        params.append("kafka")
    elif os.environ.get("CI"):
        # CI must run both tiers: a missing Java or Maven there is a failure, not a skip.
        params.append("kafka")
    else:
        params.append(pytest.param("kafka", marks=pytest.mark.skip(reason=f"Apache Kafka tier: {why}")))
    return params


@pytest.fixture(scope="session", params=_broker_params())
def broker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    workdir = tmp_path_factory.mktemp(f"broker-{request.param}")
    if request.param == "tansu":
        b = EmbeddedBroker(log_path=workdir / "tansu.log")
        bootstrap = b.start()
        try:
            yield Broker("tansu", bootstrap)
        finally:
            b.stop()
    else:
        k = apache_kafka.ApacheKafka()
        bootstrap = k.start(workdir)
        try:
            yield Broker("kafka", bootstrap)
        finally:
            k.stop(grace=0)  # its data goes with the session: no clean shutdown to wait for


@pytest.fixture
def slack() -> Iterator[FakeSlackServer]:
    with FakeSlackServer(token="xoxb-test-secret-token-1234") as s:
        yield s


@pytest.fixture
def pagerduty() -> Iterator[FakePagerDutyServer]:
    with FakePagerDutyServer() as s:
        yield s


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``pytest -n 2 --dist loadgroup`` (``make test``) the tests on one broker run in one
    worker process, so each broker starts once per session: Tansu's tests in one process, Apache
    Kafka's in the other, at the same time (they mostly wait on wall-clock windows)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        flavor = callspec.params.get("broker") if callspec is not None else None
        if flavor in ("tansu", "kafka"):
            item.add_marker(pytest.mark.xdist_group(flavor))
