"""The placement recorded on the broker (tokenpulse.placement, docs/deploying.md#placement): a
worker records the placement it starts with on ``<APP_ID>-meta``; restarted with the other
placement it switches only when ``TOKENPULSE_PLACEMENT`` is given, and otherwise stops at once
with an error that names both placements and the setting. A deployment of a version before the
record (judge state, no record) counts as ``org``.

Tansu only: the Apache Kafka tier writes and reads the record at every worker start of its other
tests (one compacted topic, acks=all)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import ROOT, Worker, deployment_env, produce, wait_until
from tokenpulse.broker import ensure_topics
from tokenpulse.placement import PlacementError, check_placement, meta_topic, read_record
from tokenpulse.settings import Settings

pytestmark = pytest.mark.integration

DEFAULT = str(Settings.model_fields["placement"].default)
OTHER = "org" if DEFAULT == "series" else "series"


def _tansu_only(broker: Any) -> None:
    if broker.flavor != "tansu":
        pytest.skip("the Apache Kafka tier records the placement at every worker start of its other tests")


def test_restart_with_the_other_placement_switches_only_when_given(broker: Any, workdir: Path) -> None:
    _tansu_only(broker)
    env = deployment_env(broker, workdir, partitions=1, tag="pr")  # TOKENPULSE_PLACEMENT not given
    app_id = env["TOKENPULSE_APP_ID"]

    first = Worker(env, workdir / "worker1.log")
    first.start(partitions=1)
    try:
        assert read_record(broker.bootstrap, app_id) == DEFAULT  # a new deployment records its default
    finally:
        first.stop()
    assert f"placement: {DEFAULT!r} recorded on {meta_topic(app_id)} (a new deployment)" in first.log_tail(400)

    # given explicitly, the other placement switches the deployment, says so and records it before
    # Faust starts (waiting for its group again would only repeat the start above)
    given = Worker({**env, "TOKENPULSE_PLACEMENT": OTHER}, workdir / "worker2.log")
    with open(given.log_path, "ab") as log:
        given.proc = subprocess.Popen([sys.executable, "-m", "tokenpulse", "worker"], cwd=ROOT, env=given.env,
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: "[^-WorkerApp]: Starting" in given.log_tail(), 60, "the switched worker to start Faust")
        assert read_record(broker.bootstrap, app_id) == OTHER
    finally:
        given.stop()
    assert f"[WARNING] placement: switching this deployment from {DEFAULT!r} to {OTHER!r}" in given.log_tail(400)

    # the default again, not given: that would switch back silently, so the worker does not start
    run = subprocess.run([sys.executable, "-m", "tokenpulse", "worker"], cwd=ROOT, env={**given.env,
                         "TOKENPULSE_PLACEMENT": ""}, capture_output=True, text=True, timeout=90)
    assert run.returncode == 2, run.stdout + run.stderr
    assert f"written with TOKENPULSE_PLACEMENT={OTHER} (as recorded on the broker)" in run.stderr
    assert f"would start with {DEFAULT!r}, the default" in run.stderr
    assert f"TOKENPULSE_PLACEMENT={DEFAULT} explicitly" in run.stderr
    assert read_record(broker.bootstrap, app_id) == OTHER  # and nothing was recorded


def test_state_of_a_version_before_the_record_counts_as_org(broker: Any, workdir: Path) -> None:
    _tansu_only(broker)
    env = deployment_env(broker, workdir, partitions=1, tag="pv")
    app_id = env["TOKENPULSE_APP_ID"]
    ensure_topics(broker.bootstrap, [(meta_topic(app_id), 1)], compacted=[meta_topic(app_id)])
    # what the previous version leaves: judge state on Faust's changelog, no record
    ensure_topics(broker.bootstrap, [(f"{app_id}-judge-changelog", 1)], compacted=[f"{app_id}-judge-changelog"])
    produce(broker.bootstrap, f"{app_id}-judge-changelog", [(b"0|detectors", b"{}")])

    with pytest.raises(PlacementError, match="TOKENPULSE_PLACEMENT=org \\(taken as 'org'"):
        check_placement(broker.bootstrap, app_id, "series", explicit=False)
    assert read_record(broker.bootstrap, app_id) is None
    assert check_placement(broker.bootstrap, app_id, "org", explicit=False).unrecorded
    assert read_record(broker.bootstrap, app_id) == "org"
    assert check_placement(broker.bootstrap, app_id, "series", explicit=True).previous == "org"
    assert read_record(broker.bootstrap, app_id) == "series"
