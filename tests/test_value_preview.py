"""The value preview, hub and nodes in one process (the real node code, fake files): IV and AUC
match a central computation over the same bins, nothing identifying travels, and a consumer
that marks its labels or a hub that is handed the wrong lists is refused."""

from __future__ import annotations

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


def _central(bins: int = 10, min_group: int = 10) -> dict[str, dict[str, float]]:
    """IV and AUC computed with every row in one place, over the provider's own bins."""
    data = demo_data.generate()
    labels = {r["applicant_id"]: int(r["default"]) for r in data["bank"]}
    acme = data["acme"]
    x = np.array([[float(r[f]) for f in FEATURES] for r in acme])
    assigned = vp.fine_classes(x, bins, min_group)
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
    assert [b["label"] for b in vp.woe_summary([30, 0, 40], [50, 60, 40], 0, 0, 35)["bins"]] == ["bins 1–3"]
    assert vp.strength(0.35) == "strong" and vp.strength(0.01) == "not useful"


def test_the_provider_bins_its_own_rows_with_a_minimum_per_bin() -> None:
    x = np.array([[float(i)] for i in range(95)] + [[np.nan]] * 5)
    bins = vp.fine_classes(x, 10, 20)  # 95 values, at least 20 each: 4 bins
    assert sorted(set(bins[:95, 0].tolist())) == [0, 1, 2, 3]
    assert min(np.bincount(bins[:95, 0])) >= 19 and set(bins[95:, 0].tolist()) == {10}


def test_a_consumer_that_marks_its_labels_is_refused() -> None:
    """A tampering consumer node encrypts 2^k for one row (to read off its bin) with a forged proof."""

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


def test_a_consumer_whose_zeros_are_not_zeros_is_refused() -> None:
    class Ones(vp.ValuePreview):
        def _finish(self, ctx: Any, body: dict[str, Any]) -> Any:
            key = he.PrivateKey.from_json(ctx.state_get(vp.STATE)["key"])
            result = super()._finish(ctx, body)
            zeros = key.public.unpack(result.body["zeros"], 10_000)
            zeros[3] = key.public.encrypt([1])[0]
            result.body["zeros"] = key.public.pack(zeros)
            return result

    job, nodes = _federation()
    with pytest.raises(ValueError, match="not proved to be zeros"):
        drive(Ones(), job, nodes)


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
    assert set(errors({**base, "bins": 1})) == {"bins"}
    assert set(errors({**base, "epsilon": 0})) == {"epsilon"}
    assert set(errors({**base, "label_column": ""})) == {"label_column"}
    assert set(errors({**base, "colour": "red"})) == {"params"}
    assert set(errors(base, [])) == {"datasets"}
    only_text = DatasetInfo(id=1, name="t", columns=(Column("id", "string", "id"), Column("r", "string", "feature")))
    assert "no numeric feature" in errors(base, [only_text])["datasets"][0]
    assert algo.validate(base, [_info()])["features"] == FEATURES


def test_bit_proofs_batch_verify_and_any_tampering_fails() -> None:
    key = he.PrivateKey.generate(1024)
    labels = [random.Random(1).randint(0, 1) for _ in range(40)]
    ps, qs, proof = bitproof.prove_labels(key, labels, b"ctx")
    bitproof.verify_labels(key.public, ps, qs, proof, b"ctx")
    assert key.decrypt(ps) == labels and key.decrypt(qs) == [1 - y for y in labels]
    with pytest.raises(bitproof.ProofError):
        bitproof.verify_labels(key.public, ps, qs, proof, b"another job")
    with pytest.raises(bitproof.ProofError):
        bitproof.verify_labels(key.public, ps[::-1], qs[::-1], proof, b"ctx")  # proofs bound to positions
    swapped = [*ps]
    swapped[0], swapped[1] = qs[0], qs[1]  # complements instead: still bits, but not the proved ones
    with pytest.raises(bitproof.ProofError):
        bitproof.verify_labels(key.public, swapped, qs, proof, b"ctx")
    with pytest.raises(bitproof.ProofError):
        bitproof.prove_labels(key, [0, 2], b"ctx")


def test_bit_proofs_known_answer_vector_and_an_independent_check_of_each_equation() -> None:
    """The vector pins the proof bytes (a fixed key and the prover's randomness); each equation is
    also checked one at a time with plain exponentiations, apart from the batch verifier."""
    import json
    from pathlib import Path

    import gmpy2

    vec = json.loads((Path(__file__).parent / "protocol_vectors" / "bitproof.json").read_text())
    p, q = int(vec["p"]), int(vec["q"])
    key = he.PrivateKey(he.PublicKey(p * q), p, q)
    rand = random.Random(7).getrandbits
    ps, qs, proof = bitproof.prove_labels(key, vec["labels"], vec["context"].encode(), rand=rand)
    zeros, zero_proof = bitproof.prove_zeros(key, vec["zero_count"], vec["zero_context"].encode(), rand=rand)
    assert (key.public.pack(ps), key.public.pack(qs), proof) == (vec["labels_ct"], vec["complements_ct"], vec["proof"])
    assert (key.public.pack(zeros), zero_proof) == (vec["zeros_ct"], vec["zero_proof"])
    public, nsq, n = key.public, key.public.nsquare, key.public.n
    eqs = bitproof.label_equations(public, ps, qs, proof, vec["context"].encode())
    eqs += bitproof.zero_equations(public, zeros, zero_proof, vec["zero_context"].encode())
    assert len(eqs) == 3 * len(vec["labels"]) + vec["zero_count"]
    for eq in eqs:  # h_s^z = a · (base · g^(−δ))^e, g⁻¹ = 1 − n
        u = eq.base * (1 - n) % nsq if eq.delta else eq.base
        assert gmpy2.powmod(public.hs, eq.z, nsq) == eq.a * gmpy2.powmod(u, eq.e, nsq) % nsq
    bitproof.check(public, eqs)
    # One flipped byte anywhere in the proof: the batch refuses it.
    raw = bytearray(__import__("base64").b64decode(proof))
    raw[len(raw) // 2] ^= 1
    with pytest.raises(bitproof.ProofError):
        bitproof.verify_labels(
            public, ps, qs, __import__("base64").b64encode(bytes(raw)).decode(), vec["context"].encode()
        )
    with pytest.raises(bitproof.ProofError):  # a zero that is a one
        bitproof.verify_zeros(public, [*zeros[:-1], ps[0]], zero_proof, vec["zero_context"].encode())
