"""What a consumer's own value previews of a dataset found, for the dataset page (a marketplace
template): loaded as a tag, so the marketplace app does not import compute."""

from __future__ import annotations

from typing import Any

from django import template

from compute.models import Job, JobParty
from compute.views import value_chart

register = template.Library()


@register.inclusion_tag("compute/_value_preview.html")
def last_value_preview(dataset: Any, org: Any) -> dict[str, Any]:
    """The consumer's latest value preview of ``dataset``: its ranked chart, or where it stands."""
    if org is None or not getattr(org, "is_consumer", False):
        return {"job": None}
    job = (
        Job.objects.filter(
            consumer=org,
            algorithm="value_preview",
            preview=True,
            id__in=JobParty.objects.filter(dataset=dataset).values("job_id"),
        )
        .order_by("-created_at")
        .first()
    )
    if job is None:
        return {"job": None}
    chart = value_chart(job.outputs) if job.status == Job.Status.SUCCEEDED and job.outputs else None
    return {"job": job, "chart": chart, "features": (job.outputs or {}).get("features", [])}
