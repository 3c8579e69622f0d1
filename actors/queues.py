"""Queue names, and which queue a conversion runs on. Imports nothing heavy (settings reads it).

Conversions that run LibreOffice have a queue of their own, with their own workers and time
limit, so one slow document never holds up photos.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

EXPORT_QUEUE = "exports"
OFFICE_QUEUE = "office"
#: Webhook deliveries: their own queue, actor and worker processes (actors/webhooks.py).
WEBHOOK_QUEUE = "webhooks"
#: Every queue the code defines; a worker pool consumes some or all of them.
QUEUES = (EXPORT_QUEUE, OFFICE_QUEUE, WEBHOOK_QUEUE)
#: The queues whose messages are conversions.
CONVERSION_QUEUES = (EXPORT_QUEUE, OFFICE_QUEUE)


class _Runnable(Protocol):
    @property
    def needs(self) -> Sequence[str]: ...


def queue_for(conversion: _Runnable) -> str:
    """The queue of a conversion (exporters.registry.Conversion): by what it needs to run."""
    return OFFICE_QUEUE if "office" in conversion.needs else EXPORT_QUEUE
