"""Parallel appenders and checkpointers on real PostgreSQL: a gap-free sequence, one valid chain and tree."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from ledger import services, tree, writer
from ledger.models import Checkpoint, LedgerEntry
from protocol import merkle


@pytest.mark.django_db(transaction=True)
def test_parallel_appends_and_checkpoints_keep_one_consistent_log() -> None:
    errors: list[BaseException] = []

    def appender(worker: int) -> None:
        try:
            for i in range(15):
                services.entry_append(kind="refund", event_id=f"w{worker}:{i}", payload={"w": worker, "i": i})
                if i % 5 == 0:
                    with transaction.atomic():  # an accepted reply: its entries wait for the writer
                        for j in range(4):
                            writer.entry_enqueue(kind="refund", event_id=f"w{worker}:b{i}:{j}", payload={"j": j})
                    if worker % 2 == 0:
                        writer.integrate_all()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    def checkpointer() -> None:
        try:
            for _ in range(10):
                services.checkpoint_create()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=appender, args=(w,)) for w in range(4)]
    threads.append(threading.Thread(target=checkpointer))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    writer.integrate_all()  # an odd worker's last accepted entries may still wait
    entries = list(LedgerEntry.objects.order_by("seq"))
    assert [e.seq for e in entries] == list(range(4 * (15 + 3 * 4)))
    assert all(b.prev_hash == a.entry_hash for a, b in zip(entries, entries[1:], strict=False))
    mem = merkle.MemoryTree(bytes.fromhex(e.leaf_hash) for e in entries)
    assert tree.root(len(entries)) == mem.root()
    sizes = list(Checkpoint.objects.order_by("size").values_list("size", "root"))
    assert sizes, "some checkpoints were signed"
    for size, root in sizes:
        assert bytes(root) == mem.root(size)
    services.checkpoint_create()
