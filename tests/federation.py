"""A federation in one process: the hub's services and the real node runtime, no broker.

Each hub → node message is handed to ``compute.node.runtime.handle_step`` with that
node's own directory and key, and each reply goes back through
``compute.services.message_receive``, exactly the code the workers run. A tampering
node is the real node with its reply rewritten and signed again with its own key, as a
dishonest provider would build one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings

from compute import services
from compute.models import Job, Message
from compute.node.config import NodeConfig
from compute.node.runtime import handle_step
from ledger import writer
from ledger.hubkey import hub_private_key
from ledger.models import LedgerEntry
from marketplace.models import Organization, UsageRight
from protocol import envelope, sealed

# A tampering node rewrites its reply's payload (its body in the clear, before it is sealed).
Tamper = Callable[[str, dict[str, Any]], dict[str, Any]]


def node(slug: str) -> NodeConfig:
    return NodeConfig(
        slug=slug, directory=Path(settings.USUFRUCT_NODES_DIR) / slug, broker_url="memory://", broker_dir=None
    )


def submit(rights: list[int], *, algorithm: str = "stats", params: dict[str, Any] | None = None) -> Job:
    """The bank submits a job through the same service the API calls."""
    from django.contrib.auth import get_user_model

    job, _ = services.job_submit(
        consumer=Organization.objects.get(slug="northwind"),
        user=get_user_model().objects.get(username="bank"),
        algorithm=algorithm,
        params=params if params is not None else {"column": "tenure_months", "key_bits": 1024},
        rights=rights,
        idempotency_key=uuid.uuid4().hex,
    )
    return job


def run(job: Job, *, tamper: Tamper | None = None, max_rounds: int = 20) -> Job:
    """Start ``job`` and carry every step to its node and every reply back, until it ends."""
    services.job_start(job_id=str(job.id))
    carried: set[str] = set()
    for _ in range(max_rounds):
        job.refresh_from_db()
        if job.status not in (Job.Status.QUEUED, Job.Status.RUNNING):
            return job
        pending = [
            m for m in Message.objects.filter(job=job, direction="out").order_by("id") if m.digest not in carried
        ]
        if not pending:
            raise AssertionError(f"job {job.id} stalled at {job.state.get('phase')!r}")
        for m in pending:
            carried.add(m.digest)
            for reply in handle_step(node(m.recipient), m.envelope):
                services.message_receive(wire=_tampered(m.recipient, reply, tamper) if tamper else reply)
                writer.integrate_all()  # what the hub's ledger writer does after each acceptance
    raise AssertionError(f"job {job.id} did not end in {max_rounds} rounds")


def _tampered(slug: str, reply: dict[str, Any], tamper: Tamper) -> dict[str, Any]:
    """The reply node ``slug`` would have sent had it rewritten its payload before sealing and signing.

    The test reads the honest body with the hub's key only to stand in for the node's own
    plaintext; the rewritten body is sealed to the hub and signed with the node's key.
    """
    payload = dict(reply["payload"])
    payload["body"] = sealed.open_body(payload["body"], hub_private_key())
    payload = tamper(slug, payload)
    payload["body"] = sealed.seal_body(payload["body"], hub_private_key().public_key())
    config = node(slug)
    return envelope.sign_payload(payload, key=config.private_key, kid=config.kid)


def body_of(wire: dict[str, Any], key: Any = None) -> dict[str, Any]:
    """The body of a message sealed to the hub (or to ``key``'s holder), as its recipient reads it."""
    opened: dict[str, Any] = sealed.open_body(wire["payload"]["body"], key or hub_private_key())
    return opened


def resign(slug: str, wire: dict[str, Any]) -> dict[str, Any]:
    """A signed object signed again by node ``slug``'s own key after its payload was changed."""
    config = node(slug)
    return envelope.sign_payload(wire["payload"], key=config.private_key, kid=config.kid)


def rewrite_receipt(**changes: Any) -> Tamper:
    """A tampering provider: its receipts carry ``changes``, and it signs them (and its reply) itself."""

    def tamper(slug: str, payload: dict[str, Any]) -> dict[str, Any]:
        body = payload["body"]
        if "receipt" in body:
            body["receipt"]["payload"].update(changes)
            body["receipt"] = resign(slug, body["receipt"])
        return payload

    return tamper


def rewrite_result(fn: Callable[[dict[str, Any]], dict[str, Any]], step: str) -> Tamper:
    """A tampering provider whose ``step`` result is replaced (its receipt stays the honest one)."""

    def tamper(slug: str, payload: dict[str, Any]) -> dict[str, Any]:
        if payload["step"] == step:
            payload["body"]["result"] = fn(payload["body"]["result"])
        return payload

    return tamper


def use(right: UsageRight, **params: Any) -> LedgerEntry:
    """One delivered ``stats`` job on ``right``, metered by the real path: its usage entry."""
    job = run(submit([right.id], params={"column": "tenure_months", "key_bits": 1024, **params}))
    assert job.status == Job.Status.SUCCEEDED, job.error
    return LedgerEntry.objects.get(kind="usage", right_id=right.id, payload__job=str(job.id))
