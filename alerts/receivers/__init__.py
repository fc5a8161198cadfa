"""Every receiver, one folder each, and the one registry that the settings,
``tokenpulse alerts test``, the delivery loop and ``/api/sinks`` iterate.

Adding a receiver (see :mod:`alerts.receivers.base`): a folder ``alerts/receivers/<name>/``
with its config, sink and rendering, exporting a :class:`~alerts.receivers.base.Receiver` as
``RECEIVER``, and its line below. Its settings are then ``TOKENPULSE_<NAME>_<FIELD>``, policy
routes may name it (``receiver: <name>``), and ``tokenpulse alerts test --to <name>`` sends
through it.
"""

from __future__ import annotations

from alerts.receivers import opsgenie, pagerduty, slack, webhook
from alerts.receivers.base import DEFAULT_TARGET, Connection, Receiver, ReceiverConfig

RECEIVERS: dict[str, Receiver] = {
    r.name: r
    for r in (
        slack.RECEIVER,
        pagerduty.RECEIVER,
        webhook.RECEIVER,
        opsgenie.RECEIVER,
    )
}

__all__ = ["DEFAULT_TARGET", "RECEIVERS", "Connection", "Receiver", "ReceiverConfig"]
