"""The README's path, walked with a client generated from the served schema.

Run by ``tests/test_api_client.py`` in a venv of its own (openapi-python-client and the
generated ``usufruct_client`` package, nothing of the project's), as a client author would:

    python tests/client_walk.py BASE_URL BANK_TOKEN ACME_TOKEN REGULATOR_TOKEN STAFF_TOKEN

A consumer finds a dataset in the catalog, buys a usage right on its offer, runs a
``stats`` job under it and waits for the result, reads the job's signed messages and its
bill; the provider reads its revenue; staff sign a checkpoint and the regulator reads an
entry's inclusion proof against it. Every call goes through the generated functions and
models; the script prints one line per step and exits non-zero on the first surprise.
"""

from __future__ import annotations

import sys
import time
import uuid

from usufruct_client import AuthenticatedClient, Client
from usufruct_client.api.billing import billing_bill_retrieve, billing_revenue_retrieve
from usufruct_client.api.datasets import datasets_list
from usufruct_client.api.jobs import jobs_create, jobs_retrieve
from usufruct_client.api.ledger import (
    ledger_checkpoints_create,
    ledger_checkpoints_latest_retrieve,
    ledger_entries_list,
    ledger_entries_retrieve,
)
from usufruct_client.api.orders import orders_create
from usufruct_client.api.rights import rights_list
from usufruct_client.models import (
    Checkpoint,
    Error,
    JobDetail,
    JobRequestStats,
    JobRequestStatsAlgorithm,
    JobRequestStatsParams,
    JobRequestStatsParamsKeyBits,
    LedgerEntriesListKind,
    LedgerEntryProof,
    Order,
    OrderCreateRequest,
)


def step(text: str) -> None:
    print(f"ok: {text}", flush=True)


def expect(value, kind):  # type: ignore[no-untyped-def]
    if isinstance(value, Error):
        raise SystemExit(f"unexpected API error: {value.error.code}: {value.error.message}")
    if not isinstance(value, kind):
        raise SystemExit(f"expected a {kind.__name__}, got {value!r}")
    return value


def main(base: str, bank_token: str, acme_token: str, regulator_token: str, staff_token: str) -> None:
    bank = AuthenticatedClient(base_url=base, token=bank_token, prefix="Token", raise_on_unexpected_status=True)
    acme = AuthenticatedClient(base_url=base, token=acme_token, prefix="Token", raise_on_unexpected_status=True)
    regulator = AuthenticatedClient(
        base_url=base, token=regulator_token, prefix="Token", raise_on_unexpected_status=True
    )
    staff = AuthenticatedClient(base_url=base, token=staff_token, prefix="Token", raise_on_unexpected_status=True)

    page = datasets_list.sync(client=bank, q="shopper")
    found = [d for d in page.results if d.name == "Acme shopper behaviour 2026"]
    if not found or not found[0].offers:
        raise SystemExit(f"the catalog search found no offer: {[d.name for d in page.results]}")
    dataset = found[0]
    offer = dataset.offers[0]
    step(f"catalog: {dataset.name!r} by {dataset.provider}, offer #{offer.id} ({offer.plans[0].kind.value})")

    key = uuid.uuid4().hex
    order = expect(
        orders_create.sync(
            client=bank,
            body=OrderCreateRequest(offer=offer.id, purpose="credit risk", accept_terms=True),
            idempotency_key=key,
        ),
        Order,
    )
    again = orders_create.sync_detailed(
        client=bank,
        body=OrderCreateRequest(offer=offer.id, purpose="credit risk", accept_terms=True),
        idempotency_key=key,
    )
    if again.status_code != 200 or again.parsed.id != order.id:
        raise SystemExit(f"a retried order was not idempotent: {again.status_code}")
    step(f"bought right #{order.right.id}, order status {order.status.value}; the retry returned the same order")

    held = rights_list.sync(client=bank, dataset=dataset.id)
    if [r.id for r in held.results] != [order.right.id]:
        raise SystemExit(f"my rights on the dataset: {[r.id for r in held.results]}")
    step(f"my rights: #{order.right.id}, {held.results[0].quota_left} jobs left")

    job = jobs_create.sync(
        client=bank,
        body=JobRequestStats(
            algorithm=JobRequestStatsAlgorithm.STATS,
            params=JobRequestStatsParams(column="tenure_months", key_bits=JobRequestStatsParamsKeyBits.VALUE_1024),
            rights=[order.right.id],
        ),
        idempotency_key=uuid.uuid4().hex,
    )
    job = expect(job, JobDetail)
    step(f"submitted {job.title!r}")
    deadline = time.monotonic() + 120
    while True:
        job = jobs_retrieve.sync(client=bank, id=job.id)
        if job.status.value in ("succeeded", "failed", "cancelled"):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"the job is still {job.status.value} after 120 s")
        time.sleep(0.5)
    if job.status.value != "succeeded":
        raise SystemExit(f"the job {job.status.value}: {job.error}")
    outputs = job.outputs.to_dict() if hasattr(job.outputs, "to_dict") else job.outputs
    step(f"job succeeded: mean tenure {outputs['mean']:.2f} over {outputs['count']} rows")
    steps = [(m.direction.value, m.step, m.sender) for m in job.messages]
    if not any(s[0] == "in" and s[1] == "partial" for s in steps):
        raise SystemExit(f"the job's messages show no provider reply: {steps}")
    step(f"{len(job.messages)} signed messages, e.g. {steps[0]}")

    deadline = time.monotonic() + 30
    while True:  # the usage settles on the ledger as the writer integrates it
        bill = billing_bill_retrieve.sync(client=bank)
        if any(li.kind.value == "usage" for li in bill.lines) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    usage = [li for li in bill.lines if li.kind.value == "usage"]
    if not usage or not bill.totals:
        raise SystemExit(f"the bill shows no usage: {[li.kind.value for li in bill.lines]}")
    step(f"bill: {len(bill.lines)} lines, total {bill.totals[0].display}")

    revenue = billing_revenue_retrieve.sync(client=acme)
    if not revenue.nets:
        raise SystemExit("the provider's revenue shows no net")
    step(f"revenue: net {revenue.nets[0].display} after the platform fee {revenue.platform_fees[0].display}")

    signed = expect(ledger_checkpoints_create.sync(client=staff), Checkpoint)
    step(f"staff signed a checkpoint of {signed.size} entries")
    entries = ledger_entries_list.sync(client=regulator, kind=LedgerEntriesListKind.USAGE)
    if not entries.results:
        raise SystemExit("the regulator sees no usage entry")
    checkpoint = expect(ledger_checkpoints_latest_retrieve.sync(client=Client(base_url=base)), Checkpoint)
    entry = expect(ledger_entries_retrieve.sync(client=regulator, seq=entries.results[0].seq), LedgerEntryProof)
    if entry.inclusion["tree_size"] != checkpoint.size:
        raise SystemExit(f"the proof is against another tree: {entry.inclusion}")
    step(f"regulator: usage entry #{entry.seq} proven against the public checkpoint of {checkpoint.size} entries")


if __name__ == "__main__":
    main(*sys.argv[1:6])
