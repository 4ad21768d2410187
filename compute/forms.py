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
