"""The pipelined sequencer: batches built ahead of their write, still one gap-free chain, tree and checkpoint each."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

import pytest

from ledger import services, tree
from ledger.hubkey import hub_private_key
from ledger.models import Checkpoint, LedgerEntry
from ledger.sequencer import parallel_signer
from protocol import merkle


def _batch(tag: str, n: int = 7) -> list[services.Draft]:
    return [services.Draft("refund", f"{tag}:{i}", {"i": i, "tag": tag}) for i in range(n)]


def _assert_one_consistent_log() -> None:
    entries = list(LedgerEntry.objects.order_by("seq"))
    assert [e.seq for e in entries] == list(range(len(entries)))
    assert all(b.prev_hash == a.entry_hash for a, b in zip(entries, entries[1:], strict=False))
    mem = merkle.MemoryTree(merkle.leaf_hash(e.body.encode()) for e in entries)
    assert tree.root(len(entries)) == mem.root()
    for size, root in Checkpoint.objects.values_list("size", "root"):
        assert bytes(root) == mem.root(size)
    key = hub_private_key().public_key()
    for e in entries:
        key.verify(base64.b64decode(e.hub_sig), e.body.encode())


@pytest.mark.django_db(transaction=True)
def test_pipelined_batches_interleaved_with_other_appends_and_repeats(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    redone: list[int] = []
    plain = services.entries_append_batch

    def counted(**kwargs):  # type: ignore[no-untyped-def]
        redone.append(len(kwargs["drafts"]))
        return plain(**kwargs)

    monkeypatch.setattr(services, "entries_append_batch", counted)
    services.entry_append(kind="refund", event_id="before", payload={"x": 1})
    with (
        ThreadPoolExecutor(2) as pool,
        services.PipelinedSequencer(signer=parallel_signer(hub_private_key(), pool)) as s,
    ):
        first = s.submit(_batch("a"))
        second = s.submit(_batch("b"))
        assert first.result().appended == 7 and second.result().checkpoint is not None
        assert redone == []  # written as built
        # Another appender moves the head: the next batch, built on the old head, is redone under the lock.
        services.entry_append(kind="refund", event_id="between", payload={"x": 2})
        moved = s.submit(_batch("c"))
        after = s.submit(_batch("d"))
        assert moved.result().appended == 7 and after.result().appended == 7
        assert redone[0] == 7  # redone from the stored head
        # Repeated event ids: the original entries' seqs, nothing appended twice.
        repeat = s.submit(_batch("a")[:3] + _batch("e", 2)).result()
        assert repeat.seqs[:3] == first.result().seqs[:3] and repeat.appended == 2
        conflict = s.submit([services.Draft("refund", "a:0", {"i": 99})])
        with pytest.raises(services.LedgerConflict):
            conflict.result()
        last = s.submit(_batch("f")).result()
    assert last.seqs == list(range(last.seqs[0], last.seqs[0] + 7))
    assert LedgerEntry.objects.count() == 2 + 5 * 7 + 2
    _assert_one_consistent_log()
    assert services.checkpoint_create().size == LedgerEntry.objects.count()


@pytest.mark.django_db(transaction=True)
def test_pipelined_without_signer_or_checkpoints() -> None:
    with services.PipelinedSequencer(make_checkpoint=False) as s:
        futures = [s.submit(_batch(str(k), 3)) for k in range(4)]
    assert [f.result().checkpoint for f in futures] == [None] * 4
    assert not Checkpoint.objects.exists()
    _assert_one_consistent_log()
