"""``homo_lr``: horizontal logistic regression (FedAvg) across providers that share a schema.

Each provider holds different rows of the same columns (hospitals, branches); the consumer buys
a right on each dataset and receives the global model. Secure aggregation is **packed Paillier
under the consumer's key, summed on the consumer's node over contributions each provider
signed** (docs/decisions/0018-homo-lr-secure-aggregation.md says why not pairwise masks):

1. ``fl_keygen`` (consumer's node): a fresh key pair for the job; the public key is signed.
2. ``fl_moments`` (each provider, round 0): E(n, Σy, Σxⱼ, Σxⱼ²) packed, in a statement its node
   signs for this job and round. The consumer's node sums the contributions, decrypts only the
   sum and standardises with the federation's mean and deviation.
3. ``fl_train`` (each provider, rounds 1…R): the global model in, evaluated on the provider's
   rows first (log-loss and a 100-bin histogram of its logits per label, for the round's metrics), then
   ``local_epochs`` of mini-batch SGD with L2; out E(n·w, n·b, n, Σloss, histograms) packed,
   signed. Round R + 1 evaluates the final model only (no training).
4. ``fl_aggregate`` (consumer's node): verifies every contribution's signature against the
   provider node keys the hub names, refuses fewer than ``min_providers`` distinct ones or a
   round it already decrypted, sums them (Paillier addition), decrypts the sum alone and
   returns the weighted average Σ nₖwₖ / Σ nₖ (FedAvg, McMahan et al. 2017) and the metrics.

**What each party sees.** The hub: ciphertexts under a key it does not hold, the signed
statements, and the global model of each round (it relays it, as it stores the job's
output). The consumer's node: sums over at least ``min_providers`` providers, never one
provider's update, count or histogram. A provider: the global model of each round.

**Dropout.** A provider that refuses a step (its node's policy, a group below its minimum
size, its data gone) or stays silent until the stale-job sweeper runs is dropped from the
round; the round proceeds with the others if at least ``min_providers`` remain, otherwise the
job fails. A provider that contributed to no training round is settled without a charge.
"""

from __future__ import annotations

import math
import secrets
from typing import Any

import numpy as np

from compute.algorithms import metrics
from compute.algorithms.base import (
    COLUMN_SCHEMA,
    KEY_BITS_SCHEMA,
    DatasetInfo,
    JobView,
    NodeContext,
    ParamError,
    Progress,
    Send,
    StepRefused,
    StepResult,
    key_bits_param,
    params_schema,
    refuse_unknown,
    register,
)
from compute.algorithms.hetero_lr import new_job_key, signed_job_key
from compute.algorithms.stats import checked_job_key
from protocol import envelope, he, keys

CONTRIBUTION = "usufruct/fl-contribution/v1"
SLOT = 96  # bits per packed slot: room for Σ over many providers of n·w in fixed point
FRAC = 24  # fixed point: x ↦ round(x · 2^24)
BINS = 100  # score histogram per label, for the round's AUC
REACH = 10.0  # the histogram spans logits in [-REACH, REACH]
NUMERIC = {"number", "integer"}
LIMITS = {
    "rounds": (1, 200, 20),
    "local_epochs": (1, 50, 2),
    "batch_size": (1, 100_000, 32),
}
REALS = {"learning_rate": (1e-4, 10.0, 0.1), "l2": (0.0, 100.0, 0.0)}
ALLOWED = {"features", "label", "min_providers", "key_bits", *LIMITS, *REALS}


def _fixed(values: Any) -> list[int]:
    a = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(a)):
        raise StepRefused("not_finite", "a value is not finite")
    return [int(v) for v in np.rint(np.ldexp(a, FRAC)).astype(object)]


def _unfixed(values: list[int]) -> np.ndarray:
    return np.ldexp(np.array(values, dtype=float), -FRAC)


def binned_auc(pos: list[int], neg: list[int]) -> float | None:
    """AUC from score histograms per label (ties within a bin counted half)."""
    p, n = sum(pos), sum(neg)
    if p == 0 or n == 0:
        return None
    below = 0
    area = 0.0
    for i in range(len(pos)):
        area += pos[i] * (below + neg[i] / 2)
        below += neg[i]
    return area / (p * n)


@register
class HomoLR:
    name = "homo_lr"
    operation = "homo_lr"
    summary = (
        "Horizontal logistic regression (FedAvg) across providers with the same columns; updates summed under Paillier."  # noqa: E501
    )
    consumer_steps = frozenset({"fl_keygen", "fl_aggregate"})
    params_schema = params_schema(
        {
            "features": {
                "type": "array",
                "items": COLUMN_SCHEMA,
                "minItems": 1,
                "maxItems": 200,
                "uniqueItems": True,
                "description": "Numeric feature columns every chosen dataset has.",
            },
            "label": {**COLUMN_SCHEMA, "description": "The 0/1 label column every chosen dataset has."},
            "rounds": {"type": "integer", "minimum": 1, "maximum": 200, "default": 20},
            "local_epochs": {"type": "integer", "minimum": 1, "maximum": 50, "default": 2},
            "learning_rate": {"type": "number", "minimum": 0.0001, "maximum": 10, "default": 0.1},
            "l2": {"type": "number", "minimum": 0, "maximum": 100, "default": 0},
            "batch_size": {"type": "integer", "minimum": 1, "maximum": 100000, "default": 32},
            "min_providers": {
                "type": "integer",
                "minimum": 2,
                "maximum": 100,
                "default": 2,
                "description": "Fewest providers a round may sum (a round with fewer fails the job).",
            },
            "key_bits": KEY_BITS_SCHEMA,
        },
        ["features", "label"],
    )

    def validate(self, params: dict[str, Any], datasets: list[DatasetInfo]) -> dict[str, Any]:
        errors: dict[str, list[str]] = {}
        refuse_unknown(params, ALLOWED, errors)
        features = params.get("features")
        label = params.get("label")
        if not isinstance(features, list) or not features or not all(isinstance(f, str) and f for f in features):
            errors["features"] = ["Give one or more feature columns."]
            features = []
        elif len(set(features)) != len(features):
            errors["features"] = ["A feature is named twice."]
        elif len(features) > 200:
            errors["features"] = ["At most 200 features."]
        if not isinstance(label, str) or not label:
            errors["label"] = ["This field is required."]
        elif label in features:
            errors["label"] = ["The label cannot also be a feature."]
        if len(datasets) < 2:
            errors["rights"] = ["Horizontal learning needs datasets of two or more providers."]
        for ds in datasets:
            for name in features:
                col = ds.column(name)
                if col is None or col.type not in NUMERIC or col.role == "id":
                    errors.setdefault("features", []).append(f"{ds.name!r} has no numeric feature {name!r}.")
            if isinstance(label, str) and label:
                col = ds.column(label)
                if col is None or col.type not in NUMERIC:
                    errors.setdefault("label", []).append(f"{ds.name!r} has no numeric column {label!r}.")
        clean: dict[str, Any] = {"features": features, "label": label}
        for name, (low, high, default) in LIMITS.items():
            value = params.get(name, default)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                errors[name] = [f"{name} must be a whole number in [{low}, {high}]."]
            clean[name] = value
        for name, (lo, hi, fallback) in REALS.items():
            real = params.get(name, fallback)
            if isinstance(real, bool) or not isinstance(real, int | float) or not lo <= real <= hi:
                errors[name] = [f"{name} must be a number in [{lo:g}, {hi:g}]."]
            else:
                clean[name] = float(real)
        least = params.get("min_providers", 2)
        if isinstance(least, bool) or not isinstance(least, int) or least < 2:
            errors["min_providers"] = ["min_providers must be a whole number, at least 2."]
        elif datasets and least > len(datasets):
            errors["min_providers"] = [f"min_providers is more than the {len(datasets)} datasets chosen."]
        clean["min_providers"] = least
        clean["key_bits"] = key_bits_param(params, errors)
        if errors:
            raise ParamError(errors)
        return clean

    def passes(self, params: dict[str, Any], step: str) -> int:
        """``fl_train`` evaluates the model (one pass) then trains ``local_epochs`` passes."""
        return int(params.get("local_epochs", 1)) + 1 if step == "fl_train" else 1

    def privacy_epsilon(self, params: dict[str, Any]) -> float:
        return 0.0  # no DP release: an offer that demands DP refuses this algorithm

    # --- hub side -------------------------------------------------------------------
    def start(self, job: JobView) -> Progress:
        job.state = {"phase": "keygen", "round": 0, "dropped": {}, "history": [], "trained": []}
        return Progress(sends=[Send(job.consumer.key, "fl_keygen", {"key_bits": job.params["key_bits"]})], percent=3)

    def on_result(self, job: JobView, step: str, party: str, body: dict[str, Any]) -> Progress:
        st = job.state
        role = job.party(party).role
        if step == "fl_keygen" and st["phase"] == "keygen" and role == "consumer":
            st.update(public_key=body["public_key"], key_statement=checked_job_key(job, body))
            return self._ask(job, "fl_moments", [p.key for p in job.providers], {})
        if step in ("fl_moments", "fl_train") and party in st["dropped"]:
            return Progress()  # a late answer from a provider dropped from its round: not used
        if step in ("fl_moments", "fl_train") and st["phase"] == step and role == "provider":
            if party not in st["pending"]:
                raise ValueError(f"{party!r} was not asked for round {st['round']} or already answered")
            st["contributions"][party] = self._checked(job, party, body.get("contribution"))
            st["pending"].remove(party)
            return self._maybe_aggregate(job)
        if step == "fl_aggregate" and st["phase"] == "aggregate" and role == "consumer":
            return self._aggregated(job, body)
        raise ValueError(f"homo_lr did not expect {step!r} from {party!r} in phase {st['phase']!r}")

    def on_refused(self, job: JobView, step: str, party: str, reason: str) -> Progress:
        """A provider that refuses its round drops out; the round goes on if enough remain."""
        st = job.state
        if job.party(party).role != "provider" or party not in st.get("pending", []):
            raise ValueError(reason)
        st["pending"].remove(party)
        st["dropped"][party] = f"round {st['round']}: {reason}"
        return self._maybe_aggregate(job)

    def on_stalled(self, job: JobView) -> Progress | None:
        """The stale-job sweeper: providers silent through the round are dropped from it."""
        st = job.state
        if st.get("phase") not in ("fl_moments", "fl_train") or not st.get("pending"):
            return None
        for party in st["pending"]:
            st["dropped"][party] = f"round {st['round']}: no answer"
        st["pending"] = []
        return self._maybe_aggregate(job)

    def _ask(self, job: JobView, step: str, parties: list[str], extra: dict[str, Any]) -> Progress:
        st = job.state
        st.update(phase=step, pending=list(parties), contributions={})
        common = {
            "public_key": st["public_key"],
            "key_statement": st["key_statement"],
            "features": job.params["features"],
            "label": job.params["label"],
            "round": st["round"],
            **extra,
        }
        sends = [
            Send(p, step, {**common, "party": p, "dataset": job.party(p).dataset_local}, round=st["round"])
            for p in parties
        ]
        rounds = int(job.params["rounds"]) + 1
        return Progress(sends=sends, percent=min(95, 5 + 90 * st["round"] // (rounds + 1)))

    def _checked(self, job: JobView, party: str, statement: Any) -> dict[str, Any]:
        """The hub holds a contribution to its signer, job, round and party (the consumer's node checks again)."""
        node_key = job.party(party).node_key
        try:
            public = keys.public_from_b64(str(node_key))
            opened = envelope.verify_signed(statement, lambda kid: public if kid == keys.key_id(public) else None)
        except (ValueError, envelope.EnvelopeError) as exc:
            raise ValueError(f"{party}'s contribution is not signed by its node: {exc}") from None
        want = {"type": CONTRIBUTION, "job": job.id, "round": job.state["round"], "party": party}
        if {k: opened.payload.get(k) for k in want} != want:
            raise ValueError(f"{party}'s contribution is for another job, round or party")
        he.PublicKey.from_json(job.state["public_key"], verify=False).unpack(opened.payload.get("sum"), 64)
        return statement  # type: ignore[no-any-return]

    def _maybe_aggregate(self, job: JobView) -> Progress:
        st = job.state
        if st["pending"]:
            return Progress(percent=min(95, 5 + 90 * st["round"] // (int(job.params["rounds"]) + 2)))
        least = int(job.params["min_providers"])
        if len(st["contributions"]) < least:
            dropped = "; ".join(f"{k}: {v}" for k, v in sorted(st["dropped"].items()))
            raise ValueError(
                f"round {st['round']}: {len(st['contributions'])} provider(s) answered,"
                f" fewer than min_providers {least}" + (f" (dropped: {dropped})" if dropped else "")
            )
        if st["phase"] == "fl_train" and st["round"] <= int(job.params["rounds"]):
            st["trained"] = sorted(set(st["trained"]) | set(st["contributions"]))
        body = {
            "round": st["round"],
            "kind": "moments" if st["phase"] == "fl_moments" else "train",
            "final": st["round"] == int(job.params["rounds"]) + 1,
            "features": len(job.params["features"]),
            "min_providers": least,
            "contributions": st["contributions"],
            "node_keys": {k: job.party(k).node_key for k in st["contributions"]},
        }
        st["answered"] = sorted(st["contributions"])
        st.update(phase="aggregate", contributions={})
        return Progress(sends=[Send(job.consumer.key, "fl_aggregate", body, round=st["round"])])

    def _aggregated(self, job: JobView, body: dict[str, Any]) -> Progress:
        st = job.state
        if body.get("round") != st["round"]:
            raise ValueError("the aggregate is for another round")
        model = body["model"]
        if not isinstance(model, dict) or len(model.get("weights", [])) != len(job.params["features"]):
            raise ValueError("the consumer's model does not have one weight per feature")
        st["model"] = model
        m = body.get("metrics") or {}
        st["history"].append({"round": st["round"], "providers": st.pop("answered", []), **m})
        rounds = int(job.params["rounds"])
        if st["round"] == rounds + 1:  # the final model, evaluated: the output
            st["phase"] = "done"
            silent = sorted(p.key for p in job.providers if p.key not in st["trained"])
            outputs = {
                "model": body["final_model"],
                "history": st["history"],
                "dropped": st["dropped"],
                "params": {k: job.params[k] for k in sorted(job.params) if k != "key_bits"},
            }
            return Progress(outputs=outputs, percent=100, delivers=True, withheld=frozenset(silent))
        st["round"] += 1
        alive = [p.key for p in job.providers if p.key not in st["dropped"]]
        epochs = int(job.params["local_epochs"]) if st["round"] <= rounds else 0
        extra = {
            "model": model,
            "epochs": epochs,
            "learning_rate": job.params["learning_rate"],
            "l2": job.params["l2"],
            "batch_size": job.params["batch_size"],
        }
        return self._ask(job, "fl_train", alive, extra)

    # --- node side ------------------------------------------------------------------
    rng: Any = secrets.SystemRandom()

    def node_step(self, ctx: NodeContext, step: str, body: dict[str, Any]) -> StepResult:
        if step == "fl_keygen":
            private, signed = new_job_key(ctx, int(body["key_bits"]))
            ctx.state_put("fl", {"private": private.to_json(), "rounds": []})
            return StepResult(signed)
        if step in ("fl_moments", "fl_train"):
            return self._provider(ctx, step, body)
        if step == "fl_aggregate":
            return self._aggregate(ctx, body)
        raise StepRefused("unknown_step", f"homo_lr has no step {step!r}")

    def _provider(self, ctx: NodeContext, step: str, body: dict[str, Any]) -> StepResult:
        public = signed_job_key(ctx, body)  # only under the key the consumer's node signed for this job
        features, label = list(body["features"]), str(body["label"])
        x, y, read = _local(ctx, str(body["dataset"]), features, label)
        if len(y) < ctx.min_group_size:
            raise StepRefused("group_too_small", f"fewer usable rows than the minimum group size {ctx.min_group_size}")
        if step == "fl_moments":
            values = [*_fixed([len(y), y.sum()]), *_fixed(x.sum(axis=0)), *_fixed((x * x).sum(axis=0))]
        else:
            values = self._train(body, x, y)
        try:
            ct = public.encrypt_packed(values, SLOT)
        except he.HEError:
            raise StepRefused("value_too_large", "a column's values are too large to sum in fixed point") from None
        statement = ctx.sign(
            {
                "type": CONTRIBUTION,
                "job": ctx.job,
                "round": int(body["round"]),
                "party": str(body["party"]),
                "sum": public.pack(ct),
            }
        )
        return StepResult({"contribution": statement}, rows=read, records=len(y))

    def _train(self, body: dict[str, Any], x: np.ndarray, y: np.ndarray) -> list[int]:
        model = body["model"]
        mean, std = np.array(model["mean"], dtype=float), np.array(model["std"], dtype=float)
        w, b = np.array(model["weights"], dtype=float), float(model["bias"])
        if not (len(mean) == len(std) == len(w) == x.shape[1]) or not np.all(std > 0):
            raise StepRefused("bad_model", "the model does not fit this dataset's features")
        z = (x - mean) / std
        u = z @ w + b
        loss = float((np.logaddexp(0.0, u) - y * u).sum())  # Σ log-loss, stable for any score
        # Scores binned on the logit (±REACH), where a good model's scores spread out.
        bins = np.clip(((u + REACH) * (BINS / (2 * REACH))).astype(int), 0, BINS - 1)
        pos = np.bincount(bins[y == 1], minlength=BINS)
        neg = np.bincount(bins[y == 0], minlength=BINS)
        lr, l2, size = float(body["learning_rate"]), float(body["l2"]), int(body["batch_size"])
        rng = np.random.default_rng(self.rng.getrandbits(64))
        n = len(y)
        for _ in range(int(body["epochs"])):
            order = rng.permutation(n)
            for start in range(0, n, size):
                idx = order[start : start + size]
                err = metrics.sigmoid(z[idx] @ w + b) - y[idx]
                w = w - lr * (z[idx].T @ err / len(idx) + l2 * w)
                b = b - lr * float(err.mean())
        return [*_fixed([*(n * w), n * b, n, loss]), *(int(v) for v in pos), *(int(v) for v in neg)]

    def _aggregate(self, ctx: NodeContext, body: dict[str, Any]) -> StepResult:
        stored = ctx.state_get("fl")
        if not stored:
            raise StepRefused("no_key", "this node holds no private key for the job")
        private = he.PrivateKey.from_json(stored["private"])
        public = private.public
        rnd = body.get("round")
        if not isinstance(rnd, int) or rnd in stored["rounds"] or (rnd > 0 and "model" not in stored):
            raise StepRefused("answered", f"round {rnd!r} was already summed, or comes out of order")
        contributions, node_keys = body.get("contributions"), body.get("node_keys")
        least = max(2, int(body.get("min_providers", 2)))
        if not isinstance(contributions, dict) or not isinstance(node_keys, dict) or len(contributions) < least:
            raise StepRefused("too_few", f"a sum needs at least {least} providers' contributions")
        signers: set[str] = set()
        sums = []
        for party, statement in sorted(contributions.items()):
            try:
                key = keys.public_from_b64(str(node_keys.get(party)))
                kid = keys.key_id(key)
                opened = envelope.verify_signed(statement, _only(kid, key))
            except (ValueError, envelope.EnvelopeError) as exc:
                raise StepRefused("unsigned_contribution", f"{party}: {exc}") from None
            p = opened.payload
            if (p.get("type"), p.get("job"), p.get("round"), p.get("party")) != (CONTRIBUTION, ctx.job, rnd, party):
                raise StepRefused("unsigned_contribution", f"{party}'s contribution is for another job or round")
            signers.add(kid)
            try:
                sums.append(public.unpack(p.get("sum"), 64))
            except he.HEError as exc:
                raise StepRefused("bad_contribution", f"{party}: {exc}") from None
        if len(signers) < least:
            raise StepRefused("too_few", f"a sum needs at least {least} distinct provider nodes")
        f = int(body["features"])
        if len({len(s) for s in sums}) != 1:
            raise StepRefused("bad_contribution", "the contributions differ in length")
        count = 2 + 2 * f if body.get("kind") == "moments" else f + 3 + 2 * BINS
        try:
            values = private.decrypt_packed(public.sum_vectors(sums), SLOT, count)
        except he.HEError as exc:
            raise StepRefused("bad_contribution", str(exc)) from None
        stored["rounds"].append(rnd)
        if body.get("kind") == "moments":
            n, ys = _unfixed(values[:2])
            sx, sxx = _unfixed(values[2 : 2 + f]), _unfixed(values[2 + f :])
            if n < 1:
                raise StepRefused("bad_contribution", "the federation has no rows")
            mean = sx / n
            std = np.sqrt(np.maximum(sxx / n - mean * mean, 0.0))
            std = np.where(std > 1e-12, std, 1.0)
            rate = min(max(ys / n, 1e-6), 1 - 1e-6)
            bias = math.log(rate / (1 - rate))
            model = {"mean": mean.tolist(), "std": std.tolist(), "weights": [0.0] * f, "bias": bias}
            out_metrics: dict[str, Any] = {"rows": int(round(n)), "positives": int(round(ys))}
        else:
            head = _unfixed(values[: f + 3])  # Σ n·w, Σ n·b, Σ n, Σ loss
            pos, neg = values[f + 3 : f + 3 + BINS], values[f + 3 + BINS :]
            n, loss_sum = head[f + 1], head[f + 2]
            if n < 1:
                raise StepRefused("bad_contribution", "the round has no rows")
            old = stored["model"]
            model = {**old, "weights": (head[:f] / n).tolist(), "bias": float(head[f] / n)}
            auc = binned_auc(pos, neg)
            out_metrics = {
                "rows": int(round(n)),
                "loss": round(float(loss_sum / n), 6),
                "auc": None if auc is None else round(auc, 6),
            }
        stored["model"] = model
        result: dict[str, Any] = {"round": rnd, "model": model, "metrics": out_metrics}
        if body.get("final"):
            mean, std = np.array(model["mean"]), np.array(model["std"])
            w = np.array(stored["model"]["weights"])
            result["final_model"] = {
                "weights": (w / std).round(8).tolist(),
                "bias": round(float(model["bias"] - (w * mean / std).sum()), 8),
                "standardised": {
                    "weights": model["weights"],
                    "bias": model["bias"],
                    "mean": model["mean"],
                    "std": model["std"],
                },  # noqa: E501
            }
            ctx.state_drop("fl")
        else:
            ctx.state_put("fl", stored)
        return StepResult(result)


def _only(kid: str, key: Any) -> Any:
    """A key resolver that knows one key."""
    return lambda k: key if k == kid else None


def _local(ctx: NodeContext, dataset: str, features: list[str], label: str) -> tuple[np.ndarray, np.ndarray, int]:
    """The complete rows of ``features`` and a 0/1 ``label``; returns (x, y, rows read)."""
    cols = ctx.load_columns(dataset, [*features, label])
    read = len(cols[label])
    matrix = np.empty((read, len(features) + 1))
    for j, name in enumerate([*features, label]):
        text = np.char.strip(np.asarray(cols[name], dtype=str))
        try:
            matrix[:, j] = np.where(text == "", "nan", text).astype(float)
        except ValueError:
            raise StepRefused("not_numeric", f"column {name!r} is not numeric") from None
    matrix = matrix[~np.isnan(matrix).any(axis=1)]
    y = matrix[:, -1]
    if not np.isin(y, (0.0, 1.0)).all():
        raise StepRefused("label_not_binary", f"the label {label!r} is not 0/1")
    return matrix[:, :-1], y, read
