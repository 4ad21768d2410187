"""``psi``: private set intersection cardinality, released as a noised overlap preview.

Diffie–Hellman (commutative) PSI (Huberman, Franklin & Hogg, EC 1999) in ristretto255
(RFC 9496, ``protocol.ristretto``), arranged so that the hub, not a data party, compares
(for the alignment that vertical learning needs, see ``psi_align``):

1. consumer ``psi_blind``: a·H(x) for each of its IDs, shuffled; ``a`` stays in node state.
2. provider ``psi_exchange``: tags of b·a·H(x) for the consumer's list and b·H(y) for its
   own IDs, each shuffled; ``b`` lives only for the step.
3. consumer ``psi_finish``: tags of a·b·H(y), shuffled; then it forgets ``a``.
4. hub: |tags(b·a·H(x)) ∩ tags(a·b·H(y))|, which it releases only with noise.

No node sees both doubly blinded lists, so neither data party learns the cardinality or
which IDs match; the hub sees pseudorandom group elements (lists travel packed, base64) and learns the count (and the
list lengths |X|, |Y|), never an identity. Trust: the hub is honest-but-curious. A hub
that deviated — sent hashes of guessed IDs instead of a party's list — could test those
guesses; every such message is signed, logged and, on a provider, receipted in the ledger.

The release adds Laplace noise of scale 1/ε in its discrete form, the two-sided geometric
mechanism (Ghosh, Roughgarden & Sundararajan, STOC 2009): ε-DP for a count of sensitivity
1 and integer-valued, so no floating-point low bits can leak the true count (Mironov, CCS
2012). The estimate is clamped to [0, min(|X|, |Y|)]; the bucket and fraction are derived
from it (post-processing). The exact count is never stored: the hub drops both tag sets
when it finishes. IDs are compared as exact strings after trimming surrounding blanks.

Minimum group size: the hub and the provider count *distinct* blinded elements, so one
target ID repeated to fill the group is refused. They cannot tell a blinded ID from a
random group element, though: a consumer that pads one target with random elements
passes the size check, and only the release's noise (and the lifetime ε on previews)
bounds what it learns about that one ID.
"""

from __future__ import annotations

import math
import random
import secrets
from decimal import Decimal
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
    register,
)
from compute.algorithms.dp import discrete_laplace
from protocol import ristretto

MAX_IDS = 1_000_000
MAX_EPSILON = 10.0
STATE = "psi"  # the consumer node's per-job state: its secret exponent, nothing else
BUCKETS = ((10_000, "10,000+"), (1_000, "1,000–9,999"), (100, "100–999"), (1, "1–99"), (0, "0"))
PARAMS = {"consumer_dataset", "consumer_id_column", "epsilon"}

_SYSTEM_RANDOM = secrets.SystemRandom()


@register
class Psi:
    name = "psi"
    operation = "psi"
    summary = "Noised size of the overlap between your ID list and a provider's, by Diffie–Hellman PSI."
    params_schema = params_schema(
        {
            "consumer_dataset": {**LOCAL_NAME_SCHEMA, "description": "Your ID file's local name on your node."},
            "consumer_id_column": {**COLUMN_SCHEMA, "description": "Its ID column."},
            "epsilon": {
                "type": "number",
                "minimum": 0.001,
                "maximum": MAX_EPSILON,
                "default": 1.0,
                "description": "ε of the noised count (at most 3 decimals), charged to the right's budget.",
            },
        },
        ["consumer_dataset", "consumer_id_column"],
    )
    # The runtime checks a usage right on every step not listed here; psi_exchange reads
    # provider data and therefore must never be named in this set.
    consumer_steps = frozenset({"psi_blind", "psi_finish"})

    def __init__(self, rng: random.Random | None = None, node_rng: random.Random | None = None) -> None:
        # Injectable for tests only: ``rng`` draws the hub's noise, ``node_rng`` the nodes'
        # exponents and shuffles. Both default to the operating system's CSPRNG.
        self.rng = rng if rng is not None else _SYSTEM_RANDOM
        self.node_rng = node_rng if node_rng is not None else _SYSTEM_RANDOM

    def _scalar(self) -> bytes:
        return ristretto.random_scalar(None if self.node_rng is _SYSTEM_RANDOM else self.node_rng)

    def passes(self, params: dict[str, Any], step: str) -> int:
        return ONE_PASS  # ``psi_exchange`` reads each row once

    def privacy_epsilon(self, params: dict[str, Any]) -> float:
        """The ε a paid job releases (a free preview has no right to charge)."""
        return float(params.get("epsilon", 0.0))

    def validate(self, params: dict[str, Any], datasets: list[DatasetInfo]) -> dict[str, Any]:
        errors: dict[str, list[str]] = {}
        local, column = consumer_ids_params(params, errors, noun="ID file")
        epsilon = params.get("epsilon", 1.0)
        if isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or not math.isfinite(epsilon):
            errors["epsilon"] = ["epsilon must be a number."]
        elif not 0 < epsilon <= MAX_EPSILON:
            errors["epsilon"] = [f"epsilon must be greater than 0 and at most {MAX_EPSILON:g}."]
        elif Decimal(str(epsilon)).as_tuple().exponent < -3:  # type: ignore[operator]
            errors["epsilon"] = ["epsilon has at most 3 decimals (budgets are kept in thousandths)."]
        unknown = set(params) - PARAMS
        if unknown:
            errors["params"] = [f"unknown parameter(s): {', '.join(sorted(unknown))}."]
        provider_column = None
        if len(datasets) != 1:
            errors["datasets"] = [f"psi takes exactly one provider dataset, not {len(datasets)}."]
        else:
            ids = [c.name for c in datasets[0].columns if c.role == "id"]
            if len(ids) != 1:
                errors["datasets"] = [f"dataset {datasets[0].name!r} must have exactly one ID column, not {len(ids)}."]
            else:
                provider_column = ids[0]
        if errors:
            raise ParamError(errors)
        return {
            "consumer_dataset": local,
            "consumer_id_column": column,
            "epsilon": float(epsilon),
            "provider_id_column": provider_column,
        }

    # --- hub side -------------------------------------------------------------------
    def start(self, job: JobView) -> Progress:
        job.state = {"phase": "blind"}
        body = {"dataset": job.params["consumer_dataset"], "id_column": job.params["consumer_id_column"]}
        return Progress(sends=[Send(job.consumer.key, "psi_blind", body)], percent=5)

    def on_result(self, job: JobView, step: str, party: str, body: dict[str, Any]) -> Progress:
        phase = job.state.get("phase")
        if step == "psi_blind" and phase == "blind" and party == job.consumer.key:
            elements = _relayed_elements(body["elements"])
            _distinct(elements, "the consumer's blinded list")
            (provider,) = job.providers
            floor = int((provider.grant or {}).get("min_group_size", 1))
            if len(elements) < floor:
                raise ValueError(f"the consumer's list has fewer distinct IDs than the minimum group size {floor}")
            job.state = {"phase": "exchange", "consumer_count": len(elements)}
            args = {"dataset": provider.dataset_local, "id_column": job.params["provider_id_column"]}
            return Progress(
                sends=[Send(provider.key, "psi_exchange", {**args, "elements": body["elements"]})], percent=30
            )
        if step == "psi_exchange" and phase == "exchange" and party == job.providers[0].key:
            peer_tags = _tags(body["peer_tags"])
            if len(peer_tags) != job.state["consumer_count"]:
                raise ValueError("the provider re-blinded a list of another length")
            own = _relayed_elements(body["elements"])
            _distinct(own, "the provider's blinded list")
            job.state = {**job.state, "phase": "finish", "provider_count": len(own), "peer_tags": body["peer_tags"]}
            return Progress(sends=[Send(job.consumer.key, "psi_finish", {"elements": body["elements"]})], percent=65)
        if step == "psi_finish" and phase == "finish" and party == job.consumer.key:
            tags = _tags(body["tags"])
            if len(tags) != job.state["provider_count"]:
                raise ValueError("the consumer finished a list of another length")
            n_consumer, n_provider = job.state["consumer_count"], job.state["provider_count"]
            exact = len(set(_tags(job.state["peer_tags"])).intersection(tags))
            outputs = release(exact, n_consumer, n_provider, job.params["epsilon"], self.rng)
            job.state = {"phase": "done"}  # the tag sets (and with them the exact count) go
            return Progress(outputs=outputs, percent=100, privacy_spent=float(job.params["epsilon"]))
        raise ValueError(f"psi did not expect step {step!r} from {party!r} in phase {phase!r}")

    # --- node side ------------------------------------------------------------------
    def node_step(self, ctx: NodeContext, step: str, body: dict[str, Any]) -> StepResult:
        if step == "psi_blind":
            # Asked again (a redelivery after a crash, or a hub asking twice), the node blinds
            # with the exponent it kept: the same set again, nothing new to compare.
            stored = ctx.state_get(STATE)
            ids, _ = _local_ids(ctx, body["dataset"], body["id_column"])
            a = ristretto.scalar_from_hex(stored["scalar"]) if stored else self._scalar()
            blinded = ristretto.hash_and_blind(ids, a)
            self.node_rng.shuffle(blinded)
            if not stored:
                ctx.state_put(STATE, {"scalar": ristretto.scalar_to_hex(a)})
            return StepResult({"elements": ristretto.pack(blinded)})
        if step == "psi_exchange":
            peer = _received(body["elements"])
            # Distinct elements, not list entries: one target ID blinded twenty times is a
            # group of one, and would turn the overlap into a membership test.
            if len(set(peer)) != len(peer):
                raise StepRefused("repeated_ids", "the other list repeats an ID")
            if len(peer) < ctx.min_group_size:
                raise StepRefused(
                    "group_too_small",
                    f"the other list has fewer IDs than the minimum group size {ctx.min_group_size}",
                )
            ids, rows_read = _local_ids(ctx, body["dataset"], body["id_column"])
            b = self._scalar()
            peer_tags = [ristretto.tag(x) for x in ristretto.blind_all(peer, b)]
            own = ristretto.hash_and_blind(ids, b)
            self.node_rng.shuffle(peer_tags)
            self.node_rng.shuffle(own)
            return StepResult(
                {"peer_tags": ristretto.pack(peer_tags), "elements": ristretto.pack(own)},
                rows=rows_read,
                records=len(ids),
            )
        if step == "psi_finish":
            stored = ctx.state_get(STATE)
            if not stored:
                raise StepRefused("no_key", "this node holds no blinding exponent for the job")
            provider = _received(body["elements"])
            tags = [
                ristretto.tag(x) for x in ristretto.blind_all(provider, ristretto.scalar_from_hex(stored["scalar"]))
            ]
            self.node_rng.shuffle(tags)
            ctx.state_drop(STATE)  # one finish per job: a second list cannot be re-blinded with a
            return StepResult({"tags": ristretto.pack(tags)})
        raise StepRefused("unknown_step", f"psi has no step {step!r}")


def _local_ids(ctx: NodeContext, dataset: str, column: str) -> tuple[list[str], int]:
    """The distinct, non-blank IDs of a local dataset, in file order, and the rows read; refuses what policy forbids."""
    seen: dict[str, None] = {}
    rows = ctx.load_rows(dataset)
    for row in rows:
        if column not in row:
            raise StepRefused("no_column", f"no column {column!r} in the local dataset")
        value = (row[column] or "").strip()  # a short CSV row gives None
        if value:
            seen[value] = None
            if len(seen) > MAX_IDS:
                raise StepRefused("too_many_ids", f"more than {MAX_IDS:,} IDs; split the list")
    if len(seen) < ctx.min_group_size:
        raise StepRefused("group_too_small", f"fewer IDs than the minimum group size {ctx.min_group_size}")
    return list(seen), len(rows)


def _received(values: Any) -> list[bytes]:
    try:
        return ristretto.unpack_elements(values, MAX_IDS)
    except ristretto.GroupError as exc:
        raise StepRefused("bad_elements", str(exc)) from None


def _relayed_elements(values: Any) -> list[bytes]:
    try:
        return ristretto.unpack_elements(values, MAX_IDS)
    except ristretto.GroupError as exc:
        raise ValueError(f"malformed group elements: {exc}") from None


def _distinct(elements: list[bytes], what: str) -> None:
    """The hub counts distinct blinded elements: an honest node blinds each distinct ID once."""
    if len(set(elements)) != len(elements):
        raise ValueError(f"{what} repeats an element")


def _tags(values: Any) -> list[bytes]:
    try:
        return ristretto.unpack(values, ristretto.TAG_BYTES, MAX_IDS)
    except ristretto.GroupError as exc:
        raise ValueError(f"expected a list of tags: {exc}") from None


def bucket(n: int) -> str:
    return next(label for floor, label in BUCKETS if n >= floor)


def release(exact: int, n_consumer: int, n_provider: int, epsilon: float, rng: random.Random) -> dict[str, Any]:
    """What the consumer gets: its own |X|, and a noised overlap with what derives from it."""
    estimate = min(max(exact + discrete_laplace(epsilon, rng), 0), n_consumer, n_provider)
    return {
        "consumer_ids": n_consumer,
        "overlap_estimate": estimate,
        "overlap_bucket": bucket(estimate),
        "overlap_fraction": round(estimate / n_consumer, 4) if n_consumer else 0.0,
        "epsilon": epsilon,
        "noise": "discrete Laplace (two-sided geometric), scale 1/epsilon",
    }
