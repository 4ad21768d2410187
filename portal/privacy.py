"""A dataset's lifetime privacy budget: the provider's page and API (``marketplace.budget``).

The provider sees what is spent (released and reserved), what is left, and every release
that spent it, as a chart over time read from the ledger's ``dp_charge`` entries; it sets or
lifts the budget here. Only the dataset's provider reads or writes it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import DecimalField, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.safestring import SafeString, mark_safe
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from compute import charts
from ledger.models import LedgerEntry
from marketplace import accounts, budget, selectors
from marketplace.api_input import StrictSerializer
from marketplace.exceptions import Forbidden, NotFound, ServiceError
from marketplace.models import Dataset, Organization
from marketplace.permissions import IsProvider, page_for

CHARGES_SHOWN = 200
MILLI = Decimal("0.001")


def _own_dataset(org: Organization | None, pk: int) -> Dataset:
    dataset = Dataset.objects.filter(pk=pk).first()
    if dataset is None:
        raise NotFound("dataset not found")
    if org is None or dataset.organization_id != org.id:
        raise Forbidden("only the dataset's provider sees its privacy budget")
    return dataset


def budget_view(dataset: Dataset) -> dict[str, Any]:
    """Budget, spent, left and the latest releases that spent it (from the ledger), oldest first.

    Two queries whatever the history: the total released summed in SQL, the last
    ``CHARGES_SHOWN`` releases read with their running totals."""
    charges_q = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.DP_CHARGE, dataset_id=dataset.id)
    eps_text = Cast(KeyTextTransform("epsilon", "payload"), DecimalField(max_digits=20, decimal_places=6))
    total = charges_q.aggregate(total=Sum(eps_text))["total"] or Decimal(0)
    rows = list(
        charges_q.order_by("-seq").values_list("seq", "producer_time", "consumer_id", "right_id", "payload")[
            :CHARGES_SHOWN
        ]
    )[::-1]
    names = dict(Organization.objects.filter(id__in={r[2] for r in rows if r[2]}).values_list("id", "name"))
    running = total - sum((Decimal(str(r[4].get("epsilon", "0"))) for r in rows), Decimal(0))
    charges = []
    for seq, at, consumer, right, payload in rows:
        eps = Decimal(str(payload.get("epsilon", "0")))
        running += eps
        charges.append(
            {
                "seq": seq,
                "at": at,
                "consumer": names.get(consumer or 0, ""),
                "right": right,
                "job": payload.get("job"),
                "epsilon": str(eps),
                "released_total": str(running.quantize(MILLI)),
            }
        )
    return {
        "dataset": dataset.id,
        "epsilon_budget": None if dataset.epsilon_budget is None else str(dataset.epsilon_budget),
        "epsilon_spent": str(dataset.epsilon_spent),  # released + reserved by jobs still running
        "epsilon_released": str(total.quantize(MILLI)),
        "epsilon_left": None if dataset.epsilon_left is None else str(dataset.epsilon_left),
        "charges": charges[-CHARGES_SHOWN:],
    }


def budget_chart(view: dict[str, Any]) -> SafeString:
    charges = view["charges"]
    if charges:
        start, end = charges[0]["at"], charges[-1]["at"]
        span = (end - start).total_seconds() or 1.0
        points = [((c["at"] - start).total_seconds() / span, float(c["released_total"])) for c in charges]
        labels = [start.strftime("%Y-%m-%d %H:%M"), end.strftime("%Y-%m-%d %H:%M")]
    else:
        points, labels = [], []
    cap = None if view["epsilon_budget"] is None else float(view["epsilon_budget"])
    svg = charts.spending(
        points, budget=cap, title="Privacy budget spent over time", ident="chart-budget", x_labels=labels
    )
    return mark_safe(svg)  # noqa: S308 - built by compute.charts, every label escaped


@login_required
@page_for("provider")
def dataset_privacy(request: HttpRequest, pk: int) -> HttpResponse:
    org = selectors.current_org(request.user)
    dataset = _own_dataset(org, pk)
    error = None
    if request.method == "POST":
        try:
            budget.dataset_budget_set(
                provider=_admin(request), dataset_id=dataset.id, epsilon_budget=request.POST.get("epsilon_budget")
            )
        except ServiceError as exc:
            error = "; ".join(m for msgs in exc.fields.values() for m in msgs) or exc.message
        else:
            messages.success(request, "Privacy budget saved.")
            return redirect("dataset-privacy", pk=dataset.id)
        dataset.refresh_from_db()
    view = budget_view(dataset)
    return render(
        request,
        "marketplace/privacy_budget.html",
        {
            "dataset": dataset,
            "view": view,
            "chart": budget_chart(view),
            "error": error,
            "value": request.POST.get("epsilon_budget") if error else view["epsilon_budget"] or "",
        },
    )


def _admin(request: HttpRequest | Request) -> Organization:
    return accounts.require_provider_admin(request.user)


class BudgetChargeSerializer(serializers.Serializer):  # type: ignore[type-arg]
    seq = serializers.IntegerField()
    at = serializers.DateTimeField()
    consumer = serializers.CharField()
    right = serializers.IntegerField(allow_null=True)
    job = serializers.CharField(allow_null=True)
    epsilon = serializers.CharField()
    released_total = serializers.CharField()


class BudgetSerializer(serializers.Serializer):  # type: ignore[type-arg]
    dataset = serializers.IntegerField()
    epsilon_budget = serializers.CharField(allow_null=True, help_text="Lifetime ε; null: no cap beyond each right's.")
    epsilon_spent = serializers.CharField(help_text="Released plus reserved by jobs still running.")
    epsilon_released = serializers.CharField(help_text="What the ledger's dp_charge entries add up to.")
    epsilon_left = serializers.CharField(allow_null=True)
    charges = BudgetChargeSerializer(many=True)


class BudgetSetSerializer(StrictSerializer):
    epsilon_budget = serializers.DecimalField(
        max_digits=7,
        decimal_places=3,
        min_value=Decimal(0),
        max_value=budget.MAX_BUDGET,
        allow_null=True,
        coerce_to_string=False,
        help_text="Lifetime ε, a number; null lifts the cap.",
    )


class DatasetPrivacyBudget(APIView):
    """A dataset's lifetime privacy budget, shared by every buyer. Its provider only."""

    permission_classes = [permissions.IsAuthenticated, IsProvider]
    error_statuses = (404,)

    @extend_schema(responses={200: BudgetSerializer})
    def get(self, request: Request, pk: int) -> Response:
        """Show the budget, what is spent and left, and each release that spent it (from the ledger)."""
        dataset = _own_dataset(selectors.current_org(request.user), pk)
        return Response(BudgetSerializer(budget_view(dataset)).data)

    @extend_schema(request=BudgetSetSerializer, responses={200: BudgetSerializer})
    def put(self, request: Request, pk: int) -> Response:
        """Set the lifetime ε (null lifts the cap); never below what is spent. Provider admins only.

        Recorded on the ledger as ``dataset_budget_set``; the offline verifier holds every later
        ``dp_charge`` on the dataset to it."""
        _own_dataset(selectors.current_org(request.user), pk)
        s = BudgetSetSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        dataset = budget.dataset_budget_set(
            provider=_admin(request), dataset_id=pk, epsilon_budget=s.validated_data["epsilon_budget"]
        )
        return Response(BudgetSerializer(budget_view(dataset)).data)
