"""What the judge's per-window shortcuts rely on, and properties that hold them to the one
implementation: how the spend is split among sources and messages (merged partials, chunks,
redeliveries) and where a restart happens change no verdict."""

from __future__ import annotations

import random

from alerts import AlertEngine, AlertPolicy, Signal
from detectors import make_detector
from streams.common.spend import spend_windows
from streams.ingest.windows import NANO, Partial
from streams.judge.core import JudgeCore

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


def judge(**kw: object) -> JudgeCore:
    return JudgeCore(
        partition=0,
        window_seconds=W,
        make_detector=lambda: make_detector(
            "default", window_seconds=W, min_excess_usd=1, min_excess_root=0, min_excess_minutes=0, min_requests=0, component_params={"seasonal": {"min_history": 5}}
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


def merged(msgs: list[tuple[int, int, int, list[Partial]]]) -> list[tuple[int, int, int, list[Partial]]]:
    """The same spend from one source: per window, each series' partial of every source summed
    into one (redeliveries dropped, late partials kept as messages of their own)."""
    out: list[tuple[int, int, int, list[Partial]]] = []
    seen: set[tuple[int, int]] = set()
    by_window: dict[int, dict[str, Partial]] = {}
    for src, closed, seq, parts in msgs:
        if (src, seq) in seen:
            continue
        seen.add((src, seq))
        late = [p for p in parts if p.late]
        if late:
            out.append((0, closed - W, len(out) + 1, late))  # the closed window's watermark again
        acc = by_window.setdefault(closed - W, {})
        # a source's partial of a series replaces its earlier one of the same window
        for p in {p.series: p for p in parts if not p.late}.values():
            got = acc.get(p.series)
            if got is None:
                acc[p.series] = Partial(p.series, dict(p.labels), p.window_start, list(p.sums), dict(p.contributors),
                                        p.detected)
            else:
                got.sums = [a + b for a, b in zip(got.sums, p.sums)]
                for k, v in p.contributors.items():
                    got.contributors[k] = got.contributors.get(k, 0) + v
        if src == 1:  # both sources have sent this window: it goes out whole
            w = closed - W
            out.append((0, closed, len(out) + 1, list(by_window.pop(w).values())))
    return out


def test_how_the_spend_is_split_among_sources_changes_no_verdict() -> None:
    """Two sources (the judge merges each window's partials) and the same spend from one (a
    partial is taken as it is): the same notifications, windows and exact spend."""
    for seed in range(3):
        msgs = stream(seed)
        two = judge()
        notes2, _, judged2 = run(two, msgs)
        one = judge()
        notes1, judged1 = [], 0
        for src, closed, seq, parts in merged(msgs):
            out = one.receive(src, 1, closed, parts, seq)
            notes1 += [n.to_dict() for n in out.notifications]
            judged1 += out.windows_judged
        assert any(n["action"] == "trigger" for n in notes2)
        assert (notes1, judged1) == (notes2, judged2)
        def sums(j: JudgeCore) -> list[tuple[str, int, list[int]]]:
            return sorted((s, w, list(x)) for s, w, _, x in spend_windows(j.spend.items(), 60))
        assert sums(one) == sums(two)


def test_a_redelivered_message_changes_nothing() -> None:
    for seed in range(3):
        msgs = stream(seed)
        once = [m for i, m in enumerate(msgs) if i == 0 or m is not msgs[i - 1]]
        assert len(once) < len(msgs)
        a, b = judge(), judge()
        notes_a, _, judged_a = run(a, msgs)
        notes_b, _, judged_b = run(b, once)
        assert (notes_a, judged_a) == (notes_b, judged_b)
        assert a.spend == b.spend
        assert a.checkpoint() == b.checkpoint()


def test_chunks_of_a_message_change_nothing() -> None:
    """The hot path splits a large emission into chunks, only the last carrying the watermark."""
    msgs = stream(2)
    whole, chunked = judge(), judge()
    want = run(whole, msgs)
    got: tuple[list, list, int] = ([], [], 0)
    for src, closed, seq, parts in msgs:
        pieces = [parts[i:i + 2] for i in range(0, len(parts), 2)] or [[]]
        for k, piece in enumerate(pieces):
            last = k == len(pieces) - 1
            out = chunked.receive(src, 2, closed if last else None, piece, seq, carries_watermark=last)
            got[0].extend(n.to_dict() for n in out.notifications)
            got = (got[0], got[1] + list(out.spend), got[2] + out.windows_judged)
    assert got[0] == want[0] and got[2] == want[2]
    assert chunked.spend == whole.spend


def test_a_restart_from_any_checkpoint_changes_nothing() -> None:
    msgs = stream(0)
    whole = judge()
    want = run(whole, msgs)
    for cut in (7, 131, 170):
        first = judge()
        got = run(first, msgs[:cut])
        state, spend = first.checkpoint(), first.spend_changes()
        again = judge()
        again.restore(state.items(), spend.items())
        rest = run(again, msgs[cut:])
        assert got[0] + rest[0] == want[0], cut
        assert again.spend == whole.spend


def test_replay_flags_change_nothing_but_what_the_api_reads() -> None:
    msgs = stream(1)
    full, lean = judge(), judge(keep_recent=False, keep_spend=False)
    a, b = run(full, msgs), run(lean, msgs)
    assert a == b
    assert any(n["action"] == "trigger" for n in a[0]) and any(n["action"] == "resolve" for n in a[0])
    assert full.recent and full.spend and not lean.recent and not lean.spend
    assert full.checkpoint().keys() == lean.checkpoint().keys()
