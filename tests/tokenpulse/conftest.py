from __future__ import annotations

import os

import pytest


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No TOKENPULSE_* setting from the shell reaches a command under test."""
    for k in list(os.environ):
        if k.startswith("TOKENPULSE_"):
            monkeypatch.delenv(k)
