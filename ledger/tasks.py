"""Hub-queue tasks of the ledger. Thin: each calls one service."""

from __future__ import annotations

from celery import shared_task

from ledger import services


@shared_task(name="ledger.tasks.checkpoint_scheduled", ignore_result=True)
def checkpoint_scheduled() -> int | None:
    """Sign a checkpoint if entries arrived since the last one; running twice is harmless."""
    cp = services.checkpoint_create()
    return cp.size if cp else None
