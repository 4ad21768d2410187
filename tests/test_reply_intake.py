"""The hub takes node replies in batches: one transaction, each check one query over the batch.

Every reply here is made by the real node code (``tests.federation``); the tampered ones are
the real node's reply rewritten and signed again with its own key. A batch must give each
reply the outcome it would have had alone, in arrival order, whatever else the batch holds.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from compute import services
from compute.models import Job, JobParty, Message
from ledger.exceptions import LedgerConflict
from ledger.models import PendingEntry
from marketplace import services as market
from marketplace.models import Dataset, Organization, UsageRight
from protocol import envelope
from protocol.canonical import canonical, sha256_hex
from tests import federation

pytestmark = pytest.mark.django_db


def _right(slug: str, quota: int = 40) -> UsageRight:
    from django.contrib.auth import get_user_model

    dataset = Dataset.objects.get(node__slug=slug)
    offer = market.offer_publish(
        organization=dataset.organization, dataset=dataset, title=f"intake {slug}", operations=["stats"],
        quota_jobs=quota, duration_days=30, amount_minor=100, currency="EUR", min_group_size=10,
    )  # fmt: skip
    order, _ = market.order_place(
        consumer=Organization.objects.get(slug="northwind"), buyer=get_user_model().objects.get(username="bank"),
        offer_id=offer.id, plan_id=None, purpose="batched intake", accept_terms=True,
        idempotency_key=uuid.uuid4().hex,
    )  # fmt: skip
    return order.right


def _at_partial(rights: list[int]) -> Job:
    """A started stats job whose consumer node has answered keygen: the providers' partials are asked."""
    job = federation.submit(rights)
    services.job_start(job_id=str(job.id))
    (keygen,) = Message.objects.filter(job=job, direction="out", step="keygen")
    for reply in federation.handle_step(federation.node("bank"), keygen.envelope):
        assert services.message_receive(wire=reply) == "advanced"
    return job


def _partials(job: Job, tamper: federation.Tamper | None = None) -> list[dict[str, Any]]:
    """The providers' replies to ``job``'s partial steps (rewritten by ``tamper``, if given)."""
    wires = []
    for m in Message.objects.filter(job=job, direction="out", step="partial").order_by("id"):
        for reply in federation.handle_step(federation.node(m.recipient), m.envelope):
            wires.append(federation._tampered(m.recipient, reply, tamper) if tamper else reply)
    return wires


def _usage(job: Job) -> int:
    return PendingEntry.objects.filter(kind="usage", payload_json__contains=str(job.id)).count()


def _refresh(jobs: list[Job]) -> list[Job]:
    return [Job.objects.get(id=j.id) for j in jobs]


def test_a_mixed_batch_gives_each_reply_its_own_outcome(demo) -> None:  # type: ignore[no-untyped-def]
    right = _right("acme")
    honest = [_at_partial([right.id]) for _ in range(4)]
    replayed, tampered, unsolicited = (_at_partial([right.id]) for _ in range(3))
    wires = [w for job in honest for w in _partials(job)]
    (early,) = _partials(replayed)
    assert services.message_receive(wire=early) == "advanced"  # already held when the batch comes
    (bad_receipt,) = _partials(tampered, federation.rewrite_receipt(rows=10**12))

    def elsewhere(slug: str, payload: dict[str, Any]) -> dict[str, Any]:
        payload["body"]["in_reply_to"] = "0" * 64  # answers a step the hub never sent
        return payload

    (stray,) = _partials(unsolicited, elsewhere)
    batch = [wires[0], wires[1], wires[0], early, bad_receipt, {"payload": "junk"}, stray, wires[2], wires[3]]

    outcomes = services.messages_receive(wires=batch)

    assert outcomes[:2] == ["advanced", "advanced"]
    assert outcomes[2] == "duplicate" and outcomes[3] == "duplicate"  # within the batch, and across batches
    assert outcomes[4] == "receipt refused: receipt_rows"
    assert isinstance(outcomes[5], envelope.EnvelopeError)
    assert isinstance(outcomes[6], envelope.EnvelopeError) and outcomes[6].code == "unsolicited"
    assert outcomes[7:] == ["advanced", "advanced"]
    for job in _refresh(honest) + _refresh([replayed]):
        assert job.status == Job.Status.RUNNING and job.state["phase"] == "decrypt"
        assert Message.objects.filter(job=job, direction="in", step="partial").count() == 1
        assert Message.objects.filter(job=job, direction="out", step="decrypt").count() == 1
        assert _usage(job) == 1
    (failed,) = _refresh([tampered])
    assert failed.status == Job.Status.FAILED and "receipt_rows" in failed.error
    kept = Message.objects.get(job=failed, direction="in", step="partial")
    assert kept.refused_code == "receipt_rows"  # the claim is kept as evidence
    assert _usage(failed) == 0 and JobParty.objects.get(job=failed, role="provider").status == "refused"
    right.refresh_from_db()
    # Seven jobs held a unit: the five whose aggregate went out used theirs, the refused one is back.
    assert (right.quota_used, right.quota_reserved) == (5, 1)
    settled = PendingEntry.objects.filter(kind="settlement", right_id=right.id)
    assert [e.payload_json.count('"outcome":"delivered"') for e in settled] == [1] * 5  # none for the refused use
    (stalled,) = _refresh([unsolicited])
    assert stalled.state["phase"] == "partial"
    assert not Message.objects.filter(job=stalled, direction="in", step="partial").exists()


def test_two_providers_of_one_job_in_one_batch_both_count(demo) -> None:  # type: ignore[no-untyped-def]
    acme, taxco = _right("acme"), _right("taxco")
    job = _at_partial([acme.id, taxco.id])
    wires = _partials(job)
    assert len(wires) == 2

    assert services.messages_receive(wires=wires) == ["advanced", "advanced"]

    job.refresh_from_db()
    assert job.state["phase"] == "decrypt"
    assert Message.objects.filter(job=job, direction="out", step="decrypt").count() == 1
    parties = JobParty.objects.filter(job=job, role="provider")
    assert {p.status for p in parties} == {"done"} and all(len(p.usage) == 1 for p in parties)
    assert _usage(job) == 2
    federation.run(job)  # the bank's node decrypts: delivered, both rights charged once
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED
    assert [UsageRight.objects.get(id=r.id).quota_used for r in (acme, taxco)] == [1, 1]


def test_a_batch_costs_the_same_statements_for_three_replies_as_for_twelve(demo) -> None:  # type: ignore[no-untyped-def]
    right = _right("acme")
    small = [w for _ in range(3) for w in _partials(_at_partial([right.id]))]
    large = [w for _ in range(12) for w in _partials(_at_partial([right.id]))]

    counts = []
    for wires in (small, large):
        with CaptureQueriesContext(connection) as queries:
            assert services.messages_receive(wires=wires) == ["advanced"] * len(wires)
        counts.append(len(queries.captured_queries))

    assert counts[0] == counts[1], counts
    assert counts[0] <= 24, counts  # 22 today: one statement per check or write, none per reply


def test_a_batch_that_fails_is_taken_again_one_reply_at_a_time(demo) -> None:  # type: ignore[no-untyped-def]
    right = _right("acme")
    jobs = [_at_partial([right.id]) for _ in range(3)]
    wires = [w for job in jobs for w in _partials(job)]
    # Something the batch cannot know before it writes: an entry already waiting under the
    # event id the second reply's usage takes, with another body.
    receipt = federation.body_of(wires[1])["receipt"]
    PendingEntry.objects.create(
        kind="usage", event_id=f"usage:{sha256_hex(canonical(receipt['payload']))}", payload_json='{"other":1}',
        producer_time="2026-01-01T00:00:00Z",
    )  # fmt: skip

    outcomes = services.messages_receive(wires=wires)

    assert outcomes[0] == "advanced" and outcomes[2] == "advanced"
    assert isinstance(outcomes[1], LedgerConflict)
    first, second, third = _refresh(jobs)
    assert first.state["phase"] == third.state["phase"] == "decrypt"
    assert second.state["phase"] == "partial"  # nothing of the failed reply was kept: it can come again
    assert not Message.objects.filter(job=second, direction="in", step="partial").exists()


def test_a_node_message_that_breaks_does_not_cost_the_job_replies_beside_it(demo, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    right = _right("acme")
    job = _at_partial([right.id])
    (reply,) = _partials(job)
    announce = {"payload": {"step": "announce"}, "kid": "x", "sig": "x"}

    def broken(wire: dict[str, Any]) -> str:
        raise RuntimeError("a bug in the announcement path")

    monkeypatch.setattr(services, "_node_message", broken)
    outcomes = services.messages_receive(wires=[announce, reply])

    assert isinstance(outcomes[0], RuntimeError) and outcomes[1] == "advanced"
    job.refresh_from_db()
    assert job.state["phase"] == "decrypt"
    with pytest.raises(RuntimeError):  # alone, it is raised as before
        services.message_receive(wire=announce)


def test_receipts_are_verified_before_the_batch_takes_its_locks(demo, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Each receipt's signature is checked once, before ``_Intake.load`` locks the rights (shared
    by every job under a right); one whose signature fails is checked again inside and refused."""
    import base64

    right = _right("acme")
    honest = [w for _ in range(3) for w in _partials(_at_partial([right.id]))]

    def forged(slug: str, payload: dict[str, Any]) -> dict[str, Any]:
        payload["body"]["receipt"]["sig"] = base64.b64encode(bytes(64)).decode()
        return payload

    (bad,) = _partials(_at_partial([right.id]), forged)
    locked = {"now": False}
    calls: list[tuple[bool, bool]] = []  # (inside the locks, a receipt)
    real_load, real_verify = services._Intake.load.__func__, envelope.verify_signed

    def load(cls, *args, **kwargs):  # type: ignore[no-untyped-def]
        locked["now"] = True
        return real_load(cls, *args, **kwargs)

    def verify(wire, resolve):  # type: ignore[no-untyped-def]
        calls.append((locked["now"], isinstance(wire, dict) and wire.get("payload", {}).get("type") == "usage_receipt"))
        return real_verify(wire, resolve)

    monkeypatch.setattr(services._Intake, "load", classmethod(load))
    monkeypatch.setattr(envelope, "verify_signed", verify)

    outcomes = services.messages_receive(wires=[*honest, bad])

    assert outcomes == ["advanced"] * 3 + ["receipt refused: receipt_bad_signature"]
    receipts = [inside for inside, receipt in calls if receipt]
    assert receipts == [False] * 4 + [True]  # four before the locks; only the forged one again inside


def test_a_receipt_that_cannot_be_checked_costs_only_its_own_reply(demo) -> None:  # type: ignore[no-untyped-def]
    """A receipt whose key id is not a string, or whose payload holds a number canonical JSON
    refuses, is the node's claim like any other: the replies beside it in the batch go on."""
    import base64
    import json

    from nacl.public import SealedBox

    from ledger.hubkey import hub_private_key
    from protocol import sealed

    right = _right("acme")
    honest = [w for _ in range(2) for w in _partials(_at_partial([right.id]))]

    def kid_list(slug: str, payload: dict[str, Any]) -> dict[str, Any]:
        payload["body"]["receipt"]["kid"] = []
        return payload

    (listed,) = _partials(_at_partial([right.id]), kid_list)
    # A node that seals plain JSON with a number beyond I-JSON (canonical() refuses 2**60), signed by it.
    (reply,) = _partials(_at_partial([right.id]))
    payload = dict(reply["payload"])
    body = federation.body_of(reply)
    body["receipt"]["payload"]["rows"] = 2**60
    box = SealedBox(sealed.x25519_public(hub_private_key().public_key()))
    payload["body"] = {"sealed": base64.b64encode(box.encrypt(json.dumps(body).encode())).decode()}
    huge = federation.resign("acme", {"payload": payload})

    outcomes = services.messages_receive(wires=[honest[0], listed, huge, honest[1]])

    assert outcomes[0] == outcomes[3] == "advanced"
    assert outcomes[1] == "receipt refused: receipt_malformed"
    assert isinstance(outcomes[2], ValueError)  # refused alone (the batch was taken again reply by reply)
    assert PendingEntry.objects.filter(kind="usage").count() == 2  # the honest two; nothing for either claim


def test_a_batch_reads_what_its_jobs_share_once_and_writes_only_changed_parties(demo, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Jobs under one right between the same nodes share one object per row (the right the batch
    holds, its dataset, each node, the consumer); a party the batch leaves as it was (the
    consumer's, at a provider's partial) is not written again: its row version is unchanged."""
    right = _right("acme")
    jobs = [_at_partial([right.id]) for _ in range(3)]
    wires = [w for job in jobs for w in _partials(job)]
    consumer_parties = list(JobParty.objects.filter(job__in=jobs, role="consumer").values_list("id", flat=True))

    def versions() -> dict[int, str]:
        with connection.cursor() as cur:
            cur.execute("SELECT id, xmin::text FROM compute_jobparty WHERE id = ANY(%s)", [consumer_parties])
            return dict(cur.fetchall())

    before = versions()
    loaded = []
    real = services._Intake.load

    def load(opened, active):  # type: ignore[no-untyped-def]
        intake = real(opened, active)
        loaded.append(intake)
        return intake

    monkeypatch.setattr(services._Intake, "load", load)
    assert services.messages_receive(wires=wires) == ["advanced"] * 3
    (intake,) = loaded
    parties = [p for ps in intake.parties.values() for p in ps]
    providers = [p for p in parties if p.role == "provider"]
    assert len(parties) == 6 and len(providers) == 3
    assert {id(p.right) for p in providers} == {id(intake.writes.rights[right.id])}  # the locked row
    assert {id(p.dataset) for p in providers} == {id(intake.writes.rights[right.id].dataset)}
    assert len({id(p.node) for p in parties}) == 2  # the bank's and Acme's nodes, once each
    assert len({id(j.consumer) for j in intake.jobs.values()}) == 1
    assert {id(j.consumer_node) for j in intake.jobs.values()} == {id(p.node) for p in parties if p.role == "consumer"}
    assert versions() == before  # the consumer parties were not rewritten
    assert all(p.status == "done" for p in JobParty.objects.filter(job__in=jobs, role="provider"))


def test_jobs_and_parties_leave_room_for_updates_in_place_and_digests_have_one_index(db) -> None:  # type: ignore[no-untyped-def]
    """Migration ``compute.0007``: each step rewrites a job and its parties, never an indexed
    column, so their pages keep room for the new version (fillfactor 70: HOT updates); a
    message's digest is looked up by equality only, so it has its unique index and no LIKE copy."""
    if connection.vendor != "postgresql":
        pytest.fail("this test needs PostgreSQL (make test sets DATABASE_URL)")
    with connection.cursor() as cur:
        cur.execute(
            "SELECT relname, reloptions FROM pg_class WHERE relname IN ('compute_job', 'compute_jobparty') ORDER BY 1"
        )
        assert cur.fetchall() == [("compute_job", ["fillfactor=70"]), ("compute_jobparty", ["fillfactor=70"])]
        cur.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'compute_message' AND indexdef LIKE '%(digest%'")
        assert [d for (d,) in cur.fetchall()] == [
            "CREATE UNIQUE INDEX compute_message_digest_key ON public.compute_message USING btree (digest)"
        ]
