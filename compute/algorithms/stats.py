"""``stats``: count, sum, mean and variance of one numeric column across providers.

Secure aggregation with Paillier (additively homomorphic): the consumer's node makes
a key pair for the job and keeps the private key; each provider encrypts its partial
(count, Σx, Σx², in fixed point) under the public key; the hub multiplies ciphertexts
(adds plaintexts) without learning any; the consumer's node decrypts only the totals.
A provider refuses when its partial would cover fewer rows than the minimum group size.
"""

from __future__ import annotations

from typing import Any

from compute.algorithms.base import (
    DatasetInfo,
    JobView,
    NodeContext,
    ParamError,
    Progress,
    Send,
    StepRefused,
    StepResult,
    register,
)
from compute.protocol import paillier

NUMERIC = {"number", "integer"}
FIELDS = ("count", "sum", "sumsq")


@register
class Stats:
    name = "stats"
    operation = "stats"
    summary = "Count, sum, mean and variance of a numeric column, summed under Paillier."

    def validate(self, params: dict[str, Any], datasets: list[DatasetInfo]) -> dict[str, Any]:
        errors: dict[str, list[str]] = {}
        column = params.get("column")
        if not isinstance(column, str) or not column:
            errors["column"] = ["This field is required."]
        else:
            for ds in datasets:
                col = ds.column(column)
                if col is None:
                    errors.setdefault("column", []).append(f"dataset {ds.name!r} has no column {column!r}.")
                elif col.type not in NUMERIC or col.role == "id":
                    errors.setdefault("column", []).append(
                        f"column {column!r} of {ds.name!r} is not a numeric feature."
                    )
        unknown = set(params) - {"column", "key_bits"}
        if unknown:
            errors["params"] = [f"unknown parameter(s): {', '.join(sorted(unknown))}."]
        bits = params.get("key_bits", 2048)
        if bits not in (1024, 2048, 3072):
            errors["key_bits"] = ["key_bits must be 1024, 2048 or 3072."]
        if errors:
            raise ParamError(errors)
        return {"column": column, "key_bits": bits}

    # --- hub side -------------------------------------------------------------------
    def start(self, job: JobView) -> Progress:
        job.state = {"phase": "keygen", "partials": {}}
        body = {"key_bits": job.params["key_bits"]}
        return Progress(sends=[Send(job.consumer.key, "keygen", body)], percent=5)

    def on_result(self, job: JobView, step: str, party: str, body: dict[str, Any]) -> Progress:
        if step == "keygen":
            job.state["public_key"] = body["public_key"]
            job.state["phase"] = "partial"
            sends = [
                Send(
                    p.key,
                    "partial",
                    {
                        "public_key": body["public_key"],
                        "column": job.params["column"],
                        "dataset": p.dataset_local,
                    },
                )
                for p in job.providers
            ]
            return Progress(sends=sends, percent=20)
        if step == "partial":
            job.state["partials"][party] = {f: body[f] for f in FIELDS}
            done = len(job.state["partials"])
            total = len(job.providers)
            if done < total:
                return Progress(percent=20 + 60 * done // total)
            public = paillier.public_from_json(job.state["public_key"])
            partials = job.state["partials"].values()
            summed = {f: paillier.add_ciphertexts(public, [p[f] for p in partials]) for f in FIELDS}
            job.state["phase"] = "decrypt"
            return Progress(sends=[Send(job.consumer.key, "decrypt", summed)], percent=85)
        if step == "decrypt":
            job.state["phase"] = "done"
            return Progress(outputs=dict(body), percent=100)
        raise ValueError(f"stats has no step {step!r}")

    # --- node side ------------------------------------------------------------------
    def node_step(self, ctx: NodeContext, step: str, body: dict[str, Any]) -> StepResult:
        if step == "keygen":
            public, private = paillier.generate(int(body["key_bits"]))
            ctx.state_put("paillier", {"private": paillier.private_to_json(private)})
            return StepResult({"public_key": paillier.public_to_json(public)})
        if step == "partial":
            return self._partial(ctx, body)
        if step == "decrypt":
            stored = ctx.state_get("paillier")
            if not stored:
                raise StepRefused("no_key", "this node holds no private key for the job")
            private = paillier.private_from_json(stored["private"])
            count, total, sumsq = (paillier.decrypt_int(private, body[f]) for f in FIELDS)
            ctx.state_drop("paillier")
            return StepResult(summarise(count, total, sumsq))
        raise StepRefused("unknown_step", f"stats has no step {step!r}")

    def _partial(self, ctx: NodeContext, body: dict[str, Any]) -> StepResult:
        rows = ctx.load_rows(body["dataset"])
        column = body["column"]
        values: list[float] = []
        for row in rows:
            raw = row.get(column)
            if raw is None:
                raise StepRefused("no_column", f"no column {column!r} in the local dataset")
            if raw.strip() == "":
                continue  # missing values are skipped, not zero-filled
            try:
                values.append(float(raw))
            except ValueError:
                raise StepRefused("not_numeric", f"column {column!r} is not numeric") from None
        if len(values) < ctx.min_group_size:
            raise StepRefused(
                "group_too_small",
                f"{len(values)} rows is below the minimum group size {ctx.min_group_size}",
            )
        public = paillier.public_from_json(body["public_key"])
        fixed = [paillier.to_fixed(v) for v in values]
        squares = [paillier.to_fixed(v * v) for v in values]
        out = {
            "count": paillier.encrypt_int(public, len(values)),
            "sum": paillier.encrypt_int(public, sum(fixed)),
            "sumsq": paillier.encrypt_int(public, sum(squares)),
        }
        return StepResult(out, rows=len(rows))


def summarise(count: int, total_fixed: int, sumsq_fixed: int) -> dict[str, Any]:
    """Totals in fixed point → the consumer's result (plain floats are fine for outputs)."""
    scale = paillier.SCALE
    if count <= 0:
        return {"count": 0, "sum": 0.0, "mean": None, "variance": None}
    total = total_fixed / scale
    mean = total / count
    variance = max(sumsq_fixed / scale / count - mean * mean, 0.0)
    return {
        "count": count,
        "sum": round(total, 6),
        "mean": round(mean, 6),
        "variance": round(variance, 6),
    }
