"""Hub-queue tasks of the ledger. Thin: each calls one service."""

from __future__ import annotations

from celery import shared_task

from ledger import services


@shared_task(name="ledger.tasks.checkpoint_scheduled", ignore_result=True)
def checkpoint_scheduled() -> int | None:
    """Sign a checkpoint if entries arrived since the last one; running twice is harmless."""
    cp = services.checkpoint_create()
    return cp.size if cp else None


@shared_task(name="ledger.tasks.integrate_pending", ignore_result=True)
def integrate_pending() -> int:
    """The ledger writer: integrate every pending entry, in batches (safe to run twice at once:
    each batch is taken under the ledger lock)."""
    from ledger import writer

    return writer.integrate_all()
