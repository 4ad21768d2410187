from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from compute import services
from compute.forms import StatsJobForm
from compute.models import Job, JobParty
from marketplace import accounts, selectors
from marketplace.exceptions import ServiceError
from marketplace.models import UsageRight


@login_required
def job_list(request: HttpRequest) -> HttpResponse:
    org = selectors.current_org(request.user)
    jobs = Job.objects.filter(consumer=org).prefetch_related("parties__dataset")
    return render(request, "compute/jobs.html", {"jobs": jobs})


@login_required
def job_new(request: HttpRequest) -> HttpResponse:
    org = selectors.current_org(request.user)
    form = StatsJobForm(request.POST or None, consumer=org)
    if request.method == "POST" and form.is_valid():
        try:
            job, _ = services.job_submit(
                consumer=org,
                user=request.user,
                algorithm="stats",
                params=form.params(),
                rights=[r.id for r in form.cleaned_data["rights"]],
                idempotency_key=form.cleaned_data["idempotency_key"],
            )
        except ServiceError as exc:
            for field, msgs in exc.fields.items():
                field = "bound_low" if field == "bounds" else field
                for msg in msgs:
                    form.add_error(field if field in form.fields else None, msg)
            if not exc.fields:
                form.add_error(None, exc.message)
        else:
            return redirect("job", pk=job.id)
    numeric: dict[str, set[str]] = {}
    for right in form.fields["rights"].queryset:
        for c in right.dataset.columns:
            if c["type"] in ("number", "integer") and c["role"] != "id":
                numeric.setdefault(c["name"], set()).add(right.dataset.name)
    return render(request, "compute/job_new.html", {"form": form, "numeric": sorted(numeric.items())})


@login_required
def job_detail(request: HttpRequest, pk: str) -> HttpResponse:
    org = selectors.current_org(request.user)
    job = get_object_or_404(Job.objects.filter(consumer=org), pk=pk)
    parties = job.parties.select_related("node", "dataset", "right")
    msgs = job.messages.order_by("created_at", "id")
    return render(
        request,
        "compute/job.html",
        {"job": job, "parties": parties, "msgs": msgs, "live": job.status in ("queued", "running")},
    )


@login_required
@require_POST
def preview(request: HttpRequest, pk: int) -> HttpResponse:
    org = selectors.current_org(request.user)
    try:
        job, _ = services.preview_request(
            consumer=org,
            user=request.user,
            dataset_id=pk,
            consumer_dataset_id=int(request.POST.get("consumer_dataset") or 0),
            idempotency_key=request.POST.get("idempotency_key", ""),
        )
    except ServiceError as exc:
        detail = "; ".join(m for msgs in exc.fields.values() for m in msgs) or exc.message
        messages.error(request, f"No preview: {detail}")
        return redirect("dataset", pk=pk)
    return redirect("job", pk=job.id)


@login_required
def right_detail(request: HttpRequest, pk: int) -> HttpResponse:
    membership = accounts.membership_of(request.user)
    right = get_object_or_404(
        UsageRight.objects.filter(consumer=membership.organization if membership else None).select_related(
            "dataset__organization", "order"
        ),
        pk=pk,
    )
    parties = JobParty.objects.filter(right=right).select_related("job").order_by("-job__created_at")
    return render(request, "marketplace/right.html", {"right": right, "parties": parties})
