"""The per-partition ingest core: dedupe, event-time tumbling windows, watermarks.

Pure Python, no Faust: the worker wraps one :class:`IngestPartition` per assigned partition of
the usage topic, and the offline replay drives the very same class.

Why it aggregates per *cell* (org, team, provider, model, user:
:class:`streams.common.dimensions.Cell`) instead of per series: an event then costs one dict
update, and the series of every dimension (``org``, ``team=…``, ``team=…|model=…``,
``provider=…``, plus the spend-only ``model=…`` and ``user=…``) are expanded once per window
when it closes (:func:`streams.common.dimensions.series_of`). Costs are summed as integer
nano-dollars so totals stay exact.

Spend by tool (the spend-only ``tool=…`` series) is summed in the same window table under a
second, short key, the *tool cell* (org, tool: :class:`streams.common.dimensions.ToolCell`), not
as a sixth field of the cell: with the simulator's four tools that multiplied the cells of a
busy window by 3.5 and the cost of closing it by 4 (``python -m benchmarks.lanes`` and the
close-time figures in the report of this change), where a second dict update per event costs
a tenth of that. Tools are capped: a window of a partition names at most
``limits.max_tools_per_window`` distinct tools, and counts the spend of further ones under the
tool ``(other)`` (a tool is a free-form name; the cap keeps made-up ones from growing the window
and the spend records). A run of events is counted by
:meth:`IngestPartition.add_events`, the same steps as :meth:`~IngestPartition.add`
without the per-call overhead (the fast lane of :func:`streams.ingest.pipeline.count_message` and of
the replay).

Time: the partition's event clock is the largest event time seen. A window
``[start, start + W)`` closes when the clock passes ``start + W + lateness``. When the partition
goes quiet, the clock follows the wall clock (after ``idle_grace`` seconds) so a team that
stops spending still gets its last windows judged; during a backfill, events arrive much faster
than the wall clock moves, so the event clock alone drives closing and a replay gives the same
windows as live traffic.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xxhash import xxh3_64_intdigest

from streams.common.config import IngestLimits
from streams.common.dimensions import DEFAULT_WATCHED, OTHER_TOOL, series_of
from streams.ingest.normalize import Rejected
from streams.ingest.pricing import Pricer
from streams.ingest.records import UsageEvent

# A cell's running sums: [cost_nusd, input, output, cache_read, cache_write, events]
Sums = list[int]
# A key of a window table as the hot path builds it: a plain tuple in the field order of
# streams.common.dimensions.Cell (five names), or of ToolCell (two: org, tool); a named tuple
# costs ~4x as much to build, per event.
CellKey = tuple[str, ...]

NANO = 1_000_000_000
# Sums are written with orjson (64-bit integers). Bounded events keep a window's sums far
# below this (2^63 nano-dollars is 18 million requests at the default $500 bound, in one
# window of one cell); sums beyond it are saturated when emitted rather than crash the emit.
I64_MAX = 2**63 - 1
TOP_K = 20
# Dedupe ids per changelog record: 8-byte hashes, ~11 bytes each in base64, so a chunk stays
# well under Kafka's 1 MB message limit even when a backlog is read at full speed.
ID_CHUNK = 40_000
# How long (event time) the ids of a closed window are kept: a producer retry that arrives this
# much after its window closed is still counted once. TOKENPULSE_DEDUPE_HORIZON_SECONDS.
DEDUPE_HORIZON = 7200.0


# The two records that take turns holding a partition's open windows (IngestPartition.checkpoint);
# the meta record names the current one. "wins" alone was the record before 2026-12.
WINS = ("wins", "wins|1")


def id_hash(event_id: str) -> int:
    """The 64-bit hash an event id is remembered by once its window has closed: XXH3 of its
    UTF-8 bytes, the same in every process and on every machine (a checkpoint holds them).

    Ids are only compared within one window of one partition, so two ids collide (and the
    second event is taken for a duplicate) with odds of about n / 2**64 for n ids in that
    window: one in 10**13 at a million events a minute.

    >>> id_hash("evt-1") == id_hash("evt-1") != id_hash("evt-2")
    True
    """
    return xxh3_64_intdigest(event_id.encode("utf-8", "surrogatepass"))


def id_hashes(event_ids: Iterable[str], count: int = -1) -> np.ndarray:
    """:func:`id_hash` of each id, as a uint64 array (unsorted, duplicates kept).

    Two maps in C (``str.encode`` is UTF-8, the same bytes as ``surrogatepass`` for every
    string but one with a lone surrogate, which then takes :func:`id_hash`'s way): a third of
    the time of a generator expression (python -m benchmarks.replay)."""
    ids = event_ids if isinstance(event_ids, list) else list(event_ids)
    try:
        return np.fromiter(map(xxh3_64_intdigest, map(str.encode, ids)), dtype=np.uint64, count=count)
    except UnicodeEncodeError:
        return np.fromiter((xxh3_64_intdigest(e.encode("utf-8", "surrogatepass")) for e in ids), dtype=np.uint64,
                           count=count)


def _holds(hashes: np.ndarray, event_id: str) -> bool:
    """Whether a sorted uint64 array holds the id's hash (a binary search)."""
    h = np.uint64(id_hash(event_id))
    i = int(hashes.searchsorted(h))
    return i < len(hashes) and hashes[i] == h


def _pack(hashes: np.ndarray) -> str:
    return base64.b64encode(hashes.astype("<u8").tobytes()).decode("ascii")


def _unpack(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<u8").astype(np.uint64)


def to_nusd(cost_usd: float) -> int:
    """USD → integer nano-dollars (exact summing; 1e-9 $ is far below any price step).
    Half rounds up; costs are never negative."""
    return int(cost_usd * NANO + 0.5)


class Implausible(Rejected):
    """An event over a plausibility bound of :class:`~streams.common.config.IngestLimits`: its
    reason starts with ``implausible:``."""


def implausible_reason(tokens_in: int, tokens_out: int, cost: float, limits: IngestLimits) -> str | None:
    """Why an event with these counts and this cost (USD, producer-sent or computed) is
    implausible, or None when it is within ``limits``.

    >>> implausible_reason(1000, 100, 0.25, IngestLimits()) is None
    True
    >>> implausible_reason(0, 2**63 - 1, 0.0, IngestLimits())[:60]
    'implausible: 9223372036854775807 tokens in one request (inpu'
    """
    total = tokens_in + tokens_out
    if total > limits.max_tokens_per_request:
        return (f"implausible: {total} tokens in one request (input_tokens {tokens_in} + output_tokens "
                f"{tokens_out}), over limits.max_tokens_per_request ({limits.max_tokens_per_request})")
    if not 0.0 <= cost <= limits.max_cost_usd_per_request:
        return (f"implausible: cost_usd {cost:.6g} for one request, over limits.max_cost_usd_per_request "
                f"({limits.max_cost_usd_per_request:g})")
    return None


def failure_reason(exc: BaseException) -> str:
    """The reason recorded for an event that failed in our own code (a bug, not bad input): the
    exception's type and the start of its message."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - even its message may fail
        text = ""
    return f"internal error: {type(exc).__name__}: {text[:200]}"


def _report(on_reject: Callable[[int, str], None] | list[tuple[int, str]] | None, i: int, reason: str) -> None:
    if type(on_reject) is list:
        on_reject.append((i, reason))
    elif on_reject is not None:
        on_reject(i, reason)  # type: ignore[operator]


def window_start(ts: float, window_seconds: int) -> int:
    return int(math.floor(ts / window_seconds) * window_seconds)


# (series, labels, detected?, contributor keys) for each series a cell feeds
Plan = list[tuple[str, dict[str, str], bool, tuple[str, ...]]]


def _plan(cell: CellKey, watched: frozenset[str]) -> Plan:
    """What a cell (or a tool cell: its ``tool=…`` series) contributes to, computed once per
    distinct cell (cells recur every window).
    Spend-only series (``model=…``, ``user=…`` and unwatched dimensions) are aggregated for the
    spend API but not judged, and name no contributors."""
    out: Plan = []
    for name, labels, detected, contrib in series_of(cell, watched):
        keys = tuple(f"{kind}:{who}" for kind, who in contrib) if detected else ()
        out.append((name, labels, detected, keys))
    return out


def _no_tool_cells(cells: dict[CellKey, Sums]) -> None:
    """Add to a window's cells the tool cells they lack: all of each org's spend under no tool
    (``tool=(none)``). For windows restored from a checkpoint written before tool cells, whose
    events' tools are not known any more."""
    add: dict[CellKey, Sums] = {}
    for key, sums in cells.items():
        if len(key) == 5:
            acc = add.setdefault((key[0], ""), [0] * 6)
            for i, x in enumerate(sums):
                acc[i] += x
    cells.update(add)


@dataclass(slots=True)
class Partial:
    """One series' sums for one window from one source partition."""

    series: str
    labels: dict[str, str]
    window_start: int
    sums: Sums
    contributors: dict[str, int]  # "user:alice" -> nusd
    detected: bool
    late: bool = False
    seq: int = -1  # the emitting message's sequence number per source (set by the judge)

    def to_wire(self) -> list[Any]:
        return [
            self.series,
            self.labels,
            self.window_start,
            self.sums,
            self.contributors,
            self.detected,
            self.late,
        ]

    @classmethod
    def from_wire(cls, row: list[Any]) -> Partial:
        return cls(row[0], row[1], int(row[2]), [int(x) for x in row[3]], row[4], bool(row[5]), bool(row[6]))


@dataclass
class Counters:
    """Events by what became of them. ``rejected`` (invalid input), ``implausible`` (over a
    bound of the limits) and ``failed`` (an error of ours) all went to the dead-letter topic."""

    accepted: int = 0
    rejected: int = 0
    duplicate: int = 0
    late: int = 0
    windows_closed: int = 0
    implausible: int = 0
    failed: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "accepted": self.accepted,
            "rejected": self.rejected,
            "duplicate": self.duplicate,
            "late": self.late,
            "windows_closed": self.windows_closed,
            "implausible": self.implausible,
            "failed": self.failed,
        }


@dataclass
class IngestPartition:
    """Windows, dedupe and watermark for one source partition.

    Use it through :meth:`add` (one priced event), :meth:`advance` (closes what the clock has
    passed, returns partials to emit) and :meth:`checkpoint` / :meth:`restore` to persist. Not
    thread-safe; one instance per partition.
    """

    partition: int
    window_seconds: int = 60
    lateness: float = 10.0
    idle_grace: float = 10.0
    dedupe_retention: float = DEDUPE_HORIZON  # seconds of event time a closed window's ids are kept
    watched: frozenset[str] = DEFAULT_WATCHED
    limits: IngestLimits = IngestLimits()

    # state
    max_ts: float | None = None
    wall_at_max: float | None = None
    closed_until: int | None = None  # every window ending at or before this is closed
    applied_offset: int = -1
    emit_seq: int = 0  # numbers this partition's messages to the judges, for their idempotency
    windows: dict[int, dict[CellKey, Sums]] = field(default_factory=dict)
    late_cells: dict[int, dict[CellKey, Sums]] = field(default_factory=dict)
    # Dedupe, in two tiers. ids: the event ids of the windows being filled, as Python strings
    # (the hot path's check is one set lookup). hashed: every other window within the horizon
    # (closed ones; also open ones restored from a checkpoint), as a sorted array of
    # id_hash values, 8 bytes an id instead of ~100 for a str in a set
    # (python -m benchmarks.dedupe): two hours of ids fit where ten minutes did.
    ids: dict[int, set[str]] = field(default_factory=dict)
    hashed: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    counters: Counters = field(default_factory=Counters)
    # persistence bookkeeping
    _dirty_windows: set[int] = field(default_factory=set)
    _new_ids: dict[int, list[str]] = field(default_factory=dict)  # ids not yet checkpointed nor compacted
    # Each id is hashed once: at the checkpoint that first writes it (kept here while its
    # window still holds strings), or at the compaction of its window (kept for the checkpoint).
    _open_hashes: dict[int, list[np.ndarray]] = field(default_factory=dict, repr=False)
    _unsaved: dict[int, list[np.ndarray]] = field(default_factory=dict, repr=False)
    _dropped_windows: set[int] = field(default_factory=set)
    _plans: dict[CellKey, Plan] = field(default_factory=dict, repr=False)
    # the tools a window (open, or late: never both at once) counts by name; the others go to
    # OTHER_TOOL (limits.max_tools_per_window). Forgotten when the window's cells are emitted.
    _tools: dict[int, set[str]] = field(default_factory=dict, repr=False)
    _chunks: dict[int, int] = field(default_factory=dict)  # id chunk no -> newest window in it
    _wins_buf: int = 0  # which of the two open-window records ("wins", "wins|1") is current
    _next_chunk: int = 0
    # add_events' rejects for streams.ingest.pipeline.count_message, which empties it after each message
    _rejects: list[tuple[int, str]] = field(default_factory=list, repr=False)

    # -- hot path -----------------------------------------------------------------------
    def add(self, ev: UsageEvent, wall_now: float) -> str:
        """Count one priced event. Returns "accepted", "duplicate" or "late".

        Raises :class:`Implausible` (counted in ``counters.implausible``) for an event over
        :attr:`limits`. Everything that can fail is done before anything is recorded: an
        event that is not counted is not remembered as seen either.
        """
        tin = ev.input_tokens
        tout = ev.output_tokens
        cost = ev.cost_usd or 0.0
        lim = self.limits
        if tin + tout > lim.max_tokens_per_request or not 0.0 <= cost <= lim.max_cost_usd_per_request:
            self.counters.implausible += 1
            raise Implausible(implausible_reason(tin, tout, cost, lim) or "implausible")
        nusd = int(cost * NANO + 0.5)  # to_nusd, inlined: costs are >= 0
        ts = ev.ts
        ws = self.window_seconds
        w = int(ts // ws) * ws
        eid = ev.event_id
        frozen = self.hashed.get(w)
        if frozen is not None and _holds(frozen, eid):
            self.counters.duplicate += 1
            return "duplicate"
        seen = self.ids.get(w)
        new: list[str] | None
        if seen is None:
            seen = self.ids[w] = set()
            self._new_ids[w] = new = []
        else:
            if eid in seen:
                self.counters.duplicate += 1
                return "duplicate"
            new = self._new_ids.get(w)
            if new is None:
                new = self._new_ids[w] = []
        seen.add(eid)
        new.append(eid)
        if self.max_ts is None or ts > self.max_ts:
            self.max_ts = ts
            self.wall_at_max = wall_now
        cell = (ev.org, ev.team, ev.provider, ev.model, ev.user)
        closed = self.closed_until
        late = closed is not None and w + ws <= closed
        if late:
            table = self.late_cells.setdefault(w, {})
            self.counters.late += 1
        else:
            table = self.windows.get(w)  # type: ignore[assignment]
            if table is None:
                table = self.windows[w] = {}
            self._dirty_windows.add(w)
        tcell = (ev.org, ev.tool)
        for key in (cell, tcell if tcell in table else self._admit(tcell, w, table)):
            sums = table.get(key)
            if sums is None:
                table[key] = [nusd, tin, tout, ev.cache_read_tokens, ev.cache_write_tokens, 1]
            else:
                sums[0] += nusd
                sums[1] += tin
                sums[2] += tout
                sums[3] += ev.cache_read_tokens
                sums[4] += ev.cache_write_tokens
                sums[5] += 1
        self.counters.accepted += 1
        return "late" if late else "accepted"

    def _admit(self, tcell: CellKey, w: int, table: dict[CellKey, Sums]) -> CellKey:
        """The tool cell that spend of ``tcell`` (new in window ``w``'s ``table``) goes to:
        itself while the window names fewer than ``limits.max_tools_per_window`` tools (or it
        names none), else the org's :data:`OTHER_TOOL` one."""
        tool = tcell[1]
        if not tool:
            return tcell
        tools = self._tools.get(w)
        if tools is None:
            tools = self._tools[w] = set()
        if tool in tools:
            return tcell
        if len(tools) < self.limits.max_tools_per_window:
            tools.add(tool)
            return tcell
        return (tcell[0], OTHER_TOOL)

    def add_events(  # noqa: C901 - the hot loop, inlined for speed (benchmarks.lanes)
        self,
        events: Sequence[UsageEvent],
        wall_now: float,
        pricer: Pricer | None = None,
        start: int = 0,
        until: float = math.inf,
        on_reject: Callable[[int, str], None] | list[tuple[int, str]] | None = None,
    ) -> int:
        """Count ``events[start:]`` in order, exactly as :meth:`add` one by one, pricing
        first (``pricer``) each event that has no cost yet. Stops right after
        the event that brings :attr:`max_ts` to ``until`` or beyond (the replay closes windows
        there). Returns the index after the last event looked at.

        An event over :attr:`limits` (counted in ``counters.implausible``), or one that fails
        in pricing (``counters.failed``), is not counted and is handed to
        ``on_reject(index, reason)`` (or appended to it as ``(index, reason)`` when it is a
        list: cheaper than a closure per call for a caller counting one message at a time);
        the run goes on with the next one.

        The same steps as :meth:`add` with the attribute lookups hoisted out of the loop, and
        :meth:`Pricer.price`'s arithmetic inline for models with one flat price;
        tests/streams/ingest/test_fast_lane.py checks they agree on random streams.
        """
        ws = self.window_seconds
        ids = self.ids
        hashed = self.hashed
        new_ids = self._new_ids
        windows = self.windows
        counters = self.counters
        closed = self.closed_until
        max_ts = self.max_ts
        lim = self.limits
        max_tokens = lim.max_tokens_per_request
        max_cost = lim.max_cost_usd_per_request
        admit = self._admit
        n = len(events)
        accepted = duplicate = late_n = implausible = failed = 0
        w = w_lo = w_hi = 0  # no window yet: [0, 0) holds no time
        seen: set[str] | None = None
        frozen: np.ndarray | None = None
        new: list[str] | None = None
        table: dict[CellKey, Sums] | None = None
        late = False
        # model -> (its provider, Pricer.flat_rates): one lookup per event, not a price() call
        # (kept by the pricer from call to call: a replay counts its runs a chunk at a time)
        rates_of: dict[str, tuple[str, tuple[float, float, float, float, float] | None]] = (
            {} if pricer is None else pricer.flat_of_model)
        flat_rates = None if pricer is None else pricer.flat_rates
        i = start
        try:
            while i < n:
                ev = events[i]
                i += 1
                # Everything that can fail or reject comes first: nothing is recorded for an
                # event that is not counted (its id included).
                try:
                    tin = ev.input_tokens
                    tout = ev.output_tokens
                    cr = ev.cache_read_tokens
                    cw = ev.cache_write_tokens
                    cost = ev.cost_usd
                    if cost is None and flat_rates is not None:
                        model = ev.model
                        got = rates_of.get(model)
                        if got is None or got[0] != ev.provider:
                            if len(rates_of) >= 4096:
                                rates_of.clear()
                            got = rates_of[model] = (ev.provider, flat_rates(ev.provider, model))
                        r = got[1]
                        if r is None:
                            cost = pricer.price(ev)  # type: ignore[union-attr]
                        else:  # Rates.cost, the same expression in the same order
                            cost = ((tin - cr - cw) * r[0] + cr * r[2] + cw * r[3]
                                    + tout * r[1]) / 1_000_000.0 + r[4]
                        ev.cost_usd = cost
                    if cost is None:
                        cost = 0.0
                    if tin + tout > max_tokens or not 0.0 <= cost <= max_cost:
                        implausible += 1
                        _report(on_reject, i - 1, implausible_reason(tin, tout, cost, lim) or "implausible")
                        continue
                    nusd = int(cost * NANO + 0.5)  # to_nusd, inlined: costs are >= 0
                    ts = ev.ts
                    # in the last event's window [w_lo, w_hi): the same w without the division
                    # (ts // ws is exact floor division for the times an event may have)
                    other_w = not w_lo <= ts < w_hi
                    if other_w:
                        w = int(ts // ws) * ws
                except Exception as exc:  # noqa: BLE001 - one event's failure stops no other
                    failed += 1
                    _report(on_reject, i - 1, failure_reason(exc))
                    continue
                if other_w:
                    # per window, not per event: its id set, id log and table (made on the
                    # first event counted in it, as add() does)
                    w_lo = w
                    w_hi = w + ws
                    seen = ids.get(w)
                    frozen = hashed.get(w)  # None but for late windows and just-restored ones
                    new = table = None
                    late = closed is not None and w + ws <= closed
                eid = ev.event_id
                if frozen is not None and _holds(frozen, eid):
                    duplicate += 1
                    continue
                if seen is None:
                    seen = ids[w] = set()
                    new = new_ids[w] = []
                elif eid in seen:
                    duplicate += 1
                    continue
                if new is None:
                    new = new_ids.get(w)
                    if new is None:
                        new = new_ids[w] = []
                seen.add(eid)
                new.append(eid)
                if max_ts is None or ts > max_ts:
                    max_ts = self.max_ts = ts
                    self.wall_at_max = wall_now
                    stop = ts >= until
                else:
                    stop = False
                org = ev.org
                cell = (org, ev.team, ev.provider, ev.model, ev.user)
                if late:
                    tbl = self.late_cells.setdefault(w, {})
                    late_n += 1
                else:
                    if table is None:
                        table = windows.get(w)
                        if table is None:
                            table = windows[w] = {}
                        self._dirty_windows.add(w)
                    tbl = table
                # (cache tokens are mostly 0: adding 0 is skipped, one test instead of a
                # read-add-write of the list)
                sums = tbl.get(cell)
                if sums is None:
                    tbl[cell] = [nusd, tin, tout, cr, cw, 1]
                else:
                    sums[0] += nusd
                    sums[1] += tin
                    sums[2] += tout
                    if cr:
                        sums[3] += cr
                    if cw:
                        sums[4] += cw
                    sums[5] += 1
                tcell: CellKey = (org, ev.tool)  # the tool cell (see the module's docstring)
                sums = tbl.get(tcell)
                if sums is None:  # new in the window: within the cap of tools, or (other)
                    tcell = admit(tcell, w, tbl)
                    sums = tbl.get(tcell)
                if sums is None:
                    tbl[tcell] = [nusd, tin, tout, cr, cw, 1]
                else:
                    sums[0] += nusd
                    sums[1] += tin
                    sums[2] += tout
                    if cr:
                        sums[3] += cr
                    if cw:
                        sums[4] += cw
                    sums[5] += 1
                accepted += 1
                if stop:
                    break
        finally:
            counters.accepted += accepted
            counters.duplicate += duplicate
            counters.late += late_n
            if implausible:
                counters.implausible += implausible
            if failed:
                counters.failed += failed
        return i

    # -- time ---------------------------------------------------------------------------
    def clock(self, wall_now: float) -> float:
        """The partition's event clock, following the wall clock once the partition is idle."""
        if self.max_ts is None or self.wall_at_max is None:
            return float("-inf")  # never saw an event: idle, no clock of its own
        idle = wall_now - self.wall_at_max
        if idle > self.idle_grace:
            return max(self.max_ts, self.max_ts + idle - self.idle_grace)
        return self.max_ts

    def advance(self, wall_now: float) -> list[Partial]:
        """Close every window the clock has passed; return partials (closed and late) to emit."""
        out: list[Partial] = []
        if self.max_ts is None:
            # An idle partition closes nothing and reports no watermark (the judge leaves it
            # out), so a backfill that starts later on it is not counted as late.
            return out
        horizon = self.clock(wall_now) - self.lateness
        closable = int(horizon // self.window_seconds) * self.window_seconds
        if self.closed_until is None or closable > self.closed_until:
            for w in sorted(k for k in self.windows if k + self.window_seconds <= closable):
                out.extend(self._expand(w, self.windows.pop(w), late=False))
                self._tools.pop(w, None)
                self._dirty_windows.discard(w)
                self._dropped_windows.add(w)
                self.counters.windows_closed += 1
            self.closed_until = closable
        for w in sorted(self.late_cells):
            out.extend(self._expand(w, self.late_cells.pop(w), late=True))
            self._tools.pop(w, None)
        if self.closed_until is not None:
            self._compact_ids(self.closed_until)
        return out

    def _compact_ids(self, closed_until: int) -> None:
        """Move the ids of closed windows from strings to hashes, and forget those of windows
        past the horizon (no duplicate of them can matter any more). A window's strings are
        the ids its checkpoints have hashed already (``_open_hashes``) and those not yet
        checkpointed (``_new_ids``), hashed here and kept for the next checkpoint."""
        ws = self.window_seconds
        cutoff = closed_until - self.dedupe_retention
        for w in [k for k in self.ids if k + ws <= closed_until]:
            del self.ids[w]
            parts = self._open_hashes.pop(w, [])
            rest = self._new_ids.pop(w, None)
            if rest:
                fresh = id_hashes(rest, len(rest))
                parts.append(fresh)
                self._unsaved.setdefault(w, []).append(fresh)
            if w + ws <= cutoff or not parts:
                continue
            got = parts[0] if len(parts) == 1 else np.concatenate(parts)
            old = self.hashed.get(w)
            # a sort is enough: the ids of a set are distinct, and so are their hashes but for
            # a collision, which a binary search does not mind
            self.hashed[w] = np.sort(got) if old is None else np.unique(np.concatenate((old, got)))
        for store in (self.hashed, self._new_ids, self._open_hashes, self._unsaved):
            for w in [k for k in store if k + ws <= cutoff]:
                del store[w]

    def remembers(self, event_id: str, ts: float) -> bool:
        """Whether an event with this id and time would be taken for a duplicate now."""
        w = int(ts // self.window_seconds) * self.window_seconds
        frozen = self.hashed.get(w)
        return event_id in self.ids.get(w, ()) or (frozen is not None and _holds(frozen, event_id))

    def _expand(self, w: int, cells: dict[CellKey, Sums], late: bool) -> Iterable[Partial]:
        acc: dict[str, Partial] = {}
        plan_of = self._plans
        for cell, sums in cells.items():
            plan = plan_of.get(cell)
            if plan is None:
                if len(plan_of) > 100_000:
                    plan_of.clear()
                plan = plan_of[cell] = _plan(cell, self.watched)
            s0, s1, s2, s3, s4, s5 = sums
            for name, labels, detected, contrib_keys in plan:
                p = acc.get(name)
                if p is None:
                    # labels are shared between partials of the same series: never mutated
                    p = acc[name] = Partial(name, labels, w, [s0, s1, s2, s3, s4, s5], {}, detected, late)
                else:
                    ps = p.sums
                    ps[0] += s0
                    ps[1] += s1
                    ps[2] += s2
                    ps[3] += s3
                    ps[4] += s4
                    ps[5] += s5
                if contrib_keys:
                    c = p.contributors
                    for k in contrib_keys:
                        c[k] = c.get(k, 0) + s0
        for p in acc.values():
            if max(p.sums) > I64_MAX:  # see I64_MAX: unreachable with bounded events, but never a crash
                p.sums = [min(x, I64_MAX) for x in p.sums]
                p.contributors = {k: min(v, I64_MAX) for k, v in p.contributors.items()}
            if len(p.contributors) > TOP_K:
                top = sorted(p.contributors.items(), key=lambda kv: -kv[1])[:TOP_K]
                p.contributors = dict(top)
        return acc.values()

    # -- persistence --------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        """Key → value changes since the last checkpoint (value None deletes the key).

        Keys are relative to the partition; the caller prefixes them. A checkpoint is a handful
        of records whatever the load (each changelog record costs a produce): the open windows
        as one record, the dedupe ids seen since the last checkpoint as one append-only chunk,
        and the meta record. Chunks are deleted once every window in them is past retention.
        """
        changes: dict[str, Any] = {}
        if self._dirty_windows or self._dropped_windows:
            # into the record the meta record does not name: a crash before the meta record
            # is written leaves the current one whole (its offsets and its windows agree)
            self._wins_buf ^= 1
            changes[WINS[self._wins_buf]] = [[w, [[*cell, *(sums if max(sums) <= I64_MAX else [min(x, I64_MAX) for x in sums])]
                                    for cell, sums in cells.items()]] for w, cells in self.windows.items()]
        # the ids as their hashes, packed (base64 of little-endian uint64): a chunk maps a
        # window to the hashes of the ids first seen in it since the last checkpoint
        chunk: dict[str, list[np.ndarray]] = {}
        size = 0
        for w in sorted(self._new_ids.keys() | self._unsaved.keys()):
            parts = self._unsaved.get(w, [])
            ids = self._new_ids.get(w)
            if ids:
                h = id_hashes(ids, len(ids))
                parts = [*parts, h]
                if w in self.ids:  # still strings: its compaction takes these instead of hashing again
                    self._open_hashes.setdefault(w, []).append(h)
            if not parts:
                continue
            hashes = parts[0] if len(parts) == 1 else np.concatenate(parts)
            for i in range(0, len(hashes), ID_CHUNK):
                part = hashes[i : i + ID_CHUNK]
                if size + len(part) > ID_CHUNK and chunk:
                    self._write_chunk(changes, chunk)
                    chunk, size = {}, 0
                chunk.setdefault(str(w), []).append(part)
                size += len(part)
        if chunk:
            self._write_chunk(changes, chunk)
        if self.closed_until is not None:
            cutoff = self.closed_until - self.dedupe_retention
            for n, newest in list(self._chunks.items()):
                if newest + self.window_seconds <= cutoff:
                    del self._chunks[n]
                    changes[f"ids|{n}"] = None
        changes["meta"] = {
            "max_ts": self.max_ts,
            "closed_until": self.closed_until,
            "applied_offset": self.applied_offset,
            "emit_seq": self.emit_seq,
            "counters": self.counters.to_dict(),
            "chunks": {str(k): v for k, v in self._chunks.items()},
            "next_chunk": self._next_chunk,
            "wins": self._wins_buf,
        }
        self._dirty_windows.clear()
        self._dropped_windows.clear()
        self._new_ids = {}
        self._unsaved = {}
        return changes

    def _write_chunk(self, changes: dict[str, Any], chunk: dict[str, list[np.ndarray]]) -> None:
        n = self._next_chunk
        self._next_chunk += 1
        changes[f"ids|{n}"] = {w: _pack(np.concatenate(parts)) for w, parts in chunk.items()}
        self._chunks[n] = max(int(w) for w in chunk)

    def restore(self, items: Iterable[tuple[str, Any]], wall_now: float) -> None:
        """Rebuild from the persisted keys written by :meth:`checkpoint`.

        The meta record is written last: what a checkpoint cut short by a crash wrote before it
        (the other open-window record, id chunks) is not read, so that the windows, the ids and
        the offset restored are one checkpoint's. (States before 2026-12 name neither: their one
        open-window record and every id chunk are read.)"""
        parts: dict[int, list[np.ndarray]] = {}
        items = [(k, v) for k, v in items if v is not None]
        meta = next((v for k, v in items if k == "meta"), None) or {}
        wins = WINS[int(meta.get("wins", 0))]
        chunks = {f"ids|{n}" for n in meta["chunks"]} if "wins" in meta else None
        for key, value in items:
            kind, _, _rest = key.partition("|")
            if (kind == "wins" and key != wins) or (kind == "ids" and chunks is not None and key not in chunks):
                continue  # written by a checkpoint whose meta record never was
            if kind == "meta":
                self.max_ts = value["max_ts"]
                self.wall_at_max = wall_now if self.max_ts is not None else None
                self.closed_until = value["closed_until"]
                self.applied_offset = value["applied_offset"]
                self.emit_seq = int(value.get("emit_seq", 0))
                self.counters = Counters(**value["counters"])
                self._chunks = {int(k): int(v) for k, v in value.get("chunks", {}).items()}
                self._next_chunk = int(value.get("next_chunk", 0))
                self._wins_buf = int(value.get("wins", 0))
            elif kind == "wins":
                # a row is a cell (5 names) or a tool cell (org, tool), then its six sums
                self.windows = {
                    int(w): {tuple(r[:-6]): [int(x) for x in r[-6:]] for r in rows}
                    for w, rows in value
                }
                for cells in self.windows.values():
                    if not any(len(k) == 2 for k in cells):
                        _no_tool_cells(cells)  # a checkpoint's from before tool cells
                self._tools = {w: {k[1] for k in cells if len(k) == 2 and k[1]} for w, cells in self.windows.items()}
            elif kind == "ids":
                # hashes (packed), or the ids themselves as checkpoints before the hashes held them
                for w, ids in value.items():
                    parts.setdefault(int(w), []).append(_unpack(ids) if isinstance(ids, str) else id_hashes(ids, len(ids)))
        for w, arrays in parts.items():
            old = self.hashed.get(w)
            self.hashed[w] = np.unique(np.concatenate(arrays if old is None else [old, *arrays]))
