"""Server-rendered pages. Each view reads through selectors and writes through services."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from ledger.hubkey import hub_public_b64
from marketplace import accounts, reports, selectors, services, spending
from marketplace import rights as rights_service
from marketplace.exceptions import ServiceError
from marketplace.filters import DatasetFilter
from marketplace.forms import BudgetAlertForm, BuyForm, NodeForm, OfferForm, ReportForm, form_errors
from marketplace.models import Dataset, Node, Offer, Order, Organization, UsageRight
from marketplace.money import CURRENCIES, Money
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
    return _statement_page(request, side="consumer")


@login_required
@page_for("provider")
def revenue(request: HttpRequest) -> HttpResponse:
    return _statement_page(request, side="provider")


@login_required
@require_POST
@page_for("consumer")
def budget_alert_new(request: HttpRequest) -> HttpResponse:
    form = BudgetAlertForm(request.POST)
    org = selectors.current_org(request.user)
    if form.is_valid():
        try:
            alert = spending.alert_set(
                organization=org,  # type: ignore[arg-type]
                user=request.user,  # type: ignore[arg-type]
                currency=form.cleaned_data["currency"],
                limit_minor=form.cleaned_data["limit_minor"],
                email=form.cleaned_data["email"],
            )
        except ServiceError as exc:
            form_errors(form, exc, rename={"limit_minor": "limit"})
        else:
            limit = Money(alert.limit_minor, alert.currency).format()
            fired = " It has already been reached this month: an email is on its way." if alert.notified_period else ""
            messages.success(request, f"Budget alert set: {limit} a month, to {alert.email}.{fired}")
            return redirect("bill")
    return _statement_page(request, side="consumer", alert_form=form, status=400)


@login_required
@require_POST
@page_for("consumer")
def budget_alert_delete(request: HttpRequest, pk: int) -> HttpResponse:
    spending.alert_delete(organization=selectors.current_org(request.user), alert_id=pk)  # type: ignore[arg-type]
    messages.success(request, "Budget alert removed.")
    return redirect("bill")


def _statement_page(
    request: HttpRequest, *, side: str, alert_form: BudgetAlertForm | None = None, status: int = 200
) -> HttpResponse:
    """The consumer's spending (``bill``) or the provider's revenue report, with its exports."""
    org = selectors.current_org(request.user)
    assert org is not None  # page_for let the request in
    label = "provider" if side == "consumer" else "consumer"
    form = ReportForm(request.GET or None, choices=selectors.report_choices(org, side=side), counterparty_label=label)
    filters = form.filters()
    wanted = request.GET.get("format")
    if wanted in ("csv", "xlsx"):
        return reports.export(org, side=side, form=wanted, filters=filters)
    build = selectors.consumer_bill if side == "consumer" else selectors.provider_revenue
    statement = build(org, **filters)
    query = request.GET.copy()
    context: dict[str, object] = {
        "statement": statement,
        "period": form,
        "csv_query": _with(query, format="csv"),
        "xlsx_query": _with(query, format="xlsx"),
        "counterparty_label": label,
    }
    if side == "consumer":
        context["orders"] = Order.objects.filter(consumer=org).select_related("offer__dataset")
        context["alerts"] = org.budget_alerts.order_by("currency")
        context["alert_form"] = alert_form or BudgetAlertForm(initial={"email": request.user.email})  # type: ignore[union-attr]
    template = "marketplace/bill.html" if side == "consumer" else "marketplace/revenue.html"
    return render(request, template, context, status=status)


def _with(query: QueryDict, **values: str) -> str:
    q = query.copy()
    for k, v in values.items():
        q[k] = v
    return q.urlencode()


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
