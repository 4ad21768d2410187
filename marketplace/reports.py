"""A bill's or revenue report's exports: CSV (one row per line) and XLSX (openpyxl).

The workbook has a summary sheet (totals, platform fee and net per currency), the
time series at the report's granularity, the rankings by dataset, counterparty, plan and
right, and every line with the ledger entry it comes from. Amounts are written as
integer minor units next to their currency (a spreadsheet adds them without rounding)
and, for people, as formatted text.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any

from django.http import HttpResponse
from openpyxl import Workbook
from openpyxl.styles import Font

from marketplace import selectors
from marketplace.models import Organization
from marketplace.money import Money
from marketplace.selectors import Statement

LINE_COLUMNS = [
    "ledger_seq",
    "integrated_at_utc",
    "kind",
    "plan",
    "dataset",
    "counterparty",
    "job",
    "right",
    "rows",
    "records",
    "amount_minor",
    "currency",
    "problem",
]

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _line_row(li) -> list[object]:  # type: ignore[no-untyped-def]
    return [
        li.seq,
        li.at.isoformat(),
        li.kind,
        li.plan,
        li.dataset,
        li.counterparty,
        li.job,
        li.right,
        li.rows,
        li.records,
        li.amount.minor if li.amount else "",
        li.amount.currency if li.amount else "",
        li.problem,
    ]


def statement_csv(statement: Statement) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(LINE_COLUMNS)
    for li in statement.lines:
        writer.writerow(_line_row(li))
    return out.getvalue()


def _bold(ws) -> None:  # type: ignore[no-untyped-def]
    for cell in ws[1]:
        cell.font = Font(bold=True)


def _amount_rows(ws, heading: str, bucket: dict[str, dict[str, Money]]) -> None:  # type: ignore[no-untyped-def]
    ws.append([heading, "amount_minor", "currency", "amount"])
    _bold(ws)
    for key, amounts in bucket.items():
        for m in amounts.values():
            ws.append([key, m.minor, m.currency, m.format()])


def statement_xlsx(
    statement: Statement,
    *,
    title: str,
    counterparty_label: str,
    since: date | None,
    until: date | None,
    provider_side: bool,
) -> bytes:
    """The report as an .xlsx workbook (bytes)."""
    wb = Workbook()
    ws = wb.active
    ws.title = "Summary"
    ws.append([title])
    ws["A1"].font = Font(bold=True, size=14)
    ws.append(["period", f"{since or 'start'} to {until or 'now'} (UTC days)"])
    ws.append(["covering checkpoint", statement.checkpoint_size or "not yet covered"])
    ws.append([])
    ws.append(["currency", "gross_minor", "gross"] + (["fee_minor", "net_minor", "net"] if provider_side else []))
    for cur, gross in statement.totals.items():
        row: list[object] = [cur, gross.minor, gross.format()]
        if provider_side:
            row += [statement.fees[cur].minor, statement.nets[cur].minor, statement.nets[cur].format()]
        ws.append(row)
    _amount_rows(wb.create_sheet(f"By {statement.group}"), statement.group, dict(sorted(statement.series.items())))
    _amount_rows(wb.create_sheet("By dataset"), "dataset", statement.by_dataset)
    _amount_rows(wb.create_sheet(f"By {counterparty_label}"), counterparty_label, statement.by_counterparty)
    _amount_rows(wb.create_sheet("By plan"), "plan", statement.by_plan)
    _amount_rows(wb.create_sheet("By right"), "right", statement.by_right)
    lines = wb.create_sheet("Lines")
    lines.append(LINE_COLUMNS)
    _bold(lines)
    for li in statement.lines:
        lines.append(_line_row(li))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def export(org: Organization, *, side: str, form: str, filters: dict[str, Any]) -> HttpResponse:
    """The consumer's spending (``side="consumer"``) or the provider's revenue as a CSV or XLSX
    download, built with the report's filters (``selectors.consumer_bill`` / ``provider_revenue``)."""
    build = selectors.consumer_bill if side == "consumer" else selectors.provider_revenue
    statement = build(org, **filters)
    name = "spending" if side == "consumer" else "revenue"
    stem = f"usufruct-{name}-{filters.get('since') or 'start'}-{filters.get('until') or 'now'}"
    if form == "csv":
        body, kind = statement_csv(statement).encode(), "text/csv"
    else:
        body = statement_xlsx(
            statement,
            title=f"{org.name}: {name}",
            counterparty_label="provider" if side == "consumer" else "consumer",
            since=filters.get("since"),
            until=filters.get("until"),
            provider_side=side == "provider",
        )
        kind = XLSX_TYPE
    response = HttpResponse(body, content_type=kind)
    response["Content-Disposition"] = f'attachment; filename="{stem}.{form}"'
    return response
