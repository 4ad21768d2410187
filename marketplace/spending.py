"""Consumers' budget alerts: a monthly spending limit per currency, and the email it sends.

Spending is what the consumer's bill charges (purchases, delivered jobs' settlements,
refunds), read from the ledger for the current UTC month. An alert fires once per month:
the row is locked, the month is written on it and the email is sent in one transaction,
so two checks running at once (beat and a new alert) send one email, and a failed send
leaves the month unmarked for the next check.
"""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from marketplace import selectors
from marketplace.exceptions import NotFound, invalid
from marketplace.models import BudgetAlert, Organization
from marketplace.money import CURRENCIES, Money


def alert_set(
    *, organization: Organization, user: AbstractBaseUser, currency: str, limit_minor: int, email: str
) -> BudgetAlert:
    """Create or change the consumer's alert for ``currency`` (one per currency), then check it."""
    if not organization.is_consumer:
        raise invalid("organization", "Only a consumer organisation has a spending budget.")
    if currency not in CURRENCIES:
        raise invalid("currency", f"Unknown currency {currency!r}.")
    if type(limit_minor) is not int or limit_minor <= 0:
        raise invalid("limit_minor", "The monthly limit must be a positive whole number of minor units.")
    try:
        with transaction.atomic():
            alert, created = BudgetAlert.objects.select_for_update().get_or_create(
                organization=organization,
                currency=currency,
                defaults={"limit_minor": limit_minor, "email": email, "created_by": user},
            )
            if not created and (alert.limit_minor, alert.email) != (limit_minor, email):
                raised = limit_minor > alert.limit_minor
                alert.limit_minor, alert.email = limit_minor, email
                if raised:  # a higher limit may be reached again this month
                    alert.notified_period, alert.notified_at, alert.notified_spent_minor = "", None, None
                alert.save()
    except IntegrityError:  # another request created it first: change that one
        return alert_set(organization=organization, user=user, currency=currency, limit_minor=limit_minor, email=email)
    check(alert.id)
    alert.refresh_from_db()
    return alert


def alert_delete(*, organization: Organization, alert_id: int) -> None:
    deleted, _ = BudgetAlert.objects.filter(organization=organization, id=alert_id).delete()
    if not deleted:
        raise NotFound("No such budget alert.")


def month_spent(organization: Organization, currency: str, now: datetime) -> Money:
    """What the consumer's bill charges in ``currency`` since the start of ``now``'s UTC month."""
    first = now.date().replace(day=1)
    bill = selectors.consumer_bill(organization, since=first, until=now.date())
    return bill.totals.get(currency, Money.zero(currency))


def check(alert_id: int, now: datetime | None = None) -> bool:
    """Send the alert's email if this month's spending reached its limit and it has not fired
    this month; True if it sent one."""
    now = now or timezone.now()
    period = now.strftime("%Y-%m")
    with transaction.atomic():
        alert = BudgetAlert.objects.select_for_update().select_related("organization").filter(id=alert_id).first()
        if alert is None or alert.notified_period == period:
            return False
        spent = month_spent(alert.organization, alert.currency, now)
        if spent.minor < alert.limit_minor:
            return False
        limit = Money(alert.limit_minor, alert.currency)
        send_mail(
            subject=f"Usufruct: {alert.organization.name} has spent {spent.format()} this month",
            message=(
                f"{alert.organization.name}'s charges for {period} (UTC) have reached {spent.format()},"
                f" at or above the monthly budget of {limit.format()} set for {alert.currency}.\n\n"
                "Every charge is a signed ledger entry: see the Bill page for the lines and their proofs.\n"
                "You will not be alerted again this month unless you raise the limit."
            ),
            from_email=None,
            recipient_list=[alert.email],
        )
        alert.notified_period, alert.notified_at, alert.notified_spent_minor = period, now, spent.minor
        alert.save(update_fields=["notified_period", "notified_at", "notified_spent_minor"])
        return True


def check_all(now: datetime | None = None) -> int:
    """Check every alert not yet fired this month; the number of emails sent."""
    now = now or timezone.now()
    due = BudgetAlert.objects.exclude(notified_period=now.strftime("%Y-%m")).values_list("id", flat=True)
    return sum(check(alert_id, now) for alert_id in list(due))
