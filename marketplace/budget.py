"""A dataset's lifetime privacy budget, shared by every buyer (issue 13).

A provider sets a dataset's lifetime ε. Every differentially private release on the
dataset — by any consumer, under any right, in any job or free preview — spends from it
and from the right at once: both are reserved in the transaction that admits the job
(rights in ascending id, then datasets in ascending id: the documented lock order) and
given back if the job ends before releasing anything. The release itself is one
``dp_charge`` ledger entry naming the right and the dataset; the offline verifier sums the
charges per dataset against the budget the log holds (``dataset_budget_set``).
A check constraint keeps ``epsilon_spent ≤ epsilon_budget`` whatever the code does.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction
from django.utils import timezone

from ledger.services import entry_append
from marketplace.exceptions import Conflict, Forbidden, NotFound, invalid
from marketplace.models import Dataset, Organization

MAX_BUDGET = Decimal("1000")


def parse_budget(value: Any) -> Decimal | None:
    """``None`` (no lifetime cap) or a decimal ε in [0, 1000] with at most 3 decimals."""
    if value is None or value == "":
        return None
    try:
        eps = Decimal(str(value))
    except InvalidOperation:
        eps = Decimal(-1)
    if not eps.is_finite() or not Decimal(0) <= eps <= MAX_BUDGET or eps != eps.quantize(Decimal("0.001")):
        raise invalid("epsilon_budget", "The lifetime ε must be a number between 0 and 1000 with at most 3 decimals.")
    return eps.quantize(Decimal("0.001"))


def dataset_budget_set(*, provider: Organization, dataset_id: int, epsilon_budget: Any) -> Dataset:
    """Set (or lift, with ``None``) a dataset's lifetime ε; never below what is already spent."""
    eps = parse_budget(epsilon_budget)
    with transaction.atomic():
        dataset = Dataset.objects.select_for_update().filter(id=dataset_id).first()
        if dataset is None:
            raise NotFound("dataset not found")
        if dataset.organization_id != provider.id:
            raise Forbidden("only the dataset's provider sets its privacy budget")
        if eps is not None and eps < dataset.epsilon_spent:
            raise invalid(
                "epsilon_budget",
                f"ε = {dataset.epsilon_spent} of this dataset is already spent or reserved: the budget cannot"
                " be lower.",
            )
        if eps == dataset.epsilon_budget:
            return dataset
        dataset.epsilon_budget = eps
        dataset.save(update_fields=["epsilon_budget"])
        entry_append(
            kind="dataset_budget_set",
            event_id=f"dataset_budget_set:{dataset.id}:{timezone.now().isoformat()}",
            payload={
                "dataset": dataset.id,
                "provider": provider.id,
                "epsilon_budget": None if eps is None else str(eps),
                "epsilon_spent": str(dataset.epsilon_spent),
            },
            dataset_id=dataset.id,
            provider_id=provider.id,
        )
    return dataset


def datasets_reserve(*, dataset_ids: list[int], epsilon: float, field: str | None = "dp_epsilon") -> None:
    """Reserve ``epsilon`` on each dataset's lifetime budget (ascending ids; the caller's transaction).
    ``field``: the request's parameter a refusal names (None: the refusal names none)."""
    eps = Decimal(str(epsilon))
    for dataset_id in sorted(set(dataset_ids)):
        dataset = Dataset.objects.select_for_update().get(id=dataset_id)
        if dataset.epsilon_budget is not None and dataset.epsilon_spent + eps > dataset.epsilon_budget:
            left = dataset.epsilon_budget - dataset.epsilon_spent
            raise Conflict(
                f"dataset {dataset.name!r} has spent its lifetime privacy budget (ε {left} left)",
                fields={field: [f"{dataset.name} has ε = {left} of its lifetime privacy budget left, shared by all."]}
                if field
                else None,
                code="privacy_budget_spent",
            )
        dataset.epsilon_spent += eps
        dataset.save(update_fields=["epsilon_spent"])


def datasets_refund(amounts: dict[int, Decimal]) -> None:
    """Give back ε reserved by jobs that ended before any DP release (dataset id → ε), in ascending
    dataset order: a transaction that ends several jobs locks their datasets in the one order."""
    with transaction.atomic():
        for dataset_id in sorted(amounts):
            dataset = Dataset.objects.select_for_update().get(id=dataset_id)
            dataset.epsilon_spent = max(dataset.epsilon_spent - amounts[dataset_id], Decimal(0))
            dataset.save(update_fields=["epsilon_spent"])


def refund_into(amounts: dict[int, Decimal], dataset_ids: list[int], epsilon: float) -> None:
    """Add one job's refund to ``amounts`` (applied later by :func:`datasets_refund`)."""
    for dataset_id in set(dataset_ids):
        amounts[dataset_id] = amounts.get(dataset_id, Decimal(0)) + Decimal(str(epsilon))
