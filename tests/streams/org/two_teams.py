"""The harness of the org stage's team gates (the team-scale gate, the team corroboration): two
teams, each with a team series and model series, judged with the org stage beside the judge
(one judge holds every series) and apart (each series on its home partition, the org stage fed
their verdicts through the wire). Each gate's test module gives its setting and which counter
and pending record it reads."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from typing import Any

from alerts import AlertEngine, AlertPolicy
from streams.ingest.windows import NANO, Partial
from streams.judge.core import JudgeCore
from streams.judge.step import judge_step
from streams.org.core import OrgCore
from streams.org.verdicts import Verdicts
from tests.streams.org import test_org_core as base

W = base.W
POLICY = base.POLICY
# the team series' home partition and its models' (series placement)
HOME = {"team=big": 0, "team=big|model=m": 1, "team=big|model=x": 0, "team=small": 1, "team=small|model=m": 0}


def stream(seed: int, spike_usd: float, spike_noise: bool) -> list[base.Msg]:
    """Two teams: ``big`` spends $90-110 a window on model x and ~$0.5 on model m, ``small`` ~$1
    on m. From window 60, m jumps to ``spike_usd`` a window for three windows on both teams
    (times the same uniform noise as the other windows if ``spike_noise``)."""
    rnd = random.Random(seed)
    msgs: list[base.Msg] = []
    for i in range(80):
        parts: list[Partial] = []
        spike = 60 <= i < 63
        for team, per_model in (("big", {"x": 100.0, "m": 0.5}), ("small", {"m": 1.0})):
            team_n = 0
            for model, usd in per_model.items():
                if spike and model == "m":
                    usd = spike_usd * rnd.uniform(0.9, 1.1) if spike_noise else spike_usd
                else:
                    usd *= rnd.uniform(0.9, 1.1)
                n = int(usd * NANO)
                team_n += n
                parts.append(Partial(f"team={team}|model={model}", {"team": team, "model": model}, i * W,
                                     [n, 10, 2, 0, 0, 3], {"user:u": n}, True))
            parts.append(Partial(f"team={team}", {"team": team}, i * W, [team_n, 10, 2, 0, 0, 3], {"user:u": team_n}, True))
        msgs.append((0, (i + 1) * W, i, parts))
    return msgs


class Gate:
    """One gate's knobs: how a judge gets the setting, the OrgCore keyword that takes it, the
    output counter of the windows it turns normal, and the org stage's pending record of the
    team's numbers (per window start) that a restart must keep."""

    def __init__(self, judge_attr: str, org_kw: str, counter: str, pending: str) -> None:
        self.judge_attr, self.org_kw, self.counter, self.pending = judge_attr, org_kw, counter, pending

    def judge(self, q: int, value: float) -> JudgeCore:
        j = base.judge(q)
        setattr(j, self.judge_attr, value)
        return j

    def org(self, value: float) -> OrgCore:
        return OrgCore(0, W, AlertEngine(AlertPolicy(**POLICY)), n_judges=2, **{self.org_kw: value})

    def beside(self, msgs: list[base.Msg], value: float, gated: list[int] | None = None) -> list[dict[str, Any]]:
        """The org placement: one judge holds every series, its org stage beside it. ``gated``:
        gets each step's count of windows the gate turned normal."""
        j = self.judge(0, value)
        notes = []
        for src, closed, seq, parts in msgs:
            out = judge_step(j, None, None, src, 1, closed, base.copies(parts), seq).judged
            notes += [n.to_dict() for n in out.notifications]
            if gated is not None:
                gated.append(getattr(out, self.counter))
        return notes

    def apart(self, msgs: list[base.Msg], value: float, restart: bool = False, order: int = 1,
              gated: list[int] | None = None) -> list[dict[str, Any]]:
        """The series placement: each series judged on its home partition, the org stage fed their
        verdicts through the wire (JSON), interleaved; ``restart``: the org stage is restored from
        its checkpoint once, as soon as it holds the team's number of a spike window not stepped
        yet. ``order``: the seed of the interleaving."""
        judges = {q: self.judge(q, value) for q in (0, 1)}
        for j in judges.values():
            j.local_tracking = int(POLICY["resolve_after_windows"])
        sent: dict[int, list[Verdicts]] = {0: [], 1: []}
        for src, closed, seq, parts in msgs:
            for q, j in judges.items():
                step = judge_step(j, None, None, src, 1, closed, [x for x in base.copies(parts) if HOME[x.series] == q], seq)
                v = step.verdicts(q, len(sent[q]))
                sent[q].append(Verdicts.from_wire(json.loads(json.dumps(v.to_wire()))))
        o = self.org(value)
        table: dict[str, Any] = {}
        notes = []
        for v in base.interleave(sent, random.Random(order)):
            out = o.receive(v)
            notes += [n.to_dict() for n in out.notifications]
            if gated is not None:
                gated.append(getattr(out, self.counter))
            table.update(json.loads(json.dumps(o.checkpoint())))
            pending: Mapping[int, Any] = getattr(o, self.pending)
            if restart and any("team=big" in held for w, held in pending.items() if 60 * W <= w < 63 * W):
                restart = False
                o = self.org(value)
                o.restore((k, rec) for k, rec in table.items() if rec is not None)
        assert not restart, f"the org stage never held a spike window's {self.pending}"
        return notes


def triggered(notes: list[dict[str, Any]]) -> set[str]:
    """The series of the alerts triggered (a group's members, or a lone alert's own)."""
    return {m["series"] for n in notes if n["action"] == "trigger" for m in n["members"] or [n]}

