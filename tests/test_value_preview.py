"""The value preview, hub and nodes in one process (the real node code, fake files): IV and AUC
match a central computation over the same bins, nothing identifying travels, and a consumer
that marks its labels or a hub that is handed the wrong lists is refused."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import numpy as np
import pytest

from compute import demo_data
from compute.algorithms import value_preview as vp
from compute.algorithms.base import Column, DatasetInfo, JobView, ParamError, Party
from protocol import bitproof, he, keys
from tests.algorithm_driver import FakeNode, drive

FEATURES = ["orders_12m", "avg_basket_eur", "late_payment_rate", "returns_rate", "tenure_months"]


def _text(rows: list[dict[str, object]]) -> list[dict[str, str]]:
    return [{k: str(v) for k, v in r.items()} for r in rows]


def _info() -> DatasetInfo:
    cols = (
        Column("customer_id", "string", "id"),
        *(Column(f, "number", "feature") for f in FEATURES),
        Column("region", "string", "feature"),  # not numeric: not previewed
    )
    return DatasetInfo(id=7, name="acme", columns=cols)


def _federation(
    epsilon: float = 1.0, bank: list[dict[str, str]] | None = None, min_group: int = 10
) -> tuple[JobView, dict[str, FakeNode]]:
    data = demo_data.generate()
    consumer = FakeNode("bank", {"applicants": bank if bank is not None else _text(data["bank"])}, min_group)
    provider = FakeNode("acme", {"signals": _text(data["acme"])}, min_group)
    provider.consumer = consumer
    provider.grant = {"min_group_size": min_group}
    clean = vp.ValuePreview().validate(
        {
            "consumer_dataset": "applicants",
            "consumer_id_column": "applicant_id",
            "label_column": "default",
            "epsilon": epsilon,
            "key_bits": 1024,
        },
        [_info()],
    )
    parties = [
        Party(key="consumer", node="bank", role="consumer"),
        Party(
            key="provider:7",
            node="acme",
            role="provider",
            dataset_id=7,
            dataset_local="signals",
            grant={"min_group_size": min_group},
            node_key=keys.public_b64(provider.key),
        ),
    ]
    return JobView(id="job-1", params=clean, parties=parties), {"consumer": consumer, "provider:7": provider}


def _central(min_group: int = 10) -> dict[str, dict[str, float]]:
    """IV and AUC computed with every row in one place, over the provider's own bins."""
    bins = vp.BINS
    data = demo_data.generate()
    labels = {r["applicant_id"]: int(r["default"]) for r in data["bank"]}
    acme = data["acme"]
    x = np.array([[float(r[f]) for f in FEATURES] for r in acme])
    assigned = vp.fine_classes(x, min_group)
    out = {}
    for f, name in enumerate(FEATURES):
        events, non = [0] * (bins + 1), [0] * (bins + 1)
        for r, b in zip(acme, assigned[:, f].tolist(), strict=True):
            y = labels.get(str(r["customer_id"]))
            if y is None:
                continue
            if y:
                events[b] += 1
            else:
                non[b] += 1
        out[name] = vp.woe_summary(events[:bins], non[:bins], events[bins], non[bins])
    return out


def test_without_noise_iv_and_auc_are_the_central_figures() -> None:
    job, nodes = _federation(epsilon=10.0)  # scale 0.5: counts off by about one
    trace: list[Any] = []
    outputs = drive(vp.ValuePreview(), job, nodes, trace=trace)
    central = _central()
    got = {f["name"]: f for f in outputs["features"]}
    assert set(got) == set(FEATURES)
    for name in FEATURES:
        tolerance = 0.01 + 0.05 * central[name]["iv"]  # counts off by about one, in bins of a few events
        assert abs(got[name]["iv"] - central[name]["iv"]) < tolerance, (name, got[name]["iv"], central[name]["iv"])
        assert abs(got[name]["auc"] - central[name]["auc"]) < 0.01, name
    # Ranked by IV; the demo's late-payment rate carries the latent health, the returns rate nothing.
    ivs = [f["iv"] for f in outputs["features"]]
    assert ivs == sorted(ivs, reverse=True)
    assert got["late_payment_rate"]["iv"] > 0.1 and got["returns_rate"]["iv"] < 0.05
    assert got["late_payment_rate"]["auc"] > 0.6
    # 1,600 of the 2,000 applicants are acme customers; the estimate is close.
    assert abs(outputs["overlap_estimate"] - 1600) <= 10 and outputs["consumer_ids"] == 2000
    # Nothing identifying travelled: no ID, no label, no feature value in any message.
    wire = repr([(sent, reply) for _, _, sent, reply, *_ in trace])
    assert "A000123" not in wire and 'late_payment_rate": 0.' not in wire


def test_with_preview_noise_the_ranking_survives() -> None:
    job, nodes = _federation(epsilon=1.0)  # five features: scale 5 per count
    outputs = drive(vp.ValuePreview(), job, nodes)
    central = _central()
    got = {f["name"]: f for f in outputs["features"]}
    # Noise moves each IV (coarser classes hold it down), but not the order of what matters ...
    ranked = [f["name"] for f in outputs["features"]]
    assert ranked[:3] == sorted(FEATURES, key=lambda f: -central[f]["iv"])[:3]
    for name in FEATURES:
        assert abs(got[name]["auc"] - central[name]["auc"]) < 0.08, name
    # ... nor what does not: the two useless features read as such.
    assert got["orders_12m"]["iv"] < 0.1 and got["returns_rate"]["iv"] < 0.1


def test_the_bin_statistics_are_what_the_textbook_says() -> None:
    # Two classes, 100 rows each: 80/20 events against 20/80 non-events.
    summary = vp.woe_summary([80, 20], [20, 80], 0, 0)
    woe_low = math.log((20.5 / 101) / (80.5 / 101))
    assert summary["bins"][0]["woe"] == round(woe_low, 4)
    assert summary["iv"] == round(2 * (60 / 101) * math.log(80.5 / 20.5), 4)
    # AUC of ranking by bin (events mostly low: 0.2, oriented to 0.8), ties counted half.
    assert summary["auc"] == round(1 - (80 * (0 + 0.5 * 20) + 20 * (20 + 0.5 * 80)) / (100 * 100), 4) == 0.8
    # A bin with no events merges into its neighbour (no infinite WOE); blanks stay apart.
    merged = vp.woe_summary([30, 0, 40], [50, 60, 40], 5, 5)
    assert [b["label"] for b in merged["bins"]] == ["bins 1–2", "bin 3", "blank"]  # a tie merges left
    # Under noise a class holds several noise scales of each kind (the floor), blanks too.
    assert [b["label"] for b in vp.woe_summary([30, 0, 40], [50, 60, 40], 5, 5, 25)["bins"]] == ["bins 1–2", "bin 3"]
    # One class left, or none that holds enough: nothing to tell apart, not a "medium" IV.
    for few in (
        vp.woe_summary([30, 0, 40], [50, 60, 40], 0, 0, 35),
        vp.woe_summary([3, 2, 4, 1], [2, 5, 1, 3], 9, 12, 40),
    ):
        assert (few["iv"], few["auc"], few["strength"], few["bins"]) == (0.0, 0.5, "not enough data", [])
    # Noised counts below zero merge as they are, and are clamped only once merged.
    signed = vp.coarse_classes([-3, 50, 60], [40, 45, 50], 10)
    assert signed[0] == {"label": "bins 1–2", "events": 47, "non_events": 85}
    assert vp.strength(0.35) == "strong" and vp.strength(0.01) == "not useful"


def test_a_consumer_that_swaps_a_proved_label_is_refused() -> None:
    """A tampering consumer node proves honest bits, then sends 2^k for one row (to read off its bin)."""

    class Marking(vp.ValuePreview):
        def _encrypt(self, ctx: Any, body: dict[str, Any]) -> Any:
            result = super()._encrypt(ctx, body)
            key = he.PrivateKey.from_json(ctx.state_get(vp.STATE)["key"])
            labels = key.public.unpack(result.body["labels"], 10_000)
            labels[0] = key.public.encrypt([1 << 20])[0]  # the marked row
            result.body["labels"] = key.public.pack(labels)
            return result

    job, nodes = _federation()
    with pytest.raises(ValueError, match="not proved to be bits"):
        drive(Marking(), job, nodes)


def test_labels_that_are_not_bits_are_refused_by_the_node() -> None:
    data = demo_data.generate()
    bank = _text(data["bank"])
    bank[5]["default"] = "2"
    job, nodes = _federation(bank=bank)
    with pytest.raises(vp.StepRefused, match="0 or 1"):
        drive(vp.ValuePreview(), job, nodes)


def test_the_hub_checks_the_report() -> None:
    job, _ = _federation()
    good = {
        "features": [
            {"name": f, "iv": 0.1, "auc": 0.6, "bins": [{"label": "bin 1", "events": 3, "non_events": 4, "woe": 0.1}]}
            for f in FEATURES
        ],
        "overlap_estimate": 5,
    }
    assert len(vp.checked_report(job.params, good)) == 5
    for bad in (
        {**good, "features": good["features"][:4]},
        {**good, "features": [{**good["features"][0], "iv": -1}, *good["features"][1:]]},
        {**good, "features": [{**good["features"][0], "auc": 0.2}, *good["features"][1:]]},
        {**good, "features": [{**good["features"][0], "iv": float("nan")}, *good["features"][1:]]},
        {**good, "overlap_estimate": -3},
    ):
        with pytest.raises(ValueError):
            vp.checked_report(job.params, bad)


def test_parameters_are_validated() -> None:
    algo = vp.ValuePreview()

    def errors(params: dict[str, Any], datasets: list[DatasetInfo] | None = None) -> dict[str, list[str]]:
        with pytest.raises(ParamError) as exc:
            algo.validate(params, [_info()] if datasets is None else datasets)
        return exc.value.errors

    base = {"consumer_dataset": "applicants", "consumer_id_column": "applicant_id", "label_column": "default"}
    assert set(errors({**base, "bins": 10})) == {"params"}  # bins are the provider's published quartiles
    assert set(errors({**base, "epsilon": 0})) == {"epsilon"}
    assert set(errors({**base, "label_column": ""})) == {"label_column"}
    assert set(errors({**base, "colour": "red"})) == {"params"}
    assert set(errors(base, [])) == {"datasets"}
    only_text = DatasetInfo(id=1, name="t", columns=(Column("id", "string", "id"), Column("r", "string", "feature")))
    assert "no numeric feature" in errors(base, [only_text])["datasets"][0]
    assert algo.validate(base, [_info()])["features"] == FEATURES


def _cheating_proof(public: he.PublicKey, c: int, context: bytes, index: int) -> list[int]:
    """A proof for a ciphertext of neither 0 nor 1, by a prover who knows no witness: both branches
    simulated in every repetition, their challenges chosen before the hash (it must then agree)."""
    import gmpy2

    nsq, rng = public.nsquare, random.Random(3)
    powers = bitproof.Powers(public)
    u = (gmpy2.mpz(c), gmpy2.mpz(c) * (1 - public.n) % nsq)
    a0s, a1s, tail = [], [], []
    for _ in range(bitproof.REPETITIONS):
        e0, e1 = rng.getrandbits(bitproof.CHALLENGE_BITS), rng.getrandbits(bitproof.CHALLENGE_BITS)
        z0, z1 = rng.getrandbits(powers.bits - 1), rng.getrandbits(powers.bits - 1)
        a0s.append(int(powers(z0) * gmpy2.powmod(u[0], -e0, nsq) % nsq))
        a1s.append(int(powers(z1) * gmpy2.powmod(u[1], -e1, nsq) % nsq))
        tail += [e0, z0, z1]
    return [*a0s, *a1s, *tail]


def test_bit_proofs_hold_for_bits_and_a_prover_without_a_witness_fails() -> None:
    key = he.PrivateKey.generate(1024)
    rng = random.Random(1)
    labels = [rng.randint(0, 1) for _ in range(40)]
    assert 10 < sum(labels) < 30  # both branches exercised
    cts, proof = bitproof.prove_labels(key, labels, b"ctx")
    bitproof.verify_labels(key.public, cts, proof, b"ctx")
    assert key.decrypt(cts) == labels
    with pytest.raises(bitproof.ProofError):
        bitproof.verify_labels(key.public, cts, proof, b"another job")
    with pytest.raises(bitproof.ProofError):
        bitproof.verify_labels(key.public, cts[::-1], proof, b"ctx")  # proofs bound to positions
    # A fresh encryption of the same bit is refused too: the proof is of that ciphertext.
    fresh = [*cts]
    fresh[0] = bitproof.Powers(key.public, key).encrypt(labels[0])[0]
    with pytest.raises(bitproof.ProofError):
        bitproof.verify_labels(key.public, [int(c) for c in fresh], proof, b"ctx")
    # A real cheat: E(2) with both branches simulated (soundness 2^-100: the hash does not oblige).
    two = int(bitproof.Powers(key.public, key).encrypt(2)[0])
    forged = bitproof._pack(key.public, [_cheating_proof(key.public, two, b"ctx", 0)])
    with pytest.raises(bitproof.ProofError, match="does not hold"):
        bitproof.verify_labels(key.public, [two], forged, b"ctx")
    with pytest.raises(bitproof.ProofError):
        bitproof.prove_labels(key, [0, 2], b"ctx")


def test_a_modulus_with_a_small_factor_or_the_wrong_size_is_refused() -> None:
    """Small factors are where 2^k-marked labels could pass (challenges not invertible mod them)."""
    import gmpy2

    key = he.PrivateKey.generate(1024)
    bitproof.check_modulus(key.public, 1024)
    with pytest.raises(bitproof.ProofError, match="1024 bits, not the 2048"):
        bitproof.check_modulus(key.public, 2048)
    small = gmpy2.next_prime(16_000)
    p = gmpy2.next_prime(gmpy2.mpz(1) << 500)
    q = gmpy2.next_prime(gmpy2.mpz(3) << 508)
    n = int(small * p * q)
    with pytest.raises(bitproof.ProofError, match="small prime factor"):
        bitproof.check_modulus(he.PublicKey(n), n.bit_length())


def test_a_planted_element_of_order_two_is_refused_and_would_not_survive_the_provider() -> None:
    """ζ ≡ −1 mod p², 1 mod q²: an n-th residue of order 2, invisible in the plaintext, that a
    consumer could plant in a label to find it again in what it decrypts."""
    import gmpy2

    key = he.PrivateKey.generate(1024)
    pub, nsq = key.public, key.public.nsquare
    zeta = int(
        (key.qsq * gmpy2.invert(key.qsq, key.psq) * (key.psq - 1) + key.psq * gmpy2.invert(key.psq, key.qsq)) % nsq
    )
    assert zeta * zeta % nsq == 1 and zeta != 1
    c = int(bitproof.Powers(pub, key).encrypt(1)[0])
    with pytest.raises(bitproof.ProofError, match="out of range"):
        bitproof.element(pub, c * zeta % nsq)  # the hub refuses it: its Jacobi symbol is −1

    def character(ct: int) -> int:  # what the key holder reads of the random part: its Jacobi symbol
        rand_part = gmpy2.mpz(ct) * (1 - key.decrypt([ct])[0] * pub.n) % nsq
        return int(gmpy2.jacobi(rand_part % pub.n, pub.n))

    marked = c * zeta % nsq
    # h_s^r keeps the mark (the attack); a uniform rⁿ, as the provider now uses, erases it.
    assert {character(x) for x in pub.rerandomize([marked] * 8)} == {character(marked)}
    assert {character(x) for x in pub.rerandomize_fully([marked] * 24)} == {1, -1}


def test_bins_follow_the_published_quartiles_and_hold_the_minimum_group() -> None:
    from compute.node.datasets import column_summary

    rng = np.random.default_rng(0)
    values = np.round(rng.gamma(2.0, 10.0, 400), 1)
    x = np.column_stack([values, np.full(400, np.nan), np.r_[np.zeros(390), np.arange(10.0)]])
    bins = vp.fine_classes(x, 20)
    published = column_summary([str(v) for v in values], "number", "feature", 20)
    edges = [published["p25"], published["p50"], published["p75"]]
    assert (bins[:, 0] == np.searchsorted(edges, values, side="right")).all()  # the manifest's own quartiles
    assert set(bins[:, 1].tolist()) == {vp.BINS}  # an all-blank column: every row in the blank bin
    # 390 zeros tie on every quartile: the ten others (fewer than 20) join them in one bin.
    assert set(bins[:, 2].tolist()) == {0} and min(np.bincount(bins[:, 0])) >= 20


def test_an_all_blank_feature_reads_as_not_enough_data() -> None:
    job, nodes = _federation(epsilon=10.0)
    acme = nodes["provider:7"].rows["signals"]
    for r in acme:
        r["returns_rate"] = ""
    outputs = drive(vp.ValuePreview(), job, nodes)
    blank = next(f for f in outputs["features"] if f["name"] == "returns_rate")
    assert (blank["iv"], blank["strength"]) == (0.0, "not enough data"), blank
    assert next(f for f in outputs["features"] if f["name"] == "late_payment_rate")["iv"] > 0.1  # the others still read


def test_bit_proofs_known_answer_vector_checked_by_an_independent_verifier() -> None:
    """The vector pins the proof bytes (a fixed key and the prover's randomness). Each equation is
    also checked here from the documented layout and hashing alone: fields parsed by hand, the
    challenges recomputed with hashlib, every equation with plain pow."""
    import base64
    import hashlib
    from pathlib import Path

    vec = json.loads((Path(__file__).parent / "protocol_vectors" / "bitproof.json").read_text())
    p, q = int(vec["p"]), int(vec["q"])
    key = he.PrivateKey(he.PublicKey(p * q), p, q)
    cts, proof = bitproof.prove_labels(key, vec["labels"], vec["context"].encode(), rand=random.Random(7).getrandbits)
    assert (key.public.pack(cts), proof) == (vec["labels_ct"], vec["proof"])
    n, nsq, hs = p * q, (p * q) ** 2, int(key.public.hs)
    width = (nsq.bit_length() + 7) // 8
    r, t = 5, 20
    zbytes = ((n.bit_length() + 1) // 2 + t + 80) // 8 + 2
    raw = base64.b64decode(proof)
    stride = 2 * r * width + r * (3 + 2 * zbytes)
    assert len(raw) == stride * len(cts)
    for i, c in enumerate(cts):
        row = raw[i * stride : (i + 1) * stride]
        a = [int.from_bytes(row[k * width : (k + 1) * width], "big") for k in range(2 * r)]
        digest = hashlib.sha256(b"usufruct/bitproof/v2\x00")
        ctx = vec["context"].encode()
        digest.update(len(ctx).to_bytes(4, "big") + ctx + i.to_bytes(8, "big") + n.to_bytes(width, "big"))
        for v in (c, *a):
            digest.update(v.to_bytes(width, "big"))
        h = int.from_bytes(digest.digest(), "big")
        at = 2 * r * width
        for k in range(r):
            e0 = int.from_bytes(row[at : at + 3], "big")
            z0 = int.from_bytes(row[at + 3 : at + 3 + zbytes], "big")
            z1 = int.from_bytes(row[at + 3 + zbytes : at + 3 + 2 * zbytes], "big")
            at += 3 + 2 * zbytes
            e1 = (((h >> (t * k)) & (2**t - 1)) - e0) % 2**t
            assert pow(hs, z0, nsq) == a[k] * pow(c, e0, nsq) % nsq
            assert pow(hs, z1, nsq) == a[r + k] * pow(c * (1 - n) % nsq, e1, nsq) % nsq
    bitproof.verify_labels(key.public, cts, proof, vec["context"].encode())
