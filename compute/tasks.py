"""Hub tasks: thin wrappers that call one service each."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import shared_task
from celery_batches import Batches, SimpleRequest
from django.conf import settings

from compute import services
from config import broker

log = logging.getLogger(__name__)


class IntakeBatches(Batches):  # type: ignore[misc]
    """celery-batches, with a batch's acknowledgements sent to the broker in one round trip.

    The hub's intake acknowledges early (the task is not ``acks_late``), as celery-batches
    does when it hands the batch to the pool: a reply lost with a worker is asked for again by
    ``resend_unanswered``, and one taken twice is a duplicate by its digest. Celery defers each
    acknowledgement to its event loop, one round trip each; here the batch's messages are
    acknowledged together first, and the requests marked so (celery-batches then skips them)."""

    def flush(self, requests: Any) -> Any:
        early = [r for r in requests if not r.task.acks_late and not r.acknowledged]
        if early:
            with broker.acks_together(early[0].message.channel):
                for request in early:
                    if not request.message.acknowledged:
                        request.message.ack()
                    request.acknowledged = True
        return super().flush(requests)


@shared_task(name="usufruct.hub.start_job")
def start_job(job_id: str) -> None:
    services.job_start(job_id=job_id)


@shared_task(
    name="usufruct.hub.receive",
    base=IntakeBatches,
    flush_every=settings.USUFRUCT_INTAKE_BATCH,
    flush_interval=settings.USUFRUCT_INTAKE_WAIT_SECONDS,
)
def receive(requests: list[SimpleRequest]) -> list[str]:
    """Node → hub messages, taken off the broker in batches (up to ``USUFRUCT_INTAKE_BATCH``
    messages, or what came within ``USUFRUCT_INTAKE_WAIT_SECONDS``) and received together.
    Each message is sent as ``args=[wire]``. Bad messages are logged and dropped, never retried."""
    wires = [r.args[0] if r.args else r.kwargs.get("wire") for r in requests]
    started = time.perf_counter()
    received = services.messages_receive(wires=wires)
    log.info("hub took %d node message(s) in %.1f ms", len(wires), (time.perf_counter() - started) * 1000)
    outcomes = []
    for outcome in received:
        if isinstance(outcome, Exception):
            log.warning("hub rejected a message: %s", outcome)
            outcomes.append(f"rejected: {outcome}")
        else:
            log.info("hub message: %s", outcome)
            outcomes.append(outcome)
    return outcomes


@shared_task(name="usufruct.hub.fail_stale_jobs")
def fail_stale_jobs() -> int:
    from datetime import timedelta

    from django.conf import settings

    return services.jobs_fail_stale(older_than=timedelta(seconds=settings.USUFRUCT_JOB_STALE_SECONDS))


@shared_task(name="usufruct.hub.expire_rights")
def expire_rights() -> int:
    from marketplace.rights import rights_expire_due

    return rights_expire_due()


@shared_task(name="usufruct.hub.resend_unanswered")
def resend_unanswered() -> int:
    from datetime import timedelta

    return services.messages_resend_unanswered(older_than=timedelta(seconds=60))


@shared_task(name="usufruct.hub.request_attestations")
def request_attestations() -> int:
    return services.attestations_request()
