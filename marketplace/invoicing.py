"""Issued documents: invoices and credit notes to consumers, statements to providers.

A document is built from the ledger, never from the live tables: each line is one charged
ledger entry (a purchase, a delivered use, a refund) priced by the plan its right was sold
with, and carries that entry, the hub's signature on it and its inclusion proof in the signed
checkpoint the document cites — so ``python -m ledger.verify`` checks it without the hub.

- Sequentially numbered per type and year (``INV-2026-000001``), under a lock, with no gaps.
- Immutable once issued: a database trigger refuses any update or delete of a document or
  its lines (marketplace migration 0007); a refund after issue becomes a credit note, never an edit.
- Each charged entry is on at most one invoice or credit note, and on at most one statement
  (unique per family and seq), so issuing twice, or a beat task and a click at once, cannot
  charge anything twice: re-issuing a period issues only what is new.
- Issuing is a ledger entry (``document_issued``) carrying the document's SHA-256 digest.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.invoice import digest as document_digest
from ledger import bundle, tree
from ledger import services as ledger_services
from ledger.models import Checkpoint, LedgerEntry
from ledger.selectors import b64, checkpoint_note
from marketplace import selectors
from marketplace.exceptions import invalid
from marketplace.models import Document, DocumentLine, Organization
from protocol import pricing

FORMAT = "usufruct/invoice/v1"
PREFIX = {Document.Type.INVOICE: "INV", Document.Type.CREDIT_NOTE: "CRN", Document.Type.STATEMENT: "STM"}
FAMILY = {Document.Type.INVOICE: "buyer", Document.Type.CREDIT_NOTE: "buyer", Document.Type.STATEMENT: "seller"}
_NUMBER_LOCK = 0x5553_4600_0000_0001  # pg advisory lock: numbering and the unique lines


def month_bounds(period: str) -> tuple[date, date]:
    """The first and last day of ``YYYY-MM``; a 400 on anything else."""
    try:
        year, month = (int(p) for p in period.split("-"))
        first = date(year, month, 1)
    except (ValueError, TypeError):
        raise invalid("period", "A period is a month, YYYY-MM.") from None
    return first, date(year, month, calendar.monthrange(year, month)[1])


def previous_month(today: date) -> str:
    last = today.replace(day=1) - timedelta(days=1)
    return f"{last.year:04d}-{last.month:02d}"


@dataclass(frozen=True)
class _Cited:
    """What every document of one issuing run cites: read once per run, not once per document."""

    cp: Checkpoint
    note: str
    log_keys: list[dict[str, str]]
    witness_keys: list[str]


@dataclass
class _Draft:
    type: str
    org: Organization
    currency: str
    lines: list[selectors.ChargeLine]
    corrects: Document | None = None


def documents_issue(
    *, period: str, organization: Organization | None = None, now: datetime | None = None
) -> list[Document]:
    """Issue every invoice, credit note and statement due for ``period`` (YYYY-MM) up to ``now``:
    for one organisation or all. Idempotent: what is already on a document is left out, so a
    second call issues only what the ledger gained since (often nothing)."""
    now = now or timezone.now()
    first, last = month_bounds(period)
    if first > now.date():
        return []  # nothing is due for a month that has not begun
    until = min(last, now.date())
    orgs = [organization] if organization is not None else list(Organization.objects.order_by("id"))
    # What the documents cite: a signed checkpoint covering every entry up to now.
    cp = ledger_services.checkpoint_create()
    if cp is None:
        return []
    cited = _Cited(cp, checkpoint_note(cp), bundle.log_keys(), bundle.witness_keys())
    issued: list[Document] = []
    for org in orgs:
        if org.is_consumer:
            issued += _issue(org, "buyer", first, until, cited, now)
        if org.is_provider:
            issued += _issue(org, "seller", first, until, cited, now)
    return issued


def _issue(org: Organization, family: str, first: date, until: date, cited: _Cited, now: datetime) -> list[Document]:
    cp = cited.cp
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [_NUMBER_LOCK])
        statement = (selectors.consumer_bill if family == "buyer" else selectors.provider_revenue)(org, first, until)
        done = set(
            DocumentLine.objects.filter(family=family, seq__in=statement.ledger_seqs).values_list("seq", flat=True)
        )
        fresh = [
            li
            for li in statement.lines
            if li.amount is not None and li.amount.minor and li.seq not in done and li.seq < cp.size
        ]
        drafts = _drafts(org, family, fresh)
        out = []
        for draft in drafts:
            out.append(_write(draft, first, until, cited, now))
        return out


def _drafts(org: Organization, family: str, lines: list[selectors.ChargeLine]) -> list[_Draft]:
    by_currency: dict[str, list[selectors.ChargeLine]] = defaultdict(list)
    for li in lines:
        by_currency[li.amount.currency].append(li)  # type: ignore[union-attr]
    out = []
    for currency, group in sorted(by_currency.items()):
        if family == "seller":
            out.append(_Draft(Document.Type.STATEMENT, org, currency, group))
            continue
        # A refund of a right already invoiced is a credit note on that invoice, never an edit of it.
        invoiced = _invoice_of_rights({li.right for li in group if li.kind == "refund"}, org)
        credits: dict[int, list[selectors.ChargeLine]] = defaultdict(list)
        rest = []
        for li in group:
            if li.kind == "refund" and li.right in invoiced:
                credits[invoiced[li.right].id].append(li)
            else:
                rest.append(li)
        if rest:
            out.append(_Draft(Document.Type.INVOICE, org, currency, rest))
        for doc_id, refunds in credits.items():
            corrects = next(d for d in invoiced.values() if d.id == doc_id)
            out.append(_Draft(Document.Type.CREDIT_NOTE, org, currency, refunds, corrects))
    return out


def _invoice_of_rights(rights: set[int], org: Organization) -> dict[int, Document]:
    """The latest issued invoice charging anything under each right."""
    if not rights:
        return {}
    charged = LedgerEntry.objects.filter(right_id__in=rights, consumer_id=org.id).values_list("seq", "right_id")
    by_seq = dict(charged)
    out: dict[int, Document] = {}
    for line in DocumentLine.objects.filter(family="buyer", seq__in=list(by_seq)).select_related("document"):
        doc = line.document
        if doc.type == Document.Type.INVOICE:
            right = by_seq[line.seq]
            if right not in out or out[right].issued_at < doc.issued_at:
                out[right] = doc
    return out


def _next_number(kind: str, year: int) -> tuple[int, str]:
    last = (
        Document.objects.filter(type=kind, year=year).order_by("-sequence").values_list("sequence", flat=True).first()
    )
    n = (last or 0) + 1
    return n, f"{PREFIX[kind]}-{year}-{n:06d}"  # type: ignore[index]


def _party(org: Organization) -> dict[str, Any]:
    return {"id": org.id, "name": org.name, "address": org.billing_address, "tax_id": org.tax_id}


def operator() -> dict[str, Any]:
    """The marketplace's operator, who sells as the merchant of record and pays providers."""
    op = settings.USUFRUCT_OPERATOR
    return {"name": op["name"], "address": op["address"], "tax_id": op["tax_id"]}


def _entry(e: LedgerEntry, proof: list[bytes]) -> dict[str, Any]:
    return {"body": e.body, "hub_kid": e.hub_kid, "hub_sig": e.hub_sig, "proof": b64(proof)}


def _line_kind(li: selectors.ChargeLine) -> str:
    if li.plan == pricing.SUBSCRIPTION:
        return {"purchase": "subscription", "usage": "overage"}.get(li.kind, li.kind)
    return li.kind


def _description(li: selectors.ChargeLine) -> str:
    what = {
        "purchase": "Usage right",
        "subscription": "Subscription period fee",
        "usage": "Job",
        "overage": "Job beyond the subscription",
        "refund": "Refund",
    }[_line_kind(li)]
    job = f" {li.job[:8]}" if li.job else ""
    return f"{what}{job} — {li.dataset}, right #{li.right} ({li.plan})"


def _write(draft: _Draft, first: date, until: date, cited: _Cited, now: datetime) -> Document:
    cp = cited.cp
    lines = sorted(draft.lines, key=lambda li: li.seq)
    seqs = [li.seq for li in lines]
    entries = {e.seq: e for e in LedgerEntry.objects.filter(seq__in=seqs)}
    # The grant of every right a line does not itself grant: it names the parties and the price.
    priced_rights = {li.right for li in lines if li.kind != "purchase"}
    grants = {
        e.right_id: e
        for e in LedgerEntry.objects.filter(kind=LedgerEntry.Kind.RIGHT_GRANTED, right_id__in=priced_rights)
    }
    proofs = tree.inclusion_proofs([*seqs, *(g.seq for g in grants.values())], cp.size)
    year = now.year
    sequence, number = _next_number(draft.type, year)
    body: dict[str, Any] = {
        "format": FORMAT,
        "type": draft.type,
        "number": number,
        "issued_at": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "period": {"from": first.isoformat(), "to": until.isoformat()},
        "currency": draft.currency,
        "party_id": draft.org.id,
    }
    if draft.type == Document.Type.STATEMENT:
        body |= {"operator": operator(), "provider": _party(draft.org)}
    else:
        body |= {"seller": operator(), "buyer": _party(draft.org)}
    if draft.corrects is not None:
        body["corrects"] = draft.corrects.number
    body["lines"] = [
        {
            "seq": li.seq,
            "kind": _line_kind(li),
            "description": _description(li),
            "date": li.at.date().isoformat(),  # type: ignore[attr-defined]
            "dataset": li.dataset,
            "counterparty": li.counterparty,
            "plan": li.plan,
            "right": li.right,
            "job": li.job,
            "rows": li.rows,
            "records": li.records,
            "amount_minor": li.amount.minor,  # type: ignore[union-attr]
            "entry": _entry(entries[li.seq], proofs[li.seq]),
        }
        for li in lines
    ]
    body["prices"] = {str(r): {"seq": g.seq, "entry": _entry(g, proofs[g.seq])} for r, g in sorted(grants.items())}
    amounts = [li.amount.minor for li in lines]  # type: ignore[union-attr]
    if draft.type == Document.Type.STATEMENT:
        gross = sum(a for li, a in zip(lines, amounts, strict=True) if li.kind != "refund")
        refunds = sum(a for li, a in zip(lines, amounts, strict=True) if li.kind == "refund")
        bps = settings.USUFRUCT_PLATFORM_FEE_BPS
        fee = pricing.share_bps(gross + refunds, bps)
        body |= {
            "gross_minor": gross,
            "refunds_minor": refunds,
            "fee": {"name": "Platform fee", "rate_bps": bps, "amount_minor": fee},
            "net_minor": gross + refunds - fee,
        }
        for key, name in (("dataset", "by_dataset"), ("counterparty", "by_consumer"), ("plan", "by_plan")):
            sums: dict[str, int] = {}
            for line in body["lines"]:
                sums[str(line[key])] = sums.get(str(line[key]), 0) + line["amount_minor"]
            body[name] = sums
        total = body["net_minor"]
    else:
        subtotal = sum(amounts)
        rate = settings.USUFRUCT_TAX["rate_bps"]
        tax = pricing.share_bps(subtotal, rate)
        body |= {
            "subtotal_minor": subtotal,
            "tax": {"name": settings.USUFRUCT_TAX["name"], "rate_bps": rate, "amount_minor": tax},
            "total_minor": subtotal + tax,
        }
        total = subtotal + tax
    body |= {
        "checkpoint": {"size": cp.size, "note": cited.note},
        "log_keys": cited.log_keys,
        "witness_keys": cited.witness_keys,
    }
    body["digest"] = document_digest(body)
    family = FAMILY[draft.type]  # type: ignore[index]
    entry = ledger_services.entry_append(
        kind=LedgerEntry.Kind.DOCUMENT_ISSUED,
        event_id=f"document:{number}",
        payload={
            "type": draft.type,
            "number": number,
            "organization": draft.org.id,
            "period": body["period"],
            "currency": draft.currency,
            "total_minor": total,
            "lines": len(lines),
            "checkpoint_size": cp.size,
            "digest": body["digest"],
            **({"corrects": draft.corrects.number} if draft.corrects is not None else {}),
        },
        consumer_id=draft.org.id if family == "buyer" else None,
        provider_id=draft.org.id if family == "seller" else None,
    )
    doc = Document.objects.create(
        type=draft.type,
        year=year,
        sequence=sequence,
        number=number,
        organization=draft.org,
        period_start=first,
        period_end=until,
        currency=draft.currency,
        total_minor=total,
        issued_at=now,
        checkpoint_size=cp.size,
        digest=body["digest"],
        body=body,
        corrects=draft.corrects,
        ledger_seq=entry.seq,
    )
    DocumentLine.objects.bulk_create(DocumentLine(document=doc, family=family, seq=s) for s in seqs)
    return doc
