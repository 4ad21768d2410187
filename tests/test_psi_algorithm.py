"""The psi algorithm and its DH group, driven without hub or broker (and once through the node runtime)."""

from __future__ import annotations

import base64
import copy
import json
import math
import random
import statistics
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from compute.algorithms import get_algorithm, psi
from compute.algorithms.base import Column, DatasetInfo, JobView, ParamError, Party, StepRefused
from compute.node.config import NodeConfig
from compute.node.runtime import handle_step
from protocol import envelope, keys, ristretto
from protocol.canonical import canonical
from tests.federation import body_of

# --- an independent reference ---------------------------------------------------------


def reference(identifier: str, scalar: bytes) -> bytes:
    """scalar · hash_to_ristretto255(identifier), composed from RFC 9380's expander and RFC 9496's map."""
    uniform = ristretto.expand_message_xmd(identifier.encode("utf-8"), ristretto.DST, 64)
    return ristretto.blind(ristretto.from_uniform(uniform), scalar)


def pack(values: list[bytes]) -> str:
    return ristretto.pack(values)


def unpack(text: str) -> list[bytes]:
    return ristretto.unpack_elements(text, 10**6)


# --- fakes ---------------------------------------------------------------------------


class FakeNode:
    """A NodeContext backed by dicts: the algorithm sees no files, hub or broker."""

    def __init__(self, slug: str, rows: dict[str, list[dict[str, str]]], min_group: int = 2) -> None:
        self.slug = slug
        self.rows = rows
        self.min_group_size = min_group
        self.state: dict[str, dict[str, Any]] = {}
        self.puts: list[dict[str, Any]] = []  # every value ever stored, to look for secrets

    def load_rows(self, local_name: str) -> list[dict[str, str]]:
        return self.rows[local_name]

    def state_get(self, name: str) -> dict[str, Any]:
        return self.state.get(name, {})

    def state_put(self, name: str, value: dict[str, Any]) -> None:
        self.state[name] = value
        self.puts.append(value)

    def state_drop(self, name: str) -> None:
        self.state.pop(name, None)


class ZeroNoise(random.Random):
    """random() == 0 makes both geometric draws 0, hence no noise at all."""

    def random(self) -> float:
        return 0.0


PROVIDER_DS = DatasetInfo(7, "Acme customers", (Column("cid", "string", "id"), Column("spend", "number", "feature")))


def ids(start: int, stop: int) -> list[str]:
    return [f"cust-{i:05d}" for i in range(start, stop)]


def make_job(algo: psi.Psi, epsilon: float = 1.0) -> JobView:
    params = algo.validate(
        {"consumer_dataset": "mine", "consumer_id_column": "customer", "epsilon": epsilon}, [PROVIDER_DS]
    )
    parties = [Party("consumer", "bank", "consumer"), Party("provider:7", "acme", "provider", 7, "customers")]
    return JobView(id="j", params=params, parties=parties)


def make_nodes(consumer_ids: list[str], provider_ids: list[str], min_group: int = 2) -> dict[str, FakeNode]:
    return {
        "consumer": FakeNode("bank", {"mine": [{"customer": i} for i in consumer_ids]}, min_group),
        "provider:7": FakeNode("acme", {"customers": [{"cid": i, "spend": "1"} for i in provider_ids]}, min_group),
    }


def drive(algo: psi.Psi, job: JobView, nodes: dict[str, FakeNode]) -> tuple[dict[str, Any] | None, list[Any]]:
    """Run the protocol in process; the trace is every message body with its step, party and rows."""
    outbox = list(algo.start(job).sends)
    trace: list[Any] = []
    outputs = None
    while outbox:
        send = outbox.pop(0)
        result = algo.node_step(nodes[send.party], send.step, send.body)
        trace.append((send.step, send.party, send.body, result.body, result.rows))
        progress = algo.on_result(job, send.step, send.party, result.body)
        canonical(job.state)  # the hub persists state as JSON between messages
        outbox.extend(progress.sends)
        outputs = progress.outputs or outputs
    return outputs, trace


# Consumer: 60 distinct IDs (plus a duplicate and a blank); provider: 80; overlap cust-00035..59 = 25.
CONSUMER = [*ids(0, 60), "cust-00003", "  "]
PROVIDER = [*reversed(ids(35, 115)), " cust-00040 "]
OVERLAP = 25


# --- the protocol --------------------------------------------------------------------


def test_without_noise_the_estimate_is_the_true_overlap() -> None:
    algo = psi.Psi(rng=ZeroNoise(), node_rng=random.Random(1))
    job, nodes = make_job(algo), make_nodes(CONSUMER, PROVIDER)
    outputs, trace = drive(algo, job, nodes)
    assert outputs == {
        "consumer_ids": 60,
        "overlap_estimate": OVERLAP,
        "overlap_bucket": "1–99",
        "overlap_fraction": round(OVERLAP / 60, 4),
        "epsilon": 1.0,
        "noise": "discrete Laplace (two-sided geometric), scale 1/epsilon",
    }
    assert [(step, party) for step, party, *_ in trace] == [
        ("psi_blind", "consumer"),
        ("psi_exchange", "provider:7"),
        ("psi_finish", "consumer"),
    ]
    exchange = trace[1]
    assert exchange[2]["dataset"] == "customers" and exchange[2]["id_column"] == "cid"
    assert exchange[4] == 81  # metering: the rows of the provider's file it read (80 IDs, one of them twice)
    assert job.state == {"phase": "done"}  # tag sets and counts are gone
    assert all(n.state == {} for n in nodes.values())
    canonical([t[2:4] for t in trace])  # every message body is signable JSON


def test_disjoint_and_identical_sets() -> None:
    algo = psi.Psi(rng=ZeroNoise())
    outputs, _ = drive(algo, make_job(algo), make_nodes(ids(0, 20), ids(20, 40)))
    assert outputs is not None and (outputs["overlap_estimate"], outputs["overlap_bucket"]) == (0, "0")
    outputs, _ = drive(algo, make_job(algo), make_nodes(ids(0, 20), ids(0, 20)))
    assert outputs is not None and (outputs["overlap_estimate"], outputs["overlap_fraction"]) == (20, 1.0)


def test_exponents_stay_in_node_state_and_never_travel() -> None:
    algo = psi.Psi()  # real randomness
    nodes = make_nodes(CONSUMER, PROVIDER)
    outputs, trace = drive(algo, make_job(algo), nodes)
    (stored,) = nodes["consumer"].puts
    a = ristretto.scalar_from_hex(stored["scalar"])
    wire = json.dumps([t[2:4] for t in trace])
    for form in (a.hex(), base64.b64encode(a).decode(), str(int.from_bytes(a, "little"))):
        assert form not in wire
    assert nodes["provider:7"].puts == []  # b lives only inside its step
    assert nodes["consumer"].state == {}  # a is dropped after psi_finish
    assert not any(i in wire for i in ids(0, 115))  # no raw ID in any message
    assert outputs is not None


class Recording(random.Random):
    """A seeded RNG that remembers the scalars it drew, so a test can recompute the unshuffled lists."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.drawn: list[bytes] = []

    def getrandbits(self, k: int) -> int:
        value = super().getrandbits(k)
        if k == 512:
            self.drawn.append((value % ristretto.ORDER).to_bytes(32, "little"))
        return value


def test_blinded_lists_are_shuffled() -> None:
    values = ids(0, 300)
    rng = Recording(7)
    algo = psi.Psi(node_rng=rng)
    node = FakeNode("bank", {"mine": [{"customer": i} for i in values]})
    body = algo.node_step(node, "psi_blind", {"dataset": "mine", "id_column": "customer"}).body
    a = ristretto.scalar_from_hex(node.state["psi"]["scalar"])
    assert rng.drawn == [a]
    sent, in_order = unpack(body["elements"]), [reference(i, a) for i in values]
    assert sorted(sent) == sorted(in_order)
    assert sum(x == y for x, y in zip(sent, in_order)) < 10

    provider = FakeNode("acme", {"customers": [{"cid": i} for i in values]})
    args = {"dataset": "customers", "id_column": "cid", "elements": body["elements"]}
    out = algo.node_step(provider, "psi_exchange", args).body
    b = rng.drawn[-1]
    own, own_in_order = unpack(out["elements"]), [reference(i, b) for i in values]
    assert sorted(own) == sorted(own_in_order) and own != own_in_order
    tags = ristretto.unpack(out["peer_tags"], ristretto.TAG_BYTES, 1000)
    peer_in_order = [ristretto.tag(ristretto.blind(e, b)) for e in sent]
    assert sorted(tags) == sorted(peer_in_order) and tags != peer_in_order


def test_with_noise_no_output_carries_the_exact_overlap() -> None:
    algo = psi.Psi(rng=random.Random(2024), node_rng=random.Random(3))
    job, nodes = make_job(algo), make_nodes(CONSUMER, PROVIDER)
    sends = algo.start(job).sends
    for _ in range(2):  # psi_blind, psi_exchange
        (send,) = sends
        body = algo.node_step(nodes[send.party], send.step, send.body).body
        sends = algo.on_result(job, send.step, send.party, body).sends
    (finish,) = sends
    finished = algo.node_step(nodes["consumer"], "psi_finish", finish.body).body
    before = copy.deepcopy(job.state)
    releases = []
    for _ in range(4000):
        job.state = copy.deepcopy(before)
        progress = algo.on_result(job, "psi_finish", "consumer", finished)
        assert progress.outputs is not None and job.state == {"phase": "done"}
        releases.append(progress.outputs)
    noise = [r["overlap_estimate"] - OVERLAP for r in releases]
    q = math.exp(-1.0)
    assert abs(statistics.fmean(noise)) < 0.1
    assert statistics.pvariance(noise) == pytest.approx(2 * q / (1 - q) ** 2, rel=0.12)  # ≈ 1.84
    exact_share = sum(n == 0 for n in noise) / len(noise)
    assert exact_share == pytest.approx((1 - q) / (1 + q), abs=0.04)  # ≈ 0.46: right only by chance
    documented = {"consumer_ids", "overlap_estimate", "overlap_bucket", "overlap_fraction", "epsilon", "noise"}
    assert all(set(r) == documented for r in releases)  # nothing else, e.g. no exact count
    for key in documented:  # no field equals the exact overlap in every release
        assert any(r[key] != OVERLAP for r in releases)
    assert len({r["overlap_estimate"] for r in releases}) > 5


def test_discrete_laplace_known_answers_clamping_and_buckets() -> None:
    class Draws(random.Random):
        def __init__(self, values: list[float]) -> None:
            super().__init__(0)
            self.values = values

        def random(self) -> float:
            return self.values.pop(0)

    # q = e^-ln2 = 1/2: U = 0.2 gives floor(log2(5)) = 2, U = 0.7 gives floor(0.51) = 0.
    assert psi.discrete_laplace(math.log(2), Draws([0.8, 0.3])) == 2
    assert psi.discrete_laplace(math.log(2), Draws([0.3, 0.8])) == -2
    assert psi.discrete_laplace(5.0, ZeroNoise()) == 0
    assert psi.release(10, 50, 12, 1.0, Draws([0.999999, 0.0]))["overlap_estimate"] == 12  # min(|X|, |Y|)
    assert psi.release(1, 50, 60, 1.0, Draws([0.0, 0.999999]))["overlap_estimate"] == 0
    labels = {n: psi.bucket(n) for n in (0, 1, 99, 100, 999, 1000, 9999, 10000, 10**6)}
    assert labels == {
        0: "0",
        1: "1–99",
        99: "1–99",
        100: "100–999",
        999: "100–999",
        1000: "1,000–9,999",
        9999: "1,000–9,999",
        10000: "10,000+",
        10**6: "10,000+",
    }


def test_two_thousand_ids_per_side() -> None:
    algo = psi.Psi(rng=ZeroNoise())
    nodes = make_nodes(ids(0, 2000), ids(1300, 3300))
    started = time.perf_counter()
    outputs, trace = drive(algo, make_job(algo), nodes)
    elapsed = time.perf_counter() - started
    print(f"\npsi with 2,000 IDs per side: {elapsed:.2f} s")
    assert outputs is not None and outputs["overlap_estimate"] == 700 and outputs["overlap_bucket"] == "100–999"
    assert trace[1][4] == 2000


# --- parameters, refusals, hub checks ------------------------------------------------


def test_psi_is_registered_with_its_consumer_steps() -> None:
    algo = get_algorithm("psi")
    assert algo.operation == "psi"
    assert algo.consumer_steps == {"psi_blind", "psi_finish"}


def test_parameters_are_validated() -> None:
    algo = psi.Psi()
    good = {"consumer_dataset": "my-ids_2024", "consumer_id_column": "customer"}
    assert algo.validate(good, [PROVIDER_DS]) == {**good, "epsilon": 1.0, "provider_id_column": "cid"}
    assert algo.validate({**good, "epsilon": 10}, [PROVIDER_DS])["epsilon"] == 10.0

    def errors(params: dict[str, Any], datasets: list[DatasetInfo] | None = None) -> dict[str, list[str]]:
        with pytest.raises(ParamError) as err:
            algo.validate(params, [PROVIDER_DS] if datasets is None else datasets)
        return err.value.errors

    assert set(errors({})) == {"consumer_dataset", "consumer_id_column"}
    assert set(errors({**good, "consumer_dataset": "../etc/passwd"})) == {"consumer_dataset"}
    for eps in (0, -1, 10.5, "1", True, None, math.nan, math.inf):
        assert set(errors({**good, "epsilon": eps})) == {"epsilon"}, eps
    assert set(errors({**good, "extra": 1})) == {"params"}
    assert "exactly one provider dataset, not 2" in errors(good, [PROVIDER_DS, PROVIDER_DS])["datasets"][0]
    assert "not 0" in errors(good, [])["datasets"][0]
    no_id = DatasetInfo(8, "no ids", (Column("x", "number", "feature"),))
    two_ids = DatasetInfo(9, "two ids", (Column("a", "string", "id"), Column("b", "string", "id")))
    assert "exactly one ID column, not 0" in errors(good, [no_id])["datasets"][0]
    assert "exactly one ID column, not 2" in errors(good, [two_ids])["datasets"][0]


def refusal(algo: psi.Psi, node: FakeNode, step: str, body: dict[str, Any]) -> str:
    with pytest.raises(StepRefused) as err:
        algo.node_step(node, step, body)
    return err.value.code


def test_nodes_refuse_what_their_policy_or_the_input_does_not_allow(monkeypatch: pytest.MonkeyPatch) -> None:
    algo = psi.Psi()
    blind = {"dataset": "mine", "id_column": "customer"}
    consumer = make_nodes(ids(0, 5), [])["consumer"]
    assert refusal(algo, consumer, "psi_blind", {**blind, "id_column": "nope"}) == "no_column"
    assert refusal(algo, FakeNode("bank", consumer.rows, min_group=6), "psi_blind", blind) == "group_too_small"
    monkeypatch.setattr(psi, "MAX_IDS", 4)
    assert refusal(algo, consumer, "psi_blind", blind) == "too_many_ids"
    monkeypatch.undo()
    assert refusal(algo, consumer, "psi_finish", {"elements": []}) == "no_key"
    packed = algo.node_step(consumer, "psi_blind", blind).body["elements"]
    again = algo.node_step(consumer, "psi_blind", blind).body["elements"]
    assert sorted(unpack(again)) == sorted(unpack(packed))  # asked again: the same blinded set, the kept scalar
    elements = unpack(packed)
    assert refusal(algo, consumer, "psi_finish", {"elements": ["zz"]}) == "bad_elements"
    assert refusal(algo, consumer, "psi_other", {}) == "unknown_step"

    provider = make_nodes([], ids(0, 5), min_group=3)["provider:7"]
    exchange = {"dataset": "customers", "id_column": "cid", "elements": packed}
    assert refusal(algo, provider, "psi_exchange", {**exchange, "id_column": "nope"}) == "no_column"
    assert refusal(algo, provider, "psi_exchange", {**exchange, "elements": pack(elements[:2])}) == "group_too_small"
    small = FakeNode("acme", provider.rows, min_group=6)
    # One list padded with copies: the group is its distinct IDs, and a repeat is refused outright.
    assert refusal(algo, small, "psi_exchange", {**exchange, "elements": pack(elements * 2)}) == "repeated_ids"
    target = ristretto.hash_to_group("the one person asked about")
    assert refusal(algo, provider, "psi_exchange", {**exchange, "elements": pack([target] * 20)}) == "repeated_ids"
    not_an_element = bytes.fromhex("26948d35ca62e643e26a83177332e6b6afeb9d08e4268b650f1f5bbd8d81d371")  # RFC 9496 A.2
    for bad in (not_an_element, bytes(32)):  # not on the group; the identity
        assert (
            refusal(algo, provider, "psi_exchange", {**exchange, "elements": pack([bad, *elements])}) == "bad_elements"
        )
    assert refusal(algo, provider, "psi_exchange", {**exchange, "elements": "x"}) == "bad_elements"


def test_the_hub_rejects_out_of_order_foreign_or_malformed_results() -> None:
    algo = psi.Psi(rng=ZeroNoise())
    job = make_job(algo)
    algo.start(job)
    element = ristretto.hash_to_group("x")
    with pytest.raises(ValueError, match="did not expect"):
        algo.on_result(job, "psi_finish", "consumer", {"tags": ""})
    with pytest.raises(ValueError, match="did not expect"):
        algo.on_result(job, "psi_blind", "provider:7", {"elements": pack([element])})
    with pytest.raises(ValueError, match="malformed"):
        algo.on_result(job, "psi_blind", "consumer", {"elements": base64.b64encode(element[:-1]).decode()})
    with pytest.raises(ValueError, match="malformed"):
        algo.on_result(job, "psi_blind", "consumer", {"elements": [element.hex()]})
    with pytest.raises(ValueError, match="repeats an element"):  # the hub counts distinct elements
        algo.on_result(job, "psi_blind", "consumer", {"elements": pack([element, element])})
    other = ristretto.hash_to_group("y")
    algo.on_result(job, "psi_blind", "consumer", {"elements": pack([element, other])})
    with pytest.raises(ValueError, match="another length"):
        algo.on_result(job, "psi_exchange", "provider:7", {"peer_tags": pack([bytes(16)]), "elements": pack([element])})
    with pytest.raises(ValueError, match="tags"):
        algo.on_result(job, "psi_exchange", "provider:7", {"peer_tags": pack([bytes(15)] * 2), "elements": ""})


# --- through the real node runtime ---------------------------------------------------


def test_the_runtime_checks_a_right_on_the_provider_step_only(tmp_path: Path) -> None:
    hub_key = Ed25519PrivateKey.generate()

    def node(slug: str, operations: list[str], name: str, column: str, values: list[str]) -> NodeConfig:
        directory = tmp_path / slug
        (directory / "data").mkdir(parents=True)
        (directory / "hub.pub").write_text(keys.public_b64(hub_key))
        policy = {
            "operations": operations,
            "min_group_size": 3,
            "consumer_datasets": ["mine"] if slug == "bank" else [],
        }
        (directory / "policy.json").write_text(json.dumps(policy))
        (directory / "data" / f"{name}.csv").write_text("\n".join([column, *values]) + "\n")
        return NodeConfig(slug=slug, directory=directory, broker_url="memory://", broker_dir=None)

    bank = node("bank", ["psi", "stats"], "mine", "customer", ids(0, 30))
    acme = node("acme", ["psi"], "customers", "cid", ids(20, 60))
    grant = {
        "right": 1,
        "node": "acme",
        "dataset": 7,
        "dataset_local": "customers",
        "consumer": "bank",
        "operations": ["psi"],
        "expires_at": envelope.format_time(envelope.utcnow() + timedelta(hours=1)),
        "min_group_size": 5,
    }

    def run(config: NodeConfig, step: str, party: str, args: dict[str, Any], with_grant: bool = False) -> Any:
        body = {"algorithm": "psi", "party": party, "args": args, "grant": grant if with_grant else None}
        wire = envelope.seal(
            job="job-1",
            step=step,
            round=0,
            sender="hub",
            recipient=config.slug,
            body=body,
            key=hub_key,
            kid=keys.key_id(hub_key),
            to=config.private_key.public_key(),
        )
        (reply,) = handle_step(config, wire)
        return body_of(reply, hub_key)

    algo = psi.Psi(rng=ZeroNoise())
    job = make_job(algo)
    (send,) = algo.start(job).sends
    blinded = run(bank, send.step, "consumer", send.body)  # a consumer step: no right needed
    assert blinded["status"] == "ok" and "receipt" not in blinded
    (send,) = algo.on_result(job, "psi_blind", "consumer", blinded["result"]).sends
    refused = run(acme, send.step, "provider:7", send.body)
    assert (refused["status"], refused["code"]) == ("refused", "no_right")
    exchanged = run(acme, send.step, "provider:7", send.body, with_grant=True)
    assert exchanged["status"] == "ok"
    assert exchanged["receipt"]["payload"]["rows"] == 40 and exchanged["receipt"]["payload"]["operation"] == "psi"
    (send,) = algo.on_result(job, "psi_exchange", "provider:7", exchanged["result"]).sends
    finished = run(bank, send.step, "consumer", send.body)
    assert finished["status"] == "ok"
    outputs = algo.on_result(job, "psi_finish", "consumer", finished["result"]).outputs
    assert outputs is not None and outputs["overlap_estimate"] == 10
    assert not (bank.state_dir / "job-1").exists()  # the exponent file is gone

    # stats keeps its default consumer steps: keygen runs without a right.
    body = {"algorithm": "stats", "party": "consumer", "args": {"key_bits": 1024}, "grant": None}
    wire = envelope.seal(
        job="job-2",
        step="keygen",
        round=0,
        sender="hub",
        recipient="bank",
        body=body,
        key=hub_key,
        kid=keys.key_id(hub_key),
        to=bank.private_key.public_key(),
    )
    (reply,) = handle_step(bank, wire)
    assert body_of(reply, hub_key)["status"] == "ok"
