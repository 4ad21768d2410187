"""What a node does with one message: verify, check policy and right, compute, sign.

Pure with respect to the hub: signed envelope in, signed envelope (+ receipt) out.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from compute.algorithms import get_algorithm
from compute.algorithms.base import StepRefused
from compute.node import datasets, sources
from compute.node.config import NodeConfig
from protocol import attest, envelope, keys, sealed

log = logging.getLogger(__name__)
_SAFE_JOB = re.compile(r"(?!.*\.\.)[A-Za-z0-9_-][A-Za-z0-9_.-]{0,79}")  # job ids and state names: never a path


@dataclass
class LocalContext:
    """The NodeContext an algorithm sees: local files, per-job state, effective policy."""

    config: NodeConfig
    job: str
    min_group_size: int
    grant: dict[str, Any] | None = None
    # State is dropped only once the reply is kept (see handle_step): a node killed in
    # between still has what it needs to answer the redelivered step.
    after_reply: list[Callable[[], None]] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return self.config.slug

    def sign(self, payload: dict[str, Any]) -> dict[str, Any]:
        return envelope.sign_payload(payload, key=self.config.private_key, kid=self.config.kid)

    def seal_to(self, node_key: str, value: Any) -> dict[str, str]:
        try:
            return sealed.seal_body(value, keys.public_from_b64(node_key))
        except ValueError:
            raise StepRefused("bad_key", "the peer's node key is not an Ed25519 public key") from None

    def unseal(self, value: Any) -> Any:
        try:
            return sealed.open_body(value, self.config.private_key)
        except sealed.SealError as exc:
            raise StepRefused("not_sealed", str(exc)) from None

    def consumer_statement(self, statement: Any, kind: str) -> dict[str, Any]:
        """Verified against the consumer node's enrolled key, which the hub presents in the grant
        and which this node names in its receipt (``consumer_kid``), so an auditor checks it
        against the ``node_enrolled`` entries of the consumer organisation."""
        node = (self.grant or {}).get("consumer_node")
        if not isinstance(node, dict) or not isinstance(statement, dict) or statement.get("kid") != node.get("kid"):
            raise StepRefused("unsigned_key", "the job's key is not signed by the consumer's node")
        try:
            public = keys.public_from_b64(str(node.get("public_key")))
            if keys.key_id(public) != node.get("kid"):
                raise ValueError("the consumer node key does not match its key id")
            opened = envelope.verify_signed(statement, lambda kid: public if kid == node["kid"] else None)
        except (ValueError, envelope.EnvelopeError) as exc:
            raise StepRefused("unsigned_key", f"the job's key statement does not verify: {exc}") from None
        if opened.payload.get("type") != kind or opened.payload.get("job") != self.job:
            raise StepRefused("unsigned_key", "the key statement is for another job or purpose")
        return opened.payload

    def _spec(self, local_name: str) -> dict[str, Any]:
        if not local_name or not local_name.replace("_", "").replace("-", "").isalnum():
            raise StepRefused("no_dataset", f"invalid dataset name {local_name!r}")
        spec = next((s for s in self.config.dataset_specs() if s.get("local") == local_name), None)
        return spec if spec is not None else {"local": local_name}

    def load_rows(self, local_name: str) -> list[dict[str, str]]:
        try:
            return sources.read_rows(self.config.data_dir, self._spec(local_name))
        except sources.SourceError as exc:
            raise StepRefused("no_dataset", str(exc)) from None

    def load_numeric(self, local_name: str, id_column: str, columns: list[str]) -> tuple[list[str], Any]:
        """The IDs and ``columns`` as a float matrix, converted batch by batch (bounded memory)."""
        try:
            return sources.read_numeric(self.config.data_dir, self._spec(local_name), id_column, columns)
        except sources.SourceError as exc:
            msg = str(exc)
            code = "no_column" if "no column" in msg else "not_numeric" if "not numeric" in msg else "no_dataset"
            raise StepRefused(code, msg) from None

    def load_columns(self, local_name: str, columns: list[str]) -> dict[str, Any]:
        """Only ``columns`` of a local dataset, as arrays of text, read batch by batch."""
        try:
            return sources.read_columns(self.config.data_dir, self._spec(local_name), columns)
        except sources.SourceError as exc:
            code = "no_column" if "no column" in str(exc) else "no_dataset"
            raise StepRefused(code, str(exc)) from None

    def _state_path(self, name: str) -> Path:
        return self.config.state_dir / self.job / f"{name}.json"

    def model_get(self, job: str, name: str) -> dict[str, Any]:
        if not _SAFE_JOB.fullmatch(job) or not _SAFE_JOB.fullmatch(name):
            raise StepRefused("bad_model", "not a model of this node")
        path = self.config.state_dir / job / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _memory_path(self, name: str) -> Path:
        if not _SAFE_JOB.fullmatch(name):
            raise StepRefused("bad_name", "not a name the node remembers")
        return self.config.state_dir / "memory" / f"{name}.json"

    def memory_get(self, name: str) -> dict[str, Any]:
        path = self._memory_path(name)
        return json.loads(path.read_text()) if path.exists() else {}

    def memory_put(self, name: str, value: dict[str, Any]) -> None:
        _write_json(self._memory_path(name), value)  # before the reply leaves: remembered even if the job fails

    def state_get(self, name: str) -> dict[str, Any]:
        path = self._state_path(name)
        return json.loads(path.read_text()) if path.exists() else {}

    def state_put(self, name: str, value: dict[str, Any]) -> None:
        _write_json(self._state_path(name), value)

    def state_drop(self, name: str) -> None:
        self.after_reply.append(lambda: self._drop(name))

    def _drop(self, name: str) -> None:
        self._state_path(name).unlink(missing_ok=True)
        job_dir = self.config.state_dir / self.job
        if job_dir.exists() and not any(job_dir.iterdir()):
            shutil.rmtree(job_dir, ignore_errors=True)


def _write_json(path: Path, value: dict[str, Any]) -> None:
    """Owner-only, synced, then renamed into place: a crash never leaves half a key or half a memory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(value, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _reply_path(config: NodeConfig, nonce: Any) -> Path | None:
    if not isinstance(nonce, str) or not 0 < len(nonce) <= 64 or not nonce.isalnum():
        return None  # the hub's nonces are hex; anything else gets no file name
    return config.state_dir / "replies" / f"{nonce}.json"


def _stored_reply(config: NodeConfig, nonce: Any) -> dict[str, Any] | None:
    """The reply this node already sealed for a step, if any (a redelivery or a replay)."""
    path = _reply_path(config, nonce)
    if path is None or not path.exists():
        return None
    stored: dict[str, Any] = json.loads(path.read_text())
    return stored


def _store_reply(config: NodeConfig, nonce: Any, reply: dict[str, Any]) -> None:
    """Keep the sealed reply before it leaves: a step delivered again gets the same answer.

    Written atomically and synced, so a node killed at any point either has no reply for the
    nonce (and computes the step again) or the whole one it may already have sent.
    """
    path = _reply_path(config, nonce)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(reply, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


PREVIEW_OPERATIONS = frozenset({"psi", "value_preview"})  # the overlap preview and the value preview


def _check_grant(config: NodeConfig, payload: dict[str, Any], operation: str) -> dict[str, Any]:
    """The node's own check of the right the hub presents; it refuses what it does not allow."""
    grant = payload["body"].get("grant")
    if not isinstance(grant, dict):
        raise StepRefused("no_right", "a provider step must present a usage right")
    # A free preview carries no right: only if this node offers previews, only for what previews run.
    if grant.get("preview") and (not config.policy.get("previews") or operation not in PREVIEW_OPERATIONS):
        raise StepRefused("not_permitted", "this node does not answer overlap previews")
    if grant.get("node") != config.slug:
        raise StepRefused("no_right", "the right is for another node")
    if operation not in grant.get("operations", []):
        raise StepRefused("not_permitted", f"the right does not permit {operation!r}")
    # An ended right stops every use; its model parts are deleted on the hub's word (lr_retire).
    if envelope.parse_time(grant["expires_at"]) <= envelope.utcnow() and payload["step"] != "lr_retire":
        raise StepRefused("right_expired", "the usage right has expired")
    if grant.get("dataset_local") != payload["body"]["args"].get("dataset"):
        raise StepRefused("no_right", "the right covers another dataset")
    return grant


def handle_step(config: NodeConfig, wire: dict[str, Any]) -> list[dict[str, Any]]:
    """Process one hub → node message; return the signed messages to send to the hub.

    A redelivered or replayed step gets the reply sealed the first time, sent again: the
    hub takes one answer per step, so a node that crashed after answering (or before its
    answer left) never stalls a job. A step is computed again only if no reply was kept.
    Refusals are answered with a signed ``refused`` message so the job fails cleanly.
    """
    try:
        opened = envelope.open_envelope(
            wire,
            resolve_key=lambda kid: config.hub_public_key if kid == keys.key_id(config.hub_public_key) else None,
            recipient=config.slug,
            unseal=config.private_key,
        )
    except envelope.EnvelopeError as exc:
        log.warning("node %s dropped a message: %s (%s)", config.slug, exc, exc.code)
        return []
    payload = opened.payload
    stored = _stored_reply(config, payload["nonce"])
    if stored is not None:
        log.info("node %s answered a redelivered step %s again", config.slug, payload["nonce"])
        return [stored]
    after: list[Callable[[], None]] = []
    answer = _answer(config, opened, after)
    log.info(
        "node %s: job %s step %s for party %s: %s",
        config.slug, str(payload["job"])[:8] or "-", payload["step"], payload["body"].get("party", "-"),
        answer.get("status") if answer.get("status") != "refused" else f"refused ({answer.get('code')})",
    )  # fmt: skip
    sealed = _seal_reply(config, payload, answer)
    _store_reply(config, payload["nonce"], sealed)
    for step in after:
        step()
    return [sealed]


def _answer(config: NodeConfig, opened: envelope.Opened, after: list[Callable[[], None]]) -> dict[str, Any]:
    payload = opened.payload
    job, step = payload["job"], payload["step"]
    body = payload["body"]
    if step == "attest" and job == "":
        return attest_receipts(config, body, in_reply_to=opened.digest)
    reply: dict[str, Any]
    try:
        algorithm = get_algorithm(body["algorithm"])
        if not config.policy.get("operations") or not any(
            op == algorithm.operation for op in config.policy["operations"]
        ):
            raise StepRefused("policy", f"this node's policy does not allow {algorithm.operation!r}")
        min_group = int(config.policy.get("min_group_size", 1))
        grant = None
        if step not in algorithm.consumer_steps:
            grant = _check_grant(config, payload, algorithm.operation)
            min_group = max(min_group, int(grant.get("min_group_size", 1)))
        else:
            # A consumer-side step runs without a usage right, so it may read only the data
            # this node's operator set aside for its own jobs — never a dataset it sells.
            local = body["args"].get("dataset")
            if local is not None and local not in config.policy.get("consumer_datasets", []):
                raise StepRefused("policy", f"dataset {local!r} is not open to this node's own jobs")
        if not _SAFE_JOB.fullmatch(str(job)):  # the job id names a folder of this node's state: never a path
            raise StepRefused("bad_job", "not a job id this node keeps state under")
        ctx = LocalContext(config=config, job=job, min_group_size=min_group, grant=grant, after_reply=after)
        result = algorithm.node_step(ctx, step, body["args"])
        reply = {"status": "ok", "result": result.body, "in_reply_to": opened.digest}
        if grant is not None:
            reply["receipt"] = sign_receipt(config, payload, grant, algorithm.operation, result.rows, result.records)
    except StepRefused as exc:
        reply = {"status": "refused", "code": exc.code, "reason": str(exc), "in_reply_to": opened.digest}
    except Exception as exc:  # a bug or bad data must fail the job, not hang it
        log.exception("node %s failed step %s of job %s", config.slug, step, job)
        reply = {"status": "error", "code": "node_error", "reason": str(exc)[:500], "in_reply_to": opened.digest}
    return {"party": body["party"], **reply}


def _seal_reply(config: NodeConfig, payload: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    return envelope.seal(
        job=payload["job"],
        step=payload["step"],
        round=payload["round"],
        sender=config.slug,
        recipient="hub",
        body=body,
        key=config.private_key,
        kid=config.kid,
        ttl=timedelta(hours=6),
        to=config.hub_public_key,
    )


def _receipts_log(config: NodeConfig) -> Path:
    return config.state_dir / "receipts.log"


def _remember_receipt(config: NodeConfig, wire: dict[str, Any]) -> None:
    """Append the digest of a receipt this node signed: it attests only receipts it remembers.

    One line per receipt in an append-only file, synced before the receipt leaves the node.
    """
    path = _receipts_log(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (attest.receipt_digest(wire) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


# receipts.log -> (its device and inode, bytes read, digests in them)
_issued: dict[Path, tuple[tuple[int, int], int, set[str]]] = {}
_issued_lock = threading.Lock()


def _issued_receipts(config: NodeConfig) -> set[str]:
    """The digests of every receipt this node signed; the log is read incrementally (it only grows).

    A log that was replaced (another file) or cut short is read again from the start.
    """
    path = _receipts_log(config)
    with _issued_lock:
        if not path.exists():
            _issued.pop(path, None)
            return set()
        with path.open("rb") as fh:
            st = os.fstat(fh.fileno())
            identity = (st.st_dev, st.st_ino)
            seen, offset, known = _issued.get(path, (identity, 0, set()))
            if seen != identity or st.st_size < offset:
                offset, known = 0, set()
            fh.seek(offset)
            data = fh.read()
        cut = data.rfind(b"\n") + 1  # whole lines only
        known.update(data[:cut].decode().split())
        _issued[path] = (identity, offset + cut, known)
        return known


def attest_receipts(config: NodeConfig, body: dict[str, Any], *, in_reply_to: str) -> dict[str, Any]:
    """Answer the hub's request to attest a batch of receipts: sign if this node issued each one.

    Refused, listing every unknown digest, if the ledger attributes to this node a
    receipt it never signed; the hub then leaves those entries out of every batch (their
    own signatures remain their attestation) and goes on with the rest.
    """
    try:
        origin, first, last = body["log"], body["first_seq"], body["last_seq"]
        digests = body["receipts"]
        if not isinstance(origin, str) or type(first) is not int or type(last) is not int:
            raise ValueError("log must be a string, first_seq and last_seq integers")
        if not isinstance(digests, list) or not 0 < len(digests) <= min(attest.MAX_RECEIPTS, last - first + 1):
            raise ValueError(f"a batch holds 1 to {attest.MAX_RECEIPTS} receipts, at most one per entry of its range")
        for d in digests:
            if not isinstance(d, str) or len(d) != 64 or bytes.fromhex(d).hex() != d:
                raise ValueError(f"{str(d)[:80]!r} is not a SHA-256 hex digest")
        if len(set(digests)) != len(digests):
            raise ValueError("the same receipt is listed twice")
        issued = _issued_receipts(config)
    except (KeyError, TypeError, ValueError) as exc:
        return {"status": "refused", "code": "malformed", "reason": str(exc), "in_reply_to": in_reply_to}
    except OSError as exc:
        return {"status": "refused", "code": "node_error", "reason": str(exc)[:500], "in_reply_to": in_reply_to}
    unknown = [d for d in digests if d not in issued]
    if unknown:
        reason = f"{len(unknown)} of {len(digests)} receipts were not signed by this node"
        log.warning("node %s refused to attest #%d..#%d: %s", config.slug, first, last, reason)
        return {
            "status": "refused",
            "code": "unknown_receipts",
            "reason": reason,
            "first_seq": first,
            "last_seq": last,
            "unknown": unknown,
            "in_reply_to": in_reply_to,
        }
    signed = envelope.sign_payload(
        attest.statement(log=origin, node=config.slug, first_seq=first, last_seq=last, digests=digests),
        key=config.private_key,
        kid=config.kid,
    )
    return {"status": "ok", "attestation": signed, "in_reply_to": in_reply_to}


def sign_receipt(
    config: NodeConfig,
    payload: dict[str, Any],
    grant: dict[str, Any],
    operation: str,
    rows: int | None,
    records: int | None = None,
) -> dict[str, Any]:
    """The node's signed statement of a use: what ran, on which dataset, under which right."""
    receipt = {
        "type": "usage_receipt",
        "job": payload["job"],
        "step": payload["step"],
        "round": payload["round"],
        "node": config.slug,
        "dataset": grant["dataset"],
        "right": grant["right"],
        "consumer": grant["consumer"],
        # The consumer node key this node trusted for the job (e.g. the key that signed the
        # job's Paillier key): an auditor checks it belongs to the consumer, on the log.
        "consumer_kid": (grant.get("consumer_node") or {}).get("kid"),
        "operation": operation,
        "rows": rows or 0,
        "records": records or 0,
        "request": payload["nonce"],
        "at": envelope.format_time(envelope.utcnow()),
    }
    wire = envelope.sign_payload(receipt, key=config.private_key, kid=config.kid)
    _remember_receipt(config, wire)
    return wire


def enrolment_message(config: NodeConfig, token: str) -> dict[str, Any]:
    """Proof of possession of the new key, bound to the one-time enrolment token."""
    return envelope.seal(
        job="",
        step="enrol",
        round=0,
        sender=config.slug,
        recipient="hub",
        body={"token": token, "public_key": keys.public_b64(config.private_key)},
        key=config.private_key,
        kid=config.kid,
        to=config.hub_public_key,  # the token is a secret: only the hub may read it
    )


def announcement_messages(config: NodeConfig) -> list[dict[str, Any]]:
    """One signed manifest per dataset the node's datasets.json declares."""
    messages = []
    for spec in config.dataset_specs():
        min_group = int(config.policy.get("min_group_size", 10))
        body = {"manifest": datasets.manifest(config.data_dir, spec, min_group=min_group)}
        messages.append(
            envelope.seal(
                job="",
                step="announce",
                round=0,
                sender=config.slug,
                recipient="hub",
                body=body,
                key=config.private_key,
                kid=config.kid,
                ttl=timedelta(days=1),
                to=config.hub_public_key,
            )
        )
    return messages
