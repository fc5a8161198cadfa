"""``tokenpulse report``'s own checks, before it talks to a worker (the integration test
tests/integration/test_reports.py runs it against a real one)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenpulse.broker import free_port
from tokenpulse.cli import app

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text('reports:\n  - {channel: "#finops", period: weekly}\n')
    return p


def test_listed_in_help() -> None:
    assert "report" in runner.invoke(app, ["--help"]).output


def test_needs_a_period_or_a_report(policy: Path) -> None:
    res = runner.invoke(app, ["report", "--policy", str(policy)])
    assert res.exit_code == 2 and "give --period day or --period week" in res.output
    res = runner.invoke(app, ["report", "--period", "month", "--policy", str(policy)])
    assert res.exit_code == 2 and "--period" in res.output


def test_unknown_report_lists_the_policy_ones(policy: Path) -> None:
    res = runner.invoke(app, ["report", "--report", "daily:#nope", "--policy", str(policy)])
    assert res.exit_code == 2 and "no report 'daily:#nope' in the policy; it has: weekly:#finops" in res.output
    res = runner.invoke(app, ["report", "--report", "weekly:#finops", "--period", "day", "--policy", str(policy)])
    assert res.exit_code == 2 and "drop --period" in res.output


def test_says_when_the_worker_is_not_there(policy: Path) -> None:
    api = f"http://127.0.0.1:{free_port()}"
    res = runner.invoke(app, ["report", "--period", "week", "--policy", str(policy), "--api", api])
    assert res.exit_code == 2 and f"cannot reach the worker's API at {api}" in res.output


def test_a_bad_policy_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text('reports:\n  - {channel: "#x", period: hourly}\n')
    res = runner.invoke(app, ["report", "--period", "day", "--policy", str(p)])
    assert res.exit_code == 2 and f"{p}:2: reports.0.period" in res.output


def test_sends_the_api_token_as_a_bearer_header(policy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker guarded by TOKENPULSE_API_TOKEN answers the CLI, which holds the same setting;
    without it the 401's reason is printed (never the token)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    token = "report-token-0123456789abcdef"
    seen: list[str | None] = []

    class Worker(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's name
            seen.append(self.headers.get("Authorization"))
            ok = self.headers.get("Authorization") == f"Bearer {token}"
            body = {"complete": True, "report": {}} if ok else {"error": "unauthorized: send a token"}
            data = json.dumps(body).encode()
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Worker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        res = runner.invoke(app, ["report", "--period", "week", "--policy", str(policy), "--api", api, "--json"])
        assert res.exit_code == 2 and "unauthorized" in res.output and seen == [None]
        monkeypatch.setenv("TOKENPULSE_API_TOKEN", token)
        res = runner.invoke(app, ["report", "--period", "week", "--policy", str(policy), "--api", api, "--json"])
        assert res.exit_code == 0, res.output
        assert seen[-1] == f"Bearer {token}" and token not in res.output
    finally:
        server.shutdown()
