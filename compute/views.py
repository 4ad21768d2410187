from __future__ import annotations

import csv
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_POST

from compute import charts, services
from compute.forms import HeteroLRJobForm, HomoLRJobForm, ScoreForm, StatsJobForm
from compute.models import Job, JobParty, Message
from marketplace import accounts, selectors
from marketplace.exceptions import ServiceError
from marketplace.forms import form_errors as _form_errors
from marketplace.models import UsageRight
from marketplace.permissions import page_for


@login_required
@page_for("consumer")
def job_list(request: HttpRequest) -> HttpResponse:
    org = selectors.current_org(request.user)
    jobs = Job.objects.filter(consumer=org).prefetch_related("parties__dataset")
    return render(request, "compute/jobs.html", {"jobs": jobs})


FORMS = {"stats": StatsJobForm, "hetero_lr": HeteroLRJobForm, "homo_lr": HomoLRJobForm}
TITLES = {
    "stats": "a statistics job",
    "hetero_lr": "the joint credit model (vertical logistic regression)",
    "homo_lr": "a model across providers (horizontal logistic regression)",
}


@login_required
@page_for("consumer")
def job_new(request: HttpRequest) -> HttpResponse:
    org = selectors.current_org(request.user)
    algorithm = request.POST.get("algorithm") or request.GET.get("algorithm") or "stats"
    if algorithm not in FORMS:
        algorithm = "stats"
    form = FORMS[algorithm](request.POST or None, consumer=org)
    if request.method == "POST" and form.is_valid():
        try:
            job, _ = services.job_submit(
                consumer=org,
                user=request.user,
                algorithm=algorithm,
                params=form.params(),
                rights=[r.id for r in form.cleaned_data["rights"]],
                idempotency_key=form.cleaned_data["idempotency_key"],
            )
        except ServiceError as exc:
            _form_errors(
                form,
                exc,
                {
                    "bounds": "bound_low",
                    "datasets": "rights",
                    "consumer_id_column": "consumer_dataset",
                    "histogram": "histogram_edges",
                    "quantiles": "quantiles",
                    "correlation": "correlation",
                    "group_by": "group_column",
                },
            )
        else:
            return redirect("job", pk=job.id)
    context = {"form": form, "algorithm": algorithm, "title": TITLES[algorithm]}
    return render(request, f"compute/job_new_{algorithm}.html", context)


@login_required
@page_for("consumer")
def job_detail(request: HttpRequest, pk: str) -> HttpResponse:
    org = selectors.current_org(request.user)
    job = get_object_or_404(Job.objects.filter(consumer=org), pk=pk)
    parties = job.parties.select_related("node", "dataset__organization", "right")
    msgs = list(job.messages.order_by("created_at", "id"))
    context = {
        "job": job,
        "parties": parties,
        "msgs": msgs,
        "steps": _steps(msgs),
        "by_provider": _by_provider(job, parties),
        "live": job.status in ("queued", "running"),
    }
    if job.algorithm == "hetero_lr":
        context.update(_model_charts(job))
    if job.algorithm == "homo_lr":
        context.update(_fedavg_charts(job, parties))
    if job.algorithm == "stats" and "counts" in (job.outputs or {}):
        context.update(_histogram(job, parties))
    if job.algorithm == "value_preview" and job.outputs:
        context["value_chart"] = value_chart(job.outputs)
    if job.algorithm == "stats" and "groups" in (job.outputs or {}):
        counts = {g["group"]: g["count"] for g in job.outputs["groups"]}
        context["groups_chart"] = _svg(
            charts.bars(
                counts, title=f"Rows per {job.params['group_by']['column']}", y_label="rows", ident="chart-groups"
            )
        )
        names = {p.key: p.dataset.name for p in parties if p.role == "provider" and p.dataset is not None}
        context["group_rows"] = [
            {**g, "merged_names": [names.get(k, k) for k in g["merged_at"]]} for g in job.outputs["groups"]
        ]
    if job.algorithm == "stats" and "matrix" in (job.outputs or {}):
        o = job.outputs
        context["corr_chart"] = _svg(
            charts.heatmap(o["columns"], o["matrix"], title="Correlation matrix", ident="chart-correlation")
        )
        context["corr_rows"] = list(zip(o["columns"], o["matrix"], o["mean"], o["sd"], strict=True))
    return render(request, "compute/job.html", context)


def _by_provider(job: Job, parties: Any) -> list[dict[str, object]]:
    """A stats result's per-provider rows, named by dataset and provider (party keys in the outputs)."""
    by_party = (job.outputs or {}).get("by_party") if job.algorithm == "stats" else None
    if not isinstance(by_party, dict):
        return []
    named = {p.key: p for p in parties if p.role == "provider" and p.dataset is not None}
    return [
        {"dataset": named[k].dataset.name, "provider": named[k].dataset.organization.name, **v}
        for k, v in sorted(by_party.items())
        if k in named
    ]


def _steps(msgs: list[Message]) -> list[dict[str, object]]:
    """Progress by step, from the job's signed messages: each step the hub asked, on which
    nodes, how many of its requests were answered (and refused)."""
    steps: dict[str, dict[str, object]] = {}
    answered = {m.in_reply_to for m in msgs if m.direction == Message.Direction.IN and m.in_reply_to}
    refused = {m.in_reply_to for m in msgs if m.direction == Message.Direction.IN and m.refused_code}
    for m in msgs:
        if m.direction != Message.Direction.OUT:
            continue
        s = steps.setdefault(m.step, {"step": m.step, "nodes": [], "asked": 0, "answered": 0, "refused": 0})
        if m.recipient not in s["nodes"]:  # type: ignore[operator]
            s["nodes"].append(m.recipient)  # type: ignore[attr-defined]
        s["asked"] += 1  # type: ignore[operator]
        s["answered"] += m.digest in answered  # type: ignore[operator]
        s["refused"] += m.digest in refused  # type: ignore[operator]
    for s in steps.values():
        s["waiting"] = s["answered"] < s["asked"]  # type: ignore[operator]
    return list(steps.values())


def _svg(markup: str) -> SafeString:
    return mark_safe(markup)  # noqa: S308 - compute.charts escapes every label it draws


def _model_charts(job: Job) -> dict[str, object]:
    """Progress and, once trained, the loss curve, the ROC curves and the lift, as inline SVG."""
    history = (job.outputs or {}).get("history") or job.state.get("history") or []
    out: dict[str, object] = {"epochs_done": len(history), "epochs_total": job.params.get("epochs")}
    if history:
        loss = {
            "train": [h["train"]["log_loss"] for h in history],
            "validation": [h["validation"]["log_loss"] for h in history],
        }
        out["loss_chart"] = _svg(
            charts.lines(loss, title="Log-loss per epoch", x_label="epoch", y_label="log-loss", ident="chart-loss")
        )
        out["last_loss"] = history[-1]["validation"]["log_loss"]
    o = job.outputs or {}
    if "roc" in o:
        curves = {"joint model": o["roc"], "your data only": o["own_data_only"]["roc"]}
        out["roc_chart"] = _svg(charts.roc(curves, title="ROC on the validation rows", ident="chart-roc"))
        names = dict(job.parties.filter(role="provider").values_list("key", "dataset__name"))
        lift = {"your data only": o["own_data_only"]["validation"]["auc"], "joint model": o["validation"]["auc"]}
        out["lift_chart"] = _svg(
            charts.bars(lift, title="Validation AUC", y_label="AUC", ident="chart-lift", y_min=0.5)
        )
        added = {names.get(k, k): v["auc_added"] for k, v in o.get("contributions", {}).items()}
        out["contributions"] = [(names.get(k, k), v) for k, v in o.get("contributions", {}).items()]
        if added:
            out["contrib_chart"] = _svg(
                charts.bars(
                    added,
                    title="AUC each provider adds",
                    y_label="AUC added",
                    ident="chart-contrib",
                    y_min=min(0.0, *added.values()),
                )
            )
    return out


def _histogram(job: Job, parties: Any) -> dict[str, object]:
    """A histogram's bins as a bar chart, and its per-provider counts by dataset."""
    o = job.outputs
    edges = o["edges"]
    labels = [f"[{a:g}, {b:g})" for a, b in zip(edges, edges[1:], strict=False)]
    named = {p.key: p.dataset.name for p in parties if p.role == "provider" and p.dataset is not None}
    rows = [
        (named.get(k, k), None if v.get("suppressed") else v.get("counts"))
        for k, v in sorted((o.get("by_party") or {}).items())
    ]
    return {
        "bins": list(zip(labels, o["counts"], strict=True)),
        "hist_rows": rows,
        "hist_chart": _svg(
            charts.bars(
                dict(zip(labels, o["counts"], strict=True)),
                title=f"Rows per bin of {job.params['column']}",
                y_label="rows",
                ident="chart-histogram",
                y_min=min(0, *o["counts"]),
            )
        ),  # fmt: skip
    }


def value_chart(outputs: dict[str, Any]) -> str:
    """A value preview's features ranked by information value (the dataset page shows it too)."""
    values = {f["name"]: f["iv"] for f in outputs.get("features", [])}
    return _svg(charts.hbars(values, title="Information value by feature — an estimate", ident="chart-value"))


def _fedavg_charts(job: Job, parties: Any) -> dict[str, object]:
    """Rounds so far, and the global model's log-loss and AUC per round across the providers."""
    history = (job.outputs or {}).get("history") or job.state.get("history") or []
    evaluated = [h for h in history if h.get("loss") is not None]
    names = {p.key: p.dataset.name for p in parties if p.role == "provider" and p.dataset is not None}
    out: dict[str, object] = {
        "rounds_done": min(max(0, len(history) - 1), int(job.params.get("rounds") or 0)),  # the last: evaluation
        "rounds_total": job.params.get("rounds"),
        "dropped": [(names.get(k, k), why) for k, why in sorted((job.state.get("dropped") or {}).items())],
    }
    if evaluated:
        out["fl_loss_chart"] = _svg(
            charts.lines(
                {"log-loss": [h["loss"] for h in evaluated]},
                title="Global model's log-loss per round, over all providers' rows",
                x_label="round",
                y_label="log-loss",
                ident="chart-fl-loss",
            )
        )
        aucs = [h["auc"] for h in evaluated if h.get("auc") is not None]
        if aucs:
            out["fl_auc_chart"] = _svg(
                charts.lines(
                    {"AUC (binned)": aucs},
                    title="Global model's AUC per round",
                    x_label="round",
                    y_label="AUC",
                    ident="chart-fl-auc",
                )  # fmt: skip
            )
        out["last"] = evaluated[-1]
    model = (job.outputs or {}).get("model")
    if model:
        features = job.params.get("features", [])
        out["coefficients"] = sorted(
            zip(features, model["standardised"]["weights"], model["weights"], strict=True), key=lambda t: -abs(t[1])
        )
        top = {name: round(w, 4) for name, w, _ in out["coefficients"][:10]}  # type: ignore[index]
        out["coef_chart"] = _svg(
            charts.hbars(top, title="Largest standardised coefficients (orange raises the odds)", ident="chart-fl-coef")
        )
    return out


@login_required
@require_POST
@page_for("consumer")
def job_cancel(request: HttpRequest, pk: str) -> HttpResponse:
    org = selectors.current_org(request.user)
    try:
        services.job_cancel(consumer=org, job_id=pk)
    except ServiceError as exc:
        messages.error(request, f"Not cancelled: {exc.message}")
    else:
        messages.success(request, "Job cancelled: nothing is charged.")
    return redirect("job", pk=pk)


@login_required
@require_POST
@page_for("consumer")
def preview(request: HttpRequest, pk: int) -> HttpResponse:
    org = selectors.current_org(request.user)
    try:
        job, _ = services.preview_request(
            consumer=org,
            user=request.user,
            dataset_id=pk,
            consumer_dataset_id=int(request.POST.get("consumer_dataset") or 0),
            idempotency_key=request.POST.get("idempotency_key", ""),
            kind=request.POST.get("kind", "overlap"),
        )
    except ServiceError as exc:
        detail = "; ".join(m for msgs in exc.fields.values() for m in msgs) or exc.message
        messages.error(request, f"No preview: {detail}")
        return redirect("dataset", pk=pk)
    return redirect("job", pk=job.id)


@login_required
@page_for("consumer")
def right_detail(request: HttpRequest, pk: int) -> HttpResponse:
    membership = accounts.membership_of(request.user)
    right = get_object_or_404(
        UsageRight.objects.filter(consumer=membership.organization if membership else None).select_related(
            "dataset__organization", "order"
        ),
        pk=pk,
    )
    parties = (
        JobParty.objects.filter(right=right)
        .select_related("job")
        .prefetch_related("job__parties__dataset")  # each job is named by its datasets
        .order_by("-job__created_at")
    )
    return render(request, "marketplace/right.html", {"right": right, "parties": parties})


@login_required
@page_for("consumer")
def model_list(request: HttpRequest) -> HttpResponse:
    org = selectors.current_org(request.user)
    return render(request, "compute/models.html", {"models": services.models_of(org)})


@login_required
@page_for("consumer")
def model_detail(request: HttpRequest, pk: str) -> HttpResponse:
    """A trained model: its metrics, the rights it lives under, a score form and its scoring history."""
    org = selectors.current_org(request.user)
    entry = next((m for m in services.models_of(org) if str(m["job"].id) == str(pk)), None)
    if entry is None:
        raise Http404("no such model")
    job = entry["job"]
    form = ScoreForm(request.POST or None, consumer=org)
    if request.method == "POST" and form.is_valid():
        try:
            scoring, _ = services.job_submit(
                consumer=org,
                user=request.user,
                algorithm="hetero_lr_score",
                params=form.params(str(job.id)),
                rights=[r.id for r in entry["rights"]],
                idempotency_key=form.cleaned_data["idempotency_key"],
            )
        except ServiceError as exc:
            _form_errors(form, exc)
        else:
            return redirect("job", pk=scoring.id)
    history = [
        {"job": s, "charges": services.job_charges(s)}
        for s in Job.objects.filter(consumer=org, algorithm="hetero_lr_score", params__model=str(job.id))
        .prefetch_related("parties__dataset")  # each scoring job is named by its datasets
        .order_by("-created_at")
    ]
    context = {"model": job, "rights": entry["rights"], "usable": entry["usable"], "form": form, "history": history}
    context.update(_model_charts(job))
    return render(request, "compute/model.html", context)


@login_required
@page_for("consumer")
def job_scores_csv(request: HttpRequest, pk: str) -> HttpResponse:
    """The scores of a scoring job, as CSV (id, probability)."""
    org = selectors.current_org(request.user)
    job = get_object_or_404(Job.objects.filter(consumer=org, algorithm="hetero_lr_score", status="succeeded"), pk=pk)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="scores-{job.id}.csv"'
    writer = csv.writer(response)
    writer.writerow(["id", "probability"])
    writer.writerows(job.outputs.get("scores", []))
    return response
