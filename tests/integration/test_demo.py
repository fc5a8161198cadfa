"""`make run`'s spike alerts: ``tokenpulse dev`` as a user starts it -- its own embedded broker,
its worker, its simulator, its API, the default policy with no gate of its own -- with the demo's
spike (team ads at 8x for 15 minutes, after three hours of traffic) placed in the simulator's
backfill instead of four minutes into the live traffic.

The worker judges windows by event time, so the incident plays exactly as it does live, only
as fast as the backfill is written: the test takes about a minute instead of twenty. The first
alert on the spike (the team's, unless the org's came first and inhibited it) must start within
three minutes (of event time) of the spike's start -- live, the window's lateness (10 s) comes on
top -- and every alert on it must resolve once the spike is over, back to normal no earlier than the
spike's end (``ended_at``). The org alert itself may come
minutes later: its money gate is ten minutes of the whole org's spend (``python
scripts/demo_alert_hours.py`` replays the demo at every third hour of a week and prints both).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import ROOT, get_json, wait_until
from tokenpulse.broker import free_port
from tokenpulse.replay import to_epoch

pytestmark = pytest.mark.integration

BASELINE_H = 3.0  # traffic before the spike (the demo's own backfill: 3 h, then 4 min live)
SPIKE_MINUTES = 15  # the demo's own
AFTER_MINUTES = 6  # normal backfill after the spike: the alert resolves after 3 normal windows
BATCH_AT, BATCH_SECONDS = 2 * 3600, 1800  # team data's nightly batch, UTC (tokenpulse.simulate)


def _ads(url: str) -> list[dict[str, Any]]:
    """The alerts naming team ads: its own (or its group's), then the org's with ads as its
    top contributor (while the org alert fires it inhibits the teams' new ones)."""
    alerts = get_json(f"{url}/api/alerts")["alerts"]
    own, org = [], []
    for a in alerts:
        if "team=ads" in _names(a):
            own.append(a)
        elif any(c.get("kind") == "team" and c["name"] == "ads" for c in (a.get("top_contributors") or [])[:1]):
            org.append(a)
    return own + org


def _names(a: dict[str, Any]) -> set[Any]:
    """The series an alert covers: its own and its group's members'."""
    return {a.get("series")} | {m.get("series") for m in a.get("members") or []}


def place_spike(now: float) -> float:
    """The spike's start: on a minute, ending ``AFTER_MINUTES`` before ``now``, unless that puts
    it near the simulator's nightly batch of team ``data`` (02:00-02:30 UTC, ``Team.nightly_batch``).
    Three hours of history hold no earlier night, so the detectors rightly flag the batch, and
    the org's alert it opens would take the ads spike in as its member, started before the spike
    (a run at 02:43 UTC failed so). Near the batch, the spike is placed to end half an hour before
    it (the backfill grows by that much).

    >>> from datetime import datetime, UTC
    >>> at = lambda h, m: datetime(2026, 12, 7, h, m, tzinfo=UTC).timestamp()
    >>> datetime.fromtimestamp(place_spike(at(12, 0)), UTC).strftime("%H:%M")
    '11:39'
    >>> datetime.fromtimestamp(place_spike(at(2, 43)), UTC).strftime("%H:%M")
    '01:09'
    """
    start = float(int(now - 60 * (SPIKE_MINUTES + AFTER_MINUTES)) // 60 * 60)
    day = start // 86400 * 86400
    for batch in (day - 86400 + BATCH_AT, day + BATCH_AT, day + 86400 + BATCH_AT):
        # the spike and the windows its alert needs to resolve, with 30 minutes either side
        if start - 1800 < batch + BATCH_SECONDS and batch < start + 60 * (SPIKE_MINUTES + AFTER_MINUTES) + 1800:
            return batch - 1800 - 60 * (SPIKE_MINUTES + AFTER_MINUTES)
    return start


def test_make_run_spike_alerts_within_three_minutes_and_resolves(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "TOKENPULSE_WEB_PORT": str(port), "TOKENPULSE_DATA_DIR": str(tmp_path / "data")}
    for k in list(env):
        if k.startswith("TOKENPULSE_") and k not in ("TOKENPULSE_WEB_PORT", "TOKENPULSE_DATA_DIR"):
            env.pop(k)  # the dev stack's own settings: its embedded broker, the default policy
    now = time.time()
    # the spike starts on a minute, as a window does: started at second 59, its first window held
    # one second of it, and the alert came one window later (183-203 s in 4 of 8 runs on a
    # Sunday evening) -- the three minutes are counted from the spike's first whole window
    spike_start = place_spike(now)
    spike_end = spike_start + 60 * SPIKE_MINUTES
    backfill_h = BASELINE_H + (now - spike_start) / 3600
    log = open(tmp_path / "dev.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "tokenpulse", "dev", "--backfill-hours", f"{backfill_h:.4f}",
         "--spike", f"team=ads,factor=8,minutes={SPIKE_MINUTES},start={spike_start:.0f}"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        # Every alert on the spike, once all have resolved. Not the first one seen resolved: the
        # org's and the team's resolve in one judge step, the org's first, and a poll between
        # the two (likelier on a busy machine) saw only the org alert -- which its money gate
        # (ten minutes of the org's spend) lets fire minutes after the team's, by design.
        alerts = wait_until(lambda: (got := _ads(url)) and all(a["action"] == "resolve" for a in got) and got,
                            150, "the ads alerts to fire and resolve")
        a = min(alerts, key=lambda a: to_epoch(a["started_at"], "started_at"))  # the first alert on the spike
        started = to_epoch(a["started_at"], "started_at")
        # the first anomalous window [started, started + 60) alerted: 3 minutes from the spike's start
        alerted = started + 60
        assert spike_start - 60 < started, f"an alert from before the spike: {a}"
        assert alerted - spike_start <= 180, f"alerted {alerted - spike_start:.0f}s after the spike started: {alerts}"
        # every alert on the spike resolves after it: the team's, the org's, and another org-wide
        # series' with ads on top (provider=..., model=...), which can flag one window of the spike
        # and then score under the threshold at ~2x its expected spend -- before hysteresis on
        # resolve (alerts.resolve_max_excess_pct) it resolved three windows later, mid-spike (2 of
        # 3 runs on a Sunday evening). ended_at: when the spend was back to normal, as the resolve says
        for b in alerts:
            assert to_epoch(b["fired_at"], "fired_at") >= spike_end, f"resolved before the spike ended: {b}"
            assert to_epoch(b["ended_at"], "ended_at") >= spike_end, f"back to normal before the spike ended: {b}"
    except AssertionError as exc:
        tail = (tmp_path / "dev.log").read_text(errors="replace")[-4000:]
        raise AssertionError(f"{exc}\n--- dev log\n{tail}") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: dev stops its simulator and broker
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()
