"""The contract every federated algorithm implements.

Pure module: no Django, no I/O beyond what a node context offers. The hub drives an
algorithm as a state machine (``start`` then ``on_result`` per arriving message) and
persists ``state`` between messages, so no task ever blocks waiting for a party. The
node side is ``node_step``: a signed step in, a result body (and usage) out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


class ParamError(ValueError):
    """Invalid job parameters, with messages per field (mapped to a 400)."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


KEY_BITS = (1024, 2048, 3072)


# --- parameter schemas -------------------------------------------------------------------
# Each algorithm states its parameters as a JSON Schema (the subset OpenAPI 3.0 shares with
# JSON Schema draft 7): the hub validates a job's ``params`` against it before the
# algorithm's own checks, and the API schema's ``params`` is one ``oneOf`` branch per
# algorithm built from these, so a new algorithm brings its schema with it.
KEY_BITS_SCHEMA: dict[str, Any] = {
    "type": "integer",
    "enum": [1024, 2048, 3072],
    "default": 2048,
    "description": "Paillier modulus size of the job's fresh key.",
}
LOCAL_NAME_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": 100,
    "pattern": "^[A-Za-z0-9_-]+$",
    "x-pattern-message": "Letters, digits, '-' and '_' only.",
    "description": "The local name of your dataset on your own node.",
}
COLUMN_SCHEMA: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 200}


def params_schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """An object of exactly these parameters (others are refused by name)."""
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def key_bits_param(params: dict[str, Any], errors: dict[str, list[str]], default: int = 2048) -> Any:
    """The Paillier key size a job asks for, with a field error if it is not one of :data:`KEY_BITS`."""
    bits = params.get("key_bits", default)
    if isinstance(bits, bool) or bits not in KEY_BITS:
        errors["key_bits"] = ["key_bits must be 1024, 2048 or 3072."]
    return bits


def consumer_ids_params(params: dict[str, Any], errors: dict[str, list[str]], noun: str = "dataset") -> tuple[Any, Any]:  # noqa: E501
    """The consumer's own dataset (its local name on its node) and its ID column, with field errors."""
    local = params.get("consumer_dataset")
    if not isinstance(local, str) or not local:
        errors["consumer_dataset"] = ["This field is required."]
    elif len(local) > 100 or not local.replace("_", "").replace("-", "").isalnum():
        errors["consumer_dataset"] = [f"Give the local name of your {noun}: letters, digits, '-' and '_'."]
    column = params.get("consumer_id_column")
    if not isinstance(column, str) or not column.strip():
        errors["consumer_id_column"] = ["This field is required."]
    elif len(column) > 200:
        errors["consumer_id_column"] = ["At most 200 characters."]
    return local, column


def refuse_unknown(params: dict[str, Any], allowed: set[str], errors: dict[str, list[str]]) -> None:
    """A field error naming every parameter the algorithm does not take (nothing is silently ignored)."""
    unknown = set(params) - allowed
    if unknown:
        errors["params"] = [f"unknown parameter(s): {', '.join(sorted(unknown))}."]


class StepRefused(Exception):
    """The node will not run this step (policy, right, group size); ``code`` names why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # "number" | "integer" | "string"
    role: str  # "id" | "feature" | "label"
    bins: tuple[float, ...] | None = None  # histogram bin edges the provider declares for it


@dataclass(frozen=True)
class DatasetInfo:
    id: int
    name: str
    columns: tuple[Column, ...]

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True)
class Party:
    """A participant as the hub sees it: a node, and for providers the dataset + grant."""

    key: str  # unique within the job, e.g. "consumer" or "provider:12"
    node: str  # node slug, i.e. its queue is node.<slug>
    role: str  # "consumer" | "provider"
    dataset_id: int | None = None
    dataset_local: str | None = None
    grant: dict[str, Any] | None = None
    node_key: str | None = None  # the node's enrolled Ed25519 public key (base64): what a peer seals to


@dataclass
class JobView:
    id: str
    params: dict[str, Any]
    parties: list[Party]
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def consumer(self) -> Party:
        return next(p for p in self.parties if p.role == "consumer")

    @property
    def providers(self) -> list[Party]:
        return [p for p in self.parties if p.role == "provider"]

    def party(self, key: str) -> Party:
        return next(p for p in self.parties if p.key == key)


@dataclass(frozen=True)
class Send:
    party: str
    step: str
    body: dict[str, Any]
    round: int = 0


@dataclass
class Progress:
    """What the hub should do after a message: send more, finish, and the progress."""

    sends: list[Send] = field(default_factory=list)
    outputs: dict[str, Any] | None = None  # set when the job is finished
    percent: int = 0
    privacy_spent: float = 0.0  # ε released by this step (charged to each provider right)
    # The consumer now holds what it paid for (e.g. the aggregate its node decrypts): the
    # job is charged from here on, whatever the consumer's node does next.
    delivers: bool = False
    # Providers whose data the delivered result does not use (each suppressed its group as
    # below the minimum size): settled without a charge.
    withheld: frozenset[str] = frozenset()


@dataclass
class StepResult:
    body: dict[str, Any]
    rows: int | None = None  # rows of the provider dataset this step touched (for receipts)
    records: int | None = None  # records the step used (aggregated, matched, scored): per-record plans


# A receipt's ``rows`` and ``records`` may not exceed the dataset's attested row count times
# the passes a step makes over it (one for every step so far); the hub and the offline
# verifier both hold a receipt to this bound (docs/decisions/0009-metering.md).
ONE_PASS = 1


class NodeContext(Protocol):
    @property
    def slug(self) -> str: ...

    @property
    def job(self) -> str: ...

    def sign(self, payload: dict[str, Any]) -> dict[str, Any]:
        """This node's signature over a statement that other parties verify (e.g. a job key)."""
        ...

    def consumer_statement(self, statement: Any, kind: str) -> dict[str, Any]:
        """The payload of ``statement`` if the job's consumer node signed it for this job (``type`` ``kind``),
        verified against the consumer node key the grant names; raises :class:`StepRefused` otherwise."""
        ...

    def seal_to(self, node_key: str, value: Any) -> dict[str, str]:
        """``value`` sealed to the holder of ``node_key`` (a peer node): the hub relays it unread."""
        ...

    def unseal(self, value: Any) -> Any:
        """What a peer sealed to this node; raises :class:`StepRefused` if it is not that."""
        ...

    def load_rows(self, local_name: str) -> list[dict[str, str]]: ...

    def load_columns(self, local_name: str, columns: list[str]) -> dict[str, Any]:
        """Only ``columns`` of a local dataset, each a numpy array of text (read in batches)."""
        ...

    def load_numeric(self, local_name: str, id_column: str, columns: list[str]) -> tuple[list[str], Any]:
        """The ID column and ``columns`` as a float matrix (NaN where blank), converted batch by batch."""
        ...

    def state_get(self, job: str) -> dict[str, Any]: ...

    def state_put(self, job: str, value: dict[str, Any]) -> None: ...

    def state_drop(self, job: str) -> None: ...

    def model_get(self, job: str, name: str) -> dict[str, Any]:
        """What this node kept under ``name`` at the end of an earlier job ``job`` (a model part), or {}."""
        ...

    def memory_get(self, name: str) -> dict[str, Any]:
        """What the node remembers across jobs under ``name`` (e.g. the bin edges it released), or {}."""
        ...

    def memory_put(self, name: str, value: dict[str, Any]) -> None:
        """Remember ``value`` across jobs (atomically, before the reply leaves)."""
        ...

    @property
    def grant(self) -> dict[str, Any] | None:
        """The usage right the hub presented for this step (None on the consumer's own steps)."""
        ...

    @property
    def min_group_size(self) -> int: ...


class Algorithm(Protocol):
    name: str
    operation: str  # what a usage right must permit
    summary: str
    # Steps run on the consumer's own node: no usage right is presented, and they may
    # read only datasets the node's policy lists under ``consumer_datasets``.
    consumer_steps: frozenset[str]
    params_schema: dict[str, Any]  # JSON Schema of ``params`` (see :func:`params_schema`)

    def validate(self, params: dict[str, Any], datasets: list[DatasetInfo]) -> dict[str, Any]: ...

    def privacy_epsilon(self, params: dict[str, Any]) -> float: ...

    def start(self, job: JobView) -> Progress: ...

    def on_result(self, job: JobView, step: str, party: str, body: dict[str, Any]) -> Progress: ...

    def node_step(self, ctx: NodeContext, step: str, body: dict[str, Any]) -> StepResult: ...

    def passes(self, params: dict[str, Any], step: str) -> int:
        """How many times ``step`` may read each row of a provider's dataset (the metering bound)."""
        ...


REGISTRY: dict[str, Algorithm] = {}


def register(cls: Callable[[], Algorithm]) -> Callable[[], Algorithm]:
    instance = cls()
    REGISTRY[instance.name] = instance
    return cls


def get_algorithm(name: str) -> Algorithm:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ParamError({"algorithm": [f"unknown algorithm {name!r}"]}) from None
