"""Hub-queue tasks of the ledger. Thin: each calls one service."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_ready

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


@worker_ready.connect
def _drain_on_start(sender: Any = None, **_: Any) -> None:
    """A hub worker that starts integrates what is pending: a predecessor killed after its
    commit but before its wake-up ran (the wake-up it had reserved dies with it) leaves
    accepted entries that no later acceptance may come to wake (the beat backstop aside)."""
    integrate_pending.apply_async(queue="hub")
