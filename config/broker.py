"""kombu's Redis transport, with one Redis client per channel instead of one per operation.

kombu's Redis channel builds a fresh ``redis.Redis`` client around its connection pool for
every publish and every acknowledgement (``Channel.conn_or_acquire``). The client holds no
connection of its own: each command takes one from the pool and gives it back. Building it
is pure overhead (about half a millisecond on the 2-core machine, the largest part of a
publish), so this channel builds it once per pool and reuses it. It also publishes many
messages in one round trip (:func:`together`). ``config.celery`` maps the ``redis://``
scheme to it.

:func:`acks_together` acknowledges many messages in one round trip.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from kombu.transport import redis, virtual
from kombu.utils.uuid import uuid

log = logging.getLogger(__name__)


# Tasks whose messages kombu records only in the consuming process (see ``QoS.append``).
_UNRECORDED: set[str] = set()


def unrecorded(task_name: str) -> None:
    """Keep the messages of ``task_name`` out of Redis's unacked record while a worker holds them.

    For a task acknowledged as soon as it runs (not ``acks_late``) whose lost messages its own
    protocol asks for again. kombu writes each message it delivers to an unacked table and index
    (one round trip each) and deletes it at the acknowledgement (another): it restores from there
    what a worker killed outright held. Such a task's messages are held in the worker's memory
    only (kombu's own in-memory record, as its in-memory transport keeps), put back on their
    queue when the channel closes or a message is requeued; one a killed worker held is lost."""
    _UNRECORDED.add(task_name)


class QoS(redis.QoS):  # type: ignore[misc]
    """Redis ack emulation that can hold acknowledgements and send them in one pipeline, and
    keeps the messages of :func:`unrecorded` tasks out of Redis."""

    _usufruct_acks: list[Any] | None = None
    _usufruct_thread: int | None = None  # only the block's own thread has its acks held

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_memory: set[Any] = set()  # delivery tags of held messages Redis has no record of

    def append(self, message: Any, delivery_tag: Any) -> None:
        if _UNRECORDED and (message.headers or {}).get("task") in _UNRECORDED:
            self._in_memory.add(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)
        else:
            super().append(message, delivery_tag)

    def ack(self, delivery_tag: Any) -> None:
        if delivery_tag in self._in_memory:
            self._in_memory.discard(delivery_tag)
            virtual.QoS.ack(self, delivery_tag)
        elif self._usufruct_acks is None or threading.get_ident() != self._usufruct_thread:
            super().ack(delivery_tag)
        else:
            self._usufruct_acks.append(delivery_tag)

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        if delivery_tag not in self._in_memory:
            return super().reject(delivery_tag, requeue=requeue)
        if requeue:
            self._put_back(delivery_tag, leftmost=True)
        self._in_memory.discard(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def restore_unacked(self, client: Any = None) -> None:
        for tag in [t for t in self._delivered if t in self._in_memory]:
            self._put_back(tag, leftmost=False)
            self._in_memory.discard(tag)
            del self._delivered[tag]
        super().restore_unacked(client)

    def _put_back(self, tag: Any, *, leftmost: bool) -> None:
        """A held message back on its queue (as kombu restores one from its Redis record)."""
        message = self._delivered[tag]
        info = message.delivery_info
        with self.channel.conn_or_acquire() as client, client.pipeline() as pipe:
            self.channel._do_restore_message(message._raw, info["exchange"], info["routing_key"], pipe, leftmost)
            pipe.execute()

    def _ack_together(self, tags: list[Any]) -> None:
        """Remove the messages from the unacked index and table in one round trip. If that
        fails they stay there, and kombu restores them after the visibility timeout (a hub
        reply taken twice is a duplicate by its digest)."""
        recorded = [t for t in tags if t not in self._in_memory]
        try:
            if recorded:
                with self.pipe_or_acquire() as pipe:
                    pipe.zrem(self.unacked_index_key, *recorded).hdel(self.unacked_key, *recorded).execute()
        except Exception as exc:  # a lost connection, a read-only replica after a failover
            log.warning("acknowledging %d messages together failed (%s): kombu restores them later", len(tags), exc)
        finally:
            for tag in tags:  # gone from this channel's own unacked state either way, as kombu's ack does
                self._in_memory.discard(tag)
                virtual.QoS.ack(self, tag)


class Channel(redis.Channel):  # type: ignore[misc]
    QoS = QoS
    _usufruct_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the channel's own polling client (BRPOP), made once by kombu itself
            return super()._create_client(asynchronous=True)
        pool = self.pool  # replaced after a fork or a reconnection: the client follows it
        client = self._usufruct_client
        if client is None or client.connection_pool is not pool:
            client = self._usufruct_client = self.Client(connection_pool=pool)
        return client

    _usufruct_batch: list[tuple[Any, Any, Any]] | None = None

    def _put(self, queue: Any, message: Any, **kwargs: Any) -> None:
        if self._usufruct_batch is None:
            super()._put(queue, message, **kwargs)
        else:
            self._usufruct_batch.append((queue, message, kwargs))

    def _put_together(self, batch: list[tuple[Any, Any, Any]]) -> None:
        """The batch's LPUSHes in one MULTI/EXEC: all of them or none (then each is put alone,
        with the client's own retries)."""
        try:
            with self.conn_or_acquire() as client, client.pipeline(transaction=True) as pipe:
                for queue, message, _ in batch:
                    pri = self._get_message_priority(message, reverse=False)
                    pipe.lpush(self._q_for_pri(queue, pri), redis.dumps(message))
                pipe.execute()
        except Exception as exc:  # nothing was pushed: put each alone
            log.warning("publishing %d messages together failed (%s): one at a time", len(batch), exc)
            for queue, message, kwargs in batch:
                super()._put(queue, message, **kwargs)


@contextlib.contextmanager
def together(channel: Any) -> Iterator[bool]:
    """Messages published on ``channel`` inside the block reach Redis in one round trip, when
    the block ends (in the order published). On another transport the block changes nothing.

    The block yields whether publishing is buffered: a buffered publish touches no socket (the
    pipeline at the end retries alone, one message at a time), so the caller may publish
    without kombu's per-message retry wrappers. Only a queue's first declaration on a connection
    still goes to Redis then, unretried; the hub's steps that fail there are sent again by the
    ``resend_unanswered`` beat."""
    if not isinstance(channel, Channel):
        yield False
        return
    if channel._usufruct_batch is not None:
        yield True
        return
    channel._usufruct_batch = batch = []
    try:
        yield True
    finally:
        channel._usufruct_batch = None
    if batch:
        channel._put_together(batch)


def publish_task(app: Any, producer: Any, name: str, *, args: list[Any], queue: str, argsrepr: str) -> str:
    """Publish one task message on ``producer``: Celery's own message (protocol 2, built by
    ``app.amqp.as_task_v2``) through kombu's ``Producer.publish``, to ``queue`` on the anonymous
    exchange, as ``app.send_task`` routes a direct queue; without send_task's routing, result
    and retry wrappers, which cost more than the rest (0.1 ms a message here). Meant for
    publishing inside :func:`together`, where nothing touches the wire until the block ends
    (kombu's retries are not needed there). Returns the task id."""
    task_id = uuid()
    headers, properties, body, _ = app.amqp.as_task_v2(task_id, name, args, {}, argsrepr=argsrepr, kwargsrepr="{}")
    producer.publish(
        body,
        exchange="",
        routing_key=queue,
        serializer=app.conf.task_serializer,
        headers=headers,
        declare=[app.amqp.queues[queue]],  # made as send_task makes a queue it has not seen
        retry=False,
        delivery_mode=app.conf.task_default_delivery_mode,
        **properties,
    )
    return task_id


@contextlib.contextmanager
def acks_together(channel: Any) -> Iterator[None]:
    """Messages acknowledged on ``channel`` inside the block are acknowledged in Redis in one
    round trip when it ends (kombu's Redis channel takes one per message). On another
    transport the block changes nothing."""
    if not isinstance(channel, Channel) or channel.qos._usufruct_acks is not None:
        yield
        return
    qos = channel.qos
    qos._usufruct_thread = threading.get_ident()
    qos._usufruct_acks = tags = []
    try:
        yield
    finally:
        qos._usufruct_acks = qos._usufruct_thread = None
        if tags:
            qos._ack_together(tags)


class Transport(redis.Transport):  # type: ignore[misc]
    Channel = Channel
