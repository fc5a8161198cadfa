"""What the worker's console says: no WARNING for what is not a problem, one line per alert.

Two of Faust's warnings are its flow control working as designed, and a newcomer reads them as
trouble (issue 13). Both come from catching up on a burst of input (the dev stack's three hours
of backfill; a worker restarting behind its topic):

- ``producer buffer full size N`` (``faust.transport.producer``): table writes queue their
  changelog records in a buffer of 100; past it, Faust pauses the streams until the producer
  has sent them (``ProducerBuffer.wait_until_ebb``). That pause *is* the back-pressure, and it
  ends by itself; lowered to DEBUG.
- ``Timer commit is overlapping`` (``mode.timers``): the commit waits for those changelog
  records to be acknowledged, which on Tansu (one record per batch, see
  :func:`streams.worker.app.faust_settings`) takes seconds after a burst, longer than the
  1 s commit interval. Offsets are committed late, never wrongly; lowered to INFO (which,
  like mode's other timer notes, the console leaves out). Any other timer's overlap (the
  judge's tick, the delivery retries) stays a WARNING.

Use :func:`quiet_worker_logs` once, before the worker starts.
"""

from __future__ import annotations

import logging

__all__ = ["Demote", "quiet_worker_logs"]


class Demote(logging.Filter):
    """A logger filter that lowers records whose message starts with ``prefix`` (and, with
    ``arg0``, whose first argument is it) to ``level``; a record lowered below the logger's
    own level is dropped, as if it had been logged at that level in the first place."""

    def __init__(self, prefix: str, level: int, arg0: str | None = None) -> None:
        super().__init__()
        self.prefix, self.level, self.arg0 = prefix, level, arg0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= self.level or not str(record.msg).startswith(self.prefix):
            return True
        if self.arg0 is not None and not (isinstance(record.args, tuple) and record.args
                                          and record.args[0] == self.arg0):
            return True
        record.levelno, record.levelname = self.level, logging.getLevelName(self.level)
        return logging.getLogger(record.name).isEnabledFor(self.level)


def quiet_worker_logs() -> None:
    """Faust's and mode's own INFO chatter off, their two catch-up warnings lowered (see the
    module's docstring); tokenpulse's own lines (partitions, alerts) untouched. Idempotent."""
    for name in ("faust", "aiokafka", "mode"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name, demote in (("faust.transport.producer", Demote("producer buffer full", logging.DEBUG)),
                         ("mode.timers", Demote("Timer %s is overlapping", logging.INFO, arg0="commit"))):
        logger = logging.getLogger(name)
        if not any(isinstance(f, Demote) for f in logger.filters):
            logger.addFilter(demote)
