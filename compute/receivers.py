"""Compute's answers to what the marketplace announces (it never imports compute)."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from compute import services
from marketplace.signals import right_revoking


@receiver(right_revoking, dispatch_uid="compute.cancel_jobs_of_revoked_right")
def cancel_jobs_of_revoked_right(*, right_id: int, phase: str, reason: str = "", **_: Any) -> list[Any]:
    """``lock_scope``: every right of the open jobs that use it; ``revoke``: cancel them, and retire
    the models trained under the right; ``expire``: retire those models."""
    if phase == "lock_scope":
        return services.rights_of_open_jobs(right_id=right_id)
    services.models_retire_for_right(right_id=right_id, reason=reason)
    if phase == "expire":
        return []
    return services.jobs_cancel_for_right(right_id=right_id, reason=reason)
