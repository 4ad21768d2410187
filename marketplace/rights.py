"""The life of a usage right: reserve and settle quota, expire, revoke and refund.

Active → exhausted / expired / revoked; every change after the grant is recorded on the
ledger in the same transaction. Lock order: right (by id) → jobs → ledger head.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from ledger.services import entry_append
from marketplace import billing
from marketplace.exceptions import Conflict, Forbidden, NotFound, invalid
from marketplace.models import Organization, UsageRight
from marketplace.signals import right_revoking

Status = UsageRight.Status
TRANSITIONS: dict[str, set[str]] = {
    Status.ACTIVE: {Status.EXHAUSTED, Status.EXPIRED, Status.REVOKED},
    Status.EXHAUSTED: {Status.REVOKED, Status.EXPIRED},  # revocation still cancels pending work
    Status.EXPIRED: set(),
    Status.REVOKED: set(),
}


def right_set_status(right: UsageRight, status: str, reason: str = "") -> None:
    if status == right.status:
        return
    if status not in TRANSITIONS[right.status]:
        raise Conflict(f"a right cannot go from {right.status} to {status}")
    right.status = status
    right.status_reason = reason
    right.status_changed_at = timezone.now()


def _ids(right: UsageRight) -> dict[str, Any]:
    return {
        "dataset_id": right.dataset_id,
        "consumer_id": right.consumer_id,
        "provider_id": right.dataset.organization_id,
        "right_id": right.id,
    }


def right_expire_if_due(right: UsageRight) -> bool:
    """Expire a right whose time is up (the caller holds the row lock or a fresh copy)."""
    if right.status not in (Status.ACTIVE, Status.EXHAUSTED) or right.expires_at > timezone.now():
        return False
    with transaction.atomic():
        locked = UsageRight.objects.select_for_update().select_related("dataset").get(id=right.id)
        if locked.status not in (Status.ACTIVE, Status.EXHAUSTED):
            return False
        right_set_status(locked, Status.EXPIRED, "term ended")
        locked.save(update_fields=["status", "status_reason", "status_changed_at"])
        entry_append(
            kind="right_expired",
            event_id=f"right_expired:{locked.id}",
            payload={"right": locked.id, "expired_at": locked.expires_at.isoformat(), "quota_used": locked.quota_used},
            **_ids(locked),
        )
        right_revoking.send(sender=UsageRight, right_id=locked.id, phase="expire", reason="right expired: term ended")
    right.refresh_from_db()
    return True


def rights_expire_due() -> int:
    """Beat task body: expire every right whose term has ended."""
    due = UsageRight.objects.filter(status__in=[Status.ACTIVE, Status.EXHAUSTED], expires_at__lte=timezone.now())
    return sum(1 for right in due if right_expire_if_due(right))


def right_reserve(*, right_id: int, operation: str, consumer: Organization, epsilon: float = 0.0) -> UsageRight:
    """Reserve one job unit (and ``epsilon`` of privacy budget) on a right.

    The caller holds a transaction and reserves its rights in ascending id order.
    """
    right = UsageRight.objects.select_for_update().filter(id=right_id, consumer=consumer).first()
    if right is None:
        raise NotFound("usage right not found")
    if right.status == Status.ACTIVE and right.expires_at <= timezone.now():
        raise Conflict(f"usage right {right.id} is expired", fields={"rights": [f"Right {right.id} has expired."]})
    if right.status != Status.ACTIVE:
        raise Conflict(
            f"usage right {right.id} is {right.status}", fields={"rights": [f"Right {right.id} is {right.status}."]}
        )
    if operation not in right.operations:
        raise invalid("algorithm", f"Right {right.id} does not permit {operation!r}.")
    if right.quota_left <= 0:
        raise Conflict(
            f"usage right {right.id} has no quota left", fields={"rights": [f"Right {right.id} has no quota left."]}
        )
    if epsilon:
        eps = Decimal(str(epsilon))
        if right.epsilon_spent + eps > right.epsilon_total:
            left = right.epsilon_total - right.epsilon_spent
            raise Conflict(
                f"usage right {right.id} has privacy budget ε {left} left",
                fields={"dp_epsilon": [f"Right {right.id} has only ε = {left} of privacy budget left."]},
            )
        right.epsilon_spent += eps
    right.quota_reserved += 1
    right.save(update_fields=["quota_reserved", "epsilon_spent"])
    return right


def right_refund_epsilon(*, right_id: int, epsilon: float) -> None:
    """Give back privacy budget reserved by a job that ended before any DP release."""
    with transaction.atomic():
        right = UsageRight.objects.select_for_update().get(id=right_id)
        right.epsilon_spent = max(right.epsilon_spent - Decimal(str(epsilon)), Decimal(0))
        right.save(update_fields=["epsilon_spent"])


SETTLE_FIELDS = ["quota_reserved", "quota_used", "status", "status_reason", "status_changed_at"]


def right_settle(*, right_id: int, consumed: bool) -> UsageRight:
    """Turn one reserved unit into a used one (consumed) or give it back (released)."""
    with transaction.atomic():
        right = UsageRight.objects.select_for_update().get(id=right_id)
        right_settle_held(right, consumed=consumed)
        right.save(update_fields=SETTLE_FIELDS)
    return right


def right_settle_held(right: UsageRight, *, consumed: bool) -> None:
    """:func:`right_settle` on a right the caller holds locked and saves (``SETTLE_FIELDS``)."""
    right.quota_reserved -= 1
    if consumed:
        right.quota_used += 1
        if right.quota_used >= right.quota_total and right.status == Status.ACTIVE:
            right_set_status(right, Status.EXHAUSTED, "quota used up")


def right_revoke(*, provider: Organization, right_id: int, reason: str) -> UsageRight:
    """The provider withdraws a right: unused prepaid units are refunded, the right's
    queued and running jobs are cancelled, and both facts go on the ledger."""
    if not reason or not reason.strip():
        raise invalid("reason", "Give the reason for revoking.")
    with transaction.atomic():
        # Lock order: every right of the jobs we may cancel, ascending, before any job.
        ids = sorted(
            {right_id}.union(
                *(ids for _, ids in right_revoking.send(sender=UsageRight, right_id=right_id, phase="lock_scope"))
            )
        )
        list(UsageRight.objects.select_for_update().filter(id__in=ids).order_by("id").values_list("id", flat=True))
        right = UsageRight.objects.select_for_update().select_related("dataset", "order").filter(id=right_id).first()
        if right is None or right.dataset.organization_id != provider.id:
            raise NotFound("usage right not found") if right is None else Forbidden("not your dataset's right")
        if right.status in (Status.REVOKED, Status.EXPIRED):
            raise Conflict(f"the right is already {right.status}")
        cancelled = [
            job
            for _, jobs in right_revoking.send(
                sender=UsageRight, right_id=right.id, phase="revoke", reason=f"right revoked: {reason.strip()}"
            )
            for job in jobs
        ]
        right.refresh_from_db()
        right_set_status(right, Status.REVOKED, reason.strip())
        right.save(update_fields=["status", "status_reason", "status_changed_at"])
        plan = billing.Plan(**right.order.plan_snapshot)  # type: ignore[arg-type]
        refund = billing.refund_for_unused(plan, quota=right.quota_total, used=right.quota_used)
        entry_append(
            kind="right_revoked",
            event_id=f"right_revoked:{right.id}",
            payload={
                "right": right.id,
                "reason": reason.strip(),
                "quota_used": right.quota_used,
                "cancelled_jobs": cancelled,
            },
            **_ids(right),
        )
        if refund:
            entry_append(
                kind="refund",
                event_id=f"refund:revocation:{right.id}",
                payload={
                    "right": right.id,
                    "order": right.order_id,
                    "amount_minor": refund,
                    "currency": plan.currency,
                    "reason": "unused prepaid units after revocation",
                },
                **_ids(right),
            )
    return right


def grant_for(right: UsageRight) -> dict[str, Any]:
    """What the node is shown of a right: enough to refuse a step it does not cover."""
    dataset = right.dataset
    return {
        "right": right.id,
        "node": dataset.node.slug,
        "dataset": dataset.id,
        "dataset_local": dataset.local_name,
        "consumer": right.consumer.slug,
        "operations": right.operations,
        "expires_at": right.expires_at.isoformat(),
        "min_group_size": right.min_group_size,
    }
