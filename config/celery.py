"""The hub's Celery app. Node workers use their own Django-free app (compute.node.app)."""

from __future__ import annotations

import os

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# redis:// URLs take the hub's Redis transport (one client per channel, not one per publish and
# acknowledgement: config.broker); every other scheme is kombu's own.
TRANSPORT_ALIASES["redis"] = "config.broker:Transport"

app = Celery("usufruct")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["compute", "ledger", "marketplace"])
