"""The psi algorithm and its DH group, driven without hub or broker (and once through the node runtime)."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import statistics
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import gmpy2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from compute.algorithms import get_algorithm, psi
from compute.algorithms.base import Column, DatasetInfo, JobView, ParamError, Party, StepRefused
from compute.node.config import NodeConfig
from compute.node.runtime import handle_step
from protocol import dh_group, envelope, keys
from protocol.canonical import canonical
from tests.federation import body_of

# --- independent references ----------------------------------------------------------


def _arctan_inv(x: int, one: int) -> int:
    total = term = one // x
    n, sign = 1, -1
    while term:
        term //= x * x
        n += 2
        total += sign * (term // n)
        sign = -sign
    return total


def rfc3526_prime() -> int:
    """RFC 3526 §3: p = 2^2048 - 2^1984 - 1 + 2^64 * ([2^1918 pi] + 124476), π by Machin's formula."""
    one = 1 << (1918 + 64)  # 64 guard bits
    pi = 4 * (4 * _arctan_inv(5, one) - _arctan_inv(239, one))
    return 2**2048 - 2**1984 - 1 + 2**64 * ((pi >> 64) + 124476)


P = rfc3526_prime()


def reference_hash(identifier: str) -> int:
    """expand_message_xmd written as the chain b_i = H((b_0 xor b_{i-1}) || i || DST'), b_{0}' = 0."""
    dst = b"USUFRUCT-PSI-V1-MODP2048_XMD:SHA-256"
    dst_prime = dst + bytes([len(dst)])
    length = 272  # (2048 + 128) / 8
    b0 = hashlib.sha256(bytes(64) + identifier.encode("utf-8") + length.to_bytes(2, "big") + b"\0" + dst_prime)
    prev, out = bytes(32), b""
    for i in range(1, 10):
        prev = hashlib.sha256(bytes(x ^ y for x, y in zip(b0.digest(), prev)) + bytes([i]) + dst_prime).digest()
        out += prev
    return pow(int.from_bytes(out[:length], "big") % P, 2, P)


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


# --- the group -----------------------------------------------------------------------


def test_the_group_is_the_rfc3526_2048_bit_safe_prime() -> None:
    assert dh_group.P == P
    assert dh_group.Q == (P - 1) // 2
    assert gmpy2.is_prime(P, 40) and gmpy2.is_prime(dh_group.Q, 40)
    assert 1 << dh_group.EXPONENT_BITS < dh_group.Q


@pytest.mark.parametrize(
    ("msg", "length", "expected"),
    [  # RFC 9380 Appendix K.1, expand_message_xmd(SHA-256), DST QUUX-V01-CS02-with-expander-SHA256-128
        (b"", 32, "68a985b87eb6b46952128911f2a4412bbc302a9d759667f87f7a21d803f07235"),
        (b"abc", 32, "d8ccab23b5985ccea865c6c97b6e5b8350e794e603b4b97902f53a8a0d605615"),
        (
            b"",
            128,
            "af84c27ccfd45d41914fdff5df25293e221afc53d8ad2ac06d5e3e29485dadbee0d121587713a3e0dd4d5e69e93eb7cd"
            "4f5df4cd103e188cf60cb02edc3edf18eda8576c412b18ffb658e3dd6ec849469b979d444cf7b26911a08e63cf31f9dc"
            "c541708d3491184472c2c29bb749d4286b004ceb5ee6b9a7fa5b646c993f0ced",
        ),
        (
            b"abc",
            128,
            "abba86a6129e366fc877aab32fc4ffc70120d8996c88aee2fe4b32d6c7b6437a647e6c3163d40b76a73cf6a5674ef1d8"
            "90f95b664ee0afa5359a5c4e07985635bbecbac65d747d3d2da7ec2b8221b17b0ca9dc8a1ac1c07ea6a1e60583e2cb00"
            "058e77b7b72a298425cd1b941ad4ec65e8afc50303a22c0f99b0509b4c895f40",
        ),
    ],
)
def test_expand_message_xmd_matches_rfc9380_vectors(msg: bytes, length: int, expected: str) -> None:
    assert dh_group.expand_message_xmd(msg, b"QUUX-V01-CS02-with-expander-SHA256-128", length).hex() == expected


@pytest.mark.parametrize("identifier", ["cust-00042", "", "Zoë Ω 李"])
def test_hash_to_group_known_answer(identifier: str) -> None:
    h = dh_group.hash_to_group(identifier)
    assert h == reference_hash(identifier)
    assert pow(h, (P - 1) // 2, P) == 1  # in the prime-order subgroup (Euler's criterion)


def test_blinding_commutes_and_matches_plain_modular_exponentiation() -> None:
    rng = random.Random(11)
    a, b = dh_group.random_exponent(rng), dh_group.random_exponent(rng)
    hs = [dh_group.hash_to_group(i) for i in ids(0, 5)]
    ha = dh_group.power_all(hs, a)
    assert ha == [pow(h, a, P) for h in hs]
    assert dh_group.power_all(ha, b) == dh_group.power_all(dh_group.power_all(hs, b), a)  # H^ab == H^ba
    with pytest.raises(ValueError, match="exponent"):
        dh_group.power_all(hs, 0)


def test_elements_round_trip_and_non_members_are_refused() -> None:
    h = dh_group.hash_to_group("x")
    assert dh_group.decode(dh_group.encode(h)) == h
    assert len(dh_group.encode(h)) == 512
    non_residue = next(n for n in range(2, 100) if pow(n, (P - 1) // 2, P) == P - 1)
    for bad in (P - 1, 1, 0, non_residue):  # order 2, identity, zero, outside the subgroup
        with pytest.raises(ValueError, match="not an element"):
            dh_group.decode(format(bad, "0512x"))
    for malformed in (dh_group.encode(h).upper(), dh_group.encode(h)[1:], format(P, "0512x")[:-1] + "g", 5, None):
        with pytest.raises(ValueError):
            dh_group.decode(malformed)
    for out_of_range in (P, P + 1):  # P + 1 ≡ 1: residues are checked only below p
        with pytest.raises(ValueError, match="not an element"):
            dh_group.decode(format(out_of_range, "0512x"))
    with pytest.raises(ValueError, match="more than 1"):
        dh_group.decode_all([dh_group.encode(h)] * 2, limit=1)


# --- the protocol ----------------------------------------------------------------------


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
    a = int(stored["exponent"], 16)
    assert 0 < a < 1 << 256
    wire = json.dumps([t[2:4] for t in trace])
    for form in (str(a), format(a, "x"), format(a, "064x")):
        assert form not in wire
    assert nodes["provider:7"].puts == []  # b lives only inside its step
    assert nodes["consumer"].state == {}  # a is dropped after psi_finish
    assert not any(i in wire for i in ids(0, 115))  # no raw ID in any message
    assert outputs is not None


class Recording(random.Random):
    """A seeded RNG that remembers the exponents it drew, so a test can recompute the unshuffled lists."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.drawn: list[int] = []

    def randrange(self, *args: Any, **kwargs: Any) -> int:  # type: ignore[override]
        value = super().randrange(*args, **kwargs)
        self.drawn.append(value)
        return value


def test_blinded_lists_are_shuffled() -> None:
    values = ids(0, 300)
    rng = Recording(7)
    algo = psi.Psi(node_rng=rng)
    node = FakeNode("bank", {"mine": [{"customer": i} for i in values]})
    body = algo.node_step(node, "psi_blind", {"dataset": "mine", "id_column": "customer"}).body
    a = int(node.state["psi"]["exponent"], 16)
    assert rng.drawn == [a]
    in_order = [format(pow(reference_hash(i), a, P), "0512x") for i in values]
    assert sorted(body["elements"]) == sorted(in_order)
    assert body["elements"] != in_order
    assert sum(x == y for x, y in zip(body["elements"], in_order)) < 10

    provider = FakeNode("acme", {"customers": [{"cid": i} for i in values]})
    args = {"dataset": "customers", "id_column": "cid", "elements": body["elements"]}
    out = algo.node_step(provider, "psi_exchange", args).body
    b = rng.drawn[-1]
    own_in_order = [format(pow(reference_hash(i), b, P), "0512x") for i in values]
    assert sorted(out["elements"]) == sorted(own_in_order) and out["elements"] != own_in_order
    peer_in_order = [dh_group.tag(pow(int(e, 16), b, P)) for e in body["elements"]]
    assert sorted(out["peer_tags"]) == sorted(peer_in_order) and out["peer_tags"] != peer_in_order


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
    elements = algo.node_step(consumer, "psi_blind", blind).body["elements"]
    again = algo.node_step(consumer, "psi_blind", blind).body["elements"]
    assert sorted(again) == sorted(elements)  # asked again: the same blinded set, the kept exponent
    assert refusal(algo, consumer, "psi_finish", {"elements": ["zz"]}) == "bad_elements"
    assert refusal(algo, consumer, "psi_other", {}) == "unknown_step"

    provider = make_nodes([], ids(0, 5), min_group=3)["provider:7"]
    exchange = {"dataset": "customers", "id_column": "cid", "elements": elements}
    assert refusal(algo, provider, "psi_exchange", {**exchange, "id_column": "nope"}) == "no_column"
    assert refusal(algo, provider, "psi_exchange", {**exchange, "elements": elements[:2]}) == "group_too_small"
    small = FakeNode("acme", provider.rows, min_group=6)
    # One list padded with copies: the group is its distinct IDs, and a repeat is refused outright.
    assert refusal(algo, small, "psi_exchange", {**exchange, "elements": elements * 2}) == "repeated_ids"
    target = dh_group.encode(dh_group.hash_to_group("the one person asked about"))
    assert refusal(algo, provider, "psi_exchange", {**exchange, "elements": [target] * 20}) == "repeated_ids"
    order_two = format(dh_group.P - 1, "0512x")
    assert refusal(algo, provider, "psi_exchange", {**exchange, "elements": [order_two, *elements]}) == "bad_elements"
    assert refusal(algo, provider, "psi_exchange", {**exchange, "elements": "x"}) == "bad_elements"


def test_the_hub_rejects_out_of_order_foreign_or_malformed_results() -> None:
    algo = psi.Psi(rng=ZeroNoise())
    job = make_job(algo)
    algo.start(job)
    element = dh_group.encode(dh_group.hash_to_group("x"))
    with pytest.raises(ValueError, match="did not expect"):
        algo.on_result(job, "psi_finish", "consumer", {"tags": []})
    with pytest.raises(ValueError, match="did not expect"):
        algo.on_result(job, "psi_blind", "provider:7", {"elements": [element]})
    with pytest.raises(ValueError, match="malformed"):
        algo.on_result(job, "psi_blind", "consumer", {"elements": [element[:-1]]})
    with pytest.raises(ValueError, match="repeats an element"):  # the hub counts distinct elements
        algo.on_result(job, "psi_blind", "consumer", {"elements": [element, element]})
    other = dh_group.encode(dh_group.hash_to_group("y"))
    algo.on_result(job, "psi_blind", "consumer", {"elements": [element, other]})
    with pytest.raises(ValueError, match="another length"):
        algo.on_result(job, "psi_exchange", "provider:7", {"peer_tags": ["0" * 32], "elements": [element]})
    with pytest.raises(ValueError, match="tags"):
        algo.on_result(job, "psi_exchange", "provider:7", {"peer_tags": ["0" * 31] * 2, "elements": []})


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
