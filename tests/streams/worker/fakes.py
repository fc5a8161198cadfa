"""Plain stand-ins for what Faust gives the worker's parts: tables and topics that record what
they are given, so :class:`~streams.worker.judging.JudgeWorker` and
:class:`~streams.worker.delivering.DeliveryWorker` run in a test without a broker."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streams.worker.tables import Tables, table_names


@dataclass
class MemoryTable:
    """A table: its ``data``, and every changelog write in order."""

    data: dict[str, Any] = field(default_factory=dict)
    changelog: list[tuple[int, str, Any]] = field(default_factory=list)

    def send_changelog(self, partition: int, key: Any, value: Any) -> None:
        self.changelog.append((partition, key, value))


def memory_tables(reports: bool = False) -> Tables:
    return Tables(**{name: MemoryTable() for name in table_names(reports)})  # type: ignore[arg-type]


@dataclass
class Topic:
    """A topic's sends, in order: (key, value, partition)."""

    sent: list[tuple[bytes, bytes, int | None]] = field(default_factory=list)

    async def send(self, key: bytes, value: bytes, partition: int | None = None) -> None:
        self.sent.append((key, value, partition))
