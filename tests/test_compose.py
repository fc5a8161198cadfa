"""docker-compose.yml, read as Compose reads it (no Docker engine here): the default stack and
the ``scale`` profile's two workers behind one published port stay consistent with each other
and with the settings the worker reads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def published(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) of each published port."""
    out = []
    for spec in service.get("ports", []):
        host, port, target = str(spec).rsplit(":", 2) if str(spec).count(":") == 2 else ("0.0.0.0", *str(spec).split(":"))
        out.append((host, int(port), int(target)))
    return out


def test_the_default_stack_is_unchanged_by_the_profile(compose: dict[str, Any]) -> None:
    always = {name for name, svc in compose["services"].items() if not svc.get("profiles")}
    assert always == {"kafka", "worker", "simulator"}
    scale = {name for name, svc in compose["services"].items() if "scale" in (svc.get("profiles") or [])}
    assert scale == {"worker-2", "proxy"}


def test_the_two_workers_are_one_consumer_group_with_the_same_settings(compose: dict[str, Any]) -> None:
    one, two = compose["services"]["worker"], compose["services"]["worker-2"]
    assert one["environment"] == two["environment"]
    for key in ("build", "command", "volumes", "depends_on"):
        assert one[key] == two[key], key
    env = one["environment"]
    assert env["TOKENPULSE_APP_ID"]  # one group: the partitions are shared, not duplicated
    assert env["TOKENPULSE_WEB_HOST"] == "0.0.0.0"  # reachable by the proxy
    assert "ports" not in two  # only through the proxy
    # two workers need at least two partitions, or one of them idles
    default_parts = re.fullmatch(r"\$\{TOKENPULSE_USAGE_PARTITIONS:-(\d+)\}", env["TOKENPULSE_USAGE_PARTITIONS"])
    assert default_parts and int(default_parts.group(1)) >= 2
    # every TOKENPULSE_ name is a documented setting (a typo would be silently ignored)
    docs = "".join((ROOT / "docs" / name).read_text(encoding="utf-8") for name in ("configuration.md", "alerts.md", "access.md"))
    undocumented = {k for k in env if k.startswith("TOKENPULSE_")
                    and not re.search(rf"\b(TOKENPULSE_)?{k.removeprefix('TOKENPULSE_')}\b", docs)}
    assert not undocumented, undocumented


def test_the_proxy_publishes_one_port_in_front_of_both_workers(compose: dict[str, Any]) -> None:
    proxy = compose["services"]["proxy"]
    [(host, port, target)] = published(proxy)
    assert host == "127.0.0.1"
    others = {p for name, svc in compose["services"].items() if name != "proxy" for _, p, _ in published(svc)}
    assert port not in others
    [conf] = proxy["configs"]
    text = compose["configs"][conf["source"]]["content"]
    assert conf["target"].startswith("/etc/nginx/conf.d/")
    assert re.search(rf"listen\s+{target};", text)
    web_port = int(compose["services"]["worker"]["environment"]["TOKENPULSE_WEB_PORT"])
    servers = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", text, re.M)
    assert sorted(servers) == [("worker", str(web_port)), ("worker-2", str(web_port))]
    # Compose interpolates "$": nginx's variables must be written "$$"
    assert not re.search(r"(?<!\$)\$(?!\$)[a-z_]", text)
    assert set(proxy["depends_on"]) == {"worker", "worker-2"}
