"""kombu's Redis transport, with one Redis client per channel instead of one per operation.

kombu's Redis channel builds a fresh ``redis.Redis`` client around its connection pool for
every publish and every acknowledgement (``Channel.conn_or_acquire``). The client holds no
connection of its own: each command takes one from the pool and gives it back. Building it
is pure overhead (about half a millisecond on the 2-core machine, the largest part of a
publish), so this channel builds it once per pool and reuses it. It also publishes many
messages in one round trip (:func:`together`). ``config.celery`` maps the ``redis://``
scheme to it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from kombu.transport import redis

log = logging.getLogger(__name__)


class Channel(redis.Channel):  # type: ignore[misc]
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


class Transport(redis.Transport):  # type: ignore[misc]
    Channel = Channel
