"""An issued document in its other forms: CSV (one row per line, then the totals) and PDF.

Both are rendered from the document's JSON form as issued (``Document.body``), so every form
says the same thing; the PDF with ReportLab, the numbers formatted in the currency's minor unit.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from marketplace.money import Money

TITLES = {"invoice": "Invoice", "credit_note": "Credit note", "statement": "Provider statement"}


def _money(minor: int, currency: str) -> str:
    return Money(minor, currency).format()


def totals(body: dict[str, Any]) -> list[tuple[str, int]]:
    """(label, minor units) of the document's totals, in reading order."""
    if body["type"] == "statement":
        fee = body["fee"]
        return [
            ("Gross", body["gross_minor"]),
            ("Refunds", body["refunds_minor"]),
            (f"{fee['name']} ({fee['rate_bps'] / 100:g} %)", -fee["amount_minor"]),
            ("Net payable to you", body["net_minor"]),
        ]
    tax = body["tax"]
    return [
        ("Subtotal", body["subtotal_minor"]),
        (f"{tax['name']} ({tax['rate_bps'] / 100:g} %)", tax["amount_minor"]),
        ("Total", body["total_minor"]),
    ]


CSV_FIELDS = ("number", "line", "ledger_entry", "date", "kind", "description", "dataset", "counterparty", "plan",
              "right", "job", "rows", "records", "amount_minor", "amount", "currency")  # fmt: skip


def to_csv(body: dict[str, Any]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    cur = body["currency"]
    for i, li in enumerate(body["lines"], 1):
        w.writerow([
            body["number"], i, li["seq"], li["date"], li["kind"], li["description"], li["dataset"], li["counterparty"],
            li["plan"], li["right"], li["job"], li["rows"], li["records"], li["amount_minor"],
            _money(li["amount_minor"], cur), cur,
        ])  # fmt: skip
    for label, minor in totals(body):
        w.writerow(
            [body["number"], "", "", "", "total", label, "", "", "", "", "", "", "", minor, _money(minor, cur), cur]
        )
    return out.getvalue()


def _block(title: str, party: dict[str, Any]) -> str:
    lines = [f"<b>{title}</b>", party["name"], *(party.get("address") or "").splitlines()]
    if party.get("tax_id"):
        lines.append(f"Tax ID {party['tax_id']}")
    return "<br/>".join(_escape(x) if i else x for i, x in enumerate(lines))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_pdf(body: dict[str, Any]) -> bytes:
    styles = getSampleStyleSheet()
    small = styles["BodyText"].clone("small", fontSize=8, leading=10)
    buf = io.BytesIO()
    pdf = SimpleDocTemplate(
        buf, pagesize=A4, leftMargin=16 * mm, rightMargin=16 * mm, topMargin=16 * mm, bottomMargin=16 * mm,
        title=f"{TITLES[body['type']]} {body['number']}", author=(body.get("seller") or body.get("operator"))["name"],
    )  # fmt: skip
    cur = body["currency"]
    story: list[Any] = [
        Paragraph(f"{TITLES[body['type']]} {_escape(body['number'])}", styles["Title"]),
        Paragraph(
            f"Issued {body['issued_at']} · period {body['period']['from']} to {body['period']['to']} · {cur}"
            + (f" · corrects invoice {_escape(body['corrects'])}" if body.get("corrects") else ""),
            styles["BodyText"],
        ),
        Spacer(1, 4 * mm),
    ]
    if body["type"] == "statement":
        parties = [
            [Paragraph(_block("From", body["operator"]), small), Paragraph(_block("To", body["provider"]), small)]
        ]
    else:
        parties = [
            [Paragraph(_block("Seller", body["seller"]), small), Paragraph(_block("Buyer", body["buyer"]), small)]
        ]
    story += [Table(parties, colWidths=[88 * mm, 88 * mm]), Spacer(1, 5 * mm)]
    rows: list[list[Any]] = [["#", "Entry", "Date", "Description", "Amount"]]
    for i, li in enumerate(body["lines"], 1):
        rows.append([str(i), f"#{li['seq']}", li["date"], Paragraph(_escape(li["description"]), small),
                     _money(li["amount_minor"], cur)])  # fmt: skip
    first_total = len(rows)
    for label, minor in totals(body):
        rows.append(["", "", "", label, _money(minor, cur)])
    table = Table(rows, colWidths=[8 * mm, 16 * mm, 20 * mm, 104 * mm, 30 * mm], repeatRows=1)
    table.setStyle(
        TableStyle([
            ("FONTSIZE", (0, 0), (-1, -1), 8),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef5")),
            ("ALIGN", (-1, 0), (-1, -1), "RIGHT"),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LINEABOVE", (0, first_total), (-1, first_total), 0.6, colors.black),
            ("FONTNAME", (0, len(rows) - 1), (-1, len(rows) - 1), "Helvetica-Bold"),
        ])
    )  # fmt: skip
    story += [table, Spacer(1, 6 * mm)]
    story.append(
        Paragraph(
            f"Every line is one entry of the signed ledger, with its inclusion proof in checkpoint "
            f"{body['checkpoint']['size']} (in the JSON form of this document). Check it offline: "
            f"<font face='Courier'>python -m ledger.verify {_escape(body['number'])}.json</font>. "
            f"SHA-256 of the JSON form: <font face='Courier'>{body['digest']}</font>.",
            small,
        )
    )
    pdf.build(story)
    return buf.getvalue()
