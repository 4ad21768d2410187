"""``hetero_lr_score``: score records with a joint model whose parts stay on their nodes.

The consumer names the records: the rows of a dataset on its own node, or a list of IDs
among them (a list travels through the hub with the job's parameters; a dataset on the node
keeps the IDs off the hub). The steps:

1. ``psi_align``'s steps align the records to score with every host's rows (the hub learns
   only the count; each node learns which of its own records are scored);
2. the guest (the consumer's node) makes a fresh Paillier key for this job and signs it;
3. each host computes its partial scores u_h = z_h·w_h with the part of the model it kept at
   the end of training, and encrypts them under that key (fresh randomness per value);
4. the hub multiplies the hosts' ciphertexts (it holds no key), so with two or more hosts
   the guest decrypts only the sum Σ_h u_h, never one host's scores;
5. the guest adds its own part and returns σ(u) per record: the consumer downloads them.

**What the hub sees.** The scores travel to the consumer through the hub, as every job output does:
the hub learns which of the consumer's records were scored (the joint intersection of the
scoring set) and their probabilities. The providers learn neither. Keeping scores on the
consumer's node (or sealing them to a key only the consumer holds) is not built: see the threat
model in docs/decisions/0013-joint-credit-model.md.

**Under the right.** A host scores only with the model part it kept for the right the job
presents, and only while that right is active: the hub checks every right of the model at
submission, and each host checks the grant it is shown (expiry included) and that it is the
right its part was trained under. **Billed per scored record**: each host's ``sc_partial``
receipt counts the records it scored (``records``), which a per-record plan charges; the
alignment steps count none here.
"""

from __future__ import annotations

import random
import secrets
import uuid
from typing import Any

import numpy as np

from compute.algorithms import hetero_lr, metrics, psi_align
from compute.algorithms.base import (
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
from protocol import he

MAX_LISTED = 10_000
STATE = "hetero_lr_score"
PARAMS = {"model", "consumer_dataset", "consumer_id_column", "ids", "key_bits"}
GUEST_STEPS = frozenset({"sc_setup", "sc_combine"})

_SYSTEM_RANDOM = secrets.SystemRandom()


@register
class HeteroLRScore:
    name = "hetero_lr_score"
    operation = "hetero_lr"  # scoring is a use of the model trained under the same rights
    summary = "Score your records with a joint model; each provider's part scores on its node."
    params_schema = params_schema(
        {
            **psi_align.ALIGNMENT_SCHEMA,
            "model": {"type": "string", "format": "uuid", "description": "One of your trained models."},
            "ids": {
                "type": "array",
                "items": {"type": "string", "minLength": 1, "maxLength": 200},
                "minItems": 1,
                "maxItems": MAX_LISTED,
                "description": "Score only these records of the dataset (default: all of them).",
            },
            "key_bits": KEY_BITS_SCHEMA,
        },
        ["model", "consumer_dataset", "consumer_id_column"],
    )
    consumer_steps = psi_align.CONSUMER_STEPS | GUEST_STEPS

    def __init__(self, node_rng: random.Random | None = None) -> None:
        self.node_rng = node_rng

    def passes(self, params: dict[str, Any], step: str) -> int:
        return ONE_PASS

    def privacy_epsilon(self, params: dict[str, Any]) -> float:
        return 0.0

    def validate(self, params: dict[str, Any], datasets: list[DatasetInfo]) -> dict[str, Any]:
        errors: dict[str, list[str]] = {}
        clean = psi_align.validate_alignment(params, datasets, errors)
        model = params.get("model")
        try:
            clean["model"] = str(uuid.UUID(str(model)))
        except ValueError:
            errors["model"] = ["Choose one of your trained models."]
        ids = params.get("ids")
        if ids is not None:
            if not isinstance(ids, list) or not all(isinstance(i, str) and 0 < len(i) <= 200 for i in ids):
                errors["ids"] = ["A list of record IDs (text, at most 200 characters each)."]
            elif not 0 < len(ids) <= MAX_LISTED:
                errors["ids"] = [f"Between 1 and {MAX_LISTED:,} IDs; for more, score a dataset on your node."]
            else:
                clean["ids"] = sorted({i.strip() for i in ids if i.strip()})
        clean["key_bits"] = key_bits_param(params, errors)
        refuse_unknown(params, PARAMS, errors)
        if errors:
            raise ParamError(errors)
        return clean

    # --- hub side -------------------------------------------------------------------
    def start(self, job: JobView) -> Progress:
        job.state = {"phase": "align"}
        progress = psi_align.start(job)
        if "ids" in job.params:  # score only these records of the dataset
            progress.sends[0].body["only"] = job.params["ids"]
        return progress

    def on_result(self, job: JobView, step: str, party: str, body: dict[str, Any]) -> Progress:
        st = job.state
        hosts = [p.key for p in job.providers]
        guest = job.consumer.key
        if st["phase"] == "align":
            out = psi_align.on_result(job, step, party, body)
            if isinstance(out, Progress):
                return out
            st.update(phase="setup", rows=out)
            return Progress(sends=[Send(guest, "sc_setup", {"key_bits": job.params["key_bits"]})], percent=40)
        if step == "sc_setup" and st["phase"] == "setup" and party == guest:
            he.PublicKey.from_json(body.get("public_key"))
            st.update(phase="partial", public_key=body["public_key"], partials={})
            args = {
                "model": job.params["model"],
                "public_key": body["public_key"],
                "key_statement": body["key_statement"],
            }  # noqa: E501
            sends = [Send(p.key, "sc_partial", {**args, "dataset": p.dataset_local}) for p in job.providers]
            return Progress(sends=sends, percent=50)
        if step == "sc_partial" and st["phase"] == "partial" and party in hosts and party not in st["partials"]:
            public = he.PublicKey.from_json(st["public_key"], verify=False)  # checked at sc_setup
            packed = public.packed_count(st["rows"], hetero_lr.SCORE_SLOT)
            if len(public.unpack(body.get("scores"), hetero_lr.MAX_ROWS)) != packed:
                raise ValueError("a host scored another number of records")
            st["partials"][party] = body["scores"]
            if len(st["partials"]) < len(hosts):
                return Progress(percent=70)
            total = public.sum_vectors([public.unpack(st["partials"][h], hetero_lr.MAX_ROWS) for h in hosts])
            st.update(phase="combine", partials={})
            combine = {
                "host_sum": public.pack(total), "model": job.params["model"],
                "dataset": job.params["consumer_dataset"], "id_column": job.params["consumer_id_column"],
            }  # fmt: skip
            return Progress(sends=[Send(guest, "sc_combine", combine)], percent=85)
        if step == "sc_combine" and st["phase"] == "combine" and party == guest:
            scores = body.get("scores")
            if not isinstance(scores, list) or len(scores) != st["rows"]:
                raise ValueError("the guest returned another number of scores")
            st["phase"] = "done"
            return Progress(outputs={"scored": len(scores), "scores": scores}, percent=100, delivers=True)
        raise ValueError(f"hetero_lr_score did not expect step {step!r} from {party!r} in phase {st['phase']!r}")

    # --- node side ------------------------------------------------------------------
    def node_step(self, ctx: NodeContext, step: str, body: dict[str, Any]) -> StepResult:
        if step in psi_align.STEPS:
            result = psi_align.node_step(ctx, step, body, self.node_rng)
            if step == "psi_keep":  # the scored records are counted once, by sc_partial
                result = StepResult(result.body, rows=result.rows, records=0)
            return result
        if step == "sc_setup":
            stored = ctx.state_get(STATE)
            if stored:
                return StepResult(stored["reply"])
            key, reply = hetero_lr.new_job_key(ctx, int(body["key_bits"]))
            ctx.state_put(STATE, {"key": key.to_json(), "reply": reply})
            return StepResult(reply)
        if step == "sc_partial":
            return _host_partial(ctx, body)
        if step == "sc_combine":
            return _guest_combine(ctx, body)
        raise StepRefused("unknown_step", f"hetero_lr_score has no step {step!r}")


def _model_part(ctx: NodeContext, model: str) -> dict[str, Any]:
    part = ctx.model_get(model, hetero_lr.MODEL)
    if not part:
        raise StepRefused("no_model", "this node holds no part of that model (deleted, or never trained here)")
    return part


def _host_partial(ctx: NodeContext, body: dict[str, Any]) -> StepResult:
    public = hetero_lr.signed_job_key(ctx, body)
    part = _model_part(ctx, str(body.get("model")))
    grant = ctx.grant or {}
    if part.get("right") != grant.get("right") or part.get("dataset") != body.get("dataset"):
        raise StepRefused("not_permitted", "this model part was trained under another right or dataset")
    x, rows_read = hetero_lr._matrix(ctx, part["dataset"], part["id_column"], part["features"])
    z = np.nan_to_num((x - np.array(part["mean"])) / np.array(part["std"]), nan=0.0)
    u = z @ np.array(part["w"], dtype=float)
    return StepResult({"scores": hetero_lr.encrypt_scores(public, u)}, rows=rows_read, records=len(u))


def _guest_combine(ctx: NodeContext, body: dict[str, Any]) -> StepResult:
    stored = ctx.state_get(STATE)
    if not stored:
        raise StepRefused("no_key", "this node holds no key for the job")
    key = he.PrivateKey.from_json(stored["key"])
    model = _model_part(ctx, str(body.get("model")))
    ids = psi_align.aligned_ids(ctx)
    u = hetero_lr.decrypt_scores(key, body.get("host_sum"), len(ids))
    if model["features"]:
        x, _ = hetero_lr._matrix(ctx, str(body.get("dataset")), str(body.get("id_column")), model["features"])
        u += np.nan_to_num((x - np.array(model["mean"])) / np.array(model["std"]), nan=0.0) @ np.array(model["w"])
    p = metrics.sigmoid(u)
    ctx.state_drop(STATE)
    return StepResult({"scores": [[i, round(float(v), 6)] for i, v in zip(ids, p, strict=True)]})
