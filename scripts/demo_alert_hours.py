"""How soon the demo's spike alerts, at each hour of a week: the offline replay (the worker's own
windows, detectors and alert lifecycle, event time as the clock) of the dev stack's traffic --
the demo teams at 20 events/s, three hours of history, team ads at 8x for 15 minutes -- with
"now" at every ``--every`` hours from a Monday 00:00 UTC.

Use it when a change to the detectors, the demo policy or the simulator could make ``make run``
(or tests/integration/test_demo.py, which places the spike 21 minutes before now) alert late at
some hour. One line per hour: seconds from the spike's start to the end of the window that
alerted, for the team's alert (team=ads or a member of its group, team=ads|model=...) and for
the org's (None: no alert)::

    .venv/bin/python scripts/demo_alert_hours.py --every 3 --placement test

A week at every third hour takes about four minutes on one core.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tokenpulse.demo import demo_policy_text
from tokenpulse.policy import parse_policy
from tokenpulse.replay import replay_lines, to_epoch
from tokenpulse.runtime import stream_config
from tokenpulse.settings import Settings
from tokenpulse.simulate import DEMO_TEAMS, Simulator, Spike

MONDAY = datetime(2026, 11, 30, tzinfo=UTC).timestamp()


def first_alerts(now: float, placement: str, backfill_h: float, factor: float) -> tuple[float | None, float | None]:
    """(team alert, org alert): seconds from the spike's start to the end of the first window
    that alerted on it."""
    if placement == "test":  # tests/integration/test_demo.py: in the backfill, 21 minutes before now
        spike = float(int(now - 21 * 60) // 60 * 60)  # on a minute, as the test places it
        start, end = spike - backfill_h * 3600, now
    else:  # `make run`: the backfill ends now, the spike starts 4 minutes into the live traffic
        spike = now + 240
        start, end = now - backfill_h * 3600, spike + 21 * 60
    cfg = stream_config(Settings(), parse_policy(demo_policy_text().encode(), "demo"), bootstrap="", partitions=1)
    sim = Simulator(rate=20.0, teams=DEMO_TEAMS, spikes=[Spike("ads", factor=factor, minutes=15, start=spike)])
    res = replay_lines((orjson.dumps(ev) for ev in sim.between(start, end, start)), cfg, fork=False)
    team = org = None
    for f in res.firings:
        if to_epoch(f["window_start"], "window_start") < spike - 60:
            continue
        after = to_epoch(f["window_end"], "window_end") - spike
        tops = f.get("top_contributors") or []
        if f["series"] == "team=ads" or f["series"].startswith("team=ads|"):  # the team's group
            team = after if team is None else min(team, after)
        elif f["series"] == "org" and tops and tops[0].get("name") == "ads":
            org = after if org is None else min(org, after)
    return team, org


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--every", type=int, default=3, help="hours between two runs (default 3)")
    ap.add_argument("--placement", choices=("test", "run"), default="test",
                    help="the spike as test_demo places it (21 min before now) or as `make run` does (4 min after)")
    ap.add_argument("--backfill-hours", type=float, default=3.0)
    ap.add_argument("--factor", type=float, default=8.0)
    args = ap.parse_args()
    for h in range(0, 168, args.every):
        now = MONDAY + h * 3600 + 17  # not on a minute boundary, as a real start is not
        team, org = first_alerts(now, args.placement, args.backfill_hours, args.factor)
        print(f"{datetime.fromtimestamp(now, UTC):%a %H:%M}  team={team}  org={org}", flush=True)


if __name__ == "__main__":
    main()
