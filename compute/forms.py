from __future__ import annotations

import uuid

from django import forms

from marketplace.models import UsageRight


class StatsJobForm(forms.Form):
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=100)
    rights = forms.ModelMultipleChoiceField(
        queryset=UsageRight.objects.none(), widget=forms.CheckboxSelectMultiple, label="Datasets (usage rights)"
    )
    column = forms.CharField(max_length=100, help_text="A numeric feature present in every chosen dataset")
    dp_epsilon = forms.FloatField(
        required=False,
        min_value=0.01,
        max_value=10,
        label="Differential privacy ε (optional)",
        help_text="Adds calibrated noise; charged to each right's privacy budget",
    )
    bound_low = forms.FloatField(required=False, label="Clip values from")
    bound_high = forms.FloatField(required=False, label="to")

    def params(self) -> dict[str, object]:
        d = self.cleaned_data
        params: dict[str, object] = {"column": d["column"]}
        if d.get("dp_epsilon"):
            params["dp_epsilon"] = d["dp_epsilon"]
            params["bounds"] = [d.get("bound_low"), d.get("bound_high")]
        return params

    def __init__(self, *args, consumer=None, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.fields["rights"].queryset = UsageRight.objects.filter(
            consumer=consumer, status=UsageRight.Status.ACTIVE
        ).select_related("dataset")
        self.fields["rights"].label_from_instance = lambda r: (
            f"{r.dataset.name} — right #{r.id}, {r.quota_left} of {r.quota_total} jobs left"
        )
        if not self.is_bound:
            self.initial.setdefault("idempotency_key", uuid.uuid4().hex)
