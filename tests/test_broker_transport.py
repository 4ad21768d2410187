"""The hub's Redis transport (``config.broker``): one client per channel, messages unchanged."""

from __future__ import annotations

import contextlib
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
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


def _unacked(client) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    return client.zcard("unacked_index"), client.hlen("unacked")


def _unknown(nonce: str) -> dict[str, object]:
    """A node message the hub refuses without touching a job: its key id is nobody's."""
    return {"payload": {"job": str(uuid.uuid4()), "step": "partial", "nonce": nonce}, "kid": "nobody", "sig": "x"}


def _taken(log: Path) -> list[int]:
    """The sizes of the batches a hub worker took, by its log ("hub took N node message(s)")."""
    return [int(n) for n in re.findall(r"hub took (\d+) node message", log.read_text())]


def test_acknowledgements_together_leave_redis_in_one_round_trip(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, queue = _queue()
    with Connection(redis_url, transport=broker.Transport) as conn:
        producer = conn.Producer(conn.channel())
        for i in range(4):
            producer.publish({"i": i}, exchange=queue.exchange, routing_key=name, declare=[queue], serializer="json")
        with conn.SimpleQueue(queue) as simple:
            messages = [simple.get(timeout=5) for _ in range(4)]
            qos = messages[0].channel.qos
            client = redis.Redis.from_url(redis_url)
            before = _unacked(client)
            assert before[0] >= 4 and before[1] >= 4  # kombu keeps each delivered message until acked
            pipelines: list[list[tuple[object, ...]]] = []  # each pipeline this process sends: its commands
            real = redis.client.Pipeline.execute

            def execute(self, *args, **kwargs):  # type: ignore[no-untyped-def]
                pipelines.append([tuple(command[0]) for command in self.command_stack])
                return real(self, *args, **kwargs)

            monkeypatch.setattr(redis.client.Pipeline, "execute", execute)
            with broker.acks_together(messages[0].channel):
                with broker.acks_together(messages[0].channel):  # an inner block joins the outer one
                    messages[0].ack()
                for m in messages[1:]:
                    m.ack()
                assert _unacked(client) == before and not pipelines  # held until the block ends
            monkeypatch.undo()
            assert _unacked(client) == (before[0] - 4, before[1] - 4)
            tags = [m.delivery_tag for m in messages]
            ((zrem, hdel),) = pipelines  # one round trip for all four
            assert zrem == ("ZREM", qos.unacked_index_key, *tags) and hdel == ("HDEL", qos.unacked_key, *tags)
            assert all(m.acknowledged for m in messages)
            assert all(t in qos._dirty or t not in qos._delivered for t in tags)  # kombu's own state: acked
        conn.channel().queue_delete(name)


def test_an_acknowledgement_from_another_thread_is_not_held(redis_url: str) -> None:
    name, queue = _queue()
    with Connection(redis_url, transport=broker.Transport) as conn:
        channel = conn.channel()
        conn.Producer(channel).publish({"i": 1}, exchange=queue.exchange, routing_key=name, declare=[queue])
        with conn.SimpleQueue(queue) as simple:
            message = simple.get(timeout=5)
            client = redis.Redis.from_url(redis_url)
            before = _unacked(client)
            with broker.acks_together(message.channel):
                thread = threading.Thread(target=message.ack)
                thread.start()
                thread.join()
                assert _unacked(client) == (before[0] - 1, before[1] - 1)  # acked at once, not held
        channel.queue_delete(name)


def _held(conn: Connection, queue: Queue, task: str, n: int) -> list:  # type: ignore[type-arg]
    """``n`` messages of ``task`` published to ``queue`` and taken, not acknowledged."""
    producer = conn.Producer(conn.channel())
    for i in range(n):
        producer.publish({"i": i}, exchange=queue.exchange, routing_key=queue.name, declare=[queue],
                         serializer="json", headers={"task": task})  # fmt: skip
    simple = conn.SimpleQueue(queue)
    return [simple.get(timeout=5) for _ in range(n)]


def test_an_unrecorded_task_leaves_no_unacked_record_in_redis(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    name, queue = _queue()
    task = f"test.unrecorded.{name}"
    monkeypatch.setattr(broker, "_UNRECORDED", {task})
    client = redis.Redis.from_url(redis_url)
    with Connection(redis_url, transport=broker.Transport) as conn:
        before = _unacked(client)
        held = _held(conn, queue, task, 3)
        assert _unacked(client) == before  # held by this process only
        other = _held(conn, _queue()[1], "test.recorded", 1)
        assert _unacked(client) == (before[0] + 1, before[1] + 1)  # another task: kombu's record
        with broker.acks_together(held[0].channel):
            for m in held:
                m.ack()
        other[0].ack()
        assert _unacked(client) == before and all(m.acknowledged for m in held)
        assert not held[0].channel.qos._in_memory
        conn.channel().queue_delete(name)


def test_an_unrecorded_message_goes_back_when_requeued_or_when_its_channel_closes(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, queue = _queue()
    task = f"test.unrecorded.{name}"
    monkeypatch.setattr(broker, "_UNRECORDED", {task})
    client = redis.Redis.from_url(redis_url)
    with Connection(redis_url, transport=broker.Transport) as conn:
        first, second, third = _held(conn, queue, task, 3)
        first.reject(requeue=True)  # back at the head of its queue
        second.reject(requeue=False)  # dropped
        assert client.llen(name) == 1
        third.channel.close()  # a worker's warm shutdown: what it holds goes back
        assert client.llen(name) == 2
    with Connection(redis_url, transport=broker.Transport) as conn:
        assert sorted(_drain(conn, queue, 2)) == [0, 2]
        conn.channel().queue_delete(name)


def test_acks_together_changes_nothing_on_another_transport() -> None:
    name, queue = _queue()
    with Connection("memory://") as conn:
        channel = conn.channel()
        conn.Producer(channel).publish({"i": 7}, exchange=queue.exchange, routing_key=name, declare=[queue])
        with conn.SimpleQueue(queue) as simple:
            message = simple.get(timeout=5)
            with broker.acks_together(message.channel):
                message.ack()
            assert message.acknowledged


def test_the_hub_worker_takes_node_messages_without_a_redis_record(processes, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    """The real hub worker (``compute.tasks.IntakeBatches``): 30 node messages that it refuses
    (unknown keys) are taken and acknowledged without one unacked record written to Redis or
    removed from it (``broker.unrecorded``), and none is left; one more with an ETA takes
    celery-batches' own path and is taken too; one whose body is not a task call is dropped
    alone, not with its batch. A task of another name still gets kombu's record."""
    import json

    from config.celery import app

    client = redis.Redis.from_url(redis_url)
    client.delete("hub")
    ids = set()
    for i in range(30):
        ids.add(app.send_task("usufruct.hub.receive", args=[_unknown(f"n{i}")], queue="hub").id)
    late = _unknown("late")
    ids.add(app.send_task("usufruct.hub.receive", args=[late], queue="hub", countdown=1).id)  # celery-batches' own path
    with app.producer_or_acquire() as producer:  # a node's message whose body is not a task call
        headers = {"task": "usufruct.hub.receive", "id": str(uuid.uuid4())}
        producer.publish([[late], {}], exchange="", routing_key="hub", headers=headers, serializer="json")
    assert client.llen("hub") == 32

    def held() -> int:  # of these 30, the messages kombu still holds unacknowledged (others' may be there too)
        return sum(json.loads(raw)[0]["headers"]["id"] in ids for raw in client.hvals("unacked"))

    with _commands(redis_url, ("ZADD", "HSET", "ZREM", "HDEL")) as sent:
        processes.start("hub")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (client.llen("hub") or sum(_taken(processes.logs["hub"])) < 31):
            assert held() == 0  # not even while the worker holds them for a batch
            time.sleep(0.1)
    assert client.llen("hub") == 0 and held() == 0
    assert sum(_taken(processes.logs["hub"])) == 31, processes.logs["hub"].read_text()[-3000:]
    mine = [c for c in sent if any(i in c for i in ids)]
    assert not mine, mine[:3]
    assert len([c for c in sent if c.startswith("HSET")]) <= 2, sent[:5]  # the start-up wake-up's, not 32
    assert "whose body is not [args, kwargs, embed]" in processes.logs["hub"].read_text()  # the broken one, dropped
    # Another task on the same queue (the ledger writer's wake-up) is recorded until it is acknowledged.
    with _commands(redis_url, ("ZADD", "HSET", "ZREM", "HDEL")) as sent:
        woken = app.send_task("ledger.tasks.integrate_pending", queue="hub").id
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(c.startswith("ZREM") for c in sent):
            time.sleep(0.1)
    assert any(c.startswith("HSET") and woken in c for c in sent), sent[:5]
    assert any(c.startswith("ZREM") for c in sent) and client.hlen("unacked") == 0


@contextlib.contextmanager
def _commands(redis_url: str, names: tuple[str, ...]) -> Iterator[list[str]]:
    """The commands named ``names`` sent to the test broker's database while the block runs, as
    text (Redis MONITOR, filtered to that database: another client's commands elsewhere do not count)."""
    client = redis.Redis.from_url(redis_url)
    db = client.connection_pool.connection_kwargs.get("db", 0)
    sent: list[str] = []
    stop, ready = threading.Event(), threading.Event()

    def listen() -> None:
        with client.monitor() as monitor:
            ready.set()
            for command in monitor.listen():
                if stop.is_set():
                    return
                text = command["command"]
                if command.get("db") == db and text.split(" ", 1)[0].upper() in names:
                    sent.append(text)

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert ready.wait(5)
    try:
        yield sent
    finally:
        time.sleep(0.2)  # what the worker sent last reaches the monitor
        stop.set()
        client.ping()  # wakes the listener
        thread.join(timeout=5)


def test_publish_task_sends_the_message_send_task_sends(redis_url: str) -> None:
    """The hub's buffered publish (``broker.publish_task``) puts on the wire what ``app.send_task``
    puts there for a direct queue, apart from the ids and send_task's repr and reply-to extras."""
    import json

    from config.celery import app

    name = f"usufruct-test-{uuid.uuid4().hex}"
    wire = {"payload": {"job": "j", "step": "s"}, "kid": "k", "sig": "x"}
    with app.producer_or_acquire() as producer:
        app.send_task("usufruct.node.run_step", args=[wire], queue=name, producer=producer, argsrepr="[j s]")
        with broker.together(producer.channel) as buffered:
            task_id = broker.publish_task(
                app, producer, "usufruct.node.run_step", args=[wire], queue=name, argsrepr="[j s]"
            )
        assert buffered
    client = redis.Redis.from_url(redis_url)
    theirs, ours = [json.loads(m) for m in reversed(client.lrange(name, 0, -1))]
    assert ours["headers"]["id"] == ours["headers"]["root_id"] == ours["properties"]["correlation_id"] == task_id
    ids = {
        "headers": ["id", "root_id"],
        "properties": ["correlation_id", "delivery_tag", "reply_to", "argsrepr", "kwargsrepr"],
    }
    for part, keys in ids.items():
        for key in keys:
            theirs[part].pop(key, None)
            ours[part].pop(key, None)
    assert ours == theirs
    assert ours["headers"]["argsrepr"] == "[j s]" and ours["headers"]["task"] == "usufruct.node.run_step"
    client.delete(name)


def test_a_batch_waits_from_its_own_first_message(processes, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    """The intake's wait (``USUFRUCT_INTAKE_WAIT_MS``) counts from a batch's first message, not on
    a clock that keeps ticking: a message that comes half a wait after a flush is held a whole
    wait (celery-batches' repeating timer would take it at the next tick, after half of one)."""
    from config.celery import app

    def wait_for_batches(n: int) -> float:
        deadline = time.monotonic() + 30
        while len(_taken(processes.logs["hub"])) < n:
            assert time.monotonic() < deadline, processes.logs["hub"].read_text()[-3000:]
            time.sleep(0.01)
        return time.monotonic()

    processes.env_for["hub"] = {"USUFRUCT_INTAKE_WAIT_MS": "1500"}
    processes.start("hub")
    app.send_task("usufruct.hub.receive", args=[_unknown("a")], queue="hub")
    first = wait_for_batches(1)
    time.sleep(0.75)  # half a wait after the first batch
    sent = time.monotonic()
    app.send_task("usufruct.hub.receive", args=[_unknown("b")], queue="hub")
    held = wait_for_batches(2) - sent
    assert 1.3 <= held <= 3.0, f"the second message was held {held:.2f} s (the first batch at {first:.2f})"


def test_a_hub_worker_freezes_its_start_up_heap() -> None:
    """Connected to the solo worker's ``worker_ready`` and a pool child's ``worker_process_init``:
    what exists then is left out of the garbage collector's scans."""
    import gc
    import weakref

    from celery import signals

    from config import celery

    for signal in (signals.worker_ready, signals.worker_process_init):
        receivers = [r() if isinstance(r, weakref.ref) else r for _, r in signal.receivers]
        assert celery.freeze_startup_heap in receivers, signal
    assert gc.get_freeze_count() == 0
    try:
        celery.freeze_startup_heap()
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
