"""The worker's console (issue 13, item 5): Faust's two catch-up warnings do not reach it as
warnings, any other warning does, and every alert raised or resolved is one line."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tokenpulse.quiet import Demote, quiet_worker_logs

NAMES = ("faust", "aiokafka", "mode", "faust.transport.producer", "mode.timers")


@pytest.fixture
def console() -> Iterator[list[logging.LogRecord]]:
    """What a handler on the root logger (the console) gets, at INFO; loggers restored after."""
    saved = {n: (logging.getLogger(n).level, list(logging.getLogger(n).filters)) for n in NAMES}
    got: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append(record)

    root = logging.getLogger()
    handler, old_level = Keep(), root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield got
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        for n, (level, filters) in saved.items():
            logging.getLogger(n).setLevel(level)
            logging.getLogger(n).filters[:] = filters


def _faust_says() -> None:
    # exactly as faust/transport/producer.py and mode/timers.py log them
    logging.getLogger("faust.transport.producer").warning("producer buffer full size 12909")
    logging.getLogger("mode.timers").warning("Timer %s is overlapping (interval=%r runtime=%r)", "commit", 1.0, 9.2)
    logging.getLogger("mode.timers").info("Timer %s woke up too late, with a drift of +%r", "commit", 0.7)


def test_without_it_the_console_shows_faust_warnings(console: list[logging.LogRecord]) -> None:
    _faust_says()
    assert [r.levelname for r in console] == ["WARNING", "WARNING", "INFO"]


def test_the_catch_up_warnings_are_lowered_and_others_are_kept(console: list[logging.LogRecord]) -> None:
    quiet_worker_logs()
    quiet_worker_logs()  # idempotent: one filter each
    _faust_says()
    assert console == []  # mode's INFO is off: the lowered overlap goes with its other notes
    assert len(logging.getLogger("mode.timers").filters) == 1
    logging.getLogger("mode").setLevel(logging.INFO)  # as --loglevel info on mode would
    _faust_says()
    assert [(r.levelname, r.getMessage()[:27]) for r in console] == [
        ("INFO", "Timer commit is overlapping"), ("INFO", "Timer commit woke up too la")]
    logging.getLogger("mode").setLevel(logging.WARNING)
    console.clear()
    logging.getLogger("mode.timers").warning("Timer %s is overlapping (interval=%r runtime=%r)", "judge_tick", 1, 3)
    logging.getLogger("faust.transport.producer").warning("something else is wrong")
    logging.getLogger("faust").warning("a real warning")
    assert [r.levelname for r in console] == ["WARNING"] * 3
    assert all(r.levelno == logging.WARNING for r in console)


def test_demote_leaves_lower_records_alone() -> None:
    rec = logging.LogRecord("x", logging.DEBUG, __file__, 1, "producer buffer full size 3", None, None)
    assert Demote("producer buffer full", logging.INFO).filter(rec) and rec.levelno == logging.DEBUG
