"""``stats``: count, sum, mean and variance of one numeric column across providers.

Secure aggregation with Paillier (additively homomorphic, :mod:`protocol.he`): the consumer's
node makes a key pair for the job and keeps the private key; each provider encrypts its partial
(count, Σx, Σx², in fixed point) under the public key, packed into one plaintext of three slots
(a third of the key's bits each: room for any sum a dataset can have); the hub multiplies ciphertexts
(adds plaintexts) without learning any; the consumer's node decrypts the totals and,
with two or more providers, each provider's own aggregate (``by_party``). That breakdown
releases nothing a job on each dataset alone would not: every provider's node enforces the
minimum group size on its own rows, and refuses (failing the job, charging nothing) when
its partial would cover fewer rows than that.

With ``dp_epsilon`` the release is ε-differentially private: providers clip values to
the declared ``bounds``, and the hub adds discrete-Laplace noise to each encrypted
partial (ε/3 each for count, Σx, Σx², scaled to their sensitivity) before the consumer's
node decrypts; the total is the sum of the noised partials (post-processing) — so the hub
knows the noise but never the values, and the consumer sees only noisy aggregates. The ε
is charged to every provider right of the job, once: each release is of its own dataset.
"""

from __future__ import annotations

import hashlib
import secrets
from decimal import Decimal
from typing import Any

import numpy as np

from compute.algorithms.base import (
    COLUMN_SCHEMA,
    KEY_BITS_SCHEMA,
    ONE_PASS,
    DatasetInfo,
    JobView,
    NodeContext,
    ParamError,
    Progress,
    Send,
    StepRefused,
    StepResult,
    params_schema,
    register,
)
from compute.algorithms.dp import discrete_laplace
from protocol import he
from protocol.bins import MAX_BINS, edges_problem

NUMERIC = {"number", "integer"}
JOB_KEY = "usufruct/job-key/v1"  # the consumer node's signed statement of the job's Paillier key
FIELDS = ("count", "sum", "sumsq")
SCALE = 10**6  # fixed point of Σx and Σx²
HIST_SLOT = 48  # bits per count: room for any dataset's counts summed across providers, plus noise
MAX_GRID = 1000  # the grid DP quantiles are read from
MAX_CORR = 20  # columns of a correlation matrix
MAX_GROUPS = 50
OTHER = "(other)"  # every row in no reported group, and the groups a provider merged into it
CORR_SLOT = 160  # bits per moment: Σxᵢxⱼ of large values over many rows, in fixed point


def checked_job_key(job: JobView, body: dict[str, Any]) -> dict[str, Any]:
    """The hub's check of the consumer node's keygen answer: the key is the one it signed for this
    job, and as long as the job asked. Returns the signed statement, for the providers to check."""
    statement = body["key_statement"]
    claimed = statement["payload"] if isinstance(statement, dict) else None
    if claimed != {"type": JOB_KEY, "job": job.id, "public_key": body["public_key"]}:
        raise ValueError("the job key is not the one the consumer's node signed for this job")
    if he.PublicKey.from_json(body["public_key"]).bits < int(job.params["key_bits"]) - 1:
        raise ValueError("the consumer's key is shorter than the job asked for")
    return statement  # type: ignore[no-any-return]


def slot_bits(public: he.PublicKey) -> int:
    """Three slots to a plaintext: count, Σx, Σx²."""
    return (public.bits - 2) // len(FIELDS)


def _totals(public: he.PublicKey, packed: Any) -> list[int]:
    """One packed ciphertext, checked against the key."""
    cts = public.unpack(packed, 1)
    if len(cts) != 1:
        raise he.HEError("the totals are one packed ciphertext")
    return cts


@register
class Stats:
    name = "stats"
    operation = "stats"
    summary = "Count, sum, mean and variance of a numeric column, summed under Paillier."
    params_schema = params_schema(
        {
            "column": {**COLUMN_SCHEMA, "description": "A numeric feature column of every chosen dataset."},
            "key_bits": KEY_BITS_SCHEMA,
            "dp_epsilon": {
                "type": "number",
                "minimum": 0.001,
                "maximum": 10,
                "description": "Release under ε-differential privacy (at most 3 decimals); needs bounds.",
            },
            "bounds": {
                "type": "array",
                "items": {"type": "number", "minimum": -1e9, "maximum": 1e9},
                "minItems": 2,
                "maxItems": 2,
                "description": "[low, high] with low < high: values are clipped to it for a DP release.",
            },
            "histogram": {
                "type": "object",
                "properties": {
                    "edges": {
                        "type": "array",
                        "items": {"type": "number", "minimum": -1e9, "maximum": 1e9},
                        "minItems": 2,
                        "maxItems": MAX_BINS + 1,
                        "description": "Strictly increasing bin edges; bins are [e_i, e_i+1).",
                    },
                    "provider_bins": {
                        "type": "boolean",
                        "enum": [True],
                        "description": "Instead of edges: the bins each provider declares for the column.",
                    },
                },
                "additionalProperties": False,
                "description": "Counts per bin instead of count, sum, mean and variance: edges, or provider_bins.",
            },
            "group_by": {
                "type": "object",
                "properties": {
                    "column": {**COLUMN_SCHEMA, "description": "A categorical (text) column of every dataset."},
                    "groups": {
                        "type": "array",
                        "items": {"type": "string", "minLength": 1, "maxLength": 200},
                        "minItems": 1,
                        "maxItems": MAX_GROUPS,
                        "uniqueItems": True,
                        "description": "The categories to report; every other row is in (other).",
                    },
                },
                "required": ["column", "groups"],
                "additionalProperties": False,
                "description": "Count, sum and mean of ``column`` per category.",
            },
            "correlation": {
                "type": "object",
                "properties": {
                    "columns": {
                        "type": "array",
                        "items": COLUMN_SCHEMA,
                        "minItems": 2,
                        "maxItems": MAX_CORR,
                        "uniqueItems": True,
                        "description": "Numeric columns of the one dataset chosen; ``column`` is the first.",
                    }
                },
                "required": ["columns"],
                "additionalProperties": False,
                "description": "The correlation matrix of these columns over one provider's rows.",
            },
            "quantiles": {
                "type": "object",
                "properties": {
                    "probabilities": {
                        "type": "array",
                        "items": {"type": "number", "minimum": 0.0001, "maximum": 0.9999},
                        "minItems": 1,
                        "maxItems": 20,
                    },
                    "edges": {
                        "type": "array",
                        "items": {"type": "number", "minimum": -1e9, "maximum": 1e9},
                        "minItems": 2,
                        "maxItems": MAX_GRID + 1,
                        "description": "The grid the quantiles are read from (noised counts per cell).",
                    },
                },
                "required": ["probabilities", "edges"],
                "additionalProperties": False,
                "description": "Quantiles of the column, only with dp_epsilon.",
            },
        },
        ["column"],
    )
    consumer_steps = frozenset({"keygen", "decrypt"})

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
        unknown = set(params) - {
            "column", "key_bits", "dp_epsilon", "bounds", "histogram", "quantiles", "correlation", "group_by"
        }  # fmt: skip
        if unknown:
            errors["params"] = [f"unknown parameter(s): {', '.join(sorted(unknown))}."]
        bits = params.get("key_bits", 2048)
        if bits not in (1024, 2048, 3072):
            errors["key_bits"] = ["key_bits must be 1024, 2048 or 3072."]
        clean: dict[str, Any] = {"column": column, "key_bits": bits}
        if "histogram" in params:
            h = params["histogram"]
            if isinstance(h, dict) and set(h) == {"provider_bins"}:
                declared, problem = declared_bins(column, datasets, h["provider_bins"])
                if problem:
                    errors["histogram"] = [problem]
                else:
                    clean["histogram"] = {"edges": declared, "provider_bins": True}
            else:
                edges = h.get("edges") if isinstance(h, dict) else None
                problem = edges_problem(edges)
                if problem or set(h) != {"edges"}:
                    errors["histogram"] = [problem or "A histogram takes edges, or provider_bins: true."]
                else:
                    clean["histogram"] = {"edges": [float(e) for e in edges]}  # type: ignore[union-attr]
        if "group_by" in params:
            g = params["group_by"]
            groups = g.get("groups") if isinstance(g, dict) else None
            if not isinstance(g, dict) or set(g) != {"column", "groups"}:
                errors["group_by"] = ["A group-by takes a column and its groups."]
            elif (
                not isinstance(groups, list)
                or not 1 <= len(groups) <= MAX_GROUPS
                or not all(isinstance(x, str) and 0 < len(x) <= 200 for x in groups)
                or len(set(groups)) != len(groups)
                or OTHER in groups
            ):
                errors["group_by"] = [f"Give 1 to {MAX_GROUPS} different category names."]
            elif {"histogram", "quantiles", "correlation", "dp_epsilon"} & set(params):
                errors["group_by"] = ["A group-by is exact: no histogram, quantiles, correlation or dp_epsilon."]
            else:
                for ds in datasets:
                    col = ds.column(str(g["column"]))
                    if col is None or col.type in NUMERIC or col.role == "id":
                        errors.setdefault("group_by", []).append(
                            f"{ds.name!r} has no categorical column {g['column']!r}."
                        )
                clean["group_by"] = {"column": str(g["column"]), "groups": list(groups)}
        if "correlation" in params:
            c = params["correlation"]
            cols = c.get("columns") if isinstance(c, dict) else None
            if not isinstance(c, dict) or set(c) != {"columns"} or not isinstance(cols, list):
                errors["correlation"] = ["A correlation takes exactly one field, columns."]
            elif not 2 <= len(cols) <= MAX_CORR or len(set(map(str, cols))) != len(cols):
                errors["correlation"] = [f"Give 2 to {MAX_CORR} different columns."]
            elif len(datasets) != 1:
                errors["correlation"] = ["A correlation matrix is over one provider's dataset: choose one right."]
            elif {"histogram", "quantiles", "dp_epsilon"} & set(params):
                errors["correlation"] = ["A correlation matrix is exact: no histogram, quantiles or dp_epsilon."]
            else:
                for name in cols:
                    col = datasets[0].column(str(name))
                    if col is None or col.type not in NUMERIC or col.role == "id":
                        errors.setdefault("correlation", []).append(
                            f"{name!r} is not a numeric feature of {datasets[0].name!r}."
                        )  # noqa: E501
                clean["correlation"] = {"columns": [str(n) for n in cols]}
        if "quantiles" in params:
            q = params["quantiles"]
            probs = q.get("probabilities") if isinstance(q, dict) else None
            problem = edges_problem(q.get("edges") if isinstance(q, dict) else None, most=MAX_GRID)
            if "histogram" in params:
                errors["quantiles"] = ["Ask for a histogram or for quantiles, not both."]
            elif not isinstance(q, dict) or set(q) != {"probabilities", "edges"}:
                errors["quantiles"] = ["Quantiles take probabilities and edges (the grid they are read from)."]
            elif (
                not isinstance(probs, list)
                or not 1 <= len(probs) <= 20
                or not all(isinstance(p, int | float) and not isinstance(p, bool) and 0 < p < 1 for p in probs)
                or any(b <= a for a, b in zip(probs, probs[1:], strict=False))
            ):
                errors["quantiles"] = ["Give 1 to 20 increasing probabilities strictly between 0 and 1."]
            elif problem:
                errors["quantiles"] = [problem]
            elif params.get("dp_epsilon") is None:
                errors["dp_epsilon"] = ["Quantiles are released only with differential privacy: give dp_epsilon."]
            else:
                clean["quantiles"] = [float(p) for p in probs]
                clean["histogram"] = {"edges": [float(e) for e in q["edges"]]}  # the grid, counted as a histogram
        eps = params.get("dp_epsilon")
        if eps is not None:
            if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 < eps <= 10:
                errors["dp_epsilon"] = ["dp_epsilon must be a number in (0, 10]."]
            elif Decimal(str(eps)).as_tuple().exponent < -3:  # type: ignore[operator]
                # ε is accounted in thousandths (UsageRight.epsilon_*): no release may round to 0.
                errors["dp_epsilon"] = ["dp_epsilon has at most 3 decimals (at least 0.001)."]
            bounds = params.get("bounds")
            if ("histogram" in params or "quantiles" in params) and bounds is None:
                clean["dp_epsilon"] = float(eps)  # counts: one row moves one bin by one, no clipping needed
            elif "histogram" in params or "quantiles" in params:
                errors["bounds"] = ["A histogram's counts need no bounds."]
            elif (
                not isinstance(bounds, list)
                or len(bounds) != 2
                or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
                or not bounds[0] < bounds[1]
                or max(abs(b) for b in bounds) > 1e9
            ):
                errors["bounds"] = ["A DP release needs bounds [low, high] with low < high (values are clipped)."]
            else:
                clean.update(dp_epsilon=float(eps), bounds=[float(bounds[0]), float(bounds[1])])
        elif "bounds" in params:
            errors["bounds"] = ["bounds are only used with dp_epsilon."]
        if errors:
            raise ParamError(errors)
        return clean

    # --- hub side -------------------------------------------------------------------
    def privacy_epsilon(self, params: dict[str, Any]) -> float:
        """The ε a job with these parameters releases (reserved on each provider right)."""
        return float(params.get("dp_epsilon", 0.0))

    def start(self, job: JobView) -> Progress:
        job.state = {"phase": "keygen", "partials": {}}
        body = {"key_bits": job.params["key_bits"]}
        return Progress(sends=[Send(job.consumer.key, "keygen", body)], percent=5)

    def on_result(self, job: JobView, step: str, party: str, body: dict[str, Any]) -> Progress:
        # Defence in depth (the hub also accepts only replies to steps it sent): each step
        # only in its phase, only from the party it was sent to, only once.
        phase = job.state.get("phase")
        role = job.party(party).role
        expected = {"keygen": "consumer", "partial": "provider", "decrypt": "consumer"}
        if step not in expected or phase != step or role != expected[step]:
            raise ValueError(f"unexpected {step!r} from {party!r} in phase {phase!r}")
        if step == "partial" and party in job.state["partials"]:
            raise ValueError(f"{party!r} already sent its partial")
        if step == "keygen":
            statement = checked_job_key(job, body)
            job.state["public_key"] = body["public_key"]
            job.state["phase"] = "partial"
            sends = [
                Send(
                    p.key,
                    "partial",
                    {
                        "public_key": body["public_key"],
                        "key_statement": statement,  # providers encrypt only under a key the consumer signed
                        "column": job.params["column"],
                        "dataset": p.dataset_local,
                        **({"bounds": job.params["bounds"]} if "bounds" in job.params else {}),
                        **({"histogram": job.params["histogram"]} if "histogram" in job.params else {}),
                        **({"correlation": job.params["correlation"]} if "correlation" in job.params else {}),
                        **({"group_by": job.params["group_by"]} if "group_by" in job.params else {}),
                        **({"dp": True} if "dp_epsilon" in job.params else {}),
                    },
                )
                for p in job.providers
            ]
            return Progress(sends=sends, percent=20)
        if step == "partial":
            suppressed = body.get("suppressed") is True and "dp_epsilon" not in job.params
            public = he.PublicKey.from_json(job.state["public_key"], verify=False)  # checked at keygen
            field, width = _shape(job.params, public)
            slot = _slot(job.params)
            job.state["partials"][party] = (
                None if suppressed else public.pack(_packed(public, body.get(field), width, slot))
            )
            if "group_by" in job.params and not suppressed:
                merged = body.get("merged", [])
                if not isinstance(merged, list) or not set(merged) <= set(job.params["group_by"]["groups"]):
                    raise ValueError("the merged groups are not groups the job asked for")
                job.state.setdefault("merged", {})[party] = sorted(merged)
            done = len(job.state["partials"])
            total = len(job.providers)
            if done < total:
                return Progress(percent=20 + 60 * done // total)
            withheld = sorted(k for k, v in job.state["partials"].items() if v is None)
            partials = {k: v for k, v in job.state["partials"].items() if v is not None}
            if not partials:
                raise ValueError("every provider's group is below its minimum size: nothing to release")
            job.state["suppressed"] = withheld
            spent = 0.0
            if "dp_epsilon" in job.params:
                # Each provider's partial gets its own noise (its dataset, its ε); the total is
                # their sum, post-processing that spends nothing more.
                eps = job.params["dp_epsilon"]
                if "histogram" in job.params:
                    partials = {k: self._add_count_noise(public, v, eps, width) for k, v in partials.items()}
                else:
                    partials = {k: self._add_noise(public, v, eps, job.params["bounds"]) for k, v in partials.items()}
                spent = eps
                job.state["dp_released"] = True
            keys = sorted(partials)
            aggregate = public.sum_vectors([_packed(public, partials[k], width, slot) for k in keys])
            summed: dict[str, Any] = {field: public.pack(aggregate)}
            if "histogram" in job.params:
                summed["bins"] = len(job.params["histogram"]["edges"]) - 1
            if "correlation" in job.params:
                summed["columns"] = job.params["correlation"]["columns"]
            if "group_by" in job.params:
                summed["groups"] = len(job.params["group_by"]["groups"]) + 1
            if len(keys) > 1 or withheld:  # per provider too: each is what a job on that dataset alone releases
                summed["by_party"] = {k: partials[k] for k in keys}
            job.state["phase"] = "decrypt"
            job.state["partials"] = {}  # only the (noised) aggregates are kept
            return Progress(
                sends=[Send(job.consumer.key, "decrypt", summed)],
                percent=85,
                privacy_spent=spent,
                delivers=True,
                withheld=frozenset(withheld),
            )
        if step == "decrypt":
            job.state["phase"] = "done"
            outputs = dict(body)
            withheld = job.state.get("suppressed") or []
            if withheld:  # named, with nothing of theirs: below the minimum group size
                outputs["by_party"] = {**outputs.get("by_party", {}), **{k: {"suppressed": True} for k in withheld}}
            if "group_by" in job.params:
                names = [*job.params["group_by"]["groups"], OTHER]
                merged = job.state.get("merged", {})
                outputs = {
                    "groups": [
                        {**g, "group": name, "merged_at": sorted(k for k, m in merged.items() if name in m)}
                        for name, g in zip(names, outputs["groups"], strict=True)
                    ],
                    **({"by_party": outputs["by_party"]} if "by_party" in outputs else {}),
                }
            if "quantiles" in job.params:  # read from the noised counts: post-processing, no more ε
                edges = job.params["histogram"]["edges"]
                outputs = {
                    "quantiles": [
                        {"p": p, "value": quantile(outputs["counts"], edges, p)} for p in job.params["quantiles"]
                    ],
                    "edges": edges,
                }
            elif "histogram" in job.params:
                outputs["edges"] = job.params["histogram"]["edges"]
            if "dp_epsilon" in job.params and "histogram" in job.params:
                outputs["dp"] = {
                    "epsilon": job.params["dp_epsilon"],
                    "mechanism": "discrete Laplace per bin (sensitivity 1)"
                    + (", quantiles read from the noised grid" if "quantiles" in job.params else ""),
                }
            elif "dp_epsilon" in job.params:
                outputs["dp"] = {
                    "epsilon": job.params["dp_epsilon"],
                    "bounds": job.params["bounds"],
                    "mechanism": "discrete Laplace, ε/3 per total",
                }
            return Progress(outputs=outputs, percent=100)
        raise ValueError(f"stats has no step {step!r}")

    def passes(self, params: dict[str, Any], step: str) -> int:
        return ONE_PASS  # ``partial`` reads each row once

    rng: Any = secrets.SystemRandom()

    def _add_noise(self, public: he.PublicKey, packed: str, epsilon: float, bounds: list[float]) -> str:
        """Add encrypted integer noise to each total (packed, slot by slot); sensitivities in fixed point."""
        reach = max(abs(bounds[0]), abs(bounds[1]))
        sensitivity = {"count": 1, "sum": round(reach * SCALE) or 1, "sumsq": round(reach * reach * SCALE) or 1}
        noise = [discrete_laplace((epsilon / 3) / sensitivity[f], self.rng) for f in FIELDS]
        return public.pack(public.add(_totals(public, packed), public.encrypt_packed(noise, slot_bits(public))))

    def _add_count_noise(self, public: he.PublicKey, packed: str, epsilon: float, width: int) -> str:
        """Encrypted integer noise on each bin: adding or removing one row moves one count by one."""
        cts = _packed(public, packed, width)
        noise = [discrete_laplace(epsilon, self.rng) for _ in range(width)]
        return public.pack(public.add(cts, public.encrypt_packed(noise, HIST_SLOT)))

    # --- node side ------------------------------------------------------------------
    def node_step(self, ctx: NodeContext, step: str, body: dict[str, Any]) -> StepResult:
        if step == "keygen":
            private = he.PrivateKey.generate(int(body["key_bits"]))
            ctx.state_put("paillier", {"private": private.to_json()})
            public_json = private.public.to_json()
            statement = ctx.sign({"type": JOB_KEY, "job": ctx.job, "public_key": public_json})
            return StepResult({"public_key": public_json, "key_statement": statement})
        if step == "partial":
            return self._partial(ctx, body)
        if step == "decrypt":
            stored = ctx.state_get("paillier")
            if not stored:
                raise StepRefused("no_key", "this node holds no private key for the job")
            private = he.PrivateKey.from_json(stored["private"])
            bits = slot_bits(private.public)

            def totals(packed: Any) -> dict[str, Any]:
                try:
                    return summarise(*private.decrypt_packed(_totals(private.public, packed), bits, len(FIELDS)))
                except he.HEError as e:
                    raise StepRefused("bad_totals", f"the totals to decrypt are not this job's: {e}") from None

            if "groups" in body:  # a group-by: count and Σ per group, (other) last
                width = 2 * int(body["groups"])

                def totals(packed: Any) -> dict[str, Any]:  # noqa: F811 - the group-by's decoding
                    try:
                        cts = _packed(private.public, packed, width, CORR_SLOT)
                        v = private.decrypt_packed(cts, CORR_SLOT, width)
                    except (he.HEError, TypeError) as e:
                        raise StepRefused("bad_totals", f"the sums to decrypt are not this job's: {e}") from None
                    return {"groups": [group_summary(v[2 * i], v[2 * i + 1]) for i in range(width // 2)]}

                result = totals(body.get("groups_sum"))
            elif "columns" in body:  # a correlation matrix, from the provider's moments
                names = [str(c) for c in body["columns"]]
                try:
                    cts = _packed(private.public, body.get("moments"), corr_width(len(names)), CORR_SLOT)
                    moments = private.decrypt_packed(cts, CORR_SLOT, corr_width(len(names)))
                except (he.HEError, TypeError) as e:
                    raise StepRefused("bad_totals", f"the moments to decrypt are not this job's: {e}") from None
                ctx.state_drop("paillier")
                return StepResult(correlation(names, moments))
            elif "bins" in body:  # a histogram: counts per bin
                bins = int(body["bins"])

                def totals(packed: Any) -> dict[str, Any]:  # noqa: F811 - the histogram's decoding
                    public = private.public
                    try:
                        cts = _packed(public, packed, bins)
                        return {"counts": private.decrypt_packed(cts, HIST_SLOT, bins)}
                    except he.HEError as e:
                        raise StepRefused("bad_totals", f"the counts to decrypt are not this job's: {e}") from None

                result = totals(body.get("histogram"))
            else:
                result = totals(body.get("totals"))
            by_party = body.get("by_party")
            if isinstance(by_party, dict):
                result["by_party"] = {str(k): totals(v) for k, v in by_party.items()}
            ctx.state_drop("paillier")
            return StepResult(result)
        raise StepRefused("unknown_step", f"stats has no step {step!r}")

    def _partial(self, ctx: NodeContext, body: dict[str, Any]) -> StepResult:
        column = body["column"]
        # Only the column, read batch by batch: a million rows cost their values, not dicts of text.
        text = np.char.strip(np.asarray(ctx.load_columns(body["dataset"], [column])[column], dtype=str))
        read = len(text)
        try:
            values: list[float] = text[text != ""].astype(float).tolist()  # missing values skipped, not zero-filled
        except ValueError:
            raise StepRefused("not_numeric", f"column {column!r} is not numeric") from None
        if len(values) < ctx.min_group_size:
            if "bounds" in body or body.get("dp"):  # a DP release spends ε on every right: all or nothing
                raise StepRefused(
                    "group_too_small",
                    # No count in the message: a suppressed group's size is what suppression hides.
                    f"fewer rows than the minimum group size {ctx.min_group_size}",
                )
            # Suppressed: the other providers' aggregate is still delivered; this one releases
            # nothing (not even its count) and is charged nothing. The rows it read are metered.
            return StepResult({"suppressed": True}, rows=read, records=0)
        signed = ctx.consumer_statement(body.get("key_statement"), JOB_KEY)
        if signed.get("public_key") != body.get("public_key"):
            raise StepRefused("unsigned_key", "the key to encrypt under is not the one the consumer signed")
        public = he.PublicKey.from_json(signed["public_key"])
        if "group_by" in body:
            sums, merged, used = group_sums(ctx, body["dataset"], column, body["group_by"])
            try:
                ct = public.encrypt_packed(sums, CORR_SLOT)
            except he.HEError:
                raise StepRefused("value_too_large", "the values are too large to sum in fixed point") from None
            return StepResult({"groups_sum": public.pack(ct), "merged": merged}, rows=read, records=used)
        if "correlation" in body:
            names = [str(c) for c in body["correlation"]["columns"]]
            cols = ctx.load_columns(body["dataset"], names)
            x = np.empty((read, len(names)))
            for j, name in enumerate(names):
                text = np.char.strip(np.asarray(cols[name], dtype=str))
                try:
                    x[:, j] = np.where(text == "", "nan", text).astype(float)
                except ValueError:
                    raise StepRefused("not_numeric", f"column {name!r} is not numeric") from None
            x = x[~np.isnan(x).any(axis=1)]  # complete rows only
            if len(x) < ctx.min_group_size:
                raise StepRefused(
                    "group_too_small", f"fewer complete rows than the minimum group size {ctx.min_group_size}"
                )  # noqa: E501
            k = len(names)
            cross = [float((x[:, i] * x[:, j]).sum()) for i in range(k) for j in range(i, k)]
            moments = [len(x), *(round(v * SCALE) for v in x.sum(axis=0)), *(round(v * SCALE) for v in cross)]
            try:
                ct = public.encrypt_packed(moments, CORR_SLOT)
            except he.HEError:
                raise StepRefused(
                    "value_too_large", "the columns' values are too large to sum in fixed point"
                ) from None
            return StepResult({"moments": public.pack(ct)}, rows=read, records=len(x))
        if "histogram" in body:
            edges = body["histogram"].get("edges")
            counts = histogram_counts(ctx, body["dataset"], column, values, edges, dp=body.get("dp") is True)
            out = {"histogram": public.pack(public.encrypt_packed(counts, HIST_SLOT))}
            return StepResult(out, rows=read, records=len(values))
        if "bounds" in body:  # a DP release: clipping bounds each row's contribution
            low, high = body["bounds"]
            values = [min(max(v, low), high) for v in values]
        totals = [len(values), sum(round(v * SCALE) for v in values), sum(round(v * v * SCALE) for v in values)]
        out = {"totals": public.pack(public.encrypt_packed(totals, slot_bits(public)))}
        return StepResult(out, rows=read, records=len(values))


def _shape(params: dict[str, Any], public: he.PublicKey) -> tuple[str, int]:
    """What a provider's partial is called and how many values it packs."""
    if "histogram" in params:
        return "histogram", len(params["histogram"]["edges"]) - 1
    if "correlation" in params:
        return "moments", corr_width(len(params["correlation"]["columns"]))
    if "group_by" in params:
        return "groups_sum", 2 * (len(params["group_by"]["groups"]) + 1)
    return "totals", len(FIELDS)


def _slot(params: dict[str, Any]) -> int | None:
    """The slot width of a partial's packing (None: the summary's one ciphertext of three slots)."""
    if "histogram" in params:
        return HIST_SLOT
    if "correlation" in params or "group_by" in params:
        return CORR_SLOT
    return None


def corr_width(k: int) -> int:
    """n, Σxᵢ for each column and Σxᵢxⱼ for i ≤ j."""
    return 1 + k + k * (k + 1) // 2


def _packed(public: he.PublicKey, packed: Any, width: int, slot: int | None = HIST_SLOT) -> list[int]:
    """A packed partial, checked against the key: the ciphertexts ``width`` values need, no more."""
    limit = public.packed_count(width, slot) if slot else 1
    cts = public.unpack(packed, limit)
    if len(cts) != limit:
        raise he.HEError(f"expected {limit} packed ciphertext(s)")
    return cts


def declared_bins(column: Any, datasets: list[DatasetInfo], asked: Any) -> tuple[list[float], str | None]:
    """The bins every provider declares for ``column`` (the same on each), or why there are none."""
    if asked is not True:
        return [], "provider_bins is true, or left out."
    found = []
    for ds in datasets:
        c = ds.column(column) if isinstance(column, str) else None
        if c is None or not c.bins:
            return [], f"dataset {ds.name!r} declares no bins for {column!r}: give edges."
        found.append(list(c.bins))
    if not found:
        return [], "Choose a dataset."
    if any(f != found[0] for f in found[1:]):
        return [], f"the providers declare different bins for {column!r}: give edges."
    return [float(e) for e in found[0]], None


def histogram_counts(
    ctx: NodeContext, dataset: str, column: str, values: list[float], edges: Any, *, dp: bool = False
) -> list[int]:
    """Counts per bin [eᵢ, eᵢ₊₁) of this node's values, held to the differencing rule.

    The node remembers every edge it has released on this column, to anyone (consumers may
    collude). Any two releases can be subtracted, so what they can isolate is every *atom*
    between consecutive edges of the union, including below the first and above the last (the
    column's count is released too). A histogram is answered only if every atom of the union
    with its edges holds no row or at least the minimum group size; otherwise it is refused, and
    nothing is released — so no two answers differ by a small group.
    """
    problem = edges_problem(edges, most=MAX_GRID)
    if problem:
        raise StepRefused("bad_edges", problem)
    if dp:  # a differentially private release: DP bounds what any combination of releases reveals
        idx = np.searchsorted(np.asarray(edges, dtype=float), np.asarray(values, dtype=float), side="right") - 1
        inside = (idx >= 0) & (idx < len(edges) - 1)
        return [int(c) for c in np.bincount(idx[inside], minlength=len(edges) - 1)]
    name = "edges-" + hashlib.sha256(f"{dataset}\x00{column}".encode()).hexdigest()[:32]
    released = [float(e) for e in ctx.memory_get(name).get("edges", [])]
    union = sorted({*released, *(float(e) for e in edges)})
    v = np.asarray(values, dtype=float)
    atoms = np.bincount(np.searchsorted(union, v, side="right"), minlength=len(union) + 1)
    small = int(((atoms > 0) & (atoms < ctx.min_group_size)).sum())
    if small:
        raise StepRefused(
            "differencing",
            f"with the bin edges already released on {column!r}, these would isolate {small} range(s) of fewer"
            f" rows than the minimum group size {ctx.min_group_size}: choose edges from those released",
        )
    ctx.memory_put(name, {"edges": union})
    idx = np.searchsorted(np.asarray(edges, dtype=float), v, side="right") - 1
    inside = (idx >= 0) & (idx < len(edges) - 1)
    return [int(c) for c in np.bincount(idx[inside], minlength=len(edges) - 1)]


def group_summary(count: int, total_fixed: int) -> dict[str, Any]:
    if count <= 0:
        return {"count": max(count, 0), "sum": 0.0, "mean": None}
    total = total_fixed / SCALE
    return {"count": count, "sum": round(total, 6), "mean": round(total / count, 6)}


def group_sums(
    ctx: NodeContext, dataset: str, column: str, group_by: dict[str, Any]
) -> tuple[list[int], list[str], int]:
    """[n, Σx] (fixed point) per asked group and for (other), the asked groups merged into (other), and
    the rows used.

    Small groups are protected against differencing by *complementary suppression*, decided from
    the data alone (so every query sees the same partition): the categories with fewer rows than
    the minimum group size are never reported, and, if there are any, neither is the smallest
    category that is not small — all of them are always in (other). Every reported group and
    (other) is then empty or at least the minimum group size, and no difference of two answers (nor
    of an answer and the column's total, which ``stats`` releases) isolates a small category.
    """
    cols = ctx.load_columns(dataset, [column, str(group_by["column"])])
    value = np.char.strip(np.asarray(cols[column], dtype=str))
    category = np.char.strip(np.asarray(cols[str(group_by["column"])], dtype=str))
    keep = (value != "") & (category != "")
    try:
        x = value[keep].astype(float)
    except ValueError:
        raise StepRefused("not_numeric", f"column {column!r} is not numeric") from None
    cats = category[keep]
    names, index, counts = np.unique(cats, return_inverse=True, return_counts=True)
    least = ctx.min_group_size
    if len(x) < least:
        raise StepRefused("group_too_small", f"fewer rows than the minimum group size {least}")
    small = {str(n) for n, c in zip(names, counts, strict=True) if c < least}
    hidden = set(small)
    if small:
        common = sorted((int(c), str(n)) for n, c in zip(names, counts, strict=True) if c >= least)
        if common:
            hidden.add(common[0][1])  # the complement: (other) is never a small group alone
    asked = [str(g) for g in group_by["groups"]]
    slot = {name: i for i, name in enumerate(asked) if name not in hidden}
    where = np.array([slot.get(str(n), len(asked)) for n in names], dtype=int)[index]  # row → its slot
    out: list[int] = []
    for i in range(len(asked) + 1):
        mine = x[where == i]
        out += [len(mine), sum(round(v * SCALE) for v in mine.tolist())]
    return out, sorted(set(asked) & hidden), len(x)


def correlation(names: list[str], moments: list[int]) -> dict[str, Any]:
    """Pearson correlations (and means, deviations) from n, Σxᵢ and Σxᵢxⱼ (fixed point)."""
    k = len(names)
    n = moments[0]
    sums = np.array(moments[1 : 1 + k], dtype=float) / SCALE
    cross = np.zeros((k, k))
    at = 1 + k
    for i in range(k):
        for j in range(i, k):
            cross[i, j] = cross[j, i] = moments[at] / SCALE
            at += 1
    mean = sums / n
    cov = cross / n - np.outer(mean, mean)
    sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cov / np.outer(sd, sd)
    matrix = [[None if not np.isfinite(v) else round(float(min(max(v, -1.0), 1.0)), 6) for v in row] for row in corr]
    return {
        "count": int(n),
        "columns": names,
        "matrix": matrix,
        "mean": [round(float(v), 6) for v in mean],
        "sd": [round(float(v), 6) for v in sd],
    }


def quantile(counts: list[int], edges: list[float], p: float) -> float | None:
    """The p-quantile of a (noised) histogram, linear within a bin.

    The noised counts are summed as they are (clipping each at 0 would add the positive part of
    the noise of every empty bin: a bias towards the tails); the running total is made
    non-decreasing before it is searched.
    """
    c = np.asarray(counts, dtype=float)
    total = c.sum()
    if total <= 0:
        return None
    cum = np.maximum.accumulate(np.cumsum(c))
    i = min(int(np.searchsorted(cum, p * total, side="left")), len(c) - 1)
    before = cum[i - 1] if i else 0.0
    step = cum[i] - before
    share = min(max((p * total - before) / step, 0.0), 1.0) if step > 0 else 0.0
    return round(float(edges[i] + share * (edges[i + 1] - edges[i])), 6)


def summarise(count: int, total_fixed: int, sumsq_fixed: int) -> dict[str, Any]:
    """Totals in fixed point → the consumer's result (plain floats are fine for outputs)."""
    scale = SCALE
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
