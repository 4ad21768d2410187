from __future__ import annotations

import uuid

from django import forms

from compute.algorithms import REGISTRY
from marketplace.models import Dataset
from marketplace.money import CURRENCIES


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

    @staticmethod
    def fresh_key() -> str:
        return uuid.uuid4().hex


class OfferForm(forms.Form):
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.none())
    title = forms.CharField(max_length=200)
    operations = forms.MultipleChoiceField(choices=[], widget=forms.CheckboxSelectMultiple, initial=["stats"])
    price = forms.CharField(label="Price per job", help_text="In major units, e.g. 12.50")
    currency = forms.ChoiceField(choices=[(c, c) for c in sorted(CURRENCIES)], initial="EUR")
    quota_jobs = forms.IntegerField(min_value=1, initial=10, label="Jobs included")
    duration_days = forms.IntegerField(min_value=1, initial=365, label="Duration (days)")
    min_group_size = forms.IntegerField(min_value=1, initial=10, label="Minimum group size")
    terms = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)

    def __init__(self, *args, organization=None, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.fields["dataset"].queryset = Dataset.objects.filter(organization=organization)
        self.fields["operations"].choices = sorted({(a.operation, a.operation) for a in REGISTRY.values()})

    def clean(self):  # type: ignore[no-untyped-def]
        data = super().clean()
        price, currency = data.get("price"), data.get("currency")
        if price is not None and currency:
            try:
                data["amount_minor"] = to_minor(price, currency)
            except ValueError as exc:
                self.add_error("price", str(exc))
        return data


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
