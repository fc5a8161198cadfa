"""On-call's answers to alerts, applied by the worker that judges the series.

Every press of a Slack button (:mod:`streams.worker.slack_actions`) is an event on
``<prefix>.feedback``, keyed by series, on the series' judge partition; the ``feedback`` agent
hands each to :meth:`FeedbackWorker.apply` on the worker that holds that partition:

- ``tokenpulse_ack`` (Acknowledge): the alert (or the group it leads) stops its repeat and
  worsened updates (:meth:`alerts.engine.AlertEngine.acknowledge`);
- ``tokenpulse_new_normal`` (Expected, new normal): the series' detector adopts the current
  level (``rebase()``, :meth:`streams.judge.core.JudgeCore.rebase`) and the alert resolves
  (:meth:`alerts.engine.AlertEngine.resolve_now`), its resolve sent like any other;
- ``tokenpulse_snooze_4h`` (Snooze 4 h): a silence on the series for 4 hours, listed by
  ``/api/silences`` (``created_by: feedback:<user>``);
- ``tokenpulse_resolve`` (the page resolved in PagerDuty, :mod:`streams.worker.pagerduty_webhook`;
  no button): the alert resolves, the detector is left as it is; PagerDuty's acknowledgement is
  ``tokenpulse_ack`` with ``source: pagerduty``;
- ``tokenpulse_not_anomaly`` (Not an anomaly): the series' alert floor rises
  (:func:`streams.judge.raising.not_anomaly`, the step the offline replay takes too): an
  incident the size of the one answered no longer alerts, a larger one still does, within the
  bounds of the policy's ``detector.feedback``; the answer (who, when, which alert) is kept with
  the raise, which ``/api/feedback`` lists under ``raised``.

With ``TOKENPULSE_PLACEMENT=series`` an answer has two parts on two partitions. The event still
goes to the org's partition (:func:`~streams.common.partitioning.judge_partition` of its series,
where the org stage holds the alert: :mod:`streams.worker.organizing`), and the part that acts on
the alert (acknowledge, resolve, snooze, the resolve of a new normal, which series a "not an
anomaly" speaks for) is applied there, on the org stage's engine. The detector part -- the
``rebase()`` of "expected, new normal", the floor of "not an anomaly" -- is sent on the same
topic to the judge partition of each series it concerns
(:func:`~streams.common.partitioning.series_partition`), as an event of its own (``part:
detector``, id ``<answer id>|det|<series>``), applied once there like any answer, counted by
``feedback_detector_total`` and left out of ``/api/feedback`` (the answer is listed once, with
the org stage's record). A new normal's rebase is marked in the judge's next verdicts, and until
that mark reaches the org stage it does not let the series' windows judged with the old baseline
raise the alert it resolved again (:meth:`streams.org.core.OrgCore.await_rebase`).

Exactly once: the ids applied are the keys of the ``feedback`` table (its changelog survives a
restart). The judge's state the answer changed is checkpointed first, the record that says it
was applied after: a crash between the two applies it again, which changes nothing more (an
acknowledged alert stays acknowledged, a rebased detector rebases on the same level, a resolved
alert is not firing any more, the snooze silence has the answer's id, a raise from the same
peak gives the same floor).

The ``feedback`` table is bounded (:meth:`FeedbackWorker.prune`, on the partition an answer is
applied on, at most once every :data:`PRUNE_EVERY_S`): an answer is kept :data:`KEEP_S` (31 days,
longer than the dashboard's 30-day table reads) after it was given, and a partition keeps at
most :data:`KEEP_MAX`, the oldest going first. An event older than :data:`KEEP_S` is refused
(``outcome: expired``), so a pruned id cannot be applied a second time by age; only the count
cap, a guard against a flood, could let a very old redelivery through.

Then the message is answered in Slack (:meth:`alerts.receivers.slack.SlackSink.answer`): rewritten
in place with who chose what and when, and a line in its thread. A failure there is logged and
counted; the answer itself stays applied.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from alerts.model import Notification, Silence
from alerts.receivers.slack.render import FEEDBACK_ACTIONS, answered_message, answered_text
from streams.common.metrics import Metrics
from streams.common.partitioning import judge_partition, series_partition
from streams.judge.raising import not_anomaly
from streams.worker.judging import JudgeWorker
from streams.worker.organizing import OrgWorker
from streams.worker.tables import Table, persist, written

__all__ = ["KEEP_MAX", "KEEP_S", "SNOOZE_S", "SUMMARY_DAYS", "FeedbackWorker", "answers_by_incident", "feedback_rows",
           "feedback_summary"]

log = logging.getLogger(__name__)

SNOOZE_S = 4 * 3600.0
RESOLVE = "tokenpulse_resolve"  # resolved in PagerDuty (streams.worker.pagerduty_webhook): no button of its own
ACTIONS = (*FEEDBACK_ACTIONS, RESOLVE)
SUMMARY_DAYS = 30  # the span of the per-team table of GET /api/feedback
ALREADY = "the alert had already resolved"
NOTE_RESOLVED = f"{ALREADY}: nothing changed"
KEEP_S = (SUMMARY_DAYS + 1) * 86400.0  # an answer's record is kept this long after it was given
KEEP_MAX = 50_000  # answers kept per partition at most (the oldest go first)
PRUNE_EVERY_S = 3600.0  # a partition is pruned at most this often (and whenever it holds too many)
DETECTOR = "detector"  # the ``part`` of an answer's detector part, sent to a series' judge partition
DETECTOR_ACTIONS = ("tokenpulse_new_normal", "tokenpulse_not_anomaly")  # the answers that have one

# (judge partition, key, value): a send to the feedback topic; awaited, it gives the broker's future
Forward = Callable[[int, bytes, bytes], Awaitable[Any]]


@dataclass
class _Stage:
    """Where the alert part of an answer is applied: the engine holding the alert, how its
    changed states are marked for the next checkpoint, the event time reached there."""

    engine: Any
    alerts_changed: Callable[..., None]
    done_until: int | None
    # the org stage apart: a new normal's series wait for their judges' rebase marks
    await_rebase: Callable[[list[str], str, float], None] | None = None


class FeedbackWorker:
    """Applies the feedback events of the judge partitions this worker holds, once each, and
    answers the Slack message. ``deliverer`` is the delivery side's
    :class:`streams.delivery.outbox.Deliverer` (its Slack sink answers); None: no answer.

    ``organizing``: the org stage apart from the judges (``TOKENPULSE_PLACEMENT=series``; None:
    beside each judge), where the alert part of an answer is applied; ``forward`` then sends
    the detector part to the series' judge partition (the feedback topic)."""

    def __init__(self, metrics: Metrics, table: Table, judging: JudgeWorker, deliverer: Any = None, *,
                 organizing: OrgWorker | None = None, forward: Forward | None = None,
                 clock: Callable[[], float] = time.time, keep_s: float = KEEP_S, keep_max: int = KEEP_MAX) -> None:
        self.metrics = metrics
        self.table = table
        self.judging = judging
        self.organizing = organizing
        self.forward = forward
        self.deliverer = deliverer
        self.clock = clock
        self.keep_s = keep_s
        self.keep_max = keep_max
        self._pruned_at: dict[int, float] = {}  # partition -> when it was last pruned

    # -- snoozes -----------------------------------------------------------------------------
    def silences(self) -> list[Silence]:
        """The silences that snooze answers made (active or not: ``/api/silences`` says which)."""
        out = []
        for rec in list(self.table.data.values()):
            s = (rec or {}).get("silence")
            if s:
                out.append(Silence.from_dict(s))
        return sorted(out, key=lambda s: s.starts_at)

    def install(self, engine: Any) -> None:
        """Add the snooze silences to ``engine``'s policy (a judge made or a policy reloaded:
        the policy's own silences do not include them). Ended ones too: silences run on event
        time, which only the windows tell, and an ended one matches nothing."""
        have = {s.id for s in engine.policy.silences}
        extra = tuple(s for s in self.silences() if s.id not in have)
        if extra:
            engine.policy.silences = (*engine.policy.silences, *extra)

    # -- one answer --------------------------------------------------------------------------
    async def apply(self, p: int, event: dict[str, Any]) -> dict[str, Any] | None:
        """Apply one feedback event of judge partition ``p``; returns its record (None: it was
        applied before, or it is not an answer this version knows, which is logged)."""
        fid, action = str(event.get("id") or ""), str(event.get("action") or "")
        if not fid or action not in ACTIONS or not event.get("key") or not event.get("series"):
            self.metrics.inc("feedback_total", labels={"action": "unknown", "outcome": "unreadable"})
            log.warning("feedback event skipped: no id, key or series, or unknown action %r", action[:40])
            return None
        if fid in self.table.data:
            self.metrics.inc("feedback_total", labels={"action": action, "outcome": "duplicate"})
            return None
        given = event.get("at")
        if isinstance(given, int | float) and given < self.clock() - self.keep_s:
            # older than the records of applied ids are kept: it may have been applied and pruned
            self.metrics.inc("feedback_total", labels={"action": action, "outcome": "expired"})
            log.warning("feedback %s on %s skipped: given more than %d days ago", action, event["key"],
                        self.keep_s // 86400)
            return None
        if event.get("part") == DETECTOR:
            return await self._apply_detector(p, fid, action, event)
        org = self.organizing
        parts: list[tuple[int, dict[str, Any]]] = []  # detector parts for the series' judges (org apart)
        if org is None:
            j: Any = self.judging.judge_for(p)
            stage = _Stage(j.engine, j.alerts_changed, j.done_until)
            outcome, notes, silence = self._effect(stage, event, j, parts)
        else:
            o = org.org_for(p)
            j = None  # the series' judge is on its own partition, maybe another worker's
            outcome, notes, silence = self._effect(_Stage(o.engine, o.alerts_changed, o.done_until, o.await_rebase),
                                                   event, None, parts)
        for note in notes:
            await self.judging.notify(p, note)
        # the state the answer changed, before its record
        if org is None:
            await self.judging.checkpoint(p, self.clock())
        else:
            await org.checkpoint(p, self.clock())
        unsent = await self._send_parts(parts)  # on the broker before the record: a replay sends them again
        if unsent and org is not None:
            await self._cancel_waits(org, p, fid, unsent)
        record = {**{k: event.get(k) for k in ("id", "action", "key", "series", "started_at", "window_end", "user",
                                               "user_id", "channel", "message_ts", "at", "source", "url")},
                  "team": _team(j, str(event["series"])), "org": _org(j, str(event["series"])),
                  "outcome": outcome, "applied_at": self.clock(), "p": p}
        if silence is not None:
            record["silence"] = silence.to_dict()
        persist(self.table, p, fid, record)
        self.metrics.inc("feedback_total", labels={"action": action, "outcome": "applied"})
        log.info("feedback %s on %s by %s: %s", action, event["key"], event.get("user"), outcome)
        await self.answer(p, record)
        self.maybe_prune(p)
        return record

    # -- the detector part, on the series' judge partition (org stage apart) -------------------
    def _detector_part(self, event: dict[str, Any], series: str, answer: dict[str, Any] | None = None
                       ) -> tuple[int, dict[str, Any]]:
        """The detector part of the answer ``event`` for ``series``: its judge partition and event."""
        part = {k: event.get(k) for k in ("action", "key", "started_at", "window_end", "user", "user_id", "at",
                                          "source")}
        part.update(id=f"{event['id']}|det|{series}", part=DETECTOR, series=series, answer=answer,
                    answer_id=str(event["id"]))
        return series_partition(series, self.judging.n), part

    async def _send_parts(self, parts: list[tuple[int, dict[str, Any]]]) -> list[str]:
        """Send the detector parts and wait until the broker has them; returns the series whose
        part the topic did not take. Each such part is logged and counted
        (``feedback_total{outcome="detector_not_sent"}``): the alert part stays applied, and the
        answer's record says what was sent."""
        if not parts:
            return []
        if self.forward is None:
            raise RuntimeError("the org stage apart needs a feedback topic to send detector parts on")
        futs = []
        for q, part in parts:
            futs.append(await self.forward(q, str(part["series"]).encode(), orjson.dumps(part)))
        unsent = []
        for (_, part), fut in zip(parts, futs, strict=True):  # one at a time: which series failed
            for exc in await written([fut]):
                unsent.append(str(part["series"]))
                self.metrics.inc("feedback_total", labels={"action": str(part["action"]),
                                                           "outcome": "detector_not_sent"})
                log.error("feedback %s: a detector part did not reach the feedback topic: %r", part["id"], exc)
        return unsent

    async def _cancel_waits(self, org: OrgWorker, p: int, answer: str, series: list[str]) -> None:
        """A new normal's detector parts for ``series`` were not sent: no judge will mark their
        rebase, so org partition ``p`` stops waiting for it now (their flagged windows count
        again) rather than after ``rebase_wait_s`` (an hour of a real spike unpaged). Counted by
        ``org_rebase_marks_total{outcome="not_sent"}`` and checkpointed before the answer's record."""
        o = org.org_for(p)
        gone = [s for s in series if o.cancel_rebase(s, answer)]
        if not gone:
            return
        org.metrics.inc("org_rebase_marks_total", len(gone), labels={"outcome": "not_sent"})
        log.warning("feedback %s: org partition %d no longer waits for the rebase mark of %s (its detector part "
                    "was not sent); their flagged windows count again", answer, p, ", ".join(gone))
        await org.checkpoint(p, self.clock())

    async def _apply_detector(self, q: int, fid: str, action: str, event: dict[str, Any]) -> dict[str, Any] | None:
        """Apply one detector part on judge partition ``q`` (the series' own), once: rebase the
        series' detector ("expected, new normal") or raise its floor ("not an anomaly")."""
        series, key = str(event["series"]), str(event["key"])
        if action not in DETECTOR_ACTIONS:
            self.metrics.inc("feedback_total", labels={"action": action, "outcome": "unreadable"})
            log.warning("feedback detector part %s skipped: %s has none", fid, action)
            return None
        j = self.judging.judge_for(q)
        if action == "tokenpulse_new_normal":
            # the answer's id marks the rebase in the judge's next verdicts (parts sent before
            # the field existed: their id is "<answer id>|det|<series>")
            answer_id = str(event.get("answer_id") or fid.removesuffix(f"|det|{series}"))
            outcome = "rebased" if j.rebase(series, mark=answer_id) else "no_detector"
        else:
            live = self.judging.live
            given = event.get("answer")
            answer: dict[str, Any] = given if isinstance(given, dict) else {}
            r = j.raise_floor(series, live.not_anomaly_step, live.not_anomaly_max_raise, {**answer, "key": key})
            outcome = "raised" if r is not None else "not_raised"
        await self.judging.checkpoint(q, self.clock())  # the detector state, before the record
        record = {"id": fid, "part": DETECTOR, "action": action, "key": key, "series": series,
                  "at": event.get("at"), "outcome": outcome, "applied_at": self.clock(), "p": q}
        persist(self.table, q, fid, record)
        self.metrics.inc("feedback_detector_total", labels={"action": action, "outcome": outcome})
        log.info("feedback %s on %s: detector part on judge partition %d: %s", action, series, q, outcome)
        self.maybe_prune(q)
        return record

    # -- bounded memory of the ids applied ---------------------------------------------------
    def maybe_prune(self, p: int) -> int:
        """:meth:`prune` partition ``p`` if it was not pruned within :data:`PRUNE_EVERY_S` or
        holds more than ``keep_max`` answers (a scan of the table: not on every answer)."""
        now = self.clock()
        if now - self._pruned_at.get(p, -float("inf")) < PRUNE_EVERY_S and len(self.table.data) <= self.keep_max:
            return 0
        self._pruned_at[p] = now
        return self.prune(p, now)

    def prune(self, p: int, now: float) -> int:
        """Delete partition ``p``'s answers given more than ``keep_s`` before ``now``, then its
        oldest beyond ``keep_max`` (from the table and its changelog). Returns how many."""
        n = self.judging.n
        mine = []
        for fid, rec in list(self.table.data.items()):
            if not rec:
                continue
            q = rec.get("p")
            if q is None:  # recorded before records said their partition
                q = judge_partition(str(rec.get("series") or ""), n)
            if q == p:
                given = rec.get("at") if isinstance(rec.get("at"), int | float) else rec.get("applied_at")
                mine.append((float(given) if isinstance(given, int | float) else 0.0, fid))
        mine.sort()
        old = [fid for t, fid in mine if t < now - self.keep_s]
        extra = max(0, len(mine) - len(old) - self.keep_max)
        gone = old + [fid for _, fid in mine[len(old):len(old) + extra]]
        for fid in gone:
            persist(self.table, p, fid, None)
        if gone:
            self.metrics.inc("feedback_pruned_total", len(gone))
            log.info("feedback: %d answers of partition %d pruned (older than %d days or beyond %d)", len(gone), p,
                     self.keep_s // 86400, self.keep_max)
        return len(gone)

    def _effect(self, j: _Stage, event: dict[str, Any], judge: Any,
                parts: list[tuple[int, dict[str, Any]]]) -> tuple[str, list[Notification], Silence | None]:
        """The alert part of one answer on ``j``; the detector part on ``judge`` (the org
        stage beside it), or, with ``judge`` None (the org stage apart), appended to ``parts``
        for the series' judge partitions."""
        engine = j.engine
        action, key, series = str(event["action"]), str(event["key"]), str(event["series"])
        started = event.get("started_at")
        started_at = float(started) if isinstance(started, int | float) else None
        at = float(event.get("at") or self.clock())  # wall clock: when on-call answered
        # event time, which the engine and silences run on: the windows judged so far
        window = event.get("window_end")
        at_ev = max(float(window) if isinstance(window, int | float) else 0.0, float(j.done_until or 0))
        firing = engine.answered(key, started_at)
        if action == "tokenpulse_ack":
            keys = engine.acknowledge(key, str(event.get("user") or event.get("user_id") or ""), at, started_at)
            j.alerts_changed(keys)
            return ("acknowledged: no more repeats" if keys else NOTE_RESOLVED), [], None
        if action == "tokenpulse_new_normal":
            series_all = [st.series for st in firing] or [series]
            if judge is None:
                parts.extend(self._detector_part(event, s) for s in series_all)
                what = f"baseline re-anchoring sent to the judges of {len(series_all)} series"
                if j.await_rebase is not None:  # windows judged before it reaches them raise nothing
                    j.await_rebase(series_all, str(event["id"]), at_ev)
            else:
                rebased = [s for s in series_all if judge.rebase(s)]
                what = f"baseline re-anchored on {len(rebased)} series" if rebased else "no detector for the series here"
            who = str(event.get("user") or event.get("user_id") or "on-call")
            notes = engine.resolve_now(key, at_ev, started_at, why=f"{who} answered: expected, a new normal")
            j.alerts_changed([st.key for st in firing], engine.changed_groups)
            # resolved now: a firing alert, or a team's group whose resolve flap damping held
            return (f"{what}; resolved" if firing or notes else f"{what}; {NOTE_RESOLVED}"), list(notes), None
        if action == RESOLVE:  # the page was resolved in PagerDuty: the alert resolves, the detector is left alone
            who = str(event.get("user") or "on-call")
            notes = engine.resolve_now(key, at_ev, started_at, why=f"{who} resolved the page in PagerDuty")
            j.alerts_changed([st.key for st in firing], engine.changed_groups)
            return ("resolved" if firing or notes else NOTE_RESOLVED), list(notes), None
        if action == "tokenpulse_snooze_4h":
            silence = Silence(matchers={"series": series}, starts_at=at_ev, ends_at=at_ev + SNOOZE_S,
                              reason="snoozed for 4 h from Slack",
                              created_by=f"feedback:{event.get('user') or event.get('user_id') or ''}",
                              id=str(event["id"]))
            engine.policy.silences = (*engine.policy.silences, silence)
            return "silenced for 4 h" + ("" if firing else f" ({ALREADY})"), [], silence
        # tokenpulse_not_anomaly: the series' alert floor rises, the answer kept with it as the reason
        live = self.judging.live
        who = str(event.get("user") or event.get("user_id") or "on-call")
        answer = {"id": str(event["id"]), "by": who, "at": at, "window_end": at_ev}
        if judge is None:
            # the series it speaks for, as not_anomaly() finds them; their floors on their judges
            names = [st.series for st in firing] or [series]
            parts.extend(self._detector_part(event, s, answer) for s in names)
            what = f"recorded; the alert floor raise sent to the judges of {len(names)} series"
            return what + ("" if firing else f" ({ALREADY})"), [], None
        _, lines = not_anomaly(judge, key, series, started_at, step=live.not_anomaly_step,
                               max_raise=live.not_anomaly_max_raise, answer=answer)
        what = "recorded; " + "; ".join(lines) if lines else "recorded (no threshold raised)"
        return what + ("" if firing else f" ({ALREADY})"), [], None

    async def answer(self, p: int, record: dict[str, Any]) -> None:
        """Rewrite the answered message in place (every answer to that incident so far, in
        order) and say who chose what in its thread."""
        channel, ts = record.get("channel"), record.get("message_ts")
        if self.deliverer is None or not channel or not ts:
            return
        sink = self.deliverer.sink("slack", str(channel))
        latest = self.judging.tables.alerts.data.get(str(record["key"]))
        if sink is None or not hasattr(sink, "answer") or latest is None:
            return
        try:
            n = Notification.from_dict(latest)
        except ValueError:
            log.warning("feedback on %s: its notification cannot be read; the message is not rewritten", record["key"])
            return
        answers = sorted((r for r in list(self.table.data.values())
                          if r and r.get("channel") == channel and r.get("message_ts") == ts),
                         key=lambda r: float(r.get("at") or 0.0))
        text, blocks = answered_message(n, [{**a, "user_id": _who(a), "note": a.get("outcome")} for a in answers],
                                        interactive=bool(getattr(sink, "interactive", False)))
        line = answered_text(str(record["action"]), _who(record), float(record.get("at") or 0.0),
                             str(record.get("outcome") or ""))
        result = await sink.answer(str(channel), str(ts), text, blocks, line)
        self.metrics.inc("feedback_answers_total", labels={"ok": "true" if result.ok else "false"})
        if not result.ok:
            log.warning("feedback on %s: answering the Slack message failed: %s", record["key"], result.detail)


def _who(record: dict[str, Any]) -> str:
    """Who answered, for the Slack message: a Slack user's id (Slack shows their name), or the
    name of someone who answered elsewhere (PagerDuty's user ids mean nothing to Slack)."""
    if record.get("source") == "pagerduty":
        return f"{record.get('user') or 'someone'} in PagerDuty"
    return str(record.get("user_id") or "")


def _label(labels: Any, series: str, name: str) -> str | None:
    """``name``'s value (``team``, ``org``) in ``labels``, else in the series name's parts."""
    if isinstance(labels, dict) and labels.get(name):
        return str(labels[name])
    for part in series.split("|"):
        k, _, v = part.partition("=")
        if k == name:
            return v
    return None


def _team(j: Any, series: str) -> str | None:
    info = None if j is None else j.series.get(series)
    return _label(info.labels if info is not None else None, series, "team")


def _org(j: Any, series: str) -> str | None:
    """The org of ``series``; None for the default org (its series names carry none)."""
    info = None if j is None else j.series.get(series)
    return _label(info.labels if info is not None else None, series, "org")


def feedback_rows(items: Any, team: str | None = None) -> list[dict[str, Any]]:
    """``GET /api/feedback``: every answer, newest first, those of ``team`` only when given."""
    rows = [dict(r) for _, r in items if _answer(r) and (team is None or r.get("team") == team)]
    rows.sort(key=lambda r: float(r.get("at") or 0.0), reverse=True)
    return rows


def _answer(rec: Any) -> bool:
    """A record of an answer as on-call gave it (not the detector part sent on for one)."""
    return bool(rec) and rec.get("part") != DETECTOR


def _incident(rec: dict[str, Any]) -> tuple[str, float | None]:
    started = rec.get("started_at")
    return str(rec.get("key") or ""), float(started) if isinstance(started, int | float) else None


def answers_by_incident(items: Any) -> dict[tuple[str, float | None], list[dict[str, Any]]]:
    """The answers (``feedback`` table values) per incident, ``(alert key, started_at)``, oldest
    first: what the dashboard shows beside each alert of ``GET /api/alerts``."""
    out: dict[tuple[str, float | None], list[dict[str, Any]]] = {}
    for rec in items:
        if _answer(rec) and rec.get("key"):
            out.setdefault(_incident(rec), []).append(
                {k: rec.get(k) for k in ("action", "user", "user_id", "at", "outcome", "source")})
    for answers in out.values():
        answers.sort(key=lambda a: float(a.get("at") or 0.0))
    return out


def _alert_team(rec: dict[str, Any]) -> tuple[str | None, str | None]:
    """(org, team) of an alert or an answer: org None for the default org, team None for an
    org-wide alert."""
    series = str(rec.get("series") or "")
    labels = rec.get("labels")
    return _label(labels, series, "org") or rec.get("org"), _label(labels, series, "team") or rec.get("team")


def feedback_summary(alerts: Any, answers: Any, until: float, days: int = SUMMARY_DAYS,
                     team: str | None = None) -> list[dict[str, Any]]:
    """Per team, the incidents that started in the ``days`` before ``until`` and how on-call
    answered them: the precision on-call experiences.

    An incident is an alert key and its ``started_at``; those known here are the latest of each
    key in the ``alerts`` table (``alerts``: its values) and every incident answered
    (``answers``: the ``feedback`` table's values), so an earlier incident of a key that nobody
    answered is not counted. An incident counts once per kind of answer however often it was
    pressed. ``precision`` is the share of answered incidents that were not "not an anomaly"
    (None until one is answered); incidents without a team (the org's) are under ``team: null``.
    Teams of another org than the default one are rows of their own (``org`` names it; None for
    the default org): two orgs' "ads" are two teams.

    >>> rows = feedback_summary([{"key": "k", "started_at": 10.0, "labels": {"team": "ads"}}],
    ...     [{"key": "k", "started_at": 10.0, "team": "ads", "action": "tokenpulse_not_anomaly", "at": 20.0}], 100.0)
    >>> rows[0]["org"], rows[0]["team"], rows[0]["alerts"], rows[0]["not_anomaly"], rows[0]["precision"]
    (None, 'ads', 1, 1, 0.0)
    """
    since = until - days * 86400
    teams: dict[tuple[str, float | None], tuple[str | None, str | None]] = {}
    for rec in alerts:
        if rec and isinstance(rec.get("started_at"), int | float) and since <= rec["started_at"] < until:
            teams[_incident(rec)] = _alert_team(rec)
    pressed: dict[tuple[str, float | None], set[str]] = {}
    for rec in answers:
        if not _answer(rec) or not rec.get("key"):
            continue
        inc = _incident(rec)
        started = inc[1] if inc[1] is not None else float(rec.get("at") or 0.0)
        if not since <= started < until:
            continue
        teams.setdefault(inc, _alert_team(rec))
        pressed.setdefault(inc, set()).add(str(rec.get("action")))
    rows: dict[tuple[str | None, str | None], dict[str, Any]] = {}
    for inc, (o, t) in teams.items():
        if team is not None and t != team:
            continue
        row = rows.setdefault((o, t), {"org": o, "team": t, "alerts": 0, "answered": 0, "acknowledged": 0, "new_normal": 0,
                                  "not_anomaly": 0, "snoozed": 0})
        row["alerts"] += 1
        got = pressed.get(inc, set())
        row["answered"] += bool(got)
        row["acknowledged"] += "tokenpulse_ack" in got
        row["new_normal"] += "tokenpulse_new_normal" in got
        row["not_anomaly"] += "tokenpulse_not_anomaly" in got
        row["snoozed"] += "tokenpulse_snooze_4h" in got
    for row in rows.values():
        row["precision"] = None if not row["answered"] else round(1 - row["not_anomaly"] / row["answered"], 4)
    return sorted(rows.values(), key=lambda r: (-r["alerts"], r["team"] or "", r["org"] or ""))
