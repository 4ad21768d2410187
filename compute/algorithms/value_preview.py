"""``value_preview``: will a provider's features improve my model? Answered before buying.

Per feature of one provider dataset, on the overlap of the consumer's IDs with the provider's,
the information value (IV, over weight-of-evidence classes as credit-risk teams use it) and the
univariate AUC against the consumer's 0/1 label — without a row, an ID or a label moving, and
without either data party learning which IDs they share.

The protocol joins hub-side matching (as in ``psi``) to per-bin sums under the consumer's key:

1. consumer C ``vp_encrypt``: a fresh Paillier key (signed for the job); for its distinct IDs
   x in an order only it knows, a·H(x) (ristretto255, ``protocol.ristretto``) and E(y), with a
   proof that each E(y) encrypts 0 or 1 (:mod:`protocol.bitproof`). The hub checks the key's
   modulus (its size, no small factor) and every proof: a consumer that encrypted 2^k as a
   label, to read off which bin one of its rows fell into, is refused.
2. provider P ``vp_exchange``: tags of b·a·H(x) *in the order received*, and b·H(y) for its own
   distinct IDs in an order only it keeps (``b`` is forgotten).
3. C ``vp_finish``: tags of a·b·H(y) in that order; then it forgets ``a``.
4. the hub matches tags: for each of P's positions j, Y_j = the matched consumer row's E(y), or
   a fresh E(0) of its own, and M_j = a fresh E(1) or E(0). It keeps no mapping; it learns
   |X ∩ Y|, never an identity.
5. P ``vp_bins``: bins each feature at the quartiles its manifest already publishes (a bin of its
   own for blanks; a bin with fewer rows than the minimum group joins its neighbour), multiplies
   per bin — E(events) = ΠY, E(non-events) = ΠM / ΠY on the overlap — adds discrete-Laplace
   noise under encryption, packs, and re-randomises with a uniform rⁿ (so nothing C planted in
   its ciphertexts beyond the plaintext comes back to it). P cannot tell matched rows from the
   others: every ciphertext it gets is a fresh encryption under C's key.
6. C ``vp_report``: decrypts the noised counts (the release), merges adjacent bins until each
   holds enough of both classes (coarse classing), and computes WOE, IV and the AUC of the bin
   order; only these derived figures go to the hub.

**Privacy.** The edges are what the provider's manifest published before the preview; given
them, each overlap row adds one to exactly one cell per feature, so the counts have L1
sensitivity F (the number of features) under adding or removing a person, and each cell gets
discrete Laplace noise of scale F/ε. The consumer learns noised counts per bin, the hub the
overlap's size, the provider the lengths of the lists.

**Metering.** ``vp_exchange`` and ``vp_bins`` each read every row once (``rows``); neither
knows the overlap, so neither counts records.
"""

from __future__ import annotations

import math
import random
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

import gmpy2
import numpy as np

from compute.algorithms import psi
from compute.algorithms.base import (
    COLUMN_SCHEMA,
    KEY_BITS_SCHEMA,
    LOCAL_NAME_SCHEMA,
    ONE_PASS,
    DatasetInfo,
    JobView,
    NodeContext,
    ParamError,
    Progress,
    Send,
    StepRefused,
    StepResult,
    consumer_ids_params,
    key_bits_param,
    params_schema,
    refuse_unknown,
    register,
)
from compute.algorithms.dp import discrete_laplace
from compute.algorithms.hetero_lr import new_job_key, signed_job_key
from compute.algorithms.stats import checked_job_key
from compute.node.datasets import published_quartiles
from protocol import bitproof, he, ristretto

NAME = "value_preview"
STATE = "value_preview"
MAX_IDS = 20_000  # a preview samples: every ID costs the consumer's node a proved encryption
MAX_FEATURES = 30
MAX_EPSILON = 10.0
BINS = 4  # the published quartiles cut a feature into four; a fifth bin holds the blanks
SLOT = 40  # a noised count: |v| < 2^39
MIN_CLASS_SHARE = 0.05  # coarse classing: each merged class holds ≥ 5 % of the overlap ...
SMOOTH = 0.5  # ... and WOE adds ½ to each class count (no log of zero)
NOISE_FLOOR = 8  # ... and each class holds eight noise scales of events and of non-events
NUMERIC = ("number", "integer")
PARAMS = {"consumer_dataset", "consumer_id_column", "label_column", "epsilon", "key_bits"}
STRENGTH = ((0.5, "suspicious"), (0.3, "strong"), (0.1, "medium"), (0.02, "weak"), (0.0, "not useful"))
NOT_ENOUGH = "not enough data"

_SYSTEM_RANDOM = secrets.SystemRandom()


def context(job: str, what: str) -> bytes:
    """What a proof is bound to: this job and this list."""
    return f"{NAME}/{job}/{what}".encode()


def strength(iv: float) -> str:
    """The usual reading of an information value (Siddiqi, *Credit Risk Scorecards*, 2006)."""
    return next(label for floor, label in STRENGTH if iv >= floor)


@register
class ValuePreview:
    name = NAME
    operation = NAME
    summary = "Information value and AUC of a provider's features against your label, on the overlap, noised."
    params_schema = params_schema(
        {
            "consumer_dataset": {
                **LOCAL_NAME_SCHEMA,
                "description": "Your labelled dataset's local name on your node.",
            },
            "consumer_id_column": {**COLUMN_SCHEMA, "description": "Its ID column."},
            "label_column": {**COLUMN_SCHEMA, "description": "Its 0/1 label (1: the event, e.g. default)."},
            "epsilon": {
                "type": "number",
                "minimum": 0.001,
                "maximum": MAX_EPSILON,
                "default": 1.0,
                "description": "ε of the whole release (all features' counts together).",
            },
            "key_bits": KEY_BITS_SCHEMA,
        },
        ["consumer_dataset", "consumer_id_column", "label_column"],
    )
    consumer_steps = frozenset({"vp_encrypt", "vp_finish", "vp_report"})

    def __init__(self, rng: random.Random | None = None, node_rng: random.Random | None = None) -> None:
        # Injectable for tests only: ``node_rng`` draws the nodes' shuffles, scalars and noise.
        self.node_rng = node_rng if node_rng is not None else _SYSTEM_RANDOM

    def _scalar(self) -> bytes:
        return ristretto.random_scalar(None if self.node_rng is _SYSTEM_RANDOM else self.node_rng)

    def passes(self, params: dict[str, Any], step: str) -> int:
        return ONE_PASS

    def privacy_epsilon(self, params: dict[str, Any]) -> float:
        return float(params.get("epsilon", 0.0))

    def validate(self, params: dict[str, Any], datasets: list[DatasetInfo]) -> dict[str, Any]:
        errors: dict[str, list[str]] = {}
        local, column = consumer_ids_params(params, errors)
        label = params.get("label_column")
        if not isinstance(label, str) or not label.strip():
            errors["label_column"] = ["This field is required."]
        elif len(label) > 200:
            errors["label_column"] = ["At most 200 characters."]
        epsilon = params.get("epsilon", 1.0)
        if isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or not math.isfinite(epsilon):
            errors["epsilon"] = ["epsilon must be a number."]
        elif not 0 < epsilon <= MAX_EPSILON or round(epsilon, 3) != epsilon:
            errors["epsilon"] = [f"epsilon is above 0, at most {MAX_EPSILON:g}, with at most 3 decimals."]
        bits = key_bits_param(params, errors)
        refuse_unknown(params, PARAMS, errors)
        id_column, features = None, []
        if len(datasets) != 1:
            errors["datasets"] = [f"a value preview takes exactly one provider dataset, not {len(datasets)}."]
        else:
            ds = datasets[0]
            ids = [c.name for c in ds.columns if c.role == "id"]
            features = [c.name for c in ds.columns if c.role == "feature" and c.type in NUMERIC][:MAX_FEATURES]
            if len(ids) != 1:
                errors["datasets"] = [f"dataset {ds.name!r} must have exactly one ID column, not {len(ids)}."]
            elif not features:
                errors["datasets"] = [f"dataset {ds.name!r} has no numeric feature to preview."]
            id_column = ids[0] if len(ids) == 1 else None
        if errors:
            raise ParamError(errors)
        return {
            "consumer_dataset": local,
            "consumer_id_column": column,
            "label_column": label,
            "epsilon": float(epsilon),
            "key_bits": bits,
            "provider_id_column": id_column,
            "features": features,
        }

    # --- hub side -------------------------------------------------------------------
    def start(self, job: JobView) -> Progress:
        job.state = {"phase": "encrypt"}
        p = job.params
        body = {
            "dataset": p["consumer_dataset"],
            "id_column": p["consumer_id_column"],
            "label_column": p["label_column"],
            "key_bits": p["key_bits"],
        }
        return Progress(sends=[Send(job.consumer.key, "vp_encrypt", body)], percent=3)

    def on_result(self, job: JobView, step: str, party: str, body: dict[str, Any]) -> Progress:
        phase = job.state.get("phase")
        (provider,) = job.providers
        consumer = job.consumer.key
        p = job.params
        if step == "vp_encrypt" and phase == "encrypt" and party == consumer:
            statement = checked_job_key(job, body)
            public = he.PublicKey.from_json(body["public_key"])
            elements = psi._relayed_elements(body["elements"])
            psi._distinct(elements, "the consumer's blinded list")
            floor = int((provider.grant or {}).get("min_group_size", 1))
            if not floor <= len(elements) <= MAX_IDS:
                raise ValueError(f"the consumer's list has {len(elements)} IDs, outside {floor}–{MAX_IDS}")
            labels = public.unpack(body["labels"], len(elements))
            if len(labels) != len(elements):
                raise ValueError("the consumer sent one encrypted label per ID, or should have")
            try:
                bitproof.check_modulus(public, int(p["key_bits"]))
                bitproof.verify_labels(public, labels, body["proof"], context(job.id, "labels"))
            except bitproof.ProofError as exc:
                raise ValueError(f"the consumer's labels are not proved to be bits: {exc}") from None
            job.state = {
                "phase": "exchange",
                "consumer_count": len(elements),
                "public_key": body["public_key"],
                "key_statement": statement,
                "labels": body["labels"],
            }
            args = {"dataset": provider.dataset_local, "id_column": p["provider_id_column"]}
            return Progress(
                sends=[Send(provider.key, "vp_exchange", {**args, "elements": body["elements"]})], percent=30
            )
        if step == "vp_exchange" and phase == "exchange" and party == provider.key:
            peer_tags = psi._tags(body["peer_tags"])
            if len(peer_tags) != job.state["consumer_count"]:
                raise ValueError("the provider re-blinded a list of another length")
            if len(set(peer_tags)) != len(peer_tags):
                raise ValueError("the provider's tags of the consumer's list repeat")
            own = psi._relayed_elements(body["elements"])
            psi._distinct(own, "the provider's blinded list")
            job.state = {**job.state, "phase": "finish", "provider_count": len(own), "peer_tags": body["peer_tags"]}
            return Progress(sends=[Send(consumer, "vp_finish", {"elements": body["elements"]})], percent=50)
        if step == "vp_finish" and phase == "finish" and party == consumer:
            return self._match(job, body)
        if step == "vp_bins" and phase == "bins" and party == provider.key:
            public = he.PublicKey.from_json(job.state["public_key"], verify=False)
            want = public.packed_count(cell_count(p), SLOT)
            cells = public.unpack(body["cells"], want)
            if len(cells) != want:
                raise ValueError("the provider sent another number of packed counts")
            job.state = {"phase": "report", "consumer_count": job.state["consumer_count"]}
            args = {"cells": body["cells"], "features": p["features"], "epsilon": p["epsilon"]}
            send = Send(consumer, "vp_report", args)
            return Progress(sends=[send], percent=85, privacy_spent=float(p["epsilon"]), delivers=True)
        if step == "vp_report" and phase == "report" and party == consumer:
            features = checked_report(p, body)
            consumer_ids = int(job.state["consumer_count"])
            job.state = {"phase": "done"}
            outputs = {
                "features": features,
                "consumer_ids": consumer_ids,
                "overlap_estimate": min(int(body["overlap_estimate"]), consumer_ids),
                "epsilon": p["epsilon"],
                "estimate": True,
                "noise": "discrete Laplace on every bin count, scale features/epsilon",
            }
            return Progress(outputs=outputs, percent=100)
        raise ValueError(f"value_preview did not expect step {step!r} from {party!r} in phase {phase!r}")

    def _match(self, job: JobView, body: dict[str, Any]) -> Progress:
        """Each provider position gets the matched consumer row's E(y) and a fresh E(1), or a fresh
        E(0) and E(0) of the hub's own (it knows nothing of the labels it relays)."""
        st, p = job.state, job.params
        (provider,) = job.providers
        tags = psi._tags(body["tags"])
        if len(tags) != st["provider_count"]:
            raise ValueError("the consumer finished a list of another length")
        if len(set(tags)) != len(tags):
            raise ValueError("the consumer's tags of the provider's list repeat")
        public = he.PublicKey.from_json(st["public_key"])
        labels = public.unpack(st["labels"], st["consumer_count"])
        where = {t: i for i, t in enumerate(psi._tags(st["peer_tags"]))}
        matched = [where.get(t) for t in tags]
        floor = int((provider.grant or {}).get("min_group_size", 1))
        if sum(i is not None for i in matched) < floor:
            raise ValueError(f"the overlap is smaller than the minimum group size {floor}: nothing to preview")
        powers = bitproof.Powers(public)
        ys, ms = [], []
        for i in matched:
            ys.append(int(powers.encrypt(0)[0]) if i is None else labels[i])
            ms.append(int(powers.encrypt(0 if i is None else 1)[0]))
        # The mapping and the exact overlap go with this state; what stays is what the next steps need.
        job.state = {"phase": "bins", "consumer_count": st["consumer_count"], "public_key": st["public_key"]}
        send = Send(
            provider.key,
            "vp_bins",
            {
                "dataset": provider.dataset_local,
                "id_column": p["provider_id_column"],
                "features": p["features"],
                "epsilon": p["epsilon"],
                "public_key": st["public_key"],
                "key_statement": st["key_statement"],
                "labels": public.pack(ys),
                "members": public.pack(ms),
            },
        )
        return Progress(sends=[send], percent=65)

    # --- node side ------------------------------------------------------------------
    def node_step(self, ctx: NodeContext, step: str, body: dict[str, Any]) -> StepResult:
        if step == "vp_encrypt":
            return self._encrypt(ctx, body)
        if step == "vp_exchange":
            return self._exchange(ctx, body)
        if step == "vp_finish":
            return self._finish(ctx, body)
        if step == "vp_bins":
            return self._bins(ctx, body)
        if step == "vp_report":
            return _report(ctx, body)
        raise StepRefused("unknown_step", f"value_preview has no step {step!r}")

    def _encrypt(self, ctx: NodeContext, body: dict[str, Any]) -> StepResult:
        cols = ctx.load_columns(body["dataset"], [body["id_column"], body["label_column"]])
        labels: dict[str, int] = {}
        for raw_id, raw_label in zip(cols[body["id_column"]], cols[body["label_column"]], strict=True):
            pid, y = str(raw_id).strip(), str(raw_label).strip()
            if not pid:
                continue
            if y not in ("0", "1"):
                raise StepRefused("bad_label", f"the label column holds {y!r}; a value preview needs 0 or 1")
            if labels.setdefault(pid, int(y)) != int(y):
                raise StepRefused("bad_label", "an ID appears twice with different labels")
        if len(labels) > MAX_IDS:
            raise StepRefused("too_many_ids", f"more than {MAX_IDS:,} IDs; preview on a sample")
        ids = list(labels)
        self.node_rng.shuffle(ids)
        a = self._scalar()
        key, signed = new_job_key(ctx, int(body["key_bits"]))
        cts, proof = bitproof.prove_labels(key, [labels[i] for i in ids], context(ctx.job, "labels"))
        ctx.state_put(STATE, {"scalar": ristretto.scalar_to_hex(a), "key": key.to_json()})
        return StepResult(
            {
                **signed,
                "elements": ristretto.pack(ristretto.hash_and_blind(ids, a)),
                "labels": key.public.pack(cts),
                "proof": proof,
            }
        )

    def _exchange(self, ctx: NodeContext, body: dict[str, Any]) -> StepResult:
        peer = psi._received(body["elements"])
        if len(set(peer)) != len(peer):
            raise StepRefused("repeated_ids", "the other list repeats an ID")
        if len(peer) < ctx.min_group_size:
            raise StepRefused(
                "group_too_small", f"the other list has fewer IDs than the minimum group size {ctx.min_group_size}"
            )
        ids, rows_read = psi._local_ids(ctx, body["dataset"], body["id_column"])
        b = self._scalar()
        # The consumer's list keeps its order (the hub pairs each tag with that row's label);
        # the node's own list goes out in an order only it keeps, for vp_bins.
        peer_tags = [ristretto.tag(x) for x in ristretto.blind_all(peer, b)]
        self.node_rng.shuffle(ids)
        ctx.state_put(STATE, {"ids": ids})
        own = ristretto.hash_and_blind(ids, b)
        return StepResult({"peer_tags": ristretto.pack(peer_tags), "elements": ristretto.pack(own)}, rows=rows_read)

    def _finish(self, ctx: NodeContext, body: dict[str, Any]) -> StepResult:
        stored = ctx.state_get(STATE)
        if "scalar" not in stored:
            raise StepRefused("no_key", "this node holds no blinding exponent for the job")
        provider = psi._received(body["elements"])
        a = ristretto.scalar_from_hex(stored["scalar"])
        tags = [ristretto.tag(x) for x in ristretto.blind_all(provider, a)]  # in the order received
        ctx.state_put(STATE, {"key": stored["key"]})  # one finish per job: ``a`` goes
        return StepResult({"tags": ristretto.pack(tags)})

    def _bins(self, ctx: NodeContext, body: dict[str, Any]) -> StepResult:
        stored = ctx.state_get(STATE)
        if "ids" not in stored:
            raise StepRefused("no_state", "this node did not take part in the exchange of this job")
        public = signed_job_key(ctx, body)
        order = stored["ids"]
        ys = public.unpack(body["labels"], len(order))
        ms = public.unpack(body["members"], len(order))
        if len(ys) != len(order) or len(ms) != len(order):
            raise StepRefused("bad_values", "one label and one membership per ID of this node, please")
        features = list(body["features"])
        file_ids, x = ctx.load_numeric(body["dataset"], body["id_column"], features)
        where = {str(v).strip(): i for i, v in enumerate(file_ids)}
        assigned = fine_classes(x, ctx.min_group_size)  # bin per row and feature, over all its rows
        rows = np.array([where[i] for i in order], dtype=np.int64)
        nsq = public.nsquare
        cells: list[int] = []
        for f in range(len(features)):
            events = [gmpy2.mpz(1) for _ in range(BINS + 1)]
            members = [gmpy2.mpz(1) for _ in range(BINS + 1)]
            for j, b in enumerate(assigned[rows, f].tolist()):
                events[b] = events[b] * ys[j] % nsq
                members[b] = members[b] * ms[j] % nsq
            for e, m in zip(events, members, strict=True):
                cells += [int(e), int(m * gmpy2.invert(e, nsq) % nsq)]  # E(events), E(non-events) = E(members − events)
        epsilon = float(body["epsilon"]) / len(features)  # L1 sensitivity: one cell per feature
        noise = [discrete_laplace(epsilon, self.node_rng) for _ in cells]
        packed = public.pack_ciphertexts(public.add_plain(cells, noise), SLOT)
        ctx.state_drop(STATE)
        return StepResult({"cells": public.pack(public.rerandomize_fully(packed))}, rows=len(file_ids))


def cell_count(params: dict[str, Any]) -> int:
    """Two counts (events, non-events) per bin, BINS + 1 bins (the last for blanks), per feature."""
    return 2 * (BINS + 1) * len(params["features"])


def fine_classes(x: np.ndarray, min_group: int) -> np.ndarray:
    """Per column, the bin of each of the node's rows at the quartiles its manifest publishes
    ([−∞, p25), [p25, p50), [p50, p75), [p75, ∞)); a bin holding fewer than ``min_group`` rows
    (ties on an edge, say) joins its smaller neighbour; blanks (NaN) go to bin :data:`BINS`.
    With fewer than ``min_group`` values the manifest publishes no quartiles: one bin."""
    out = np.full(x.shape, BINS, dtype=np.int64)
    for f in range(x.shape[1]):
        col = x[:, f]
        present = ~np.isnan(col)
        values = col[present]
        if not len(values):
            continue
        if len(values) < max(1, min_group):
            out[present, f] = 0
            continue
        edges = np.array(published_quartiles(sorted(values.tolist())))
        bins = np.searchsorted(edges, values, side="right")
        out[present, f] = _merge_small(bins, min_group)
    return out


G = TypeVar("G")


def merge_adjacent(
    groups: list[G], size: Callable[[G], float], offends: Callable[[G], bool], join: Callable[[G, G], G]
) -> list[G]:
    """Adjacent groups joined, the smallest offender into its smaller neighbour (ties: the left
    one), until none offends or one is left. The node's bins and the consumer's classes both."""
    groups = list(groups)
    while len(groups) > 1:
        bad = [k for k, g in enumerate(groups) if offends(g)]
        if not bad:
            break
        k = min(bad, key=lambda k: size(groups[k]))
        if k == 0:
            other = 1
        elif k == len(groups) - 1:
            other = k - 1
        else:
            other = k - 1 if size(groups[k - 1]) <= size(groups[k + 1]) else k + 1
        lo, hi = min(k, other), max(k, other)
        groups[lo : hi + 1] = [join(groups[lo], groups[hi])]
    return groups


def _merge_small(bins: np.ndarray, min_group: int) -> np.ndarray:
    """Bins of fewer than ``min_group`` rows (but some) merged into a neighbour, renumbered in order."""
    counts = {int(b): int(c) for b, c in zip(*np.unique(bins, return_counts=True), strict=True)}

    def rows(g: list[int]) -> int:
        return sum(counts[b] for b in g)

    groups = merge_adjacent([[b] for b in sorted(counts)], rows, lambda g: rows(g) < min_group, lambda x, y: x + y)
    renumber = {b: i for i, g in enumerate(groups) for b in g}
    return np.array([renumber[int(b)] for b in bins], dtype=np.int64)


def _report(ctx: NodeContext, body: dict[str, Any]) -> StepResult:
    stored = ctx.state_get(STATE)
    if "key" not in stored:
        raise StepRefused("no_key", "this node holds no key for the job")
    key = he.PrivateKey.from_json(stored["key"])
    features = list(body["features"])
    count = 2 * (BINS + 1) * len(features)
    packed = key.public.unpack(body["cells"], key.public.packed_count(count, SLOT))
    values = key.decrypt_packed(packed, SLOT, count)
    # A class must hold several noise scales of each kind, or its WOE would be mostly noise.
    floor = NOISE_FLOOR * len(features) / float(body["epsilon"])
    out, overlap = [], []
    for f, name in enumerate(features):
        run = values[f * 2 * (BINS + 1) : (f + 1) * 2 * (BINS + 1)]
        events, non_events = list(run[0::2]), list(run[1::2])
        overlap.append(max(0, sum(events) + sum(non_events)))
        summary = woe_summary(events[:BINS], non_events[:BINS], events[BINS], non_events[BINS], floor)
        out.append({"name": name, **summary})
    ctx.state_drop(STATE)
    return StepResult({"features": out, "overlap_estimate": int(np.median(overlap)) if overlap else 0})


def woe_summary(
    events: list[int], non_events: list[int], blank_events: int, blank_non: int, floor: float = 1.0
) -> dict[str, Any]:
    """Coarse classes, WOE, IV and AUC from per-bin counts (bins in feature order; blanks apart).

    The counts are noised and may be negative: adjacent bins merge on the signed counts until
    each class holds ≥ 5 % of the rows and at least ``floor`` events and non-events, and only
    then is each clamped at 0. With fewer than two such classes (blanks aside) there is nothing
    to tell apart: IV 0, AUC ½, "not enough data". WOE is ln(share of non-events / share of
    events) with ½ added to each count; IV = Σ (non% − ev%)·WOE; the AUC is that of ranking rows
    by their class (ties count half), oriented to be ≥ ½.
    """
    classes = [
        c for c in coarse_classes(events, non_events, floor) if c["events"] >= floor and c["non_events"] >= floor
    ]
    if len(classes) < 2:
        return {"iv": 0.0, "auc": 0.5, "strength": NOT_ENOUGH, "bins": []}
    if blank_events >= floor and blank_non >= floor:  # else too few blanks to tell from the noise
        classes.append({"label": "blank", "events": blank_events, "non_events": blank_non})
    total_e = sum(c["events"] for c in classes) + SMOOTH * len(classes)
    total_n = sum(c["non_events"] for c in classes) + SMOOTH * len(classes)
    iv = 0.0
    for c in classes:
        share_e = (c["events"] + SMOOTH) / total_e
        share_n = (c["non_events"] + SMOOTH) / total_n
        c["woe"] = round(math.log(share_n / share_e), 4)
        iv += (share_n - share_e) * math.log(share_n / share_e)
    ranked = [c for c in classes if c["label"] != "blank"]
    return {"iv": round(iv, 4), "auc": round(binned_auc(ranked), 4), "strength": strength(iv), "bins": classes}


def coarse_classes(events: list[int], non_events: list[int], floor: float = 1.0) -> list[dict[str, Any]]:
    """Adjacent fine classes merged on signed counts (the smallest offender into its smaller
    neighbour, ties left) until each holds ≥ 5 % of the rows and ≥ ``floor`` events and
    non-events, or one class is left; the merged counts are clamped at 0."""
    share = MIN_CLASS_SHARE * max(0, sum(events) + sum(non_events))
    fine = [
        {"from": i, "to": i, "events": e, "non_events": n}
        for i, (e, n) in enumerate(zip(events, non_events, strict=True))
    ]

    def rows(g: dict[str, Any]) -> int:
        return int(g["events"] + g["non_events"])

    def offends(g: dict[str, Any]) -> bool:
        return rows(g) < share or g["events"] < floor or g["non_events"] < floor

    def join(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        return {"from": a["from"], "to": b["to"], "events": a["events"] + b["events"],
                "non_events": a["non_events"] + b["non_events"]}  # fmt: skip

    groups = merge_adjacent(fine, rows, offends, join)
    return [
        {
            "label": f"bin {g['from'] + 1}" if g["from"] == g["to"] else f"bins {g['from'] + 1}–{g['to'] + 1}",
            "events": max(0, g["events"]),
            "non_events": max(0, g["non_events"]),
        }
        for g in groups
    ]


def binned_auc(classes: list[dict[str, Any]]) -> float:
    """P(an event's bin ranks above a non-event's), ties half, oriented to be ≥ ½ (½ if degenerate)."""
    pos = sum(c["events"] for c in classes)
    neg = sum(c["non_events"] for c in classes)
    if not pos or not neg:
        return 0.5
    below, wins = 0, 0.0
    for c in classes:  # ascending bins
        wins += c["events"] * (below + 0.5 * c["non_events"])
        below += c["non_events"]
    auc = wins / (pos * neg)
    return max(auc, 1.0 - auc)


def checked_report(params: dict[str, Any], body: dict[str, Any]) -> list[dict[str, Any]]:
    """The hub's check of the consumer's report: the features asked, in order, with sane figures."""
    features = body.get("features")
    if (
        not isinstance(features, list)
        or [f.get("name") if isinstance(f, dict) else None for f in features] != params["features"]
    ):
        raise ValueError("the report names other features than the job's")
    out = []
    for f in features:
        iv, auc, bins = f.get("iv"), f.get("auc"), f.get("bins")
        if not isinstance(iv, int | float) or isinstance(iv, bool) or not math.isfinite(iv) or iv < 0:
            raise ValueError(f"feature {f['name']!r}: an information value is a finite number ≥ 0")
        if not isinstance(auc, int | float) or isinstance(auc, bool) or not 0.5 <= auc <= 1:
            raise ValueError(f"feature {f['name']!r}: the AUC is between 0.5 and 1")
        if not isinstance(bins, list) or len(bins) > BINS + 1:
            raise ValueError(f"feature {f['name']!r}: at most {BINS + 1} classes")
        clean_bins = []
        for b in bins:
            ev, ne, woe = b.get("events"), b.get("non_events"), b.get("woe")
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (ev, ne)):
                raise ValueError(f"feature {f['name']!r}: class counts are whole numbers ≥ 0")
            if not isinstance(woe, int | float) or not math.isfinite(woe):
                raise ValueError(f"feature {f['name']!r}: a WOE is a finite number")
            label = b.get("label")
            if not isinstance(label, str) or len(label) > 40:
                raise ValueError(f"feature {f['name']!r}: a class has a short label")
            clean_bins.append({"label": label, "events": ev, "non_events": ne, "woe": float(woe)})
        out.append(
            {
                "name": f["name"],
                "iv": float(iv),
                "auc": float(auc),
                "strength": strength(iv) if clean_bins else NOT_ENOUGH,
                "bins": clean_bins,
            }
        )
    overlap = body.get("overlap_estimate")
    if not isinstance(overlap, int) or isinstance(overlap, bool) or overlap < 0:
        raise ValueError("the overlap estimate is a whole number ≥ 0")
    return sorted(out, key=lambda f: -f["iv"])
