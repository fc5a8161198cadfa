"""Text that reaches a terminal carries no raw control characters: ``tokenpulse report`` (text
and JSON), ``tokenpulse normalize`` errors, error messages, and log lines. A team named with an
escape sequence that sets the window title, or a CR/LF that would forge a log line, is shown
escaped (and the JSON keeps the exact value)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from streams.common.text import install_safe_logging, terminal_safe
from tests.alerts.test_report import report, row
from tokenpulse.cli import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("clean_env")

TITLE = "ads\x1b]0;you have been pwned\x07"
FORGED = "search\r\n2026-11-30 INFO tokenpulse.worker all good"
BIDI = "legal\u202egnp.exe"
RAW = ("\x1b", "\x07", "\r", "\u202e")


@pytest.fixture
def api() -> Iterator[str]:
    """A worker's /api/report answering a report whose team names are hostile (as a worker
    older than the name rule could hold them)."""
    body = orjson.dumps({"complete": True, "partitions": [0], "report": report(
        by_team=[row("team", TITLE, 10.0, 5.0), row("team", FORGED, 2.0, 1.0), row("team", BIDI, 1.0, 1.0)])})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_report_text_shows_hostile_names_escaped(api: str) -> None:
    res = runner.invoke(app, ["report", "--period", "week", "--api", api])
    assert res.exit_code == 0, res.output
    assert not any(c in res.stdout for c in RAW), res.stdout
    assert "ads\\x1b]0;you have been pwned\\x07" in res.stdout
    assert "search\\r\\n2026-11-30 INFO" in res.stdout
    assert "legal\\u202egnp.exe" in res.stdout


def test_report_json_keeps_the_exact_names_in_escapes(api: str) -> None:
    res = runner.invoke(app, ["report", "--period", "week", "--api", api, "--json"])
    assert res.exit_code == 0, res.output
    assert not any(c in res.stdout for c in RAW), res.stdout
    teams = [r["team"] for r in json.loads(res.stdout)["by_team"]]
    assert teams == [TITLE, FORGED, BIDI]


def test_normalize_errors_and_summaries_are_one_line_each() -> None:
    lines = [orjson.dumps({"event_id": "1", "ts": 1767225600, "team": TITLE, "model": "m", "input_tokens": 1}),
             orjson.dumps({"event_id": "2", "ts": 1767225600, "team": "ads", "model": "m", "input_tokens": "\x1b[2J"}),
             b'{"event_id": "3", "ts": "\xe2\x80\xae2026"}']
    res = runner.invoke(app, ["normalize"], input=b"\n".join(lines) + b"\n")
    errors = res.stderr.splitlines()
    assert len(errors) == 4 and errors[-1] == "0 accepted, 3 rejected"
    assert not any(c in res.stderr.replace("\n", "") for c in RAW), res.stderr
    assert "U+001B" in json.loads(errors[0])["reason"]


def test_error_messages_are_escaped_line_by_line(tmp_path: Any) -> None:
    missing = tmp_path / "no\x1b]0;x\x07such.yaml"
    res = runner.invoke(app, ["report", "--period", "day", "--policy", str(missing)])
    assert res.exit_code == 2
    assert "\x1b" not in res.output and "no\\x1b]0;x\\x07such.yaml" in res.output


def test_log_lines_escape_their_arguments(caplog: pytest.LogCaptureFixture) -> None:
    before = logging.getLogRecordFactory()
    try:
        install_safe_logging()
        with caplog.at_level(logging.INFO, logger="tokenpulse.test"):
            logging.getLogger("tokenpulse.test").info("rejected team %s", FORGED)
        [rec] = caplog.records
        assert rec.getMessage() == "rejected team search\\r\\n2026-11-30 INFO tokenpulse.worker all good"
        assert "\n" not in caplog.text.strip()
    finally:
        logging.setLogRecordFactory(before)


@pytest.mark.parametrize(("text", "shown"), [
    ("plain team", "plain team"),
    ("tab\there", "tab\\there"),
    ("bell\x07 del\x7f c1\x9b", "bell\\x07 del\\x7f c1\\x9b"),
    ("zero\u200bwidth \ufeffbom \u2028line", "zero\\u200bwidth \\ufeffbom \\u2028line"),
    ("tag\U000e0041", "tag\\U000e0041"),
    ("a\\b \x00", "a\\\\b \\x00"),  # a backslash is doubled once something is escaped
    ("a\\b", "a\\b"),
    ("équipe データ", "équipe データ"),
])
def test_terminal_safe(text: str, shown: str) -> None:
    assert terminal_safe(text) == shown
