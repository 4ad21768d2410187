from __future__ import annotations

import uuid
from typing import Any

from django import forms

from compute.models import Job
from marketplace.models import Dataset, UsageRight


class StatsJobForm(forms.Form):
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=100)
    rights = forms.ModelMultipleChoiceField(
        queryset=UsageRight.objects.none(), widget=forms.CheckboxSelectMultiple, label="Datasets (usage rights)"
    )
    column = forms.ChoiceField(
        choices=[], help_text="A numeric feature of each chosen dataset (grouped by dataset, from its manifest)"
    )
    dp_epsilon = forms.FloatField(
        required=False,
        min_value=0.01,
        max_value=10,
        label="Differential privacy ε (optional)",
        help_text="Adds calibrated noise; charged to each right's privacy budget",
    )
    bound_low = forms.FloatField(required=False, label="Clip values from")
    bound_high = forms.FloatField(required=False, label="to")
    histogram_edges = forms.CharField(
        required=False,
        max_length=2000,
        label="Histogram bin edges (optional)",
        help_text="e.g. 0, 12, 24, 48, 96: counts per bin [from, to) instead of the summary",
    )

    provider_bins = forms.BooleanField(
        required=False,
        label="Use the bins the providers declare for the column",
        help_text="A histogram in the providers' own bands (listed on each dataset's page), instead of edges",
    )

    quantiles = forms.CharField(
        required=False,
        max_length=400,
        label="Quantiles (optional, with ε)",
        help_text="e.g. 0.25, 0.5, 0.75: read from noised counts over the bin edges above, as a grid",
    )

    group_column = forms.ChoiceField(
        required=False, label="Group by (optional)", help_text="A categorical column of every chosen dataset"
    )
    groups = forms.CharField(
        required=False,
        max_length=2000,
        label="Groups",
        help_text="e.g. north, south, east: count, sum and mean of the column per group; every other row in (other)",
    )
    correlation = forms.BooleanField(
        required=False,
        label="Correlation matrix of all numeric features (one dataset)",
        help_text="Exact Pearson correlations of the chosen dataset's numeric features, the column first",
    )

    def clean_quantiles(self) -> list[float] | None:
        return _numbers(self.cleaned_data.get("quantiles", ""), "Give probabilities separated by commas.")

    def clean_histogram_edges(self) -> list[float] | None:
        return _numbers(self.cleaned_data.get("histogram_edges", ""), "Give numbers separated by commas.")

    def clean(self) -> dict[str, Any]:
        d = super().clean() or {}
        if d.get("provider_bins") and (d.get("histogram_edges") is not None or d.get("quantiles") is not None):
            self.add_error("provider_bins", "Either the providers' bins or your own edges, not both.")
        return d

    def params(self) -> dict[str, object]:
        d = self.cleaned_data
        params: dict[str, object] = {"column": d["column"]}
        if d.get("group_column"):
            names = [g.strip() for g in (d.get("groups") or "").split(",") if g.strip()]
            params["group_by"] = {"column": d["group_column"], "groups": names}
        if d.get("correlation"):
            rights = list(d.get("rights") or [])
            others = [c for c in numeric_features(rights[0].dataset) if c != d["column"]] if len(rights) == 1 else []
            params["correlation"] = {"columns": [d["column"], *others][:20]}
        if d.get("quantiles") is not None:
            params["quantiles"] = {"probabilities": d["quantiles"], "edges": d.get("histogram_edges") or []}
        elif d.get("provider_bins"):
            params["histogram"] = {"provider_bins": True}
        elif d.get("histogram_edges") is not None:
            params["histogram"] = {"edges": d["histogram_edges"]}
        if d.get("dp_epsilon"):
            params["dp_epsilon"] = d["dp_epsilon"]
            if d.get("bound_low") is not None or d.get("bound_high") is not None:
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
        groups = [
            (r.dataset.name, [(c, c) for c in numeric_features(r.dataset)]) for r in self.fields["rights"].queryset
        ]
        self.fields["column"].choices = [("", "Choose a column"), *[g for g in groups if g[1]]]
        categorical = [
            (
                r.dataset.name,
                [(c["name"], c["name"]) for c in r.dataset.columns if c["type"] == "string" and c["role"] == "feature"],
            )  # noqa: E501
            for r in self.fields["rights"].queryset
        ]
        self.fields["group_column"].choices = [("", "No grouping"), *[g for g in categorical if g[1]]]
        if not self.is_bound:
            self.initial.setdefault("idempotency_key", uuid.uuid4().hex)


def _numbers(text: str, message: str) -> list[float] | None:
    """Numbers a person typed, separated by commas (or semicolons); None if blank."""
    if not text.strip():
        return None
    try:
        return [float(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError:
        raise forms.ValidationError(message) from None


def numeric_features(dataset: Dataset) -> list[str]:
    """The numeric feature columns of a dataset's attested manifest (IDs and labels left out)."""
    return [c["name"] for c in dataset.columns if c["role"] == "feature" and c["type"] in ("number", "integer")]


class HeteroLRJobForm(forms.Form):
    """The joint credit model: your labelled dataset (on your node) with providers' features."""

    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=100)
    rights = forms.ModelMultipleChoiceField(
        queryset=UsageRight.objects.none(), widget=forms.CheckboxSelectMultiple, label="Providers (usage rights)"
    )
    consumer_dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.none(), label="Your labelled dataset", help_text="On your own node; never leaves it"
    )
    label_column = forms.ChoiceField(choices=[], help_text="The 0/1 outcome column of the dataset you chose")
    consumer_features = forms.MultipleChoiceField(
        choices=[],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Your own numeric features, from the dataset you chose (none: labels only)",
    )
    epochs = forms.IntegerField(initial=10)
    learning_rate = forms.FloatField(initial=0.15)
    l2 = forms.FloatField(initial=0.01, label="L2 regularisation")
    batch_size = forms.IntegerField(initial=0, help_text="0: the whole training set per step")
    key_bits = forms.TypedChoiceField(
        choices=[(1024, "1024"), (2048, "2048"), (3072, "3072")], coerce=int, initial=2048, label="Paillier key bits"
    )
    tolerance = forms.FloatField(initial=0.0001, help_text="Early stopping on the validation loss; 0 turns it off")
    validation_fraction = forms.FloatField(initial=0.2)
    alignment_job = forms.ModelChoiceField(
        queryset=Job.objects.none(),
        required=False,
        label="Rows aligned in an earlier job",
        empty_label="Align them in this job (PSI first)",
        help_text="The same dataset and the same rights as that job",
    )

    def params(self) -> dict[str, object]:
        d = self.cleaned_data
        ds: Dataset = d["consumer_dataset"]
        earlier = {"alignment_job": str(d["alignment_job"].id)} if d.get("alignment_job") else {}
        id_column = next((c["name"] for c in ds.columns if c["role"] == "id"), "")
        features = list(d.get("consumer_features") or [])
        return {
            "consumer_dataset": ds.local_name, "consumer_id_column": id_column, "label_column": d["label_column"],
            "consumer_features": features, "epochs": d["epochs"], "learning_rate": d["learning_rate"], "l2": d["l2"],
            "batch_size": d["batch_size"], "key_bits": d["key_bits"], "tolerance": d["tolerance"],
            "validation_fraction": d["validation_fraction"], **earlier,
        }  # fmt: skip

    def __init__(self, *args, consumer=None, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        aligned = Job.objects.filter(consumer=consumer, algorithm__in=["psi_align", "hetero_lr"], status="succeeded")
        self.fields["alignment_job"].queryset = aligned.order_by("-finished_at")
        self.fields["alignment_job"].label_from_instance = lambda j: (
            f"{j.algorithm} {str(j.id)[:8]}, finished {j.finished_at:%Y-%m-%d %H:%M} UTC"
        )
        active = UsageRight.objects.filter(consumer=consumer, status=UsageRight.Status.ACTIVE)
        usable = [r.id for r in active if "hetero_lr" in r.operations]  # JSON lists: filtered here, for SQLite too
        self.fields["rights"].queryset = UsageRight.objects.filter(id__in=usable).select_related("dataset")
        self.fields["rights"].label_from_instance = lambda r: f"{r.dataset.name} — right #{r.id}"
        own = Dataset.objects.filter(organization=consumer, node__status="active")
        self.fields["consumer_dataset"].queryset = own
        self.fields["consumer_dataset"].label_from_instance = lambda d: f"{d.name} ({d.local_name} on {d.node.slug})"
        # Column pickers grouped by your dataset, from its attested manifest: labels first.
        mine = list(own)
        self.fields["label_column"].choices = [
            (d.name, [(c["name"], c["name"]) for c in sorted(d.columns, key=lambda c: c["role"] != "label")
                      if c["role"] != "id"])
            for d in mine
        ]  # fmt: skip
        self.fields["consumer_features"].choices = [
            (d.name, [(c, c) for c in numeric_features(d)]) for d in mine if numeric_features(d)
        ]
        if not self.is_bound:
            self.initial.setdefault("idempotency_key", uuid.uuid4().hex)
            first = mine[0] if mine else None
            if first is not None:
                self.initial.setdefault("consumer_dataset", first.id)
                label = next((c["name"] for c in first.columns if c["role"] == "label"), "")
                self.initial.setdefault("label_column", label)
                self.initial.setdefault("consumer_features", numeric_features(first))


class HomoLRJobForm(forms.Form):
    """Horizontal learning: one model over providers' datasets that share their columns."""

    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=100)
    rights = forms.ModelMultipleChoiceField(
        queryset=UsageRight.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        label="Providers (usage rights)",
        help_text="Two or more datasets with the same columns",
    )
    features = forms.MultipleChoiceField(
        choices=[], widget=forms.CheckboxSelectMultiple, help_text="Numeric features every chosen dataset has"
    )
    label = forms.ChoiceField(choices=[], help_text="The 0/1 outcome column every chosen dataset has")
    rounds = forms.IntegerField(initial=20, min_value=1, max_value=200)
    local_epochs = forms.IntegerField(initial=2, min_value=1, max_value=50, label="Local epochs per round")
    learning_rate = forms.FloatField(initial=0.1)
    l2 = forms.FloatField(initial=0.0, label="L2 regularisation")
    batch_size = forms.IntegerField(initial=32, min_value=1)
    min_providers = forms.IntegerField(
        initial=2, min_value=2, label="Fewest providers per round", help_text="A round with fewer left fails the job"
    )
    key_bits = forms.TypedChoiceField(
        choices=[(1024, "1024"), (2048, "2048"), (3072, "3072")], coerce=int, initial=2048, label="Paillier key bits"
    )

    def params(self) -> dict[str, object]:
        d = self.cleaned_data
        names = ("features", "label", "rounds", "local_epochs", "learning_rate", "l2", "batch_size", "min_providers")
        return {**{n: d[n] for n in names}, "key_bits": d["key_bits"]}

    def __init__(self, *args, consumer=None, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        active = UsageRight.objects.filter(consumer=consumer, status=UsageRight.Status.ACTIVE)
        usable = [r.id for r in active if "homo_lr" in r.operations]  # JSON lists: filtered here, for SQLite too
        rights = list(UsageRight.objects.filter(id__in=usable).select_related("dataset").order_by("dataset__name"))
        self.fields["rights"].queryset = UsageRight.objects.filter(id__in=usable).select_related("dataset")
        self.fields["rights"].label_from_instance = lambda r: (
            f"{r.dataset.name} — right #{r.id}, {r.quota_left} of {r.quota_total} jobs left"
        )
        # Columns all the datasets you hold rights to share, in the first one's order.
        shared: list[str] = numeric_features(rights[0].dataset) if rights else []
        labels: list[str] = [c["name"] for c in rights[0].dataset.columns if c["role"] == "label"] if rights else []
        for r in rights[1:]:
            shared = [c for c in shared if c in set(numeric_features(r.dataset))]
            labels = [c for c in labels if any(x["name"] == c for x in r.dataset.columns)]
        self.fields["features"].choices = [(c, c) for c in shared]
        self.fields["label"].choices = [(c, c) for c in labels] or [("", "No shared label column")]
        if not self.is_bound:
            self.initial.setdefault("idempotency_key", uuid.uuid4().hex)
            self.initial.setdefault("rights", [r.id for r in rights])
            self.initial.setdefault("features", shared)


class ScoreForm(forms.Form):
    """Score records with a trained model: a dataset on your node, or some of its IDs."""

    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=100)
    consumer_dataset = forms.ModelChoiceField(queryset=Dataset.objects.none(), label="Records to score")
    ids = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        label="Only these IDs (optional)",
        help_text="One per line or comma-separated; they pass through the hub. Empty: every record of the dataset.",
    )
    key_bits = forms.TypedChoiceField(
        choices=[(1024, "1024"), (2048, "2048"), (3072, "3072")], coerce=int, initial=2048, label="Paillier key bits"
    )

    def params(self, model: str) -> dict[str, object]:
        d = self.cleaned_data
        ds: Dataset = d["consumer_dataset"]
        params: dict[str, object] = {
            "model": model,
            "consumer_dataset": ds.local_name,
            "consumer_id_column": next((c["name"] for c in ds.columns if c["role"] == "id"), ""),
            "key_bits": d["key_bits"],
        }
        ids = [i.strip() for i in (d.get("ids") or "").replace(",", "\n").splitlines() if i.strip()]
        if ids:
            params["ids"] = ids
        return params

    def __init__(self, *args, consumer=None, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        own = Dataset.objects.filter(organization=consumer, node__status="active")
        self.fields["consumer_dataset"].queryset = own
        self.fields["consumer_dataset"].label_from_instance = lambda d: f"{d.name} ({d.local_name} on {d.node.slug})"
        if not self.is_bound:
            self.initial.setdefault("idempotency_key", uuid.uuid4().hex)
            if own.exists():
                self.initial.setdefault("consumer_dataset", own.first().id)
