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


def _plain(payload: Any) -> bool:
    """A protocol-2 body as nodes send it: ``[args, kwargs, embed]``, a list and two objects."""
    return (
        isinstance(payload, list | tuple)
        and len(payload) == 3
        and isinstance(payload[0], list | tuple)
        and isinstance(payload[1], dict)
        and isinstance(payload[2], dict)
    )


class _Taken:
    """A node message taken off the broker and held for the next batch: what celery-batches
    and ``SimpleRequest`` read of a request. Celery's full ``Request`` (header parsing, time
    limits, its signal) and celery-batches' strategy took 7 % of a hub worker's time (py-spy);
    the batch needs none of it."""

    __slots__ = ("message", "task", "id", "name", "_payload", "delivery_info", "hostname", "reply_to",
                 "correlation_id", "request_dict", "ignore_result", "acknowledged", "_on_ack", "_errors")  # fmt: skip
    eta = None  # a message with an ETA goes through celery-batches' own request

    def __init__(self, message: Any, task: Any, hostname: str, on_ack: Any, errors: Any) -> None:
        headers = message.headers
        properties = message.properties
        self.message, self.task, self.hostname = message, task, hostname
        self.id, self.name, self.request_dict = headers["id"], headers["task"], headers
        self._payload = message.payload  # (args, kwargs, embed), decoded by kombu as Celery's Request does
        self.delivery_info = message.delivery_info
        self.reply_to, self.correlation_id = properties.get("reply_to"), properties.get("correlation_id")
        self.ignore_result = bool(headers.get("ignore_result", False))
        self.acknowledged = False
        self._on_ack, self._errors = on_ack, errors

    def acknowledge(self) -> None:
        if not self.acknowledged:
            self._on_ack(log, self._errors)
            self.acknowledged = True


class IntakeBatches(Batches):  # type: ignore[misc]
    """celery-batches for the hub's intake, lighter per message: a message is held as a
    :class:`_Taken` (not Celery's full ``Request``), and a batch's acknowledgements reach the
    broker in one round trip.

    The intake acknowledges early (the task is not ``acks_late``), as celery-batches does when
    it hands the batch to the pool: a reply lost with a worker is asked for again by
    ``resend_unanswered``, and one taken twice is a duplicate by its digest. Celery defers each
    acknowledgement to its event loop, one round trip each; here the batch's messages are
    acknowledged together first and marked so (celery-batches then skips them). Celery's
    ``task_received`` signal is not sent for these messages (nothing here listens to it)."""

    _consumer: Any = None
    _connection_errors: tuple[type[BaseException], ...] = ()  # the consumer's, as Celery's own acks log

    def Strategy(self, task: Any, app: Any, consumer: Any) -> Any:  # noqa: N802 (Celery's name)
        full = super().Strategy(task, app, consumer)  # celery-batches' own, for what the light path does not take
        self._consumer = consumer
        hostname, errors, timer = consumer.hostname, consumer.connection_errors, consumer.timer
        put = self._buffer.put

        def handler(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **kw: Any) -> None:
            payload = message.payload
            if body is not None or message.headers.get("eta") or isinstance(payload, dict):
                return full(message, body, ack, reject, callbacks, **kw)  # protocol 1, an ETA, a hybrid body
            if not _plain(payload):  # it would break its whole batch where celery-batches unpacks it
                log.warning("hub dropped a message whose body is not [args, kwargs, embed]: %.200r", payload)
                return reject(log, errors)
            put(_Taken(message, task, hostname, ack, errors))
            if not next(self._count) % self.flush_every:
                self._flush_now()
            elif self._tref is None:  # the wait starts with the first message of a batch
                self._tref = timer.call_after(self.flush_interval, self._flush_now)

        self._timer, self._connection_errors = timer, errors
        return handler

    def _flush_now(self) -> None:
        """Flush the buffer: a batch is full, or its first message has waited the flush interval.

        celery-batches keeps one timer firing every interval whatever the buffer holds: after a
        batch that took longer than the interval it fires at once, on the few messages taken
        since, and the next batch is small. Here the wait is counted from the first message
        held, so a busy worker takes full batches (a reply costs a fifth less in a batch of
        100 than in one of 30)."""
        if self._tref is not None:
            self._tref.cancel()
            self._tref = None
        try:
            self._do_flush()
        finally:
            if self._pending.qsize() and self._tref is None:  # a message's ETA is still ahead: look again
                self._tref = self._timer.call_after(self.flush_interval, self._flush_now)

    def flush(self, requests: Any) -> Any:
        early = [r for r in requests if not r.task.acks_late and not r.acknowledged]
        if early:
            with broker.acks_together(early[0].message.channel):
                for request in early:
                    message = request.message
                    if not message.acknowledged:  # as Celery's deferred ack: a lost connection is logged
                        message.ack_log_error(log, self._connection_errors)
                    request.acknowledged = True
            consumer = self._consumer
            if consumer is not None and consumer.restart_count > 0 and not consumer._maximum_prefetch_restored:
                for _ in early:  # what Celery's deferred acknowledgement does after a reconnection
                    consumer._restore_prefetch_count_after_connection_restart(None)
        return super().flush(requests)


# A node reply a hub worker held and lost (killed outright) is asked for again by
# ``resend_unanswered``, as one lost with its batch after the early acknowledgement is: kombu's
# record of it in Redis (two round trips a message) protects nothing the protocol does not.
broker.unrecorded("usufruct.hub.receive")


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
