"""Server-rendered pages. Each view reads through selectors and writes through services."""

from __future__ import annotations

import csv
from decimal import Decimal, InvalidOperation

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from ledger.hubkey import hub_public_b64
from marketplace import accounts, selectors, services
from marketplace import rights as rights_service
from marketplace.exceptions import ServiceError
from marketplace.filters import DatasetFilter
from marketplace.forms import BuyForm, NodeForm, OfferForm, PeriodForm
from marketplace.models import Dataset, Node, Offer, Order, Organization, UsageRight
from marketplace.money import CURRENCIES
from marketplace.permissions import page_for

PAGE_CURRENCY = "EUR"  # the catalog page's price filters are in this currency's units


def _price_filters(get: QueryDict) -> tuple[QueryDict, dict[str, str]]:
    """The page's prices in euros ("1.50") as the filter's minor units (150); errors by field."""
    data, errors = get.copy(), {}
    exponent = CURRENCIES[PAGE_CURRENCY]
    for page_name, filter_name in (("price_from", "price_min"), ("price_to", "price_max")):
        data.pop(filter_name, None)  # the page takes euros only
        value = (get.get(page_name) or "").strip().replace(",", ".")
        if not value:
            continue
        try:
            amount = Decimal(value)
        except InvalidOperation:
            errors[page_name] = "A price in euros, e.g. 1.50."
            continue
        minor = amount.scaleb(exponent)
        if not amount.is_finite() or amount < 0 or minor != minor.to_integral_value() or minor > 10**15:
            errors[page_name] = "A price in euros with at most two decimals, e.g. 1.50."
        else:
            data[filter_name] = str(int(minor))
    return data, errors


def catalog(request: HttpRequest) -> HttpResponse:
    data, price_errors = _price_filters(request.GET)
    filters = DatasetFilter(data or None, queryset=selectors.catalog())
    page = Paginator(filters.qs, 12).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    providers = Organization.objects.filter(is_provider=True).order_by("name")
    return render(
        request,
        "marketplace/catalog.html",
        {
            "filters": filters,
            "page": page,
            "datasets": page.object_list,
            "query": query.urlencode(),
            "providers": providers,
            "price_errors": price_errors,
            "currency": PAGE_CURRENCY,
        },
    )


def dataset_detail(request: HttpRequest, pk: int) -> HttpResponse:
    dataset = get_object_or_404(selectors.catalog(), pk=pk)
    org = selectors.current_org(request.user)
    forms_by_offer = {}
    error_offer = None
    if request.method == "POST":
        if not request.user.is_authenticated:
            return redirect(f"/login/?next={request.path}")
        form = BuyForm(request.POST)
        if form.is_valid() and org is not None:
            try:
                order, _ = services.order_place(
                    consumer=org,
                    buyer=request.user,
                    offer_id=form.cleaned_data["offer"],
                    plan_id=form.cleaned_data["plan"],
                    purpose=form.cleaned_data["purpose"],
                    accept_terms=form.cleaned_data["accept_terms"],
                    idempotency_key=form.cleaned_data["idempotency_key"],
                    again=form.cleaned_data["again"],
                )
            except ServiceError as exc:
                for field, msgs in exc.fields.items():
                    for msg in msgs:
                        form.add_error(field if field in form.fields else None, msg)
                if not exc.fields:
                    form.add_error(None, exc.message)
            else:
                messages.success(request, f"Usage right #{order.right.id} granted: {order.quota_jobs} jobs.")
                return redirect("rights")
        elif org is None:
            form.add_error(None, "Your account belongs to no organisation.")
        error_offer = form.data.get("offer")
        forms_by_offer[str(error_offer)] = form
    offers = []
    for offer in dataset.published_offers:
        form = forms_by_offer.get(str(offer.id)) or BuyForm(
            initial={"offer": offer.id, "plan": offer.plans.all()[0].id, "idempotency_key": BuyForm.fresh_key()}
        )
        offers.append({"offer": offer, "plan": offer.plans.all()[0], "form": form})
    own = org is not None and org.id == dataset.organization_id
    held = []
    if org is not None and org.is_consumer:
        held = list(
            UsageRight.objects.filter(consumer=org, dataset=dataset, status=UsageRight.Status.ACTIVE)
            .order_by("id")
            .values_list("id", flat=True)
        )
    id_columns = [c["name"] for c in dataset.columns if c["role"] == "id"]
    own_datasets = []
    if org is not None and org.is_consumer and not own:
        mine = Dataset.objects.filter(organization=org, node__status=Node.Status.ACTIVE)
        own_datasets = [d for d in mine if any(c["role"] == "id" for c in d.columns)]
    # A value preview needs the consumer's 0/1 label too.
    labelled = [d for d in own_datasets if sum(c["role"] == "label" for c in d.columns) == 1]
    return render(
        request,
        "marketplace/dataset.html",
        {
            "dataset": dataset,
            "offers": offers,
            "own": own,
            "held": held,
            "id_columns": id_columns,
            "own_datasets": own_datasets,
            "labelled_datasets": labelled,
            "value_key": BuyForm.fresh_key(),
            "provider_datasets": Dataset.objects.filter(organization=dataset.organization_id).count(),
            "provider_rights": UsageRight.objects.filter(dataset__organization=dataset.organization_id).count(),
            "preview_key": BuyForm.fresh_key(),
            "manifest_kid": dataset.manifest.get("kid"),
            "error_offer": error_offer,
        },
    )


@login_required
@page_for("consumer")
def rights(request: HttpRequest) -> HttpResponse:
    org = selectors.current_org(request.user)
    qs = UsageRight.objects.filter(consumer=org).select_related("dataset__organization", "order")
    for right in qs:
        rights_service.right_expire_if_due(right)
    return render(request, "marketplace/rights.html", {"rights": qs})


@login_required
@page_for("consumer")
def bill(request: HttpRequest) -> HttpResponse:
    return _statement_page(request, selectors.consumer_bill, "marketplace/bill.html", "bill")


@login_required
@page_for("provider")
def revenue(request: HttpRequest) -> HttpResponse:
    return _statement_page(request, selectors.provider_revenue, "marketplace/revenue.html", "revenue")


def _statement_page(request: HttpRequest, build, template: str, name: str) -> HttpResponse:  # type: ignore[no-untyped-def]
    org = selectors.current_org(request.user)
    period = PeriodForm(request.GET or None)
    since = until = None
    if period.is_valid():
        since, until = period.cleaned_data.get("since"), period.cleaned_data.get("until")
    statement = build(org, since, until) if org else None
    if request.GET.get("format") == "csv" and statement is not None:
        return _csv(statement, f"usufruct-{name}-{since or 'start'}-{until or 'now'}.csv")
    orders = Order.objects.filter(consumer=org).select_related("offer__dataset") if org else []
    query = request.GET.copy()
    query["format"] = "csv"
    return render(
        request, template, {"statement": statement, "orders": orders, "period": period, "csv_query": query.urlencode()}
    )


def _csv(statement: selectors.Statement, filename: str) -> HttpResponse:
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(
        [
            "ledger_seq",
            "integrated_at_utc",
            "kind",
            "plan",
            "dataset",
            "counterparty",
            "job",
            "right",
            "rows",
            "amount_minor",
            "currency",
            "problem",
        ]
    )
    for li in statement.lines:
        writer.writerow(
            [
                li.seq,
                li.at.isoformat(),
                li.kind,
                li.plan,
                li.dataset,
                li.counterparty,
                li.job,  # type: ignore[attr-defined]
                li.right,
                li.rows,
                li.amount.minor if li.amount else "",
                li.amount.currency if li.amount else "",
                li.problem,
            ]
        )
    return response


@login_required
@page_for("provider")
def provider_home(request: HttpRequest) -> HttpResponse:
    org = selectors.current_org(request.user)
    return render(
        request,
        "marketplace/provider.html",
        {
            "nodes": Node.objects.filter(organization=org),
            "datasets": Dataset.objects.filter(organization=org),
            "offers": Offer.objects.filter(dataset__organization=org)
            .prefetch_related("plans")
            .select_related("dataset"),
            "hub_key": hub_public_b64(),
        },
    )


@login_required
@page_for("provider")
def offer_new(request: HttpRequest) -> HttpResponse:
    org = accounts.require_provider_admin(request.user)
    form = OfferForm(request.POST or None, organization=org)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            offer = services.offer_publish(
                organization=org,
                dataset=d["dataset"],
                title=d["title"],
                operations=list(d["operations"]),
                plans=[form.plan()],
                quota_jobs=d["quota_jobs"],
                duration_days=d["duration_days"],
                min_group_size=d["min_group_size"],
                terms=d["terms"],
                epsilon=d["epsilon"],
                dp_required=d["dp_required"],
                allowed_purposes=d["purposes"],
            )
        except ServiceError as exc:
            for field, msgs in exc.fields.items():
                for msg in msgs:
                    target = {"amount_minor": "price", "overage_minor": "overage"}.get(field, field)
                    form.add_error(target if target in form.fields else None, msg)
        else:
            messages.success(request, f"Offer “{offer.title}” v{offer.version} published.")
            return redirect("dataset", pk=offer.dataset_id)
    return render(request, "marketplace/offer_new.html", {"form": form})


@login_required
@page_for("provider", "consumer")
def node_new(request: HttpRequest) -> HttpResponse:
    org = accounts.require_admin(request.user)
    form = NodeForm(request.POST or None)
    token = None
    node = None
    if request.method == "POST" and form.is_valid():
        try:
            node, token = services.node_create(organization=org, slug=form.cleaned_data["slug"])
        except ServiceError as exc:
            form.add_error("slug", exc.message)
    return render(
        request, "marketplace/node_new.html", {"form": form, "token": token, "node": node, "hub_key": hub_public_b64()}
    )


@login_required
@require_POST
@page_for("provider", "consumer")
def node_rekey(request: HttpRequest, slug: str) -> HttpResponse:
    org = accounts.require_admin(request.user)
    node, token = services.node_rekey(organization=org, slug=slug)
    return render(
        request,
        "marketplace/node_new.html",
        {"form": None, "token": token, "node": node, "hub_key": hub_public_b64(), "rekey": True},
    )


@login_required
@require_POST
@page_for("provider")
def offer_retire(request: HttpRequest, pk: int) -> HttpResponse:
    offer = services.offer_retire(organization=accounts.require_provider_admin(request.user), offer_id=pk)
    messages.success(
        request, f"Offer “{offer.title}” v{offer.version} is no longer for sale; sold rights keep their terms."
    )
    return redirect("provider")
