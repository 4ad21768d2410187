"""Reconciliation: every issued document recomputed from the ledger, every difference named.

For each document (of a period, or all): its JSON form checked as an auditor would (digest,
proofs, signatures, amounts, totals: ``audit.invoice``); each line's entry compared with the
ledger's own row (same body, same signature); its stored columns and lines compared with its
JSON form; and, for the period, every charged entry of the organisation that is on no document
of its family although it is covered by a document's checkpoint (a charge never billed).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from audit.invoice import verify_document
from ledger import services as ledger_services
from ledger.models import LedgerEntry
from marketplace import selectors
from marketplace.invoicing import FAMILY, month_bounds
from marketplace.models import Document, DocumentLine


@dataclass(frozen=True)
class Difference:
    document: str
    what: str

    def __str__(self) -> str:
        return f"{self.document}: {self.what}"


def reconcile(period: str | None = None) -> tuple[int, list[Difference]]:
    """(documents checked, differences) for the documents whose period lies in ``period`` (YYYY-MM)."""
    docs = Document.objects.select_related("organization").order_by("type", "year", "sequence")
    first = last = None
    if period:
        first, last = month_bounds(period)
        docs = docs.filter(period_start__gte=first, period_end__lte=last)
    vkey = ledger_services.log_vkey()
    out: list[Difference] = []
    checked = 0
    for doc in docs.iterator(chunk_size=200):
        checked += 1
        out += _document(doc, vkey)
    out += _unbilled(first, last)
    return checked, out


def _document(doc: Document, vkey: str) -> list[Difference]:
    body, diffs = doc.body, []

    def diff(what: str) -> None:
        diffs.append(Difference(doc.number, what))

    try:
        result = verify_document(body, log_keys=[vkey])
        diffs += [Difference(doc.number, f) for f in result.failures]
    except ValueError as exc:
        diff(f"its JSON form is not a document: {exc}")
        return diffs
    stored = {
        "number": (doc.number, body.get("number")),
        "type": (doc.type, body.get("type")),
        "currency": (doc.currency, body.get("currency")),
        "digest": (doc.digest, body.get("digest")),
        "total": (doc.total_minor, body.get("net_minor" if doc.type == Document.Type.STATEMENT else "total_minor")),
        "organization": (doc.organization_id, body.get("party_id")),
    }
    for name, (column, issued) in stored.items():
        if column != issued:
            diff(f"its {name} is {column!r} in the database but {issued!r} as issued")
    lines = [li.get("seq") for li in body.get("lines") or []]
    recorded = sorted(DocumentLine.objects.filter(document=doc).values_list("seq", flat=True))
    if sorted(s for s in lines if isinstance(s, int)) != recorded:
        diff("the entries it charges in the database are not the lines it was issued with")
    rows = {e.seq: e for e in LedgerEntry.objects.filter(seq__in=[s for s in lines if isinstance(s, int)])}
    for li in body.get("lines") or []:
        row = rows.get(li.get("seq"))
        entry = li.get("entry") or {}
        if row is None:
            diff(f"line for entry #{li.get('seq')}: no such entry on the ledger")
        elif (row.body, row.hub_sig) != (entry.get("body"), entry.get("hub_sig")):
            diff(f"line for entry #{row.seq}: the ledger's entry differs from the one on the document")
    issued = LedgerEntry.objects.filter(seq=doc.ledger_seq, kind=LedgerEntry.Kind.DOCUMENT_ISSUED).first()
    if (
        issued is None
        or issued.payload.get("digest") != body.get("digest")
        or issued.payload.get("number") != doc.number
    ):
        diff(f"its issue is not on the ledger as entry #{doc.ledger_seq} with its digest")
    return diffs


def _unbilled(first: date | None, last: date | None) -> list[Difference]:
    """Charged entries of a period that a document's checkpoint covers but no document holds."""
    out: list[Difference] = []
    covered = Document.objects.order_by("-checkpoint_size").values_list("checkpoint_size", flat=True).first()
    if covered is None:
        return out
    seen: set[tuple[str, int]] = set()
    for doc in Document.objects.select_related("organization").order_by("id"):
        family = FAMILY[doc.type]  # type: ignore[index]
        key = (family, doc.organization_id)
        if key in seen:
            continue
        seen.add(key)
        build = selectors.consumer_bill if family == "buyer" else selectors.provider_revenue
        statement = build(doc.organization, first, last)
        on_documents = set(
            DocumentLine.objects.filter(family=family, seq__in=statement.ledger_seqs).values_list("seq", flat=True)
        )
        for li in statement.lines:
            if li.amount is not None and li.amount.minor and li.seq < covered and li.seq not in on_documents:
                out.append(
                    Difference(
                        doc.organization.name,
                        f"entry #{li.seq} ({li.kind}, {li.amount.format()}) is on no {family} document",
                    )
                )
    return out
