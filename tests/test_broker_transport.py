"""The hub's Redis transport (``config.broker``): one client per channel, messages unchanged."""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings
from kombu import Connection, Exchange, Queue

from config import broker


@pytest.fixture
def redis_url() -> str:
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.fail("this test needs CELERY_BROKER_URL on Redis (make test sets it)")
    return settings.CELERY_BROKER_URL


def test_the_hub_publishes_over_redis_through_its_own_transport(redis_url: str) -> None:
    from config.celery import app

    with app.connection_for_write() as conn:
        assert conn.transport.Channel is broker.Channel
    # Only redis:// is mapped: RabbitMQ (and the embedded filesystem transport) stay kombu's own.
    for url in ("amqp://guest:guest@127.0.0.1:5672//", "filesystem://"):
        assert not issubclass(Connection(url).get_transport_cls(), broker.Transport)


def test_one_client_per_channel_and_a_new_one_when_the_pool_is_replaced(redis_url: str) -> None:
    name = f"usufruct-test-{uuid.uuid4().hex}"
    queue = Queue(name, Exchange(name, type="direct"), routing_key=name)
    with Connection(redis_url, transport=broker.Transport) as conn:
        channel = conn.channel()
        producer = conn.Producer(channel)
        clients = []
        for i in range(3):
            producer.publish({"i": i}, exchange=queue.exchange, routing_key=name, declare=[queue], serializer="json")
            with channel.conn_or_acquire() as client:
                clients.append(client)
        assert clients[0] is clients[1] is clients[2]
        channel._disconnect_pools()  # as after a fork or a lost connection
        producer.publish({"i": 3}, exchange=queue.exchange, routing_key=name, serializer="json")
        with channel.conn_or_acquire() as client:
            assert client is not clients[0] and client.connection_pool is channel.pool
        with conn.SimpleQueue(queue) as simple:
            got = []
            for _ in range(4):
                message = simple.get(timeout=5)
                got.append(message.payload["i"])
                message.ack()
        assert got == [0, 1, 2, 3]
        channel.queue_delete(name)


def _queue() -> tuple[str, Queue]:
    name = f"usufruct-test-{uuid.uuid4().hex}"
    return name, Queue(name, Exchange(name, type="direct"), routing_key=name)


def _drain(conn: Connection, queue: Queue, n: int) -> list[int]:
    got = []
    with conn.SimpleQueue(queue) as simple:
        for _ in range(n):
            message = simple.get(timeout=5)
            got.append(message.payload["i"])
            message.ack()
    return got


def test_messages_published_together_reach_redis_at_once_in_order(redis_url: str) -> None:
    name, queue = _queue()
    with Connection(redis_url, transport=broker.Transport) as conn:
        channel = conn.channel()
        producer = conn.Producer(channel)
        producer.publish({"i": -1}, exchange=queue.exchange, routing_key=name, declare=[queue], serializer="json")
        _drain(conn, queue, 1)
        with channel.conn_or_acquire() as client:
            with broker.together(channel) as buffered:
                with broker.together(channel) as inner:  # an inner block joins the outer one
                    producer.publish({"i": 0}, exchange=queue.exchange, routing_key=name, serializer="json")
                assert buffered and inner and client.llen(name) == 0  # callers may skip kombu's retries
                for i in range(1, 5):
                    producer.publish({"i": i}, exchange=queue.exchange, routing_key=name, serializer="json")
                assert client.llen(name) == 0  # held until the block ends
            assert client.llen(name) == 5
        assert _drain(conn, queue, 5) == [0, 1, 2, 3, 4]
        channel.queue_delete(name)


def test_a_failed_round_trip_puts_each_message_alone(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import redis

    name, queue = _queue()
    with Connection(redis_url, transport=broker.Transport) as conn:
        channel = conn.channel()
        producer = conn.Producer(channel)
        producer.publish({"i": -1}, exchange=queue.exchange, routing_key=name, declare=[queue], serializer="json")
        _drain(conn, queue, 1)

        def broken(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise redis.ConnectionError("the round trip was cut")

        monkeypatch.setattr(redis.client.Pipeline, "execute", broken)
        with broker.together(channel):
            for i in range(3):
                producer.publish({"i": i}, exchange=queue.exchange, routing_key=name, serializer="json")
        monkeypatch.undo()
        assert _drain(conn, queue, 3) == [0, 1, 2]
        with channel.conn_or_acquire() as client:
            assert client.llen(name) == 0  # each once: the failed MULTI pushed nothing
        channel.queue_delete(name)


def test_together_changes_nothing_on_another_transport() -> None:
    name, queue = _queue()
    with Connection("memory://") as conn:
        channel = conn.channel()
        producer = conn.Producer(channel)
        with broker.together(channel) as buffered:
            producer.publish({"i": 7}, exchange=queue.exchange, routing_key=name, declare=[queue], serializer="json")
        assert not buffered  # not buffered: a caller keeps kombu's retries
        assert _drain(conn, queue, 1) == [7]
