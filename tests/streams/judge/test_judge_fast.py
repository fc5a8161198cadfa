"""What the judge's per-window shortcuts rely on, and that they change nothing."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable

from alerts import AlertEngine, AlertPolicy, Signal
from detectors import make_detector
from streams.ingest.windows import NANO, Partial
from streams.judge.core import JudgeCore, JudgeOutput, SeriesInfo, _merge

W = 60


def test_the_engine_ignores_an_unflagged_window_of_a_key_it_does_not_track() -> None:
    """The judge skips the Signal (and its top contributors) for a window the detector did not
    flag on a series without alert state: the engine must neither notify nor keep state for
    it, whatever the numbers."""
    rnd = random.Random(3)
    engine = AlertEngine(AlertPolicy(min_excess_usd=0, min_excess_pct=0))
    for i in range(200):
        observed = rnd.choice([0.0, 1e-9, 5.0, 1e6, float("inf"), float("nan")])
        sig = Signal(series=f"team=t{i % 5}", labels={"team": f"t{i % 5}"}, window_start=60.0 * i,
                     window_end=60.0 * (i + 1), observed_usd=observed, expected_usd=rnd.choice([0.0, 1.0, 1e6]),
                     upper_usd=2.0, score=rnd.random(), is_anomaly=False,
                     top_contributors=[{"kind": "user", "name": "a", "usd": 1.0}], detector="x")
        assert not engine.tracks(engine.key_for(sig.series))
        assert engine.observe(sig) == []
        assert not engine.tracks(engine.key_for(sig.series))


class ReferenceJudge(JudgeCore):
    """The judge's per-message and per-window steps as they were before the shortcuts: every
    window a Signal with its top contributors for every series, every one observed."""

    def receive(self, src: int, n_src: int, closed_until: int | None, partials: Iterable[Partial],
                seq: int = -1, carries_watermark: bool = True) -> JudgeOutput:
        out = JudgeOutput()
        self.n_src = max(self.n_src, n_src)
        for p in partials:
            p.seq = seq
            if p.late or (self.done_until is not None and p.window_start < self.done_until):
                out.spend.append((p.series, p.window_start, list(p.sums), {src: seq}))
                continue
            self.pending.setdefault(p.window_start, {}).setdefault(p.series, {})[src] = p
            self._dirty.add(f"pend|{src}|{p.window_start}")
        if carries_watermark:
            if src not in self.src_wm:
                self.src_wm[src] = None
                self._dirty.add("meta")
            prev = self.src_wm[src]
            if closed_until is not None and (prev is None or closed_until > prev):
                self.src_wm[src] = closed_until
                self._dirty.add("meta")
            self._finalise(out)
        for series, w, sums, seqs in out.spend:
            self._apply_spend(series, w, sums, seqs)
        return out

    def _judge_window(self, w: int, out: JudgeOutput) -> None:
        W = self.window_seconds
        by_series = self.pending.pop(w, {})
        for series, per_src in by_series.items():
            for src in per_src:
                self._dirty.add(f"pend|{src}|{w}")
            sums, contrib = _merge(per_src)
            out.spend.append((series, w, sums, {s: p.seq for s, p in per_src.items()}))
            first = next(iter(per_src.values()))
            if first.detected and series not in self.series:
                self.series[series] = SeriesInfo(labels=dict(first.labels))
                self.detectors[series] = self.make_detector()
        signals = []
        for series, info in self.series.items():
            if info.last_end >= w + W:
                continue
            per_src = by_series.get(series)
            sums, contrib = _merge(per_src) if per_src else ([0, 0, 0, 0, 0, 0], {})
            observed = sums[0] / NANO
            verdict = self.detectors[series].update(float(w + W), observed, float(sums[5]))
            key = self.engine.key_for(series)
            normal = not verdict.is_anomaly and not self.engine.tracks(key)
            top = info.mix.excess(contrib, float(verdict.expected))
            if normal and per_src:
                info.mix.learn(w, contrib, sums[0])
            info.last_end = w + W
            self._dirty.add(f"det|{series}")
            signal = Signal(series=series, labels=info.labels, window_start=float(w), window_end=float(w + W),
                            observed_usd=observed, expected_usd=float(verdict.expected),
                            upper_usd=float(verdict.upper), score=float(verdict.score),
                            is_anomaly=bool(verdict.is_anomaly), top_contributors=top,
                            detector=verdict.detector, impact_usd=verdict.impact, explanation=verdict.reason)
            rec = self.recent.get(series)
            if rec is None:
                rec = self.recent[series] = deque(maxlen=self.recent_len)
            rec.append({"window_start": w, "observed_usd": round(observed, 6),
                        "expected_usd": round(float(verdict.expected), 6), "upper_usd": round(float(verdict.upper), 6),
                        "score": float(verdict.score), "is_anomaly": bool(verdict.is_anomaly)})
            if signal.is_anomaly or self.engine.tracks(key):
                self._dirty.add(f"alert|{key}")
            signals.append(signal)
        out.notifications.extend(self.engine.observe_window(signals, float(w + W)))
        out.skipped.extend(self.engine.skipped)
        self._dirty.update(f"group|{gid}" for gid in self.engine.changed_groups)


def judge(cls: type[JudgeCore] = JudgeCore, **kw: object) -> JudgeCore:
    return cls(
        partition=0,
        window_seconds=W,
        make_detector=lambda: make_detector(
            "default", window_seconds=W, min_excess_usd=1, min_excess_root=0, min_requests=0, component_params={"seasonal": {"min_history": 5}}
        ),
        engine=AlertEngine(AlertPolicy(min_excess_usd=1, page_min_excess_usd=5, resolve_after_windows=2)),
        **kw,  # type: ignore[arg-type]
    )


def stream(seed: int) -> list[tuple[int, int, int, list[Partial]]]:
    """(source, closed_until, seq, partials) messages from two sources, with spikes, quiet
    series, late partials and a redelivered message."""
    rnd = random.Random(seed)
    msgs = []
    for i in range(120):
        w = i * W
        for src in (0, 1):
            parts = []
            for team in ("ads", "search", "legal"):
                if rnd.random() < 0.15:
                    continue  # quiet: judged as zero
                usd = rnd.uniform(0.5, 1.5) * (40 if team == "ads" and 60 <= i < 66 else 1)
                nusd = int(usd * NANO)
                users = {f"user:u{k}": nusd // 3 for k in range(rnd.randrange(1, 4))}
                for name, labels in ((f"team={team}", {"team": team}), ("org", {"org": "acme"})):
                    parts.append(Partial(name, labels, w, [nusd, 10, 2, 0, 0, 3], dict(users), True))
                parts.append(Partial(f"user=u{i % 3}", {"user": f"u{i % 3}"}, w, [nusd, 1, 1, 0, 0, 1], {}, False))
            if i > 3 and rnd.random() < 0.1:
                parts.append(Partial("team=ads", {"team": "ads"}, w - 3 * W, [NANO, 1, 1, 0, 0, 1], {}, True, late=True))
            msgs.append((src, w + W, i * 2 + src, parts))
            if rnd.random() < 0.03:
                msgs.append(msgs[-1])  # redelivered
    return msgs


def run(j: JudgeCore, msgs: list[tuple[int, int, int, list[Partial]]]) -> tuple[list, list, int]:
    notes, spend, judged = [], [], 0
    for src, closed, seq, parts in msgs:
        copies = [Partial(p.series, dict(p.labels), p.window_start, list(p.sums), dict(p.contributors), p.detected, p.late)
                  for p in parts]
        out = j.receive(src, 2, closed, copies, seq)
        notes += [n.to_dict() for n in out.notifications]
        spend += [(s, w, list(sums), dict(seqs)) for s, w, sums, seqs in out.spend]
        judged += out.windows_judged
    return notes, spend, judged


def test_the_judge_gives_what_it_gave_before_its_shortcuts() -> None:
    for seed in range(3):
        msgs = stream(seed)
        ref, new = judge(ReferenceJudge), judge()
        assert run(new, msgs) == run(ref, msgs)
        assert new.checkpoint() == ref.checkpoint()
        assert new.spend_changes() == ref.spend_changes()
        assert {k: list(v) for k, v in new.recent.items()} == {k: list(v) for k, v in ref.recent.items()}


def test_replay_flags_change_nothing_but_what_the_api_reads() -> None:
    msgs = stream(1)
    full, lean = judge(), judge(keep_recent=False, keep_spend=False)
    a, b = run(full, msgs), run(lean, msgs)
    assert a == b
    assert any(n["action"] == "trigger" for n in a[0]) and any(n["action"] == "resolve" for n in a[0])
    assert full.recent and full.spend and not lean.recent and not lean.spend
    assert full.checkpoint().keys() == lean.checkpoint().keys()
