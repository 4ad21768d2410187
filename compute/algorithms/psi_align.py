"""``psi_align``: private set intersection that aligns rows, for vertical learning.

Diffie–Hellman PSI (Huberman, Franklin & Hogg, EC 1999) in ristretto255 (RFC 9496, through
``protocol.ristretto``), between the consumer's node C and one or more provider nodes P_i,
every message relayed (and logged) by the hub:

1. C ``psi_blind``: a·H(x) for its distinct IDs, in an order only C knows; ``a`` and that
   order stay in C's job state.
2. each P_i ``psi_exchange``: b_i·(a·H(x)) in the order received, as short tags, and
   b_i·H(y) for its own distinct IDs in an order only P_i knows (kept in its job state);
   ``b_i`` is forgotten when the step ends.
3. C ``psi_match`` (once per provider): a·(b_i·H(y)) as tags, compared with the tags of
   step 2; C records which of its positions match which of P_i's positions.
4. C ``psi_align``: the IDs matched with *every* provider, in a fresh random order; C keeps
   its IDs in that order and sends each P_i the positions of its list in that order.
5. each P_i ``psi_keep``: keeps its IDs in that order. All parties now hold their rows
   of the intersection in one common order, for the later steps of the job.

**Who learns what.** Each data party learns which of its own records are in the
intersection: that is what alignment is for, and in FATE's PSI both data parties learn it
too. The consumer also learns, per provider, which of its IDs that provider holds (the
pairwise intersections); a provider learns only which of its IDs are in the joint
intersection, and nothing of another provider's set. The hub relays pseudorandom group
elements, tags and positions in orders it cannot invert: it learns the list lengths and the
intersection's size, never an identity. Trust model: semi-honest hub and parties; a hub
that sent hashes of guessed IDs instead of a party's list could test those guesses, and
every such message is signed, logged and, on a provider, receipted on the ledger.

**Bounds.** Lists hold at most :data:`MAX_IDS` distinct IDs; the minimum group size of each
provider's offer applies to distinct IDs, on the consumer's list (checked by the hub and by
each provider, which count distinct elements) and on the joint intersection (checked by the
hub and by each provider before it keeps its alignment).

**Metering.** ``psi_exchange`` reads each row once (``rows``); ``psi_keep`` counts the
aligned records (``records``), which a per-record plan charges.
"""

from __future__ import annotations

import random
import secrets
import struct
from typing import Any

from compute.algorithms.base import (
    COLUMN_SCHEMA,
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
    params_schema,
    refuse_unknown,
    register,
)
from protocol import ristretto

MAX_IDS = 1_000_000
SECRET = "psi_align"  # the node's per-job state while aligning
ALIGNMENT = "alignment"  # the node's per-job state afterwards: its IDs in the common order
PARAMS = {"consumer_dataset", "consumer_id_column"}
STEPS = ("psi_blind", "psi_exchange", "psi_match", "psi_align", "psi_keep", "psi_forget")
# ``psi_forget`` reads nothing and is no use of a right: any party runs it without a grant.
CONSUMER_STEPS = frozenset({"psi_blind", "psi_match", "psi_align", "psi_forget"})

_SYSTEM_RANDOM = secrets.SystemRandom()


ALIGNMENT_SCHEMA: dict[str, Any] = {
    "consumer_dataset": {**LOCAL_NAME_SCHEMA, "description": "Your dataset's local name on your own node."},
    "consumer_id_column": {**COLUMN_SCHEMA, "description": "Its ID column, matched to each provider's."},
}


def validate_alignment(
    params: dict[str, Any], datasets: list[DatasetInfo], errors: dict[str, list[str]]
) -> dict[str, Any]:
    """The alignment's parameters (shared with algorithms that align first); adds field errors to ``errors``."""
    local, column = consumer_ids_params(params, errors)
    id_columns: dict[str, str] = {}
    if not datasets:
        errors["datasets"] = ["Choose at least one provider dataset."]
    for ds in datasets:
        ids = [c.name for c in ds.columns if c.role == "id"]
        if len(ids) != 1:
            errors.setdefault("datasets", []).append(f"dataset {ds.name!r} must have exactly one ID column.")
        else:
            id_columns[str(ds.id)] = ids[0]
    return {"consumer_dataset": local, "consumer_id_column": column, "provider_id_columns": id_columns}


# --- hub side: a state machine other algorithms embed -----------------------------------


def start(job: JobView) -> Progress:
    job.state["align"] = {"phase": "blind"}
    body = {"dataset": job.params["consumer_dataset"], "id_column": job.params["consumer_id_column"]}
    return Progress(sends=[Send(job.consumer.key, "psi_blind", body)], percent=2)


def _floor(job: JobView) -> int:
    return max(int((p.grant or {}).get("min_group_size", 1)) for p in job.providers)


def on_result(job: JobView, step: str, party: str, body: dict[str, Any]) -> Progress | int:
    """Advance the alignment; returns the aligned size once every provider kept its order."""
    st = job.state["align"]
    phase = st.get("phase")
    consumer = job.consumer.key
    providers = [p.key for p in job.providers]
    if step == "psi_blind" and phase == "blind" and party == consumer:
        elements = _relayed(body.get("elements"), ristretto.ELEMENT_BYTES)
        n = len(elements)
        if n < _floor(job):
            raise ValueError(f"the consumer's list has fewer distinct IDs than the minimum group size {_floor(job)}")
        job.state["align"] = {"phase": "exchange", "consumer_count": n, "matched": [], "kept": {}}
        sends = [
            Send(
                p.key,
                "psi_exchange",
                {
                    "dataset": p.dataset_local,
                    "id_column": job.params["provider_id_columns"][str(p.dataset_id)],
                    "elements": body["elements"],
                },
            )
            for p in job.providers
        ]
        return Progress(sends=sends, percent=5)
    if step == "psi_exchange" and phase == "exchange" and party in providers:
        tags = _relayed(body.get("peer_tags"), ristretto.TAG_BYTES, distinct=False)
        if len(tags) != st["consumer_count"]:
            raise ValueError("the provider re-blinded a list of another length")
        _relayed(body.get("elements"), ristretto.ELEMENT_BYTES)
        match = {"party": party, "peer_tags": body["peer_tags"], "elements": body["elements"]}
        return Progress(sends=[Send(consumer, "psi_match", match)], percent=8)
    if step == "psi_match" and phase == "exchange" and party == consumer:
        if body.get("party") not in providers or body["party"] in st["matched"]:
            raise ValueError("the consumer matched an unknown provider, or one twice")
        st["matched"].append(body["party"])
        if len(st["matched"]) < len(providers):
            return Progress(percent=9)
        st["phase"] = "align"
        return Progress(sends=[Send(consumer, "psi_align", {"providers": providers})], percent=10)
    if step == "psi_align" and phase == "align" and party == consumer:
        size, indices = body.get("size"), body.get("indices")
        if type(size) is not int or not isinstance(indices, dict) or set(indices) != set(providers):
            raise ValueError("an alignment names a size and one position list per provider")
        for key in providers:
            if len(_relayed(indices[key], 4, distinct=False)) != size:
                raise ValueError("a position list does not have the alignment's size")
        if size < _floor(job):
            raise ValueError(f"the intersection is smaller than the minimum group size {_floor(job)}")
        st.update(phase="keep", size=size)
        # Every provider step names its dataset: the node checks the right covers it.
        sends = [
            Send(p.key, "psi_keep", {"dataset": p.dataset_local, "positions": indices[p.key]}) for p in job.providers
        ]
        return Progress(sends=sends, percent=12)
    if step == "psi_keep" and phase == "keep" and party in providers and party not in st["kept"]:
        if body.get("kept") != st["size"]:
            raise ValueError("a provider kept an alignment of another size")
        st["kept"][party] = st["size"]
        if len(st["kept"]) < len(providers):
            return Progress(percent=14)
        st["phase"] = "done"
        return int(st["size"])
    raise ValueError(f"psi_align did not expect step {step!r} from {party!r} in phase {phase!r}")


def _relayed(value: Any, width: int, distinct: bool = True) -> list[bytes]:
    try:
        values = ristretto.unpack(value, width, MAX_IDS)
    except ristretto.GroupError as exc:
        raise ValueError(str(exc)) from None
    if distinct and len(set(values)) != len(values):
        raise ValueError("a blinded list repeats an element")  # an honest node blinds each distinct ID once
    return values


# --- node side --------------------------------------------------------------------------


def local_ids(ctx: NodeContext, dataset: str, column: str) -> tuple[list[str], int]:
    """The distinct, non-blank IDs of a local dataset, in file order, and the rows read (one column only)."""
    values = ctx.load_columns(dataset, [column])[column]
    seen: dict[str, None] = {}
    for raw in values.tolist():
        value = (raw or "").strip()
        if value:
            seen[value] = None
            if len(seen) > MAX_IDS:
                raise StepRefused("too_many_ids", f"more than {MAX_IDS:,} IDs; split the list")
    if len(seen) < ctx.min_group_size:
        raise StepRefused("group_too_small", f"fewer IDs than the minimum group size {ctx.min_group_size}")
    return list(seen), len(values)


def _received(value: Any, width: int = ristretto.ELEMENT_BYTES) -> list[bytes]:
    try:
        if width == ristretto.ELEMENT_BYTES:
            return ristretto.unpack_elements(value, MAX_IDS)
        return ristretto.unpack(value, width, MAX_IDS)
    except ristretto.GroupError as exc:
        raise StepRefused("bad_elements", str(exc)) from None


def node_step(ctx: NodeContext, step: str, body: dict[str, Any], rng: random.Random | None = None) -> StepResult:
    rng = rng or _SYSTEM_RANDOM
    if step == "psi_forget":  # a right the alignment was made under has ended: its IDs go
        had = bool(ctx.state_get(ALIGNMENT) or ctx.state_get(SECRET))
        ctx.state_drop(ALIGNMENT)
        ctx.state_drop(SECRET)
        return StepResult({"forgotten": True, "had_alignment": had}, rows=0, records=0)
    if step == "psi_blind":
        # Asked again (a redelivery after a crash), the node answers with the scalar and the
        # order it kept: the same list again, nothing new to compare.
        stored = ctx.state_get(SECRET)
        if stored:
            ids, a = stored["ids"], ristretto.scalar_from_hex(stored["scalar"])
        else:
            ids, _ = local_ids(ctx, body["dataset"], body["id_column"])
            if "only" in body:  # some records of the dataset, named by the consumer (scoring)
                wanted = set(body["only"]) if isinstance(body["only"], list) else set()
                ids = [i for i in ids if i in wanted]
                if len(ids) < ctx.min_group_size:
                    raise StepRefused(
                        "group_too_small", f"fewer records than the minimum group size {ctx.min_group_size}"
                    )
            rng.shuffle(ids)
            a = ristretto.random_scalar(None if rng is _SYSTEM_RANDOM else rng)
            ctx.state_put(SECRET, {"scalar": ristretto.scalar_to_hex(a), "ids": ids, **_source(body)})
        return StepResult({"elements": ristretto.pack(ristretto.hash_and_blind(ids, a))})
    if step == "psi_exchange":
        peer = _received(body["elements"])
        if len(set(peer)) != len(peer):  # one ID blinded twenty times is a group of one
            raise StepRefused("repeated_ids", "the other list repeats an ID")
        if len(peer) < ctx.min_group_size:
            raise StepRefused(
                "group_too_small", f"the other list has fewer IDs than the minimum group size {ctx.min_group_size}"
            )
        ids, rows_read = local_ids(ctx, body["dataset"], body["id_column"])
        rng.shuffle(ids)
        b = ristretto.random_scalar(None if rng is _SYSTEM_RANDOM else rng)
        tags = [ristretto.tag(x) for x in ristretto.blind_all(peer, b)]
        own = ristretto.hash_and_blind(ids, b)
        ctx.state_put(SECRET, {"ids": ids, **_source(body)})  # b is not kept: nothing more is blinded with it
        return StepResult(
            {"peer_tags": ristretto.pack(tags), "elements": ristretto.pack(own)}, rows=rows_read, records=0
        )
    if step == "psi_match":
        stored = ctx.state_get(SECRET)
        if not stored or "scalar" not in stored:
            raise StepRefused("no_key", "this node holds no blinding scalar for the job")
        party = str(body.get("party"))
        peer_tags = _received(body["peer_tags"], ristretto.TAG_BYTES)
        if len(peer_tags) != len(stored["ids"]):
            raise StepRefused("bad_elements", "the provider's tags do not answer this node's list")
        theirs = _received(body["elements"])
        a = ristretto.scalar_from_hex(stored["scalar"])
        position = {ristretto.tag(x): j for j, x in enumerate(ristretto.blind_all(theirs, a))}
        pairs = {k: position[t] for k, t in enumerate(peer_tags) if t in position}
        ctx.state_put(f"{SECRET}.{_safe(party)}", {"pairs": [[k, j] for k, j in pairs.items()]})
        return StepResult({"party": party})
    if step == "psi_align":
        stored = ctx.state_get(SECRET)
        if not stored or "scalar" not in stored:
            raise StepRefused("no_key", "this node holds no blinding scalar for the job")
        providers = [str(p) for p in body.get("providers") or []]
        matches = []
        for p in providers:
            m = ctx.state_get(f"{SECRET}.{_safe(p)}")
            if not m:
                raise StepRefused("not_matched", f"this node has not matched {p!r}")
            matches.append({k: j for k, j in m["pairs"]})
        common = [k for k in range(len(stored["ids"])) if all(k in m for m in matches)]
        rng.shuffle(common)  # the common order: random, so positions tell the hub nothing
        ctx.state_put(ALIGNMENT, {"ids": [stored["ids"][k] for k in common], **_bound(ctx, stored)})
        indices = {p: _pack_positions([m[k] for k in common]) for p, m in zip(providers, matches, strict=True)}
        ctx.state_drop(SECRET)
        for p in providers:
            ctx.state_drop(f"{SECRET}.{_safe(p)}")
        return StepResult({"size": len(common), "indices": indices})
    if step == "psi_keep":
        stored = ctx.state_get(SECRET)
        if not stored or "ids" not in stored:
            raise StepRefused("no_list", "this node exchanged no list in this job")
        positions = _unpack_positions(body.get("positions"), len(stored["ids"]))
        if len(positions) < ctx.min_group_size:
            raise StepRefused(
                "group_too_small", f"the intersection is smaller than the minimum group size {ctx.min_group_size}"
            )
        ctx.state_put(ALIGNMENT, {"ids": [stored["ids"][j] for j in positions], **_bound(ctx, stored)})
        ctx.state_drop(SECRET)
        return StepResult({"kept": len(positions)}, rows=0, records=len(positions))
    raise StepRefused("unknown_step", f"psi_align has no step {step!r}")


def _source(body: dict[str, Any]) -> dict[str, Any]:
    return {"dataset": body.get("dataset"), "id_column": body.get("id_column")}


def _bound(ctx: NodeContext, stored: dict[str, Any]) -> dict[str, Any]:
    """What an alignment is kept for: the dataset and ID column it aligned, and on a provider
    the right it was made under (a later job may use it only under that right)."""
    grant = ctx.grant or {}
    return {"dataset": stored.get("dataset"), "id_column": stored.get("id_column"), "right": grant.get("right")}


def reuse_alignment(ctx: NodeContext, job: Any, dataset: str, id_column: str) -> int:
    """Take the alignment this node kept in an earlier job ``job`` into the current one, if it
    aligned this dataset and ID column and, on a provider, under the right now presented.
    Returns its size; refuses otherwise."""
    if not isinstance(job, str):
        raise StepRefused("no_alignment", "name the earlier job that aligned the rows")
    earlier = ctx.model_get(job, ALIGNMENT)
    right = (ctx.grant or {}).get("right")
    if not earlier or (earlier.get("dataset"), earlier.get("id_column")) != (dataset, id_column):
        raise StepRefused("no_alignment", "this node kept no alignment of this dataset in that job")
    if earlier.get("right") != right:
        raise StepRefused("no_alignment", "that alignment was made under another right")
    ctx.state_put(ALIGNMENT, earlier)
    return len(earlier["ids"])


def _safe(party: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in party)[:60]


def _pack_positions(positions: list[int]) -> str:
    return ristretto.pack([struct.pack("<I", p) for p in positions])


def _unpack_positions(value: Any, length: int) -> list[int]:
    try:
        raw = ristretto.unpack(value, 4, MAX_IDS)
    except ristretto.GroupError as exc:
        raise StepRefused("bad_positions", str(exc)) from None
    positions = [struct.unpack("<I", r)[0] for r in raw]
    if len(set(positions)) != len(positions) or any(p >= length for p in positions):
        raise StepRefused("bad_positions", "positions repeat or point outside this node's list")
    return positions


def aligned_ids(ctx: NodeContext) -> list[str]:
    """This node's IDs of the intersection, in the job's common order (after ``psi_keep``/``psi_align``)."""
    stored = ctx.state_get(ALIGNMENT)
    if not stored:
        raise StepRefused("not_aligned", "this node holds no alignment for the job")
    ids: list[str] = stored["ids"]
    return ids


@register
class PsiAlign:
    name = "psi_align"
    operation = "psi_align"
    summary = "Align your records with providers' by PSI: each node learns which of its own records are shared."
    params_schema = params_schema(ALIGNMENT_SCHEMA, ["consumer_dataset", "consumer_id_column"])
    consumer_steps = CONSUMER_STEPS

    def __init__(self, node_rng: random.Random | None = None) -> None:
        self.node_rng = node_rng  # tests only: the nodes' scalars and orders

    def passes(self, params: dict[str, Any], step: str) -> int:
        return ONE_PASS

    def privacy_epsilon(self, params: dict[str, Any]) -> float:
        return 0.0  # no noisy release: the parties learn membership, by design (see the docstring)

    def validate(self, params: dict[str, Any], datasets: list[DatasetInfo]) -> dict[str, Any]:
        errors: dict[str, list[str]] = {}
        clean = validate_alignment(params, datasets, errors)
        refuse_unknown(params, PARAMS, errors)
        if errors:
            raise ParamError(errors)
        return clean

    def start(self, job: JobView) -> Progress:
        return start(job)

    def on_result(self, job: JobView, step: str, party: str, body: dict[str, Any]) -> Progress:
        out = on_result(job, step, party, body)
        if isinstance(out, Progress):
            return out
        outputs = {
            "aligned_records": out,
            "providers": len(job.providers),
            "consumer_ids": job.state["align"]["consumer_count"],
        }
        return Progress(outputs=outputs, percent=100, delivers=True)

    def node_step(self, ctx: NodeContext, step: str, body: dict[str, Any]) -> StepResult:
        return node_step(ctx, step, body, self.node_rng)
