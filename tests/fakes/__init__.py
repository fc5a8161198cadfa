"""Local servers that speak the real receiver APIs (Slack Web API, PagerDuty Events v2, the signed webhook)."""

from tests.fakes.pagerduty_server import FakePagerDutyServer
from tests.fakes.slack_server import FakeSlackServer
from tests.fakes.webhook_server import FakeWebhookServer

__all__ = ["FakePagerDutyServer", "FakeSlackServer", "FakeWebhookServer"]
