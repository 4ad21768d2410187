"""Job submission and the hub's handling of node messages, in process.

The node side runs the real node runtime (compute.node.runtime.handle_step) on the
seeded node directories; only the broker hop is skipped. Real workers are covered by
test_e2e_walking_skeleton.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings

from compute import services
from compute.models import Job, Message
from compute.node.config import NodeConfig
from compute.node.runtime import handle_step
from ledger import writer
from ledger.hubkey import hub_private_key
from ledger.models import LedgerEntry
from marketplace.models import Offer, UsageRight
from protocol import envelope
from tests.conftest import api_for
from tests.federation import body_of

pytestmark = pytest.mark.django_db


def node(slug: str) -> NodeConfig:
    return NodeConfig(
        slug=slug, directory=Path(settings.USUFRUCT_NODES_DIR) / slug, broker_url="memory://", broker_dir=None
    )


def node_says(config: NodeConfig, job_id: str, step: str, body: dict, **kw):  # type: ignore[no-untyped-def,type-arg]
    """A node → hub envelope signed by ``config``'s key (kw: now, ttl for expiry tests)."""
    return envelope.seal(
        job=job_id,
        step=step,
        round=0,
        sender=config.slug,
        recipient="hub",
        body=body,
        key=config.private_key,
        kid=config.kid,
        to=hub_private_key().public_key(),
        **kw,
    )


def _right(api, slug: str, key: str) -> int:  # type: ignore[no-untyped-def]
    offer = Offer.objects.get(dataset__node__slug=slug)
    r = api.post(
        "/api/orders/",
        {"offer": offer.id, "purpose": "risk", "accept_terms": True},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )
    return r.json()["right"]["id"]


def _submit(api, rights, column="tenure_months", key="j1"):  # type: ignore[no-untyped-def]
    return api.post(
        "/api/jobs/",
        {"algorithm": "stats", "params": {"column": column, "key_bits": 1024}, "rights": rights},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def _outbox(job: Job, step: str) -> list[Message]:
    return list(Message.objects.filter(job=job, direction="out", step=step))


def _deliver(job: Job, step: str) -> list[str]:
    """Hand the hub's outgoing messages of ``step`` to their nodes and the answers back."""
    outcomes = []
    for m in _outbox(job, step):
        for reply in handle_step(node(m.recipient), m.envelope):
            outcomes.append(services.message_receive(wire=reply))
    writer.integrate_all()  # the hub's ledger writer
    return outcomes


def test_a_job_runs_through_the_real_node_runtime(bank_api) -> None:  # type: ignore[no-untyped-def]
    rights = [_right(bank_api, "acme", "a"), _right(bank_api, "taxco", "t")]
    r = _submit(bank_api, rights)
    assert r.status_code == 201, r.content
    job = Job.objects.get(id=r.json()["id"])
    services.job_start(job_id=str(job.id))
    assert _deliver(job, "keygen") == ["advanced"]
    assert _deliver(job, "partial") == ["advanced", "advanced"]
    assert _deliver(job, "decrypt") == ["advanced"]
    job.refresh_from_db()
    assert job.status == "succeeded" and job.outputs["count"] == 3800
    assert LedgerEntry.objects.filter(kind="usage").count() == 2
    assert [UsageRight.objects.get(id=i).quota_used for i in rights] == [1, 1]


def test_redelivered_and_replayed_messages_change_nothing(bank_api) -> None:  # type: ignore[no-untyped-def]
    job_id = _submit(bank_api, [_right(bank_api, "acme", "a")]).json()["id"]
    job = Job.objects.get(id=job_id)
    services.job_start(job_id=job_id)
    _deliver(job, "keygen")
    (out,) = _outbox(job, "partial")
    (reply,) = handle_step(node("acme"), out.envelope)
    # A redelivered step gets the very reply the node sealed the first time: nothing is computed
    # or signed again, and the hub takes it as the duplicate it is.
    assert handle_step(node("acme"), out.envelope) == [reply]
    assert services.message_receive(wire=reply) == "advanced"
    entries = LedgerEntry.objects.count()
    assert services.message_receive(wire=copy.deepcopy(reply)) == "duplicate"
    assert LedgerEntry.objects.count() == entries
    assert handle_step(node("acme"), out.envelope) == [reply]  # and again after the hub has it
    assert services.message_receive(wire=handle_step(node("acme"), out.envelope)[0]) == "duplicate"
    right = UsageRight.objects.get(job_parties__job=job)
    # The aggregate went out to the consumer's node for decryption: delivered, charged once.
    assert (right.quota_used, right.quota_reserved) == (1, 0)
    _deliver(job, "decrypt")
    right.refresh_from_db()
    assert (right.quota_used, right.quota_reserved) == (1, 0)
    assert LedgerEntry.objects.filter(kind="usage").count() == 1
    assert LedgerEntry.objects.filter(kind="settlement", payload__outcome="delivered").count() == 1


def test_the_hub_rejects_forged_unknown_expired_and_impersonating_messages(bank_api) -> None:  # type: ignore[no-untyped-def]
    job_id = _submit(bank_api, [_right(bank_api, "acme", "a")]).json()["id"]
    job = Job.objects.get(id=job_id)
    services.job_start(job_id=job_id)
    (out,) = _outbox(job, "keygen")
    (reply,) = handle_step(node("bank"), out.envelope)

    forged = copy.deepcopy(reply)
    forged["payload"]["issued_at"] = envelope.format_time(envelope.utcnow())  # any change breaks the signature
    with pytest.raises(envelope.EnvelopeError) as err:
        services.message_receive(wire=forged)
    assert err.value.code == "bad_signature"

    unknown = copy.deepcopy(reply)
    unknown["kid"] = "0000000000000000"
    with pytest.raises(envelope.EnvelopeError) as err:
        services.message_receive(wire=unknown)
    assert err.value.code == "unknown_key"

    bank = node("bank")
    expired = node_says(
        bank,
        job_id,
        "keygen",
        body_of(reply),
        now=envelope.utcnow() - timedelta(hours=2),
        ttl=timedelta(hours=1),
    )
    with pytest.raises(envelope.EnvelopeError) as err:
        services.message_receive(wire=expired)
    assert err.value.code == "expired"

    # acme's node, signing correctly, claims to be the consumer party: refused.
    acme = node("acme")
    imposter = node_says(acme, job_id, "keygen", body_of(reply))
    with pytest.raises(envelope.EnvelopeError) as err:
        services.message_receive(wire=imposter)
    assert err.value.code == "impersonation"
    job.refresh_from_db()
    assert job.progress == 5 and not Message.objects.filter(job=job, direction="in").exists()


def test_a_node_refuses_a_step_its_right_does_not_cover(bank_api) -> None:  # type: ignore[no-untyped-def]
    job_id = _submit(bank_api, [_right(bank_api, "acme", "a")]).json()["id"]
    job = Job.objects.get(id=job_id)
    services.job_start(job_id=job_id)
    _deliver(job, "keygen")
    (out,) = _outbox(job, "partial")
    # The hub (compromised, say) re-signs the step with a grant that does not permit stats.
    from ledger.hubkey import hub_kid

    body = copy.deepcopy(out.body)
    body["grant"]["operations"] = ["psi"]
    tampered = envelope.seal(
        job=job_id,
        step="partial",
        round=0,
        sender="hub",
        recipient="acme",
        body=body,
        key=hub_private_key(),
        kid=hub_kid(),
        to=node("acme").private_key.public_key(),
    )
    # The hub only accepts replies to steps it recorded as sent: record this one as sent.
    from protocol.canonical import canonical, sha256_hex

    digest = sha256_hex(canonical(tampered["payload"]))
    services._message(job=job, wire=tampered, body=body, direction="out", digest=digest).save()
    (reply,) = handle_step(node("acme"), tampered)
    assert (body_of(reply)["status"], body_of(reply)["code"]) == ("refused", "not_permitted")
    assert services.message_receive(wire=reply) == "refused"
    job.refresh_from_db()
    assert job.status == "failed"
    right = UsageRight.objects.get(job_parties__job=job)
    assert (right.quota_used, right.quota_reserved) == (0, 0)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"column": "no_such_column"}, "column"),
        ({"column": "customer_id"}, "column"),
        ({}, "column"),
        ({"column": "tenure_months", "key_bits": 512}, "key_bits"),
    ],
)
def test_bad_job_parameters_are_400_and_reserve_nothing(bank_api, params, field) -> None:  # type: ignore[no-untyped-def]
    right = _right(bank_api, "acme", "a")
    r = bank_api.post(
        "/api/jobs/",
        {"algorithm": "stats", "params": params, "rights": [right]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="bad",
    )
    assert r.status_code == 400, r.content
    assert field in r.json()["error"]["fields"]
    assert UsageRight.objects.get(id=right).quota_reserved == 0 and not Job.objects.exists()


def test_unknown_algorithm_and_foreign_rights_are_refused(bank_api) -> None:  # type: ignore[no-untyped-def]
    right = _right(bank_api, "acme", "a")
    r = bank_api.post(
        "/api/jobs/", {"algorithm": "mine", "params": {}, "rights": [right]}, format="json", HTTP_IDEMPOTENCY_KEY="x"
    )
    assert r.status_code == 400 and "algorithm" in r.json()["error"]["fields"]
    r = bank_api.post(
        "/api/jobs/",
        {"algorithm": "stats", "params": {"column": "tenure_months"}, "rights": [424242]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="y",
    )
    assert r.status_code == 404 and "rights" in r.json()["error"]["fields"]


def test_an_exhausted_right_gets_a_409_and_an_expired_one_too(bank_api) -> None:  # type: ignore[no-untyped-def]
    right_id = _right(bank_api, "acme", "a")
    UsageRight.objects.filter(id=right_id).update(quota_used=20)
    r = _submit(bank_api, [right_id], key="j-ex")
    assert r.status_code == 409 and "no quota left" in r.json()["error"]["message"]
    other = _right(bank_api, "taxco", "t")
    UsageRight.objects.filter(id=other).update(expires_at=envelope.utcnow() - timedelta(days=1))
    r = _submit(bank_api, [other], key="j-exp")
    assert r.status_code == 409 and "expired" in r.json()["error"]["message"]
    assert UsageRight.objects.get(id=other).quota_reserved == 0


def test_job_idempotency_key_reuse(bank_api) -> None:  # type: ignore[no-untyped-def]
    right = _right(bank_api, "acme", "a")
    first, again = _submit(bank_api, [right], key="same"), _submit(bank_api, [right], key="same")
    assert (first.status_code, again.status_code) == (201, 200) and first.json()["id"] == again.json()["id"]
    assert UsageRight.objects.get(id=right).quota_reserved == 1
    other = _submit(bank_api, [right], column="orders_12m", key="same")
    assert other.status_code == 409


def test_a_consumer_cannot_see_anothers_job(bank_api) -> None:  # type: ignore[no-untyped-def]
    from marketplace import accounts

    job_id = _submit(bank_api, [_right(bank_api, "acme", "a")]).json()["id"]
    accounts.signup(
        username="other", email="o@example.org", password="pw-other-1", org_name="Other Bank",
        is_provider=False, is_consumer=True,
    )  # fmt: skip
    assert api_for("other").get(f"/api/jobs/{job_id}/").status_code == 404  # another consumer: no such job
    assert api_for("acme").get(f"/api/jobs/{job_id}/").status_code == 403  # a provider: not its kind of page
