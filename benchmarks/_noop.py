"""The baseline task of ``hub_replies.py``: takes a message and only counts it (one Redis INCR)."""

from __future__ import annotations

import os
from typing import Any

import redis
from celery import shared_task

_redis = redis.Redis.from_url(os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/13"))


@shared_task(name="bench.noop", ignore_result=True)
def noop(wire: dict[str, Any]) -> None:
    _redis.incr("usufruct-bench:noop")
