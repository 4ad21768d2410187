"""Drive an algorithm's hub and node sides in one process, with no hub, broker or files.

Every node is a :class:`FakeNode` (a ``NodeContext`` over dicts, with a real Ed25519 key for
the statements nodes sign for each other); every message body goes through canonical JSON
both ways, as it would on the wire, and the job's state is persisted as JSON between steps.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from compute.algorithms.base import Algorithm, JobView, StepRefused
from protocol import envelope, keys, sealed
from protocol.canonical import canonical


class FakeNode:
    def __init__(self, slug: str, rows: dict[str, list[dict[str, str]]], min_group: int = 2) -> None:
        self.slug = slug
        self.job = "job-1"
        self.rows = rows
        self.min_group_size = min_group
        self.states: dict[str, dict[str, dict[str, Any]]] = {}  # job → name → value, as on disk
        self.memory: dict[str, dict[str, Any]] = {}  # what the node remembers across jobs
        self.grant: dict[str, Any] | None = None
        self.key = Ed25519PrivateKey.generate()
        self.kid = keys.key_id(self.key)
        self.consumer: FakeNode | None = None  # whose statements this node accepts
        self.loads = 0

    def load_rows(self, local_name: str) -> list[dict[str, str]]:
        self.loads += 1
        if local_name not in self.rows:
            raise StepRefused("no_dataset", f"no dataset {local_name!r}")
        return self.rows[local_name]

    @property
    def state(self) -> dict[str, dict[str, Any]]:
        """The current job's state."""
        return self.states.setdefault(self.job, {})

    def model_get(self, job: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.states.get(job, {}).get(name, {}))

    def load_columns(self, local_name: str, columns: list[str]) -> dict[str, Any]:
        rows = self.load_rows(local_name)
        for c in columns:
            if rows and c not in rows[0]:
                raise StepRefused("no_column", f"no column {c!r} in the local dataset")
        return {c: np.array([(r.get(c) or "") for r in rows], dtype=object) for c in columns}

    def load_numeric(self, local_name: str, id_column: str, columns: list[str]) -> tuple[list[str], Any]:
        data = self.load_columns(local_name, [id_column, *columns])
        out = np.empty((len(data[id_column]), len(columns)))
        for j, c in enumerate(columns):
            try:
                out[:, j] = [float(v) if str(v).strip() else np.nan for v in data[c]]
            except ValueError:
                raise StepRefused("not_numeric", f"column {c!r} is not numeric") from None
        return [str(v).strip() for v in data[id_column]], out

    def state_get(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.state.get(name, {}))

    def memory_get(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.memory.get(name, {}))

    def memory_put(self, name: str, value: dict[str, Any]) -> None:
        self.memory[name] = json.loads(json.dumps(value))

    def state_put(self, name: str, value: dict[str, Any]) -> None:
        self.state[name] = json.loads(json.dumps(value))  # as the runtime stores it: JSON on disk

    def state_drop(self, name: str) -> None:
        self.state.pop(name, None)

    def sign(self, payload: dict[str, Any]) -> dict[str, Any]:
        return envelope.sign_payload(payload, key=self.key, kid=self.kid)

    def seal_to(self, node_key: str, value: Any) -> dict[str, str]:
        return sealed.seal_body(value, keys.public_from_b64(node_key))

    def unseal(self, value: Any) -> Any:
        try:
            return sealed.open_body(value, self.key)
        except sealed.SealError as exc:
            raise StepRefused("not_sealed", str(exc)) from None

    def consumer_statement(self, statement: Any, kind: str) -> dict[str, Any]:
        signer = self.consumer or self
        try:
            opened = envelope.verify_signed(
                statement, lambda kid: signer.key.public_key() if kid == signer.kid else None
            )
        except envelope.EnvelopeError as exc:
            raise StepRefused("unsigned_key", str(exc)) from None
        if opened.payload.get("type") != kind or opened.payload.get("job") != self.job:
            raise StepRefused("unsigned_key", "the key statement is for another job or purpose")
        return opened.payload


def _wire(value: dict[str, Any]) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(canonical(value))
    return parsed


def drive(
    algo: Algorithm, job: JobView, nodes: dict[str, FakeNode], *, limit: int = 100_000, trace: list[Any] | None = None
) -> dict[str, Any]:
    """Run ``job`` to its end; returns its outputs. ``trace`` collects (step, party, sent, reply)."""
    job.parties = [  # the hub names each party's node key, as the ledger has it
        p if p.node_key else dataclasses.replace(p, node_key=keys.public_b64(nodes[p.key].key)) for p in job.parties
    ]
    outbox = list(algo.start(job).sends)
    job.state = json.loads(canonical(job.state))
    outputs = None
    for _ in range(limit):
        if not outbox:
            break
        send = outbox.pop(0)
        sent = _wire(send.body)
        try:
            result = algo.node_step(nodes[send.party], send.step, sent)
        except StepRefused as refused:
            if not hasattr(algo, "on_refused"):
                raise
            # As the hub does: an algorithm that survives a refusal (a provider dropping out) goes on.
            progress = algo.on_refused(job, send.step, send.party, f"{refused} ({refused.code})")
            job.state = json.loads(canonical(job.state))
            outbox.extend(progress.sends)
            outputs = progress.outputs or outputs
            continue
        reply = _wire(result.body)
        if trace is not None:
            trace.append((send.step, send.party, sent, reply, result.rows, result.records))
        progress = algo.on_result(job, send.step, send.party, reply)
        job.state = json.loads(canonical(job.state))  # the hub persists state as JSON between messages
        outbox.extend(progress.sends)
        outputs = progress.outputs or outputs
    if outputs is None:
        raise AssertionError(f"the job did not finish (state {job.state.get('phase')!r})")
    return outputs
