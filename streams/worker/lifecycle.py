"""An alert's lifecycle state as ``GET /api/alerts`` and the dashboard's alert list say it.

The alerts table holds each key's latest notification, which only knows firing or resolved:
after on-call acknowledges or snoozes an alert, the engine sends nothing more until the
resolve. What on-call did is in the ``feedback`` table, recorded on the same partition as the
alert under either placement (the org's partition with ``series``, the series' judge partition
with ``org``), so the worker that holds an alert also holds its answers and snoozes, and a
forwarded answer merges like any other row. Use :func:`lifecycle` on one alert record of this
worker's tables; do not rebuild the state from the engine (the judge table's state is not read
by any answer, so that ``org`` and ``series`` answer alike).

The states, one per alert, the first that holds:

- ``resolved``: its latest notification is a resolve;
- ``snoozed``: a snooze answer's silence (Snooze 4 h) matches it and is active now, by the clock
  ``/api/silences`` uses;
- ``acknowledged``: on-call acknowledged this incident (Slack's button or PagerDuty), and it had
  not resolved by then;
- ``firing``: nobody has answered it yet in a way that changes its state.

``acknowledged_by``/``acknowledged_at`` stay on a resolved or snoozed incident that was
acknowledged (who knew, and since when); ``snoozed_by``/``snoozed_until`` are set only while
the snooze holds. An alert that is pending (material windows seen, not yet
``fire_after_windows``) has sent no notification and is in no answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from alerts.model import Silence
from streams.common.periods import rfc3339
from streams.worker.feedback import ALREADY

__all__ = ["ALERT_STATES", "LIFECYCLE_STATES", "OPEN", "lifecycle", "wanted"]

LIFECYCLE_STATES = ("firing", "acknowledged", "snoozed", "resolved")
OPEN = "open"  # ?state=open: every alert not resolved (firing, acknowledged or snoozed)
ALERT_STATES = (*LIFECYCLE_STATES, OPEN)
ACK = "tokenpulse_ack"
SNOOZED_BY = "feedback:"  # a snooze silence's created_by: feedback:<user>


def lifecycle(alert: dict[str, Any], answers: Iterable[dict[str, Any]], snoozes: Iterable[Silence],
              now: float) -> dict[str, Any]:
    """The ``state`` of one ``alert`` (a notification record) and who moved it there, given the
    ``answers`` to its incident (``answers_by_incident``'s, ``at`` in epoch seconds), the snooze
    silences of this worker's answers and the wall clock ``now``.

    >>> alert = {"key": "cost_spike:team=ads", "rule": "cost_spike", "series": "team=ads",
    ...          "labels": {"team": "ads"}, "action": "trigger"}
    >>> ack = {"action": "tokenpulse_ack", "user": "ana", "at": 1_800_000_000.0, "outcome": "acknowledged"}
    >>> lifecycle(alert, [ack], [], 1_800_000_100.0)["state"]
    'acknowledged'
    >>> s = Silence(matchers={"series": "team=ads"}, starts_at=1_800_000_000.0, ends_at=1_800_014_400.0,
    ...             reason="snoozed", created_by="feedback:bo")
    >>> got = lifecycle(alert, [ack], [s], 1_800_000_100.0)
    >>> got["state"], got["snoozed_by"], got["snoozed_until"], got["acknowledged_by"]
    ('snoozed', 'bo', '2027-01-15T12:00:00Z', 'ana')
    >>> lifecycle(alert, [ack], [s], 1_800_014_400.0)["state"]  # the snooze is over
    'acknowledged'
    >>> lifecycle({**alert, "action": "resolve"}, [ack], [s], 1_800_000_100.0)["state"]
    'resolved'
    """
    ack = next((a for a in answers if a.get("action") == ACK and not str(a.get("outcome") or "").startswith(ALREADY)
                and isinstance(a.get("at"), int | float)), None)
    out: dict[str, Any] = {
        "state": "firing",
        "acknowledged_by": None if ack is None else ack.get("user") or ack.get("user_id"),
        "acknowledged_at": None if ack is None else rfc3339(float(ack["at"])),
        "snoozed_by": None,
        "snoozed_until": None,
    }
    if alert.get("action") == "resolve":
        out["state"] = "resolved"
        return out
    got = alert.get("labels")
    labels: dict[str, str] = got if isinstance(got, dict) else {}
    rule, series = str(alert.get("rule") or ""), str(alert.get("series") or "")
    holding = [s for s in snoozes if s.matches(rule, series, labels, now)]
    if holding:
        # open-ended first, else the one ending last: on-call wants to know when it speaks again
        last = max(holding, key=lambda s: float("inf") if s.ends_at is None else s.ends_at)
        out["state"] = "snoozed"
        out["snoozed_by"] = last.created_by.removeprefix(SNOOZED_BY)
        out["snoozed_until"] = None if last.ends_at is None else rfc3339(last.ends_at)
    elif ack is not None:
        out["state"] = "acknowledged"
    return out


def wanted(state: str, asked: str | None) -> bool:
    """Whether an alert in ``state`` is in the answer to ``?state=asked`` (None: every alert).

    >>> [wanted(s, "open") for s in LIFECYCLE_STATES]
    [True, True, True, False]
    """
    return asked is None or state == asked or (asked == OPEN and state != "resolved")
