"""``hetero_lr``: vertical logistic regression, the consumer's node as guest, providers as hosts.

The rows are the joint intersection, aligned in the same job by ``psi_align`` (its steps run
first; see that module for who learns membership), or in an earlier job of the consumer's
(``alignment_job``: a finished ``psi_align`` or ``hetero_lr`` job over the same consumer
dataset, under exactly the same rights; the hub checks that, and each node takes the
alignment it kept in that job only for the same dataset, ID column and right). Then, without an arbiter: the guest
(the consumer's node, which holds the labels) makes the Paillier key pair; hosts encrypt
under its public key; the hub relays, sums ciphertexts and never holds a key.

Per mini-batch B (Hardy et al. 2017, "Private federated learning on vertically partitioned
data via entity resolution and additively homomorphic encryption", with the arbiter's role
given to the key holder and every decryption masked):

1. each host h: E(¼·u_h) with u_h = X_h[B]·w_h, fresh randomness for every value;
2. the hub: E(¼·Σ_h u_h) = Π_h E(¼·u_h) (it cannot decrypt);
3. the guest: E(d) = E(¼·Σ u_h) ⊕ (¼·u_g + ½ − y), re-randomised, where d is the Taylor
   residual σ(u) − y ≈ ¼·u + ½ − y; its own gradient from Xᵀ_g·E(d), decrypted (an
   aggregate over the batch), then w_g updated. It never decrypts E(d) itself;
4. each host: E(Xᵀ_h·d + r_h) with a fresh mask r_h of 80 bits more than the value can have;
5. the guest decrypts the masked gradient (uniform to it) and returns it; the host removes
   r_h and updates w_h. The host's gradient and weights never leave it.

At the end of each epoch the hosts encrypt their partial scores u_h on every aligned row,
the hub sums them and the guest decrypts the sum, adds u_g and computes train and
validation AUC, KS and log-loss (the loss curve); early stopping compares the validation
log-loss between epochs. At the end, the guest trains a model on its own features alone with
the same settings (the lift), and computes each host's contribution as the validation AUC
lost without that host's partial scores (leave-one-host-out on the final model, from the
hosts' scores on the validation rows only, which they also send, packed, at each epoch's end).

**What each party sees.** The hub: ciphertexts, masked values, sizes. A host: ciphertexts
under a key it does not hold, the plaintext of its own gradient (after unmasking). The guest:
its own gradient, masked host gradients, the hosts' *summed* partial scores on the aligned
rows at the end of each epoch (what it would learn by scoring those rows), and, for the
contribution of each host, the sum of the others' partial scores on the validation rows once
at the end. With two or more hosts that lets it tell each host's scores apart on the validation
rows (the validation fraction of the aligned rows, not all of them): it is what "what did each
right add" costs. Never a host's weights, gradient or features.

**No decryption oracle.** The guest decrypts for the hub only masked host gradients, and
only as the protocol asks for them: per batch one vector per host, for the batch whose
residual it made last, of that host's feature count as named at set-up, and the plaintext
is sealed to that host's node key (also named at set-up), so the hub relays it unread. A hub
that sends it a residual, a host's forward pass or a second vector is refused.

What the guest cannot check is that a host's vector *is* a masked gradient: a dishonest host
may send, in its one vector per batch, ciphertexts it computed from the residuals E(d) it was
given (packed by Horner's rule, a few residuals to a slot) and so learn some of d = ¼u + ½ − y,
which at epoch 0 is ½ − y: labels. Packing narrows what one vector can carry (its feature count
of 154-bit slots, about four residuals each, instead of one ciphertext per feature holding any
one value); closing it needs the host to prove its vector is Xᵀ·E(d) + mask (a zero-knowledge
proof, or an arbiter that sees neither side's data), which this protocol does not have.

**Randomness.** Every ciphertext a party sends carries fresh randomness: encryptions, and
the guest's residual, which is computed from the hosts' sum and re-randomised so that the
hub cannot divide the two to read the guest's plaintext ¼·u_g + ½ − y.

**Packing** (:mod:`protocol.he`): values that are only summed travel many to a plaintext —
the partial scores at each epoch's end and in scoring (56-bit slots, :data:`SCORE_SLOT`), and
each host's masked gradient (:data:`GRAD_SLOT`-bit slots, packed from the per-feature
ciphertexts by the host and re-randomised), so the guest decrypts a few plaintexts instead
of one per row or feature. The per-row forward values and residuals are multiplied by features,
so they stay one value per ciphertext.
"""

from __future__ import annotations

import math
import random
import secrets
import uuid
from typing import Any

import numpy as np

from compute.algorithms import metrics, psi_align
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
    key_bits_param,
    params_schema,
    refuse_unknown,
    register,
)
from protocol import he, sealed

JOB_KEY = "usufruct/job-key/v1"
STATE = "hetero_lr"
MODEL = "hetero_lr.model"
X_BITS = 12  # feature values in gradients: x ↦ round(x · 2^12) as a short exponent
MASK_EXTRA = 80  # statistical hiding of a masked gradient
MAX_ROWS = 1_000_000
# Packing (protocol.he, BatchCrypt): values that are only summed travel many to a ciphertext.
# Partial scores: fixed point 2^24, clipped to ±2^15 (σ saturates long before), summed over up
# to 2^16 hosts: |Σ| < 2^55, so 56-bit slots (36 per 2048-bit plaintext).
SCORE_CLIP = float(1 << 15)
SCORE_SLOT = 56
# A masked gradient value: |Xᵀd| < rows·2^50 plus a mask below rows·2^(50+80), rows ≤ 2^20.
GRAD_SLOT = 20 + 50 + MASK_EXTRA + 4
NUMERIC = ("number", "integer")
DEFAULTS: dict[str, Any] = {
    "epochs": 10,
    "learning_rate": 0.15,
    "l2": 0.01,
    "batch_size": 0,  # 0: the whole training set in one batch
    "key_bits": 2048,
    "tolerance": 1e-4,  # early stopping: the validation log-loss must improve by this much; 0 turns it off
    "validation_fraction": 0.2,
}
# ``alignment_job``: an earlier job of the consumer that aligned the same datasets under the same
# rights (its nodes kept the alignment); the hub checks it and adds ``aligned_rows``.
PARAMS = {"consumer_dataset", "consumer_id_column", "label_column", "consumer_features", "alignment_job", *DEFAULTS}
GUEST_STEPS = frozenset({"lr_setup", "lr_residual", "lr_decrypt", "lr_evaluate", "lr_finish"})

_SYSTEM_RANDOM = secrets.SystemRandom()


def _number(
    params: dict[str, Any], name: str, errors: dict[str, list[str]], low: float, high: float, integer: bool = False
) -> Any:
    value = params.get(name, DEFAULTS[name])
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
        errors[name] = ["A whole number." if integer else "A number."]
    elif not low <= value <= high:
        errors[name] = [f"Between {low:g} and {high:g}."]
    return value


def _to_host(job: JobView, key: str, step: str, body: dict[str, Any]) -> Send:
    """A step for a host, naming its dataset: the host checks the right it is shown covers it."""
    return Send(key, step, {**body, "dataset": job.party(key).dataset_local})


def new_job_key(ctx: NodeContext, bits: int) -> tuple[he.PrivateKey, dict[str, Any]]:
    """The guest's fresh Paillier key for one job, and its public half signed for the hosts to check."""
    key = he.PrivateKey.generate(bits)
    public_json = key.public.to_json()
    statement = ctx.sign({"type": JOB_KEY, "job": ctx.job, "public_key": public_json})
    return key, {"public_key": public_json, "key_statement": statement}


def signed_job_key(ctx: NodeContext, body: dict[str, Any]) -> he.PublicKey:
    """The key a host is asked to encrypt under, only if the job's consumer node signed it for this job."""
    signed = ctx.consumer_statement(body.get("key_statement"), JOB_KEY)
    if signed.get("public_key") != body.get("public_key"):
        raise StepRefused("unsigned_key", "the key to encrypt under is not the one the consumer signed")
    return he.PublicKey.from_json(body["public_key"])


def batches(n_train: int, batch_size: int) -> list[range]:
    size = batch_size or n_train
    return [range(i, min(i + size, n_train)) for i in range(0, n_train, size)]


@register
class HeteroLR:
    name = "hetero_lr"
    operation = "hetero_lr"
    summary = "Train a logistic regression on your labels and providers' features, aligned by PSI; rows never move."
    params_schema = params_schema(
        {
            **psi_align.ALIGNMENT_SCHEMA,
            "label_column": {**COLUMN_SCHEMA, "description": "Your 0/1 label column."},
            "consumer_features": {
                "type": "array",
                "items": COLUMN_SCHEMA,
                "maxItems": 500,
                "uniqueItems": True,
                "default": [],
                "description": "Your own numeric feature columns (not the label).",
            },
            "alignment_job": {
                "type": "string",
                "format": "uuid",
                "nullable": True,
                "description": "An earlier psi_align or hetero_lr job of yours that aligned the same "
                "datasets under the same rights; omit to align in this job.",
            },
            "epochs": {"type": "integer", "minimum": 1, "maximum": 200, "default": DEFAULTS["epochs"]},
            "learning_rate": {"type": "number", "minimum": 1e-4, "maximum": 10, "default": DEFAULTS["learning_rate"]},
            "l2": {"type": "number", "minimum": 0, "maximum": 10, "default": DEFAULTS["l2"]},
            "batch_size": {
                "type": "integer",
                "minimum": 0,
                "maximum": MAX_ROWS,
                "default": 0,
                "description": "0: the whole training set in one batch; otherwise at least 16.",
            },
            "key_bits": KEY_BITS_SCHEMA,
            "tolerance": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "default": DEFAULTS["tolerance"],
                "description": "Early stopping: the validation log-loss must improve by this much; 0 turns it off.",
            },
            "validation_fraction": {
                "type": "number",
                "minimum": 0.05,
                "maximum": 0.5,
                "default": DEFAULTS["validation_fraction"],
            },
        },
        ["consumer_dataset", "consumer_id_column", "label_column"],
    )
    consumer_steps = psi_align.CONSUMER_STEPS | GUEST_STEPS

    def __init__(self, node_rng: random.Random | None = None) -> None:
        self.node_rng = node_rng  # tests only

    def passes(self, params: dict[str, Any], step: str) -> int:
        return ONE_PASS  # each host step reads its rows once

    def privacy_epsilon(self, params: dict[str, Any]) -> float:
        return 0.0

    def validate(self, params: dict[str, Any], datasets: list[DatasetInfo]) -> dict[str, Any]:
        errors: dict[str, list[str]] = {}
        clean = psi_align.validate_alignment(params, datasets, errors)
        label = params.get("label_column")
        if not isinstance(label, str) or not label.strip():
            errors["label_column"] = ["This field is required."]
        features = params.get("consumer_features", [])
        if not isinstance(features, list) or not all(isinstance(f, str) and f for f in features) or len(features) > 500:
            errors["consumer_features"] = ["A list of column names of your dataset (at most 500)."]
        elif len(set(features)) != len(features) or label in features:
            errors["consumer_features"] = ["Each column once, and not the label."]
        clean["label_column"] = label
        clean["consumer_features"] = features
        clean["epochs"] = _number(params, "epochs", errors, 1, 200, integer=True)
        clean["learning_rate"] = _number(params, "learning_rate", errors, 1e-4, 10)
        clean["l2"] = _number(params, "l2", errors, 0, 10)
        clean["batch_size"] = _number(params, "batch_size", errors, 0, MAX_ROWS, integer=True)
        if isinstance(clean["batch_size"], int) and 0 < clean["batch_size"] < 16:
            errors["batch_size"] = ["0 (the whole training set) or at least 16."]
        clean["key_bits"] = key_bits_param(params, errors, DEFAULTS["key_bits"])
        clean["tolerance"] = _number(params, "tolerance", errors, 0, 1)
        clean["validation_fraction"] = _number(params, "validation_fraction", errors, 0.05, 0.5)
        earlier = params.get("alignment_job")
        if earlier is not None:
            if not isinstance(earlier, str) or not _is_uuid(earlier):
                errors["alignment_job"] = ["The id of one of your jobs that aligned these datasets."]
            else:
                clean["alignment_job"] = earlier.lower()
        host_features: dict[str, list[str]] = {}
        for ds in datasets:
            cols = [c.name for c in ds.columns if c.role == "feature" and c.type in NUMERIC]
            if not cols:
                errors.setdefault("datasets", []).append(f"dataset {ds.name!r} has no numeric feature column.")
            host_features[str(ds.id)] = cols
        clean["host_features"] = host_features
        refuse_unknown(params, PARAMS, errors)
        if errors:
            raise ParamError(errors)
        return clean

    # --- hub side -------------------------------------------------------------------
    def start(self, job: JobView) -> Progress:
        if job.params.get("alignment_job"):  # aligned in an earlier job: straight to the set-up
            job.state = {"phase": "setup", "rows": int(job.params["aligned_rows"])}
            return Progress(sends=[Send(job.consumer.key, "lr_setup", _setup(job))], percent=15)
        job.state = {"phase": "align"}
        return psi_align.start(job)

    def on_result(self, job: JobView, step: str, party: str, body: dict[str, Any]) -> Progress:
        st = job.state
        hosts = [p.key for p in job.providers]
        guest = job.consumer.key
        if st["phase"] == "align":
            out = psi_align.on_result(job, step, party, body)
            if isinstance(out, Progress):
                return out
            st.update(phase="setup", rows=out)
            return Progress(sends=[Send(guest, "lr_setup", _setup(job))], percent=15)
        if step == "lr_setup" and st["phase"] == "setup" and party == guest:
            public = he.PublicKey.from_json(body["public_key"])
            if public.bits < int(job.params["key_bits"]) - 1:
                raise ValueError("the guest's key is shorter than the job asked for")
            n_val = int(body["validation_size"])
            if not 0 < n_val < st["rows"]:
                raise ValueError("the guest's validation split is empty or everything")
            st.update(
                phase="host_setup",
                public_key=body["public_key"],
                n_train=st["rows"] - n_val,
                ready=[],
                fwd=[0, 0],
                cur=None,
                forward={},
                decrypting=[],
                history=[],
                best=None,
            )
            common = {k: body[k] for k in ("public_key", "key_statement", "validation")}
            common.update({k: job.params[k] for k in ("batch_size", "learning_rate", "l2")})
            sends = [
                Send(
                    p.key,
                    "lr_host_setup",
                    {
                        **common,
                        "dataset": p.dataset_local,
                        "id_column": job.params["provider_id_columns"][str(p.dataset_id)],
                        "features": job.params["host_features"][str(p.dataset_id)],
                        "alignment_job": job.params.get("alignment_job"),
                    },
                )
                for p in job.providers
            ]
            return Progress(sends=sends, percent=18)
        if step == "lr_host_setup" and st["phase"] == "host_setup" and party in hosts and party not in st["ready"]:
            st["ready"].append(party)
            if len(st["ready"]) < len(hosts):
                return Progress(percent=19)
            st["phase"] = "train"
            return Progress(sends=[_to_host(job, h, "lr_forward", {"epoch": 0, "batch": 0}) for h in hosts], percent=20)
        if st["phase"] == "train":
            return self._train(job, step, party, body)
        if step == "lr_finish" and st["phase"] == "finish" and party == guest:
            st.pop("forward", None)
            outputs = dict(body)
            outputs["history"] = st["history"]
            outputs["rows"] = {"aligned": st["rows"], "train": st["n_train"], "validation": st["rows"] - st["n_train"]}
            st.update(phase="seal", outputs=outputs, sealed=[])
            # Each host keeps its part of the model, for the right it was trained under.
            return Progress(sends=[_to_host(job, h, "lr_seal", {}) for h in hosts], percent=98)
        if step == "lr_seal" and st["phase"] == "seal" and party in hosts and party not in st["sealed"]:
            if body.get("sealed") is not True:
                raise ValueError("a host did not keep its part of the model")
            st["sealed"].append(party)
            if len(st["sealed"]) < len(hosts):
                return Progress(percent=99)
            st["phase"] = "done"
            return Progress(outputs=st.pop("outputs"), percent=100, delivers=True)
        raise ValueError(f"hetero_lr did not expect step {step!r} from {party!r} in phase {st['phase']!r}")

    def _train(self, job: JobView, step: str, party: str, body: dict[str, Any]) -> Progress:
        """One batch: forwards (all hosts) → residual → gradients → decryptions → updates, which
        carry the next batch's forwards or, after the epoch's last batch, every row's scores."""
        st = job.state
        hosts = [p.key for p in job.providers]
        guest = job.consumer.key
        public = he.PublicKey.from_json(st["public_key"], verify=False)  # checked at lr_setup
        plan = batches(st["n_train"], int(job.params["batch_size"]))
        epochs = int(job.params["epochs"])
        at = [body.get("epoch"), body.get("batch")]
        done = (st["fwd"][0] * len(plan) + st["fwd"][1]) / (epochs * len(plan))
        percent = 20 + int(75 * done)
        if step in ("lr_forward", "lr_update") and "enc" in body and party in hosts:
            if at != st["fwd"] or party in st["forward"]:
                raise ValueError("a forward pass for another batch, or twice")
            if len(public.unpack(body["enc"], MAX_ROWS)) != len(plan[int(st["fwd"][1])]):
                raise ValueError("a host sent a vector of the wrong length")
            st["forward"][party] = body["enc"]
            if len(st["forward"]) < len(hosts):
                return Progress(percent=percent)
            total = public.sum_vectors([public.unpack(st["forward"][h], MAX_ROWS) for h in hosts])
            st.update(forward={}, cur=at, decrypting=[])
            return Progress(
                sends=[Send(guest, "lr_residual", {"epoch": at[0], "batch": at[1], "host_sum": public.pack(total)})],
                percent=percent,
            )
        if at != st["cur"]:
            raise ValueError("a reply for another epoch or batch")
        e, t = int(st["cur"][0]), int(st["cur"][1])
        if step == "lr_update" and "scores" in body and party in hosts:
            if t + 1 != len(plan) or party in st["forward"]:
                raise ValueError("scores before the epoch's end, or twice")
            if len(public.unpack(body["scores"], MAX_ROWS)) != public.packed_count(st["rows"], SCORE_SLOT):
                raise ValueError("a host scored another number of rows")
            n_val = st["rows"] - st["n_train"]
            if len(public.unpack(body.get("validation_scores"), MAX_ROWS)) != public.packed_count(n_val, SCORE_SLOT):
                raise ValueError("a host scored another number of validation rows")
            st.setdefault("validation_forward", {})[party] = body["validation_scores"]
            st["forward"][party] = body["scores"]
            if len(st["forward"]) < len(hosts):
                return Progress(percent=percent)
            st["last_scores"], st["forward"] = st["forward"], {}
            st["last_validation"], st["validation_forward"] = st["validation_forward"], {}
            total = public.sum_vectors([public.unpack(st["last_scores"][h], MAX_ROWS) for h in hosts])
            return Progress(
                sends=[Send(guest, "lr_evaluate", {"epoch": e, "batch": t, "host_sum": public.pack(total)})],
                percent=percent,
            )
        if step == "lr_residual" and party == guest:
            if len(public.unpack(body.get("residual"), MAX_ROWS)) != len(plan[t]):
                raise ValueError("a residual of the wrong length")
            return Progress(
                sends=[
                    _to_host(job, h, "lr_gradient", {"epoch": e, "batch": t, "residual": body["residual"]})
                    for h in hosts
                ],
                percent=percent,
            )
        if step == "lr_gradient" and party in hosts:
            features = len(job.params["host_features"][str(job.party(party).dataset_id)])
            if len(public.unpack(body.get("masked"), 10_000)) != public.packed_count(features, GRAD_SLOT):
                raise ValueError("a masked gradient of another length than the host's features, packed")
            return Progress(
                sends=[Send(guest, "lr_decrypt", {"epoch": e, "batch": t, "party": party, "masked": body["masked"]})],
                percent=percent,
            )
        if step == "lr_decrypt" and party == guest:
            host = body.get("party")
            if host not in hosts or host in st["decrypting"] or not sealed.is_sealed(body.get("values")):
                raise ValueError("a decryption for an unknown host, or twice, or not sealed to the host")
            st["decrypting"].append(host)
            last = t + 1 == len(plan)
            if not last:
                st["fwd"] = [e, t + 1]  # the updates answer with the next batch's forwards
            return Progress(
                sends=[
                    _to_host(
                        job,
                        host,
                        "lr_update",
                        {"epoch": e, "batch": t, "values": body["values"], "then": "scores" if last else "forward"},
                    )
                ],
                percent=percent,
            )
        if step == "lr_evaluate" and party == guest:
            m = body.get("metrics")
            if not isinstance(m, dict) or not {"train", "validation"} <= set(m):
                raise ValueError("an evaluation carries train and validation metrics")
            st["history"].append({"epoch": e + 1, "train": m["train"], "validation": m["validation"]})
            loss = float(m["validation"]["log_loss"])
            best = st["best"]
            tolerance = float(job.params["tolerance"])  # 0: no early stopping
            stop = e + 1 >= epochs or (tolerance > 0 and best is not None and best - loss < tolerance)
            st["best"] = loss if best is None else min(best, loss)
            if not stop:
                st.update(fwd=[e + 1, 0], cur=None)
                return Progress(
                    sends=[_to_host(job, h, "lr_forward", {"epoch": e + 1, "batch": 0}) for h in hosts], percent=percent
                )
            st.update(phase="finish", cur=None)
            last = st.pop("last_scores")
            scores = {h: public.unpack(last[h], MAX_ROWS) for h in hosts}
            # Leave-one-host-out on the validation rows only: the others' summed scores there.
            held = st.pop("last_validation")
            validation = {h: public.unpack(held[h], MAX_ROWS) for h in hosts}
            leave_out = {
                h: public.pack(public.sum_vectors([validation[o] for o in hosts if o != h])) if len(hosts) > 1 else None
                for h in hosts
            }
            final = {
                "epochs": e + 1,
                "host_sum": public.pack(public.sum_vectors(list(scores.values()))),
                "leave_out": leave_out,
                "hosts": {p.key: p.dataset_id for p in job.providers},
            }
            return Progress(sends=[Send(guest, "lr_finish", final)], percent=97)
        raise ValueError(f"hetero_lr did not expect step {step!r} from {party!r} while training")

    # --- node side ------------------------------------------------------------------
    def node_step(self, ctx: NodeContext, step: str, body: dict[str, Any]) -> StepResult:
        rng = self.node_rng or _SYSTEM_RANDOM
        if step in psi_align.STEPS:
            return psi_align.node_step(ctx, step, body, self.node_rng)
        if step in GUEST_STEPS:
            return _guest(ctx, step, body, rng)
        return _host(ctx, step, body, rng)


def _setup(job: JobView) -> dict[str, Any]:
    """The guest's set-up step: what to train on and with what settings."""
    keys = (
        "consumer_dataset",
        "consumer_id_column",
        "label_column",
        "consumer_features",
        "key_bits",
        "validation_fraction",
        "batch_size",
        "learning_rate",
        "l2",
    )
    # "dataset": the node holds a consumer step to the datasets its policy sets aside for its own jobs.
    setup = {"dataset": job.params["consumer_dataset"], **{k: job.params[k] for k in keys}}
    setup["alignment_job"] = job.params.get("alignment_job")
    # What the guest holds each later decryption to: a host's gradient has its feature count,
    # and the plaintext is sealed to that host's node key.
    setup["hosts"] = {
        p.key: {"features": len(job.params["host_features"][str(p.dataset_id)]), "node_key": p.node_key}
        for p in job.providers
    }
    return setup


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


# --- the data on a node ------------------------------------------------------------------


def _matrix(ctx: NodeContext, dataset: str, id_column: str, columns: list[str]) -> tuple[np.ndarray, int]:
    """The aligned rows' ``columns`` as floats, in the job's common order; blanks become NaN.

    Reads only the columns it needs, converted to floats batch by batch
    (``NodeContext.load_numeric``), never the dataset as a list of rows.
    """
    ids = psi_align.aligned_ids(ctx)
    keys, matrix = ctx.load_numeric(dataset, id_column, columns)
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        if key:
            first.setdefault(key, i)
    try:
        index = np.array([first[k] for k in ids], dtype=np.int64)
    except KeyError:
        raise StepRefused("alignment_changed", "the local dataset changed since the rows were aligned") from None
    return matrix[index] if len(index) else np.empty((0, len(columns))), len(keys)


def _standardise(x: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, list[float], list[float]]:
    """z-scores with the training rows' mean and spread; a missing value becomes the mean (0)."""
    part = x[train]
    mean = np.nanmean(part, axis=0) if len(part) else np.zeros(x.shape[1])
    std = np.nanstd(part, axis=0) if len(part) else np.ones(x.shape[1])
    mean = np.where(np.isnan(mean), 0.0, mean)
    std = np.where((std == 0) | np.isnan(std), 1.0, std)
    z = np.nan_to_num((x - mean) / std, nan=0.0)
    return z, mean.tolist(), std.tolist()


def _split(n: int, validation: list[int]) -> tuple[np.ndarray, np.ndarray]:
    mask = np.zeros(n, dtype=bool)
    mask[validation] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def _pack_mask(n: int, positions: list[int]) -> str:
    bits = bytearray(-(-n // 8))
    for p in positions:
        bits[p // 8] |= 1 << (p % 8)
    return psi_align.ristretto.pack([bytes(bits)]) if bits else ""


def _unpack_mask(text: Any, n: int) -> list[int]:
    try:
        (raw,) = psi_align.ristretto.unpack(text, -(-n // 8), 1)
    except (psi_align.ristretto.GroupError, ValueError):
        raise StepRefused("bad_split", "the validation split does not match the aligned rows") from None
    positions = [i for i in range(n) if raw[i // 8] >> (i % 8) & 1]
    if not 0 < len(positions) < n:
        raise StepRefused("bad_split", "the validation split is empty or everything")
    return positions


def _gradient_rows(z: np.ndarray) -> list[list[int]]:
    return np.rint(z * (1 << X_BITS)).astype(np.int64).tolist()


# --- the guest (the consumer's node) -----------------------------------------------------


def _guest(ctx: NodeContext, step: str, body: dict[str, Any], rng: random.Random) -> StepResult:
    if step == "lr_setup":
        return _guest_setup(ctx, body, rng)
    st = ctx.state_get(STATE)
    if not st:
        raise StepRefused("no_key", "this node holds no key for the job")
    key = he.PrivateKey.from_json(st["key"])
    public = key.public
    x, _ = _matrix(ctx, st["dataset"], st["id_column"], st["features"])
    y = np.array(st["y"], dtype=float)
    z = (
        (np.nan_to_num((x - np.array(st["mean"])) / np.array(st["std"]), nan=0.0))
        if st["features"]
        else np.zeros((len(y), 0))
    )
    train, val = _split(len(y), st["validation"])
    w = np.array(st["w"], dtype=float)
    at = {"epoch": body.get("epoch"), "batch": body.get("batch")}
    if step == "lr_residual":
        rows = train[batches(len(train), st["batch_size"])[int(body["batch"])]]
        host = public.unpack(body["host_sum"], MAX_ROWS)
        if len(host) != len(rows):
            raise StepRefused("bad_vector", "the hosts' sum does not match the batch")
        tag = f"{body.get('epoch')}:{body.get('batch')}"
        if st.get("residual_tag") != tag:  # this batch's hosts' gradients may now be decrypted, once each
            st.update(residual_tag=tag, decrypted=[])
            ctx.state_put(STATE, st)
        again = st.get("updated") == tag  # redelivered after a crash that came after the update was kept
        if again:
            w = np.array(st["w_prev"], dtype=float)
        own = 0.25 * (z[rows] @ w) + 0.5 - y[rows]
        d = key.rerandomize(public.add_plain(host, he.to_fixed(own.tolist())))
        if len(w) and not again:
            grad_fixed = key.decrypt(public.matvec_t(_gradient_rows(z[rows]), d))
            grad = np.array(grad_fixed, dtype=float) / float(1 << (he.FRAC_BITS + X_BITS)) / len(rows) + st["l2"] * w
            st.update(w_prev=w.tolist(), w=(w - st["learning_rate"] * grad).tolist(), updated=tag)
            ctx.state_put(STATE, st)
        return StepResult({**at, "residual": public.pack(d)})
    if step == "lr_decrypt":
        return StepResult(_guest_decrypt(ctx, st, key, body))
    if step in ("lr_evaluate", "lr_finish"):
        summed = decrypt_scores(key, body["host_sum"], len(y))
        u = z @ w + summed
        if step == "lr_evaluate":
            m = {"train": metrics.summary(y[train], u[train]), "validation": metrics.summary(y[val], u[val])}
            return StepResult({**at, "metrics": m})
        return StepResult(_guest_finish(ctx, st, body, key, z, y, u, train, val))
    raise StepRefused("unknown_step", f"hetero_lr has no step {step!r}")


def _guest_decrypt(ctx: NodeContext, st: dict[str, Any], key: he.PrivateKey, body: dict[str, Any]) -> dict[str, Any]:
    """A host's masked gradient, decrypted for that host alone.

    The guest is no decryption oracle for the hub: it decrypts, per batch, one vector per host,
    only for the batch whose residual it made last, only of the length the host's feature
    count had at set-up, and seals the plaintext to the host's node key (named at set-up), so
    the hub relays it unread. Anything else is refused.
    """
    host = body.get("party")
    info = st["hosts"].get(host) if isinstance(host, str) else None
    tag = f"{body.get('epoch')}:{body.get('batch')}"
    if info is None:
        raise StepRefused("bad_decrypt", "no such host in this job")
    if st.get("residual_tag") != tag:
        raise StepRefused("bad_decrypt", "a decryption for a batch whose residual this node did not make last")
    if host in st["decrypted"]:
        raise StepRefused("bad_decrypt", "this host's gradient for this batch was already decrypted")
    packed = key.public.packed_count(info["features"], GRAD_SLOT)
    try:
        masked = key.public.unpack(body.get("masked"), packed)
    except he.HEError:
        masked = []
    if len(masked) != packed:
        raise StepRefused("bad_decrypt", "a host's gradient has one value per feature of that host")
    st["decrypted"].append(host)
    ctx.state_put(STATE, st)
    try:
        plain = key.decrypt_packed(masked, GRAD_SLOT, info["features"])
    except he.HEError:  # more than the slots hold: not a masked gradient of this protocol
        raise StepRefused("bad_decrypt", "a host's gradient does not decode to its feature count") from None
    values = ctx.seal_to(info["node_key"], [str(v) for v in plain])
    return {"epoch": body.get("epoch"), "batch": body.get("batch"), "party": host, "values": values}


def _hosts(value: Any) -> dict[str, dict[str, Any]]:
    ok = isinstance(value, dict) and all(
        isinstance(k, str)
        and isinstance(v, dict)
        and type(v.get("features")) is int
        and v["features"] >= 1
        and isinstance(v.get("node_key"), str)
        for k, v in value.items()
    )
    if not ok or not value:
        raise StepRefused("bad_setup", "the set-up names each host's feature count and node key")
    return value


def _guest_setup(ctx: NodeContext, body: dict[str, Any], rng: random.Random) -> StepResult:
    stored = ctx.state_get(STATE)
    if stored:  # asked again: the same key and split
        return StepResult(stored["setup_reply"])
    hosts = _hosts(body.get("hosts"))
    label, features = body["label_column"], list(body["consumer_features"])
    dataset, id_column = body["dataset"], body["consumer_id_column"]
    if body.get("alignment_job"):
        psi_align.reuse_alignment(ctx, body["alignment_job"], dataset, id_column)
    ys, _ = _matrix(ctx, dataset, id_column, [label])
    if np.isnan(ys).any() or not set(np.unique(ys)) <= {0.0, 1.0}:
        raise StepRefused("bad_label", f"the label {label!r} must be 0 or 1 on every aligned row")
    y = ys[:, 0]
    n = len(y)
    n_val = max(1, round(n * float(body["validation_fraction"])))
    if n - n_val < 2:
        raise StepRefused("too_few_rows", "too few aligned rows to train")
    validation = sorted(rng.sample(range(n), n_val))
    train, _ = _split(n, validation)
    x, _ = _matrix(ctx, dataset, id_column, features) if features else (np.zeros((n, 0)), n)
    _, mean, std = _standardise(x, train)
    key, signed = new_job_key(ctx, int(body["key_bits"]))
    reply = {
        **signed,
        "validation": _pack_mask(n, validation),
        "validation_size": n_val,
    }
    ctx.state_put(
        STATE,
        {
            "key": key.to_json(),
            "dataset": dataset,
            "id_column": id_column,
            "features": features,
            "y": y.tolist(),
            "validation": validation,
            "mean": mean,
            "std": std,
            "w": [0.0] * len(features),
            "learning_rate": float(body["learning_rate"]),
            "l2": float(body["l2"]),
            "batch_size": int(body["batch_size"]),
            "setup_reply": reply,
            "hosts": hosts,
            "residual_tag": None,
            "decrypted": [],
        },
    )
    return StepResult(reply)


def _guest_finish(
    ctx: NodeContext,
    st: dict[str, Any],
    body: dict[str, Any],
    key: he.PrivateKey,
    z: np.ndarray,
    y: np.ndarray,
    u: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
) -> dict[str, Any]:
    joint = metrics.summary(y[val], u[val])
    own_w = _train_local(z[train], y[train], st, int(body["epochs"]))
    own_u = z @ own_w
    own = metrics.summary(y[val], own_u[val])
    contributions = {}
    for host, packed in (body.get("leave_out") or {}).items():
        others = np.zeros(len(val)) if packed is None else decrypt_scores(key, packed, len(val))
        without = metrics.auc(y[val], (z @ np.array(st["w"]))[val] + others)
        contributions[host] = {
            "dataset": (body.get("hosts") or {}).get(host),
            "validation_auc_without": round(without, 6),
            "auc_added": round(joint["auc"] - without, 6),
        }
    ctx.state_put(MODEL, {k: st[k] for k in ("w", "mean", "std", "features", "dataset", "id_column")})
    ctx.state_drop(STATE)
    return {
        "validation": joint,
        "train": metrics.summary(y[train], u[train]),
        "roc": metrics.roc(y[val], u[val]),
        "own_data_only": {"validation": own, "roc": metrics.roc(y[val], own_u[val])},
        "lift": {"auc": round(joint["auc"] - own["auc"], 6), "ks": round(joint["ks"] - own["ks"], 6)},
        "contributions": contributions,
        "guest_model": {"features": st["features"], "weights": [round(v, 8) for v in st["w"]]},
    }


def encrypt_scores(public: he.PublicKey, u: np.ndarray) -> str:
    """Partial scores, quantised and packed (:data:`SCORE_SLOT`), each plaintext with a fresh r."""
    return public.pack(public.encrypt_packed(he.quantise(u, he.FRAC_BITS, SCORE_CLIP), SCORE_SLOT))


def decrypt_scores(key: he.PrivateKey, packed: Any, rows: int) -> np.ndarray:
    try:
        values = key.decrypt_packed(key.public.unpack(packed, MAX_ROWS), SCORE_SLOT, rows)
    except he.HEError:
        raise StepRefused("bad_vector", "the hosts' sum does not match the aligned rows") from None
    return np.array(values, dtype=float) / he.ONE


def _train_local(z: np.ndarray, y: np.ndarray, st: dict[str, Any], epochs: int) -> np.ndarray:
    """The consumer's own-data-only model, with the same settings (and the same Taylor residual)."""
    w = np.zeros(z.shape[1])
    for _ in range(epochs):
        for b in batches(len(y), st["batch_size"]):
            d = 0.25 * (z[b] @ w) + 0.5 - y[b]
            w = w - st["learning_rate"] * (z[b].T @ d / len(b) + st["l2"] * w)
    return w


# --- a host (a provider's node) ------------------------------------------------------------


def _host(ctx: NodeContext, step: str, body: dict[str, Any], rng: random.Random) -> StepResult:
    if step == "lr_retire":  # the right this part lives under has ended: the part goes
        had = bool(ctx.model_get(ctx.job, MODEL))
        ctx.state_drop(MODEL)
        return StepResult(
            {"deleted": True, "had_part": had, "reason": str(body.get("reason", ""))[:200]}, rows=0, records=0
        )  # noqa: E501
    if step == "lr_seal":  # training is over: keep the model part, forget the rest
        st = ctx.state_get(STATE)
        if not st:
            raise StepRefused("not_set_up", "this node has no training state for the job")
        grant = ctx.grant or {}
        part = {k: st[k] for k in ("w", "mean", "std", "features", "dataset", "id_column")}
        ctx.state_put(MODEL, {**part, "right": grant.get("right"), "expires_at": grant.get("expires_at")})
        ctx.state_drop(STATE)
        return StepResult({"sealed": True}, rows=0, records=0)
    if step == "lr_host_setup":
        signed_job_key(ctx, body)
        if body.get("alignment_job"):
            psi_align.reuse_alignment(ctx, body["alignment_job"], body["dataset"], body["id_column"])
        x, rows_read = _matrix(ctx, body["dataset"], body["id_column"], list(body["features"]))
        validation = _unpack_mask(body.get("validation"), len(x))
        train, _ = _split(len(x), validation)
        _, mean, std = _standardise(x, train)
        ctx.state_put(
            STATE,
            {
                "public_key": body["public_key"],
                "dataset": body["dataset"],
                "id_column": body["id_column"],
                "features": list(body["features"]),
                "validation": validation,
                "mean": mean,
                "std": std,
                "w": [0.0] * len(body["features"]),
                "batch_size": int(body["batch_size"]),
                "masks": {},
                "learning_rate": _hyper(body, "learning_rate"),
                "l2": _hyper(body, "l2"),
            },
        )
        return StepResult({"features": len(body["features"])}, rows=rows_read, records=0)
    st = ctx.state_get(STATE)
    if not st:
        raise StepRefused("not_set_up", "this node has no training state for the job")
    public = he.PublicKey.from_json(st["public_key"])
    x, rows_read = _matrix(ctx, st["dataset"], st["id_column"], st["features"])
    z = np.nan_to_num((x - np.array(st["mean"])) / np.array(st["std"]), nan=0.0)
    train, _ = _split(len(z), st["validation"])
    w = np.array(st["w"], dtype=float)
    epoch, batch = int(body["epoch"]), int(body["batch"])
    at = {"epoch": epoch, "batch": batch}
    plan = batches(len(train), st["batch_size"])
    if not 0 <= batch < len(plan):
        raise StepRefused("bad_batch", "no such batch")
    rows = train[plan[batch]]
    tag = f"{epoch}:{batch}"
    if step == "lr_forward":
        return StepResult(
            {**at, "enc": public.pack(public.encrypt(he.to_fixed((0.25 * (z[rows] @ w)).tolist())))},
            rows=rows_read,
            records=0,
        )
    if step == "lr_gradient":
        d = public.unpack(body["residual"], MAX_ROWS)
        if len(d) != len(rows):
            raise StepRefused("bad_vector", "the residual does not match the batch")
        # |x·2^12| < 2^16 for any z-score below 16, |d·2^24| < 2^34: each term below 2^50.
        bound = len(rows) << (50 + MASK_EXTRA)
        masks = [secrets.randbelow(bound) for _ in range(len(w))]
        grads = public.add_plain(public.matvec_t(_gradient_rows(z[rows]), d), masks)
        # Computed from the guest's own ciphertexts: re-randomised with a uniform rⁿ, so nothing the
        # guest planted in E(d) beyond its plaintext (an element of small order) reaches it again.
        enc = public.rerandomize_fully(public.pack_ciphertexts(grads, GRAD_SLOT))
        st["masks"] = {tag: [str(m) for m in masks]}
        ctx.state_put(STATE, st)
        return StepResult({**at, "masked": public.pack(enc)}, rows=rows_read, records=0)
    if step == "lr_update":
        if st.get("updated") != tag:  # asked again after the update was kept: it is not applied twice
            masks = st["masks"].get(tag)
            values = ctx.unseal(body.get("values"))  # the guest sealed it to this node
            if masks is None or not isinstance(values, list) or len(values) != len(masks):
                raise StepRefused("bad_update", "no masked gradient of this node to update with")
            grad_fixed = np.array([int(v) - int(m) for v, m in zip(values, masks, strict=True)], dtype=float)
            grad = grad_fixed / float(1 << (he.FRAC_BITS + X_BITS)) / len(rows) + st["l2"] * w
            w = w - st["learning_rate"] * grad
            st.update(w=w.tolist(), updated=tag)
            ctx.state_put(STATE, st)
        if body.get("then") == "scores":  # the epoch is over: partial scores on every aligned row
            u = z @ w
            val = np.array(st["validation"], dtype=int)
            body = {**at, "scores": encrypt_scores(public, u), "validation_scores": encrypt_scores(public, u[val])}
            return StepResult(body, rows=rows_read, records=0)
        nxt = train[plan[batch + 1]]
        return StepResult(
            {
                "epoch": epoch,
                "batch": batch + 1,
                "enc": public.pack(public.encrypt(he.to_fixed((0.25 * (z[nxt] @ w)).tolist()))),
            },
            rows=rows_read,
            records=0,
        )
    raise StepRefused("unknown_step", f"hetero_lr has no step {step!r}")


def _hyper(body: dict[str, Any], name: str) -> float:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise StepRefused("bad_update", f"the update names no {name}")
    return float(value)
