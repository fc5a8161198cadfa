"""Hostile policy files shared by the policy tests, and a guard that keeps a test of one
bounded in memory and time even against code that would expand it."""

from __future__ import annotations

import re
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# An alias bomb like the (528 bytes, in detector.overrides[].params): nine lists of
# nine, each item an alias of the list above: 9**9 = 387 million "lol"s once expanded.
BOMB = """\
detector:
  overrides:
    - match: {team: ads}
      params:
        a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]
        b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
        c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
        d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
        e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
        f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
        g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
        h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
        i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def _vm_bytes() -> int:
    m = re.search(r"VmSize:\s+(\d+) kB", Path("/proc/self/status").read_text())
    assert m is not None
    return int(m.group(1)) * 1024


@contextmanager
def at_most(extra_bytes: int, seconds: float) -> Iterator[None]:
    """Fail (MemoryError) rather than grow this process by more than ``extra_bytes`` of address
    space, and fail if the block uses more than ``seconds`` of CPU: what an unbounded expansion
    does is stopped within a second or two instead of eating the machine.

    The bound is on this process's CPU time, the work the block did, not on the wall clock: the
    50,000-deep nesting uses about 0.2 s of CPU, yet took 2.8 s of wall time on a machine busy
    with other work and failed a wall-clock bound of 2 s; an expansion that runs away uses CPU."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (_vm_bytes() + extra_bytes, hard))
    t0, w0 = time.process_time(), time.perf_counter()
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    assert cpu < seconds, f"the block used {cpu:.2f} s of CPU ({wall:.2f} s of wall time), more than {seconds} s"
