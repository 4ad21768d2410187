"""The marketplace's scheduled work on the hub (Celery beat, hub queue)."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from marketplace import invoicing, spending


@shared_task(name="marketplace.tasks.documents_issue_due", ignore_result=True)
def documents_issue_due(period: str | None = None) -> int:
    """Issue the previous month's documents (or ``period``'s) for every organisation; running
    again is harmless: what is on a document already is never issued twice."""
    month = period or invoicing.previous_month(timezone.now().date())
    return len(invoicing.documents_issue(period=month))


@shared_task(name="marketplace.tasks.budget_alerts_check", ignore_result=True)
def budget_alerts_check() -> int:
    """Email each consumer whose month's spending reached a budget alert (once per month)."""
    return spending.check_all()
