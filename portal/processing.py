"""Records of processing per organisation: GDPR Art. 30(1) and PIPL Art. 55–56 (issue 14).

One record per processing activity, built from the ledger alone (and the catalog's
description of each dataset): for a provider, each dataset it let others compute on;
for a consumer, each right it used. Every record names the ledger entries it summarises
(the grants, the first and last use, the privacy-budget charges), and the document cites
the newest signed checkpoint, so an authority can ask for each entry's inclusion proof.

Formats: JSON (the machine form, schema ``usufruct.records-of-processing/v1``) and PDF.
"""

from __future__ import annotations

import io
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Max, Min
from django.utils import timezone
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

from ledger.models import Checkpoint, LedgerEntry
from marketplace import invoicing
from marketplace.models import Dataset, Membership, Offer, Organization, UsageRight

SCHEMA = "usufruct.records-of-processing/v1"
RETENTION_YEARS = 3  # PIPL Art. 56: impact assessments and processing records kept at least three years

SECURITY_MEASURES = [
    "Data never leaves the controller's node: only Paillier-encrypted or aggregated intermediates travel.",
    "Every message between hub and nodes is signed (Ed25519) and its body sealed to its recipient.",
    "Minimum group size on every released aggregate; differentially private releases under a per-right "
    "and a per-dataset lifetime privacy budget (ε).",
    "Record linkage by Diffie–Hellman private set intersection; aligned identifiers deleted after the job.",
    "Every use recorded on an append-only Merkle-tree ledger, signed checkpoints co-signed by the "
    "authority's witness; each entry provable offline.",
    "Usage rights limited in operations, number of jobs and time; models trained under a right are deleted "
    "on each node when the right ends.",
]


def _party(org: Organization) -> dict[str, Any]:
    contacts = sorted(
        m.user.email for m in Membership.objects.filter(organization=org, role="admin").select_related("user")
    )
    return {
        "name": org.name,
        "address": org.billing_address,
        "tax_id": org.tax_id,
        "roles": [r for r, on in (("provider", org.is_provider), ("consumer", org.is_consumer)) if on],
        "contacts": [c for c in contacts if c],
    }


def _uses(qs: Any, key: str) -> dict[Any, dict[str, Any]]:
    return {
        row[key]: row
        for row in qs.filter(kind=LedgerEntry.Kind.USAGE)
        .values(key)
        .annotate(n=Count("seq"), first=Min("seq"), last=Max("seq"), first_at=Min("integrated_at"))
    }


def _epsilon(qs: Any, key: str) -> dict[Any, tuple[Decimal, list[int]]]:
    out: dict[Any, tuple[Decimal, list[int]]] = defaultdict(lambda: (Decimal(0), []))
    for e in qs.filter(kind=LedgerEntry.Kind.DP_CHARGE).only("seq", "payload", "dataset_id", "right_id"):
        total, seqs = out[getattr(e, key)]
        out[getattr(e, key)] = (total + Decimal(str(e.payload.get("epsilon", "0"))), [*seqs, e.seq])
    return out


def _impact(operations: set[str], recipients: int) -> dict[str, Any]:
    """PIPL Art. 55 circumstances and Art. 56 contents, as the ledger shows them."""
    triggers = []
    if recipients:
        triggers.append("Art. 55(3): personal information made available to other processors for computation")
    if "hetero_lr" in operations or "homo_lr" in operations:
        triggers.append("Art. 55(2): used to train models that may support automated decisions")
    return {
        "required": bool(triggers),
        "circumstances": triggers,
        "purpose_and_method": "Purpose declared by each recipient on its order and limited by the offer's "
        "operations; computation runs where the data is, under the measures below.",
        "impact_on_individuals": "No record leaves the controller; recipients receive aggregates (at least the "
        "minimum group size), noised releases or model coefficients, never rows.",
        "measures_proportionate": "Each use is metered, provable and bounded by the right's quota, period and "
        "privacy budget.",
    }


def records(org: Organization, now: datetime | None = None) -> dict[str, Any]:
    """The organisation's records of processing, as JSON-ready data."""
    now = now or timezone.now()
    cp = Checkpoint.objects.order_by("-size").first()
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "generated_at": now.isoformat(),
        "keep_until": (now + timedelta(days=365 * RETENTION_YEARS)).date().isoformat(),
        "organization": _party(org),
        "processor": {**invoicing.operator(), "role": "hub operator: routes encrypted messages, keeps the ledger"},
        "checkpoint": {"size": cp.size, "root": cp.root_hex, "note": cp.note} if cp else None,
        "as_controller": _as_controller(org) if org.is_provider else [],
        "as_recipient": _as_recipient(org) if org.is_consumer else [],
    }
    return doc


def _as_controller(org: Organization) -> list[dict[str, Any]]:
    datasets = list(Dataset.objects.filter(organization=org).select_related("node").order_by("name"))
    entries = LedgerEntry.objects.filter(provider_id=org.id)
    grants: dict[int, list[LedgerEntry]] = defaultdict(list)
    for g in entries.filter(kind=LedgerEntry.Kind.RIGHT_GRANTED).only("seq", "payload", "dataset_id", "consumer_id"):
        grants[g.dataset_id or 0].append(g)
    uses = _uses(entries, "dataset_id")
    eps = _epsilon(entries, "dataset_id")
    offers: dict[int, list[Offer]] = defaultdict(list)
    for o in Offer.objects.filter(dataset__organization=org):
        offers[o.dataset_id].append(o)
    listed = dict(
        LedgerEntry.objects.filter(kind=LedgerEntry.Kind.DATASET_LISTED, provider_id=org.id)
        .values("dataset_id")
        .annotate(seq=Max("seq"))
        .values_list("dataset_id", "seq")
    )
    names = dict(Organization.objects.values_list("id", "name"))
    out = []
    for d in datasets:
        ops = {op for o in offers[d.id] for op in o.operations}
        recipients = sorted({names.get(g.consumer_id or 0, "?") for g in grants[d.id]})
        use = uses.get(d.id)
        spent, dp_seqs = eps.get(d.id, (Decimal(0), []))
        out.append(
            {
                "activity": f"Compute-only use of {d.name} by other organisations",
                "dataset": {
                    "id": d.id,
                    "name": d.name,
                    "node": d.node.slug,
                    "rows": d.row_count,
                    "content_sha256": d.content_sha256,
                },  # fmt: skip
                "purposes": [
                    {
                        "right": g.right_id,
                        "recipient": names.get(g.consumer_id or 0, "?"),
                        "purpose": g.payload.get("purpose", ""),
                        "category": g.payload.get("purpose_category", ""),
                    }
                    for g in grants[d.id]
                ],  # fmt: skip
                "categories_of_data_subjects": d.tags or ["as described: " + (d.description or d.name)],
                "categories_of_personal_data": [c.get("name") if isinstance(c, dict) else str(c) for c in d.columns],
                "recipients": recipients,
                "transfers": "None: no record leaves the controller's node; the hub operator receives only "
                "encrypted or aggregated intermediates.",
                "retention": "Held by the controller on its node; intermediates deleted after each job; models "
                "deleted when their right ends; ledger entries kept as the billing and audit record.",
                "security_measures": SECURITY_MEASURES,
                "operations_offered": sorted(ops),
                "privacy_budget": {
                    "epsilon_budget": None if d.epsilon_budget is None else str(d.epsilon_budget),
                    "epsilon_spent": str(spent),
                },  # fmt: skip
                "pipl_impact_assessment": _impact(ops, len(recipients)),
                "ledger_entries": {
                    "dataset_listed": listed.get(d.id),
                    "right_granted": [g.seq for g in grants[d.id]],
                    "usage": {"count": use["n"], "first": use["first"], "last": use["last"]} if use else None,
                    "dp_charge": dp_seqs,
                },
            }
        )
    return out


def _as_recipient(org: Organization) -> list[dict[str, Any]]:
    entries = LedgerEntry.objects.filter(consumer_id=org.id)
    grants = {
        g.right_id: g
        for g in entries.filter(kind=LedgerEntry.Kind.RIGHT_GRANTED).only("seq", "payload", "right_id", "provider_id")
    }
    uses = _uses(entries, "right_id")
    eps = _epsilon(entries, "right_id")
    rows = entries.filter(kind=LedgerEntry.Kind.SETTLEMENT, payload__outcome="delivered")
    delivered = dict(rows.values("right_id").annotate(n=Count("seq")).values_list("right_id", "n"))
    names = dict(Organization.objects.values_list("id", "name"))
    out = []
    for right in UsageRight.objects.filter(consumer=org).select_related("dataset", "order").order_by("id"):
        g = grants.get(right.id)
        use = uses.get(right.id)
        spent, dp_seqs = eps.get(right.id, (Decimal(0), []))
        out.append(
            {
                "activity": f"Computation on {right.dataset.name} under right #{right.id}",
                "controller": names.get(right.dataset.organization_id, "?"),
                "purpose": right.order.purpose,
                "purpose_category": right.order.purpose_category,
                "operations": right.operations,
                "categories_of_personal_data": [
                    c.get("name") if isinstance(c, dict) else str(c) for c in right.dataset.columns
                ],
                "received": "Aggregates, noised releases and model coefficients; never records.",
                "period": {
                    "granted": right.created_at.isoformat(),
                    "expires": right.expires_at.isoformat(),
                    "status": right.status,
                },  # fmt: skip
                "jobs_delivered": delivered.get(right.id, 0),
                "epsilon_spent": str(spent),
                "ledger_entries": {
                    "right_granted": g.seq if g else None,
                    "usage": {"count": use["n"], "first": use["first"], "last": use["last"]} if use else None,
                    "dp_charge": dp_seqs,
                },
            }
        )
    return out


def to_pdf(doc: dict[str, Any]) -> bytes:
    """The records as a PDF a person files: one section per activity."""
    out = io.BytesIO()
    styles = getSampleStyleSheet()
    body, h1, h2 = styles["BodyText"], styles["Title"], styles["Heading2"]
    small = styles["Code"]
    org = doc["organization"]
    story: list[Any] = [
        Paragraph(f"Records of processing: {_esc(org['name'])}", h1),
        Paragraph("GDPR Art. 30(1) and PIPL Art. 55–56, from the Usufruct ledger.", body),
        Paragraph(f"Generated {doc['generated_at'][:19]} UTC; keep until {doc['keep_until']}.", body),
        Paragraph(f"Controller: {_esc(org['name'])}, {_esc(org['address'])} ({_esc(org['tax_id'])}).", body),
        Paragraph(f"Processor: {_esc(doc['processor']['name'])}, {_esc(doc['processor']['role'])}.", body),
    ]
    cp = doc["checkpoint"]
    if cp:
        story.append(
            Paragraph(
                f"Ledger entries cited are covered by signed checkpoint {cp['size']} (root {cp['root'][:16]}…).", body
            )
        )
    for kind, title in (("as_controller", "As controller"), ("as_recipient", "As recipient")):
        for rec in doc[kind]:
            story += [Spacer(1, 4 * mm), Paragraph(f"{title}: {_esc(rec['activity'])}", h2)]
            for key, value in rec.items():
                if key == "activity":
                    continue
                story.append(Paragraph(f"<b>{_esc(key.replace('_', ' '))}</b>: {_esc(_text(value))}", body))
    story.append(Spacer(1, 4 * mm))
    story.append(Paragraph("Security measures apply to every activity above.", small))
    SimpleDocTemplate(out, pagesize=A4, title=f"Records of processing {org['name']}", leftMargin=18 * mm,
                      rightMargin=18 * mm).build(story)  # fmt: skip
    return out.getvalue()


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k.replace('_', ' ')}: {_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value) or "none"
    return "none" if value is None or value == "" else str(value)


def _esc(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
