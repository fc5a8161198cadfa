"""Imports in ``streams/`` only go down: the ground floor (``common``) reads no room, each room
reads only the rooms below it, and no room reads the worker that sits on top of them all.

Read from the source with ``ast`` (every import, also those inside functions), so a new module
is held to it the day it is added.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

STREAMS = Path(__file__).resolve().parents[2] / "streams"

# What each room may import from streams/ besides itself. The order is the house: a room
# only reads what is listed for it, and nothing lists "worker".
MAY_READ: dict[str, set[str]] = {
    "common": set(),
    "ingest": {"common"},
    "budgets": {"common", "ingest"},
    "org": {"common", "budgets"},
    "judge": {"common", "ingest", "budgets", "org"},
    "reports": {"common", "ingest", "budgets"},
    "delivery": {"common"},
    "worker": {"common", "ingest", "budgets", "org", "judge", "reports", "delivery"},
}
# Faust is the worker's business; the hot path's aiokafka loop is ingest's.
FAUST_ALLOWED = {"worker"}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (write the full streams.<room>... path)"
            if node.module:
                out.append(node.module)
    return out


def _modules() -> list[Path]:
    return sorted(p for p in STREAMS.rglob("*.py"))


def test_every_module_sits_in_a_room() -> None:
    loose = [p.name for p in STREAMS.glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"modules outside the rooms: {loose}"
    rooms = {p.name for p in STREAMS.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert rooms == set(MAY_READ)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(STREAMS)))
def test_imports_only_go_down(path: Path) -> None:
    rel = path.relative_to(STREAMS)
    room = rel.parts[0] if len(rel.parts) > 1 else None
    for module in _imports(path):
        parts = module.split(".")
        if parts[0] == "tokenpulse":
            pytest.fail(f"{rel} imports {module}: the CLI/settings package sits on top of streams")
        if parts[0] == "faust":
            assert room in FAUST_ALLOWED, f"{rel} imports Faust: only the worker talks to it"
        if parts[0] != "streams" or room is None:
            continue
        assert len(parts) >= 3, f"{rel} imports {module}: name the module, not the room"
        target = parts[1]
        assert target == room or target in MAY_READ[room], (
            f"{rel} imports {module}: {room}/ may read {sorted(MAY_READ[room]) or 'nothing'} of streams/"
        )


def test_the_rule_catches_an_upward_import(tmp_path: Path) -> None:
    """The check itself: a room reaching into the worker is seen."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from streams.worker.query import takes\n")
    assert "streams.worker.query" in _imports(bad)
    assert "worker" not in MAY_READ["reports"]
