"""Hub tasks: thin wrappers that call one service each."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from compute import services
from marketplace.exceptions import ServiceError
from protocol.envelope import EnvelopeError

log = logging.getLogger(__name__)


@shared_task(name="usufruct.hub.start_job")
def start_job(job_id: str) -> None:
    services.job_start(job_id=job_id)


@shared_task(name="usufruct.hub.receive")
def receive(wire: dict[str, Any]) -> str:
    """A node → hub message. Bad messages are logged and dropped, never retried."""
    try:
        outcome = services.message_receive(wire=wire)
    except (EnvelopeError, ServiceError) as exc:
        log.warning("hub rejected a message: %s", exc)
        return f"rejected: {exc}"
    log.info("hub message: %s", outcome)
    return outcome


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
