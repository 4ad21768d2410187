"""The hub's Celery app. Node workers use their own Django-free app (compute.node.app)."""

from __future__ import annotations

import gc
import os
from typing import Any

from celery import Celery, signals
from kombu.transport import TRANSPORT_ALIASES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# redis:// URLs take the hub's Redis transport (one client per channel, not one per publish and
# acknowledgement: config.broker); every other scheme is kombu's own.
TRANSPORT_ALIASES["redis"] = "config.broker:Transport"

app = Celery("usufruct")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["compute", "ledger", "marketplace"])


@signals.worker_ready.connect  # the solo pool: the worker process itself
@signals.worker_process_init.connect  # a pool's child process
def freeze_startup_heap(**_: Any) -> None:
    """Move what the worker holds after start-up (Django, the apps, Celery) out of the garbage
    collector's reach: its full collections then scan only what tasks allocate since. In the
    hub's intake one full collection scanned the whole start-up heap, 65 ms, every few seconds
    under load (``gc.freeze``, the Python documentation's advice for long-lived servers)."""
    gc.freeze()
