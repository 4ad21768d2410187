from __future__ import annotations

import uuid

from django import forms

from marketplace.exceptions import ServiceError
from marketplace.models import Dataset, PricePlan
from marketplace.money import CURRENCIES
from protocol.operations import OPERATIONS


def form_errors(form: forms.Form, exc: ServiceError, rename: dict[str, str] | None = None) -> None:
    """A service's field errors on the form's own fields (renamed where the form calls them otherwise)."""
    for field, msgs in exc.fields.items():
        field = (rename or {}).get(field, field)
        for msg in msgs:
            form.add_error(field if field in form.fields else None, msg)
    if not exc.fields:
        form.add_error(None, exc.message)


class BuyForm(forms.Form):
    offer = forms.IntegerField(widget=forms.HiddenInput)
    plan = forms.IntegerField(widget=forms.HiddenInput, required=False)
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=100)
    purpose = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "e.g. credit-risk model for SME loans"}),
        required=False,
        label="Declared purpose",
    )
    accept_terms = forms.BooleanField(required=False, label="I accept the terms of this offer")
    again = forms.BooleanField(required=False, label="Buy another right although I hold one on this dataset")

    @staticmethod
    def fresh_key() -> str:
        return uuid.uuid4().hex


class OfferForm(forms.Form):
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.none())
    title = forms.CharField(max_length=200)
    operations = forms.MultipleChoiceField(choices=[], widget=forms.CheckboxSelectMultiple, initial=["stats"])
    kind = forms.ChoiceField(choices=PricePlan.Kind.choices, initial="per_job", label="Price plan")
    billing = forms.ChoiceField(choices=PricePlan.Billing.choices, initial="postpaid", label="Billing")
    price = forms.CharField(
        label="Price", required=False, help_text="Per job, per 1,000 rows, per record, or per period; e.g. 12.50"
    )
    currency = forms.ChoiceField(choices=[(c, c) for c in sorted(CURRENCIES)], initial="EUR")
    included_units = forms.IntegerField(min_value=0, initial=0, required=False, label="Jobs included (subscription)")
    overage = forms.CharField(required=False, label="Price per extra job (subscription)")
    quota_jobs = forms.IntegerField(min_value=1, initial=10, label="Jobs included in the right (quota)")
    duration_days = forms.IntegerField(min_value=1, initial=365, label="Duration (days)")
    min_group_size = forms.IntegerField(min_value=1, initial=10, label="Minimum group size")
    epsilon = forms.DecimalField(min_value=0, max_value=100, decimal_places=3, initial=0, label="Privacy budget ε")
    dp_required = forms.BooleanField(
        required=False,
        label="Require differential privacy for every release",
        help_text="Jobs without ε are refused; needs a privacy budget ε above 0",
    )
    allowed_purposes = forms.CharField(required=False, help_text="Comma-separated; empty allows any declared purpose")
    terms = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)

    def __init__(self, *args, organization=None, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.fields["dataset"].queryset = Dataset.objects.filter(organization=organization)
        self.fields["operations"].choices = [(op, op) for op in sorted(OPERATIONS)]

    def clean(self):  # type: ignore[no-untyped-def]
        data = super().clean()
        currency = data.get("currency")
        if currency:
            for field, target in (("price", "amount_minor"), ("overage", "overage_minor")):
                raw = (data.get(field) or "").strip()
                try:
                    data[target] = to_minor(raw, currency) if raw else 0
                except ValueError as exc:
                    self.add_error(field, str(exc))
        data["purposes"] = [p.strip() for p in (data.get("allowed_purposes") or "").split(",") if p.strip()]
        return data

    def plan(self) -> dict[str, object]:
        d = self.cleaned_data
        return {
            "kind": d["kind"],
            "billing": d["billing"],
            "amount_minor": d.get("amount_minor", 0),
            "currency": d["currency"],
            "included_units": d.get("included_units") or 0,
            "overage_minor": d.get("overage_minor", 0),
        }


def to_minor(text: str, currency: str) -> int:
    """'12.50' EUR → 1250. Refuses negatives and more decimals than the currency has."""
    exp = CURRENCIES[currency]
    text = text.strip().replace(",", "")
    if text.startswith("-"):
        raise ValueError("Price cannot be negative.")
    whole, _, frac = text.partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        raise ValueError("Enter a price such as 12.50.")
    if len(frac) > exp:
        raise ValueError(f"{currency} has {exp} decimal places; {text} has more.")
    return int(whole) * 10**exp + int((frac or "0").ljust(exp, "0") or 0)


class NodeForm(forms.Form):
    slug = forms.SlugField(max_length=60, label="Node name", help_text="Letters, digits and dashes")


class SignupForm(forms.Form):
    username = forms.CharField(max_length=150)
    email = forms.EmailField()
    password = forms.CharField(widget=forms.PasswordInput, min_length=8)
    org_name = forms.CharField(max_length=200, label="Organisation")
    is_provider = forms.BooleanField(required=False, label="We provide data")
    is_consumer = forms.BooleanField(required=False, label="We buy usage rights")


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=[("member", "Member"), ("admin", "Admin")])


class RevokeForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=1000)


class PeriodForm(forms.Form):
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):  # type: ignore[no-untyped-def]
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("until", "The end of the period is before its start.")
        return data


class ReportForm(PeriodForm):
    """A bill's or revenue report's filters: period, dataset, counterparty, plan, and the chart's buckets."""

    group = forms.ChoiceField(
        choices=[("day", "By day"), ("week", "By week"), ("month", "By month")], required=False, label="Chart"
    )
    dataset = forms.TypedChoiceField(coerce=int, required=False, empty_value=None, label="Dataset")
    counterparty = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)
    plan = forms.ChoiceField(required=False, label="Plan")

    def __init__(self, *args, choices: dict[str, list[tuple[int, str]]], counterparty_label: str, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.fields["dataset"].choices = [("", "All datasets"), *choices["datasets"]]
        self.fields["counterparty"].choices = [("", f"All {counterparty_label}s"), *choices["counterparties"]]
        self.fields["counterparty"].label = counterparty_label.capitalize()
        self.fields["plan"].choices = [("", "All plans"), *PricePlan.Kind.choices]

    def filters(self) -> dict[str, object]:
        """The selector's keyword arguments (all None when the form is unbound or invalid)."""
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        return {
            "since": data.get("since"),
            "until": data.get("until"),
            "dataset": data.get("dataset"),
            "counterparty": data.get("counterparty"),
            "plan": data.get("plan") or None,
            "group": data.get("group") or "month",
        }


class BudgetAlertForm(forms.Form):
    """A monthly spending limit in major units ("500.00"), stored in minor units."""

    currency = forms.ChoiceField(choices=[(c, c) for c in CURRENCIES], initial="EUR")
    limit = forms.CharField(
        max_length=20, label="Monthly limit", widget=forms.TextInput(attrs={"placeholder": "500.00"})
    )
    email = forms.EmailField(label="Alert email")

    def clean(self):  # type: ignore[no-untyped-def]
        data = super().clean()
        if data.get("currency") and data.get("limit"):
            try:
                data["limit_minor"] = to_minor(data["limit"], data["currency"])
            except ValueError as exc:
                self.add_error("limit", str(exc).replace("Price", "The limit").replace("a price", "an amount"))
            else:
                if data["limit_minor"] <= 0:
                    self.add_error("limit", "The monthly limit must be more than zero.")
        return data
