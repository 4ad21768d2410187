"""The hub's Celery app. Node workers use their own Django-free app (compute.node.app)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("usufruct")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["compute", "ledger"])
