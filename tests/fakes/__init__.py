"""Local servers that speak the real receiver APIs (Slack Web API, PagerDuty Events v2)."""

from tests.fakes.pagerduty_server import FakePagerDutyServer
from tests.fakes.slack_server import FakeSlackServer

__all__ = ["FakePagerDutyServer", "FakeSlackServer"]
