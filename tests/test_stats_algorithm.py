"""The stats algorithm, driven without hub or broker (its Paillier engine: tests/test_he.py)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from compute.algorithms import get_algorithm
from compute.algorithms.base import Column, DatasetInfo, JobView, ParamError, Party, StepRefused
from protocol import envelope, he, keys


def _public_json() -> dict[str, str]:
    return he.PrivateKey.generate(1024).public.to_json()


class FakeNode:
    """A NodeContext backed by dicts: the algorithm sees no files, hub or broker."""

    def __init__(self, slug: str, rows: dict[str, list[dict[str, str]]], min_group: int = 2) -> None:
        self.slug = slug
        self.job = "j"
        self.rows = rows
        self.min_group_size = min_group
        self.state: dict[str, dict[str, Any]] = {}

    # One key stands for the consumer's node: the statements it signs are what providers check.
    CONSUMER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(32))

    def sign(self, payload: dict[str, Any]) -> dict[str, Any]:
        return envelope.sign_payload(payload, key=self.CONSUMER_KEY, kid=keys.key_id(self.CONSUMER_KEY))

    def consumer_statement(self, statement: Any, kind: str) -> dict[str, Any]:
        public = self.CONSUMER_KEY.public_key()
        try:
            opened = envelope.verify_signed(statement, lambda kid: public if kid == keys.key_id(public) else None)
        except envelope.EnvelopeError as exc:
            raise StepRefused("unsigned_key", str(exc)) from None
        if opened.payload.get("type") != kind or opened.payload.get("job") != self.job:
            raise StepRefused("unsigned_key", "another job")
        return opened.payload

    def load_rows(self, local_name: str) -> list[dict[str, str]]:
        return self.rows[local_name]

    def load_columns(self, local_name: str, columns: list[str]) -> dict[str, Any]:
        rows = self.rows[local_name]
        for c in columns:
            if rows and c not in rows[0]:
                raise StepRefused("no_column", f"no column {c!r} in the local dataset")
        return {c: np.array([r[c] for r in rows], dtype=object) for c in columns}

    def state_get(self, name: str) -> dict[str, Any]:
        return self.state.get(name, {})

    def state_put(self, name: str, value: dict[str, Any]) -> None:
        self.state[name] = value

    def state_drop(self, name: str) -> None:
        self.state.pop(name, None)


DS = [
    DatasetInfo(1, "a", (Column("id", "string", "id"), Column("x", "number", "feature"))),
    DatasetInfo(
        2, "b", (Column("id", "string", "id"), Column("x", "integer", "feature"), Column("s", "string", "feature"))
    ),
]


def test_parameters_are_validated_against_every_schema() -> None:
    stats = get_algorithm("stats")
    assert stats.validate({"column": "x", "key_bits": 1024}, DS) == {"column": "x", "key_bits": 1024}
    with pytest.raises(ParamError) as err:
        stats.validate({"column": "nope"}, DS)
    assert "has no column 'nope'" in " ".join(err.value.errors["column"])
    with pytest.raises(ParamError) as err:
        stats.validate({"column": "id", "key_bits": 7, "extra": 1}, DS)
    assert set(err.value.errors) == {"column", "key_bits", "params"}


def _two_provider_job() -> JobView:
    """A stats job of the bank over acme's dataset "a" and taxco's "b"."""
    return JobView(
        id="j",
        params={"column": "x", "key_bits": 1024},
        parties=[
            Party("consumer", "bank", "consumer"),
            Party("provider:1", "acme", "provider", 1, "a"),
            Party("provider:2", "taxco", "provider", 2, "b"),
        ],
    )


def _run(stats: Any, job: JobView, nodes: dict[str, Any], replies: list[Any] | None = None) -> tuple[Any, Any]:
    """The job's steps between the hub side and the nodes, in order: (outputs, the providers
    the delivering step withheld from the charge)."""
    outbox, outputs, withheld = list(stats.start(job).sends), None, None
    while outbox:
        send = outbox.pop(0)
        result = stats.node_step(nodes[send.party], send.step, send.body)
        if replies is not None:
            replies.append(result.body)
        progress = stats.on_result(job, send.step, send.party, result.body)
        outbox.extend(progress.sends)
        outputs = progress.outputs or outputs
        withheld = progress.withheld if progress.delivers else withheld
    return outputs, withheld


def test_secure_sum_over_two_providers_matches_the_plain_computation() -> None:
    stats = get_algorithm("stats")
    a_rows = [{"id": str(i), "x": str(v)} for i, v in enumerate([1.5, 2.25, -3.0, 10.0])]
    b_rows = [{"id": str(i), "x": str(v)} for i, v in enumerate([4, 5, 6])] + [{"id": "z", "x": ""}]
    consumer, a, b = FakeNode("bank", {}), FakeNode("acme", {"a": a_rows}), FakeNode("taxco", {"b": b_rows})
    nodes = {"consumer": consumer, "provider:1": a, "provider:2": b}
    job = _two_provider_job()
    seen_by_hub: list[dict[str, Any]] = []
    outputs, _ = _run(stats, job, nodes, seen_by_hub)

    def summary(values: list[float]) -> dict[str, Any]:
        mean = sum(values) / len(values)
        return {
            "count": len(values),
            "sum": pytest.approx(sum(values)),
            "mean": pytest.approx(mean),
            "variance": pytest.approx(sum((v - mean) ** 2 for v in values) / len(values)),
        }

    a_values, b_values = [1.5, 2.25, -3.0, 10.0], [4, 5, 6]
    by_party = outputs.pop("by_party")
    assert outputs == summary(a_values + b_values)
    # Each provider's own aggregate too, as a job on its dataset alone would give.
    assert by_party == {"provider:1": summary(a_values), "provider:2": summary(b_values)}
    assert consumer.state == {}  # the private key is dropped after decryption
    partials = [body for body in seen_by_hub if "totals" in body and "by_party" not in body]
    # One packed ciphertext mod n² each: (count, Σx, Σx²) never travel as plaintext or apart.
    assert len(partials) >= 2 and all(len(base64.b64decode(body["totals"])) == 256 for body in partials)


def _signed_key(node: FakeNode, public_json: dict[str, str]) -> dict[str, Any]:
    statement = node.sign({"type": "usufruct/job-key/v1", "job": node.job, "public_key": public_json})
    return {"public_key": public_json, "key_statement": statement}


def test_a_provider_encrypts_only_under_a_key_the_consumer_signed_for_this_job() -> None:
    stats = get_algorithm("stats")
    public, substitute = _public_json(), _public_json()  # substitute: e.g. the hub's own key
    node = FakeNode("acme", {"a": [{"x": "1"}, {"x": "2"}, {"x": "3"}]})
    args = {"column": "x", "dataset": "a"}
    assert stats.node_step(node, "partial", _signed_key(node, public) | args).records == 3
    cases = {
        "unsigned": {"public_key": substitute} | args,
        "swapped key": _signed_key(node, public) | {"public_key": substitute} | args,
        "signed by another": {
            "public_key": substitute,
            "key_statement": envelope.sign_payload(
                {"type": "usufruct/job-key/v1", "job": "j", "public_key": substitute},
                key=Ed25519PrivateKey.generate(),
                kid=node.sign({})["kid"],
            ),
        }
        | args,
    }
    for name, body in cases.items():
        with pytest.raises(StepRefused) as err:
            stats.node_step(node, "partial", body)
        assert err.value.code == "unsigned_key", name
    other_job = FakeNode("acme", node.rows)
    other_job.job = "another"
    with pytest.raises(StepRefused, match="another job"):
        stats.node_step(other_job, "partial", _signed_key(node, public) | args)


def test_a_provider_suppresses_a_group_below_its_minimum_and_refuses_it_under_dp() -> None:
    stats = get_algorithm("stats")
    public = _public_json()
    node = FakeNode("acme", {"a": [{"x": "1"}, {"x": "2"}]}, min_group=3)
    args = _signed_key(node, public) | {"column": "x", "dataset": "a"}
    result = stats.node_step(node, "partial", args)
    assert result.body == {"suppressed": True}  # no count, no ciphertext: nothing of the group leaves
    assert (result.rows, result.records) == (2, 0)
    with pytest.raises(StepRefused) as err:  # a DP release is charged to every right: all or nothing
        stats.node_step(node, "partial", args | {"bounds": [0, 10]})
    assert err.value.code == "group_too_small"


def test_a_suppressed_provider_is_named_in_the_result_and_withheld_from_the_charge() -> None:
    stats = get_algorithm("stats")
    consumer = FakeNode("bank", {})
    a = FakeNode("acme", {"a": [{"x": str(v)} for v in (1, 2, 3, 4)]}, min_group=3)
    b = FakeNode("taxco", {"b": [{"x": "9"}]}, min_group=3)
    nodes = {"consumer": consumer, "provider:1": a, "provider:2": b}
    job = _two_provider_job()
    outputs, withheld = _run(stats, job, nodes)
    assert withheld == {"provider:2"}  # the services settle it as "suppressed": no charge
    assert outputs["count"] == 4 and outputs["mean"] == pytest.approx(2.5)  # taxco's 9 is not in it
    assert outputs["by_party"]["provider:2"] == {"suppressed": True}
    assert outputs["by_party"]["provider:1"]["count"] == 4


def test_every_provider_suppressed_fails_the_job() -> None:
    stats = get_algorithm("stats")
    consumer, b = FakeNode("bank", {}), FakeNode("taxco", {"b": [{"x": "9"}]}, min_group=3)
    job = JobView(
        id="j", params={"column": "x", "key_bits": 1024},
        parties=[Party("consumer", "bank", "consumer"), Party("provider:1", "taxco", "provider", 1, "b")],
    )  # fmt: skip
    keygen = stats.start(job).sends[0]
    partial = stats.on_result(job, "keygen", "consumer", stats.node_step(consumer, "keygen", keygen.body).body).sends[0]
    with pytest.raises(ValueError, match="every provider's group is below its minimum size"):
        stats.on_result(job, "partial", "provider:1", stats.node_step(b, "partial", partial.body).body)


def test_the_consumer_node_refuses_to_decrypt_without_a_key() -> None:
    with pytest.raises(StepRefused, match="no private key"):
        get_algorithm("stats").node_step(FakeNode("bank", {}), "decrypt", {"totals": "AAAA"})
